/*
 * as_completed — collect results in the order they finish, not the order
 * they were sent: /delay/2, /delay/0 and /delay/1 come back 0, 1, 2.
 *   as_completed [BASE_URL]
 */
#include <quiver.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("QV_BASE_URL");
    if (!base) base = getenv("QV_HTTPBIN_URL");
    if (!base) base = "http://127.0.0.1:8080";
    static const char *delays[] = {"2", "0", "1"};

    qv_session *s;
    if (qv_session_new(&s, NULL) != QV_OK) return 1;
    qv_future *fs[3];
    for (int i = 0; i < 3; i++) {
        char url[1024];
        snprintf(url, sizeof url, "%s/delay/%s", base, delays[i]);
        if (qv_get(s, &fs[i], url, .user_data = (void *)delays[i]) != QV_OK) return 1;
    }
    qv_as_completed *ac;
    if (qv_as_completed_new(&ac, fs, 3) != QV_OK) return 1;
    for (int i = 0; i < 3; i++) qv_future_release(fs[i]); /* the iterator keeps its own */

    qv_future *done;
    int n = 0;
    while (qv_as_completed_next(ac, &done, -1) == QV_OK) {
        qv_response *r;
        int rc = qv_future_result(done, &r, 0);
        printf("finished: /delay/%s -> %s\n", (const char *)qv_future_user_data(done),
               rc == QV_OK ? "200" : qv_errname(rc));
        n += rc == QV_OK;
    }
    qv_as_completed_free(ac);
    qv_session_free(s);
    return n == 3 ? 0 : 1;
}
