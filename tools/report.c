/* Messages on stderr: errors and usage errors, in one format for every
 * subcommand ("quiver CMD: ..."), so scripts and people can grep them. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>

static void vmessage(const char *cmd, const char *fmt, va_list ap)
{
    fprintf(stderr, "quiver%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(cmd, fmt, ap);
    va_end(ap);
}

int cli_usage_error(const char *cmd, const char *synopsis, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, "usage: %s\nTry 'quiver %s%s--help' for more information.\n", synopsis,
            cmd ? cmd : "", cmd ? " " : "");
    return CLI_EUSAGE;
}

int cli_getopt_error(const char *cmd, const char *synopsis, int c, char **argv)
{
    /* A long option leaves optopt at 0 (unknown) or at its value (missing
     * argument); its text is the argument getopt just stepped over. */
    const char *text = argv[optind - 1];
    if (c == ':') {
        if (optopt > 0 && optopt < 256 && text && text[0] == '-' && text[1] != '-')
            return cli_usage_error(cmd, synopsis, "option '-%c' needs a value", optopt);
        return cli_usage_error(cmd, synopsis, "option '%s' needs a value", text ? text : "?");
    }
    if (optopt > 0 && optopt < 256)
        return cli_usage_error(cmd, synopsis, "unknown option '-%c'", optopt);
    return cli_usage_error(cmd, synopsis, "unknown option '%s'", text ? text : "?");
}

int cli_one_url(const char *cmd, const char *synopsis, int urls)
{
    if (urls < 1) return cli_usage_error(cmd, synopsis, "no URL given");
    if (urls > 1)
        return cli_usage_error(cmd, synopsis, "one URL only (for many, use quiver fetch)");
    return 0;
}
