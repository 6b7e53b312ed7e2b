/*  =========================================================================
    pl_connection - the connection actor: STOMP over WebSocket and the HTTP
    API on one port, talking to the room-router over ZeroMQ

    One actor = one libwebsockets context + one DEALER "conn-<instance>" to
    the room-router. Several actors (different config->instance) may listen
    on the same port (SO_REUSEPORT); the kernel spreads connections. All
    work, ZeroMQ included, happens on the lws service thread.
    =========================================================================
*/
#ifndef PL_CONNECTION_H_INCLUDED
#define PL_CONNECTION_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>

//  czmq actor; args is a const pl_config_t * that must outlive the actor.
//  Signals 0 on the pipe once listening, or -1 (after logging why) when it
//  cannot start, and then exits. Ends on "$TERM".
void
    pl_connection_actor (zsock_t *pipe, void *args);

void
    pl_connection_test (bool verbose);

#endif
