/* Completion queues: futures are queued as they complete, and an eventfd is
 * readable while any wait, so quiver plugs into a program's own poll, epoll
 * or libuv loop without a blocking wait. */
#include "internal.h"

#include <sys/eventfd.h>
#include <unistd.h>

struct qv_cq {
    pthread_mutex_t mu;
    atomic_int refs; /* the owner's, and one per future added and not yet done */
    int fd;
    qv_future **ring;
    size_t cap, head, len;
};

static void cq_unref(qv_cq *cq)
{
    if (atomic_fetch_sub(&cq->refs, 1) != 1) return;
    for (size_t i = 0; i < cq->len; i++) qv_future_drop(cq->ring[(cq->head + i) % cq->cap]);
    qv_free(cq->ring);
    close(cq->fd);
    pthread_mutex_destroy(&cq->mu);
    qv_free(cq);
}

int qv_cq_new(qv_cq **out)
{
    if (!out) return QV_EINVAL;
    *out = NULL;
    qv_cq *cq = qv_calloc(1, sizeof(*cq));
    if (!cq) return QV_ENOMEM;
    cq->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (cq->fd < 0 || pthread_mutex_init(&cq->mu, NULL)) {
        if (cq->fd >= 0) close(cq->fd);
        qv_free(cq);
        return QV_ENOMEM;
    }
    atomic_init(&cq->refs, 1);
    *out = cq;
    return QV_OK;
}

void qv_cq_free(qv_cq *cq)
{
    if (cq) cq_unref(cq);
}

int qv_cq_fd(qv_cq *cq)
{
    return cq ? cq->fd : -1;
}

/* Room for one more; the ring is sized up front by qv_cq_add, so a
 * completion never allocates and never drops a future. */
static int reserve(qv_cq *cq)
{
    size_t need = (size_t)atomic_load(&cq->refs); /* >= pending + 1 */
    if (cq->len + need <= cq->cap) return QV_OK;
    size_t cap = cq->cap ? cq->cap * 2 : 16;
    while (cap < cq->len + need) cap *= 2;
    qv_future **ring = qv_malloc(cap * sizeof(*ring));
    if (!ring) return QV_ENOMEM;
    for (size_t i = 0; i < cq->len; i++) ring[i] = cq->ring[(cq->head + i) % cq->cap];
    qv_free(cq->ring);
    cq->ring = ring;
    cq->cap = cap;
    cq->head = 0;
    return QV_OK;
}

static void on_done(qv_future *f, void *arg)
{
    qv_cq *cq = arg;
    pthread_mutex_lock(&cq->mu);
    cq->ring[(cq->head + cq->len) % cq->cap] = f; /* the reference add took */
    if (cq->len++ == 0) {
        uint64_t one = 1;
        ssize_t w = write(cq->fd, &one, sizeof(one));
        (void)w; /* cannot overflow: the count is read back to 0 when emptied */
    }
    pthread_mutex_unlock(&cq->mu);
    cq_unref(cq);
}

int qv_cq_add(qv_cq *cq, qv_future *f)
{
    if (!cq || !f) return QV_EINVAL;
    QV_CHECK_FUTURE(f);
    pthread_mutex_lock(&cq->mu);
    atomic_fetch_add(&cq->refs, 1);
    int rc = reserve(cq);
    pthread_mutex_unlock(&cq->mu);
    if (!rc) {
        qv_future_hold(f);
        rc = qv_future_add_done_callback(f, on_done, cq);
        if (rc) qv_future_drop(f);
    }
    if (rc) cq_unref(cq);
    return rc;
}

int qv_cq_pop(qv_cq *cq, qv_future **out)
{
    if (!out) return QV_EINVAL;
    *out = NULL;
    if (!cq) return QV_EINVAL;
    pthread_mutex_lock(&cq->mu);
    int rc = QV_EAGAIN;
    if (cq->len) {
        *out = cq->ring[cq->head];
        qv_future_hand_over(*out); /* the queue's reference is the caller's now */
        cq->head = (cq->head + 1) % cq->cap;
        if (--cq->len == 0) {
            uint64_t n;
            ssize_t r = read(cq->fd, &n, sizeof(n)); /* empty: no longer readable */
            (void)r;
        }
        rc = QV_OK;
    }
    pthread_mutex_unlock(&cq->mu);
    return rc;
}
