/* The session: copied defaults, the cookie jar (a libcurl share, thread-safe
 * through our lock callbacks, also sharing the DNS cache), the submit path
 * and close/free. */
#include "internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;
static atomic_int global_started;

static void global_init_once(void)
{
    atomic_store(&global_started, 1);
    if (!qv_allocator_is_custom()) {
        global_rc = curl_global_init(CURL_GLOBAL_ALL);
        return;
    }
    /* libcurl and jansson allocate through ours too (libcurl ignores this if
     * the program initialised it already). */
    json_set_alloc_funcs(qv_malloc, qv_free);
    global_rc =
        curl_global_init_mem(CURL_GLOBAL_ALL, qv_malloc, qv_free, qv_realloc, qv_strdup, qv_calloc);
}

void qv_global_init(void)
{
    pthread_once(&global_once, global_init_once);
}

int qv_global_started(void)
{
    return atomic_load(&global_started);
}

const char *qv_version(void)
{
    return QV_VERSION_STRING;
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *p)
{
    (void)h;
    (void)access;
    qv_session *s = p;
    pthread_mutex_lock(&s->share_mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *p)
{
    (void)h;
    qv_session *s = p;
    pthread_mutex_unlock(&s->share_mu[data]);
}

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

static atomic_uint_fast64_t jar_versions;

/* A change to s's jar: a version no jar had before. */
static void jar_changed(qv_session *s)
{
    atomic_store(&s->jar_version, atomic_fetch_add(&jar_versions, 1) + 1);
}

static int share_new(qv_session *s)
{
    jar_changed(s); /* another session's version would name the wrong jar */
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&s->share_mu[i], NULL);
    pthread_mutex_init(&s->jar_mu, NULL);
    s->share = curl_share_init();
    if (!s->share) return QV_ENOMEM;
    if (curl_share_setopt(s->share, CURLSHOPT_LOCKFUNC, share_lock) ||
        curl_share_setopt(s->share, CURLSHOPT_UNLOCKFUNC, share_unlock) ||
        curl_share_setopt(s->share, CURLSHOPT_USERDATA, s) ||
        curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE) ||
        curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS))
        return QV_ENOMEM;
    return QV_OK;
}

static void session_destroy(qv_session *s)
{
    s->magic = QV_MAGIC_FREED;
    if (s->owns_ex)
        qv_executor_free(s->ex);
    else if (s->ex)
        qv_executor_unref(s->ex);
    /* attached to the share: it goes first */
    if (s->jar_easy) curl_easy_cleanup(s->jar_easy);
    if (s->share) curl_share_cleanup(s->share);
    curl_slist_free_all(s->default_headers);
    for (size_t i = 0; i < s->nanyhost; i++) qv_free(s->anyhost[i].name);
    qv_free(s->anyhost);
    for (size_t i = 0; i < s->nseeded; i++) qv_free(s->seeded[i]);
    qv_free(s->seeded);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_destroy(&s->share_mu[i]);
    pthread_mutex_destroy(&s->jar_mu);
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
    qv_global_init();
    if (global_rc) return QV_ENOMEM;
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
    if (!(rc = copy_opts(s, opts))) rc = share_new(s);
    if (!rc)
        rc = qv_header_lines(&s->default_headers, s->o.headers, NULL, s->o.user_agent, 0, NULL);
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

static void live_unlink(qv_session *s, qv_future *f)
{
    if (f->sprev)
        f->sprev->snext = f->snext;
    else
        s->live = f->snext;
    if (f->snext) f->snext->sprev = f->sprev;
    f->sprev = f->snext = NULL;
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
    qv_future *f = qv_future_alloc();
    if (!f) return QV_ENOMEM;
    if ((rc = qv_req_build(&f->req, s, &o))) {
        qv_future_drop(f);
        return rc;
    }
    f->user_data = o.user_data;
    f->session = s;
    f->ex = s->ex;
    f->submitted_ms = qv_now_ms();

    pthread_mutex_lock(&s->mu);
    if (s->closed) {
        pthread_mutex_unlock(&s->mu);
        qv_future_drop(f);
        return QV_ESHUTDOWN;
    }
    f->snext = s->live;
    if (s->live) s->live->sprev = f;
    s->live = f;
    s->nlive++;
    pthread_mutex_unlock(&s->mu);

    if (f->req.url_error) {
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
    for (qv_future *f = s->live; f; f = f->snext)
        if (!atomic_load(&f->cancel_requested) && qv_future_waiting(f)) return qv_future_hold(f);
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
    pthread_mutex_lock(&s->mu);
    /* A streamed body that no one reads would keep its transfer, and so
     * this wait, going for ever: it stops, and its reader gets QV_ESHUTDOWN. */
    for (qv_future *f = s->live; f; f = f->snext)
        if (atomic_load(&f->stream_open)) qv_future_abandon_stream(f);
    while (s->nlive) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
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

/* The session's easy handle attached to the jar, for reading or writing it,
 * made once (a process pool reads and writes the jar for every request, and
 * a new handle each time cost more than the transfer's own cookie work).
 * Returned locked: an easy handle serves one thread at a time. */
static CURL *jar_handle(qv_session *s)
{
    pthread_mutex_lock(&s->jar_mu);
    if (!s->jar_easy && (s->jar_easy = curl_easy_init()) &&
        (curl_easy_setopt(s->jar_easy, CURLOPT_SHARE, s->share) ||
         curl_easy_setopt(s->jar_easy, CURLOPT_COOKIEFILE, ""))) {
        curl_easy_cleanup(s->jar_easy);
        s->jar_easy = NULL;
    }
    if (!s->jar_easy) pthread_mutex_unlock(&s->jar_mu);
    return s->jar_easy;
}

static void jar_done(qv_session *s)
{
    pthread_mutex_unlock(&s->jar_mu);
}

/* Finds name in the Netscape-format lines of the jar (domain, tailmatch,
 * path, secure, expires, name, value). */
static const char *jar_find(struct curl_slist *list, const char *name)
{
    size_t nlen = strlen(name);
    time_t now = time(NULL);
    for (struct curl_slist *l = list; l; l = l->next) {
        if (qv_cookie_line_expired(l->data, now)) continue;
        const char *field = l->data;
        for (int i = 0; i < 5 && field; i++)
            if ((field = strchr(field, '\t'))) field++;
        const char *tab = field ? strchr(field, '\t') : NULL;
        if (tab && (size_t)(tab - field) == nlen && strncmp(field, name, nlen) == 0) return tab + 1;
    }
    return NULL;
}

static const qv_hdr *anyhost_find(qv_session *s, const char *name)
{
    for (size_t i = 0; i < s->nanyhost; i++)
        if (strcmp(s->anyhost[i].name, name) == 0) return &s->anyhost[i];
    return NULL;
}

static int copy_out(const char *value, char *buf, size_t buflen)
{
    size_t vlen = strlen(value);
    if (vlen + 1 > buflen) return QV_ETOO_LARGE;
    memcpy(buf, value, vlen + 1);
    return QV_OK;
}

int qv_session_cookie(qv_session *s, const char *name, char *buf, size_t buflen)
{
    if (!s || !name || (!buf && buflen)) return QV_EINVAL;
    QV_CHECK_SESSION(s);
    CURL *e = jar_handle(s);
    if (!e) return QV_ENOMEM;
    struct curl_slist *list = NULL;
    int rc = QV_EINVAL;
    pthread_mutex_lock(&s->mu);
    const char *v = NULL;
    if (curl_easy_getinfo(e, CURLINFO_COOKIELIST, &list) == CURLE_OK) v = jar_find(list, name);
    if (!v && anyhost_find(s, name)) v = anyhost_find(s, name)->value;
    if (v) rc = copy_out(v, buf, buflen);
    pthread_mutex_unlock(&s->mu);
    curl_slist_free_all(list);
    jar_done(s);
    return rc;
}

static int jar_add(qv_session *s, CURL *e, const char *host, const char *name, const char *value)
{
    /* Netscape format: this host only, path /, not secure-only, session cookie. */
    char *line = qv_asprintf("%s\tFALSE\t/\tFALSE\t0\t%s\t%s", host, name, value);
    if (!line) return QV_ENOMEM;
    int rc = curl_easy_setopt(e, CURLOPT_COOKIELIST, line) == CURLE_OK ? QV_OK : QV_ENOMEM;
    qv_free(line);
    jar_changed(s); /* even on failure: what the jar holds is not known */
    return rc;
}

int qv_session_seed_cookies(qv_session *s, CURL *easy, const char *host)
{
    int rc = QV_OK;
    pthread_mutex_lock(&s->mu);
    int seen = s->nanyhost == 0;
    for (size_t i = 0; i < s->nseeded && !seen; i++) seen = strcmp(s->seeded[i], host) == 0;
    if (!seen) {
        char **seeded = qv_realloc(s->seeded, (s->nseeded + 1) * sizeof(*seeded));
        if (seeded) s->seeded = seeded;
        if (!seeded || !(s->seeded[s->nseeded] = qv_strdup(host)))
            rc = QV_ENOMEM;
        else
            s->nseeded++;
        for (size_t i = 0; i < s->nanyhost && !rc; i++)
            rc = jar_add(s, easy, host, s->anyhost[i].name, s->anyhost[i].value);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* A cookie for every host: remembered, and written for the hosts already seen. */
static int set_anyhost(qv_session *s, const char *name, const char *value)
{
    CURL *e = jar_handle(s);
    if (!e) return QV_ENOMEM;
    int rc = QV_OK;
    pthread_mutex_lock(&s->mu);
    qv_hdr *h = (qv_hdr *)anyhost_find(s, name);
    if (!h) {
        qv_hdr *a = qv_realloc(s->anyhost, (s->nanyhost + 1) * sizeof(*a));
        if (a) s->anyhost = a;
        h = a ? &s->anyhost[s->nanyhost] : NULL;
        if (h) h->name = NULL;
    }
    /* name and value share one allocation, like headers */
    char *nv = h ? qv_asprintf("%s%c%s", name, '\0', value) : NULL;
    if (!nv) {
        rc = QV_ENOMEM;
    } else {
        int added = !h->name;
        qv_free(h->name);
        h->name = nv;
        h->value = nv + strlen(name) + 1;
        s->nanyhost += added;
        for (size_t i = 0; i < s->nseeded && !rc; i++)
            rc = jar_add(s, e, s->seeded[i], name, value);
    }
    pthread_mutex_unlock(&s->mu);
    jar_done(s);
    return rc;
}

int qv_session_set_cookie(qv_session *s, const char *name, const char *value, const char *domain)
{
    if (s) QV_CHECK_SESSION(s);
    if (!s || !name || !value || !qv_header_name_ok(name) || strpbrk(value, "\r\n;\t") ||
        (domain && (!*domain || strpbrk(domain, "\r\n;\t "))))
        return QV_EINVAL;
    if (!domain) return set_anyhost(s, name, value);
    CURL *e = jar_handle(s);
    if (!e) return QV_ENOMEM;
    int rc = jar_add(s, e, domain, name, value);
    jar_done(s);
    return rc;
}

int qv_session_jar_export(qv_session *s, const char *host, uint64_t *version,
                          struct curl_slist **out)
{
    if (out) *out = NULL;
    CURL *e = jar_handle(s);
    if (!e) return QV_ENOMEM;
    int rc = host ? qv_session_seed_cookies(s, e, host) : QV_OK;
    uint64_t now = atomic_load(&s->jar_version);
    if (!rc && now != *version) {
        if (out && curl_easy_getinfo(e, CURLINFO_COOKIELIST, out) != CURLE_OK) rc = QV_ENOMEM;
        *version = rc ? 0 : now;
    }
    jar_done(s);
    return rc;
}

/* Two Netscape lines name the same cookie: same domain (field 0), path
 * (field 2) and name (field 5). */
static int same_cookie(const char *a, const char *b)
{
    for (int field = 0; field < 7; field++) {
        size_t la = strcspn(a, "\t"), lb = strcspn(b, "\t");
        int key = field == 0 || field == 2 || field == 5;
        if (key && (la != lb || strncmp(a, b, la))) return 0;
        if (!a[la] || !b[lb]) return field >= 5;
        a += la + 1;
        b += lb + 1;
    }
    return 1;
}

static int listed(const struct curl_slist *l, const char *line, int exact)
{
    for (; l; l = l->next)
        if (exact ? strcmp(l->data, line) == 0 : same_cookie(l->data, line)) return 1;
    return 0;
}

/* The line with its expiry (field 4) set in the past: libcurl drops it. */
static char *expired(const char *line)
{
    const char *p = line;
    for (int i = 0; i < 4 && p; i++) {
        p = strchr(p, '\t');
        if (p) p++;
    }
    const char *end = p ? strchr(p, '\t') : NULL;
    if (!end) return NULL;
    return qv_asprintf("%.*s1%s", (int)(p - line), line, end);
}

int qv_session_jar_merge(qv_session *s, const struct curl_slist *before,
                         const struct curl_slist *after, uint64_t *version)
{
    CURL *e = jar_handle(s);
    if (!e) {
        *version = 0;
        return QV_ENOMEM;
    }
    int rc = QV_OK, changed = 0, whole = *version == atomic_load(&s->jar_version);
    for (const struct curl_slist *l = after; l && !rc; l = l->next) {
        /* A line not taken leaves the jar short of `after`. */
        if (strpbrk(l->data, "\r\n")) {
            whole = 0;
            continue;
        }
        if (listed(before, l->data, 1)) continue;
        changed = 1;
        if (curl_easy_setopt(e, CURLOPT_COOKIELIST, l->data) != CURLE_OK) rc = QV_ENOMEM;
    }
    for (const struct curl_slist *l = before; l && !rc; l = l->next) {
        if (listed(after, l->data, 0)) continue;
        char *gone = expired(l->data);
        changed = 1;
        whole &= gone != NULL;
        if (gone && curl_easy_setopt(e, CURLOPT_COOKIELIST, gone) != CURLE_OK) rc = QV_ENOMEM;
        qv_free(gone);
    }
    if (changed) jar_changed(s);
    *version = whole && !rc ? atomic_load(&s->jar_version) : 0;
    jar_done(s);
    return rc;
}

int qv_session_jar_replace(qv_session *s, const struct curl_slist *lines)
{
    CURL *e = jar_handle(s);
    if (!e) return QV_ENOMEM;
    int rc = curl_easy_setopt(e, CURLOPT_COOKIELIST, "ALL") == CURLE_OK ? QV_OK : QV_ENOMEM;
    for (const struct curl_slist *l = lines; l && !rc; l = l->next)
        if (curl_easy_setopt(e, CURLOPT_COOKIELIST, l->data) != CURLE_OK) rc = QV_ENOMEM;
    jar_changed(s);
    jar_done(s);
    return rc;
}

qv_session *qv_session_stub_new(void)
{
    qv_session *s = qv_calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->magic = QV_MAGIC_SESSION;
    pthread_mutex_init(&s->mu, NULL);
    qv_cond_init(&s->cv);
    s->closed = 1;
    if (share_new(s)) {
        session_destroy(s);
        return NULL;
    }
    return s;
}

void qv_session_stub_free(qv_session *s)
{
    if (s) session_destroy(s);
}
