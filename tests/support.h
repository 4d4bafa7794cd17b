/*
 * Shared helpers for the quiver test suite.
 *
 * Every test talks to a real httpbin whose base URL is in the environment
 * variable QV_HTTPBIN_URL (the test scripts start one and export it). The
 * executor kind comes from QV_TEST_EXECUTOR (threads|loop|processes, default
 * threads), so the same tests run for every executor: create sessions with
 * tx_session()/TX_SESSION(), never with qv_session_new() directly.
 */
#ifndef QV_TEST_SUPPORT_H
#define QV_TEST_SUPPORT_H

#include <stddef.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include <quiver.h>

/*
 * Criterion timeouts: every test sets .timeout, and all tests of one file use
 * the same value as its TestSuite (Criterion 2.4 leaks a timeout record, which
 * LeakSanitizer reports, when tests of one run have different timeouts).
 */

/* Generous bound for a result that should arrive (ms). */
#define TX_RESULT_TIMEOUT_MS 30000

/* The httpbin base URL (no trailing slash); fails the test clearly if unset. */
const char *tx_base(void);

/* base + path, e.g. tu("/get"). The string lives in a per-thread ring of
 * buffers: valid for the next 63 calls on the same thread. */
const char *tu(const char *path);
/* Same, with printf formatting: tuf("/delay/%d", 2). */
const char *tuf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The URL (or path) a test script exported in the environment variable
 * `name`; fails the test clearly if unset, saying which server (`what`) the
 * test needs. scripts/test starts them all (scripts/lib/servers.sh). */
const char *tx_env_at(const char *name, const char *what, const char *file, int line);
#define tx_env(name, what) tx_env_at((name), (what), __FILE__, __LINE__)

/* QV_TLS_URL (an HTTPS server, tests/servers/tls_server.py) + path, e.g.
 * tx_tls_url("/hello"); same buffer ring as tu(). */
const char *tx_tls_url(const char *path);
/* QV_TLS_CA: the CA file that verifies the TLS server's certificate. */
const char *tx_tls_ca(void);
/* QV_PROXY_URL: a forward proxy (tests/servers/proxy.py) that adds
 * "Via: quiver-test-proxy" to what it relays. */
const char *tx_proxy_url(void);

/* QV_FAULTS_URL (the fault-injection server, tests/servers/faults.py) +
 * path, e.g. tx_faults_url("/reset"); same buffer ring as tu(). */
const char *tx_faults_url(const char *path);

/* The httpbin URL with its host replaced, e.g. tu_host("localhost", "/get"):
 * the same server, but another host as far as redirects and cookies go. */
const char *tu_host(const char *host, const char *path);

/* The executor kind under test (QV_TEST_EXECUTOR) and its name. */
qv_executor_kind tx_kind(void);
const char *tx_kind_name(void);

/* A test file about one executor kind only says so at file scope, at the
 * start of a line: TX_KIND_ONLY(processes) (or threads, loop), or about a
 * few: TX_KIND_ONLY(threads, loop). tests/CMakeLists.txt reads it and
 * registers the file for those kinds alone, instead of once per kind, so its
 * tests neither skip nor repeat under the other kinds. In such a file
 * tx_kind() is QV_TEST_EXECUTOR's kind, or the first named if it is unset
 * (it fails the test if QV_TEST_EXECUTOR names another). */
extern const char *tx_only_kind;
#define TX_KIND_ONLY(...) const char *tx_only_kind = #__VA_ARGS__

/* A test about some executor kinds only says so at file scope, at the start
 * of a line, with the name of a Test of the file and the kinds it is about
 * separated by spaces: TX_TEST_KINDS(hooks, hook_attaches_a_pointer, threads
 * loop);. tests/CMakeLists.txt leaves it out of the other
 * kinds' registrations of its file (Criterion's --filter), so it neither
 * skips nor passes there without testing anything. (This declaration is
 * all it is in C.) */
#define TX_TEST_KINDS(suite, name, kinds) extern const char tx_test_kinds_##suite##_##name[]

/* A file whose tests each take minutes says TX_TESTS_APART; at file scope,
 * at the start of a line: tests/CMakeLists.txt registers each of its Tests
 * on its own (<file>_<kind>_<name>, Criterion's --filter), each with its own
 * time limit, instead of one registration of the file per kind. */
#define TX_TESTS_APART extern const char tx_tests_apart[]

/* A session using the executor under test. opts may be NULL; a copy of it is
 * made with .size and (unless .executor is set) .executor_kind filled in.
 * Asserts that creation succeeds. */
qv_session *tx_session(const qv_session_opts *opts);
#define TX_SESSION(...) tx_session(&(qv_session_opts){.size = sizeof(qv_session_opts), __VA_ARGS__})

/* An executor of the kind under test (asserts success). */
qv_executor *tx_executor(int max_workers);

/* Helpers that assert take the caller's file and line (through the macros
 * of the same name) and put them in their failure messages. */

/* Monotonic clock in milliseconds. */
double now_ms(void);

/* Waits for f's result (TX_RESULT_TIMEOUT_MS) and asserts QV_OK and the
 * given status; returns the response (owned by f). */
qv_response *tx_expect_status_at(qv_future *f, int status, const char *file, int line);
#define tx_expect_status(f, status) tx_expect_status_at((f), (status), __FILE__, __LINE__)

/* GET url, assert QV_OK at submit and result and status 200. *out gets the
 * future (release it); the response belongs to it. */
qv_response *tx_get_ok_at(qv_session *s, qv_future **out, const char *url, const char *file,
                          int line);
#define tx_get_ok(s, out, url) tx_get_ok_at((s), (out), (url), __FILE__, __LINE__)

/* Waits for f's outcome and asserts it is the given error code (not
 * QV_EWAIT_TIMEOUT); asserts qv_future_error() is non-NULL; returns it. */
const char *tx_expect_error_at(qv_future *f, int code, const char *file, int line);
#define tx_expect_error(f, code) tx_expect_error_at((f), (code), __FILE__, __LINE__)

/* The parsed JSON body (asserts it parses; owned by the response). */
json_t *tx_json_at(qv_response *r, const char *file, int line);
#define tx_json(r) tx_json_at((r), __FILE__, __LINE__)
/* A member by '/'-separated path ("headers/X-Test", "args/q"); NULL if absent. */
json_t *tx_jget(json_t *root, const char *path);
/* A string member by path; NULL if absent or not a string. */
const char *tx_jstr(json_t *root, const char *path);

/* Asserts the session's jar holds cookie `name` with `value` (via
 * qv_session_cookie), or, with value NULL, that it holds no such cookie. */
void tx_expect_cookie_at(qv_session *s, const char *name, const char *value, const char *file,
                         int line);
#define tx_expect_cookie(s, name, value)                                                           \
    tx_expect_cookie_at((s), (name), (value), __FILE__, __LINE__)

/* A loopback TCP port that nothing listens on (bound, then closed). */
int tx_closed_port(void);

/* Polls (1 ms steps) until f is RUNNING or done, up to timeout_ms; asserts. */
void tx_wait_started_at(qv_future *f, long timeout_ms, const char *file, int line);
#define tx_wait_started(f, ms) tx_wait_started_at((f), (ms), __FILE__, __LINE__)

/* Asserts two C strings are equal, failing cleanly (no crash) on NULL. */
#define tx_assert_str_eq(actual, expected, ...)                                                    \
    do {                                                                                           \
        const char *tx_a_ = (actual);                                                              \
        const char *tx_e_ = (expected);                                                            \
        cr_assert_not_null(tx_a_, "%s is NULL, expected \"%s\"", #actual, tx_e_);                  \
        cr_assert_str_eq(tx_a_, tx_e_, "%s is \"%s\", expected \"%s\"", #actual, tx_a_, tx_e_);    \
    } while (0)

/* Asserts haystack (non-NULL) contains needle. */
#define tx_assert_contains(haystack, needle)                                                       \
    do {                                                                                           \
        const char *tx_h_ = (haystack);                                                            \
        const char *tx_n_ = (needle);                                                              \
        cr_assert_not_null(tx_h_, "%s is NULL, expected it to contain \"%s\"", #haystack, tx_n_);  \
        cr_assert_not_null(strstr(tx_h_, tx_n_), "%s = \"%s\" does not contain \"%s\"", #haystack, \
                           tx_h_, tx_n_);                                                          \
    } while (0)

#endif /* QV_TEST_SUPPORT_H */
