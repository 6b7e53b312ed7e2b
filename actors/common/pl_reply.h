/*  =========================================================================
    pl_reply - the RESULT that answers a request, built in one place

    Every request (AUTHZ, SEND, QUERY, REPLAY) is answered by one RESULT that
    finds its way back by the request's own fields: the routing id (the peer
    it came from, on a ROUTER socket), route (the connection actor behind a
    forwarding router), corr and session (the requester's request and
    client), and room.
    =========================================================================
*/
#ifndef PL_REPLY_H_INCLUDED
#define PL_REPLY_H_INCLUDED

#include "pl_msg.h"

//  A RESULT for request with this status and body (NULL: none).
pl_msg_t *
    pl_reply_new (const pl_msg_t *request, uint32_t status, const char *body);

//  Build the RESULT and send it on socket. Returns 0, or -1 when the socket
//  refused it (the peer is gone or its queue is full: the requester's
//  deadline answers its client).
int
    pl_reply_send (zsock_t *socket, const pl_msg_t *request, uint32_t status, const char *body);

void
    pl_reply_test (bool verbose);

#endif
