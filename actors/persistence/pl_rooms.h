/*  =========================================================================
    pl_rooms - room rules: what a request may ask, who may do what, answers

    The HTTP-facing half of the persistence actor, without MongoDB: checks
    request JSON (ids, names, member lists, limits), decides who may enter,
    add and remove (members, the creator, direct rooms whose two members
    are fixed), picks each HTTP status and error text, and writes the
    response JSON. pl_store reads and writes the rooms these rules describe;
    the actor (pl_persistence) calls one, then the other.

    Checks return 0 when the request may go on, else an HTTP status with
    *json_p set to a malloc'd {"error":"..."}. Answers return their status
    with *json_p set to the malloc'd JSON. The caller frees *json_p.
    =========================================================================
*/
#ifndef PL_ROOMS_H_INCLUDED
#define PL_ROOMS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "pl_config.h"

//  A room as stored and answered. Owns its strings; a zeroed one is empty.
typedef struct {
    char *id;                   //  "d:<keyed hash of the pair>" or "g:<random>"
    char *kind;                 //  "direct" or "group"
    char *name;                 //  NULL: none (direct rooms)
    char *created_by;
    int64_t created_ms;
    char **members;             //  user ids, sorted once loaded
    size_t member_count;
    size_t member_capacity;
    int64_t *read_seqs;         //  read cursor of each member, NULL: not loaded
    int64_t last_seq;           //  highest stored seq, where loaded
    //  Where a room list loaded them (pl_store_rooms_of_user):
    json_t *last_message;       //  the newest message as delivered, NULL: none
    int64_t active_ms;          //  its createdAt, else the room's
    int64_t unread;             //  the caller's unread messages
} pl_room_t;

//  A stored message as history and resume serve it (strings borrowed)
typedef struct {
    const char *room_id;
    int64_t seq;
    const char *type;
    const char *sender_id;
    const char *sender_name;
    const char *content;
    const char *client_msg_id;  //  NULL: none
    int64_t created_ms;
} pl_room_message_t;

typedef struct _pl_rooms_t pl_rooms_t;

//  Rules with the limits of a configuration (max-room-members,
//  max-room-name-chars, history-limit; copied) and the key of direct room
//  ids (room-id-secret, else derived from jwt-secret). NULL, logged, when
//  there is neither secret: no key, no ids every host agrees on.
pl_rooms_t *
    pl_rooms_new (const pl_config_t *config);

void
    pl_rooms_destroy (pl_rooms_t **self_p);

//  --------------------------------------------------------------------------
//  The room model

//  Add a copy of user to the members (no check for repeats). 0 or -1.
int
    pl_rooms_member_push (pl_room_t *room, const char *user);

//  Sort the members (the order rooms are stored and answered in).
void
    pl_rooms_member_sort (pl_room_t *room);

//  Index of user among the members, or -1.
int
    pl_rooms_member_index (const pl_room_t *room, const char *user);

//  Free what a room holds and zero it; safe on a zeroed room.
void
    pl_rooms_room_reset (pl_room_t *room);

//  Reset count rooms, free the array, set *rooms_p to NULL.
void
    pl_rooms_list_destroy (pl_room_t **rooms_p, size_t count);

//  --------------------------------------------------------------------------
//  Requests: checked before anything is read

//  A rooms.members body: a JSON array of 1 to max valid room ids, copied
//  into *ids_p (*count_p of them; free with pl_rooms_ids_free). Returns 0,
//  or the status with its answer in *json_p.
int
    pl_rooms_ids_request (const char *body, size_t body_size, size_t max,
                          char ***ids_p, size_t *count_p, char **json_p);

void
    pl_rooms_ids_free (char ***ids_p, size_t count);

//  POST /api/rooms {"kind":"direct","members":["u2"]} or
//  {"kind":"group","name":"..","members":[..]}. Fills *room with a new room:
//  the caller always a member, repeats dropped, members sorted. A direct
//  room has exactly one other user and no name; its id derives from the
//  pair, so one pair always names the same room. A group has a name of
//  1..max-room-name-chars characters, 1..max-room-members members and a
//  random id. 400 (or 503 out of memory) leaves *room empty.
//  A direct room's id is "d:" + 32 hex digits of HMAC-SHA256 over the
//  sorted pair with the id key: the same for the pair on every host, and
//  not computable without the key.
int
    pl_rooms_create_request (pl_rooms_t *self, const char *caller, const char *body,
                             size_t body_size, pl_room_t *room, char **json_p);

//  GET /api/rooms: the caller must be a valid id (400).
int
    pl_rooms_list_request (const char *caller, char **json_p);

//  A request naming a room: 400 for an id that is not one (syntax only).
int
    pl_rooms_room_request (const char *room_id, char **json_p);

//  POST /api/rooms/{id}/members {"userId":"u3"}: copies the user id into
//  user (PL_ID_MAX + 1 bytes). 400 for a bad body.
int
    pl_rooms_add_request (const char *body, size_t body_size, char *user, char **json_p);

//  DELETE /api/rooms/{id}/members/{userId}: 400 for an invalid user id.
int
    pl_rooms_remove_request (const char *user_id, char **json_p);

//  The page size of history and resume: a request of none (< 1) or more
//  than history-limit gets history-limit.
int
    pl_rooms_page_limit (pl_rooms_t *self, int requested);

//  --------------------------------------------------------------------------
//  Decisions on a loaded room

//  Reading a room or its messages, changing its members: a caller who is
//  not a member gets 403 "not a member of room <room_id>", the same when
//  room is NULL (no such room), so that the answer does not tell whether
//  a room exists.
int
    pl_rooms_may_enter (const pl_room_t *room, const char *room_id, const char *caller, char **json_p);

//  Adding user (by any member): direct rooms 400, a full group 400. Returns
//  200 without JSON when user is a member already: nothing to write, the
//  answer is the room as it is.
int
    pl_rooms_may_add (pl_rooms_t *self, const pl_room_t *room, const char *user, char **json_p);

//  May user be in one more room, being in `held` already (max-rooms-per-
//  user)? 0, or 429 naming the limit. A quota, not a rate: waiting does not
//  help, so the answer has no Retry-After.
int
    pl_rooms_may_join_another (pl_rooms_t *self, const char *user, int64_t held, char **json_p);

//  Removing user: direct rooms 400 (the pair's id would name a room one of
//  them cannot enter); the creator removes anyone, a member only itself
//  (403); user not a member 404.
int
    pl_rooms_may_remove (const pl_room_t *room, const char *caller, const char *user, char **json_p);

//  The id a direct room had before ids were keyed (issue 8): "d:" + 32
//  hex digits of SHA-256 over the sorted pair. Rooms keep the id they were
//  stored with; a create looks the old one up first, so that a pair's old
//  room stays its room. 0, or -1 when room is no direct room of two.
int
    pl_rooms_legacy_id (const pl_room_t *room, char *buffer, size_t size);

//  --------------------------------------------------------------------------
//  Answers

//  The room object {"id","kind","name","members","lastSeq","createdAt"}
//  with status; room NULL (it vanished meanwhile) 404.
int
    pl_rooms_room_answer (const pl_room_t *room, int status, char **json_p);

//  GET /api/rooms/{id}: the room object plus "readSeq":{"u1":N,..}, every
//  member in order (0 where no cursor was loaded). 200.
int
    pl_rooms_detail_answer (const pl_room_t *room, char **json_p);

//  GET /api/rooms: one page of the caller's rooms, newest activity first
//  (ties by id): the ones after the room "after" (NULL or "": from the
//  first; one not in the list: 400), at most limit. Each room object has
//  "unread" (messages after the caller's read cursor that others sent) and
//  "lastMessage" (as delivered, or null). Sorts rooms in place. 200.
int
    pl_rooms_list_answer (pl_room_t *rooms, size_t count, const char *after, size_t limit,
                          char **json_p);

//  user.unread, for the router's UNREAD events: {"rooms":[{"roomId":..,
//  "unread":N,"lastSeq":L},..]} with the counts as the store loaded them.
//  200.
int
    pl_rooms_unread_answer (const pl_room_t *rooms, size_t count, char **json_p);

//  The member list for the router's cache: array of user ids, 200; room
//  NULL 404.
int
    pl_rooms_members_answer (const pl_room_t *room, char **json_p);

//  The highest stored seq of each room of a rooms.last_seq query: an
//  object id -> seq (0: none); 200.
int
    pl_rooms_last_seqs_answer (char * const *ids, const int64_t *lasts, size_t count,
                               char **json_p);

//  The member lists of a rooms.members query: an object of every id asked
//  for (ids, count) -> its members, or null where the room is not among the
//  found loaded rooms; 200.
int
    pl_rooms_members_many_answer (const pl_room_t *rooms, size_t found, char * const *ids,
                                  size_t count, char **json_p);

//  One message as a MESSAGE body has it (a new reference).
json_t *
    pl_rooms_message_json (const pl_room_message_t *message);

//  Answer with JSON (takes the reference). A value that cannot be written
//  answers 503 {"error":"internal error"}.
int
    pl_rooms_answer (char **json_p, int status, json_t *json);

//  MongoDB unreachable or failed: 503 "database unavailable, try again later".
int
    pl_rooms_unavailable (char **json_p);

//  Unknown query kind: 400 "unknown query".
int
    pl_rooms_unknown_query (char **json_p);

void
    pl_rooms_test (bool verbose);

#endif
