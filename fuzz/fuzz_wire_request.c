/*
 * Fuzz target: the process executor's request decoder
 * (qv_wire_decode_request), which a worker runs on what the parent sent.
 * The input is a frame's payload (runs of tag, length, value).
 *
 * Checked beyond "no crash, no overrun, no leak":
 *  - an accepted payload has a method and a URL, and its hooks array ends
 *    with {0};
 *  - a decoded request encodes again (qv_wire_encode_request, what the
 *    parent does) and decodes to the same method, URL, host, header lines,
 *    body, parts, credentials, limits, retry policy and attempt, hooks,
 *    cookie lines and the network settings (certificates, proxies, Unix
 *    socket, resolve and connect_to pairs, interface, versions), the request
 *    hooks and the trace settings (a policy without retries is not
 * sent, so it comes back empty). (The hooks' function pointers are only carried as numbers, never
 * called.)
 */
#include "../src/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static qv_session *stub; /* what encode_request reads the session's hooks from */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    stub = qv_session_stub_new();
    if (!stub) abort();
    return 0;
}

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_wire_request: %s\n", what);
    abort();
}

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int same_list(const struct curl_slist *a, const struct curl_slist *b)
{
    for (; a && b; a = a->next, b = b->next)
        if (strcmp(a->data, b->data)) return 0;
    return !a && !b;
}

static int same_pairs(const qv_pair *a, const qv_pair *b)
{
    for (; a && a->name && b && b->name; a++, b++)
        if (!same_str(a->name, b->name) || !same_str(a->value, b->value)) return 0;
    return !(a && a->name) && !(b && b->name);
}

/* The networks-and-identity fields. */
static void compare_net(const qv_req_net *a, const qv_req_net *b)
{
    const char *sa[] = {a->client_cert,       a->client_key,  a->key_password,   a->ca_path,
                        a->pinned_public_key, a->no_proxy,    a->proxy_username, a->proxy_password,
                        a->proxy_ca_file,     a->unix_socket, a->interface,      a->client_cert_pem,
                        a->client_key_pem};
    const char *sb[] = {b->client_cert,       b->client_key,  b->key_password,   b->ca_path,
                        b->pinned_public_key, b->no_proxy,    b->proxy_username, b->proxy_password,
                        b->proxy_ca_file,     b->unix_socket, b->interface,      b->client_cert_pem,
                        b->client_key_pem};
    for (size_t i = 0; i < sizeof(sa) / sizeof(sa[0]); i++)
        if (!same_str(sa[i], sb[i])) fail("a network string changed in a round trip");
    if (a->tls_min_version != b->tls_min_version || a->ip_version != b->ip_version)
        fail("a network number changed in a round trip");
    if (!same_pairs(a->resolve, b->resolve) || !same_pairs(a->connect_to, b->connect_to))
        fail("resolve or connect_to changed in a round trip");
}

/* The large-body fields that travel (the callbacks are the worker's own). */
static void compare_io(const qv_req_io *a, const qv_req_io *b)
{
    if (!same_str(a->output_path, b->output_path) || !same_str(a->upload_path, b->upload_path) ||
        a->keep_partial != b->keep_partial || a->resume != b->resume || a->stream != b->stream ||
        a->upload_len != b->upload_len)
        fail("a large-body option changed in a round trip");
}

static void compare(const qv_req *a, const qv_req *b, const qv_hook *ha, const qv_hook *hb,
                    const struct curl_slist *ja, const struct curl_slist *jb)
{
    compare_net(a->net, b->net);
    compare_io(a->io, b->io);
    if (!same_str(a->method, b->method) || !same_str(a->url, b->url) ||
        !same_str(a->host, b->host) || !same_str(a->username, b->username) ||
        !same_str(a->password, b->password) || !same_str(a->ca_file, b->ca_file) ||
        !same_str(a->proxy, b->proxy))
        fail("a string field changed in a round trip");
    if (!same_list(a->headers, b->headers)) fail("the header lines changed in a round trip");
    if (!same_list(ja, jb)) fail("the cookie lines changed in a round trip");
    if (a->has_body != b->has_body || a->body_len != b->body_len ||
        (a->body_len && memcmp(a->body, b->body, a->body_len)))
        fail("the body changed in a round trip");
    if (a->auth != b->auth || a->timeout_ms != b->timeout_ms ||
        a->connect_timeout_ms != b->connect_timeout_ms ||
        a->read_timeout_ms != b->read_timeout_ms || a->follow != b->follow ||
        a->max_redirects != b->max_redirects || a->max_response_bytes != b->max_response_bytes ||
        a->insecure != b->insecure)
        fail("a number changed in a round trip");
    if (a->nparts != b->nparts) fail("the number of parts changed in a round trip");
    for (size_t i = 0; i < a->nparts; i++) {
        const qv_req_part *p = &a->parts[i], *q = &b->parts[i];
        if (!same_str(p->name, q->name) || !same_str(p->file, q->file) ||
            !same_str(p->filename, q->filename) || !same_str(p->content_type, q->content_type) ||
            p->value_len != q->value_len || !p->value != !q->value ||
            (p->value && memcmp(p->value, q->value, p->value_len)))
            fail("a part changed in a round trip");
    }
    const qv_retry_policy *ra = a->retry, *rb = b->retry;
    if (!ra->max_retries) {
        if (rb->max_retries || rb->nstatuses) fail("a policy without retries came back");
    } else if (ra->max_retries != rb->max_retries || ra->on != rb->on ||
               ra->backoff_ms != rb->backoff_ms || ra->max_backoff_ms != rb->max_backoff_ms ||
               ra->all_methods != rb->all_methods || ra->no_retry_after != rb->no_retry_after ||
               ra->nstatuses != rb->nstatuses ||
               memcmp(ra->statuses, rb->statuses, sizeof(ra->statuses[0]) * (size_t)ra->nstatuses))
        fail("the retry policy changed in a round trip");
    const qv_req_calls *ca = a->calls, *cb = b->calls;
    for (size_t k = 0; k < sizeof(ca->on_request) / sizeof(ca->on_request[0]); k++)
        if (ca->on_request[k].fn != cb->on_request[k].fn ||
            ca->on_request[k].arg != cb->on_request[k].arg)
            fail("a request hook changed in a round trip");
    if (ca->trace_id != cb->trace_id || ca->debug_body != cb->debug_body ||
        ca->trace_env != cb->trace_env || !ca->on_debug != !cb->on_debug)
        fail("the trace settings changed in a round trip");
    size_t i = 0;
    for (; ha[i].fn && hb[i].fn; i++)
        if (ha[i].fn != hb[i].fn || ha[i].arg != hb[i].arg) fail("a hook changed in a round trip");
    if (ha[i].fn || hb[i].fn) fail("the number of hooks changed in a round trip");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qv_future *f = qv_future_alloc(0);
    if (!f) abort();
    qv_hook *hooks = NULL;
    struct curl_slist *jar = NULL;
    int attempt, jar_kept, sink_flags;
    int rc =
        qv_wire_decode_request(data, size, &f->req, &attempt, &hooks, &jar, &jar_kept, &sink_flags);
    if (rc != QV_OK && rc != QV_EPROTOCOL && rc != QV_ENOMEM) fail("an unexpected error code");
    if (rc == QV_OK) {
        if (!f->req.method || !f->req.url) fail("a request without a method or URL");
        if (!hooks) fail("no hooks array");
        /* Re-encode as the parent would: the session's hooks, then none of
         * the request's own (they all came back in `hooks`). */
        stub->o.hooks = hooks;
        f->session = stub;
        qv_buf b = {0};
        if (qv_wire_encode_request(&b, f, attempt, jar, jar_kept)) abort();
        f->session = NULL;
        stub->o.hooks = NULL;
        int type;
        size_t len;
        if (qv_wire_parse_header((const unsigned char *)b.data, &type, &len) ||
            type != QV_WIRE_REQUEST || len != b.len - QV_WIRE_HEADER)
            fail("an encoded frame has a bad header");
        qv_req r2 = {0};
        qv_hook *hooks2 = NULL;
        struct curl_slist *jar2 = NULL;
        int attempt2, jar_kept2, sink_flags2;
        if (qv_wire_decode_request((const unsigned char *)b.data + QV_WIRE_HEADER, len, &r2,
                                   &attempt2, &hooks2, &jar2, &jar_kept2, &sink_flags2))
            fail("a re-encoded request does not decode");
        /* (The data and progress bits name the parent's callbacks, which
         * a worker's request does not have.) */
        if ((sink_flags2 ^ sink_flags) & (QV_SINK_KEEP | QV_SINK_RESUME))
            fail("keep_partial or resume changed in a round trip");
        if (jar_kept2 != jar_kept) fail("keeping the jar changed in a round trip");
        if (attempt2 != (f->req.retry->max_retries ? attempt : 0))
            fail("the attempt changed in a round trip");
        compare(&f->req, &r2, hooks, hooks2, jar, jar2);
        qv_req_free(&r2);
        curl_slist_free_all(jar2);
        qv_buf_free(&b);
    }
    curl_slist_free_all(jar);
    qv_future_release(f); /* frees f->req */
    return 0;
}
