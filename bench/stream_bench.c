/* stream_bench: one large body through one of quiver's streaming forms, and
 * what it cost, measured here (the bench/stream script runs it beside curl):
 *
 *   stream_bench FORM EXECUTOR URL [FILE]
 *
 * FORM: file (output_path = FILE), fd (output_fd = /dev/null), data
 * (on_data, discarded), pull (stream = 1, qv_response_read into 64 KiB),
 * put-file (PUT upload_path = FILE), put-callback (PUT on_upload, FILE read
 * by the callback, upload_len = FILE's size: the same bytes and the same
 * Content-Length framing as put-file and curl -T), put-chunked (the same
 * callback without upload_len: chunked transfer encoding). EXECUTOR:
 * threads, loop or processes.
 *
 * Prints one line: form= executor= bytes= wall_s= cpu_s= (this process and
 * its descendants: a process pool's zygote and workers) idle_rss_kb= (after
 * a session and one small request) peak_rss_kb= (this process's high-water
 * mark) worker_peak_rss_kb= (the largest of a process pool's). */
#include <dirent.h>
#include <fcntl.h>
#include <quiver.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A field of /proc/PID/status in kB (-1 if absent). */
static long status_kb(long pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *fp = fopen(path, "r");
    long v = -1;
    size_t n = strlen(field);
    while (fp && fgets(line, sizeof line, fp))
        if (strncmp(line, field, n) == 0 && line[n] == ':') v = atol(line + n + 1);
    if (fp) fclose(fp);
    return v;
}

/* ppid and CPU seconds (utime + stime) of a process, from /proc/PID/stat. */
static int proc_stat(long pid, long *ppid, double *cpu)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *fp = fopen(path, "r");
    if (!fp) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the name may hold spaces */
    unsigned long ut = 0, st = 0;
    if (!p ||
        sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", ppid, &ut, &st) != 3)
        return -1;
    *cpu = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    return 0;
}

/* CPU seconds of pid's descendants (two generations: a pool's zygote and
 * its workers), and the largest peak RSS among them. */
static double descendants(long pid, long *peak_kb)
{
    DIR *d = opendir("/proc");
    long kids[4096];
    int nk = 0;
    double cpu = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        long p = atol(e->d_name), pp;
        double c;
        if (p <= 0 || proc_stat(p, &pp, &c) || pp != pid) continue;
        cpu += c;
        long hwm = status_kb(p, "VmHWM");
        if (hwm > *peak_kb) *peak_kb = hwm;
        if (nk < 4096) kids[nk++] = p;
    }
    if (d) closedir(d);
    for (int i = 0; i < nk; i++) cpu += descendants(kids[i], peak_kb);
    return cpu;
}

static int discard(qv_future *f, const void *chunk, size_t len, void *arg)
{
    (void)f, (void)chunk;
    *(long long *)arg += (long long)len;
    return 0;
}

static long produce(void *buf, size_t cap, void *arg)
{
    ssize_t n = read(*(int *)arg, buf, cap);
    return n < 0 ? -1 : (long)n;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: stream_bench FORM EXECUTOR URL [FILE]\n");
        return 2;
    }
    const char *form = argv[1], *kind = argv[2], *url = argv[3], *file = argc > 4 ? argv[4] : NULL;
    qv_executor_kind k = strcmp(kind, "loop") == 0        ? QV_LOOP
                         : strcmp(kind, "processes") == 0 ? QV_PROCESSES
                                                          : QV_THREADS;
    qv_session *s;
    if (qv_session_new(&s, &(qv_session_opts){.size = sizeof(qv_session_opts),
                                              .executor_kind = k,
                                              .max_workers = 2}))
        return 1;
    /* An idle session that has made a request: the baseline. */
    qv_future *f;
    char small[1024];
    snprintf(small, sizeof small, "%.*s/small", (int)(strrchr(url, '/') - url), url);
    if (qv_get(s, &f, small) || qv_future_result(f, NULL, -1)) {
        fprintf(stderr, "stream_bench: %s: %s\n", small, qv_future_error(f));
        return 1;
    }
    qv_future_release(f);
    long idle = status_kb((long)getpid(), "VmRSS");

    long worker_peak = 0;
    double kids0 = descendants((long)getpid(), &worker_peak);
    /* After the scan of /proc, which is the bench's cost, not quiver's
     * (tens of ms on a machine with many processes). */
    struct rusage ru0;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now_s();
    long long got = 0;
    int devnull = open("/dev/null", O_WRONLY), in = file ? open(file, O_RDONLY) : -1;
    qv_request_opts o = {.size = sizeof(o), .url = url, .read_timeout_ms = 60000};
    if (strcmp(form, "file") == 0) {
        o.output_path = file;
    } else if (strcmp(form, "fd") == 0) {
        o.output_fd = devnull;
    } else if (strcmp(form, "data") == 0) {
        o.on_data = discard;
        o.on_data_arg = &got;
    } else if (strcmp(form, "pull") == 0) {
        o.stream = 1;
    } else if (strcmp(form, "put-file") == 0) {
        o.method = "PUT";
        o.upload_path = file;
    } else if (strcmp(form, "put-callback") == 0 || strcmp(form, "put-chunked") == 0) {
        struct stat st;
        o.method = "PUT";
        o.on_upload = produce;
        o.on_upload_arg = &in;
        if (strcmp(form, "put-callback") == 0 && !fstat(in, &st))
            o.upload_len = (long long)st.st_size;
    } else {
        fprintf(stderr, "stream_bench: unknown form %s\n", form);
        return 2;
    }
    qv_response *r;
    if (qv_request(s, &f, &o) || qv_future_result(f, &r, -1)) {
        fprintf(stderr, "stream_bench: %s: %s\n", form, qv_future_error(f));
        return 1;
    }
    if (o.stream) {
        static char buf[65536];
        size_t n;
        int rc;
        while ((rc = qv_response_read(r, buf, sizeof buf, &n, -1)) == QV_OK && n)
            got += (long long)n;
        if (rc) {
            fprintf(stderr, "stream_bench: read: %s\n", qv_response_read_error(r));
            return 1;
        }
    }
    long long bytes = o.upload_path || o.on_upload ? -1 : qv_response_body_bytes(r);
    if (qv_response_status(r) != 200) {
        fprintf(stderr, "stream_bench: status %d\n", qv_response_status(r));
        return 1;
    }
    double wall = now_s() - t0;
    struct rusage ru1;
    getrusage(RUSAGE_SELF, &ru1);
    double kids1 = descendants((long)getpid(), &worker_peak);
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6 + (kids1 - kids0);
    long peak = status_kb((long)getpid(), "VmHWM");
    printf("form=%s executor=%s bytes=%lld wall_s=%.3f cpu_s=%.3f idle_rss_kb=%ld "
           "peak_rss_kb=%ld worker_peak_rss_kb=%ld\n",
           form, kind, bytes, wall, cpu, idle, peak, worker_peak);
    qv_future_release(f);
    qv_session_free(s);
    close(devnull);
    if (in >= 0) close(in);
    return 0;
}
