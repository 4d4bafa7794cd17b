/* output_path and upload_path are opened first and looked at through what
 * was opened (fstat): a look at the path (stat) and then an open of it let
 * another file take the name between the two. Here that happens every time:
 * this file's open() stands in front of libc's (quiver is linked in
 * statically, and an executable's definition wins for libcurl's calls too)
 * and, for the one path a test arms it with, renames a file prepared beside
 * it over that path just before the open goes on, as another program could
 * have done a moment after a stat. */
#include "support.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

TestSuite(openrace, .timeout = 60);

static int (*real_open)(const char *, int, ...);
static pthread_once_t real_open_once = PTHREAD_ONCE_INIT;

/* The path whose next open swaps in `swap_in` (renamed over it), while
 * `armed`. Set before the session starts: a process pool's zygote forks
 * with them. */
static char swap_path[256], swap_in[256];
static atomic_int armed;

static void find_real_open(void)
{
    *(void **)&real_open = dlsym(RTLD_NEXT, "open");
}

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, unsigned);
        va_end(ap);
    }
    pthread_once(&real_open_once, find_real_open);
    if (atomic_load(&armed) && strcmp(path, swap_path) == 0 && atomic_exchange(&armed, 0))
        rename(swap_in, swap_path);
    return real_open(path, flags, mode);
}

static char dir[64];

static const char *in_dir(const char *name)
{
    static _Thread_local char buf[4][256];
    static _Thread_local int next;
    char *b = buf[next++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

/* A fresh directory, and the next open of its "path" arms the swap of its
 * "new" (made by the caller) over it. */
static const char *arm(void)
{
    snprintf(dir, sizeof dir, "/tmp/qv-openrace-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(swap_path, sizeof swap_path, "%s", in_dir("path"));
    snprintf(swap_in, sizeof swap_in, "%s", in_dir("new"));
    atomic_store(&armed, 1);
    return swap_path;
}

/* Waits (bounded) for the swap, made in whichever process opened the path
 * (a process pool's worker for one), then disarms it here. */
static void expect_swapped(void)
{
    for (int i = 0; i < 1000 && access(swap_in, F_OK) == 0; i++) usleep(10000);
    cr_assert_neq(access(swap_in, F_OK), 0, "quiver never opened %s", swap_path);
    atomic_store(&armed, 0);
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    cr_assert_geq(fputs(text, fp), 0);
    cr_assert_eq(fclose(fp), 0);
}

static const char *nginx(const char *path)
{
    static _Thread_local char buf[512];
    snprintf(buf, sizeof buf, "%s%s", tx_env("QV_NGINX_URL", "nginx"), path);
    return buf;
}

/* upload_path a regular file, a FIFO by the time it is opened, whose writer
 * never comes: opened waiting (after a stat said "a file") the transfer's
 * thread hung in the open, where no cancel is heard (on QV_LOOP, with every
 * other transfer). Opened without waiting, the FIFO is a pipe whose writer
 * the transfer waits for as for its bytes, and a cancel ends it. */
Test(openrace, an_upload_path_that_becomes_a_fifo_is_never_opened_waiting)
{
    const char *path = arm();
    write_file(path, "a regular file\n");
    cr_assert_eq(mkfifo(swap_in, 0600), 0);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(
        qv_request(s, &f,
                   &(qv_request_opts){.method = "PUT", .url = tu("/put"), .upload_path = path}),
        QV_OK);
    expect_swapped();
    usleep(200000); /* (into the open, had it waited) */
    cr_assert_eq(qv_future_state_get(f), QV_RUNNING);
    cr_assert_eq(qv_future_cancel(f), 1);
    int rc = qv_future_wait(f, 5000);
    if (rc != QV_OK) { /* lets a stuck open go: this writer is the one it waits for */
        int w = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (w >= 0) close(w);
    }
    cr_assert_eq(rc, QV_OK, "the upload's open waited for the FIFO's writer");
    cr_assert_eq(qv_future_state_get(f), QV_CANCELLED);
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

/* output_path a FIFO when looked at, a regular file by the time it is
 * opened: taken for "no regular file", the file was written in place, over
 * what it held and never emptied (here the body over the start of a longer
 * text). Looked at through what is opened, it is a regular file: the body
 * goes to a temporary file renamed over it. */
Test(openrace, an_output_path_that_becomes_a_file_is_replaced_not_written_over)
{
    const char *path = arm();
    cr_assert_eq(mkfifo(path, 0600), 0);
    write_file(swap_in, "a longer text that was in the file before\n");
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(
        qv_request(s, &f, &(qv_request_opts){.url = nginx("/echo?body"), .output_path = path}),
        QV_OK);
    tx_expect_status(f, 200);
    expect_swapped();
    qv_future_release(f);
    qv_session_free(s);
    char buf[128] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "%s", strerror(errno));
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    cr_assert_geq(n, 0);
    tx_assert_str_eq(buf, "body");
    remove_dir();
}

/* resume = 1 on a path with no file when looked at, a FIFO with a reader by
 * the time it is opened: opened as a file to append to, the FIFO failed
 * ("cannot open": no end to seek to). Looked at through what is opened, it
 * is written in place from its start, as a FIFO found there is. */
Test(openrace, a_resumed_output_path_that_becomes_a_fifo_is_written_in_place)
{
    const char *path = arm();
    cr_assert_eq(mkfifo(swap_in, 0600), 0);
    int rd = open(swap_in, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    cr_assert_geq(rd, 0);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){
                                .url = nginx("/echo?resumed"), .output_path = path, .resume = 1}),
                 QV_OK);
    tx_expect_status(f, 200);
    expect_swapped();
    qv_future_release(f);
    qv_session_free(s);
    char buf[64] = {0};
    cr_assert_eq(read(rd, buf, sizeof buf - 1), 7, "the reader got \"%s\"", buf);
    tx_assert_str_eq(buf, "resumed");
    close(rd);
    remove_dir();
}
