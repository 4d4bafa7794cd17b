/* The quiver tool: `quiver bench` — a bounded load run and its summary. */
#include "support.h"

#include "cli/run.h"

#include <stdio.h>
#include <string.h>

TestSuite(cli_bench, .timeout = 60);

/* The number after `label` on its line of the summary. */
static double summary_value(const cli_result *r, const char *label)
{
    const char *p = strstr(r->out, label);
    cr_assert_not_null(p, "no \"%s\" in the summary:\n%s", label, r->out);
    double v;
    cr_assert_eq(sscanf(p + strlen(label), " %lf", &v), 1, "no number after \"%s\"", label);
    return v;
}

Test(cli_bench, summary_counts_every_request, .timeout = 60)
{
    cli_result *r = CLI("bench", "--executor", tx_kind_name(), tu("/get"), "-n", "40", "-c", "5");
    cli_expect_status(r, 0);
    cr_assert_eq(summary_value(r, "Requests:"), 40.0);
    cr_assert_eq(summary_value(r, "Responses:"), 40.0);
    cr_assert_eq(summary_value(r, "Errors:"), 0.0);
    cr_assert_eq(summary_value(r, "Concurrency:"), 5.0);
    tx_assert_contains(r->out, tx_kind_name());
    cr_assert_gt(summary_value(r, "Requests/sec:"), 0.0);
    cr_assert_gt(summary_value(r, "Duration:"), 0.0);
    double p50 = summary_value(r, "p50"), p99 = summary_value(r, "p99");
    double min = summary_value(r, "min"), max = summary_value(r, "max");
    cr_assert(min > 0 && min <= p50 && p50 <= p99 && p99 <= max, "min %f p50 %f p99 %f max %f", min,
              p50, p99, max);
    tx_assert_contains(r->out, "[200]  40 responses");
    /* No terminal: no progress line. */
    cr_assert_null(strchr(r->err, '\r'), "stderr: %s", r->err);
    cli_result_free(r);
}

Test(cli_bench, latency_reflects_the_server, .timeout = 60)
{
    cli_result *r = CLI("bench", "--executor", tx_kind_name(), tu("/delay/1"), "-n", "4", "-c", "4",
                        "-H", "X-Bench: 1");
    cli_expect_status(r, 0);
    cr_assert_geq(summary_value(r, "min"), 990.0);
    /* Four at once: about one delay in all, not four (a margin of two
     * delays for starting worker processes on a loaded machine). */
    cr_assert_lt(summary_value(r, "Duration:"), 3.0);
    tx_assert_contains(r->out, "[200]  4 responses");
    cli_result_free(r);
}

Test(cli_bench, errors_are_counted_by_kind, .timeout = 60)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", tx_closed_port());
    cli_result *r = CLI("bench", "--executor", tx_kind_name(), url, "-n", "6", "-c", "3");
    cli_expect_status(r, 1);
    cr_assert_eq(summary_value(r, "Requests:"), 6.0);
    cr_assert_eq(summary_value(r, "Errors:"), 6.0);
    tx_assert_contains(r->out, "[QV_ECONNECT]  6");
    cli_result_free(r);
}

Test(cli_bench, progress_on_a_terminal, .timeout = 60)
{
    cli_result *r = cli_run(&(cli_run_opts){.pty = 1}, "bench", "--executor", tx_kind_name(),
                            tu("/get"), "-n", "20", "-c", "2");
    cli_expect_status(r, 0);
    tx_assert_contains(r->err, "20/20");
    tx_assert_contains(r->err, "ETA ");
    tx_assert_contains(r->out, "[200]  20 responses");
    cli_result_free(r);
}

Test(cli_bench, bad_command_lines, .timeout = 60)
{
    const char *bad[][5] = {
        {"bench", NULL},
        {"bench", tu("/get"), "-n", "0", NULL},
        {"bench", tu("/get"), "-c", "0", NULL},
        {"bench", tu("/get"), "-c", "x", NULL},
        {"bench", tu("/get"), "--bogus", NULL},
        {"bench", tu("/get"), tu("/get"), NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cli_result *r = cli_run_with(NULL, bad[i], __FILE__, __LINE__);
        cli_expect_status(r, 2);
        tx_assert_contains(r->err, "usage: quiver bench");
        cr_assert_eq(r->out_len, 0);
        cli_result_free(r);
    }
}
