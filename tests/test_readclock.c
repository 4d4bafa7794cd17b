/* The read timeout's clock (transfer.c): bytes that came are stamped at the
 * next check, and checks read the coarse monotonic clock, which lags the
 * fine one (on a busy VM by 2-35 ms). A read timeout must never end before
 * its time of silence really passed (internals.md). */
#include "support.h"

#include "../src/internal.h"

#include <time.h>

TestSuite(readclock, .timeout = 30);

/* Rounds of: bytes came (heard), a check stamps them; checks by the coarse
 * clock until the silence reaches the read timeout; then the real time that
 * passed since the bytes came must be at least that. With stamps read off
 * the coarse clock, 13 of 200 such rounds ended up to 2 ms early. */
Test(readclock, a_read_timeout_never_ends_before_its_silence_really_passed, .timeout = 30)
{
    enum { ROUNDS = 200 };
    int early = 0;
    double worst = 0;
    for (int i = 0; i < ROUNDS; i++) {
        long rt = 5 + i % 7;
        qv_slot slot = {.heard = 1};
        double came = qv_now_ms(); /* the bytes came no later than this */
        double limit = came + rt + 1000.0;
        while (qv_transfer_silent_ms(&slot, qv_coarse_ms()) < (double)rt && qv_now_ms() < limit) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
        double passed = qv_now_ms() - came;
        cr_assert_lt(passed, rt + 1000.0, "round %d: a %ld ms read timeout never came due", i, rt);
        if (passed < (double)rt) {
            early++;
            if ((double)rt - passed > worst) worst = (double)rt - passed;
        }
    }
    cr_assert_eq(early, 0, "%d of %d read timeouts came due early, by up to %.3f ms", early, ROUNDS,
                 worst);
}

/* A read timeout counts the silence since a request went out, so a
 * redirect's next hop starts the clock again. Here the first hop's response
 * ends (the last chunk of its empty body) HOLD ms after its headers, with no
 * byte between, and the next hop's server never answers: its read timeout
 * ends RT ms after that hop's request went, so no sooner than HOLD + RT
 * after the submit. With the first hop's clock kept it ended RT ms after
 * that hop's headers, ~HOLD ms early. Redirects followed both ways: by
 * libcurl (a GET) and hop by hop by redirect.c (a DELETE). */
Test(readclock, a_redirect_hop_starts_the_read_clock_again, .timeout = 30)
{
    enum { HOLD = 700, RT = 1000 };
    static const char *const methods[] = {"GET", "DELETE"};
    qv_session *s = tx_session(NULL);
    for (int i = 0; i < 2; i++) {
        qv_future *f;
        double t0 = qv_now_ms();
        cr_assert_eq(qv_request(s, &f,
                                &(qv_request_opts){.size = sizeof(qv_request_opts),
                                                   .method = methods[i],
                                                   .url = tx_faults_url("/held-redirect?hold=0.7"),
                                                   .read_timeout_ms = RT}),
                     QV_OK);
        tx_expect_error(f, QV_EREAD_TIMEOUT);
        double took = qv_now_ms() - t0;
        cr_expect_geq(took, HOLD + RT,
                      "%s: the next hop's %d ms read timeout ended %.0f ms after the submit, "
                      "before the first hop's %d ms and its own %d ms had passed",
                      methods[i], RT, took, HOLD, RT);
        qv_future_release(f);
    }
    qv_session_free(s);
}
