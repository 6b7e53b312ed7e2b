/*  =========================================================================
    pl_sockets - the two kinds of ZeroMQ socket parley's actors use
    =========================================================================
*/
#include "pl_sockets.h"
#include "pl_log.h"

zsock_t *
pl_router_socket_new (const char *endpoint, int hwm)
{
    zsock_t *socket = zsock_new (ZMQ_ROUTER);
    assert (socket);
    zsock_set_router_handover (socket, 1);
    zsock_set_router_mandatory (socket, 1);
    zsock_set_sndhwm (socket, hwm);
    zsock_set_rcvhwm (socket, hwm);
    if (zsock_bind (socket, "%s", endpoint) == -1) {
        pl_log_error ("cannot bind %s: %s", endpoint, zmq_strerror (zmq_errno ()));
        zsock_destroy (&socket);
    }
    return socket;
}

zsock_t *
pl_dealer_socket_new (const char *identity, const char *endpoint, int hwm)
{
    zsock_t *socket = zsock_new (ZMQ_DEALER);
    assert (socket);
    zsock_set_identity (socket, identity);
    zsock_set_sndhwm (socket, hwm);
    zsock_set_rcvhwm (socket, hwm);
    zsock_connect (socket, "%s", endpoint);
    return socket;
}
