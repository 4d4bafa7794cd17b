/*
 * errors — timeouts and errors surface at the result, each with its kind
 * and a message naming the request; a 404 is a response, not an error.
 *   errors [BASE_URL]
 */
#include <quiver.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("QV_BASE_URL");
    if (!base) base = getenv("QV_HTTPBIN_URL");
    if (!base) base = "http://127.0.0.1:8080";
    char delay[1024], missing[1024];
    snprintf(delay, sizeof delay, "%s/delay/3", base);
    snprintf(missing, sizeof missing, "%s/status/404", base);

    qv_session *s;
    if (qv_session_new(&s, NULL) != QV_OK) return 1;
    qv_future *f[4];
    qv_get(s, &f[0], delay, .timeout_ms = 500);      /* total timeout */
    qv_get(s, &f[1], delay, .read_timeout_ms = 500); /* no data for 500 ms */
    qv_get(s, &f[2], "http://127.0.0.1:1/");         /* nothing listens there */
    qv_get(s, &f[3], missing);                       /* an answer, with status 404 */
    static const int expect[] = {QV_ETIMEOUT, QV_EREAD_TIMEOUT, QV_ECONNECT, QV_OK};
    int ok = 0;
    for (int i = 0; i < 4; i++) {
        qv_response *r;
        int rc = qv_future_result(f[i], &r, -1);
        if (rc == QV_OK)
            printf("%d: status %d (raise_for_status: %s)\n", i, qv_response_status(r),
                   qv_errname(qv_response_raise_for_status(r)));
        else
            printf("%d: %s: %s\n", i, qv_errname(rc), qv_future_error(f[i]));
        ok += rc == expect[i];
        qv_future_release(f[i]);
    }
    qv_session_free(s);
    return ok == 4 ? 0 : 1;
}
