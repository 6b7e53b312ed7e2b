/*  =========================================================================
    pl_msg - the envelope between parley's actors (see proto/SPEC.md)

    One message = [routing id frame, on ROUTER sockets only] + one body frame:
        "PL" version:u8 command:u8
        session:u64 corr:u64 seq:u64 created:i64 status:u32
        route room user name kind sub key id cmid : each u16 length + bytes
        body : u32 length + bytes
    Integers are big-endian. A frame with a foreign signature, another
    version, an unknown command or a length that does not add up is logged
    and dropped by pl_msg_recv: it never reaches the actor's logic.
    =========================================================================
*/
#ifndef PL_MSG_H_INCLUDED
#define PL_MSG_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#define PL_MSG_VERSION 1

typedef enum {
    PL_MSG_HELLO = 1,           //  peer announces itself (kind = role)
    PL_MSG_PING,                //  connection -> router, keeps interest alive
    PL_MSG_RESYNC,              //  router -> connection: send your interest again
    PL_MSG_JOIN,                //  connection -> router: has subscribers for room
    PL_MSG_LEAVE,               //  connection -> router: has none left for room
    PL_MSG_AUTHZ,               //  connection -> router: may user subscribe to room?
    PL_MSG_SEND,                //  connection -> router -> bridge: append a message
    PL_MSG_RESULT,              //  answer to AUTHZ, SEND, QUERY (status, seq, body)
    PL_MSG_DELIVER,             //  bridge -> router -> connection: a room message
    PL_MSG_PERSIST,             //  bridge -> persistence: store this stream entry
    PL_MSG_PERSISTED,           //  persistence -> bridge: entry stored (or failed)
    PL_MSG_QUERY,               //  connection -> router -> persistence: HTTP API work
    PL_MSG_ROOM_CHANGED,        //  persistence -> router -> bridge: members of room changed
    PL_MSG_REPLAY,              //  connection -> router -> bridge: room entries after seq
    PL_MSG_COMMAND_LIMIT
} pl_msg_command_t;

//  Readiness bits in the status of a PING answer (see SPEC.md)
#define PL_READY_STORE  1       //  a persistence actor is connected
#define PL_READY_BRIDGE 2       //  the stream bridge has Redis

//  Largest short string field and body the codec accepts
#define PL_MSG_STRING_MAX 65535
#define PL_MSG_BODY_MAX   (16 * 1024 * 1024)

typedef struct _pl_msg_t pl_msg_t;

pl_msg_t *pl_msg_new (pl_msg_command_t command);
void      pl_msg_destroy (pl_msg_t **self_p);
//  A new message with the same fields (not the routing id).
pl_msg_t *pl_msg_dup (const pl_msg_t *self);

//  Receive one message; NULL on interrupt or when the message was malformed
//  (logged and dropped; call again). On a ROUTER socket the routing id is
//  kept for replies.
pl_msg_t *pl_msg_recv (zsock_t *socket);
//  Receive like pl_msg_recv but never block: NULL when nothing is waiting.
pl_msg_t *pl_msg_recv_nowait (zsock_t *socket, bool *malformed);
//  Receive until a message of this command arrives, dropping others (peers'
//  HELLOs and PINGs); NULL on the socket's receive timeout or interrupt.
//  For tests that play a peer of an actor.
pl_msg_t *pl_msg_recv_command (zsock_t *socket, pl_msg_command_t command);
//  Send and destroy. On a ROUTER socket the routing id goes first. 0 / -1.
int       pl_msg_send (pl_msg_t **self_p, zsock_t *socket);
//  Send a copy, keep the message (for fan-out to several peers).
int       pl_msg_send_copy (pl_msg_t *self, zsock_t *socket, const char *routing_id);

//  Encode into one frame / decode one frame (NULL when malformed).
zframe_t *pl_msg_encode (const pl_msg_t *self);
pl_msg_t *pl_msg_decode (const byte *data, size_t size, const char **error);

pl_msg_command_t pl_msg_command (const pl_msg_t *self);
const char *pl_msg_command_name (pl_msg_command_t command);

//  Routing id (ROUTER sockets): the peer it came from / goes to.
const char *pl_msg_routing_id (const pl_msg_t *self);
void        pl_msg_set_routing_id (pl_msg_t *self, const char *routing_id);

//  Numbers
uint64_t pl_msg_session (const pl_msg_t *self);
void     pl_msg_set_session (pl_msg_t *self, uint64_t session);
uint64_t pl_msg_corr (const pl_msg_t *self);
void     pl_msg_set_corr (pl_msg_t *self, uint64_t corr);
uint64_t pl_msg_seq (const pl_msg_t *self);
void     pl_msg_set_seq (pl_msg_t *self, uint64_t seq);
int64_t  pl_msg_created (const pl_msg_t *self);
void     pl_msg_set_created (pl_msg_t *self, int64_t created);
uint32_t pl_msg_status (const pl_msg_t *self);
void     pl_msg_set_status (pl_msg_t *self, uint32_t status);

//  Short strings: never NULL ("" when unset). Setting NULL sets "".
//  Values longer than PL_MSG_STRING_MAX are truncated by the setter; callers
//  enforce their own, smaller limits on input.
#define PL_MSG_STRING_FIELDS(X) X(route) X(room) X(user) X(name) X(kind) X(sub) X(key) X(id) X(cmid)
#define PL_MSG_DECLARE_STRING(field) \
    const char *pl_msg_##field (const pl_msg_t *self); \
    void        pl_msg_set_##field (pl_msg_t *self, const char *value);
PL_MSG_STRING_FIELDS (PL_MSG_DECLARE_STRING)

//  Body: any bytes, kept NUL-terminated for convenience.
const char *pl_msg_body (const pl_msg_t *self);
size_t      pl_msg_body_size (const pl_msg_t *self);
void        pl_msg_set_body (pl_msg_t *self, const char *data, size_t size);

//  One line for logs
void pl_msg_print (const pl_msg_t *self, char *buffer, size_t size);

void pl_msg_test (bool verbose);

#endif
