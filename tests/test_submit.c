/* Submitting while every worker is busy: what waits starts in submission
 * order, submits from many threads each run once, and a cancel from the
 * submitting threads meanwhile ends a queued future at once. (On QV_THREADS
 * such submits take no lock: they go through the executor's inbox.) */
#include "support.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

TestSuite(submit, .timeout = 60);

#define QUEUED 30

/* One worker, held by a slow request: the ones queued behind it complete,
 * one at a time, in the order they were submitted. */
Test(submit, queued_behind_a_busy_worker_run_in_submission_order, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    qv_future *fs[1 + QUEUED];
    cr_assert_eq(qv_get(s, &fs[0], tu("/delay/1")), QV_OK);
    for (int i = 1; i <= QUEUED; i++) cr_assert_eq(qv_get(s, &fs[i], tuf("/get?i=%d", i)), QV_OK);
    qv_as_completed *ac;
    cr_assert_eq(qv_as_completed_new(&ac, fs, 1 + QUEUED), QV_OK);
    for (int i = 0; i <= QUEUED; i++) {
        qv_future *f = NULL;
        cr_assert_eq(qv_as_completed_next(ac, &f, TX_RESULT_TIMEOUT_MS), QV_OK);
        cr_assert_eq(f, fs[i], "completion %d is not the future submitted %d-th", i, i);
        tx_expect_status(f, 200);
    }
    qv_as_completed_free(ac);
    for (int i = 0; i <= QUEUED; i++) qv_future_release(fs[i]);
    qv_session_free(s);
}

#define WORKERS    2
#define SUBMITTERS 4
#define EACH       40

typedef struct submitter {
    pthread_t th;
    qv_session *s;
    qv_future *fs[EACH];
    int cancelled[EACH]; /* what the cancel of fs[i] returned (odd i only) */
    atomic_int done[EACH];
} submitter;

static void count_done(qv_future *f, void *arg)
{
    (void)f;
    atomic_fetch_add((atomic_int *)arg, 1);
}

/* Submits EACH GETs, each with a done callback that counts its completions,
 * and cancels every odd one right after its submit. */
static void *submit_some(void *arg)
{
    submitter *sb = arg;
    for (int i = 0; i < EACH; i++) {
        if (qv_get(sb->s, &sb->fs[i], tu("/get")) != QV_OK) return "submit failed";
        if (qv_future_add_done_callback(sb->fs[i], count_done, &sb->done[i]) != QV_OK)
            return "add_done_callback failed";
        if (i % 2 == 0) continue;
        sb->cancelled[i] = qv_future_cancel(sb->fs[i]);
        /* A queued future is done when its cancel returns. */
        if (sb->cancelled[i] && qv_future_state_get(sb->fs[i]) == QV_PENDING)
            return "a cancelled queued future is not done after its cancel";
    }
    return NULL;
}

Test(submit, many_threads_submit_and_cancel_while_every_worker_is_busy, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = WORKERS);
    qv_future *busy[WORKERS];
    for (int i = 0; i < WORKERS; i++) cr_assert_eq(qv_get(s, &busy[i], tu("/delay/1")), QV_OK);
    static submitter sb[SUBMITTERS];
    memset(sb, 0, sizeof sb);
    for (int t = 0; t < SUBMITTERS; t++) {
        sb[t].s = s;
        cr_assert_eq(pthread_create(&sb[t].th, NULL, submit_some, &sb[t]), 0);
    }
    for (int t = 0; t < SUBMITTERS; t++) {
        void *err = NULL;
        pthread_join(sb[t].th, &err);
        cr_assert_null(err, "submitter %d: %s", t, err ? (const char *)err : "");
    }
    size_t cancelled = 0;
    for (int t = 0; t < SUBMITTERS; t++)
        for (int i = 0; i < EACH; i++) {
            qv_future *f = sb[t].fs[i];
            cr_assert_eq(qv_future_wait(f, TX_RESULT_TIMEOUT_MS), QV_OK);
            if (sb[t].cancelled[i]) {
                cr_assert_eq(qv_future_state_get(f), QV_CANCELLED, "future %d of %d", i, t);
                cancelled++;
            } else {
                tx_expect_status(f, 200);
            }
        }
    for (int i = 0; i < WORKERS; i++) tx_expect_status(busy[i], 200);
    /* A wait may return before the future's done callbacks ran (on another
     * thread): close waits until every completion is over. */
    qv_session_close(s, 0);
    for (int t = 0; t < SUBMITTERS; t++)
        for (int i = 0; i < EACH; i++)
            cr_assert_eq(atomic_load(&sb[t].done[i]), 1,
                         "future %d of submitter %d completed %d times", i, t,
                         atomic_load(&sb[t].done[i]));
    qv_executor_stats st;
    cr_assert_eq(qv_executor_stats_get(qv_session_executor(s), &st), QV_OK);
    cr_assert_eq(st.cancelled, cancelled, "stats.cancelled = %zu, %zu cancelled", st.cancelled,
                 cancelled);
    cr_assert_eq(st.completed + st.cancelled, WORKERS + SUBMITTERS * EACH,
                 "completed %zu + cancelled %zu", st.completed, st.cancelled);
    cr_assert_eq(st.queued, 0, "stats.queued = %zu", st.queued);
    for (int t = 0; t < SUBMITTERS; t++)
        for (int i = 0; i < EACH; i++) qv_future_release(sb[t].fs[i]);
    for (int i = 0; i < WORKERS; i++) qv_future_release(busy[i]);
    qv_session_free(s);
}

/* Futures queued while every worker is busy count as queued in the stats. */
Test(submit, stats_count_what_waits_behind_busy_workers, .timeout = 60)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    qv_future *busy, *fs[QUEUED];
    cr_assert_eq(qv_get(s, &busy, tu("/delay/2")), QV_OK);
    for (int i = 0; i < QUEUED; i++) cr_assert_eq(qv_get(s, &fs[i], tu("/get")), QV_OK);
    qv_executor_stats st;
    cr_assert_eq(qv_executor_stats_get(qv_session_executor(s), &st), QV_OK);
    /* busy may still wait for the worker that is starting. */
    cr_assert(st.queued == QUEUED || st.queued == QUEUED + 1, "stats.queued = %zu, %d submitted",
              st.queued, QUEUED + 1);
    for (int i = 0; i < QUEUED; i++) qv_future_cancel(fs[i]);
    tx_expect_status(busy, 200);
    for (int i = 0; i < QUEUED; i++) qv_future_release(fs[i]);
    qv_future_release(busy);
    qv_session_free(s);
}
