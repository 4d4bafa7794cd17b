/* See byteprogress.h. */
#include "byteprogress.h"

#include <stdio.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

void cli_byteprogress_init(cli_byteprogress *p)
{
    p->start_ms = now_ms();
    p->first = -1;
    p->drawn = 0;
}

/* "12.3 MiB" */
static void human(char *buf, size_t n, double bytes)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) bytes /= 1024, u++;
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
}

void cli_byteprogress_cb(qv_future *f, long long dl_now, long long dl_total, long long ul_now,
                         long long ul_total, void *arg)
{
    cli_byteprogress *p = arg;
    (void)f;
    /* An upload's progress is the upload's; a download's the download's. */
    long long now = ul_total > 0 || (ul_now > 0 && dl_now == 0) ? ul_now : dl_now;
    long long total = ul_total > 0 || (ul_now > 0 && dl_now == 0) ? ul_total : dl_total;
    if (p->first < 0) p->first = now;
    double secs = (now_ms() - p->start_ms) / 1000.0;
    double rate = secs > 0 ? (double)(now - p->first) / secs : 0;
    char have[32], all[32] = "", speed[32], eta[32] = "";
    human(have, sizeof have, (double)now);
    if (total >= 0) {
        char t[24];
        human(t, sizeof t, (double)total);
        snprintf(all, sizeof all, " / %s", t);
        if (rate > 0 && total >= now)
            snprintf(eta, sizeof eta, "  ETA %.0f s", (double)(total - now) / rate);
    }
    human(speed, sizeof speed, rate);
    fprintf(stderr, "\r%s%s  %s/s%s\033[K", have, all, speed, eta);
    p->drawn = 1;
}

void cli_byteprogress_end(cli_byteprogress *p)
{
    if (p->drawn) fputc('\n', stderr);
    p->drawn = 0;
}
