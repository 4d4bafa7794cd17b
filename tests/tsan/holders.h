/* The stress run's holder phase (holders.c). */
#ifndef QV_STRESS_HOLDERS_H
#define QV_STRESS_HOLDERS_H

/* Races a hand-over between two holders against a cancel, `rounds` times:
 * 0 if every round ended as it must, 1 if one did not (said on stderr),
 * -1 if the run could not be set up. */
int holders_race(int rounds);

#endif
