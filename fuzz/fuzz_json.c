/*
 * Fuzz target: JSON access on a response (qv_response_json and friends) with
 * a fuzzed body, built with the internal constructor as a transfer would
 * build it.
 *
 * Checked beyond "no crash, no leak":
 *  - qv_response_json parses exactly what jansson parses on its own (same
 *    flags), and parses once: a second call gives the same object;
 *  - it fails with QV_EJSON and a message from qv_response_json_error, or
 *    succeeds with QV_OK and no message;
 *  - the body is given back byte for byte and NUL-terminated, and
 *    qv_response_text is the same bytes.
 */
#include "../src/internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_json: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qv_response *r = qv_response_new();
    if (!r) abort();
    r->status = 200;
    r->body.len = 0;
    if (qv_buf_append(&r->body, data, size)) abort();

    size_t len = 0;
    const char *body = qv_response_body(r, &len);
    if (len != size || (size && memcmp(body, data, size)) || body[len] != '\0')
        fail("the body is not what was put in");
    if (qv_response_text(r) != body) fail("text is not the body");

    int err = -1;
    json_t *j = qv_response_json(r, &err);
    json_t *ref = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!j != !ref) fail("qv_response_json and json_loadb disagree");
    if (ref && !json_equal(j, ref)) fail("qv_response_json parsed another value");
    json_decref(ref);
    if (j ? err != QV_OK || qv_response_json_error(r)
          : err != QV_EJSON || !qv_response_json_error(r))
        fail("the error code or message does not match the outcome");
    int err2 = -1;
    if (qv_response_json(r, &err2) != j || err2 != err) fail("a second call parsed again");
    if (qv_response_json(NULL, &err2) || err2 != QV_EINVAL) fail("a NULL response");
    qv_response_free(r);
    return 0;
}
