/* Misuse that no return value can report (an object freed twice, a pointer
 * that is not one, an executor freed from its own thread): said on stderr,
 * then abort(), SQLite-style. Objects carry a magic word, set when made,
 * checked at every public entry and cleared when freed. A check after the
 * memory went back to the allocator reads freed memory: a best effort, that
 * catches the common case while the block is not reused (ASan reports it
 * anyway); a future's own references are counted apart from the caller's,
 * so releasing it once too often is caught for sure while quiver still
 * holds it. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

void qv_misuse(const char *fn, const void *p, const char *what)
{
    fprintf(stderr, "quiver: %s(%p): %s\n", fn, p, what);
    abort();
}

void qv_magic_fail(const char *fn, const void *p, unsigned have, const char *kind)
{
    char what[160];
    if (have == QV_MAGIC_FREED)
        snprintf(what, sizeof(what), "this %s was freed already (freed or released twice?)", kind);
    else
        snprintf(what, sizeof(what), "not a live %s (freed, or a pointer to something else)", kind);
    qv_misuse(fn, p, what);
}
