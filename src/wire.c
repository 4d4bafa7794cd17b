/* The process executor's wire format: requests to a worker and responses
 * back, as one frame each over a socketpair.
 *
 * Frame: magic "QVW" + version (4 bytes), type (u16), flags (u16, 0), payload
 * length (u32), all little-endian; the payload is a run of fields, each a tag
 * (u16), a length (u32) and that many bytes. Integers are 8-byte fields.
 * Unknown tags are skipped, so a field can be added without a new version.
 * The parent treats what a worker sends as untrusted: every length is checked
 * against what is left, and anything malformed fails the future. */
#include "internal.h"

#include <string.h>

enum {
    /* request */
    T_METHOD = 1,
    T_URL,
    T_HOST,
    T_HEADER,
    T_BODY,
    T_PART,
    T_AUTH,
    T_USER,
    T_PASS,
    T_TIMEOUT,
    T_CONNECT_TIMEOUT,
    T_READ_TIMEOUT,
    T_FOLLOW,
    T_MAX_REDIRECTS,
    T_MAX_BYTES,
    T_INSECURE,
    T_CA_FILE,
    T_PROXY,
    T_HOOK,   /* nested: fn, arg (session hooks in order, then the request's) */
    T_COOKIE, /* a jar line (Netscape format), both ways */
    T_ATTEMPT,
    T_RETRY,    /* the retry policy: integers (see put_retry) */
    T_JAR_KEPT, /* no jar lines, both ways: the receiver's jar is still right */
    T_ID,       /* the pool's name for this attempt (a request, a cancel of it) */
    /* nested: fn, arg (a request hook: the session's, then the request's) */
    T_ON_REQUEST,
    T_CLIENT_CERT, /* networks and identity: strings (see net_strs) */
    T_CLIENT_KEY,
    T_KEY_PASSWORD,
    T_CA_PATH,
    T_PINNED_KEY,
    T_NO_PROXY,
    T_PROXY_USER,
    T_PROXY_PASS,
    T_PROXY_CA,
    T_UNIX_SOCKET,
    T_INTERFACE,
    T_TLS_MIN, /* integers */
    T_IP_VERSION,
    T_RESOLVE,    /* nested: name, value */
    T_CONNECT_TO, /* nested: name, value */
    T_CLIENT_CERT_PEM,
    T_CLIENT_KEY_PEM,
    T_TRACE,     /* the trace id (only when traced) */
    T_TRACE_HOW, /* DEBUG_* bits and QV_DEBUG's mode (see put_trace) */
    T_OUTPUT_PATH,
    T_SINK_FLAGS, /* SINK_* bits */
    T_UPLOAD_PATH,
    T_UPLOAD_LEN,
    /* response */
    T_STATUS = 64,
    T_REASON,
    T_RURL,
    T_VERSION,
    T_ELAPSED_US,
    T_RHEADER, /* nested: name, value */
    T_RBODY,
    T_HISTORY, /* nested: status, reason, url, headers */
    T_RESULT,
    T_CONNS,
    T_ERROR,
    T_ERRMSG,
    T_RETRY_US,     /* the worker skipped the hooks: retry after this wait */
    T_ERRSTATUS,    /* the failed transfer's status line (out_status) */
    T_TIMING = 100, /* 6 integers, microseconds: dns, connect, tls, first byte, total, hooks */
    /* debug event */
    T_DEBUG_KIND = 110,
    T_DEBUG_DATA,
    T_BODY_BYTES, /* the body went elsewhere: how many bytes */
    T_CHUNK, /* (retired: bytes go through the ring; kept so the tags after keep their numbers) */
    T_PROGRESS,   /* 4 integers: received, its total, sent, its total (-1: unknown) */
    T_UPLOAD_CAP, /* the most bytes the worker takes in the next upload frame */
    T_UPLOAD_GOT, /* what the parent's on_upload returned (-1: an error or too many) */
    T_UPLOAD_AT,  /* where in the worker's upload area the parent puts them */
    /* nested fields */
    N_NAME = 128,
    N_VALUE,
    N_FILE,
    N_FILENAME,
    N_TYPE,
    N_FN,
    N_ARG,
};

static void put_u16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int qv_wire_frame_begin(qv_buf *b, int type)
{
    unsigned char h[QV_WIRE_HEADER] = {'Q', 'V', 'W', QV_WIRE_VERSION};
    put_u16(h + 4, (unsigned)type);
    b->len = 0;
    return qv_buf_append(b, h, sizeof(h));
}

int qv_wire_frame_end(qv_buf *b)
{
    if (b->len - QV_WIRE_HEADER > QV_WIRE_MAX) return QV_ETOO_LARGE;
    put_u32((unsigned char *)b->data + 8, (uint32_t)(b->len - QV_WIRE_HEADER));
    return QV_OK;
}

int qv_wire_parse_header(const unsigned char *h, int *type, size_t *len)
{
    if (memcmp(h, "QVW", 3) || h[3] != QV_WIRE_VERSION || h[6] || h[7]) return QV_EPROTOCOL;
    *type = h[4] | h[5] << 8;
    *len = get_u32(h + 8);
    return *len > QV_WIRE_MAX ? QV_EPROTOCOL : QV_OK;
}

int qv_wire_put(qv_buf *b, unsigned tag, const void *p, size_t n)
{
    if (n > QV_WIRE_MAX) return QV_ETOO_LARGE;
    unsigned char h[6];
    put_u16(h, tag);
    put_u32(h + 2, (uint32_t)n);
    int rc = qv_buf_append(b, h, sizeof(h));
    return rc ? rc : qv_buf_append(b, p, n);
}

static int put_str(qv_buf *b, unsigned tag, const char *s)
{
    return s ? qv_wire_put(b, tag, s, strlen(s)) : QV_OK;
}

static int put_int(qv_buf *b, unsigned tag, int64_t v)
{
    unsigned char p[8];
    put_u64(p, (uint64_t)v);
    return qv_wire_put(b, tag, p, sizeof(p));
}

/* A nested field: its sub-fields are built in `tmp`, then put as one value. */
static int put_nested(qv_buf *b, unsigned tag, qv_buf *tmp)
{
    return qv_wire_put(b, tag, tmp->data, tmp->len);
}

typedef struct reader {
    const unsigned char *p;
    size_t left;
} reader;

/* 1 with the next field, 0 at the end, -1 if malformed. */
static int next(reader *r, unsigned *tag, const unsigned char **val, size_t *len)
{
    if (r->left == 0) return 0;
    if (r->left < 6) return -1;
    *tag = r->p[0] | r->p[1] << 8;
    *len = get_u32(r->p + 2);
    if (*len > r->left - 6) return -1;
    *val = r->p + 6;
    r->p += 6 + *len;
    r->left -= 6 + *len;
    return 1;
}

static int get_int(const unsigned char *v, size_t len, int64_t *out)
{
    if (len != 8) return -1;
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) x = x << 8 | v[i];
    *out = (int64_t)x;
    return 0;
}

/* ------------------------------------------------------------ request */

static int put_part(qv_buf *b, const qv_req_part *p)
{
    qv_buf t = {0};
    int rc = put_str(&t, N_NAME, p->name);
    if (!rc && p->value) rc = qv_wire_put(&t, N_VALUE, p->value, p->value_len);
    if (!rc) rc = put_str(&t, N_FILE, p->file);
    if (!rc) rc = put_str(&t, N_FILENAME, p->filename);
    if (!rc) rc = put_str(&t, N_TYPE, p->content_type);
    if (!rc) rc = put_nested(b, T_PART, &t);
    qv_buf_free(&t);
    return rc;
}

/* A function pointer and its argument: valid in a worker, forked from
 * this process. */
static int put_fn(qv_buf *b, unsigned tag, uintptr_t fn, void *arg)
{
    qv_buf t = {0};
    int rc = put_int(&t, N_FN, (int64_t)fn);
    if (!rc) rc = put_int(&t, N_ARG, (int64_t)(uintptr_t)arg);
    if (!rc) rc = put_nested(b, tag, &t);
    qv_buf_free(&t);
    return rc;
}

/* max_retries, on, backoff, max backoff, all methods, no Retry-After, then
 * the statuses: 8 bytes each. */
enum { RETRY_FIXED = 6 };

static int put_retry(qv_buf *b, const qv_retry_policy *p)
{
    unsigned char v[8 * (RETRY_FIXED + QV_RETRY_STATUSES_MAX)];
    int64_t fixed[RETRY_FIXED] = {p->max_retries,    p->on,          p->backoff_ms,
                                  p->max_backoff_ms, p->all_methods, p->no_retry_after};
    size_t n = 0;
    for (int i = 0; i < RETRY_FIXED; i++) put_u64(v + 8 * n++, (uint64_t)fixed[i]);
    for (int i = 0; i < p->nstatuses; i++) put_u64(v + 8 * n++, (uint64_t)p->statuses[i]);
    return qv_wire_put(b, T_RETRY, v, 8 * n);
}

static int get_retry(const unsigned char *v, size_t len, qv_retry_policy *p)
{
    if (len % 8 || len < 8 * RETRY_FIXED || len > 8 * (RETRY_FIXED + QV_RETRY_STATUSES_MAX))
        return QV_EPROTOCOL;
    int64_t x[RETRY_FIXED + QV_RETRY_STATUSES_MAX];
    size_t n = len / 8;
    for (size_t i = 0; i < n; i++) {
        get_int(v + 8 * i, 8, &x[i]);
        if (x[i] < 0 || x[i] > INT32_MAX) return QV_EPROTOCOL;
    }
    p->max_retries = (int)x[0];
    p->on = (unsigned)x[1];
    p->backoff_ms = (long)x[2];
    p->max_backoff_ms = (long)x[3];
    p->all_methods = (int)x[4];
    p->no_retry_after = (int)x[5];
    p->nstatuses = (int)(n - RETRY_FIXED);
    for (int i = 0; i < p->nstatuses; i++) p->statuses[i] = (int)x[RETRY_FIXED + i];
    return QV_OK;
}

static int put_jar(qv_buf *b, const struct curl_slist *jar, int kept)
{
    if (kept) return put_int(b, T_JAR_KEPT, kept);
    int rc = QV_OK;
    for (const struct curl_slist *l = jar; l && !rc; l = l->next)
        rc = put_str(b, T_COOKIE, l->data);
    return rc;
}

/* The network strings of a request, by tag: what encode sends and decode
 * fills. */
static const struct {
    unsigned tag;
    size_t off;
} net_strs[] = {
    {T_CLIENT_CERT, offsetof(qv_req_net, client_cert)},
    {T_CLIENT_KEY, offsetof(qv_req_net, client_key)},
    {T_KEY_PASSWORD, offsetof(qv_req_net, key_password)},
    {T_CA_PATH, offsetof(qv_req_net, ca_path)},
    {T_PINNED_KEY, offsetof(qv_req_net, pinned_public_key)},
    {T_NO_PROXY, offsetof(qv_req_net, no_proxy)},
    {T_PROXY_USER, offsetof(qv_req_net, proxy_username)},
    {T_PROXY_PASS, offsetof(qv_req_net, proxy_password)},
    {T_PROXY_CA, offsetof(qv_req_net, proxy_ca_file)},
    {T_UNIX_SOCKET, offsetof(qv_req_net, unix_socket)},
    {T_INTERFACE, offsetof(qv_req_net, interface)},
    {T_CLIENT_CERT_PEM, offsetof(qv_req_net, client_cert_pem)},
    {T_CLIENT_KEY_PEM, offsetof(qv_req_net, client_key_pem)},
};
#define NET_STR(r, i) (*(const char **)((char *)(r) + net_strs[i].off))

/* Pairs as nested name/value fields, one per pair. */
static int put_pairs(qv_buf *b, unsigned tag, const qv_pair *p)
{
    qv_buf t = {0};
    int rc = QV_OK;
    for (; p && p->name && !rc; p++) {
        t.len = 0;
        rc = put_str(&t, N_NAME, p->name);
        if (!rc) rc = put_str(&t, N_VALUE, p->value);
        if (!rc) rc = put_nested(b, tag, &t);
    }
    qv_buf_free(&t);
    return rc;
}

static int put_net(qv_buf *b, const qv_req_net *r)
{
    int rc = QV_OK;
    for (size_t i = 0; i < sizeof(net_strs) / sizeof(net_strs[0]) && !rc; i++)
        rc = put_str(b, net_strs[i].tag, NET_STR(r, i));
    if (!rc && r->tls_min_version) rc = put_int(b, T_TLS_MIN, r->tls_min_version);
    if (!rc && r->ip_version) rc = put_int(b, T_IP_VERSION, r->ip_version);
    if (!rc) rc = put_pairs(b, T_RESOLVE, r->resolve);
    if (!rc) rc = put_pairs(b, T_CONNECT_TO, r->connect_to);
    return rc;
}

/* How a request is traced: whether the parent has an on_debug (the worker
 * sends it the events), with body bytes, and the parent's QV_DEBUG mode
 * (the worker prints and redacts as the parent would). */
enum { DEBUG_CALLBACK = 1, DEBUG_BODY = 2, DEBUG_ENV_SHIFT = 2 };

static int put_trace(qv_buf *b, const qv_req_calls *c)
{
    if (!c->trace_id) return QV_OK;
    int64_t how = (c->on_debug ? DEBUG_CALLBACK : 0) | (c->debug_body ? DEBUG_BODY : 0) |
                  (int64_t)c->trace_env << DEBUG_ENV_SHIFT;
    int rc = put_int(b, T_TRACE, (int64_t)c->trace_id);
    return rc ? rc : put_int(b, T_TRACE_HOW, how);
}

static int get_trace_how(const unsigned char *v, size_t n, qv_req_calls *c)
{
    int64_t how;
    if (get_int(v, n, &how) || how < 0 || (how >> DEBUG_ENV_SHIFT) > QV_TRACE_UNSAFE)
        return QV_EPROTOCOL;
    c->on_debug = how & DEBUG_CALLBACK ? qv_worker_debug : NULL;
    c->debug_body = (how & DEBUG_BODY) != 0;
    c->trace_env = (unsigned char)(how >> DEBUG_ENV_SHIFT);
    return QV_OK;
}

int qv_wire_encode_request(qv_buf *b, const qv_future *f, int attempt, const struct curl_slist *jar,
                           int jar_kept)
{
    const qv_req *r = &f->req;
    int rc = qv_wire_frame_begin(b, QV_WIRE_REQUEST);
    if (!rc) rc = put_str(b, T_METHOD, r->method);
    if (!rc) rc = put_str(b, T_URL, r->url);
    if (!rc) rc = put_str(b, T_HOST, r->host);
    for (const struct curl_slist *l = r->headers; l && !rc; l = l->next)
        rc = put_str(b, T_HEADER, l->data);
    if (!rc && r->has_body) rc = qv_wire_put(b, T_BODY, r->body, r->body_len);
    for (size_t i = 0; i < r->nparts && !rc; i++) rc = put_part(b, &r->parts[i]);
    if (!rc) rc = put_int(b, T_AUTH, r->auth);
    if (!rc) rc = put_str(b, T_USER, r->username);
    if (!rc) rc = put_str(b, T_PASS, r->password);
    if (!rc) rc = put_int(b, T_TIMEOUT, r->timeout_ms);
    if (!rc) rc = put_int(b, T_CONNECT_TIMEOUT, r->connect_timeout_ms);
    if (!rc) rc = put_int(b, T_READ_TIMEOUT, r->read_timeout_ms);
    if (!rc) rc = put_int(b, T_FOLLOW, r->follow);
    if (!rc) rc = put_int(b, T_MAX_REDIRECTS, r->max_redirects);
    if (!rc) rc = put_int(b, T_MAX_BYTES, (int64_t)r->max_response_bytes);
    if (!rc) rc = put_int(b, T_INSECURE, r->insecure);
    if (!rc) rc = put_str(b, T_CA_FILE, r->ca_file);
    if (!rc) rc = put_str(b, T_PROXY, r->proxy);
    if (!rc) rc = put_net(b, r->net);
    if (!rc && r->retry->max_retries) rc = put_int(b, T_ATTEMPT, attempt);
    if (!rc && r->retry->max_retries) rc = put_retry(b, r->retry);
    for (const qv_hook *h = f->session->o.hooks; h && h->fn && !rc; h++)
        rc = put_fn(b, T_HOOK, (uintptr_t)h->fn, h->arg);
    const qv_req_calls *c = r->calls;
    if (!rc && c->hook) rc = put_fn(b, T_HOOK, (uintptr_t)c->hook, c->hook_arg);
    for (size_t i = 0; i < sizeof(c->on_request) / sizeof(c->on_request[0]) && !rc; i++)
        if (c->on_request[i].fn)
            rc = put_fn(b, T_ON_REQUEST, (uintptr_t)c->on_request[i].fn, c->on_request[i].arg);
    if (!rc) rc = put_jar(b, jar, jar_kept);
    if (!rc && r->wire_id) rc = put_int(b, T_ID, (int64_t)r->wire_id);
    if (!rc) rc = put_trace(b, c);
    if (!rc) rc = put_str(b, T_OUTPUT_PATH, r->io->output_path);
    if (!rc) rc = put_str(b, T_UPLOAD_PATH, r->io->upload_path);
    if (!rc && r->io->upload_len) rc = put_int(b, T_UPLOAD_LEN, r->io->upload_len);
    int flags = (r->io->keep_partial ? QV_SINK_KEEP : 0) | (r->io->resume ? QV_SINK_RESUME : 0) |
                (r->io->on_data ? QV_SINK_DATA : 0) | (r->io->output_fd > 0 ? QV_SINK_FD : 0) |
                (r->io->on_progress ? QV_SINK_PROGRESS : 0) |
                (r->io->stream ? QV_SINK_STREAM | QV_SINK_DATA : 0) |
                (r->io->on_upload ? QV_SINK_UPLOAD : 0);
    if (!rc && flags) rc = put_int(b, T_SINK_FLAGS, flags);
    return rc ? rc : qv_wire_frame_end(b);
}

/* A progress frame (as a data frame): a single field. */
static int put_single(qv_buf *b, int type, unsigned tag, const void *p, size_t n)
{
    int rc = qv_wire_frame_begin(b, type);
    if (!rc) rc = qv_wire_put(b, tag, p, n);
    return rc ? rc : qv_wire_frame_end(b);
}

static int get_single(const unsigned char *p, size_t len, unsigned want, const unsigned char **v,
                      size_t *n)
{
    reader rd = {p, len};
    unsigned tag;
    return next(&rd, &tag, v, n) == 1 && tag == want ? QV_OK : QV_EPROTOCOL;
}

int qv_wire_encode_bare(qv_buf *b, int type)
{
    int rc = qv_wire_frame_begin(b, type);
    return rc ? rc : qv_wire_frame_end(b);
}

int qv_wire_encode_progress(qv_buf *b, const long long v[4])
{
    unsigned char x[32];
    for (int i = 0; i < 4; i++) put_u64(x + 8 * i, (uint64_t)v[i]);
    return put_single(b, QV_WIRE_PROGRESS, T_PROGRESS, x, sizeof(x));
}

int qv_wire_decode_progress(const unsigned char *p, size_t len, long long v[4])
{
    const unsigned char *x;
    size_t n;
    if (get_single(p, len, T_PROGRESS, &x, &n) || n != 32) return QV_EPROTOCOL;
    for (int i = 0; i < 4; i++) {
        int64_t k;
        get_int(x + 8 * i, 8, &k);
        v[i] = k;
    }
    return QV_OK;
}

int qv_wire_encode_upload_want(qv_buf *b, uint64_t id, size_t cap, size_t at)
{
    int rc = qv_wire_frame_begin(b, QV_WIRE_UPLOAD_WANT);
    if (!rc) rc = put_int(b, T_ID, (int64_t)id);
    if (!rc) rc = put_int(b, T_UPLOAD_CAP, (int64_t)cap);
    if (!rc) rc = put_int(b, T_UPLOAD_AT, (int64_t)at);
    return rc ? rc : qv_wire_frame_end(b);
}

int qv_wire_decode_upload_want(const unsigned char *p, size_t len, uint64_t *id, size_t *cap,
                               size_t *at)
{
    reader rd = {p, len};
    unsigned tag;
    const unsigned char *v;
    size_t n;
    int64_t i, got_id = 0, got_cap = 0, got_at = -1;
    while (next(&rd, &tag, &v, &n) == 1) {
        if (get_int(v, n, &i)) return QV_EPROTOCOL;
        if (tag == T_ID) got_id = i;
        if (tag == T_UPLOAD_CAP) got_cap = i;
        if (tag == T_UPLOAD_AT) got_at = i;
    }
    /* Within the upload area: the parent writes there what it is told. */
    if (got_id <= 0 || got_cap <= 0 || got_at < 0 || (uint64_t)got_at >= QV_UP_RING ||
        (uint64_t)got_cap > QV_UP_RING - (uint64_t)got_at)
        return QV_EPROTOCOL;
    *id = (uint64_t)got_id;
    *cap = (size_t)got_cap;
    *at = (size_t)got_at;
    return QV_OK;
}

int qv_wire_encode_upload(qv_buf *b, uint64_t id, long got)
{
    int rc = qv_wire_frame_begin(b, QV_WIRE_UPLOAD);
    if (!rc) rc = put_int(b, T_ID, (int64_t)id);
    if (!rc) rc = put_int(b, T_UPLOAD_GOT, got);
    return rc ? rc : qv_wire_frame_end(b);
}

int qv_wire_decode_upload(const unsigned char *p, size_t len, uint64_t *id, long *got)
{
    reader rd = {p, len};
    unsigned tag;
    const unsigned char *v;
    size_t n;
    int64_t i, got_id = 0, g = -2;
    while (next(&rd, &tag, &v, &n) == 1) {
        if (get_int(v, n, &i)) return QV_EPROTOCOL;
        if (tag == T_ID) got_id = i;
        if (tag == T_UPLOAD_GOT) g = i;
    }
    if (got_id <= 0 || g < -1) return QV_EPROTOCOL;
    *id = (uint64_t)got_id;
    *got = (long)g;
    return QV_OK;
}

int qv_wire_encode_cancel(qv_buf *b, uint64_t id)
{
    int rc = qv_wire_frame_begin(b, QV_WIRE_CANCEL);
    if (!rc) rc = put_int(b, T_ID, (int64_t)id);
    return rc ? rc : qv_wire_frame_end(b);
}

int qv_wire_decode_cancel(const unsigned char *p, size_t len, uint64_t *id)
{
    reader rd = {p, len};
    unsigned tag;
    const unsigned char *v;
    size_t n;
    int64_t i;
    *id = 0;
    while (next(&rd, &tag, &v, &n) == 1)
        if (tag == T_ID && !get_int(v, n, &i) && i > 0) *id = (uint64_t)i;
    return *id ? QV_OK : QV_EPROTOCOL;
}

int qv_wire_encode_debug(qv_buf *b, qv_debug_kind kind, const char *data, size_t len)
{
    int rc = qv_wire_frame_begin(b, QV_WIRE_DEBUG);
    if (!rc) rc = put_int(b, T_DEBUG_KIND, kind);
    if (!rc) rc = qv_wire_put(b, T_DEBUG_DATA, data, len);
    return rc ? rc : qv_wire_frame_end(b);
}

int qv_wire_decode_debug(const unsigned char *p, size_t len, qv_debug_kind *kind, const char **data,
                         size_t *n)
{
    reader rd = {p, len};
    unsigned tag;
    const unsigned char *v;
    size_t vn;
    int64_t k = -1;
    int more;
    *data = NULL;
    while ((more = next(&rd, &tag, &v, &vn)) == 1) {
        if (tag == T_DEBUG_KIND && get_int(v, vn, &k)) return QV_EPROTOCOL;
        if (tag == T_DEBUG_DATA) *data = (const char *)v, *n = vn;
    }
    if (more < 0 || !*data || k < QV_DEBUG_INFO || k > QV_DEBUG_DATA_IN) return QV_EPROTOCOL;
    *kind = (qv_debug_kind)k;
    return QV_OK;
}

void qv_wire_frame_retype(qv_buf *b, int type)
{
    put_u16((unsigned char *)b->data + 4, (unsigned)type);
}

static char *dup_field(qv_arena *a, const unsigned char *v, size_t len)
{
    return qv_arena_memdup(a, v, len);
}

static int decode_part(qv_req *r, const unsigned char *v, size_t len, qv_req_part *p)
{
    reader rd = {v, len};
    unsigned tag;
    const unsigned char *x;
    size_t n;
    int more;
    memset(p, 0, sizeof(*p));
    while ((more = next(&rd, &tag, &x, &n)) == 1) {
        char *s = dup_field(&r->arena, x, n);
        if (!s) return QV_ENOMEM;
        switch (tag) {
        case N_NAME:
            p->name = s;
            break;
        case N_VALUE:
            p->value = s;
            p->value_len = n;
            break;
        case N_FILE:
            p->file = s;
            break;
        case N_FILENAME:
            p->filename = s;
            break;
        case N_TYPE:
            p->content_type = s;
            break;
        default:
            break;
        }
    }
    return more < 0 || !p->name ? QV_EPROTOCOL : QV_OK;
}

static int decode_fn(const unsigned char *v, size_t len, uintptr_t *fnp, void **argp)
{
    reader rd = {v, len};
    unsigned tag;
    const unsigned char *x;
    size_t n;
    int64_t fn = 0, arg = 0;
    int more;
    while ((more = next(&rd, &tag, &x, &n)) == 1) {
        if (tag == N_FN && get_int(x, n, &fn)) return QV_EPROTOCOL;
        if (tag == N_ARG && get_int(x, n, &arg)) return QV_EPROTOCOL;
    }
    if (more < 0 || !fn) return QV_EPROTOCOL;
    *fnp = (uintptr_t)fn;
    *argp = (void *)(uintptr_t)arg;
    return QV_OK;
}

static int decode_hook(const unsigned char *v, size_t len, qv_hook *h)
{
    uintptr_t fn;
    int rc = decode_fn(v, len, &fn, &h->arg);
    if (!rc) h->fn = (qv_hook_fn)fn;
    return rc;
}

/* The next of c's request hooks. */
static int decode_on_request(const unsigned char *v, size_t len, qv_req_calls *c, size_t *n)
{
    if (*n >= sizeof(c->on_request) / sizeof(c->on_request[0])) return QV_EPROTOCOL;
    qv_req_hook *h = &c->on_request[(*n)++];
    uintptr_t fn;
    int rc = decode_fn(v, len, &fn, &h->arg);
    if (!rc) h->fn = (qv_request_hook_fn)fn;
    return rc;
}

/* Counts fields with `tag`, to size arrays before filling them. */
static size_t count_tag(const unsigned char *p, size_t len, unsigned want)
{
    reader rd = {p, len};
    unsigned tag;
    const unsigned char *x;
    size_t n, count = 0;
    while (next(&rd, &tag, &x, &n) == 1) count += tag == want;
    return count;
}

/* An array for the pairs with `tag` (ending with {0}), NULL if none; *rc
 * QV_ENOMEM if it could not be made. */
static qv_pair *alloc_pairs(qv_req *r, const unsigned char *p, size_t len, unsigned tag, int *rc)
{
    size_t n = count_tag(p, len, tag);
    qv_pair *a = n ? qv_arena_alloc(&r->arena, (n + 1) * sizeof(*a)) : NULL;
    if (n && !a) *rc = QV_ENOMEM;
    if (a) memset(a, 0, (n + 1) * sizeof(*a));
    return a;
}

/* One pair into the first free entry of a (sized by alloc_pairs). */
static int decode_pair(qv_req *r, const unsigned char *v, size_t len, qv_pair *a)
{
    reader rd = {v, len};
    unsigned tag;
    const unsigned char *x;
    size_t n;
    int more;
    if (!a) return QV_EPROTOCOL;
    while (a->name) a++;
    const char *name = NULL, *value = NULL;
    while ((more = next(&rd, &tag, &x, &n)) == 1) {
        const char **to = tag == N_NAME ? &name : tag == N_VALUE ? &value : NULL;
        if (to && !(*to = dup_field(&r->arena, x, n))) return QV_ENOMEM;
    }
    if (more < 0 || !name || !value) return QV_EPROTOCOL;
    a->value = value;
    a->name = name;
    return QV_OK;
}

static const char **net_str_field(qv_req_net *r, unsigned tag)
{
    for (size_t i = 0; i < sizeof(net_strs) / sizeof(net_strs[0]); i++)
        if (net_strs[i].tag == tag) return &NET_STR(r, i);
    return NULL;
}

int qv_wire_decode_request(const unsigned char *p, size_t len, qv_req *r, int *attempt,
                           qv_hook **hooks, struct curl_slist **jar, int *jar_kept, int *sink_flags)
{
    *attempt = 0;
    *sink_flags = 0;
    *jar_kept = 0;
    qv_req_clear(r);
    *hooks = NULL;
    *jar = NULL;
    size_t nparts = count_tag(p, len, T_PART), nhooks = count_tag(p, len, T_HOOK);
    r->parts = qv_arena_alloc(&r->arena, (nparts + 1) * sizeof(*r->parts));
    qv_hook *h = qv_arena_alloc(&r->arena, (nhooks + 1) * sizeof(*h));
    if (!r->parts || !h) return QV_ENOMEM;
    memset(h, 0, (nhooks + 1) * sizeof(*h));
    /* (A worker's own: it need not be the smallest.) */
    qv_req_net *net = qv_arena_alloc(&r->arena, sizeof(*net));
    if (!net) return QV_ENOMEM;
    *net = qv_net_none;
    r->net = net;
    qv_req_io *io = qv_arena_alloc(&r->arena, sizeof(*io));
    if (!io) return QV_ENOMEM;
    *io = qv_io_none;
    r->io = io;
    qv_req_calls *calls = qv_arena_alloc(&r->arena, sizeof(*calls));
    if (!calls) return QV_ENOMEM;
    *calls = qv_calls_none;
    r->calls = calls;
    int rc = QV_OK;
    qv_pair *resolve = alloc_pairs(r, p, len, T_RESOLVE, &rc);
    qv_pair *connect_to = alloc_pairs(r, p, len, T_CONNECT_TO, &rc);
    net->resolve = resolve;
    net->connect_to = connect_to;
    size_t nh = 0, nreq = 0;
    reader rd = {p, len};
    unsigned tag;
    const unsigned char *v;
    size_t n;
    int more = 0;
    while (!rc && (more = next(&rd, &tag, &v, &n)) == 1) {
        int64_t i = 0;
        const char **str = net_str_field(net, tag);
        long *num = NULL;
        switch (tag) {
        case T_METHOD:
            str = &r->method;
            break;
        case T_URL:
            str = &r->url;
            break;
        case T_HOST:
            str = &r->host;
            break;
        case T_USER:
            str = &r->username;
            break;
        case T_PASS:
            str = &r->password;
            break;
        case T_CA_FILE:
            str = &r->ca_file;
            break;
        case T_PROXY:
            str = &r->proxy;
            break;
        case T_OUTPUT_PATH:
            str = &io->output_path;
            break;
        case T_UPLOAD_PATH:
            str = &io->upload_path;
            break;
        case T_SINK_FLAGS:
            if (get_int(v, n, &i) || i < 0) {
                rc = QV_EPROTOCOL;
                break;
            }
            io->keep_partial = (i & QV_SINK_KEEP) != 0;
            io->resume = (i & QV_SINK_RESUME) != 0;
            io->stream = (i & QV_SINK_STREAM) != 0;
            *sink_flags = (int)i;
            break;
        case T_TIMEOUT:
            num = &r->timeout_ms;
            break;
        case T_CONNECT_TIMEOUT:
            num = &r->connect_timeout_ms;
            break;
        case T_READ_TIMEOUT:
            num = &r->read_timeout_ms;
            break;
        case T_HEADER: {
            char *line = dup_field(&r->arena, v, n);
            struct curl_slist *l = line ? curl_slist_append(r->headers, line) : NULL;
            if (l)
                r->headers = l;
            else
                rc = QV_ENOMEM;
            break;
        }
        case T_COOKIE: {
            char *line = dup_field(&r->arena, v, n);
            struct curl_slist *l = line ? curl_slist_append(*jar, line) : NULL;
            if (l)
                *jar = l;
            else
                rc = QV_ENOMEM;
            break;
        }
        case T_BODY:
            r->body = dup_field(&r->arena, v, n);
            r->body_len = n;
            r->has_body = 1;
            if (!r->body) rc = QV_ENOMEM;
            break;
        case T_PART:
            rc = decode_part(r, v, n, &r->parts[r->nparts++]);
            break;
        case T_HOOK:
            rc = nh < nhooks ? decode_hook(v, n, &h[nh++]) : QV_EPROTOCOL;
            break;
        case T_ON_REQUEST:
            rc = decode_on_request(v, n, calls, &nreq);
            break;
        case T_TRACE_HOW:
            rc = get_trace_how(v, n, calls);
            break;
        case T_RETRY: {
            qv_retry_policy *policy = qv_arena_alloc(&r->arena, sizeof(*policy));
            rc = policy ? get_retry(v, n, policy) : QV_ENOMEM;
            if (!rc) r->retry = policy;
            break;
        }
        case T_RESOLVE:
            rc = decode_pair(r, v, n, resolve);
            break;
        case T_CONNECT_TO:
            rc = decode_pair(r, v, n, connect_to);
            break;
        case T_TLS_MIN:
        case T_IP_VERSION:
            if (get_int(v, n, &i) || i < 0 || i > 99)
                rc = QV_EPROTOCOL;
            else
                *(tag == T_TLS_MIN ? &net->tls_min_version : &net->ip_version) = (int)i;
            break;
        case T_ATTEMPT:
            if (get_int(v, n, &i) || i < 0 || i > INT32_MAX)
                rc = QV_EPROTOCOL;
            else
                *attempt = (int)i;
            break;
        case T_JAR_KEPT:
            *jar_kept = 1;
            break;
        case T_ID:
        case T_TRACE:
            if (get_int(v, n, &i) || i <= 0)
                rc = QV_EPROTOCOL;
            else
                *(tag == T_ID ? &r->wire_id : &calls->trace_id) = (uint64_t)i;
            break;
        case T_UPLOAD_LEN:
            if (get_int(v, n, &i) || i <= 0)
                rc = QV_EPROTOCOL;
            else
                io->upload_len = i;
            break;
        case T_AUTH:
        case T_FOLLOW:
        case T_MAX_REDIRECTS:
        case T_MAX_BYTES:
        case T_INSECURE:
            if (get_int(v, n, &i) || (tag == T_AUTH && (i < 0 || i > QV_AUTH_BEARER)))
                rc = QV_EPROTOCOL;
            else if (tag == T_AUTH)
                r->auth = (unsigned char)i;
            else if (tag == T_FOLLOW)
                r->follow = i != 0;
            else if (tag == T_MAX_REDIRECTS)
                r->max_redirects = (int)i;
            else if (tag == T_MAX_BYTES)
                r->max_response_bytes = (size_t)i;
            else
                r->insecure = i != 0;
            break;
        default:
            break;
        }
        if (str && !(*str = dup_field(&r->arena, v, n))) rc = QV_ENOMEM;
        if (num && get_int(v, n, &i))
            rc = QV_EPROTOCOL;
        else if (num)
            *num = (long)i;
    }
    /* Kept and sent both: which jar is meant? */
    if (!rc && (more < 0 || !r->method || !r->url || (*jar_kept && *jar))) rc = QV_EPROTOCOL;
    *hooks = h;
    return rc;
}

/* ----------------------------------------------------------- response */

static int put_headers(qv_buf *b, const qv_headers *hs)
{
    qv_buf t = {0};
    int rc = QV_OK;
    for (size_t i = 0; i < hs->len && !rc; i++) {
        t.len = 0;
        rc = put_str(&t, N_NAME, hs->items[i].name);
        if (!rc) rc = put_str(&t, N_VALUE, hs->items[i].value);
        if (!rc) rc = put_nested(b, T_RHEADER, &t);
    }
    qv_buf_free(&t);
    return rc;
}

static int put_timing(qv_buf *b, const qv_timing *t)
{
    const double ms[6] = {t->dns_ms,        t->connect_ms, t->tls_ms,
                          t->first_byte_ms, t->total_ms,   t->hooks_ms};
    unsigned char v[48];
    for (int i = 0; i < 6; i++) {
        uint64_t us = ms[i] > 0 && ms[i] < 1e12 ? (uint64_t)(ms[i] * 1000.0) : 0;
        for (int k = 0; k < 8; k++) v[8 * i + k] = (unsigned char)(us >> (8 * k));
    }
    return qv_wire_put(b, T_TIMING, v, sizeof(v));
}

static int get_timing(const unsigned char *v, size_t n, qv_timing *t)
{
    if (n != 48) return QV_EPROTOCOL;
    double *ms[6] = {&t->dns_ms,        &t->connect_ms, &t->tls_ms,
                     &t->first_byte_ms, &t->total_ms,   &t->hooks_ms};
    for (int i = 0; i < 6; i++) {
        int64_t us;
        get_int(v + 8 * i, 8, &us);
        *ms[i] = us >= 0 ? (double)us / 1000.0 : 0;
    }
    return QV_OK;
}

static int put_hop(qv_buf *b, const qv_response *r)
{
    int rc = put_int(b, T_STATUS, r->status);
    if (!rc) rc = put_str(b, T_REASON, r->reason);
    if (!rc) rc = put_str(b, T_RURL, r->url);
    return rc ? rc : put_headers(b, &r->headers);
}

int qv_wire_encode_response(qv_buf *b, const qv_future *f, double retry_ms,
                            const struct curl_slist *jar, int jar_kept)
{
    const qv_response *r = f->out_resp;
    int rc = qv_wire_frame_begin(b, QV_WIRE_RESPONSE);
    if (!rc && r) {
        rc = put_hop(b, r);
        if (!rc) rc = put_int(b, T_VERSION, r->http_version);
        if (!rc) rc = put_int(b, T_ELAPSED_US, (int64_t)(r->elapsed_ms * 1000.0));
        if (!rc) rc = qv_wire_put(b, T_RBODY, r->body.data, r->body.len);
        if (!rc && r->body_bytes >= 0) rc = put_int(b, T_BODY_BYTES, r->body_bytes);
        if (!rc) rc = put_timing(b, &r->timing);
        if (!rc && r->result_bytes) rc = qv_wire_put(b, T_RESULT, r->result_bytes, r->result_len);
        qv_buf t = {0};
        for (size_t i = 0; i < r->nhistory && !rc; i++) {
            t.len = 0;
            rc = put_hop(&t, r->history[i]);
            if (!rc) rc = put_nested(b, T_HISTORY, &t);
        }
        qv_buf_free(&t);
    } else if (!rc) {
        rc = put_int(b, T_ERROR, f->out_err);
        if (!rc) rc = put_str(b, T_ERRMSG, f->out_msg);
        if (!rc && f->out_status) rc = put_int(b, T_ERRSTATUS, f->out_status);
    }
    if (!rc) rc = put_int(b, T_CONNS, f->out_conns);
    if (!rc && retry_ms >= 0) rc = put_int(b, T_RETRY_US, (int64_t)(retry_ms * 1000.0 + 0.5));
    if (!rc) rc = put_jar(b, jar, jar_kept);
    return rc ? rc : qv_wire_frame_end(b);
}

static int decode_header(qv_headers *h, const unsigned char *v, size_t len)
{
    reader rd = {v, len};
    unsigned tag;
    const unsigned char *x, *name = NULL, *value = NULL;
    size_t n, nlen = 0, vlen = 0;
    int more;
    while ((more = next(&rd, &tag, &x, &n)) == 1) {
        if (tag == N_NAME) name = x, nlen = n;
        if (tag == N_VALUE) value = x, vlen = n;
    }
    if (more < 0 || !name || !value) return QV_EPROTOCOL;
    return qv_headers_add(h, (const char *)name, nlen, (const char *)value, vlen);
}

/* Fills the status line, URL or a header of one hop; ignores other tags. */
static int decode_hop_field(qv_response *r, unsigned tag, const unsigned char *v, size_t n)
{
    int64_t i;
    switch (tag) {
    case T_STATUS:
        if (get_int(v, n, &i) || i < 0 || i > 999) return QV_EPROTOCOL;
        r->status = (int)i;
        return QV_OK;
    case T_REASON:
        return (r->reason = qv_response_strndup(r, (const char *)v, n)) ? QV_OK : QV_ENOMEM;
    case T_RURL:
        return (r->url = qv_response_strndup(r, (const char *)v, n)) ? QV_OK : QV_ENOMEM;
    case T_RHEADER:
        return decode_header(&r->headers, v, n);
    default:
        return QV_OK;
    }
}

static int decode_history(qv_response *r, const unsigned char *v, size_t len)
{
    /* The grown array is the response's at once, so a failure after it
     * leaks nothing. */
    qv_response **h = qv_realloc(r->history, (r->nhistory + 1) * sizeof(*h));
    if (!h) return QV_ENOMEM;
    r->history = h;
    qv_response *hop = qv_response_new();
    if (!hop) return QV_ENOMEM;
    r->history[r->nhistory++] = hop;
    reader rd = {v, len};
    unsigned tag;
    const unsigned char *x;
    size_t n;
    int more, rc = QV_OK;
    while (!rc && (more = next(&rd, &tag, &x, &n)) == 1) rc = decode_hop_field(hop, tag, x, n);
    return rc ? rc : more < 0 ? QV_EPROTOCOL : QV_OK;
}

int qv_wire_decode_response(qv_bodies *bodies, const unsigned char *p, size_t len,
                            qv_response **out, int *err, char **msg, int *err_status,
                            struct curl_slist **jar, int *jar_kept, long *conns, double *retry_ms)
{
    *err_status = 0;
    *jar_kept = 0;
    *conns = 0;
    *retry_ms = -1;
    *out = NULL;
    *err = QV_OK;
    *msg = NULL;
    *jar = NULL;
    qv_response *r = qv_response_new_in(bodies);
    if (!r) return QV_ENOMEM;
    reader rd = {p, len};
    unsigned tag;
    const unsigned char *v;
    size_t n;
    int more, rc = QV_OK, has_status = 0;
    while (!rc && (more = next(&rd, &tag, &v, &n)) == 1) {
        int64_t i = 0;
        switch (tag) {
        case T_VERSION:
        case T_ELAPSED_US:
        case T_CONNS:
        case T_ERROR:
        case T_RETRY_US:
        case T_BODY_BYTES:
        case T_ERRSTATUS:
            if (get_int(v, n, &i))
                rc = QV_EPROTOCOL;
            else if (tag == T_ERRSTATUS) {
                if (i <= 0 || i > 999)
                    rc = QV_EPROTOCOL;
                else
                    *err_status = (int)i;
            } else if (tag == T_BODY_BYTES)
                r->body_bytes = i >= 0 ? i : -1;
            else if (tag == T_RETRY_US)
                *retry_ms = i >= 0 && i < 86400000000LL ? (double)i / 1000.0 : -1;
            else if (tag == T_VERSION)
                r->http_version = (int)i;
            else if (tag == T_CONNS)
                *conns = i >= 0 && i < 1000000 ? (long)i : 0;
            else if (tag == T_ELAPSED_US)
                r->elapsed_ms = (double)i / 1000.0;
            else if (i <= QV_OK || i >= QV_ERROR_COUNT_)
                rc = QV_EPROTOCOL;
            else
                *err = (int)i;
            break;
        case T_RBODY:
            r->body.len = 0;
            rc = qv_response_body_room(r, bodies, n);
            if (!rc) rc = qv_body_append(&r->body, v, n, SIZE_MAX);
            break;
        case T_TIMING:
            rc = get_timing(v, n, &r->timing);
            break;
        case T_RESULT:
            rc = qv_response_set_result_bytes(r, v, n);
            break;
        case T_ERRMSG:
            qv_free(*msg);
            if (!(*msg = qv_strndup((const char *)v, n))) rc = QV_ENOMEM;
            break;
        case T_HISTORY:
            rc = decode_history(r, v, n);
            break;
        case T_JAR_KEPT: {
            int64_t k;
            if (get_int(v, n, &k) || (k != QV_JAR_KEPT && k != QV_JAR_UNKNOWN))
                rc = QV_EPROTOCOL;
            else
                *jar_kept = (int)k;
            break;
        }
        case T_COOKIE: {
            char *line = qv_strndup((const char *)v, n);
            struct curl_slist *l = line ? curl_slist_append(*jar, line) : NULL;
            qv_free(line);
            if (l)
                *jar = l;
            else
                rc = QV_ENOMEM;
            break;
        }
        default:
            has_status |= tag == T_STATUS;
            rc = decode_hop_field(r, tag, v, n);
        }
    }
    if (!rc && (more < 0 || (!has_status && *err == QV_OK) || (*jar_kept && *jar) ||
                (*err_status && *err == QV_OK)))
        rc = QV_EPROTOCOL;
    if (rc || *err) {
        qv_response_free(r);
        r = NULL;
    }
    if (rc) {
        qv_free(*msg);
        *msg = NULL;
        *err_status = 0;
        curl_slist_free_all(*jar);
        *jar = NULL;
    }
    *out = r;
    return rc;
}
