/* The one intrusive doubly-linked list: a node (qv_link) embedded in the
 * record it links, and a list of one pointer, its first node. The nodes
 * form a ring (the first's prev is the last), so a list costs a record 8
 * bytes, appends at its tail and unlinks any node without a walk. All zero
 * is an empty list and an unlinked node: no list needs setting up. No lock:
 * each list's owner says which guards it (docs/internals.md, Locks). */
#ifndef QV_LIST_H
#define QV_LIST_H

#include <stddef.h>

typedef struct qv_link {
    struct qv_link *prev, *next;
} qv_link;

typedef struct qv_list {
    qv_link *first; /* NULL: empty */
} qv_list;

/* The record of type `type` whose member `member` is the node n (NULL for
 * NULL, so first/next's end of the list is the record's too). */
#define qv_list_item(n, type, member) ((type *)qv_list_item_at((n), offsetof(type, member)))

static inline void *qv_list_item_at(qv_link *n, size_t offset)
{
    return n ? (char *)n - offset : NULL;
}

static inline int qv_list_empty(const qv_list *l)
{
    return !l->first;
}

static inline qv_link *qv_list_first(const qv_list *l)
{
    return l->first;
}

static inline qv_link *qv_list_last(const qv_list *l)
{
    return l->first ? l->first->prev : NULL;
}

/* The node after n in l, NULL after the last. A walk that unlinks the node
 * it is at takes the next one first. */
static inline qv_link *qv_list_next(const qv_list *l, const qv_link *n)
{
    return n->next == l->first ? NULL : n->next;
}

/* Whether n is in a list (unlink leaves it as all zero). */
static inline int qv_list_linked(const qv_link *n)
{
    return n->next != NULL;
}

/* Puts n after `after` (a node of l; NULL: at the head). */
static inline void qv_list_insert_after(qv_list *l, qv_link *after, qv_link *n)
{
    if (!l->first) {
        n->prev = n->next = n;
        l->first = n;
        return;
    }
    /* In the ring, the head is after the last. */
    qv_link *prev = after ? after : l->first->prev;
    n->prev = prev;
    n->next = prev->next;
    prev->next->prev = n;
    prev->next = n;
    if (!after) l->first = n;
}

static inline void qv_list_insert_tail(qv_list *l, qv_link *n)
{
    qv_list_insert_after(l, qv_list_last(l), n);
}

static inline void qv_list_unlink(qv_list *l, qv_link *n)
{
    if (n->next == n) {
        l->first = NULL;
    } else {
        n->prev->next = n->next;
        n->next->prev = n->prev;
        if (l->first == n) l->first = n->next;
    }
    n->prev = n->next = NULL;
}

#endif
