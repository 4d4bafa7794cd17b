/* A session's cookie jar: a libcurl share (thread-safe through our lock
 * callbacks, also sharing the DNS cache), the cookie API, the cookies set for
 * any host, and the jar's export and merge for process pools. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *p)
{
    (void)h;
    (void)access;
    qv_share *sh = p;
    pthread_mutex_lock(&sh->mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *p)
{
    (void)h;
    qv_share *sh = p;
    pthread_mutex_unlock(&sh->mu[data]);
}

qv_share *qv_share_hold(qv_share *sh)
{
    atomic_fetch_add(&sh->refs, 1);
    return sh;
}

void qv_share_drop(qv_share *sh)
{
    if (!sh || atomic_fetch_sub(&sh->refs, 1) != 1) return;
    if (sh->sh) curl_share_cleanup(sh->sh);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_destroy(&sh->mu[i]);
    qv_free(sh);
}

static qv_share *share_new(void)
{
    qv_share *sh = qv_calloc(1, sizeof(*sh));
    if (!sh) return NULL;
    atomic_init(&sh->refs, 1);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&sh->mu[i], NULL);
    CURLSH *c = sh->sh = curl_share_init();
    if (c && !curl_share_setopt(c, CURLSHOPT_USERDATA, sh) &&
        !curl_share_setopt(c, CURLSHOPT_LOCKFUNC, share_lock) &&
        !curl_share_setopt(c, CURLSHOPT_UNLOCKFUNC, share_unlock) &&
        !curl_share_setopt(c, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE) &&
        !curl_share_setopt(c, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS))
        return sh;
    qv_share_drop(sh);
    return NULL;
}

static atomic_uint_fast64_t jar_versions;

/* A change to s's jar: a version no jar had before. */
static void jar_changed(qv_session *s)
{
    atomic_store(&s->jar_version, atomic_fetch_add(&jar_versions, 1) + 1);
}

int qv_session_jar_new(qv_session *s)
{
    jar_changed(s); /* another session's version would name the wrong jar */
    pthread_mutex_init(&s->jar_mu, NULL);
    s->share = share_new();
    return s->share ? QV_OK : QV_ENOMEM;
}

void qv_session_jar_free(qv_session *s)
{
    /* attached to the share: it goes first */
    if (s->jar_easy) curl_easy_cleanup(s->jar_easy);
    qv_share_drop(s->share);
    for (size_t i = 0; i < s->nanyhost; i++) qv_free(s->anyhost[i].name);
    qv_free(s->anyhost);
    for (size_t i = 0; i < s->nseeded; i++) qv_free(s->seeded[i]);
    qv_free(s->seeded);
    pthread_mutex_destroy(&s->jar_mu);
}

/* The session's easy handle attached to the jar, for reading or writing it,
 * made once (a process pool reads and writes the jar for every request, and
 * a new handle each time cost more than the transfer's own cookie work).
 * Returned locked: an easy handle serves one thread at a time. */
static CURL *jar_handle(qv_session *s)
{
    pthread_mutex_lock(&s->jar_mu);
    if (!s->jar_easy && (s->jar_easy = curl_easy_init()) &&
        (curl_easy_setopt(s->jar_easy, CURLOPT_SHARE, s->share->sh) ||
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
    /* (no cookie for every host: every host counts as seen) */
    if (!atomic_load(&s->anyhost_set)) return QV_OK;
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
        atomic_store(&s->anyhost_set, 1);
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
