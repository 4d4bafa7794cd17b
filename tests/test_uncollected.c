/* The bound on finished-but-uncollected responses (max_uncollected) of
 * QV_THREADS and QV_LOOP: the workers (the loop's leader) pause while that
 * many wait for their collector, and never while someone needs a future
 * that has not started (a wait on it, a poll, a waiter, a callback), a
 * submit waits for room or a session closes. The executor's counts
 * (src/internal.h) tell when every worker (the leader) has paused and that
 * nothing is left counted at the end. */
#include "support.h"

#include "../src/internal.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

TX_KIND_ONLY(threads, loop);

TestSuite(uncollected, .timeout = 60);

enum { WORKERS = 3, BOUND = 5, N = 40 };

static qv_executor *bounded(size_t max_queued)
{
    qv_executor *ex;
    cr_assert_eq(qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                          .kind = tx_kind(),
                                                          .max_workers = WORKERS,
                                                          .max_queued = max_queued,
                                                          .max_uncollected = BOUND}),
                 QV_OK);
    return ex;
}

static void submit_all(qv_session *s, qv_future **fs, int n)
{
    for (int i = 0; i < n; i++) cr_assert_eq(qv_get(s, &fs[i], tuf("/get?i=%d", i)), QV_OK);
}

static size_t finished(qv_executor *ex)
{
    qv_executor_stats st;
    cr_assert_eq(qv_executor_stats_get(ex, &st), QV_OK);
    return st.completed;
}

/* Polls cond, 1 ms apart, for 20 s at most; fails with the message then. */
#define POLL_UNTIL(cond, ...)                                                                      \
    do {                                                                                           \
        double deadline_ = now_ms() + 20000;                                                       \
        while (!(cond)) {                                                                          \
            cr_assert(now_ms() < deadline_, __VA_ARGS__);                                          \
            nanosleep(&(struct timespec){0, 1000000}, NULL);                                       \
        }                                                                                          \
    } while (0)

/* What pauses: each worker of a pool, the loop's leader. */
static int pausers(void)
{
    return tx_kind() == QV_THREADS ? WORKERS : 1;
}

/* Every worker paused (the loop's leader, and the transfers it ran ended):
 * each of the n submitted is finished or queued. */
static void until_all_paused(qv_executor *ex, size_t n)
{
    qv_executor_stats st = {0};
    POLL_UNTIL(atomic_load(&ex->paused) >= pausers() && qv_executor_stats_get(ex, &st) == QV_OK &&
                   st.completed + st.queued == n,
               "workers never paused: %zu finished, %zu queued, %ld uncollected", st.completed,
               st.queued, atomic_load(&ex->uncollected));
}

/* A session on ex with N requests submitted, once every worker paused. */
static qv_session *submitted_and_paused(qv_executor *ex, qv_future **fs)
{
    qv_session *s = TX_SESSION(.executor = ex);
    submit_all(s, fs, N);
    until_all_paused(ex, N);
    return s;
}

static void collect_all(qv_future **fs, int n)
{
    for (int i = 0; i < n; i++) {
        tx_expect_status(fs[i], 200);
        qv_future_release(fs[i]);
    }
}

/* Nothing is counted once everything is collected, and the executor goes. */
static void done(qv_session *s, qv_executor *ex)
{
    cr_assert_eq(atomic_load(&ex->uncollected), 0);
    cr_assert_eq(atomic_load(&ex->urgent), 0);
    qv_session_free(s);
    qv_executor_free(ex);
}

Test(uncollected, workers_pause_at_the_bound_and_go_on_as_responses_are_collected, .timeout = 60)
{
    qv_executor *ex = bounded(0);
    qv_future *fs[N];
    qv_session *s = submitted_and_paused(ex, fs);
    /* Pops stop at the bound; what already ran may still finish. */
    size_t at_pause = finished(ex);
    cr_assert(at_pause >= BOUND && at_pause <= BOUND + WORKERS - 1,
              "%zu finished with a bound of %d and %d workers", at_pause, BOUND, WORKERS);
    qv_executor_stats st;
    cr_assert_eq(qv_executor_stats_get(ex, &st), QV_OK);
    cr_assert_eq(st.queued, N - at_pause, "every worker paused, yet only %zu of %d are queued",
                 st.queued, N - (int)at_pause);
    /* Collected in order, the rest finishes, never far ahead of us. */
    for (int i = 0; i < N; i++) {
        tx_expect_status(fs[i], 200);
        qv_future_release(fs[i]);
        size_t ahead = finished(ex) - (size_t)(i + 1);
        cr_assert_leq(ahead, BOUND + 2 * WORKERS, "%zu finished responses uncollected", ahead);
    }
    cr_assert_eq(finished(ex), N);
    done(s, ex);
}

/* Paused workers wait until half the bound is collected, then all go on:
 * woken one a collection, each ran one request and paused again. The
 * loop's leader, woken by transfers' events as well, starts nothing before
 * either, then fills its slots. */
Test(uncollected, paused_workers_go_on_once_half_the_bound_is_collected, .timeout = 60)
{
    qv_executor *ex = bounded(0);
    qv_future *fs[N];
    qv_session *s = submitted_and_paused(ex, fs);
    /* Every worker paused: what they popped, the first at_pause, finished. */
    int at_pause = (int)finished(ex), i = 0;
    for (; atomic_load(&ex->uncollected) > BOUND / 2 + 1; i++) {
        tx_expect_status(fs[i], 200);
        qv_future_release(fs[i]);
    }
    double until = now_ms() + 300;
    while (now_ms() < until) {
        cr_assert_eq(atomic_load(&ex->paused), pausers(), "a worker went on at %ld uncollected",
                     atomic_load(&ex->uncollected));
        cr_assert_eq(finished(ex), (size_t)at_pause);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    tx_expect_status(fs[i], 200);
    qv_future_release(fs[i++]);
    POLL_UNTIL(finished(ex) >= (size_t)at_pause + WORKERS,
               "%zu finished after half the bound was collected (%d before)", finished(ex),
               at_pause);
    collect_all(fs + i, N - i);
    done(s, ex);
}

/* Without the network: what 0 means, for a few pool sizes. */
Test(uncollected, the_default_bound_is_max_workers_and_at_least_64, .timeout = 60)
{
    static const int workers[] = {8, 64, 100};
    for (size_t i = 0; i < sizeof workers / sizeof *workers; i++) {
        qv_executor *ex;
        cr_assert_eq(qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                              .kind = tx_kind(),
                                                              .max_workers = workers[i]}),
                     QV_OK);
        long want = workers[i] > 64 ? workers[i] : 64;
        cr_assert_eq(ex->max_uncollected, want, "%d workers: %ld", workers[i], ex->max_uncollected);
        qv_executor_free(ex);
    }
}

Test(uncollected, waiting_on_the_last_submitted_first_runs_it, .timeout = 60)
{
    qv_executor *ex = bounded(0);
    qv_future *fs[N];
    qv_session *s = submitted_and_paused(ex, fs);
    tx_expect_status(fs[N - 1], 200);
    collect_all(fs, N);
    done(s, ex);
}

Test(uncollected, polling_a_queued_future_runs_it, .timeout = 60)
{
    qv_executor *ex = bounded(0);
    qv_future *fs[N];
    qv_session *s = submitted_and_paused(ex, fs);
    POLL_UNTIL(qv_future_done(fs[N - 1]), "the polled future never finished");
    collect_all(fs, N);
    done(s, ex);
}

Test(uncollected, qv_wait_on_queued_futures_runs_them, .timeout = 60)
{
    qv_executor *ex = bounded(0);
    qv_future *fs[N];
    qv_session *s = submitted_and_paused(ex, fs);
    cr_assert_eq(qv_wait(fs + N - 3, 3, QV_ALL_COMPLETED, TX_RESULT_TIMEOUT_MS), QV_OK);
    collect_all(fs, N);
    done(s, ex);
}

Test(uncollected, as_completed_gives_every_future, .timeout = 60)
{
    qv_executor *ex = bounded(0);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *fs[N];
    submit_all(s, fs, N);
    qv_as_completed *ac;
    cr_assert_eq(qv_as_completed_new(&ac, fs, N), QV_OK);
    qv_future *f;
    int n = 0;
    while (qv_as_completed_next(ac, &f, TX_RESULT_TIMEOUT_MS) == QV_OK) n++;
    cr_assert_eq(n, N);
    qv_as_completed_free(ac);
    collect_all(fs, N);
    done(s, ex);
}

typedef struct counter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n, ok;
} counter;

static void count_done(qv_future *f, void *arg)
{
    counter *c = arg;
    qv_response *r;
    int ok = qv_future_result(f, &r, 0) == QV_OK && qv_response_status(r) == 200;
    pthread_mutex_lock(&c->mu);
    c->n++;
    c->ok += ok;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* A program that only uses done callbacks, and waits on its own condition
 * variable, never collects: the callbacks take each response. Half the
 * futures are released at once, half kept. */
Test(uncollected, callbacks_only_never_pause, .timeout = 60)
{
    qv_executor *ex = bounded(0);
    qv_session *s = TX_SESSION(.executor = ex);
    counter c = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    qv_future *kept[N];
    for (int i = 0; i < 2 * N; i++) {
        qv_future *f;
        cr_assert_eq(qv_get(s, &f, tuf("/get?i=%d", i)), QV_OK);
        cr_assert_eq(qv_future_add_done_callback(f, count_done, &c), QV_OK);
        if (i % 2)
            qv_future_release(f);
        else
            kept[i / 2] = f;
    }
    pthread_mutex_lock(&c.mu);
    while (c.n < 2 * N) pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
    cr_assert_eq(c.ok, 2 * N);
    for (int i = 0; i < N; i++) qv_future_release(kept[i]);
    done(s, ex);
}

/* Released, finished or not, they are no one's to collect. */
Test(uncollected, released_futures_do_not_count, .timeout = 60)
{
    qv_executor *ex = bounded(0);
    qv_future *fs[N];
    qv_session *s = submitted_and_paused(ex, fs);
    for (int i = 0; i < N; i++) qv_future_release(fs[i]);
    POLL_UNTIL(finished(ex) >= N, "%zu of %d finished", finished(ex), N);
    done(s, ex);
}

/* The submitting thread, blocked by max_queued, is the collector. */
Test(uncollected, a_submit_waiting_for_room_is_not_left_waiting, .timeout = 60)
{
    qv_executor *ex = bounded(2);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *fs[N];
    submit_all(s, fs, N);
    collect_all(fs, N);
    done(s, ex);
}

Test(uncollected, closing_the_session_finishes_everything, .timeout = 60)
{
    qv_executor *ex = bounded(0);
    qv_future *fs[N];
    qv_session *s = submitted_and_paused(ex, fs);
    qv_session_close(s, 0);
    for (int i = 0; i < N; i++) cr_assert(qv_future_done(fs[i]), "future %d not done", i);
    collect_all(fs, N);
    done(s, ex);
}

/* Freeing the executor runs what is queued; the futures outlive it. */
Test(uncollected, freeing_the_executor_finishes_everything, .timeout = 60)
{
    qv_executor *ex = bounded(0);
    qv_future *fs[N];
    qv_session *s = submitted_and_paused(ex, fs);
    qv_session_free(s);
    qv_executor_free(ex);
    collect_all(fs, N);
}

static void *cancel_half(void *arg)
{
    qv_future **fs = arg;
    for (int i = 1; i < 4 * N; i += 2) qv_future_cancel(fs[i]);
    return NULL;
}

/* Cancels from another thread while this one collects: every future ends
 * once, and the counts balance. */
Test(uncollected, a_cancel_storm_leaves_nothing_counted, .timeout = 60)
{
    qv_executor *ex = bounded(0);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *fs[4 * N];
    submit_all(s, fs, 4 * N);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, cancel_half, fs), 0);
    size_t ok = 0, cancelled = 0;
    for (int i = 0; i < 4 * N; i++) {
        qv_response *r;
        int rc = qv_future_result(fs[i], &r, TX_RESULT_TIMEOUT_MS);
        cr_assert(rc == QV_OK || (rc == QV_ECANCELLED && i % 2), "future %d: %s", i,
                  qv_strerror(rc));
        if (rc == QV_OK) {
            cr_assert_eq(qv_response_status(r), 200);
            ok++;
        } else {
            cancelled++;
        }
    }
    pthread_join(t, NULL);
    qv_executor_stats st;
    cr_assert_eq(qv_executor_stats_get(ex, &st), QV_OK);
    cr_assert_eq(st.completed, ok);
    cr_assert_eq(st.cancelled, cancelled);
    cr_assert_eq(st.failed, 0);
    for (int i = 0; i < 4 * N; i++) qv_future_release(fs[i]);
    done(s, ex);
}

/* A thread waiting for one result runs queued work meanwhile
 * (docs/internals.md: on a QV_THREADS worker's lent handle; on QV_LOOP it
 * leads): it stops at the bound too, as the workers do, and does not finish
 * the whole queue while its result is still running. */
Test(uncollected, a_waiting_thread_running_queued_work_stops_at_the_bound, .timeout = 60)
{
    qv_executor *ex = bounded(0);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *fs[N];
    /* The first three take the workers; this thread sleeps for the first,
     * whose worker then lends it its handle while it waits for the second. */
    static const char *const slow[] = {"/delay/0.1", "/delay/1", "/delay/1"};
    for (int i = 0; i < N; i++)
        cr_assert_eq(qv_get(s, &fs[i], i < 3 ? tu(slow[i]) : tuf("/get?i=%d", i)), QV_OK);
    tx_expect_status(fs[0], 200);
    qv_future_release(fs[0]);
    tx_expect_status(fs[1], 200);
    size_t at = finished(ex);
    cr_assert_leq(at, 2 + BOUND + WORKERS,
                  "%zu of %d finished while one result was waited for, with a bound of %d", at, N,
                  BOUND);
    qv_future_release(fs[1]);
    collect_all(fs + 2, N - 2);
    done(s, ex);
}

/* QV_LOOP's leader, held back by the bound with nothing running, polls for
 * up to a second (idle_timeout): a pause that no wake-up ended would still
 * end then, and only a clock could tell. So in the tests below, once the
 * executor `stretched` has paused, quiver's polls (this program's
 * curl_multi_poll, which quiver, linked in statically, calls) wait up to a
 * minute: only a wake-up (loop_resume's curl_multi_wakeup, counted here)
 * ends them within the test's time. */
static _Atomic(qv_executor *) stretched;
static atomic_int stretched_polls;
static atomic_long wakeups;

static CURLMcode (*real_poll)(CURLM *, struct curl_waitfd *, unsigned, int, int *);
static CURLMcode (*real_wakeup)(CURLM *);
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

static void find_real(void)
{
    *(void **)&real_poll = dlsym(RTLD_NEXT, "curl_multi_poll");
    *(void **)&real_wakeup = dlsym(RTLD_NEXT, "curl_multi_wakeup");
}

CURLMcode curl_multi_poll(CURLM *m, struct curl_waitfd *fds, unsigned n, int timeout, int *ret)
{
    pthread_once(&real_once, find_real);
    qv_executor *ex = atomic_load(&stretched);
    if (ex && atomic_load(&ex->paused) > 0 && timeout > 0) {
        timeout = 60000;
        atomic_fetch_add(&stretched_polls, 1);
    }
    return real_poll(m, fds, n, timeout, ret);
}

CURLMcode curl_multi_wakeup(CURLM *m)
{
    pthread_once(&real_once, find_real);
    atomic_fetch_add(&wakeups, 1);
    return real_wakeup(m);
}

/* N submitted on a loop, paused at the bound, its leader asleep in a
 * stretched poll; returns how many finished before the pause. */
static int paused_in_a_stretched_poll(qv_executor *ex, qv_session **s, qv_future **fs)
{
    *s = submitted_and_paused(ex, fs);
    int at_pause = (int)finished(ex);
    int before = atomic_load(&stretched_polls);
    atomic_store(&stretched, ex);
    /* (Its poll of the moment ends within a second, and it polls again.) */
    POLL_UNTIL(atomic_load(&stretched_polls) > before, "the paused leader never polled again");
    return at_pause;
}

/* Collects fs from the first until half the bound is left uncollected;
 * returns how many it collected. */
static int collect_to_half(qv_executor *ex, qv_future **fs)
{
    int i = 0;
    for (; atomic_load(&ex->uncollected) > BOUND / 2; i++) {
        tx_expect_status(fs[i], 200);
        qv_future_release(fs[i]);
    }
    return i;
}

/* The collection that brings the uncollected responses down to half the
 * bound wakes the paused leader (loop_resume), which starts the queued work
 * at once: its poll would sleep for a minute otherwise. */
TX_TEST_KINDS(uncollected, a_collection_to_half_the_bound_wakes_the_paused_leader, loop);
Test(uncollected, a_collection_to_half_the_bound_wakes_the_paused_leader, .timeout = 60)
{
    qv_executor *ex = bounded(0);
    qv_future *fs[N];
    qv_session *s;
    int at_pause = paused_in_a_stretched_poll(ex, &s, fs);
    int i = collect_to_half(ex, fs);
    POLL_UNTIL(finished(ex) > (size_t)at_pause,
               "the leader, paused with %d finished, was not woken when %d of them were "
               "collected (%ld wake-ups)",
               at_pause, i, atomic_load(&wakeups));
    atomic_store(&stretched, NULL);
    collect_all(fs + i, N - i);
    done(s, ex);
}

/* Cancelling queued futures changes nothing the paused leader waits for
 * (the uncollected responses): no wake-up; collections still end the
 * pause. */
TX_TEST_KINDS(uncollected, cancelling_queued_futures_leaves_the_paused_leader_asleep, loop);
Test(uncollected, cancelling_queued_futures_leaves_the_paused_leader_asleep, .timeout = 60)
{
    enum { CANCELLED = 5 };
    qv_executor *ex = bounded(0);
    qv_future *fs[N];
    qv_session *s;
    int at_pause = paused_in_a_stretched_poll(ex, &s, fs);
    int polls = atomic_load(&stretched_polls);
    long woken = atomic_load(&wakeups);
    for (int k = N - CANCELLED; k < N; k++)
        cr_assert_eq(qv_future_cancel(fs[k]), 1, "future %d was not queued", k);
    cr_assert_eq(atomic_load(&wakeups), woken, "%ld wake-ups for %d cancels of queued futures",
                 atomic_load(&wakeups) - woken, CANCELLED);
    cr_assert_eq(atomic_load(&stretched_polls), polls, "the paused leader polled again");
    cr_assert_eq(finished(ex), (size_t)at_pause);
    int i = collect_to_half(ex, fs);
    POLL_UNTIL(finished(ex) > (size_t)at_pause, "the leader was not woken by the collections");
    atomic_store(&stretched, NULL);
    collect_all(fs + i, N - CANCELLED - i);
    for (int k = N - CANCELLED; k < N; k++) {
        cr_assert_eq(qv_future_result(fs[k], NULL, 0), QV_ECANCELLED);
        qv_future_release(fs[k]);
    }
    done(s, ex);
}
