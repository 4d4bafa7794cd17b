/* URL text shown to the user (a response's URL, a message): never with the
 * userinfo ("user:password@") a URL may carry. */
#include "internal.h"

#include <string.h>

int qv_url_userinfo(const char *url, size_t *start, size_t *end)
{
    /* (most have none: one quick scan says so) */
    if (!strchr(url, '@')) return 0;
    const char *s = strstr(url, "://");
    if (!s) return 0;
    s += 3;
    size_t alen = strcspn(s, "/?#");
    const char *at = NULL;
    for (const char *p = s; p < s + alen; p++)
        if (*p == '@') at = p; /* the last one: a password may hold '@' unescaped */
    if (!at) return 0;
    *start = (size_t)(s - url);
    *end = (size_t)(at + 1 - url);
    return 1;
}

char *qv_url_shown(const char *url)
{
    size_t a, b;
    if (!url || !qv_url_userinfo(url, &a, &b)) return qv_strdup(url ? url : "");
    return qv_asprintf("%.*s%s", (int)a, url, url + b);
}
