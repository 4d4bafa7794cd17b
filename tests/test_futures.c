/* Futures: result/wait timeouts, states, done callbacks, user data,
 * refcounting, qv_wait and qv_as_completed. */
#include "support.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

TestSuite(futures, .timeout = 30);

Test(futures, result_timeout_then_completes, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/delay/2")), QV_OK);
    qv_response *r = (qv_response *)(void *)&r; /* must not be set on timeout */
    double t0 = now_ms();
    int rc = qv_future_result(f, &r, 100);
    double el = now_ms() - t0;
    cr_assert_eq(rc, QV_EWAIT_TIMEOUT, "result with 100 ms gave %s", qv_errname(rc));
    cr_assert(el >= 80.0 && el < 1500.0, "waited %.0f ms for a 100 ms timeout", el);
    cr_assert(r == NULL || r == (qv_response *)(void *)&r,
              "a response was handed out on QV_EWAIT_TIMEOUT");
    cr_assert_eq(qv_future_done(f), 0);
    cr_assert_eq(qv_future_error_code(f), QV_OK, "not done: error code is QV_OK");
    cr_assert_null(qv_future_error(f));
    /* The future goes on and completes. */
    tx_expect_status(f, 200);
    cr_assert_eq(qv_future_done(f), 1);
    qv_future_release(f);
    qv_session_free(s);
}

Test(futures, wait_and_done, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/delay/1")), QV_OK);
    cr_assert_eq(qv_future_done(f), 0);
    cr_assert_eq(qv_future_wait(f, 50), QV_EWAIT_TIMEOUT);
    cr_assert_eq(qv_future_wait(f, -1), QV_OK);
    cr_assert_eq(qv_future_done(f), 1);
    cr_assert_eq(qv_future_wait(f, 0), QV_OK, "waiting on a done future returns at once");
    /* out may be NULL. */
    cr_assert_eq(qv_future_result(f, NULL, 0), QV_OK);
    qv_future_release(f);
    qv_session_free(s);
}

Test(futures, state_transitions, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *ok, *bad;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", tx_closed_port());
    cr_assert_eq(qv_get(s, &ok, tu("/delay/1")), QV_OK);
    cr_assert_eq(qv_get(s, &bad, url), QV_OK);
    qv_future_state st = qv_future_state_get(ok);
    cr_assert(st == QV_PENDING || st == QV_RUNNING, "fresh future in state %d", (int)st);
    cr_assert_eq(qv_future_wait(ok, -1), QV_OK);
    cr_assert_eq(qv_future_wait(bad, -1), QV_OK);
    cr_assert_eq(qv_future_state_get(ok), QV_FINISHED);
    cr_assert_eq(qv_future_state_get(bad), QV_FAILED);
    cr_assert_eq(qv_future_error_code(ok), QV_OK);
    cr_assert_eq(qv_future_error_code(bad), QV_ECONNECT);
    cr_assert_null(qv_future_error(ok));
    cr_assert_not_null(qv_future_error(bad));
    /* Terminal states are final: cancelling a done future does nothing. */
    cr_assert_eq(qv_future_cancel(ok), 0);
    cr_assert_eq(qv_future_cancel(bad), 0);
    cr_assert_eq(qv_future_state_get(ok), QV_FINISHED);
    cr_assert_eq(qv_future_state_get(bad), QV_FAILED);
    qv_response *r;
    cr_assert_eq(qv_future_result(ok, &r, 0), QV_OK);
    cr_assert_eq(qv_response_status(r), 200);
    /* Asking twice gives the same response. */
    qv_response *r2;
    cr_assert_eq(qv_future_result(ok, &r2, 0), QV_OK);
    cr_assert_eq(r, r2);
    qv_future_release(ok);
    qv_future_release(bad);
    qv_session_free(s);
}

struct cb_rec {
    atomic_int calls;
    atomic_int wrong_future;
    qv_future *expect;
    pthread_t thread;
};

static void count_cb(qv_future *f, void *arg)
{
    struct cb_rec *rec = arg;
    if (f != rec->expect) atomic_fetch_add(&rec->wrong_future, 1);
    if (!qv_future_done(f)) atomic_fetch_add(&rec->wrong_future, 1);
    rec->thread = pthread_self();
    atomic_fetch_add(&rec->calls, 1);
}

Test(futures, done_callbacks_fire_exactly_once, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    static struct cb_rec a, b, late, failed;
    qv_future *f, *g;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", tx_closed_port());
    cr_assert_eq(qv_get(s, &f, tu("/delay/1")), QV_OK);
    cr_assert_eq(qv_get(s, &g, url), QV_OK);
    a.expect = b.expect = late.expect = f;
    failed.expect = g;
    cr_assert_eq(qv_future_add_done_callback(f, count_cb, &a), QV_OK);
    cr_assert_eq(qv_future_add_done_callback(f, count_cb, &b), QV_OK);
    cr_assert_eq(qv_future_add_done_callback(g, count_cb, &failed), QV_OK);
    cr_assert_eq(qv_future_wait(f, -1), QV_OK);
    cr_assert_eq(qv_future_wait(g, -1), QV_OK);

    /* Added after completion: runs at once, in the caller. */
    cr_assert_eq(qv_future_add_done_callback(f, count_cb, &late), QV_OK);
    cr_assert_eq(atomic_load(&late.calls), 1, "late callback did not run at once");
    cr_assert(pthread_equal(late.thread, pthread_self()), "late callback ran on another thread");

    qv_future_release(f);
    qv_future_release(g);
    /* Freeing the session waits for everything, callbacks included. */
    qv_session_free(s);
    cr_assert_eq(atomic_load(&a.calls), 1, "callback a ran %d times", atomic_load(&a.calls));
    cr_assert_eq(atomic_load(&b.calls), 1, "callback b ran %d times", atomic_load(&b.calls));
    cr_assert_eq(atomic_load(&late.calls), 1);
    cr_assert_eq(atomic_load(&failed.calls), 1, "callback on a failed future ran %d times",
                 atomic_load(&failed.calls));
    cr_assert_eq(atomic_load(&a.wrong_future) + atomic_load(&b.wrong_future) +
                     atomic_load(&failed.wrong_future) + atomic_load(&late.wrong_future),
                 0, "a callback got the wrong future or a future that was not done");
}

Test(futures, user_data, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    static int tag1, tag2;
    qv_future *f, *g;
    cr_assert_eq(qv_get(s, &f, tu("/get"), .user_data = &tag1), QV_OK);
    cr_assert_eq(qv_get(s, &g, tu("/get")), QV_OK);
    cr_assert_eq(qv_future_user_data(f), &tag1);
    cr_assert_null(qv_future_user_data(g));
    qv_future_set_user_data(g, &tag2);
    cr_assert_eq(qv_future_user_data(g), &tag2);
    tx_expect_status(f, 200);
    tx_expect_status(g, 200);
    /* Still there after completion. */
    cr_assert_eq(qv_future_user_data(f), &tag1);
    cr_assert_eq(qv_future_user_data(g), &tag2);
    qv_future_release(f);
    qv_future_release(g);
    qv_session_free(s);
}

Test(futures, release_before_completion_is_safe, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    static struct cb_rec rec;
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/delay/1")), QV_OK);
    rec.expect = f;
    cr_assert_eq(qv_future_add_done_callback(f, count_cb, &rec), QV_OK);
    double t0 = now_ms();
    qv_future_release(f); /* cancels nothing */
    qv_session_free(s);   /* waits for the request */
    double el = now_ms() - t0;
    cr_assert_eq(atomic_load(&rec.calls), 1, "the released future did not complete");
    cr_assert(el >= 500.0 && el < 10000.0,
              "session free took %.0f ms; it should wait for "
              "the /delay/1 in flight",
              el);
}

Test(futures, ref_and_release, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK);
    qv_future *g = qv_future_ref(f);
    cr_assert_eq(g, f, "qv_future_ref returns its argument");
    qv_future_release(f);
    /* One reference left: the future and its response are still valid. */
    qv_response *r = tx_expect_status(g, 200);
    tx_assert_str_eq(tx_jstr(tx_json(r), "url"), tu("/get"));
    qv_future_release(g);
    qv_session_free(s);
}

/* A future may outlive its session and executor: what it holds (its state,
 * its response) stays, and a cancel of it, done, no longer reaches the
 * executor, whose memory is gone (the valgrind pass reads this test). */
Test(futures, a_done_future_outlives_its_executor, .timeout = 30)
{
    qv_executor *ex = tx_executor(1);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK);
    tx_expect_status(f, 200);
    qv_session_free(s);
    qv_executor_free(ex);
    cr_assert_eq(qv_future_cancel(f), 0, "a finished future cannot be cancelled");
    cr_assert_eq(qv_future_state_get(f), QV_FINISHED);
    tx_expect_status(f, 200);
    qv_future_release(f);
}

Test(futures, wait_all_completed, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *fs[4];
    cr_assert_eq(qv_get(s, &fs[0], tu("/delay/1")), QV_OK);
    cr_assert_eq(qv_get(s, &fs[1], tu("/get")), QV_OK);
    fs[2] = NULL; /* ignored */
    cr_assert_eq(qv_get(s, &fs[3], tu("/status/500")), QV_OK);
    cr_assert_eq(qv_wait(fs, 4, QV_ALL_COMPLETED, 100), QV_EWAIT_TIMEOUT);
    double t0 = now_ms();
    cr_assert_eq(qv_wait(fs, 4, QV_ALL_COMPLETED, 10000), QV_OK);
    cr_assert_lt(now_ms() - t0, 5000.0);
    for (int i = 0; i < 4; i++)
        if (fs[i]) cr_assert_eq(qv_future_done(fs[i]), 1, "future %d not done", i);
    cr_assert_eq(qv_wait(fs, 0, QV_ALL_COMPLETED, 0), QV_OK, "n == 0 returns QV_OK");
    cr_assert_eq(qv_wait(NULL, 0, QV_FIRST_COMPLETED, -1), QV_OK);
    for (int i = 0; i < 4; i++) qv_future_release(fs[i]);
    qv_session_free(s);
}

Test(futures, wait_first_completed, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *fs[2];
    cr_assert_eq(qv_get(s, &fs[0], tu("/delay/3")), QV_OK);
    cr_assert_eq(qv_get(s, &fs[1], tu("/delay/0")), QV_OK);
    double t0 = now_ms();
    cr_assert_eq(qv_wait(fs, 2, QV_FIRST_COMPLETED, 10000), QV_OK);
    double el = now_ms() - t0;
    cr_assert_lt(el, 2000.0, "FIRST_COMPLETED returned after %.0f ms", el);
    cr_assert_eq(qv_future_done(fs[1]), 1, "the fast one is done");
    cr_assert_eq(qv_future_done(fs[0]), 0, "the slow one is not done");
    qv_future_cancel(fs[0]);
    for (int i = 0; i < 2; i++) qv_future_release(fs[i]);
    qv_session_free(s);
}

Test(futures, wait_first_exception, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *fs[3];
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", tx_closed_port());
    cr_assert_eq(qv_get(s, &fs[0], tu("/delay/3")), QV_OK);
    cr_assert_eq(qv_get(s, &fs[1], tu("/get")), QV_OK);
    cr_assert_eq(qv_get(s, &fs[2], url), QV_OK);
    double t0 = now_ms();
    cr_assert_eq(qv_wait(fs, 3, QV_FIRST_EXCEPTION, 10000), QV_OK);
    double el = now_ms() - t0;
    cr_assert_lt(el, 2000.0, "FIRST_EXCEPTION returned after %.0f ms", el);
    cr_assert_eq(qv_future_state_get(fs[2]), QV_FAILED);
    cr_assert_eq(qv_future_done(fs[0]), 0, "the slow one is not done");
    qv_future_cancel(fs[0]);
    for (int i = 0; i < 3; i++) qv_future_release(fs[i]);
    qv_session_free(s);
}

Test(futures, wait_first_exception_without_exception_waits_for_all, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *fs[2];
    cr_assert_eq(qv_get(s, &fs[0], tu("/delay/1")), QV_OK);
    cr_assert_eq(qv_get(s, &fs[1], tu("/get")), QV_OK);
    cr_assert_eq(qv_wait(fs, 2, QV_FIRST_EXCEPTION, 10000), QV_OK);
    cr_assert_eq(qv_future_state_get(fs[0]), QV_FINISHED);
    cr_assert_eq(qv_future_state_get(fs[1]), QV_FINISHED);
    for (int i = 0; i < 2; i++) qv_future_release(fs[i]);
    qv_session_free(s);
}

Test(futures, as_completed_in_completion_order, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    static const int delays[3] = {2, 0, 1};
    qv_future *fs[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(
            qv_get(s, &fs[i], tuf("/delay/%d", delays[i]), .user_data = (void *)&delays[i]), QV_OK);
    qv_as_completed *ac = NULL;
    cr_assert_eq(qv_as_completed_new(&ac, fs, 3), QV_OK);
    cr_assert_not_null(ac);
    /* The iterator holds its own references. */
    for (int i = 0; i < 3; i++) qv_future_release(fs[i]);

    for (int expect = 0; expect < 3; expect++) {
        qv_future *f = NULL;
        int rc = qv_as_completed_next(ac, &f, 10000);
        cr_assert_eq(rc, QV_OK, "next #%d gave %s", expect, qv_errname(rc));
        cr_assert_not_null(f);
        cr_assert_eq(qv_future_done(f), 1);
        const int *d = qv_future_user_data(f);
        cr_assert_not_null(d);
        cr_assert_eq(*d, expect, "completion #%d was /delay/%d", expect, *d);
        tx_expect_status(f, 200);
    }
    qv_future *f = (qv_future *)(void *)&f;
    cr_assert_eq(qv_as_completed_next(ac, &f, 1000), QV_ESHUTDOWN);
    cr_assert_eq(qv_as_completed_next(ac, &f, 0), QV_ESHUTDOWN);
    qv_as_completed_free(ac);
    qv_session_free(s);
}

Test(futures, as_completed_timeout, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/delay/2")), QV_OK);
    qv_as_completed *ac;
    cr_assert_eq(qv_as_completed_new(&ac, &f, 1), QV_OK);
    qv_future *out = NULL;
    double t0 = now_ms();
    cr_assert_eq(qv_as_completed_next(ac, &out, 100), QV_EWAIT_TIMEOUT);
    cr_assert_lt(now_ms() - t0, 1500.0);
    cr_assert_eq(qv_as_completed_next(ac, &out, 10000), QV_OK);
    cr_assert_eq(out, f);
    cr_assert_eq(qv_as_completed_next(ac, &out, 0), QV_ESHUTDOWN);
    qv_as_completed_free(ac);
    qv_future_release(f);

    /* An empty iterator is exhausted at once. */
    cr_assert_eq(qv_as_completed_new(&ac, NULL, 0), QV_OK);
    cr_assert_eq(qv_as_completed_next(ac, &out, -1), QV_ESHUTDOWN);
    qv_as_completed_free(ac);
    qv_session_free(s);
}
