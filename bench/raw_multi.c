/* raw_multi: the floor under QV_LOOP. One thread, one curl_multi, C easy
 * handles made once and reused: C transfers are kept in flight, and when one
 * finishes its handle is checked, removed and added again for the next
 * request, until N requests are done.
 *
 * The multi and easy settings are the ones QV_LOOP uses for the transport:
 * CURLPIPE_MULTIPLEX, a connection cache of max(C, 8), PIPEWAIT on https
 * URLs only, no per-host connection cap unless --max-host-connections.
 * Only what a minimal client needs is set on the easy handles (URL, write
 * callback, CA, NOSIGNAL); the body is counted, not kept. --same-request
 * sends the request quiver sends (its header lines: the floor of bench/targets)
 * and keeps each body in memory as quiver does (bench_keep_write),
 * --like-quiver also sets the other libcurl options quiver sets (see bench_common.h).
 *
 * --submit all: the submit-all-then-collect idiom's floor. A record per
 * request is made up front, each body is kept in its record (in a buffer of
 * its Content-Length that the client recycles), and responses are collected
 * (checked, buffer given back) in submission order, a finished one waiting
 * for those before it. */
#include "bench_common.h"

typedef struct xfer {
    CURL *easy;
    bench_body body; /* --submit window */
    bench_rec *rec;  /* --submit all: the request the handle is doing */
    char errbuf[CURL_ERROR_SIZE];
} xfer;

/* Points handle t at the next request: its record (--submit all) or an empty body. */
static void next_request(xfer *t, bench_rec *recs, bench_pool *pool, long i)
{
    if (recs) {
        t->rec = &recs[i];
        bench_rec_start(t->rec, t->easy, pool);
    } else {
        t->body.len = 0;
    }
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(&o, argc, argv, " [--submit window|all]");
    int all = bench_raw_submit_all(&o, argv[0]);
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) return 1;
    CURLM *multi = curl_multi_init();
    long cache = o.c > 8 ? o.c : 8;
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, cache);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, o.max_host_conns);
    int https = strncmp(o.url, "https:", 6) == 0;

    xfer *x = calloc((size_t)o.c, sizeof(*x));
    if (!x) return 1;
    bench_share share;
    if (o.like_quiver && bench_share_init(&share)) return 1;
    struct curl_slist *headers = NULL;
    if (o.same_request && !(headers = bench_same_request_headers())) return 1;
    double t0 = bench_now();
    bench_rec *recs = NULL;
    bench_pool pool;
    if (all && (!(recs = calloc((size_t)o.n, sizeof(*recs))) || bench_pool_init(&pool, 4 * o.c)))
        return 1;
    long started = 0, done = 0, collected = 0, ok = 0, conns = 0;
    int http = 0, bad = 0;
    for (int i = 0; i < o.c && started < o.n; i++) {
        CURL *e = x[i].easy = curl_easy_init();
        if (!e) return 1;
        curl_easy_setopt(e, CURLOPT_URL, o.url);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, all ? bench_rec_write : bench_window_write(&o));
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &x[i].body);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &x[i]);
        if (https) curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
        if (o.ca) curl_easy_setopt(e, CURLOPT_CAINFO, o.ca);
        if (o.same_request) bench_same_request(e, headers);
        if (o.like_quiver) bench_like_quiver(e, &share, x[i].errbuf);
        next_request(&x[i], recs, &pool, started);
        if (curl_multi_add_handle(multi, e)) return 1;
        started++;
    }
    while (done < o.n) {
        int running = 0;
        if (curl_multi_perform(multi, &running)) return 1;
        int left;
        for (CURLMsg *m; (m = curl_multi_info_read(multi, &left));) {
            if (m->msg != CURLMSG_DONE) continue;
            CURL *e = m->easy_handle;
            char *priv = NULL;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
            xfer *t = (xfer *)(void *)priv;
            long status = 0, nc = 0, ver = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
            curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &nc);
            curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &ver);
            conns += nc;
            if (!http) http = bench_http_version(ver);
            done++;
            if (all) {
                t->rec->result = m->data.result;
                t->rec->status = status;
                atomic_store_explicit(&t->rec->done, 1, memory_order_relaxed);
            } else if (m->data.result == CURLE_OK && status == 200 && (long)t->body.len == o.size) {
                ok++;
            } else if (bad++ < 5) {
                fprintf(stderr, "raw_multi: bad response: %s, status %ld, %zu bytes\n",
                        curl_easy_strerror(m->data.result), status, t->body.len);
            }
            curl_multi_remove_handle(multi, e);
            if (started < o.n) {
                next_request(t, recs, &pool, started);
                if (curl_multi_add_handle(multi, e)) return 1;
                started++;
            }
        }
        while (all && collected < o.n &&
               atomic_load_explicit(&recs[collected].done, memory_order_relaxed))
            ok += bench_rec_collect("raw_multi", &recs[collected++], o.size, &bad);
        if (done >= o.n) break;
        if (bench_now() - t0 > o.deadline_s) {
            fprintf(stderr, "raw_multi: deadline of %.0f s passed (%ld of %ld done)\n",
                    o.deadline_s, done, o.n);
            return 3;
        }
        curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
    double secs = bench_now() - t0;
    bench_result(bench_raw_name(&o, "raw_multi"), o.n, ok, secs, http, conns);
    for (int i = 0; i < o.c; i++) {
        curl_easy_cleanup(x[i].easy);
        free(x[i].body.p);
    }
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    if (all) bench_pool_free(&pool);
    free(recs);
    free(x);
    curl_global_cleanup();
    return ok == o.n ? 0 : 2;
}
