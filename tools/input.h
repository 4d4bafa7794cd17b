/*
 * Where fetch's URLs come from: the command line first, then a file or
 * stdin (-i), one URL per line, read as needed, so an input of any length
 * is never held in memory. Blank lines and lines starting with '#' are
 * skipped; surrounding whitespace (and a CR) is dropped.
 */
#ifndef QV_CLI_INPUT_H
#define QV_CLI_INPUT_H

#include <stdio.h>

typedef struct cli_input {
    char **args; /* URLs given as arguments */
    int nargs, next_arg;
    FILE *fp; /* -i FILE or stdin; NULL without -i */
    const char *path;
    char *line;
    size_t cap;
    const char *cmd; /* for messages */
} cli_input;

/* path: NULL (arguments only), "-" (stdin) or a file. 0, or -1 after saying
 * why the file cannot be opened. */
int cli_input_open(cli_input *in, const char *cmd, char **args, int nargs, const char *path);
void cli_input_close(cli_input *in);

/* The number of URLs, when it can be known without consuming the input
 * (arguments plus a regular file, counted in a first pass); else -1. */
long long cli_input_count(cli_input *in);

/* A cli_source_fn: 1 with *url (malloc'd), 0 at the end, -1 on a read error. */
int cli_input_next(void *in, char **url);

#endif
