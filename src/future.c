/* The future: a state machine with exactly one terminal transition, a
 * refcount, result waiting, cancellation and done callbacks. */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>

static int terminal(qv_future_state st)
{
    return st == QV_FINISHED || st == QV_FAILED || st == QV_CANCELLED;
}

/* Under f->lock: tells f's runner (if any) that someone wants f (want: 1),
 * or that whether f waits to start may have changed (0). 1: it must be
 * urged after the unlock (urge_runner). */
static int tell_runner(qv_future *f, int want)
{
    return f->runner && f->runner->look && f->runner->look(f, want);
}

static void urge_runner(qv_future *f, int urge)
{
    if (urge) f->runner->urge(f);
}

/* No lock held: f's result was collected, or the caller let it go. */
static void collected(qv_future *f)
{
    if (f->runner && f->runner->collected) f->runner->collected(f);
}

qv_future *qv_future_alloc(size_t room)
{
    /* Its arena's first chunk right after it: a struct with pointers is
     * sized to a multiple of their alignment, which is the arena's. */
    size_t in = qv_arena_in_size(room);
    /* Only the struct zeroed: glibc's calloc before 2.41 takes no block from the
     * thread's cache, and the arena's room is written before it is read. */
    qv_future *f = qv_malloc(sizeof(*f) + in);
    if (!f) return NULL;
    memset(f, 0, sizeof(*f));
    if (in) qv_arena_init_in(&f->req.arena, f + 1, room);
    /* Zeroed: the lock free, no one waiting on `changed`. */
    atomic_init(&f->refs, 1);
    atomic_init(&f->user_refs, 1);
    f->magic = QV_MAGIC_FUTURE;
    atomic_init(&f->cancel_requested, 0);
    f->state = QV_PENDING;
    f->cancel_fd = -1;
    return f;
}

qv_future *qv_future_hold(qv_future *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
    return f;
}

qv_future *qv_future_ref(qv_future *f)
{
    if (!f) return NULL;
    QV_CHECK_FUTURE(f);
    atomic_fetch_add_explicit(&f->user_refs, 1, memory_order_relaxed);
    return qv_future_hold(f);
}

void qv_future_hand_over(qv_future *f)
{
    atomic_fetch_add_explicit(&f->user_refs, 1, memory_order_relaxed);
}

/* A streamed body whose future the caller let go is read by no one: its
 * transfer stops. */
void qv_future_abandon_stream(qv_future *f)
{
    qv_lock_take(&f->lock);
    qv_pipe *p = f->resp ? f->resp->pipe : NULL;
    qv_lock_give(&f->lock);
    if (p) qv_pipe_close(p);
}

void qv_stream_opened(qv_future *f)
{
    /* After the completion: a release or a close that began before it
     * found no pipe to close (f->resp still unset), and is seen here. A
     * cancelled f has no response, and its pipe may be gone. */
    if (atomic_load(&f->user_refs) == 0 || (f->session && qv_session_closing(f->session)))
        qv_future_abandon_stream(f);
}

void qv_future_release(qv_future *f)
{
    if (!f) return;
    QV_CHECK_FUTURE(f);
    int left = atomic_fetch_sub(&f->user_refs, 1) - 1;
    if (left < 0)
        qv_misuse(__func__, f, "released more often than it was referenced (released twice?)");
    /* Let go uncollected. */
    if (left == 0) collected(f);
    /* The caller's last: a streamed body still coming is read by no one. */
    if (left == 0 && atomic_load(&f->stream_open)) qv_future_abandon_stream(f);
    qv_future_drop(f);
}

void qv_future_drop(qv_future *f)
{
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1) return;
    f->magic = QV_MAGIC_FREED;
    qv_cb *cb = f->more_cbs;
    while (cb) {
        qv_cb *next = cb->next;
        qv_free(cb);
        cb = next;
    }
    qv_response_free(f->resp);
    qv_free(f->errmsg);
    qv_req_free(&f->req);
    qv_free(f);
}

/* Under f->lock: the stat that counts f while it runs. */
static atomic_size_t *counter(qv_future *f)
{
    return f->holder.count ? f->holder.count : f->ex ? &f->ex->in_flight : NULL;
}

/* Under f->lock: f's record of h (NULL: no one). */
static void record_holder(qv_future *f, const qv_holder *h)
{
    f->holder = h ? (qv_held){h->fn, h->arg, h->count} : (qv_held){0};
    f->holder_waits = h && h->waiting;
}

/* Under f->lock: h (NULL: no one) holds f from now on; a running f moves to
 * the stat h counts it in. */
static void set_holder(qv_future *f, const qv_holder *h)
{
    atomic_size_t *was = f->state == QV_RUNNING ? counter(f) : NULL;
    record_holder(f, h);
    atomic_size_t *now = f->state == QV_RUNNING ? counter(f) : NULL;
    if (was == now) return;
    if (now) atomic_fetch_add(now, 1);
    if (was) atomic_fetch_sub(was, 1);
}

int qv_future_begin(qv_future *f, const qv_holder *h)
{
    qv_lock_take(&f->lock);
    if (f->popped == QV_POPPED_CANCEL_WAITS) qv_signal_all(&f->changed);
    f->popped = 0;
    int ok = (f->state == QV_PENDING || f->holder_waits) && !atomic_load(&f->cancel_requested);
    if (ok) {
        if (f->state == QV_PENDING) {
            f->state = QV_RUNNING;
            f->started_ms = qv_now_ms();
            record_holder(f, h);
            atomic_size_t *c = counter(f);
            if (c) atomic_fetch_add(c, 1);
        } else {
            set_holder(f, h);
        }
        f->attempts++;
    }
    int urge = ok && tell_runner(f, 0);
    qv_lock_give(&f->lock);
    urge_runner(f, urge);
    return ok;
}

int qv_future_hold_by(qv_future *f, const qv_holder *h)
{
    qv_lock_take(&f->lock);
    int ok = !h || !atomic_load(&f->cancel_requested);
    if (ok) set_holder(f, h);
    int urge = tell_runner(f, 0); /* a wanted future back in a queue (a retry) */
    qv_lock_give(&f->lock);
    urge_runner(f, urge);
    return ok;
}

int qv_future_rehold(qv_future *f, const qv_holder *from, const qv_holder *to)
{
    qv_lock_take(&f->lock);
    int ok = f->holder.fn == from->fn && f->holder.arg == from->arg;
    if (ok) set_holder(f, to);
    int urge = tell_runner(f, 0);
    qv_lock_give(&f->lock);
    urge_runner(f, urge);
    return ok;
}

int qv_future_waiting(qv_future *f)
{
    qv_lock_take(&f->lock);
    int w = f->state == QV_PENDING || f->holder_waits;
    qv_lock_give(&f->lock);
    return w;
}

int qv_future_attempts(qv_future *f)
{
    if (!f) return 0;
    QV_CHECK_FUTURE(f);
    qv_lock_take(&f->lock);
    int n = f->attempts;
    qv_lock_give(&f->lock);
    return n;
}

int qv_future_error_status(qv_future *f)
{
    if (!f) return 0;
    QV_CHECK_FUTURE(f);
    qv_lock_take(&f->lock);
    int status = f->state == QV_FAILED ? f->out_status : 0;
    qv_lock_give(&f->lock);
    return status;
}

void qv_future_end_transfer(qv_future *f)
{
    qv_future_hold_by(f, NULL);
}

/* The session lets f go, unless a streamed body still comes (then its
 * transfer's end does, qv_stream_release). */
static void session_done(qv_future *f)
{
    if (atomic_load(&f->stream_open)) return;
    qv_session *s = f->session;
    f->session = NULL;
    if (s) qv_session_future_done(s, f);
}

int qv_future_settle(qv_future *f, qv_future_state st, int err, char *msg, qv_response *resp)
{
    qv_executor_host_done(f); /* if the executor did not say so already */
    qv_lock_take(&f->lock);
    if (terminal(f->state)) {
        /* Cannot happen by design; never let a second outcome overwrite the first. */
        qv_lock_give(&f->lock);
        qv_free(msg);
        qv_response_free(resp);
        return 0;
    }
    /* Freed after the unlock: a streamed response's pipe pokes its
     * transfer, under f->lock. */
    qv_response *dropped = NULL;
    if (atomic_load(&f->cancel_requested) && st != QV_CANCELLED) {
        dropped = resp;
        resp = NULL;
        qv_free(msg);
        msg = NULL;
        st = QV_CANCELLED;
    }
    if (st == QV_CANCELLED) {
        err = QV_ECANCELLED;
        if (!msg) msg = qv_future_note(f, "cancelled");
    }
    /* Stats change before anyone can see the completion. */
    atomic_size_t *running = f->state == QV_RUNNING ? counter(f) : NULL;
    if (running) atomic_fetch_sub(running, 1);
    if (f->ex) qv_executor_count(f->ex, st);
    f->state = st;
    f->popped = 0; /* a drained future ends unbegun: its canceller waits no more */
    f->error = st == QV_FINISHED ? QV_OK : err;
    f->errmsg = msg;
    f->resp = resp;
    tell_runner(f, 0); /* done: waits to start no more (never an urge) */
    /* A response no callback or waiter takes as it comes waits to be
     * collected. */
    if (resp && !atomic_load(&f->stream_open) && !qv_future_has_callbacks(f) &&
        qv_list_empty(&f->waiters) && f->runner && f->runner->finished)
        f->runner->finished(f);
    /* A streamed body's transfer goes on: its reader still pokes it. */
    if (!atomic_load(&f->stream_open)) record_holder(f, NULL);
    for (qv_link *n = qv_list_first(&f->waiters); n; n = qv_list_next(&f->waiters, n)) {
        qv_wlink *l = qv_list_item(n, qv_wlink, link);
        l->w->notify(l->w, l->idx, st);
    }
    /* more_cbs was built newest first: put it in the order added. Callbacks
     * then run outside the lock; the list can no longer change, since
     * add_done_callback runs late callbacks itself once the state is terminal. */
    qv_cb *rev = NULL;
    while (f->more_cbs) {
        qv_cb *next = f->more_cbs->next;
        f->more_cbs->next = rev;
        rev = f->more_cbs;
        f->more_cbs = next;
    }
    f->more_cbs = rev;
    qv_lock_give(&f->lock);
    qv_response_free(dropped);
    /* Its holder let it go before it was counted (see qv_future_release). */
    if (atomic_load(&f->user_refs) == 0) collected(f);
    /* Woken after the unlock, a waiter finds the lock free instead of
     * sleeping on it at once (a second futex round trip and context switch
     * per result). f stays valid: whoever completes it holds a reference. */
    qv_signal_all(&f->changed);
    /* Before session_done: until then its session, and so its executor,
     * stays. */
    if (f->runner && f->runner->ended) f->runner->ended(f);
    if (qv_future_has_callbacks(f)) return 1;
    session_done(f);
    return 0;
}

void qv_future_finish(qv_future *f)
{
    atomic_load_explicit(&f->first_fn, memory_order_relaxed)(f, f->first_arg);
    for (qv_cb *cb = f->more_cbs; cb; cb = cb->next) cb->fn(f, cb->arg);
    session_done(f);
}

void qv_future_complete(qv_future *f, qv_future_state st, int err, char *msg, qv_response *resp)
{
    if (qv_future_settle(f, st, err, msg, resp)) qv_future_finish(f);
}

int (*qv_stream_head_hook)(struct qv_slot *slot, qv_response *r);

void qv_stream_release(qv_future *f)
{
    if (atomic_fetch_sub(&f->stream_open, 1) == 1) session_done(f);
}

void qv_future_poke(qv_future *f)
{
    qv_lock_take(&f->lock);
    if (f->holder.fn) f->holder.fn(f, f->holder.arg, 0);
    qv_lock_give(&f->lock);
}

/* The most of a URL a message shows. */
#define URL_SHOWN_MAX 1024

char *qv_future_note(qv_future *f, const char *text)
{
    char *url = qv_url_shown(f->req.url); /* no password in a message */
    int cut = url && strlen(url) > URL_SHOWN_MAX;
    char *msg = url ? qv_asprintf("%s (%s %.*s%s)", text, f->req.method ? f->req.method : "",
                                  URL_SHOWN_MAX, url, cut ? "..." : "")
                    : NULL;
    qv_free(url);
    return msg;
}

static char *vmessage(qv_future *f, int err, const char *fmt, va_list ap)
{
    char detail[512], tries[48] = "";
    vsnprintf(detail, sizeof(detail), fmt, ap);
    if (f->attempts > 1) snprintf(tries, sizeof(tries), ", after %d attempts", f->attempts);
    char *text = qv_asprintf("%s: %s%s", qv_strerror(err), detail, tries);
    char *msg = text ? qv_future_note(f, text) : NULL;
    qv_free(text);
    return msg;
}

char *qv_future_message(qv_future *f, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = vmessage(f, err, fmt, ap);
    va_end(ap);
    return msg;
}

void qv_future_fail(qv_future *f, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = vmessage(f, err, fmt, ap);
    va_end(ap);
    qv_future_complete(f, QV_FAILED, err, msg, NULL);
}

int qv_future_wait(qv_future *f, long timeout_ms)
{
    if (!f) return QV_EINVAL;
    QV_CHECK_FUTURE(f);
    struct timespec dl;
    if (timeout_ms >= 0) qv_deadline(&dl, timeout_ms);
    qv_lock_take(&f->lock);
    /* The runner may have this thread work for f rather than sleep (drive
     * its executor's transfers, or run it). */
    int waited = !terminal(f->state) && timeout_ms != 0 && f->runner && f->runner->wait &&
                 f->runner->wait(f, timeout_ms >= 0 ? &dl : NULL);
    if (!waited && !terminal(f->state) && tell_runner(f, 1)) {
        qv_lock_give(&f->lock);
        urge_runner(f, 1);
        qv_lock_take(&f->lock);
    }
    /* (A poll does not sleep, nor a wait the runner did.) */
    int slept = 0, timed_out = waited || timeout_ms == 0;
    for (; !terminal(f->state) && !timed_out; slept = 1)
        timed_out = qv_signal_wait(&f->changed, &f->lock, timeout_ms >= 0 ? &dl : NULL) != 0;
    int done = terminal(f->state);
    /* This thread sleeps no more: its mark goes (another sleeper, woken,
     * finds f not done and marks it again), or whoever ends f would think
     * a thread waits for it (a QV_THREADS worker lends its handle then). */
    if (!done && slept) qv_signal_all(&f->changed);
    qv_lock_give(&f->lock);
    if (!done) return QV_EWAIT_TIMEOUT;
    collected(f);
    return QV_OK;
}

int qv_future_slept_on(qv_future *f)
{
    return qv_signal_sleepers(&f->changed);
}

int qv_future_has_callbacks(qv_future *f)
{
    return atomic_load_explicit(&f->first_fn, memory_order_relaxed) != NULL;
}

int qv_future_waited(qv_future *f)
{
    qv_lock_take(&f->lock);
    int waited = !qv_list_empty(&f->waiters);
    qv_lock_give(&f->lock);
    return waited;
}

int qv_future_result(qv_future *f, qv_response **out, long timeout_ms)
{
    if (out) *out = NULL;
    int rc = qv_future_wait(f, timeout_ms);
    if (rc != QV_OK) return rc;
    /* Terminal fields never change again: no lock needed past the wait. */
    if (f->state == QV_FINISHED) {
        if (out) *out = f->resp;
        return QV_OK;
    }
    return f->error;
}

int qv_future_done(qv_future *f)
{
    return f && terminal(qv_future_state_get(f));
}

int qv_future_ended_locked(qv_future *f)
{
    return terminal(f->state);
}

int qv_future_ended(qv_future *f)
{
    qv_lock_take(&f->lock);
    int done = terminal(f->state);
    qv_lock_give(&f->lock);
    return done;
}

qv_future_state qv_future_state_get(qv_future *f)
{
    if (!f) return QV_FAILED;
    QV_CHECK_FUTURE(f);
    qv_lock_take(&f->lock);
    qv_future_state st = f->state;
    /* A poll: the poller waits for it, though not here. */
    int urge = !terminal(st) && tell_runner(f, 1);
    qv_lock_give(&f->lock);
    urge_runner(f, urge);
    return st;
}

int qv_future_error_code(qv_future *f)
{
    if (!f) return QV_EINVAL;
    QV_CHECK_FUTURE(f);
    qv_lock_take(&f->lock);
    int err = terminal(f->state) ? f->error : QV_OK;
    qv_lock_give(&f->lock);
    return err;
}

const char *qv_future_error(qv_future *f)
{
    if (!f) return NULL;
    QV_CHECK_FUTURE(f);
    qv_lock_take(&f->lock);
    const char *m = f->state == QV_FAILED || f->state == QV_CANCELLED ? f->errmsg : NULL;
    if ((f->state == QV_FAILED || f->state == QV_CANCELLED) && !m) m = qv_strerror(f->error);
    qv_lock_give(&f->lock);
    return m;
}

int qv_future_cancel(qv_future *f)
{
    if (!f) return 0;
    QV_CHECK_FUTURE(f);
    qv_lock_take(&f->lock);
    /* A done future never touches its holder again: its executor may be
     * freed by now (qv_executor_free returns once every future of it is
     * done). */
    if (terminal(f->state)) {
        int was = f->state == QV_CANCELLED;
        qv_lock_give(&f->lock);
        return was;
    }
    atomic_store(&f->cancel_requested, 1);
    if (f->cancel_fd >= 0) eventfd_write(f->cancel_fd, 1); /* (a pump's write for room) */
    /* A holder that lets it go (a queue, a process pool holding it for a
     * worker: it has not started) has it completed here, at once; one
     * running it is woken and ends it as cancelled. */
    int let_go = f->holder.fn ? f->holder.fn(f, f->holder.arg, 1) : 0;
    /* Taken off the queue, about to begin: that begin fails now, and the
     * worker only lets f go, so that it is done here as a queued one. The
     * worker does no more than encode it meanwhile, and takes no lock the
     * canceller could hold. One drained to fail (a broken process pool) is
     * completed by that failure instead, as cancelled: done here too. */
    if (let_go == QV_LET_GO_AT_BEGIN) {
        while (f->popped == QV_POPPED_CANCEL_WAITS) qv_signal_wait(&f->changed, &f->lock, NULL);
        if (terminal(f->state)) let_go = 0;
    }
    if (let_go) set_holder(f, NULL);
    qv_lock_give(&f->lock);
    if (let_go) qv_future_complete(f, QV_CANCELLED, QV_ECANCELLED, NULL, NULL);
    return 1;
}

int qv_future_add_done_callback(qv_future *f, qv_done_fn fn, void *arg)
{
    if (!f || !fn) return QV_EINVAL;
    QV_CHECK_FUTURE(f);
    qv_lock_take(&f->lock);
    if (terminal(f->state)) {
        qv_lock_give(&f->lock);
        collected(f); /* the callback takes it */
        fn(f, arg);
        return QV_OK;
    }
    int urge = tell_runner(f, 1);
    if (!qv_future_has_callbacks(f)) {
        atomic_store_explicit(&f->first_fn, fn, memory_order_relaxed);
        f->first_arg = arg;
    } else {
        qv_cb *cb = qv_malloc(sizeof(*cb));
        if (!cb) {
            qv_lock_give(&f->lock);
            urge_runner(f, urge);
            return QV_ENOMEM;
        }
        cb->fn = fn;
        cb->arg = arg;
        cb->next = f->more_cbs;
        f->more_cbs = cb;
    }
    qv_lock_give(&f->lock);
    urge_runner(f, urge);
    return QV_OK;
}

void *qv_future_user_data(qv_future *f)
{
    if (!f) return NULL;
    QV_CHECK_FUTURE(f);
    qv_lock_take(&f->lock);
    void *p = f->user_data;
    qv_lock_give(&f->lock);
    return p;
}

void qv_future_set_user_data(qv_future *f, void *user_data)
{
    if (!f) return;
    QV_CHECK_FUTURE(f);
    qv_lock_take(&f->lock);
    f->user_data = user_data;
    qv_lock_give(&f->lock);
}

void qv_waiter_link(qv_future *f, qv_wlink *l, qv_waiter *w, size_t idx)
{
    l->w = w;
    l->idx = idx;
    qv_lock_take(&f->lock);
    int urge = 0;
    int done = terminal(f->state);
    if (done) {
        l->link = (qv_link){0}; /* not linked: nothing to unlink */
        w->notify(w, idx, f->state);
    } else {
        if (f->runner && f->runner->linked) f->runner->linked(f, w);
        qv_list_insert_after(&f->waiters, NULL, &l->link);
        urge = tell_runner(f, 1);
    }
    qv_lock_give(&f->lock);
    urge_runner(f, urge);
    if (done) collected(f); /* the waiter takes it */
}

void qv_waiter_unlink(qv_future *f, qv_wlink *l)
{
    qv_lock_take(&f->lock);
    if (qv_list_linked(&l->link)) qv_list_unlink(&f->waiters, &l->link);
    qv_lock_give(&f->lock);
}
