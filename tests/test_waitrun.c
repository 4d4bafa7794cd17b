/* A thread waiting for a result on a one-worker QV_THREADS pool: the
 * worker lends it its handle and it runs the futures it waits for itself
 * (docs/internals.md). What a user sees must not change: one transfer at a
 * time, a cancel and a timeout that work, transfers that go on when the
 * waiting thread goes away. */
#include "support.h"

#include "../src/internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

TX_KIND_ONLY(threads);

TestSuite(waitrun, .timeout = 60);

/* Transfers between their request hook and their response hook. */
typedef struct census {
    atomic_int running, most;
} census;

static int count_in(qv_session *s, qv_attempt *a, void *arg)
{
    (void)s;
    (void)a;
    census *c = arg;
    int now = atomic_fetch_add(&c->running, 1) + 1;
    int most = atomic_load(&c->most);
    while (now > most && !atomic_compare_exchange_weak(&c->most, &most, now)) {
    }
    return 0;
}

static int count_out(qv_session *s, qv_response *r, void *arg)
{
    (void)s;
    (void)r;
    atomic_fetch_sub(&((census *)arg)->running, 1);
    return 0;
}

/* The thread that started an attempt (a request hook's arg). */
static int note_thread(qv_session *s, qv_attempt *a, void *arg)
{
    (void)s;
    (void)a;
    *(pthread_t *)arg = pthread_self();
    return 0;
}

static qv_future *get_noting(qv_session *s, const char *path, pthread_t *ran_on)
{
    qv_future *f = NULL;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.size = sizeof(qv_request_opts),
                                               .url = tu(path),
                                               .on_request = note_thread,
                                               .on_request_arg = ran_on}),
                 QV_OK);
    return f;
}

/* Makes this thread hold the worker's handle: it slept waiting for a slow
 * result, so the worker lends it the handle when that one is done. 1 if
 * the next request ran on this thread. */
static int wait_slow_then_fast(qv_session *s)
{
    pthread_t slow_on, fast_on;
    qv_future *slow = get_noting(s, "/delay/0.1", &slow_on);
    qv_future *fast = get_noting(s, "/get", &fast_on);
    tx_expect_status(slow, 200);
    tx_expect_status(fast, 200);
    qv_future_release(slow);
    qv_future_release(fast);
    return pthread_equal(fast_on, pthread_self());
}

/* Lends until a request ran on this thread (within a few rounds). */
static void lend_to_me(qv_session *s)
{
    for (int i = 0; i < 20; i++)
        if (wait_slow_then_fast(s)) return;
    cr_assert_fail("in 20 rounds the waiting thread never ran the result it waited for");
}

Test(waitrun, the_waiting_thread_runs_the_next_result_itself, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    lend_to_me(s);
    qv_session_free(s);
}

Test(waitrun, max_workers_still_bounds_transfers, .timeout = 60)
{
    census c = {0};
    qv_session *s = TX_SESSION(.max_workers = 1, .on_request = count_in, .on_request_arg = &c,
                               .hooks = (const qv_hook[]){{count_out, &c}, {0}});
    enum { N = 8 };
    for (int round = 0; round < 3; round++) {
        qv_future *fs[N];
        for (int i = 0; i < N; i++)
            cr_assert_eq(qv_get(s, &fs[i], tu(i % 2 ? "/get" : "/delay/0.05")), QV_OK);
        for (int i = 0; i < N; i++) tx_expect_status(fs[i], 200);
        for (int i = 0; i < N; i++) qv_future_release(fs[i]);
    }
    /* A response hook runs before the next request hook of its thread. */
    cr_assert_eq(atomic_load(&c.most), 1, "%d transfers ran at once on max_workers = 1",
                 atomic_load(&c.most));
    qv_session_free(s);
}

typedef struct later_cancel {
    qv_future *f;
    long after_ms;
} later_cancel;

static void *cancel_later(void *arg)
{
    later_cancel *lc = arg;
    struct timespec ts = {lc->after_ms / 1000, (lc->after_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    qv_future_cancel(lc->f);
    return NULL;
}

Test(waitrun, a_cancel_stops_the_transfer_its_waiting_thread_runs, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    lend_to_me(s);
    pthread_t on;
    qv_future *f = get_noting(s, "/delay/5", &on);
    later_cancel lc = {f, 300};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, cancel_later, &lc), 0);
    double t0 = now_ms();
    cr_assert_eq(qv_future_result(f, NULL, TX_RESULT_TIMEOUT_MS), QV_ECANCELLED);
    double el = now_ms() - t0;
    cr_assert_lt(el, 3000.0, "the cancelled /delay/5 took %.0f ms to end", el);
    pthread_join(th, NULL);
    cr_assert_eq(qv_future_state_get(f), QV_CANCELLED);
    qv_future_release(f);
    qv_session_free(s);
}

Test(waitrun, a_wait_with_a_timeout_ends_in_time_and_the_worker_finishes, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    lend_to_me(s);
    pthread_t on;
    qv_future *f = get_noting(s, "/delay/1", &on);
    double t0 = now_ms();
    cr_assert_eq(qv_future_result(f, NULL, 200), QV_EWAIT_TIMEOUT);
    double el = now_ms() - t0;
    cr_assert_lt(el, 800.0, "a 200 ms wait on /delay/1 returned after %.0f ms", el);
    /* Not waited for any more, it still completes. */
    while (!qv_future_done(f) && now_ms() - t0 < 10000) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    cr_assert(qv_future_done(f), "/delay/1 not done 10 s after its waiter went away");
    tx_expect_status(f, 200);
    qv_future_release(f);
    qv_session_free(s);
}

Test(waitrun, queued_work_goes_on_while_the_waiting_thread_does_other_work, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    lend_to_me(s);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK);
    double t0 = now_ms();
    while (!qv_future_done(f) && now_ms() - t0 < 10000) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    double el = now_ms() - t0;
    cr_assert(qv_future_done(f), "a queued /get not done 10 s after submit, no one waiting");
    cr_assert_lt(el, 2000.0, "a queued /get took %.0f ms with no one waiting", el);
    tx_expect_status(f, 200);
    qv_future_release(f);
    qv_session_free(s);
}

/* A wait that timed out (a poll included) sleeps no more: it leaves no
 * mark that a thread sleeps on the future, or the worker, finishing it,
 * would lend its handle for a wait that is over and sleep ~2 ms while
 * queued work waits. */
Test(waitrun, a_wait_that_timed_out_leaves_no_sleeper_behind, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/delay/1")), QV_OK);
    cr_assert_eq(qv_future_result(f, NULL, 50), QV_EWAIT_TIMEOUT);
    cr_assert(!qv_future_done(f), "/delay/1 done within 50 ms");
    cr_assert(!qv_future_slept_on(f), "a wait that timed out still counts as asleep on its future");
    cr_assert_eq(qv_future_result(f, NULL, 0), QV_EWAIT_TIMEOUT);
    cr_assert(!qv_future_slept_on(f), "a poll still counts as asleep on its future");
    tx_expect_status(f, 200);
    qv_future_release(f);
    qv_session_free(s);
}
