/*
 * post_json — send a JSON body, read the JSON answer.
 *   post_json [BASE_URL]   (else $QV_BASE_URL, $QV_HTTPBIN_URL, http://127.0.0.1:8080)
 */
#include <jansson.h>
#include <quiver.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("QV_BASE_URL");
    if (!base) base = getenv("QV_HTTPBIN_URL");
    if (!base) base = "http://127.0.0.1:8080";
    char url[1024];
    snprintf(url, sizeof url, "%s/post", base);

    qv_session *s;
    if (qv_session_new(&s, NULL) != QV_OK) return 1;
    json_t *body = json_pack("{s:s, s:i}", "name", "quiver", "arrows", 12);
    qv_future *f;
    /* The body is serialised at submit: it can be released right away. */
    int rc = qv_post(s, &f, url, .json = body);
    json_decref(body);
    if (rc != QV_OK) {
        fprintf(stderr, "submit: %s\n", qv_strerror(rc));
        qv_session_free(s);
        return 1;
    }
    qv_response *r;
    int ok = 0;
    if (qv_future_result(f, &r, -1) != QV_OK) {
        printf("failed: %s\n", qv_future_error(f));
    } else {
        int err;
        json_t *echo = qv_response_json(r, &err); /* httpbin echoes the JSON it got */
        json_t *sent = echo ? json_object_get(echo, "json") : NULL;
        printf("status %d, server saw name=%s arrows=%lld\n", qv_response_status(r),
               json_string_value(json_object_get(sent, "name")),
               (long long)json_integer_value(json_object_get(sent, "arrows")));
        ok = qv_response_status(r) == 200 && sent;
    }
    qv_future_release(f);
    qv_session_free(s);
    return ok ? 0 : 1;
}
