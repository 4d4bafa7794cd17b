/* The quiver tool: `quiver get`, the top level (--help, --version), and the
 * exit codes and usage errors every subcommand shares. */
#include "support.h"

#include "cli/run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(cli_get, .timeout = 60);

/* The body of `quiver get` output: what follows the first blank line. */
static const char *body_of(const cli_result *r)
{
    const char *p = strstr(r->out, "\n\n");
    cr_assert_not_null(p, "no blank line after the headers in:\n%s", r->out);
    return p + 2;
}

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
    cr_assert_not_null(j, "not JSON (%s): %s", je.text, text);
    return j;
}

Test(cli_get, prints_status_line_headers_blank_line_and_body, .timeout = 60)
{
    cli_result *r = CLI("get", "--executor", tx_kind_name(), tu("/get?q=1"), "-H", "X-Test: yes");
    cli_expect_status(r, 0);
    cr_assert(strncmp(r->out, "HTTP/1.1 200 OK\n", 16) == 0, "status line: %.40s", r->out);
    tx_assert_contains(r->out, "\nContent-Type: application/json\n");
    /* Every line before the blank one is "Name: value". */
    const char *body = body_of(r);
    for (const char *line = strchr(r->out, '\n') + 1; line < body - 1;
         line = strchr(line, '\n') + 1) {
        const char *colon = strchr(line, ':');
        cr_assert(colon && colon < strchr(line, '\n'), "not a header line: %.60s", line);
    }
    json_t *j = parse(body);
    tx_assert_str_eq(tx_jstr(j, "args/q"), "1");
    tx_assert_str_eq(tx_jstr(j, "headers/X-Test"), "yes");
    json_decref(j);
    cr_assert_eq(r->err_len, 0, "stderr: %s", r->err);
    cli_result_free(r);
}

Test(cli_get, pretty_indents_json_and_keeps_its_value, .timeout = 60)
{
    cli_result *plain = CLI("get", tu("/anything?x=1"), "-b");
    cli_result *pretty = CLI("get", tu("/anything?x=1"), "--pretty", "-b");
    cli_expect_status(plain, 0);
    cli_expect_status(pretty, 0);
    const char *head = "{\n  \"args\": {\n    \"x\": \"1\"\n  },\n  \"data\": \"\",\n";
    cr_assert(strncmp(pretty->out, head, strlen(head)) == 0, "not indented:\n%s", pretty->out);
    cr_assert_eq(pretty->out[pretty->out_len - 1], '\n');
    json_t *a = parse(plain->out), *b = parse(pretty->out);
    /* The echoed URL is the same; the rest (headers) must be too. */
    cr_assert(json_equal(a, b), "pretty output parses to something else:\n%s\n%s", plain->out,
              pretty->out);
    json_decref(a);
    json_decref(b);
    cli_result_free(plain);
    cli_result_free(pretty);
}

Test(cli_get, pretty_leaves_a_non_json_body_alone, .timeout = 60)
{
    cli_result *r = CLI("get", tu("/html"), "--pretty", "-b");
    cli_expect_status(r, 0);
    tx_assert_contains(r->out, "<html>");
    cli_result_free(r);
}

Test(cli_get, json_body_is_sent_as_written_with_its_content_type, .timeout = 60)
{
    /* 0.1 stays "0.1": the text is sent, not a re-encoding of it. */
    const char *doc = "{\"n\":0.1,\"list\":[1,2]}";
    cli_result *r = CLI("get", tu("/anything"), "--json", doc, "-b");
    cli_expect_status(r, 0);
    json_t *j = parse(r->out);
    tx_assert_str_eq(tx_jstr(j, "method"), "POST");
    tx_assert_str_eq(tx_jstr(j, "data"), doc);
    tx_assert_str_eq(tx_jstr(j, "headers/Content-Type"), "application/json");
    json_decref(j);
    cli_result_free(r);
}

Test(cli_get, method_data_and_data_from_a_file, .timeout = 60)
{
    cli_result *r = CLI("get", "-X", "PUT", "-d", "hello", tu("/anything"), "-b");
    cli_expect_status(r, 0);
    json_t *j = parse(r->out);
    tx_assert_str_eq(tx_jstr(j, "method"), "PUT");
    tx_assert_str_eq(tx_jstr(j, "data"), "hello");
    json_decref(j);
    cli_result_free(r);

    char *dir = cli_tmpdir();
    char path[4096], arg[4200];
    snprintf(path, sizeof path, "%s/body.txt", dir);
    cli_write_file(path, "from a file");
    snprintf(arg, sizeof arg, "@%s", path);
    r = CLI("get", "-d", arg, "-H", "Content-Type: text/plain", tu("/anything"), "-b");
    cli_expect_status(r, 0);
    j = parse(r->out);
    tx_assert_str_eq(tx_jstr(j, "method"), "POST"); /* a body without -X means POST */
    tx_assert_str_eq(tx_jstr(j, "data"), "from a file");
    tx_assert_str_eq(tx_jstr(j, "headers/Content-Type"), "text/plain");
    json_decref(j);
    cli_result_free(r);

    /* @- reads stdin. */
    r = cli_run(&(cli_run_opts){.input = "piped in"}, "get", "-d", "@-", tu("/anything"), "-b");
    cli_expect_status(r, 0);
    j = parse(r->out);
    tx_assert_str_eq(tx_jstr(j, "data"), "piped in");
    json_decref(j);
    cli_result_free(r);
    cli_rmtree(dir);
    free(dir);
}

Test(cli_get, header_removed_or_sent_empty, .timeout = 60)
{
    cli_result *r = CLI("get", tu("/headers"), "-b", "-H", "Accept:", "-H", "X-Empty;");
    cli_expect_status(r, 0);
    json_t *j = parse(r->out);
    cr_assert_null(tx_jget(j, "headers/Accept"), "Accept was sent: %s", r->out);
    tx_assert_str_eq(tx_jstr(j, "headers/X-Empty"), "");
    json_decref(j);
    cli_result_free(r);
}

Test(cli_get, http_error_status_is_a_response_unless_fail, .timeout = 60)
{
    cli_result *r = CLI("get", tu("/status/404"));
    cli_expect_status(r, 0);
    cr_assert(strncmp(r->out, "HTTP/1.1 404 NOT FOUND\n", 23) == 0, "%.40s", r->out);
    cli_result_free(r);

    r = CLI("get", "--fail", tu("/status/503"));
    cli_expect_status(r, 3);
    tx_assert_contains(r->out, "HTTP/1.1 503 ");
    tx_assert_contains(r->err, "HTTP 503");
    cli_result_free(r);

    r = CLI("get", "-f", tu("/status/200"));
    cli_expect_status(r, 0);
    cli_result_free(r);
}

Test(cli_get, connection_error_exits_1_naming_the_kind, .timeout = 60)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/nothing", tx_closed_port());
    cli_result *r = CLI("get", "--executor", tx_kind_name(), url);
    cli_expect_status(r, 1);
    cr_assert_eq(r->out_len, 0, "stdout: %s", r->out);
    cr_assert_eq(cli_count_lines(r->err), 1, "not one line: %s", r->err);
    cr_assert(strncmp(r->err, "quiver get: QV_ECONNECT: ", 25) == 0, "stderr: %s", r->err);
    tx_assert_contains(r->err, url);
    cli_result_free(r);
}

Test(cli_get, timeout_exits_1_with_QV_ETIMEOUT, .timeout = 60)
{
    cli_result *r = CLI("get", "--timeout", "0.5", tu("/delay/3"));
    cli_expect_status(r, 1);
    tx_assert_contains(r->err, "QV_ETIMEOUT");
    cr_assert_lt(r->ms, 2500.0, "took %.0f ms with --timeout 0.5", r->ms);
    cli_result_free(r);
}

Test(cli_get, unsupported_url_exits_1_with_QV_EURL, .timeout = 60)
{
    cli_result *r = CLI("get", "ftp://127.0.0.1/x");
    cli_expect_status(r, 1);
    tx_assert_contains(r->err, "QV_EURL");
    cli_result_free(r);
}

Test(cli_get, tls_verified_against_cacert_or_skipped_with_insecure, .timeout = 60)
{
    const char *url = tx_tls_url("/hello");
    cli_result *r = CLI("get", url, "-b");
    cli_expect_status(r, 1); /* a throwaway CA: not trusted by default */
    tx_assert_contains(r->err, "QV_ETLS");
    cli_result_free(r);

    r = CLI("get", url, "-b", "--cacert", tx_tls_ca());
    cli_expect_status(r, 0);
    tx_assert_str_eq(r->out, "hello tls");
    cli_result_free(r);

    r = CLI("get", url, "-b", "-k");
    cli_expect_status(r, 0);
    tx_assert_str_eq(r->out, "hello tls");
    cli_result_free(r);
}

/* A bad command line: exit 2, the reason and the usage on stderr, nothing on
 * stdout, and no request sent. */
static void expect_usage_error(cli_result *r, const char *reason, const char *usage)
{
    cli_expect_status(r, 2);
    cr_assert_eq(r->out_len, 0, "stdout: %s", r->out);
    tx_assert_contains(r->err, reason);
    tx_assert_contains(r->err, usage);
    cli_result_free(r);
}

Test(cli_get, bad_command_lines_exit_2_with_usage, .timeout = 60)
{
    const char *u = tu("/get");
    expect_usage_error(CLI("get", "--bogus", u), "unknown option '--bogus'", "usage: quiver get");
    expect_usage_error(CLI("get", "-Z", u), "unknown option '-Z'", "usage: quiver get");
    expect_usage_error(CLI("get"), "no URL given", "usage: quiver get");
    expect_usage_error(CLI("get", u, "-H"), "needs a value", "usage: quiver get");
    expect_usage_error(CLI("get", u, "--timeout"), "needs a value", "usage: quiver get");
    expect_usage_error(CLI("get", u, "-H", "no colon"), "is not 'NAME: VALUE'",
                       "usage: quiver get");
    expect_usage_error(CLI("get", u, "-H", "Bad Name: x"), "not a valid name", "usage: quiver get");
    expect_usage_error(CLI("get", u, "--timeout", "soon"), "--timeout", "usage: quiver get");
    expect_usage_error(CLI("get", u, "--timeout", "0"), "--timeout", "usage: quiver get");
    expect_usage_error(CLI("get", u, "--json", "{nope"), "not JSON", "usage: quiver get");
    expect_usage_error(CLI("get", u, "-d", "a", "--json", "1"), "one body", "usage: quiver get");
    expect_usage_error(CLI("get", u, "-X", "GET /x"), "not an HTTP method", "usage: quiver get");
    expect_usage_error(CLI("get", u, "--executor", "fibers"), "--executor", "usage: quiver get");
    expect_usage_error(CLI("get", u, u), "one URL only", "usage: quiver get");
    expect_usage_error(CLI("frobnicate"), "unknown command 'frobnicate'", "usage: quiver");
    expect_usage_error(CLI("--bogus"), "unknown option '--bogus'", "usage: quiver");
    expect_usage_error(CLI(NULL), "no command given", "usage: quiver");
}

Test(cli_get, help_and_version, .timeout = 60)
{
    cli_result *r = CLI("--help");
    cli_expect_status(r, 0);
    tx_assert_contains(r->out, "usage: quiver COMMAND");
    tx_assert_contains(r->out, "  get ");
    tx_assert_contains(r->out, "  fetch ");
    tx_assert_contains(r->out, "  bench ");
    cli_result_free(r);

    const char *cmds[] = {"get", "fetch", "bench"};
    for (size_t i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof want, "usage: quiver %s", cmds[i]);
        r = CLI(cmds[i], "--help");
        cli_expect_status(r, 0);
        tx_assert_contains(r->out, want);
        tx_assert_contains(r->out, "--timeout");
        cr_assert_eq(r->err_len, 0);
        cli_result_free(r);
        r = CLI("help", cmds[i]);
        cli_expect_status(r, 0);
        tx_assert_contains(r->out, want);
        cli_result_free(r);
        r = CLI(cmds[i], "-h");
        cli_expect_status(r, 0);
        tx_assert_contains(r->out, want);
        cli_result_free(r);
    }

    r = CLI("--version");
    cli_expect_status(r, 0);
    char want[64];
    snprintf(want, sizeof want, "quiver %s (libquiver %s, libcurl ", QV_VERSION_STRING,
             qv_version());
    cr_assert(strncmp(r->out, want, strlen(want)) == 0, "version: %s", r->out);
    cli_result_free(r);
}

Test(cli_get, verbose_shows_the_exchange_with_secrets_redacted, .timeout = 60)
{
    cli_result *r = CLI("get", "-v", "--executor", tx_kind_name(), tu("/headers"), "-H",
                        "Authorization: Bearer cli-s3cret", "-H", "Cookie: c=cli-c00kie");
    cli_expect_status(r, 0);
    tx_assert_contains(r->err, "\n> GET /headers HTTP/1.1\n");
    tx_assert_contains(r->err, "\n> Authorization: Bearer [redacted]\n");
    tx_assert_contains(r->err, "\n> Cookie: c=[redacted]\n");
    tx_assert_contains(r->err, "\n< HTTP/1.1 200 OK\n");
    tx_assert_contains(r->err, "* Connected to 127.0.0.1");
    cr_assert(!strstr(r->err, "cli-s3cret") && !strstr(r->err, "cli-c00kie"), "%s", r->err);
    /* stdout is the response, as without -v (the server got the token). */
    cr_assert(strncmp(r->out, "HTTP/1.1 200 OK\n", 16) == 0, "status line: %.40s", r->out);
    tx_assert_contains(r->out, "cli-s3cret");
    cli_result_free(r);
}

/* QV_DEBUG in the environment: every event on stderr, one line each, after
 * "quiver #<request id>"; secrets redacted unless it says "unsafe". */
Test(cli_get, qv_debug_env_prints_the_trace_to_stderr, .timeout = 60)
{
    cr_assert_eq(setenv("QV_DEBUG", "1", 1), 0);
    cli_result *r =
        CLI("get", "--executor", tx_kind_name(), tu("/cookies/set?k=env-j4r"), "-H",
            "Authorization: Bearer env-s3cret", "-H", "Proxy-Authorization: Basic env-pr0xy");
    cli_expect_status(r, 0);
    tx_assert_contains(r->err, "quiver #1 > GET /cookies/set?k=env-j4r HTTP/1.1\n");
    tx_assert_contains(r->err, "quiver #1 > Authorization: Bearer [redacted]\n");
    tx_assert_contains(r->err, "quiver #1 > Proxy-Authorization: Basic [redacted]\n");
    tx_assert_contains(r->err, "quiver #1 < Set-Cookie: k=[redacted]; Path=/");
    tx_assert_contains(r->err, "quiver #1 > Cookie: k=[redacted]\n");
    for (const char *line = r->err; *line; line = strchr(line, '\n') + 1) {
        cr_assert(strncmp(line, "quiver #1 ", 10) == 0, "a line of stderr: %.60s", line);
        cr_assert_not_null(strchr(line, '\n'));
        cr_assert(!strstr(line, "env-s3cret") && !strstr(line, "env-pr0xy"), "%.200s", line);
        /* the cookie's value: in the request line's query only */
        cr_assert(!strstr(line, "env-j4r") || strstr(line, "GET /cookies/set?k=env-j4r"), "%.200s",
                  line);
    }
    cli_result_free(r);

    cr_assert_eq(setenv("QV_DEBUG", "unsafe", 1), 0);
    r = CLI("get", "--executor", tx_kind_name(), tu("/get"), "-H",
            "Authorization: Bearer env-s3cret");
    cli_expect_status(r, 0);
    tx_assert_contains(r->err, "quiver #1 > Authorization: Bearer env-s3cret\n");
    cli_result_free(r);

    cr_assert_eq(setenv("QV_DEBUG", "0", 1), 0);
    r = CLI("get", "--executor", tx_kind_name(), tu("/get"));
    cli_expect_status(r, 0);
    cr_assert_eq(r->err_len, 0, "stderr: %s", r->err);
    cli_result_free(r);
}

/* ------------------------------------------------------ -o and --continue */

static long long file_size(const char *path)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "%s was not written", path);
    fseek(fp, 0, SEEK_END);
    long long n = ftell(fp);
    fclose(fp);
    return n;
}

/* 1 if the two files hold the same bytes. */
static int same_file(const char *a, const char *b)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

Test(cli_get, output_writes_the_body_to_a_file_with_a_progress_line, .timeout = 60)
{
    char dir[] = "/tmp/qv-cli-o-XXXXXX", path[64], src[512];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/big", dir);
    snprintf(src, sizeof src, "%s/big", tx_env("QV_NGINX_WWW", "nginx"));
    char url[512];
    snprintf(url, sizeof url, "%s/big", tx_env("QV_NGINX_URL", "nginx"));
    cli_result *r = CLI("get", "--executor", tx_kind_name(), url, "-o", path, "--progress");
    cli_expect_status(r, 0);
    cr_assert(strncmp(r->out, "HTTP/1.1 200 OK\n", 16) == 0, "status line: %.40s", r->out);
    cr_assert(same_file(path, src), "the file differs from what nginx serves");
    /* The last progress line counts every byte: 64 MiB of 64 MiB. */
    tx_assert_contains(r->err, "64.0 MiB / 64.0 MiB");
    tx_assert_contains(r->err, "/s");
    cli_result_free(r);
    snprintf(url, sizeof url, "rm -rf '%s'", dir);
    cr_assert_eq(system(url), 0);
}

Test(cli_get, continue_fetches_only_the_rest, .timeout = 60)
{
    char dir[] = "/tmp/qv-cli-c-XXXXXX", path[64], src[512], cmd[1200];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/big", dir);
    snprintf(src, sizeof src, "%s/big", tx_env("QV_NGINX_WWW", "nginx"));
    snprintf(cmd, sizeof cmd, "head -c 1000000 '%s' > '%s'", src, path);
    cr_assert_eq(system(cmd), 0);
    char url[512];
    snprintf(url, sizeof url, "%s/big", tx_env("QV_NGINX_URL", "nginx"));
    cli_result *r = CLI("get", "--executor", tx_kind_name(), url, "-o", path, "-C");
    cli_expect_status(r, 0);
    cr_assert(strncmp(r->out, "HTTP/1.1 206 Partial Content\n", 29) == 0, "status line: %.40s",
              r->out);
    cr_assert_eq(file_size(path), 64LL << 20);
    cr_assert(same_file(path, src), "the resumed file differs from what nginx serves");
    cli_result_free(r);
    cli_result *bad = CLI("get", url, "-C");
    cli_expect_status(bad, 2);
    tx_assert_contains(bad->err, "--continue needs -o FILE");
    cli_result_free(bad);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
