/* Never reuse a kept-alive plain-HTTP connection that has unread bytes on it.
 *
 * A server that sends more than its Content-Length leaves bytes no request
 * asked for; libcurl 7.88 would reuse the connection and hand them to the
 * next request as its answer (response smuggling). libcurl does not say which
 * socket a transfer uses while it runs, but its PREREQFUNCTION names the
 * connection (local and remote address and port) just before the request is
 * sent: sockets are opened here and remembered by that name, so that at that
 * moment a reused connection can be peeked at. If bytes are already waiting,
 * the transfer is stopped (libcurl closes the connection) and started again
 * on a new one. Over TLS unread bytes can be legitimate (session tickets), and
 * HTTP/2 frames its streams, so only plain HTTP is checked.
 *
 * The name is stored when the connection is made, so a reused one costs one
 * system call (the peek): no getsockname/getpeername per request. A local
 * port alone is not a name: Linux gives one ephemeral port to connections to
 * different servers at once, and peeking at another connection would take
 * its pending error (a peek reports and clears ECONNRESET) or its response.
 * The table (one for the process) holds the live connections only, so its
 * memory follows how many are open, not how many ports were ever used. It
 * uses the C library's allocator, not qv_set_allocator's: it outlives any
 * one allocator, and without room a connection just goes unchecked. */
#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct conn {
    int fd; /* -1: free */
    int lport, rport;
    char lip[INET6_ADDRSTRLEN], rip[INET6_ADDRSTRLEN];
} conn;

/* Open addressing, linear probing, keyed by local port; at most half full. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static conn *tab;
static size_t cap, used;

static size_t home(int lport)
{
    return ((size_t)lport * 40503u) & (cap - 1);
}

static int same(const conn *c, int lport, const char *lip, const char *rip, int rport)
{
    return c->fd >= 0 && c->lport == lport && c->rport == rport && strcmp(c->rip, rip) == 0 &&
           strcmp(c->lip, lip) == 0;
}

static conn *find(int lport, const char *lip, const char *rip, int rport)
{
    for (size_t i = cap ? home(lport) : 0; cap && tab[i].fd >= 0; i = (i + 1) & (cap - 1))
        if (same(&tab[i], lport, lip, rip, rport)) return &tab[i];
    return NULL;
}

static void put(const conn *c)
{
    size_t i = home(c->lport);
    while (tab[i].fd >= 0) i = (i + 1) & (cap - 1);
    tab[i] = *c;
    used++;
}

static int grow(void)
{
    size_t ncap = cap ? cap * 2 : 64;
    conn *old = tab, *n = malloc(ncap * sizeof(*n));
    if (!n) return -1;
    for (size_t i = 0; i < ncap; i++) n[i].fd = -1;
    size_t ocap = cap;
    tab = n;
    cap = ncap;
    used = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].fd >= 0) put(&old[i]);
    free(old);
    return 0;
}

/* Removes slot i, moving later entries of its probe run back so that no
 * lookup stops early at the hole. */
static void erase(size_t i)
{
    tab[i].fd = -1;
    used--;
    for (size_t j = (i + 1) & (cap - 1); tab[j].fd >= 0; j = (j + 1) & (cap - 1)) {
        size_t h = home(tab[j].lport);
        /* j's entry may fill the hole at i unless its home lies in (i, j]. */
        if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
            tab[i] = tab[j];
            tab[j].fd = -1;
            i = j;
        }
    }
}

static void remember(int fd, int lport, const char *lip, const char *rip, int rport)
{
    size_t ll = strlen(lip) + 1, rl = strlen(rip) + 1;
    if (ll > INET6_ADDRSTRLEN || rl > INET6_ADDRSTRLEN) return;
    pthread_mutex_lock(&mu);
    conn *c = find(lport, lip, rip, rport);
    if (c) {
        c->fd = fd; /* the name is unique among live connections: a stale entry */
    } else if ((used + 1) * 2 <= cap || grow() == 0) {
        conn n = {.fd = fd, .lport = lport, .rport = rport};
        memcpy(n.lip, lip, ll);
        memcpy(n.rip, rip, rl);
        put(&n);
    }
    pthread_mutex_unlock(&mu);
}

static int local_port(curl_socket_t fd)
{
    struct sockaddr_storage ss = {0};
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len)) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static void forget(curl_socket_t fd)
{
    int lport = local_port(fd);
    pthread_mutex_lock(&mu);
    /* Its probe run, or everywhere if the socket no longer has an address. */
    size_t start = cap && lport >= 0 ? home(lport) : 0;
    for (size_t k = 0; k < cap; k++) {
        size_t i = (start + k) & (cap - 1);
        if (lport >= 0 && tab[i].fd < 0) break;
        if (tab[i].fd == fd) {
            erase(i);
            break;
        }
    }
    pthread_mutex_unlock(&mu);
}

static curl_socket_t open_cb(void *p, curlsocktype purpose, struct curl_sockaddr *addr)
{
    qv_slot *slot = p;
    (void)purpose;
    curl_socket_t fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    slot->opened_fd = fd; /* registered once connected, when its name is known */
    if (slot->connlook && fd != -1) qv_connlook_opened(slot->connlook, fd);
    return fd == -1 ? CURL_SOCKET_BAD : fd;
}

void (*qv_conn_closed_probe)(curl_socket_t fd);

static int close_cb(void *p, curl_socket_t fd)
{
    (void)p;
    forget(fd);
    int rc = close(fd);
    if (qv_conn_closed_probe) qv_conn_closed_probe(fd);
    return rc;
}

static int prereq_cb(void *p, char *rip, char *lip, int rport, int lport)
{
    qv_slot *slot = p;
    int http = strncmp(slot->f->req.url, "http:", 5) == 0;
    qv_transfer_request_going(slot);
    qv_lowat_conn(slot, CURL_SOCKET_BAD);
    if (lport < 0 || lport > 65535 || !rip || !lip) return CURL_PREREQFUNC_OK;
    if (slot->opened_fd != CURL_SOCKET_BAD) {
        /* A new connection, opened by this transfer (the last socket it
         * opened: with several attempts, another may have won; then the
         * connection goes unchecked rather than mistaken). */
        if (local_port(slot->opened_fd) == lport) {
            remember(slot->opened_fd, lport, lip, rip, rport);
            if (http) {
                qv_lowat_conn(slot, slot->opened_fd);
                slot->conn_fd = slot->opened_fd;
            }
        }
        slot->opened_fd = CURL_SOCKET_BAD;
        return CURL_PREREQFUNC_OK;
    }
    if (!http) return CURL_PREREQFUNC_OK;
    pthread_mutex_lock(&mu);
    conn *c = find(lport, lip, rip, rport);
    int fd = c ? c->fd : -1;
    pthread_mutex_unlock(&mu);
    /* fd stays this transfer's connection while it runs: nobody closes it.
     * A loop peeks only where its round's look cannot vouch (connlook.c). */
    slot->conn_fd = fd;
    char byte;
    if (fd >= 0 && !(slot->connlook && qv_connlook_clean(slot->connlook, fd)) &&
        recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
        slot->abort = QV_ABORT_DIRTY;
        return CURL_PREREQFUNC_ABORT;
    }
    qv_lowat_conn(slot, fd);
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
