/* soak: a long run of one executor against nginx and the fault server, with
 * exactly-once accounting and an RSS watch (bench/soak runs it for each
 * executor kind; see docs/reliability.md#soak).
 *
 *   soak --executor threads|loop|processes --nginx URL --faults URL
 *        [-n N] [-c C] [--window W] [--deadline S] [--stuck S] [--seed X]
 *        [--warmup PCT] [--rss-limit PCT] [--batch B [--max-uncollected U]]
 *
 * A FIFO window of W futures: submit W, then collect the oldest, check it,
 * release it and submit the next. Each request is drawn at submit:
 *   85%  good: nginx /small (95%) or /64k (5%): FINISHED, 200, exact size
 *    5%  fault: a fault-server path (or a closed port) that fails fast, or
 *        after a short timeout: FAILED with the one expected error code
 *   10%  cancel target: good, fault or a never-answering /stall-status,
 *        cancelled right after one of the (up to W-1) collections still to
 *        come before its own, so the cancel lands on queued, running and
 *        already completed futures alike; it ends
 *        CANCELLED if qv_future_cancel returned 1, else as its kind says
 * Every future has a done callback; the callback must fire exactly once per
 * future (checked at collection, and in total after the executor is freed,
 * when a late second call would also have shown up), and the state it saw
 * must be the state collected. The executor's stats must equal the counts.
 *
 * With --batch B no future has a callback (a future with one never counts
 * against max_uncollected): the oldest B are collected together, by
 * qv_wait and by a qv_as_completed iterator in turn (which must give each
 * once), then checked in order, while the newer futures of the window that
 * finish meanwhile pile up against the executor's max_uncollected
 * (--max-uncollected, 8 here), so its pauses and resumes run all along.
 *
 * RSS (VmRSS, and for processes the total of the zygote and workers) is
 * sampled every N/100 collections, each time once the window has drained;
 * the baseline is the highest sample of the warm-up (--warmup, 10% of N),
 * and every later sample must stay within --rss-limit (5) % of it. RssAnon
 * and malloc's bytes in use are reported beside it. With
 * QV_SOAK_MALLOC_INFO=FILE in the environment, each sample also writes a
 * line <sample done="N" rss_kb="KB"> and malloc_info(3)'s XML to FILE: each
 * arena's size and free blocks, to see which arena grows.
 *
 * Prints "sample ..." lines, one "errors ..." line and one summary line
 * "soak executor=... result=PASS|FAIL ...". Exit: 0 pass, 1 usage/setup,
 * 2 a check failed, 3 the deadline passed or a future never completed. */
#include "bench_common.h"

#include <ctype.h>
#include <dirent.h>
#include <malloc.h>
#include <netinet/in.h>
#include <quiver.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

enum kind {
    K_SMALL,
    K_64K,
    K_REFUSED,
    K_RESET,
    K_SHORT,
    K_BAD_CHUNKED,
    K_GARBAGE,
    K_GARBAGE_HTTP,
    K_LOOP,
    K_TO_FILE,
    K_HUGE,
    K_TIMEOUT,
    K_READ_TIMEOUT,
    K_STALL, /* only as a cancel target: it never answers */
    K_COUNT
};

typedef struct kind_spec {
    const char *name;
    const char *path; /* on the fault server; NULL = nginx or the closed port */
    int weight;       /* among the faults */
    int expect;       /* QV_OK = FINISHED 200 */
} kind_spec;

static const kind_spec kinds[K_COUNT] = {
    [K_SMALL] = {"small", NULL, 0, QV_OK},
    [K_64K] = {"64k", NULL, 0, QV_OK},
    [K_REFUSED] = {"refused", NULL, 25, QV_ECONNECT},
    [K_RESET] = {"reset", "/reset", 12, QV_ECONNECT},
    [K_SHORT] = {"short", "/short", 10, QV_EPROTOCOL},
    [K_BAD_CHUNKED] = {"bad-chunked", "/bad-chunked", 10, QV_EPROTOCOL},
    [K_GARBAGE] = {"garbage", "/garbage", 8, QV_EPROTOCOL},
    [K_GARBAGE_HTTP] = {"garbage-http", "/garbage?style=http", 7, QV_EPROTOCOL},
    [K_LOOP] = {"loop", "/loop", 8, QV_EREDIRECTS},
    [K_TO_FILE] = {"to-file", "/to-file", 8, QV_EURL},
    [K_HUGE] = {"huge", "/huge", 8, QV_ETOO_LARGE},
    [K_TIMEOUT] = {"timeout", "/stall-status", 2, QV_ETIMEOUT},
    [K_READ_TIMEOUT] = {"read-timeout", "/stall-body", 2, QV_EREAD_TIMEOUT},
    /* Cancelled long before its 10 s timeout: QV_ETIMEOUT only if the cancel came late. */
    [K_STALL] = {"stall", "/stall-status", 0, QV_ETIMEOUT},
};

/* One future of the window. seq, fired and cb_state are written by done
 * callbacks on executor threads. */
typedef struct slot {
    qv_future *f;
    _Atomic long seq;
    atomic_int fired;
    atomic_int cb_state;
    enum kind kind;
    int cancel_target;
    int cancel_rc;    /* what qv_future_cancel returned; -1 = not cancelled */
    long next_cancel; /* next seq cancelled at the same moment, -1 = none */
    double t_submit;
} slot;

typedef struct soak {
    qv_session *s;
    long n, w;
    slot *ring;
    long *cancel_head; /* by collection % W: first seq to cancel after it */
    long collected;    /* futures collected so far */
    char url[K_COUNT][512];
    uint64_t rng;
    atomic_long callbacks, stray, bad_user_data;
    int callback;      /* every future has a done callback (no --batch) */
    qv_future **batch; /* --batch: the futures collected together */
    long bad;          /* failed checks */
    long ok, faulted, cancelled, cancel_lost, finished, failed;
    long cancel_seen[3]; /* state just before the cancel: pending, running, done */
    long per_kind[K_COUNT];
    long per_error[QV_ERROR_COUNT_];
} soak;

static uint64_t rnd(soak *S) /* xorshift64*: reproducible draws from --seed */
{
    S->rng ^= S->rng >> 12;
    S->rng ^= S->rng << 25;
    S->rng ^= S->rng >> 27;
    return S->rng * 2685821657736338717ULL;
}

static long below(soak *S, long n)
{
    return (long)(rnd(S) % (uint64_t)n);
}

static void problem(soak *S, const slot *sl, const char *what, const char *detail)
{
    if (S->bad++ < 20)
        fprintf(stderr, "soak: request %ld (%s%s, cancel %d): %s%s\n", atomic_load(&sl->seq),
                kinds[sl->kind].name, sl->cancel_target ? ", cancel target" : "", sl->cancel_rc,
                what, detail ? detail : "");
}

static soak *the_soak; /* for the done callback: its arg is the request's seq */

static void on_done(qv_future *f, void *arg)
{
    soak *S = the_soak;
    long seq = (long)(uintptr_t)arg;
    atomic_fetch_add(&S->callbacks, 1);
    if (qv_future_user_data(f) != arg) atomic_fetch_add(&S->bad_user_data, 1);
    slot *sl = &S->ring[seq % S->w];
    /* A call for a future already collected (its slot reused) is a second call. */
    if (atomic_load(&sl->seq) != seq) {
        atomic_fetch_add(&S->stray, 1);
        return;
    }
    atomic_store(&sl->cb_state, (int)qv_future_state_get(f));
    atomic_fetch_add(&sl->fired, 1);
}

static enum kind draw_fault(soak *S)
{
    long r = below(S, 100);
    for (int k = 0; k < K_COUNT; k++) {
        if (r < kinds[k].weight) return (enum kind)k;
        r -= kinds[k].weight;
    }
    return K_REFUSED;
}

static enum kind draw_good(soak *S)
{
    return below(S, 100) < 95 ? K_SMALL : K_64K;
}

static void cancel(soak *S, slot *sl)
{
    qv_future_state st = qv_future_state_get(sl->f);
    S->cancel_seen[st == QV_PENDING ? 0 : st == QV_RUNNING ? 1 : 2]++;
    sl->cancel_rc = qv_future_cancel(sl->f);
}

static void submit(soak *S, long seq)
{
    slot *sl = &S->ring[seq % S->w];
    long r = below(S, 1000);
    sl->cancel_target = r >= 900;
    if (r < 850)
        sl->kind = draw_good(S);
    else if (r < 900)
        sl->kind = draw_fault(S);
    else {
        long t = below(S, 100);
        sl->kind = t < 80 ? draw_good(S) : t < 90 ? draw_fault(S) : K_STALL;
    }
    sl->cancel_rc = -1;
    sl->next_cancel = -1;
    atomic_store(&sl->fired, 0);
    atomic_store(&sl->cb_state, -1);
    atomic_store(&sl->seq, seq);

    qv_request_opts o = {
        .size = sizeof(o), .url = S->url[sl->kind], .user_data = (void *)(uintptr_t)seq};
    switch (sl->kind) {
    case K_LOOP:
        o.max_redirects = 3;
        break;
    case K_HUGE:
        o.max_response_bytes = 65536;
        break;
    case K_TIMEOUT:
        o.timeout_ms = 100;
        break;
    case K_READ_TIMEOUT:
        o.read_timeout_ms = 100;
        break;
    case K_STALL:
        o.timeout_ms = 10000;
        break;
    default:
        break;
    }
    sl->t_submit = bench_now();
    int rc = qv_request(S->s, &sl->f, &o);
    if (rc != QV_OK) {
        fprintf(stderr, "soak: submit %ld failed: %s\n", seq, qv_errname(rc));
        exit(1);
    }
    if (S->callback) rc = qv_future_add_done_callback(sl->f, on_done, (void *)(uintptr_t)seq);
    if (rc != QV_OK) {
        fprintf(stderr, "soak: add_done_callback %ld failed: %s\n", seq, qv_errname(rc));
        exit(1);
    }
    /* The cancel comes right after one of the collections still to be
     * made before this future's own (or now, if there is none): with a full
     * window, after 0..W-1 more collections. */
    if (sl->cancel_target) {
        long after = S->collected + below(S, seq - S->collected + 1) - 1;
        if (after < S->collected) {
            cancel(S, sl);
        } else {
            long *head = &S->cancel_head[after % S->w];
            sl->next_cancel = *head;
            *head = seq;
        }
    }
}

/* Cancels the requests whose moment is right after collection `c`. */
static void cancel_due(soak *S, long c)
{
    long *head = &S->cancel_head[c % S->w];
    for (long seq = *head; seq >= 0;) {
        slot *sl = &S->ring[seq % S->w];
        cancel(S, sl);
        seq = sl->next_cancel;
    }
    *head = -1;
}

/* --batch: the futures of seqs first..end-1 collected together, by qv_wait or
 * (as_completed) by an iterator that must give each of them once. NULL, or
 * why the run stops. The cancels due at the batch's collections are made
 * first: a stall cancelled later than that would hold the batch for its
 * 10 s timeout. */
static const char *collect_batch(soak *S, long first, long end, int as_completed, double t0,
                                 double deadline_s, double stuck_s)
{
    size_t nb = (size_t)(end - first);
    for (long c = first; c < end; c++) cancel_due(S, c);
    for (size_t k = 0; k < nb; k++) S->batch[k] = S->ring[(first + (long)k) % S->w].f;
    qv_as_completed *ac = NULL;
    if (as_completed && qv_as_completed_new(&ac, S->batch, nb) != QV_OK)
        return "qv_as_completed_new failed";
    const char *fail = NULL;
    for (;;) {
        int rc;
        if (ac) {
            qv_future *f = NULL;
            rc = qv_as_completed_next(ac, &f, 200);
            if (rc == QV_ESHUTDOWN) break;
            if (rc == QV_OK) {
                long seq = (long)(uintptr_t)qv_future_user_data(f);
                slot *sl = &S->ring[seq % S->w];
                if (seq < first || seq >= end || !qv_future_done(f))
                    problem(S, sl, "qv_as_completed gave a future not done or not asked for", NULL);
                else
                    atomic_fetch_add(&sl->fired, 1);
                continue;
            }
        } else if ((rc = qv_wait(S->batch, nb, QV_ALL_COMPLETED, 200)) == QV_OK) {
            break;
        }
        double now = bench_now();
        if (rc != QV_EWAIT_TIMEOUT) fail = "qv_wait or qv_as_completed_next failed";
        if (now - S->ring[first % S->w].t_submit > stuck_s) fail = "a future never completed";
        if (now - t0 > deadline_s) fail = "deadline";
        if (fail) break;
    }
    if (ac) qv_as_completed_free(ac);
    for (long seq = first; seq < end && !fail; seq++) {
        slot *sl = &S->ring[seq % S->w];
        if (!qv_future_done(sl->f)) problem(S, sl, "not done after its batch was waited for", NULL);
        if (ac && atomic_load(&sl->fired) != 1)
            problem(S, sl, "qv_as_completed did not give it exactly once", NULL);
    }
    return fail;
}

/* Checks one completed future against what was asked of it. */
static void check(soak *S, slot *sl)
{
    qv_future *f = sl->f;
    qv_future_state st = qv_future_state_get(f);
    if (S->callback && atomic_load(&sl->fired) != 1)
        problem(S, sl, "done callback count is not 1", NULL);
    if (S->callback && atomic_load(&sl->cb_state) != (int)st)
        problem(S, sl, "the callback saw another state than the collector", NULL);
    if (qv_future_user_data(f) != (void *)(uintptr_t)atomic_load(&sl->seq))
        problem(S, sl, "the user data did not come back", NULL);
    qv_response *r = NULL;
    int rc = qv_future_result(f, &r, 0);
    if (rc != qv_future_error_code(f)) problem(S, sl, "result and error code disagree", NULL);
    if (rc >= 0 && rc < QV_ERROR_COUNT_) S->per_error[rc]++;
    S->per_kind[sl->kind]++;
    if (st == QV_CANCELLED) {
        S->cancelled++;
        if (sl->cancel_rc != 1) problem(S, sl, "CANCELLED without a successful cancel", NULL);
        if (rc != QV_ECANCELLED || r)
            problem(S, sl, "CANCELLED but result is not QV_ECANCELLED", NULL);
        if (qv_future_cancel(f) != 1)
            problem(S, sl, "a second cancel of a cancelled future is not 1", NULL);
        return;
    }
    if (sl->cancel_rc == 1) {
        problem(S, sl, "cancel returned 1 but the future ended ", qv_errname(rc));
        return;
    }
    if (sl->cancel_rc == 0) S->cancel_lost++;
    if (qv_future_cancel(f) != 0) problem(S, sl, "cancel after completion is not 0", NULL);
    int expect = kinds[sl->kind].expect;
    if (st == QV_FINISHED) {
        S->finished++;
        size_t len = 0;
        if (r) qv_response_body(r, &len);
        size_t want = sl->kind == K_SMALL ? 100 : 65536;
        if (expect != QV_OK || rc != QV_OK || !r || qv_response_status(r) != 200 || len != want) {
            problem(S, sl, "unexpected response or size", NULL);
            return;
        }
        S->ok++;
    } else if (st == QV_FAILED) {
        S->failed++;
        const char *msg = qv_future_error(f);
        if (rc != expect || r || !msg || !*msg) {
            problem(S, sl, "failed with ", msg ? msg : qv_errname(rc));
            return;
        }
        S->faulted++;
    } else {
        problem(S, sl, "collected in a state that is not terminal", NULL);
    }
}

/* A "Name: N kB" line of a process's status (0 if it is gone). */
static long status_kb(int pid, const char *name)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    long kb = 0;
    size_t len = strlen(name);
    while (fgets(line, sizeof(line), fp))
        if (strncmp(line, name, len) == 0 && line[len] == ':') {
            kb = atol(line + len + 1);
            break;
        }
    fclose(fp);
    return kb;
}

static long rss_kb(int pid)
{
    return status_kb(pid, "VmRSS");
}

/* The total VmRSS of this process's descendants (the process pool's zygote
 * and workers): /proc has no list of descendants, so every process's parent
 * is read and the tree walked. Fixed arrays: no allocation here. */
static long descendants_rss_kb(void)
{
    enum { MAXP = 4096 };
    static int pids[MAXP], ppids[MAXP];
    static char mine[MAXP];
    int np = 0;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && np < MAXP) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        int pid = atoi(e->d_name);
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        FILE *fp = fopen(path, "r");
        if (!fp) continue;
        size_t len = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[len] = 0;
        const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
        int ppid;
        if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1) continue;
        pids[np] = pid;
        ppids[np++] = ppid;
    }
    closedir(d);
    memset(mine, 0, (size_t)np);
    int self = (int)getpid(), grew = 1;
    while (grew) {
        grew = 0;
        for (int i = 0; i < np; i++) {
            if (mine[i]) continue;
            int parent_mine = ppids[i] == self;
            for (int j = 0; j < np && !parent_mine; j++)
                parent_mine = mine[j] && pids[j] == ppids[i];
            if (parent_mine) mine[i] = grew = 1;
        }
    }
    long kb = 0;
    for (int i = 0; i < np; i++) {
        if (mine[i]) kb += rss_kb(pids[i]);
    }
    return kb;
}

typedef struct rss_track {
    long base, max, last;
} rss_track;

static void track(rss_track *t, long kb, int after_warmup)
{
    if (!after_warmup && kb > t->base) t->base = kb;
    if (after_warmup && kb > t->max) t->max = kb;
    t->last = kb;
}

static double drift_pct(const rss_track *t)
{
    return t->base ? 100.0 * (double)(t->max - t->base) / (double)t->base : 0.0;
}

/* A port on 127.0.0.1 that refuses connections: bound, never listened on.
 * The socket stays open for the whole run so that nothing else takes it. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
        getsockname(fd, (struct sockaddr *)&a, &len))
        return -1;
    return ntohs(a.sin_port);
}

_Noreturn static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s --executor threads|loop|processes --nginx URL --faults URL [-n N] [-c C]\n"
            "          [--window W] [--deadline S] [--stuck S] [--seed X] [--warmup PCT]\n"
            "          [--rss-limit PCT] [--batch B [--max-uncollected U]]\n",
            prog);
    exit(1);
}

int main(int argc, char **argv)
{
    static const struct option longs[] = {
        {"executor", required_argument, NULL, 'e'},
        {"nginx", required_argument, NULL, 'g'},
        {"faults", required_argument, NULL, 'f'},
        {"window", required_argument, NULL, 'w'},
        {"deadline", required_argument, NULL, 'd'},
        {"stuck", required_argument, NULL, 'k'},
        {"seed", required_argument, NULL, 'r'},
        {"warmup", required_argument, NULL, 'u'},
        {"rss-limit", required_argument, NULL, 'l'},
        {"batch", required_argument, NULL, 'b'},
        {"max-uncollected", required_argument, NULL, 'm'},
        {NULL, 0, NULL, 0},
    };
    const char *exname = NULL, *nginx = NULL, *faults = NULL;
    long n = 1000000, window = 256, workers = 0, batch = 0, max_uncollected = 0;
    double deadline_s = 900, stuck_s = 60, warmup_pct = 10, rss_limit_pct = 5;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    int ch;
    while ((ch = getopt_long(argc, argv, "n:c:", longs, NULL)) != -1) {
        switch (ch) {
        case 'n':
            n = atol(optarg);
            break;
        case 'c':
            workers = atol(optarg);
            break;
        case 'e':
            exname = optarg;
            break;
        case 'g':
            nginx = optarg;
            break;
        case 'f':
            faults = optarg;
            break;
        case 'w':
            window = atol(optarg);
            break;
        case 'd':
            deadline_s = atof(optarg);
            break;
        case 'k':
            stuck_s = atof(optarg);
            break;
        case 'r':
            seed = strtoull(optarg, NULL, 0);
            break;
        case 'u':
            warmup_pct = atof(optarg);
            break;
        case 'l':
            rss_limit_pct = atof(optarg);
            break;
        case 'b':
            batch = atol(optarg);
            break;
        case 'm':
            max_uncollected = atol(optarg);
            break;
        default:
            usage(argv[0]);
        }
    }
    if (!exname || !nginx || !faults || n < 100 || window < 1 || batch < 0) usage(argv[0]);
    qv_executor_kind kind;
    if (strcmp(exname, "threads") == 0)
        kind = QV_THREADS;
    else if (strcmp(exname, "loop") == 0)
        kind = QV_LOOP;
    else if (strcmp(exname, "processes") == 0)
        kind = QV_PROCESSES;
    else
        usage(argv[0]);
    /* Defaults that suit each kind on 2 cores: a thread or process per
     * transfer costs more than a transfer slot of the loop. */
    if (workers <= 0) workers = kind == QV_LOOP ? 64 : kind == QV_THREADS ? 16 : 8;
    if (window > n) window = n;
    if (batch > window) batch = window;
    /* Small, so that the futures finished past the batch waited for fill it. */
    if (batch && !max_uncollected) max_uncollected = 8;
    if (seed == 0) seed = 1; /* xorshift's one bad state */
    bench_raise_nofile();

    /* The process pool forks first, before any other thread exists. */
    qv_executor *ex = NULL;
    int rc = qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                      .kind = kind,
                                                      .max_workers = (int)workers,
                                                      .max_uncollected = max_uncollected});
    if (rc) {
        fprintf(stderr, "soak: qv_executor_new: %s\n", qv_strerror(rc));
        return 1;
    }
    qv_session *s = NULL;
    rc = qv_session_new(&s, &(qv_session_opts){.size = sizeof(qv_session_opts), .executor = ex});
    if (rc) {
        fprintf(stderr, "soak: qv_session_new: %s\n", qv_strerror(rc));
        return 1;
    }
    int port = closed_port();
    if (port < 0) {
        perror("soak: closed port");
        return 1;
    }

    static soak S;
    the_soak = &S;
    S.s = s;
    S.n = n;
    S.w = window;
    S.rng = seed;
    S.callback = !batch;
    S.ring = calloc((size_t)window, sizeof(*S.ring));
    S.cancel_head = malloc((size_t)window * sizeof(*S.cancel_head));
    S.batch = malloc((size_t)window * sizeof(*S.batch));
    if (!S.ring || !S.cancel_head || !S.batch) return 1;
    for (long i = 0; i < window; i++) {
        S.cancel_head[i] = -1;
        atomic_init(&S.ring[i].seq, -1);
    }
    for (int k = 0; k < K_COUNT; k++) {
        if (k == K_SMALL || k == K_64K)
            snprintf(S.url[k], sizeof(S.url[k]), "%s/%s", nginx, k == K_SMALL ? "small" : "64k");
        else if (k == K_REFUSED)
            snprintf(S.url[k], sizeof(S.url[k]), "http://127.0.0.1:%d/refused", port);
        else
            snprintf(S.url[k], sizeof(S.url[k]), "%s%s", faults, kinds[k].path);
    }
    printf("soak: executor=%s n=%ld workers=%ld window=%ld batch=%ld max_uncollected=%ld "
           "seed=%llu\n",
           exname, n, workers, window, batch, max_uncollected, (unsigned long long)seed);
    fflush(stdout);

    /* Samples every N/100; the baseline is the peak of the warm-up's samples
     * (the heap settles with some noise: bodies of the window, arenas). */
    long every = n / 100, warm_at = (long)(warmup_pct + 0.5);
    if (warm_at < 1) warm_at = 1;
    rss_track self_rss = {0}, pool_rss = {0}, heap_use = {0}, anon_rss = {0};
    const char *fail = NULL;
    FILE *minfo = getenv("QV_SOAK_MALLOC_INFO") ? fopen(getenv("QV_SOAK_MALLOC_INFO"), "w") : NULL;
    double t0 = bench_now();
    /* Submitting stops at each sample point until the window has drained,
     * so every sample sees the same state: no future alive, only what the
     * executor and libcurl keep between requests. A leak shows there; the
     * peak under load (sampled as the drain starts) is reported beside it. */
    long submitted = 0, limit = every, batch_end = 0;
    int as_completed = 1;               /* --batch: qv_wait and qv_as_completed in turn */
    long load_peak_kb = 0, load_at = 0; /* the limit whose drain was sampled */
    while (submitted < limit && submitted < window) submit(&S, submitted++);
    for (long i = 0; i < n && !fail; i++) {
        slot *sl = &S.ring[i % window];
        if (submitted == limit && load_at != limit) {
            long kb = rss_kb((int)getpid());
            if (kb > load_peak_kb) load_peak_kb = kb;
            load_at = limit;
        }
        if (batch && i == batch_end) {
            batch_end = i + batch < submitted ? i + batch : submitted;
            as_completed = !as_completed;
            fail = collect_batch(&S, i, batch_end, as_completed, t0, deadline_s, stuck_s);
        }
        while (!fail && !batch && qv_future_wait(sl->f, 200) == QV_EWAIT_TIMEOUT) {
            double now = bench_now();
            if (now - sl->t_submit > stuck_s) fail = "a future never completed";
            if (now - t0 > deadline_s) fail = "deadline";
            if (fail) break;
        }
        if (fail) {
            fprintf(stderr, "soak: %s: request %ld (%s, %s, cancel %d) state %d after %.1f s\n",
                    fail, i, kinds[sl->kind].name, S.url[sl->kind], sl->cancel_rc,
                    (int)qv_future_state_get(sl->f), bench_now() - sl->t_submit);
            break;
        }
        /* Waiters wake before the done callbacks run: give the callback its moment. */
        for (double t = bench_now();
             S.callback && !atomic_load(&sl->fired) && bench_now() - t < 10;)
            usleep(20);
        check(&S, sl);
        qv_future_release(sl->f);
        sl->f = NULL;
        S.collected = i + 1;
        if (submitted < limit) submit(&S, submitted++);
        cancel_due(&S, i);
        if (S.collected == limit) {
            long at = limit / every;
            long kb = rss_kb((int)getpid()), pool = kind == QV_PROCESSES ? descendants_rss_kb() : 0;
            track(&self_rss, kb, at > warm_at);
            track(&pool_rss, pool, at > warm_at);
            /* Bytes malloc has handed out and not had back: a leak grows this
             * too, fragmentation only the RSS. */
            struct mallinfo2 mi = mallinfo2();
            long heap = (long)((mi.uordblks + mi.hblkhd) / 1024);
            track(&heap_use, heap, at > warm_at);
            /* Anonymous memory apart: library pages first touched late count in
             * VmRSS too, but are no growth of the heap. */
            long anon = status_kb((int)getpid(), "RssAnon");
            track(&anon_rss, anon, at > warm_at);
            if (minfo) {
                fprintf(minfo, "<sample done=\"%ld\" rss_kb=\"%ld\">\n", limit, kb);
                malloc_info(0, minfo);
                fflush(minfo);
            }
            printf("sample done=%ld seconds=%.1f rss_kb=%ld anon_kb=%ld heap_kb=%ld "
                   "workers_rss_kb=%ld\n",
                   limit, bench_now() - t0, kb, anon, heap, pool);
            fflush(stdout);
            limit = limit + every < n ? limit + every : n;
            while (submitted < limit && submitted - S.collected < window) submit(&S, submitted++);
        }
    }
    double secs = bench_now() - t0;
    if (minfo) fclose(minfo);
    if (fail) {
        printf("soak executor=%s result=FAIL reason=\"%s\" collected=%ld of %ld seconds=%.1f\n",
               exname, fail, S.ok + S.faulted + S.cancelled, n, secs);
        return 3; /* outstanding futures are left as they are */
    }

    qv_executor_stats st;
    qv_executor_stats_get(ex, &st);
    if (st.queued || st.in_flight || (long)st.completed != S.finished ||
        (long)st.failed != S.failed || (long)st.cancelled != S.cancelled) {
        fprintf(stderr,
                "soak: executor stats disagree: queued %zu in_flight %zu completed %zu (futures "
                "%ld) failed %zu (%ld) cancelled %zu (%ld)\n",
                st.queued, st.in_flight, st.completed, S.finished, st.failed, S.failed,
                st.cancelled, S.cancelled);
        S.bad++;
    }
    qv_session_free(s);
    qv_executor_free(ex);
    /* Only now would a late second callback have been counted. */
    long cbs = atomic_load(&S.callbacks);
    if (cbs != (S.callback ? n : 0) || atomic_load(&S.stray) || atomic_load(&S.bad_user_data)) {
        fprintf(stderr,
                "soak: %ld callbacks for %ld futures (%ld late, %ld with wrong user data)\n", cbs,
                n, atomic_load(&S.stray), atomic_load(&S.bad_user_data));
        S.bad++;
    }
    int rss_ok = drift_pct(&self_rss) <= rss_limit_pct &&
                 (kind != QV_PROCESSES || drift_pct(&pool_rss) <= rss_limit_pct);
    if (!rss_ok)
        fprintf(stderr, "soak: RSS grew more than %.0f%% after the warm-up\n", rss_limit_pct);
    if (S.ok + S.faulted + S.cancelled != n) S.bad++;

    printf("errors");
    for (int e = 0; e < QV_ERROR_COUNT_; e++)
        if (S.per_error[e]) printf(" %s=%ld", qv_errname(e), S.per_error[e]);
    printf("\nkinds");
    for (int k = 0; k < K_COUNT; k++) printf(" %s=%ld", kinds[k].name, S.per_kind[k]);
    printf("\n");
    printf("soak executor=%s result=%s requests=%ld ok=%ld faulted=%ld cancelled=%ld "
           "cancel_lost=%ld cancel_at_pending=%ld cancel_at_running=%ld cancel_at_done=%ld "
           "bad=%ld callbacks=%ld stats_completed=%zu stats_failed=%zu stats_cancelled=%zu "
           "connections=%zu seconds=%.1f req_per_s=%.0f rss_base_kb=%ld rss_max_kb=%ld "
           "rss_final_kb=%ld rss_drift_pct=%.1f rss_load_peak_kb=%ld anon_base_kb=%ld "
           "anon_max_kb=%ld anon_final_kb=%ld heap_base_kb=%ld "
           "heap_max_kb=%ld heap_final_kb=%ld workers_rss_base_kb=%ld "
           "workers_rss_max_kb=%ld workers_rss_final_kb=%ld workers_rss_drift_pct=%.1f\n",
           exname, S.bad == 0 && rss_ok ? "PASS" : "FAIL", n, S.ok, S.faulted, S.cancelled,
           S.cancel_lost, S.cancel_seen[0], S.cancel_seen[1], S.cancel_seen[2], S.bad, cbs,
           st.completed, st.failed, st.cancelled, st.connections_opened, secs, (double)n / secs,
           self_rss.base, self_rss.max, self_rss.last, drift_pct(&self_rss), load_peak_kb,
           anon_rss.base, anon_rss.max, anon_rss.last, heap_use.base, heap_use.max, heap_use.last,
           pool_rss.base, pool_rss.max, pool_rss.last, drift_pct(&pool_rss));
    free(S.ring);
    free(S.cancel_head);
    free(S.batch);
    return S.bad == 0 && rss_ok ? 0 : 2;
}
