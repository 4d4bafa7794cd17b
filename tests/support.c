#include "support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TX_RING    64
#define TX_URL_MAX 4096

const char *tx_base(void)
{
    const char *base = getenv("QV_HTTPBIN_URL");
    if (!base || !*base)
        cr_assert_fail("QV_HTTPBIN_URL is not set: these tests need a running httpbin "
                       "(e.g. QV_HTTPBIN_URL=http://127.0.0.1:18080); run them through "
                       "scripts/ or export it");
    return base;
}

static char *ring_slot(void)
{
    static _Thread_local char ring[TX_RING][TX_URL_MAX];
    static _Thread_local unsigned next;
    return ring[next++ % TX_RING];
}

/* base (trailing slashes dropped) + path, in a ring slot. */
static const char *join_url(const char *base, const char *path)
{
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/') blen--;
    char *buf = ring_slot();
    int n = snprintf(buf, TX_URL_MAX, "%.*s%s", (int)blen, base, path);
    cr_assert(n > 0 && n < TX_URL_MAX, "URL too long for the test buffer: %s", path);
    return buf;
}

const char *tu(const char *path)
{
    return join_url(tx_base(), path);
}

const char *tuf(const char *fmt, ...)
{
    char path[TX_URL_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    cr_assert(n > 0 && n < TX_URL_MAX, "path too long for the test buffer");
    return tu(path);
}

const char *tu_host(const char *host, const char *path)
{
    const char *base = tx_base();
    const char *start = strstr(base, "://");
    cr_assert_not_null(start, "QV_HTTPBIN_URL \"%s\" has no scheme", base);
    start += 3;
    const char *end = start + strcspn(start, ":/");
    char *buf = ring_slot();
    int n = snprintf(buf, TX_URL_MAX, "%.*s%s%s", (int)(start - base), base, host, end);
    cr_assert(n > 0 && n < TX_URL_MAX, "URL too long for the test buffer");
    return join_url(buf, path);
}

const char *tx_env_at(const char *name, const char *what, const char *file, int line)
{
    const char *v = getenv(name);
    if (!v || !*v)
        cr_assert_fail("%s:%d: %s is not set: this test needs %s; run it through scripts/test "
                       "(which starts the test servers) or start one with scripts/lib/servers.sh "
                       "and export %s",
                       file, line, name, what, name);
    return v;
}

const char *tx_tls_url(const char *path)
{
    return join_url(tx_env("QV_TLS_URL", "the HTTPS test server (tests/servers/tls_server.py)"),
                    path);
}

const char *tx_tls_ca(void)
{
    return tx_env("QV_TLS_CA", "the CA file of the HTTPS test server");
}

const char *tx_proxy_url(void)
{
    return tx_env("QV_PROXY_URL", "the test proxy (tests/servers/proxy.py)");
}

const char *tx_faults_url(const char *path)
{
    return join_url(tx_env("QV_FAULTS_URL", "the fault-injection server (tests/servers/faults.py)"),
                    path);
}

/* Files without TX_KIND_ONLY run for every kind: NULL. */
__attribute__((weak)) const char *tx_only_kind;

/* 1 if name is one of list's (names parted by ", "). */
static int listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p; p = strchr(p, ',')) {
        p += strspn(p, ", ");
        if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0')) return 1;
    }
    return 0;
}

qv_executor_kind tx_kind(void)
{
    const char *k = getenv("QV_TEST_EXECUTOR");
    char first[16];
    if (tx_only_kind) {
        if (k && *k && !listed(tx_only_kind, k))
            cr_assert_fail("these tests are for the %s executor only (TX_KIND_ONLY), not "
                           "QV_TEST_EXECUTOR=\"%s\"",
                           tx_only_kind, k);
        if (!k || !*k) { /* the first named */
            snprintf(first, sizeof first, "%.*s", (int)strcspn(tx_only_kind, ", "), tx_only_kind);
            k = first;
        }
    }
    if (!k || !*k || strcmp(k, "threads") == 0) return QV_THREADS;
    if (strcmp(k, "loop") == 0) return QV_LOOP;
    if (strcmp(k, "processes") == 0) return QV_PROCESSES;
    cr_assert_fail("QV_TEST_EXECUTOR=\"%s\" is not one of threads, loop, processes", k);
    return QV_THREADS;
}

const char *tx_kind_name(void)
{
    switch (tx_kind()) {
    case QV_THREADS:
        return "threads";
    case QV_LOOP:
        return "loop";
    case QV_PROCESSES:
        return "processes";
    }
    return "?";
}

qv_session *tx_session(const qv_session_opts *opts)
{
    qv_session_opts o;
    if (opts)
        o = *opts;
    else
        memset(&o, 0, sizeof o);
    o.size = sizeof o;
    if (!o.executor) o.executor_kind = tx_kind();
    qv_session *s = NULL;
    int rc = qv_session_new(&s, &o);
    cr_assert_eq(rc, QV_OK, "qv_session_new (executor %s) failed: %s (%s)", tx_kind_name(),
                 qv_errname(rc), qv_strerror(rc));
    cr_assert_not_null(s, "qv_session_new returned QV_OK but no session");
    return s;
}

qv_executor *tx_executor(int max_workers)
{
    qv_executor *ex = NULL;
    int rc = qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                      .kind = tx_kind(),
                                                      .max_workers = max_workers});
    cr_assert_eq(rc, QV_OK, "qv_executor_new (%s) failed: %s", tx_kind_name(), qv_errname(rc));
    cr_assert_not_null(ex);
    return ex;
}

double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

qv_response *tx_expect_status_at(qv_future *f, int status, const char *file, int line)
{
    cr_assert_not_null(f, "%s:%d: no future", file, line);
    qv_response *r = NULL;
    int rc = qv_future_result(f, &r, TX_RESULT_TIMEOUT_MS);
    cr_assert_eq(
        rc, QV_OK, "%s:%d: qv_future_result gave %s (%s), expected a response with status %d", file,
        line, qv_errname(rc), qv_future_error(f) ? qv_future_error(f) : "no message", status);
    cr_assert_not_null(r, "%s:%d: qv_future_result gave QV_OK but no response", file, line);
    cr_assert_eq(qv_response_status(r), status, "%s:%d: status %d, expected %d (url %s)", file,
                 line, qv_response_status(r), status,
                 qv_response_url(r) ? qv_response_url(r) : "(null)");
    return r;
}

qv_response *tx_get_ok_at(qv_session *s, qv_future **out, const char *url, const char *file,
                          int line)
{
    qv_future *f = NULL;
    int rc = qv_get(s, &f, url);
    cr_assert_eq(rc, QV_OK, "%s:%d: qv_get(%s) at submit gave %s", file, line, url, qv_errname(rc));
    cr_assert_not_null(f, "%s:%d: qv_get gave QV_OK but no future", file, line);
    *out = f;
    return tx_expect_status_at(f, 200, file, line);
}

const char *tx_expect_error_at(qv_future *f, int code, const char *file, int line)
{
    cr_assert_not_null(f, "%s:%d: no future", file, line);
    qv_response *r = NULL;
    int rc = qv_future_result(f, &r, TX_RESULT_TIMEOUT_MS);
    cr_assert_neq(rc, QV_EWAIT_TIMEOUT, "%s:%d: no outcome within %d ms (expected %s)", file, line,
                  TX_RESULT_TIMEOUT_MS, qv_errname(code));
    cr_assert_eq(rc, code, "%s:%d: qv_future_result gave %s (%s, status %d), expected %s", file,
                 line, qv_errname(rc), qv_future_error(f) ? qv_future_error(f) : "no message",
                 rc == QV_OK && r ? qv_response_status(r) : -1, qv_errname(code));
    cr_assert_eq(qv_future_error_code(f), code, "%s:%d: qv_future_error_code is %s, expected %s",
                 file, line, qv_errname(qv_future_error_code(f)), qv_errname(code));
    const char *msg = qv_future_error(f);
    cr_assert_not_null(msg, "%s:%d: qv_future_error is NULL for a future that ended %s", file, line,
                       qv_errname(code));
    cr_assert(msg[0] != '\0', "%s:%d: qv_future_error is empty", file, line);
    return msg;
}

json_t *tx_json_at(qv_response *r, const char *file, int line)
{
    int err = QV_OK;
    json_t *j = qv_response_json(r, &err);
    cr_assert_not_null(j, "%s:%d: body is not JSON (%s: %s): %.200s", file, line, qv_errname(err),
                       qv_response_json_error(r) ? qv_response_json_error(r) : "?",
                       qv_response_text(r) ? qv_response_text(r) : "(null)");
    return j;
}

json_t *tx_jget(json_t *root, const char *path)
{
    char key[256];
    json_t *cur = root;
    const char *p = path;
    while (cur && *p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        cr_assert(n < sizeof key, "JSON path component too long");
        memcpy(key, p, n);
        key[n] = '\0';
        cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
        p = slash ? slash + 1 : p + n;
    }
    return cur;
}

const char *tx_jstr(json_t *root, const char *path)
{
    json_t *j = tx_jget(root, path);
    return json_is_string(j) ? json_string_value(j) : NULL;
}

void tx_expect_cookie_at(qv_session *s, const char *name, const char *value, const char *file,
                         int line)
{
    char buf[1024];
    int rc = qv_session_cookie(s, name, buf, sizeof buf);
    if (!value) {
        cr_assert_eq(rc, QV_EINVAL,
                     "qv_session_cookie(\"%s\") gave %s%s%s, expected QV_EINVAL "
                     "(no such cookie)",
                     name, qv_errname(rc), rc == QV_OK ? " with value " : "",
                     rc == QV_OK ? buf : "");
        return;
    }
    cr_assert_eq(rc, QV_OK, "%s:%d: qv_session_cookie(\"%s\") gave %s, expected value \"%s\"", file,
                 line, name, qv_errname(rc), value);
    cr_assert_str_eq(buf, value, "%s:%d: cookie %s is \"%s\", expected \"%s\"", file, line, name,
                     buf, value);
}

int tx_closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0, "socket() failed");
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0, "bind() failed");
    socklen_t len = sizeof sa;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0, "getsockname() failed");
    int port = ntohs(sa.sin_port);
    close(fd); /* never listened: connecting is refused */
    return port;
}

void tx_wait_started_at(qv_future *f, long timeout_ms, const char *file, int line)
{
    double deadline = now_ms() + (double)timeout_ms;
    for (;;) {
        qv_future_state st = qv_future_state_get(f);
        if (st != QV_PENDING) return;
        cr_assert(now_ms() < deadline, "%s:%d: future still PENDING after %ld ms", file, line,
                  timeout_ms);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
}
