/* Basic requests: status codes, methods, HEAD, reason, headers, final URL,
 * elapsed time, raise_for_status. */
#include "support.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

TestSuite(basic, .timeout = 30);

Test(basic, get_200, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/get"));
    tx_assert_str_eq(tx_jstr(tx_json(r), "url"), tu("/get"));
    cr_assert_eq(qv_future_state_get(f), QV_FINISHED);
    cr_assert_eq(qv_future_error_code(f), QV_OK);
    cr_assert_null(qv_future_error(f), "a finished future has no error message");
    cr_assert_eq(qv_response_http_version(r), 11, "gunicorn speaks HTTP/1.1");
    qv_future_release(f);
    qv_session_free(s);
}

Test(basic, status_404_is_a_response_not_an_error, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/status/404")), QV_OK);
    qv_response *r = tx_expect_status(f, 404);
    cr_assert_eq(qv_future_state_get(f), QV_FINISHED, "a 404 is a FINISHED future");
    cr_assert_eq(qv_future_error_code(f), QV_OK);
    cr_assert_eq(qv_response_raise_for_status(r), QV_EHTTP);
    qv_future_release(f);
    qv_session_free(s);
}

Test(basic, raise_for_status, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    static const struct {
        const char *path;
        int status;
        int expect;
    } cases[] = {
        {"/status/200", 200, QV_OK},    {"/status/204", 204, QV_OK},
        {"/status/400", 400, QV_EHTTP}, {"/status/418", 418, QV_EHTTP},
        {"/status/500", 500, QV_EHTTP}, {"/status/503", 503, QV_EHTTP},
    };
    size_t n = sizeof cases / sizeof cases[0];
    qv_future *f[sizeof cases / sizeof cases[0]];
    for (size_t i = 0; i < n; i++) cr_assert_eq(qv_get(s, &f[i], tu(cases[i].path)), QV_OK);
    for (size_t i = 0; i < n; i++) {
        qv_response *r = tx_expect_status(f[i], cases[i].status);
        cr_assert_eq(qv_response_raise_for_status(r), cases[i].expect,
                     "raise_for_status for %d gave %s, expected %s", cases[i].status,
                     qv_errname(qv_response_raise_for_status(r)), qv_errname(cases[i].expect));
        qv_future_release(f[i]);
    }
    qv_session_free(s);
}

static void check_method(qv_session *s, const char *method, int rc, qv_future *f)
{
    cr_assert_eq(rc, QV_OK, "%s at submit: %s", method, qv_errname(rc));
    qv_response *r = tx_expect_status(f, 200);
    tx_assert_str_eq(tx_jstr(tx_json(r), "method"), method);
    tx_assert_str_eq(tx_jstr(tx_json(r), "url"), tu("/anything/m"));
    (void)s;
    qv_future_release(f);
}

Test(basic, methods_echoed_by_anything, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    const char *u = tu("/anything/m");
    qv_future *f;
    int rc;
    rc = qv_get(s, &f, u);
    check_method(s, "GET", rc, f);
    rc = qv_post(s, &f, u, .body = "x");
    check_method(s, "POST", rc, f);
    rc = qv_put(s, &f, u, .body = "x");
    check_method(s, "PUT", rc, f);
    rc = qv_patch(s, &f, u, .body = "x");
    check_method(s, "PATCH", rc, f);
    rc = qv_delete(s, &f, u);
    check_method(s, "DELETE", rc, f);
    /* Any method name goes through qv_request. */
    rc = qv_request(s, &f,
                    &(qv_request_opts){.size = sizeof(qv_request_opts), .method = "PUT", .url = u});
    check_method(s, "PUT", rc, f);
    /* NULL method means GET. */
    rc = qv_request(s, &f, &(qv_request_opts){.size = sizeof(qv_request_opts), .url = u});
    check_method(s, "GET", rc, f);
    qv_session_free(s);
}

Test(basic, options_method, .timeout = 30)
{
    /* Flask answers OPTIONS itself (no JSON echo): 200 with an Allow header
     * listing the methods. */
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_options(s, &f, tu("/anything")), QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    tx_assert_contains(qv_response_header(r, "Allow"), "OPTIONS");
    tx_assert_contains(qv_response_header(r, "allow"), "GET");
    qv_future_release(f);
    qv_session_free(s);
}

Test(basic, head_has_no_body, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_head(s, &f, tu("/get")), QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    size_t len = 12345;
    const char *body = qv_response_body(r, &len);
    cr_assert_not_null(body, "the body is never NULL (empty string)");
    cr_assert_eq(len, 0, "HEAD response body has %zu bytes", len);
    cr_assert_str_eq(body, "");
    /* The headers describe the body a GET would have had. */
    cr_assert_not_null(qv_response_header(r, "Content-Length"));
    cr_assert_neq(strcmp(qv_response_header(r, "Content-Length"), "0"), 0);
    qv_future_release(f);
    qv_session_free(s);
}

Test(basic, status_and_reason, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f1, *f2;
    cr_assert_eq(qv_get(s, &f1, tu("/get")), QV_OK);
    cr_assert_eq(qv_get(s, &f2, tu("/status/418")), QV_OK);
    qv_response *r1 = tx_expect_status(f1, 200);
    tx_assert_str_eq(qv_response_reason(r1), "OK");
    qv_response *r2 = tx_expect_status(f2, 418);
    cr_assert_not_null(qv_response_reason(r2));
    cr_assert(strcasecmp(qv_response_reason(r2), "I'm a teapot") == 0,
              "reason \"%s\", expected the server's \"I'M A TEAPOT\"", qv_response_reason(r2));
    tx_assert_contains(qv_response_text(r2), "teapot");
    qv_future_release(f1);
    qv_future_release(f2);
    qv_session_free(s);
}

Test(basic, headers_case_insensitive, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/get"));
    tx_assert_str_eq(qv_response_header(r, "Content-Type"), "application/json");
    tx_assert_str_eq(qv_response_header(r, "content-type"), "application/json");
    tx_assert_str_eq(qv_response_header(r, "CONTENT-TYPE"), "application/json");
    tx_assert_str_eq(qv_response_header(r, "server"), "gunicorn");
    cr_assert_null(qv_response_header(r, "X-No-Such-Header"));
    /* Content-Length matches the body. */
    size_t len = 0;
    qv_response_body(r, &len);
    const char *cl = qv_response_header(r, "content-length");
    cr_assert_not_null(cl);
    cr_assert_eq(strtoul(cl, NULL, 10), len, "Content-Length %s, body %zu bytes", cl, len);
    qv_future_release(f);
    qv_session_free(s);
}

Test(basic, repeated_headers, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/response-headers?X-A=1&X-A=2"));
    tx_assert_str_eq(qv_response_header(r, "X-A"), "1");
    tx_assert_str_eq(qv_response_header(r, "x-a"), "1");
    tx_assert_str_eq(qv_response_header_nth(r, "x-a", 0), "1");
    tx_assert_str_eq(qv_response_header_nth(r, "X-A", 1), "2");
    cr_assert_null(qv_response_header_nth(r, "X-A", 2));

    /* All headers in arrival order: both X-A, "1" before "2". */
    size_t count = qv_response_header_count(r);
    cr_assert_geq(count, 4, "only %zu headers", count);
    int seen = 0;
    for (size_t i = 0; i < count; i++) {
        const char *name = NULL, *value = NULL;
        cr_assert_eq(qv_response_header_at(r, i, &name, &value), QV_OK);
        cr_assert_not_null(name);
        cr_assert_not_null(value);
        if (strcasecmp(name, "X-A") == 0) {
            cr_assert_str_eq(value, seen == 0 ? "1" : "2");
            seen++;
        }
    }
    cr_assert_eq(seen, 2, "X-A seen %d times in header_at iteration", seen);
    const char *name, *value;
    cr_assert_neq(qv_response_header_at(r, count, &name, &value), QV_OK,
                  "header_at past the end must fail");

    /* The same headers in one copy: "name\0value\0"..., in the same order. */
    size_t need = qv_response_headers_copy(r, NULL, 0);
    char small[4] = "xyz";
    cr_assert_eq(qv_response_headers_copy(r, small, sizeof small), need);
    cr_assert_str_eq(small, "xyz", "nothing is copied into a buffer too small");
    char *buf = malloc(need);
    cr_assert_not_null(buf);
    cr_assert_eq(qv_response_headers_copy(r, buf, need), need);
    const char *p = buf;
    for (size_t i = 0; i < count; i++) {
        qv_response_header_at(r, i, &name, &value);
        cr_assert_str_eq(p, name);
        p += strlen(p) + 1;
        cr_assert_str_eq(p, value);
        p += strlen(p) + 1;
    }
    cr_assert_eq(p, buf + need);
    free(buf);
    cr_assert_eq(qv_response_headers_copy(NULL, NULL, 0), 0);
    qv_future_release(f);
    qv_session_free(s);
}

/* Checks qv_response_info_get(r) against the accessors one by one. */
static void assert_info_agrees(const qv_response *r)
{
    char headers[4096];
    qv_response_info info = {.size = sizeof info};
    cr_assert_eq(qv_response_info_get(r, &info, headers, sizeof headers), QV_OK);
    cr_assert_eq(info.size, sizeof info, "size is the caller's");
    cr_assert_eq(info.status, qv_response_status(r));
    cr_assert_eq(info.http_version, qv_response_http_version(r));
    cr_assert_eq(info.attempts, qv_response_attempts(r));
    cr_assert_eq(info.reason, qv_response_reason(r));
    cr_assert_eq(info.url, qv_response_url(r));
    size_t len;
    cr_assert_eq(info.body, qv_response_body(r, &len));
    cr_assert_eq(info.body_len, len);
    cr_assert_eq(info.content_type, qv_response_header(r, "content-type"));
    cr_assert_eq(info.history_len, qv_response_history_len(r));
    size_t cookies = 0;
    while (qv_response_header_nth(r, "set-cookie", cookies)) cookies++;
    cr_assert_eq(info.set_cookies, cookies);
    size_t types = 0;
    while (qv_response_header_nth(r, "content-type", types)) types++;
    cr_assert_eq(info.content_types, types);
    cr_assert_eq(info.elapsed_ms, qv_response_elapsed_ms(r));
    qv_timing t;
    cr_assert_eq(qv_response_timing(r, &t), QV_OK);
    cr_assert_eq(memcmp(&info.timing, &t, sizeof t), 0);
    char copy[4096];
    cr_assert_eq(qv_response_headers_copy(r, copy, sizeof copy), info.headers_len);
    cr_assert_leq(info.headers_len, sizeof headers);
    cr_assert_eq(memcmp(headers, copy, info.headers_len), 0);
}

Test(basic, response_info_in_one_call, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    qv_response *r =
        tx_get_ok(s, &f, tu("/response-headers?Set-Cookie=a%3D1&Set-Cookie=b%3D2&X-A=1"));
    assert_info_agrees(r);
    qv_response_info info = {.size = sizeof info};
    cr_assert_eq(qv_response_info_get(r, &info, NULL, 0), QV_OK);
    cr_assert_eq(info.set_cookies, 2);
    tx_assert_str_eq(info.content_type, "application/json");
    cr_assert_gt(info.headers_len, 0, "the length, with nowhere to copy to");

    /* A buffer too small gets nothing; a shorter (older) struct gets the
     * fields it has and nothing past them. */
    char small[4] = "xyz";
    cr_assert_eq(qv_response_info_get(r, &info, small, sizeof small), QV_OK);
    cr_assert_str_eq(small, "xyz");
    struct {
        qv_response_info head;
        char past[8];
    } older;
    memset(&older, 0x5a, sizeof older);
    older.head.size = offsetof(qv_response_info, reason);
    cr_assert_eq(qv_response_info_get(r, &older.head, NULL, 0), QV_OK);
    cr_assert_eq(older.head.status, 200);
    const unsigned char *rest = (const unsigned char *)&older + older.head.size;
    for (size_t i = 0; i < sizeof older - older.head.size; i++)
        cr_assert_eq(rest[i], 0x5a, "byte %zu past the caller's size was written", i);
    cr_assert_eq(info.content_types, 1);
    qv_future_release(f);

    /* Two Content-Type lines (httpbin's own and the one asked for): counted,
     * the first one's value given. */
    r = tx_get_ok(s, &f, tu("/response-headers?Content-Type=text/plain"));
    assert_info_agrees(r);
    cr_assert_eq(qv_response_info_get(r, &info, NULL, 0), QV_OK);
    cr_assert_eq(info.content_types, 2);
    tx_assert_str_eq(info.content_type, qv_response_header_nth(r, "content-type", 0));
    qv_future_release(f);

    /* A redirect: the final response and its hop. */
    r = tx_get_ok(s, &f, tu("/redirect/1"));
    assert_info_agrees(r);
    cr_assert_eq(qv_response_history_len(r), 1);
    assert_info_agrees(qv_response_history(r, 0));

    info.size = 0;
    cr_assert_eq(qv_response_info_get(r, &info, NULL, 0), QV_EINVAL);
    info.size = sizeof info;
    cr_assert_eq(qv_response_info_get(NULL, &info, NULL, 0), QV_EINVAL);
    cr_assert_eq(qv_response_info_get(r, NULL, NULL, 0), QV_EINVAL);
    qv_future_release(f);
    qv_session_free(s);
}

Test(basic, final_url_and_elapsed, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/get?x=1"));
    tx_assert_str_eq(qv_response_url(r), tu("/get?x=1"));
    cr_assert_eq(qv_response_history_len(r), 0);
    double el = qv_response_elapsed_ms(r);
    cr_assert_gt(el, 0.0, "elapsed %f ms", el);
    cr_assert_lt(el, 10000.0, "elapsed %f ms for a local GET", el);
    qv_future_release(f);

    cr_assert_eq(qv_get(s, &f, tu("/delay/1")), QV_OK);
    r = tx_expect_status(f, 200);
    el = qv_response_elapsed_ms(r);
    cr_assert(el >= 900.0 && el < 5000.0, "elapsed %f ms for /delay/1", el);
    qv_future_release(f);
    qv_session_free(s);
}

Test(basic, text_and_body_agree, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/bytes/64?seed=7"));
    size_t len = 0;
    const char *body = qv_response_body(r, &len);
    cr_assert_not_null(body);
    cr_assert_eq(len, 64);
    cr_assert_eq(body[len], '\0', "the body is followed by a NUL byte");
    qv_future_release(f);

    r = tx_get_ok(s, &f, tu("/robots.txt"));
    body = qv_response_body(r, &len);
    tx_assert_str_eq(qv_response_text(r), body);
    cr_assert_eq(strlen(qv_response_text(r)), len);
    tx_assert_contains(qv_response_text(r), "User-agent: *");
    qv_future_release(f);
    qv_session_free(s);
}

Test(basic, version_and_null_frees, .timeout = 30)
{
    tx_assert_str_eq(qv_version(), QV_VERSION_STRING);
    qv_session_free(NULL);
    qv_executor_free(NULL);
    qv_future_release(NULL);
    qv_as_completed_free(NULL);
}
