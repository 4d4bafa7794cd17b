/* A thread waiting for a result on a QV_THREADS pool: a worker lends it its
 * handle and it runs queued futures itself, the one it waits for or the
 * queue's next, if they call no code of the caller's (docs/internals.md).
 * What a user sees must not change: max_workers transfers at a time, a
 * result seen in time while this thread runs another transfer, a cancel and
 * a timeout that work, transfers that go on when the waiting thread goes
 * away or the pool is freed; and no hook or callback runs on it.
 *
 * A request hook would keep a future off the waiting thread: which thread
 * runs a transfer is seen through the executor's test probe
 * (qv_threads_probe, internal.h) instead. */
#include "support.h"

#include "../src/internal.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

TX_KIND_ONLY(threads);

/* Transfers between the start of an attempt and its outcome. */
typedef struct census {
    atomic_int running, most;
} census;

static census counted;

/* The probe: notes the thread that starts an attempt of a future whose
 * user data is a pthread_t, and counts the transfers under way. (A future's
 * user data calls no code.) */
static void probe(qv_future *f, int start)
{
    if (!start) {
        atomic_fetch_sub(&counted.running, 1);
        return;
    }
    pthread_t *on = qv_future_user_data(f);
    if (on) *on = pthread_self();
    int now = atomic_fetch_add(&counted.running, 1) + 1;
    int most = atomic_load(&counted.most);
    while (now > most && !atomic_compare_exchange_weak(&counted.most, &most, now)) {
    }
}

static void probe_on(void)
{
    qv_threads_probe = probe;
}

TestSuite(waitrun, .timeout = 60, .init = probe_on);

/* The thread that started an attempt of f: *ran_on (written by the probe,
 * read once f is done). */
static qv_future *get_noting(qv_session *s, const char *path, pthread_t *ran_on)
{
    qv_future *f = NULL;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.size = sizeof(qv_request_opts),
                                               .url = tu(path),
                                               .user_data = ran_on}),
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

/* A done callback that holds its worker (arg: for how many ms). */
static void hold_worker(qv_future *f, void *arg)
{
    (void)f;
    long ms = *(const long *)arg;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Woken by A's completion, this thread is back to wait for B while A's
 * worker still runs A's done callback, before that worker looks at the
 * queue and lends its handle: it waits for the lend and runs B itself.
 * (It found nothing lent and slept on B; the worker lent its handle to no
 * one, took it back 2 ms later and ran B. Under load the woken thread is
 * often back that soon: the test above missed 9 rounds of 10 at load 27.) */
Test(waitrun, a_thread_back_to_wait_before_the_lend_runs_the_next_result, .timeout = 60)
{
    static const long hold_ms = 200;
    qv_session *s = TX_SESSION(.max_workers = 1);
    int ran = 0;
    for (int i = 0; i < 3 && !ran; i++) {
        pthread_t b_on = (pthread_t)0;
        qv_future *a = get_noting(s, "/delay/0.3", NULL);
        cr_assert_eq(qv_future_add_done_callback(a, hold_worker, (void *)&hold_ms), QV_OK);
        qv_future *b = get_noting(s, "/get", &b_on);
        tx_expect_status(a, 200);
        tx_expect_status(b, 200);
        ran = pthread_equal(b_on, pthread_self());
        qv_future_release(a);
        qv_future_release(b);
    }
    cr_assert(ran, "in 3 rounds B never ran on the thread that waited for it during A's callback");
    qv_session_free(s);
}

/* A done callback that holds its worker `ms`, then marks that it is over. */
typedef struct held {
    long ms;
    atomic_int over;
} held;

static void hold_then_mark(qv_future *f, void *arg)
{
    held *h = arg;
    hold_worker(f, &h->ms);
    atomic_store(&h->over, 1);
}

/* On a pool of two: A (/delay/0.3, with h's done callback) and B (b_path)
 * take the workers, C (/get) waits in the queue. This thread slept for A:
 * once back, A's worker is deciding whether to lend until its callback
 * returns, and this thread, waiting for B (or C), waits for that decision. */
static qv_session *decide_after_callback(held *h, const char *b_path, qv_future **b, qv_future **c)
{
    qv_session *s = TX_SESSION(.max_workers = 2);
    qv_future *a = get_noting(s, "/delay/0.3", NULL);
    cr_assert_eq(qv_future_add_done_callback(a, hold_then_mark, h), QV_OK);
    *b = get_noting(s, b_path, NULL);
    *c = get_noting(s, "/get", NULL);
    tx_expect_status(a, 200);
    qv_future_release(a);
    return s;
}

static long own_sleeps(void)
{
    struct rusage ru;
    cr_assert_eq(getrusage(RUSAGE_THREAD, &ru), 0);
    return ru.ru_nvcsw;
}

static void end_decided(qv_session *s, qv_future *b, qv_future *c)
{
    tx_expect_status(b, 200);
    tx_expect_status(c, 200);
    qv_future_release(b);
    qv_future_release(c);
    qv_session_free(s);
}

/* It sleeps until the decision, not looking every 2 ms meanwhile (~500
 * wake-ups in a 1 s callback). */
Test(waitrun, a_thread_waiting_for_the_lend_sleeps_through_the_done_callback_before_it,
     .timeout = 60)
{
    held h = {.ms = 1000};
    qv_future *b, *c;
    qv_session *s = decide_after_callback(&h, "/delay/2", &b, &c);
    long sleeps0 = own_sleeps();
    tx_expect_status(b, 200);
    long sleeps = own_sleeps() - sleeps0;
    cr_assert_leq(sleeps, 40,
                  "waiting for B through A's 1 s done callback, this thread slept %ld times",
                  sleeps);
    end_decided(s, b, c);
}

/* B ends on the other worker while A's worker still runs A's callback:
 * its end wakes this thread, which does not wait for the decision. */
Test(waitrun, a_thread_waiting_for_the_lend_sees_its_result_end_meanwhile, .timeout = 60)
{
    held h = {.ms = 1500};
    qv_future *b, *c;
    qv_session *s = decide_after_callback(&h, "/delay/0.5", &b, &c);
    tx_expect_status(b, 200);
    cr_assert(!atomic_load(&h.over),
              "B (/delay/0.5) came back only after A's 1.5 s done callback was over");
    end_decided(s, b, c);
}

Test(waitrun, a_thread_waiting_for_the_lend_ends_its_wait_at_its_timeout, .timeout = 60)
{
    held h = {.ms = 1500};
    qv_future *b, *c;
    qv_session *s = decide_after_callback(&h, "/delay/3", &b, &c);
    cr_assert_eq(qv_future_result(b, NULL, 200), QV_EWAIT_TIMEOUT);
    cr_assert(!atomic_load(&h.over),
              "a 200 ms wait for B ended only after A's 1.5 s done callback was over");
    end_decided(s, b, c);
}

/* Three rounds of N requests, slow and fast, waited for in order on a pool
 * of `workers`: asserts that no more than that many transfers ran at once,
 * and returns how many requests ran on this thread. */
static int rounds_within_max_workers(int workers)
{
    qv_session *s = TX_SESSION(.max_workers = workers);
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
    /* An attempt's outcome is delivered before its thread starts another. */
    cr_assert_leq(atomic_load(&counted.most), workers,
                  "%d transfers ran at once on max_workers = %d", atomic_load(&counted.most),
                  workers);
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
    double at_ms; /* now_ms() when the cancel returned */
} later_cancel;

static void *cancel_later(void *arg)
{
    later_cancel *lc = arg;
    struct timespec ts = {lc->after_ms / 1000, (lc->after_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    qv_future_cancel(lc->f);
    lc->at_ms = now_ms();
    return NULL;
}

Test(waitrun, a_cancel_stops_the_transfer_its_waiting_thread_runs, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    lend_to_me(s);
    pthread_t on;
    qv_future *f = get_noting(s, "/delay/5", &on);
    later_cancel lc = {.f = f, .after_ms = 300};
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
    qv_future *f = get_noting(s, "/delay/3", &on);
    double t0 = now_ms();
    cr_assert_eq(qv_future_result(f, NULL, 200), QV_EWAIT_TIMEOUT);
    double el = now_ms() - t0;
    /* It ended at its timeout, not with the transfer this thread ran
     * (which the server holds for 3 s), however late a loaded machine
     * woke it. */
    cr_assert(!qv_future_done(f), "a 200 ms wait on /delay/3 returned after %.0f ms, done", el);
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
    int c_done_at_b; /* C was done when B's result came back */
} trio;

static void run_queued_meanwhile(qv_session *s, const char *b_path, const char *c_path, trio *t)
{
    pthread_t a_on, b_on;
    qv_future *a = get_noting(s, "/delay/0.1", &a_on);
    qv_future *b = get_noting(s, b_path, &b_on);
    t->c = get_noting(s, c_path, &t->c_on);
    tx_expect_status(a, 200);
    tx_expect_status(b, 200);
    t->c_done_at_b = qv_future_done(t->c);
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
        /* B ended at ~0.3 s on the other worker, C ran to ~1.6 s here: B's
         * result came back first (not once this thread was done with C). */
        if (ran)
            cr_assert(!t.c_done_at_b,
                      "B (/delay/0.3) came back only after C (/delay/1.5), which this thread ran");
    }
    cr_assert(ran, "in 20 rounds the waiting thread never ran queued work on a lent handle");
    qv_session_free(s);
}

/* The sleeps of the process's threads but this one so far (each thread's
 * voluntary context switches). */
static long others_sleeps(void)
{
    DIR *d = opendir("/proc/self/task");
    cr_assert(d, "no /proc/self/task");
    long sum = 0, self = (long)syscall(SYS_gettid);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || atol(e->d_name) == self) continue;
        char path[300], line[128];
        snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp) continue; /* that thread ended */
        long n;
        while (fgets(line, sizeof(line), fp))
            if (sscanf(line, "voluntary_ctxt_switches: %ld", &n) == 1) sum += n;
        fclose(fp);
    }
    closedir(d);
    return sum;
}

/* While this thread runs C on the lent handle (after B's result, to ~1.6 s),
 * the other worker is idle and the lender sleeps: it need not wake to look
 * at a handle in use, since another worker would take it back at its next
 * pop (it looked every 2 ms: ~0.5 sleeps a ms; now every 10 ms). */
Test(waitrun, the_lender_does_not_wake_every_2_ms_while_its_handle_is_in_use, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 2);
    int ran = 0;
    for (int i = 0; i < 20 && !ran; i++) {
        trio t;
        run_queued_meanwhile(s, "/delay/0.3", "/delay/1.5", &t);
        long sleeps0 = others_sleeps();
        double t0 = now_ms();
        ran = c_ran_here(&t);
        double el = now_ms() - t0;
        long sleeps = others_sleeps() - sleeps0;
        if (ran)
            cr_assert_lt((double)sleeps / el, 0.2,
                         "the other threads slept %ld times in the %.0f ms this thread ran C",
                         sleeps, el);
    }
    cr_assert(ran, "in 20 rounds the waiting thread never ran queued work on a lent handle");
    qv_session_free(s);
}

/* On a pool of one, no other worker takes the lent handle back: its lender
 * looks itself, after 2 ms at first, then less often each time it finds
 * the handle in use (up to every 10 ms). While this thread runs B, 1.5 s,
 * on the handle the worker lent it after A, the lender sleeps ~0.1 times a
 * ms (looking every 2 ms, ~0.5: the window idiom at c = 1 paid ~0.1 looks
 * a request). */
Test(waitrun, a_lone_lender_looks_less_often_while_its_handle_is_in_use, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    int ran = 0;
    for (int i = 0; i < 20 && !ran; i++) {
        pthread_t b_on = (pthread_t)0;
        qv_future *a = get_noting(s, "/delay/0.1", NULL);
        qv_future *b = get_noting(s, "/delay/1.5", &b_on);
        tx_expect_status(a, 200);
        long sleeps0 = others_sleeps();
        double t0 = now_ms();
        tx_expect_status(b, 200);
        double el = now_ms() - t0;
        long sleeps = others_sleeps() - sleeps0;
        ran = pthread_equal(b_on, pthread_self());
        if (ran)
            cr_assert_lt((double)sleeps / el, 0.2,
                         "the lender slept %ld times in the %.0f ms this thread ran B", sleeps, el);
        qv_future_release(a);
        qv_future_release(b);
    }
    cr_assert(ran, "in 20 rounds the waiting thread never ran B on the lent handle");
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
        later_cancel lc = {.f = c, .after_ms = 400};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, cancel_later, &lc), 0);
        tx_expect_status(a, 200);
        tx_expect_status(b, 200);
        pthread_join(th, NULL);
        cr_assert_eq(qv_future_result(c, NULL, TX_RESULT_TIMEOUT_MS), QV_ECANCELLED);
        ran = pthread_equal(c_on, pthread_self());
        if (ran) {
            /* Cancelled at 0.4 s while this thread waited for B (to 0.8 s):
             * left to run, C's transfer ends 5 s after its start, 4.6 s
             * after the cancel. */
            double el = now_ms() - lc.at_ms;
            cr_assert_lt(el, 2500.0, "the cancelled /delay/5 ended %.0f ms after its cancel", el);
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

/* A response hook that takes its time (arg: how many ms). */
static int slow_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s;
    (void)r;
    long ms = *(const long *)arg;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return 0;
}

/* As run_queued_meanwhile, C with a slow response hook: C runs on a worker,
 * never on this thread while it waits for B, so B's result, done on the
 * other worker at ~0.3 s, does not wait for C's hook (it did while a
 * waiting thread ran any queued future: ~1.6 s with a 1.5 s hook). By
 * order: C, whose hook takes 2 s, is not done when B's result is back. */
Test(waitrun, a_result_does_not_wait_for_the_hook_of_queued_work, .timeout = 60)
{
    static const long hook_ms = 2000;
    qv_session *s = TX_SESSION(.max_workers = 2);
    for (int i = 0; i < 8; i++) {
        pthread_t a_on, b_on, c_on = (pthread_t)0;
        double t0 = now_ms();
        qv_future *a = get_noting(s, "/delay/0.1", &a_on);
        qv_future *b = get_noting(s, "/delay/0.3", &b_on);
        qv_future *c = NULL;
        cr_assert_eq(qv_request(s, &c,
                                &(qv_request_opts){.size = sizeof(qv_request_opts),
                                                   .url = tu("/get"),
                                                   .user_data = &c_on,
                                                   .hook = slow_hook,
                                                   .hook_arg = (void *)&hook_ms}),
                     QV_OK);
        tx_expect_status(a, 200);
        tx_expect_status(b, 200);
        int c_done = qv_future_done(c);
        double b_ms = now_ms() - t0;
        tx_expect_status(c, 200);
        cr_assert(!c_done,
                  "round %d: B (/delay/0.3) came back after %.0f ms, after C's hook (%ld ms)", i,
                  b_ms, hook_ms);
        cr_assert(!pthread_equal(c_on, pthread_self()),
                  "round %d: C, which has a response hook, ran on the waiting thread", i);
        qv_future_release(a);
        qv_future_release(b);
        qv_future_release(c);
    }
    qv_session_free(s);
}

static int on_request_nop(qv_session *s, qv_attempt *a, void *arg)
{
    (void)s;
    (void)a;
    (void)arg;
    return 0;
}

static int hook_nop(qv_session *s, qv_response *r, void *arg)
{
    (void)s;
    (void)r;
    (void)arg;
    return 0;
}

static int on_data_nop(qv_future *f, const void *chunk, size_t len, void *arg)
{
    (void)f;
    (void)chunk;
    (void)len;
    (void)arg;
    return 0;
}

static void on_progress_nop(qv_future *f, long long dn, long long dt, long long un, long long ut,
                            void *arg)
{
    (void)f;
    (void)dn;
    (void)dt;
    (void)un;
    (void)ut;
    (void)arg;
}

static long on_upload_nothing(void *buf, size_t cap, void *arg)
{
    (void)buf;
    (void)cap;
    (void)arg;
    return 0;
}

static void on_debug_nop(qv_future *f, qv_debug_kind kind, const char *data, size_t len, void *arg)
{
    (void)f;
    (void)kind;
    (void)data;
    (void)len;
    (void)arg;
}

static void done_nop(qv_future *f, void *arg)
{
    (void)f;
    (void)arg;
}

/* Each kind of code of the caller's that a request can carry: C (queued
 * behind A and B on a pool of two, as in run_queued_meanwhile) with it
 * never runs on this thread while it waits for B, in any of 6 rounds. (With
 * no such code, C ran here within 20 rounds: the tests above.) */
Test(waitrun, no_future_that_calls_code_of_yours_runs_on_the_waiting_thread, .timeout = 60)
{
    const struct {
        const char *what;
        qv_session_opts so;
        qv_request_opts ro;
        int done_cb;
    } kinds[] = {
        {"a response hook", {0}, {.hook = hook_nop}, 0},
        {"the session's response hook",
         {.hooks = (const qv_hook[]){{hook_nop, NULL}, {0}}},
         {0},
         0},
        {"a request hook", {0}, {.on_request = on_request_nop}, 0},
        {"the session's request hook", {.on_request = on_request_nop}, {0}, 0},
        {"on_debug", {0}, {.on_debug = on_debug_nop}, 0},
        {"the session's on_debug", {.on_debug = on_debug_nop}, {0}, 0},
        {"on_data", {0}, {.on_data = on_data_nop}, 0},
        {"on_progress", {0}, {.on_progress = on_progress_nop}, 0},
        {"on_upload", {0}, {.method = "POST", .on_upload = on_upload_nothing}, 0},
        {"a done callback", {0}, {0}, 1},
    };
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        const qv_session_opts *so = &kinds[k].so;
        qv_session *s = TX_SESSION(.max_workers = 2, .hooks = so->hooks,
                                   .on_request = so->on_request, .on_debug = so->on_debug);
        for (int i = 0; i < 6; i++) {
            pthread_t a_on, b_on, c_on = (pthread_t)0;
            qv_future *a = get_noting(s, "/delay/0.1", &a_on);
            qv_future *b = get_noting(s, "/delay/0.3", &b_on);
            qv_request_opts ro = kinds[k].ro;
            ro.size = sizeof(ro);
            ro.url = tu(ro.method ? "/post" : "/get");
            ro.user_data = &c_on;
            qv_future *c = NULL;
            cr_assert_eq(qv_request(s, &c, &ro), QV_OK);
            if (kinds[k].done_cb)
                cr_assert_eq(qv_future_add_done_callback(c, done_nop, NULL), QV_OK);
            tx_expect_status(a, 200);
            tx_expect_status(b, 200);
            tx_expect_status(c, 200);
            cr_assert(!pthread_equal(c_on, pthread_self()),
                      "a future with %s ran on the thread that waited for another", kinds[k].what);
            qv_future_release(a);
            qv_future_release(b);
            qv_future_release(c);
        }
        qv_session_free(s);
    }
}

/* A done callback added from another thread while C runs on the waiting
 * thread (it had none when that thread took it) runs on a worker. */
typedef struct late_cb {
    qv_future *c;
    atomic_int c_here; /* the probe saw C start on the waiting thread */
    pthread_t waiting, cb_on;
    atomic_int ran;
} late_cb;

static _Atomic(late_cb *) watched;

static void note_cb_thread(qv_future *f, void *arg)
{
    (void)f;
    late_cb *l = arg;
    l->cb_on = pthread_self();
    atomic_store(&l->ran, 1);
}

static void probe_late(qv_future *f, int start)
{
    probe(f, start);
    late_cb *l = atomic_load(&watched);
    if (start && l && f == l->c && pthread_equal(pthread_self(), l->waiting))
        atomic_store(&l->c_here, 1);
}

static void *add_cb_once_c_runs(void *arg)
{
    late_cb *l = arg;
    double t0 = now_ms();
    while (!atomic_load(&l->c_here) && now_ms() - t0 < 2000) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (atomic_load(&l->c_here)) qv_future_add_done_callback(l->c, note_cb_thread, l);
    return NULL;
}

Test(waitrun, a_done_callback_added_while_the_waiting_thread_runs_the_future_runs_on_a_worker,
     .timeout = 60)
{
    qv_threads_probe = probe_late;
    qv_session *s = TX_SESSION(.max_workers = 2);
    int ran = 0;
    for (int i = 0; i < 20 && !ran; i++) {
        pthread_t a_on, b_on, c_on;
        late_cb l = {.waiting = pthread_self()};
        qv_future *a = get_noting(s, "/delay/0.1", &a_on);
        qv_future *b = get_noting(s, "/delay/0.3", &b_on);
        l.c = get_noting(s, "/delay/0.6", &c_on);
        atomic_store(&watched, &l);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, add_cb_once_c_runs, &l), 0);
        tx_expect_status(a, 200);
        tx_expect_status(b, 200);
        tx_expect_status(l.c, 200);
        pthread_join(th, NULL);
        ran = atomic_load(&l.c_here);
        if (ran) {
            double t0 = now_ms();
            while (!atomic_load(&l.ran) && now_ms() - t0 < 5000) {
                struct timespec ts = {0, 1000000};
                nanosleep(&ts, NULL);
            }
            cr_assert(atomic_load(&l.ran), "the done callback never ran");
            cr_assert(!pthread_equal(l.cb_on, pthread_self()),
                      "a done callback added while C ran on the waiting thread ran there");
        }
        atomic_store(&watched, NULL);
        qv_future_release(a);
        qv_future_release(b);
        qv_future_release(l.c);
    }
    cr_assert(ran, "in 20 rounds the waiting thread never ran queued work on a lent handle");
    qv_session_free(s);
}

/* While this thread runs C on the lent handle and waits for B, the other
 * worker ends B and takes D, the queue's last future: B being done, it
 * wakes this thread then, so that it collects B and submits more before
 * the workers run out of work (docs/internals.md). With its 1 ms look raised out of the way,
 * nothing else wakes it until that worker finds the queue empty after D
 * (/delay/1): B's result would come back only once D was done. */
Test(waitrun, a_pop_that_empties_the_queue_wakes_the_waiting_thread, .timeout = 60)
{
    qv_until_look_ms = 60000;
    qv_session *s = TX_SESSION(.max_workers = 2);
    int ran = 0;
    for (int i = 0; i < 20 && !ran; i++) {
        pthread_t a_on, b_on, c_on, d_on;
        qv_future *a = get_noting(s, "/delay/0.1", &a_on);
        qv_future *b = get_noting(s, "/delay/0.3", &b_on);
        qv_future *c = get_noting(s, "/delay/3", &c_on);
        qv_future *d = get_noting(s, "/delay/1", &d_on);
        tx_expect_status(a, 200);
        tx_expect_status(b, 200);
        int d_done_at_b = qv_future_done(d);
        tx_expect_status(c, 200);
        tx_expect_status(d, 200);
        ran = pthread_equal(c_on, pthread_self());
        if (ran)
            cr_assert(!d_done_at_b, "B (/delay/0.3) came back only after D (/delay/1), which "
                                    "the other worker took as the queue's last");
        qv_future_release(a);
        qv_future_release(b);
        qv_future_release(c);
        qv_future_release(d);
    }
    cr_assert(ran, "in 20 rounds the waiting thread never ran queued work on a lent handle");
    qv_session_free(s);
    qv_until_look_ms = 1;
}
