/* The blocks an executor recycles for its responses. A body is written by
 * the thread that runs its transfer and freed by the one that releases its
 * response; given back to malloc there, glibc trims the transfer thread's
 * arena (an madvise of the freed pages) and the next body faults the same
 * pages in again, ~16 faults for every 64 KiB body. Kept here instead, up
 * to a bound, for the next body of about the same size: their pages stay
 * ours. The response itself (its struct, its headers' first strings block
 * and their array) is kept the same way: a shell, for the next response. */
#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define QV_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QV_ASAN 1
#endif
#endif
#ifdef QV_ASAN
#include <sanitizer/asan_interface.h>
/* A kept buffer is out of bounds until taken (all but the list's own
 * fields): a body read after its response was released is still caught. */
#define HIDE(s) ASAN_POISON_MEMORY_REGION((s) + 1, (s)->cap - sizeof(*(s)))
#define SHOW(s) ASAN_UNPOISON_MEMORY_REGION((s) + 1, (s)->cap - sizeof(*(s)))
/* A kept shell likewise, all but its link: a response read after its
 * release is caught (but for its status, which the link overlays). */
#define HIDE_SHELL(s) ASAN_POISON_MEMORY_REGION((s) + 1, sizeof(qv_response) - sizeof(*(s)))
#define SHOW_SHELL(s) ASAN_UNPOISON_MEMORY_REGION((s) + 1, sizeof(qv_response) - sizeof(*(s)))
#else
#define HIDE(s)       ((void)(s))
#define SHOW(s)       ((void)(s))
#define HIDE_SHELL(s) ((void)(s))
#define SHOW_SHELL(s) ((void)(s))
#endif

/* A kept buffer: its first bytes say how big it is and which is next. */
typedef struct spare {
    struct spare *next;
    size_t cap;
} spare;
/* A kept shell's link overlays its first fields; its headers' room, kept
 * for the next response, must lie past it. */
_Static_assert(offsetof(qv_response, headers) >= sizeof(spare),
               "a shell's link overlays its headers");

struct qv_bodies {
    pthread_mutex_t mu; /* guards the fields below; a leaf: nothing is taken under it */
    spare *top;         /* the most recently given back first: its pages are the warmest */
    size_t count, bytes;
    spare *shells; /* kept responses (their first bytes are a spare's) */
    size_t nshells;
    size_t most; /* blocks, and shells, kept at most */
    void (*free_shell)(void *);
    int closed; /* the executor is gone: what comes back is freed */
    atomic_size_t refs;
};

qv_bodies *qv_bodies_new(size_t most, void (*free_shell)(void *))
{
    qv_bodies *b = qv_calloc(1, sizeof(*b));
    if (!b) return NULL;
    if (pthread_mutex_init(&b->mu, NULL)) {
        qv_free(b);
        return NULL;
    }
    atomic_init(&b->refs, 1);
    b->most = most < QV_BODIES_COUNT ? most : QV_BODIES_COUNT;
    b->free_shell = free_shell;
    return b;
}

void qv_bodies_hold(qv_bodies *b)
{
    atomic_fetch_add(&b->refs, 1);
}

void qv_bodies_drop(qv_bodies *b)
{
    if (atomic_fetch_sub(&b->refs, 1) != 1) return;
    pthread_mutex_destroy(&b->mu);
    qv_free(b);
}

void qv_bodies_close(qv_bodies *b)
{
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    spare *s = b->top, *shells = b->shells;
    b->top = b->shells = NULL;
    b->count = b->bytes = b->nshells = 0;
    b->closed = 1;
    pthread_mutex_unlock(&b->mu);
    while (s) {
        spare *next = s->next;
        SHOW(s);
        qv_free(s);
        s = next;
    }
    while (shells) {
        spare *next = shells->next;
        SHOW_SHELL(shells);
        b->free_shell(shells);
        shells = next;
    }
    qv_bodies_drop(b);
}

/* Keeping a block of `cap` bytes for a body of `need` (NUL included) wastes
 * at most half of it: a response held a long time holds no more. */
static int fits(size_t cap, size_t need)
{
    return cap >= need && cap / 2 <= need;
}

int qv_bodies_take(qv_bodies *b, qv_buf *body, size_t need)
{
    spare *s = NULL;
    pthread_mutex_lock(&b->mu);
    for (spare **at = &b->top; *at; at = &(*at)->next)
        if (fits((*at)->cap, need)) {
            s = *at;
            *at = s->next;
            b->count--;
            b->bytes -= s->cap;
            break;
        }
    pthread_mutex_unlock(&b->mu);
    if (!s) return 0;
    SHOW(s);
    body->cap = s->cap;
    body->data = (char *)s;
    body->len = 0;
    body->data[0] = '\0';
    return 1;
}

void qv_bodies_give(qv_bodies *b, qv_buf *body)
{
    spare *s = (spare *)body->data;
    size_t cap = body->cap;
    body->data = NULL;
    body->len = body->cap = 0;
    if (s && cap >= QV_BODIES_SMALLEST && cap <= QV_BODY_PRESIZE_MAX + 1) {
        pthread_mutex_lock(&b->mu);
        if (!b->closed && b->count < b->most && b->bytes + cap <= QV_BODIES_BYTES) {
            s->cap = cap;
            s->next = b->top;
            b->top = s;
            b->count++;
            b->bytes += cap;
            HIDE(s);
            s = NULL;
        }
        pthread_mutex_unlock(&b->mu);
    }
    qv_free(s);
}

qv_response *qv_bodies_take_shell(qv_bodies *b)
{
    pthread_mutex_lock(&b->mu);
    spare *s = b->shells;
    if (s) {
        b->shells = s->next;
        b->nshells--;
    }
    pthread_mutex_unlock(&b->mu);
    if (s) SHOW_SHELL(s);
    return (qv_response *)s;
}

int qv_bodies_keep_shell(qv_bodies *b, qv_response *r)
{
    spare *s = (spare *)r;
    pthread_mutex_lock(&b->mu);
    int keep = !b->closed && b->nshells < b->most;
    if (keep) {
        HIDE_SHELL(s); /* before it is on the list: a taker unhides it */
        s->next = b->shells;
        b->shells = s;
        b->nshells++;
    }
    pthread_mutex_unlock(&b->mu);
    return keep;
}

size_t qv_bodies_kept(qv_bodies *b, size_t *bytes)
{
    pthread_mutex_lock(&b->mu);
    size_t n = b->count;
    if (bytes) *bytes = b->bytes;
    pthread_mutex_unlock(&b->mu);
    return n;
}
