/* An output_fd pipe nobody reads, written when the process has no
 * descriptor left (EMFILE) for the non-blocking open of it that sink.c
 * makes (/proc/self/fd/N): a cancel still ends the write, the future ends
 * QV_ECANCELLED, and the executor's free returns while the pipe is still
 * open and unread. (Written with a plain write() to the caller's own
 * descriptor, it waited for the reader for good: no cancel reached it, and
 * the free joined the thread that waited.) Not on QV_PROCESSES, whose
 * worker hears of a cancel only between passes of its transfer
 * (docs/guide.md). */
#include "support.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

TX_KIND_ONLY(threads, loop);

TestSuite(nofile, .timeout = 60);

static const char *nginx(const char *path)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s%s", tx_env("QV_NGINX_URL", "nginx"), path);
    return buf;
}

/* Every free descriptor taken (copies of 0): n of them in *fds. */
static int *fill_descriptors(int *n)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    int *fds = malloc(sizeof(int) * rl.rlim_cur);
    cr_assert_not_null(fds);
    *n = 0;
    int d;
    while ((d = dup(0)) >= 0) fds[(*n)++] = d;
    cr_assert_eq(errno, EMFILE);
    return fds;
}

/* How many of the process's descriptors name the pipe fd is an end of
 * (fstat of each: no descriptor needed to count them). */
static int ends_of(int fd, int limit)
{
    struct stat want, st;
    cr_assert_eq(fstat(fd, &want), 0);
    int n = 0;
    for (int i = 0; i < limit; i++)
        n += fstat(i, &st) == 0 && st.st_dev == want.st_dev && st.st_ino == want.st_ino;
    return n;
}

Test(nofile, a_cancel_ends_a_write_to_a_pipe_nobody_reads_with_no_descriptor_left)
{
    qv_executor *ex = tx_executor(1);
    qv_session *s = TX_SESSION(.executor = ex);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    /* A connection to nginx kept from this request: the download below
     * needs no new descriptor to start. */
    qv_future *warm;
    tx_get_ok(s, &warm, nginx("/64k"));
    qv_future_release(warm);
    int n, *fds = fill_descriptors(&n);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = nginx("/big"), .output_fd = p[1]}),
                 QV_OK);
    /* The pipe's 64 KiB fill up: what is written next waits for room. */
    int queued = 0;
    for (int i = 0; i < 20000 && queued < 65536 && !qv_future_done(f); i++) {
        cr_assert_eq(ioctl(p[0], FIONREAD, &queued), 0);
        if (queued < 65536) usleep(1000);
    }
    cr_assert_eq(queued, 65536, "%d bytes reached the pipe (%s)", queued,
                 qv_future_done(f) ? qv_future_error(f) : "not done");
    /* Its writer made no descriptor of its own for the pipe: there was none. */
    cr_assert_eq(ends_of(p[1], n + 64), 2, "a descriptor was opened for the pipe");
    for (int i = 0; i < n; i++) close(fds[i]);
    free(fds);
    cr_assert_eq(qv_future_cancel(f), 1);
    /* Ends with the pipe still full and open: nothing waited for a reader. */
    cr_assert_eq(qv_future_wait(f, -1), QV_OK);
    tx_expect_error(f, QV_ECANCELLED);
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
    cr_assert_eq(ioctl(p[0], FIONREAD, &queued), 0);
    cr_assert_eq(queued, 65536, "the pipe was read");
    close(p[0]);
    close(p[1]);
}
