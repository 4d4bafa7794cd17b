/* Response hooks: attaching results, failing futures, session + request hook
 * order, the thread hooks run on, the session they see. */
#include "support.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(hooks, .timeout = 30);

/* Parses the body and attaches its "url" field as result bytes (with the
 * NUL), the form that crosses into the caller on every executor. */
static int url_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s;
    (void)arg;
    int err = 0;
    json_t *j = qv_response_json(r, &err);
    if (!j) {
        qv_response_set_hook_error(r, "body is not JSON");
        return 1;
    }
    json_t *url = json_object_get(j, "url");
    if (!json_is_string(url)) {
        qv_response_set_hook_error(r, "no url field");
        return 1;
    }
    const char *v = json_string_value(url);
    return qv_response_set_result_bytes(r, v, strlen(v) + 1);
}

static const char *result_str(const qv_response *r)
{
    size_t n;
    const char *p = qv_response_result_bytes(r, &n);
    cr_assert(!p || (n > 0 && p[n - 1] == '\0'), "result bytes are not a C string");
    return p;
}

Test(hooks, hook_attaches_parsed_result, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get?h=1"), .hook = url_hook), QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    tx_assert_str_eq(result_str(r), tu("/get?h=1"));
    qv_future_release(f);

    /* Without a hook there is no result. */
    r = tx_get_ok(s, &f, tu("/get"));
    cr_assert_null(qv_response_result_bytes(r, NULL));
    qv_future_release(f);
    qv_session_free(s);
}

static int pointer_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s;
    return qv_response_set_result(r, strdup(arg), free);
}

/* Not on QV_PROCESSES: a pointer made in a worker process means nothing in
 * the caller; process hooks return bytes (hook_attaches_parsed_result). */
TX_TEST_KINDS(hooks, hook_attaches_a_pointer, threads loop);
Test(hooks, hook_attaches_a_pointer, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get"), .hook = pointer_hook, .hook_arg = "kept"), QV_OK);
    tx_assert_str_eq(qv_response_result(tx_expect_status(f, 200)), "kept");
    qv_future_release(f);
    qv_session_free(s);
}

static int failing_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s;
    (void)arg;
    qv_response_set_hook_error(r, "bad data");
    return 1;
}

Test(hooks, failing_hook_fails_the_future, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get"), .hook = failing_hook), QV_OK);
    const char *msg = tx_expect_error(f, QV_EHOOK);
    tx_assert_contains(msg, "bad data");
    cr_assert_eq(qv_future_state_get(f), QV_FAILED);
    qv_future_release(f);
    qv_session_free(s);
}

static int failing_hook_no_message(qv_session *s, qv_response *r, void *arg)
{
    (void)s;
    (void)r;
    (void)arg;
    return 7;
}

Test(hooks, failing_hook_without_message, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get"), .hook = failing_hook_no_message), QV_OK);
    tx_expect_error(f, QV_EHOOK);
    qv_future_release(f);
    qv_session_free(s);
}

/* Appends the tag in arg to the string result so far (order tracking that
 * needs no memory shared with the hook). */
static int tag_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s;
    const char *tag = arg;
    const char *prev = qv_response_result_bytes(r, NULL);
    char next[64];
    snprintf(next, sizeof next, "%s%s", prev ? prev : "", tag);
    return qv_response_set_result_bytes(r, next, strlen(next) + 1);
}

Test(hooks, session_hooks_then_request_hook, .timeout = 30)
{
    qv_session *s = TX_SESSION(.hooks = (const qv_hook[]){{tag_hook, "A"}, {tag_hook, "B"}, {0}});
    qv_future *fs[3];
    cr_assert_eq(qv_get(s, &fs[0], tu("/get")), QV_OK);
    cr_assert_eq(qv_get(s, &fs[1], tu("/status/404")), QV_OK);
    cr_assert_eq(qv_get(s, &fs[2], tu("/get"), .hook = tag_hook, .hook_arg = "R"), QV_OK);
    tx_assert_str_eq(result_str(tx_expect_status(fs[0], 200)), "AB");
    tx_assert_str_eq(result_str(tx_expect_status(fs[1], 404)), "AB");
    tx_assert_str_eq(result_str(tx_expect_status(fs[2], 200)), "ABR");
    for (int i = 0; i < 3; i++) qv_future_release(fs[i]);
    qv_session_free(s);
}

Test(hooks, failing_session_hook_fails_the_future, .timeout = 30)
{
    qv_session *s = TX_SESSION(.hooks = (const qv_hook[]){{failing_hook, NULL}, {0}});
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK);
    tx_assert_contains(tx_expect_error(f, QV_EHOOK), "bad data");
    qv_future_release(f);
    qv_session_free(s);
}

struct thread_rec {
    pthread_t thread;
    atomic_int ran;
    qv_session *session_seen;
};

static int thread_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)r;
    struct thread_rec *rec = arg;
    rec->thread = pthread_self();
    rec->session_seen = s;
    atomic_fetch_add(&rec->ran, 1);
    return 0;
}

/* Not on QV_PROCESSES: hooks run in a worker process, whose memory is not
 * ours to inspect. */
TX_TEST_KINDS(hooks, hook_runs_in_the_background_and_sees_the_session, threads loop);
Test(hooks, hook_runs_in_the_background_and_sees_the_session, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    static struct thread_rec rec;
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get"), .hook = thread_hook, .hook_arg = &rec), QV_OK);
    tx_expect_status(f, 200);
    cr_assert_eq(atomic_load(&rec.ran), 1, "hook ran %d times", atomic_load(&rec.ran));
    cr_assert(!pthread_equal(rec.thread, pthread_self()), "the hook ran on the submitting thread");
    cr_assert_eq(rec.session_seen, s, "the hook saw session %p, expected %p",
                 (void *)rec.session_seen, (void *)s);
    qv_future_release(f);
    qv_session_free(s);
}

static int session_check_hook(qv_session *s, qv_response *r, void *arg)
{
    if (s != (qv_session *)arg) {
        qv_response_set_hook_error(r, "hook saw the wrong session");
        return 1;
    }
    return 0;
}

static int session_check_hook_indirect(qv_session *s, qv_response *r, void *arg)
{
    return session_check_hook(s, r, *(qv_session **)arg);
}

/* Not on QV_PROCESSES: hooks run in a worker process, which has its own
 * session object. */
TX_TEST_KINDS(hooks, session_hooks_see_their_session, threads loop);
Test(hooks, session_hooks_see_their_session, .timeout = 30)
{
    /* A session hook's arg is fixed before the session exists: give it the
     * address of a variable that will hold the session. */
    static qv_session *expected;
    qv_session *s =
        TX_SESSION(.hooks = (const qv_hook[]){{session_check_hook_indirect, &expected}, {0}});
    expected = s;
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get"), .hook = session_check_hook, .hook_arg = s), QV_OK);
    tx_expect_status(f, 200);
    qv_future_release(f);
    qv_session_free(s);
}

/* Not on QV_PROCESSES: hooks run in a worker process, whose memory is not
 * ours to inspect. */
TX_TEST_KINDS(hooks, hook_not_run_for_failed_transfer, threads loop);
Test(hooks, hook_not_run_for_failed_transfer, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    static struct thread_rec rec;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", tx_closed_port());
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, url, .hook = thread_hook, .hook_arg = &rec), QV_OK);
    tx_expect_error(f, QV_ECONNECT);
    cr_assert_eq(atomic_load(&rec.ran), 0, "a hook ran although there was no response");
    qv_future_release(f);
    qv_session_free(s);
}
