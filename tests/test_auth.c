/* Authentication: basic, digest and bearer, per request and per session. */
#include "support.h"

#include <string.h>

TestSuite(auth, .timeout = 30);

/* GET path with the given credentials; httpbin answers 200 with
 * {"authenticated": true, "user": ...} when they are right. */
static void expect_authenticated(const char *path, qv_auth_kind kind)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu(path), .auth = kind, .username = "user", .password = "passwd"),
                 QV_OK);
    json_t *j = tx_json(tx_expect_status(f, 200));
    cr_assert(json_is_true(json_object_get(j, "authenticated")));
    tx_assert_str_eq(tx_jstr(j, "user"), "user");
    qv_future_release(f);
    qv_session_free(s);
}

Test(auth, basic_good, .timeout = 30)
{
    expect_authenticated("/basic-auth/user/passwd", QV_AUTH_BASIC);
}

Test(auth, basic_username_alone_means_basic, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(
        qv_get(s, &f, tu("/basic-auth/user/passwd"), .username = "user", .password = "passwd"),
        QV_OK);
    tx_expect_status(f, 200);
    qv_future_release(f);
    qv_session_free(s);
}

Test(auth, basic_bad, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/basic-auth/user/passwd"), .auth = QV_AUTH_BASIC,
                        .username = "user", .password = "wrong"),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 401);
    cr_assert_eq(qv_response_raise_for_status(r), QV_EHTTP);
    qv_future_release(f);
    /* No credentials at all. */
    cr_assert_eq(qv_get(s, &f, tu("/basic-auth/user/passwd")), QV_OK);
    tx_expect_status(f, 401);
    qv_future_release(f);
    qv_session_free(s);
}

Test(auth, basic_from_session, .timeout = 30)
{
    qv_session *s = TX_SESSION(.auth = QV_AUTH_BASIC, .username = "user", .password = "passwd");
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/basic-auth/user/passwd"));
    cr_assert(json_is_true(json_object_get(tx_json(r), "authenticated")));
    qv_future_release(f);
    /* A per-request password replaces the session's. */
    cr_assert_eq(qv_get(s, &f, tu("/basic-auth/user/passwd"), .password = "wrong"), QV_OK);
    tx_expect_status(f, 401);
    qv_future_release(f);
    qv_session_free(s);
}

Test(auth, digest_good, .timeout = 30)
{
    expect_authenticated("/digest-auth/auth/user/passwd", QV_AUTH_DIGEST);
}

Test(auth, digest_bad, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/digest-auth/auth/user/passwd"), .auth = QV_AUTH_DIGEST,
                        .username = "user", .password = "wrong"),
                 QV_OK);
    tx_expect_status(f, 401);
    qv_future_release(f);
    qv_session_free(s);
}

Test(auth, bearer, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    /* (httpbin strips the characters of "Bearer " from the token's start, so
     * the token starts with none of them.) */
    cr_assert_eq(qv_get(s, &f, tu("/bearer"), .auth = QV_AUTH_BEARER, .password = "tok-123.xyz"),
                 QV_OK);
    json_t *j = tx_json(tx_expect_status(f, 200));
    cr_assert(json_is_true(json_object_get(j, "authenticated")));
    tx_assert_str_eq(tx_jstr(j, "token"), "tok-123.xyz");
    qv_future_release(f);

    cr_assert_eq(qv_get(s, &f, tu("/bearer")), QV_OK);
    tx_expect_status(f, 401);
    qv_future_release(f);
    qv_session_free(s);
}

Test(auth, bearer_header_sent, .timeout = 30)
{
    qv_session *s = TX_SESSION(.auth = QV_AUTH_BEARER, .password = "tok-session");
    qv_future *f;
    json_t *j = tx_json(tx_get_ok(s, &f, tu("/headers")));
    tx_assert_str_eq(tx_jstr(j, "headers/Authorization"), "Bearer tok-session");
    qv_future_release(f);
    qv_session_free(s);
}
