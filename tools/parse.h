/* Parsing numbers given on the command line, strictly: "10x", "", "-1" and
 * out-of-range values are errors, never silently something else. */
#ifndef QV_CLI_PARSE_H
#define QV_CLI_PARSE_H

/* A whole number in [min, max]. 0 on success, -1 otherwise. */
int parse_long(const char *s, long min, long max, long *out);

/* Seconds as a decimal ("2", "0.25") in (0, max_s], converted to whole
 * milliseconds rounded up (so 0.0001 is 1 ms, never "no timeout"). */
int parse_seconds_ms(const char *s, double max_s, long *out_ms);

/* Monotonic clock in milliseconds. */
double cli_now_ms(void);

#endif
