/*  =========================================================================
    pl_stomp - STOMP 1.0/1.1/1.2 frame codec: an incremental parser of
    client frames and a writer of server frames

    The parser takes bytes as they arrive from a WebSocket, in any split,
    and calls back once per complete frame. It buffers only the frame in
    progress, never more than max_frame_bytes of it, and looks at each
    input byte a bounded number of times, so a hostile client can cost
    neither memory nor CPU beyond the limits. Any protocol violation stops
    the parser with a short reason meant for a STOMP ERROR frame.

    A frame's size is every byte from its command up to, not including, its
    terminating NUL: command line, header lines, blank line and body.
    =========================================================================
*/
#ifndef PL_STOMP_H_INCLUDED
#define PL_STOMP_H_INCLUDED

#include "pl_util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Client commands; any other command is a protocol error.
typedef enum {
    PL_STOMP_CONNECT = 1, PL_STOMP_STOMP, PL_STOMP_SEND, PL_STOMP_SUBSCRIBE, PL_STOMP_UNSUBSCRIBE,
    PL_STOMP_ACK, PL_STOMP_NACK, PL_STOMP_BEGIN, PL_STOMP_COMMIT, PL_STOMP_ABORT, PL_STOMP_DISCONNECT
} pl_stomp_command_t;

typedef struct {
    char *name;
    char *value;
} pl_stomp_header_t;

//  One parsed frame. Owned by the parser, valid only during the callback.
typedef struct {
    pl_stomp_command_t command;
    const char *command_name;       //  "SEND", ...
    pl_stomp_header_t *headers;     //  in arrival order, unescaped
    size_t header_count;
    char *body;                     //  may hold NULs; body [body_size] == 0
    size_t body_size;
} pl_stomp_frame_t;

//  Value of a header, or NULL if absent. When a header repeats the first
//  occurrence wins, as STOMP says.
const char *
    pl_stomp_frame_header (const pl_stomp_frame_t *frame, const char *name);

typedef struct _pl_stomp_parser_t pl_stomp_parser_t;

//  Create a parser. Frames larger than max_frame_bytes (> 0) or with more
//  than max_headers headers are protocol errors. Returns NULL when out of
//  memory.
pl_stomp_parser_t *
    pl_stomp_parser_new (size_t max_frame_bytes, size_t max_headers);

//  Destroy a parser. Safe on NULL and twice.
void
    pl_stomp_parser_destroy (pl_stomp_parser_t **self_p);

//  Set the version whose header escaping applies to the frames that follow
//  CONNECT: 10, 11 or 12 (the default). CONNECT and STOMP frames are never
//  unescaped. May be called from inside the frame callback.
void
    pl_stomp_parser_set_version (pl_stomp_parser_t *self, int version);

//  Called once per complete frame. Return 0 to go on, -1 to stop feeding.
typedef int (pl_stomp_frame_fn) (void *arg, pl_stomp_frame_t *frame);

//  Feed bytes as they arrive: a frame may be split anywhere and several
//  frames may come in one call. EOLs between frames are heart-beats.
//  Returns 0 when all bytes were taken. Returns -1 on a protocol error:
//  pl_stomp_parser_error () then says why and the parser refuses all
//  further input. Returns -1 too when the callback returned -1: no error
//  is set, the bytes after that frame are dropped, and the parser takes
//  new input from a frame boundary.
int
    pl_stomp_parser_feed (pl_stomp_parser_t *self, const char *data, size_t size,
                          pl_stomp_frame_fn *fn, void *arg);

//  The reason of the protocol error, e.g. "unknown command 'FOO'", or NULL
//  while there is none.
const char *
    pl_stomp_parser_error (pl_stomp_parser_t *self);

//  Between frames, give back the frame buffer and header tables (a quiet
//  session holds nothing); the next frame allocates them again. Does
//  nothing inside a frame.
void
    pl_stomp_parser_trim (pl_stomp_parser_t *self);

//  Heart-beat EOLs seen so far ("\n" or "\r\n" between frames).
uint64_t
    pl_stomp_parser_heartbeats (pl_stomp_parser_t *self);

//  Append one server frame to out: command, headers, a content-length when
//  body is not NULL, blank line, body and NUL. headers is a NULL-terminated
//  list name, value, name, value... (may be NULL); a content-length among
//  them is dropped when body is not NULL. Names and values are escaped for
//  version 11 and 12, except in a CONNECTED frame, which STOMP never
//  escapes; where nothing is escaped a CR or LF would break the framing, so
//  it is written as a space. Returns 0, or -1 when out of memory (out is
//  then as it was).
int
    pl_stomp_write (pl_buf_t *out, int version, const char *command,
                    const char *const *headers, const char *body, size_t body_size);

//  Append an ERROR frame with message:<message>, receipt-id:<receipt_id>
//  when that is not NULL, content-type:text/plain and detail (or nothing
//  when NULL) as body. Returns 0 or -1 as pl_stomp_write.
int
    pl_stomp_write_error (pl_buf_t *out, int version, const char *message,
                          const char *detail, const char *receipt_id);

//  For selftests: the value of a header in a server frame as text (its
//  bytes up to the NUL), unescaped as a 1.1/1.2 client does; NULL when
//  absent. The caller frees it.
char *
    pl_stomp_text_header (const char *frame, const char *name);

//  For selftests: check (pl_check) that frame, which may be NULL, is a
//  command frame and, when name is not NULL, that it has that header,
//  with that value unless value is NULL.
void
    pl_stomp_text_expect (const char *frame, const char *command,
                          const char *name, const char *value);

void
    pl_stomp_test (bool verbose);

#endif
