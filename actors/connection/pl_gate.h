/*  =========================================================================
    pl_gate - the first request head of a new connection, checked before
    libwebsockets sees it

    libwebsockets 4.1 refuses some request heads inside its parser, before
    any callback: it closes the connection (a head over its buffer, too
    many query parts, a decoded %00) or answers an HTML 403 (a bad
    %-escape, an absolute-form target). The actor reads a new connection's
    bytes into a gate until the head ends (an empty line); the gate passes
    what lws will take and refuses the rest with a status and a JSON
    answer: 400 (malformed), 414 (target over http-url-max), 431 (head
    over http-request-bytes), 501 (a method lws does not serve, or no
    HTTP at all), 505 (an HTTP version other than 1.0 and 1.1).

    A gate buffers at most http-request-bytes (plus one byte to tell that
    it is over), grows its buffer by doubling, and checks each line once
    as it completes; a refusal comes as soon as the bytes show one.
    =========================================================================
*/
#ifndef PL_GATE_H_INCLUDED
#define PL_GATE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

typedef struct _pl_gate_t pl_gate_t;

typedef enum {
    PL_GATE_MORE,               //  the head is not complete: read on
    PL_GATE_PASS,               //  a head lws takes: hand it pl_gate_data
    PL_GATE_REFUSE              //  write pl_gate_answer, then close
} pl_gate_verdict_t;

//  Query parts (separated by '&' or ';') a target may have: lws keeps each
//  in a slot of a fixed table it shares with the headers it knows
#define PL_GATE_QUERY_PARTS     32

//  A gate for one connection: head_max is http-request-bytes, target_max
//  http-url-max. Returns NULL when out of memory.
pl_gate_t *
    pl_gate_new (size_t head_max, size_t target_max);

//  Safe on NULL and twice.
void
    pl_gate_destroy (pl_gate_t **self_p);

//  Most bytes the next pl_gate_input may take (at least 1 while the
//  verdict is PL_GATE_MORE).
size_t
    pl_gate_room (pl_gate_t *self);

//  Bytes the client sent, at most pl_gate_room. Returns the verdict; once
//  it is not PL_GATE_MORE it stays, and further input is ignored.
pl_gate_verdict_t
    pl_gate_input (pl_gate_t *self, const char *data, size_t size);

pl_gate_verdict_t
    pl_gate_verdict (pl_gate_t *self);

//  Everything input so far.
const char *
    pl_gate_data (pl_gate_t *self, size_t *size);

//  A refusal's status (400, 414, 431, 501, 505), or 0 while there is none.
int
    pl_gate_status (pl_gate_t *self);

//  A refusal's whole HTTP answer: status line, content-type
//  application/json, content-length, connection: close and the body
//  {"error":"..."}; NULL while there is none.
const char *
    pl_gate_answer (pl_gate_t *self, size_t *size);

void
    pl_gate_test (bool verbose);

#endif
