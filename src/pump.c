/* on_data, output_fd and an output_path written in place that may wait for
 * its reader (a FIFO) on an executor whose transfers share one thread
 * (QV_LOOP): the body goes through a pipe (pipe.c) to pump runs on another
 * thread, which hand it on. A slow callback or a full output pipe then
 * holds up its own transfer (paused while the pipe is full), not the
 * others. (on_data comes here only once a call of it was slow: until
 * then the loop's thread calls it, transfer.c's start_pump.) The outcome is delivered once both the
 * transfer has ended and every byte was handed on, by whichever of the two comes last. (An
 * output_fd that never makes its writer wait is written by the transfer
 * while the pipe is empty: sink.c's qv_sink_direct.) A pump's write to a
 * descriptor whose reader does not read waits in a poll that a cancel of
 * its future ends (qv_pump_cancel): blocked in write(), it held a delivery
 * thread, and the executor's free, for as long as the reader did not read. */
#include "internal.h"

#include <sys/eventfd.h>

static int hand_on(void *arg, const char *data, size_t n)
{
    qv_future *f = arg;
    if (atomic_load(&f->cancel_requested)) return 1; /* no more calls: the outcome says why */
    int rc = qv_sink_hand_on(f, data, n, &f->pump_errno);
    if (rc == QV_ECANCELLED) return 1; /* a write the cancel stopped: likewise */
    return (f->pump_err = rc) != QV_OK;
}

/* The outcome, with what the pump ran into over it. */
static void pump_outcome(qv_future *f)
{
    if (!f->pump_err) return;
    qv_response_free(f->out_resp);
    f->out_resp = NULL;
    qv_free(f->out_msg);
    f->out_err = f->pump_err;
    f->out_msg = qv_sink_stop_message(f, f->pump_err, f->pump_errno);
}

int qv_pump_last(qv_future *f)
{
    if (atomic_fetch_sub(&f->pump_holds, 1) != 1) return 0;
    /* Nothing more is written: an output_path's reader sees its end now. */
    qv_pipe_close_fd(f->pump);
    pump_outcome(f);
    return 1;
}

void qv_pump_run(qv_future *f)
{
    if (qv_pipe_pump(f->pump, hand_on, f) != 1) return;
    /* Everything handed on, the transfer over: the outcome, if it is in. */
    if (!qv_pump_last(f)) return;
    qv_transfer_deliver(f);
    qv_future_drop(f); /* the queue's reference, which the transfer's end left */
}

/* The pump's wake-up: made at its first write, and published before the
 * cancel is looked at (both seq_cst), so a cancel either sees it and
 * writes it, or is seen. -1 if none could be made (the wait then looks at
 * the cancel every QV_SINK_LOOK_MS). */
static int wake_fd(qv_pump_out *o)
{
    int fd = atomic_load(&o->wake);
    if (fd < 0 && (fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) >= 0) atomic_store(&o->wake, fd);
    return fd;
}

int qv_pump_write(qv_future *f, int fd, const char *data, size_t n, int *err)
{
    qv_pump_out *o = qv_pipe_out(f->pump);
    if (!o->tried) {
        o->tried = 1;
        o->how = qv_sink_nonblocking(fd, &o->fd);
    }
    /* (A wake-up only for a write that may wait for room.) */
    int wake = o->how == QV_DIRECT_OWN || o->how == QV_DIRECT_SEND ? wake_fd(o) : -1;
    return qv_sink_write_all(f, o->how, o->fd, wake, data, n, err);
}

void qv_pump_cancel(qv_future *f)
{
    qv_pipe *p = f->pump;
    int fd = p ? atomic_load(&qv_pipe_out(p)->wake) : -1;
    if (fd >= 0) eventfd_write(fd, 1);
}
