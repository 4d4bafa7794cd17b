/* Retries: which outcomes of an attempt are sent again, how long to wait
 * (exponential backoff with jitter, or the server's Retry-After), and
 * putting the future back in its executor's queue for the next attempt. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const int default_statuses[] = {429, 502, 503, 504};

const qv_retry_policy qv_retry_none;

int qv_retry_resolve(qv_retry_policy *p, const qv_retry *in)
{
    memset(p, 0, sizeof(*p));
    if (!in) return QV_OK;
    if (in->max_retries < 0 || in->backoff_ms < 0 || in->max_backoff_ms < 0 ||
        (in->on & ~(unsigned)(QV_RETRY_CONNECT | QV_RETRY_READ_TIMEOUT | QV_RETRY_STATUS |
                              QV_RETRY_PROTOCOL | QV_RETRY_AFTER_STATUS)))
        return QV_EINVAL;
    p->max_retries = in->max_retries;
    p->on = in->on ? in->on : QV_RETRY_CONNECT | QV_RETRY_READ_TIMEOUT | QV_RETRY_STATUS;
    p->backoff_ms = in->backoff_ms ? in->backoff_ms : QV_DEFAULT_RETRY_BACKOFF_MS;
    p->max_backoff_ms = in->max_backoff_ms ? in->max_backoff_ms : QV_DEFAULT_RETRY_MAX_BACKOFF_MS;
    if (p->max_backoff_ms < p->backoff_ms) p->max_backoff_ms = p->backoff_ms;
    p->all_methods = in->all_methods != 0;
    p->no_retry_after = in->no_retry_after != 0;
    const int *st = in->statuses ? in->statuses : default_statuses;
    size_t n = in->statuses ? 0 : sizeof(default_statuses) / sizeof(default_statuses[0]);
    if (in->statuses)
        while (st[n]) n++;
    if (n > QV_RETRY_STATUSES_MAX) return QV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (st[i] < 100 || st[i] > 999) return QV_EINVAL;
        p->statuses[i] = st[i];
    }
    p->nstatuses = (int)n;
    return QV_OK;
}

/* RFC 9110: methods whose repetition has the effect of one request. */
static int idempotent(const char *m)
{
    static const char *const ok[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(m, ok[i]) == 0) return 1;
    return 0;
}

static int retried_error(unsigned on, int err)
{
    switch (err) {
    case QV_ECONNECT:
    case QV_ECONNECT_TIMEOUT:
        return (on & QV_RETRY_CONNECT) != 0;
    case QV_EREAD_TIMEOUT:
    case QV_ETIMEOUT:
        return (on & QV_RETRY_READ_TIMEOUT) != 0;
    case QV_EPROTOCOL:
        return (on & QV_RETRY_PROTOCOL) != 0;
    default:
        return 0;
    }
}

/* Retry-After in ms: -1 if absent or unreadable. Seconds, or an HTTP date
 * (in the past: 0). */
static double retry_after_ms(const qv_response *r)
{
    const char *v = qv_headers_get(&r->headers, "Retry-After", 0);
    if (!v || !*v) return -1;
    char *end;
    errno = 0;
    long long s = strtoll(v, &end, 10);
    if (end != v && !*end) return errno || s < 0 ? -1 : (double)s * 1000.0;
    time_t at = curl_getdate(v, NULL);
    if (at < 0) return -1;
    double left = difftime(at, time(NULL)) * 1000.0;
    return left > 0 ? left : 0;
}

/* Jitter needs no quality, only that clients that failed together spread
 * out: xorshift64* per thread, seeded from the clock, the pid and the
 * thread's own address. */
static double uniform01(void)
{
    static _Thread_local uint64_t x;
    if (!x) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40) ^
            (uint64_t)(uintptr_t)&x;
        if (!x) x = 0x9e3779b97f4a7c15ULL;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* Another attempt is allowed at all (attempts left, method, not
 * cancelled, nothing sent that can't be taken back or produced again). */
static int may_retry(const qv_future *f)
{
    const qv_retry_policy *p = f->req.retry;
    return f->attempts <= p->max_retries && !atomic_load(&f->cancel_requested) &&
           (p->all_methods || idempotent(f->req.method)) && !f->out_unrepeatable;
}

/* Is this response's status one to retry: listed in `statuses`, or (urllib3's
 * rule for servers that say when to come back) a 413, 429 or 503 that has a
 * Retry-After header? */
static int status_retried(const qv_retry_policy *p, const qv_response *r)
{
    int listed = 0;
    for (int i = 0; i < p->nstatuses && !listed; i++) listed = r->status == p->statuses[i];
    if (listed && (p->on & QV_RETRY_STATUS)) return 1;
    if (!(p->on & QV_RETRY_AFTER_STATUS) ||
        (r->status != 413 && r->status != 429 && r->status != 503))
        return 0;
    const char *ra = qv_headers_get(&r->headers, "Retry-After", 0);
    return ra && *ra;
}

/* What this response says about its retry: -1 none (not a status to retry,
 * or a Retry-After over the cap), -2 after the backoff, or its Retry-After
 * (ms). Both the sink's choice at the headers and the final decision ask
 * this, so a final response is never one whose body was kept as a retried
 * one's (a Retry-After date only comes closer in between). */
static double response_wait_ms(const qv_retry_policy *p, const qv_response *r)
{
    if (!status_retried(p, r)) return -1;
    double ra = p->no_retry_after ? -1 : retry_after_ms(r);
    if (ra < 0) return -2;
    return ra <= (double)p->max_backoff_ms ? ra : -1;
}

int qv_retry_would_retry(const qv_future *f, const qv_response *r)
{
    return may_retry(f) && response_wait_ms(f->req.retry, r) != -1;
}

double qv_retry_wait_ms(const qv_future *f)
{
    const qv_retry_policy *p = f->req.retry;
    if (!may_retry(f)) return -1;
    const qv_response *r = f->out_resp;
    if (r) {
        double ra = response_wait_ms(p, r);
        if (ra != -2) return ra;
    } else if (!retried_error(p->on, f->out_err)) {
        return -1;
    }
    double d = (double)p->backoff_ms;
    for (int i = 1; i < f->attempts && d < (double)p->max_backoff_ms; i++) d *= 2;
    if (d > (double)p->max_backoff_ms) d = (double)p->max_backoff_ms;
    /* Half of it fixed (a floor under the wait), half random. */
    return d / 2 + uniform01() * d / 2;
}

int qv_retry_requeue(qv_future *f, double wait_ms)
{
    if (wait_ms < 0 || !f->ex) return 0;
    qv_response *r = f->out_resp;
    char *msg = f->out_msg;
    int err = f->out_err;
    unsigned short err_status = f->out_status;
    f->out_resp = NULL;
    f->out_msg = NULL;
    f->out_err = QV_OK;
    f->out_status = 0;
    qv_executor_host_done(f);
    qv_future_hold(f); /* the queue's reference, again */
    int rc = qv_executor_retry(f->ex, f, qv_now_ms() + wait_ms);
    if (rc == QV_OK) {
        qv_response_free(r);
        qv_free(msg);
        return 1;
    }
    qv_future_drop(f);
    if (r && rc != QV_ECANCELLED && qv_sink_wanted(&f->req)) {
        /* Its body was kept for the retry, not written to the sink: a
         * response without it would say the body went there. (Cancelled,
         * it ends so whatever the response.) */
        int status = r->status;
        qv_response_free(r);
        r = NULL;
        qv_free(msg);
        err = rc;
        msg = qv_future_message(f, rc, "could not queue the retry after a %d response", status);
    }
    /* No retry after all: the attempt's outcome is the future's (its
     * status line too, for qv_future_error_status). */
    f->out_resp = r;
    f->out_msg = msg;
    f->out_err = err;
    f->out_status = err_status;
    return 0;
}

int qv_retry_maybe(qv_future *f)
{
    return qv_retry_requeue(f, qv_retry_wait_ms(f));
}
