/* fetch's URL source: arguments, then lines of a file or stdin. */
#include "input.h"

#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cli_input_open(cli_input *in, const char *cmd, char **args, int nargs, const char *path)
{
    memset(in, 0, sizeof(*in));
    in->cmd = cmd;
    in->args = args;
    in->nargs = nargs;
    in->path = path;
    if (!path) return 0;
    if (strcmp(path, "-") == 0) {
        in->fp = stdin;
        in->path = "stdin";
        return 0;
    }
    in->fp = fopen(path, "r");
    if (!in->fp) {
        cli_error(cmd, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

void cli_input_close(cli_input *in)
{
    if (in->fp && in->fp != stdin) fclose(in->fp);
    free(in->line);
    memset(in, 0, sizeof(*in));
}

/* The URL on a line (trimmed in place), or NULL for a line to skip. */
static char *url_of_line(char *line, size_t len)
{
    while (len > 0 && strchr(" \t\r\n\f\v", line[len - 1])) line[--len] = '\0';
    line += strspn(line, " \t\f\v");
    if (!*line || *line == '#') return NULL;
    return line;
}

long long cli_input_count(cli_input *in)
{
    long long n = in->nargs - in->next_arg;
    if (!in->fp) return n;
    struct stat st;
    if (fstat(fileno(in->fp), &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    off_t start = ftello(in->fp);
    if (start < 0) return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, in->fp)) >= 0)
        if (url_of_line(line, (size_t)len)) n++;
    free(line);
    int bad = ferror(in->fp);
    clearerr(in->fp);
    if (fseeko(in->fp, start, SEEK_SET) != 0 || bad) return -1;
    return n;
}

int cli_input_next(void *arg, char **url)
{
    cli_input *in = arg;
    if (in->next_arg < in->nargs) {
        *url = strdup(in->args[in->next_arg++]);
        if (!*url) {
            cli_error(in->cmd, "out of memory");
            return -1;
        }
        return 1;
    }
    if (!in->fp) return 0;
    ssize_t len;
    while ((len = getline(&in->line, &in->cap, in->fp)) >= 0) {
        char *u = url_of_line(in->line, (size_t)len);
        if (!u) continue;
        *url = strdup(u);
        if (!*url) {
            cli_error(in->cmd, "out of memory");
            return -1;
        }
        return 1;
    }
    if (ferror(in->fp)) {
        cli_error(in->cmd, "reading %s: %s", in->path, strerror(errno));
        return -1;
    }
    return 0;
}
