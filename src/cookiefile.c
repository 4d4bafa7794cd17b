/* Cookie files: the jar read from and written to a Netscape cookie file
 * (the format of curl's cookie jars: a line per cookie, seven fields
 * separated by tabs), written atomically. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A cookie line: seven fields (domain, subdomains, path, secure, expiry,
 * name, value), the value possibly empty. */
static int cookie_line(const char *line)
{
    int tabs = 0;
    for (const char *p = line; *p; p++) tabs += *p == '\t';
    return tabs == 6 && line[0] != '\t';
}

int qv_cookie_line_expired(const char *line, time_t now)
{
    const char *expires = line;
    for (int i = 0; i < 4 && expires; i++)
        if ((expires = strchr(expires, '\t'))) expires++;
    long long exp = expires ? strtoll(expires, NULL, 10) : 0;
    return exp > 0 && exp < (long long)now;
}

/* Comments and blank lines are skipped; "#HttpOnly_" starts a cookie. */
static int skipped(const char *line)
{
    return !*line || (line[0] == '#' && strncmp(line, "#HttpOnly_", 10) != 0);
}

/* The next line of fp, without its line end, in b: 1, or 0 at the end. */
static int next_line(FILE *fp, qv_buf *b, int *rc)
{
    char chunk[1024];
    b->len = 0;
    if (b->data) b->data[0] = '\0';
    while (fgets(chunk, sizeof(chunk), fp)) {
        size_t n = strlen(chunk);
        int end = n && chunk[n - 1] == '\n';
        while (n && (chunk[n - 1] == '\n' || chunk[n - 1] == '\r')) n--;
        if ((*rc = qv_buf_append(b, chunk, n))) return 0;
        if (end) return 1;
    }
    return b->len > 0;
}

int qv_cookie_file_read(const char *path, struct curl_slist **out)
{
    *out = NULL;
    FILE *fp = fopen(path, "re");
    if (!fp && errno == ENOENT) return QV_OK; /* no jar yet: an empty one */
    if (!fp) {
        qv_set_last_error("cannot read the cookie file %s: %s", path, strerror(errno));
        return QV_EIO;
    }
    qv_buf b = {0};
    int rc = QV_OK;
    long lineno = 0;
    errno = 0;
    while (!rc && next_line(fp, &b, &rc)) {
        const char *line = b.data ? b.data : "";
        lineno++;
        if (skipped(line)) continue;
        if (!cookie_line(line)) {
            qv_set_last_error("line %ld of the cookie file %s is not a cookie (seven fields "
                              "separated by tabs) nor a comment",
                              lineno, path);
            rc = QV_EINVAL;
            break;
        }
        struct curl_slist *l = curl_slist_append(*out, line);
        if (!l)
            rc = QV_ENOMEM;
        else
            *out = l;
    }
    if (!rc && ferror(fp)) { /* e.g. a directory */
        qv_set_last_error("cannot read the cookie file %s: %s", path, strerror(errno));
        rc = QV_EIO;
    }
    qv_buf_free(&b);
    fclose(fp);
    if (rc) {
        curl_slist_free_all(*out);
        *out = NULL;
    }
    return rc;
}

int qv_session_load_cookie_file(qv_session *s, const char *path)
{
    struct curl_slist *lines = NULL;
    int rc = qv_cookie_file_read(path, &lines);
    if (!rc && lines) rc = qv_session_jar_replace(s, lines);
    curl_slist_free_all(lines);
    return rc;
}

static int save_error(const char *path, const char *what, int err)
{
    qv_set_last_error("cannot save the cookies to %s: %s: %s", path, what, strerror(err));
    return QV_EIO;
}

/* The file's lines, on disk (flushed and synced) before it is renamed:
 * 0, or -1 with errno set. */
static int write_lines(FILE *fp, const struct curl_slist *lines)
{
    int bad = fputs("# Netscape HTTP Cookie File\n"
                    "# Written by quiver; read by curl -b and quiver's cookie_file.\n\n",
                    fp) < 0;
    time_t now = time(NULL);
    for (const struct curl_slist *l = lines; l && !bad; l = l->next)
        if (!qv_cookie_line_expired(l->data, now))
            bad = fputs(l->data, fp) < 0 || fputc('\n', fp) < 0;
    return bad || fflush(fp) || fsync(fileno(fp)) ? -1 : 0;
}

int qv_session_save_cookies(qv_session *s, const char *path)
{
    if (!s || !path || !*path) return QV_EINVAL;
    qv_set_last_error("%s", "");
    /* No version the jar can be at: it is always exported. */
    uint64_t version = UINT64_MAX;
    struct curl_slist *lines = NULL;
    int rc = qv_session_jar_export(s, NULL, &version, &lines);
    char *tmp = rc ? NULL : qv_asprintf("%s.XXXXXX", path);
    if (!rc && !tmp) rc = QV_ENOMEM;
    int fd = rc ? -1 : mkostemp(tmp, O_CLOEXEC);
    if (!rc && fd < 0) rc = save_error(path, "cannot make a file beside it", errno);
    FILE *fp = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!rc && !fp) {
        rc = save_error(path, "cannot write", errno);
        close(fd);
    }
    if (!rc && write_lines(fp, lines)) rc = save_error(path, "cannot write", errno);
    if (fp && fclose(fp) && !rc) rc = save_error(path, "cannot write", errno);
    if (!rc && rename(tmp, path))
        rc = save_error(path, "cannot rename the new file over it", errno);
    if (rc && fd >= 0) unlink(tmp);
    qv_free(tmp);
    curl_slist_free_all(lines);
    return rc;
}
