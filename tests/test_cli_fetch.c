/* The quiver tool: `quiver fetch` — JSON Lines results, retries, -o file
 * names, the progress line (on a terminal only), the summary, Ctrl-C. */
#include "support.h"

#include "cli/run.h"
#include "outdir.h" /* tools/: the -o naming, unit-tested below */

#include <arpa/inet.h>
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

TestSuite(cli_fetch, .timeout = 60);

#define MAX_RECORDS 1000

typedef struct records {
    json_t *rec[MAX_RECORDS];
    size_t n;
} records;

/* Parses stdout as JSON Lines and checks every record's shape: the fields,
 * their types, and that error and status exclude each other. */
static records *parse_jsonl(const cli_result *r)
{
    records *rs = calloc(1, sizeof(*rs));
    cr_assert_not_null(rs);
    char *copy = strdup(r->out), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cr_assert_lt(rs->n, MAX_RECORDS);
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        cr_assert_not_null(j, "line %zu is not JSON (%s): %s", rs->n + 1, je.text, line);
        cr_assert(json_is_string(json_object_get(j, "url")), "url: %s", line);
        cr_assert(json_is_number(json_object_get(j, "elapsed_ms")), "elapsed_ms: %s", line);
        cr_assert_geq(json_number_value(json_object_get(j, "elapsed_ms")), 0.0);
        cr_assert(json_is_integer(json_object_get(j, "attempts")), "attempts: %s", line);
        json_t *status = json_object_get(j, "status"), *bytes = json_object_get(j, "bytes");
        json_t *error = json_object_get(j, "error");
        cr_assert(status && bytes && error, "a field is missing: %s", line);
        if (json_is_null(error)) {
            cr_assert(json_is_integer(status) && json_is_integer(bytes), "%s", line);
        } else {
            cr_assert(json_is_string(error) && json_is_null(status) && json_is_null(bytes), "%s",
                      line);
            cr_assert(strncmp(json_string_value(error), "QV_E", 4) == 0, "%s", line);
        }
        rs->rec[rs->n++] = j;
    }
    free(copy);
    cr_assert_eq(rs->n, cli_count_lines(r->out), "blank or broken lines in:\n%s", r->out);
    return rs;
}

static void records_free(records *rs)
{
    for (size_t i = 0; i < rs->n; i++) json_decref(rs->rec[i]);
    free(rs);
}

/* The one record for url (asserts there is exactly one). */
static json_t *record_for(const records *rs, const char *url)
{
    json_t *found = NULL;
    for (size_t i = 0; i < rs->n; i++) {
        if (strcmp(json_string_value(json_object_get(rs->rec[i], "url")), url) == 0) {
            cr_assert_null(found, "two records for %s", url);
            found = rs->rec[i];
        }
    }
    cr_assert_not_null(found, "no record for %s", url);
    return found;
}

static long long jint(json_t *rec, const char *key)
{
    json_t *v = json_object_get(rec, key);
    cr_assert(json_is_integer(v), "%s is not an integer", key);
    return json_integer_value(v);
}

static const char *closed_url(void)
{
    static char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", tx_closed_port());
    return url;
}

Test(cli_fetch, one_record_per_url_with_the_right_outcome, .timeout = 60)
{
    const char *ok = tu("/get"), *missing = tu("/status/404"), *broken = tu("/status/500");
    const char *sized = tu("/bytes/1234"), *refused = closed_url();
    char *dir = cli_tmpdir();
    char list[4096], path[4200];
    snprintf(path, sizeof path, "%s/urls.txt", dir);
    /* Comments, blank lines and surrounding space are skipped. */
    snprintf(list, sizeof list, "# a comment\n\n  %s  \n%s\r\n", sized, tu("/anything?from=file"));
    cli_write_file(path, list);

    cli_result *r = CLI("fetch", "--executor", tx_kind_name(), "-j", "3", ok, missing, broken,
                        refused, "-i", path);
    cli_expect_status(r, 1); /* one URL had no response */
    records *rs = parse_jsonl(r);
    cr_assert_eq(rs->n, 6, "records:\n%s", r->out);

    json_t *rec = record_for(rs, ok);
    cr_assert_eq(jint(rec, "status"), 200);
    cr_assert_eq(jint(rec, "attempts"), 1);
    cr_assert_gt(jint(rec, "bytes"), 0);
    cr_assert(json_is_null(json_object_get(rec, "error")));
    cr_assert_null(json_object_get(rec, "file"), "no -o, no file field");
    cr_assert_eq(jint(record_for(rs, missing), "status"), 404);
    cr_assert_eq(jint(record_for(rs, broken), "status"), 500);
    cr_assert_eq(jint(record_for(rs, sized), "bytes"), 1234);
    cr_assert_eq(jint(record_for(rs, tu("/anything?from=file")), "status"), 200);

    rec = record_for(rs, refused);
    const char *err = json_string_value(json_object_get(rec, "error"));
    cr_assert(strncmp(err, "QV_ECONNECT: ", 13) == 0, "error: %s", err);
    tx_assert_contains(err, refused);
    cr_assert_eq(jint(rec, "attempts"), 1);

    /* The summary, on stderr. */
    tx_assert_contains(r->err, "quiver fetch: 6 URLs");
    tx_assert_contains(r->err, "5 responses, 1 errors");
    tx_assert_contains(r->err, " 200=3");
    tx_assert_contains(r->err, " 404=1");
    tx_assert_contains(r->err, " 500=1");
    tx_assert_contains(r->err, "QV_ECONNECT=1");
    tx_assert_contains(r->err, "p50=");
    tx_assert_contains(r->err, "p99=");
    records_free(rs);
    cli_result_free(r);
    cli_rmtree(dir);
    free(dir);
}

Test(cli_fetch, exit_codes, .timeout = 60)
{
    cli_result *r = CLI("fetch", "--executor", tx_kind_name(), tu("/get"), tu("/status/404"));
    cli_expect_status(r, 0); /* every URL got a response */
    cli_result_free(r);
    r = CLI("fetch", "--executor", tx_kind_name(), "--fail", tu("/get"), tu("/status/404"));
    cli_expect_status(r, 3);
    cli_result_free(r);
    r = CLI("fetch", "--executor", tx_kind_name(), "--fail", tu("/get"), closed_url());
    cli_expect_status(r, 1); /* no response beats an error status */
    cli_result_free(r);
}

Test(cli_fetch, many_urls_from_stdin_each_exactly_once, .timeout = 60)
{
    enum { N = 300 };
    size_t cap = N * 128;
    char *input = malloc(cap), *p = input;
    for (int i = 0; i < N; i++)
        p += snprintf(p, cap - (size_t)(p - input), "%s\n", tuf("/anything?i=%d", i));
    /* -j 4: a window of 16 outstanding futures over 300 URLs. */
    cli_result *r = cli_run(&(cli_run_opts){.input = input}, "fetch", "--executor", tx_kind_name(),
                            "-j", "4", "-i", "-");
    cli_expect_status(r, 0);
    records *rs = parse_jsonl(r);
    cr_assert_eq(rs->n, N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(jint(record_for(rs, tuf("/anything?i=%d", i)), "status"), 200);
    tx_assert_contains(r->err, "300 URLs");
    records_free(rs);
    cli_result_free(r);
    free(input);
}

Test(cli_fetch, retries_a_503_until_attempts_run_out, .timeout = 60)
{
    cli_result *r = CLI("fetch", "--executor", tx_kind_name(), "--retries", "3", "--retry-delay",
                        "0.02", tu("/status/503"));
    cli_expect_status(r, 0); /* a 503 is still a response */
    records *rs = parse_jsonl(r);
    cr_assert_eq(rs->n, 1);
    cr_assert_eq(jint(rs->rec[0], "attempts"), 4);
    cr_assert_eq(jint(rs->rec[0], "status"), 503);
    /* Backoff: at least half of 20 + 40 + 80 ms (the jitter's floor). */
    cr_assert_geq(r->ms, 70.0, "3 retries in %.0f ms: no backoff?", r->ms);
    tx_assert_contains(r->err, "3 retries");
    records_free(rs);
    cli_result_free(r);
}

Test(cli_fetch, retries_a_refused_connection, .timeout = 60)
{
    const char *url = closed_url();
    cli_result *r =
        CLI("fetch", "--executor", tx_kind_name(), "--retries", "2", "--retry-delay", "0.01", url);
    cli_expect_status(r, 1);
    records *rs = parse_jsonl(r);
    cr_assert_eq(rs->n, 1);
    cr_assert_eq(jint(rs->rec[0], "attempts"), 3);
    const char *err = json_string_value(json_object_get(rs->rec[0], "error"));
    cr_assert(err && strncmp(err, "QV_ECONNECT", 11) == 0, "error: %s", err);
    records_free(rs);
    cli_result_free(r);
}

Test(cli_fetch, no_retries_for_what_is_not_transient, .timeout = 60)
{
    const char *a = tu("/status/404"), *b = tu("/status/500"), *c = tu("/get");
    cli_result *r = CLI("fetch", "--executor", tx_kind_name(), "--retries", "3", "--retry-delay",
                        "0.01", a, b, c);
    cli_expect_status(r, 0);
    records *rs = parse_jsonl(r);
    cr_assert_eq(rs->n, 3);
    for (size_t i = 0; i < 3; i++) cr_assert_eq(jint(rs->rec[i], "attempts"), 1);
    records_free(rs);
    cli_result_free(r);

    /* Without --retries, a 503 is tried once. */
    r = CLI("fetch", "--executor", tx_kind_name(), tu("/status/503"));
    rs = parse_jsonl(r);
    cr_assert_eq(jint(rs->rec[0], "attempts"), 1);
    records_free(rs);
    cli_result_free(r);
}

Test(cli_fetch, a_flaky_path_succeeds_after_retries, .timeout = 60)
{
    /* The fault server's /flaky answers 503 to the first `fail` requests
     * with a key, then 200. httpbin has no such path. */
    char path[256];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(path, sizeof path, "/flaky?key=cli-%s-%ld-%ld&fail=2", tx_kind_name(), (long)getpid(),
             (long)ts.tv_nsec);
    const char *url = tx_faults_url(path);
    cli_result *r =
        CLI("fetch", "--executor", tx_kind_name(), "--retries", "3", "--retry-delay", "0.01", url);
    cli_expect_status(r, 0);
    records *rs = parse_jsonl(r);
    cr_assert_eq(rs->n, 1);
    cr_assert_eq(jint(rs->rec[0], "status"), 200);
    cr_assert_eq(jint(rs->rec[0], "attempts"), 3);
    records_free(rs);
    cli_result_free(r);
}

Test(cli_fetch, post_is_not_retried, .timeout = 60)
{
    cli_result *r = CLI("fetch", "--executor", tx_kind_name(), "--retries", "3", "--retry-delay",
                        "0.01", "-d", "x", tu("/status/503"));
    cli_expect_status(r, 0);
    records *rs = parse_jsonl(r);
    cr_assert_eq(jint(rs->rec[0], "attempts"), 1, "a POST may have been done: not repeated");
    records_free(rs);
    cli_result_free(r);
}

Test(cli_fetch, rate_paces_requests_to_a_host, .timeout = 60)
{
    /* 12 requests at 8/s: the 12th starts 11/8 s after the first. */
    const char *u[12];
    for (int i = 0; i < 12; i++) u[i] = tuf("/anything/%d", i);
    cli_result *r = CLI("fetch", "--executor", tx_kind_name(), "-j", "8", "--rate", "8", u[0], u[1],
                        u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11]);
    cli_expect_status(r, 0);
    records *rs = parse_jsonl(r);
    cr_assert_eq(rs->n, 12);
    for (size_t i = 0; i < 12; i++) cr_assert_eq(jint(rs->rec[i], "status"), 200);
    cr_assert(r->ms >= 1300 && r->ms < 8000, "12 requests at 8/s took %.0f ms", r->ms);
    records_free(rs);
    cli_result_free(r);
}

Test(cli_fetch, max_queued_still_fetches_everything, .timeout = 60)
{
    size_t cap = 100 * 128;
    char *input = malloc(cap), *p = input;
    for (int i = 0; i < 100; i++)
        p += snprintf(p, cap - (size_t)(p - input), "%s\n", tuf("/anything?i=%d", i));
    /* A window of 16 futures, 4 workers and room for 2 more: submits wait. */
    cli_result *r = cli_run(&(cli_run_opts){.input = input}, "fetch", "--executor", tx_kind_name(),
                            "-j", "4", "--max-queued", "2", "-i", "-");
    cli_expect_status(r, 0);
    records *rs = parse_jsonl(r);
    cr_assert_eq(rs->n, 100);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(jint(record_for(rs, tuf("/anything?i=%d", i)), "status"), 200);
    records_free(rs);
    cli_result_free(r);
    free(input);
}

/* The -o names, unit-tested: whatever the URL, one plain file name. */
static void expect_safe_name(const char *url)
{
    char *name = cli_outdir_name(url);
    cr_assert_not_null(name);
    cr_assert_gt(strlen(name), 0);
    cr_assert_lt(strlen(name), 200, "too long: %s", name);
    cr_assert_null(strchr(name, '/'), "'/' in \"%s\" (from %s)", name, url);
    cr_assert_null(strstr(name, ".."), "'..' in \"%s\" (from %s)", name, url);
    cr_assert_neq(name[0], '.', "hidden name \"%s\" (from %s)", name, url);
    cr_assert_neq(name[0], '-', "option-like name \"%s\" (from %s)", name, url);
    for (const char *p = name; *p; p++)
        cr_assert(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._", *p),
                  "unsafe character 0x%02x in \"%s\"", (unsigned char)*p, name);
    char *again = cli_outdir_name(url);
    tx_assert_str_eq(again, name); /* deterministic */
    free(again);
    free(name);
}

Test(cli_fetch, output_names_are_safe_for_any_url, .timeout = 60)
{
    const char *urls[] = {
        "http://h/../../etc/passwd",
        "http://h/..%2f..%2fetc/passwd",
        "http://h/a/b/../../../x?y=../../z",
        "../../../../etc/passwd",
        "..",
        ".",
        "",
        "-rf",
        "http://h/.hidden",
        "http://h/"
        "\xc3\xa9t\xc3\xa9 and spaces\t\n",
        "http://h/"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    };
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) expect_safe_name(urls[i]);

    /* URLs that differ only in characters the name cannot keep still get
     * different names (the hash of the whole URL). */
    char *a = cli_outdir_name("http://h/a?x=1"), *b = cli_outdir_name("http://h/a?x_1");
    char *c = cli_outdir_name("http://h/a/x/1");
    cr_assert_str_neq(a, b);
    cr_assert_str_neq(a, c);
    cr_assert_str_neq(b, c);
    free(a);
    free(b);
    free(c);
    /* A readable stem and the path's extension. */
    char *d = cli_outdir_name("http://127.0.0.1:8080/data/report.json?v=2");
    cr_assert(strncmp(d, "127.0.0.1_8080_data_report.json_v_2-", 36) == 0, "name: %s", d);
    cr_assert(strlen(d) > 5 && strcmp(d + strlen(d) - 5, ".json") == 0, "name: %s", d);
    free(d);
}

/* The entries of dir, except "." and "..". */
static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

Test(cli_fetch, output_dir_gets_one_safe_file_per_url, .timeout = 60)
{
    char *root = cli_tmpdir();
    char out[4200];
    snprintf(out, sizeof out, "%s/bodies", root); /* created by fetch */
    /* The %2e%2e forms reach the server as they are (curl only removes
     * literal dot segments): the tool must not be the one to resolve them. */
    const char *urls[] = {
        tu("/anything/%2e%2e/%2e%2e/escape"),
        tu("/anything/..%2f..%2fescape"),
        tu("/anything?a=1&b=../../z"),
        tu("/anything?a=1&b=.._.._z"),
        tu("/bytes/100"),
        tu("/status/404"),
    };
    enum { N = sizeof(urls) / sizeof(urls[0]) };
    const char *refused = closed_url();
    cli_result *r = CLI("fetch", "--executor", tx_kind_name(), "-o", out, urls[0], urls[1], urls[2],
                        urls[3], urls[4], urls[5], refused);
    cli_expect_status(r, 1);
    records *rs = parse_jsonl(r);
    cr_assert_eq(rs->n, N + 1);

    char real_out[PATH_MAX];
    cr_assert_not_null(realpath(out, real_out));
    for (size_t i = 0; i < N; i++) {
        json_t *rec = record_for(rs, urls[i]);
        const char *file = json_string_value(json_object_get(rec, "file"));
        cr_assert_not_null(file, "no file for %s", urls[i]);
        /* The file is directly inside the directory... */
        char real[PATH_MAX];
        cr_assert_not_null(realpath(file, real), "%s does not exist", file);
        char *slash = strrchr(real, '/');
        *slash = '\0';
        tx_assert_str_eq(real, real_out);
        /* ...and holds the body (an error status's body too). */
        struct stat st;
        cr_assert_eq(stat(file, &st), 0);
        cr_assert_eq((long long)st.st_size, jint(rec, "bytes"), "%s", file);
        for (size_t k = 0; k < i; k++) {
            const char *other = json_string_value(json_object_get(record_for(rs, urls[k]), "file"));
            cr_assert_str_neq(file, other, "%s and %s share a file", urls[i], urls[k]);
        }
    }
    /* No file for the failed URL (its record says null), nothing left
     * half-written, and nothing written outside the directory. */
    cr_assert(json_is_null(json_object_get(record_for(rs, refused), "file")));
    cr_assert_eq(count_entries(out), N);
    cr_assert_eq(count_entries(root), 1);
    records_free(rs);
    cli_result_free(r);
    cli_rmtree(root);
    free(root);
}

Test(cli_fetch, output_dir_that_cannot_be_made_fails_before_any_request, .timeout = 60)
{
    cli_result *r = CLI("fetch", "-o", "/nonexistent/quiver/out", tu("/get"));
    cli_expect_status(r, 1);
    tx_assert_contains(r->err, "cannot create /nonexistent/quiver/out");
    cr_assert_eq(r->out_len, 0);
    cli_result_free(r);
}

Test(cli_fetch, progress_line_on_a_terminal_only, .timeout = 60)
{
    /* 12 URLs of 150 ms, 3 at a time: ~600 ms, several redraws. */
    const char *args[20] = {"fetch", "--executor", tx_kind_name(), "-j", "3"};
    size_t n = 5;
    for (int i = 0; i < 12; i++) args[n++] = tuf("/delay/0.15?i=%d", i);
    args[n] = NULL;

    cli_result *t = cli_run_with(&(cli_run_opts){.pty = 1}, args, __FILE__, __LINE__);
    cli_expect_status(t, 0);
    tx_assert_contains(t->err, "\r[");
    tx_assert_contains(t->err, "12/12");
    tx_assert_contains(t->err, "req/s");
    tx_assert_contains(t->err, "ETA ");
    tx_assert_contains(t->err, "\033[K");
    tx_assert_contains(t->err, "quiver fetch: 12 URLs"); /* the summary after it */
    /* stdout went to a file: clean records, no progress in them. */
    records *rs = parse_jsonl(t);
    cr_assert_eq(rs->n, 12);
    cr_assert_null(strchr(t->out, '\r'));
    records_free(rs);
    cli_result_free(t);

    cli_result *p = cli_run_with(NULL, args, __FILE__, __LINE__);
    cli_expect_status(p, 0);
    cr_assert_null(strchr(p->err, '\r'), "progress on a pipe:\n%s", p->err);
    cr_assert_null(strchr(p->err, '\033'), "escape codes on a pipe:\n%s", p->err);
    cr_assert_null(strstr(p->err, "ETA"), "progress on a pipe:\n%s", p->err);
    tx_assert_contains(p->err, "quiver fetch: 12 URLs");
    cli_result_free(p);

    /* -q: neither progress nor summary, even on a terminal. */
    args[n++] = "-q";
    args[n] = NULL;
    cli_result *q = cli_run_with(&(cli_run_opts){.pty = 1}, args, __FILE__, __LINE__);
    cli_expect_status(q, 0);
    cr_assert_eq(q->err_len, 0, "terminal showed: %s", q->err);
    cli_result_free(q);
}

/* A server of the test's that takes connections and never answers. */
typedef struct {
    int listener, conns[2], n;
    char base[32]; /* its URL, without a path */
} held;

static held held_server(void)
{
    held h = {.listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert(h.listener >= 0);
    cr_assert_eq(bind(h.listener, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(h.listener, 8), 0);
    cr_assert_eq(getsockname(h.listener, (struct sockaddr *)&a, &len), 0);
    snprintf(h.base, sizeof h.base, "http://127.0.0.1:%d", ntohs(a.sin_port));
    return h;
}

/* cli_run_opts.ready: both requests' connections are here. */
static int holds_two(void *arg)
{
    held *h = arg;
    int fd;
    while (h->n < 2 && (fd = accept4(h->listener, NULL, NULL, SOCK_CLOEXEC)) >= 0)
        h->conns[h->n++] = fd;
    return h->n == 2;
}

static void held_close(held *h)
{
    for (int i = 0; i < h->n; i++) close(h->conns[i]);
    close(h->listener);
}

Test(cli_fetch, ctrl_c_cancels_in_flight_and_still_summarises, .timeout = 60)
{
    /* Two in flight, one queued behind them; SIGINT to the whole process
     * group on a terminal, as Ctrl-C sends it: the process executor's
     * workers get it too, and must not die of it. It goes once the tool
     * has submitted them (its progress line is drawn then): 700 ms after
     * the start, a loaded machine had not always come that far. */
    const char *a = tu("/delay/10?a"), *b = tu("/delay/10?b"), *c = tu("/get?queued");
    cli_run_opts ctrl_c = {
        .signal = SIGINT, .signal_after_ms = 300, .pty = 1, .signal_after_output = 1};
    cli_result *r = cli_run(&ctrl_c, "fetch", "--executor", tx_kind_name(), "-j", "2", a, b, c);
    cli_expect_status(r, 128 + SIGINT);
    cr_assert_lt(r->ms, 5000.0, "stopping took %.0f ms", r->ms);
    records *rs = parse_jsonl(r);
    cr_assert_eq(rs->n, 3);
    for (size_t i = 0; i < 3; i++) {
        const char *err = json_string_value(json_object_get(rs->rec[i], "error"));
        cr_assert(err && strncmp(err, "QV_ECANCELLED", 13) == 0, "error: %s", err);
    }
    tx_assert_contains(r->err, "QV_ECANCELLED=3");
    records_free(rs);
    cli_result_free(r);

    /* A plain SIGTERM to the tool alone (no terminal) stops it the same way.
     * Nothing is drawn there: it goes once a server of the test's has both
     * requests' connections (700 ms after the start, as before, a loaded
     * machine need not have come that far either). */
    held h = held_server();
    char ha[64], hb[64];
    snprintf(ha, sizeof ha, "%s/a", h.base);
    snprintf(hb, sizeof hb, "%s/b", h.base);
    cli_run_opts term = {.signal = SIGTERM, .ready = holds_two, .ready_arg = &h};
    r = cli_run(&term, "fetch", "--executor", tx_kind_name(), "-j", "2", ha, hb);
    cli_expect_status(r, 128 + SIGTERM);
    rs = parse_jsonl(r);
    cr_assert_eq(rs->n, 2);
    tx_assert_contains(r->err, "QV_ECANCELLED=2");
    records_free(rs);
    cli_result_free(r);
    held_close(&h);
}

Test(cli_fetch, process_executor_works_or_says_it_is_not_available, .timeout = 60)
{
    cli_result *r = CLI("fetch", "--executor", "processes", tu("/get"));
    if (r->status == 2) {
        tx_assert_contains(r->err, "not available");
        cr_assert_eq(r->out_len, 0);
    } else {
        cli_expect_status(r, 0);
        records *rs = parse_jsonl(r);
        cr_assert_eq(rs->n, 1);
        cr_assert_eq(jint(rs->rec[0], "status"), 200);
        records_free(rs);
    }
    cli_result_free(r);
}

static void expect_usage_error(cli_result *r, const char *reason)
{
    cli_expect_status(r, 2);
    cr_assert_eq(r->out_len, 0, "stdout: %s", r->out);
    tx_assert_contains(r->err, reason);
    tx_assert_contains(r->err, "usage: quiver fetch");
    cli_result_free(r);
}

Test(cli_fetch, bad_command_lines, .timeout = 60)
{
    const char *u = tu("/get");
    expect_usage_error(CLI("fetch"), "no URLs");
    expect_usage_error(CLI("fetch", "--bogus", u), "unknown option '--bogus'");
    expect_usage_error(CLI("fetch", "-j", "0", u), "-j wants");
    expect_usage_error(CLI("fetch", "-j", "many", u), "-j wants");
    expect_usage_error(CLI("fetch", "--retries", "-1", u), "--retries wants");
    expect_usage_error(CLI("fetch", "--retry-delay", "0", u), "--retry-delay wants");
    expect_usage_error(CLI("fetch", "--rate", "0", u), "--rate wants");
    expect_usage_error(CLI("fetch", "--rate", "fast", u), "--rate wants");
    expect_usage_error(CLI("fetch", "--max-queued", "0", u), "--max-queued wants");
    expect_usage_error(CLI("fetch", "--executor", "fibers", u), "--executor");
    expect_usage_error(CLI("fetch", u, "-i"), "needs a value");

    cli_result *r = CLI("fetch", "-i", "/nonexistent/urls.txt");
    cli_expect_status(r, 1);
    tx_assert_contains(r->err, "cannot open /nonexistent/urls.txt");
    cli_result_free(r);
}

Test(cli_fetch, output_dir_takes_a_large_body_as_it_arrives, .timeout = 60)
{
    char *root = cli_tmpdir();
    char out[PATH_MAX], url[512], src[512], cmd[2 * PATH_MAX + 32];
    snprintf(out, sizeof out, "%s/bodies", root);
    snprintf(url, sizeof url, "%s/big", tx_env("QV_NGINX_URL", "nginx"));
    snprintf(src, sizeof src, "%s/big", tx_env("QV_NGINX_WWW", "nginx"));
    cli_result *r = CLI("fetch", "--executor", tx_kind_name(), "-o", out, url);
    cli_expect_status(r, 0);
    records *rs = parse_jsonl(r);
    cr_assert_eq(rs->n, 1);
    json_t *rec = record_for(rs, url);
    const char *file = json_string_value(json_object_get(rec, "file"));
    cr_assert_not_null(file);
    cr_assert_eq(jint(rec, "bytes"), 64LL << 20);
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", file, src);
    cr_assert_eq(system(cmd), 0, "%s differs from what nginx serves", file);
    cr_assert_eq(count_entries(out), 1, "a temporary file was left behind");
    records_free(rs);
    cli_result_free(r);
    cli_rmtree(root);
    free(root);
}
