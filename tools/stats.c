/* Outcome counters and a fixed-size log-linear latency histogram. */
#include "stats.h"

#include <stdlib.h>

cli_stats *cli_stats_new(void)
{
    return calloc(1, sizeof(cli_stats));
}

/* Values below CLI_HIST_SUB microseconds get a bucket each; above, each
 * power of two is split in CLI_HIST_SUB/2.. buckets by the top 8 bits. */
static size_t bucket_of(uint64_t us)
{
    if (us < CLI_HIST_SUB) return (size_t)us;
    int e = 63 - __builtin_clzll(us); /* >= 7 */
    size_t block = (size_t)(e - 6);
    size_t idx = block * CLI_HIST_SUB + (size_t)((us >> (e - 7)) - CLI_HIST_SUB);
    size_t last = CLI_HIST_SUB * CLI_HIST_BLOCKS - 1;
    return idx > last ? last : idx;
}

/* The middle of a bucket, in microseconds. */
static double bucket_mid_us(size_t idx)
{
    size_t block = idx / CLI_HIST_SUB;
    if (block == 0) return (double)idx;
    int e = (int)block + 6;
    double lo = (double)((uint64_t)(idx % CLI_HIST_SUB + CLI_HIST_SUB) << (e - 7));
    double width = (double)(1ULL << (e - 7));
    return lo + (width - 1) / 2;
}

static void hist_add(cli_hist *h, double ms)
{
    if (ms < 0) ms = 0;
    if (h->count == 0 || ms < h->min_ms) h->min_ms = ms;
    if (ms > h->max_ms) h->max_ms = ms;
    h->count++;
    h->sum_ms += ms;
    h->buckets[bucket_of((uint64_t)(ms * 1000.0 + 0.5))]++;
}

double cli_hist_percentile(const cli_hist *h, double p)
{
    if (h->count == 0) return 0;
    /* Nearest rank: the smallest value with at least p% of samples at or
     * below it. */
    double want = p / 100.0 * (double)h->count;
    size_t rank = (size_t)want;
    if ((double)rank < want) rank++;
    if (rank < 1) rank = 1;
    size_t seen = 0;
    for (size_t i = 0; i < CLI_HIST_SUB * CLI_HIST_BLOCKS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            double v = bucket_mid_us(i) / 1000.0;
            /* A bucket's middle can lie outside what was seen. */
            if (v < h->min_ms) v = h->min_ms;
            if (v > h->max_ms) v = h->max_ms;
            return v;
        }
    }
    return h->max_ms;
}

void cli_stats_add(cli_stats *st, int status, size_t bytes, double elapsed_ms, int err,
                   int attempts)
{
    st->outcomes++;
    if (attempts > 1) st->retries += (size_t)(attempts - 1);
    if (err != QV_OK) {
        st->errors++;
        st->errs[err > 0 && err < QV_ERROR_COUNT_ ? err : QV_ETRANSFER]++;
        return;
    }
    st->responses++;
    st->bytes += bytes;
    if (status >= 400) st->http_errors++;
    if (status >= 0 && status < 600)
        st->status[status]++;
    else
        st->status_other++;
    hist_add(&st->latency, elapsed_ms);
}
