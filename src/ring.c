/* A process worker's body ring: shared memory between the worker, which
 * puts the response body's bytes in, and the parent, which takes them out
 * (see internal.h and docs/internals.md, "The body ring"). Each side moves
 * only its own index; the bytes between tail and head are the producer's
 * until head is published (release) and the consumer's until tail is
 * (release). A side about to sleep raises its flag and then looks at the
 * other's index once more; the other side, after moving its index, looks
 * at the flag (a sequentially consistent fence between): of the two, one
 * sees the other, so no wake-up is lost. */
#include "internal.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Lock-free atomics are address-free: they work across processes. */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "the body ring needs lock-free atomics");

/* The header takes a page of its own: the data starts page-aligned. */
static size_t header_bytes(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    return pg >= (long)sizeof(qv_ring_hdr) ? (size_t)pg : 4096;
}

static size_t slot_bytes(void)
{
    return header_bytes() + QV_RING_CAP + QV_UP_RING;
}

void *qv_rings_new(int n)
{
    void *p = mmap(NULL, (size_t)n * slot_bytes(), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void qv_rings_forked(void *rings, int n)
{
    madvise(rings, (size_t)n * slot_bytes(), MADV_DONTFORK);
}

void qv_rings_free(void *rings, int n)
{
    if (rings) munmap(rings, (size_t)n * slot_bytes());
}

void qv_ring_at(qv_ring *r, void *rings, int slot)
{
    r->h = (qv_ring_hdr *)((unsigned char *)rings + (size_t)slot * slot_bytes());
    r->data = (unsigned char *)r->h + header_bytes();
    r->up = r->data + QV_RING_CAP;
}

void qv_ring_reset(qv_ring *r)
{
    atomic_store(&r->h->head, 0);
    atomic_store(&r->h->tail, 0);
    atomic_store(&r->h->writer_waits, 0);
    atomic_store(&r->h->answers_read, 0);
    atomic_store(&r->h->stream_waits, 0);
    /* Moved on, not zeroed: a reader of the slot's last worker about to
     * sleep on the word's old value must not find it again (and sleep on
     * the next stream's). */
    qv_signal_all_shared(&r->h->stream_wake);
    atomic_store(&r->h->reader_waits, 1);
    atomic_store(&r->h->room_waits, 0);
}

size_t qv_ring_contig(uint64_t pos, size_t n, size_t *first)
{
    size_t at = (size_t)(pos % QV_RING_CAP);
    *first = QV_RING_CAP - at < n ? QV_RING_CAP - at : n;
    return at;
}

size_t qv_ring_put(qv_ring *r, uint64_t *head, const void *p, size_t n)
{
    /* (acquire: the parent is done reading what it gave back) */
    uint64_t tail = atomic_load_explicit(&r->h->tail, memory_order_acquire);
    size_t room = QV_RING_CAP - (size_t)(*head - tail);
    if (n > room) n = room;
    size_t first, at = qv_ring_contig(*head, n, &first);
    memcpy(r->data + at, p, first);
    memcpy(r->data, (const char *)p + first, n - first);
    *head += n;
    atomic_store_explicit(&r->h->head, *head, memory_order_release);
    return n;
}

void qv_ring_copy_out(const qv_ring *r, uint64_t tail, void *out, size_t n)
{
    size_t first, at = qv_ring_contig(tail, n, &first);
    memcpy(out, r->data + at, first);
    memcpy((char *)out + first, r->data, n - first);
}

/* One side's flag, after its own index moved: 1 if the other side waits. */
static int take_flag(atomic_int *flag)
{
    atomic_thread_fence(memory_order_seq_cst);
    return atomic_load_explicit(flag, memory_order_relaxed) && atomic_exchange(flag, 0);
}

size_t qv_ring_in(qv_ring *r, uint64_t head)
{
    return (size_t)(head - atomic_load_explicit(&r->h->tail, memory_order_acquire));
}

int qv_ring_consumer_waits(qv_ring *r)
{
    return atomic_load_explicit(&r->h->reader_waits, memory_order_relaxed) ||
           atomic_load_explicit(&r->h->stream_waits, memory_order_relaxed);
}

int qv_ring_reader_woken(qv_ring *r)
{
    return take_flag(&r->h->reader_waits);
}

unsigned qv_ring_room_wait(qv_ring *r, uint64_t head, size_t want)
{
    /* The consumer wakes it once half the ring is free: it waits for no more. */
    if (want > QV_RING_CAP / 2) want = QV_RING_CAP / 2;
    unsigned v = qv_signal_prepare(&r->h->room_wake);
    atomic_store(&r->h->room_waits, 1);
    return QV_RING_CAP - (size_t)(head - atomic_load(&r->h->tail)) >= want ? 0 : v;
}

int qv_ring_room_sleep(qv_ring *r, unsigned v, const struct timespec *deadline)
{
    return qv_signal_sleep_shared(&r->h->room_wake, v, deadline);
}

void qv_ring_room_kick(qv_ring *r)
{
    qv_signal_all_shared(&r->h->room_wake);
}

int qv_ring_writer_wait_answers(qv_ring *r, uint64_t sent)
{
    atomic_store(&r->h->writer_waits, 1);
    return atomic_load(&r->h->answers_read) == sent;
}

int qv_ring_answered(qv_ring *r, uint64_t n)
{
    atomic_store_explicit(&r->h->answers_read, n, memory_order_release);
    return take_flag(&r->h->writer_waits);
}

long qv_ring_avail(qv_ring *r, uint64_t tail)
{
    uint64_t n = atomic_load_explicit(&r->h->head, memory_order_acquire) - tail;
    return n > QV_RING_CAP ? -1 : (long)n;
}

void qv_ring_taken(qv_ring *r, uint64_t tail, size_t left)
{
    atomic_store_explicit(&r->h->tail, tail, memory_order_release);
    if (left <= QV_RING_CAP / 2 && take_flag(&r->h->room_waits)) qv_ring_room_kick(r);
}

int qv_ring_reader_wait(qv_ring *r, uint64_t tail)
{
    atomic_store(&r->h->reader_waits, 1);
    return atomic_load(&r->h->head) != tail;
}

unsigned qv_ring_stream_wait(qv_ring *r, uint64_t tail)
{
    /* (Before the last look: a wake-up after it changes the word, and the
     * sleep returns at once.) */
    unsigned v = qv_signal_prepare(&r->h->stream_wake);
    atomic_store(&r->h->stream_waits, 1);
    return atomic_load(&r->h->head) != tail ? 0 : v;
}

int qv_ring_stream_sleep(qv_ring *r, unsigned v, const struct timespec *deadline)
{
    return qv_signal_sleep_shared(&r->h->stream_wake, v, deadline);
}

void qv_ring_stream_kick(qv_ring *r)
{
    qv_signal_all_shared(&r->h->stream_wake);
}

void qv_ring_stream_woken(qv_ring *r)
{
    if (take_flag(&r->h->stream_waits)) qv_ring_stream_kick(r);
}
