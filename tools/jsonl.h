/*
 * fetch's output: one JSON object per URL, one per line, written as each
 * URL completes:
 *   {"url": ..., "status": 200 | null, "elapsed_ms": 12.345, "bytes": 1024 | null,
 *    "error": null | "QV_ECONNECT: message", "attempts": 1[, "file": ... | null]}
 */
#ifndef QV_CLI_JSONL_H
#define QV_CLI_JSONL_H

#include <stdio.h>

#include "runner.h"

/* Writes the record of o and flushes (so a pipe sees it at once). with_file:
 * add "file" (file is NULL when nothing was saved). 0, or -1 when out could
 * not be written. */
int cli_jsonl_write(FILE *out, const cli_outcome *o, int with_file, const char *file);

#endif
