/* Waiting on many futures: qv_wait and qv_as_completed. Each registers one
 * waiter on every future and is told of completions as they happen, so no
 * one polls. */
#include "internal.h"

typedef struct wait_state {
    qv_waiter w;
    size_t done, failed;
} wait_state;

static void wait_notify(qv_waiter *w, size_t idx, qv_future_state st)
{
    (void)idx;
    wait_state *ws = (wait_state *)w;
    pthread_mutex_lock(&w->mu);
    ws->done++;
    if (st != QV_FINISHED) ws->failed++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int waiter_init(qv_waiter *w, void (*notify)(qv_waiter *, size_t, qv_future_state))
{
    if (pthread_mutex_init(&w->mu, NULL)) return QV_ENOMEM;
    if (qv_cond_init(&w->cv)) {
        pthread_mutex_destroy(&w->mu);
        return QV_ENOMEM;
    }
    w->notify = notify;
    return QV_OK;
}

static void waiter_destroy(qv_waiter *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

static int wait_satisfied(const wait_state *ws, size_t n, qv_wait_mode mode)
{
    switch (mode) {
    case QV_FIRST_COMPLETED:
        return ws->done > 0 || n == 0;
    case QV_FIRST_EXCEPTION:
        return ws->failed > 0 || ws->done == n;
    default:
        return ws->done == n;
    }
}

int qv_wait(qv_future *const *fs, size_t n, qv_wait_mode mode, long timeout_ms)
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

    wait_state ws = {.done = 0, .failed = 0};
    if (waiter_init(&ws.w, wait_notify)) return QV_ENOMEM;
    qv_wlink *links = qv_calloc(n, sizeof(*links));
    if (!links) {
        waiter_destroy(&ws.w);
        return QV_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        if (fs[i]) qv_waiter_link(fs[i], &links[i], &ws.w, i);

    struct timespec dl;
    if (timeout_ms >= 0) qv_deadline(&dl, timeout_ms);
    pthread_mutex_lock(&ws.w.mu);
    int timed_out = 0;
    while (!wait_satisfied(&ws, live, mode) && !timed_out)
        timed_out = qv_cond_wait(&ws.w.cv, &ws.w.mu, timeout_ms >= 0 ? &dl : NULL) != 0;
    int ok = wait_satisfied(&ws, live, mode);
    pthread_mutex_unlock(&ws.w.mu);

    for (size_t i = 0; i < n; i++)
        if (fs[i]) qv_waiter_unlink(fs[i], &links[i]);
    qv_free(links);
    waiter_destroy(&ws.w);
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
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
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
    if (!ac->fs || !ac->links || !ac->ring || waiter_init(&ac->w, ac_notify)) {
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
    int rc = QV_OK;
    if (ac->given == ac->n) {
        rc = QV_ESHUTDOWN;
    } else {
        int timed_out = 0;
        while (ac->given == ac->completed && !timed_out)
            timed_out = qv_cond_wait(&ac->w.cv, &ac->w.mu, timeout_ms >= 0 ? &dl : NULL) != 0;
        if (ac->given < ac->completed)
            *out = ac->fs[ac->ring[ac->given++]];
        else
            rc = QV_EWAIT_TIMEOUT;
    }
    pthread_mutex_unlock(&ac->w.mu);
    return rc;
}

void qv_as_completed_free(qv_as_completed *ac)
{
    if (!ac) return;
    for (size_t i = 0; i < ac->n; i++) {
        qv_waiter_unlink(ac->fs[i], &ac->links[i]);
        qv_future_drop(ac->fs[i]);
    }
    waiter_destroy(&ac->w);
    qv_free(ac->fs);
    qv_free(ac->links);
    qv_free(ac->ring);
    qv_free(ac);
}
