/* QV_LOOP's idle connections looked at once a round, instead of peeked at
 * once a reuse (conncheck.c's defence against unread bytes).
 *
 * The peek is a system call for every request on a reused plain-HTTP
 * connection: ~5% of QV_LOOP's CPU at c = 8 (bench/NOTES.md, 2026-12-07
 * 22:17). But a loop reuses its connections in bursts: the transfers that
 * finished in one round free their connections, and the next round's
 * curl_multi_perform sends the next requests on them, 7-8 to a round at
 * c = 8 (bench/NOTES.md, 2026-12-08 01:25). So a connection that has been
 * reused once is added to the loop's epoll (level-triggered: it reports
 * every connection with bytes unread, or an end or error, for as long as
 * they are there), and the first reuse of a round that starts several
 * transfers asks it once for all: one epoll_wait answers for the round's
 * reuses whose connections the executor saw end their last response
 * (qv_connlook_done, after the curl_multi_perform that ended it) before this
 * round began. A connection it names is peeked at as before (epoll also
 * names an ended or failed one, which the peek lets pass), as is any
 * connection it cannot vouch for: new to the epoll, ended in this round (the
 * look may have come before its end), or a look that could not name every
 * ready connection.
 *
 * What this gives up against a peek per reuse: bytes that arrive between
 * the round's look and the request (within one curl_multi_perform, after
 * the executor saw the last response end). Bytes sent with the response,
 * or that came before the executor saw it end, are caught as before; bytes
 * a server holds back longer can pass either check (reliability.md).
 *
 * Everything here is the leader's (one thread at a time, taking the lead
 * orders it); a socket number's record is made new when the loop opens a
 * socket with it, as a closed socket leaves the epoll by itself. */
#include "internal.h"

#include <sys/epoll.h>
#include <unistd.h>

struct qv_connlook_fd {
    unsigned long done;  /* the round after whose perform its last response was seen to
                          * end (0: a request is out on it, or unknown) */
    unsigned long ready; /* the round whose look named it */
    int watched;         /* in the epoll */
};

int qv_connlook_init(qv_connlook *c)
{
    *c = (qv_connlook){.ep = epoll_create1(EPOLL_CLOEXEC)};
    return c->ep < 0 ? -1 : 0;
}

void qv_connlook_free(qv_connlook *c)
{
    if (c->ep >= 0) close(c->ep);
    qv_free(c->fds);
    qv_free(c->ev);
}

/* fd's record, made if missing (NULL: no room, the connection is peeked at). */
static qv_connlook_fd *rec(qv_connlook *c, int fd)
{
    if (fd < 0) return NULL;
    if (fd >= c->nfds) {
        int n = c->nfds ? c->nfds : 64;
        while (n <= fd) n *= 2;
        qv_connlook_fd *m = qv_realloc(c->fds, (size_t)n * sizeof(*m));
        if (!m) return NULL;
        for (int i = c->nfds; i < n; i++) m[i] = (qv_connlook_fd){0};
        c->fds = m;
        c->nfds = n;
    }
    return &c->fds[fd];
}

void qv_connlook_opened(qv_connlook *c, int fd)
{
    if (fd >= 0 && fd < c->nfds) c->fds[fd] = (qv_connlook_fd){0};
}

void qv_connlook_done(qv_connlook *c, int fd)
{
    if (fd >= 0 && fd < c->nfds) c->fds[fd].done = c->round;
}

/* Room for n connections in the look's answer (0: none). */
static int room(qv_connlook *c, int n)
{
    if (c->nev >= n) return 1;
    struct epoll_event *ev = qv_realloc(c->ev, (size_t)n * sizeof(*ev));
    if (!ev) return 0;
    c->ev = ev;
    c->nev = n;
    return 1;
}

/* The round's look: which watched connections have bytes (or an end). An
 * answer that fills its room may have left some out: this round peeks,
 * and the next look has twice the room. */
static void look(qv_connlook *c)
{
    c->looked = c->round;
    int n = room(c, 64) ? epoll_wait(c->ep, c->ev, c->nev, 0) : -1;
    for (int i = 0; i < n; i++)
        if (c->ev[i].data.fd < c->nfds) c->fds[c->ev[i].data.fd].ready = c->round;
    c->blind = n < 0 || n == c->nev;
    if (n == c->nev) room(c, 2 * c->nev);
}

int qv_connlook_clean(qv_connlook *c, int fd)
{
    qv_connlook_fd *r = rec(c, fd);
    if (!r) return 0;
    int vouch = r->watched && r->done && r->done < c->round;
    r->done = 0;
    if (!r->watched) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        r->watched = epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev) == 0;
        return 0;
    }
    /* A round that starts one transfer seldom reuses more than one
     * connection: the look would cost what the peek does, and more (c = 1:
     * bench/NOTES.md, 2026-12-08 01:25). */
    if (!vouch || !c->several) return 0;
    if (c->looked != c->round) look(c);
    return !c->blind && r->ready != c->round;
}
