/* Networks and identity: client certificates and TLS settings, proxies,
 * Unix sockets, name resolution and local binding. Checked at session
 * creation, merged into a request record at submit, and set on an easy
 * handle for the transfer. The handle keeps them for the next request with
 * the same settings (a byte signature of them tells); a request with other
 * settings, or none, has the handle reset first (transfer.c). */
#include "internal.h"

#include <string.h>
#include <strings.h>

static int str_ok(const char *s)
{
    return !s || !strpbrk(s, "\r\n");
}

/* "host:port" (host may be "[v6]"; with empty_ok, either part may be
 * empty, as libcurl's CONNECT_TO allows). */
static int host_port_ok(const char *s, int empty_ok)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon || (!empty_ok && colon == s)) return 0;
    size_t digits = strspn(colon + 1, "0123456789");
    if (colon[1 + digits] || digits > 5 || (!digits && !empty_ok)) return 0;
    return strchr(s, ',') == NULL;
}

static int pairs_ok(const qv_pair *p, int connect_to)
{
    for (; p && p->name; p++) {
        if (!str_ok(p->name) || !str_ok(p->value) || !host_port_ok(p->name, connect_to)) return 0;
        if (!p->value || !*p->value) return 0;
        /* A pin is one address (a connect-to, see pair_lines). */
        if (connect_to ? !host_port_ok(p->value, 1) : strpbrk(p->value, ", ") != NULL) return 0;
    }
    return 1;
}

static int proxies_ok(const qv_pair *p)
{
    for (; p && p->name; p++)
        if ((strcmp(p->name, "http") && strcmp(p->name, "https") && strcmp(p->name, "all")) ||
            !p->value || !str_ok(p->value))
            return 0;
    return 1;
}

int qv_net_validate(const qv_session_opts *o)
{
    const char *strs[] = {o->client_cert,    o->client_key,        o->key_password,
                          o->ca_path,        o->pinned_public_key, o->no_proxy,
                          o->proxy_username, o->proxy_password,    o->proxy_ca_file,
                          o->unix_socket,    o->interface};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        if (!str_ok(strs[i])) return QV_EINVAL;
    if (!proxies_ok(o->proxies) || !pairs_ok(o->resolve, 0) || !pairs_ok(o->connect_to, 1))
        return QV_EINVAL;
    if (o->tls_min_version && o->tls_min_version != 12 && o->tls_min_version != 13)
        return QV_EINVAL;
    if (o->ip_version && o->ip_version != 4 && o->ip_version != 6) return QV_EINVAL;
    return o->trust_env < -1 || o->trust_env > 1 ? QV_EINVAL : QV_OK;
}

/* The proxy for url: its scheme's own entry, else "all", else `proxy`;
 * with none, NULL (the environment's) or "" if the environment is ignored. */
static const char *pick_proxy(const qv_session_opts *o, const char *url)
{
    size_t n = strcspn(url, ":");
    const char *all = o->proxy;
    for (const qv_pair *p = o->proxies; p && p->name; p++) {
        if (strlen(p->name) == n && strncasecmp(url, p->name, n) == 0) return p->value;
        if (strcmp(p->name, "all") == 0) all = p->value;
    }
    return all ? all : o->trust_env < 0 ? "" : NULL;
}

/* A copy of the request's s in r; `text`: multi-line text (PEM) allowed. */
static int own(qv_req *r, const char **field, const char *s, int text)
{
    if (!text && !str_ok(s)) return QV_EINVAL;
    *field = qv_arena_strdup(&r->arena, s);
    return s && !*field ? QV_ENOMEM : QV_OK;
}

const qv_req_net qv_net_none;

/* Whether n sets anything. */
static int net_any(const qv_req_net *n)
{
    return n->client_cert || n->client_key || n->key_password || n->client_cert_pem ||
           n->client_key_pem || n->ca_path || n->pinned_public_key || n->tls_min_version ||
           n->no_proxy || n->proxy_username || n->proxy_password || n->proxy_ca_file ||
           n->unix_socket || n->interface || n->ip_version || (n->resolve && n->resolve->name) ||
           (n->connect_to && n->connect_to->name);
}

int qv_net_build(qv_req *r, const qv_session_opts *so, const qv_request_opts *o)
{
    r->proxy = pick_proxy(so, r->url);
    qv_req_net n = {
        .ca_path = so->ca_path,
        .pinned_public_key = so->pinned_public_key,
        .tls_min_version = so->tls_min_version,
        .no_proxy = so->no_proxy,
        .proxy_username = so->proxy_username,
        .proxy_password = so->proxy_password,
        .proxy_ca_file = so->proxy_ca_file,
        .interface = so->interface,
        .ip_version = so->ip_version,
        .resolve = so->resolve,
        .connect_to = so->connect_to,
        .unix_socket = so->unix_socket,
    };
    int rc = QV_OK;
    /* The request's identity replaces the session's as a whole. */
    if (o->client_cert || o->client_key || o->key_password || o->client_cert_pem ||
        o->client_key_pem) {
        if (!(rc = own(r, &n.client_cert, o->client_cert, 0)) &&
            !(rc = own(r, &n.client_key, o->client_key, 0)) &&
            !(rc = own(r, &n.key_password, o->key_password, 0)) &&
            !(rc = own(r, &n.client_cert_pem, o->client_cert_pem, 1)))
            rc = own(r, &n.client_key_pem, o->client_key_pem, 1);
    } else {
        n.client_cert = so->client_cert;
        n.client_key = so->client_key;
        n.key_password = so->key_password;
        n.client_cert_pem = so->client_cert_pem;
        n.client_key_pem = so->client_key_pem;
    }
    if (!rc && o->unix_socket) rc = own(r, &n.unix_socket, o->unix_socket, 0);
    if (rc || !net_any(&n)) return rc;
    qv_req_net *copy = qv_arena_alloc(&r->arena, sizeof(*copy));
    if (!copy) return QV_ENOMEM;
    *copy = n;
    r->net = copy;
    return QV_OK;
}

int qv_net_special(const qv_req *r)
{
    return r->proxy || net_any(r->net);
}

/* libcurl's CONNECT_TO lines: a connect_to pair "h:p" → "h2:p2" as
 * "h:p:h2:p2"; a resolve pin "h:p" → "addr" as "h:p:addr:p". A pin is a
 * connect-to rather than a DNS cache entry (CURLOPT_RESOLVE) so that it
 * stays with its request: a DNS cache entry would outlive it in a cache
 * that other sessions' requests read (a process worker's), and a
 * connection made through it could be reused by a request of another
 * session to the same name (libcurl keeps connect-to connections apart). */
static CURLcode pair_lines(struct curl_slist **out, const qv_pair *p, int pin)
{
    for (; p && p->name; p++) {
        int v6 = pin && strchr(p->value, ':') && p->value[0] != '[';
        char *line = pin ? qv_asprintf("%s:%s%s%s%s", p->name, v6 ? "[" : "", p->value,
                                       v6 ? "]" : "", strrchr(p->name, ':'))
                         : qv_asprintf("%s:%s", p->name, p->value);
        struct curl_slist *l = line ? curl_slist_append(*out, line) : NULL;
        qv_free(line);
        if (!l) return CURLE_OUT_OF_MEMORY;
        *out = l;
    }
    return CURLE_OK;
}

/* PEM text for a _BLOB option (libcurl copies it). */
static CURLcode set_blob(CURL *e, CURLoption opt, const char *pem)
{
    struct curl_blob b = {.data = (void *)pem, .len = strlen(pem), .flags = CURL_BLOB_COPY};
    return curl_easy_setopt(e, opt, &b);
}

/* Sets r's network options on slot->easy, which has none (just reset). */
static CURLcode net_setup(qv_slot *slot, const qv_req *r)
{
    CURL *e = slot->easy;
    /* An explicit proxy is used for every host but no_proxy's; the
     * environment's no_proxy only tempers the environment's proxies (as in
     * requests). */
    const char *no_proxy = r->net->no_proxy ? r->net->no_proxy : r->proxy ? "" : NULL;
    const struct {
        CURLoption opt;
        const char *value; /* NULL: not set */
    } strs[] = {
        {CURLOPT_SSLCERT, r->net->client_cert},
        {CURLOPT_SSLKEY, r->net->client_key},
        {CURLOPT_KEYPASSWD, r->net->key_password},
        {CURLOPT_CAPATH, r->net->ca_path},
        {CURLOPT_PINNEDPUBLICKEY, r->net->pinned_public_key},
        {CURLOPT_PROXY, r->proxy},
        {CURLOPT_NOPROXY, no_proxy},
        {CURLOPT_PROXYUSERNAME, r->net->proxy_username},
        {CURLOPT_PROXYPASSWORD, r->net->proxy_password},
        {CURLOPT_PROXY_CAINFO, r->net->proxy_ca_file},
        {CURLOPT_UNIX_SOCKET_PATH, r->net->unix_socket},
        {CURLOPT_INTERFACE, r->net->interface},
    };
    CURLcode cc = CURLE_OK;
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]) && !cc; i++)
        if (strs[i].value) cc = curl_easy_setopt(e, strs[i].opt, strs[i].value);
    if (!cc && r->net->client_cert_pem)
        cc = set_blob(e, CURLOPT_SSLCERT_BLOB, r->net->client_cert_pem);
    if (!cc && r->net->client_key_pem)
        cc = set_blob(e, CURLOPT_SSLKEY_BLOB, r->net->client_key_pem);
    if (!cc && r->net->tls_min_version)
        cc = curl_easy_setopt(e, CURLOPT_SSLVERSION,
                              (long)(r->net->tls_min_version == 13 ? CURL_SSLVERSION_TLSv1_3
                                                                   : CURL_SSLVERSION_TLSv1_2));
    if (!cc && r->proxy && r->insecure) cc = curl_easy_setopt(e, CURLOPT_PROXY_SSL_VERIFYPEER, 0L);
    if (!cc && r->proxy && r->insecure) cc = curl_easy_setopt(e, CURLOPT_PROXY_SSL_VERIFYHOST, 0L);
    if (!cc && r->net->ip_version)
        cc = curl_easy_setopt(
            e, CURLOPT_IPRESOLVE,
            (long)(r->net->ip_version == 4 ? CURL_IPRESOLVE_V4 : CURL_IPRESOLVE_V6));
    /* The first entry that matches wins: the explicit connect_to first. */
    if (!cc) cc = pair_lines(&slot->connect_to, r->net->connect_to, 0);
    if (!cc) cc = pair_lines(&slot->connect_to, r->net->resolve, 1);
    if (!cc && slot->connect_to) cc = curl_easy_setopt(e, CURLOPT_CONNECT_TO, slot->connect_to);
    return cc;
}

CURLcode qv_net_setup(qv_slot *slot, const qv_req *r)
{
    if (!qv_net_special(r) || slot->net_set) return CURLE_OK;
    CURLcode cc = net_setup(slot, r);
    if (cc) return cc;
    /* The handle has them now: net_next (from qv_net_same) names them. */
    qv_buf t = slot->net_sig;
    slot->net_sig = slot->net_next;
    slot->net_next = t;
    slot->net_set = 1;
    return CURLE_OK;
}

/* Appends a string field (NULL and "" differ). */
static int sig_put(qv_buf *b, const char *s)
{
    int rc = qv_buf_append(b, s ? "+" : "-", 1);
    return rc || !s ? rc : qv_buf_append(b, s, strlen(s) + 1);
}

static int sig_pairs(qv_buf *b, const qv_pair *p)
{
    int rc = QV_OK;
    for (; p && p->name && !rc; p++)
        if (!(rc = sig_put(b, p->name))) rc = sig_put(b, p->value);
    return rc ? rc : sig_put(b, NULL);
}

/* Everything qv_net_setup sets for r, as bytes. */
static int signature(const qv_req *r, qv_buf *b)
{
    const char *strs[] = {r->net->client_cert,       r->net->client_key,
                          r->net->key_password,      r->net->client_cert_pem,
                          r->net->client_key_pem,    r->net->ca_path,
                          r->net->pinned_public_key, r->proxy,
                          r->net->no_proxy,          r->net->proxy_username,
                          r->net->proxy_password,    r->net->proxy_ca_file,
                          r->net->unix_socket,       r->net->interface};
    char ints[3] = {(char)r->net->tls_min_version, (char)r->net->ip_version,
                    (char)(r->proxy && r->insecure)};
    b->len = 0;
    int rc = qv_buf_append(b, ints, sizeof(ints));
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]) && !rc; i++) rc = sig_put(b, strs[i]);
    if (!rc) rc = sig_pairs(b, r->net->resolve);
    return rc ? rc : sig_pairs(b, r->net->connect_to);
}

int qv_net_same(qv_slot *slot, const qv_req *r)
{
    if (!qv_net_special(r)) return !slot->net_set;
    if (signature(r, &slot->net_next)) return -1;
    return slot->net_set && slot->net_sig.len == slot->net_next.len &&
           memcmp(slot->net_sig.data, slot->net_next.data, slot->net_sig.len) == 0;
}

void qv_net_forget(qv_slot *slot)
{
    curl_slist_free_all(slot->connect_to);
    slot->connect_to = NULL;
    slot->net_set = 0;
}

void qv_net_slot_free(qv_slot *slot)
{
    qv_net_forget(slot);
    qv_buf_free(&slot->net_sig);
    qv_buf_free(&slot->net_next);
}

/* libcurl's detail of a TLS failure (with OpenSSL, an alert the server sent
 * reads "... alert <what>") says what went wrong; this says which setting
 * it is about. */
const char *qv_net_tls_hint(qv_slot *slot, CURLcode cc, const char *detail)
{
    const qv_req *r = &slot->f->req;
    int cert = r->net->client_cert || r->net->client_cert_pem;
    long proxy_verify = 0;
    if (r->proxy && strncasecmp(r->proxy, "https:", 6) == 0 &&
        curl_easy_getinfo(slot->easy, CURLINFO_PROXY_SSL_VERIFYRESULT, &proxy_verify) == CURLE_OK &&
        proxy_verify)
        return "the proxy's certificate did not verify (see proxy_ca_file)";
    if (cc == CURLE_SSL_CERTPROBLEM)
        return strstr(detail, "private key")
                   ? "the client key could not be used (a wrong key_password, or not the key of "
                     "client_cert?)"
                   : "the client certificate could not be loaded";
    if (cc == CURLE_SSL_PINNEDPUBKEYNOTMATCH)
        return "the server's public key does not match pinned_public_key";
    if (strstr(detail, "certificate required") || (!cert && strstr(detail, "handshake failure")))
        return "the server demands a client certificate (set client_cert)";
    if (strstr(detail, "protocol version"))
        return "no TLS version that both sides accept (see tls_min_version)";
    if (strstr(detail, "alert")) return cert ? "the server rejected the client certificate" : NULL;
    /* Only the connection's end was seen, not the alert: a likely cause. */
    if (cc == CURLE_RECV_ERROR || cc == CURLE_SEND_ERROR)
        return cert ? "the server closed the connection right after the TLS handshake: it "
                      "probably rejected the client certificate"
                    : "the server closed the connection right after the TLS handshake: it "
                      "probably demands a client certificate (set client_cert)";
    return NULL;
}

int qv_net_tls_refused(qv_slot *slot, const char *detail)
{
    /* A TLS 1.3 server checks the client's certificate after the handshake
     * is done for the client: its verdict comes as an alert in place of the
     * response, which libcurl reports as a receive or send error; or, when
     * the server closed at once and the request crossed its alert, as a
     * reset. Either way on a connection just made for this transfer. */
    curl_off_t tls = 0;
    long conns = 0;
    char *url = NULL;
    curl_easy_getinfo(slot->easy, CURLINFO_EFFECTIVE_URL, &url);
    if (!url || strncasecmp(url, "https:", 6) != 0) return 0; /* TLS to a proxy only */
    curl_easy_getinfo(slot->easy, CURLINFO_APPCONNECT_TIME_T, &tls);
    curl_easy_getinfo(slot->easy, CURLINFO_NUM_CONNECTS, &conns);
    return tls > 0 && (conns > 0 || strstr(detail, "alert") != NULL);
}
