/* Threads that wait: several at once, one that computes between results,
 * and a cancel or an executor's free while one waits. On QV_LOOP the
 * waiting thread drives the transfers itself (docs/internals.md); every
 * executor keeps these promises. */
#include "support.h"

#include <pthread.h>
#include <stdatomic.h>

TestSuite(waiters, .timeout = 60);

typedef struct waiter_arg {
    qv_future *f;
    int rc, status;
} waiter_arg;

static void *wait_one(void *p)
{
    waiter_arg *a = p;
    qv_response *r = NULL;
    a->rc = qv_future_result(a->f, &r, 20000);
    a->status = r ? qv_response_status(r) : 0;
    return NULL;
}

/* n threads each wait for a future of their own, all at once. */
static void several_wait(int n)
{
    qv_session *s = TX_SESSION(.max_workers = n);
    qv_future *fs[8];
    waiter_arg args[8];
    pthread_t th[8];
    for (int i = 0; i < n; i++) {
        cr_assert_eq(qv_get(s, &fs[i], tu("/delay/0.3")), QV_OK);
        args[i] = (waiter_arg){.f = fs[i]};
    }
    for (int i = 0; i < n; i++) cr_assert_eq(pthread_create(&th[i], NULL, wait_one, &args[i]), 0);
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(args[i].rc, QV_OK, "waiter %d: %s", i, qv_strerror(args[i].rc));
        cr_assert_eq(args[i].status, 200, "waiter %d", i);
        qv_future_release(fs[i]);
    }
    qv_session_free(s);
}

Test(waiters, two_threads_wait_at_once)
{
    several_wait(2);
}

Test(waiters, eight_threads_wait_at_once)
{
    several_wait(8);
}

/* Several threads wait on one future and on the others' too. */
Test(waiters, threads_waiting_on_the_same_futures_all_return)
{
    qv_session *s = TX_SESSION(.max_workers = 4);
    qv_future *fs[4];
    waiter_arg args[8];
    pthread_t th[8];
    for (int i = 0; i < 4; i++) cr_assert_eq(qv_get(s, &fs[i], tu("/delay/0.2")), QV_OK);
    for (int i = 0; i < 8; i++) {
        args[i] = (waiter_arg){.f = fs[i % 4]};
        cr_assert_eq(pthread_create(&th[i], NULL, wait_one, &args[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(args[i].rc, QV_OK);
        cr_assert_eq(args[i].status, 200);
    }
    for (int i = 0; i < 4; i++) qv_future_release(fs[i]);
    qv_session_free(s);
}

static volatile unsigned long spin; /* the compute's work, kept */

typedef struct stamp {
    double at[8];
    atomic_int taken, n; /* n counts the times written */
} stamp;

static void stamp_done(qv_future *f, void *arg)
{
    (void)f;
    stamp *st = arg;
    st->at[atomic_fetch_add(&st->taken, 1)] = now_ms();
    atomic_fetch_add(&st->n, 1);
}

/* The consumer waits for one result, then computes (without waiting)
 * while the rest finish: they must not wait for its next wait. (On
 * QV_LOOP the wait leads long enough for the I/O thread to park: the end
 * of the lead must wake it.) */
Test(waiters, transfers_finish_while_the_consumer_computes)
{
    qv_session *s = TX_SESSION(.max_workers = 8);
    qv_future *first, *rest[6];
    stamp st = {.taken = 0, .n = 0};
    cr_assert_eq(qv_get(s, &first, tu("/delay/0.2")), QV_OK);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(qv_get(s, &rest[i], tu("/delay/0.5")), QV_OK);
        cr_assert_eq(qv_future_add_done_callback(rest[i], stamp_done, &st), QV_OK);
    }
    tx_expect_status(first, 200);
    /* Computes up to 10 s, and stops as soon as the rest are done: no
     * call into quiver meanwhile. */
    double t0 = now_ms();
    while (atomic_load(&st.n) < 6 && now_ms() - t0 < 10000)
        for (int k = 0; k < 100000; k++) spin += (unsigned long)k;
    double t1 = now_ms();
    cr_assert_eq(atomic_load(&st.n), 6, "only %d of 6 transfers finished in %.0f ms of compute",
                 atomic_load(&st.n), t1 - t0);
    for (int i = 0; i < 6; i++) {
        cr_assert_leq(st.at[i], t1, "a transfer completed after the compute ended");
        tx_expect_status(rest[i], 200);
        qv_future_release(rest[i]);
    }
    qv_future_release(first);
    qv_session_free(s);
}

/* The consumer collects quick results one after another, then computes
 * while slow transfers started before them go on: they must not wait for
 * its next wait. (On QV_LOOP each wait leads and each result hands the lead
 * to no one; the I/O thread sleeps through that, its timer set by the
 * releases, and must take over once they stop.) */
Test(waiters, transfers_finish_while_the_consumer_computes_after_quick_results)
{
    enum { QUICK = 40, SLOW = 4 };
    qv_session *s = TX_SESSION(.max_workers = SLOW + 1);
    qv_future *quick[QUICK], *slow[SLOW];
    stamp st = {.taken = 0, .n = 0};
    for (int i = 0; i < SLOW; i++) {
        cr_assert_eq(qv_get(s, &slow[i], tu("/delay/0.5")), QV_OK);
        cr_assert_eq(qv_future_add_done_callback(slow[i], stamp_done, &st), QV_OK);
    }
    for (int i = 0; i < QUICK; i++) {
        cr_assert_eq(qv_get(s, &quick[i], tu("/get")), QV_OK);
        tx_expect_status(quick[i], 200);
        qv_future_release(quick[i]);
    }
    double t0 = now_ms();
    while (atomic_load(&st.n) < SLOW && now_ms() - t0 < 10000)
        for (int k = 0; k < 100000; k++) spin += (unsigned long)k;
    double t1 = now_ms();
    cr_assert_eq(atomic_load(&st.n), SLOW, "only %d of %d transfers finished in %.0f ms of compute",
                 atomic_load(&st.n), SLOW, t1 - t0);
    for (int i = 0; i < SLOW; i++) {
        cr_assert_leq(st.at[i], t1, "a transfer completed after the compute ended");
        tx_expect_status(slow[i], 200);
        qv_future_release(slow[i]);
    }
    qv_session_free(s);
}

/* A GET of path, its transfer started, and a thread waiting for it. */
static qv_future *start_waiter(qv_session *s, const char *path, waiter_arg *a, pthread_t *th)
{
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu(path)), QV_OK);
    *a = (waiter_arg){.f = f};
    cr_assert_eq(pthread_create(th, NULL, wait_one, a), 0);
    tx_wait_started(f, 5000);
    return f;
}

Test(waiters, a_cancel_from_another_thread_ends_a_wait)
{
    qv_session *s = TX_SESSION();
    waiter_arg a;
    pthread_t th;
    qv_future *f = start_waiter(s, "/delay/10", &a, &th);
    double t0 = now_ms();
    cr_assert_eq(qv_future_cancel(f), 1);
    pthread_join(th, NULL);
    double took = now_ms() - t0;
    cr_assert_eq(a.rc, QV_ECANCELLED, "%s", qv_strerror(a.rc));
    cr_assert_lt(took, 2000.0, "the waiter returned %.0f ms after the cancel", took);
    cr_assert_eq(qv_future_state_get(f), QV_CANCELLED);
    qv_future_release(f);
    qv_session_free(s);
}

Test(waiters, freeing_the_executor_while_a_thread_waits_finishes_its_future)
{
    qv_executor *ex = tx_executor(2);
    qv_session *s = TX_SESSION(.executor = ex);
    waiter_arg a;
    pthread_t th;
    qv_future *f = start_waiter(s, "/delay/0.5", &a, &th);
    qv_executor_free(ex); /* finishes what is in flight */
    cr_assert(qv_future_done(f), "qv_executor_free returned before its future was done");
    pthread_join(th, NULL);
    cr_assert_eq(a.rc, QV_OK, "%s", qv_strerror(a.rc));
    cr_assert_eq(a.status, 200);
    qv_future_release(f);
    qv_session_free(s);
}

/* After a blocking wait, the consumer polls (timeout 0) between short
 * computes: a poll waits for nothing, so it must not keep the transfers
 * from going on (on QV_LOOP: hold off the I/O thread's take-over). */
static void poll_while_computing(int as_completed)
{
    qv_session *s = TX_SESSION();
    qv_future *first, *f;
    cr_assert_eq(qv_get(s, &first, tu("/get")), QV_OK);
    tx_expect_status(first, 200); /* a blocking wait: on QV_LOOP it led */
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK);
    qv_as_completed *ac = NULL;
    if (as_completed) cr_assert_eq(qv_as_completed_new(&ac, &f, 1), QV_OK);
    double t0 = now_ms();
    int rc;
    for (;;) {
        qv_future *got = NULL;
        rc = ac ? qv_as_completed_next(ac, &got, 0) : qv_wait(&f, 1, QV_ALL_COMPLETED, 0);
        if (rc != QV_EWAIT_TIMEOUT || now_ms() - t0 > 10000) break;
        for (int k = 0; k < 20000; k++) spin += (unsigned long)k;
    }
    cr_assert_eq(rc, QV_OK, "still not done after %.0f ms of polling: %s", now_ms() - t0,
                 qv_strerror(rc));
    tx_expect_status(f, 200);
    qv_as_completed_free(ac);
    qv_future_release(f);
    qv_future_release(first);
    qv_session_free(s);
}

Test(waiters, polling_with_no_timeout_between_computes_lets_transfers_finish)
{
    poll_while_computing(0);
}

Test(waiters, as_completed_polled_with_no_timeout_lets_transfers_finish)
{
    poll_while_computing(1);
}
