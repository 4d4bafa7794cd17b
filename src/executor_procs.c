/* The process executor, parent side. At creation it forks a zygote (see
 * procs_worker.c), which forks workers on demand; one dispatcher thread here
 * hands queued futures to idle workers, reads their answers, and fails only
 * the future of a worker that died (QV_EWORKER), asking for a replacement.
 * What a worker sends is untrusted: a malformed frame fails its future. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct pworker {
    pid_t pid;
    int fd; /* -1 once its end of the socket closed (death is then on its way) */
    qv_frame_reader in;
    qv_future *f;
    /* The worker's jar, as the parent last saw it, and the session jar's
     * version that this is (0: no session's current one). */
    struct curl_slist *jar;
    uint64_t jar_version;
    int cancel_sent;
    double hook_deadline; /* 0 unless hooks are running and a hook timeout is set */
    int timed_out;
    long served; /* requests it has answered */
} pworker;

typedef struct procs {
    qv_executor base;
    pid_t zygote;
    int zfd;
    int wake[2];
    atomic_int sleeping; /* the dispatcher may be in epoll_wait: a submit must wake it */
    pthread_t thread;
    int started;
    pworker *w;
    /* Watches the wake pipe, the zygote and every worker: a wait costs what
     * is ready, not a visit to each of max_workers sockets (as poll does). */
    int ep;
    int nw, spawning;
    const char *broken; /* why nothing can run any more (NULL: all is well) */
    char why[128];
    long queue_wait; /* ms until a queued retry or a host's token is due (-1: none) */
    qv_buf out;
} procs;

/* Forking while a dispatcher thread is in the middle of its work (inside
 * malloc, libcurl, a lock) could hand the zygote that state half-done:
 * dispatchers work under the read side, a new pool forks under the write
 * side (writers first, so a busy program still gets to fork). */
static pthread_rwlock_t fork_lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
static _Thread_local int in_dispatcher;

/* A dispatcher thread also allocates outside the read side: while it
 * starts, before dispatch_main runs (ASan calls pthread_getattr_np), and
 * while it ends, after. glibc's malloc locks itself around fork; clang 14's
 * ASan does not, so a fork then could hand the zygote an allocator lock held
 * by that thread, and its workers would block on it for good. A fork waits
 * until no dispatcher is starting or ending; both begin under the read side. */
static pthread_mutex_t transit_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t transit_cv = PTHREAD_COND_INITIALIZER;
static int in_transit;

static void transit_add(int d)
{
    pthread_mutex_lock(&transit_mu);
    in_transit += d;
    if (in_transit == 0) pthread_cond_broadcast(&transit_cv);
    pthread_mutex_unlock(&transit_mu);
}

typedef struct zmsg {
    int32_t type;
    int32_t pid;
    int32_t status;
} zmsg;

static void wake(procs *P)
{
    char c = 1;
    while (write(P->wake[1], &c, 1) < 0 && errno == EINTR) {
    }
}

/* Takes f (popped) to worker w: begin, export the jar unless the worker has
 * it already (versions are unique across sessions), send the request. */
static void assign(procs *P, pworker *w, qv_future *f)
{
    if (!qv_future_begin(f, NULL)) {
        qv_future_complete(f, QV_CANCELLED, QV_ECANCELLED, NULL, NULL);
        qv_future_release(f);
        return;
    }
    struct curl_slist *jar = NULL;
    uint64_t version = w->jar_version;
    int rc = qv_session_jar_export(f->session, f->req.host, &version, &jar);
    int kept = version == w->jar_version;
    if (!rc) rc = qv_wire_encode_request(&P->out, f, jar, kept);
    if (!rc && qv_fd_write_all(w->fd, P->out.data, P->out.len)) rc = QV_EWORKER;
    if (rc) {
        curl_slist_free_all(jar);
        qv_future_fail(f, rc, "could not hand the request to worker %d", (int)w->pid);
        qv_future_release(f);
        if (rc == QV_EWORKER) kill(w->pid, SIGKILL);
        return;
    }
    if (!kept) {
        curl_slist_free_all(w->jar);
        w->jar = jar;
        w->jar_version = version;
    }
    w->f = f;
    w->cancel_sent = 0;
    w->hook_deadline = 0;
}

/* The future's last word from its worker, then the worker is idle again. */
static void settle(pworker *w, int st, int err, char *msg, qv_response *r)
{
    qv_future *f = w->f;
    w->f = NULL;
    w->hook_deadline = 0;
    w->served++;
    qv_future_complete(f, st, err, msg, r);
    qv_future_release(f); /* the queue's reference */
}

static void on_response(procs *P, pworker *w, const unsigned char *p, size_t len)
{
    qv_response *r = NULL;
    int err = QV_OK;
    char *msg = NULL;
    struct curl_slist *jar = NULL;
    long conns = 0;
    double retry_ms = -1;
    int jar_kept;
    int rc = qv_wire_decode_response(p, len, &r, &err, &msg, &jar, &jar_kept, &conns, &retry_ms);
    qv_future *f = w->f;
    if (rc) {
        /* A worker that talks nonsense is not trusted with more work. */
        kill(w->pid, SIGKILL);
        settle(w, QV_FAILED, QV_EPROTOCOL,
               qv_future_message(f, QV_EPROTOCOL, "malformed answer from worker %d", (int)w->pid),
               NULL);
        return;
    }
    atomic_fetch_add(&P->base.connections, (size_t)conns);
    if (jar_kept == QV_JAR_UNKNOWN) {
        /* It could not load the jar it was sent: the whole jar goes with
         * its next request, and nothing of its jar comes into the session. */
        curl_slist_free_all(w->jar);
        w->jar = NULL;
        w->jar_version = 0;
    } else if (!jar_kept) {
        /* The worker's jar is `jar` now; still the session's if no other
         * change came in between (then the version after the merge). */
        qv_session_jar_merge(f->session, w->jar, jar, &w->jar_version);
        curl_slist_free_all(w->jar);
        w->jar = jar;
    }
    if (retry_ms >= 0 && f->attempts <= f->req.retry.max_retries) {
        /* The worker skipped the hooks: this attempt is to be retried. The
         * wait is the worker's word, so it is held to the policy's cap. */
        double cap = (double)f->req.retry.max_backoff_ms;
        f->out_resp = r;
        f->out_err = err;
        f->out_msg = msg;
        w->f = NULL;
        w->hook_deadline = 0;
        if (qv_retry_requeue(f, retry_ms < cap ? retry_ms : cap)) {
            qv_future_release(f); /* this attempt's queue reference */
            return;
        }
        /* No retry after all (cancelled, no memory): this is the outcome. */
        w->f = f;
        r = f->out_resp;
        err = f->out_err;
        msg = f->out_msg;
        f->out_resp = NULL;
        f->out_msg = NULL;
    }
    if (err == QV_ECANCELLED)
        settle(w, QV_CANCELLED, err, msg, NULL);
    else if (err)
        settle(w, QV_FAILED, err, msg, NULL);
    else {
        r->timing.queued_ms = f->started_ms - f->submitted_ms; /* the wait was here */
        r->attempts = f->attempts;
        settle(w, QV_FINISHED, QV_OK, NULL, r);
    }
}

static int watch(procs *P, int fd)
{
    return epoll_ctl(P->ep, EPOLL_CTL_ADD, fd,
                     &(struct epoll_event){.events = EPOLLIN, .data.fd = fd});
}

/* Unwatched before it is closed: a copy of the descriptor in another
 * process (a later pool's zygote, until it closes what it inherited) would
 * keep the watch of a closed descriptor alive. */
static void close_socket(procs *P, pworker *w)
{
    if (w->fd < 0) return;
    epoll_ctl(P->ep, EPOLL_CTL_DEL, w->fd, NULL);
    close(w->fd);
    w->fd = -1;
}

static void on_worker_readable(procs *P, pworker *w)
{
    /* The hooks frame and the response may come in one read. */
    do {
        int type;
        const unsigned char *p;
        size_t len;
        if (qv_frame_read(&w->in, w->fd, &type, &p, &len)) {
            /* Gone (or garbage): its death notice from the zygote settles it. */
            close_socket(P, w);
            kill(w->pid, SIGKILL);
            return;
        }
        if (!w->f) continue;
        if (type == QV_WIRE_HOOKS && P->base.o.hook_timeout_ms > 0)
            w->hook_deadline = qv_now_ms() + (double)P->base.o.hook_timeout_ms;
        else if (type == QV_WIRE_RESPONSE)
            on_response(P, w, p, len);
    } while (qv_frame_buffered(&w->in));
}

static void describe_death(char *buf, size_t n, int status, int timed_out)
{
    if (WIFSIGNALED(status))
        snprintf(buf, n, "killed by signal %d (%s)%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)),
                 timed_out ? ", its hook ran past the hook timeout" : "");
    else
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
}

/* Fails what waits with `why`: everything, also what comes while this
 * runs, for a pool that can run nothing any more; or, for a failure a
 * later submit may not meet (no worker could be started just now), only
 * what was waiting when it was called. */
static void fail_queued(procs *P, const char *why, int all)
{
    qv_executor *ex = &P->base;
    pthread_mutex_lock(&ex->mu);
    size_t left = all ? SIZE_MAX : ex->queued + ex->nretries;
    pthread_mutex_unlock(&ex->mu);
    for (; left > 0; left--) {
        pthread_mutex_lock(&ex->mu);
        qv_future *f = qv_executor_drain_locked(ex);
        pthread_mutex_unlock(&ex->mu);
        if (!f) return;
        qv_future_fail(f, QV_EWORKER, "%s", why);
        qv_future_release(f);
    }
}

static void remove_worker(procs *P, int i)
{
    close_socket(P, &P->w[i]);
    curl_slist_free_all(P->w[i].jar);
    qv_buf_free(&P->w[i].in.buf);
    P->w[i] = P->w[--P->nw];
    atomic_store(&P->base.workers, P->nw);
}

/* Nothing can run in this pool any more: every future it holds or gets
 * fails with `why` (copied); workers are let go. */
static void break_pool(procs *P, const char *why)
{
    snprintf(P->why, sizeof(P->why), "%s", why);
    P->broken = P->why;
    epoll_ctl(P->ep, EPOLL_CTL_DEL, P->zfd, NULL); /* gone, or not to be heard */
    for (int i = P->nw - 1; i >= 0; i--) {
        if (P->w[i].f)
            settle(&P->w[i], QV_FAILED, QV_EWORKER,
                   qv_future_message(P->w[i].f, QV_EWORKER, "%s", P->why), NULL);
        remove_worker(P, i);
    }
    fail_queued(P, P->why, 1);
}

static void on_zygote(procs *P)
{
    zmsg m;
    char ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&m, sizeof(m)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
    ssize_t r = recvmsg(P->zfd, &mh, MSG_CMSG_CLOEXEC);
    if (r != (ssize_t)sizeof(m)) {
        if (r < 0 && errno == EINTR) return;
        /* The zygote is gone, and its workers with it (PDEATHSIG). */
        break_pool(P, "the process pool's zygote died");
        return;
    }
    if (m.type == 'W') {
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        int fd = -1;
        if (c && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof(int));
        P->spawning--;
        if (fd >= 0 && watch(P, fd)) {
            close(fd); /* (no memory for one more watch: as if it never came) */
            fd = -1;
        }
        if (fd < 0) {
            /* Its socket did not come (this process is at its descriptor
             * limit: the kernel drops it and says MSG_CTRUNC): a worker that
             * cannot be reached goes; with none at all, what waits fails. */
            kill(m.pid, SIGKILL);
            if (P->nw == 0 && P->spawning == 0)
                fail_queued(P,
                            mh.msg_flags & MSG_CTRUNC
                                ? "could not take a new worker's socket: this process is at "
                                  "its limit of open files"
                                : "a new worker came without its socket",
                            0);
            return;
        }
        P->w[P->nw] = (pworker){.pid = m.pid, .fd = fd};
        P->nw++;
        atomic_store(&P->base.workers, P->nw);
        return;
    }
    if (m.pid < 0) { /* a spawn failed */
        P->spawning--;
        if (P->nw == 0 && P->spawning == 0) fail_queued(P, "could not start a worker process", 0);
        return;
    }
    for (int i = 0; i < P->nw; i++) {
        if (P->w[i].pid != m.pid) continue;
        if (P->w[i].f) {
            char why[160];
            describe_death(why, sizeof(why), m.status, P->w[i].timed_out);
            settle(&P->w[i], QV_FAILED, QV_EWORKER,
                   qv_future_message(P->w[i].f, QV_EWORKER, "worker %d %s", (int)m.pid, why), NULL);
        }
        remove_worker(P, i);
        return;
    }
}

/* Hands out queued work, asks for workers, and says whether to stop. */
static int schedule(procs *P)
{
    qv_executor *ex = &P->base;
    /* An idle worker that has served its max_requests_per_worker goes (it
     * exits once it reads the end of its socket); a new one is asked for
     * below if there is work. */
    for (int i = P->nw - 1; i >= 0; i--)
        if (!P->w[i].f && P->w[i].served >= ex->o.max_requests_per_worker) remove_worker(P, i);
    pthread_mutex_lock(&ex->mu);
    P->queue_wait = -1;
    for (int i = 0; i < P->nw; i++) {
        if (P->w[i].f || P->w[i].fd < 0) continue;
        qv_future *f = qv_executor_pop_locked(ex, &P->queue_wait);
        if (!f) break;
        pthread_mutex_unlock(&ex->mu);
        assign(P, &P->w[i], f);
        pthread_mutex_lock(&ex->mu);
    }
    int busy = 0;
    for (int i = 0; i < P->nw; i++) busy += P->w[i].f != NULL;
    int want = (int)ex->queued;
    int room = ex->o.max_workers - P->nw - P->spawning;
    int stop = ex->shutdown && qv_executor_empty_locked(ex) && busy == 0;
    pthread_mutex_unlock(&ex->mu);
    if (P->broken) {
        fail_queued(P, P->broken, 1);
        return ex->shutdown;
    }
    for (int k = 0; k < want - P->spawning && k < room; k++) {
        if (write(P->zfd, "S", 1) != 1) break;
        P->spawning++;
    }
    return stop;
}

static void send_cancels(procs *P)
{
    unsigned char frame[QV_WIRE_HEADER];
    qv_buf b = {0};
    if (qv_wire_frame_begin(&b, QV_WIRE_CANCEL) || qv_wire_frame_end(&b)) {
        qv_buf_free(&b);
        return;
    }
    memcpy(frame, b.data, sizeof(frame));
    qv_buf_free(&b);
    for (int i = 0; i < P->nw; i++) {
        pworker *w = &P->w[i];
        if (w->f && w->fd >= 0 && !w->cancel_sent && atomic_load(&w->f->cancel_requested)) {
            qv_fd_write_all(w->fd, frame, sizeof(frame));
            w->cancel_sent = 1;
        }
    }
}

/* Kills workers whose hook ran past the hook timeout; returns the ms until
 * the next deadline (-1: none). */
static int check_hook_deadlines(procs *P)
{
    double now = qv_now_ms(), next = -1;
    for (int i = 0; i < P->nw; i++) {
        pworker *w = &P->w[i];
        if (!w->hook_deadline || w->timed_out) continue;
        if (now >= w->hook_deadline) {
            w->timed_out = 1;
            kill(w->pid, SIGKILL);
        } else if (next < 0 || w->hook_deadline - now < next) {
            next = w->hook_deadline - now;
        }
    }
    return next < 0 ? -1 : (int)next + 1;
}

static pworker *worker_by_fd(procs *P, int fd)
{
    for (int i = 0; i < P->nw; i++)
        if (P->w[i].fd == fd) return &P->w[i];
    return NULL;
}

static void *dispatch_main(void *arg)
{
    procs *P = arg;
    struct epoll_event ev[64];
    transit_add(-1); /* started: before the read side, which a waiting fork holds off */
    in_dispatcher = 1;
    pthread_rwlock_rdlock(&fork_lock);
    for (;;) {
        /* Before schedule looks at the queue: a submit after that look sees
         * the flag and wakes the wait; one before is scheduled. */
        atomic_store(&P->sleeping, 1);
        if (schedule(P)) break;
        int timeout = check_hook_deadlines(P);
        if (P->queue_wait >= 0 && (timeout < 0 || P->queue_wait < timeout))
            timeout = (int)P->queue_wait;
        pthread_rwlock_unlock(&fork_lock); /* sleeping: a pool may fork now */
        int n = epoll_wait(P->ep, ev, (int)(sizeof(ev) / sizeof(ev[0])), timeout);
        atomic_store(&P->sleeping, 0);
        pthread_rwlock_rdlock(&fork_lock);
        if (n < 0 && errno != EINTR) {
            /* Fail what the pool holds rather than leave it pending; go on
             * with the wake pipe alone, failing what is submitted, until
             * shut down. */
            if (!P->broken) {
                char why[96];
                snprintf(why, sizeof(why), "the process pool could not wait for its workers: %s",
                         strerror(errno));
                break_pool(P, why);
            } else {
                nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
            }
            continue;
        }
        int woken = 0, zygote = 0;
        for (int k = 0; k < n; k++) {
            woken |= ev[k].data.fd == P->wake[0];
            zygote |= ev[k].data.fd == P->zfd;
        }
        if (woken) {
            char drain[64];
            /* A short read emptied it (one read, not a second for EAGAIN). */
            while (read(P->wake[0], drain, sizeof(drain)) == (ssize_t)sizeof(drain)) {
            }
            send_cancels(P);
        }
        /* Workers first (their answers), then the zygote (deaths, spawns),
         * which may reorder the worker array. */
        for (int k = 0; k < n; k++) {
            pworker *w = worker_by_fd(P, ev[k].data.fd); /* NULL for the pipe, the zygote */
            if (w) on_worker_readable(P, w);
        }
        if (zygote) on_zygote(P);
    }
    /* Ending (only on shutdown): procs_shutdown, already on its way, joins
     * and counts it off. */
    transit_add(1);
    pthread_rwlock_unlock(&fork_lock);
    return NULL;
}

/* Called under ex->mu, after the queue changed. */
static int procs_notify(qv_executor *ex)
{
    procs *P = (procs *)ex;
    if (atomic_load(&P->sleeping)) wake(P);
    return QV_OK;
}

static void procs_interrupt(qv_executor *ex)
{
    wake((procs *)ex);
}

static void procs_shutdown(qv_executor *ex)
{
    procs *P = (procs *)ex;
    wake(P);
    if (P->started) {
        pthread_join(P->thread, NULL);
        transit_add(-1);
    }
    P->started = 0;
    /* Closing the zygote's channel stops it; it kills and reaps its workers. */
    for (int i = P->nw - 1; i >= 0; i--) remove_worker(P, i);
    if (P->zfd >= 0) close(P->zfd);
    P->zfd = -1;
    if (P->zygote > 0) waitpid(P->zygote, NULL, 0);
    P->zygote = 0;
}

static void procs_destroy(qv_executor *ex)
{
    procs *P = (procs *)ex;
    if (P->wake[0] >= 0) close(P->wake[0]);
    if (P->wake[1] >= 0) close(P->wake[1]);
    qv_buf_free(&P->out);
    if (P->ep >= 0) close(P->ep);
    qv_free(P->w);
    qv_free(P);
}

static const qv_executor_vt procs_vt = {
    .notify = procs_notify,
    .interrupt = procs_interrupt,
    .shutdown = procs_shutdown,
    .destroy = procs_destroy,
};

int qv_procs_new(qv_executor **out, const qv_executor_opts *o)
{
    /* Forking while other threads are inside libcurl or OpenSSL (a resolver
     * lookup, a handshake) could leave the zygote with a lock nobody will
     * release: create process pools before any other quiver executor. */
    if (atomic_load(&qv_io_threads) > 0) return QV_EINVAL;
    /* From a pool's own done callback the fork could not wait for that pool. */
    if (in_dispatcher) return QV_EINVAL;
    procs *P = qv_calloc(1, sizeof(*P));
    if (!P) return QV_ENOMEM;
    P->zfd = P->wake[0] = P->wake[1] = P->ep = -1;
    int rc = qv_executor_init(&P->base, &procs_vt, o);
    if (rc) {
        qv_free(P);
        return rc;
    }
    P->w = qv_calloc((size_t)P->base.o.max_workers, sizeof(*P->w));
    int zsv[2] = {-1, -1};
    if (!P->w || pipe2(P->wake, O_CLOEXEC | O_NONBLOCK) ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, zsv)) {
        rc = QV_ENOMEM;
    } else {
        pthread_rwlock_wrlock(&fork_lock);
        pthread_mutex_lock(&transit_mu);
        while (in_transit) pthread_cond_wait(&transit_cv, &transit_mu);
        pthread_mutex_unlock(&transit_mu);
        P->zygote = fork();
        if (P->zygote == 0) {
            close(zsv[0]);
            qv_zygote_main(zsv[1]); /* never returns */
        }
        pthread_rwlock_unlock(&fork_lock);
        if (P->zygote < 0) rc = QV_ENOMEM;
    }
    if (zsv[1] >= 0) close(zsv[1]);
    P->zfd = zsv[0];
    /* After the fork: the zygote has no use for it. */
    if (!rc &&
        ((P->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || watch(P, P->wake[0]) || watch(P, P->zfd)))
        rc = QV_ENOMEM;
    if (!rc) {
        pthread_rwlock_rdlock(&fork_lock);
        transit_add(1);
        if (pthread_create(&P->thread, NULL, dispatch_main, P)) {
            transit_add(-1);
            rc = QV_ENOMEM;
        }
        pthread_rwlock_unlock(&fork_lock);
    }
    P->started = rc == QV_OK;
    if (rc) {
        pthread_mutex_lock(&P->base.mu);
        P->base.shutdown = 1;
        pthread_mutex_unlock(&P->base.mu);
        procs_shutdown(&P->base);
        qv_executor_unref(&P->base);
        return rc;
    }
    *out = &P->base;
    return QV_OK;
}
