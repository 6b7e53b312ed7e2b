/*  =========================================================================
    pl_wsframe - the client's side of RFC 6455, for parley-load
    =========================================================================
*/
#include "pl_wsframe.h"
#include "pl_wsclient.h"

#include <openssl/evp.h>
#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define S_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
//  A handshake answer longer than this is not one
#define S_RESPONSE_MAX 8192

void
pl_wsframe_key (const unsigned char random [16], char key [PL_WSFRAME_KEY_SIZE])
{
    EVP_EncodeBlock ((unsigned char *) key, random, 16);
}

//  What the server must answer for key: base64 (SHA-1 (key + GUID))
static void
s_accept_for (const char *key, char accept [29])
{
    char joined [PL_WSFRAME_KEY_SIZE + sizeof S_GUID];
    int size = snprintf (joined, sizeof joined, "%s" S_GUID, key);
    unsigned char digest [EVP_MAX_MD_SIZE];
    unsigned int digest_size = 0;
    //  Should the digest fail, no answer matches: the handshake fails
    if (EVP_Digest (joined, (size_t) size, digest, &digest_size, EVP_sha1 (), NULL) != 1
    ||  digest_size != 20)
        *accept = 0;
    else
        EVP_EncodeBlock ((unsigned char *) accept, digest, 20);
}

int
pl_wsframe_request (pl_buf_t *out, const char *host, int port, const char *path,
                    const char *key, const char *protocols)
{
    return pl_buf_printf (out,
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
        path, host, port, key, protocols? "Sec-WebSocket-Protocol: ": "",
        protocols? protocols: "", protocols? "\r\n": "");
}

//  Does the comma-separated list hold token (case-insensitive)?
static bool
s_list_has (const char *list, size_t size, const char *token)
{
    size_t token_size = strlen (token);
    size_t start = 0;
    while (start < size) {
        while (start < size && (list [start] == ' ' || list [start] == ',' || list [start] == '\t'))
            start++;
        size_t end = start;
        while (end < size && list [end] != ',')
            end++;
        size_t last = end;
        while (last > start && (list [last - 1] == ' ' || list [last - 1] == '\t'))
            last--;
        if (last - start == token_size && strncasecmp (list + start, token, token_size) == 0)
            return true;
        start = end;
    }
    return false;
}

//  Look at one header line of the answer; sets the flags it satisfies.
static void
s_response_header (const char *line, size_t size, const char *accept, int *found,
                   char *protocol, size_t protocol_size)
{
    const char *colon = memchr (line, ':', size);
    if (!colon)
        return;
    size_t name_size = (size_t) (colon - line);
    const char *value = colon + 1;
    size_t value_size = size - name_size - 1;
    while (value_size && (*value == ' ' || *value == '\t')) {
        value++;
        value_size--;
    }
    while (value_size && (value [value_size - 1] == ' ' || value [value_size - 1] == '\t'))
        value_size--;
#define S_NAME(text) (name_size == strlen (text) && strncasecmp (line, text, name_size) == 0)
    if (S_NAME ("Upgrade") && s_list_has (value, value_size, "websocket"))
        *found |= 1;
    else
    if (S_NAME ("Connection") && s_list_has (value, value_size, "upgrade"))
        *found |= 2;
    else
    if (S_NAME ("Sec-WebSocket-Accept") && value_size == strlen (accept)
    &&  memcmp (value, accept, value_size) == 0)
        *found |= 4;
    else
    if (S_NAME ("Sec-WebSocket-Protocol") && value_size < protocol_size) {
        memcpy (protocol, value, value_size);
        protocol [value_size] = 0;
    }
#undef S_NAME
}

ssize_t
pl_wsframe_response (const char *data, size_t size, const char *key, char *protocol,
                     size_t protocol_size, char *error, size_t error_size)
{
    const char *end = memmem (data, size, "\r\n\r\n", 4);
    if (!end) {
        if (size <= S_RESPONSE_MAX)
            return 0;
        snprintf (error, error_size, "handshake answer over %d bytes", S_RESPONSE_MAX);
        return -1;
    }
    size_t answer_size = (size_t) (end - data) + 4;
    const char *line_end = memmem (data, answer_size, "\r\n", 2);
    if (answer_size < 12 || memcmp (data, "HTTP/1.1 101", 12) != 0) {
        snprintf (error, error_size, "handshake refused: %.*s",
                  (int) (line_end - data > 120? 120: line_end - data), data);
        return -1;
    }
    char accept [29];
    s_accept_for (key, accept);
    *protocol = 0;
    int found = 0;
    const char *line = line_end + 2;
    while (line < end) {
        line_end = memmem (line, (size_t) (end + 2 - line), "\r\n", 2);
        s_response_header (line, (size_t) (line_end - line), accept, &found, protocol, protocol_size);
        line = line_end + 2;
    }
    if (found != 7) {
        snprintf (error, error_size, "handshake answer lacks %s",
                  !(found & 1)? "Upgrade: websocket": !(found & 2)? "Connection: Upgrade":
                  "the right Sec-WebSocket-Accept");
        return -1;
    }
    return (ssize_t) answer_size;
}

void
pl_wsreader_init (pl_wsreader_t *self, uint64_t max_payload)
{
    self->fragmented = false;
    self->opcode = PL_WSFRAME_TEXT;
    self->max_payload = max_payload;
}

//  Decode the header of the frame at data. Returns its size and sets
//  opcode, fin and length; 0 while incomplete; -1 on a protocol error.
static ssize_t
s_frame_header (pl_wsreader_t *self, const unsigned char *data, size_t size,
                int *opcode, bool *fin, uint64_t *length, const char **error)
{
    if (size < 2)
        return 0;
    *fin = (data [0] & 0x80) != 0;
    *opcode = data [0] & 0x0F;
    if (data [0] & 0x70) {
        *error = "frame with RSV bits set (no extension was agreed)";
        return -1;
    }
    if (data [1] & 0x80) {
        *error = "masked frame from the server";
        return -1;
    }
    size_t header = 2;
    *length = data [1] & 0x7F;
    if (*length >= 126) {
        header += *length == 126? 2: 8;
        if (size < header)
            return 0;
        uint64_t value = 0;
        for (size_t index = 2; index < header; index++)
            value = (value << 8) | data [index];
        *length = value;
    }
    if (*opcode >= 0x8) {
        if (*opcode > PL_WSFRAME_PONG || !*fin || *length > 125) {
            *error = *opcode > PL_WSFRAME_PONG? "unknown control opcode":
                     "fragmented or long control frame";
            return -1;
        }
    }
    else
    if (*opcode > PL_WSFRAME_BINARY) {
        *error = "unknown data opcode";
        return -1;
    }
    else
    if ((*opcode == PL_WSFRAME_CONTINUATION) != self->fragmented) {
        *error = self->fragmented? "new message inside a fragmented one":
                                   "continuation frame outside a message";
        return -1;
    }
    if (*length > self->max_payload) {
        *error = "frame larger than the client accepts";
        return -1;
    }
    return (ssize_t) header;
}

ssize_t
pl_wsreader_feed (pl_wsreader_t *self, char *data, size_t size,
                  pl_wsreader_fn *callback, void *arg, const char **error)
{
    size_t taken = 0;
    while (taken < size) {
        int opcode;
        bool fin;
        uint64_t length;
        ssize_t header = s_frame_header (self, (unsigned char *) data + taken, size - taken,
                                         &opcode, &fin, &length, error);
        if (header < 0)
            return -1;
        if (header == 0 || length > size - taken - (size_t) header)
            break;              //  the rest of the frame has not come yet
        char *payload = data + taken + header;
        if (opcode < 0x8) {
            //  Fragments of one message carry the first fragment's opcode
            if (opcode != PL_WSFRAME_CONTINUATION)
                self->opcode = opcode;
            self->fragmented = !fin;
            opcode = self->opcode;
        }
        taken += (size_t) header + (size_t) length;
        if (callback (arg, opcode, payload, (size_t) length, fin)) {
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
    pl_buf_t data;              //  data payloads, joined
    int messages;               //  data frames with fin
    int pings, closes;
    int stop_after;             //  frames, 0: never stop
    int frames;
} s_test_sink_t;

static int
s_test_callback (void *arg, int opcode, char *payload, size_t size, bool fin)
{
    s_test_sink_t *sink = (s_test_sink_t *) arg;
    sink->frames++;
    if (opcode == PL_WSFRAME_PING)
        sink->pings++;
    else
    if (opcode == PL_WSFRAME_CLOSE)
        sink->closes++;
    else
    if (opcode == PL_WSFRAME_TEXT || opcode == PL_WSFRAME_BINARY) {
        pl_check (pl_buf_append (&sink->data, payload, size) == 0);
        sink->messages += fin;
    }
    return sink->stop_after && sink->frames >= sink->stop_after? -1: 0;
}

//  Feed bytes one at a time, as a slow network would, keeping the rest
static void
s_test_trickle (pl_wsreader_t *reader, const char *bytes, size_t size, s_test_sink_t *sink)
{
    pl_buf_t pending;
    pl_buf_init (&pending);
    for (size_t index = 0; index < size; index++) {
        pl_check (pl_buf_append (&pending, bytes + index, 1) == 0);
        const char *error = NULL;
        ssize_t taken = pl_wsreader_feed (reader, pending.data + pending.start,
                                          pl_buf_pending (&pending), s_test_callback, sink, &error);
        if (taken < 0)
            fprintf (stderr, "at byte %zu: %s\n", index, error? error: "stopped");
        pl_check (taken >= 0);
        pl_buf_consume (&pending, (size_t) taken);
    }
    pl_check (pl_buf_pending (&pending) == 0);
    pl_buf_free (&pending);
}

static void
s_test_handshake (void)
{
    //  RFC 6455's own example
    char accept [29];
    s_accept_for ("dGhlIHNhbXBsZSBub25jZQ==", accept);
    pl_check (s_same (accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    const unsigned char sample [16] = "the sample nonce";
    char key [PL_WSFRAME_KEY_SIZE];
    pl_wsframe_key (sample, key);
    pl_check (s_same (key, "dGhlIHNhbXBsZSBub25jZQ=="));

    const char *good = "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n"
                       "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: "
                       "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n\x81";
    char protocol [32], error [160];
    pl_check (pl_wsframe_response (good, 10, key, protocol, sizeof protocol, error, sizeof error) == 0);
    ssize_t size = pl_wsframe_response (good, strlen (good), key, protocol, sizeof protocol,
                                        error, sizeof error);
    pl_check (size == (ssize_t) strlen (good) - 1 && s_same (protocol, "v12.stomp"));
    const char *wrong = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n";
    pl_check (pl_wsframe_response (wrong, strlen (wrong), key, protocol, sizeof protocol,
                                   error, sizeof error) == -1);
    pl_check (strstr (error, "Sec-WebSocket-Accept"));
    const char *refused = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
    pl_check (pl_wsframe_response (refused, strlen (refused), key, protocol, sizeof protocol,
                                   error, sizeof error) == -1);
    pl_check (s_same (error, "handshake refused: HTTP/1.1 403 Forbidden"));

    pl_buf_t request;
    pl_buf_init (&request);
    pl_check (pl_wsframe_request (&request, "127.0.0.1", 8080, "/ws", key, "v12.stomp") == 0);
    pl_check (strstr (pl_buf_head (&request), "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
    pl_check (strstr (pl_buf_head (&request), "Sec-WebSocket-Protocol: v12.stomp\r\n\r\n"));
    pl_buf_free (&request);
}

//  Masked frames unmask to what went in; lengths of every size class
static void
s_test_encode (void)
{
    size_t sizes [] = { 0, 5, 125, 126, 65535, 65536 };
    for (size_t index = 0; index < sizeof sizes / sizeof sizes [0]; index++) {
        size_t size = sizes [index];
        char *payload = malloc (size + 1);
        pl_check (payload);
        for (size_t at = 0; at < size; at++)
            payload [at] = (char) ('a' + at % 26);
        pl_buf_t out;
        pl_buf_init (&out);
        pl_check (pl_wsclient_frame (&out, PL_WSFRAME_TEXT, payload, size, 0x78563412) == 0);
        const unsigned char *frame = (const unsigned char *) pl_buf_head (&out);
        size_t header = size < 126? 6: size < 65536? 8: 14;
        pl_check (pl_buf_pending (&out) == header + size);
        pl_check (frame [0] == 0x81 && (frame [1] & 0x80));
        pl_check (memcmp (frame + header - 4, "\x12\x34\x56\x78", 4) == 0);
        for (size_t at = 0; at < size; at++)
            pl_check ((char) (frame [header + at] ^ frame [header - 4 + at % 4]) == payload [at]);
        pl_buf_free (&out);
        free (payload);
    }
}

//  Protocol errors the reader must refuse, each after a good prefix
static void
s_test_refused (const char *bytes, size_t size, const char *reason)
{
    pl_wsreader_t reader;
    pl_wsreader_init (&reader, 1 << 20);
    s_test_sink_t sink = { .stop_after = 0 };
    pl_buf_init (&sink.data);
    char copy [64];
    pl_check (size <= sizeof copy);
    memcpy (copy, bytes, size);
    const char *error = NULL;
    pl_check (pl_wsreader_feed (&reader, copy, size, s_test_callback, &sink, &error) == -1);
    pl_check (error && s_same (error, reason));
    pl_buf_free (&sink.data);
}

static void
s_test_reader (void)
{
    //  "Hel" + ping + "lo" + "!" (three fragments), a binary "xyz", a
    //  300-byte text, then a close
    pl_buf_t stream;
    pl_buf_init (&stream);
    const char fragments [] = "\x01\x03Hel\x89\x02hi\x00\x02lo\x80\x01!\x82\x03xyz";
    pl_check (pl_buf_append (&stream, fragments, sizeof fragments - 1) == 0);
    char big [300];
    memset (big, 'b', sizeof big);
    pl_check (pl_buf_append (&stream, "\x81\x7e\x01\x2c", 4) == 0);
    pl_check (pl_buf_append (&stream, big, sizeof big) == 0);
    pl_check (pl_buf_append (&stream, "\x88\x02\x03\xe8", 4) == 0);

    pl_wsreader_t reader;
    pl_wsreader_init (&reader, 1 << 20);
    s_test_sink_t sink = { .stop_after = 0 };
    pl_buf_init (&sink.data);
    s_test_trickle (&reader, pl_buf_head (&stream), pl_buf_pending (&stream), &sink);
    pl_check (sink.messages == 3 && sink.pings == 1 && sink.closes == 1);
    pl_check (pl_buf_pending (&sink.data) == 9 + 300);
    pl_check (memcmp (pl_buf_head (&sink.data), "Hello!xyz", 9) == 0);
    pl_check (!reader.fragmented);

    //  All at once, stopping after the second frame
    pl_buf_reset (&sink.data);
    sink = (s_test_sink_t) { .data = sink.data, .stop_after = 2 };
    pl_wsreader_init (&reader, 1 << 20);
    const char *error = "unset";
    pl_check (pl_wsreader_feed (&reader, stream.data, pl_buf_pending (&stream),
                                s_test_callback, &sink, &error) == -1);
    pl_check (error == NULL && sink.frames == 2);
    pl_buf_free (&sink.data);
    pl_buf_free (&stream);

    s_test_refused ("\x81\x81\x00\x00\x00\x00x", 7, "masked frame from the server");
    s_test_refused ("\x80\x01x", 3, "continuation frame outside a message");
    s_test_refused ("\x01\x01x\x81\x01y", 6, "new message inside a fragmented one");
    s_test_refused ("\x89\x7e\x00\x80", 4, "fragmented or long control frame");
    s_test_refused ("\x09\x00", 2, "fragmented or long control frame");
    s_test_refused ("\xc1\x00", 2, "frame with RSV bits set (no extension was agreed)");
    s_test_refused ("\x83\x00", 2, "unknown data opcode");
    s_test_refused ("\x81\x7f\x00\x00\x00\x01\x00\x00\x00\x00", 10, "frame larger than the client accepts");
}

void
pl_wsframe_test (bool verbose)
{
    printf (" * pl_wsframe: ");
    if (verbose)
        printf ("\n");
    s_test_handshake ();
    s_test_encode ();
    s_test_reader ();
    printf ("OK\n");
}
