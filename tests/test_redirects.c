/* Redirects: history, limits, opting out per session and per request, and
 * refusing redirects to non-HTTP schemes. */
#include "support.h"

#include <string.h>

TestSuite(redirects, .timeout = 30);

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

Test(redirects, followed_with_history, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/redirect-to?url=/get"));
    tx_assert_str_eq(qv_response_url(r), tu("/get"));
    tx_assert_str_eq(tx_jstr(tx_json(r), "url"), tu("/get"));
    cr_assert_eq(qv_response_history_len(r), 1, "history has %zu entries",
                 qv_response_history_len(r));
    const qv_response *h = qv_response_history(r, 0);
    cr_assert_not_null(h);
    cr_assert_eq(qv_response_status(h), 302);
    tx_assert_str_eq(qv_response_header(h, "location"), "/get");
    tx_assert_str_eq(qv_response_url(h), tu("/redirect-to?url=/get"));
    cr_assert_null(qv_response_history(r, 1));
    qv_future_release(f);
    qv_session_free(s);
}

Test(redirects, status_code_variants, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    static const int codes[] = {301, 303, 307, 308};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        qv_future *f;
        qv_response *r = tx_get_ok(s, &f, tuf("/redirect-to?url=/get&status_code=%d", codes[i]));
        cr_assert_eq(qv_response_history_len(r), 1);
        cr_assert_eq(qv_response_status(qv_response_history(r, 0)), codes[i]);
        tx_assert_str_eq(qv_response_url(r), tu("/get"));
        qv_future_release(f);
    }
    qv_session_free(s);
}

Test(redirects, to_a_404, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/redirect-to?url=/status/404")), QV_OK);
    qv_response *r = tx_expect_status(f, 404);
    cr_assert_eq(qv_response_history_len(r), 1);
    tx_assert_str_eq(qv_response_url(r), tu("/status/404"));
    qv_future_release(f);
    qv_session_free(s);
}

Test(redirects, relative_chain_of_three, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/redirect/3"));
    cr_assert_eq(qv_response_history_len(r), 3, "history has %zu entries",
                 qv_response_history_len(r));
    for (size_t i = 0; i < 3; i++) {
        const qv_response *h = qv_response_history(r, i);
        cr_assert_not_null(h);
        cr_assert_eq(qv_response_status(h), 302);
    }
    /* Oldest first. */
    tx_assert_str_eq(qv_response_url(qv_response_history(r, 0)), tu("/redirect/3"));
    tx_assert_str_eq(qv_response_url(r), tu("/get"));
    qv_future_release(f);
    qv_session_free(s);
}

Test(redirects, absolute_chain, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/absolute-redirect/2"));
    cr_assert_eq(qv_response_history_len(r), 2);
    tx_assert_str_eq(qv_response_url(qv_response_history(r, 0)), tu("/absolute-redirect/2"));
    const char *loc = qv_response_header(qv_response_history(r, 0), "Location");
    cr_assert_not_null(loc);
    cr_assert(strncmp(loc, "http://", 7) == 0, "Location \"%s\" is not absolute", loc);
    cr_assert(ends_with(qv_response_url(r), "/get"), "final URL %s", qv_response_url(r));
    qv_future_release(f);
    qv_session_free(s);
}

Test(redirects, too_many, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/redirect/5"), .max_redirects = 2), QV_OK);
    const char *msg = tx_expect_error(f, QV_EREDIRECTS);
    tx_assert_contains(msg, "/redirect/5");
    cr_assert_eq(qv_future_state_get(f), QV_FAILED);
    qv_future_release(f);

    /* Exactly at the limit is fine. */
    cr_assert_eq(qv_get(s, &f, tu("/redirect/2"), .max_redirects = 2), QV_OK);
    cr_assert_eq(qv_response_history_len(tx_expect_status(f, 200)), 2);
    qv_future_release(f);
    qv_session_free(s);

    /* Session-wide limit. */
    s = TX_SESSION(.max_redirects = 1);
    cr_assert_eq(qv_get(s, &f, tu("/redirect/3")), QV_OK);
    tx_expect_error(f, QV_EREDIRECTS);
    qv_future_release(f);
    qv_session_free(s);
}

Test(redirects, no_redirects_gives_the_302, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/redirect-to?url=/get"), .no_redirects = 1), QV_OK);
    qv_response *r = tx_expect_status(f, 302);
    tx_assert_str_eq(qv_response_header(r, "Location"), "/get");
    cr_assert_eq(qv_response_history_len(r), 0);
    tx_assert_str_eq(qv_response_url(r), tu("/redirect-to?url=/get"));
    qv_future_release(f);
    qv_session_free(s);
}

Test(redirects, per_request_overrides_session_no_redirects, .timeout = 30)
{
    qv_session *s = TX_SESSION(.no_redirects = 1);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/redirect/1")), QV_OK);
    tx_expect_status(f, 302);
    qv_future_release(f);

    cr_assert_eq(qv_get(s, &f, tu("/redirect/1"), .no_redirects = -1), QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    cr_assert_eq(qv_response_history_len(r), 1);
    tx_assert_str_eq(qv_response_url(r), tu("/get"));
    qv_future_release(f);
    qv_session_free(s);
}

Test(redirects, to_file_url_is_refused, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/redirect-to?url=file:///etc/passwd")), QV_OK);
    qv_response *r = NULL;
    int rc = qv_future_result(f, &r, TX_RESULT_TIMEOUT_MS);
    if (rc == QV_OK && r) {
        const char *body = qv_response_text(r);
        cr_assert_null(body ? strstr(body, "root:") : NULL,
                       "the redirect was followed to the local file!");
    }
    cr_assert_eq(rc, QV_EURL, "redirect to file:// gave %s (%s), expected QV_EURL", qv_errname(rc),
                 qv_future_error(f) ? qv_future_error(f) : "no message");
    cr_assert_not_null(qv_future_error(f));
    qv_future_release(f);

    /* Same for other non-HTTP schemes. */
    cr_assert_eq(qv_get(s, &f, tu("/redirect-to?url=ftp://127.0.0.1/")), QV_OK);
    tx_expect_error(f, QV_EURL);
    qv_future_release(f);
    qv_session_free(s);
}

/* One handle (max_workers = 1) asked for one URL again and again keeps it
 * parsed (transfer.c): the redirects libcurl follows and those quiver
 * follows itself (a Cookie header) on that handle in between must leave it
 * fetching the URL each request asks for. */
Test(redirects, one_handle_repeats_a_url_between_redirects, .timeout = 30)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    static const struct {
        const char *path, *cookie, *lands; /* lands: NULL for path itself */
    } steps[] = {
        {"/get?n=1", NULL, NULL},
        {"/get?n=1", NULL, NULL},
        {"/get?n=1", NULL, NULL},
        {"/redirect-to?url=/get%3Fn%3D2", NULL, "/get?n=2"},
        {"/get?n=1", NULL, NULL},
        {"/get?n=1", NULL, NULL},
        {"/redirect-to?url=/get%3Fn%3D3", "c=1", "/get?n=3"},
        {"/get?n=1", NULL, NULL},
        {"/get?n=1", "c=1", NULL},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        qv_future *f;
        const qv_header cookie[] = {{"Cookie", steps[i].cookie}, {0}};
        cr_assert_eq(qv_get(s, &f, tu(steps[i].path), .headers = steps[i].cookie ? cookie : NULL),
                     QV_OK);
        qv_response *r = tx_expect_status(f, 200);
        const char *want = tu(steps[i].lands ? steps[i].lands : steps[i].path);
        tx_assert_str_eq(qv_response_url(r), want);
        tx_assert_str_eq(tx_jstr(tx_json(r), "url"), want);
        cr_assert_eq(qv_response_history_len(r), steps[i].lands ? 1u : 0u, "step %zu", i);
        qv_future_release(f);
    }
    qv_session_free(s);
}
