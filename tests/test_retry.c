/* Retries with backoff: which outcomes are retried, Retry-After, idempotent
 * methods only, hooks on the final outcome only, cancel while waiting, and
 * the attempt counts a user reads back. Against the fault server's /flaky
 * (503 for the first N requests of a key, then 200) and httpbin. */
#include "support.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(retry, .timeout = 60);

/* A /flaky URL with a key no other test (or executor's run) shares. */
static const char *flaky(int fail, const char *extra)
{
    static int n;
    char path[200];
    snprintf(path, sizeof(path), "/flaky?key=retry-%s-%d-%.0f-%d&fail=%d%s", tx_kind_name(),
             (int)getpid(), now_ms() * 1000, ++n, fail, extra ? extra : "");
    return tx_faults_url(path);
}

/* How many requests the fault server saw for the /flaky URL `url`. */
static int flaky_count(qv_session *s, const char *url)
{
    const char *key = strstr(url, "key=") + 4;
    char path[200];
    snprintf(path, sizeof(path), "/flaky-count?key=%.*s", (int)strcspn(key, "&"), key);
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tx_faults_url(path));
    int n = atoi(qv_response_text(r));
    qv_future_release(f);
    return n;
}

#define FAST_RETRY(n) (&(qv_retry){.max_retries = (n), .backoff_ms = 10, .max_backoff_ms = 50})

Test(retry, a_flaky_path_succeeds_after_retries, .timeout = 60)
{
    qv_session *s = TX_SESSION(.retry = FAST_RETRY(3));
    const char *url = flaky(2, NULL);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, url), QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    tx_assert_str_eq(qv_response_text(r), "ok");
    cr_assert_eq(qv_response_attempts(r), 3, "attempts: %d", qv_response_attempts(r));
    cr_assert_eq(qv_future_attempts(f), 3);
    cr_assert_eq(flaky_count(s, url), 3, "the server saw every attempt, no more");
    qv_future_release(f);
    qv_session_free(s);
}

Test(retry, no_policy_no_retry, .timeout = 60)
{
    qv_session *s = TX_SESSION();
    const char *url = flaky(1, NULL);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, url), QV_OK);
    cr_assert_eq(qv_response_attempts(tx_expect_status(f, 503)), 1);
    cr_assert_eq(flaky_count(s, url), 1);
    qv_future_release(f);
    qv_session_free(s);
}

Test(retry, attempts_run_out_with_the_last_response, .timeout = 60)
{
    qv_session *s = TX_SESSION(.retry = FAST_RETRY(2));
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/status/503")), QV_OK);
    qv_response *r = tx_expect_status(f, 503);
    cr_assert_eq(qv_response_attempts(r), 3);
    cr_assert_eq(qv_response_raise_for_status(r), QV_EHTTP);
    qv_future_release(f);
    /* 500 is not in the default list: one attempt. */
    cr_assert_eq(qv_get(s, &f, tu("/status/500")), QV_OK);
    cr_assert_eq(qv_response_attempts(tx_expect_status(f, 500)), 1);
    qv_future_release(f);
    qv_session_free(s);
}

Test(retry, chosen_statuses_only, .timeout = 60)
{
    qv_session *s =
        TX_SESSION(.retry = &(qv_retry){
                       .max_retries = 2, .backoff_ms = 10, .statuses = (const int[]){500, 0}});
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/status/500")), QV_OK);
    cr_assert_eq(qv_response_attempts(tx_expect_status(f, 500)), 3);
    qv_future_release(f);
    cr_assert_eq(qv_get(s, &f, tu("/status/503")), QV_OK);
    cr_assert_eq(qv_response_attempts(tx_expect_status(f, 503)), 1, "503 is not chosen here");
    qv_future_release(f);
    qv_session_free(s);
}

Test(retry, retry_after_seconds_is_honoured, .timeout = 60)
{
    qv_session *s = TX_SESSION(.retry = &(qv_retry){.max_retries = 2, .backoff_ms = 10});
    qv_future *f;
    double t0 = now_ms();
    cr_assert_eq(qv_get(s, &f, flaky(1, "&after=1")), QV_OK);
    cr_assert_eq(qv_response_attempts(tx_expect_status(f, 200)), 2);
    double took = now_ms() - t0;
    cr_assert(took >= 950 && took < 5000, "Retry-After: 1 but the retry came after %.0f ms", took);
    qv_future_release(f);
    qv_session_free(s);
}

/* One request of a fresh /flaky URL on s: its final status and the attempts
 * the server saw. */
static void flaky_outcome(qv_session *s, const char *extra, int status, int attempts)
{
    const char *url = flaky(2, extra);
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, url), QV_OK);
    cr_assert_eq(qv_response_attempts(tx_expect_status(f, status)), attempts, "%s", url);
    cr_assert_eq(flaky_count(s, url), attempts, "%s", url);
    qv_future_release(f);
}

Test(retry, statuses_retried_only_with_retry_after, .timeout = 60)
{
    /* urllib3's rule: 413, 429 and 503 are retried when they say when. */
    qv_session *s =
        TX_SESSION(.retry = &(qv_retry){
                       .max_retries = 3, .backoff_ms = 10, .on = QV_RETRY_AFTER_STATUS});
    flaky_outcome(s, NULL, 200, 3);
    flaky_outcome(s, "&code=429", 200, 3);
    flaky_outcome(s, "&code=413", 200, 3);
    flaky_outcome(s, "&ra=0", 503, 1);
    flaky_outcome(s, "&code=502", 502, 1);
    qv_session_free(s);
    /* With the default list: a listed status is retried with or without it. */
    s = TX_SESSION(.retry = &(qv_retry){.max_retries = 3,
                                        .backoff_ms = 10,
                                        .on = QV_RETRY_STATUS | QV_RETRY_AFTER_STATUS});
    flaky_outcome(s, "&ra=0", 200, 3);
    flaky_outcome(s, "&ra=0&code=413", 413, 1);
    flaky_outcome(s, "&code=413", 200, 3);
    qv_session_free(s);
}

Test(retry, retry_after_http_date_is_honoured, .timeout = 60)
{
    qv_session *s = TX_SESSION(.retry = &(qv_retry){.max_retries = 2, .backoff_ms = 10});
    qv_future *f;
    double t0 = now_ms();
    /* A date 2 s ahead, to the second: the wait is between 1 and 2 s. */
    cr_assert_eq(qv_get(s, &f, flaky(1, "&after=2&date=1")), QV_OK);
    cr_assert_eq(qv_response_attempts(tx_expect_status(f, 200)), 2);
    double took = now_ms() - t0;
    cr_assert(took >= 900 && took < 5000, "Retry-After in 2 s but the retry came after %.0f ms",
              took);
    qv_future_release(f);
    qv_session_free(s);
}

Test(retry, retry_after_over_the_cap_ends_the_retries, .timeout = 60)
{
    qv_session *s = TX_SESSION(.retry = &(qv_retry){.max_retries = 3, .max_backoff_ms = 1000});
    qv_future *f;
    double t0 = now_ms();
    cr_assert_eq(qv_get(s, &f, flaky(1, "&after=120")), QV_OK);
    qv_response *r = tx_expect_status(f, 503);
    cr_assert_eq(qv_response_attempts(r), 1, "asked to wait 120 s with a 1 s cap: no retry");
    tx_assert_str_eq(qv_response_header(r, "Retry-After"), "120");
    cr_assert_lt(now_ms() - t0, 3000.0);
    qv_future_release(f);
    /* ...unless Retry-After is ignored: then the backoff applies. */
    cr_assert_eq(
        qv_get(s, &f, flaky(1, "&after=120"),
               .retry = &(qv_retry){.max_retries = 1, .backoff_ms = 10, .no_retry_after = 1}),
        QV_OK);
    cr_assert_eq(qv_response_attempts(tx_expect_status(f, 200)), 2);
    qv_future_release(f);
    qv_session_free(s);
}

/* Counts the body bytes on_data is given. */
static int count_data(qv_future *f, const void *chunk, size_t len, void *arg)
{
    (void)f, (void)chunk;
    *(size_t *)arg += len;
    return 0;
}

/* A response not retried because its Retry-After is over the cap is the
 * final one: its body goes where the request sends bodies (on_data here),
 * not into memory as a retried attempt's would. */
Test(retry, a_final_response_over_the_retry_after_cap_streams_its_body, .timeout = 60)
{
    qv_session *s = TX_SESSION(.retry = &(qv_retry){.max_retries = 3, .max_backoff_ms = 1000});
    for (int i = 0; i < 2; i++) {
        /* Listed (503), then only by QV_RETRY_AFTER_STATUS (429). */
        const qv_retry *own =
            i ? &(qv_retry){.max_retries = 3, .max_backoff_ms = 1000, .on = QV_RETRY_AFTER_STATUS}
              : NULL;
        size_t got = 0;
        qv_future *f;
        cr_assert_eq(qv_get(s, &f, flaky(1, i ? "&after=120&code=429" : "&after=120"), .retry = own,
                            .on_data = count_data, .on_data_arg = &got),
                     QV_OK);
        qv_response *r = tx_expect_status(f, i ? 429 : 503);
        cr_assert_eq(qv_response_attempts(r), 1);
        size_t len;
        qv_response_body(r, &len);
        cr_assert_eq(len, 0, "case %d: the body was kept in memory", i);
        cr_assert_gt(got, 0, "case %d: on_data never saw the final body", i);
        cr_assert_eq(qv_response_body_bytes(r), (long long)got);
        qv_future_release(f);
    }
    qv_session_free(s);
}

Test(retry, post_is_retried_only_when_asked, .timeout = 60)
{
    qv_session *s = TX_SESSION(.retry = FAST_RETRY(2));
    qv_future *f;
    const char *url = flaky(1, NULL);
    cr_assert_eq(qv_post(s, &f, url, .body = "x"), QV_OK);
    cr_assert_eq(qv_response_attempts(tx_expect_status(f, 503)), 1, "POST is not idempotent");
    qv_future_release(f);
    cr_assert_eq(qv_put(s, &f, flaky(1, NULL), .body = "x"), QV_OK);
    cr_assert_eq(qv_response_attempts(tx_expect_status(f, 200)), 2, "PUT is idempotent");
    qv_future_release(f);
    cr_assert_eq(
        qv_post(s, &f, flaky(1, NULL), .body = "x",
                .retry = &(qv_retry){.max_retries = 2, .backoff_ms = 10, .all_methods = 1}),
        QV_OK);
    cr_assert_eq(qv_response_attempts(tx_expect_status(f, 200)), 2);
    qv_future_release(f);
    qv_session_free(s);
}

Test(retry, a_request_can_turn_retries_off, .timeout = 60)
{
    qv_session *s = TX_SESSION(.retry = FAST_RETRY(3));
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, flaky(1, NULL), .retry = &(qv_retry){0}), QV_OK);
    cr_assert_eq(qv_response_attempts(tx_expect_status(f, 503)), 1);
    qv_future_release(f);
    qv_session_free(s);
}

Test(retry, connection_failures_back_off_then_fail, .timeout = 60)
{
    qv_session *s = TX_SESSION(.retry = &(qv_retry){
                                   .max_retries = 2, .backoff_ms = 100, .max_backoff_ms = 1000});
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", tx_closed_port());
    qv_future *f;
    double t0 = now_ms();
    cr_assert_eq(qv_get(s, &f, url), QV_OK);
    const char *msg = tx_expect_error(f, QV_ECONNECT);
    double took = now_ms() - t0;
    cr_assert_eq(qv_future_attempts(f), 3);
    tx_assert_contains(msg, "after 3 attempts");
    /* Waits of 100 then 200 ms, each at least half drawn: >= 150 ms. */
    cr_assert(took >= 145 && took < 5000, "two backoffs took %.0f ms", took);
    qv_future_release(f);
    /* Without QV_RETRY_CONNECT in `on`, a refused connection is final. */
    cr_assert_eq(qv_get(s, &f, url, .retry = &(qv_retry){.max_retries = 2, .on = QV_RETRY_STATUS}),
                 QV_OK);
    tx_expect_error(f, QV_ECONNECT);
    cr_assert_eq(qv_future_attempts(f), 1);
    qv_future_release(f);
    qv_session_free(s);
}

Test(retry, read_timeouts_are_retried, .timeout = 60)
{
    qv_session *s = TX_SESSION(.read_timeout_ms = 200, .retry = FAST_RETRY(1));
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tx_faults_url("/stall-status")), QV_OK);
    tx_expect_error(f, QV_EREAD_TIMEOUT);
    cr_assert_eq(qv_future_attempts(f), 2);
    qv_future_release(f);
    qv_session_free(s);
}

Test(retry, cancel_while_waiting_to_retry, .timeout = 60)
{
    qv_session *s = TX_SESSION(.retry = &(qv_retry){
                                   .max_retries = 3, .backoff_ms = 20000, .max_backoff_ms = 20000});
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", tx_closed_port());
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, url), QV_OK);
    /* The first attempt fails at once; then a wait of 10 to 20 s. */
    double until = now_ms() + 10000;
    while (qv_future_attempts(f) < 1 && now_ms() < until) usleep(1000);
    usleep(50 * 1000);
    cr_assert_eq(qv_future_state_get(f), QV_RUNNING, "waiting to retry is still running");
    double t0 = now_ms();
    cr_assert_eq(qv_future_cancel(f), 1);
    tx_expect_error(f, QV_ECANCELLED);
    cr_assert_lt(now_ms() - t0, 200.0, "the cancel waited for the retry time");
    cr_assert_eq(qv_future_attempts(f), 1);
    qv_future_release(f);
    /* close(cancel_pending) cancels one waiting to retry too. */
    cr_assert_eq(qv_get(s, &f, url), QV_OK);
    until = now_ms() + 10000;
    while (qv_future_attempts(f) < 1 && now_ms() < until) usleep(1000);
    usleep(50 * 1000);
    t0 = now_ms();
    qv_session_close(s, 1);
    cr_assert_lt(now_ms() - t0, 1000.0, "close waited for the retry time");
    tx_expect_error(f, QV_ECANCELLED);
    qv_future_release(f);
    qv_session_free(s);
}

/* Fails on anything but 200: if hooks ran on a retried 503, the future would
 * fail with QV_EHOOK instead of going on to the 200. */
static int only_200(qv_session *s, qv_response *r, void *arg)
{
    (void)s, (void)arg;
    char seen[16];
    snprintf(seen, sizeof(seen), "%d", qv_response_status(r));
    qv_response_set_result_bytes(r, seen, strlen(seen));
    return qv_response_status(r) == 200 ? 0 : 1;
}

Test(retry, hooks_see_the_final_outcome_only, .timeout = 60)
{
    qv_session *s =
        TX_SESSION(.retry = FAST_RETRY(3), .hooks = (const qv_hook[]){{only_200, NULL}, {0}});
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, flaky(2, NULL)), QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    size_t len;
    const char *seen = qv_response_result_bytes(r, &len);
    cr_assert(seen && len == 3 && memcmp(seen, "200", 3) == 0, "the hook saw %.*s", (int)len,
              seen ? seen : "");
    cr_assert_eq(qv_response_attempts(r), 3);
    qv_future_release(f);
    /* When the attempts run out, the hook sees the last response, once. */
    cr_assert_eq(qv_get(s, &f, flaky(5, NULL), .retry = FAST_RETRY(1)), QV_OK);
    tx_expect_error(f, QV_EHOOK);
    cr_assert_eq(qv_future_attempts(f), 2);
    qv_future_release(f);
    qv_session_free(s);
}

static atomic_int done_calls;

static void count_done(qv_future *f, void *arg)
{
    (void)f, (void)arg;
    atomic_fetch_add(&done_calls, 1);
}

Test(retry, many_retried_futures_complete_exactly_once, .timeout = 60)
{
    enum { N = 60 };
    qv_session *s = TX_SESSION(.retry = FAST_RETRY(2));
    qv_future *f[N];
    atomic_store(&done_calls, 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(qv_get(s, &f[i], flaky(i % 3, NULL)), QV_OK);
        cr_assert_eq(qv_future_add_done_callback(f[i], count_done, NULL), QV_OK);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(qv_response_attempts(tx_expect_status(f[i], 200)), i % 3 + 1);
        qv_future_release(f[i]);
    }
    qv_executor_stats st;
    cr_assert_eq(qv_executor_stats_get(qv_session_executor(s), &st), QV_OK);
    cr_assert_eq(st.completed, N);
    cr_assert_eq(st.in_flight, 0);
    cr_assert_eq(st.queued, 0);
    qv_session_free(s);
    cr_assert_eq(atomic_load(&done_calls), N, "%d done callbacks for %d futures",
                 atomic_load(&done_calls), N);
}

Test(retry, bad_policies_are_refused, .timeout = 60)
{
    qv_session *s = TX_SESSION();
    qv_future *f = NULL;
    cr_assert_eq(qv_get(s, &f, tu("/get"), .retry = &(qv_retry){.max_retries = -1}), QV_EINVAL);
    cr_assert_eq(qv_get(s, &f, tu("/get"), .retry = &(qv_retry){.max_retries = 1, .on = 1u << 9}),
                 QV_EINVAL);
    cr_assert_eq(qv_get(s, &f, tu("/get"),
                        .retry = &(qv_retry){.max_retries = 1, .statuses = (const int[]){42, 0}}),
                 QV_EINVAL);
    cr_assert_null(f);
    qv_session *bad = NULL;
    cr_assert_eq(qv_session_new(&bad, &(qv_session_opts){.size = sizeof(qv_session_opts),
                                                         .retry = &(qv_retry){.backoff_ms = -5}}),
                 QV_EINVAL);
    cr_assert_null(bad);
    qv_session_free(s);
}
