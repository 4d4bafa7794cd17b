/* Work a thread puts off until the end of a pass over its transfers (before
 * it sleeps): a streamed body's consumer is woken once per batch of chunks
 * rather than once per chunk, and a process worker sends one data frame per
 * batch; what a pass leaves below a batch still goes before the thread
 * sleeps, so a trickling body never waits for a later chunk. */
#include "internal.h"

static _Thread_local qv_later *owed;

void qv_later_add(qv_later *l)
{
    if (l->queued) return;
    l->queued = 1;
    l->next = owed;
    owed = l;
}

void qv_later_run(void)
{
    /* What a run adds again (it put its work off) is for the next pass. */
    qv_later *l = owed;
    owed = NULL;
    while (l) {
        qv_later *next = l->next;
        l->queued = 0;
        l->run(l); /* last: it may free l */
        l = next;
    }
}
