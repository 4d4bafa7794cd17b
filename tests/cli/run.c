/* Runs the quiver tool for the CLI tests, on pipes or on a pseudo-terminal. */
#include "run.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* A run that takes longer is hung: killed, and the test fails (before
 * Criterion's own timeout, so the child never outlives the test). */
#define RUN_LIMIT_MS 45000.0

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

typedef struct buf {
    char *data;
    size_t len, cap;
} buf;

static void buf_add(buf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap) cap *= 2;
        b->data = realloc(b->data, cap);
        cr_assert_not_null(b->data, "out of memory");
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_finish(buf *b)
{
    if (!b->data) buf_add(b, "", 0);
}

/* A temporary file holding text (for stdin), or NULL for /dev/null. */
static char *temp_with(const char *text)
{
    char *path = strdup("/tmp/quiver-cli-test.XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
    size_t n = text ? strlen(text) : 0;
    cr_assert_eq(write(fd, text ? text : "", n), (ssize_t)n, "writing %s", path);
    close(fd);
    return path;
}

static void read_file_into(const char *path, buf *b)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "opening %s: %s", path, strerror(errno));
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0) buf_add(b, chunk, n);
    fclose(fp);
    buf_finish(b);
}

/* Reads the fds until all reach EOF (or EIO: a pty whose other side is
 * gone), sending the signal on time; kills a hung child. */
static void pump(pid_t pid, int *fds, buf **bufs, int nfds, const cli_run_opts *opts, double t0)
{
    /* On a pseudo-terminal the child leads its own process group, and the
     * signal goes to the whole group, as a Ctrl-C typed there would (the
     * process executor's workers included). */
    pid_t target = opts && opts->pty ? -pid : pid;
    int open_fds = nfds, signalled = 0;
    /* Where signal_after_ms counts from (-1: not yet known). */
    int wait = opts && ((opts->pty && opts->signal_after_output) || opts->ready);
    double from = wait ? -1 : t0;
    while (open_fds > 0) {
        struct pollfd pfd[2];
        int map[2], n = 0;
        for (int i = 0; i < nfds; i++) {
            if (fds[i] < 0) continue;
            pfd[n] = (struct pollfd){.fd = fds[i], .events = POLLIN};
            map[n++] = i;
        }
        double now = mono_ms();
        if (now - t0 > RUN_LIMIT_MS) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            cr_assert_fail("quiver ran for more than %.0f s: killed", RUN_LIMIT_MS / 1000);
        }
        int timeout = 100;
        if (from < 0 && opts->ready) {
            if (opts->ready(opts->ready_arg))
                from = now;
            else
                timeout = 10;
        }
        if (opts && opts->signal && !signalled && from >= 0) {
            double due = from + (double)opts->signal_after_ms;
            if (now >= due) {
                kill(target, opts->signal);
                signalled = 1;
            } else if (due - now < timeout) {
                timeout = (int)(due - now) + 1;
            }
        }
        int rc = poll(pfd, (nfds_t)n, timeout);
        if (rc < 0 && errno == EINTR) continue;
        cr_assert_geq(rc, 0, "poll: %s", strerror(errno));
        for (int k = 0; k < n; k++) {
            if (!pfd[k].revents) continue;
            int i = map[k];
            char chunk[8192];
            ssize_t got = read(fds[i], chunk, sizeof chunk);
            if (got > 0) {
                buf_add(bufs[i], chunk, (size_t)got);
                if (from < 0) from = mono_ms();
            } else if (got == 0 || errno == EIO) {
                close(fds[i]);
                fds[i] = -1;
                open_fds--;
            } else if (errno != EINTR && errno != EAGAIN) {
                cr_assert_fail("read: %s", strerror(errno));
            }
        }
    }
}

static int wait_status(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0) cr_assert_eq(errno, EINTR, "waitpid: %s", strerror(errno));
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    return 128 + WTERMSIG(st);
}

static void run_piped(const cli_run_opts *opts, char **argv, const char *in_path, cli_result *r)
{
    int out[2], err[2];
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, in_path ? in_path : "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    pid_t pid;
    double t0 = mono_ms();
    int rc = posix_spawn(&pid, QV_CLI_PATH, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "cannot run %s: %s", QV_CLI_PATH, strerror(rc));
    close(out[1]);
    close(err[1]);
    buf bo = {0}, be = {0};
    int fds[2] = {out[0], err[0]};
    buf *bufs[2] = {&bo, &be};
    pump(pid, fds, bufs, 2, opts, t0);
    r->status = wait_status(pid);
    r->ms = mono_ms() - t0;
    buf_finish(&bo);
    buf_finish(&be);
    r->out = bo.data;
    r->out_len = bo.len;
    r->err = be.data;
    r->err_len = be.len;
}

static void run_pty(const cli_run_opts *opts, char **argv, cli_result *r)
{
    char *out_path = temp_with(NULL);
    int master;
    double t0 = mono_ms();
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    cr_assert_geq(pid, 0, "forkpty: %s", strerror(errno));
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        int fd = open(out_path, O_WRONLY | O_TRUNC);
        if (fd < 0 || dup2(fd, 1) < 0) _exit(126);
        close(fd);
        execve(QV_CLI_PATH, argv, environ);
        _exit(127);
    }
    buf be = {0}, bo = {0};
    int fds[1] = {master};
    buf *bufs[1] = {&be};
    pump(pid, fds, bufs, 1, opts, t0);
    r->status = wait_status(pid);
    r->ms = mono_ms() - t0;
    buf_finish(&be);
    read_file_into(out_path, &bo);
    unlink(out_path);
    free(out_path);
    r->out = bo.data;
    r->out_len = bo.len;
    r->err = be.data;
    r->err_len = be.len;
}

cli_result *cli_run_with(const cli_run_opts *opts, const char *const *args, const char *file,
                         int line)
{
    size_t n = 0;
    while (args[n]) n++;
    char **argv = calloc(n + 2, sizeof(*argv));
    cr_assert_not_null(argv);
    argv[0] = (char *)QV_CLI_PATH;
    for (size_t i = 0; i < n; i++) argv[i + 1] = (char *)args[i];

    cli_result *r = calloc(1, sizeof(*r));
    cr_assert_not_null(r);
    if (opts && opts->pty) {
        run_pty(opts, argv, r);
    } else {
        char *in_path = opts && opts->input ? temp_with(opts->input) : NULL;
        run_piped(opts, argv, in_path, r);
        if (in_path) unlink(in_path);
        free(in_path);
    }
    free(argv);
    if (strstr(r->err, "Sanitizer") || strstr(r->err, "runtime error:"))
        cr_assert_fail("%s:%d: quiver reported a sanitizer error:\n%s", file, line, r->err);
    return r;
}

void cli_result_free(cli_result *r)
{
    if (!r) return;
    free(r->out);
    free(r->err);
    free(r);
}

void cli_expect_status_at(const cli_result *r, int status, const char *file, int line)
{
    cr_assert_eq(r->status, status,
                 "%s:%d: quiver exited with %d, expected %d\n--- stdout ---\n%.4000s\n"
                 "--- stderr ---\n%.4000s",
                 file, line, r->status, status, r->out, r->err);
}

size_t cli_count_lines(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p; p++)
        if (*p == '\n') n++;
    if (*s && s[strlen(s) - 1] != '\n') n++;
    return n;
}

char *cli_tmpdir(void)
{
    char *d = strdup("/tmp/quiver-cli-test.XXXXXX");
    cr_assert_not_null(mkdtemp(d), "mkdtemp: %s", strerror(errno));
    return d;
}

void cli_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            cli_rmtree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

void cli_write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp, "creating %s: %s", path, strerror(errno));
    cr_assert_geq(fputs(text, fp), 0);
    cr_assert_eq(fclose(fp), 0);
}
