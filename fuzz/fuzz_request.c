/*
 * Fuzz target: building a request from a session and request options — the
 * URL and its query parameters, header validation and merging, bodies
 * (raw, form, multipart, JSON), credentials — through qv_session_new,
 * qv_request and the internal qv_req_build.
 *
 * No request ever reaches the network: every session shares one executor
 * that is shut down before the first input, so a request that passes
 * validation ends with QV_ESHUTDOWN at submit (or, with a URL libcurl
 * refuses, as a future already FAILED with QV_EURL). A submit that succeeds
 * with a future still pending would mean work was queued: that aborts.
 *
 * Input: fields separated by NUL bytes (fields.h); a field's first byte
 * says what the rest is:
 *   U url   M method   H req header "name:value" (no ':': value NULL)
 *   P req param "n=v"  F form field "n=v"  m multipart part "n=v"
 *   B raw body   J JSON body (used if jansson parses it)
 *   u username   p password   a auth kind (first byte % 5; 4 is invalid)
 *   S session header "name:value"   Q session param   C session cookie
 *   A user agent   N flags (bytes: no_redirects, insecure, max_redirects)
 *
 * Checked beyond "no crash, no leak, no undefined behaviour":
 *  - CR or LF in the URL, a header, a credential, or a header name that is
 *    not a token (checked against fields.h's own reference) is QV_EINVAL;
 *  - a request that builds has no CR/LF in any header line; its URL, unless
 *    refused at submit, starts with http:// or https:// and carries the
 *    parameters, form-encoded, in order (nothing smuggled in or lost); and
 *    if libcurl's parser accepts it (as the transfer will), what libcurl
 *    sends has no control characters or spaces, and its host is the
 *    request's host;
 *  - qv_request agrees with qv_req_build.
 */
#include "../src/internal.h"
#include "fields.h"

#include <jansson.h>
#include <stdio.h>
#include <strings.h>

#define MAXN 16 /* pairs of each kind used */

static qv_executor *shut_ex; /* shut down: nothing submitted ever runs */
static qv_session *holder;   /* keeps it alive (a global: reachable at exit) */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (qv_executor_new(&shut_ex, NULL) ||
        qv_session_new(&holder,
                       &(qv_session_opts){.size = sizeof(qv_session_opts), .executor = shut_ex}))
        abort();
    /* The holder's reference keeps the executor alive after the free,
     * which only shuts it down; the holder lives as long as the process. */
    qv_executor_free(shut_ex);
    return 0;
}

typedef struct pairs {
    qv_pair p[MAXN + 1];
    size_t n;
    int bad; /* a name that is not a token, or CR/LF in a name or value */
} pairs;

/* "name<sep>value" into the next pair (no sep: value NULL). */
static void add_pair(pairs *ps, char *s, char sep)
{
    if (ps->n == MAXN) return;
    char *v = strchr(s, sep);
    if (v) *v++ = '\0';
    ps->p[ps->n].name = s;
    ps->p[ps->n].value = v;
    ps->n++;
    if (!fz_is_token(s) || fz_has_crlf(v)) ps->bad = 1;
}

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_request: %s: %s\n", what, detail ? detail : "");
    abort();
}

/* application/x-www-form-urlencoded, as a reference: unreserved bytes as
 * they are, space as '+', everything else %XX. */
static void form_encode(qv_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[4];
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            strchr("-._~", c)) {
            tmp[0] = (char)c;
            tmp[1] = '\0';
        } else if (c == ' ') {
            strcpy(tmp, "+");
        } else {
            snprintf(tmp, sizeof(tmp), "%%%02X", c);
        }
        if (qv_buf_puts(b, tmp)) abort();
    }
}

static void expect_query(const char *url, const pairs *sess, const pairs *req)
{
    qv_buf want = {0};
    const pairs *all[2] = {sess, req};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < all[k]->n; i++) {
            const qv_pair *p = &all[k]->p[i];
            if (!p->value) continue;
            if (want.len && qv_buf_puts(&want, "&")) abort();
            form_encode(&want, p->name);
            if (qv_buf_puts(&want, "=")) abort();
            form_encode(&want, p->value);
        }
    }
    if (want.len) {
        /* The parameters come last in the query, before any fragment. */
        const char *q = strchr(url, '?');
        const char *end = strchr(url, '#');
        size_t qlen = q ? (size_t)((end ? end : url + strlen(url)) - q - 1) : 0;
        if (!q || qlen < want.len || strncasecmp(q + 1 + qlen - want.len, want.data, want.len))
            fail("the parameters are not at the end of the query", url);
    }
    qv_buf_free(&want);
}

/* r_host, as libcurl normalises a host, is the host libcurl parsed. */
static int same_host(const char *r_host, const char *parsed)
{
    if (!r_host) return 0;
    if (strcasecmp(r_host, parsed) == 0) return 1;
    qv_buf b = {0};
    if (qv_buf_puts(&b, "http://") || qv_buf_puts(&b, r_host) || qv_buf_puts(&b, "/")) abort();
    CURLU *u = curl_url();
    char *h = NULL;
    int same = u && curl_url_set(u, CURLUPART_URL, b.data, 0) == CURLUE_OK &&
               curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK && strcasecmp(h, parsed) == 0;
    curl_free(h);
    curl_url_cleanup(u);
    qv_buf_free(&b);
    return same;
}

static void check_built(const qv_req *r, const pairs *sess, const pairs *req)
{
    for (const struct curl_slist *l = r->headers; l; l = l->next)
        if (fz_has_crlf(l->data)) fail("CR/LF in a header line", l->data);
    if (r->url_error_msg) return; /* refused at submit: fails with QV_EURL, never sent */
    if (strncasecmp(r->url, "http://", 7) && strncasecmp(r->url, "https://", 8))
        fail("an accepted URL that is not http(s)", r->url);
    /* The transfer hands r->url to libcurl, which parses it again (a URL it
     * refuses then fails with QV_EURL): what it accepts is what is sent. */
    CURLU *u = curl_url();
    if (!u) abort();
    char *full = NULL, *host = NULL;
    /* The host first: in libcurl 7.88, getting the whole URL may rewrite
     * the stored host (percent-encoding a '%' in it). */
    if (curl_url_set(u, CURLUPART_URL, r->url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK) {
        for (const unsigned char *c = (const unsigned char *)full; *c; c++)
            if (*c <= 0x20 || *c == 0x7f) fail("a control character or space in the URL", full);
        /* The host quiver seeds the session's any-host cookies for is the
         * host libcurl connects to, up to libcurl's own normalisation of
         * it ("12" is 0.0.0.12). */
        if (!same_host(r->host, host))
            fail("the request's host is not the one libcurl parses", r->url);
    }
    curl_free(full);
    curl_free(host);
    curl_url_cleanup(u);
    expect_query(r->url, sess, req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_fields in = fz_split(data, size);
    pairs hdr = {0}, prm = {0}, form = {0}, parts = {0}, shdr = {0}, sprm = {0}, scookie = {0};
    qv_part mp[MAXN + 1] = {{0}};
    qv_request_opts o = {.size = sizeof(o), .url = ""};
    qv_session_opts so = {.size = sizeof(so), .executor = shut_ex};
    json_t *json = NULL;
    for (size_t i = 0; i < in.n; i++) {
        char *f = in.f[i], *v = f + (*f ? 1 : 0);
        switch (*f) {
        case 'U':
            o.url = v;
            break;
        case 'M':
            o.method = v;
            break;
        case 'H':
            add_pair(&hdr, v, ':');
            break;
        case 'P':
            add_pair(&prm, v, '=');
            break;
        case 'F':
            add_pair(&form, v, '=');
            break;
        case 'm':
            add_pair(&parts, v, '=');
            break;
        case 'B':
            o.body = v;
            break;
        case 'J':
            if (!json) json = json_loads(v, JSON_DECODE_ANY, NULL);
            break;
        case 'u':
            o.username = v;
            break;
        case 'p':
            o.password = v;
            break;
        case 'a':
            o.auth = (qv_auth_kind)((unsigned char)*v % 5);
            break;
        case 'S':
            add_pair(&shdr, v, ':');
            break;
        case 'Q':
            add_pair(&sprm, v, '=');
            break;
        case 'C':
            add_pair(&scookie, v, '=');
            break;
        case 'A':
            so.user_agent = v;
            break;
        case 'N':
            if (v[0]) o.no_redirects = (signed char)v[0] % 2;
            if (v[0] && v[1]) o.insecure = (signed char)v[1] % 2;
            if (v[0] && v[1] && v[2]) o.max_redirects = (unsigned char)v[2];
            break;
        default:
            break;
        }
    }
    /* The last field of a kind wins, so this is decided once all are read. */
    int expect_einval = fz_has_crlf(o.url) || hdr.bad || (o.method && !fz_is_token(o.method)) ||
                        fz_has_crlf(o.username) || fz_has_crlf(o.password) ||
                        (unsigned)o.auth > QV_AUTH_BEARER;
    if (hdr.n) o.headers = hdr.p;
    if (prm.n) o.params = prm.p;
    if (form.n) o.form = form.p;
    if (json) o.json = json;
    if (parts.n) {
        for (size_t i = 0; i < parts.n; i++) {
            mp[i].name = parts.p[i].name;
            mp[i].value = parts.p[i].value ? parts.p[i].value : "";
        }
        o.multipart = mp;
    }
    if (shdr.n) so.headers = shdr.p;
    if (sprm.n) so.params = sprm.p;
    if (scookie.n) so.cookies = scookie.p;

    qv_session *s = NULL;
    int rc = qv_session_new(&s, &so);
    if (rc == QV_OK) {
        if (shdr.bad || fz_has_crlf(so.user_agent)) fail("a bad session header accepted", NULL);
        qv_req r;
        memset(&r, 0, sizeof(r)); /* an empty arena: qv_req_build keeps r's */
        int brc = qv_req_build(&r, s, &o);
        if (expect_einval && brc != QV_EINVAL)
            fail("a bad request was not refused", qv_errname(brc));
        if (brc != QV_OK && brc != QV_EINVAL && brc != QV_EJSON)
            fail("qv_req_build: unexpected error", qv_errname(brc));
        if (brc == QV_OK) check_built(&r, &sprm, &prm);
        int url_error = brc == QV_OK && r.url_error_msg;
        qv_req_free(&r);

        qv_future *f = NULL;
        rc = qv_request(s, &f, &o);
        if (brc != QV_OK) {
            if (rc != brc) fail("qv_request disagrees with qv_req_build", qv_errname(rc));
        } else if (url_error) {
            if (rc != QV_OK || !f || qv_future_state_get(f) != QV_FAILED ||
                qv_future_error_code(f) != QV_EURL)
                fail("a refused URL did not fail the future with QV_EURL", qv_errname(rc));
        } else if (rc != QV_ESHUTDOWN) {
            /* QV_OK here would be a request on its way to the network. */
            fail("a request was accepted by a shut-down executor", qv_errname(rc));
        }
        qv_future_release(f);
        qv_session_free(s);
    } else if (rc != QV_EINVAL) {
        fail("qv_session_new: unexpected error", qv_errname(rc));
    }
    json_decref(json);
    fz_free(&in);
    return 0;
}
