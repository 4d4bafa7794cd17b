/* The room a response body gets: one block of the size its Content-Length
 * announces, whatever the body then does (shorter, longer once decoded,
 * chunked), and never a large block for a large claim. An allocator that
 * records the largest block asked for (qv_set_allocator: libcurl's and
 * jansson's blocks too) sees it. With the process executor the transfer runs
 * in a worker, so there only the outcomes are checked. */
#include "support.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define KiB 1024
/* quiver's bound on the room one Content-Length reserves (src/internal.h). */
#define PRESIZE_MAX (1024 * KiB)

static atomic_size_t largest;

static void note(size_t n)
{
    size_t seen = atomic_load(&largest);
    while (n > seen && !atomic_compare_exchange_weak(&largest, &seen, n)) {
    }
}

static void *rec_malloc(size_t n)
{
    note(n);
    return malloc(n);
}

static void *rec_calloc(size_t n, size_t size)
{
    note(n * size);
    return calloc(n, size);
}

static void *rec_realloc(void *p, size_t n)
{
    note(n);
    return realloc(p, n);
}

static qv_session *S;

static void setup(void)
{
    static const qv_allocator a = {rec_malloc, rec_calloc, rec_realloc, free};
    cr_assert_eq(qv_set_allocator(&a), QV_OK);
    S = tx_session(NULL);
}

static void teardown(void)
{
    qv_session_free(S);
}

TestSuite(bodyroom, .init = setup, .fini = teardown, .timeout = 60);

static const char *nginx(const char *path)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s%s", tx_env("QV_NGINX_URL", "nginx over HTTP/1.1"), path);
    return buf;
}

/* Whether this process saw the transfer's blocks (not a process worker's). */
static int local_transfers(void)
{
    return tx_kind() != QV_PROCESSES;
}

/* The largest block asked for by a GET of url that fails with err. */
static size_t largest_for_error(const char *url, size_t limit, int err)
{
    qv_future *f;
    atomic_store(&largest, 0);
    qv_get(S, &f, url, .max_response_bytes = limit);
    tx_expect_error(f, err);
    qv_future_release(f);
    return atomic_load(&largest);
}

/* The largest block asked for by a GET of nginx's /64k on s; its future is
 * left in *f, holding the body. */
static size_t largest_for_64k(qv_session *s, qv_future **f)
{
    atomic_store(&largest, 0);
    qv_response *r = tx_get_ok(s, f, nginx("/64k"));
    size_t len;
    qv_response_body(r, &len);
    cr_assert_eq(len, 64 * KiB);
    return atomic_load(&largest);
}

Test(bodyroom, announced_body_gets_exactly_its_room)
{
    qv_future *first, *second;
    /* A first transfer sets libcurl up; its body, still held, is not there
     * for the executor to hand to the next one. */
    largest_for_64k(S, &first);
    size_t most = largest_for_64k(S, &second);
    /* Grown by doubling it would end in a 128 KiB block. */
    if (local_transfers()) cr_assert_eq(most, 64 * KiB + 1, "largest block %zu", most);
    qv_future_release(first);
    qv_future_release(second);
}

Test(bodyroom, released_body_room_serves_the_next_body)
{
    /* One worker: f[1]'s result is seen once its worker completed it, but
     * the worker lets go of its own reference only after that, so f[1]'s
     * release may not be the last one; another worker could take f[2]
     * meanwhile (under load it did: "largest block 65537"). The one worker
     * lets go of f[1] before it takes f[2]. */
    qv_session *one = TX_SESSION(.max_workers = 1);
    qv_future *f[3];
    largest_for_64k(one, &f[0]);
    largest_for_64k(one, &f[1]);
    qv_future_release(f[1]);
    size_t most = largest_for_64k(one, &f[2]);
    /* The block f[1] gave back was the executor's to keep: no new one. */
    if (local_transfers()) cr_assert_lt(most, 64 * KiB, "largest block %zu", most);
    qv_response *r0, *r2;
    cr_assert_eq(qv_future_result(f[0], &r0, -1), QV_OK);
    cr_assert_eq(qv_future_result(f[2], &r2, -1), QV_OK);
    size_t len0, len2;
    const char *b0 = qv_response_body(r0, &len0), *b2 = qv_response_body(r2, &len2);
    cr_assert_eq(len0, len2);
    cr_assert_neq(b0, b2);
    cr_assert_eq(memcmp(b0, b2, len0), 0, "the same file, twice");
    qv_future_release(f[0]);
    qv_future_release(f[2]);
    qv_session_free(one);
}

Test(bodyroom, hostile_length_reserves_little)
{
    /* 1 TiB claimed, 100 bytes sent */
    size_t most = largest_for_error(tx_faults_url("/short?length=1099511627776"), 0, QV_EPROTOCOL);
    if (local_transfers()) cr_assert_leq(most, PRESIZE_MAX + 1, "largest block %zu", most);
}

Test(bodyroom, length_over_the_limit_fails_without_room)
{
    size_t most = largest_for_error(tx_faults_url("/short?length=10000000"), 1000, QV_ETOO_LARGE);
    if (local_transfers()) cr_assert_lt(most, 64 * KiB, "largest block %zu", most);
}

Test(bodyroom, chunked_body_grows_no_further_than_the_limit)
{
    size_t most = largest_for_error(tx_faults_url("/huge?chunked=1"), 100000, QV_ETOO_LARGE);
    if (local_transfers()) cr_assert_leq(most, 100001, "largest block %zu", most);
}

Test(bodyroom, chunked_body_without_length_arrives_whole)
{
    qv_future *f;
    qv_response *r = tx_get_ok(S, &f, tu("/stream-bytes/70000?chunk_size=999&seed=5"));
    size_t len;
    qv_response_body(r, &len);
    cr_assert_eq(len, 70000);
    cr_assert_null(qv_response_header(r, "Content-Length"));
    qv_future_release(f);
}

Test(bodyroom, decoded_body_longer_than_its_length_arrives_whole)
{
    qv_future *f;
    qv_response *r = tx_get_ok(S, &f, tu("/gzip"));
    const char *cl = qv_response_header(r, "Content-Length");
    size_t len;
    qv_response_body(r, &len);
    cr_assert_not_null(cl);
    cr_assert_gt(len, (size_t)atol(cl), "decoded %zu bytes, Content-Length %s", len, cl);
    cr_assert(json_is_true(json_object_get(tx_json(r), "gzipped")));
    qv_future_release(f);
}

Test(bodyroom, body_longer_than_its_length_is_cut_at_it)
{
    qv_future *f;
    qv_response *r = tx_get_ok(S, &f, tx_faults_url("/wrong-length"));
    size_t len;
    const char *body = qv_response_body(r, &len);
    cr_assert_eq(len, 100);
    for (size_t i = 0; i < len; i++) cr_assert_eq(body[i], 'w');
    cr_assert_eq(body[len], '\0');
    qv_future_release(f);
}

Test(bodyroom, empty_body_is_an_empty_string)
{
    qv_future *f;
    qv_response *r = tx_get_ok(S, &f, tu("/bytes/0"));
    size_t len = 1;
    cr_assert_str_eq(qv_response_body(r, &len), "");
    cr_assert_eq(len, 0);
    qv_future_release(f);
}
