/* A JSON re-indenter over valid JSON text. */
#include "pretty.h"

static void newline(FILE *out, int depth)
{
    fputc('\n', out);
    for (int i = 0; i < depth; i++) fputs("  ", out);
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

void cli_pretty_json(FILE *out, const char *text, size_t len)
{
    int depth = 0, in_string = 0, escaped = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            fputc(c, out);
            if (escaped)
                escaped = 0;
            else if (c == '\\')
                escaped = 1;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (is_space(c)) continue;
        switch (c) {
        case '"':
            in_string = 1;
            fputc(c, out);
            break;
        case '{':
        case '[': {
            /* An empty container stays on one line: {} and []. */
            size_t j = i + 1;
            while (j < len && is_space(text[j])) j++;
            fputc(c, out);
            if (j < len && (text[j] == '}' || text[j] == ']')) {
                fputc(text[j], out);
                i = j;
            } else {
                newline(out, ++depth);
            }
            break;
        }
        case '}':
        case ']':
            newline(out, --depth);
            fputc(c, out);
            break;
        case ',':
            fputc(c, out);
            newline(out, depth);
            break;
        case ':':
            fputs(": ", out);
            break;
        default:
            fputc(c, out);
        }
    }
    fputc('\n', out);
}
