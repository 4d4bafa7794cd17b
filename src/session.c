/* The session: copied defaults, the submit path and close/free; its cookie
 * jar is jar.c's. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static const qv_pair *copy_pairs(qv_arena *a, const qv_pair *src, int *rc)
{
    if (!src) return NULL;
    size_t n = 0;
    while (src[n].name) n++;
    qv_pair *d = qv_arena_alloc(a, (n + 1) * sizeof(*d));
    if (!d) goto nomem;
    for (size_t i = 0; i < n; i++) {
        d[i].name = qv_arena_strdup(a, src[i].name);
        d[i].value = qv_arena_strdup(a, src[i].value);
        if (!d[i].name || (src[i].value && !d[i].value)) goto nomem;
    }
    d[n].name = d[n].value = NULL;
    return d;
nomem:
    *rc = QV_ENOMEM;
    return NULL;
}

static const qv_hook *copy_hooks(qv_arena *a, const qv_hook *src, int *rc)
{
    if (!src) return NULL;
    size_t n = 0;
    while (src[n].fn) n++;
    qv_hook *d = qv_arena_alloc(a, (n + 1) * sizeof(*d));
    if (!d) {
        *rc = QV_ENOMEM;
        return NULL;
    }
    memcpy(d, src, n * sizeof(*d));
    d[n].fn = NULL;
    d[n].arg = NULL;
    return d;
}

static const char *copy_str(qv_arena *a, const char *s, int *rc)
{
    char *d = qv_arena_strdup(a, s);
    if (s && !d) *rc = QV_ENOMEM;
    return d;
}

static int validate(const qv_session_opts *o)
{
    for (const qv_pair *p = o->headers; p && p->name; p++)
        if (!qv_header_name_ok(p->name) || (p->value && !qv_header_value_ok(p->value)))
            return QV_EINVAL;
    const char *strs[] = {o->username, o->password, o->ca_file, o->proxy, o->user_agent};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        if (strs[i] && strpbrk(strs[i], "\r\n")) return QV_EINVAL;
    if ((unsigned)o->auth > QV_AUTH_BEARER || o->max_workers < 0 ||
        (unsigned)o->executor_kind > QV_PROCESSES)
        return QV_EINVAL;
    return qv_net_validate(o);
}

static int copy_opts(qv_session *s, const qv_session_opts *in)
{
    int rc = qv_opts_copy(&s->o, sizeof(s->o), in);
    if (rc || (rc = validate(&s->o))) return rc;
    if ((rc = qv_retry_resolve(&s->retry, s->o.retry))) return rc;
    s->o.retry = NULL; /* resolved into s->retry; the caller's struct is not kept */
    qv_arena *a = &s->arena;
    s->o.headers = copy_pairs(a, s->o.headers, &rc);
    s->o.params = copy_pairs(a, s->o.params, &rc);
    s->o.hooks = copy_hooks(a, s->o.hooks, &rc);
    s->o.username = copy_str(a, s->o.username, &rc);
    s->o.password = copy_str(a, s->o.password, &rc);
    s->o.ca_file = copy_str(a, s->o.ca_file, &rc);
    s->o.proxy = copy_str(a, s->o.proxy, &rc);
    s->o.user_agent =
        copy_str(a, s->o.user_agent ? s->o.user_agent : "quiver/" QV_VERSION_STRING, &rc);
    const char **net[] = {&s->o.client_cert,    &s->o.client_key,        &s->o.key_password,
                          &s->o.ca_path,        &s->o.pinned_public_key, &s->o.no_proxy,
                          &s->o.proxy_username, &s->o.proxy_password,    &s->o.proxy_ca_file,
                          &s->o.unix_socket,    &s->o.interface,         &s->o.client_cert_pem,
                          &s->o.client_key_pem};
    for (size_t i = 0; i < sizeof(net) / sizeof(net[0]); i++) *net[i] = copy_str(a, *net[i], &rc);
    s->o.proxies = copy_pairs(a, s->o.proxies, &rc);
    s->o.resolve = copy_pairs(a, s->o.resolve, &rc);
    s->o.connect_to = copy_pairs(a, s->o.connect_to, &rc);
    return rc;
}

static void session_destroy(qv_session *s)
{
    s->magic = QV_MAGIC_FREED;
    if (s->owns_ex)
        qv_executor_free(s->ex);
    else if (s->ex)
        qv_executor_unref(s->ex);
    qv_session_jar_free(s);
    curl_slist_free_all(s->default_headers);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    qv_arena_free(&s->arena);
    qv_free(s);
}

int qv_session_new(qv_session **out, const qv_session_opts *opts)
{
    if (!out) return QV_EINVAL;
    *out = NULL;
    qv_set_last_error("%s", "");
    if (qv_global_init()) return QV_ENOMEM;
    qv_session *s = qv_calloc(1, sizeof(*s));
    if (!s) return QV_ENOMEM;
    s->magic = QV_MAGIC_SESSION;
    if (pthread_mutex_init(&s->mu, NULL)) {
        qv_free(s);
        return QV_ENOMEM;
    }
    int rc = qv_cond_init(&s->cv);
    if (rc) {
        pthread_mutex_destroy(&s->mu);
        qv_free(s);
        return rc;
    }
    if (!(rc = copy_opts(s, opts))) rc = qv_session_jar_new(s);
    if (!rc)
        rc = qv_header_lines(&s->default_headers, s->o.headers, NULL, s->o.user_agent, 0, NULL);
    s->default_lines_plain = !rc && qv_redirect_lines_plain(s->default_headers);
    /* The cookie file, then the caller's cookies go into the jar; the
     * options are not kept. */
    if (!rc && s->o.cookie_file) rc = qv_session_load_cookie_file(s, s->o.cookie_file);
    s->o.cookie_file = NULL;
    for (const qv_cookie *c = s->o.cookies; !rc && c && c->name; c++)
        rc = qv_session_set_cookie(s, c->name, c->value, NULL);
    s->o.cookies = NULL;
    if (!rc && s->o.executor) {
        s->ex = s->o.executor;
        qv_executor_ref(s->ex);
    } else if (!rc) {
        qv_executor_opts eo = {
            .size = sizeof(eo), .kind = s->o.executor_kind, .max_workers = s->o.max_workers};
        rc = qv_executor_new(&s->ex, &eo);
        s->owns_ex = rc == QV_OK;
    }
    if (rc) {
        session_destroy(s);
        return rc;
    }
    s->o.executor = s->ex;
    *out = s;
    return QV_OK;
}

qv_executor *qv_session_executor(qv_session *s)
{
    if (!s) return NULL;
    QV_CHECK_SESSION(s);
    return s->ex;
}

static qv_future *live_future(qv_link *n)
{
    return qv_list_item(n, qv_future, slink);
}

static void live_unlink(qv_session *s, qv_future *f)
{
    qv_list_unlink(&s->live, &f->slink);
    if (--s->nlive == 0) pthread_cond_broadcast(&s->cv);
}

void qv_session_future_done(qv_session *s, qv_future *f)
{
    pthread_mutex_lock(&s->mu);
    live_unlink(s, f);
    pthread_mutex_unlock(&s->mu);
}

int qv_request(qv_session *s, qv_future **out, const qv_request_opts *opts)
{
    if (!out) return QV_EINVAL;
    *out = NULL;
    if (!s || !opts) return QV_EINVAL;
    QV_CHECK_SESSION(s);
    qv_request_opts o;
    int rc = qv_opts_copy(&o, sizeof(o), opts);
    if (rc) return rc;
    qv_future *f = qv_future_alloc(qv_req_room(&o, s));
    if (!f) return QV_ENOMEM;
    if ((rc = qv_req_build(&f->req, s, &o))) {
        qv_future_drop(f);
        return rc;
    }
    f->user_data = o.user_data;
    f->session = s;
    f->ex = s->ex;
    f->runner = s->ex->vt->runner;
    f->submitted_ms = qv_now_ms();

    pthread_mutex_lock(&s->mu);
    if (s->closed) {
        pthread_mutex_unlock(&s->mu);
        qv_future_drop(f);
        return QV_ESHUTDOWN;
    }
    qv_list_insert_after(&s->live, NULL, &f->slink);
    s->nlive++;
    pthread_mutex_unlock(&s->mu);

    if (f->req.url_error_msg) {
        /* Shifted error: the future exists and fails without a transfer. */
        qv_future_complete(f, QV_FAILED, QV_EURL, qv_future_note(f, f->req.url_error_msg), NULL);
        *out = f;
        return QV_OK;
    }
    qv_future_hold(f); /* the queue's reference */
    rc = qv_executor_submit(s->ex, f);
    if (rc) {
        pthread_mutex_lock(&s->mu);
        live_unlink(s, f);
        pthread_mutex_unlock(&s->mu);
        f->session = NULL;
        qv_future_drop(f);
        qv_future_drop(f);
        return rc;
    }
    *out = f;
    return QV_OK;
}

/* A queued future of the session (a first attempt or a retry) not yet asked
 * to cancel (with a reference). */
static qv_future *next_pending(qv_session *s)
{
    for (qv_link *n = qv_list_first(&s->live); n; n = qv_list_next(&s->live, n)) {
        qv_future *f = live_future(n);
        if (!atomic_load(&f->cancel_requested) && qv_future_waiting(f)) return qv_future_hold(f);
    }
    return NULL;
}

void qv_session_close(qv_session *s, int cancel_pending)
{
    if (!s) return;
    QV_CHECK_SESSION(s);
    pthread_mutex_lock(&s->mu);
    s->closed = 1;
    pthread_mutex_unlock(&s->mu);
    /* One at a time, outside the session lock (completing takes it); a
     * cancelled future leaves the list or is marked, so this ends. */
    for (qv_future *f; cancel_pending;) {
        pthread_mutex_lock(&s->mu);
        f = next_pending(s);
        pthread_mutex_unlock(&s->mu);
        if (!f) break;
        qv_future_cancel(f);
        qv_future_drop(f);
    }
    /* Every future must end, however many responses wait to be collected. */
    qv_executor_urge(s->ex, 1);
    pthread_mutex_lock(&s->mu);
    /* A streamed body that no one reads would keep its transfer, and so
     * this wait, going for ever: it stops, and its reader gets QV_ESHUTDOWN. */
    for (qv_link *n = qv_list_first(&s->live); n; n = qv_list_next(&s->live, n)) {
        qv_future *f = live_future(n);
        if (atomic_load(&f->stream_open)) qv_future_abandon_stream(f);
    }
    while (s->nlive) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    qv_executor_urge(s->ex, -1);
}

int qv_session_closing(qv_session *s)
{
    pthread_mutex_lock(&s->mu);
    int closed = s->closed;
    pthread_mutex_unlock(&s->mu);
    return closed;
}

void qv_session_free(qv_session *s)
{
    if (!s) return;
    QV_CHECK_SESSION(s);
    qv_session_close(s, 0);
    session_destroy(s);
}

qv_session *qv_session_stub_new(void)
{
    qv_session *s = qv_calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->magic = QV_MAGIC_SESSION;
    pthread_mutex_init(&s->mu, NULL);
    qv_cond_init(&s->cv);
    s->closed = 1;
    if (qv_session_jar_new(s)) {
        session_destroy(s);
        return NULL;
    }
    return s;
}

void qv_session_stub_free(qv_session *s)
{
    if (s) session_destroy(s);
}
