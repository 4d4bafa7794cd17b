/*
 * The fetch/bench engine. One thread (the caller's) owns every piece of
 * state here; quiver's done callbacks, which run on the library's threads,
 * only append the finished item to a locked queue and signal. So outcomes
 * stream out in completion order with no locking beyond that queue.
 */
#include "runner.h"

#include "outdir.h"

#include "cli.h"
#include "parse.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_MS 100.0

typedef struct item {
    struct item *next;      /* in the done queue */
    struct item *live_prev; /* in the in-flight list (to cancel on stop) */
    struct item *live_next;
    struct done_queue *queue;
    char *url;
    size_t seq;
    double submit_ms; /* its submit */
    double done_ms;   /* its completion, stamped by the done callback */
    qv_future *f;     /* NULL if it could not be submitted */
    char *path;       /* with an outdir: where its body goes */
} item;

typedef struct done_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    item *head, *tail;
} done_queue;

typedef struct runner {
    const cli_run *run;
    done_queue queue;
    item *live;         /* submitted, not yet taken from the done queue */
    size_t outstanding; /* taken from the source, no outcome yet */
    size_t next_seq;
    int eof, stopping, input_failed;
} runner;

/* On the library's thread (or the caller's, for a future already done). */
static void on_done(qv_future *f, void *arg)
{
    (void)f;
    item *it = arg;
    done_queue *q = it->queue;
    it->done_ms = cli_now_ms();
    it->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

static void live_link(runner *rn, item *it)
{
    it->live_prev = NULL;
    it->live_next = rn->live;
    if (rn->live) rn->live->live_prev = it;
    rn->live = it;
}

static void live_unlink(runner *rn, item *it)
{
    if (it->live_prev)
        it->live_prev->live_next = it->live_next;
    else
        rn->live = it->live_next;
    if (it->live_next) it->live_next->live_prev = it->live_prev;
    it->live_prev = it->live_next = NULL;
}

/* The outcome goes to the sink, then the future (and its body) goes. */
static void finish(runner *rn, item *it, qv_response *resp, int err, const char *msg,
                   double elapsed_ms)
{
    cli_outcome o = {
        .url = it->url,
        .seq = it->seq,
        .resp = resp,
        .error = err,
        .message = msg,
        .elapsed_ms = elapsed_ms,
        .attempts = it->f ? qv_future_attempts(it->f) : 0,
        .path = resp ? it->path : NULL,
    };
    rn->run->sink(rn->run->arg, &o);
    qv_future_release(it->f);
    free(it->path);
    free(it->url);
    free(it);
    rn->outstanding--;
}

static void submit(runner *rn, item *it)
{
    qv_request_opts o;
    cli_req_fill(rn->run->req, it->url, &o);
    if (rn->run->outdir) {
        char *name = cli_outdir_name(it->url);
        size_t n = name ? strlen(rn->run->outdir) + strlen(name) + 2 : 0;
        if (name && (it->path = malloc(n))) snprintf(it->path, n, "%s/%s", rn->run->outdir, name);
        free(name);
        if (!it->path) {
            it->f = NULL;
            finish(rn, it, NULL, QV_ENOMEM, qv_strerror(QV_ENOMEM), 0);
            return;
        }
        o.output_path = it->path;
    }
    it->submit_ms = cli_now_ms();
    int rc = qv_request(rn->run->session, &it->f, &o);
    if (rc != QV_OK) {
        it->f = NULL;
        finish(rn, it, NULL, rc, qv_strerror(rc), 0);
        return;
    }
    live_link(rn, it);
    if (qv_future_add_done_callback(it->f, on_done, it) != QV_OK) {
        /* Only QV_ENOMEM: wait here instead, slower but still correct. */
        qv_future_wait(it->f, -1);
        on_done(it->f, it);
    }
}

/* Its attempts are over (the library retried as asked): the outcome goes out. */
static void complete(runner *rn, item *it)
{
    live_unlink(rn, it);
    qv_response *r = NULL;
    int rc = qv_future_result(it->f, &r, -1);
    if (rc == QV_OK) {
        finish(rn, it, r, QV_OK, NULL, qv_response_elapsed_ms(r));
    } else {
        const char *msg = qv_future_error(it->f);
        finish(rn, it, NULL, rc, msg ? msg : qv_strerror(rc), it->done_ms - it->submit_ms);
    }
}

/* Stop feeding and cancel what is in flight or waiting to retry (its
 * outcomes still arrive, as cancelled). */
static void stop_all(runner *rn)
{
    rn->stopping = 1;
    rn->eof = 1;
    for (item *it = rn->live; it; it = it->live_next) qv_future_cancel(it->f);
}

static void feed(runner *rn)
{
    const cli_run *run = rn->run;
    while (!rn->eof && rn->outstanding < run->window) {
        char *url = NULL;
        int got = run->source(run->arg, &url);
        if (got <= 0) {
            rn->eof = 1;
            rn->input_failed = got < 0;
            break;
        }
        item *it = calloc(1, sizeof(*it));
        if (!it) {
            free(url);
            cli_error(NULL, "out of memory");
            rn->eof = rn->input_failed = 1;
            break;
        }
        it->queue = &rn->queue;
        it->url = url;
        it->seq = rn->next_seq++;
        rn->outstanding++;
        submit(rn, it);
    }
}

static item *take_done(runner *rn, double deadline_ms)
{
    done_queue *q = &rn->queue;
    pthread_mutex_lock(&q->mu);
    while (!q->head && deadline_ms > 0) {
        double now = cli_now_ms();
        if (now >= deadline_ms) break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double wait = deadline_ms - now;
        ts.tv_sec += (time_t)(wait / 1000);
        ts.tv_nsec += (long)(fmod(wait, 1000.0) * 1e6);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&q->cv, &q->mu, &ts);
    }
    item *all = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->mu);
    return all;
}

enum cli_run_result cli_run_all(const cli_run *run)
{
    runner rn = {.run = run};
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    /* Deadlines are on the monotonic clock: a clock step must not stall us. */
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rn.queue.cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&rn.queue.mu, NULL);

    double next_tick = cli_now_ms();
    for (;;) {
        if (run->stop && *run->stop && !rn.stopping) stop_all(&rn);
        feed(&rn);
        double now = cli_now_ms();
        if (now >= next_tick) {
            if (run->tick) run->tick(run->arg);
            next_tick = now + TICK_MS;
        }
        if (rn.outstanding == 0 && rn.eof) break;
        item *done = take_done(&rn, next_tick);
        while (done) {
            item *next = done->next;
            complete(&rn, done);
            done = next;
        }
    }

    pthread_cond_destroy(&rn.queue.cv);
    pthread_mutex_destroy(&rn.queue.mu);
    if (rn.stopping) return CLI_RUN_STOPPED;
    return rn.input_failed ? CLI_RUN_INPUT_FAILED : CLI_RUN_DONE;
}
