/* Cancellation in flight and en masse: a running transfer is aborted
 * promptly and the executor keeps serving; thousands of queued futures are
 * cancelled fast and never reach the server. */
#include "support.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(cancel, .timeout = 60);

/* Cancels f (already running) and asserts it ends CANCELLED within 200 ms. */
static void cancel_promptly(qv_future *f)
{
    double t0 = now_ms();
    cr_assert_eq(qv_future_cancel(f), 1, "cancel of a running future returned 0");
    cr_assert_eq(qv_future_wait(f, 5000), QV_OK, "the cancelled future did not end in 5 s");
    double el = now_ms() - t0;
    cr_assert_lt(el, 200.0, "the running transfer took %.0f ms to abort", el);
    tx_expect_error(f, QV_ECANCELLED);
}

/* The executor still serves after an abort. */
static void still_serving(qv_session *s)
{
    qv_future *f;
    tx_get_ok(s, &f, tu("/get"));
    qv_future_release(f);
}

Test(cancel, delay_in_flight, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/delay/10")), QV_OK);
    tx_wait_started(f, 5000);
    cancel_promptly(f);
    qv_future_release(f);
    still_serving(s);
    qv_session_free(s);
}

Test(cancel, drip_mid_body, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    qv_future *f;
    /* 10 bytes over 10 s: the headers come at once, then a byte a second. */
    cr_assert_eq(qv_get(s, &f, tu("/drip?duration=10&numbytes=10&code=200&delay=0")), QV_OK);
    tx_wait_started(f, 5000);
    /* Let the body start flowing, so the abort is mid-body, not before it. */
    cr_assert_eq(qv_future_wait(f, 1500), QV_EWAIT_TIMEOUT, "the drip ended early");
    cancel_promptly(f);
    qv_future_release(f);
    still_serving(s);
    qv_session_free(s);
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
    cr_assert_eq(qv_get(s, &busy, tu("/delay/2")), QV_OK);
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
        cr_assert(qv_future_done(f), "round %d: the queued future was not done after its cancel",
                  i);
        cr_assert_eq(qv_future_state_get(f), QV_CANCELLED);
        qv_future_release(f);
    }
    free(body);
    tx_expect_status(busy, 200);
    qv_future_release(busy);
    qv_session_free(s);
}
