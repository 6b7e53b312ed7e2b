/*  =========================================================================
    pl_main - the thin main of every actor process

    Loads the configuration, names the log, starts the actor as a czmq
    actor thread and waits for SIGINT or SIGTERM; then tells the actor to
    stop ($TERM) and waits for it to drain and exit.
    =========================================================================
*/
#ifndef PL_MAIN_H_INCLUDED
#define PL_MAIN_H_INCLUDED

#include <czmq.h>

//  Returns the process exit code: 0 after a clean stop, 1 when the
//  configuration is bad or the actor could not start.
//  The actor's thread has ended before this returns, also when a second
//  signal interrupts the stop.
int pl_main_run (int argc, char **argv, const char *actor_name, zactor_fn *actor);

void pl_main_test (bool verbose);

#endif
