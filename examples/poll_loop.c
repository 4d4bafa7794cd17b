/*
 * poll_loop — drive quiver from your own event loop: a completion queue's
 * file descriptor becomes readable as futures finish, next to whatever else
 * the loop watches (here, nothing else but a timeout).
 *   poll_loop [BASE_URL]
 */
#include <poll.h>
#include <quiver.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("QV_BASE_URL");
    if (!base) base = getenv("QV_HTTPBIN_URL");
    if (!base) base = "http://127.0.0.1:8080";
    enum { N = 20 };

    qv_session *s;
    qv_cq *cq;
    if (qv_session_new(&s, NULL) != QV_OK || qv_cq_new(&cq) != QV_OK) return 1;
    for (int i = 0; i < N; i++) {
        char url[1024];
        snprintf(url, sizeof url, "%s/anything/%d", base, i);
        qv_future *f;
        if (qv_get(s, &f, url, .user_data = (void *)(intptr_t)i) != QV_OK) return 1;
        qv_cq_add(cq, f); /* the queue keeps its own reference */
        qv_future_release(f);
    }
    int done = 0, ok = 0;
    struct pollfd p = {qv_cq_fd(cq), POLLIN, 0};
    while (done < N && poll(&p, 1, 10000) > 0) { /* your loop would watch more fds */
        qv_future *f;
        while (qv_cq_pop(cq, &f) == QV_OK) {
            qv_response *r;
            int rc = qv_future_result(f, &r, 0); /* done: never waits */
            ok += rc == QV_OK && qv_response_status(r) == 200;
            done++;
            qv_future_release(f); /* pop handed us a reference */
        }
    }
    printf("%d of %d completed through the poll loop, %d with 200\n", done, N, ok);
    qv_cq_free(cq);
    qv_session_free(s);
    return ok == N ? 0 : 1;
}
