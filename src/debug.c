/* The debug trace: libcurl's debug callback turned into quiver's events
 * (one header or info line each, secrets redacted), given to the request's
 * on_debug and, with QV_DEBUG in the environment, printed to stderr. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static int env_mode;
static atomic_ullong last_id;

static void env_init(void)
{
    const char *v = getenv("QV_DEBUG");
    env_mode = !v || !*v || strcmp(v, "0") == 0 ? QV_TRACE_OFF
               : strcmp(v, "unsafe") == 0       ? QV_TRACE_UNSAFE
                                                : QV_TRACE_REDACTED;
}

int qv_trace_env(void)
{
    pthread_once(&env_once, env_init);
    return env_mode;
}

void qv_trace_init(qv_req_calls *c)
{
    c->trace_env = (unsigned char)qv_trace_env();
    if (c->trace_env || c->on_debug) c->trace_id = atomic_fetch_add(&last_id, 1) + 1;
}

static const char redacted[] = "[redacted]";

static int put(qv_buf *b, const char *p, size_t n)
{
    return qv_buf_append(b, p, n);
}

/* Cookie: "a=[redacted]; b=[redacted]" (the names help, the values are
 * secrets); Set-Cookie: the first pair so, its attributes as they are. */
static int redact_cookies(qv_buf *b, const char *v, size_t n, int only_first)
{
    int rc = QV_OK, first = 1;
    while (n && !rc) {
        size_t part = 0;
        while (part < n && v[part] != ';') part++;
        const char *eq = memchr(v, '=', part);
        if ((first || !only_first) && eq) {
            rc = put(b, v, (size_t)(eq - v) + 1);
            if (!rc) rc = put(b, redacted, sizeof(redacted) - 1);
        } else {
            rc = put(b, v, part);
        }
        if (!rc && part < n) rc = put(b, ";", 1);
        v += part < n ? part + 1 : part;
        n -= part < n ? part + 1 : part;
        first = 0;
    }
    return rc;
}

/* A header line with its secret value redacted: the scheme of an
 * Authorization stays ("Bearer [redacted]"). 0 if the header is no secret. */
static int redact_header(qv_buf *b, const char *line, size_t len, int *done)
{
    static const char *const secret[] = {"Authorization", "Proxy-Authorization", "Cookie",
                                         "Set-Cookie"};
    const char *colon = memchr(line, ':', len);
    *done = 0;
    if (!colon) return QV_OK;
    size_t nlen = (size_t)(colon - line), i = 0;
    while (i < 4 && !(strlen(secret[i]) == nlen && strncasecmp(line, secret[i], nlen) == 0)) i++;
    if (i == 4) return QV_OK;
    *done = 1;
    const char *v = colon + 1, *end = line + len;
    while (v < end && *v == ' ') v++;
    int rc = put(b, line, (size_t)(v - line));
    if (rc) return rc;
    if (i >= 2) return redact_cookies(b, v, (size_t)(end - v), i == 3);
    const char *sp = memchr(v, ' ', (size_t)(end - v));
    if (sp) rc = put(b, v, (size_t)(sp - v) + 1);
    return rc ? rc : put(b, redacted, sizeof(redacted) - 1);
}

/* libcurl's cookie engine tells what it stores: 'Added cookie k="v" for
 * domain ...'; the values go. */
static int redact_cookie_info(qv_buf *b, const char *line, size_t len)
{
    const char *p = line, *end = line + len, *q;
    int rc = QV_OK;
    while (!rc && (q = memchr(p, '"', (size_t)(end - p))) && q > p && q[-1] == '=') {
        const char *close = memchr(q + 1, '"', (size_t)(end - q - 1));
        if (!close) break;
        rc = put(b, p, (size_t)(q + 1 - p));
        if (!rc) rc = put(b, redacted, sizeof(redacted) - 1);
        if (!rc) rc = put(b, "\"", 1);
        p = close + 1;
    }
    return rc ? rc : put(b, p, (size_t)(end - p));
}

/* A line of libcurl's with the password of any URL in it redacted
 * ("http://user:[redacted]@host/"). */
static int redact_urls(qv_buf *b, const char *line, size_t len)
{
    const char *p = line, *end = line + len;
    int rc = QV_OK;
    while (!rc && p < end) {
        const char *scheme = NULL;
        for (const char *q = p; q + 3 <= end && !scheme; q++)
            if (memcmp(q, "://", 3) == 0) scheme = q + 3;
        if (!scheme) break;
        const char *auth_end = scheme;
        while (auth_end < end && !strchr("/?#'\" \t>", *auth_end)) auth_end++;
        const char *at = NULL, *colon = NULL;
        for (const char *q = scheme; q < auth_end; q++)
            if (*q == '@') at = q;
        for (const char *q = scheme; at && q < at && !colon; q++)
            if (*q == ':') colon = q;
        if (colon) {
            rc = put(b, p, (size_t)(colon + 1 - p));
            if (!rc) rc = put(b, redacted, sizeof(redacted) - 1);
            p = at;
        } else {
            rc = put(b, p, (size_t)(auth_end - p));
            p = auth_end;
        }
    }
    return rc || p >= end ? rc : put(b, p, (size_t)(end - p));
}

static const char marks[] = {'*', '>', '<', '}', '{'};

/* One line: redacted unless QV_DEBUG=unsafe, given to on_debug and, with
 * QV_DEBUG, written to stderr in one write (lines of several threads and
 * processes do not mix). */
static void emit(qv_future *f, qv_debug_kind kind, const char *line, size_t len)
{
    const qv_req_calls *c = f->req.calls;
    qv_buf b = {0};
    char prefix[48];
    int n = f->attempts > 1 ? snprintf(prefix, sizeof(prefix), "quiver #%llu/%d %c ",
                                       (unsigned long long)c->trace_id, f->attempts, marks[kind])
                            : snprintf(prefix, sizeof(prefix), "quiver #%llu %c ",
                                       (unsigned long long)c->trace_id, marks[kind]);
    int rc = put(&b, prefix, (size_t)n), done = 0;
    if (!rc && c->trace_env != QV_TRACE_UNSAFE) {
        if (kind == QV_DEBUG_HEADER_IN && (*line == ' ' || *line == '\t'))
            rc = put(&b, redacted, sizeof(redacted) - 1), done = 1; /* folded: of which? */
        else if (kind == QV_DEBUG_INFO && memmem(line, len, "cookie ", 7))
            rc = redact_cookie_info(&b, line, len), done = 1;
        else if (kind == QV_DEBUG_INFO)
            rc = redact_urls(&b, line, len), done = 1;
        else
            rc = redact_header(&b, line, len, &done);
        if (!rc && !done) rc = redact_urls(&b, line, len), done = 1; /* a Location */
    }
    if (!rc && !done) rc = put(&b, line, len);
    if (!rc) {
        if (c->on_debug) c->on_debug(f, kind, b.data + n, b.len - (size_t)n, c->on_debug_arg);
        if (c->trace_env && !put(&b, "\n", 1)) {
            ssize_t w = write(STDERR_FILENO, b.data, b.len);
            (void)w; /* a trace that cannot be written is not the request's failure */
        }
    }
    qv_buf_free(&b);
}

/* libcurl's info or header block as events, a line each. */
static void emit_lines(qv_future *f, qv_debug_kind kind, const char *data, size_t size)
{
    /* A block of header lines (a request's come as one) becomes a line each. */
    const char *s = data, *end = data + size;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *e = nl ? nl : end;
        size_t len = (size_t)(e - s);
        if (len && s[len - 1] == '\r') len--;
        if (len) emit(f, kind, s, len);
        s = nl ? nl + 1 : end;
    }
}

/* libcurl tells of its cookie engine's work from inside the engine, with
 * the session's cookie lock held: those comments wait in the slot (each a
 * length and its bytes) for the next event or the end of the transfer, so
 * that on_debug never runs under a lock (it may read the jar). */
static void hold(qv_slot *slot, const char *data, size_t size)
{
    if (qv_buf_append(&slot->trace_held, &size, sizeof(size)) ||
        qv_buf_append(&slot->trace_held, data, size))
        slot->trace_held.len = 0; /* no memory: the trace loses them */
}

void qv_trace_flush(qv_slot *slot)
{
    qv_buf held = slot->trace_held;
    slot->trace_held = (qv_buf){0};
    for (size_t at = 0; slot->f && at + sizeof(size_t) <= held.len;) {
        size_t size;
        memcpy(&size, held.data + at, sizeof(size));
        emit_lines(slot->f, QV_DEBUG_INFO, held.data + at + sizeof(size), size);
        at += sizeof(size) + size;
    }
    qv_buf_free(&held);
}

static int on_curl_debug(CURL *h, curl_infotype type, char *data, size_t size, void *p)
{
    (void)h;
    qv_slot *slot = p;
    qv_future *f = slot->f;
    if (!f) return 0;
    const qv_req_calls *c = f->req.calls;
    if (type == CURLINFO_TEXT && memmem(data, size, "cookie", 6)) {
        hold(slot, data, size);
        return 0;
    }
    if (slot->trace_held.len) qv_trace_flush(slot);
    qv_debug_kind kind;
    switch (type) {
    case CURLINFO_TEXT:
        kind = QV_DEBUG_INFO;
        break;
    case CURLINFO_HEADER_OUT:
        kind = QV_DEBUG_HEADER_OUT;
        break;
    case CURLINFO_HEADER_IN:
        kind = QV_DEBUG_HEADER_IN;
        break;
    case CURLINFO_DATA_OUT:
    case CURLINFO_DATA_IN:
        if (c->on_debug && c->debug_body)
            c->on_debug(f, type == CURLINFO_DATA_OUT ? QV_DEBUG_DATA_OUT : QV_DEBUG_DATA_IN, data,
                        size, c->on_debug_arg);
        return 0;
    default:
        return 0; /* TLS records */
    }
    emit_lines(f, kind, data, size);
    return 0;
}

CURLcode qv_trace_setup(CURL *easy, qv_slot *slot)
{
    CURLcode cc = curl_easy_setopt(easy, CURLOPT_DEBUGFUNCTION, on_curl_debug);
    return cc ? cc : curl_easy_setopt(easy, CURLOPT_DEBUGDATA, slot);
}
