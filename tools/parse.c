/* Strict number parsing for option values, and the tool's clock. */
#include "parse.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

int parse_long(const char *s, long min, long max, long *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

int parse_seconds_ms(const char *s, double max_s, long *out_ms)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    /* isfinite also rejects "nan" and "inf", which strtod accepts. */
    if (errno || *end || !isfinite(v) || v <= 0 || v > max_s) return -1;
    *out_ms = (long)ceil(v * 1000.0);
    return 0;
}

double cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
