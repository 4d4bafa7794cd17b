/*
 * hooks — parse each response in the background (the C form of
 * requests-futures' `resp.data = resp.json()` hook) and fail the future when
 * the body is not what we expect.
 *   hooks [BASE_URL]
 */
#include <jansson.h>
#include <quiver.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Runs on a worker after the transfer: attaches the "origin" field. */
static int parse_origin(qv_session *s, qv_response *r, void *arg)
{
    (void)s;
    (void)arg;
    int err;
    json_t *j = qv_response_json(r, &err);
    const char *origin = json_string_value(json_object_get(j, "origin"));
    if (!origin) {
        qv_response_set_hook_error(r, "no origin in the answer");
        return 1; /* the future fails with QV_EHOOK and this message */
    }
    return qv_response_set_result_bytes(r, origin, strlen(origin) + 1);
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("QV_BASE_URL");
    if (!base) base = getenv("QV_HTTPBIN_URL");
    if (!base) base = "http://127.0.0.1:8080";
    char good[1024], bad[1024];
    snprintf(good, sizeof good, "%s/get", base);
    snprintf(bad, sizeof bad, "%s/uuid", base); /* JSON, but no origin */

    qv_session *s;
    if (qv_session_new(&s, NULL) != QV_OK) return 1;
    qv_future *f1, *f2;
    if (qv_get(s, &f1, good, .hook = parse_origin) || qv_get(s, &f2, bad, .hook = parse_origin))
        return 1;
    qv_response *r;
    int ok = 0;
    if (qv_future_result(f1, &r, -1) == QV_OK) {
        printf("origin: %s\n", (const char *)qv_response_result_bytes(r, NULL));
        ok++;
    }
    if (qv_future_result(f2, &r, -1) == QV_EHOOK) {
        printf("second request: %s\n", qv_future_error(f2));
        ok++;
    }
    qv_future_release(f1);
    qv_future_release(f2);
    qv_session_free(s);
    return ok == 2 ? 0 : 1;
}
