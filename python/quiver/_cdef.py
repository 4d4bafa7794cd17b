"""The parts of include/quiver.h this package uses, for cffi: copied as they
are (callbacks it does not use as void *), and the binding's own qvpy_taken. Option structs are prefixes of
the header's (new fields only ever go at the end, and `size` tells the
library which version we passed), so a newer library with longer structs
still works.

ABI mode (_ffi.py) takes CDEF as it is; API mode (the compiled extension,
_capi_build.py) takes api_cdef(): the same with every struct open ("...;":
its layout is the header's, checked by the compiler) and without the
callback fields it never sets.
"""

from __future__ import annotations

import re

CDEF = """
const char *qv_version(void);
struct json_t;
typedef struct qv_session qv_session;
typedef struct qv_executor qv_executor;
typedef struct qv_future qv_future;
typedef struct qv_response qv_response;
typedef struct qv_cq qv_cq;

const char *qv_strerror(int code);
const char *qv_errname(int code);
const char *qv_last_error(void);

typedef struct qv_pair { const char *name; const char *value; } qv_pair;
typedef qv_pair qv_header;
typedef qv_pair qv_param;
typedef qv_pair qv_cookie;

typedef struct qv_part {
    const char *name; const char *value; size_t value_len; const char *file;
    const char *filename; const char *content_type;
} qv_part;

typedef int (*qv_hook_fn)(qv_session *s, qv_response *r, void *arg);
typedef struct qv_hook { qv_hook_fn fn; void *arg; } qv_hook;

typedef struct qv_retry {
    int max_retries; unsigned on; const int *statuses; long backoff_ms;
    long max_backoff_ms; int all_methods; int no_retry_after;
} qv_retry;

typedef struct qv_host_limits { int max_concurrent; double rate; int burst; } qv_host_limits;

typedef void (*qv_saturation_fn)(qv_executor *ex, int what, void *arg);

typedef struct qv_executor_opts {
    size_t size; int kind; int max_workers; int max_connections;
    int max_host_connections; int max_total_connections; long hook_timeout_ms;
    size_t max_queued; int no_block; qv_host_limits per_host;
    qv_saturation_fn on_saturated; void *saturated_arg; long max_requests_per_worker;
} qv_executor_opts;

typedef struct qv_session_opts {
    size_t size; qv_executor *executor; int executor_kind; int max_workers;
    const qv_header *headers; const qv_param *params; const qv_cookie *cookies;
    const qv_hook *hooks; int auth; const char *username; const char *password;
    long timeout_ms; long connect_timeout_ms; long read_timeout_ms; int max_redirects;
    int no_redirects; size_t max_response_bytes; int insecure; const char *ca_file;
    const char *proxy; const char *user_agent; const qv_retry *retry;
    void *on_request; void *on_request_arg;
    const char *client_cert; const char *client_key; const char *key_password;
    const char *ca_path; const char *pinned_public_key; int tls_min_version;
    const qv_pair *proxies; const char *no_proxy; const char *proxy_username;
    const char *proxy_password; const char *proxy_ca_file; int trust_env;
    const char *unix_socket; const qv_pair *resolve; const qv_pair *connect_to;
    const char *interface; int ip_version;
} qv_session_opts;

typedef struct qv_request_opts {
    size_t size; const char *method; const char *url; const qv_header *headers;
    const qv_param *params; const void *body; size_t body_len; const qv_param *form;
    const qv_part *multipart; const struct json_t *json; int auth; const char *username;
    const char *password; long timeout_ms; long connect_timeout_ms; long read_timeout_ms;
    int max_redirects; int no_redirects; size_t max_response_bytes; int insecure;
    qv_hook_fn hook; void *hook_arg; void *user_data; const qv_retry *retry;
    void *on_request; void *on_request_arg;
    const char *client_cert; const char *client_key; const char *key_password;
    const char *unix_socket;
    const char *client_cert_pem; const char *client_key_pem;
    void *on_debug; void *on_debug_arg; int debug_body;
    const char *output_path; int keep_partial; int resume; int output_fd;
    void *on_data; void *on_data_arg; void *on_progress; void *on_progress_arg;
    const char *range; const char *upload_path; void *on_upload; void *on_upload_arg;
    long long upload_len; int stream;
} qv_request_opts;

int qv_executor_new(qv_executor **out, const qv_executor_opts *opts);
void qv_executor_free(qv_executor *ex);
typedef struct qv_executor_stats {
    size_t queued; size_t in_flight; size_t completed; size_t failed; size_t cancelled;
    size_t connections_opened; int workers;
} qv_executor_stats;
int qv_executor_stats_get(qv_executor *ex, qv_executor_stats *out);
int qv_executor_set_host_limits(qv_executor *ex, const char *host, const qv_host_limits *limits);

int qv_session_new(qv_session **out, const qv_session_opts *opts);
void qv_session_close(qv_session *s, int cancel_pending);
void qv_session_free(qv_session *s);
int qv_session_cookie(qv_session *s, const char *name, char *buf, size_t buflen);
int qv_session_set_cookie(qv_session *s, const char *name, const char *value, const char *domain);
int qv_request(qv_session *s, qv_future **out, const qv_request_opts *opts);

int qv_future_result(qv_future *f, qv_response **out, long timeout_ms);
int qv_future_done(qv_future *f);
int qv_future_state_get(qv_future *f);
qv_future *qv_future_ref(qv_future *f);
int qv_future_cancel(qv_future *f);
int qv_future_error_code(qv_future *f);
const char *qv_future_error(qv_future *f);
int qv_future_attempts(qv_future *f);
int qv_future_error_status(qv_future *f);
typedef void (*qv_done_fn)(qv_future *f, void *arg);
int qv_future_add_done_callback(qv_future *f, qv_done_fn fn, void *arg);
void *qv_future_user_data(qv_future *f);
void qv_future_set_user_data(qv_future *f, void *user_data);
void qv_future_release(qv_future *f);

int qv_cq_new(qv_cq **out);
int qv_cq_add(qv_cq *cq, qv_future *f);
int qv_cq_fd(qv_cq *cq);
int qv_cq_pop(qv_cq *cq, qv_future **out);
void qv_cq_free(qv_cq *cq);

int qv_response_status(const qv_response *r);
const char *qv_response_reason(const qv_response *r);
const char *qv_response_body(const qv_response *r, size_t *len);
const char *qv_response_header(const qv_response *r, const char *name);
const char *qv_response_header_nth(const qv_response *r, const char *name, size_t n);
size_t qv_response_header_count(const qv_response *r);
int qv_response_header_at(const qv_response *r, size_t i, const char **name, const char **value);
size_t qv_response_headers_copy(const qv_response *r, char *buf, size_t buflen);
const char *qv_response_url(const qv_response *r);
size_t qv_response_history_len(const qv_response *r);
const qv_response *qv_response_history(const qv_response *r, size_t i);
typedef struct qv_timing {
    double queued_ms; double dns_ms; double connect_ms; double tls_ms;
    double first_byte_ms; double total_ms; double hooks_ms;
} qv_timing;
int qv_response_timing(const qv_response *r, qv_timing *out);
typedef struct qv_response_info {
    size_t size; int status; int http_version; int attempts; const char *reason;
    const char *url; const char *body; size_t body_len; const char *content_type;
    size_t headers_len; size_t history_len; size_t set_cookies; double elapsed_ms;
    qv_timing timing; size_t content_types;
} qv_response_info;
int qv_response_info_get(const qv_response *r, qv_response_info *out, char *headers,
                         size_t headers_cap);
int qv_response_http_version(const qv_response *r);
int qv_response_attempts(const qv_response *r);
double qv_response_elapsed_ms(const qv_response *r);
int qv_response_read(qv_response *r, void *buf, size_t cap, size_t *n, long timeout_ms);
const char *qv_response_read_error(const qv_response *r);
"""

# Not quiver's: what a response's outcome becomes for Python in one call
# (_capi_build.py's qvpy_take and qvpy_fill; _ffi.py's for ABI mode). Its
# first ten fields, 8 bytes each, are read with one struct unpack
# (TAKEN_FORMAT); the headers are copied to buf (cap bytes), and a small body
# after them (at body_at, else -1); each *_gen moves when the reason, URL or
# Content-Type differs from the last response's taken into this struct
# (last: copies of those, 1024 bytes each), so Python reuses the str it made;
# strings_gen, their sum, moves when any of them does.
# http_version, attempts and timing follow, packed: quiver.Session keeps a
# copy of those bytes in each response.
CDEF += """
typedef struct qvpy_taken {
    long long status; long long headers_len; long long body_len; long long body_at;
    long long history_len; long long strings_gen; long long reason_gen; long long url_gen;
    long long type_gen;
    double elapsed_ms; int http_version; int attempts; qv_timing timing;
    qv_response *resp; char *buf; size_t cap; qv_response_info info;
    int last_state[3]; char last[3][1024];
} qvpy_taken;
"""
TAKEN_FORMAT = "9qd"


def api_cdef() -> str:
    """CDEF for API mode: structs laid out by the header, callbacks left out."""
    text = re.sub(r"\b(void \*on_[a-z]+|qv_saturation_fn on_saturated);", "", CDEF)
    return re.sub(r"(typedef struct \w+ \{[^}]*?)\s*\}", r"\1 ...; }", text)
