/*
 * The retry policy of `quiver fetch --retries`: which outcomes are worth
 * another attempt, and how long to wait before it (exponential backoff with
 * jitter, honouring Retry-After). The library will grow retries of its own;
 * until then they live here.
 */
#ifndef QV_CLI_RETRY_H
#define QV_CLI_RETRY_H

#include <stdint.h>

#include <quiver.h>

typedef struct cli_retry {
    int retries;    /* extra attempts allowed after the first */
    double base_ms; /* delay before the first retry (before jitter) */
    double max_ms;  /* cap on any delay, Retry-After included */
    uint64_t rng;   /* jitter state */
} cli_retry;

void cli_retry_init(cli_retry *rt, int retries, double base_ms, double max_ms);

/* 1 if an attempt that ended with (err, status) is transient: a failed or
 * timed-out connection, a timeout, or status 429, 502, 503, 504. */
int cli_retry_transient(int err, int status);

/* The wait before the next attempt, after `attempts` attempts so far (>= 1).
 * r is the last response (NULL after an error); its Retry-After (seconds)
 * raises the wait, up to max_ms. */
double cli_retry_delay_ms(cli_retry *rt, int attempts, const qv_response *r);

#endif
