/*
 * The quiver command-line tool: what the subcommands share.
 *
 * Exit codes are part of the interface (docs/cli.md, docs/quiver.1):
 * scripts tell "the server answered with an error status" from "no answer
 * at all" from "you called me wrong".
 */
#ifndef QV_CLI_H
#define QV_CLI_H

#include <stdarg.h>

enum cli_exit {
    CLI_OK = 0,     /* every request got a response (any status without --fail) */
    CLI_EFAIL = 1,  /* a request ended without a response, or a local failure */
    CLI_EUSAGE = 2, /* bad command line: unknown flag, bad value, missing URL */
    CLI_EHTTP = 3   /* --fail, and a response had a 4xx/5xx status */
    /* 128 + signal number: interrupted by SIGINT/SIGTERM (after a summary). */
};

/* Subcommands: argv[0] is the subcommand's name. Each returns an exit code. */
int cmd_get(int argc, char **argv);
int cmd_fetch(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* "quiver CMD: message" on stderr, newline added. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A usage error: "quiver CMD: message", the synopsis and a pointer to
 * --help on stderr. Returns CLI_EUSAGE so callers can `return` it. */
int cli_usage_error(const char *cmd, const char *synopsis, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* For getopt_long's '?' and ':' returns (optstring starting with ':'):
 * names the offending option and returns cli_usage_error(). */
int cli_getopt_error(const char *cmd, const char *synopsis, int c, char **argv);
/* For commands taking exactly one URL: 0, or the usage error for `urls`
 * operands left after the options. */
int cli_one_url(const char *cmd, const char *synopsis, int urls);

#endif /* QV_CLI_H */
