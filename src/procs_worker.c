/* The process executor's other side: the zygote, forked once when the
 * executor is created, and the workers it forks on demand. A worker reads a
 * request frame, does the transfer and runs the hooks, and writes a response
 * frame back; whatever a hook does (crash, abort, exit, loop) costs only
 * this process. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------- worker */

typedef struct worker {
    int fd;
    int mbox;    /* the mailbox's read end (non-blocking; the parent reads it too) */
    uint64_t id; /* the parent's name for the request being served */
    /* A cancel of a request taken from the mailbox but not started yet (it
     * came while an older one ran): applied when that one starts. */
    uint64_t cancel_next;
    /* It could not load the jar it was sent: until a request brings the
     * whole jar again, it takes nothing from the mailbox (a request there
     * may count on the jar being the parent's). */
    int jar_lost;
    qv_slot slot;
    CURLM *multi;
    qv_session *ss; /* stand-in session: the jar and the hooks */
    qv_frame_reader in;
    const unsigned char *frame; /* the request read last, in `in` or `mail` until the next read */
    size_t frame_len;
    unsigned char mail[PIPE_BUF];
    unsigned char later[PIPE_BUF]; /* a request from the mailbox, kept while an older one runs */
    qv_buf out;
    /* The body ring (ring.c): bytes put in (head), and as far as the parent
     * was told of them (announced); the RING frame that wakes it. */
    qv_ring ring;
    uint64_t head, announced;
    qv_buf ring_frame;
    uint64_t answers; /* RESPONSE frames sent */
    /* When the transfer began (qv_now_ms): the total timeout counts from
     * then while this worker sleeps for room in the ring, inside libcurl's
     * write callback, where libcurl cannot count it. */
    double run_ms;
    int ring_fresh;     /* no byte of this request is in the ring yet */
    qv_later ring_owed; /* announces what is in at the end of the transfer's pass */
    /* on_upload: the parent's bytes libcurl has not taken yet, up_len of
     * them from up_at in the ring's upload area (ring.up, QV_UP_RING
     * bytes), how many more are asked for (0: none), and the end the
     * parent said (1, or -1 for an error). */
    size_t up_at, up_len, up_asked;
    int up_end;
} worker;

static worker *the_worker;
qv_ring *qv_worker_ring;

static int send_frame(worker *w, const qv_buf *b)
{
    return qv_fd_write_all(w->fd, b->data, b->len);
}

/* Tells the parent of the bytes put in the ring, if it waits for them (it
 * emptied the ring and sleeps): a frame, or a streamed body's reader woken. */
static void announce(worker *w)
{
    w->announced = w->head;
    qv_ring_stream_woken(&w->ring);
    if (qv_ring_reader_woken(&w->ring) && send_frame(w, &w->ring_frame))
        _exit(0); /* the parent is gone */
}

/* 1 if the transfer's connection has bytes to be received at once: this
 * worker goes on without sleeping. */
static int more_to_receive(worker *w)
{
    curl_socket_t s;
    return curl_easy_getinfo(w->slot.easy, CURLINFO_ACTIVESOCKET, &s) == CURLE_OK &&
           s != CURL_SOCKET_BAD && poll(&(struct pollfd){s, POLLIN, 0}, 1, 0) > 0;
}

/* The end of a pass: a parent that waits is woken once half the ring is in
 * (forward_data) or when this worker is about to sleep (nothing more to
 * receive at once), not once per receive: the reader is faster, and woken
 * per 100 KiB it slept as often (bench/NOTES.md). Else it looks again at
 * the next pass's end; the body's end wakes the parent with its answer. */
static void announce_owed(qv_later *l)
{
    worker *w = the_worker;
    if (w->head == w->announced) return;
    if (qv_ring_in(&w->ring, w->head) < QV_RING_CAP / 2 && qv_ring_consumer_waits(&w->ring) &&
        more_to_receive(w))
        qv_later_add(l);
    else
        announce(w);
}

/* A cancel from the parent, of the request being served (cur; NULL while
 * idle), or of one taken from the mailbox and not started yet: the parent
 * names requests in the order it sends them, so that one's name is the
 * larger. A cancel of a request answered already (it crossed the answer)
 * is stale. */
static void on_cancel(worker *w, qv_future *cur, const unsigned char *p, size_t len)
{
    uint64_t id;
    if (qv_wire_decode_cancel(p, len, &id)) return;
    if (cur && id == w->id)
        atomic_store(&cur->cancel_requested, 1);
    else if (id > w->id)
        w->cancel_next = id;
}

/* on_upload's answer from the parent, for the request being served (one
 * for a request answered already, which crossed the answer, goes). */
static void on_upload_frame(worker *w, const unsigned char *p, size_t len)
{
    uint64_t id;
    long got;
    if (qv_wire_decode_upload(p, len, &id, &got)) _exit(3); /* the parent would not */
    if (id != w->id || !w->up_asked) return;
    size_t asked = w->up_asked;
    w->up_asked = 0;
    if (got <= 0) {
        w->up_end = got < 0 ? -1 : 1;
        return;
    }
    if ((size_t)got > asked) _exit(3); /* more than asked for: the parent would not */
    w->up_len += (size_t)got;          /* put in the upload area, where asked */
}

/* A frame from the parent during a transfer: a cancel or upload bytes (or
 * room in the ring, which the one that waits for it looks at). */
static void on_control(worker *w, qv_future *cur, int type, const unsigned char *p, size_t len)
{
    if (type == QV_WIRE_CANCEL) on_cancel(w, cur, p, len);
    if (type == QV_WIRE_UPLOAD) on_upload_frame(w, p, len);
}

/* The parent wrote during a transfer, maybe more than one frame in a read. */
static void control_readable(qv_slot *slot)
{
    worker *w = the_worker;
    do {
        int type;
        const unsigned char *p;
        size_t len;
        if (qv_frame_read(&w->in, w->fd, &type, &p, &len)) _exit(0); /* parent gone */
        on_control(w, slot->f, type, p, len);
    } while (qv_frame_buffered(&w->in));
}

void qv_worker_debug(qv_future *f, qv_debug_kind kind, const char *data, size_t len, void *arg)
{
    (void)f;
    (void)arg;
    static qv_buf b;
    /* A trace that cannot be sent is not the request's failure; a parent
     * gone is noticed where the worker waits for it. */
    if (!qv_wire_encode_debug(&b, kind, data, len)) send_frame(the_worker, &b);
}

/* Waits in a callback of f's transfer for the parent's next frame and acts
 * on it: -1 if it was f's cancel. */
static int next_control(worker *w, qv_future *f)
{
    int type;
    const unsigned char *p;
    size_t len;
    if (qv_frame_read(&w->in, w->fd, &type, &p, &len)) _exit(0); /* parent gone */
    on_control(w, f, type, p, len);
    return atomic_load(&f->cancel_requested) ? -1 : 0;
}

/* Waits for the parent to have acted on every answer before (a request's
 * first byte), reading its frames meanwhile. 0, or -1 if a cancel came. */
static int wait_answers(worker *w, qv_future *f)
{
    announce(w); /* what is in, if the parent does not know of it yet */
    while (!qv_ring_writer_wait_answers(&w->ring, w->answers))
        if (next_control(w, f)) return -1;
    return 0;
}

/* Reads the frames the parent sent, without waiting for more: 0, or -1 if
 * f is cancelled. */
static int read_controls(worker *w, qv_future *f)
{
    while (qv_frame_buffered(&w->in) || poll(&(struct pollfd){w->fd, POLLIN, 0}, 1, 0) > 0)
        if (next_control(w, f)) return -1;
    return atomic_load(&f->cancel_requested) ? -1 : 0;
}

/* A full ring: waits for its consumer to make room for want bytes (or
 * half the ring), asleep on the ring's futex word, with no frame either
 * way; the parent also kicks it after it sends a frame (a cancel). The
 * frames are looked for once the sleep is armed: a kick from then on ends
 * the sleep, and one before it came after its frame, which is read here.
 * A consumer that stops taking bytes holds it here, but no longer than the
 * request's total timeout. 0, QV_ABORT_CANCEL if a cancel came, or
 * QV_ABORT_TIMEOUT. */
static int wait_room(worker *w, qv_future *f, size_t want)
{
    announce(w); /* a full ring is over half: its consumer takes it */
    struct timespec dl;
    long t = f->req.timeout_ms;
    if (t >= 0) {
        double left = w->run_ms + (double)t - qv_now_ms();
        if (left <= 0) return QV_ABORT_TIMEOUT;
        qv_deadline(&dl, (long)left + 1); /* (rounded up: never early) */
    }
    unsigned v;
    while ((v = qv_ring_room_wait(&w->ring, w->head, want))) {
        if (read_controls(w, f)) return QV_ABORT_CANCEL;
        if (qv_ring_room_sleep(&w->ring, v, t >= 0 ? &dl : NULL)) return QV_ABORT_TIMEOUT;
    }
    return 0;
}

/* The parent's on_data or reader: the chunk goes into the ring, and the
 * parent is woken once half the ring is in if it waits (or at the end of
 * the pass, announce_owed). A full ring makes this transfer wait, so a
 * parent that reads slowly slows it down. */
static int forward_data(qv_future *f, const void *chunk, size_t len, void *arg)
{
    worker *w = arg;
    const char *p = chunk;
    /* The bytes the parent takes before it acts on an answer are that
     * answer's request's: this one's wait until it has. */
    int fresh = w->ring_fresh;
    w->ring_fresh = 0;
    int stop = fresh && wait_answers(w, f) ? QV_ABORT_CANCEL : 0;
    while (!stop) {
        size_t n = qv_ring_put(&w->ring, &w->head, p, len);
        p += n;
        len -= n;
        if (!len) break;
        stop = wait_room(w, f, len);
    }
    if (stop) {
        w->slot.abort = stop;
        return 1;
    }
    if (qv_ring_in(&w->ring, w->head) >= QV_RING_CAP / 2)
        announce(w);
    else
        qv_later_add(&w->ring_owed);
    return 0;
}

/* Asks the parent for the next piece of on_upload's body, to be put in
 * the upload area after what is there (up to its end: the rest of a piece
 * comes in the next), unless asked already, at the end, or the area has no
 * room for a whole piece. */
static void ask_upload(worker *w)
{
    if (w->up_asked || w->up_end || QV_UP_RING - w->up_len < QV_UPLOAD_PIECE) return;
    size_t at = (w->up_at + w->up_len) % QV_UP_RING;
    size_t cap = QV_UP_RING - at < QV_UPLOAD_PIECE ? QV_UP_RING - at : QV_UPLOAD_PIECE;
    if (qv_wire_encode_upload_want(&w->out, w->id, cap, at) || send_frame(w, &w->out)) _exit(0);
    w->up_asked = cap;
}

/* The parent's on_upload, as this transfer's: the parent runs it straight
 * into the ring's upload area and says how much it made. At most one
 * answer is on its way, asked for once libcurl has taken a piece's worth
 * from the area, so the parent makes the next piece while the one before
 * is sent, and wakes once per piece (up to QV_UPLOAD_PIECE), not once per
 * libcurl read; libcurl waits here (as for the callback itself elsewhere)
 * when nothing is in yet. */
static long fetch_upload(void *buf, size_t cap, void *arg)
{
    worker *w = arg;
    qv_future *f = w->slot.f;
    ask_upload(w);
    while (!w->up_len && !w->up_end)
        if (next_control(w, f)) return -1;
    if (!w->up_len) return w->up_end < 0 ? -1 : 0;
    /* Across the area's end too: a read cut there would make libcurl send
     * a short extra chunk (chunked: cap is 65,524, which 2 MiB is not a
     * multiple of) and one more send and poll round. */
    size_t n = w->up_len < cap ? w->up_len : cap;
    size_t first = QV_UP_RING - w->up_at < n ? QV_UP_RING - w->up_at : n;
    memcpy(buf, w->ring.up + w->up_at, first);
    memcpy((char *)buf + first, w->ring.up, n - first);
    w->up_at = (w->up_at + n) % QV_UP_RING;
    w->up_len -= n;
    ask_upload(w);
    return (long)n;
}

static void forward_progress(qv_future *f, long long dl_now, long long dl_total, long long ul_now,
                             long long ul_total, void *arg)
{
    worker *w = arg;
    (void)f;
    const long long v[4] = {dl_now, dl_total, ul_now, ul_total};
    if (qv_wire_encode_progress(&w->out, v) || send_frame(w, &w->out)) _exit(0);
}

/* stream = 1: the final response's headers are in. Its hooks run now (as
 * they do for a streamed response on every executor), then the headers go
 * to the parent, which completes the future; the body follows in data
 * frames. 0, or -1 to stop the transfer (a hook failed). */
static int stream_head(qv_slot *slot, qv_response *r)
{
    worker *w = the_worker;
    qv_future *f = slot->f;
    char *msg = NULL;
    double t0 = qv_now_ms();
    if (qv_run_hooks(f, r, &msg)) {
        slot->abort = QV_ABORT_HOOK;
        slot->abort_msg = msg ? msg : qv_strdup("out of memory");
        return -1;
    }
    r->timing.hooks_ms = qv_now_ms() - t0;
    f->streamed = 1;
    f->out_resp = r; /* only to encode it: the slot keeps it */
    int rc = qv_wire_encode_response(&w->out, f, -1, NULL, QV_JAR_KEPT);
    f->out_resp = NULL;
    if (rc) {
        slot->abort = QV_ABORT_NOMEM;
        return -1;
    }
    qv_wire_frame_retype(&w->out, QV_WIRE_HEAD);
    if (qv_fd_write_all(w->fd, w->out.data, w->out.len)) _exit(0); /* the parent is gone */
    return 0;
}

/* Takes the request the parent left in the mailbox, if it has not taken it
 * back: one read gets a whole frame or nothing, as the parent writes one
 * frame of at most PIPE_BUF bytes at a time into an empty pipe. */
static int take_mail(worker *w)
{
    ssize_t n;
    if (w->jar_lost) return 0;
    while ((n = read(w->mbox, w->mail, sizeof(w->mail))) < 0 && errno == EINTR) {
    }
    if (n <= 0) return 0; /* empty (EAGAIN), or the parent let this worker go */
    int type;
    size_t len;
    if (n < QV_WIRE_HEADER || qv_wire_parse_header(w->mail, &type, &len) ||
        type != QV_WIRE_REQUEST || len != (size_t)n - QV_WIRE_HEADER)
        _exit(3); /* the parent would not write that */
    w->frame = w->mail + QV_WIRE_HEADER;
    w->frame_len = len;
    return 1;
}

/* Serves the request in w->frame; returns 1 if it took the next one from
 * the mailbox (it is in w->frame then). */
static int serve_one(worker *w)
{
    qv_future *f = qv_future_alloc(0);
    qv_hook *hooks = NULL;
    struct curl_slist *jar = NULL, *jar_after = NULL;
    if (!f) _exit(3);
    int attempt, jar_kept, sink_flags;
    /* No one here cancels or pokes it: its cancel comes on the socket the
     * transfer watches (control_readable). */
    const qv_holder unpoked = {0};
    int rc = qv_wire_decode_request(w->frame, w->frame_len, &f->req, &attempt, &hooks, &jar,
                                    &jar_kept, &sink_flags);
    /* The decoder's own record, in the arena, once it read the flags. */
    qv_req_io *io = (qv_req_io *)f->req.io;
    if (sink_flags & QV_SINK_DATA) {
        io->on_data = forward_data;
        io->on_data_arg = w;
        w->ring_fresh = 1;
    }
    /* output_fd: the parent's descriptor came with the request (never one
     * from the mailbox); this copy is closed when the transfer ends. One
     * this request does not use (it could not be read) is closed now. */
    int from_mail = w->frame == w->mail + QV_WIRE_HEADER || w->frame == w->later + QV_WIRE_HEADER;
    int out_fd = from_mail ? -1 : qv_frame_take_fd(&w->in);
    if (out_fd >= 0 && !(sink_flags & QV_SINK_FD)) {
        close(out_fd);
        out_fd = -1;
    }
    if (sink_flags & QV_SINK_FD) {
        io->output_fd = out_fd;
        if (out_fd < 0 && !rc) rc = QV_EPROTOCOL;
    }
    if (sink_flags & QV_SINK_UPLOAD) {
        io->on_upload = fetch_upload;
        io->on_upload_arg = w;
        w->up_at = w->up_len = w->up_asked = 0;
        w->up_end = 0;
    }
    if (sink_flags & QV_SINK_PROGRESS) {
        io->on_progress = forward_progress;
        io->on_progress_arg = w;
    }
    /* The parent counted this attempt; begin below counts it again. */
    f->attempts = attempt > 0 ? attempt - 1 : 0;
    w->id = f->req.wire_id;
    if (!rc && !jar_kept) rc = qv_session_jar_replace(w->ss, jar);
    int unreadable = rc != QV_OK;
    if (!rc && !jar_kept) w->jar_lost = 0;
    /* What the jar is now, to tell whether the transfer or a hook changed it. */
    uint64_t version = atomic_load(&w->ss->jar_version);
    w->slot.set_cookies = 0;
    f->session = w->ss;
    w->ss->o.hooks = hooks;
    if (rc) {
        f->out_err = rc == QV_ENOMEM ? QV_ENOMEM : QV_EPROTOCOL;
        f->out_msg = qv_future_message(f, f->out_err, "the worker could not read the request");
    } else if (w->cancel_next && w->cancel_next == w->id) {
        /* Cancelled before it started: it never does. */
        atomic_store(&f->cancel_requested, 1);
        f->out_err = QV_ECANCELLED;
    } else if (qv_future_begin(f, &unpoked) && qv_transfer_setup(&w->slot, f) == QV_OK) {
        /* A cancel read along with the request: poll would not see it. */
        if (qv_frame_buffered(&w->in)) control_readable(&w->slot);
        w->run_ms = qv_now_ms();
        CURLcode cc = qv_transfer_run(&w->slot, w->multi, w->fd, control_readable);
        qv_transfer_collect(&w->slot, cc);
    }
    /* Before the answer: a reader of the caller's pipe then sees its end
     * once the caller closes its own. */
    if (out_fd >= 0) close(out_fd);
    /* An attempt to be retried gets no hooks: they see the final outcome. */
    double retry_ms = rc ? -1 : qv_retry_wait_ms(f);
    /* A streamed response's hooks ran with its headers (stream_head). */
    if (f->out_resp && retry_ms < 0 && !f->streamed) {
        /* Tell the parent, so that a hook timeout can start counting; only
         * if a hook runs (the hooks travel as one list): the frame costs a
         * write here and a wake-up and reads in the parent. */
        if (hooks && hooks->fn &&
            (qv_wire_frame_begin(&w->out, QV_WIRE_HOOKS) || qv_wire_frame_end(&w->out) ||
             send_frame(w, &w->out)))
            _exit(0);
        char *msg = NULL;
        double t0 = qv_now_ms();
        int failed = qv_run_hooks(f, f->out_resp, &msg);
        f->out_resp->timing.hooks_ms = qv_now_ms() - t0;
        if (failed) {
            qv_response_free(f->out_resp);
            f->out_resp = NULL;
            f->out_err = QV_EHOOK;
            f->out_msg = qv_future_message(f, QV_EHOOK, "%s", msg ? msg : "out of memory");
        }
        qv_free(msg);
    }
    /* Unchanged, the jar need not travel back (nor be merged there). After a
     * request it could not read, this jar may be the one before, or half
     * loaded: merged into the session, what it lacks would count as
     * deleted. It stays here, and the parent sends the whole jar next time. */
    if (unreadable) {
        jar_kept = QV_JAR_UNKNOWN;
        w->jar_lost = 1;
    } else {
        jar_kept =
            !w->slot.set_cookies && version == atomic_load(&w->ss->jar_version) ? QV_JAR_KEPT : 0;
    }
    uint64_t none = 0;
    if (!jar_kept) qv_session_jar_export(w->ss, NULL, &none, &jar_after);
    /* The next request is taken now, before the answer, which says so: the
     * parent then knows it is this worker's without asking, and this worker
     * does not sleep between the two. */
    int took = take_mail(w);
    rc = qv_wire_encode_response(&w->out, f, retry_ms, jar_after, jar_kept);
    if (rc) { /* could not encode (a body over the frame limit): say so instead */
        qv_response_free(f->out_resp);
        f->out_resp = NULL;
        f->out_err = rc;
        qv_free(f->out_msg);
        f->out_msg = rc == QV_ETOO_LARGE
                         ? qv_future_message(f, rc,
                                             "the response is over the process executor's "
                                             "limit of %zu MiB, the most one wire frame "
                                             "carries back from a worker",
                                             QV_WIRE_MAX >> 20)
                         : qv_future_message(f, rc, "the worker could not send the response");
        rc = qv_wire_encode_response(&w->out, f, retry_ms, jar_after, jar_kept);
    }
    if (!rc && took) qv_wire_frame_retype(&w->out, QV_WIRE_RESPONSE_TOOK);
    if (rc || send_frame(w, &w->out)) _exit(0);
    w->answers++;
    qv_response_free(f->out_resp);
    f->out_resp = NULL;
    qv_free(f->out_msg);
    f->out_msg = NULL;
    f->session = NULL;
    w->ss->o.hooks = NULL;
    curl_slist_free_all(jar);
    curl_slist_free_all(jar_after);
    qv_future_drop(f);
    return took;
}

static void serve_chain(worker *w)
{
    while (serve_one(w)) {
    }
}

/* Serves the request just taken from the mailbox while this worker was
 * idle. The parent may have handed it a request on the socket just before
 * (when it took this worker for idle): that one is older and goes first. It
 * is there already if it was sent, as the parent sends it before it writes
 * the mailbox. */
static void serve_mail(worker *w)
{
    size_t n = QV_WIRE_HEADER + w->frame_len;
    memcpy(w->later, w->mail, n);
    int type;
    while (qv_frame_buffered(&w->in) || poll(&(struct pollfd){w->fd, POLLIN, 0}, 1, 0) > 0) {
        if (qv_frame_read(&w->in, w->fd, &type, &w->frame, &w->frame_len)) _exit(0);
        if (type == QV_WIRE_REQUEST) {
            serve_chain(w);
            break;
        }
        if (type == QV_WIRE_CANCEL) on_cancel(w, NULL, w->frame, w->frame_len);
    }
    /* That one lost the jar (no memory to load it): the one from the
     * mailbox counts on it, and fails with this worker rather than go out
     * with the wrong cookies. */
    if (w->jar_lost) _exit(3);
    w->frame = w->later + QV_WIRE_HEADER;
    w->frame_len = n - QV_WIRE_HEADER;
    serve_chain(w);
}

static void worker_main(int fd, int mbox, void *rings, int slot)
{
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    /* If the zygote dies, so do its workers (the parent then sees them go). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    worker w = {.fd = fd, .mbox = mbox, .in = {.keep_fds = 1}, .ring_owed = {.run = announce_owed}};
    the_worker = &w;
    qv_ring_at(&w.ring, rings, slot);
    qv_worker_ring = &w.ring;
    if (qv_wire_encode_bare(&w.ring_frame, QV_WIRE_RING)) _exit(3);
    qv_in_worker_process = 1;
    qv_stream_head_hook = stream_head;
    w.slot.easy = curl_easy_init();
    w.multi = curl_multi_init();
    w.ss = qv_session_stub_new();
    if (!w.slot.easy || !w.multi || !w.ss) _exit(3);
    for (;;) {
        int type;
        /* Wait in poll, not in read: a reader asleep in read() on a unix
         * socket is woken too whenever the parent takes in an answer this
         * worker wrote (the freed room wakes all of the socket's sleepers),
         * a context switch for nothing on every request; poll sleeps until
         * there is input. A request comes on the socket, or in the mailbox
         * when it was sent ahead after this worker last looked there; the
         * socket first, as what it brings is older (the parent writes the
         * mailbox only once the request before is sent). */
        if (!qv_frame_buffered(&w.in)) {
            struct pollfd p[2] = {{fd, POLLIN, 0}, {w.jar_lost ? -1 : mbox, POLLIN, 0}};
            if (poll(p, 2, -1) < 0) continue; /* EINTR */
            if (!p[0].revents) {
                if (p[1].revents && take_mail(&w))
                    serve_mail(&w);
                else if (p[1].revents & (POLLHUP | POLLERR))
                    _exit(0); /* let go */
                continue;
            }
        }
        if (qv_frame_read(&w.in, fd, &type, &w.frame, &w.frame_len))
            _exit(0); /* the parent closed: done */
        if (type == QV_WIRE_REQUEST) serve_chain(&w);
    }
}

/* ------------------------------------------------------------- zygote */

/* What the zygote tells the parent: a worker started (its socket rides
 * along) or a worker ended, with its wait status. */
typedef struct zmsg {
    int32_t type; /* 'W' started, 'D' died */
    int32_t pid;
    int32_t status;
} zmsg;

/* The worker's socket, then its mailbox's read and write ends; its ring's
 * slot in the status field. */
static int send_started(int parent, pid_t pid, int slot, const int fds[3])
{
    zmsg m = {'W', pid, slot};
    return qv_send_fds(parent, &m, sizeof(m), fds, 3) == (ssize_t)sizeof(m) ? QV_OK : QV_EIO;
}

/* The zygote's live workers, to take down when it stops. */
static pid_t *kids;
static size_t nkids, capkids;

static void kid_add(pid_t pid)
{
    if (nkids == capkids) {
        size_t cap = capkids ? capkids * 2 : 16;
        pid_t *k = qv_realloc(kids, cap * sizeof(*k));
        if (!k) return; /* still reaped through SIGCHLD; only the final kill misses it */
        kids = k;
        capkids = cap;
    }
    kids[nkids++] = pid;
}

static void kid_remove(pid_t pid)
{
    for (size_t i = 0; i < nkids; i++)
        if (kids[i] == pid) {
            kids[i] = kids[--nkids];
            return;
        }
}

static void spawn(int parent, int sigfd, void *rings, int slot)
{
    int sv[2], mb[2] = {-1, -1};
    pid_t pid = -1;
    if (!socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        /* Non-blocking both ways: the worker and the parent race to read it. */
        if (!pipe2(mb, O_CLOEXEC | O_NONBLOCK)) pid = fork();
        if (pid == 0) {
            close(parent);
            close(sigfd);
            close(sv[0]);
            close(mb[1]);
            worker_main(sv[1], mb[0], rings, slot);
        }
        close(sv[1]);
    } else {
        sv[0] = -1;
    }
    if (pid < 0) {
        zmsg m = {'D', -1, slot}; /* tell the parent the spawn failed (the slot is free) */
        qv_fd_write_all(parent, &m, sizeof(m));
    } else {
        kid_add(pid);
        if (send_started(parent, pid, slot, (int[3]){sv[0], mb[0], mb[1]})) kill(pid, SIGKILL);
    }
    for (int i = 0; i < 2; i++)
        if (mb[i] >= 0) close(mb[i]);
    if (sv[0] >= 0) close(sv[0]);
}

static void reap(int parent)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        kid_remove(pid);
        zmsg m = {'D', pid, status};
        if (qv_fd_write_all(parent, &m, sizeof(m))) return;
    }
}

/* Closes every descriptor from 3 up but keep: two calls on Linux 5.9 and
 * later, else one by one up to the descriptor limit. */
static void close_all_but(int keep)
{
    unsigned k = (unsigned)keep;
    if (keep < 3 ? close_range(3, ~0U, 0) == 0
                 : (k == 3 || close_range(3, k - 1, 0) == 0) && close_range(k + 1, ~0U, 0) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = 3; fd < (max > 0 ? max : 65536); fd++)
        if (fd != keep) close((int)fd);
}

void qv_zygote_main(int parent, void *rings)
{
    /* A process group of its own: a Ctrl-C at the terminal is for the
     * program, which decides what happens to its requests; the pool ends
     * when the program does (its channel closes). */
    setpgid(0, 0);
    /* Keep only our channel to the parent: the zygote must not hold the
     * program's other descriptors (sockets, pipes) open. */
    close_all_but(parent);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sigfd = signalfd(-1, &chld, SFD_CLOEXEC);
    if (sigfd < 0) _exit(3);
    for (;;) {
        struct pollfd p[2] = {{parent, POLLIN, 0}, {sigfd, POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR) break;
        if (p[1].revents) {
            struct signalfd_siginfo si;
            if (read(sigfd, &si, sizeof(si)) < 0 && errno != EAGAIN) break;
            reap(parent);
        }
        if (p[0].revents) {
            /* 'S' and the new worker's ring slot, in one write */
            unsigned char c[1 + sizeof(int32_t)];
            int32_t slot;
            ssize_t r = read(parent, c, sizeof(c));
            if (r <= 0) break; /* the executor is gone: stop */
            memcpy(&slot, c + 1, sizeof(slot));
            if (r == (ssize_t)sizeof(c) && c[0] == 'S') spawn(parent, sigfd, rings, slot);
        }
    }
    /* Take the workers down with us and leave no zombie behind. */
    for (size_t i = 0; i < nkids; i++) kill(kids[i], SIGKILL);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
    }
    _exit(0);
}
