/*
 * The engine of `fetch` and `bench`: keeps at most `window` URLs outstanding
 * (the library retries them as the session says), hands each outcome to a sink as soon
 * as it completes, and releases its future right after, so memory stays
 * bounded however long the input is.
 */
#ifndef QV_CLI_RUNNER_H
#define QV_CLI_RUNNER_H

#include <signal.h>
#include <stddef.h>

#include <quiver.h>

#include "reqopts.h"

/* The final outcome of one URL, valid during the sink call only. */
typedef struct cli_outcome {
    const char *url;
    size_t seq;          /* position in the input, from 0 */
    qv_response *resp;   /* the last attempt's response, or NULL after an error */
    int error;           /* QV_OK with a response, else the error code */
    const char *message; /* with an error: qv_future_error() or the code's message */
    double elapsed_ms;   /* the last attempt's transfer time of a response, or the
                            submit-to-failure time of an error (all attempts) */
    int attempts;        /* requests sent for this URL (0: it could not be submitted) */
    const char *path;    /* with an outdir and a response: the file its body is in */
} cli_outcome;

/* Gives the next URL (malloc'd; the runner frees it): 1, or 0 at the end,
 * or -1 after printing why the input failed. */
typedef int (*cli_source_fn)(void *arg, char **url);
typedef void (*cli_sink_fn)(void *arg, const cli_outcome *o);
/* Called about every 100 ms while the run goes on (progress bars). */
typedef void (*cli_tick_fn)(void *arg);

typedef struct cli_run {
    qv_session *session;
    const cli_req *req;
    size_t window; /* outstanding URLs at most (>= 1) */
    cli_source_fn source;
    cli_sink_fn sink;
    cli_tick_fn tick; /* may be NULL */
    void *arg;
    volatile sig_atomic_t *stop; /* set (by a signal handler) to stop early */
    /* May be NULL. Else each body goes, as it arrives, to a file in it named
     * by cli_outdir_name(url) (output_path: never whole in memory). */
    const char *outdir;
} cli_run;

enum cli_run_result {
    CLI_RUN_DONE = 0,    /* every URL of the source has an outcome */
    CLI_RUN_STOPPED,     /* *stop was set: in-flight requests were cancelled */
    CLI_RUN_INPUT_FAILED /* the source failed (it said why); the rest ran */
};

/* Runs the whole source through the session. Every URL taken from the
 * source gets exactly one sink call, also when stopped (as QV_ECANCELLED). */
enum cli_run_result cli_run_all(const cli_run *run);

#endif
