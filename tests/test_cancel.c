/* Cancellation in flight and en masse: a running transfer is aborted
 * promptly and the executor keeps serving; thousands of queued futures are
 * cancelled fast and never reach the server. */
#include "support.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(cancel, .timeout = 60);

/* The executor still serves after an abort. */
static void still_serving(qv_session *s)
{
    qv_future *f;
    tx_get_ok(s, &f, tu("/get"));
    qv_future_release(f);
}

/* A session on a pool of its own beside the one under test, its worker
 * started (a process pool forks it for the first request). */
static qv_session *beside(void)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    still_serving(s);
    return s;
}

/* Cancels f (already running) and asserts it ends CANCELLED, promptly:
 * before a /delay/0.3 sent on `beside` as the cancel returns comes back.
 * A cancel that the transfer's thread did not hear at once waits for its
 * next look (up to 1 s on QV_THREADS and QV_PROCESSES). Told by order, not
 * by a clock: "within 200 ms" failed under ASan at load 25-30 (221 ms on
 * QV_PROCESSES, where a cancel crosses the dispatcher to the worker and its
 * answer comes back), while a request sent at the same time crosses the
 * same threads and processes, and the server, which holds it 300 ms. */
static void cancel_promptly(qv_future *f, qv_session *beside)
{
    cr_assert_eq(qv_future_cancel(f), 1, "cancel of a running future returned 0");
    qv_future *g;
    cr_assert_eq(qv_get(beside, &g, tu("/delay/0.3")), QV_OK);
    cr_assert_eq(qv_future_wait(f, 5000), QV_OK, "the cancelled future did not end in 5 s");
    int g_done = qv_future_done(g);
    tx_expect_error(f, QV_ECANCELLED);
    tx_expect_status(g, 200);
    cr_assert(!g_done, "the running transfer was aborted only after a /delay/0.3 sent with its "
                       "cancel came back");
    qv_future_release(g);
}

Test(cancel, delay_in_flight, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 1), *b = beside();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/delay/10")), QV_OK);
    tx_wait_started(f, 5000);
    cancel_promptly(f, b);
    qv_future_release(f);
    still_serving(s);
    qv_session_free(s);
    qv_session_free(b);
}

Test(cancel, drip_mid_body, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 1), *b = beside();
    qv_future *f;
    /* 10 bytes over 10 s: the headers come at once, then a byte a second. */
    cr_assert_eq(qv_get(s, &f, tu("/drip?duration=10&numbytes=10&code=200&delay=0")), QV_OK);
    tx_wait_started(f, 5000);
    /* Let the body start flowing, so the abort is mid-body, not before it. */
    cr_assert_eq(qv_future_wait(f, 1500), QV_EWAIT_TIMEOUT, "the drip ended early");
    cancel_promptly(f, b);
    qv_future_release(f);
    still_serving(s);
    qv_session_free(s);
    qv_session_free(b);
}

#define NQUEUED 10000

Test(cancel, ten_thousand_queued, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    qv_future *busy;
    cr_assert_eq(qv_get(s, &busy, tu("/delay/2")), QV_OK);
    tx_wait_started(busy, 5000);
    qv_future **fs = calloc(NQUEUED, sizeof *fs);
    cr_assert_not_null(fs);
    for (int i = 0; i < NQUEUED; i++)
        cr_assert_eq(qv_get(s, &fs[i], tuf("/anything/queued/%d", i)), QV_OK);
    double t0 = now_ms();
    for (int i = 0; i < NQUEUED; i++) cr_assert_eq(qv_future_cancel(fs[i]), 1);
    double el = now_ms() - t0;
    cr_assert_lt(el, 1000.0, "cancelling %d queued futures took %.0f ms", NQUEUED, el);
    for (int i = 0; i < NQUEUED; i++) {
        cr_assert(qv_future_done(fs[i]), "queued future %d not done right after cancel", i);
        cr_assert_eq(qv_future_state_get(fs[i]), QV_CANCELLED);
        qv_future_release(fs[i]);
    }
    free(fs);
    tx_expect_status(busy, 200);
    qv_future_release(busy);
    qv_session_close(s, 0);
    /* Only the busy request ever ran: nothing else reached the server. */
    qv_executor_stats st;
    cr_assert_eq(qv_executor_stats_get(qv_session_executor(s), &st), QV_OK);
    cr_assert_eq(st.completed, 1, "stats.completed = %zu", st.completed);
    cr_assert_eq(st.cancelled, NQUEUED, "stats.cancelled = %zu", st.cancelled);
    cr_assert_eq(st.connections_opened, 1, "stats.connections_opened = %zu", st.connections_opened);
    qv_session_free(s);
}

/* A queued future is done when its cancel returns, even one an executor is
 * taking off the queue at that moment (a process pool sends a request ahead
 * to a busy worker: a large body takes a while to encode for it). The
 * cancels come at delays spread over that time. */
Test(cancel, queued_done_at_once, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    qv_future *busy;
    /* Busy for longer than the rounds take on a loaded machine: at 2 s a
     * run at load 16 failed in round 28, 2.5 s in (the worker, free again,
     * had taken the future: running, which a cancel only asks to stop). */
    cr_assert_eq(qv_get(s, &busy, tu("/delay/10")), QV_OK);
    tx_wait_started(busy, 5000);
    enum { BODY = 4 << 20, ROUNDS = 30 };
    char *body = malloc(BODY);
    cr_assert_not_null(body);
    memset(body, 'q', BODY);
    for (int i = 0; i < ROUNDS; i++) {
        qv_future *f;
        cr_assert_eq(qv_post(s, &f, tu("/anything"), .body = body, .body_len = BODY), QV_OK);
        usleep((useconds_t)(i * 100));
        cr_assert_eq(qv_future_cancel(f), 1);
        cr_assert(qv_future_done(f), "round %d: the queued future was not done after its cancel%s",
                  i, qv_future_done(busy) ? " (the busy request had ended: not queued)" : "");
        cr_assert_eq(qv_future_state_get(f), QV_CANCELLED);
        qv_future_release(f);
    }
    free(body);
    cr_assert(!qv_future_done(busy), "the busy request ended before the rounds did");
    cr_assert_eq(qv_future_cancel(busy), 1);
    tx_expect_error(busy, QV_ECANCELLED);
    qv_future_release(busy);
    still_serving(s);
    qv_session_free(s);
}

typedef struct {
    qv_session *s;
    int rc;
    qv_future *f;
    atomic_int closed;
} closing;

static void *submit_for_room(void *arg)
{
    closing *c = arg;
    c->rc = qv_get(c->s, &c->f, tu("/get"));
    return NULL;
}

static void *close_cancelling(void *arg)
{
    closing *c = arg;
    qv_session_close(c->s, 1);
    atomic_store(&c->closed, 1);
    return NULL;
}

/* A submit that waits for room (max_queued) when its session is closed with
 * cancel_pending: the close reaches it in the session's list before it is in
 * the queue. It must still end (the submit gets QV_ESHUTDOWN, or its future
 * is done), and the close must return once the running request is. */
Test(cancel, close_cancels_a_submit_waiting_for_room, .timeout = 60)
{
    qv_executor *ex;
    cr_assert_eq(qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                          .kind = tx_kind(),
                                                          .max_workers = 1,
                                                          .max_queued = 1}),
                 QV_OK);
    closing c = {.s = TX_SESSION(.executor = ex)};
    qv_future *busy, *queued;
    cr_assert_eq(qv_get(c.s, &busy, tu("/delay/1")), QV_OK);
    tx_wait_started(busy, 5000);
    cr_assert_eq(qv_get(c.s, &queued, tu("/get")), QV_OK); /* the queue is full */
    pthread_t submitter, closer;
    cr_assert_eq(pthread_create(&submitter, NULL, submit_for_room, &c), 0);
    /* Time for the submit to block; the test passes whenever it does. */
    usleep(200 * 1000);
    cr_assert_eq(pthread_create(&closer, NULL, close_cancelling, &c), 0);
    pthread_join(submitter, NULL);
    if (c.rc == QV_OK) {
        cr_assert_eq(qv_future_wait(c.f, 10000), QV_OK, "a submit the close cancelled never ended");
        qv_future_release(c.f);
    } else {
        cr_assert_eq(c.rc, QV_ESHUTDOWN, "the submit gave %s", qv_errname(c.rc));
    }
    double deadline = now_ms() + 10000;
    while (!atomic_load(&c.closed) && now_ms() < deadline) usleep(1000);
    cr_assert(atomic_load(&c.closed), "qv_session_close(cancel_pending) did not return");
    pthread_join(closer, NULL);
    tx_expect_error(queued, QV_ECANCELLED);
    tx_expect_status(busy, 200);
    qv_future_release(queued);
    qv_future_release(busy);
    qv_session_free(c.s);
    qv_executor_free(ex);
}
