/* An output_fd pipe nobody reads, written when the process that writes it
 * has no descriptor left (EMFILE) for the non-blocking open of it that
 * sink.c makes (/proc/self/fd/N): a cancel still ends the write, the future
 * ends QV_ECANCELLED, and the executor's free returns while the pipe is
 * still open and unread. (Written with a plain write() to the caller's own
 * descriptor, it waited for the reader for good: no cancel reached it, and
 * the free joined the thread that waited.) On QV_PROCESSES the worker
 * writes, with every descriptor of its own taken, and hears of the cancel
 * on its control socket meanwhile. */
#include "support.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

TestSuite(nofile, .timeout = 60);

static const char *nginx(const char *path)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s%s", tx_env("QV_NGINX_URL", "nginx"), path);
    return buf;
}

/* Every free descriptor of the process that runs the hook taken (copies of
 * 0), before the attempt: on QV_PROCESSES the worker's, kept there until
 * the pool goes; else this process's, which the test gives back. */
static int *taken, ntaken;

static int take_every_descriptor(qv_session *s, qv_attempt *a, void *arg)
{
    (void)s, (void)a, (void)arg;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) || !(taken = malloc(sizeof(int) * rl.rlim_cur))) return 1;
    int d;
    while ((d = dup(0)) >= 0) taken[ntaken++] = d;
    return errno != EMFILE;
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
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = nginx("/big"),
                                               .output_fd = p[1],
                                               .on_request = take_every_descriptor}),
                 QV_OK);
    /* The pipe's 64 KiB fill up: what is written next waits for room. */
    int queued = 0;
    for (int i = 0; i < 20000 && queued < 65536 && !qv_future_done(f); i++) {
        cr_assert_eq(ioctl(p[0], FIONREAD, &queued), 0);
        if (queued < 65536) usleep(1000);
    }
    cr_assert_eq(queued, 65536, "%d bytes reached the pipe (%s)", queued,
                 qv_future_done(f) ? qv_future_error(f) : "not done");
    /* Its writer made no descriptor of its own for the pipe: there was none
     * (in this process; a process worker has its own). */
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    cr_assert_eq(ends_of(p[1], (int)rl.rlim_cur), 2, "a descriptor was opened for the pipe");
    cr_assert_eq(ntaken > 0, tx_kind() != QV_PROCESSES);
    for (int i = 0; i < ntaken; i++) close(taken[i]);
    free(taken);
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
