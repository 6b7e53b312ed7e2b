/*  =========================================================================
    pl_loadconn - one client connection of parley-load: a non-blocking
    socket, the WebSocket handshake and frames, and STOMP as stompjs
    speaks it, from CONNECT to the RECEIPT of DISCONNECT

    Everything runs on the thread that owns the connection; it reports to
    that thread's counters and figures directly. A connection that fails
    says why once (pl_load_error) and closes; its buffers stay until
    pl_loadconn_free, so no callback ever reads freed memory.
    =========================================================================
*/
#ifndef PL_LOADCONN_H_INCLUDED
#define PL_LOADCONN_H_INCLUDED

#include "pl_load.h"

//  Set up connection index of thread; highest (room entries) and seen
//  (room * words per sender) are its share of the thread's blocks.
void
    pl_loadconn_init (pl_load_conn_t *self, pl_load_thread_t *thread, int index,
                      int32_t *highest, uint64_t *seen);

//  Free the buffers. Closes the socket if it is still open.
void
    pl_loadconn_free (pl_load_conn_t *self);

//  Start the TCP connect. On failure the connection is settled as failed.
void
    pl_loadconn_open (pl_load_conn_t *self, int64_t now);

//  Handle what epoll reported for the socket.
void
    pl_loadconn_handle (pl_load_conn_t *self, uint32_t events, int64_t now);

//  Send the next message, due at scheduled_ns; nothing unless subscribed.
void
    pl_loadconn_send (pl_load_conn_t *self, int64_t scheduled_ns);

//  Heart-beats both ways and deadlines; called every few hundred ms.
void
    pl_loadconn_tick (pl_load_conn_t *self, int64_t now);

//  DISCONNECT with a receipt, then close the WebSocket, as stompjs's
//  deactivate does.
void
    pl_loadconn_disconnect (pl_load_conn_t *self, int64_t now);

//  Is the socket still open?
bool
    pl_loadconn_live (const pl_load_conn_t *self);

#endif
