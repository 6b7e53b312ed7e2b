/*  =========================================================================
    pl_loadstomp - STOMP 1.2 as @stomp/stompjs 7 speaks it, for parley-load

    Outbound, frames written byte for byte as stompjs writes them: headers
    in the order given, values escaped once 1.2 is agreed (never in
    CONNECT), content-length after the others when there is a body.
    Inbound, complete frames taken from the byte stream the server's
    WebSocket messages carry (several frames may share a message, one may
    span messages), EOL heart-beats between them skipped, and header values
    unescaped in place when asked (never in CONNECTED).
    =========================================================================
*/
#ifndef PL_LOADSTOMP_H_INCLUDED
#define PL_LOADSTOMP_H_INCLUDED

#include "pl_util.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define PL_LOADSTOMP_HEADERS_MAX 32

typedef struct {
    char *name;
    char *value;
} pl_loadstomp_header_t;

//  One frame, pointing into the fed bytes: valid during the callback
typedef struct {
    char *command;
    pl_loadstomp_header_t headers [PL_LOADSTOMP_HEADERS_MAX];
    size_t header_count;
    char *body;                 //  body [body_size] == 0
    size_t body_size;
} pl_loadstomp_frame_t;

//  Append a frame: command, headers as name, value pairs ending in NULL,
//  the body (may be NULL) and the NUL. escape: STOMP 1.2 escaping of
//  header values (ignored for CONNECT, as stompjs does).
int
    pl_loadstomp_write (pl_buf_t *out, const char *command, const char *headers [],
                        const char *body, size_t body_size, bool escape);

//  The value of a header (the first when it repeats), or NULL.
const char *
    pl_loadstomp_header (const pl_loadstomp_frame_t *frame, const char *name);

//  Called once per complete frame; return 0 to go on, -1 to stop.
typedef int (pl_loadstomp_fn) (void *arg, pl_loadstomp_frame_t *frame);

//  Take every complete frame from data, changing it in place. *unescape:
//  undo STOMP 1.2 escaping in header values (never in CONNECTED); read
//  before each frame, so that the callback of CONNECTED may switch it on
//  for the frames that follow in the same data. Returns
//  the bytes taken (the rest is a frame in progress, to feed again with
//  more), or -1 on a protocol error (reason in *error) or when the
//  callback stopped (*error NULL). A frame in progress past max_frame
//  bytes is an error.
ssize_t
    pl_loadstomp_feed (char *data, size_t size, const bool *unescape, size_t max_frame,
                       pl_loadstomp_fn *callback, void *arg, const char **error);

void
    pl_loadstomp_test (bool verbose);

#endif
