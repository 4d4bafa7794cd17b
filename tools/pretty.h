/*
 * get --pretty: re-indents JSON text. It works on the text, not on a parsed
 * value, so numbers keep their exact spelling (jansson would print 0.1 as
 * 0.10000000000000001), and key order and duplicate keys stay as sent.
 */
#ifndef QV_CLI_PRETTY_H
#define QV_CLI_PRETTY_H

#include <stddef.h>
#include <stdio.h>

/* Writes text (valid JSON: check first) with 2-space indents and a final
 * newline. */
void cli_pretty_json(FILE *out, const char *text, size_t len);

#endif
