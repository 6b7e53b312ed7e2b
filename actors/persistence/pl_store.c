/*  =========================================================================
    pl_store - the MongoDB layer: messages, rooms and their members

    Production runs MongoDB 6+ (or FerretDB on PostgreSQL); tests run
    FerretDB 1.24 on SQLite. Only commands both support are used:
      insert (bulk, unordered)     same answers; FerretDB ignores writeConcern
      find with filter/sort/limit  same results; FerretDB on SQLite pushes
                                   only _id equality down, the rest scans
      update $max, $addToSet,      same
        $pull, $setOnInsert, upsert
      delete                       same
      createIndexes                same; unique works and reports 11000, but
                                   FerretDB on SQLite never uses an index on
                                   the array field members
      count (aggregate $match +    same
        $group $sum)
      dropDatabase                 same (the selftest only)
    Not ours but the driver's: endSessions on close, which FerretDB lacks;
    the driver only logs its error (see s_mongoc_log).
    Comments marked "FerretDB:" note each difference where it matters.
    This file: the client, the indexes, the messages collection;
    pl_store_rooms.c: the rooms and members collections.
    =========================================================================
*/
#include "pl_store_internal.h"
#include "pl_log.h"
#include "pl_util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
//  Small helpers

//  A string field of a document, or NULL when absent or not a string
const char *
pl_store_bson_str (const bson_t *doc, const char *key)
{
    bson_iter_t iter;
    if (bson_iter_init_find (&iter, doc, key) && BSON_ITER_HOLDS_UTF8 (&iter))
        return bson_iter_utf8 (&iter, NULL);
    return NULL;
}

//  A number field as int64 (0 when absent). The driver stores int64, but a
//  document written by hand (mongosh) may hold int32 or double.
int64_t
pl_store_bson_int64 (const bson_t *doc, const char *key)
{
    bson_iter_t iter;
    if (bson_iter_init_find (&iter, doc, key) && BSON_ITER_HOLDS_NUMBER (&iter))
        return bson_iter_as_int64 (&iter);
    return 0;
}

int64_t
pl_store_bson_date (const bson_t *doc, const char *key)
{
    bson_iter_t iter;
    if (bson_iter_init_find (&iter, doc, key) && BSON_ITER_HOLDS_DATE_TIME (&iter))
        return bson_iter_date_time (&iter);
    return 0;
}

//  A driver failure: log the details here, where they are known; callers
//  only learn that it failed
int
pl_store_failed (const char *what, const bson_error_t *error)
{
    pl_log_warning ("store: %s failed: %s (domain %" PRIu32 ", code %" PRIu32 ")",
                    what, error->message, error->domain, error->code);
    return PL_STORE_FAILED;
}

//  A duplicate key answered by the server (not a network error)
bool
pl_store_is_duplicate (const bson_error_t *error)
{
    return error->code == PL_STORE_DUPLICATE_KEY
        && (error->domain == MONGOC_ERROR_SERVER
        ||  error->domain == MONGOC_ERROR_COMMAND
        ||  error->domain == MONGOC_ERROR_COLLECTION);
}

//  True when a reply holds a non-empty array under key
bool
pl_store_has_items (const bson_t *reply, const char *key)
{
    bson_iter_t iter, child;
    return bson_iter_init_find (&iter, reply, key) && BSON_ITER_HOLDS_ARRAY (&iter)
        && bson_iter_recurse (&iter, &child) && bson_iter_next (&child);
}

static bool
s_utf8_valid (const char *text)
{
    return bson_utf8_validate (text, strlen (text), false);
}

//  The driver logs through us so its lines reach journald like ours
static void
s_mongoc_log (mongoc_log_level_t level, const char *domain, const char *message, void *user_data)
{
    (void) user_data;
    //  FerretDB: has no endSessions; the driver warns about it whenever a
    //  client closes. MongoDB supports it. Harmless either way.
    if (strstr (message, "endSessions"))
        pl_log_debug ("mongoc %s: %s", domain, message);
    else
    if (level <= MONGOC_LOG_LEVEL_ERROR)
        pl_log_error ("mongoc %s: %s", domain, message);
    else
    if (level == MONGOC_LOG_LEVEL_WARNING)
        pl_log_warning ("mongoc %s: %s", domain, message);
    else
    if (level != MONGOC_LOG_LEVEL_TRACE)
        pl_log_debug ("mongoc %s: %s", domain, message);
}

static pthread_once_t s_init_once = PTHREAD_ONCE_INIT;

//  mongoc_init is once-only itself; mongoc_cleanup is never called since
//  other stores of the process may still use the driver.
static void
s_init (void)
{
    mongoc_init ();
    mongoc_log_set_handler (s_mongoc_log, NULL);
}

//  MongoDB database names may not hold these, nor exceed 63 bytes
static bool
s_database_name_valid (const char *name)
{
    return name && *name && strlen (name) < 64 && !strpbrk (name, "/\\. \"$");
}


//  --------------------------------------------------------------------------
//  Create and destroy a store

//  "majority", a number of nodes 1..50, or NULL / "" (the URL's). Sets
//  *majority and *nodes. w:0 would hide duplicate keys and failures:
//  refused. Returns 0 or -1.
static int
s_write_concern_parse (const char *write_concern, bool *majority, long *nodes)
{
    *nodes = 0;
    *majority = streq_safe (write_concern, "majority");
    if (write_concern && *write_concern && !*majority) {
        char *end;
        *nodes = strtol (write_concern, &end, 10);
        if (*end || *nodes < 1 || *nodes > 50) {
            pl_log_error ("store: write concern must be \"majority\" or 1..50, not '%s'", write_concern);
            return -1;
        }
    }
    return 0;
}

//  The driver's defaults (30 s selection, 5 min socket) would hold a chat
//  request far longer than a client waits
static void
s_uri_defaults (mongoc_uri_t *uri)
{
    if (!mongoc_uri_has_option (uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
        mongoc_uri_set_option_as_int32 (uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
    if (!mongoc_uri_has_option (uri, MONGOC_URI_CONNECTTIMEOUTMS))
        mongoc_uri_set_option_as_int32 (uri, MONGOC_URI_CONNECTTIMEOUTMS, 5000);
    if (!mongoc_uri_has_option (uri, MONGOC_URI_SOCKETTIMEOUTMS))
        mongoc_uri_set_option_as_int32 (uri, MONGOC_URI_SOCKETTIMEOUTMS, 15000);
    if (!mongoc_uri_get_appname (uri))
        mongoc_uri_set_appname (uri, "parley");
}

//  wtimeout: a lost majority fails the write instead of hanging it.
//  FerretDB: ignores writeConcern (single node, always acknowledged).
static void
s_client_write_concern (mongoc_client_t *client, bool majority, long nodes)
{
    if (!majority && !nodes)
        return;
    mongoc_write_concern_t *concern = mongoc_write_concern_new ();
    if (majority)
        mongoc_write_concern_set_wmajority (concern, 10000);
    else {
        mongoc_write_concern_set_w (concern, (int32_t) nodes);
        mongoc_write_concern_set_wtimeout_int64 (concern, 10000);
    }
    mongoc_client_set_write_concern (client, concern);
    mongoc_write_concern_destroy (concern);
}

pl_store_t *
pl_store_new (const char *mongo_url, const char *database, const char *write_concern)
{
    pthread_once (&s_init_once, s_init);
    if (!s_database_name_valid (database)) {
        pl_log_error ("store: invalid database name '%s'", database? database: "(null)");
        return NULL;
    }
    long nodes;
    bool majority;
    if (s_write_concern_parse (write_concern, &majority, &nodes))
        return NULL;
    bson_error_t error;
    mongoc_uri_t *uri = mongoc_uri_new_with_error (mongo_url? mongo_url: "", &error);
    if (!uri) {
        pl_log_error ("store: invalid MongoDB URL: %s", error.message);
        return NULL;
    }
    s_uri_defaults (uri);
    mongoc_client_t *client = mongoc_client_new_from_uri_with_error (uri, &error);
    mongoc_uri_destroy (uri);
    if (!client) {
        pl_log_error ("store: cannot create MongoDB client: %s", error.message);
        return NULL;
    }
    //  A single-threaded client that found no server waits 5 s (its
    //  cooldown) before trying again: after an outage, queries keep
    //  failing for up to 5 s once the server is back.
    //  Version 2 reports server errors in domain MONGOC_ERROR_SERVER
    mongoc_client_set_error_api (client, MONGOC_ERROR_API_VERSION_2);
    s_client_write_concern (client, majority, nodes);
    pl_store_t *self = (pl_store_t *) calloc (1, sizeof (pl_store_t));
    if (!self) {
        mongoc_client_destroy (client);
        return NULL;
    }
    //  Handles take the client's write concern when they are made
    self->client = client;
    self->database = mongoc_client_get_database (client, database);
    self->messages = mongoc_client_get_collection (client, database, "messages");
    self->rooms = mongoc_client_get_collection (client, database, "rooms");
    self->members = mongoc_client_get_collection (client, database, "members");
    self->reads = mongoc_client_get_collection (client, database, "reads");
    return self;
}

void
pl_store_destroy (pl_store_t **self_p)
{
    assert (self_p);
    pl_store_t *self = *self_p;
    if (self) {
        mongoc_collection_destroy (self->reads);
        mongoc_collection_destroy (self->members);
        mongoc_collection_destroy (self->rooms);
        mongoc_collection_destroy (self->messages);
        mongoc_database_destroy (self->database);
        mongoc_client_destroy (self->client);
        free (self);
        *self_p = NULL;
    }
}


//  --------------------------------------------------------------------------
//  Create indexes

static int
s_create_index (mongoc_collection_t *collection, const char *name, const char *key_1,
                const char *key_2, bool unique)
{
    bson_t key = BSON_INITIALIZER;
    BSON_APPEND_INT32 (&key, key_1, 1);
    if (key_2)
        BSON_APPEND_INT32 (&key, key_2, 1);
    bson_t index = BSON_INITIALIZER;
    BSON_APPEND_DOCUMENT (&index, "key", &key);
    BSON_APPEND_UTF8 (&index, "name", name);
    //  Only when true: an index made by hand without "unique" then still
    //  counts as the same index
    if (unique)
        BSON_APPEND_BOOL (&index, "unique", true);
    bson_t *command = BCON_NEW ("createIndexes", BCON_UTF8 (mongoc_collection_get_name (collection)),
                                "indexes", "[", BCON_DOCUMENT (&index), "]");
    bson_t reply;
    bson_error_t error;
    //  Creating an existing index (same name and keys) is a no-op on both
    //  MongoDB and FerretDB ("all indexes already exist")
    bool ok = mongoc_collection_write_command_with_opts (collection, command, NULL, &reply, &error);
    if (!ok)
        pl_log_warning ("store: creating index %s.%s failed: %s",
                        mongoc_collection_get_name (collection), name, error.message);
    bson_destroy (&reply);
    bson_destroy (command);
    bson_destroy (&index);
    bson_destroy (&key);
    return ok? 0: -1;
}

int
pl_store_prepare (pl_store_t *self)
{
    assert (self);
    //  FerretDB: supports unique indexes on SQLite and PostgreSQL, and
    //  reports violations as code 11000 like MongoDB. An index on the array
    //  field members is accepted but, unlike MongoDB's multikey index, not
    //  used for {members: u} on SQLite (a scan).
    if (s_create_index (self->messages, "room_seq", "roomId", "seq", true)
    ||  s_create_index (self->rooms, "members_1", "members", NULL, false)
    ||  s_create_index (self->members, "userId_1", "userId", NULL, false)
    ||  s_create_index (self->members, "roomId_1", "roomId", NULL, false)
    ||  s_create_index (self->reads, "roomId_userId", "roomId", "userId", false)
    ||  s_create_index (self->reads, "userId_1", "userId", NULL, false))
        return -1;
    return 0;
}


//  --------------------------------------------------------------------------
//  Store messages

static void
s_message_failed (pl_store_message_t *message, const char *why)
{
    message->result = -1;
    //  Driver messages run to 504 bytes; the start says enough
    snprintf (message->error, sizeof message->error, "%.*s", (int) sizeof message->error - 1, why);
}

//  The _id derives from room and seq, so a redelivery is a duplicate
static void
s_message_id (const char *room_id, int64_t seq, char *id, size_t size)
{
    snprintf (id, size, "%s#%" PRId64, room_id, seq);
}

//  A duplicate key is a redelivery only if the stored message is this one.
//  Another message under the same seq means the seq was handed out twice:
//  Redis lost its last writes (see README, Redis durability) and the room's
//  counter went back. That entry fails, so it ends in the dead-letter
//  stream with this error instead of vanishing behind the old text.
//  One query for all duplicates of a batch; only runs when there are some.
static void
s_check_repeated (pl_store_t *self, pl_store_message_t **repeated, size_t count)
{
    bson_t filter = BSON_INITIALIZER, in, ids;
    BSON_APPEND_DOCUMENT_BEGIN (&filter, "_id", &in);
    BSON_APPEND_ARRAY_BEGIN (&in, "$in", &ids);
    for (size_t index = 0; index < count; index++) {
        char id [PL_ID_MAX + 24], key [24];
        const pl_room_message_t *message = &repeated [index]->message;
        s_message_id (message->room_id, message->seq, id, sizeof id);
        snprintf (key, sizeof key, "%zu", index);
        BSON_APPEND_UTF8 (&ids, key, id);
    }
    bson_append_array_end (&in, &ids);
    bson_append_document_end (&filter, &in);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts (self->messages, &filter, NULL, NULL);
    bool *matched = (bool *) calloc (count, sizeof (bool));
    const bson_t *doc;
    while (matched && mongoc_cursor_next (cursor, &doc)) {
        const char *room_id = pl_store_bson_str (doc, "roomId");
        int64_t seq = pl_store_bson_int64 (doc, "seq");
        const char *sender = pl_store_bson_str (doc, "senderId");
        const char *content = pl_store_bson_str (doc, "content");
        const char *client_msg_id = pl_store_bson_str (doc, "clientMsgId");
        for (size_t index = 0; index < count; index++) {
            const pl_room_message_t *message = &repeated [index]->message;
            if (message->seq != seq || !streq_safe (message->room_id, room_id))
                continue;
            matched [index] = true;
            const char *wanted = message->client_msg_id? message->client_msg_id: "";
            if (!streq_safe (message->sender_id, sender) || !streq_safe (message->content, content)
            ||  strcmp (wanted, client_msg_id? client_msg_id: ""))
                s_message_failed (repeated [index], "seq already taken by another message: Redis lost writes?");
        }
    }
    bson_error_t error;
    bool failed = mongoc_cursor_error (cursor, &error) || !matched;
    //  Unsure (the query failed, or the duplicate is gone): let it come again
    for (size_t index = 0; index < count; index++)
        if (failed || !matched [index])
            s_message_failed (repeated [index], failed? "duplicate check failed": "duplicate vanished");
    free (matched);
    mongoc_cursor_destroy (cursor);
    bson_destroy (&filter);
}

void
pl_store_message_bson (const pl_room_message_t *message, bson_t *doc)
{
    assert (message && doc);
    char id [PL_ID_MAX + 24];
    s_message_id (message->room_id, message->seq, id, sizeof id);
    BSON_APPEND_UTF8 (doc, "_id", id);
    BSON_APPEND_UTF8 (doc, "roomId", message->room_id);
    BSON_APPEND_INT64 (doc, "seq", message->seq);
    BSON_APPEND_UTF8 (doc, "type", message->type);
    BSON_APPEND_UTF8 (doc, "senderId", message->sender_id);
    BSON_APPEND_UTF8 (doc, "senderName", message->sender_name);
    BSON_APPEND_UTF8 (doc, "content", message->content);
    if (message->client_msg_id && *message->client_msg_id)
        BSON_APPEND_UTF8 (doc, "clientMsgId", message->client_msg_id);
    BSON_APPEND_DATE_TIME (doc, "createdAt", message->created_ms);
}

//  Check one entry and add its insert to the bulk. Returns 0 when added,
//  -1 when the entry failed alone (its error set).
static int
s_bulk_add_message (mongoc_bulk_operation_t *bulk, pl_store_message_t *entry)
{
    const pl_room_message_t *message = &entry->message;
    entry->result = 0;
    entry->error [0] = 0;
    if (!pl_id_valid (message->room_id) || message->seq < 0
    ||  !message->type || !message->sender_id || !message->sender_name || !message->content) {
        s_message_failed (entry, "invalid message");
        return -1;
    }
    //  Neither the driver nor FerretDB checks UTF-8 on insert, and text
    //  that is not UTF-8 could not be served as JSON later
    if (!s_utf8_valid (message->type) || !s_utf8_valid (message->sender_id)
    ||  !s_utf8_valid (message->sender_name) || !s_utf8_valid (message->content)
    ||  (message->client_msg_id && !s_utf8_valid (message->client_msg_id))) {
        s_message_failed (entry, "message text is not UTF-8");
        return -1;
    }
    bson_t doc = BSON_INITIALIZER;
    pl_store_message_bson (message, &doc);
    bson_error_t error;
    int rc = 0;
    if (!mongoc_bulk_operation_insert_with_opts (bulk, &doc, NULL, &error)) {
        s_message_failed (entry, error.message);
        rc = -1;
    }
    bson_destroy (&doc);
    return rc;
}

//  The entries of a bulk the server answered: operation n of the bulk is
//  entries [n]
typedef struct {
    pl_store_message_t **entries;
    size_t count;
} s_bulk_t;

//  Settle the writeErrors of a reply: a duplicate key goes to repeated
//  (checked afterwards), any other error fails its entry. Returns how many
//  duplicates there were (repeated may be NULL: out of memory).
static size_t
s_bulk_write_errors (const bson_t *reply, s_bulk_t *bulk, pl_store_message_t **repeated)
{
    size_t duplicates = 0;
    bson_iter_t iter, child;
    if (!bson_iter_init_find (&iter, reply, "writeErrors") || !bson_iter_recurse (&iter, &child))
        return 0;
    while (bson_iter_next (&child)) {
        bson_t entry;
        const uint8_t *data;
        uint32_t length;
        if (!BSON_ITER_HOLDS_DOCUMENT (&child))
            continue;
        bson_iter_document (&child, &length, &data);
        if (!bson_init_static (&entry, data, length))
            continue;
        //  index counts operations of this bulk (the driver renumbers when
        //  it splits a large bulk)
        int64_t operation = pl_store_bson_int64 (&entry, "index");
        if (operation < 0 || (size_t) operation >= bulk->count)
            continue;
        if (pl_store_bson_int64 (&entry, "code") == PL_STORE_DUPLICATE_KEY) {
            if (repeated)
                repeated [duplicates] = bulk->entries [operation];
            duplicates++;
            continue;
        }
        const char *why = pl_store_bson_str (&entry, "errmsg");
        s_message_failed (bulk->entries [operation], why? why: "write error");
    }
    return duplicates;
}

//  The server answered the bulk: settle each entry from its reply
static void
s_bulk_settle (pl_store_t *self, const bson_t *reply, const bson_error_t *error, s_bulk_t *bulk)
{
    pl_store_message_t **repeated = (pl_store_message_t **) calloc (bulk->count, sizeof (void *));
    size_t duplicates = s_bulk_write_errors (reply, bulk, repeated);
    if (duplicates) {
        pl_log_debug ("store: %zu of %zu messages were already stored", duplicates, bulk->count);
        if (repeated)
            s_check_repeated (self, repeated, duplicates);
        else
            for (size_t index = 0; index < bulk->count; index++)
                s_message_failed (bulk->entries [index], "out of memory");
    }
    free (repeated);
    if (pl_store_has_items (reply, "writeConcernErrors")) {
        //  Written but not confirmed as durable: report failure so the
        //  caller retries (which then meets duplicates)
        pl_log_warning ("store: write concern not met: %s", error->message);
        for (size_t index = 0; index < bulk->count; index++)
            if (bulk->entries [index]->result == 0)
                s_message_failed (bulk->entries [index], "write concern not met");
    }
}

//  Run the bulk. Returns 0 when the server answered, -1 when all failed.
static int
s_bulk_execute (pl_store_t *self, mongoc_bulk_operation_t *operation, s_bulk_t *bulk)
{
    bson_t reply;
    bson_error_t error;
    memset (&error, 0, sizeof error);
    bool ok = mongoc_bulk_operation_execute (operation, &reply, &error) != 0;
    //  Failed with per-entry errors from the server: look at each. Any other
    //  failure (network, selection, a refused command) fails all: the
    //  server may have stored some, but a retry of all is safe since
    //  duplicates succeed.
    bool answered = ok
        || ((pl_store_has_items (&reply, "writeErrors") || pl_store_has_items (&reply, "writeConcernErrors"))
        &&  (error.domain == MONGOC_ERROR_SERVER || error.domain == MONGOC_ERROR_COMMAND
        ||   error.domain == MONGOC_ERROR_WRITE_CONCERN));
    if (answered)
        s_bulk_settle (self, &reply, &error, bulk);
    else {
        pl_log_warning ("store: bulk insert of %zu failed: %s", bulk->count, error.message);
        for (size_t index = 0; index < bulk->count; index++)
            s_message_failed (bulk->entries [index], error.message);
    }
    bson_destroy (&reply);
    return answered? 0: -1;
}

int
pl_store_insert_messages (pl_store_t *self, pl_store_message_t *messages, size_t count)
{
    assert (self);
    assert (messages || count == 0);
    if (count == 0)
        return 0;
    s_bulk_t bulk = { (pl_store_message_t **) calloc (count, sizeof (void *)), 0 };
    if (!bulk.entries) {
        for (size_t index = 0; index < count; index++)
            s_message_failed (&messages [index], "out of memory");
        return -1;
    }
    //  FerretDB: honours ordered:false and ignores the write concern; it
    //  inserts the batch in one transaction and, when that fails, one by
    //  one, reporting each duplicate as writeErrors {index, code: 11000}
    //  and inserting the rest, as MongoDB answers (its errmsg names no
    //  index or key, which nothing here reads).
    bson_t *options = BCON_NEW ("ordered", BCON_BOOL (false));
    mongoc_bulk_operation_t *operation =
        mongoc_collection_create_bulk_operation_with_opts (self->messages, options);
    bson_destroy (options);
    for (size_t index = 0; index < count; index++)
        if (s_bulk_add_message (operation, &messages [index]) == 0)
            bulk.entries [bulk.count++] = &messages [index];
    int rc = bulk.count > 0? s_bulk_execute (self, operation, &bulk): 0;
    mongoc_bulk_operation_destroy (operation);
    free (bulk.entries);
    return rc;
}


//  --------------------------------------------------------------------------
//  Read messages

void
pl_store_message_from_bson (const bson_t *doc, pl_room_message_t *message)
{
    *message = (pl_room_message_t) {
        .room_id = pl_store_bson_str (doc, "roomId"),
        .seq = pl_store_bson_int64 (doc, "seq"),
        .type = pl_store_bson_str (doc, "type"),
        .sender_id = pl_store_bson_str (doc, "senderId"),
        .sender_name = pl_store_bson_str (doc, "senderName"),
        .content = pl_store_bson_str (doc, "content"),
        .client_msg_id = pl_store_bson_str (doc, "clientMsgId"),
        .created_ms = pl_store_bson_date (doc, "createdAt")
    };
}

//  One page of a room's messages: newest first below a bound (history),
//  or oldest first above one (resume). FerretDB: sort and limit give the
//  same result as on MongoDB; on SQLite both run in memory after a scan of
//  the room's messages, where MongoDB walks the room_seq index.
static int
s_messages_page (pl_store_t *self, const char *room_id, int64_t bound, bool ascending, int limit,
                 pl_store_message_fn *handler, void *arg)
{
    assert (self && room_id && handler);
    assert (limit >= 1);
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_UTF8 (&filter, "roomId", room_id);
    if (ascending || bound > 0) {
        bson_t range;
        BSON_APPEND_DOCUMENT_BEGIN (&filter, "seq", &range);
        BSON_APPEND_INT64 (&range, ascending? "$gt": "$lt", bound);
        bson_append_document_end (&filter, &range);
    }
    bson_t *options = BCON_NEW ("sort", "{", "seq", BCON_INT32 (ascending? 1: -1), "}",
                                "limit", BCON_INT64 (limit));
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts (self->messages, &filter, options, NULL);
    int rc = 0;
    const bson_t *doc;
    while (rc == 0 && mongoc_cursor_next (cursor, &doc)) {
        pl_room_message_t message;
        pl_store_message_from_bson (doc, &message);
        rc = handler (&message, arg);
    }
    bson_error_t error;
    if (mongoc_cursor_error (cursor, &error))
        rc = pl_store_failed ("history", &error);
    mongoc_cursor_destroy (cursor);
    bson_destroy (options);
    bson_destroy (&filter);
    return rc? -1: 0;
}

int
pl_store_messages_before (pl_store_t *self, const char *room_id, int64_t before, int limit,
                          pl_store_message_fn *handler, void *arg)
{
    return s_messages_page (self, room_id, before, false, limit, handler, arg);
}

int
pl_store_messages_after (pl_store_t *self, const char *room_id, int64_t after, int limit,
                         pl_store_message_fn *handler, void *arg)
{
    return s_messages_page (self, room_id, after < 0? 0: after, true, limit, handler, arg);
}

int64_t
pl_store_count_messages (pl_store_t *self, const char *room_id)
{
    assert (self);
    if (!pl_id_valid (room_id))
        return -1;
    //  FerretDB: count_documents ($match + $group $sum) is supported
    bson_t *filter = BCON_NEW ("roomId", BCON_UTF8 (room_id));
    bson_error_t error;
    int64_t count = mongoc_collection_count_documents (self->messages, filter, NULL, NULL, NULL, &error);
    if (count < 0)
        pl_log_warning ("store: counting messages of %s failed: %s", room_id, error.message);
    bson_destroy (filter);
    return count;
}


//  --------------------------------------------------------------------------
//  Selftest

static void
s_test_message (pl_store_message_t *entry, const char *room_id, int64_t seq)
{
    memset (entry, 0, sizeof *entry);
    pl_room_message_t *message = &entry->message;
    message->room_id = room_id;
    message->seq = seq;
    message->type = "TALK";
    message->sender_id = "alice";
    message->sender_name = "Alice";
    message->content = "hello";
    message->client_msg_id = seq % 3 == 0? NULL: seq % 3 == 1? "": "cid";
    message->created_ms = 1795348800000LL + seq;
    entry->result = 42;
}

//  A page as the store hands it out: each seq, whether it has a
//  clientMsgId, and every field of its first message
typedef struct {
    size_t size;
    int64_t seqs [16];
    bool client_msg_ids [16];
    char first [256];
} s_test_page_t;

static int
s_test_collect (const pl_room_message_t *message, void *arg)
{
    s_test_page_t *page = (s_test_page_t *) arg;
    pl_check (page->size < 16);
    if (page->size == 0)
        snprintf (page->first, sizeof page->first, "%s %s %s %s %s %s %" PRId64, message->room_id,
                  message->type, message->sender_id, message->sender_name, message->content,
                  message->client_msg_id? message->client_msg_id: "-", message->created_ms);
    page->client_msg_ids [page->size] = message->client_msg_id != NULL;
    page->seqs [page->size++] = message->seq;
    return 0;
}

static int
s_test_refuse (const pl_room_message_t *message, void *arg)
{
    (void) message;
    (void) arg;
    return -1;
}

//  A page of a room: newest first below before, or oldest first above after
static s_test_page_t
s_test_page (pl_store_t *self, const char *room_id, int64_t before, int64_t after, int limit)
{
    s_test_page_t page = { 0 };
    int rc = after? pl_store_messages_after (self, room_id, after, limit, s_test_collect, &page)
                  : pl_store_messages_before (self, room_id, before, limit, s_test_collect, &page);
    pl_check (rc == 0);
    return page;
}

//  1000 messages twice, mixed and refused entries, a seq handed out twice
static void
s_test_inserts (pl_store_t *self, const char *room_id, bool verbose)
{
    size_t count = 1000;
    pl_store_message_t *messages = (pl_store_message_t *) calloc (count, sizeof (pl_store_message_t));
    pl_check (messages);
    int64_t start = pl_mono_ms ();
    for (int round = 0; round < 2; round++) {
        for (size_t index = 0; index < count; index++)
            s_test_message (&messages [index], room_id, (int64_t) index + 1);
        pl_check (pl_store_insert_messages (self, messages, count) == 0);
        for (size_t index = 0; index < count; index++)
            pl_check (messages [index].result == 0);
        pl_check (pl_store_count_messages (self, room_id) == 1000);
    }
    if (verbose)
        printf ("   2 x 1000 inserts in %" PRId64 " ms\n", pl_mono_ms () - start);

    //  New and duplicate entries mixed, plus invalid ones
    for (size_t index = 0; index < 16; index++)
        s_test_message (&messages [index], room_id, 995 + (int64_t) index);     //  995..1010
    s_test_message (&messages [16], "bad room", 1);
    s_test_message (&messages [17], room_id, 2000);
    messages [17].message.content = "not UTF-8 \xff";
    s_test_message (&messages [18], room_id, -1);
    pl_check (pl_store_insert_messages (self, messages, 19) == 0);
    for (size_t index = 0; index < 16; index++)
        pl_check (messages [index].result == 0);
    for (size_t index = 16; index < 19; index++)
        pl_check (messages [index].result == -1 && *messages [index].error);
    if (verbose)
        printf ("   refused: %s / %s\n", messages [16].error, messages [17].error);
    pl_check (pl_store_count_messages (self, room_id) == 1010);
    pl_check (pl_store_count_messages (self, "nothing-here") == 0);
    pl_check (pl_store_count_messages (self, "not an id") == -1);
    pl_check (pl_store_insert_messages (self, messages, 0) == 0);

    //  Another message under a stored seq (Redis lost writes and handed the
    //  seq out again) is not a redelivery: it fails, and the stored one stays
    s_test_message (&messages [0], room_id, 1000);
    s_test_message (&messages [1], room_id, 1001);
    messages [1].message.content = "a different message";
    pl_check (pl_store_insert_messages (self, messages, 2) == 0);
    pl_check (messages [0].result == 0);
    pl_check (messages [1].result == -1 && strstr (messages [1].error, "seq already taken"));
    pl_check (pl_store_count_messages (self, room_id) == 1010);
    free (messages);
}

//  History pages newest first, resume pages oldest first
static void
s_test_pages (pl_store_t *self, const char *room_id)
{
    s_test_page_t page = s_test_page (self, room_id, 0, 0, 10);
    pl_check (page.size == 10 && page.seqs [0] == 1010 && page.seqs [9] == 1001);
    char first [256];                                   //  seq 1010: 1010 % 3 == 2, "cid"
    snprintf (first, sizeof first, "%s TALK alice Alice hello cid 1795348801010", room_id);
    pl_check (strcmp (page.first, first) == 0);
    pl_check (!page.client_msg_ids [1] && !page.client_msg_ids [2]);     //  1009: "", 1008: NULL
    page = s_test_page (self, room_id, 1001, 0, 5);
    pl_check (page.size == 5);
    for (size_t index = 0; index < 5; index++)
        pl_check (page.seqs [index] == 1000 - (int64_t) index);
    page = s_test_page (self, room_id, 0, 1005, 3);
    pl_check (page.size == 3);
    for (size_t index = 0; index < 3; index++)
        pl_check (page.seqs [index] == 1006 + (int64_t) index);
    page = s_test_page (self, room_id, 3, 0, 10);
    pl_check (page.size == 2 && page.seqs [1] == 1);
    //  after < 0 reads from the first
    page = s_test_page (self, room_id, 0, -7, 2);
    pl_check (page.size == 2 && page.seqs [0] == 1);
    page = s_test_page (self, "g:nothing", 0, 0, 10);
    pl_check (page.size == 0);
    pl_check (pl_store_messages_before (self, room_id, 0, 10, s_test_refuse, NULL) == -1);
}

//  A port bound and not listening: it refuses connections
static int
s_test_closed_port (int *socket_p)
{
    int socket_fd = socket (AF_INET, SOCK_STREAM, 0);
    pl_check (socket_fd >= 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t address_size = sizeof address;
    pl_check (bind (socket_fd, (struct sockaddr *) &address, sizeof address) == 0);
    pl_check (getsockname (socket_fd, (struct sockaddr *) &address, &address_size) == 0);
    *socket_p = socket_fd;
    return ntohs (address.sin_port);
}

//  A server that is not there: every call fails, none hangs
static void
s_test_unreachable (const char *database, bool verbose)
{
    int socket_fd;
    char closed_url [80];
    snprintf (closed_url, sizeof closed_url, "mongodb://127.0.0.1:%d/", s_test_closed_port (&socket_fd));
    //  Timeouts default to sane values unless the URL sets them
    pl_store_t *self = pl_store_new (closed_url, database, "2");
    pl_check (self);
    const mongoc_uri_t *uri = mongoc_client_get_uri (self->client);
    pl_check (mongoc_uri_get_option_as_int32 (uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 0) == 5000);
    pl_check (mongoc_uri_get_option_as_int32 (uri, MONGOC_URI_SOCKETTIMEOUTMS, 0) == 15000);
    pl_store_destroy (&self);
    strcat (closed_url, "?serverSelectionTimeoutMS=500");
    int64_t start = pl_mono_ms ();
    self = pl_store_new (closed_url, database, "majority");
    pl_check (self);
    uri = mongoc_client_get_uri (self->client);
    pl_check (mongoc_uri_get_option_as_int32 (uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 0) == 500);
    pl_check (pl_store_prepare (self) == -1);
    pl_store_rooms_test_unreachable (self);
    s_test_page_t page = { 0 };
    pl_check (pl_store_messages_before (self, "g:x", 0, 10, s_test_collect, &page) == -1);
    pl_check (pl_store_messages_after (self, "g:x", 0, 10, s_test_collect, &page) == -1);
    pl_store_message_t lost [2];
    s_test_message (&lost [0], "g:x", 1);
    s_test_message (&lost [1], "g:x", 2);
    pl_check (pl_store_insert_messages (self, lost, 2) == -1);
    pl_check (lost [0].result == -1 && lost [1].result == -1 && *lost [0].error);
    pl_check (pl_store_count_messages (self, "g:x") == -1);
    pl_store_destroy (&self);
    close (socket_fd);
    if (verbose)
        printf ("   unreachable server checks took %" PRId64 " ms\n", pl_mono_ms () - start);
}

void
pl_store_test (bool verbose)
{
    printf (" * pl_store: ");
    if (verbose)
        printf ("\n");
    const char *url = getenv ("PARLEY_TEST_MONGO_URL");
    if (!url || !*url) {
        fprintf (stderr, "pl_store_test: FAILED: set PARLEY_TEST_MONGO_URL to a MongoDB or FerretDB "
                 "server (e.g. mongodb://127.0.0.1:27117)\n");
        abort ();
    }
    char database [40] = "parley_test_";
    pl_random_hex (database + strlen (database), 8);

    //  Bad settings
    pl_check (!pl_store_new ("http://nowhere", database, "majority"));
    pl_check (!pl_store_new (url, "bad.name", "majority"));
    pl_check (!pl_store_new (url, database, "0"));
    pl_check (!pl_store_new (url, database, "many"));
    pl_store_t *self = pl_store_new (url, database, "1");
    pl_check (self);
    pl_store_destroy (&self);
    pl_store_destroy (&self);
    pl_check (!self);

    self = pl_store_new (url, database, "majority");
    pl_check (self);
    pl_check (pl_store_prepare (self) == 0);
    pl_check (pl_store_prepare (self) == 0);

    //  Messages of one room, then that room, its members and their cursors
    const char *room_id = "g:0123456789abcdef01234567";
    s_test_inserts (self, room_id, verbose);
    s_test_pages (self, room_id);
    pl_store_rooms_test (self, room_id, verbose);

    //  Drop the test database
    bson_error_t error;
    pl_check (mongoc_database_drop_with_opts (self->database, NULL, &error));
    pl_store_destroy (&self);
    s_test_unreachable (database, verbose);
    printf ("OK\n");
}
