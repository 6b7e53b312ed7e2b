/*  =========================================================================
    pl_wsframe - the client's side of RFC 6455, for parley-load

    Just what a load client needs, without a library under it: the opening
    handshake (a fresh Sec-WebSocket-Key per connection and the check of
    the server's Sec-WebSocket-Accept), masked client frames, and a reader
    that takes server frames from a byte stream in any split: data
    messages, possibly fragmented into continuation frames, and control
    frames (ping, pong, close) between the fragments.
    =========================================================================
*/
#ifndef PL_WSFRAME_H_INCLUDED
#define PL_WSFRAME_H_INCLUDED

#include "pl_util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PL_WSFRAME_CONTINUATION 0x0
#define PL_WSFRAME_TEXT         0x1
#define PL_WSFRAME_BINARY       0x2
#define PL_WSFRAME_CLOSE        0x8
#define PL_WSFRAME_PING         0x9
#define PL_WSFRAME_PONG         0xA

//  Base64 of 16 random bytes and its NUL
#define PL_WSFRAME_KEY_SIZE     25

//  Write a handshake key made from 16 bytes of the caller's randomness.
void
    pl_wsframe_key (const unsigned char random [16], char key [PL_WSFRAME_KEY_SIZE]);

//  Append the opening handshake request for ws://host:port/path, offering
//  protocols (comma separated, NULL for none).
int
    pl_wsframe_request (pl_buf_t *out, const char *host, int port, const char *path,
                        const char *key, const char *protocols);

//  Check the server's answer to the handshake in data. Returns the size of
//  the answer (its headers and the blank line) when it is a valid 101 for
//  key; 0 while the blank line has not come; -1 when it is not, with the
//  reason in error. protocol gets the chosen subprotocol ("" if none).
ssize_t
    pl_wsframe_response (const char *data, size_t size, const char *key,
                         char *protocol, size_t protocol_size,
                         char *error, size_t error_size);

//  Frames out: pl_wsclient_frame (the selftest client's framing).

//  The reader's state between calls: whether a fragmented data message is
//  open, and of which kind.
typedef struct {
    bool fragmented;
    int opcode;                 //  of the open message: text or binary
    uint64_t max_payload;       //  larger frames are protocol errors
} pl_wsreader_t;

//  Called once per complete frame. A data frame (text, binary or its
//  continuation) comes with opcode PL_WSFRAME_TEXT or PL_WSFRAME_BINARY
//  and fin set on the last fragment; payload is unmasked and may be
//  changed by the callee. Return 0 to go on, -1 to stop.
typedef int (pl_wsreader_fn) (void *arg, int opcode, char *payload, size_t size, bool fin);

void
    pl_wsreader_init (pl_wsreader_t *self, uint64_t max_payload);

//  Take every complete frame from data. Returns the bytes taken (the rest
//  is an incomplete frame to keep for later), or -1 on a protocol error
//  (reason in *error) or when the callback stopped.
ssize_t
    pl_wsreader_feed (pl_wsreader_t *self, char *data, size_t size,
                      pl_wsreader_fn *callback, void *arg, const char **error);

void
    pl_wsframe_test (bool verbose);

#endif
