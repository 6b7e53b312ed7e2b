/*  =========================================================================
    pl_gate - the first request head of a new connection, checked before
    libwebsockets sees it

    libwebsockets 4.1 refuses some request heads before any callback: it
    closes the connection (a head over its buffer, more lines of the
    headers it knows and query parts than its table holds, a decoded %00, a
    WebSocket upgrade whose Sec-WebSocket-Protocol or -Extensions lines
    outgrow its copy of them) or answers an HTML 403 (a bad %-escape, an
    absolute-form target). The actor reads a new connection's bytes into a
    gate until the head ends (an empty line); the gate passes what lws
    will take and refuses the rest with a status and a JSON answer: 400
    (malformed), 414 (target over http-url-max), 431 (head over
    http-request-bytes, more header lines than http-header-lines-max, the
    WebSocket headers above), 501 (a method lws does not serve, or no HTTP
    at all), 505 (an HTTP version other than 1.0 and 1.1); and 408 when
    the actor says the head took longer than http-head-timeout-s.

    A WebSocket upgrade (Upgrade: websocket) is checked whole once the
    head is complete, for lws 4.1 closes without a word on what RFC 6455
    4.2.1 refuses, or answers 101 when it should not. Measured against the
    actor, it closed on: no Host (or an empty one), no Connection listing
    upgrade (or one over 126 bytes, its lines joined), no
    Sec-WebSocket-Key, a Sec-WebSocket-Protocol list without a name it
    serves or one its list parser gives up on (an empty name, a quoted
    one, names apart by spaces, one that starts with a digit), a POST, a
    path other than /ws; it answered 101 to a key that is not 16 bytes in
    base64 (its accept hashes the key as sent, trailing spaces too),
    several key lines (the first taken), any Sec-WebSocket-Version or
    none, HTTP/1.0; its HTML 403 to an Upgrade that lists more than
    websocket. The gate answers 400 naming what is wrong, 404 off /ws, 426
    (with sec-websocket-version: 13) for a version other than 13, 431 for
    Connection over lws's copy; it passes an upgrade of one Upgrade line
    "websocket", an HTTP/1.1 GET of /ws (a query or not), one Host with a
    value, Connection listing upgrade, one key of 24 base64 characters,
    one Sec-WebSocket-Version 13, and no Sec-WebSocket-Protocol (or an
    empty one) or a list of names (tokens) with one of v12.stomp,
    v11.stomp, v10.stomp (compared as lws does, case and all).

    An upgrade to anything else (Upgrade: h2c, which curl --http2 sends on
    http://, or any other): lws answered its HTML 403, or 101 and HTTP/2
    for h2c, which the API does not serve. RFC 9110 7.8 lets a server
    ignore Upgrade, so the gate passes the request without its Upgrade and
    HTTP2-Settings lines (pl_gate_rewritten): the actor takes the head off
    the socket and hands lws the rewritten one. lws 4.1 hangs (and spins)
    on a body that comes after a head handed to it so, so such a request
    with a body (a Content-Length other than 0, or a Transfer-Encoding) is
    refused 501 instead.

    The path, decoded as lws decodes it, must mean what it says: a "." or
    ".." segment (lws resolves them), an escaped '/' or any '\\' is refused
    400. Paths off the API's (pl_api_paths: /api, /ws, the probes) are the
    web chat's files, which lws serves for GET only: any other method is
    refused 405 (allow: GET): lws answers a HEAD, or a 304, and keeps the
    connection open for a next request this gate would never see. For the
    304 (to If-None-Match), a file's GET is rewritten: its Connection lines
    give way to "Connection: close", so lws closes after any answer; such
    a GET with a body is refused 400.
    What lws 4.1 (Debian's 4.1.6) keeps, measured against the actor: a
    table of 92 slots for the lines of the headers it knows (each line
    one, repeated or not) and the query parts together; one more and it
    closes. Headers it does not know take none. The gate counts every
    header line, known or not (a limit an operator can reason about, with
    no copy of lws's list of names), against http-header-lines-max, which
    may be at most 92 less the 32 query parts it lets through: 60.

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

//  Slots of lws 4.1's header table: the lines of the headers it knows and
//  the query parts of the target, together
#define PL_GATE_LWS_SLOTS       92
//  Query parts (separated by '&' or ';') a target may have
#define PL_GATE_QUERY_PARTS     32
//  The most http-header-lines-max may be: the slots the query leaves
#define PL_GATE_HEADER_LINES_MOST   (PL_GATE_LWS_SLOTS - PL_GATE_QUERY_PARTS)
//  A WebSocket upgrade: lws copies all Sec-WebSocket-Protocol lines joined
//  (a space and a comma between lines, the first line's leading spaces
//  dropped) into 127 bytes, and each name of the list into 63; the
//  Sec-WebSocket-Extensions lines, joined alike, into 255. Over these it
//  closes the connection.
#define PL_GATE_PROTOCOLS_BYTES     126
#define PL_GATE_PROTOCOL_NAME_BYTES 62
#define PL_GATE_EXTENSIONS_BYTES    254
//  The Connection lines of a WebSocket upgrade, joined alike into 127
#define PL_GATE_CONNECTION_BYTES    126

//  A gate for one connection: head_max is http-request-bytes, target_max
//  http-url-max, lines_max http-header-lines-max (at most
//  PL_GATE_HEADER_LINES_MOST). Returns NULL when out of memory.
pl_gate_t *
    pl_gate_new (size_t head_max, size_t target_max, size_t lines_max);

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

//  The head did not come in time (seconds is http-head-timeout-s): while
//  the verdict is PL_GATE_MORE, it becomes a 408 refusal. Returns the
//  verdict.
pl_gate_verdict_t
    pl_gate_expire (pl_gate_t *self, int seconds);

//  Everything input so far.
const char *
    pl_gate_data (pl_gate_t *self, size_t *size);

//  A refusal's status (400, 404, 405, 408, 414, 426, 431, 501, 503, 505), or
//  0 while there is none.
int
    pl_gate_status (pl_gate_t *self);

//  A refusal's whole HTTP answer: status line, content-type
//  application/json, content-length, connection: close (426: upgrade,
//  close, with upgrade: websocket and sec-websocket-version: 13) and the
//  body {"error":"..."}; NULL while there is none.
const char *
    pl_gate_answer (pl_gate_t *self, size_t *size);

//  Once passed: the bytes of the head as the client sent them, request
//  line to empty line (what follows is its body, or the next request).
size_t
    pl_gate_head_size (pl_gate_t *self);

//  Once passed: the head lws must read instead of the client's, or NULL
//  when lws reads the client's as it is. An upgrade to anything but
//  websocket is dropped: its Upgrade and HTTP2-Settings lines are not in
//  it; a file's GET says "Connection: close" instead of its Connection
//  lines. The actor takes pl_gate_head_size bytes off the socket and hands
//  these to lws with it.
const char *
    pl_gate_rewritten (pl_gate_t *self, size_t *size);

//  Once passed: whether the request is a GET off the API's paths, i.e. for
//  a file of the web chat (pl_web).
bool
    pl_gate_for_file (pl_gate_t *self);

void
    pl_gate_test (bool verbose);

#endif
