/*  =========================================================================
    fuzz_gate - libFuzzer target: the first request head of a connection
    (pl_gate)

    Input: byte 0 is the size of the pieces the rest arrives in (0: all at
    once); the rest is what a client sends on a new connection. The gate
    has a small head limit (512), target limit (128) and header line
    limit (8) so they are reached often.

    Checked: pieces never exceed pl_gate_room; once the verdict is not
    MORE it stays; a pass holds a complete head within the limits whose
    request line starts with a method lws serves, and a head to hand lws
    instead (if any) that is that head without some of its header lines;
    a refusal has one of the documented statuses and a whole answer
    (status line, JSON content-type, content-length of the body,
    connection: close, a body that parses).
    =========================================================================
*/
#include "pl_gate.h"
#include "pl_util.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HEAD_MAX    512
#define TARGET_MAX  128
#define LINES_MAX   8

static void
s_check_refusal (pl_gate_t *gate)
{
    int status = pl_gate_status (gate);
    //  408 comes only from pl_gate_expire, never from bytes
    pl_check (status == 400 || status == 404 || status == 405 || status == 414 || status == 426
           || status == 431 || status == 501 || status == 503 || status == 505);
    size_t size;
    const char *answer = pl_gate_answer (gate, &size);
    pl_check (answer && size == strlen (answer));
    char line [32];
    snprintf (line, sizeof line, "HTTP/1.1 %d ", status);
    pl_check (strncmp (answer, line, strlen (line)) == 0);
    pl_check (strstr (answer, "\r\ncontent-type: application/json\r\n"));
    pl_check (strstr (answer, status == 426? "\r\nconnection: upgrade, close\r\n":
                                             "\r\nconnection: close\r\n"));
    const char *body = strstr (answer, "\r\n\r\n");
    pl_check (body);
    body += 4;
    char length [64];
    snprintf (length, sizeof length, "\r\ncontent-length: %zu\r\n", strlen (body));
    pl_check (strstr (answer, length));
    json_t *json = json_loads (body, 0, NULL);
    pl_check (json && json_is_string (json_object_get (json, "error")));
    json_decref (json);
}

static void
s_check_pass (pl_gate_t *gate)
{
    size_t size;
    const char *data = pl_gate_data (gate, &size);
    const char *end = memmem (data, size, "\r\n\r\n", 4);
    pl_check (end && (size_t) (end + 4 - data) <= HEAD_MAX);
    const char *methods [] = { "GET ", "POST ", "OPTIONS ", "PUT ", "PATCH ", "DELETE ", "CONNECT ", "HEAD " };
    bool known = false;
    for (size_t index = 0; index < sizeof methods / sizeof methods [0]; index++)
        known = known || strncmp (data, methods [index], strlen (methods [index])) == 0;
    pl_check (known);
    //  The request line, at most LINES_MAX header lines, the empty line
    size_t lines = 0;
    for (const char *at = data; at < end + 4; at++)
        lines += *at == '\n';
    pl_check (lines >= 2 && lines - 2 <= LINES_MAX);
    pl_check (pl_gate_status (gate) == 0);
    size_t head = pl_gate_head_size (gate);
    pl_check (head == (size_t) (end + 4 - data));
    //  A rewritten head: the same request line and end, fewer lines; a
    //  file's GET (always rewritten) closes: "Connection: close" is its
    //  last line and no other Connection line is left
    size_t rewritten_size;
    const char *rewritten = pl_gate_rewritten (gate, &rewritten_size);
    bool file = pl_gate_for_file (gate);
    static const char close [] = "Connection: close\r\n\r\n";
    size_t added = file? strlen ("Connection: close\r\n"): 0;
    pl_check (rewritten || !file);
    if (rewritten) {
        const char *line_end = strstr (data, "\r\n");
        size_t line = (size_t) (line_end + 2 - data);
        pl_check (rewritten_size >= line + 2 + added && rewritten_size <= head + added);
        pl_check (file || rewritten_size < head);
        pl_check (memcmp (rewritten, data, line) == 0);
        pl_check (memcmp (rewritten + rewritten_size - 4, "\r\n\r\n", 4) == 0
               || rewritten_size == line + 2);
        if (file) {
            pl_check (memcmp (rewritten + rewritten_size - strlen (close), close, strlen (close)) == 0);
            //  The rewritten head is not NUL-terminated: compare within it
            const char *rewritten_end = rewritten + rewritten_size;
            for (const char *at = rewritten; (at = memchr (at, '\n', (size_t) (rewritten_end - at))); at++)
                pl_check (rewritten_end - (at + 1) < 11
                       || strncasecmp (at + 1, "connection:", 11) != 0
                       || at + 1 == rewritten_end - strlen (close));
        }
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = data [0];
    const char *bytes = (const char *) data + 1;
    size -= 1;
    pl_gate_t *gate = pl_gate_new (HEAD_MAX, TARGET_MAX, LINES_MAX);
    pl_check (gate);
    pl_gate_verdict_t verdict = PL_GATE_MORE;
    for (size_t at = 0; at < size; ) {
        size_t piece = step && step < size - at? step: size - at;
        size_t room = pl_gate_room (gate);
        if (verdict == PL_GATE_MORE) {
            pl_check (room > 0);
            if (piece > room)
                piece = room;
        }
        pl_gate_verdict_t next = pl_gate_input (gate, bytes + at, piece);
        pl_check (verdict == PL_GATE_MORE || next == verdict);
        verdict = next;
        at += piece;
    }
    pl_check (pl_gate_verdict (gate) == verdict);
    if (verdict == PL_GATE_REFUSE)
        s_check_refusal (gate);
    else
    if (verdict == PL_GATE_PASS)
        s_check_pass (gate);
    else
        pl_check (pl_gate_status (gate) == 0 && pl_gate_answer (gate, &size) == NULL);
    pl_gate_destroy (&gate);
    return 0;
}
