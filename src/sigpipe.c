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
 * lead, then takes back the one its writes raised and restores its mask. */
#include "internal.h"

#include <signal.h>
#include <time.h>

/* 1: a thread of quiver's (blocked for good); 2: a thread of yours between
 * qv_sigpipe_hold and qv_sigpipe_release. */
static _Thread_local int held;
static _Thread_local sigset_t before; /* ... its mask before */
static _Thread_local int was_pending; /* ... whether SIGPIPE was pending then */

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

void qv_sigpipe_hold(void)
{
    if (held) return;
    sigset_t s = just_sigpipe(), pending;
    was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &s, &before);
    held = 2;
}

void qv_sigpipe_release(void)
{
    if (held != 2) return;
    sigset_t s = just_sigpipe(), pending;
    /* (One raised by a write of ours; not one that was there before.) */
    if (!was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE))
        sigtimedwait(&s, NULL, &(struct timespec){0, 0});
    pthread_sigmask(SIG_SETMASK, &before, NULL);
    held = 0;
}
