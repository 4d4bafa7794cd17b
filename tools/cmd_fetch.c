/* quiver fetch: many URLs concurrently, one JSON Lines record per URL on
 * stdout as each completes, a progress line and a summary on stderr. */
#include "cli.h"
#include "cmdline.h"
#include "input.h"
#include "jsonl.h"
#include "outdir.h"
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

static const char synopsis[] = "quiver fetch [URL...] [-i FILE|-] [options]";

#define MAX_JOBS 10000

static void help(void)
{
    printf("usage: %s\n\n"
           "Fetches many URLs concurrently. Prints one JSON object per URL on stdout as\n"
           "it completes:\n"
           "  {\"url\":...,\"status\":200,\"elapsed_ms\":12.3,\"bytes\":512,\"error\":null,"
           "\"attempts\":1}\n"
           "(status and bytes are null and error is \"QV_E...: message\" when there was no\n"
           "response), a progress line on stderr when it is a terminal, and a summary on\n"
           "stderr at the end. Exit status: 0 when every URL got a response, 1 when one\n"
           "did not, 2 on a bad command line, 3 with --fail and a 4xx/5xx status,\n"
           "128+N when stopped by signal N (Ctrl-C: in-flight requests are cancelled).\n\n"
           "Options:\n"
           "  -i, --input FILE            read URLs from FILE, one per line ('-': stdin;\n"
           "                              blank lines and #comments are skipped)\n"
           "  -j, --jobs N                concurrent requests (default 8)\n"
           "  -o, --output-dir DIR        save each body in DIR, under a safe name made\n"
           "                              from the URL (the record's \"file\")\n"
           "  -f, --fail                  exit 3 when a response had a 4xx/5xx status\n"
           "  -q, --quiet                 no progress line and no summary\n"
           "%s",
           synopsis, cli_req_help);
}

typedef struct fetch {
    cli_input input;
    cli_stats *stats;
    cli_progress progress;
    const char *outdir;
    int local_failed; /* stdout failed */
} fetch;

static void on_outcome(void *arg, const cli_outcome *o)
{
    fetch *ft = arg;
    long long bytes = o->resp ? qv_response_body_bytes(o->resp) : 0;
    cli_stats_add(ft->stats, o->resp ? qv_response_status(o->resp) : 0, (size_t)bytes,
                  o->elapsed_ms, o->error, o->attempts);
    cli_progress_add(&ft->progress, o->error != QV_OK);
    /* With -o the body went to its file as it came (a failure to write it
     * is the request's QV_EIO). */
    if (cli_jsonl_write(stdout, o, ft->outdir != NULL, o->path) != 0 && !ft->local_failed) {
        cli_error("fetch", "cannot write to stdout");
        ft->local_failed = 1;
    }
}

static void on_tick(void *arg)
{
    cli_progress_draw(&((fetch *)arg)->progress);
}

static void summary(const fetch *ft, double secs)
{
    const cli_stats *st = ft->stats;
    fprintf(stderr, "quiver fetch: %zu URLs in %.2f s (%.1f req/s): %zu responses, %zu errors",
            st->outcomes, secs, secs > 0 ? (double)st->outcomes / secs : 0.0, st->responses,
            st->errors);
    if (st->retries) fprintf(stderr, ", %zu retries", st->retries);
    fputc('\n', stderr);
    if (st->responses) {
        fputs("  status: ", stderr);
        for (int s = 0; s < 600; s++)
            if (st->status[s]) fprintf(stderr, " %d=%zu", s, st->status[s]);
        if (st->status_other) fprintf(stderr, " other=%zu", st->status_other);
        fputc('\n', stderr);
        const cli_hist *h = &st->latency;
        fprintf(stderr, "  latency: p50=%.1fms p90=%.1fms p99=%.1fms max=%.1fms\n",
                cli_hist_percentile(h, 50), cli_hist_percentile(h, 90), cli_hist_percentile(h, 99),
                h->max_ms);
    }
    if (st->errors) {
        fputs("  errors: ", stderr);
        for (int e = 1; e < QV_ERROR_COUNT_; e++)
            if (st->errs[e]) fprintf(stderr, " %s=%zu", qv_errname(e), st->errs[e]);
        fputc('\n', stderr);
    }
}

int cmd_fetch(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_REQ_LONGOPTS,
        {"input", required_argument, NULL, 'i'},
        {"jobs", required_argument, NULL, 'j'},
        {"output-dir", required_argument, NULL, 'o'},
        {"fail", no_argument, NULL, 'f'},
        {"quiet", no_argument, NULL, 'q'},
        {0},
    };
    static const cli_cmd cmd = {"fetch", synopsis, "i:j:o:fq", longopts, help};
    cli_req req;
    cli_req_init(&req);
    fetch ft = {0};
    const char *input_path = NULL;
    long jobs = QV_DEFAULT_MAX_WORKERS;
    int quiet = 0, fail = 0, c, rc;
    while ((c = cli_next_option(&cmd, &req, argc, argv, &rc)) > 0) {
        switch (c) {
        case 'i':
            input_path = optarg;
            break;
        case 'j':
            if (parse_long(optarg, 1, MAX_JOBS, &jobs)) {
                rc = cli_usage_error("fetch", synopsis, "-j wants 1 to %d, not '%s'", MAX_JOBS,
                                     optarg);
                goto out;
            }
            break;
        case 'o':
            ft.outdir = optarg;
            break;
        case 'f':
            fail = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        }
    }
    if (c == 0) goto out;
    if (optind >= argc && !input_path) {
        rc = cli_usage_error("fetch", synopsis,
                             "no URLs: give them as arguments or with -i FILE (- for stdin)");
        goto out;
    }
    if (input_path && strcmp(input_path, "-") == 0 && req.body_from_stdin) {
        rc = cli_usage_error("fetch", synopsis, "stdin cannot hold both the URLs and the body");
        goto out;
    }
    if ((rc = cli_req_finish(&req, "fetch", synopsis))) goto out;
    if (ft.outdir && cli_outdir_prepare("fetch", ft.outdir)) {
        rc = CLI_EFAIL;
        goto out;
    }
    if (cli_input_open(&ft.input, "fetch", argv + optind, argc - optind, input_path)) {
        rc = CLI_EFAIL;
        goto out;
    }
    if (!(ft.stats = cli_stats_new())) {
        cli_error("fetch", "out of memory");
        rc = CLI_EFAIL;
        goto out;
    }

    /* Ctrl-C stops the run cleanly: no new requests, in-flight ones are
     * cancelled, the summary still prints. */
    volatile sig_atomic_t *stop = cli_catch_stop_signals();
    qv_session *s;
    if ((rc = cli_session_new(&req, (int)jobs, "fetch", &s))) goto out;
    cli_progress_init(&ft.progress, !quiet && isatty(STDERR_FILENO), cli_input_count(&ft.input));
    cli_run run = {
        .session = s,
        .req = &req,
        /* Enough queued work that no worker idles while this thread writes
         * records, yet a bounded number of futures (and bodies) alive. */
        .window = (size_t)jobs * 4,
        .source = cli_input_next,
        .sink = on_outcome,
        .tick = on_tick,
        .arg = &ft,
        .stop = stop,
        .outdir = ft.outdir,
    };
    double t0 = cli_now_ms();
    enum cli_run_result res = cli_run_all(&run);
    double secs = (cli_now_ms() - t0) / 1000.0;
    cli_session_free(s);
    cli_progress_end(&ft.progress);
    if (!quiet) summary(&ft, secs);

    if (res == CLI_RUN_STOPPED)
        rc = 128 + (int)*run.stop;
    else if (res == CLI_RUN_INPUT_FAILED || ft.stats->errors || ft.local_failed)
        rc = CLI_EFAIL;
    else if (fail && ft.stats->http_errors)
        rc = CLI_EHTTP;
    else
        rc = CLI_OK;
out:
    cli_input_close(&ft.input);
    free(ft.stats);
    cli_req_free(&req);
    return rc;
}
