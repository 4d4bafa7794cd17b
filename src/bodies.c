/* The blocks an executor recycles for its responses. A body is written by
 * the thread that runs its transfer and freed by the one that releases its
 * response; given back to malloc there, glibc trims the transfer thread's
 * arena (an madvise of the freed pages) and the next body faults the same
 * pages in again, ~16 faults for every 64 KiB body. Kept here instead, up
 * to a bound, for the next body of about the same size: their pages stay
 * ours. The response itself (its struct, its headers' first strings block
 * and their array) is kept the same way: a shell, for the next response.
 *
 * A large body's block is pages of its own (mmap), never a malloc arena's.
 * Made on a worker and freed on another thread, a 64 KiB block went back to
 * the worker's arena as a hole, which small blocks (held in glibc's
 * per-thread caches) then split, so the next large block extended the heap:
 * with 16 QV_THREADS workers RSS crept 1.5 MB over a million requests
 * (bench/NOTES.md, 2026-12-06 16:00). */
#include "internal.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A kept buffer is out of bounds until taken (all but the list's own
 * fields): a body read after its response was released is still caught. */
#define HIDE(s) QV_POISON((s) + 1, (s)->cap - sizeof(*(s)))
#define SHOW(s) QV_UNPOISON((s) + 1, (s)->cap - sizeof(*(s)))
/* A kept shell likewise, all but its link: a response read after its
 * release is caught (but for its status, which the link overlays). */
#define HIDE_SHELL(s) QV_POISON((s) + 1, sizeof(qv_response) - sizeof(*(s)))
#define SHOW_SHELL(s) QV_UNPOISON((s) + 1, sizeof(qv_response) - sizeof(*(s)))

/* A kept buffer: its first bytes say how big it is and which is next. */
typedef struct spare {
    struct spare *next;
    size_t cap;
} spare;
/* A kept shell's link overlays its first fields; its headers' room, kept
 * for the next response, must lie past it. */
_Static_assert(offsetof(qv_response, headers) >= sizeof(spare),
               "a shell's link overlays its headers");

/* Is a body block of cap bytes mapped? Decided by its size alone, so every
 * thread that frees it decides the same; the allocator is fixed before the
 * first allocation. */
static int mapped(size_t cap)
{
    return cap >= QV_BODY_MAPPED && !qv_allocator_is_custom();
}

static size_t pages(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return n > SIZE_MAX - page ? 0 : (n + page - 1) / page * page;
}

static void block_free(void *p, size_t cap)
{
    if (p && mapped(cap))
        munmap(p, cap);
    else
        qv_free(p);
}

int qv_body_grow(qv_buf *body, size_t n, size_t most)
{
    size_t cap;
    int rc = qv_buf_next_cap(body, n, most, &cap);
    if (rc || !cap) return rc;
    if (!mapped(cap)) return qv_buf_grow(body, n, most);
    if (!(cap = pages(cap))) return QV_ENOMEM;
    char *d;
    if (mapped(body->cap)) {
        d = mremap(body->data, body->cap, cap, MREMAP_MAYMOVE);
    } else {
        d = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        /* The pages the body's bytes will take, in one call: faulted in one
         * at a time as the body came, a new 64 KiB block cost 16 faults
         * (~14 us each on this VM) and a run of 1,600 such responses at 64
         * workers twice raw threads' faults (bench/NOTES.md, 2026-12-07
         * 13:11). Not the NUL's page (see qv_body_append). A server that
         * announces more than it sends holds pages it did not fill until
         * the response goes (QV_BODY_PRESIZE_MAX at most). A kernel older
         * than 5.14 refuses the advice: its pages fault in as before. */
        if (d != MAP_FAILED) madvise(d, pages(body->len + n), MADV_POPULATE_WRITE);
        if (d != MAP_FAILED && body->data) {
            memcpy(d, body->data, body->len + 1);
            qv_free(body->data);
        }
    }
    if (d == MAP_FAILED) {
        atomic_fetch_add(&qv_alloc_failures, 1);
        return QV_ENOMEM;
    }
    body->data = d;
    body->cap = cap;
    return QV_OK;
}

int qv_body_append(qv_buf *body, const void *p, size_t n, size_t most)
{
    int rc = qv_body_grow(body, n, most);
    if (rc) return rc;
    if (n) memcpy(body->data + body->len, p, n);
    body->len += n;
    /* A body of whole pages (64 KiB) has its NUL alone on the block's last
     * page: written, that page would be faulted in, zeroed and held for
     * one byte, a seventeenth of the block. Left unwritten while it reads
     * 0 (so on a page never written, a read maps the kernel's shared zero
     * page, which holds no memory of ours). Elsewhere the page is one the
     * body writes anyway. */
    char *nul = body->data + body->len;
    if (!mapped(body->cap) || body->cap - body->len > pages(1) || *nul) *nul = '\0';
    return QV_OK;
}

void qv_body_free(qv_buf *body)
{
    block_free(body->data, body->cap);
    body->data = NULL;
    body->len = body->cap = 0;
}

struct qv_bodies {
    pthread_mutex_t mu; /* guards the fields below; a leaf: nothing is taken under it */
    spare *top;         /* the most recently given back first: its pages are the warmest */
    size_t count, bytes;
    spare *shells; /* kept responses (their first bytes are a spare's) */
    size_t nshells;
    size_t most;  /* blocks, and shells, kept at most */
    size_t low;   /* the fewest blocks kept at once in this interval of takes */
    size_t takes; /* takes in this interval (QV_BODIES_INTERVAL) */
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
    qv_bodies_keep_most(b, most);
    b->free_shell = free_shell;
    return b;
}

void qv_bodies_keep_most(qv_bodies *b, size_t most)
{
    pthread_mutex_lock(&b->mu);
    b->most = most < QV_BODIES_COUNT ? most : QV_BODIES_COUNT;
    pthread_mutex_unlock(&b->mu);
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

static void free_blocks(spare *s)
{
    while (s) {
        spare *next = s->next;
        SHOW(s);
        block_free(s, s->cap);
        s = next;
    }
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
    free_blocks(s);
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

/* The coldest kept block, detached (the caller frees it, outside the lock),
 * if no take reached it in the interval now ending: the fewest kept at once
 * in it were there all along, at the bottom of the list (takes are from the
 * top). So what is kept follows what recent takes used, not the most that
 * were ever alive at once: kept for a past burst, blocks stayed ours for
 * good, and a long run's RSS rose in steps of a 64 KiB block (68 KiB) each
 * time that most reached a new high (bench/NOTES.md, 2026-12-07 22:17).
 * One block an interval: the most that has to be made again when a load
 * comes back. All the idle ones at once cost a QV_THREADS pool at 64
 * workers a new block for one 64 KiB body in 5, its CPU twice (its held
 * responses pile up and drain in phases longer than an interval;
 * bench/NOTES.md, 2026-12-08 01:25). Called with b->mu held. */
static spare *cut_idle(qv_bodies *b)
{
    int idle = b->low > 0;
    b->takes = 0;
    b->low = b->count - (size_t)idle;
    if (!idle) return NULL;
    spare **at = &b->top;
    while ((*at)->next) at = &(*at)->next;
    spare *cut = *at;
    *at = NULL;
    b->count--;
    b->bytes -= cut->cap;
    return cut;
}

int qv_bodies_take(qv_bodies *b, qv_buf *body, size_t need)
{
    spare *s = NULL, *idle = NULL;
    pthread_mutex_lock(&b->mu);
    for (spare **at = &b->top; *at; at = &(*at)->next)
        if (fits((*at)->cap, need)) {
            s = *at;
            *at = s->next;
            b->count--;
            b->bytes -= s->cap;
            break;
        }
    if (b->count < b->low) b->low = b->count;
    if (++b->takes == QV_BODIES_INTERVAL) idle = cut_idle(b);
    pthread_mutex_unlock(&b->mu);
    free_blocks(idle);
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
    if (s && cap >= QV_BODIES_SMALLEST && cap <= pages(QV_BODY_PRESIZE_MAX + 1)) {
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
    block_free(s, cap);
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
