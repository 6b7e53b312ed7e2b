/*  =========================================================================
    pl_stomp - STOMP 1.0/1.1/1.2 frame codec: an incremental parser of
    client frames and a writer of server frames

    The parser copies the frame in progress into one buffer as its bytes
    arrive and decodes each header line in place as soon as its EOL comes
    (unescaping only ever shrinks text). Headers are kept as offsets, since
    the buffer may move while it grows, and turn into pointers just before
    the callback. Each input byte is looked at a fixed number of times.
    =========================================================================
*/
#include "pl_stomp.h"

#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  A buffer grown past this by a big frame is freed after it, so that idle
//  sessions hold little memory.
#define KEEP_BUFFER_BYTES 16384

typedef enum {
    S_IDLE,             //  between frames: heart-beats or a command
    S_IDLE_CR,          //  heart-beat CR, wants LF
    S_COMMAND,          //  in the command line
    S_HEADERS,          //  in the header lines
    S_BODY,             //  body without content-length: up to a NUL
    S_BODY_LENGTH,      //  body of content-length bytes
    S_BODY_NUL,         //  after a content-length body: wants NUL
    S_ERROR             //  refuses all input
} state_t;

typedef struct {
    size_t name;        //  offsets of NUL-terminated text in the buffer
    size_t value;
} s_header_at_t;

struct _pl_stomp_parser_t {
    size_t max_frame_bytes;
    size_t max_headers;
    int version;                //  10, 11 or 12
    state_t state;
    uint64_t heartbeats;
    pl_buf_t buffer;            //  the frame in progress, start always 0
    size_t line_start;          //  offset of the line being read
    pl_stomp_command_t command;
    const char *command_name;
    s_header_at_t *header_at;   //  header_count used, header_limit allocated
    pl_stomp_header_t *headers; //  as many; filled just before the callback
    size_t header_count;
    size_t header_limit;
    size_t body_start;          //  offset of the body
    size_t body_left;           //  content-length bytes still to come
    char error [128];           //  empty while no error
};

static const struct {
    const char *name;
    pl_stomp_command_t command;
} s_commands [] = {
    { "CONNECT",     PL_STOMP_CONNECT },
    { "STOMP",       PL_STOMP_STOMP },
    { "SEND",        PL_STOMP_SEND },
    { "SUBSCRIBE",   PL_STOMP_SUBSCRIBE },
    { "UNSUBSCRIBE", PL_STOMP_UNSUBSCRIBE },
    { "ACK",         PL_STOMP_ACK },
    { "NACK",        PL_STOMP_NACK },
    { "BEGIN",       PL_STOMP_BEGIN },
    { "COMMIT",      PL_STOMP_COMMIT },
    { "ABORT",       PL_STOMP_ABORT },
    { "DISCONNECT",  PL_STOMP_DISCONNECT }
};
#define COMMAND_COUNT (sizeof s_commands / sizeof s_commands [0])


const char *
pl_stomp_frame_header (const pl_stomp_frame_t *frame, const char *name)
{
    assert (frame);
    assert (name);
    for (size_t index = 0; index < frame->header_count; index++)
        if (strcmp (frame->headers [index].name, name) == 0)
            return frame->headers [index].value;
    return NULL;
}


pl_stomp_parser_t *
pl_stomp_parser_new (size_t max_frame_bytes, size_t max_headers)
{
    assert (max_frame_bytes > 0);
    pl_stomp_parser_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->max_frame_bytes = max_frame_bytes;
    self->max_headers = max_headers;
    self->version = 12;
    self->state = S_IDLE;
    pl_buf_init (&self->buffer);
    return self;
}


void
pl_stomp_parser_destroy (pl_stomp_parser_t **self_p)
{
    assert (self_p);
    pl_stomp_parser_t *self = *self_p;
    if (self) {
        pl_buf_free (&self->buffer);
        free (self->header_at);
        free (self->headers);
        free (self);
        *self_p = NULL;
    }
}


void
pl_stomp_parser_set_version (pl_stomp_parser_t *self, int version)
{
    assert (self);
    assert (version == 10 || version == 11 || version == 12);
    self->version = version;
}


const char *
pl_stomp_parser_error (pl_stomp_parser_t *self)
{
    assert (self);
    return self->state == S_ERROR? self->error: NULL;
}


void
pl_stomp_parser_trim (pl_stomp_parser_t *self)
{
    assert (self);
    if ((self->state != S_IDLE && self->state != S_IDLE_CR) || self->buffer.size)
        return;
    pl_buf_free (&self->buffer);
    free (self->header_at);
    free (self->headers);
    self->header_at = NULL;
    self->headers = NULL;
    self->header_count = self->header_limit = 0;
}


uint64_t
pl_stomp_parser_heartbeats (pl_stomp_parser_t *self)
{
    assert (self);
    return self->heartbeats;
}


//  Stop for good with a reason; the frame in progress is dropped so that
//  a dead session holds no memory.
static int
s_fail (pl_stomp_parser_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static int
s_fail (pl_stomp_parser_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->error, sizeof self->error, format, args);
    va_end (args);
    self->state = S_ERROR;
    pl_buf_free (&self->buffer);
    return -1;
}

static int
s_fail_size (pl_stomp_parser_t *self)
{
    return s_fail (self, "frame exceeds %zu bytes", self->max_frame_bytes);
}


//  Unescape text in place. Returns 0 and the new length, or -1.
static int
s_unescape (pl_stomp_parser_t *self, char *text, size_t length, size_t *result)
{
    char *slash = memchr (text, '\\', length);
    if (!slash) {
        *result = length;
        return 0;
    }
    size_t out = (size_t) (slash - text);
    for (size_t in = out; in < length; in++) {
        char c = text [in];
        if (c == '\\') {
            if (in + 1 == length)
                return s_fail (self, "invalid header escape \\ at end of header");
            unsigned char escape = (unsigned char) text [++in];
            if (escape == 'n')
                c = '\n';
            else
            if (escape == 'c')
                c = ':';
            else
            if (escape == '\\')
                c = '\\';
            else
            if (escape == 'r' && self->version >= 12)
                c = '\r';
            else
            if (isprint (escape))
                return s_fail (self, "invalid header escape \\%c", escape);
            else
                return s_fail (self, "invalid header escape \\x%02x", escape);
        }
        text [out++] = c;
    }
    *result = out;
    return 0;
}


//  The command line is complete in the buffer (without its NUL check,
//  done by the caller); length excludes the EOL.
static int
s_command_line (pl_stomp_parser_t *self, size_t length)
{
    const char *line = self->buffer.data + self->line_start;
    for (size_t index = 0; index < COMMAND_COUNT; index++)
        if (strlen (s_commands [index].name) == length
        &&  memcmp (s_commands [index].name, line, length) == 0) {
            self->command = s_commands [index].command;
            self->command_name = s_commands [index].name;
            self->state = S_HEADERS;
            return 0;
        }
    //  Show the client what we saw, printable and short
    char shown [40];
    size_t size = 0;
    for (size_t index = 0; index < length && size < 32; index++) {
        unsigned char c = (unsigned char) line [index];
        shown [size++] = isprint (c)? (char) c: '?';
    }
    shown [size] = 0;
    return s_fail (self, "unknown command '%s%s'", shown, length > size? "...": "");
}


//  Value of the first header called name so far, or NULL.
static const char *
s_header_value (pl_stomp_parser_t *self, const char *name)
{
    for (size_t index = 0; index < self->header_count; index++)
        if (strcmp (self->buffer.data + self->header_at [index].name, name) == 0)
            return self->buffer.data + self->header_at [index].value;
    return NULL;
}


//  The blank line has come: decide how the body is read.
static int
s_headers_end (pl_stomp_parser_t *self)
{
    self->body_start = self->buffer.size;
    const char *length_text = s_header_value (self, "content-length");
    if (!length_text) {
        self->state = S_BODY;
        return 0;
    }
    if (*length_text == 0)
        return s_fail (self, "content-length is not a number");
    //  Only the headers' size bounds the body we accept
    size_t room = self->max_frame_bytes - self->buffer.size;
    size_t length = 0;
    bool too_big = false;
    for (const char *digit = length_text; *digit; digit++) {
        if (*digit < '0' || *digit > '9')
            return s_fail (self, "content-length is not a number");
        if (!too_big) {
            length = length * 10 + (size_t) (*digit - '0');
            too_big = length > room;
        }
    }
    if (too_big)
        return s_fail_size (self);
    self->body_left = length;
    self->state = length? S_BODY_LENGTH: S_BODY_NUL;
    return 0;
}


//  A header line is complete in the buffer; length excludes the EOL.
static int
s_header_line (pl_stomp_parser_t *self, size_t length)
{
    if (length == 0)
        return s_headers_end (self);
    if (self->header_count == self->max_headers)
        return s_fail (self, "too many headers");

    char *line = self->buffer.data + self->line_start;
    char *colon = memchr (line, ':', length);
    if (!colon)
        return s_fail (self, "header without ':'");
    if (colon == line)
        return s_fail (self, "empty header name");

    size_t name_size = (size_t) (colon - line);
    char *value = colon + 1;
    size_t value_size = length - name_size - 1;
    //  CONNECT comes before any version is agreed, so STOMP never escapes it
    if (self->version > 10
    &&  self->command != PL_STOMP_CONNECT && self->command != PL_STOMP_STOMP) {
        if (s_unescape (self, line, name_size, &name_size)
        ||  s_unescape (self, value, value_size, &value_size))
            return -1;
    }
    //  Both fit: the colon and the EOL leave room for the NULs
    line [name_size] = 0;
    value [value_size] = 0;

    if (self->header_count == self->header_limit) {
        size_t limit = self->header_limit? self->header_limit * 2: 16;
        if (limit > self->max_headers)
            limit = self->max_headers;
        s_header_at_t *header_at = realloc (self->header_at, limit * sizeof *header_at);
        if (!header_at)
            return s_fail (self, "out of memory");
        self->header_at = header_at;
        pl_stomp_header_t *headers = realloc (self->headers, limit * sizeof *headers);
        if (!headers)
            return s_fail (self, "out of memory");
        self->headers = headers;
        self->header_limit = limit;
    }
    self->header_at [self->header_count].name = self->line_start;
    self->header_at [self->header_count].value = (size_t) (value - self->buffer.data);
    self->header_count++;
    return 0;
}


//  The frame's NUL has come: hand the frame over and get ready for the next.
static int
s_dispatch (pl_stomp_parser_t *self, pl_stomp_frame_fn *fn, void *arg)
{
    //  The terminating NUL, kept so that the body is a string too
    if (pl_buf_append (&self->buffer, "", 1))
        return s_fail (self, "out of memory");
    char *data = self->buffer.data;
    for (size_t index = 0; index < self->header_count; index++) {
        self->headers [index].name = data + self->header_at [index].name;
        self->headers [index].value = data + self->header_at [index].value;
    }
    pl_stomp_frame_t frame = {
        .command = self->command,
        .command_name = self->command_name,
        .headers = self->header_count? self->headers: NULL,
        .header_count = self->header_count,
        .body = data + self->body_start,
        .body_size = self->buffer.size - 1 - self->body_start
    };
    //  Reset first: the callback may change the version, not the buffer
    self->state = S_IDLE;
    int rc = fn (arg, &frame);
    if (self->buffer.capacity > KEEP_BUFFER_BYTES)
        pl_buf_free (&self->buffer);
    else
        pl_buf_reset (&self->buffer);
    return rc == 0? 0: -1;
}


//  The steps of the parser, one per state. Each takes what it can of data
//  (at least one byte, or none while it only changes state) and returns
//  how many bytes it used, or -1 once the parser failed.

//  Between frames: heart-beat EOLs, or the first byte of a command
static ssize_t
s_step_idle (pl_stomp_parser_t *self, const char *data)
{
    if (*data == '\n') {
        self->heartbeats++;
        return 1;
    }
    if (*data == '\r') {
        self->state = S_IDLE_CR;
        return 1;
    }
    pl_buf_reset (&self->buffer);
    self->line_start = 0;
    self->header_count = 0;
    self->state = S_COMMAND;
    return 0;
}

static ssize_t
s_step_idle_cr (pl_stomp_parser_t *self, const char *data)
{
    if (*data != '\n')
        return s_fail (self, "CR not followed by LF");
    self->heartbeats++;
    self->state = S_IDLE;
    return 1;
}

//  The command line or a header line, up to and including its LF
static ssize_t
s_step_line (pl_stomp_parser_t *self, const char *data, size_t size)
{
    const char *eol = memchr (data, '\n', size);
    size_t chunk = eol? (size_t) (eol - data) + 1: size;
    if (memchr (data, 0, chunk))
        return s_fail (self, "NUL in command or headers");
    if (chunk > self->max_frame_bytes - self->buffer.size)
        return s_fail_size (self);
    if (pl_buf_append (&self->buffer, data, chunk))
        return s_fail (self, "out of memory");
    if (eol) {
        size_t length = self->buffer.size - 1 - self->line_start;
        if (length && self->buffer.data [self->line_start + length - 1] == '\r')
            length--;
        int rc = self->state == S_COMMAND? s_command_line (self, length)
                                         : s_header_line (self, length);
        if (rc)
            return -1;
        self->line_start = self->buffer.size;
    }
    return (ssize_t) chunk;
}

//  A body without content-length: up to the NUL, then the frame is whole
static ssize_t
s_step_body (pl_stomp_parser_t *self, const char *data, size_t size,
             pl_stomp_frame_fn *fn, void *arg)
{
    const char *nul = memchr (data, 0, size);
    size_t chunk = nul? (size_t) (nul - data): size;
    if (chunk > self->max_frame_bytes - self->buffer.size)
        return s_fail_size (self);
    if (pl_buf_append (&self->buffer, data, chunk))
        return s_fail (self, "out of memory");
    if (!nul)
        return (ssize_t) chunk;
    if (s_dispatch (self, fn, arg))
        return -1;
    return (ssize_t) chunk + 1;
}

//  A body of content-length bytes (NULs allowed), its size checked before
static ssize_t
s_step_body_length (pl_stomp_parser_t *self, const char *data, size_t size)
{
    size_t chunk = size < self->body_left? size: self->body_left;
    if (pl_buf_append (&self->buffer, data, chunk))
        return s_fail (self, "out of memory");
    self->body_left -= chunk;
    if (self->body_left == 0)
        self->state = S_BODY_NUL;
    return (ssize_t) chunk;
}

static ssize_t
s_step_body_nul (pl_stomp_parser_t *self, const char *data, pl_stomp_frame_fn *fn, void *arg)
{
    if (*data != 0)
        return s_fail (self, "frame body not terminated by NUL");
    if (s_dispatch (self, fn, arg))
        return -1;
    return 1;
}

int
pl_stomp_parser_feed (pl_stomp_parser_t *self, const char *data, size_t size,
                      pl_stomp_frame_fn *fn, void *arg)
{
    assert (self);
    assert (fn);
    assert (data || size == 0);
    while (size) {
        ssize_t used = -1;
        switch (self->state) {
            case S_IDLE:        used = s_step_idle (self, data); break;
            case S_IDLE_CR:     used = s_step_idle_cr (self, data); break;
            case S_COMMAND:
            case S_HEADERS:     used = s_step_line (self, data, size); break;
            case S_BODY:        used = s_step_body (self, data, size, fn, arg); break;
            case S_BODY_LENGTH: used = s_step_body_length (self, data, size); break;
            case S_BODY_NUL:    used = s_step_body_nul (self, data, fn, arg); break;
            case S_ERROR:       break;
        }
        if (used < 0)
            return -1;
        data += used, size -= (size_t) used;
    }
    return self->state == S_ERROR? -1: 0;
}


//  Append text, escaped as version wants, or with CR and LF as spaces when
//  nothing may be escaped. Returns 0 or -1.
static int
s_write_text (pl_buf_t *out, int version, bool escape, const char *text)
{
    const char *plain = text;
    int rc = 0;
    for (const char *scan = text; *scan; scan++) {
        const char *replace = NULL;
        if (!escape) {
            if (*scan == '\r' || *scan == '\n')
                replace = " ";
        }
        else
        if (*scan == '\n')
            replace = "\\n";
        else
        if (*scan == ':')
            replace = "\\c";
        else
        if (*scan == '\\')
            replace = "\\\\";
        else
        if (*scan == '\r' && version >= 12)
            replace = "\\r";
        if (replace) {
            rc |= pl_buf_append (out, plain, (size_t) (scan - plain));
            rc |= pl_buf_append (out, replace, strlen (replace));
            plain = scan + 1;
        }
    }
    rc |= pl_buf_append (out, plain, strlen (plain));
    return rc? -1: 0;
}


int
pl_stomp_write (pl_buf_t *out, int version, const char *command,
                const char *const *headers, const char *body, size_t body_size)
{
    assert (out);
    assert (command && *command);
    //  Measured as pending bytes: appending may compact the buffer
    size_t pending = pl_buf_pending (out);
    bool escape = version >= 11 && strcmp (command, "CONNECTED") != 0;

    int rc = pl_buf_append (out, command, strlen (command));
    rc |= pl_buf_append (out, "\n", 1);
    for (size_t index = 0; headers && headers [index]; index += 2) {
        assert (headers [index + 1]);
        if (body && strcmp (headers [index], "content-length") == 0)
            continue;
        rc |= s_write_text (out, version, escape, headers [index]);
        rc |= pl_buf_append (out, ":", 1);
        rc |= s_write_text (out, version, escape, headers [index + 1]);
        rc |= pl_buf_append (out, "\n", 1);
    }
    if (body)
        rc |= pl_buf_printf (out, "content-length:%zu\n", body_size);
    rc |= pl_buf_append (out, "\n", 1);
    if (body)
        rc |= pl_buf_append (out, body, body_size);
    rc |= pl_buf_append (out, "", 1);
    if (rc) {
        out->size = out->start + pending;
        return -1;
    }
    return 0;
}


int
pl_stomp_write_error (pl_buf_t *out, int version, const char *message,
                      const char *detail, const char *receipt_id)
{
    assert (message);
    const char *headers [] = {
        "message", message,
        "content-type", "text/plain",
        receipt_id? "receipt-id": NULL, receipt_id,
        NULL
    };
    if (!detail)
        detail = "";
    return pl_stomp_write (out, version, "ERROR", headers, detail, strlen (detail));
}


//  --------------------------------------------------------------------------
//  For selftests: server frames read as a client does

char *
pl_stomp_text_header (const char *frame, const char *name)
{
    const char *end = strstr (frame, "\n\n");
    size_t length = strlen (name);
    for (const char *line = strchr (frame, '\n'); line && (!end || line < end);
         line = strchr (line + 1, '\n'))
        if (strncmp (line + 1, name, length) == 0 && line [1 + length] == ':') {
            //  Undo STOMP 1.1/1.2 escaping
            const char *value = line + 2 + length;
            char *result = strndup (value, strcspn (value, "\r\n"));
            pl_check (result);
            char *to = result;
            for (const char *from = result; *from; from++) {
                if (*from == '\\' && from [1]) {
                    from++;
                    *to++ = *from == 'c'? ':': *from == 'n'? '\n': *from == 'r'? '\r': *from;
                }
                else
                    *to++ = *from;
            }
            *to = 0;
            return result;
        }
    return NULL;
}

void
pl_stomp_text_expect (const char *frame, const char *command, const char *name, const char *value)
{
    if (!frame || strncmp (frame, command, strlen (command)) != 0) {
        fprintf (stderr, "expected %s, got: %s\n", command, frame? frame: "(nothing)");
        pl_check (false);
    }
    if (name) {
        char *actual = pl_stomp_text_header (frame, name);
        if (!actual || (value && strcmp (actual, value))) {
            fprintf (stderr, "expected %s:%s in %s\n", name, value? value: "*", frame);
            pl_check (false);
        }
        free (actual);
    }
}


//  --------------------------------------------------------------------------
//  Selftest

//  Records every frame as text "COMMAND|name=value|...|[size]body\n" so that
//  runs over different splits can be compared.
typedef struct {
    pl_buf_t trace;
    int frames;
    int stop_at;                //  callback returns -1 on this frame (1-based)
    char first [64];            //  pl_stomp_frame_header (first_name) of the last frame
    const char *first_name;
} s_capture_t;

static int
s_capture (void *arg, pl_stomp_frame_t *frame)
{
    s_capture_t *capture = (s_capture_t *) arg;
    pl_check (frame->body [frame->body_size] == 0);
    pl_check (frame->command >= PL_STOMP_CONNECT && frame->command <= PL_STOMP_DISCONNECT);
    pl_check (strcmp (frame->command_name, s_commands [frame->command - 1].name) == 0);
    pl_check (frame->header_count == 0 || frame->headers);
    pl_buf_t *trace = &capture->trace;
    pl_check (pl_buf_printf (trace, "%s", frame->command_name) == 0);
    for (size_t index = 0; index < frame->header_count; index++)
        pl_check (pl_buf_printf (trace, "|%s=%s", frame->headers [index].name,
                               frame->headers [index].value) == 0);
    pl_check (pl_buf_printf (trace, "|[%zu]", frame->body_size) == 0);
    pl_check (pl_buf_append (trace, frame->body, frame->body_size) == 0);
    pl_check (pl_buf_append (trace, "\n", 1) == 0);
    if (capture->first_name) {
        const char *value = pl_stomp_frame_header (frame, capture->first_name);
        snprintf (capture->first, sizeof capture->first, "%s", value? value: "(null)");
    }
    capture->frames++;
    return capture->frames == capture->stop_at? -1: 0;
}

//  A small deterministic generator, so that failures can be replayed
static uint32_t
s_random (uint32_t *seed)
{
    uint32_t x = *seed;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *seed = x;
}

//  Feed a stream in chunks: 0 = whole, 1 = one byte at a time, else random
//  chunk sizes below chunking. Fills capture; returns the last feed's rc
//  and the parser's error and heart-beats.
static int
s_run (int version, size_t max_frame, size_t max_headers,
       const char *stream, size_t size, size_t chunking, uint32_t *seed,
       s_capture_t *capture, char *error, uint64_t *heartbeats)
{
    pl_stomp_parser_t *parser = pl_stomp_parser_new (max_frame, max_headers);
    pl_check (parser);
    pl_stomp_parser_set_version (parser, version);
    pl_buf_reset (&capture->trace);
    capture->frames = 0;
    int rc = 0;
    size_t offset = 0;
    while (rc == 0 && offset < size) {
        size_t chunk = size - offset;
        if (chunking == 1)
            chunk = 1;
        else
        if (chunking > 1 && chunk > 1)
            chunk = 1 + s_random (seed) % chunking;
        if (chunk > size - offset)
            chunk = size - offset;
        rc = pl_stomp_parser_feed (parser, stream + offset, chunk, s_capture, capture);
        offset += chunk;
    }
    const char *reason = pl_stomp_parser_error (parser);
    if (error)
        snprintf (error, 128, "%s", reason? reason: "");
    if (heartbeats)
        *heartbeats = pl_stomp_parser_heartbeats (parser);
    if (rc == 0)
        pl_check (!reason);
    pl_stomp_parser_destroy (&parser);
    return rc;
}

//  True when the trace holds exactly this text.
static bool
s_trace_is (s_capture_t *capture, const char *text, size_t size)
{
    return pl_buf_pending (&capture->trace) == size
        && memcmp (pl_buf_head (&capture->trace), text, size) == 0;
}
#define TRACE_IS(capture,literal) s_trace_is ((capture), (literal), sizeof (literal) - 1)

//  Parse one stream whole, expecting an error that contains reason; checks
//  that the same error comes when fed one byte at a time.
static void
s_expect_error (int version, size_t max_frame, size_t max_headers,
                const char *stream, size_t size, const char *reason)
{
    s_capture_t capture = { .stop_at = 0 };
    pl_buf_init (&capture.trace);
    char error [128];
    for (size_t chunking = 0; chunking < 2; chunking++) {
        int rc = s_run (version, max_frame, max_headers, stream, size, chunking,
                        NULL, &capture, error, NULL);
        if (rc != -1 || strstr (error, reason) == NULL) {
            fprintf (stderr, "expected error '%s', got rc=%d '%s'\n", reason, rc, error);
            pl_check (false);
        }
    }
    pl_buf_free (&capture.trace);
}
#define EXPECT_ERROR(version,stream,reason) \
    s_expect_error ((version), 65536, 64, (stream), sizeof (stream) - 1, (reason))

void
pl_stomp_test (bool verbose)
{
    if (verbose)
        printf (" * pl_stomp: ");
    uint32_t seed = 2463534242u;
    s_capture_t capture = { .stop_at = 0 };
    pl_buf_init (&capture.trace);
    char error [128];
    uint64_t heartbeats;

    //  A stream of several frames with heart-beats (LF and CRLF) between,
    //  CRLF line endings, escapes, a content-length body with NULs
    const char stream [] =
        "\n\r\n"
        "CONNECT\naccept-version:1.2\nhost:a\\cb\n\n\0"
        "\n"
        "SEND\r\ndestination:/topic/r1\r\nx\\c\\\\:1\\n2\\r3\r\nx:\\c\r\n\r\nhello\0"
        "\r\n\r\n\n"
        "SEND\ndestination:/topic/r2\ncontent-length:5\n\na\0b\0c\0"
        "SUBSCRIBE\nid:0\ndestination:/topic/r1\n\n\0"
        "DISCONNECT\nreceipt:77\n\n\0\n";
    const char expected [] =
        "CONNECT|accept-version=1.2|host=a\\cb|[0]\n"
        "SEND|destination=/topic/r1|x:\\=1\n2\r3|x=:|[5]hello\n"
        "SEND|destination=/topic/r2|content-length=5|[5]a\0b\0c\n"
        "SUBSCRIBE|id=0|destination=/topic/r1|[0]\n"
        "DISCONNECT|receipt=77|[0]\n";
    size_t stream_size = sizeof stream - 1;
    pl_check (s_run (12, 65536, 64, stream, stream_size, 0, &seed, &capture, error, &heartbeats) == 0);
    pl_check (TRACE_IS (&capture, expected));
    pl_check (capture.frames == 5);
    pl_check (heartbeats == 7);

    //  Split at every offset, into two feeds; a trim between them gives
    //  back the buffers between frames and leaves a frame in progress be
    for (size_t split = 0; split <= stream_size; split++) {
        pl_stomp_parser_t *parser = pl_stomp_parser_new (65536, 64);
        pl_check (parser);
        pl_buf_reset (&capture.trace);
        capture.frames = 0;
        pl_check (pl_stomp_parser_feed (parser, stream, split, s_capture, &capture) == 0);
        pl_stomp_parser_trim (parser);
        pl_check (pl_stomp_parser_feed (parser, stream + split, stream_size - split,
                                      s_capture, &capture) == 0);
        pl_check (TRACE_IS (&capture, expected));
        pl_check (pl_stomp_parser_heartbeats (parser) == 7);
        pl_stomp_parser_destroy (&parser);
        pl_stomp_parser_destroy (&parser);
    }
    //  One byte at a time, then random chunk sizes
    pl_check (s_run (12, 65536, 64, stream, stream_size, 1, &seed, &capture, error, &heartbeats) == 0);
    pl_check (TRACE_IS (&capture, expected));
    pl_check (heartbeats == 7);
    for (int round = 0; round < 200; round++) {
        pl_check (s_run (12, 65536, 64, stream, stream_size, 2 + round % 40, &seed,
                       &capture, error, &heartbeats) == 0);
        pl_check (TRACE_IS (&capture, expected));
        pl_check (heartbeats == 7);
    }
    //  A frame split in the middle of an escape and of a CRLF
    {
        pl_stomp_parser_t *parser = pl_stomp_parser_new (65536, 64);
        pl_check (parser);
        pl_buf_reset (&capture.trace);
        const char *parts [] = { "SEND\r", "\na:x\\", "c\r", "\n\r", "\n", "body", "", "\0" };
        for (size_t index = 0; index < 8; index++)
            pl_check (pl_stomp_parser_feed (parser, parts [index], index == 7? 1: strlen (parts [index]),
                                          s_capture, &capture) == 0);
        pl_check (TRACE_IS (&capture, "SEND|a=x:|[4]body\n"));
        pl_stomp_parser_destroy (&parser);
    }

    //  Each 1.2 escape, in names and values
    capture.first_name = "a:b\\c\nd\re";
    const char escapes [] = "SEND\na\\cb\\\\c\\nd\\re:\\r\\n\\c\\\\\n\n\0";
    pl_check (s_run (12, 65536, 64, escapes, sizeof escapes - 1, 0, &seed, &capture, error, NULL) == 0);
    pl_check (TRACE_IS (&capture, "SEND|a:b\\c\nd\re=\r\n:\\|[0]\n"));
    pl_check (strcmp (capture.first, "\r\n:\\") == 0);
    capture.first_name = NULL;
    //  Invalid escapes, and \r in 1.1
    EXPECT_ERROR (12, "SEND\na:b\\tc\n\n\0", "invalid header escape \\t");
    EXPECT_ERROR (12, "SEND\na\\x:b\n\n\0", "invalid header escape \\x");
    EXPECT_ERROR (12, "SEND\na:b\\\n\n\0", "invalid header escape");
    EXPECT_ERROR (12, "SEND\na:b\\\x01\n\n\0", "invalid header escape \\x01");
    EXPECT_ERROR (11, "SEND\na:b\\rc\n\n\0", "invalid header escape \\r");
    //  1.1 has the others
    const char escapes_11 [] = "SEND\na:\\c\\n\\\\\n\n\0";
    pl_check (s_run (11, 65536, 64, escapes_11, sizeof escapes_11 - 1, 1, &seed, &capture, error, NULL) == 0);
    pl_check (TRACE_IS (&capture, "SEND|a=:\n\\|[0]\n"));
    //  1.0 unescapes nothing, not even a bad escape
    const char escapes_10 [] = "SEND\na\\c:\\c\\t\\\n\n\0";
    pl_check (s_run (10, 65536, 64, escapes_10, sizeof escapes_10 - 1, 1, &seed, &capture, error, NULL) == 0);
    pl_check (TRACE_IS (&capture, "SEND|a\\c=\\c\\t\\|[0]\n"));
    //  CONNECT and STOMP are never unescaped, in any version
    const char connect [] = "CONNECT\nlogin:a\\cb\\t\n\n\0STOMP\npasscode:\\n\\\n\n\0";
    for (int version = 10; version <= 12; version++) {
        pl_check (s_run (version, 65536, 64, connect, sizeof connect - 1, 1, &seed, &capture, error, NULL) == 0);
        pl_check (TRACE_IS (&capture, "CONNECT|login=a\\cb\\t|[0]\nSTOMP|passcode=\\n\\|[0]\n"));
    }

    //  Repeated header: first wins, all kept in order
    capture.first_name = "foo";
    const char repeated [] = "SEND\nfoo:1\nbar:x\nfoo:2\n\n\0";
    pl_check (s_run (12, 65536, 64, repeated, sizeof repeated - 1, 0, &seed, &capture, error, NULL) == 0);
    pl_check (TRACE_IS (&capture, "SEND|foo=1|bar=x|foo=2|[0]\n"));
    pl_check (strcmp (capture.first, "1") == 0);
    capture.first_name = "absent";
    pl_check (s_run (12, 65536, 64, repeated, sizeof repeated - 1, 0, &seed, &capture, error, NULL) == 0);
    pl_check (strcmp (capture.first, "(null)") == 0);
    capture.first_name = NULL;
    //  Empty value, colons in a 1.0 value, a frame without headers
    const char plain [] = "SEND\na:\n\n\0ACK\n\nx\0";
    pl_check (s_run (10, 65536, 64, plain, sizeof plain - 1, 1, &seed, &capture, error, NULL) == 0);
    pl_check (TRACE_IS (&capture, "SEND|a=|[0]\nACK|[1]x\n"));
    const char colons [] = "SEND\na:b:c\n\n\0";
    pl_check (s_run (10, 65536, 64, colons, sizeof colons - 1, 0, &seed, &capture, error, NULL) == 0);
    pl_check (TRACE_IS (&capture, "SEND|a=b:c|[0]\n"));

    //  Content-length: embedded NULs, zero, repeated (first wins)
    const char lengths [] = "SEND\ncontent-length:0\n\n\0"
                            "SEND\ncontent-length:3\ncontent-length:9\n\n\0\0\0\0";
    pl_check (s_run (12, 65536, 64, lengths, sizeof lengths - 1, 1, &seed, &capture, error, NULL) == 0);
    pl_check (TRACE_IS (&capture, "SEND|content-length=0|[0]\n"
                                "SEND|content-length=3|content-length=9|[3]\0\0\0\n"));
    EXPECT_ERROR (12, "SEND\ncontent-length:3\n\nabcd\0", "frame body not terminated by NUL");
    EXPECT_ERROR (12, "SEND\ncontent-length:0\n\nx\0", "frame body not terminated by NUL");
    EXPECT_ERROR (12, "SEND\ncontent-length:12a\n\n\0", "content-length is not a number");
    EXPECT_ERROR (12, "SEND\ncontent-length:\n\n\0", "content-length is not a number");
    EXPECT_ERROR (12, "SEND\ncontent-length:-1\n\n\0", "content-length is not a number");
    EXPECT_ERROR (12, "SEND\ncontent-length: 1\n\nx\0", "content-length is not a number");
    EXPECT_ERROR (12, "SEND\ncontent-length:99999999999999999999999999\n\n\0",
                  "frame exceeds 65536 bytes");

    //  Other protocol errors
    EXPECT_ERROR (12, "FOO\n\n\0", "unknown command 'FOO'");
    EXPECT_ERROR (12, "send\n\n\0", "unknown command 'send'");
    EXPECT_ERROR (12, "SEND \n\n\0", "unknown command 'SEND '");
    EXPECT_ERROR (12, "MESSAGE\n\n\0", "unknown command 'MESSAGE'");
    EXPECT_ERROR (12, "\x01\x02\n", "unknown command '?\?'");
    EXPECT_ERROR (12, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
                  "unknown command 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA...'");
    EXPECT_ERROR (12, "SEND\0\n\n\0", "NUL in command or headers");
    EXPECT_ERROR (12, "SEND\nfoo\0:bar\n\n\0", "NUL in command or headers");
    EXPECT_ERROR (12, "SEND\nfoo:bar\n\0", "NUL in command or headers");
    EXPECT_ERROR (12, "SEND\nfoo\n\n\0", "header without ':'");
    EXPECT_ERROR (12, "SEND\n:bar\n\n\0", "empty header name");
    EXPECT_ERROR (12, "\r\r\n", "CR not followed by LF");
    EXPECT_ERROR (12, "\rSEND\n\n\0", "CR not followed by LF");
    EXPECT_ERROR (12, "SEND\n\n\0\rx", "CR not followed by LF");

    //  Limits: the frame size counts everything before the NUL
    {
        char frame [200];
        //  "SEND\n\n" is 6 bytes; fill the body to exactly the limit
        size_t size = (size_t) snprintf (frame, sizeof frame, "SEND\n\n%s", "0123456789");
        pl_check (s_run (12, size, 64, frame, size + 1, 1, &seed, &capture, error, NULL) == 0);
        pl_check (capture.frames == 1);
        s_expect_error (12, size - 1, 64, frame, size + 1, "frame exceeds 15 bytes");
        size = (size_t) snprintf (frame, sizeof frame, "SEND\ncontent-length:10\n\n%s", "0123456789");
        pl_check (s_run (12, size, 64, frame, size + 1, 1, &seed, &capture, error, NULL) == 0);
        pl_check (capture.frames == 1);
        s_expect_error (12, size - 1, 64, frame, size + 1, "frame exceeds");
        //  Long command and header lines hit the limit before their EOL
        s_expect_error (12, 10, 64, "SENDSENDSENDSEND", 16, "frame exceeds 10 bytes");
        s_expect_error (12, 10, 64, "SEND\nabcdefgh", 13, "frame exceeds 10 bytes");
    }
    {
        //  A too-long content-length fails right after the headers, body unseen
        pl_stomp_parser_t *parser = pl_stomp_parser_new (65536, 64);
        pl_check (parser);
        const char *head = "SEND\ncontent-length:65537\n\n";
        pl_check (pl_stomp_parser_feed (parser, head, strlen (head) - 1, s_capture, &capture) == 0);
        pl_check (pl_stomp_parser_feed (parser, "\n", 1, s_capture, &capture) == -1);
        pl_check (streq_safe (pl_stomp_parser_error (parser), "frame exceeds 65536 bytes"));
        //  And refuses anything after
        pl_check (pl_stomp_parser_feed (parser, "SEND\n\n\0", 7, s_capture, &capture) == -1);
        pl_check (streq_safe (pl_stomp_parser_error (parser), "frame exceeds 65536 bytes"));
        pl_stomp_parser_destroy (&parser);
    }
    {
        //  A 10 MB body without NUL fails once past the limit, memory bounded
        pl_stomp_parser_t *parser = pl_stomp_parser_new (65536, 64);
        pl_check (parser);
        const char *head = "SEND\ndestination:/a\n\n";
        pl_check (pl_stomp_parser_feed (parser, head, strlen (head), s_capture, &capture) == 0);
        char chunk [4096];
        memset (chunk, 'x', sizeof chunk);
        size_t fed = strlen (head);
        int rc = 0;
        while (fed < 10 * 1024 * 1024) {
            rc = pl_stomp_parser_feed (parser, chunk, sizeof chunk, s_capture, &capture);
            if (rc)
                break;
            fed += sizeof chunk;
            pl_check (parser->buffer.capacity <= 2 * 65536);
        }
        pl_check (rc == -1);
        pl_check (fed <= 65536 && fed + sizeof chunk > 65536);
        pl_check (streq_safe (pl_stomp_parser_error (parser), "frame exceeds 65536 bytes"));
        pl_check (parser->buffer.capacity == 0);
        pl_stomp_parser_destroy (&parser);
    }
    //  Too many headers: max_headers is fine, one more is not
    {
        const char four [] = "SEND\na:1\nb:2\nc:3\nd:4\n\n\0";
        pl_check (s_run (12, 65536, 4, four, sizeof four - 1, 1, &seed, &capture, error, NULL) == 0);
        pl_check (TRACE_IS (&capture, "SEND|a=1|b=2|c=3|d=4|[0]\n"));
        const char five [] = "SEND\na:1\nb:2\nc:3\nd:4\ne:5\n\n\0";
        s_expect_error (12, 65536, 4, five, sizeof five - 1, "too many headers");
        s_expect_error (12, 65536, 0, "SEND\na:1\n\n\0", 11, "too many headers");
        pl_check (s_run (12, 65536, 0, "SEND\n\n\0", 7, 0, &seed, &capture, error, NULL) == 0);
        //  Many headers, to grow the header arrays
        pl_buf_t many;
        pl_buf_init (&many);
        pl_check (pl_buf_printf (&many, "SEND\n") == 0);
        for (int index = 0; index < 1000; index++)
            pl_check (pl_buf_printf (&many, "h%d:%d\n", index, index) == 0);
        pl_check (pl_buf_append (&many, "\n", 2) == 0);
        capture.first_name = "h999";
        pl_check (s_run (12, 65536, 1000, pl_buf_head (&many), pl_buf_pending (&many), 7,
                       &seed, &capture, error, NULL) == 0);
        pl_check (capture.frames == 1);
        pl_check (strcmp (capture.first, "999") == 0);
        capture.first_name = NULL;
        s_expect_error (12, 65536, 999, pl_buf_head (&many), pl_buf_pending (&many),
                        "too many headers");
        pl_buf_free (&many);
    }

    //  Callback stops the feed: no error, rest dropped, parser still usable
    {
        pl_stomp_parser_t *parser = pl_stomp_parser_new (65536, 64);
        pl_check (parser);
        pl_buf_reset (&capture.trace);
        capture.frames = 0;
        capture.stop_at = 1;
        const char frames [] = "SEND\n\n1\0SEND\n\n2\0";
        pl_check (pl_stomp_parser_feed (parser, frames, sizeof frames - 1, s_capture, &capture) == -1);
        pl_check (pl_stomp_parser_error (parser) == NULL);
        pl_check (TRACE_IS (&capture, "SEND|[1]1\n"));
        capture.stop_at = 0;
        pl_check (pl_stomp_parser_feed (parser, frames + 8, 8, s_capture, &capture) == 0);
        pl_check (TRACE_IS (&capture, "SEND|[1]1\nSEND|[1]2\n"));
        //  Likewise after a content-length body
        capture.stop_at = 3;
        const char sized [] = "SEND\ncontent-length:1\n\n3\0SEND\n\n4\0";
        pl_check (pl_stomp_parser_feed (parser, sized, sizeof sized - 1, s_capture, &capture) == -1);
        pl_check (pl_stomp_parser_error (parser) == NULL);
        pl_check (TRACE_IS (&capture, "SEND|[1]1\nSEND|[1]2\nSEND|content-length=1|[1]3\n"));
        capture.stop_at = 0;
        pl_buf_reset (&capture.trace);
        //  The version may change between frames
        pl_stomp_parser_set_version (parser, 10);
        pl_check (pl_stomp_parser_feed (parser, "SEND\na:\\c\n\n\0", 12, s_capture, &capture) == 0);
        pl_check (TRACE_IS (&capture, "SEND|a=\\c|[0]\n"));
        pl_stomp_parser_destroy (&parser);
    }

    //  A big frame one byte at a time stays linear, and its buffer is let go
    {
        size_t size = 1024 * 1024;
        char *big = malloc (size + 7);
        pl_check (big);
        memcpy (big, "SEND\n\n", 6);
        memset (big + 6, 'y', size);
        big [size + 6] = 0;
        pl_stomp_parser_t *parser = pl_stomp_parser_new (2 * size, 64);
        pl_check (parser);
        pl_buf_reset (&capture.trace);
        capture.frames = 0;
        for (size_t index = 0; index < size + 7; index++)
            pl_check (pl_stomp_parser_feed (parser, big + index, 1, s_capture, &capture) == 0);
        pl_check (capture.frames == 1);
        pl_check (parser->buffer.capacity == 0);
        pl_stomp_parser_destroy (&parser);
        free (big);
    }

    //  Garbage never crashes; random bytes ended by an EOL always fail
    for (int round = 0; round < 2000; round++) {
        char garbage [300];
        size_t size = 1 + s_random (&seed) % 256;
        for (size_t index = 0; index < size; index++)
            garbage [index] = (char) s_random (&seed);
        garbage [size++] = '\n';
        int rc = s_run (12, 1024, 8, garbage, size, round % 3 == 0? 0: 1 + round % 17,
                        &seed, &capture, error, NULL);
        bool only_eols = true;
        for (size_t index = 0; index < size && only_eols; index++)
            only_eols = garbage [index] == '\n' || garbage [index] == '\r';
        if (!only_eols) {
            pl_check (rc == -1);
            pl_check (*error);
        }
    }
    //  Valid streams with random bytes flipped: whatever comes, no crash
    for (int round = 0; round < 2000; round++) {
        char mutated [sizeof stream];
        memcpy (mutated, stream, sizeof stream);
        int flips = 1 + (int) (s_random (&seed) % 4);
        for (int flip = 0; flip < flips; flip++)
            mutated [s_random (&seed) % stream_size] = (char) s_random (&seed);
        for (int version = 10; version <= 12; version++) {
            int rc = s_run (version, 100 + s_random (&seed) % 100, 1 + s_random (&seed) % 4,
                            mutated, stream_size, s_random (&seed) % 9, &seed, &capture, error, NULL);
            pl_check (rc == 0 || *error);
        }
    }

    //  Writer: exact bytes of a simple MESSAGE frame
    pl_buf_t out;
    pl_buf_init (&out);
    {
        const char *headers [] = { "destination", "/topic/room-1", "message-id", "m1",
                                   "subscription", "sub-0", NULL };
        pl_check (pl_stomp_write (&out, 12, "MESSAGE", headers, "hello", 5) == 0);
        const char message [] = "MESSAGE\ndestination:/topic/room-1\nmessage-id:m1\n"
                                "subscription:sub-0\ncontent-length:5\n\nhello";
        pl_check (pl_buf_pending (&out) == sizeof message);
        pl_check (memcmp (pl_buf_head (&out), message, sizeof message) == 0);
        pl_buf_reset (&out);
        //  Without a body: no content-length; a RECEIPT with no headers list
        pl_check (pl_stomp_write (&out, 12, "RECEIPT", (const char *[]) { "receipt-id", "7", NULL },
                                NULL, 0) == 0);
        pl_check (pl_stomp_write (&out, 12, "RECEIPT", NULL, NULL, 0) == 0);
        const char receipt [] = "RECEIPT\nreceipt-id:7\n\n\0RECEIPT\n\n";
        pl_check (pl_buf_pending (&out) == sizeof receipt);
        pl_check (memcmp (pl_buf_head (&out), receipt, sizeof receipt) == 0);
        pl_buf_reset (&out);
        //  A caller's content-length gives way to the real one
        pl_check (pl_stomp_write (&out, 12, "MESSAGE", (const char *[]) { "content-length", "99", NULL },
                                "", 0) == 0);
        const char empty [] = "MESSAGE\ncontent-length:0\n\n";
        pl_check (pl_buf_pending (&out) == sizeof empty);
        pl_check (memcmp (pl_buf_head (&out), empty, sizeof empty) == 0);
        pl_buf_reset (&out);
    }
    //  Writer: escaping per version; CONNECTED never escaped
    {
        const char *headers [] = { "k:\\\n\r", "v:\\\n\r", NULL };
        pl_check (pl_stomp_write (&out, 12, "MESSAGE", headers, NULL, 0) == 0);
        const char v12 [] = "MESSAGE\nk\\c\\\\\\n\\r:v\\c\\\\\\n\\r\n\n";
        pl_check (pl_buf_pending (&out) == sizeof v12);
        pl_check (memcmp (pl_buf_head (&out), v12, sizeof v12) == 0);
        pl_buf_reset (&out);
        pl_check (pl_stomp_write (&out, 11, "MESSAGE", headers, NULL, 0) == 0);
        const char v11 [] = "MESSAGE\nk\\c\\\\\\n\r:v\\c\\\\\\n\r\n\n";
        pl_check (pl_buf_pending (&out) == sizeof v11);
        pl_check (memcmp (pl_buf_head (&out), v11, sizeof v11) == 0);
        pl_buf_reset (&out);
        pl_check (pl_stomp_write (&out, 10, "MESSAGE", headers, NULL, 0) == 0);
        const char v10 [] = "MESSAGE\nk:\\  :v:\\  \n\n";
        pl_check (pl_buf_pending (&out) == sizeof v10);
        pl_check (memcmp (pl_buf_head (&out), v10, sizeof v10) == 0);
        pl_buf_reset (&out);
        const char *connected_headers [] = { "version", "1.2", "server", "parley/1:0",
                                             "heart-beat", "10000,10000", NULL };
        pl_check (pl_stomp_write (&out, 12, "CONNECTED", connected_headers, NULL, 0) == 0);
        const char connected [] = "CONNECTED\nversion:1.2\nserver:parley/1:0\n"
                                  "heart-beat:10000,10000\n\n";
        pl_check (pl_buf_pending (&out) == sizeof connected);
        pl_check (memcmp (pl_buf_head (&out), connected, sizeof connected) == 0);
        pl_buf_reset (&out);
    }
    //  Writer round trip: special characters and a binary body come back equal
    for (int version = 11; version <= 12; version++) {
        const char *name = "we:ird\\na\nme";
        const char *value = version == 12? "a:b\\c\nd\re::\\\\": "a:b\\c\nde::\\\\";
        const char *headers [] = { "destination", "/topic/r:1", name, value, "x", "", NULL };
        const char body [] = "bin\0ary\n\r\0";
        pl_check (pl_stomp_write (&out, version, "SEND", headers, body, sizeof body - 1) == 0);
        pl_check (pl_stomp_write (&out, version, "SEND", headers, body, sizeof body - 1) == 0);
        pl_buf_t expect;
        pl_buf_init (&expect);
        for (int copy = 0; copy < 2; copy++) {
            pl_check (pl_buf_printf (&expect, "SEND|destination=/topic/r:1|%s=%s|x=|content-length=%zu|[%zu]",
                                   name, value, sizeof body - 1, sizeof body - 1) == 0);
            pl_check (pl_buf_append (&expect, body, sizeof body - 1) == 0);
            pl_check (pl_buf_append (&expect, "\n", 1) == 0);
        }
        for (size_t chunking = 0; chunking < 3; chunking++) {
            pl_check (s_run (version, 65536, 64, pl_buf_head (&out), pl_buf_pending (&out),
                           chunking * 5, &seed, &capture, error, NULL) == 0);
            pl_check (s_trace_is (&capture, pl_buf_head (&expect), pl_buf_pending (&expect)));
        }
        pl_buf_free (&expect);
        pl_buf_reset (&out);
    }
    //  ERROR frames
    {
        pl_check (pl_stomp_write_error (&out, 12, "unknown command 'FOO'", NULL, NULL) == 0);
        const char plain_error [] = "ERROR\nmessage:unknown command 'FOO'\ncontent-type:text/plain\n"
                                    "content-length:0\n\n";
        pl_check (pl_buf_pending (&out) == sizeof plain_error);
        pl_check (memcmp (pl_buf_head (&out), plain_error, sizeof plain_error) == 0);
        pl_buf_reset (&out);
        pl_check (pl_stomp_write_error (&out, 12, "bad: thing", "more\ndetail", "r-1") == 0);
        const char full_error [] = "ERROR\nmessage:bad\\c thing\ncontent-type:text/plain\n"
                                   "receipt-id:r-1\ncontent-length:11\n\nmore\ndetail";
        pl_check (pl_buf_pending (&out) == sizeof full_error);
        pl_check (memcmp (pl_buf_head (&out), full_error, sizeof full_error) == 0);
        //  As a client reads it
        pl_stomp_text_expect (pl_buf_head (&out), "ERROR", "message", "bad: thing");
        pl_stomp_text_expect (pl_buf_head (&out), "ERROR", "receipt-id", NULL);
        pl_check (pl_stomp_text_header (pl_buf_head (&out), "detail") == NULL);
        pl_buf_reset (&out);
    }
    //  Writing after consumed bytes keeps the pending ones
    {
        pl_check (pl_buf_append (&out, "abc", 3) == 0);
        pl_buf_consume (&out, 1);
        pl_check (pl_stomp_write (&out, 12, "RECEIPT", NULL, NULL, 0) == 0);
        pl_check (pl_buf_pending (&out) == 2 + 10);
        pl_check (memcmp (pl_buf_head (&out), "bcRECEIPT\n\n", 12) == 0);
    }
    pl_buf_free (&out);
    pl_buf_free (&capture.trace);

    //  Destroy is safe on NULL
    pl_stomp_parser_t *none = NULL;
    pl_stomp_parser_destroy (&none);
    if (verbose)
        printf ("OK\n");
}
