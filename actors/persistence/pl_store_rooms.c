/*  =========================================================================
    pl_store_rooms - the rooms and members collections of pl_store

    Rooms are the truth about membership; a member document per member
    holds its read cursor. pl_store.c lists where FerretDB and MongoDB
    differ; the notes here say where it matters.
    =========================================================================
*/
#include "pl_store_internal.h"
#include <czmq.h>
#include "pl_log.h"
#include "pl_util.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


//  --------------------------------------------------------------------------
//  Rooms

//  Find one document. Returns PL_STORE_OK (a copy in *doc_p),
//  PL_STORE_MISSING or PL_STORE_FAILED (error set).
static int
s_find_one (mongoc_collection_t *collection, const bson_t *filter, const bson_t *sort,
            bson_t **doc_p, bson_error_t *error)
{
    bson_t options = BSON_INITIALIZER;
    if (sort)
        BSON_APPEND_DOCUMENT (&options, "sort", sort);
    BSON_APPEND_INT64 (&options, "limit", 1);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts (collection, filter, &options, NULL);
    const bson_t *doc;
    int rc = PL_STORE_MISSING;
    *doc_p = NULL;
    if (mongoc_cursor_next (cursor, &doc)) {
        *doc_p = bson_copy (doc);
        rc = PL_STORE_OK;
    }
    else
    if (mongoc_cursor_error (cursor, error))
        rc = PL_STORE_FAILED;
    mongoc_cursor_destroy (cursor);
    bson_destroy (&options);
    return rc;
}

//  Read a room document. Returns 0, or -1 when out of memory (room reset).
static int
s_room_parse (const bson_t *doc, pl_room_t *room)
{
    memset (room, 0, sizeof *room);
    const char *id = pl_store_bson_str (doc, "_id");
    const char *kind = pl_store_bson_str (doc, "kind");
    const char *name = pl_store_bson_str (doc, "name");
    const char *created_by = pl_store_bson_str (doc, "createdBy");
    room->id = strdup (id? id: "");
    room->kind = strdup (kind? kind: "group");
    room->name = name? strdup (name): NULL;
    room->created_by = strdup (created_by? created_by: "");
    room->created_ms = pl_store_bson_date (doc, "createdAt");
    bool failed = !room->id || !room->kind || (name && !room->name) || !room->created_by;
    bson_iter_t iter, child;
    if (bson_iter_init_find (&iter, doc, "members") && BSON_ITER_HOLDS_ARRAY (&iter)
    &&  bson_iter_recurse (&iter, &child))
        while (bson_iter_next (&child))
            if (BSON_ITER_HOLDS_UTF8 (&child)
            &&  pl_rooms_member_push (room, bson_iter_utf8 (&child, NULL)))
                failed = true;
    pl_rooms_member_sort (room);
    if (failed)
        pl_rooms_room_reset (room);
    return failed? -1: 0;
}

int
pl_store_room_load (pl_store_t *self, const char *room_id, pl_room_t *room)
{
    assert (self && room_id && room);
    memset (room, 0, sizeof *room);
    bson_t *filter = BCON_NEW ("_id", BCON_UTF8 (room_id));
    bson_t *doc;
    bson_error_t error;
    int rc = s_find_one (self->rooms, filter, NULL, &doc, &error);
    bson_destroy (filter);
    if (rc == PL_STORE_FAILED)
        return pl_store_failed ("room lookup", &error);
    if (rc == PL_STORE_OK) {
        if (s_room_parse (doc, room)) {
            pl_log_warning ("store: room lookup failed: out of memory");
            rc = PL_STORE_FAILED;
        }
        bson_destroy (doc);
    }
    return rc;
}

//  The filter of rooms whose _id is one of ids (count >= 1) into filter.
//  FerretDB: $in on _id is not pushed down on SQLite: one scan of the
//  rooms for the whole batch (about 140 ms at 5,000 rooms), where one
//  query per room paid a round trip and its overhead each; a lone id asks
//  by equality, which is pushed down (2 ms). MongoDB walks the _id index
//  either way.
static void
s_rooms_filter (bson_t *filter, char * const *ids, size_t count)
{
    if (count == 1) {
        BSON_APPEND_UTF8 (filter, "_id", ids [0]);
        return;
    }
    bson_t match, list;
    BSON_APPEND_DOCUMENT_BEGIN (filter, "_id", &match);
    BSON_APPEND_ARRAY_BEGIN (&match, "$in", &list);
    for (size_t index = 0; index < count; index++) {
        char key [16];
        const char *key_text;
        bson_uint32_to_string ((uint32_t) index, &key_text, key, sizeof key);
        BSON_APPEND_UTF8 (&list, key_text, ids [index]);
    }
    bson_append_array_end (&match, &list);
    bson_append_document_end (filter, &match);
}

int
pl_store_rooms_load (pl_store_t *self, char * const *ids, size_t count,
                     pl_room_t **rooms_p, size_t *found_p)
{
    assert (self && (ids || count == 0) && rooms_p && found_p);
    *rooms_p = count? (pl_room_t *) calloc (count, sizeof (pl_room_t)): NULL;
    *found_p = 0;
    if (count == 0)
        return 0;
    if (!*rooms_p)
        return -1;
    bson_t filter = BSON_INITIALIZER;
    s_rooms_filter (&filter, ids, count);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts (self->rooms, &filter, NULL, NULL);
    const bson_t *doc;
    bool failed = false;
    //  More documents than ids asked for cannot come: _id is unique
    while (!failed && *found_p < count && mongoc_cursor_next (cursor, &doc)) {
        failed = s_room_parse (doc, &(*rooms_p) [*found_p]) != 0;
        if (!failed)
            (*found_p)++;
    }
    bson_error_t error;
    int rc = mongoc_cursor_error (cursor, &error)? pl_store_failed ("rooms lookup", &error): 0;
    if (rc == 0 && failed) {
        pl_log_warning ("store: rooms lookup failed: out of memory");
        rc = -1;
    }
    mongoc_cursor_destroy (cursor);
    bson_destroy (&filter);
    if (rc) {
        pl_rooms_list_destroy (rooms_p, count);
        *found_p = 0;
    }
    return rc;
}

//  FerretDB: on SQLite only _id equality is pushed down, so this scans and
//  sorts the room's messages in memory; MongoDB uses room_seq.
//  A room's newest message document (NULL when it has none). Returns
//  PL_STORE_OK, PL_STORE_MISSING or PL_STORE_FAILED (error set).
static int
s_newest_message (pl_store_t *self, const char *room_id, bson_t **doc_p, bson_error_t *error)
{
    bson_t *filter = BCON_NEW ("roomId", BCON_UTF8 (room_id));
    bson_t *sort = BCON_NEW ("seq", BCON_INT32 (-1));
    *doc_p = NULL;
    int rc = s_find_one (self->messages, filter, sort, doc_p, error);
    bson_destroy (sort);
    bson_destroy (filter);
    return rc;
}

int
pl_store_room_last_seq (pl_store_t *self, pl_room_t *room)
{
    assert (self && room && room->id);
    bson_t *doc;
    bson_error_t error;
    int rc = s_newest_message (self, room->id, &doc, &error);
    room->last_seq = rc == PL_STORE_OK? pl_store_bson_int64 (doc, "seq"): 0;
    if (doc)
        bson_destroy (doc);
    return rc == PL_STORE_FAILED? pl_store_failed ("last seq", &error): 0;
}

//  One find of the newest message per room: FerretDB 1.24 has no $max or
//  $first accumulator for one aggregate of them all (it scans each room's
//  messages, see s_newest_message); MongoDB walks room_seq once per room.
int
pl_store_rooms_last_seq (pl_store_t *self, char * const *ids, size_t count, int64_t *lasts)
{
    assert (self && ids && count && lasts);
    for (size_t index = 0; index < count; index++) {
        bson_t *doc;
        bson_error_t error;
        int rc = s_newest_message (self, ids [index], &doc, &error);
        if (rc == PL_STORE_FAILED)
            return pl_store_failed ("last seq", &error);
        lasts [index] = rc == PL_STORE_OK? pl_store_bson_int64 (doc, "seq"): 0;
        if (doc)
            bson_destroy (doc);
    }
    return 0;
}

static int
s_compare_rooms (const void *a, const void *b)
{
    return strcmp (((const pl_room_t *) a)->id, ((const pl_room_t *) b)->id);
}

//  Fill read_seqs of rooms (sorted by id) from the reads documents that
//  match {key: value}: a member's highest seq, 0 when it has none; a
//  document of a user the room no longer lists is ignored. Returns 0 or -1.
static int
s_read_cursors (pl_store_t *self, const char *key, const char *value, pl_room_t *rooms, size_t count)
{
    for (size_t index = 0; index < count; index++) {
        free (rooms [index].read_seqs);
        rooms [index].read_seqs = (int64_t *) calloc (rooms [index].member_count + 1, sizeof (int64_t));
        if (!rooms [index].read_seqs)
            return -1;
    }
    bson_t *filter = BCON_NEW (key, BCON_UTF8 (value));
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts (self->reads, filter, NULL, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next (cursor, &doc)) {
        pl_room_t probe = { .id = (char *) pl_store_bson_str (doc, "roomId") };
        pl_room_t *room = probe.id? (pl_room_t *) bsearch (&probe, rooms, count, sizeof (pl_room_t),
                                                           s_compare_rooms): NULL;
        int member = room? pl_rooms_member_index (room, pl_store_bson_str (doc, "userId")): -1;
        int64_t seq = pl_store_bson_int64 (doc, "seq");
        if (member >= 0 && seq > room->read_seqs [member])
            room->read_seqs [member] = seq;
    }
    bson_error_t error;
    int rc = mongoc_cursor_error (cursor, &error)? pl_store_failed ("read cursors", &error): 0;
    mongoc_cursor_destroy (cursor);
    bson_destroy (filter);
    return rc;
}

int
pl_store_room_read_seqs (pl_store_t *self, pl_room_t *room)
{
    assert (self && room && room->id);
    return s_read_cursors (self, "roomId", room->id, room, 1);
}

//  A bulk write failed only on duplicate keys (and was acknowledged)
static bool
s_only_duplicates (const bson_error_t *error, const bson_t *reply)
{
    if (!pl_store_is_duplicate (error) || pl_store_has_items (reply, "writeConcernErrors"))
        return false;
    bson_iter_t iter, child;
    if (bson_iter_init_find (&iter, reply, "writeErrors") && bson_iter_recurse (&iter, &child))
        while (bson_iter_next (&child)) {
            bson_iter_t code;
            if (!bson_iter_recurse (&child, &code) || !bson_iter_find (&code, "code")
            ||  bson_iter_as_int64 (&code) != PL_STORE_DUPLICATE_KEY)
                return false;
        }
    return true;
}

//  Create member documents for users (upserts, so repeating is harmless;
//  readSeq of an existing member is kept). Returns 0 or -1 (error set).
static int
s_members_ensure (pl_store_t *self, const char *room_id, char * const *users, size_t count,
                  bson_error_t *error)
{
    bson_t *options = BCON_NEW ("ordered", BCON_BOOL (false));
    mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts (self->members, options);
    bson_destroy (options);
    bson_t *upsert = BCON_NEW ("upsert", BCON_BOOL (true));
    bool ok = true;
    for (size_t index = 0; ok && index < count; index++) {
        char id [2 * PL_ID_MAX + 2];
        snprintf (id, sizeof id, "%s#%s", room_id, users [index]);
        bson_t *selector = BCON_NEW ("_id", BCON_UTF8 (id));
        //  FerretDB: $setOnInsert and upserts with an _id selector work as on MongoDB
        bson_t *update = BCON_NEW ("$setOnInsert", "{",
                                       "roomId", BCON_UTF8 (room_id),
                                       "userId", BCON_UTF8 (users [index]),
                                       "readSeq", BCON_INT64 (0),
                                   "}");
        ok = mongoc_bulk_operation_update_one_with_opts (bulk, selector, update, upsert, error);
        bson_destroy (update);
        bson_destroy (selector);
    }
    if (ok) {
        bson_t reply;
        ok = mongoc_bulk_operation_execute (bulk, &reply, error) != 0;
        //  Two concurrent upserts of one _id: MongoDB may answer 11000 to the
        //  loser, whose document then exists
        if (!ok && s_only_duplicates (error, &reply))
            ok = true;
        bson_destroy (&reply);
    }
    bson_destroy (upsert);
    mongoc_bulk_operation_destroy (bulk);
    return ok? 0: -1;
}

//  The document of a new room
static void
s_room_doc (const pl_room_t *room, bson_t *doc)
{
    bson_init (doc);
    BSON_APPEND_UTF8 (doc, "_id", room->id);
    BSON_APPEND_UTF8 (doc, "kind", room->kind);
    if (room->name)
        BSON_APPEND_UTF8 (doc, "name", room->name);
    else
        BSON_APPEND_NULL (doc, "name");
    bson_t array;
    BSON_APPEND_ARRAY_BEGIN (doc, "members", &array);
    for (size_t index = 0; index < room->member_count; index++) {
        char key [16];
        const char *key_p;
        bson_uint32_to_string ((uint32_t) index, &key_p, key, sizeof key);
        bson_append_utf8 (&array, key_p, -1, room->members [index], -1);
    }
    bson_append_array_end (doc, &array);
    BSON_APPEND_UTF8 (doc, "createdBy", room->created_by);
    BSON_APPEND_DATE_TIME (doc, "createdAt", room->created_ms);
}

int
pl_store_room_insert (pl_store_t *self, const pl_room_t *room)
{
    assert (self && room && room->id && room->kind && room->created_by);
    bson_t doc;
    s_room_doc (room, &doc);
    bson_error_t error;
    int rc = PL_STORE_OK;
    if (streq_safe (room->kind, "direct")) {
        //  The id is the pair's, so a second create meets a duplicate key:
        //  the room exists (also when both users ask at the same time).
        //  Member documents are ensured either way.
        if (!mongoc_collection_insert_one (self->rooms, &doc, NULL, NULL, &error))
            rc = pl_store_is_duplicate (&error)? PL_STORE_EXISTED: pl_store_failed ("room insert", &error);
        if (rc != PL_STORE_FAILED
        &&  s_members_ensure (self, room->id, room->members, room->member_count, &error))
            rc = pl_store_failed ("member insert", &error);
    }
    else {
        //  Members first: a room never lists someone without a member
        //  document; if the room insert fails the orphans are removed
        if (s_members_ensure (self, room->id, room->members, room->member_count, &error))
            rc = pl_store_failed ("member insert", &error);
        else
        if (!mongoc_collection_insert_one (self->rooms, &doc, NULL, NULL, &error)) {
            rc = pl_store_failed ("room insert", &error);
            bson_t *filter = BCON_NEW ("roomId", BCON_UTF8 (room->id));
            mongoc_collection_delete_many (self->members, filter, NULL, NULL, NULL);
            bson_destroy (filter);
        }
    }
    bson_destroy (&doc);
    return rc;
}

//  The rooms listing user, sorted by id. Returns 0 or -1.
//  FerretDB: {members: u} matches array elements as on MongoDB.
static int
s_rooms_listing (pl_store_t *self, const char *user, pl_room_t **rooms_p, size_t *count_p)
{
    bson_t *filter = BCON_NEW ("members", BCON_UTF8 (user));
    bson_t *options = BCON_NEW ("sort", "{", "_id", BCON_INT32 (1), "}");
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts (self->rooms, filter, options, NULL);
    size_t capacity = 0;
    bool failed = false;
    const bson_t *doc;
    while (!failed && mongoc_cursor_next (cursor, &doc)) {
        if (*count_p == capacity) {
            capacity = capacity? capacity * 2: 16;
            pl_room_t *bigger = (pl_room_t *) realloc (*rooms_p, capacity * sizeof (pl_room_t));
            failed = !bigger;
            if (failed)
                break;
            *rooms_p = bigger;
        }
        failed = s_room_parse (doc, &(*rooms_p) [*count_p]) != 0;
        if (!failed)
            (*count_p)++;
    }
    bson_error_t error;
    int rc = mongoc_cursor_error (cursor, &error)? pl_store_failed ("rooms of user", &error): 0;
    if (rc == 0 && failed) {
        pl_log_warning ("store: rooms of user failed: out of memory");
        rc = -1;
    }
    mongoc_cursor_destroy (cursor);
    bson_destroy (options);
    bson_destroy (filter);
    //  Ids are ASCII, so the server's order is strcmp's; sorted again so
    //  that a lookup by id can rely on it
    if (rc == 0 && *count_p > 1)
        qsort (*rooms_p, *count_p, sizeof (pl_room_t), s_compare_rooms);
    return rc;
}

//  What a room list shows of a room for user: its newest message (lastSeq,
//  lastMessage, activity) and the user's unread messages: after its read
//  cursor, sent by others. FerretDB: the count is an aggregate of $match
//  and $group as on MongoDB, a scan of the room's messages on SQLite where
//  MongoDB walks room_seq from the cursor. Returns 0 or -1.
static int
s_room_summary (pl_store_t *self, pl_room_t *room, const char *user)
{
    bson_t *doc;
    bson_error_t error;
    int rc = s_newest_message (self, room->id, &doc, &error);
    if (rc == PL_STORE_FAILED)
        return pl_store_failed ("last message", &error);
    room->last_seq = 0;
    room->active_ms = room->created_ms;
    room->unread = 0;
    if (rc == PL_STORE_MISSING)
        return 0;
    pl_room_message_t message;
    pl_store_message_from_bson (doc, &message);
    room->last_seq = message.seq;
    room->active_ms = message.created_ms;
    json_decref (room->last_message);
    room->last_message = pl_rooms_message_json (&message);
    bson_destroy (doc);
    int member = pl_rooms_member_index (room, user);
    int64_t cursor = room->read_seqs && member >= 0? room->read_seqs [member]: 0;
    if (cursor >= room->last_seq)
        return 0;
    bson_t *filter = BCON_NEW ("roomId", BCON_UTF8 (room->id), "seq", "{", "$gt", BCON_INT64 (cursor), "}",
                       "senderId", "{", "$ne", BCON_UTF8 (user), "}");
    room->unread = mongoc_collection_count_documents (self->messages, filter, NULL, NULL, NULL, &error);
    bson_destroy (filter);
    return room->unread < 0? pl_store_failed ("unread count", &error): 0;
}

int
pl_store_rooms_of_user (pl_store_t *self, const char *user, pl_room_t **rooms_p, size_t *count_p)
{
    assert (self && user && rooms_p && count_p);
    *rooms_p = NULL;
    *count_p = 0;
    //  Rooms, not member documents, are the truth about membership
    int rc = s_rooms_listing (self, user, rooms_p, count_p);
    if (rc == 0)
        rc = s_read_cursors (self, "userId", user, *rooms_p, *count_p);
    for (size_t index = 0; rc == 0 && index < *count_p; index++)
        rc = s_room_summary (self, &(*rooms_p) [index], user);
    if (rc) {
        pl_rooms_list_destroy (rooms_p, *count_p);
        *count_p = 0;
    }
    return rc;
}


int
pl_store_rooms_of_user_in (pl_store_t *self, const char *user, const char **ids, size_t id_count,
                           pl_room_t **rooms_p, size_t *count_p)
{
    assert (self && user && rooms_p && count_p);
    *count_p = 0;
    *rooms_p = (pl_room_t *) calloc (id_count + 1, sizeof (pl_room_t));
    if (!*rooms_p)
        return -1;
    int rc = 0;
    for (size_t index = 0; rc == 0 && index < id_count; index++) {
        pl_room_t *room = &(*rooms_p) [*count_p];
        int found = pl_id_valid (ids [index])? pl_store_room_load (self, ids [index], room): PL_STORE_MISSING;
        if (found == PL_STORE_FAILED)
            rc = -1;
        else
        if (found == PL_STORE_OK && pl_rooms_member_index (room, user) >= 0) {
            rc = s_read_cursors (self, "roomId", room->id, room, 1) || s_room_summary (self, room, user);
            (*count_p)++;
            continue;
        }
        pl_rooms_room_reset (room);
    }
    if (rc) {
        pl_rooms_list_destroy (rooms_p, *count_p + 1);
        *count_p = 0;
    }
    return rc;
}

int
pl_store_rooms_count (pl_store_t *self, const char *user, int64_t *count)
{
    assert (self && user && count);
    //  FerretDB: countDocuments (an aggregate of $match and $group) answers
    //  as MongoDB does; it scans rooms where MongoDB uses the members index
    bson_t *filter = BCON_NEW ("members", BCON_UTF8 (user));
    bson_error_t error;
    *count = mongoc_collection_count_documents (self->rooms, filter, NULL, NULL, NULL, &error);
    bson_destroy (filter);
    if (*count < 0)
        return pl_store_failed ("rooms count", &error);
    return 0;
}


//  --------------------------------------------------------------------------
//  Members

int
pl_store_member_add (pl_store_t *self, const char *room_id, const char *user)
{
    assert (self && room_id && user);
    bson_error_t error;
    //  A new member starts unread: a cursor left by a READ that raced a
    //  removal goes
    bson_t *reads = BCON_NEW ("roomId", BCON_UTF8 (room_id), "userId", BCON_UTF8 (user));
    bool cleared = mongoc_collection_delete_many (self->reads, reads, NULL, NULL, &error);
    bson_destroy (reads);
    if (!cleared)
        return pl_store_failed ("read cursor reset", &error);
    //  Member document first, as in room insert
    char *users [] = { (char *) user };
    if (s_members_ensure (self, room_id, users, 1, &error))
        return pl_store_failed ("member insert", &error);
    //  $addToSet: adding twice at once lists the user once.
    //  FerretDB: supports $addToSet as MongoDB does.
    bson_t *selector = BCON_NEW ("_id", BCON_UTF8 (room_id));
    bson_t *update = BCON_NEW ("$addToSet", "{", "members", BCON_UTF8 (user), "}");
    int rc = 0;
    if (!mongoc_collection_update_one (self->rooms, selector, update, NULL, NULL, &error))
        rc = pl_store_failed ("member add", &error);
    bson_destroy (update);
    bson_destroy (selector);
    return rc;
}

int
pl_store_member_remove (pl_store_t *self, const char *room_id, const char *user)
{
    assert (self && room_id && user);
    //  Room first: it is the truth about membership; a member document
    //  left over by a failure is harmless (and reused on a later add)
    bson_t *selector = BCON_NEW ("_id", BCON_UTF8 (room_id));
    bson_t *update = BCON_NEW ("$pull", "{", "members", BCON_UTF8 (user), "}");
    char id [2 * PL_ID_MAX + 2];
    snprintf (id, sizeof id, "%s#%s", room_id, user);
    bson_t *member = BCON_NEW ("_id", BCON_UTF8 (id));
    bson_error_t error;
    int rc = 0;
    //  FerretDB: supports $pull of a plain value as MongoDB does
    if (!mongoc_collection_update_one (self->rooms, selector, update, NULL, NULL, &error))
        rc = pl_store_failed ("member remove", &error);
    else
    if (!mongoc_collection_delete_one (self->members, member, NULL, NULL, &error))
        rc = pl_store_failed ("member document remove", &error);
    else {
        //  Its read cursor goes too: a later add starts at 0
        bson_t *reads = BCON_NEW ("roomId", BCON_UTF8 (room_id), "userId", BCON_UTF8 (user));
        if (!mongoc_collection_delete_many (self->reads, reads, NULL, NULL, &error))
            rc = pl_store_failed ("read cursor remove", &error);
        bson_destroy (reads);
    }
    bson_destroy (member);
    bson_destroy (update);
    bson_destroy (selector);
    return rc;
}

static void
s_cursor_failed (pl_store_cursor_t *cursor, const char *error)
{
    cursor->result = -1;
    //  Driver messages run to 504 bytes; the start says enough
    snprintf (cursor->error, sizeof cursor->error, "%.*s", (int) sizeof cursor->error - 1, error);
}

//  The highest READ of each member in a batch: key "room#user" -> cursor.
//  Returns NULL when out of memory.
static zhashx_t *
s_cursors_coalesce (pl_store_cursor_t *cursors, size_t count)
{
    zhashx_t *highest = zhashx_new ();
    if (!highest)
        return NULL;
    for (size_t index = 0; index < count; index++) {
        pl_store_cursor_t *cursor = &cursors [index];
        cursor->result = 0;
        if (!pl_id_valid (cursor->room_id) || !pl_id_valid (cursor->user_id) || cursor->seq < 1) {
            s_cursor_failed (cursor, "invalid room id, user id or seq");
            continue;
        }
        char id [2 * PL_ID_MAX + 2];
        snprintf (id, sizeof id, "%s#%s", cursor->room_id, cursor->user_id);
        pl_store_cursor_t *known = (pl_store_cursor_t *) zhashx_lookup (highest, id);
        if (!known || known->seq < cursor->seq)
            zhashx_update (highest, id, cursor);
    }
    return highest;
}

//  A member's cursor to seq: the insert, and the removal of lower ones
//  (a concurrent writer of a higher seq never loses its document: nobody
//  removes a seq at or above their own)
static bool
s_bulk_add_cursor (mongoc_bulk_operation_t *bulk, const pl_store_cursor_t *cursor, bson_error_t *error)
{
    char id [2 * PL_ID_MAX + 24];
    snprintf (id, sizeof id, "%s#%s#%" PRId64, cursor->room_id, cursor->user_id, cursor->seq);
    bson_t *doc = BCON_NEW ("_id", BCON_UTF8 (id), "roomId", BCON_UTF8 (cursor->room_id),
                            "userId", BCON_UTF8 (cursor->user_id), "seq", BCON_INT64 (cursor->seq));
    bson_t *lower = BCON_NEW ("roomId", BCON_UTF8 (cursor->room_id), "userId", BCON_UTF8 (cursor->user_id),
                              "seq", "{", "$lt", BCON_INT64 (cursor->seq), "}");
    bool ok = mongoc_bulk_operation_insert_with_opts (bulk, doc, NULL, error)
           && mongoc_bulk_operation_remove_many_with_opts (bulk, lower, NULL, error);
    bson_destroy (lower);
    bson_destroy (doc);
    return ok;
}

int
pl_store_read_cursors (pl_store_t *self, pl_store_cursor_t *cursors, size_t count)
{
    assert (self);
    assert (cursors || count == 0);
    zhashx_t *highest = s_cursors_coalesce (cursors, count);
    if (!highest) {
        for (size_t index = 0; index < count; index++)
            s_cursor_failed (&cursors [index], "out of memory");
        return -1;
    }
    if (zhashx_size (highest) == 0) {
        zhashx_destroy (&highest);
        return 0;
    }
    //  FerretDB: unordered bulks of inserts and deletes behave as on
    //  MongoDB (duplicates reported as writeErrors code 11000)
    bson_t *options = BCON_NEW ("ordered", BCON_BOOL (false));
    mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts (self->reads, options);
    bson_destroy (options);
    bson_error_t error;
    bool ok = true;
    for (pl_store_cursor_t *cursor = (pl_store_cursor_t *) zhashx_first (highest); ok && cursor;
         cursor = (pl_store_cursor_t *) zhashx_next (highest))
        ok = s_bulk_add_cursor (bulk, cursor, &error);
    if (ok) {
        bson_t reply;
        ok = mongoc_bulk_operation_execute (bulk, &reply, &error) != 0 || s_only_duplicates (&error, &reply);
        bson_destroy (&reply);
    }
    mongoc_bulk_operation_destroy (bulk);
    zhashx_destroy (&highest);
    if (!ok) {
        pl_log_warning ("store: read cursors failed: %s", error.message);
        for (size_t index = 0; index < count; index++)
            if (cursors [index].result == 0)
                s_cursor_failed (&cursors [index], error.message);
        return -1;
    }
    return 0;
}


//  --------------------------------------------------------------------------
//  Selftest (run by pl_store_test)

//  A new room: members separated by spaces, the first one its creator
static void
s_test_room (pl_room_t *room, const char *id, const char *kind, const char *name, const char *members)
{
    memset (room, 0, sizeof *room);
    room->id = strdup (id);
    room->kind = strdup (kind);
    room->name = name? strdup (name): NULL;
    room->created_ms = 1795348800000LL;
    char *list = strdup (members);
    for (char *save, *user = strtok_r (list, " ", &save); user; user = strtok_r (NULL, " ", &save))
        pl_check (pl_rooms_member_push (room, user) == 0);
    room->created_by = strdup (room->members [0]);
    pl_rooms_member_sort (room);
    free (list);
}

//  Rooms as stored: a direct room is inserted once
static void
s_test_rooms (pl_store_t *self, const char *group_id)
{
    pl_room_t room;
    pl_check (pl_store_room_load (self, group_id, &room) == PL_STORE_OK);
    pl_check (streq_safe (room.id, group_id) && streq_safe (room.kind, "group"));
    pl_check (streq_safe (room.name, "Team") && streq_safe (room.created_by, "bob"));
    pl_check (room.member_count == 2 && streq_safe (room.members [0], "alice"));
    pl_check (room.created_ms == 1795348800000LL && !room.read_seqs);
    pl_check (pl_store_room_last_seq (self, &room) == 0 && room.last_seq == 1010);
    char *ids [] = { "g:000000000000000000000000", room.id };
    int64_t lasts [2] = { -1, -1 };
    pl_check (pl_store_rooms_last_seq (self, ids, 2, lasts) == 0);
    pl_check (lasts [0] == 0 && lasts [1] == 1010);
    pl_check (pl_store_room_read_seqs (self, &room) == 0);
    pl_check (room.read_seqs [0] == 0 && room.read_seqs [1] == 0);
    pl_rooms_room_reset (&room);
    pl_check (pl_store_room_load (self, "g:000000000000000000000000", &room) == PL_STORE_MISSING);
    pl_check (!room.id);

    s_test_room (&room, "d:pair", "direct", NULL, "alice bob");
    pl_check (pl_store_room_insert (self, &room) == PL_STORE_OK);
    pl_rooms_room_reset (&room);
    s_test_room (&room, "d:pair", "direct", NULL, "bob alice");
    room.created_ms++;
    pl_check (pl_store_room_insert (self, &room) == PL_STORE_EXISTED);
    pl_rooms_room_reset (&room);
    pl_check (pl_store_room_load (self, "d:pair", &room) == PL_STORE_OK);
    pl_check (room.created_ms == 1795348800000LL && streq_safe (room.created_by, "alice"));
    pl_check (!room.name && room.member_count == 2);
    pl_check (pl_store_room_last_seq (self, &room) == 0 && room.last_seq == 0);
    pl_rooms_room_reset (&room);
    s_test_room (&room, "g:x", "group", "x", "alice bob carol");
    pl_check (pl_store_room_insert (self, &room) == PL_STORE_OK);
    pl_rooms_room_reset (&room);
}

//  Read cursors move forward only; a user's rooms carry its cursor
static void
s_test_cursors (pl_store_t *self, const char *group_id)
{
    //  One batch: bob's highest wins, carol is no member, a bad id fails alone
    pl_store_cursor_t cursors [] = {
        { .room_id = group_id, .user_id = "bob", .seq = 300 },
        { .room_id = group_id, .user_id = "bob", .seq = 500 },
        { .room_id = group_id, .user_id = "bob", .seq = 400 },
        { .room_id = group_id, .user_id = "carol", .seq = 100 },
        { .room_id = group_id, .user_id = "bad id", .seq = 100 }
    };
    pl_check (pl_store_read_cursors (self, cursors, 5) == 0);
    for (int index = 0; index < 4; index++)
        pl_check (cursors [index].result == 0);
    pl_check (cursors [4].result == -1 && *cursors [4].error);
    //  Never back
    pl_store_cursor_t back = { .room_id = group_id, .user_id = "bob", .seq = 100 };
    pl_check (pl_store_read_cursors (self, &back, 1) == 0 && back.result == 0);
    pl_room_t room;
    pl_check (pl_store_room_load (self, group_id, &room) == PL_STORE_OK);
    pl_check (pl_store_room_read_seqs (self, &room) == 0);
    pl_check (room.read_seqs [pl_rooms_member_index (&room, "bob")] == 500);
    pl_check (room.read_seqs [pl_rooms_member_index (&room, "alice")] == 0);
    pl_rooms_room_reset (&room);

    pl_room_t *rooms;
    size_t count;
    pl_check (pl_store_rooms_of_user (self, "bob", &rooms, &count) == 0);
    pl_check (count == 3);
    for (size_t index = 1; index < count; index++)
        pl_check (strcmp (rooms [index - 1].id, rooms [index].id) < 0);
    bool seen_group = false;
    for (size_t index = 0; index < count; index++) {
        pl_room_t *entry = &rooms [index];
        int64_t read_seq = entry->read_seqs [pl_rooms_member_index (entry, "bob")];
        if (streq_safe (entry->id, group_id)) {
            //  Alice sent all 1,010: 510 after bob's cursor are unread
            pl_check (entry->last_seq == 1010 && read_seq == 500 && entry->unread == 510);
            json_t *last = entry->last_message;
            pl_check (last && json_integer_value (json_object_get (last, "seq")) == 1010);
            pl_check (entry->active_ms > entry->created_ms);
            seen_group = true;
        }
        else
            pl_check (entry->last_seq == 0 && read_seq == 0 && entry->unread == 0
                      && !entry->last_message && entry->active_ms == entry->created_ms);
    }
    pl_check (seen_group);
    pl_rooms_list_destroy (&rooms, count);
    //  Some rooms by id: only those that exist and list the user
    const char *ids [] = { group_id, "g:nothere", "bad id" };
    pl_check (pl_store_rooms_of_user_in (self, "bob", ids, 3, &rooms, &count) == 0);
    pl_check (count == 1 && streq_safe (rooms [0].id, group_id) && rooms [0].unread == 510);
    pl_rooms_list_destroy (&rooms, count);
    pl_check (pl_store_rooms_of_user_in (self, "zoe", ids, 3, &rooms, &count) == 0 && count == 0);
    pl_rooms_list_destroy (&rooms, count);
    pl_check (pl_store_rooms_of_user (self, "nobody", &rooms, &count) == 0 && count == 0);
    pl_rooms_list_destroy (&rooms, count);
}

static void
s_test_members_are (pl_store_t *self, const char *room_id, const char *expected)
{
    pl_room_t room;
    pl_check (pl_store_room_load (self, room_id, &room) == PL_STORE_OK);
    char list [256] = "";
    for (size_t index = 0; index < room.member_count; index++)
        snprintf (list + strlen (list), sizeof list - strlen (list), "%s%s", index? " ": "", room.members [index]);
    if (strcmp (list, expected))
        fprintf (stderr, "pl_store_test: members '%s', expected '%s'\n", list, expected);
    pl_check (strcmp (list, expected) == 0);
    pl_rooms_room_reset (&room);
}

//  Members come and go with their member documents
static void
s_test_members (pl_store_t *self, const char *group_id)
{
    pl_check (pl_store_member_add (self, group_id, "carol") == 0);
    s_test_members_are (self, group_id, "alice bob carol");
    pl_check (pl_store_member_add (self, group_id, "carol") == 0);
    s_test_members_are (self, group_id, "alice bob carol");
    pl_room_t room;
    pl_check (pl_store_room_load (self, group_id, &room) == PL_STORE_OK);
    pl_check (pl_store_room_read_seqs (self, &room) == 0 && room.read_seqs [2] == 0);
    pl_rooms_room_reset (&room);

    pl_check (pl_store_member_remove (self, group_id, "carol") == 0);
    s_test_members_are (self, group_id, "alice bob");
    pl_check (pl_store_member_remove (self, group_id, "bob") == 0);
    s_test_members_are (self, group_id, "alice");
    pl_room_t *rooms;
    size_t count;
    pl_check (pl_store_rooms_of_user (self, "bob", &rooms, &count) == 0 && count == 2);
    pl_rooms_list_destroy (&rooms, count);
    //  The removed member's document is gone: a re-add starts at readSeq 0
    pl_check (pl_store_member_add (self, group_id, "bob") == 0);
    pl_check (pl_store_room_load (self, group_id, &room) == PL_STORE_OK);
    pl_check (pl_store_room_read_seqs (self, &room) == 0);
    pl_check (room.read_seqs [pl_rooms_member_index (&room, "bob")] == 0);
    pl_rooms_room_reset (&room);
}

void
pl_store_rooms_test (pl_store_t *self, const char *room_id, bool verbose)
{
    pl_room_t group;
    s_test_room (&group, room_id, "group", "Team", "bob alice");
    pl_check (pl_store_room_insert (self, &group) == PL_STORE_OK);
    if (verbose)
        printf ("   group %s\n", group.id);
    s_test_rooms (self, group.id);
    s_test_cursors (self, group.id);
    s_test_members (self, group.id);
    pl_rooms_room_reset (&group);
}

void
pl_store_rooms_test_unreachable (pl_store_t *self)
{
    pl_room_t room;
    pl_check (pl_store_room_load (self, "g:x", &room) == PL_STORE_FAILED && !room.id);
    s_test_room (&room, "d:pair", "direct", NULL, "alice bob");
    pl_check (pl_store_room_insert (self, &room) == PL_STORE_FAILED);
    pl_check (pl_store_room_last_seq (self, &room) == -1);
    pl_check (pl_store_room_read_seqs (self, &room) == -1);
    pl_rooms_room_reset (&room);
    s_test_room (&room, "g:y", "group", "y", "alice");
    pl_check (pl_store_room_insert (self, &room) == PL_STORE_FAILED);
    pl_rooms_room_reset (&room);
    pl_room_t *rooms;
    size_t count;
    pl_check (pl_store_rooms_of_user (self, "alice", &rooms, &count) == -1 && !rooms && !count);
    pl_check (pl_store_member_add (self, "g:x", "carol") == -1);
    pl_check (pl_store_member_remove (self, "g:x", "alice") == -1);
    pl_store_cursor_t cursor = { .room_id = "g:x", .user_id = "alice", .seq = 5 };
    pl_check (pl_store_read_cursors (self, &cursor, 1) == -1 && cursor.result == -1);
}
