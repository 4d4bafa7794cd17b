/* The subcommands' shared option loop (see cmdline.h). */
#include "cmdline.h"

#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

int cli_next_option(const cli_cmd *cmd, cli_req *r, int argc, char **argv, int *rc)
{
    /* ':' first: getopt reports a missing value apart from an unknown option
     * and prints nothing itself, so every message has our format. */
    char shortopts[64];
    int n = snprintf(shortopts, sizeof shortopts, ":" CLI_REQ_SHORTOPTS "h%s", cmd->shortopts);
    if (n < 0 || (size_t)n >= sizeof shortopts) abort(); /* a programming error */
    int c;
    while ((c = getopt_long(argc, argv, shortopts, cmd->longopts, NULL)) != -1) {
        int taken = cli_req_option(r, cmd->name, cmd->synopsis, c, optarg);
        if (taken > 0) {
            *rc = taken;
            return 0;
        }
        if (taken == 0) continue;
        switch (c) {
        case 'h':
        case CLI_OPT_HELP:
            cmd->help();
            *rc = CLI_OK;
            return 0;
        case '?':
        case ':':
            *rc = cli_getopt_error(cmd->name, cmd->synopsis, c, argv);
            return 0;
        default:
            return c;
        }
    }
    return -1;
}
