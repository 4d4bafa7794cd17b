/* The response: status, headers, body, JSON, URL, history, and the hook's
 * result. Built by transfer.c, then read-only for the user (except the
 * lazily parsed JSON, which is guarded). */
#include "internal.h"

#include <jansson.h>
#include <string.h>

/* r: zeroed but for the headers' room. */
static qv_response *init(qv_response *r)
{
    if (pthread_mutex_init(&r->json_mu, NULL)) {
        qv_response_shell_free(r);
        return NULL;
    }
    r->body_bytes = -1;
    return r; /* the body's room comes with its first bytes (transfer.c) */
}

/* Everything but the headers' room is zero again. */
static void to_shell(qv_response *r)
{
    qv_headers h = r->headers;
    memset(r, 0, sizeof(*r));
    r->headers = h;
}

qv_response *qv_response_new(void)
{
    qv_response *r = qv_calloc(1, sizeof(*r));
    return r ? init(r) : NULL;
}

qv_response *qv_response_new_in(qv_bodies *b)
{
    qv_response *r = b ? qv_bodies_take_shell(b) : NULL;
    if (r) {
        to_shell(r); /* the kept list's link is in its first bytes */
        r = init(r);
    } else {
        r = qv_response_new();
    }
    if (r && b) {
        r->bodies = b;
        qv_bodies_hold(b);
    }
    return r;
}

void qv_response_shell_free(void *shell)
{
    qv_response *r = shell;
    qv_headers_free(&r->headers);
    qv_free(r);
}

char *qv_response_strndup(qv_response *r, const char *s, size_t n)
{
    return qv_arena_memdup(&r->headers.strings, s, n);
}

char *qv_response_url_copy(qv_response *r, const char *url)
{
    size_t a, b, n = strlen(url);
    if (!qv_url_userinfo(url, &a, &b)) return qv_response_strndup(r, url, n);
    char *c = qv_response_strndup(r, url, n - (b - a));
    if (c) memcpy(c + a, url + b, n - b);
    return c;
}

int qv_response_body_room(qv_response *r, qv_bodies *b, size_t n)
{
    if (b && !r->body.data) {
        if (!r->bodies) {
            r->bodies = b;
            qv_bodies_hold(b);
        }
        qv_bodies_take(b, &r->body, n + 1);
    }
    return n ? qv_body_grow(&r->body, n, n) : QV_OK;
}

void qv_response_reset_hop(qv_response *r)
{
    qv_headers_clear(&r->headers); /* reason and url with them */
    r->body.len = 0;
    if (r->body.data) r->body.data[0] = '\0';
    r->reason = NULL;
    r->url = NULL;
    r->status = 0;
}

int qv_response_push_history(qv_response *r)
{
    qv_response **h = qv_realloc(r->history, (r->nhistory + 1) * sizeof(*h));
    if (!h) return QV_ENOMEM;
    r->history = h;
    qv_response *hop = qv_response_new();
    if (!hop) return QV_ENOMEM;
    hop->status = r->status;
    hop->reason = r->reason;
    hop->headers = r->headers;
    hop->url = r->url;
    r->reason = NULL;
    r->url = NULL;
    memset(&r->headers, 0, sizeof(r->headers));
    r->history[r->nhistory++] = hop;
    return QV_OK;
}

void qv_response_free(qv_response *r)
{
    if (!r) return;
    if (r->pipe) {
        qv_pipe_close(r->pipe); /* a transfer still feeding it stops */
        qv_pipe_unref(r->pipe);
    }
    qv_response_reset_hop(r);
    qv_bodies *b = r->bodies;
    if (b)
        qv_bodies_give(b, &r->body);
    else
        qv_body_free(&r->body);
    for (size_t i = 0; i < r->nhistory; i++) qv_response_free(r->history[i]);
    qv_free(r->history);
    if (r->json) json_decref(r->json);
    qv_free(r->json_err);
    if (r->result_free) r->result_free(r->result);
    qv_free(r->result_bytes);
    qv_free(r->hook_error);
    qv_response_cookies_free(r);
    pthread_mutex_destroy(&r->json_mu);
    if (!b) {
        qv_response_shell_free(r);
        return;
    }
    to_shell(r);
    if (!qv_bodies_keep_shell(b, r)) qv_response_shell_free(r);
    qv_bodies_drop(b);
}

int qv_response_status(const qv_response *r)
{
    return r ? r->status : 0;
}

const char *qv_response_reason(const qv_response *r)
{
    return r && r->reason ? r->reason : "";
}

long long qv_response_body_bytes(const qv_response *r)
{
    if (!r) return 0;
    if (r->pipe) return qv_pipe_total(r->pipe);
    return r->body_bytes >= 0 ? r->body_bytes : (long long)r->body.len;
}

const char *qv_response_body(const qv_response *r, size_t *len)
{
    if (len) *len = r ? r->body.len : 0;
    return r && r->body.data ? r->body.data : "";
}

const char *qv_response_text(const qv_response *r)
{
    return qv_response_body(r, NULL);
}

json_t *qv_response_json(qv_response *r, int *err)
{
    if (err) *err = QV_OK;
    if (!r) {
        if (err) *err = QV_EINVAL;
        return NULL;
    }
    pthread_mutex_lock(&r->json_mu);
    if (!r->json_parsed) {
        r->json_parsed = 1;
        json_error_t je;
        r->json = json_loadb(qv_response_body(r, NULL), r->body.len, JSON_DECODE_ANY, &je);
        if (!r->json)
            r->json_err =
                qv_asprintf("invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    }
    json_t *j = r->json;
    pthread_mutex_unlock(&r->json_mu);
    if (!j && err) *err = QV_EJSON;
    return j;
}

const char *qv_response_json_error(qv_response *r)
{
    if (!r) return NULL;
    pthread_mutex_lock(&r->json_mu);
    const char *e = r->json_err;
    pthread_mutex_unlock(&r->json_mu);
    return e;
}

const char *qv_response_header(const qv_response *r, const char *name)
{
    return r ? qv_headers_get(&r->headers, name, 0) : NULL;
}

const char *qv_response_header_nth(const qv_response *r, const char *name, size_t n)
{
    return r ? qv_headers_get(&r->headers, name, n) : NULL;
}

size_t qv_response_header_count(const qv_response *r)
{
    return r ? r->headers.len : 0;
}

int qv_response_header_at(const qv_response *r, size_t i, const char **name, const char **value)
{
    if (!r || i >= r->headers.len) return QV_EINVAL;
    if (name) *name = r->headers.items[i].name;
    if (value) *value = r->headers.items[i].value;
    return QV_OK;
}

size_t qv_response_headers_copy(const qv_response *r, char *buf, size_t buflen)
{
    if (!r) return 0;
    size_t need = 0;
    for (size_t i = 0; i < r->headers.len; i++)
        need += strlen(r->headers.items[i].name) + strlen(r->headers.items[i].value) + 2;
    if (!buf || need > buflen) return need;
    for (size_t i = 0; i < r->headers.len; i++) {
        buf = stpcpy(buf, r->headers.items[i].name) + 1;
        buf = stpcpy(buf, r->headers.items[i].value) + 1;
    }
    return need;
}

const char *qv_response_url(const qv_response *r)
{
    return r && r->url ? r->url : "";
}

size_t qv_response_history_len(const qv_response *r)
{
    return r ? r->nhistory : 0;
}

const qv_response *qv_response_history(const qv_response *r, size_t i)
{
    return r && i < r->nhistory ? r->history[i] : NULL;
}

int qv_response_timing(const qv_response *r, qv_timing *out)
{
    if (!r || !out) return QV_EINVAL;
    *out = r->timing;
    return QV_OK;
}

int qv_response_http_version(const qv_response *r)
{
    return r ? r->http_version : 0;
}

int qv_response_attempts(const qv_response *r)
{
    return r ? r->attempts : 0;
}

double qv_response_elapsed_ms(const qv_response *r)
{
    return r ? r->elapsed_ms : 0;
}

int qv_response_raise_for_status(const qv_response *r)
{
    if (!r) return QV_EINVAL;
    return r->status >= 400 && r->status <= 599 ? QV_EHTTP : QV_OK;
}

int qv_response_info_get(const qv_response *r, qv_response_info *out, char *headers,
                         size_t headers_cap)
{
    if (!r || !out || !out->size) return QV_EINVAL;
    /* One walk for all three (a binding calls this for every response),
     * comparing only the names with the right first letter (most have
     * neither: a strcasecmp costs more than the rest of a header's turn). */
    size_t set_cookies = 0, content_types = 0;
    const char *content_type = NULL;
    for (size_t i = 0; i < r->headers.len; i++) {
        const qv_hdr *h = &r->headers.items[i];
        int first = h->name[0] | 0x20; /* lower case, for a letter */
        if (first == 's' && strcasecmp(h->name, "Set-Cookie") == 0) {
            set_cookies++;
        } else if (first == 'c' && strcasecmp(h->name, "Content-Type") == 0) {
            if (!content_types++) content_type = h->value;
        }
    }
    qv_response_info info = {
        .size = out->size,
        .status = r->status,
        .http_version = r->http_version,
        .attempts = r->attempts,
        .reason = qv_response_reason(r),
        .url = qv_response_url(r),
        .content_type = content_type,
        .headers_len = qv_response_headers_copy(r, headers, headers ? headers_cap : 0),
        .history_len = r->nhistory,
        .set_cookies = set_cookies,
        .elapsed_ms = r->elapsed_ms,
        .timing = r->timing,
        .content_types = content_types,
    };
    info.body = qv_response_body(r, &info.body_len);
    /* An older caller's struct is a prefix of ours: copy what it has. */
    memcpy(out, &info, out->size < sizeof info ? out->size : sizeof info);
    return QV_OK;
}

int qv_in_worker_process;

int qv_response_set_result(qv_response *r, void *result, void (*free_fn)(void *))
{
    if (!r) return QV_EINVAL;
    if (qv_in_worker_process && result) {
        /* It would stay in this process, lost to the caller: the hook's
         * future fails (qv_run_hooks), and the result stays the caller's. */
        r->result_refused = 1;
        return QV_EINVAL;
    }
    if (r->result_free && r->result != result) r->result_free(r->result);
    r->result = result;
    r->result_free = free_fn;
    return QV_OK;
}

int qv_response_set_result_bytes(qv_response *r, const void *p, size_t n)
{
    if (!r || (!p && n)) return QV_EINVAL;
    unsigned char *copy = qv_malloc(n);
    if (!copy) return QV_ENOMEM;
    if (n) memcpy(copy, p, n);
    qv_free(r->result_bytes);
    r->result_bytes = copy;
    r->result_len = n;
    return QV_OK;
}

const void *qv_response_result_bytes(const qv_response *r, size_t *n)
{
    if (n) *n = r && r->result_bytes ? r->result_len : 0;
    return r ? r->result_bytes : NULL;
}

void *qv_response_result(const qv_response *r)
{
    return r ? r->result : NULL;
}

int qv_response_set_hook_error(qv_response *r, const char *message)
{
    if (!r || !message) return QV_EINVAL;
    char *m = qv_strdup(message);
    if (!m) return QV_ENOMEM;
    qv_free(r->hook_error);
    r->hook_error = m;
    return QV_OK;
}

int qv_response_read(qv_response *r, void *buf, size_t cap, size_t *n, long timeout_ms)
{
    if (n) *n = 0;
    /* No room: an *n of 0 would say the body ended. */
    if (!r || !n || !buf || !cap) {
        if (r) r->read_error = NULL;
        return QV_EINVAL;
    }
    const char *msg = NULL;
    int rc;
    if (r->pipe) {
        rc = qv_pipe_read(r->pipe, buf, cap, n, timeout_ms, &msg);
    } else {
        size_t left = r->body.len - r->read_at;
        *n = cap < left ? cap : left;
        if (*n) memcpy(buf, r->body.data + r->read_at, *n);
        r->read_at += *n;
        rc = QV_OK;
    }
    r->read_error = rc == QV_OK || rc == QV_EWAIT_TIMEOUT ? NULL : msg ? msg : qv_strerror(rc);
    return rc;
}

const char *qv_response_read_error(const qv_response *r)
{
    return r ? r->read_error : NULL;
}
