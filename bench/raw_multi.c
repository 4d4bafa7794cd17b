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
 * for those before it.
 *
 * --socket-action (information, not a floor of bench/targets: users write
 * the perform loop): the multi is driven by curl_multi_socket_action.
 * libcurl names the sockets to watch (CURLMOPT_SOCKETFUNCTION, kept in a
 * pollfd array: no epoll_ctl calls) and when its timer is due
 * (CURLMOPT_TIMERFUNCTION); the client polls those and runs socket_action
 * for each ready socket and for the timer, so only the transfers whose
 * socket fired or whose timer expired run, where curl_multi_perform runs
 * every one (and each in PERFORM polls its own socket). */
#include "bench_common.h"

#include <poll.h>

/* --socket-action's sockets and timer. */
typedef struct sa {
    struct pollfd *fds;
    int n, cap;
    int *at; /* a socket's index in fds + 1 (0: not watched), by descriptor */
    int nat;
    double due;    /* when libcurl's timer is due (ms, bench_now's clock), < 0 none */
    int timer_set; /* the timer function was called */
} sa;

static int sa_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    (void)socketp;
    sa *a = userp;
    if (s >= a->nat) {
        int nat = s * 2 + 16;
        a->at = realloc(a->at, (size_t)nat * sizeof(*a->at));
        if (!a->at) abort();
        memset(a->at + a->nat, 0, (size_t)(nat - a->nat) * sizeof(*a->at));
        a->nat = nat;
    }
    int i = a->at[s] - 1;
    if (what == CURL_POLL_REMOVE) {
        if (i < 0) return 0;
        a->fds[i] = a->fds[--a->n];
        a->at[a->fds[i].fd] = i + 1;
        a->at[s] = 0;
        return 0;
    }
    if (i < 0) {
        if (a->n == a->cap) {
            a->cap = a->cap * 2 + 16;
            a->fds = realloc(a->fds, (size_t)a->cap * sizeof(*a->fds));
            if (!a->fds) abort();
        }
        i = a->n++;
        a->at[s] = i + 1;
        a->fds[i].fd = s;
    }
    a->fds[i].events =
        (short)((what & CURL_POLL_IN ? POLLIN : 0) | (what & CURL_POLL_OUT ? POLLOUT : 0));
    a->fds[i].revents = 0;
    return 0;
}

/* libcurl's timer, due in ms (0: now, -1: none). Its ms are rounded down:
 * one more, so that the timer has expired when socket_action runs it (run
 * early, nothing expires and libcurl calls this again only once it has). */
static int sa_timer(CURLM *multi, long ms, void *userp)
{
    (void)multi;
    sa *a = userp;
    a->due = ms < 0 ? -1 : bench_now() * 1e3 + (double)ms + (ms > 0);
    a->timer_set = 1;
    return 0;
}

/* Runs the transfers whose socket the last poll found ready, then libcurl's
 * timer if it is due. */
static int sa_run(sa *a, CURLM *multi)
{
    int running = 0;
    /* (socket_action changes fds: the ready ones are taken first) */
    int nready = 0;
    curl_socket_t ready[256];
    int ev[256];
    for (int i = 0; i < a->n && nready < 256; i++) {
        short r = a->fds[i].revents;
        if (!r) continue;
        a->fds[i].revents = 0;
        ready[nready] = a->fds[i].fd;
        ev[nready++] = (r & (POLLIN | POLLHUP | POLLERR) ? CURL_CSELECT_IN : 0) |
                       (r & (POLLOUT | POLLERR) ? CURL_CSELECT_OUT : 0) |
                       (r & POLLERR ? CURL_CSELECT_ERR : 0);
    }
    for (int i = 0; i < nready; i++)
        if (curl_multi_socket_action(multi, ready[i], ev[i], &running)) return 1;
    if (a->due < 0 || bench_now() * 1e3 < a->due) return 0;
    a->timer_set = 0;
    if (curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running)) return 1;
    /* libcurl 7.88 does not always call the timer function when its timer
     * goes (a reused connection's transfer that ran and now waits for its
     * socket had none, and none was told): asked, lest the client call
     * socket_action for nothing in every round. */
    long ms = -1;
    if (!a->timer_set) {
        curl_multi_timeout(multi, &ms);
        sa_timer(multi, ms, a);
    }
    return 0;
}

/* Polls the sockets until one is ready or the timer is due (no poll if it is). */
static void sa_wait(sa *a)
{
    int timeout = 1000;
    if (a->due >= 0) {
        double left = a->due - bench_now() * 1e3;
        if (left <= 0) return;
        timeout = (int)left + 1;
    }
    poll(a->fds, (nfds_t)a->n, timeout);
}

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
    bench_parse(&o, argc, argv, " [--submit window|all] [--socket-action]");
    int all = bench_raw_submit_all(&o, argv[0]);
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) return 1;
    CURLM *multi = curl_multi_init();
    long cache = o.c > 8 ? o.c : 8;
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, cache);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, o.max_host_conns);
    sa act = {.due = -1};
    if (o.socket_action) {
        curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, sa_socket);
        curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, &act);
        curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, sa_timer);
        curl_multi_setopt(multi, CURLMOPT_TIMERDATA, &act);
    }
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
        if (o.socket_action ? sa_run(&act, multi) : curl_multi_perform(multi, &running) != 0)
            return 1;
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
        if (o.socket_action)
            sa_wait(&act);
        else
            curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
    double secs = bench_now() - t0;
    bench_result(bench_raw_name(&o, o.socket_action ? "raw_multi_sa" : "raw_multi"), o.n, ok, secs,
                 http, conns);
    for (int i = 0; i < o.c; i++) {
        curl_easy_cleanup(x[i].easy);
        free(x[i].body.p);
    }
    curl_multi_cleanup(multi);
    free(act.fds);
    free(act.at);
    curl_slist_free_all(headers);
    if (all) bench_pool_free(&pool);
    free(recs);
    free(x);
    curl_global_cleanup();
    return ok == o.n ? 0 : 2;
}
