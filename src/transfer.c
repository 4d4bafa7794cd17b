/* One transfer on a reusable easy handle: configuring it from a request
 * record (the one place that does), collecting the response through
 * libcurl's callbacks, watching cancel and the read timeout, and turning the
 * outcome into a completed future. Shared by every executor. */
#include "internal.h"

#include <string.h>
#include <strings.h>

static size_t header_cb(char *buf, size_t size, size_t n, void *p);
static size_t write_cb(char *buf, size_t size, size_t n, void *p);
static int hop_streams(qv_slot *slot);
static int stream_headers(qv_slot *slot);

/* A redirect that is followed: its hop goes to the response's history. */
static int followed(const qv_slot *slot)
{
    const qv_response *r = slot->resp;
    return r->status >= 300 && r->status < 400 && slot->f->req.follow &&
           qv_headers_get(&r->headers, "Location", 0);
}

/* Starts a new hop at a status line: the previous hop becomes history if it
 * was a redirect that is followed, otherwise (1xx, an auth challenge) it is
 * dropped. */
static int start_hop(qv_slot *slot, const char *line, size_t len)
{
    qv_response *r = slot->resp;
    if (r->status) {
        if (followed(slot) && qv_response_push_history(r)) return QV_ENOMEM;
        qv_response_reset_hop(r);
    }
    r->body.len = 0;
    if (r->body.data) r->body.data[0] = '\0';
    slot->body_sized = 0;
    slot->sink.hop = 0;
    qv_lowat_hop(slot);
    /* "HTTP/1.1 200 OK" or "HTTP/2 200" */
    const char *p = memchr(line, ' ', len), *end = line + len;
    while (end > line && (end[-1] == '\r' || end[-1] == '\n')) end--;
    int status = 0;
    if (p) {
        p++;
        while (p < end && *p >= '0' && *p <= '9') status = status * 10 + (*p++ - '0');
        if (p < end && *p == ' ') p++;
    }
    r->status = status;
    r->reason = qv_response_strndup(r, p ? p : end, (size_t)(end - (p ? p : end)));
    slot->in_headers = 1;
    /* what CURLINFO_HTTP_VERSION will say of it (read here, no call at the end) */
    slot->hop_version =
        len > 8 && line[6] == '.' && line[5] == '1' && (line[7] | 1) == '1' ? 10 + line[7] - '0'
        : len > 7 && line[6] == ' ' && (line[5] == '2' || line[5] == '3')   ? (line[5] - '0') * 10
                                                                            : 0;
    return r->reason ? QV_OK : QV_ENOMEM;
}

/* The hop's URL, libcurl's until the next hop starts. Read at the end of a
 * redirect's headers; the last hop's when the response is filled in. */
static int hop_url(qv_slot *slot, qv_response *r)
{
    char *url = NULL;
    curl_easy_getinfo(slot->easy, CURLINFO_EFFECTIVE_URL, &url);
    r->url = qv_response_url_copy(r, url ? url : "");
    return r->url ? QV_OK : QV_ENOMEM;
}

static int add_header_line(qv_slot *slot, const char *line, size_t len)
{
    qv_headers *h = &slot->resp->headers;
    if (len >= 2 && line[len - 2] == '\r' && line[len - 1] == '\n') len -= 2; /* the usual end */
    while (len && (line[len - 1] == '\r' || line[len - 1] == '\n')) len--;
    if (len && (line[0] == ' ' || line[0] == '\t')) {
        /* obsolete line folding: continues the previous value */
        while (len && (*line == ' ' || *line == '\t')) line++, len--;
        return qv_headers_continue(h, line, len);
    }
    const char *colon = memchr(line, ':', len);
    if (!colon) return QV_OK;
    size_t nlen = (size_t)(colon - line);
    const char *v = colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) end--;
    return qv_headers_add_line(h, line, nlen, v, (size_t)(end - v));
}

static size_t header_cb(char *buf, size_t size, size_t n, void *p)
{
    qv_slot *slot = p;
    size_t len = size * n;
    slot->heard = 1;
    /* libcurl's cookie engine reads these (any hop, 1xx, a proxy's too) */
    if (len > 11 && (buf[0] | 0x20) == 's' && buf[3] == '-' &&
        strncasecmp(buf, "set-cookie:", 11) == 0)
        slot->set_cookies++;
    int rc = QV_OK;
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0)
        rc = start_hop(slot, buf, len);
    else if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        slot->in_headers = 0;
        if (followed(slot) && hop_url(slot, slot->resp))
            rc = QV_ENOMEM;
        else if (slot->f->req.io->stream && !slot->pipe && !slot->sink.hop && hop_streams(slot)) {
            slot->sink.hop = 1;
            if (stream_headers(slot)) return 0;
        }
    } else if (slot->in_headers)
        rc = add_header_line(slot, buf, len);
    if (rc) {
        slot->abort = QV_ABORT_NOMEM;
        return 0;
    }
    return len;
}

/* Room for the body as its Content-Length announces it, in one block: a body
 * grown by doubling is copied ~10 times on its way to 64 KiB and ends in a
 * 128 KiB block, mmap's threshold, where glibc's heap then takes the blocks
 * in flight and keeps the pages. Only a hint: a decoded body is longer, and
 * a server may lie; so bounded by the limit and QV_BODY_PRESIZE_MAX. The
 * block is one the executor kept from a released response when one fits
 * (bodies.c); a body of unknown length only joins the executor's buffers. */
static int presize(qv_slot *slot, size_t max)
{
    curl_off_t cl = -1;
    slot->body_sized = 1;
    curl_easy_getinfo(slot->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    size_t n = cl <= 0 ? 0 : (uint64_t)cl < QV_BODY_PRESIZE_MAX ? (size_t)cl : QV_BODY_PRESIZE_MAX;
    if (max && n > max) n = max;
    qv_executor *ex = slot->f->ex;
    return qv_response_body_room(slot->resp, ex ? ex->bodies : NULL, n);
}

/* Does this hop's body go to the request's sink? Not a redirect libcurl
 * follows, a digest challenge it answers, a response that will be retried,
 * nor, when resuming, an answer that is neither 200 nor 206: those bodies
 * stay in memory, as without a sink. */
static int hop_streams(qv_slot *slot)
{
    const qv_req *r = &slot->f->req;
    const qv_response *resp = slot->resp;
    int st = resp->status;
    if (st < 200) return 0; /* 100 Continue and the like: the response is still to come */
    if (followed(slot)) return 0;
    if (st == 401 && r->auth == QV_AUTH_DIGEST && !slot->sink.challenged++) return 0;
    if (r->io->resume && st != 200 && st != 206) return 0;
    return !qv_retry_would_retry(slot->f, resp);
}

/* on_data, output_fd or an output_path written in place that may wait for
 * its reader (a FIFO) on an executor that pumps them on another thread
 * (QV_LOOP): the body goes through a pipe from here on (pump.c). -1 (out
 * of memory) stops the transfer. on_data is called by the loop's thread
 * itself until one call takes over QV_ON_DATA_BUDGET_MS (sink.slow): a
 * hand-off per batch cost 2.3x curl's CPU, a quick callback in place about
 * what QV_THREADS costs (bench/NOTES.md, 2026-12-06). */
static int start_pump(qv_slot *slot)
{
    qv_future *f = slot->f;
    const qv_req *r = &f->req;
    if (!f->ex || !f->ex->vt->pump_ready) return 0;
    int fd = r->io->on_data ? -1 : qv_sink_pump_fd(slot);
    if (!r->io->on_data && fd < 0) return 0;
    if (r->io->on_data && !slot->sink.slow) {
        slot->sink.timed = 1;
        return 0;
    }
    if (!(slot->pump = qv_pump_new(f))) {
        slot->abort = QV_ABORT_NOMEM;
        return -1;
    }
    slot->pipe = slot->pump->pipe; /* the transfer's reference */
    if (fd < 0) return 0;
    qv_sink_direct_begin(slot, fd);
    if (fd == slot->sink.fd) {
        /* The pump writes our file now, and closes it at its end. */
        qv_pipe_give_fd(slot->pipe, fd);
        slot->sink.fd = -1;
    }
    return 0;
}

/* Body bytes for a streamed response's reader, or for a pump: they wait in
 * the pipe, or (no room) the transfer pauses until some is made. */
static size_t stream_write(qv_slot *slot, char *buf, size_t len)
{
    qv_sink *k = &slot->sink;
    k->streamed = 1;
    slot->f->out_unrepeatable = 1;
    size_t max = slot->f->req.max_response_bytes;
    if (max && ((unsigned long long)k->written > max || len > max - (size_t)k->written)) {
        slot->abort = QV_ABORT_TOO_LARGE;
        return 0;
    }
    size_t mine = 0;
    if (k->direct && qv_pipe_drained(slot->pipe)) {
        /* output_fd that takes the bytes at once: no hand-off (a pipe
         * whose reader lags sends the rest through the pump, in order). */
        long w = qv_sink_direct(slot, buf, len);
        if (w < 0) {
            k->io_path = slot->f->req.io->output_path; /* (NULL: output_fd) */
            slot->abort = QV_ABORT_IO;
            return 0;
        }
        mine = (size_t)w;
    }
    switch (mine == len ? 0 : qv_pipe_push(slot->pipe, buf + mine, len - mine)) {
    case 0:
        k->written += (long long)len;
        return len;
    case 1:
        slot->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    case -1:
        slot->abort = QV_ABORT_CLOSED;
        return 0;
    default:
        slot->abort = QV_ABORT_NOMEM;
        return 0;
    }
}

/* A streamed body's bytes taken (w of them, or the pause: none yet). */
static size_t taken(qv_slot *slot, size_t w)
{
    if (w && w != CURL_WRITEFUNC_PAUSE) qv_lowat_body(slot, w);
    return w;
}

static size_t write_cb(char *buf, size_t size, size_t n, void *p)
{
    qv_slot *slot = p;
    size_t len = size * n;
    qv_buf *body = &slot->resp->body;
    size_t max = slot->f->req.max_response_bytes;
    slot->heard = 1;
    if (slot->abort) return 0; /* being stopped: what libcurl still holds goes */
    /* One libcurl call may hand over many pieces: a cancel stops the next
     * (on_data may take its time over each). */
    if (atomic_load_explicit(&slot->f->cancel_requested, memory_order_relaxed)) {
        slot->abort = QV_ABORT_CANCEL;
        return 0;
    }
    if (slot->pipe) return taken(slot, stream_write(slot, buf, len));
    if (!slot->sink.hop && qv_sink_wanted(&slot->f->req)) {
        slot->sink.hop = hop_streams(slot) ? 1 : -1;
        if (slot->sink.hop > 0 && start_pump(slot)) return 0;
        if (slot->pipe) return taken(slot, stream_write(slot, buf, len));
    }
    if (slot->sink.hop > 0) {
        size_t w = qv_sink_write(slot, buf, len);
        /* That on_data call was slow: the next go to a pump. */
        if (slot->sink.slow && !slot->pipe && w == len && start_pump(slot)) return 0;
        return taken(slot, w);
    }
    if (max && (body->len > max || len > max - body->len)) {
        slot->abort = QV_ABORT_TOO_LARGE;
        return 0;
    }
    if ((!slot->body_sized && presize(slot, max)) ||
        qv_body_append(body, buf, len, max ? max : SIZE_MAX)) {
        slot->abort = QV_ABORT_NOMEM;
        return 0;
    }
    return len;
}

static CURLcode setup_mime(qv_slot *slot, const qv_req *r)
{
    slot->mime = curl_mime_init(slot->easy);
    if (!slot->mime) return CURLE_OUT_OF_MEMORY;
    for (size_t i = 0; i < r->nparts; i++) {
        const qv_req_part *p = &r->parts[i];
        curl_mimepart *part = curl_mime_addpart(slot->mime);
        if (!part) return CURLE_OUT_OF_MEMORY;
        CURLcode cc = curl_mime_name(part, p->name);
        if (!cc && p->file) cc = curl_mime_filedata(part, p->file);
        if (!cc && p->value) cc = curl_mime_data(part, p->value, p->value_len);
        if (!cc && p->filename) cc = curl_mime_filename(part, p->filename);
        if (!cc && p->content_type) cc = curl_mime_type(part, p->content_type);
        if (cc) return cc;
    }
    return curl_easy_setopt(slot->easy, CURLOPT_MIMEPOST, slot->mime);
}

static CURLcode setup_method(qv_slot *slot, const qv_req *r)
{
    CURL *e = slot->easy;
    CURLcode cc = CURLE_OK;
    int is_get = strcmp(r->method, "GET") == 0, is_post = strcmp(r->method, "POST") == 0;
    if (strcmp(r->method, "HEAD") == 0) return curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    if (r->io->upload_path || r->io->on_upload) return CURLE_OK; /* upload.c */
    if (r->nparts)
        cc = setup_mime(slot, r);
    else if (r->has_body || is_post) {
        cc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        if (!cc) cc = curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->has_body ? r->body : "");
    }
    /* POST is implied by a body; setting it explicitly would survive a 303. */
    if (!cc && !is_post && !(is_get && !r->has_body && !r->nparts))
        cc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    return cc;
}

static CURLcode setup_auth(CURL *e, const qv_req *r)
{
    CURLcode cc = CURLE_OK;
    switch (r->auth) {
    case QV_AUTH_BASIC:
    case QV_AUTH_DIGEST:
        cc = curl_easy_setopt(e, CURLOPT_HTTPAUTH,
                              r->auth == QV_AUTH_BASIC ? CURLAUTH_BASIC : CURLAUTH_DIGEST);
        if (!cc) cc = curl_easy_setopt(e, CURLOPT_USERNAME, r->username ? r->username : "");
        if (!cc) cc = curl_easy_setopt(e, CURLOPT_PASSWORD, r->password ? r->password : "");
        return cc;
    case QV_AUTH_BEARER:
        cc = curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
        if (!cc) cc = curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, r->password ? r->password : "");
        return cc;
    default:
        return CURLE_OK;
    }
}

/* on_progress, at most every 100 ms (and once more at the end, from
 * collect); not once the future's cancel was asked (its outcome is the
 * cancel's). A resumed download counts the bytes the file had. */
static void report_progress(qv_slot *slot, curl_off_t dlnow, curl_off_t ulnow)
{
    const qv_req *r = &slot->f->req;
    if (atomic_load(&slot->f->cancel_requested)) return;
    curl_off_t dl = -1, ul = -1;
    curl_easy_getinfo(slot->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &dl);
    curl_easy_getinfo(slot->easy, CURLINFO_CONTENT_LENGTH_UPLOAD_T, &ul);
    long long off = slot->sink.offset;
    slot->progress_ms = qv_coarse_ms();
    r->io->on_progress(slot->f, off + dlnow, dl >= 0 ? off + dl : -1, ulnow, ul,
                       r->io->on_progress_arg);
}

static int progress_cb(void *p, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    qv_slot *slot = p;
    (void)dltotal, (void)ultotal;
    if (qv_coarse_ms() - slot->progress_ms >= 100) report_progress(slot, dlnow, ulnow);
    return 0;
}

/* Options that stay for the handle's life: set once after a reset. */
static CURLcode setup_invariant(qv_slot *slot)
{
    CURL *e = slot->easy;
    CURLcode cc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (!cc) cc = curl_easy_setopt(e, opt, val);                                               \
    } while (0)
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, slot->errbuf);
    /* decoding; the Accept-Encoding line is the request's own (request.c) */
    SET(CURLOPT_ACCEPT_ENCODING, "");
    SET(CURLOPT_HEADERFUNCTION, header_cb);
    SET(CURLOPT_HEADERDATA, slot);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, slot);
    SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    SET(CURLOPT_PRIVATE, slot);
    /* The cookie engine, on the jar of the share each request attaches. */
    SET(CURLOPT_COOKIEFILE, "");
    if (!cc) cc = qv_trace_setup(e, slot);
    if (!cc) cc = qv_conncheck_setup(slot);
    return cc;
}

/* libcurl 7.88 parses a URL given as a string at every transfer and prints
 * it back normalized (~10,000 instructions, an eighth of a small GET's on
 * QV_LOOP: bench/NOTES.md); one given parsed (CURLOPT_CURLU) it copies. So
 * a slot keeps its last URL, and parses it, with the flags libcurl's own
 * parse uses, once a request repeats it (a client polling one endpoint, a
 * benchmark): one parse for the run of requests, none for a URL used once. */
CURLcode qv_transfer_set_url(qv_slot *slot, const char *url)
{
    CURL *e = slot->easy;
    int same = slot->url && strcmp(slot->url, url) == 0;
    if (same && !slot->url_parsed && !slot->url_refused && (slot->url_parsed = curl_url()) &&
        curl_url_set(slot->url_parsed, CURLUPART_URL, url,
                     CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME)) {
        curl_url_cleanup(slot->url_parsed); /* libcurl's own parse will say why */
        slot->url_parsed = NULL;
        slot->url_refused = 1; /* (not parsed again for each repeat) */
    }
    if (same && slot->url_parsed) return curl_easy_setopt(e, CURLOPT_CURLU, slot->url_parsed);
    /* A parsed URL takes precedence over the string: none may stay set. */
    CURLcode cc = curl_easy_setopt(e, CURLOPT_CURLU, NULL);
    if (!same) {
        curl_url_cleanup(slot->url_parsed);
        slot->url_parsed = NULL;
        slot->url_refused = 0;
        qv_free(slot->url);
        slot->url = qv_strdup(url); /* (out of memory: only the next parse is not saved) */
    }
    return cc ? cc : curl_easy_setopt(e, CURLOPT_URL, url);
}

/* The handle's options are no longer what slot->last remembers. */
static void forget_last(qv_slot *slot)
{
    slot->last.known = 0;
    qv_free(slot->last.ca_file);
    slot->last.ca_file = NULL;
}

/* The handle goes, and with it the share it had attached. */
static void easy_free(qv_slot *slot)
{
    if (slot->easy) curl_easy_cleanup(slot->easy);
    slot->easy = NULL;
    qv_share_drop(slot->share);
    slot->share = NULL;
}

void qv_transfer_slot_free(qv_slot *slot)
{
    easy_free(slot);
    curl_url_cleanup(slot->url_parsed);
    slot->url_parsed = NULL;
    qv_free(slot->url);
    slot->url = NULL;
    forget_last(slot);
    qv_net_slot_free(slot);
}

/* Options every request sets, each to its value or libcurl's default, so
 * that they need no reset in between. The URL is always set: libcurl
 * follows a redirect by changing the handle's URL. */
static CURLcode setup_request(qv_slot *slot, qv_future *f)
{
    CURL *e = slot->easy;
    const qv_req *r = &f->req;
    CURLcode cc = qv_transfer_set_url(slot, r->url);
    /* The rest is set only if it differs from what the handle has
     * (slot->last): a request like the last (the common case) costs no
     * libcurl call. The value is kept before the call; a failed call
     * forgets them all (known = 0 below). */
#define SET_CHANGED(opt, field, val)                                                               \
    do {                                                                                           \
        if (!cc && (!slot->last.known || slot->last.field != (val))) {                             \
            slot->last.field = (val);                                                              \
            cc = curl_easy_setopt(e, opt, slot->last.field);                                       \
        }                                                                                          \
    } while (0)
    /* an on_request hook's lines, if it changed them */
    SET_CHANGED(CURLOPT_HTTPHEADER, headers,
                slot->attempt_headers ? slot->attempt_headers : r->headers);
    /* The share stays attached between requests (it costs two lock pairs):
     * set when the request is another session's. */
    if (!cc && slot->share != f->session->share) {
        cc = curl_easy_setopt(e, CURLOPT_SHARE, f->session->share->sh);
        qv_share_drop(slot->share);
        slot->share = cc ? NULL : qv_share_hold(f->session->share);
    }
    /* Over TLS, wait for a connection that may multiplex (HTTP/2, learnt in
     * the handshake) rather than open one per transfer meanwhile. Not over
     * plain HTTP: there libcurl would only learn it from the first response,
     * and would queue every request behind it. */
    SET_CHANGED(CURLOPT_PIPEWAIT, pipewait, strncmp(r->url, "https:", 6) == 0 ? 1L : 0L);
    SET_CHANGED(CURLOPT_TIMEOUT_MS, timeout_ms, r->timeout_ms >= 0 ? r->timeout_ms : 0L);
    /* -1 (0 to libcurl) leaves libcurl's own connect limit (300 s) */
    SET_CHANGED(CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms,
                r->connect_timeout_ms >= 0 ? r->connect_timeout_ms : 0L);
    SET_CHANGED(CURLOPT_FOLLOWLOCATION, follow, (long)r->follow);
    SET_CHANGED(CURLOPT_MAXREDIRS, max_redirects, (long)r->max_redirects);
    SET_CHANGED(CURLOPT_VERBOSE, verbose, r->calls->trace_id ? 1L : 0L);
    SET_CHANGED(CURLOPT_MAXFILESIZE_LARGE, max_filesize, (curl_off_t)r->max_response_bytes);
#undef SET_CHANGED
    /* libcurl copies a CA file's path at every set: set when it changed */
    if (r->ca_file && !cc &&
        (!slot->last.known || !slot->last.ca_file || strcmp(slot->last.ca_file, r->ca_file))) {
        qv_free(slot->last.ca_file);
        slot->last.ca_file = qv_strdup(r->ca_file); /* (out of memory: set again next time) */
        SET(CURLOPT_CAINFO, r->ca_file);
    }
    slot->last.known = !cc;
    return cc;
}

/* A body that does not stay in memory: it goes to a file, a descriptor,
 * on_data or a reader. */
static int streams(const qv_req *r)
{
    return qv_sink_wanted(r) || r->io->stream;
}

/* A request that sets options only a reset takes back (so does one whose
 * body streams, see setup_easy). */
static int special(const qv_req *r)
{
    return r->auth != QV_AUTH_NONE || r->insecure || r->has_body || r->nparts ||
           strcmp(r->method, "GET") != 0 || r->io->on_progress || r->io->resume ||
           r->io->upload_path || r->io->on_upload;
}

/* Upload bodies are read in larger pieces than libcurl's 16 KiB: a fourth
 * of a pipe's room (curl's own tool uses 100 KiB). */
#define QV_UPLOAD_BUFFER ((long)(QV_PIPE_CAP / 4))

/* The options of a special request (see special()), streamed or not. */
static CURLcode setup_special(qv_slot *slot, const qv_req *r, int streamed)
{
    CURL *e = slot->easy;
    CURLcode cc = CURLE_OK;
    if (r->insecure) {
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (r->io->upload_path || r->io->on_upload) SET(CURLOPT_UPLOAD_BUFFERSIZE, QV_UPLOAD_BUFFER);
    if (streamed) SET(CURLOPT_BUFFERSIZE, QV_RECV_BUFFER);
    if (r->io->on_progress) {
        SET(CURLOPT_XFERINFOFUNCTION, progress_cb);
        SET(CURLOPT_XFERINFODATA, slot);
        SET(CURLOPT_NOPROGRESS, 0L);
    }
    char range[32];
    if (qv_sink_range(slot, range, sizeof(range))) SET(CURLOPT_RANGE, range);
#undef SET
    if (!cc) cc = setup_auth(e, r);
    if (!cc) cc = setup_method(slot, r);
    return cc;
}

/* A transfer that may pause (a streamed body's reader, a loop's pump) on
 * a curl_multi that other transfers share: over HTTP/2 libcurl 7.88 keeps
 * receiving a paused stream into memory, up to its large stream window,
 * while the connection serves the others (35 MB measured for one unread
 * stream beside a download). Over HTTP/1.1 a pause stops reading its
 * connection, and memory stays at the pipe's bound. */
static int pauses_shared(const qv_future *f)
{
    const qv_req *r = &f->req;
    return f->ex && f->ex->o.kind == QV_LOOP &&
           (r->io->stream || r->io->on_data || r->io->output_fd > 0);
}

/* A handle reused from a plain request keeps its options; only what a
 * request sets is set again (curl_easy_reset and every option anew cost as
 * much as quiver's whole response building). So does one whose network
 * settings are those the handle has (network.c). After anything else, or a
 * CA file that must go, it starts from a reset. */
static CURLcode setup_easy(qv_slot *slot, qv_future *f)
{
    const qv_req *r = &f->req;
    CURLcode cc = CURLE_OK;
    int same_net = qv_net_same(slot, r);
    if (same_net < 0) return CURLE_OUT_OF_MEMORY;
    if (slot->configured != slot->easy || slot->dirty || (slot->ca_set && !r->ca_file) ||
        !same_net) {
        /* libcurl 7.88's curl_easy_reset forgets the cookie-file list
         * without freeing it; taking it back detaches the handle from the
         * share's jar, so the share goes first, to be attached anew. */
        curl_easy_setopt(slot->easy, CURLOPT_SHARE, NULL);
        qv_share_drop(slot->share);
        slot->share = NULL;
        curl_easy_setopt(slot->easy, CURLOPT_COOKIEFILE, NULL);
        curl_easy_reset(slot->easy);
        qv_net_forget(slot);
        slot->configured = NULL;
        forget_last(slot);
        cc = setup_invariant(slot);
        if (!cc) slot->configured = slot->easy;
    }
    int h1 = pauses_shared(f);
    int streamed = streams(r);
    slot->dirty = streamed || special(r) || h1;
    slot->ca_set = r->ca_file != NULL;
    if (!cc) cc = setup_request(slot, f);
    if (!cc && slot->dirty) cc = setup_special(slot, r, streamed);
    if (!cc && h1) cc = curl_easy_setopt(slot->easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    if (!cc) cc = qv_net_setup(slot, r);
    if (!cc) cc = qv_redirect_setup(slot);
    if (!cc && r->host && qv_session_seed_cookies(f->session, slot->easy, r->host))
        cc = CURLE_OUT_OF_MEMORY;
    return cc;
}

/* Done with the transfer: the handle stays for the next one, with the
 * share (the session's jar) attached: the slot holds a reference to it. */
static void slot_release(qv_slot *slot)
{
    qv_upload_end(slot);
    curl_mime_free(slot->mime);
    slot->mime = NULL;
    slot->f = NULL;
    if (slot->attempt_headers || slot->hop_headers) {
        curl_easy_setopt(slot->easy, CURLOPT_HTTPHEADER, NULL);
        slot->last.headers = NULL;
        curl_slist_free_all(slot->attempt_headers);
        curl_slist_free_all(slot->hop_headers);
        slot->attempt_headers = slot->hop_headers = NULL;
    }
}

int qv_transfer_setup(qv_slot *slot, qv_future *f)
{
    slot->f = f;
    slot->upload_fd = -1;
    slot->upload_waits = 0;
    slot->upload_unmet = 0;
    slot->upload_pipe = 0;
    slot->progress_ms = 0;
    memset(&slot->sink, 0, sizeof(slot->sink));
    slot->sink.fd = -1;
    slot->abort = QV_ABORT_NONE;
    slot->in_headers = 0;
    slot->hop_version = 0;
    slot->set_cookies = 0;
    slot->body_sized = 0;
    slot->last_upload = 0;
    slot->read_clock = 0;
    slot->errbuf[0] = '\0';
    slot->heard = 0;
    slot->last_activity_ms = qv_now_ms();
    slot->alloc_failures = atomic_load(&qv_alloc_failures);
    slot->opened_fd = CURL_SOCKET_BAD;
    slot->conn_fd = CURL_SOCKET_BAD;
    slot->lowat = (qv_lowat){.fd = CURL_SOCKET_BAD};
    slot->resp = qv_response_new_in(f->ex ? f->ex->bodies : NULL);
    char *hook_msg = NULL, *msg = NULL;
    int err = slot->resp ? qv_attempt_run_hooks(slot, f, &hook_msg) : QV_ENOMEM;
    if (!err) err = qv_sink_begin(slot, &msg);
    if (!err && f->req.nparts) err = qv_upload_check_parts(slot, &msg);
    CURLcode cc = err ? CURLE_OK : setup_easy(slot, f);
    if (!err && !cc && (f->req.io->upload_path || f->req.io->on_upload)) {
        cc = qv_upload_setup(slot, &msg);
        if (msg) err = QV_EIO;
    }
    if (!err && cc == CURLE_OK) return QV_OK;
    if (cc) slot->configured = NULL; /* half set up: the next one starts from a reset */
    qv_future_end_transfer(f);
    qv_response_free(slot->resp);
    slot->resp = NULL;
    f->out_err = err ? err : qv_error_from_curl(cc);
    f->out_msg = msg ? msg
                     : qv_future_message(f, f->out_err, "%s",
                                         hook_msg          ? hook_msg
                                         : err             ? "before the transfer"
                                         : slot->errbuf[0] ? slot->errbuf
                                                           : curl_easy_strerror(cc));
    qv_free(hook_msg);
    qv_sink_end(slot);
    slot_release(slot);
    return f->out_err;
}

static int wake_multi(qv_future *f, void *multi, int cancel)
{
    (void)f;
    (void)cancel;
    curl_multi_wakeup(multi);
    return 0;
}

qv_holder qv_transfer_holder(CURLM *multi)
{
    return (qv_holder){.fn = wake_multi, .arg = multi};
}

CURLM *qv_transfer_multi(const char *whose)
{
    CURLM *m = curl_multi_init();
    if (!m) {
        qv_set_last_error("cannot make %s multi handle: out of memory", whose);
        return NULL;
    }
    /* The first poll reads this wake-up. libcurl keeps no errno of the
     * pair it could not make: descriptors ran out. */
    if (curl_multi_wakeup(m) == CURLM_OK) return m;
    curl_multi_cleanup(m);
    qv_set_last_error("cannot make %s multi handle's wake-up socket pair (in libcurl): out of "
                      "descriptors",
                      whose);
    return NULL;
}

/* A stream's transfer: 1 if its reader let go; a paused one goes on once
 * its reader made room. */
static int pipe_check(qv_slot *slot)
{
    int resume;
    if (qv_pipe_state(slot->pipe, &resume)) {
        slot->abort = QV_ABORT_CLOSED;
        return 1;
    }
    if (slot->paused) {
        /* Waiting for the reader is no silence of the server's. */
        slot->last_activity_ms = qv_now_ms();
        if (resume) {
            slot->paused = 0;
            curl_easy_pause(slot->easy, CURLPAUSE_CONT); /* may write at once */
        }
        if (slot->abort) return 1;
    }
    return 0;
}

/* The read timeout's clock: libcurl's callbacks only note that bytes came
 * (a clock read for each header line cost more than the checks); the next
 * check stamps them, with the fine clock. Checks read the coarse one
 * (now), which lags the fine one (by 2-35 ms on a busy VM: a tick, or
 * more while the tick is late), so silence measured so is never more than
 * the real one: a read timeout ends at most that lag late (QV_LOOP scans
 * when the earliest is due), never early. (Coarse
 * stamps made it end up to ~2 ms early, 13 of 200 times, test_readclock.) */
double qv_transfer_silent_ms(qv_slot *slot, double now)
{
    if (slot->heard) {
        slot->heard = 0;
        slot->last_activity_ms = qv_now_ms();
    }
    return now - slot->last_activity_ms;
}

/* A transfer whose upload_path pipe had nothing in: its sending goes on
 * once bytes came (or the writer closed). Waiting for that writer is no
 * silence of the server's. */
static void upload_check(qv_slot *slot)
{
    if (!slot->upload_waits) return;
    slot->last_activity_ms = qv_now_ms();
    qv_upload_look(slot);
}

static int abort_wanted(qv_slot *slot, double read_by)
{
    if (atomic_load(&slot->f->cancel_requested)) {
        slot->abort = QV_ABORT_CANCEL;
        return 1;
    }
    if (slot->pipe && pipe_check(slot)) return 1;
    upload_check(slot);
    long rt = slot->f->req.read_timeout_ms;
    if (rt < 0) return 0;
    curl_off_t pre = 0, up = 0;
    curl_easy_getinfo(slot->easy, CURLINFO_PRETRANSFER_TIME_T, &pre);
    curl_easy_getinfo(slot->easy, CURLINFO_SIZE_UPLOAD_T, &up);
    /* The read clock starts when a check first sees the request on its way
     * (never earlier: one long round may connect, send and find the check
     * late, and the connect is not the server's silence); sending counts as
     * activity too. */
    if (pre == 0 || !slot->read_clock || up != slot->last_upload) {
        slot->read_clock = pre != 0;
        slot->last_upload = up;
        slot->last_activity_ms = qv_now_ms(); /* (a stamp: the fine clock) */
        return 0;
    }
    /* Silence up to the perform before this check, not to now: bytes that
     * came while that perform ran (a long one: other transfers' work,
     * callbacks, or the thread preempted) wait unread in the socket. */
    if (qv_transfer_silent_ms(slot, read_by) >= (double)rt) {
        slot->abort = QV_ABORT_READ_TIMEOUT;
        return 1;
    }
    return 0;
}

/* For every request: each hop of a redirect (libcurl's or redirect.c's),
 * a new connection for a reused one with unread bytes. The silence before
 * it (a redirect's response that ended long after its last byte, the
 * connect) is no wait for its answer: with the first hop's clock kept, a
 * hop that sent its request 700 ms after that hop's headers, then heard
 * nothing, ran into a 1 s read timeout ~700 ms early (test_readclock). On
 * QV_LOOP the round that sent it checks it (unclocked), as a first one. */
void qv_transfer_request_going(qv_slot *slot)
{
    if (slot->f->req.read_timeout_ms < 0) return;
    slot->read_clock = 0;
    if (slot->unclocked) (*slot->unclocked)++;
}

int qv_transfer_should_abort(qv_slot *slot, double read_by)
{
    if (!abort_wanted(slot, read_by)) return 0;
    if (slot->paused) {
        /* libcurl 7.88 keeps what a paused transfer could not hand over in
         * the handle, past the transfer's end while the connection serves
         * other HTTP/2 streams, and gives it to the handle's next transfer.
         * Resumed now, with abort set, it is refused, and libcurl frees it. */
        slot->paused = 0;
        curl_easy_pause(slot->easy, CURLPAUSE_CONT);
    }
    return 1;
}

long qv_transfer_poll_ms(qv_slot *slot, long cap_ms)
{
    cap_ms = qv_lowat_poll_ms(slot, cap_ms);
    long rt = slot->f->req.read_timeout_ms;
    if (rt < 0) return cap_ms;
    double now = qv_coarse_ms();
    double left = (double)rt - qv_transfer_silent_ms(slot, now);
    if (left < 1) return 1;
    return left < (double)cap_ms ? (long)left + 1 : cap_ms;
}

int qv_has_hooks(const qv_future *f)
{
    const qv_hook *h = f->session->o.hooks;
    return f->req.calls->hook || (h && h->fn);
}

int qv_runs_user_code(qv_future *f)
{
    const qv_req_calls *c = f->req.calls;
    const qv_req_io *io = f->req.io;
    return qv_has_hooks(f) || c->on_request[0].fn || c->on_request[1].fn || c->on_debug ||
           io->on_data || io->on_progress || io->on_upload || qv_future_has_callbacks(f);
}

int qv_run_hooks(qv_future *f, qv_response *r, char **msg)
{
    qv_session *s = f->session;
    int rc = 0;
    for (const qv_hook *h = s->o.hooks; h && h->fn && !rc; h++) rc = h->fn(s, r, h->arg);
    const qv_req_calls *c = f->req.calls;
    if (!rc && c->hook) rc = c->hook(s, r, c->hook_arg);
    if (!rc && !r->result_refused) return QV_OK;
    *msg = r->hook_error       ? qv_strdup(r->hook_error)
           : r->result_refused ? qv_strdup(QV_RESULT_REFUSED)
                               : qv_asprintf("the hook returned %d", rc);
    return QV_EHOOK;
}

/* A libcurl timeout before the connection was made is a connect timeout,
 * unless the total timeout is the one that ran out. */
static int timeout_kind(qv_slot *slot)
{
    const qv_req *r = &slot->f->req;
    curl_off_t connected = 0;
    curl_easy_getinfo(slot->easy, CURLINFO_CONNECT_TIME_T, &connected);
    if (connected) return QV_ETIMEOUT;
    if (r->timeout_ms >= 0 && (r->connect_timeout_ms < 0 || r->timeout_ms < r->connect_timeout_ms))
        return QV_ETIMEOUT;
    return QV_ECONNECT_TIMEOUT;
}

/* The error of a failed transfer, in f->out_err and f->out_msg. */
/* Refines libcurl's code where one code covers several kinds. `started`:
 * a status line had arrived. */
static int refine(qv_slot *slot, CURLcode cc, const char *detail, int started)
{
    const qv_future *f = slot->f;
    long code = 0, connect_code = 0;
    curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(slot->easy, CURLINFO_HTTP_CONNECTCODE, &connect_code);
    /* A refused CONNECT tunnel is the proxy's answer, whatever the code;
     * with a proxy set, the proxy is the only peer we connect to. */
    if (connect_code >= 300 || (cc == CURLE_COULDNT_CONNECT && f->req.proxy && *f->req.proxy))
        return QV_EPROXY;
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
        return timeout_kind(slot);
    case CURLE_RECV_ERROR:
        /* libcurl 7.88 caps response headers (300 KiB) with this code; a
         * failure once the response began is a broken response (e.g. bad
         * chunked encoding, reset mid-body), before it a connection failure. */
        if (strstr(detail, "Too large response headers")) return QV_ETOO_LARGE;
        if (!started && qv_net_tls_refused(slot, detail)) return QV_ETLS;
        return started ? QV_EPROTOCOL : QV_ECONNECT;
    case CURLE_SEND_ERROR:
        return !started && qv_net_tls_refused(slot, detail) ? QV_ETLS : QV_ECONNECT;
    case CURLE_UNSUPPORTED_PROTOCOL:
        /* Our own URL was checked at submit: here it is either a redirect to
         * a scheme we refuse, or an answer that is not HTTP we speak
         * (HTTP/0.9, an unknown version). */
        return code >= 300 && code < 400 ? QV_EURL : QV_EPROTOCOL;
    case CURLE_SEND_FAIL_REWIND:
        return QV_EIO; /* an on_upload or pipe body to send again */
    case CURLE_OUT_OF_MEMORY:
        /* Also what libcurl 7.88 says of a single header over 100 KiB; if
         * no allocation failed meanwhile, that is what happened. */
        if (started && atomic_load(&qv_alloc_failures) == slot->alloc_failures)
            return QV_ETOO_LARGE;
        return QV_ENOMEM;
    default:
        return qv_error_from_curl(cc);
    }
}

static void collect_error(qv_slot *slot, CURLcode cc, int started)
{
    qv_future *f = slot->f;
    const char *detail = slot->errbuf[0] ? slot->errbuf : curl_easy_strerror(cc);
    const char *hint, *cant;
    int err;
    switch (slot->abort) {
    case QV_ABORT_CANCEL:
        f->out_err = QV_ECANCELLED;
        return;
    case QV_ABORT_READ_TIMEOUT:
        f->out_err = QV_EREAD_TIMEOUT;
        f->out_msg =
            qv_future_message(f, f->out_err, "no data received for %ld ms", f->req.read_timeout_ms);
        return;
    case QV_ABORT_TOO_LARGE:
        f->out_err = QV_ETOO_LARGE;
        f->out_msg = qv_future_message(f, f->out_err, "body over the limit of %zu bytes",
                                       f->req.max_response_bytes);
        return;
    case QV_ABORT_NOMEM:
        f->out_err = QV_ENOMEM;
        f->out_msg = qv_future_message(f, f->out_err, "while receiving the response");
        return;
    case QV_ABORT_PROXY_AUTH:
        f->out_err = QV_EPROXY;
        f->out_msg = qv_future_message(f, f->out_err,
                                       "the proxy wants credentials, or refused those given "
                                       "(407 Proxy Authentication Required)");
        return;
    case QV_ABORT_TIMEOUT:
        f->out_err = QV_ETIMEOUT;
        f->out_msg = qv_future_message(f, f->out_err,
                                       "Operation timed out after %ld milliseconds while the "
                                       "body waited for its consumer",
                                       f->req.timeout_ms);
        return;
    case QV_ABORT_CLOSED: /* (a pump's stop is told at delivery: pump.c) */
        f->out_err = QV_ESHUTDOWN;
        f->out_msg = qv_future_message(f, f->out_err, "the streamed body's reader let it go");
        return;
    case QV_ABORT_IO:
        f->out_err = QV_EIO;
        f->out_msg = qv_sink_io_message(slot);
        return;
    case QV_ABORT_HOOK:
        f->out_err = QV_EHOOK;
        if (slot->abort_msg) /* a hook's, with a streamed response's headers */
            f->out_msg = qv_future_message(f, f->out_err, "%s", slot->abort_msg);
        else
            f->out_msg = qv_future_message(f, f->out_err, "%s stopped the transfer",
                                           f->req.io->on_data ? "on_data" : "on_upload");
        qv_free(slot->abort_msg);
        slot->abort_msg = NULL;
        return;
    case QV_ABORT_RANGE:
        f->out_err = QV_EPROTOCOL;
        f->out_msg = qv_future_message(f, f->out_err,
                                       "a resumed download's answer starts at byte %lld, not "
                                       "at %lld where the file ends",
                                       slot->sink.range_start, slot->sink.offset);
        return;
    default:
        cant = cc == CURLE_SEND_FAIL_REWIND ? qv_upload_cant_rewind(slot) : NULL;
        if (cant) detail = cant;
        err = refine(slot, cc, detail, started);
        hint = err == QV_ETLS ? qv_net_tls_hint(slot, cc, detail) : NULL;
        f->out_err = err;
        f->out_msg = hint ? qv_future_message(f, err, "%s (%s)", hint, detail)
                          : qv_future_message(f, err, "%s", detail);
    }
}

void qv_transfer_detach(qv_slot *slot, CURLM *multi)
{
    /* Removing a transfer that is not done closes its connection: a
     * half-read connection never goes back to the pool. */
    curl_multi_remove_handle(multi, slot->easy);
}

/* Returns the total time, in µs. */
static curl_off_t record_timing(qv_slot *slot, qv_response *r)
{
    static const CURLINFO what[] = {CURLINFO_NAMELOOKUP_TIME_T, CURLINFO_CONNECT_TIME_T,
                                    CURLINFO_APPCONNECT_TIME_T, CURLINFO_STARTTRANSFER_TIME_T,
                                    CURLINFO_TOTAL_TIME_T};
    double *to[] = {&r->timing.dns_ms, &r->timing.connect_ms, &r->timing.tls_ms,
                    &r->timing.first_byte_ms, &r->timing.total_ms};
    curl_off_t us = 0;
    for (size_t i = 0; i < sizeof(what) / sizeof(what[0]); i++) {
        us = 0;
        curl_easy_getinfo(slot->easy, what[i], &us);
        *to[i] = (double)us / 1000.0;
    }
    r->timing.queued_ms = slot->f->started_ms - slot->f->submitted_ms;
    return us;
}

/* The response's fields libcurl knows at its end, or (streamed) once its
 * headers are in. */
static int fill_response(qv_slot *slot, qv_response *r, long status)
{
    long version = 0;
    if (!slot->hop_version) curl_easy_getinfo(slot->easy, CURLINFO_HTTP_VERSION, &version);
    r->http_version = slot->hop_version                  ? slot->hop_version
                      : version == CURL_HTTP_VERSION_1_0 ? 10
                      : version == CURL_HTTP_VERSION_1_1 ? 11
                      : version == CURL_HTTP_VERSION_2_0 ? 20
                      : version == CURL_HTTP_VERSION_3   ? 30
                                                         : 0;
    r->status = (int)status;
    r->attempts = slot->f->attempts;
    curl_off_t total = record_timing(slot, r);
    /* with the hops before the last when quiver followed them */
    r->elapsed_ms = (double)(total + slot->prior_us) / 1000.0;
    r->timing.total_ms = r->elapsed_ms;
    return hop_url(slot, r);
}

/* The final response's headers are in and its body goes to a reader: the
 * future completes now (stream = 1), and the transfer goes on, feeding the
 * pipe. 0, or -1 to stop the transfer. */
static int stream_headers(qv_slot *slot)
{
    qv_future *f = slot->f;
    qv_response *r = slot->resp;
    long status = 0;
    curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
    if (fill_response(slot, r, status ? status : r->status)) {
        slot->abort = QV_ABORT_NOMEM;
        return -1;
    }
    f->out_unrepeatable = 1; /* the caller has it: no retry can take it back */
    if (qv_stream_head_hook) return qv_stream_head_hook(slot, r); /* a process worker */
    if (!(slot->pipe = qv_pipe_new(f))) {
        slot->abort = QV_ABORT_NOMEM;
        return -1;
    }
    r->pipe = slot->pipe;
    r->body_bytes = 0;
    f->streamed = 1;
    atomic_store(&f->stream_open, 2); /* the delivery's hold, the transfer's */
    qv_executor *ex = f->ex;
    if (ex && ex->vt->deliver_early) {
        ex->vt->deliver_early(ex, f, r);
    } else {
        qv_transfer_deliver_early(f, r);
    }
    return 0;
}

/* The transfer of a streamed response ended: the body is whole, or its
 * error goes to the reader. The future was completed with the headers. */
static void stream_end(qv_slot *slot, CURLcode cc)
{
    qv_future *f = slot->f;
    int err = QV_OK;
    char *msg = NULL;
    if (cc != CURLE_OK || slot->abort != QV_ABORT_NONE) {
        collect_error(slot, cc, 1);
        err = f->out_err;
        msg = f->out_msg;
        f->out_err = QV_OK;
        f->out_msg = NULL;
    }
    qv_pipe_finish(slot->pipe, err, msg);
    qv_free(msg);
    qv_pipe_unref(slot->pipe);
    slot->pipe = NULL;
    slot->paused = 0;
}

/* The hooks, timed into hooks_ms; with none, hooks_ms stays 0 and no clock
 * is read. */
static int run_hooks_timed(qv_future *f, qv_response *r, char **msg)
{
    if (!qv_has_hooks(f)) return QV_OK;
    double t0 = qv_now_ms();
    int rc = qv_run_hooks(f, r, msg);
    r->timing.hooks_ms = qv_now_ms() - t0;
    return rc;
}

void qv_transfer_deliver_early(qv_future *f, qv_response *r)
{
    char *hook_msg = NULL;
    int rc = run_hooks_timed(f, r, &hook_msg);
    if (rc) {
        qv_response_free(r); /* closes the pipe: the transfer stops */
        qv_future_fail(f, rc, "%s", hook_msg ? hook_msg : "out of memory");
        qv_free(hook_msg);
    } else {
        qv_future_complete(f, QV_FINISHED, QV_OK, NULL, r);
        qv_stream_opened(f);
    }
    qv_stream_release(f);
}

void qv_transfer_collect(qv_slot *slot, CURLcode cc)
{
    qv_trace_flush(slot);
    qv_future *f = slot->f;
    qv_response *r = slot->resp;
    slot->resp = NULL;
    long conns = 0;
    curl_easy_getinfo(slot->easy, CURLINFO_NUM_CONNECTS, &conns);
    conns += slot->prior_conns; /* and those of earlier hops quiver followed */
    f->out_conns = (int)conns;
    if (f->ex) atomic_fetch_add(&f->ex->connections, (size_t)conns);
    qv_future_end_transfer(f);
    qv_executor_host_done(f);
    long status = 0;
    curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
    /* Through a proxy (plain http, no tunnel), the proxy's refusal is a
     * response: a failure of the proxy all the same. */
    if (cc == CURLE_OK && slot->abort == QV_ABORT_NONE && status == 407 && f->req.proxy &&
        *f->req.proxy)
        slot->abort = QV_ABORT_PROXY_AUTH;
    /* Ended paused by libcurl itself (a timeout, a connection lost): what
     * it held may stay in the handle (see qv_transfer_should_abort), and
     * can no longer be resumed out of it. That handle goes (libcurl 7.88's
     * curl_easy_cleanup does not free it either, but no body gets it). */
    int held = slot->pipe && slot->paused;
    if (f->streamed && slot->pipe) { /* (a process worker has no pipe: it answers in full) */
        stream_end(slot, cc);
    } else if (cc == CURLE_OK && slot->abort == QV_ABORT_NONE) {
        if (fill_response(slot, r, status) == QV_OK) {
            f->out_resp = r;
        } else {
            qv_response_free(r);
            f->out_err = QV_ENOMEM;
            f->out_msg = qv_future_message(f, f->out_err, "while finishing the response");
        }
    } else {
        int started = r && r->status != 0;
        f->out_status = started ? (unsigned short)r->status : 0;
        qv_response_free(r);
        collect_error(slot, cc, started);
    }
    if (f->req.io->on_progress) {
        curl_off_t dl = 0, ul = 0;
        curl_easy_getinfo(slot->easy, CURLINFO_SIZE_DOWNLOAD_T, &dl);
        curl_easy_getinfo(slot->easy, CURLINFO_SIZE_UPLOAD_T, &ul);
        report_progress(slot, dl, ul);
    }
    qv_sink_end(slot);
    if (slot->pipe) { /* a pump's: the rest of the outcome is f's */
        qv_pipe_finish(slot->pipe, QV_OK, NULL);
        qv_pipe_unref(slot->pipe);
        slot->pipe = NULL;
        slot->paused = 0;
    }
    slot_release(slot);
    if (held) {
        easy_free(slot);
        slot->configured = NULL;
    }
}

int qv_transfer_settle(qv_future *f)
{
    if (f->streamed) { /* completed with its headers; its transfer is over now */
        qv_stream_release(f);
        return 0;
    }
    qv_response *r = f->out_resp;
    char *msg = f->out_msg;
    f->out_resp = NULL;
    f->out_msg = NULL;
    if (!r)
        return qv_future_settle(f, f->out_err == QV_ECANCELLED ? QV_CANCELLED : QV_FAILED,
                                f->out_err, msg, NULL);
    char *hook_msg = NULL;
    int rc = run_hooks_timed(f, r, &hook_msg);
    if (!rc) return qv_future_settle(f, QV_FINISHED, QV_OK, NULL, r);
    qv_response_free(r);
    msg = qv_future_message(f, rc, "%s", hook_msg ? hook_msg : "out of memory");
    qv_free(hook_msg);
    return qv_future_settle(f, QV_FAILED, rc, msg, NULL);
}

void qv_transfer_deliver(qv_future *f)
{
    if (qv_transfer_settle(f)) qv_future_finish(f);
}

int qv_transfer_again(qv_slot *slot, CURLM *multi, CURLcode *cc)
{
    return qv_conncheck_retry(slot, multi) || qv_redirect_next(slot, multi, cc);
}

typedef struct lent {
    qv_slot *slot;
    CURLM *multi;
} lent;

/* A pass over a streamed transfer lent to its reader (qv_pipe_lend), on the
 * reader's thread. Anything but bytes coming (the end, a cancel, a read
 * timeout due, a stop) goes back to the transfer's own thread. */
static int lent_pass(void *arg, long wait_ms)
{
    const lent *l = arg;
    qv_slot *slot = l->slot;
    if (atomic_load(&slot->f->cancel_requested) || pipe_check(slot)) return 0;
    /* Its upload from a pipe may wait for the writer: the reader resumes
     * it, and its poll wakes for the writer's bytes (else the upload, and
     * the body's end, waited for the read timeout to end the turn). */
    upload_check(slot);
    long rt = slot->f->req.read_timeout_ms;
    double now = qv_coarse_ms();
    if (rt >= 0 && qv_transfer_silent_ms(slot, now) >= (double)rt) return 0;
    struct curl_waitfd up = {.fd = qv_upload_watch_fd(slot), .events = CURL_WAIT_POLLIN};
    if (wait_ms >= 0)
        curl_multi_poll(l->multi, up.fd >= 0 ? &up : NULL, up.fd >= 0,
                        (int)qv_transfer_poll_ms(slot, wait_ms < 1000 ? wait_ms : 1000), NULL);
    int running = 0;
    return curl_multi_perform(l->multi, &running) == CURLM_OK && running;
}

int qv_until_look_ms = 1;

int qv_transfer_drive(qv_slot *slot, CURLM *multi, const struct timespec *deadline,
                      qv_future *until, int watch_fd, void (*on_readable)(qv_slot *), CURLcode *cc)
{
    lent lend = {slot, multi};
    int ended = 1;
    *cc = CURLE_ABORTED_BY_CALLBACK;
    /* watch_fd, and upload_path's pipe while its transfer waits for bytes
     * (the check before each poll resumes it once they came). */
    struct curl_waitfd wfd[2] = {{.fd = watch_fd, .events = CURL_WAIT_POLLIN},
                                 {.events = CURL_WAIT_POLLIN}};
    slot->lowat.driven = 1; /* each of its polls below asks qv_transfer_poll_ms */
    for (;;) {
        int running = 0;
        double read_by = qv_coarse_ms();
        if (curl_multi_perform(multi, &running)) {
            *cc = CURLE_OUT_OF_MEMORY;
            break;
        }
        if (!running) {
            int left;
            CURLMsg *m = curl_multi_info_read(multi, &left);
            *cc = m && m->msg == CURLMSG_DONE ? m->data.result : CURLE_GOT_NOTHING;
            if (qv_transfer_again(slot, multi, cc)) continue;
            break;
        }
        if (qv_transfer_should_abort(slot, read_by)) break;
        qv_later_run();
        /* A streamed body's reader that waits receives it itself. */
        if (slot->pipe && watch_fd < 0 && qv_pipe_lend(slot->pipe, lent_pass, &lend)) continue;
        long cap = until ? qv_until_look_ms : 1000;
        if (until && qv_future_done(until)) {
            ended = 0;
            break;
        }
        if (deadline) {
            long left = qv_ms_left(deadline);
            if (left == 0) {
                ended = 0;
                break;
            }
            if (left < cap) cap = left;
        }
        wfd[0].revents = 0;
        wfd[1].fd = qv_upload_watch_fd(slot);
        struct curl_waitfd *w = watch_fd >= 0 ? wfd : wfd + 1;
        unsigned nw = (watch_fd >= 0) + (wfd[1].fd >= 0);
        curl_multi_poll(multi, nw ? w : NULL, nw, (int)qv_transfer_poll_ms(slot, cap), NULL);
        if (wfd[0].revents) on_readable(slot);
    }
    qv_later_run();
    if (ended) {
        qv_lowat_end(slot);
        qv_transfer_detach(slot, multi);
    }
    return ended;
}

CURLcode qv_transfer_run(qv_slot *slot, CURLM *multi, int watch_fd, void (*on_readable)(qv_slot *))
{
    CURLcode cc = CURLE_OUT_OF_MEMORY;
    slot->watch_fd = watch_fd;
    slot->on_readable = on_readable;
    if (curl_multi_add_handle(multi, slot->easy) == CURLM_OK)
        qv_transfer_drive(slot, multi, NULL, NULL, watch_fd, on_readable, &cc);
    return cc;
}
