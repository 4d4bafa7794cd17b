/* Private declarations shared by the library's source files. */
#ifndef QV_INTERNAL_H
#define QV_INTERNAL_H

#include "quiver.h"
#include "list.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* The body of a streamed response between its transfer and its reader (pipe.c). */
typedef struct qv_pipe qv_pipe;
/* A QV_LOOP transfer's pump of its body to other threads (pump.c). */
typedef struct qv_pump qv_pump;

/* ------------------------------------------------------------- memory (mem.c) */

/* Memory the library keeps for reuse is out of bounds for ASan while kept,
 * so that a read after its release is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#define QV_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QV_ASAN 1
#endif
#endif
#ifdef QV_ASAN
#include <sanitizer/asan_interface.h>
#define QV_POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define QV_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define QV_POISON(p, n)   ((void)(p), (void)(n))
#define QV_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Allocations that failed so far (through qv_malloc & co). */
extern atomic_long qv_alloc_failures;
/* 1 if qv_set_allocator installed one (then libcurl and jansson use it too). */
int qv_allocator_is_custom(void);
/* Every allocation from now on through a (is_custom: not the C library's);
 * only qv_set_allocator (init.c) calls it, before anything is allocated. */
void qv_allocator_use(qv_allocator a, int is_custom);

void *qv_malloc(size_t n);
void *qv_calloc(size_t n, size_t size);
void *qv_realloc(void *p, size_t n);
void qv_free(void *p);
char *qv_strdup(const char *s);
char *qv_strndup(const char *s, size_t n);
/* printf into a new string; NULL on failure. */
char *qv_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Growable byte buffer, always NUL-terminated once anything was appended. */
typedef struct qv_buf {
    char *data;
    size_t len, cap;
} qv_buf;
/* Room for n more bytes and the NUL, growing by doubling but to no more
 * than `most` bytes (and the NUL) unless n needs it; SIZE_MAX: no bound. */
int qv_buf_grow(qv_buf *b, size_t n, size_t most);
/* The block qv_buf_grow would move b to for n more bytes (and the NUL) in
 * *cap, or 0 if b has the room; QV_ENOMEM if that size overflows. */
int qv_buf_next_cap(const qv_buf *b, size_t n, size_t most, size_t *cap);
int qv_buf_append(qv_buf *b, const void *p, size_t n);
int qv_buf_puts(qv_buf *b, const char *s);
void qv_buf_free(qv_buf *b);

/* Bump allocator: everything copied at submit lives in one, freed at once. */
typedef struct qv_arena_chunk qv_arena_chunk;
typedef struct qv_arena {
    qv_arena_chunk *head;
} qv_arena;
/* The room n bytes take in an arena (rounded up to 8 bytes: copies in an
 * arena are aligned for pointers, sizes and doubles, not long double). */
size_t qv_arena_room(size_t n);
/* Bytes to give qv_arena_init_in for a first chunk of `room` bytes: its
 * 16-byte header and the room; 0 for no room, or more than a chunk holds
 * (2 GiB: then the arena makes its chunks itself). */
size_t qv_arena_in_size(size_t room);
/* An empty arena whose first chunk is mem (qv_arena_in_size(room) bytes,
 * not 0, aligned for pointers), which the caller owns: copies that fit
 * take no allocation of their own. */
void qv_arena_init_in(qv_arena *a, void *mem, size_t room);
void *qv_arena_alloc(qv_arena *a, size_t n);
/* NULL in → NULL out (not an error); check `s && !copy` for failure. */
char *qv_arena_strdup(qv_arena *a, const char *s);
char *qv_arena_memdup(qv_arena *a, const void *p, size_t n);
/* Empty again, keeping its first chunk. */
void qv_arena_reset(qv_arena *a);
void qv_arena_free(qv_arena *a);

/* ----------------------------------------------------- worker heaps (pool.c) */

/* Between these, a QV_THREADS worker's allocations of up to QV_POOL_MAX
 * bytes (libcurl's too: it allocates through qv_malloc) come from a heap of
 * its own, with a free list per size class; a block freed on another thread
 * goes to a depot the workers share; the heap outlives the thread, for the
 * next worker (pool.c). Not under an allocator of the program's own. */
#define QV_POOL_MAX ((size_t)32 << 10)
void qv_mem_keep_begin(void);
void qv_mem_keep_end(void);
/* A heap no thread holds yet (NULL: none, as above): a QV_LOOP executor's,
 * taken as it starts and given back as it is freed. Whichever thread leads
 * it uses it while it leads (one at a time: the lead is handed over under
 * the loop's lock); use returns the heap the thread used before, which the
 * lead's end restores (a QV_THREADS worker's whose callback waits for a
 * QV_LOOP future, and leads). One heap for all the leaders: its blocks
 * freed by one serve the next, where a heap for each leader (the I/O
 * thread, your thread waiting) held a set of libcurl's per-transfer blocks
 * each (bench/NOTES.md, 2026-12-07 13:05). */
struct pool_heap *qv_mem_heap_take(void);
void qv_mem_heap_give(struct pool_heap *h);
struct pool_heap *qv_mem_heap_use(struct pool_heap *h);
/* For mem.c: a block of n bytes from this thread's heap, or NULL
 * (none, or n too large); whether p is such a block; its size as asked;
 * free it (on any thread); resize it in place if n fits its class (1). */
void *qv_pool_alloc(size_t n);
/* Heaps taken now (a QV_THREADS worker's, a QV_LOOP executor's). With none
 * (QV_PROCESSES alone), mem.c asks for no block: libcurl allocates through
 * it ~250 times a small request, and a heap is a thread-local (in a shared
 * library, a __tls_get_addr). */
extern atomic_int qv_pool_heaps_out;
/* The heaps' reservation, QV_POOL_RESERVE bytes from qv_pool_lo (0 until
 * made): read inline, since every free of libcurl's asks (~30 a small
 * request). One load: with two (a low and a high end), a thread between
 * them while the reservation was made could see the low end still 0 and
 * the high end set, and take any malloc'd pointer below it for a block. */
#define QV_POOL_RESERVE ((size_t)1 << 30)
extern atomic_uintptr_t qv_pool_lo;
static inline int qv_pool_owns(const void *p)
{
    uintptr_t lo = atomic_load_explicit(&qv_pool_lo, memory_order_relaxed);
    return lo && (uintptr_t)p - lo < QV_POOL_RESERVE;
}
size_t qv_pool_size(const void *p);
void qv_pool_free(void *p);
int qv_pool_resize(void *p, size_t n);
/* Bytes the heaps have cut into blocks so far: it grows only when a class
 * had no freed block to give. */
size_t qv_pool_cut_bytes(void);

/* ------------------------------------------------------------ library (init.c) */

/* libcurl and jansson set up once (with the allocator fixed from then on):
 * QV_OK, or QV_ENOMEM if libcurl could not be. */
int qv_global_init(void);

/* ----------------------------------------------------------- time (clock.c) */

/* Monotonic milliseconds. */
double qv_now_ms(void);
/* The same clock to the kernel's tick (a few ms), several times cheaper to
 * read: for stamps taken in every libcurl callback and compared with it
 * (the read timeout), where a tick's error does not matter. */
double qv_coarse_ms(void);
/* Absolute CLOCK_MONOTONIC deadline for a timeout in ms (< 0 = none). */
void qv_deadline(struct timespec *ts, long timeout_ms);
/* Milliseconds left until a deadline (0 once past it, rounded up). */
long qv_ms_left(const struct timespec *deadline);
/* pthread_cond_timedwait on a monotonic deadline; NULL = forever. 0 or ETIMEDOUT. */
int qv_cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu, const struct timespec *deadline);
int qv_cond_init(pthread_cond_t *cv);

/* ------------------------------------------------------------ locks (lock.c) */

/* A lock of 4 bytes (zero: free) for objects made by the ten thousand. */
typedef struct qv_lock {
    atomic_uint v;
} qv_lock;
void qv_lock_take(qv_lock *l);
void qv_lock_give(qv_lock *l);
/* What threads holding a qv_lock wait on for a change (zero: no one
 * waits), as on a condition variable. */
typedef struct qv_signal {
    atomic_uint v;
} qv_signal;
/* Lets l go, sleeps until a broadcast (or spuriously), or the monotonic
 * deadline (NULL: none), takes l again. 0 or ETIMEDOUT. */
int qv_signal_wait(qv_signal *s, qv_lock *l, const struct timespec *deadline);
/* Wakes every thread asleep on s (with or without the lock held). */
void qv_signal_all(qv_signal *s);
/* 1 if a thread may be asleep on s (since the last broadcast). */
int qv_signal_sleepers(qv_signal *s);
/* A qv_signal in memory shared between processes (the body ring),
 * waited on without a qv_lock: the waiter calls qv_signal_prepare before
 * it looks at the condition a last time, then sleeps with what it
 * returned, which a broadcast since makes return at once. */
unsigned qv_signal_prepare(qv_signal *s);
int qv_signal_sleep_shared(qv_signal *s, unsigned v, const struct timespec *deadline);
void qv_signal_all_shared(qv_signal *s);

/* ------------------------------------------------------- headers (headers.c) */

typedef struct qv_hdr {
    char *name;
    char *value;
} qv_hdr;

/* Case-insensitive ordered multimap of owned strings. */
typedef struct qv_headers {
    qv_hdr *items;
    size_t len, cap;
    qv_arena strings; /* every name and value */
} qv_headers;
int qv_headers_add(qv_headers *h, const char *name, size_t nlen, const char *value, size_t vlen);
/* The same for a line "name: value" as received: the name is its first nlen
 * bytes, the value the vlen bytes at value, past the colon (nlen < value - line). */
int qv_headers_add_line(qv_headers *h, const char *line, size_t nlen, const char *value,
                        size_t vlen);
/* Obsolete line folding: " more" joins the last value (if any). */
int qv_headers_continue(qv_headers *h, const char *more, size_t n);
const char *qv_headers_get(const qv_headers *h, const char *name, size_t nth);
/* No lines, keeping the room of the usual few for the next ones. */
void qv_headers_clear(qv_headers *h);
void qv_headers_free(qv_headers *h);
/* Is `line` ("Name: v", "Name:" or "Name;") a line of header `name`
 * (nlen: its length)? */
int qv_header_line_is(const char *line, const char *name, size_t nlen);
/* Header name: an HTTP token. Value: no CR, LF. */
int qv_header_name_ok(const char *name);
int qv_header_value_ok(const char *value);

/* ------------------------------------------------------------- misuse (misuse.c) */

/* Magic words: the first field of a future, session and executor, set when
 * it is made, checked at every public entry, QV_MAGIC_FREED once freed. */
#define QV_MAGIC_FUTURE   0x51564675u /* "QVFu" */
#define QV_MAGIC_SESSION  0x51565365u /* "QVSe" */
#define QV_MAGIC_EXECUTOR 0x51564578u /* "QVEx" */
#define QV_MAGIC_FREED    0xdeadbeefu

/* Says on stderr that fn(p) was misused (what), then aborts. */
_Noreturn void qv_misuse(const char *fn, const void *p, const char *what);
_Noreturn void qv_magic_fail(const char *fn, const void *p, unsigned have, const char *kind);
/* Aborts unless p's magic word `have` is `want` (kind: "future", ...). */
#define QV_CHECK_MAGIC(p, want, kind)                                                              \
    do {                                                                                           \
        if (__builtin_expect((p)->magic != (want), 0))                                             \
            qv_magic_fail(__func__, (p), (p)->magic, (kind));                                      \
    } while (0)
#define QV_CHECK_FUTURE(f)   QV_CHECK_MAGIC(f, QV_MAGIC_FUTURE, "future")
#define QV_CHECK_SESSION(s)  QV_CHECK_MAGIC(s, QV_MAGIC_SESSION, "session")
#define QV_CHECK_EXECUTOR(x) QV_CHECK_MAGIC(x, QV_MAGIC_EXECUTOR, "executor")

/* ----------------------------------------------------------------- URLs (url.c) */

/* The span of url's userinfo with its '@' ("user:pass@" in
 * "http://user:pass@host/"): 1 with [*start, *end), or 0 if none. */
int qv_url_userinfo(const char *url, size_t *start, size_t *end);
/* A copy of url without its userinfo, to show (free with qv_free); NULL
 * (out of memory) or the copy. */
char *qv_url_shown(const char *url);

/* ------------------------------------------------------------ errors (error.c) */

int qv_error_from_curl(CURLcode cc);
/* Sets qv_last_error's message ("" clears it). */
void qv_set_last_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --------------------------------------------------------- request (request.c) */

typedef struct qv_req_part {
    char *name, *value, *file, *filename, *content_type;
    size_t value_len;
} qv_req_part;

/* A retry policy with its defaults filled in (retry.c); max_retries 0 =
 * none. Plain values, so that it copies (and crosses the process wire). */
#define QV_RETRY_STATUSES_MAX 32
typedef struct qv_retry_policy {
    int max_retries;
    unsigned on;
    long backoff_ms, max_backoff_ms;
    int all_methods, no_retry_after;
    int nstatuses;
    int statuses[QV_RETRY_STATUSES_MAX];
} qv_retry_policy;

/* A request hook with its argument (fn NULL: none). */
typedef struct qv_req_hook {
    qv_request_hook_fn fn;
    void *arg;
} qv_req_hook;

/* A request's networks and identity (see qv_session_opts): the strings
 * borrowed from the session or in the request's arena; 0 and NULL: not set.
 * Out of line, in the arena, only for a request that sets any. */
typedef struct qv_req_net {
    const char *client_cert, *client_key, *key_password, *ca_path, *pinned_public_key;
    const char *client_cert_pem, *client_key_pem;
    const char *no_proxy, *proxy_username, *proxy_password, *proxy_ca_file;
    const char *unix_socket, *interface;
    const qv_pair *resolve, *connect_to; /* end with {0} */
    int tls_min_version, ip_version;
} qv_req_net;

/* A request's large-body options (sink.c, upload.c, pump.c): copied, except
 * the callbacks' args. Out of line, in the arena, only for a request that
 * sets any; 0 and NULL: not set. */
typedef struct qv_req_io {
    const char *output_path;
    int keep_partial, resume, output_fd; /* output_fd: 0 none */
    int stream;
    int (*on_data)(qv_future *f, const void *chunk, size_t len, void *arg);
    void *on_data_arg;
    void (*on_progress)(qv_future *f, long long dl_now, long long dl_total, long long ul_now,
                        long long ul_total, void *arg);
    void *on_progress_arg;
    const char *upload_path;
    long (*on_upload)(void *buf, size_t cap, void *arg);
    void *on_upload_arg;
    long long upload_len;
} qv_req_io;
/* None of them (request.c). */
extern const qv_req_io qv_io_none;

/* The user code a request calls and its debug trace: its response hook
 * (the session's are read from the session), the request hooks (the
 * session's, then its own), on_debug and the trace. Out of line, in the
 * arena, only for a request that has any of them or is traced (QV_DEBUG). */
typedef struct qv_req_calls {
    qv_hook_fn hook;
    void *hook_arg;
    qv_req_hook on_request[2];
    /* The debug trace (debug.c): the callback, with body bytes or not, the
     * environment's QV_DEBUG (QV_TRACE_*) and the request's id in the trace
     * (0 when not traced). */
    qv_debug_fn on_debug;
    void *on_debug_arg;
    uint64_t trace_id;
    unsigned char debug_body;
    unsigned char trace_env;
} qv_req_calls;
/* None of them (request.c). */
extern const qv_req_calls qv_calls_none;

/* Everything a transfer needs, merged from session + request and copied. */
typedef struct qv_req {
    qv_arena arena;
    const char *method;
    const char *url;
    const char *host;           /* for seeding the session's any-host cookies */
    struct curl_slist *headers; /* "Name: value" lines */
    const char *body;
    size_t body_len;
    qv_req_part *parts;
    size_t nparts;
    const char *username, *password;
    long timeout_ms, connect_timeout_ms, read_timeout_ms; /* resolved: -1 = none */
    size_t max_response_bytes;
    int max_redirects;
    /* Flags and small codes as bytes, together (no padding between
     * pointers): written only while the request is built. */
    unsigned char headers_borrowed; /* the session's default lines, not ours to free */
    unsigned char has_body;
    unsigned char auth; /* qv_auth_kind */
    unsigned char follow;
    unsigned char insecure;
    const char *ca_file, *proxy;  /* borrowed from the session; proxy: the one for
                                     the URL's scheme, "" = none (not even the
                                     environment's) */
    const qv_req_net *net;        /* &qv_net_none unless it sets any */
    const char *url_error_msg;    /* the URL was rejected: fails QV_EURL without a transfer */
    const qv_retry_policy *retry; /* the session's, or one of its own in the arena */
    uint64_t wire_id; /* a process pool's name for this attempt (0: none; its dispatcher's alone) */
    const qv_req_io *io;       /* &qv_io_none unless it sets any */
    const qv_req_calls *calls; /* &qv_calls_none unless it has any */
} qv_req;

/* The merged header lines (session's, then the request's over them by name),
 * with User-Agent; body: 0 none, 1 a raw or encoded body (gets
 * content_type, or no Content-Type at all), 2 multipart. */
int qv_header_lines(struct curl_slist **out, const qv_pair *session, const qv_pair *request,
                    const char *user_agent, int body, const char *content_type);
/* Appends the line of one header: "Name: value", "Name;" for an empty value,
 * "Name:" for NULL (libcurl then sends none, not even its own). */
int qv_header_line_add(struct curl_slist **out, const char *name, const char *value);
/* Builds r from session defaults + opts (a full-size copy, see qv_opts_copy)
 * into r's arena, which must be set up first (zeroed, or qv_arena_init_in).
 * QV_EINVAL/QV_ENOMEM/QV_EJSON. */
int qv_req_build(qv_req *r, qv_session *s, const qv_request_opts *opts);
/* The room in its arena that the copies of a request made from o (on
 * session s) take, as far as known before it is built (its strings, its
 * raw body, its records). */
size_t qv_req_room(const qv_request_opts *o, const qv_session *s);
/* Empties r (no retries, nothing set) but keeps its arena, whose first
 * chunk may be in the future's own allocation. */
void qv_req_clear(qv_req *r);
void qv_req_free(qv_req *r);
/* Copies at most sizeof(*dst) bytes of an option struct whose first member is
 * its size; QV_EINVAL if a newer caller set fields this library lacks. */
int qv_opts_copy(void *dst, size_t dst_size, const void *src);

/* ---------------------------------------------------------- futures (future.c) */

struct qv_waiter;
/* A waiter's link to one future, in the future's list of waiters (newest
 * first) while linked. */
typedef struct qv_wlink {
    qv_link link;
    struct qv_waiter *w;
    size_t idx;
} qv_wlink;

/* A thread blocked in a wait (qv_future_wait, qv_wait, qv_as_completed):
 * told of each completion under the future's lock, with notify, which ends
 * with qv_waiter_kick. */
typedef struct qv_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void (*notify)(struct qv_waiter *w, size_t idx, qv_future_state st);
    int (*ready)(struct qv_waiter *w); /* under mu: the wait is over */
    /* An executor whose transfers the blocked thread may drive (QV_LOOP's
     * leader/follower), referenced from the first link to a future of it
     * still running, until qv_waiter_destroy. */
    qv_executor *ex;
    _Atomic(CURLM *) lead_multi; /* the multi a thread of this wait drives (wait.c) */
} qv_waiter;

/* Whoever holds a future (a queue, a transfer, a process pool) registers how
 * it is told to look at it again: a cancel, or a poke (a streamed body's
 * reader made room). The holder keeps its own state in its own records. */
typedef struct qv_holder {
    /* Called under the future's lock (so it may take only the locks after
     * that one in the lock order), for a cancel (cancel: 1, with
     * cancel_requested set) or a poke (0). Returns 1 if, on a cancel, the
     * holder let f go before it started: the canceller completes it (and the
     * registration ends); QV_LET_GO_AT_BEGIN if it will once the worker that
     * took f has begun it (the canceller waits that moment); else 0 (the
     * holder sees cancel_requested and ends f itself). */
    int (*fn)(qv_future *f, void *arg, int cancel);
    void *arg;
    /* The stat that counts f while it runs held so (NULL: its executor's
     * in_flight): a process pool counts a future it holds for a worker as
     * waiting. */
    atomic_size_t *count;
    int waiting; /* f waits here for an attempt to start (queued or held) */
} qv_holder;
/* A future's copy of its holder's registration, but `waiting` (a byte of
 * the future's, holder_waits: 8 bytes less in every future). */
typedef struct qv_held {
    int (*fn)(qv_future *f, void *arg, int cancel);
    void *arg;
    atomic_size_t *count;
} qv_held;

/* What a future tells the executor that runs it besides its holder's cancel
 * and poke: set with f->ex at submit, from the executor's kind (NULL:
 * nothing to tell). The runner keeps its own state about the future in the
 * future's runner_bits, which the future never reads. */
typedef struct qv_runner {
    /* Under f->lock, so it takes no lock (a worker takes a future's lock
     * under its executor's): someone waits for f, or may (want: 1: a wait,
     * a poll, a waiter link, a done callback), or whether f waits to start
     * may have changed (0: its begin, a new holder, its completion). 1 if
     * `urge` must be called after the unlock (what it needs for that, f's
     * completion meanwhile does not take away). */
    int (*look)(qv_future *f, int want);
    void (*urge)(qv_future *f);
    /* Under f->lock: f finished with a response that no done callback or
     * waiter takes as it comes: it waits for its collector. */
    void (*finished)(qv_future *f);
    /* No lock held: f's result was taken (a wait returned it, a callback or
     * waiter added done took it) or the caller let f go; maybe more than
     * once. */
    void (*collected)(qv_future *f);
    /* Under f->lock, f not done, from a thread of the caller's about to
     * sleep in qv_future_wait until f completes or deadline (NULL: none)
     * passes: the runner may have this thread work for f instead, letting
     * f->lock go meanwhile (as a condition variable's wait does) and taking
     * it again before it returns. 1 if it waited as long as it could (f is
     * done, or the deadline passed), 0 if the caller still sleeps. */
    int (*wait)(qv_future *f, const struct timespec *deadline);
    /* No lock held, f just completed (its sleepers woken, its executor
     * still alive): a thread may wait for that elsewhere than on f, as a
     * runner's wait (QV_THREADS: for a worker's decision to lend). */
    void (*ended)(qv_future *f);
    /* Under f->lock, f not done: waiter w was linked to f (wait.c); the
     * runner may set w->ex (with a reference), whose transfers w's blocked
     * thread then drives. */
    void (*linked)(qv_future *f, qv_waiter *w);
} qv_runner;

typedef struct qv_cb {
    qv_done_fn fn;
    void *arg;
    struct qv_cb *next;
} qv_cb;

struct qv_future {
    unsigned magic; /* QV_MAGIC_FUTURE */
    /* The caller's references (qv_request's, qv_future_ref's, qv_cq_pop's),
     * apart from quiver's own: one release too many is caught for sure. */
    atomic_int user_refs;
    atomic_int refs;
    atomic_int cancel_requested;
    qv_lock lock;      /* the state machine's fields (docs/internals.md, Locks) */
    qv_signal changed; /* a terminal state, a begin after a pop, an inline completion */
    /* Bytes, each its own memory location: the lock each is under differs. */
    unsigned char state;            /* qv_future_state */
    unsigned char popped;           /* taken off the queue, not yet begun (QV_POPPED*) */
    unsigned char qwhere;           /* which of the executor's lists holds it (QV_Q_*) */
    unsigned char streamed;         /* set by the transfer's thread, for itself (stream = 1) */
    unsigned char out_unrepeatable; /* body bytes went to output_fd/on_data, or on_upload
                                       produced some: no retry can take them back */
    unsigned char holder_waits;     /* its holder's `waiting`, under the lock with `holder` */
    atomic_uchar runner_bits;       /* its runner's (never read here) */
    /* The status line's code if the last attempt's transfer failed after
     * it (qv_future_error_status), else 0; written with out_err. */
    unsigned short out_status;
    int error;
    int attempts;         /* transfers started */
    atomic_int host_held; /* counted in its host's requests in flight (here for its alignment) */
    char *errmsg;
    qv_response *resp;
    void *user_data;
    /* Inline: most futures have at most one callback. Set under the lock;
     * atomic, as qv_future_has_callbacks reads it without the lock. */
    _Atomic(qv_done_fn) first_fn;
    void *first_arg;
    qv_cb *more_cbs;
    qv_list waiters;     /* of qv_wlink */
    qv_held holder;      /* who holds it now, and how it is told of a cancel */
    qv_session *session; /* until completion */
    qv_executor *ex;
    const qv_runner *runner; /* what it tells ex (NULL: nothing) */
    /* The executor's node, in one of its lists at a time: its queue (the
     * ready list, a host's parked list), a process pool's held list. Outside
     * those its next pointer serves singly linked lists: the lock-free
     * inbox; on QV_LOOP, one of the delivery lists (qv_future_of gives a
     * node's future). */
    qv_link q;
    size_t ridx;          /* its place in the executor's retry heap */
    double due_ms;        /* when a waiting retry may go */
    struct qv_host *host; /* parked on, or counted by, this host's limits */
    qv_link slink;        /* in its session's live futures */
    double submitted_ms, started_ms;
    /* The transfer's outcome, collected on the I/O side and delivered
     * (hooks, completion) possibly on another thread. */
    qv_response *out_resp;
    char *out_msg;
    int out_err;
    /* stream = 1: the response goes out with its headers while its body
     * still comes. stream_open counts what still holds the future in its
     * session (the early delivery, the transfer). */
    atomic_int stream_open;
    int out_conns; /* connections the transfer opened (an outcome field, here for its alignment) */
    /* -1, or an eventfd a cancel writes (under lock) for a wait besides its
     * holder's (a QV_LOOP pump's write waiting for its reader's room, on a
     * delivery thread the transfer's holder does not know): set and
     * cleared under lock by the one that waits. */
    int cancel_fd;
    qv_req req;
};

/* A new future with one reference, the caller's (user_refs 1), and room
 * for `room` bytes of its request's copies in the same allocation. */
qv_future *qv_future_alloc(size_t room);
/* quiver's own references (a queue's, a waiter's): not the caller's. */
qv_future *qv_future_hold(qv_future *f);
void qv_future_drop(qv_future *f);
/* 1 if f is in a terminal state. Unlike qv_future_done, no one is taken
 * to wait for f (so no executor is urged): for quiver's own looks. */
int qv_future_ended(qv_future *f);
/* The same, f->lock held (a runner's wait). */
int qv_future_ended_locked(qv_future *f);
/* One of quiver's references becomes the caller's (qv_cq_pop). */
void qv_future_hand_over(qv_future *f);
/* Moves a waiting future (PENDING, or RUNNING between attempts) to its
 * next attempt under h, and counts the attempt; 0 if it was cancelled
 * meanwhile (then nothing changes, and the cancel completed it or is
 * completing it: the caller only drops the queue's reference). */
int qv_future_begin(qv_future *f, const qv_holder *h);
/* h holds f from now on (NULL: no one, as a transfer ends); 0 if a cancel
 * was asked for already (then, unless h is NULL, nothing changes: the
 * caller ends f itself). */
int qv_future_hold_by(qv_future *f, const qv_holder *h);
/* to holds f from now on if from (its fn and arg) still does: 1. Else 0:
 * a cancel took f from `from` (and completed it), or another holds it. */
int qv_future_rehold(qv_future *f, const qv_holder *from, const qv_holder *to);
/* Waits for an attempt (its holder says so), or PENDING: what
 * close(cancel_pending) cancels. */
int qv_future_waiting(qv_future *f);
/* 1 if a thread sleeps in qv_future_wait on f (not done). */
int qv_future_slept_on(qv_future *f);
/* 1 if a waiter (wait.c) is linked to f now. */
int qv_future_waited(qv_future *f);
/* 1 if a done callback was added to f by now. Without f's lock (a look
 * under an executor's lock, which is never held while a future's is
 * taken): one added meanwhile is not seen. */
int qv_future_has_callbacks(qv_future *f);
/* Tells f's holder to look at it again (a streamed body's reader). */
void qv_future_poke(qv_future *f);
/* Stops the transfer of f's streamed body (its reader let go). */
void qv_future_abandon_stream(qv_future *f);
/* f just completed with a streamed body: stops it if no one will read it
 * (the caller let go, or the session is closing). */
void qv_stream_opened(qv_future *f);
/* Lets go of one of a streamed future's holds (stream_open): the early
 * delivery's, the transfer's; with the last, the session lets it go. */
void qv_stream_release(qv_future *f);
/* Set in a process worker: what becomes of a streamed response's headers
 * there (sent to the parent). 0, or -1 to stop the transfer. */
struct qv_slot;
extern int (*qv_stream_head_hook)(struct qv_slot *slot, qv_response *r);
/* Transfer over: the waker must no longer be used. */
void qv_future_end_transfer(qv_future *f);
/* The one terminal transition. Takes ownership of msg and resp. A pending
 * cancel turns any outcome into CANCELLED. Its done callbacks run here. */
void qv_future_complete(qv_future *f, qv_future_state st, int err, char *msg, qv_response *resp);
/* The same, but for the done callbacks: 1 if f has some, which the caller
 * runs with qv_future_finish (where user code may run, and holding no lock
 * of quiver's); 0 if none (then f is all done, without user code). */
int qv_future_settle(qv_future *f, qv_future_state st, int err, char *msg, qv_response *resp);
void qv_future_finish(qv_future *f);
void qv_future_fail(qv_future *f, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "<text> (<METHOD> <URL>)", the URL without its userinfo. */
char *qv_future_note(qv_future *f, const char *text);
/* "<kind>: <detail> (<METHOD> <URL>)", the message of a failed future. */
char *qv_future_message(qv_future *f, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void qv_waiter_link(qv_future *f, qv_wlink *l, qv_waiter *w, size_t idx);
void qv_waiter_unlink(qv_future *f, qv_wlink *l);

/* ------------------------------------------------------------- waits (wait.c) */

int qv_waiter_init(qv_waiter *w, void (*notify)(qv_waiter *, size_t, qv_future_state),
                   int (*ready)(qv_waiter *));
void qv_waiter_destroy(qv_waiter *w);
/* qv_wait with a deadline (NULL: none) for a caller that has one already
 * (qv_future_wait: one clock read a wait, not two). */
int qv_wait_until(qv_future *const *fs, size_t n, qv_wait_mode mode,
                  const struct timespec *deadline);
/* Blocks (nothing held) until w is ready or the deadline (NULL: none)
 * passes, driving w->ex's transfers meanwhile if it can; 1 if ready. */
int qv_waiter_block(qv_waiter *w, const struct timespec *deadline);
/* Under w->mu, at the end of a notify: wakes the threads blocked on w (a
 * thread driving a multi for w through its poll, unless that is this one). */
void qv_waiter_kick(qv_waiter *w);
/* This thread drives multi for w from now on (w->mu not held); returns
 * the wait it drove for before (a nested wait), for qv_waiter_unlead. */
qv_waiter *qv_waiter_lead(qv_waiter *w, CURLM *multi);
void qv_waiter_unlead(qv_waiter *w, qv_waiter *before);

/* ---------------------------------------------------------- session (session.c) */

typedef struct qv_share qv_share; /* jar.c */

struct qv_session {
    unsigned magic; /* QV_MAGIC_SESSION */
    qv_arena arena; /* copied defaults */
    qv_executor *ex;
    int owns_ex;
    qv_session_opts o; /* strings and arrays point into arena */
    qv_share *share;
    struct curl_slist *default_headers; /* the lines of a request with none of its own */
    int default_lines_plain;            /* with no Cookie or Proxy-Authorization line */
    qv_retry_policy retry;
    CURL *jar_easy; /* reads and writes the jar (jar.c), under jar_mu */
    pthread_mutex_t jar_mu;
    /* Names the jar's content, unique across sessions: every change made
     * through jar.c draws a new one, so a process pool sends a worker the
     * jar only when it holds another. Changes by libcurl's own cookie engine
     * (threads, loop) draw none: the jar of a process pool's session changes
     * only through jar.c, its transfers run in the workers. */
    _Atomic uint64_t jar_version;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    qv_list live; /* futures not yet completed, newest first */
    size_t nlive;
    int closed;
    /* Cookies set without a domain: each host the session talks to gets
     * them in the jar (once) as if it had set them itself. Under mu. */
    qv_hdr *anyhost;
    size_t nanyhost;
    atomic_int anyhost_set; /* nanyhost > 0 (never drops): a request asks no lock before */
    char **seeded;
    size_t nseeded;
};

/* Called once per future after its callbacks ran; the session may be freed
 * right after, so the future must not touch it again. */
void qv_session_future_done(qv_session *s, qv_future *f);
/* qv_session_close has begun. */
int qv_session_closing(qv_session *s);
/* A closed session with a jar and nothing else: what a process worker hands
 * to hooks and transfers. */
qv_session *qv_session_stub_new(void);
void qv_session_stub_free(qv_session *s);

/* ------------------------------------------------------------ cookie jar (jar.c) */

/* A session's libcurl share (its jar and DNS cache) with its locks,
 * counted: a transfer slot keeps the share of its last request attached
 * while idle (attaching one costs two lock pairs a request), and holds a
 * reference for it, so a share may outlive its session. */
struct qv_share {
    CURLSH *sh;
    atomic_int refs;
    pthread_mutex_t mu[CURL_LOCK_DATA_LAST];
};
qv_share *qv_share_hold(qv_share *sh);
/* Lets go of a reference (NULL: none); the last frees the share, which no
 * easy handle may have attached any more. */
void qv_share_drop(qv_share *sh);

/* s's share with its locks, and a jar version no jar had before: QV_OK or
 * QV_ENOMEM (free with qv_session_jar_free even then). */
int qv_session_jar_new(qv_session *s);
/* The session's reference to the share, the jar's handle and the any-host
 * cookies. */
void qv_session_jar_free(qv_session *s);
/* Puts the any-host cookies in the jar for host, the first time it is seen
 * (easy must be attached to the session's share). */
int qv_session_seed_cookies(qv_session *s, CURL *easy, const char *host);
/* The jar as Netscape lines (libcurl's list: curl_slist_free_all), after
 * seeding the any-host cookies for host (may be NULL). *version: the jar
 * version the caller holds (0: none); if the jar is still at it, *out is
 * NULL and nothing is exported, else *version becomes that of *out. With
 * out NULL, nothing is exported either way: *version becomes the jar's. */
int qv_session_jar_export(qv_session *s, const char *host, uint64_t *version,
                          struct curl_slist **out);
/* Applies a worker's jar: lines new or changed since `before` are set, cookies
 * that are gone are expired. *version: that of `before`; it becomes the
 * jar's version after, if the jar was at it (the jar then holds `after`),
 * else 0. */
int qv_session_jar_merge(qv_session *s, const struct curl_slist *before,
                         const struct curl_slist *after, uint64_t *version);
/* Empties the jar, then loads lines. */
int qv_session_jar_replace(qv_session *s, const struct curl_slist *lines);

/* -------------------------------------------------------- cookie files (cookiefile.c) */

/* The cookie lines of a Netscape cookie file (*out NULL for a missing or
 * empty one): QV_OK, QV_EIO, QV_EINVAL (both with qv_last_error set) or
 * QV_ENOMEM. */
int qv_cookie_file_read(const char *path, struct curl_slist **out);
/* Whether a Netscape line's expiry (field 4; 0: a session cookie) is
 * before now: the jar lists such a cookie until its next send drops it. */
int qv_cookie_line_expired(const char *line, time_t now);
/* Loads a cookie file into the jar of a new session (same codes). */
int qv_session_load_cookie_file(qv_session *s, const char *path);

/* ------------------------------------------- response blocks kept (bodies.c) */

/* The body buffers an executor keeps for its next responses: at most two
 * per transfer it runs at once (QV_THREADS: one per response it may hold at
 * once) and QV_BODIES_COUNT, QV_BODIES_BYTES in all, each of
 * QV_BODIES_SMALLEST bytes to QV_BODY_PRESIZE_MAX (and the NUL). */
#define QV_BODIES_COUNT    256
#define QV_BODIES_BYTES    ((size_t)16 << 20)
#define QV_BODIES_SMALLEST ((size_t)4096)
/* Every QV_BODIES_INTERVAL takes, one block none of them reached (if the
 * fewest kept at once were any) is freed: what is kept follows recent use. */
#define QV_BODIES_INTERVAL 256
typedef struct qv_bodies qv_bodies;
/* Keeps at most `most` blocks and shells (and QV_BODIES_COUNT);
 * free_shell ends the shells still kept when b is closed. */
qv_bodies *qv_bodies_new(size_t most, void (*free_shell)(void *));
/* Changes that bound (an executor whose bound on responses in its hands
 * is known only after qv_executor_init). */
void qv_bodies_keep_most(qv_bodies *b, size_t most);
/* The executor's end: the kept buffers are freed, and so will be the bodies
 * given back from now on; b itself goes with the last of them. */
void qv_bodies_close(qv_bodies *b);
/* A reference for each response whose blocks go back to b (qv_response_new_in,
 * qv_response_body_room), dropped when it is freed: b outlives its executor
 * while a response holds one. */
void qv_bodies_hold(qv_bodies *b);
void qv_bodies_drop(qv_bodies *b);
/* body (empty, no block yet) gets a kept block of `need` bytes or more if
 * one fits (1), else nothing (0); each call counts towards the interval
 * whose idle blocks are freed (QV_BODIES_INTERVAL). */
int qv_bodies_take(qv_bodies *b, qv_buf *body, size_t need);
/* Keeps body's block if it is within the bounds, else frees it; any thread. */
void qv_bodies_give(qv_bodies *b, qv_buf *body);
/* A kept response shell (qv_response_new_in makes it a response), or NULL. */
qv_response *qv_bodies_take_shell(qv_bodies *b);
/* Keeps r's shell (1) or not (0: the caller frees it). */
int qv_bodies_keep_shell(qv_bodies *b, qv_response *r);
/* How many blocks b keeps now, and (bytes) how many bytes they are. */
size_t qv_bodies_kept(qv_bodies *b, size_t *bytes);
/* A response body's block: qv_buf_grow and qv_buf_free for bodies, whose
 * blocks of QV_BODY_MAPPED bytes and more are pages of their own (mmap), in
 * no malloc arena, unless the program plugged in its allocator. Once grown
 * here, qv_body_append of those n bytes finds the room and moves nothing. */
#define QV_BODY_MAPPED ((size_t)32 << 10)
int qv_body_grow(qv_buf *body, size_t n, size_t most);
/* Appends n bytes and the NUL to a body, growing it by qv_body_grow (to no
 * more than most + 1 bytes when it doubles): the NUL of a body of whole
 * pages does not dirty a page of its own. */
int qv_body_append(qv_buf *body, const void *p, size_t n, size_t most);
void qv_body_free(qv_buf *body);

/* --------------------------------------------------------- response (response.c) */

struct qv_response {
    int status;
    int attempts;
    char *reason; /* reason and url: in headers.strings (qv_response_strndup) */
    qv_headers headers;
    qv_buf body;
    char *url;
    qv_response **history;
    size_t nhistory;
    double elapsed_ms;
    qv_timing timing;
    int http_version;
    pthread_mutex_t json_mu;
    int json_parsed;
    struct json_t *json;
    char *json_err;
    void *result;
    void (*result_free)(void *);
    unsigned char *result_bytes; /* qv_response_set_result_bytes: a copy */
    size_t result_len;
    int result_refused; /* qv_response_set_result was called in a worker process */
    char *hook_error;
    long long body_bytes; /* streamed elsewhere (sink.c); -1: the body is in memory */
    /* The cookies its Set-Cookie headers set (response_cookies.c), read on
     * first use under json_mu; a deleted one's value is NULL. */
    qv_hdr *cookies;
    size_t ncookies;
    int cookies_read;
    qv_pipe *pipe;  /* stream = 1: the body, as it comes (pipe.c) */
    size_t read_at; /* qv_response_read of a body in memory: bytes read */
    const char *read_error;
    qv_bodies *bodies; /* the executor's buffers the body goes back to, or NULL */
};

/* 1 in a process pool's worker: a pointer result cannot reach the caller. */
extern int qv_in_worker_process;
/* Why a hook that set a pointer result in a worker process fails. */
#define QV_RESULT_REFUSED                                                                          \
    "qv_response_set_result: a pointer cannot leave a QV_PROCESSES worker process; attach "        \
    "the result with qv_response_set_result_bytes"

qv_response *qv_response_new(void);
/* A response whose blocks go back to b (may be NULL) when it is freed: on a
 * shell b kept when there is one. */
qv_response *qv_response_new_in(qv_bodies *b);
void qv_response_free(qv_response *r);
/* The end of a shell qv_bodies_keep_shell kept (qv_bodies_new's free_shell). */
void qv_response_shell_free(void *shell);
/* Moves r's status line, headers and URL into a new history entry of r. */
int qv_response_push_history(qv_response *r);
void qv_response_reset_hop(qv_response *r);
/* Room for n body bytes (and the NUL) in one block, taken from the
 * executor's kept buffers (b, may be NULL) when one fits. */
int qv_response_body_room(qv_response *r, qv_bodies *b, size_t n);
/* A copy for the current hop's reason or url: it goes with the hop's headers. */
char *qv_response_strndup(qv_response *r, const char *s, size_t n);
/* The same for a URL, without its userinfo: a response never shows a password. */
char *qv_response_url_copy(qv_response *r, const char *url);

/* ---------------------------------- response cookies (response_cookies.c) */

void qv_response_cookies_free(qv_response *r);

/* ----------------------------------------------------------------- wire (wire.c) */

/* Frame types: a request (to a worker), a cancel of it (to the worker), the
 * worker starting the hooks, and the response (from the worker), or the
 * response of a worker that took its next request from its mailbox before
 * it answered (see executor_procs.c). */
enum {
    QV_WIRE_REQUEST = 1,
    QV_WIRE_CANCEL,
    QV_WIRE_HOOKS,
    QV_WIRE_RESPONSE,
    QV_WIRE_RESPONSE_TOOK,
    QV_WIRE_DEBUG,       /* a debug trace event, from the worker during the transfer */
    QV_WIRE_RING,        /* body bytes came into the worker's ring (from the worker, see ring.c) */
    QV_WIRE_PROGRESS,    /* for the parent's on_progress (from the worker) */
    QV_WIRE_HEAD,        /* a streamed response's headers (from the worker); its body follows */
    QV_WIRE_UPLOAD_WANT, /* on_upload: the worker's read callback wants bytes */
    QV_WIRE_UPLOAD,      /* on_upload's answer (to the worker): bytes, the end or an error */
    QV_WIRE_ROOM         /* the parent acted on the answers the worker waits for (to the worker) */
};
/* What a request tells its worker of its body's ways (wire.c). */
enum {
    QV_SINK_KEEP = 1,     /* keep_partial */
    QV_SINK_RESUME = 2,   /* resume */
    QV_SINK_DATA = 4,     /* the body goes to the parent through the worker's ring */
    QV_SINK_PROGRESS = 8, /* progress goes to the parent in progress frames */
    QV_SINK_STREAM = 16,  /* stream = 1: the headers go first, in a head frame */
    QV_SINK_UPLOAD = 32,  /* on_upload: the body comes from the parent in upload frames */
    QV_SINK_FD = 64,      /* output_fd: the descriptor comes along with the frame (SCM_RIGHTS) */
};
/* A frame of a type alone, no fields (RING, ROOM). */
int qv_wire_encode_bare(qv_buf *b, int type);
/* on_upload on a process pool: the worker asks for up to cap bytes of the
 * request named id, to be put at offset at of its ring's upload area; the
 * parent puts them there and answers with what on_upload returned (got:
 * bytes, 0 at the end, -1 for an error). */
int qv_wire_encode_upload_want(qv_buf *b, uint64_t id, size_t cap, size_t at);
int qv_wire_decode_upload_want(const unsigned char *p, size_t len, uint64_t *id, size_t *cap,
                               size_t *at);
int qv_wire_encode_upload(qv_buf *b, uint64_t id, long got);
/* The most a worker asks on_upload for at once: each piece costs a round
 * trip and a wake-up on both sides, so it is large (4x fewer than 256 KiB
 * took 10-14% off the CPU per GiB; bench/NOTES.md). */
#define QV_UPLOAD_PIECE ((size_t)1 << 20)
int qv_wire_decode_upload(const unsigned char *p, size_t len, uint64_t *id, long *got);
int qv_wire_encode_progress(qv_buf *b, const long long v[4]);
int qv_wire_decode_progress(const unsigned char *p, size_t len, long long v[4]);
#define QV_WIRE_VERSION 2
#define QV_WIRE_HEADER  12
#define QV_WIRE_MAX     ((size_t)1 << 30) /* the largest frame: a 1 GiB body */

/* b gets a frame header (length patched by frame_end) and fields. */
int qv_wire_frame_begin(qv_buf *b, int type);
int qv_wire_frame_end(qv_buf *b);
/* Checks a frame header: QV_OK with type and payload length, or QV_EPROTOCOL. */
int qv_wire_parse_header(const unsigned char *h, int *type, size_t *len);
int qv_wire_put(qv_buf *b, unsigned tag, const void *p, size_t n);
/* Gives the frame in b another type (b holds a whole frame). */
void qv_wire_frame_retype(qv_buf *b, int type);
/* A cancel of the attempt the pool named id (> 0), and its reading. */
int qv_wire_encode_cancel(qv_buf *b, uint64_t id);
int qv_wire_decode_cancel(const unsigned char *p, size_t len, uint64_t *id);
/* f's request (merged, as built at submit, with its wire_id) as its attempt
 * number `attempt` (1 for the first), its hooks and the jar to send;
 * jar_kept instead: the worker's jar is the session's already. */
int qv_wire_encode_request(qv_buf *b, const qv_future *f, int attempt, const struct curl_slist *jar,
                           int jar_kept);
/* Into r (zeroed first; free with qv_req_free even on error), the hooks
 * (in r's arena, ending with {0}) and the jar lines (caller frees), or
 * *jar_kept = 1: keep the jar. */
int qv_wire_decode_request(const unsigned char *p, size_t len, qv_req *r, int *attempt,
                           qv_hook **hooks, struct curl_slist **jar, int *jar_kept,
                           int *sink_flags);
/* What a worker's answer says of its jar instead of sending it: the
 * transfer left it as it came, or the worker could not load the one it was
 * sent, so the next request to it must carry the whole jar. */
enum { QV_JAR_KEPT = 1, QV_JAR_UNKNOWN = 2 };
/* A debug event, and its reading (data points into p). */
int qv_wire_encode_debug(qv_buf *b, qv_debug_kind kind, const char *data, size_t len);
int qv_wire_decode_debug(const unsigned char *p, size_t len, qv_debug_kind *kind, const char **data,
                         size_t *n);
/* f's collected outcome (out_resp, or out_err/out_msg), the wait before
 * its retry (retry_ms >= 0: the attempt is to be retried), and the jar
 * after, or jar_kept (QV_JAR_KEPT or QV_JAR_UNKNOWN) instead. */
int qv_wire_encode_response(qv_buf *b, const qv_future *f, double retry_ms,
                            const struct curl_slist *jar, int jar_kept);
/* A worker's answer: QV_OK with either *out (a response) or *err, *msg
 * and *err_status (the transfer's error; out_status), the jar lines or *jar_kept (0 or a QV_JAR_*
 * value), the connections it opened and the wait before a retry (-1: the
 * outcome is final, hooks ran); or
 * QV_EPROTOCOL/QV_ENOMEM if the frame is malformed (nothing is returned then).
 * The body's block comes from bodies (may be NULL) when one fits. */
int qv_wire_decode_response(qv_bodies *bodies, const unsigned char *p, size_t len,
                            qv_response **out, int *err, char **msg, int *err_status,
                            struct curl_slist **jar, int *jar_kept, long *conns, double *retry_ms);

/* ------------------------------------------------------- frame I/O (frames.c) */

/* Whole writes on a blocking socket: QV_OK or QV_EIO. */
int qv_fd_write_all(int fd, const void *p, size_t n);
/* The same on a unix socket, with descriptor `pass` (> 0; 0: none) sent
 * along with the first bytes (SCM_RIGHTS). */
int qv_fd_write_passing(int fd, const void *p, size_t n, int pass);
/* One sendmsg of p with nfds (1 to QV_SEND_FDS_MAX) descriptors along:
 * what it sent, or -1. */
#define QV_SEND_FDS_MAX 3
ssize_t qv_send_fds(int fd, const void *p, size_t n, const int *fds, int nfds);
/* Frames from one socket, read as many bytes at a time as have come, so a
 * frame's header and payload usually cost one read. Bytes past the frame
 * stay for the next; poll cannot see them (qv_frame_buffered can). */
typedef struct qv_frame_reader {
    qv_buf buf;   /* bytes read; those before `start` are handed out */
    size_t start; /* where the frame after the last one handed out begins */
    /* A descriptor sent along with the bytes (SCM_RIGHTS) is kept in
     * `passed` (has_passed) if keep_fds (a worker's reader: output_fd),
     * and closed otherwise. It belongs to the frame whose bytes the read
     * that brought it ended in (it came with that frame's first bytes, and
     * a read stops after them): `passed_end` is where that read ended in
     * buf. Not taken by the time its frame is done with, it is closed. */
    int keep_fds, has_passed, passed;
    size_t passed_end;
} qv_frame_reader;
/* The descriptor that came with the frame handed out last (the caller's
 * now), or -1. */
int qv_frame_take_fd(qv_frame_reader *rd);
/* One frame: its type and payload (in rd, valid until the next call).
 * QV_EIO (closed), QV_EPROTOCOL (bad header) or QV_ENOMEM. */
int qv_frame_read(qv_frame_reader *rd, int fd, int *type, const unsigned char **payload,
                  size_t *len);
/* Gives back the frame qv_frame_read handed out last: the next call hands
 * it out again. */
void qv_frame_unread(qv_frame_reader *rd);
/* 1 if a whole frame (or a malformed header) is read already: the next
 * qv_frame_read needs no read. */
int qv_frame_buffered(const qv_frame_reader *rd);

/* --------------------------------------------------------- transfer (transfer.c) */

typedef enum qv_abort {
    QV_ABORT_NONE = 0,
    QV_ABORT_CANCEL,
    QV_ABORT_READ_TIMEOUT,
    QV_ABORT_TOO_LARGE,
    QV_ABORT_NOMEM,
    QV_ABORT_DIRTY,      /* a reused connection had unread bytes: retry on a new one */
    QV_ABORT_PROXY_AUTH, /* the response is a proxy's 407 */
    QV_ABORT_IO,         /* writing the body to its file or descriptor failed */
    QV_ABORT_HOOK,       /* on_data or on_upload said stop */
    QV_ABORT_RANGE,      /* a resumed download's answer does not start where the file ends */
    QV_ABORT_CLOSED,     /* a streamed body's reader let go */
    QV_ABORT_TIMEOUT     /* the total timeout passed while libcurl could not see it */
} qv_abort;

/* The most room a response's Content-Length reserves at once (a hostile one
 * must not allocate much); a body beyond grows as it comes. */
#define QV_BODY_PRESIZE_MAX ((size_t)1 << 20)

/* Where this attempt's body goes when not in memory (sink.c). */
typedef struct qv_sink {
    int fd;                /* our file (output_path), -1 if none */
    char *tmp;             /* its temporary name, renamed into place on success */
    int in_place;          /* ... or none: a FIFO, a device, written where it is */
    int empty_first;       /* in place, a regular file: emptied at the body's first byte */
    long long written;     /* bytes of the final response's body passed on */
    long long offset;      /* resuming: the file's size when the attempt began */
    int hop;               /* this hop's body: 0 undecided, 1 to the sink, -1 in memory */
    int streamed;          /* the final response's body went to the sink */
    int started;           /* its first bytes were seen */
    int challenged;        /* a digest auth challenge was answered */
    long long range_start; /* resuming: where the 206 answer started */
    int err;               /* errno of a failed file operation */
    const char *io_path;   /* the file it concerns (NULL: output_fd) */
    int io_reading;        /* it was upload_path, being read */
    int direct;            /* how its descriptor is written without waiting: QV_DIRECT_* */
    int direct_fd;         /* what that writes to: output_fd, or our non-blocking open of it */
    int direct_known;      /* direct was asked (qv_sink_direct_begin): by a loop's pump, or a
                            * first write (qv_sink_write) */
    int timed;             /* on_data on QV_LOOP's thread: each call is timed (qv_sink_push) */
    int slow;              /* ... and one took over QV_ON_DATA_BUDGET_MS: the rest is pumped */
    double mark_ms;        /* when the thread's counts below were read (0: never) */
    double call_end_ms;    /* when the last call returned */
    double mark_cpu_ms;    /* its CPU time then */
    long mark_waits;       /* its voluntary context switches then */
    long mark_preempted;   /* its involuntary ones */
} qv_sink;

/* How long one on_data call may hold up a QV_LOOP's other transfers: past
 * it, the rest of its body goes to a pump on a delivery thread (pump.c).
 * A 16 KiB chunk takes the loop ~10-20 us to receive, so 2 ms is ~100x. */
#define QV_ON_DATA_BUDGET_MS 2.0
/* The thread's counts are read again before a call (qv_sink_push) once
 * they are this old, or after a gap this long since the last call (a
 * pass of the loop, which may have slept): not per 16 KiB call. */
#define QV_ON_DATA_MARK_MS 0.5
#define QV_ON_DATA_GAP_MS  0.02

/* How a descriptor is written without waiting (qv_sink_nonblocking): by
 * the transfer's thread (a loop's, while its pump is idle; a worker's, in
 * qv_sink_write) and by a loop's pump. SHARED: a pipe for which no open of
 * its own could be made (OWN's), written through the caller's descriptor,
 * PIPE_BUF bytes at most once poll finds room. */
enum { QV_DIRECT_NONE, QV_DIRECT_WRITE, QV_DIRECT_SEND, QV_DIRECT_OWN, QV_DIRECT_SHARED };

/* A streamed download is received in pieces as large as curl's tool reads
 * (libcurl still calls write_cb with at most 16 KiB at a time): a sixth of
 * the recv calls. Only for these: libcurl allocates the buffer for each
 * transfer, and a small response would not fill it. (libcurl 7.88 takes
 * the option on a handle that has made transfers; the reset that follows a
 * special request puts back its default.) */
#define QV_RECV_BUFFER (100L << 10)

/* A streamed body received in batches (rcvlowat.c). */
typedef struct qv_lowat {
    curl_socket_t fd; /* the hop's plain-HTTP connection (conncheck.c), or CURL_SOCKET_BAD */
    int driven;       /* by qv_transfer_drive, whose polls qv_lowat_poll_ms caps */
    int set;          /* SO_RCVLOWAT as set on fd (0: never, the default 1) */
    dev_t dev;        /* fd's socket, as fstat knew it when a mark first went up */
    ino_t ino;        /* (0: not yet) */
    int state;        /* this hop: 0 not yet looked at, 1 batched, -1 not */
    long long left;   /* its body bytes still to come */
    size_t round;     /* body bytes received since the last poll */
} qv_lowat;

/* One reusable transfer slot: an easy handle and the state of its transfer. */
typedef struct qv_slot {
    CURL *easy;
    qv_future *f;
    qv_response *resp;
    qv_share *share; /* the share attached to easy, held (transfer.c) */
    struct curl_slist *resolved_headers;
    struct curl_slist *attempt_headers; /* the lines an on_request hook changed (owned) */
    /* Redirects quiver follows itself (redirect.c): */
    struct curl_slist *hop_headers; /* the lines of this hop, when not the request's (owned) */
    const char *hop_method;         /* the method of this hop */
    int self_follow;                /* redirects are followed by redirect.c, not libcurl */
    int hops;                       /* redirects followed so far */
    int left_origin;                /* a hop went to another scheme, host or port */
    int body_dropped;               /* a hop went without the request's body */
    curl_off_t prior_us;            /* the time of the hops before this one */
    long prior_conns;               /* connections they opened */
    curl_mime *mime;
    double last_activity_ms; /* qv_now_ms: the read timeout's last stamp */
    int heard;               /* bytes came since a read-timeout check last looked */
    curl_off_t last_upload;
    int read_clock; /* a read-timeout check has seen the request sent */
    int *unclocked; /* QV_LOOP's count of read clocks not started (NULL: not a loop's) */
    qv_abort abort;
    int in_headers;          /* between a status line and its blank line */
    int hop_version;         /* the last status line's HTTP version: 10, 11, 20, 30; 0 unknown */
    int set_cookies;         /* Set-Cookie lines seen: the jar may have changed */
    int body_sized;          /* this hop's body has had its room (transfer.c) */
    int active_idx;          /* where an executor keeps it while it runs */
    long alloc_failures;     /* qv_alloc_failures when the transfer started */
    curl_socket_t opened_fd; /* a socket this transfer opened, until registered */
    struct qv_connlook *connlook; /* QV_LOOP's look at its connections (NULL: not a loop's) */
    curl_socket_t conn_fd;        /* the plain-HTTP connection its last request went on */
    CURL *configured;             /* easy, once its lifelong options are set (transfer.c) */
    int dirty;                    /* easy has options of a special request: reset first */
    int ca_set;                   /* easy has a CA file set */
    /* The per-request options as last set on easy, so that only those that
     * differ are set again (transfer.c); not `known` after a reset. */
    struct {
        int known;
        const struct curl_slist *headers;
        long pipewait, timeout_ms, connect_timeout_ms, follow, max_redirects, verbose;
        curl_off_t max_filesize;
        char *ca_file; /* (a copy, owned) */
    } last;
    /* Network settings on easy (network.c): their CONNECT_TO lines, and
     * what they are (net_sig, if net_set; net_next: the next request's). */
    struct curl_slist *connect_to;
    qv_buf net_sig, net_next;
    int net_set;
    /* The last URL set on easy (owned), and once a request repeats it, that
     * URL parsed, set as CURLOPT_CURLU (transfer.c); or url_refused: the
     * parse refused it (libcurl's own will say why, each time) */
    char *url;
    CURLU *url_parsed;
    int url_refused;
    qv_sink sink;
    qv_lowat lowat;
    qv_pipe *pipe;   /* stream = 1, once the headers went out; or the pump's */
    qv_pump *pump;   /* the transfer's pump (pump.c), for its executor to end */
    char *abort_msg; /* QV_ABORT_HOOK: a hook's message (a process worker's) */
    /* qv_transfer_run's watch_fd and on_readable (a process worker's
     * control socket and its reader; on_readable NULL: none), which a
     * write to output_fd watches while it waits for room (qv_sink_write):
     * a cancel comes there. */
    int watch_fd;
    void (*on_readable)(struct qv_slot *slot);
    int paused;         /* the transfer waits for the reader (CURL_WRITEFUNC_PAUSE) */
    int upload_fd;      /* upload_path's file, -1 if none (upload.c) */
    int upload_waits;   /* ... a pipe with nothing in yet: sending paused (upload.c) */
    int upload_unmet;   /* ... a FIFO no writer has opened since ours (upload.c) */
    int upload_pipe;    /* ... not a regular file: read once (upload.c) */
    double progress_ms; /* when on_progress last ran */
    char errbuf[CURL_ERROR_SIZE];
    qv_buf trace_held; /* libcurl's comments held back from on_debug (debug.c) */
} qv_slot;

/* The holder of a future whose transfer runs on a private curl_multi (a
 * QV_THREADS worker's, a process worker's): a cancel or a poke wakes its
 * poll (the multi stays valid while it holds the future). */
qv_holder qv_transfer_holder(CURLM *multi);
/* A multi handle on which curl_multi_wakeup works, or NULL with
 * qv_last_error naming whose (e.g. "the loop's") and what could not be made.
 * libcurl 7.88 makes a multi without its wake-up socket pair when no
 * descriptor is left, and on it a submit or a cancel would wait for the
 * poll's timeout: so one wake-up is tried, and such a handle not kept. */
CURLM *qv_transfer_multi(const char *whose);
/* Prepares slot->easy for f (already RUNNING). On error the slot is free
 * again and the outcome is in f, to deliver. */
int qv_transfer_setup(qv_slot *slot, qv_future *f);
/* Checks cancel and the read timeout; sets slot->abort and returns 1 to
 * stop. read_by: the coarse clock (qv_coarse_ms) as the curl_multi_perform
 * this check follows began: the silence counted ends there, as bytes that
 * came during that perform may wait unread in the socket. */
int qv_transfer_should_abort(qv_slot *slot, double read_by);
/* A request of slot's transfer is about to go (libcurl's PREREQFUNCTION,
 * conncheck.c): its read clock starts again at the next check. */
void qv_transfer_request_going(qv_slot *slot);
/* Milliseconds until the read timeout would fire (for poll), capped at cap_ms. */
long qv_transfer_poll_ms(qv_slot *slot, long cap_ms);
/* Gathers the transfer's outcome into f (out_resp, or out_err + out_msg),
 * counts the connections it opened and frees the slot for the next one. */
void qv_transfer_collect(qv_slot *slot, CURLcode cc);
/* Completes f from its collected outcome: hooks then the terminal state. */
void qv_transfer_deliver(qv_future *f);
/* The same but for f's done callbacks, as qv_future_settle: 1 if the caller
 * is to run them (qv_future_finish). */
int qv_transfer_settle(qv_future *f);
/* Drives one transfer on a private multi until it ends, is cancelled or
 * times out; the result is for qv_transfer_collect. If watch_fd >= 0,
 * on_readable(slot) runs when it becomes readable (a worker's control
 * channel), between passes and while a write to output_fd waits for room
 * (slot->watch_fd). */
CURLcode qv_transfer_run(qv_slot *slot, CURLM *multi, int watch_fd, void (*on_readable)(qv_slot *));
/* The same in steps, for a transfer that may change threads: drives the
 * slot's transfer, already in multi, until it ends (1, with *cc its result
 * and the handle out of multi) or deadline (NULL: none) passes or until
 * (NULL: none) is done, looked at least every qv_until_look_ms (0: it is
 * still in multi, for any one thread at a time to drive on). */
int qv_transfer_drive(qv_slot *slot, CURLM *multi, const struct timespec *deadline,
                      qv_future *until, int watch_fd, void (*on_readable)(qv_slot *), CURLcode *cc);
/* Takes the transfer's handle out of its multi (closing the connection if
 * the transfer did not end cleanly). */
void qv_transfer_detach(qv_slot *slot, CURLM *multi);
/* Sets the URL the handle fetches next (a request's, or a redirect's hop). */
CURLcode qv_transfer_set_url(qv_slot *slot, const char *url);
/* Frees a slot's handle and what it keeps for it (an executor's end). */
void qv_transfer_slot_free(qv_slot *slot);
/* How long no bytes came on slot's transfer by now (qv_coarse_ms), those
 * that came since the last look stamped first (the read timeout's clock). */
double qv_transfer_silent_ms(qv_slot *slot, double now);
/* Whether f has response hooks to run (the session's or its own). */
int qv_has_hooks(const qv_future *f);
/* Whether f calls code of the caller's in its transfer or completion: a
 * response hook, a request hook, on_debug, on_data, on_progress, on_upload,
 * or a done callback added by now (qv_future_has_callbacks). */
int qv_runs_user_code(qv_future *f);
/* Runs session + request hooks; QV_OK or QV_EHOOK with *msg set. */
int qv_run_hooks(qv_future *f, qv_response *r, char **msg);
/* After a transfer ended: 1 if the handle is in multi again, for another
 * go at the request (a dirty connection, or a redirect quiver follows). */
int qv_transfer_again(qv_slot *slot, CURLM *multi, CURLcode *cc);
/* Completes f (RUNNING) with the headers of a streamed response: its hooks,
 * then FINISHED, while the transfer goes on; on the thread it may run user
 * code on. */
void qv_transfer_deliver_early(qv_future *f, qv_response *r);
/* How often (ms) qv_transfer_drive looks whether `until` is done between
 * its transfer's events: 1. Tests only (test_waitrun.c) raise it before
 * they make a session, so that what wakes the driver early is seen. */
extern int qv_until_look_ms;

/* ------------------------------------- streamed bodies in batches (rcvlowat.c) */

void qv_lowat_conn(qv_slot *slot, curl_socket_t fd); /* the hop's connection (or none) */
void qv_lowat_hop(qv_slot *slot);                    /* a status line: a new hop */
void qv_lowat_body(qv_slot *slot, size_t len);       /* len bytes of a streamed body */
long qv_lowat_poll_ms(qv_slot *slot, long cap_ms);   /* before each poll: the cap */
void qv_lowat_end(qv_slot *slot);                    /* the transfer ended */

/* ----------------------------------------------------- downloads (sink.c) */

/* 1 if the request has a download form (output_path, output_fd, on_data). */
int qv_sink_wanted(const qv_req *r);
/* Per attempt: opens output_path's file; QV_EIO (with *msg) or QV_ENOMEM. */
int qv_sink_begin(qv_slot *slot, char **msg);
/* A resumed download's CURLOPT_RANGE value ("N-") in buf: 1, or 0 if none. */
int qv_sink_range(qv_slot *slot, char *buf, size_t cap);
/* The write callback's work for a body going to the sink. */
size_t qv_sink_write(qv_slot *slot, const char *buf, size_t len);
/* Hands a chunk to on_data away from the transfer's thread (a loop's pump,
 * a process pool's dispatcher): QV_OK, or QV_EHOOK if it said stop; and the
 * message of a stop (QV_EHOOK, or QV_EIO with the write's errno). */
int qv_sink_hand_on(qv_future *f, const char *data, size_t n);
char *qv_sink_stop_message(qv_future *f, int rc, int err);
/* Hands a chunk to on_data: 0, or non-zero with slot->abort set. */
int qv_sink_push(qv_slot *slot, const char *buf, size_t len);
/* Writes all of p to a file, pipe or socket: 0, or errno. */
int qv_write_fd(int fd, const char *p, size_t n);
/* The message of a failed write (QV_ABORT_IO). */
char *qv_sink_io_message(qv_slot *slot);
/* The descriptor a loop's pump writes for this attempt: output_fd, or an
 * output_path written in place whose writes may wait for a reader (a
 * FIFO, a terminal: not a regular file nor /dev/null, /dev/zero, /dev/full);
 * else -1. */
int qv_sink_pump_fd(const qv_slot *slot);
/* How fd can be written without ever blocking: QV_DIRECT_*, with *out the
 * descriptor to write (fd, or for a pipe or FIFO an open of its own with
 * O_NONBLOCK, QV_DIRECT_OWN: the caller closes it; fd itself,
 * QV_DIRECT_SHARED, if that open failed); QV_DIRECT_NONE for a terminal or
 * a device, whose writes wait (*out fd). */
int qv_sink_nonblocking(int fd, int *out);
/* 1 if how's writes wait for room in qv_sink_write_all's poll, which a
 * cancel ends (a pipe, a FIFO, a socket), 0 if they are made as they are. */
int qv_sink_waits_for_room(int how);
/* Sets slot->sink.direct (and direct_known) to qv_sink_nonblocking's
 * choice for fd: a loop's pumped descriptor (qv_sink_pump_fd's), which the
 * transfer's thread writes itself while the pump is idle, or the one
 * qv_sink_write writes. */
void qv_sink_direct_begin(qv_slot *slot, int fd);
/* Writes what fits of buf to fd (how: qv_sink_nonblocking's) without
 * blocking: the bytes written, or -1 (a failed write, errno in *err). */
long qv_sink_try_write(int how, int fd, const char *buf, size_t len, int *err);
/* qv_sink_try_write to slot->sink.direct's descriptor (errno in
 * slot->sink.err). */
long qv_sink_direct(qv_slot *slot, const char *buf, size_t len);
/* What a write waiting for room watches to hear of its future's cancel:
 * fd, an eventfd the cancel writes (a loop's pump; heard NULL: it is read
 * then), or a process worker's control socket, whose frames heard(slot)
 * reads (a cancel among them sets cancel_requested); fd -1: nothing, the
 * cancel is looked at every QV_SINK_LOOK_MS (a QV_THREADS worker, whose
 * cancel wakes only its curl_multi_poll). */
typedef struct qv_sink_wake {
    int fd;
    void (*heard)(qv_slot *slot);
    qv_slot *slot;
} qv_sink_wake;
/* Writes all of buf to fd (how and fd: qv_sink_nonblocking's). A pipe, a
 * FIFO or a socket waits for room until f is cancelled (wake: how it
 * hears of that); anything else is written as it is, waiting. QV_OK,
 * QV_ECANCELLED, or QV_EIO with *err (the write's errno). */
int qv_sink_write_all(qv_future *f, int how, int fd, const qv_sink_wake *wake, const char *buf,
                      size_t n, int *err);
#define QV_SINK_LOOK_MS 100
/* After the outcome is in f: closes the file, renames it into place (or
 * fails f with QV_EIO), or removes or keeps a partial one. */
void qv_sink_end(qv_slot *slot);

/* --------------------------------------------- SIGPIPE kept from the program (sigpipe.c) */

/* For a thread of quiver's, as it starts: SIGPIPE blocked for good, so a
 * write to a pipe whose reader went fails with EPIPE and no more. */
void qv_sigpipe_block_thread(void);
/* write(2) to a pipe on any thread: on one of yours, SIGPIPE is blocked from
 * the first until qv_sigpipe_release (QV_LOOP's lead's end), which takes
 * back the one those writes raised and unblocks SIGPIPE if it was not
 * blocked before (the rest of the mask as it is then). No-op on a thread of
 * quiver's and on one that wrote none. */
ssize_t qv_sigpipe_write(int fd, const void *buf, size_t n);
void qv_sigpipe_release(void);

/* ------------------------------------- work put off to a pass's end (later.c) */

/* Something a thread owes once its current pass over transfers ends. */
typedef struct qv_later {
    void (*run)(struct qv_later *l);
    struct qv_later *next;
    int queued; /* on its thread's list (only that thread touches it) */
} qv_later;
/* Queues l on this thread's list, unless it is there already. */
void qv_later_add(qv_later *l);
/* Runs and empties this thread's list: every thread that produces streamed
 * bytes calls it after each pass of its transfers and before it sleeps. A
 * run that queues its own again (it put its work off) is run at the next. */
void qv_later_run(void);

/* ----------------------------------------------- streamed bodies (pipe.c) */

/* The body of a streamed response (stream = 1), between its transfer and
 * its reader. */
#define QV_PIPE_CAP ((size_t)256 << 10)
/* Bytes in a pipe that wake its consumer before the producer's pass ends:
 * half the ring (a quarter woke the consumer ~40% more often, for 3-18%
 * more CPU: bench/NOTES.md, 2026-12-06), the other half still free. */
#define QV_PIPE_WAKE (QV_PIPE_CAP / 2)
/* With two references (the transfer's and the response's); producer is
 * poked when the reader made room or let go, until qv_pipe_finish. */
qv_pipe *qv_pipe_new(qv_future *producer);
void qv_pipe_unref(qv_pipe *p);
/* A pipe drained by pump runs instead of a reader: ready(arg) is called
 * (under the pipe's lock: it may only queue the run) when bytes or the end
 * came and no run is asked for yet. */
qv_pipe *qv_pipe_new_pump(qv_future *producer, void (*ready)(void *arg), void *arg);
/* A pumped pipe's own descriptor (an output_path written in place), which
 * its pump runs write (pump.c) and which is closed at the pump's
 * end (qv_pump_last), or with the pipe's last reference: -1 if none. Given
 * by the transfer's thread before the first run is asked for. */
void qv_pipe_give_fd(qv_pipe *p, int fd);
int qv_pipe_fd(const qv_pipe *p);
/* Closes it (nothing more is written to it). */
void qv_pipe_close_fd(qv_pipe *p);
/* A pump run: hands what is there to fn, in order, in one thread at a
 * time. 1: the transfer ended and everything was handed (or dropped after
 * a stop); 0: nothing more now (the next bytes ask for another run);
 * -1: fn returned non-zero before the transfer ended (it is being
 * stopped; its end asks for a last run, which drops what came). */
int qv_pipe_pump(qv_pipe *p, int (*fn)(void *arg, const char *data, size_t n), void *arg);
/* The transfer's bytes: 0 taken, 1 no room (the transfer pauses; pushed
 * again later), -1 the reader let go, -2 out of memory. */
int qv_pipe_push(qv_pipe *p, const char *data, size_t n);
/* 1 if the pipe is open and holds nothing: every byte pushed was handed
 * on, so the producer may hand on the next ones itself, in order. */
int qv_pipe_drained(qv_pipe *p);
/* Body bytes pushed so far. */
long long qv_pipe_total(qv_pipe *p);
/* For the transfer's thread: 1 if the reader let go; *resume = 1 if the
 * transfer paused and may go on now. */
int qv_pipe_state(qv_pipe *p, int *resume);
/* For a transfer's thread that runs nothing else (QV_THREADS), before it
 * polls: if a reader waits for bytes, the transfer is lent to it, and
 * pass(arg, wait_ms) runs on the reader's thread (poll up to wait_ms unless
 * it is -1, then perform; 0: the transfer wants its own thread back) until
 * the reader gives it back or has been away a while. 1 if it was lent
 * (the caller looks at its transfer again), 0 if not. */
int qv_pipe_lend(qv_pipe *p, int (*pass)(void *arg, long wait_ms), void *arg);
/* The transfer ended: err QV_OK (the whole body is in) or its error. */
void qv_pipe_finish(qv_pipe *p, int err, const char *msg);
/* The reader lets go: the transfer is stopped. */
void qv_pipe_close(qv_pipe *p);
int qv_pipe_read(qv_pipe *p, void *out, size_t cap, size_t *n, long timeout_ms, const char **msg);
/* A process pool's streamed body: a pipe lent the worker's body ring
 * (ring.c) from tail on, which its reader copies out of itself, giving
 * the room back (and waking the worker for it), with no copy on the
 * dispatcher (producer is poked as above, also when the worker wrote a
 * bad head). */
struct qv_ring;
qv_pipe *qv_pipe_new_ring(qv_future *producer, const struct qv_ring *ring, uint64_t tail);
/* The dispatcher, poked: what the lent ring's reader says. */
enum {
    QV_PIPE_CLOSED = 1, /* the reader let go */
    QV_PIPE_BAD = 2     /* the worker wrote a head it could not have */
};
int qv_pipe_ring_state(qv_pipe *p);
/* The dispatcher takes the ring back (the body's end, or the worker's):
 * what the reader has not taken is copied into the pipe (dropped if it let
 * go or there is no memory for it); *tail is where the ring was taken to,
 * past all it held (not yet published; as it was for a bad head). QV_OK,
 * QV_EPROTOCOL (a bad head: nothing was copied) or QV_ENOMEM. */
int qv_pipe_ring_detach(qv_pipe *p, uint64_t *tail);

/* ----------------------------------------------------- pump runs (pump.c) */

/* A transfer's pump, on an executor whose transfers share one thread
 * (QV_LOOP, with on_data or output_fd): the body goes through its pipe to
 * pump runs on other threads, so a slow callback holds up only its own
 * transfer. The pump's own record, not its future's: made as the transfer
 * starts pumping, freed by the last of its two holds. */
struct qv_pump {
    qv_future *f;
    qv_pipe *pipe; /* the pump's reference (the transfer holds the other) */
    /* The transfer's end and the pump's last run: whichever comes last
     * delivers the outcome. */
    atomic_int holds;
    int err;     /* on_data said stop (QV_EHOOK) or output_fd failed (QV_EIO) */
    int errnum;  /* with QV_EIO */
    qv_link run; /* in its executor's list of pump runs to make (run.next) */
    /* How its runs write their descriptor (one run at a time): through
     * out_fd, a description that never blocks (out_how: QV_DIRECT_*, made at
     * the first write), waiting for room in a poll that also watches wake,
     * an eventfd a cancel of its future writes (made at the first write
     * that may wait, named to the future as its cancel_fd). Both closed at
     * its last hold. */
    int out_fd, out_how, out_tried, wake;
};

/* A pump for f's transfer, whose runs its executor's pump_ready is asked
 * for; NULL out of memory. */
qv_pump *qv_pump_new(qv_future *f);
/* A pump run (on a thread that may run user code). */
void qv_pump_run(qv_pump *p);
/* For the transfer's end and the pump's last run: 1 if this was the last
 * of the two (its caller delivers the outcome, now with what the pump ran
 * into; p is freed), 0 if the other one will. */
int qv_pump_last(qv_pump *p);

/* ---------------------------------------------- request bodies (upload.c) */

/* The body source of upload_path / on_upload, per attempt. */
CURLcode qv_upload_setup(qv_slot *slot, char **msg);
void qv_upload_end(qv_slot *slot);
/* QV_EINVAL (and *msg) if a multipart file part is not a regular file
 * (libcurl would wait for a FIFO's writer and bytes), else QV_OK. */
int qv_upload_check_parts(qv_slot *slot, char **msg);
/* An upload_path that is not a regular file (a FIFO, a pipe through
 * /dev/fd) is opened and read without waiting: with nothing in it, or no
 * writer yet, the sending pauses (slot->upload_waits) and the transfer's
 * poll watches the descriptor this returns (-1: none to watch).
 * qv_upload_look resumes the sending once the pipe has bytes or its end. */
int qv_upload_watch_fd(const qv_slot *slot);
void qv_upload_look(qv_slot *slot);
/* The body from its start again, for a 307/308 hop quiver follows itself:
 * CURLE_OK, or a failure (a callback's or a pipe's body can't rewind). */
CURLcode qv_upload_rewind(qv_slot *slot);
/* What a request whose body can't be sent again (on_upload's, a pipe's)
 * fails with when it had to be; NULL for a body that can. */
const char *qv_upload_cant_rewind(const qv_slot *slot);

/* ----------------------------------------------- networks and identity (network.c) */

/* A request's networks and identity: none of them. */
extern const qv_req_net qv_net_none;
/* The session's network options: QV_OK or QV_EINVAL. */
int qv_net_validate(const qv_session_opts *o);
/* Fills r's network fields from the session's options and the request's
 * (r->url set): QV_OK, QV_EINVAL or QV_ENOMEM. */
int qv_net_build(qv_req *r, const qv_session_opts *so, const qv_request_opts *o);
/* 1 if r sets any of them (a request that needs a reset after it). */
int qv_net_special(const qv_req *r);
/* A handle keeps a request's network settings for the next request with
 * the same (so a session that uses them needs no reset between its plain
 * GETs): 1 if slot->easy has r's settings (or none, and r has none), 0 if
 * it must be reset first, -1 out of memory. */
int qv_net_same(qv_slot *slot, const qv_req *r);
/* Sets r's on slot->easy (after a reset, or if it has them already:
 * nothing); qv_net_same came first. */
CURLcode qv_net_setup(qv_slot *slot, const qv_req *r);
/* After a reset: the handle has none. */
void qv_net_forget(qv_slot *slot);
/* When the slot goes (after its handle). */
void qv_net_slot_free(qv_slot *slot);
/* A TLS failure's cause in words (which option it is about), or NULL. */
const char *qv_net_tls_hint(qv_slot *slot, CURLcode cc, const char *detail);
/* 1 if a receive or send error before any response is the TLS server
 * refusing the connection (e.g. the client's certificate). */
int qv_net_tls_refused(qv_slot *slot, const char *detail);

/* ------------------------------------------------------ clean connections (conncheck.c) */

/* Makes slot->easy refuse a reused plain-HTTP connection with unread bytes
 * (options for the handle's life; slot->opened_fd is reset per transfer). */
CURLcode qv_conncheck_setup(qv_slot *slot);
/* After a transfer ended: if it stopped on such a connection, it is added to
 * multi again on a fresh connection and 1 is returned. */
int qv_conncheck_retry(qv_slot *slot, CURLM *multi);
/* Tests only (test_rcvlowat.c): set, called on the thread where libcurl
 * closed a connection, just after its socket fd was closed (a new socket of
 * any thread's may take the number from then on). */
extern void (*qv_conn_closed_probe)(curl_socket_t fd);

/* ---------------------------------- QV_LOOP's look at its connections (connlook.c) */

/* A loop's idle connections, looked at once a round (the leader's). */
struct epoll_event;
typedef struct qv_connlook_fd qv_connlook_fd;
typedef struct qv_connlook {
    int ep;                 /* the connections reused before */
    unsigned long round;    /* the leader's curl_multi_perform calls */
    unsigned long looked;   /* the round of the last look */
    int blind;              /* that look may not have named every ready connection */
    int several;            /* this round starts more than one transfer: worth a look */
    struct epoll_event *ev; /* room for the look's answer */
    int nev;                /* (entries) */
    qv_connlook_fd *fds;    /* by socket number */
    int nfds;               /* (entries) */
} qv_connlook;

/* 0, or -1 with errno (no epoll: c->ep is -1). */
int qv_connlook_init(qv_connlook *c);
void qv_connlook_free(qv_connlook *c);
/* Before each curl_multi_perform, which starts `started` transfers. */
static inline void qv_connlook_round(qv_connlook *c, int started)
{
    c->round++;
    c->several = started > 1;
}
/* The loop opened socket fd: a connection new to the look. */
void qv_connlook_opened(qv_connlook *c, int fd);
/* After a curl_multi_perform: the transfer whose request went on fd ended. */
void qv_connlook_done(qv_connlook *c, int fd);
/* A request is about to go on fd, a reused connection: 1 if this round's
 * look saw no byte on it after its last response ended (no peek needed), 0
 * if it must be peeked at. */
int qv_connlook_clean(qv_connlook *c, int fd);

/* ------------------------------------------------- redirects (redirect.c) */

/* Sets up how f's redirects are followed, after every other option: by
 * libcurl, or hop by hop by qv_redirect_next (see redirect.c). */
CURLcode qv_redirect_setup(qv_slot *slot);
/* 1 if lines have no Cookie and no Proxy-Authorization line (a session's
 * default lines are looked at once). */
int qv_redirect_lines_plain(const struct curl_slist *lines);
/* After a transfer ended with *cc: 1 if it was a redirect that quiver
 * follows, and the handle is in multi again for the next hop; else 0, with
 * *cc (and the error buffer) set if the next hop could not be made. */
int qv_redirect_next(qv_slot *slot, CURLM *multi, CURLcode *cc);

/* ------------------------------------------------------------ debug trace (debug.c) */

enum { QV_TRACE_OFF = 0, QV_TRACE_REDACTED, QV_TRACE_UNSAFE };
/* QV_DEBUG's mode (QV_TRACE_*), read once per process. */
int qv_trace_env(void);
/* At submit: c's trace_env and, if it is traced, its id (a per-process
 * counter). */
void qv_trace_init(qv_req_calls *c);
/* libcurl's debug callback on easy, for the transfers of slot; a transfer
 * sends events only with CURLOPT_VERBOSE. */
CURLcode qv_trace_setup(CURL *easy, qv_slot *slot);
/* Gives on_debug (and stderr) the events held back during the transfer. */
void qv_trace_flush(qv_slot *slot);

/* ------------------------------------------------------ request hooks (attempt.c) */

/* Runs f's on_request hooks for the attempt about to start on slot (the
 * lines they change go to slot->attempt_headers): QV_OK, or QV_EHOOK or
 * QV_ENOMEM with *msg set (NULL if out of memory). */
int qv_attempt_run_hooks(qv_slot *slot, qv_future *f, char **msg);

/* --------------------------------------------------------- executor (executor.c) */

typedef struct qv_executor_vt {
    /* Work was queued: wake or start a worker. Called with ex->mu held;
     * an error means no worker exists to ever run it. */
    int (*notify)(qv_executor *ex);
    /* Optional, called without a lock after a submit put a future on the
     * inbox: 1 if no notify is needed, every worker being busy (each looks
     * at the inbox before it sleeps: see qv_executor_inbox_empty). Without
     * it every submit takes the executor's lock and notifies. */
    int (*all_busy)(qv_executor *ex);
    /* A streamed response's headers are in (optional; without it they are
     * delivered at once, on the transfer's thread): the executor runs
     * qv_transfer_deliver_early(f, r) where user code may run. */
    void (*deliver_early)(qv_executor *ex, qv_future *f, qv_response *r);
    /* A pump run for p is wanted (optional: without it on_data and output_fd
     * run on the transfer's thread). Called under a pipe's lock. */
    void (*pump_ready)(qv_pump *p);
    /* A thread of the caller's blocks until w is ready or the deadline
     * (NULL: none) passes (optional): it drives the executor's transfers
     * meanwhile, or sleeps on w until the one driving hands it the lead.
     * Returns early when it may not drive (the caller then sleeps on w). */
    void (*drive)(qv_executor *ex, qv_waiter *w, const struct timespec *deadline);
    /* What its futures tell it (optional: f->runner, set at submit). */
    const qv_runner *runner;
    /* Work paused for uncollected responses may go on (uncollected.c: a
     * collection brought the count to half the bound, or an urgent need
     * came): wake it. Optional: without it paused workers wait on
     * ex->resume. Any thread, ex->mu held or not: it takes no lock. */
    void (*resume)(qv_executor *ex);
    /* How the kind is made (qv_executor_make): its struct's size (its
     * qv_executor first); blank (optional) marks what is not made yet as
     * such in the zeroed struct (descriptors -1) before any step can fail;
     * build makes the kind's part once the shared part is made. */
    size_t size;
    void (*blank)(qv_executor *ex);
    int (*build)(qv_executor *ex);
    /* Stop after draining the queue; join workers. Both also end a
     * half-built executor: they undo only what was made (threads not
     * started, descriptors -1, locks not in ex->built). */
    void (*shutdown)(qv_executor *ex);
    void (*destroy)(qv_executor *ex);
} qv_executor_vt;

/* The future whose node (q) is n; NULL for NULL. */
static inline qv_future *qv_future_of(qv_link *n)
{
    return qv_list_item(n, qv_future, q);
}

/* A future a worker took off the queue and has not begun (popped): set
 * under the executor's lock, cleared under f->lock by qv_future_begin (or by
 * the completion of one drained to fail unbegun). A cancel, which holds
 * both, marks it and waits for that begin or completion (future.c). */
enum { QV_POPPED = 1, QV_POPPED_CANCEL_WAITS };
/* What queue_cancel returns for such a future (see qv_holder's fn). */
enum { QV_LET_GO_AT_BEGIN = 2 };

/* Where a queued future is (qwhere). */
enum { QV_Q_NONE = 0, QV_Q_READY, QV_Q_PARKED, QV_Q_RETRY };

/* Per-host limits (hostlimit.c), under the executor's lock. */
typedef struct qv_host qv_host;
typedef struct qv_hosts {
    qv_host **buckets;
    size_t nbuckets, n, sweep_at;
    size_t noverrides;
    qv_list parked; /* hosts with parked futures, oldest first */
    int active;     /* any limit set: futures are checked at pop (and
                       while any are parked: a lifted limit frees them) */
} qv_hosts;

struct qv_executor {
    unsigned magic; /* QV_MAGIC_EXECUTOR until qv_executor_free, then QV_MAGIC_FREED */
    const qv_executor_vt *vt;
    qv_executor_opts o;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_cond_t space; /* a queued future left the queue (max_queued) */
    qv_list ready;        /* may start now (as far as known), oldest first */
    /* Submits that took no lock (vt->all_busy), newest first through q.next:
     * a lock-free stack that the next pop moves to the ready list's tail
     * (executor.c); closed at shutdown. */
    _Atomic(qv_future *) inbox;
    size_t queued;       /* ready or parked on a host */
    qv_future **retries; /* a min-heap by due time: retries waiting */
    size_t nretries, cap_retries;
    qv_hosts hosts;
    atomic_uint warned;       /* the saturation warnings given (bits) */
    atomic_uint warn_pending; /* noted, to give at the next submit */
    int shutdown;
    /* Under mu: a submit's notify leaves signalling `cv` to after the
     * unlock (signal_later set while it runs; signal_due: a signal is due). */
    int signal_later, signal_due;
    atomic_int refs;
    atomic_size_t in_flight, completed, failed, cancelled, connections;
    atomic_size_t pool_held; /* begun, but held by a process pool for a worker */
    atomic_int workers;
    qv_bodies *bodies;   /* response bodies kept for reuse (bodies.c) */
    qv_holder queued_by; /* the queue's hold on what waits in it */
    /* The bound on finished-but-uncollected futures (0: none; QV_THREADS
     * and QV_LOOP set it). Workers pause (on `resume`, or QV_LOOP's leader
     * between its rounds) at it, until `uncollected` is
     * down to half of it, unless something `urgent` needs them: a wanted
     * future waiting to start, a submitter waiting for room, a session
     * closing. */
    long max_uncollected;
    atomic_long uncollected;
    atomic_int urgent;
    atomic_int paused; /* workers about to wait, or waiting, on resume */
    pthread_cond_t resume;
    /* The locks and condition variables made so far, its own and its
     * kind's (QV_BUILT_*, a bit each): the teardown destroys those alone. */
    unsigned built;
};

/* Bits of qv_executor.built; a kind numbers its own from QV_BUILT_KIND. */
enum {
    QV_BUILT_MU = 1u << 0,
    QV_BUILT_CV = 1u << 1,
    QV_BUILT_SPACE = 1u << 2,
    QV_BUILT_RESUME = 1u << 3,
    QV_BUILT_KIND = 1u << 4,
};

/* Makes an executor of the kind vt describes into *out: zeroed, blanked,
 * the shared part, then the kind's (vt->build). Whatever step fails, the
 * teardown qv_executor_free uses ends it (its kind's shutdown, then
 * destroy), and the step's error is returned. */
int qv_executor_make(qv_executor **out, const qv_executor_vt *vt, const qv_executor_opts *o);
/* A constructor's step that failed: qv_last_error says what could not be
 * made and why (strerror(err); 0 or ENOMEM: out of memory), since QV_ENOMEM also
 * stands for descriptors, threads or processes run out. Returns QV_ENOMEM. */
int qv_executor_short(const char *what, int err);
/* Makes a lock (mu) or a condition variable (cv, with qv_cond_init's
 * clock) of ex or of its kind, and records it in ex->built as `bit`;
 * QV_ENOMEM (qv_executor_short) if it cannot. unbuild destroys it if it
 * was made. */
int qv_executor_build_sync(qv_executor *ex, unsigned bit, pthread_mutex_t *mu, pthread_cond_t *cv);
void qv_executor_unbuild_sync(qv_executor *ex, unsigned bit, pthread_mutex_t *mu,
                              pthread_cond_t *cv);
void qv_executor_ref(qv_executor *ex);
void qv_executor_unref(qv_executor *ex);
/* The executor whose thread this is (a worker, an I/O, delivery or
 * dispatcher thread), where its hooks and done callbacks run. */
extern _Thread_local qv_executor *qv_own_executor;
/* Queues f (taking the queue's reference); QV_ESHUTDOWN if shut down. */
int qv_executor_submit(qv_executor *ex, qv_future *f);
/* Pops the oldest future allowed to start (ex->mu held): due retries
 * first, then what the host limits let go. NULL if none; then *wait_ms
 * (if not NULL) is how long until one may be (a retry's time, a host's next
 * token), or -1 if only a submit or a finished request can change it. */
qv_future *qv_executor_pop_locked(qv_executor *ex, long *wait_ms);
/* Pops the ready list's head (ex->mu held) if no limit or retry is in play
 * (the queue is a plain FIFO), it does not stream its body, write it to
 * output_fd, read upload_path nor call code of the caller's
 * (qv_runs_user_code), and it is
 * want or the bound on uncollected responses is not reached; else NULL. For
 * a thread that waits for want and runs queued work meanwhile. */
qv_future *qv_executor_pop_next_locked(qv_executor *ex, qv_future *want);
/* Whether the ready list's head is one such a thread may run (ex->mu held). */
int qv_executor_lendable_locked(qv_executor *ex);
/* Pops anything still waiting, limits and retry times aside, to fail it
 * (popped: a cancel waits for that failure). */
qv_future *qv_executor_drain_locked(qv_executor *ex);
/* Nothing queued, parked or waiting to retry (ex->mu held). */
int qv_executor_empty_locked(qv_executor *ex);
/* Nothing waits in the inbox (no lock needed): a worker about to sleep
 * asks this after it counts itself idle, as a submit that found no idle
 * worker did not notify. */
int qv_executor_inbox_empty(qv_executor *ex);
/* Queues f (with a new queue reference) for another attempt at due_ms:
 * QV_OK, or QV_ECANCELLED (a cancel came first) or another error, and then
 * f is not queued (its outcome is for the caller to deliver). */
int qv_executor_retry(qv_executor *ex, qv_future *f, double due_ms);
/* f's attempt is over: its host has room for another request. */
void qv_executor_host_done(qv_future *f);
/* Notes that `what` was seen where user code must not run: the next
 * submit gives the warning (once per executor). Any thread, any lock. */
void qv_executor_note(qv_executor *ex, qv_saturation what);
/* Counts an outcome in the stats. */
void qv_executor_count(qv_executor *ex, qv_future_state st);
/* Threads of thread-pool and loop executors alive in this process: a
 * process pool must fork before there are any. */
extern atomic_int qv_io_threads;

/* ---------------------------------------- uncollected responses (uncollected.c) */

/* The bound on finished-but-uncollected responses of QV_THREADS and QV_LOOP
 * (max_uncollected; 0: none, and none of this counts), set by their
 * constructors from the option (bound: 0, the default; -1, none). */
void qv_uncollected_setup(qv_executor *ex, long bound);
/* A worker asks qv_executor_hold_back (ex->mu held) before it pops; 1: it
 * has been counted in `paused` and must wait on `resume` (or be woken by
 * the executor's vt->resume), then uncount itself. */
int qv_executor_hold_back(qv_executor *ex);
/* The same for a thread that looks again at every round of its own instead
 * of sleeping on `resume` (QV_LOOP's leader), given whether it was held back
 * until now (held: counted in `paused`): 1 while it still is, until half
 * the bound is collected or something urgent needs it (then it is
 * uncounted). ex->mu held. */
int qv_executor_hold_on(qv_executor *ex, int held);
/* Adds d (+1 or -1) to ex's urgent needs, or 0 for a future's need that
 * qv_uncollected_look counted already; unless one went, paused workers go
 * on. ex->mu not held (_locked: held). */
void qv_executor_urge(qv_executor *ex, int d);
void qv_executor_urge_locked(qv_executor *ex, int d);
/* The members of QV_THREADS' and QV_LOOP's runners (qv_runner): a wanted future waiting to
 * start counts as urgent; one finished with a response no callback or
 * waiter takes counts as uncollected (with a reference to its executor)
 * until it is collected. */
int qv_uncollected_look(qv_future *f, int want);
void qv_uncollected_urge(qv_future *f);
void qv_uncollected_finished(qv_future *f);
void qv_uncollected_collected(qv_future *f);

/* ------------------------------------------ per-host limits (hostlimit.c) */

void qv_hosts_init(qv_executor *ex);
void qv_hosts_free(qv_executor *ex);
/* f may start now (counted by its host), or 0: it is parked on its host. */
int qv_hosts_admit(qv_executor *ex, qv_future *f, double now, double *wake_at);
/* A parked future whose host has room again (counted), or NULL. */
qv_future *qv_hosts_take_parked(qv_executor *ex, double now, double *wake_at);
qv_future *qv_hosts_any_parked(qv_executor *ex);
void qv_hosts_unpark(qv_executor *ex, qv_future *f);
/* Uncounts f; 1 if futures are parked on its host. */
int qv_hosts_release_locked(qv_future *f);

/* -------------------------------------------------------------- retries (retry.c) */

/* No retries. */
extern const qv_retry_policy qv_retry_none;
/* From the public policy (NULL = none): QV_OK or QV_EINVAL. */
int qv_retry_resolve(qv_retry_policy *p, const qv_retry *in);
/* 1 if this response (its status and headers in) would be retried (so its
 * body is not the final one). */
int qv_retry_would_retry(const qv_future *f, const qv_response *r);
/* How long to wait before retrying f's collected outcome; -1: no retry. */
double qv_retry_wait_ms(const qv_future *f);
/* Drops f's outcome and queues it again after wait_ms (>= 0): 1. Or 0, and
 * the outcome stays (no retry wanted, cancelled, no memory). The caller's
 * queue reference stays the caller's. */
int qv_retry_requeue(qv_future *f, double wait_ms);
/* qv_retry_requeue(f, qv_retry_wait_ms(f)). */
int qv_retry_maybe(qv_future *f);

/* -------------------------------------- thread pools (executor_threads.c) */

extern const qv_executor_vt qv_threads_vt;
/* Tests only (test_waitrun.c): set, QV_THREADS calls it on the thread that
 * runs an attempt of f as it starts (start 1) and before its outcome is
 * delivered (0), to tell a worker's runs from a waiting thread's. */
extern void (*qv_threads_probe)(qv_future *f, int start);

/* ------------------------------------------ event loops (executor_loop.c) */

extern const qv_executor_vt qv_loop_vt;

/* --------------------------------------- process pools (executor_procs.c) */

extern const qv_executor_vt qv_procs_vt;

/* --------------------------------------- a worker's body ring (ring.c) */

/* A process worker's response body goes to the parent through shared
 * memory: a ring of QV_RING_CAP bytes in a slot of its own of the pool's
 * rings (an anonymous shared mapping made before the zygote is forked, so
 * every worker has it). The worker (the producer) alone
 * writes head and the bytes; the parent (the consumer) alone writes tail;
 * both count bytes since the worker started, and head - tail is what is
 * in. A side that waits sets its flag and sleeps; the other, having moved
 * its index, wakes it if it finds the flag set: the dispatcher with a
 * QV_WIRE_RING frame (bytes came), a streamed body's reader and the worker
 * waiting for room on futex words in the header, each woken for half the
 * ring, not for each piece. The protocol is in docs/internals.md. The parent trusts nothing the
 * worker wrote: head is checked before any byte is read. 1 MiB: an on_data body's dispatcher is
 * woken once half of it is in, a frame and an epoll wake-up per 512 KiB
 * (512 KiB rings: 35% more context switches per body; bench/NOTES.md,
 * 2026-12-07). A streamed body (stream = 1) fills all of it too, more than
 * a pipe holds on the other executors (QV_PIPE_CAP): held to 256 KiB, its
 * reader (faster than the worker) slept, and woke the worker asleep for
 * room, about once per 256 KiB: ~16k futex calls a GiB, ~4k with the whole
 * ring (bench/NOTES.md, 2026-12-07 06:45); the memory is the ring's, there
 * for every worker anyway. */
#define QV_RING_CAP ((size_t)1 << 20)
/* After the ring, on_upload's area: two pieces, one that libcurl reads
 * while the parent fills the next (see procs_worker.c). */
#define QV_UP_RING (2 * QV_UPLOAD_PIECE)
typedef struct qv_ring_hdr {
    _Atomic uint64_t head; /* bytes put in (the worker's) */
    char pad0[56];
    _Atomic uint64_t tail; /* bytes taken out (the parent's) */
    char pad1[56];
    atomic_int reader_waits; /* the parent found the ring empty: bytes need a RING frame */
    /* A streamed body's reader, which the ring is lent to, found it empty
     * and sleeps on stream_wake (a futex of the two processes'): the
     * worker wakes it itself, with no frame and no dispatcher. */
    atomic_int stream_waits;
    qv_signal stream_wake;
    atomic_int writer_waits; /* the worker waits for answers read: a ROOM frame wakes it */
    /* Answers (RESPONSE frames) the parent has acted on (the parent's): a
     * request's first byte waits for the one before to be, so that the
     * parent never takes it for that one's. */
    _Atomic uint64_t answers_read;
    /* The worker found the ring full and sleeps on room_wake (a futex of
     * the two processes', as stream_wake) until its consumer made half of
     * it free, or the parent kicked it to read a frame (a cancel). */
    atomic_int room_waits;
    qv_signal room_wake;
} qv_ring_hdr;
typedef struct qv_ring {
    qv_ring_hdr *h;      /* NULL: not mapped */
    unsigned char *data; /* QV_RING_CAP bytes */
    unsigned char *up;   /* QV_UP_RING bytes: on_upload's, from the parent */
} qv_ring;
/* A pool's rings, n slots (address space: pages are taken as they are
 * touched), or NULL; and their end. */
void *qv_rings_new(int n);
/* The pool's zygote has them: later forks (another pool's zygote, the
 * program's own) do not, and keep none of their pages alive. */
void qv_rings_forked(void *rings, int n);
void qv_rings_free(void *rings, int n);
/* Slot `slot` of rings, as r. */
void qv_ring_at(qv_ring *r, void *rings, int slot);
/* A slot for a new worker: empty, and the parent waits for its first bytes. */
void qv_ring_reset(qv_ring *r);
/* The n bytes at count pos of the ring, which may wrap past its end: where
 * they start, and how many come before the end (the rest from the start). */
size_t qv_ring_contig(uint64_t pos, size_t n, size_t *first);
/* The producer: copies up to n bytes in at *head (as many as there is room
 * for), publishes the new head and returns how many. */
size_t qv_ring_put(qv_ring *r, uint64_t *head, const void *p, size_t n);
/* The consumer: copies the n bytes from tail on (checked against head by
 * qv_ring_avail first) out of the ring. */
void qv_ring_copy_out(const qv_ring *r, uint64_t tail, void *out, size_t n);
/* The producer: the bytes in at head (its own), not yet taken out. */
size_t qv_ring_in(qv_ring *r, uint64_t head);
/* 1 if a consumer may wait for bytes (a hint, without a fence: a 0 read
 * too early only costs the wake-up of one that does not wait). */
int qv_ring_consumer_waits(qv_ring *r);
/* The producer, after putting bytes in: 1 if the consumer waits for them
 * (its flag is cleared: the caller sends the RING frame). */
int qv_ring_reader_woken(qv_ring *r);
/* The producer, finding the ring full with want bytes to put in: sets its
 * flag; 0 if there is room for want or half the ring after all, else what
 * to sleep with (qv_ring_room_sleep). */
unsigned qv_ring_room_wait(qv_ring *r, uint64_t head, size_t want);
/* ... sleeps until the consumer made room, the parent kicked it or the
 * deadline (NULL: none, else CLOCK_MONOTONIC) passed: non-zero then. */
int qv_ring_room_sleep(qv_ring *r, unsigned v, const struct timespec *deadline);
/* The parent: the worker, if asleep for room, wakes and reads its frames. */
void qv_ring_room_kick(qv_ring *r);
/* The producer, about to put a request's first byte in: sets its flag; 1
 * if the parent has acted on all `sent` answers after all. */
int qv_ring_writer_wait_answers(qv_ring *r, uint64_t sent);
/* The consumer acted on its nth answer: publishes it; 1 if the producer
 * waits (its flag is cleared: the caller sends the ROOM frame). */
int qv_ring_answered(qv_ring *r, uint64_t n);
/* The consumer: bytes in after tail, or -1 if the producer's head is not
 * one it could have written (more than the ring holds, or behind tail). */
long qv_ring_avail(qv_ring *r, uint64_t tail);
/* The consumer took up to tail, left bytes still in: publishes it, and
 * once at most half the ring is left, wakes the producer if it waits for
 * room: for half the ring, not for each piece taken. */
void qv_ring_taken(qv_ring *r, uint64_t tail, size_t left);
/* The consumer, finding the ring empty at tail: sets its flag; 1 if bytes
 * came after all. */
int qv_ring_reader_wait(qv_ring *r, uint64_t tail);
/* A streamed body's reader, finding the ring empty at tail: sets its flag;
 * 0 if bytes came after all, else what to sleep with. */
unsigned qv_ring_stream_wait(qv_ring *r, uint64_t tail);
/* ... sleeps until woken or the monotonic deadline (NULL: none): 0 or
 * ETIMEDOUT. */
int qv_ring_stream_sleep(qv_ring *r, unsigned v, const struct timespec *deadline);
/* Wakes that reader (the parent's own wakers: the end, a close). */
void qv_ring_stream_kick(qv_ring *r);
/* The producer, after putting bytes in: wakes that reader if it waits. */
void qv_ring_stream_woken(qv_ring *r);

/* ------------------------------------------------- process workers (procs_worker.c) */

/* A process worker's ring (NULL in any other process): tests reach it
 * from a hook. */
extern qv_ring *qv_worker_ring;
/* The on_debug of a request decoded in a worker: sends the event to the
 * parent, whose on_debug it is. */
void qv_worker_debug(qv_future *f, qv_debug_kind kind, const char *data, size_t len, void *arg);
/* The zygote's life; never returns. rings: the pool's (qv_rings_new),
 * whose slot the parent names for each worker. */
void qv_zygote_main(int parent_fd, void *rings);

#endif
