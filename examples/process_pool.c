/*
 * process_pool — a hook that crashes on hostile data takes down only its
 * worker process: that future fails with QV_EWORKER, the others complete.
 *   process_pool [BASE_URL]
 */
#include <quiver.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Pretends to parse the body and crashes on the one it cannot handle. */
static int fragile_parser(qv_session *s, qv_response *r, void *arg)
{
    (void)s;
    (void)arg;
    if (strstr(qv_response_url(r), "poison")) {
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
    }
    size_t n;
    qv_response_body(r, &n);
    return qv_response_set_result_bytes(r, &n, sizeof n);
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("QV_BASE_URL");
    if (!base) base = getenv("QV_HTTPBIN_URL");
    if (!base) base = "http://127.0.0.1:8080";

    /* First, before any other executor starts threads (it forks). */
    qv_executor *ex;
    if (qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                 .kind = QV_PROCESSES,
                                                 .max_workers = 3}))
        return 1;
    qv_session *s;
    if (qv_session_new(&s,
                       &(qv_session_opts){.size = sizeof(qv_session_opts),
                                          .executor = ex,
                                          .hooks = (const qv_hook[]){{fragile_parser, NULL}, {0}}}))
        return 1;
    static const char *paths[] = {"/anything/a", "/anything/poison", "/anything/b", "/anything/c"};
    qv_future *f[4];
    for (int i = 0; i < 4; i++) {
        char url[1024];
        snprintf(url, sizeof url, "%s%s", base, paths[i]);
        if (qv_get(s, &f[i], url)) return 1;
    }
    int finished = 0, died = 0;
    for (int i = 0; i < 4; i++) {
        qv_response *r;
        int rc = qv_future_result(f[i], &r, -1);
        if (rc == QV_OK) {
            size_t n;
            printf("%s: parsed %zu bytes\n", paths[i],
                   *(const size_t *)qv_response_result_bytes(r, &n));
            finished++;
        } else {
            printf("%s: %s\n", paths[i], qv_future_error(f[i]));
            died += rc == QV_EWORKER;
        }
        qv_future_release(f[i]);
    }
    qv_session_free(s);
    qv_executor_free(ex);
    return finished == 3 && died == 1 ? 0 : 1;
}
