/*  =========================================================================
    pl_handshake - what a STOMP CONNECT settles: the protocol version, the
    heart-beat intervals each way, and who the client is

    The version is the highest both sides speak (1.0, 1.1, 1.2); without
    accept-version it is the one of the WebSocket subprotocol, else 1.0.
    Heart-beats: the server offers and wants heartbeat-ms; each direction
    gets the larger of what one side can send and the other wants, or none
    when either says 0. The token comes in Authorization (or passcode) and
    is verified; the identity comes only from it.
    =========================================================================
*/
#ifndef PL_HANDSHAKE_H_INCLUDED
#define PL_HANDSHAKE_H_INCLUDED

#include "pl_stomp.h"
#include "pl_token.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    int version;                //  10, 11 or 12
    int out_interval_ms;        //  we send heart-beats this often, 0: never
    int in_interval_ms;         //  the client promised to send this often, 0: never
    pl_identity_t identity;     //  from the token
} pl_handshake_t;

//  Settle a CONNECT or STOMP frame of a client that picked subprotocol
//  (10, 11 or 12 from v1x.stomp, 0 when none); the server offers and wants
//  heartbeat_ms. Returns 0 with self filled, or -1 with the reason for the
//  client's ERROR in message.
int
    pl_handshake_settle (pl_handshake_t *self, const pl_stomp_frame_t *frame, int subprotocol,
                         int heartbeat_ms, pl_token_verifier_t *verifier,
                         char *message, size_t size);

void
    pl_handshake_test (bool verbose);

#endif
