/* Request bodies and parameters: query params, raw bodies, JSON, urlencoded
 * forms, multipart (inline and file parts), and transparent decompression. */
#include "support.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

TestSuite(body, .timeout = 30);

Test(body, params_are_url_encoded, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get"),
                        .params = (const qv_param[]){{"q", "hello world"},
                                                     {"amp", "a&b"},
                                                     {"eq", "x=y"},
                                                     {"plus", "1+1"},
                                                     {"pct", "100%"},
                                                     {"hash", "#frag"},
                                                     {"utf8", "h\xc3\xa9llo \xe2\x98\x83"},
                                                     {"sp ace", "k"},
                                                     {0}}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    json_t *j = tx_json(r);
    tx_assert_str_eq(tx_jstr(j, "args/q"), "hello world");
    tx_assert_str_eq(tx_jstr(j, "args/amp"), "a&b");
    tx_assert_str_eq(tx_jstr(j, "args/eq"), "x=y");
    tx_assert_str_eq(tx_jstr(j, "args/plus"), "1+1");
    tx_assert_str_eq(tx_jstr(j, "args/pct"), "100%");
    tx_assert_str_eq(tx_jstr(j, "args/hash"), "#frag");
    tx_assert_str_eq(tx_jstr(j, "args/utf8"), "h\xc3\xa9llo \xe2\x98\x83");
    tx_assert_str_eq(tx_jstr(j, "args/sp ace"), "k");
    cr_assert_eq(json_object_size(json_object_get(j, "args")), 8, "unexpected extra args");
    qv_future_release(f);
    qv_session_free(s);
}

Test(body, params_appended_to_existing_query, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_get(s, &f, tu("/get?a=1"), .params = (const qv_param[]){{"b", "2"}, {0}}),
                 QV_OK);
    json_t *j = tx_json(tx_expect_status(f, 200));
    tx_assert_str_eq(tx_jstr(j, "args/a"), "1");
    tx_assert_str_eq(tx_jstr(j, "args/b"), "2");
    qv_future_release(f);

    /* Repeated names are all sent. */
    cr_assert_eq(
        qv_get(s, &f, tu("/get"), .params = (const qv_param[]){{"k", "1"}, {"k", "2"}, {0}}),
        QV_OK);
    j = tx_json(tx_expect_status(f, 200));
    json_t *k = tx_jget(j, "args/k");
    cr_assert(json_is_array(k) && json_array_size(k) == 2, "args/k is not [\"1\",\"2\"]");
    tx_assert_str_eq(json_string_value(json_array_get(k, 0)), "1");
    tx_assert_str_eq(json_string_value(json_array_get(k, 1)), "2");
    qv_future_release(f);
    qv_session_free(s);
}

Test(body, raw_body, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    char *payload = strdup("hello raw body \xc3\xa9");
    cr_assert_eq(qv_post(s, &f, tu("/post"), .body = payload,
                         .headers = (const qv_header[]){{"Content-Type", "text/plain"}, {0}}),
                 QV_OK);
    /* Everything is copied at submit: the caller may scribble over it. */
    memset(payload, 'X', strlen(payload));
    free(payload);
    json_t *j = tx_json(tx_expect_status(f, 200));
    tx_assert_str_eq(tx_jstr(j, "data"), "hello raw body \xc3\xa9");
    tx_assert_str_eq(tx_jstr(j, "headers/Content-Type"), "text/plain");
    tx_assert_str_eq(tx_jstr(j, "headers/Content-Length"), "17");
    qv_future_release(f);

    /* body_len limits the bytes sent. */
    cr_assert_eq(qv_put(s, &f, tu("/put"), .body = "abcdef", .body_len = 3,
                        .headers = (const qv_header[]){{"Content-Type", "text/plain"}, {0}}),
                 QV_OK);
    j = tx_json(tx_expect_status(f, 200));
    tx_assert_str_eq(tx_jstr(j, "data"), "abc");
    qv_future_release(f);
    qv_session_free(s);
}

Test(body, json_round_trip, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    json_t *doc =
        json_pack("{s:s, s:i, s:b, s:n, s:[i,i,i], s:{s:s}}", "name", "quiver \xe2\x98\x83", "n",
                  42, "ok", 1, "nothing", "list", 1, 2, 3, "nested", "k", "v");
    cr_assert_not_null(doc);
    qv_future *f;
    cr_assert_eq(qv_post(s, &f, tu("/post"), .json = doc), QV_OK);
    json_decref(doc); /* copied (serialised) at submit */
    json_t *j = tx_json(tx_expect_status(f, 200));
    json_t *echoed = json_object_get(j, "json");
    json_t *expect =
        json_pack("{s:s, s:i, s:b, s:n, s:[i,i,i], s:{s:s}}", "name", "quiver \xe2\x98\x83", "n",
                  42, "ok", 1, "nothing", "list", 1, 2, 3, "nested", "k", "v");
    char *got = json_dumps(echoed, JSON_SORT_KEYS);
    cr_assert(json_equal(echoed, expect), "server saw json %s", got ? got : "(null)");
    free(got);
    json_decref(expect);
    tx_assert_contains(tx_jstr(j, "headers/Content-Type"), "application/json");
    qv_future_release(f);
    qv_session_free(s);
}

Test(body, urlencoded_form, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    cr_assert_eq(qv_post(s, &f, tu("/post"),
                         .form = (const qv_param[]){{"name", "Ada Lovelace"},
                                                    {"expr", "a&b=c"},
                                                    {"utf8", "\xc3\xa9t\xc3\xa9"},
                                                    {0}}),
                 QV_OK);
    json_t *j = tx_json(tx_expect_status(f, 200));
    tx_assert_str_eq(tx_jstr(j, "form/name"), "Ada Lovelace");
    tx_assert_str_eq(tx_jstr(j, "form/expr"), "a&b=c");
    tx_assert_str_eq(tx_jstr(j, "form/utf8"), "\xc3\xa9t\xc3\xa9");
    tx_assert_contains(tx_jstr(j, "headers/Content-Type"), "application/x-www-form-urlencoded");
    qv_future_release(f);
    qv_session_free(s);
}

static char *write_temp(const char *content)
{
    char *path = strdup("/tmp/quiver-test-upload-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp failed");
    size_t n = strlen(content);
    cr_assert_eq(write(fd, content, n), (ssize_t)n);
    close(fd);
    return path;
}

Test(body, multipart_inline_and_file, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    char *path = write_temp("file contents\nline two\n");
    qv_future *f;
    cr_assert_eq(qv_post(s, &f, tu("/post"),
                         .multipart =
                             (const qv_part[]){
                                 {.name = "field", .value = "inline value"},
                                 {.name = "sized", .value = "abcdef", .value_len = 2},
                                 {.name = "upload",
                                  .file = path,
                                  .filename = "hello.txt",
                                  .content_type = "text/plain"},
                                 {0},
                             }),
                 QV_OK);
    json_t *j = tx_json(tx_expect_status(f, 200));
    tx_assert_str_eq(tx_jstr(j, "form/field"), "inline value");
    tx_assert_str_eq(tx_jstr(j, "form/sized"), "ab");
    tx_assert_str_eq(tx_jstr(j, "files/upload"), "file contents\nline two\n");
    tx_assert_contains(tx_jstr(j, "headers/Content-Type"), "multipart/form-data");
    qv_future_release(f);
    unlink(path);
    free(path);
    qv_session_free(s);
}

Test(body, multipart_unreadable_file_is_eio_at_result, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f = NULL;
    int rc = qv_post(s, &f, tu("/post"),
                     .multipart = (const qv_part[]){
                         {.name = "upload", .file = "/nonexistent/quiver/no-such-file.txt"}, {0}});
    cr_assert_eq(rc, QV_OK, "the file is read when the transfer runs, not at submit (got %s)",
                 qv_errname(rc));
    tx_expect_error(f, QV_EIO);
    cr_assert_eq(qv_future_state_get(f), QV_FAILED);
    qv_future_release(f);
    qv_session_free(s);
}

/* A file part that is a FIFO (no writer yet) is refused with QV_EINVAL
 * naming it: libcurl opens and reads a part's file itself, waiting for a
 * FIFO's writer and bytes, where no cancel is heard, and on QV_LOOP every
 * transfer stalled with it (the GET beside it never completed). */
Test(body, a_multipart_file_part_that_is_a_fifo_is_refused, .timeout = 30)
{
    char dir[] = "/tmp/qv-body-XXXXXX", fifo[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    qv_session *s = TX_SESSION(.max_workers = 2);
    qv_future *f, *get;
    cr_assert_eq(qv_post(s, &f, tu("/post"),
                         .multipart = (const qv_part[]){{.name = "upload", .file = fifo}, {0}}),
                 QV_OK);
    cr_assert_eq(qv_get(s, &get, tu("/get")), QV_OK);
    int rc = qv_future_wait(get, 10000);
    int done = qv_future_wait(f, 5000) == QV_OK;
    if (!done) { /* (lets a stuck one go) */
        int w = open(fifo, O_WRONLY | O_NONBLOCK);
        if (w >= 0) close(w);
    }
    cr_assert_eq(rc, QV_OK, "a GET beside a multipart part read from a FIFO did not complete");
    tx_expect_status(get, 200);
    cr_assert(done, "the multipart request waits for its FIFO part's writer");
    const char *msg = tx_expect_error(f, QV_EINVAL);
    tx_assert_contains(msg, fifo);
    tx_assert_contains(msg, "not a regular file");
    qv_future_release(get);
    qv_future_release(f);
    qv_session_free(s);
    unlink(fifo);
    rmdir(dir);
}

Test(body, gzip_decoded, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/gzip"));
    json_t *j = tx_json(r);
    cr_assert(json_is_true(json_object_get(j, "gzipped")), "\"gzipped\" is not true: %s",
              qv_response_text(r));
    tx_assert_contains(tx_jstr(j, "headers/Accept-Encoding"), "gzip");
    qv_future_release(f);
    qv_session_free(s);
}

Test(body, deflate_decoded, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/deflate"));
    json_t *j = tx_json(r);
    cr_assert(json_is_true(json_object_get(j, "deflated")), "\"deflated\" is not true: %s",
              qv_response_text(r));
    tx_assert_contains(tx_jstr(j, "headers/Accept-Encoding"), "deflate");
    qv_future_release(f);
    qv_session_free(s);
}

Test(body, json_error_on_non_json, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/html"));
    int err = QV_OK;
    cr_assert_null(qv_response_json(r, &err), "HTML parsed as JSON");
    cr_assert_eq(err, QV_EJSON, "err is %s", qv_errname(err));
    cr_assert_not_null(qv_response_json_error(r));
    cr_assert_null(qv_response_json(r, NULL), "err may be NULL");
    qv_future_release(f);
    qv_session_free(s);
}
