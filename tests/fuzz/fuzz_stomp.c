/*  =========================================================================
    fuzz_stomp - libFuzzer target: the STOMP parser (pl_stomp) fed in
    random splits, and the frame writer read back by the parser

    Input: byte 0 picks the version, the frame and header limits and a
    frame after which the callback says stop; byte 1 the number of split
    points (0..15), two bytes each follow (offsets, modulo the stream's
    size); the rest is the stream a client sends.

    Checked: the stream fed whole and fed in pieces gives the same frames
    and fails or not alike (a WebSocket may split anywhere); every frame is
    well formed and within the limits; a failed parser refuses all further
    input, a stopped one takes a new frame; and in STOMP 1.2 each frame
    written by pl_stomp_write parses back to the same headers and body.
    =========================================================================
*/
#include "pl_stomp.h"
#include "pl_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPLITS_MAX 15

static const char *s_command_names [] = {
    NULL, "CONNECT", "STOMP", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK",
    "BEGIN", "COMMIT", "ABORT", "DISCONNECT"
};

typedef struct {
    int version;
    size_t max_frame;
    size_t max_headers;
    int stop_at;                //  the callback returns -1 on this frame (1-based), 0: never
} config_t;

//  One run of a parser over the stream: what came out of it
typedef struct {
    const config_t *config;
    pl_buf_t trace;             //  every frame, length-prefixed, to compare runs
    int frames;
    bool stopped;               //  the callback said stop
    bool probing;               //  feeding the probe: never stop
} run_t;

static void
s_trace (pl_buf_t *trace, const char *text, size_t size)
{
    pl_check (pl_buf_printf (trace, "%zu:", size) == 0);
    pl_check (pl_buf_append (trace, text, size) == 0);
}

//  A value's size bounds what it took on the wire (unescaping only shrinks).
static size_t
s_frame_floor (const pl_stomp_frame_t *frame)
{
    size_t size = strlen (frame->command_name) + 1 + 1 + frame->body_size;
    for (size_t index = 0; index < frame->header_count; index++)
        size += strlen (frame->headers [index].name) + 1
              + strlen (frame->headers [index].value) + 1;
    return size;
}

//  The frame is what the header file promises.
static void
s_check_frame (const config_t *config, int version, const pl_stomp_frame_t *frame)
{
    pl_check (frame->command >= PL_STOMP_CONNECT && frame->command <= PL_STOMP_DISCONNECT);
    pl_check (strcmp (frame->command_name, s_command_names [frame->command]) == 0);
    pl_check (frame->body && frame->body [frame->body_size] == 0);
    pl_check (frame->header_count <= config->max_headers);
    pl_check (frame->header_count == 0 || frame->headers);
    pl_check (s_frame_floor (frame) <= config->max_frame);
    bool escaped = version > 10
                && frame->command != PL_STOMP_CONNECT && frame->command != PL_STOMP_STOMP;
    for (size_t index = 0; index < frame->header_count; index++) {
        const char *name = frame->headers [index].name;
        const char *value = frame->headers [index].value;
        pl_check (name && value && *name);
        //  Without escapes a name ends at its colon and no line holds an LF
        if (!escaped)
            pl_check (!strchr (name, ':') && !strchr (name, '\n') && !strchr (value, '\n'));
        //  The first occurrence of a name wins
        size_t first = 0;
        while (strcmp (frame->headers [first].name, name) != 0)
            first++;
        pl_check (pl_stomp_frame_header (frame, name) == frame->headers [first].value);
    }
    const char *length = pl_stomp_frame_header (frame, "content-length");
    if (length)
        pl_check (strtoull (length, NULL, 10) == frame->body_size);
    else
        pl_check (memchr (frame->body, 0, frame->body_size) == NULL);
}

static int
s_on_frame (void *arg, pl_stomp_frame_t *frame)
{
    run_t *run = (run_t *) arg;
    pl_check (!run->stopped);
    s_check_frame (run->config, run->config->version, frame);
    s_trace (&run->trace, frame->command_name, strlen (frame->command_name));
    pl_check (pl_buf_printf (&run->trace, "%zu;", frame->header_count) == 0);
    for (size_t index = 0; index < frame->header_count; index++) {
        s_trace (&run->trace, frame->headers [index].name, strlen (frame->headers [index].name));
        s_trace (&run->trace, frame->headers [index].value, strlen (frame->headers [index].value));
    }
    s_trace (&run->trace, frame->body, frame->body_size);
    run->frames++;
    if (!run->probing && run->frames == run->config->stop_at) {
        run->stopped = true;
        return -1;
    }
    return 0;
}

//  Feed the stream in the pieces that the sorted offsets cut; stop at the
//  first feed that does not take everything. Returns that feed's rc.
static int
s_feed (pl_stomp_parser_t *parser, run_t *run, const char *stream, size_t size,
        const size_t *cuts, size_t cut_count)
{
    size_t from = 0;
    for (size_t index = 0; index <= cut_count; index++) {
        size_t to = index < cut_count? cuts [index]: size;
        int rc = pl_stomp_parser_feed (parser, stream + from, to - from, s_on_frame, run);
        if (rc)
            return rc;
        from = to;
    }
    return 0;
}

//  A frame every parser takes when it is at a frame boundary
#define PROBE "DISCONNECT\n\n"

//  After the stream: a failed parser refuses the probe and keeps its
//  reason; a stopped one parses it; one that took everything has no error.
static void
s_check_after (pl_stomp_parser_t *parser, run_t *run, int rc)
{
    const char *reason = pl_stomp_parser_error (parser);
    if (rc == 0) {
        pl_check (reason == NULL && !run->stopped);
        return;
    }
    //  The probe's frame is no part of the run's trace
    int frames = run->frames;
    size_t traced = run->trace.size;
    run->probing = true;
    if (run->stopped) {
        pl_check (reason == NULL);
        run->stopped = false;
        pl_check (pl_stomp_parser_feed (parser, PROBE, sizeof PROBE, s_on_frame, run) == 0);
        pl_check (run->frames == frames + 1);
    }
    else {
        pl_check (reason && *reason);
        char saved [128];
        snprintf (saved, sizeof saved, "%s", reason);
        pl_check (pl_stomp_parser_feed (parser, PROBE, sizeof PROBE, s_on_frame, run) == -1);
        pl_check (run->frames == frames);
        pl_check (strcmp (pl_stomp_parser_error (parser), saved) == 0);
    }
    run->probing = false;
    run->frames = frames;
    run->trace.size = traced;
}

//  Parse the stream in pieces (none when cut_count is 0); fills run.
static int
s_parse (const config_t *config, run_t *run, const char *stream, size_t size,
         const size_t *cuts, size_t cut_count)
{
    pl_stomp_parser_t *parser = pl_stomp_parser_new (config->max_frame, config->max_headers);
    pl_check (parser);
    pl_stomp_parser_set_version (parser, config->version);
    int rc = s_feed (parser, run, stream, size, cuts, cut_count);
    s_check_after (parser, run, rc);
    pl_stomp_parser_destroy (&parser);
    return rc;
}

//  STOMP 1.2 escapes everything: a frame written with a client frame's
//  headers and body reads back the same (content-length aside, which the
//  writer sets itself).
typedef struct {
    const pl_stomp_frame_t *original;
    int frames;
} written_t;

static int
s_on_written (void *arg, pl_stomp_frame_t *frame)
{
    written_t *written = (written_t *) arg;
    const pl_stomp_frame_t *original = written->original;
    pl_check (++written->frames == 1);
    pl_check (frame->command == original->command);
    pl_check (frame->body_size == original->body_size);
    pl_check (memcmp (frame->body, original->body, frame->body_size) == 0);
    size_t at = 0;
    for (size_t index = 0; index < original->header_count; index++) {
        const pl_stomp_header_t *header = &original->headers [index];
        if (strcmp (header->name, "content-length") == 0)
            continue;
        pl_check (at < frame->header_count);
        pl_check (strcmp (frame->headers [at].name, header->name) == 0);
        pl_check (strcmp (frame->headers [at].value, header->value) == 0);
        at++;
    }
    pl_check (at + 1 == frame->header_count);
    pl_check (strcmp (frame->headers [at].name, "content-length") == 0);
    return 0;
}

static int
s_on_frame_write_back (void *arg, pl_stomp_frame_t *frame)
{
    (void) arg;
    if (frame->command == PL_STOMP_CONNECT || frame->command == PL_STOMP_STOMP)
        return 0;               //  never escaped, so not this writer's business
    const char **headers = calloc (2 * frame->header_count + 1, sizeof *headers);
    pl_check (headers);
    for (size_t index = 0; index < frame->header_count; index++) {
        headers [2 * index] = frame->headers [index].name;
        headers [2 * index + 1] = frame->headers [index].value;
    }
    pl_buf_t out;
    pl_buf_init (&out);
    pl_check (pl_stomp_write (&out, 12, frame->command_name, headers,
                              frame->body, frame->body_size) == 0);
    pl_stomp_parser_t *parser = pl_stomp_parser_new (out.size, frame->header_count + 1);
    pl_check (parser);
    written_t written = { .original = frame };
    pl_check (pl_stomp_parser_feed (parser, out.data, out.size, s_on_written, &written) == 0);
    pl_check (written.frames == 1);
    pl_check (pl_stomp_parser_error (parser) == NULL);
    pl_stomp_parser_destroy (&parser);
    pl_buf_free (&out);
    free (headers);
    return 0;
}

static void
s_write_back (const config_t *config, const char *stream, size_t size)
{
    pl_stomp_parser_t *parser = pl_stomp_parser_new (config->max_frame, config->max_headers);
    pl_check (parser);
    pl_stomp_parser_feed (parser, stream, size, s_on_frame_write_back, NULL);
    pl_stomp_parser_destroy (&parser);
}

static int
s_compare_sizes (const void *a, const void *b)
{
    size_t x = *(const size_t *) a, y = *(const size_t *) b;
    return x < y? -1: x > y;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const int versions [] = { 10, 11, 12, 12 };
    static const size_t max_frames [] = { 48, 512, 4096, 65536 };
    static const size_t max_headers [] = { 0, 2, 16, 64 };
    config_t config = {
        .version = versions [data [0] & 3],
        .max_frame = max_frames [(data [0] >> 2) & 3],
        .max_headers = max_headers [(data [0] >> 4) & 3],
        .stop_at = data [0] >> 6
    };
    size_t cut_count = data [1] % (SPLITS_MAX + 1);
    if (size < 2 + 2 * cut_count)
        return 0;
    const char *stream = (const char *) data + 2 + 2 * cut_count;
    size_t stream_size = size - 2 - 2 * cut_count;
    size_t cuts [SPLITS_MAX];
    for (size_t index = 0; index < cut_count; index++) {
        size_t offset = (size_t) data [2 + 2 * index] << 8 | data [3 + 2 * index];
        cuts [index] = stream_size? offset % (stream_size + 1): 0;
    }
    qsort (cuts, cut_count, sizeof cuts [0], s_compare_sizes);

    run_t whole = { .config = &config }, pieces = { .config = &config };
    pl_buf_init (&whole.trace);
    pl_buf_init (&pieces.trace);
    int whole_rc = s_parse (&config, &whole, stream, stream_size, NULL, 0);
    int pieces_rc = s_parse (&config, &pieces, stream, stream_size, cuts, cut_count);
    pl_check (whole_rc == pieces_rc);
    pl_check (whole.trace.size == pieces.trace.size);
    pl_check (whole.trace.size == 0
           || memcmp (whole.trace.data, pieces.trace.data, whole.trace.size) == 0);
    pl_buf_free (&whole.trace);
    pl_buf_free (&pieces.trace);
    if (config.version == 12)
        s_write_back (&config, stream, stream_size);
    return 0;
}
