/* A thread waiting for a result on a QV_THREADS pool: a worker lends it its
 * handle and it runs queued futures itself, the one it waits for or the
 * queue's next (docs/internals.md). What a user sees must not change:
 * max_workers transfers at a time, a result seen in time while this thread
 * runs another transfer, a cancel and a timeout that work, transfers that
 * go on when the waiting thread goes away or the pool is freed. */
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

/* Three rounds of N requests, slow and fast, waited for in order on a pool
 * of `workers`: asserts that no more than that many transfers ran at once,
 * and returns how many requests ran on this thread. */
static int rounds_within_max_workers(int workers)
{
    census c = {0};
    qv_session *s = TX_SESSION(.max_workers = workers, .on_request = count_in, .on_request_arg = &c,
                               .hooks = (const qv_hook[]){{count_out, &c}, {0}});
    enum { N = 12 };
    pthread_t on[N];
    int here = 0;
    for (int round = 0; round < 3; round++) {
        qv_future *fs[N];
        for (int i = 0; i < N; i++) fs[i] = get_noting(s, i % 3 ? "/get" : "/delay/0.05", &on[i]);
        for (int i = 0; i < N; i++) tx_expect_status(fs[i], 200);
        for (int i = 0; i < N; i++) {
            here += pthread_equal(on[i], pthread_self());
            qv_future_release(fs[i]);
        }
    }
    /* A response hook runs before the next request hook of its thread. */
    cr_assert_leq(atomic_load(&c.most), workers, "%d transfers ran at once on max_workers = %d",
                  atomic_load(&c.most), workers);
    qv_session_free(s);
    return here;
}

Test(waitrun, max_workers_still_bounds_transfers, .timeout = 60)
{
    rounds_within_max_workers(1);
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

/* On a pool of two: A and B take the workers, C waits in the queue. This
 * thread sleeps for A, so A's worker lends it its handle, and while it
 * waits for B it may run C. Sets how long after the submit B's result came
 * back; C and its thread (c_on, read once C is done) stay the caller's. */
typedef struct trio {
    qv_future *c;
    pthread_t c_on;
    double b_ms;
} trio;

static void run_queued_meanwhile(qv_session *s, const char *b_path, const char *c_path, trio *t)
{
    pthread_t a_on, b_on;
    double t0 = now_ms();
    qv_future *a = get_noting(s, "/delay/0.1", &a_on);
    qv_future *b = get_noting(s, b_path, &b_on);
    t->c = get_noting(s, c_path, &t->c_on);
    tx_expect_status(a, 200);
    tx_expect_status(b, 200);
    t->b_ms = now_ms() - t0;
    qv_future_release(a);
    qv_future_release(b);
}

/* C's result; whether it ran on this thread. */
static int c_ran_here(trio *t)
{
    tx_expect_status(t->c, 200);
    qv_future_release(t->c);
    return pthread_equal(t->c_on, pthread_self());
}

Test(waitrun, a_waiting_thread_runs_queued_work_and_still_sees_its_result_in_time, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 2);
    int ran = 0;
    for (int i = 0; i < 20 && !ran; i++) {
        trio t;
        run_queued_meanwhile(s, "/delay/0.3", "/delay/1.5", &t);
        ran = c_ran_here(&t);
        /* B ended at ~0.3 s on the other worker, C ran to ~1.6 s here. */
        if (ran)
            cr_assert_lt(t.b_ms, 1000.0,
                         "B (/delay/0.3) came back after %.0f ms while this thread ran C", t.b_ms);
    }
    cr_assert(ran, "in 20 rounds the waiting thread never ran queued work on a lent handle");
    qv_session_free(s);
}

Test(waitrun, max_workers_still_bounds_transfers_on_a_larger_pool, .timeout = 60)
{
    int here = rounds_within_max_workers(2);
    cr_assert_gt(here, 0, "no request ran on the waiting thread");
}

Test(waitrun, a_cancel_stops_the_queued_transfer_a_waiting_thread_runs, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 2);
    int ran = 0;
    for (int i = 0; i < 20 && !ran; i++) {
        pthread_t a_on, b_on, c_on = (pthread_t)0;
        qv_future *a = get_noting(s, "/delay/0.1", &a_on);
        qv_future *b = get_noting(s, "/delay/0.8", &b_on);
        qv_future *c = get_noting(s, "/delay/5", &c_on);
        later_cancel lc = {c, 400};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, cancel_later, &lc), 0);
        tx_expect_status(a, 200);
        tx_expect_status(b, 200);
        pthread_join(th, NULL);
        double t0 = now_ms();
        cr_assert_eq(qv_future_result(c, NULL, TX_RESULT_TIMEOUT_MS), QV_ECANCELLED);
        ran = pthread_equal(c_on, pthread_self());
        if (ran) {
            /* Cancelled at 0.4 s while this thread waited for B (to 0.8 s). */
            double el = now_ms() - t0;
            cr_assert_lt(el, 100.0, "the cancelled /delay/5 ended %.0f ms after B's result", el);
        }
        qv_future_release(a);
        qv_future_release(b);
        qv_future_release(c);
    }
    cr_assert(ran, "in 20 rounds the waiting thread never ran queued work on a lent handle");
    qv_session_free(s);
}

Test(waitrun, freeing_the_pool_while_a_lent_handle_holds_a_transfer_finishes_it, .timeout = 60)
{
    int ran = 0;
    for (int i = 0; i < 20 && !ran; i++) {
        qv_session *s = TX_SESSION(.max_workers = 2);
        /* B's result leaves C in flight in the lent handle. */
        trio t;
        run_queued_meanwhile(s, "/delay/0.3", "/delay/0.5", &t);
        double t0 = now_ms();
        qv_session_free(s); /* the pool goes with it */
        double el = now_ms() - t0;
        cr_assert_lt(el, 5000.0, "freeing the pool took %.0f ms", el);
        ran = c_ran_here(&t);
    }
    cr_assert(ran, "in 20 rounds the waiting thread never ran queued work on a lent handle");
}
