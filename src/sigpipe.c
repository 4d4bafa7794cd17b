/* SIGPIPE kept from the program. A write to a pipe or FIFO whose reader is
 * gone (output_fd, an output_path written in place) fails with EPIPE, and
 * the kernel also sends the writing thread SIGPIPE, whose default action
 * ends the whole process: the transfer must fail with QV_EIO instead.
 * libcurl's own sends say MSG_NOSIGNAL (quiver sets CURLOPT_NOSIGNAL, so
 * libcurl changes no handler), and so do quiver's socket writes; a pipe has
 * no such flag. So quiver's own threads block the signal for good (a
 * signal sent to the thread that raised it stays pending there, unseen),
 * and a thread of yours that writes a pipe for quiver (QV_LOOP's leader
 * while it waits) blocks it from its first such write to the end of its
 * lead, then takes back the one its writes raised and unblocks it again if
 * it was not blocked before. Only that: a mask change a hook made on the
 * thread meanwhile stays, and a SIGPIPE sent to the process meanwhile (kill)
 * is not taken: once unblocked, it reaches its handler. */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

/* 1: a thread of quiver's (blocked for good); 2: a thread of yours between
 * its first qv_sigpipe_write and qv_sigpipe_release. */
static _Thread_local int held;
static _Thread_local int was_blocked; /* ... whether SIGPIPE was blocked then */
static _Thread_local int was_pending; /* ... whether SIGPIPE was pending then */
static _Thread_local int raised;      /* ... whether a write since raised one */

static sigset_t just_sigpipe(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    return s;
}

void qv_sigpipe_block_thread(void)
{
    sigset_t s = just_sigpipe();
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    held = 1;
}

static void hold(void)
{
    sigset_t s = just_sigpipe(), old, pending;
    was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &s, &old);
    was_blocked = sigismember(&old, SIGPIPE);
    raised = 0;
    held = 2;
}

ssize_t qv_sigpipe_write(int fd, const void *buf, size_t n)
{
    if (!held) hold();
    ssize_t w = write(fd, buf, n);
    /* (The kernel raises SIGPIPE with EPIPE, at the writing thread.) */
    if (w < 0 && errno == EPIPE && held == 2) raised = 1;
    return w;
}

void qv_sigpipe_release(void)
{
    if (held != 2) return;
    sigset_t s = just_sigpipe();
    /* The one a write raised is this thread's own, which sigtimedwait
     * takes before one sent to the process. Not if one was pending before:
     * signals of one number merge, so that one and ours are the same. */
    if (raised && !was_pending) sigtimedwait(&s, NULL, &(struct timespec){0, 0});
    if (!was_blocked) pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    held = 0;
}
