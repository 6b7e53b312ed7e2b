/*  =========================================================================
    pl_gate - the first request head of a new connection, checked before
    libwebsockets sees it
    =========================================================================
*/
#include "pl_gate.h"
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
    const char *upgrade = status == 426?
        "upgrade: websocket\r\nsec-websocket-version: " WEBSOCKET_VERSION "\r\n": "";
    const char *connection = status == 426? "upgrade, close": "close";
    int body = (int) strlen (message) + (int) strlen ("{\"error\":\"\"}");
    int size = snprintf (self->answer, sizeof self->answer,
        "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        "access-control-allow-origin: *\r\n%sconnection: %s\r\n\r\n{\"error\":\"%s\"}",
        status, reason, body, upgrade, connection, message);
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
    self->rewritten = (char *) malloc (self->parsed);
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
                 && (s_name_is (line, name, "upgrade") || s_name_is (line, name, "http2-settings"));
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
    if (self->upgrade.lines)
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
        "HEAD / HTTP/1.1\r\n\r\n", "PUT / HTTP/1.1\r\n\r\n", "PATCH / HTTP/1.1\r\n\r\n",
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
    s_test_rewrite ("GET / HTTP/1.1\r\nupgrade: foo\r\nUPGRADE: bar, baz\r\n\r\n", 0, "GET / HTTP/1.1\r\n\r\n");
    s_test_rewrite ("GET / HTTP/1.1\r\nUpgrade:\r\nX-Upgrade: 1\r\n\r\n", 0, "GET / HTTP/1.1\r\nX-Upgrade: 1\r\n\r\n");
    s_test_rewrite ("GET /ws HTTP/1.1\r\nUpgrade: websocket/13\r\nContent-Length: 0\r\n\r\n", 0,
                    "GET /ws HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    //  No Upgrade: lws reads the head as sent
    s_test_rewrite ("GET / HTTP/1.1\r\nHTTP2-Settings: AAMA\r\n\r\nmore", 4, NULL);
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
