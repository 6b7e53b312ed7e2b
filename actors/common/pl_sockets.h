/*  =========================================================================
    pl_sockets - the two kinds of ZeroMQ socket parley's actors use

    Every link between actors is a DEALER (the peer that announces itself
    with HELLO) connected to a ROUTER (the binder). Both sides share these
    settings, so they live here once.
    =========================================================================
*/
#ifndef PL_SOCKETS_H_INCLUDED
#define PL_SOCKETS_H_INCLUDED

#include <czmq.h>

//  A ROUTER bound to endpoint: a restarted peer takes its routing id over at
//  once (handover), and a send to a gone peer fails instead of vanishing
//  (mandatory). NULL (logged) when the endpoint cannot be bound.
//  hwm: the high-water mark (messages queued per peer and direction; the
//  configuration's socket-hwm): bursts queue up to it, beyond it sends fail.
zsock_t *pl_router_socket_new (const char *endpoint, int hwm);

//  A DEALER with this routing id, connecting to endpoint (ZeroMQ keeps
//  trying until the binder is there, so any start order works).
zsock_t *pl_dealer_socket_new (const char *identity, const char *endpoint, int hwm);

#endif
