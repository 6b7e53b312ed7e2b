/*  =========================================================================
    pl_bridge - the stream-bridge actor of one host

    Between the host's actors and Redis Streams (through pl_streams, the
    only Redis code): appends SENDs and answers with their seq, feeds this
    host's fan-out group to the room-router as DELIVER, and hands the
    shared persist group's entries to the persistence actors, acking an
    entry only after a persistence actor confirmed its MongoDB write.
    =========================================================================
*/
#ifndef PL_BRIDGE_H_INCLUDED
#define PL_BRIDGE_H_INCLUDED

#include <czmq.h>
#include "pl_config.h"

//  czmq actor; args is a const pl_config_t * that outlives the actor.
//  Signals 0 once bound, 1 when it cannot start.
void pl_bridge_actor (zsock_t *pipe, void *args);

//  Render the delivered JSON of a message; returns a malloc'd string.
char *pl_bridge_render (const char *room_id, int64_t seq, const char *type,
                        const char *sender_id, const char *sender_name,
                        const char *content, const char *client_msg_id,
                        int64_t created_ms);

//  Render the delivered JSON of a READ entry: {"type":"READ_STATUS",
//  "roomId":..,"readerId":..,"seq":N}; returns a malloc'd string, or NULL.
char *pl_bridge_render_read (const char *room_id, const char *reader_id, int64_t seq);

void pl_bridge_test (bool verbose);

#endif
