/* A fast streamed body is received in batches: SO_RCVLOWAT on its
 * connection, so that the thread driving the transfer sleeps in its poll
 * until a batch has come, not until the next piece the server sent.
 *
 * A receiver that keeps up with a fast server (quiver's cheaper forms:
 * on_data, output_fd to /dev/null) empties the socket at each pass and
 * sleeps again; then the server wakes it for about every 100 KiB it sends,
 * and on a VM those wake-ups slow the server itself. nginx on loopback, 1 GiB
 * on QV_THREADS, 10 rounds beside curl (all under chrt -f 1): ~10,100 sleeps
 * a GiB and 0.86x curl's throughput (curl, busier, ~3,300 sleeps); with the
 * mark ~6,900 and 0.96x (bench/NOTES.md, 2026-12-07 10:47).
 *
 * Only where the mark can never hold back the body's end: plain HTTP/1.x
 * (TLS and HTTP/2 put bytes on the wire that are not the body), with a
 * Content-Length and no Content-Encoding, and never above the bytes still to
 * come; at the body's end the mark is 1 again, before libcurl puts the
 * connection back in its cache. Only while the server is ahead (a pass that
 * received a whole receive buffer's worth); and only for transfers driven by
 * qv_transfer_drive (a QV_THREADS worker, the thread lent its handle, a
 * QV_PROCESSES worker), whose every poll asks qv_transfer_poll_ms first:
 * while a mark is set that poll sleeps QV_LOWAT_LOOK_MS at most, and a pass
 * that received nothing sets the mark back to 1 (which wakes the poll at
 * once if bytes wait), so a server that slows down or stalls mid-body has
 * its bytes taken within a few milliseconds, and read timeouts count as
 * before. */
#include "internal.h"

#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

/* The mark (256 KiB won back only part of the time lost), and how long a
 * poll may sleep while it is up. */
#define QV_LOWAT_MAX     (1 << 20)
#define QV_LOWAT_LOOK_MS 2

static void mark(qv_slot *slot, int bytes)
{
    qv_lowat *w = &slot->lowat;
    struct stat st;
    if (bytes == w->set || (bytes <= 1 && w->set <= 1)) return;
    /* Failing (the socket went away), the transfer is read as before. The
     * socket is known by its inode before its mark first goes up (unmark). */
    if (!w->ino && fstat(w->fd, &st) == 0) {
        w->dev = st.st_dev;
        w->ino = st.st_ino;
    }
    if (w->ino && setsockopt(w->fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof(bytes)) == 0) {
        w->set = bytes;
    } else {
        w->fd = CURL_SOCKET_BAD;
        w->set = 0;
    }
}

/* The mark back to 1, on a connection that may be gone: libcurl closes a
 * failed transfer's connection before the transfer's end is seen here, and
 * by then its number may name another thread's new socket, whose own mark is
 * not ours to set. */
static void unmark(qv_slot *slot)
{
    qv_lowat *w = &slot->lowat;
    struct stat st;
    if (w->set > 1 && (fstat(w->fd, &st) || st.st_dev != w->dev || st.st_ino != w->ino)) w->set = 0;
    mark(slot, 1);
}

void qv_lowat_conn(qv_slot *slot, curl_socket_t fd)
{
    qv_lowat_hop(slot);
    slot->lowat.fd = fd;
    slot->lowat.set = 0;
    slot->lowat.ino = 0;
}

void qv_lowat_hop(qv_slot *slot)
{
    if (slot->lowat.fd != CURL_SOCKET_BAD) unmark(slot);
    slot->lowat.state = 0;
}

/* The hop's body may be received in batches: how many bytes it has. */
static long long batchable(qv_slot *slot)
{
    const char *scheme = NULL;
    curl_off_t len = -1;
    if (!slot->lowat.driven || slot->lowat.fd == CURL_SOCKET_BAD ||
        (slot->hop_version != 10 && slot->hop_version != 11) ||
        qv_headers_get(&slot->resp->headers, "Content-Encoding", 0) ||
        curl_easy_getinfo(slot->easy, CURLINFO_SCHEME, &scheme) || !scheme ||
        strcasecmp(scheme, "http") != 0 ||
        curl_easy_getinfo(slot->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len))
        return -1;
    return len;
}

/* The mark for a server that is ahead: QV_LOWAT_MAX, or a quarter of the
 * receive buffer if that is less. A mark that does not fit the buffer twice
 * over makes the kernel grow the buffer to it and clamp the TCP window to
 * the mark: for a connection whose window autotuning had not grown yet,
 * a smaller window than it would get. */
static long long room(const qv_lowat *w)
{
    int buf = 0;
    socklen_t len = sizeof(buf);
    if (getsockopt(w->fd, SOL_SOCKET, SO_RCVBUF, &buf, &len)) return 1;
    return buf / 4 < QV_LOWAT_MAX ? buf / 4 : QV_LOWAT_MAX;
}

void qv_lowat_body(qv_slot *slot, size_t len)
{
    qv_lowat *w = &slot->lowat;
    if (!w->state) {
        w->left = batchable(slot);
        w->state = w->left > 0 ? 1 : -1;
    }
    if (w->state < 0) return;
    w->left -= (long long)len;
    /* Looked at once a pass, as it passes a receive buffer's worth (the
     * buffer only grows: not again once the mark is at its most). */
    long long want = w->set;
    if (w->round < (size_t)QV_RECV_BUFFER && w->round + len >= (size_t)QV_RECV_BUFFER &&
        w->set < QV_LOWAT_MAX)
        want = room(w);
    w->round += len;
    mark(slot, want > w->left ? 1 : (int)want); /* (the body's last bytes as they come) */
}

long qv_lowat_poll_ms(qv_slot *slot, long cap_ms)
{
    qv_lowat *w = &slot->lowat;
    if (w->set > 1) {
        if (!w->round)
            mark(slot, 1);
        else if (cap_ms > QV_LOWAT_LOOK_MS)
            cap_ms = QV_LOWAT_LOOK_MS;
    }
    w->round = 0;
    return cap_ms;
}

void qv_lowat_end(qv_slot *slot)
{
    if (slot->lowat.fd != CURL_SOCKET_BAD) unmark(slot);
    slot->lowat.fd = CURL_SOCKET_BAD;
    slot->lowat.driven = 0;
}
