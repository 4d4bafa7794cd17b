/*
 * The stress run's phase of descriptors run out (threads, loop): a body to
 * output_fd, a pipe, while every descriptor of the process is taken as its
 * transfer starts, so that sink.c's non-blocking open of the pipe fails and
 * the caller's descriptor is written itself (QV_DIRECT_SHARED: poll, then
 * at most PIPE_BUF bytes). Its reader reads slowly, and may stop for good;
 * this thread cancels the future at a random moment, while the writer (a
 * worker, the loop's thread, a pump on a delivery thread) waits for room
 * or writes. A cancelled future ends QV_ECANCELLED, one not cancelled gets
 * the whole body, and the executor's free returns.
 */
#define _GNU_SOURCE
#include "nofile.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BODY_BYTES (1LL << 20) /* the range asked for: bytes=0-1048575 */

typedef struct reader {
    int fd;
    long long stop; /* bytes it takes before it stops for good; -1: all */
    atomic_llong got;
    unsigned long long rs;
} reader;

static unsigned next_rand(unsigned long long *rs, unsigned n)
{
    *rs = *rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)(*rs >> 33) % n;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void *read_slowly(void *arg)
{
    reader *r = arg;
    static _Thread_local char buf[1 << 16];
    while (r->stop < 0 || atomic_load(&r->got) < r->stop) {
        ssize_t n = read(r->fd, buf, sizeof buf);
        if (n <= 0) break;
        atomic_fetch_add(&r->got, n);
        sleep_us(next_rand(&r->rs, 300));
    }
    return NULL;
}

/* Every free descriptor taken (copies of 0), into fds: how many. */
static int fill(int *fds)
{
    int n = 0, d;
    while ((d = dup(0)) >= 0) fds[n++] = d;
    return n;
}

/* One download as the phase describes: 0 if it ended as it must (*cancels
 * counts it if it was cancelled). */
static int one(qv_session *s, const char *url_small, const char *url_big, int *fds,
               unsigned long long *rs, int *cancels)
{
    int p[2], bad = 0;
    if (pipe(p)) return fprintf(stderr, "nofile: pipe: %s\n", strerror(errno)), 1;
    reader r = {
        .fd = p[0], .stop = next_rand(rs, 2) ? (long long)next_rand(rs, 1 << 19) : -1, .rs = *rs};
    atomic_init(&r.got, 0);
    /* A connection kept from this request: the download needs no new
     * descriptor to start. */
    qv_future *warm, *f;
    int rc = qv_get(s, &warm, url_small);
    if (!rc) {
        rc = qv_future_result(warm, NULL, 30000);
        qv_future_release(warm);
    }
    if (rc) fprintf(stderr, "nofile: warm-up GET: %s\n", qv_errname(rc));
    pthread_t t;
    if (rc || pthread_create(&t, NULL, read_slowly, &r)) {
        close(p[0]);
        close(p[1]);
        return 1;
    }
    int n = fill(fds);
    rc = qv_request(
        s, &f, &(qv_request_opts){.url = url_big, .range = "bytes=0-1048575", .output_fd = p[1]});
    /* Its first bytes are out (written with no descriptor left), or it ended. */
    for (int i = 0; !rc && i < 10000 && !atomic_load(&r.got) && !qv_future_done(f); i++)
        sleep_us(1000);
    for (int i = 0; i < n; i++) close(fds[i]);
    if (rc) {
        fprintf(stderr, "nofile: submit: %s\n", qv_errname(rc));
        bad = 1;
    } else {
        sleep_us(next_rand(rs, 3000));
        /* (A reader that stops leaves too little room for the whole body.) */
        int cancelled = (r.stop >= 0 || !next_rand(rs, 4)) && qv_future_cancel(f);
        *cancels += cancelled;
        qv_response *resp = NULL;
        rc = qv_future_result(f, &resp, 30000);
        if (cancelled ? rc != QV_ECANCELLED
                      : rc != QV_OK || qv_response_body_bytes(resp) != BODY_BYTES) {
            fprintf(stderr, "nofile: a %s body (reader stops at %lld): %s, %lld bytes\n",
                    cancelled ? "cancelled" : "whole", r.stop, qv_errname(rc),
                    resp ? qv_response_body_bytes(resp) : -1);
            bad = 1;
        }
        qv_future_release(f);
    }
    close(p[1]); /* the reader's end of the body */
    pthread_join(t, NULL);
    close(p[0]);
    return bad;
}

int nofile_race(qv_executor_kind kind, const char *url_small, const char *url_big,
                unsigned long long seed, int rounds)
{
    struct rlimit rl;
    qv_executor *ex;
    qv_session *s;
    if (getrlimit(RLIMIT_NOFILE, &rl)) return -1;
    int *fds = malloc(sizeof(int) * rl.rlim_cur);
    if (!fds) return -1;
    if (qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                 .kind = kind,
                                                 .max_workers = 1})) {
        free(fds);
        return -1;
    }
    if (qv_session_new(&s, &(qv_session_opts){.size = sizeof(qv_session_opts), .executor = ex})) {
        qv_executor_free(ex);
        free(fds);
        return -1;
    }
    unsigned long long rs = seed * 31 + (unsigned long long)kind;
    int bad = 0, cancels = 0;
    for (int i = 0; i < rounds; i++) bad |= one(s, url_small, url_big, fds, &rs, &cancels);
    printf("stress (%s): no descriptor left: %d downloads to pipes, %d cancelled\n",
           kind == QV_LOOP ? "loop" : "threads", rounds, cancels);
    fflush(stdout);
    qv_session_free(s);
    qv_executor_free(ex);
    free(fds);
    return bad;
}
