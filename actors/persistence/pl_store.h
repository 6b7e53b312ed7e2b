/*  =========================================================================
    pl_store - the MongoDB layer: messages, rooms and their members

    The only code of parley that speaks to MongoDB (or FerretDB). It reads
    and writes documents for inputs its callers have checked (pl_rooms
    holds the rules); failures of the mongo-c-driver are logged here and
    become return codes, callers never see a bson_error_t.

    Return codes:
      PL_STORE_OK        0   done; for a lookup: found
      PL_STORE_FAILED   -1   MongoDB unreachable, timed out, refused the
                             command, or memory ran out: try again later
      PL_STORE_MISSING   1   a lookup found no such document
      PL_STORE_EXISTED   2   pl_store_room_insert: the room was there already

    A store owns one mongoc_client_t, which is not thread-safe: use a store
    from one thread at a time (one store per persistence actor).

    Collections:
      messages  {_id: "<roomId>#<seq>", roomId, seq, type, senderId,
                 senderName, content, clientMsgId?, createdAt}
                unique index room_seq {roomId:1, seq:1}
      rooms     {_id: roomId, kind, name, members: [..], createdBy, createdAt}
                index {members:1}
      members   {_id: "<roomId>#<userId>", roomId, userId, readSeq (unused)}
                indexes {userId:1}, {roomId:1}
      reads     {_id: "<roomId>#<userId>#<seq>", roomId, userId, seq}: a
                member's read cursor is its highest seq here. Inserted,
                never updated, since FerretDB 1.24 loses concurrent $max
                updates of one document (two stores, two hosts) where
                MongoDB applies them atomically; each write removes the
                member's lower ones, so a member has a few at most.
                indexes {roomId:1, userId:1}, {userId:1}
    =========================================================================
*/
#ifndef PL_STORE_H_INCLUDED
#define PL_STORE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pl_rooms.h"

#define PL_STORE_OK         0
#define PL_STORE_FAILED    -1
#define PL_STORE_MISSING    1
#define PL_STORE_EXISTED    2

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

//  Create the indexes (idempotent). Returns 0, or -1 when the server is
//  unreachable or refused (the caller retries later).
int
    pl_store_prepare (pl_store_t *self);

//  --------------------------------------------------------------------------
//  Messages

//  One entry of a bulk insert: the message (client_msg_id NULL or "":
//  none) and what became of it
typedef struct {
    pl_room_message_t message;
    int result;                     //  out: 0 stored or already stored, -1 failed
    char error [128];               //  out: why it failed
} pl_store_message_t;

//  Store messages with ONE unordered bulk insert. A duplicate key on an entry
//  is success for that entry (a redelivery) when the stored message is the
//  same; another message under that seq fails it. An entry with an invalid
//  room id, a negative seq, a missing field or text that is not UTF-8
//  fails alone. Returns 0 when the server answered (see each .result), -1
//  when the whole batch failed (network..., every .result is -1).
int
    pl_store_insert_messages (pl_store_t *self, pl_store_message_t *messages, size_t count);

//  Called for each message of a page, oldest or newest first; the message
//  lives until it returns. Returns 0, or -1 to fail the page.
typedef int (pl_store_message_fn) (const pl_room_message_t *message, void *arg);

//  A room's messages with seq < before (before <= 0: no bound), newest
//  first, at most limit (>= 1). Returns 0 or -1.
int
    pl_store_messages_before (pl_store_t *self, const char *room_id, int64_t before, int limit,
                              pl_store_message_fn *handler, void *arg);

//  A room's messages with seq > after (after < 0: from the first), oldest
//  first, at most limit (>= 1). Returns 0 or -1.
int
    pl_store_messages_after (pl_store_t *self, const char *room_id, int64_t after, int limit,
                             pl_store_message_fn *handler, void *arg);

//  Number of documents of a room in messages, or -1 on failure.
int64_t
    pl_store_count_messages (pl_store_t *self, const char *room_id);

//  --------------------------------------------------------------------------
//  Rooms and members

//  Insert a new room and a member document (readSeq 0) for each member.
//  A direct room whose pair has one already returns PL_STORE_EXISTED (its
//  member documents ensured again, which repairs a create that failed
//  between the two writes). Else PL_STORE_OK or PL_STORE_FAILED.
int
    pl_store_room_insert (pl_store_t *self, const pl_room_t *room);

//  Load a room into *room (members sorted; last_seq and read_seqs not
//  loaded). Returns PL_STORE_OK, PL_STORE_MISSING or PL_STORE_FAILED; *room
//  is empty unless found. Release it with pl_rooms_room_reset.
int
    pl_store_room_load (pl_store_t *self, const char *room_id, pl_room_t *room);

//  Load the rooms of ids (count of them) that exist, in one query: *rooms_p
//  gets an array of count entries (release with pl_rooms_list_destroy
//  (rooms_p, count)) whose first *found_p are loaded, in no given order, as
//  pl_store_room_load loads one. Returns 0 or -1 (nothing loaded).
int
    pl_store_rooms_load (pl_store_t *self, char * const *ids, size_t count,
                         pl_room_t **rooms_p, size_t *found_p);

//  Set room->last_seq: the highest stored seq of the room, 0 if none.
//  Returns 0 or -1.
int
    pl_store_room_last_seq (pl_store_t *self, pl_room_t *room);

//  The highest stored seq of each room of ids (count >= 1) into lasts
//  (count of them, 0 where a room has none), in one query. Returns 0 or -1.
int
    pl_store_rooms_last_seq (pl_store_t *self, char * const *ids, size_t count, int64_t *lasts);

//  Set room->read_seqs from the room's member documents (0 for a member
//  without one). Returns 0 or -1.
int
    pl_store_room_read_seqs (pl_store_t *self, pl_room_t *room);

//  The rooms of ids that list user (others are left out), each with what
//  pl_store_rooms_of_user gives. Same return and release.
int
    pl_store_rooms_of_user_in (pl_store_t *self, const char *user, const char **ids, size_t id_count,
                               pl_room_t **rooms_p, size_t *count_p);

//  The rooms listing user, by id, each with read_seqs holding user's read
//  cursor, last_seq, last_message, active_ms and user's unread count. Sets *rooms_p (release with pl_rooms_list_destroy)
//  and *count_p. Returns 0 or -1 (then *rooms_p is NULL).
int
    pl_store_rooms_of_user (pl_store_t *self, const char *user, pl_room_t **rooms_p, size_t *count_p);

//  How many rooms list user as a member (*count). Returns 0 or -1.
int
    pl_store_rooms_count (pl_store_t *self, const char *user, int64_t *count);

//  Add user to a room's members (a member document first, then the room's
//  list; adding twice lists once) with its read cursor at 0: call it for a
//  user who is not a member. Returns 0 or -1.
int
    pl_store_member_add (pl_store_t *self, const char *room_id, const char *user);

//  Remove user from a room's members and delete its member document (its
//  read cursor: a later add starts at 0). Returns 0 or -1.
int
    pl_store_member_remove (pl_store_t *self, const char *room_id, const char *user);

//  One READ of a batch: a member's cursor to move
typedef struct {
    const char *room_id;
    const char *user_id;
    int64_t seq;
    int result;                 //  out: 0 stored (or not a member), -1 failed
    char error [160];           //  out: why it failed
} pl_store_cursor_t;

//  Move members' read cursors forward, never back, in ONE unordered bulk
//  write: per member and room (several READs of one member in one room
//  become the highest) an insert into reads and a removal of the lower
//  ones. A redelivered READ is a duplicate insert: stored. An invalid id
//  fails alone. Returns 0 when the server answered (see each .result), -1
//  when the whole batch failed.
int
    pl_store_read_cursors (pl_store_t *self, pl_store_cursor_t *cursors, size_t count);

//  Selftest; needs PARLEY_TEST_MONGO_URL (fails without it).
void
    pl_store_test (bool verbose);

#endif
