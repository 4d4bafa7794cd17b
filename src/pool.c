/* Worker heaps: the blocks of up to QV_POOL_MAX bytes that a QV_THREADS
 * worker allocates (its transfers' and libcurl's, through qv_malloc) come
 * from a heap of that worker's own instead of glibc's arena and per-thread
 * cache; so do those of a QV_LOOP executor's leader, from the executor's
 * heap, while it leads (internal.h). A heap keeps a free list per size
 * class, so a freed block only ever serves its class again: the memory is
 * what was once alive at a time of each class, and does not creep as
 * glibc's 16 arenas and caches did under 16 workers (bench/NOTES.md,
 * 2026-12-06 19:00). A block freed on another
 * thread (a response, collected by the program) goes to its class's depot,
 * shared by the workers. A heap outlives its thread, for the next worker;
 * none of it goes back to the system. */
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#define QV_VALGRIND 1
#endif
#endif
#ifndef QV_VALGRIND
#define VALGRIND_MALLOCLIKE_BLOCK(p, n, rz, z)      ((void)0)
#define VALGRIND_FREELIKE_BLOCK(p, rz)              ((void)0)
#define VALGRIND_RESIZEINPLACE_BLOCK(p, old, n, rz) ((void)0)
#define VALGRIND_MAKE_MEM_NOACCESS(p, n)            ((void)0)
#endif
#ifdef QV_ASAN
#include <sanitizer/lsan_interface.h>
#endif

/* Classes: 16 to 128 bytes in steps of 16, then four steps per doubling up
 * to 32 KiB (a block wastes at most a fifth of itself), each of those OVER
 * bytes more than its step: buffers of a power of two and their NUL (libcurl's
 * 16,385-byte receive buffer, one per worker) fit the step's class, not the
 * next one 4 KiB larger. */
enum { SMALL_CLASSES = 8, NCLASS = SMALL_CLASSES + 4 * 8, OVER = 16 };

/* In front of every block. While the block is out, `n` is the size asked
 * for; while it is free, `next` links it in its class's list. */
typedef struct blk {
    struct pool_heap *heap;
    union {
        size_t n;
        struct blk *next;
    };
} blk;
_Static_assert(sizeof(blk) == 16, "a block stays 16-byte aligned");

struct pool_heap {
    blk *free[NCLASS];           /* its worker's alone */
    char *cur, *end;             /* the chunk blocks are cut from */
    struct pool_heap *next_idle; /* in `idle` while no worker has it */
};

/* Blocks freed on a thread other than the one whose heap gave them out (a
 * response, collected by the program) go to the depot of their class, from
 * which any worker takes them: kept per worker, each heap would grow to the
 * most responses its worker ever had waiting at once. */
enum { TAKE = 8 }; /* blocks a worker takes from a depot at a time */
static struct depot {
    pthread_mutex_t mu;
    blk *head;
} depot[NCLASS];

/* One reservation of address space, handed out in chunks and made
 * readable only then: a pointer is a pool block iff it lies in it. */
#define RESERVE QV_POOL_RESERVE
#define CHUNK   ((size_t)128 << 10)
static char *base;              /* set once, before any block exists */
static atomic_size_t used;      /* bytes of the reservation handed out */
static atomic_size_t cut_bytes; /* of those, bytes cut into blocks */
atomic_uintptr_t qv_pool_lo;
static pthread_once_t reserve_once = PTHREAD_ONCE_INIT;

static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pool_heap *idle; /* heaps whose worker ended */

static _Thread_local struct pool_heap *mine;
atomic_int qv_pool_heaps_out;

/* A fork in the middle of a depot's change would leave the child a list
 * half linked and a lock nobody holds: none is changed across a fork. */
static void fork_lock(void)
{
    for (int c = 0; c < NCLASS; c++) pthread_mutex_lock(&depot[c].mu);
}

static void fork_unlock(void)
{
    for (int c = NCLASS; c-- > 0;) pthread_mutex_unlock(&depot[c].mu);
}

static void reserve(void)
{
    for (int c = 0; c < NCLASS; c++) pthread_mutex_init(&depot[c].mu, NULL);
    if (pthread_atfork(fork_lock, fork_unlock, fork_unlock)) return;
#ifdef QV_ASAN
    /* LeakSanitizer sees no leak of a block of these heaps and ASan no
     * double free of one: a sanitizer build keeps them off, so that its
     * checks cover what workers allocate, unless a test asks for them
     * (tests/test_pool.c). */
    const char *want = getenv("QV_WORKER_HEAPS");
    if (!want || strcmp(want, "1") != 0) return;
#endif
    void *p = mmap(NULL, RESERVE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return;
    base = p;
#ifdef QV_ASAN
    /* Blocks here hold pointers to the program's heap: scan them for leaks. */
    __lsan_register_root_region(p, RESERVE);
#endif
    atomic_store(&qv_pool_lo, (uintptr_t)p);
}

static int class_of(size_t n)
{
    if (n <= 128) return n ? (int)((n + 15) >> 4) - 1 : 0;
    size_t m = (n > 128 + OVER ? n - OVER : 129) - 1;
    int k = 63 - __builtin_clzll((unsigned long long)m); /* 2^k <= m < 2^(k+1) */
    return SMALL_CLASSES + (k - 7) * 4 + (int)((m >> (k - 2)) & 3);
}

static size_t class_size(int c)
{
    if (c < SMALL_CLASSES) return (size_t)(c + 1) << 4;
    int k = 7 + (c - SMALL_CLASSES) / 4, s = (c - SMALL_CLASSES) % 4;
    return ((size_t)1 << k) + ((size_t)(s + 1) << (k - 2)) + OVER;
}

static void give(blk *b, int c)
{
    pthread_mutex_lock(&depot[c].mu);
    b->next = depot[c].head;
    depot[c].head = b;
    pthread_mutex_unlock(&depot[c].mu);
}

/* Up to TAKE blocks of class c from its depot into h's list. */
static void take(struct pool_heap *h, int c)
{
    pthread_mutex_lock(&depot[c].mu);
    for (int i = 0; i < TAKE && depot[c].head; i++) {
        blk *b = depot[c].head;
        depot[c].head = b->next;
        b->next = h->free[c];
        h->free[c] = b;
    }
    pthread_mutex_unlock(&depot[c].mu);
}

struct pool_heap *qv_mem_heap_take(void)
{
    if (qv_allocator_is_custom()) return NULL;
    pthread_once(&reserve_once, reserve);
    if (!base) return NULL;
    pthread_mutex_lock(&idle_mu);
    struct pool_heap *h = idle;
    if (h) idle = h->next_idle;
    pthread_mutex_unlock(&idle_mu);
    if (!h && !(h = qv_calloc(1, sizeof(*h)))) return NULL;
    h->next_idle = NULL;
    atomic_fetch_add(&qv_pool_heaps_out, 1);
    return h;
}

void qv_mem_heap_give(struct pool_heap *h)
{
    if (!h) return;
    /* Its free blocks go where a worker can have them while it is idle. */
    for (int c = 0; c < NCLASS; c++)
        while (h->free[c]) {
            blk *b = h->free[c];
            h->free[c] = b->next;
            give(b, c);
        }
    pthread_mutex_lock(&idle_mu);
    h->next_idle = idle;
    idle = h;
    pthread_mutex_unlock(&idle_mu);
    atomic_fetch_sub(&qv_pool_heaps_out, 1);
}

struct pool_heap *qv_mem_heap_use(struct pool_heap *h)
{
    struct pool_heap *was = mine;
    mine = h;
    return was;
}

void qv_mem_keep_begin(void)
{
    mine = qv_mem_heap_take();
}

void qv_mem_keep_end(void)
{
    qv_mem_heap_give(qv_mem_heap_use(NULL));
}

/* Room for a block of class c: the rest of the heap's chunk, or a new one. */
static blk *cut(struct pool_heap *h, size_t room)
{
    if ((size_t)(h->end - h->cur) < room) {
        size_t at = atomic_fetch_add(&used, CHUNK);
        if (at > RESERVE - CHUNK || mprotect(base + at, CHUNK, PROT_READ | PROT_WRITE)) return NULL;
        /* The old chunk's tail is too small for this block: left unused. */
        h->cur = base + at;
        h->end = h->cur + CHUNK;
    }
    blk *b = (blk *)h->cur;
    h->cur += room;
    atomic_fetch_add_explicit(&cut_bytes, room, memory_order_relaxed);
    return b;
}

size_t qv_pool_cut_bytes(void)
{
    return atomic_load_explicit(&cut_bytes, memory_order_relaxed);
}

void *qv_pool_alloc(size_t n)
{
    struct pool_heap *h = mine;
    if (!h || n > QV_POOL_MAX) return NULL;
    int c = class_of(n);
    if (!h->free[c]) take(h, c);
    blk *b = h->free[c];
    if (b) {
        h->free[c] = b->next;
    } else if (!(b = cut(h, sizeof(blk) + class_size(c)))) {
        return NULL;
    }
    b->heap = h;
    b->n = n;
    /* The class's room past n stays out of bounds. */
    QV_POISON(b + 1, class_size(c));
    QV_UNPOISON(b + 1, n);
    VALGRIND_MAKE_MEM_NOACCESS(b + 1, class_size(c));
    VALGRIND_MALLOCLIKE_BLOCK(b + 1, n, 0, 0);
    return b + 1;
}

size_t qv_pool_size(const void *p)
{
    return ((const blk *)p - 1)->n;
}

void qv_pool_free(void *p)
{
    blk *b = (blk *)p - 1;
    struct pool_heap *h = b->heap;
    int c = class_of(b->n);
    VALGRIND_FREELIKE_BLOCK(p, 0);
    QV_POISON(p, class_size(c));
    if (h == mine) {
        b->next = h->free[c];
        h->free[c] = b;
    } else {
        give(b, c);
    }
}

int qv_pool_resize(void *p, size_t n)
{
    blk *b = (blk *)p - 1;
    if (n > QV_POOL_MAX || class_of(n) != class_of(b->n)) return 0;
    QV_POISON(p, class_size(class_of(n)));
    QV_UNPOISON(p, n);
    VALGRIND_RESIZEINPLACE_BLOCK(p, b->n, n, 0);
    b->n = n;
    return 1;
}
