/* The stress run's phase of descriptors run out (nofile.c). */
#ifndef QV_STRESS_NOFILE_H
#define QV_STRESS_NOFILE_H

#include <quiver.h>

/* `rounds` downloads of 1 MiB of url_big (nginx's, as url_small) to a pipe
 * on a `kind` executor, each started with no descriptor left and cancelled
 * at a random moment: 0 if each ended as it must, 1 if one did not (said on
 * stderr), -1 if the phase could not be set up. */
int nofile_race(qv_executor_kind kind, const char *url_small, const char *url_big,
                unsigned long long seed, int rounds);

#endif
