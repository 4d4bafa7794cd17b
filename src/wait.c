/* Waiting on futures: qv_wait and qv_as_completed, and qv_future_wait on an
 * executor whose transfers a waiting thread may drive. Each registers one
 * waiter on every future and is told of completions as they happen, so no
 * one polls. */
#include "internal.h"

/* The wait this thread drives a multi for, if any. */
static _Thread_local qv_waiter *leading;

typedef struct wait_state {
    qv_waiter w;
    size_t live, done, failed;
    qv_wait_mode mode;
} wait_state;

static void wait_notify(qv_waiter *w, size_t idx, qv_future_state st)
{
    (void)idx;
    wait_state *ws = (wait_state *)w;
    pthread_mutex_lock(&w->mu);
    ws->done++;
    if (st != QV_FINISHED) ws->failed++;
    qv_waiter_kick(w);
    pthread_mutex_unlock(&w->mu);
}

static int wait_ready(qv_waiter *w)
{
    const wait_state *ws = (const wait_state *)w;
    switch (ws->mode) {
    case QV_FIRST_COMPLETED:
        return ws->done > 0 || ws->live == 0;
    case QV_FIRST_EXCEPTION:
        return ws->failed > 0 || ws->done == ws->live;
    default:
        return ws->done == ws->live;
    }
}

int qv_waiter_init(qv_waiter *w, void (*notify)(qv_waiter *, size_t, qv_future_state),
                   int (*ready)(qv_waiter *))
{
    if (pthread_mutex_init(&w->mu, NULL)) return QV_ENOMEM;
    if (qv_cond_init(&w->cv)) {
        pthread_mutex_destroy(&w->mu);
        return QV_ENOMEM;
    }
    w->notify = notify;
    w->ready = ready;
    w->ex = NULL;
    atomic_init(&w->lead_multi, NULL);
    return QV_OK;
}

void qv_waiter_destroy(qv_waiter *w)
{
    if (w->ex) qv_executor_unref(w->ex);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

void qv_waiter_kick(qv_waiter *w)
{
    pthread_cond_broadcast(&w->cv);
    /* A completion on the driving thread itself needs no wake-up: it looks
     * at w before it polls again. */
    CURLM *multi = atomic_load(&w->lead_multi);
    if (multi && leading != w) curl_multi_wakeup(multi);
}

qv_waiter *qv_waiter_lead(qv_waiter *w, CURLM *multi)
{
    qv_waiter *before = leading;
    leading = w;
    /* No lock: the leader looks at w under w->mu after this and before each
     * poll, so a notify either came before that look (which sees it) or
     * after, and then reads this (under w->mu too) and wakes the poll. */
    atomic_store(&w->lead_multi, multi);
    return before;
}

void qv_waiter_unlead(qv_waiter *w, qv_waiter *before)
{
    /* A notify that read it just before wakes a poll spuriously: harmless
     * (w holds a reference to the executor, so the multi is still there). */
    atomic_store(&w->lead_multi, NULL);
    leading = before;
}

int qv_waiter_block(qv_waiter *w, const struct timespec *deadline)
{
    /* Not from the executor's own threads: one of its callbacks that waits
     * for its futures waits as before (it holds up its thread, as ever).
     * Nor for a wait already over (a poll): taking the lead for no round
     * would only put off the I/O thread's take-over, for good if the
     * caller polls more often than that. */
    if (w->ex && qv_own_executor != w->ex && !(deadline && qv_ms_left(deadline) == 0))
        w->ex->vt->drive(w->ex, w, deadline);
    pthread_mutex_lock(&w->mu);
    int timed_out = 0;
    while (!w->ready(w) && !timed_out) timed_out = qv_cond_wait(&w->cv, &w->mu, deadline) != 0;
    int ok = w->ready(w);
    pthread_mutex_unlock(&w->mu);
    return ok;
}

int qv_wait(qv_future *const *fs, size_t n, qv_wait_mode mode, long timeout_ms)
{
    struct timespec dl;
    if (timeout_ms >= 0) qv_deadline(&dl, timeout_ms);
    return qv_wait_until(fs, n, mode, timeout_ms >= 0 ? &dl : NULL);
}

int qv_wait_until(qv_future *const *fs, size_t n, qv_wait_mode mode,
                  const struct timespec *deadline)
{
    if (n && !fs) return QV_EINVAL;
    if (mode != QV_ALL_COMPLETED && mode != QV_FIRST_COMPLETED && mode != QV_FIRST_EXCEPTION)
        return QV_EINVAL;
    size_t live = 0;
    for (size_t i = 0; i < n; i++) {
        if (fs[i]) QV_CHECK_FUTURE(fs[i]);
        live += fs[i] != NULL;
    }
    if (live == 0) return QV_OK;

    wait_state ws = {.live = live, .mode = mode};
    if (qv_waiter_init(&ws.w, wait_notify, wait_ready)) return QV_ENOMEM;
    qv_wlink one, *links = n == 1 ? &one : qv_calloc(n, sizeof(*links));
    if (!links) {
        qv_waiter_destroy(&ws.w);
        return QV_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        if (fs[i]) qv_waiter_link(fs[i], &links[i], &ws.w, i);

    int ok = qv_waiter_block(&ws.w, deadline);

    for (size_t i = 0; i < n; i++)
        if (fs[i]) qv_waiter_unlink(fs[i], &links[i]);
    if (links != &one) qv_free(links);
    qv_waiter_destroy(&ws.w);
    return ok ? QV_OK : QV_EWAIT_TIMEOUT;
}

struct qv_as_completed {
    qv_waiter w;
    qv_future **fs;
    qv_wlink *links;
    size_t *ring; /* indices in completion order */
    size_t n, completed, given;
};

static void ac_notify(qv_waiter *w, size_t idx, qv_future_state st)
{
    (void)st;
    qv_as_completed *ac = (qv_as_completed *)w;
    pthread_mutex_lock(&w->mu);
    ac->ring[ac->completed++] = idx;
    qv_waiter_kick(w);
    pthread_mutex_unlock(&w->mu);
}

/* A next() call may return (the given ones all taken is answered before). */
static int ac_ready(qv_waiter *w)
{
    const qv_as_completed *ac = (const qv_as_completed *)w;
    return ac->given < ac->completed;
}

int qv_as_completed_new(qv_as_completed **out, qv_future *const *fs, size_t n)
{
    if (!out) return QV_EINVAL;
    *out = NULL;
    if (n && !fs) return QV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!fs[i]) return QV_EINVAL;
        QV_CHECK_FUTURE(fs[i]);
    }
    qv_as_completed *ac = qv_calloc(1, sizeof(*ac));
    if (!ac) return QV_ENOMEM;
    ac->fs = qv_calloc(n, sizeof(*ac->fs));
    ac->links = qv_calloc(n, sizeof(*ac->links));
    ac->ring = qv_calloc(n, sizeof(*ac->ring));
    if (!ac->fs || !ac->links || !ac->ring || qv_waiter_init(&ac->w, ac_notify, ac_ready)) {
        qv_free(ac->fs);
        qv_free(ac->links);
        qv_free(ac->ring);
        qv_free(ac);
        return QV_ENOMEM;
    }
    ac->n = n;
    for (size_t i = 0; i < n; i++) ac->fs[i] = qv_future_hold(fs[i]);
    for (size_t i = 0; i < n; i++) qv_waiter_link(ac->fs[i], &ac->links[i], &ac->w, i);
    *out = ac;
    return QV_OK;
}

int qv_as_completed_next(qv_as_completed *ac, qv_future **out, long timeout_ms)
{
    if (out) *out = NULL;
    if (!ac || !out) return QV_EINVAL;
    struct timespec dl;
    if (timeout_ms >= 0) qv_deadline(&dl, timeout_ms);
    pthread_mutex_lock(&ac->w.mu);
    int all_given = ac->given == ac->n;
    pthread_mutex_unlock(&ac->w.mu);
    if (all_given) return QV_ESHUTDOWN;
    for (;;) {
        qv_waiter_block(&ac->w, timeout_ms >= 0 ? &dl : NULL);
        /* Another thread calling next on ac may have taken it meanwhile. */
        pthread_mutex_lock(&ac->w.mu);
        int rc = -1;
        if (ac->given < ac->completed) {
            *out = ac->fs[ac->ring[ac->given++]];
            rc = QV_OK;
        } else if (ac->given == ac->n) {
            rc = QV_ESHUTDOWN;
        } else if (timeout_ms >= 0 && qv_ms_left(&dl) == 0) {
            rc = QV_EWAIT_TIMEOUT;
        }
        pthread_mutex_unlock(&ac->w.mu);
        if (rc != -1) return rc;
    }
}

void qv_as_completed_free(qv_as_completed *ac)
{
    if (!ac) return;
    for (size_t i = 0; i < ac->n; i++) {
        qv_waiter_unlink(ac->fs[i], &ac->links[i]);
        qv_future_drop(ac->fs[i]);
    }
    qv_waiter_destroy(&ac->w);
    qv_free(ac->fs);
    qv_free(ac->links);
    qv_free(ac->ring);
    qv_free(ac);
}
