/* The thread-pool executor: up to max_workers threads, started as work
 * arrives. Each worker owns one easy handle and a private curl_multi for its
 * whole life, so connections are reused across requests, and a cancel can
 * wake the worker out of its poll at once (curl_multi_wakeup). */
#include "internal.h"

typedef struct tpool {
    qv_executor base;
    pthread_t *threads;
    int nthreads;
    atomic_int idle; /* workers waiting for work (changed under ex->mu) */
    int signalled;   /* of those, already woken for a queued future */
} tpool;

static void run_one(qv_executor *ex, qv_slot *slot, CURLM **mp, qv_future *f)
{
    /* Made on first use, and again after an allocation failed, so that one
     * failure does not break the worker for good. */
    if (!slot->easy) slot->easy = curl_easy_init();
    if (!*mp && (*mp = curl_multi_init()))
        curl_multi_setopt(*mp, CURLMOPT_MAXCONNECTS, (long)ex->o.max_connections);
    CURLM *multi = *mp;
    qv_holder running = qv_transfer_holder(multi);
    if (!qv_future_begin(f, &running)) {
        /* Its cancel completed it. */
    } else if (!slot->easy || !multi) {
        qv_future_end_transfer(f);
        qv_future_fail(f, QV_ENOMEM, "the worker has no transfer handle");
    } else if (qv_transfer_setup(slot, f) == QV_OK) {
        qv_transfer_finish(slot, qv_transfer_run(slot, multi, -1, NULL));
    } else {
        qv_transfer_deliver(f);
    }
    qv_future_drop(f); /* the queue's reference */
}

static void *worker_main(void *arg)
{
    qv_executor *ex = arg;
    tpool *tp = (tpool *)ex;
    qv_slot slot = {0};
    CURLM *multi = NULL;
    qv_own_executor = ex;
    qv_mem_keep_begin();
    for (;;) {
        pthread_mutex_lock(&ex->mu);
        qv_future *f;
        long wait_ms;
        for (;;) {
            if (qv_executor_hold_back(ex)) {
                /* Enough finished responses wait for their collector: let
                 * it have the core rather than finish more. */
                pthread_cond_wait(&ex->resume, &ex->mu);
                atomic_fetch_sub(&ex->paused, 1);
                continue;
            }
            if ((f = qv_executor_pop_locked(ex, &wait_ms)) ||
                (ex->shutdown && qv_executor_empty_locked(ex)))
                break;
            /* Nothing may start yet: sleep until a submit, a finished
             * request of a limited host, or the next retry or token. */
            struct timespec dl;
            if (wait_ms >= 0) qv_deadline(&dl, wait_ms);
            atomic_fetch_add(&tp->idle, 1);
            /* A submit that saw no idle worker pushed on the inbox without
             * a notify: counted idle first, this one looks once more (of
             * the two, one sees the other). */
            if (qv_executor_inbox_empty(ex)) {
                qv_cond_wait(&ex->cv, &ex->mu, wait_ms >= 0 ? &dl : NULL);
                if (tp->signalled) tp->signalled--;
            }
            atomic_fetch_sub(&tp->idle, 1);
        }
        pthread_mutex_unlock(&ex->mu);
        if (!f) break; /* shut down and drained */
        run_one(ex, &slot, &multi, f);
    }
    qv_transfer_slot_free(&slot);
    if (multi) curl_multi_cleanup(multi);
    qv_mem_keep_end();
    return NULL;
}

static int tp_notify(qv_executor *ex)
{
    tpool *tp = (tpool *)ex;
    /* A worker signalled but not yet awake is not idle for the next submit:
     * two signals to one waiter wake it once, and the second future would
     * wait for a busy worker while a new one could have started. */
    if (tp->idle > tp->signalled) {
        tp->signalled++;
        if (ex->signal_later)
            ex->signal_due = 1; /* a submit signals after its unlock */
        else
            pthread_cond_signal(&ex->cv);
        return QV_OK;
    }
    if (tp->nthreads < ex->o.max_workers &&
        pthread_create(&tp->threads[tp->nthreads], NULL, worker_main, ex) == 0) {
        tp->nthreads++;
        atomic_fetch_add(&qv_io_threads, 1);
        atomic_store(&ex->workers, tp->nthreads);
        return QV_OK;
    }
    /* Busy workers will get to it; with none at all, nothing ever would. */
    return tp->nthreads > 0 ? QV_OK : QV_ENOMEM;
}

static int tp_all_busy(qv_executor *ex)
{
    tpool *tp = (tpool *)ex;
    /* No worker idle and none to start: each busy one pops before it sleeps. */
    return atomic_load(&tp->idle) == 0 && atomic_load(&ex->workers) >= ex->o.max_workers;
}

static void tp_shutdown(qv_executor *ex)
{
    tpool *tp = (tpool *)ex;
    pthread_mutex_lock(&ex->mu);
    pthread_cond_broadcast(&ex->cv);
    int n = tp->nthreads;
    pthread_mutex_unlock(&ex->mu);
    /* No thread starts after shutdown is set, so n is final. */
    for (int i = 0; i < n; i++) pthread_join(tp->threads[i], NULL);
    atomic_fetch_sub(&qv_io_threads, n);
}

static void tp_destroy(qv_executor *ex)
{
    tpool *tp = (tpool *)ex;
    qv_free(tp->threads);
    qv_free(tp);
}

static const qv_executor_vt tpool_vt = {
    .notify = tp_notify,
    .all_busy = tp_all_busy,
    .shutdown = tp_shutdown,
    .destroy = tp_destroy,
};

int qv_threads_new(qv_executor **out, const qv_executor_opts *o)
{
    tpool *tp = qv_calloc(1, sizeof(*tp));
    if (!tp) return QV_ENOMEM;
    int rc = qv_executor_init(&tp->base, &tpool_vt, o);
    if (rc) {
        qv_free(tp);
        return rc;
    }
    long bound = o->max_uncollected;
    if (bound == 0) bound = tp->base.o.max_workers > 32 ? 2L * tp->base.o.max_workers : 64;
    tp->base.max_uncollected = bound < 0 ? 0 : bound;
    /* A body block and a shell kept for every response the pool may hold at
     * once: its transfers' and the finished ones that wait for you (up to
     * max_uncollected + max_workers - 1). With one per transfer only, the
     * blocks of the responses you collect after a wait went back to the
     * kernel and the next ones were mapped and faulted in again
     * (bench/NOTES.md, 2026-12-06 22:00). */
    qv_bodies_keep_most(tp->base.bodies,
                        2 * (size_t)tp->base.o.max_workers + (size_t)tp->base.max_uncollected);
    tp->threads = qv_calloc((size_t)tp->base.o.max_workers, sizeof(*tp->threads));
    if (!tp->threads) return qv_executor_abandon(&tp->base, QV_ENOMEM);
    *out = &tp->base;
    return QV_OK;
}
