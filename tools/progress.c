/* The progress line: "\r" + the line + "erase to end of line", redrawn in
 * place about ten times a second. */
#include "progress.h"

#include "parse.h"

#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

void cli_progress_init(cli_progress *p, int enabled, long long total)
{
    memset(p, 0, sizeof(*p));
    p->enabled = enabled;
    p->total = total;
    p->start_ms = cli_now_ms();
}

void cli_progress_add(cli_progress *p, int failed)
{
    p->done++;
    if (failed) p->errors++;
}

static int term_columns(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
    return 80;
}

static void format_eta(char *buf, size_t n, double s)
{
    if (s < 0 || s > 99 * 3600.0) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

void cli_progress_draw(cli_progress *p)
{
    if (!p->enabled) return;
    double secs = (cli_now_ms() - p->start_ms) / 1000.0;
    double rate = secs > 0 ? (double)p->done / secs : 0;
    char eta[32], counts[64], tail[128];
    if (p->total >= 0 && rate > 0)
        format_eta(eta, sizeof eta, (double)(p->total - (long long)p->done) / rate);
    else
        format_eta(eta, sizeof eta, -1);
    if (p->total >= 0)
        snprintf(counts, sizeof counts, "%zu/%lld", p->done, p->total);
    else
        snprintf(counts, sizeof counts, "%zu/?", p->done);
    snprintf(tail, sizeof tail, " %s  %.1f req/s  %zu errors  ETA %s", counts, rate, p->errors,
             eta);

    /* The bar takes what the terminal has left, within reason; one column
     * stays free so the cursor never wraps to a new line. */
    int width = term_columns() - (int)strlen(tail) - 3;
    if (width > 40) width = 40;
    fputc('\r', stderr);
    if (p->total > 0 && width >= 10) {
        int fill = (int)((double)width * (double)p->done / (double)p->total);
        if (fill > width) fill = width;
        fputc('[', stderr);
        for (int i = 0; i < width; i++) fputc(i < fill ? '#' : '.', stderr);
        fputc(']', stderr);
    }
    fputs(tail, stderr);
    fputs("\033[K", stderr);
    fflush(stderr);
    p->drawn = 1;
}

void cli_progress_end(cli_progress *p)
{
    if (!p->enabled) return;
    cli_progress_draw(p);
    fputc('\n', stderr);
    fflush(stderr);
    p->drawn = 0;
}
