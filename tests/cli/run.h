/*
 * Running the built `quiver` tool from the CLI tests: argv in, exit status,
 * stdout and stderr out. The tool's path comes from CMake (QV_CLI_PATH).
 * Every run asserts that the tool's stderr holds no sanitizer report (the
 * tool is built with the same sanitizers as the tests, and CTest only sees
 * the test's own output).
 */
#ifndef QV_TEST_CLI_RUN_H
#define QV_TEST_CLI_RUN_H

#include <stddef.h>

#ifndef QV_CLI_PATH
#error "QV_CLI_PATH (the built quiver tool) must be defined by tests/CMakeLists.txt"
#endif

typedef struct cli_result {
    int status; /* exit code, or 128 + signal number if killed */
    char *out;  /* stdout (NUL-terminated) */
    size_t out_len;
    char *err; /* stderr; under a pseudo-terminal, what the terminal showed */
    size_t err_len;
    double ms; /* wall time of the run */
} cli_result;

typedef struct cli_run_opts {
    const char *input; /* stdin contents; NULL = /dev/null */
    int signal;        /* sent signal_after_ms after the start, if non-zero
                          (with pty: to the process group, like a Ctrl-C) */
    long signal_after_ms;
    int pty; /* stdin and stderr on a pseudo-terminal; stdout to a file */
    /* With pty: signal_after_ms counts from the tool's first output there
     * (fetch's progress line, drawn once it submitted its first requests),
     * not from the start, which a loaded machine may spend starting up. */
    int signal_after_output;
    /* If set: signal_after_ms counts from when ready(ready_arg) first says
     * yes (non-zero; asked every 10 ms meanwhile), e.g. once a server of the
     * test's holds the tool's requests: an order, where no output tells it. */
    int (*ready)(void *arg);
    void *ready_arg;
} cli_run_opts;

/* Runs QV_CLI_PATH with args (a NULL-terminated list, without argv[0]). */
cli_result *cli_run_with(const cli_run_opts *opts, const char *const *args, const char *file,
                         int line);
#define cli_run(opts, ...)                                                                         \
    cli_run_with((opts), (const char *const[]){__VA_ARGS__, NULL}, __FILE__, __LINE__)
/* The usual case: no stdin, no signal, pipes. */
#define CLI(...) cli_run(NULL, __VA_ARGS__)
void cli_result_free(cli_result *r);

/* Asserts the exit status, showing stdout and stderr when it is wrong. */
void cli_expect_status_at(const cli_result *r, int status, const char *file, int line);
#define cli_expect_status(r, status) cli_expect_status_at((r), (status), __FILE__, __LINE__)

/* The number of lines in s (a last line without '\n' counts). */
size_t cli_count_lines(const char *s);

/* A fresh temporary directory (mkdtemp), and removing one recursively. */
char *cli_tmpdir(void);
void cli_rmtree(const char *dir);

/* Writes text to path (asserts). */
void cli_write_file(const char *path, const char *text);

#endif
