/* Every step of an executor's constructor fails in turn: each allocation
 * (through qv_set_allocator: quiver's and libcurl's), each lock and
 * condition variable, each descriptor (eventfd, timerfd, pipe, socket pair,
 * epoll), the fork of a process pool's zygote and each thread started. The
 * constructor is first run once to count its steps, M; then for every N in
 * 1..M it runs with step N failing and must
 *
 *  - return QV_ENOMEM and no executor (or, for a step it can do without,
 *    QV_OK and an executor that is then freed), with qv_last_error saying
 *    what ran out: the failed call's strerror, or "out of memory" for an
 *    allocation or ENOMEM (QV_ENOMEM stands for descriptors, threads and processes
 *    run out too);
 *  - leave nothing behind: as many descriptors, threads and live
 *    allocations as before, and no child process (the zygote reaped);
 *  - not crash, and not hang (the suite's time limit).
 *
 * Under the ASan pass LeakSanitizer checks the process at exit too. Each
 * registration (threads, loop, processes) builds its own kind. Only this
 * thread's steps are counted and failed (not those of the threads the
 * constructor starts, which run on their own time), and only in this
 * process (not in a zygote forked meanwhile). */
#include "support.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(construct, .timeout = 240);

/* The steps that can fail, by what they make. */
enum { ALLOC, SYNC, FD, FORK, THREAD, NSTEPS };
static const char *const step_names[NSTEPS] = {"allocation", "lock or condition variable",
                                               "descriptor", "fork", "thread"};

static _Thread_local int counting; /* 1 on this thread while the constructor runs */
static pid_t counted_pid;          /* and in this process only */
static long steps, fail_at;        /* steps counted; the one to fail (1-based), 0: none */
static int failed_step = -1;       /* what the failed step made (ALLOC...) */
static int failed_errno;           /* the error it failed with (0: an allocation's NULL) */
static long seen[NSTEPS];          /* steps of each kind counted in the first run */
static atomic_long live;           /* allocations not freed, on every thread */

/* Counts a step; 1 if it is the one to fail. */
static int fail_now(int what)
{
    if (!counting || getpid() != counted_pid) return 0;
    seen[what] += fail_at == 0;
    if (++steps != fail_at) return 0;
    failed_step = what;
    failed_errno = what == ALLOC ? 0 : what == SYNC ? ENOMEM : what == FD ? EMFILE : EAGAIN;
    return 1;
}

/* The function a wrapper stands for: a sanitizer's interceptor of it if
 * there is one (its runtime may be linked into this program, where the
 * next definition of name would skip it), else the next definition. */
static void *real(const char *name)
{
    char intercepted[64];
    snprintf(intercepted, sizeof(intercepted), "__interceptor_%s", name);
    void *p = dlsym(RTLD_DEFAULT, intercepted);
    if (!p) p = dlsym(RTLD_NEXT, name);
    cr_assert_not_null(p, "no definition of %s after this program's", name);
    return p;
}

#define REAL(type, name) ((type)real(#name))

static void *count_malloc(size_t n)
{
    void *p = fail_now(ALLOC) ? NULL : malloc(n);
    if (p) atomic_fetch_add(&live, 1);
    return p;
}

static void *count_calloc(size_t n, size_t size)
{
    void *p = fail_now(ALLOC) ? NULL : calloc(n, size);
    if (p) atomic_fetch_add(&live, 1);
    return p;
}

static void *count_realloc(void *old, size_t n)
{
    void *p = fail_now(ALLOC) ? NULL : realloc(old, n);
    if (p && !old) atomic_fetch_add(&live, 1);
    return p;
}

static void count_free(void *p)
{
    if (p) atomic_fetch_sub(&live, 1);
    free(p);
}

static const qv_allocator counted = {count_malloc, count_calloc, count_realloc, count_free};

/* The wrappers: this program's definitions come first for the library
 * (linked in statically) and for libcurl. */

int pthread_mutex_init(pthread_mutex_t *mu, const pthread_mutexattr_t *attr)
{
    if (fail_now(SYNC)) return failed_errno;
    return REAL(int (*)(pthread_mutex_t *, const pthread_mutexattr_t *), pthread_mutex_init)(mu,
                                                                                             attr);
}

int pthread_cond_init(pthread_cond_t *cv, const pthread_condattr_t *attr)
{
    if (fail_now(SYNC)) return failed_errno;
    return REAL(int (*)(pthread_cond_t *, const pthread_condattr_t *), pthread_cond_init)(cv, attr);
}

int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    if (fail_now(THREAD)) return failed_errno;
    return REAL(int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *),
                pthread_create)(t, attr, fn, arg);
}

/* A descriptor that cannot be made: the process is out of them. */
static int no_fd(void)
{
    errno = failed_errno;
    return -1;
}

int eventfd(unsigned int initval, int flags)
{
    return fail_now(FD) ? no_fd() : REAL(int (*)(unsigned int, int), eventfd)(initval, flags);
}

int timerfd_create(clockid_t clockid, int flags)
{
    return fail_now(FD) ? no_fd() : REAL(int (*)(clockid_t, int), timerfd_create)(clockid, flags);
}

int pipe2(int fds[2], int flags)
{
    return fail_now(FD) ? no_fd() : REAL(int (*)(int[2], int), pipe2)(fds, flags);
}

/* Socket pairs to fail on any thread of this process, whatever counts
 * (worker_multi_without_wakeup). */
static atomic_int fail_pairs;

int socketpair(int domain, int type, int protocol, int sv[2])
{
    int any = getpid() == counted_pid && atomic_load(&fail_pairs) > 0 &&
              atomic_fetch_sub(&fail_pairs, 1) > 0;
    if (any) {
        errno = EMFILE;
        return -1;
    }
    return fail_now(FD)
               ? no_fd()
               : REAL(int (*)(int, int, int, int[2]), socketpair)(domain, type, protocol, sv);
}

int epoll_create1(int flags)
{
    return fail_now(FD) ? no_fd() : REAL(int (*)(int), epoll_create1)(flags);
}

int epoll_ctl(int ep, int op, int fd, struct epoll_event *ev)
{
    if (fail_now(FD)) {
        errno = failed_errno = ENOMEM;
        return -1;
    }
    return REAL(int (*)(int, int, int, struct epoll_event *), epoll_ctl)(ep, op, fd, ev);
}

pid_t fork(void)
{
    if (fail_now(FORK)) {
        errno = failed_errno;
        return -1;
    }
    return REAL(pid_t(*)(void), fork)();
}

/* Entries of a /proc/self directory (its own descriptor left out). */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "opendir %s: %s", dir, strerror(errno));
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d)) n++;
    closedir(d);
    return n;
}

/* What a constructor may leave behind. */
typedef struct footprint {
    int fds, threads;
    long live;
} footprint;

static footprint now_footprint(void)
{
    return (footprint){entries("/proc/self/fd"), entries("/proc/self/task"), atomic_load(&live)};
}

/* The footprint once back to `want`: a joined thread's entry in
 * /proc/self/task may outlast its join a moment. */
static footprint settled(footprint want)
{
    footprint f = now_footprint();
    for (int i = 0; i < 1000 && f.threads > want.threads; i++) {
        usleep(1000);
        f = now_footprint();
    }
    return f;
}

/* Runs the constructor with step n failing (0: none). */
static int construct(long n, qv_executor **ex)
{
    steps = 0;
    fail_at = n;
    failed_step = -1;
    *ex = NULL;
    counting = 1;
    int rc = qv_executor_new(
        ex,
        &(qv_executor_opts){.size = sizeof(qv_executor_opts), .kind = tx_kind(), .max_workers = 2});
    counting = 0;
    return rc;
}

/* After step n failed (what): qv_last_error says what could not be made,
 * and why as the failed call said it (the loop's wake-up, which libcurl
 * makes and tells nothing of: "out of descriptors"). */
static void check_message(long n, const char *what)
{
    const char *msg = qv_last_error();
    const char *why =
        failed_errno && failed_errno != ENOMEM ? strerror(failed_errno) : "out of memory";
    cr_assert(strncmp(msg, "cannot make ", 12) == 0, "step %ld (%s) failed: message \"%s\"", n,
              what, msg);
    cr_assert(strstr(msg, why) || (failed_step == FD && strstr(msg, "out of descriptors")),
              "step %ld (%s) failed with \"%s\": message \"%s\"", n, what, why, msg);
}

Test(construct, every_step_fails_once)
{
    counted_pid = getpid();
    cr_assert_eq(qv_set_allocator(&counted), QV_OK);
    /* Once, not counted: the library's own set-up (libcurl's) stays. */
    qv_executor *ex = NULL;
    cr_assert_eq(qv_executor_new(
                     &ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts), .kind = tx_kind()}),
                 QV_OK);
    qv_executor_free(ex);

    footprint before = settled(now_footprint());
    cr_assert_eq(construct(0, &ex), QV_OK, "the constructor without failures");
    long m = steps;
    qv_executor_free(ex);
    footprint after = settled(before);
    cr_assert_eq(after.live, before.live, "a whole executor's free leaves %ld allocations",
                 after.live - before.live);
    /* The wrappers saw every kind of step the constructor takes. */
    cr_assert_gt(seen[ALLOC], 0);
    cr_assert_gt(seen[SYNC], 0);
    cr_assert_gt(seen[FD], 0);
    if (tx_kind() == QV_PROCESSES) cr_assert_gt(seen[FORK], 0);
    if (tx_kind() != QV_THREADS) cr_assert_gt(seen[THREAD], 0);

    int survived = 0;
    for (long n = 1; n <= m; n++) {
        before = settled(now_footprint());
        int rc = construct(n, &ex);
        const char *what = failed_step >= 0 ? step_names[failed_step] : "none";
        cr_assert_geq(failed_step, 0, "step %ld of %ld was not reached", n, m);
        if (rc == QV_OK) {
            /* A loop starts with fewer delivery threads if it must: only a
             * thread's failure may go unreported. */
            cr_assert(tx_kind() == QV_LOOP && failed_step == THREAD && ex,
                      "step %ld (%s) failed, yet the constructor returned QV_OK", n, what);
            survived++;
            qv_executor_free(ex);
        } else {
            cr_assert_eq(rc, QV_ENOMEM, "step %ld (%s) failed: %s, expected QV_ENOMEM", n, what,
                         qv_errname(rc));
            cr_assert_null(ex, "step %ld (%s) failed, yet an executor came back", n, what);
            check_message(n, what);
        }
        footprint left = settled(before);
        cr_assert_eq(left.fds, before.fds, "step %ld (%s) failing left %d descriptors open", n,
                     what, left.fds - before.fds);
        cr_assert_eq(left.threads, before.threads, "step %ld (%s) failing left %d threads", n, what,
                     left.threads - before.threads);
        cr_assert_eq(left.live, before.live, "step %ld (%s) failing left %ld allocations", n, what,
                     left.live - before.live);
        cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "step %ld (%s) failing left a child", n, what);
    }
    printf("construct (%s): %ld steps (%ld allocations, %ld locks and condition variables, %ld "
           "descriptors, %ld forks, %ld threads), each failed once; %d survived\n",
           tx_kind_name(), m, seen[ALLOC], seen[SYNC], seen[FD], seen[FORK], seen[THREAD],
           survived);
    fflush(stdout);
}

/* A QV_THREADS worker makes its multi handle at its first request, on its
 * own thread. libcurl 7.88 returns one without its wake-up socket pair when
 * the pair cannot be made (no descriptor left), on which a cancel would wait
 * for the poll's timeout: that request fails with QV_ENOMEM and a message
 * saying what could not be made, and the next one makes the handle again. */
TX_TEST_KINDS(construct, worker_multi_without_wakeup, threads);
Test(construct, worker_multi_without_wakeup)
{
    counted_pid = getpid();
    qv_session *s = TX_SESSION(.max_workers = 1);
    atomic_store(&fail_pairs, 1); /* the worker's curl_multi_init, its first */
    qv_future *f = NULL;
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK);
    qv_response *r = NULL;
    int rc = qv_future_result(f, &r, TX_RESULT_TIMEOUT_MS);
    cr_assert_eq(atomic_load(&fail_pairs), 0, "no socket pair was made for the request");
    cr_assert_eq(rc, QV_ENOMEM, "a worker without a working wake-up ran the request: %s (%s)",
                 qv_errname(rc), qv_future_error(f) ? qv_future_error(f) : "no message");
    cr_assert_not_null(strstr(qv_future_error(f), "cannot make a worker's multi handle's wake-up "
                                                  "socket pair (in libcurl): out of descriptors"),
                       "message: %s", qv_future_error(f));
    qv_future_release(f);
    cr_assert_eq(qv_get(s, &f, tu("/get")), QV_OK);
    rc = qv_future_result(f, &r, TX_RESULT_TIMEOUT_MS);
    cr_assert_eq(rc, QV_OK, "the next request: %s (%s)", qv_errname(rc),
                 qv_future_error(f) ? qv_future_error(f) : "no message");
    cr_assert_eq(qv_response_status(r), 200);
    qv_future_release(f);
    qv_session_free(s);
}

/* Each field out of its range is refused with QV_EINVAL, and qv_last_error
 * names that field (before, only max_uncollected's refusal said which). */
Test(construct, a_field_out_of_range_is_named)
{
    static const struct {
        const char *name;
        qv_executor_opts o;
    } wrong[] = {
        {"max_workers", {.max_workers = -1}},
        {"max_connections", {.max_connections = -2}},
        {"max_host_connections", {.max_host_connections = -1}},
        {"max_total_connections", {.max_total_connections = -1}},
        {"max_requests_per_worker", {.max_requests_per_worker = -1}},
        {"hook_timeout_ms", {.hook_timeout_ms = -5}},
        {"per_host.max_concurrent", {.per_host.max_concurrent = -1}},
        {"per_host.burst", {.per_host.burst = -1}},
        {"per_host.rate", {.per_host.rate = -0.5}},
        {"per_host.rate", {.per_host.rate = 1.0 / 0.0}},
        {"max_uncollected", {.max_uncollected = -3}},
        {"kind", {.kind = (qv_executor_kind)42}},
    };
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        qv_executor_opts o = wrong[i].o;
        o.size = sizeof(o);
        if (strcmp(wrong[i].name, "kind")) o.kind = tx_kind();
        qv_executor *ex = NULL;
        int rc = qv_executor_new(&ex, &o);
        cr_assert_eq(rc, QV_EINVAL, "%s: %s", wrong[i].name, qv_errname(rc));
        cr_assert_null(ex);
        char want[64];
        snprintf(want, sizeof want, "%s is ", wrong[i].name);
        cr_assert_not_null(strstr(qv_last_error(), want), "%s: message \"%s\"", wrong[i].name,
                           qv_last_error());
    }
}

/* max_uncollected takes a bound, 0 (the default) or -1 (no bound): any
 * other negative is refused with QV_EINVAL, and qv_last_error says why
 * (before, every negative meant no bound). */
Test(construct, max_uncollected_below_minus_one)
{
    const long wrong[] = {-2, LONG_MIN};
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        qv_executor *ex = NULL;
        int rc = qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                          .kind = tx_kind(),
                                                          .max_uncollected = wrong[i]});
        cr_assert_eq(rc, QV_EINVAL, "max_uncollected %ld: %s", wrong[i], qv_errname(rc));
        cr_assert_null(ex);
        cr_assert_not_null(strstr(qv_last_error(), "max_uncollected"), "message: \"%s\"",
                           qv_last_error());
    }
    qv_executor *ex = NULL;
    cr_assert_eq(qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                          .kind = tx_kind(),
                                                          .max_uncollected = -1}),
                 QV_OK, "max_uncollected -1: %s", qv_last_error());
    qv_executor_free(ex);
}
