/* Where a response body goes when it is not kept in memory: a file of ours
 * (output_path: a temporary file renamed into place, or the file itself when
 * resuming), the caller's descriptor (output_fd) or the on_data callback.
 * Only the final response's body goes there; the bodies of redirects, auth
 * challenges and responses that will be retried stay in memory as before. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

int qv_sink_wanted(const qv_req *r)
{
    return r->io->output_path || r->io->output_fd > 0 || r->io->on_data;
}

/* A temporary name beside path, opened exclusively (mode 0666 less the
 * umask, as the final file would get). */
static int open_temp(qv_sink *k, const char *path)
{
    static atomic_ulong counter;
    for (int tries = 0; tries < 100; tries++) {
        char *tmp =
            qv_asprintf("%s.qv-%ld-%lu", path, (long)getpid(), atomic_fetch_add(&counter, 1) + 1);
        if (!tmp) return QV_ENOMEM;
        k->fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (k->fd >= 0) {
            k->tmp = tmp;
            return QV_OK;
        }
        k->err = errno;
        qv_free(tmp);
        if (k->err != EEXIST) return QV_EIO;
    }
    return QV_EIO;
}

/* The file the descriptor fd names, opened again for writing through
 * /proc: that file, whatever its path names by now. Without waiting: a
 * FIFO with no reader fails (ENXIO) rather than block. -1 and errno if not. */
static int reopen_nonblocking(int fd)
{
    char path[40];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
}

/* A path that names no regular file (a device such as /dev/null, a FIFO,
 * /dev/stdout) is written where it is: a temporary file renamed over it
 * would replace it (as root, /dev/null itself). What is written is the file
 * at (an O_PATH descriptor) names; then as any file, waiting (no status flag
 * wanted: F_SETFL 0 cannot fail on a descriptor just opened). */
static int open_in_place(qv_sink *k, int at)
{
    k->in_place = 1;
    k->fd = reopen_nonblocking(at);
    if (k->fd < 0) {
        k->err = errno;
        return QV_EIO;
    }
    fcntl(k->fd, F_SETFL, 0);
    return QV_OK;
}

/* Appended to as it is, or made. Opened without waiting, and what was
 * opened is what is looked at (fstat): a FIFO has no size to resume from,
 * so it is written in place from its start, and one with no reader fails
 * rather than block. */
static int open_resumed(qv_sink *k, const char *path)
{
    struct stat st;
    k->fd = open(path, O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0666);
    if (k->fd < 0 || fstat(k->fd, &st) || (S_ISREG(st.st_mode) && lseek(k->fd, 0, SEEK_END) < 0)) {
        k->err = errno;
        return QV_EIO;
    }
    fcntl(k->fd, F_SETFL, 0);
    k->in_place = !S_ISREG(st.st_mode);
    k->offset = k->in_place ? 0 : st.st_size;
    return QV_OK;
}

/* Whether path is in a process's directory of descriptors (/proc/N/fd,
 * /proc/N/task/M/fd, however the path spells it: /dev/fd, /proc/self/fd). */
static int in_fd_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX], real[PATH_MAX];
    if (!slash || slash == path || (size_t)(slash - path) >= sizeof dir) return 0;
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    if (!realpath(dir, real)) return 0;
    size_t n = strlen(real);
    return strncmp(real, "/proc/", 6) == 0 && n > 9 && strcmp(real + n - 3, "/fd") == 0;
}

/* A path that names one of the process's open files through /proc
 * (/dev/stdout, /dev/fd/N, /proc/self/fd/N: a link in a descriptor
 * directory, or one to such a link) is that file, wherever it is: no
 * temporary file can be made beside the link (in /proc), nor renamed over
 * it (as root, /dev/stdout would become a file of ours). Any other link
 * (one in /dev/shm to a file there, say) is a path as any other: a
 * temporary file renamed over it. */
static int names_a_descriptor(const char *path)
{
    struct stat st;
    char to[PATH_MAX];
    if (lstat(path, &st) || !S_ISLNK(st.st_mode)) return 0;
    if (in_fd_dir(path)) return 1;
    ssize_t n = readlink(path, to, sizeof to - 1);
    if (n <= 0) return 0;
    to[n] = '\0';
    return to[0] == '/' && in_fd_dir(to);
}

int qv_sink_begin(qv_slot *slot, char **msg)
{
    qv_sink *k = &slot->sink;
    const qv_req *r = &slot->f->req;
    if (!r->io->output_path) return QV_OK;
    const char *path = r->io->output_path;
    int rc;
    if (r->io->resume) { /* (through a link to an open file too) */
        rc = open_resumed(k, path);
    } else {
        /* What the path names is looked at once, through a descriptor of
         * it (O_PATH: no permission asked, no FIFO waited for), and what is
         * written in place is the file looked at: a stat, then an open of
         * the path, let another file take the name between the two (a
         * regular file written over in place, unemptied). */
        struct stat st;
        int at = open(path, O_PATH | O_CLOEXEC);
        if (at >= 0 && fstat(at, &st) == 0 && (!S_ISREG(st.st_mode) || names_a_descriptor(path))) {
            rc = open_in_place(k, at);
            /* A link to an open regular file is written from its start, as
             * curl -o writes it, and emptied as curl -o creates its file:
             * at the body's first byte (or the end of an empty one), so
             * that a request that fails before leaves it as it was. */
            k->empty_first = S_ISREG(st.st_mode);
        } else {
            rc = open_temp(k, path);
        }
        if (at >= 0) close(at);
    }
    if (rc == QV_EIO)
        *msg = qv_future_message(slot->f, QV_EIO, "cannot open %s: %s", path, strerror(k->err));
    return rc;
}

/* The Range a resumed download asks for ("N-"), or NULL. */
int qv_sink_range(qv_slot *slot, char *buf, size_t cap)
{
    if (!slot->f->req.io->resume || slot->sink.offset <= 0) return 0;
    snprintf(buf, cap, "%lld-", slot->sink.offset);
    return 1;
}

int qv_write_fd(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return w < 0 ? errno : EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The start of Content-Range "bytes S-E/T", or -1. */
static long long range_start(const qv_response *resp)
{
    const char *v = qv_headers_get(&resp->headers, "Content-Range", 0);
    long long s = -1;
    if (v && sscanf(v, "bytes %lld-", &s) != 1) s = -1;
    return s;
}

/* Our file emptied, to be written from its start. */
static int start_over(qv_slot *slot)
{
    qv_sink *k = &slot->sink;
    if (ftruncate(k->fd, 0) == 0 && lseek(k->fd, 0, SEEK_SET) == 0) return 0;
    k->err = errno;
    k->io_path = slot->f->req.io->output_path;
    slot->abort = QV_ABORT_IO;
    return -1;
}

/* A resumed download's first bytes: append after a 206 that starts where
 * the file ends, start over after a 200. */
static int resume_check(qv_slot *slot)
{
    qv_sink *k = &slot->sink;
    int status = slot->resp->status;
    if (status == 206 && k->offset > 0) {
        if ((k->range_start = range_start(slot->resp)) == k->offset) return 0;
        slot->abort = QV_ABORT_RANGE;
        return -1;
    }
    if (k->offset > 0 && start_over(slot)) return -1;
    k->offset = 0;
    return 0;
}

/* A descriptor that may make its writer wait (a pipe, a FIFO, a socket:
 * output_fd, an output_path written in place) is written through
 * qv_sink_nonblocking's form, waiting for room until the future is
 * cancelled: a QV_THREADS worker looks at the cancel every
 * QV_SINK_LOOK_MS (this thread is inside libcurl's callback, and a cancel
 * wakes only its poll); a process worker reads its control socket, where
 * its cancel comes, meanwhile (read only between passes of the transfer,
 * the cancel waited for the reader). Blocked in write(), a worker whose
 * reader never read heard no cancel. Others (a file, a terminal) are
 * written as they are. */
static int write_out(qv_slot *slot, int fd, const char *buf, size_t len)
{
    qv_sink *k = &slot->sink;
    if (!k->direct_known) qv_sink_direct_begin(slot, fd);
    const qv_sink_wake wake = {slot->on_readable ? slot->watch_fd : -1, slot->on_readable, slot};
    return qv_sink_write_all(slot->f, k->direct, k->direct_fd, &wake, buf, len, &k->err);
}

size_t qv_sink_write(qv_slot *slot, const char *buf, size_t len)
{
    qv_sink *k = &slot->sink;
    qv_future *f = slot->f;
    size_t max = f->req.max_response_bytes;
    if (max && ((unsigned long long)k->written > max || len > max - (size_t)k->written)) {
        slot->abort = QV_ABORT_TOO_LARGE;
        return 0;
    }
    if (!k->started) {
        k->started = 1;
        if (f->req.io->resume && resume_check(slot)) return 0;
        if (k->empty_first && start_over(slot)) return 0;
    }
    /* (Our file may be descriptor 0, in a program whose stdin is closed;
     * output_fd's 0 is none.) */
    int fd = k->fd >= 0 ? k->fd : f->req.io->output_fd > 0 ? f->req.io->output_fd : -1;
    int rc = fd >= 0 ? write_out(slot, fd, buf, len) : QV_OK;
    if (rc == QV_ECANCELLED) {
        slot->abort = QV_ABORT_CANCEL;
        return 0;
    }
    if (rc) {
        k->io_path = f->req.io->output_path;
        slot->abort = QV_ABORT_IO;
        return 0;
    }
    /* (on_data: the callback said stop, or the transfer pauses.) */
    if (fd < 0 && qv_sink_push(slot, buf, len)) return 0;
    k->written += (long long)len;
    k->streamed = 1;
    /* Bytes no retry can take back: the caller's descriptor or callback
     * has them, or a FIFO's reader (a temporary file starts anew, a
     * resumed one goes on from its end). */
    if (f->req.io->output_fd > 0 || f->req.io->on_data || k->in_place) f->out_unrepeatable = 1;
    return len;
}

/* A regular file, and /dev/null, /dev/zero or /dev/full, never make a
 * writer wait for a reader. */
static int never_waits(const struct stat *st)
{
    unsigned mem = major(st->st_rdev) == 1 ? minor(st->st_rdev) : 0; /* 3, 5, 7: null, zero, full */
    return S_ISREG(st->st_mode) || (S_ISCHR(st->st_mode) && (mem == 3 || mem == 5 || mem == 7));
}

/* An output_path written in place may be a FIFO whose reader is the thread
 * that leads the loop, after its wait: written there, a full FIFO held up
 * every transfer of the loop, and that thread for good. */
int qv_sink_pump_fd(const qv_slot *slot)
{
    const qv_sink *k = &slot->sink;
    struct stat st;
    if (slot->f->req.io->output_fd > 0) return slot->f->req.io->output_fd;
    return k->in_place && k->fd >= 0 && fstat(k->fd, &st) == 0 && !never_waits(&st) ? k->fd : -1;
}

/* Those never wait (a file is written by this thread for output_path
 * too); a socket is sent to with MSG_DONTWAIT; a pipe is written through
 * an open of its own with O_NONBLOCK (the caller's descriptor keeps its
 * flags), or, with none to be had (no descriptor left: EMFILE, ENFILE),
 * through the caller's descriptor in writes that cannot wait
 * (shared_write): written there as it is, a pipe whose reader never read
 * held its writer for good, beyond any cancel. Anything else (a terminal,
 * a device) is left to the pump. */
int qv_sink_nonblocking(int fd, int *out)
{
    struct stat st;
    *out = fd;
    if (fstat(fd, &st)) return QV_DIRECT_NONE;
    int how = QV_DIRECT_NONE;
    if (never_waits(&st)) {
        how = QV_DIRECT_WRITE;
    } else if (S_ISSOCK(st.st_mode)) {
        how = QV_DIRECT_SEND;
    } else if (S_ISFIFO(st.st_mode)) {
        int own = reopen_nonblocking(fd);
        how = own >= 0 ? QV_DIRECT_OWN : QV_DIRECT_SHARED;
        if (own >= 0) *out = own;
    }
    return how;
}

int qv_sink_waits_for_room(int how)
{
    return how == QV_DIRECT_OWN || how == QV_DIRECT_SEND || how == QV_DIRECT_SHARED;
}

void qv_sink_direct_begin(qv_slot *slot, int fd)
{
    qv_sink *k = &slot->sink;
    k->direct = qv_sink_nonblocking(fd, &k->direct_fd);
    k->direct_known = 1;
}

/* A write to a pipe through the caller's own descriptor, which may make its
 * writer wait: made only when poll finds room, and of at most PIPE_BUF
 * bytes, which a pipe with room takes at once (Linux: room is a free page
 * of the pipe's, and PIPE_BUF is no more than a page). Only another writer
 * of the same pipe that fills it between the two can make this one wait.
 * -1 with EAGAIN when there is no room. */
static ssize_t shared_write(int fd, const char *buf, size_t n)
{
    struct pollfd pf = {.fd = fd, .events = POLLOUT};
    int r = poll(&pf, 1, 0);
    if (r == 0) errno = EAGAIN;
    /* (No reader: POLLERR, and the write fails with EPIPE.) */
    return r <= 0 ? -1 : qv_sigpipe_write(fd, buf, n < PIPE_BUF ? n : PIPE_BUF);
}

long qv_sink_try_write(int how, int fd, const char *buf, size_t len, int *err)
{
    size_t done = 0;
    while (done < len) {
        /* (A pipe whose reader went: EPIPE, and a SIGPIPE kept from the
         * program, sigpipe.c; on a thread of yours until its lead ends.) */
        ssize_t w = how == QV_DIRECT_SEND
                        ? send(fd, buf + done, len - done, MSG_DONTWAIT | MSG_NOSIGNAL)
                    : how == QV_DIRECT_OWN    ? qv_sigpipe_write(fd, buf + done, len - done)
                    : how == QV_DIRECT_SHARED ? shared_write(fd, buf + done, len - done)
                                              : write(fd, buf + done, len - done);
        if (w > 0) {
            done += (size_t)w;
        } else if (w == 0 || errno != EINTR) {
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break; /* no room now */
            *err = w < 0 ? errno : EIO;
            return -1;
        }
    }
    return (long)done;
}

long qv_sink_direct(qv_slot *slot, const char *buf, size_t len)
{
    qv_sink *k = &slot->sink;
    return qv_sink_try_write(k->direct, k->direct_fd, buf, len, &k->err);
}

/* Waits until fd has room (or an error to report: the next write says
 * which): 1, or 0 once f is cancelled. */
static int room(qv_future *f, int fd, const qv_sink_wake *wake)
{
    for (;;) {
        if (atomic_load(&f->cancel_requested)) return 0;
        struct pollfd pf[2] = {{.fd = fd, .events = POLLOUT}, {.fd = wake->fd, .events = POLLIN}};
        int r = poll(pf, wake->fd >= 0 ? 2 : 1, wake->fd >= 0 ? -1 : QV_SINK_LOOK_MS);
        if (r < 0 && errno != EINTR) return 1;
        if (pf[0].revents) return 1;
        if (!pf[1].revents) continue;
        eventfd_t woken;
        if (wake->heard)
            wake->heard(wake->slot); /* (a worker's frames: a cancel, or its parent gone) */
        else
            eventfd_read(wake->fd, &woken); /* (it stays readable until read) */
    }
}

int qv_sink_write_all(qv_future *f, int how, int fd, const qv_sink_wake *wake, const char *buf,
                      size_t n, int *err)
{
    /* A file or a device that never waits for room, or a terminal that
     * cannot be written without waiting: written as it is (a cancel is
     * seen once the write returns). */
    if (!qv_sink_waits_for_room(how)) return (*err = qv_write_fd(fd, buf, n)) ? QV_EIO : QV_OK;
    for (;;) {
        long w = qv_sink_try_write(how, fd, buf, n, err);
        if (w < 0) return QV_EIO;
        buf += w;
        n -= (size_t)w;
        if (!n) return QV_OK;
        if (!room(f, fd, wake)) return QV_ECANCELLED;
    }
}

char *qv_sink_io_message(qv_slot *slot)
{
    const qv_sink *k = &slot->sink;
    const char *what = k->io_path ? k->io_path : "the output descriptor";
    return qv_future_message(slot->f, QV_EIO, "%s %s: %s", k->io_reading ? "reading" : "writing",
                             what, strerror(k->err));
}

void qv_sink_end(qv_slot *slot)
{
    qv_sink *k = &slot->sink;
    qv_future *f = slot->f;
    const char *path = f->req.io->output_path;
    if (f->out_resp) f->out_resp->body_bytes = k->streamed ? k->written + k->offset : -1;
    if (k->direct == QV_DIRECT_OWN) close(k->direct_fd);
    k->direct = QV_DIRECT_NONE;
    if (k->fd < 0) return;
    /* A response that will be retried kept its body in memory (hop_streams):
     * the file it would put in place is empty, and the last attempt's. */
    int retried = f->out_resp && qv_retry_would_retry(f, f->out_resp);
    /* (An empty body empties a file written from its start now.) */
    int failed = f->out_resp && !retried && k->empty_first && !k->started && ftruncate(k->fd, 0);
    failed |= close(k->fd) != 0;
    k->fd = -1;
    if (f->out_resp && !retried) {
        if (failed || (k->tmp && rename(k->tmp, path))) {
            /* The body arrived, but did not reach its file. */
            k->err = errno;
            qv_response_free(f->out_resp);
            f->out_resp = NULL;
            f->out_err = QV_EIO;
            f->out_msg = qv_future_message(f, QV_EIO, "finishing %s: %s", path, strerror(k->err));
        } else {
            qv_free(k->tmp);
            k->tmp = NULL;
        }
    }
    if (k->tmp && (retried || !f->req.io->keep_partial || rename(k->tmp, path))) unlink(k->tmp);
    qv_free(k->tmp);
    k->tmp = NULL;
    if (!f->out_resp && f->req.io->keep_partial) {
        /* Say what is left where, so the caller can resume from it. */
        long long n = k->written + k->offset;
        char *m = f->out_msg ? qv_asprintf("%s; %s keeps %lld bytes", f->out_msg, path, n)
                             : qv_future_message(f, f->out_err, "%s keeps %lld bytes", path, n);
        if (m) {
            qv_free(f->out_msg);
            f->out_msg = m;
        }
    }
}

/* This thread's CPU time (ms; its clock, not getrusage's times, which may
 * lag by a tick), voluntary and involuntary context switches. */
static void thread_counts(double *cpu_ms, long *waits, long *preempted)
{
    struct rusage ru;
    struct timespec ts;
    getrusage(RUSAGE_THREAD, &ru);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    *cpu_ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
    *waits = ru.ru_nvcsw;
    *preempted = ru.ru_nivcsw;
}

/* A call that took over the budget in wall time: slow, unless the thread
 * was only preempted meanwhile (since the mark, shortly before the call:
 * switched out against its will, never waiting, and under the budget in
 * CPU). On a busy machine a quick callback's call is preempted for
 * milliseconds now and then; pumped, the rest of its body cost 2.4x the
 * CPU (bench/NOTES.md, 2026-12-07). */
static int over_budget(qv_sink *k)
{
    double cpu;
    long waits, preempted;
    thread_counts(&cpu, &waits, &preempted);
    return !k->mark_ms || waits != k->mark_waits || preempted == k->mark_preempted ||
           cpu - k->mark_cpu_ms > QV_ON_DATA_BUDGET_MS;
}

int qv_sink_push(qv_slot *slot, const char *buf, size_t len)
{
    qv_future *f = slot->f;
    qv_sink *k = &slot->sink;
    double t0 = k->timed ? qv_now_ms() : 0;
    if (k->timed &&
        (t0 - k->mark_ms > QV_ON_DATA_MARK_MS || t0 - k->call_end_ms > QV_ON_DATA_GAP_MS)) {
        thread_counts(&k->mark_cpu_ms, &k->mark_waits, &k->mark_preempted);
        k->mark_ms = t0;
    }
    int stop = f->req.io->on_data(f, buf, len, f->req.io->on_data_arg);
    if (k->timed) {
        k->call_end_ms = qv_now_ms();
        if (k->call_end_ms - t0 > QV_ON_DATA_BUDGET_MS && over_budget(k)) k->slow = 1;
    }
    if (!stop) return 0;
    /* (A process worker's own on_data says why it stopped: a cancel.) */
    if (slot->abort == QV_ABORT_NONE) slot->abort = QV_ABORT_HOOK;
    return -1;
}

int qv_sink_hand_on(qv_future *f, const char *data, size_t n)
{
    return f->req.io->on_data(f, data, n, f->req.io->on_data_arg) ? QV_EHOOK : QV_OK;
}

char *qv_sink_stop_message(qv_future *f, int rc, int err)
{
    const char *path = f->req.io->output_path;
    return rc == QV_EHOOK ? qv_future_message(f, rc, "on_data stopped the transfer")
           : path         ? qv_future_message(f, rc, "writing %s: %s", path, strerror(err))
                  : qv_future_message(f, rc, "writing the output descriptor: %s", strerror(err));
}
