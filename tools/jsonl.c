/* JSON Lines records of fetch outcomes, built with jansson. */
#include "jsonl.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* jansson takes UTF-8 only; a URL (or a message quoting it) from arbitrary
 * input may not be. Then non-ASCII bytes become '?': the record stays valid
 * JSON rather than being dropped. */
static json_t *jstring(const char *s)
{
    json_t *j = json_string(s);
    if (j) return j;
    char *copy = strdup(s);
    if (!copy) return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80) *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

int cli_jsonl_write(FILE *out, const cli_outcome *o, int with_file, const char *file)
{
    json_t *rec = json_object();
    if (!rec) return -1;
    json_object_set_new(rec, "url", jstring(o->url));
    if (o->resp) {
        json_object_set_new(rec, "status", json_integer(qv_response_status(o->resp)));
        json_object_set_new(rec, "elapsed_ms", json_real(round(o->elapsed_ms * 1000) / 1000));
        /* in memory, or (fetch -o) written to its file */
        json_object_set_new(rec, "bytes",
                            json_integer((json_int_t)qv_response_body_bytes(o->resp)));
        json_object_set_new(rec, "error", json_null());
    } else {
        json_object_set_new(rec, "status", json_null());
        json_object_set_new(rec, "elapsed_ms", json_real(round(o->elapsed_ms * 1000) / 1000));
        json_object_set_new(rec, "bytes", json_null());
        size_t n = strlen(qv_errname(o->error)) + strlen(o->message) + 3;
        char *err = malloc(n);
        if (err) snprintf(err, n, "%s: %s", qv_errname(o->error), o->message);
        json_object_set_new(rec, "error", err ? jstring(err) : json_string(qv_errname(o->error)));
        free(err);
    }
    json_object_set_new(rec, "attempts", json_integer(o->attempts));
    if (with_file) json_object_set_new(rec, "file", file ? jstring(file) : json_null());
    /* 15 significant digits: 12.345 prints as 12.345, not 12.345000000000001. */
    char *line = json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(rec);
    if (!line) return -1;
    int bad = fputs(line, out) < 0 || fputc('\n', out) == EOF || fflush(out) != 0;
    /* jansson's own free: a program may have given jansson an allocator. */
    json_free_t jfree;
    json_get_alloc_funcs(NULL, &jfree);
    jfree(line);
    return bad ? -1 : 0;
}
