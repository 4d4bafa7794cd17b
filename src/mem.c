/* Allocation wrappers, a growable buffer and a bump arena. Every allocation
 * of the library goes through qv_malloc & co, and so, once an allocator is
 * plugged in (qv_set_allocator), do libcurl's and jansson's. */
#include "internal.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static qv_allocator alloc = {malloc, calloc, realloc, free};
static atomic_int custom; /* 1 once qv_set_allocator installed one */

void qv_allocator_use(qv_allocator a, int is_custom)
{
    alloc = a;
    atomic_store(&custom, is_custom);
}

int qv_allocator_is_custom(void)
{
    return atomic_load(&custom);
}

atomic_long qv_alloc_failures;

static void *counted(void *p)
{
    if (!p) atomic_fetch_add(&qv_alloc_failures, 1);
    return p;
}

/* A thread with a heap sees its own count in it. */
static int heaps_out(void)
{
    return atomic_load_explicit(&qv_pool_heaps_out, memory_order_relaxed) != 0;
}

/* On a QV_THREADS worker, blocks of up to QV_POOL_MAX bytes come from its
 * heap (pool.c); when that has none to give, from the allocator. */
void *qv_malloc(size_t n)
{
    void *p = heaps_out() ? qv_pool_alloc(n ? n : 1) : NULL;
    return p ? p : counted(alloc.malloc(n ? n : 1));
}

void *qv_calloc(size_t n, size_t size)
{
    if (heaps_out() && size && n <= SIZE_MAX / size) {
        void *p = qv_pool_alloc(n && size ? n * size : 1);
        if (p) return memset(p, 0, n * size);
    }
    return counted(alloc.calloc(n ? n : 1, size ? size : 1));
}

void *qv_realloc(void *p, size_t n)
{
    if (!p) return qv_malloc(n);
    if (!qv_pool_owns(p)) return counted(alloc.realloc(p, n ? n : 1));
    if (qv_pool_resize(p, n ? n : 1)) return p;
    void *d = qv_malloc(n);
    if (!d) return NULL;
    size_t had = qv_pool_size(p);
    memcpy(d, p, had < n ? had : n);
    qv_pool_free(p);
    return d;
}

void qv_free(void *p)
{
    /* libcurl frees NULL in most of its ~125 frees per transfer: no call. */
    if (!p) return;
    if (qv_pool_owns(p))
        qv_pool_free(p);
    else
        alloc.free(p);
}

char *qv_strndup(const char *s, size_t n)
{
    char *d = qv_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *qv_strdup(const char *s)
{
    return s ? qv_strndup(s, strlen(s)) : NULL;
}

char *qv_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = qv_malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

int qv_buf_next_cap(const qv_buf *b, size_t n, size_t most, size_t *out)
{
    *out = 0;
    if (n > SIZE_MAX - b->len - 1) return QV_ENOMEM;
    size_t need = b->len + n + 1;
    if (need <= b->cap) return QV_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    /* Doubling past the most the buffer can hold is room never used (a
     * 64 KiB body would sit in a 128 KiB block). */
    if (most < SIZE_MAX && cap > most + 1) cap = most + 1 > need ? most + 1 : need;
    *out = cap;
    return QV_OK;
}

int qv_buf_grow(qv_buf *b, size_t n, size_t most)
{
    size_t cap;
    int rc = qv_buf_next_cap(b, n, most, &cap);
    if (rc || !cap) return rc;
    char *d = qv_realloc(b->data, cap);
    if (!d) return QV_ENOMEM;
    b->data = d;
    b->cap = cap;
    return QV_OK;
}

int qv_buf_append(qv_buf *b, const void *p, size_t n)
{
    int rc = qv_buf_grow(b, n, SIZE_MAX);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return QV_OK;
}

int qv_buf_puts(qv_buf *b, const char *s)
{
    return qv_buf_append(b, s, strlen(s));
}

void qv_buf_free(qv_buf *b)
{
    qv_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* What the arena aligns its copies for: the strings and records built in
 * it (pointers, sizes, doubles), never a long double. 8 bytes, where
 * max_align_t's 16 would pad every string a queued request copies. */
typedef union {
    void *p;
    void (*fn)(void);
    double d;
    long long ll;
    size_t z;
} arena_unit;

/* 32-bit offsets keep the header at 16 bytes (one is in every queued
 * future); an allocation larger than CHUNK_MAX takes a chunk of its own,
 * full from the start (cap 0). */
#define CHUNK_MAX (UINT32_MAX >> 1)

struct qv_arena_chunk {
    qv_arena_chunk *next;
    uint32_t used;
    uint32_t cap : 31;
    uint32_t borrowed : 1; /* the arena's first, in its owner's allocation: not freed */
    arena_unit data[];
};

size_t qv_arena_in_size(size_t room)
{
    return room && room <= CHUNK_MAX ? sizeof(qv_arena_chunk) + room : 0;
}

void qv_arena_init_in(qv_arena *a, void *mem, size_t room)
{
    qv_arena_chunk *c = mem;
    *c = (qv_arena_chunk){.cap = (uint32_t)room, .borrowed = 1};
    a->head = c;
}

size_t qv_arena_room(size_t n)
{
    return (n + _Alignof(arena_unit) - 1) / _Alignof(arena_unit) * _Alignof(arena_unit);
}

void *qv_arena_alloc(qv_arena *a, size_t n)
{
    n = qv_arena_room(n);
    qv_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        /* A small first chunk: most requests' copies and most responses'
         * headers fit in it (it is memory per transfer in flight). */
        size_t min = a->head ? 2048 : 512, cap = n > min ? n : min;
        if (cap > SIZE_MAX - sizeof(*c)) return NULL;
        c = qv_malloc(sizeof(*c) + cap);
        if (!c) return NULL;
        *c = (qv_arena_chunk){.next = a->head, .cap = cap <= CHUNK_MAX ? (uint32_t)cap : 0};
        a->head = c;
        if (!c->cap) return c->data;
    }
    void *p = (char *)c->data + c->used;
    c->used += (uint32_t)n;
    return p;
}

char *qv_arena_memdup(qv_arena *a, const void *p, size_t n)
{
    char *d = qv_arena_alloc(a, n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

char *qv_arena_strdup(qv_arena *a, const char *s)
{
    return s ? qv_arena_memdup(a, s, strlen(s)) : NULL;
}

void qv_arena_reset(qv_arena *a)
{
    qv_arena_chunk *c = a->head;
    if (!c) return;
    while (c->next) { /* all but the first, smallest chunk */
        qv_arena_chunk *next = c->next;
        qv_free(c);
        c = next;
    }
    c->used = 0;
    a->head = c;
}

void qv_arena_free(qv_arena *a)
{
    qv_arena_chunk *c = a->head;
    while (c) {
        qv_arena_chunk *next = c->next;
        if (!c->borrowed) qv_free(c);
        c = next;
    }
    a->head = NULL;
}
