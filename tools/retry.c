/* Retry policy: transient outcomes, exponential backoff with jitter. */
#include "retry.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

void cli_retry_init(cli_retry *rt, int retries, double base_ms, double max_ms)
{
    rt->retries = retries;
    rt->base_ms = base_ms;
    rt->max_ms = max_ms < base_ms ? base_ms : max_ms;
    /* Different runs (and parallel invocations) must not retry in lockstep,
     * so the seed mixes the clock and the pid; never 0 for xorshift. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rt->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
    if (!rt->rng) rt->rng = 0x9e3779b97f4a7c15ULL;
}

int cli_retry_transient(int err, int status)
{
    switch (err) {
    case QV_OK:
        /* 429: rate limited; 502/503/504: a gateway or an overloaded server
         * that may answer next time. 500 is usually a bug: not retried. */
        return status == 429 || status == 502 || status == 503 || status == 504;
    case QV_ECONNECT:
    case QV_ECONNECT_TIMEOUT:
    case QV_EREAD_TIMEOUT:
    case QV_ETIMEOUT:
        return 1;
    default:
        return 0;
    }
}

static double uniform01(cli_retry *rt)
{
    /* xorshift64*: plenty for jitter, and no shared state with rand(). */
    rt->rng ^= rt->rng >> 12;
    rt->rng ^= rt->rng << 25;
    rt->rng ^= rt->rng >> 27;
    return (double)((rt->rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* Retry-After in seconds; the HTTP-date form is rare enough to ignore. */
static double retry_after_ms(const qv_response *r)
{
    const char *v = r ? qv_response_header(r, "Retry-After") : NULL;
    if (!v || !*v) return 0;
    char *end;
    errno = 0;
    long s = strtol(v, &end, 10);
    if (errno || *end || s < 0) return 0;
    return (double)s * 1000.0;
}

double cli_retry_delay_ms(cli_retry *rt, int attempts, const qv_response *r)
{
    double d = rt->base_ms;
    for (int i = 1; i < attempts && d < rt->max_ms; i++) d *= 2;
    if (d > rt->max_ms) d = rt->max_ms;
    /* "Equal jitter": half fixed, half random. The fixed half keeps a floor
     * under the wait, the random half spreads clients that failed together. */
    d = d / 2 + uniform01(rt) * d / 2;
    double ra = retry_after_ms(r);
    if (ra > d) d = ra < rt->max_ms ? ra : rt->max_ms;
    return d;
}
