/* Frames on a socket: whole writes, and reads that take as many bytes as
 * have come and hand out one whole frame at a time. Both sides of a process
 * pool use them (the parent in executor_procs.c, the workers in
 * procs_worker.c); the frames' format is wire.c's. */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int qv_fd_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return QV_EIO;
        c += w;
        n -= (size_t)w;
    }
    return QV_OK;
}

ssize_t qv_send_fds(int fd, const void *p, size_t n, const int *fds, int nfds)
{
    union {
        char buf[CMSG_SPACE(QV_SEND_FDS_MAX * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = {(void *)p, n};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int))};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    ssize_t w;
    while ((w = sendmsg(fd, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
    }
    return w;
}

int qv_fd_write_passing(int fd, const void *p, size_t n, int pass)
{
    if (pass <= 0) return qv_fd_write_all(fd, p, n);
    ssize_t w = qv_send_fds(fd, p, n, &pass, 1);
    if (w <= 0) return QV_EIO;
    return qv_fd_write_all(fd, (const char *)p + w, n - (size_t)w);
}

static void take_passed(qv_frame_reader *rd, int fd, size_t end)
{
    if (!rd->keep_fds) {
        close(fd);
        return;
    }
    if (rd->has_passed) close(rd->passed); /* never taken: a newer one counts */
    rd->passed = fd;
    rd->passed_end = end;
    rd->has_passed = 1;
}

int qv_frame_take_fd(qv_frame_reader *rd)
{
    /* (One that came with a later frame ends past this one.) */
    if (!rd->has_passed || rd->passed_end > rd->start) return -1;
    rd->has_passed = 0;
    return rd->passed;
}

/* The frames before `start` are done with: so is a descriptor that came
 * with one of them. */
static void drop_passed(qv_frame_reader *rd)
{
    if (!rd->has_passed) return;
    if (rd->passed_end > rd->start) {
        rd->passed_end -= rd->start;
        return;
    }
    close(rd->passed);
    rd->has_passed = 0;
}

/* One read into rd's buffer at `at`, with the descriptors that came along. */
static ssize_t read_some(qv_frame_reader *rd, int fd, size_t at, size_t n)
{
    void *p = rd->buf.data + at;
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {p, n};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    ssize_t r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    for (struct cmsghdr *c = r >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        for (size_t i = 0; CMSG_LEN((i + 1) * sizeof(int)) <= c->cmsg_len; i++) {
            int d;
            memcpy(&d, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            take_passed(rd, d, at + (size_t)r);
        }
    }
    return r;
}

/* Reads until rd holds `need` bytes, taking whatever more has come. */
static int frame_fill(qv_frame_reader *rd, int fd, size_t need)
{
    qv_buf *b = &rd->buf;
    if (need > b->cap) {
        size_t cap = need < 16384 ? 16384 : need;
        char *d = qv_realloc(b->data, cap);
        if (!d) return QV_ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    while (b->len < need) {
        ssize_t r = read_some(rd, fd, b->len, b->cap - b->len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return QV_EIO;
        b->len += (size_t)r;
    }
    return QV_OK;
}

int qv_frame_read(qv_frame_reader *rd, int fd, int *type, const unsigned char **payload,
                  size_t *len)
{
    qv_buf *b = &rd->buf;
    /* The frame handed out last is done with: keep only what followed it. */
    drop_passed(rd);
    b->len -= rd->start;
    if (b->len)
        memmove(b->data, b->data + rd->start, b->len);
    else if (b->cap > ((size_t)1 << 20))
        qv_buf_free(b); /* a large body's room is not kept for every worker */
    rd->start = 0;
    int rc = frame_fill(rd, fd, QV_WIRE_HEADER);
    if (rc) return rc;
    if (qv_wire_parse_header((const unsigned char *)b->data, type, len)) return QV_EPROTOCOL;
    if ((rc = frame_fill(rd, fd, QV_WIRE_HEADER + *len))) return rc;
    *payload = (const unsigned char *)b->data + QV_WIRE_HEADER;
    rd->start = QV_WIRE_HEADER + *len;
    return QV_OK;
}

void qv_frame_unread(qv_frame_reader *rd)
{
    rd->start = 0; /* (the frame handed out last is the buffer's first) */
}

int qv_frame_buffered(const qv_frame_reader *rd)
{
    const qv_buf *b = &rd->buf;
    size_t left = b->len - rd->start, len;
    int type;
    if (left < QV_WIRE_HEADER) return 0;
    /* A malformed header counts too: no more bytes come to wake a poll for
     * it, and the next qv_frame_read reports it without reading. */
    if (qv_wire_parse_header((const unsigned char *)b->data + rd->start, &type, &len)) return 1;
    return left >= QV_WIRE_HEADER + len;
}
