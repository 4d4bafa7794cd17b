/* The thread-pool executor: up to max_workers threads, started as work
 * arrives. Each worker owns one easy handle and a private curl_multi for its
 * whole life, so connections are reused across requests, and a cancel can
 * wake the worker out of its poll at once (curl_multi_wakeup).
 *
 * A worker that ends an attempt a thread of the caller's slept on in
 * qv_future_wait lends its handle to the threads that wait for results
 * while it sleeps (see lend): the waiting thread then runs queued futures
 * on it, the one it waits for or the queue's next, instead of sleeping
 * until a worker wakes it for each result. */
#include "internal.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* After how long unused a lent handle is taken back, and how often its
 * lender looks: every LEND_QUIET_LOOK_MS, since the other workers take it
 * back for it at their pops (reclaim); when it is the pool's only worker,
 * where no other pop comes, first after LEND_LOOK_MS, then at twice the
 * last interval, up to LEND_QUIET_LOOK_MS, each time it finds the handle in
 * use. So transfers go on within about LEND_LOOK_MS of the waiting thread
 * going to do other work while the other workers take work, or right after
 * the lend, and within LEND_QUIET_LOOK_MS at most. Looking every 2 ms woke
 * the lender 0.07-0.14 times a request in the window idiom at c = 8-64, and
 * ~0.1 at c = 1, each time to find its handle in use (bench/NOTES.md,
 * 2026-12-07 10:11 and 16:20). */
#define LEND_LOOK_MS       2
#define LEND_QUIET_LOOK_MS 10
#define LEND_AWAY_MS       0.5
/* A thread running another future on the lent handle while it waits is not
 * woken for its own future's completion, which it sees at its transfer's
 * next event or within qv_until_look_ms (1 ms, transfer.c); but once in
 * so many completions on the workers, when a worker's pop empties the
 * queue once its own is done, and when a worker runs out of work: so it
 * collects results in batches, one wake-up for several (a wake-up for each
 * cost more CPU than sleeping did, bench/NOTES.md, 2026-12-07 00:50). */
#define WAKE_EVERY 8

typedef struct tpool tpool;

/* A worker's transfer handle and connection cache. */
typedef struct tslot {
    qv_slot slot;
    CURLM *multi;
    tpool *tp;
    qv_future *f; /* an attempt a waiting thread left in it, in flight */
    /* A future a waiting thread completed on it whose done callbacks were
     * added since that thread took it: the worker runs them (with the
     * queue's reference) once it has its handle back. */
    qv_future *late;
    int waited;   /* a thread slept in qv_future_wait on the attempt that ended last */
    int deciding; /* counted in tpool.deciding */
} tslot;

struct tpool {
    qv_executor base;
    pthread_t *threads;
    int nthreads;
    atomic_int idle; /* workers waiting for work (changed under ex->mu) */
    int signalled;   /* of those, already woken for a queued future */
    /* The handle lent to waiting threads (written under ex->mu; read
     * without it as a hint), whether one of them runs a transfer on it
     * (inside) and when one last did (used_ms); the lender sleeps on
     * lend_cv. */
    _Atomic(tslot *) lent;
    int inside;
    double used_ms;
    pthread_cond_t lend_cv;
    /* Workers that completed a future a thread slept on and are yet to
     * decide whether to lend (should_lend, at their next look at the queue):
     * a waiting thread waits for that on lend_cv rather than sleep (see
     * note_waited). Changed under ex->mu; read without it as a hint. */
    atomic_int deciding;
    /* Threads asleep on lend_cv for a decision (wait_decision) and the
     * future they wait for (&tp->for_decision while they wait for more
     * than one), changed under ex->mu, read without it by tp_ended: that
     * future's end wakes them, and counts in `endings` (under ex->mu). */
    atomic_int for_decision;
    _Atomic(void *) decision_for;
    unsigned endings;
    /* The thread inside waits for a future that runs elsewhere (waiting;
     * awaited, under ex->mu, cleared before that wait returns): the
     * workers count their completions meanwhile (since) and wake it
     * through wake_fd, which its poll watches. */
    int wake_fd;
    atomic_int waiting;
    atomic_uint since;
    qv_future *awaited;
};

/* lend_cv, in the executor's `built`. */
enum { BUILT_LEND_CV = QV_BUILT_KIND };

/* Wakes the thread inside (any lock or none held). */
static void wake_inside(tpool *tp)
{
    if (atomic_load(&tp->waiting)) eventfd_write(tp->wake_fd, 1);
}

static void drain_wake(qv_slot *slot)
{
    eventfd_t v;
    eventfd_read(((tslot *)slot)->tp->wake_fd, &v);
}

void (*qv_threads_probe)(qv_future *f, int start);

/* Delivers f's outcome (collected; a retry first, if `retry`) and lets the
 * queue's reference go. A thread waiting for a result runs (on a lent
 * handle) only futures that call no code of the caller's; a done callback
 * added while it ran one runs on the worker instead (late). */
static void deliver(tslot *s, qv_future *f, int retry)
{
    if (qv_threads_probe) qv_threads_probe(f, 0);
    if (!(retry && qv_retry_maybe(f)) && qv_transfer_settle(f)) {
        if (atomic_load(&s->tp->lent) == s) { /* (a waiting thread's run) */
            s->late = f;
            return;
        }
        qv_future_finish(f);
    }
    qv_future_drop(f); /* the queue's reference */
}

/* Before f's completion wakes a thread that slept on it: whether one did
 * (s->waited), for should_lend. If so, on the worker's own handle, and
 * queued work would be lent (looked at now, under ex->mu: else the thread
 * would wait for a decision not to lend, then sleep), the pool counts the
 * worker as deciding until its next look at the queue. The thread, back
 * to wait for its next result before that look (f's done callbacks run
 * first), then waits for the lend instead of sleeping on its future: else
 * no one ran the lent handle until its lender took it back, 2-8 ms later
 * under load (9 of 10 rounds of test_waitrun's first test at load 27).
 * Its next result is queued behind the look or runs elsewhere, whose end
 * wakes it there (tp_ended). No lock held. */
static void note_waited(tslot *s, qv_future *f)
{
    tpool *tp = s->tp;
    s->waited = qv_future_slept_on(f);
    if (!s->waited || s->deciding || atomic_load(&tp->lent) == s) return;
    pthread_mutex_lock(&tp->base.mu);
    if (!atomic_load(&tp->lent) && qv_executor_lendable_locked(&tp->base)) {
        s->deciding = 1;
        atomic_fetch_add(&tp->deciding, 1);
    }
    pthread_mutex_unlock(&tp->base.mu);
}

/* Under ex->mu, at each of the worker's looks at the queue: its decision
 * is made in this look (the lend, if any, before ex->mu is let go). */
static void decided(tpool *tp, tslot *own)
{
    if (!own->deciding) return;
    own->deciding = 0;
    if (atomic_fetch_sub(&tp->deciding, 1) == 1) pthread_cond_broadcast(&tp->lend_cv);
}

/* Drives the attempt in s (s->f) until it ends: then finishes it (1); or
 * until deadline (NULL: none) passes or until (NULL: none) is done: then it
 * stays in s, in flight, for whoever drives s next (0). */
static int drive(tslot *s, const struct timespec *deadline, qv_future *until)
{
    tpool *tp = s->tp;
    CURLcode cc;
    if (!qv_transfer_drive(&s->slot, s->multi, deadline, until, until ? tp->wake_fd : -1,
                           until ? drain_wake : NULL, &cc))
        return 0;
    qv_future *f = s->f;
    s->f = NULL;
    note_waited(s, f);
    qv_transfer_collect(&s->slot, cc);
    deliver(s, f, 1);
    if (!until && atomic_load(&tp->waiting) &&
        (atomic_fetch_add(&tp->since, 1) + 1) % WAKE_EVERY == 0)
        wake_inside(tp);
    return 1;
}

/* A worker's multi handle, or NULL (qv_last_error says why, on this
 * thread): qv_transfer_multi's, for a cancel of its transfer relies on the
 * wake-up, which would otherwise come at the poll's timeout, up to a
 * second. */
static CURLM *worker_multi(const qv_executor *ex)
{
    CURLM *m = qv_transfer_multi("a worker's");
    if (m) curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)ex->o.max_connections);
    return m;
}

/* Runs an attempt of f (popped) on s, as drive. */
static int attempt(qv_executor *ex, tslot *s, qv_future *f, const struct timespec *deadline,
                   qv_future *until)
{
    /* Made on first use, and again after one could not be made, so that
     * one failure does not break the worker for good. */
    if (!s->slot.easy) s->slot.easy = curl_easy_init();
    if (!s->multi) s->multi = worker_multi(ex);
    qv_holder running = qv_transfer_holder(s->multi);
    if (!qv_future_begin(f, &running)) {
        qv_future_drop(f); /* its cancel completed it */
        return 1;
    }
    if (qv_threads_probe) qv_threads_probe(f, 1);
    if (!s->slot.easy || !s->multi) {
        qv_future_end_transfer(f);
        f->out_err = QV_ENOMEM;
        f->out_msg = qv_future_message(
            f, QV_ENOMEM, "%s",
            s->multi ? "cannot make a worker's easy handle: out of memory" : qv_last_error());
        deliver(s, f, 0);
    } else if (qv_transfer_setup(&s->slot, f) == QV_OK) {
        if (curl_multi_add_handle(s->multi, s->slot.easy) == CURLM_OK) {
            s->f = f;
            return drive(s, deadline, until);
        }
        note_waited(s, f);
        qv_transfer_collect(&s->slot, CURLE_OUT_OF_MEMORY);
        deliver(s, f, 1);
    } else {
        deliver(s, f, 0);
    }
    return 1;
}

/* Under ex->mu, before a pop: lending pays when a thread slept in
 * qv_future_wait on the attempt this worker just ended (it waits for
 * results, and will run the queued work itself rather than sleep again)
 * and there is queued work it may run (qv_executor_pop_next_locked). */
static int should_lend(tpool *tp, tslot *own)
{
    qv_executor *ex = &tp->base;
    int waited = own->waited;
    own->waited = 0;
    return waited && !atomic_load(&tp->lent) && !ex->shutdown && qv_executor_lendable_locked(ex);
}

/* Gives the lent handle back to its worker (ex->mu held). (A broadcast:
 * threads waiting for a decision wait on lend_cv too.) */
static void give_back(tpool *tp)
{
    atomic_store(&tp->lent, NULL);
    pthread_cond_broadcast(&tp->lend_cv);
}

/* Under ex->mu, before a worker's pop: takes a handle lent by another worker
 * back for it once no waiting thread used it for LEND_AWAY_MS, so that its
 * lender need not wake to look while the waiting thread keeps using it. */
static void reclaim(tpool *tp)
{
    if (atomic_load(&tp->lent) && !tp->inside && qv_now_ms() - tp->used_ms >= LEND_AWAY_MS)
        give_back(tp);
}

/* Under ex->mu: lends own to the waiting threads and sleeps until one gives
 * it back (it cannot run what it waits for), another worker or its own look
 * finds it unused for LEND_AWAY_MS, or shutdown; then finishes the attempt
 * they left in it. */
static void lend(tpool *tp, tslot *own)
{
    qv_executor *ex = &tp->base;
    tp->used_ms = qv_now_ms();
    atomic_store(&tp->lent, own);
    pthread_cond_broadcast(&tp->lend_cv); /* threads waiting for the decision */
    int look_ms = tp->nthreads > 1 ? LEND_QUIET_LOOK_MS : LEND_LOOK_MS;
    while (atomic_load(&tp->lent) == own) {
        struct timespec dl;
        qv_deadline(&dl, look_ms);
        qv_cond_wait(&tp->lend_cv, &ex->mu, &dl);
        if (atomic_load(&tp->lent) != own) break;
        if (!tp->inside && (ex->shutdown || qv_now_ms() - tp->used_ms >= LEND_AWAY_MS))
            atomic_store(&tp->lent, NULL);
        else /* in use: the next look later */
            look_ms = 2 * look_ms < LEND_QUIET_LOOK_MS ? 2 * look_ms : LEND_QUIET_LOOK_MS;
    }
    if (own->late || own->f) {
        pthread_mutex_unlock(&ex->mu);
        qv_future *late = own->late;
        own->late = NULL;
        if (late) {
            qv_future_finish(late);
            qv_future_drop(late);
        }
        if (own->f) drive(own, NULL, NULL);
        pthread_mutex_lock(&ex->mu);
    }
}

static int undecided(tpool *tp)
{
    return !atomic_load(&tp->lent) && atomic_load(&tp->deciding);
}

/* Under ex->mu: waits while a worker is deciding whether to lend (see
 * note_waited) and nothing is lent, until f is done or the deadline passes.
 * A decision mostly comes within a few ms: for LEND_QUIET_LOOK_MS it looks
 * every LEND_LOOK_MS whether f is done or the deadline passed, as it did
 * all along. Then it sleeps until one of these: a decision, f's end
 * (tp_ended: the decider may run a long done callback of its future
 * first; looking every LEND_LOOK_MS, this thread woke ~400 times a second
 * meanwhile), the deadline. f's lock is never taken under ex->mu: it is let
 * go for each look, and an end during the last is seen in `endings`. */
static void wait_decision(tpool *tp, qv_future *f, const struct timespec *deadline)
{
    qv_executor *ex = &tp->base;
    double looks_end = qv_now_ms() + LEND_QUIET_LOOK_MS;
    while (undecided(tp) && qv_now_ms() < looks_end) {
        struct timespec dl;
        qv_deadline(&dl, LEND_LOOK_MS);
        if (deadline && qv_ms_left(deadline) < LEND_LOOK_MS) dl = *deadline;
        if (!qv_cond_wait(&tp->lend_cv, &ex->mu, &dl)) continue;
        pthread_mutex_unlock(&ex->mu);
        int over = qv_future_ended(f) || (deadline && qv_ms_left(deadline) == 0);
        pthread_mutex_lock(&ex->mu);
        if (over) return;
    }
    if (!undecided(tp)) return;
    void *was = atomic_load(&tp->decision_for);
    atomic_store(&tp->decision_for, !was || was == f ? (void *)f : &tp->for_decision);
    atomic_fetch_add(&tp->for_decision, 1);
    for (;;) {
        unsigned endings = tp->endings;
        pthread_mutex_unlock(&ex->mu);
        int over = qv_future_ended(f) || (deadline && qv_ms_left(deadline) == 0);
        pthread_mutex_lock(&ex->mu);
        if (over || !undecided(tp)) break;
        if (tp->endings == endings && qv_cond_wait(&tp->lend_cv, &ex->mu, deadline)) break;
        if (!undecided(tp)) break;
    }
    if (atomic_fetch_sub(&tp->for_decision, 1) == 1) atomic_store(&tp->decision_for, NULL);
}

/* A future of the pool ended (no lock held): the threads waiting for a
 * decision look whether it is theirs, if it may be (not at each of the
 * other workers' completions, to look and sleep again for nothing). */
static void tp_ended(qv_future *f)
{
    tpool *tp = (tpool *)f->ex;
    /* (Set before that thread looked at its future under the future's
     * lock: after f's end, which took that lock too, this sees them.) */
    void *is = atomic_load(&tp->decision_for);
    if (!atomic_load(&tp->for_decision) || (is != f && is != &tp->for_decision)) return;
    pthread_mutex_lock(&tp->base.mu);
    tp->endings++;
    pthread_cond_broadcast(&tp->lend_cv);
    pthread_mutex_unlock(&tp->base.mu);
}

static int tp_run_waited(qv_executor *ex, qv_future *f, const struct timespec *deadline)
{
    tpool *tp = (tpool *)ex;
    qv_future *g = NULL;
    tslot *s = atomic_load_explicit(&tp->lent, memory_order_relaxed);
    if (s || atomic_load(&tp->deciding)) {
        pthread_mutex_lock(&ex->mu);
        wait_decision(tp, f, deadline);
        if ((s = atomic_load(&tp->lent)) && !tp->inside) {
            /* The attempt left in the handle, or the queue's next. */
            g = s->f ? s->f : qv_executor_pop_next_locked(ex, f);
            if (g) {
                tp->inside = 1;
                tp->awaited = g == f ? NULL : f;
            } else {
                give_back(tp); /* nothing this thread may run */
            }
        }
        pthread_mutex_unlock(&ex->mu);
    }
    if (!g) return 0;
    /* Its callbacks run here as on a worker: a wait in one of them for the
     * pool's futures sleeps, and freeing the pool there is a misuse. */
    qv_executor *was = qv_own_executor;
    qv_own_executor = ex;
    /* Another future runs until f is done (f runs elsewhere, or is queued
     * behind it). */
    qv_future *until = g == f ? NULL : f;
    atomic_store(&tp->since, 0);
    atomic_store(&tp->waiting, until != NULL);
    if (g == s->f)
        drive(s, deadline, until);
    else
        attempt(ex, s, g, deadline, until);
    atomic_store(&tp->waiting, 0);
    qv_own_executor = was;
    pthread_mutex_lock(&ex->mu);
    tp->inside = 0;
    tp->awaited = NULL;
    tp->used_ms = qv_now_ms();
    /* Cut short by the deadline: its worker finishes it. (Left because f
     * is done, it waits for this thread's next wait, or for the lender.)
     * The done callbacks of one it completed: its worker runs them. */
    if (s->late || (s->f && deadline && qv_ms_left(deadline) == 0)) give_back(tp);
    pthread_mutex_unlock(&ex->mu);
    return 1;
}

static void *worker_main(void *arg)
{
    qv_executor *ex = arg;
    tpool *tp = (tpool *)ex;
    tslot own = {.tp = tp};
    qv_own_executor = ex;
    qv_mem_keep_begin();
    qv_sigpipe_block_thread();
    for (;;) {
        pthread_mutex_lock(&ex->mu);
        qv_future *f, *awaited = NULL;
        long wait_ms;
        for (;;) {
            decided(tp, &own); /* before any sleep below (a pause included) */
            if (qv_executor_hold_back(ex)) {
                /* Enough finished responses wait for their collector: let
                 * it have the core rather than finish more. */
                wake_inside(tp);
                pthread_cond_wait(&ex->resume, &ex->mu);
                atomic_fetch_sub(&ex->paused, 1);
                continue;
            }
            if (should_lend(tp, &own)) {
                lend(tp, &own);
                continue;
            }
            reclaim(tp);
            if ((f = qv_executor_pop_locked(ex, &wait_ms))) {
                /* The queue ran dry: if the waiting thread's result is
                 * in (looked at below), it collects and submits now,
                 * before the workers run out of work. (Woken while that
                 * result was still to come, it looked and slept again for
                 * nothing: at h2 c = 8 that cost more switches than it
                 * saved, bench/NOTES.md, 2026-12-07 13:11.) */
                if (tp->awaited && qv_executor_empty_locked(ex))
                    awaited = qv_future_hold(tp->awaited);
                break;
            }
            if (ex->shutdown && qv_executor_empty_locked(ex)) break;
            /* Nothing may start yet: sleep until a submit, a finished
             * request of a limited host, or the next retry or token. */
            struct timespec dl;
            if (wait_ms >= 0) qv_deadline(&dl, wait_ms);
            atomic_fetch_add(&tp->idle, 1);
            /* A submit that saw no idle worker pushed on the inbox without
             * a notify: counted idle first, this one looks once more (of
             * the two, one sees the other). */
            if (qv_executor_inbox_empty(ex)) {
                wake_inside(tp); /* it may have results to take, work to submit */
                qv_cond_wait(&ex->cv, &ex->mu, wait_ms >= 0 ? &dl : NULL);
                if (tp->signalled) tp->signalled--;
            }
            atomic_fetch_sub(&tp->idle, 1);
        }
        pthread_mutex_unlock(&ex->mu);
        /* Looked at with no lock held: a future's lock is never taken
         * under the executor's (a cancel holds it and wants ex->mu). */
        if (awaited) {
            if (qv_future_ended(awaited)) wake_inside(tp);
            qv_future_drop(awaited);
        }
        if (!f) break; /* shut down and drained */
        attempt(ex, &own, f, NULL, NULL);
    }
    qv_transfer_slot_free(&own.slot);
    if (own.multi) curl_multi_cleanup(own.multi);
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
    /* Made last: a pool without it is half-built and started no worker. */
    if (!tp->threads) return;
    pthread_mutex_lock(&ex->mu);
    pthread_cond_broadcast(&ex->cv);
    pthread_cond_broadcast(&tp->lend_cv); /* a lender takes its handle back */
    int n = tp->nthreads;
    pthread_mutex_unlock(&ex->mu);
    /* No thread starts after shutdown is set, so n is final. */
    for (int i = 0; i < n; i++) pthread_join(tp->threads[i], NULL);
    atomic_fetch_sub(&qv_io_threads, n);
}

static void tp_destroy(qv_executor *ex)
{
    tpool *tp = (tpool *)ex;
    qv_executor_unbuild_sync(ex, BUILT_LEND_CV, NULL, &tp->lend_cv);
    if (tp->wake_fd >= 0) close(tp->wake_fd);
    qv_free(tp->threads);
    qv_free(tp);
}

/* The runner's wait: a thread of the caller's about to sleep until f is
 * done runs f, or queued work, on a lent handle instead, again while it ran
 * something and f is not done. f->lock held, and let go meanwhile. */
static int tp_wait(qv_future *f, const struct timespec *deadline)
{
    qv_executor *ex = f->ex;
    tpool *tp = (tpool *)ex;
    /* Nothing lent nor about to be, nothing to run (a hint: tp_run_waited
     * looks again). */
    if (qv_own_executor == ex ||
        (!atomic_load_explicit(&tp->lent, memory_order_relaxed) && !atomic_load(&tp->deciding)))
        return 0;
    /* Running, f keeps ex alive: so does this reference until this thread
     * runs no more. */
    qv_executor_ref(ex);
    int ran;
    do {
        qv_lock_give(&f->lock);
        ran = tp_run_waited(ex, f, deadline);
        qv_lock_take(&f->lock);
    } while (ran && !qv_future_ended_locked(f) && (!deadline || qv_ms_left(deadline) > 0));
    qv_lock_give(&f->lock);
    qv_executor_unref(ex); /* the last may free ex: not under f->lock */
    qv_lock_take(&f->lock);
    return 0;
}

/* What its futures tell the pool: its bound on uncollected responses, and
 * a thread about to sleep for one. */
static const qv_runner tp_runner = {
    .look = qv_uncollected_look,
    .urge = qv_uncollected_urge,
    .finished = qv_uncollected_finished,
    .collected = qv_uncollected_collected,
    .wait = tp_wait,
    .ended = tp_ended,
};

static void tp_blank(qv_executor *ex)
{
    ((tpool *)ex)->wake_fd = -1;
}

static int tp_build(qv_executor *ex)
{
    tpool *tp = (tpool *)ex;
    if ((tp->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
        return qv_executor_short("the pool's eventfd", errno);
    if (qv_executor_build_sync(ex, BUILT_LEND_CV, NULL, &tp->lend_cv)) return QV_ENOMEM;
    qv_uncollected_setup(ex, ex->o.max_uncollected);
    /* A body block and a shell kept for every response the pool may hold at
     * once: its transfers' and the finished ones that wait for you (up to
     * max_uncollected + max_workers - 1). With one per transfer only, the
     * blocks of the responses you collect after a wait went back to the
     * kernel and the next ones were mapped and faulted in again
     * (bench/NOTES.md, 2026-12-06 21:50). */
    qv_bodies_keep_most(ex->bodies, 2 * (size_t)ex->o.max_workers + (size_t)ex->max_uncollected);
    tp->threads = qv_calloc((size_t)ex->o.max_workers, sizeof(*tp->threads));
    return tp->threads ? QV_OK : qv_executor_short("the pool's thread list", 0);
}

const qv_executor_vt qv_threads_vt = {
    .notify = tp_notify,
    .all_busy = tp_all_busy,
    .runner = &tp_runner,
    .size = sizeof(tpool),
    .blank = tp_blank,
    .build = tp_build,
    .shutdown = tp_shutdown,
    .destroy = tp_destroy,
};
