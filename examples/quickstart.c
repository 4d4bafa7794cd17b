/*
 * quickstart — the requests-futures quickstart in C.
 *
 * Three GETs go out at once; the results are then collected in order. Usage:
 *   quickstart [BASE_URL]   (else $QV_BASE_URL, else $QV_HTTPBIN_URL (set by the
 *                            test scripts), else http://127.0.0.1:8080)
 * BASE_URL must serve httpbin's /get, which echoes the query in "args".
 */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>
#include <quiver.h>

#define NREQ 3

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("QV_BASE_URL");
    if (!base || !*base) base = getenv("QV_HTTPBIN_URL");
    if (!base || !*base) base = "http://127.0.0.1:8080";

    char url[1024];
    if (snprintf(url, sizeof url, "%s/get", base) >= (int)sizeof url) {
        fprintf(stderr, "base URL too long\n");
        return 1;
    }

    qv_session *s;
    int rc = qv_session_new(&s, NULL);
    if (rc != QV_OK) {
        fprintf(stderr, "qv_session_new: %s\n", qv_strerror(rc));
        return 1;
    }

    /* Submitting never waits for the network: all three run concurrently.
     * The params are copied at submit, so a stack buffer is fine. */
    qv_future *f[NREQ] = {0};
    for (int i = 0; i < NREQ; i++) {
        char idstr[16];
        snprintf(idstr, sizeof idstr, "%d", i + 1);
        rc = qv_get(s, &f[i], url, .params = (const qv_param[]){{"id", idstr}, {0}});
        if (rc != QV_OK) {
            /* Only bad arguments or shutdown fail here, never the network. */
            printf("Request %d failed: %s\n", i + 1, qv_strerror(rc));
            f[i] = NULL;
        }
    }

    int ok = 0;
    for (int i = 0; i < NREQ; i++) {
        if (!f[i]) continue;
        qv_response *r;
        if (qv_future_result(f[i], &r, -1) != QV_OK) {
            /* Errors are shifted to the result: network failures show up here. */
            printf("Request %d failed: %s\n", i + 1, qv_future_error(f[i]));
        } else {
            printf("Request %d Status: %d\n", i + 1, qv_response_status(r));
            int err;
            json_t *j = qv_response_json(r, &err); /* owned by the response */
            char *args = j ? json_dumps(json_object_get(j, "args"), JSON_SORT_KEYS) : NULL;
            if (args) {
                printf("Request %d Content: %s\n", i + 1, args);
                free(args);
                ok++;
            } else {
                const char *why = j ? "no \"args\" object" : qv_response_json_error(r);
                printf("Request %d Content: not httpbin JSON (%s)\n", i + 1,
                       why ? why : "invalid JSON");
            }
        }
        qv_future_release(f[i]); /* also frees the response */
    }

    qv_session_free(s);
    return ok == NREQ ? 0 : 1;
}
