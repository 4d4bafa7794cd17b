/* The intrusive list (src/list.h) on its own: inserts at the head, the tail
 * and in the middle, unlinks of the first, a middle, the last and the only
 * node, and a walk that unlinks the node it is at (the process pool's held
 * list and a host's round robin do). A unit test of internals, hence the
 * private header. */
#include "support.h"

#include "../src/list.h"

TestSuite(list, .timeout = 60);
/* No executor runs here: registered once, not once per kind. */
TX_KIND_ONLY(threads);

typedef struct item {
    int v;
    qv_link link;
} item;

/* l's values, first to last, as digits ("" when empty); also checks the
 * ring backwards and that every node is linked. */
static const char *values(const qv_list *l)
{
    static char s[16];
    size_t n = 0;
    for (qv_link *k = qv_list_first(l); k; k = qv_list_next(l, k)) {
        cr_assert(qv_list_linked(k));
        cr_assert_lt(n, sizeof(s) - 1);
        s[n++] = (char)('0' + qv_list_item(k, item, link)->v);
    }
    s[n] = 0;
    size_t back = 0;
    qv_link *k = qv_list_last(l);
    for (size_t i = n; i > 0; i--, back++, k = k->prev) {
        cr_assert_eq(qv_list_item(k, item, link)->v, s[i - 1] - '0');
        if (i > 1) cr_assert_neq(k, qv_list_first(l));
    }
    if (n) cr_assert_eq(k, qv_list_last(l), "the first's prev is the last");
    cr_assert_eq(back, n);
    cr_assert_eq(qv_list_empty(l), n == 0);
    return s;
}

/* A list of items 1..n in order, inserted at the tail. */
static void fill(qv_list *l, item *it, int n)
{
    for (int i = 0; i < n; i++) {
        it[i].v = i + 1;
        qv_list_insert_tail(l, &it[i].link);
    }
}

Test(list, empty_is_all_zero)
{
    qv_list l = {0};
    item a = {.v = 1};
    cr_assert(qv_list_empty(&l));
    cr_assert_null(qv_list_first(&l));
    cr_assert_null(qv_list_last(&l));
    cr_assert_null(qv_list_item(qv_list_first(&l), item, link));
    cr_assert_not(qv_list_linked(&a.link));
    cr_assert_str_eq(values(&l), "");
}

Test(list, insert_head_tail_and_after)
{
    qv_list l = {0};
    item it[5] = {{.v = 1}, {.v = 2}, {.v = 3}, {.v = 4}, {.v = 5}};
    qv_list_insert_tail(&l, &it[1].link);
    cr_assert_str_eq(values(&l), "2");
    qv_list_insert_after(&l, NULL, &it[0].link);
    cr_assert_str_eq(values(&l), "12");
    qv_list_insert_tail(&l, &it[3].link);
    cr_assert_str_eq(values(&l), "124");
    qv_list_insert_after(&l, &it[1].link, &it[2].link);
    cr_assert_str_eq(values(&l), "1234");
    qv_list_insert_after(&l, &it[3].link, &it[4].link);
    cr_assert_str_eq(values(&l), "12345");
    cr_assert_eq(qv_list_item(qv_list_first(&l), item, link), &it[0]);
    cr_assert_eq(qv_list_item(qv_list_last(&l), item, link), &it[4]);
}

Test(list, unlink_first_middle_last_only)
{
    qv_list l = {0};
    item it[4];
    fill(&l, it, 4);
    qv_list_unlink(&l, &it[0].link);
    cr_assert_str_eq(values(&l), "234");
    cr_assert_not(qv_list_linked(&it[0].link));
    cr_assert_null(it[0].link.prev);
    qv_list_unlink(&l, &it[2].link);
    cr_assert_str_eq(values(&l), "24");
    qv_list_unlink(&l, &it[3].link);
    cr_assert_str_eq(values(&l), "2");
    qv_list_unlink(&l, &it[1].link);
    cr_assert_str_eq(values(&l), "");
    cr_assert_not(qv_list_linked(&it[1].link));
    /* Unlinked nodes go back in, anywhere. */
    qv_list_insert_after(&l, NULL, &it[2].link);
    qv_list_insert_after(&l, NULL, &it[0].link);
    cr_assert_str_eq(values(&l), "13");
}

/* Moving the first to the tail (a host's round robin). */
Test(list, first_to_tail)
{
    qv_list l = {0};
    item it[3];
    fill(&l, it, 3);
    qv_link *k = qv_list_first(&l);
    qv_list_unlink(&l, k);
    qv_list_insert_tail(&l, k);
    cr_assert_str_eq(values(&l), "231");
}

/* Walks that unlink the node they are at, taking the next one first: every
 * node, or every other (first kept, then first dropped). */
static void walk_unlinking(int n, int keep_odd, const char *want)
{
    qv_list l = {0};
    item it[6];
    fill(&l, it, n);
    for (qv_link *k = qv_list_first(&l), *next; k; k = next) {
        next = qv_list_next(&l, k);
        int v = qv_list_item(k, item, link)->v;
        if (keep_odd < 0 || v % 2 != keep_odd) qv_list_unlink(&l, k);
    }
    cr_assert_str_eq(values(&l), want, "n %d, keep_odd %d", n, keep_odd);
}

Test(list, walk_unlinking_the_current_node)
{
    walk_unlinking(1, -1, "");
    walk_unlinking(5, -1, "");
    walk_unlinking(5, 1, "135");
    walk_unlinking(5, 0, "24");
    walk_unlinking(6, 1, "135");
    walk_unlinking(6, 0, "246");
}
