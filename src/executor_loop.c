/* The event-loop executor: one curl_multi drives up to max_workers transfers
 * at once (HTTP/1.1 keep-alive, HTTP/2 multiplexing over TLS). Whoever
 * drives it is its *leader*: a thread of the caller's blocked in a wait for
 * one of its futures (it does the I/O itself, and a completion there wakes
 * no one), else the I/O thread, which steps aside for a waiting thread and
 * takes over again within LOOP_TAKEOVER_MS of no one waiting. Submitters
 * hand work over through the shared queue and curl_multi_wakeup. Finished
 * transfers go to a few delivery threads that run response hooks and done
 * callbacks, so these never stall the transfers (the request hooks of
 * attempt.c run on the leader, as each transfer starts). The leader starts
 * no queued work while max_uncollected finished responses wait for you
 * (uncollected.c, as QV_THREADS' workers pause), woken by the collection
 * that ends the pause (loop_resume). */
#include "internal.h"

#include <errno.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define LOOP_DELIVERY_THREADS 4
#define LOOP_SCAN_MS          100 /* how often running transfers are checked at least */
#define LOOP_TAKEOVER_MS      2 /* the I/O thread takes over 1-2 ms after the lead went to no one */

enum { LEAD_NONE, LEAD_IO, LEAD_USER };

/* A thread blocked in a wait while another leads (on its stack). */
typedef struct follower {
    qv_waiter *w;
    qv_link link; /* in the loop's followers while it follows */
    int offered;  /* under the loop's lmu and w->mu: it leads now */
} follower;

/* Nodes in a singly linked list through their next, oldest first (a
 * delivery list). */
typedef struct batch {
    qv_link *head, *tail;
} batch;

/* The delivery lists, in the order the delivery threads take from them. */
enum { OUTCOME, CALLBACKS, TASK, PUMP, NWORK };

typedef struct loop {
    qv_executor base;
    CURLM *multi;
    pthread_t io;
    int io_started;
    qv_slot *slots; /* max_workers of them, easy handles made on first use */
    qv_slot **idle; /* free slots (a stack) */
    int nidle;
    qv_slot **active; /* slots with a transfer, for the timeout and cancel scan */
    int nactive;
    /* Of those, how many read upload_path, which may be a pipe that the
     * poll watches while it is empty (upload.c): the descriptors then. */
    int uploads;
    struct curl_waitfd *watch;
    qv_connlook conns; /* the leader's look at its idle connections (connlook.c) */
    /* Work for the delivery threads, under dmu, by kind: outcomes to
     * deliver, futures completed on the leader whose done callbacks are left
     * to run, and streamed responses' headers (TASK), all linked by the
     * futures' q.next; and pump runs, by their pumps' run.next (a pump's
     * future may be in a batch of outcomes at the same time). */
    pthread_mutex_t dmu;
    pthread_cond_t dcv;
    batch work[NWORK];
    int dstop;
    pthread_t dthreads[LOOP_DELIVERY_THREADS];
    int ndthreads;
    atomic_int sleeping; /* the leader is (about to be) in curl_multi_poll, a slot free */
    /* The leader's: */
    int requeued;     /* a finished transfer went back to the queue (a retry) */
    double next_scan; /* when running transfers are checked next (qv_coarse_ms): the
                       * earliest read timeout due, or LOOP_SCAN_MS after the last check */
    int unclocked;    /* transfers with a read timeout whose clock has not started */
    int held;         /* the bound on uncollected responses holds the queue back
                       * (counted in base.paused: see held_back) */
    /* Who leads, under lmu (taking the lead gives the leader the fields
     * above and the multi, slots, idle and active). */
    pthread_mutex_t lmu;
    int lead;           /* LEAD_* */
    qv_list followers;  /* oldest first */
    atomic_int asked;   /* threads of yours came to wait since the I/O thread took the
                         * lead: it lets go after its round */
    double released_ms; /* when the lead last went to no one */
    int timer;          /* a timerfd: the I/O thread sleeps on it while it does not lead */
    double timer_at;    /* when it fires (qv_now_ms), 0 if it is not set */
    double lead_due;    /* when the timer was to fire as the lead was taken (0: not set) */
    int long_leads;     /* the last lead outlasted that: the next take stops the timer */
    int stopped;        /* the I/O thread is gone: no one leads again */
    atomic_int look;    /* a running future was cancelled or poked: scan now */
    atomic_int resumed; /* loop_resume woke the leader since it last looked at the bound */
    qv_holder run_by;   /* the hold on a future whose transfer runs here */
    /* Its leader's allocations come from it (NULL: from malloc), whichever
     * thread leads: libcurl's per-transfer blocks, its 16 KiB receive buffer
     * among them, then stay off the top of glibc's main arena, which their
     * free trimmed and the next transfer grew again (internal.h). */
    struct pool_heap *heap;
} loop;

/* dmu, dcv and lmu, in the executor's `built`. */
enum { BUILT_DMU = QV_BUILT_KIND, BUILT_DCV = QV_BUILT_KIND << 1, BUILT_LMU = QV_BUILT_KIND << 2 };

/* A running future was cancelled, or its streamed body's reader made room:
 * the loop's leader wakes and scans. */
static int loop_poke(qv_future *f, void *arg, int cancel)
{
    loop *L = arg;
    (void)f;
    (void)cancel;
    atomic_store(&L->look, 1);
    curl_multi_wakeup(L->multi);
    return 0;
}

static void batch_add(batch *b, qv_link *n)
{
    n->next = NULL;
    if (b->tail)
        b->tail->next = n;
    else
        b->head = n;
    b->tail = n;
}

/* Appends batch b to the list to, under dmu. */
static void batch_move(batch *to, const batch *b)
{
    if (!b->head) return;
    if (to->tail)
        to->tail->next = b->head;
    else
        to->head = b->head;
    to->tail = b->tail;
}

/* Hands outcomes to deliver, and futures whose done callbacks are left to
 * run, to the delivery threads. */
static void deliver_batch(loop *L, const batch *outcomes, const batch *callbacks)
{
    if (!outcomes->head && !callbacks->head) return;
    pthread_mutex_lock(&L->dmu);
    batch_move(&L->work[OUTCOME], outcomes);
    batch_move(&L->work[CALLBACKS], callbacks);
    pthread_cond_signal(&L->dcv); /* one thread takes the batch; it wakes no others */
    pthread_mutex_unlock(&L->dmu);
}

/* Queues n on the delivery threads' list b. */
static void add_work(loop *L, batch *b, qv_link *n)
{
    pthread_mutex_lock(&L->dmu);
    batch_add(b, n);
    pthread_cond_signal(&L->dcv);
    pthread_mutex_unlock(&L->dmu);
}

/* Under dmu: the first of b, or NULL. */
static qv_link *take_from(batch *b)
{
    qv_link *n = b->head;
    if (!n) return NULL;
    b->head = n->next;
    if (!b->head) b->tail = NULL;
    n->next = NULL;
    return n;
}

/* Under dmu: 1 if a delivery list holds work. */
static int any_work(const loop *L)
{
    for (int i = 0; i < NWORK; i++)
        if (L->work[i].head) return 1;
    return 0;
}

/* Under dmu: the next outcome, done callbacks, task or pump run (*what),
 * or NULL. */
static qv_link *take(loop *L, int *what)
{
    qv_link *n = NULL;
    for (int i = 0; i < NWORK && !n; i++)
        if ((n = take_from(&L->work[i]))) *what = i;
    if (any_work(L)) pthread_cond_signal(&L->dcv); /* more: let another help */
    return n;
}

static void *delivery_main(void *arg)
{
    loop *L = arg;
    qv_own_executor = &L->base;
    qv_sigpipe_block_thread();
    for (;;) {
        int what = OUTCOME;
        pthread_mutex_lock(&L->dmu);
        while (!any_work(L) && !L->dstop) pthread_cond_wait(&L->dcv, &L->dmu);
        qv_link *n = take(L, &what);
        pthread_mutex_unlock(&L->dmu);
        if (!n) break; /* stopped and drained */
        if (what == PUMP) {
            /* (Its future is held by the queue's reference until the
             * pump's last hold delivers it: none is taken for a run.) */
            qv_pump_run(qv_list_item(n, qv_pump, run));
            continue;
        }
        qv_future *f = qv_future_of(n);
        if (what == OUTCOME) {
            qv_transfer_deliver(f);
        } else if (what == CALLBACKS) {
            qv_future_finish(f);
        } else {
            /* A streamed response's headers, waiting in out_resp (which a
             * streamed transfer's end leaves alone). */
            qv_response *early = f->out_resp;
            f->out_resp = NULL;
            qv_transfer_deliver_early(f, early);
        }
        qv_future_drop(f); /* the queue's reference, or the task's */
    }
    return NULL;
}

/* Completes what runs no hooks right here on the leader (handing it to
 * another thread costs more than completing it), and gives futures with
 * hooks to the delivery threads, and the done callbacks of those completed
 * here: the leader runs no user code but request hooks and what a transfer
 * calls as it goes. The futures someone waits for are completed last: a
 * thread collecting results in order that woke for the first of the batch
 * found the next one not done yet, and slept and woke again for each. */
static void deliver(loop *L, batch *done)
{
    batch user = {0}, callbacks = {0}, waited = {0};
    for (int last = 0; last < 2; last++) {
        qv_link *n = last ? waited.head : done->head;
        for (qv_link *next; n; n = next) {
            next = n->next;
            qv_future *f = qv_future_of(n);
            /* Hooks run on responses only. */
            if (f->out_resp && qv_has_hooks(f))
                batch_add(&user, &f->q);
            else if (!last && qv_future_waited(f))
                batch_add(&waited, &f->q);
            else if (qv_transfer_settle(f))
                batch_add(&callbacks, &f->q);
            else
                qv_future_drop(f); /* the queue's reference */
        }
    }
    deliver_batch(L, &user, &callbacks);
}

static void slot_deactivate(loop *L, qv_slot *slot)
{
    qv_slot *last = L->active[--L->nactive];
    L->active[slot->active_idx] = last;
    last->active_idx = slot->active_idx;
    L->idle[L->nidle++] = slot;
}

/* Starts f on a free slot; a future that cannot start goes to delivery. */
static void start(loop *L, qv_future *f, batch *done)
{
    if (!qv_future_begin(f, &L->run_by)) {
        qv_future_drop(f); /* the queue's: its cancel completed it */
        return;
    }
    qv_slot *slot = L->idle[--L->nidle];
    if (!slot->easy) slot->easy = curl_easy_init();
    if (!slot->easy) {
        qv_future_end_transfer(f);
        f->out_err = QV_ENOMEM;
        f->out_msg = qv_future_message(f, QV_ENOMEM, "no transfer handle");
    } else if (qv_transfer_setup(slot, f) == QV_OK) {
        if (curl_multi_add_handle(L->multi, slot->easy) == CURLM_OK) {
            slot->active_idx = L->nactive;
            L->active[L->nactive++] = slot;
            if (f->req.io->upload_path) L->uploads++;
            /* More transfers than connections allowed: some wait for one
             * (or share one over HTTP/2). */
            int cap = L->base.o.max_total_connections;
            if (cap > 0 && L->nactive > cap) qv_executor_note(&L->base, QV_SATURATED_CONNECTIONS);
            return;
        }
        qv_transfer_collect(slot, CURLE_OUT_OF_MEMORY);
    }
    L->idle[L->nidle++] = slot;
    batch_add(done, &f->q);
}

static void finish(loop *L, qv_slot *slot, CURLcode cc, batch *done)
{
    qv_connlook_done(&L->conns, slot->conn_fd);
    slot->conn_fd = CURL_SOCKET_BAD;
    if (qv_transfer_again(slot, L->multi, &cc)) return;
    qv_future *f = slot->f;
    qv_pump *pump = slot->pump;
    slot->pump = NULL;
    qv_transfer_detach(slot, L->multi);
    qv_transfer_collect(slot, cc);
    slot_deactivate(L, slot);
    if (f->req.io->upload_path) L->uploads--;
    if (f->streamed) {
        /* Completed with its headers (on a delivery thread): what is left
         * runs no user code. */
        qv_transfer_deliver(f);
        qv_future_drop(f);
        return;
    }
    if (qv_retry_maybe(f)) {
        qv_future_drop(f); /* this attempt's queue reference */
        L->requeued = 1;   /* look at the queue before sleeping */
        return;
    }
    /* Its pump's last run delivers (and lets the queue's reference go). */
    if (pump && !qv_pump_last(pump)) return;
    batch_add(done, &f->q);
}

/* Aborts the transfers that were cancelled or ran into their read timeout
 * (with `fresh`, only those with a read timeout whose clock has not started,
 * as L->unclocked counts them: the first check that sees a request on its
 * way starts it, so that check comes in the round that sent it, not up to
 * LOOP_SCAN_MS later); returns how long poll may sleep before the next
 * check is due. */
static long scan(loop *L, batch *done, int fresh, double read_by)
{
    long wait = LOOP_SCAN_MS;
    L->unclocked = 0;
    for (int i = 0; i < L->nactive;) {
        qv_slot *slot = L->active[i];
        if (fresh && (slot->read_clock || slot->f->req.read_timeout_ms < 0)) {
            i++;
            continue;
        }
        if (qv_transfer_should_abort(slot, read_by)) {
            finish(L, slot, CURLE_ABORTED_BY_CALLBACK, done); /* moves another slot to i */
            continue;
        }
        L->unclocked += !slot->read_clock && slot->f->req.read_timeout_ms >= 0;
        long w = qv_transfer_poll_ms(slot, wait);
        if (w < wait) wait = w;
        i++;
    }
    return wait;
}

enum { ROUND_AGAIN, ROUND_IDLE, ROUND_STOP };

/* Under ex->mu, before a round pops: whether the bound on uncollected
 * responses holds the queue back (from the bound until half of it is
 * collected, unless something urgent needs the queue: uncollected.c). While
 * it does, the leader counts in ex->paused, so a collection or an urgent
 * need that may end the pause wakes its poll (loop_resume). `resumed` is
 * cleared before the counts are read: a wake-up for a change they do not
 * show finds it clear. */
static int held_back(loop *L)
{
    qv_executor *ex = &L->base;
    if (!L->held &&
        (!ex->max_uncollected ||
         atomic_load_explicit(&ex->uncollected, memory_order_relaxed) < ex->max_uncollected))
        return 0;
    atomic_store(&L->resumed, 0);
    return qv_executor_hold_on(ex, L->held);
}

/* How long the leader may poll: until the next check of the running
 * transfers is due (by the coarse clock, which lags: up to its lag later
 * than the due time, never before it). */
static int idle_timeout(const loop *L, double now)
{
    double until = L->next_scan - now;
    return !L->nactive ? 1000 : until <= 0 ? 0 : (int)until + 1;
}

/* One round of the leader: start queued work, run the transfers, collect
 * and deliver what finished. ROUND_IDLE: poll next, for at most *timeout
 * ms; ROUND_STOP: shut down, nothing queued or running. */
static int run_round(loop *L, int *timeout)
{
    qv_executor *ex = &L->base;
    batch done = {0};
    long queue_wait = -1; /* until a retry or a host's token is due */
    int started = 0;
    pthread_mutex_lock(&ex->mu);
    L->held = held_back(L);
    for (qv_future *f; !L->held && L->nidle > 0 && (f = qv_executor_pop_locked(ex, &queue_wait));) {
        pthread_mutex_unlock(&ex->mu);
        start(L, f, &done);
        started++;
        pthread_mutex_lock(&ex->mu);
    }
    int stop = ex->shutdown && qv_executor_empty_locked(ex) && L->nactive == 0;
    pthread_mutex_unlock(&ex->mu);
    if (stop) {
        deliver(L, &done);
        return ROUND_STOP;
    }

    int running = 0;
    double read_by = qv_coarse_ms(); /* (for scan: see qv_transfer_should_abort) */
    qv_connlook_round(&L->conns, started);
    curl_multi_perform(L->multi, &running);
    int left;
    for (CURLMsg *m; (m = curl_multi_info_read(L->multi, &left));) {
        if (m->msg != CURLMSG_DONE) continue;
        char *slot = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &slot);
        finish(L, (qv_slot *)(void *)slot, m->data.result, &done);
    }
    double now = qv_coarse_ms(); /* (the coarse clock, as read_by: no system call) */
    int all = atomic_exchange(&L->look, 0) || now >= L->next_scan;
    if (all || L->unclocked) {
        double due = now + (double)scan(L, &done, !all, read_by);
        if (all || due < L->next_scan) L->next_scan = due;
    }
    int finished = done.head != NULL || L->requeued;
    L->requeued = 0;
    qv_later_run(); /* on this round's thread: the pipes its transfers filled */
    deliver(L, &done);
    /* Finished transfers freed slots: start queued work before sleeping. */
    if (finished) return ROUND_AGAIN;
    *timeout = idle_timeout(L, now);
    if (queue_wait >= 0 && queue_wait < *timeout) *timeout = (int)queue_wait;
    return ROUND_IDLE;
}

/* A slot is free and work is queued (that may start: see poll_idle), and
 * the bound on uncollected responses does not hold it back. */
static int work_can_start(loop *L)
{
    qv_executor *ex = &L->base;
    if (L->held) return 0;
    pthread_mutex_lock(&ex->mu);
    int work = !qv_list_empty(&ex->ready) && L->nidle > 0;
    pthread_mutex_unlock(&ex->mu);
    return work;
}

/* The leader sleeps until a socket is ready, a submit, cancel or
 * completion wakes it, or the timeout. */
static void poll_idle(loop *L, int timeout)
{
    /* Submitters wake the loop only while it sleeps: announce it, then
     * look at the queue once more, so no submit goes unnoticed. (A
     * queued future that may not start yet was parked by the pop of the
     * round, so the queue's head is always one that may.) With every slot
     * busy no submit could start anything: a slot frees only when a
     * transfer ends, which wakes the poll by itself. So then the sleep is
     * not announced: in the submit-all idiom the I/O thread was woken for
     * up to a third of the submits, for a round that started nothing.
     * Nor while the bound holds the queue back: what ends that wakes it. */
    atomic_store(&L->sleeping, L->nidle > 0 && !L->held);
    /* Uploads paused for want of their pipe's bytes: the poll wakes when
     * they come, and the scan resumes them. */
    unsigned nwatch = 0;
    for (int i = 0; L->uploads && i < L->nactive; i++) {
        int fd = qv_upload_watch_fd(L->active[i]);
        if (fd >= 0)
            L->watch[nwatch++] = (struct curl_waitfd){.fd = fd, .events = CURL_WAIT_POLLIN};
    }
    if (!work_can_start(L))
        curl_multi_poll(L->multi, nwatch ? L->watch : NULL, nwatch, timeout, NULL);
    for (unsigned i = 0; i < nwatch; i++)
        if (L->watch[i].revents) atomic_store(&L->look, 1);
    atomic_store(&L->sleeping, 0);
}

/* Under lmu: the I/O thread wakes at `at` (qv_now_ms), or not at all (0). */
static void timer_set(loop *L, double at)
{
    time_t sec = (time_t)(at / 1e3);
    long ns = (long)((at - (double)sec * 1e3) * 1e6);
    struct itimerspec its = {.it_value = {.tv_sec = sec, .tv_nsec = at > 0 && ns <= 0 ? 1 : ns}};
    L->timer_at = at;
    timerfd_settime(L->timer, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Under lmu: the leader lets go, to the oldest follower if any (which is
 * woken to lead), else to no one: the I/O thread takes over once no one has
 * led for LOOP_TAKEOVER_MS / 2, woken by its timer. A release with no timer
 * set sets it for then; one that finds it set for less than that ahead (an
 * earlier release's) pushes it on to LOOP_TAKEOVER_MS, so the releases of a
 * thread of yours waiting for result after result set it about once a
 * millisecond, and the I/O thread sleeps through it all, taking over 1-2 ms
 * after the last. Looking every 2 ms instead (~500 wake-ups a second at any
 * rate of requests) cost it 2-4% of the CPU at c = 1 (bench/NOTES.md,
 * 2026-12-07 03:35). A lead that outlasts the timer (a wait that sleeps in a
 * poll for a slow network or a busy machine) would have it fire for
 * nothing; the release notes it (long_leads), and while leads are long the
 * next take stops the timer (lead_taken). */
static void hand_on(loop *L)
{
    follower *next = qv_list_item(qv_list_first(&L->followers), follower, link);
    if (!next) {
        L->lead = LEAD_NONE;
        L->released_ms = qv_now_ms();
        L->long_leads = L->lead_due && L->released_ms >= L->lead_due;
        double due = L->released_ms + LOOP_TAKEOVER_MS / 2.0;
        if (L->timer_at <= L->released_ms)
            timer_set(L, due);
        else if (L->timer_at < due)
            timer_set(L, L->released_ms + LOOP_TAKEOVER_MS);
        return;
    }
    qv_list_unlink(&L->followers, &next->link);
    L->lead = LEAD_USER;
    pthread_mutex_lock(&next->w->mu);
    next->offered = 1;
    pthread_cond_broadcast(&next->w->cv); /* other threads may wait on w too */
    pthread_mutex_unlock(&next->w->mu);
}

/* Under lmu: a thread of yours takes the lead no one held. While leads
 * outlast the timer, it stops it: left running, it fired in most such leads
 * and woke the I/O thread for nothing (~27 us of its CPU on a busy VM),
 * while stopping it and setting it again at the release costs ~6 us, which
 * short leads (a quiet machine) would pay for no fire (bench/NOTES.md,
 * 2026-12-07 06:45). */
static void lead_taken(loop *L)
{
    L->lead = LEAD_USER;
    L->lead_due = L->timer_at;
    if (L->timer_at && L->long_leads) timer_set(L, 0);
}

/* Under lmu: takes me out of the followers; 0 if it was not there (it was
 * offered the lead). */
static int unfollow(loop *L, follower *me)
{
    if (!qv_list_linked(&me->link)) return 0; /* hand_on unlinked it */
    qv_list_unlink(&L->followers, &me->link);
    return 1;
}

static int waiter_ready(qv_waiter *w)
{
    pthread_mutex_lock(&w->mu);
    int ready = w->ready(w);
    pthread_mutex_unlock(&w->mu);
    return ready;
}

/* w is ready after a round that ended transfers, and half the slots or
 * more are free with work queued: one more round starts that work before
 * the lead goes. Else those slots sit idle while the caller works on its
 * result (a thread collecting in order builds a Python Response, ~5 us, for
 * each done future before it waits, and leads, again), and the next lead
 * waits a whole round trip for them. With fewer slots free, that round's
 * perform over every running transfer costs more than it saves
 * (bench/NOTES.md, 2026-12-07 06:48). */
static int refill_due(loop *L, qv_waiter *w)
{
    return L->nactive <= L->nidle && waiter_ready(w) && work_can_start(L);
}

/* Leads for w until it is ready, its deadline passes or the loop stops. */
static void lead(loop *L, qv_waiter *w, const struct timespec *dl)
{
    qv_executor *own = qv_own_executor;
    qv_own_executor = &L->base; /* its callbacks run here now */
    qv_waiter *before = qv_waiter_lead(w, L->multi);
    struct pool_heap *was = qv_mem_heap_use(L->heap);
    /* Every slot busy as the lead is taken (the last round started all it
     * could, as a refill does): a first round would start nothing, and its
     * curl_multi_perform would only look at each transfer's socket, a poll
     * each, most often right after the last round did. One poll over them
     * all comes first instead, as raw multi's loop does. Not with `look`
     * set: a cancel or poke whose wake-up the last leader's poll took just
     * before its wait ended (no round after it) would wait for that poll's
     * timeout, up to LOOP_SCAN_MS. */
    int settled = L->nidle == 0 && !atomic_load(&L->look);
    for (;;) {
        if (waiter_ready(w)) break; /* (before the clock: most waits end here) */
        long left = dl ? qv_ms_left(dl) : -1;
        if (left == 0) break;
        if (settled) {
            settled = 0;
            int timeout = idle_timeout(L, qv_coarse_ms());
            poll_idle(L, left >= 0 && left < timeout ? (int)left : timeout);
            continue;
        }
        int timeout = 0, r = run_round(L, &timeout);
        if (r == ROUND_STOP) break; /* what w waits for is being delivered */
        /* A round that only received may have made w ready too (a streamed
         * body's reader: pipe.c). */
        if (r == ROUND_IDLE && !waiter_ready(w))
            poll_idle(L, left >= 0 && left < timeout ? (int)left : timeout);
        else if (r == ROUND_AGAIN && refill_due(L, w))
            run_round(L, &timeout);
    }
    qv_mem_heap_use(was);
    qv_sigpipe_release(); /* (held by a write to a pipe of this lead's, sink.c) */
    qv_waiter_unlead(w, before);
    qv_own_executor = own;
}

static void loop_drive(qv_executor *ex, qv_waiter *w, const struct timespec *dl)
{
    loop *L = (loop *)ex;
    follower me = {.w = w};
    pthread_mutex_lock(&L->lmu);
    if (L->stopped) {
        pthread_mutex_unlock(&L->lmu);
        return;
    }
    int leads = L->lead == LEAD_NONE;
    if (leads) {
        lead_taken(L);
    } else {
        qv_list_insert_tail(&L->followers, &me.link);
        /* The I/O thread lets go after its round: end its poll. */
        if (atomic_fetch_add(&L->asked, 1) == 0 && L->lead == LEAD_IO) curl_multi_wakeup(L->multi);
    }
    pthread_mutex_unlock(&L->lmu);
    if (!leads) {
        pthread_mutex_lock(&w->mu);
        int timed_out = 0;
        while (!w->ready(w) && !me.offered && !timed_out)
            timed_out = qv_cond_wait(&w->cv, &w->mu, dl) != 0;
        int over = w->ready(w) || timed_out;
        pthread_mutex_unlock(&w->mu);
        pthread_mutex_lock(&L->lmu);
        leads = !unfollow(L, &me);
        /* Offered by the I/O thread as it stopped: no one leads again. A
         * lead offered to a wait that is over already (its future completed
         * in the round that handed over, or its deadline passed) goes on, to
         * the next follower or to no one, as a leader's does when its wait
         * is over: this thread most likely waits again at once, for its
         * next result, and leads then. (Given straight back to the I/O
         * thread, it stayed there while that thread's rounds completed this
         * one's futures, a wake-up of both threads for each.) */
        int stopped = L->stopped;
        if (leads && (stopped || over)) hand_on(L);
        pthread_mutex_unlock(&L->lmu);
        if (!leads || stopped || over) return;
    }
    lead(L, w, dl);
    pthread_mutex_lock(&L->lmu);
    hand_on(L);
    pthread_mutex_unlock(&L->lmu);
}

/* The I/O thread sleeps on its timer until no one has led for
 * LOOP_TAKEOVER_MS / 2 (a thread of yours between two waits, a submit or a
 * result already in between, keeps the lead; one that computes is taken
 * over), then leads. While a thread of yours leads (a long transfer waited
 * for) it sleeps: the release sets its timer. */
static void io_take_lead(loop *L)
{
    pthread_mutex_lock(&L->lmu);
    for (;;) {
        double now = qv_now_ms();
        if (L->timer_at <= now) L->timer_at = 0; /* it fired (a release may have set it again) */
        if (L->lead == LEAD_NONE) {
            double due = L->released_ms + LOOP_TAKEOVER_MS / 2.0;
            if (now >= due) break;
            if (!L->timer_at) timer_set(L, due);
        }
        pthread_mutex_unlock(&L->lmu);
        uint64_t fired;
        while (read(L->timer, &fired, sizeof(fired)) < 0 && errno == EINTR) continue;
        pthread_mutex_lock(&L->lmu);
    }
    L->lead = LEAD_IO;
    L->lead_due = 0;            /* its lead says nothing of yours */
    atomic_store(&L->asked, 0); /* no one follows a lead no one held */
    pthread_mutex_unlock(&L->lmu);
}

static void *io_main(void *arg)
{
    loop *L = arg;
    qv_own_executor = &L->base;
    qv_sigpipe_block_thread();
    for (;;) {
        io_take_lead(L);
        qv_mem_heap_use(L->heap);
        for (;;) {
            int timeout = 0, r = run_round(L, &timeout);
            if (r == ROUND_STOP) {
                qv_mem_heap_use(NULL);
                /* No one leads again: followers wait as before. */
                pthread_mutex_lock(&L->lmu);
                L->stopped = 1;
                while (!qv_list_empty(&L->followers)) hand_on(L);
                pthread_mutex_unlock(&L->lmu);
                return NULL;
            }
            /* A thread of yours came to wait: it leads from now on, handed
             * the lead if it still waits, else at its next wait (the lead
             * goes to no one meanwhile). Kept here, the lead stayed while
             * these rounds completed that thread's futures one by one, each
             * wait a wake-up of both threads (submit-all at c = 64). */
            if (atomic_load(&L->asked)) {
                qv_mem_heap_use(NULL); /* the next leader's: the lock hands it over */
                pthread_mutex_lock(&L->lmu);
                hand_on(L);
                pthread_mutex_unlock(&L->lmu);
                break;
            }
            if (r == ROUND_IDLE) poll_idle(L, timeout);
        }
    }
}

static int loop_notify(qv_executor *ex)
{
    loop *L = (loop *)ex;
    /* One wake-up a sleep: the first submit clears the flag (the wake-up
     * stays pending until the poll), the others see it cleared. The leader
     * looks at the queue after it wakes, before it sleeps again. */
    if (atomic_exchange(&L->sleeping, 0)) curl_multi_wakeup(L->multi);
    return QV_OK;
}

static void loop_shutdown(qv_executor *ex)
{
    loop *L = (loop *)ex;
    if (L->io_started) {
        curl_multi_wakeup(L->multi);
        pthread_join(L->io, NULL);
    }
    /* (A half-built loop may have none: then dmu may not be made.) */
    if (L->ndthreads) {
        pthread_mutex_lock(&L->dmu);
        L->dstop = 1;
        pthread_cond_broadcast(&L->dcv);
        pthread_mutex_unlock(&L->dmu);
    }
    for (int i = 0; i < L->ndthreads; i++) pthread_join(L->dthreads[i], NULL);
    if (L->io_started) atomic_fetch_sub(&qv_io_threads, 1 + L->ndthreads);
    L->io_started = 0;
    L->ndthreads = 0;
}

static void loop_destroy(qv_executor *ex)
{
    loop *L = (loop *)ex;
    if (L->timer >= 0) close(L->timer);
    qv_executor_unbuild_sync(ex, BUILT_LMU, &L->lmu, NULL);
    for (int i = 0; i < ex->o.max_workers && L->slots; i++) qv_transfer_slot_free(&L->slots[i]);
    if (L->multi) curl_multi_cleanup(L->multi);
    qv_connlook_free(&L->conns);
    qv_mem_heap_give(L->heap);
    qv_executor_unbuild_sync(ex, BUILT_DCV, NULL, &L->dcv);
    qv_executor_unbuild_sync(ex, BUILT_DMU, &L->dmu, NULL);
    qv_free(L->slots);
    qv_free(L->idle);
    qv_free(L->active);
    qv_free(L->watch);
    qv_free(L);
}

/* A streamed response's headers: hooks and done callbacks run on a
 * delivery thread, as for any response, while the I/O thread goes on. */
static void loop_deliver_early(qv_executor *ex, qv_future *f, qv_response *r)
{
    loop *L = (loop *)ex;
    f->out_resp = r;
    add_work(L, &L->work[TASK], &qv_future_hold(f)->q); /* the task's reference */
}

/* A collection brought the uncollected responses down to half the bound,
 * or an urgent need came: the leader's poll is woken, once until it looks
 * at the bound again (held_back). */
static void loop_resume(qv_executor *ex)
{
    loop *L = (loop *)ex;
    if (!atomic_exchange(&L->resumed, 1)) curl_multi_wakeup(L->multi);
}

/* on_data and output_fd run on delivery threads (pump.c). */
static void loop_pump_ready(qv_pump *p)
{
    loop *L = (loop *)p->f->ex;
    add_work(L, &L->work[PUMP], &p->run);
}

/* The runner's wait: a thread of the caller's about to sleep until f is
 * done drives the loop meanwhile (qv_wait_until leads or follows), unless
 * it is the loop's own. f->lock held, and let go meanwhile. */
static int loop_wait(qv_future *f, const struct timespec *deadline)
{
    if (qv_own_executor == f->ex) return 0;
    qv_lock_give(&f->lock);
    int rc = qv_wait_until(&f, 1, QV_ALL_COMPLETED, deadline);
    qv_lock_take(&f->lock);
    return rc != QV_ENOMEM;
}

/* A waiter linked to f (not done, f->lock held): its blocked thread drives
 * the loop. Running, f keeps the loop alive: so does w from now on. */
static void loop_linked(qv_future *f, qv_waiter *w)
{
    if (w->ex) return;
    w->ex = f->ex;
    qv_executor_ref(w->ex);
}

/* What its futures tell the loop: its bound on uncollected responses (as
 * QV_THREADS'), and a thread that would sleep for them. */
static const qv_runner loop_runner = {
    .look = qv_uncollected_look,
    .urge = qv_uncollected_urge,
    .finished = qv_uncollected_finished,
    .collected = qv_uncollected_collected,
    .wait = loop_wait,
    .linked = loop_linked,
};

static void loop_blank(qv_executor *ex)
{
    ((loop *)ex)->timer = -1;
    ((loop *)ex)->conns.ep = -1;
}

/* The loop's part of the executor, its I/O thread last: once that runs,
 * nothing fails. */
static int loop_build(qv_executor *ex)
{
    loop *L = (loop *)ex;
    int n = ex->o.max_workers;
    if (qv_executor_build_sync(ex, BUILT_DMU, &L->dmu, NULL) ||
        qv_executor_build_sync(ex, BUILT_DCV, NULL, &L->dcv) ||
        qv_executor_build_sync(ex, BUILT_LMU, &L->lmu, NULL))
        return QV_ENOMEM;
    if ((L->timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC)) < 0)
        return qv_executor_short("the loop's timerfd", errno);
    if (qv_connlook_init(&L->conns)) return qv_executor_short("the loop's epoll", errno);
    L->slots = qv_calloc((size_t)n, sizeof(*L->slots));
    L->idle = qv_calloc((size_t)n, sizeof(*L->idle));
    L->active = qv_calloc((size_t)n, sizeof(*L->active));
    L->watch = qv_calloc((size_t)n, sizeof(*L->watch));
    L->heap = qv_mem_heap_take();
    if (!L->slots || !L->idle || !L->active || !L->watch)
        return qv_executor_short("the loop's slots", 0);
    if (!(L->multi = qv_transfer_multi("the loop's"))) return QV_ENOMEM;
    L->run_by = (qv_holder){.fn = loop_poke, .arg = L};
    qv_uncollected_setup(&L->base, L->base.o.max_uncollected);
    for (int i = 0; i < n; i++) {
        /* Its requests count themselves unclocked as they go (a redirect's
         * hops too), so that the round that sent one starts its clock. */
        L->slots[i].unclocked = &L->unclocked;
        L->slots[i].connlook = &L->conns;
        L->slots[i].conn_fd = CURL_SOCKET_BAD;
        L->idle[L->nidle++] = &L->slots[n - 1 - i];
    }
    long cache = n > L->base.o.max_connections ? n : L->base.o.max_connections;
    if (curl_multi_setopt(L->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX) ||
        curl_multi_setopt(L->multi, CURLMOPT_MAXCONNECTS, cache) ||
        curl_multi_setopt(L->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                          (long)L->base.o.max_host_connections) ||
        curl_multi_setopt(L->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                          (long)L->base.o.max_total_connections))
        return qv_executor_short("the loop's multi handle's settings", 0);
    int err = 0;
    for (int i = 0; i < LOOP_DELIVERY_THREADS; i++) {
        if ((err = pthread_create(&L->dthreads[i], NULL, delivery_main, L))) break;
        L->ndthreads++;
    }
    if (L->ndthreads == 0) return qv_executor_short("the loop's delivery thread", err);
    if ((err = pthread_create(&L->io, NULL, io_main, L)))
        return qv_executor_short("the loop's I/O thread", err);
    L->io_started = 1;
    atomic_fetch_add(&qv_io_threads, 1 + L->ndthreads);
    atomic_store(&L->base.workers, 1);
    return QV_OK;
}

const qv_executor_vt qv_loop_vt = {
    .notify = loop_notify,
    .deliver_early = loop_deliver_early,
    .pump_ready = loop_pump_ready,
    .drive = loop_drive,
    .runner = &loop_runner,
    .resume = loop_resume,
    .size = sizeof(loop),
    .blank = loop_blank,
    .build = loop_build,
    .shutdown = loop_shutdown,
    .destroy = loop_destroy,
};
