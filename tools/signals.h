/* Ctrl-C during fetch or bench: the first SIGINT/SIGTERM asks the run to
 * stop (in-flight requests are cancelled, the summary still prints); a
 * second one kills as usual, in case stopping hangs. */
#ifndef QV_CLI_SIGNALS_H
#define QV_CLI_SIGNALS_H

#include <signal.h>

/* Installs the handlers; the returned flag becomes the signal number. */
volatile sig_atomic_t *cli_catch_stop_signals(void);

#endif
