/* Large bodies: downloads to a file, a descriptor or a callback, uploads
 * from a file or a callback, progress, ranges and resume, and the faults
 * that can hit each, against nginx (a 64 MiB file), httpbin, the upload sink
 * (tests/servers/sink.py: answers the SHA-256 of what it read) and the
 * fault server. Every body is checked by its SHA-256. */
#include "support.h"

#include "../src/internal.h" /* QV_PIPE_CAP, QV_DATA_BATCH */

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

TestSuite(stream, .timeout = 120);

#define BIG_BYTES (64LL << 20)

static const char *nginx(const char *path)
{
    static _Thread_local char buf[512];
    snprintf(buf, sizeof buf, "%s%s", tx_env("QV_NGINX_URL", "nginx"), path);
    return buf;
}

static const char *sink(const char *path)
{
    static _Thread_local char buf[512];
    snprintf(buf, sizeof buf, "%s%s", tx_env("QV_SINK_URL", "the upload sink"), path);
    return buf;
}

static const char *big_file(void)
{
    static _Thread_local char buf[512];
    snprintf(buf, sizeof buf, "%s/big", tx_env("QV_NGINX_WWW", "nginx"));
    return buf;
}

/* A fresh directory for a test's files (removed with its content at the end). */
static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/qv-stream-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static const char *in_dir(const char *name)
{
    static _Thread_local char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

/* Files in dir, to check that no temporary file is left behind. */
static int files_in_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    cr_assert(p && fscanf(p, "%d", &n) == 1);
    pclose(p);
    return n;
}

typedef struct sha {
    EVP_MD_CTX *ctx;
    long long bytes;
} sha;

static void sha_init(sha *h)
{
    h->ctx = EVP_MD_CTX_new();
    h->bytes = 0;
    cr_assert(h->ctx && EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL));
}

static void sha_add(sha *h, const void *p, size_t n)
{
    EVP_DigestUpdate(h->ctx, p, n);
    h->bytes += (long long)n;
}

static void sha_hex(sha *h, char out[65])
{
    unsigned char md[32];
    unsigned len = 0;
    EVP_DigestFinal_ex(h->ctx, md, &len);
    EVP_MD_CTX_free(h->ctx);
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", md[i]);
}

/* SHA-256 of a file's first `limit` bytes (-1: all); *bytes gets its size read. */
static void sha_file(const char *path, long long limit, char out[65], long long *bytes)
{
    sha h;
    sha_init(&h);
    int fd = open(path, O_RDONLY);
    cr_assert(fd >= 0, "cannot open %s: %s", path, strerror(errno));
    static char buf[1 << 16];
    for (;;) {
        size_t want = sizeof buf;
        if (limit >= 0 && (long long)want > limit - h.bytes) want = (size_t)(limit - h.bytes);
        ssize_t n = want ? read(fd, buf, want) : 0;
        cr_assert(n >= 0);
        if (n == 0) break;
        sha_add(&h, buf, (size_t)n);
    }
    close(fd);
    *bytes = h.bytes;
    sha_hex(&h, out);
}

/* What h hashed is the first `limit` bytes (-1: all) of nginx's big file. */
static void expect_big_file(sha *h, long long limit)
{
    char got[65], want[65];
    long long n;
    sha_hex(h, got);
    sha_file(big_file(), limit, want, &n);
    tx_assert_str_eq(got, want);
}

static void expect_same_file(const char *got, const char *want)
{
    char a[65], b[65];
    long long na, nb;
    sha_file(got, -1, a, &na);
    sha_file(want, -1, b, &nb);
    cr_assert_eq(na, nb, "%s has %lld bytes, %s %lld", got, na, want, nb);
    tx_assert_str_eq(a, b);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ----------------------------------------------------------- to a file */

Test(stream, output_path_writes_a_64_mib_body_to_disk_and_keeps_none_in_memory)
{
    make_dir();
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(
        qv_request(s, &f, &(qv_request_opts){.url = nginx("/big"), .output_path = in_dir("big")}),
        QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    size_t len = 99;
    qv_response_body(r, &len);
    cr_assert_eq(len, 0, "the body was kept in memory (%zu bytes)", len);
    cr_assert_eq(qv_response_body_bytes(r), BIG_BYTES);
    expect_same_file(in_dir("big"), big_file());
    cr_assert_eq(files_in_dir(), 1, "a temporary file was left behind");
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

/* A program may run with its standard input closed: the file of an
 * output_path may then be opened as descriptor 0, which is a descriptor
 * all the same (and no output_fd, whose 0 means none). */
Test(stream, output_path_written_through_descriptor_0)
{
    make_dir();
    qv_executor *ex = tx_executor(1);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *f;
    /* The worker and its connection exist before: the next descriptor the
     * program opens is the file's. */
    tx_get_ok(s, &f, nginx("/64k"));
    qv_future_release(f);
    close(0);
    cr_assert_eq(
        qv_request(s, &f, &(qv_request_opts){.url = nginx("/64k"), .output_path = in_dir("out")}),
        QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    cr_assert_eq(qv_response_body_bytes(r), 64 << 10);
    char want[512];
    snprintf(want, sizeof want, "%s/64k", tx_env("QV_NGINX_WWW", "nginx"));
    expect_same_file(in_dir("out"), want);
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
    remove_dir();
}

/* A download to a file that a fault (from the fault server) stops: the
 * future fails with want, and neither the file nor its temporary is left. */
static void expect_fault_leaves_no_file(qv_request_opts o, int want)
{
    make_dir();
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    o.output_path = in_dir("out");
    cr_assert_eq(qv_request(s, &f, &o), QV_OK);
    tx_expect_error(f, want);
    cr_assert_eq(files_in_dir(), 0, "the partial file (or its temporary) is still there");
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

Test(stream, a_body_cut_short_removes_the_partial_file)
{
    expect_fault_leaves_no_file((qv_request_opts){.url = tx_faults_url("/short?length=100000")},
                                QV_EPROTOCOL);
}

Test(stream, keep_partial_leaves_the_bytes_under_the_final_name_and_says_how_many)
{
    make_dir();
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = tx_faults_url("/short?length=100000"),
                                               .output_path = in_dir("out"),
                                               .keep_partial = 1}),
                 QV_OK);
    const char *msg = tx_expect_error(f, QV_EPROTOCOL);
    tx_assert_contains(msg, "keeps 100 bytes");
    struct stat st;
    cr_assert_eq(stat(in_dir("out"), &st), 0);
    cr_assert_eq(st.st_size, 100);
    cr_assert_eq(files_in_dir(), 1);
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

Test(stream, a_cancelled_download_removes_its_file)
{
    make_dir();
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = tx_faults_url("/stall-body"),
                                               .output_path = in_dir("out")}),
                 QV_OK);
    tx_wait_started(f, 10000);
    /* The temporary file exists once the transfer has begun. */
    for (int i = 0; i < 2000 && files_in_dir() == 0; i++) usleep(5000);
    cr_assert_eq(files_in_dir(), 1, "no temporary file while downloading");
    cr_assert(!exists(in_dir("out")), "the final name exists before the end");
    qv_future_cancel(f);
    tx_expect_error(f, QV_ECANCELLED);
    qv_session_free(s); /* the transfer is over once the session is */
    cr_assert_eq(files_in_dir(), 0, "the partial file is still there after a cancel");
    qv_future_release(f);
    remove_dir();
}

/* The first bytes of a file ("" if there is none). */
static const char *file_text(const char *path)
{
    static char buf[128];
    buf[0] = '\0';
    FILE *fp = fopen(path, "r");
    if (fp) {
        buf[fread(buf, 1, sizeof buf - 1, fp)] = '\0';
        fclose(fp);
    }
    return buf;
}

Test(stream, a_response_that_will_be_retried_leaves_the_file_alone)
{
    make_dir();
    FILE *fp = fopen(in_dir("out"), "w");
    cr_assert(fp && fputs("precious\n", fp) >= 0 && fclose(fp) == 0);
    qv_session *s = TX_SESSION(0);
    char key[128], url[256];
    snprintf(key, sizeof key, "stream-%s-%d-%.0f", tx_kind_name(), (int)getpid(), now_ms());
    snprintf(url, sizeof url, "/flaky?key=%s&fail=1&after=5", key);
    qv_future *f;
    /* A 503 first, retried after 5 s: cancelled while it waits. */
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){
                                .url = tx_faults_url(url),
                                .output_path = in_dir("out"),
                                .retry = &(qv_retry){.max_retries = 1, .max_backoff_ms = 10000}}),
                 QV_OK);
    snprintf(url, sizeof url, "/flaky-count?key=%s", key);
    const char *count = "0";
    for (int i = 0; i < 500 && strcmp(count, "1") != 0; i++) {
        qv_future *c;
        count = qv_response_text(tx_get_ok(s, &c, tx_faults_url(url)));
        count = strcmp(count, "1") == 0 ? "1" : "0";
        qv_future_release(c);
        usleep(10000);
    }
    tx_assert_str_eq(count, "1");
    /* (the client takes the 503 in at once; a file it replaced would show) */
    for (int i = 0; i < 50 && strcmp(file_text(in_dir("out")), "precious\n") == 0; i++)
        usleep(10000);
    qv_future_cancel(f);
    tx_expect_error(f, QV_ECANCELLED);
    qv_future_release(f);
    qv_session_free(s);
    tx_assert_str_eq(file_text(in_dir("out")), "precious\n");
    cr_assert_eq(files_in_dir(), 1, "a temporary file was left behind");
    remove_dir();
}

Test(stream, a_retried_download_puts_the_last_answer_in_the_file)
{
    make_dir();
    qv_session *s = TX_SESSION(0);
    char url[256];
    snprintf(url, sizeof url, "/flaky?key=stream-ok-%s-%d-%.0f&fail=1", tx_kind_name(),
             (int)getpid(), now_ms());
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = tx_faults_url(url),
                                               .output_path = in_dir("out"),
                                               .retry = &(qv_retry){.max_retries = 3}}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    cr_assert_eq(qv_response_attempts(r), 2);
    tx_assert_str_eq(file_text(in_dir("out")), "ok");
    cr_assert_eq(files_in_dir(), 1, "a temporary file was left behind");
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

/* An allocator that refuses to grow one block: the executor's heap of
 * retries, once it is full (set after the pool's processes were forked,
 * so only this process's). */
static void *_Atomic heap_to_refuse;
static atomic_int heap_refused;

static void *heap_realloc(void *p, size_t n)
{
    void *want = p;
    if (p && atomic_compare_exchange_strong(&heap_to_refuse, &want, NULL)) {
        atomic_store(&heap_refused, 1);
        return NULL;
    }
    return realloc(p, n);
}

static void heap_allocator(void)
{
    static const qv_allocator a = {malloc, calloc, heap_realloc, free};
    cr_assert_eq(qv_set_allocator(&a), QV_OK);
}

enum { PARKED = 16 }; /* the retry heap's first size */
static const qv_retry park_retry = {.max_retries = 1, .max_backoff_ms = 60000};

/* Fills ex's heap of retries with PARKED futures of s, each waiting 30 s
 * for its retry, and has the allocator refuse to grow it. */
static void park_retries(qv_executor *ex, qv_session *s, qv_future **parked)
{
    char url[256];
    for (int i = 0; i < PARKED; i++) {
        snprintf(url, sizeof url, "/flaky?key=park-%s-%d-%.0f-%d&fail=9&after=30", tx_kind_name(),
                 (int)getpid(), now_ms(), i);
        cr_assert_eq(
            qv_request(s, &parked[i],
                       &(qv_request_opts){.url = tx_faults_url(url), .retry = &park_retry}),
            QV_OK);
    }
    /* Every one answered 503 and waits 30 s for its retry: the heap is full. */
    size_t waiting = 0;
    for (int i = 0; i < 2000 && waiting < PARKED; i++) {
        pthread_mutex_lock(&ex->mu);
        waiting = ex->nretries;
        if (waiting == PARKED) {
            cr_assert_eq(ex->cap_retries, PARKED);
            atomic_store(&heap_to_refuse, (void *)ex->retries);
        }
        pthread_mutex_unlock(&ex->mu);
        if (waiting < PARKED) usleep(10000);
    }
    cr_assert_eq(waiting, PARKED, "only %zu of %d retries are waiting", waiting, PARKED);
}

static void unpark_retries(qv_future **parked)
{
    for (int i = 0; i < PARKED; i++) {
        qv_future_cancel(parked[i]);
        tx_expect_error(parked[i], QV_ECANCELLED);
        qv_future_release(parked[i]);
    }
}

/* A response kept in memory because it was to be retried (its body not
 * written to output_path), whose retry then cannot be queued (no memory):
 * the future fails, rather than finish with a body that went nowhere. */
Test(stream, a_retry_that_cannot_be_queued_fails_rather_than_lose_the_body, .init = heap_allocator)
{
    make_dir();
    qv_executor *ex = tx_executor(4);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *parked[PARKED];
    park_retries(ex, s, parked);
    char url[256];
    snprintf(url, sizeof url, "/flaky?key=last-%s-%d-%.0f&fail=1&after=30", tx_kind_name(),
             (int)getpid(), now_ms());
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = tx_faults_url(url),
                                               .output_path = in_dir("out"),
                                               .retry = &park_retry}),
                 QV_OK);
    tx_assert_contains(tx_expect_error(f, QV_ENOMEM), "retry");
    cr_assert(atomic_load(&heap_refused), "the retry heap was not the allocation refused");
    cr_assert_eq(files_in_dir(), 0, "a file (or its temporary) was left");
    qv_future_release(f);
    unpark_retries(parked);
    qv_session_free(s);
    qv_executor_free(ex);
    remove_dir();
}

/* A failed attempt whose retry cannot be queued (no memory) is the
 * future's outcome, with the status line it had received: a read timeout
 * mid-body after a 200 says so (qv_future_error_status), as without a
 * retry policy (qv_retry_requeue puts back what it took for the retry). */
Test(stream, a_retry_that_cannot_be_queued_keeps_the_attempts_status_line, .init = heap_allocator)
{
    qv_executor *ex = tx_executor(4);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *parked[PARKED];
    park_retries(ex, s, parked);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = tx_faults_url("/stall-body"),
                                               .read_timeout_ms = 300,
                                               .retry = &park_retry}),
                 QV_OK);
    tx_expect_error(f, QV_EREAD_TIMEOUT);
    cr_assert(atomic_load(&heap_refused), "the retry heap was not the allocation refused");
    cr_assert_eq(qv_future_attempts(f), 1);
    cr_assert_eq(qv_future_error_status(f), 200,
                 "the failed attempt's status line was lost with its retry");
    qv_future_release(f);
    unpark_retries(parked);
    qv_session_free(s);
    qv_executor_free(ex);
}

Test(stream, a_stall_mid_body_fails_with_the_read_timeout_and_removes_the_file)
{
    expect_fault_leaves_no_file(
        (qv_request_opts){.url = tx_faults_url("/stall-body"), .read_timeout_ms = 300},
        QV_EREAD_TIMEOUT);
}

Test(stream, bad_chunked_encoding_fails_and_removes_the_file)
{
    expect_fault_leaves_no_file((qv_request_opts){.url = tx_faults_url("/bad-chunked")},
                                QV_EPROTOCOL);
}

Test(stream, a_gzip_bomb_streamed_to_a_file_stops_at_max_response_bytes)
{
    expect_fault_leaves_no_file(
        (qv_request_opts){.url = tx_faults_url("/gzip-bomb"), .max_response_bytes = 4 << 20},
        QV_ETOO_LARGE);
}

Test(stream, a_directory_that_does_not_exist_fails_with_qv_eio_naming_the_path)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = nginx("/small"),
                                               .output_path = "/nonexistent-qv/dir/out"}),
                 QV_OK);
    const char *msg = tx_expect_error(f, QV_EIO);
    tx_assert_contains(msg, "/nonexistent-qv/dir/out");
    qv_future_release(f);
    qv_session_free(s);
}

Test(stream, redirects_leave_only_the_final_body_in_the_file)
{
    make_dir();
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    char url[1024];
    snprintf(url, sizeof url, "%s", tu("/redirect-to?url=/bytes/5000%3Fseed%3D7&status_code=302"));
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = url, .output_path = in_dir("out")}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    cr_assert_eq(qv_response_history_len(r), 1);
    cr_assert_eq(qv_response_body_bytes(r), 5000);
    struct stat st;
    cr_assert_eq(stat(in_dir("out"), &st), 0);
    cr_assert_eq(st.st_size, 5000);
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

/* ------------------------------------------------------- to a descriptor */

Test(stream, output_fd_writes_to_the_callers_descriptor_and_leaves_it_open)
{
    make_dir();
    int fd = open(in_dir("out"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert(fd > 0);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = nginx("/big"), .output_fd = fd}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    cr_assert_eq(qv_response_body_bytes(r), BIG_BYTES);
    cr_assert_eq(write(fd, "", 0), 0, "the descriptor was closed");
    close(fd);
    expect_same_file(in_dir("out"), big_file());
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

/* Once the future is done no copy of the descriptor is left open elsewhere
 * (a process pool's worker closes the one it was sent): the pipe's reader
 * sees its end when the caller closes the write side. */
Test(stream, output_fd_leaves_no_copy_of_the_descriptor_open_once_done)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(
        qv_request(s, &f, &(qv_request_opts){.url = tu("/bytes/5000?seed=7"), .output_fd = p[1]}),
        QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    cr_assert_eq(qv_response_body_bytes(r), 5000);
    close(p[1]);
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    long long got = 0;
    for (;;) {
        char buf[8192];
        cr_assert_eq(poll(&pfd, 1, 5000), 1, "the pipe's write end is still open somewhere");
        ssize_t n = read(p[0], buf, sizeof buf);
        cr_assert_geq(n, 0);
        if (n == 0) break;
        got += n;
    }
    cr_assert_eq(got, 5000);
    close(p[0]);
    qv_future_release(f);
    qv_session_free(s);
}

/* A descriptor that is not open fails like a write that fails. */
Test(stream, an_output_fd_that_is_not_open_fails_with_qv_eio)
{
    int fd = 900;
    while (fcntl(fd, F_GETFD) >= 0) fd++;
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = nginx("/64k"), .output_fd = fd}),
                 QV_OK);
    tx_assert_contains(tx_expect_error(f, QV_EIO), strerror(EBADF));
    qv_future_release(f);
    qv_session_free(s);
}

Test(stream, a_full_disk_fails_with_qv_eio_and_says_so)
{
    int fd = open("/dev/full", O_WRONLY);
    cr_assert(fd > 0);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = nginx("/64k"), .output_fd = fd}),
                 QV_OK);
    const char *msg = tx_expect_error(f, QV_EIO);
    tx_assert_contains(msg, strerror(ENOSPC));
    close(fd);
    qv_future_release(f);
    qv_session_free(s);
}

/* The reading end of a pipe or socket, read by a thread of its own: its
 * first reads come slowly, so the writer finds it full, then it reads the
 * rest as fast as it can, to the end. */
typedef struct lagging {
    int fd, slow_reads;
    sha h;
    pthread_t t;
} lagging;

static void *lag_main(void *arg)
{
    lagging *l = arg;
    static char buf[1 << 16];
    for (int i = 0;; i++) {
        ssize_t n = read(l->fd, buf, i < l->slow_reads ? 4096 : sizeof buf);
        if (n <= 0) break;
        sha_add(&l->h, buf, (size_t)n);
        if (i < l->slow_reads) usleep(500);
    }
    return NULL;
}

/* output_fd = w while a lagging reader takes r: every byte, in order, and
 * the descriptor left open (on QV_LOOP, what fits is written without a
 * hand-off and the rest waits for the reader on the pump's thread). */
static void lagging_reader_gets_the_body(int r, int w)
{
    lagging l = {.fd = r, .slow_reads = 400};
    sha_init(&l.h);
    cr_assert_eq(pthread_create(&l.t, NULL, lag_main, &l), 0);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = nginx("/big"), .output_fd = w}),
                 QV_OK);
    qv_response *resp = tx_expect_status(f, 200);
    cr_assert_eq(qv_response_body_bytes(resp), BIG_BYTES);
    cr_assert_eq(write(w, "", 0), 0, "the descriptor was closed");
    close(w); /* the reader's end of the body */
    pthread_join(l.t, NULL);
    close(r);
    char got[65], want[65];
    long long nb;
    sha_hex(&l.h, got);
    sha_file(big_file(), -1, want, &nb);
    cr_assert_eq(l.h.bytes, nb, "the reader got %lld bytes of %lld", l.h.bytes, nb);
    tx_assert_str_eq(got, want);
    qv_future_release(f);
    qv_session_free(s);
}

Test(stream, output_fd_to_a_pipe_whose_reader_lags_gets_every_byte_in_order)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    lagging_reader_gets_the_body(p[0], p[1]);
}

Test(stream, output_fd_to_a_socket_whose_reader_lags_gets_every_byte_in_order)
{
    int p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, p), 0);
    lagging_reader_gets_the_body(p[0], p[1]);
}

/* A FIFO in a fresh directory (remove_dir removes it). */
static void new_fifo(char *fifo, size_t n)
{
    make_dir();
    snprintf(fifo, n, "%s", in_dir("fifo"));
    cr_assert_eq(mkfifo(fifo, 0600), 0);
}

/* new_fifo, and its reader's end (non-blocking). */
static int new_fifo_read(char *fifo, size_t n)
{
    new_fifo(fifo, n);
    int rd = open(fifo, O_RDONLY | O_NONBLOCK);
    cr_assert(rd >= 0);
    return rd;
}

static const char *const output_kinds[] = {"pipe", "socket", "FIFO written in place"};
enum { OUT_PIPE, OUT_SOCKET, OUT_FIFO };

/* A download of /big into an output of `kind` that nobody reads: output_fd
 * to a pipe or a socket (p[1]; p[0] its reader's end), or output_path
 * naming a FIFO (p[0] its reader's end, p[1] -1), returned once the body
 * fills it (a pipe holds 64 KiB, a little less of 16 KiB writes): what is
 * written then waits. */
static qv_future *stuck_download(qv_session *s, int kind, int p[2])
{
    char fifo[256];
    p[0] = p[1] = -1;
    if (kind == OUT_FIFO)
        p[0] = new_fifo_read(fifo, sizeof fifo);
    else
        cr_assert_eq(kind == OUT_SOCKET ? socketpair(AF_UNIX, SOCK_STREAM, 0, p) : pipe(p), 0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            kind == OUT_FIFO
                                ? &(qv_request_opts){.url = nginx("/big"), .output_path = fifo}
                                : &(qv_request_opts){.url = nginx("/big"), .output_fd = p[1]}),
                 QV_OK);
    int queued = 0;
    for (int i = 0; i < 2000 && queued < 49152; i++) {
        cr_assert_eq(ioctl(p[0], FIONREAD, &queued), 0);
        if (queued < 49152) usleep(1000);
    }
    cr_assert_geq(queued, 49152, "%d bytes reached the %s", queued, output_kinds[kind]);
    return f;
}

/* Closes a stuck download's output (its FIFO's directory removed). */
static void close_output(int kind, const int p[2])
{
    close(p[0]);
    if (kind == OUT_FIFO)
        remove_dir();
    else
        close(p[1]);
}

/* output_fd (a pipe, a socket) or an output_path written in place (a FIFO)
 * that nobody reads: its writes wait, and on QV_LOOP they wait on a
 * delivery thread (pump.c), not the thread that runs every transfer. A
 * cancel ends such a write: the future ends cancelled with not a byte read
 * (on QV_LOOP the pump's wait is a poll the cancel ends, pump.c; on
 * QV_THREADS the worker looks at the cancel every 100 ms, sink.c; a
 * process worker reads its control socket, where the cancel comes, while
 * it waits: blocked in write(), or reading that socket only between passes
 * of the transfer, each waited for the reader for good). */
Test(stream, an_output_nobody_reads_holds_up_only_its_own_transfer_until_cancelled)
{
    qv_session *s = TX_SESSION(.max_workers = 4);
    for (int kind = 0; kind < 3; kind++) {
        int p[2];
        qv_future *quick, *stuck = stuck_download(s, kind, p);
        double t0 = now_ms();
        cr_assert_eq(qv_get(s, &quick, tu("/get")), QV_OK);
        tx_expect_status(quick, 200);
        double took = now_ms() - t0;
        cr_assert_lt(took, 1500, "a quick request took %.0f ms beside a full %s", took,
                     output_kinds[kind]);
        cr_assert_eq(qv_future_cancel(stuck), 1, "the download finished into a %s nobody reads",
                     output_kinds[kind]);
        int rc = qv_future_wait(stuck, TX_RESULT_TIMEOUT_MS);
        close_output(kind, p); /* (a write still waiting fails now, with EPIPE) */
        cr_assert_eq(rc, QV_OK, "the cancelled download into a %s nobody reads did not end",
                     output_kinds[kind]);
        tx_expect_error(stuck, QV_ECANCELLED);
        qv_future_release(quick);
        qv_future_release(stuck);
    }
    qv_session_free(s);
}

typedef struct both {
    qv_session *s;
    qv_executor *ex;
} both;

static void *free_both(void *arg)
{
    both *b = arg;
    qv_session_free(b->s);
    qv_executor_free(b->ex);
    return NULL;
}

/* More downloads into outputs nobody reads than QV_LOOP has delivery
 * threads (four), all cancelled: the executor's free returns (their writes
 * held those threads, or the workers, and the free that waits for them,
 * until a reader read), and each future is cancelled. */
Test(stream, cancelled_downloads_into_outputs_nobody_reads_let_the_executor_be_freed)
{
    enum { STUCK = 5 };
    both b = {.ex = tx_executor(8)};
    b.s = TX_SESSION(.executor = b.ex);
    int p[STUCK][2];
    qv_future *f[STUCK];
    for (int i = 0; i < STUCK; i++) f[i] = stuck_download(b.s, i % 2 ? OUT_SOCKET : OUT_PIPE, p[i]);
    for (int i = 0; i < STUCK; i++) cr_assert_eq(qv_future_cancel(f[i]), 1);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, free_both, &b), 0);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += TX_RESULT_TIMEOUT_MS / 1000;
    int stuck = pthread_timedjoin_np(t, NULL, &dl) != 0;
    for (int i = 0; i < STUCK; i++) close_output(i % 2 ? OUT_SOCKET : OUT_PIPE, p[i]);
    if (stuck) pthread_join(t, NULL); /* (the closes let the writes go) */
    cr_assert(!stuck, "freeing the executor waited for writes to outputs nobody reads");
    for (int i = 0; i < STUCK; i++) {
        tx_expect_error(f[i], QV_ECANCELLED);
        qv_future_release(f[i]);
    }
}

/* A thread of the caller's that waits for two results and only then reads
 * the pipe a third request's body is written to (output_fd). Its waits
 * must not run that third transfer (QV_THREADS lends a waiting thread a
 * worker's handle): there its write would wait for this very thread, for
 * good. */
typedef struct serves_after {
    qv_session *s;
    qv_request_opts held; /* the request whose I/O this thread serves after */
    qv_future *f;
    int rc; /* the second wait's */
} serves_after;

static void *wait_two_then_serve(void *arg)
{
    serves_after *sa = arg;
    qv_future *a, *b;
    /* a ends first: this thread sleeps on it, and its worker has the held
     * request queued behind b to lend this thread for its wait on b. */
    if ((sa->rc = qv_get(sa->s, &a, tu("/delay/0.3")))) return NULL;
    if ((sa->rc = qv_get(sa->s, &b, tu("/delay/1.5")))) {
        qv_future_release(a);
        return NULL;
    }
    sa->rc = qv_request(sa->s, &sa->f, &sa->held);
    if (!sa->rc) sa->rc = qv_future_result(a, NULL, TX_RESULT_TIMEOUT_MS);
    if (!sa->rc) sa->rc = qv_future_result(b, NULL, TX_RESULT_TIMEOUT_MS);
    qv_future_release(a);
    qv_future_release(b);
    return NULL;
}

/* The pipe's reader: takes what comes until nothing does for 100 ms. */
static void drain_pipe(int r)
{
    static char buf[1 << 16];
    while (poll(&(struct pollfd){.fd = r, .events = POLLIN}, 1, 100) > 0 &&
           read(r, buf, sizeof buf) > 0) {
    }
}

/* Runs wait_two_then_serve(sa) on a thread and asserts that it ends within
 * 15 s; a stuck one is let go first: the pipe fd is drained (its reader's
 * end) or closed (`end`: its writer's, which ends the body). */
static void serve_in_time(serves_after *sa, int round, int fd, int end)
{
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, wait_two_then_serve, sa), 0);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 15;
    int stuck = pthread_timedjoin_np(t, NULL, &dl) != 0;
    if (stuck) {
        if (end)
            close(fd);
        else
            drain_pipe(fd);
        pthread_join(t, NULL);
    }
    cr_assert(!stuck,
              "round %d: a thread waiting for results was held in a transfer that waits for it",
              round);
    cr_assert_eq(sa->rc, QV_OK, "round %d: %s", round, qv_errname(sa->rc));
}

/* ... after the waits: the body, until its future is done. */
static void read_the_body(int r, qv_future *f)
{
    static char buf[1 << 16];
    for (int i = 0; i < 60000 && !qv_future_done(f); i++)
        if (poll(&(struct pollfd){.fd = r, .events = POLLIN}, 1, 10) > 0)
            cr_assert_gt(read(r, buf, sizeof buf), 0);
    drain_pipe(r);
    cr_assert_eq(qv_response_body_bytes(tx_expect_status(f, 200)), BIG_BYTES);
}

Test(stream, a_waiting_thread_never_runs_a_download_into_the_pipe_it_reads_after)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    qv_request_opts held = {.url = nginx("/big"), .output_fd = p[1]};
    qv_session *s = TX_SESSION(.max_workers = 2);
    for (int round = 0; round < 3; round++) {
        serves_after sa = {.s = s, .held = held};
        serve_in_time(&sa, round, p[0], 0);
        read_the_body(p[0], sa.f);
        qv_future_release(sa.f);
    }
    qv_session_free(s);
    close(p[0]);
    close(p[1]);
}

/* The reader of a FIFO finds want in it. */
static void expect_fifo_text(int rd, const char *want)
{
    char buf[64] = {0};
    cr_assert_eq(read(rd, buf, sizeof buf - 1), (ssize_t)strlen(want), "the reader got \"%s\"",
                 buf);
    tx_assert_str_eq(buf, want);
}

/* output_path naming something that is not a regular file (here a FIFO;
 * /dev/null is the common case) is written in place: renamed over, the
 * FIFO (or, as root, /dev/null) would become a regular file; nor is it
 * removed when the transfer fails. A FIFO with no reader fails, no wait. */
Test(stream, an_output_path_that_is_no_regular_file_is_written_in_place_and_kept)
{
    char fifo[256];
    int rd = new_fifo_read(fifo, sizeof fifo);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(
        qv_request(s, &f, &(qv_request_opts){.url = nginx("/echo?in-place"), .output_path = fifo}),
        QV_OK);
    tx_expect_status(f, 200);
    qv_future_release(f);
    expect_fifo_text(rd, "in-place");
    struct stat st;
    cr_assert_eq(stat(fifo, &st), 0, "the FIFO was removed");
    cr_assert(S_ISFIFO(st.st_mode), "the FIFO was replaced by a file");
    cr_assert_eq(files_in_dir(), 1, "a temporary file was left behind");
    /* A failed transfer leaves it where it is. */
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = tx_faults_url("/short?length=100000"),
                                               .output_path = fifo}),
                 QV_OK);
    tx_expect_error(f, QV_EPROTOCOL);
    qv_future_release(f);
    cr_assert_eq(stat(fifo, &st), 0, "a failed transfer removed the FIFO");
    cr_assert(S_ISFIFO(st.st_mode));
    close(rd);
    /* No reader now: a clear error, not a wait. */
    cr_assert_eq(
        qv_request(s, &f, &(qv_request_opts){.url = nginx("/echo?x"), .output_path = fifo}), QV_OK);
    tx_assert_contains(tx_expect_error(f, QV_EIO), fifo);
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

/* A reader that goes away mid-body, of a FIFO written in place or of an
 * output_fd pipe: the write fails (EPIPE) and the transfer with it, as
 * QV_EIO naming what it wrote. The signal the kernel sends with EPIPE
 * (SIGPIPE, whose default ends the process) must not reach the program:
 * quiver writes from its own threads, and from yours while they wait. */
Test(stream, a_reader_that_goes_away_fails_the_transfer_not_the_program)
{
    for (int kind = 0; kind < 2; kind++) {
        char fifo[256];
        int p[2] = {-1, -1};
        if (kind == 0)
            p[0] = new_fifo_read(fifo, sizeof fifo);
        else
            cr_assert_eq(pipe(p), 0);
        qv_session *s = TX_SESSION(0);
        qv_future *f;
        cr_assert_eq(qv_request(s, &f,
                                kind == 0
                                    ? &(qv_request_opts){.url = nginx("/big"), .output_path = fifo}
                                    : &(qv_request_opts){.url = nginx("/big"), .output_fd = p[1]}),
                     QV_OK);
        /* Some of the body came through: then the reader goes. */
        static char buf[1 << 16];
        ssize_t got = 0;
        for (int i = 0; i < 3000 && got <= 0; i++)
            if (poll(&(struct pollfd){.fd = p[0], .events = POLLIN}, 1, 10) > 0)
                got = read(p[0], buf, sizeof buf);
        cr_assert_gt(got, 0, "no bytes reached the reader");
        close(p[0]);
        const char *msg = tx_expect_error(f, QV_EIO);
        tx_assert_contains(msg, kind == 0 ? fifo : "output descriptor");
        qv_future_release(f);
        qv_session_free(s);
        if (kind == 0)
            remove_dir();
        else
            close(p[1]);
    }
}

/* The outcome of a GET of url whose body goes to path (resumed or not). */
static qv_future *get_to(qv_session *s, const char *url, const char *path, int resume)
{
    qv_future *f;
    cr_assert_eq(
        qv_request(s, &f, &(qv_request_opts){.url = url, .output_path = path, .resume = resume}),
        QV_OK);
    cr_assert_eq(qv_future_wait(f, TX_RESULT_TIMEOUT_MS), QV_OK);
    return f;
}

/* Sets the file behind fd to text. */
static void set_file(int fd, const char *text)
{
    size_t n = strlen(text);
    cr_assert(ftruncate(fd, 0) == 0 && pwrite(fd, text, n, 0) == (ssize_t)n);
}

/* output_path naming one of the process's open files through /proc
 * (/dev/stdout with stdout sent to a file, /dev/fd/N, /proc/self/fd/N)
 * that is a regular file: written in place, from its start, as curl -o
 * writes it. A temporary file could not be made beside the link (QV_EIO),
 * and as root the one beside /dev/stdout was renamed over it, which became
 * a file. Emptied as curl -o creates its file, at the body's first byte
 * (or the end of an empty body): a request that fails before that (a
 * refused connection) leaves it as it was (opened with O_TRUNC, it was
 * left empty). With resume, appended to. Not on QV_PROCESSES: a worker
 * process has descriptors of its own. */
TX_TEST_KINDS(stream, an_output_path_naming_an_open_regular_file_is_written_in_place, threads loop);
Test(stream, an_output_path_naming_an_open_regular_file_is_written_in_place)
{
    make_dir();
    qv_session *s = TX_SESSION(0);
    char refused[64];
    snprintf(refused, sizeof refused, "http://127.0.0.1:%d/", tx_closed_port());
    static const char *const forms[] = {"/proc/self/fd/%d", "/dev/fd/%d"};
    for (int i = 0; i < 2; i++) {
        int fd = open(in_dir("out"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        cr_assert(fd >= 0);
        set_file(fd, "older and longer");
        char path[64];
        snprintf(path, sizeof path, forms[i], fd);
        qv_future *f = get_to(s, refused, path, 0);
        tx_expect_error(f, QV_ECONNECT);
        qv_future_release(f);
        tx_assert_str_eq(file_text(in_dir("out")), "older and longer");
        tx_expect_status(f = get_to(s, nginx("/echo"), path, 0), 200);
        qv_future_release(f);
        tx_assert_str_eq(file_text(in_dir("out")), "");
        tx_expect_status(f = get_to(s, nginx("/echo?in-place"), path, 0), 200);
        qv_future_release(f);
        tx_assert_str_eq(file_text(in_dir("out")), "in-place");
        char q[101];
        memset(q, 'q', 100);
        q[40] = '\0';
        set_file(fd, q); /* 40 of /small's 100 'q's */
        tx_expect_status(f = get_to(s, nginx("/small"), path, 1), 206);
        qv_future_release(f);
        q[40] = 'q';
        q[100] = '\0';
        tx_assert_str_eq(file_text(in_dir("out")), q);
        close(fd);
        cr_assert_eq(files_in_dir(), 1, "a temporary file was left behind");
    }
    qv_session_free(s);
    remove_dir();
}

/* A link that names no open file (one in /dev/shm to a file there) is a
 * path as any other: the body goes to a temporary file renamed over the
 * link, and the file it named is left as it was. (Every link under /dev
 * was taken for one to an open file: the file it named was written.) */
Test(stream, a_link_under_dev_to_no_open_file_is_replaced_as_any_path)
{
    char target[64], link[64];
    snprintf(target, sizeof target, "/dev/shm/qv-stream-%d-file", (int)getpid());
    snprintf(link, sizeof link, "/dev/shm/qv-stream-%d-link", (int)getpid());
    int fd = open(target, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert(fd >= 0);
    set_file(fd, "older");
    close(fd);
    cr_assert_eq(symlink(target, link), 0);
    qv_session *s = TX_SESSION(0);
    qv_future *f = get_to(s, nginx("/echo?replaced"), link, 0);
    tx_expect_status(f, 200);
    qv_future_release(f);
    struct stat st;
    cr_assert(lstat(link, &st) == 0 && S_ISREG(st.st_mode), "the link is still a link");
    tx_assert_str_eq(file_text(link), "replaced");
    tx_assert_str_eq(file_text(target), "older");
    unlink(link);
    unlink(target);
    qv_session_free(s);
}

/* Bytes written in place (a FIFO here; /dev/stdout alike) cannot be taken
 * back: a transfer that broke after some reached it is not retried, or the
 * reader would get them twice, then the next attempt's body after them. */
Test(stream, an_output_path_written_in_place_is_not_retried_once_bytes_reached_it)
{
    char fifo[256];
    int rd = new_fifo_read(fifo, sizeof fifo);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    /* 100 bytes of 1,000, then the server's end: QV_EPROTOCOL, which this
     * policy retries. */
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){
                                .url = tx_faults_url("/short?length=1000"),
                                .output_path = fifo,
                                .retry = &(qv_retry){.max_retries = 2, .on = QV_RETRY_PROTOCOL}}),
                 QV_OK);
    tx_expect_error(f, QV_EPROTOCOL);
    cr_assert_eq(qv_future_attempts(f), 1, "retried after its bytes went to the FIFO");
    qv_future_release(f);
    char buf[1024];
    ssize_t n = read(rd, buf, sizeof buf);
    cr_assert_eq(n, 100, "the reader got %zd bytes", n);
    close(rd);
    qv_session_free(s);
    remove_dir();
}

/* resume = 1 on a FIFO: no size to resume from, so it is written in place
 * from the start (no Range asked); with no reader, a clear QV_EIO at once
 * (an open that creates waited for a reader, holding up the transfer's
 * thread for good). */
Test(stream, resume_to_a_fifo_writes_it_in_place_and_never_waits_for_a_reader)
{
    char fifo[256];
    int rd = new_fifo_read(fifo, sizeof fifo);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){
                                .url = nginx("/echo?resumed"), .output_path = fifo, .resume = 1}),
                 QV_OK);
    tx_expect_status(f, 200);
    qv_future_release(f);
    expect_fifo_text(rd, "resumed");
    close(rd);
    cr_assert_eq(
        qv_request(s, &f,
                   &(qv_request_opts){.url = nginx("/echo?x"), .output_path = fifo, .resume = 1}),
        QV_OK);
    tx_assert_contains(tx_expect_error(f, QV_EIO), fifo);
    qv_future_release(f);
    struct stat st;
    cr_assert(stat(fifo, &st) == 0 && S_ISFIFO(st.st_mode), "the FIFO was replaced");
    qv_session_free(s);
    remove_dir();
}

/* The same with a FIFO as output_path, written in place: its write waits
 * for its reader, as output_fd's does, so a thread of the caller's that
 * reads it only after its waits must not run that transfer either. */
Test(stream, a_waiting_thread_never_runs_a_download_into_the_fifo_it_reads_after)
{
    char fifo[256];
    int rd = new_fifo_read(fifo, sizeof fifo);
    qv_request_opts held = {.url = nginx("/big"), .output_path = fifo};
    qv_session *s = TX_SESSION(.max_workers = 2);
    for (int round = 0; round < 3; round++) {
        serves_after sa = {.s = s, .held = held};
        serve_in_time(&sa, round, rd, 0);
        /* (Read as read_the_body does, but a FIFO whose writer closed
         * reads its end before its future is done.) */
        static char buf[1 << 16];
        long long got = 0;
        for (int i = 0; i < 60000 && !qv_future_done(sa.f); i++)
            if (poll(&(struct pollfd){.fd = rd, .events = POLLIN}, 1, 10) > 0) {
                ssize_t n = read(rd, buf, sizeof buf);
                got += n > 0 ? n : 0;
            }
        for (ssize_t n; (n = read(rd, buf, sizeof buf)) > 0;) got += n;
        tx_expect_status(sa.f, 200);
        cr_assert_eq(got, BIG_BYTES, "round %d: the reader got %lld bytes", round, got);
        qv_future_release(sa.f);
    }
    qv_session_free(s);
    close(rd);
    remove_dir();
}

/* A FIFO with a writer that has written nothing (yet): the transfer that
 * reads it as upload_path (opened, no waiting) waits for its bytes. The
 * writer's end, and a reader's kept open meanwhile so that the writer's
 * open does not wait either (close it once the transfer has its own). */
static int fifo_writer(const char *fifo, int *rd)
{
    *rd = open(fifo, O_RDONLY | O_NONBLOCK);
    int wr = open(fifo, O_WRONLY);
    cr_assert(*rd >= 0 && wr >= 0);
    return wr;
}

/* The same with an upload read from a FIFO (upload_path) that the waiting
 * thread writes only after its waits: run there (QV_THREADS lends it a
 * worker's handle; on QV_LOOP it leads the loop while it waits), the
 * transfer's read of the body would wait for that very thread, for good. */
Test(stream, a_waiting_thread_never_runs_an_upload_from_the_pipe_it_writes_after)
{
    char fifo[256];
    new_fifo(fifo, sizeof fifo);
    static char body[256 << 10];
    memset(body, 'u', sizeof body);
    qv_session *s = TX_SESSION(.max_workers = 2);
    for (int round = 0; round < 3; round++) {
        int rd, wr = fifo_writer(fifo, &rd);
        close(rd);
        serves_after sa = {
            .s = s,
            .held = {.method = "PUT", .url = sink("/up"), .upload_path = fifo},
        };
        serve_in_time(&sa, round, wr, 1);
        for (size_t off = 0; off < sizeof body;) {
            ssize_t n = write(wr, body + off, sizeof body - off);
            cr_assert_gt(n, 0);
            off += (size_t)n;
        }
        close(wr);
        json_t *j = tx_json(tx_expect_status(sa.f, 200));
        cr_assert_eq(json_integer_value(tx_jget(j, "bytes")), (long long)sizeof body);
        qv_future_release(sa.f);
    }
    qv_session_free(s);
    remove_dir();
}

/* A cancel of an upload whose pipe stays empty stops it at once: a read
 * that waited for the writer heard no cancel until the writer wrote (on
 * every executor: the worker, the loop's thread, the worker process). */
Test(stream, a_cancel_stops_an_upload_waiting_for_its_pipe)
{
    char fifo[256];
    new_fifo(fifo, sizeof fifo);
    int rd, wr = fifo_writer(fifo, &rd);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(
        qv_request(s, &f,
                   &(qv_request_opts){.method = "PUT", .url = sink("/up"), .upload_path = fifo}),
        QV_OK);
    for (int i = 0; i < 3000 && qv_future_state_get(f) == QV_PENDING; i++) usleep(10000);
    cr_assert_eq(qv_future_state_get(f), QV_RUNNING);
    usleep(300000); /* it opened the FIFO and reads it (on a process pool: its worker) */
    cr_assert_eq(qv_future_cancel(f), 1);
    int rc = qv_future_wait(f, 5000);
    close(wr); /* (lets a stuck one go) */
    close(rd);
    cr_assert_eq(rc, QV_OK, "the cancel did not stop the upload waiting for its pipe");
    cr_assert_eq(qv_future_state_get(f), QV_CANCELLED);
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

/* ------------------------------------------------------- to a callback */

typedef struct got {
    sha h;
    int calls, stop_after;
    qv_future *f;
} got;

static int on_data(qv_future *f, const void *chunk, size_t len, void *arg)
{
    got *g = arg;
    g->f = f;
    sha_add(&g->h, chunk, len);
    return g->stop_after && ++g->calls >= g->stop_after;
}

Test(stream, on_data_gets_every_byte_in_order)
{
    qv_session *s = TX_SESSION(0);
    got g = {0};
    sha_init(&g.h);
    qv_future *f;
    cr_assert_eq(
        qv_request(s, &f,
                   &(qv_request_opts){.url = nginx("/big"), .on_data = on_data, .on_data_arg = &g}),
        QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    cr_assert_eq(qv_response_body_bytes(r), BIG_BYTES);
    cr_assert_eq(g.h.bytes, BIG_BYTES);
    cr_assert_eq(g.f, f, "on_data got another future");
    expect_big_file(&g.h, -1);
    qv_future_release(f);
    qv_session_free(s);
}

Test(stream, on_data_returning_non_zero_stops_the_transfer_with_qv_ehook)
{
    qv_session *s = TX_SESSION(0);
    got g = {.stop_after = 3};
    sha_init(&g.h);
    qv_future *f;
    cr_assert_eq(
        qv_request(s, &f,
                   &(qv_request_opts){.url = nginx("/big"), .on_data = on_data, .on_data_arg = &g}),
        QV_OK);
    const char *msg = tx_expect_error(f, QV_EHOOK);
    tx_assert_contains(msg, "on_data");
    cr_assert_eq(g.calls, 3, "on_data ran %d times after it said stop", g.calls - 3);
    cr_assert_lt(g.h.bytes, BIG_BYTES);
    char hex[65];
    sha_hex(&g.h, hex);
    qv_future_release(f);
    qv_session_free(s);
}

/* on_data that takes its time over one call (slow_at): asleep, or (busy)
 * computing, and runs on. */
typedef struct slow_once {
    sha h;
    int calls, slow_at, stop_after, busy;
    pthread_t waiter; /* the thread waiting for the result: on QV_LOOP it drives */
    int waiter_after; /* calls after the slow one made on that thread */
} slow_once;

static double thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int slow_once_data(qv_future *f, const void *chunk, size_t len, void *arg)
{
    (void)f;
    slow_once *o = arg;
    sha_add(&o->h, chunk, len);
    int call = ++o->calls;
    if (call > o->slow_at && pthread_equal(pthread_self(), o->waiter)) o->waiter_after++;
    if (call == o->slow_at && !o->busy) usleep(20 * 1000); /* well over QV_ON_DATA_BUDGET_MS */
    for (double t0 = thread_cpu_ms(); call == o->slow_at && o->busy && thread_cpu_ms() - t0 < 20;)
        ;
    return o->stop_after && call >= o->stop_after;
}

Test(stream, a_slow_on_data_call_moves_the_rest_of_the_body_off_the_transfers_thread)
{
    /* On QV_LOOP a quick on_data runs on the thread that drives the
     * transfers (here the one waiting for the result); after a slow call
     * (asleep, or busy for 20 ms of CPU) the rest of the body goes to a
     * delivery thread, every byte in order, and a stop there still stops
     * the transfer. */
    qv_session *s = TX_SESSION(0);
    for (int round = 0; round < 3; round++) {
        int stop = round == 1;
        slow_once o = {.slow_at = 5,
                       .stop_after = stop ? 12 : 0,
                       .busy = round == 2,
                       .waiter = pthread_self()};
        sha_init(&o.h);
        qv_future *f;
        cr_assert_eq(qv_request(s, &f,
                                &(qv_request_opts){.url = nginx("/big"),
                                                   .on_data = slow_once_data,
                                                   .on_data_arg = &o}),
                     QV_OK);
        if (stop) {
            tx_assert_contains(tx_expect_error(f, QV_EHOOK), "on_data");
            cr_assert_eq(o.calls, 12, "on_data ran %d times after it said stop", o.calls - 12);
            char hex[65];
            sha_hex(&o.h, hex); /* (frees the digest's state) */
        } else {
            qv_response *r = tx_expect_status(f, 200);
            cr_assert_eq(qv_response_body_bytes(r), BIG_BYTES);
            expect_big_file(&o.h, -1);
        }
        cr_assert_eq(o.waiter_after, 0, "%d calls after the slow one held up the transfers' thread",
                     o.waiter_after);
        qv_future_release(f);
    }
    qv_session_free(s);
}

/* A quick on_data, counting its calls that took over QV_ON_DATA_BUDGET_MS
 * in wall time and the calls made after the first of them by the thread
 * waiting for the result (on QV_LOOP it drives the transfers). */
typedef struct where_data {
    sha h;
    pthread_t waiter;
    int calls, long_calls, waiter_after;
    /* Long calls that no preemption explains: the vCPU stalled by its host
     * (a guest sees no switch for it), or a real wait. quiver cannot tell
     * those from a slow callback, and need not keep it in place then. */
    int unexplained;
} where_data;

/* The calling thread's CPU time (ms) and its voluntary and involuntary
 * context switches. */
static void thread_now(double *cpu_ms, long *waits, long *preempted)
{
    struct rusage ru;
    struct timespec ts;
    getrusage(RUSAGE_THREAD, &ru);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    *cpu_ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
    *waits = ru.ru_nvcsw;
    *preempted = ru.ru_nivcsw;
}

static int where_data_fn(qv_future *f, const void *chunk, size_t len, void *arg)
{
    (void)f;
    where_data *w = arg;
    double cpu0, cpu1;
    long waits0, waits1, pre0, pre1;
    thread_now(&cpu0, &waits0, &pre0);
    double t0 = now_ms();
    w->calls++;
    if (w->long_calls && pthread_equal(pthread_self(), w->waiter)) w->waiter_after++;
    sha_add(&w->h, chunk, len);
    if (now_ms() - t0 > QV_ON_DATA_BUDGET_MS) {
        w->long_calls++;
        thread_now(&cpu1, &waits1, &pre1);
        if (pre1 == pre0 || waits1 != waits0 || cpu1 - cpu0 > QV_ON_DATA_BUDGET_MS)
            w->unexplained++;
    }
    return 0;
}

/* Keeps the CPU it was started on busy until *arg is set. */
static void *spin(void *arg)
{
    while (!atomic_load((atomic_int *)arg))
        ;
    return NULL;
}

Test(stream, a_quick_on_data_that_was_only_preempted_stays_where_it_runs)
{
    /* Every thread of the test, the pool's and the spinner on one CPU: the
     * thread calling on_data is preempted in some calls (over the 2 ms
     * budget in wall time, not in CPU: 4-11 calls a run here on QV_LOOP).
     * On QV_LOOP such a call moved the rest of the body to a delivery
     * thread (2.4x the CPU of a bench download at load 15-25); only a slow
     * callback is moved now, and the waiting thread goes on calling it. */
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    cr_assert_eq(sched_setaffinity(0, sizeof one, &one), 0);
    qv_session *s = TX_SESSION(0);
    atomic_int stop = 0;
    pthread_t spinner;
    cr_assert_eq(pthread_create(&spinner, NULL, spin, &stop), 0);
    where_data w = {.waiter = pthread_self()};
    sha_init(&w.h);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){
                                .url = nginx("/big"), .on_data = where_data_fn, .on_data_arg = &w}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    atomic_store(&stop, 1);
    pthread_join(spinner, NULL);
    cr_assert_eq(qv_response_body_bytes(r), BIG_BYTES);
    expect_big_file(&w.h, -1);
    /* (A run where some long call was not a preemption proves nothing.) */
    if (tx_kind() == QV_LOOP && w.long_calls && !w.unexplained)
        cr_assert_gt(w.waiter_after, 0,
                     "after a preempted call (of %d, %d over the budget, each preempted) the "
                     "rest of the body left the transfers' thread",
                     w.calls, w.long_calls);
    qv_future_release(f);
    qv_session_free(s);
}

/* on_data that takes its time over each call, counting the calls begun
 * once its future's cancel returned. */
typedef struct slow_calls {
    atomic_int calls, after, cancelled;
} slow_calls;

static int slow_calls_data(qv_future *f, const void *chunk, size_t len, void *arg)
{
    (void)f;
    (void)chunk;
    (void)len;
    slow_calls *c = arg;
    atomic_fetch_add(&c->calls, 1);
    if (atomic_load(&c->cancelled)) atomic_fetch_add(&c->after, 1);
    usleep(100 * 1000);
    return 0;
}

Test(stream, a_cancel_stops_a_slow_on_data_at_once)
{
    /* A cancel that returned 1 lets at most the call it crossed begin, and
     * the future ends without on_data being handed what had come already
     * (QV_PROCESSES handed its worker's ring to it: 9 more calls, ~2 s). */
    qv_session *s = TX_SESSION(0);
    slow_calls c = {0};
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = nginx("/big"),
                                               .on_data = slow_calls_data,
                                               .on_data_arg = &c}),
                 QV_OK);
    double t0 = now_ms();
    while (atomic_load(&c.calls) < 2 && now_ms() - t0 < TX_RESULT_TIMEOUT_MS) usleep(1000);
    cr_assert_geq(atomic_load(&c.calls), 2, "on_data was not called twice in %d ms",
                  TX_RESULT_TIMEOUT_MS);
    t0 = now_ms();
    cr_assert_eq(qv_future_cancel(f), 1);
    atomic_store(&c.cancelled, 1);
    tx_expect_error(f, QV_ECANCELLED);
    double el = now_ms() - t0;
    cr_assert_leq(atomic_load(&c.after), 1, "%d on_data calls began after the cancel returned",
                  atomic_load(&c.after));
    cr_assert_lt(el, 1500.0, "the cancelled download ended %.0f ms after its cancel", el);
    qv_future_release(f);
    qv_session_free(s);
}

Test(stream, a_body_cut_short_fails_the_callback_download_with_qv_eprotocol)
{
    qv_session *s = TX_SESSION(0);
    got g = {0};
    sha_init(&g.h);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = tx_faults_url("/short?length=5000"),
                                               .on_data = on_data,
                                               .on_data_arg = &g}),
                 QV_OK);
    tx_expect_error(f, QV_EPROTOCOL);
    cr_assert_eq(g.h.bytes, 100);
    char hex[65];
    sha_hex(&g.h, hex);
    qv_future_release(f);
    qv_session_free(s);
}

/* ------------------------------------------------------------- progress */

typedef struct prog {
    int calls;
    long long last_dl, total, regress;
} prog;

static void on_progress(qv_future *f, long long dl_now, long long dl_total, long long ul_now,
                        long long ul_total, void *arg)
{
    (void)f, (void)ul_now, (void)ul_total;
    prog *p = arg;
    if (dl_now < p->last_dl) p->regress++;
    p->last_dl = dl_now;
    p->total = dl_total;
    p->calls++;
}

Test(stream, on_progress_counts_up_to_the_total_and_runs_at_the_end)
{
    make_dir();
    qv_session *s = TX_SESSION(0);
    prog p = {0};
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = tx_faults_url("/drip?bytes=5&interval=0.15"),
                                               .output_path = in_dir("out"),
                                               .on_progress = on_progress,
                                               .on_progress_arg = &p}),
                 QV_OK);
    tx_expect_status(f, 200);
    cr_assert_geq(p.calls, 2, "on_progress ran %d times over ~750 ms", p.calls);
    cr_assert_eq(p.regress, 0, "the byte count went backwards");
    cr_assert_eq(p.last_dl, 5, "the last call did not see the whole body");
    cr_assert_eq(p.total, 5);
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

/* A callback that cancels its own future on its second call (once the
 * future is known), counting the calls begun after that cancel returned. */
typedef struct self_cancel {
    atomic_int calls, after, cancel_rc;
    _Atomic(qv_future *) f;
} self_cancel;

static void self_cancel_call(self_cancel *c)
{
    qv_future *f = atomic_load(&c->f);
    if (atomic_load(&c->after) || !f) return;
    if (atomic_fetch_add(&c->calls, 1) == 1) {
        atomic_store(&c->cancel_rc, qv_future_cancel(f));
        atomic_store(&c->after, 1); /* from now on, each call counts one more */
    }
}

static void cancel_in_progress(qv_future *f, long long dl_now, long long dl_total, long long ul_now,
                               long long ul_total, void *arg)
{
    (void)f, (void)dl_now, (void)dl_total, (void)ul_now, (void)ul_total;
    self_cancel *c = arg;
    if (atomic_load(&c->after)) atomic_fetch_add(&c->after, 1);
    self_cancel_call(c);
}

/* The session freed: every transfer of it has ended, so every callback
 * call it would make has been made. */
static int calls_after_cancel(qv_session *s, qv_future *f, self_cancel *c)
{
    tx_expect_error(f, QV_ECANCELLED);
    qv_future_release(f);
    qv_session_free(s);
    cr_assert_eq(atomic_load(&c->cancel_rc), 1, "the callback did not cancel its future");
    return atomic_load(&c->after) - 1;
}

Test(stream, on_progress_is_not_called_after_its_future_was_cancelled)
{
    /* (QV_PROCESSES ran the PROGRESS frames the worker sent on, up to its
     * end-of-transfer one; the other kinds made that last call.) */
    qv_session *s = TX_SESSION(0);
    self_cancel c = {0};
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = tx_faults_url("/drip?bytes=30&interval=0.1"),
                                               .on_progress = cancel_in_progress,
                                               .on_progress_arg = &c}),
                 QV_OK);
    atomic_store(&c.f, f);
    int after = calls_after_cancel(s, f, &c);
    cr_assert_eq(after, 0, "on_progress was called %d times after its future was cancelled", after);
}

/* ------------------------------------------------------- range and resume */

Test(stream, range_asks_for_part_of_a_file)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(
        qv_request(s, &f, &(qv_request_opts){.url = nginx("/big"), .range = "bytes=0-1023"}),
        QV_OK);
    qv_response *r = tx_expect_status(f, 206);
    size_t len;
    const char *body = qv_response_body(r, &len);
    cr_assert_eq(len, 1024);
    char a[65], b[65];
    long long n;
    sha h;
    sha_init(&h);
    sha_add(&h, body, len);
    sha_hex(&h, a);
    sha_file(big_file(), 1024, b, &n);
    tx_assert_str_eq(a, b);
    qv_future_release(f);
    qv_session_free(s);
}

/* Copies the first n bytes of from into to. */
static void copy_head(const char *from, const char *to, long long n)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "head -c %lld '%s' > '%s'", n, from, to);
    cr_assert_eq(system(cmd), 0);
}

Test(stream, resume_appends_the_rest_of_a_partial_file)
{
    make_dir();
    copy_head(big_file(), in_dir("big"), 12345678);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){
                                .url = nginx("/big"), .output_path = in_dir("big"), .resume = 1}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 206);
    cr_assert_eq(qv_response_body_bytes(r), BIG_BYTES);
    expect_same_file(in_dir("big"), big_file());
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

Test(stream, resume_from_a_server_that_ignores_range_starts_the_file_over)
{
    make_dir();
    copy_head(big_file(), in_dir("out"), 3000);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    /* httpbin's /bytes ignores Range: a whole 200 answer. */
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = tu("/bytes/2000"),
                                               .output_path = in_dir("out"),
                                               .resume = 1}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    cr_assert_eq(qv_response_body_bytes(r), 2000);
    struct stat st;
    cr_assert_eq(stat(in_dir("out"), &st), 0);
    cr_assert_eq(st.st_size, 2000, "the whole body was appended to the partial file");
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

Test(stream, resume_of_a_complete_file_leaves_it_alone)
{
    make_dir();
    copy_head(big_file(), in_dir("big"), BIG_BYTES);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){
                                .url = nginx("/big"), .output_path = in_dir("big"), .resume = 1}),
                 QV_OK);
    tx_expect_status(f, 416);
    expect_same_file(in_dir("big"), big_file());
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

/* ---------------------------------------------------------------- uploads */

/* The sink's JSON answer: its sha256 and byte count. */
static void expect_sunk(qv_response *r, const char *sha256, long long bytes, int chunked)
{
    json_t *j = tx_json(r);
    tx_assert_str_eq(tx_jstr(j, "sha256"), sha256);
    cr_assert_eq(json_integer_value(tx_jget(j, "bytes")), bytes);
    cr_assert_eq(json_is_true(tx_jget(j, "chunked")), chunked);
}

/* Sends nginx's 64 MiB file with upload_path to the sink at path, and
 * checks that the sink got it all (its SHA-256 and size); the response. */
static qv_response *upload_big(qv_session *s, qv_future **f, const char *method, const char *path,
                               const qv_retry *retry)
{
    cr_assert_eq(qv_request(s, f,
                            &(qv_request_opts){.method = method,
                                               .url = sink(path),
                                               .upload_path = big_file(),
                                               .retry = retry}),
                 QV_OK);
    qv_response *r = tx_expect_status(*f, 200);
    char hex[65];
    long long n;
    sha_file(big_file(), -1, hex, &n);
    expect_sunk(r, hex, BIG_BYTES, 0);
    return r;
}

Test(stream, upload_path_sends_a_64_mib_file_with_its_length)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    qv_response *r = upload_big(s, &f, "PUT", "/up", NULL);
    tx_assert_str_eq(tx_jstr(tx_json(r), "method"), "PUT");
    qv_future_release(f);
    qv_session_free(s);
}

typedef struct producer {
    long long left, made;
    sha h;
    unsigned seed;
} producer;

static long produce(void *buf, size_t cap, void *arg)
{
    producer *p = arg;
    size_t n = cap < (size_t)p->left ? cap : (size_t)p->left;
    unsigned char *b = buf;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)((p->seed = p->seed * 1103515245 + 12345) >> 16);
    sha_add(&p->h, buf, n);
    p->left -= (long long)n;
    return (long)n;
}

/* A callback upload of p's bytes (fn: produce, or one that fails) to the
 * sink's path; len: upload_len. The future; p's hash is done with after. */
static qv_future *upload_produced(qv_session *s, const char *method, const char *path,
                                  long (*fn)(void *buf, size_t cap, void *arg), producer *p,
                                  long long len)
{
    sha_init(&p->h);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.method = method,
                                               .url = sink(path),
                                               .on_upload = fn,
                                               .on_upload_arg = p,
                                               .upload_len = len}),
                 QV_OK);
    return f;
}

/* The sink got what p made, chunked or not. */
static void expect_produced(qv_future *f, producer *p, int chunked)
{
    qv_response *r = tx_expect_status(f, 200);
    char hex[65];
    long long bytes = p->h.bytes;
    sha_hex(&p->h, hex);
    expect_sunk(r, hex, bytes, chunked);
}

/* The callback upload fails with want, its message naming what. */
static void expect_produced_fails(qv_future *f, producer *p, int want, const char *what)
{
    tx_assert_contains(tx_expect_error(f, want), what);
    char hex[65];
    sha_hex(&p->h, hex); /* (frees its hash) */
}

Test(stream, on_upload_streams_a_body_of_unknown_length_chunked)
{
    qv_session *s = TX_SESSION(0);
    producer p = {.left = 3 << 20, .seed = 1};
    qv_future *f = upload_produced(s, "POST", "/up", produce, &p, 0);
    expect_produced(f, &p, 1);
    qv_future_release(f);
    qv_session_free(s);
}

/* Makes fewer bytes than it may, of sizes that never line up with a
 * buffer's (1 to ~97 KiB): they arrive whole and in order. */
static long produce_odd(void *buf, size_t cap, void *arg)
{
    producer *p = arg;
    size_t odd = 1 + (size_t)(p->made * 7919 % 99991);
    p->made += 1;
    return produce(buf, odd < cap ? odd : cap, arg);
}

Test(stream, on_upload_pieces_of_odd_sizes_arrive_whole_and_in_order)
{
    qv_session *s = TX_SESSION(0);
    producer p = {.left = 3 << 20, .seed = 5};
    qv_future *f = upload_produced(s, "POST", "/up", produce_odd, &p, 0);
    expect_produced(f, &p, 1);
    cr_assert_eq(p.h.bytes, 3 << 20);
    qv_future_release(f);
    qv_session_free(s);
}

Test(stream, on_upload_with_upload_len_sends_that_content_length)
{
    qv_session *s = TX_SESSION(0);
    producer p = {.left = 1 << 20, .seed = 3};
    qv_future *f = upload_produced(s, "PUT", "/up", produce, &p, 1 << 20);
    expect_produced(f, &p, 0);
    cr_assert_eq(p.h.bytes, 1 << 20);
    qv_future_release(f);
    qv_session_free(s);
}

static long produce_then_fail(void *buf, size_t cap, void *arg)
{
    producer *p = arg;
    if (p->made >= (1 << 20)) return -1;
    long n = produce(buf, cap, arg);
    p->made += n;
    return n;
}

Test(stream, an_on_upload_that_fails_stops_the_transfer_with_qv_ehook)
{
    qv_session *s = TX_SESSION(0);
    producer p = {.left = 8 << 20, .seed = 4};
    qv_future *f = upload_produced(s, "POST", "/up", produce_then_fail, &p, 0);
    expect_produced_fails(f, &p, QV_EHOOK, "on_upload");
    cr_assert_lt(p.made, 2 << 20, "on_upload was called on after it failed");
    qv_future_release(f);
    qv_session_free(s);
}

/* An on_upload whose first call is held until the test cancelled its
 * future (on QV_PROCESSES the worker waits on an empty upload area
 * meanwhile), then makes 10 bytes a call, up to 1 MiB; or (hold = 0) 64 KiB
 * a call, up to 64 MiB. */
typedef struct held_upload {
    int hold;
    atomic_int entered, cancelled;
    atomic_llong made;
} held_upload;

static long make_held(void *buf, size_t cap, void *arg)
{
    held_upload *h = arg;
    atomic_store(&h->entered, 1);
    for (int i = 0; h->hold && i < 10000 && !atomic_load(&h->cancelled); i++) usleep(1000);
    long long limit = h->hold ? 1 << 20 : 64 << 20, made = atomic_load(&h->made);
    size_t n = h->hold ? 10 : 65536;
    if (n > cap) n = cap;
    if ((long long)n > limit - made) n = (size_t)(limit - made);
    memset(buf, 'u', n);
    atomic_fetch_add(&h->made, (long long)n);
    return (long)n;
}

static qv_future *upload_held(qv_session *s, const char *path, held_upload *h)
{
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.method = "POST",
                                               .url = sink(path),
                                               .on_upload = make_held,
                                               .on_upload_arg = h}),
                 QV_OK);
    return f;
}

/* f is cancelled, and its worker took the cancel: a pool of one serves the
 * next request. */
static void cancel_upload(qv_session *s, qv_future *f, held_upload *h)
{
    cr_assert_eq(qv_future_cancel(f), 1);
    atomic_store(&h->cancelled, 1);
    tx_expect_error(f, QV_ECANCELLED);
    qv_future_release(f);
    tx_get_ok(s, &f, sink("/hello"));
    qv_future_release(f);
}

Test(stream, a_cancel_reaches_a_transfer_waiting_for_on_upload)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    held_upload h = {.hold = 1};
    qv_future *f = upload_held(s, "/up", &h);
    for (int i = 0; i < 10000 && !atomic_load(&h.entered); i++) usleep(1000);
    cr_assert(atomic_load(&h.entered), "on_upload was not called");
    cancel_upload(s, f, &h);
    qv_session_free(s);
}

/* The server reads none of the body: the buffers on the way fill, and
 * on_upload is asked for no more (on QV_PROCESSES the worker stops asking
 * the parent for pieces); a cancel still ends it. */
Test(stream, a_cancel_reaches_an_upload_the_server_does_not_read)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    held_upload h = {0};
    qv_future *f = upload_held(s, "/no-read", &h);
    long long last = -1;
    for (int i = 0; i < 100 && (last != atomic_load(&h.made) || !last); i++) {
        last = atomic_load(&h.made);
        usleep(300 * 1000);
    }
    cr_assert_gt(last, 0, "on_upload was not called");
    cr_assert_lt(last, 64 << 20, "the body went somewhere");
    cancel_upload(s, f, &h);
    qv_session_free(s);
}

/* 64 KiB of 'u' a call, up to 64 MiB, the future cancelled on the second. */
static long cancel_in_upload(void *buf, size_t cap, void *arg)
{
    self_cancel *c = arg;
    if (atomic_load(&c->after)) atomic_fetch_add(&c->after, 1);
    self_cancel_call(c);
    size_t n = cap < 65536 ? cap : 65536;
    memset(buf, 'u', n);
    return atomic_load(&c->calls) < 1024 ? (long)n : 0;
}

Test(stream, on_upload_is_not_called_after_its_future_was_cancelled)
{
    /* (QV_PROCESSES answered the worker's next ask for a piece with
     * another call; the other kinds called it while libcurl filled its
     * buffer.) */
    qv_session *s = TX_SESSION(0);
    self_cancel c = {0};
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.method = "POST",
                                               .url = sink("/up"),
                                               .on_upload = cancel_in_upload,
                                               .on_upload_arg = &c}),
                 QV_OK);
    atomic_store(&c.f, f);
    int after = calls_after_cancel(s, f, &c);
    cr_assert_eq(after, 0, "on_upload was called %d times after its future was cancelled", after);
}

Test(stream, a_307_sends_the_upload_file_again)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    qv_response *r = upload_big(s, &f, "POST", "/307", NULL);
    tx_assert_str_eq(tx_jstr(tx_json(r), "method"), "POST");
    tx_assert_str_eq(tx_jstr(tx_json(r), "path"), "/sink");
    qv_future_release(f);
    qv_session_free(s);
}

Test(stream, a_retry_sends_the_upload_file_again_from_its_start)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    char path[256];
    snprintf(path, sizeof path, "/fail-once?key=retry-%s-%d", tx_kind_name(), getpid());
    qv_response *r = upload_big(s, &f, "PUT", path, &(qv_retry){.max_retries = 2, .backoff_ms = 1});
    cr_assert_eq(qv_response_attempts(r), 2);
    qv_future_release(f);
    qv_session_free(s);
}

Test(stream, a_callback_upload_that_must_be_sent_again_fails_clearly)
{
    qv_session *s = TX_SESSION(0);
    producer p = {.left = 100000, .seed = 2};
    qv_future *f = upload_produced(s, "POST", "/307", produce, &p, 100000);
    expect_produced_fails(f, &p, QV_EIO, "rewind");
    qv_future_release(f);
    qv_session_free(s);
}

Test(stream, an_unreadable_upload_file_fails_with_qv_eio_naming_it)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.method = "PUT",
                                               .url = sink("/up"),
                                               .upload_path = "/nonexistent-qv/upload"}),
                 QV_OK);
    const char *msg = tx_expect_error(f, QV_EIO);
    tx_assert_contains(msg, "/nonexistent-qv/upload");
    qv_future_release(f);
    qv_session_free(s);
}

/* Opens fifo's write end once a reader has it open (bounded): -1 if none
 * did (the upload never opened it, or closed it). */
static int open_writer(const char *fifo)
{
    for (int i = 0; i < 1000; i++) {
        int fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0 || errno != ENXIO) return fd;
        usleep(10000);
    }
    return -1;
}

/* An upload from a FIFO whose writer has not even opened it yet. Its
 * transfer's open must not wait for the writer (an open of a FIFO does:
 * on QV_LOOP that held up every transfer, and the thread that waited for
 * the GETs below, leading the loop, hung), nor take the empty read of a
 * FIFO no writer has opened for the end of the body (an empty body would
 * go). Beside it: GETs, which complete meanwhile; an upload whose writer
 * opens and closes without a byte (an empty body); and one whose writer
 * never comes, which a cancel ends. */
Test(stream, an_upload_from_a_fifo_holds_up_no_other_transfer)
{
    make_dir();
    char fifo[3][256];
    qv_session *s = TX_SESSION(.max_workers = 4);
    qv_future *up[3], *get[3];
    for (int i = 0; i < 3; i++) {
        char name[8] = "fifo0";
        name[4] = (char)('0' + i);
        snprintf(fifo[i], sizeof fifo[i], "%s", in_dir(name));
        cr_assert_eq(mkfifo(fifo[i], 0600), 0);
        cr_assert_eq(qv_request(s, &up[i],
                                &(qv_request_opts){
                                    .method = "PUT", .url = sink("/up"), .upload_path = fifo[i]}),
                     QV_OK);
    }
    for (int i = 0; i < 3; i++) cr_assert_eq(qv_get(s, &get[i], tu("/get")), QV_OK);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(qv_future_wait(get[i], 10000), QV_OK,
                     "a GET beside uploads from FIFOs no one writes yet did not complete");
        tx_expect_status(get[i], 200);
    }
    for (int i = 0; i < 3; i++)
        cr_assert_eq(qv_future_state_get(up[i]), QV_RUNNING,
                     "upload %d from a FIFO with no writer yet did not wait for it", i);

    static const char text[] = "sent as it was written\n";
    int w = open_writer(fifo[0]);
    cr_assert_geq(w, 0, "the upload never opened its FIFO: %s", strerror(errno));
    cr_assert_eq(write(w, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(w);
    int empty = open_writer(fifo[1]);
    cr_assert_geq(empty, 0, "the upload never opened its FIFO: %s", strerror(errno));
    close(empty);
    char hex[65];
    const char *parts[2] = {text, ""};
    for (int i = 0; i < 2; i++) {
        qv_response *r = tx_expect_status(up[i], 200);
        sha h;
        sha_init(&h);
        sha_add(&h, parts[i], strlen(parts[i]));
        sha_hex(&h, hex);
        expect_sunk(r, hex, (long long)strlen(parts[i]), 1);
    }

    cr_assert_eq(qv_future_state_get(up[2]), QV_RUNNING);
    cr_assert_eq(qv_future_cancel(up[2]), 1);
    int rc = qv_future_wait(up[2], 5000);
    if (rc != QV_OK) close(open_writer(fifo[2])); /* (lets a stuck one go) */
    cr_assert_eq(rc, QV_OK, "the cancel did not stop the upload waiting for its FIFO's writer");
    cr_assert_eq(qv_future_state_get(up[2]), QV_CANCELLED);
    for (int i = 0; i < 3; i++) {
        qv_future_release(get[i]);
        qv_future_release(up[i]);
    }
    qv_session_free(s);
    remove_dir();
}

/* A FIFO whose writer wrote the whole body and went before the transfer
 * opened it (a reader kept the FIFO open meanwhile): its bytes, then its
 * end. poll reports no POLLHUP for a writer that came before our open, so
 * that end was taken for "no writer yet" and the upload waited for good. */
Test(stream, an_upload_from_a_fifo_whose_writer_went_before_it_was_opened_ends)
{
    char fifo[256];
    int rd = new_fifo_read(fifo, sizeof fifo);
    static const char text[] = "written and closed before the transfer\n";
    int w = open_writer(fifo);
    cr_assert_geq(w, 0, "%s", strerror(errno));
    cr_assert_eq(write(w, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(w);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(
        qv_request(s, &f,
                   &(qv_request_opts){.method = "PUT", .url = sink("/up"), .upload_path = fifo}),
        QV_OK);
    int rc = qv_future_wait(f, 5000);
    if (rc != QV_OK) qv_future_cancel(f);
    cr_assert_eq(rc, QV_OK, "the upload waited for another writer after its bytes");
    sha h;
    char hex[65];
    sha_init(&h);
    sha_add(&h, text, sizeof text - 1);
    sha_hex(&h, hex);
    expect_sunk(tx_expect_status(f, 200), hex, (long long)(sizeof text - 1), 1);
    qv_future_release(f);
    close(rd);
    qv_session_free(s);
    remove_dir();
}

/* A FIFO's body for the sink's path: written once the upload has opened the
 * FIFO, then its end. The future is left in *f. */
static void upload_fifo(qv_session *s, qv_future **f, const char *path, const qv_retry *retry)
{
    char fifo[256];
    new_fifo(fifo, sizeof fifo);
    cr_assert_eq(qv_request(s, f,
                            &(qv_request_opts){.method = "PUT",
                                               .url = sink(path),
                                               .upload_path = fifo,
                                               .retry = retry,
                                               .timeout_ms = 5000}),
                 QV_OK);
    int wr = open_writer(fifo);
    cr_assert(wr >= 0, "the upload never opened the FIFO");
    cr_assert_eq(write(wr, "from the pipe", 13), 13);
    close(wr);
}

/* A pipe's bytes can be read once: opened again for a retry, the FIFO would
 * have no writer (its one went with its end), and the retry waited for one
 * until its timeout. As with on_upload, no retry: the 503 is the outcome. */
Test(stream, a_fifo_upload_is_not_retried)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    char path[256];
    snprintf(path, sizeof path, "/fail-once?key=fifo-%s-%d", tx_kind_name(), getpid());
    upload_fifo(s, &f, path, &(qv_retry){.max_retries = 2, .backoff_ms = 1});
    qv_response *r = tx_expect_status(f, 503);
    cr_assert_eq(qv_response_attempts(r), 1);
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

/* Nor sent again for a 307: the hop fails clearly, as on_upload's does. */
Test(stream, a_fifo_upload_that_must_be_sent_again_fails_clearly)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    upload_fifo(s, &f, "/307", NULL);
    const char *msg = tx_expect_error(f, QV_EIO);
    tx_assert_contains(msg, "rewind");
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

/* ------------------------------------------------------------ bad options */

Test(stream, conflicting_forms_are_refused_at_submit)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f = NULL;
    const char *u = nginx("/small");
    cr_assert_eq(
        qv_request(s, &f, &(qv_request_opts){.url = u, .output_path = "/tmp/x", .output_fd = 1}),
        QV_EINVAL);
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = u, .resume = 1}), QV_EINVAL);
    cr_assert_eq(
        qv_request(s, &f,
                   &(qv_request_opts){
                       .url = u, .output_path = "/tmp/x", .resume = 1, .range = "bytes=0-1"}),
        QV_EINVAL);
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = u, .range = "bytes=0-1\r\nX: y"}),
                 QV_EINVAL);
    cr_assert_eq(
        qv_request(s, &f, &(qv_request_opts){.url = u, .body = "x", .upload_path = "/tmp/x"}),
        QV_EINVAL);
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = u, .output_fd = -2}), QV_EINVAL);
    cr_assert_null(f);
    qv_session_free(s);
}

/* ------------------------------------------------ pull: stream and read */

/* Reads r's whole body through qv_response_read into h; the last code. */
static int read_all(qv_response *r, sha *h, size_t chunk)
{
    static char buf[1 << 16];
    for (;;) {
        size_t n = 0;
        int rc = qv_response_read(r, buf, chunk, &n, TX_RESULT_TIMEOUT_MS);
        if (rc != QV_OK) return rc;
        if (n == 0) return QV_OK;
        sha_add(h, buf, n);
    }
}

/* Reads r's whole body and drops it: the last code; *bytes gets the count. */
static int drain(qv_response *r, size_t chunk, long long *bytes)
{
    sha h;
    sha_init(&h);
    int rc = read_all(r, &h, chunk);
    char hex[65];
    sha_hex(&h, hex);
    *bytes = h.bytes;
    return rc;
}

/* Writes 1000 bytes to the descriptor after 300 ms, then closes it. */
static void *write_late(void *arg)
{
    int wr = *(int *)arg;
    static char more[1000];
    memset(more, 'l', sizeof more);
    usleep(300000);
    cr_assert_eq(write(wr, more, sizeof more), (ssize_t)sizeof more);
    close(wr);
    return NULL;
}

/* A streamed response whose request body still comes from a pipe (the
 * fault server answers a chunked upload before reading it): the upload
 * waits for the pipe's writer while the reader waits for the body's end,
 * and goes on once the writer writes and closes. On QV_THREADS the reader
 * runs the transfer lent to it: its passes must resume the upload too, or
 * it waited for the read timeout (10 s here) before its worker did. */
Test(stream, a_streamed_response_whose_upload_pipe_writes_late_ends_once_it_is_sent)
{
    char fifo[256];
    new_fifo(fifo, sizeof fifo);
    int rd, wr = fifo_writer(fifo, &rd);
    static char first[1000];
    memset(first, 'f', sizeof first);
    cr_assert_eq(write(wr, first, sizeof first), (ssize_t)sizeof first);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.method = "POST",
                                               .url = tx_faults_url("/drip?bytes=3&interval=0.05"),
                                               .upload_path = fifo,
                                               .stream = 1,
                                               .read_timeout_ms = 10000}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    pthread_t t;
    double start = now_ms();
    cr_assert_eq(pthread_create(&t, NULL, write_late, &wr), 0);
    long long bytes = 0;
    int rc = drain(r, 1 << 16, &bytes);
    double took = now_ms() - start;
    pthread_join(t, NULL);
    close(rd);
    cr_assert_eq(rc, QV_OK, "%s", qv_response_read_error(r));
    cr_assert_eq(bytes, 3);
    cr_assert_lt(took, 5000,
                 "the body ended %.0f ms after the writer began (it wrote after 300 ms)", took);
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

Test(stream, stream_reads_a_64_mib_body_through_the_reader)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = nginx("/big"), .stream = 1}), QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    size_t len = 99;
    qv_response_body(r, &len);
    cr_assert_eq(len, 0, "a streamed body is not kept in memory");
    char room;
    size_t none = 1;
    cr_assert_eq(qv_response_read(r, &room, 0, &none, -1), QV_EINVAL, "no room is no end");
    cr_assert_eq(none, 0);
    sha h;
    sha_init(&h);
    cr_assert_eq(read_all(r, &h, 1 << 16), QV_OK, "%s", qv_response_read_error(r));
    cr_assert_eq(h.bytes, BIG_BYTES);
    expect_big_file(&h, -1);
    cr_assert_eq(qv_response_body_bytes(r), BIG_BYTES);
    size_t more = 1;
    char c;
    cr_assert_eq(qv_response_read(r, &c, 1, &more, 0), QV_OK);
    cr_assert_eq(more, 0, "bytes after the end");
    qv_future_release(f);
    qv_session_free(s);
}

/* The most of a body that comes in while no one reads it: the stream's
 * buffer (a process worker fills its whole ring). */
static long long unread_max(void)
{
    return (long long)(tx_kind() == QV_PROCESSES ? QV_RING_CAP : QV_PIPE_CAP);
}

Test(stream, a_reader_that_stops_reading_holds_the_transfer_back)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = nginx("/big"), .stream = 1}), QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    char buf[1000];
    size_t n;
    cr_assert_eq(qv_response_read(r, buf, sizeof buf, &n, TX_RESULT_TIMEOUT_MS), QV_OK);
    cr_assert_gt(n, 0);
    /* Without a reader the transfer may take in at most the buffer's worth
     * (and libcurl's one chunk): give it time to overrun if it would. */
    long long seen = 0;
    for (int i = 0; i < 50; i++) {
        usleep(10000);
        seen = qv_response_body_bytes(r);
    }
    cr_assert_leq(seen - (long long)n, unread_max(), "%lld bytes came in without a reader", seen);
    /* And it goes on once read again. */
    sha h;
    sha_init(&h);
    sha_add(&h, buf, n);
    cr_assert_eq(read_all(r, &h, 4096), QV_OK, "%s", qv_response_read_error(r));
    cr_assert_eq(h.bytes, BIG_BYTES);
    char hex[65];
    sha_hex(&h, hex);
    qv_future_release(f);
    qv_session_free(s);
}

Test(stream, the_total_timeout_ends_a_stream_whose_reader_stopped)
{
    /* One worker: the next request runs only once the stream's transfer
     * has stopped. */
    qv_executor *ex = tx_executor(1);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *f, *next;
    double t0 = now_ms();
    cr_assert_eq(
        qv_request(s, &f,
                   &(qv_request_opts){.url = nginx("/big"), .stream = 1, .timeout_ms = 1000}),
        QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    char buf[1000];
    size_t n;
    cr_assert_eq(qv_response_read(r, buf, sizeof buf, &n, TX_RESULT_TIMEOUT_MS), QV_OK);
    /* The reader stops: the timeout must still end the transfer. */
    cr_assert_eq(qv_get(s, &next, tu("/get")), QV_OK);
    cr_assert_eq(qv_future_wait(next, 4000), QV_OK,
                 "the stream's transfer still held the worker %.0f ms after its timeout",
                 now_ms() - t0 - 1000);
    tx_expect_status(next, 200);
    /* The reader gets what came before the timeout, then the timeout. */
    long long bytes;
    const char *msg;
    cr_assert_eq(drain(r, 1 << 16, &bytes), QV_ETIMEOUT, "%s", qv_response_read_error(r));
    cr_assert_leq(bytes, unread_max(), "%lld bytes came in without a reader", bytes + (long long)n);
    msg = qv_response_read_error(r);
    tx_assert_contains(msg, "/big");
    qv_future_release(next);
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
}

/* Waits (bounded) until r's transfer has filled the buffer and stopped:
 * paused, with a chunk it could not hand over still in libcurl. */
static void wait_paused(qv_response *r)
{
    long long last = -1;
    for (int i = 0; i < 100; i++) {
        long long now = qv_response_body_bytes(r);
        if (now >= (long long)QV_PIPE_CAP / 2 && now == last) return;
        last = now;
        usleep(100000);
    }
    cr_assert_fail("the stream never paused (%lld bytes in)", last);
}

static const char *nginx_h2(const char *path)
{
    static _Thread_local char buf[512];
    snprintf(buf, sizeof buf, "%s%s", tx_env("QV_NGINX_TLS_URL", "nginx with HTTP/2"), path);
    return buf;
}

Test(stream, a_stream_let_go_while_paused_leaves_nothing_for_the_next_one)
{
    qv_session *s =
        TX_SESSION(.max_workers = 2, .ca_file = tx_env("QV_NGINX_CA", "nginx's test CA"));
    /* Two streams paused on one HTTP/2 connection (QV_LOOP multiplexes):
     * the first is let go while the connection stays in use. */
    qv_future *a, *b, *f;
    cr_assert_eq(qv_request(s, &a, &(qv_request_opts){.url = nginx_h2("/big"), .stream = 1}),
                 QV_OK);
    wait_paused(tx_expect_status(a, 200));
    cr_assert_eq(qv_request(s, &b, &(qv_request_opts){.url = nginx_h2("/big"), .stream = 1}),
                 QV_OK);
    wait_paused(tx_expect_status(b, 200));
    qv_future_release(a);
    /* The next stream gets its handle; it pauses and resumes too. */
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){
                                .url = nginx("/big"), .range = "bytes=0-1048575", .stream = 1}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 206);
    wait_paused(r);
    sha h;
    sha_init(&h);
    cr_assert_eq(read_all(r, &h, 1000), QV_OK, "%s", qv_response_read_error(r));
    cr_assert_eq(h.bytes, 1 << 20, "another body's bytes came in");
    expect_big_file(&h, 1 << 20);
    qv_future_release(f);
    qv_future_release(b);
    qv_session_free(s);
}

Test(stream, the_future_completes_with_the_headers_before_the_body)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    double t0 = now_ms();
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = tx_faults_url("/drip?bytes=4&interval=0.4"),
                                               .stream = 1}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    double at_headers = now_ms() - t0;
    char buf[16];
    size_t got = 0, n;
    int rc;
    while ((rc = qv_response_read(r, buf + got, sizeof buf - got, &n, 5000)) == QV_OK && n)
        got += n;
    cr_assert_eq(rc, QV_OK, "%s", qv_response_read_error(r));
    double at_end = now_ms() - t0;
    cr_assert_eq(got, 4);
    cr_assert(memcmp(buf, "dddd", 4) == 0);
    /* The body takes 1.6 s to drip; the headers come first. */
    cr_assert_lt(at_headers, at_end - 800, "headers at %.0f ms, body done at %.0f ms", at_headers,
                 at_end);
    qv_future_release(f);
    qv_session_free(s);
}

/* Hand-offs are batched (a consumer is woken per batch of chunks, a process
 * worker sends a data frame per batch): a body that trickles in must still
 * reach its consumer byte by byte, not wait for the bytes after it. */
static const char *trickle(void)
{
    return tx_faults_url("/drip?bytes=4&interval=0.4");
}

/* The body takes 1.6 s; its first byte comes at 0.4 s. */
static void expect_first_byte_early(double first, double end)
{
    cr_assert_lt(first, end - 700, "first byte at %.0f ms, the last at %.0f ms", first, end);
}

Test(stream, a_trickling_body_reaches_the_reader_byte_by_byte)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = trickle(), .stream = 1}), QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    double t0 = now_ms(), first = -1;
    char buf[16];
    size_t got = 0, n;
    int rc;
    while ((rc = qv_response_read(r, buf + got, sizeof buf - got, &n, 5000)) == QV_OK && n) {
        if (first < 0) first = now_ms() - t0;
        got += n;
    }
    cr_assert_eq(rc, QV_OK, "%s", qv_response_read_error(r));
    cr_assert_eq(got, 4);
    expect_first_byte_early(first, now_ms() - t0);
    qv_future_release(f);
    qv_session_free(s);
}

/* Where on_progress ran once the reader had the headers. */
typedef struct progress_where {
    pthread_t reader;
    atomic_int reading, here, elsewhere;
} progress_where;

static void note_where(qv_future *f, long long dl_now, long long dl_total, long long ul_now,
                       long long ul_total, void *arg)
{
    (void)f, (void)dl_now, (void)dl_total, (void)ul_now, (void)ul_total;
    progress_where *w = arg;
    if (!atomic_load(&w->reading)) return;
    atomic_fetch_add(pthread_equal(pthread_self(), w->reader) ? &w->here : &w->elsewhere, 1);
}

/* The trickling body streamed with on_progress watching: its response,
 * the headers in. */
typedef void (*progress_fn)(qv_future *f, long long dl_now, long long dl_total, long long ul_now,
                            long long ul_total, void *arg);
static qv_response *trickle_watched(qv_session *s, qv_future **f, progress_fn fn, void *arg)
{
    cr_assert_eq(
        qv_request(s, f,
                   &(qv_request_opts){
                       .url = trickle(), .stream = 1, .on_progress = fn, .on_progress_arg = arg}),
        QV_OK);
    return tx_expect_status(*f, 200);
}

/* Not on QV_PROCESSES: a pool's worker process receives it, and sends it
 * over. */
TX_TEST_KINDS(stream, a_waiting_reader_receives_its_body_on_its_own_thread, threads loop);
Test(stream, a_waiting_reader_receives_its_body_on_its_own_thread)
{
    qv_session *s = TX_SESSION(0);
    progress_where w = {.reader = pthread_self()};
    qv_future *f;
    qv_response *r = trickle_watched(s, &f, note_where, &w);
    atomic_store(&w.reading, 1);
    long long bytes = 0;
    cr_assert_eq(drain(r, 16, &bytes), QV_OK, "%s", qv_response_read_error(r));
    cr_assert_eq(bytes, 4);
    /* libcurl reports progress at least every second while it waits (the
     * body takes 1.6 s), on the thread that runs the transfer. */
    cr_assert_geq(atomic_load(&w.here), 2,
                  "on_progress ran %d times on the reader's thread, %d "
                  "elsewhere",
                  atomic_load(&w.here), atomic_load(&w.elsewhere));
    qv_future_release(f);
    qv_session_free(s);
}

/* Frees the pool from on_progress once it runs on the reader's thread
 * (QV_PROCESSES: on the pool's dispatcher, where it never does). */
typedef struct free_from_progress {
    pthread_t reader;
    atomic_int reading;
    qv_executor *ex;
} free_from_progress;

static void free_pool_there(qv_future *f, long long dl_now, long long dl_total, long long ul_now,
                            long long ul_total, void *arg)
{
    (void)f, (void)dl_now, (void)dl_total, (void)ul_now, (void)ul_total;
    free_from_progress *p = arg;
    if (atomic_load(&p->reading) &&
        (tx_kind() == QV_PROCESSES || pthread_equal(pthread_self(), p->reader)))
        qv_executor_free(p->ex);
}

/* A transfer the reader runs is the pool's: freeing the pool from its
 * callbacks there is the misuse it is on a worker (the program stops with a
 * message), not a wait for the reader to give the transfer back. */
Test(stream, freeing_the_pool_from_a_callback_on_the_readers_thread_aborts, .signal = SIGABRT)
{
    free_from_progress p = {.reader = pthread_self(), .ex = tx_executor(1)};
    qv_session *s = TX_SESSION(.executor = p.ex);
    qv_future *f;
    qv_response *r = trickle_watched(s, &f, free_pool_there, &p);
    atomic_store(&p.reading, 1);
    long long bytes = 0;
    drain(r, 16, &bytes);
    cr_assert_fail("the pool was not freed from on_progress, or the misuse went unseen");
}

static int note_first(qv_future *f, const void *chunk, size_t len, void *arg)
{
    (void)f, (void)chunk, (void)len;
    double *first = arg;
    if (*first < 0) *first = now_ms();
    return 0;
}

Test(stream, a_trickling_body_reaches_on_data_byte_by_byte)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    double first = -1, t0 = now_ms();
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){
                                .url = trickle(), .on_data = note_first, .on_data_arg = &first}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    cr_assert_eq(qv_response_body_bytes(r), 4);
    expect_first_byte_early(first - t0, now_ms() - t0);
    qv_future_release(f);
    qv_session_free(s);
}

/* No memory for a stream's buffer (a ring of QV_PIPE_CAP, the one
 * allocation of that size) in this process: a process pool's workers,
 * forked before, allocate as usual. */
static int ring_test_pid;

static int ring_refused(size_t n)
{
    return n == QV_PIPE_CAP && getpid() == ring_test_pid;
}

static void *ring_malloc(size_t n)
{
    return ring_refused(n) ? NULL : malloc(n);
}

static void *ring_calloc(size_t n, size_t k)
{
    return (k && n > SIZE_MAX / k) || ring_refused(n * k) ? NULL : calloc(n, k);
}

static void *ring_realloc(void *p, size_t n)
{
    return ring_refused(n) ? NULL : realloc(p, n);
}

static void no_ring_allocator(void)
{
    static const qv_allocator a = {ring_malloc, ring_calloc, ring_realloc, free};
    ring_test_pid = (int)getpid();
    cr_assert_eq(qv_set_allocator(&a), QV_OK);
}

Test(stream, a_stream_without_memory_for_its_buffer_fails_with_qv_enomem, .init = no_ring_allocator)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = nginx("/big"), .stream = 1}), QV_OK);
    tx_expect_error(f, QV_ENOMEM);
    qv_future_release(f);
    qv_session_free(s);
}

Test(stream, a_body_cut_short_fails_the_read_with_qv_eprotocol)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(
        qv_request(s, &f,
                   &(qv_request_opts){.url = tx_faults_url("/short?length=100000"), .stream = 1}),
        QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    long long bytes;
    cr_assert_eq(drain(r, 1000, &bytes), QV_EPROTOCOL);
    cr_assert_eq(bytes, 100);
    tx_assert_contains(qv_response_read_error(r), "/short");
    qv_future_release(f);
    qv_session_free(s);
}

Test(stream, a_stall_mid_body_fails_the_read_with_the_read_timeout)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = tx_faults_url("/stall-body"),
                                               .stream = 1,
                                               .read_timeout_ms = 300}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    char buf[100];
    size_t n;
    /* a read that waits less than the stall: nothing yet, the stream goes on */
    cr_assert_eq(qv_response_read(r, buf, sizeof buf, &n, TX_RESULT_TIMEOUT_MS), QV_OK);
    cr_assert_eq(n, 10);
    cr_assert_eq(qv_response_read(r, buf, sizeof buf, &n, 50), QV_EWAIT_TIMEOUT);
    cr_assert_eq(qv_response_read(r, buf, sizeof buf, &n, TX_RESULT_TIMEOUT_MS), QV_EREAD_TIMEOUT);
    cr_assert_eq(n, 0);
    qv_future_release(f);
    qv_session_free(s);
}

Test(stream, a_gzip_bomb_read_through_the_stream_stops_at_max_response_bytes)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){.url = tx_faults_url("/gzip-bomb"),
                                               .stream = 1,
                                               .max_response_bytes = 4 << 20}),
                 QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    long long bytes;
    cr_assert_eq(drain(r, 1 << 16, &bytes), QV_ETOO_LARGE);
    cr_assert_leq(bytes, 4 << 20);
    qv_future_release(f);
    qv_session_free(s);
}

Test(stream, releasing_an_unread_stream_stops_its_transfer)
{
    qv_session *s = TX_SESSION(0);
    for (int i = 0; i < 3; i++) {
        qv_future *f;
        cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = nginx("/big"), .stream = 1}),
                     QV_OK);
        tx_expect_status(f, 200);
        qv_future_release(f); /* 64 MiB left unread */
    }
    /* The session waits for its transfers: they must have stopped. */
    double t0 = now_ms();
    qv_session_free(s);
    cr_assert_lt(now_ms() - t0, 10000, "freeing the session waited %.0f ms", now_ms() - t0);
}

Test(stream, closing_the_session_ends_a_stream_nobody_reads)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = nginx("/big"), .stream = 1}), QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    qv_session_close(s, 0); /* returns: the unread stream does not hold it */
    long long bytes;
    cr_assert_eq(drain(r, 1 << 16, &bytes), QV_ESHUTDOWN);
    cr_assert_lt(bytes, BIG_BYTES);
    qv_future_release(f);
    qv_session_free(s);
}

static void *close_session(void *s)
{
    qv_session_close(s, 0);
    return NULL;
}

Test(stream, closing_the_session_before_the_headers_come_ends_the_stream_too)
{
    qv_executor *ex = tx_executor(1);
    qv_session *s = TX_SESSION(.executor = ex);
    qv_future *first, *f;
    /* The one worker is busy for a while: the stream waits its turn. */
    cr_assert_eq(qv_request(s, &first,
                            &(qv_request_opts){.url = tx_faults_url("/stall-status"),
                                               .read_timeout_ms = 1500}),
                 QV_OK);
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = tx_faults_url("/huge"), .stream = 1}),
                 QV_OK);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, close_session, s), 0);
    /* Its headers come after the close began: no one will read the body. */
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 20;
    cr_assert_eq(pthread_timedjoin_np(t, NULL, &dl), 0,
                 "closing the session waits for a stream no one reads");
    tx_expect_error(first, QV_EREAD_TIMEOUT);
    qv_response *r = tx_expect_status(f, 200);
    long long bytes;
    cr_assert_eq(drain(r, 1 << 16, &bytes), QV_ESHUTDOWN);
    qv_future_release(first);
    qv_future_release(f);
    qv_session_free(s);
    qv_executor_free(ex);
}

Test(stream, a_streamed_redirect_gives_only_the_final_body)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    char url[1024];
    snprintf(url, sizeof url, "%s", tu("/redirect-to?url=/bytes/5000%3Fseed%3D7&status_code=302"));
    cr_assert_eq(qv_request(s, &f, &(qv_request_opts){.url = url, .stream = 1}), QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    cr_assert_eq(qv_response_history_len(r), 1);
    long long bytes;
    cr_assert_eq(drain(r, 999, &bytes), QV_OK);
    cr_assert_eq(bytes, 5000);
    qv_future_release(f);
    qv_session_free(s);
}

static int status_hook(qv_session *s, qv_response *r, void *arg)
{
    (void)s;
    size_t len = 1;
    qv_response_body(r, &len);
    if (arg) *(int *)arg = qv_response_status(r) * 10 + (len == 0);
    return 0;
}

Test(stream, hooks_run_with_the_headers)
{
    qv_session *s = TX_SESSION(0);
    int seen = 0;
    qv_future *f;
    cr_assert_eq(
        qv_request(s, &f,
                   &(qv_request_opts){.url = tu("/bytes/3000"),
                                      .stream = 1,
                                      .hook = status_hook,
                                      /* no such address in a worker process */
                                      .hook_arg = tx_kind() == QV_PROCESSES ? NULL : &seen}),
        QV_OK);
    qv_response *r = tx_expect_status(f, 200);
    if (tx_kind() != QV_PROCESSES) /* there the hook ran in the worker */
        cr_assert_eq(seen, 2001, "the hook saw %d (status * 10 + body empty)", seen);
    long long bytes;
    cr_assert_eq(drain(r, 1000, &bytes), QV_OK);
    cr_assert_eq(bytes, 3000);
    qv_future_release(f);
    qv_session_free(s);
}

Test(stream, read_also_reads_a_body_held_in_memory)
{
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    qv_response *r = tx_get_ok(s, &f, tu("/bytes/2500"));
    size_t len;
    const char *body = qv_response_body(r, &len);
    cr_assert_eq(len, 2500);
    char buf[1000];
    size_t n, at = 0;
    while (qv_response_read(r, buf, sizeof buf, &n, 0) == QV_OK && n) {
        cr_assert(memcmp(buf, body + at, n) == 0);
        at += n;
    }
    cr_assert_eq(at, 2500);
    cr_assert_eq(qv_response_read(NULL, buf, 1, &n, 0), QV_EINVAL);
    cr_assert_eq(qv_response_read(r, buf, 0, &n, 0), QV_EINVAL, "no room is no end of the body");
    qv_future_release(f);
    qv_session_free(s);
}

/* A callback that takes its time over every chunk. */
static int slow_data(qv_future *f, const void *chunk, size_t len, void *arg)
{
    (void)f, (void)chunk;
    *(long long *)arg += (long long)len;
    usleep(200 * 1000);
    return 0;
}

/* Not on QV_PROCESSES: there on_data runs on the pool's dispatcher
 * (documented), where a slow one holds up the pool's other answers. */
TX_TEST_KINDS(stream, a_slow_on_data_holds_up_only_its_own_transfer, threads loop);
Test(stream, a_slow_on_data_holds_up_only_its_own_transfer)
{
    qv_session *s = TX_SESSION(.max_workers = 4);
    long long got = 0;
    qv_future *slow, *quick;
    cr_assert_eq(qv_request(s, &slow,
                            &(qv_request_opts){
                                .url = nginx("/big"), .on_data = slow_data, .on_data_arg = &got}),
                 QV_OK);
    /* Once its callback is busy, another request must still go through. */
    for (int i = 0; i < 2000 && !__atomic_load_n(&got, __ATOMIC_RELAXED); i++) usleep(1000);
    double t0 = now_ms();
    cr_assert_eq(qv_get(s, &quick, tu("/get")), QV_OK);
    tx_expect_status(quick, 200);
    double took = now_ms() - t0;
    cr_assert_lt(took, 1500, "a quick request took %.0f ms beside a slow on_data", took);
    cr_assert(!qv_future_done(slow), "the slow download finished already");
    qv_future_cancel(slow);
    tx_expect_error(slow, QV_ECANCELLED);
    qv_future_release(quick);
    qv_future_release(slow);
    qv_session_free(s);
}

Test(stream, a_file_that_cannot_grow_fails_with_qv_eio_naming_it_and_is_removed)
{
    /* A full disk, as the file size limit shows it (EFBIG instead of
     * ENOSPC): set before the session, so that a process pool's zygote and
     * workers inherit it. Criterion runs each test in its own process. */
    make_dir();
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {1 << 20, 1 << 20};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    qv_session *s = TX_SESSION(0);
    qv_future *f;
    cr_assert_eq(
        qv_request(s, &f, &(qv_request_opts){.url = nginx("/big"), .output_path = in_dir("big")}),
        QV_OK);
    const char *msg = tx_expect_error(f, QV_EIO);
    tx_assert_contains(msg, in_dir("big"));
    tx_assert_contains(msg, strerror(EFBIG));
    cr_assert_eq(files_in_dir(), 0, "the partial file is still there");
    qv_future_release(f);
    qv_session_free(s);
    remove_dir();
}

Test(stream, an_unread_stream_beside_a_download_to_the_same_host_stays_small)
{
    /* Over HTTP/2 a paused stream would go on being received while the
     * connection serves the other transfer: a loop streams over HTTP/1.1. */
    qv_session *s = TX_SESSION(.ca_file = tx_env("QV_NGINX_CA", "nginx's test CA"));
    qv_future *a, *b;
    cr_assert_eq(qv_request(s, &a, &(qv_request_opts){.url = nginx_h2("/big"), .stream = 1}),
                 QV_OK);
    qv_response *r = tx_expect_status(a, 200);
    int devnull = open("/dev/null", O_WRONLY);
    cr_assert_eq(
        qv_request(s, &b, &(qv_request_opts){.url = nginx_h2("/big"), .output_fd = devnull}),
        QV_OK);
    tx_expect_status(b, 200);
    long long seen = qv_response_body_bytes(r);
    cr_assert_leq(seen, unread_max(), "%lld bytes of the unread stream came in", seen);
    if (tx_kind() == QV_LOOP) cr_assert_eq(qv_response_http_version(r), 11);
    close(devnull);
    qv_future_release(b);
    qv_future_release(a);
    qv_session_free(s);
}
