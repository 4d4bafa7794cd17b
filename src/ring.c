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
    atomic_store(&r->h->up_head, 0);
    atomic_store(&r->h->up_tail, 0);
    atomic_store(&r->h->up_id, 0);
    atomic_store(&r->h->up_end, 0);
    atomic_store(&r->h->up_waits, 0);
    atomic_store(&r->h->up_room_waits, 0);
}

/* The n bytes at count pos of a ring of size bytes, which may wrap past
 * its end: where they start, and how many come before the end (the rest
 * from the start). */
static size_t span(uint64_t pos, size_t size, size_t n, size_t *first)
{
    size_t at = (size_t)(pos % size);
    *first = size - at < n ? size - at : n;
    return at;
}

static void copy_out(const unsigned char *ring, size_t size, uint64_t pos, void *out, size_t n)
{
    size_t first, at = span(pos, size, n, &first);
    memcpy(out, ring + at, first);
    memcpy((char *)out + first, ring, n - first);
}

size_t qv_ring_put(qv_ring *r, uint64_t *head, size_t cap, const void *p, size_t n)
{
    /* (acquire: the parent is done reading what it gave back) */
    uint64_t tail = atomic_load_explicit(&r->h->tail, memory_order_acquire);
    size_t room = cap - (size_t)(*head - tail);
    if (n > room) n = room;
    size_t first, at = span(*head, QV_RING_CAP, n, &first);
    memcpy(r->data + at, p, first);
    memcpy(r->data, (const char *)p + first, n - first);
    *head += n;
    atomic_store_explicit(&r->h->head, *head, memory_order_release);
    return n;
}

void qv_ring_copy_out(const qv_ring *r, uint64_t tail, void *out, size_t n)
{
    copy_out(r->data, QV_RING_CAP, tail, out, n);
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

unsigned qv_ring_room_wait(qv_ring *r, uint64_t head, size_t cap, size_t want)
{
    /* The consumer wakes it once half of cap is free: it waits for no more. */
    if (want > cap / 2) want = cap / 2;
    unsigned v = qv_signal_prepare(&r->h->room_wake);
    atomic_store(&r->h->room_waits, 1);
    return cap - (size_t)(head - atomic_load(&r->h->tail)) >= want ? 0 : v;
}

void qv_ring_room_sleep(qv_ring *r, unsigned v)
{
    qv_signal_sleep_shared(&r->h->room_wake, v, NULL);
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

void qv_ring_taken(qv_ring *r, uint64_t tail, size_t left, size_t cap)
{
    atomic_store_explicit(&r->h->tail, tail, memory_order_release);
    if (left <= cap / 2 && take_flag(&r->h->room_waits)) qv_ring_room_kick(r);
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

/* on_upload's area, the other way: the parent produces (up_head), the
 * worker consumes (up_tail), with the same flags-and-look protocol. The
 * parent fills it ahead as far as there is room, so the worker takes what
 * is there without a frame per piece; each side is woken for half the
 * area (the worker on room_wake, the dispatcher by an UPLOAD_WANT frame). */

void qv_up_begin(qv_ring *r, uint64_t id)
{
    if (atomic_load_explicit(&r->h->up_id, memory_order_relaxed) == id) return;
    /* The worker moves its tail for id only once id is published. */
    uint64_t tail = atomic_load_explicit(&r->h->up_tail, memory_order_acquire);
    atomic_store_explicit(&r->h->up_head, tail, memory_order_relaxed);
    atomic_store_explicit(&r->h->up_end, 0, memory_order_relaxed);
    atomic_store_explicit(&r->h->up_id, id, memory_order_release);
}

/* Bytes in the area at the parent's head, or more than it holds if the
 * worker's tail is not one it could have written. */
static uint64_t up_in(qv_ring *r, memory_order mo)
{
    return atomic_load_explicit(&r->h->up_head, memory_order_relaxed) -
           atomic_load_explicit(&r->h->up_tail, mo);
}

long qv_up_room(qv_ring *r, size_t *at)
{
    uint64_t in = up_in(r, memory_order_acquire);
    if (in == QV_UP_RING) {
        atomic_store(&r->h->up_room_waits, 1);
        in = up_in(r, memory_order_seq_cst);
    }
    if (in >= QV_UP_RING) return in == QV_UP_RING ? 0 : -1;
    size_t first;
    *at = span(atomic_load_explicit(&r->h->up_head, memory_order_relaxed), QV_UP_RING,
               QV_UP_RING - (size_t)in, &first);
    return (long)(first < QV_UPLOAD_PIECE ? first : QV_UPLOAD_PIECE);
}

void qv_up_put(qv_ring *r, size_t n, int end)
{
    uint64_t head = atomic_load_explicit(&r->h->up_head, memory_order_relaxed) + n;
    atomic_store_explicit(&r->h->up_head, head, memory_order_release);
    if (end) atomic_store_explicit(&r->h->up_end, end, memory_order_release);
    if ((end || up_in(r, memory_order_relaxed) >= QV_UP_RING / 2) && take_flag(&r->h->up_waits))
        qv_ring_room_kick(r);
}

long qv_up_avail(qv_ring *r, uint64_t id, uint64_t tail, int *end)
{
    *end = 0;
    if (atomic_load_explicit(&r->h->up_id, memory_order_acquire) != id) return 0;
    /* (The end before head: the head it came after is then seen.) */
    *end = atomic_load_explicit(&r->h->up_end, memory_order_acquire);
    uint64_t n = atomic_load_explicit(&r->h->up_head, memory_order_acquire) - tail;
    return n > QV_UP_RING ? -1 : (long)n;
}

void qv_up_copy_out(const qv_ring *r, uint64_t tail, void *out, size_t n)
{
    copy_out(r->up, QV_UP_RING, tail, out, n);
}

int qv_up_taken(qv_ring *r, uint64_t tail)
{
    atomic_store_explicit(&r->h->up_tail, tail, memory_order_release);
    /* (A head read early only makes it look emptier: an early wake-up.) */
    return atomic_load_explicit(&r->h->up_head, memory_order_relaxed) - tail <= QV_UP_RING / 2 &&
           take_flag(&r->h->up_room_waits);
}

unsigned qv_up_wait(qv_ring *r, uint64_t id, uint64_t tail)
{
    unsigned v = qv_signal_prepare(&r->h->room_wake);
    atomic_store(&r->h->up_waits, 1);
    atomic_thread_fence(memory_order_seq_cst);
    int end;
    return qv_up_avail(r, id, tail, &end) || end ? 0 : v;
}
