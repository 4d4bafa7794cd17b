/*
 * Counting outcomes for the summaries of fetch and bench: responses by
 * status, errors by kind, and a latency histogram. The histogram has a fixed
 * size (log-linear buckets, under 0.8% relative error), so a run of
 * millions of URLs needs no more memory than a run of ten.
 */
#ifndef QV_CLI_STATS_H
#define QV_CLI_STATS_H

#include <stddef.h>
#include <stdint.h>

#include <quiver.h>

#define CLI_HIST_SUB    128 /* buckets per power of two */
#define CLI_HIST_BLOCKS 36  /* up to 2^42 us, about 50 days */

typedef struct cli_hist {
    size_t count;
    double sum_ms, min_ms, max_ms;
    size_t buckets[CLI_HIST_SUB * CLI_HIST_BLOCKS];
} cli_hist;

typedef struct cli_stats {
    size_t outcomes;    /* URLs with a final outcome */
    size_t responses;   /* ... that ended with a response */
    size_t errors;      /* ... that ended with an error */
    size_t retries;     /* attempts beyond the first, over all URLs */
    size_t http_errors; /* responses with status >= 400 */
    uint64_t bytes;     /* body bytes of final responses */
    size_t status[600]; /* by status code; anything else in status_other */
    size_t status_other;
    size_t errs[QV_ERROR_COUNT_];
    cli_hist latency; /* of responses */
} cli_stats;

/* A zeroed cli_stats, heap-allocated (it is ~40 KB), or NULL. */
cli_stats *cli_stats_new(void);

/* Records a final outcome: a response with its status, body size and time,
 * or an error code; `attempts` counts retries. */
void cli_stats_add(cli_stats *st, int status, size_t bytes, double elapsed_ms, int err,
                   int attempts);

/* The p-th percentile (0 < p <= 100) of the latencies, in ms; 0 if empty. */
double cli_hist_percentile(const cli_hist *h, double p);

#endif
