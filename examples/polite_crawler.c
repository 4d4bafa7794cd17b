/*
 * polite_crawler — fetch a batch of URLs the way a crawler should: at most
 * 5 requests a second and 2 at a time to one host, and retries with backoff
 * for what is transient (here httpbin's /status/503 stands for a server that
 * stays busy: it runs out of attempts).
 *   polite_crawler [BASE_URL]
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <quiver.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("QV_BASE_URL");
    if (!base) base = getenv("QV_HTTPBIN_URL");
    if (!base) base = "http://127.0.0.1:8080";

    /* The limits belong to the executor: every session on it shares them. */
    qv_executor *ex;
    if (qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                 .max_workers = 8,
                                                 .per_host = {.max_concurrent = 2, .rate = 5}}))
        return 1;
    qv_session *s;
    if (qv_session_new(
            &s, &(qv_session_opts){.size = sizeof(qv_session_opts),
                                   .executor = ex,
                                   .retry = &(qv_retry){.max_retries = 2, .backoff_ms = 50}}))
        return 1;

    enum { N = 10 };
    qv_future *f[N];
    char url[1024];
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        if (i == N - 1)
            snprintf(url, sizeof url, "%s/status/503", base);
        else
            snprintf(url, sizeof url, "%s/anything/%d", base, i);
        if (qv_get(s, &f[i], url) != QV_OK) return 1;
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        qv_response *r;
        if (qv_future_result(f[i], &r, -1) == QV_OK) {
            qv_timing t;
            qv_response_timing(r, &t);
            printf("%-44s %d, %d attempt(s), %4.0f ms waiting for its host\n", qv_response_url(r),
                   qv_response_status(r), qv_response_attempts(r), t.queued_ms);
            ok += i == N - 1 ? qv_response_status(r) == 503 && qv_response_attempts(r) == 3
                             : qv_response_status(r) == 200 && qv_response_attempts(r) == 1;
        } else {
            printf("request %d failed: %s\n", i, qv_future_error(f[i]));
        }
        qv_future_release(f[i]);
    }
    /* 12 requests in all (two retries): one at once, then one per 200 ms. */
    double took = now_s() - t0;
    printf("%d requests in %.1f s\n", N, took);
    qv_session_free(s);
    qv_executor_free(ex);
    return ok == N && took >= 2.0 ? 0 : 1;
}
