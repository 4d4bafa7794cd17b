/* Building a request record at submit: session defaults merged with the
 * request's options, validated, and every input copied (the caller may free
 * its strings as soon as qv_request returns). */
#include "internal.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int qv_opts_copy(void *dst, size_t dst_size, const void *src)
{
    memset(dst, 0, dst_size);
    if (!src) return QV_OK;
    size_t size = *(const size_t *)src;
    if (size == 0) size = dst_size;
    if (size < sizeof(size_t)) return QV_EINVAL;
    /* A caller built against a newer header may only leave new fields zero. */
    for (size_t i = dst_size; i < size; i++)
        if (((const unsigned char *)src)[i]) return QV_EINVAL;
    memcpy(dst, src, size < dst_size ? size : dst_size);
    return QV_OK;
}

/* application/x-www-form-urlencoded, as requests does: space becomes '+'. */
static int form_encode(qv_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int plain = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '.' || *p == '_' || *p == '~';
        char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
        int rc = plain       ? qv_buf_append(b, p, 1)
                 : *p == ' ' ? qv_buf_append(b, "+", 1)
                             : qv_buf_append(b, esc, 3);
        if (rc) return rc;
    }
    return QV_OK;
}

/* Appends name=value pairs (a NULL value skips the pair, like requests). */
static int encode_pairs(qv_buf *b, const qv_pair *pairs)
{
    for (const qv_pair *p = pairs; p && p->name; p++) {
        if (!p->value) continue;
        int rc = (b->len ? qv_buf_append(b, "&", 1) : QV_OK);
        if (!rc) rc = form_encode(b, p->name);
        if (!rc) rc = qv_buf_append(b, "=", 1);
        if (!rc) rc = form_encode(b, p->value);
        if (rc) return rc;
    }
    return QV_OK;
}

static int set_url_error(qv_req *r, const char *fmt, const char *detail)
{
    char *m = qv_asprintf(fmt, detail);
    r->url_error_msg = qv_arena_strdup(&r->arena, m ? m : "invalid URL");
    qv_free(m);
    return r->url_error_msg ? QV_OK : QV_ENOMEM;
}

static int too_long(qv_req *r)
{
    char detail[96];
    snprintf(detail, sizeof(detail), "%zu bytes, over the limit of %d bytes", strlen(r->url),
             QV_MAX_URL_LENGTH);
    return set_url_error(r, "URL too long: %s", detail);
}

/* The host of an http(s) URL without parameters to add, found without a
 * full parse (most requests): NULL if the URL needs the full parser. */
static const char *quick_host(qv_req *r, const char *url)
{
    size_t skip = strncasecmp(url, "http://", 7) == 0    ? 7
                  : strncasecmp(url, "https://", 8) == 0 ? 8
                                                         : 0;
    if (!skip || strpbrk(url, " \t\\")) return NULL;
    const char *h = url + skip, *end = h + strcspn(h, "/?#");
    const char *at = memchr(h, '@', (size_t)(end - h));
    if (at) h = at + 1;
    const char *stop = *h == '[' ? memchr(h, ']', (size_t)(end - h)) : NULL;
    if (stop)
        stop++;
    else if (!(stop = memchr(h, ':', (size_t)(end - h))))
        stop = end;
    return stop > h ? qv_arena_memdup(&r->arena, h, (size_t)(stop - h)) : NULL;
}

/* Parses the URL and appends the query parameters. A URL that cannot be used
 * is not a submit error: the future fails with QV_EURL at result. */
static int build_url(qv_req *r, const char *url, const qv_pair *p1, const qv_pair *p2)
{
    if (strlen(url) > QV_MAX_URL_LENGTH) {
        r->url = qv_arena_strdup(&r->arena, url); /* for the message */
        return r->url ? too_long(r) : QV_ENOMEM;
    }
    /* No parameters to add: libcurl parses the URL anyway when the transfer
     * runs (and a malformed one still fails with QV_EURL there). */
    if (!(p1 && p1->name) && !(p2 && p2->name) && (r->host = quick_host(r, url))) {
        r->url = qv_arena_strdup(&r->arena, url);
        return r->url ? QV_OK : QV_ENOMEM;
    }
    r->url = qv_arena_strdup(&r->arena, url);
    if (!r->url) return QV_ENOMEM;
    CURLU *u = curl_url();
    if (!u) return QV_ENOMEM;
    int rc = QV_OK;
    char *scheme = NULL, *full = NULL, *host = NULL;
    qv_buf q = {0};
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc == CURLUE_OUT_OF_MEMORY) {
        rc = QV_ENOMEM;
    } else if (uc) {
        rc = set_url_error(r, "invalid URL: %s", curl_url_strerror(uc));
    } else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) ||
               (strcasecmp(scheme, "http") && strcasecmp(scheme, "https"))) {
        rc =
            set_url_error(r, "unsupported scheme '%s' (only http and https)", scheme ? scheme : "");
    } else if ((rc = encode_pairs(&q, p1)) || (rc = encode_pairs(&q, p2))) {
        /* out of memory */
    } else if (q.len && (uc = curl_url_set(u, CURLUPART_QUERY, q.data, CURLU_APPENDQUERY))) {
        rc = uc == CURLUE_OUT_OF_MEMORY
                 ? QV_ENOMEM
                 : set_url_error(r, "invalid query: %s", curl_url_strerror(uc));
    } else if ((uc = curl_url_get(u, CURLUPART_URL, &full, 0))) {
        rc = uc == CURLUE_OUT_OF_MEMORY
                 ? QV_ENOMEM
                 : set_url_error(r, "invalid URL: %s", curl_url_strerror(uc));
    } else if (!(r->url = qv_arena_strdup(&r->arena, full))) {
        rc = QV_ENOMEM;
    } else if (strlen(r->url) > QV_MAX_URL_LENGTH) {
        rc = too_long(r);
    } else if (curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
               !(r->host = qv_arena_strdup(&r->arena, host))) {
        rc = QV_ENOMEM;
    }
    curl_free(host);
    curl_free(scheme);
    curl_free(full);
    qv_buf_free(&q);
    curl_url_cleanup(u);
    return rc;
}

static int pairs_ok(const qv_pair *pairs)
{
    for (const qv_pair *p = pairs; p && p->name; p++)
        if (!qv_header_name_ok(p->name) || (p->value && !qv_header_value_ok(p->value))) return 0;
    return 1;
}

/* Is `name` set by a later entry of the merged list? (the later one wins) */
static int overridden(const qv_pair *const *list, size_t n, size_t i)
{
    for (size_t j = i + 1; j < n; j++)
        if (strcasecmp(list[i]->name, list[j]->name) == 0) return 1;
    return 0;
}

static int has_header(const qv_pair *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(list[i]->name, name) == 0) return 1;
    return 0;
}

int qv_header_line_add(struct curl_slist **out, const char *name, const char *value)
{
    /* libcurl's conventions: "Name:" removes a header, "Name;" sends it
     * empty. Joined by hand, on the stack when it fits: vsnprintf was half
     * of qv_request's instructions for a request with 7 header lines of
     * its own (~8k of 16k; the drop-in sends its session's headers so). */
    size_t nl = strlen(name), vl = value ? strlen(value) : 0;
    char small[256], *line = nl + vl + 3 <= sizeof(small) ? small : qv_malloc(nl + vl + 3);
    if (!line) return QV_ENOMEM;
    memcpy(line, name, nl);
    char *end = line + nl;
    if (value && *value) {
        memcpy(end, ": ", 2);
        memcpy(end + 2, value, vl);
        end += 2 + vl;
    } else {
        *end++ = value ? ';' : ':';
    }
    *end = '\0';
    struct curl_slist *l = curl_slist_append(*out, line);
    if (line != small) qv_free(line);
    if (!l) return QV_ENOMEM;
    *out = l;
    return QV_OK;
}

/* What libcurl sends for CURLOPT_ACCEPT_ENCODING "" (all its decoders, in
 * its order). As a line of ours, libcurl skips formatting its own for every
 * request (~3% of a small request's CPU); decoding stays on. */
static pthread_once_t encodings_once = PTHREAD_ONCE_INIT;
static char encodings[32];

static void encodings_init(void)
{
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    int z = (v->features & CURL_VERSION_LIBZ) != 0, br = (v->features & CURL_VERSION_BROTLI) != 0,
        zstd = (v->features & CURL_VERSION_ZSTD) != 0;
    snprintf(encodings, sizeof(encodings), "%s%s%s%s%s", z ? "deflate, gzip" : "",
             z && br ? ", " : "", br ? "br" : "", (z || br) && zstd ? ", " : "",
             zstd ? "zstd" : "");
    if (!encodings[0]) snprintf(encodings, sizeof(encodings), "identity");
}

int qv_header_lines(struct curl_slist **out, const qv_pair *session, const qv_pair *request,
                    const char *user_agent, int body, const char *content_type)
{
    size_t n = 0;
    for (const qv_pair *p = session; p && p->name; p++) n++;
    for (const qv_pair *p = request; p && p->name; p++) n++;
    const qv_pair **list = qv_calloc(n, sizeof(*list));
    if (!list) return QV_ENOMEM;
    size_t k = 0;
    for (const qv_pair *p = session; p && p->name; p++) list[k++] = p;
    for (const qv_pair *p = request; p && p->name; p++) list[k++] = p;
    int rc = QV_OK;
    /* libcurl's own line came before the User-Agent: the same order */
    pthread_once(&encodings_once, encodings_init);
    if (!has_header(list, n, "Accept-Encoding"))
        rc = qv_header_line_add(out, "Accept-Encoding", encodings);
    if (!rc && !has_header(list, n, "User-Agent"))
        rc = qv_header_line_add(out, "User-Agent", user_agent);
    /* A raw body gets no Content-Type unless the caller gives one (libcurl
     * would claim it is a form); and no "Expect: 100-continue" round trip
     * before large bodies. */
    if (!rc && body == 1 && !has_header(list, n, "Content-Type"))
        rc = qv_header_line_add(out, "Content-Type", content_type);
    if (!rc && body && !has_header(list, n, "Expect")) rc = qv_header_line_add(out, "Expect", NULL);
    for (size_t i = 0; i < n && !rc; i++)
        if (!overridden(list, n, i)) rc = qv_header_line_add(out, list[i]->name, list[i]->value);
    qv_free(list);
    return rc;
}

/* A request with no headers and no body of its own sends the session's
 * lines, built once; others get their own merged list. */
static int build_headers(qv_req *r, const qv_session *s, const qv_request_opts *o,
                         const char *content_type)
{
    int body = r->has_body || r->io->upload_path || r->io->on_upload ? 1 : r->nparts ? 2 : 0;
    if (!o->headers && !body && !o->range) {
        r->headers = s->default_headers;
        r->headers_borrowed = 1;
        return QV_OK;
    }
    int rc =
        qv_header_lines(&r->headers, s->o.headers, o->headers, s->o.user_agent, body, content_type);
    if (!rc && o->range) rc = qv_header_line_add(&r->headers, "Range", o->range);
    return rc;
}

const qv_req_io qv_io_none;

/* Any large-body option (download forms, progress, upload sources). */
static int io_wanted(const qv_request_opts *o)
{
    return o->output_path || o->output_fd || o->on_data || o->stream > 0 || o->keep_partial > 0 ||
           o->resume > 0 || o->on_progress || o->upload_path || o->on_upload;
}

/* r's large-body record, made in its arena the first time; NULL: no memory. */
static qv_req_io *io_of(qv_req *r)
{
    if (r->io != &qv_io_none) return (qv_req_io *)r->io; /* ours, in the arena */
    qv_req_io *io = qv_arena_alloc(&r->arena, sizeof(*io));
    if (!io) return NULL;
    *io = qv_io_none;
    r->io = io;
    return io;
}

/* The download forms: one at most; a file's path copied. */
static int build_sink(qv_req *r, const qv_request_opts *o)
{
    if (!!o->output_path + !!o->output_fd + !!o->on_data + (o->stream > 0) > 1) return QV_EINVAL;
    if (o->output_fd < 0 || ((o->resume || o->keep_partial) && !o->output_path)) return QV_EINVAL;
    if (o->range && (o->resume || !qv_header_value_ok(o->range))) return QV_EINVAL;
    if (o->output_path && !*o->output_path) return QV_EINVAL;
    if (!io_wanted(o)) return QV_OK;
    qv_req_io *io = io_of(r);
    if (!io) return QV_ENOMEM;
    io->output_path = qv_arena_strdup(&r->arena, o->output_path);
    if (o->output_path && !io->output_path) return QV_ENOMEM;
    io->keep_partial = o->keep_partial > 0 || o->resume > 0;
    io->resume = o->resume > 0;
    io->output_fd = o->output_fd;
    io->stream = o->stream > 0;
    io->on_data = o->on_data;
    io->on_data_arg = o->on_data_arg;
    io->on_progress = o->on_progress;
    io->on_progress_arg = o->on_progress_arg;
    return QV_OK;
}

static int build_parts(qv_req *r, const qv_part *parts)
{
    size_t n = 0;
    for (const qv_part *p = parts; p->name; p++) {
        if (!p->value == !p->file) return QV_EINVAL; /* exactly one of value / file */
        /* Both become part header lines: CR/LF would inject headers. */
        if ((p->filename && strpbrk(p->filename, "\r\n")) ||
            (p->content_type && strpbrk(p->content_type, "\r\n")))
            return QV_EINVAL;
        n++;
    }
    r->parts = qv_arena_alloc(&r->arena, n * sizeof(*r->parts));
    if (!r->parts && n) return QV_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const qv_part *p = &parts[i];
        qv_req_part *d = &r->parts[i];
        memset(d, 0, sizeof(*d));
        d->value_len = p->value ? (p->value_len ? p->value_len : strlen(p->value)) : 0;
        d->name = qv_arena_strdup(&r->arena, p->name);
        d->value = p->value ? qv_arena_memdup(&r->arena, p->value, d->value_len) : NULL;
        d->file = qv_arena_strdup(&r->arena, p->file);
        d->filename = qv_arena_strdup(&r->arena, p->filename);
        d->content_type = qv_arena_strdup(&r->arena, p->content_type);
        if (!d->name || (p->value && !d->value) || (p->file && !d->file) ||
            (p->filename && !d->filename) || (p->content_type && !d->content_type))
            return QV_ENOMEM;
    }
    r->nparts = n;
    return QV_OK;
}

static int build_body(qv_req *r, const qv_request_opts *o, const char **content_type)
{
    int kinds =
        !!o->body + !!o->form + !!o->multipart + !!o->json + !!o->upload_path + !!o->on_upload;
    if (kinds > 1) return QV_EINVAL; /* one body, one encoding */
    *content_type = NULL;
    if (o->upload_path || o->on_upload) {
        if (o->upload_len < 0 || (o->upload_len && !o->on_upload)) return QV_EINVAL;
        qv_req_io *io = io_of(r);
        if (!io) return QV_ENOMEM;
        io->upload_path = qv_arena_strdup(&r->arena, o->upload_path);
        if (o->upload_path && !io->upload_path) return QV_ENOMEM;
        io->on_upload = o->on_upload;
        io->on_upload_arg = o->on_upload_arg;
        io->upload_len = o->upload_len;
    } else if (o->body) {
        r->body_len = o->body_len ? o->body_len : strlen(o->body);
        r->body = qv_arena_memdup(&r->arena, o->body, r->body_len);
        if (!r->body) return QV_ENOMEM;
    } else if (o->form) {
        qv_buf b = {0};
        int rc = encode_pairs(&b, o->form);
        if (!rc) {
            r->body_len = b.len;
            r->body = qv_arena_memdup(&r->arena, b.data ? b.data : "", b.len);
            if (!r->body) rc = QV_ENOMEM;
        }
        qv_buf_free(&b);
        if (rc) return rc;
        *content_type = "application/x-www-form-urlencoded";
    } else if (o->json) {
        long failures = atomic_load(&qv_alloc_failures);
        char *js = json_dumps(o->json, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!js) return atomic_load(&qv_alloc_failures) != failures ? QV_ENOMEM : QV_EJSON;
        r->body_len = strlen(js);
        r->body = qv_arena_memdup(&r->arena, js, r->body_len);
        json_free_t jfree;
        json_get_alloc_funcs(NULL, &jfree);
        jfree(js);
        if (!r->body) return QV_ENOMEM;
        *content_type = "application/json";
    } else if (o->multipart) {
        return build_parts(r, o->multipart);
    } else {
        return QV_OK;
    }
    r->has_body = 1;
    return QV_OK;
}

/* 0 = default, -1 = none; otherwise the value. */
static long pick_timeout(long req, long sess, long dflt)
{
    long v = req ? req : sess ? sess : dflt;
    return v < 0 ? -1 : v;
}

static int pick_flag(int req, int sess)
{
    return req > 0 ? 1 : req < 0 ? 0 : sess != 0;
}

const qv_req_calls qv_calls_none;

/* Any user code the request calls (hooks, on_debug), or the trace. */
static int calls_wanted(const qv_request_opts *o, const qv_session *s)
{
    return o->hook || o->on_request || s->o.on_request || o->on_debug || s->o.on_debug ||
           qv_trace_env();
}

static int build_calls(qv_req *r, const qv_session *s, const qv_request_opts *o)
{
    if (!calls_wanted(o, s)) return QV_OK;
    qv_req_calls *c = qv_arena_alloc(&r->arena, sizeof(*c));
    if (!c) return QV_ENOMEM;
    *c = (qv_req_calls){
        .hook = o->hook,
        .hook_arg = o->hook_arg,
        .on_request = {{s->o.on_request, s->o.on_request_arg}, {o->on_request, o->on_request_arg}},
        .on_debug = o->on_debug ? o->on_debug : s->o.on_debug,
        .on_debug_arg = o->on_debug ? o->on_debug_arg : s->o.on_debug_arg,
        .debug_body = (unsigned char)pick_flag(o->debug_body, s->o.debug_body),
    };
    qv_trace_init(c);
    r->calls = c;
    return QV_OK;
}

static int method_ok(const char *m)
{
    return qv_header_name_ok(m); /* a method is an HTTP token too */
}

int qv_req_build(qv_req *r, qv_session *s, const qv_request_opts *opts)
{
    const qv_request_opts o = *opts;
    int rc;
    qv_req_clear(r);
    if (!o.url || strpbrk(o.url, "\r\n")) return QV_EINVAL;
    if (o.method && !method_ok(o.method)) return QV_EINVAL;
    if (!pairs_ok(o.headers)) return QV_EINVAL;
    if ((o.username && strpbrk(o.username, "\r\n")) || (o.password && strpbrk(o.password, "\r\n")))
        return QV_EINVAL;
    if ((unsigned)o.auth > QV_AUTH_BEARER) return QV_EINVAL;

    const char *content_type = NULL;
    r->method = qv_arena_strdup(&r->arena, o.method ? o.method : "GET");
    if (!r->method) return QV_ENOMEM;
    if ((rc = build_body(r, &o, &content_type))) return rc;
    if ((rc = build_sink(r, &o))) return rc;
    if ((rc = build_headers(r, s, &o, content_type))) return rc;
    if ((rc = build_url(r, o.url, s->o.params, o.params))) return rc;

    /* The request's credentials replace the session's as a whole. */
    int own_auth = o.auth || o.username || o.password;
    r->auth = own_auth ? o.auth : s->o.auth;
    const char *user = own_auth ? o.username : s->o.username;
    const char *pass = own_auth ? o.password : s->o.password;
    if (r->auth == QV_AUTH_NONE && user) r->auth = QV_AUTH_BASIC;
    r->username = qv_arena_strdup(&r->arena, user);
    r->password = qv_arena_strdup(&r->arena, pass);
    if ((user && !r->username) || (pass && !r->password)) return QV_ENOMEM;

    r->timeout_ms = pick_timeout(o.timeout_ms, s->o.timeout_ms, -1);
    r->connect_timeout_ms =
        pick_timeout(o.connect_timeout_ms, s->o.connect_timeout_ms, QV_DEFAULT_CONNECT_TIMEOUT_MS);
    r->read_timeout_ms =
        pick_timeout(o.read_timeout_ms, s->o.read_timeout_ms, QV_DEFAULT_READ_TIMEOUT_MS);
    r->follow = !pick_flag(o.no_redirects, s->o.no_redirects);
    r->max_redirects = o.max_redirects > 0      ? o.max_redirects
                       : s->o.max_redirects > 0 ? s->o.max_redirects
                                                : QV_DEFAULT_MAX_REDIRECTS;
    r->max_response_bytes = o.max_response_bytes ? o.max_response_bytes : s->o.max_response_bytes;
    r->insecure = pick_flag(o.insecure, s->o.insecure);
    r->ca_file = s->o.ca_file;
    if ((rc = qv_net_build(r, &s->o, &o))) return rc;
    if ((rc = build_calls(r, s, &o))) return rc;
    r->retry = &s->retry; /* the session outlives the futures it runs */
    if (!o.retry) return QV_OK;
    /* Its own policy: in the arena, only when it has one. */
    qv_retry_policy *own = qv_arena_alloc(&r->arena, sizeof(*own));
    if (!own) return QV_ENOMEM;
    r->retry = own;
    return qv_retry_resolve(own, o.retry);
}

/* The room a copy of s takes (none for NULL). */
static size_t str_room(const char *s)
{
    return s ? qv_arena_room(strlen(s) + 1) : 0;
}

size_t qv_req_room(const qv_request_opts *o, const qv_session *s)
{
    /* The URL, and the host copied from its authority. */
    const char *authority = o->url ? strstr(o->url, "://") : NULL;
    size_t room = str_room(o->method ? o->method : "GET") + str_room(o->url) +
                  (authority ? qv_arena_room(strcspn(authority + 3, "/?#") + 1) : 0) +
                  str_room(o->username) + str_room(o->password) + str_room(o->output_path) +
                  str_room(o->upload_path);
    if (o->body) room += qv_arena_room((o->body_len ? o->body_len : strlen(o->body)) + 1);
    if (o->retry) room += qv_arena_room(sizeof(qv_retry_policy));
    if (io_wanted(o)) room += qv_arena_room(sizeof(qv_req_io));
    if (calls_wanted(o, s)) room += qv_arena_room(sizeof(qv_req_calls));
    return room;
}

void qv_req_clear(qv_req *r)
{
    qv_arena arena = r->arena;
    memset(r, 0, sizeof(*r));
    r->arena = arena;
    r->retry = &qv_retry_none;
    r->net = &qv_net_none;
    r->io = &qv_io_none;
    r->calls = &qv_calls_none;
}

void qv_req_free(qv_req *r)
{
    if (!r->headers_borrowed) curl_slist_free_all(r->headers);
    r->headers = NULL;
    qv_arena_free(&r->arena);
}
