/* Responses on the blocks an executor recycles (src/bodies.c): bodies of
 * many sizes stay whole and apart however many are held at once, in
 * whatever order and on whatever thread they are released, and after their
 * executor is gone; what the executor keeps stays within its bound; and a
 * response made on a kept one carries nothing of it over. The bodies are
 * files of known bytes that nginx serves. */
#include "../src/internal.h"
#include "support.h"

#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NSIZES 7
/* Small (malloc's own), kept, and over QV_BODY_PRESIZE_MAX (never kept). */
static const size_t sizes[NSIZES] = {100, 5000, 20000, 65536, 100000, 300000, 1500000};

static unsigned char byte_at(size_t size, size_t i)
{
    return (unsigned char)(i * 131 + size);
}

static const char *url_for(size_t size)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/bodies-%zu", tx_env("QV_NGINX_URL", "nginx over HTTP/1.1"), size);
    return buf;
}

/* Each test writes them (its own process): into place by a rename, so a
 * test running at the same time never reads a file half written. */
static void write_files(void)
{
    const char *www = tx_env("QV_NGINX_WWW", "the directory nginx serves");
    for (size_t k = 0; k < NSIZES; k++) {
        char path[512], tmp[600];
        snprintf(path, sizeof path, "%s/bodies-%zu", www, sizes[k]);
        snprintf(tmp, sizeof tmp, "%s.%ld", path, (long)getpid());
        FILE *fp = fopen(tmp, "wb");
        cr_assert_not_null(fp, "cannot write %s", tmp);
        for (size_t i = 0; i < sizes[k]; i++) fputc(byte_at(sizes[k], i), fp);
        cr_assert_eq(fclose(fp), 0);
        cr_assert_eq(rename(tmp, path), 0);
    }
}

TestSuite(bodies, .init = write_files, .timeout = 120);

typedef struct held {
    qv_future **f;
    size_t n;
} held;

/* n GETs, their sizes in turn, all completed and held. */
static held fetch(qv_session *s, size_t n, const size_t *which, size_t nwhich)
{
    held h = {calloc(n, sizeof(qv_future *)), n};
    cr_assert_not_null(h.f);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(qv_get(s, &h.f[i], url_for(which[i % nwhich])), QV_OK);
    for (size_t i = 0; i < n; i++) tx_expect_status(h.f[i], 200);
    return h;
}

static const char *body_of(qv_future *f, size_t *len)
{
    qv_response *r = NULL;
    cr_assert_eq(qv_future_result(f, &r, 0), QV_OK);
    return qv_response_body(r, len);
}

static int by_address(const void *a, const void *b)
{
    const char *x = body_of(*(qv_future *const *)a, NULL);
    const char *y = body_of(*(qv_future *const *)b, NULL);
    return x < y ? -1 : x > y;
}

/* Every body is its file's bytes, NUL-terminated, and no two share a byte. */
static void check_whole_and_apart(held h, const size_t *which, size_t nwhich)
{
    for (size_t i = 0; i < h.n; i++) {
        size_t len, want = which[i % nwhich];
        const unsigned char *b = (const unsigned char *)body_of(h.f[i], &len);
        cr_assert_eq(len, want, "body %zu: %zu bytes, not %zu", i, len, want);
        for (size_t k = 0; k < len; k++)
            if (b[k] != byte_at(want, k)) cr_assert_fail("body %zu: byte %zu differs", i, k);
        cr_assert_eq(b[len], '\0');
    }
    qv_future **sorted = malloc(h.n * sizeof(*sorted));
    cr_assert_not_null(sorted);
    memcpy(sorted, h.f, h.n * sizeof(*sorted));
    qsort(sorted, h.n, sizeof(*sorted), by_address);
    for (size_t i = 1; i < h.n; i++) {
        size_t len;
        const char *prev = body_of(sorted[i - 1], &len);
        cr_assert_lt(prev + len, body_of(sorted[i], NULL), "two bodies overlap");
    }
    free(sorted);
}

/* The blocks ex keeps at most: two per transfer, and on a QV_THREADS pool
 * one per response it may hold at once (its transfers' and up to
 * max_uncollected + max_workers - 1 finished ones). */
static size_t keep_bound(const qv_executor *ex)
{
    size_t n = 2 * (size_t)ex->o.max_workers;
    if (tx_kind() == QV_THREADS) n += (size_t)ex->max_uncollected;
    return n < QV_BODIES_COUNT ? n : QV_BODIES_COUNT;
}

/* What ex keeps is within the bound: how many blocks, and (bytes) bytes. */
static size_t check_bound(qv_executor *ex, size_t *bytes)
{
    size_t b, n = qv_bodies_kept(ex->bodies, &b);
    cr_assert_leq(n, keep_bound(ex));
    cr_assert_leq(n, QV_BODIES_COUNT);
    cr_assert_leq(b, QV_BODIES_BYTES);
    if (bytes) *bytes = b;
    return n;
}

/* Three rounds on one executor: bodies of every size fetched and held at
 * once, checked, then let go by `release`; something is kept each time,
 * within the bound, and the next round's bodies on those blocks are whole. */
static void rounds(void (*release)(held h))
{
    qv_executor *ex = tx_executor(8);
    qv_session *s = TX_SESSION(.executor = ex);
    for (int round = 0; round < 3; round++) {
        held h = fetch(s, 10 * NSIZES, sizes, NSIZES);
        check_whole_and_apart(h, sizes, NSIZES);
        release(h);
        free(h.f);
        cr_assert_gt(check_bound(ex, NULL), 0, "nothing kept to recycle");
    }
    qv_session_free(s);
    qv_executor_free(ex);
}

static void release_odd_then_even_backwards(held h)
{
    for (size_t i = 1; i < h.n; i += 2) qv_future_release(h.f[i]);
    for (size_t i = (h.n - 1) & ~(size_t)1; i < h.n; i -= 2) qv_future_release(h.f[i]);
}

Test(bodies, many_held_at_once_stay_whole_and_apart_released_out_of_order)
{
    rounds(release_odd_then_even_backwards);
}

typedef struct part {
    held h;
    size_t from, step;
} part;

static void *release_part(void *p)
{
    part *q = p;
    for (size_t i = q->from; i < q->h.n; i += q->step) qv_future_release(q->h.f[i]);
    return NULL;
}

static void release_on_four_threads(held h)
{
    enum { T = 4 };
    pthread_t t[T];
    part parts[T];
    for (size_t i = 0; i < T; i++) {
        parts[i] = (part){h, i, T};
        cr_assert_eq(pthread_create(&t[i], NULL, release_part, &parts[i]), 0);
    }
    for (size_t i = 0; i < T; i++) pthread_join(t[i], NULL);
}

Test(bodies, released_on_other_threads_then_recycled_whole)
{
    rounds(release_on_four_threads);
}

/* More bodies than the executor keeps blocks for, held at once on a new
 * executor of 4 workers, then all released: it keeps as many as its bound. */
Test(bodies, kept_buffers_stop_at_the_executors_bound)
{
    size_t size = 5000;
    qv_executor *ex = tx_executor(4);
    qv_session *s = TX_SESSION(.executor = ex);
    held h = fetch(s, keep_bound(ex) + 20, &size, 1);
    for (size_t i = 0; i < h.n; i++) qv_future_release(h.f[i]);
    free(h.f);
    cr_assert_eq(check_bound(ex, NULL), keep_bound(ex));
    qv_session_free(s);
    qv_executor_free(ex);
}

/* Without the network: an executor of many workers keeps no more than
 * QV_BODIES_COUNT blocks either. */
Test(bodies, kept_buffers_stop_at_the_count_bound)
{
    enum { N = QV_BODIES_COUNT + 20 };
    qv_bodies *b = qv_bodies_new(1000, qv_response_shell_free);
    qv_buf bufs[N] = {{0}};
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(qv_bodies_take(b, &bufs[i], 5001), 0, "nothing kept yet");
        cr_assert_eq(qv_buf_grow(&bufs[i], 5000, 5000), QV_OK);
    }
    for (size_t i = 0; i < N; i++) qv_bodies_give(b, &bufs[i]);
    cr_assert_eq(qv_bodies_kept(b, NULL), QV_BODIES_COUNT);
    qv_buf again = {0};
    cr_assert_eq(qv_bodies_take(b, &again, 5001), 1);
    cr_assert_eq(qv_bodies_kept(b, NULL), QV_BODIES_COUNT - 1);
    qv_bodies_give(b, &again);
    qv_bodies_close(b);
}

/* Without the network either: what is kept follows recent use. Blocks kept
 * after a burst of 40 bodies held at once go back, one an interval of takes
 * (QV_BODIES_INTERVAL) that held fewer at once, until 4 are left, the most
 * held at once since; every take finds one. Kept for good, they held a long
 * run's RSS at its highest burst (bench/NOTES.md, 2026-12-07 22:17). */
Test(bodies, kept_buffers_follow_recent_use)
{
    enum { BURST = 40, STEADY = 4, SIZE = 65536 };
    qv_bodies *b = qv_bodies_new(QV_BODIES_COUNT, qv_response_shell_free);
    qv_buf bufs[BURST] = {{0}};
    for (size_t i = 0; i < BURST; i++) {
        cr_assert_eq(qv_bodies_take(b, &bufs[i], SIZE + 1), 0, "nothing kept yet");
        cr_assert_eq(qv_body_grow(&bufs[i], SIZE, SIZE), QV_OK);
    }
    size_t cap = bufs[0].cap;
    for (size_t i = 0; i < BURST; i++) qv_bodies_give(b, &bufs[i]);
    cr_assert_eq(qv_bodies_kept(b, NULL), BURST);
    for (size_t round = 0; round < (BURST + 1) * QV_BODIES_INTERVAL / STEADY; round++) {
        for (size_t i = 0; i < STEADY; i++)
            cr_assert_eq(qv_bodies_take(b, &bufs[i], SIZE + 1), 1, "round %zu: none kept", round);
        for (size_t i = 0; i < STEADY; i++) qv_bodies_give(b, &bufs[i]);
        /* One an interval: a load that comes back makes few again. */
        size_t takes = BURST + (round + 1) * STEADY;
        cr_assert_geq(qv_bodies_kept(b, NULL) + takes / QV_BODIES_INTERVAL, BURST,
                      "more than one block an interval let go");
    }
    size_t bytes;
    cr_assert_eq(qv_bodies_kept(b, &bytes), STEADY, "blocks kept for a burst long gone");
    cr_assert_eq(bytes, STEADY * cap);
    qv_bodies_close(b);
}

/* Without the network either (more workers than a test should start):
 * large blocks stop at QV_BODIES_BYTES. */
Test(bodies, kept_buffers_stop_at_the_byte_bound)
{
    enum { SIZE = 300000, N = QV_BODIES_BYTES / SIZE + 20 };
    qv_bodies *b = qv_bodies_new(QV_BODIES_COUNT, qv_response_shell_free);
    qv_buf bufs[N] = {{0}};
    for (size_t i = 0; i < N; i++) cr_assert_eq(qv_body_grow(&bufs[i], SIZE, SIZE), QV_OK);
    for (size_t i = 0; i < N; i++) qv_bodies_give(b, &bufs[i]);
    size_t bytes;
    cr_assert_lt(qv_bodies_kept(b, &bytes), N);
    cr_assert_leq(bytes, QV_BODIES_BYTES);
    cr_assert_gt(bytes + SIZE + 1, QV_BODIES_BYTES, "room left: %zu kept", bytes);
    qv_bodies_close(b);
}

Test(bodies, bodies_outlive_their_executor)
{
    qv_executor *ex = tx_executor(4);
    qv_session *s = TX_SESSION(.executor = ex);
    held first = fetch(s, 2 * NSIZES, sizes, NSIZES);
    for (size_t i = 0; i < first.n; i++) qv_future_release(first.f[i]);
    free(first.f);
    /* Some of these are on recycled buffers; the executor goes first. */
    held h = fetch(s, 2 * NSIZES, sizes, NSIZES);
    qv_session_free(s);
    qv_executor_free(ex);
    check_whole_and_apart(h, sizes, NSIZES);
    for (size_t i = 0; i < h.n; i++) qv_future_release(h.f[i]);
    free(h.f);
}

/* Each response on the shell the one before left: its own status, headers,
 * history and cookies only. */
Test(bodies, recycled_responses_carry_nothing_over)
{
    qv_executor *ex = tx_executor(1);
    qv_session *s = TX_SESSION(.executor = ex);
    for (int i = 0; i < 6; i++) {
        qv_future *f;
        qv_response *r;
        if (i % 3 == 0) {
            r = tx_get_ok(s, &f, tuf("/response-headers?X-Round=%d", i));
            cr_assert_str_eq(qv_response_header(r, "X-Round"), i == 0 ? "0" : "3");
            cr_assert_null(qv_response_header_nth(r, "X-Round", 1));
        } else if (i % 3 == 1) {
            r = tx_get_ok(s, &f, tu("/redirect/2"));
            cr_assert_eq(qv_response_history_len(r), 2);
            cr_assert_null(qv_response_header(r, "X-Round"));
        } else {
            r = tx_get_ok(s, &f, tuf("/cookies/set?round%d=yes", i));
            /* set by the redirect to /cookies */
            const qv_response *hop = qv_response_history(r, 0);
            cr_assert_str_eq(qv_response_cookie(hop, i == 2 ? "round2" : "round5"), "yes");
            cr_assert_null(qv_response_cookie(hop, i == 2 ? "round5" : "round2"));
            cr_assert_null(qv_response_header(r, "X-Round"));
        }
        if (i % 3 != 1) cr_assert_eq(qv_response_history_len(r), i % 3 == 2 ? 1 : 0);
        cr_assert_str_eq(qv_response_reason(r), "OK");
        qv_future_release(f);
    }
    qv_session_free(s);
    qv_executor_free(ex);
}

/* Large bodies are pages of their own, in no malloc arena: held at once,
 * 48 bodies of 64 KiB add far less than their 3 MiB to what malloc has
 * handed out (each response's other blocks are a few hundred bytes). In an
 * arena, a large block freed on another thread than its maker's left a hole
 * there that the next one could not use: the heap crept (bench/NOTES.md,
 * 2026-12-06 16:00). Under ASan and valgrind mallinfo2 reads 0. */
Test(bodies, large_bodies_are_outside_the_malloc_heap)
{
    enum { N = 48 };
    static const size_t big[] = {65536};
    qv_executor *ex = tx_executor(4);
    qv_session *s = TX_SESSION(.executor = ex);
    held warm = fetch(s, 8, big, 1); /* the workers and their connections */
    for (size_t i = 0; i < warm.n; i++) qv_future_release(warm.f[i]);
    free(warm.f);
    size_t before = mallinfo2().uordblks;
    held h = fetch(s, N, big, 1);
    size_t after = mallinfo2().uordblks;
    check_whole_and_apart(h, big, 1);
    cr_assert_lt(after, before + N * 65536 / 4, "malloc holds %zu more bytes for %d bodies",
                 after - before, N);
    for (size_t i = 0; i < h.n; i++) qv_future_release(h.f[i]);
    free(h.f);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* Whether this process has a page of its own at p (/proc/self/pagemap: present
 * and mapped by this process alone, not the kernel's shared zero page). */
static int own_page(const void *p)
{
    uint64_t e = 0;
    FILE *fp = fopen("/proc/self/pagemap", "rb");
    cr_assert_not_null(fp);
    long page = sysconf(_SC_PAGESIZE);
    cr_assert_eq(fseeko(fp, (off_t)((uintptr_t)p / (uintptr_t)page * sizeof(e)), SEEK_SET), 0);
    cr_assert_eq(fread(&e, sizeof(e), 1, fp), 1);
    fclose(fp);
    return (e >> 63 & 1) && (e >> 56 & 1);
}

/* Transparent huge pages for every mapping (not only madvised ones) would
 * back a body's last page with the rest of a huge page. */
static int huge_pages_always(void)
{
    char line[128] = "";
    FILE *fp = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (fp && !fgets(line, sizeof line, fp)) line[0] = '\0';
    if (fp) fclose(fp);
    return strstr(line, "[always]") != NULL;
}

/* Whether a read of an anonymous page never written maps the kernel's zero
 * page here: some kernels give the process a page of its own for it (this
 * VM's 6.18.44 did, 2026-12-07), and then the NUL's page is ours anyway. */
static int reads_map_the_zero_page(void)
{
    long page = sysconf(_SC_PAGESIZE);
    volatile char *p = mmap(NULL, (size_t)page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(p != MAP_FAILED);
    char c = p[0];
    int shared = c == 0 && !own_page((const void *)p);
    munmap((void *)p, (size_t)page);
    return shared;
}

/* A body of whole pages (64 KiB) has its NUL alone on its block's last
 * page: that page stays the kernel's zero page, not one more page of
 * memory for every such body held (a seventeenth of each). */
Test(bodies, a_body_of_whole_pages_takes_no_page_for_its_nul)
{
    static const size_t whole[] = {65536};
    qv_executor *ex = tx_executor(4);
    qv_session *s = TX_SESSION(.executor = ex);
    held h = fetch(s, 16, whole, 1);
    check_whole_and_apart(h, whole, 1);
    for (size_t i = 0; i < h.n; i++) {
        size_t len;
        const char *b = body_of(h.f[i], &len);
        cr_assert(own_page(b + len - 1), "body %zu: its last byte's page is not ours", i);
        if (!huge_pages_always() && reads_map_the_zero_page())
            cr_assert_not(own_page(b + len), "body %zu: a page of its own for the NUL", i);
    }
    for (size_t i = 0; i < h.n; i++) qv_future_release(h.f[i]);
    free(h.f);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* A body block made for a body of known length has the pages its bytes will
 * take before they come, asked for in one call rather than faulted in one
 * at a time (16 faults a new 64 KiB block); not the NUL's page. */
Test(bodies, a_new_block_has_the_pages_of_the_bytes_it_is_made_for)
{
    long page = sysconf(_SC_PAGESIZE);
    qv_buf b = {0};
    cr_assert_eq(qv_body_grow(&b, 65536, 65536), QV_OK);
    for (size_t at = 0; at < 65536; at += (size_t)page)
        cr_assert(own_page(b.data + at), "the page at %zu of a 64 KiB body's new block is not ours",
                  at);
    if (!huge_pages_always())
        cr_assert_not(own_page(b.data + 65536), "the NUL's page of a new block is ours");
    qv_body_free(&b);
}
