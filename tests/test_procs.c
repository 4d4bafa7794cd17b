/* What only the process executor promises: a hook that crashes, aborts,
 * exits or is killed costs its own future (QV_EWORKER) and nothing else; the
 * worker is replaced; no zombie is left; cookies set in one worker reach the
 * next request on another; a hook stuck past the hook timeout is killed; and
 * it must be created before any other executor. These tests make their own
 * QV_PROCESSES executors, so the file is registered for that kind alone. */
#include "support.h"
#include "../src/internal.h" /* the popped mark a cancel waits on */

#include <dirent.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

TX_KIND_ONLY(processes);

/* Under LeakSanitizer a worker that dies through exit() would report the
 * parent's memory it inherited: leak checks belong to the test process
 * only (sanitizer hook; unused in other builds). */
static int test_pid;
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void)
{
    return test_pid && getpid() != test_pid;
}

static void note_test_pid(void)
{
    test_pid = (int)getpid();
}

TestSuite(procs, .init = note_test_pid, .timeout = 120);

static qv_executor *procs_executor(int workers, long hook_timeout_ms)
{
    qv_executor *ex;
    cr_assert_eq(qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                          .kind = QV_PROCESSES,
                                                          .max_workers = workers,
                                                          .hook_timeout_ms = hook_timeout_ms}),
                 QV_OK);
    return ex;
}

/* The zygote keeps none of the program's descriptors: a pipe the program
 * closes sees its end, whatever the descriptor's number (one above 65535
 * too, where the descriptor limit allows it). */
Test(procs, zygote_keeps_no_descriptor_of_the_program, .timeout = 120)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    int w = p[1];
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY && rl.rlim_max > 70000) {
        rl.rlim_cur = rl.rlim_max;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
        cr_assert_eq(dup2(p[1], 70000), 70000);
        close(p[1]);
        w = 70000;
    }
    qv_executor *ex = procs_executor(1, 0); /* forks the zygote now */
    close(w);
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    cr_assert_eq(poll(&pfd, 1, 5000), 1, "descriptor %d is still open in another process", w);
    char c;
    cr_assert_eq(read(p[0], &c, 1), 0);
    close(p[0]);
    qv_executor_free(ex);
}

/* The hooks run in a worker process: each dies its own way. */
static int segfault_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)r, (void)arg;
    signal(SIGSEGV, SIG_DFL); /* die as an uninstrumented build would, not via ASan's handler */
    raise(SIGSEGV);
    return 0;
}

static int abort_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)r, (void)arg;
    abort();
}

static int exit_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)r, (void)arg;
    exit(3);
}

/* Writes the worker's pid to the file named by arg, then waits to be killed. */
static int wait_to_be_killed_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)r;
    FILE *fp = fopen(arg, "w");
    if (fp) {
        fprintf(fp, "%d\n", (int)getpid());
        fclose(fp);
    }
    nanosleep(&(struct timespec){.tv_sec = 30}, NULL);
    return 0;
}

static int sleepy_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)r, (void)arg;
    nanosleep(&(struct timespec){.tv_sec = 30}, NULL);
    return 0;
}

/* Puts the worker's pid into the result bytes. */
static int pid_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)arg;
    int pid = (int)getpid();
    nanosleep(&(struct timespec){.tv_nsec = 200 * 1000000L}, NULL); /* keep this worker busy */
    return qv_response_set_result_bytes(r, &pid, sizeof pid);
}

static int result_pid(qv_response *r)
{
    size_t n;
    const int *p = qv_response_result_bytes(r, &n);
    cr_assert(p && n == sizeof(int), "no pid in the result");
    return *p;
}

/* Descendants of this process (children and grandchildren), and how many
 * of them are zombies. */
static void descendants(int *all, int *zombies)
{
    int pids[4096], ppids[4096], n = 0;
    char states[4096];
    DIR *d = opendir("/proc");
    cr_assert_not_null(d);
    for (struct dirent *e; (e = readdir(d)) && n < 4096;) {
        char path[300], buf[512];
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp) continue;
        size_t got = fread(buf, 1, sizeof buf - 1, fp);
        fclose(fp);
        buf[got] = '\0';
        const char *close_paren = strrchr(buf, ')');
        if (!close_paren) continue;
        /* "pid (comm) S ppid ..." */
        if (sscanf(close_paren + 2, "%c %d", &states[n], &ppids[n]) != 2) continue;
        pids[n++] = atoi(e->d_name);
    }
    closedir(d);
    *all = *zombies = 0;
    int self = (int)getpid();
    for (int i = 0; i < n; i++) {
        int desc = ppids[i] == self;
        for (int j = 0; j < n && !desc; j++) desc = pids[j] == ppids[i] && ppids[j] == self;
        if (!desc) continue;
        (*all)++;
        *zombies += states[i] == 'Z';
    }
}

/* One failing hook among 100 good requests: only its future fails, with err. */
static void one_failure_among_many(qv_hook_fn killer, void *arg, int err, const char *why,
                                   void (*on_started)(void *), void *started_arg)
{
    qv_executor *ex = procs_executor(4, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *bad, *good[100];
    cr_assert_eq(qv_get(s, &bad, tu("/get"), .hook = killer, .hook_arg = arg), QV_OK);
    for (int i = 0; i < 100; i++) cr_assert_eq(qv_get(s, &good[i], tuf("/get?i=%d", i)), QV_OK);
    if (on_started) on_started(started_arg);
    const char *msg = tx_expect_error(bad, err);
    tx_assert_contains(msg, why);
    for (int i = 0; i < 100; i++) {
        tx_expect_status(good[i], 200);
        qv_future_release(good[i]);
    }
    qv_future_release(bad);

    /* The pool is whole again and still serves. */
    qv_future *after[4];
    for (int i = 0; i < 4; i++) cr_assert_eq(qv_get(s, &after[i], tu("/get")), QV_OK);
    for (int i = 0; i < 4; i++) {
        tx_expect_status(after[i], 200);
        qv_future_release(after[i]);
    }
    qv_executor_stats st;
    cr_assert_eq(qv_executor_stats_get(ex, &st), QV_OK);
    cr_assert(st.workers >= 1 && st.workers <= 4, "%d workers", st.workers);
    cr_assert_eq(st.failed, 1, "stats.failed = %zu", st.failed);
    int all, zombies;
    descendants(&all, &zombies);
    cr_assert_eq(zombies, 0, "%d zombie processes while the pool runs", zombies);

    qv_session_free(s);
    qv_executor_free(ex);
    descendants(&all, &zombies);
    cr_assert_eq(all, 0, "%d processes left after the pool was freed", all);
}

/* One dying hook among 100 good requests: only its future fails. */
static void one_death_among_many(qv_hook_fn killer, void *arg, const char *why,
                                 void (*on_started)(void *), void *started_arg)
{
    one_failure_among_many(killer, arg, QV_EWORKER, why, on_started, started_arg);
}

Test(procs, segfaulting_hook_costs_one_future, .timeout = 120)
{
    one_death_among_many(segfault_hook, NULL, "signal 11", NULL, NULL);
}

Test(procs, aborting_hook_costs_one_future, .timeout = 120)
{
    one_death_among_many(abort_hook, NULL, "signal 6", NULL, NULL);
}

Test(procs, exiting_hook_costs_one_future, .timeout = 120)
{
    one_death_among_many(exit_hook, NULL, "exited with status 3", NULL, NULL);
}

/* In a worker process: writes what is not a frame to the worker's socket to
 * its parent (its one Unix socket), ahead of the real answer. */
static int garbage_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)r, (void)arg;
    for (int fd = 3; fd < 1024; fd++) {
        int domain = 0;
        socklen_t len = sizeof domain;
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX)
            (void)!write(fd, "not a frame!", 12);
    }
    return 0;
}

Test(procs, a_worker_stopped_for_a_malformed_answer_is_told_as_such, .timeout = 120)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get"), .hook = garbage_hook), QV_OK);
    const char *msg = tx_expect_error(f, QV_EPROTOCOL);
    tx_assert_contains(msg, "malformed answer");
    tx_assert_contains(msg, "the pool stopped it");
    cr_assert_null(strstr(msg, "signal"), "%s", msg);
    qv_future_release(f);
    /* The pool goes on. */
    qv_future_release((tx_get_ok(s, &f, tu("/get")), f));
    qv_session_free(s);
}

/* Writes an index into its worker's body ring (ring.c) that the worker
 * could not have written, as a worker gone wrong might: past what the ring
 * holds (arg NULL), or behind what the parent took out. The hook runs
 * after the body is in, before the answer, which the parent reads after
 * the ring: it must fail this future alone, reading nothing out of bounds. */
static int bad_ring_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)r;
    if (!qv_worker_ring) return 0; /* no ring: the future succeeds, and the test fails */
    qv_ring_hdr *h = qv_worker_ring->h;
    uint64_t tail = atomic_load(&h->tail);
    atomic_store(&h->head, arg ? tail - 1 : tail + QV_RING_CAP + 1);
    return 0;
}

Test(procs, a_ring_index_past_the_ring_costs_one_future, .timeout = 120)
{
    one_failure_among_many(bad_ring_hook, NULL, QV_EPROTOCOL, "malformed", NULL, NULL);
}

Test(procs, a_ring_index_behind_the_parent_costs_one_future, .timeout = 120)
{
    one_failure_among_many(bad_ring_hook, "behind", QV_EPROTOCOL, "malformed", NULL, NULL);
}

/* The same while a streamed body's reader takes the ring's bytes itself
 * (its hook runs with the headers; a body of none leaves the index as the
 * hook wrote it): the read fails, and the pool goes on. */
Test(procs, a_ring_index_past_the_ring_fails_a_streamed_read, .timeout = 120)
{
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/bytes/0"), .stream = 1, .hook = bad_ring_hook), QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    char buf[64];
    size_t n;
    cr_assert_eq(qv_response_read(r, buf, sizeof buf, &n, TX_RESULT_TIMEOUT_MS), QV_EPROTOCOL);
    tx_assert_contains(qv_response_read_error(r), "malformed");
    qv_future_release(f);
    tx_get_ok(s, &f, tu("/get"));
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* Kills the worker whose pid the hook wrote to the file. */
static void kill_from_outside(void *path)
{
    int pid = 0;
    double t0 = now_ms();
    while (pid <= 0 && now_ms() - t0 < 10000) {
        FILE *fp = fopen(path, "r");
        if (fp) {
            if (fscanf(fp, "%d", &pid) != 1) pid = 0;
            fclose(fp);
        }
        if (pid <= 0) nanosleep(&(struct timespec){.tv_nsec = 10 * 1000000L}, NULL);
    }
    cr_assert_gt(pid, 0, "the hook never wrote its pid");
    cr_assert_eq(kill(pid, SIGKILL), 0);
}

Test(procs, worker_killed_from_outside_costs_one_future, .timeout = 120)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/quiver-test-pid-%d", (int)getpid());
    unlink(path);
    one_death_among_many(wait_to_be_killed_hook, path, "signal 9", kill_from_outside, path);
    unlink(path);
}

/* Writes the worker's pid to the file named by arg, before the transfer. */
static int pid_file_request_hook(qv_session *s, qv_attempt *a, void *arg)
{
    (void)s, (void)a;
    FILE *fp = fopen(arg, "w");
    if (fp) {
        fprintf(fp, "%d\n", (int)getpid());
        fclose(fp);
    }
    return 0;
}

/* A streamed body's reader takes the worker's ring itself: the worker
 * killed mid-body, the reader gets every byte it put in, then QV_EWORKER. */
Test(procs, a_worker_killed_mid_body_fails_the_read_after_its_bytes, .timeout = 120)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/quiver-test-pid-%d", (int)getpid());
    unlink(path);
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    char url[512], want_path[512];
    snprintf(url, sizeof url, "%s/big", tx_env("QV_NGINX_URL", "nginx"));
    snprintf(want_path, sizeof want_path, "%s/big", tx_env("QV_NGINX_WWW", "nginx"));
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, url, .stream = 1, .on_request = pid_file_request_hook,
                        .on_request_arg = path),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    /* Nobody reads yet: the worker fills the ring and waits, mid-body. */
    long long seen = 0;
    for (int i = 0; i < 1000 && seen < (64 << 10); i++) {
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000000L}, NULL);
        seen = qv_response_body_bytes(r);
    }
    cr_assert_geq(seen, 64 << 10, "%lld bytes came in", seen);
    kill_from_outside(path);
    FILE *want = fopen(want_path, "rb");
    cr_assert_not_null(want);
    long long got = 0;
    int rc;
    for (;;) {
        char a[8192], b[8192];
        size_t n;
        rc = qv_response_read(r, a, sizeof a, &n, TX_RESULT_TIMEOUT_MS);
        if (rc || n == 0) break;
        cr_assert_eq(fread(b, 1, n, want), n);
        cr_assert_eq(memcmp(a, b, n), 0, "byte %lld on differs from the file", got);
        got += (long long)n;
    }
    cr_assert_eq(rc, QV_EWORKER, "the read ended with %d after %lld bytes", rc, got);
    tx_assert_contains(qv_response_read_error(r), "signal 9");
    cr_assert_geq(got, seen);
    cr_assert_lt(got, 64LL << 20);
    fclose(want);
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
    unlink(path);
}

/* The worker writes output_fd itself (the descriptor travels with the
 * request): killed mid-body, its future fails with QV_EWORKER, what it
 * wrote stays written, and its copy of the descriptor goes with it. */
Test(procs, a_worker_killed_mid_body_leaves_what_it_wrote_to_output_fd, .timeout = 120)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/quiver-test-pid-%d", (int)getpid());
    unlink(path);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    char url[512];
    snprintf(url, sizeof url, "%s/big", tx_env("QV_NGINX_URL", "nginx"));
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, url, .output_fd = p[1], .on_request = pid_file_request_hook,
                        .on_request_arg = path),
                 QV_OK);
    /* Nobody reads the pipe yet: the worker waits in its write, mid-body. */
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    cr_assert_eq(poll(&pfd, 1, 10000), 1, "no byte came");
    kill_from_outside(path);
    tx_assert_contains(tx_expect_error(f, QV_EWORKER), "signal 9");
    close(p[1]);
    char want_path[512];
    snprintf(want_path, sizeof want_path, "%s/big", tx_env("QV_NGINX_WWW", "nginx"));
    FILE *want = fopen(want_path, "rb");
    cr_assert_not_null(want);
    long long got = 0;
    for (;;) {
        char a[8192], b[8192];
        cr_assert_eq(poll(&pfd, 1, 5000), 1, "the pipe's write end is still open somewhere");
        ssize_t n = read(p[0], a, sizeof a);
        cr_assert_geq(n, 0);
        if (n == 0) break;
        cr_assert_eq(fread(b, 1, (size_t)n, want), (size_t)n);
        cr_assert_eq(memcmp(a, b, (size_t)n), 0, "byte %lld on differs from the file", got);
        got += n;
    }
    cr_assert_gt(got, 0);
    cr_assert_lt(got, 64LL << 20);
    fclose(want);
    close(p[0]);
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
    unlink(path);
}

Test(procs, hook_timeout_kills_a_stuck_worker, .timeout = 120)
{
    qv_executor *ex = procs_executor(2, 300);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *f;
    double t0 = now_ms();
    cr_assert_eq(qv_get(s, &f, tu("/get"), .hook = sleepy_hook), QV_OK);
    tx_assert_contains(tx_expect_error(f, QV_EWORKER), "hook timeout");
    double el = now_ms() - t0;
    cr_assert_lt(el, 5000.0, "the stuck hook was killed after %.0f ms", el);
    qv_future_release(f);
    tx_get_ok(s, &f, tu("/get"));
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
}

Test(procs, cookies_cross_workers, .timeout = 120)
{
    qv_executor *ex = procs_executor(2, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *set;
    cr_assert_eq(qv_get(s, &set, tu("/cookies/set?crumb=1"), .hook = pid_hook), QV_OK);
    int setter = result_pid(tx_expect_status(set, 200));
    qv_future_release(set);
    tx_expect_cookie(s, "crumb", "1");

    /* Six at once on two workers: both serve some of them. */
    qv_future *fs[6];
    for (int i = 0; i < 6; i++)
        cr_assert_eq(qv_get(s, &fs[i], tu("/cookies"), .hook = pid_hook), QV_OK);
    int elsewhere = 0;
    for (int i = 0; i < 6; i++) {
        qv_response *r = tx_expect_status(fs[i], 200);
        tx_assert_str_eq(tx_jstr(tx_json(r), "cookies/crumb"), "1");
        elsewhere += result_pid(r) != setter;
        qv_future_release(fs[i]);
    }
    cr_assert_gt(elsewhere, 0, "no request ran on another worker than the one that got the cookie");

    /* A cookie the server deletes in one worker is gone for the session. */
    qv_future *del;
    tx_get_ok(s, &del, tu("/cookies/delete?crumb"));
    qv_future_release(del);
    tx_expect_cookie(s, "crumb", NULL);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* The cookies a request sends, as httpbin echoes them: "a=1;b=2" sorted by
 * name ("" for none). */
static void expect_sent(qv_session *s, const char *want)
{
    qv_future *f;
    json_t *c = json_object_get(tx_json(tx_get_ok(s, &f, tu("/cookies"))), "cookies");
    char got[256] = "";
    const char *key;
    json_t *v;
    json_object_foreach(c, key, v)
    {
        size_t n = strlen(got);
        snprintf(got + n, sizeof(got) - n, "%s%s=%s", n ? ";" : "", key, json_string_value(v));
    }
    tx_assert_str_eq(got, want);
    qv_future_release(f);
}

static int cookie_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)r, (void)arg;
    return qv_session_set_cookie(s, "hooked", "yes", "127.0.0.1");
}

/* One worker serves two sessions in turn: each request gets its own
 * session's jar, however the worker's jar was left by the one before, and
 * every change (server, caller, hook) reaches the next request. */
Test(procs, sessions_alternate_on_one_worker, .timeout = 120)
{
    qv_executor *ex = procs_executor(1, 0);
    qv_session *a = TX_SESSION(.executor = ex), *b = TX_SESSION(.executor = ex);
    qv_future *f;
    tx_get_ok(a, &f, tu("/cookies/set?a=1"));
    qv_future_release(f);
    cr_assert_eq(qv_session_set_cookie(b, "b", "2", "127.0.0.1"), QV_OK);
    for (int i = 0; i < 2; i++) {
        expect_sent(a, "a=1");
        expect_sent(a, "a=1"); /* the worker's jar is a's already */
        expect_sent(b, "b=2");
    }
    tx_get_ok(b, &f, tu("/cookies/set?b=3"));
    qv_future_release(f);
    expect_sent(b, "b=3");
    cr_assert_eq(qv_session_set_cookie(b, "c", "4", "127.0.0.1"), QV_OK);
    expect_sent(b, "b=3;c=4");
    cr_assert_eq(qv_get(b, &f, tu("/get"), .hook = cookie_hook), QV_OK);
    tx_expect_status(f, 200);
    qv_future_release(f);
    tx_expect_cookie(b, "hooked", "yes");
    expect_sent(b, "b=3;c=4;hooked=yes");
    tx_get_ok(b, &f, tu("/cookies/delete?b"));
    qv_future_release(f);
    expect_sent(b, "c=4;hooked=yes");
    expect_sent(a, "a=1");
    qv_session_free(a);
    qv_session_free(b);
    qv_executor_free(ex);
}

Test(procs, must_come_before_other_executors, .timeout = 120)
{
    qv_executor *threads, *ex = NULL;
    cr_assert_eq(qv_executor_new(&threads, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                               .kind = QV_THREADS}),
                 QV_OK);
    qv_session *s = TX_SESSION(.executor = threads);
    qv_future *f;
    tx_get_ok(s, &f, tu("/get")); /* the pool now has a thread */
    qv_future_release(f);
    cr_assert_eq(qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                          .kind = QV_PROCESSES}),
                 QV_EINVAL, "forking after other executors started threads must be refused");
    cr_assert_null(ex);
    qv_session_free(s);
    qv_executor_free(threads);
    /* Once their threads are gone, it is safe again. */
    cr_assert_eq(qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                          .kind = QV_PROCESSES}),
                 QV_OK);
    qv_executor_free(ex);
}

/* Lowers RLIMIT_NOFILE to the lowest free descriptor, so that no new one
 * can be made; returns the limit to restore. */
static struct rlimit no_more_descriptors(void)
{
    int lowest = dup(0);
    cr_assert_geq(lowest, 0);
    close(lowest);
    struct rlimit old, low;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)lowest;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    return old;
}

/* The dispatcher's wait does not grow with the workers it watches, nor need
 * a descriptor per worker under RLIMIT_NOFILE: at a limit of no more
 * descriptors at all, the workers the pool has go on serving. */
Test(procs, a_pool_at_the_descriptor_limit_goes_on_serving, .timeout = 120)
{
    qv_executor *ex = procs_executor(2, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *busy[2], *late;
    for (int i = 0; i < 2; i++) cr_assert_eq(qv_get(s, &busy[i], tu("/delay/1")), QV_OK);
    qv_executor_stats st = {0};
    double t0 = now_ms();
    while (qv_executor_stats_get(ex, &st) == QV_OK && st.workers < 2 && now_ms() - t0 < 10000)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    cr_assert_eq(st.workers, 2, "the pool started %d workers for 2 requests", st.workers);
    struct rlimit old = no_more_descriptors();
    cr_assert_eq(qv_get(s, &late, tu("/get")), QV_OK); /* waits for one of the two */
    qv_response *r[3] = {NULL};
    int rc[3];
    for (int i = 0; i < 2; i++) rc[i] = qv_future_result(busy[i], &r[i], 10000);
    rc[2] = qv_future_result(late, &r[2], 10000);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(rc[i], QV_OK, "request %d: %s", i, qv_errname(rc[i]));
        cr_assert_eq(qv_response_status(r[i]), 200);
    }
    for (int i = 0; i < 2; i++) qv_future_release(busy[i]);
    qv_future_release(late);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* At the process's descriptor limit a new worker's socket cannot be
 * received: the request fails at once instead of waiting for a worker that
 * can never be reached, and the pool serves again once there is room. */
Test(procs, a_worker_whose_socket_cannot_come_fails_what_waits, .timeout = 120)
{
    qv_executor *ex = procs_executor(2, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    struct rlimit old = no_more_descriptors();
    qv_future *f;
    double t0 = now_ms();
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK);
    qv_response *r = NULL;
    int rc = qv_future_result(f, &r, 10000);
    double el = now_ms() - t0;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    cr_assert_eq(rc, QV_EWORKER, "got %s after %.0f ms", qv_errname(rc), el);
    tx_assert_contains(qv_future_error(f), "limit of open files");
    cr_assert_lt(el, 5000.0, "the future failed after %.0f ms", el);
    qv_future_release(f);
    qv_future *g;
    cr_assert_eq(qv_get(s, &g, tu("/get")), QV_OK);
    tx_expect_status(g, 200);
    qv_future_release(g);
    qv_session_free(s);
    qv_executor_free(ex);
    int all, zombies;
    descendants(&all, &zombies);
    cr_assert_eq(all, 0, "%d processes left after the pool was freed", all);
}

/* An allocator that, once armed, holds the next allocation the pool's
 * dispatcher makes (the test's process, not the test's thread) until the
 * test lets it go. With no worker reachable, that is the pool writing the
 * message for the oldest future, taken off the queue to fail it. */
static pthread_mutex_t stall_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stall_cv = PTHREAD_COND_INITIALIZER;
static int stall_pid, stall_armed, stall_holding, stall_released;
static pthread_t stall_thread;

static void stall_here(void)
{
    if (getpid() != stall_pid || pthread_equal(pthread_self(), stall_thread)) return;
    pthread_mutex_lock(&stall_mu);
    if (stall_armed) {
        stall_armed = 0;
        stall_holding = 1;
        pthread_cond_broadcast(&stall_cv);
        while (!stall_released) pthread_cond_wait(&stall_cv, &stall_mu);
    }
    pthread_mutex_unlock(&stall_mu);
}

static void *stall_malloc(size_t n)
{
    stall_here();
    return malloc(n);
}

static void *stall_calloc(size_t n, size_t k)
{
    stall_here();
    return calloc(n, k);
}

static void *stall_realloc(void *p, size_t n)
{
    stall_here();
    return realloc(p, n);
}

static void stall_allocator(void)
{
    static const qv_allocator a = {stall_malloc, stall_calloc, stall_realloc, free};
    note_test_pid();
    stall_pid = (int)getpid();
    stall_thread = pthread_self();
    cr_assert_eq(qv_set_allocator(&a), QV_OK);
}

/* Lets the held allocation go once the test's cancel of `arg` waits for the
 * failure (marked so under the pool's lock), or after 10 s: a cancel that
 * does not wait has returned by then, and the test sees the future pending. */
static void *release_stall(void *arg)
{
    const qv_future *f = arg;
    for (int ms = 0; ms < 10000; ms++) {
        if (__atomic_load_n(&f->popped, __ATOMIC_ACQUIRE) == QV_POPPED_CANCEL_WAITS) break;
        nanosleep(&(struct timespec){.tv_nsec = 1000000L}, NULL);
    }
    pthread_mutex_lock(&stall_mu);
    stall_released = 1;
    pthread_cond_broadcast(&stall_cv);
    pthread_mutex_unlock(&stall_mu);
    return NULL;
}

/* A pool that cannot reach a worker fails what waits, oldest first. A
 * cancel that returns 1 meanwhile leaves its future done and cancelled, as
 * it does a queued one: also the one the pool has taken off the queue and
 * is failing at that moment, which the cancel waits for. */
Test(procs, a_cancel_racing_the_failure_of_the_queue_finds_it_done, .init = stall_allocator,
     .timeout = 120)
{
    enum { N = 12 };
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    struct rlimit old = no_more_descriptors();
    pthread_mutex_lock(&stall_mu);
    stall_armed = 1; /* the pool is idle: it allocates next to fail the first submit */
    pthread_mutex_unlock(&stall_mu);
    qv_future *f[N];
    for (int i = 0; i < N; i++) cr_assert_eq(qv_get(s, &f[i], tu("/get")), QV_OK);
    pthread_mutex_lock(&stall_mu);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    while (!stall_holding && !pthread_cond_timedwait(&stall_cv, &stall_mu, &dl)) {
    }
    int holding = stall_holding;
    pthread_mutex_unlock(&stall_mu);
    cr_assert(holding, "the pool did not fail its queue within 10 s");
    qv_executor_stats st;
    cr_assert_eq(qv_executor_stats_get(ex, &st), QV_OK);
    cr_assert_eq(st.queued, N - 1, "%zu queued: the pool is not failing the oldest", st.queued);
    cr_assert_eq(qv_future_state_get(f[0]), QV_PENDING);
    pthread_t releaser;
    cr_assert_eq(pthread_create(&releaser, NULL, release_stall, f[0]), 0);
    int rc = qv_future_cancel(f[0]);
    qv_future_state st0 = qv_future_state_get(f[0]);
    pthread_join(releaser, NULL);
    cr_assert_eq(rc, 1);
    cr_assert_eq(st0, QV_CANCELLED, "cancel returned 1, the future was in state %d", (int)st0);
    /* The rest, cancelled while the pool fails them: each is done as its
     * cancel returns, cancelled if it said 1, else failed by the pool. */
    for (int i = 1; i < N; i++) {
        rc = qv_future_cancel(f[i]);
        qv_future_state sti = qv_future_state_get(f[i]);
        cr_assert_eq(sti, rc ? QV_CANCELLED : QV_FAILED, "future %d: cancel %d, state %d", i, rc,
                     (int)sti);
        if (!rc) tx_expect_error(f[i], QV_EWORKER);
    }
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    for (int i = 0; i < N; i++) qv_future_release(f[i]);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* A hook that leaks 1 MiB every time it runs (what the limit is for), and
 * names its worker in the result (its pid). */
static int leaky_pid_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)arg;
    char *lost = malloc(1 << 20);
    if (lost) memset(lost, 1, 1 << 20);
    int pid = (int)getpid();
    return qv_response_set_result_bytes(r, &pid, sizeof pid);
}

/* 20 rounds of 2 concurrent requests on 2 workers that answer at most
 * `per_worker` requests each (0: no limit): how many workers answered, and
 * the connections they opened. */
static int workers_seen(long per_worker, size_t *conns)
{
    qv_executor *ex;
    cr_assert_eq(qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                          .kind = QV_PROCESSES,
                                                          .max_workers = 2,
                                                          .max_requests_per_worker = per_worker}),
                 QV_OK);
    qv_session *s = TX_SESSION(.executor = ex);
    int seen[40], nseen = 0;
    for (int round = 0; round < 20; round++) {
        qv_future *f[2];
        for (int i = 0; i < 2; i++)
            cr_assert_eq(qv_get(s, &f[i], tu("/get"), .hook = leaky_pid_hook), QV_OK);
        for (int i = 0; i < 2; i++) {
            int pid = result_pid(tx_expect_status(f[i], 200)), known = 0;
            for (int k = 0; k < nseen; k++) known |= seen[k] == pid;
            if (!known) seen[nseen++] = pid;
            qv_future_release(f[i]);
        }
        qv_executor_stats st;
        cr_assert_eq(qv_executor_stats_get(ex, &st), QV_OK);
        cr_assert_leq(st.workers, 2, "round %d: %d workers for max_workers = 2", round, st.workers);
        /* A worker let go is a zombie for the moment until the zygote
         * reaps it: none may linger. */
        int all, zombies;
        double t0 = now_ms();
        do descendants(&all, &zombies);
        while (zombies && now_ms() - t0 < 2000 &&
               !nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL));
        cr_assert_eq(zombies, 0, "round %d: %d zombie processes after 2 s", round, zombies);
    }
    qv_executor_stats st;
    cr_assert_eq(qv_executor_stats_get(ex, &st), QV_OK);
    *conns = st.connections_opened;
    qv_session_free(s);
    qv_executor_free(ex);
    int all, zombies;
    descendants(&all, &zombies);
    cr_assert_eq(all, 0, "%d processes left after the pool was freed", all);
    return nseen;
}

Test(procs, a_worker_is_replaced_after_its_requests, .timeout = 120)
{
    size_t conns = 0;
    /* 40 requests, at most 5 per worker: 8 workers or more, never more than
     * 2 at once, each with its own connection, and no zombie left. */
    int n = workers_seen(5, &conns);
    cr_expect_geq(n, 8, "40 requests at 5 per worker came from %d workers", n);
    cr_expect_geq(conns, 8, "%zu connections for %d workers", conns, n);
    /* No limit (the default): the same two workers answer everything. */
    n = workers_seen(0, &conns);
    cr_expect_leq(n, 2, "with no limit, %d workers answered", n);
    cr_expect_leq(conns, 2, "with no limit, %zu connections for 2 workers", conns);
    qv_executor *ex = NULL;
    cr_expect_eq(qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                          .kind = QV_PROCESSES,
                                                          .max_requests_per_worker = -1}),
                 QV_EINVAL);
    cr_expect_null(ex);
}

/* An allocator that refuses, in every process but the test's (so in the
 * pool's workers), the one block a request body of ODD_BODY bytes takes in
 * a worker's copy of the request: that worker cannot read the request. */
#define ODD_BODY 77777
static int odd_test_pid;

static int refused(size_t n)
{
    return n > ODD_BODY && n <= ODD_BODY + 48 && getpid() != odd_test_pid;
}

static void *odd_malloc(size_t n)
{
    return refused(n) ? NULL : malloc(n);
}

static void *odd_calloc(size_t n, size_t k)
{
    return (k && n > SIZE_MAX / k) || refused(n * k) ? NULL : calloc(n, k);
}

static void *odd_realloc(void *p, size_t n)
{
    return refused(n) ? NULL : realloc(p, n);
}

static void odd_allocator(void)
{
    static const qv_allocator a = {odd_malloc, odd_calloc, odd_realloc, free};
    odd_test_pid = (int)getpid();
    cr_assert_eq(qv_set_allocator(&a), QV_OK);
}

/* A worker that cannot read a request (here: no memory for its body) fails
 * that future and takes no cookie from the session: its jar, not the one it
 * was sent, must not be merged back (what it lacks would count as deleted),
 * and its next request carries the whole jar. */
Test(procs, a_request_a_worker_cannot_read_costs_no_cookie, .init = odd_allocator, .timeout = 120)
{
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    cr_assert_eq(qv_session_set_cookie(s, "a", "1", NULL), QV_OK);
    qv_future *f;
    tx_get_ok(s, &f, tu("/cookies")); /* the worker's jar is {a} now */
    qv_future_release(f);
    cr_assert_eq(qv_session_set_cookie(s, "b", "2", NULL), QV_OK);
    char *body = malloc(ODD_BODY);
    cr_assert_not_null(body);
    memset(body, 'x', ODD_BODY);
    cr_assert_eq(qv_post(s, &f, tu("/post"), .body = body, .body_len = ODD_BODY), QV_OK);
    tx_assert_contains(tx_expect_error(f, QV_ENOMEM), "could not read the request");
    qv_future_release(f);
    free(body);
    tx_expect_cookie(s, "a", "1");
    tx_expect_cookie(s, "b", "2");
    qv_response *r = tx_get_ok(s, &f, tu("/cookies"));
    json_t *j = tx_json(r);
    tx_assert_str_eq(tx_jstr(j, "cookies/a"), "1");
    tx_assert_str_eq(tx_jstr(j, "cookies/b"), "2");
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* The same with output_fd: the descriptor that came with the request it
 * could not read is not kept (a pipe's reader would see no end until the
 * worker does), and is closed before the answer, as one the transfer used. */
Test(procs, a_request_a_worker_cannot_read_keeps_no_copy_of_its_output_fd, .init = odd_allocator,
     .timeout = 120)
{
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    char *body = malloc(ODD_BODY);
    cr_assert_not_null(body);
    memset(body, 'x', ODD_BODY);
    qv_future *f;
    cr_assert_eq(qv_post(s, &f, tu("/post"), .body = body, .body_len = ODD_BODY, .output_fd = p[1]),
                 QV_OK);
    tx_assert_contains(tx_expect_error(f, QV_ENOMEM), "could not read the request");
    qv_future_release(f);
    free(body);
    close(p[1]);
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    cr_assert_eq(poll(&pfd, 1, 0), 1, "the worker still holds the pipe's write end");
    char c;
    cr_assert_eq(read(p[0], &c, 1), 0);
    close(p[0]);
    /* The worker goes on: its next request is served. */
    tx_get_ok(s, &f, tu("/get"));
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* ---------------------------------------------------------- sending ahead */

/* With every worker busy, the next request waits in a busy worker's
 * mailbox (it shows as running). Until that worker takes it, it is not
 * bound to it; these tests pin what that must not change. */

/* The executor's count of requests waiting for a worker, and in flight. */
static void expect_counts(qv_executor *ex, size_t queued, size_t in_flight)
{
    qv_executor_stats st;
    cr_assert_eq(qv_executor_stats_get(ex, &st), QV_OK);
    cr_assert_eq(st.queued, queued, "queued: %zu, expected %zu", st.queued, queued);
    cr_assert_eq(st.in_flight, in_flight, "in flight: %zu, expected %zu", st.in_flight, in_flight);
}

/* Waits until f has been sent ahead (RUNNING) while `busy` still runs. */
static void expect_sent_ahead(qv_future *f, qv_future *busy)
{
    double t0 = now_ms();
    while (qv_future_state_get(f) != QV_RUNNING && now_ms() - t0 < 5000)
        nanosleep(&(struct timespec){.tv_nsec = 2 * 1000000L}, NULL);
    cr_assert_eq(qv_future_state_get(f), QV_RUNNING, "the request was not sent ahead");
    cr_assert_eq(qv_future_done(busy), 0, "the request before it ended first");
}

Test(procs, a_request_sent_ahead_is_cancelled_at_once, .timeout = 120)
{
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *slow, *ahead;
    cr_assert_eq(qv_get(s, &slow, tu("/delay/2")), QV_OK);
    cr_assert_eq(qv_get(s, &ahead, tu("/get")), QV_OK);
    expect_sent_ahead(ahead, slow);
    expect_counts(ex, 1, 1); /* it waits for a worker */
    cr_assert_eq(qv_future_cancel(ahead), 1);
    /* It has not started: done the moment it is cancelled, as a queued one. */
    cr_assert_eq(qv_future_state_get(ahead), QV_CANCELLED);
    expect_counts(ex, 0, 1);
    tx_expect_error(ahead, QV_ECANCELLED);
    tx_expect_status(slow, 200);
    qv_future_release(slow);
    qv_future_release(ahead);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* A request sent ahead to the worker of a long transfer does not wait for
 * it: the first worker to go idle takes it back from that mailbox. */
Test(procs, a_request_sent_ahead_goes_to_the_first_worker_free, .timeout = 120)
{
    qv_executor *ex = procs_executor(2, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *slow, *quick, *ahead;
    /* The first worker takes the slow one: the request after them goes
     * ahead into its mailbox (the first busy worker's). */
    cr_assert_eq(qv_get(s, &slow, tu("/delay/3")), QV_OK);
    cr_assert_eq(qv_get(s, &quick, tu("/delay/1")), QV_OK);
    tx_wait_started(slow, 10000);
    tx_wait_started(quick, 10000);
    cr_assert_eq(qv_get(s, &ahead, tu("/get")), QV_OK);
    expect_sent_ahead(ahead, slow);
    tx_expect_status(ahead, 200);
    cr_assert_eq(qv_future_done(slow), 0, "the request sent ahead waited for the slow one");
    cr_assert(qv_future_done(quick));
    tx_expect_status(slow, 200);
    qv_future_release(slow);
    qv_future_release(quick);
    qv_future_release(ahead);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* A request too large for one pipe write waits, held, for an idle worker
 * (it shows as running too): cancelled, it is done at once; the one queued
 * after it runs once the worker is free, with its body whole. */
Test(procs, a_held_request_is_cancelled_at_once, .timeout = 120)
{
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    enum { BIG = 3 * PIPE_BUF };
    char *body = malloc(BIG + 1);
    cr_assert_not_null(body);
    memset(body, 'h', BIG);
    body[BIG] = '\0';
    qv_future *slow, *held, *after;
    cr_assert_eq(qv_get(s, &slow, tu("/delay/2")), QV_OK);
    cr_assert_eq(qv_post(s, &held, tu("/post"), .body = body, .body_len = BIG), QV_OK);
    cr_assert_eq(qv_post(s, &after, tu("/post"), .body = body, .body_len = BIG), QV_OK);
    expect_sent_ahead(held, slow);
    cr_assert_eq(qv_future_state_get(after), QV_PENDING, "only one request waits held");
    expect_counts(ex, 2, 1);
    cr_assert_eq(qv_future_cancel(held), 1);
    cr_assert_eq(qv_future_state_get(held), QV_CANCELLED);
    tx_expect_error(held, QV_ECANCELLED);
    tx_assert_str_eq(tx_jstr(tx_json(tx_expect_status(after, 200)), "data"), body);
    cr_assert(qv_future_done(slow), "the request after it ran before it");
    tx_expect_status(slow, 200);
    qv_future_release(slow);
    qv_future_release(held);
    qv_future_release(after);
    free(body);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* A cancel made from the done callback of the request before: that runs on
 * the dispatcher's thread once the worker has answered, having taken the
 * next request from its mailbox, and before the dispatcher knows it did. */
typedef struct cancel_at_done {
    qv_future *target;
    int rc;
    qv_future_state st;
    atomic_int returned; /* the target is done inside the cancel, before this */
} cancel_at_done;

static void cancel_at_done_cb(qv_future *f, void *arg)
{
    (void)f;
    cancel_at_done *c = arg;
    c->rc = qv_future_cancel(c->target);
    c->st = qv_future_state_get(c->target);
    atomic_store(&c->returned, 1);
}

/* Cancelled just as its worker takes it from the mailbox, a request is done
 * at once all the same; its worker is told to abort it, so the request
 * after it does not wait for it, and sends the session's cookies. */
Test(procs, a_request_cancelled_as_its_worker_takes_it_is_aborted, .timeout = 120)
{
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    cr_assert_eq(qv_session_set_cookie(s, "a", "1", NULL), QV_OK);
    qv_future *first, *taken, *after;
    cr_assert_eq(qv_get(s, &first, tu("/delay/1")), QV_OK);
    cr_assert_eq(qv_get(s, &taken, tu("/delay/5")), QV_OK);
    expect_sent_ahead(taken, first);
    cancel_at_done c = {taken, -1, QV_PENDING, 0};
    cr_assert_eq(qv_future_add_done_callback(first, cancel_at_done_cb, &c), QV_OK);
    cr_assert_eq(qv_get(s, &after, tu("/cookies")), QV_OK);
    tx_expect_status(first, 200);
    double t0 = now_ms();
    tx_expect_error(taken, QV_ECANCELLED);
    while (!atomic_load(&c.returned) && now_ms() - t0 < 10000)
        nanosleep(&(struct timespec){.tv_nsec = 1000000L}, NULL);
    cr_assert(atomic_load(&c.returned), "the cancel did not return");
    cr_assert_eq(c.rc, 1);
    cr_assert_eq(c.st, QV_CANCELLED, "it was not done when the cancel returned");
    json_t *sent = tx_json(tx_expect_status(after, 200));
    double el = now_ms() - t0;
    cr_assert_lt(el, 3000.0, "the next request waited %.0f ms for the cancelled one", el);
    tx_assert_str_eq(tx_jstr(sent, "cookies/a"), "1");
    expect_counts(ex, 0, 0);
    qv_future_release(first);
    qv_future_release(taken);
    qv_future_release(after);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* Creates the file named by arg, then keeps the worker 500 ms in its hook. */
static int marking_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)r;
    FILE *fp = fopen(arg, "w");
    if (fp) fclose(fp);
    nanosleep(&(struct timespec){.tv_nsec = 500 * 1000000L}, NULL);
    return 0;
}

static void wait_for_file(const char *path)
{
    double t0 = now_ms();
    while (access(path, F_OK) != 0 && now_ms() - t0 < 10000)
        nanosleep(&(struct timespec){.tv_nsec = 5 * 1000000L}, NULL);
    cr_assert_eq(access(path, F_OK), 0, "the hook did not start");
}

Test(procs, a_cancel_that_crosses_its_answer_spares_the_next_request, .timeout = 120)
{
    char mark[64];
    snprintf(mark, sizeof mark, "/tmp/qv-hook-%d", (int)getpid());
    unlink(mark);
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *first, *next;
    cr_assert_eq(qv_get(s, &first, tu("/get"), .hook = marking_hook, .hook_arg = mark), QV_OK);
    cr_assert_eq(qv_get(s, &next, tu("/get?next")), QV_OK);
    expect_sent_ahead(next, first);
    /* The cancel reaches the worker while its hook runs, after the
     * transfer: by the time the worker reads it, it runs the next request,
     * which it must not abort. */
    wait_for_file(mark);
    cr_assert_eq(qv_future_cancel(first), 1);
    tx_expect_error(first, QV_ECANCELLED);
    tx_expect_status(next, 200);
    unlink(mark);
    qv_future_release(first);
    qv_future_release(next);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* Dies in its hook once the request after it has been sent ahead. */
static int late_segfault_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)arg;
    nanosleep(&(struct timespec){.tv_nsec = 300 * 1000000L}, NULL);
    return segfault_hook(s, r, NULL);
}

Test(procs, a_request_sent_ahead_outlives_the_worker_that_died_before_it, .timeout = 120)
{
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *dying, *next;
    cr_assert_eq(qv_get(s, &dying, tu("/get"), .hook = late_segfault_hook), QV_OK);
    cr_assert_eq(qv_get(s, &next, tu("/get?next")), QV_OK);
    expect_sent_ahead(next, dying);
    tx_assert_contains(tx_expect_error(dying, QV_EWORKER), "signal 11");
    /* It never started: a new worker runs it. */
    tx_expect_status(next, 200);
    qv_future_release(dying);
    qv_future_release(next);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* A 300 ms hook that keeps the only worker busy. */
static int short_nap_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)r, (void)arg;
    nanosleep(&(struct timespec){.tv_nsec = 300 * 1000000L}, NULL);
    return 0;
}

Test(procs, cookies_stay_right_across_requests_sent_ahead, .timeout = 120)
{
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    expect_sent(s, "");

    /* Sent ahead behind the request that sets a cookie, it runs after it
     * on the same worker, and sends that cookie. */
    qv_future *set, *after;
    cr_assert_eq(qv_get(s, &set, tu("/cookies/set?a=1"), .hook = short_nap_hook), QV_OK);
    cr_assert_eq(qv_get(s, &after, tu("/cookies")), QV_OK);
    expect_sent_ahead(after, set);
    tx_expect_status(set, 200);
    tx_assert_str_eq(tx_jstr(tx_json(tx_expect_status(after, 200)), "cookies/a"), "1");
    qv_future_release(set);
    qv_future_release(after);

    /* The caller changes the jar while the worker is busy: the request
     * after that does not go ahead with the worker's older jar. */
    qv_future *busy, *later;
    cr_assert_eq(qv_get(s, &busy, tu("/cookies/set?b=2"), .hook = short_nap_hook), QV_OK);
    tx_wait_started(busy, 5000);
    cr_assert_eq(qv_session_set_cookie(s, "c", "3", NULL), QV_OK);
    cr_assert_eq(qv_get(s, &later, tu("/cookies")), QV_OK);
    tx_expect_status(busy, 200);
    json_t *sent = tx_json(tx_expect_status(later, 200));
    tx_assert_str_eq(tx_jstr(sent, "cookies/a"), "1");
    tx_assert_str_eq(tx_jstr(sent, "cookies/b"), "2");
    tx_assert_str_eq(tx_jstr(sent, "cookies/c"), "3");
    qv_future_release(busy);
    qv_future_release(later);
    expect_sent(s, "a=1;b=2;c=3");
    qv_session_free(s);
    qv_executor_free(ex);
}

/* Many short requests on few workers, in a sliding window of twice as many
 * (as a program that waits for the oldest and submits the next): mailboxes
 * are filled, taken by workers, taken back for one that fell idle, and a
 * request handed on the socket crosses one in the mailbox. Every answer must
 * reach its own future; nginx answers fast enough to make those races common.
 *
 * N requests, or as many as a loaded machine sends in SUBMIT_MS: each is a
 * round trip through the dispatcher, a worker process and back, and under
 * ASan at load 26-28 40,000 took 91-96 s (answers coming steadily, 2,000
 * every 2-8 s), near the test's timeout. A hang is still caught, by each
 * answer's own TX_RESULT_TIMEOUT_MS wait, which names the request. */
Test(procs, every_answer_reaches_its_own_future_while_sending_ahead, .timeout = 120)
{
    enum { N = 40000, WORKERS = 8, WINDOW = 2 * WORKERS, SUBMIT_MS = 60000 };
    qv_executor *ex = procs_executor(WORKERS, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    const char *base = tx_env("QV_NGINX_URL", "nginx over HTTP/1.1");
    qv_future *fs[WINDOW];
    double t0 = now_ms();
    int n = N;
    for (int i = 0; i < n + WINDOW; i++) {
        if (i >= WINDOW) {
            char want[16];
            snprintf(want, sizeof want, "i=%d", i - WINDOW);
            qv_future *f = fs[i % WINDOW];
            tx_assert_str_eq(qv_response_text(tx_expect_status(f, 200)), want);
            qv_future_release(f);
        }
        if (i < n && now_ms() - t0 > SUBMIT_MS) n = i; /* the window drains from here */
        if (i >= n) continue;
        char url[512];
        snprintf(url, sizeof url, "%s/echo?i=%d", base, i);
        cr_assert_eq(qv_get(s, &fs[i % WINDOW], url), QV_OK);
    }
    qv_session_free(s);
    qv_executor_free(ex);
}

/* Bodies of requests one worker serves one after the other (the second
 * sent ahead, into its mailbox, while the first runs) each reach their own
 * future, every byte, even when the first one's on_data is slow and the
 * worker is on to the second before the pool has taken in the first. */
typedef struct counted_data {
    long long bytes;
    int slow_us;
} counted_data;

static int count_data(qv_future *f, const void *chunk, size_t len, void *arg)
{
    (void)f, (void)chunk;
    counted_data *c = arg;
    c->bytes += (long long)len;
    if (c->slow_us) usleep((useconds_t)c->slow_us);
    return 0;
}

static long long read_all(qv_future *f)
{
    qv_response *r = tx_expect_status(f, 200);
    long long got = 0;
    for (;;) {
        char buf[16384];
        size_t n = 0;
        cr_assert_eq(qv_response_read(r, buf, sizeof buf, &n, TX_RESULT_TIMEOUT_MS), QV_OK);
        if (n == 0) return got;
        got += (long long)n;
    }
}

Test(procs, an_on_data_body_over_the_ring_after_a_stream_on_the_same_worker_arrives, .timeout = 120)
{
    /* While a stream's reader has the ring, the worker's wake-ups go to the
     * reader; once the ring is back, the next body (more than the ring
     * holds, and no other frame) must wake the pool again. */
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    char url[512];
    snprintf(url, sizeof url, "%s/big", tx_env("QV_NGINX_URL", "nginx"));
    const char *range = "bytes=0-2097151"; /* two rings' worth */
    for (int round = 0; round < 2; round++) {
        qv_future *fa, *fb;
        cr_assert_eq(qv_get(s, &fa, url, .stream = 1), QV_OK);
        cr_assert_gt(read_all(fa), 1 << 20, "round %d: the reader's body", round);
        counted_data b = {0, 0};
        cr_assert_eq(qv_get(s, &fb, url, .on_data = count_data, .on_data_arg = &b, .range = range),
                     QV_OK);
        int rc = qv_future_result(fb, NULL, 20000);
        cr_assert_eq(rc, QV_OK, "round %d: the on_data body after a stream: %s, %lld bytes", round,
                     qv_errname(rc), b.bytes);
        cr_assert_eq(b.bytes, 2 << 20, "round %d: on_data got %lld bytes", round, b.bytes);
        qv_future_release(fa);
        qv_future_release(fb);
    }
    qv_session_free(s);
    qv_executor_free(ex);
}

Test(procs, bodies_one_worker_serves_in_a_row_each_reach_their_own_future, .timeout = 120)
{
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    char url[512];
    snprintf(url, sizeof url, "%s/64k", tx_env("QV_NGINX_URL", "nginx"));
    qv_future *fa, *fb;
    tx_get_ok(s, &fa, url); /* the worker is up */
    qv_future_release(fa);
    for (int round = 0; round < 6; round++) {
        int stream = round % 2;
        counted_data a = {0, 5000}, b = {0, 0};
        cr_assert_eq(qv_get(s, &fa, url, .on_data = count_data, .on_data_arg = &a), QV_OK);
        if (stream)
            cr_assert_eq(qv_get(s, &fb, url, .stream = 1), QV_OK);
        else
            cr_assert_eq(qv_get(s, &fb, url, .on_data = count_data, .on_data_arg = &b), QV_OK);
        tx_expect_status(fa, 200);
        b.bytes = stream ? read_all(fb) : (tx_expect_status(fb, 200), b.bytes);
        cr_assert_eq(a.bytes, 64 << 10, "round %d: the first on_data got %lld bytes", round,
                     a.bytes);
        cr_assert_eq(b.bytes, 64 << 10, "round %d: the second %s got %lld bytes", round,
                     stream ? "reader" : "on_data", b.bytes);
        qv_future_release(fa);
        qv_future_release(fb);
    }
    qv_session_free(s);
    qv_executor_free(ex);
}

static const char *nginx_big(void)
{
    static _Thread_local char url[512];
    snprintf(url, sizeof url, "%s/big", tx_env("QV_NGINX_URL", "nginx"));
    return url;
}

/* A stream nobody reads: its worker fills the ring (no more, however long
 * it is left) and sleeps on the ring's futex word for room. Let go, the
 * stream's ring comes back and the worker is woken, stops, and serves the
 * next request on this one-worker pool. */
Test(procs, a_worker_asleep_on_a_full_ring_stops_when_its_stream_is_let_go, .timeout = 120)
{
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    for (int round = 0; round < 3; round++) {
        qv_future *f, *g;
        cr_assert_eq(qv_get(s, &f, nginx_big(), .stream = 1), QV_OK);
        qv_response *r = tx_expect_status(f, 200);
        long long seen = 0;
        for (int i = 0; i < 1000 && seen < (long long)QV_RING_CAP; i++) {
            nanosleep(&(struct timespec){.tv_nsec = 10 * 1000000L}, NULL);
            seen = qv_response_body_bytes(r);
            cr_assert_leq(seen, (long long)QV_RING_CAP, "round %d: %lld bytes unread", round, seen);
        }
        cr_assert_eq(seen, (long long)QV_RING_CAP, "round %d: the ring never filled", round);
        qv_future_release(f);
        tx_get_ok(s, &g, tu("/get"));
        qv_future_release(g);
    }
    qv_session_free(s);
    qv_executor_free(ex);
}

/* A reader that takes a little at a time, unevenly: the worker, asleep
 * for room whenever the ring is full, is woken once half of it is free,
 * never holds more than the ring's worth unread, and every byte arrives in
 * order. */
Test(procs, a_slow_reader_holds_a_streams_worth_at_most_and_gets_every_byte, .timeout = 120)
{
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    char want_path[512];
    snprintf(want_path, sizeof want_path, "%s/big", tx_env("QV_NGINX_WWW", "nginx"));
    FILE *want = fopen(want_path, "rb");
    cr_assert_not_null(want);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, nginx_big(), .stream = 1), QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    long long got = 0;
    for (int i = 0;; i++) {
        char a[65536], b[65536];
        /* Slow and uneven for the first 12 MiB (a dozen rings' worth), then fast. */
        int slow = got < (12LL << 20);
        size_t cap = slow ? 1000 + (size_t)(i * 7919) % 15000 : sizeof a, n;
        int rc = qv_response_read(r, a, cap, &n, TX_RESULT_TIMEOUT_MS);
        cr_assert_eq(rc, QV_OK, "%s after %lld bytes", qv_errname(rc), got);
        if (n == 0) break;
        cr_assert_eq(fread(b, 1, n, want), n);
        cr_assert_eq(memcmp(a, b, n), 0, "byte %lld on differs from the file", got);
        got += (long long)n;
        long long unread = qv_response_body_bytes(r) - got;
        cr_assert_leq(unread, (long long)QV_RING_CAP, "%lld bytes unread", unread);
        if (slow && i % 8 == 0) nanosleep(&(struct timespec){.tv_nsec = 1000000L}, NULL);
    }
    cr_assert_eq(fgetc(want), EOF, "the body ended after %lld bytes", got);
    fclose(want);
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* on_data slower than the worker (it runs on the pool's thread): the ring
 * fills and the worker sleeps for room; a cancel then reaches it (woken
 * for room or kicked, it reads the frames that came), the future ends
 * cancelled long before the body could have come, and the worker serves
 * the next one. */
typedef struct slow_data {
    atomic_int calls;
} slow_data;

static int slow_on_data(qv_future *f, const void *chunk, size_t len, void *arg)
{
    (void)f, (void)chunk, (void)len;
    atomic_fetch_add(&((slow_data *)arg)->calls, 1);
    nanosleep(&(struct timespec){.tv_nsec = 5 * 1000000L}, NULL);
    return 0;
}

Test(procs, a_cancel_reaches_an_on_data_worker_asleep_on_a_full_ring, .timeout = 120)
{
    qv_executor *ex = procs_executor(1, 0);
    qv_session *s = TX_SESSION(.executor = ex);
    for (int round = 0; round < 3; round++) {
        slow_data d = {0};
        qv_future *f, *g;
        cr_assert_eq(qv_get(s, &f, nginx_big(), .on_data = slow_on_data, .on_data_arg = &d), QV_OK);
        /* A ring's worth handed on: the worker has filled it meanwhile. */
        for (int i = 0; i < 2000 && atomic_load(&d.calls) < 8; i++)
            nanosleep(&(struct timespec){.tv_nsec = 5 * 1000000L}, NULL);
        cr_assert_geq(atomic_load(&d.calls), 8, "round %d: on_data was not called", round);
        double t0 = now_ms();
        qv_future_cancel(f);
        cr_assert_eq(qv_future_result(f, NULL, TX_RESULT_TIMEOUT_MS), QV_ECANCELLED, "round %d",
                     round);
        /* 64 MiB at 5 ms a call of at most 128 KiB: 2.5 s at least. */
        cr_assert_lt(now_ms() - t0, 2000, "round %d: the cancel took %.0f ms", round,
                     now_ms() - t0);
        cr_assert_lt(atomic_load(&d.calls), 512, "round %d", round);
        qv_future_release(f);
        tx_get_ok(s, &g, tu("/get"));
        qv_future_release(g);
    }
    qv_session_free(s);
    qv_executor_free(ex);
}
