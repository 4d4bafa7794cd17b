/* The executor interface (a small vtable) and what every kind shares: the
 * queue of pending futures, reference counting, stats and shutdown. */
#include "internal.h"

#include <string.h>

atomic_int qv_io_threads;

int qv_executor_init(qv_executor *ex, const qv_executor_vt *vt, const qv_executor_opts *o)
{
    ex->vt = vt;
    ex->o = *o;
    if (ex->o.max_workers <= 0) ex->o.max_workers = QV_DEFAULT_MAX_WORKERS;
    if (ex->o.max_connections <= 0) ex->o.max_connections = 8;
    atomic_init(&ex->refs, 1);
    if (pthread_mutex_init(&ex->mu, NULL)) return QV_ENOMEM;
    if (qv_cond_init(&ex->cv)) {
        pthread_mutex_destroy(&ex->mu);
        return QV_ENOMEM;
    }
    if (qv_cond_init(&ex->space)) {
        pthread_cond_destroy(&ex->cv);
        pthread_mutex_destroy(&ex->mu);
        return QV_ENOMEM;
    }
    return QV_OK;
}

int qv_executor_new(qv_executor **out, const qv_executor_opts *opts)
{
    if (!out) return QV_EINVAL;
    *out = NULL;
    qv_executor_opts o;
    int rc = qv_opts_copy(&o, sizeof(o), opts);
    if (rc) return rc;
    if (o.max_workers < 0 || o.max_connections < 0 || o.max_host_connections < 0 ||
        o.max_total_connections < 0 || o.hook_timeout_ms < 0)
        return QV_EINVAL;
    qv_global_init();
    switch (o.kind) {
    case QV_THREADS:
        return qv_threads_new(out, &o);
    case QV_LOOP:
        return qv_loop_new(out, &o);
    case QV_PROCESSES:
        return qv_procs_new(out, &o);
    default:
        return QV_EINVAL;
    }
}

void qv_executor_ref(qv_executor *ex)
{
    atomic_fetch_add(&ex->refs, 1);
}

void qv_executor_unref(qv_executor *ex)
{
    if (atomic_fetch_sub(&ex->refs, 1) != 1) return;
    pthread_cond_destroy(&ex->space);
    pthread_cond_destroy(&ex->cv);
    pthread_mutex_destroy(&ex->mu);
    ex->vt->destroy(ex);
}

void qv_executor_free(qv_executor *ex)
{
    if (!ex) return;
    pthread_mutex_lock(&ex->mu);
    int first = !ex->shutdown;
    ex->shutdown = 1;
    pthread_cond_broadcast(&ex->space); /* blocked submitters get QV_ESHUTDOWN */
    pthread_mutex_unlock(&ex->mu);
    if (first) ex->vt->shutdown(ex);
    qv_executor_unref(ex);
}

int qv_executor_submit(qv_executor *ex, qv_future *f)
{
    pthread_mutex_lock(&ex->mu);
    while (ex->o.max_queued && ex->queued >= ex->o.max_queued && !ex->shutdown) {
        if (ex->o.no_block) {
            pthread_mutex_unlock(&ex->mu);
            return QV_EAGAIN;
        }
        pthread_cond_wait(&ex->space, &ex->mu);
    }
    if (ex->shutdown) {
        pthread_mutex_unlock(&ex->mu);
        return QV_ESHUTDOWN;
    }
    f->qnext = NULL;
    f->qprev = ex->qtail;
    if (ex->qtail)
        ex->qtail->qnext = f;
    else
        ex->qhead = f;
    ex->qtail = f;
    ex->queued++;
    int rc = ex->vt->notify(ex);
    if (rc) {
        /* No worker can ever run it: take it back, the submit fails. */
        ex->qtail = f->qprev;
        if (ex->qtail)
            ex->qtail->qnext = NULL;
        else
            ex->qhead = NULL;
        ex->queued--;
    }
    pthread_mutex_unlock(&ex->mu);
    return rc;
}

static void unlink_locked(qv_executor *ex, qv_future *f)
{
    if (f->qprev)
        f->qprev->qnext = f->qnext;
    else
        ex->qhead = f->qnext;
    if (f->qnext)
        f->qnext->qprev = f->qprev;
    else
        ex->qtail = f->qprev;
    f->qprev = f->qnext = NULL;
    ex->queued--;
    if (ex->o.max_queued) pthread_cond_signal(&ex->space);
}

qv_future *qv_executor_pop_locked(qv_executor *ex)
{
    qv_future *f = ex->qhead;
    if (f) unlink_locked(ex, f);
    return f;
}

int qv_executor_remove(qv_executor *ex, qv_future *f)
{
    pthread_mutex_lock(&ex->mu);
    int queued = f == ex->qhead || f->qprev;
    if (queued) unlink_locked(ex, f);
    pthread_mutex_unlock(&ex->mu);
    return queued;
}

void qv_executor_count(qv_executor *ex, qv_future_state st)
{
    atomic_size_t *c = st == QV_FINISHED    ? &ex->completed
                       : st == QV_CANCELLED ? &ex->cancelled
                                            : &ex->failed;
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

int qv_executor_stats_get(qv_executor *ex, qv_executor_stats *out)
{
    if (!ex || !out) return QV_EINVAL;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&ex->mu);
    out->queued = ex->queued;
    pthread_mutex_unlock(&ex->mu);
    out->in_flight = atomic_load(&ex->in_flight);
    out->completed = atomic_load(&ex->completed);
    out->failed = atomic_load(&ex->failed);
    out->cancelled = atomic_load(&ex->cancelled);
    out->connections_opened = atomic_load(&ex->connections);
    out->workers = atomic_load(&ex->workers);
    return QV_OK;
}
