/*
 * Request and session options shared by every subcommand (-H, -X, -d,
 * --json, --timeout, -k, --cacert, --executor, --retries and its delays,
 * --rate, --max-queued, --cert/--key/--pass, --proxy, --unix-socket,
 * --resolve): parsed once here, turned into quiver's option
 * structs in one place.
 */
#ifndef QV_CLI_REQOPTS_H
#define QV_CLI_REQOPTS_H

#include <getopt.h>
#include <stddef.h>

#include <quiver.h>

typedef struct cli_req {
    const char *method; /* -X; NULL = GET, or POST when there is a body */
    qv_header *headers; /* -H, ends with {0}; NULL when none */
    size_t nheaders;
    char **owned; /* the -H copies the headers point into */
    char *body;   /* -d or --json (NUL-terminated copy) */
    size_t body_len;
    int body_is_json;      /* the body came from --json (and parses) */
    int body_from_stdin;   /* -d @- or --json @-: stdin is taken */
    long timeout_ms;       /* --timeout; 0 = the library's default (none) */
    int insecure;          /* -k */
    const char *ca_file;   /* --cacert */
    qv_executor_kind kind; /* --executor */
    const char *kind_name; /* its name, for messages */
    long retries;          /* --retries: attempts after the first */
    long retry_delay_ms;   /* --retry-delay: the first backoff */
    long retry_max_ms;     /* --retry-max-delay: the cap, Retry-After included */
    double rate;           /* --rate: requests started per second per host; 0 = no limit */
    long max_queued;       /* --max-queued: submits wait beyond this many; 0 = no limit */

    /* Networks and identity */
    const char *client_cert;  /* -E, --cert */
    const char *client_key;   /* --key */
    const char *key_password; /* --pass, --key-password */
    const char *proxy;        /* -x, --proxy */
    const char *unix_socket;  /* --unix-socket */
    qv_pair *resolve;         /* --resolve HOST:PORT:ADDR as {"HOST:PORT", "ADDR"} (one
                                 allocation per pair, at name), ends with {0}; or NULL */
    size_t nresolve;
} cli_req;

/* getopt values of the shared long-only options; subcommands number theirs
 * from CLI_OPT_OWN. */
enum {
    CLI_OPT_JSON = 256,
    CLI_OPT_TIMEOUT,
    CLI_OPT_CACERT,
    CLI_OPT_EXECUTOR,
    CLI_OPT_RETRIES,
    CLI_OPT_RETRY_DELAY,
    CLI_OPT_RETRY_MAX,
    CLI_OPT_RATE,
    CLI_OPT_MAX_QUEUED,
    CLI_OPT_HELP,
    CLI_OPT_KEY,
    CLI_OPT_PASS,
    CLI_OPT_UNIX_SOCKET,
    CLI_OPT_RESOLVE,
    CLI_OPT_OWN = 300
};

#define CLI_REQ_SHORTOPTS "H:X:d:kE:x:"
#define CLI_REQ_LONGOPTS                                                                           \
    {"header", required_argument, NULL, 'H'}, {"request", required_argument, NULL, 'X'},           \
        {"data", required_argument, NULL, 'd'}, {"json", required_argument, NULL, CLI_OPT_JSON},   \
        {"timeout", required_argument, NULL, CLI_OPT_TIMEOUT},                                     \
        {"insecure", no_argument, NULL, 'k'}, {"cacert", required_argument, NULL, CLI_OPT_CACERT}, \
        {"executor", required_argument, NULL, CLI_OPT_EXECUTOR},                                   \
        {"retries", required_argument, NULL, CLI_OPT_RETRIES},                                     \
        {"retry-delay", required_argument, NULL, CLI_OPT_RETRY_DELAY},                             \
        {"retry-max-delay", required_argument, NULL, CLI_OPT_RETRY_MAX},                           \
        {"rate", required_argument, NULL, CLI_OPT_RATE},                                           \
        {"max-queued", required_argument, NULL, CLI_OPT_MAX_QUEUED},                               \
        {"cert", required_argument, NULL, 'E'}, {"key", required_argument, NULL, CLI_OPT_KEY},     \
        {"pass", required_argument, NULL, CLI_OPT_PASS},                                           \
        {"key-password", required_argument, NULL, CLI_OPT_PASS},                                   \
        {"proxy", required_argument, NULL, 'x'},                                                   \
        {"unix-socket", required_argument, NULL, CLI_OPT_UNIX_SOCKET},                             \
        {"resolve", required_argument, NULL, CLI_OPT_RESOLVE},                                     \
    {                                                                                              \
        "help", no_argument, NULL, CLI_OPT_HELP                                                    \
    }

/* The help text of the shared options, for each subcommand's --help. */
extern const char cli_req_help[];

void cli_req_init(cli_req *r);
void cli_req_free(cli_req *r);

/* Handles one getopt result if it is a shared option: returns -1 when the
 * option is not one of these, 0 when it was taken, or an exit code after
 * printing why the value is bad. */
int cli_req_option(cli_req *r, const char *cmd, const char *synopsis, int key, const char *arg);

/* Checks the options together (e.g. -d with --json) once parsing is done and
 * settles the method. 0, or an exit code after printing why. */
int cli_req_finish(cli_req *r, const char *cmd, const char *synopsis);

/* A session for these options on an executor of its own with `workers`
 * workers (0 = the default). 0 with *out set, or an exit code after printing
 * why. Free it with cli_session_free. */
int cli_session_new(const cli_req *r, int workers, const char *cmd, qv_session **out);
/* Frees the session, then its executor. */
void cli_session_free(qv_session *s);

/* Request options for one URL; they point into r, which must outlive them. */
void cli_req_fill(const cli_req *r, const char *url, qv_request_opts *out);

#endif
