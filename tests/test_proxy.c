/* Proxies: an explicit .proxy, libcurl's environment proxies (http_proxy,
 * no_proxy), and the errors of a proxy that is down or refuses.
 *
 * The proxy is tests/servers/proxy.py at QV_PROXY_URL: it relays plain http
 * and CONNECT tunnels to 127.0.0.1/localhost only and marks what it relays
 * with "Via: quiver-test-proxy". Each Criterion test runs in its own process,
 * so changing the environment in one test does not leak into another. */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(proxy, .timeout = 30);

#define VIA "quiver-test-proxy"

/* Asserts r came through the test proxy. */
static void expect_proxied(const qv_response *r)
{
    const char *via = qv_response_header(r, "Via");
    cr_assert_not_null(via, "no Via header: the request did not go through the proxy");
    tx_assert_str_eq(via, VIA);
}

/* Asserts r came straight from httpbin. */
static void expect_direct(const qv_response *r)
{
    const char *via = qv_response_header(r, "Via");
    cr_assert_null(via, "Via: %s: the request went through a proxy", via);
}

/* Clears libcurl's environment proxy settings (scripts/test exports
 * no_proxy=127.0.0.1,localhost), so that only what a test sets counts. */
static void clear_env_proxies(void)
{
    static const char *const vars[] = {"no_proxy",    "NO_PROXY",  "http_proxy", "https_proxy",
                                       "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        cr_assert_eq(unsetenv(vars[i]), 0, "unsetenv(%s) failed", vars[i]);
}

/* Makes libcurl's environment say: use the test proxy for http. */
static void use_env_proxy(void)
{
    clear_env_proxies();
    cr_assert_eq(setenv("http_proxy", tx_proxy_url(), 1), 0);
}

Test(proxy, explicit_proxy_relays_get, .timeout = 30)
{
    clear_env_proxies();
    qv_session *s = TX_SESSION(.proxy = tx_proxy_url());
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/get?via=proxy"));
    expect_proxied(r);
    json_t *j = tx_json(r);
    tx_assert_str_eq(tx_jstr(j, "url"), tu("/get?via=proxy"));
    tx_assert_str_eq(tx_jstr(j, "args/via"), "proxy");
    tx_assert_str_eq(qv_response_url(r), tu("/get?via=proxy"));
    qv_future_release(f);
    qv_session_free(s);
}

Test(proxy, explicit_proxy_relays_post_body_and_headers, .timeout = 30)
{
    clear_env_proxies();
    qv_session *s = TX_SESSION(.proxy = tx_proxy_url());
    qv_future *f;
    cr_assert_eq(qv_post(s, &f, tu("/post"), .body = "payload through the proxy",
                         .headers = (const qv_header[]){{"Content-Type", "text/plain"},
                                                        {"X-Test", "relayed"},
                                                        {0}}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    expect_proxied(r);
    json_t *j = tx_json(r);
    tx_assert_str_eq(tx_jstr(j, "data"), "payload through the proxy");
    tx_assert_str_eq(tx_jstr(j, "headers/X-Test"), "relayed");
    qv_future_release(f);
    qv_session_free(s);
}

Test(proxy, proxy_error_response_is_a_response, .timeout = 30)
{
    clear_env_proxies();
    /* The proxy refuses any host but loopback with its own 403; the target
     * (a .invalid name, RFC 2606) is never resolved or contacted. */
    qv_session *s = TX_SESSION(.proxy = tx_proxy_url());
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, "http://quiver-test.invalid/get"), QV_OK);
    qv_response *r = tx_expect_status(f, 403);
    expect_proxied(r);
    cr_assert_eq(qv_response_raise_for_status(r), QV_EHTTP);
    qv_future_release(f);
    qv_session_free(s);
}

Test(proxy, proxy_down_is_eproxy, .timeout = 30)
{
    clear_env_proxies();
    char proxy[64];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", tx_closed_port());
    qv_session *s = TX_SESSION(.proxy = proxy);
    qv_future *f;
    double t0 = now_ms();
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK, "submitting never fails because of the network");
    tx_expect_error(f, QV_EPROXY);
    cr_assert_lt(now_ms() - t0, 5000.0);
    cr_assert_eq(qv_future_state_get(f), QV_FAILED);
    qv_future_release(f);
    qv_session_free(s);
}

Test(proxy, https_through_a_tunnel, .timeout = 30)
{
    clear_env_proxies();
    qv_session *s = TX_SESSION(.proxy = tx_proxy_url(), .ca_file = tx_tls_ca());
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tx_tls_url("/hello")), QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    tx_assert_str_eq(qv_response_text(r), "hello tls");
    qv_future_release(f);
    qv_session_free(s);
}

Test(proxy, tunnel_refused_by_the_proxy_is_eproxy, .timeout = 30)
{
    clear_env_proxies();
    /* CONNECT to a host the proxy refuses: its 403 is the proxy refusing,
     * not a response from the target. */
    qv_session *s = TX_SESSION(.proxy = tx_proxy_url());
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, "https://quiver-test.invalid/"), QV_OK);
    tx_expect_error(f, QV_EPROXY);
    qv_future_release(f);

    /* CONNECT to a loopback port where nothing listens: the proxy answers
     * 502. Without the proxy this would be QV_ECONNECT. */
    char url[64];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/", tx_closed_port());
    cr_assert_eq(qv_get(s, &f, url), QV_OK);
    tx_expect_error(f, QV_EPROXY);
    qv_future_release(f);
    qv_session_free(s);
}

Test(proxy, environment_proxy_is_honoured, .timeout = 30)
{
    use_env_proxy();
    qv_session *s = TX_SESSION();
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/get"));
    expect_proxied(r);
    tx_assert_str_eq(tx_jstr(tx_json(r), "url"), tu("/get"));
    qv_future_release(f);
    qv_session_free(s);
}

Test(proxy, environment_no_proxy_is_honoured, .timeout = 30)
{
    use_env_proxy();
    cr_assert_eq(setenv("no_proxy", "127.0.0.1", 1), 0);
    qv_session *s = TX_SESSION();
    qv_future *f;
    /* 127.0.0.1 is in no_proxy: straight to httpbin... */
    expect_direct(tx_get_ok(s, &f, tu("/get")));
    qv_future_release(f);
    /* ...localhost is not: through the proxy. */
    expect_proxied(tx_get_ok(s, &f, tu_host("localhost", "/get")));
    qv_future_release(f);
    qv_session_free(s);
}

Test(proxy, explicit_proxy_wins_over_the_environment, .timeout = 30)
{
    /* The environment names a dead proxy; the session's own one is used. */
    char dead[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d", tx_closed_port());
    clear_env_proxies();
    cr_assert_eq(setenv("http_proxy", dead, 1), 0);
    qv_session *s = TX_SESSION(.proxy = tx_proxy_url());
    qv_future *f;
    expect_proxied(tx_get_ok(s, &f, tu("/get")));
    qv_future_release(f);
    qv_session_free(s);
}

Test(proxy, explicit_proxy_not_bypassed_by_environment_no_proxy, .timeout = 30)
{
    /* no_proxy belongs to the environment's proxies: a proxy the session
     * names is used for every host, like requests' proxies=. (scripts/test
     * itself exports no_proxy=127.0.0.1,localhost.) */
    clear_env_proxies();
    cr_assert_eq(setenv("no_proxy", "127.0.0.1,localhost", 1), 0);
    qv_session *s = TX_SESSION(.proxy = tx_proxy_url());
    qv_future *f;
    expect_proxied(tx_get_ok(s, &f, tu("/get")));
    qv_future_release(f);
    qv_session_free(s);
}

Test(proxy, no_proxy_without_environment, .timeout = 30)
{
    /* Control for the tests above: with no proxy anywhere, no Via. */
    clear_env_proxies();
    cr_assert_eq(unsetenv("HTTP_PROXY"), 0);
    qv_session *s = TX_SESSION();
    qv_future *f;
    expect_direct(tx_get_ok(s, &f, tu("/get")));
    qv_future_release(f);
    qv_session_free(s);
}
