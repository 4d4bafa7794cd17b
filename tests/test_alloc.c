/* Allocation-failure injection. A representative scenario (a session on the
 * executor under test; a GET with params and a done callback; a POST with a
 * JSON body and a header; a GET that is redirected once; the JSON of the
 * responses; release; session free)
 * is first run once to count the allocations it makes through the allocator
 * (quiver's, libcurl's and jansson's: qv_set_allocator), M. Then, for every
 * N in 1..M, a fresh child process runs it with an allocator that returns
 * NULL on exactly the Nth call, and checks that
 *
 *  - every call returned QV_OK or a clean error: QV_ENOMEM at submit, or a
 *    future that failed with an error code and a message (never hung: each
 *    child has a time limit, and never crashed: the parent checks how it
 *    ended);
 *  - a response that did arrive is the right one (status 200, the params,
 *    header and JSON body sent are echoed back): a failure must not be
 *    swallowed into a silently different request;
 *  - each done callback ran exactly once;
 *  - the library is still usable: with the allocator no longer failing, a
 *    new session's GET answers 200.
 *
 * The child ends with exit(), so under the ASan pass LeakSanitizer checks it
 * for leaks and makes it exit non-zero on one. Over all N, QV_ENOMEM must
 * have been seen at least once.
 *
 * Each registration (threads, loop, processes) injects into its own executor
 * kind. With several threads at work, which call is the Nth varies a little
 * from run to run; so does M (a child where the scenario made fewer than N
 * allocations had nothing injected, and is counted apart). With the process
 * executor only the test process's allocations are counted and failed: the
 * zygote and workers it forks inherit the allocator but never fail.
 *
 * The Ns are dealt to ALLOC_PARTS tests, N mod ALLOC_PARTS, each registered
 * on its own (TX_TESTS_APART) with its own time limit: all in one, a kind
 * took 274-282 s against Criterion's 280 s under ASan at load 18-30 (49 s
 * on a quiet machine), as every child is a process exec'd and run to the
 * end. Each part counts M for itself first, and goes past it while its
 * children still find their Nth allocation.
 *
 * To look into a failure: QV_ALLOC_ONLY=N runs just allocation N (in its part),
 * QV_ALLOC_TRACE=1 prints the stack of the failed allocation, and
 * QV_ALLOC_VERBOSE=1 every error the scenario met. */
#include "support.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(alloc, .timeout = 280); /* under CTest's 300 s per registration */
TX_TESTS_APART;

/* The parts the Ns are dealt to (see above). */
#define ALLOC_PARTS 4

/* A child that takes longer has hung (a run takes ~10-50 ms). */
#define CHILD_LIMIT_S 30
/* Bound on the result of a request that should arrive. */
#define RESULT_MS 20000
/* Failures listed in the report (all are counted). */
#define MAX_LISTED 20

/* What a child tells the parent, in a memfd both map. */
typedef struct outcome {
    atomic_long calls;      /* allocations the scenario made (before the recovery) */
    atomic_int injected;    /* the Nth allocation happened and was failed */
    int curl_query;         /* it was libcurl's copy of the URL's query (see below) */
    int curl_dropped_query; /* and libcurl sent the GET without its query */
    unsigned codes;         /* bit c: some call reported error code c */
    int own;                /* the failed allocation was the test's own (json_pack) */
    int stage;              /* how far the child got (for the report of a crash) */
    char why[512];          /* the first failed check */
} outcome;

static outcome *out;
static atomic_long fail_at; /* the call to fail (1-based); 0 = none */
static atomic_int counting; /* 1 while the scenario runs (not the recovery) */
static pid_t counted_pid;   /* only this process's allocations count */

/* Under LeakSanitizer, the zygote and workers of a process executor (which
 * end with _exit, or are killed) are not checked; the child that ran the
 * scenario is. Sanitizer hook; unused in other builds. */
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void)
{
    return counted_pid && getpid() != counted_pid;
}

/* Set around qv_response_json on this thread: jansson 2.14's parser is not
 * safe when an allocation fails (lex_save ignores a failed strbuffer append,
 * then scan_string copies past the end of its buffer looking for the closing
 * quote: a heap overflow). A bug of jansson's, not quiver's, so its parser
 * is left out of the injection; its allocations are not counted either. */
static _Thread_local int no_inject;

/*
 * libcurl 7.88 ignores a failure to copy the URL's query when it sets up a
 * transfer (url.c: "(void)curl_url_get(uh, CURLUPART_QUERY, ...)"; fixed in
 * later releases), and sends the request without its query string: a GET
 * that "succeeds" without its params. That one case is told apart by where
 * the failed allocation came from: curl_url_get called inside a transfer
 * (curl_multi_perform), not from quiver's own URL building at submit.
 */
static int in_transfer_query_copy(void *const *frames, int n)
{
    int url_get = -1;
    for (int i = 0; i < n; i++) {
        Dl_info info;
        if (!dladdr(frames[i], &info) || !info.dli_sname) continue;
        if (url_get < 0 && strcmp(info.dli_sname, "curl_url_get") == 0) url_get = i;
        if (url_get >= 0 && strcmp(info.dli_sname, "curl_multi_perform") == 0) return 1;
    }
    return 0;
}

static void note_failure(long n)
{
    void *frames[48];
    int nframes = backtrace(frames, 48);
    out->curl_query = in_transfer_query_copy(frames, nframes);
    if (getenv("QV_ALLOC_TRACE")) {
        /* Where the failed allocation came from (resolve the addresses with
         * addr2line -e test_alloc, or in the library named). */
        fprintf(stderr, "alloc child: allocation %ld fails here:\n", n);
        backtrace_symbols_fd(frames, nframes, 2);
    }
}

static int fail_now(void)
{
    /* getpid, not a flag set at fork: the zygote is forked inside the
     * library, where this file cannot reach. */
    if (no_inject || !atomic_load(&counting) || getpid() != counted_pid) return 0;
    long n = atomic_fetch_add(&out->calls, 1) + 1;
    long at = atomic_load(&fail_at);
    if (at && n == at) {
        atomic_store(&out->injected, 1);
        note_failure(n);
        return 1;
    }
    return 0;
}

static void *fail_malloc(size_t n)
{
    return fail_now() ? NULL : malloc(n);
}

static void *fail_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : calloc(n, size);
}

static void *fail_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : realloc(p, n);
}

static void fail_free(void *p)
{
    free(p);
}

static const qv_allocator failing = {fail_malloc, fail_calloc, fail_realloc, fail_free};

/* The child's URLs (from QV_HTTPBIN_URL, which it inherits). */
static char get_url[256], post_url[256], redirect_url[256], recover_url[256];

/* A failed check in the child: recorded for the parent, which reports it.
 * _exit: the scenario was left half-way, a leak report would only add noise. */
static void child_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void child_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->why, sizeof(out->why), fmt, ap);
    va_end(ap);
    fprintf(stderr, "alloc child (fail_at %ld): %s\n", atomic_load(&fail_at), out->why);
    _exit(2);
}

/* QV_ALLOC_VERBOSE=1 prints every error a child sees (to see which kinds
 * an allocation failure turns into, and where). */
static void seen(const char *what, int code, const char *msg)
{
    out->codes |= 1u << code;
    if (getenv("QV_ALLOC_VERBOSE"))
        fprintf(stderr, "alloc child (fail_at %ld): %s: %s: %s\n", atomic_load(&fail_at), what,
                qv_errname(code), msg ? msg : "");
}

/* A submit's result: QV_OK, or QV_ENOMEM (no future then). */
static int check_submit(const char *what, int rc, qv_future *f)
{
    if (rc == QV_OK) {
        if (!f) child_fail("%s: QV_OK but no future", what);
        return 1;
    }
    if (rc != QV_ENOMEM)
        child_fail("%s: %s at submit, expected QV_OK or QV_ENOMEM", what, qv_errname(rc));
    seen(what, rc, "at submit");
    return 0;
}

/* A future's outcome: a response (returned), or a clean failure (NULL). */
static qv_response *check_result(const char *what, qv_future *f)
{
    qv_response *r = NULL;
    int rc = qv_future_result(f, &r, RESULT_MS);
    if (rc == QV_EWAIT_TIMEOUT) child_fail("%s: no outcome after %d ms", what, RESULT_MS);
    qv_future_state st = qv_future_state_get(f);
    if (rc == QV_OK) {
        if (st != QV_FINISHED || !r)
            child_fail("%s: QV_OK but state %d, response %p", what, (int)st, (void *)r);
        if (qv_response_status(r) != 200)
            child_fail("%s: status %d, expected 200", what, qv_response_status(r));
        return r;
    }
    if (rc <= QV_OK || rc >= QV_ERROR_COUNT_)
        child_fail("%s: result %d is not an error code", what, rc);
    if (st != QV_FAILED) child_fail("%s: %s but state %d", what, qv_errname(rc), (int)st);
    if (qv_future_error_code(f) != rc)
        child_fail("%s: result %s but error code %s", what, qv_errname(rc),
                   qv_errname(qv_future_error_code(f)));
    if (!qv_future_error(f)) child_fail("%s: failed (%s) with no message", what, qv_errname(rc));
    if (r) child_fail("%s: failed (%s) but gave a response", what, qv_errname(rc));
    seen(what, rc, qv_future_error(f));
    return NULL;
}

/* The response's JSON. No allocation fails while it is parsed (see
 * no_inject), so a 200 from httpbin that does not parse was corrupted. */
static json_t *check_json(const char *what, qv_response *r)
{
    int err = -1;
    no_inject = 1;
    json_t *j = qv_response_json(r, &err);
    no_inject = 0;
    if (!j || err != QV_OK)
        child_fail("%s: the body does not parse (%s): %s", what, qv_errname(err),
                   qv_response_json_error(r) ? qv_response_json_error(r) : "");
    return j;
}

static const char *jstr(json_t *root, const char *a, const char *b)
{
    json_t *v = json_object_get(root, a);
    if (b) v = json_object_get(v, b);
    return json_string_value(v);
}

static void on_done(qv_future *f, void *arg)
{
    (void)f;
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void scenario(qv_executor_kind kind)
{
    out->stage = 1;
    qv_session *s = NULL;
    int rc = qv_session_new(
        &s, &(qv_session_opts){.size = sizeof(qv_session_opts),
                               .executor_kind = kind,
                               .max_workers = 2,
                               .headers = (const qv_header[]){{"X-Session", "s"}, {0}}});
    if (rc != QV_OK) {
        if (rc != QV_ENOMEM) child_fail("qv_session_new: %s", qv_errname(rc));
        if (s) child_fail("qv_session_new: QV_ENOMEM but a session");
        seen("qv_session_new", rc, NULL);
        return;
    }

    out->stage = 2;
    atomic_int get_calls = 0;
    int get_cb = 0;
    qv_future *g = NULL, *p = NULL;
    rc = qv_get(s, &g, get_url, .params = (const qv_param[]){{"q", "1"}, {0}});
    if (!check_submit("GET", rc, g)) {
        g = NULL;
    } else {
        rc = qv_future_add_done_callback(g, on_done, &get_calls);
        if (rc == QV_OK)
            get_cb = 1;
        else if (rc == QV_ENOMEM)
            seen("add_done_callback", rc, NULL);
        else
            child_fail("add_done_callback: %s", qv_errname(rc));
    }

    out->stage = 3;
    /* The JSON body is built with jansson, which allocates through the
     * allocator too: building it may fail like any other step. */
    json_t *body = json_pack("{s:i, s:s}", "a", 1, "b", "two");
    if (body) {
        rc = qv_post(s, &p, post_url, .json = body,
                     .headers = (const qv_header[]){{"X-Alloc", "yes"}, {0}});
        /* json_dumps failing for want of memory is QV_ENOMEM too. */
        if (!check_submit("POST", rc, p)) p = NULL;
        json_decref(body);
    } else {
        out->own = 1; /* no POST this time */
    }

    /* A redirect: the response keeps the hop in its history (and the
     * process executor sends that history back from the worker). */
    qv_future *rd = NULL;
    rc = qv_get(s, &rd, redirect_url);
    if (!check_submit("GET redirect", rc, rd)) rd = NULL;

    out->stage = 4;
    if (g) {
        qv_response *r = check_result("GET", g);
        json_t *j = r ? check_json("GET", r) : NULL;
        if (j) {
            const char *q = jstr(j, "args", "q"), *h = jstr(j, "headers", "X-Session");
            if (!q && out->curl_query)
                out->curl_dropped_query = 1; /* libcurl's bug, see in_transfer_query_copy */
            else if (!q || strcmp(q, "1") != 0)
                child_fail("GET: args.q is %s, expected \"1\"", q ? q : "missing");
            if (!h || strcmp(h, "s") != 0)
                child_fail("GET: the session header X-Session is %s", h ? h : "missing");
        }
    }
    out->stage = 5;
    if (p) {
        qv_response *r = check_result("POST", p);
        json_t *j = r ? check_json("POST", r) : NULL;
        if (j) {
            json_t *sent = json_object_get(j, "json");
            const char *h = jstr(j, "headers", "X-Alloc");
            if (json_integer_value(json_object_get(sent, "a")) != 1 || !jstr(j, "json", "b") ||
                strcmp(jstr(j, "json", "b"), "two") != 0)
                child_fail("POST: the JSON body did not arrive intact");
            if (!h || strcmp(h, "yes") != 0)
                child_fail("POST: header X-Alloc is %s", h ? h : "missing");
        }
    }

    if (rd) {
        qv_response *r = check_result("GET redirect", rd);
        if (r && (qv_response_history_len(r) != 1 || !qv_response_history(r, 0) ||
                  qv_response_status(qv_response_history(r, 0)) != 302))
            child_fail("GET redirect: %zu hops in the history, expected one 302",
                       qv_response_history_len(r));
    }

    out->stage = 6;
    qv_future_release(rd);
    qv_future_release(g);
    qv_future_release(p);
    qv_session_free(s);
    if (get_cb && atomic_load(&get_calls) != 1)
        child_fail("GET: done callback ran %d times", atomic_load(&get_calls));
}

/* With the allocator no longer failing, the library still works. */
static void recover(qv_executor_kind kind)
{
    out->stage = 7;
    qv_session *s = NULL;
    int rc = qv_session_new(
        &s, &(qv_session_opts){.size = sizeof(qv_session_opts), .executor_kind = kind});
    if (rc != QV_OK) child_fail("after the failure: qv_session_new: %s", qv_errname(rc));
    qv_future *f = NULL;
    rc = qv_get(s, &f, recover_url);
    if (rc != QV_OK) child_fail("after the failure: GET submit: %s", qv_errname(rc));
    qv_response *r = NULL;
    rc = qv_future_result(f, &r, RESULT_MS);
    if (rc != QV_OK)
        child_fail("after the failure: GET: %s (%s)", qv_errname(rc),
                   qv_future_error(f) ? qv_future_error(f) : "");
    if (qv_response_status(r) != 200)
        child_fail("after the failure: GET: status %d", qv_response_status(r));
    qv_future_release(f);
    qv_session_free(s);
}

static void child_main(qv_executor_kind kind, long n)
{
    counted_pid = getpid();
    alarm(CHILD_LIMIT_S); /* a hang ends as SIGALRM, which the parent reports */
    const char *base = getenv("QV_HTTPBIN_URL");
    if (!base) child_fail("QV_HTTPBIN_URL is not set");
    snprintf(get_url, sizeof(get_url), "%s/get", base);
    snprintf(post_url, sizeof(post_url), "%s/post", base);
    snprintf(redirect_url, sizeof(redirect_url), "%s/redirect/1", base);
    snprintf(recover_url, sizeof(recover_url), "%s/get?after=1", base);
    atomic_store(&fail_at, n);
    atomic_store(&counting, 1);
    if (qv_set_allocator(&failing) != QV_OK) child_fail("qv_set_allocator refused");
    scenario(kind);
    atomic_store(&counting, 0);
    if (getenv("QV_ALLOC_VERBOSE") && atomic_load(&out->injected) && !out->codes && !out->own)
        fprintf(stderr, "alloc child (fail_at %ld): no error reported\n", n);
    recover(kind);
    out->stage = 8;
    exit(0); /* not _exit: LeakSanitizer checks this process at exit */
}

/*
 * A child is this program again (exec'd, not just forked: a fresh process
 * with no Criterion state, and whose sanitizer runtime knows its own
 * threads, so that LeakSanitizer's check at exit is sound), told what to
 * do by QV_ALLOC_CHILD="<kind> <n> <fd>": fd is the shared outcome. This
 * runs before Criterion's main.
 */
__attribute__((constructor)) static void alloc_child_entry(void)
{
    const char *spec = getenv("QV_ALLOC_CHILD");
    if (!spec) return;
    int kind, fd;
    long n;
    if (sscanf(spec, "%d %ld %d", &kind, &n, &fd) != 3) {
        fprintf(stderr, "QV_ALLOC_CHILD=\"%s\": expected \"<kind> <n> <fd>\"\n", spec);
        _exit(2);
    }
    out = mmap(NULL, sizeof(*out), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (out == MAP_FAILED) {
        perror("alloc child: mmap");
        _exit(2);
    }
    close(fd);
    child_main((qv_executor_kind)kind, n);
}

/* Runs the scenario in a child failing allocation n (0: none). Returns 1 if
 * the child ended well; else describes how it ended in why. */
static int run_child(int fd, qv_executor_kind kind, long n, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    char spec[64];
    snprintf(spec, sizeof(spec), "%d %ld %d", (int)kind, n, fd);
    fflush(NULL); /* the child must not write our buffered output again */
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork failed");
    if (pid == 0) {
        setenv("QV_ALLOC_CHILD", spec, 1);
        execl("/proc/self/exe", "test_alloc", (char *)NULL);
        perror("alloc: exec /proc/self/exe");
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) cr_assert_eq(errno, EINTR, "waitpid failed");
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 1;
    if (out->why[0])
        snprintf(why, whylen, "%s", out->why);
    else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        snprintf(why, whylen, "hung: killed after %d s at stage %d", CHILD_LIMIT_S, out->stage);
    else if (WIFSIGNALED(status))
        snprintf(why, whylen, "killed by signal %d (%s) at stage %d%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)), out->stage,
                 out->stage == 8 ? " (at exit: a LeakSanitizer report? see above)" : "");
    else
        snprintf(why, whylen, "exited with status %d at stage %d (a sanitizer report?)",
                 WEXITSTATUS(status), out->stage);
    return 0;
}

/* Fails, each in a child of its own, every N of 1..M that is part (mod
 * ALLOC_PARTS). */
static void every_allocation_fails_once(long part)
{
    qv_executor_kind kind = tx_kind();
    (void)tx_base();                              /* fails clearly if QV_HTTPBIN_URL is unset */
    int fd = memfd_create("qv-alloc-outcome", 0); /* inherited by the children */
    cr_assert_geq(fd, 0, "memfd_create failed");
    cr_assert_eq(ftruncate(fd, sizeof(*out)), 0, "ftruncate failed");
    out = mmap(NULL, sizeof(*out), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(out, MAP_FAILED, "mmap failed");

    char why[600];
    cr_assert(run_child(fd, kind, 0, why, sizeof(why)), "the scenario without failures: %s", why);
    cr_assert_eq(out->codes, 0, "the scenario without failures reported an error");
    long m = atomic_load(&out->calls);
    cr_assert_gt(m, 0, "the scenario made no allocation through the allocator");

    /* QV_ALLOC_ONLY=N runs just that N (to reproduce a failure), in its part. */
    long first = 1, last = m;
    const char *only = getenv("QV_ALLOC_ONLY");
    if (only && !*only) only = NULL;
    if (only) first = last = strtol(only, NULL, 10);

    long runs = 0, injected = 0, clean = 0, failed = 0, dropped = 0;
    long by_code[QV_ERROR_COUNT_] = {0};
    char report[MAX_LISTED * 640] = "";
    size_t used = 0;
    double t0 = now_ms();
    /* Past M while the part's last child still had its Nth allocation to
     * fail: M varies a little from run to run, and each part counted its
     * own, so no N under the largest M falls between two parts. */
    int more = 0;
    for (long n = first; n <= last || (more && !only); n++) {
        if (n % ALLOC_PARTS != part) continue;
        runs++;
        int ok = run_child(fd, kind, n, why, sizeof(why));
        more = atomic_load(&out->injected);
        if (!ok) {
            if (++failed <= MAX_LISTED && used < sizeof(report))
                used += (size_t)snprintf(report + used, sizeof(report) - used,
                                         "\n  allocation %ld failing: %s", n, why);
            continue;
        }
        injected += atomic_load(&out->injected);
        clean += atomic_load(&out->injected) && !out->codes && !out->own;
        dropped += out->curl_dropped_query;
        for (int c = 1; c < QV_ERROR_COUNT_; c++) by_code[c] += (out->codes >> c) & 1;
    }
    /* The figures docs/reliability.md quotes. */
    printf("alloc (%s, part %ld of %d): %ld allocations counted; %ld runs, %ld with the failure "
           "injected; %ld of those reported no error; libcurl dropped the query in %ld; %.1f s\n",
           tx_kind_name(), part + 1, ALLOC_PARTS, m, runs, injected, clean, dropped,
           (now_ms() - t0) / 1000.0);
    printf("alloc (%s, part %ld of %d): runs reporting each error:", tx_kind_name(), part + 1,
           ALLOC_PARTS);
    for (int c = 1; c < QV_ERROR_COUNT_; c++)
        if (by_code[c]) printf(" %s %ld", qv_errname(c), by_code[c]);
    printf("\n");
    fflush(stdout);
    cr_assert_eq(failed, 0, "%s: %ld of %ld runs went wrong:%s%s", tx_kind_name(), failed, runs,
                 report, failed > MAX_LISTED ? "\n  ..." : "");
    /* (QV_ALLOC_ONLY=N: the other parts run nothing.) */
    if (runs)
        cr_assert_gt(by_code[QV_ENOMEM], 0, "%s: QV_ENOMEM was never reported in %ld runs",
                     tx_kind_name(), runs);
    munmap(out, sizeof(*out));
    close(fd);
}

Test(alloc, every_allocation_fails_once_0)
{
    every_allocation_fails_once(0);
}

Test(alloc, every_allocation_fails_once_1)
{
    every_allocation_fails_once(1);
}

Test(alloc, every_allocation_fails_once_2)
{
    every_allocation_fails_once(2);
}

Test(alloc, every_allocation_fails_once_3)
{
    every_allocation_fails_once(3);
}
