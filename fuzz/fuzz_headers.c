/*
 * Fuzz target: header handling — the validation of names (HTTP tokens) and
 * values (no CR/LF), and the case-insensitive ordered multimap that holds a
 * response's headers, read through the public accessors.
 *
 * Input: fields separated by NUL bytes (fields.h), each a header
 * "name:value" (split at the first ':'; without one, the whole field is the
 * name and the value is empty).
 *
 * Checked against references written here:
 *  - qv_header_name_ok and qv_header_value_ok agree with fields.h;
 *  - qv_response_header_count/_at give back every header added, in order,
 *    byte for byte;
 *  - qv_response_header_nth(name, k) is the kth value, in order, of the
 *    headers whose name matches case-insensitively (ASCII), NULL past the
 *    last; qv_response_header is the first.
 */
#include "../src/internal.h"
#include "fields.h"

#include <stdio.h>
#include <strings.h>

#define MAXH 24 /* the checks are cubic in the number of headers */

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_headers: %s: %s\n", what, detail ? detail : "");
    abort();
}

/* ASCII case-insensitive equality, as a reference (no locale). */
static int same_name(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
        if (x >= 'A' && x <= 'Z') x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = (unsigned char)(y - 'A' + 'a');
        if (x != y) return 0;
    }
    return *a == *b;
}

static void check_lookup(const qv_response *r, const char **names, const char **values, size_t n,
                         const char *q)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!same_name(names[i], q)) continue;
        const char *got = qv_response_header_nth(r, q, k);
        if (!got || strcmp(got, values[i])) fail("header_nth gave another value", q);
        if (k == 0 && qv_response_header(r, q) != got) fail("header is not header_nth 0", q);
        k++;
    }
    if (qv_response_header_nth(r, q, k)) fail("header_nth gave a value past the last", q);
    if (k == 0 && qv_response_header(r, q)) fail("header found for an absent name", q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_fields in = fz_split(data, size);
    const char *names[MAXH], *values[MAXH];
    size_t n = 0;
    for (size_t i = 0; i < in.n && n < MAXH; i++) {
        char *v = strchr(in.f[i], ':');
        if (v) *v++ = '\0';
        names[n] = in.f[i];
        values[n] = v ? v : "";
        n++;
    }

    for (size_t i = 0; i < n; i++) {
        if (qv_header_name_ok(names[i]) != fz_is_token(names[i]))
            fail("qv_header_name_ok disagrees with the token rule", names[i]);
        if (qv_header_value_ok(values[i]) == fz_has_crlf(values[i]))
            fail("qv_header_value_ok disagrees with the CR/LF rule", values[i]);
    }
    if (qv_header_name_ok(NULL) || qv_header_value_ok(NULL)) fail("NULL accepted", NULL);

    qv_response *r = qv_response_new();
    if (!r) abort();
    for (size_t i = 0; i < n; i++)
        if (qv_headers_add(&r->headers, names[i], strlen(names[i]), values[i], strlen(values[i])))
            abort();
    if (qv_response_header_count(r) != n) fail("header_count is not the number added", NULL);
    for (size_t i = 0; i < n; i++) {
        const char *nm = NULL, *val = NULL;
        if (qv_response_header_at(r, i, &nm, &val) || !nm || !val || strcmp(nm, names[i]) ||
            strcmp(val, values[i]))
            fail("header_at does not give back what was added", names[i]);
    }
    if (qv_response_header_at(r, n, NULL, NULL) != QV_EINVAL) fail("header_at past the end", NULL);

    /* Every name as added, upper- and lower-cased, and one that may be absent. */
    char buf[256];
    for (size_t i = 0; i < n; i++) {
        check_lookup(r, names, values, n, names[i]);
        snprintf(buf, sizeof(buf), "%s", names[i]);
        for (char *c = buf; *c; c++)
            if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
        check_lookup(r, names, values, n, buf);
        for (char *c = buf; *c; c++)
            if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
        check_lookup(r, names, values, n, buf);
    }
    check_lookup(r, names, values, n, "x-absent-from-every-input-0");
    if (qv_response_header(NULL, "a") || qv_response_header_count(NULL))
        fail("NULL response", NULL);

    qv_response_free(r);
    fz_free(&in);
    return 0;
}
