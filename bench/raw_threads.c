/* raw_threads: the floor under QV_THREADS. C threads, each with one easy
 * handle for its whole life, each doing its share of the N requests one
 * after the other with curl_easy_perform (so each thread keeps its own
 * connection alive, HTTP/1.1 or HTTP/2 with one stream at a time). Every
 * response is checked. Only what a minimal client needs is set (URL, write
 * callback, CA, NOSIGNAL); the body is counted, not kept. --same-request
 * sends the request quiver sends (its header lines: the floor of bench/targets)
 * and keeps each body in memory as quiver does (bench_keep_write),
 * --like-quiver also sets the other libcurl options quiver sets (see bench_common.h).
 *
 * --submit all: the submit-all-then-collect idiom's floor. A record per
 * request is made up front; the threads take the next request from a shared
 * counter and keep its body in its record (in a recycled buffer, see
 * bench_pool); the main thread collects the records in submission order
 * (checks them, gives the buffers back), sleeping on a condition variable
 * only when the next one is not done yet. */
#include "bench_common.h"

#include <pthread.h>

/* What the threads share in --submit all. */
typedef struct queue {
    bench_rec *recs;
    bench_pool pool;     /* the bodies' buffers */
    atomic_long next;    /* the next request a thread takes */
    atomic_long waiting; /* the record the main thread sleeps on, or -1 */
    pthread_mutex_t mu;
    pthread_cond_t cv;
} queue;

typedef struct worker {
    pthread_t th;
    const bench_opts *o;
    long todo, ok, conns;
    bench_body body; /* --submit window */
    int http;
    int failed_setup;
    int timed_out;
    bench_share *share;
    struct curl_slist *headers; /* --same-request */
    queue *q;                   /* --submit all */
    char errbuf[CURL_ERROR_SIZE];
} worker;

/* Publishes record i and wakes the main thread if it sleeps on it. The
 * store and the load are sequentially consistent, as are the main thread's
 * store of waiting and load of done: one of the two sees the other's. */
static void finish(queue *q, long i)
{
    atomic_store(&q->recs[i].done, 1);
    if (atomic_load(&q->waiting) == i) {
        pthread_mutex_lock(&q->mu);
        pthread_cond_signal(&q->cv);
        pthread_mutex_unlock(&q->mu);
    }
}

/* Waits until record i is done; 0 if the deadline passed first. */
static int wait_rec(queue *q, long i, double t0, double deadline_s)
{
    if (atomic_load(&q->recs[i].done)) return 1;
    pthread_mutex_lock(&q->mu);
    atomic_store(&q->waiting, i);
    while (!atomic_load(&q->recs[i].done) && bench_now() - t0 <= deadline_s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&q->cv, &q->mu, &ts);
    }
    atomic_store(&q->waiting, -1);
    pthread_mutex_unlock(&q->mu);
    return atomic_load(&q->recs[i].done);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    const bench_opts *o = w->o;
    queue *q = w->q;
    CURL *e = curl_easy_init();
    if (!e) {
        w->failed_setup = 1;
        return NULL;
    }
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, q ? bench_rec_write : bench_window_write(o));
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &w->body);
    if (o->ca) curl_easy_setopt(e, CURLOPT_CAINFO, o->ca);
    if (w->headers) bench_same_request(e, w->headers);
    if (w->share) bench_like_quiver(e, w->share, w->errbuf);
    int bad = 0;
    double t0 = bench_now();
    for (long i = 0; q || i < w->todo; i++) {
        if (bench_now() - t0 > o->deadline_s) {
            fprintf(stderr, "raw_threads: deadline of %.0f s passed\n", o->deadline_s);
            w->timed_out = 1;
            break;
        }
        bench_rec *r = NULL;
        long ri = 0;
        if (q) {
            if ((ri = atomic_fetch_add(&q->next, 1)) >= o->n) break;
            r = &q->recs[ri];
            bench_rec_start(r, e, &q->pool);
        }
        w->body.len = 0;
        CURLcode cc = curl_easy_perform(e);
        long status = 0, nc = 0, ver = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &nc);
        curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &ver);
        w->conns += nc;
        if (!w->http) w->http = bench_http_version(ver);
        if (r) {
            r->result = cc;
            r->status = status;
            finish(q, ri);
        } else if (cc == CURLE_OK && status == 200 && (long)w->body.len == o->size) {
            w->ok++;
        } else if (bad++ < 5) {
            fprintf(stderr, "raw_threads: bad response: %s, status %ld, %zu bytes\n",
                    curl_easy_strerror(cc), status, w->body.len);
        }
    }
    curl_easy_cleanup(e);
    free(w->body.p);
    return NULL;
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(&o, argc, argv, " [--submit window|all]");
    int all = bench_raw_submit_all(&o, argv[0]);
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) return 1;
    worker *w = calloc((size_t)o.c, sizeof(*w));
    if (!w) return 1;
    bench_share share;
    if (o.like_quiver && bench_share_init(&share)) return 1;
    struct curl_slist *headers = NULL;
    if (o.same_request && !(headers = bench_same_request_headers())) return 1;
    /* A transfer that hangs is stopped from outside (bench/run runs every
     * client under timeout); the deadline is checked between requests. */
    double t0 = bench_now();
    queue q = {.waiting = -1};
    if (all) {
        if (!(q.recs = calloc((size_t)o.n, sizeof(*q.recs))) || bench_pool_init(&q.pool, 4 * o.c))
            return 1;
        pthread_mutex_init(&q.mu, NULL);
        pthread_cond_init(&q.cv, NULL);
    }
    for (int i = 0; i < o.c; i++) {
        w[i].o = &o;
        w[i].share = o.like_quiver ? &share : NULL;
        w[i].headers = headers;
        w[i].q = all ? &q : NULL;
        w[i].todo = o.n / o.c + (i < o.n % o.c ? 1 : 0);
        if (pthread_create(&w[i].th, NULL, worker_main, &w[i])) return 1;
    }
    long ok = 0, conns = 0;
    int http = 0, setup = 0, timed_out = 0, bad = 0;
    for (long i = 0; all && i < o.n; i++) {
        if (!wait_rec(&q, i, t0, o.deadline_s)) {
            fprintf(stderr, "raw_threads: deadline of %.0f s passed (%ld of %ld collected)\n",
                    o.deadline_s, i, o.n);
            return 3; /* the workers may be stuck in a transfer: no join */
        }
        ok += bench_rec_collect("raw_threads", &q.recs[i], o.size, &bad);
    }
    for (int i = 0; i < o.c; i++) {
        pthread_join(w[i].th, NULL);
        ok += w[i].ok;
        conns += w[i].conns;
        setup |= w[i].failed_setup;
        timed_out |= w[i].timed_out;
        if (!http) http = w[i].http;
    }
    double secs = bench_now() - t0;
    bench_result(bench_raw_name(&o, "raw_threads"), o.n, ok, secs, http, conns);
    curl_slist_free_all(headers);
    if (all) bench_pool_free(&q.pool);
    free(q.recs);
    free(w);
    curl_global_cleanup();
    if (setup) return 1;
    if (timed_out) return 3;
    return ok == o.n ? 0 : 2;
}
