/*  =========================================================================
    pl_gate - the first request head of a new connection, checked before
    libwebsockets sees it
    =========================================================================
*/
#include "pl_gate.h"
#include "pl_api.h"
#include "pl_util.h"

#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The methods lws 4.1 serves; for any other it gives up on HTTP
static const char *s_methods [] = {
    "GET", "POST", "OPTIONS", "PUT", "PATCH", "DELETE", "CONNECT", "HEAD"
};
//  What a request line holds besides its target: the longest method, two
//  spaces and "HTTP/1.1"
#define LINE_OVERHEAD       (7 + 2 + 8)
//  First buffer; it doubles up to head_max + 1
#define FIRST_CAPACITY      1024

//  A header whose lines lws joins into one copy of bounded size: its
//  length so far as lws counts it
typedef struct {
    size_t lines;
    size_t bytes;
} joined_t;

//  What the header lines say about an upgrade, gathered line by line and
//  judged once the head is complete (the lines may come in any order)
typedef struct {
    size_t lines;               //  Upgrade lines
    size_t websocket;           //  ... that list websocket
    bool exact;                 //  the first Upgrade line is "websocket" alone
    bool connection_upgrade;    //  Connection lists the upgrade option
    joined_t connection;        //  Connection, as lws copies it
    size_t hosts;               //  Host lines
    bool host_empty;            //  the first of them has no value
    size_t keys;                //  Sec-WebSocket-Key lines
    bool key_valid;             //  the first of them is 24 base64 characters
    size_t versions;            //  Sec-WebSocket-Version lines
    bool version_13;            //  the first of them says 13
    size_t protocol_lines;      //  Sec-WebSocket-Protocol lines
    size_t protocol_empty;      //  ... with no value
    bool protocol_ours;         //  a name of the lists is one of s_subprotocols
    bool protocol_malformed;    //  a name of the lists is not a token lws takes
    bool body;                  //  a Content-Length other than 0, or a Transfer-Encoding
} upgrade_t;

//  The subprotocols the actor serves, and the version of WebSocket
static const char *s_subprotocols [] = { "v12.stomp", "v11.stomp", "v10.stomp" };
#define WEBSOCKET_VERSION   "13"

struct _pl_gate_t {
    size_t head_max;            //  http-request-bytes
    size_t target_max;          //  http-url-max
    size_t lines_max;           //  http-header-lines-max
    char *data;                 //  what the client sent so far
    size_t size;
    size_t capacity;
    size_t parsed;              //  where the first line not checked yet starts
    size_t lines;               //  lines checked; the first is the request line
    joined_t protocols;         //  Sec-WebSocket-Protocol
    joined_t extensions;        //  Sec-WebSocket-Extensions
    bool get_11;                //  the request is an HTTP/1.1 GET
    bool ws_path;               //  ... of /ws (a query or not)
    bool file;                  //  a GET off the API's paths: a file of the web chat
    upgrade_t upgrade;
    char *rewritten;            //  the head without its Upgrade, or NULL
    size_t rewritten_size;
    pl_gate_verdict_t verdict;
    int status;                 //  a refusal's
    char answer [640];
    size_t answer_size;
};

pl_gate_t *
pl_gate_new (size_t head_max, size_t target_max, size_t lines_max)
{
    assert (head_max > 0 && target_max > 0);
    assert (lines_max > 0 && lines_max <= PL_GATE_HEADER_LINES_MOST);
    pl_gate_t *self = (pl_gate_t *) calloc (1, sizeof (pl_gate_t));
    if (!self)
        return NULL;
    self->head_max = head_max;
    self->target_max = target_max;
    self->lines_max = lines_max;
    self->verdict = PL_GATE_MORE;
    return self;
}

void
pl_gate_destroy (pl_gate_t **self_p)
{
    pl_gate_t *self = *self_p;
    if (!self)
        return;
    free (self->data);
    free (self->rewritten);
    free (self);
    *self_p = NULL;
}

size_t
pl_gate_room (pl_gate_t *self)
{
    return self->verdict == PL_GATE_MORE? self->head_max + 1 - self->size: 0;
}

pl_gate_verdict_t
pl_gate_verdict (pl_gate_t *self)
{
    return self->verdict;
}

const char *
pl_gate_data (pl_gate_t *self, size_t *size)
{
    *size = self->size;
    return self->data;
}

int
pl_gate_status (pl_gate_t *self)
{
    return self->status;
}

const char *
pl_gate_answer (pl_gate_t *self, size_t *size)
{
    *size = self->answer_size;
    return self->status? self->answer: NULL;
}

size_t
pl_gate_head_size (pl_gate_t *self)
{
    return self->verdict == PL_GATE_PASS? self->parsed: 0;
}

bool
pl_gate_for_file (pl_gate_t *self)
{
    assert (self);
    return self->verdict == PL_GATE_PASS && self->file;
}

const char *
pl_gate_rewritten (pl_gate_t *self, size_t *size)
{
    *size = self->rewritten_size;
    return self->rewritten;
}


//  --------------------------------------------------------------------------
//  Checks

//  Refuse with status; the message is ours (no quotes or backslashes), so
//  it goes into the JSON as it is.
static void
    s_gate_refuse (pl_gate_t *self, int status, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static void
s_gate_refuse (pl_gate_t *self, int status, const char *format, ...)
{
    char message [200];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof message, format, args);
    va_end (args);
    const char *reason = status == 404? "Not Found":
                         status == 405? "Method Not Allowed":
                         status == 408? "Request Timeout":
                         status == 414? "URI Too Long":
                         status == 426? "Upgrade Required":
                         status == 431? "Request Header Fields Too Large":
                         status == 501? "Not Implemented":
                         status == 503? "Service Unavailable":
                         status == 505? "HTTP Version Not Supported": "Bad Request";
    //  426 names what to upgrade to (RFC 9110 15.5.22), and the WebSocket
    //  version served (RFC 6455 4.4); Upgrade comes with its connection
    //  option (RFC 9110 7.8)
    //  405 says what the path takes (RFC 9110 15.5.6)
    const char *extra = status == 426?
        "upgrade: websocket\r\nsec-websocket-version: " WEBSOCKET_VERSION "\r\n":
                        status == 405? "allow: GET\r\n": "";
    const char *connection = status == 426? "upgrade, close": "close";
    int body = (int) strlen (message) + (int) strlen ("{\"error\":\"\"}");
    int size = snprintf (self->answer, sizeof self->answer,
        "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        "access-control-allow-origin: *\r\n%sconnection: %s\r\n\r\n{\"error\":\"%s\"}",
        status, reason, body, extra, connection, message);
    assert (size > 0 && (size_t) size < sizeof self->answer);
    self->answer_size = (size_t) size;
    self->status = status;
    self->verdict = PL_GATE_REFUSE;
}

//  Whether line (length bytes, complete or not) may start with a method
//  lws serves, followed by a space
static bool
s_method_possible (const char *line, size_t length)
{
    for (size_t index = 0; index < sizeof s_methods / sizeof s_methods [0]; index++) {
        size_t size = strlen (s_methods [index]);
        if (memcmp (line, s_methods [index], length < size? length: size) == 0
        &&  (length <= size || line [size] == ' '))
            return true;
    }
    return false;
}

static int
s_hex (char digit)
{
    if (digit >= '0' && digit <= '9')
        return digit - '0';
    if (digit >= 'a' && digit <= 'f')
        return digit - 'a' + 10;
    if (digit >= 'A' && digit <= 'F')
        return digit - 'A' + 10;
    return -1;
}

//  A token character (RFC 9110): what a header name is made of
static bool
s_tchar (unsigned char byte)
{
    return (byte >= 'a' && byte <= 'z') || (byte >= 'A' && byte <= 'Z')
        || (byte >= '0' && byte <= '9') || (byte && strchr ("!#$%&'*+-.^_`|~", byte));
}

//  The target: a path, valid %-escapes and no %00 (lws closes or answers
//  403 on those), and no more query parts than lws has slots for
static void
s_gate_target (pl_gate_t *self, const char *target, size_t size)
{
    if (size == 0 || target [0] != '/') {
        s_gate_refuse (self, 400, "the request target must be a path (absolute-form is not served)");
        return;
    }
    bool query = false;
    size_t parts = 0;
    for (size_t at = 0; at < size && self->verdict == PL_GATE_MORE; at++) {
        unsigned char byte = (unsigned char) target [at];
        if (byte < 0x21 || byte == 0x7f)
            s_gate_refuse (self, 400, "control character in the request target");
        else
        if (byte == '%') {
            int high = at + 2 < size? s_hex (target [at + 1]): -1;
            int low = at + 2 < size? s_hex (target [at + 2]): -1;
            if (high < 0 || low < 0)
                s_gate_refuse (self, 400, "bad %%-escape in the request target");
            else
            if (high == 0 && low == 0)
                s_gate_refuse (self, 400, "%%00 in the request target");
            at += 2;
        }
        else
        if (byte == '?' && !query) {
            query = true;
            parts = 1;
        }
        else
        if (query && (byte == '&' || byte == ';') && ++parts > PL_GATE_QUERY_PARTS)
            s_gate_refuse (self, 400, "more than %d query parameters", PL_GATE_QUERY_PARTS);
    }
}

//  The path, decoded as lws will: no "." or ".." segment and no '/' or
//  '\\' in an escape (lws would resolve them, and a file path must mean
//  what it says); a '\\' never. Off the API's paths (pl_api_paths) are
//  the web chat's files: GET only (HEAD, or a 304, would leave the
//  connection open to a next request that this gate never sees).
static void
s_gate_path (pl_gate_t *self, bool get, const char *path, size_t size)
{
    char start [16];            //  enough for any of pl_api_paths and a '/'
    size_t start_size = 0;
    size_t segment = 0;         //  decoded bytes of the segment so far
    bool dots = true;           //  ... all of them '.'
    for (size_t at = 0; at <= size && self->verdict == PL_GATE_MORE; at++) {
        bool escaped = at < size && path [at] == '%';
        char byte = at == size? '/':
                    escaped? (char) (s_hex (path [at + 1]) * 16 + s_hex (path [at + 2])): path [at];
        if (byte == '\\' || (escaped && byte == '/'))
            s_gate_refuse (self, 400, "an escaped '/' or a backslash in the path");
        else
        if (byte == '/' && dots && (segment == 1 || segment == 2))
            s_gate_refuse (self, 400, "'.' and '..' segments in the path are not served");
        //  Empty segments do not count ("//api//rooms" is /api/rooms)
        bool repeated = byte == '/' && start_size && start [start_size - 1] == '/';
        if (at < size && start_size < sizeof start && !repeated)
            start [start_size++] = byte;
        segment = byte == '/'? 0: segment + 1;
        dots = byte == '/' || (dots && byte == '.');
        if (escaped)
            at += 2;
    }
    bool file = !pl_api_owns_path (start, start_size);
    if (self->verdict == PL_GATE_MORE && file && !get)
        s_gate_refuse (self, 405, "the web chat's files take GET only");
    self->file = file && get;
}

//  METHOD SP target SP HTTP/1.x, the CR taken off
static void
s_gate_request_line (pl_gate_t *self, const char *line, size_t length)
{
    const char *space = s_method_possible (line, length)?
                        (const char *) memchr (line, ' ', length): NULL;
    if (!space) {
        s_gate_refuse (self, 501, "method not implemented, or not an HTTP/1.1 request");
        return;
    }
    const char *target = space + 1;
    const char *end = line + length;
    space = (const char *) memchr (target, ' ', (size_t) (end - target));
    const char *version = space? space + 1: end;
    size_t version_size = (size_t) (end - version);
    if (!space || version_size != 8 || memcmp (version, "HTTP/", 5) != 0
    ||  version [5] < '0' || version [5] > '9' || version [6] != '.'
    ||  version [7] < '0' || version [7] > '9')
        s_gate_refuse (self, 400, "the request line needs a target and an HTTP version");
    else
    if (memcmp (version, "HTTP/1.1", 8) != 0 && memcmp (version, "HTTP/1.0", 8) != 0)
        s_gate_refuse (self, 505, "HTTP version not supported: HTTP/1.1 only");
    else
    if ((size_t) (space - target) > self->target_max)
        s_gate_refuse (self, 414, "request target over http-url-max (%zu bytes)", self->target_max);
    else {
        //  What a WebSocket upgrade needs of the request line
        size_t size = (size_t) (space - target);
        const char *query = (const char *) memchr (target, '?', size);
        size_t path = query? (size_t) (query - target): size;
        self->get_11 = memcmp (line, "GET ", 4) == 0 && memcmp (version, "HTTP/1.1", 8) == 0;
        self->ws_path = path == 3 && memcmp (target, "/ws", 3) == 0;
        s_gate_target (self, target, size);
        if (self->verdict == PL_GATE_MORE)
            s_gate_path (self, memcmp (line, "GET ", 4) == 0, target, path);
    }
}

//  Whether a header's name (size bytes) is name, which is in lower case
static bool
s_name_is (const char *line, size_t size, const char *name)
{
    if (size != strlen (name))
        return false;
    for (size_t at = 0; at < size; at++)
        if (tolower ((unsigned char) line [at]) != name [at])
            return false;
    return true;
}

//  One more line of a header lws joins: its value (after the colon) as lws
//  counts it. The first line's leading spaces are dropped; each further
//  line adds the space lws puts before it and the comma it joins with.
static size_t
s_joined_add (joined_t *joined, const char *value, size_t size)
{
    if (joined->lines++ == 0)
        while (size && *value == ' ') {
            value++;
            size--;
        }
    else
        joined->bytes += 2;
    joined->bytes += size;
    return joined->bytes;
}

//  The names of a Sec-WebSocket-Protocol line, each up to a comma, leading
//  spaces not counted. Returns whether one is over what lws copies.
static bool
s_protocol_name_too_long (const char *value, size_t size)
{
    size_t name = 0;
    bool started = false;
    for (size_t at = 0; at < size; at++) {
        if (value [at] == ',') {
            name = 0;
            started = false;
        }
        else
        if (started || value [at] != ' ') {
            started = true;
            if (++name > PL_GATE_PROTOCOL_NAME_BYTES)
                return true;
        }
    }
    return false;
}

//  The WebSocket headers whose lines lws joins into a buffer of its own:
//  over it lws closes the upgrade without a word
static void
s_gate_websocket_header (pl_gate_t *self, const char *name, size_t name_size,
                         const char *value, size_t size)
{
    if (s_name_is (name, name_size, "sec-websocket-protocol")) {
        if (s_joined_add (&self->protocols, value, size) > PL_GATE_PROTOCOLS_BYTES)
            s_gate_refuse (self, 431, "Sec-WebSocket-Protocol over %d bytes (its lines joined)",
                           PL_GATE_PROTOCOLS_BYTES);
        else
        if (s_protocol_name_too_long (value, size))
            s_gate_refuse (self, 431, "a Sec-WebSocket-Protocol name over %d bytes",
                           PL_GATE_PROTOCOL_NAME_BYTES);
    }
    else
    if (s_name_is (name, name_size, "sec-websocket-extensions")
    &&  s_joined_add (&self->extensions, value, size) > PL_GATE_EXTENSIONS_BYTES)
        s_gate_refuse (self, 431, "Sec-WebSocket-Extensions over %d bytes (its lines joined)",
                       PL_GATE_EXTENSIONS_BYTES);
}

//  Optional white space (RFC 9110) taken off both ends of a value
static void
s_trim (const char **value, size_t *size)
{
    while (*size && (**value == ' ' || **value == '\t')) {
        (*value)++;
        (*size)--;
    }
    while (*size && ((*value) [*size - 1] == ' ' || (*value) [*size - 1] == '\t'))
        (*size)--;
}

//  The next element of a comma-separated list, white space around it taken
//  off; *list becomes NULL after the last. Returns false when none is left.
static bool
s_list_next (const char **list, size_t *size, const char **element, size_t *length)
{
    if (!*list)
        return false;
    const char *comma = (const char *) memchr (*list, ',', *size);
    *element = *list;
    *length = comma? (size_t) (comma - *list): *size;
    if (comma) {
        *size -= *length + 1;
        *list = comma + 1;
    }
    else
        *list = NULL;
    s_trim (element, length);
    return true;
}

//  Whether a comma-separated list holds option (lower case), in any case
static bool
s_list_has (const char *list, size_t size, const char *option)
{
    const char *element;
    size_t length;
    while (s_list_next (&list, &size, &element, &length))
        if (s_name_is (element, length, option))
            return true;
    return false;
}

//  A Sec-WebSocket-Key as lws takes it: everything after the leading
//  spaces (it hashes trailing white space too, and answers a wrong
//  Sec-WebSocket-Accept), and 16 bytes in base64 (RFC 6455 4.1)
static bool
s_key_valid (const char *value, size_t size)
{
    while (size && *value == ' ') {
        value++;
        size--;
    }
    if (size != 24 || value [22] != '=' || value [23] != '=')
        return false;
    for (size_t at = 0; at < 22; at++)
        if (!isalnum ((unsigned char) value [at]) && value [at] != '+' && value [at] != '/')
            return false;
    return true;
}

//  The names of a Sec-WebSocket-Protocol line: whether one is ours, and
//  whether each is a name lws's parser of the list takes (it closes the
//  connection on an empty name, a quoted one, names apart by spaces only,
//  a name that starts with a digit, which it reads as a number)
static void
s_gate_protocol_line (pl_gate_t *self, const char *value, size_t size)
{
    upgrade_t *upgrade = &self->upgrade;
    upgrade->protocol_lines++;
    s_trim (&value, &size);
    if (size == 0) {
        upgrade->protocol_empty++;
        return;
    }
    const char *name;
    size_t length;
    while (s_list_next (&value, &size, &name, &length)) {
        bool token = length > 0 && !isdigit ((unsigned char) name [0]);
        for (size_t at = 0; at < length && token; at++)
            token = s_tchar ((unsigned char) name [at]);
        if (!token)
            upgrade->protocol_malformed = true;
        for (size_t index = 0; index < sizeof s_subprotocols / sizeof s_subprotocols [0]; index++)
            if (length == strlen (s_subprotocols [index])
            &&  memcmp (name, s_subprotocols [index], length) == 0)
                upgrade->protocol_ours = true;
    }
}

//  A header line that matters to an upgrade, noted for s_gate_judge. For
//  a header lws reads once, the first line is what it reads.
static void
s_gate_note (pl_gate_t *self, const char *name, size_t name_size, const char *value, size_t size)
{
    upgrade_t *upgrade = &self->upgrade;
    const char *trimmed = value;
    size_t length = size;
    s_trim (&trimmed, &length);
    if (s_name_is (name, name_size, "upgrade")) {
        //  lws compares what follows the leading spaces, all of it
        const char *lead = value;
        while (lead < value + size && *lead == ' ')
            lead++;
        if (upgrade->lines++ == 0)
            upgrade->exact = s_name_is (lead, (size_t) (value + size - lead), "websocket");
        if (s_list_has (trimmed, length, "websocket"))
            upgrade->websocket++;
    }
    else
    if (s_name_is (name, name_size, "connection")) {
        s_joined_add (&upgrade->connection, value, size);
        if (s_list_has (trimmed, length, "upgrade"))
            upgrade->connection_upgrade = true;
    }
    else
    if (s_name_is (name, name_size, "host") && upgrade->hosts++ == 0)
        upgrade->host_empty = length == 0;
    else
    if (s_name_is (name, name_size, "sec-websocket-key") && upgrade->keys++ == 0)
        upgrade->key_valid = s_key_valid (value, size);
    else
    if (s_name_is (name, name_size, "sec-websocket-version") && upgrade->versions++ == 0)
        upgrade->version_13 = length == strlen (WEBSOCKET_VERSION)
                           && memcmp (trimmed, WEBSOCKET_VERSION, length) == 0;
    else
    if (s_name_is (name, name_size, "sec-websocket-protocol"))
        s_gate_protocol_line (self, value, size);
    else
    if (s_name_is (name, name_size, "content-length") && !(length == 1 && *trimmed == '0'))
        upgrade->body = true;
    else
    if (s_name_is (name, name_size, "transfer-encoding"))
        upgrade->body = true;
}

//  name ":" value, the CR taken off; no folded lines, no controls but tab,
//  no more lines than http-header-lines-max (the request line is line 0)
static void
s_gate_header_line (pl_gate_t *self, const char *line, size_t length)
{
    if (self->lines > self->lines_max) {
        s_gate_refuse (self, 431, "more than %zu header lines (http-header-lines-max)",
                       self->lines_max);
        return;
    }
    size_t colon = 0;
    while (colon < length && s_tchar ((unsigned char) line [colon]))
        colon++;
    if (colon == 0 || colon == length || line [colon] != ':') {
        s_gate_refuse (self, 400, "malformed header line");
        return;
    }
    for (size_t at = colon + 1; at < length; at++) {
        unsigned char byte = (unsigned char) line [at];
        if ((byte < 0x20 && byte != '\t') || byte == 0x7f) {
            s_gate_refuse (self, 400, "control character in a header");
            return;
        }
    }
    s_gate_websocket_header (self, line, colon, line + colon + 1, length - colon - 1);
    if (self->verdict == PL_GATE_MORE)
        s_gate_note (self, line, colon, line + colon + 1, length - colon - 1);
}

//  A WebSocket upgrade that lws 4.1 would close without a word, or take
//  wrongly (a key it hashes as sent, a version it does not check): refused
//  with what is wrong
static void
s_gate_judge_websocket (pl_gate_t *self)
{
    const upgrade_t *upgrade = &self->upgrade;
    if (upgrade->lines > 1 || !upgrade->exact)
        s_gate_refuse (self, 400, "Upgrade must be websocket alone, on one line");
    else
    if (!self->get_11)
        s_gate_refuse (self, 400, "a WebSocket upgrade is an HTTP/1.1 GET");
    else
    if (!self->ws_path)
        s_gate_refuse (self, 404, "WebSocket is served on /ws only");
    else
    if (upgrade->hosts != 1 || upgrade->host_empty)
        s_gate_refuse (self, 400, "a WebSocket upgrade needs one Host line with a value");
    else
    if (upgrade->connection.bytes > PL_GATE_CONNECTION_BYTES)
        s_gate_refuse (self, 431, "Connection over %d bytes (its lines joined)",
                       PL_GATE_CONNECTION_BYTES);
    else
    if (!upgrade->connection_upgrade)
        s_gate_refuse (self, 400, "a WebSocket upgrade needs Connection: Upgrade");
    else
    if (upgrade->keys != 1 || !upgrade->key_valid)
        s_gate_refuse (self, 400, "Sec-WebSocket-Key must be one line of 24 base64 characters");
    else
    if (upgrade->versions != 1 || !upgrade->version_13)
        s_gate_refuse (self, 426, "WebSocket version " WEBSOCKET_VERSION " only (Sec-WebSocket-Version)");
    else
    if (upgrade->protocol_malformed
    ||  (upgrade->protocol_empty && upgrade->protocol_empty < upgrade->protocol_lines))
        s_gate_refuse (self, 400, "malformed Sec-WebSocket-Protocol: names (tokens) apart by commas");
    else
    if (upgrade->protocol_lines > upgrade->protocol_empty && !upgrade->protocol_ours)
        s_gate_refuse (self, 400, "no subprotocol served: offer v12.stomp, v11.stomp or v10.stomp");
}

//  The head without its Upgrade and HTTP2-Settings lines, for lws to read
//  instead of what the client sent
static void
s_gate_rewrite (pl_gate_t *self)
{
    static const char close [] = "Connection: close\r\n";
    self->rewritten = (char *) malloc (self->parsed + sizeof close);
    if (!self->rewritten) {
        s_gate_refuse (self, 503, "server out of memory, try again");
        return;
    }
    size_t size = 0;
    for (size_t at = 0; at < self->parsed; ) {
        const char *line = self->data + at;
        const char *newline = (const char *) memchr (line, '\n', self->parsed - at);
        size_t length = (size_t) (newline + 1 - line);
        const char *colon = (const char *) memchr (line, ':', length);
        size_t name = colon? (size_t) (colon - line): 0;
        //  Not the request line; header lines were checked as they came
        bool drop = at > 0 && colon
                 && (s_name_is (line, name, "upgrade") || s_name_is (line, name, "http2-settings")
                 ||  (self->file && s_name_is (line, name, "connection")));
        //  A file's request: lws closes after its answer (a 304 too)
        if (self->file && at + length == self->parsed) {
            memcpy (self->rewritten + size, close, sizeof close - 1);
            size += sizeof close - 1;
        }
        if (!drop) {
            memcpy (self->rewritten + size, line, length);
            size += length;
        }
        at += length;
    }
    self->rewritten_size = size;
}

//  A complete head's upgrade. To websocket: checked as lws will not. To
//  anything else (h2c from curl --http2, say), which the server does not
//  serve: lws would answer its HTML 403, or switch to HTTP/2 (h2c); the
//  request is served as if the upgrade had not been asked (RFC 9110 7.8
//  lets a server ignore Upgrade), from a head without those lines. lws
//  takes such a head handed to it (lws_adopt_socket_vhost_readbuf), but
//  4.1 hangs on a body that comes after it: with a body, 501.
static void
s_gate_judge (pl_gate_t *self)
{
    if (self->upgrade.websocket)
        s_gate_judge_websocket (self);
    else
    if (self->upgrade.lines && self->upgrade.body)
        s_gate_refuse (self, 501, "upgrade not served: send the request without Upgrade");
    else
    if (self->file && self->upgrade.body)
        s_gate_refuse (self, 400, "a GET of the web chat's files takes no body");
    else
    if (self->upgrade.lines || self->file)
        s_gate_rewrite (self);
}

//  Check the lines completed since the last call; an empty one ends the head
static void
s_gate_scan (pl_gate_t *self)
{
    while (self->verdict == PL_GATE_MORE) {
        const char *start = self->data + self->parsed;
        const char *newline = (const char *) memchr (start, '\n', self->size - self->parsed);
        if (!newline)
            break;
        size_t length = (size_t) (newline - start);
        if (length == 0 || start [length - 1] != '\r') {
            s_gate_refuse (self, 400, "the lines of a request head end in CRLF");
            break;
        }
        length--;
        if (self->lines == 0)
            s_gate_request_line (self, start, length);
        else
        if (length == 0)
            self->verdict = PL_GATE_PASS;
        else
            s_gate_header_line (self, start, length);
        self->lines++;
        self->parsed = (size_t) (newline + 1 - self->data);
    }
}

pl_gate_verdict_t
pl_gate_input (pl_gate_t *self, const char *data, size_t size)
{
    if (self->verdict != PL_GATE_MORE || size == 0)
        return self->verdict;
    assert (size <= pl_gate_room (self));
    if (self->size + size > self->capacity) {
        size_t capacity = self->capacity? self->capacity: FIRST_CAPACITY;
        while (capacity < self->size + size)
            capacity *= 2;
        if (capacity > self->head_max + 1)
            capacity = self->head_max + 1;
        char *grown = (char *) realloc (self->data, capacity);
        if (!grown) {
            s_gate_refuse (self, 503, "server out of memory, try again");
            return self->verdict;
        }
        self->data = grown;
        self->capacity = capacity;
    }
    memcpy (self->data + self->size, data, size);
    self->size += size;
    s_gate_scan (self);
    if (self->verdict == PL_GATE_PASS && self->parsed > self->head_max)
        s_gate_refuse (self, 431, "request head over http-request-bytes (%zu bytes)", self->head_max);
    if (self->verdict == PL_GATE_PASS)
        s_gate_judge (self);
    if (self->verdict != PL_GATE_MORE)
        return self->verdict;
    //  What the request line shows before it is complete
    if (self->lines == 0 && !s_method_possible (self->data, self->size))
        s_gate_refuse (self, 501, "method not implemented, or not an HTTP/1.1 request");
    else
    if (self->lines == 0 && self->size > self->target_max + LINE_OVERHEAD)
        s_gate_refuse (self, 414, "request target over http-url-max (%zu bytes)", self->target_max);
    else
    if (self->size > self->head_max)
        s_gate_refuse (self, 431, "request head over http-request-bytes (%zu bytes)", self->head_max);
    return self->verdict;
}

pl_gate_verdict_t
pl_gate_expire (pl_gate_t *self, int seconds)
{
    if (self->verdict == PL_GATE_MORE)
        s_gate_refuse (self, 408, "request head not received within %d s", seconds);
    return self->verdict;
}
