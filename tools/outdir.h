/*
 * fetch -o DIR: where bodies are saved. A URL comes from untrusted input,
 * so its file name is built from a short list of safe characters (no '/',
 * so no path traversal; no leading '.', so no "..", hidden or special
 * names), with a hash of the whole URL so that different URLs never share
 * a name. The body goes there through output_path: written to a temporary
 * name and renamed, so a name never holds half a body.
 */
#ifndef QV_CLI_OUTDIR_H
#define QV_CLI_OUTDIR_H

#include <stddef.h>

/* Creates DIR if it does not exist (its parent must). 0, or -1 after
 * printing why. */
int cli_outdir_prepare(const char *cmd, const char *dir);

/* The file name for a URL (malloc'd), e.g.
 * "http://127.0.0.1:8080/a/b.json?x=1" -> "127.0.0.1_8080_a_b.json_x_1-5c1f0e2d9ab3.json".
 * Deterministic: the same URL always gets the same name. NULL if out of
 * memory. */
char *cli_outdir_name(const char *url);

#endif
