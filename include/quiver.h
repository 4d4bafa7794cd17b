/*
 * quiver — asynchronous HTTP for humans, in C.
 *
 * One public header. A qv_session holds requests-style defaults (headers,
 * params, auth, cookies, timeouts, redirects); every request returns a
 * qv_future at once and an executor completes it in the background. Errors
 * are "shifted": submitting never fails because of the network, the error is
 * what qv_future_result() returns.
 *
 * Conventions:
 *  - Functions return int error codes: QV_OK (0) or a QV_E* code (> 0).
 *  - Out-parameters come first after the object.
 *  - *_free(NULL) and qv_future_release(NULL) are no-ops.
 *  - Option structs start with a `size` field (set it to sizeof the struct;
 *    0 is taken as "the struct of this header"); a zero in any field means
 *    "the default", so designated initialisers are safe.
 *  - Everything passed in is copied at submit: the caller may free it at once.
 *  - If a submit call returns an error, no future exists and no callback
 *    ever fires.
 *  - Misuse no return code can report (a future released more often than
 *    referenced, a session or executor freed twice, a pointer that is not
 *    one passed as one) prints what happened on stderr and aborts. Checked
 *    cheaply, with a magic word in each object: a best effort once the
 *    memory is really freed and reused (ASan reports it anyway), but a
 *    future's extra release is caught for sure while quiver holds it.
 */
#ifndef QUIVER_H
#define QUIVER_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QV_VERSION_MAJOR  0
#define QV_VERSION_MINOR  1
#define QV_VERSION_PATCH  0
#define QV_VERSION_STRING "0.1.0"

/* The library's version string, e.g. "0.1.0". */
const char *qv_version(void);

/* A pluggable allocator (like SQLite's and libcurl's): every allocation of
 * quiver, and of libcurl and jansson on its behalf, goes through it. Install
 * it before any other quiver call (QV_EINVAL after); NULL restores the C
 * library's. With a custom allocator, jansson's allocation functions are
 * set to it too, so free what jansson returns (json_dumps) with them.
 * quiver initialises libcurl (curl_global_init_mem) with its own allocation
 * functions unless your program called curl_global_init first: a program
 * that uses libcurl itself and loads quiver with dlopen must then not
 * dlclose it while libcurl is in use. */
typedef struct qv_allocator {
    void *(*malloc)(size_t n);
    void *(*calloc)(size_t n, size_t size);
    void *(*realloc)(void *p, size_t n);
    void (*free)(void *p);
} qv_allocator;
int qv_set_allocator(const qv_allocator *a);

/* Forward declaration of jansson's json_t: users who never touch JSON need
 * no jansson headers. */
struct json_t;

typedef struct qv_session qv_session;
typedef struct qv_executor qv_executor;
typedef struct qv_future qv_future;
typedef struct qv_response qv_response;
typedef struct qv_as_completed qv_as_completed;

/* ------------------------------------------------------------------ errors */

/* Error codes. The names and messages live in one table (src/error.c). */
enum qv_error {
    QV_OK = 0,
    QV_EINVAL,           /* invalid argument */
    QV_ENOMEM,           /* out of memory */
    QV_EURL,             /* invalid or unsupported URL (also a redirect to one) */
    QV_ECONNECT,         /* connection refused, reset or failed (incl. DNS) */
    QV_ECONNECT_TIMEOUT, /* connecting took longer than the connect timeout */
    QV_EREAD_TIMEOUT,    /* no bytes received for the read timeout */
    QV_ETIMEOUT,         /* the whole request took longer than the timeout */
    QV_ETLS,             /* TLS handshake or certificate verification failed */
    QV_EPROXY,           /* the proxy failed or refused */
    QV_EREDIRECTS,       /* too many redirects */
    QV_EPROTOCOL,        /* malformed or truncated response */
    QV_ETOO_LARGE,       /* the response is over a size limit */
    QV_EDECODE,          /* content decoding (gzip/deflate) failed */
    QV_EJSON,            /* the body is not valid JSON (or a JSON body could not be encoded) */
    QV_EHTTP,            /* HTTP status 4xx/5xx, from qv_response_raise_for_status */
    QV_ECANCELLED,       /* the future was cancelled */
    QV_ESHUTDOWN,        /* the session or executor is closed */
    QV_EWORKER,          /* a worker process died */
    QV_EHOOK,            /* a response or request hook failed */
    QV_EWAIT_TIMEOUT,    /* a result/wait timeout expired; the future goes on */
    QV_EIO,              /* a local file (e.g. a multipart upload) could not be read */
    QV_ETRANSFER,        /* any other transfer failure; the message has libcurl's detail */
    QV_EAGAIN,           /* the executor's queue is full (max_queued with no_block) */
    QV_ERROR_COUNT_      /* not an error: the number of codes */
};

/* The message of the last call on this thread that failed with something
 * to tell beyond its code (qv_session_new loading a cookie_file,
 * qv_session_save_cookies; qv_executor_new, or qv_session_new making its
 * executor, failing with QV_ENOMEM: which descriptor, thread, process or
 * memory ran out): e.g. which file and why. "" when that call
 * succeeded or no such call was made; never NULL. Valid until the thread's
 * next such call. */
const char *qv_last_error(void);
/* A short human message for a code ("connection failed"); never NULL. */
const char *qv_strerror(int code);
/* The code's name ("QV_ECONNECT"); never NULL. */
const char *qv_errname(int code);

/* ---------------------------------------------------------------- options */

/* A name/value pair. Arrays of pairs end with an element whose name is NULL:
 * (const qv_header[]){{"Accept", "application/json"}, {0}}. */
typedef struct qv_pair {
    const char *name;
    const char *value;
} qv_pair;
typedef qv_pair qv_header; /* HTTP header */
typedef qv_pair qv_param;  /* query parameter or urlencoded form field */
typedef qv_pair qv_cookie; /* cookie (name=value) */

/* One multipart/form-data part. Arrays end with an element whose name is
 * NULL. Give either `value` (inline data; `value_len` 0 means strlen) or
 * `file` (a path, read when the transfer runs; unreadable → QV_EIO; not a
 * regular file, e.g. a FIFO, → QV_EINVAL: send a pipe as upload_path). */
typedef struct qv_part {
    const char *name;
    const char *value;
    size_t value_len;
    const char *file;
    const char *filename;     /* name reported to the server (default: file's basename) */
    const char *content_type; /* optional */
} qv_part;

/* A response hook: runs in the background after the transfer, before the
 * future completes: for QV_THREADS on a worker, never a thread of yours
 * waiting for a result; for QV_LOOP on one of its delivery threads; for
 * QV_PROCESSES in the worker process (see guide.md). A
 * non-zero return fails the future with QV_EHOOK; qv_response_set_hook_error()
 * gives the message. A hook may attach its own result with
 * qv_response_set_result(). */
typedef int (*qv_hook_fn)(qv_session *s, qv_response *r, void *arg);

typedef struct qv_hook {
    qv_hook_fn fn;
    void *arg;
} qv_hook; /* arrays end with {0} */

/* A request hook (.on_request, on the session and on a request): runs
 * before each attempt of a request, retries included, on the thread that
 * starts the attempt: a QV_THREADS worker, the thread driving QV_LOOP (its
 * I/O thread, or a thread of yours waiting for one of its results; keep it
 * short there: every transfer waits for it), and with QV_PROCESSES in the
 * worker process, like response hooks (`s` is then the worker's stand-in
 * session, and what the hook changes in memory stays in that process). It
 * may change the headers of that attempt alone, e.g. put a fresh OAuth
 * token on a retry. The session's hook runs first, then the request's. A
 * non-zero return fails the future with QV_EHOOK (the attempt is not sent,
 * nor retried; qv_attempt_set_error gives the message). The qv_attempt is
 * valid during the call only. */
typedef struct qv_attempt qv_attempt;
typedef int (*qv_request_hook_fn)(qv_session *s, qv_attempt *a, void *arg);

/* Sets a header of this attempt: replaces every header of that name
 * (case-insensitive; libcurl's own, e.g. the Authorization of .auth, too)
 * or adds it; value NULL removes it (libcurl's own default, e.g. Accept,
 * included); "" sends it empty. QV_EINVAL for a name that is not an HTTP
 * token or CR/LF in the value (nothing changes), QV_ENOMEM. */
int qv_attempt_set_header(qv_attempt *a, const char *name, const char *value);
/* 1 for the first attempt, 2 for the first retry, ... */
int qv_attempt_number(const qv_attempt *a);
/* The request's method ("GET") and URL (with its query parameters). */
const char *qv_attempt_method(const qv_attempt *a);
const char *qv_attempt_url(const qv_attempt *a);
/* The message of a failing request hook (copied). QV_OK, QV_EINVAL or
 * QV_ENOMEM. */
int qv_attempt_set_error(qv_attempt *a, const char *message);

/* A debug trace (.on_debug, on the session or a request): what libcurl
 * sends, receives and does, one event at a time. Header events are one
 * line each (the request or status line, or a header; no CR LF); info
 * events are libcurl's comments (connecting, TLS, redirects), one line each.
 * Body bytes come only with .debug_body, as libcurl reads and writes them
 * (possibly chunked or compressed). The values of Authorization,
 * Proxy-Authorization, Cookie and Set-Cookie headers, and passwords in URLs,
 * are "[redacted]" unless QV_DEBUG=unsafe is in the environment; body bytes
 * are never redacted. Runs on the thread doing the transfer (a QV_THREADS
 * worker, or your thread reading a streamed body in qv_response_read; the
 * thread driving QV_LOOP: its I/O thread or a thread of yours waiting for
 * one of its results or reading a streamed body; keep it short); with
 * QV_PROCESSES the events cross from the worker and the callback runs in
 * this process, on the pool's dispatcher thread, as they come. `data` is valid during the
 * call only. QV_DEBUG=1 in the environment prints the same events (bodies
 * aside) to stderr, one line each, "quiver #ID" first (see docs/guide.md). */
typedef enum qv_debug_kind {
    QV_DEBUG_INFO = 0,   /* libcurl's comment on what it does */
    QV_DEBUG_HEADER_OUT, /* the request line or a header sent */
    QV_DEBUG_HEADER_IN,  /* the status line or a header received */
    QV_DEBUG_DATA_OUT,   /* body bytes sent (.debug_body only) */
    QV_DEBUG_DATA_IN     /* body bytes received (.debug_body only) */
} qv_debug_kind;
typedef void (*qv_debug_fn)(qv_future *f, qv_debug_kind kind, const char *data, size_t len,
                            void *arg);

typedef enum qv_auth_kind {
    QV_AUTH_NONE = 0, /* none; but a username alone means basic */
    QV_AUTH_BASIC,
    QV_AUTH_DIGEST,
    QV_AUTH_BEARER /* `password` is the token */
} qv_auth_kind;

typedef enum qv_executor_kind {
    QV_THREADS = 0, /* thread pool (default; 8 workers like requests-futures) */
    QV_LOOP,        /* one I/O thread driving many transfers, HTTP/2 multiplexing */
    QV_PROCESSES    /* crash-isolating worker processes; a response held in
                       memory must fit in 1 GiB (one wire frame), or
                       QV_ETOO_LARGE (the large-body forms have no limit) */
} qv_executor_kind;

/* Retrying failed attempts (per session, or per request). An attempt that
 * ends in one of the chosen failures is sent again after a wait: backoff_ms,
 * doubled each retry, capped at max_backoff_ms, with jitter (each wait is
 * drawn between half and all of it); a Retry-After header (seconds or an
 * HTTP date) on a retried response sets the wait instead, and one longer
 * than max_backoff_ms ends the retries (that response is the outcome). Only
 * idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) are retried
 * unless all_methods is set. Every attempt has the request's timeouts; hooks
 * run on the final outcome only; qv_response_attempts() and
 * qv_future_attempts() tell how many attempts were made. */
enum {
    QV_RETRY_CONNECT = 1 << 0,      /* QV_ECONNECT, QV_ECONNECT_TIMEOUT */
    QV_RETRY_READ_TIMEOUT = 1 << 1, /* QV_EREAD_TIMEOUT, QV_ETIMEOUT */
    QV_RETRY_STATUS = 1 << 2,       /* a response with a status in `statuses` */
    QV_RETRY_PROTOCOL = 1 << 3,     /* QV_EPROTOCOL: the connection broke mid-response */
    QV_RETRY_AFTER_STATUS = 1 << 4  /* a 413, 429 or 503 response that has a Retry-After
                                       header (urllib3's rule), whatever `statuses` says */
};
#define QV_DEFAULT_RETRY_BACKOFF_MS     200
#define QV_DEFAULT_RETRY_MAX_BACKOFF_MS 30000

typedef struct qv_retry {
    int max_retries;     /* attempts after the first; 0 = no retries */
    unsigned on;         /* QV_RETRY_* bits; 0 = CONNECT | READ_TIMEOUT | STATUS */
    const int *statuses; /* ends with 0; NULL = 429, 502, 503, 504 */
    long backoff_ms;     /* the first wait; 0 = 200 */
    long max_backoff_ms; /* the longest wait, Retry-After included; 0 = 30000 */
    int all_methods;     /* 1 = retry POST and PATCH too */
    int no_retry_after;  /* 1 = ignore Retry-After */
} qv_retry;

/* Limits for one host ("host:port"), across every session of an executor. */
typedef struct qv_host_limits {
    int max_concurrent; /* requests to the host in flight at once; 0 = no cap */
    double rate;        /* requests started per second (a token bucket); 0 = no limit */
    int burst;          /* the bucket's size: requests that may start at once; 0 = 1 */
} qv_host_limits;

/* What a saturation warning is about (each is told once per executor). */
typedef enum qv_saturation {
    QV_SATURATED_QUEUE = 0,  /* max_queued reached: a submit blocked or got QV_EAGAIN */
    QV_SATURATED_WORKERS,    /* every worker busy while work waits */
    QV_SATURATED_HOST,       /* a host limit held a request back */
    QV_SATURATED_CONNECTIONS /* QV_LOOP: more transfers than max_total_connections */
} qv_saturation;

/* A warning hook: runs on a thread that submits (at the submit that saw
 * the condition, or the next one after a worker saw it), outside every
 * quiver lock; once per kind per executor. */
typedef void (*qv_saturation_fn)(qv_executor *ex, qv_saturation what, void *arg);

typedef struct qv_executor_opts {
    size_t size;
    qv_executor_kind kind;
    int max_workers;     /* 0 = 8 */
    int max_connections; /* idle connections kept open for reuse (per worker for
                            QV_THREADS); 0 = 8 */
    /* QV_LOOP only (a QV_THREADS pool never uses more than max_workers
     * connections at once): caps on open connections, 0 = none. Transfers
     * over a cap wait for a connection (or share one over HTTP/2). */
    int max_host_connections;
    int max_total_connections;
    /* QV_PROCESSES only: a worker whose hooks run longer is killed, and its
     * future fails with QV_EWORKER; 0 = no limit. */
    long hook_timeout_ms;
    /* Backpressure: at most this many futures wait for a worker (0 = no
     * limit); a submit beyond it blocks until there is room, or with
     * no_block returns QV_EAGAIN at once. Don't let a hook or done callback
     * block on its own executor's full queue: use no_block there. */
    size_t max_queued;
    int no_block;
    /* Limits that apply to each host separately (see
     * qv_executor_set_host_limits for one host's own). */
    qv_host_limits per_host;
    qv_saturation_fn on_saturated; /* optional warning hook */
    void *saturated_arg;
    /* QV_PROCESSES: a worker process that has answered this many requests
     * is let go and replaced (its connections close with it), so whatever
     * its hooks leak stays bounded, like Python's max_tasks_per_child;
     * 0 = no limit. */
    long max_requests_per_worker;
    /* QV_THREADS and QV_LOOP: when this many futures have finished with a
     * response that their holder has not collected yet (qv_future_result,
     * qv_future_wait, qv_future_release), no more requests start (a pool's
     * workers, the thread driving the loop) until half of them are
     * collected, so finished responses cannot pile up while the collecting
     * thread waits for a core; 0 = max_workers, at least 64; -1 = no bound
     * (below -1: QV_EINVAL). See "Collecting responses" in docs/guide.md. */
    long max_uncollected;
} qv_executor_opts;

/*
 * Timeouts are in milliseconds: 0 = the default, -1 = no limit.
 * Defaults: connect 10 s, read 30 s (no bytes received for that long fails the
 * request with QV_EREAD_TIMEOUT, so a stalled server cannot hang a future
 * forever), total none.
 */
#define QV_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define QV_DEFAULT_READ_TIMEOUT_MS    30000
#define QV_DEFAULT_MAX_REDIRECTS      30
#define QV_DEFAULT_MAX_WORKERS        8
/* The longest URL (in bytes, query parameters included) quiver sends; a
 * longer one fails at result with QV_EURL ("URL too long"). libcurl 7.88
 * builds a request in at most 1 MiB; servers accept far less (nginx 8 KiB,
 * gunicorn 4 KiB by default). */
#define QV_MAX_URL_LENGTH (256 * 1024)

typedef struct qv_session_opts {
    size_t size;
    qv_executor *executor;          /* shared executor (not owned); NULL = own one */
    qv_executor_kind executor_kind; /* kind of the executor the session owns */
    int max_workers;                /* workers of the owned executor; 0 = 8 */
    const qv_header *headers;       /* default headers */
    const qv_param *params;         /* default query parameters */
    const qv_cookie *cookies;       /* put in the jar at creation, for every host (see
                                       qv_session_set_cookie to scope one to a domain) */
    const qv_hook *hooks;           /* response hooks run for every request */
    qv_auth_kind auth;
    const char *username;
    const char *password;
    long timeout_ms;
    long connect_timeout_ms;
    long read_timeout_ms;
    int max_redirects;         /* 0 = 30 */
    int no_redirects;          /* 1 = do not follow redirects */
    size_t max_response_bytes; /* 0 = no limit (decoded bytes) */
    int insecure;              /* 1 = skip TLS verification */
    const char *ca_file;       /* CA bundle to verify against */
    const char *proxy;         /* proxy URL for every scheme ("" = none); NULL =
                                  libcurl's environment proxies (see proxies,
                                  trust_env) */
    const char *user_agent;    /* NULL = "quiver/<version>" */
    const qv_retry *retry;     /* NULL = no retries */
    /* Runs before each attempt of every request (see qv_request_hook_fn). */
    qv_request_hook_fn on_request;
    void *on_request_arg;
    /* Networks and identity (docs/guide.md, "Networks and identity"). */
    const char *client_cert;       /* client certificate (PEM file) for servers that ask */
    const char *client_key;        /* its private key (PEM file); NULL = in client_cert */
    const char *key_password;      /* the key's password, if it is encrypted */
    const char *ca_path;           /* a directory of CA certificates (c_rehash'ed) */
    const char *pinned_public_key; /* "sha256//<base64>[;sha256//...]" or a key file:
                                      the server's key must match (else QV_ETLS) */
    int tls_min_version;           /* 0 = libcurl's default (TLS 1.2), 12 = TLS 1.2,
                                      13 = TLS 1.3 */
    /* Proxies by the request URL's scheme: pairs "http", "https" or "all"
     * → proxy URL (http://, https://, socks4a://, socks5://, socks5h://;
     * credentials may be in it; "" = no proxy). A scheme's own entry wins
     * over "all", which wins over `proxy`. A redirect keeps the proxy of the
     * request's URL. With no proxy set, libcurl's environment proxies
     * (http_proxy, https_proxy, all_proxy, no_proxy) apply. */
    const qv_pair *proxies;
    const char *no_proxy;       /* hosts to reach directly, libcurl's syntax
                                   ("example.com,.local,10.0.0.0/8", "*") */
    const char *proxy_username; /* proxy credentials (instead of in the URL) */
    const char *proxy_password;
    const char *proxy_ca_file; /* CA bundle for an https:// proxy */
    int trust_env;             /* 0 = use the environment's proxies when none is
                                  set; -1 = ignore them */
    const char *unix_socket;   /* connect to this Unix socket (the URL still
                                  gives Host and path) */
    const qv_pair *resolve;    /* pairs "host:port" → "addr" (one address): that
                                  address instead of DNS, for this session only */
    const qv_pair *connect_to; /* pairs "host:port" → "host2:port2": connect
                                  there instead (Host, TLS name unchanged);
                                  an empty host or port matches any */
    const char *interface;     /* local interface name or address to send from */
    int ip_version;            /* 0 = any, 4 = IPv4 only, 6 = IPv6 only */
    /* The client certificate and key as PEM text (copied) instead of files:
     * each replaces its file, client_cert or client_key. */
    const char *client_cert_pem;
    const char *client_key_pem;
    /* A debug trace of every request (see qv_debug_fn); debug_body: 1 =
     * body bytes too. */
    qv_debug_fn on_debug;
    void *on_debug_arg;
    int debug_body;
    /* A Netscape cookie file (the format of curl's -b and -c) loaded into
     * the jar at creation. A missing file is an empty jar (as for curl and
     * requests); one that cannot be read fails qv_session_new with QV_EIO, a
     * line that is not a comment or a cookie with QV_EINVAL (qv_last_error
     * says which). Nothing is written back: see qv_session_save_cookies. */
    const char *cookie_file;
} qv_session_opts;

/*
 * Per-request options. Flags here are tri-state: 0 = the session's setting,
 * 1 = on, -1 = off (e.g. `.no_redirects = -1` follows redirects even when the
 * session does not).
 */
typedef struct qv_request_opts {
    size_t size;
    const char *method; /* NULL = "GET" */
    const char *url;
    const qv_header *headers;  /* merged over the session's (same name replaces) */
    const qv_param *params;    /* appended to the URL's query, URL-encoded */
    const void *body;          /* raw body */
    size_t body_len;           /* 0 with a body = strlen(body) */
    const qv_param *form;      /* application/x-www-form-urlencoded body */
    const qv_part *multipart;  /* multipart/form-data body */
    const struct json_t *json; /* JSON body (serialised at submit) */
    qv_auth_kind auth;
    const char *username;
    const char *password;
    long timeout_ms;
    long connect_timeout_ms;
    long read_timeout_ms;
    int max_redirects;
    int no_redirects; /* tri-state */
    size_t max_response_bytes;
    int insecure;    /* tri-state */
    qv_hook_fn hook; /* runs after the session's hooks */
    void *hook_arg;
    void *user_data;       /* the future's user data */
    const qv_retry *retry; /* NULL = the session's; else replaces it whole */
    /* Runs before each attempt, after the session's on_request. */
    qv_request_hook_fn on_request;
    void *on_request_arg;
    /* The session's, unless given (see qv_session_opts): */
    const char *client_cert; /* with client_key, key_password and the _pem two
                                below: replaces the session's five as a whole */
    const char *client_key;
    const char *key_password;
    const char *unix_socket;
    const char *client_cert_pem; /* in the group of client_cert (see qv_session_opts) */
    const char *client_key_pem;
    /* This request's debug trace, instead of the session's; debug_body is
     * tri-state. */
    qv_debug_fn on_debug;
    void *on_debug_arg;
    int debug_body;

    /* ---- Large bodies (see "Large bodies" in docs/guide.md). One download
     * form at most: output_path, output_fd, on_data or stream. */

    /* Write the (decoded) body to this file as it arrives, never whole in
     * memory: to a temporary file beside it ("<path>.qv-XXXXXX"), renamed into
     * place when the transfer succeeded. On failure or cancel the temporary
     * file is removed, unless keep_partial = 1: then it is renamed into
     * place and the error message says how many bytes it holds. The
     * response's body is then empty; qv_response_body_bytes() says how many
     * bytes were written. With QV_PROCESSES the worker writes the file.
     * A path that exists and is no regular file (/dev/null, a FIFO,
     * /dev/stdout) is written in place, never renamed over or removed (with
     * resume too, from its start); a FIFO with no reader fails with QV_EIO
     * instead of waiting for one. So is a link to an open file that is a
     * regular file (/dev/stdout sent to a file, /dev/fd/N, /proc/self/fd/N;
     * with QV_PROCESSES the worker's descriptors, 0-2 alone the program's):
     * written from its start as curl -o does, emptied when the body's first
     * byte comes (a request that fails before leaves it as it was), or with
     * resume appended to. Any other link is replaced as any path is.
     * Bytes written in place cannot be taken back: once some went out, the
     * request is never retried. */
    const char *output_path;
    int keep_partial;
    /* With output_path: append to the file as it is (a partial download),
     * sending "Range: bytes=<its size>-". A 206 answer is appended (its
     * Content-Range must start there); a server that ignores the range (200)
     * rewrites the file from its start. The file is written in place and
     * kept whatever happens (keep_partial is implied); a retry resumes from
     * where the last attempt stopped. */
    int resume;
    /* Write the body to this descriptor, which stays the caller's (not
     * closed, not seeked). 0 means none: to write to descriptor 0, dup() it
     * first. A failed attempt's bytes cannot be taken back, so requests
     * with output_fd (and on_data) are never retried once body bytes went
     * out. With QV_PROCESSES the worker writes it, through a copy sent
     * with the request and closed when the transfer ends (a worker that
     * dies mid-body leaves what it wrote). */
    int output_fd;
    /* Push: called in order with every decoded chunk of the final
     * response's body (not of redirects). Return 0 to go on, non-zero to
     * stop: the future then fails with QV_EHOOK. Calls for one future never
     * overlap. Where it runs: on the worker thread (QV_THREADS); on the
     * thread driving the loop (QV_LOOP) until one call takes over 2 ms,
     * then on one of the loop's delivery threads for the rest of the body
     * (it waits in a 256 KiB buffer, and the transfer pauses while it is
     * full, so a slow callback holds up the other transfers for one call,
     * then its own transfer only; output_fd is written there too, or by
     * the loop's own thread while it takes bytes without blocking); on
     * the pool's dispatcher thread (QV_PROCESSES: the worker passes the
     * chunks through memory shared with the pool; a slow callback there
     * holds up the pool's other answers, so keep it short, or use
     * output_path or output_fd, which the worker writes itself). */
    int (*on_data)(qv_future *f, const void *chunk, size_t len, void *arg);
    void *on_data_arg;
    /* Progress: at most every 100 ms and once at the end, with the bytes
     * received and sent so far and their totals (-1 when unknown). Runs on
     * the thread that runs the transfer (for QV_THREADS its worker, or for
     * a streamed body your thread reading it in qv_response_read; for
     * QV_LOOP the one driving it, its I/O thread or a thread of yours
     * waiting for one of its results or reading a streamed body; the
     * dispatcher for QV_PROCESSES): keep it short. */
    void (*on_progress)(qv_future *f, long long dl_now, long long dl_total, long long ul_now,
                        long long ul_total, void *arg);
    void *on_progress_arg;
    /* A Range header, e.g. "bytes=0-1023" (not with resume). */
    const char *range;

    /* ---- Uploads. One body source at most (body, form, json, multipart,
     * upload_path, on_upload). The method stays the request's (POST, PUT). */

    /* Send this file's content, read as it is sent; Content-Length from its
     * size (at the start of each attempt). A 307/308 redirect or a retry
     * reads a regular file again from the start. Unreadable: QV_EIO. A pipe
     * (a FIFO, /dev/fd/N) goes chunked as its writer writes it, to its end;
     * the transfer waits for the writer (even one yet to open a FIFO)
     * without holding up any other (guide.md, Large bodies). A pipe is read
     * once: no retry once an attempt opened it, and a redirect that must
     * resend it fails with QV_EIO ("can't rewind"), as on_upload's does. */
    const char *upload_path;
    /* Produce the body: fill at most cap bytes of buf and return how many
     * (0 = the end, < 0 = fail the future with QV_EHOOK). Sent with
     * chunked transfer encoding unless upload_len gives its length. Such
     * a body can't be produced twice: a redirect or retry that must resend
     * it fails with QV_EIO ("can't rewind") instead of sending a truncated
     * body. Runs on the transfer's thread (QV_PROCESSES: on the pool's
     * dispatcher thread, which sends what it makes to the worker, up to
     * 1 MiB a call: keep it quick there, or use upload_path, which the
     * worker reads itself). */
    long (*on_upload)(void *buf, size_t cap, void *arg);
    void *on_upload_arg;
    long long upload_len; /* on_upload's length; 0 = unknown (chunked) */

    /* Pull, as requests' stream=True: the future completes as soon as the
     * final response's headers have arrived (hooks run then, without the
     * body); read the body with qv_response_read(). The reader sets the
     * pace: while it does not read, the transfer pauses and the connection
     * is not read further, so at most a small fixed buffer (256 KiB; on
     * QV_PROCESSES the worker's 1 MiB ring) waits in memory. Releasing the
     * future before the end closes the transfer (and its connection). Not
     * with output_path, output_fd or on_data. Never retried once the
     * headers were delivered. Don't read the body in a hook or done
     * callback: on QV_THREADS they run on the thread that would bring it. */
    int stream;
} qv_request_opts;

/* ---------------------------------------------------------------- executor */

/* Makes an executor (opts NULL: the defaults): QV_OK with *out set;
 * QV_EINVAL for a NULL out, an unknown kind, a negative max_workers,
 * connection cap, hook_timeout_ms, max_requests_per_worker or per-host
 * limit (or a rate that is not a finite number), a max_uncollected below
 * -1 (for each of these qv_last_error names the field), an opts struct with
 * fields this library does not know set, or a QV_PROCESSES pool made while
 * QV_THREADS or QV_LOOP threads exist; QV_ENOMEM when memory, a lock, a
 * descriptor, a fork or a thread could not be had (qv_last_error says
 * which; nothing is left behind then). */
int qv_executor_new(qv_executor **out, const qv_executor_opts *opts);
/* Stops accepting work, finishes what is queued and in flight, joins the
 * workers. Sessions still using the executor get QV_ESHUTDOWN on submit. */
void qv_executor_free(qv_executor *ex);

typedef struct qv_executor_stats {
    size_t queued;    /* waiting for a worker (held back by a host limit, or
                         held or sent ahead by a process pool, included) */
    size_t in_flight; /* being transferred, in hooks, or waiting to retry */
    size_t completed; /* finished with a response */
    size_t failed;    /* ended with an error */
    size_t cancelled;
    size_t connections_opened; /* new connections libcurl made */
    int workers;               /* workers started so far */
} qv_executor_stats;

int qv_executor_stats_get(qv_executor *ex, qv_executor_stats *out);

/* Sets one host's limits, replacing the executor's per_host defaults for it
 * (NULL = back to the defaults). `host` is "name" (any port) or "name:port";
 * a request is matched by its URL's host and port (redirects are not
 * limited). QV_EINVAL or QV_ENOMEM. */
int qv_executor_set_host_limits(qv_executor *ex, const char *host, const qv_host_limits *limits);

/* ----------------------------------------------------------------- session */

/* Makes a session (opts NULL: the defaults): QV_OK with *out set;
 * QV_EINVAL for a NULL out or a bad option, QV_EIO for a cookie_file that
 * cannot be read (qv_last_error says why), QV_ENOMEM, or what
 * qv_executor_new returns for the executor it makes when none is given. */
int qv_session_new(qv_session **out, const qv_session_opts *opts);
/* Stops new submits (QV_ESHUTDOWN); with cancel_pending, cancels this
 * session's queued futures; then waits for its in-flight ones. */
void qv_session_close(qv_session *s, int cancel_pending);
/* Closes (draining: queued work still runs), waits, frees. */
void qv_session_free(qv_session *s);
/* The executor the session submits to. */
qv_executor *qv_session_executor(qv_session *s);
/* A cookie's value from the session's jar (first match by name, any domain),
 * copied into buf. QV_OK, QV_EINVAL (no such cookie) or QV_ETOO_LARGE. */
int qv_session_cookie(qv_session *s, const char *name, char *buf, size_t buflen);
/* Puts a cookie in the jar for `domain` (NULL = sent to every host). */
int qv_session_set_cookie(qv_session *s, const char *name, const char *value, const char *domain);
/* Writes the jar to path as a Netscape cookie file (what .cookie_file and
 * curl -b read), atomically: a new file in path's directory (mode 0600),
 * renamed over path, so a reader sees the old file or the new one whole.
 * Session cookies (no expiry) are written too, as curl does; cookies set
 * for every host (no domain) are written for each host they were sent to.
 * QV_OK, QV_EINVAL, QV_ENOMEM or QV_EIO (qv_last_error names the path and
 * the reason). */
int qv_session_save_cookies(qv_session *s, const char *path);

/* Submits a request. On QV_OK *out is a new future owned by the caller (one
 * reference). Errors at submit: QV_EINVAL (bad options, CR/LF/NUL in a header
 * or URL), QV_ENOMEM, QV_EJSON, QV_ESHUTDOWN. */
int qv_request(qv_session *s, qv_future **out, const qv_request_opts *opts);

/* qv_get(s, &f, url, .timeout_ms = 500, ...) and friends. */
#define QV_REQ_(s, out, m, ...)                                                                    \
    qv_request(                                                                                    \
        (s), (out),                                                                                \
        &(qv_request_opts){.size = sizeof(qv_request_opts), .method = (m), .url = __VA_ARGS__})
#define qv_get(s, out, ...)     QV_REQ_(s, out, "GET", __VA_ARGS__)
#define qv_post(s, out, ...)    QV_REQ_(s, out, "POST", __VA_ARGS__)
#define qv_put(s, out, ...)     QV_REQ_(s, out, "PUT", __VA_ARGS__)
#define qv_patch(s, out, ...)   QV_REQ_(s, out, "PATCH", __VA_ARGS__)
#define qv_delete(s, out, ...)  QV_REQ_(s, out, "DELETE", __VA_ARGS__)
#define qv_head(s, out, ...)    QV_REQ_(s, out, "HEAD", __VA_ARGS__)
#define qv_options(s, out, ...) QV_REQ_(s, out, "OPTIONS", __VA_ARGS__)

/* ------------------------------------------------------------------ future */

typedef enum qv_future_state {
    QV_PENDING = 0, /* queued */
    QV_RUNNING,     /* transfer or hooks under way */
    QV_FINISHED,    /* a response (any HTTP status) */
    QV_FAILED,      /* an error */
    QV_CANCELLED
} qv_future_state;

/* Waits up to timeout_ms (-1 = forever) and gives the outcome: QV_OK with
 * *out set to the response (owned by the future, valid until its last
 * release), the future's error code, or QV_EWAIT_TIMEOUT (the future goes on).
 * out may be NULL. On QV_LOOP the waiting thread may drive transfers (and
 * run their request hooks and transfer callbacks) meanwhile; on QV_THREADS
 * it may run queued futures that call none of your code (no hook, transfer
 * callback or done callback), seeing its own result up to ~1 ms late then.
 * See guide.md. */
int qv_future_result(qv_future *f, qv_response **out, long timeout_ms);
/* Waits for a terminal state: QV_OK or QV_EWAIT_TIMEOUT (QV_EINVAL for a
 * NULL future, as qv_future_result). */
int qv_future_wait(qv_future *f, long timeout_ms);
/* 1 if the future is in a terminal state, else 0. */
int qv_future_done(qv_future *f);
qv_future_state qv_future_state_get(qv_future *f);
/* Cancels: a queued future never starts; a running one is aborted. Returns 1
 * if the future is (or will be) CANCELLED, 0 if it had already completed. */
int qv_future_cancel(qv_future *f);
/* The error code of a completed future (QV_OK when finished or not done). */
int qv_future_error_code(qv_future *f);
/* A human message naming the URL (without its userinfo: no password) and
 * libcurl's detail; NULL unless the future ended FAILED or CANCELLED. Valid
 * while the future lives. */
const char *qv_future_error(qv_future *f);
/* Attempts made so far (more than 1 after retries; 0 before the first). */
int qv_future_attempts(qv_future *f);
/* The HTTP status of the response whose transfer failed part-way (its
 * status line had arrived: a broken or stalled body, a redirect that
 * cannot be followed), or 0: the future did not fail, or failed before a
 * status line came (refused, a reply that is not HTTP, an empty one) or
 * outside a transfer (a hook). Lets a binding tell the two apart, as
 * requests does (a broken reply: ConnectionError before, ChunkedEncodingError
 * during; a read timeout: ReadTimeout before, ConnectionError during). */
int qv_future_error_status(qv_future *f);

/* Runs fn(f, arg) exactly once when f completes: on the thread that
 * delivers it (a QV_THREADS worker, never a thread of yours waiting for a
 * result; one of QV_LOOP's delivery threads; QV_PROCESSES' dispatcher), on
 * the thread that cancels it while it is queued, or at once in the caller
 * if f is already done. QV_OK, QV_EINVAL (f or fn NULL) or QV_ENOMEM. */
typedef void (*qv_done_fn)(qv_future *f, void *arg);
int qv_future_add_done_callback(qv_future *f, qv_done_fn fn, void *arg);

void *qv_future_user_data(qv_future *f);
void qv_future_set_user_data(qv_future *f, void *user_data);

/* Reference counting. Releasing before completion is safe and cancels
 * nothing: the session keeps its own reference until completion. */
qv_future *qv_future_ref(qv_future *f);
void qv_future_release(qv_future *f);

typedef enum qv_wait_mode {
    QV_ALL_COMPLETED = 0,
    QV_FIRST_COMPLETED,
    QV_FIRST_EXCEPTION /* first FAILED/CANCELLED, else all */
} qv_wait_mode;

/* Waits until the condition holds: QV_OK, or QV_EWAIT_TIMEOUT. NULL entries
 * are ignored. With n == 0 it returns QV_OK at once. */
int qv_wait(qv_future *const *fs, size_t n, qv_wait_mode mode, long timeout_ms);

/* Futures in completion order. new takes its own references. next gives the
 * next completed future (borrowed; valid while the iterator lives) with
 * QV_OK, QV_EWAIT_TIMEOUT, or QV_ESHUTDOWN when all have been given. */
int qv_as_completed_new(qv_as_completed **out, qv_future *const *fs, size_t n);
int qv_as_completed_next(qv_as_completed *ac, qv_future **out, long timeout_ms);
void qv_as_completed_free(qv_as_completed *ac);

/* A completion queue: plug quiver into your own poll/epoll/libuv loop.
 * qv_cq_add(cq, f) (takes its own reference) queues f when it completes;
 * qv_cq_fd(cq) is readable while completed futures wait; qv_cq_pop gives
 * the next one (QV_OK, the caller then owns one reference) or QV_EAGAIN.
 * qv_cq_free releases what is still queued; futures still running are
 * queued nowhere after it. */
typedef struct qv_cq qv_cq;
int qv_cq_new(qv_cq **out);
int qv_cq_add(qv_cq *cq, qv_future *f);
int qv_cq_fd(qv_cq *cq);
int qv_cq_pop(qv_cq *cq, qv_future **out);
void qv_cq_free(qv_cq *cq);

/* ---------------------------------------------------------------- response */

int qv_response_status(const qv_response *r);
const char *qv_response_reason(const qv_response *r); /* "OK", may be "" */
/* The body, always followed by a NUL byte (not counted in *len). */
const char *qv_response_body(const qv_response *r, size_t *len);
/* Reads the next bytes of the body into buf (at most cap): QV_OK with *n
 * bytes, and *n == 0 at the end of the body. With .stream = 1 it waits up to
 * timeout_ms (-1 = forever) for bytes to come (QV_EWAIT_TIMEOUT: none yet,
 * the stream goes on), and a failure of the transfer while the body comes
 * is returned here with the usual codes (QV_EPROTOCOL, QV_EREAD_TIMEOUT,
 * QV_ETOO_LARGE, ...; qv_response_read_error() says more), as is
 * QV_ESHUTDOWN once the session that made it was closed. Without stream,
 * it reads the body held in memory, from the start. One reader at a time.
 * QV_EINVAL for cap 0 (nothing read, nothing waited for). While it waits,
 * your thread may receive the body itself: on QV_THREADS it runs the
 * stream's transfer (and its on_progress, on_debug, on_upload), on QV_LOOP
 * it drives the loop (and so runs what its transfers call, request hooks
 * included), so hold no lock then that those take. */
int qv_response_read(qv_response *r, void *buf, size_t cap, size_t *n, long timeout_ms);
/* The message of the error qv_response_read returned last (NULL if none). */
const char *qv_response_read_error(const qv_response *r);
/* Body bytes received: the length of the body in memory, or what was
 * written to output_path / output_fd or handed to on_data. */
long long qv_response_body_bytes(const qv_response *r);
/* The body as a C string (same bytes, no charset conversion). */
const char *qv_response_text(const qv_response *r);
/* Parsed JSON, owned by the response (parsed once). NULL on error, with
 * *err = QV_EJSON (err may be NULL); qv_response_json_error() says why. */
struct json_t *qv_response_json(qv_response *r, int *err);
const char *qv_response_json_error(qv_response *r);
/* The first value of a header, case-insensitive; NULL if absent. */
const char *qv_response_header(const qv_response *r, const char *name);
/* The nth value (0-based) of a repeated header; NULL past the last. */
const char *qv_response_header_nth(const qv_response *r, const char *name, size_t n);
/* All headers in arrival order. */
size_t qv_response_header_count(const qv_response *r);
int qv_response_header_at(const qv_response *r, size_t i, const char **name, const char **value);
/* All headers in one call, for language bindings (where each call into C
 * costs more than the copy): "name\0value\0" for each header, in arrival
 * order, copied into buf if they fit in buflen bytes. Returns the number of
 * bytes they take (ask with buf NULL, buflen 0; nothing is copied when that
 * is more than buflen). */
size_t qv_response_headers_copy(const qv_response *r, char *buf, size_t buflen);
/* The final URL, after redirects, without userinfo ("user:password@"), like
 * the URLs of the history's entries. */
const char *qv_response_url(const qv_response *r);
/* Redirect responses that led here, oldest first (status, reason, headers
 * and URL; their bodies are not kept). */
size_t qv_response_history_len(const qv_response *r);
const qv_response *qv_response_history(const qv_response *r, size_t i);
/* Where the time went, in milliseconds: waiting for a worker (submit to
 * start), then from the transfer's start: DNS done, connected, TLS done,
 * first response byte, and the whole transfer; and the hooks after it.
 * Phases that did not happen (a reused connection, plain HTTP) are 0. */
typedef struct qv_timing {
    double queued_ms;
    double dns_ms;
    double connect_ms;
    double tls_ms;
    double first_byte_ms;
    double total_ms;
    double hooks_ms;
} qv_timing;
int qv_response_timing(const qv_response *r, qv_timing *out);
/* The HTTP version of the final response: 10, 11, 20 or 30. */
int qv_response_http_version(const qv_response *r);
/* Attempts it took to get this response (1 without retries). */
int qv_response_attempts(const qv_response *r);
/* Total transfer time in milliseconds. */
double qv_response_elapsed_ms(const qv_response *r);
/* The value of cookie `name` as this response's Set-Cookie headers set it
 * (the last one of that name wins); NULL if they set none, or one that
 * deletes it (Max-Age 0 or less, or an expiry in the past). The final
 * response's own headers only, like requests' r.cookies: cookies set by
 * the redirects that led to it are in the session's jar, and each hop of
 * qv_response_history answers for its own. Owned by the response. */
const char *qv_response_cookie(const qv_response *r, const char *name);
/* QV_EHTTP for 4xx/5xx, else QV_OK. */
int qv_response_raise_for_status(const qv_response *r);

/* What a language binding reads of a response, in one call (where each call
 * into C costs a binding more than these copies). Strings and body are the
 * response's own, valid while it lives. The caller sets .size to
 * sizeof(qv_response_info): fields are only ever added at the end, and an
 * older caller's shorter struct gets the fields it has. */
typedef struct qv_response_info {
    size_t size;
    int status;
    int http_version;   /* as qv_response_http_version */
    int attempts;       /* as qv_response_attempts */
    const char *reason; /* as qv_response_reason ("" for none) */
    const char *url;    /* as qv_response_url */
    const char *body;   /* as qv_response_body, body_len bytes */
    size_t body_len;
    const char *content_type; /* the first Content-Type value, or NULL */
    size_t headers_len;       /* what qv_response_headers_copy needs */
    size_t history_len;       /* as qv_response_history_len */
    size_t set_cookies;       /* how many Set-Cookie headers it has */
    double elapsed_ms;        /* as qv_response_elapsed_ms */
    qv_timing timing;         /* as qv_response_timing */
    size_t content_types;     /* how many Content-Type headers it has */
} qv_response_info;
/* Fills *out and copies the headers as qv_response_headers_copy(r, headers,
 * headers_cap) does (nothing when headers_len > headers_cap; headers may be
 * NULL). QV_EINVAL if r or out is NULL or out->size is 0. */
int qv_response_info_get(const qv_response *r, qv_response_info *out, char *headers,
                         size_t headers_cap);

/* For hooks: attach a result (freed with free_fn, which may be NULL, when
 * the response goes or the result is replaced). Not with QV_PROCESSES: a
 * pointer cannot leave the worker process the hook runs in, so there it
 * returns QV_EINVAL (the result stays the caller's to free) and the future
 * fails with QV_EHOOK, its message pointing at qv_response_set_result_bytes. */
int qv_response_set_result(qv_response *r, void *result, void (*free_fn)(void *));
void *qv_response_result(const qv_response *r);
/* For hooks: attach bytes as the result (copied). The form that works on
 * every executor: with QV_PROCESSES the hook runs in a worker process, and
 * only these bytes (not a pointer) come back to the caller. */
int qv_response_set_result_bytes(qv_response *r, const void *bytes, size_t len);
/* The bytes attached by a hook (NULL and 0 if none). */
const void *qv_response_result_bytes(const qv_response *r, size_t *len);
/* For hooks: the message of a failing hook (copied). */
int qv_response_set_hook_error(qv_response *r, const char *message);

#ifdef __cplusplus
}
#endif

#endif /* QUIVER_H */
