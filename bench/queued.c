/* queued: what a queued future costs. Queues N plain GETs (default 20,000)
 * to a loopback listener of its own that accepts nothing (so nothing is ever
 * answered) on one executor whose host limit lets one request run, so the
 * rest wait in the queue; prints the RSS (RssAnon) before and after, per
 * queued future, then cancels them all and checks that each ends CANCELLED.
 *
 *   queued [--executor loop|threads|processes] [-n N]
 *
 * Prints: executor=K n=N rss_before_kb=A rss_after_kb=B per_future_b=P */
#include <netinet/in.h>
#include <quiver.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static long rss_anon_kb(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (fp && fgets(line, sizeof(line), fp))
        if (sscanf(line, "RssAnon: %ld kB", &kb) == 1) break;
    if (fp) fclose(fp);
    return kb;
}

/* A listener that never accepts: connections wait in its backlog. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 16) ||
        getsockname(fd, (struct sockaddr *)&a, &len))
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

int main(int argc, char **argv)
{
    const char *kind = "loop";
    long n = 20000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--executor"))
            kind = argv[i + 1];
        else if (!strcmp(argv[i], "-n"))
            n = atol(argv[i + 1]);
    }
    qv_executor_kind k = !strcmp(kind, "threads")     ? QV_THREADS
                         : !strcmp(kind, "processes") ? QV_PROCESSES
                                                      : QV_LOOP;
    int port;
    int lfd = silent_listener(&port);
    if (lfd < 0 || n <= 0) return 2;
    qv_executor *ex;
    qv_executor_opts eo = {.size = sizeof(eo), .kind = k, .per_host = {.max_concurrent = 1}};
    if (qv_executor_new(&ex, &eo)) return 2;
    qv_session *s;
    qv_session_opts so = {.size = sizeof(so), .executor = ex};
    if (qv_session_new(&s, &so)) return 2;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/queued/a-typical-path?page=1", port);
    qv_future **fs = calloc((size_t)n, sizeof(*fs));
    if (!fs) return 2;
    /* One first, so that what the executor makes once is not counted. */
    qv_future *first;
    if (qv_get(s, &first, url)) return 2;
    long before = rss_anon_kb();
    for (long i = 0; i < n; i++)
        if (qv_get(s, &fs[i], url)) return 2;
    long after = rss_anon_kb();
    printf("executor=%s n=%ld rss_before_kb=%ld rss_after_kb=%ld per_future_b=%.0f\n", kind, n,
           before, after, (double)(after - before) * 1024.0 / (double)n);
    long bad = 0;
    qv_future_cancel(first);
    for (long i = 0; i < n; i++) {
        qv_future_cancel(fs[i]);
        bad += qv_future_wait(fs[i], 10000) || qv_future_state_get(fs[i]) != QV_CANCELLED;
        qv_future_release(fs[i]);
    }
    qv_future_wait(first, 10000);
    qv_future_release(first);
    free(fs);
    qv_session_free(s);
    qv_executor_free(ex);
    close(lfd);
    if (bad) fprintf(stderr, "queued: %ld futures did not end CANCELLED\n", bad);
    return bad != 0;
}
