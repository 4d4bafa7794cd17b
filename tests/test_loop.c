/* What only the event-loop executor promises: a slow hook does not hold up
 * other transfers, and the connection caps hold. These tests make their own
 * QV_LOOP executor, so the file is registered for that kind alone. */
#include "support.h"

#include <time.h>

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
