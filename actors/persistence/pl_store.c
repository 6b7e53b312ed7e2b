/*  =========================================================================
    pl_store - the MongoDB layer: messages, rooms and their members

    Production runs MongoDB 6+ or FerretDB on PostgreSQL; tests run FerretDB
    1.24 on SQLite. Only commands all of them support are used: insert (bulk,
    unordered), find with sort/limit, update with $max/$addToSet/$pull/
    $setOnInsert, delete, createIndexes, count (aggregate $match+$group) and
    dropDatabase. Comments marked "FerretDB:" note where they differ.
    =========================================================================
*/
#include "pl_store.h"
#include "pl_log.h"
#include "pl_util.h"

#include <mongoc/mongoc.h>
#include <jansson.h>
#include <openssl/evp.h>

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

#define PL_STORE_NAME_MAX       100     //  characters of a group name
#define PL_STORE_DUPLICATE_KEY  11000

struct _pl_store_t {
    mongoc_client_t *client;
    mongoc_database_t *database;
    mongoc_collection_t *messages;
    mongoc_collection_t *rooms;
    mongoc_collection_t *members;
    int max_members;                    //  for member_add, 0: no limit
};

//  A growable list of strings (user ids)
typedef struct {
    char **items;
    size_t size;
    size_t capacity;
} s_list_t;

//  A room as stored
typedef struct {
    char *id;
    char *kind;
    char *name;                         //  NULL when null
    char *created_by;
    int64_t created_ms;
    s_list_t members;                   //  sorted
} s_room_t;


//  --------------------------------------------------------------------------
//  Small helpers

static int
s_list_push (s_list_t *self, const char *item)
{
    if (self->size == self->capacity) {
        size_t capacity = self->capacity? self->capacity * 2: 8;
        char **items = realloc (self->items, capacity * sizeof (char *));
        if (!items)
            return -1;
        self->items = items;
        self->capacity = capacity;
    }
    self->items [self->size] = strdup (item);
    if (!self->items [self->size])
        return -1;
    self->size++;
    return 0;
}

static bool
s_list_has (const s_list_t *self, const char *item)
{
    for (size_t index = 0; index < self->size; index++)
        if (streq_safe (self->items [index], item))
            return true;
    return false;
}

static int
s_compare_strings (const void *a, const void *b)
{
    return strcmp (*(char * const *) a, *(char * const *) b);
}

static void
s_list_sort (s_list_t *self)
{
    if (self->size > 1)
        qsort (self->items, self->size, sizeof (char *), s_compare_strings);
}

static void
s_list_free (s_list_t *self)
{
    for (size_t index = 0; index < self->size; index++)
        free (self->items [index]);
    free (self->items);
    memset (self, 0, sizeof *self);
}

static void
s_room_free (s_room_t *room)
{
    free (room->id);
    free (room->kind);
    free (room->name);
    free (room->created_by);
    s_list_free (&room->members);
    memset (room, 0, sizeof *room);
}

//  A string field of a document, or NULL when absent or not a string
static const char *
s_bson_str (const bson_t *doc, const char *key)
{
    bson_iter_t iter;
    if (bson_iter_init_find (&iter, doc, key) && BSON_ITER_HOLDS_UTF8 (&iter))
        return bson_iter_utf8 (&iter, NULL);
    return NULL;
}

//  A number field as int64 (0 when absent). The driver stores int64, but a
//  document written by hand (mongosh) may hold int32 or double.
static int64_t
s_bson_int64 (const bson_t *doc, const char *key)
{
    bson_iter_t iter;
    if (bson_iter_init_find (&iter, doc, key) && BSON_ITER_HOLDS_NUMBER (&iter))
        return bson_iter_as_int64 (&iter);
    return 0;
}

static int64_t
s_bson_date (const bson_t *doc, const char *key)
{
    bson_iter_t iter;
    if (bson_iter_init_find (&iter, doc, key) && BSON_ITER_HOLDS_DATE_TIME (&iter))
        return bson_iter_date_time (&iter);
    return 0;
}

//  A JSON string, or null for NULL or text that is not UTF-8
static json_t *
s_json_str (const char *text)
{
    json_t *json = text? json_string (text): NULL;
    return json? json: json_null ();
}

//  Serialize an answer (takes the reference) and return its status
static int
s_answer (char **json_p, int status, json_t *json)
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
    return s_answer (json_p, status, json_pack ("{s:s}", "error", message));
}

//  A driver failure: log the details, answer with a short message
static int
s_failed (char **json_p, const char *what, const bson_error_t *error)
{
    pl_log_warning ("store: %s failed: %s (domain %" PRIu32 ", code %" PRIu32 ")",
                    what, error->message, error->domain, error->code);
    return s_error (json_p, 503, "database unavailable, try again later");
}

//  A duplicate key answered by the server (not a network error)
static bool
s_is_duplicate (const bson_error_t *error)
{
    return error->code == PL_STORE_DUPLICATE_KEY
        && (error->domain == MONGOC_ERROR_SERVER
        ||  error->domain == MONGOC_ERROR_COMMAND
        ||  error->domain == MONGOC_ERROR_COLLECTION);
}

//  True when a reply holds a non-empty array under key
static bool
s_has_items (const bson_t *reply, const char *key)
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

//  "d:" + first 32 hex digits of SHA-256 ("<smaller>\n<larger>").
//  buffer holds at least 35 bytes. Returns 0 or -1.
static int
s_direct_id (const char *user_a, const char *user_b, char *buffer, size_t size)
{
    if (size < 35)
        return -1;
    const char *low = strcmp (user_a, user_b) < 0? user_a: user_b;
    const char *high = low == user_a? user_b: user_a;
    char text [2 * PL_ID_MAX + 2];
    int length = snprintf (text, sizeof text, "%s\n%s", low, high);
    unsigned char digest [EVP_MAX_MD_SIZE];
    unsigned int digest_size = 0;
    if (length < 0 || (size_t) length >= sizeof text
    ||  EVP_Digest (text, (size_t) length, digest, &digest_size, EVP_sha256 (), NULL) != 1
    ||  digest_size < 16)
        return -1;
    memcpy (buffer, "d:", 2);
    for (size_t index = 0; index < 16; index++)
        snprintf (buffer + 2 + 2 * index, 3, "%02x", digest [index]);
    return 0;
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
//  Create a store

pl_store_t *
pl_store_new (const char *mongo_url, const char *database, const char *write_concern)
{
    pthread_once (&s_init_once, s_init);
    if (!s_database_name_valid (database)) {
        pl_log_error ("store: invalid database name '%s'", database? database: "(null)");
        return NULL;
    }
    //  w:0 would hide duplicate keys and failures: refused
    long nodes = 0;
    bool majority = streq_safe (write_concern, "majority");
    if (write_concern && *write_concern && !majority) {
        char *end;
        nodes = strtol (write_concern, &end, 10);
        if (*end || nodes < 1 || nodes > 50) {
            pl_log_error ("store: write concern must be \"majority\" or 1..50, not '%s'", write_concern);
            return NULL;
        }
    }
    bson_error_t error;
    mongoc_uri_t *uri = mongoc_uri_new_with_error (mongo_url? mongo_url: "", &error);
    if (!uri) {
        pl_log_error ("store: invalid MongoDB URL: %s", error.message);
        return NULL;
    }
    //  The driver's defaults (30 s selection, 5 min socket) would hold a chat
    //  request far longer than a client waits
    if (!mongoc_uri_has_option (uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
        mongoc_uri_set_option_as_int32 (uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
    if (!mongoc_uri_has_option (uri, MONGOC_URI_CONNECTTIMEOUTMS))
        mongoc_uri_set_option_as_int32 (uri, MONGOC_URI_CONNECTTIMEOUTMS, 5000);
    if (!mongoc_uri_has_option (uri, MONGOC_URI_SOCKETTIMEOUTMS))
        mongoc_uri_set_option_as_int32 (uri, MONGOC_URI_SOCKETTIMEOUTMS, 15000);
    if (!mongoc_uri_get_appname (uri))
        mongoc_uri_set_appname (uri, "parley");

    mongoc_client_t *client = mongoc_client_new_from_uri_with_error (uri, &error);
    mongoc_uri_destroy (uri);
    if (!client) {
        pl_log_error ("store: cannot create MongoDB client: %s", error.message);
        return NULL;
    }
    //  A single-threaded client that found no server waits 5 s (its
    //  cooldown) before trying again: after an outage, answers stay 503 for
    //  up to 5 s once the server is back.
    //  Version 2 reports server errors in domain MONGOC_ERROR_SERVER
    mongoc_client_set_error_api (client, MONGOC_ERROR_API_VERSION_2);
    if (majority || nodes) {
        //  wtimeout: a lost majority fails the write instead of hanging it.
        //  FerretDB: ignores writeConcern (single node, always acknowledged).
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
    pl_store_t *self = calloc (1, sizeof (pl_store_t));
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
    return self;
}


//  --------------------------------------------------------------------------
//  Destroy a store

void
pl_store_destroy (pl_store_t **self_p)
{
    assert (self_p);
    pl_store_t *self = *self_p;
    if (self) {
        mongoc_collection_destroy (self->members);
        mongoc_collection_destroy (self->rooms);
        mongoc_collection_destroy (self->messages);
        mongoc_database_destroy (self->database);
        mongoc_client_destroy (self->client);
        free (self);
        *self_p = NULL;
    }
}

void
pl_store_set_max_members (pl_store_t *self, int max_members)
{
    assert (self);
    self->max_members = max_members > 0? max_members: 0;
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
    ||  s_create_index (self->members, "roomId_1", "roomId", NULL, false))
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
        snprintf (id, sizeof id, "%s#%" PRId64, repeated [index]->room_id, repeated [index]->seq);
        snprintf (key, sizeof key, "%zu", index);
        BSON_APPEND_UTF8 (&ids, key, id);
    }
    bson_append_array_end (&in, &ids);
    bson_append_document_end (&filter, &in);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts (self->messages, &filter, NULL, NULL);
    bool *matched = (bool *) calloc (count, sizeof (bool));
    const bson_t *doc;
    while (matched && mongoc_cursor_next (cursor, &doc)) {
        const char *room_id = s_bson_str (doc, "roomId");
        int64_t seq = s_bson_int64 (doc, "seq");
        const char *sender = s_bson_str (doc, "senderId");
        const char *content = s_bson_str (doc, "content");
        const char *client_msg_id = s_bson_str (doc, "clientMsgId");
        for (size_t index = 0; index < count; index++) {
            pl_store_message_t *message = repeated [index];
            if (message->seq != seq || !streq_safe (message->room_id, room_id))
                continue;
            matched [index] = true;
            const char *wanted = message->client_msg_id? message->client_msg_id: "";
            if (!streq_safe (message->sender_id, sender) || !streq_safe (message->content, content)
            ||  strcmp (wanted, client_msg_id? client_msg_id: ""))
                s_message_failed (message, "seq already taken by another message: Redis lost writes?");
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

int
pl_store_insert_messages (pl_store_t *self, pl_store_message_t *messages, size_t count)
{
    assert (self);
    assert (messages || count == 0);
    if (count == 0)
        return 0;

    //  bulk_index [n] is the input entry of bulk operation n
    size_t *bulk_index = calloc (count, sizeof (size_t));
    if (!bulk_index) {
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
    mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts (self->messages, options);
    bson_destroy (options);
    size_t operations = 0;
    for (size_t index = 0; index < count; index++) {
        pl_store_message_t *message = &messages [index];
        message->result = 0;
        message->error [0] = 0;
        if (!pl_id_valid (message->room_id) || message->seq < 0
        ||  !message->type || !message->sender_id || !message->sender_name || !message->content) {
            s_message_failed (message, "invalid message");
            continue;
        }
        //  Neither the driver nor FerretDB checks UTF-8 on insert, and text
        //  that is not UTF-8 could not be served as JSON later
        if (!s_utf8_valid (message->type) || !s_utf8_valid (message->sender_id)
        ||  !s_utf8_valid (message->sender_name) || !s_utf8_valid (message->content)
        ||  (message->client_msg_id && !s_utf8_valid (message->client_msg_id))) {
            s_message_failed (message, "message text is not UTF-8");
            continue;
        }
        //  The _id derives from room and seq, so a redelivery is a duplicate
        char id [PL_ID_MAX + 24];
        snprintf (id, sizeof id, "%s#%" PRId64, message->room_id, message->seq);
        bson_t doc = BSON_INITIALIZER;
        BSON_APPEND_UTF8 (&doc, "_id", id);
        BSON_APPEND_UTF8 (&doc, "roomId", message->room_id);
        BSON_APPEND_INT64 (&doc, "seq", message->seq);
        BSON_APPEND_UTF8 (&doc, "type", message->type);
        BSON_APPEND_UTF8 (&doc, "senderId", message->sender_id);
        BSON_APPEND_UTF8 (&doc, "senderName", message->sender_name);
        BSON_APPEND_UTF8 (&doc, "content", message->content);
        if (message->client_msg_id && *message->client_msg_id)
            BSON_APPEND_UTF8 (&doc, "clientMsgId", message->client_msg_id);
        BSON_APPEND_DATE_TIME (&doc, "createdAt", message->created_ms);
        bson_error_t error;
        if (mongoc_bulk_operation_insert_with_opts (bulk, &doc, NULL, &error))
            bulk_index [operations++] = index;
        else
            s_message_failed (message, error.message);
        bson_destroy (&doc);
    }
    int rc = 0;
    if (operations > 0) {
        bson_t reply;
        bson_error_t error;
        memset (&error, 0, sizeof error);
        bool ok = mongoc_bulk_operation_execute (bulk, &reply, &error) != 0;
        bool write_errors = s_has_items (&reply, "writeErrors");
        bool concern_errors = s_has_items (&reply, "writeConcernErrors");
        //  Failed with per-entry errors from the server: look at each. Any
        //  other failure (network, selection, a refused command) fails all:
        //  the server may have stored some, but a retry of all is safe since
        //  duplicates succeed.
        bool answered = ok
            || ((write_errors || concern_errors)
            &&  (error.domain == MONGOC_ERROR_SERVER || error.domain == MONGOC_ERROR_COMMAND
            ||   error.domain == MONGOC_ERROR_WRITE_CONCERN));
        if (!answered) {
            pl_log_warning ("store: bulk insert of %zu failed: %s", operations, error.message);
            for (size_t index = 0; index < operations; index++)
                s_message_failed (&messages [bulk_index [index]], error.message);
            rc = -1;
        }
        else {
            size_t duplicates = 0;
            pl_store_message_t **repeated = (pl_store_message_t **) calloc (operations, sizeof (void *));
            bson_iter_t iter, child;
            if (write_errors && bson_iter_init_find (&iter, &reply, "writeErrors")
            &&  bson_iter_recurse (&iter, &child))
                while (bson_iter_next (&child)) {
                    bson_t entry;
                    const uint8_t *data;
                    uint32_t length;
                    if (!BSON_ITER_HOLDS_DOCUMENT (&child))
                        continue;
                    bson_iter_document (&child, &length, &data);
                    if (!bson_init_static (&entry, data, length))
                        continue;
                    //  index counts operations of this bulk (the driver
                    //  renumbers when it splits a large bulk)
                    int64_t operation = s_bson_int64 (&entry, "index");
                    if (operation < 0 || (size_t) operation >= operations)
                        continue;
                    if (s_bson_int64 (&entry, "code") == PL_STORE_DUPLICATE_KEY) {
                        //  stored by an earlier delivery: checked below
                        if (repeated)
                            repeated [duplicates] = &messages [bulk_index [operation]];
                        duplicates++;
                        continue;
                    }
                    const char *why = s_bson_str (&entry, "errmsg");
                    s_message_failed (&messages [bulk_index [operation]], why? why: "write error");
                }
            if (duplicates) {
                pl_log_debug ("store: %zu of %zu messages were already stored", duplicates, operations);
                if (repeated)
                    s_check_repeated (self, repeated, duplicates);
                else
                    for (size_t index = 0; index < operations; index++)
                        s_message_failed (&messages [bulk_index [index]], "out of memory");
            }
            free (repeated);
            if (concern_errors) {
                //  Written but not confirmed as durable: report failure so
                //  the caller retries (which then meets duplicates)
                pl_log_warning ("store: write concern not met: %s", error.message);
                for (size_t index = 0; index < operations; index++)
                    if (messages [bulk_index [index]].result == 0)
                        s_message_failed (&messages [bulk_index [index]], "write concern not met");
            }
        }
        bson_destroy (&reply);
    }
    mongoc_bulk_operation_destroy (bulk);
    free (bulk_index);
    return rc;
}


//  --------------------------------------------------------------------------
//  Move a read cursor forward

int
pl_store_read_cursor (pl_store_t *self, const char *room_id, const char *user_id, int64_t seq)
{
    assert (self);
    if (!pl_id_valid (room_id) || !pl_id_valid (user_id))
        return -1;
    char id [2 * PL_ID_MAX + 2];
    snprintf (id, sizeof id, "%s#%s", room_id, user_id);
    //  No upsert: a late acknowledgement must not revive a removed member.
    //  FerretDB: $max behaves as on MongoDB (no change when not greater).
    bson_t *selector = BCON_NEW ("_id", BCON_UTF8 (id));
    bson_t *update = BCON_NEW ("$max", "{", "readSeq", BCON_INT64 (seq), "}");
    bson_error_t error;
    bool ok = mongoc_collection_update_one (self->members, selector, update, NULL, NULL, &error);
    if (!ok)
        pl_log_warning ("store: read cursor of %s failed: %s", id, error.message);
    bson_destroy (update);
    bson_destroy (selector);
    return ok? 0: -1;
}


//  --------------------------------------------------------------------------
//  Queries

//  Find one document. Returns 1 (and a copy in *doc_p), 0 none, -1 failed.
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
    int rc = 0;
    *doc_p = NULL;
    if (mongoc_cursor_next (cursor, &doc)) {
        *doc_p = bson_copy (doc);
        rc = 1;
    }
    else
    if (mongoc_cursor_error (cursor, error))
        rc = -1;
    mongoc_cursor_destroy (cursor);
    bson_destroy (&options);
    return rc;
}

//  Read a room document. Returns 0, or -1 when out of memory (room freed).
static int
s_room_parse (const bson_t *doc, s_room_t *room)
{
    memset (room, 0, sizeof *room);
    const char *id = s_bson_str (doc, "_id");
    const char *kind = s_bson_str (doc, "kind");
    const char *name = s_bson_str (doc, "name");
    const char *created_by = s_bson_str (doc, "createdBy");
    room->id = strdup (id? id: "");
    room->kind = strdup (kind? kind: "group");
    room->name = name? strdup (name): NULL;
    room->created_by = strdup (created_by? created_by: "");
    room->created_ms = s_bson_date (doc, "createdAt");
    bool failed = !room->id || !room->kind || (name && !room->name) || !room->created_by;
    bson_iter_t iter, child;
    if (bson_iter_init_find (&iter, doc, "members") && BSON_ITER_HOLDS_ARRAY (&iter)
    &&  bson_iter_recurse (&iter, &child))
        while (bson_iter_next (&child))
            if (BSON_ITER_HOLDS_UTF8 (&child)
            &&  s_list_push (&room->members, bson_iter_utf8 (&child, NULL)))
                failed = true;
    s_list_sort (&room->members);
    if (failed)
        s_room_free (room);
    return failed? -1: 0;
}

//  Load a room. Returns 1 found, 0 unknown, -1 failed (error set).
static int
s_room_load (pl_store_t *self, const char *room_id, s_room_t *room, bson_error_t *error)
{
    memset (room, 0, sizeof *room);
    bson_t *filter = BCON_NEW ("_id", BCON_UTF8 (room_id));
    bson_t *doc;
    int rc = s_find_one (self->rooms, filter, NULL, &doc, error);
    bson_destroy (filter);
    if (rc == 1) {
        if (s_room_parse (doc, room)) {
            bson_set_error (error, MONGOC_ERROR_CLIENT, 0, "out of memory");
            rc = -1;
        }
        bson_destroy (doc);
    }
    return rc;
}

//  Highest stored seq of a room, 0 if none. Returns 0 or -1.
//  FerretDB: on SQLite only _id equality is pushed down, so this and the
//  history query scan and sort messages in memory; MongoDB uses room_seq.
static int
s_last_seq (pl_store_t *self, const char *room_id, int64_t *seq_p, bson_error_t *error)
{
    bson_t *filter = BCON_NEW ("roomId", BCON_UTF8 (room_id));
    bson_t *sort = BCON_NEW ("seq", BCON_INT32 (-1));
    bson_t *doc;
    int rc = s_find_one (self->messages, filter, sort, &doc, error);
    *seq_p = 0;
    if (rc == 1) {
        *seq_p = s_bson_int64 (doc, "seq");
        bson_destroy (doc);
    }
    bson_destroy (sort);
    bson_destroy (filter);
    return rc < 0? -1: 0;
}

static json_t *
s_room_json (const s_room_t *room, int64_t last_seq)
{
    json_t *members = json_array ();
    for (size_t index = 0; index < room->members.size; index++)
        json_array_append_new (members, s_json_str (room->members.items [index]));
    char created [32];
    pl_iso8601 (room->created_ms, created, sizeof created);
    json_t *json = json_object ();
    json_object_set_new (json, "id", s_json_str (room->id));
    json_object_set_new (json, "kind", s_json_str (room->kind));
    json_object_set_new (json, "name", s_json_str (room->name));
    json_object_set_new (json, "members", members);
    json_object_set_new (json, "lastSeq", json_integer (last_seq));
    json_object_set_new (json, "createdAt", json_string (created));
    return json;
}

//  Answer with a room's JSON (lastSeq looked up)
static int
s_room_answer (pl_store_t *self, const s_room_t *room, int status, char **json_p)
{
    int64_t last_seq;
    bson_error_t error;
    if (s_last_seq (self, room->id, &last_seq, &error))
        return s_failed (json_p, "last seq", &error);
    return s_answer (json_p, status, s_room_json (room, last_seq));
}

//  Reload a room after a change and answer with it
static int
s_room_reload_answer (pl_store_t *self, const char *room_id, char **json_p)
{
    s_room_t room;
    bson_error_t error;
    int found = s_room_load (self, room_id, &room, &error);
    if (found < 0)
        return s_failed (json_p, "room lookup", &error);
    if (found == 0)
        return s_error (json_p, 404, "room not found");
    int status = s_room_answer (self, &room, 200, json_p);
    s_room_free (&room);
    return status;
}

//  Load a room the caller belongs to. Returns 0 with the room loaded, or an
//  HTTP status with *json_p set.
static int
s_room_of_member (pl_store_t *self, const char *caller, const char *room_id, s_room_t *room, char **json_p)
{
    memset (room, 0, sizeof *room);
    if (!pl_id_valid (room_id))
        return s_error (json_p, 404, "room not found");
    bson_error_t error;
    int found = s_room_load (self, room_id, room, &error);
    if (found < 0)
        return s_failed (json_p, "room lookup", &error);
    if (found == 0)
        return s_error (json_p, 404, "room not found");
    if (!s_list_has (&room->members, caller)) {
        s_room_free (room);
        return s_error (json_p, 403, "you are not a member of this room");
    }
    return 0;
}

//  Create member documents for users (upserts, so repeating is harmless;
//  readSeq of an existing member is kept). Returns 0 or -1.
static int
s_members_ensure (pl_store_t *self, const char *room_id, const s_list_t *users, bson_error_t *error)
{
    bson_t *options = BCON_NEW ("ordered", BCON_BOOL (false));
    mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts (self->members, options);
    bson_destroy (options);
    bson_t *upsert = BCON_NEW ("upsert", BCON_BOOL (true));
    bool ok = true;
    for (size_t index = 0; ok && index < users->size; index++) {
        char id [2 * PL_ID_MAX + 2];
        snprintf (id, sizeof id, "%s#%s", room_id, users->items [index]);
        bson_t *selector = BCON_NEW ("_id", BCON_UTF8 (id));
        //  FerretDB: $setOnInsert and upserts with an _id selector work as on MongoDB
        bson_t *update = BCON_NEW ("$setOnInsert", "{",
                                       "roomId", BCON_UTF8 (room_id),
                                       "userId", BCON_UTF8 (users->items [index]),
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
        if (!ok && s_is_duplicate (error) && !s_has_items (&reply, "writeConcernErrors")) {
            ok = true;
            bson_iter_t iter, child;
            if (bson_iter_init_find (&iter, &reply, "writeErrors") && bson_iter_recurse (&iter, &child))
                while (bson_iter_next (&child)) {
                    bson_iter_t code;
                    if (!bson_iter_recurse (&child, &code) || !bson_iter_find (&code, "code")
                    ||  bson_iter_as_int64 (&code) != PL_STORE_DUPLICATE_KEY)
                        ok = false;
                }
        }
        bson_destroy (&reply);
    }
    bson_destroy (upsert);
    mongoc_bulk_operation_destroy (bulk);
    return ok? 0: -1;
}


//  --------------------------------------------------------------------------
//  POST /api/rooms

int
pl_store_room_create (pl_store_t *self, const char *caller, const char *body, size_t body_size,
                      int max_members, char **json_p)
{
    assert (self);
    assert (json_p);
    if (!pl_id_valid (caller))
        return s_error (json_p, 400, "invalid caller id");
    json_error_t json_error;
    json_t *request = body? json_loadb (body, body_size, 0, &json_error): NULL;
    if (!json_is_object (request)) {
        json_decref (request);
        return s_error (json_p, 400, "body must be a JSON object");
    }
    int status = 0;
    const char *kind = json_string_value (json_object_get (request, "kind"));
    json_t *name = json_object_get (request, "name");
    json_t *members = json_object_get (request, "members");
    bool direct = streq_safe (kind, "direct");
    s_list_t users = { 0 };             //  caller + members, no repeats

    if (!direct && !streq_safe (kind, "group"))
        status = s_error (json_p, 400, "kind must be \"direct\" or \"group\"");
    else
    if (!json_is_array (members))
        status = s_error (json_p, 400, "members must be an array of user ids");
    else {
        if (s_list_push (&users, caller))
            status = s_error (json_p, 503, "out of memory");
        size_t index;
        json_t *member;
        json_array_foreach (members, index, member) {
            if (status)
                break;
            const char *user = json_string_value (member);
            if (!pl_id_valid (user))
                status = s_error (json_p, 400, "members must be valid user ids (1..64 of A-Z a-z 0-9 _ . : @ -)");
            else
            if (!s_list_has (&users, user) && s_list_push (&users, user))
                status = s_error (json_p, 503, "out of memory");
        }
    }
    if (!status && direct) {
        if (users.size != 2)
            status = s_error (json_p, 400, "a direct room needs exactly one other member");
        else
        if (name && !json_is_null (name))
            status = s_error (json_p, 400, "a direct room has no name");
    }
    if (!status && !direct) {
        const char *text = json_string_value (name);
        size_t length = text? s_utf8_length (text): 0;
        if (length < 1 || length > PL_STORE_NAME_MAX)
            status = s_error (json_p, 400, "name must be a string of 1 to 100 characters");
        else
        if (users.size > (size_t) (max_members > 0? max_members: 0)) {
            char message [80];
            snprintf (message, sizeof message, "a group has at most %d members", max_members);
            status = s_error (json_p, 400, message);
        }
    }
    if (status) {
        s_list_free (&users);
        json_decref (request);
        return status;
    }

    s_room_t room = { 0 };
    char id [40];
    if (direct) {
        if (s_direct_id (users.items [0], users.items [1], id, sizeof id)) {
            s_list_free (&users);
            json_decref (request);
            return s_error (json_p, 503, "cannot hash the room id");
        }
    }
    else {
        memcpy (id, "g:", 2);
        pl_random_hex (id + 2, 12);
    }
    s_list_sort (&users);
    room.id = id;
    room.kind = direct? "direct": "group";
    room.name = direct? NULL: (char *) json_string_value (name);
    room.created_by = (char *) caller;
    room.created_ms = pl_clock_ms ();
    room.members = users;

    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_UTF8 (&doc, "_id", room.id);
    BSON_APPEND_UTF8 (&doc, "kind", room.kind);
    if (room.name)
        BSON_APPEND_UTF8 (&doc, "name", room.name);
    else
        BSON_APPEND_NULL (&doc, "name");
    bson_t array;
    BSON_APPEND_ARRAY_BEGIN (&doc, "members", &array);
    for (size_t index = 0; index < users.size; index++) {
        char key [16];
        const char *key_p;
        bson_uint32_to_string ((uint32_t) index, &key_p, key, sizeof key);
        bson_append_utf8 (&array, key_p, -1, users.items [index], -1);
    }
    bson_append_array_end (&doc, &array);
    BSON_APPEND_UTF8 (&doc, "createdBy", room.created_by);
    BSON_APPEND_DATE_TIME (&doc, "createdAt", room.created_ms);

    bson_error_t error;
    if (direct) {
        //  The id is the pair's, so a second create meets a duplicate key:
        //  the room exists (also when both users ask at the same time).
        //  Member documents are ensured either way, which repairs a create
        //  that failed between the two writes.
        status = 201;
        if (!mongoc_collection_insert_one (self->rooms, &doc, NULL, NULL, &error)) {
            if (s_is_duplicate (&error))
                status = 200;
            else
                status = s_failed (json_p, "room insert", &error);
        }
        if (status != 503 && s_members_ensure (self, room.id, &users, &error))
            status = s_failed (json_p, "member insert", &error);
        if (status == 201)
            status = s_answer (json_p, 201, s_room_json (&room, 0));
        else
        if (status == 200)
            status = s_room_reload_answer (self, room.id, json_p);
    }
    else {
        //  Members first: a room never lists someone without a member
        //  document; if the room insert fails the orphans are removed
        if (s_members_ensure (self, room.id, &users, &error))
            status = s_failed (json_p, "member insert", &error);
        else
        if (!mongoc_collection_insert_one (self->rooms, &doc, NULL, NULL, &error)) {
            status = s_failed (json_p, "room insert", &error);
            bson_t *filter = BCON_NEW ("roomId", BCON_UTF8 (room.id));
            mongoc_collection_delete_many (self->members, filter, NULL, NULL, NULL);
            bson_destroy (filter);
        }
        else
            status = s_answer (json_p, 201, s_room_json (&room, 0));
    }
    bson_destroy (&doc);
    s_list_free (&users);
    json_decref (request);
    return status;
}


//  --------------------------------------------------------------------------
//  GET /api/rooms/{id}

int
pl_store_room_get (pl_store_t *self, const char *caller, const char *room_id, char **json_p)
{
    assert (self);
    assert (json_p);
    s_room_t room;
    int status = s_room_of_member (self, caller, room_id, &room, json_p);
    if (status)
        return status;

    //  readSeq of every member document of the room, by user
    json_t *read_seq = json_object ();
    bson_t *filter = BCON_NEW ("roomId", BCON_UTF8 (room_id));
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts (self->members, filter, NULL, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next (cursor, &doc)) {
        const char *user = s_bson_str (doc, "userId");
        if (user && s_list_has (&room.members, user))
            json_object_set_new (read_seq, user, json_integer (s_bson_int64 (doc, "readSeq")));
    }
    bson_error_t error;
    int64_t last_seq = 0;
    if (mongoc_cursor_error (cursor, &error) || s_last_seq (self, room_id, &last_seq, &error))
        status = s_failed (json_p, "room read cursors", &error);
    else {
        //  Members in order, 0 for one whose member document is missing
        json_t *ordered = json_object ();
        for (size_t index = 0; index < room.members.size; index++) {
            const char *user = room.members.items [index];
            json_t *value = json_object_get (read_seq, user);
            json_object_set_new (ordered, user, value? json_incref (value): json_integer (0));
        }
        json_t *json = s_room_json (&room, last_seq);
        json_object_set_new (json, "readSeq", ordered);
        status = s_answer (json_p, 200, json);
    }
    mongoc_cursor_destroy (cursor);
    bson_destroy (filter);
    json_decref (read_seq);
    s_room_free (&room);
    return status;
}


//  --------------------------------------------------------------------------
//  GET /api/rooms

int
pl_store_rooms_of_user (pl_store_t *self, const char *caller, char **json_p)
{
    assert (self);
    assert (json_p);
    if (!pl_id_valid (caller))
        return s_error (json_p, 400, "invalid caller id");
    bson_error_t error;

    //  The caller's read cursors, by room
    json_t *read_seq = json_object ();
    bson_t *filter = BCON_NEW ("userId", BCON_UTF8 (caller));
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts (self->members, filter, NULL, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next (cursor, &doc)) {
        const char *room_id = s_bson_str (doc, "roomId");
        if (room_id)
            json_object_set_new (read_seq, room_id, json_integer (s_bson_int64 (doc, "readSeq")));
    }
    bool failed = mongoc_cursor_error (cursor, &error);
    mongoc_cursor_destroy (cursor);
    bson_destroy (filter);
    if (failed) {
        json_decref (read_seq);
        return s_failed (json_p, "read cursors", &error);
    }

    //  The rooms listing the caller (rooms, not member documents, are the
    //  truth about membership); FerretDB: {members: u} matches array
    //  elements as on MongoDB. Collected first, then lastSeq of each.
    s_room_t *rooms = NULL;
    size_t size = 0, capacity = 0;
    filter = BCON_NEW ("members", BCON_UTF8 (caller));
    bson_t *options = BCON_NEW ("sort", "{", "_id", BCON_INT32 (1), "}");
    cursor = mongoc_collection_find_with_opts (self->rooms, filter, options, NULL);
    while (!failed && mongoc_cursor_next (cursor, &doc)) {
        if (size == capacity) {
            capacity = capacity? capacity * 2: 16;
            s_room_t *bigger = realloc (rooms, capacity * sizeof (s_room_t));
            if (!bigger) {
                failed = true;
                break;
            }
            rooms = bigger;
        }
        if (s_room_parse (doc, &rooms [size]) == 0)
            size++;
        else
            failed = true;
    }
    if (mongoc_cursor_error (cursor, &error))
        failed = true;
    else
    if (failed)
        bson_set_error (&error, MONGOC_ERROR_CLIENT, 0, "out of memory");
    mongoc_cursor_destroy (cursor);
    bson_destroy (options);
    bson_destroy (filter);

    json_t *array = json_array ();
    for (size_t index = 0; index < size; index++) {
        s_room_t *room = &rooms [index];
        int64_t last_seq = 0;
        if (!failed && s_last_seq (self, room->id, &last_seq, &error))
            failed = true;
        if (!failed) {
            json_t *json = s_room_json (room, last_seq);
            int64_t unread = last_seq - json_integer_value (json_object_get (read_seq, room->id));
            json_object_set_new (json, "unread", json_integer (unread > 0? unread: 0));
            json_array_append_new (array, json);
        }
        s_room_free (room);
    }
    free (rooms);
    json_decref (read_seq);
    if (failed) {
        json_decref (array);
        return s_failed (json_p, "rooms of user", &error);
    }
    return s_answer (json_p, 200, array);
}


//  --------------------------------------------------------------------------
//  GET /api/rooms/{id}/messages

static json_t *
s_message_json (const bson_t *doc)
{
    json_t *json = json_object ();
    char created [32];
    pl_iso8601 (s_bson_date (doc, "createdAt"), created, sizeof created);
    json_object_set_new (json, "roomId", s_json_str (s_bson_str (doc, "roomId")));
    json_object_set_new (json, "seq", json_integer (s_bson_int64 (doc, "seq")));
    json_object_set_new (json, "type", s_json_str (s_bson_str (doc, "type")));
    json_object_set_new (json, "senderId", s_json_str (s_bson_str (doc, "senderId")));
    json_object_set_new (json, "senderName", s_json_str (s_bson_str (doc, "senderName")));
    json_object_set_new (json, "content", s_json_str (s_bson_str (doc, "content")));
    const char *client_msg_id = s_bson_str (doc, "clientMsgId");
    if (client_msg_id)
        json_object_set_new (json, "clientMsgId", s_json_str (client_msg_id));
    json_object_set_new (json, "createdAt", json_string (created));
    return json;
}

//  One page of a room's messages: newest first below a bound (history),
//  or oldest first above one (resume).
static int
s_room_page (pl_store_t *self, const char *caller, const char *room_id, int64_t bound,
             bool ascending, int limit, char **json_p)
{
    s_room_t room;
    int status = s_room_of_member (self, caller, room_id, &room, json_p);
    if (status)
        return status;
    s_room_free (&room);
    if (limit < 1)
        return s_error (json_p, 400, "limit must be a positive number");

    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_UTF8 (&filter, "roomId", room_id);
    if (ascending || bound > 0) {
        bson_t range;
        BSON_APPEND_DOCUMENT_BEGIN (&filter, "seq", &range);
        BSON_APPEND_INT64 (&range, ascending? "$gt": "$lt", bound);
        bson_append_document_end (&filter, &range);
    }
    //  FerretDB: sort+limit give the same result as on MongoDB; on SQLite
    //  both run in memory after a scan (see s_last_seq)
    bson_t *options = BCON_NEW ("sort", "{", "seq", BCON_INT32 (ascending? 1: -1), "}",
                                "limit", BCON_INT64 (limit));
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts (self->messages, &filter, options, NULL);
    json_t *array = json_array ();
    const bson_t *doc;
    while (mongoc_cursor_next (cursor, &doc))
        json_array_append_new (array, s_message_json (doc));
    bson_error_t error;
    if (mongoc_cursor_error (cursor, &error)) {
        json_decref (array);
        status = s_failed (json_p, "history", &error);
    }
    else
        status = s_answer (json_p, 200, array);
    mongoc_cursor_destroy (cursor);
    bson_destroy (options);
    bson_destroy (&filter);
    return status;
}

int
pl_store_room_messages (pl_store_t *self, const char *caller, const char *room_id,
                        int64_t before, int limit, char **json_p)
{
    assert (self);
    assert (json_p);
    return s_room_page (self, caller, room_id, before, false, limit, json_p);
}

int
pl_store_room_since (pl_store_t *self, const char *caller, const char *room_id,
                     int64_t after, int limit, char **json_p)
{
    assert (self);
    assert (json_p);
    return s_room_page (self, caller, room_id, after < 0? 0: after, true, limit, json_p);
}


//  --------------------------------------------------------------------------
//  Member list for the router

int
pl_store_room_members (pl_store_t *self, const char *room_id, char **json_p)
{
    assert (self);
    assert (json_p);
    if (!pl_id_valid (room_id))
        return s_error (json_p, 404, "room not found");
    s_room_t room;
    bson_error_t error;
    int found = s_room_load (self, room_id, &room, &error);
    if (found < 0)
        return s_failed (json_p, "room lookup", &error);
    if (found == 0)
        return s_error (json_p, 404, "room not found");
    json_t *array = json_array ();
    for (size_t index = 0; index < room.members.size; index++)
        json_array_append_new (array, s_json_str (room.members.items [index]));
    s_room_free (&room);
    return s_answer (json_p, 200, array);
}


//  --------------------------------------------------------------------------
//  POST /api/rooms/{id}/members

int
pl_store_member_add (pl_store_t *self, const char *caller, const char *room_id,
                     const char *body, size_t body_size, char **json_p)
{
    assert (self);
    assert (json_p);
    json_error_t json_error;
    json_t *request = body? json_loadb (body, body_size, 0, &json_error): NULL;
    const char *user = json_string_value (json_object_get (request, "userId"));
    int status = 0;
    if (!json_is_object (request))
        status = s_error (json_p, 400, "body must be a JSON object");
    else
    if (!pl_id_valid (user))
        status = s_error (json_p, 400, "userId must be a valid user id");
    if (status) {
        json_decref (request);
        return status;
    }
    s_room_t room;
    status = s_room_of_member (self, caller, room_id, &room, json_p);
    if (status) {
        json_decref (request);
        return status;
    }
    bson_error_t error;
    if (!streq_safe (room.kind, "group"))
        status = s_error (json_p, 400, "members cannot be added to a direct room");
    else
    if (s_list_has (&room.members, user))
        status = s_room_answer (self, &room, 200, json_p);
    else
    //  Checked before writing, so two concurrent adds may pass one over
    if (self->max_members && room.members.size >= (size_t) self->max_members) {
        char message [80];
        snprintf (message, sizeof message, "a group has at most %d members", self->max_members);
        status = s_error (json_p, 400, message);
    }
    else {
        s_list_t users = { 0 };
        if (s_list_push (&users, user))
            status = s_error (json_p, 503, "out of memory");
        else
        //  Member document first, as in room create
        if (s_members_ensure (self, room.id, &users, &error))
            status = s_failed (json_p, "member insert", &error);
        else {
            //  $addToSet: adding twice at once lists the user once.
            //  FerretDB: supports $addToSet as MongoDB does.
            bson_t *selector = BCON_NEW ("_id", BCON_UTF8 (room.id));
            bson_t *update = BCON_NEW ("$addToSet", "{", "members", BCON_UTF8 (user), "}");
            if (!mongoc_collection_update_one (self->rooms, selector, update, NULL, NULL, &error))
                status = s_failed (json_p, "member add", &error);
            else
                status = s_room_reload_answer (self, room.id, json_p);
            bson_destroy (update);
            bson_destroy (selector);
        }
        s_list_free (&users);
    }
    s_room_free (&room);
    json_decref (request);
    return status;
}


//  --------------------------------------------------------------------------
//  DELETE /api/rooms/{id}/members/{userId}

int
pl_store_member_remove (pl_store_t *self, const char *caller, const char *room_id,
                        const char *user_id, char **json_p)
{
    assert (self);
    assert (json_p);
    if (!pl_id_valid (user_id))
        return s_error (json_p, 400, "invalid user id");
    s_room_t room;
    int status = s_room_of_member (self, caller, room_id, &room, json_p);
    if (status)
        return status;
    bson_error_t error;
    //  A direct room belongs to its pair for good: the pair's id would
    //  otherwise name a room one of them cannot enter
    if (!streq_safe (room.kind, "group"))
        status = s_error (json_p, 400, "members cannot be removed from a direct room");
    else
    if (!streq_safe (caller, user_id) && !streq_safe (caller, room.created_by))
        status = s_error (json_p, 403, "only the room's creator removes other members");
    else
    if (!s_list_has (&room.members, user_id))
        status = s_error (json_p, 404, "user is not a member of this room");
    else {
        //  Room first: it is the truth about membership; a member document
        //  left over by a failure is harmless (and reused on a later add)
        bson_t *selector = BCON_NEW ("_id", BCON_UTF8 (room.id));
        bson_t *update = BCON_NEW ("$pull", "{", "members", BCON_UTF8 (user_id), "}");
        char id [2 * PL_ID_MAX + 2];
        snprintf (id, sizeof id, "%s#%s", room.id, user_id);
        bson_t *member = BCON_NEW ("_id", BCON_UTF8 (id));
        //  FerretDB: supports $pull of a plain value as MongoDB does
        if (!mongoc_collection_update_one (self->rooms, selector, update, NULL, NULL, &error))
            status = s_failed (json_p, "member remove", &error);
        else
        if (!mongoc_collection_delete_one (self->members, member, NULL, NULL, &error))
            status = s_failed (json_p, "member document remove", &error);
        else
            status = s_room_reload_answer (self, room.id, json_p);
        bson_destroy (member);
        bson_destroy (update);
        bson_destroy (selector);
    }
    s_room_free (&room);
    return status;
}


//  --------------------------------------------------------------------------
//  Count a room's messages

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

//  Checks that survive NDEBUG (RelWithDebInfo defines it)
#define s_check(condition) \
    do { \
        if (!(condition)) { \
            fprintf (stderr, "pl_store_test: %s:%d: check failed: %s\n", __FILE__, __LINE__, #condition); \
            abort (); \
        } \
    } while (0)

static json_t *
s_test_parse (char *text)
{
    json_t *json = json_loads (text, 0, NULL);
    s_check (json);
    free (text);
    return json;
}

//  Check a query's status, return its parsed answer
static json_t *
s_test_expect (int expected, int status, char **text_p, int line)
{
    if (status != expected)
        fprintf (stderr, "pl_store_test: line %d: expected %d, got %d %s\n",
                 line, expected, status, *text_p? *text_p: "(null)");
    s_check (status == expected);
    char *text = *text_p;
    *text_p = NULL;
    return s_test_parse (text);
}

//  call writes its answer to text_
#define s_test_call(expected, call) s_test_expect ((expected), (call), &text_, __LINE__)
//  A body and its size
#define s_body(text) (text), strlen (text)

static void
s_test_message (pl_store_message_t *message, const char *room_id, int64_t seq)
{
    memset (message, 0, sizeof *message);
    message->room_id = room_id;
    message->seq = seq;
    message->type = "TALK";
    message->sender_id = "alice";
    message->sender_name = "Alice";
    message->content = "hello";
    message->client_msg_id = seq % 3 == 0? NULL: seq % 3 == 1? "": "cid";
    message->created_ms = 1795348800000LL + seq;
    message->result = 42;
}

static const char *
s_test_room_id (json_t *room)
{
    const char *id = json_string_value (json_object_get (room, "id"));
    s_check (id);
    return id;
}

void
pl_store_test (bool verbose)
{
    printf (" * pl_store: ");
    if (verbose)
        printf ("\n");
    char *text_ = NULL;
    const char *url = getenv ("PARLEY_TEST_MONGO_URL");
    if (!url || !*url) {
        fprintf (stderr, "pl_store_test: FAILED: set PARLEY_TEST_MONGO_URL to a MongoDB or FerretDB "
                 "server (e.g. mongodb://127.0.0.1:27117)\n");
        abort ();
    }
    char database [40] = "parley_test_";
    pl_random_hex (database + strlen (database), 8);

    //  Bad settings
    pl_store_t *self = pl_store_new ("http://nowhere", database, "majority");
    s_check (!self);
    self = pl_store_new (url, "bad.name", "majority");
    s_check (!self);
    self = pl_store_new (url, database, "0");
    s_check (!self);
    self = pl_store_new (url, database, "many");
    s_check (!self);
    self = pl_store_new (url, database, "1");
    s_check (self);
    pl_store_destroy (&self);
    pl_store_destroy (&self);
    s_check (!self);

    self = pl_store_new (url, database, "majority");
    s_check (self);
    s_check (pl_store_prepare (self) == 0);
    s_check (pl_store_prepare (self) == 0);

    //  A group room holds the messages of the tests below
    json_t *group = s_test_call (201, pl_store_room_create (self, "alice",
        s_body ("{\"kind\":\"group\",\"name\":\"Team\",\"members\":[\"bob\",\"alice\",\"bob\"]}"), 10, &text_));
    const char *group_id = s_test_room_id (group);
    s_check (strncmp (group_id, "g:", 2) == 0 && strlen (group_id) == 26);
    s_check (json_array_size (json_object_get (group, "members")) == 2);
    s_check (streq_safe (json_string_value (json_array_get (json_object_get (group, "members"), 0)), "alice"));
    s_check (json_integer_value (json_object_get (group, "lastSeq")) == 0);
    if (verbose)
        printf ("   group %s\n", group_id);

    //  1000 messages in one bulk, then the same again: all stored once
    size_t count = 1000;
    pl_store_message_t *messages = calloc (count + 20, sizeof (pl_store_message_t));
    s_check (messages);
    for (size_t index = 0; index < count; index++)
        s_test_message (&messages [index], group_id, (int64_t) index + 1);
    int64_t start = pl_mono_ms ();
    s_check (pl_store_insert_messages (self, messages, count) == 0);
    for (size_t index = 0; index < count; index++)
        s_check (messages [index].result == 0);
    s_check (pl_store_count_messages (self, group_id) == 1000);
    for (size_t index = 0; index < count; index++)
        s_test_message (&messages [index], group_id, (int64_t) index + 1);
    s_check (pl_store_insert_messages (self, messages, count) == 0);
    for (size_t index = 0; index < count; index++)
        s_check (messages [index].result == 0);
    s_check (pl_store_count_messages (self, group_id) == 1000);
    if (verbose)
        printf ("   2 x 1000 inserts in %" PRId64 " ms\n", pl_mono_ms () - start);

    //  New and duplicate entries mixed, plus an invalid one
    for (size_t index = 0; index < 16; index++)
        s_test_message (&messages [index], group_id, 995 + (int64_t) index);     //  995..1010
    s_test_message (&messages [16], "bad room", 1);
    s_test_message (&messages [17], group_id, 2000);
    messages [17].content = "not UTF-8 \xff";
    s_check (pl_store_insert_messages (self, messages, 18) == 0);
    for (size_t index = 0; index < 16; index++)
        s_check (messages [index].result == 0);
    s_check (messages [16].result == -1 && *messages [16].error);
    s_check (messages [17].result == -1 && *messages [17].error);
    s_check (pl_store_count_messages (self, group_id) == 1010);
    if (verbose)
        printf ("   refused: %s / %s\n", messages [16].error, messages [17].error);
    s_check (pl_store_count_messages (self, group_id) == 1010);
    s_check (pl_store_count_messages (self, "nothing-here") == 0);
    s_check (pl_store_insert_messages (self, messages, 0) == 0);

    //  Another message under a stored seq (Redis lost writes and handed the
    //  seq out again) is not a redelivery: it fails, and the stored one stays
    s_test_message (&messages [0], group_id, 1000);
    s_test_message (&messages [1], group_id, 1001);
    messages [1].content = "a different message";
    s_check (pl_store_insert_messages (self, messages, 2) == 0);
    s_check (messages [0].result == 0);
    s_check (messages [1].result == -1 && strstr (messages [1].error, "seq already taken"));
    s_check (pl_store_count_messages (self, group_id) == 1010);

    //  History paging, newest first
    json_t *page = s_test_call (200, pl_store_room_messages (self, "bob", group_id, 0, 10, &text_));
    s_check (json_array_size (page) == 10);
    s_check (json_integer_value (json_object_get (json_array_get (page, 0), "seq")) == 1010);
    s_check (json_integer_value (json_object_get (json_array_get (page, 9), "seq")) == 1001);
    json_t *first = json_array_get (page, 0);          //  seq 1010: 1010 % 3 == 2, "cid"
    s_check (streq_safe (json_string_value (json_object_get (first, "clientMsgId")), "cid"));
    s_check (streq_safe (json_string_value (json_object_get (first, "roomId")), group_id));
    s_check (streq_safe (json_string_value (json_object_get (first, "type")), "TALK"));
    s_check (streq_safe (json_string_value (json_object_get (first, "senderName")), "Alice"));
    s_check (streq_safe (json_string_value (json_object_get (first, "createdAt")), "2026-11-22T12:00:01.010Z"));
    s_check (!json_object_get (json_array_get (page, 1), "clientMsgId"));     //  1009: ""
    s_check (!json_object_get (json_array_get (page, 2), "clientMsgId"));     //  1008: NULL
    json_decref (page);
    page = s_test_call (200, pl_store_room_messages (self, "alice", group_id, 1001, 5, &text_));
    s_check (json_array_size (page) == 5);
    for (size_t index = 0; index < 5; index++)
        s_check (json_integer_value (json_object_get (json_array_get (page, index), "seq")) == 1000 - (json_int_t) index);
    json_decref (page);
    //  Resume: oldest first above a seq
    page = s_test_call (200, pl_store_room_since (self, "alice", group_id, 1005, 3, &text_));
    s_check (json_array_size (page) == 3);
    for (size_t index = 0; index < 3; index++)
        s_check (json_integer_value (json_object_get (json_array_get (page, index), "seq")) == 1006 + (json_int_t) index);
    json_decref (page);
    page = s_test_call (200, pl_store_room_messages (self, "alice", group_id, 3, 10, &text_));
    s_check (json_array_size (page) == 2);
    s_check (json_integer_value (json_object_get (json_array_get (page, 1), "seq")) == 1);
    json_decref (page);
    json_decref (s_test_call (400, pl_store_room_messages (self, "alice", group_id, 0, 0, &text_)));
    json_decref (s_test_call (403, pl_store_room_messages (self, "carol", group_id, 0, 10, &text_)));
    json_decref (s_test_call (404, pl_store_room_messages (self, "alice", "g:nothing", 0, 10, &text_)));
    json_decref (s_test_call (404, pl_store_room_messages (self, "alice", "not/an/id", 0, 10, &text_)));

    //  Direct room: created once, the same from either side
    json_t *direct = s_test_call (201, pl_store_room_create (self, "alice",
        s_body ("{\"kind\":\"direct\",\"members\":[\"bob\"]}"), 10, &text_));
    s_check (streq_safe (s_test_room_id (direct), "d:1cb15457d1ddab60e205c0fe3ca2f65d"));
    s_check (json_is_null (json_object_get (direct, "name")));
    s_check (streq_safe (json_string_value (json_object_get (direct, "kind")), "direct"));
    json_t *again = s_test_call (200, pl_store_room_create (self, "bob",
        s_body ("{\"kind\":\"direct\",\"members\":[\"alice\",\"bob\"],\"name\":null}"), 10, &text_));
    s_check (streq_safe (s_test_room_id (again), s_test_room_id (direct)));
    s_check (json_equal (json_object_get (again, "members"), json_object_get (direct, "members")));
    s_check (streq_safe (json_string_value (json_object_get (again, "createdAt")),
                         json_string_value (json_object_get (direct, "createdAt"))));
    json_decref (again);
    again = s_test_call (200, pl_store_room_create (self, "alice",
        s_body ("{\"kind\":\"direct\",\"members\":[\"bob\"]}"), 10, &text_));
    json_decref (again);

    //  Bad bodies
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
    };
    for (size_t index = 0; index < sizeof bad / sizeof bad [0]; index++) {
        json_t *answer = s_test_call (400, pl_store_room_create (self, "alice", bad [index], strlen (bad [index]), 3, &text_));
        s_check (json_string_value (json_object_get (answer, "error")));
        if (verbose)
            printf ("   400 %s\n", json_string_value (json_object_get (answer, "error")));
        json_decref (answer);
    }
    json_decref (s_test_call (400, pl_store_room_create (self, "alice", NULL, 0, 3, &text_)));
    //  Names count characters, not bytes: 100 x "é" (200 bytes) is fine, 101 is not
    char body [512];
    char name [256] = "";
    for (int index = 0; index < 100; index++)
        strcat (name, "\xc3\xa9");
    snprintf (body, sizeof body, "{\"kind\":\"group\",\"name\":\"%s\",\"members\":[]}", name);
    json_t *solo = s_test_call (201, pl_store_room_create (self, "alice", body, strlen (body), 3, &text_));
    json_decref (solo);
    snprintf (body, sizeof body, "{\"kind\":\"group\",\"name\":\"%s\xc3\xa9\",\"members\":[]}", name);
    json_decref (s_test_call (400, pl_store_room_create (self, "alice", body, strlen (body), 3, &text_)));
    const char *three = "{\"kind\":\"group\",\"name\":\"x\",\"members\":[\"bob\",\"carol\"]}";
    json_decref (s_test_call (201, pl_store_room_create (self, "alice", three, strlen (three), 3, &text_)));

    //  Get: 200 member, 403 stranger, 404 unknown
    json_t *room = s_test_call (200, pl_store_room_get (self, "bob", group_id, &text_));
    s_check (json_integer_value (json_object_get (room, "lastSeq")) == 1010);
    s_check (json_integer_value (json_object_get (json_object_get (room, "readSeq"), "bob")) == 0);
    s_check (json_object_size (json_object_get (room, "readSeq")) == 2);
    json_decref (room);
    json_decref (s_test_call (403, pl_store_room_get (self, "carol", group_id, &text_)));
    json_decref (s_test_call (403, pl_store_room_get (self, "carol", s_test_room_id (direct), &text_)));
    json_decref (s_test_call (404, pl_store_room_get (self, "alice", "g:000000000000000000000000", &text_)));
    json_decref (s_test_call (404, pl_store_room_members (self, "g:000000000000000000000000", &text_)));
    json_t *members = s_test_call (200, pl_store_room_members (self, group_id, &text_));
    s_check (json_array_size (members) == 2);
    json_decref (members);

    //  Read cursor moves forward only; unread follows
    s_check (pl_store_read_cursor (self, group_id, "bob", 500) == 0);
    s_check (pl_store_read_cursor (self, group_id, "bob", 100) == 0);
    s_check (pl_store_read_cursor (self, group_id, "carol", 100) == 0);      //  not a member: nothing
    s_check (pl_store_read_cursor (self, group_id, "bad id", 100) == -1);
    room = s_test_call (200, pl_store_room_get (self, "alice", group_id, &text_));
    s_check (json_integer_value (json_object_get (json_object_get (room, "readSeq"), "bob")) == 500);
    json_decref (room);
    json_t *rooms = s_test_call (200, pl_store_rooms_of_user (self, "bob", &text_));
    s_check (json_array_size (rooms) == 3);
    size_t index;
    json_t *entry;
    bool seen_group = false, seen_direct = false;
    json_array_foreach (rooms, index, entry) {
        if (streq_safe (s_test_room_id (entry), group_id)) {
            s_check (json_integer_value (json_object_get (entry, "unread")) == 510);
            seen_group = true;
        }
        if (streq_safe (s_test_room_id (entry), s_test_room_id (direct))) {
            s_check (json_integer_value (json_object_get (entry, "unread")) == 0);
            seen_direct = true;
        }
    }
    s_check (seen_group && seen_direct);
    json_decref (rooms);
    rooms = s_test_call (200, pl_store_rooms_of_user (self, "nobody", &text_));
    s_check (json_is_array (rooms) && json_array_size (rooms) == 0);
    json_decref (rooms);

    //  Member add: members only, groups only
    const char *add_carol = "{\"userId\":\"carol\"}";
    json_decref (s_test_call (403, pl_store_member_add (self, "carol", group_id, s_body (add_carol), &text_)));
    json_decref (s_test_call (400, pl_store_member_add (self, "bob", group_id, s_body ("{]"), &text_)));
    json_decref (s_test_call (400, pl_store_member_add (self, "bob", group_id, s_body ("{\"userId\":\"a/b\"}"), &text_)));
    json_decref (s_test_call (400, pl_store_member_add (self, "bob", s_test_room_id (direct), s_body (add_carol), &text_)));
    json_decref (s_test_call (404, pl_store_member_add (self, "bob", "g:nothing", s_body (add_carol), &text_)));
    room = s_test_call (200, pl_store_member_add (self, "bob", group_id, s_body (add_carol), &text_));
    s_check (json_array_size (json_object_get (room, "members")) == 3);
    s_check (streq_safe (json_string_value (json_array_get (json_object_get (room, "members"), 2)), "carol"));
    json_decref (room);
    room = s_test_call (200, pl_store_member_add (self, "bob", group_id, s_body (add_carol), &text_));
    s_check (json_array_size (json_object_get (room, "members")) == 3);
    json_decref (room);
    pl_store_set_max_members (self, 3);
    json_decref (s_test_call (400, pl_store_member_add (self, "bob", group_id, s_body ("{\"userId\":\"dave\"}"), &text_)));
    pl_store_set_max_members (self, 0);
    room = s_test_call (200, pl_store_room_get (self, "carol", group_id, &text_));
    s_check (json_integer_value (json_object_get (json_object_get (room, "readSeq"), "carol")) == 0);
    json_decref (room);

    //  Member remove: the creator anyone, a member itself
    json_decref (s_test_call (403, pl_store_member_remove (self, "carol", group_id, "bob", &text_)));
    json_decref (s_test_call (403, pl_store_member_remove (self, "dave", group_id, "alice", &text_)));
    json_decref (s_test_call (400, pl_store_member_remove (self, "alice", s_test_room_id (direct), "bob", &text_)));
    json_decref (s_test_call (404, pl_store_member_remove (self, "alice", group_id, "dave", &text_)));
    json_decref (s_test_call (400, pl_store_member_remove (self, "alice", group_id, "a b", &text_)));
    room = s_test_call (200, pl_store_member_remove (self, "carol", group_id, "carol", &text_));
    s_check (json_array_size (json_object_get (room, "members")) == 2);
    json_decref (room);
    json_decref (s_test_call (403, pl_store_room_get (self, "carol", group_id, &text_)));
    room = s_test_call (200, pl_store_member_remove (self, "alice", group_id, "bob", &text_));
    s_check (json_array_size (json_object_get (room, "members")) == 1);
    json_decref (room);
    rooms = s_test_call (200, pl_store_rooms_of_user (self, "bob", &text_));
    s_check (json_array_size (rooms) == 2);                //  direct + "x"
    json_decref (rooms);
    members = s_test_call (200, pl_store_room_members (self, group_id, &text_));
    s_check (json_array_size (members) == 1);
    s_check (streq_safe (json_string_value (json_array_get (members, 0)), "alice"));
    json_decref (members);
    //  The removed member's document is gone: a re-add starts at readSeq 0
    room = s_test_call (200, pl_store_member_add (self, "alice", group_id, s_body ("{\"userId\":\"bob\"}"), &text_));
    json_decref (room);
    room = s_test_call (200, pl_store_room_get (self, "bob", group_id, &text_));
    s_check (json_integer_value (json_object_get (json_object_get (room, "readSeq"), "bob")) == 0);
    json_decref (room);

    json_decref (direct);
    json_decref (group);
    free (messages);

    //  Drop the test database
    bson_error_t error;
    s_check (mongoc_database_drop_with_opts (self->database, NULL, &error));
    pl_store_destroy (&self);

    //  A server that is not there: prepare fails, queries answer 503. A
    //  socket bound and not listening holds a port that refuses connections.
    int socket_fd = socket (AF_INET, SOCK_STREAM, 0);
    s_check (socket_fd >= 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t address_size = sizeof address;
    s_check (bind (socket_fd, (struct sockaddr *) &address, sizeof address) == 0);
    s_check (getsockname (socket_fd, (struct sockaddr *) &address, &address_size) == 0);
    char closed_url [80];
    snprintf (closed_url, sizeof closed_url, "mongodb://127.0.0.1:%d/", ntohs (address.sin_port));
    //  Timeouts default to sane values unless the URL sets them
    self = pl_store_new (closed_url, database, "2");
    s_check (self);
    const mongoc_uri_t *uri = mongoc_client_get_uri (self->client);
    s_check (mongoc_uri_get_option_as_int32 (uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 0) == 5000);
    s_check (mongoc_uri_get_option_as_int32 (uri, MONGOC_URI_SOCKETTIMEOUTMS, 0) == 15000);
    pl_store_destroy (&self);
    strcat (closed_url, "?serverSelectionTimeoutMS=500");
    start = pl_mono_ms ();
    self = pl_store_new (closed_url, database, "majority");
    uri = mongoc_client_get_uri (self->client);
    s_check (mongoc_uri_get_option_as_int32 (uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 0) == 500);
    s_check (self);
    s_check (pl_store_prepare (self) == -1);
    json_decref (s_test_call (503, pl_store_room_get (self, "alice", "g:x", &text_)));
    json_decref (s_test_call (503, pl_store_rooms_of_user (self, "alice", &text_)));
    json_decref (s_test_call (503, pl_store_room_members (self, "g:x", &text_)));
    json_decref (s_test_call (503, pl_store_room_messages (self, "alice", "g:x", 0, 10, &text_)));
    json_decref (s_test_call (503, pl_store_room_create (self, "alice",
        s_body ("{\"kind\":\"direct\",\"members\":[\"bob\"]}"), 10, &text_)));
    json_decref (s_test_call (503, pl_store_member_add (self, "alice", "g:x", s_body (add_carol), &text_)));
    json_decref (s_test_call (503, pl_store_member_remove (self, "alice", "g:x", "alice", &text_)));
    pl_store_message_t lost [2];
    s_test_message (&lost [0], "g:x", 1);
    s_test_message (&lost [1], "g:x", 2);
    s_check (pl_store_insert_messages (self, lost, 2) == -1);
    s_check (lost [0].result == -1 && lost [1].result == -1 && *lost [0].error);
    s_check (pl_store_read_cursor (self, "g:x", "alice", 5) == -1);
    s_check (pl_store_count_messages (self, "g:x") == -1);
    pl_store_destroy (&self);
    close (socket_fd);
    if (verbose)
        printf ("   unreachable server checks took %" PRId64 " ms\n", pl_mono_ms () - start);

    printf ("OK\n");
}
