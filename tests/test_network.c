/* Networks: Unix sockets, name resolution (.resolve, .connect_to), local
 * binding (.interface, .ip_version), proxies by scheme, SOCKS proxies,
 * HTTPS proxies, proxy credentials, no_proxy and trust_env.
 *
 * Servers: httpbin (QV_HTTPBIN_URL), nginx on a Unix socket too
 * (QV_NGINX_SOCKET; GET /whoami answers "<Host> <path>"), the forward proxy
 * (QV_PROXY_URL, "Via: quiver-test-proxy" on what it relays), the same
 * proxy demanding credentials (QV_AUTH_PROXY_URL, _USER, _PASSWORD) or
 * speaking TLS (QV_TLS_PROXY_URL, its CA in QV_TLS_PROXY_CA), and a
 * SOCKS4/4a/5 proxy (QV_SOCKS_PORT) that resolves any name under
 * .quiver.test to 127.0.0.1. Each Criterion test runs in its own process,
 * so a test's environment changes stay in it. */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(network, .timeout = 30);

#define VIA "quiver-test-proxy"

/* httpbin's port, as a string. */
static const char *httpbin_port(void)
{
    const char *colon = strrchr(tx_base(), ':');
    cr_assert_not_null(colon, "QV_HTTPBIN_URL %s has no port", tx_base());
    return colon + 1;
}

/* A made-up name (only .resolve or the SOCKS proxy know it) on httpbin's port. */
static const char *made_up_url(const char *name, const char *path)
{
    static char bufs[4][256];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "http://%s:%s%s", name, httpbin_port(), path);
    return b;
}

static const char *socks_url(const char *scheme)
{
    static char bufs[4][128];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s://127.0.0.1:%s", scheme,
             tx_env("QV_SOCKS_PORT", "the SOCKS test proxy (qv_start_socks)"));
    return b;
}

/* Only what a test sets counts (scripts/test exports no_proxy). */
static void clear_env_proxies(void)
{
    static const char *const vars[] = {"no_proxy",    "NO_PROXY",  "http_proxy", "https_proxy",
                                       "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
}

static const char *via(const qv_response *r)
{
    return qv_response_header(r, "Via");
}

Test(network, unix_socket_keeps_the_url_s_host_and_path, .timeout = 30)
{
    const char *sock = tx_env("QV_NGINX_SOCKET", "nginx on a Unix socket (qv_start_nginx)");
    qv_session *s = TX_SESSION(.unix_socket = sock);
    qv_future *f;
    for (int i = 0; i < 2; i++) {
        qv_response *r = tx_get_ok(s, &f, "http://docker.invalid/whoami?q=1");
        tx_assert_str_eq(qv_response_text(r), "docker.invalid /whoami?q=1");
        qv_future_release(f);
    }
    qv_session_free(s);

    /* Per request, over a session that has none. */
    s = TX_SESSION();
    cr_assert_eq(qv_get(s, &f, "http://api.invalid:8080/whoami", .unix_socket = sock), QV_OK);
    tx_assert_str_eq(qv_response_text(tx_expect_status(f, 200)), "api.invalid:8080 /whoami");
    qv_future_release(f);
    /* The next request of the session goes over TCP again. */
    qv_response *r = tx_get_ok(s, &f, tu("/get"));
    tx_assert_str_eq(tx_jstr(tx_json(r), "url"), tu("/get"));
    qv_future_release(f);
    qv_session_free(s);
}

Test(network, settings_kept_on_a_handle_follow_each_request, .timeout = 30)
{
    /* One worker, so one easy handle: it keeps a request's network settings
     * for the next request with the same; another request (a POST, a plain
     * session's GET) must neither lose them nor inherit them. (Without the
     * socket, localhost:1 refuses: no traffic leaves the machine.) */
    const char *sock = tx_env("QV_NGINX_SOCKET", "nginx on a Unix socket (qv_start_nginx)");
    qv_executor *ex = tx_executor(1);
    qv_session *viasock = TX_SESSION(.executor = ex, .unix_socket = sock);
    qv_session *plain = TX_SESSION(.executor = ex);
    /* NULL: the plain session's GET. */
    const char *methods[] = {"GET", "GET", "POST", "GET", NULL, "GET", "PUT", "GET", NULL, "GET"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        qv_future *f;
        if (!methods[i]) {
            qv_response *r = tx_get_ok(plain, &f, tu("/get"));
            tx_assert_str_eq(tx_jstr(tx_json(r), "url"), tu("/get"));
            qv_future_release(f);
            continue;
        }
        cr_assert_eq(qv_request(viasock, &f,
                                &(qv_request_opts){.size = sizeof(qv_request_opts),
                                                   .method = methods[i],
                                                   .url = "http://localhost:1/whoami"}),
                     QV_OK);
        tx_assert_str_eq(qv_response_text(tx_expect_status(f, 200)), "localhost:1 /whoami");
        qv_future_release(f);
    }
    qv_session_free(viasock);
    qv_session_free(plain);
    qv_executor_free(ex);
}

Test(network, missing_unix_socket_is_econnect, .timeout = 30)
{
    qv_session *s = TX_SESSION(.unix_socket = "/nonexistent/quiver-test.sock");
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, "http://localhost/get"), QV_OK);
    tx_expect_error(f, QV_ECONNECT);
    qv_future_release(f);
    qv_session_free(s);
}

Test(network, resolve_sends_a_made_up_name_to_loopback, .timeout = 30)
{
    char name[64];
    snprintf(name, sizeof name, "api.quiver.test:%s", httpbin_port());
    qv_session *s = TX_SESSION(.resolve = (const qv_pair[]){{name, "127.0.0.1"}, {0}});
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, made_up_url("api.quiver.test", "/headers"));
    /* The Host is the name, the connection went to the address. */
    tx_assert_str_eq(tx_jstr(tx_json(r), "headers/Host"), name);
    qv_future_release(f);
    /* IPv6, bracketed or not: a pin there (where nothing listens). */
    const char *v6[] = {"::1", "[::1]"};
    for (size_t i = 0; i < 2; i++) {
        qv_session *s6 = TX_SESSION(.resolve = (const qv_pair[]){{name, v6[i]}, {0}});
        cr_assert_eq(qv_get(s6, &f, made_up_url("api.quiver.test", "/get")), QV_OK);
        tx_assert_contains(tx_expect_error(f, QV_ECONNECT), "::1");
        qv_future_release(f);
        qv_session_free(s6);
    }
    qv_session_free(s);
}

Test(network, resolve_pins_stay_in_their_session, .timeout = 30)
{
    /* Two sessions on one single-worker executor pin the same made-up name:
     * one to httpbin, one to 127.0.0.2 where nothing listens. The second
     * must not reach httpbin through the first one's pin (a DNS cache entry,
     * or its connection kept open for reuse). (Both pinned: no name here
     * is ever looked up in DNS.) */
    char name[64];
    snprintf(name, sizeof name, "pin.quiver.test:%s", httpbin_port());
    qv_executor *ex = tx_executor(1);
    qv_session *pinned =
        TX_SESSION(.executor = ex, .resolve = (const qv_pair[]){{name, "127.0.0.1"}, {0}});
    qv_session *plain =
        TX_SESSION(.executor = ex, .resolve = (const qv_pair[]){{name, "127.0.0.2"}, {0}});
    const char *url = made_up_url("pin.quiver.test", "/get");
    for (int i = 0; i < 2; i++) {
        qv_future *f;
        tx_get_ok(pinned, &f, url);
        qv_future_release(f);
        cr_assert_eq(qv_get(plain, &f, url), QV_OK);
        tx_expect_error(f, QV_ECONNECT);
        qv_future_release(f);
    }
    qv_session_free(pinned);
    qv_session_free(plain);
    qv_executor_free(ex);
}

Test(network, connect_to_goes_elsewhere_with_the_same_host, .timeout = 30)
{
    /* Port 1 on a made-up name, connected to httpbin instead. */
    char to[64];
    snprintf(to, sizeof to, "127.0.0.1:%s", httpbin_port());
    qv_session *s = TX_SESSION(.connect_to = (const qv_pair[]){{"svc.quiver.test:1", to}, {0}});
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, "http://svc.quiver.test:1/headers");
    tx_assert_str_eq(tx_jstr(tx_json(r), "headers/Host"), "svc.quiver.test:1");
    qv_future_release(f);
    qv_session_free(s);
}

Test(network, interface_and_ip_version, .timeout = 30)
{
    qv_session *s = TX_SESSION(.interface = "127.0.0.1", .ip_version = 4);
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/get"));
    tx_assert_str_eq(tx_jstr(tx_json(r), "origin"), "127.0.0.1");
    qv_future_release(f);
    qv_session_free(s);

    /* localhost over IPv6 only: httpbin listens on 127.0.0.1 alone. */
    s = TX_SESSION(.ip_version = 6);
    cr_assert_eq(qv_get(s, &f, tu_host("localhost", "/get")), QV_OK);
    tx_expect_error(f, QV_ECONNECT);
    qv_future_release(f);
    qv_session_free(s);

    /* An address this machine does not have cannot be sent from; nor can
     * a device it does not have ("if!": a device name only, never looked
     * up as a host name, so no DNS query leaves the machine). */
    const char *nowhere[] = {"192.0.2.1", "if!quiver-no-such-if0"};
    for (size_t i = 0; i < 2; i++) {
        s = TX_SESSION(.interface = nowhere[i]);
        cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK);
        tx_expect_error(f, QV_ECONNECT);
        qv_future_release(f);
        qv_session_free(s);
    }
}

/* A made-up name reaches httpbin through s's proxy, which resolves it. */
static void expect_resolved_by_proxy(qv_session *s, const char *name)
{
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, made_up_url(name, "/headers"));
    tx_assert_contains(tx_jstr(tx_json(r), "headers/Host"), name);
    qv_future_release(f);
}

Test(network, socks5h_resolves_at_the_proxy, .timeout = 30)
{
    clear_env_proxies();
    qv_session *s = TX_SESSION(.proxy = socks_url("socks5h"));
    expect_resolved_by_proxy(s, "made-up.quiver.test");

    /* A *.localhost name (libcurl maps it to loopback itself, no DNS):
     * socks5h:// sends the name, which this proxy refuses; socks5://
     * resolves it here and sends the address, which it takes. */
    const char *url = made_up_url("sub.localhost", "/get");
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, url), QV_OK);
    tx_expect_error(f, QV_EPROXY);
    qv_future_release(f);
    qv_session_free(s);
    s = TX_SESSION(.proxy = socks_url("socks5"));
    qv_response *r = tx_get_ok(s, &f, url);
    tx_assert_str_eq(tx_jstr(tx_json(r), "url"), url);
    qv_future_release(f);
    qv_session_free(s);
}

Test(network, socks4a_and_socks_over_tls, .timeout = 30)
{
    clear_env_proxies();
    qv_session *s = TX_SESSION(.proxy = socks_url("socks4a"), .ca_file = tx_tls_ca());
    expect_resolved_by_proxy(s, "four.quiver.test");
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tx_tls_url("/hello"));
    tx_assert_str_eq(qv_response_text(r), "hello tls");
    qv_future_release(f);
    qv_session_free(s);
}

Test(network, socks_refusal_and_down_are_eproxy, .timeout = 30)
{
    clear_env_proxies();
    /* The SOCKS proxy refuses targets outside loopback (never contacted). */
    qv_session *s = TX_SESSION(.proxy = socks_url("socks5h"));
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, "http://quiver-test.invalid/get"), QV_OK);
    tx_expect_error(f, QV_EPROXY);
    qv_future_release(f);
    qv_session_free(s);

    char proxy[64];
    snprintf(proxy, sizeof proxy, "socks5://127.0.0.1:%d", tx_closed_port());
    s = TX_SESSION(.proxy = proxy);
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK);
    tx_expect_error(f, QV_EPROXY);
    qv_future_release(f);
    qv_session_free(s);
}

/* The auth proxy's URL with user:password@ in it. */
static const char *auth_proxy(const char *user, const char *password)
{
    static char buf[256];
    const char *url = tx_env("QV_AUTH_PROXY_URL", "the proxy that demands credentials");
    snprintf(buf, sizeof buf, "http://%s:%s@%s", user, password, url + strlen("http://"));
    return buf;
}

Test(network, proxy_credentials_in_options_or_in_the_url, .timeout = 30)
{
    clear_env_proxies();
    const char *user = tx_env("QV_AUTH_PROXY_USER", "the auth proxy's user");
    const char *pass = tx_env("QV_AUTH_PROXY_PASSWORD", "the auth proxy's password");
    qv_session *sessions[] = {
        TX_SESSION(.proxy = tx_env("QV_AUTH_PROXY_URL", "the auth proxy"), .proxy_username = user,
                   .proxy_password = pass),
        TX_SESSION(.proxy = auth_proxy(user, pass), .ca_file = tx_tls_ca()),
    };
    for (size_t i = 0; i < 2; i++) {
        qv_future *f;
        qv_response *r = tx_get_ok(sessions[i], &f, tu("/headers"));
        tx_assert_str_eq(via(r), VIA);
        /* The proxy's credentials stay with the proxy. */
        cr_assert_null(tx_jstr(tx_json(r), "headers/Proxy-Authorization"));
        qv_future_release(f);
        qv_session_free(sessions[i]);
    }
}

Test(network, bad_proxy_credentials_are_eproxy, .timeout = 30)
{
    clear_env_proxies();
    const char *user = tx_env("QV_AUTH_PROXY_USER", "the auth proxy's user");
    qv_session *s = TX_SESSION(.proxy = auth_proxy(user, "wrong-secret"), .ca_file = tx_tls_ca());
    qv_future *f;
    /* Plain http (the proxy's 407 is the response) and a tunnel (CONNECT
     * refused). */
    const char *urls[] = {tu("/get"), tx_tls_url("/hello")};
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(qv_get(s, &f, urls[i]), QV_OK);
        const char *msg = tx_expect_error(f, QV_EPROXY);
        cr_assert_null(strstr(msg, "wrong-secret"), "the password is in the message: %s", msg);
        qv_future_release(f);
    }
    qv_session_free(s);

    /* None at all. */
    s = TX_SESSION(.proxy = tx_env("QV_AUTH_PROXY_URL", "the auth proxy"));
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK);
    tx_assert_contains(tx_expect_error(f, QV_EPROXY), "407");
    qv_future_release(f);
    qv_session_free(s);
}

Test(network, proxies_by_scheme, .timeout = 30)
{
    clear_env_proxies();
    /* http through the forward proxy; https through SOCKS (the forward
     * proxy would answer a CONNECT with Via, which a tunnel hides). */
    qv_session *s = TX_SESSION(.proxies = (const qv_pair[]){{"http", tx_proxy_url()},
                                                            {"https", socks_url("socks5h")},
                                                            {0}},
                               .ca_file = tx_tls_ca());
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/get"));
    tx_assert_str_eq(via(r), VIA);
    qv_future_release(f);
    r = tx_get_ok(s, &f, tx_tls_url("/hello"));
    tx_assert_str_eq(qv_response_text(r), "hello tls");
    qv_future_release(f);
    qv_session_free(s);

    /* "all", over .proxy; a scheme's "" means no proxy for it. */
    s = TX_SESSION(.proxy = "http://127.0.0.1:1",
                   .proxies = (const qv_pair[]){{"all", tx_proxy_url()}, {0}});
    r = tx_get_ok(s, &f, tu("/get"));
    tx_assert_str_eq(via(r), VIA);
    qv_future_release(f);
    qv_session_free(s);
    s = TX_SESSION(.proxies = (const qv_pair[]){{"all", tx_proxy_url()}, {"http", ""}, {0}});
    r = tx_get_ok(s, &f, tu("/get"));
    cr_assert_null(via(r));
    qv_future_release(f);
    qv_session_free(s);
}

Test(network, no_proxy_bypasses_an_explicit_proxy, .timeout = 30)
{
    clear_env_proxies();
    qv_session *s = TX_SESSION(.proxy = tx_proxy_url(), .no_proxy = "localhost");
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu_host("localhost", "/get"));
    cr_assert_null(via(r), "no_proxy names localhost: straight to httpbin");
    qv_future_release(f);
    r = tx_get_ok(s, &f, tu("/get"));
    tx_assert_str_eq(via(r), VIA);
    qv_future_release(f);
    qv_session_free(s);
}

Test(network, trust_env_minus_one_ignores_environment_proxies, .timeout = 30)
{
    clear_env_proxies();
    cr_assert_eq(setenv("http_proxy", tx_proxy_url(), 1), 0);
    qv_session *s = TX_SESSION();
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/get"));
    tx_assert_str_eq(via(r), VIA, "the environment's proxy is the default");
    qv_future_release(f);
    qv_session_free(s);

    s = TX_SESSION(.trust_env = -1);
    r = tx_get_ok(s, &f, tu("/get"));
    cr_assert_null(via(r), "trust_env = -1: the environment's proxy is ignored");
    qv_future_release(f);
    qv_session_free(s);
}

Test(network, bad_settings_are_einval, .timeout = 30)
{
    const qv_pair bad_scheme[] = {{"ftp", "http://127.0.0.1:1"}, {0}};
    const qv_pair no_value[] = {{"http", NULL}, {0}};
    const qv_pair no_port[] = {{"example.com", "127.0.0.1"}, {0}};
    const qv_pair crlf[] = {{"example.com:80", "127.0.0.1\r\n"}, {0}};
    const qv_pair two[] = {{"example.com:80", "127.0.0.1,127.0.0.2"}, {0}};
    const qv_pair bad_target[] = {{"example.com:80", "elsewhere"}, {0}};
    const qv_session_opts bad[] = {
        {.size = sizeof(qv_session_opts), .proxies = bad_scheme},
        {.size = sizeof(qv_session_opts), .proxies = no_value},
        {.size = sizeof(qv_session_opts), .resolve = no_port},
        {.size = sizeof(qv_session_opts), .resolve = crlf},
        {.size = sizeof(qv_session_opts), .resolve = two},
        {.size = sizeof(qv_session_opts), .connect_to = bad_target},
        {.size = sizeof(qv_session_opts), .ip_version = 5},
        {.size = sizeof(qv_session_opts), .trust_env = 2},
        {.size = sizeof(qv_session_opts), .unix_socket = "/tmp/a\nb"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qv_session *s = NULL;
        cr_assert_eq(qv_session_new(&s, &bad[i]), QV_EINVAL, "case %zu", i);
        cr_assert_null(s);
    }
}

Test(network, https_proxy_verified_against_proxy_ca_file, .timeout = 30)
{
    clear_env_proxies();
    const char *proxy = tx_env("QV_TLS_PROXY_URL", "the HTTPS proxy (qv_start_tls_proxy)");
    const char *proxy_ca = tx_env("QV_TLS_PROXY_CA", "the HTTPS proxy's CA");
    qv_session *s = TX_SESSION(.proxy = proxy, .proxy_ca_file = proxy_ca, .ca_file = tx_tls_ca());
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/get"));
    tx_assert_str_eq(via(r), VIA);
    qv_future_release(f);
    /* TLS to the proxy, and TLS to the server inside its tunnel. */
    r = tx_get_ok(s, &f, tx_tls_url("/hello"));
    tx_assert_str_eq(qv_response_text(r), "hello tls");
    qv_future_release(f);
    qv_session_free(s);

    /* The proxy's CA is not the server's: without proxy_ca_file, the
     * proxy's certificate does not verify. */
    s = TX_SESSION(.proxy = proxy, .ca_file = proxy_ca);
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK);
    tx_assert_contains(tx_expect_error(f, QV_ETLS), "proxy_ca_file");
    qv_future_release(f);
    qv_session_free(s);
}
