/* The process executor, parent side. At creation it forks a zygote (see
 * procs_worker.c), which forks workers on demand; one dispatcher thread here
 * hands queued futures to idle workers, reads their answers, and fails only
 * the future of a worker that died (QV_EWORKER), asking for a replacement.
 * What a worker sends is untrusted: a malformed frame fails its future.
 *
 * Sending ahead: when every worker is busy, a queued request goes into a
 * busy worker's mailbox (a pipe of its own, which the worker reads only
 * between requests), so that the worker goes on to it without sleeping
 * until this thread has read its answer. Until the worker takes it, the
 * request is not bound to it: this thread takes it back for an idle worker
 * or a cancel, and whichever of the two reads the pipe first has it. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct pworker {
    pid_t pid;
    int fd; /* -1 once its end of the socket closed (death is then on its way) */
    qv_frame_reader in;
    qv_future *f;
    int f_lost; /* f was completed by its cancel while held: its answer goes */
    /* The worker's jar, as the parent last saw it, and the session jar's
     * version that this is (0: no session's current one). */
    struct curl_slist *jar;
    uint64_t jar_version;
    int cancel_sent;
    int mbox_r, mbox_w; /* its mailbox: this process reads it too, to take back */
    /* Sent ahead (only while f runs): in the mailbox, or taken by the worker
     * (next_taken: this thread found the mailbox empty, or was told). It
     * carries no jar: it goes ahead only if the worker's jar is its
     * session's, and then runs with that jar as f leaves it. */
    qv_future *next;
    int next_taken, next_cancel_sent;
    double hook_deadline; /* 0 unless hooks are running and a hook timeout is set */
    int timed_out;
    int malformed; /* killed by this process: what it sent was no frame */
    long served;   /* requests it has answered */
    /* f's on_data said stop, or its streamed body had nowhere to go: the
     * worker was told to cancel, and the outcome is this error (0: none)
     * and message. */
    int stopped;
    char *stopped_msg;
    /* f's streamed body (stream = 1), once its headers came: its reader
     * takes the ring's bytes itself (ring_lent) until the answer, or the
     * reader let go (then this thread drops what comes). */
    qv_pipe *pipe;
    int ring_lent;
    /* Its body ring (ring.c): bytes taken out so far; ring_more: stopped
     * taking before the ring was empty, to let the other workers' frames
     * in (this thread comes back to it before it sleeps). */
    qv_ring ring;
    int slot; /* the ring's, in the pool's rings */
    uint64_t tail;
    uint64_t answers; /* its RESPONSE frames acted on (see ring.c) */
    int ring_more;
    int reaped; /* its death was told: its pid may be another process's now */
} pworker;

enum { RING_EMPTY, RING_LEFT, RING_BAD };

static void kill_worker(pworker *w)
{
    if (!w->reaped) kill(w->pid, SIGKILL);
}

typedef struct procs {
    qv_executor base;
    pid_t zygote;
    int zfd;
    int wake[2];
    atomic_int sleeping; /* the dispatcher may be in epoll_wait: a submit must wake it */
    pthread_t thread;
    int started;
    pworker *w;
    /* Watches the wake pipe, the zygote and every worker: a wait costs what
     * is ready, not a visit to each of max_workers sockets (as poll does). */
    int ep;
    int nw, spawning;
    const char *broken; /* why nothing can run any more (NULL: all is well) */
    char why[128];
    long queue_wait; /* ms until a queued retry or a host's token is due (-1: none) */
    /* Begun, and for the next idle worker before anything queued: taken back
     * from a mailbox, or too large for one. */
    qv_list held;
    uint64_t ids;  /* the last name given to a request sent */
    int ring_more; /* workers whose ring_more is set */
    /* The workers' body rings (ring.c), one slot per worker there may be,
     * mapped before the zygote is forked; which slots a worker has. */
    void *rings;
    unsigned char *slot_used;
    qv_buf out;
    /* The pool's holds on a future: held for a worker (sent ahead, or in
     * `held`), counted as waiting, which a cancel completes at once, as a
     * queued one; and running in a worker, which a cancel wakes this thread
     * for (send_cancels). A held future a cancel completed is lost to the
     * pool: it keeps its reference but only lets it go. */
    qv_holder held_by, run_by;
} procs;

/* Forking while a dispatcher thread is in the middle of its work (inside
 * malloc, libcurl, a lock) could hand the zygote that state half-done:
 * dispatchers work under the read side, a new pool forks under the write
 * side (writers first, so a busy program still gets to fork). */
static pthread_rwlock_t fork_lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;

/* A done callback runs outside the read side: it may block on another pool
 * (wait for its future, free it) whose dispatcher waits for the read side
 * behind a pool being made, or make a pool itself. Callbacks nest (one that
 * cancels a queued future runs that future's), so only the outermost let
 * it go and take it again. */
static _Thread_local int in_callbacks;

static void dispatcher_gate(int take)
{
    if (take) {
        if (--in_callbacks == 0) pthread_rwlock_rdlock(&fork_lock);
    } else if (in_callbacks++ == 0) {
        pthread_rwlock_unlock(&fork_lock);
    }
}

/* This thread is a dispatcher (which holds the read side outside callbacks). */
static _Thread_local int on_dispatcher;

/* Completes f on the dispatcher: its done callbacks run outside the read side. */
static void complete(qv_future *f, qv_future_state st, int err, char *msg, qv_response *r)
{
    if (!qv_future_settle(f, st, err, msg, r)) return;
    dispatcher_gate(0);
    qv_future_finish(f);
    dispatcher_gate(1);
}

/* Completes f with no response, and lets the queue's reference go: the
 * pool is done with it. */
static void complete_drop(qv_future *f, qv_future_state st, int err, char *msg)
{
    complete(f, st, err, msg, NULL);
    qv_future_drop(f); /* the queue's reference */
}

/* The same, failed: the pool lost it (why). */
static void fail_lost(qv_future *f, const char *why)
{
    complete_drop(f, QV_FAILED, QV_EWORKER, qv_future_message(f, QV_EWORKER, "%s", why));
}

/* A dispatcher thread also allocates outside the read side: while it
 * starts, before dispatch_main runs (ASan calls pthread_getattr_np), and
 * while it ends, after. glibc's malloc locks itself around fork; clang 14's
 * ASan does not, so a fork then could hand the zygote an allocator lock held
 * by that thread, and its workers would block on it for good. A fork waits
 * until no dispatcher is starting or ending; both begin under the read side. */
static pthread_mutex_t transit_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t transit_cv = PTHREAD_COND_INITIALIZER;
static int in_transit;

static void transit_add(int d)
{
    pthread_mutex_lock(&transit_mu);
    in_transit += d;
    if (in_transit == 0) pthread_cond_broadcast(&transit_cv);
    pthread_mutex_unlock(&transit_mu);
}

typedef struct zmsg {
    int32_t type;
    int32_t pid;
    int32_t status;
} zmsg;

static void wake(procs *P)
{
    char c = 1;
    while (write(P->wake[1], &c, 1) < 0 && errno == EINTR) {
    }
}

/* A cancel or a poke of a future the pool holds: this thread looks. */
static int pool_poke(qv_future *f, void *arg, int cancel)
{
    (void)f;
    (void)cancel;
    wake(arg);
    return 0;
}

/* A cancel of a held future, which has not started: it is done now. */
static int held_cancel(qv_future *f, void *arg, int cancel)
{
    pool_poke(f, arg, cancel);
    return cancel;
}

/* Takes a held f back for the pool's own use: 1, or 0 if a cancel
 * completed it meanwhile (lost: the pool only lets it go). */
static int unhold(procs *P, qv_future *f)
{
    return qv_future_rehold(f, &P->held_by, &P->run_by);
}

/* Held for the next idle worker (it is held already); a future a cancel
 * completed meanwhile is only let go. */
static void hold(procs *P, qv_future *f)
{
    if (qv_future_rehold(f, &P->held_by, &P->held_by))
        qv_list_insert_tail(&P->held, &f->q);
    else
        qv_future_drop(f); /* the queue's reference */
}

/* A held future that is to go nowhere now (its cancel was asked for):
 * completed here, unless the cancel completed it already. */
static void drop(procs *P, qv_future *f)
{
    if (unhold(P, f))
        complete_drop(f, QV_CANCELLED, QV_ECANCELLED, NULL);
    else
        qv_future_drop(f);
}

enum { SENT, HELD, DROPPED };

/* Sends f (begun, and held if was_held) to idle worker w on its socket.
 * The jar goes along unless the worker has it already (versions are unique
 * across sessions), and so does output_fd: the worker writes it itself, as
 * a file of output_path, and closes its copy when the transfer ends.
 * Returns SENT when sent (or failed: then f is settled), or DROPPED when it
 * did not go: cancelled, or its output_fd is no descriptor (settled, w
 * untouched). */
static int hand(procs *P, pworker *w, qv_future *f, int was_held)
{
    if (was_held && !unhold(P, f)) {
        qv_future_drop(f); /* a cancel completed it while held */
        return DROPPED;
    }
    if (atomic_load(&f->cancel_requested)) {
        complete_drop(f, QV_CANCELLED, QV_ECANCELLED, NULL);
        return DROPPED;
    }
    int pass = f->req.io->output_fd;
    if (pass > 0 && fcntl(pass, F_GETFD) < 0) { /* as the write would fail elsewhere */
        int e = errno;
        complete_drop(f, QV_FAILED, QV_EIO, qv_sink_stop_message(f, QV_EIO, e));
        return DROPPED;
    }
    struct curl_slist *jar = NULL;
    uint64_t version = w->jar_version;
    f->req.wire_id = ++P->ids;
    int rc = qv_session_jar_export(f->session, f->req.host, &version, &jar);
    int kept = version == w->jar_version;
    if (!rc) rc = qv_wire_encode_request(&P->out, f, f->attempts, jar, kept);
    if (!rc && qv_fd_write_passing(w->fd, P->out.data, P->out.len, pass)) rc = QV_EWORKER;
    if (rc) {
        curl_slist_free_all(jar);
        complete_drop(
            f, QV_FAILED, rc,
            qv_future_message(f, rc, "could not hand the request to worker %d", (int)w->pid));
        if (rc == QV_EWORKER) kill_worker(w);
        return SENT;
    }
    if (!kept) {
        curl_slist_free_all(w->jar);
        w->jar = jar;
        w->jar_version = version;
    }
    if (was_held) f->started_ms = qv_now_ms(); /* its wait for a worker ends */
    w->f = f;
    w->f_lost = 0;
    w->cancel_sent = 0;
    w->hook_deadline = 0;
    w->stopped = 0;
    return SENT;
}

/* Sends f (just popped, not begun) ahead into busy w's mailbox, with no
 * jar: it goes only if the worker's jar is the session's. f begins held
 * (a cancel then completes it at once, as a queued one). Returns SENT,
 * HELD when it could not go ahead (held for an idle worker: no frame in one
 * pipe write, an output_fd, which a pipe cannot carry, or no memory), or
 * DROPPED when its cancel completed it before it began (the queue's
 * reference let go). */
static int send_ahead(procs *P, pworker *w, qv_future *f)
{
    uint64_t version = w->jar_version;
    f->req.wire_id = ++P->ids;
    /* (Only which version the jar is: this request cannot carry it.) */
    int rc = qv_session_jar_export(f->session, f->req.host, &version, NULL);
    /* Up to PIPE_BUF, a write into the empty pipe is whole, and so is a read. */
    int fits = !rc && version == w->jar_version && f->req.io->output_fd <= 0 &&
               !qv_wire_encode_request(&P->out, f, f->attempts + 1, NULL, QV_JAR_KEPT) &&
               P->out.len <= PIPE_BUF;
    /* Only now: once held, a cancel completes f at once (f->session goes). */
    if (!qv_future_begin(f, &P->held_by)) {
        qv_future_drop(f);
        return DROPPED;
    }
    if (!fits || write(w->mbox_w, P->out.data, P->out.len) != (ssize_t)P->out.len) {
        hold(P, f);
        return HELD;
    }
    w->next = f;
    w->next_taken = w->next_cancel_sent = 0;
    return SENT;
}

/* Takes f (popped) to idle worker w. */
static int assign(procs *P, pworker *w, qv_future *f)
{
    if (qv_future_begin(f, &P->run_by)) return hand(P, w, f, 0);
    qv_future_drop(f); /* the queue's: its cancel completed it */
    return DROPPED;
}

/* Takes w's next back from its mailbox if the worker has not taken it;
 * returns 1 if it did (w->next is this thread's to give again). */
static int take_back(pworker *w)
{
    if (w->next_taken) return 0;
    unsigned char frame[PIPE_BUF];
    ssize_t n;
    while ((n = read(w->mbox_r, frame, sizeof(frame))) < 0 && errno == EINTR) {
    }
    if (n > 0) return 1;
    w->next_taken = 1;
    return 0;
}

/* w's next, no longer sent. */
static qv_future *unsend(pworker *w)
{
    qv_future *f = w->next;
    w->next = NULL;
    return f;
}

/* The oldest request still in a mailbox, taken back (NULL: none). */
static qv_future *take_oldest_ahead(procs *P)
{
    for (;;) {
        pworker *oldest = NULL;
        for (int i = 0; i < P->nw; i++) {
            pworker *b = &P->w[i];
            if (b->next && !b->next_taken &&
                (!oldest || b->next->req.wire_id < oldest->next->req.wire_id))
                oldest = b;
        }
        if (!oldest) return NULL;
        if (take_back(oldest)) return unsend(oldest);
    }
}

/* The worker has answered f and gone on to next: next's wait for a
 * worker ends now, unless a cancel completed it meanwhile (then the worker
 * runs it for nothing, until the cancel reaches it, and its answer goes). */
static void promote(procs *P, pworker *w)
{
    w->cancel_sent = w->next_cancel_sent;
    w->hook_deadline = 0;
    w->f = unsend(w);
    w->stopped = 0;
    w->f_lost = !unhold(P, w->f);
    if (!w->f_lost) w->f->started_ms = qv_now_ms();
}

/* After an answer: the worker went on to next if it says it took it, or if
 * this thread cannot take it back; else next waits for an idle worker. */
static void after_answer(procs *P, pworker *w, int took)
{
    if (!w->next) return;
    if (took || !take_back(w))
        promote(P, w);
    else
        hold(P, unsend(w));
}

/* Wakes w, which waits for an answer to be acted on. */
static void send_room(pworker *w)
{
    qv_buf b = {0};
    if (w->fd >= 0 && !qv_wire_encode_bare(&b, QV_WIRE_ROOM)) qv_fd_write_all(w->fd, b.data, b.len);
    qv_buf_free(&b);
}

/* The ring lent to w's reader comes back to this thread (see
 * qv_pipe_ring_detach): QV_OK, or why the body's rest is lost. */
static int take_ring_back(pworker *w)
{
    if (!w->ring_lent) return QV_OK;
    w->ring_lent = 0;
    /* What it holds still and the reader does not get (it let go, or there
     * was no memory) is dropped: no one's, not the next request's. */
    int rc = qv_pipe_ring_detach(w->pipe, &w->tail);
    /* While the reader had the ring, the worker's wake-up flag was taken
     * for it: this thread asks again, or the next body that fills the ring
     * waits for good. */
    qv_ring_reader_wait(&w->ring, w->tail);
    qv_ring_taken(&w->ring, w->tail, 0);
    return rc;
}

/* The future's last word from its worker, then the worker is idle again. */
static void settle(pworker *w, int st, int err, char *msg, qv_response *r)
{
    qv_future *f = w->f;
    w->f = NULL;
    w->hook_deadline = 0;
    w->served++;
    w->stopped = 0;
    qv_free(w->stopped_msg);
    w->stopped_msg = NULL;
    if (w->pipe) {
        /* Completed with its headers: this outcome ends its body, after
         * what its reader has not taken from the ring yet. */
        int rc = take_ring_back(w);
        if (rc && st == QV_FINISHED) {
            st = QV_FAILED;
            err = rc;
            qv_free(msg);
            msg = qv_future_message(f, rc,
                                    rc == QV_ENOMEM ? "out of memory for the streamed body"
                                                    : "malformed body ring from worker %d",
                                    (int)w->pid);
        }
        qv_pipe_finish(w->pipe, st == QV_FINISHED ? QV_OK : err, msg);
        qv_pipe_unref(w->pipe);
        w->pipe = NULL;
        qv_free(msg);
        qv_response_free(r);
        qv_stream_release(f);
    } else if (w->f_lost) {
        qv_free(msg);
        qv_response_free(r);
    } else {
        complete(f, st, err, msg, r);
    }
    qv_future_drop(f); /* the queue's reference */
}

/* Returns 0, or -1 for a malformed answer (the worker is being killed). */
static int on_response(procs *P, pworker *w, const unsigned char *p, size_t len)
{
    qv_response *r = NULL;
    int err = QV_OK;
    char *msg = NULL;
    struct curl_slist *jar = NULL;
    long conns = 0;
    double retry_ms = -1;
    int jar_kept, err_status;
    int rc = qv_wire_decode_response(P->base.bodies, p, len, &r, &err, &msg, &err_status, &jar,
                                     &jar_kept, &conns, &retry_ms);
    qv_future *f = w->f;
    if (rc) {
        /* A worker that talks nonsense is not trusted with more work. */
        kill_worker(w);
        settle(w, QV_FAILED, QV_EPROTOCOL,
               qv_future_message(f, QV_EPROTOCOL,
                                 "malformed answer from worker %d: the pool stopped it",
                                 (int)w->pid),
               NULL);
        return -1;
    }
    atomic_fetch_add(&P->base.connections, (size_t)conns);
    f->out_status = (unsigned short)err_status;
    if (w->stopped && !w->f_lost) {
        /* Stopped here, whatever the worker made of it. */
        f->out_status = 0;
        qv_response_free(r);
        r = NULL;
        qv_free(msg);
        msg = w->stopped_msg;
        w->stopped_msg = NULL;
        err = w->stopped;
        retry_ms = -1;
    }
    if (w->f_lost) {
        /* Nothing of a request completed by its cancel goes to the session
         * (which the future no longer holds); the jar the worker has now is
         * no session's. */
        if (jar_kept != QV_JAR_KEPT) {
            curl_slist_free_all(w->jar);
            w->jar = jar;
            w->jar_version = 0;
        }
        settle(w, QV_CANCELLED, QV_ECANCELLED, msg, r);
        return 0;
    }
    if (jar_kept == QV_JAR_UNKNOWN) {
        /* It could not load the jar it was sent: the whole jar goes with
         * its next request, and nothing of its jar comes into the session. */
        curl_slist_free_all(w->jar);
        w->jar = NULL;
        w->jar_version = 0;
    } else if (!jar_kept) {
        /* The worker's jar is `jar` now; still the session's if no other
         * change came in between (then the version after the merge). */
        qv_session_jar_merge(f->session, w->jar, jar, &w->jar_version);
        curl_slist_free_all(w->jar);
        w->jar = jar;
    }
    if (retry_ms >= 0 && f->attempts <= f->req.retry->max_retries) {
        /* The worker skipped the hooks: this attempt is to be retried. The
         * wait is the worker's word, so it is held to the policy's cap. */
        double cap = (double)f->req.retry->max_backoff_ms;
        f->out_resp = r;
        f->out_err = err;
        f->out_msg = msg;
        w->f = NULL;
        w->hook_deadline = 0;
        if (qv_retry_requeue(f, retry_ms < cap ? retry_ms : cap)) {
            qv_future_drop(f); /* this attempt's queue reference */
            return 0;
        }
        /* No retry after all (cancelled, no memory): this is the outcome. */
        w->f = f;
        r = f->out_resp;
        err = f->out_err;
        msg = f->out_msg;
        f->out_resp = NULL;
        f->out_msg = NULL;
    }
    if (err == QV_ECANCELLED)
        settle(w, QV_CANCELLED, err, msg, NULL);
    else if (err)
        settle(w, QV_FAILED, err, msg, NULL);
    else {
        r->timing.queued_ms = f->started_ms - f->submitted_ms; /* the wait was here */
        r->attempts = f->attempts;
        settle(w, QV_FINISHED, QV_OK, NULL, r);
    }
    return 0;
}

/* A debug event of f's transfer, from its worker: f's on_debug runs here,
 * outside the fork lock's read side, as done callbacks do. What does not
 * read as one is dropped: it is only a trace. */
static void debug_event(qv_future *f, const unsigned char *p, size_t len)
{
    qv_debug_kind kind;
    const char *data;
    size_t n;
    const qv_req_calls *c = f->req.calls;
    if (!c->on_debug || qv_wire_decode_debug(p, len, &kind, &data, &n)) return;
    dispatcher_gate(0);
    c->on_debug(f, kind, data, n, c->on_debug_arg);
    dispatcher_gate(1);
}

static int watch(procs *P, int fd)
{
    return epoll_ctl(P->ep, EPOLL_CTL_ADD, fd,
                     &(struct epoll_event){.events = EPOLLIN, .data.fd = fd});
}

/* Unwatched before it is closed: a copy of the descriptor in another
 * process (a later pool's zygote, until it closes what it inherited) would
 * keep the watch of a closed descriptor alive. */
static void close_socket(procs *P, pworker *w)
{
    if (w->fd < 0) return;
    epoll_ctl(P->ep, EPOLL_CTL_DEL, w->fd, NULL);
    close(w->fd);
    w->fd = -1;
    qv_ring_room_kick(&w->ring); /* asleep for room, it finds its socket closed */
}

static void send_cancel(procs *P, pworker *w, uint64_t id);

/* Tells w to stop f's transfer (once). */
static void cancel_running(procs *P, pworker *w)
{
    if (!w->cancel_sent) send_cancel(P, w, w->f->req.wire_id);
    w->cancel_sent = 1;
}

/* f fails here with err and msg, whatever its worker answers: it is told
 * to stop, and what it still sends goes. */
static void stop_running(procs *P, pworker *w, int err, char *msg)
{
    w->stopped = err;
    w->stopped_msg = msg;
    cancel_running(P, w);
}

/* f's worker wants on_upload's next bytes: the callback runs in this
 * thread (outside the fork lock, as on_data), straight into the upload
 * area of the worker's ring where the worker asked (within the area: the
 * decoder checks), and a small answer says how many it made. With at most
 * one answer on its way, the socket always has room for it: this thread's
 * write never waits for a worker. An answer it cannot give is an error
 * (-1), which stops the transfer. */
static void on_upload_want(procs *P, pworker *w, const unsigned char *p, size_t len)
{
    qv_future *f = w->f;
    uint64_t id;
    size_t cap, at;
    long got = -1;
    if (qv_wire_decode_upload_want(p, len, &id, &cap, &at)) {
        id = f->req.wire_id; /* (no worker of ours asks so): an error answers */
        cap = 0;
    }
    /* (A cancelled future's is not called: the worker stops at the error.) */
    if (cap && !w->f_lost && f->req.io->on_upload && id == f->req.wire_id &&
        !atomic_load(&f->cancel_requested)) {
        dispatcher_gate(0);
        got = f->req.io->on_upload(w->ring.up + at, cap, f->req.io->on_upload_arg);
        dispatcher_gate(1);
        if (got < 0 || (size_t)got > cap) got = -1;
    }
    if (!qv_wire_encode_upload(&P->out, id, got)) qv_fd_write_all(w->fd, P->out.data, P->out.len);
}

/* A streamed response's headers: the future completes now (its hooks ran
 * in the worker); its body comes in data frames. */
static void on_head_frame(procs *P, pworker *w, const unsigned char *p, size_t len)
{
    qv_future *f = w->f;
    qv_response *r = NULL;
    int err, jar_kept, err_status;
    char *msg = NULL;
    struct curl_slist *jar = NULL;
    long conns;
    double retry_ms;
    if (w->pipe || w->f_lost || w->stopped) return;
    int rc = qv_wire_decode_response(NULL, p, len, &r, &err, &msg, &err_status, &jar, &jar_kept,
                                     &conns, &retry_ms);
    qv_free(msg);
    curl_slist_free_all(jar);
    if (!rc && !r) rc = QV_EPROTOCOL;
    if (!rc && !(w->pipe = qv_pipe_new_ring(f, &w->ring, w->tail))) rc = QV_ENOMEM;
    if (rc) {
        /* The body would have nowhere to go: the future fails with its answer. */
        qv_response_free(r);
        stop_running(
            P, w, rc,
            rc == QV_ENOMEM
                ? qv_future_message(f, rc, "out of memory for the streamed body")
                : qv_future_message(f, rc, "malformed headers from worker %d", (int)w->pid));
        return;
    }
    w->ring_lent = 1;
    r->pipe = w->pipe;
    r->body_bytes = 0;
    r->timing.queued_ms = f->started_ms - f->submitted_ms;
    r->attempts = f->attempts;
    atomic_store(&f->stream_open, 1); /* the transfer's hold */
    complete(f, QV_FINISHED, QV_OK, NULL, r);
    qv_stream_opened(f);
}

/* Bytes of w's ring for f's on_data (in this thread, outside the fork
 * lock, as a done callback); or for no one (no future, one that stopped,
 * was lost or cancelled: no more calls, as pump.c, its worker is told to
 * stop; a streamed body whose reader let go). A stop tells the worker to
 * stop and keeps the error for its answer. */
static void hand_on(procs *P, pworker *w, const unsigned char *p, size_t n)
{
    qv_future *f = w->f;
    if (!f || w->f_lost || w->stopped || w->pipe || !f->req.io->on_data ||
        atomic_load(&f->cancel_requested))
        return;
    dispatcher_gate(0);
    int rc = qv_sink_hand_on(f, (const char *)p, n);
    dispatcher_gate(1);
    if (rc) stop_running(P, w, rc, qv_sink_stop_message(f, rc, 0));
}

/* w's ring is lent to its reader: acts on what the reader said (a worker
 * that waits for room it made is woken; one whose reader let go is
 * stopped, and the ring comes back to this thread, which drops the rest).
 * RING_BAD if the worker wrote a head it could not have. */
static int lent_ring(procs *P, pworker *w)
{
    int st = qv_pipe_ring_state(w->pipe);
    if (st & QV_PIPE_BAD) return RING_BAD;
    if (st & QV_PIPE_CLOSED) {
        take_ring_back(w);
        cancel_running(P, w);
    }
    return RING_EMPTY;
}

/* Pieces handed to on_data at a time: a quarter of the ring, so the
 * worker has room again while on_data runs. At most a ring's worth is
 * taken in one go: a worker as fast as its on_data does not keep this
 * thread from the others. */
#define DATA_PIECE (QV_RING_CAP / 4)

/* Takes what w's ring holds (see ring.c): RING_EMPTY once it is empty (the
 * worker then wakes this thread when more comes) or its reader takes it,
 * RING_LEFT if bytes are left (a ring's worth was taken: ring_more),
 * RING_BAD if the worker wrote an index it could not have (it is to be
 * killed as malformed). */
static int ring_drain(procs *P, pworker *w)
{
    size_t taken = 0;
    if (w->ring_lent) {
        int rc = lent_ring(P, w);
        if (rc != RING_EMPTY || w->ring_lent) return rc;
    }
    /* A streamed body's bytes wait for its headers' frame, sent before
     * them but maybe not read yet. */
    if (w->f && !w->pipe && !w->f_lost && !w->stopped && w->f->req.io->stream) return RING_EMPTY;
    for (;;) {
        long in = qv_ring_avail(&w->ring, w->tail);
        if (in < 0) return RING_BAD;
        if (in == 0) {
            if (qv_ring_reader_wait(&w->ring, w->tail)) continue; /* more came meanwhile */
            return RING_EMPTY;
        }
        if (taken >= QV_RING_CAP && !w->reaped) {
            if (!w->ring_more) P->ring_more++;
            w->ring_more = 1;
            return RING_LEFT;
        }
        size_t n, at = qv_ring_contig(w->tail, (size_t)in, &n);
        if (n > DATA_PIECE) n = DATA_PIECE;
        hand_on(P, w, w->ring.data + at, n);
        w->tail += n;
        taken += n;
        qv_ring_taken(&w->ring, w->tail, (size_t)in - n);
    }
}

/* A worker that wrote what it could not have is stopped (as for a
 * malformed frame): its death fails its future with QV_EPROTOCOL. */
static void malformed(procs *P, pworker *w)
{
    w->malformed = 1;
    close_socket(P, w);
    kill_worker(w);
}

static void on_progress_frame(pworker *w, const unsigned char *p, size_t len)
{
    qv_future *f = w->f;
    long long v[4];
    if (w->f_lost || !f->req.io->on_progress || atomic_load(&f->cancel_requested) ||
        qv_wire_decode_progress(p, len, v))
        return;
    dispatcher_gate(0);
    f->req.io->on_progress(f, v[0], v[1], v[2], v[3], f->req.io->on_progress_arg);
    dispatcher_gate(1);
}

static void on_worker_readable(procs *P, pworker *w)
{
    /* The hooks frame and the response may come in one read. */
    do {
        int type;
        const unsigned char *p;
        size_t len;
        int rc = qv_frame_read(&w->in, w->fd, &type, &p, &len);
        if (rc) {
            /* Gone (or garbage): its death notice from the zygote settles it. */
            w->malformed |= rc == QV_EPROTOCOL;
            close_socket(P, w);
            kill_worker(w);
            return;
        }
        /* The body bytes put in the ring before this frame was sent come
         * first (a RING frame only says that some came); but for a
         * streamed response's headers, which come before its body. */
        if (type == QV_WIRE_HEAD) {
            if (w->f) on_head_frame(P, w, p, len);
            type = QV_WIRE_RING;
        }
        rc = ring_drain(P, w);
        if (rc == RING_BAD) {
            malformed(P, w);
            return;
        }
        if (rc == RING_LEFT) {
            if (type != QV_WIRE_RING) qv_frame_unread(&w->in); /* for when the rest is taken */
            return;
        }
        if (!w->f) continue;
        if (type == QV_WIRE_DEBUG && !w->f_lost)
            debug_event(w->f, p, len);
        else if (type == QV_WIRE_PROGRESS)
            on_progress_frame(w, p, len);
        else if (type == QV_WIRE_UPLOAD_WANT)
            on_upload_want(P, w, p, len);
        else if (type == QV_WIRE_HOOKS && P->base.o.hook_timeout_ms > 0)
            w->hook_deadline = qv_now_ms() + (double)P->base.o.hook_timeout_ms;
        else if (type == QV_WIRE_RESPONSE || type == QV_WIRE_RESPONSE_TOOK) {
            if (on_response(P, w, p, len)) {
                close_socket(P, w); /* not to be given more; its death settles next */
                return;
            }
            after_answer(P, w, type == QV_WIRE_RESPONSE_TOOK);
            /* The ring's bytes from now on are the next request's. */
            if (qv_ring_answered(&w->ring, ++w->answers)) send_room(w);
        }
    } while (qv_frame_buffered(&w->in));
}

/* Takes the rest of w's ring, then the frames already read after it. */
static void resume_ring(procs *P, pworker *w)
{
    int rc = ring_drain(P, w);
    if (rc == RING_BAD) malformed(P, w);
    if (rc == RING_EMPTY && qv_frame_buffered(&w->in)) on_worker_readable(P, w);
}

/* Workers whose rings are lent to readers, which may have poked (room
 * made for a worker that waits, a reader that let go, a bad head). */
static void look_at_readers(procs *P)
{
    for (int i = 0; i < P->nw; i++)
        if (P->w[i].ring_lent) resume_ring(P, &P->w[i]);
}

/* Workers whose rings were left with bytes in (ring_more), taken on. */
static void revisit_rings(procs *P)
{
    for (int i = 0; i < P->nw; i++) {
        pworker *w = &P->w[i];
        if (!w->ring_more) continue;
        w->ring_more = 0;
        P->ring_more--;
        if (w->fd >= 0) resume_ring(P, w);
    }
}

static void describe_death(char *buf, size_t n, int status, int timed_out)
{
    if (WIFSIGNALED(status))
        snprintf(buf, n, "killed by signal %d (%s)%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)),
                 timed_out ? ", its hook ran past the hook timeout" : "");
    else
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
}

/* Fails what waits with `why`: everything, also what comes while this
 * runs, for a pool that can run nothing any more; or, for a failure a
 * later submit may not meet (no worker could be started just now), only
 * what was waiting when it was called. */
static void fail_queued(procs *P, const char *why, int all)
{
    qv_executor *ex = &P->base;
    pthread_mutex_lock(&ex->mu);
    size_t left = all ? SIZE_MAX : ex->queued + ex->nretries;
    pthread_mutex_unlock(&ex->mu);
    for (; left > 0; left--) {
        pthread_mutex_lock(&ex->mu);
        qv_future *f = qv_executor_drain_locked(ex);
        pthread_mutex_unlock(&ex->mu);
        if (!f) return;
        fail_lost(f, why);
    }
}

static void remove_worker(procs *P, int i)
{
    if (P->w[i].ring_more) P->ring_more--;
    P->slot_used[P->w[i].slot] = 0;
    close_socket(P, &P->w[i]);
    close(P->w[i].mbox_r);
    close(P->w[i].mbox_w);
    curl_slist_free_all(P->w[i].jar);
    qv_buf_free(&P->w[i].in.buf);
    P->w[i] = P->w[--P->nw];
    atomic_store(&P->base.workers, P->nw);
}

/* The oldest held future, out of the held list (NULL: none). */
static qv_future *take_held(procs *P)
{
    qv_future *f = qv_future_of(qv_list_first(&P->held));
    if (f) qv_list_unlink(&P->held, &f->q);
    return f;
}

/* Fails the held futures with `why`. */
static void fail_held(procs *P, const char *why)
{
    qv_future *f;
    while ((f = take_held(P))) {
        if (unhold(P, f))
            fail_lost(f, why);
        else
            qv_future_drop(f);
    }
}

/* Nothing can run in this pool any more: every future it holds or gets
 * fails with `why` (copied); workers are let go. */
static void break_pool(procs *P, const char *why)
{
    snprintf(P->why, sizeof(P->why), "%s", why);
    P->broken = P->why;
    epoll_ctl(P->ep, EPOLL_CTL_DEL, P->zfd, NULL); /* gone, or not to be heard */
    for (int i = P->nw - 1; i >= 0; i--) {
        pworker *w = &P->w[i];
        if (w->next) hold(P, unsend(w));
        if (w->f)
            settle(w, QV_FAILED, QV_EWORKER, qv_future_message(w->f, QV_EWORKER, "%s", P->why),
                   NULL);
        remove_worker(P, i);
    }
    fail_held(P, P->why);
    fail_queued(P, P->why, 1);
}

/* Its socket, then its mailbox's read and write ends; -1 each if they did
 * not all come (the kernel drops what does not fit under the limit of open
 * files, and says MSG_CTRUNC), closing whatever came. */
static void take_fds(struct msghdr *mh, int fds[3])
{
    fds[0] = fds[1] = fds[2] = -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(mh);
    if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) return;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    memcpy(fds, CMSG_DATA(c), (n < 3 ? n : 3) * sizeof(int));
    if (n == 3) return;
    for (size_t i = 0; i < n && i < 3; i++) close(fds[i]);
    fds[0] = fds[1] = fds[2] = -1;
}

/* A slot of the zygote's word (the status field): one asked for, and let
 * go now; -1 if it is no such slot. */
static int slot_back(procs *P, int slot)
{
    if (slot < 0 || slot >= P->base.o.max_workers || !P->slot_used[slot]) return -1;
    P->slot_used[slot] = 0;
    return slot;
}

static void on_zygote(procs *P)
{
    zmsg m;
    char ctl[CMSG_SPACE(3 * sizeof(int))];
    struct iovec iov = {&m, sizeof(m)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
    ssize_t r = recvmsg(P->zfd, &mh, MSG_CMSG_CLOEXEC);
    if (r != (ssize_t)sizeof(m)) {
        if (r < 0 && errno == EINTR) return;
        /* The zygote is gone, and its workers with it (PDEATHSIG). */
        break_pool(P, "the process pool's zygote died");
        return;
    }
    if (m.type == 'W') {
        int fds[3];
        take_fds(&mh, fds);
        P->spawning--;
        /* Its slot, still the pool's until the worker is taken in. */
        int slot = slot_back(P, m.status);
        if (fds[0] >= 0 && (slot < 0 || watch(P, fds[0]))) {
            /* (no memory for one more watch: as if it never came) */
            for (int i = 0; i < 3; i++) close(fds[i]);
            fds[0] = -1;
        }
        if (fds[0] < 0) {
            /* Its socket did not come (this process is at its descriptor
             * limit: the kernel drops it and says MSG_CTRUNC): a worker that
             * cannot be reached goes; with none at all, what waits fails. */
            kill(m.pid, SIGKILL);
            if (P->nw == 0 && P->spawning == 0)
                fail_queued(P,
                            mh.msg_flags & MSG_CTRUNC
                                ? "could not take a new worker's socket: this process is at "
                                  "its limit of open files"
                                : "a new worker came without its socket",
                            0);
            return;
        }
        /* A fresh ring: empty, and the worker wakes this thread for its
         * first bytes. */
        P->slot_used[slot] = 1;
        P->w[P->nw] =
            (pworker){.pid = m.pid, .fd = fds[0], .mbox_r = fds[1], .mbox_w = fds[2], .slot = slot};
        qv_ring_at(&P->w[P->nw].ring, P->rings, slot);
        qv_ring_reset(&P->w[P->nw].ring);
        P->nw++;
        atomic_store(&P->base.workers, P->nw);
        return;
    }
    if (m.pid < 0) { /* a spawn failed */
        P->spawning--;
        slot_back(P, m.status);
        if (P->nw == 0 && P->spawning == 0) fail_queued(P, "could not start a worker process", 0);
        return;
    }
    for (int i = 0; i < P->nw; i++) {
        pworker *w = &P->w[i];
        if (w->pid != m.pid) continue;
        /* What it wrote before it died counts: an answer there settles its
         * future, and says whether it had gone on to next. (Not waiting for
         * more: a process it forked may hold its end open.) */
        w->reaped = 1;
        if (w->fd >= 0 && !fcntl(w->fd, F_SETFL, O_NONBLOCK))
            while (w->fd >= 0) on_worker_readable(P, w);
        /* And what it put in its ring after its last frame. */
        if (!w->malformed && ring_drain(P, w) == RING_BAD) w->malformed = 1;
        /* A next that it had not started (its answer before it never came)
         * goes to another worker. */
        if (w->next) hold(P, unsend(w));
        if (w->f && w->malformed) {
            /* Its death is this process's doing, not the hook's. */
            settle(w, QV_FAILED, QV_EPROTOCOL,
                   qv_future_message(w->f, QV_EPROTOCOL,
                                     "malformed answer from worker %d: the pool stopped it",
                                     (int)m.pid),
                   NULL);
        } else if (w->f) {
            char why[160];
            describe_death(why, sizeof(why), m.status, w->timed_out);
            settle(w, QV_FAILED, QV_EWORKER,
                   qv_future_message(w->f, QV_EWORKER, "worker %d %s", (int)m.pid, why), NULL);
        }
        remove_worker(P, i);
        return;
    }
}

/* Hands out queued work, asks for workers, and says whether to stop. */
static int schedule(procs *P)
{
    qv_executor *ex = &P->base;
    /* An idle worker that has served its max_requests_per_worker goes (it
     * exits once it reads the end of its socket); a new one is asked for
     * below if there is work. */
    for (int i = P->nw - 1; i >= 0; i--)
        if (!P->w[i].f && P->w[i].served >= ex->o.max_requests_per_worker) remove_worker(P, i);
    pthread_mutex_lock(&ex->mu);
    P->queue_wait = -1;
    int idle = 0;
    for (int i = 0; i < P->nw; i++) {
        pworker *w = &P->w[i];
        if (w->f || w->fd < 0) continue;
        /* Oldest first: what was held or sent ahead left the queue before
         * anything still in it, and must not wait behind a slow request. */
        pthread_mutex_unlock(&ex->mu);
        qv_future *f = take_held(P);
        int begun = 1;
        if (!f) f = take_oldest_ahead(P);
        pthread_mutex_lock(&ex->mu);
        if (!f) {
            begun = 0;
            if (!(f = qv_executor_pop_locked(ex, &P->queue_wait))) {
                idle = 1;
                break;
            }
        }
        pthread_mutex_unlock(&ex->mu);
        /* Cancelled meanwhile: this worker is still free for the next one. */
        if ((begun ? hand(P, w, f, 1) : assign(P, w, f)) == DROPPED) i--;
        pthread_mutex_lock(&ex->mu);
    }
    /* Every worker there and busy: send ahead (not to a worker that is to
     * go after the request it runs, nor to one running a request whose
     * cancel completed it: what that does to its jar is no session's). Not
     * with max_queued: what it bounds is everything that waits for a
     * worker, and the queue is what it counts. */
    int ahead = !idle && !ex->o.max_queued && P->nw == ex->o.max_workers;
    for (int i = 0; ahead && qv_list_empty(&P->held) && i < P->nw; i++) {
        pworker *w = &P->w[i];
        if (!w->f || w->f_lost || w->next || w->fd < 0 ||
            w->served >= ex->o.max_requests_per_worker - 1)
            continue;
        qv_future *f = qv_executor_pop_locked(ex, &P->queue_wait);
        if (!f) break;
        /* Outside the queue's lock: a cancel takes the future's lock first. */
        pthread_mutex_unlock(&ex->mu);
        if (send_ahead(P, w, f) == DROPPED) i--; /* this worker can still take one */
        pthread_mutex_lock(&ex->mu);
    }
    /* (A worker whose answer was garbage has no f but may have a next,
     * which its death notice settles.) */
    int busy = 0;
    for (int i = 0; i < P->nw; i++) busy += P->w[i].f || P->w[i].next;
    int want = (int)ex->queued;
    for (qv_link *n = qv_list_first(&P->held); n; n = qv_list_next(&P->held, n)) want++;
    int room = ex->o.max_workers - P->nw - P->spawning;
    int stop = ex->shutdown && qv_executor_empty_locked(ex) && busy == 0 && qv_list_empty(&P->held);
    pthread_mutex_unlock(&ex->mu);
    if (P->broken) {
        fail_held(P, P->broken);
        fail_queued(P, P->broken, 1);
        return ex->shutdown;
    }
    for (int k = 0; k < want - P->spawning && k < room; k++) {
        /* A free slot for its ring (there is one per worker that may be). */
        int32_t slot = 0;
        while (P->slot_used[slot]) slot++;
        unsigned char c[1 + sizeof(slot)] = {'S'};
        memcpy(c + 1, &slot, sizeof(slot));
        if (write(P->zfd, c, sizeof(c)) != (ssize_t)sizeof(c)) break;
        P->slot_used[slot] = 1;
        P->spawning++;
    }
    return stop;
}

static int cancel_wanted(const qv_future *f)
{
    return f && atomic_load(&f->cancel_requested);
}

/* Tells w to cancel the request it knows as id (the worker ignores a
 * cancel of one it has answered already). */
static void send_cancel(procs *P, pworker *w, uint64_t id)
{
    if (!qv_wire_encode_cancel(&P->out, id)) qv_fd_write_all(w->fd, P->out.data, P->out.len);
    qv_ring_room_kick(&w->ring); /* asleep for room, it reads the cancel */
}

static void send_cancels(procs *P)
{
    for (int i = 0; i < P->nw; i++) {
        pworker *w = &P->w[i];
        if (w->fd < 0) continue;
        if (!w->cancel_sent && cancel_wanted(w->f)) cancel_running(P, w);
        if (!w->next_cancel_sent && cancel_wanted(w->next)) {
            if (take_back(w)) {
                drop(P, unsend(w));
                continue;
            }
            send_cancel(P, w, w->next->req.wire_id);
            w->next_cancel_sent = 1;
        }
    }
    for (qv_link *n = qv_list_first(&P->held), *after; n; n = after) {
        after = qv_list_next(&P->held, n);
        qv_future *f = qv_future_of(n);
        if (!cancel_wanted(f)) continue;
        qv_list_unlink(&P->held, n);
        drop(P, f);
    }
}

/* Kills workers whose hook ran past the hook timeout; returns the ms until
 * the next deadline (-1: none). */
static int check_hook_deadlines(procs *P)
{
    double now = qv_now_ms(), next = -1;
    for (int i = 0; i < P->nw; i++) {
        pworker *w = &P->w[i];
        if (!w->hook_deadline || w->timed_out) continue;
        if (now >= w->hook_deadline) {
            w->timed_out = 1;
            kill_worker(w);
        } else if (next < 0 || w->hook_deadline - now < next) {
            next = w->hook_deadline - now;
        }
    }
    return next < 0 ? -1 : (int)next + 1;
}

static pworker *worker_by_fd(procs *P, int fd)
{
    for (int i = 0; i < P->nw; i++)
        if (P->w[i].fd == fd) return &P->w[i];
    return NULL;
}

static void *dispatch_main(void *arg)
{
    procs *P = arg;
    struct epoll_event ev[64];
    qv_sigpipe_block_thread();
    transit_add(-1); /* started: before the read side, which a waiting fork holds off */
    on_dispatcher = 1;
    qv_own_executor = &P->base;
    pthread_rwlock_rdlock(&fork_lock);
    for (;;) {
        /* Before schedule looks at the queue: a submit after that look sees
         * the flag and wakes the wait; one before is scheduled. */
        atomic_store(&P->sleeping, 1);
        qv_later_run(); /* the streams' readers, once per pass */
        if (schedule(P)) break;
        int timeout = check_hook_deadlines(P);
        if (P->queue_wait >= 0 && (timeout < 0 || P->queue_wait < timeout))
            timeout = (int)P->queue_wait;
        if (P->ring_more) timeout = 0;     /* a ring to come back to: only a look */
        pthread_rwlock_unlock(&fork_lock); /* sleeping: a pool may fork now */
        int n = epoll_wait(P->ep, ev, (int)(sizeof(ev) / sizeof(ev[0])), timeout);
        atomic_store(&P->sleeping, 0);
        pthread_rwlock_rdlock(&fork_lock);
        if (n < 0 && errno != EINTR) {
            /* Fail what the pool holds rather than leave it pending; go on
             * with the wake pipe alone, failing what is submitted, until
             * shut down. */
            if (!P->broken) {
                char why[96];
                snprintf(why, sizeof(why), "the process pool could not wait for its workers: %s",
                         strerror(errno));
                break_pool(P, why);
            } else {
                nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
            }
            continue;
        }
        int woken = 0, zygote = 0;
        for (int k = 0; k < n; k++) {
            woken |= ev[k].data.fd == P->wake[0];
            zygote |= ev[k].data.fd == P->zfd;
        }
        if (woken) {
            char drain[64];
            /* A short read emptied it (one read, not a second for EAGAIN). */
            while (read(P->wake[0], drain, sizeof(drain)) == (ssize_t)sizeof(drain)) {
            }
            send_cancels(P);
            look_at_readers(P);
        }
        /* Workers first (their answers), then the zygote (deaths, spawns),
         * which may reorder the worker array. */
        for (int k = 0; k < n; k++) {
            pworker *w = worker_by_fd(P, ev[k].data.fd); /* NULL for the pipe, the zygote */
            if (w) on_worker_readable(P, w);
        }
        if (zygote) on_zygote(P);
        if (P->ring_more) revisit_rings(P);
    }
    /* Ending (only on shutdown): procs_shutdown, already on its way, joins
     * and counts it off. */
    transit_add(1);
    pthread_rwlock_unlock(&fork_lock);
    return NULL;
}

/* Called under ex->mu, after the queue changed. */
static int procs_notify(qv_executor *ex)
{
    procs *P = (procs *)ex;
    if (atomic_load(&P->sleeping)) wake(P);
    return QV_OK;
}

static void procs_shutdown(qv_executor *ex)
{
    procs *P = (procs *)ex;
    if (P->started) {
        wake(P);
        pthread_join(P->thread, NULL);
        transit_add(-1);
    }
    P->started = 0;
    /* Closing the zygote's channel stops it; it kills and reaps its workers. */
    for (int i = P->nw - 1; i >= 0; i--) remove_worker(P, i);
    if (P->zfd >= 0) close(P->zfd);
    P->zfd = -1;
    if (P->zygote > 0) waitpid(P->zygote, NULL, 0);
    P->zygote = 0;
}

static void procs_destroy(qv_executor *ex)
{
    procs *P = (procs *)ex;
    if (P->wake[0] >= 0) close(P->wake[0]);
    if (P->wake[1] >= 0) close(P->wake[1]);
    qv_buf_free(&P->out);
    if (P->ep >= 0) close(P->ep);
    qv_free(P->w);
    qv_free(P->slot_used);
    qv_rings_free(P->rings, P->base.o.max_workers);
    qv_free(P);
}

static void procs_blank(qv_executor *ex)
{
    procs *P = (procs *)ex;
    P->zfd = P->wake[0] = P->wake[1] = P->ep = -1;
}

/* The pool's part of the executor: the zygote forked, then the dispatcher
 * started last (once it runs, nothing fails). */
static int procs_build(qv_executor *ex)
{
    procs *P = (procs *)ex;
    /* Forking while other threads are inside libcurl or OpenSSL (a resolver
     * lookup, a handshake) could leave the zygote with a lock nobody will
     * release: create process pools before any other quiver executor. */
    if (atomic_load(&qv_io_threads) > 0) return QV_EINVAL;
    /* A dispatcher outside a done callback holds the read side: the write
     * side would wait for it for good. */
    if (on_dispatcher && !in_callbacks) return QV_EINVAL;
    P->held_by =
        (qv_holder){.fn = held_cancel, .arg = P, .count = &P->base.pool_held, .waiting = 1};
    P->run_by = (qv_holder){.fn = pool_poke, .arg = P};
    P->w = qv_calloc((size_t)P->base.o.max_workers, sizeof(*P->w));
    P->slot_used = qv_calloc((size_t)P->base.o.max_workers, 1);
    P->rings = qv_rings_new(P->base.o.max_workers);
    int zsv[2] = {-1, -1};
    if (!P->w || !P->slot_used || !P->rings)
        return qv_executor_short("the process pool's worker tables", 0);
    if (pipe2(P->wake, O_CLOEXEC | O_NONBLOCK))
        return qv_executor_short("the process pool's wake pipe", errno);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, zsv))
        return qv_executor_short("the process pool's socket to its zygote", errno);
    P->zfd = zsv[0];
    pthread_rwlock_wrlock(&fork_lock);
    pthread_mutex_lock(&transit_mu);
    while (in_transit) pthread_cond_wait(&transit_cv, &transit_mu);
    pthread_mutex_unlock(&transit_mu);
    P->zygote = fork();
    if (P->zygote == 0) {
        /* Made from a done callback: no dispatcher, no executor's thread here. */
        on_dispatcher = 0;
        qv_own_executor = NULL;
        close(zsv[0]);
        qv_zygote_main(zsv[1], P->rings); /* never returns */
    }
    int err = errno;
    qv_rings_forked(P->rings, P->base.o.max_workers);
    pthread_rwlock_unlock(&fork_lock);
    close(zsv[1]);
    if (P->zygote < 0) return qv_executor_short("the process pool's zygote", err);
    /* After the fork: the zygote has no use for it. */
    if ((P->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || watch(P, P->wake[0]) || watch(P, P->zfd))
        return qv_executor_short("the process pool's epoll", errno);
    pthread_rwlock_rdlock(&fork_lock);
    transit_add(1);
    err = pthread_create(&P->thread, NULL, dispatch_main, P);
    int rc = err ? qv_executor_short("the process pool's dispatcher thread", err) : QV_OK;
    P->started = rc == QV_OK;
    if (rc) transit_add(-1);
    pthread_rwlock_unlock(&fork_lock);
    return rc;
}

const qv_executor_vt qv_procs_vt = {
    .notify = procs_notify,
    .size = sizeof(procs),
    .blank = procs_blank,
    .build = procs_build,
    .shutdown = procs_shutdown,
    .destroy = procs_destroy,
};
