/*
 * Fuzz target: the process executor's response decoder
 * (qv_wire_decode_response), which reads what a worker process sent: bytes
 * the parent must treat as untrusted. The input is a frame's payload (the
 * runs of tag, length, value that follow the 12-byte frame header); the
 * frame header check (qv_wire_parse_header) gets the first 12 bytes too.
 *
 * Checked beyond "no crash, no overrun, no leak":
 *  - a refused payload returns nothing (no response, message or jar);
 *  - an accepted one is either a response or an error code in range, never
 *    both; the body is NUL-terminated (or absent and empty);
 *  - a decoded response encodes (qv_wire_encode_response, what a worker
 *    does) and decodes again to the same status, reason, URL, headers,
 *    body, history and result bytes.
 */
#include "../src/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_wire_response: %s\n", what);
    abort();
}

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int same_hop(const qv_response *a, const qv_response *b)
{
    if (a->status != b->status || !same_str(a->reason, b->reason) || !same_str(a->url, b->url) ||
        a->headers.len != b->headers.len)
        return 0;
    for (size_t i = 0; i < a->headers.len; i++)
        if (strcmp(a->headers.items[i].name, b->headers.items[i].name) ||
            strcmp(a->headers.items[i].value, b->headers.items[i].value))
            return 0;
    return 1;
}

static void round_trip(qv_response *r, const struct curl_slist *jar, int jar_kept, long conns,
                       double retry_ms)
{
    qv_future *f = qv_future_alloc(0);
    if (!f) abort();
    f->out_resp = r;
    f->out_conns = conns;
    qv_buf b = {0};
    if (qv_wire_encode_response(&b, f, retry_ms, jar, jar_kept)) abort();
    f->out_resp = NULL;
    qv_future_release(f);

    int type;
    size_t len;
    if (qv_wire_parse_header((const unsigned char *)b.data, &type, &len) ||
        type != QV_WIRE_RESPONSE || len != b.len - QV_WIRE_HEADER)
        fail("an encoded frame has a bad header");
    qv_response *r2 = NULL;
    int err;
    char *msg;
    struct curl_slist *jar2;
    int jar_kept2;
    long conns2;
    double retry2;
    int err_status;
    if (qv_wire_decode_response(NULL, (const unsigned char *)b.data + QV_WIRE_HEADER, len, &r2,
                                &err, &msg, &err_status, &jar2, &jar_kept2, &conns2, &retry2) ||
        !r2 || err || err_status)
        fail("a re-encoded response does not decode");
    if (!same_hop(r, r2) || r->body.len != r2->body.len ||
        memcmp(qv_response_body(r, NULL), qv_response_body(r2, NULL), r->body.len) ||
        r->nhistory != r2->nhistory || r->result_len != r2->result_len ||
        (r->result_len && memcmp(r->result_bytes, r2->result_bytes, r->result_len)) ||
        r->http_version != r2->http_version || conns != conns2 || jar_kept != jar_kept2 ||
        (retry_ms < 0 ? retry2 != -1 : fabs(retry2 - retry_ms) > 0.001))
        fail("a response changed in a round trip");
    for (size_t i = 0; i < r->nhistory; i++)
        if (!same_hop(r->history[i], r2->history[i])) fail("a history hop changed in a round trip");
    const struct curl_slist *a = jar, *c = jar2;
    for (; a && c; a = a->next, c = c->next)
        if (strcmp(a->data, c->data)) fail("a cookie line changed in a round trip");
    if (a || c) fail("the cookie lines changed in number in a round trip");
    qv_response_free(r2);
    qv_free(msg);
    curl_slist_free_all(jar2);
    qv_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= QV_WIRE_HEADER) {
        int type;
        size_t len;
        if (qv_wire_parse_header(data, &type, &len) == QV_OK && len > QV_WIRE_MAX)
            fail("a frame header over the size limit was accepted");
    }
    qv_response *r = NULL;
    int err = -1;
    char *msg = NULL;
    struct curl_slist *jar = NULL;
    int jar_kept;
    long conns = -1;
    double retry_ms;
    int err_status = -1;
    int rc = qv_wire_decode_response(NULL, data, size, &r, &err, &msg, &err_status, &jar, &jar_kept,
                                     &conns, &retry_ms);
    if (rc) {
        if (rc != QV_EPROTOCOL && rc != QV_ENOMEM) fail("an unexpected error code");
        if (r || msg || jar) fail("a refused payload returned data");
        return 0;
    }
    if (!r == !err) fail("a payload decoded to both or neither of a response and an error");
    if (err && (err <= QV_OK || err >= QV_ERROR_COUNT_)) fail("an error code out of range");
    if (err_status < 0 || err_status > 999 || (err_status && !err))
        fail("a failed transfer's status out of range, or with no failure");
    if (conns < 0) fail("a negative connection count");
    if (r) {
        /* No body yet is no block at all (an empty string to the user). */
        size_t len;
        const char *body = qv_response_body(r, &len);
        if (len != r->body.len || body[len] != '\0' || (!r->body.data && len))
            fail("a body not NUL-terminated");
        if (r->status < 0 || r->status > 999) fail("a status out of range");
        if (jar_kept && jar) fail("a payload decoded to both a kept jar and jar lines");
        round_trip(r, jar, jar_kept, conns, retry_ms);
    }
    qv_response_free(r);
    qv_free(msg);
    curl_slist_free_all(jar);
    return 0;
}
