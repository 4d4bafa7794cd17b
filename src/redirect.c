/* Redirects quiver follows itself, hop by hop, where libcurl 7.88's own
 * following would be wrong:
 *  - a method other than GET, HEAD and POST goes as CURLOPT_CUSTOMREQUEST,
 *    which survives every redirect: a PUT stayed a PUT, without its body,
 *    through 302 and 303;
 *  - a body that a redirect drops leaves its Content-Type header behind;
 *  - a Cookie header of the request goes as CURLOPT_COOKIE (libcurl then
 *    merges it with the jar's cookies into one line), which libcurl sends to
 *    every host;
 *  - a Proxy-Authorization header follows libcurl to any host.
 * Such a transfer runs with CURLOPT_FOLLOWLOCATION off. When it ends on a
 * redirect, the next hop is set up here with requests' rules (303 and 302
 * turn the method into GET, unless HEAD; 301 turns POST into GET; only 307
 * and 308 keep the body), and once a hop leaves the first URL's scheme, host
 * and port, the credentials and the Authorization, Cookie and
 * Proxy-Authorization headers stay behind, for good. Every other request
 * (GET or HEAD without a body or such headers: the fast path) is followed
 * by libcurl. */
#include "internal.h"

#include <string.h>
#include <strings.h>

static int is_cookie(const char *line)
{
    return qv_header_line_is(line, "Cookie", 6);
}

/* Lines that stay with the first host. */
static int is_secret(const char *line)
{
    return is_cookie(line) || qv_header_line_is(line, "Authorization", 13) ||
           qv_header_line_is(line, "Proxy-Authorization", 19);
}

/* Lines that describe a body. */
static int is_body(const char *line)
{
    return qv_header_line_is(line, "Content-Type", 12) ||
           qv_header_line_is(line, "Content-Length", 14) ||
           qv_header_line_is(line, "Transfer-Encoding", 17);
}

static const struct curl_slist *request_lines(const qv_slot *slot)
{
    return slot->attempt_headers ? slot->attempt_headers : slot->f->req.headers;
}

/* The request's lines but those the next hop must not send: the Cookie line
 * (CURLOPT_COOKIE carries it), and others as the hop requires. */
static CURLcode hop_lines(qv_slot *slot, int drop_secrets, int drop_body)
{
    struct curl_slist *out = NULL;
    for (const struct curl_slist *l = request_lines(slot); l; l = l->next) {
        if (is_cookie(l->data) || (drop_secrets && is_secret(l->data)) ||
            (drop_body && is_body(l->data)))
            continue;
        struct curl_slist *n = curl_slist_append(out, l->data);
        if (!n) {
            curl_slist_free_all(out);
            return CURLE_OUT_OF_MEMORY;
        }
        out = n;
    }
    CURLcode cc = curl_easy_setopt(slot->easy, CURLOPT_HTTPHEADER, out);
    if (cc) {
        curl_slist_free_all(out);
        return cc;
    }
    curl_slist_free_all(slot->hop_headers);
    slot->hop_headers = out;
    return CURLE_OK;
}

/* The last Cookie line of lines, and whether one is Proxy-Authorization. */
static const char *scan_lines(const struct curl_slist *lines, int *proxy_auth)
{
    const char *cookie = NULL;
    *proxy_auth = 0;
    for (const struct curl_slist *l = lines; l; l = l->next) {
        if (is_cookie(l->data)) cookie = l->data;
        *proxy_auth |= qv_header_line_is(l->data, "Proxy-Authorization", 19);
    }
    return cookie;
}

int qv_redirect_lines_plain(const struct curl_slist *lines)
{
    int proxy_auth;
    return !scan_lines(lines, &proxy_auth) && !proxy_auth;
}

CURLcode qv_redirect_setup(qv_slot *slot)
{
    const qv_req *r = &slot->f->req;
    const qv_session *s = slot->f->session;
    const struct curl_slist *lines = request_lines(slot);
    int proxy_auth = 0;
    /* (a session's own lines were looked at once, when it was made) */
    const char *cookie = s && lines == s->default_headers && s->default_lines_plain
                             ? NULL
                             : scan_lines(lines, &proxy_auth);
    /* libcurl keeps a dropped body's Content-Type: any body is followed here */
    int plain = (strcmp(r->method, "GET") == 0 && !r->has_body && !r->nparts) ||
                strcmp(r->method, "HEAD") == 0;
    slot->self_follow = r->follow && (!plain || cookie || proxy_auth);
    slot->hops = 0;
    slot->left_origin = 0;
    slot->body_dropped = 0;
    slot->hop_method = r->method;
    slot->prior_us = 0;
    slot->prior_conns = 0;
    if (!slot->self_follow && !cookie) return CURLE_OK;
    slot->dirty = 1; /* options a reset must take back */
    CURLcode cc = CURLE_OK;
    if (cookie) {
        const char *v = cookie + 6; /* "Cookie: v"; "Cookie;" and "Cookie:" carry none */
        v += strspn(v, ":; ");
        cc = hop_lines(slot, 0, 0);
        if (!cc && *v) cc = curl_easy_setopt(slot->easy, CURLOPT_COOKIE, v);
    }
    if (!cc && slot->self_follow) cc = curl_easy_setopt(slot->easy, CURLOPT_FOLLOWLOCATION, 0L);
    return cc;
}

/* Scheme, host and port of a URL, as a comparable string (NULL: unparsable). */
static char *origin(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *o = NULL;
    if (u && !curl_url_set(u, CURLUPART_URL, url, 0) &&
        !curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) &&
        !curl_url_get(u, CURLUPART_HOST, &host, 0) &&
        !curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT))
        o = qv_asprintf("%s://%s:%s", scheme, host, port);
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return o;
}

static int same_origin(const char *a, const char *b)
{
    char *oa = origin(a), *ob = origin(b);
    int same = oa && ob && strcasecmp(oa, ob) == 0;
    qv_free(oa);
    qv_free(ob);
    return same;
}

/* Method and body of the next hop (requests' rebuild_method). */
static CURLcode next_method(qv_slot *slot, long status)
{
    CURL *e = slot->easy;
    const char *m = slot->hop_method;
    if (strcmp(m, "HEAD") == 0) return CURLE_OK;
    if (status == 307 || status == 308) return qv_upload_rewind(slot); /* the body again */
    if (status == 302 || status == 303 || (status == 301 && strcmp(m, "POST") == 0))
        slot->hop_method = "GET";
    slot->body_dropped = 1;
    CURLcode cc = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L); /* no body */
    if (!cc)
        cc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST,
                              strcmp(slot->hop_method, "GET") ? slot->hop_method : NULL);
    return cc;
}

static CURLcode drop_credentials(CURL *e)
{
    CURLcode cc = curl_easy_setopt(e, CURLOPT_COOKIE, NULL);
    if (!cc) cc = curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    if (!cc) cc = curl_easy_setopt(e, CURLOPT_USERNAME, NULL);
    if (!cc) cc = curl_easy_setopt(e, CURLOPT_PASSWORD, NULL);
    if (!cc) cc = curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, NULL);
    return cc;
}

/* The next hop to `url` after a `status` response; a failure to report in
 * *cc and the error buffer, or CURLE_OK. */
static CURLcode next_hop(qv_slot *slot, const char *url, long status)
{
    const qv_req *r = &slot->f->req;
    CURL *e = slot->easy;
    if (slot->hops >= r->max_redirects) {
        snprintf(slot->errbuf, sizeof(slot->errbuf), "Maximum (%d) redirects followed",
                 r->max_redirects);
        return CURLE_TOO_MANY_REDIRECTS;
    }
    if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8)) {
        snprintf(slot->errbuf, sizeof(slot->errbuf), "redirect to a scheme other than http(s)");
        return CURLE_UNSUPPORTED_PROTOCOL;
    }
    curl_off_t total = 0;
    long conns = 0;
    curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &total);
    curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &conns);
    slot->prior_us += total;
    slot->prior_conns += conns;
    if (r->timeout_ms >= 0) {
        long left = r->timeout_ms - (long)(slot->prior_us / 1000);
        if (left <= 0) {
            snprintf(slot->errbuf, sizeof(slot->errbuf), "Operation timed out after %ld ms",
                     r->timeout_ms);
            return CURLE_OPERATION_TIMEDOUT;
        }
        CURLcode cc = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, left);
        if (cc) return cc;
    }
    slot->hops++;
    int was_out = slot->left_origin;
    slot->left_origin |= !same_origin(url, r->url);
    CURLcode cc = next_method(slot, status);
    if (!cc) cc = hop_lines(slot, slot->left_origin, slot->body_dropped);
    if (!cc && slot->left_origin && !was_out) cc = drop_credentials(e);
    if (!cc) cc = qv_transfer_set_url(slot, url);
    return cc;
}

int qv_redirect_next(qv_slot *slot, CURLM *multi, CURLcode *cc)
{
    if (!slot->self_follow || *cc != CURLE_OK || slot->abort != QV_ABORT_NONE) return 0;
    long status = 0;
    char *location = NULL;
    curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(slot->easy, CURLINFO_REDIRECT_URL, &location);
    if (status < 300 || status > 399 || !location) return 0;
    char *url = qv_strdup(location); /* the handle's own string changes with the URL */
    if (!url) {
        *cc = CURLE_OUT_OF_MEMORY;
        return 0;
    }
    curl_multi_remove_handle(multi, slot->easy);
    *cc = next_hop(slot, url, status);
    qv_free(url);
    if (*cc == CURLE_OK && curl_multi_add_handle(multi, slot->easy) != CURLM_OK)
        *cc = CURLE_OUT_OF_MEMORY;
    return *cc == CURLE_OK;
}
