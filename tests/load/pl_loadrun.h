/*  =========================================================================
    pl_loadrun - one thread of parley-load: an epoll loop over its share
    of the connections, through the run's phases

    connect   open connections, at most connect-window at once, until each
              is subscribed or failed
    barrier   wait until every connection of the run has settled; the
              first thread past it sets the time sending starts
    send      each connection sends its messages at the rate, evenly
              spaced, from a random offset within the first interval
    drain     wait until this thread's receivers have every message and
              its SENDs every RECEIPT, or drain-ms after the run's last send
    close     DISCONNECT with a receipt, close frame, close
    =========================================================================
*/
#ifndef PL_LOADRUN_H_INCLUDED
#define PL_LOADRUN_H_INCLUDED

#include "pl_load.h"

//  Set up thread index of the run with its share of the connections.
//  Returns 0, or -1 when memory or an epoll descriptor is lacking.
int
    pl_loadrun_init (pl_load_thread_t *self, pl_load_run_t *run, int index);

//  Free what init took, connections included.
void
    pl_loadrun_free (pl_load_thread_t *self);

//  The thread's body (pthread_create's start routine); arg is the thread.
void *
    pl_loadrun_main (void *arg);

#endif
