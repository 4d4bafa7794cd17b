/*
 * The option loop every subcommand shares: the shared request options, -h and
 * --help, unknown options and missing values are handled here; the command
 * sees only its own options.
 */
#ifndef QV_CLI_CMDLINE_H
#define QV_CLI_CMDLINE_H

#include "reqopts.h"

typedef struct cli_cmd {
    const char *name;              /* "get": the "quiver get: ..." of messages */
    const char *synopsis;          /* for usage errors */
    const char *shortopts;         /* the command's own short options, getopt syntax */
    const struct option *longopts; /* CLI_REQ_LONGOPTS, the command's own, then {0} */
    void (*help)(void);            /* prints the command's --help on stdout */
} cli_cmd;

/* The getopt key of the command's next own option (its value in optarg), for
 * the caller to handle; -1 when the options are done (the operands start at
 * optind); or 0 with *rc set to what the command returns: CLI_OK after
 * printing the help, or an exit code after printing why the command line is
 * bad. Shared options go into r. */
int cli_next_option(const cli_cmd *cmd, cli_req *r, int argc, char **argv, int *rc);

#endif
