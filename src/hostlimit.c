/* Per-host limits of an executor: how many requests to one host may be in
 * flight, and how fast they may start (a token bucket), across every session
 * that shares the executor. A queued future whose host is at its limit is
 * parked on that host, in order; the executor's pop takes parked futures
 * first once their host has room again, so each future is moved at most
 * once and a blocked host never makes the others wait. Everything here runs
 * under the executor's lock. */
#include "internal.h"

#include <math.h>
#include <string.h>
#include <strings.h>

struct qv_host {
    qv_host *next; /* in its hash bucket */
    qv_link plink; /* in the list of hosts with parked futures */
    qv_list parked;
    int inflight;
    int override; /* limits of its own, from qv_executor_set_host_limits */
    qv_host_limits own;
    double tokens, refilled_ms;
    size_t keylen;
    char key[]; /* "name:port", or "name" for an any-port override */
};

static const qv_host_limits *limits_of(const qv_executor *ex, const qv_host *h)
{
    return h->override ? &h->own : &ex->o.per_host;
}

static int limited(const qv_host_limits *l)
{
    return l->max_concurrent > 0 || l->rate > 0;
}

static void update_active(qv_executor *ex)
{
    qv_hosts *t = &ex->hosts;
    t->active = limited(&ex->o.per_host) || t->noverrides > 0;
}

void qv_hosts_init(qv_executor *ex)
{
    update_active(ex);
}

static uint64_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static qv_host *find(const qv_hosts *t, const char *key, size_t n, int override)
{
    if (!t->nbuckets) return NULL;
    for (qv_host *h = t->buckets[hash(key, n) & (t->nbuckets - 1)]; h; h = h->next)
        if (h->keylen == n && h->override == override && memcmp(h->key, key, n) == 0) return h;
    return NULL;
}

static int grow(qv_hosts *t)
{
    size_t nb = t->nbuckets ? t->nbuckets * 2 : 64;
    qv_host **b = qv_calloc(nb, sizeof(*b));
    if (!b) return QV_ENOMEM;
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (qv_host *h = t->buckets[i], *next; h; h = next) {
            next = h->next;
            size_t j = hash(h->key, h->keylen) & (nb - 1);
            h->next = b[j];
            b[j] = h;
        }
    }
    qv_free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
    return QV_OK;
}

static qv_host *add(qv_executor *ex, const char *key, size_t n, double now)
{
    qv_hosts *t = &ex->hosts;
    if (t->n >= t->nbuckets && grow(t)) return NULL;
    qv_host *h = qv_calloc(1, sizeof(*h) + n + 1);
    if (!h) return NULL;
    memcpy(h->key, key, n);
    h->keylen = n;
    h->refilled_ms = now;
    h->tokens = -1; /* full, once its limits are known */
    size_t j = hash(key, n) & (t->nbuckets - 1);
    h->next = t->buckets[j];
    t->buckets[j] = h;
    t->n++;
    return h;
}

static void unlink_host(qv_hosts *t, qv_host *h)
{
    qv_host **pp = &t->buckets[hash(h->key, h->keylen) & (t->nbuckets - 1)];
    while (*pp != h) pp = &(*pp)->next;
    *pp = h->next;
    t->n--;
    qv_free(h);
}

static double burst_of(const qv_host_limits *l)
{
    return l->burst > 0 ? (double)l->burst : 1.0;
}

/* Tokens now (the bucket refills at `rate` per second up to its burst). */
static void refill(const qv_executor *ex, qv_host *h, double now)
{
    const qv_host_limits *l = limits_of(ex, h);
    double cap = burst_of(l);
    if (h->tokens < 0 || l->rate <= 0) {
        h->tokens = cap;
    } else {
        h->tokens += (now - h->refilled_ms) * l->rate / 1000.0;
        if (h->tokens > cap) h->tokens = cap;
    }
    h->refilled_ms = now;
}

static int idle(const qv_executor *ex, qv_host *h, double now)
{
    if (h->inflight || !qv_list_empty(&h->parked) || h->override) return 0;
    refill(ex, h, now);
    return h->tokens >= burst_of(limits_of(ex, h));
}

/* Frees the entries that hold nothing (no request in flight or parked, a
 * full bucket): a crawler's thousands of hosts do not pile up. Amortised:
 * runs when the table has doubled since the last sweep. */
static void sweep(qv_executor *ex, double now)
{
    qv_hosts *t = &ex->hosts;
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (qv_host *h = t->buckets[i], *next; h; h = next) {
            next = h->next;
            if (idle(ex, h, now)) unlink_host(t, h);
        }
    }
    t->sweep_at = t->n * 2 > 256 ? t->n * 2 : 256;
}

/* "name:port" of an http(s) URL, lowercased, into buf; the name's length in
 * *namelen. 0 if the URL has no usable authority (it fails later anyway). */
static size_t host_key(const char *url, char *buf, size_t cap, size_t *namelen)
{
    int tls = strncasecmp(url, "https://", 8) == 0;
    if (!tls && strncasecmp(url, "http://", 7) != 0) return 0;
    const char *h = url + (tls ? 8 : 7), *end = h + strcspn(h, "/?#");
    const char *at = NULL;
    for (const char *p = h; p < end; p++)
        if (*p == '@') at = p;
    if (at) h = at + 1;
    const char *colon = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb) return 0;
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
    }
    const char *name_end = colon ? colon : end;
    const char *port = colon && colon + 1 < end ? colon + 1 : tls ? "443" : "80";
    size_t plen = colon && colon + 1 < end ? (size_t)(end - port) : strlen(port);
    size_t nlen = (size_t)(name_end - h);
    if (!nlen || nlen + 1 + plen >= cap) return 0;
    for (size_t i = 0; i < nlen; i++) {
        char c = h[i];
        buf[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    buf[nlen] = ':';
    memcpy(buf + nlen + 1, port, plen);
    *namelen = nlen;
    return nlen + 1 + plen;
}

/* The entry that limits f's host, made on first use; NULL if the host has
 * no limits (or on a failed allocation: better unlimited than stuck). */
static qv_host *lookup(qv_executor *ex, const qv_future *f, double now)
{
    qv_hosts *t = &ex->hosts;
    char key[300];
    size_t namelen, n = host_key(f->req.url, key, sizeof(key), &namelen);
    if (!n) return NULL;
    qv_host *h = find(t, key, n, 1);
    if (!h) h = find(t, key, namelen, 1);
    if (h) return limited(&h->own) ? h : NULL;
    if (!limited(&ex->o.per_host)) return NULL;
    if ((h = find(t, key, n, 0))) return h;
    if (t->n >= t->sweep_at) sweep(ex, now);
    return add(ex, key, n, now);
}

/* Room for one more request now? If only the bucket is empty, *wake_at
 * gets the moment it holds a token again. */
static int ready(const qv_executor *ex, qv_host *h, double now, double *wake_at)
{
    const qv_host_limits *l = limits_of(ex, h);
    if (l->max_concurrent > 0 && h->inflight >= l->max_concurrent) return 0;
    if (l->rate <= 0) return 1;
    refill(ex, h, now);
    if (h->tokens >= 1) return 1;
    double at = now + (1 - h->tokens) * 1000.0 / l->rate;
    if (at < *wake_at) *wake_at = at;
    return 0;
}

static void acquire(const qv_executor *ex, qv_host *h, qv_future *f)
{
    h->inflight++;
    if (limits_of(ex, h)->rate > 0) h->tokens -= 1;
    f->host = h;
    atomic_store(&f->host_held, 1);
}

static void park(qv_executor *ex, qv_host *h, qv_future *f)
{
    qv_hosts *t = &ex->hosts;
    f->qwhere = QV_Q_PARKED;
    f->host = h;
    if (qv_list_empty(&h->parked)) qv_list_insert_tail(&t->parked, &h->plink); /* its first */
    qv_list_insert_tail(&h->parked, &f->q);
}

void qv_hosts_unpark(qv_executor *ex, qv_future *f)
{
    qv_host *h = f->host;
    qv_list_unlink(&h->parked, &f->q);
    f->host = NULL;
    f->qwhere = QV_Q_NONE;
    if (qv_list_empty(&h->parked)) qv_list_unlink(&ex->hosts.parked, &h->plink);
}

qv_future *qv_hosts_take_parked(qv_executor *ex, double now, double *wake_at)
{
    qv_hosts *t = &ex->hosts;
    for (qv_link *n = qv_list_first(&t->parked); n; n = qv_list_next(&t->parked, n)) {
        qv_host *h = qv_list_item(n, qv_host, plink);
        if (!ready(ex, h, now, wake_at)) continue;
        qv_future *f = qv_future_of(qv_list_first(&h->parked));
        qv_hosts_unpark(ex, f);
        acquire(ex, h, f);
        /* Round robin: the next pop looks at the other hosts first. */
        if (!qv_list_empty(&h->parked) && qv_list_next(&t->parked, n)) {
            qv_list_unlink(&t->parked, n);
            qv_list_insert_tail(&t->parked, n);
        }
        return f;
    }
    return NULL;
}

int qv_hosts_admit(qv_executor *ex, qv_future *f, double now, double *wake_at)
{
    qv_host *h = lookup(ex, f, now);
    if (!h) return 1;
    /* Behind futures already parked on the host, in order. */
    if (qv_list_empty(&h->parked) && ready(ex, h, now, wake_at)) {
        acquire(ex, h, f);
        return 1;
    }
    park(ex, h, f);
    qv_executor_note(ex, QV_SATURATED_HOST);
    return 0;
}

qv_future *qv_hosts_any_parked(qv_executor *ex)
{
    qv_host *h = qv_list_item(qv_list_first(&ex->hosts.parked), qv_host, plink);
    if (!h) return NULL;
    qv_future *f = qv_future_of(qv_list_first(&h->parked));
    qv_hosts_unpark(ex, f);
    return f;
}

int qv_hosts_release_locked(qv_future *f)
{
    qv_host *h = f->host;
    f->host = NULL;
    h->inflight--;
    return !qv_list_empty(&h->parked);
}

int qv_executor_set_host_limits(qv_executor *ex, const char *host, const qv_host_limits *limits)
{
    if (!ex || !host || !*host || strlen(host) > 260 || strpbrk(host, "/?#@ \t\r\n"))
        return QV_EINVAL;
    QV_CHECK_EXECUTOR(ex);
    if (limits && (limits->max_concurrent < 0 || limits->burst < 0 || !(limits->rate >= 0) ||
                   isinf(limits->rate)))
        return QV_EINVAL;
    char key[300];
    size_t n = strlen(host);
    for (size_t i = 0; i <= n; i++) {
        char c = host[i];
        key[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    int rc = QV_OK;
    pthread_mutex_lock(&ex->mu);
    qv_hosts *t = &ex->hosts;
    qv_host *h = find(t, key, n, 1);
    if (limits) {
        if (!h && !(h = add(ex, key, n, qv_now_ms()))) {
            rc = QV_ENOMEM;
        } else {
            if (!h->override) t->noverrides++;
            h->override = 1;
            h->own = *limits;
            h->tokens = -1;
        }
    } else if (h) {
        /* Requests already counted here keep their entry until they end. */
        h->override = 0;
        t->noverrides--;
        if (idle(ex, h, qv_now_ms())) unlink_host(t, h);
    }
    update_active(ex);
    /* New limits may let parked futures go. */
    if (!qv_list_empty(&t->parked)) ex->vt->notify(ex);
    pthread_mutex_unlock(&ex->mu);
    return rc;
}

void qv_hosts_free(qv_executor *ex)
{
    qv_hosts *t = &ex->hosts;
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (qv_host *h = t->buckets[i], *next; h; h = next) {
            next = h->next;
            qv_free(h);
        }
    }
    qv_free(t->buckets);
    memset(t, 0, sizeof(*t));
}
