/* Errors: timeouts, refused connections, bad URLs, header injection, size
 * limits, and the error table. */
#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

TestSuite(errors, .timeout = 30);

Test(errors, total_timeout, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    double t0 = now_ms();
    cr_assert_eq(qv_get(s, &f, tu("/delay/3"), .timeout_ms = 500), QV_OK);
    const char *msg = tx_expect_error(f, QV_ETIMEOUT);
    double el = now_ms() - t0;
    cr_assert(el >= 400.0 && el < 2000.0, "timed out after %.0f ms (timeout 500 ms)", el);
    tx_assert_contains(msg, "/delay/3");
    cr_assert_eq(qv_future_state_get(f), QV_FAILED);
    qv_future_release(f);
    qv_session_free(s);
}

Test(errors, session_timeout, .timeout = 30)
{
    qv_session *s = TX_SESSION(.timeout_ms = 500);
    qv_future *f;
    double t0 = now_ms();
    cr_assert_eq(qv_get(s, &f, tu("/delay/3")), QV_OK);
    tx_expect_error(f, QV_ETIMEOUT);
    cr_assert_lt(now_ms() - t0, 2000.0);
    qv_future_release(f);
    /* -1 on the request lifts the session's limit. */
    cr_assert_eq(qv_get(s, &f, tu("/delay/1"), .timeout_ms = -1), QV_OK);
    tx_expect_status(f, 200);
    qv_future_release(f);
    qv_session_free(s);
}

Test(errors, read_timeout, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    double t0 = now_ms();
    cr_assert_eq(qv_get(s, &f, tu("/delay/3"), .read_timeout_ms = 1000), QV_OK);
    tx_expect_error(f, QV_EREAD_TIMEOUT);
    double el = now_ms() - t0;
    cr_assert(el >= 800.0 && el < 2800.0, "read timeout after %.0f ms (read timeout 1000 ms)", el);
    qv_future_release(f);
    qv_session_free(s);
}

Test(errors, read_timeout_not_hit_by_a_slow_but_steady_body, .timeout = 30)
{
    /* /drip sends a byte every 0.5 s for 2 s: never 1 s without bytes. */
    qv_session *s = TX_SESSION(.read_timeout_ms = 1000);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/drip?numbytes=4&duration=2&delay=0&code=200")), QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    size_t len = 0;
    qv_response_body(r, &len);
    cr_assert_eq(len, 4);
    qv_future_release(f);
    qv_session_free(s);
}

Test(errors, connection_refused, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    int port = tx_closed_port();
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/get", port);
    qv_future *f;
    double t0 = now_ms();
    cr_assert_eq(qv_get(s, &f, url), QV_OK, "submitting never fails because of the network");
    const char *msg = tx_expect_error(f, QV_ECONNECT);
    cr_assert_lt(now_ms() - t0, 5000.0);
    tx_assert_contains(msg, url);
    cr_assert_eq(qv_future_state_get(f), QV_FAILED);
    qv_future_release(f);
    qv_session_free(s);
}

/* A loopback port where connecting hangs: a socket that listens with a
 * backlog of 0 and never accepts, its accept queue filled by our own
 * non-blocking connects. Linux then drops further SYNs (the client retries
 * after 1 s, 3 s, ...), so a connect there neither succeeds nor is refused.
 * fds[0] is the listener, the rest the fillers; close them all after. */
#define BLACKHOLE_FILLERS 4
static int blackhole_port(int fds[1 + BLACKHOLE_FILLERS])
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(l >= 0, "socket() failed");
    cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof sa), 0, "bind() failed");
    cr_assert_eq(listen(l, 0), 0, "listen() failed");
    socklen_t len = sizeof sa;
    cr_assert_eq(getsockname(l, (struct sockaddr *)&sa, &len), 0, "getsockname() failed");
    fds[0] = l;
    for (int i = 1; i <= BLACKHOLE_FILLERS; i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        cr_assert(c >= 0, "socket() failed");
        int rc = connect(c, (struct sockaddr *)&sa, sizeof sa);
        cr_assert(rc == 0 || errno == EINPROGRESS, "filler connect() failed: %s", strerror(errno));
        fds[i] = c;
    }
    return ntohs(sa.sin_port);
}

Test(errors, connect_timeout, .timeout = 30)
{
    int fds[1 + BLACKHOLE_FILLERS];
    int port = blackhole_port(fds);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    qv_session *s = TX_SESSION();
    qv_future *f;
    double t0 = now_ms();
    cr_assert_eq(qv_get(s, &f, url, .connect_timeout_ms = 500), QV_OK);
    const char *msg = tx_expect_error(f, QV_ECONNECT_TIMEOUT);
    double el = now_ms() - t0;
    cr_assert(el >= 400.0 && el < 3000.0,
              "connect timed out after %.0f ms (connect timeout 500 ms)", el);
    tx_assert_contains(msg, url);
    cr_assert_eq(qv_future_state_get(f), QV_FAILED);
    qv_future_release(f);

    /* The same from the session's setting; a generous total timeout does
     * not turn it into QV_ETIMEOUT. */
    qv_session_free(s);
    s = TX_SESSION(.connect_timeout_ms = 500, .timeout_ms = 20000);
    t0 = now_ms();
    cr_assert_eq(qv_get(s, &f, url), QV_OK);
    tx_expect_error(f, QV_ECONNECT_TIMEOUT);
    el = now_ms() - t0;
    cr_assert(el < 3000.0, "connect timed out after %.0f ms (connect timeout 500 ms)", el);
    qv_future_release(f);
    qv_session_free(s);
    for (int i = 0; i <= BLACKHOLE_FILLERS; i++) close(fds[i]);
}

static void expect_bad_url(qv_session *s, const char *url)
{
    qv_future *f = NULL;
    int rc = qv_get(s, &f, url);
    cr_assert_eq(rc, QV_OK, "bad URL \"%s\" should fail at result, submit gave %s", url,
                 qv_errname(rc));
    const char *msg = tx_expect_error(f, QV_EURL);
    tx_assert_contains(msg, url);
    cr_assert_eq(qv_future_state_get(f), QV_FAILED);
    qv_future_release(f);
}

Test(errors, invalid_urls_fail_at_result, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    expect_bad_url(s, "http://");
    expect_bad_url(s, "not a url");
    expect_bad_url(s, "file:///etc/passwd");
    expect_bad_url(s, "ftp://127.0.0.1/");
    qv_session_free(s);
}

/* A URL that only libcurl's parse refuses (submit's quick look passes it),
 * again and again on one handle: each time QV_EURL (the handle keeps its
 * last URL, and parses a repeated one once). */
Test(errors, a_url_libcurl_refuses_fails_each_time_it_repeats, .timeout = 30)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    for (int i = 0; i < 3; i++) expect_bad_url(s, "http://127.0.0.1:99999/");
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK);
    tx_expect_status(f, 200); /* and the handle serves the next URL */
    qv_future_release(f);
    qv_session_free(s);
}

static void expect_einval(int rc, qv_future *f, qv_future *sentinel, const char *what)
{
    cr_assert_eq(rc, QV_EINVAL, "%s: submit gave %s, expected QV_EINVAL", what, qv_errname(rc));
    cr_assert(f == sentinel || f == NULL, "%s: *out was set to a future on error", what);
}

Test(errors, header_injection_rejected_at_submit, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    static int marker;
    qv_future *const sentinel = (qv_future *)(void *)&marker;
    qv_future *f;

    f = sentinel;
    expect_einval(qv_get(s, &f, tu("/get"),
                         .headers = (const qv_header[]){{"X-Ok", "a\r\nX-Injected: 1"}, {0}}),
                  f, sentinel, "CRLF in a header value");
    f = sentinel;
    expect_einval(qv_get(s, &f, tu("/get"), .headers = (const qv_header[]){{"X-Ok", "a\nb"}, {0}}),
                  f, sentinel, "LF in a header value");
    f = sentinel;
    expect_einval(qv_get(s, &f, tu("/get"), .headers = (const qv_header[]){{"X-Ok", "a\rb"}, {0}}),
                  f, sentinel, "CR in a header value");
    f = sentinel;
    expect_einval(qv_get(s, &f, tu("/get"),
                         .headers = (const qv_header[]){{"X-Bad\r\nX-Injected", "1"}, {0}}),
                  f, sentinel, "CRLF in a header name");
    f = sentinel;
    expect_einval(qv_get(s, &f, "http://127.0.0.1/get\r\nX-Injected: 1"), f, sentinel,
                  "CRLF in the URL");
    f = sentinel;
    expect_einval(qv_get(s, &f, NULL), f, sentinel, "NULL URL");
    f = sentinel;
    expect_einval(qv_request(s, &f, NULL), f, sentinel, "NULL options");

    /* The session is still fine afterwards. */
    tx_get_ok(s, &f, tu("/get"));
    qv_future_release(f);
    qv_session_free(s);
}

Test(errors, session_header_injection_rejected, .timeout = 30)
{
    qv_session *s = NULL;
    int rc = qv_session_new(
        &s, &(qv_session_opts){.size = sizeof(qv_session_opts),
                               .executor_kind = tx_kind(),
                               .headers = (const qv_header[]){{"X-Ok", "a\r\nb: c"}, {0}}});
    cr_assert_eq(rc, QV_EINVAL, "session with a CRLF header gave %s", qv_errname(rc));
    cr_assert_null(s);
}

Test(errors, max_response_bytes, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/bytes/1000"), .max_response_bytes = 100), QV_OK);
    tx_expect_error(f, QV_ETOO_LARGE);
    qv_future_release(f);

    /* Under the limit is fine. */
    cr_assert_eq(qv_get(s, &f, tu("/bytes/1000"), .max_response_bytes = 2000), QV_OK);
    size_t len = 0;
    qv_response_body(tx_expect_status(f, 200), &len);
    cr_assert_eq(len, 1000);
    qv_future_release(f);

    /* Chunked, no Content-Length: the limit still holds. */
    cr_assert_eq(qv_get(s, &f, tu("/stream-bytes/5000?chunk_size=100"), .max_response_bytes = 1000),
                 QV_OK);
    tx_expect_error(f, QV_ETOO_LARGE);
    qv_future_release(f);
    qv_session_free(s);
}

Test(errors, error_table, .timeout = 30)
{
    for (int i = 0; i < QV_ERROR_COUNT_; i++) {
        const char *name = qv_errname(i);
        const char *msg = qv_strerror(i);
        cr_assert_not_null(name, "qv_errname(%d) is NULL", i);
        cr_assert_not_null(msg, "qv_strerror(%d) is NULL", i);
        cr_assert(name[0] != '\0' && msg[0] != '\0', "empty name or message for %d", i);
        cr_assert(strncmp(name, "QV_", 3) == 0, "name \"%s\" does not start with QV_", name);
        for (int k = 0; k < i; k++) {
            cr_assert_str_neq(qv_errname(k), name, "codes %d and %d share the name %s", k, i, name);
        }
    }
    cr_assert_str_eq(qv_errname(QV_OK), "QV_OK");
    cr_assert_str_eq(qv_errname(QV_ECONNECT), "QV_ECONNECT");
    cr_assert_str_eq(qv_errname(QV_EWAIT_TIMEOUT), "QV_EWAIT_TIMEOUT");
    cr_assert_str_eq(qv_errname(QV_ETRANSFER), "QV_ETRANSFER");
    static const int unknown[] = {-1, QV_ERROR_COUNT_, 999, -1000};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        cr_assert_not_null(qv_errname(unknown[i]), "qv_errname(%d) is NULL", unknown[i]);
        cr_assert_not_null(qv_strerror(unknown[i]), "qv_strerror(%d) is NULL", unknown[i]);
    }
}
