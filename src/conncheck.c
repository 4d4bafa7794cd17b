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

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Local port -> socket, for the whole process (ports are unique per host
 * for loopback and ephemeral use; a stale or foreign entry is detected by
 * checking the socket's own address before use). */
static atomic_int by_port[65536];
static pthread_once_t by_port_once = PTHREAD_ONCE_INIT;

static void by_port_init(void)
{
    for (size_t i = 0; i < 65536; i++) atomic_init(&by_port[i], -1);
}

static int local_port(curl_socket_t fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len)) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
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
    if (port >= 0) {
        int expected = fd;
        atomic_compare_exchange_strong(&by_port[port], &expected, -1);
    }
    return close(fd);
}

static int prereq_cb(void *p, char *primary_ip, char *local_ip, int primary_port, int port)
{
    qv_slot *slot = p;
    (void)primary_ip, (void)local_ip, (void)primary_port;
    if (port < 0 || port > 65535) return CURL_PREREQFUNC_OK;
    if (slot->opened_fd != CURL_SOCKET_BAD) {
        /* A new connection, opened by this transfer: remember it. */
        if (local_port(slot->opened_fd) == port) atomic_store(&by_port[port], slot->opened_fd);
        slot->opened_fd = CURL_SOCKET_BAD;
        return CURL_PREREQFUNC_OK;
    }
    if (strncmp(slot->f->req.url, "http:", 5) != 0) return CURL_PREREQFUNC_OK;
    /* Entries are cleared when their socket closes, so this is that port's. */
    int fd = atomic_load(&by_port[port]);
    char byte;
    if (fd < 0) return CURL_PREREQFUNC_OK;
    if (recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
        slot->abort = QV_ABORT_DIRTY;
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

CURLcode qv_conncheck_setup(qv_slot *slot)
{
    pthread_once(&by_port_once, by_port_init);
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
