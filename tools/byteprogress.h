/*
 * The progress line of one download or upload on stderr: bytes so far (and
 * the total when known), bytes per second, and the time left when the total
 * is known. Fed by the request's on_progress, so it counts real bytes.
 */
#ifndef QV_CLI_BYTEPROGRESS_H
#define QV_CLI_BYTEPROGRESS_H

#include <quiver.h>

typedef struct cli_byteprogress {
    double start_ms;
    long long first; /* bytes the file had when the transfer began (resume) */
    int drawn;
} cli_byteprogress;

void cli_byteprogress_init(cli_byteprogress *p);
/* An on_progress callback; arg is the cli_byteprogress. */
void cli_byteprogress_cb(qv_future *f, long long dl_now, long long dl_total, long long ul_now,
                         long long ul_total, void *arg);
/* Ends the line (if one was drawn). */
void cli_byteprogress_end(cli_byteprogress *p);

#endif
