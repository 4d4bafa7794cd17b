/* Cookies that last: .cookie_file loads a Netscape cookie file at session
 * creation, qv_session_save_cookies writes the jar atomically, and
 * qv_response_cookie reads what a response set. */
#include "support.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

TestSuite(cookiefile, .timeout = 30);

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/qv-cookies.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.') unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

static const char *in_dir(const char *name)
{
    static char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return p;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp, "cannot open %s", path);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static size_t entries(void)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

Test(cookiefile, save_then_load_in_a_new_session, .init = make_dir, .fini = remove_dir,
     .timeout = 30)
{
    const char *path = strdup(in_dir("jar.txt"));
    qv_session *s = TX_SESSION();
    qv_future *f;
    tx_get_ok(s, &f, tu("/cookies/set?k=v1&other=v2"));
    qv_future_release(f);
    cr_assert_eq(qv_session_save_cookies(s, path), QV_OK, "%s", qv_last_error());
    tx_assert_str_eq(qv_last_error(), "");
    qv_session_free(s);

    /* curl's format: a header line, then one line of seven tab-separated fields. */
    const char *text = slurp(path);
    cr_assert(strncmp(text, "# Netscape HTTP Cookie File\n", 28) == 0, "%s", text);
    tx_assert_contains(text, "\tk\tv1\n");
    tx_assert_contains(text, "\tother\tv2\n");
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
    cr_assert_eq(entries(), 1, "a temporary file was left behind");

    /* A new session starts with them, and sends them. */
    s = TX_SESSION(.cookie_file = path);
    tx_expect_cookie(s, "k", "v1");
    qv_response *r = tx_get_ok(s, &f, tu("/cookies"));
    tx_assert_str_eq(tx_jstr(tx_json(r), "cookies/k"), "v1");
    tx_assert_str_eq(tx_jstr(tx_json(r), "cookies/other"), "v2");
    qv_future_release(f);

    /* Saving over the file replaces it whole. */
    tx_get_ok(s, &f, tu("/cookies/delete?other"));
    qv_future_release(f);
    cr_assert_eq(qv_session_save_cookies(s, path), QV_OK, "%s", qv_last_error());
    text = slurp(path);
    tx_assert_contains(text, "\tk\tv1\n");
    cr_assert_null(strstr(text, "\tother\t"), "%s", text);
    cr_assert_eq(entries(), 1);
    qv_session_free(s);
    free((char *)path);
}

Test(cookiefile, loads_what_curl_writes, .init = make_dir, .fini = remove_dir, .timeout = 30)
{
    /* As curl -c writes it: comments, an HttpOnly cookie, a session cookie,
     * an empty value, one that expired (dropped), CR LF line ends. */
    char text[1024];
    snprintf(text, sizeof(text),
             "# Netscape HTTP Cookie File\n"
             "# https://curl.se/docs/http-cookies.html\r\n"
             "\n"
             "#HttpOnly_127.0.0.1\tFALSE\t/\tFALSE\t0\thttponly\tyes\n"
             "127.0.0.1\tFALSE\t/\tFALSE\t%lld\tlasting\tlong\r\n"
             "127.0.0.1\tFALSE\t/\tFALSE\t0\tempty\t\n"
             "127.0.0.1\tFALSE\t/\tFALSE\t1\tgone\tlong ago\n",
             (long long)time(NULL) + 3600);
    FILE *fp = fopen(in_dir("curl.txt"), "w");
    cr_assert_not_null(fp);
    fputs(text, fp);
    fclose(fp);
    qv_session *s = TX_SESSION(.cookie_file = in_dir("curl.txt"));
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/cookies"));
    json_t *j = tx_json(r);
    tx_assert_str_eq(tx_jstr(j, "cookies/httponly"), "yes");
    tx_assert_str_eq(tx_jstr(j, "cookies/lasting"), "long");
    tx_assert_str_eq(tx_jstr(j, "cookies/empty"), "");
    cr_assert_null(tx_jget(j, "cookies/gone"));
    qv_future_release(f);
    qv_session_free(s);
}

Test(cookiefile, missing_is_empty_unreadable_and_malformed_fail, .init = make_dir,
     .fini = remove_dir, .timeout = 30)
{
    /* Missing: an empty jar, as curl and requests take it. */
    qv_session *s = TX_SESSION(.cookie_file = in_dir("none.txt"));
    tx_expect_cookie(s, "k", NULL);
    qv_session_free(s);

    qv_session_opts o = {.size = sizeof(o), .executor_kind = tx_kind(), .cookie_file = dir};
    cr_assert_eq(qv_session_new(&s, &o), QV_EIO); /* a directory */
    cr_assert_null(s);
    tx_assert_contains(qv_last_error(), dir);

    FILE *fp = fopen(in_dir("bad.txt"), "w");
    cr_assert_not_null(fp);
    fputs("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tok\t1\n{\"json\": 1}\n", fp);
    fclose(fp);
    o.cookie_file = in_dir("bad.txt");
    cr_assert_eq(qv_session_new(&s, &o), QV_EINVAL);
    tx_assert_contains(qv_last_error(), "line 3 of the cookie file");
    tx_assert_contains(qv_last_error(), in_dir("bad.txt"));

    /* The message goes with the next call that succeeds. */
    o.cookie_file = NULL;
    cr_assert_eq(qv_session_new(&s, &o), QV_OK);
    tx_assert_str_eq(qv_last_error(), "");
    qv_session_free(s);
}

Test(cookiefile, save_failure_is_eio_naming_the_path, .init = make_dir, .fini = remove_dir,
     .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_session_set_cookie(s, "k", "v", "127.0.0.1");
    const char *path = "/nonexistent-dir-of-quiver/jar.txt";
    cr_assert_eq(qv_session_save_cookies(s, path), QV_EIO);
    tx_assert_contains(qv_last_error(), path);
    tx_assert_contains(qv_last_error(), "No such file or directory");
    /* Over a directory: the rename fails, and the new file goes again. */
    cr_assert_eq(mkdir(in_dir("sub"), 0700), 0);
    cr_assert_eq(qv_session_save_cookies(s, in_dir("sub")), QV_EIO);
    tx_assert_contains(qv_last_error(), "rename");
    cr_assert_eq(entries(), 1, "a temporary file was left behind");
    rmdir(in_dir("sub"));
    cr_assert_eq(qv_session_save_cookies(NULL, path), QV_EINVAL);
    cr_assert_eq(qv_session_save_cookies(s, NULL), QV_EINVAL);
    qv_session_free(s);
}

Test(cookiefile, response_cookie_reads_the_final_responses_set_cookie, .timeout = 30)
{
    qv_session *s = TX_SESSION();
    qv_future *f;
    /* The redirect that sets them, seen on its own. */
    cr_assert_eq(qv_get(s, &f, tu("/cookies/set?a=1&b=two"), .no_redirects = 1), QV_OK);
    qv_response *r = tx_expect_status(f, 302);
    tx_assert_str_eq(qv_response_cookie(r, "a"), "1");
    tx_assert_str_eq(qv_response_cookie(r, "b"), "two");
    cr_assert_null(qv_response_cookie(r, "A")); /* names are case-sensitive */
    cr_assert_null(qv_response_cookie(r, "c"));
    qv_future_release(f);

    /* Followed: the final response (/cookies) set none, like requests'
     * r.cookies; the jar has them, and the redirect's headers. */
    cr_assert_eq(qv_get(s, &f, tu("/cookies/set?c=3")), QV_OK);
    r = tx_expect_status(f, 200);
    cr_assert_null(qv_response_cookie(r, "c"));
    cr_assert_eq(qv_response_history_len(r), 1);
    tx_assert_str_eq(qv_response_cookie(qv_response_history(r, 0), "c"), "3");
    tx_expect_cookie(s, "c", "3");
    qv_future_release(f);

    /* A deleting Set-Cookie (an expiry in the past) reads as none. */
    cr_assert_eq(qv_get(s, &f, tu("/cookies/delete?a"), .no_redirects = 1), QV_OK);
    r = tx_expect_status(f, 302);
    cr_assert_not_null(qv_response_header(r, "Set-Cookie"));
    cr_assert_null(qv_response_cookie(r, "a"));
    qv_future_release(f);

    /* Headers of our own: the last of a name wins; Max-Age decides. */
    cr_assert_eq(qv_get(s, &f,
                        tu("/response-headers?Set-Cookie=x%3Dold&Set-Cookie=x%3D%20new%20%3B%20Path"
                           "%3D%2F&Set-Cookie=y%3D1%3B%20Max-Age%3D0&Set-Cookie=z%3D2%3B%20Max-Age%"
                           "3D60%3B%20Expires%3DThu%2C%2001%20Jan%201970%2000%3A00%3A00%20GMT")),
                 QV_OK);
    r = tx_expect_status(f, 200);
    tx_assert_str_eq(qv_response_cookie(r, "x"), "new");
    cr_assert_null(qv_response_cookie(r, "y"));
    tx_assert_str_eq(qv_response_cookie(r, "z"), "2");
    cr_assert_null(qv_response_cookie(NULL, "x"));
    cr_assert_null(qv_response_cookie(r, NULL));
    qv_future_release(f);
    qv_session_free(s);
}
