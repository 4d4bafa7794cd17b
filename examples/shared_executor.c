/*
 * shared_executor — two sessions with different defaults (a tenant header,
 * their own cookie jars) on one thread pool.
 *   shared_executor [BASE_URL]
 */
#include <jansson.h>
#include <quiver.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tenant_seen(qv_session *s, const char *url, const char *want)
{
    qv_future *f;
    qv_response *r;
    int ok = 0;
    if (qv_get(s, &f, url) != QV_OK) return 0;
    if (qv_future_result(f, &r, -1) == QV_OK) {
        int err;
        json_t *h = json_object_get(qv_response_json(r, &err), "headers");
        const char *got = json_string_value(json_object_get(h, "X-Tenant"));
        printf("session %s: server saw X-Tenant: %s\n", want, got ? got : "(none)");
        ok = got && strcmp(got, want) == 0;
    }
    qv_future_release(f);
    return ok;
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("QV_BASE_URL");
    if (!base) base = getenv("QV_HTTPBIN_URL");
    if (!base) base = "http://127.0.0.1:8080";
    char url[1024];
    snprintf(url, sizeof url, "%s/headers", base);

    qv_executor *ex;
    if (qv_executor_new(&ex, &(qv_executor_opts){.size = sizeof(qv_executor_opts),
                                                 .kind = QV_THREADS,
                                                 .max_workers = 4}))
        return 1;
    qv_session *a, *b;
    if (qv_session_new(
            &a, &(qv_session_opts){.size = sizeof(qv_session_opts),
                                   .executor = ex,
                                   .headers = (const qv_header[]){{"X-Tenant", "a"}, {0}}}) ||
        qv_session_new(&b,
                       &(qv_session_opts){.size = sizeof(qv_session_opts),
                                          .executor = ex,
                                          .headers = (const qv_header[]){{"X-Tenant", "b"}, {0}}}))
        return 1;
    int ok = tenant_seen(a, url, "a") + tenant_seen(b, url, "b");
    qv_session_free(a);
    qv_session_free(b);
    qv_executor_free(ex); /* after the sessions that use it */
    return ok == 2 ? 0 : 1;
}
