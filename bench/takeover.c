/* How long QV_LOOP's transfers stall when the thread that waited for a result
 * (and so drove the loop) stops waiting to compute, until the I/O thread
 * takes over (docs/internals.md, QV_LOOP).
 *
 *   takeover [-r ROUNDS] [-c C] [-w W] [--compute MS] URL
 *
 * Each round submits W requests on a QV_LOOP executor of C transfers,
 * waits for the first (the waiting thread leads), then computes for MS ms
 * without calling quiver, then collects the rest. A transfer's end is its
 * submit time plus its queued and total time (qv_response_timing); the
 * stall of a round is the time from the end of the wait to the first
 * transfer end after it. Prints the median and the largest stall, and how
 * many transfers ended during the compute (rounds where none was left
 * after the wait are not counted). Loopback URLs only: it is
 * bounded in rounds and requests. */
#include "bench_common.h"

static double now_ms(void)
{
    return bench_now() * 1e3;
}

static volatile unsigned long spin; /* the compute's work, kept */

int main(int argc, char **argv)
{
    int rounds = 20, c = 8, w = 64;
    double compute = 20;
    const char *url = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc)
            c = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-w") && i + 1 < argc)
            w = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--compute") && i + 1 < argc)
            compute = atof(argv[++i]);
        else
            url = argv[i];
    }
    if (!url || rounds < 1 || rounds > 1000 || c < 1 || w < 2 || w > 10000 ||
        strncmp(url, "http://127.0.0.1", 16) != 0) {
        fprintf(stderr, "usage: takeover [-r ROUNDS] [-c C] [-w W] [--compute MS] "
                        "http://127.0.0.1:PORT/...\n");
        return 2;
    }
    qv_session *s;
    if (qv_session_new(&s, &(qv_session_opts){.size = sizeof(qv_session_opts),
                                              .executor_kind = QV_LOOP,
                                              .max_workers = c}) != QV_OK)
        return 1;
    qv_future **fs = calloc((size_t)w, sizeof(*fs));
    double *sub = calloc((size_t)w, sizeof(*sub)), *stall = calloc((size_t)rounds, sizeof(*stall));
    long during = 0, total = 0;
    int measured = 0; /* rounds with transfers left after the wait */
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < w; i++) {
            sub[i] = now_ms();
            if (qv_get(s, &fs[i], url) != QV_OK) return 1;
        }
        if (qv_future_result(fs[0], NULL, 10000) != QV_OK) return 1;
        double released = now_ms(), first = -1;
        while (now_ms() - released < compute)
            for (int k = 0; k < 10000; k++) spin += (unsigned long)k;
        for (int i = 0; i < w; i++) {
            qv_response *resp;
            qv_timing t;
            if (qv_future_result(fs[i], &resp, 10000) != QV_OK) return 1;
            qv_response_timing(resp, &t);
            double end = sub[i] + t.queued_ms + t.total_ms;
            if (end > released && (first < 0 || end < first)) first = end;
            during += end > released && end < released + compute;
            total += i > 0;
            qv_future_release(fs[i]);
        }
        if (first >= 0) stall[measured++] = first - released;
    }
    if (measured == 0) {
        fprintf(stderr, "takeover: every transfer ended before the wait did: raise -w\n");
        return 1;
    }
    qsort(stall, (size_t)measured, sizeof(*stall), bench_cmp_double);
    printf("takeover: stall median %.2f ms, max %.2f ms over %d rounds; %ld of %ld transfers "
           "ended during %.0f ms of compute\n",
           stall[measured / 2], stall[measured - 1], measured, during, total, compute);
    free(fs);
    free(sub);
    free(stall);
    qv_session_free(s);
    return 0;
}
