/*
 * refresh_token — the 401 → refresh the token → retry recipe: a retry
 * policy that retries a 401 once, and a request hook that puts the token on
 * each attempt, refreshing it first when the attempt is a retry (the one
 * before was refused).
 *   refresh_token [BASE_URL]
 *
 * httpbin's /bearer refuses a request without a token; here the first
 * request goes without one (nothing is cached yet), as an expired token
 * would with a real API.
 */
#include <jansson.h>
#include <pthread.h>
#include <quiver.h>
#include <stdio.h>
#include <stdlib.h>

/* The cached token, shared by every request of the session. Hooks run on
 * the executor's threads, so it has a lock. (With QV_PROCESSES a hook runs
 * in a worker process: each worker would keep its own cache.) */
typedef struct token_cache {
    pthread_mutex_t mu;
    char header[128]; /* "Bearer <token>", or "" before the first refresh */
    int refreshes;
} token_cache;

/* Stands for a call to the identity provider. */
static void refresh(token_cache *c)
{
    c->refreshes++;
    snprintf(c->header, sizeof c->header, "Bearer fresh-token-%d", c->refreshes);
}

static int put_token(qv_session *s, qv_attempt *a, void *arg)
{
    (void)s;
    token_cache *c = arg;
    pthread_mutex_lock(&c->mu);
    /* A retry means the server refused the token the last attempt had. */
    if (qv_attempt_number(a) > 1) refresh(c);
    int rc = c->header[0] ? qv_attempt_set_header(a, "Authorization", c->header) : QV_OK;
    pthread_mutex_unlock(&c->mu);
    return rc; /* non-zero: the future fails with QV_EHOOK */
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("QV_BASE_URL");
    if (!base) base = getenv("QV_HTTPBIN_URL");
    if (!base) base = "http://127.0.0.1:8080";
    char url[1024];
    snprintf(url, sizeof url, "%s/bearer", base);

    static token_cache cache = {.mu = PTHREAD_MUTEX_INITIALIZER};
    qv_session *s;
    if (qv_session_new(&s, &(qv_session_opts){
                               .size = sizeof(qv_session_opts),
                               .retry = &(qv_retry){.max_retries = 1,
                                                    .on = QV_RETRY_STATUS,
                                                    .statuses = (const int[]){401, 0},
                                                    .backoff_ms = 1},
                               .on_request = put_token,
                               .on_request_arg = &cache,
                           }) != QV_OK)
        return 1;
    int ok = 1;
    for (int i = 1; i <= 2; i++) {
        qv_future *f;
        qv_response *r;
        if (qv_get(s, &f, url) || qv_future_result(f, &r, -1)) {
            printf("request %d failed: %s\n", i, f ? qv_future_error(f) : "at submit");
            qv_future_release(f);
            ok = 0;
            break;
        }
        json_t *j = qv_response_json(r, NULL);
        const char *token = json_string_value(json_object_get(j, "token"));
        printf("request %d: status %d after %d attempt(s), token %s\n", i, qv_response_status(r),
               qv_response_attempts(r), token ? token : "(none)");
        /* The first needs the refresh and a retry, the second has the token. */
        ok &= qv_response_status(r) == 200 && qv_response_attempts(r) == (i == 1 ? 2 : 1);
        qv_future_release(f);
    }
    qv_session_free(s);
    printf("token refreshed %d time(s)\n", cache.refreshes);
    return ok && cache.refreshes == 1 ? 0 : 1;
}
