/* TLS: verification on by default, a CA file to trust, skipping verification
 * per session and per request (both ways), host name checks.
 *
 * The server is tests/servers/tls_server.py at QV_TLS_URL, with a certificate
 * for 127.0.0.1 and localhost issued by a throwaway CA (QV_TLS_CA) that no
 * system trusts. */
#include "support.h"

#include <string.h>

TestSuite(tls, .timeout = 30);

/* Asserts f ends with the TLS server's 200 "hello tls"; returns it. */
static qv_response *expect_hello(qv_future *f)
{
    qv_response *r = tx_expect_status(f, 200);
    tx_assert_str_eq(qv_response_text(r), "hello tls");
    tx_assert_str_eq(qv_response_header(r, "Content-Type"), "text/plain");
    return r;
}

Test(tls, verification_is_on_by_default, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    const char *url = tx_tls_url("/hello");
    cr_assert_eq(qv_get(s, &f, url), QV_OK);
    const char *msg = tx_expect_error(f, QV_ETLS);
    tx_assert_contains(msg, url);
    cr_assert_eq(qv_future_state_get(f), QV_FAILED);
    qv_future_release(f);
    qv_session_free(s);
}

Test(tls, ca_file_verifies, .timeout = 30)
{
    qv_session *s = TX_SESSION(.ca_file = tx_tls_ca());
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tx_tls_url("/hello")), QV_OK);
    expect_hello(f);
    qv_future_release(f);

    /* The certificate names localhost too (subjectAltName DNS). */
    const char *url = tx_tls_url("/hello");
    char local[256];
    const char *host = strstr(url, "127.0.0.1");
    cr_assert_not_null(host, "QV_TLS_URL %s is not on 127.0.0.1", url);
    snprintf(local, sizeof local, "https://localhost%s", host + strlen("127.0.0.1"));
    cr_assert_eq(qv_get(s, &f, local), QV_OK);
    tx_assert_str_eq(qv_response_url(expect_hello(f)), local);
    qv_future_release(f);

    /* A 404 over TLS is a response like any other. */
    cr_assert_eq(qv_get(s, &f, tx_tls_url("/nope")), QV_OK);
    tx_expect_status(f, 404);
    qv_future_release(f);
    qv_session_free(s);
}

Test(tls, ca_file_that_does_not_sign_the_server_fails, .timeout = 30)
{
    /* The system bundle is a valid CA file, but our throwaway CA is not in it. */
    qv_session *s = TX_SESSION(.ca_file = "/etc/ssl/certs/ca-certificates.crt");
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tx_tls_url("/hello")), QV_OK);
    tx_expect_error(f, QV_ETLS);
    qv_future_release(f);
    qv_session_free(s);
}

Test(tls, missing_ca_file_fails_at_result, .timeout = 30)
{
    qv_session *s = TX_SESSION(.ca_file = "/nonexistent/quiver-test-ca.pem");
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tx_tls_url("/hello")), QV_OK,
                 "a CA file is only read when the transfer runs");
    tx_expect_error(f, QV_ETLS);
    qv_future_release(f);
    qv_session_free(s);
}

/* One transfer handle (max_workers = 1) serves sessions with a CA file,
 * none, the first again, another one: each request is verified against its
 * own session's CA file, not the one the handle had before. */
Test(tls, ca_file_follows_the_session_on_one_handle, .timeout = 30)
{
    qv_executor *ex = tx_executor(1);
    const char *cas[] = {tx_tls_ca(), NULL,       tx_tls_ca(), "/etc/ssl/certs/ca-certificates.crt",
                         tx_tls_ca(), tx_tls_ca()};
    for (size_t i = 0; i < sizeof(cas) / sizeof(cas[0]); i++) {
        qv_session *s = TX_SESSION(.executor = ex, .ca_file = cas[i]);
        qv_future *f;
        cr_assert_eq(qv_get(s, &f, tx_tls_url("/hello")), QV_OK);
        if (cas[i] && strcmp(cas[i], tx_tls_ca()) == 0)
            expect_hello(f);
        else
            tx_expect_error(f, QV_ETLS);
        qv_future_release(f);
        qv_session_free(s);
    }
    qv_executor_free(ex);
}

Test(tls, insecure_session, .timeout = 30)
{
    qv_session *s = TX_SESSION(.insecure = 1);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tx_tls_url("/hello")), QV_OK);
    expect_hello(f);
    qv_future_release(f);
    qv_session_free(s);
}

Test(tls, per_request_insecure_over_a_verifying_session, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tx_tls_url("/hello"), .insecure = 1), QV_OK);
    expect_hello(f);
    qv_future_release(f);

    /* The next request verifies again, even though a connection to the same
     * server (made without verification) may be open for reuse. */
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(qv_get(s, &f, tx_tls_url("/hello")), QV_OK);
        tx_expect_error(f, QV_ETLS);
        qv_future_release(f);
    }
    qv_session_free(s);
}

Test(tls, per_request_secure_over_an_insecure_session, .timeout = 30)
{
    qv_session *s = TX_SESSION(.insecure = 1);
    qv_future *f;
    /* First an insecure request, leaving a connection open for reuse... */
    cr_assert_eq(qv_get(s, &f, tx_tls_url("/hello")), QV_OK);
    expect_hello(f);
    qv_future_release(f);
    /* ...which a verifying request must not use. */
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(qv_get(s, &f, tx_tls_url("/hello"), .insecure = -1), QV_OK);
        tx_expect_error(f, QV_ETLS);
        qv_future_release(f);
    }
    /* The session's own setting is untouched. */
    cr_assert_eq(qv_get(s, &f, tx_tls_url("/hello")), QV_OK);
    expect_hello(f);
    qv_future_release(f);
    qv_session_free(s);
}

Test(tls, host_name_mismatch, .timeout = 30)
{
    /* libcurl resolves every *.localhost name to loopback by itself (RFC
     * 6761), so this reaches the same server under a name that its
     * certificate does not carry: trusting the CA is not enough. */
    const char *url = tx_tls_url("/hello");
    const char *host = strstr(url, "127.0.0.1");
    cr_assert_not_null(host, "QV_TLS_URL %s is not on 127.0.0.1", url);
    char other[256];
    snprintf(other, sizeof other, "https://wrong-name.localhost%s", host + strlen("127.0.0.1"));

    qv_session *s = TX_SESSION(.ca_file = tx_tls_ca());
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, other), QV_OK);
    const char *msg = tx_expect_error(f, QV_ETLS);
    tx_assert_contains(msg, "wrong-name.localhost");
    qv_future_release(f);

    /* insecure skips the host name check as well. */
    cr_assert_eq(qv_get(s, &f, other, .insecure = 1), QV_OK);
    expect_hello(f);
    qv_future_release(f);
    qv_session_free(s);
}
