/* Never reuse a kept-alive plain-HTTP connection that has unread bytes on it.
 *
 * A server that sends more than its Content-Length leaves bytes no request
 * asked for; libcurl 7.88 would reuse the connection and hand them to the
 * next request as its answer (response smuggling). libcurl does not say which
 * socket a transfer uses while it runs, but its PREREQFUNCTION names the
 * connection's local port just before the request is sent: sockets are
 * opened here and remembered by local port, so that at that moment a reused
 * connection can be peeked at. If bytes are already waiting, the transfer is
 * stopped (libcurl closes the connection) and started again on a new one.
 * Over TLS unread bytes can be legitimate (session tickets), and HTTP/2
 * frames its streams, so only plain HTTP is checked. */
#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Local port -> sockets, for the whole process. A local port is not unique
 * to one connection: Linux gives the same ephemeral port to connections to
 * different servers at once. So a port has a few entries, and only the socket
 * that is this transfer's connection (local port and peer checked) is peeked
 * at: peeking at another one would take its pending error (a peek reports and
 * clears ECONNRESET, and that transfer then sees a clean EOF), or take its
 * unread response for stale bytes. Entries hold fd + 1, so that the zeroed
 * table is empty without being written.
 *
 * The ports hash into BUCKETS buckets (128 KiB in all) rather than one row
 * each: a row per port (1 MiB) had its pages touched as the kernel handed out
 * new ports, 450 kB over a long run, a process's RSS growing for hours. Now
 * all of it is touched within a few thousand connections. A bucket mixes
 * ports, which costs nothing: every entry is checked against the socket. */
#define WAYS    4
#define BUCKETS 8192
static atomic_int table[BUCKETS][WAYS];

/* Linux hands out ports in steps of two: a multiplicative hash spreads them. */
static atomic_int *bucket(int port)
{
    return table[((uint32_t)port * 2654435761u) >> 19];
}

static int port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return -1;
}

static int local_port(curl_socket_t fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len)) return -1;
    return port_of(&ss);
}

/* Is fd the connection from local `port` to ip:peer_port? */
static int is_connection(curl_socket_t fd, int port, const char *ip, int peer_port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char buf[INET6_ADDRSTRLEN];
    if (local_port(fd) != port || getpeername(fd, (struct sockaddr *)&ss, &len) ||
        port_of(&ss) != peer_port)
        return 0;
    const void *a = ss.ss_family == AF_INET
                        ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                        : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
    return inet_ntop(ss.ss_family, a, buf, sizeof(buf)) && strcmp(buf, ip) == 0;
}

/* Takes a free entry of the port's bucket, or one whose socket's port no
 * longer hashes there; with all taken, the newest connection wins (an older
 * one then goes unchecked, never mistaken for another). */
static void remember(int port, curl_socket_t fd)
{
    atomic_int *b = bucket(port);
    for (int w = 0; w < WAYS; w++) {
        int e = atomic_load(&b[w]);
        int p = e ? local_port(e - 1) : -1;
        if ((p < 0 || bucket(p) != b) && atomic_compare_exchange_strong(&b[w], &e, fd + 1)) return;
    }
    atomic_store(&b[0], fd + 1);
}

static curl_socket_t open_cb(void *p, curlsocktype purpose, struct curl_sockaddr *addr)
{
    qv_slot *slot = p;
    (void)purpose;
    curl_socket_t fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    slot->opened_fd = fd; /* registered once connected, when its port is known */
    return fd == -1 ? CURL_SOCKET_BAD : fd;
}

static int close_cb(void *p, curl_socket_t fd)
{
    (void)p;
    int port = local_port(fd);
    for (int w = 0; port >= 0 && w < WAYS; w++) {
        int expected = fd + 1;
        atomic_compare_exchange_strong(&bucket(port)[w], &expected, 0);
    }
    return close(fd);
}

static int prereq_cb(void *p, char *primary_ip, char *local_ip, int primary_port, int port)
{
    qv_slot *slot = p;
    (void)local_ip;
    if (port < 0 || port > 65535) return CURL_PREREQFUNC_OK;
    if (slot->opened_fd != CURL_SOCKET_BAD) {
        /* A new connection, opened by this transfer: remember it. */
        if (local_port(slot->opened_fd) == port) remember(port, slot->opened_fd);
        slot->opened_fd = CURL_SOCKET_BAD;
        return CURL_PREREQFUNC_OK;
    }
    if (strncmp(slot->f->req.url, "http:", 5) != 0) return CURL_PREREQFUNC_OK;
    for (int w = 0; w < WAYS; w++) {
        int fd = atomic_load(&bucket(port)[w]) - 1;
        if (fd < 0 || !is_connection(fd, port, primary_ip, primary_port)) continue;
        char byte;
        if (recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
            slot->abort = QV_ABORT_DIRTY;
            return CURL_PREREQFUNC_ABORT;
        }
        break;
    }
    return CURL_PREREQFUNC_OK;
}

CURLcode qv_conncheck_setup(qv_slot *slot)
{
    CURL *e = slot->easy;
    CURLcode cc = curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_cb);
    if (!cc) cc = curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, slot);
    if (!cc) cc = curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
    if (!cc) cc = curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, NULL);
    if (!cc) cc = curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, prereq_cb);
    if (!cc) cc = curl_easy_setopt(e, CURLOPT_PREREQDATA, slot);
    return cc;
}

int qv_conncheck_retry(qv_slot *slot, CURLM *multi)
{
    if (slot->abort != QV_ABORT_DIRTY) return 0;
    slot->abort = QV_ABORT_NONE;
    slot->configured = NULL; /* FRESH_CONNECT must not stay for the next request */
    curl_multi_remove_handle(multi, slot->easy);
    return curl_easy_setopt(slot->easy, CURLOPT_FRESH_CONNECT, 1L) == CURLE_OK &&
           curl_multi_add_handle(multi, slot->easy) == CURLM_OK;
}
