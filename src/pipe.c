/* The body of a streamed response (stream = 1): a bounded byte queue
 * between the transfer, which pushes what arrives, and the reader, which
 * pulls with qv_response_read. A reader that finds it empty receives the
 * body itself where it can, with no wake-up: QV_THREADS' worker lends it
 * the transfer (qv_pipe_lend), on QV_LOOP it leads the loop (drive_wait). When it is full the
 * transfer pauses (CURL_WRITEFUNC_PAUSE: libcurl stops reading the connection); the reader that
 * makes room again pokes the transfer's thread, which resumes it. So a slow reader holds at most
 * QV_PIPE_CAP bytes here, plus what libcurl keeps of the one read it could not hand over (up to 100
 * KiB). The consumer is woken once a batch (QV_PIPE_WAKE) is in, or at the end of the transfer
 * thread's pass (later.c) for what is less: not once for every chunk. */
#include "internal.h"

#include <stddef.h>
#include <string.h>
#include <unistd.h>

/* Who has a QV_THREADS transfer whose thread lends it (qv_pipe_lend), and
 * where its reader is. */
typedef enum lend_state {
    LEND_NONE,   /* the transfer's thread: no reader waits for it */
    LEND_WANTED, /* the transfer's thread, poked: the reader waits to be lent it */
    LEND_LENT,   /* the reader: pass(pass_arg) runs it, in qv_pipe_read */
    LEND_INSIDE, /* ... and the reader is running it now */
    LEND_PARKED, /* ... and the lender sleeps until that turn ends */
} lend_state;

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
    int fd;         /* a descriptor of its own the pump writes (qv_pipe_give_fd), or -1 */
    qv_later later; /* bytes came that the consumer was not woken for */
    /* A reader that drives the producer's executor while it waits (QV_LOOP's
     * leader/follower): woken through its waiter instead of cv. */
    struct reader_wait *driver;
    /* A transfer's thread that lends it to a reader that waits (QV_THREADS:
     * qv_pipe_lend), so that the body is received on the reader's thread. */
    pthread_cond_t lcv; /* the lender waits on it while its transfer is lent */
    int lender;         /* the producer's thread lends (it came to qv_pipe_lend) */
    lend_state lend;
    unsigned long turns; /* the reader's turns at it, for the lender's looks */
    double left_ms;      /* when the reader last came out */
    int (*pass)(void *arg, long wait_ms);
    void *pass_arg;
    /* A pipe lent a process worker's body ring (qv_pipe_new_ring): the
     * reader copies straight out of the parent's mapping of it (src.h
     * non-NULL) from src_tail on and gives the room back itself, until the
     * dispatcher takes the ring back (qv_pipe_ring_detach); buf is empty
     * until then (and holds what the reader had not taken after). src_bad:
     * the worker wrote a head it could not have (nothing more is read from
     * the ring). */
    qv_ring src;
    uint64_t src_tail;
    int src_bad;
};

/* While its transfer is lent, the lender looks this often, and takes it back
 * once the reader has been out of qv_pipe_read for a quarter of that: a
 * reader that reads on keeps it, one that went to do other work is taken
 * over within about LEND_LOOK_MS (as QV_LOOP's I/O thread takes over). */
#define LEND_LOOK_MS 2
/* Looks at one unbroken turn of the reader before the lender sleeps until
 * the turn ends. */
#define LEND_PARK_LOOKS 4

/* Under p->mu: the reader has the transfer (it receives the body itself). */
static int lent(const qv_pipe *p)
{
    return p->lend >= LEND_LENT;
}

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
    if (qv_cond_init(&p->lcv)) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        goto fail;
    }
    p->cap = QV_PIPE_CAP;
    p->fd = -1;
    p->later.run = pay;
    atomic_init(&p->refs, 2);
    p->producer = producer;
    return p;
fail:
    qv_free(p->buf);
    qv_free(p);
    return NULL;
}

qv_pipe *qv_pipe_new_ring(qv_future *producer, const qv_ring *ring, uint64_t tail)
{
    qv_pipe *p = qv_pipe_new(producer);
    if (p) {
        p->src = *ring;
        p->src_tail = tail;
    }
    return p;
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

void qv_pipe_give_fd(qv_pipe *p, int fd)
{
    p->fd = fd;
}

int qv_pipe_fd(const qv_pipe *p)
{
    return p->fd;
}

void qv_pipe_close_fd(qv_pipe *p)
{
    if (p->fd >= 0) close(p->fd);
    p->fd = -1;
}

void qv_pipe_unref(qv_pipe *p)
{
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1) return;
    qv_pipe_close_fd(p);
    pthread_cond_destroy(&p->lcv);
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
    if (!lent(p)) poke(p); /* (lent: the reader resumes it, or its lender on taking it back) */
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

/* Under p->mu: a reader asleep on the lent ring looks again. */
static void kick(qv_pipe *p)
{
    if (p->src.h) qv_ring_stream_kick(&p->src);
}

/* Under p->mu: the consumer takes what is there. */
static void wake(qv_pipe *p)
{
    pthread_cond_broadcast(&p->cv);
    kick(p);
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

/* Under p->mu: n more bytes in, the ring grown if they do not fit: 0, or
 * -1 out of memory. */
static int append(qv_pipe *p, const char *data, size_t n)
{
    if (n > p->cap - p->len && grow(p, p->len + n)) return -1;
    size_t at = (p->start + p->len) % p->cap, first = p->cap - at < n ? p->cap - at : n;
    memcpy(p->buf + at, data, first);
    memcpy(p->buf, data + first, n - first);
    p->len += n;
    p->total += (long long)n;
    return 0;
}

int qv_pipe_push(qv_pipe *p, const char *data, size_t n)
{
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    if (p->closed) {
        rc = -1;
    } else if (n > p->cap - p->len && p->len > 0) {
        p->paused = 1; /* libcurl keeps the chunk and stops reading */
        p->poked = 0;
        rc = 1;
    } else if (append(p, data, n)) { /* (larger than the room, empty: a larger ring) */
        rc = -2;
    } else if (p->len >= QV_PIPE_WAKE) {
        wake(p);
    } else if (!lent(p) && !p->later.queued) { /* (lent: the reader pushes) */
        atomic_fetch_add(&p->refs, 1);         /* the list's, until pay */
        qv_later_add(&p->later);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
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
    kick(p);
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

int qv_pipe_lend(qv_pipe *p, int (*pass)(void *arg, long wait_ms), void *arg)
{
    pthread_mutex_lock(&p->mu);
    p->lender = 1;
    int wanted = p->lend == LEND_WANTED;
    p->lend = LEND_NONE; /* (bytes came since: the reader asks again once they are read) */
    if (!wanted || p->closed || p->len) {
        pthread_mutex_unlock(&p->mu);
        return 0;
    }
    p->lend = LEND_LENT;
    p->pass = pass;
    p->pass_arg = arg;
    p->left_ms = qv_now_ms(); /* the reader has yet to wake */
    pthread_cond_broadcast(&p->cv);
    unsigned long seen = p->turns;
    for (int unbroken = 0; lent(p);) {
        if (p->lend == LEND_LENT && (p->closed || atomic_load(&p->producer->cancel_requested) ||
                                     qv_now_ms() - p->left_ms >= LEND_LOOK_MS / 4.0))
            break;
        /* One turn over several looks (a trickle): sleep until it ends. */
        unbroken = p->lend == LEND_INSIDE && p->turns == seen ? unbroken + 1 : 0;
        seen = p->turns;
        if (unbroken > LEND_PARK_LOOKS) {
            p->lend = LEND_PARKED;
            while (p->lend == LEND_PARKED) qv_cond_wait(&p->lcv, &p->mu, NULL);
            unbroken = 0;
            continue;
        }
        struct timespec dl;
        qv_deadline(&dl, LEND_LOOK_MS);
        qv_cond_wait(&p->lcv, &p->mu, &dl);
    }
    p->lend = LEND_NONE;
    p->pass = NULL;
    pthread_mutex_unlock(&p->mu);
    return 1;
}

/* Under p->mu, the ring empty: the reader runs a transfer lent to it until
 * bytes come, the transfer wants its own thread back (pass returned 0: it
 * ended, was cancelled, or its read timeout is due) or the deadline. */
static void run_lent(qv_pipe *p, const struct timespec *dl)
{
    p->lend = LEND_INSIDE;
    p->turns++;
    int again = 1;
    /* The transfer's callbacks run here as on its worker: freeing the pool
     * from one is the misuse it is there. */
    qv_executor *was = qv_own_executor;
    qv_own_executor = p->producer ? p->producer->ex : NULL;
    for (int first = 1; again && !p->len && !p->finished && !p->closed; first = 0) {
        /* The first pass takes what is there; the next ones wait for more. */
        long wait = first ? -1 : dl ? qv_ms_left(dl) : 1000;
        if (wait == 0) break;
        pthread_mutex_unlock(&p->mu);
        again = p->pass(p->pass_arg, wait);
        pthread_mutex_lock(&p->mu);
    }
    qv_own_executor = was;
    int parked = p->lend == LEND_PARKED;
    p->lend = again ? LEND_LENT : LEND_NONE;
    p->left_ms = qv_now_ms();
    if (!again || parked) pthread_cond_signal(&p->lcv);
}

/* Under p->mu, the ring empty: 1 if the reader ran the transfer lent to it
 * (or asked for it: it waits on cv to be given it), 0 if it is not lent. */
static int lent_wait(qv_pipe *p, const struct timespec *dl)
{
    if (lent(p)) {
        run_lent(p, dl);
        return 1;
    }
    if (p->lender && p->lend == LEND_NONE && p->producer) {
        p->lend = LEND_WANTED;
        poke(p); /* the lender's poll ends, and it lends */
    }
    return 0;
}

/* Under p->mu: what the lent ring holds for the reader; 0 also once the
 * worker wrote a head it could not have (then nothing more is read from
 * it: the dispatcher, poked, stops the worker, whose death ends the body). */
static size_t ring_avail(qv_pipe *p)
{
    if (!p->src.h || p->src_bad) return 0;
    long in = qv_ring_avail(&p->src, p->src_tail);
    if (in >= 0) return (size_t)in;
    p->src_bad = 1;
    poke(p);
    return 0;
}

/* Under p->mu: up to cap of the in bytes the lent ring holds, copied out
 * of the mapping; their room goes back to the worker, woken from here if
 * it waits for room once half the ring is free. */
static size_t ring_take(qv_pipe *p, void *out, size_t cap, size_t in)
{
    size_t take = cap < in ? cap : in;
    qv_ring_copy_out(&p->src, p->src_tail, out, take);
    p->src_tail += take;
    p->total += (long long)take;
    qv_ring_taken(&p->src, p->src_tail, in - take);
    return take;
}

int qv_pipe_read(qv_pipe *p, void *out, size_t cap, size_t *n, long timeout_ms, const char **msg)
{
    struct timespec dl;
    if (timeout_ms >= 0) qv_deadline(&dl, timeout_ms);
    *n = 0;
    pthread_mutex_lock(&p->mu);
    int timed_out = 0;
    size_t in = 0;
    while (!p->len && !(in = ring_avail(p)) && !p->finished && !p->closed && !timed_out) {
        if (p->src.h && !p->src_bad) {
            /* The worker wakes this thread once bytes come; the
             * dispatcher once it takes the ring back (a copy: src goes
             * then). */
            qv_ring ring = p->src;
            unsigned v = qv_ring_stream_wait(&ring, p->src_tail);
            if (!v) continue; /* bytes came meanwhile */
            pthread_mutex_unlock(&p->mu);
            timed_out = qv_ring_stream_sleep(&ring, v, timeout_ms >= 0 ? &dl : NULL) != 0;
            pthread_mutex_lock(&p->mu);
        } else if (drive_wait(p, timeout_ms >= 0 ? &dl : NULL) ||
                   lent_wait(p, timeout_ms >= 0 ? &dl : NULL))
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
    } else if (in) {
        *n = ring_take(p, out, cap, in);
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

int qv_pipe_ring_state(qv_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    int st = p->closed ? QV_PIPE_CLOSED : 0;
    if (p->src.h && !p->src_bad && qv_ring_avail(&p->src, p->src_tail) < 0) p->src_bad = 1;
    if (p->src_bad) st |= QV_PIPE_BAD;
    pthread_mutex_unlock(&p->mu);
    return st;
}

int qv_pipe_ring_detach(qv_pipe *p, uint64_t *tail)
{
    pthread_mutex_lock(&p->mu);
    long in = p->src_bad ? -1 : qv_ring_avail(&p->src, p->src_tail);
    int rc = in < 0 ? QV_EPROTOCOL : QV_OK;
    size_t n = in > 0 ? (size_t)in : 0;
    /* The rest, for the reader, out of the ring, which the next request's
     * bytes will take. While the ring was lent the pipe's own buffer stayed
     * empty (the reader copies out of the ring), so it goes at its start. */
    if (n && !p->closed) {
        if (n > p->cap && grow(p, n)) {
            rc = QV_ENOMEM;
        } else {
            qv_ring_copy_out(&p->src, p->src_tail, p->buf, n);
            p->start = 0;
            p->len = n;
            p->total += (long long)n;
        }
    }
    *tail = p->src_tail + n; /* (what was not copied is dropped) */
    kick(p);
    p->src.h = NULL;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

long long qv_pipe_total(qv_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    long long n = p->total + (long long)ring_avail(p);
    pthread_mutex_unlock(&p->mu);
    return n;
}
