/*  =========================================================================
    pl_router - the room-router actor of one host

    Knows which local connection actors have subscribers for which rooms,
    checks membership (from a cache filled by the persistence actors), and
    routes: SEND from connections to the bridge, DELIVER from the bridge to
    the connections that want the room, QUERY to a persistence actor, and
    every RESULT back to the connection that asked. See proto/SPEC.md.
    =========================================================================
*/
#ifndef PL_ROUTER_H_INCLUDED
#define PL_ROUTER_H_INCLUDED

#include <czmq.h>
#include "pl_config.h"

//  czmq actor; args is a const pl_config_t * that outlives the actor.
//  Signals 0 once bound, -1 when its endpoint cannot be bound.
void pl_router_actor (zsock_t *pipe, void *args);

//  The routing id of the router's DEALER to the bridge
#define PL_ROUTER_IDENTITY "router"

//  Selftest (pl_router_test.c)
void pl_router_test (bool verbose);

#endif
