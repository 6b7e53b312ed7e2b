/*  =========================================================================
    pl_msg - the envelope between parley's actors (see proto/SPEC.md)
    =========================================================================
*/
#include "pl_msg.h"
#include "pl_log.h"

#define STRING_FIELD_COUNT 9

struct _pl_msg_t {
    pl_msg_command_t command;
    char *routing_id;
    uint64_t session;
    uint64_t corr;
    uint64_t seq;
    int64_t created;
    uint32_t status;
    //  Short strings in wire order, see PL_MSG_STRING_FIELDS
    char *strings [STRING_FIELD_COUNT];
    char *body;
    size_t body_size;
};

enum {
#define PL_MSG_INDEX(field) INDEX_##field,
    PL_MSG_STRING_FIELDS (PL_MSG_INDEX)
    INDEX_LIMIT
};
_Static_assert (INDEX_LIMIT == STRING_FIELD_COUNT, "string field count");

static const char *s_command_names [] = {
    "?", "HELLO", "PING", "RESYNC", "JOIN", "LEAVE", "AUTHZ", "SEND", "RESULT",
    "DELIVER", "PERSIST", "PERSISTED", "QUERY", "ROOM_CHANGED", "REPLAY"
};
_Static_assert (sizeof (s_command_names) / sizeof (s_command_names [0]) == PL_MSG_COMMAND_LIMIT,
                "command names");

//  Fixed part: signature 2, version 1, command 1, four u64, one u32
#define HEADER_SIZE (2 + 1 + 1 + 8 * 4 + 4)

pl_msg_t *
pl_msg_new (pl_msg_command_t command)
{
    assert (command > 0 && command < PL_MSG_COMMAND_LIMIT);
    pl_msg_t *self = (pl_msg_t *) zmalloc (sizeof (pl_msg_t));
    assert (self);
    self->command = command;
    return self;
}

void
pl_msg_destroy (pl_msg_t **self_p)
{
    assert (self_p);
    pl_msg_t *self = *self_p;
    if (self) {
        free (self->routing_id);
        for (int index = 0; index < STRING_FIELD_COUNT; index++)
            free (self->strings [index]);
        free (self->body);
        free (self);
        *self_p = NULL;
    }
}

static void
s_set_string (char **field, const char *value, size_t length)
{
    free (*field);
    *field = NULL;
    if (value && length) {
        if (length > PL_MSG_STRING_MAX)
            length = PL_MSG_STRING_MAX;
        *field = (char *) malloc (length + 1);
        assert (*field);
        memcpy (*field, value, length);
        (*field) [length] = 0;
    }
}

pl_msg_t *
pl_msg_dup (const pl_msg_t *self)
{
    assert (self);
    pl_msg_t *copy = pl_msg_new (self->command);
    copy->session = self->session;
    copy->corr = self->corr;
    copy->seq = self->seq;
    copy->created = self->created;
    copy->status = self->status;
    for (int index = 0; index < STRING_FIELD_COUNT; index++)
        if (self->strings [index])
            s_set_string (&copy->strings [index], self->strings [index], strlen (self->strings [index]));
    pl_msg_set_body (copy, self->body, self->body_size);
    return copy;
}

static void
s_put_u64 (byte **cursor, uint64_t value)
{
    for (int shift = 56; shift >= 0; shift -= 8)
        *(*cursor)++ = (byte) (value >> shift);
}

static void
s_put_u32 (byte **cursor, uint32_t value)
{
    for (int shift = 24; shift >= 0; shift -= 8)
        *(*cursor)++ = (byte) (value >> shift);
}

zframe_t *
pl_msg_encode (const pl_msg_t *self)
{
    assert (self);
    size_t size = HEADER_SIZE + 4 + self->body_size;
    size_t lengths [STRING_FIELD_COUNT];
    for (int index = 0; index < STRING_FIELD_COUNT; index++) {
        lengths [index] = self->strings [index]? strlen (self->strings [index]): 0;
        size += 2 + lengths [index];
    }
    zframe_t *frame = zframe_new (NULL, size);
    assert (frame);
    byte *cursor = zframe_data (frame);
    *cursor++ = 'P';
    *cursor++ = 'L';
    *cursor++ = PL_MSG_VERSION;
    *cursor++ = (byte) self->command;
    s_put_u64 (&cursor, self->session);
    s_put_u64 (&cursor, self->corr);
    s_put_u64 (&cursor, self->seq);
    s_put_u64 (&cursor, (uint64_t) self->created);
    s_put_u32 (&cursor, self->status);
    for (int index = 0; index < STRING_FIELD_COUNT; index++) {
        *cursor++ = (byte) (lengths [index] >> 8);
        *cursor++ = (byte) lengths [index];
        if (lengths [index])
            memcpy (cursor, self->strings [index], lengths [index]);
        cursor += lengths [index];
    }
    s_put_u32 (&cursor, (uint32_t) self->body_size);
    if (self->body_size)
        memcpy (cursor, self->body, self->body_size);
    cursor += self->body_size;
    assert (cursor == zframe_data (frame) + size);
    return frame;
}

typedef struct {
    const byte *cursor;
    const byte *limit;
} reader_t;

static int
s_get (reader_t *reader, size_t bytes, uint64_t *value)
{
    if ((size_t) (reader->limit - reader->cursor) < bytes)
        return -1;
    *value = 0;
    for (size_t index = 0; index < bytes; index++)
        *value = (*value << 8) | *reader->cursor++;
    return 0;
}

pl_msg_t *
pl_msg_decode (const byte *data, size_t size, const char **error)
{
    const char *reason = NULL;
    reader_t reader = { data, data + size };
    if (size < HEADER_SIZE || data [0] != 'P' || data [1] != 'L')
        reason = "not a parley envelope";
    else
    if (data [2] != PL_MSG_VERSION)
        reason = "unsupported envelope version";
    else
    if (data [3] == 0 || data [3] >= PL_MSG_COMMAND_LIMIT)
        reason = "unknown command";
    if (reason) {
        if (error)
            *error = reason;
        return NULL;
    }
    reader.cursor += 4;
    pl_msg_t *self = pl_msg_new ((pl_msg_command_t) data [3]);
    uint64_t value = 0;
    s_get (&reader, 8, &self->session);
    s_get (&reader, 8, &self->corr);
    s_get (&reader, 8, &self->seq);
    s_get (&reader, 8, &value);
    self->created = (int64_t) value;
    s_get (&reader, 4, &value);
    self->status = (uint32_t) value;
    for (int index = 0; index < STRING_FIELD_COUNT; index++) {
        if (s_get (&reader, 2, &value)
        ||  (uint64_t) (reader.limit - reader.cursor) < value) {
            reason = "string field overruns the frame";
            break;
        }
        s_set_string (&self->strings [index], (const char *) reader.cursor, (size_t) value);
        if (value && memchr (reader.cursor, 0, (size_t) value)) {
            reason = "string field holds a NUL";
            break;
        }
        reader.cursor += value;
    }
    if (!reason) {
        if (s_get (&reader, 4, &value) || value > PL_MSG_BODY_MAX
        ||  (uint64_t) (reader.limit - reader.cursor) != value)
            reason = "body length does not match the frame";
        else
            pl_msg_set_body (self, (const char *) reader.cursor, (size_t) value);
    }
    if (reason) {
        if (error)
            *error = reason;
        pl_msg_destroy (&self);
    }
    return self;
}

//  Turn a received zmsg into a message, or log why not.
static pl_msg_t *
s_msg_from_zmsg (zsock_t *socket, zmsg_t *zmsg)
{
    char *routing_id = NULL;
    if (zsock_type (socket) == ZMQ_ROUTER) {
        zframe_t *identity = zmsg_pop (zmsg);
        if (identity)
            routing_id = zframe_strdup (identity);
        zframe_destroy (&identity);
    }
    zframe_t *frame = zmsg_pop (zmsg);
    const char *error = "missing body frame";
    pl_msg_t *self = NULL;
    if (frame && zmsg_size (zmsg) == 0)
        self = pl_msg_decode (zframe_data (frame), zframe_size (frame), &error);
    else
    if (frame)
        error = "too many frames";
    if (self)
        self->routing_id = routing_id;
    else {
        pl_log_warning ("dropped malformed envelope from '%s': %s",
                        routing_id? routing_id: "peer", error);
        free (routing_id);
    }
    zframe_destroy (&frame);
    zmsg_destroy (&zmsg);
    return self;
}

pl_msg_t *
pl_msg_recv (zsock_t *socket)
{
    assert (socket);
    zmsg_t *zmsg = zmsg_recv (socket);
    if (!zmsg)
        return NULL;
    return s_msg_from_zmsg (socket, zmsg);
}

pl_msg_t *
pl_msg_recv_nowait (zsock_t *socket, bool *malformed)
{
    assert (socket);
    if (malformed)
        *malformed = false;
    if (!(zsock_events (socket) & ZMQ_POLLIN))
        return NULL;
    zmsg_t *zmsg = zmsg_recv (socket);
    if (!zmsg)
        return NULL;
    pl_msg_t *self = s_msg_from_zmsg (socket, zmsg);
    if (!self && malformed)
        *malformed = true;
    return self;
}

pl_msg_t *
pl_msg_recv_command (zsock_t *socket, pl_msg_command_t command)
{
    for (;;) {
        pl_msg_t *message = pl_msg_recv (socket);
        if (!message || pl_msg_command (message) == command)
            return message;
        pl_msg_destroy (&message);
    }
}

int
pl_msg_send_copy (pl_msg_t *self, zsock_t *socket, const char *routing_id)
{
    assert (self);
    assert (socket);
    zframe_t *frame = pl_msg_encode (self);
    void *handle = zsock_resolve (socket);
    if (zsock_type (socket) == ZMQ_ROUTER) {
        const char *target = routing_id? routing_id: self->routing_id;
        if (!target || zmq_send (handle, target, strlen (target), ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
            zframe_destroy (&frame);
            return -1;
        }
    }
    int rc = zmq_send (handle, zframe_data (frame), zframe_size (frame), ZMQ_DONTWAIT);
    zframe_destroy (&frame);
    return rc == -1? -1: 0;
}

int
pl_msg_send (pl_msg_t **self_p, zsock_t *socket)
{
    assert (self_p);
    int rc = pl_msg_send_copy (*self_p, socket, NULL);
    pl_msg_destroy (self_p);
    return rc;
}

pl_msg_command_t
pl_msg_command (const pl_msg_t *self)
{
    return self->command;
}

const char *
pl_msg_command_name (pl_msg_command_t command)
{
    return command > 0 && command < PL_MSG_COMMAND_LIMIT? s_command_names [command]: "?";
}

const char *
pl_msg_routing_id (const pl_msg_t *self)
{
    return self->routing_id? self->routing_id: "";
}

void
pl_msg_set_routing_id (pl_msg_t *self, const char *routing_id)
{
    s_set_string (&self->routing_id, routing_id, routing_id? strlen (routing_id): 0);
}

#define PL_MSG_NUMBER(type, field) \
type pl_msg_##field (const pl_msg_t *self) { return self->field; } \
void pl_msg_set_##field (pl_msg_t *self, type value) { self->field = value; }

PL_MSG_NUMBER (uint64_t, session)
PL_MSG_NUMBER (uint64_t, corr)
PL_MSG_NUMBER (uint64_t, seq)
PL_MSG_NUMBER (int64_t, created)
PL_MSG_NUMBER (uint32_t, status)

#define PL_MSG_DEFINE_STRING(field) \
const char *pl_msg_##field (const pl_msg_t *self) \
{ \
    return self->strings [INDEX_##field]? self->strings [INDEX_##field]: ""; \
} \
void pl_msg_set_##field (pl_msg_t *self, const char *value) \
{ \
    s_set_string (&self->strings [INDEX_##field], value, value? strlen (value): 0); \
}
PL_MSG_STRING_FIELDS (PL_MSG_DEFINE_STRING)

const char *
pl_msg_body (const pl_msg_t *self)
{
    return self->body? self->body: "";
}

size_t
pl_msg_body_size (const pl_msg_t *self)
{
    return self->body_size;
}

void
pl_msg_set_body (pl_msg_t *self, const char *data, size_t size)
{
    free (self->body);
    self->body = NULL;
    self->body_size = 0;
    if (data && size) {
        self->body = (char *) malloc (size + 1);
        assert (self->body);
        memcpy (self->body, data, size);
        self->body [size] = 0;
        self->body_size = size;
    }
}

void
pl_msg_print (const pl_msg_t *self, char *buffer, size_t size)
{
    snprintf (buffer, size, "%s session=%" PRIu64 " corr=%" PRIu64 " seq=%" PRIu64
              " status=%u room=%s user=%s kind=%s route=%s body=%zu bytes",
              pl_msg_command_name (self->command), self->session, self->corr, self->seq,
              self->status, pl_msg_room (self), pl_msg_user (self), pl_msg_kind (self),
              pl_msg_route (self), self->body_size);
}

void
pl_msg_test (bool verbose)
{
    if (verbose)
        printf (" * pl_msg: ");

    //  Round trip of every field through encode and decode
    pl_msg_t *message = pl_msg_new (PL_MSG_SEND);
    pl_msg_set_session (message, 0x0102030405060708ULL);
    pl_msg_set_corr (message, 42);
    pl_msg_set_seq (message, UINT64_MAX);
    pl_msg_set_created (message, -5);
    pl_msg_set_status (message, 403);
    pl_msg_set_room (message, "room-1");
    pl_msg_set_user (message, "u1");
    pl_msg_set_name (message, "Alice \xc3\xa9");
    pl_msg_set_kind (message, "TALK");
    pl_msg_set_cmid (message, "c-1");
    pl_msg_set_body (message, "hi\0there", 8);
    zframe_t *frame = pl_msg_encode (message);
    pl_msg_t *copy = pl_msg_decode (zframe_data (frame), zframe_size (frame), NULL);
    assert (copy);
    assert (pl_msg_command (copy) == PL_MSG_SEND);
    assert (pl_msg_session (copy) == 0x0102030405060708ULL);
    assert (pl_msg_corr (copy) == 42);
    assert (pl_msg_seq (copy) == UINT64_MAX);
    assert (pl_msg_created (copy) == -5);
    assert (pl_msg_status (copy) == 403);
    assert (streq (pl_msg_room (copy), "room-1"));
    assert (streq (pl_msg_name (copy), "Alice \xc3\xa9"));
    assert (streq (pl_msg_route (copy), ""));
    assert (streq (pl_msg_cmid (copy), "c-1"));
    assert (pl_msg_body_size (copy) == 8 && memcmp (pl_msg_body (copy), "hi\0there", 8) == 0);
    pl_msg_t *dup = pl_msg_dup (copy);
    assert (streq (pl_msg_kind (dup), "TALK") && pl_msg_body_size (dup) == 8);
    pl_msg_destroy (&dup);
    pl_msg_destroy (&copy);

    //  Every truncation of a valid frame is refused, never read past its end
    const byte *data = zframe_data (frame);
    size_t size = zframe_size (frame);
    for (size_t cut = 0; cut < size; cut++) {
        const char *error = NULL;
        assert (pl_msg_decode (data, cut, &error) == NULL);
        assert (error);
    }
    //  Foreign signature, other version, unknown command, trailing bytes
    byte *bad = (byte *) malloc (size + 1);
    memcpy (bad, data, size);
    bad [0] = 'X';
    assert (pl_msg_decode (bad, size, NULL) == NULL);
    memcpy (bad, data, size);
    bad [2] = PL_MSG_VERSION + 1;
    const char *error = NULL;
    assert (pl_msg_decode (bad, size, &error) == NULL);
    assert (streq (error, "unsupported envelope version"));
    memcpy (bad, data, size);
    bad [3] = PL_MSG_COMMAND_LIMIT;
    assert (pl_msg_decode (bad, size, NULL) == NULL);
    memcpy (bad, data, size);
    bad [size] = 0;
    assert (pl_msg_decode (bad, size + 1, NULL) == NULL);
    //  Random bytes after a valid header never crash the decoder
    for (int round = 0; round < 2000; round++) {
        memcpy (bad, data, size);
        for (int flip = 0; flip < 4; flip++)
            bad [4 + randof ((int) size - 4)] = (byte) randof (256);
        pl_msg_t *maybe = pl_msg_decode (bad, size, NULL);
        pl_msg_destroy (&maybe);
    }
    free (bad);
    zframe_destroy (&frame);

    //  Over real sockets: DEALER to ROUTER keeps the routing id for replies,
    //  and a malformed envelope is dropped while the next one gets through
    zsock_t *router = zsock_new_router ("inproc://pl_msg_test");
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zsock_set_identity (dealer, "conn-0");
    assert (zsock_connect (dealer, "inproc://pl_msg_test") == 0);
    assert (pl_msg_send (&message, dealer) == 0);
    assert (message == NULL);
    pl_msg_t *received = pl_msg_recv (router);
    assert (received);
    assert (streq (pl_msg_routing_id (received), "conn-0"));
    pl_msg_set_status (received, 200);
    assert (pl_msg_send (&received, router) == 0);
    received = pl_msg_recv (dealer);
    assert (received && pl_msg_status (received) == 200);
    pl_msg_destroy (&received);

    zstr_send (dealer, "garbage");
    pl_msg_t *hello = pl_msg_new (PL_MSG_HELLO);
    pl_msg_set_kind (hello, "conn");
    pl_msg_send (&hello, dealer);
    bool malformed = false;
    zpoller_t *poller = zpoller_new (router, NULL);
    zpoller_wait (poller, 1000);
    pl_msg_t *first = pl_msg_recv_nowait (router, &malformed);
    assert (first == NULL && malformed);
    zpoller_wait (poller, 1000);
    pl_msg_t *second = pl_msg_recv_nowait (router, &malformed);
    assert (second && pl_msg_command (second) == PL_MSG_HELLO && !malformed);
    pl_msg_destroy (&second);
    zpoller_destroy (&poller);
    zsock_destroy (&dealer);
    zsock_destroy (&router);
    if (verbose)
        printf ("OK\n");
}
