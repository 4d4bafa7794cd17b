/* How late the thread waiting for results in order sees each one: the time
 * from a transfer's end to the return of the qv_future_result that waited
 * for it (docs/internals.md, "A waiting thread runs its results").
 *
 *   notice [-n N] [-c C] [--executor threads|loop] [--slow-every K
 *          [--slow-url URL2] [--slow-hook-ms H]] URL
 *
 * The window idiom of qv_bench: 2C futures in flight on an executor of C
 * transfers; wait for the oldest, release it, submit the next. A transfer's
 * end is its submit time plus its queued and total time
 * (qv_response_timing). Only results not done when their wait began count.
 * With --slow-every K, every Kth request goes to URL2 (a slow one), which a
 * waiting thread may be running when the result it waits for comes in;
 * with --slow-hook-ms H, every Kth request has a response hook that takes
 * H ms (a waiting thread that ran it would see its own result only after;
 * those results themselves are not counted).
 * Prints the median, 90th and 99th percentile and the largest delay.
 * Loopback URLs only; bounded in requests (N <= 1,000,000). */
#include "bench_common.h"

static double now_ms(void)
{
    return bench_now() * 1e3;
}

static int slow_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s;
    (void)r;
    long ms = *(const long *)arg;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return 0;
}

static int loopback(const char *url)
{
    return url && strncmp(url, "http://127.0.0.1", 16) == 0;
}

int main(int argc, char **argv)
{
    long n = 8000, slow_every = 0, hook_ms = 0;
    int c = 8;
    qv_executor_kind kind = QV_THREADS;
    const char *url = NULL, *slow = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            n = atol(argv[++i]);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc)
            c = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--executor") && i + 1 < argc)
            kind = strcmp(argv[++i], "loop") == 0 ? QV_LOOP : QV_THREADS;
        else if (!strcmp(argv[i], "--slow-every") && i + 1 < argc)
            slow_every = atol(argv[++i]);
        else if (!strcmp(argv[i], "--slow-url") && i + 1 < argc)
            slow = argv[++i];
        else if (!strcmp(argv[i], "--slow-hook-ms") && i + 1 < argc)
            hook_ms = atol(argv[++i]);
        else
            url = argv[i];
    }
    if (!slow) slow = url;
    if (!loopback(url) || n < 1 || n > 1000000 || c < 1 || c > 1024 || slow_every < 0 ||
        hook_ms < 0 || hook_ms > 1000 || (slow_every && !loopback(slow))) {
        fprintf(stderr, "usage: notice [-n N] [-c C] [--executor threads|loop] [--slow-every K "
                        "[--slow-url http://127.0.0.1:PORT/...] [--slow-hook-ms 0-1000]] "
                        "http://127.0.0.1:PORT/...\n");
        return 2;
    }
    qv_session *s;
    if (qv_session_new(&s, &(qv_session_opts){.size = sizeof(qv_session_opts),
                                              .executor_kind = kind,
                                              .max_workers = c}) != QV_OK)
        return 1;
    long w = 2L * c < n ? 2L * c : n;
    qv_future **ring = calloc((size_t)w, sizeof(*ring));
    double *sub = calloc((size_t)w, sizeof(*sub)), *late = calloc((size_t)n, sizeof(*late));
    if (!ring || !sub || !late) return 1;
    long next = 0, waited = 0;
    double t0 = now_ms();
    for (long i = 0; i < n; i++) {
        for (; next < n && next < i + w; next++) {
            int is_slow = slow_every && next % slow_every == slow_every - 1;
            sub[next % w] = now_ms();
            if (qv_get(s, &ring[next % w], is_slow ? slow : url,
                       .hook = is_slow && hook_ms ? slow_hook : NULL,
                       .hook_arg = &hook_ms) != QV_OK)
                return 1;
        }
        qv_future *f = ring[i % w];
        int was_done = qv_future_done(f);
        qv_response *r;
        if (qv_future_result(f, &r, 10000) != QV_OK) {
            fprintf(stderr, "notice: request %ld failed: %s\n", i, qv_future_error(f));
            return 1;
        }
        double back = now_ms();
        qv_timing t;
        qv_response_timing(r, &t);
        /* (A hooked result is late by its own hook: not counted.) */
        int hooked = hook_ms && slow_every && i % slow_every == slow_every - 1;
        if (!was_done && !hooked) late[waited++] = back - (sub[i % w] + t.queued_ms + t.total_ms);
        qv_future_release(f);
    }
    double secs = (now_ms() - t0) / 1e3;
    qsort(late, (size_t)waited, sizeof(*late), bench_cmp_double);
    printf("notice: %ld of %ld results waited for; seen late by ms: median %.3f, p90 %.3f, "
           "p99 %.3f, max %.3f; %.0f requests/s\n",
           waited, n, waited ? late[waited / 2] : 0, waited ? late[waited * 9 / 10] : 0,
           waited ? late[waited * 99 / 100] : 0, waited ? late[waited - 1] : 0, (double)n / secs);
    free(ring);
    free(sub);
    free(late);
    qv_session_free(s);
    return 0;
}
