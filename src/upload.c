/* Request bodies read as they are sent: a file (upload_path, opened again
 * for each attempt, rewound for a 307/308 redirect or an auth round; a pipe
 * is read once) or the caller's on_upload callback (sent once; a resend
 * fails clearly); and the check of multipart file parts, which libcurl reads
 * itself. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *qv_upload_cant_rewind(const qv_slot *slot)
{
    if (slot->f->req.io->on_upload)
        return "the on_upload body must be sent again (a redirect or an auth round), but a "
               "callback's body can't rewind: give upload_path or body instead";
    if (slot->upload_pipe)
        return "the upload_path body must be sent again (a redirect or an auth round), but a "
               "pipe can't rewind: give a regular file or body instead";
    return NULL;
}

/* A FIFO opened without waiting reads 0 while no writer has opened it,
 * as at its end. Linux tells the two apart: poll reports POLLHUP on it only
 * once a writer has come (and gone) since our open (one that came before
 * shows by the bytes it left). 1: no writer yet, the empty read is no end;
 * 0: one came (its bytes, or its end, are to read). */
static int writer_unmet(qv_slot *slot)
{
    struct pollfd p = {.fd = slot->upload_fd, .events = POLLIN};
    slot->upload_unmet = poll(&p, 1, 0) == 0;
    return slot->upload_unmet;
}

static size_t read_file(char *buf, size_t size, size_t n, void *p)
{
    qv_slot *slot = p;
    for (;;) {
        ssize_t got = read(slot->upload_fd, buf, size * n);
        if (got > 0) {
            /* A writer came, if before our open (poll then reports no
             * POLLHUP when it has gone): an empty read from now on is the
             * end. */
            slot->upload_unmet = 0;
            return (size_t)got;
        }
        if (got == 0 && !slot->upload_unmet) return 0;
        /* (A pipe read without waiting: nothing in yet, or no writer yet;
         * once one came, its bytes or its end are read again.) */
        if (got == 0 ? writer_unmet(slot) : errno == EAGAIN) {
            slot->upload_waits = 1;
            return CURL_READFUNC_PAUSE;
        }
        if (got < 0 && errno != EINTR) break;
    }
    slot->sink.err = errno;
    slot->sink.io_path = slot->f->req.io->upload_path;
    slot->sink.io_reading = 1;
    slot->abort = QV_ABORT_IO;
    return CURL_READFUNC_ABORT;
}

static int seek_file(void *p, curl_off_t offset, int origin)
{
    qv_slot *slot = p;
    return lseek(slot->upload_fd, (off_t)offset, origin) < 0 ? CURL_SEEKFUNC_FAIL
                                                             : CURL_SEEKFUNC_OK;
}

static size_t read_callback(char *buf, size_t size, size_t n, void *p)
{
    qv_slot *slot = p;
    qv_future *f = slot->f;
    /* No call once a cancel was asked (libcurl may read on before the
     * transfer's next look at it). */
    long got = atomic_load(&f->cancel_requested)
                   ? -1
                   : f->req.io->on_upload(buf, size * n, f->req.io->on_upload_arg);
    if (got < 0 || (size_t)got > size * n) {
        /* (A process worker's stands for the parent's, and stops for a cancel.) */
        slot->abort = atomic_load(&f->cancel_requested) ? QV_ABORT_CANCEL : QV_ABORT_HOOK;
        return CURL_READFUNC_ABORT;
    }
    if (got > 0) f->out_unrepeatable = 1;
    return (size_t)got;
}

static int cant_seek(void *p, curl_off_t offset, int origin)
{
    (void)p, (void)offset, (void)origin;
    return CURL_SEEKFUNC_CANTSEEK;
}

CURLcode qv_upload_setup(qv_slot *slot, char **msg)
{
    CURL *e = slot->easy;
    const qv_req *r = &slot->f->req;
    curl_off_t size = -1;
    CURLcode cc = CURLE_OK;
    if (r->io->upload_path) {
        /* A pipe is opened and read without waiting: an open of a FIFO
         * waits for a writer, a read for its bytes, and either heard no
         * cancel meanwhile (on any executor), and on QV_LOOP stalled every
         * transfer, or deadlocked a thread of yours leading the loop that
         * writes the pipe only after its wait. (Our own open file
         * description: the writer's flags stay as they are. O_NONBLOCK
         * changes nothing for a regular file.) Opened first, then looked
         * at (fstat): what is read is what was looked at, whatever the path
         * names by then (a stat first, then an open, let a FIFO put in the
         * file's place be opened waiting for a writer). */
        struct stat st;
        slot->upload_fd = open(r->io->upload_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (slot->upload_fd < 0 || fstat(slot->upload_fd, &st)) {
            *msg = qv_future_message(slot->f, QV_EIO, "cannot read %s: %s", r->io->upload_path,
                                     strerror(errno));
            return CURLE_READ_ERROR;
        }
        size = S_ISREG(st.st_mode) ? (curl_off_t)st.st_size : -1;
        slot->upload_unmet = S_ISFIFO(st.st_mode);
        /* A pipe's bytes are read once, and our open and close alone end
         * its writer's run (its writes fail once no reader is left): opened
         * again, it would wait for a writer that never comes. So, as an
         * on_upload body, it is not retried. */
        slot->upload_pipe = !S_ISREG(st.st_mode);
        if (slot->upload_pipe) slot->f->out_unrepeatable = 1;
        cc = curl_easy_setopt(e, CURLOPT_READFUNCTION, read_file);
        if (!cc) cc = curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, seek_file);
    } else {
        if (r->io->upload_len > 0) size = (curl_off_t)r->io->upload_len;
        cc = curl_easy_setopt(e, CURLOPT_READFUNCTION, read_callback);
        if (!cc) cc = curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, cant_seek);
    }
    if (!cc) cc = curl_easy_setopt(e, CURLOPT_READDATA, slot);
    if (!cc) cc = curl_easy_setopt(e, CURLOPT_SEEKDATA, slot);
    /* POST keeps libcurl's POST handling (303 turns it into a GET); any
     * other method is an upload under the request's own method name. */
    if (strcmp(r->method, "POST") == 0) {
        if (!cc) cc = curl_easy_setopt(e, CURLOPT_POST, 1L);
        if (!cc) cc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, size);
    } else {
        if (!cc) cc = curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        if (!cc) cc = curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, size);
        if (!cc && strcmp(r->method, "PUT") != 0)
            cc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    }
    return cc;
}

int qv_upload_check_parts(qv_slot *slot, char **msg)
{
    const qv_req *r = &slot->f->req;
    for (size_t i = 0; i < r->nparts; i++) {
        const char *path = r->parts[i].file;
        struct stat st;
        /* libcurl opens and reads a part's file itself, and waits there: a
         * FIFO's open for its writer, its reads for bytes (no cancel heard
         * meanwhile; on QV_LOOP every transfer stalled). One it cannot
         * read at all is libcurl's to report (QV_EIO). */
        if (path && stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
            *msg = qv_future_message(slot->f, QV_EINVAL,
                                     "multipart file part %s is not a regular file (a pipe can "
                                     "be sent as upload_path)",
                                     path);
            return QV_EINVAL;
        }
    }
    return QV_OK;
}

void qv_upload_end(qv_slot *slot)
{
    if (slot->upload_fd >= 0) close(slot->upload_fd);
    slot->upload_fd = -1;
    slot->upload_waits = 0;
}

int qv_upload_watch_fd(const qv_slot *slot)
{
    return slot->upload_waits ? slot->upload_fd : -1;
}

void qv_upload_look(qv_slot *slot)
{
    struct pollfd p = {.fd = slot->upload_fd, .events = POLLIN};
    if (!slot->upload_waits || poll(&p, 1, 0) <= 0) return;
    slot->upload_waits = 0;
    curl_easy_pause(slot->easy, CURLPAUSE_CONT);
}

CURLcode qv_upload_rewind(qv_slot *slot)
{
    const qv_req *r = &slot->f->req;
    const char *cant = qv_upload_cant_rewind(slot);
    if (cant) {
        snprintf(slot->errbuf, sizeof(slot->errbuf), "%s", cant);
        return CURLE_SEND_FAIL_REWIND;
    }
    if (slot->upload_fd >= 0 && lseek(slot->upload_fd, 0, SEEK_SET) < 0) {
        slot->sink.err = errno;
        slot->sink.io_path = r->io->upload_path;
        slot->sink.io_reading = 1;
        slot->abort = QV_ABORT_IO;
        return CURLE_READ_ERROR;
    }
    return CURLE_OK;
}
