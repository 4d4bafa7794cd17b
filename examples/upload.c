/*
 * upload — request bodies that are not held in memory: a file sent as it is
 * read (upload_path), and a body made by a callback (on_upload). httpbin
 * echoes what it got, and the example checks it.
 *   upload [BASE_URL]   (else $QV_BASE_URL, $QV_HTTPBIN_URL, http://127.0.0.1:8080)
 */
#include <jansson.h>
#include <quiver.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINES 2000

/* Makes line i of the body ("line 0000001\n"...). */
static void line(char out[14], long i)
{
    snprintf(out, 14, "line %07u\n", (unsigned)(i % 10000000));
}

/* on_upload: fills buf with whole lines while there is room; 0 at the end. */
static long produce(void *buf, size_t cap, void *arg)
{
    long *next = arg;
    size_t n = 0;
    while (*next < LINES && cap - n >= 13) line((char *)buf + n, (*next)++), n += 13;
    return (long)n;
}

/* The body httpbin echoed ("data"), compared with the LINES lines. */
static int echoed_right(qv_future *f, const char *what)
{
    qv_response *r;
    if (qv_future_result(f, &r, -1) != QV_OK) {
        printf("%s failed: %s\n", what, qv_future_error(f));
        return 0;
    }
    int err;
    const char *data = json_string_value(json_object_get(qv_response_json(r, &err), "data"));
    int ok = qv_response_status(r) == 200 && data && strlen(data) == LINES * 13;
    char l[14];
    for (long i = 0; ok && i < LINES; i++) {
        line(l, i);
        ok = memcmp(data + i * 13, l, 13) == 0;
    }
    printf("%s: status %d, the server got %zu bytes, %s\n", what, qv_response_status(r),
           data ? strlen(data) : 0, ok ? "as sent" : "NOT as sent");
    return ok;
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("QV_BASE_URL");
    if (!base) base = getenv("QV_HTTPBIN_URL");
    if (!base) base = "http://127.0.0.1:8080";
    char put[1024], post[1024], path[64];
    snprintf(put, sizeof put, "%s/put", base);
    snprintf(post, sizeof post, "%s/post", base);
    snprintf(path, sizeof path, "/tmp/quiver-upload-%ld.txt", (long)getpid());

    FILE *fp = fopen(path, "w");
    if (!fp) return 1;
    char l[14];
    for (long i = 0; i < LINES; i++) line(l, i), fputs(l, fp);
    fclose(fp);

    qv_session *s;
    if (qv_session_new(&s, NULL) != QV_OK) return 1;
    qv_future *f[2];
    long next = 0;
    /* A file, read as it is sent; its size is the Content-Length. */
    qv_put(s, &f[0], put, .upload_path = path,
           .headers = (const qv_header[]){{"Content-Type", "text/plain"}, {0}});
    /* A body made as it is sent; with upload_len (else chunked). */
    qv_post(s, &f[1], post, .on_upload = produce, .on_upload_arg = &next, .upload_len = LINES * 13,
            .headers = (const qv_header[]){{"Content-Type", "text/plain"}, {0}});
    int ok = echoed_right(f[0], "upload_path") & echoed_right(f[1], "on_upload");
    qv_future_release(f[0]);
    qv_future_release(f[1]);
    qv_session_free(s);
    remove(path);
    return ok ? 0 : 1;
}
