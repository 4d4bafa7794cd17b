/* The shared request/session options: parsing -H/-X/-d/--json/--timeout/
 * -k/--cacert/--executor/--retries/--rate/--max-queued/--cert/--key/--pass/
 * --proxy/--unix-socket/--resolve, and building
 * quiver's option structs from them. */
#include "reqopts.h"

#include "cli.h"
#include "parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

const char cli_req_help[] =
    "  -H, --header 'NAME: VALUE'  add a header (repeatable); 'NAME:' removes a default\n"
    "                              header, 'NAME;' sends it empty\n"
    "  -X, --request METHOD        HTTP method (default GET, or POST with -d/--json)\n"
    "  -d, --data DATA             request body as given; @FILE reads a file, @- stdin\n"
    "                              (no Content-Type is added: give one with -H)\n"
    "      --json JSON             JSON request body (checked, sent with\n"
    "                              Content-Type: application/json); @FILE, @- as for -d\n"
    "      --timeout SECONDS       limit on each request's total time (e.g. 2.5)\n"
    "  -k, --insecure              do not verify TLS certificates\n"
    "      --cacert FILE           verify TLS certificates against this CA bundle\n"
    "      --executor KIND         threads (default), loop, or processes\n"
    "      --retries N             retry connection failures, timeouts and status\n"
    "                              429/502/503/504 up to N times (GET, HEAD, PUT,\n"
    "                              DELETE, OPTIONS only)\n"
    "      --retry-delay SECONDS   first backoff delay, doubled each retry, with\n"
    "                              jitter (default 0.2)\n"
    "      --retry-max-delay SECONDS  cap on a delay, Retry-After included: a longer\n"
    "                              Retry-After ends the retries (default 10)\n"
    "      --rate R                at most R requests per second to each host\n"
    "      --max-queued N          at most N requests wait for a worker\n"
    "  -E, --cert FILE             client certificate (PEM) for servers that ask\n"
    "      --key FILE              its private key (PEM; default: in the --cert file)\n"
    "      --pass PASSWORD         the key's password (also --key-password)\n"
    "  -x, --proxy URL             proxy for every request: http://, https://,\n"
    "                              socks4a://, socks5://, socks5h:// (user:pass@ allowed)\n"
    "      --unix-socket PATH      connect to this Unix socket (the URL gives Host, path)\n"
    "      --resolve HOST:PORT:ADDR  send requests for HOST:PORT to ADDR (repeatable)\n"
    "  -h, --help                  show this help\n";

/* Timeouts longer than this are surely a typo (and would overflow long ms
 * on 32-bit systems). */
#define MAX_TIMEOUT_S 86400.0 * 24

void cli_req_init(cli_req *r)
{
    memset(r, 0, sizeof(*r));
    r->kind = QV_THREADS;
    r->kind_name = "threads";
    r->retry_delay_ms = 200;
    r->retry_max_ms = 10000;
}

void cli_req_free(cli_req *r)
{
    for (size_t i = 0; i < r->nresolve; i++) free((char *)r->resolve[i].name);
    free(r->resolve);
    for (size_t i = 0; i < r->nheaders; i++) free(r->owned[i]);
    free(r->owned);
    free(r->headers);
    free(r->body);
    cli_req_init(r);
}

/* RFC 9110 token characters: what a header name may be made of. */
static int is_token(const char *s, size_t n)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              strchr("!#$%&'*+-.^_`|~", c)))
            return 0;
    }
    return 1;
}

/* "Name: value" (value trimmed), "Name:" (remove), "Name;" (send empty):
 * curl's spellings, so muscle memory works. */
static int add_header(cli_req *r, const char *cmd, const char *synopsis, const char *arg)
{
    size_t n = strcspn(arg, ":;");
    if (!arg[n]) return cli_usage_error(cmd, synopsis, "header '%s' is not 'NAME: VALUE'", arg);
    if (!is_token(arg, n))
        return cli_usage_error(cmd, synopsis, "header name '%.*s' is not a valid name", (int)n,
                               arg);
    char *copy = strdup(arg);
    qv_header *hs = realloc(r->headers, (r->nheaders + 2) * sizeof(*hs));
    if (hs) r->headers = hs;
    char **owned = realloc(r->owned, (r->nheaders + 1) * sizeof(*owned));
    if (owned) r->owned = owned;
    if (!copy || !hs || !owned) {
        free(copy);
        cli_error(cmd, "out of memory");
        return CLI_EFAIL;
    }
    char sep = copy[n];
    copy[n] = '\0';
    char *value = copy + n + 1;
    value += strspn(value, " \t");
    size_t vlen = strlen(value);
    while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t')) value[--vlen] = '\0';
    if (sep == ';') {
        if (vlen) {
            free(copy);
            return cli_usage_error(cmd, synopsis, "header '%s': use 'NAME: VALUE' or 'NAME;'", arg);
        }
        value = "";
    } else if (!vlen) {
        value = NULL; /* quiver's way to drop a header, libcurl's own included */
    }
    r->owned[r->nheaders] = copy;
    r->headers[r->nheaders] = (qv_header){copy, value};
    r->nheaders++;
    r->headers[r->nheaders] = (qv_header){0};
    return 0;
}

/* The bytes of DATA, or of the file named after '@' ("@-" = stdin). */
static int read_data(const char *cmd, const char *arg, char **out, size_t *len)
{
    if (arg[0] != '@') {
        *len = strlen(arg);
        *out = strdup(arg);
        if (!*out) {
            cli_error(cmd, "out of memory");
            return CLI_EFAIL;
        }
        return 0;
    }
    const char *path = arg + 1;
    FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!fp) {
        cli_error(cmd, "cannot read %s: %s", path, strerror(errno));
        return CLI_EFAIL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 4096) {
            size_t ncap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                if (fp != stdin) fclose(fp);
                cli_error(cmd, "out of memory");
                return CLI_EFAIL;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(fp);
    if (fp != stdin) fclose(fp);
    if (bad) {
        free(buf);
        cli_error(cmd, "cannot read %s", path);
        return CLI_EFAIL;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* curl's HOST:PORT:ADDR (HOST may be [v6]) as quiver's {"HOST:PORT", "ADDR"}. */
static int add_resolve(cli_req *r, const char *cmd, const char *synopsis, const char *arg)
{
    const char *host_end = arg[0] == '[' ? strchr(arg, ']') : arg + strcspn(arg, ":");
    const char *port = host_end && *host_end ? strchr(host_end, ':') : NULL;
    const char *addr = port ? strchr(port + 1, ':') : NULL;
    if (!addr || port == arg || addr == port + 1 || !addr[1] ||
        strspn(port + 1, "0123456789") != (size_t)(addr - port - 1))
        return cli_usage_error(cmd, synopsis, "--resolve wants HOST:PORT:ADDRESS, not '%s'", arg);
    char *copy = strdup(arg);
    qv_pair *ps = realloc(r->resolve, (r->nresolve + 2) * sizeof(*ps));
    if (ps) r->resolve = ps;
    if (!copy || !ps) {
        free(copy);
        cli_error(cmd, "out of memory");
        return CLI_EFAIL;
    }
    copy[addr - arg] = '\0';
    r->resolve[r->nresolve++] = (qv_pair){copy, copy + (addr - arg) + 1};
    r->resolve[r->nresolve] = (qv_pair){0};
    return 0;
}

static int set_executor(cli_req *r, const char *cmd, const char *synopsis, const char *arg)
{
    static const struct {
        const char *name;
        qv_executor_kind kind;
    } kinds[] = {{"threads", QV_THREADS}, {"loop", QV_LOOP}, {"processes", QV_PROCESSES}};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(arg, kinds[i].name) == 0) {
            r->kind = kinds[i].kind;
            r->kind_name = kinds[i].name;
            return 0;
        }
    }
    return cli_usage_error(cmd, synopsis, "--executor must be threads, loop or processes, not '%s'",
                           arg);
}

int cli_req_option(cli_req *r, const char *cmd, const char *synopsis, int key, const char *arg)
{
    int rc;
    switch (key) {
    case 'H':
        return add_header(r, cmd, synopsis, arg);
    case 'X':
        if (!is_token(arg, strlen(arg)))
            return cli_usage_error(cmd, synopsis, "'%s' is not an HTTP method", arg);
        r->method = arg;
        return 0;
    case 'd':
    case CLI_OPT_JSON: {
        if (r->body) return cli_usage_error(cmd, synopsis, "give one body: -d or --json, once");
        if ((rc = read_data(cmd, arg, &r->body, &r->body_len))) return rc;
        r->body_from_stdin = strcmp(arg, "@-") == 0;
        if (key == 'd') return 0;
        /* The text is checked, then sent as given: re-encoding a parsed
         * value would respell numbers (0.1 as 0.10000000000000001). */
        r->body_is_json = 1;
        json_error_t je;
        json_t *j = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &je);
        if (!j)
            return cli_usage_error(cmd, synopsis, "--json: not JSON: %s (line %d, column %d)",
                                   je.text, je.line, je.column);
        json_decref(j);
        return 0;
    }
    case CLI_OPT_TIMEOUT:
        if (parse_seconds_ms(arg, MAX_TIMEOUT_S, &r->timeout_ms))
            return cli_usage_error(cmd, synopsis, "--timeout wants seconds > 0, not '%s'", arg);
        return 0;
    case 'k':
        r->insecure = 1;
        return 0;
    case CLI_OPT_CACERT:
        r->ca_file = arg;
        return 0;
    case CLI_OPT_EXECUTOR:
        return set_executor(r, cmd, synopsis, arg);
    case 'E':
        r->client_cert = arg;
        return 0;
    case CLI_OPT_KEY:
        r->client_key = arg;
        return 0;
    case CLI_OPT_PASS:
        r->key_password = arg;
        return 0;
    case 'x':
        r->proxy = arg;
        return 0;
    case CLI_OPT_UNIX_SOCKET:
        r->unix_socket = arg;
        return 0;
    case CLI_OPT_RESOLVE:
        return add_resolve(r, cmd, synopsis, arg);
    case CLI_OPT_RETRIES:
        if (parse_long(arg, 0, 100, &r->retries))
            return cli_usage_error(cmd, synopsis, "--retries wants 0 to 100, not '%s'", arg);
        return 0;
    case CLI_OPT_RETRY_DELAY:
    case CLI_OPT_RETRY_MAX:
        if (parse_seconds_ms(arg, 3600,
                             key == CLI_OPT_RETRY_DELAY ? &r->retry_delay_ms : &r->retry_max_ms))
            return cli_usage_error(
                cmd, synopsis, "%s wants seconds > 0, not '%s'",
                key == CLI_OPT_RETRY_DELAY ? "--retry-delay" : "--retry-max-delay", arg);
        return 0;
    case CLI_OPT_RATE: {
        char *end;
        errno = 0;
        r->rate = strtod(arg, &end);
        if (errno || end == arg || *end || !(r->rate > 0) || r->rate > 1e6)
            return cli_usage_error(cmd, synopsis, "--rate wants requests per second > 0, not '%s'",
                                   arg);
        return 0;
    }
    case CLI_OPT_MAX_QUEUED:
        if (parse_long(arg, 1, 100000000, &r->max_queued))
            return cli_usage_error(cmd, synopsis, "--max-queued wants 1 or more, not '%s'", arg);
        return 0;
    default:
        return -1;
    }
}

int cli_req_finish(cli_req *r, const char *cmd, const char *synopsis)
{
    /* As curl and httpie do: a body without -X means POST. */
    if (!r->method) r->method = r->body ? "POST" : "GET";
    if (r->body_is_json) {
        for (size_t i = 0; i < r->nheaders; i++)
            if (strcasecmp(r->headers[i].name, "Content-Type") == 0) return 0;
        return add_header(r, cmd, synopsis, "Content-Type: application/json");
    }
    return 0;
}

int cli_session_new(const cli_req *r, int workers, const char *cmd, qv_session **out)
{
    qv_executor *ex;
    int rc = qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                      .kind = r->kind,
                                                      .max_workers = workers,
                                                      .max_queued = (size_t)r->max_queued,
                                                      .per_host = {.rate = r->rate}});
    if (rc == QV_OK) {
        qv_session_opts so = {
            .size = sizeof(so),
            .executor = ex,
            .timeout_ms = r->timeout_ms,
            .insecure = r->insecure,
            .ca_file = r->ca_file,
            .client_cert = r->client_cert,
            .client_key = r->client_key,
            .key_password = r->key_password,
            .proxy = r->proxy,
            .unix_socket = r->unix_socket,
            .resolve = r->resolve,
            .retry = r->retries ? &(qv_retry){.max_retries = (int)r->retries,
                                              .backoff_ms = r->retry_delay_ms,
                                              .max_backoff_ms = r->retry_max_ms}
                                : NULL,
        };
        if ((rc = qv_session_new(out, &so)) == QV_OK) return 0;
        qv_executor_free(ex);
    }
    cli_error(cmd, "cannot create a session: %s: %s", qv_errname(rc), qv_strerror(rc));
    return CLI_EFAIL;
}

void cli_session_free(qv_session *s)
{
    qv_executor *ex = qv_session_executor(s);
    qv_session_free(s);
    qv_executor_free(ex);
}

void cli_req_fill(const cli_req *r, const char *url, qv_request_opts *out)
{
    memset(out, 0, sizeof(*out));
    out->size = sizeof(*out);
    out->method = r->method;
    out->url = url;
    out->headers = r->headers;
    if (r->body) {
        out->body = r->body;
        out->body_len = r->body_len;
        /* body_len 0 means strlen to quiver, which is 0 for "": still right. */
    }
}
