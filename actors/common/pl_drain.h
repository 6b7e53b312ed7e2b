/*  =========================================================================
    pl_drain - the one receive-and-dispatch loop of every actor

    ZMQ_FD is edge-triggered: once it wakes a poller, an actor must read
    until the socket is empty, or what is already queued stalls until the
    next message arrives. pl_drain reads and hands each well-formed envelope
    to the actor's handler; malformed ones were logged and dropped by
    pl_msg_recv_nowait. The budget bounds one turn so that an actor's other
    sockets (Redis, lws) are served in between; the caller turns again at
    once while pl_drain says more may be waiting.
    =========================================================================
*/
#ifndef PL_DRAIN_H_INCLUDED
#define PL_DRAIN_H_INCLUDED

#include "pl_msg.h"

//  Handles one message. It owns *message_p: it may keep it (setting
//  *message_p to NULL); whatever is left there is destroyed after the call.
typedef void (pl_drain_fn) (void *actor, pl_msg_t **message_p);

//  Read and dispatch up to budget messages (0: until the socket is empty).
//  `from` names the socket in debug logs ("router", "bridge"); on a ROUTER
//  socket the sender's routing id is logged instead. Returns the number of
//  messages handled; budget reached means more may be waiting.
int
    pl_drain (zsock_t *socket, int budget, const char *from,
              pl_drain_fn *handler, void *actor);

void
    pl_drain_test (bool verbose);

#endif
