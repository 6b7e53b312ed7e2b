/*  =========================================================================
    parley-store-raw - the store's ceiling: a bare mongo-c-driver bulk
    insert loop of message documents, for bin/parley bench --store-raw

    Inserts N documents as the persistence actor writes them (its own
    writer, pl_store_message_bson; content of the given size) into a
    fresh collection of their own with the messages collection's unique
    index room_seq, in unordered bulk inserts of B, one after
    the other on one client: what the persistence actor does, without
    Redis, envelopes or acknowledgements. Prints one JSON object:
    {"docs", "batch", "seconds", "per_s"}. Exit 1 on any error.

    parley-store-raw --url URL --db NAME [--docs N] [--batch B]
                     [--content-bytes C] [--rooms R]
    =========================================================================
*/
#include "pl_store_internal.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define streq(a,b) (strcmp ((a), (b)) == 0)

typedef struct {
    const char *url;
    const char *db;
    long docs;
    long batch;
    long content_bytes;
    long rooms;
} options_t;

static double
s_now_s (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (double) now.tv_sec + (double) now.tv_nsec / 1e9;
}

static void
s_quiet_log (mongoc_log_level_t level, const char *domain, const char *message, void *data)
{
    (void) domain;
    (void) data;
    if (level <= MONGOC_LOG_LEVEL_CRITICAL)
        fprintf (stderr, "parley-store-raw: %s\n", message);
}

static int
s_options (int argc, char **argv, options_t *options)
{
    *options = (options_t) { NULL, NULL, 100000, 512, 64, 500 };
    for (int index = 1; index < argc; index++) {
        const char *name = argv [index];
        const char *value = index + 1 < argc? argv [index + 1]: NULL;
        long *number = streq (name, "--docs")? &options->docs:
                       streq (name, "--batch")? &options->batch:
                       streq (name, "--content-bytes")? &options->content_bytes:
                       streq (name, "--rooms")? &options->rooms: NULL;
        if (!value)
            return -1;
        if (streq (name, "--url"))
            options->url = value;
        else
        if (streq (name, "--db"))
            options->db = value;
        else
        if (!number || (*number = strtol (value, NULL, 10)) < 1)
            return -1;
        index++;
    }
    return options->url && options->db && options->content_bytes < 100000? 0: -1;
}

//  One document, written by the store's own writer (pl_store_message_bson)
static void
s_append_doc (mongoc_bulk_operation_t *bulk, long number, const options_t *options,
              const char *content)
{
    char room [32], sender [32], cmid [32];
    snprintf (room, sizeof room, "g:raw%06ld", number % options->rooms);
    snprintf (sender, sizeof sender, "load-%ld", number % (2 * options->rooms));
    snprintf (cmid, sizeof cmid, "raw-%ld", number);
    pl_room_message_t message = {
        .room_id = room, .seq = number / options->rooms + 1, .type = "TALK",
        .sender_id = sender, .sender_name = sender, .content = content,
        .client_msg_id = cmid, .created_ms = (int64_t) (s_now_s () * 1000)
    };
    bson_t doc = BSON_INITIALIZER;
    pl_store_message_bson (&message, &doc);
    mongoc_bulk_operation_insert (bulk, &doc);
    bson_destroy (&doc);
}

//  The documents, batch by batch. Returns 0 or -1.
static int
s_insert_all (mongoc_collection_t *collection, const options_t *options, const char *content)
{
    bson_t *opts = BCON_NEW ("ordered", BCON_BOOL (false));
    int rc = 0;
    for (long first = 0; first < options->docs && rc == 0; first += options->batch) {
        mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts (collection, opts);
        long last = first + options->batch < options->docs? first + options->batch: options->docs;
        for (long number = first; number < last; number++)
            s_append_doc (bulk, number, options, content);
        bson_t reply;
        bson_error_t error;
        if (!mongoc_bulk_operation_execute (bulk, &reply, &error)) {
            fprintf (stderr, "parley-store-raw: bulk insert: %s\n", error.message);
            rc = -1;
        }
        bson_destroy (&reply);
        mongoc_bulk_operation_destroy (bulk);
    }
    bson_destroy (opts);
    return rc;
}

int
main (int argc, char **argv)
{
    options_t options;
    if (s_options (argc, argv, &options)) {
        fprintf (stderr, "usage: parley-store-raw --url URL --db NAME [--docs N] [--batch B]"
                         " [--content-bytes C] [--rooms R]\n");
        return 2;
    }
    mongoc_init ();
    //  The driver's own log (FerretDB lacks endSessions) is not our output
    mongoc_log_set_handler (s_quiet_log, NULL);
    mongoc_client_t *client = mongoc_client_new (options.url);
    if (!client) {
        fprintf (stderr, "parley-store-raw: bad URL %s\n", options.url);
        return 2;
    }
    mongoc_collection_t *collection = mongoc_client_get_collection (client, options.db, "raw_messages");
    bson_error_t error;
    //  A fresh collection each run: the cost per document grows with its size
    if (!mongoc_collection_drop (collection, &error) && !strstr (error.message, "not found"))
        fprintf (stderr, "parley-store-raw: drop: %s (going on)\n", error.message);
    //  The index the messages collection has (pl_store.c): the store pays
    //  for it on every insert
    bson_t *indexes = BCON_NEW ("createIndexes", BCON_UTF8 ("raw_messages"), "indexes", "[", "{",
                                "key", "{", "roomId", BCON_INT32 (1), "seq", BCON_INT32 (1), "}",
                                "name", BCON_UTF8 ("room_seq"), "unique", BCON_BOOL (true), "}", "]");
    bool indexed = mongoc_collection_write_command_with_opts (collection, indexes, NULL, NULL, &error);
    bson_destroy (indexes);
    if (!indexed) {
        fprintf (stderr, "parley-store-raw: createIndexes: %s\n", error.message);
        return 1;
    }
    char *content = (char *) malloc ((size_t) options.content_bytes + 1);
    if (!content)
        return 1;
    memset (content, 'x', (size_t) options.content_bytes);
    content [options.content_bytes] = 0;
    double started = s_now_s ();
    int rc = s_insert_all (collection, &options, content);
    double seconds = s_now_s () - started;
    if (rc == 0)
        printf ("{\"docs\": %ld, \"batch\": %ld, \"seconds\": %.3f, \"per_s\": %.1f}\n",
                options.docs, options.batch, seconds, (double) options.docs / seconds);
    mongoc_collection_drop (collection, NULL);
    free (content);
    mongoc_collection_destroy (collection);
    mongoc_client_destroy (client);
    mongoc_cleanup ();
    return rc? 1: 0;
}
