/* The executor interface (a small vtable) and what every kind shares: the
 * queue of pending futures, reference counting, stats and shutdown. */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>

atomic_int qv_io_threads;

static int remove_locked(qv_executor *ex, qv_future *f);
static void take_inbox(qv_executor *ex);

/* A cancel of a future the queue holds: one still in it leaves it, with the
 * queue's reference, and the canceller completes it at once. One a worker
 * has taken but not begun is marked for the canceller to wait the moment
 * until the worker's qv_future_begin fails, or the failure of a drained
 * one completes it (see qv_future_cancel). Under
 * the future's lock, which is taken before the executor's. */
static int queue_cancel(qv_future *f, void *arg, int cancel)
{
    qv_executor *ex = arg;
    if (!cancel) return 0;
    pthread_mutex_lock(&ex->mu);
    take_inbox(ex);
    int removed = remove_locked(ex, f);
    int taken = !removed && f->popped;
    if (taken) f->popped = QV_POPPED_CANCEL_WAITS;
    pthread_mutex_unlock(&ex->mu);
    if (removed) qv_future_drop(f); /* the queue's; the canceller holds one */
    return taken ? QV_LET_GO_AT_BEGIN : removed;
}

int qv_executor_short(const char *what, int err)
{
    qv_set_last_error("cannot make %s: %s", what,
                      err && err != ENOMEM ? strerror(err) : "out of memory");
    return QV_ENOMEM;
}

int qv_executor_build_sync(qv_executor *ex, unsigned bit, pthread_mutex_t *mu, pthread_cond_t *cv)
{
    /* (qv_cond_init tells no errno: pthread_cond_init's are ENOMEM, EAGAIN.) */
    int err = mu ? pthread_mutex_init(mu, NULL) : qv_cond_init(cv) ? ENOMEM : 0;
    if (err) return qv_executor_short(mu ? "a lock" : "a condition variable", err);
    ex->built |= bit;
    return QV_OK;
}

void qv_executor_unbuild_sync(qv_executor *ex, unsigned bit, pthread_mutex_t *mu,
                              pthread_cond_t *cv)
{
    if (!(ex->built & bit)) return;
    if (mu)
        pthread_mutex_destroy(mu);
    else
        pthread_cond_destroy(cv);
}

/* The shared part. What it made when it fails, the teardown undoes. */
static int executor_init(qv_executor *ex, const qv_executor_opts *o)
{
    ex->magic = QV_MAGIC_EXECUTOR;
    ex->queued_by = (qv_holder){.fn = queue_cancel, .arg = ex, .waiting = 1};
    ex->o = *o;
    if (ex->o.max_workers <= 0) ex->o.max_workers = QV_DEFAULT_MAX_WORKERS;
    if (ex->o.max_connections <= 0) ex->o.max_connections = 8;
    if (ex->o.max_requests_per_worker == 0) ex->o.max_requests_per_worker = LONG_MAX;
    qv_hosts_init(ex);
    if (qv_executor_build_sync(ex, QV_BUILT_MU, &ex->mu, NULL) ||
        qv_executor_build_sync(ex, QV_BUILT_CV, NULL, &ex->cv) ||
        qv_executor_build_sync(ex, QV_BUILT_SPACE, NULL, &ex->space) ||
        qv_executor_build_sync(ex, QV_BUILT_RESUME, NULL, &ex->resume))
        return QV_ENOMEM; /* (its message set) */
    /* Two kept blocks per transfer at once: you hold finished responses
     * besides the transfers running (a window of 2 x max_workers futures;
     * submitted all at once, those done before the one you wait for). With
     * one per transfer (and 4 MiB in all) the blocks over it were unmapped
     * and mapped again at c = 64, 17 page faults per 64 KiB body
     * (bench/NOTES.md, 2026-12-06 21:48). More would only follow the peaks
     * of what you hold. A QV_THREADS pool, which holds finished responses
     * for you too, keeps more (executor_threads.c). */
    ex->bodies = qv_bodies_new(2 * (size_t)ex->o.max_workers, qv_response_shell_free);
    return ex->bodies ? QV_OK : qv_executor_short("the executor's body cache", 0);
}

/* A half-built executor's end, as a free's but for the lock: no one else
 * has it (no submit to tell), and its lock may not be made. The threads its
 * constructor started before the step that failed (a loop's delivery
 * threads) never look at `shutdown`; its kind's shutdown joins them. */
static int abandon(qv_executor *ex, int rc)
{
    ex->shutdown = 1;
    ex->vt->shutdown(ex);
    qv_executor_unref(ex);
    return rc;
}

int qv_executor_make(qv_executor **out, const qv_executor_vt *vt, const qv_executor_opts *o)
{
    qv_executor *ex = qv_calloc(1, vt->size);
    if (!ex) return qv_executor_short("an executor", 0);
    /* From here on the teardown can end it. */
    ex->vt = vt;
    atomic_init(&ex->refs, 1);
    if (vt->blank) vt->blank(ex);
    int rc = executor_init(ex, o);
    if (!rc) rc = vt->build(ex);
    if (rc) return abandon(ex, rc);
    *out = ex;
    return QV_OK;
}

/* QV_EINVAL, with qv_last_error naming the first field out of its range,
 * or QV_OK: a caller told only "invalid argument" must guess which of a
 * dozen fields it was. */
static int opts_check(const qv_executor_opts *o)
{
    const struct {
        const char *name;
        long value;
    } counts[] = {
        {"max_workers", o->max_workers},
        {"max_connections", o->max_connections},
        {"max_host_connections", o->max_host_connections},
        {"max_total_connections", o->max_total_connections},
        {"max_requests_per_worker", o->max_requests_per_worker},
        {"hook_timeout_ms", o->hook_timeout_ms},
        {"per_host.max_concurrent", o->per_host.max_concurrent},
        {"per_host.burst", o->per_host.burst},
    };
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        if (counts[i].value >= 0) continue;
        qv_set_last_error("%s is %ld: it takes 0 or more", counts[i].name, counts[i].value);
        return QV_EINVAL;
    }
    if (!(o->per_host.rate >= 0) || isinf(o->per_host.rate)) {
        qv_set_last_error("per_host.rate is %g: it takes a finite number, 0 or more",
                          o->per_host.rate);
        return QV_EINVAL;
    }
    if (o->max_uncollected < -1) {
        qv_set_last_error("max_uncollected is %ld: it takes a bound, 0 (the default) or -1 (no "
                          "bound)",
                          o->max_uncollected);
        return QV_EINVAL;
    }
    if (o->kind != QV_THREADS && o->kind != QV_LOOP && o->kind != QV_PROCESSES) {
        qv_set_last_error("kind is %d: it takes QV_THREADS, QV_LOOP or QV_PROCESSES", (int)o->kind);
        return QV_EINVAL;
    }
    return QV_OK;
}

int qv_executor_new(qv_executor **out, const qv_executor_opts *opts)
{
    if (!out) return QV_EINVAL;
    *out = NULL;
    qv_set_last_error("%s", "");
    qv_executor_opts o;
    int rc = qv_opts_copy(&o, sizeof(o), opts);
    if (rc) return rc;
    rc = opts_check(&o);
    if (rc) return rc;
    qv_global_init();
    switch (o.kind) {
    case QV_THREADS:
        return qv_executor_make(out, &qv_threads_vt, &o);
    case QV_LOOP:
        return qv_executor_make(out, &qv_loop_vt, &o);
    case QV_PROCESSES:
        return qv_executor_make(out, &qv_procs_vt, &o);
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
    qv_hosts_free(ex);
    qv_free(ex->retries);
    qv_bodies_close(ex->bodies); /* responses still held give theirs back later */
    qv_executor_unbuild_sync(ex, QV_BUILT_RESUME, NULL, &ex->resume);
    qv_executor_unbuild_sync(ex, QV_BUILT_SPACE, NULL, &ex->space);
    qv_executor_unbuild_sync(ex, QV_BUILT_CV, NULL, &ex->cv);
    qv_executor_unbuild_sync(ex, QV_BUILT_MU, &ex->mu, NULL);
    ex->vt->destroy(ex);
}

_Thread_local qv_executor *qv_own_executor;

/* Stops ex's threads (once: the first to set shutdown does) and drops the
 * caller's reference. */
static void close_inbox(qv_executor *ex);

static void stop_and_unref(qv_executor *ex)
{
    pthread_mutex_lock(&ex->mu);
    int first = !ex->shutdown;
    ex->shutdown = 1;
    close_inbox(ex);                     /* later submits get QV_ESHUTDOWN */
    pthread_cond_broadcast(&ex->space);  /* blocked submitters get QV_ESHUTDOWN */
    pthread_cond_broadcast(&ex->resume); /* paused workers drain the queue */
    pthread_mutex_unlock(&ex->mu);
    if (first) ex->vt->shutdown(ex);
    qv_executor_unref(ex);
}

void qv_executor_free(qv_executor *ex)
{
    if (!ex) return;
    QV_CHECK_EXECUTOR(ex);
    /* Its threads would have to join themselves: memory would be freed
     * under the very thread running. A misuse no return value can report. */
    if (qv_own_executor == ex)
        qv_misuse(__func__, ex,
                  "called from one of the executor's own hooks or done callbacks; free it "
                  "from another thread");
    /* Sessions may keep it a while: a second free is caught until they go. */
    ex->magic = QV_MAGIC_FREED;
    stop_and_unref(ex);
}

/* Puts f in the ready list after the node `after` (NULL: at the head). */
static void fifo_insert(qv_executor *ex, qv_link *after, qv_future *f)
{
    f->qwhere = QV_Q_READY;
    qv_list_insert_after(&ex->ready, after, &f->q);
}

static qv_future *ready_first(const qv_executor *ex)
{
    return qv_future_of(qv_list_first(&ex->ready));
}

static void fifo_unlink(qv_executor *ex, qv_future *f)
{
    qv_list_unlink(&ex->ready, &f->q);
    f->qwhere = QV_Q_NONE;
}

/* A future left the queue proper (ready or parked). */
static void dequeued(qv_executor *ex)
{
    ex->queued--;
    if (ex->o.max_queued) pthread_cond_signal(&ex->space);
}

/* f leaves the queue for a worker, which begins it next. */
static void taken(qv_executor *ex, qv_future *f)
{
    dequeued(ex);
    f->popped = QV_POPPED;
}

void qv_executor_note(qv_executor *ex, qv_saturation what)
{
    unsigned bit = 1u << what;
    if (ex->o.on_saturated && !(atomic_load(&ex->warned) & bit))
        atomic_fetch_or(&ex->warn_pending, bit);
}

/* ------------------------------------------------------------ the inbox */

/* The inbox's mark once closed: no future is ever at this address. */
#define INBOX_CLOSED(ex) ((qv_future *)(void *)&(ex)->inbox)

/* Pushes f on the inbox; 0 if it is closed (shut down). Only q.next is
 * written: the rest of f's queue fields change under ex->mu, when a pop
 * moves it to the ready list. */
static int push_inbox(qv_executor *ex, qv_future *f)
{
    qv_future *head = atomic_load(&ex->inbox);
    do {
        if (head == INBOX_CLOSED(ex)) return 0;
        f->q.next = head ? &head->q : NULL;
    } while (!atomic_compare_exchange_weak(&ex->inbox, &head, f));
    return 1;
}

/* Under ex->mu: the futures of l (newest first) to the ready list's tail,
 * in the order they were submitted: each goes right after the tail the
 * list had, before those newer than it. */
static void append_newest_first(qv_executor *ex, qv_future *l)
{
    qv_link *tail = qv_list_last(&ex->ready);
    while (l) {
        qv_future *next = qv_future_of(l->q.next);
        fifo_insert(ex, tail, l);
        ex->queued++;
        l = next;
    }
}

/* Under ex->mu: whatever the inbox holds joins the ready list. Whoever
 * looks at the queue under the lock does this first, so the inbox is part
 * of the queue for every pop, cancel, count and drain. */
static void take_inbox(qv_executor *ex)
{
    qv_future *l = atomic_load(&ex->inbox);
    do {
        if (!l || l == INBOX_CLOSED(ex)) return;
    } while (!atomic_compare_exchange_weak(&ex->inbox, &l, NULL));
    append_newest_first(ex, l);
}

/* Under ex->mu, at shutdown: no push succeeds from now on. */
static void close_inbox(qv_executor *ex)
{
    qv_future *l = atomic_exchange(&ex->inbox, INBOX_CLOSED(ex));
    if (l != INBOX_CLOSED(ex)) append_newest_first(ex, l);
}

int qv_executor_inbox_empty(qv_executor *ex)
{
    qv_future *l = atomic_load(&ex->inbox);
    return !l || l == INBOX_CLOSED(ex);
}

/* Gives the warnings seen (bits) and noted since the last submit, each once
 * per executor; no lock held. */
static void warn_seen(qv_executor *ex, unsigned seen)
{
    if (!ex->o.on_saturated) return;
    seen |= (unsigned)atomic_exchange(&ex->warn_pending, 0);
    for (int w = QV_SATURATED_QUEUE; w <= QV_SATURATED_CONNECTIONS; w++) {
        unsigned bit = 1u << w;
        if ((seen & bit) && !(atomic_fetch_or(&ex->warned, bit) & bit))
            ex->o.on_saturated(ex, (qv_saturation)w, ex->o.saturated_arg);
    }
}

/* The warning that work waits while every worker is busy, if it is due. */
static unsigned workers_saturated(qv_executor *ex)
{
    return ex->o.on_saturated && atomic_load(&ex->in_flight) >= (size_t)ex->o.max_workers
               ? 1u << QV_SATURATED_WORKERS
               : 0;
}

/* Under ex->mu, which it releases: gives the warnings seen, and the one that
 * work waits while every worker is busy; signals the idle worker a submit's
 * notify counted on, after the unlock (woken under the lock, it would only
 * sleep again on it). */
static int unlock_and_warn(qv_executor *ex, int rc, unsigned seen)
{
    if (ex->queued > 0) seen |= workers_saturated(ex);
    int signal = ex->signal_due;
    ex->signal_due = 0;
    pthread_mutex_unlock(&ex->mu);
    /* That worker waits in cv (it let mu go in there): this wakes it, or
     * another idle one, which takes the future as well. */
    if (signal) pthread_cond_signal(&ex->cv);
    warn_seen(ex, seen);
    return rc;
}

/* Under ex->mu, which it releases: f joined the ready list (a worker may
 * have taken it already), and the executor sees to it. If no worker can
 * ever run it (shut down, no thread), f is taken back: the submit fails. */
static int queued_locked(qv_executor *ex, qv_future *f, unsigned seen)
{
    ex->signal_later = 1;
    int rc = ex->shutdown ? QV_ESHUTDOWN : ex->vt->notify(ex);
    ex->signal_later = 0;
    if (rc && f->qwhere == QV_Q_READY) {
        fifo_unlink(ex, f);
        ex->queued--;
    } else {
        rc = QV_OK; /* a worker took it already */
    }
    return unlock_and_warn(ex, rc, seen);
}

/* With every worker busy a submit takes no executor lock: the workers,
 * the submitters and the cancels do not all queue up on it. f's lock,
 * which a cancel holds while it looks in the queue, orders the push and
 * a cancel: the cancel finds f in the inbox, or the push sees it. */
static int submit_pushed(qv_executor *ex, qv_future *f)
{
    qv_lock_take(&f->lock);
    int pushed = !atomic_load(&f->cancel_requested) && push_inbox(ex, f);
    qv_lock_give(&f->lock);
    if (!pushed) return QV_ESHUTDOWN;
    if (ex->vt->all_busy(ex)) {
        warn_seen(ex, workers_saturated(ex));
        return QV_OK;
    }
    pthread_mutex_lock(&ex->mu);
    take_inbox(ex); /* f is in the ready list, or a worker took it */
    return queued_locked(ex, f, 0);
}

int qv_executor_submit(qv_executor *ex, qv_future *f)
{
    /* Held by the queue before it is in it: a cancel from now on looks there.
     * Only qv_session_close(cancel_pending) can cancel f yet (it is in the
     * session's list): a cancel that came before it was in the queue is
     * seen below (or by the push), under the lock a later one takes to
     * remove it. */
    qv_future_hold_by(f, &ex->queued_by);
    if (ex->vt->all_busy && !ex->o.max_queued) return submit_pushed(ex, f);
    unsigned seen = 0;
    pthread_mutex_lock(&ex->mu);
    while (ex->o.max_queued && ex->queued >= ex->o.max_queued && !ex->shutdown) {
        seen |= 1u << QV_SATURATED_QUEUE;
        if (ex->o.no_block) {
            pthread_mutex_unlock(&ex->mu);
            warn_seen(ex, seen);
            return QV_EAGAIN;
        }
        /* The workers must make room: none may pause for uncollected
         * responses while this thread, which may be their collector, waits. */
        qv_executor_urge_locked(ex, 1);
        pthread_cond_wait(&ex->space, &ex->mu);
        qv_executor_urge_locked(ex, -1);
    }
    if (ex->shutdown || atomic_load(&f->cancel_requested))
        return unlock_and_warn(ex, QV_ESHUTDOWN, seen);
    fifo_insert(ex, qv_list_last(&ex->ready), f);
    ex->queued++;
    return queued_locked(ex, f, seen);
}

/* ----------------------------------------------------------- retry heap */

static int earlier(const qv_executor *ex, size_t i, size_t j)
{
    return ex->retries[i]->due_ms < ex->retries[j]->due_ms;
}

static void heap_swap(qv_executor *ex, size_t i, size_t j)
{
    qv_future *t = ex->retries[i];
    ex->retries[i] = ex->retries[j];
    ex->retries[j] = t;
    ex->retries[i]->ridx = i;
    ex->retries[j]->ridx = j;
}

static void heap_fix(qv_executor *ex, size_t i)
{
    while (i > 0 && earlier(ex, i, (i - 1) / 2)) {
        heap_swap(ex, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < ex->nretries && earlier(ex, l, m)) m = l;
        if (r < ex->nretries && earlier(ex, r, m)) m = r;
        if (m == i) return;
        heap_swap(ex, i, m);
        i = m;
    }
}

static void heap_remove(qv_executor *ex, qv_future *f)
{
    size_t i = f->ridx;
    ex->nretries--;
    if (i != ex->nretries) {
        ex->retries[i] = ex->retries[ex->nretries];
        ex->retries[i]->ridx = i;
        heap_fix(ex, i);
    }
    f->qwhere = QV_Q_NONE;
}

int qv_executor_retry(qv_executor *ex, qv_future *f, double due_ms)
{
    if (!qv_future_hold_by(f, &ex->queued_by)) return QV_ECANCELLED;
    int rc = QV_OK;
    pthread_mutex_lock(&ex->mu);
    if (ex->nretries == ex->cap_retries) {
        size_t cap = ex->cap_retries ? ex->cap_retries * 2 : 16;
        qv_future **r = qv_realloc(ex->retries, cap * sizeof(*r));
        if (r) {
            ex->retries = r;
            ex->cap_retries = cap;
        } else {
            rc = QV_ENOMEM;
        }
    }
    if (!rc) {
        f->due_ms = due_ms;
        f->qwhere = QV_Q_RETRY;
        f->ridx = ex->nretries;
        ex->retries[ex->nretries++] = f;
        heap_fix(ex, f->ridx);
        /* A cancel that came before the future was here could not find it:
         * it ends now, not at its retry time. */
        rc = atomic_load(&f->cancel_requested) ? QV_ECANCELLED : QV_OK;
        /* A sleeping worker may have to wake earlier now. */
        if (!rc) rc = ex->vt->notify(ex);
        if (rc) heap_remove(ex, f);
    }
    pthread_mutex_unlock(&ex->mu);
    if (rc) qv_future_hold_by(f, NULL); /* waits no more: its caller ends it */
    return rc;
}

/* ------------------------------------------------------------------ pop */

qv_future *qv_executor_pop_locked(qv_executor *ex, long *wait_ms)
{
    double wake_at = INFINITY, now = 0;
    take_inbox(ex);
    if (ex->nretries || ex->hosts.active || !qv_list_empty(&ex->hosts.parked)) now = qv_now_ms();
    /* Due retries go first, in due order: they are older than anything queued. */
    for (qv_link *after = NULL; ex->nretries && ex->retries[0]->due_ms <= now;) {
        qv_future *f = ex->retries[0];
        heap_remove(ex, f);
        fifo_insert(ex, after, f);
        ex->queued++;
        after = &f->q;
    }
    if (ex->nretries) wake_at = ex->retries[0]->due_ms;
    qv_future *f = NULL;
    if (!ex->hosts.active && qv_list_empty(&ex->hosts.parked)) {
        if ((f = ready_first(ex))) fifo_unlink(ex, f);
    } else if (!(f = qv_hosts_take_parked(ex, now, &wake_at))) {
        /* Parked futures are older than the ready ones; then the ready ones
         * in order, parking those whose host is at its limit. */
        while ((f = ready_first(ex))) {
            fifo_unlink(ex, f);
            if (qv_hosts_admit(ex, f, now, &wake_at)) break;
        }
    }
    if (f) taken(ex, f);
    if (wait_ms) {
        double left = wake_at - now;
        *wait_ms = f || wake_at == INFINITY ? -1 : left < 1 ? 1 : (long)left + 1;
    }
    return f;
}

/* Under ex->mu: the ready list's head if a thread waiting for a result may
 * run it, else NULL. Not while retries or host limits are in play; not a
 * streamed body's, whose transfer outlives the wait (its reader may be this
 * thread); not one writing to output_fd, whose writes may wait for the
 * descriptor's reader (that may be this thread too, once its wait is
 * over), nor to output_path, which may be a FIFO written in place (known
 * only when the transfer opens it) with such a reader, nor one reading
 * upload_path, which may be a pipe whose writer is this thread, likewise;
 * and none that calls code of the caller's, which would run on a thread
 * that waits for another result (and may hold a lock that code takes). */
static qv_future *lendable_head(qv_executor *ex)
{
    take_inbox(ex);
    qv_future *f = ready_first(ex);
    if (ex->nretries || ex->hosts.active || !qv_list_empty(&ex->hosts.parked) || !f ||
        f->req.io->stream || f->req.io->output_fd > 0 || f->req.io->output_path ||
        f->req.io->upload_path || qv_runs_user_code(f))
        return NULL;
    return f;
}

int qv_executor_lendable_locked(qv_executor *ex)
{
    return lendable_head(ex) != NULL;
}

qv_future *qv_executor_pop_next_locked(qv_executor *ex, qv_future *want)
{
    qv_future *f = lendable_head(ex);
    if (!f) return NULL;
    /* At the bound on uncollected responses the workers pause: so does the
     * waiting thread, but for what it waits for. */
    if (f != want && ex->max_uncollected && atomic_load(&ex->uncollected) >= ex->max_uncollected)
        return NULL;
    fifo_unlink(ex, f);
    taken(ex, f);
    return f;
}

qv_future *qv_executor_drain_locked(qv_executor *ex)
{
    take_inbox(ex);
    qv_future *f = ready_first(ex);
    if (f) {
        fifo_unlink(ex, f);
        dequeued(ex);
    } else if ((f = qv_hosts_any_parked(ex))) {
        dequeued(ex);
    } else if (ex->nretries) {
        heap_remove(ex, f = ex->retries[0]);
    }
    /* As a pop: a cancel from now on waits for the failure that ends it. */
    if (f) f->popped = QV_POPPED;
    return f;
}

int qv_executor_empty_locked(qv_executor *ex)
{
    return ex->queued == 0 && ex->nretries == 0 && qv_executor_inbox_empty(ex);
}

/* Removes f from wherever it waits; 1 if removed. */
static int remove_locked(qv_executor *ex, qv_future *f)
{
    int where = f->qwhere;
    if (where == QV_Q_READY) {
        fifo_unlink(ex, f);
        dequeued(ex);
    } else if (where == QV_Q_PARKED) {
        qv_hosts_unpark(ex, f);
        dequeued(ex);
    } else if (where == QV_Q_RETRY) {
        heap_remove(ex, f);
    }
    return where != QV_Q_NONE;
}

void qv_executor_host_done(qv_future *f)
{
    qv_executor *ex = f->ex;
    if (!ex || !atomic_exchange(&f->host_held, 0)) return;
    pthread_mutex_lock(&ex->mu);
    /* A parked future may go now: make sure a worker looks. */
    if (qv_hosts_release_locked(f)) ex->vt->notify(ex);
    pthread_mutex_unlock(&ex->mu);
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
    QV_CHECK_EXECUTOR(ex);
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&ex->mu);
    take_inbox(ex);
    out->queued = ex->queued + atomic_load(&ex->pool_held);
    pthread_mutex_unlock(&ex->mu);
    out->in_flight = atomic_load(&ex->in_flight);
    out->completed = atomic_load(&ex->completed);
    out->failed = atomic_load(&ex->failed);
    out->cancelled = atomic_load(&ex->cancelled);
    out->connections_opened = atomic_load(&ex->connections);
    out->workers = atomic_load(&ex->workers);
    return QV_OK;
}
