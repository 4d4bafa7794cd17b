/* A fast streamed body is received in batches (src/rcvlowat.c): its
 * connection's SO_RCVLOWAT is raised while the server is ahead, set back to
 * 1 before the connection is reused, and bytes held under the mark when the
 * server stalls still reach the callback before the read timeout ends the
 * transfer. On QV_THREADS, where the transfer's socket is in this process
 * (a QV_PROCESSES worker batches too, in its own process; QV_LOOP does not
 * batch). */
#include "support.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

TX_KIND_ONLY(threads);

TestSuite(rcvlowat, .timeout = 120);

/* The largest SO_RCVLOWAT among this process's sockets. */
static int max_lowat(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    int most = 0;
    for (struct dirent *e; (e = readdir(d));) {
        int fd = atoi(e->d_name), v = 0;
        socklen_t len = sizeof(v);
        struct stat st;
        if (fd > 2 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
            getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, &len) == 0 && v > most)
            most = v;
    }
    closedir(d);
    return most;
}

typedef struct {
    long long got;
    int most; /* the largest mark seen while the body came */
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
        int m = max_lowat();
        if (m > s->most) s->most = m;
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
