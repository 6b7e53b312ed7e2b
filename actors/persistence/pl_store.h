/*  =========================================================================
    pl_store - the MongoDB layer: messages, rooms and their members

    The only code of parley that speaks to MongoDB (or FerretDB). Failures of
    the mongo-c-driver become return codes and short messages here; callers
    never see a bson_error_t.

    A store owns one mongoc_client_t, which is not thread-safe: use a store
    from one thread at a time (one store per persistence actor).

    Collections:
      messages  {_id: "<roomId>#<seq>", roomId, seq, type, senderId,
                 senderName, content, clientMsgId?, createdAt}
                unique index room_seq {roomId:1, seq:1}
      rooms     {_id: roomId, kind, name, members: [..], createdBy, createdAt}
                index {members:1}
      members   {_id: "<roomId>#<userId>", roomId, userId, readSeq}
                indexes {userId:1}, {roomId:1}
    =========================================================================
*/
#ifndef PL_STORE_H_INCLUDED
#define PL_STORE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _pl_store_t pl_store_t;

//  Parse the URL and create the client. Does not fail when the server is
//  down (the connection is lazy). write_concern is "majority" or a number of
//  nodes (1..50); NULL or "" keeps the URL's. Unless the URL says otherwise,
//  serverSelectionTimeoutMS and connectTimeoutMS default to 5000 and
//  socketTimeoutMS to 15000. Returns NULL on a bad URL or setting (logged).
pl_store_t *
    pl_store_new (const char *mongo_url, const char *database, const char *write_concern);

//  Destroy the store; sets *self_p to NULL, safe to call twice.
void
    pl_store_destroy (pl_store_t **self_p);

//  Limit group size for pl_store_member_add (0, the default: no limit;
//  pl_store_room_create takes its own limit).
void
    pl_store_set_max_members (pl_store_t *self, int max_members);

//  Create the indexes (idempotent). Returns 0, or -1 when the server is
//  unreachable or refused (the caller retries later).
int
    pl_store_prepare (pl_store_t *self);

typedef struct {
    const char *room_id;
    int64_t seq;
    const char *type;
    const char *sender_id;
    const char *sender_name;
    const char *content;
    const char *client_msg_id;      //  may be NULL or ""
    int64_t created_ms;
    int result;                     //  out: 0 stored or already stored, -1 failed
    char error [128];               //  out: why it failed
} pl_store_message_t;

//  Store messages with ONE unordered bulk insert. A duplicate key on an entry
//  is success for that entry (a redelivery). Returns 0 when the server
//  answered (see each .result), -1 when the whole batch failed (network...,
//  every .result is -1).
int
    pl_store_insert_messages (pl_store_t *self, pl_store_message_t *messages, size_t count);

//  Move a member's read cursor forward, never back. Returns 0 (also when the
//  user is not a member: nothing to move), -1 on failure.
int
    pl_store_read_cursor (pl_store_t *self, const char *room_id, const char *user_id, int64_t seq);

//  HTTP-facing queries. Each returns an HTTP status (200, 201, 400, 403, 404,
//  503) and sets *json_p to a malloc'd JSON text (free it): the resource, or
//  {"error":"..."}. 503 means MongoDB is unreachable or failed.

//  POST /api/rooms {"kind":"direct","members":["u2"]} or
//  {"kind":"group","name":"..","members":[..]}. The caller is always a member.
//  A direct room has exactly one other user and no name; one pair always gets
//  the same room (201 created, 200 existed). A group has a name of 1..100
//  characters and 1..max_members members counting the caller.
int
    pl_store_room_create (pl_store_t *self, const char *caller, const char *body, size_t body_size,
                          int max_members, char **json_p);

//  GET /api/rooms/{id}: room JSON plus "readSeq":{"u1":N,..}. 404, 403.
int
    pl_store_room_get (pl_store_t *self, const char *caller, const char *room_id, char **json_p);

//  GET /api/rooms: array of the caller's rooms, each with "unread".
int
    pl_store_rooms_of_user (pl_store_t *self, const char *caller, char **json_p);

//  GET /api/rooms/{id}/messages?before=SEQ&limit=N: newest first, seq < before
//  (before <= 0: no bound), at most limit (limit < 1: 400). 404, 403.
int
    pl_store_room_messages (pl_store_t *self, const char *caller, const char *room_id,
                            int64_t before, int limit, char **json_p);

//  The member list for the router's cache: 200 with an array of user ids, 404.
//  Resume after a seq: a JSON array oldest first, seq > after, at most
//  limit (same shape as history). 404 unknown room, 403 not a member.
int
    pl_store_room_since (pl_store_t *self, const char *caller, const char *room_id,
                         int64_t after, int limit, char **json_p);

int
    pl_store_room_members (pl_store_t *self, const char *room_id, char **json_p);

//  POST /api/rooms/{id}/members {"userId":"u3"}: any member adds to a group
//  (direct rooms: 400). 200 with the room JSON, also when already a member.
int
    pl_store_member_add (pl_store_t *self, const char *caller, const char *room_id,
                         const char *body, size_t body_size, char **json_p);

//  DELETE /api/rooms/{id}/members/{userId}: the creator removes anyone, a
//  member only itself (403 else); direct rooms: 400; not a member: 404.
//  200 with the room JSON.
int
    pl_store_member_remove (pl_store_t *self, const char *caller, const char *room_id,
                            const char *user_id, char **json_p);

//  Number of documents of a room in messages, or -1 on failure.
int64_t
    pl_store_count_messages (pl_store_t *self, const char *room_id);

//  Selftest; needs PARLEY_TEST_MONGO_URL (fails without it).
void
    pl_store_test (bool verbose);

#endif
