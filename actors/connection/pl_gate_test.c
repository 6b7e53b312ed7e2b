/*  =========================================================================
    pl_gate_test - the selftest of pl_gate: heads fed whole and in pieces,
    each refusal's status and answer, what passes, rewrites, limits
    =========================================================================
*/
#include "pl_gate.h"
#include "pl_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  Selftest

//  The limits of the test gates: http-request-bytes, http-url-max and
//  http-header-lines-max at the most lws takes
#define TEST_HEAD_MAX   32768
#define TEST_TARGET_MAX 4096
#define TEST_LINES_MAX  PL_GATE_HEADER_LINES_MOST

//  A head fed in pieces of at most step bytes (0: all at once) to a new gate
//  with at most lines_max header lines; returns the verdict and leaves the
//  gate in *gate_p
static pl_gate_verdict_t
s_test_feed_lines (pl_gate_t **gate_p, const char *head, size_t size, size_t step, size_t lines_max)
{
    pl_gate_destroy (gate_p);
    *gate_p = pl_gate_new (TEST_HEAD_MAX, TEST_TARGET_MAX, lines_max);
    pl_check (*gate_p);
    pl_gate_verdict_t verdict = PL_GATE_MORE;
    for (size_t at = 0; at < size && verdict == PL_GATE_MORE; ) {
        size_t piece = step && step < size - at? step: size - at;
        size_t room = pl_gate_room (*gate_p);
        pl_check (room > 0);
        if (piece > room)
            piece = room;
        verdict = pl_gate_input (*gate_p, head + at, piece);
        at += piece;
    }
    return verdict;
}

static pl_gate_verdict_t
s_test_feed (pl_gate_t **gate_p, const char *head, size_t size, size_t step)
{
    return s_test_feed_lines (gate_p, head, size, step, TEST_LINES_MAX);
}

//  A refused gate's answer: status, JSON, closing, a message with text;
//  the verdict stays, and more input changes nothing
static void
s_test_answer (pl_gate_t *gate, int status, const char *text)
{
    pl_check (pl_gate_verdict (gate) == PL_GATE_REFUSE);
    pl_check (pl_gate_status (gate) == status);
    size_t answer_size;
    const char *answer = pl_gate_answer (gate, &answer_size);
    pl_check (answer && answer_size == strlen (answer));
    char status_line [32];
    snprintf (status_line, sizeof status_line, "HTTP/1.1 %d ", status);
    pl_check (strncmp (answer, status_line, strlen (status_line)) == 0);
    pl_check (strstr (answer, "\r\ncontent-type: application/json\r\n"));
    if (status == 426)
        pl_check (strstr (answer, "\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n"
                                  "connection: upgrade, close\r\n"));
    else
        pl_check (strstr (answer, "\r\nconnection: close\r\n") && !strstr (answer, "\r\nupgrade:"));
    const char *body = strstr (answer, "\r\n\r\n") + 4;
    char length [64];
    snprintf (length, sizeof length, "\r\ncontent-length: %zu\r\n", strlen (body));
    pl_check (strstr (answer, length));
    pl_check (strncmp (body, "{\"error\":\"", 10) == 0);
    pl_check (strstr (body, text));
    pl_check (pl_gate_room (gate) == 0);
    pl_check (pl_gate_input (gate, "GET / HTTP/1.1\r\n\r\n", 18) == PL_GATE_REFUSE);
    pl_check (pl_gate_expire (gate, 1) == PL_GATE_REFUSE && pl_gate_status (gate) == status);
}

//  A head that must be refused with status and a message containing text
static void
s_test_refused (const char *head, size_t size, int status, const char *text)
{
    pl_gate_t *gate = NULL;
    pl_check (s_test_feed (&gate, head, size, 0) == PL_GATE_REFUSE);
    s_test_answer (gate, status, text);
    pl_gate_destroy (&gate);
    pl_gate_destroy (&gate);
}

#define REFUSED(head, status, text) s_test_refused (head, sizeof head - 1, status, text)

static void s_test_rewrite (const char *sent, size_t more, const char *rewritten);

//  Paths: what lws would resolve is refused; off the API, GET only
static void
s_test_paths (void)
{
    REFUSED ("GET /../etc/passwd HTTP/1.1\r\n\r\n", 400, "segments");
    REFUSED ("GET /js/.. HTTP/1.1\r\n\r\n", 400, "segments");
    REFUSED ("GET /%2e%2e/x HTTP/1.1\r\n\r\n", 400, "segments");
    REFUSED ("GET /.%2E/x HTTP/1.1\r\n\r\n", 400, "segments");
    REFUSED ("GET /./index.html HTTP/1.1\r\n\r\n", 400, "segments");
    REFUSED ("GET /api/rooms/../../x HTTP/1.1\r\n\r\n", 400, "segments");
    REFUSED ("GET /..%2fx HTTP/1.1\r\n\r\n", 400, "escaped");
    REFUSED ("GET /a%2Fb HTTP/1.1\r\n\r\n", 400, "escaped");
    REFUSED ("GET /a\\b HTTP/1.1\r\n\r\n", 400, "backslash");
    REFUSED ("GET /a%5cb HTTP/1.1\r\n\r\n", 400, "backslash");
    REFUSED ("GET /a% HTTP/1.1\r\n\r\n", 400, "escape in the request target");
    REFUSED ("GET /a%2 HTTP/1.1\r\n\r\n", 400, "escape in the request target");
    REFUSED ("GET /a%zz HTTP/1.1\r\n\r\n", 400, "escape in the request target");
    REFUSED ("GET /api/rooms/%4 HTTP/1.1\r\n\r\n", 400, "escape in the request target");
    REFUSED ("POST / HTTP/1.1\r\n\r\n", 405, "GET only");
    REFUSED ("HEAD /index.html HTTP/1.1\r\n\r\n", 405, "GET only");
    REFUSED ("DELETE /apis HTTP/1.1\r\n\r\n", 405, "GET only");
    REFUSED ("OPTIONS /chat.css HTTP/1.1\r\n\r\n", 405, "GET only");
    pl_gate_t *gate = NULL;
    pl_check (s_test_feed (&gate, "PUT /x HTTP/1.1\r\n\r\n", 19, 0) == PL_GATE_REFUSE);
    size_t size;
    pl_check (strstr (pl_gate_answer (gate, &size), "\r\nallow: GET\r\n"));
    pl_check (!pl_gate_for_file (gate));
    pl_gate_destroy (&gate);
    //  A file's GET closes after its answer, a 304 too; it has no body
    s_test_rewrite ("GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n"
                    "If-None-Match: \"1\"\r\n\r\n", 0,
                    "GET /index.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"1\"\r\n"
                    "Connection: close\r\n\r\n");
    s_test_rewrite ("GET / HTTP/1.0\r\n\r\n", 0, "GET / HTTP/1.0\r\nConnection: close\r\n\r\n");
    s_test_rewrite ("GET /api/rooms HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", 0, NULL);
    REFUSED ("GET / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 400, "no body");
    //  Which passed request is for a file
    const struct { const char *head; bool file; } passed [] = {
        { "GET / HTTP/1.1\r\n\r\n", true }, { "GET /js/app.js?v=1 HTTP/1.1\r\n\r\n", true },
        { "GET /apix HTTP/1.1\r\n\r\n", true }, { "GET /api HTTP/1.1\r\n\r\n", false },
        { "GET /healthz HTTP/1.1\r\n\r\n", false }, { "POST /api/dev/token HTTP/1.1\r\n\r\n", false },
        { "GET /%77s HTTP/1.1\r\n\r\n", false }, { "GET //api//rooms HTTP/1.1\r\n\r\n", false },
        { "GET //x HTTP/1.1\r\n\r\n", true }
    };
    for (size_t index = 0; index < sizeof passed / sizeof passed [0]; index++) {
        pl_check (s_test_feed (&gate, passed [index].head, strlen (passed [index].head), 0) == PL_GATE_PASS);
        pl_check (pl_gate_for_file (gate) == passed [index].file);
    }
    pl_gate_destroy (&gate);
}

//  Heads lws takes: everything read goes to lws, body bytes included
static void
s_test_passes (void)
{
    pl_gate_t *gate = NULL;
    const char *passing [] = {
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: v12.stomp, v11.stomp\r\n\r\n",
        "GET /api/rooms/r1/messages?limit=2&before=10 HTTP/1.0\r\n\r\n",
        "OPTIONS /api/rooms HTTP/1.1\r\nOrigin: http://x\r\nX-Empty:\r\nX-Tab:\ta\tb\r\n\r\n",
        "DELETE /api/rooms/r%C3%A9 HTTP/1.1\r\nUser-Agent: caf\xc3\xa9\r\n\r\n",
        "HEAD /api HTTP/1.1\r\n\r\n", "PUT /api/x HTTP/1.1\r\n\r\n", "PATCH /metrics HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n", "GET /js/app.js?v=2 HTTP/1.1\r\n\r\n", "GET /.well-known/x HTTP/1.1\r\n\r\n",
        "GET /a..b/c. HTTP/1.1\r\n\r\n", "POST /%61pi/rooms HTTP/1.1\r\n\r\n", "GET /x?a=/../b HTTP/1.1\r\n\r\n",
    };
    for (size_t index = 0; index < sizeof passing / sizeof passing [0]; index++) {
        size_t size = strlen (passing [index]);
        pl_check (s_test_feed (&gate, passing [index], size, 0) == PL_GATE_PASS);
        pl_check (s_test_feed (&gate, passing [index], size, 1) == PL_GATE_PASS);
        pl_check (pl_gate_status (gate) == 0 && pl_gate_room (gate) == 0);
    }
    //  MORE until the empty line; a body in the same input is kept
    const char post [] = "POST /api/rooms HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    pl_gate_destroy (&gate);
    gate = pl_gate_new (TEST_HEAD_MAX, TEST_TARGET_MAX, TEST_LINES_MAX);
    pl_check (pl_gate_input (gate, post, 20) == PL_GATE_MORE);
    pl_check (pl_gate_verdict (gate) == PL_GATE_MORE);
    pl_check (pl_gate_room (gate) == TEST_HEAD_MAX + 1 - 20);
    pl_check (pl_gate_input (gate, post + 20, sizeof post - 1 - 20) == PL_GATE_PASS);
    size_t size;
    const char *data = pl_gate_data (gate, &size);
    pl_check (size == sizeof post - 1 && memcmp (data, post, size) == 0);
    pl_check (pl_gate_answer (gate, &size) == NULL);
    //  Once passed, the timeout changes nothing
    pl_check (pl_gate_expire (gate, 10) == PL_GATE_PASS && pl_gate_status (gate) == 0);
    pl_gate_destroy (&gate);
}

//  A head of 32 query parts (either separator) and lines header lines of a
//  header lws knows (each takes a slot of its table), ended when end
static size_t
s_test_lines_head (char *head, size_t capacity, int lines, bool end)
{
    int length = snprintf (head, capacity, "GET /a?p0");
    for (int part = 1; part < PL_GATE_QUERY_PARTS; part++)
        length += snprintf (head + length, capacity - (size_t) length, "%sp%d", part % 2? "&": ";", part);
    length += snprintf (head + length, capacity - (size_t) length, " HTTP/1.1\r\n");
    for (int line = 0; line < lines; line++)
        length += snprintf (head + length, capacity - (size_t) length, "X-Forwarded-For: 10.0.0.%d\r\n", line);
    if (end)
        length += snprintf (head + length, capacity - (size_t) length, "\r\n");
    pl_check ((size_t) length < capacity);
    return (size_t) length;
}

//  Header lines: up to http-header-lines-max pass (32 query parts and 60
//  known header lines fill lws's table), one more is a 431, known as soon
//  as that line ends
static void
s_test_lines (void)
{
    pl_gate_t *gate = NULL;
    char head [8000];
    size_t size = s_test_lines_head (head, sizeof head, PL_GATE_HEADER_LINES_MOST, true);
    pl_check (PL_GATE_HEADER_LINES_MOST + PL_GATE_QUERY_PARTS == PL_GATE_LWS_SLOTS);
    pl_check (s_test_feed (&gate, head, size, 0) == PL_GATE_PASS);
    pl_check (s_test_feed (&gate, head, size, 7) == PL_GATE_PASS);
    size = s_test_lines_head (head, sizeof head, PL_GATE_HEADER_LINES_MOST + 1, true);
    pl_check (s_test_feed (&gate, head, size, 0) == PL_GATE_REFUSE);
    s_test_answer (gate, 431, "more than 60 header lines (http-header-lines-max)");
    //  A head that goes on and on is refused before it ends
    size = s_test_lines_head (head, sizeof head, 200, false);
    pl_check (s_test_feed (&gate, head, size, 1) == PL_GATE_REFUSE);
    pl_check (pl_gate_data (gate, &size) && size < sizeof head / 2);
    s_test_answer (gate, 431, "more than 60 header lines");
    //  Any header counts, known to lws or not; the limit is the option's
    const char eight [] = "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n"
                          "E: 5\r\nF: 6\r\nG: 7\r\n\r\n";
    pl_check (s_test_feed_lines (&gate, eight, sizeof eight - 1, 0, 8) == PL_GATE_PASS);
    pl_check (s_test_feed_lines (&gate, eight, sizeof eight - 1, 0, 7) == PL_GATE_REFUSE);
    s_test_answer (gate, 431, "more than 7 header lines");
    pl_gate_destroy (&gate);
}

//  A WebSocket upgrade with the given Sec-WebSocket-* lines
static pl_gate_verdict_t
s_test_upgrade (pl_gate_t **gate_p, const char *lines)
{
    char head [4096];
    int size = snprintf (head, sizeof head, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n%s\r\n", lines);
    pl_check (size > 0 && (size_t) size < sizeof head);
    return s_test_feed (gate_p, head, (size_t) size, 0);
}

//  Lines of name with value, count times, in lines (capacity bytes)
static const char *
s_test_repeat (char *lines, size_t capacity, const char *name, const char *value, int count)
{
    size_t length = 0;
    lines [0] = 0;
    for (int line = 0; line < count; line++)
        length += (size_t) snprintf (lines + length, capacity - length, "%s: %s\r\n", name, value);
    pl_check (length < capacity);
    return lines;
}

//  Sec-WebSocket-Protocol and -Extensions at what lws copies, and one
//  byte over, on one line and over several (as measured against lws 4.1)
static void
s_test_websocket (void)
{
    pl_gate_t *gate = NULL;
    char lines [3000], name [300];
    //  One line: 126 bytes after the leading spaces
    memset (name, 'a', sizeof name);
    snprintf (lines, sizeof lines, "Sec-WebSocket-Protocol:    v12.stomp,%.50s,%.50s,%.14s\r\n",
              name, name, name);
    pl_check (s_test_upgrade (&gate, lines) == PL_GATE_PASS);
    snprintf (lines, sizeof lines, "Sec-WebSocket-Protocol: v12.stomp,%.50s,%.50s,%.15s\r\n",
              name, name, name);
    pl_check (s_test_upgrade (&gate, lines) == PL_GATE_REFUSE);
    s_test_answer (gate, 431, "Sec-WebSocket-Protocol over 126 bytes");
    //  Ten lines of v12.stomp join to 117 bytes, eleven to 129
    s_test_repeat (lines, sizeof lines, "Sec-WebSocket-Protocol", "v12.stomp", 10);
    pl_check (s_test_upgrade (&gate, lines) == PL_GATE_PASS);
    s_test_repeat (lines, sizeof lines, "sec-websocket-protocol", "v12.stomp", 11);
    pl_check (s_test_upgrade (&gate, lines) == PL_GATE_REFUSE);
    s_test_answer (gate, 431, "(its lines joined)");
    //  A name of 62 bytes (leading spaces not counted), then one of 63
    snprintf (lines, sizeof lines, "Sec-WebSocket-Protocol: x,   %.62s, v12.stomp\r\n", name);
    pl_check (s_test_upgrade (&gate, lines) == PL_GATE_PASS);
    snprintf (lines, sizeof lines, "Sec-WebSocket-Protocol: v12.stomp, %.63s\r\n", name);
    pl_check (s_test_upgrade (&gate, lines) == PL_GATE_REFUSE);
    s_test_answer (gate, 431, "a Sec-WebSocket-Protocol name over 62 bytes");
    //  Extensions: 254 bytes on one line; 12 lines of permessage-deflate
    //  join to 249 bytes, 13 to 270
    snprintf (lines, sizeof lines, "Sec-WebSocket-Extensions:  %.254s\r\n", name);
    pl_check (s_test_upgrade (&gate, lines) == PL_GATE_PASS);
    snprintf (lines, sizeof lines, "Sec-WebSocket-Extensions: %.255s\r\n", name);
    pl_check (s_test_upgrade (&gate, lines) == PL_GATE_REFUSE);
    s_test_answer (gate, 431, "Sec-WebSocket-Extensions over 254 bytes");
    s_test_repeat (lines, sizeof lines, "Sec-WebSocket-Extensions", "permessage-deflate", 12);
    pl_check (s_test_upgrade (&gate, lines) == PL_GATE_PASS);
    s_test_repeat (lines, sizeof lines, "Sec-WebSocket-Extensions", "permessage-deflate", 13);
    pl_check (s_test_upgrade (&gate, lines) == PL_GATE_REFUSE);
    s_test_answer (gate, 431, "Sec-WebSocket-Extensions over 254 bytes");
    pl_gate_destroy (&gate);
}

//  A WebSocket upgrade as clients send it
static const char s_test_ws_head [] =
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: v12.stomp\r\n\r\n";

//  That upgrade with its text from replaced by to, fed to a new gate
static pl_gate_verdict_t
s_test_ws (pl_gate_t **gate_p, const char *from, const char *to)
{
    char head [1024];
    const char *at = strstr (s_test_ws_head, from);
    pl_check (at);
    int size = snprintf (head, sizeof head, "%.*s%s%s", (int) (at - s_test_ws_head), s_test_ws_head,
                         to, at + strlen (from));
    pl_check (size > 0 && (size_t) size < sizeof head);
    return s_test_feed (gate_p, head, (size_t) size, 0);
}

//  The upgrade with from replaced by to: lws takes it as the gate passes it
#define WS_PASSES(from, to) \
    pl_check (s_test_ws (&gate, from, to) == PL_GATE_PASS && !pl_gate_rewritten (gate, &size))
//  ... or it is refused with status and a message holding text
#define WS_REFUSED(from, to, status, text) do { \
    pl_check (s_test_ws (&gate, from, to) == PL_GATE_REFUSE); \
    s_test_answer (gate, status, text); \
} while (0)

//  WebSocket upgrades that lws 4.1 closed without a word (or answered 101
//  to, with a wrong accept or none of our subprotocols), as measured
//  against the actor: each refused with what is wrong
static void
s_test_upgrades (void)
{
    pl_gate_t *gate = NULL;
    size_t size;
    WS_PASSES ("", "");
    WS_PASSES ("Upgrade: websocket", "upgrade:   WebSocket");
    WS_PASSES ("Connection: Upgrade", "Connection: keep-alive,upgrade");
    WS_PASSES ("Connection: Upgrade", "Connection: keep-alive\r\nConnection: Upgrade");
    WS_PASSES ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version:  13 ");
    WS_PASSES ("Sec-WebSocket-Key: ", "Sec-WebSocket-Key:   ");
    WS_PASSES ("v12.stomp", "v10.stomp, v11.stomp, v12.stomp");
    WS_PASSES ("v12.stomp", "chat, superchat , v11.stomp");
    WS_PASSES ("Sec-WebSocket-Protocol: v12.stomp", "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: v10.stomp");
    WS_PASSES ("Sec-WebSocket-Protocol: v12.stomp\r\n", "");
    WS_PASSES ("Sec-WebSocket-Protocol: v12.stomp", "Sec-WebSocket-Protocol:");
    WS_PASSES ("GET /ws ", "GET /ws?token=a&b=c ");
    //  Host
    WS_REFUSED ("Host: x\r\n", "", 400, "needs one Host line with a value");
    WS_REFUSED ("Host: x", "Host:  ", 400, "needs one Host line with a value");
    WS_REFUSED ("Host: x", "Host: x\r\nHost: y", 400, "needs one Host line");
    //  Connection: the upgrade option, in lws's copy of 127 bytes
    WS_REFUSED ("Connection: Upgrade\r\n", "", 400, "needs Connection: Upgrade");
    WS_REFUSED ("Connection: Upgrade", "Connection: keep-alive", 400, "needs Connection: Upgrade");
    WS_REFUSED ("Connection: Upgrade", "Connection: up", 400, "needs Connection: Upgrade");
    WS_REFUSED ("Connection: Upgrade", "Connection: Upgrade;x", 400, "needs Connection: Upgrade");
    char line [300];
    snprintf (line, sizeof line, "Connection:   Upgrade, %0117d", 0);
    WS_PASSES ("Connection: Upgrade", line);
    snprintf (line, sizeof line, "Connection: Upgrade, %0118d", 0);
    WS_REFUSED ("Connection: Upgrade", line, 431, "Connection over 126 bytes");
    snprintf (line, sizeof line, "Connection: %020d\r\nConnection: Upgrade, %094d", 0, 0);
    WS_PASSES ("Connection: Upgrade", line);
    snprintf (line, sizeof line, "Connection: %020d\r\nConnection: Upgrade, %095d", 0, 0);
    WS_REFUSED ("Connection: Upgrade", line, 431, "Connection over 126 bytes (its lines joined)");
    //  Sec-WebSocket-Key: one line, 16 bytes in base64, nothing after
    WS_REFUSED ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 400,
                "Sec-WebSocket-Key must be one line of 24 base64 characters");
    WS_REFUSED ("dGhlIHNhbXBsZSBub25jZQ==", "abc", 400, "Sec-WebSocket-Key");
    WS_REFUSED ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ=", 400, "Sec-WebSocket-Key");
    WS_REFUSED ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ== ", 400, "Sec-WebSocket-Key");
    WS_REFUSED ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25j!Q==", 400, "Sec-WebSocket-Key");
    WS_REFUSED ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==", 400, "one line");
    //  Sec-WebSocket-Version: 13 only, 426 naming it
    WS_REFUSED ("Sec-WebSocket-Version: 13\r\n", "", 426, "WebSocket version 13 only");
    WS_REFUSED ("Version: 13", "Version: 8", 426, "WebSocket version 13 only (Sec-WebSocket-Version)");
    WS_REFUSED ("Version: 13", "Version: 13, 8", 426, "version 13 only");
    WS_REFUSED ("Version: 13", "Version: 13\r\nSec-WebSocket-Version: 13", 426, "version 13 only");
    //  Sec-WebSocket-Protocol: names lws parses, one of them ours
    WS_REFUSED ("v12.stomp", "chat", 400, "no subprotocol served: offer v12.stomp, v11.stomp or v10.stomp");
    WS_REFUSED ("v12.stomp", "V12.STOMP", 400, "no subprotocol served");
    WS_REFUSED ("v12.stomp", "http", 400, "no subprotocol served");
    WS_REFUSED ("v12.stomp", "parley-gate", 400, "no subprotocol served");
    WS_REFUSED ("v12.stomp", ", v12.stomp", 400, "malformed Sec-WebSocket-Protocol");
    WS_REFUSED ("v12.stomp", "12, v12.stomp", 400, "malformed Sec-WebSocket-Protocol");
    WS_REFUSED ("v12.stomp", "a b, v12.stomp", 400, "malformed Sec-WebSocket-Protocol");
    WS_REFUSED ("v12.stomp", "\"v12.stomp\"", 400, "malformed Sec-WebSocket-Protocol");
    WS_REFUSED ("v12.stomp", "v12.stomp;q=1", 400, "malformed Sec-WebSocket-Protocol");
    WS_REFUSED ("v12.stomp", "v12.stomp\r\nSec-WebSocket-Protocol:", 400, "malformed");
    //  Upgrade: websocket alone; an HTTP/1.1 GET of /ws
    WS_REFUSED ("Upgrade: websocket", "Upgrade: websocket ", 400, "Upgrade must be websocket alone, on one line");
    WS_REFUSED ("Upgrade: websocket", "Upgrade: websocket, h2c", 400, "Upgrade must be websocket alone");
    WS_REFUSED ("Upgrade: websocket", "Upgrade: websocket\r\nUpgrade: foo", 400, "on one line");
    WS_REFUSED ("Upgrade: websocket", "Upgrade: h2c\r\nUpgrade: websocket", 400, "on one line");
    WS_REFUSED ("GET /ws HTTP/1.1", "POST /ws HTTP/1.1", 400, "a WebSocket upgrade is an HTTP/1.1 GET");
    WS_REFUSED ("GET /ws HTTP/1.1", "GET /ws HTTP/1.0", 400, "an HTTP/1.1 GET");
    WS_REFUSED ("GET /ws ", "GET /api/rooms ", 404, "WebSocket is served on /ws only");
    WS_REFUSED ("GET /ws ", "GET /ws/ ", 404, "on /ws only");
    WS_REFUSED ("GET /ws ", "GET /w%73 ", 404, "on /ws only");
    pl_gate_destroy (&gate);
}

//  What a client sent (its last more bytes after the head) to a gate, and
//  what lws is to read instead of the head (NULL: the head as sent)
static void
s_test_rewrite (const char *sent, size_t more, const char *rewritten)
{
    pl_gate_t *gate = NULL;
    pl_check (s_test_feed (&gate, sent, strlen (sent), 3) == PL_GATE_PASS);
    pl_check (pl_gate_head_size (gate) == strlen (sent) - more);
    size_t size;
    const char *data = pl_gate_rewritten (gate, &size);
    if (rewritten)
        pl_check (data && size == strlen (rewritten) && memcmp (data, rewritten, size) == 0);
    else
        pl_check (data == NULL && size == 0);
    pl_gate_destroy (&gate);
}

//  Upgrades to anything but websocket: lws answered its HTML 403 (Upgrade:
//  foo) or switched to HTTP/2 (h2c); the request passes without them, or,
//  with a body (which lws does not read after a head handed to it), 501
static void
s_test_other_upgrades (void)
{
    const char h2c [] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                        "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nAccept: */*\r\n\r\n";
    const char plain [] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                          "Accept: */*\r\n\r\n";
    s_test_rewrite (h2c, 0, plain);
    //  What follows the head stays on the socket for lws
    char more [512];
    snprintf (more, sizeof more, "%sGET / HTTP/1.1\r\n", h2c);
    s_test_rewrite (more, 16, plain);
    s_test_rewrite ("GET /api HTTP/1.1\r\nupgrade: foo\r\nUPGRADE: bar, baz\r\n\r\n", 0, "GET /api HTTP/1.1\r\n\r\n");
    s_test_rewrite ("GET /api HTTP/1.1\r\nUpgrade:\r\nX-Upgrade: 1\r\n\r\n", 0, "GET /api HTTP/1.1\r\nX-Upgrade: 1\r\n\r\n");
    //  A file's GET: without its upgrade, and closing
    s_test_rewrite ("GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", 0,
                    "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    s_test_rewrite ("GET /ws HTTP/1.1\r\nUpgrade: websocket/13\r\nContent-Length: 0\r\n\r\n", 0,
                    "GET /ws HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    //  No Upgrade: lws reads the head as sent
    s_test_rewrite ("GET /healthz HTTP/1.1\r\nHTTP2-Settings: AAMA\r\n\r\nmore", 4, NULL);
    s_test_rewrite (s_test_ws_head, 0, NULL);
    REFUSED ("POST /api/rooms HTTP/1.1\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\n{}", 501,
             "upgrade not served: send the request without Upgrade");
    REFUSED ("POST /api/rooms HTTP/1.1\r\nTransfer-Encoding: chunked\r\nUpgrade: h2c\r\n\r\n", 501,
             "upgrade not served");
    //  Before the verdict, and after a refusal: no head to hand over
    pl_gate_t *gate = pl_gate_new (TEST_HEAD_MAX, TEST_TARGET_MAX, TEST_LINES_MAX);
    pl_check (gate && pl_gate_input (gate, h2c, 20) == PL_GATE_MORE && pl_gate_head_size (gate) == 0);
    size_t size;
    pl_check (pl_gate_rewritten (gate, &size) == NULL);
    pl_gate_expire (gate, 1);
    pl_check (pl_gate_head_size (gate) == 0 && pl_gate_rewritten (gate, &size) == NULL);
    pl_gate_destroy (&gate);
}

//  http-head-timeout-s: a head not complete (or not begun) is a 408
static void
s_test_expire (void)
{
    pl_gate_t *gate = pl_gate_new (TEST_HEAD_MAX, TEST_TARGET_MAX, TEST_LINES_MAX);
    pl_check (gate);
    pl_check (pl_gate_expire (gate, 10) == PL_GATE_REFUSE);
    s_test_answer (gate, 408, "request head not received within 10 s");
    pl_gate_destroy (&gate);
    const char slow [] = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaa";
    pl_check (s_test_feed (&gate, slow, sizeof slow - 1, 1) == PL_GATE_MORE);
    pl_check (pl_gate_expire (gate, 3) == PL_GATE_REFUSE);
    s_test_answer (gate, 408, "{\"error\":\"request head not received within 3 s\"}");
    size_t size;
    pl_check (strstr (pl_gate_answer (gate, &size), "HTTP/1.1 408 Request Timeout\r\n"));
    pl_gate_destroy (&gate);
}

//  Sizes: the head (431), the target (414), at the limit and one past it
static void
s_test_sizes (void)
{
    pl_gate_t *gate = NULL;
    char *head = (char *) malloc (50000);
    pl_check (head);
    //  A header that takes the head to exactly 32768 bytes passes; one more
    //  byte is a 431, whether the head ends or not
    size_t prefix = strlen ("GET / HTTP/1.1\r\nX-Big: ");
    memcpy (head, "GET / HTTP/1.1\r\nX-Big: ", prefix);
    memset (head + prefix, 'a', 32768 - prefix - 4);
    memcpy (head + 32768 - 4, "\r\n\r\n", 4);
    pl_check (s_test_feed (&gate, head, 32768, 4096) == PL_GATE_PASS);
    memset (head + prefix, 'a', 32769 - prefix - 4);
    memcpy (head + 32769 - 4, "\r\n\r\n", 4);
    pl_check (s_test_feed (&gate, head, 32769, 4096) == PL_GATE_REFUSE);
    pl_check (pl_gate_status (gate) == 431);
    memset (head + prefix, 'a', 40000);
    pl_check (s_test_feed (&gate, head, prefix + 40000, 4096) == PL_GATE_REFUSE);
    pl_check (pl_gate_status (gate) == 431);
    //  A target of http-url-max passes, one byte more is a 414, known
    //  before the line ends when the line is that long
    memcpy (head, "GET /", 5);
    memset (head + 5, 'a', 4095);
    memcpy (head + 4100, " HTTP/1.1\r\n\r\n", 13);
    pl_check (s_test_feed (&gate, head, 4113, 0) == PL_GATE_PASS);
    memset (head + 5, 'a', 4096);
    memcpy (head + 4101, " HTTP/1.1\r\n\r\n", 13);
    pl_check (s_test_feed (&gate, head, 4114, 0) == PL_GATE_REFUSE);
    pl_check (pl_gate_status (gate) == 414);
    memset (head + 5, 'a', 20000);
    pl_check (s_test_feed (&gate, head, 20005, 1024) == PL_GATE_REFUSE);
    pl_check (pl_gate_status (gate) == 414);
    pl_check (pl_gate_data (gate, &prefix) && prefix < 4096 + 2048);
    free (head);
    pl_gate_destroy (&gate);
}

void
pl_gate_test (bool verbose)
{
    printf (" * pl_gate: ");
    if (verbose)
        printf ("\n");
    s_test_passes ();
    s_test_paths ();
    s_test_sizes ();
    s_test_lines ();
    s_test_websocket ();
    s_test_upgrades ();
    s_test_other_upgrades ();
    s_test_expire ();

    //  What lws 4.1 closes on, or answers with its HTML 403
    REFUSED ("GET /api/rooms/r%001 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "%00");
    REFUSED ("GET /api/rooms/r1/messages?limit=1%00 HTTP/1.1\r\n\r\n", 400, "%00");
    REFUSED ("GET /api/rooms/%zz HTTP/1.1\r\n\r\n", 400, "bad %-escape");
    REFUSED ("GET /a%4 HTTP/1.1\r\n\r\n", 400, "bad %-escape");
    REFUSED ("GET /a% HTTP/1.1\r\n\r\n", 400, "bad %-escape");
    REFUSED ("GET /a?b=%g1 HTTP/1.1\r\n\r\n", 400, "bad %-escape");
    REFUSED ("GET http://x/api/rooms HTTP/1.1\r\nHost: x\r\n\r\n", 400, "absolute-form");
    REFUSED ("OPTIONS * HTTP/1.1\r\n\r\n", 400, "must be a path");
    REFUSED ("CONNECT x:443 HTTP/1.1\r\n\r\n", 400, "must be a path");
    REFUSED ("GET /a?1&2&3&4&5&6&7&8&9&10&11&12&13&14&15&16&17&18&19&20&21&22&23&24&25"
             "&26&27&28&29&30&31&32;33 HTTP/1.1\r\n\r\n", 400, "more than 32 query parameters");
    //  Methods and versions
    REFUSED ("TRACE /api/rooms HTTP/1.1\r\n\r\n", 501, "method not implemented");
    REFUSED ("BREW /api/rooms HTTP/1.1\r\n\r\n", 501, "method not implemented");
    REFUSED ("get / HTTP/1.1\r\n\r\n", 501, "method not implemented");
    REFUSED ("GETS / HTTP/1.1\r\n\r\n", 501, "method not implemented");
    REFUSED ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 501, "not an HTTP/1.1 request");
    REFUSED ("\x16\x03\x01\x00\x05hello", 501, "not an HTTP/1.1 request");
    REFUSED ("\r\nGET / HTTP/1.1\r\n\r\n", 501, "method not implemented");
    REFUSED ("GET\r\n\r\n", 501, "method not implemented");
    REFUSED ("GET /\r\n\r\n", 400, "an HTTP version");
    REFUSED ("GET / \r\n\r\n", 400, "an HTTP version");
    REFUSED ("GET /a b HTTP/1.1\r\n\r\n", 400, "an HTTP version");
    REFUSED ("GET  / HTTP/1.1\r\n\r\n", 400, "an HTTP version");
    REFUSED ("GET / HTTX/1.1\r\n\r\n", 400, "an HTTP version");
    REFUSED ("GET / HTTP/2.0\r\n\r\n", 505, "HTTP/1.1 only");
    REFUSED ("GET / HTTP/0.9\r\n\r\n", 505, "HTTP/1.1 only");
    //  Lines and headers
    REFUSED ("GET / HTTP/1.1\n\n", 400, "CRLF");
    REFUSED ("GET / HTTP/1.1\r\nHost: x\n\r\n", 400, "CRLF");
    REFUSED ("GET /a\x01 HTTP/1.1\r\n\r\n", 400, "control character in the request target");
    REFUSED ("GET / HTTP/1.1\r\nHost x\r\n\r\n", 400, "malformed header line");
    REFUSED ("GET / HTTP/1.1\r\n: x\r\n\r\n", 400, "malformed header line");
    REFUSED ("GET / HTTP/1.1\r\nGET /x HTTP/1.1\r\n\r\n", 400, "malformed header line");
    REFUSED ("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, "malformed header line");
    REFUSED ("GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n", 400, "control character in a header");
    REFUSED ("GET / HTTP/1.1\r\nHost: \0\r\n\r\n", 400, "control character in a header");
    printf ("OK\n");
}
