/* quiver bench: N requests to one URL, C at a time, then a wrk/hey-style
 * summary on stdout. */
#include "cli.h"
#include "cmdline.h"
#include "parse.h"
#include "progress.h"
#include "reqopts.h"
#include "runner.h"
#include "signals.h"
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char synopsis[] = "quiver bench URL [-n N] [-c C] [options]";

#define MAX_REQUESTS    1000000000L
#define MAX_CONCURRENCY 10000

static void help(void)
{
    printf("usage: %s\n\n"
           "Sends N requests to URL, C at a time, and prints a summary: requests, duration,\n"
           "requests per second, latency percentiles, status codes and errors. Latency is\n"
           "each response's transfer time (connection included); errors are counted apart.\n"
           "Exit status: 0 when every request got a response, 1 when one did not, 2 on a\n"
           "bad command line, 128+N when stopped by signal N.\n\n"
           "Options:\n"
           "  -n, --requests N            number of requests (default 200)\n"
           "  -c, --concurrency C         requests in flight at once (default 10)\n"
           "  -q, --quiet                 no progress line\n"
           "%s",
           synopsis, cli_req_help);
}

typedef struct bench {
    const char *url;
    long remaining;
    cli_stats *stats;
    cli_progress progress;
} bench;

static int next_url(void *arg, char **url)
{
    bench *b = arg;
    if (b->remaining == 0) return 0;
    if (!(*url = strdup(b->url))) {
        cli_error("bench", "out of memory");
        return -1;
    }
    b->remaining--;
    return 1;
}

static void on_outcome(void *arg, const cli_outcome *o)
{
    bench *b = arg;
    size_t bytes = 0;
    if (o->resp) qv_response_body(o->resp, &bytes);
    cli_stats_add(b->stats, o->resp ? qv_response_status(o->resp) : 0, bytes, o->elapsed_ms,
                  o->error, o->attempts);
    cli_progress_add(&b->progress, o->error != QV_OK);
}

static void on_tick(void *arg)
{
    cli_progress_draw(&((bench *)arg)->progress);
}

static void summary(const bench *b, const cli_req *req, long n, long conc, double secs)
{
    const cli_stats *st = b->stats;
    const cli_hist *h = &st->latency;
    printf("Summary:\n");
    printf("  URL:           %s %s\n", req->method, b->url);
    printf("  Requests:      %zu", st->outcomes);
    if ((long)st->outcomes != n) printf(" of %ld (stopped)", n);
    printf("\n");
    printf("  Concurrency:   %ld (%s executor)\n", conc, req->kind_name);
    printf("  Duration:      %.4f s\n", secs);
    printf("  Requests/sec:  %.2f\n", secs > 0 ? (double)st->outcomes / secs : 0.0);
    printf("  Responses:     %zu\n", st->responses);
    printf("  Errors:        %zu\n", st->errors);
    printf("  Body bytes:    %llu\n", (unsigned long long)st->bytes);
    if (h->count) {
        printf("\nLatency (ms):\n");
        printf("  min    %10.3f\n", h->min_ms);
        printf("  mean   %10.3f\n", h->sum_ms / (double)h->count);
        printf("  p50    %10.3f\n", cli_hist_percentile(h, 50));
        printf("  p90    %10.3f\n", cli_hist_percentile(h, 90));
        printf("  p99    %10.3f\n", cli_hist_percentile(h, 99));
        printf("  max    %10.3f\n", h->max_ms);
        printf("\nStatus codes:\n");
        for (int s = 0; s < 600; s++)
            if (st->status[s]) printf("  [%d]  %zu responses\n", s, st->status[s]);
        if (st->status_other) printf("  [other]  %zu responses\n", st->status_other);
    }
    if (st->errors) {
        printf("\nErrors:\n");
        for (int e = 1; e < QV_ERROR_COUNT_; e++)
            if (st->errs[e]) printf("  [%s]  %zu\n", qv_errname(e), st->errs[e]);
    }
}

int cmd_bench(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_REQ_LONGOPTS,
        {"requests", required_argument, NULL, 'n'},
        {"concurrency", required_argument, NULL, 'c'},
        {"quiet", no_argument, NULL, 'q'},
        {0},
    };
    static const cli_cmd cmd = {"bench", synopsis, "n:c:q", longopts, help};
    cli_req req;
    cli_req_init(&req);
    bench b = {0};
    long n = 200, conc = 10;
    int quiet = 0, c, rc;
    while ((c = cli_next_option(&cmd, &req, argc, argv, &rc)) > 0) {
        switch (c) {
        case 'n':
            if (parse_long(optarg, 1, MAX_REQUESTS, &n)) {
                rc = cli_usage_error("bench", synopsis, "-n wants 1 to %ld, not '%s'", MAX_REQUESTS,
                                     optarg);
                goto out;
            }
            break;
        case 'c':
            if (parse_long(optarg, 1, MAX_CONCURRENCY, &conc)) {
                rc = cli_usage_error("bench", synopsis, "-c wants 1 to %d, not '%s'",
                                     MAX_CONCURRENCY, optarg);
                goto out;
            }
            break;
        case 'q':
            quiet = 1;
            break;
        }
    }
    if (c == 0) goto out;
    if ((rc = cli_one_url("bench", synopsis, argc - optind))) goto out;
    if ((rc = cli_req_finish(&req, "bench", synopsis))) goto out;
    if (conc > n) conc = n; /* more workers than requests would only idle */
    b.url = argv[optind];
    b.remaining = n;
    if (!(b.stats = cli_stats_new())) {
        cli_error("bench", "out of memory");
        rc = CLI_EFAIL;
        goto out;
    }

    /* Ctrl-C stops the run cleanly: no new requests, in-flight ones are
     * cancelled, the summary still prints. */
    volatile sig_atomic_t *stop = cli_catch_stop_signals();
    qv_session *s;
    if ((rc = cli_session_new(&req, (int)conc, "bench", &s))) goto out;
    cli_progress_init(&b.progress, !quiet && isatty(STDERR_FILENO), n);
    cli_run run = {
        .session = s,
        .req = &req,
        /* Exactly C outstanding, like C clients each sending its next
         * request when its last one completes (as hey does); a deeper queue
         * would count time spent waiting for a worker as latency. */
        .window = (size_t)conc,
        .source = next_url,
        .sink = on_outcome,
        .tick = on_tick,
        .arg = &b,
        .stop = stop,
    };
    double t0 = cli_now_ms();
    enum cli_run_result res = cli_run_all(&run);
    double secs = (cli_now_ms() - t0) / 1000.0;
    cli_session_free(s);
    cli_progress_end(&b.progress);
    summary(&b, &req, n, conc, secs);
    if (fflush(stdout) != 0) {
        cli_error("bench", "cannot write to stdout");
        rc = CLI_EFAIL;
    } else if (res == CLI_RUN_STOPPED) {
        rc = 128 + (int)*run.stop;
    } else {
        rc = (res != CLI_RUN_DONE || b.stats->errors) ? CLI_EFAIL : CLI_OK;
    }
out:
    free(b.stats);
    cli_req_free(&req);
    return rc;
}
