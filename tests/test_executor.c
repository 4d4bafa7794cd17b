/* Executors: parallelism, cancelling queued and running work, connection
 * reuse under load, closing sessions, freeing executors with work in flight. */
#include "support.h"

#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

TestSuite(executor, .timeout = 120);

static qv_executor_stats stats_of(qv_session *s)
{
    qv_executor_stats st;
    memset(&st, 0xff, sizeof st);
    cr_assert_eq(qv_executor_stats_get(qv_session_executor(s), &st), QV_OK);
    return st;
}

Test(executor, runs_max_workers_in_parallel, .timeout = 120)
{
    qv_session *s = TX_SESSION(.max_workers = 8);
    qv_future *fs[16];
    double t0 = now_ms();
    for (int i = 0; i < 16; i++) cr_assert_eq(qv_get(s, &fs[i], tu("/delay/1")), QV_OK);
    double submitted = now_ms() - t0;
    cr_assert_lt(submitted, 500.0, "submitting 16 requests took %.0f ms: submit must not block",
                 submitted);
    for (int i = 0; i < 16; i++) tx_expect_status(fs[i], 200);
    double el = now_ms() - t0;
    cr_assert(el > 1500.0 && el < 4500.0,
              "16 x /delay/1 on 8 workers took %.0f ms, expected about 2000", el);
    for (int i = 0; i < 16; i++) qv_future_release(fs[i]);
    qv_executor_stats st = stats_of(s);
    cr_assert_leq(st.workers, 8, "%d workers started, max_workers is 8", st.workers);
    qv_session_free(s);
}

/* A queued request goes to the first worker that is free: one slow request
 * must not hold back fast ones while another worker sits idle (no request is
 * bound early to a busy worker). */
Test(executor, a_slow_request_holds_back_no_queued_one, .timeout = 120)
{
    enum { FAST = 6 };
    qv_session *s = TX_SESSION(.max_workers = 2);
    qv_future *slow, *fast[FAST];
    double t0 = now_ms();
    cr_assert_eq(qv_get(s, &slow, tu("/delay/3")), QV_OK);
    for (int i = 0; i < FAST; i++) cr_assert_eq(qv_get(s, &fast[i], tu("/get")), QV_OK);
    for (int i = 0; i < FAST; i++) {
        tx_expect_status(fast[i], 200);
        double el = now_ms() - t0;
        cr_assert_lt(el, 2000.0, "fast request %d of %d done after %.0f ms, behind /delay/3", i,
                     FAST, el);
    }
    tx_expect_status(slow, 200);
    for (int i = 0; i < FAST; i++) qv_future_release(fast[i]);
    qv_future_release(slow);
    qv_session_free(s);
}

#define BUSY   8
#define QUEUED 20

Test(executor, cancel_queued_futures, .timeout = 120)
{
    qv_session *s = TX_SESSION(.max_workers = BUSY);
    qv_future *busy[BUSY], *queued[QUEUED];
    for (int i = 0; i < BUSY; i++) cr_assert_eq(qv_get(s, &busy[i], tu("/delay/2")), QV_OK);
    /* Each queued request would put its own cookie in the jar if it ran. */
    for (int i = 0; i < QUEUED; i++)
        cr_assert_eq(qv_get(s, &queued[i], tuf("/cookies/set?queued%d=ran", i)), QV_OK);
    for (int i = 0; i < QUEUED; i++)
        cr_assert_eq(qv_future_cancel(queued[i]), 1, "cancel of queued future %d returned 0", i);
    for (int i = 0; i < QUEUED; i++) {
        tx_expect_error(queued[i], QV_ECANCELLED);
        cr_assert_eq(qv_future_state_get(queued[i]), QV_CANCELLED);
        cr_assert_eq(qv_future_cancel(queued[i]), 1, "cancelling twice still says cancelled");
    }
    /* The rest complete normally. */
    for (int i = 0; i < BUSY; i++) tx_expect_status(busy[i], 200);

    qv_session_close(s, 0);
    qv_executor_stats st = stats_of(s);
    cr_assert_eq(st.completed, BUSY, "stats.completed = %zu", st.completed);
    cr_assert_eq(st.cancelled, QUEUED, "stats.cancelled = %zu", st.cancelled);
    cr_assert_eq(st.failed, 0, "stats.failed = %zu", st.failed);
    cr_assert_eq(st.queued, 0, "stats.queued = %zu after close", st.queued);
    cr_assert_eq(st.in_flight, 0, "stats.in_flight = %zu after close (completed %zu)", st.in_flight,
                 st.completed);
    cr_assert_leq(st.connections_opened, BUSY, "connections_opened = %zu", st.connections_opened);
    /* None of the cancelled requests reached the server. */
    for (int i = 0; i < QUEUED; i++) {
        char name[32];
        snprintf(name, sizeof name, "queued%d", i);
        tx_expect_cookie(s, name, NULL); /* else cancelled request i ran */
    }
    for (int i = 0; i < BUSY; i++) qv_future_release(busy[i]);
    for (int i = 0; i < QUEUED; i++) qv_future_release(queued[i]);
    qv_session_free(s);
}

Test(executor, cancel_running_future, .timeout = 120)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/delay/10")), QV_OK);
    tx_wait_started(f, 5000);
    double t0 = now_ms();
    cr_assert_eq(qv_future_cancel(f), 1, "cancel of a running future returned 0");
    cr_assert_eq(qv_future_wait(f, 5000), QV_OK, "the cancelled future did not end in 5 s");
    double el = now_ms() - t0;
    cr_assert_lt(el, 1500.0, "the running transfer took %.0f ms to abort", el);
    cr_assert_eq(qv_future_state_get(f), QV_CANCELLED);
    tx_expect_error(f, QV_ECANCELLED);
    qv_future_release(f);
    t0 = now_ms();
    qv_session_free(s);
    cr_assert_lt(now_ms() - t0, 2000.0, "session free waited for the aborted /delay/10");
}

#define MANY 1000

Test(executor, thousand_requests_reuse_connections, .timeout = 120)
{
    qv_session *s = TX_SESSION(.max_workers = 8);
    qv_future **fs = calloc(MANY, sizeof *fs);
    cr_assert_not_null(fs);
    for (int i = 0; i < MANY; i++) cr_assert_eq(qv_get(s, &fs[i], tuf("/get?i=%d", i)), QV_OK);
    for (int i = 0; i < MANY; i++) {
        qv_response *r = tx_expect_status(fs[i], 200);
        char want[16];
        snprintf(want, sizeof want, "%d", i);
        /* Each future got its own response. */
        tx_assert_str_eq(tx_jstr(tx_json(r), "args/i"), want);
        qv_future_release(fs[i]);
    }
    free(fs);
    qv_session_close(s, 0);
    qv_executor_stats st = stats_of(s);
    cr_assert_eq(st.completed, MANY, "stats.completed = %zu", st.completed);
    cr_assert_eq(st.failed, 0, "stats.failed = %zu", st.failed);
    cr_assert_eq(st.in_flight, 0, "stats.in_flight = %zu after close", st.in_flight);
    cr_assert_leq(st.connections_opened, 8, "%zu connections for %d requests on 8 workers",
                  st.connections_opened, MANY);
    cr_assert_geq(st.connections_opened, 1);
    qv_session_free(s);
}

Test(executor, close_cancelling_pending, .timeout = 120)
{
    qv_session *s = TX_SESSION(.max_workers = 2);
    qv_future *running[2], *queued[6];
    for (int i = 0; i < 2; i++) cr_assert_eq(qv_get(s, &running[i], tu("/delay/1")), QV_OK);
    for (int i = 0; i < 6; i++) cr_assert_eq(qv_get(s, &queued[i], tu("/get")), QV_OK);
    for (int i = 0; i < 2; i++) tx_wait_started(running[i], 5000);
    qv_session_close(s, 1);
    /* close waited for the in-flight ones, which finished normally. */
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(qv_future_done(running[i]), 1, "in-flight future %d not done after close", i);
        tx_expect_status(running[i], 200);
    }
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(qv_future_done(queued[i]), 1, "queued future %d not done after close", i);
        cr_assert_eq(qv_future_state_get(queued[i]), QV_CANCELLED, "queued future %d state %d", i,
                     (int)qv_future_state_get(queued[i]));
        tx_expect_error(queued[i], QV_ECANCELLED);
    }
    static int marker;
    qv_future *const sentinel = (qv_future *)(void *)&marker;
    qv_future *f = sentinel;
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_ESHUTDOWN);
    cr_assert(f == sentinel || f == NULL, "*out set on a failed submit");
    for (int i = 0; i < 2; i++) qv_future_release(running[i]);
    for (int i = 0; i < 6; i++) qv_future_release(queued[i]);
    qv_session_free(s);
}

Test(executor, close_draining, .timeout = 120)
{
    qv_session *s = TX_SESSION(.max_workers = 2);
    qv_future *fs[6];
    for (int i = 0; i < 2; i++) cr_assert_eq(qv_get(s, &fs[i], tu("/delay/1")), QV_OK);
    for (int i = 2; i < 6; i++) cr_assert_eq(qv_get(s, &fs[i], tu("/get")), QV_OK);
    qv_session_close(s, 0);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(qv_future_done(fs[i]), 1, "future %d not done after a draining close", i);
        tx_expect_status(fs[i], 200);
    }
    qv_future *f = NULL;
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_ESHUTDOWN);
    cr_assert_null(f);
    qv_session_close(s, 0); /* closing twice is harmless */
    for (int i = 0; i < 6; i++) qv_future_release(fs[i]);
    qv_session_free(s);
}

static atomic_int done_count;
static void on_done(qv_future *f, void *arg)
{
    (void)f;
    (void)arg;
    atomic_fetch_add(&done_count, 1);
}

Test(executor, executor_free_waits_for_work_in_flight, .timeout = 120)
{
    qv_executor *ex = tx_executor(2);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *fs[3];
    cr_assert_eq(qv_get(s, &fs[0], tu("/delay/1")), QV_OK);
    cr_assert_eq(qv_get(s, &fs[1], tu("/delay/1")), QV_OK);
    cr_assert_eq(qv_get(s, &fs[2], tu("/get")), QV_OK); /* queued behind them */
    for (int i = 0; i < 3; i++)
        cr_assert_eq(qv_future_add_done_callback(fs[i], on_done, NULL), QV_OK);
    double t0 = now_ms();
    qv_executor_free(ex);
    double el = now_ms() - t0;
    cr_assert_eq(atomic_load(&done_count), 3, "%d of 3 futures completed before free returned",
                 atomic_load(&done_count));
    cr_assert(el >= 500.0 && el < 10000.0, "executor free took %.0f ms", el);
    for (int i = 0; i < 3; i++) tx_expect_status(fs[i], 200);

    /* The session outlives the executor but cannot submit to it. */
    qv_future *f = NULL;
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_ESHUTDOWN);
    cr_assert_null(f);
    for (int i = 0; i < 3; i++) qv_future_release(fs[i]);
    qv_session_free(s);
}

static void free_own_executor(qv_future *f, void *arg)
{
    (void)f;
    qv_executor_free(arg);
}

/* Freed from one of its own done callbacks, an executor would have its
 * threads join themselves and free memory under the thread running: a
 * misuse no return value can report, so the program stops with a message. */
Test(executor, freeing_an_executor_from_its_own_callback_aborts, .signal = SIGABRT, .timeout = 120)
{
    qv_executor *ex = tx_executor(1);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *f;
    /* Long enough for the callback to be added before the answer. */
    cr_assert_eq(qv_get(s, &f, tu("/delay/1")), QV_OK);
    cr_assert_eq(qv_future_add_done_callback(f, free_own_executor, ex), QV_OK);
    qv_future_wait(f, 30000);
    for (double t0 = now_ms(); now_ms() - t0 < 10000;)
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000000L}, NULL);
}

Test(executor, session_free_drains_queue, .timeout = 120)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    atomic_store(&done_count, 0);
    for (int i = 0; i < 5; i++) {
        qv_future *f;
        cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK);
        cr_assert_eq(qv_future_add_done_callback(f, on_done, NULL), QV_OK);
        qv_future_release(f);
    }
    qv_session_free(s);
    cr_assert_eq(atomic_load(&done_count), 5, "only %d of 5 queued requests ran",
                 atomic_load(&done_count));
}

Test(executor, stats_of_an_idle_executor, .timeout = 120)
{
    qv_executor *ex = tx_executor(3);
    qv_executor_stats st;
    cr_assert_eq(qv_executor_stats_get(ex, &st), QV_OK);
    cr_assert_eq(st.queued, 0);
    cr_assert_eq(st.in_flight, 0);
    cr_assert_eq(st.completed, 0);
    cr_assert_eq(st.failed, 0);
    cr_assert_eq(st.cancelled, 0);
    cr_assert_leq(st.workers, 3);
    qv_executor_free(ex);
}

/* Threads and file descriptors open in this process right now. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The descriptors open right now, each with what it is ("3=pipe:[1234] ..."):
 * a count that differs says which one came or went. */
static void list_fds(char *out, size_t cap)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d, "cannot open /proc/self/fd");
    size_t used = 0;
    out[0] = '\0';
    for (struct dirent *e; (e = readdir(d)) && used < cap;) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d)) continue;
        char link[32], what[128] = "?";
        snprintf(link, sizeof link, "/proc/self/fd/%.10s", e->d_name);
        ssize_t n = readlink(link, what, sizeof what - 1);
        what[n > 0 ? n : 1] = '\0';
        int w = snprintf(out + used, cap - used, "%s%.10s=%s", used ? " " : "", e->d_name, what);
        used += w > 0 ? (size_t)w : 0;
    }
    closedir(d);
}

Test(executor, no_thread_or_descriptor_leaks, .timeout = 120)
{
    int threads0 = count_entries("/proc/self/task"), fds0 = count_entries("/proc/self/fd");
    static char fds_before[4096], fds_after[4096];
    list_fds(fds_before, sizeof fds_before);
    for (int round = 0; round < 3; round++) {
        qv_session *s = TX_SESSION(.max_workers = 8);
        qv_future *fs[32];
        for (int i = 0; i < 32; i++) cr_assert_eq(qv_get(s, &fs[i], tu("/get")), QV_OK);
        for (int i = 0; i < 32; i++) tx_expect_status(fs[i], 200);
        cr_assert_gt(count_entries("/proc/self/task"), threads0, "the pool started no thread");
        for (int i = 0; i < 32; i++) qv_future_release(fs[i]);
        qv_session_free(s);
        cr_assert_eq(count_entries("/proc/self/task"), threads0,
                     "round %d: %d threads after free, %d before", round,
                     count_entries("/proc/self/task"), threads0);
        list_fds(fds_after, sizeof fds_after);
        cr_assert_eq(count_entries("/proc/self/fd"), fds0,
                     "round %d: %d descriptors after free, %d before\nbefore: %s\nafter:  %s",
                     round, count_entries("/proc/self/fd"), fds0, fds_before, fds_after);
    }
}
