/*  =========================================================================
    pl_msg - the envelope between parley's actors (see proto/SPEC.md)
    =========================================================================
*/
#include "pl_msg.h"
#include "pl_log.h"
#include "pl_util.h"

#include <sys/wait.h>

//  --------------------------------------------------------------------------
//  The tables of pl_msg.h, as data

typedef enum { TYPE_u64, TYPE_i64, TYPE_u32, TYPE_string, TYPE_bytes } type_t;
static const char *s_type_names [] = { "u64", "i64", "u32", "string", "bytes" };

typedef enum {
#define S_SLOT_ENUM(slot, type) SLOT_##slot,
    PL_MSG_SLOTS (S_SLOT_ENUM)
    SLOT_LIMIT
} slot_t;

static const struct {
    const char *name;
    type_t type;
} s_slots [] = {
#define S_SLOT_ROW(slot, type) { #slot, TYPE_##type },
    PL_MSG_SLOTS (S_SLOT_ROW)
};

//  Numbers first, then the short strings, then the body: the frame layout
#define NUMBER_SLOTS SLOT_route
#define STRING_SLOTS (SLOT_body - SLOT_route)
_Static_assert (NUMBER_SLOTS == 5 && STRING_SLOTS == 9 && SLOT_body + 1 == SLOT_LIMIT,
                "the wire layout stays: five numbers, nine strings, the body");
#define S_WIDTH_u64     + 8
#define S_WIDTH_i64     + 8
#define S_WIDTH_u32     + 4
#define S_WIDTH_string
#define S_WIDTH_bytes
#define S_SLOT_WIDTH(slot, type) S_WIDTH_##type
//  Fixed part: signature 2, version 1, command 1, the numbers
#define HEADER_SIZE (2 + 1 + 1 PL_MSG_SLOTS (S_SLOT_WIDTH))
_Static_assert (HEADER_SIZE == 40, "header size");

typedef enum {
#define S_FIELD_ENUM(field, slot, type) FIELD_##field,
    PL_MSG_FIELDS (S_FIELD_ENUM)
    FIELD_LIMIT
} field_t;

static const struct {
    const char *name;
    slot_t slot;
    type_t type;
} s_fields [] = {
#define S_FIELD_ROW(field, slot, type) { #field, SLOT_##slot, TYPE_##type },
    PL_MSG_FIELDS (S_FIELD_ROW)
};

//  A named field has its slot's type
enum {
#define S_SLOT_TYPE(slot, type) SLOT_TYPE_##slot = TYPE_##type,
    PL_MSG_SLOTS (S_SLOT_TYPE)
};
#define S_FIELD_TYPE_CHECK(field, slot, type) \
    _Static_assert ((int) SLOT_TYPE_##slot == (int) TYPE_##type, #field ": not the type of slot " #slot);
PL_MSG_FIELDS (S_FIELD_TYPE_CHECK)

#define S_NO_COMMAND(command, number, path, summary)
#define S_NO_FIELD(command, field, meaning)

static const struct {
    const char *name;
    const char *path;
    const char *summary;
} s_commands [PL_MSG_COMMAND_LIMIT] = {
    [0] = { "?", "", "" },
#define S_COMMAND_ROW(command, number, path, summary) [PL_MSG_##command] = { #command, path, summary },
    PL_MSG_PROTOCOL (S_COMMAND_ROW, S_NO_FIELD)
};
//  Numbers 1, 2, 3...: as many rows as numbers below the limit (a repeated
//  number is a repeated designator, which -Woverride-init refuses)
#define S_COUNT(...) + 1
_Static_assert (0 PL_MSG_PROTOCOL (S_COUNT, S_NO_FIELD) == PL_MSG_COMMAND_LIMIT - 1,
                "command numbers run from 1 without gaps");

//  The fields of each command, in the table's order
typedef struct {
    pl_msg_command_t command;
    field_t field;
    const char *meaning;
} row_t;

static const row_t s_rows [] = {
#define S_FIELD_OF(command, field, meaning) { PL_MSG_##command, FIELD_##field, meaning },
    PL_MSG_PROTOCOL (S_NO_COMMAND, S_FIELD_OF)
};
#define ROW_COUNT (sizeof (s_rows) / sizeof (s_rows [0]))

//  Which command declares which field (a field declared twice for one
//  command is a repeated designator: -Woverride-init refuses it)
static const bool s_declares [PL_MSG_COMMAND_LIMIT][FIELD_LIMIT] = {
#define S_DECLARE(command, field, meaning) [PL_MSG_##command][FIELD_##field] = true,
    PL_MSG_PROTOCOL (S_NO_COMMAND, S_DECLARE)
};

//  --------------------------------------------------------------------------
//  The message

struct _pl_msg_t {
    pl_msg_command_t command;
    char *routing_id;
    uint64_t numbers [NUMBER_SLOTS];    //  by slot; created as two's complement
    char *strings [STRING_SLOTS];       //  by slot - SLOT_route; NULL when empty
    char *body;
    size_t body_size;
};

//  A field the message's command does not declare is a programmer error.
#ifdef NDEBUG
#   define S_CHECK(self, field) ((void) 0)
#else
#   define S_CHECK(self, field) s_check (self, FIELD_##field)

static void
s_check (const pl_msg_t *self, field_t field)
{
    assert (self);
    bool declared = s_declares [self->command][field];
    if (!declared)
        fprintf (stderr, "pl_msg: %s has no field '%s' (see proto/SPEC.md)\n",
                 s_commands [self->command].name, s_fields [field].name);
    assert (declared);
}
#endif

//  The public field numbers are the private ones (one X-macro, one order)
#define S_FIELD_SAME(field, slot, type) \
    _Static_assert ((int) FIELD_##field == (int) PL_MSG_FIELD_##field, #field);
PL_MSG_FIELDS (S_FIELD_SAME)

bool
pl_msg_declares (pl_msg_command_t command, pl_msg_field_t field)
{
    assert (command > 0 && command < PL_MSG_COMMAND_LIMIT);
    assert (field >= 0 && field < PL_MSG_FIELD_LIMIT);
    return s_declares [command][field];
}

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
        for (int index = 0; index < STRING_SLOTS; index++)
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

static const char *
s_string (const pl_msg_t *self, slot_t slot)
{
    const char *value = self->strings [slot - SLOT_route];
    return value? value: "";
}

static void
s_set_slot_string (pl_msg_t *self, slot_t slot, const char *value)
{
    s_set_string (&self->strings [slot - SLOT_route], value, value? strlen (value): 0);
}

static void
s_set_body (pl_msg_t *self, const char *data, size_t size)
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

pl_msg_t *
pl_msg_dup (const pl_msg_t *self)
{
    assert (self);
    pl_msg_t *copy = pl_msg_new (self->command);
    memcpy (copy->numbers, self->numbers, sizeof copy->numbers);
    for (int index = 0; index < STRING_SLOTS; index++)
        s_set_slot_string (copy, (slot_t) (SLOT_route + index), self->strings [index]);
    s_set_body (copy, self->body, self->body_size);
    return copy;
}

//  --------------------------------------------------------------------------
//  Encoding and decoding: every slot, whatever the command

static void
s_put (byte **cursor, uint64_t value, int bytes)
{
    for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8)
        *(*cursor)++ = (byte) (value >> shift);
}

static int
s_width (slot_t slot)
{
    return s_slots [slot].type == TYPE_u32? 4: 8;
}

//  The encoded size of self; lengths gets each string's length
static size_t
s_encoded_size (const pl_msg_t *self, size_t lengths [STRING_SLOTS])
{
    size_t size = HEADER_SIZE + 4 + self->body_size;
    for (int index = 0; index < STRING_SLOTS; index++) {
        lengths [index] = self->strings [index]? strlen (self->strings [index]): 0;
        size += 2 + lengths [index];
    }
    return size;
}

//  Write self's envelope into data, exactly size bytes (s_encoded_size)
static void
s_encode_into (const pl_msg_t *self, const size_t lengths [STRING_SLOTS], byte *data, size_t size)
{
    byte *cursor = data;
    *cursor++ = 'P';
    *cursor++ = 'L';
    *cursor++ = PL_MSG_VERSION;
    *cursor++ = (byte) self->command;
    for (int slot = 0; slot < NUMBER_SLOTS; slot++)
        s_put (&cursor, self->numbers [slot], s_width ((slot_t) slot));
    for (int index = 0; index < STRING_SLOTS; index++) {
        s_put (&cursor, lengths [index], 2);
        if (lengths [index])
            memcpy (cursor, self->strings [index], lengths [index]);
        cursor += lengths [index];
    }
    s_put (&cursor, self->body_size, 4);
    if (self->body_size)
        memcpy (cursor, self->body, self->body_size);
    cursor += self->body_size;
    assert (cursor == data + size);
    (void) size;
}

zframe_t *
pl_msg_encode (const pl_msg_t *self)
{
    assert (self);
    size_t lengths [STRING_SLOTS];
    size_t size = s_encoded_size (self, lengths);
    zframe_t *frame = zframe_new (NULL, size);
    assert (frame);
    s_encode_into (self, lengths, zframe_data (frame), size);
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
    for (int slot = 0; slot < NUMBER_SLOTS; slot++)
        s_get (&reader, (size_t) s_width ((slot_t) slot), &self->numbers [slot]);
    uint64_t value = 0;
    for (int index = 0; index < STRING_SLOTS; index++) {
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
            s_set_body (self, (const char *) reader.cursor, (size_t) value);
    }
    if (reason) {
        if (error)
            *error = reason;
        pl_msg_destroy (&self);
    }
    return self;
}

//  Turn a received zmsg into a message, or log why not.
//  One envelope off the socket, frame by frame into zmq_msg_t (no zmsg,
//  no zframe copies, no ZMQ_EVENTS query per message: that costs libzmq a
//  getpid () and a poll () each time). flags: 0 or ZMQ_DONTWAIT. NULL with
//  *malformed false: nothing waiting, or interrupted.
static pl_msg_t *
s_msg_receive (zsock_t *socket, int flags, bool *malformed)
{
    void *handle = zsock_resolve (socket);
    zmq_msg_t part;
    zmq_msg_init (&part);
    if (zmq_msg_recv (&part, handle, flags) == -1) {
        zmq_msg_close (&part);
        return NULL;
    }
    //  The rest of a multipart message is there once its first part is
    char *routing_id = NULL;
    const char *error = NULL;
    if (zsock_type (socket) == ZMQ_ROUTER) {
        routing_id = strndup ((const char *) zmq_msg_data (&part), zmq_msg_size (&part));
        if (!zmq_msg_more (&part) || zmq_msg_recv (&part, handle, 0) == -1)
            error = "missing body frame";
    }
    pl_msg_t *self = NULL;
    if (!error && zmq_msg_more (&part))
        error = "too many frames";
    else
    if (!error)
        self = pl_msg_decode ((const byte *) zmq_msg_data (&part), zmq_msg_size (&part), &error);
    //  Whatever parts are left of a malformed message
    while (zmq_msg_more (&part) && zmq_msg_recv (&part, handle, 0) != -1)
        ;
    zmq_msg_close (&part);
    if (self)
        self->routing_id = routing_id;
    else {
        pl_log_warning ("dropped malformed envelope from '%s': %s",
                        routing_id? routing_id: "peer", error? error: "?");
        free (routing_id);
        if (malformed)
            *malformed = true;
    }
    return self;
}

pl_msg_t *
pl_msg_recv (zsock_t *socket)
{
    assert (socket);
    return s_msg_receive (socket, 0, NULL);
}

pl_msg_t *
pl_msg_recv_nowait (zsock_t *socket, bool *malformed)
{
    assert (socket);
    if (malformed)
        *malformed = false;
    return s_msg_receive (socket, ZMQ_DONTWAIT, malformed);
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
    void *handle = zsock_resolve (socket);
    //  Encoded straight into the message libzmq sends: no copy between
    size_t lengths [STRING_SLOTS];
    size_t size = s_encoded_size (self, lengths);
    zmq_msg_t frame;
    if (zmq_msg_init_size (&frame, size))
        return -1;
    s_encode_into (self, lengths, (byte *) zmq_msg_data (&frame), size);
    if (zsock_type (socket) == ZMQ_ROUTER) {
        const char *target = routing_id? routing_id: self->routing_id;
        if (!target || zmq_send (handle, target, strlen (target), ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
            zmq_msg_close (&frame);
            return -1;
        }
    }
    if (zmq_msg_send (&frame, handle, ZMQ_DONTWAIT) == -1) {
        zmq_msg_close (&frame);
        return -1;
    }
    return 0;
}

int
pl_msg_send (pl_msg_t **self_p, zsock_t *socket)
{
    assert (self_p);
    int rc = pl_msg_send_copy (*self_p, socket, NULL);
    pl_msg_destroy (self_p);
    return rc;
}

//  --------------------------------------------------------------------------
//  Accessors

pl_msg_command_t
pl_msg_command (const pl_msg_t *self)
{
    return self->command;
}

const char *
pl_msg_command_name (pl_msg_command_t command)
{
    return command > 0 && command < PL_MSG_COMMAND_LIMIT? s_commands [command].name: "?";
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

//  The named fields of PL_MSG_FIELDS, each checked against the command
#define S_DEFINE_NUMBER(field, slot, ctype) \
ctype pl_msg_##field (const pl_msg_t *self) \
{ \
    S_CHECK (self, field); \
    return (ctype) self->numbers [SLOT_##slot]; \
} \
void pl_msg_set_##field (pl_msg_t *self, ctype value) \
{ \
    S_CHECK (self, field); \
    self->numbers [SLOT_##slot] = (uint64_t) value; \
}
#define S_DEFINE_u64(field, slot) S_DEFINE_NUMBER (field, slot, uint64_t)
#define S_DEFINE_i64(field, slot) S_DEFINE_NUMBER (field, slot, int64_t)
#define S_DEFINE_u32(field, slot) S_DEFINE_NUMBER (field, slot, uint32_t)
#define S_DEFINE_string(field, slot) \
const char *pl_msg_##field (const pl_msg_t *self) \
{ \
    S_CHECK (self, field); \
    return s_string (self, SLOT_##slot); \
} \
void pl_msg_set_##field (pl_msg_t *self, const char *value) \
{ \
    S_CHECK (self, field); \
    s_set_slot_string (self, SLOT_##slot, value); \
}
#define S_DEFINE_bytes(field, slot) \
const char *pl_msg_##field (const pl_msg_t *self) \
{ \
    S_CHECK (self, field); \
    return self->field? self->field: ""; \
} \
size_t pl_msg_##field##_size (const pl_msg_t *self) \
{ \
    S_CHECK (self, field); \
    return self->field##_size; \
} \
void pl_msg_set_##field (pl_msg_t *self, const char *data, size_t size) \
{ \
    S_CHECK (self, field); \
    s_set_body (self, data, size); \
}
#define S_DEFINE_FIELD(field, slot, type) S_DEFINE_##type (field, slot)
PL_MSG_FIELDS (S_DEFINE_FIELD)


void
pl_msg_print (const pl_msg_t *self, char *buffer, size_t size)
{
    assert (self);
    assert (buffer && size);
    size_t used = (size_t) snprintf (buffer, size, "%s", pl_msg_command_name (self->command));
    for (size_t index = 0; index < ROW_COUNT && used < size; index++) {
        if (s_rows [index].command != self->command)
            continue;
        const char *name = s_fields [s_rows [index].field].name;
        slot_t slot = s_fields [s_rows [index].field].slot;
        char *end = buffer + used;
        size_t room = size - used;
        int written;
        switch (s_slots [slot].type) {
            case TYPE_i64:
                written = snprintf (end, room, " %s=%" PRId64, name, (int64_t) self->numbers [slot]);
                break;
            case TYPE_u64:
            case TYPE_u32:
                written = snprintf (end, room, " %s=%" PRIu64, name, self->numbers [slot]);
                break;
            case TYPE_string:
                written = snprintf (end, room, " %s=%s", name, s_string (self, slot));
                break;
            default:
                written = snprintf (end, room, " %s=%zu bytes", name, self->body_size);
                break;
        }
        used += (size_t) written;
    }
}

//  --------------------------------------------------------------------------
//  Selftest: SPEC.md against the tables

#define SPEC_COMMANDS_MAX 64
#define SPEC_ROWS_MAX     512

//  What the spec's tables say; the strings point into the spec's text.
typedef struct {
    int index_count;
    struct {
        const char *number, *name, *path, *summary;
    } index [SPEC_COMMANDS_MAX];
    int section_count;
    struct {
        const char *name, *number;
    } sections [SPEC_COMMANDS_MAX];
    int row_count;
    struct {
        const char *command, *field, *slot, *type, *meaning;
    } rows [SPEC_ROWS_MAX];
    int errors;
    bool quiet;
} spec_t;

static void
s_spec_error (spec_t *spec, const char *format, ...)
{
    spec->errors++;
    if (spec->quiet)
        return;
    va_list args;
    va_start (args, format);
    fprintf (stderr, "SPEC.md and pl_msg.h differ: ");
    vfprintf (stderr, format, args);
    fprintf (stderr, "\n");
    va_end (args);
}

//  Split a markdown table row "| a | b |" into trimmed cells, in place.
//  Returns the number of cells.
static int
s_spec_cells (char *line, char **cells, int max)
{
    int count = 0;
    char *cursor = line + 1;
    char *bar;
    while ((bar = strchr (cursor, '|')) && count < max) {
        *bar = 0;
        while (*cursor == ' ')
            cursor++;
        char *end = bar;
        while (end > cursor && end [-1] == ' ')
            *--end = 0;
        cells [count++] = cursor;
        cursor = bar + 1;
    }
    return count;
}

static bool
s_spec_header (char **cells, int count, const char *a, const char *b, const char *c, const char *d)
{
    return count == 4 && streq (cells [0], a) && streq (cells [1], b)
        && streq (cells [2], c) && streq (cells [3], d);
}

//  Read the tables of a spec text (changed in place). Command sections are
//  headed "### NAME (number)"; their field table follows.
static void
s_spec_parse (spec_t *spec, char *text)
{
    enum { NONE, INDEX, FIELDS } table = NONE;
    const char *section = NULL;
    for (char *line = text, *next; line; line = next) {
        next = strchr (line, '\n');
        if (next)
            *next++ = 0;
        size_t length = strlen (line);
        if (length && line [length - 1] == '\r')
            line [--length] = 0;
        if (line [0] != '|')
            table = NONE;
        if (strncmp (line, "## ", 3) == 0)
            section = NULL;
        else
        if (strncmp (line, "### ", 4) == 0) {
            section = NULL;
            char *name = line + 4;
            char *open = strstr (name, " (");
            size_t name_length = strspn (name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_");
            if (open && open == name + name_length && name_length
            &&  line [length - 1] == ')' && spec->section_count < SPEC_COMMANDS_MAX) {
                *open = 0;
                line [length - 1] = 0;
                spec->sections [spec->section_count].name = name;
                spec->sections [spec->section_count++].number = open + 2;
                section = name;
            }
        }
        else
        if (line [0] == '|') {
            char *cells [8];
            int count = s_spec_cells (line, cells, 8);
            if (count && strncmp (cells [0], "---", 3) == 0)
                continue;
            if (s_spec_header (cells, count, "number", "command", "path", "summary"))
                table = INDEX;
            else
            if (s_spec_header (cells, count, "field", "slot", "type", "meaning")) {
                table = FIELDS;
                if (!section)
                    s_spec_error (spec, "a field table outside a command section");
            }
            else
            if (table == INDEX) {
                if (count != 4 || spec->index_count == SPEC_COMMANDS_MAX)
                    s_spec_error (spec, "command table row '%s' is not 4 cells", cells [0]);
                else {
                    spec->index [spec->index_count].number = cells [0];
                    spec->index [spec->index_count].name = cells [1];
                    spec->index [spec->index_count].path = cells [2];
                    spec->index [spec->index_count++].summary = cells [3];
                }
            }
            else
            if (table == FIELDS && section) {
                if (count != 4 || spec->row_count == SPEC_ROWS_MAX)
                    s_spec_error (spec, "%s: field row '%s' is not 4 cells", section, cells [0]);
                else {
                    spec->rows [spec->row_count].command = section;
                    spec->rows [spec->row_count].field = cells [0];
                    spec->rows [spec->row_count].slot = cells [1];
                    spec->rows [spec->row_count].type = cells [2];
                    spec->rows [spec->row_count++].meaning = cells [3];
                }
            }
        }
    }
}

static void
s_spec_differs (spec_t *spec, const char *where, const char *what, const char *said, const char *code)
{
    if (!streq (said, code))
        s_spec_error (spec, "%s: %s is '%s' in SPEC.md, '%s' in pl_msg.h", where, what, said, code);
}

//  The fields of one command: each spec row against the codec's row of
//  that name, every codec row in the spec, in the same order.
static void
s_spec_compare_fields (spec_t *spec, pl_msg_command_t command)
{
    const char *name = s_commands [command].name;
    int errors = spec->errors;
    int position = 0;           //  of the spec row among the command's
    bool in_order = true;
    for (int index = 0; index < spec->row_count; index++) {
        if (!streq (spec->rows [index].command, name))
            continue;
        int code_position = 0;
        size_t code = 0;
        for (; code < ROW_COUNT; code++)
            if (s_rows [code].command == command) {
                if (streq (s_fields [s_rows [code].field].name, spec->rows [index].field))
                    break;
                code_position++;
            }
        if (code == ROW_COUNT) {
            s_spec_error (spec, "%s: field %s is in SPEC.md, not in pl_msg.h", name, spec->rows [index].field);
            continue;
        }
        in_order &= code_position == position++;
        field_t field = s_rows [code].field;
        char where [64];
        snprintf (where, sizeof where, "%s field %s", name, s_fields [field].name);
        s_spec_differs (spec, where, "the slot", spec->rows [index].slot, s_slots [s_fields [field].slot].name);
        s_spec_differs (spec, where, "the type", spec->rows [index].type, s_type_names [s_fields [field].type]);
        s_spec_differs (spec, where, "the meaning", spec->rows [index].meaning, s_rows [code].meaning);
    }
    for (size_t code = 0; code < ROW_COUNT; code++) {
        if (s_rows [code].command != command)
            continue;
        field_t field = s_rows [code].field;
        int found = 0;
        for (int index = 0; index < spec->row_count; index++)
            found += streq (spec->rows [index].command, name)
                  && streq (spec->rows [index].field, s_fields [field].name);
        if (found == 0)
            s_spec_error (spec, "%s: field %s is in pl_msg.h, not in SPEC.md: | %s | %s | %s | %s |",
                          name, s_fields [field].name, s_fields [field].name,
                          s_slots [s_fields [field].slot].name, s_type_names [s_fields [field].type],
                          s_rows [code].meaning);
        else
        if (found > 1)
            s_spec_error (spec, "%s: field %s is in SPEC.md %d times", name, s_fields [field].name, found);
    }
    if (!in_order && spec->errors == errors)
        s_spec_error (spec, "%s: the fields are in another order than in pl_msg.h", name);
}

static bool
s_command_known (const char *name)
{
    for (int command = 1; command < PL_MSG_COMMAND_LIMIT; command++)
        if (streq (name, s_commands [command].name))
            return true;
    return false;
}

//  Compare the spec's tables with the codec's, both ways; count the
//  differences (printed unless quiet).
static int
s_spec_compare (const char *text, bool quiet)
{
    spec_t *spec = (spec_t *) zmalloc (sizeof (spec_t));
    assert (spec);
    spec->quiet = quiet;
    char *copy = strdup (text);
    assert (copy);
    s_spec_parse (spec, copy);

    for (int command = 1; command < PL_MSG_COMMAND_LIMIT; command++) {
        const char *name = s_commands [command].name;
        char number [8];
        snprintf (number, sizeof number, "%d", command);
        //  The command table
        int found = 0;
        for (int index = 0; index < spec->index_count; index++)
            if (streq (spec->index [index].name, name)) {
                found++;
                s_spec_differs (spec, name, "the number", spec->index [index].number, number);
                s_spec_differs (spec, name, "the path", spec->index [index].path, s_commands [command].path);
                s_spec_differs (spec, name, "the summary", spec->index [index].summary,
                                s_commands [command].summary);
            }
        if (found != 1)
            s_spec_error (spec, "%s is in the command table %d times", name, found);
        //  Its section
        found = 0;
        for (int index = 0; index < spec->section_count; index++)
            if (streq (spec->sections [index].name, name)) {
                found++;
                s_spec_differs (spec, name, "the section's number", spec->sections [index].number, number);
            }
        if (found != 1)
            s_spec_error (spec, "%s has %d sections '### %s (%d)'", name, found, name, command);
        s_spec_compare_fields (spec, (pl_msg_command_t) command);
    }
    //  What the spec names that the codec does not have
    for (int index = 0; index < spec->index_count; index++)
        if (!s_command_known (spec->index [index].name))
            s_spec_error (spec, "the command table names %s, which pl_msg.h has not",
                          spec->index [index].name);
    for (int index = 0; index < spec->section_count; index++)
        if (!s_command_known (spec->sections [index].name))
            s_spec_error (spec, "a section for %s, which pl_msg.h has not", spec->sections [index].name);
    int errors = spec->errors;
    free (copy);
    free (spec);
    return errors;
}

static char *
s_read_file (const char *path)
{
    FILE *file = fopen (path, "rb");
    if (!file)
        return NULL;
    pl_buf_t buffer;
    pl_buf_init (&buffer);
    char chunk [4096];
    size_t size;
    while ((size = fread (chunk, 1, sizeof chunk, file)) > 0)
        pl_buf_append (&buffer, chunk, size);
    fclose (file);
    pl_buf_append (&buffer, "", 1);
    return buffer.data;
}

//  The text with the first occurrence of from replaced by to.
static char *
s_replaced (const char *text, const char *from, const char *to)
{
    const char *at = strstr (text, from);
    pl_check (at);
    char *result = (char *) malloc (strlen (text) - strlen (from) + strlen (to) + 1);
    assert (result);
    memcpy (result, text, (size_t) (at - text));
    strcpy (result + (at - text), to);
    strcat (result, at + strlen (from));
    return result;
}

//  The spec with one change does not match
static void
s_test_spec_drift (const char *text, const char *from, const char *to)
{
    char *changed = s_replaced (text, from, to);
    pl_check (s_spec_compare (changed, true) > 0);
    free (changed);
}

#ifndef NDEBUG
//  Whether using this field on a message of this command aborts
static bool
s_test_aborts (pl_msg_command_t command, void (*use) (pl_msg_t *))
{
    pid_t child = fork ();
    pl_check (child >= 0);
    if (child == 0) {
        if (!freopen ("/dev/null", "w", stderr))
            _exit (2);
        pl_msg_t *message = pl_msg_new (command);
        use (message);
        _exit (0);
    }
    int status = 0;
    pl_check (waitpid (child, &status, 0) == child);
    return WIFSIGNALED (status) && WTERMSIG (status) == SIGABRT;
}

static void s_use_limit (pl_msg_t *message) { pl_msg_limit (message); }
static void s_use_set_readiness (pl_msg_t *message) { pl_msg_set_readiness (message, 1); }
static void s_use_room (pl_msg_t *message) { pl_msg_room (message); }
static void s_use_body (pl_msg_t *message) { pl_msg_set_body (message, "x", 1); }
#endif

void
pl_msg_test (bool verbose)
{
    if (verbose)
        printf (" * pl_msg: ");

    //  The tables hang together: numbers 1, 2, 3... with a name each, every
    //  field in some command, no '|' in a cell
    for (int command = 1; command < PL_MSG_COMMAND_LIMIT; command++)
        pl_check (s_commands [command].name && s_commands [command].path && s_commands [command].summary);
    for (int field = 0; field < FIELD_LIMIT; field++) {
        bool used = false;
        for (int command = 1; command < PL_MSG_COMMAND_LIMIT; command++)
            used |= s_declares [command][field];
        pl_check (used);
    }
    for (size_t index = 0; index < ROW_COUNT; index++)
        pl_check (!strchr (s_rows [index].meaning, '|'));
    for (size_t index = 1; index < ROW_COUNT; index++)
        pl_check (s_rows [index].command >= s_rows [index - 1].command);

    //  SPEC.md says what the tables say, and a spec that drifts is caught.
    //  The source tree: PARLEY_SOURCE_DIR from the environment, else as built
    const char *source_dir = getenv ("PARLEY_SOURCE_DIR");
#ifdef PARLEY_SOURCE_DIR
    if (!source_dir)
        source_dir = PARLEY_SOURCE_DIR;
#endif
    if (!source_dir)
        fprintf (stderr, "pl_msg: set PARLEY_SOURCE_DIR to the source tree, to check proto/SPEC.md\n");
    pl_check (source_dir);
    char path [PATH_MAX];
    snprintf (path, sizeof path, "%s/proto/SPEC.md", source_dir);
    char *spec = s_read_file (path);
    if (!spec)
        fprintf (stderr, "pl_msg: cannot read %s\n", path);
    pl_check (spec);
    pl_check (s_spec_compare (spec, false) == 0);
    s_test_spec_drift (spec, "| limit | status | u32 |", "| limit | seq | u32 |");
    s_test_spec_drift (spec, "| before | seq | u64 |", "| before | seq | u32 |");
    s_test_spec_drift (spec, "| target_user |", "| target |");
    s_test_spec_drift (spec, "| 3 | RESYNC | router → conn |", "| 3 | RESYNC | router → bridge |");
    s_test_spec_drift (spec, "### RESYNC (3)", "### RESYNC (4)");
    s_test_spec_drift (spec, "### PERSISTED (11)", "### PERSISTED_ALL (11)");
    s_test_spec_drift (spec, "| field | slot | type | meaning |\n|---|---|---|---|\n",
                       "| field | slot | type | meaning |\n|---|---|---|---|\n| bogus | body | bytes | x |\n");
    s_test_spec_drift (spec, "| corr | corr | u64 | chosen by the conn, echoed in the RESULT |\n"
                             "| session | session | u64 | the subscriber's session, echoed in the RESULT |\n",
                       "| session | session | u64 | the subscriber's session, echoed in the RESULT |\n"
                       "| corr | corr | u64 | chosen by the conn, echoed in the RESULT |\n");
    s_test_spec_drift (spec, "| room | room | string | the room |\n", "");     //  JOIN's only field
    free (spec);

    //  Accessors check the command's fields; a slot may carry two names
    pl_msg_t *message = pl_msg_new (PL_MSG_QUERY);
    pl_msg_set_before (message, 7);
    pl_check (pl_msg_after (message) == 7);             //  one slot, two names
    pl_msg_set_limit (message, 50);
    pl_msg_set_operation (message, "room.messages");
    pl_msg_set_target_user (message, "u2");
    pl_msg_set_caller_name (message, "Alice");
    char line [256];
    pl_msg_print (message, line, sizeof line);
    pl_check (streq (line, "QUERY corr=0 session=0 route= operation=room.messages user= caller_name=Alice"
                           " room= target_user=u2 before=7 after=7 limit=50 body=0 bytes"));
    pl_msg_print (message, line, 20);
    pl_check (streq (line, "QUERY corr=0 sessio"));
    pl_msg_destroy (&message);
#ifndef NDEBUG
    pl_check (s_test_aborts (PL_MSG_SEND, s_use_limit));
    pl_check (s_test_aborts (PL_MSG_HELLO, s_use_set_readiness));
    pl_check (s_test_aborts (PL_MSG_PING, s_use_room));
    pl_check (s_test_aborts (PL_MSG_RESYNC, s_use_body));
    pl_check (!s_test_aborts (PL_MSG_QUERY, s_use_limit));
    pl_check (!s_test_aborts (PL_MSG_PING, s_use_set_readiness));
#endif

    //  Round trip of every slot through encode and decode
    message = pl_msg_new (PL_MSG_SEND);
    message->numbers [SLOT_session] = 0x0102030405060708ULL;
    message->numbers [SLOT_corr] = 42;
    message->numbers [SLOT_seq] = UINT64_MAX;
    message->numbers [SLOT_created] = (uint64_t) (int64_t) -5;
    message->numbers [SLOT_status] = 403;
    size_t expected = HEADER_SIZE + STRING_SLOTS * 2 + 4 + 8;
    for (int slot = SLOT_room; slot < SLOT_body; slot++) {
        char value [32];
        snprintf (value, sizeof value, "%s-%d \xc3\xa9", s_slots [slot].name, slot);
        s_set_slot_string (message, (slot_t) slot, value);
        expected += strlen (value);
    }
    pl_msg_set_body (message, "hi\0there", 8);
    zframe_t *frame = pl_msg_encode (message);
    pl_check (zframe_size (frame) == expected);
    pl_msg_t *copy = pl_msg_decode (zframe_data (frame), zframe_size (frame), NULL);
    pl_check (copy);
    pl_check (pl_msg_command (copy) == PL_MSG_SEND);
    pl_check (memcmp (copy->numbers, message->numbers, sizeof copy->numbers) == 0);
    for (int slot = SLOT_route; slot < SLOT_body; slot++)
        pl_check (streq (s_string (copy, (slot_t) slot), s_string (message, (slot_t) slot)));
    pl_check (streq (pl_msg_route (copy), ""));
    pl_check (streq (pl_msg_sender_name (copy), "name-8 \xc3\xa9"));
    pl_check (streq (pl_msg_type (copy), "kind-9 \xc3\xa9"));
    pl_check (pl_msg_session (copy) == 0x0102030405060708ULL && pl_msg_corr (copy) == 42);
    pl_check (pl_msg_body_size (copy) == 8 && memcmp (pl_msg_body (copy), "hi\0there", 8) == 0);
    pl_msg_t *dup = pl_msg_dup (copy);
    pl_check (memcmp (dup->numbers, message->numbers, sizeof dup->numbers) == 0);
    pl_check (streq (pl_msg_cmid (dup), "cmid-13 \xc3\xa9") && pl_msg_body_size (dup) == 8);
    pl_msg_destroy (&dup);
    pl_msg_destroy (&copy);
    //  created keeps its sign, status its 32 bits
    copy = pl_msg_new (PL_MSG_PERSIST);
    pl_msg_set_created (copy, -5);
    pl_check (pl_msg_created (copy) == -5);
    pl_msg_destroy (&copy);

    //  Every truncation of a valid frame is refused, never read past its end
    const byte *data = zframe_data (frame);
    size_t size = zframe_size (frame);
    for (size_t cut = 0; cut < size; cut++) {
        const char *error = NULL;
        pl_check (pl_msg_decode (data, cut, &error) == NULL);
        pl_check (error);
    }
    //  Foreign signature, other version, unknown command, trailing bytes
    byte *bad = (byte *) malloc (size + 1);
    memcpy (bad, data, size);
    bad [0] = 'X';
    pl_check (pl_msg_decode (bad, size, NULL) == NULL);
    memcpy (bad, data, size);
    bad [2] = PL_MSG_VERSION + 1;
    const char *error = NULL;
    pl_check (pl_msg_decode (bad, size, &error) == NULL);
    pl_check (streq (error, "unsupported envelope version"));
    memcpy (bad, data, size);
    bad [3] = PL_MSG_COMMAND_LIMIT;
    pl_check (pl_msg_decode (bad, size, NULL) == NULL);
    memcpy (bad, data, size);
    bad [size] = 0;
    pl_check (pl_msg_decode (bad, size + 1, NULL) == NULL);
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
    pl_check (zsock_connect (dealer, "inproc://pl_msg_test") == 0);
    pl_check (pl_msg_send (&message, dealer) == 0);
    pl_check (message == NULL);
    pl_msg_t *received = pl_msg_recv (router);
    pl_check (received);
    pl_check (streq (pl_msg_routing_id (received), "conn-0"));
    pl_msg_t *result = pl_msg_new (PL_MSG_RESULT);
    pl_msg_set_routing_id (result, pl_msg_routing_id (received));
    pl_msg_set_corr (result, pl_msg_corr (received));
    pl_msg_set_status (result, 200);
    pl_msg_destroy (&received);
    pl_check (pl_msg_send (&result, router) == 0);
    received = pl_msg_recv (dealer);
    pl_check (received && pl_msg_status (received) == 200 && pl_msg_corr (received) == 42);
    pl_msg_destroy (&received);

    zstr_send (dealer, "garbage");
    pl_msg_t *hello = pl_msg_new (PL_MSG_HELLO);
    pl_msg_set_role (hello, "conn");
    pl_msg_send (&hello, dealer);
    bool malformed = false;
    zpoller_t *poller = zpoller_new (router, NULL);
    zpoller_wait (poller, 1000);
    pl_msg_t *first = pl_msg_recv_nowait (router, &malformed);
    pl_check (first == NULL && malformed);
    zpoller_wait (poller, 1000);
    pl_msg_t *second = pl_msg_recv_nowait (router, &malformed);
    pl_check (second && pl_msg_command (second) == PL_MSG_HELLO && !malformed);
    pl_check (streq (pl_msg_role (second), "conn"));
    pl_msg_destroy (&second);
    zpoller_destroy (&poller);
    zsock_destroy (&dealer);
    zsock_destroy (&router);
    if (verbose)
        printf ("OK\n");
}
