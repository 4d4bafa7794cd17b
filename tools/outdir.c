/* Safe, collision-free file names for URLs, and atomic saves. */
#include "outdir.h"

#include "cli.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Longest readable part of a name; with the hash and extension the whole
 * stays far below NAME_MAX (255). */
#define STEM_MAX 100
#define EXT_MAX  8

int cli_outdir_prepare(const char *cmd, const char *dir)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        cli_error(cmd, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cli_error(cmd, "%s is not a directory", dir);
        return -1;
    }
    return 0;
}

static int safe_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

static int alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* FNV-1a, 64 bits: stable across runs and machines (unlike a seeded hash),
 * so re-running a fetch overwrites the same files. */
static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* The extension of the path's last segment ("json" for /a/b.json?x), if it
 * looks like one: 1 to EXT_MAX letters and digits. */
static void extension(const char *rest, char *ext)
{
    ext[0] = '\0';
    size_t plen = strcspn(rest, "?#");
    const char *slash = memchr(rest, '/', plen);
    if (!slash) return; /* no path: "host:port" has no extension */
    const char *seg = slash;
    for (const char *p = slash; p < rest + plen; p++)
        if (*p == '/') seg = p + 1;
    const char *dot = NULL;
    for (const char *p = seg; p < rest + plen; p++)
        if (*p == '.') dot = p;
    if (!dot) return;
    size_t n = (size_t)(rest + plen - dot - 1);
    if (n == 0 || n > EXT_MAX) return;
    for (size_t i = 0; i < n; i++)
        if (!alnum(dot[1 + i])) return;
    memcpy(ext, dot + 1, n);
    ext[n] = '\0';
}

char *cli_outdir_name(const char *url)
{
    /* The scheme says nothing the hash does not; the fragment is never sent. */
    const char *rest = strstr(url, "://");
    rest = rest ? rest + 3 : url;
    size_t len = strcspn(rest, "#");

    char stem[STEM_MAX + 1];
    size_t n = 0;
    for (size_t i = 0; i < len && n < STEM_MAX; i++) {
        char c = safe_char(rest[i]) ? rest[i] : '_';
        char prev = n ? stem[n - 1] : '\0';
        /* Runs of unsafe characters become one '_'; a '.' never starts the
         * name or follows '.' or '_', so ".." cannot appear. */
        if (c == '.' && (n == 0 || prev == '.' || prev == '_')) c = '_';
        if (c == '-' && n == 0) c = '_'; /* "-rf..." would read as an option */
        if (c == '_' && prev == '_') continue;
        stem[n++] = c;
    }
    while (n > 0 && (stem[n - 1] == '_' || stem[n - 1] == '.')) n--;
    stem[n] = '\0';
    if (n == 0) strcpy(stem, "index");

    char ext[EXT_MAX + 1];
    extension(rest, ext);
    /* 48 bits of hash: a collision needs ~16 million distinct URLs in one
     * directory to become likely. */
    unsigned long long h = (unsigned long long)(fnv1a(url) >> 16);
    size_t size = strlen(stem) + 1 + 12 + 1 + strlen(ext) + 1;
    char *name = malloc(size);
    if (!name) return NULL;
    snprintf(name, size, "%s-%012llx%s%s", stem, h, ext[0] ? "." : "", ext);
    return name;
}
