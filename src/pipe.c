/* The body of a streamed response (stream = 1): a bounded byte queue
 * between the transfer, which pushes what arrives, and the reader, which
 * pulls with qv_response_read. When it is full the transfer pauses
 * (CURL_WRITEFUNC_PAUSE: libcurl stops reading the connection); the reader
 * that makes room again pokes the transfer's thread, which resumes it. So a
 * slow reader holds at most QV_PIPE_CAP bytes here, plus what libcurl keeps
 * of the one read it could not hand over (up to 100 KiB). The consumer is woken once a
 * batch (QV_PIPE_WAKE) is in, or at the end of the transfer thread's pass
 * (later.c) for what is less: not once for every chunk. */
#include "internal.h"

#include <stddef.h>
#include <string.h>

struct qv_pipe {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int refs; /* the transfer's, the response's */
    char *buf;       /* a ring of cap bytes */
    size_t cap, start, len;
    int finished; /* the transfer ended: err (QV_OK at the end of the body) */
    int err;
    char *msg;
    int closed;          /* the reader let go: the transfer stops */
    int paused;          /* the transfer waits for room */
    int poked;           /* ... and was told that there is some */
    long long total;     /* bytes pushed */
    qv_future *producer; /* poked for room or a close; NULL once finished */
    /* A pumped pipe (qv_pipe_new_pump): ready(ready_arg) asks for a pump
     * run when bytes or the end came and none is asked for (scheduled). */
    void (*ready)(void *arg);
    void *ready_arg;
    int scheduled;
    qv_later later; /* bytes came that the consumer was not woken for */
    /* A reader that drives the producer's executor while it waits (QV_LOOP's
     * leader/follower): woken through its waiter instead of cv. */
    struct reader_wait *driver;
};

/* The wait of a reader that drives: ready once the consumer would be woken. */
typedef struct reader_wait {
    qv_waiter w;
    int ready; /* under w.mu */
} reader_wait;

static void pay(qv_later *l);

qv_pipe *qv_pipe_new(qv_future *producer)
{
    qv_pipe *p = qv_calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->buf = qv_malloc(QV_PIPE_CAP);
    if (!p->buf || pthread_mutex_init(&p->mu, NULL)) goto fail;
    if (qv_cond_init(&p->cv)) {
        pthread_mutex_destroy(&p->mu);
        goto fail;
    }
    p->cap = QV_PIPE_CAP;
    p->later.run = pay;
    atomic_init(&p->refs, 2);
    p->producer = producer;
    return p;
fail:
    qv_free(p->buf);
    qv_free(p);
    return NULL;
}

qv_pipe *qv_pipe_new_pump(qv_future *producer, void (*ready)(void *arg), void *arg)
{
    qv_pipe *p = qv_pipe_new(producer);
    if (p) {
        p->ready = ready;
        p->ready_arg = arg;
    }
    return p;
}

/* Under p->mu: asks for a pump run unless one is asked for already. */
static void schedule(qv_pipe *p)
{
    if (!p->ready || p->scheduled) return;
    p->scheduled = 1;
    p->ready(p->ready_arg);
}

void qv_pipe_unref(qv_pipe *p)
{
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1) return;
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    qv_free(p->buf);
    qv_free(p->msg);
    qv_free(p);
}

/* Under p->mu: tells the transfer's thread to look at the pipe again. */
static void poke(qv_pipe *p)
{
    if (p->producer) qv_future_poke(p->producer);
}

/* Under p->mu: a paused transfer is told once that it may go on. */
static void poke_if_room(qv_pipe *p)
{
    if (!p->paused || p->poked || p->cap - p->len < p->cap / 2) return;
    p->poked = 1;
    poke(p);
}

/* Under p->mu: a reader that drives stops driving and reads (its waiter's
 * lock is taken after the pipe's). */
static void wake_driver(qv_pipe *p)
{
    reader_wait *rw = p->driver;
    if (!rw) return;
    pthread_mutex_lock(&rw->w.mu);
    if (!rw->ready) {
        rw->ready = 1;
        qv_waiter_kick(&rw->w);
    }
    pthread_mutex_unlock(&rw->w.mu);
}

/* Under p->mu: the consumer takes what is there. */
static void wake(qv_pipe *p)
{
    pthread_cond_broadcast(&p->cv);
    wake_driver(p);
    schedule(p);
}

/* The end of the producer's pass: the consumer takes what it was not woken
 * for. */
static void pay(qv_later *l)
{
    qv_pipe *p = (qv_pipe *)(void *)((char *)l - offsetof(qv_pipe, later));
    pthread_mutex_lock(&p->mu);
    if (p->len) wake(p);
    pthread_mutex_unlock(&p->mu);
    qv_pipe_unref(p);
}

/* Under p->mu: a ring of at least want bytes, its content kept in order. */
static int grow(qv_pipe *p, size_t want)
{
    char *b = qv_malloc(want);
    if (!b) return -1;
    size_t first = p->cap - p->start < p->len ? p->cap - p->start : p->len;
    memcpy(b, p->buf + p->start, first);
    memcpy(b + first, p->buf, p->len - first);
    qv_free(p->buf);
    p->buf = b;
    p->cap = want;
    p->start = 0;
    return 0;
}

static int push(qv_pipe *p, const char *data, size_t n, int any)
{
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    if (p->closed) {
        rc = -1;
    } else if (n > p->cap - p->len && p->len > 0 && !any) {
        p->paused = 1; /* libcurl keeps the chunk and stops reading */
        p->poked = 0;
        rc = 1;
    } else {
        /* Larger than the room (empty, or taking any): a larger ring. */
        if (n > p->cap - p->len && grow(p, p->len + n)) {
            pthread_mutex_unlock(&p->mu);
            return -2;
        }
        size_t at = (p->start + p->len) % p->cap, first = p->cap - at < n ? p->cap - at : n;
        memcpy(p->buf + at, data, first);
        memcpy(p->buf, data + first, n - first);
        p->len += n;
        p->total += (long long)n;
        if (p->len >= QV_PIPE_WAKE) {
            wake(p);
        } else if (!p->later.queued) {
            atomic_fetch_add(&p->refs, 1); /* the list's, until pay */
            qv_later_add(&p->later);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int qv_pipe_push(qv_pipe *p, const char *data, size_t n)
{
    return push(p, data, n, 0);
}

int qv_pipe_push_any(qv_pipe *p, const char *data, size_t n)
{
    return push(p, data, n, 1);
}

int qv_pipe_drained(qv_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    /* (A pump run lowers len only once its call returned.) */
    int drained = !p->closed && !p->len;
    pthread_mutex_unlock(&p->mu);
    return drained;
}

int qv_pipe_state(qv_pipe *p, int *resume)
{
    pthread_mutex_lock(&p->mu);
    int closed = p->closed;
    /* Half the ring free: worth resuming (not a byte at a time). */
    *resume = p->paused && !closed && p->cap - p->len >= p->cap / 2;
    if (*resume) p->paused = 0;
    pthread_mutex_unlock(&p->mu);
    return closed;
}

void qv_pipe_finish(qv_pipe *p, int err, const char *msg)
{
    pthread_mutex_lock(&p->mu);
    p->finished = 1;
    p->err = err;
    p->msg = msg ? qv_strdup(msg) : NULL;
    p->producer = NULL;
    wake(p);
    pthread_mutex_unlock(&p->mu);
}

int qv_pipe_pump(qv_pipe *p, int (*fn)(void *arg, const char *data, size_t n), void *arg)
{
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->closed) p->len = 0; /* stopped: what is left goes */
        if (!p->len) {
            int done = p->finished;
            if (!done) p->scheduled = 0; /* the next bytes ask again */
            pthread_mutex_unlock(&p->mu);
            return done ? 1 : 0;
        }
        /* The bytes before start + len are not touched by the producer
         * (it only appends, or grows an empty ring): read them unlocked. */
        const char *at = p->buf + p->start;
        size_t n = p->cap - p->start < p->len ? p->cap - p->start : p->len;
        pthread_mutex_unlock(&p->mu);
        int stop = fn(arg, at, n);
        pthread_mutex_lock(&p->mu);
        p->start = (p->start + n) % p->cap;
        p->len -= n;
        if (stop) {
            p->closed = 1;
            p->len = 0;
            int done = p->finished;
            /* Not over yet: the transfer's end asks for the last run. */
            if (!done) p->scheduled = 0;
            poke(p);
            pthread_mutex_unlock(&p->mu);
            return done ? 1 : -1;
        }
        poke_if_room(p);
    }
}

void qv_pipe_close(qv_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    p->closed = 1;
    wake_driver(p);
    poke(p);
    pthread_mutex_unlock(&p->mu);
}

static int driver_ready(qv_waiter *w)
{
    return ((reader_wait *)w)->ready;
}

/* Under p->mu, the ring empty: on an executor that a waiting thread may
 * drive (QV_LOOP), the reader drives it until the consumer would be woken,
 * so the body is received on the thread that reads it, with no wake-up in
 * between. 1 if it waited (woken or timed out: the caller looks again), 0
 * if it may not drive (a thread of the executor's own, a producer done). */
static int drive_wait(qv_pipe *p, const struct timespec *dl)
{
    qv_executor *ex = p->producer ? p->producer->ex : NULL;
    if (!ex || !ex->vt->drive || qv_own_executor == ex) return 0;
    reader_wait rw = {.ready = 0};
    if (qv_waiter_init(&rw.w, NULL, driver_ready)) return 0;
    rw.w.ex = ex; /* held by the producer until it finishes: then by w */
    qv_executor_ref(ex);
    p->driver = &rw;
    pthread_mutex_unlock(&p->mu);
    qv_waiter_block(&rw.w, dl);
    pthread_mutex_lock(&p->mu);
    p->driver = NULL;
    qv_waiter_destroy(&rw.w);
    return 1;
}

int qv_pipe_read(qv_pipe *p, void *out, size_t cap, size_t *n, long timeout_ms, const char **msg)
{
    struct timespec dl;
    if (timeout_ms >= 0) qv_deadline(&dl, timeout_ms);
    *n = 0;
    pthread_mutex_lock(&p->mu);
    int timed_out = 0;
    while (!p->len && !p->finished && !p->closed && !timed_out) {
        if (drive_wait(p, timeout_ms >= 0 ? &dl : NULL))
            timed_out = timeout_ms >= 0 && qv_ms_left(&dl) == 0;
        else
            timed_out = qv_cond_wait(&p->cv, &p->mu, timeout_ms >= 0 ? &dl : NULL) != 0;
    }
    int rc = QV_OK;
    if (p->len) {
        size_t take = cap < p->len ? cap : p->len;
        size_t first = p->cap - p->start < take ? p->cap - p->start : take;
        memcpy(out, p->buf + p->start, first);
        memcpy((char *)out + first, p->buf, take - first);
        p->start = (p->start + take) % p->cap;
        p->len -= take;
        *n = take;
        poke_if_room(p);
    } else if (p->closed) {
        rc = QV_ESHUTDOWN;
    } else if (p->finished) {
        rc = p->err;
        *msg = p->msg;
    } else {
        rc = QV_EWAIT_TIMEOUT;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

long long qv_pipe_total(qv_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    long long n = p->total;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int qv_pipe_hold_below(qv_pipe *p, size_t low)
{
    pthread_mutex_lock(&p->mu);
    int hold = !p->closed && p->cap - p->len < low;
    if (hold && !p->paused) {
        p->paused = 1;
        p->poked = 0;
    }
    pthread_mutex_unlock(&p->mu);
    return hold;
}
