/* The bound on finished-but-uncollected responses of QV_THREADS and QV_LOOP:
 * what runs their queue (a pool's workers, the loop's leader) starts no more
 * once max_uncollected of them wait for their collector, until half of them
 * are collected, unless something urgent needs it. The futures tell it what
 * it counts through the executor's runner (qv_uncollected_*, below), whose
 * marks it keeps in their runner_bits. */
#include "internal.h"

/* A future's runner_bits: someone wants it (waits for it, or may: a
 * callback, a waiter link, a poll); it is counted in ex->urgent (wanted
 * and waiting to start); it is counted in ex->uncollected (finished with
 * a response not yet collected, with a reference to ex). */
enum { WANTED = 1, URGENT = 2, COUNTED = 4 };

void qv_uncollected_setup(qv_executor *ex, long bound)
{
    /* As many finished responses as transfers, and at least 64: twice as
     * many held 4 MiB more of 64 KiB bodies at 64 workers for no CPU saved
     * (bench/NOTES.md, 2026-12-06 21:50). */
    if (bound == 0) bound = ex->o.max_workers > 64 ? ex->o.max_workers : 64;
    ex->max_uncollected = bound < 0 ? 0 : bound;
}

/* Paused workers look again (ex->mu held): woken by the executor's own
 * resume if it has one, else on ex->resume. */
static void resume_locked(qv_executor *ex)
{
    if (!atomic_load(&ex->paused)) return;
    if (ex->vt->resume)
        ex->vt->resume(ex);
    else
        pthread_cond_broadcast(&ex->resume);
}

static void resume(qv_executor *ex)
{
    /* Read after the caller's change to the counts, as hold_back reads
     * those after counting itself paused: one of the two sees the other. */
    if (!atomic_load(&ex->paused)) return;
    if (ex->vt->resume) { /* (it takes no lock) */
        ex->vt->resume(ex);
        return;
    }
    pthread_mutex_lock(&ex->mu);
    resume_locked(ex);
    pthread_mutex_unlock(&ex->mu);
}

/* Adds d to the urgent needs (0: a future's, counted by
 * qv_uncollected_look already); 1 if the paused workers must go on (a need
 * came, not went). */
static int add_urgent(qv_executor *ex, int d)
{
    if (!ex->max_uncollected) return 0;
    atomic_fetch_add(&ex->urgent, d);
    return d >= 0;
}

void qv_executor_urge_locked(qv_executor *ex, int d)
{
    if (add_urgent(ex, d)) resume_locked(ex);
}

int qv_executor_hold_back(qv_executor *ex)
{
    if (!ex->max_uncollected || ex->shutdown || qv_executor_empty_locked(ex) ||
        atomic_load(&ex->uncollected) < ex->max_uncollected)
        return 0;
    atomic_fetch_add(&ex->paused, 1);
    if (!atomic_load(&ex->urgent) && atomic_load(&ex->uncollected) >= ex->max_uncollected) return 1;
    atomic_fetch_sub(&ex->paused, 1);
    return 0;
}

int qv_executor_hold_on(qv_executor *ex, int held)
{
    if (!held) return qv_executor_hold_back(ex);
    /* The pause ends where a paused worker is woken: see
     * qv_uncollected_collected. */
    if (!ex->shutdown && !qv_executor_empty_locked(ex) && !atomic_load(&ex->urgent) &&
        atomic_load(&ex->uncollected) > ex->max_uncollected / 2)
        return 1;
    atomic_fetch_sub(&ex->paused, 1);
    return 0;
}

void qv_executor_urge(qv_executor *ex, int d)
{
    if (ex && add_urgent(ex, d)) resume(ex);
}

/* Under f->lock: f counts in its executor's urgent needs while someone
 * wants it and it waits to start. Its bits change with atomic operations:
 * qv_uncollected_collected clears COUNTED without the lock. */
int qv_uncollected_look(qv_future *f, int want)
{
    unsigned bits = atomic_load_explicit(&f->runner_bits, memory_order_relaxed);
    /* Unwanted, it is not urgent (most looks: a future no one waited for
     * yet, begun, held, done). */
    if (!want && !(bits & WANTED)) return 0;
    qv_executor *ex = f->ex;
    if (!ex->max_uncollected) return 0;
    if (want && !(bits & WANTED)) {
        atomic_fetch_or(&f->runner_bits, WANTED);
        bits |= WANTED;
    }
    int u =
        (bits & WANTED) && (f->state == QV_PENDING || (f->state == QV_RUNNING && f->holder_waits));
    if (u == !!(bits & URGENT)) return 0;
    if (u)
        atomic_fetch_or(&f->runner_bits, URGENT);
    else
        atomic_fetch_and(&f->runner_bits, (unsigned char)~URGENT);
    atomic_fetch_add(&ex->urgent, u ? 1 : -1);
    if (!u) return 0;
    /* The paused workers must look, after the unlock: by then f may be done
     * and its executor free to go, but for this reference. */
    qv_executor_ref(ex);
    return 1;
}

void qv_uncollected_urge(qv_future *f)
{
    qv_executor_urge(f->ex, 0);
    qv_executor_unref(f->ex);
}

void qv_uncollected_finished(qv_future *f)
{
    qv_executor *ex = f->ex;
    if (!ex->max_uncollected) return;
    qv_executor_ref(ex); /* the executor may be freed before f is collected */
    atomic_fetch_add(&ex->uncollected, 1);
    atomic_fetch_or(&f->runner_bits, COUNTED);
}

void qv_uncollected_collected(qv_future *f)
{
    if (!(atomic_load(&f->runner_bits) & COUNTED) ||
        !(atomic_fetch_and(&f->runner_bits, (unsigned char)~COUNTED) & COUNTED))
        return;
    qv_executor *ex = f->ex;
    /* Paused workers go on once half the bound is collected, all at once:
     * woken one a collection, each ran one request and paused again, a
     * sleep and a wake-up a request (bench/NOTES.md, 2026-12-07 06:54). */
    if (atomic_fetch_sub(&ex->uncollected, 1) - 1 <= ex->max_uncollected / 2) resume(ex);
    qv_executor_unref(ex);
}
