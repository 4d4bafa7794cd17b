/* A lock and a wait word of 4 bytes each, on Linux futexes, for the future:
 * programs queue futures by the ten thousand, and a pthread mutex and
 * condition variable (88 bytes) were a sixth of one. All zero is a free lock
 * and a word no one waits on, so a zeroed future needs no set-up and no
 * tear-down. The lock is Drepper's ("Futexes Are Tricky", mutex 3): 0 free,
 * 1 held, 2 held and someone may sleep on it. The wait word counts
 * broadcasts in steps of 2; bit 0 says someone may sleep on it, so a
 * broadcast with no one asleep makes no system call. */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

static long futex(atomic_uint *word, int op, unsigned val, const struct timespec *abs)
{
    return syscall(SYS_futex, word, op, val, abs, NULL, FUTEX_BITSET_MATCH_ANY);
}

void qv_lock_take(qv_lock *l)
{
    unsigned c = 0;
    if (atomic_compare_exchange_strong_explicit(&l->v, &c, 1, memory_order_acquire,
                                                memory_order_relaxed))
        return;
    /* Held: say that we sleep (2), and sleep until it is given back. */
    if (c != 2) c = atomic_exchange_explicit(&l->v, 2, memory_order_acquire);
    while (c != 0) {
        futex(&l->v, FUTEX_WAIT_BITSET_PRIVATE, 2, NULL);
        c = atomic_exchange_explicit(&l->v, 2, memory_order_acquire);
    }
}

void qv_lock_give(qv_lock *l)
{
    if (atomic_fetch_sub_explicit(&l->v, 1, memory_order_release) == 1) return;
    atomic_store_explicit(&l->v, 0, memory_order_release);
    futex(&l->v, FUTEX_WAKE_PRIVATE, 1, NULL);
}

unsigned qv_signal_prepare(qv_signal *s)
{
    return atomic_fetch_or(&s->v, 1) | 1;
}

static int signal_sleep(qv_signal *s, unsigned v, const struct timespec *deadline, int op)
{
    long rc = futex(&s->v, op, v, deadline);
    return rc != 0 && errno == ETIMEDOUT ? ETIMEDOUT : 0;
}

int qv_signal_wait(qv_signal *s, qv_lock *l, const struct timespec *deadline)
{
    /* Under l, before the condition can change: a broadcast after this
     * sees the bit, and changes the word, so the sleep below cannot miss it. */
    unsigned v = qv_signal_prepare(s);
    qv_lock_give(l);
    int rc = signal_sleep(s, v, deadline, FUTEX_WAIT_BITSET_PRIVATE);
    qv_lock_take(l);
    return rc;
}

int qv_signal_sleep_shared(qv_signal *s, unsigned v, const struct timespec *deadline)
{
    return signal_sleep(s, v, deadline, FUTEX_WAIT_BITSET);
}

static void signal_all(qv_signal *s, int op)
{
    unsigned v = atomic_load(&s->v);
    while (!atomic_compare_exchange_weak(&s->v, &v, (v & ~1u) + 2)) {
    }
    if (v & 1) futex(&s->v, op, INT_MAX, NULL);
}

void qv_signal_all(qv_signal *s)
{
    signal_all(s, FUTEX_WAKE_PRIVATE);
}

void qv_signal_all_shared(qv_signal *s)
{
    signal_all(s, FUTEX_WAKE);
}

int qv_signal_sleepers(qv_signal *s)
{
    return atomic_load(&s->v) & 1;
}
