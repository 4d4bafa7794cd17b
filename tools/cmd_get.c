/* quiver get: one request, printed like an HTTP message: status line,
 * headers, a blank line, the body. */
#include "byteprogress.h"
#include "cli.h"
#include "cmdline.h"
#include "pretty.h"
#include "reqopts.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char synopsis[] = "quiver get URL [options]";

enum { OPT_PRETTY = CLI_OPT_OWN, OPT_FAIL, OPT_BODY, OPT_PROGRESS };

static void help(void)
{
    printf("usage: %s\n\n"
           "Sends one request and prints the response: status line, headers, a blank line\n"
           "and the body. Exit status: 0 on any response, 1 when there is none (the error\n"
           "kind, e.g. QV_ECONNECT, is named on stderr), 2 on a bad command line, 3 with\n"
           "--fail and a 4xx/5xx status.\n\n"
           "Options:\n"
           "      --pretty                indent a JSON body\n"
           "  -b, --body                  print only the body\n"
           "  -f, --fail                  exit 3 on a 4xx/5xx status\n"
           "  -v, --verbose               show the exchange on stderr: '>' lines sent, '<'\n"
           "                              received, '*' libcurl's comments (secrets\n"
           "                              redacted unless QV_DEBUG=unsafe)\n"
           "  -o, --output FILE           write the body to FILE as it arrives (never whole\n"
           "                              in memory; FILE appears only once complete)\n"
           "  -C, --continue              with -o: append to what FILE holds already\n"
           "                              (asks for the rest with a Range request)\n"
           "      --progress              a progress line on stderr (with -o it is on by\n"
           "                              default when stderr is a terminal)\n"
           "%s",
           synopsis, cli_req_help);
}

static const char *version_text(int v)
{
    switch (v) {
    case 10:
        return "1.0";
    case 11:
        return "1.1";
    case 20:
        return "2";
    case 30:
        return "3";
    default:
        return "1.1";
    }
}

/* -v: the trace, as curl -v shows it. */
static void print_trace(qv_future *f, qv_debug_kind kind, const char *data, size_t len, void *arg)
{
    (void)f;
    (void)arg;
    static const char mark[] = {'*', '>', '<'};
    if (kind <= QV_DEBUG_HEADER_IN) fprintf(stderr, "%c %.*s\n", mark[kind], (int)len, data);
}

static void print_response(qv_response *r, int pretty, int body_only)
{
    if (!body_only) {
        const char *reason = qv_response_reason(r);
        printf("HTTP/%s %d%s%s\n", version_text(qv_response_http_version(r)), qv_response_status(r),
               *reason ? " " : "", reason);
        size_t n = qv_response_header_count(r);
        for (size_t i = 0; i < n; i++) {
            const char *name, *value;
            if (qv_response_header_at(r, i, &name, &value) == QV_OK)
                printf("%s: %s\n", name, value);
        }
        putchar('\n');
    }
    size_t len;
    const char *body = qv_response_body(r, &len);
    int err;
    /* Only what parses is indented; anything else is printed as it came. */
    if (pretty && len > 0 && qv_response_json(r, &err))
        cli_pretty_json(stdout, body, len);
    else
        fwrite(body, 1, len, stdout);
}

int cmd_get(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_REQ_LONGOPTS,
        {"pretty", no_argument, NULL, OPT_PRETTY},
        {"fail", no_argument, NULL, 'f'},
        {"body", no_argument, NULL, 'b'},
        {"verbose", no_argument, NULL, 'v'},
        {"output", required_argument, NULL, 'o'},
        {"continue", no_argument, NULL, 'C'},
        {"progress", no_argument, NULL, OPT_PROGRESS},
        {0},
    };
    static const cli_cmd cmd = {"get", synopsis, "fbvo:C", longopts, help};
    cli_req req;
    cli_req_init(&req);
    int pretty = 0, fail = 0, body_only = 0, verbose = 0, resume = 0, progress = -1, c, rc;
    const char *output = NULL;
    while ((c = cli_next_option(&cmd, &req, argc, argv, &rc)) > 0) {
        switch (c) {
        case OPT_PRETTY:
            pretty = 1;
            break;
        case 'f':
            fail = 1;
            break;
        case 'b':
            body_only = 1;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'o':
            output = optarg;
            break;
        case 'C':
            resume = 1;
            break;
        case OPT_PROGRESS:
            progress = 1;
            break;
        }
    }
    if (c == 0) goto out;
    if ((rc = cli_one_url("get", synopsis, argc - optind))) goto out;
    if ((rc = cli_req_finish(&req, "get", synopsis))) goto out;
    if (resume && !output) {
        rc = cli_usage_error("get", synopsis, "--continue needs -o FILE");
        goto out;
    }

    qv_session *s;
    if ((rc = cli_session_new(&req, 1, "get", &s))) goto out;
    qv_request_opts o;
    cli_req_fill(&req, argv[optind], &o);
    if (verbose) o.on_debug = print_trace;
    o.output_path = output;
    o.resume = resume;
    cli_byteprogress bar;
    cli_byteprogress_init(&bar);
    if (progress < 0) progress = output && isatty(STDERR_FILENO);
    if (progress) {
        o.on_progress = cli_byteprogress_cb;
        o.on_progress_arg = &bar;
    }
    qv_future *f;
    int qrc = qv_request(s, &f, &o);
    if (qrc != QV_OK) {
        cli_error("get", "%s: %s (%s %s)", qv_errname(qrc), qv_strerror(qrc), req.method,
                  argv[optind]);
        rc = CLI_EFAIL;
    } else {
        qv_response *r;
        qrc = qv_future_result(f, &r, -1);
        cli_byteprogress_end(&bar);
        if (qrc != QV_OK) {
            const char *msg = qv_future_error(f);
            cli_error("get", "%s: %s", qv_errname(qrc), msg ? msg : qv_strerror(qrc));
            rc = CLI_EFAIL;
        } else {
            print_response(r, pretty, body_only);
            if (fflush(stdout) != 0 || ferror(stdout)) {
                cli_error("get", "cannot write the response to stdout");
                rc = CLI_EFAIL;
            } else if (fail && qv_response_status(r) >= 400) {
                cli_error("get", "HTTP %d %s (--fail)", qv_response_status(r),
                          qv_response_reason(r));
                rc = CLI_EHTTP;
            }
        }
        qv_future_release(f);
    }
    cli_session_free(s);
out:
    cli_req_free(&req);
    return rc;
}
