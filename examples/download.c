/*
 * download — the three ways to take a large body without holding it in
 * memory: to a file (output_path), to a callback (on_data), or pulled by
 * the reader (stream = 1 and qv_response_read). All three fetch the same
 * bytes; the example checks that they agree.
 *   download [BASE_URL]   (else $QV_BASE_URL, $QV_HTTPBIN_URL, http://127.0.0.1:8080)
 */
#include <quiver.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define SIZE 100000 /* httpbin's /range: the alphabet over and over, at most 100 KiB */

/* FNV-1a over the bytes, to compare the three copies. */
typedef struct digest {
    unsigned long long h, n;
} digest;

static void add(digest *d, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) d->h = (d->h ^ c[i]) * 1099511628211ULL;
    d->n += n;
}

static int on_data(qv_future *f, const void *chunk, size_t len, void *arg)
{
    (void)f;
    add(arg, chunk, len);
    return 0; /* non-zero would stop the transfer (QV_EHOOK) */
}

static void on_progress(qv_future *f, long long dl_now, long long dl_total, long long ul_now,
                        long long ul_total, void *arg)
{
    (void)f, (void)ul_now, (void)ul_total, (void)arg;
    fprintf(stderr, "\r  %lld of %lld bytes", dl_now, dl_total);
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : getenv("QV_BASE_URL");
    if (!base) base = getenv("QV_HTTPBIN_URL");
    if (!base) base = "http://127.0.0.1:8080";
    char url[1024], path[64];
    snprintf(url, sizeof url, "%s/range/%d", base, SIZE);
    snprintf(path, sizeof path, "/tmp/quiver-download-%ld.bin", (long)getpid());

    qv_session *s;
    if (qv_session_new(&s, NULL) != QV_OK) return 1;
    digest file = {14695981039346656037ULL, 0}, pushed = file, pulled = file;
    qv_future *f[3];
    qv_response *r;
    int ok = 1;

    /* 1. To a file: written as it arrives, renamed into place when complete. */
    qv_get(s, &f[0], url, .output_path = path, .on_progress = on_progress);
    /* 2. To a callback, chunk by chunk. */
    qv_get(s, &f[1], url, .on_data = on_data, .on_data_arg = &pushed);
    /* 3. Pulled: the future completes with the headers; read at your pace. */
    qv_get(s, &f[2], url, .stream = 1);

    if (qv_future_result(f[0], &r, -1) == QV_OK) {
        fprintf(stderr, "\n");
        printf("to a file: %lld bytes in %s\n", qv_response_body_bytes(r), path);
        FILE *fp = fopen(path, "rb");
        char buf[8192];
        size_t n;
        while (fp && (n = fread(buf, 1, sizeof buf, fp)) > 0) add(&file, buf, n);
        if (fp) fclose(fp);
        remove(path);
    } else {
        printf("to a file failed: %s\n", qv_future_error(f[0]));
        ok = 0;
    }
    if (qv_future_result(f[1], &r, -1) == QV_OK) {
        printf("to a callback: %llu bytes\n", pushed.n);
    } else {
        printf("to a callback failed: %s\n", qv_future_error(f[1]));
        ok = 0;
    }
    if (qv_future_result(f[2], &r, -1) == QV_OK) {
        char buf[4096];
        size_t n;
        int rc;
        while ((rc = qv_response_read(r, buf, sizeof buf, &n, -1)) == QV_OK && n > 0)
            add(&pulled, buf, n);
        if (rc != QV_OK) {
            printf("pulling failed: %s\n", qv_response_read_error(r));
            ok = 0;
        }
        printf("pulled: %llu bytes\n", pulled.n);
    } else {
        printf("pulling failed: %s\n", qv_future_error(f[2]));
        ok = 0;
    }
    for (int i = 0; i < 3; i++) qv_future_release(f[i]);
    qv_session_free(s);

    int same = file.n == SIZE && pushed.n == SIZE && pulled.n == SIZE && file.h == pushed.h &&
               pushed.h == pulled.h;
    printf("the three copies %s\n", same ? "agree" : "differ");
    return ok && same ? 0 : 1;
}
