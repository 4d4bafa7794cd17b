/* Session defaults: headers, params, User-Agent, cookies; sessions sharing
 * one executor keep their own defaults and cookie jars. */
#include "support.h"

#include <string.h>

TestSuite(session, .timeout = 30);

Test(session, default_headers_and_override, .timeout = 30)
{
    qv_session *s = TX_SESSION(.headers = (const qv_header[]){{"X-Test", "session"},
                                                              {"X-Only-Session", "kept"},
                                                              {"Accept", "application/json"},
                                                              {0}});
    qv_future *f;
    json_t *j = tx_json(tx_get_ok(s, &f, tu("/headers")));
    tx_assert_str_eq(tx_jstr(j, "headers/X-Test"), "session");
    tx_assert_str_eq(tx_jstr(j, "headers/X-Only-Session"), "kept");
    tx_assert_str_eq(tx_jstr(j, "headers/Accept"), "application/json");
    qv_future_release(f);

    /* Per-request header with the same name in another case replaces the
     * session's (httpbin would show "session,request" if both were sent). */
    cr_assert_eq(
        qv_get(s, &f, tu("/headers"),
               .headers =
                   (const qv_header[]){{"x-test", "request"}, {"X-Per-Request", "yes"}, {0}}),
        QV_OK);
    j = tx_json(tx_expect_status(f, 200));
    tx_assert_str_eq(tx_jstr(j, "headers/X-Test"), "request");
    tx_assert_str_eq(tx_jstr(j, "headers/X-Only-Session"), "kept");
    tx_assert_str_eq(tx_jstr(j, "headers/X-Per-Request"), "yes");
    qv_future_release(f);

    /* The override was for that request only. */
    j = tx_json(tx_get_ok(s, &f, tu("/headers")));
    tx_assert_str_eq(tx_jstr(j, "headers/X-Test"), "session");
    cr_assert_null(tx_jget(j, "headers/X-Per-Request"));
    qv_future_release(f);
    qv_session_free(s);
}

Test(session, default_params, .timeout = 30)
{
    qv_session *s = TX_SESSION(.params = (const qv_param[]){{"api_key", "k 1"}, {0}});
    qv_future *f;
    json_t *j = tx_json(tx_get_ok(s, &f, tu("/get")));
    tx_assert_str_eq(tx_jstr(j, "args/api_key"), "k 1");
    qv_future_release(f);

    cr_assert_eq(qv_get(s, &f, tu("/get?x=0"), .params = (const qv_param[]){{"q", "v"}, {0}}),
                 QV_OK);
    j = tx_json(tx_expect_status(f, 200));
    tx_assert_str_eq(tx_jstr(j, "args/api_key"), "k 1");
    tx_assert_str_eq(tx_jstr(j, "args/q"), "v");
    tx_assert_str_eq(tx_jstr(j, "args/x"), "0");
    qv_future_release(f);
    qv_session_free(s);
}

Test(session, user_agent, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    json_t *j = tx_json(tx_get_ok(s, &f, tu("/user-agent")));
    const char *ua = tx_jstr(j, "user-agent");
    cr_assert_not_null(ua);
    cr_assert(strncmp(ua, "quiver/", 7) == 0, "User-Agent \"%s\" does not start with quiver/", ua);
    tx_assert_contains(ua, QV_VERSION_STRING);
    qv_future_release(f);
    qv_session_free(s);

    s = TX_SESSION(.user_agent = "my-agent/2.0");
    j = tx_json(tx_get_ok(s, &f, tu("/user-agent")));
    tx_assert_str_eq(tx_jstr(j, "user-agent"), "my-agent/2.0");
    qv_future_release(f);
    /* A User-Agent header on the request wins. */
    cr_assert_eq(qv_get(s, &f, tu("/user-agent"),
                        .headers = (const qv_header[]){{"user-agent", "per-request/1"}, {0}}),
                 QV_OK);
    tx_assert_str_eq(tx_jstr(tx_json(tx_expect_status(f, 200)), "user-agent"), "per-request/1");
    qv_future_release(f);
    qv_session_free(s);
}

Test(session, cookies_persist_across_requests, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    /* /cookies/set sets the cookie and redirects to /cookies. */
    json_t *j = tx_json(tx_get_ok(s, &f, tu("/cookies/set?a=1")));
    tx_assert_str_eq(tx_jstr(j, "cookies/a"), "1");
    qv_future_release(f);

    /* The next, separate request sends it. */
    j = tx_json(tx_get_ok(s, &f, tu("/cookies")));
    tx_assert_str_eq(tx_jstr(j, "cookies/a"), "1");
    qv_future_release(f);

    tx_expect_cookie(s, "a", "1");
    tx_expect_cookie(s, "nope", NULL);
    char tiny[1];
    cr_assert_eq(qv_session_cookie(s, "a", tiny, sizeof tiny), QV_ETOO_LARGE,
                 "a 1-byte buffer cannot hold \"1\" and its NUL");

    /* The server deleting it removes it from the jar. */
    j = tx_json(tx_get_ok(s, &f, tu("/cookies/delete?a")));
    cr_assert_null(tx_jget(j, "cookies/a"), "cookie a still sent after delete");
    qv_future_release(f);
    tx_expect_cookie(s, "a", NULL);
    qv_session_free(s);
}

Test(session, set_cookie_is_sent, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    cr_assert_eq(qv_session_set_cookie(s, "flavour", "oatmeal", NULL), QV_OK);
    cr_assert_eq(qv_session_set_cookie(s, "scoped", "yes", "127.0.0.1"), QV_OK);
    qv_future *f;
    json_t *j = tx_json(tx_get_ok(s, &f, tu("/cookies")));
    tx_assert_str_eq(tx_jstr(j, "cookies/scoped"), "yes");
    tx_assert_str_eq(tx_jstr(j, "cookies/flavour"), "oatmeal");
    qv_future_release(f);
    tx_expect_cookie(s, "scoped", "yes");
    tx_expect_cookie(s, "flavour", "oatmeal");

    /* A cookie for another host is not sent here. */
    cr_assert_eq(qv_session_set_cookie(s, "elsewhere", "no", "example.invalid"), QV_OK);
    j = tx_json(tx_get_ok(s, &f, tu("/cookies")));
    cr_assert_null(tx_jget(j, "cookies/elsewhere"), "cookie for another domain was sent");
    qv_future_release(f);
    qv_session_free(s);
}

Test(session, cookies_option, .timeout = 30)
{
    qv_session *s = TX_SESSION(.cookies = (const qv_cookie[]){{"c1", "one"}, {"c2", "two"}, {0}});
    qv_future *f;
    json_t *j = tx_json(tx_get_ok(s, &f, tu("/cookies")));
    tx_assert_str_eq(tx_jstr(j, "cookies/c1"), "one");
    tx_assert_str_eq(tx_jstr(j, "cookies/c2"), "two");
    qv_future_release(f);
    tx_expect_cookie(s, "c1", "one");
    tx_expect_cookie(s, "c2", "two");
    qv_session_free(s);
}

Test(session, two_sessions_share_an_executor, .timeout = 30)
{
    qv_executor *ex = tx_executor(4);
    qv_session *s1 =
        TX_SESSION(.executor = ex, .headers = (const qv_header[]){{"X-Who", "one"}, {0}});
    qv_session *s2 =
        TX_SESSION(.executor = ex, .headers = (const qv_header[]){{"X-Who", "two"}, {0}});
    cr_assert_eq(qv_session_executor(s1), ex);
    cr_assert_eq(qv_session_executor(s2), ex);

    /* Interleave requests of both sessions on the shared workers. */
    qv_future *f1[4], *f2[4];
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(qv_get(s1, &f1[i], tu("/headers")), QV_OK);
        cr_assert_eq(qv_get(s2, &f2[i], tu("/headers")), QV_OK);
    }
    for (int i = 0; i < 4; i++) {
        tx_assert_str_eq(tx_jstr(tx_json(tx_expect_status(f1[i], 200)), "headers/X-Who"), "one");
        tx_assert_str_eq(tx_jstr(tx_json(tx_expect_status(f2[i], 200)), "headers/X-Who"), "two");
        qv_future_release(f1[i]);
        qv_future_release(f2[i]);
    }

    /* Separate cookie jars. */
    qv_future *f;
    tx_get_ok(s1, &f, tu("/cookies/set?only1=a"));
    qv_future_release(f);
    tx_get_ok(s2, &f, tu("/cookies/set?only2=b"));
    qv_future_release(f);

    json_t *j = tx_json(tx_get_ok(s1, &f, tu("/cookies")));
    tx_assert_str_eq(tx_jstr(j, "cookies/only1"), "a");
    cr_assert_null(tx_jget(j, "cookies/only2"), "session 1 sent session 2's cookie");
    qv_future_release(f);
    j = tx_json(tx_get_ok(s2, &f, tu("/cookies")));
    tx_assert_str_eq(tx_jstr(j, "cookies/only2"), "b");
    cr_assert_null(tx_jget(j, "cookies/only1"), "session 2 sent session 1's cookie");
    qv_future_release(f);

    tx_expect_cookie(s1, "only1", "a");
    tx_expect_cookie(s2, "only2", "b");
    tx_expect_cookie(s1, "only2", NULL);
    tx_expect_cookie(s2, "only1", NULL);

    /* Freeing one session leaves the executor and the other session working. */
    qv_session_free(s1);
    j = tx_json(tx_get_ok(s2, &f, tu("/headers")));
    tx_assert_str_eq(tx_jstr(j, "headers/X-Who"), "two");
    qv_future_release(f);
    qv_session_free(s2);
    qv_executor_free(ex);
}

Test(session, a_freed_sessions_jar_stays_out_of_the_next_one_on_its_handle, .timeout = 30)
{
    /* One transfer slot: the second session's requests run on the handle
     * that served the first, which keeps its jar attached while idle. */
    qv_executor *ex = tx_executor(1);
    qv_session *s1 = TX_SESSION(.executor = ex);
    qv_future *f;
    tx_get_ok(s1, &f, tu("/cookies/set?gone=1"));
    qv_future_release(f);
    qv_session_free(s1);

    qv_session *s2 = TX_SESSION(.executor = ex);
    json_t *j = tx_json(tx_get_ok(s2, &f, tu("/cookies/set?kept=2")));
    tx_assert_str_eq(tx_jstr(j, "cookies/kept"), "2");
    cr_assert_null(tx_jget(j, "cookies/gone"), "the freed session's cookie was sent");
    qv_future_release(f);
    tx_expect_cookie(s2, "gone", NULL);
    qv_session_free(s2);
    qv_executor_free(ex);
}

Test(session, request_header_lines_remove_empty_and_long, .timeout = 30)
{
    /* A NULL value removes libcurl's own header, "" sends the header empty,
     * and a line longer than the stack buffer qv_header_line_add joins
     * lines in is sent whole. */
    char long_value[1200];
    memset(long_value, 'v', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = '\0';
    qv_session *s = TX_SESSION(.headers = (const qv_header[]){{"X-Session", "s"}, {0}});
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/headers"),
                        .headers =
                            (const qv_header[]){
                                {"Accept", NULL}, {"X-Empty", ""}, {"X-Long", long_value}, {0}}),
                 QV_OK);
    json_t *j = tx_json(tx_expect_status(f, 200));
    cr_assert_null(tx_jget(j, "headers/Accept"));
    tx_assert_str_eq(tx_jstr(j, "headers/X-Empty"), "");
    tx_assert_str_eq(tx_jstr(j, "headers/X-Long"), long_value);
    tx_assert_str_eq(tx_jstr(j, "headers/X-Session"), "s");
    qv_future_release(f);
    qv_session_free(s);
}
