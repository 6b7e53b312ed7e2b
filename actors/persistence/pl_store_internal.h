/*  =========================================================================
    pl_store_internal - what the two files of pl_store share

    pl_store.c holds the client, the indexes and the messages collection;
    pl_store_rooms.c the rooms and members collections. Only they include
    this header, and parley-store-raw (tests/storeraw), which writes the
    same message documents. Functions here are defined in pl_store.c.
    =========================================================================
*/
#ifndef PL_STORE_INTERNAL_H_INCLUDED
#define PL_STORE_INTERNAL_H_INCLUDED

#include "pl_store.h"
#include <mongoc/mongoc.h>

//  The server's code for a duplicate key, MongoDB's and FerretDB's alike
#define PL_STORE_DUPLICATE_KEY  11000

struct _pl_store_t {
    mongoc_client_t *client;
    mongoc_database_t *database;
    mongoc_collection_t *messages;
    mongoc_collection_t *rooms;
    mongoc_collection_t *members;
    mongoc_collection_t *reads;     //  read cursors, one document per move
};

//  Append a message's fields to doc as the messages collection stores it
//  (_id "<room>:<seq>"; no clientMsgId when it has none). Checks nothing.
void
    pl_store_message_bson (const pl_room_message_t *message, bson_t *doc);

//  A string field of a document, or NULL when absent or not a string
const char *
    pl_store_bson_str (const bson_t *doc, const char *key);

//  A number field as int64 (0 when absent or not a number)
int64_t
    pl_store_bson_int64 (const bson_t *doc, const char *key);

//  A date field in epoch milliseconds (0 when absent)
int64_t
    pl_store_bson_date (const bson_t *doc, const char *key);

//  Log a driver failure of what; returns PL_STORE_FAILED
int
    pl_store_failed (const char *what, const bson_error_t *error);

//  True for a duplicate key answered by the server (not a network error)
bool
    pl_store_is_duplicate (const bson_error_t *error);

//  True when a reply holds a non-empty array under key
bool
    pl_store_has_items (const bson_t *reply, const char *key);

//  A message document as a message (strings borrowed from doc)
void
    pl_store_message_from_bson (const bson_t *doc, pl_room_message_t *message);

//  The rooms part of the selftest: rooms and members in the test database
//  of a reachable store, whose messages of room_id run to seq 1010; then
//  with a store whose server does not answer, every call fails.
void
    pl_store_rooms_test (pl_store_t *self, const char *room_id, bool verbose);
void
    pl_store_rooms_test_unreachable (pl_store_t *self);

#endif
