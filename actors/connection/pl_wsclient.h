/*  =========================================================================
    pl_wsclient - a blocking HTTP/1.1 and WebSocket client over a plain TCP
    socket, for the connection actor's end-to-end selftest

    It speaks the wire by hand (no libwebsockets), so a test sees exactly
    what the server wrote. Reads time out after 5 seconds. Anything that
    goes wrong on the client's side fails the test (pl_check); what the
    server does is the test's to judge.
    =========================================================================
*/
#ifndef PL_WSCLIENT_H_INCLUDED
#define PL_WSCLIENT_H_INCLUDED

#include "pl_util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _pl_wsclient_t pl_wsclient_t;

//  A loopback TCP port that was free a moment ago.
int
    pl_wsclient_free_port (void);

//  Send one HTTP request to the loopback port (Connection: close), with
//  Authorization: Bearer token and a JSON body when not NULL. Returns the
//  socket the answer comes on.
int
    pl_wsclient_http_send (int port, const char *method, const char *path,
                           const char *token, const char *body);

//  Read the answer until the server closes, and close the socket. status
//  gets the status code (0 when none). The caller frees the text.
char *
    pl_wsclient_http_read (int fd, int *status);

//  Send and read in one.
char *
    pl_wsclient_http (int port, const char *method, const char *path,
                      const char *token, const char *body, int *status);

//  Open a WebSocket on /ws of the loopback port, offering subprotocol
//  (none when NULL); the 101 answer is checked.
pl_wsclient_t *
    pl_wsclient_new (int port, const char *subprotocol);

//  Close the socket and free. Safe on NULL and twice.
void
    pl_wsclient_destroy (pl_wsclient_t **self_p);

//  Append one frame (FIN set, opcode 1 text, 2 binary, 8 close, 9 ping,
//  10 pong) masked with mask, as a client must send it. Returns 0 / -1
//  (out of memory). parley-load frames with it too.
int
    pl_wsclient_frame (pl_buf_t *out, int opcode, const void *payload, size_t size,
                       uint32_t mask);

//  Send data as one masked text message.
void
    pl_wsclient_send (pl_wsclient_t *self, const char *data, size_t size);

//  Send a STOMP frame: its text and the terminating NUL.
void
    pl_wsclient_send_stomp (pl_wsclient_t *self, const char *frame);

//  Read one WebSocket message into the received bytes. Returns 0, or -1
//  when the server closed or nothing came in time.
int
    pl_wsclient_recv (pl_wsclient_t *self);

//  The next STOMP frame as text (without its NUL), heart-beats skipped;
//  NULL when the server closed or nothing came in time. The caller frees.
char *
    pl_wsclient_recv_stomp (pl_wsclient_t *self);

//  Bytes received and not yet returned as frames; their number in size.
const char *
    pl_wsclient_received (pl_wsclient_t *self, size_t *size);

//  Check that the server closes without sending another frame.
void
    pl_wsclient_expect_closed (pl_wsclient_t *self);

void
    pl_wsclient_test (bool verbose);

#endif
