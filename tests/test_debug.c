/* The debug trace (.on_debug): header lines out and in, libcurl's info
 * lines, body bytes only with .debug_body, and secrets redacted. With
 * QV_PROCESSES the events cross from the worker and the callback runs in
 * this process, so the same checks hold on every executor. (QV_DEBUG's
 * printing to stderr is checked through the quiver tool: test_cli_get.c.) */
#include "support.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

TestSuite(debug, .timeout = 30);

#define MAX_EVENTS 512

typedef struct trace {
    pthread_mutex_t mu;
    size_t n;
    qv_debug_kind kind[MAX_EVENTS];
    char *data[MAX_EVENTS];
    size_t len[MAX_EVENTS];
    qv_future *f[MAX_EVENTS];
    qv_session *session;
} trace;

static void record(qv_future *f, qv_debug_kind kind, const char *data, size_t len, void *arg)
{
    trace *t = arg;
    pthread_mutex_lock(&t->mu);
    if (t->n < MAX_EVENTS) {
        t->kind[t->n] = kind;
        t->data[t->n] = strndup(data, len);
        t->len[t->n] = len;
        t->f[t->n] = f;
        t->n++;
    }
    pthread_mutex_unlock(&t->mu);
}

static trace *trace_new(void)
{
    trace *t = calloc(1, sizeof(*t));
    cr_assert_not_null(t);
    pthread_mutex_init(&t->mu, NULL);
    return t;
}

static void trace_free(trace *t)
{
    for (size_t i = 0; i < t->n; i++) free(t->data[i]);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* The event of `kind` whose data is `line` exactly, or NULL. */
static const char *find(trace *t, qv_debug_kind kind, const char *line)
{
    const char *hit = NULL;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n && !hit; i++)
        if (t->kind[i] == kind && strcmp(t->data[i], line) == 0) hit = t->data[i];
    pthread_mutex_unlock(&t->mu);
    return hit;
}

/* The first event of `kind` that contains `part` (any kind: -1), or NULL. */
static const char *find_part(trace *t, int kind, const char *part)
{
    const char *hit = NULL;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n && !hit; i++)
        if ((kind < 0 || (int)t->kind[i] == kind) && strstr(t->data[i], part)) hit = t->data[i];
    pthread_mutex_unlock(&t->mu);
    return hit;
}

static size_t count(trace *t, qv_debug_kind kind)
{
    size_t c = 0;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n; i++) c += t->kind[i] == kind;
    pthread_mutex_unlock(&t->mu);
    return c;
}

#define expect_line(t, kind, line)                                                                 \
    cr_assert_not_null(find((t), (kind), (line)), "no %s event \"%s\"", #kind, (line))

Test(debug, headers_out_and_in_and_info, .timeout = 30)
{
    trace *t = trace_new();
    qv_session *s = TX_SESSION(.on_debug = record, .on_debug_arg = t);
    qv_future *f;
    cr_assert_eq(
        qv_get(s, &f, tu("/headers"), .headers = (const qv_header[]){{"X-Visible", "yes"}, {0}}),
        QV_OK);
    tx_expect_status(f, 200);
    expect_line(t, QV_DEBUG_HEADER_OUT, "GET /headers HTTP/1.1");
    expect_line(t, QV_DEBUG_HEADER_OUT, "X-Visible: yes");
    expect_line(t, QV_DEBUG_HEADER_IN, "HTTP/1.1 200 OK");
    expect_line(t, QV_DEBUG_HEADER_IN, "Content-Type: application/json");
    cr_assert_not_null(find_part(t, QV_DEBUG_INFO, "Connected to 127.0.0.1"));
    /* One line per event: no line ends, no empty events; no body bytes. */
    for (size_t i = 0; i < t->n; i++) {
        cr_assert(t->len[i] > 0 && !memchr(t->data[i], '\n', t->len[i]) &&
                      !memchr(t->data[i], '\r', t->len[i]),
                  "event %zu is not one line: \"%s\"", i, t->data[i]);
        cr_assert_eq(t->f[i], f, "event %zu is not of the request's future", i);
    }
    cr_assert_eq(count(t, QV_DEBUG_DATA_IN) + count(t, QV_DEBUG_DATA_OUT), 0);
    qv_future_release(f);
    qv_session_free(s);
    trace_free(t);
}

Test(debug, secrets_are_redacted, .timeout = 30)
{
    trace *t = trace_new();
    qv_session *s = TX_SESSION(.on_debug = record, .on_debug_arg = t);
    qv_future *f;
    cr_assert_eq(
        qv_get(s, &f, tu("/headers"),
               .headers = (const qv_header[]){{"Authorization", "Bearer tok-s3cret"},
                                              {"Proxy-Authorization", "Basic cHJveHk6czNjcmV0"},
                                              {"Cookie", "a=c00kie-s3cret; b=other-s3cret"},
                                              {0}}),
        QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    /* The server did get them. */
    tx_assert_str_eq(tx_jstr(tx_json(r), "headers/Authorization"), "Bearer tok-s3cret");
    expect_line(t, QV_DEBUG_HEADER_OUT, "Authorization: Bearer [redacted]");
    expect_line(t, QV_DEBUG_HEADER_OUT, "Proxy-Authorization: Basic [redacted]");
    expect_line(t, QV_DEBUG_HEADER_OUT, "Cookie: a=[redacted]; b=[redacted]");
    qv_future_release(f);

    /* Set-Cookie in, and the jar's Cookie out on the redirect it makes. */
    cr_assert_eq(qv_get(s, &f, tu("/cookies/set?k=jar-s3cret")), QV_OK);
    tx_expect_status(f, 200);
    const char *set = find_part(t, QV_DEBUG_HEADER_IN, "Set-Cookie:");
    cr_assert_not_null(set);
    cr_assert(strncmp(set, "Set-Cookie: k=[redacted]; Path=/", 32) == 0, "%s", set);
    expect_line(t, QV_DEBUG_HEADER_OUT, "Cookie: k=[redacted]");
    qv_future_release(f);

    /* Basic credentials from the URL and from .auth. */
    char url[512];
    snprintf(url, sizeof(url), "http://user:url-s3cret@%s/basic-auth/user/url-s3cret",
             tu("") + strlen("http://"));
    cr_assert_eq(qv_get(s, &f, url), QV_OK);
    tx_expect_status(f, 200);
    qv_future_release(f);
    cr_assert_eq(
        qv_get(s, &f, tu("/basic-auth/u/auth-s3cret"), .username = "u", .password = "auth-s3cret"),
        QV_OK);
    tx_expect_status(f, 200);
    qv_future_release(f);

    /* A redirect to a URL with a password: its Location, libcurl's line
     * about it. */
    snprintf(url, sizeof(url), "http://u:redir-s3cret@%s/basic-auth/u/redir-s3cret",
             tu("") + strlen("http://"));
    cr_assert_eq(qv_get(s, &f, tu("/redirect-to"), .params = (const qv_param[]){{"url", url}, {0}}),
                 QV_OK);
    tx_expect_status(f, 200);
    qv_future_release(f);
    cr_assert_not_null(find_part(t, QV_DEBUG_HEADER_IN, "Location: http://u:[redacted]@"));
    cr_assert_not_null(find(t, QV_DEBUG_HEADER_OUT, "Authorization: Basic [redacted]"));
    /* Not in any event, whatever its kind (httpbin wants the password and
     * the cookie in the URL's path or query: the request line has them). */
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n; i++) {
        const char *d = t->data[i];
        cr_assert(!strstr(d, "tok-s3cret") && !strstr(d, "czNjcmV0") && !strstr(d, "c00kie") &&
                      !strstr(d, "other-s3cret") &&
                      (!strstr(d, "auth-s3cret") || strstr(d, "GET /basic-auth/u/auth-s3cret")) &&
                      !strstr(d, ":url-s3cret@") && !strstr(d, ":redir-s3cret@") &&
                      (!strstr(d, "jar-s3cret") || strstr(d, "GET /cookies/set?k=jar-s3cret")),
                  "a secret in event %zu: \"%s\"", i, d);
    }
    pthread_mutex_unlock(&t->mu);
    qv_session_free(s);
    trace_free(t);
}

Test(debug, body_bytes_only_when_asked, .timeout = 30)
{
    trace *t = trace_new();
    qv_session *s = TX_SESSION(.on_debug = record, .on_debug_arg = t);
    qv_future *f;
    cr_assert_eq(qv_post(s, &f, tu("/anything"), .body = "body-out-123"), QV_OK);
    tx_expect_status(f, 200);
    qv_future_release(f);
    cr_assert_eq(count(t, QV_DEBUG_DATA_OUT) + count(t, QV_DEBUG_DATA_IN), 0);

    /* Asked for by the request; bytes as they went (never redacted). */
    cr_assert_eq(qv_post(s, &f, tu("/anything"), .body = "body-out-123", .debug_body = 1,
                         .headers = (const qv_header[]){{"Accept-Encoding", "identity"}, {0}}),
                 QV_OK);
    tx_expect_status(f, 200);
    qv_future_release(f);
    cr_assert_not_null(find_part(t, QV_DEBUG_DATA_OUT, "body-out-123"));
    cr_assert_not_null(find_part(t, QV_DEBUG_DATA_IN, "body-out-123"));
    qv_session_free(s);
    trace_free(t);
}

Test(debug, request_callback_replaces_the_sessions, .timeout = 30)
{
    trace *ts = trace_new(), *tr = trace_new();
    qv_session *s = TX_SESSION(.on_debug = record, .on_debug_arg = ts);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get?who=request"), .on_debug = record, .on_debug_arg = tr),
                 QV_OK);
    tx_expect_status(f, 200);
    qv_future_release(f);
    expect_line(tr, QV_DEBUG_HEADER_OUT, "GET /get?who=request HTTP/1.1");
    cr_assert_eq(ts->n, 0);

    /* Retries: each attempt's lines. */
    cr_assert_eq(
        qv_get(s, &f, tu("/status/503"), .retry = &(qv_retry){.max_retries = 1, .backoff_ms = 1}),
        QV_OK);
    tx_expect_status(f, 503);
    qv_future_release(f);
    cr_assert_eq(count(ts, QV_DEBUG_HEADER_OUT) > 0, 1);
    size_t requests = 0;
    for (size_t i = 0; i < ts->n; i++)
        requests +=
            ts->kind[i] == QV_DEBUG_HEADER_OUT && !strcmp(ts->data[i], "GET /status/503 HTTP/1.1");
    cr_assert_eq(requests, 2);
    qv_session_free(s);
    trace_free(ts);
    trace_free(tr);
}

/* Reads the jar at every event: libcurl's comments on its cookie engine
 * come from inside it, under the jar's lock, and must wait until it is let
 * go (else this deadlocks on the transfer's thread). */
static void read_jar(qv_future *f, qv_debug_kind kind, const char *data, size_t len, void *arg)
{
    record(f, kind, data, len, arg);
    char buf[64];
    qv_session *s = ((trace *)arg)->session;
    qv_session_cookie(s, "k", buf, sizeof(buf));
}

Test(debug, callback_may_read_the_jar, .timeout = 30)
{
    trace *t = trace_new();
    qv_session *s = TX_SESSION(.on_debug = read_jar, .on_debug_arg = t);
    t->session = s;
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/cookies/set?k=v")), QV_OK);
    tx_expect_status(f, 200);
    qv_future_release(f);
    tx_expect_cookie(s, "k", "v");
    /* libcurl's comment on it came, when the lock was let go. */
    cr_assert_not_null(find_part(t, QV_DEBUG_INFO, "Added cookie k=\"[redacted]\""));
    qv_session_free(s);
    trace_free(t);
}
