/* The cookies a response set: its Set-Cookie headers, read on first use. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Trims spaces and tabs around [*p, *end). */
static void trim(const char **p, const char **end)
{
    while (*p < *end && (**p == ' ' || **p == '\t')) (*p)++;
    while (*end > *p && ((*end)[-1] == ' ' || (*end)[-1] == '\t')) (*end)--;
}

/* Whether the attributes (after the first ';') delete the cookie: Max-Age
 * 0 or less, or, without Max-Age (which wins, RFC 6265), an Expires in the
 * past. */
static int deletes(const char *attrs)
{
    int max_age = 0, has_max_age = 0;
    time_t expires = -1;
    while (attrs && *attrs) {
        const char *p = attrs + (*attrs == ';'), *end = strchr(p, ';');
        attrs = end;
        if (!end) end = p + strlen(p);
        trim(&p, &end);
        char v[64];
        size_t n = (size_t)(end - p);
        if (n > 8 && n - 8 < sizeof(v) && strncasecmp(p, "max-age=", 8) == 0) {
            memcpy(v, p + 8, n - 8);
            v[n - 8] = '\0';
            has_max_age = 1;
            max_age = strtoll(v, NULL, 10) <= 0;
        } else if (n > 8 && n - 8 < sizeof(v) && strncasecmp(p, "expires=", 8) == 0) {
            memcpy(v, p + 8, n - 8);
            v[n - 8] = '\0';
            expires = curl_getdate(v, NULL);
        }
    }
    if (has_max_age) return max_age;
    return expires != -1 && expires < time(NULL);
}

/* Notes one Set-Cookie value: the last of a name wins (value NULL: deleted). */
static int note(qv_response *r, const char *h)
{
    const char *semi = strchr(h, ';'), *end = semi ? semi : h + strlen(h);
    const char *eq = memchr(h, '=', (size_t)(end - h));
    if (!eq) return QV_OK; /* not a cookie: ignored, as a jar would */
    const char *name = h, *name_end = eq, *value = eq + 1;
    trim(&name, &name_end);
    trim(&value, &end);
    if (name == name_end) return QV_OK;
    size_t nlen = (size_t)(name_end - name);
    size_t i = 0;
    while (i < r->ncookies &&
           !(strlen(r->cookies[i].name) == nlen && !strncmp(r->cookies[i].name, name, nlen)))
        i++;
    if (i == r->ncookies) {
        qv_hdr *c = qv_realloc(r->cookies, (r->ncookies + 1) * sizeof(*c));
        if (!c) return QV_ENOMEM;
        r->cookies = c;
        r->cookies[r->ncookies++].name = NULL;
    }
    /* name and value in one block, like the session's any-host cookies */
    char *nv = qv_asprintf("%.*s%c%.*s", (int)nlen, name, '\0', (int)(end - value), value);
    if (!nv) return QV_ENOMEM;
    qv_free(r->cookies[i].name);
    r->cookies[i].name = nv;
    r->cookies[i].value = deletes(semi) ? NULL : nv + nlen + 1;
    return QV_OK;
}

const char *qv_response_cookie(const qv_response *cr, const char *name)
{
    /* const to the caller (history hops are); the cache below is guarded */
    qv_response *r = (qv_response *)cr;
    if (!r || !name) return NULL;
    const char *v = NULL;
    pthread_mutex_lock(&r->json_mu);
    if (!r->cookies_read) {
        int rc = QV_OK;
        const char *h;
        for (size_t i = 0; !rc && (h = qv_headers_get(&r->headers, "Set-Cookie", i)); i++)
            rc = note(r, h);
        r->cookies_read = rc == QV_OK; /* out of memory: tried again next time */
    }
    for (size_t i = 0; i < r->ncookies && !v; i++)
        if (strcmp(r->cookies[i].name, name) == 0) v = r->cookies[i].value;
    pthread_mutex_unlock(&r->json_mu);
    return v;
}

void qv_response_cookies_free(qv_response *r)
{
    for (size_t i = 0; i < r->ncookies; i++) qv_free(r->cookies[i].name);
    qv_free(r->cookies);
    r->cookies = NULL;
    r->ncookies = 0;
}
