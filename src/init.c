/* The library as a whole: the allocator, fixed once anything is allocated,
 * libcurl and jansson set up once, and the version. */
#include "internal.h"

#include <jansson.h>
#include <stdlib.h>

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;
static atomic_int global_started;

static void global_init_once(void)
{
    atomic_store(&global_started, 1);
    /* libcurl and jansson allocate through ours too (libcurl ignores this if
     * the program initialised it already): a custom allocator gets all, and
     * with the C library's a QV_THREADS worker's libcurl blocks come from
     * the worker's heap (pool.c). */
    if (qv_allocator_is_custom()) json_set_alloc_funcs(qv_malloc, qv_free);
    global_rc =
        curl_global_init_mem(CURL_GLOBAL_ALL, qv_malloc, qv_free, qv_realloc, qv_strdup, qv_calloc);
}

int qv_global_init(void)
{
    pthread_once(&global_once, global_init_once);
    return global_rc ? QV_ENOMEM : QV_OK;
}

int qv_set_allocator(const qv_allocator *a)
{
    if (a && (!a->malloc || !a->calloc || !a->realloc || !a->free)) return QV_EINVAL;
    /* Memory from one allocator must never be freed by another: only before
     * the library has allocated anything. */
    if (atomic_load(&global_started)) return QV_EINVAL;
    qv_allocator_use(a ? *a : (qv_allocator){malloc, calloc, realloc, free}, a != NULL);
    return QV_OK;
}

const char *qv_version(void)
{
    return QV_VERSION_STRING;
}
