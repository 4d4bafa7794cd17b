/* A thread of yours that leads QV_LOOP while it waits writes an output_fd
 * pipe itself, with SIGPIPE blocked from its first write to the end of its
 * lead (sigpipe.c), so that a reader that went fails the transfer, not the
 * program. That is all it may change: here a progress hook runs on the
 * waiting thread, inside the lead and after the body's write, and does what
 * a program may do there. */
#include "support.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

TX_KIND_ONLY(loop);
TestSuite(sigpipe, .timeout = 60);

static pthread_t waiter;      /* the test's thread, which waits */
static void (*in_lead)(void); /* what the hook does on it */
static atomic_int ran;        /* ... how many times it did */

static void on_progress(qv_future *f, long long dl_now, long long dl_total, long long ul_now,
                        long long ul_total, void *arg)
{
    (void)f, (void)ul_now, (void)ul_total, (void)arg;
    if (pthread_equal(pthread_self(), waiter) && dl_total > 0 && dl_now == dl_total) {
        in_lead();
        atomic_fetch_add(&ran, 1);
    }
}

/* A GET whose body goes to a pipe, after a delay, so that this thread leads
 * the loop by then (it waits for the result), with fn run by the hook. */
static void lead_with(void (*fn)(void))
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    waiter = pthread_self();
    in_lead = fn;
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/delay/0.2"), .output_fd = p[1], .on_progress = on_progress),
                 QV_OK);
    tx_expect_status(f, 200);
    cr_assert_gt(atomic_load(&ran), 0, "the hook never ran on the waiting thread after the body");
    qv_future_release(f);
    qv_session_free(s);
    close(p[0]);
    close(p[1]);
}

static int blocked(int sig)
{
    sigset_t now;
    cr_assert_eq(pthread_sigmask(SIG_SETMASK, NULL, &now), 0);
    return sigismember(&now, sig);
}

static void block_sigusr1(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
}

/* The lead's end restored the whole mask it found, undoing this. */
Test(sigpipe, a_mask_change_made_during_a_lead_stays)
{
    cr_assert_not(blocked(SIGUSR1));
    lead_with(block_sigusr1);
    cr_assert(blocked(SIGUSR1), "SIGUSR1, blocked by a hook during the lead, is unblocked after");
    cr_assert_not(blocked(SIGPIPE), "SIGPIPE stayed blocked after the lead");
}

static volatile sig_atomic_t caught;

static void on_sigpipe(int sig)
{
    (void)sig;
    caught++;
}

static void send_sigpipe_to_the_process(void)
{
    kill(getpid(), SIGPIPE);
}

/* The lead's end took any pending SIGPIPE for one its writes raised, and
 * one sent to the process (here while every thread blocked it) was lost. */
Test(sigpipe, a_sigpipe_sent_to_the_process_during_a_lead_reaches_its_handler)
{
    struct sigaction sa = {.sa_handler = on_sigpipe};
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGPIPE, &sa, NULL), 0);
    lead_with(send_sigpipe_to_the_process);
    cr_assert_eq(caught, 1, "the handler saw %d SIGPIPE sent to the process during the lead",
                 (int)caught);
    cr_assert_not(blocked(SIGPIPE));
}
