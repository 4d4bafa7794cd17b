/*
 * A concurrency stress run for ThreadSanitizer (and valgrind): plain C, no
 * Criterion (whose runner cannot start under TSan on this machine: "Could
 * not initialize inheritable arena"). It drives the parts of quiver that
 * threads share, on each executor kind, against the test servers that
 * scripts/test starts (QV_NGINX_URL, QV_NGINX_TLS_URL + QV_NGINX_CA,
 * QV_HTTPBIN_URL, QV_FAULTS_URL; all on 127.0.0.1):
 *
 *  1. submitters: several threads submit to sessions that share one
 *     executor (and to one that owns its own), add done callbacks, cancel
 *     some at once and some after a random pause (racing the completion),
 *     release some at once (the session keeps them alive), and wait with
 *     qv_wait, qv_as_completed (pausing between some results) or
 *     qv_future_result (on QV_LOOP the waiting threads lead the loop in
 *     turn, and the I/O thread takes it back); a session hook attaches
 *     a result on the worker that the submitter then reads; every session
 *     retries (some URLs answer 503 once) and the shared executors cap
 *     each host at 3 requests in flight (futures park and unpark);
 *  2. shared waiters: one batch of futures waited on by several threads at
 *     once (qv_wait in every mode, qv_as_completed, qv_future_result) while
 *     another thread cancels some of them;
 *  3. close while submitting: qv_session_close(s, 1) while threads keep
 *     submitting to s, until each sees QV_ESHUTDOWN;
 *  4. executor free with work in flight: qv_executor_free while work is
 *     queued and running and threads keep submitting to a session on it;
 *  5. (processes) pools made around done callbacks: a callback on the
 *     shared pool's dispatcher makes a pool, uses it (a cancel there runs
 *     a done callback within this one) and frees it, while the main
 *     thread does the same;
 *  6. streams (.stream = 1, 1 MiB of nginx's file, over HTTP/1.1 and
 *     HTTP/2): threads read them to the end, slowly, in part or not at
 *     all, release them before or after they complete, cancel them, and
 *     close their session with streams still open; and bodies to on_data
 *     that is slow at one call (on QV_LOOP the rest then moves to a
 *     delivery thread), says stop, or is cancelled; and bodies to
 *     output_fd, a pipe whose reader is slow or stops for good, cancelled
 *     at a random moment.
 *  7. holders (holders.c, once, before the executors): a future's holder
 *     hands it to another while a cancel races the hand-over.
 *  8. (threads) a worker's handle lent to waiting threads: two threads
 *     wait for results in order on a pool of one worker, then of two (each
 *     may run queued futures on the handle a worker lends, its own or,
 *     while its own runs on the other worker, the queue's next, left in
 *     the handle half done when its own comes in), some waits time out
 *     first (the attempt goes back to the worker half done), and each
 *     cancels some of the other's futures while they run. Only futures
 *     with no code of the caller's run so: their session has no hook, and
 *     each gets its done callback late, while it may run on a lent handle
 *     (the worker then runs it).
 *  9. (threads, loop) the bound on uncollected responses: pools whose
 *     workers (the loop's leader) pause at 3 finished responses (one with a
 *     queue of 4, where submits wait for room; one of a single worker, whose
 *     handle is lent to the collectors as they wait), each fed by three
 *     threads that go away while the workers pause, then collect in order,
 *     the last submitted first, by polling, with qv_as_completed or by done
 *     callbacks alone, cancel some meanwhile, and let some futures go
 *     uncollected, before and after they finished; then a pool freed while
 *     its workers pause, its futures collected after it is gone. Nothing
 *     may be left counted.
 * 10. (threads, loop; once, after the executors, with no other thread of
 *     the run) descriptors run out (nofile.c): bodies to output_fd pipes
 *     started with every descriptor taken, so the caller's descriptor is
 *     written itself, read slowly or not at all and cancelled at a random
 *     moment.
 *
 * For the process executor only this (parent) side is exercised: its
 * dispatcher thread and everything that meets it; the workers are other
 * processes. Each future must end in exactly one terminal state that agrees
 * with what was done to it (a cancel that returned 1 means CANCELLED;
 * otherwise 200), each done callback must run exactly once, and each
 * executor's counts must add up. Any failed check makes the exit status 1;
 * ThreadSanitizer's reports are the other half of the verdict
 * (TSAN_OPTIONS=halt_on_error=1 makes the first one fatal).
 *
 *   stress [ROUNDS]  rounds of the submitters per executor kind (default 20;
 *                    the valgrind pass uses fewer).
 * QV_STRESS_SEED=<n> repeats a run's random choices (not its timing).
 * QV_STRESS_TIME_LIMIT=<s> replaces the time limit (TIME_LIMIT seconds):
 *                    a short one checks what a run that hits it leaves.
 */
#define _GNU_SOURCE
#include "holders.h"
#include "internal.h" /* phase 9 reads the bound's counts */
#include "nofile.h"

#include <quiver.h>

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NSUBMITTERS 4
#define BATCH       8
#define NWAITERS    4   /* threads waiting on one shared batch */
#define SHARED_N    16  /* futures in that batch */
#define TIME_LIMIT  600 /* seconds for the whole run: more is a hang */
/* Room for the requests of a run: phases 3 and 4 submit for a set time
 * (at most ~2,000 per kind), phases 1 and 2 ~40 per kind and round, phase
 * 9 ~45 a round (two kinds). */
#define ITEMS_FIXED     10000
#define ITEMS_PER_ROUND 262

/* ------------------------------------------------------------------ checks */

static atomic_int failures;

static void check_failed(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check_failed(int line, const char *fmt, ...)
{
    if (atomic_fetch_add(&failures, 1) >= 30) return; /* the first ones tell the story */
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "stress.c:%d: FAILED: %s\n", line, msg);
}
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) check_failed(__LINE__, __VA_ARGS__);                                          \
    } while (0)

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "stress: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "stress: still running after the time limit: a hang?\n";
    ssize_t w = write(2, msg, sizeof(msg) - 1);
    (void)w;
    _exit(3);
}

/* ------------------------------------------------------------- randomness */

static unsigned long long seed;

/* splitmix64: a per-thread stream from the run's seed and a stream id. */
static unsigned long long next_rand(unsigned long long *state)
{
    unsigned long long z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static unsigned rnd(unsigned long long *state, unsigned n)
{
    return (unsigned)(next_rand(state) % n);
}

static void sleep_us(long us)
{
    nanosleep(&(struct timespec){.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000}, NULL);
}

/* ------------------------------------------------------------ the servers */

static char url_small[256], url_get[256], url_ok[256], url_drip[256], url_h2[256];
static char url_big[256], url_big_h2[256];
/* A 503 once, then 200: with every session's retry policy, a retry. The
 * request's key (appended at submit) makes each one flaky on its own. */
static char url_flaky[256];
static atomic_int flaky_seq;
static const char *nginx_ca;

static const char *env_or_die(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) die("%s is not set (scripts/test starts the test servers and sets it)", name);
    return v;
}

static void setup_urls(void)
{
    snprintf(url_small, sizeof(url_small), "%s/small", env_or_die("QV_NGINX_URL"));
    snprintf(url_h2, sizeof(url_h2), "%s/small", env_or_die("QV_NGINX_TLS_URL"));
    snprintf(url_big, sizeof(url_big), "%s/big", env_or_die("QV_NGINX_URL"));
    snprintf(url_big_h2, sizeof(url_big_h2), "%s/big", env_or_die("QV_NGINX_TLS_URL"));
    nginx_ca = env_or_die("QV_NGINX_CA");
    snprintf(url_get, sizeof(url_get), "%s/get", env_or_die("QV_HTTPBIN_URL"));
    const char *faults = env_or_die("QV_FAULTS_URL");
    snprintf(url_ok, sizeof(url_ok), "%s/ok", faults);
    /* ~100 ms in flight: long enough for a cancel to land mid-transfer. */
    snprintf(url_drip, sizeof(url_drip), "%s/drip?bytes=5&interval=0.02", faults);
    snprintf(url_flaky, sizeof(url_flaky), "%s/flaky?fail=1&key=stress-%d-", faults, (int)getpid());
}

/* A URL for a request: mostly fast ones, some slow, some HTTP/2. */
static const char *pick_url(unsigned long long *rs)
{
    switch (rnd(rs, 9)) {
    case 0:
        return url_get;
    case 4:
        return url_flaky;
    case 1:
        return url_drip;
    case 2:
        return url_ok;
    case 3:
        return url_h2;
    default:
        return url_small;
    }
}

/* ------------------------------------------------------------------ items */

/* One request: what was done to it, and how often its callback ran. */
typedef struct item {
    qv_future *f; /* NULL once released */
    const char *url;
    atomic_int calls;
    int cancel_rc;    /* what qv_future_cancel returned (0 if not called) */
    int may_cancel;   /* cancelled by a session close: CANCELLED is fine */
    int released;     /* released without waiting: only the callback tells */
    int bare;         /* submitted with no hook (its done callback added later) */
    atomic_int final; /* the state the callback saw */
    /* The executor it runs on, for what a slow outcome says (NULL: one
     * freed under it, whose counts cannot be read). */
    qv_executor *ex;
} item;

/* Items live until the end (callbacks may run until the sessions are gone). */
static item *items;
static atomic_int nitems;
static int max_items;

static item *new_item(const char *url)
{
    int i = atomic_fetch_add(&nitems, 1);
    if (i >= max_items) die("more than %d requests: raise ITEMS_FIXED", max_items);
    item *it = &items[i];
    it->url = url;
    atomic_store(&it->final, -1);
    return it;
}

static void on_done(qv_future *f, void *arg)
{
    item *it = arg;
    atomic_store(&it->final, (int)qv_future_state_get(f));
    atomic_fetch_add(&it->calls, 1);
}

static qv_executor_kind cur_kind; /* set before the threads of a kind start */

/* The hook runs on a worker (threads, loop) and attaches a result that the
 * submitter reads: a hand-over between threads for TSan to look at. */
static int hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)arg;
    int st = qv_response_status(r);
    /* In a process worker a pointer cannot come back: the call fails there. */
    if (cur_kind == QV_PROCESSES) return qv_response_set_result_bytes(r, &st, sizeof(st));
    int *status = malloc(sizeof(*status));
    if (!status) return 1;
    *status = st;
    return qv_response_set_result(r, status, free);
}

static const char *kind_name(qv_executor_kind k)
{
    return k == QV_THREADS ? "threads" : k == QV_LOOP ? "loop" : "processes";
}

static void add_cb(item *it)
{
    int rc = qv_future_add_done_callback(it->f, on_done, it);
    CHECK(rc == QV_OK, "add_done_callback: %s", qv_errname(rc));
}

/* Submits a GET of url on s, with a done callback unless bare (then the
 * caller adds it with add_cb). QV_OK (*out is the item, its future set) or
 * the submit's error (no item). */
static int submit_as(qv_session *s, const char *url, item **out, int bare)
{
    qv_future *f = NULL;
    char flaky[320];
    if (url == url_flaky)
        snprintf(flaky, sizeof(flaky), "%s%d", url_flaky, atomic_fetch_add(&flaky_seq, 1));
    int rc = qv_get(s, &f, url == url_flaky ? flaky : url);
    if (rc != QV_OK) return rc;
    item *it = new_item(url);
    it->f = f;
    it->ex = qv_session_executor(s);
    it->bare = bare;
    if (!bare) add_cb(it);
    *out = it;
    return QV_OK;
}

static int submit(qv_session *s, const char *url, item **out)
{
    return submit_as(s, url, out, 0);
}

/* The outcome agrees with what was done to the item: a cancel that returned
 * 1 means CANCELLED; otherwise 200 (or CANCELLED after a close with
 * cancel_pending). Then the item's reference goes. */
/* How long a result may take before it counts as none (a hang): 30 s, or
 * QV_STRESS_RESULT_MS (the valgrind pass: every process there runs tens of
 * times slower). */
static int result_ms = 30000;

static double mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void settle(item *it)
{
    qv_response *r = NULL;
    /* A slow outcome is said (state, attempts, how late): after a wait for
     * the whole batch gave up, it tells a late outcome from none. */
    int late = !qv_future_done(it->f);
    double t0 = late ? mono_ms() : 0;
    int rc = qv_future_result(it->f, &r, result_ms);
    qv_future_state st = qv_future_state_get(it->f);
    if (late && mono_ms() - t0 > 5000) {
        char counts[96] = "its executor is being freed";
        qv_executor_stats es;
        if (it->ex && qv_executor_stats_get(it->ex, &es) == QV_OK)
            snprintf(counts, sizeof(counts), "its executor: %zu queued, %zu in flight, %d workers",
                     es.queued, es.in_flight, es.workers);
        fprintf(stderr, "stress: %s %s (state %d, %d attempts, cancel %d) %.0f ms later; %s\n",
                it->url, qv_future_done(it->f) ? "ended" : "still not done", (int)st,
                qv_future_attempts(it->f), it->cancel_rc, mono_ms() - t0, counts);
    }
    CHECK(rc != QV_EWAIT_TIMEOUT, "%s: no outcome after %d ms", it->url, result_ms);
    CHECK(qv_future_done(it->f), "%s: result %s but not done", it->url, qv_errname(rc));
    if (it->cancel_rc == 1) {
        CHECK(rc == QV_ECANCELLED && st == QV_CANCELLED && !r,
              "%s: cancel returned 1, but the result is %s, state %d", it->url, qv_errname(rc),
              (int)st);
    } else if (rc == QV_ECANCELLED && it->may_cancel) {
        CHECK(st == QV_CANCELLED, "%s: QV_ECANCELLED in state %d", it->url, (int)st);
    } else {
        CHECK(rc == QV_OK && st == QV_FINISHED, "%s: %s (state %d): %s", it->url, qv_errname(rc),
              (int)st, qv_future_error(it->f) ? qv_future_error(it->f) : "");
        if (rc == QV_OK) {
            CHECK(qv_response_status(r) == 200, "%s: status %d", it->url, qv_response_status(r));
            /* The process executor's hooks run in a worker: no pointer
             * result comes back from there. */
            const int *hs = qv_response_result(r);
            if (cur_kind != QV_PROCESSES && !it->bare)
                CHECK(hs && *hs == 200, "%s: the hook's result is missing", it->url);
        }
        if (it->cancel_rc == 0 && rc == QV_OK)
            CHECK(qv_future_cancel(it->f) == 0, "%s: cancel after completion returned 1", it->url);
    }
    qv_future_release(it->f);
    it->f = NULL;
}

/* With the session hook unless bare. */
static qv_session *new_session_as(qv_executor *ex, qv_executor_kind kind, int workers, int bare)
{
    qv_session *s = NULL;
    int rc = qv_session_new(
        &s, &(qv_session_opts){
                .size = sizeof(qv_session_opts),
                .executor = ex,
                .executor_kind = kind,
                .max_workers = workers,
                .ca_file = nginx_ca,
                .retry = &(qv_retry){.max_retries = 2, .backoff_ms = 5, .max_backoff_ms = 20},
                .hooks = bare ? NULL : (const qv_hook[]){{hook, NULL}, {0}}});
    if (rc != QV_OK) die("qv_session_new: %s", qv_errname(rc));
    return s;
}

static qv_session *new_session(qv_executor *ex, qv_executor_kind kind, int workers)
{
    return new_session_as(ex, kind, workers, 0);
}

static qv_executor *new_executor(qv_executor_kind kind, int workers)
{
    qv_executor *ex = NULL;
    int rc = qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                      .kind = kind,
                                                      .max_workers = workers,
                                                      /* parking and unparking under load */
                                                      .per_host = {.max_concurrent = 3}});
    if (rc != QV_OK) die("qv_executor_new(%s): %s", kind_name(kind), qv_errname(rc));
    return ex;
}

static pthread_t spawn(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    if (pthread_create(&t, NULL, fn, arg)) die("pthread_create failed");
    return t;
}

/* -------------------------------------------------------- 1. submitters */

typedef struct world {
    qv_executor_kind kind;
    int rounds;
    qv_executor *ex;  /* shared by s1, s2 and s4 */
    qv_session *s[3]; /* s1, s2 (shared executor), s3 (owns one) */
    atomic_int on_ex; /* futures submitted through the shared executor */
    atomic_int stops; /* ... of them failed on purpose (on_data said stop) */
} world;

typedef struct submitter {
    world *w;
    int id;
} submitter;

static void *submitter_main(void *arg)
{
    submitter *me = arg;
    world *w = me->w;
    unsigned long long rs = seed * 1000 + (unsigned long long)me->id;
    for (int round = 0; round < w->rounds; round++) {
        item *batch[BATCH];
        qv_future *fs[BATCH];
        int n = 0;
        for (int i = 0; i < BATCH; i++) {
            int which = (int)rnd(&rs, 3);
            item *it;
            int rc = submit(w->s[which], pick_url(&rs), &it);
            CHECK(rc == QV_OK, "submit: %s", qv_errname(rc));
            if (rc) continue;
            if (which < 2) atomic_fetch_add(&w->on_ex, 1);
            switch (rnd(&rs, 8)) {
            case 0: /* cancel at once: queued, or just picked up */
                it->cancel_rc = qv_future_cancel(it->f);
                break;
            case 1: /* let go at once: the session holds it until it ends */
                qv_future_release(it->f);
                it->f = NULL;
                it->released = 1;
                continue;
            default:
                break;
            }
            batch[n] = it;
            fs[n++] = it->f;
        }
        /* Cancels racing completion: a random pause, then a random few. */
        sleep_us(rnd(&rs, 3000));
        for (int i = 0; i < n; i++)
            if (!batch[i]->cancel_rc && rnd(&rs, 6) == 0)
                batch[i]->cancel_rc = qv_future_cancel(batch[i]->f);
        switch (round % 3) {
        case 0: {
            int rc = qv_wait(fs, (size_t)n, QV_ALL_COMPLETED, result_ms);
            CHECK(rc == QV_OK, "qv_wait(ALL): %s", qv_errname(rc));
            break;
        }
        case 1: {
            qv_as_completed *ac = NULL;
            int rc = qv_as_completed_new(&ac, fs, (size_t)n);
            CHECK(rc == QV_OK, "qv_as_completed_new: %s", qv_errname(rc));
            int got = 0;
            qv_future *f;
            while (ac && (rc = qv_as_completed_next(ac, &f, result_ms)) == QV_OK) {
                CHECK(qv_future_done(f), "as_completed gave a future that is not done");
                got++;
                /* Work between results, without quiver: on QV_LOOP the
                 * I/O thread takes back the loop this thread led. */
                if (rnd(&rs, 4) == 0) sleep_us(rnd(&rs, 4000));
            }
            CHECK(!ac || rc == QV_ESHUTDOWN, "as_completed_next: %s", qv_errname(rc));
            CHECK(!ac || got == n, "as_completed gave %d of %d futures", got, n);
            qv_as_completed_free(ac);
            break;
        }
        default:
            break; /* settle() waits on each */
        }
        for (int i = 0; i < n; i++) settle(batch[i]);
    }
    return NULL;
}

/* ------------------------------------------------------ 2. shared waiters */

typedef struct shared {
    qv_future *fs[SHARED_N];
    item *its[SHARED_N];
    atomic_int who;
    unsigned long long rs;
    atomic_int cancel_rc[SHARED_N];
} shared;

static void *waiter_main(void *arg)
{
    shared *sh = arg;
    int me = atomic_fetch_add(&sh->who, 1);
    int rc;
    switch (me) {
    case 0:
        rc = qv_wait(sh->fs, SHARED_N, QV_FIRST_COMPLETED, result_ms);
        CHECK(rc == QV_OK, "qv_wait(FIRST_COMPLETED): %s", qv_errname(rc));
        rc = qv_wait(sh->fs, SHARED_N, QV_ALL_COMPLETED, result_ms);
        CHECK(rc == QV_OK, "qv_wait(ALL_COMPLETED): %s", qv_errname(rc));
        break;
    case 1:
        rc = qv_wait(sh->fs, SHARED_N, QV_FIRST_EXCEPTION, result_ms);
        CHECK(rc == QV_OK, "qv_wait(FIRST_EXCEPTION): %s", qv_errname(rc));
        break;
    case 2: {
        qv_as_completed *ac = NULL;
        rc = qv_as_completed_new(&ac, sh->fs, SHARED_N);
        CHECK(rc == QV_OK, "qv_as_completed_new: %s", qv_errname(rc));
        int got = 0;
        qv_future *f;
        while (ac && qv_as_completed_next(ac, &f, result_ms) == QV_OK) got++;
        CHECK(!ac || got == SHARED_N, "as_completed gave %d of %d futures", got, SHARED_N);
        qv_as_completed_free(ac);
        break;
    }
    default:
        for (int i = 0; i < SHARED_N; i++) {
            rc = qv_future_result(sh->fs[i], NULL, result_ms);
            CHECK(rc == QV_OK || rc == QV_ECANCELLED, "qv_future_result: %s", qv_errname(rc));
        }
        break;
    }
    return NULL;
}

static void *canceller_main(void *arg)
{
    shared *sh = arg;
    unsigned long long rs = sh->rs;
    for (int i = 0; i < SHARED_N; i++) {
        if (rnd(&rs, 2)) continue;
        sleep_us(rnd(&rs, 2000));
        atomic_store(&sh->cancel_rc[i], qv_future_cancel(sh->fs[i]));
    }
    return NULL;
}

static void shared_waiters(world *w)
{
    for (int round = 0; round < w->rounds / 2 + 1; round++) {
        shared sh = {.rs = seed * 7919 + (unsigned long long)round};
        for (int i = 0; i < SHARED_N; i++) {
            int rc = submit(w->s[i % 2], pick_url(&sh.rs), &sh.its[i]);
            if (rc) die("submit: %s", qv_errname(rc));
            atomic_fetch_add(&w->on_ex, 1);
            sh.fs[i] = sh.its[i]->f;
        }
        pthread_t t[NWAITERS + 1];
        for (int i = 0; i < NWAITERS; i++) t[i] = spawn(waiter_main, &sh);
        t[NWAITERS] = spawn(canceller_main, &sh);
        for (int i = 0; i <= NWAITERS; i++) pthread_join(t[i], NULL);
        for (int i = 0; i < SHARED_N; i++) {
            sh.its[i]->cancel_rc = atomic_load(&sh.cancel_rc[i]);
            settle(sh.its[i]);
        }
    }
}

/* ------------------------------------------- 3. close while submitting */

typedef struct closing {
    world *w;
    qv_session *s;
    int id;
    atomic_int *stop_seen;
} closing;

/* Submits until the session refuses with QV_ESHUTDOWN; settles each. */
static void *close_submitter_main(void *arg)
{
    closing *c = arg;
    unsigned long long rs = seed * 31 + (unsigned long long)c->id;
    item *mine[256];
    int n = 0;
    for (;;) {
        item *it;
        int rc = submit(c->s, rnd(&rs, 2) ? url_drip : url_small, &it);
        if (rc == QV_ESHUTDOWN) break;
        CHECK(rc == QV_OK, "submit: %s", qv_errname(rc));
        if (rc) break;
        atomic_fetch_add(&c->w->on_ex, 1);
        it->may_cancel = 1; /* close(s, 1) cancels what is still queued */
        if (n == 256) {
            for (int i = 0; i < n; i++) settle(mine[i]);
            n = 0;
        }
        mine[n++] = it;
        sleep_us(rnd(&rs, 500));
    }
    atomic_fetch_add(c->stop_seen, 1);
    for (int i = 0; i < n; i++) settle(mine[i]);
    return NULL;
}

static void close_while_submitting(world *w)
{
    for (int round = 0; round < 3; round++) {
        qv_session *s = new_session(w->ex, w->kind, 0);
        atomic_int stop_seen = 0;
        closing c[3];
        pthread_t t[3];
        for (int i = 0; i < 3; i++) {
            c[i] = (closing){.w = w, .s = s, .id = round * 3 + i, .stop_seen = &stop_seen};
            t[i] = spawn(close_submitter_main, &c[i]);
        }
        sleep_us(20000 + 20000 * round);
        qv_session_close(s, 1);
        for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
        CHECK(atomic_load(&stop_seen) == 3, "%d of 3 submitters saw QV_ESHUTDOWN",
              atomic_load(&stop_seen));
        qv_session_free(s);
    }
}

/* ------------------------------------ 4. executor free with work in flight */

typedef struct freeing {
    qv_session *s;
    int id;
    atomic_int submitted;
} freeing;

static void *free_submitter_main(void *arg)
{
    freeing *fr = arg;
    unsigned long long rs = seed * 131 + (unsigned long long)fr->id;
    item *mine[256];
    int n = 0;
    for (; n < 256; n++) {
        int rc = submit(fr->s, pick_url(&rs), &mine[n]);
        if (rc == QV_ESHUTDOWN) break;
        CHECK(rc == QV_OK, "submit: %s", qv_errname(rc));
        if (rc) break;
        atomic_fetch_add(&fr->submitted, 1);
        mine[n]->ex = NULL; /* freed under it by qv_executor_free */
        sleep_us(rnd(&rs, 1000));
    }
    /* The executor finishes what it accepted: all of it ends in 200. */
    for (int i = 0; i < n; i++) settle(mine[i]);
    return NULL;
}

/* ex2 was made up front (a process pool must be created before threads). */
static void free_with_work_in_flight(world *w, qv_executor *ex2)
{
    qv_session *s = new_session(ex2, w->kind, 0);
    freeing fr[2] = {{.s = s, .id = 0}, {.s = s, .id = 1}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) t[i] = spawn(free_submitter_main, &fr[i]);
    sleep_us(30000);
    qv_executor_free(ex2); /* returns once the accepted work is done */
    qv_future *f = NULL;
    int rc = qv_get(s, &f, url_small);
    CHECK(rc == QV_ESHUTDOWN, "submit after qv_executor_free: %s", qv_errname(rc));
    if (rc == QV_OK) qv_future_release(f);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    qv_session_free(s);
}

/* ------------------------------------- 5. pools made around done callbacks */

/* A pool made, asked twice and freed: a fork under the fork lock's write
 * side, met by the read side of the dispatchers already running. The second
 * request, waiting behind the first for the one worker, is cancelled: done
 * here, its done callback runs here too (within this one's, when called
 * from a callback). */
static void use_a_new_pool(void)
{
    qv_executor *ex = new_executor(QV_PROCESSES, 1);
    qv_session *s = new_session(ex, QV_PROCESSES, 0);
    item *it[2];
    int rc = submit(s, url_drip, &it[0]);
    CHECK(rc == QV_OK, "submit to a new pool: %s", qv_errname(rc));
    if (rc == QV_OK) {
        rc = submit(s, url_small, &it[1]);
        CHECK(rc == QV_OK, "submit to a new pool: %s", qv_errname(rc));
        if (rc == QV_OK) {
            it[1]->cancel_rc = qv_future_cancel(it[1]->f);
            settle(it[1]);
        }
        settle(it[0]);
    }
    qv_session_free(s);
    qv_executor_free(ex);
}

static pthread_t main_thread;
static atomic_int on_dispatcher; /* of phase 5's callbacks */

static void pool_from_callback(qv_future *f, void *arg)
{
    (void)f;
    atomic_fetch_add(&on_dispatcher, !pthread_equal(pthread_self(), main_thread));
    use_a_new_pool();
    atomic_store((atomic_int *)arg, 1);
}

static void pools_around_callbacks(world *w)
{
    main_thread = pthread_self();
    enum { ROUNDS = 3 };
    for (int i = 0; i < ROUNDS; i++) {
        atomic_int done = 0;
        qv_future *f = NULL;
        /* Slow enough for the callback to be added before it is done, so
         * that it runs on the dispatcher. */
        int rc = qv_get(w->s[0], &f, url_drip);
        CHECK(rc == QV_OK, "submit: %s", qv_errname(rc));
        if (rc) continue;
        atomic_fetch_add(&w->on_ex, 1);
        rc = qv_future_add_done_callback(f, pool_from_callback, &done);
        CHECK(rc == QV_OK, "add_done_callback: %s", qv_errname(rc));
        use_a_new_pool();
        while (rc == QV_OK && !atomic_load(&done)) sleep_us(1000); /* the alarm bounds it */
        qv_future_release(f);
    }
    /* Else the phase tested nothing it says (a callback added too late runs
     * on the thread that adds it). */
    CHECK(atomic_load(&on_dispatcher) > 0, "none of %d pool callbacks ran on a dispatcher", ROUNDS);
}

/* ------------------------------------------------------------ 6. streams */

#define STREAM_BYTES  (1 << 20)
#define STREAMS_EACH  8 /* per thread and round */
#define STREAM_THREAD 4

static atomic_int streams_made;
static atomic_llong stream_bytes;

typedef struct streamer {
    world *w;
    qv_session *s;
    int id;
} streamer;

static int submit_stream(world *w, qv_session *s, unsigned long long *rs, qv_future **f)
{
    int rc = qv_request(s, f,
                        &(qv_request_opts){.url = rnd(rs, 3) ? url_big : url_big_h2,
                                           .range = "bytes=0-1048575",
                                           .stream = 1});
    CHECK(rc == QV_OK, "submit a stream: %s", qv_errname(rc));
    if (rc == QV_OK) atomic_fetch_add(&w->on_ex, 1);
    if (rc == QV_OK) atomic_fetch_add(&streams_made, 1);
    return rc;
}

/* Reads r until its end, at most `most` bytes (-1: all), with pauses if slow.
 * The bytes read, or -1 on an error. */
static long long read_stream(qv_response *r, long long most, int slow, unsigned long long *rs)
{
    static _Thread_local char buf[1 << 16];
    long long got = 0;
    for (;;) {
        size_t n = 0, cap = 1 + rnd(rs, sizeof(buf));
        int rc = qv_response_read(r, buf, cap, &n, slow ? 10 : result_ms);
        if (rc == QV_EWAIT_TIMEOUT && slow) continue;
        if (rc != QV_OK) {
            CHECK(0, "reading a stream: %s: %s", qv_errname(rc), qv_response_read_error(r));
            return -1;
        }
        if (n == 0) return got;
        got += (long long)n;
        atomic_fetch_add(&stream_bytes, (long long)n);
        if (most >= 0 && got >= most) return got;
        if (slow) sleep_us(rnd(rs, 300));
    }
}

/* on_data that is slow at one call (QV_LOOP then moves the rest of the
 * body from the loop's thread to a delivery thread) and may say stop. */
typedef struct data_sink {
    long long got;
    int calls, slow_at, stop_at;
} data_sink;

static int sink_data(qv_future *f, const void *chunk, size_t len, void *arg)
{
    (void)f, (void)chunk;
    data_sink *d = arg;
    d->got += (long long)len;
    if (++d->calls == d->slow_at) sleep_us(3000);
    return d->calls == d->stop_at;
}

/* A body to on_data, which may be slow once, stop it, or be cancelled. */
static void data_stream(world *w, qv_session *s, unsigned long long *rs)
{
    data_sink d = {.slow_at = 1 + (int)rnd(rs, 40),
                   .stop_at = rnd(rs, 3) ? 0 : 1 + (int)rnd(rs, 60)};
    qv_future *f;
    int rc = qv_request(s, &f,
                        &(qv_request_opts){.url = rnd(rs, 3) ? url_big : url_big_h2,
                                           .range = "bytes=0-1048575",
                                           .on_data = sink_data,
                                           .on_data_arg = &d});
    CHECK(rc == QV_OK, "submit to on_data: %s", qv_errname(rc));
    if (rc) return;
    atomic_fetch_add(&w->on_ex, 1);
    if (!rnd(rs, 4)) sleep_us(rnd(rs, 2000));
    int cancelled = !rnd(rs, 4) && qv_future_cancel(f);
    qv_response *r = NULL;
    rc = qv_future_result(f, &r, result_ms);
    if (cancelled) {
        CHECK(rc == QV_ECANCELLED, "a cancelled on_data body: %s", qv_errname(rc));
    } else if (d.stop_at && d.calls >= d.stop_at) {
        CHECK(rc == QV_EHOOK, "an on_data that said stop: %s", qv_errname(rc));
        atomic_fetch_add(&w->stops, 1);
    } else {
        CHECK(rc == QV_OK && qv_response_body_bytes(r) == STREAM_BYTES && d.got == STREAM_BYTES,
              "an on_data body: %s, %lld bytes", qv_errname(rc), d.got);
    }
    qv_future_release(f);
}

/* The reader of an output_fd pipe, on a thread of its own: reads slowly
 * to the end, or (stop >= 0) stops reading for good after `stop` bytes. */
typedef struct pipe_reader {
    int fd;
    long long stop;
    unsigned long long rs;
} pipe_reader;

static void *pipe_reader_main(void *arg)
{
    pipe_reader *r = arg;
    static _Thread_local char buf[1 << 16];
    for (long long got = 0; r->stop < 0 || got < r->stop;) {
        ssize_t n = read(r->fd, buf, sizeof buf);
        if (n <= 0) break;
        got += n;
        sleep_us(rnd(&r->rs, 300));
    }
    return NULL;
}

/* A body to output_fd, a pipe its reader takes slowly, maybe cancelled.
 * The reader may instead stop for good, and the future is cancelled: the
 * write that waits for room must end (a loop's pump, a worker's
 * qv_sink_write, a process worker's, which reads its control socket
 * meanwhile), whenever the cancel comes. */
static void fd_stream(world *w, qv_session *s, unsigned long long *rs)
{
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
    pipe_reader r = {.fd = p[0], .stop = rnd(rs, 2) ? (long long)rnd(rs, 1 << 19) : -1, .rs = *rs};
    pthread_t t = spawn(pipe_reader_main, &r);
    qv_future *f;
    int rc = qv_request(
        s, &f, &(qv_request_opts){.url = url_big, .range = "bytes=0-1048575", .output_fd = p[1]});
    CHECK(rc == QV_OK, "submit to output_fd: %s", qv_errname(rc));
    if (!rc) {
        atomic_fetch_add(&w->on_ex, 1);
        if (rnd(rs, 2)) sleep_us(rnd(rs, 3000));
        /* (A reader that stops leaves too little room for the whole body.) */
        int cancelled = (r.stop >= 0 || !rnd(rs, 4)) && qv_future_cancel(f);
        CHECK(cancelled || r.stop < 0, "a body its reader stopped taking completed");
        qv_response *resp = NULL;
        rc = qv_future_result(f, &resp, result_ms);
        if (cancelled)
            CHECK(rc == QV_ECANCELLED, "a cancelled output_fd body: %s", qv_errname(rc));
        else
            CHECK(rc == QV_OK && qv_response_body_bytes(resp) == STREAM_BYTES,
                  "an output_fd body: %s", qv_errname(rc));
        qv_future_release(f);
    }
    close(p[1]); /* the reader's end of the body */
    pthread_join(t, NULL);
    close(p[0]);
}

static void *streamer_main(void *arg)
{
    streamer *me = arg;
    unsigned long long rs = seed * 7919 + (unsigned long long)me->id;
    for (int i = 0; i < STREAMS_EACH; i++) {
        if (!rnd(&rs, 3)) {
            data_stream(me->w, me->s, &rs);
            continue;
        }
        if (!rnd(&rs, 4)) {
            fd_stream(me->w, me->s, &rs);
            continue;
        }
        qv_future *f;
        if (submit_stream(me->w, me->s, &rs, &f)) continue;
        unsigned mode = rnd(&rs, 6);
        if (mode == 0) { /* let go before it completes */
            qv_future_release(f);
            continue;
        }
        int cancelled = mode == 1 && qv_future_cancel(f);
        qv_response *r = NULL;
        int rc = qv_future_result(f, &r, result_ms);
        if (cancelled) {
            CHECK(rc == QV_ECANCELLED, "a cancelled stream: %s", qv_errname(rc));
        } else {
            CHECK(rc == QV_OK && qv_response_status(r) == 206, "a stream: %s, status %d",
                  qv_errname(rc), r ? qv_response_status(r) : 0);
        }
        if (rc == QV_OK && mode <= 3) { /* all of it, quickly or slowly */
            long long got = read_stream(r, -1, mode == 3, &rs);
            CHECK(got == STREAM_BYTES, "a stream gave %lld bytes", got);
        } else if (rc == QV_OK && mode == 4) { /* a part */
            read_stream(r, (long long)rnd(&rs, STREAM_BYTES / 2), rnd(&rs, 2), &rs);
        } /* mode 5: none of it */
        qv_future_release(f);
    }
    return NULL;
}

/* A session closed with streams open, read by other threads meanwhile. */
typedef struct open_stream {
    qv_response *r;
    unsigned long long rs;
} open_stream;

static void *read_until_closed(void *arg)
{
    open_stream *o = arg;
    static _Thread_local char buf[4096];
    for (;;) {
        size_t n = 0;
        int rc = qv_response_read(o->r, buf, sizeof(buf), &n, result_ms);
        if (rc == QV_ESHUTDOWN || (rc == QV_OK && n == 0)) break;
        CHECK(rc == QV_OK, "reading a stream while its session closes: %s", qv_errname(rc));
        if (rc) break;
        sleep_us(rnd(&o->rs, 200));
    }
    return NULL;
}

static void streams(world *w)
{
    for (int round = 0; round < 2; round++) {
        qv_session *s = new_session(w->ex, w->kind, 0);
        streamer st[STREAM_THREAD];
        pthread_t t[STREAM_THREAD];
        for (int i = 0; i < STREAM_THREAD; i++) {
            st[i] = (streamer){.w = w, .s = s, .id = round * STREAM_THREAD + i};
            t[i] = spawn(streamer_main, &st[i]);
        }
        for (int i = 0; i < STREAM_THREAD; i++) pthread_join(t[i], NULL);
        /* Streams open, some being read, some not: the close stops them. */
        unsigned long long rs = seed * 104729 + (unsigned long long)round;
        qv_future *f[4] = {0};
        open_stream o[4];
        pthread_t rt[4];
        int reading[4] = {0};
        for (int i = 0; i < 4; i++) {
            if (submit_stream(w, s, &rs, &f[i])) continue;
            qv_response *r = NULL;
            int rc = qv_future_result(f[i], &r, rnd(&rs, 2) ? result_ms : 0);
            if (rc != QV_OK || !rnd(&rs, 2)) continue;
            o[i] = (open_stream){.r = r, .rs = rs + (unsigned long long)i};
            rt[i] = spawn(read_until_closed, &o[i]);
            reading[i] = 1;
        }
        qv_session_close(s, 0);
        for (int i = 0; i < 4; i++) {
            if (reading[i]) pthread_join(rt[i], NULL);
            if (f[i]) {
                int rc = qv_future_result(f[i], NULL, result_ms);
                CHECK(rc == QV_OK, "a stream of a closed session: %s", qv_errname(rc));
                qv_future_release(f[i]);
            }
        }
        qv_session_free(s);
    }
}

/* ------------------------------- 8. a worker's handle lent to waiting threads */

typedef struct lender_world {
    qv_session *s;
    int rounds;
    _Atomic(qv_future *) to_cancel[2]; /* each thread's, for the other (a reference) */
} lender_world;

typedef struct lent_waiter {
    lender_world *lw;
    int id;
} lent_waiter;

/* Cancels what the other thread left to cancel, if anything. */
static void cancel_other(lender_world *lw, int id)
{
    qv_future *f = atomic_exchange(&lw->to_cancel[!id], NULL);
    if (!f) return;
    qv_future_cancel(f);
    qv_future_release(f);
}

static void *lent_waiter_main(void *arg)
{
    lent_waiter *lwr = arg;
    lender_world *lw = lwr->lw;
    unsigned long long rs = seed ^ (0x1e4dULL * (unsigned long long)(lwr->id + 1));
    for (int i = 0; i < 3 * lw->rounds; i++) {
        item *it[2];
        int rc = submit_as(lw->s, rnd(&rs, 3) ? url_small : url_drip, &it[0], 1);
        CHECK(rc == QV_OK, "submit to a lending pool: %s", qv_errname(rc));
        if (rc) continue;
        rc = submit_as(lw->s, rnd(&rs, 2) ? url_small : url_drip, &it[1], 1);
        CHECK(rc == QV_OK, "submit to a lending pool: %s", qv_errname(rc));
        if (rc) {
            add_cb(it[0]);
            settle(it[0]);
            continue;
        }
        if (rnd(&rs, 3) == 0) {
            it[1]->may_cancel = 1;
            qv_future *old = atomic_exchange(&lw->to_cancel[lwr->id], qv_future_ref(it[1]->f));
            if (old) qv_future_release(old);
        }
        /* A wait that may end first: the attempt it runs goes back to
         * its worker in flight. */
        if (rnd(&rs, 2)) {
            rc = qv_future_wait(it[0]->f, (long)rnd(&rs, 20));
            CHECK(rc == QV_OK || rc == QV_EWAIT_TIMEOUT, "a short wait: %s", qv_errname(rc));
        }
        add_cb(it[0]);
        settle(it[0]);
        cancel_other(lw, lwr->id);
        add_cb(it[1]); /* it may be half done in the lent handle */
        settle(it[1]);
    }
    qv_future *f = atomic_exchange(&lw->to_cancel[lwr->id], NULL);
    if (f) qv_future_release(f);
    return NULL;
}

static void lent_to_waiters(world *w, int workers)
{
    lender_world lw = {.s = new_session_as(NULL, w->kind, workers, 1), .rounds = w->rounds};
    lent_waiter lwr[2] = {{&lw, 0}, {&lw, 1}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) t[i] = spawn(lent_waiter_main, &lwr[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    qv_session_free(lw.s);
}

/* -------------- 9. (threads, loop) the bound on uncollected responses */

#define UNCOLLECTED_BOUND   3  /* max_uncollected of the phase's pools */
#define UNCOLLECTED_N       10 /* tracked futures per thread and round */
#define UNCOLLECTED_THREADS 3  /* collectors per pool */

typedef struct collector {
    qv_session *s;
    int id, rounds;
    atomic_int *submitted; /* to the collector's pool, tracked or not */
} collector;

/* Times a collector back from its pause found the workers paused (said,
 * not checked: how often they reach the bound is the scheduler's). */
static atomic_int found_paused;

/* A future of the phase's pools with no item (no done callback, ever): it
 * is let go uncollected, before or after it finished. */
static qv_future *untracked(collector *c)
{
    qv_future *f = NULL;
    int rc = qv_get(c->s, &f, url_small);
    CHECK(rc == QV_OK, "submit to a bounded pool: %s", qv_errname(rc));
    if (rc == QV_OK) atomic_fetch_add(c->submitted, 1);
    return rc == QV_OK ? f : NULL;
}

/* Collects a batch the way the round says: the workers pause at the bound
 * while this thread is away, and go on as it collects, waits for one not
 * started, polls, or adds a callback. */
static void collect_batch(collector *c, item **its, qv_future **fs, int n, unsigned long long *rs)
{
    switch (rnd(rs, 4)) {
    case 0: /* in order, working between results */
        for (int i = 0; i < n; i++) {
            int rc = qv_future_result(fs[i], NULL, result_ms);
            CHECK(rc == QV_OK || (rc == QV_ECANCELLED && its[i]->cancel_rc == 1),
                  "in-order result: %s", qv_errname(rc));
            if (rnd(rs, 3) == 0) sleep_us(rnd(rs, 2000));
        }
        break;
    case 1: /* the last submitted first (it has not started), then a poll loop */
        if (n) {
            int rc = qv_future_result(fs[n - 1], NULL, result_ms);
            CHECK(rc == QV_OK || (rc == QV_ECANCELLED && its[n - 1]->cancel_rc == 1),
                  "last-first result: %s", qv_errname(rc));
        }
        for (int i = 0; i < n; i++) {
            double until = mono_ms() + result_ms;
            while (!qv_future_done(fs[i]) && mono_ms() < until) sleep_us(200);
        }
        break;
    case 2: { /* as they complete, working between results */
        qv_as_completed *ac = NULL;
        int rc = qv_as_completed_new(&ac, fs, (size_t)n);
        CHECK(rc == QV_OK, "qv_as_completed_new: %s", qv_errname(rc));
        qv_future *f;
        int got = 0;
        while (ac && qv_as_completed_next(ac, &f, result_ms) == QV_OK) {
            got++;
            if (rnd(rs, 3) == 0) sleep_us(rnd(rs, 2000));
        }
        CHECK(!ac || got == n, "as_completed gave %d of %d futures", got, n);
        qv_as_completed_free(ac);
        break;
    }
    default: /* by done callbacks alone, added in reverse order */
        break;
    }
    (void)c;
    for (int i = n - 1; i >= 0; i--) add_cb(its[i]);
    for (int i = 0; i < n; i++) settle(its[i]);
}

static void *collector_main(void *arg)
{
    collector *c = arg;
    unsigned long long rs = seed * 31337 + (unsigned long long)c->id;
    for (int round = 0; round < c->rounds; round++) {
        item *its[UNCOLLECTED_N];
        qv_future *fs[UNCOLLECTED_N];
        int n = 0;
        qv_future *early = untracked(c); /* let go at once, unfinished */
        if (early) qv_future_release(early);
        qv_future *late = untracked(c); /* let go after the batch: finished by then */
        for (int i = 0; i < UNCOLLECTED_N; i++) {
            item *it;
            int rc = submit_as(c->s, rnd(&rs, 4) ? url_small : url_get, &it, 1);
            CHECK(rc == QV_OK, "submit to a bounded pool: %s", qv_errname(rc));
            if (rc) continue;
            atomic_fetch_add(c->submitted, 1);
            its[n] = it;
            fs[n++] = it->f;
        }
        /* Away: the workers finish up to the bound and pause. Cancels
         * race them there. */
        sleep_us(rnd(&rs, 6000));
        if (atomic_load(&qv_session_executor(c->s)->paused)) atomic_fetch_add(&found_paused, 1);
        for (int i = 0; i < n; i++)
            if (rnd(&rs, 8) == 0) its[i]->cancel_rc = qv_future_cancel(fs[i]);
        collect_batch(c, its, fs, n, &rs);
        if (late) {
            double until = mono_ms() + result_ms;
            while (!qv_future_done(late) && mono_ms() < until) sleep_us(500);
            qv_future_release(late);
        }
    }
    return NULL;
}

/* Pools (of w->kind) whose workers pause at UNCOLLECTED_BOUND finished
 * responses: one whose submits never wait, one whose queue holds 4 (a
 * submit waits for room while the workers pause), one of a single worker
 * (on QV_THREADS its handle is lent to the collectors that wait for
 * results, who run queued work on it up to the bound); then one freed while
 * its workers pause, its futures collected after it is gone. Nothing is
 * left counted at the end. */
#define BOUNDED_POOLS 3
static void uncollected_bound(world *w)
{
    static const struct {
        int workers, queued;
    } pool[BOUNDED_POOLS] = {{4, 0}, {4, 4}, {1, 0}};
    qv_executor *ex[BOUNDED_POOLS];
    qv_session *s[BOUNDED_POOLS];
    atomic_int submitted[BOUNDED_POOLS] = {0};
    collector c[BOUNDED_POOLS * UNCOLLECTED_THREADS];
    pthread_t t[BOUNDED_POOLS * UNCOLLECTED_THREADS];
    for (int p = 0; p < BOUNDED_POOLS; p++) {
        int rc = qv_executor_new(&ex[p], &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                             .kind = w->kind,
                                                             .max_workers = pool[p].workers,
                                                             .max_queued = pool[p].queued,
                                                             .max_uncollected = UNCOLLECTED_BOUND});
        if (rc != QV_OK) die("qv_executor_new(bounded): %s", qv_errname(rc));
        s[p] = new_session_as(ex[p], w->kind, 0, 1);
    }
    for (int i = 0; i < BOUNDED_POOLS * UNCOLLECTED_THREADS; i++) {
        int p = i % BOUNDED_POOLS;
        c[i] = (collector){
            .s = s[p], .id = i, .rounds = w->rounds / 4 + 1, .submitted = &submitted[p]};
        t[i] = spawn(collector_main, &c[i]);
    }
    for (int i = 0; i < BOUNDED_POOLS * UNCOLLECTED_THREADS; i++) pthread_join(t[i], NULL);
    int total = 0;
    for (int p = 0; p < BOUNDED_POOLS; p++) total += atomic_load(&submitted[p]);
    printf("stress (%s): uncollected bound: %d requests, workers found paused %d times\n",
           kind_name(w->kind), total, atomic_exchange(&found_paused, 0));
    for (int p = 0; p < BOUNDED_POOLS; p++) {
        qv_session_free(s[p]);
        qv_executor_stats st;
        CHECK(qv_executor_stats_get(ex[p], &st) == QV_OK, "qv_executor_stats_get failed");
        CHECK(st.completed + st.failed + st.cancelled == (size_t)atomic_load(&submitted[p]),
              "bounded pool %d: completed %zu + failed %zu + cancelled %zu != %d submitted", p,
              st.completed, st.failed, st.cancelled, atomic_load(&submitted[p]));
        CHECK(st.queued == 0 && st.in_flight == 0, "bounded pool %d: %zu queued, %zu in flight", p,
              st.queued, st.in_flight);
        /* A pause the close's urge ended is uncounted by the paused thread
         * once it runs (the loop's leader: at its next round). */
        double until = mono_ms() + 2000;
        while (atomic_load(&ex[p]->paused) && mono_ms() < until) sleep_us(1000);
        CHECK(atomic_load(&ex[p]->uncollected) == 0 && atomic_load(&ex[p]->urgent) == 0 &&
                  atomic_load(&ex[p]->paused) == 0,
              "bounded pool %d: %ld uncollected, %d urgent, %d paused at the end", p,
              atomic_load(&ex[p]->uncollected), atomic_load(&ex[p]->urgent),
              atomic_load(&ex[p]->paused));
        qv_executor_free(ex[p]);
    }

    /* Freed while its workers pause: it finishes the queue; the futures,
     * collected after, let the last reference to it go. */
    qv_executor *fx;
    int rc = qv_executor_new(&fx, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                      .kind = w->kind,
                                                      .max_workers = 2,
                                                      .max_uncollected = 2});
    if (rc != QV_OK) die("qv_executor_new(bounded): %s", qv_errname(rc));
    qv_session *fs = new_session_as(fx, w->kind, 0, 1);
    qv_future *f[12];
    int n = 0;
    for (int i = 0; i < 12; i++) {
        rc = qv_get(fs, &f[n], url_small);
        CHECK(rc == QV_OK, "submit to a bounded pool: %s", qv_errname(rc));
        n += rc == QV_OK;
    }
    sleep_us(20000);
    qv_session_free(fs);
    qv_executor_free(fx);
    for (int i = 0; i < n; i++) {
        CHECK(qv_future_done(f[i]), "a future of a freed bounded pool is not done");
        qv_future_release(f[i]);
    }
}

/* ------------------------------------------------------------------- main */

static void run_kind(qv_executor_kind kind, int rounds)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int first = atomic_load(&nitems);
    cur_kind = kind;
    world w = {.kind = kind, .rounds = rounds};
    /* Everything is created before the first thread starts: a process
     * executor forks its zygote at creation and refuses once threads of
     * other executors exist. */
    w.ex = new_executor(kind, 4);
    qv_executor *ex2 = new_executor(kind, 2);
    w.s[0] = new_session(w.ex, kind, 0);
    w.s[1] = new_session(w.ex, kind, 0);
    w.s[2] = new_session(NULL, kind, 2);

    submitter sub[NSUBMITTERS];
    pthread_t t[NSUBMITTERS];
    for (int i = 0; i < NSUBMITTERS; i++) {
        sub[i] = (submitter){.w = &w, .id = i};
        t[i] = spawn(submitter_main, &sub[i]);
    }
    shared_waiters(&w); /* alongside the submitters */
    for (int i = 0; i < NSUBMITTERS; i++) pthread_join(t[i], NULL);
    close_while_submitting(&w);
    free_with_work_in_flight(&w, ex2);
    if (kind == QV_PROCESSES) pools_around_callbacks(&w);
    streams(&w);
    if (kind == QV_THREADS)
        for (int workers = 1; workers <= 2; workers++) lent_to_waiters(&w, workers);
    if (kind != QV_PROCESSES) uncollected_bound(&w);

    for (int i = 0; i < 3; i++) qv_session_free(w.s[i]);
    /* Every callback has run by now (sessions wait for them). */
    int cancelled = 0, done = atomic_load(&nitems);
    for (int i = first; i < done; i++) {
        item *it = &items[i];
        CHECK(atomic_load(&it->calls) == 1, "%s: done callback ran %d times", it->url,
              atomic_load(&it->calls));
        int st = atomic_load(&it->final);
        CHECK(st == QV_FINISHED || st == QV_CANCELLED, "%s: final state %d", it->url, st);
        cancelled += st == QV_CANCELLED;
    }
    qv_executor_stats stats;
    CHECK(qv_executor_stats_get(w.ex, &stats) == QV_OK, "qv_executor_stats_get failed");
    size_t total = stats.completed + stats.failed + stats.cancelled;
    CHECK(total == (size_t)atomic_load(&w.on_ex),
          "shared executor: completed %zu + failed %zu + cancelled %zu != %d submitted",
          stats.completed, stats.failed, stats.cancelled, atomic_load(&w.on_ex));
    CHECK(stats.failed == (size_t)atomic_load(&w.stops),
          "shared executor: %zu failed, %d on purpose", stats.failed, atomic_load(&w.stops));
    CHECK(stats.queued == 0 && stats.in_flight == 0, "shared executor: %zu queued, %zu in flight",
          stats.queued, stats.in_flight);
    qv_executor_free(w.ex);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("stress (%s): %d requests, %d cancelled, %d streams (%lld MiB read), %.1f s\n",
           kind_name(kind), done - first, cancelled, atomic_exchange(&streams_made, 0),
           atomic_exchange(&stream_bytes, 0) >> 20,
           (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    fflush(stdout);
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* Runs libcurl's transfer code (HTTP/1.1, and HTTP/2 over TLS) once in this
 * process, before any pool forks, so that process workers inherit it warm.
 * Under valgrind a worker otherwise translates that code anew: its first
 * HTTPS request cost ~1.7 s of CPU (~90 ms warm): tens of seconds at a
 * busy machine's share of a core, which requests waited out past the
 * result timeout. Natively these are two quick requests. */
static void warm_transfer_code(void)
{
    const char *urls[] = {url_small, url_h2};
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        CURL *e = curl_easy_init();
        if (!e) die("curl_easy_init failed");
        curl_easy_setopt(e, CURLOPT_URL, urls[i]);
        curl_easy_setopt(e, CURLOPT_CAINFO, nginx_ca);
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        CURLcode cc = curl_easy_perform(e);
        curl_easy_cleanup(e);
        if (cc != CURLE_OK) die("warm-up GET %s: %s", urls[i], curl_easy_strerror(cc));
    }
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 20;
    if (rounds < 1) die("usage: stress [ROUNDS >= 1]");
    const char *s = getenv("QV_STRESS_SEED");
    seed = s && *s ? strtoull(s, NULL, 0) : (unsigned long long)time(NULL);
    const char *ms = getenv("QV_STRESS_RESULT_MS");
    if (ms && atoi(ms) > 0) result_ms = atoi(ms);
    printf("stress: seed %llu (QV_STRESS_SEED=%llu repeats it)\n", seed, seed);
    fflush(stdout); /* before the process executors fork */
    const char *limit = getenv("QV_STRESS_TIME_LIMIT");
    signal(SIGALRM, on_alarm);
    alarm(limit && atoi(limit) > 0 ? (unsigned)atoi(limit) : TIME_LIMIT);
    setup_urls();
    max_items = ITEMS_FIXED + ITEMS_PER_ROUND * rounds;
    items = calloc((size_t)max_items, sizeof(*items));
    if (!items) die("out of memory");

    warm_transfer_code(); /* in this thread, before any other: see there */
    int h = holders_race(200 * rounds);
    if (h < 0) die("holders: could not set up");
    CHECK(h == 0, "holders: a cancel raced a hand-over badly (see above)");

    /* Processes first: a process pool must exist before any other
     * executor's threads. */
    run_kind(QV_PROCESSES, rounds);
    run_kind(QV_THREADS, rounds);
    run_kind(QV_LOOP, rounds);
    const qv_executor_kind nofile_kinds[] = {QV_THREADS, QV_LOOP};
    for (int i = 0; i < 2; i++) {
        qv_executor_kind k = nofile_kinds[i];
        int nf = nofile_race(k, url_small, url_big, seed, rounds / 5 + 2);
        if (nf < 0) die("nofile (%s): could not set up", kind_name(k));
        CHECK(nf == 0, "nofile (%s): a download with no descriptor left ended badly (see above)",
              kind_name(k));
    }

    free(items);
    int n = atomic_load(&failures);
    printf("stress: %s (%d failed checks)\n", n ? "FAILED" : "passed", n);
    return n ? 1 : 0;
}
