/* Several process pools in one program. A pool's dispatcher works under the
 * read side of one process-wide lock, and making a pool forks under its
 * write side; a done callback, which runs on a dispatcher, may still block
 * on another pool (wait for its future, free it) while a thread makes a
 * pool, or make one itself. These tests make their own QV_PROCESSES
 * executors, so the file is registered for that kind alone. */
#include "support.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

TestSuite(pools, .timeout = 60);
TX_KIND_ONLY(processes);

/* A pool of one worker: its qv_executor_new result. */
static int new_pool(qv_executor **out)
{
    return qv_executor_new(out, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                    .kind = QV_PROCESSES,
                                                    .max_workers = 1});
}

static qv_executor *pool(void)
{
    qv_executor *ex;
    cr_assert_eq(new_pool(&ex), QV_OK);
    return ex;
}

/* A thread making a pool, started from a done callback. */
typedef struct maker {
    pthread_t thread;
    atomic_int tid;
    atomic_int done;
    int rc;
    qv_executor *made;
} maker;

static void *make_pool(void *arg)
{
    maker *m = arg;
    atomic_store(&m->tid, (int)syscall(SYS_gettid));
    m->rc = new_pool(&m->made);
    atomic_store(&m->done, 1);
    return NULL;
}

/* No allocation (it runs on a dispatcher while the maker may fork: under
 * clang-14's ASan a fork can copy an allocator lock another thread holds). */
static int sleeping(int tid)
{
    char path[64], stat[256];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, stat, sizeof(stat) - 1);
    close(fd);
    if (n <= 0) return 0;
    stat[n] = '\0';
    const char *st = strrchr(stat, ')'); /* the state follows the name */
    return st && st[1] == ' ' && st[2] == 'S';
}

/* Starts the maker and returns once it is done or asleep (before its fork it
 * only sleeps waiting for the lock's write side), at most 5 s later. */
static void start_maker(maker *m)
{
    cr_assert_eq(pthread_create(&m->thread, NULL, make_pool, m), 0);
    double t0 = now_ms();
    while (!atomic_load(&m->done) && now_ms() - t0 < 5000 &&
           !(atomic_load(&m->tid) && sleeping(atomic_load(&m->tid))))
        nanosleep(&(struct timespec){.tv_nsec = 1000000L}, NULL);
}

/* ex answers a request, through a session of its own. */
static void expect_serves(qv_executor *ex)
{
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *f;
    tx_get_ok(s, &f, tu("/get"));
    qv_future_release(f);
    qv_session_free(s);
}

/* The maker's pool serves, then goes. */
static void finish_maker(maker *m)
{
    pthread_join(m->thread, NULL);
    cr_assert_eq(m->rc, QV_OK, "making a pool failed: %s", qv_strerror(m->rc));
    expect_serves(m->made);
    qv_executor_free(m->made);
}

/* What a test's done callback does, and what it saw. */
typedef struct at_done at_done;
struct at_done {
    void (*body)(at_done *d); /* run by the callback */
    pthread_t main;
    int on_other_thread;
    maker m;
    qv_future *other;    /* a future of another pool to wait for, or to cancel */
    qv_session *other_s; /* or a session and pool to free */
    qv_executor *other_ex;
    int wait_rc;
    int make_rc;
    qv_executor *made;
    int cancel_rc;
    int inside;     /* 1 while the outer callback cancels */
    int inner_runs; /* runs of the cancelled future's callback within it */
    atomic_int finished;
};

static void block_on_other_pool(at_done *d)
{
    start_maker(&d->m);
    if (d->other) d->wait_rc = qv_future_wait(d->other, 20000);
    if (d->other_ex) {
        qv_session_free(d->other_s);
        qv_executor_free(d->other_ex);
    }
}

static void make_a_pool(at_done *d)
{
    d->make_rc = new_pool(&d->made);
}

/* The cancelled future's callback, run by the cancel: makes a pool. */
static void make_a_pool_within(qv_future *f, void *arg)
{
    (void)f;
    at_done *d = arg;
    d->inner_runs += d->inside;
    make_a_pool(d);
}

static void cancel_other(at_done *d)
{
    d->inside = 1;
    d->cancel_rc = qv_future_cancel(d->other);
    d->inside = 0;
}

static void at_done_cb(qv_future *f, void *arg)
{
    (void)f;
    at_done *d = arg;
    d->on_other_thread = !pthread_equal(pthread_self(), d->main);
    d->body(d);
    atomic_store(&d->finished, 1);
}

/* Submits a request to a pool's own session with a done callback that runs
 * body, and waits for the callback to return: at most 30 s, which a
 * deadlock between the pools would exceed. */
static void run_at_done(qv_session *s, void (*body)(at_done *d), at_done *d)
{
    d->body = body;
    d->main = pthread_self();
    qv_future *f;
    /* Long enough for the callback to be added before the answer. */
    cr_assert_eq(qv_get(s, &f, tu("/delay/1")), QV_OK);
    cr_assert_eq(qv_future_add_done_callback(f, at_done_cb, d), QV_OK);
    tx_expect_status(f, 200);
    double t0 = now_ms();
    while (!atomic_load(&d->finished) && now_ms() - t0 < 30000)
        nanosleep(&(struct timespec){.tv_nsec = 2000000L}, NULL);
    cr_assert(atomic_load(&d->finished), "the done callback did not return: pools deadlocked");
    cr_assert(d->on_other_thread, "the callback ran on the submitting thread, not a dispatcher");
    qv_future_release(f);
}

Test(pools, a_done_callback_may_wait_for_another_pool_while_one_is_made)
{
    qv_executor *a = pool(), *b = pool();
    qv_session *sa = TX_SESSION(.executor = a), *sb = TX_SESSION(.executor = b);
    at_done d = {0};
    /* Still running when the callback waits for it, so b's dispatcher has
     * to take the lock's read side again to deliver it. */
    cr_assert_eq(qv_get(sb, &d.other, tu("/delay/3")), QV_OK);
    run_at_done(sa, block_on_other_pool, &d);
    cr_assert_eq(d.wait_rc, QV_OK);
    tx_expect_status(d.other, 200);
    finish_maker(&d.m);
    qv_future_release(d.other);
    qv_session_free(sa);
    qv_session_free(sb);
    qv_executor_free(a);
    qv_executor_free(b);
}

Test(pools, a_done_callback_may_free_another_pool_while_one_is_made)
{
    qv_executor *a = pool();
    qv_session *sa = TX_SESSION(.executor = a);
    at_done d = {.other_ex = pool()};
    d.other_s = TX_SESSION(.executor = d.other_ex);
    qv_future *f;
    tx_get_ok(d.other_s, &f, tu("/get")); /* it has a worker to stop */
    qv_future_release(f);
    run_at_done(sa, block_on_other_pool, &d);
    finish_maker(&d.m);
    qv_session_free(sa);
    expect_serves(a); /* the pool whose callback did it */
    qv_executor_free(a);
}

Test(pools, a_done_callback_may_make_a_pool)
{
    qv_executor *a = pool();
    qv_session *sa = TX_SESSION(.executor = a);
    at_done d = {0};
    run_at_done(sa, make_a_pool, &d);
    cr_assert_eq(d.make_rc, QV_OK, "making a pool from a done callback failed: %s",
                 qv_strerror(d.make_rc));
    qv_session_free(sa);
    expect_serves(d.made);
    expect_serves(a);
    qv_executor_free(d.made);
    qv_executor_free(a);
}

/* Callbacks nest: one that cancels a waiting future runs that future's
 * callback within itself, which may make a pool all the same. */
Test(pools, a_callback_run_within_a_callback_may_make_a_pool)
{
    qv_executor *a = pool(), *b = pool();
    qv_session *sa = TX_SESSION(.executor = a), *sb = TX_SESSION(.executor = b);
    at_done d = {0};
    qv_future *busy;
    cr_assert_eq(qv_get(sb, &busy, tu("/delay/3")), QV_OK);
    /* Waits for b's one worker (queued, or held for it): a cancel ends it
     * on the cancelling thread. */
    cr_assert_eq(qv_get(sb, &d.other, tu("/get")), QV_OK);
    cr_assert_eq(qv_future_add_done_callback(d.other, make_a_pool_within, &d), QV_OK);
    run_at_done(sa, cancel_other, &d);
    cr_assert_eq(d.cancel_rc, 1);
    tx_expect_error(d.other, QV_ECANCELLED);
    cr_assert_eq(d.inner_runs, 1, "the cancelled future's callback ran %d times within the cancel",
                 d.inner_runs);
    cr_assert_eq(d.make_rc, QV_OK, "making a pool there failed: %s", qv_strerror(d.make_rc));
    expect_serves(d.made);
    tx_expect_status(busy, 200);
    qv_future_release(busy);
    qv_future_release(d.other);
    qv_session_free(sa);
    qv_session_free(sb);
    expect_serves(a);
    qv_executor_free(d.made);
    qv_executor_free(a);
    qv_executor_free(b);
}
