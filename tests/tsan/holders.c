/*
 * The stress run's holder phase (internal API): a future's holder hands it
 * to another holder (qv_future_rehold, as a process pool takes a held
 * future for a worker) while another thread cancels it. Either the cancel
 * reached the first holder, which let the future go (the cancel completed
 * it, the hand-over failed), or the hand-over came first and the cancel
 * reached the second holder, which ends the future itself; never both,
 * never neither. The stat each holder counts a running future in is back
 * to 0 at the end, and the future has exactly one completion.
 */
#define _GNU_SOURCE /* pthread barriers */
#include "holders.h"

#include "internal.h"

#include <pthread.h>
#include <stdio.h>

typedef struct race {
    pthread_barrier_t go;
    qv_future *f;
    atomic_int first_calls, second_calls; /* cancels each holder was told of */
    atomic_int completions;
    int handed; /* the hand-over's result */
} race;

static race R;
static atomic_size_t first_count, second_count;

/* The first holder lets a cancelled future go, as a pool's held one. */
static int first_fn(qv_future *f, void *arg, int cancel)
{
    (void)f;
    (void)arg;
    if (cancel) atomic_fetch_add(&R.first_calls, 1);
    return cancel;
}

/* The second runs it: a cancel only tells it. */
static int second_fn(qv_future *f, void *arg, int cancel)
{
    (void)f;
    (void)arg;
    if (cancel) atomic_fetch_add(&R.second_calls, 1);
    return 0;
}

static const qv_holder first = {.fn = first_fn, .count = &first_count, .waiting = 1};
static const qv_holder second = {.fn = second_fn, .count = &second_count};

static void on_done(qv_future *f, void *arg)
{
    (void)f;
    (void)arg;
    atomic_fetch_add(&R.completions, 1);
}

static void *canceller(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&R.go);
    qv_future_cancel(R.f);
    return NULL;
}

static void *hander(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&R.go);
    R.handed = qv_future_rehold(R.f, &first, &second);
    return NULL;
}

int holders_race(int rounds)
{
    int bad = 0;
    for (int i = 0; i < rounds && !bad; i++) {
        R.f = qv_future_alloc(0);
        if (!R.f || pthread_barrier_init(&R.go, NULL, 2)) return -1;
        atomic_store(&R.first_calls, 0);
        atomic_store(&R.second_calls, 0);
        atomic_store(&R.completions, 0);
        qv_future_add_done_callback(R.f, on_done, NULL);
        if (!qv_future_begin(R.f, &first)) return -1;
        pthread_t a, b;
        pthread_create(&a, NULL, canceller, NULL);
        pthread_create(&b, NULL, hander, NULL);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        /* Handed over, the second holder ends it: as cancelled, whatever
         * its outcome, since the cancel came. */
        if (R.handed) qv_future_complete(R.f, QV_FINISHED, QV_OK, NULL, NULL);
        int want_first = !R.handed, want_second = R.handed;
        if (atomic_load(&R.first_calls) != want_first ||
            atomic_load(&R.second_calls) != want_second || atomic_load(&R.completions) != 1 ||
            qv_future_state_get(R.f) != QV_CANCELLED || atomic_load(&first_count) != 0 ||
            atomic_load(&second_count) != 0) {
            fprintf(stderr,
                    "holders: round %d: handed %d, cancels told %d/%d, %d completions, "
                    "state %d, counts %zu/%zu\n",
                    i, R.handed, atomic_load(&R.first_calls), atomic_load(&R.second_calls),
                    atomic_load(&R.completions), (int)qv_future_state_get(R.f),
                    atomic_load(&first_count), atomic_load(&second_count));
            bad = 1;
        }
        pthread_barrier_destroy(&R.go);
        qv_future_release(R.f);
    }
    return bad;
}
