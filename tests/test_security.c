/* Safety across redirects: credentials, Authorization and Cookie headers and
 * jar cookies are not sent to another host after a redirect, but still are
 * to the same host; redirects to non-HTTP schemes are refused.
 *
 * 127.0.0.1 and localhost are two hosts for libcurl (and for cookies) but the
 * same httpbin: tu_host("localhost", path) is the "other host". */
#include "support.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

TestSuite(security, .timeout = 30);

/* GET /redirect-to?url=<target> on 127.0.0.1 with the request's extra
 * headers (may be NULL); asserts the redirect was followed to target with
 * 200 and returns the JSON that httpbin echoed there. */
static json_t *follow_to(qv_session *s, qv_future **f, const char *target, const qv_header *headers)
{
    cr_assert_eq(qv_get(s, f, tu("/redirect-to"),
                        .params = (const qv_param[]){{"url", target}, {0}}, .headers = headers),
                 QV_OK);
    qv_response *r = tx_expect_status(*f, 200);
    cr_assert_eq(qv_response_history_len(r), 1, "history has %zu entries, expected 1",
                 qv_response_history_len(r));
    tx_assert_str_eq(qv_response_url(r), target);
    return tx_json(r);
}

/* Asserts the echoed request headers have no `name`. */
static void expect_no_header(json_t *j, const char *name, const char *why)
{
    json_t *h = tx_jget(j, "headers");
    cr_assert(json_is_object(h), "no \"headers\" object in the echo");
    json_t *v = json_object_get(h, name);
    cr_assert_null(v, "%s: the server received %s: %s", why, name,
                   json_is_string(v) ? json_string_value(v) : "?");
}

#define BASIC_USER_PASSWD "Basic dXNlcjpwYXNzd2Q=" /* user:passwd */

Test(security, session_credentials_not_sent_to_another_host, .timeout = 30)
{
    qv_session *s = TX_SESSION(.auth = QV_AUTH_BASIC, .username = "user", .password = "passwd");
    qv_future *f;
    json_t *j = follow_to(s, &f, tu_host("localhost", "/headers"), NULL);
    expect_no_header(j, "Authorization", "redirected from 127.0.0.1 to localhost");
    qv_future_release(f);

    /* Control: to the same host they are sent. */
    j = follow_to(s, &f, tu("/headers"), NULL);
    tx_assert_str_eq(tx_jstr(j, "headers/Authorization"), BASIC_USER_PASSWD);
    qv_future_release(f);

    /* And the session still sends them to localhost when asked directly. */
    qv_response *r = tx_get_ok(s, &f, tu_host("localhost", "/headers"));
    tx_assert_str_eq(tx_jstr(tx_json(r), "headers/Authorization"), BASIC_USER_PASSWD);
    qv_future_release(f);
    qv_session_free(s);
}

Test(security, request_credentials_not_sent_to_another_host, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    /* A bearer token (QV_AUTH_BEARER) given per request. */
    cr_assert_eq(
        qv_get(s, &f, tu("/redirect-to"),
               .params = (const qv_param[]){{"url", tu_host("localhost", "/headers")}, {0}},
               .auth = QV_AUTH_BEARER, .password = "s3cr3t-token"),
        QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    tx_assert_str_eq(qv_response_url(r), tu_host("localhost", "/headers"));
    expect_no_header(tx_json(r), "Authorization", "bearer token after a cross-host redirect");
    qv_future_release(f);

    cr_assert_eq(qv_get(s, &f, tu("/redirect-to"),
                        .params = (const qv_param[]){{"url", tu("/headers")}, {0}},
                        .auth = QV_AUTH_BEARER, .password = "s3cr3t-token"),
                 QV_OK);
    r = tx_expect_status(f, 200);
    tx_assert_str_eq(tx_jstr(tx_json(r), "headers/Authorization"), "Bearer s3cr3t-token");
    qv_future_release(f);
    qv_session_free(s);
}

Test(security, authorization_header_not_sent_to_another_host, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    const qv_header auth[] = {{"Authorization", "Token very-secret"}, {"X-Harmless", "yes"}, {0}};
    json_t *j = follow_to(s, &f, tu_host("localhost", "/headers"), auth);
    expect_no_header(j, "Authorization", "custom Authorization header after a cross-host redirect");
    /* Other custom headers do follow the redirect. */
    tx_assert_str_eq(tx_jstr(j, "headers/X-Harmless"), "yes");
    qv_future_release(f);

    j = follow_to(s, &f, tu("/headers"), auth);
    tx_assert_str_eq(tx_jstr(j, "headers/Authorization"), "Token very-secret");
    qv_future_release(f);
    qv_session_free(s);
}

Test(security, session_authorization_header_not_sent_to_another_host, .timeout = 30)
{
    qv_session *s = TX_SESSION(.headers = (const qv_header[]){
                                   {"Authorization", "Token from-the-session"}, {0}});
    qv_future *f;
    json_t *j = follow_to(s, &f, tu_host("localhost", "/headers"), NULL);
    expect_no_header(j, "Authorization",
                     "session Authorization header after a cross-host redirect");
    qv_future_release(f);

    j = follow_to(s, &f, tu("/headers"), NULL);
    tx_assert_str_eq(tx_jstr(j, "headers/Authorization"), "Token from-the-session");
    qv_future_release(f);
    qv_session_free(s);
}

/* A header given with the request is not sent after a redirect to another
 * host, but is to the same host. */
static void expect_header_stays_with_its_host(const char *name, const char *value)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    const qv_header h[] = {{name, value}, {0}};
    json_t *j = follow_to(s, &f, tu_host("localhost", "/headers"), h);
    expect_no_header(j, name, "a header of the request after a cross-host redirect");
    qv_future_release(f);

    j = follow_to(s, &f, tu("/headers"), h);
    char path[64];
    snprintf(path, sizeof path, "headers/%s", name);
    tx_assert_str_eq(tx_jstr(j, path), value);
    qv_future_release(f);
    qv_session_free(s);
}

Test(security, cookie_header_not_sent_to_another_host, .timeout = 30)
{
    expect_header_stays_with_its_host("Cookie", "sid=secret-session");
}

Test(security, jar_cookie_stays_with_its_host, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    /* Set by 127.0.0.1 (httpbin answers with a redirect to /cookies). */
    qv_response *r = tx_get_ok(s, &f, tu("/cookies/set?k=v"));
    tx_assert_str_eq(tx_jstr(tx_json(r), "cookies/k"), "v");
    qv_future_release(f);
    tx_expect_cookie(s, "k", "v");

    /* Not sent to localhost, asked directly... */
    r = tx_get_ok(s, &f, tu_host("localhost", "/cookies"));
    cr_assert_null(tx_jget(tx_json(r), "cookies/k"),
                   "cookie k (set by 127.0.0.1) sent to localhost");
    qv_future_release(f);

    /* ...nor after a redirect there from 127.0.0.1... */
    json_t *j = follow_to(s, &f, tu_host("localhost", "/cookies"), NULL);
    cr_assert_null(tx_jget(j, "cookies/k"), "cookie k sent to localhost after a redirect");
    qv_future_release(f);

    /* ...but still sent to 127.0.0.1. */
    r = tx_get_ok(s, &f, tu("/cookies"));
    tx_assert_str_eq(tx_jstr(tx_json(r), "cookies/k"), "v");
    qv_future_release(f);
    qv_session_free(s);
}

Test(security, redirect_to_non_http_schemes_refused, .timeout = 30)
{
    /* With credentials, so following would also leak them. */
    qv_session *s = TX_SESSION(.auth = QV_AUTH_BASIC, .username = "user", .password = "passwd");
    static const char *const targets[] = {"ftp://127.0.0.1/", "ftp://user@localhost/x",
                                          "dict://127.0.0.1/", "gopher://127.0.0.1/"};
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        qv_future *f;
        cr_assert_eq(qv_get(s, &f, tu("/redirect-to"),
                            .params = (const qv_param[]){{"url", targets[i]}, {0}}),
                     QV_OK);
        qv_response *r = NULL;
        int rc = qv_future_result(f, &r, TX_RESULT_TIMEOUT_MS);
        cr_assert_eq(rc, QV_EURL, "redirect to %s gave %s (%s), expected QV_EURL", targets[i],
                     qv_errname(rc), qv_future_error(f) ? qv_future_error(f) : "no message");
        cr_assert_not_null(qv_future_error(f));
        cr_assert_eq(qv_future_state_get(f), QV_FAILED);
        qv_future_release(f);
    }
    qv_session_free(s);
}

Test(security, crlf_in_multipart_part_headers_rejected_at_submit, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    const qv_part bad[][2] = {
        {{.name = "f", .value = "x", .content_type = "text/plain\r\nX-Injected: 1"}, {0}},
        {{.name = "f", .value = "x", .filename = "a.txt\r\nX-Injected: 1"}, {0}},
        {{.name = "f", .value = "x", .content_type = "text/plain\nX-Injected: 1"}, {0}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qv_future *f = NULL;
        cr_assert_eq(qv_post(s, &f, tu("/post"), .multipart = bad[i]), QV_EINVAL,
                     "part %zu with CR/LF in a part header was accepted", i);
        cr_assert_null(f);
    }
    qv_session_free(s);
}

Test(security, response_json_of_null_sets_err, .timeout = 30)
{
    int err = QV_OK;
    cr_assert_null(qv_response_json(NULL, &err));
    cr_assert_eq(err, QV_EINVAL, "err is %s, expected QV_EINVAL", qv_errname(err));
}

/* A response's URL, its history's URLs and the message of a failure show
 * no userinfo: the password must not leak into logs. */
static void expect_no_userinfo(const char *text, const char *what)
{
    cr_assert_not_null(text, "%s is NULL", what);
    cr_assert_null(strstr(text, "s3cret@"), "%s shows the password: %s", what, text);
    cr_assert_null(strstr(text, "user:"), "%s shows the userinfo: %s", what, text);
}

Test(security, response_urls_show_no_userinfo, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    /* The credentials work (basic auth from the URL), through a redirect. */
    const char *target = "/basic-auth/user/s3cret";
    cr_assert_eq(qv_get(s, &f, tu_host("user:s3cret@127.0.0.1", "/redirect-to"),
                        .params = (const qv_param[]){{"url", target}, {0}}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    expect_no_userinfo(qv_response_url(r), "qv_response_url");
    tx_assert_str_eq(qv_response_url(r), tu(target));
    cr_assert_eq(qv_response_history_len(r), 1);
    expect_no_userinfo(qv_response_url(qv_response_history(r, 0)), "the history entry's URL");
    qv_future_release(f);

    /* Without a redirect too. */
    r = tx_get_ok(s, &f, tu_host("user:s3cret@127.0.0.1", target));
    expect_no_userinfo(qv_response_url(r), "qv_response_url");
    qv_future_release(f);
    qv_session_free(s);
}

Test(security, error_messages_show_no_userinfo, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    char url[128];
    snprintf(url, sizeof url, "http://user:s3cret@127.0.0.1:%d/get", tx_closed_port());
    cr_assert_eq(qv_get(s, &f, url), QV_OK);
    expect_no_userinfo(tx_expect_error(f, QV_ECONNECT), "qv_future_error");
    tx_assert_contains(qv_future_error(f), "127.0.0.1");
    qv_future_release(f);

    /* A URL rejected before any transfer (a bad port), and a cancelled request. */
    cr_assert_eq(qv_get(s, &f, "http://user:s3cret@127.0.0.1:99999/get",
                        .params = (const qv_param[]){{"a", "b"}, {0}}),
                 QV_OK);
    expect_no_userinfo(tx_expect_error(f, QV_EURL), "qv_future_error");
    qv_future_release(f);
    cr_assert_eq(qv_get(s, &f, tu_host("user:s3cret@127.0.0.1", "/delay/10")), QV_OK);
    qv_future_cancel(f);
    expect_no_userinfo(tx_expect_error(f, QV_ECANCELLED), "qv_future_error");
    qv_future_release(f);
    qv_session_free(s);
}

/* What a redirect does to a request's method and body (requests' rules):
 * 303 and 302 turn it into GET, 301 turns POST into GET, and only 307 and
 * 308 send the body again. Checked on what the server saw at the end. */
Test(security, redirect_changes_method_and_drops_body_like_requests, .timeout = 30)
{
    static const struct {
        const char *method, *status, *seen;
        int body_kept;
    } cases[] = {
        {"PUT", "302", "GET", 0},     {"PUT", "303", "GET", 0},    {"PATCH", "302", "GET", 0},
        {"DELETE", "302", "GET", 0},  {"DELETE", "303", "GET", 0}, {"PUT", "301", "PUT", 0},
        {"POST", "301", "GET", 0},    {"POST", "302", "GET", 0},   {"PUT", "307", "PUT", 1},
        {"PATCH", "308", "PATCH", 1}, {"POST", "307", "POST", 1},
    };
    qv_session *s = TX_SESSION();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qv_future *f;
        cr_assert_eq(
            qv_request(s, &f,
                       &(qv_request_opts){
                           .size = sizeof(qv_request_opts),
                           .method = cases[i].method,
                           .url = tu("/redirect-to"),
                           .params = (const qv_param[]){{"url", tu("/anything")},
                                                        {"status_code", cases[i].status},
                                                        {0}},
                           .headers = (const qv_header[]){{"Content-Type", "text/plain"}, {0}},
                           .body = "payload",
                       }),
            QV_OK);
        qv_response *r = tx_expect_status(f, 200);
        cr_assert_eq(qv_response_history_len(r), 1);
        json_t *j = tx_json(r);
        const char *what = cases[i].body_kept ? "payload" : "";
        cr_assert_str_eq(tx_jstr(j, "method"), cases[i].seen, "%s through %s arrived as %s",
                         cases[i].method, cases[i].status, tx_jstr(j, "method"));
        cr_assert_str_eq(tx_jstr(j, "data"), what, "%s through %s arrived with body \"%s\"",
                         cases[i].method, cases[i].status, tx_jstr(j, "data"));
        if (!cases[i].body_kept) expect_no_header(j, "Content-Type", "the body was dropped");
        qv_future_release(f);
    }
    qv_session_free(s);
}

Test(security, redirects_followed_by_quiver_keep_the_limits, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    /* Two redirects (PUT -> GET on the first) with a limit of one. */
    const char *twice = tuf("/redirect-to?url=%s", "%2Fanything");
    cr_assert_eq(qv_put(s, &f, tu("/redirect-to"),
                        .params = (const qv_param[]){{"url", twice}, {0}}, .body = "x",
                        .max_redirects = 1),
                 QV_OK);
    tx_expect_error(f, QV_EREDIRECTS);
    qv_future_release(f);
    /* A redirect to another scheme. */
    cr_assert_eq(qv_put(s, &f, tu("/redirect-to"),
                        .params = (const qv_param[]){{"url", "ftp://127.0.0.1/"}, {0}},
                        .body = "x"),
                 QV_OK);
    tx_expect_error(f, QV_EURL);
    qv_future_release(f);
    /* Not followed when told so. */
    cr_assert_eq(qv_put(s, &f, tu("/redirect-to"),
                        .params = (const qv_param[]){{"url", "/anything"}, {0}}, .body = "x",
                        .no_redirects = 1),
                 QV_OK);
    tx_expect_status(f, 302);
    qv_future_release(f);
    qv_session_free(s);
}

Test(security, credentials_of_a_put_not_sent_to_another_host, .timeout = 30)
{
    qv_session *s = TX_SESSION(.auth = QV_AUTH_BASIC, .username = "user", .password = "passwd");
    qv_future *f;
    const qv_header auth[] = {{"Authorization", "Token very-secret"}, {0}};
    cr_assert_eq(qv_put(s, &f, tu("/redirect-to"),
                        .params = (const qv_param[]){{"url", tu_host("localhost", "/anything")},
                                                     {"status_code", "307"},
                                                     {0}},
                        .body = "x"),
                 QV_OK);
    json_t *j = tx_json(tx_expect_status(f, 200));
    tx_assert_str_eq(tx_jstr(j, "method"), "PUT");
    expect_no_header(j, "Authorization", "session credentials after a cross-host redirect");
    qv_future_release(f);
    cr_assert_eq(
        qv_put(s, &f, tu("/redirect-to"),
               .params = (const qv_param[]){{"url", tu_host("localhost", "/anything")}, {0}},
               .headers = auth, .body = "x"),
        QV_OK);
    expect_no_header(tx_json(tx_expect_status(f, 200)), "Authorization",
                     "an Authorization header after a cross-host redirect");
    qv_future_release(f);
    qv_session_free(s);
}

Test(security, proxy_authorization_header_not_sent_to_another_host, .timeout = 30)
{
    expect_header_stays_with_its_host("Proxy-Authorization", "Basic c2VjcmV0OnByb3h5");
}

Test(security, cookie_header_and_jar_cookies_go_in_one_line, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    cr_assert_eq(qv_session_set_cookie(s, "jar", "1", NULL), QV_OK);
    qv_future *f;
    cr_assert_eq(
        qv_get(s, &f, tu("/headers"), .headers = (const qv_header[]){{"Cookie", "hdr=2"}, {0}}),
        QV_OK);
    json_t *j = tx_json(tx_expect_status(f, 200));
    tx_assert_str_eq(tx_jstr(j, "headers/Cookie"), "jar=1; hdr=2");
    qv_future_release(f);
    /* And through a redirect to the same host, once. */
    j = follow_to(s, &f, tu("/headers"), (const qv_header[]){{"Cookie", "hdr=2"}, {0}});
    tx_assert_str_eq(tx_jstr(j, "headers/Cookie"), "jar=1; hdr=2");
    qv_future_release(f);
    qv_session_free(s);
}

Test(security, too_long_urls_fail_with_eurl_stating_the_limit, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    char limit[32];
    snprintf(limit, sizeof limit, "%d", QV_MAX_URL_LENGTH);
    static const size_t sizes[] = {QV_MAX_URL_LENGTH + 1, 1000 * 1000, 10 * 1000 * 1000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *url = malloc(sizes[i] + 1);
        cr_assert_not_null(url);
        int k = snprintf(url, sizes[i], "%s", tu("/get?q="));
        memset(url + k, 'a', sizes[i] - (size_t)k);
        url[sizes[i]] = '\0';
        qv_future *f;
        cr_assert_eq(qv_get(s, &f, url), QV_OK);
        free(url);
        const char *msg = tx_expect_error(f, QV_EURL);
        tx_assert_contains(msg, "URL too long");
        tx_assert_contains(msg, limit);
        cr_assert_lt(strlen(msg), 2000, "a message of %zu bytes", strlen(msg));
        qv_future_release(f);
    }
    /* Over the limit once the parameters are in. */
    char *value = malloc(QV_MAX_URL_LENGTH + 1);
    cr_assert_not_null(value);
    memset(value, 'b', QV_MAX_URL_LENGTH);
    value[QV_MAX_URL_LENGTH] = '\0';
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get"), .params = (const qv_param[]){{"q", value}, {0}}), QV_OK);
    free(value);
    tx_assert_contains(tx_expect_error(f, QV_EURL), "URL too long");
    qv_future_release(f);
    qv_session_free(s);
}

/* A hook written for threads: attaches a pointer and ignores the code. */
static int pointer_result_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)arg;
    char *p = strdup("parsed");
    if (qv_response_set_result(r, p, free)) free(p);
    return 0;
}

Test(security, a_pointer_result_is_never_lost_silently, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get"), .hook = pointer_result_hook), QV_OK);
    if (tx_kind() == QV_PROCESSES) {
        tx_assert_contains(tx_expect_error(f, QV_EHOOK), "qv_response_set_result_bytes");
    } else {
        qv_response *r = tx_expect_status(f, 200);
        tx_assert_str_eq(qv_response_result(r), "parsed");
    }
    qv_future_release(f);
    qv_session_free(s);
}

/* Misuse no return value can report stops the program with a message. */
static unsigned char not_an_object[4096];

Test(security, releasing_a_future_once_too_often_aborts, .signal = SIGABRT, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    tx_get_ok(s, &f, tu("/get"));
    /* The queue's own reference keeps the future's memory: no luck involved. */
    qv_cq *cq;
    cr_assert_eq(qv_cq_new(&cq), QV_OK);
    cr_assert_eq(qv_cq_add(cq, f), QV_OK);
    qv_future_release(f);
    qv_future_release(f);
}

Test(security, freeing_an_executor_twice_aborts, .signal = SIGABRT, .timeout = 30)
{
    qv_executor *ex = tx_executor(1);
    qv_session *s = TX_SESSION(.executor = ex); /* keeps the executor's memory */
    qv_executor_free(ex);
    qv_executor_free(ex);
    qv_session_free(s);
}

Test(security, freeing_what_is_not_a_session_aborts, .signal = SIGABRT, .timeout = 30)
{
    qv_session_free((qv_session *)not_an_object);
}

Test(security, releasing_what_is_not_a_future_aborts, .signal = SIGABRT, .timeout = 30)
{
    qv_future_release((qv_future *)not_an_object);
}

Test(security, freeing_what_is_not_an_executor_aborts, .signal = SIGABRT, .timeout = 30)
{
    qv_executor_free((qv_executor *)not_an_object);
}
