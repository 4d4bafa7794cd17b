/* Request hooks: what runs before each attempt of a request, and the
 * qv_attempt they see (its number, method, URL, and its own header lines). */
#include "internal.h"

#include <string.h>

struct qv_attempt {
    qv_future *f;
    struct curl_slist **lines; /* the attempt's lines: a copy of the request's once changed */
    int copied;
    char *error;
};

/* The request's lines, copied for this attempt alone. */
static int copy_lines(qv_attempt *a)
{
    struct curl_slist *copy = NULL;
    for (const struct curl_slist *l = a->f->req.headers; l; l = l->next) {
        struct curl_slist *n = curl_slist_append(copy, l->data);
        if (!n) {
            curl_slist_free_all(copy);
            return QV_ENOMEM;
        }
        copy = n;
    }
    *a->lines = copy;
    a->copied = 1;
    return QV_OK;
}

int qv_attempt_set_header(qv_attempt *a, const char *name, const char *value)
{
    if (!a || !qv_header_name_ok(name) || (value && !qv_header_value_ok(value))) return QV_EINVAL;
    if (!a->copied && copy_lines(a)) return QV_ENOMEM;
    /* The new line first, so that nothing is lost if there is no memory. */
    struct curl_slist *added = NULL;
    if (qv_header_line_add(&added, name, value)) return QV_ENOMEM;
    size_t nlen = strlen(name);
    struct curl_slist **at = a->lines;
    while (*at) {
        struct curl_slist *l = *at;
        if (qv_header_line_is(l->data, name, nlen)) {
            *at = l->next;
            l->next = NULL;
            curl_slist_free_all(l);
        } else {
            at = &l->next;
        }
    }
    *at = added;
    return QV_OK;
}

int qv_attempt_number(const qv_attempt *a)
{
    return a ? a->f->attempts : 0;
}

const char *qv_attempt_method(const qv_attempt *a)
{
    return a ? a->f->req.method : NULL;
}

const char *qv_attempt_url(const qv_attempt *a)
{
    return a ? a->f->req.url : NULL;
}

int qv_attempt_set_error(qv_attempt *a, const char *message)
{
    if (!a || !message) return QV_EINVAL;
    char *m = qv_strdup(message);
    if (!m) return QV_ENOMEM;
    qv_free(a->error);
    a->error = m;
    return QV_OK;
}

int qv_attempt_run_hooks(qv_slot *slot, qv_future *f, char **msg)
{
    qv_attempt a = {.f = f, .lines = &slot->attempt_headers};
    int rc = 0;
    const qv_req_calls *c = f->req.calls;
    for (size_t i = 0; i < sizeof(c->on_request) / sizeof(c->on_request[0]) && !rc; i++) {
        const qv_req_hook *h = &c->on_request[i];
        if (h->fn) rc = h->fn(f->session, &a, h->arg);
    }
    if (!rc) {
        qv_free(a.error);
        return QV_OK;
    }
    *msg = a.error ? a.error
                   : qv_asprintf("the request hook returned %d on attempt %d", rc, f->attempts);
    return QV_EHOOK;
}
