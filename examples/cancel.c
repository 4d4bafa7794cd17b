/*
 * cancel — a queued request never starts; a running one is aborted at once.
 *   cancel [BASE_URL]
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include <quiver.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("QV_BASE_URL");
    if (!base) base = getenv("QV_HTTPBIN_URL");
    if (!base) base = "http://127.0.0.1:8080";
    char slow[1024];
    snprintf(slow, sizeof slow, "%s/delay/10", base);

    /* One worker: the second request waits in the queue behind the first. */
    qv_session *s;
    if (qv_session_new(&s, &(qv_session_opts){.size = sizeof(qv_session_opts), .max_workers = 1}))
        return 1;
    qv_future *running, *queued;
    if (qv_get(s, &running, slow) || qv_get(s, &queued, slow)) return 1;
    while (qv_future_state_get(running) == QV_PENDING) { /* wait until it started */
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    double t0 = now_ms();
    qv_future_cancel(queued);  /* never reaches the server */
    qv_future_cancel(running); /* aborted mid-request */
    int a = qv_future_result(running, NULL, -1), b = qv_future_result(queued, NULL, -1);
    printf("running: %s, queued: %s, after %.0f ms\n", qv_errname(a), qv_errname(b), now_ms() - t0);
    qv_future_release(running);
    qv_future_release(queued);
    qv_session_free(s);
    return a == QV_ECANCELLED && b == QV_ECANCELLED ? 0 : 1;
}
