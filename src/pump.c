/* on_data, output_fd and an output_path written in place that may wait for
 * its reader (a FIFO) on an executor whose transfers share one thread
 * (QV_LOOP): the body goes through a pipe (pipe.c) to pump runs on another
 * thread, which hand it on. A slow callback or a full output pipe then
 * holds up its own transfer (paused while the pipe is full), not the
 * others. (on_data comes here only once a call of it was slow: until
 * then the loop's thread calls it, transfer.c's start_pump.) The outcome is delivered once both the
 * transfer has ended and every byte was handed on, by whichever of the two comes last. (An
 * output_fd that never makes its writer wait is written by the transfer
 * while the pipe is empty: sink.c's qv_sink_direct.) What a pump knows is
 * its own record (qv_pump), which the pipe's run requests and the
 * executor's list of runs carry, not its future's. A pump's write to a
 * descriptor whose reader does not read waits in a poll that a cancel of
 * its future ends (its cancel_fd): blocked in write(), it held a delivery
 * thread, and the executor's free, for as long as the reader did not read. */
#include "internal.h"

#include <sys/eventfd.h>
#include <unistd.h>

/* The pipe asks for a run: the executor queues one. */
static void ready(void *arg)
{
    qv_pump *p = arg;
    p->f->ex->vt->pump_ready(p);
}

qv_pump *qv_pump_new(qv_future *f)
{
    qv_pump *p = qv_calloc(1, sizeof(*p));
    if (!p) return NULL;
    if (!(p->pipe = qv_pipe_new_pump(f, ready, p))) {
        qv_free(p);
        return NULL;
    }
    p->f = f;
    atomic_init(&p->holds, 2);
    p->out_fd = p->wake = -1;
    return p;
}

/* The pump's wake-up for a cancel: made at its first write that may wait,
 * and named to its future under the future's lock, so a cancel either
 * comes later and writes it, or came first and the wait sees
 * cancel_requested. -1 if none could be made (the wait then looks at the
 * cancel every QV_SINK_LOOK_MS). */
static int wake_fd(qv_pump *p)
{
    if (p->wake >= 0 || (p->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) return p->wake;
    qv_lock_take(&p->f->lock);
    p->f->cancel_fd = p->wake;
    qv_lock_give(&p->f->lock);
    return p->wake;
}

/* A run's write of n bytes to output_fd or the pipe's own descriptor: waits
 * for room until the future is cancelled. */
static int write_out(qv_pump *p, const char *data, size_t n)
{
    const qv_req_io *io = p->f->req.io;
    int fd = io->output_fd > 0 ? io->output_fd : qv_pipe_fd(p->pipe);
    if (fd < 0) return QV_OK; /* (a stream whose pipe could not be made) */
    if (!p->out_tried) {
        p->out_tried = 1;
        p->out_how = qv_sink_nonblocking(fd, &p->out_fd);
    }
    const qv_sink_wake wake = {qv_sink_waits_for_room(p->out_how) ? wake_fd(p) : -1, NULL, NULL};
    return qv_sink_write_all(p->f, p->out_how, p->out_fd, &wake, data, n, &p->errnum);
}

static int hand_on(void *arg, const char *data, size_t n)
{
    qv_pump *p = arg;
    qv_future *f = p->f;
    if (atomic_load(&f->cancel_requested)) return 1; /* no more calls: the outcome says why */
    int rc = f->req.io->on_data ? qv_sink_hand_on(f, data, n) : write_out(p, data, n);
    if (rc == QV_ECANCELLED) return 1; /* a write the cancel stopped: likewise */
    return (p->err = rc) != QV_OK;
}

/* The outcome, with what the pump ran into over it. */
static void pump_outcome(const qv_pump *p)
{
    qv_future *f = p->f;
    if (!p->err) return;
    qv_response_free(f->out_resp);
    f->out_resp = NULL;
    qv_free(f->out_msg);
    f->out_err = p->err;
    f->out_msg = qv_sink_stop_message(f, p->err, p->errnum);
}

int qv_pump_last(qv_pump *p)
{
    if (atomic_fetch_sub(&p->holds, 1) != 1) return 0;
    /* Nothing more is written: an output_path's reader sees its end now. */
    qv_pipe_close_fd(p->pipe);
    if (p->out_how == QV_DIRECT_OWN) close(p->out_fd);
    if (p->wake >= 0) {
        qv_future *f = p->f;
        qv_lock_take(&f->lock); /* (no cancel finds it from here on) */
        f->cancel_fd = -1;
        qv_lock_give(&f->lock);
        close(p->wake);
    }
    pump_outcome(p);
    /* The pipe asks for no run after the last (pipe.c: it stays scheduled). */
    qv_pipe_unref(p->pipe);
    qv_free(p);
    return 1;
}

void qv_pump_run(qv_pump *p)
{
    qv_future *f = p->f;
    if (qv_pipe_pump(p->pipe, hand_on, p) != 1) return;
    /* Everything handed on, the transfer over: the outcome, if it is in. */
    if (!qv_pump_last(p)) return;
    qv_transfer_deliver(f);
    qv_future_drop(f); /* the queue's reference, which the transfer's end left */
}
