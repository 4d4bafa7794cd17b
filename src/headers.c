/* A case-insensitive, ordered multimap of header lines (requests and
 * responses keep repeated headers and their order). */
#include "internal.h"

#include <string.h>
#include <strings.h>

/* Room for one more item; 0, or QV_ENOMEM. */
static int room_for_one(qv_headers *h)
{
    if (h->len < h->cap) return QV_OK;
    size_t cap = h->cap ? h->cap * 2 : 16;
    qv_hdr *items = qv_realloc(h->items, cap * sizeof(*items));
    if (!items) return QV_ENOMEM;
    h->items = items;
    h->cap = cap;
    return QV_OK;
}

int qv_headers_add(qv_headers *h, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (room_for_one(h)) return QV_ENOMEM;
    /* The strings live in the headers' arena: no allocation per line. */
    char *n = qv_arena_alloc(&h->strings, nlen + vlen + 2);
    if (!n) return QV_ENOMEM;
    memcpy(n, name, nlen);
    n[nlen] = '\0';
    char *v = n + nlen + 1;
    memcpy(v, value, vlen);
    v[vlen] = '\0';
    h->items[h->len].name = n;
    h->items[h->len].value = v;
    h->len++;
    return QV_OK;
}

int qv_headers_add_line(qv_headers *h, const char *line, size_t nlen, const char *value,
                        size_t vlen)
{
    if (room_for_one(h)) return QV_ENOMEM;
    /* One copy of the line up to the value's end; the colon and what
     * follows the value become the strings' ends. */
    size_t voff = (size_t)(value - line), n = voff + vlen;
    char *c = qv_arena_alloc(&h->strings, n + 1);
    if (!c) return QV_ENOMEM;
    memcpy(c, line, n);
    c[nlen] = '\0';
    c[n] = '\0';
    h->items[h->len].name = c;
    h->items[h->len].value = c + voff;
    h->len++;
    return QV_OK;
}

int qv_headers_continue(qv_headers *h, const char *more, size_t n)
{
    if (!h->len) return QV_OK;
    qv_hdr *last = &h->items[h->len - 1];
    size_t vlen = strlen(last->value);
    char *v = qv_arena_alloc(&h->strings, vlen + n + 2);
    if (!v) return QV_ENOMEM;
    memcpy(v, last->value, vlen);
    v[vlen] = ' ';
    memcpy(v + vlen + 1, more, n);
    v[vlen + 1 + n] = '\0';
    last->value = v;
    return QV_OK;
}

const char *qv_headers_get(const qv_headers *h, const char *name, size_t nth)
{
    if (!name) return NULL;
    for (size_t i = 0; i < h->len; i++)
        if (strcasecmp(h->items[i].name, name) == 0 && nth-- == 0) return h->items[i].value;
    return NULL;
}

void qv_headers_clear(qv_headers *h)
{
    qv_arena_reset(&h->strings);
    h->len = 0;
    if (h->cap > 64) { /* a response with many: not the room to keep */
        qv_free(h->items);
        h->items = NULL;
        h->cap = 0;
    }
}

void qv_headers_free(qv_headers *h)
{
    qv_arena_free(&h->strings);
    qv_free(h->items);
    h->items = NULL;
    h->len = h->cap = 0;
}

int qv_header_line_is(const char *line, const char *name, size_t nlen)
{
    /* (every request's lines are asked about several names: most differ at once) */
    return (line[0] | 0x20) == (name[0] | 0x20) && strncasecmp(line, name, nlen) == 0 &&
           (line[nlen] == ':' || line[nlen] == ';');
}

int qv_header_name_ok(const char *name)
{
    /* RFC 9110 token characters. */
    static const char *extra = "!#$%&'*+-.^_`|~";
    if (!name || !*name) return 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        int alnum =
            (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z');
        if (!alnum && !strchr(extra, *p)) return 0;
    }
    return 1;
}

int qv_header_value_ok(const char *value)
{
    return value && !strpbrk(value, "\r\n");
}
