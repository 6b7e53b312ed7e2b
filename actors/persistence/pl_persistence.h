/*  =========================================================================
    pl_persistence - the persistence actor: MongoDB writes and queries

    Takes PERSIST entries from the stream bridge, writes them to MongoDB in
    one unordered bulk insert per batch (through pl_store, the only MongoDB
    code) and confirms each with PERSISTED; answers the HTTP API's QUERY
    messages that the room-router hands it, by the rules of pl_rooms with
    the data of pl_store. Several may run on one host.
    =========================================================================
*/
#ifndef PL_PERSISTENCE_H_INCLUDED
#define PL_PERSISTENCE_H_INCLUDED

#include <czmq.h>
#include "pl_config.h"

//  czmq actor; args is a const pl_config_t * that outlives the actor.
void pl_persistence_actor (zsock_t *pipe, void *args);

void pl_persistence_test (bool verbose);

#endif
