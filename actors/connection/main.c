/*  =========================================================================
    parley-connection - one connection actor: WebSocket + STOMP and the
    HTTP API on config->port, talking to the room-router

    Runs until SIGINT or SIGTERM. Exit status 1 when the configuration is
    bad or the actor cannot start (port in use, no token key, ...).
    =========================================================================
*/
#include "pl_config.h"
#include "pl_connection.h"
#include "pl_log.h"

#include <czmq.h>

int
main (int argc, char **argv)
{
    pl_log_set_actor ("conn");
    pl_config_t *config = pl_config_new (argc, argv);
    if (!config) {
        pl_config_usage (argv [0]);
        return 1;
    }
    pl_log_set_verbose (config->verbose);
    //  czmq's handler sets zsys_interrupted on SIGINT and SIGTERM
    zsys_init ();
    zsys_catch_interrupts ();

    zactor_t *actor = zactor_new (pl_connection_actor, config);
    if (!actor) {
        pl_log_error ("cannot start the connection actor");
        pl_config_destroy (&config);
        return 1;
    }
    //  The actor sends nothing on its pipe once started, except czmq's
    //  final signal when it exits: readable means it could not start or died.
    int rc = 0;
    zpoller_t *poller = zpoller_new (actor, NULL);
    while (!zsys_interrupted) {
        void *which = zpoller_wait (poller, 500);
        if (which == actor) {
            pl_log_error ("connection actor stopped");
            rc = 1;
            break;
        }
        if (zpoller_terminated (poller) && zsys_interrupted)
            break;
    }
    zpoller_destroy (&poller);
    zactor_destroy (&actor);
    pl_config_destroy (&config);
    return rc;
}
