/* Request hooks (.on_request): run before each attempt, retries included;
 * change that attempt's headers; fail the future with QV_EHOOK. Hooks must
 * not assert (with QV_PROCESSES they run in a worker process): they report
 * through the headers they set, which httpbin echoes. */
#include "support.h"

#include <stdio.h>
#include <string.h>

TestSuite(attempt, .timeout = 30);

static const int retry_401[] = {401, 0};
static const qv_retry retry_once_on_401 = {
    .max_retries = 1, .on = QV_RETRY_STATUS, .statuses = retry_401, .backoff_ms = 1};

/* A fresh token on the retry only: the first attempt goes without one. */
static int fresh_token(qv_session *s, qv_attempt *a, void *arg)
{
    (void)s;
    if (qv_attempt_number(a) < 2) return 0;
    return qv_attempt_set_header(a, "Authorization", arg);
}

Test(attempt, header_on_the_retry_only, .timeout = 30)
{
    qv_session *s = TX_SESSION(.retry = &retry_once_on_401);
    qv_future *f;
    /* httpbin's /bearer answers 401 without a token: had the first attempt
     * carried one, there would have been no retry. */
    cr_assert_eq(
        qv_get(s, &f, tu("/bearer"), .on_request = fresh_token, .on_request_arg = "Bearer fresh-2"),
        QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    cr_assert_eq(qv_response_attempts(r), 2);
    tx_assert_str_eq(tx_jstr(tx_json(r), "token"), "fresh-2");
    qv_future_release(f);

    /* Without the hook, both attempts are refused. */
    cr_assert_eq(qv_get(s, &f, tu("/bearer")), QV_OK);
    r = tx_expect_status(f, 401);
    cr_assert_eq(qv_response_attempts(r), 2);
    qv_future_release(f);
    qv_session_free(s);
}

/* Says what it sees in headers, and edits some. */
static int edit(qv_session *s, qv_attempt *a, void *arg)
{
    (void)s;
    (void)arg;
    char seen[512];
    snprintf(seen, sizeof(seen), "%d %s %s", qv_attempt_number(a), qv_attempt_method(a),
             qv_attempt_url(a));
    int rc = qv_attempt_set_header(a, "X-Seen", seen);
    if (!rc) rc = qv_attempt_set_header(a, "x-token", "new"); /* replaces, any case */
    if (!rc) rc = qv_attempt_set_header(a, "X-Drop", NULL);   /* removes ours */
    if (!rc) rc = qv_attempt_set_header(a, "Accept", NULL);   /* and libcurl's */
    if (!rc) rc = qv_attempt_set_header(a, "X-Empty", "");    /* sent empty */
    /* Bad input is refused and changes nothing. */
    if (!rc && qv_attempt_set_header(a, "X-Bad", "a\r\nInjected: 1") != QV_EINVAL) rc = 101;
    if (!rc && qv_attempt_set_header(a, "Bad Name", "v") != QV_EINVAL) rc = 102;
    if (!rc && qv_attempt_set_header(a, NULL, "v") != QV_EINVAL) rc = 103;
    return rc;
}

Test(attempt, add_replace_remove, .timeout = 30)
{
    qv_session *s = TX_SESSION(.headers = (const qv_header[]){{"X-Drop", "yes"}, {0}});
    qv_future *f;
    cr_assert_eq(qv_put(s, &f, tu("/anything?q=1"), .body = "x", .on_request = edit,
                        .headers = (const qv_header[]){{"X-Token", "old"}, {0}}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    json_t *j = tx_json(r);
    char want[512];
    snprintf(want, sizeof(want), "1 PUT %s", tu("/anything?q=1"));
    tx_assert_str_eq(tx_jstr(j, "headers/X-Seen"), want);
    tx_assert_str_eq(tx_jstr(j, "headers/X-Token"), "new");
    tx_assert_str_eq(tx_jstr(j, "headers/X-Empty"), "");
    cr_assert_null(tx_jget(j, "headers/X-Drop"));
    cr_assert_null(tx_jget(j, "headers/Accept"));
    cr_assert_null(tx_jget(j, "headers/X-Bad"));
    cr_assert_null(tx_jget(j, "headers/Injected"));
    qv_future_release(f);

    /* The change was that attempt's: the next request has the session's. */
    r = tx_get_ok(s, &f, tu("/headers"));
    j = tx_json(r);
    tx_assert_str_eq(tx_jstr(j, "headers/X-Drop"), "yes");
    cr_assert_null(tx_jget(j, "headers/X-Seen"));
    cr_assert_not_null(tx_jget(j, "headers/Accept"));
    qv_future_release(f);
    qv_session_free(s);
}

/* Appends its tag to X-Order: shows which hooks ran, in which order. */
static int tag(qv_session *s, qv_attempt *a, void *arg)
{
    (void)s;
    static _Thread_local char order[64];
    if (strcmp(arg, "session") == 0) order[0] = '\0';
    size_t n = strlen(order);
    snprintf(order + n, sizeof(order) - n, "%s%s", n ? "," : "", (const char *)arg);
    return qv_attempt_set_header(a, "X-Order", order);
}

Test(attempt, session_hook_then_request_hook, .timeout = 30)
{
    qv_session *s = TX_SESSION(.on_request = tag, .on_request_arg = "session");
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/headers"), .on_request = tag, .on_request_arg = "request"),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    tx_assert_str_eq(tx_jstr(tx_json(r), "headers/X-Order"), "session,request");
    qv_future_release(f);

    r = tx_get_ok(s, &f, tu("/headers"));
    tx_assert_str_eq(tx_jstr(tx_json(r), "headers/X-Order"), "session");
    qv_future_release(f);
    qv_session_free(s);
}

static int refuse(qv_session *s, qv_attempt *a, void *arg)
{
    (void)s;
    if (arg) qv_attempt_set_error(a, arg);
    return 7;
}

Test(attempt, failing_hook_fails_with_ehook, .timeout = 30)
{
    qv_session *s = TX_SESSION(.retry = &retry_once_on_401);
    qv_future *f;
    cr_assert_eq(
        qv_get(s, &f, tu("/bearer"), .on_request = refuse, .on_request_arg = "no token to be had"),
        QV_OK);
    const char *msg = tx_expect_error(f, QV_EHOOK);
    tx_assert_contains(msg, "no token to be had");
    tx_assert_contains(msg, "/bearer");
    /* Not sent, so not retried either. */
    cr_assert_eq(qv_future_attempts(f), 1);
    qv_future_release(f);

    cr_assert_eq(qv_get(s, &f, tu("/get"), .on_request = refuse), QV_OK);
    tx_assert_contains(tx_expect_error(f, QV_EHOOK), "returned 7");
    qv_future_release(f);

    /* The session goes on. */
    tx_get_ok(s, &f, tu("/get"));
    qv_future_release(f);
    qv_session_free(s);
}

Test(attempt, null_attempt_is_einval, .timeout = 30)
{
    cr_assert_eq(qv_attempt_set_header(NULL, "X", "y"), QV_EINVAL);
    cr_assert_eq(qv_attempt_set_error(NULL, "x"), QV_EINVAL);
    cr_assert_eq(qv_attempt_number(NULL), 0);
    cr_assert_null(qv_attempt_url(NULL));
    cr_assert_null(qv_attempt_method(NULL));
}
