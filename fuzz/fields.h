/* Shared by the fuzz targets: an input cut into NUL-terminated fields. The
 * library takes C strings, so a NUL can never be inside one: it is the
 * natural separator, and every field comes out as a C string. */
#ifndef QV_FUZZ_FIELDS_H
#define QV_FUZZ_FIELDS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct fz_fields {
    char *buf; /* the input, NUL-terminated, with every NUL a field end */
    char **f;
    size_t n;
} fz_fields;

/* Cuts data at NUL bytes (an empty input gives one empty field). Aborts if
 * out of memory: a fuzzer cannot do anything better. */
static inline fz_fields fz_split(const uint8_t *data, size_t size)
{
    fz_fields x = {0};
    x.buf = malloc(size + 1);
    x.f = malloc((size + 1) * sizeof(*x.f));
    if (!x.buf || !x.f) abort();
    memcpy(x.buf, data, size);
    x.buf[size] = '\0';
    x.f[x.n++] = x.buf;
    for (size_t i = 0; i < size; i++)
        if (x.buf[i] == '\0') x.f[x.n++] = x.buf + i + 1;
    return x;
}

static inline void fz_free(fz_fields *x)
{
    free(x->buf);
    free(x->f);
}

/* RFC 9110 token characters: the reference that header names and methods
 * are checked against, written apart from the library's own check. */
static inline int fz_is_token(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x80 || c <= 0x20 || c == 0x7f) return 0;
        if (strchr("\"(),/:;<=>?@[\\]{}", c)) return 0;
    }
    return 1;
}

static inline int fz_has_crlf(const char *s)
{
    return s && strpbrk(s, "\r\n") != NULL;
}

#endif
