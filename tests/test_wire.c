/* The process executor's wire decoder against truncated and corrupted
 * frames: a worker's answer is untrusted, so every malformed input must be
 * refused cleanly — no crash, no overrun (the ASan pass checks), no leak.
 * This is a unit test of internals, hence the private header. */
#include "support.h"

#include "../src/internal.h"

#include <stdlib.h>
#include <string.h>

TestSuite(wire, .timeout = 60);
/* The format only the process executor speaks; no executor runs here. */
TX_KIND_ONLY(processes);

/* A realistic answer: status, headers, a body, a redirect in the history,
 * result bytes and cookie lines. */
static qv_buf sample_response(void)
{
    qv_future *f = qv_future_alloc(0);
    cr_assert_not_null(f);
    qv_response *r = qv_response_new(), *hop = qv_response_new();
    cr_assert(r && hop);
    r->status = 200;
    r->reason = qv_response_strndup(r, "OK", 2);
    r->url = qv_response_strndup(r, "http://127.0.0.1/final", 22);
    r->http_version = 11;
    r->elapsed_ms = 12.5;
    cr_assert_eq(qv_headers_add(&r->headers, "Content-Type", 12, "text/plain", 10), QV_OK);
    cr_assert_eq(qv_headers_add(&r->headers, "X-A", 3, "1", 1), QV_OK);
    cr_assert_eq(qv_buf_append(&r->body, "hello wire", 10), QV_OK);
    cr_assert_eq(qv_response_set_result_bytes(r, "res", 3), QV_OK);
    hop->status = 302;
    hop->reason = qv_response_strndup(hop, "Found", 5);
    hop->url = qv_response_strndup(hop, "http://127.0.0.1/start", 22);
    cr_assert_eq(qv_headers_add(&hop->headers, "Location", 8, "/final", 6), QV_OK);
    r->history = malloc(sizeof(*r->history));
    r->history[0] = hop;
    r->nhistory = 1;
    f->out_resp = r;
    f->out_conns = 1;
    struct curl_slist *jar = curl_slist_append(NULL, "127.0.0.1\tFALSE\t/\tFALSE\t0\tk\tv");
    qv_buf b = {0};
    cr_assert_eq(qv_wire_encode_response(&b, f, -1, jar, 0), QV_OK);
    curl_slist_free_all(jar);
    f->out_resp = NULL;
    qv_response_free(r);
    qv_future_release(f);
    return b;
}

/* Decodes a payload; whatever happens, frees what came back. */
static int decode(const unsigned char *p, size_t n)
{
    qv_response *r;
    int err;
    char *msg;
    struct curl_slist *jar;
    int jar_kept;
    long conns;
    double retry_ms;
    int err_status;
    int rc = qv_wire_decode_response(NULL, p, n, &r, &err, &msg, &err_status, &jar, &jar_kept,
                                     &conns, &retry_ms);
    if (rc) cr_assert(!r && !msg && !jar, "a refused frame still returned data");
    qv_response_free(r);
    free(msg);
    curl_slist_free_all(jar);
    return rc;
}

Test(wire, round_trip, .timeout = 60)
{
    qv_buf b = sample_response();
    int type;
    size_t len;
    cr_assert_eq(qv_wire_parse_header((unsigned char *)b.data, &type, &len), QV_OK);
    cr_assert_eq(type, QV_WIRE_RESPONSE);
    cr_assert_eq(len, b.len - QV_WIRE_HEADER);
    qv_response *r;
    int err;
    char *msg;
    struct curl_slist *jar;
    int jar_kept;
    long conns;
    double retry_ms;
    int err_status;
    cr_assert_eq(qv_wire_decode_response(NULL, (unsigned char *)b.data + QV_WIRE_HEADER, len, &r,
                                         &err, &msg, &err_status, &jar, &jar_kept, &conns,
                                         &retry_ms),
                 QV_OK);
    cr_assert_eq(err_status, 0);
    cr_assert_eq(jar_kept, 0, "jar lines came: the jar changed");
    cr_assert_eq(retry_ms, -1, "a final outcome says: no retry");
    cr_assert_eq(err, QV_OK);
    cr_assert_eq(qv_response_status(r), 200);
    tx_assert_str_eq(qv_response_reason(r), "OK");
    tx_assert_str_eq(qv_response_url(r), "http://127.0.0.1/final");
    tx_assert_str_eq(qv_response_header(r, "x-a"), "1");
    tx_assert_str_eq(qv_response_text(r), "hello wire");
    cr_assert_eq(qv_response_http_version(r), 11);
    cr_assert_eq(qv_response_history_len(r), 1);
    cr_assert_eq(qv_response_status(qv_response_history(r, 0)), 302);
    tx_assert_str_eq(qv_response_header(qv_response_history(r, 0), "Location"), "/final");
    size_t n;
    const char *res = qv_response_result_bytes(r, &n);
    cr_assert(n == 3 && memcmp(res, "res", 3) == 0);
    cr_assert_eq(conns, 1);
    cr_assert_not_null(jar);
    tx_assert_str_eq(jar->data, "127.0.0.1\tFALSE\t/\tFALSE\t0\tk\tv");
    qv_response_free(r);
    curl_slist_free_all(jar);
    qv_buf_free(&b);
}

Test(wire, a_kept_jar_round_trips, .timeout = 60)
{
    qv_future *f = qv_future_alloc(0);
    cr_assert_not_null(f);
    f->out_err = QV_EPROTOCOL;
    f->out_msg = strdup("truncated");
    f->out_status = 206; /* the failed transfer's status line goes along */
    qv_buf b = {0};
    cr_assert_eq(qv_wire_encode_response(&b, f, -1, NULL, 1), QV_OK);
    qv_response *r;
    int err, jar_kept, err_status;
    char *msg;
    struct curl_slist *jar;
    long conns;
    double retry_ms;
    cr_assert_eq(qv_wire_decode_response(NULL, (unsigned char *)b.data + QV_WIRE_HEADER,
                                         b.len - QV_WIRE_HEADER, &r, &err, &msg, &err_status, &jar,
                                         &jar_kept, &conns, &retry_ms),
                 QV_OK);
    cr_assert(jar_kept && !jar && err == QV_EPROTOCOL && err_status == 206);
    free(msg);
    qv_buf_free(&b);
    free(f->out_msg);
    f->out_msg = NULL;
    qv_future_release(f);
}

Test(wire, every_truncation_is_refused, .timeout = 60)
{
    qv_buf b = sample_response();
    const unsigned char *payload = (unsigned char *)b.data + QV_WIRE_HEADER;
    size_t len = b.len - QV_WIRE_HEADER;
    int accepted = 0;
    for (size_t cut = 0; cut < len; cut++) {
        /* An exact copy, so ASan sees any read past the cut. */
        unsigned char *copy = malloc(cut ? cut : 1);
        memcpy(copy, payload, cut);
        accepted += decode(copy, cut) == QV_OK;
        free(copy);
    }
    /* A cut between fields can still be a well-formed (shorter) answer, but
     * never one without a status. */
    cr_assert_lt(accepted, (int)len / 2, "%d of %zu truncations accepted", accepted, len);
    qv_buf_free(&b);
}

Test(wire, corrupted_frames_never_crash, .timeout = 60)
{
    qv_buf b = sample_response();
    const unsigned char *payload = (unsigned char *)b.data + QV_WIRE_HEADER;
    size_t len = b.len - QV_WIRE_HEADER;
    unsigned seed = 12345;
    unsigned char *copy = malloc(len);
    for (int round = 0; round < 20000; round++) {
        memcpy(copy, payload, len);
        int flips = 1 + rand_r(&seed) % 4;
        for (int i = 0; i < flips; i++) copy[rand_r(&seed) % len] = (unsigned char)rand_r(&seed);
        decode(copy, len);
    }
    free(copy);
    qv_buf_free(&b);
}

Test(wire, headers_are_checked, .timeout = 60)
{
    unsigned char h[QV_WIRE_HEADER] = {'Q', 'V', 'W', QV_WIRE_VERSION, QV_WIRE_RESPONSE, 0, 0, 0, 0,
                                       0,   0,   0};
    int type;
    size_t len;
    cr_assert_eq(qv_wire_parse_header(h, &type, &len), QV_OK);
    h[3] = QV_WIRE_VERSION + 1;
    cr_assert_eq(qv_wire_parse_header(h, &type, &len), QV_EPROTOCOL, "another version");
    h[3] = QV_WIRE_VERSION;
    h[0] = 'X';
    cr_assert_eq(qv_wire_parse_header(h, &type, &len), QV_EPROTOCOL, "bad magic");
    h[0] = 'Q';
    h[11] = 0x7f; /* ~2 GiB: over the frame limit */
    cr_assert_eq(qv_wire_parse_header(h, &type, &len), QV_EPROTOCOL, "oversized frame");
}

Test(wire, lying_lengths_and_values, .timeout = 60)
{
    /* A field that claims more bytes than there are. */
    unsigned char over[] = {64, 0, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3};
    cr_assert_neq(decode(over, sizeof over), QV_OK);
    /* A status that is not 8 bytes, and one out of range. */
    unsigned char short_int[] = {64, 0, 2, 0, 0, 0, 200, 0};
    cr_assert_neq(decode(short_int, sizeof short_int), QV_OK);
    unsigned char big_status[] = {64, 0, 8, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0};
    cr_assert_neq(decode(big_status, sizeof big_status), QV_OK);
    /* An error code outside the table. */
    unsigned char bad_err[] = {74, 0, 8, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0};
    cr_assert_neq(decode(bad_err, sizeof bad_err), QV_OK);
    /* A failed transfer's status line (T_ERRSTATUS, 77) with no error, and
     * with one (QV_EPROTOCOL, 11) but out of range. */
    unsigned char status_alone[] = {77, 0, 8, 0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0};
    cr_assert_neq(decode(status_alone, sizeof status_alone), QV_OK);
    unsigned char status_zero[] = {74, 0, 8, 0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0,
                                   77, 0, 8, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0, 0};
    cr_assert_neq(decode(status_zero, sizeof status_zero), QV_OK);
    unsigned char status_big[] = {74, 0, 8, 0, 0, 0, 11,   0, 0, 0, 0, 0, 0, 0,
                                  77, 0, 8, 0, 0, 0, 0xe8, 3, 0, 0, 0, 0, 0, 0};
    cr_assert_neq(decode(status_big, sizeof status_big), QV_OK);
    /* ...while 999 with it is taken. */
    status_big[20] = 0xe7;
    cr_assert_eq(decode(status_big, sizeof status_big), QV_OK);
    /* Nothing at all: no status, no error. */
    cr_assert_neq(decode((const unsigned char *)"", 0), QV_OK);
}

Test(wire, a_cancel_names_its_request, .timeout = 60)
{
    qv_buf b = {0};
    cr_assert_eq(qv_wire_encode_cancel(&b, 42), QV_OK);
    int type;
    size_t len;
    cr_assert_eq(qv_wire_parse_header((unsigned char *)b.data, &type, &len), QV_OK);
    cr_assert_eq(type, QV_WIRE_CANCEL);
    uint64_t id = 0;
    cr_assert_eq(qv_wire_decode_cancel((unsigned char *)b.data + QV_WIRE_HEADER, len, &id), QV_OK);
    cr_assert_eq(id, 42);
    /* A cancel that names nothing (or request 0) is refused. */
    cr_assert_eq(qv_wire_decode_cancel((unsigned char *)b.data + QV_WIRE_HEADER, 0, &id),
                 QV_EPROTOCOL);
    /* The answer of a worker that took its next request is the same frame,
     * retyped. */
    qv_wire_frame_retype(&b, QV_WIRE_RESPONSE_TOOK);
    cr_assert_eq(qv_wire_parse_header((unsigned char *)b.data, &type, &len), QV_OK);
    cr_assert_eq(type, QV_WIRE_RESPONSE_TOOK);
    qv_buf_free(&b);
}
