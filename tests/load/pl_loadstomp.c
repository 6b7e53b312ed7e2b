/*  =========================================================================
    pl_loadstomp - STOMP 1.2 as @stomp/stompjs 7 speaks it, for parley-load
    =========================================================================
*/
#include "pl_loadstomp.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Append value with \\, \r, \n and : escaped as STOMP 1.2 says
static int
s_append_escaped (pl_buf_t *out, const char *value)
{
    const char *run = value;
    for (const char *at = value; ; at++) {
        const char *escape = *at == '\\'? "\\\\": *at == '\r'? "\\r":
                             *at == '\n'? "\\n": *at == ':'? "\\c": NULL;
        if (!escape && *at)
            continue;
        if (pl_buf_append (out, run, (size_t) (at - run)))
            return -1;
        if (!*at)
            return 0;
        if (pl_buf_append (out, escape, 2))
            return -1;
        run = at + 1;
    }
}

int
pl_loadstomp_write (pl_buf_t *out, const char *command, const char *headers [],
                    const char *body, size_t body_size, bool escape)
{
    //  stompjs never escapes CONNECT (nor the server CONNECTED)
    escape = escape && strcmp (command, "CONNECT") != 0;
    if (pl_buf_append (out, command, strlen (command)) || pl_buf_append (out, "\n", 1))
        return -1;
    for (size_t index = 0; headers && headers [index]; index += 2) {
        const char *name = headers [index], *value = headers [index + 1];
        if (pl_buf_append (out, name, strlen (name)) || pl_buf_append (out, ":", 1)
        ||  (escape? s_append_escaped (out, value): pl_buf_append (out, value, strlen (value)))
        ||  pl_buf_append (out, "\n", 1))
            return -1;
    }
    if (body_size && pl_buf_printf (out, "content-length:%zu\n", body_size))
        return -1;
    if (pl_buf_append (out, "\n", 1) || pl_buf_append (out, body, body_size)
    ||  pl_buf_append (out, "", 1))
        return -1;
    return 0;
}

const char *
pl_loadstomp_header (const pl_loadstomp_frame_t *frame, const char *name)
{
    for (size_t index = 0; index < frame->header_count; index++)
        if (strcmp (frame->headers [index].name, name) == 0)
            return frame->headers [index].value;
    return NULL;
}

//  Undo STOMP 1.2 escaping in place. Returns -1 on an escape STOMP does
//  not define, which the spec makes a fatal error.
static int
s_unescape (char *value)
{
    char *to = value;
    for (const char *from = value; *from; from++) {
        if (*from != '\\') {
            *to++ = *from;
            continue;
        }
        from++;
        switch (*from) {
            case '\\': *to++ = '\\'; break;
            case 'r':  *to++ = '\r'; break;
            case 'n':  *to++ = '\n'; break;
            case 'c':  *to++ = ':'; break;
            default:   return -1;
        }
    }
    *to = 0;
    return 0;
}

//  Where the frame at data ends, without changing it: body_start is
//  after the blank line, frame_end at the terminating NUL. Returns 1 when
//  the whole frame is there, 0 when more must come, -1 when it is bad.
static int
s_frame_extent (const char *data, size_t size, size_t *body_start, size_t *frame_end,
                const char **error)
{
    size_t line = 0;
    int64_t content_length = -1;
    bool first = true;
    while (true) {
        const char *eol = memchr (data + line, '\n', size - line);
        if (!eol)
            return 0;
        size_t end = (size_t) (eol - data);
        size_t length = end - line - (end > line && data [end - 1] == '\r');
        if (length == 0 && !first) {
            *body_start = end + 1;
            break;
        }
        if (length == 0) {
            *error = "frame without a command";
            return -1;
        }
        //  content-length is never escaped; the first one counts
        if (!first && content_length < 0 && length > 15
        &&  memcmp (data + line, "content-length:", 15) == 0) {
            char *stop;
            errno = 0;
            long long value = strtoll (data + line + 15, &stop, 10);
            if (errno || value < 0 || stop != data + line + length) {
                *error = "bad content-length";
                return -1;
            }
            content_length = value;
        }
        first = false;
        line = end + 1;
    }
    if (content_length >= 0) {
        if ((uint64_t) content_length >= size - *body_start)
            return 0;
        *frame_end = *body_start + (size_t) content_length;
        if (data [*frame_end]) {
            *error = "no NUL after content-length bytes";
            return -1;
        }
        return 1;
    }
    const char *nul = memchr (data + *body_start, 0, size - *body_start);
    if (!nul)
        return 0;
    *frame_end = (size_t) (nul - data);
    return 1;
}

//  Cut the frame's command and header lines into strings, in place
static int
s_frame_parse (char *data, size_t body_start, bool unescape, pl_loadstomp_frame_t *frame,
               const char **error)
{
    frame->header_count = 0;
    char *line = data;
    char *end = data + body_start;
    frame->command = NULL;
    while (line < end) {
        char *eol = memchr (line, '\n', (size_t) (end - line));
        *eol = 0;
        if (eol > line && eol [-1] == '\r')
            eol [-1] = 0;
        if (!frame->command)
            frame->command = line;
        else
        if (*line) {
            char *colon = strchr (line, ':');
            if (!colon) {
                *error = "header line without a colon";
                return -1;
            }
            if (frame->header_count == PL_LOADSTOMP_HEADERS_MAX) {
                *error = "too many headers";
                return -1;
            }
            *colon = 0;
            pl_loadstomp_header_t *header = &frame->headers [frame->header_count++];
            header->name = line;
            header->value = colon + 1;
            if (unescape && strcmp (frame->command, "CONNECTED") != 0
            &&  (s_unescape (header->name) || s_unescape (header->value))) {
                *error = "undefined escape in a header";
                return -1;
            }
        }
        line = eol + 1;
    }
    return 0;
}

ssize_t
pl_loadstomp_feed (char *data, size_t size, const bool *unescape, size_t max_frame,
                   pl_loadstomp_fn *callback, void *arg, const char **error)
{
    size_t taken = 0;
    while (taken < size) {
        //  EOLs between frames are heart-beats
        if (data [taken] == '\n'
        ||  (data [taken] == '\r' && taken + 1 < size && data [taken + 1] == '\n')) {
            taken += data [taken] == '\r'? 2: 1;
            continue;
        }
        if (data [taken] == '\r')
            break;              //  its LF has not come yet
        size_t body_start = 0, frame_end = 0;
        int complete = s_frame_extent (data + taken, size - taken, &body_start, &frame_end, error);
        if (complete < 0)
            return -1;
        if (complete == 0) {
            if (size - taken > max_frame) {
                *error = "frame larger than the client accepts";
                return -1;
            }
            break;
        }
        if (frame_end + 1 > max_frame) {
            *error = "frame larger than the client accepts";
            return -1;
        }
        pl_loadstomp_frame_t frame;
        char *start = data + taken;
        if (s_frame_parse (start, body_start, *unescape, &frame, error))
            return -1;
        frame.body = start + body_start;
        frame.body_size = frame_end - body_start;
        taken += frame_end + 1;
        if (callback (arg, &frame)) {
            *error = NULL;
            return -1;
        }
    }
    return (ssize_t) taken;
}


//  --------------------------------------------------------------------------
//  Selftest

#define s_same(a,b) (strcmp ((a), (b)) == 0)

typedef struct {
    pl_buf_t seen;              //  "COMMAND|name=value|...|body;" per frame
    int stop_after;
    int frames;
} s_test_sink_t;

static int
s_test_callback (void *arg, pl_loadstomp_frame_t *frame)
{
    s_test_sink_t *sink = (s_test_sink_t *) arg;
    pl_check (pl_buf_printf (&sink->seen, "%s", frame->command) == 0);
    for (size_t index = 0; index < frame->header_count; index++)
        pl_check (pl_buf_printf (&sink->seen, "|%s=%s", frame->headers [index].name,
                                 frame->headers [index].value) == 0);
    pl_check (frame->body [frame->body_size] == 0);
    pl_check (pl_buf_append (&sink->seen, "|", 1) == 0);
    pl_check (pl_buf_append (&sink->seen, frame->body, frame->body_size) == 0);
    pl_check (pl_buf_append (&sink->seen, ";", 1) == 0);
    return ++sink->frames == sink->stop_after? -1: 0;
}

static void
s_test_write (void)
{
    pl_buf_t out;
    pl_buf_init (&out);
    const char *connect [] = { "host", "a:b", "accept-version", "1.2,1.1,1.0", NULL };
    pl_check (pl_loadstomp_write (&out, "CONNECT", connect, NULL, 0, true) == 0);
    const char *connected = "CONNECT\nhost:a:b\naccept-version:1.2,1.1,1.0\n\n";
    pl_check (pl_buf_pending (&out) == strlen (connected) + 1);
    pl_check (memcmp (pl_buf_head (&out), connected, strlen (connected) + 1) == 0);
    pl_buf_reset (&out);
    const char *send [] = { "destination", "/app/rooms/a:b\\c\n", "receipt", "m-1", NULL };
    pl_check (pl_loadstomp_write (&out, "SEND", send, "{}", 2, true) == 0);
    const char *want = "SEND\ndestination:/app/rooms/a\\cb\\\\c\\n\nreceipt:m-1\ncontent-length:2\n\n{}";
    pl_check (pl_buf_pending (&out) == strlen (want) + 1);
    pl_check (memcmp (pl_buf_head (&out), want, strlen (want) + 1) == 0);
    pl_buf_free (&out);
}

static void
s_test_feed (void)
{
    //  Heart-beats, CRLF lines, a body with a NUL under content-length,
    //  escapes (undone but in CONNECTED), a repeated header
    const char stream [] =
        "\n\r\nCONNECTED\r\nversion:1.2\r\nserver:a\\cb\r\n\r\n\0"
        "\nMESSAGE\nmessage-id:r\\c1\\\\x\nseq:7\nseq:8\ncontent-length:3\n\na\0b\0"
        "RECEIPT\nreceipt-id:m-1\n\n\0\n";
    const char *want = "CONNECTED|version=1.2|server=a\\cb|;"
                       "MESSAGE|message-id=r:1\\x|seq=7|seq=8|content-length=3|a\0b;"
                       "RECEIPT|receipt-id=m-1|;";
    size_t want_size = strlen (want) + 1 + strlen (want + strlen (want) + 1);
    s_test_sink_t sink = { .stop_after = 0 };
    pl_buf_init (&sink.seen);
    //  In one piece, then byte by byte
    char copy [sizeof stream];
    memcpy (copy, stream, sizeof stream);
    const char *error = NULL;
    const bool unescape = true;
    pl_check (pl_loadstomp_feed (copy, sizeof stream - 1, &unescape, 1024, s_test_callback, &sink, &error)
              == (ssize_t) sizeof stream - 1);
    pl_check (pl_buf_pending (&sink.seen) == want_size);
    pl_check (memcmp (pl_buf_head (&sink.seen), want, want_size) == 0);
    pl_buf_reset (&sink.seen);
    pl_buf_t pending;
    pl_buf_init (&pending);
    for (size_t index = 0; index < sizeof stream - 1; index++) {
        pl_check (pl_buf_append (&pending, stream + index, 1) == 0);
        ssize_t taken = pl_loadstomp_feed (pending.data + pending.start, pl_buf_pending (&pending),
                                           &unescape, 1024, s_test_callback, &sink, &error);
        pl_check (taken >= 0);
        pl_buf_consume (&pending, (size_t) taken);
    }
    pl_check (pl_buf_pending (&pending) == 0);
    pl_check (pl_buf_pending (&sink.seen) == want_size);
    pl_check (memcmp (pl_buf_head (&sink.seen), want, want_size) == 0);
    pl_buf_free (&pending);

    //  Stopped by the callback after the first frame
    memcpy (copy, stream, sizeof stream);
    sink.stop_after = sink.frames + 1;
    pl_check (pl_loadstomp_feed (copy, sizeof stream - 1, &unescape, 1024, s_test_callback, &sink, &error) == -1);
    pl_check (error == NULL);
    pl_buf_free (&sink.seen);
}

static void
s_test_refused (const char *text, size_t max_frame, const char *reason)
{
    char copy [256];
    size_t size = strlen (text) + 1;
    pl_check (size <= sizeof copy);
    memcpy (copy, text, size);
    s_test_sink_t sink = { .stop_after = 0 };
    pl_buf_init (&sink.seen);
    const char *error = NULL;
    const bool unescape = true;
    pl_check (pl_loadstomp_feed (copy, size, &unescape, max_frame, s_test_callback, &sink, &error) == -1);
    pl_check (error && s_same (error, reason));
    pl_buf_free (&sink.seen);
}

void
pl_loadstomp_test (bool verbose)
{
    printf (" * pl_loadstomp: ");
    if (verbose)
        printf ("\n");
    s_test_write ();
    s_test_feed ();
    s_test_refused ("MESSAGE\nbad\n\n", 1024, "header line without a colon");
    s_test_refused ("MESSAGE\na:\\t\n\n", 1024, "undefined escape in a header");
    s_test_refused ("MESSAGE\ncontent-length:x\n\n", 1024, "bad content-length");
    s_test_refused ("MESSAGE\ncontent-length:1\n\nab", 1024, "no NUL after content-length bytes");
    s_test_refused ("MESSAGE\n\nlong body", 8, "frame larger than the client accepts");
    printf ("OK\n");
}
