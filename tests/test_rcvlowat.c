/* A fast streamed body is received in batches (src/rcvlowat.c): its
 * connection's SO_RCVLOWAT is raised while the server is ahead, set back to
 * 1 before the connection is reused, and bytes held under the mark when the
 * server stalls still reach the callback before the read timeout ends the
 * transfer. On QV_THREADS, where the transfer's socket is in this process
 * (a QV_PROCESSES worker batches too, in its own process; QV_LOOP does not
 * batch). */
#include "support.h"

#include "../src/internal.h" /* qv_conn_closed_probe */

#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

TX_KIND_ONLY(threads);

TestSuite(rcvlowat, .timeout = 120);

/* The largest SO_RCVLOWAT among this process's sockets (and, given
 * `which`, the socket that has it). */
static int max_lowat_at(int *which)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    int most = 0;
    for (struct dirent *e; (e = readdir(d));) {
        int fd = atoi(e->d_name), v = 0;
        socklen_t len = sizeof(v);
        struct stat st;
        if (fd > 2 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
            getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, &len) == 0 && v > most) {
            most = v;
            if (which) *which = fd;
        }
    }
    closedir(d);
    return most;
}

static int max_lowat(void)
{
    return max_lowat_at(NULL);
}

typedef struct {
    long long got;
    int most; /* the largest mark seen while the body came */
    int fd;   /* the socket that had it */
} seen;

/* Sleeps once at the start, so that the server gets ahead of the
 * receiver (a whole receive buffer waits: batching starts), then looks at
 * the mark once per MiB. */
static int look(qv_future *f, const void *chunk, size_t len, void *arg)
{
    (void)f, (void)chunk;
    seen *s = arg;
    if (s->got == 0) usleep(50 * 1000);
    if (s->got >> 20 != (s->got + (long long)len) >> 20) {
        int fd = -1, m = max_lowat_at(&fd);
        if (m > s->most) {
            s->most = m;
            s->fd = fd;
        }
    }
    s->got += (long long)len;
    return 0;
}

static const char *nginx(const char *path)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s%s", tx_env("QV_NGINX_URL", "nginx"), path);
    return buf;
}

Test(rcvlowat, a_fast_body_is_received_in_batches_and_its_connection_goes_back_unbatched)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    qv_future *f;
    qv_response *r;
    seen got = {0};
    cr_assert_eq(
        qv_request(s, &f,
                   &(qv_request_opts){.url = nginx("/big"), .on_data = look, .on_data_arg = &got}),
        QV_OK);
    r = tx_expect_status(f, 200);
    cr_assert_eq(qv_response_body_bytes(r), 64LL << 20);
    cr_assert_eq(got.got, 64LL << 20);
    cr_assert_gt(got.most, 1, "the mark was never raised (largest %d)", got.most);
    qv_future_release(f);
    /* The kept-alive connection, mark 1 again: a small answer on it comes
     * at once (a mark left over would hold it until the read timeout). */
    cr_assert_eq(max_lowat(), 1);
    cr_assert_eq(
        qv_request(s, &f, &(qv_request_opts){.url = nginx("/small"), .read_timeout_ms = 5000}),
        QV_OK);
    r = tx_expect_status(f, 200);
    cr_assert_eq(qv_response_body_bytes(r), 100);
    qv_future_release(f);
    qv_session_free(s);
}

Test(rcvlowat, bytes_under_the_mark_when_the_server_stalls_reach_the_callback_before_the_timeout)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    qv_future *f;
    seen got = {0};
    /* 2 MiB sent, then a stall: whatever part of it waits under the 1 MiB
     * mark must still come out. */
    cr_assert_eq(qv_request(s, &f,
                            &(qv_request_opts){
                                .url = tx_faults_url("/stall-body?length=4194304&sent=2097152"),
                                .read_timeout_ms = 1000,
                                .on_data = look,
                                .on_data_arg = &got}),
                 QV_OK);
    tx_expect_error(f, QV_EREAD_TIMEOUT);
    cr_assert_gt(got.most, 1, "the mark was never raised (largest %d)", got.most);
    cr_assert_eq(got.got, 2097152);
    qv_future_release(f);
    qv_session_free(s);
}

/* SO_RCVLOWAT as the test's own socket has it. */
#define TEST_MARK 7

/* The marked connection's number, and whether a socket of the test's took
 * it once libcurl closed that connection. */
static atomic_int marked_fd = -1, taken;

/* As another thread might, the test opens a socket as soon as the number is
 * free (the probe comes on the transfer's thread, just after the close). */
static void take_number(curl_socket_t fd)
{
    if (fd != atomic_load(&marked_fd) || atomic_load(&taken)) return;
    int s = socket(AF_INET, SOCK_STREAM, 0), v = TEST_MARK;
    if (s < 0 || setsockopt(s, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v))) return;
    /* (The lowest free number: most likely fd itself.) */
    if (s != fd && dup2(s, fd) != fd) return;
    if (s != fd) close(s);
    atomic_store(&taken, 1);
}

/* look, and the marked connection's number for the probe. */
static int look_marked(qv_future *f, const void *chunk, size_t len, void *arg)
{
    const seen *s = arg;
    look(f, chunk, len, arg);
    if (s->most > 1) atomic_store(&marked_fd, s->fd);
    return 0;
}

/* A transfer that fails with the mark up (the server closes mid-body):
 * libcurl closes its connection before the transfer's end puts the mark back
 * to 1, and by then the number may name another socket, whose own mark must
 * stay as it is. */
Test(rcvlowat, a_failed_transfer_leaves_the_socket_that_reuses_its_number_alone)
{
    qv_session *s = TX_SESSION(.max_workers = 1);
    qv_future *f;
    seen got = {.fd = -1};
    qv_conn_closed_probe = take_number;
    cr_assert_eq(
        qv_request(s, &f,
                   &(qv_request_opts){.url = tx_faults_url("/short?length=8388608&sent=4194304"),
                                      .on_data = look_marked,
                                      .on_data_arg = &got}),
        QV_OK);
    tx_expect_error(f, QV_EPROTOCOL);
    qv_future_release(f);
    qv_conn_closed_probe = NULL;
    cr_assert_gt(got.most, 1, "the mark was never raised (largest %d)", got.most);
    cr_assert(atomic_load(&taken), "no socket took the closed connection's number");
    int v = 0;
    socklen_t len = sizeof(v);
    cr_assert_eq(getsockopt(got.fd, SOL_SOCKET, SO_RCVLOWAT, &v, &len), 0);
    cr_assert_eq(v, TEST_MARK, "the failed transfer set the mark of a socket not its own");
    close(got.fd);
    qv_session_free(s);
}
