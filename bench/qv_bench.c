/* qv_bench: the quiver client. One executor (--executor loop | threads |
 * processes) with max_workers = C, so at most C transfers run at once,
 * exactly like the raw clients; one session on it. How requests are submitted (--submit):
 *
 *   window    (default) a sliding window of W futures (--window, default
 *             2*C): submit W, then in submission order wait for the oldest
 *             with qv_future_result, check it, release it and submit the
 *             next. The executor always has C running and up to C queued, so
 *             it never starves, while memory stays bounded (W futures), and
 *             it is the plain "submit, then result()" code a user writes.
 *   all       submit all N at once, then collect them in order (quiver
 *             queues what is over C; memory grows with N).
 *   callback  C futures, each with a done callback that checks the response,
 *             releases the future and submits the next request from the
 *             completing thread; the main thread only waits for the end.
 *   overhead  no network: N times qv_get on an unsupported-scheme URL
 *             (ftp://), which quiver accepts and completes at once as a
 *             shifted QV_EURL error, then qv_future_result and release. This
 *             is the library's own cost of one future (option copy, request
 *             record and URL parse, future alloc, session bookkeeping,
 *             completion, wait, free) without the executor hand-off or any
 *             libcurl transfer. Prints ns per future.
 *
 * Every response is checked: QV_OK, status 200, body size = -s. */
#include "bench_common.h"

#include <pthread.h>
#include <quiver.h>
#include <stdatomic.h>

typedef struct run {
    const bench_opts *o;
    qv_session *s;
    atomic_long submitted, claimed, done, ok, bad;
    atomic_int http;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} run;

static int check(run *R, qv_future *f)
{
    qv_response *r = NULL;
    int rc = qv_future_result(f, &r, -1);
    size_t len = 0;
    if (rc == QV_OK) qv_response_body(r, &len);
    if (rc == QV_OK && qv_response_status(r) == 200 && (long)len == R->o->size) {
        if (!atomic_load_explicit(&R->http, memory_order_relaxed))
            atomic_store(&R->http, qv_response_http_version(r));
        atomic_fetch_add_explicit(&R->ok, 1, memory_order_relaxed);
        return 1;
    }
    if (atomic_fetch_add(&R->bad, 1) < 5) {
        if (rc == QV_OK)
            fprintf(stderr, "qv_bench: bad response: status %d, %zu bytes\n", qv_response_status(r),
                    len);
        else
            fprintf(stderr, "qv_bench: request failed: %s\n", qv_future_error(f));
    }
    return 0;
}

static qv_future *submit(run *R)
{
    qv_future *f = NULL;
    int rc = qv_get(R->s, &f, R->o->url);
    if (rc != QV_OK) {
        fprintf(stderr, "qv_bench: submit failed: %s\n", qv_strerror(rc));
        exit(1);
    }
    atomic_fetch_add_explicit(&R->submitted, 1, memory_order_relaxed);
    return f;
}

static int past_deadline(run *R, double t0)
{
    if (bench_now() - t0 <= R->o->deadline_s) return 0;
    fprintf(stderr, "qv_bench: deadline of %.0f s passed (%ld of %ld done)\n", R->o->deadline_s,
            atomic_load(&R->done), R->o->n);
    return 1;
}

/* Waits for f, giving up at the deadline (the process then exits: the
 * outstanding futures are not cleaned up). */
static int wait_bounded(run *R, qv_future *f, double t0)
{
    while (qv_future_wait(f, 1000) == QV_EWAIT_TIMEOUT)
        if (past_deadline(R, t0)) return 0;
    return 1;
}

static int run_window(run *R, long w, double t0)
{
    const bench_opts *o = R->o;
    if (w > o->n) w = o->n;
    if (w < 1) w = 1;
    qv_future **ring = calloc((size_t)w, sizeof(*ring));
    if (!ring) return 1;
    long next = 0;
    for (; next < w; next++) ring[next] = submit(R);
    for (long i = 0; i < o->n; i++) {
        qv_future *f = ring[i % w];
        if (!wait_bounded(R, f, t0)) return 3;
        check(R, f);
        qv_future_release(f);
        atomic_fetch_add_explicit(&R->done, 1, memory_order_relaxed);
        if (next < o->n) ring[next++ % w] = submit(R);
    }
    free(ring);
    return 0;
}

static void on_done(qv_future *f, void *arg)
{
    run *R = arg;
    check(R, f);
    /* The executor still holds its own reference while callbacks run. */
    qv_future_release(f);
    if (atomic_fetch_add(&R->claimed, 1) < R->o->n) {
        qv_future *g = submit(R);
        qv_future_add_done_callback(g, on_done, R);
    }
    if (atomic_fetch_add(&R->done, 1) + 1 == R->o->n) {
        pthread_mutex_lock(&R->mu);
        pthread_cond_broadcast(&R->cv);
        pthread_mutex_unlock(&R->mu);
    }
}

static int run_callback(run *R, double t0)
{
    const bench_opts *o = R->o;
    /* Reserve the first C submissions here; callbacks take the rest. */
    atomic_store(&R->claimed, o->c < o->n ? o->c : o->n);
    for (int i = 0; i < o->c && i < o->n; i++) {
        qv_future *f = submit(R);
        qv_future_add_done_callback(f, on_done, R);
    }
    pthread_mutex_lock(&R->mu);
    while (atomic_load(&R->done) < o->n) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&R->cv, &R->mu, &ts);
        if (atomic_load(&R->done) < o->n && past_deadline(R, t0)) {
            pthread_mutex_unlock(&R->mu);
            return 3;
        }
    }
    pthread_mutex_unlock(&R->mu);
    return 0;
}

static int run_overhead(run *R)
{
    const bench_opts *o = R->o;
    for (long i = 0; i < o->n; i++) {
        qv_future *f = NULL;
        if (qv_get(R->s, &f, "ftp://127.0.0.1/never-fetched") != QV_OK) return 1;
        if (qv_future_result(f, NULL, -1) == QV_EURL) atomic_fetch_add(&R->ok, 1);
        qv_future_release(f);
    }
    return 0;
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(&o, argc, argv,
                " [--executor loop|threads|processes] [--submit window|all|callback|overhead] "
                "[--window W]");
    qv_executor_kind kind;
    if (strcmp(o.executor, "loop") == 0)
        kind = QV_LOOP;
    else if (strcmp(o.executor, "threads") == 0)
        kind = QV_THREADS;
    else if (strcmp(o.executor, "processes") == 0)
        kind = QV_PROCESSES; /* made first, before any thread exists, as it must be */
    else
        bench_usage(argv[0], " --executor must be loop, threads or processes");

    qv_executor *ex = NULL;
    int rc =
        qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                 .kind = kind,
                                                 .max_workers = o.c,
                                                 .max_host_connections = (int)o.max_host_conns});
    if (rc) {
        fprintf(stderr, "qv_bench: qv_executor_new: %s\n", qv_strerror(rc));
        return 1;
    }
    qv_session *s = NULL;
    rc = qv_session_new(
        &s, &(qv_session_opts){.size = sizeof(qv_session_opts), .executor = ex, .ca_file = o.ca});
    if (rc) {
        fprintf(stderr, "qv_bench: qv_session_new: %s\n", qv_strerror(rc));
        return 1;
    }
    run R = {.o = &o, .s = s};
    pthread_mutex_init(&R.mu, NULL);
    pthread_cond_init(&R.cv, NULL);

    char name[64];
    snprintf(name, sizeof(name), "qv_%s_%s", o.executor, o.submit);
    double t0 = bench_now();
    if (strcmp(o.submit, "window") == 0)
        rc = run_window(&R, o.window > 0 ? o.window : 2L * o.c, t0);
    else if (strcmp(o.submit, "all") == 0)
        rc = run_window(&R, o.n, t0);
    else if (strcmp(o.submit, "callback") == 0)
        rc = run_callback(&R, t0);
    else if (strcmp(o.submit, "overhead") == 0)
        rc = run_overhead(&R);
    else
        bench_usage(argv[0], " --submit must be window, all, callback or overhead");
    double secs = bench_now() - t0;
    if (rc) return rc; /* deadline: exit without draining */

    qv_executor_stats st;
    qv_executor_stats_get(ex, &st);
    long ok = atomic_load(&R.ok);
    if (strcmp(o.submit, "overhead") == 0)
        printf("client=%s requests=%ld ok=%ld seconds=%.6f ns_per_future=%.1f\n", name, o.n, ok,
               secs, o.n ? secs * 1e9 / (double)o.n : 0.0);
    else
        bench_result(name, o.n, ok, secs, atomic_load(&R.http), (long)st.connections_opened);
    fflush(stdout);
    qv_session_free(s);
    qv_executor_free(ex);
    return ok == o.n ? 0 : 2;
}
