/*
 * The live progress line of fetch and bench on stderr: done/total, req/s,
 * errors, ETA. Drawn only when stderr is a terminal, so logs and pipes never
 * see carriage returns or escape codes.
 */
#ifndef QV_CLI_PROGRESS_H
#define QV_CLI_PROGRESS_H

#include <stddef.h>

typedef struct cli_progress {
    int enabled;
    double start_ms;
    long long total; /* -1 while unknown (input from a pipe) */
    size_t done, errors;
    int drawn; /* a line is on the screen */
} cli_progress;

/* enabled: draw at all (callers pass isatty(2) && !quiet). */
void cli_progress_init(cli_progress *p, int enabled, long long total);
void cli_progress_add(cli_progress *p, int failed);
/* Redraws the line (cheap; call it on every tick). */
void cli_progress_draw(cli_progress *p);
/* Draws the final state and ends the line, so a summary can follow. */
void cli_progress_end(cli_progress *p);

#endif
