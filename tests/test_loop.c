/* What only the event-loop executor promises: a slow hook does not hold up
 * other transfers, and the connection caps hold. These tests make their own
 * QV_LOOP executor, so the file is registered for that kind alone. */
#include "support.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

TestSuite(loop, .timeout = 60);
TX_KIND_ONLY(loop);

static qv_executor *loop_executor(int max_workers, int max_host_connections)
{
    qv_executor *ex;
    cr_assert_eq(
        qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                 .kind = QV_LOOP,
                                                 .max_workers = max_workers,
                                                 .max_host_connections = max_host_connections}),
        QV_OK);
    return ex;
}

static int sleepy_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s;
    (void)r;
    (void)arg;
    nanosleep(&(struct timespec){.tv_sec = 1}, NULL);
    return 0;
}

Test(loop, slow_hook_does_not_delay_other_transfers, .timeout = 60)
{
    qv_executor *ex = loop_executor(32, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *slow, *fast[20];
    cr_assert_eq(qv_get(s, &slow, tu("/get"), .hook = sleepy_hook), QV_OK);
    tx_wait_started(slow, 5000);
    double t0 = now_ms();
    for (int i = 0; i < 20; i++) cr_assert_eq(qv_get(s, &fast[i], tu("/get")), QV_OK);
    for (int i = 0; i < 20; i++) tx_expect_status(fast[i], 200);
    double el = now_ms() - t0;
    cr_assert_lt(el, 700.0, "20 fast requests took %.0f ms behind a 1 s hook", el);
    cr_assert_eq(qv_future_done(slow), 0, "the sleeping hook should still be running");
    tx_expect_status(slow, 200);
    for (int i = 0; i < 20; i++) qv_future_release(fast[i]);
    qv_future_release(slow);
    qv_session_free(s);
    qv_executor_free(ex);
}

Test(loop, max_host_connections_caps_parallelism, .timeout = 60)
{
    qv_executor *ex = loop_executor(16, 2);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *fs[6];
    double t0 = now_ms();
    for (int i = 0; i < 6; i++) cr_assert_eq(qv_get(s, &fs[i], tu("/delay/1")), QV_OK);
    for (int i = 0; i < 6; i++) tx_expect_status(fs[i], 200);
    double el = now_ms() - t0;
    /* Two at a time over HTTP/1.1: three rounds of one second. */
    cr_assert(el > 2500.0 && el < 6000.0, "6 x /delay/1 over 2 connections took %.0f ms", el);
    for (int i = 0; i < 6; i++) qv_future_release(fs[i]);
    qv_executor_stats st;
    cr_assert_eq(qv_executor_stats_get(ex, &st), QV_OK);
    cr_assert_leq(st.connections_opened, 2, "%zu connections opened under a cap of 2",
                  st.connections_opened);
    qv_session_free(s);
    qv_executor_free(ex);
}

Test(loop, many_in_flight_at_once, .timeout = 60)
{
    /* 64 concurrent /delay/1 finish in about a second, not 64. */
    qv_executor *ex = loop_executor(64, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *fs[64];
    double t0 = now_ms();
    for (int i = 0; i < 64; i++) cr_assert_eq(qv_get(s, &fs[i], tu("/delay/1")), QV_OK);
    for (int i = 0; i < 64; i++) tx_expect_status(fs[i], 200);
    double el = now_ms() - t0;
    cr_assert_lt(el, 4000.0, "64 x /delay/1 on one loop took %.0f ms", el);
    for (int i = 0; i < 64; i++) qv_future_release(fs[i]);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* Response hooks that hold every delivery thread (QV_LOOP has 4) until let go. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int inside, open;
} gate;

static void gate_pass(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->inside++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static int gate_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)r;
    gate_pass(arg);
    return 0;
}

/* Waits until n threads are held at g. */
static void gate_wait(gate *g, int n)
{
    pthread_mutex_lock(&g->mu);
    while (g->inside < n) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void body_seen(qv_future *f, long long dl_now, long long dl_total, long long ul_now,
                      long long ul_total, void *arg)
{
    (void)f, (void)dl_total, (void)ul_now, (void)ul_total;
    if (dl_now > 0) atomic_store((atomic_int *)arg, 1);
}

/* Set once a stream's body is coming (its on_progress). */
static atomic_int body_started;

/* Holds every delivery thread at g (busy: their futures), then starts a
 * stream of url and waits until its body comes: its headers then wait in
 * the delivery queue. */
static qv_future *stream_behind_held_delivery(qv_session *s, gate *g, qv_future *busy[4],
                                              const char *url)
{
    for (int i = 0; i < 4; i++)
        cr_assert_eq(qv_get(s, &busy[i], tu("/get"), .hook = gate_hook, .hook_arg = g), QV_OK);
    gate_wait(g, 4);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = url,
                                               .stream = 1,
                                               .on_progress = body_seen,
                                               .on_progress_arg = &body_started}),
                 QV_OK);
    for (int i = 0; i < 1000 && !atomic_load(&body_started); i++) usleep(10000);
    cr_assert(atomic_load(&body_started), "the stream's body never started");
    return f;
}

static size_t connections_opened(qv_executor *ex)
{
    qv_executor_stats st;
    cr_assert_eq(qv_executor_stats_get(ex, &st), QV_OK);
    return st.connections_opened;
}

/* Waits (bounded) until ex has opened more than `than` connections. */
static void wait_connections(qv_executor *ex, size_t than)
{
    for (int i = 0; i < 1000 && connections_opened(ex) <= than; i++) usleep(10000);
    cr_assert_gt(connections_opened(ex), than);
}

Test(loop, a_stream_that_ends_before_its_headers_are_delivered_loses_no_other_outcome)
{
    qv_executor *ex = loop_executor(8, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    gate g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    qv_future *busy[4], *h;
    qv_future *f = stream_behind_held_delivery(s, &g, busy, tx_faults_url("/stall-body"));
    /* Another outcome queued behind them (its transfer's end counted) */
    size_t before = connections_opened(ex);
    cr_assert_eq(qv_get(s, &h, tx_faults_url("/ok"), .hook = gate_hook, .hook_arg = &g), QV_OK);
    wait_connections(ex, before);
    usleep(100000); /* its delivery is handed over in the same turn of the loop */
    /* then the stream's transfer ends while its headers still wait. */
    qv_future_cancel(f);
    wait_connections(ex, before + 1);
    qv_future_release(f); /* and its caller lets go before it completes */
    gate_open(&g);
    cr_assert_eq(qv_future_wait(h, 10000), QV_OK, "the outcome queued behind the stream was lost");
    tx_expect_status(h, 200);
    for (int i = 0; i < 4; i++) qv_future_release(busy[i]);
    qv_future_release(h);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* A request hook that holds the I/O thread. */
static int io_gate_hook(qv_session *s, qv_attempt *a, void *arg)
{
    (void)s, (void)a;
    gate_pass(arg);
    return 0;
}

static void *wait_future(void *f)
{
    qv_future_wait(f, -1);
    return NULL;
}

Test(loop, a_stream_cancelled_before_its_headers_are_delivered_completes_cancelled)
{
    qv_executor *ex = loop_executor(8, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    gate g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    gate io = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    qv_future *busy[4], *other;
    /* Its body goes on (1 GiB) while its headers wait. */
    qv_future *f = stream_behind_held_delivery(s, &g, busy, tx_faults_url("/huge"));
    /* The I/O thread is held too, so the transfer is still on when the
     * cancelled future's headers are delivered. */
    cr_assert_eq(qv_get(s, &other, tu("/get"), .on_request = io_gate_hook, .on_request_arg = &io),
                 QV_OK);
    gate_wait(&io, 1);
    qv_future_cancel(f);
    gate_open(&g);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, wait_future, f), 0);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    cr_assert_eq(pthread_timedjoin_np(t, NULL, &dl), 0, "the cancelled stream never completed");
    tx_expect_error(f, QV_ECANCELLED);
    gate_open(&io);
    tx_expect_status(other, 200);
    for (int i = 0; i < 4; i++) qv_future_release(busy[i]);
    qv_future_release(other);
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
}

static void last_progress_thread(qv_future *f, long long dl_now, long long dl_total,
                                 long long ul_now, long long ul_total, void *arg)
{
    (void)f, (void)dl_now, (void)dl_total, (void)ul_now, (void)ul_total;
    *(pthread_t *)arg = pthread_self();
}

/* The thread that waits drives the transfer: libcurl's last progress call
 * of the attempt, as it ends, comes on that thread. */
Test(loop, the_waiting_thread_drives_its_own_transfer)
{
    qv_executor *ex = loop_executor(4, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    pthread_t ran = 0;
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/delay/0.5"), .on_progress = last_progress_thread,
                        .on_progress_arg = &ran),
                 QV_OK);
    tx_expect_status(f, 200);
    cr_assert(pthread_equal(ran, pthread_self()),
              "the transfer ended on another thread than the one waiting for it");
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* Which thread started a transfer (its request hook runs on the leader as
 * it starts). */
typedef struct starter {
    pthread_t by;
    atomic_int ran;
} starter;

static int note_starter(qv_session *s, qv_attempt *a, void *arg)
{
    (void)s, (void)a;
    starter *st = arg;
    st->by = pthread_self();
    atomic_store(&st->ran, 1);
    return 0;
}

/* A leader whose wait ends in a round that freed half the slots or more
 * starts the queued work before it returns: the freed slots do not sit
 * idle while the caller works on its result (until its next wait, or the
 * I/O thread's take-over 1-2 ms later). */
Test(loop, a_leader_starts_queued_work_before_its_wait_returns)
{
    qv_executor *ex = loop_executor(2, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    starter st = {0};
    qv_future *slow, *f, *next;
    cr_assert_eq(qv_get(s, &slow, tu("/delay/5")), QV_OK);
    cr_assert_eq(qv_get(s, &f, tu("/delay/0.3")), QV_OK);
    cr_assert_eq(qv_get(s, &next, tu("/get"), .on_request = note_starter, .on_request_arg = &st),
                 QV_OK);
    tx_expect_status(f, 200); /* this thread leads until f is done */
    cr_assert(atomic_load(&st.ran), "the queued request had not started when the wait returned");
    cr_assert(pthread_equal(st.by, pthread_self()),
              "the queued request was started by another thread than the leader");
    tx_expect_status(next, 200);
    qv_future_cancel(slow);
    tx_expect_error(slow, QV_ECANCELLED);
    qv_future_release(slow);
    qv_future_release(f);
    qv_future_release(next);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* How many times the threads of this process but the calling one (the
 * executor's I/O and delivery threads) went to sleep. */
static long others_slept(void)
{
    struct rusage all, me;
    cr_assert_eq(getrusage(RUSAGE_SELF, &all), 0);
    cr_assert_eq(getrusage(RUSAGE_THREAD, &me), 0);
    return all.ru_nvcsw - me.ru_nvcsw;
}

/* While a thread of yours leads, the I/O thread sleeps: the timer that has
 * it take over, set when the lead goes to no one, stops when the next wait
 * takes the lead while waits outlast it. (Left running, it fired in the
 * middle of each wait for a slow result: a wake-up of the I/O thread for
 * nothing per result.) */
Test(loop, the_io_thread_sleeps_while_a_waiting_thread_leads)
{
    enum { ROUNDS = 20 };
    qv_executor *ex = loop_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK);
    tx_expect_status(f, 200); /* the I/O thread's start-up over, the connection made */
    qv_future_release(f);
    long before = others_slept();
    for (int i = 0; i < ROUNDS; i++) {
        cr_assert_eq(qv_get(s, &f, tu("/delay/0.05")), QV_OK);
        tx_expect_status(f, 200);
        qv_future_release(f);
    }
    long slept = others_slept() - before;
    cr_assert_lt(slept, ROUNDS / 2, "the executor's threads slept %ld times in %d waits of 50 ms",
                 slept, ROUNDS);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* quiver (linked in statically) calls this curl_multi_perform, which counts
 * the calls made on each thread and goes on to libcurl's. */
static CURLMcode (*real_perform)(CURLM *, int *);
static pthread_once_t real_perform_once = PTHREAD_ONCE_INIT;
static _Thread_local long performs;

static void find_real_perform(void)
{
    *(void **)&real_perform = dlsym(RTLD_NEXT, "curl_multi_perform");
}

CURLMcode curl_multi_perform(CURLM *multi, int *running)
{
    pthread_once(&real_perform_once, find_real_perform);
    performs++;
    return real_perform(multi, running);
}

/* A wait that takes the lead with every slot busy polls before it runs
 * libcurl over the transfers: a round then could start nothing, and its
 * curl_multi_perform would only look at each transfer's socket, one poll
 * each, most often just after the last leader's round did (a thread
 * collecting results in order, c = 8: 0.6-1.0 polls a request more than raw
 * multi's). Here the only slot runs a response that is not due for a
 * second, so no wait of 2 ms finds anything to do. */
Test(loop, a_wait_that_leads_with_every_slot_busy_polls_first)
{
    enum { WAITS = 20 };
    qv_executor *ex = loop_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/delay/1")), QV_OK);
    tx_wait_started(f, 10000);
    long before = performs;
    for (int i = 0; i < WAITS; i++) cr_assert_eq(qv_future_wait(f, 2), QV_EWAIT_TIMEOUT);
    long ran = performs - before;
    cr_assert_lt(ran, WAITS / 2, "%d waits of 2 ms ran libcurl's transfers %ld times", WAITS, ran);
    tx_expect_status(f, 200);
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* A cancel whose wake-up a leader's poll takes just as that leader's wait
 * ends (no round after it): the next leader takes over with the slot busy,
 * and must scan before it polls. The test's leader cancels from inside its
 * poll, once the next leader follows (asleep in its wait); the follower's
 * polls made before the cancelled future is done are counted: a poll there
 * slept until the next scan was due, up to 100 ms, before the cancel took
 * effect. */
typedef struct late_cancel {
    qv_future *running, *queued; /* the running future cancelled; the leader's wait's */
    pthread_t follower;
    atomic_int follower_tid, late_polls, asleep;
} late_cancel;

enum { POLL_PLAIN, POLL_LEADER, POLL_FOLLOWER };
static _Thread_local int poll_role;
static late_cancel *late;

static CURLMcode (*real_poll)(CURLM *, struct curl_waitfd *, unsigned, int, int *);
static pthread_once_t real_poll_once = PTHREAD_ONCE_INIT;

static void find_real_poll(void)
{
    *(void **)&real_poll = dlsym(RTLD_NEXT, "curl_multi_poll");
}

static void *follow(void *arg)
{
    late_cancel *lc = arg;
    poll_role = POLL_FOLLOWER;
    atomic_store(&lc->follower_tid, (int)syscall(SYS_gettid));
    qv_future_wait(lc->running, TX_RESULT_TIMEOUT_MS);
    return NULL;
}

/* A thread of this process is asleep (in its wait: a follower). */
static int thread_asleep(int tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    const char *end = strrchr(buf, ')');
    return end && end[1] == ' ' && end[2] == 'S';
}

/* The leader's first poll: the follower starts and comes to wait; then the
 * leader's own wait is made ready (its queued future cancelled, done at
 * once) and the running future cancelled, whose wake-up this poll takes. */
static void cancel_as_the_lead_ends(late_cancel *lc)
{
    if (pthread_create(&lc->follower, NULL, follow, lc)) return;
    for (int i = 0; i < 10000 && !atomic_load(&lc->asleep); i++) {
        int tid = atomic_load(&lc->follower_tid);
        if (tid) atomic_store(&lc->asleep, thread_asleep(tid));
        if (!atomic_load(&lc->asleep)) usleep(1000);
    }
    qv_future_cancel(lc->queued);
    qv_future_cancel(lc->running);
}

/* quiver (linked in statically) calls this curl_multi_poll. */
CURLMcode curl_multi_poll(CURLM *multi, struct curl_waitfd fds[], unsigned n, int timeout_ms,
                          int *ret)
{
    pthread_once(&real_poll_once, find_real_poll);
    if (poll_role == POLL_FOLLOWER && !qv_future_done(late->running))
        atomic_fetch_add(&late->late_polls, 1);
    if (poll_role == POLL_LEADER) {
        poll_role = POLL_PLAIN;
        cancel_as_the_lead_ends(late);
    }
    return real_poll(multi, fds, n, timeout_ms, ret);
}

Test(loop, a_cancel_whose_wake_up_the_last_leader_took_is_scanned_for_before_the_next_poll)
{
    qv_executor *ex = loop_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    late_cancel lc = {0};
    cr_assert_eq(qv_get(s, &lc.running, tu("/delay/10")), QV_OK);
    tx_wait_started(lc.running, 10000);
    cr_assert_eq(qv_get(s, &lc.queued, tu("/get")), QV_OK); /* behind it: the only slot is busy */
    late = &lc;
    poll_role = POLL_LEADER;
    cr_assert_eq(qv_future_wait(lc.queued, TX_RESULT_TIMEOUT_MS), QV_OK);
    poll_role = POLL_PLAIN;
    cr_assert(lc.follower, "the test's leader never polled");
    pthread_join(lc.follower, NULL);
    cr_assert(atomic_load(&lc.asleep), "the follower did not come to wait");
    tx_expect_error(lc.queued, QV_ECANCELLED);
    tx_expect_error(lc.running, QV_ECANCELLED);
    cr_assert_eq(atomic_load(&lc.late_polls), 0,
                 "the next leader made %d polls before the cancel took effect",
                 atomic_load(&lc.late_polls));
    qv_future_release(lc.queued);
    qv_future_release(lc.running);
    qv_session_free(s);
    qv_executor_free(ex);
}

typedef struct done_count {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
} done_count;

static void count_done(qv_future *f, void *arg)
{
    (void)f;
    done_count *d = arg;
    pthread_mutex_lock(&d->mu);
    d->n++;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* With every slot busy, the I/O thread sleeps without asking submits to
 * wake it (they could start nothing): the futures queued meanwhile start
 * as slots free, with no thread of the caller's waiting on them. */
Test(loop, futures_queued_while_every_slot_is_busy_start_as_slots_free)
{
    enum { QUEUED = 6 };
    qv_executor *ex = loop_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    done_count d = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    qv_future *fs[1 + QUEUED];
    cr_assert_eq(qv_get(s, &fs[0], tu("/delay/0.3")), QV_OK);
    for (int i = 1; i <= QUEUED; i++) cr_assert_eq(qv_get(s, &fs[i], tu("/get")), QV_OK);
    for (int i = 0; i <= QUEUED; i++)
        cr_assert_eq(qv_future_add_done_callback(fs[i], count_done, &d), QV_OK);
    /* Not a wait of quiver's: this thread leads nothing. */
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += TX_RESULT_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&d.mu);
    while (d.n < 1 + QUEUED && pthread_cond_timedwait(&d.cv, &d.mu, &dl) == 0) continue;
    int n = d.n;
    pthread_mutex_unlock(&d.mu);
    cr_assert_eq(n, 1 + QUEUED, "%d of %d futures completed with no thread waiting", n, 1 + QUEUED);
    for (int i = 0; i <= QUEUED; i++) {
        tx_expect_status(fs[i], 200);
        qv_future_release(fs[i]);
    }
    qv_session_free(s);
    qv_executor_free(ex);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of how late a 50 ms read timeout ends (after its limit) on
 * ex, over rounds of a request the server never answers, with `busy`
 * requests with no read timeout stalled beside them all along. */
static double median_lateness(qv_executor *ex, int busy)
{
    enum { ROUNDS = 9, RT = 50, BUSY_MAX = 2 };
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *stalled[BUSY_MAX];
    cr_assert_leq(busy, BUSY_MAX);
    for (int i = 0; i < busy; i++) {
        cr_assert_eq(qv_get(s, &stalled[i], tx_faults_url("/stall-status")), QV_OK);
        tx_wait_started(stalled[i], 10000);
    }
    double late[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        qv_future *f;
        double t0 = now_ms();
        cr_assert_eq(qv_get(s, &f, tx_faults_url("/stall-status"), .read_timeout_ms = RT), QV_OK);
        tx_expect_error(f, QV_EREAD_TIMEOUT);
        late[i] = now_ms() - t0 - RT;
        qv_future_release(f);
    }
    for (int i = 0; i < busy; i++) {
        cr_assert_eq(qv_future_cancel(stalled[i]), 1);
        tx_expect_error(stalled[i], QV_ECANCELLED);
        qv_future_release(stalled[i]);
    }
    qv_session_free(s);
    qsort(late, ROUNDS, sizeof late[0], by_value);
    return late[ROUNDS / 2];
}

/* A read timeout ends when it is due, as on QV_THREADS (whose worker
 * checks it at every poll), not at the loop's checks every 100 ms: with
 * those a 50 ms one ended ~150 ms late (median), the first check after the
 * request went out, which starts its clock, coming up to 100 ms late, and
 * the one that found it due as much again. Also with transfers with no
 * read timeout running beside it (the loop's check of unstarted clocks
 * looks at those with a read timeout only). The same rounds on a thread
 * pool, side by side, set the bar for this machine's load. */
Test(loop, a_read_timeout_ends_when_it_is_due)
{
    qv_executor *loop = loop_executor(4, 0), *threads;
    cr_assert_eq(qv_executor_new(&threads, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                               .kind = QV_THREADS,
                                                               .max_workers = 4}),
                 QV_OK);
    for (int busy = 0; busy <= 2; busy += 2) {
        double on_loop = median_lateness(loop, busy), on_threads = median_lateness(threads, busy);
        cr_assert_lt(on_loop, on_threads + 25,
                     "a 50 ms read timeout ended %.0f ms late (median) on "
                     "QV_LOOP, %.0f ms on QV_THREADS (%d requests with none beside it)",
                     on_loop, on_threads, busy);
    }
    qv_executor_free(threads);
    qv_executor_free(loop);
}

/* A transfer's on_progress that holds the leader once, for 700 ms, in a
 * round that read none of its bytes (its count as at its last call) once
 * its body has begun. */
typedef struct quiet_hold {
    long long seen;
    atomic_int held;
} quiet_hold;

static void hold_a_quiet_round(qv_future *f, long long dn, long long dt, long long un, long long ut,
                               void *arg)
{
    (void)f, (void)dt, (void)un, (void)ut;
    quiet_hold *h = arg;
    if (dn > 0 && dn == h->seen && !atomic_exchange(&h->held, 1))
        nanosleep(&(struct timespec){0, 700 * 1000000L}, NULL);
    h->seen = dn;
}

/* Bytes that came while the leader was busy in a round (here held by a
 * callback, in a busy loop by other transfers' work) are no silence of
 * the server's: a read timeout counts silence only up to the start of the
 * curl_multi_perform that would have read them. A byte every 200 ms with
 * a 500 ms read timeout; the check after the held round found 700 ms of
 * silence, with two bytes waiting in the socket, and failed the transfer
 * (QV_EREAD_TIMEOUT: test_faults_loop's drip-steady failed so once under
 * ASan at load 25-30, 24 transfers on one loop). */
Test(loop, bytes_that_came_while_the_leader_was_held_are_no_silence)
{
    qv_executor *ex = loop_executor(4, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    quiet_hold h = {0};
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.size = sizeof(qv_request_opts),
                                               .url = tu("/drip?duration=1&numbytes=5&delay=0"),
                                               .read_timeout_ms = 500,
                                               .on_progress = hold_a_quiet_round,
                                               .on_progress_arg = &h}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    cr_assert(atomic_load(&h.held), "no round without bytes was held");
    size_t len = 0;
    qv_response_body(r, &len);
    cr_assert_eq(len, 5, "%zu bytes of 5", len);
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* n GETs of path at once; each must answer 200 with want as its body. */
static void wave(qv_session *s, int n, const char *path, const char *want)
{
    qv_future *fs[8];
    for (int i = 0; i < n; i++) cr_assert_eq(qv_get(s, &fs[i], tx_faults_url(path)), QV_OK);
    for (int i = 0; i < n; i++) {
        qv_response *r = tx_expect_status(fs[i], 200);
        size_t len = 0;
        const char *body = qv_response_body(r, &len);
        if (want)
            cr_assert_str_eq(body, want, "%s %d of %d answered \"%.*s\"", path, i + 1, n, (int)len,
                             body);
        qv_future_release(fs[i]);
    }
}

/* The loop looks at its reused connections once a round (connlook.c), not
 * with a peek each, in a round that starts several transfers: connections
 * reused before (so in the look's epoll), each left with a smuggled response
 * unread (/wrong-length), must still be found dirty by the look and not
 * reused (a new connection answers instead). n at a time, each wave on the
 * connections the last one left: the first three put them in the epoll. */
static void dirty_in_a_look(int n)
{
    qv_executor *ex = loop_executor(n, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    for (int i = 0; i < 3; i++) wave(s, n, "/ok", "ok");
    wave(s, n, "/wrong-length", NULL);
    wave(s, n, "/ok", "ok");
    wave(s, n, "/wrong-length", NULL);
    wave(s, n, "/ok", "ok");
    qv_session_free(s);
    qv_executor_free(ex);
}

Test(loop, two_reused_connections_with_unread_bytes_are_not_reused)
{
    dirty_in_a_look(2);
}

Test(loop, eight_reused_connections_with_unread_bytes_are_not_reused)
{
    dirty_in_a_look(8);
}
