/* The fault matrix: every misbehaviour of the fault-injection server
 * (tests/servers/faults.py, QV_FAULTS_URL), plus a closed port, a name that
 * does not resolve and an untrusted TLS certificate, on the executor under
 * test. For each fault a user can count on:
 *
 *  - the right error kind (the table `cases` below; docs/reliability.md has
 *    the same table with the reasons: keep the two in step);
 *  - an outcome in bounded time: not before the timeout that should end it,
 *    and within that timeout plus slack (faults that need no timeout: at
 *    once, plus slack), plus what the control (/ok, sent with the others)
 *    took: a loaded machine makes every case late by about as much (cases
 *    that fail at once ended 2.0-3.6 s in at load 18-44), while a fault
 *    that waits for a timeout it should not is late by that timeout;
 *  - for the gzip bomb, bounded work instead of a clock: the bytes zlib
 *    inflated (counted by a wrapper of inflate, below) reach the limit and
 *    stop within one of libcurl's decoder pieces of it (inflating 10 MiB
 *    costs CPU the control does not: at load 29 it ended 90 ms past a
 *    bound made of the control's time);
 *  - exactly one terminal state and exactly one run of each done callback;
 *  - an executor that still serves afterwards, also on the very connection
 *    cache (worker) that met the fault.
 *
 * All faults run at once (on one executor, then each on its own one-worker
 * executor), so the file takes about as long as its slowest case. */
#include "support.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <zlib.h>

TestSuite(faults, .timeout = 90);

/* Slack over the timeout that should end a case (or over "at once"):
 * generous, for ASan and a loaded CI machine. */
/* Sanitized builds run several times slower (and the process executor forks
 * a pool per case here): the same bounds, with more slack. */
#if defined(__SANITIZE_ADDRESS__)
#define SLACK_MS 4000.0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLACK_MS 4000.0
#endif
#endif
#ifndef SLACK_MS
#define SLACK_MS 2000.0
#endif
#define MiB ((size_t)1024 * 1024)
/* The largest decoder piece check_inflated takes as one, against the
 * bomb's limit: a piece of a limit's size would bound nothing. (libcurl 7.88
 * inflates 16 KiB at a time.) */
#define PIECE_MAX ((size_t)1024 * 1024)

/* Where a case sends its request. */
enum target {
    FAULTS,       /* QV_FAULTS_URL + path */
    CLOSED_PORT,  /* http://127.0.0.1:<a port nobody listens on> + path */
    UNRESOLVABLE, /* a .invalid name that fails to resolve without any DNS query */
    TLS_UNTRUSTED /* QV_TLS_URL + path, its CA not trusted */
};

/*
 * A name under the reserved .invalid TLD whose first label is 64 characters
 * long, one over DNS's limit of 63: glibc's resolver refuses to encode it, so
 * the lookup fails on this machine without a query going out to the
 * configured name server (for "nothing.invalid" glibc would ask it, and test
 * traffic must stay on 127.0.0.1). libcurl still sees a plain host name that
 * does not resolve (CURLE_COULDNT_RESOLVE_HOST).
 */
#define UNRESOLVABLE_URL                                                                           \
    "http://nothing-resolves-here-0123456789-0123456789-0123456789-012.invalid/"

#define W10  "wwwwwwwwww"
#define W100 W10 W10 W10 W10 W10 W10 W10 W10 W10 W10

typedef struct fault_case {
    const char *name;
    enum target target;
    const char *path;
    /* request options (0: the default) */
    long read_timeout_ms;
    long timeout_ms;
    int max_redirects;
    size_t max_response_bytes;
    /* expected outcome */
    int kind;         /* the error code, or QV_OK for a response */
    int status;       /* with QV_OK: the status; failed: qv_future_error_status's (the
                         status line that came before the failure, 0: none; -1: unchecked) */
    const char *body; /* with QV_OK: the exact body */
    double limit_ms;  /* the timeout that should end it; 0: fails at once */
    double min_ms;    /* it must not end before this */
    int inflates;     /* gzip: bounded by the bytes inflated (check_inflated), not the clock */
} fault_case;

/* The fault → kind table. A failure's .status is the status line that came
 * before it (qv_future_error_status): 0 when none did. */
static const fault_case cases[] = {
    /* Nothing listens: connection refused. */
    {"refused", CLOSED_PORT, "/", .kind = QV_ECONNECT},
    /* DNS failure is a connection failure (requests' ConnectionError). */
    {"unresolvable", UNRESOLVABLE, "", .kind = QV_ECONNECT},
    /* Certificate from a CA nobody trusts: verification fails. */
    {"tls-untrusted", TLS_UNTRUSTED, "/hello", .kind = QV_ETLS},
    /* Accepted, request read, then RST: the connection failed. */
    {"reset", FAULTS, "/reset", .kind = QV_ECONNECT},
    /* No status line ever: the read timeout ends it... */
    {"stall-status", FAULTS, "/stall-status", .read_timeout_ms = 500, .kind = QV_EREAD_TIMEOUT,
     .limit_ms = 500, .min_ms = 450},
    /* ...or, with no read timeout to speak of, the total timeout. */
    {"stall-status-total", FAULTS, "/stall-status", .read_timeout_ms = 20000, .timeout_ms = 800,
     .kind = QV_ETIMEOUT, .limit_ms = 800, .min_ms = 720},
    /* Headers and 10 of 1000 body bytes, then silence. (Its status, and
     * drip-total's, is not checked: this server, busy with every case at
     * once, has been late with the headers by more than their timeouts.) */
    {"stall-body", FAULTS, "/stall-body", .read_timeout_ms = 500, .kind = QV_EREAD_TIMEOUT,
     .status = -1, .limit_ms = 500, .min_ms = 450},
    /* A byte a second never trips a 3 s read timeout: the total one ends it. */
    {"drip-total", FAULTS, "/drip", .read_timeout_ms = 3000, .timeout_ms = 1500,
     .kind = QV_ETIMEOUT, .status = -1, .limit_ms = 1500, .min_ms = 1350},
    /* Not a fault: a slow but steady body (a byte per 200 ms, 1 s in all) is
     * not a read timeout, though the whole takes longer than that timeout;
     * the read timeout is about silence, not speed. (The margin is wide
     * because this server is busy with every other case at the same time.) */
    {"drip-steady", FAULTS, "/drip?bytes=5&interval=0.2", .read_timeout_ms = 800, .kind = QV_OK,
     .status = 200, .body = "ddddd", .limit_ms = 1000, .min_ms = 900},
    /* Content-Length 1000, 100 bytes, FIN: truncated. */
    {"short", FAULTS, "/short", .kind = QV_EPROTOCOL, .status = 200},
    /* A chunk size that is not hex: malformed. */
    {"bad-chunked", FAULTS, "/bad-chunked", .kind = QV_EPROTOCOL, .status = 200},
    /* Not HTTP at all (libcurl: "Received HTTP/0.9 when not allowed"). */
    {"garbage", FAULTS, "/garbage", .kind = QV_EPROTOCOL},
    /* HTTP-looking but malformed: "HTTP/1.1 banana split". */
    {"garbage-http", FAULTS, "/garbage?style=http", .kind = QV_EPROTOCOL},
    /* 1 MiB of headers: over libcurl's fixed cap of 300 KiB for a response's
     * headers, i.e. over a size limit, like an over-long body. */
    {"huge-headers", FAULTS, "/huge-headers", .kind = QV_ETOO_LARGE, .status = 200},
    /* One 1 MiB header: over libcurl's cap of 100 KiB for one header. */
    {"huge-header-single", FAULTS, "/huge-headers?single=1", .kind = QV_ETOO_LARGE, .status = 200},
    /* A redirect to itself: over the default of 30 redirects... */
    {"loop", FAULTS, "/loop", .kind = QV_EREDIRECTS, .status = 302},
    /* ...or over a limit of 3. */
    {"loop-3", FAULTS, "/loop", .max_redirects = 3, .kind = QV_EREDIRECTS, .status = 302},
    /* Only http and https, also across redirects. */
    {"to-file", FAULTS, "/to-file", .kind = QV_EURL, .status = 302},
    {"to-ftp", FAULTS, "/to-ftp", .kind = QV_EURL, .status = 302},
    /* ~1 MiB of gzip expanding to 1 GiB: the limit is on the decoded body,
     * and decoding stops there. */
    {"gzip-bomb", FAULTS, "/gzip-bomb", .max_response_bytes = 10 * MiB, .kind = QV_ETOO_LARGE,
     .status = 200, .inflates = 1},
    /* 1 GiB announced by Content-Length... */
    {"huge", FAULTS, "/huge", .max_response_bytes = MiB, .kind = QV_ETOO_LARGE, .status = 200},
    /* ...or streamed chunked, with no length to check up front. */
    {"huge-chunked", FAULTS, "/huge?chunked=1", .max_response_bytes = MiB, .kind = QV_ETOO_LARGE,
     .status = 200},
    /* Content-Length 100, 200 bytes sent: the response is the first 100; the
     * other 100 (a whole smuggled response) must never be taken as the answer
     * to a later request on the same connection. */
    {"wrong-length", FAULTS, "/wrong-length", .kind = QV_OK, .status = 200, .body = W100},
    /* Control: the server's normal answer. */
    {"ok", FAULTS, "/ok", .kind = QV_OK, .status = 200, .body = "ok"},
};

#define NCASES (sizeof cases / sizeof cases[0])

/* Bytes zlib's inflate produced in this test's processes, and the most
 * room one call was given: libcurl decodes with it, one piece a call
 * (its decoder's buffer, which it hands to the write callback whole), and
 * a process pool's workers, forked from this process after count_inflated,
 * add to the same shared counters. */
typedef struct inflate_count {
    atomic_llong bytes;
    atomic_uint piece;
} inflate_count;
static inflate_count *inflated;
static int (*real_inflate)(z_streamp, int);

int inflate(z_streamp strm, int flush)
{
    uInt room = strm->avail_out;
    int rc = real_inflate(strm, flush);
    atomic_fetch_add(&inflated->bytes, (long long)(room - strm->avail_out));
    for (unsigned seen = atomic_load(&inflated->piece);
         room > seen && !atomic_compare_exchange_weak(&inflated->piece, &seen, room);)
        ;
    return rc;
}

/* Starts the count at 0 (before any executor, whose processes inherit it). */
static void count_inflated(void)
{
    if (!inflated) {
        void *p =
            mmap(NULL, sizeof *inflated, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        cr_assert_neq(p, MAP_FAILED, "mmap of the inflate counter failed");
        inflated = p;
        *(void **)&real_inflate = dlsym(RTLD_NEXT, "inflate");
        cr_assert_not_null(real_inflate, "no inflate after this program's");
    }
    atomic_store(&inflated->bytes, 0);
    atomic_store(&inflated->piece, 0);
}

/* One case in flight. */
typedef struct lane {
    const fault_case *c;
    char url[512];
    qv_future *f;
    double t_submit;
    atomic_llong t_done_us; /* when the done callback first ran (us, + 1) */
    atomic_int calls;       /* done callback runs */
} lane;

/* Problems found, reported all at once (one run shows every wrong case). */
typedef struct report {
    char text[16384];
    size_t len;
    int problems;
} report;

static void note(report *rep, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(report *rep, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (rep->len < sizeof rep->text) {
        int n = vsnprintf(rep->text + rep->len, sizeof rep->text - rep->len, fmt, ap);
        if (n > 0) rep->len += (size_t)n;
        if (rep->len > sizeof rep->text) rep->len = sizeof rep->text;
    }
    va_end(ap);
    rep->problems++;
}

static void on_done(qv_future *f, void *arg)
{
    (void)f;
    lane *l = arg;
    long long zero = 0;
    atomic_compare_exchange_strong(&l->t_done_us, &zero, (long long)(now_ms() * 1000.0) + 1);
    atomic_fetch_add(&l->calls, 1);
}

static void lane_init(lane *l, const fault_case *c, int closed_port)
{
    memset(l, 0, sizeof *l);
    l->c = c;
    atomic_init(&l->t_done_us, 0);
    atomic_init(&l->calls, 0);
    const char *url = NULL;
    char buf[128];
    switch (c->target) {
    case FAULTS:
        url = tx_faults_url(c->path);
        break;
    case CLOSED_PORT:
        snprintf(buf, sizeof buf, "http://127.0.0.1:%d%s", closed_port, c->path);
        url = buf;
        break;
    case UNRESOLVABLE:
        url = UNRESOLVABLE_URL;
        break;
    case TLS_UNTRUSTED:
        url = tx_tls_url(c->path);
        break;
    }
    cr_assert_lt(strlen(url), sizeof l->url, "%s: URL too long", c->name);
    strcpy(l->url, url);
}

static void lane_submit(qv_session *s, lane *l)
{
    const fault_case *c = l->c;
    l->t_submit = now_ms();
    int rc = qv_request(s, &l->f,
                        &(qv_request_opts){.size = sizeof(qv_request_opts),
                                           .url = l->url,
                                           .read_timeout_ms = c->read_timeout_ms,
                                           .timeout_ms = c->timeout_ms,
                                           .max_redirects = c->max_redirects,
                                           .max_response_bytes = c->max_response_bytes});
    cr_assert_eq(rc, QV_OK, "%s: submit gave %s; submitting never fails because of the network",
                 c->name, qv_errname(rc));
    cr_assert_eq(qv_future_add_done_callback(l->f, on_done, l), QV_OK, "%s: add_done_callback",
                 c->name);
}

/* The longest any case may take: its limit plus slack. */
static double longest_ms(void)
{
    double m = 0;
    for (size_t i = 0; i < NCASES; i++)
        if (cases[i].limit_ms > m) m = cases[i].limit_ms;
    return m + SLACK_MS;
}

/* Waits for every lane's future (bounded); a future still not done is
 * cancelled, so the test can end, and fails the test naming the case. */
static void wait_all(lane *ls, size_t n)
{
    qv_future *fs[NCASES];
    for (size_t i = 0; i < n; i++) fs[i] = ls[i].f;
    int rc = qv_wait(fs, n, QV_ALL_COMPLETED, (long)(longest_ms() + 5000.0));
    if (rc == QV_OK) return;
    char names[1024] = "";
    for (size_t i = 0; i < n; i++) {
        if (qv_future_done(ls[i].f)) continue;
        size_t len = strlen(names);
        snprintf(names + len, sizeof names - len, " %s", ls[i].c->name);
        qv_future_cancel(ls[i].f);
    }
    cr_assert_fail("[%s] no outcome within %.0f ms for:%s", tx_kind_name(), longest_ms() + 5000.0,
                   names);
}

/* Done callbacks run right after the waiters wake: give them a moment. */
static void wait_callbacks(lane *ls, size_t n)
{
    double deadline = now_ms() + 5000.0;
    for (size_t i = 0; i < n; i++)
        while (atomic_load(&ls[i].calls) == 0 && now_ms() < deadline)
            nanosleep(&(struct timespec){0, 1000000}, NULL);
}

/* ms from a lane's submit to its done callback; -1: it never ran. */
static double lane_ms(const lane *l)
{
    long long done_us = atomic_load(&l->t_done_us);
    return done_us ? (double)(done_us - 1) / 1000.0 - l->t_submit : -1.0;
}

/* How long the control case ("ok") took among ls: how late a case may
 * be for the load alone. */
static double control_ms(const lane *ls, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ls[i].c->name, "ok") == 0) return lane_ms(&ls[i]) > 0 ? lane_ms(&ls[i]) : 0;
    cr_assert_fail("no control case");
    return 0;
}

/* Checks one lane's outcome against its case (load_ms: control_ms);
 * prints a line either way. */
static void check_lane(lane *l, double load_ms, report *rep)
{
    const fault_case *c = l->c;
    const char *ex = tx_kind_name();
    qv_response *r = NULL;
    int rc = qv_future_result(l->f, &r, 0);
    qv_future_state st = qv_future_state_get(l->f);
    const char *msg = qv_future_error(l->f);
    double el = lane_ms(l);
    int calls = atomic_load(&l->calls);

    fprintf(stderr, "faults[%s] %-20s %-18s %6.0f ms  %s\n", ex, c->name, qv_errname(rc), el,
            rc == QV_OK && r ? "(response)"
            : msg            ? msg
                             : "(no message)");

    if (rc != c->kind) {
        note(rep, "  %s: got %s (%s), expected %s\n", c->name, qv_errname(rc),
             rc == QV_OK ? "a response"
             : msg       ? msg
                         : "no message",
             qv_errname(c->kind));
    } else if (c->kind == QV_OK) {
        if (st != QV_FINISHED) note(rep, "  %s: state %d, expected FINISHED\n", c->name, (int)st);
        if (!r || qv_response_status(r) != c->status)
            note(rep, "  %s: status %d, expected %d\n", c->name, r ? qv_response_status(r) : -1,
                 c->status);
        size_t len = 0;
        const char *body = r ? qv_response_body(r, &len) : NULL;
        if (c->body && (!body || len != strlen(c->body) || memcmp(body, c->body, len) != 0))
            note(rep, "  %s: body (%zu bytes) \"%.40s\", expected \"%.40s\" (%zu bytes)\n", c->name,
                 len, body ? body : "(null)", c->body, strlen(c->body));
    } else {
        if (st != QV_FAILED) note(rep, "  %s: state %d, expected FAILED\n", c->name, (int)st);
        if (qv_future_error_code(l->f) != c->kind)
            note(rep, "  %s: qv_future_error_code %s, expected %s\n", c->name,
                 qv_errname(qv_future_error_code(l->f)), qv_errname(c->kind));
        if (!msg || !strstr(msg, l->url))
            note(rep, "  %s: the message \"%s\" does not name the URL %s\n", c->name,
                 msg ? msg : "(null)", l->url);
        if (c->status >= 0 && qv_future_error_status(l->f) != c->status)
            note(rep, "  %s: qv_future_error_status %d, expected %d\n", c->name,
                 qv_future_error_status(l->f), c->status);
    }
    if (el < 0)
        note(rep, "  %s: the done callback never ran\n", c->name);
    else if (!c->inflates && (el < c->min_ms || el > c->limit_ms + SLACK_MS + load_ms))
        note(rep,
             "  %s: ended after %.0f ms, expected %.0f..%.0f ms (limit %.0f ms + slack + the "
             "control's %.0f ms)\n",
             c->name, el, c->min_ms, c->limit_ms + SLACK_MS + load_ms, c->limit_ms, load_ms);
    if (calls != 1) note(rep, "  %s: the done callback ran %d times\n", c->name, calls);
}

/* The work a gzip case cost, by count: the bytes inflated (the bomb is the
 * only compressed body of the run) reach its limit, which is on the decoded
 * body, and go past it by at most one decoder piece, the piece the write
 * callback refused: it stopped there rather than inflating its 1 GiB. The
 * piece is measured (the most room an inflate call was given), not libcurl
 * 7.88's 16 KiB assumed, and must be small against the limit. */
static void check_inflated(report *rep)
{
    long long n = atomic_load(&inflated->bytes);
    size_t piece = atomic_load(&inflated->piece);
    for (size_t i = 0; i < NCASES; i++) {
        const fault_case *c = &cases[i];
        if (!c->inflates) continue;
        fprintf(stderr, "faults[%s] %-20s %lld bytes inflated, in pieces of up to %zu\n",
                tx_kind_name(), c->name, n, piece);
        if (piece == 0 || piece > PIECE_MAX)
            note(rep, "  %s: a decoder piece of %zu bytes, expected 1..%zu\n", c->name, piece,
                 PIECE_MAX);
        if (n < (long long)c->max_response_bytes || n > (long long)(c->max_response_bytes + piece))
            note(rep, "  %s: %lld bytes inflated, expected %zu..%zu (its limit + one piece)\n",
                 c->name, n, c->max_response_bytes, c->max_response_bytes + piece);
    }
}

/* After everything is freed: no late (second) callback. */
static void check_calls_again(lane *ls, size_t n, report *rep)
{
    for (size_t i = 0; i < n; i++) {
        int calls = atomic_load(&ls[i].calls);
        if (calls != 1)
            note(rep, "  %s: the done callback ran %d times (after free)\n", ls[i].c->name, calls);
    }
}

/* GET /ok on s, n at once; every one must answer 200 "ok". */
static void expect_still_serving(qv_session *s, size_t n, const char *after, report *rep)
{
    qv_future *fs[2 * NCASES];
    cr_assert_leq(n, 2 * NCASES);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(qv_get(s, &fs[i], tx_faults_url("/ok")), QV_OK, "submit of /ok after %s",
                     after);
    for (size_t i = 0; i < n; i++) {
        qv_response *r = NULL;
        int rc = qv_future_result(fs[i], &r, TX_RESULT_TIMEOUT_MS);
        const char *body = rc == QV_OK ? qv_response_text(r) : NULL;
        if (rc != QV_OK)
            note(rep, "  /ok after %s: %s (%s)\n", after, qv_errname(rc),
                 qv_future_error(fs[i]) ? qv_future_error(fs[i]) : "no message");
        else if (qv_response_status(r) != 200 || !body || strcmp(body, "ok") != 0)
            note(rep, "  /ok after %s: status %d body \"%.60s\", expected 200 \"ok\"\n", after,
                 qv_response_status(r), body ? body : "(null)");
        qv_future_release(fs[i]);
    }
}

/* Every fault at once on one executor (one worker or transfer slot per
 * case, so none waits for another), then twice as many /ok on it. */
Test(faults, matrix_on_one_executor, .timeout = 90)
{
    count_inflated(); /* (before the executor, whose processes count too) */
    qv_executor *ex = tx_executor((int)NCASES);
    qv_session *s = TX_SESSION(.executor = ex);
    int port = tx_closed_port();
    static lane ls[NCASES];
    report rep = {.len = 0};

    for (size_t i = 0; i < NCASES; i++) lane_init(&ls[i], &cases[i], port);
    for (size_t i = 0; i < NCASES; i++) lane_submit(s, &ls[i]);
    wait_all(ls, NCASES);
    wait_callbacks(ls, NCASES);
    size_t finished = 0, failed = 0;
    double load_ms = control_ms(ls, NCASES);
    for (size_t i = 0; i < NCASES; i++) {
        check_lane(&ls[i], load_ms, &rep);
        qv_future_state st = qv_future_state_get(ls[i].f);
        finished += st == QV_FINISHED;
        failed += st == QV_FAILED;
        qv_future_release(ls[i].f);
    }

    expect_still_serving(s, 2 * NCASES, "the faults", &rep);
    qv_session_close(s, 0);
    qv_executor_stats st;
    cr_assert_eq(qv_executor_stats_get(ex, &st), QV_OK);
    if (st.completed != finished + 2 * NCASES || st.failed != failed || st.cancelled != 0)
        note(&rep, "  stats: completed %zu failed %zu cancelled %zu, expected %zu, %zu, 0\n",
             st.completed, st.failed, st.cancelled, finished + 2 * NCASES, failed);
    if (st.queued != 0 || st.in_flight != 0)
        note(&rep, "  stats: queued %zu in flight %zu after close, expected 0, 0\n", st.queued,
             st.in_flight);
    qv_session_free(s);
    qv_executor_free(ex);
    check_calls_again(ls, NCASES, &rep);
    check_inflated(&rep);

    cr_assert_eq(rep.problems, 0, "[%s] %d problem(s) in the fault matrix:\n%.*s", tx_kind_name(),
                 rep.problems, (int)rep.len, rep.text);
}

/* Every fault at once, each on its own one-worker executor; then /ok on
 * each: the worker (or loop) that met the fault, with whatever connection it
 * kept, must answer the next request correctly (no half-read connection
 * reused, no smuggled response taken as the answer). */
Test(faults, each_fault_then_ok_on_the_same_worker, .timeout = 90)
{
    int port = tx_closed_port();
    static lane ls[NCASES];
    qv_session *ss[NCASES];
    report rep = {.len = 0};

    count_inflated(); /* (before the executors, whose processes count too) */
    for (size_t i = 0; i < NCASES; i++) {
        lane_init(&ls[i], &cases[i], port);
        ss[i] = TX_SESSION(.max_workers = 1);
    }
    for (size_t i = 0; i < NCASES; i++) lane_submit(ss[i], &ls[i]);
    wait_all(ls, NCASES);
    wait_callbacks(ls, NCASES);
    double load_ms = control_ms(ls, NCASES);
    for (size_t i = 0; i < NCASES; i++) {
        check_lane(&ls[i], load_ms, &rep);
        qv_future_release(ls[i].f);
    }
    for (size_t i = 0; i < NCASES; i++) expect_still_serving(ss[i], 2, cases[i].name, &rep);
    for (size_t i = 0; i < NCASES; i++) qv_session_free(ss[i]);
    check_calls_again(ls, NCASES, &rep);
    check_inflated(&rep);

    cr_assert_eq(rep.problems, 0, "[%s] %d problem(s) in the fault matrix:\n%.*s", tx_kind_name(),
                 rep.problems, (int)rep.len, rep.text);
}
