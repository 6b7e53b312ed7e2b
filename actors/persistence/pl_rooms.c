/*  =========================================================================
    pl_rooms - room rules: what a request may ask, who may do what, answers

    No MongoDB here: the selftest drives every rule without a server.
    =========================================================================
*/
#include "pl_rooms.h"
#include "pl_log.h"
#include "pl_util.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _pl_rooms_t {
    int max_members;            //  of a group, counting its creator
    int max_name_chars;         //  of a group's name
    int max_rooms_per_user;     //  rooms one user may be in
    int history_limit;          //  largest page of history or resume
    unsigned char *id_key;      //  HMAC key of direct room ids
    size_t id_key_size;
};

//  The label of a key derived from jwt-secret: another use of the secret
//  must never meet the same HMAC input
#define ROOM_ID_KEY_LABEL "parley direct room ids v1"


//  --------------------------------------------------------------------------
//  Create and destroy

//  The key of direct room ids: room-id-secret, else one derived from
//  jwt-secret with a label. Every host must derive the same ids, so a
//  random key would split a pair's room: with neither secret, no start.
static int
s_id_key (pl_rooms_t *self, const pl_config_t *config)
{
    const char *secret = config->room_id_secret;
    if (secret && *secret) {
        //  HMAC takes a key of any length (a long one is hashed first)
        self->id_key = (unsigned char *) strdup (secret);
        self->id_key_size = strlen (secret);
        return self->id_key? 0: -1;
    }
    secret = config->jwt_secret;
    if (!secret || !*secret) {
        pl_log_error ("room-id-secret is empty and there is no jwt-secret to derive it from: "
                      "set room-id-secret (the same on every host)");
        return -1;
    }
    unsigned int size = 0;
    self->id_key = (unsigned char *) malloc (EVP_MAX_MD_SIZE);
    if (!self->id_key
    ||  !HMAC (EVP_sha256 (), secret, (int) strlen (secret), (const unsigned char *) ROOM_ID_KEY_LABEL,
               strlen (ROOM_ID_KEY_LABEL), self->id_key, &size))
        return -1;
    self->id_key_size = size;
    return 0;
}

pl_rooms_t *
pl_rooms_new (const pl_config_t *config)
{
    assert (config);
    pl_rooms_t *self = (pl_rooms_t *) calloc (1, sizeof (pl_rooms_t));
    if (!self)
        return NULL;
    self->max_members = config->max_room_members;
    self->max_name_chars = config->max_room_name_chars;
    self->max_rooms_per_user = config->max_rooms_per_user;
    self->history_limit = config->history_limit;
    if (s_id_key (self, config))
        pl_rooms_destroy (&self);
    return self;
}

void
pl_rooms_destroy (pl_rooms_t **self_p)
{
    assert (self_p);
    pl_rooms_t *self = *self_p;
    if (self) {
        if (self->id_key)
            OPENSSL_cleanse (self->id_key, self->id_key_size);
        free (self->id_key);
        free (self);
        *self_p = NULL;
    }
}


//  --------------------------------------------------------------------------
//  The room model

int
pl_rooms_member_push (pl_room_t *room, const char *user)
{
    assert (room && user);
    if (room->member_count == room->member_capacity) {
        size_t capacity = room->member_capacity? room->member_capacity * 2: 8;
        char **members = (char **) realloc (room->members, capacity * sizeof (char *));
        if (!members)
            return -1;
        room->members = members;
        room->member_capacity = capacity;
    }
    room->members [room->member_count] = strdup (user);
    if (!room->members [room->member_count])
        return -1;
    room->member_count++;
    return 0;
}

static int
s_compare_strings (const void *a, const void *b)
{
    return strcmp (*(char * const *) a, *(char * const *) b);
}

void
pl_rooms_member_sort (pl_room_t *room)
{
    assert (room);
    if (room->member_count > 1)
        qsort (room->members, room->member_count, sizeof (char *), s_compare_strings);
}

int
pl_rooms_member_index (const pl_room_t *room, const char *user)
{
    assert (room);
    for (size_t index = 0; index < room->member_count; index++)
        if (streq_safe (room->members [index], user))
            return (int) index;
    return -1;
}

void
pl_rooms_room_reset (pl_room_t *room)
{
    assert (room);
    free (room->id);
    free (room->kind);
    free (room->name);
    free (room->created_by);
    for (size_t index = 0; index < room->member_count; index++)
        free (room->members [index]);
    free (room->members);
    free (room->read_seqs);
    json_decref (room->last_message);
    memset (room, 0, sizeof *room);
}

void
pl_rooms_list_destroy (pl_room_t **rooms_p, size_t count)
{
    assert (rooms_p);
    for (size_t index = 0; *rooms_p && index < count; index++)
        pl_rooms_room_reset (&(*rooms_p) [index]);
    free (*rooms_p);
    *rooms_p = NULL;
}


//  --------------------------------------------------------------------------
//  Answers

int
pl_rooms_answer (char **json_p, int status, json_t *json)
{
    assert (json_p);
    char *text = json? json_dumps (json, JSON_COMPACT): NULL;
    json_decref (json);
    if (!text) {
        //  Out of memory or a value jansson refuses: nothing useful to send
        pl_log_error ("store: could not serialize an answer");
        *json_p = strdup ("{\"error\":\"internal error\"}");
        return 503;
    }
    *json_p = text;
    return status;
}

static int
s_error (char **json_p, int status, const char *message)
{
    return pl_rooms_answer (json_p, status, json_pack ("{s:s}", "error", message));
}

int
pl_rooms_unavailable (char **json_p)
{
    return s_error (json_p, 503, "database unavailable, try again later");
}

int
pl_rooms_unknown_query (char **json_p)
{
    return s_error (json_p, 400, "unknown query");
}

//  A JSON string, or null for NULL or text that is not UTF-8
static json_t *
s_json_str (const char *text)
{
    json_t *json = text? json_string (text): NULL;
    return json? json: json_null ();
}

static json_t *
s_room_json (const pl_room_t *room)
{
    json_t *members = json_array ();
    for (size_t index = 0; index < room->member_count; index++)
        json_array_append_new (members, s_json_str (room->members [index]));
    char created [32];
    pl_iso8601 (room->created_ms, created, sizeof created);
    json_t *json = json_object ();
    json_object_set_new (json, "id", s_json_str (room->id));
    json_object_set_new (json, "kind", s_json_str (room->kind));
    json_object_set_new (json, "name", s_json_str (room->name));
    json_object_set_new (json, "members", members);
    json_object_set_new (json, "lastSeq", json_integer (room->last_seq));
    json_object_set_new (json, "createdAt", json_string (created));
    return json;
}

//  A member's read cursor, 0 where none was loaded
static int64_t
s_read_seq (const pl_room_t *room, int index)
{
    return room->read_seqs && index >= 0? room->read_seqs [index]: 0;
}

int
pl_rooms_room_answer (const pl_room_t *room, int status, char **json_p)
{
    if (!room)
        return s_error (json_p, 404, "room not found");
    return pl_rooms_answer (json_p, status, s_room_json (room));
}

int
pl_rooms_detail_answer (const pl_room_t *room, char **json_p)
{
    assert (room);
    json_t *read_seq = json_object ();
    for (size_t index = 0; index < room->member_count; index++)
        json_object_set_new (read_seq, room->members [index], json_integer (s_read_seq (room, (int) index)));
    json_t *json = s_room_json (room);
    json_object_set_new (json, "readSeq", read_seq);
    return pl_rooms_answer (json_p, 200, json);
}

//  Newest activity first; ties by id, so pages never overlap
static int
s_compare_activity (const void *a, const void *b)
{
    const pl_room_t *left = (const pl_room_t *) a, *right = (const pl_room_t *) b;
    if (left->active_ms != right->active_ms)
        return left->active_ms > right->active_ms? -1: 1;
    return strcmp (left->id, right->id);
}

int
pl_rooms_list_answer (pl_room_t *rooms, size_t count, const char *after, size_t limit,
                      char **json_p)
{
    assert (rooms || count == 0);
    if (count > 1)
        qsort (rooms, count, sizeof *rooms, s_compare_activity);
    size_t first = 0;
    if (after && *after) {
        while (first < count && strcmp (rooms [first].id, after))
            first++;
        if (first == count)
            return s_error (json_p, 400, "after: not one of your rooms");
        first++;
    }
    json_t *array = json_array ();
    for (size_t index = first; index < count && index - first < limit; index++) {
        const pl_room_t *room = &rooms [index];
        json_t *json = s_room_json (room);
        json_object_set_new (json, "unread", json_integer (room->unread > 0? room->unread: 0));
        json_object_set_new (json, "lastMessage",
                             room->last_message? json_incref (room->last_message): json_null ());
        json_array_append_new (array, json);
    }
    return pl_rooms_answer (json_p, 200, array);
}

int
pl_rooms_unread_answer (const pl_room_t *rooms, size_t count, char **json_p)
{
    assert (rooms || count == 0);
    json_t *list = json_array ();
    for (size_t index = 0; index < count; index++)
        json_array_append_new (list, json_pack ("{s:s, s:I, s:I}", "roomId", rooms [index].id,
                               "unread", (json_int_t) (rooms [index].unread > 0? rooms [index].unread: 0),
                               "lastSeq", (json_int_t) rooms [index].last_seq));
    return pl_rooms_answer (json_p, 200, json_pack ("{s:o}", "rooms", list));
}

int
pl_rooms_members_answer (const pl_room_t *room, char **json_p)
{
    if (!room)
        return s_error (json_p, 404, "room not found");
    json_t *array = json_array ();
    for (size_t index = 0; index < room->member_count; index++)
        json_array_append_new (array, s_json_str (room->members [index]));
    return pl_rooms_answer (json_p, 200, array);
}

int
pl_rooms_last_seqs_answer (char * const *ids, const int64_t *lasts, size_t count, char **json_p)
{
    assert ((ids && lasts) || count == 0);
    json_t *object = json_object ();
    for (size_t index = 0; index < count; index++)
        json_object_set_new (object, ids [index], json_integer ((json_int_t) lasts [index]));
    return pl_rooms_answer (json_p, 200, object);
}

int
pl_rooms_members_many_answer (const pl_room_t *rooms, size_t found, char * const *ids,
                              size_t count, char **json_p)
{
    assert ((rooms || found == 0) && (ids || count == 0) && json_p);
    json_t *object = json_object ();
    for (size_t index = 0; index < count; index++)
        json_object_set_new (object, ids [index], json_null ());
    for (size_t index = 0; index < found; index++) {
        json_t *array = json_array ();
        for (size_t member = 0; member < rooms [index].member_count; member++)
            json_array_append_new (array, s_json_str (rooms [index].members [member]));
        json_object_set_new (object, rooms [index].id, array);
    }
    return pl_rooms_answer (json_p, 200, object);
}

json_t *
pl_rooms_message_json (const pl_room_message_t *message)
{
    assert (message);
    json_t *json = json_object ();
    char created [32];
    pl_iso8601 (message->created_ms, created, sizeof created);
    json_object_set_new (json, "roomId", s_json_str (message->room_id));
    json_object_set_new (json, "seq", json_integer (message->seq));
    json_object_set_new (json, "type", s_json_str (message->type));
    json_object_set_new (json, "senderId", s_json_str (message->sender_id));
    json_object_set_new (json, "senderName", s_json_str (message->sender_name));
    json_object_set_new (json, "content", s_json_str (message->content));
    if (message->client_msg_id)
        json_object_set_new (json, "clientMsgId", s_json_str (message->client_msg_id));
    json_object_set_new (json, "createdAt", json_string (created));
    return json;
}


//  --------------------------------------------------------------------------
//  POST /api/rooms

//  Characters (not bytes) of UTF-8 text; jansson has checked the encoding
static size_t
s_utf8_length (const char *text)
{
    size_t length = 0;
    for (; *text; text++)
        if (((unsigned char) *text & 0xC0) != 0x80)
            length++;
    return length;
}

//  "<smaller>\n<larger>": either user of a pair writes the same text.
//  Returns its length, or -1.
static int
s_pair_text (const char *user_a, const char *user_b, char *text, size_t size)
{
    const char *low = strcmp (user_a, user_b) < 0? user_a: user_b;
    const char *high = low == user_a? user_b: user_a;
    int length = snprintf (text, size, "%s\n%s", low, high);
    return length < 0 || (size_t) length >= size? -1: length;
}

//  "d:" + the first 16 bytes of digest in hex into buffer (35 bytes at least)
static int
s_digest_id (const unsigned char *digest, unsigned int digest_size, char *buffer, size_t size)
{
    if (size < 35 || digest_size < 16)
        return -1;
    memcpy (buffer, "d:", 2);
    for (size_t index = 0; index < 16; index++)
        snprintf (buffer + 2 + 2 * index, 3, "%02x", digest [index]);
    return 0;
}

//  "d:" + 32 hex digits of HMAC-SHA256 (id key, pair text): one pair
//  always names the same room, and only who holds the key can tell which
//  id that is. Returns 0 or -1.
static int
s_direct_id (pl_rooms_t *self, const char *user_a, const char *user_b, char *buffer, size_t size)
{
    char text [2 * PL_ID_MAX + 2];
    int length = s_pair_text (user_a, user_b, text, sizeof text);
    unsigned char digest [EVP_MAX_MD_SIZE];
    unsigned int digest_size = 0;
    if (length < 0
    ||  !HMAC (EVP_sha256 (), self->id_key, (int) self->id_key_size,
               (const unsigned char *) text, (size_t) length, digest, &digest_size))
        return -1;
    return s_digest_id (digest, digest_size, buffer, size);
}

int
pl_rooms_legacy_id (const pl_room_t *room, char *buffer, size_t size)
{
    assert (room && buffer);
    if (!streq_safe (room->kind, "direct") || room->member_count != 2)
        return -1;
    char text [2 * PL_ID_MAX + 2];
    int length = s_pair_text (room->members [0], room->members [1], text, sizeof text);
    unsigned char digest [EVP_MAX_MD_SIZE];
    unsigned int digest_size = 0;
    if (length < 0
    ||  EVP_Digest (text, (size_t) length, digest, &digest_size, EVP_sha256 (), NULL) != 1)
        return -1;
    return s_digest_id (digest, digest_size, buffer, size);
}

//  The caller, then each listed user once. 0, or a status.
static int
s_create_members (const char *caller, json_t *members, pl_room_t *room, char **json_p)
{
    if (!json_is_array (members))
        return s_error (json_p, 400, "members must be an array of user ids");
    if (pl_rooms_member_push (room, caller))
        return s_error (json_p, 503, "out of memory");
    size_t index;
    json_t *member;
    json_array_foreach (members, index, member) {
        const char *user = json_string_value (member);
        if (!pl_id_valid (user))
            return s_error (json_p, 400, "members must be valid user ids (1..64 of A-Z a-z 0-9 _ . : @ -)");
        if (pl_rooms_member_index (room, user) < 0 && pl_rooms_member_push (room, user))
            return s_error (json_p, 503, "out of memory");
    }
    return 0;
}

//  Name and size of a direct room or a group. 0, or a status.
static int
s_create_shape (pl_rooms_t *self, bool direct, json_t *name, const pl_room_t *room, char **json_p)
{
    char message [80];
    if (direct) {
        if (room->member_count != 2)
            return s_error (json_p, 400, "a direct room needs exactly one other member");
        if (name && !json_is_null (name))
            return s_error (json_p, 400, "a direct room has no name");
        return 0;
    }
    const char *text = json_string_value (name);
    size_t length = text? s_utf8_length (text): 0;
    if (length < 1 || length > (size_t) self->max_name_chars) {
        snprintf (message, sizeof message, "name must be a string of 1 to %d characters", self->max_name_chars);
        return s_error (json_p, 400, message);
    }
    if (room->member_count > (size_t) self->max_members) {
        snprintf (message, sizeof message, "a group has at most %d members", self->max_members);
        return s_error (json_p, 400, message);
    }
    return 0;
}

//  Id, kind, name and creator of a checked new room. 0, or a status.
static int
s_create_identity (pl_rooms_t *self, bool direct, json_t *name, const char *caller, pl_room_t *room,
                   char **json_p)
{
    char id [40];
    if (direct) {
        if (s_direct_id (self, room->members [0], room->members [1], id, sizeof id))
            return s_error (json_p, 503, "cannot hash the room id");
    }
    else {
        memcpy (id, "g:", 2);
        pl_random_hex (id + 2, 12);
    }
    room->id = strdup (id);
    room->kind = strdup (direct? "direct": "group");
    room->name = direct? NULL: strdup (json_string_value (name));
    room->created_by = strdup (caller);
    room->created_ms = pl_clock_ms ();
    if (!room->id || !room->kind || (!direct && !room->name) || !room->created_by)
        return s_error (json_p, 503, "out of memory");
    pl_rooms_member_sort (room);
    return 0;
}

int
pl_rooms_create_request (pl_rooms_t *self, const char *caller, const char *body,
                         size_t body_size, pl_room_t *room, char **json_p)
{
    assert (self && room && json_p);
    memset (room, 0, sizeof *room);
    if (!pl_id_valid (caller))
        return s_error (json_p, 400, "invalid caller id");
    json_t *request = body? json_loadb (body, body_size, 0, NULL): NULL;
    if (!json_is_object (request)) {
        json_decref (request);
        return s_error (json_p, 400, "body must be a JSON object");
    }
    const char *kind = json_string_value (json_object_get (request, "kind"));
    json_t *name = json_object_get (request, "name");
    bool direct = streq_safe (kind, "direct");
    int status = 0;
    if (!direct && !streq_safe (kind, "group"))
        status = s_error (json_p, 400, "kind must be \"direct\" or \"group\"");
    if (!status)
        status = s_create_members (caller, json_object_get (request, "members"), room, json_p);
    if (!status)
        status = s_create_shape (self, direct, name, room, json_p);
    if (!status)
        status = s_create_identity (self, direct, name, caller, room, json_p);
    if (status)
        pl_rooms_room_reset (room);
    json_decref (request);
    return status;
}


//  --------------------------------------------------------------------------
//  Other requests

int
pl_rooms_list_request (const char *caller, char **json_p)
{
    return pl_id_valid (caller)? 0: s_error (json_p, 400, "invalid caller id");
}

int
pl_rooms_room_request (const char *room_id, char **json_p)
{
    //  Only the syntax: what it says is the same for every room id
    return pl_id_valid (room_id)? 0: s_error (json_p, 400, "invalid room id");
}

int
pl_rooms_ids_request (const char *body, size_t body_size, size_t max,
                      char ***ids_p, size_t *count_p, char **json_p)
{
    assert (ids_p && count_p && json_p);
    *ids_p = NULL;
    *count_p = 0;
    json_t *request = body? json_loadb (body, body_size, 0, NULL): NULL;
    size_t size = json_array_size (request);
    int status = 0;
    if (!json_is_array (request) || size == 0 || size > max) {
        char text [80];
        snprintf (text, sizeof text, "body must be an array of 1 to %zu room ids", max);
        status = s_error (json_p, 400, text);
    }
    for (size_t index = 0; index < size && !status; index++)
        if (!pl_id_valid (json_string_value (json_array_get (request, index))))
            status = s_error (json_p, 400, "invalid room id");
    if (!status) {
        *ids_p = (char **) calloc (size, sizeof (char *));
        for (size_t index = 0; *ids_p && index < size; index++)
            if (((*ids_p) [index] = strdup (json_string_value (json_array_get (request, index)))))
                (*count_p)++;
        if (*count_p < size) {
            pl_rooms_ids_free (ids_p, *count_p);
            *count_p = 0;
            status = s_error (json_p, 503, "out of memory");
        }
    }
    json_decref (request);
    return status;
}

void
pl_rooms_ids_free (char ***ids_p, size_t count)
{
    assert (ids_p);
    for (size_t index = 0; *ids_p && index < count; index++)
        free ((*ids_p) [index]);
    free (*ids_p);
    *ids_p = NULL;
}

int
pl_rooms_add_request (const char *body, size_t body_size, char *user, char **json_p)
{
    assert (user && json_p);
    json_t *request = body? json_loadb (body, body_size, 0, NULL): NULL;
    const char *user_id = json_string_value (json_object_get (request, "userId"));
    int status = 0;
    if (!json_is_object (request))
        status = s_error (json_p, 400, "body must be a JSON object");
    else
    if (!pl_id_valid (user_id))
        status = s_error (json_p, 400, "userId must be a valid user id");
    else
        snprintf (user, PL_ID_MAX + 1, "%s", user_id);
    json_decref (request);
    return status;
}

int
pl_rooms_remove_request (const char *user_id, char **json_p)
{
    return pl_id_valid (user_id)? 0: s_error (json_p, 400, "invalid user id");
}

int
pl_rooms_page_limit (pl_rooms_t *self, int requested)
{
    assert (self);
    return requested <= 0 || requested > self->history_limit? self->history_limit: requested;
}


//  --------------------------------------------------------------------------
//  Decisions

int
pl_rooms_may_enter (const pl_room_t *room, const char *room_id, const char *caller, char **json_p)
{
    assert (room_id);
    //  A room that does not exist is one the caller is not a member of:
    //  the same answer, or anyone could test which pairs talk
    if (!room || pl_rooms_member_index (room, caller) < 0) {
        char message [32 + PL_ID_MAX];
        snprintf (message, sizeof message, "not a member of room %s", room_id);
        return s_error (json_p, 403, message);
    }
    return 0;
}

int
pl_rooms_may_add (pl_rooms_t *self, const pl_room_t *room, const char *user, char **json_p)
{
    assert (self && room);
    if (!streq_safe (room->kind, "group"))
        return s_error (json_p, 400, "members cannot be added to a direct room");
    if (pl_rooms_member_index (room, user) >= 0)
        return 200;
    //  Checked before writing, so two concurrent adds may pass one over
    if (room->member_count >= (size_t) self->max_members) {
        char message [80];
        snprintf (message, sizeof message, "a group has at most %d members", self->max_members);
        return s_error (json_p, 400, message);
    }
    return 0;
}

int
pl_rooms_may_join_another (pl_rooms_t *self, const char *user, int64_t held, char **json_p)
{
    assert (self && user);
    if (held < self->max_rooms_per_user)
        return 0;
    char message [PL_ID_MAX + 96];
    snprintf (message, sizeof message, "%s is in %d rooms, the most allowed (max-rooms-per-user)",
              user, self->max_rooms_per_user);
    return s_error (json_p, 429, message);
}

int
pl_rooms_may_remove (const pl_room_t *room, const char *caller, const char *user, char **json_p)
{
    assert (room);
    //  A direct room belongs to its pair for good: the pair's id would
    //  otherwise name a room one of them cannot enter
    if (!streq_safe (room->kind, "group"))
        return s_error (json_p, 400, "members cannot be removed from a direct room");
    if (!streq_safe (caller, user) && !streq_safe (caller, room->created_by))
        return s_error (json_p, 403, "only the room's creator removes other members");
    if (pl_rooms_member_index (room, user) < 0)
        return s_error (json_p, 404, "user is not a member of this room");
    return 0;
}


//  --------------------------------------------------------------------------
//  Selftest

//  Check a status, return the parsed answer (or NULL where none was written)
static json_t *
s_test_expect (int expected, int status, char **text_p, int line)
{
    if (status != expected)
        fprintf (stderr, "pl_rooms_test: line %d: expected %d, got %d %s\n",
                 line, expected, status, *text_p? *text_p: "(null)");
    pl_check (status == expected);
    json_t *json = *text_p? json_loads (*text_p, 0, NULL): NULL;
    pl_check (json || !*text_p);
    free (*text_p);
    *text_p = NULL;
    return json;
}

//  call writes its answer to text_
#define s_test_call(expected, call) s_test_expect ((expected), (call), &text_, __LINE__)

//  An error answer: status and a message
#define s_test_error(expected, call) \
    do { \
        json_t *error_ = s_test_call ((expected), (call)); \
        pl_check (json_string_value (json_object_get (error_, "error"))); \
        json_decref (error_); \
    } while (0)

static void
s_test_create (pl_rooms_t *self, const char *caller, const char *body, pl_room_t *room, int expected)
{
    char *text_ = NULL;
    json_t *answer = s_test_call (expected, pl_rooms_create_request (self, caller, body,
                                                                    body? strlen (body): 0, room, &text_));
    if (expected)
        pl_check (json_string_value (json_object_get (answer, "error")) && !room->id && !room->member_count);
    json_decref (answer);
}

static const char *
s_test_str (json_t *json, const char *key)
{
    return json_string_value (json_object_get (json, key));
}

//  Creating rooms: what a body may ask
static void
s_test_create_rules (pl_rooms_t *self, bool verbose)
{
    pl_room_t room;
    s_test_create (self, "alice", "{\"kind\":\"group\",\"name\":\"Team\",\"members\":[\"bob\",\"alice\",\"bob\"]}",
                   &room, 0);
    pl_check (strncmp (room.id, "g:", 2) == 0 && strlen (room.id) == 26);
    pl_check (streq_safe (room.kind, "group") && streq_safe (room.name, "Team") && streq_safe (room.created_by, "alice"));
    pl_check (room.member_count == 2 && streq_safe (room.members [0], "alice") && streq_safe (room.members [1], "bob"));
    pl_check (room.created_ms > 0 && room.last_seq == 0 && !room.read_seqs);
    pl_rooms_room_reset (&room);

    //  A direct room's id is the pair's, whoever asks: HMAC-SHA256 keyed
    //  with room-id-secret ("test room key"), not the plain SHA-256 of old
    char legacy [40];
    s_test_create (self, "alice", "{\"kind\":\"direct\",\"members\":[\"bob\"]}", &room, 0);
    pl_check (streq_safe (room.id, "d:73c5a1497b1372b85790f276fc69e57f") && !room.name);
    pl_check (streq_safe (room.kind, "direct") && room.member_count == 2);
    pl_check (pl_rooms_legacy_id (&room, legacy, sizeof legacy) == 0);
    pl_check (strcmp (legacy, "d:1cb15457d1ddab60e205c0fe3ca2f65d") == 0);
    pl_check (pl_rooms_legacy_id (&room, legacy, 34) == -1);
    pl_rooms_room_reset (&room);
    s_test_create (self, "bob", "{\"kind\":\"direct\",\"members\":[\"alice\",\"bob\"],\"name\":null}", &room, 0);
    pl_check (streq_safe (room.id, "d:73c5a1497b1372b85790f276fc69e57f"));
    pl_check (streq_safe (room.members [0], "alice") && streq_safe (room.created_by, "bob"));
    pl_rooms_room_reset (&room);
    s_test_create (self, "alice", "{\"kind\":\"group\",\"name\":\"x\",\"members\":[\"bob\"]}", &room, 0);
    pl_check (pl_rooms_legacy_id (&room, legacy, sizeof legacy) == -1);
    pl_rooms_room_reset (&room);

    const char *bad [] = {
        "not json",
        "[\"kind\",\"group\"]",
        "{\"kind\":\"channel\",\"name\":\"x\",\"members\":[\"bob\"]}",
        "{\"name\":\"x\",\"members\":[\"bob\"]}",
        "{\"kind\":\"group\",\"name\":\"x\",\"members\":\"bob\"}",
        "{\"kind\":\"group\",\"name\":\"x\",\"members\":[\"a b\"]}",
        "{\"kind\":\"group\",\"name\":\"x\",\"members\":[42]}",
        "{\"kind\":\"group\",\"name\":\"\",\"members\":[\"bob\"]}",
        "{\"kind\":\"group\",\"members\":[\"bob\"]}",
        "{\"kind\":\"group\",\"name\":\"x\",\"members\":[\"b\",\"c\",\"d\"]}",      //  4 > 3
        "{\"kind\":\"direct\",\"members\":[\"bob\",\"carol\"]}",
        "{\"kind\":\"direct\",\"members\":[\"alice\"]}",
        "{\"kind\":\"direct\",\"members\":[]}",
        "{\"kind\":\"direct\",\"name\":\"x\",\"members\":[\"bob\"]}",
        NULL,
    };
    for (size_t index = 0; index < sizeof bad / sizeof bad [0]; index++) {
        if (verbose)
            printf ("   400 for %s\n", bad [index]? bad [index]: "(no body)");
        s_test_create (self, "alice", bad [index], &room, 400);
    }
    s_test_create (self, "not an id", "{\"kind\":\"direct\",\"members\":[\"bob\"]}", &room, 400);
    //  Names count characters, not bytes: 100 x "é" (200 bytes) is fine, 101 is not
    char body [512];
    char name [256] = "";
    for (int index = 0; index < 100; index++)
        strcat (name, "\xc3\xa9");
    snprintf (body, sizeof body, "{\"kind\":\"group\",\"name\":\"%s\",\"members\":[]}", name);
    s_test_create (self, "alice", body, &room, 0);
    pl_check (room.member_count == 1);
    pl_rooms_room_reset (&room);
    snprintf (body, sizeof body, "{\"kind\":\"group\",\"name\":\"%s\xc3\xa9\",\"members\":[]}", name);
    s_test_create (self, "alice", body, &room, 400);
    s_test_create (self, "alice", "{\"kind\":\"group\",\"name\":\"x\",\"members\":[\"bob\",\"carol\"]}", &room, 0);
    pl_rooms_room_reset (&room);
}

//  Ids of other requests, page sizes
static void
s_test_requests (pl_rooms_t *self)
{
    char *text_ = NULL;
    char user [PL_ID_MAX + 1];
    pl_check (pl_rooms_list_request ("alice", &text_) == 0 && !text_);
    s_test_error (400, pl_rooms_list_request ("", &text_));
    s_test_error (400, pl_rooms_list_request (NULL, &text_));
    pl_check (pl_rooms_room_request ("g:x", &text_) == 0 && !text_);
    s_test_error (400, pl_rooms_room_request ("not/an/id", &text_));
    pl_check (pl_rooms_add_request ("{\"userId\":\"carol\"}", 18, user, &text_) == 0 && strcmp (user, "carol") == 0);
    s_test_error (400, pl_rooms_add_request ("{]", 2, user, &text_));
    s_test_error (400, pl_rooms_add_request ("{\"userId\":\"a/b\"}", 16, user, &text_));
    s_test_error (400, pl_rooms_add_request ("[\"carol\"]", 9, user, &text_));
    s_test_error (400, pl_rooms_add_request (NULL, 0, user, &text_));
    pl_check (pl_rooms_remove_request ("bob", &text_) == 0 && !text_);
    s_test_error (400, pl_rooms_remove_request ("a b", &text_));
    //  history-limit is 200 by default
    pl_check (pl_rooms_page_limit (self, 10) == 10);
    pl_check (pl_rooms_page_limit (self, 200) == 200);
    pl_check (pl_rooms_page_limit (self, 1000) == 200);
    pl_check (pl_rooms_page_limit (self, 0) == 200);
    pl_check (pl_rooms_page_limit (self, -5) == 200);
    s_test_error (400, pl_rooms_unknown_query (&text_));
    s_test_error (503, pl_rooms_unavailable (&text_));
}

//  A group of alice (its creator), bob and carol, and a direct room
static void
s_test_rooms (pl_rooms_t *self, pl_room_t *group, pl_room_t *direct)
{
    char *text_ = NULL;
    const char *body = "{\"kind\":\"group\",\"name\":\"Team\",\"members\":[\"bob\",\"carol\"]}";
    pl_check (pl_rooms_create_request (self, "alice", body, strlen (body), group, &text_) == 0);
    body = "{\"kind\":\"direct\",\"members\":[\"bob\"]}";
    pl_check (pl_rooms_create_request (self, "alice", body, strlen (body), direct, &text_) == 0);
    pl_check (!text_);
}

//  Who may enter, add and remove
static void
s_test_decisions (pl_rooms_t *self, pl_rooms_t *small)
{
    char *text_ = NULL;
    pl_room_t group, direct;
    s_test_rooms (self, &group, &direct);
    pl_check (pl_rooms_may_enter (&group, group.id, "bob", &text_) == 0 && !text_);
    s_test_error (403, pl_rooms_may_enter (&group, group.id, "dave", &text_));
    s_test_error (403, pl_rooms_may_enter (&direct, direct.id, "carol", &text_));
    s_test_error (403, pl_rooms_may_enter (NULL, "g:nothing", "alice", &text_));
    //  A room that exists and one that does not: the same bytes
    char *existing = NULL, *missing = NULL;
    pl_check (pl_rooms_may_enter (&direct, direct.id, "carol", &existing) == 403);
    pl_check (pl_rooms_may_enter (NULL, direct.id, "carol", &missing) == 403);
    pl_check (existing && missing && streq_safe (existing, missing));
    pl_check (strstr (existing, "not a member of room d:"));
    free (existing);
    free (missing);

    //  Any member adds to a group; a member already is no change
    pl_check (pl_rooms_may_add (self, &group, "dave", &text_) == 0 && !text_);
    pl_check (s_test_call (200, pl_rooms_may_add (self, &group, "carol", &text_)) == NULL);
    s_test_error (400, pl_rooms_may_add (self, &direct, "carol", &text_));
    //  max-room-members 3: a group of three is full, one of three may still list a member
    s_test_error (400, pl_rooms_may_add (small, &group, "dave", &text_));
    pl_check (s_test_call (200, pl_rooms_may_add (small, &group, "bob", &text_)) == NULL);

    //  The creator removes anyone, a member only itself
    s_test_error (403, pl_rooms_may_remove (&group, "carol", "bob", &text_));
    s_test_error (403, pl_rooms_may_remove (&group, "dave", "alice", &text_));
    s_test_error (400, pl_rooms_may_remove (&direct, "alice", "bob", &text_));
    s_test_error (400, pl_rooms_may_remove (&direct, "alice", "alice", &text_));
    s_test_error (404, pl_rooms_may_remove (&group, "alice", "dave", &text_));
    pl_check (pl_rooms_may_remove (&group, "carol", "carol", &text_) == 0);
    pl_check (pl_rooms_may_remove (&group, "alice", "bob", &text_) == 0);
    pl_check (pl_rooms_may_remove (&group, "alice", "alice", &text_) == 0 && !text_);
    pl_rooms_room_reset (&group);
    pl_rooms_room_reset (&direct);
}

//  The JSON of each answer
static void
s_test_answers (pl_rooms_t *self)
{
    char *text_ = NULL;
    pl_room_t rooms [2];
    s_test_rooms (self, &rooms [0], &rooms [1]);
    pl_room_t *group = &rooms [0];
    group->created_ms = 1795348800000LL;
    group->last_seq = 1010;
    json_t *json = s_test_call (201, pl_rooms_room_answer (group, 201, &text_));
    pl_check (streq_safe (s_test_str (json, "id"), group->id) && streq_safe (s_test_str (json, "kind"), "group"));
    pl_check (streq_safe (s_test_str (json, "name"), "Team"));
    pl_check (streq_safe (s_test_str (json, "createdAt"), "2026-11-22T12:00:00.000Z"));
    pl_check (json_integer_value (json_object_get (json, "lastSeq")) == 1010);
    pl_check (json_array_size (json_object_get (json, "members")) == 3);
    pl_check (!json_object_get (json, "readSeq") && !json_object_get (json, "unread"));
    json_decref (json);
    json = s_test_call (200, pl_rooms_room_answer (&rooms [1], 200, &text_));
    pl_check (json_is_null (json_object_get (json, "name")) && streq_safe (s_test_str (json, "kind"), "direct"));
    json_decref (json);
    s_test_error (404, pl_rooms_room_answer (NULL, 200, &text_));

    //  readSeq: every member in order, 0 where nothing was loaded
    json = s_test_call (200, pl_rooms_detail_answer (group, &text_));
    json_t *read_seq = json_object_get (json, "readSeq");
    pl_check (json_object_size (read_seq) == 3 && json_integer_value (json_object_get (read_seq, "bob")) == 0);
    json_decref (json);
    group->read_seqs = (int64_t *) calloc (group->member_count, sizeof (int64_t));
    pl_check (group->read_seqs);
    group->read_seqs [pl_rooms_member_index (group, "bob")] = 500;
    json = s_test_call (200, pl_rooms_detail_answer (group, &text_));
    read_seq = json_object_get (json, "readSeq");
    pl_check (json_integer_value (json_object_get (read_seq, "bob")) == 500);
    pl_check (streq_safe (json_object_iter_key (json_object_iter (read_seq)), "alice"));
    json_decref (json);

    json = s_test_call (200, pl_rooms_members_answer (group, &text_));
    pl_check (json_array_size (json) == 3 && streq_safe (json_string_value (json_array_get (json, 2)), "carol"));
    json_decref (json);
    s_test_error (404, pl_rooms_members_answer (NULL, &text_));
    //  The list: newest activity first, ties by id; unread and lastMessage
    //  as the store loaded them; pages after a room
    rooms [0].active_ms = 100;
    rooms [0].unread = 510;
    rooms [1].active_ms = 200;
    rooms [1].unread = 3;
    pl_room_message_t last = { .room_id = rooms [1].id, .seq = 3, .type = "TALK", .sender_id = "bob",
                               .sender_name = "Bob", .content = "hi", .created_ms = 200 };
    rooms [1].last_message = pl_rooms_message_json (&last);
    json = s_test_call (200, pl_rooms_list_answer (rooms, 2, NULL, 10, &text_));
    pl_check (json_array_size (json) == 2);
    json_t *first = json_array_get (json, 0), *second = json_array_get (json, 1);
    pl_check (json_integer_value (json_object_get (first, "unread")) == 3);
    pl_check (streq_safe (s_test_str (json_object_get (first, "lastMessage"), "content"), "hi"));
    pl_check (json_integer_value (json_object_get (second, "unread")) == 510);
    pl_check (json_is_null (json_object_get (second, "lastMessage")));
    char second_id [80];
    snprintf (second_id, sizeof second_id, "%s", s_test_str (second, "id"));
    json_decref (json);
    json = s_test_call (200, pl_rooms_list_answer (rooms, 2, NULL, 1, &text_));
    pl_check (json_array_size (json) == 1);
    json_decref (json);
    json = s_test_call (200, pl_rooms_list_answer (rooms, 2, rooms [0].id, 10, &text_));
    const char *next = s_test_str (json_array_get (json, 0), "id");
    pl_check (json_array_size (json) == 1 && next && strcmp (next, second_id) == 0);
    json_decref (json);
    json = s_test_call (200, pl_rooms_list_answer (rooms, 2, second_id, 10, &text_));
    pl_check (json_array_size (json) == 0);
    json_decref (json);
    s_test_error (400, pl_rooms_list_answer (rooms, 2, "g:nothere", 10, &text_));
    json = s_test_call (200, pl_rooms_unread_answer (rooms, 2, &text_));
    json_t *counts = json_object_get (json, "rooms");
    pl_check (json_array_size (counts) == 2);
    pl_check (json_integer_value (json_object_get (json_array_get (counts, 0), "unread")) == 3);
    pl_check (json_integer_value (json_object_get (json_array_get (counts, 0), "lastSeq")) == rooms [0].last_seq);
    json_decref (json);
    json = s_test_call (200, pl_rooms_list_answer (NULL, 0, NULL, 10, &text_));
    pl_check (json_is_array (json) && json_array_size (json) == 0);
    json_decref (json);

    pl_rooms_room_reset (&rooms [0]);
    pl_rooms_room_reset (&rooms [1]);
    pl_room_t *list = (pl_room_t *) calloc (2, sizeof (pl_room_t));
    pl_check (list && pl_rooms_member_push (&list [1], "x") == 0);
    pl_rooms_list_destroy (&list, 2);
    pl_check (!list);
}

static void
s_test_messages (void)
{
    pl_room_message_t message = {
        "g:x", 1010, "TALK", "alice", "Alice", "hello", "cid", 1795348801010LL
    };
    json_t *json = pl_rooms_message_json (&message);
    pl_check (streq_safe (s_test_str (json, "roomId"), "g:x") && json_integer_value (json_object_get (json, "seq")) == 1010);
    pl_check (streq_safe (s_test_str (json, "type"), "TALK") && streq_safe (s_test_str (json, "senderId"), "alice"));
    pl_check (streq_safe (s_test_str (json, "senderName"), "Alice") && streq_safe (s_test_str (json, "content"), "hello"));
    pl_check (streq_safe (s_test_str (json, "clientMsgId"), "cid"));
    pl_check (streq_safe (s_test_str (json, "createdAt"), "2026-11-22T12:00:01.010Z"));
    json_decref (json);
    //  No clientMsgId: none in the JSON; text that is not UTF-8: null
    message.client_msg_id = NULL;
    message.content = "not UTF-8 \xff";
    json = pl_rooms_message_json (&message);
    pl_check (!json_object_get (json, "clientMsgId") && json_is_null (json_object_get (json, "content")));
    json_decref (json);
}

//  Where the id key comes from: room-id-secret, else jwt-secret with a
//  label; with neither there are no rules (the store does not start)
static void
s_test_id_keys (pl_config_t *config)
{
    const char *body = "{\"kind\":\"direct\",\"members\":[\"bob\"]}";
    pl_check (pl_rooms_new (config) == NULL);      //  logs why
    pl_config_set (config, "jwt-secret", "jwt");
    pl_rooms_t *derived = pl_rooms_new (config);
    pl_check (derived);
    pl_room_t room;
    s_test_create (derived, "alice", body, &room, 0);
    pl_check (streq_safe (room.id, "d:3a76b51f036d98742445e7c2833563d8"));
    pl_rooms_room_reset (&room);
    pl_rooms_destroy (&derived);
    //  room-id-secret wins over jwt-secret; another key, another id
    pl_config_set (config, "room-id-secret", "another key");
    derived = pl_rooms_new (config);
    pl_check (derived);
    s_test_create (derived, "bob", body, &room, 400);
    s_test_create (derived, "bob", "{\"kind\":\"direct\",\"members\":[\"alice\"]}", &room, 0);
    pl_check (room.id && !streq_safe (room.id, "d:3a76b51f036d98742445e7c2833563d8")
              && !streq_safe (room.id, "d:73c5a1497b1372b85790f276fc69e57f"));
    pl_rooms_room_reset (&room);
    pl_rooms_destroy (&derived);
    pl_config_set (config, "jwt-secret", "");
}

void
pl_rooms_test (bool verbose)
{
    printf (" * pl_rooms: ");
    if (verbose)
        printf ("\n");
    pl_config_t *config = pl_config_new_default ();
    pl_check (config && pl_config_finish (config) == 0);
    s_test_id_keys (config);
    pl_config_set (config, "room-id-secret", "test room key");
    pl_rooms_t *self = pl_rooms_new (config);
    pl_check (self);
    pl_config_set (config, "max-room-members", "3");
    pl_rooms_t *small = pl_rooms_new (config);
    pl_check (small);

    s_test_create_rules (small, verbose);
    s_test_requests (self);
    s_test_decisions (self, small);
    s_test_answers (self);
    s_test_messages ();

    //  The rooms a user may be in come from the configuration too
    pl_config_set (config, "max-rooms-per-user", "2");
    pl_rooms_t *few = pl_rooms_new (config);
    pl_check (few);
    char *text_ = NULL;
    pl_check (pl_rooms_may_join_another (few, "alice", 1, &text_) == 0 && !text_);
    s_test_error (429, pl_rooms_may_join_another (few, "alice", 2, &text_));
    pl_check (pl_rooms_may_join_another (few, "alice", 5, &text_) == 429);
    pl_check (text_ && strstr (text_, "max-rooms-per-user") && strstr (text_, "alice"));
    free (text_);
    pl_rooms_destroy (&few);

    //  The name limit comes from the configuration
    pl_config_set (config, "max-room-name-chars", "3");
    pl_rooms_t *short_names = pl_rooms_new (config);
    pl_room_t room;
    s_test_create (short_names, "alice", "{\"kind\":\"group\",\"name\":\"abc\",\"members\":[]}", &room, 0);
    pl_rooms_room_reset (&room);
    s_test_create (short_names, "alice", "{\"kind\":\"group\",\"name\":\"abcd\",\"members\":[]}", &room, 400);
    pl_rooms_destroy (&short_names);

    pl_rooms_destroy (&small);
    pl_rooms_destroy (&self);
    pl_rooms_destroy (&self);
    pl_check (!self);
    pl_config_destroy (&config);
    printf ("OK\n");
}
