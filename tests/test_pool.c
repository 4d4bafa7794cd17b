/* A QV_THREADS worker's heap (src/pool.c): a worker's blocks of up to
 * QV_POOL_MAX bytes come from a heap of its own; a freed block serves the
 * next allocation of its size class again, whichever thread freed it, also
 * after the worker that made it has ended (through the depot); calloc and realloc keep their
 * promises on such blocks; and a worker running the same requests again
 * and again stops taking new memory. A QV_LOOP executor's heap, which its
 * leaders share. The helpers run on threads of their own, as workers do;
 * Criterion's asserts stay on the test's thread. */
#include "../src/internal.h"
#include "support.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

TX_KIND_ONLY(threads);

/* A sanitizer build keeps worker heaps off unless asked (src/pool.c). */
__attribute__((constructor)) static void heaps_on(void)
{
    setenv("QV_WORKER_HEAPS", "1", 1);
}

TestSuite(pool, .timeout = 120);

static void run_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, fn, arg), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
}

typedef struct seen {
    char *first, *again, *other_class, *big;
    int owned, big_owned;
    size_t nonzero; /* bytes of a calloc'd recycled block that were not 0 */
} seen;

static void *reuse_thread(void *arg)
{
    seen *k = arg;
    void *small[16];
    qv_mem_keep_begin();
    k->first = qv_malloc(16385);
    k->owned = qv_pool_owns(k->first);
    memset(k->first, 'x', 16385);
    qv_free(k->first);
    /* Blocks of another class in between do not split it. */
    for (int i = 0; i < 16; i++) small[i] = qv_malloc(100);
    k->again = qv_calloc(1, 16400);
    for (size_t i = 0; i < 16400; i++) k->nonzero += k->again[i] != 0;
    k->other_class = qv_malloc(12000);
    k->big = qv_malloc(QV_POOL_MAX + 1);
    k->big_owned = qv_pool_owns(k->big);
    qv_free(k->big);
    qv_free(k->other_class);
    qv_free(k->again);
    for (int i = 0; i < 16; i++) qv_free(small[i]);
    qv_mem_keep_end();
    return NULL;
}

Test(pool, a_freed_block_serves_its_class_again)
{
    if (qv_allocator_is_custom()) cr_skip_test("an allocator of the program's own");
    seen k = {0};
    run_thread(reuse_thread, &k);
    cr_assert(k.owned, "a worker's block comes from its heap");
    cr_assert_eq(k.again, k.first, "the freed block comes back for its class");
    cr_assert_eq(k.nonzero, 0, "calloc from a recycled block: %zu bytes not 0", k.nonzero);
    cr_assert_neq(k.other_class, k.first, "a block of another class is another block");
    cr_assert_not(k.big_owned, "a block over QV_POOL_MAX is the allocator's");
    void *mine = qv_malloc(100);
    cr_assert_not(qv_pool_owns(mine), "a thread that is no worker allocates as before");
    qv_free(mine);
}

/* A worker hands a block to this thread, which frees it; the worker's next
 * allocation of the class gets it back from the depot. Then the worker ends
 * with a block still out, freed here after; the next worker gets it. */
typedef struct handoff {
    pthread_barrier_t made, freed;
    char *block, *again, *late, *adopted;
} handoff;

static void *handing_thread(void *arg)
{
    handoff *h = arg;
    qv_mem_keep_begin();
    h->block = qv_malloc(700);
    memset(h->block, 'y', 700);
    pthread_barrier_wait(&h->made);
    pthread_barrier_wait(&h->freed);
    h->again = qv_malloc(700);
    h->late = qv_malloc(3000);
    qv_free(h->again);
    qv_mem_keep_end(); /* h->late is still out */
    return NULL;
}

static void *adopting_thread(void *arg)
{
    handoff *h = arg;
    qv_mem_keep_begin();
    h->adopted = qv_malloc(3000);
    qv_free(h->adopted);
    qv_mem_keep_end();
    return NULL;
}

Test(pool, a_block_freed_elsewhere_serves_the_workers_again)
{
    if (qv_allocator_is_custom()) cr_skip_test("an allocator of the program's own");
    handoff h = {0};
    pthread_barrier_init(&h.made, NULL, 2);
    pthread_barrier_init(&h.freed, NULL, 2);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, handing_thread, &h), 0);
    pthread_barrier_wait(&h.made);
    for (int i = 0; i < 700; i++) cr_assert_eq(h.block[i], 'y');
    qv_free(h.block); /* not on its worker */
    pthread_barrier_wait(&h.freed);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(h.again, h.block, "the worker gets back the block freed on another thread");
    qv_free(h.late); /* its worker has ended */
    run_thread(adopting_thread, &h);
    cr_assert_eq(h.adopted, h.late, "the next worker gets the block its ended worker left out");
    pthread_barrier_destroy(&h.made);
    pthread_barrier_destroy(&h.freed);
}

/* What a fresh heap cuts for one block of n bytes (header included). */
typedef struct cut_for {
    size_t n, cut;
} cut_for;

static void *cut_thread(void *arg)
{
    cut_for *c = arg;
    qv_mem_keep_begin();
    size_t before = qv_pool_cut_bytes();
    void *p = qv_malloc(c->n);
    c->cut = qv_pool_cut_bytes() - before;
    qv_free(p);
    qv_mem_keep_end();
    return NULL;
}

Test(pool, a_power_of_two_and_its_nul_take_no_larger_class)
{
    if (qv_allocator_is_custom()) cr_skip_test("an allocator of the program's own");
    /* libcurl's receive buffer, one per worker: 16 KiB and its NUL. */
    cut_for c = {.n = 16385};
    run_thread(cut_thread, &c);
    cr_assert_leq(c.cut, 16385 + 64, "a 16,385-byte block took %zu bytes", c.cut);
}

typedef struct grown {
    int kept_in_place, moved, intact;
} grown;

static void *realloc_thread(void *arg)
{
    grown *g = arg;
    qv_mem_keep_begin();
    char *p = qv_malloc(130); /* the class of 160 bytes */
    for (int i = 0; i < 130; i++) p[i] = (char)i;
    char *q = qv_realloc(p, 150);
    g->kept_in_place = q == p;
    char *r = qv_realloc(q, 5000);
    g->moved = r != q && qv_pool_owns(r);
    g->intact = 1;
    for (int i = 0; i < 130; i++) g->intact &= r[i] == (char)i;
    char *s = qv_realloc(r, QV_POOL_MAX * 2); /* out of the pool, contents with it */
    for (int i = 0; i < 130; i++) g->intact &= s[i] == (char)i;
    g->intact &= !qv_pool_owns(s);
    qv_free(s);
    qv_mem_keep_end();
    return NULL;
}

Test(pool, realloc_keeps_the_contents_within_and_across_classes)
{
    if (qv_allocator_is_custom()) cr_skip_test("an allocator of the program's own");
    grown g = {0};
    run_thread(realloc_thread, &g);
    cr_assert(g.kept_in_place, "a size within the block's class stays in place");
    cr_assert(g.moved, "a larger class moves to another of the heap's blocks");
    cr_assert(g.intact, "the contents move with the block");
}

/* The same requests in rounds, collected on this thread once all of a
 * round's are done, so that every round has as many blocks out at its
 * peak: once the heap has a block of each class its worker uses for as
 * many as it once had out at a time, it cuts no more. The round is waited
 * for with qv_wait (wait), which never runs a transfer on this thread of a
 * QV_THREADS pool (a one-worker pool lends its handle to a thread in
 * qv_future_wait: with some of a round run here from the C library's heap,
 * the worker's peak would vary from round to round) and on QV_LOOP makes
 * this thread the leader; or (!wait) by looking until all are done, while
 * QV_LOOP's I/O thread leads. */
static void run_rounds(qv_session *s, int rounds, int wait)
{
    char url[512];
    snprintf(url, sizeof url, "%s/small", tx_env("QV_NGINX_URL", "nginx over HTTP/1.1"));
    enum { ROUND = 8 };
    for (int r = 0; r < rounds; r++) {
        qv_future *f[ROUND];
        for (int i = 0; i < ROUND; i++) cr_assert_eq(qv_get(s, &f[i], url), QV_OK);
        if (wait)
            cr_assert_eq(qv_wait(f, ROUND, QV_ALL_COMPLETED, TX_RESULT_TIMEOUT_MS), QV_OK);
        else
            for (int i = 0; i < ROUND; i++)
                while (!qv_future_done(f[i]))
                    nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        for (int i = 0; i < ROUND; i++) {
            tx_expect_status(f[i], 200);
            qv_future_release(f[i]);
        }
    }
}

Test(pool, a_worker_running_the_same_requests_stops_taking_memory)
{
    if (qv_allocator_is_custom()) cr_skip_test("an allocator of the program's own");
    qv_executor *ex = tx_executor(1);
    qv_session *s = TX_SESSION(.executor = ex);
    run_rounds(s, 20, 1);
    size_t warm = qv_pool_cut_bytes();
    cr_assert_gt(warm, 0, "the worker's blocks come from its heap");
    run_rounds(s, 250, 1);
    cr_assert_eq(qv_pool_cut_bytes(), warm, "2,000 more requests cut %zu bytes more",
                 qv_pool_cut_bytes() - warm);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* Waits for a slow future: transfers started meanwhile run in this
 * thread's lead of the loop, not the I/O thread's. */
static void *leading_thread(void *arg)
{
    qv_future_wait(arg, TX_RESULT_TIMEOUT_MS);
    return NULL;
}

/* A QV_LOOP executor's leaders share its heap: the blocks the I/O thread
 * freed in its leads (libcurl's per-transfer blocks, its 16 KiB receive
 * buffer among them) serve another thread's lead, which cuts only what the
 * slow request's transfer, a ninth at once, needs besides (~30 KB), under
 * four receive buffers. (With a heap for each leader, the I/O thread's kept
 * its blocks on its own lists, and the waiting thread's lead cut the eight
 * transfers' blocks anew: 146 KB.) */
Test(pool, a_loop_s_leaders_share_its_heap)
{
    if (qv_allocator_is_custom()) cr_skip_test("an allocator of the program's own");
    qv_executor *ex;
    cr_assert_eq(qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                          .kind = QV_LOOP,
                                                          .max_workers = 9}),
                 QV_OK);
    qv_session *s = TX_SESSION(.executor = ex);
    run_rounds(s, 20, 0); /* led by the I/O thread */
    size_t warm = qv_pool_cut_bytes();
    cr_assert_gt(warm, 0, "the I/O thread's blocks come from the loop's heap");
    qv_future *slow;
    cr_assert_eq(qv_get(s, &slow, tu("/delay/3")), QV_OK);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, leading_thread, slow), 0);
    /* Time for it to take the lead: else the I/O thread starts the first
     * round, and the blocks it takes pass to the depot as that round ends
     * in the other thread's lead (the test passes then, and proves less). */
    nanosleep(&(struct timespec){.tv_nsec = 200000000}, NULL);
    run_rounds(s, 5, 0); /* led by that thread */
    cr_assert_eq(pthread_join(t, NULL), 0);
    tx_expect_status(slow, 200);
    qv_future_release(slow);
    size_t more = qv_pool_cut_bytes() - warm;
    cr_assert_lt(more, 4 * 16384, "the other thread's lead cut %zu bytes more", more);
    qv_session_free(s);
    qv_executor_free(ex);
}
