/* Traffic control: backpressure (max_queued, blocking or QV_EAGAIN) and
 * pollable completions (a completion queue with a file descriptor). */
#include "support.h"

#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

TestSuite(traffic, .timeout = 120);

static qv_executor *bounded_executor(size_t max_queued, int no_block)
{
    qv_executor *ex;
    cr_assert_eq(qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                          .kind = tx_kind(),
                                                          .max_workers = 4,
                                                          .max_queued = max_queued,
                                                          .no_block = no_block}),
                 QV_OK);
    return ex;
}

static atomic_int completed;

static void count_done(qv_future *f, void *arg)
{
    (void)arg;
    if (qv_future_result(f, NULL, 0) == QV_OK) atomic_fetch_add(&completed, 1);
}

Test(traffic, max_queued_blocks_and_bounds_the_queue, .timeout = 120)
{
    enum { N = 300, MAXQ = 20 };
    qv_executor *ex = bounded_executor(MAXQ, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    size_t most = 0;
    atomic_store(&completed, 0);
    for (int i = 0; i < N; i++) {
        qv_future *f;
        /* Blocks while MAXQ wait: the caller never holds more than that. */
        cr_assert_eq(qv_get(s, &f, tuf("/anything/%d", i)), QV_OK);
        cr_assert_eq(qv_future_add_done_callback(f, count_done, NULL), QV_OK);
        qv_future_release(f);
        qv_executor_stats st;
        qv_executor_stats_get(ex, &st);
        if (st.queued > most) most = st.queued;
    }
    cr_assert_leq(most, MAXQ, "%zu futures queued with max_queued = %d", most, MAXQ);
    qv_session_close(s, 0);
    cr_assert_eq(atomic_load(&completed), N, "%d of %d completed", atomic_load(&completed), N);
    qv_session_free(s);
    qv_executor_free(ex);
}

Test(traffic, no_block_says_eagain, .timeout = 120)
{
    qv_executor *ex = bounded_executor(2, 1);
    qv_session *s = TX_SESSION(.executor = ex);
    /* Requests the fault server never answers keep the workers busy for as
     * long as the test needs (no dependence on a busy server's pace)... */
    qv_future *slow[64];
    int n = 0, rc = QV_OK;
    for (; n < 4; n++) { /* one per worker, each running before the next */
        cr_assert_eq(qv_get(s, &slow[n], tx_faults_url("/stall-status")), QV_OK);
        tx_wait_started(slow[n], 10000);
    }
    while (n < 64 && (rc = qv_get(s, &slow[n], tx_faults_url("/stall-status"))) == QV_OK) n++;
    /* ...until the queue is full: then at once, and no future exists. */
    cr_assert_eq(rc, QV_EAGAIN, "submit %d gave %s", n + 1, qv_errname(rc));
    cr_assert_eq(n, 4 + 2, "%d submits went through with 4 workers and room for 2", n);
    qv_future *f = (qv_future *)(void *)&n;
    double t0 = now_ms();
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_EAGAIN);
    cr_assert_lt(now_ms() - t0, 100.0, "QV_EAGAIN must not wait");
    cr_assert_null(f, "a refused submit leaves no future");
    for (int i = 0; i < n; i++) {
        cr_assert_eq(qv_future_cancel(slow[i]), 1);
        tx_expect_error(slow[i], QV_ECANCELLED);
        qv_future_release(slow[i]);
    }
    /* Room again. */
    tx_get_ok(s, &f, tu("/get"));
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
}

Test(traffic, completion_queue_drives_a_poll_loop, .timeout = 120)
{
    enum { N = 2000 };
    qv_session *s = TX_SESSION(.max_workers = 16);
    qv_cq *cq;
    cr_assert_eq(qv_cq_new(&cq), QV_OK);
    int fd = qv_cq_fd(cq);
    cr_assert_geq(fd, 0);
    struct pollfd p = {fd, POLLIN, 0};
    cr_assert_eq(poll(&p, 1, 0), 0, "readable before anything completed");
    for (int i = 0; i < N; i++) {
        qv_future *f;
        cr_assert_eq(qv_get(s, &f, tuf("/anything/%d", i), .user_data = (void *)(intptr_t)(i + 1)),
                     QV_OK);
        cr_assert_eq(qv_cq_add(cq, f), QV_OK);
        qv_future_release(f); /* the queue holds its own reference */
    }
    char *seen = calloc(N + 1, 1);
    int got = 0;
    double deadline = now_ms() + 90000;
    while (got < N && now_ms() < deadline) {
        p.revents = 0;
        if (poll(&p, 1, 1000) <= 0) continue;
        qv_future *f;
        while (qv_cq_pop(cq, &f) == QV_OK) {
            cr_assert(qv_future_done(f), "popped a future that is not done");
            intptr_t id = (intptr_t)qv_future_user_data(f);
            cr_assert(id >= 1 && id <= N && !seen[id], "future %ld popped twice", (long)id);
            seen[id] = 1;
            tx_expect_status(f, 200);
            qv_future_release(f);
            got++;
        }
    }
    cr_assert_eq(got, N, "%d of %d completions came out of the queue", got, N);
    cr_assert_eq(poll(&p, 1, 0), 0, "still readable once drained");
    qv_future *none;
    cr_assert_eq(qv_cq_pop(cq, &none), QV_EAGAIN);
    free(seen);
    qv_cq_free(cq);
    qv_session_free(s);
}

static int slow_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)r, (void)arg;
    nanosleep(&(struct timespec){.tv_nsec = 200 * 1000000L}, NULL);
    return 0;
}

Test(traffic, timing_breakdown_is_plausible, .timeout = 120)
{
    /* Two workers, four requests of a second each: two of them wait. */
    qv_session *s = TX_SESSION(.max_workers = 2);
    qv_future *fs[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(qv_get(s, &fs[i], tu("/delay/1"), .hook = i == 0 ? slow_hook : NULL), QV_OK);
    int waited = 0;
    for (int i = 0; i < 4; i++) {
        qv_timing t;
        cr_assert_eq(qv_response_timing(tx_expect_status(fs[i], 200), &t), QV_OK);
        /* The phases that happened come in order (a reused connection has no
         * connect phase: 0); the server's second lands before the first byte. */
        double phases[] = {t.dns_ms, t.connect_ms, t.tls_ms, t.first_byte_ms, t.total_ms}, last = 0;
        for (int k = 0; k < 5; k++) {
            cr_assert_geq(phases[k], 0);
            if (phases[k] == 0) continue;
            cr_assert_geq(phases[k], last, "phase %d at %.3f ms, before %.3f", k, phases[k], last);
            last = phases[k];
        }
        cr_assert(t.first_byte_ms > 900 && t.first_byte_ms < 5000, "first byte after %.0f ms",
                  t.first_byte_ms);
        cr_assert_eq(t.tls_ms, 0, "no TLS over plain HTTP");
        cr_assert(t.queued_ms >= 0 && t.queued_ms < 10000, "queued %.0f ms", t.queued_ms);
        waited += t.queued_ms > 700;
        if (i == 0)
            cr_assert(t.hooks_ms >= 150, "the 200 ms hook took %.0f ms", t.hooks_ms);
        else
            cr_assert_lt(t.hooks_ms, 100, "no hook, but %.0f ms of hooks", t.hooks_ms);
        qv_future_release(fs[i]);
    }
    cr_assert_eq(waited, 2, "%d requests waited about a second for a worker, expected 2", waited);
    qv_session_free(s);
}
