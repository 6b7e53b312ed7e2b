/*  =========================================================================
    pl_msg - the envelope between parley's actors (see proto/SPEC.md)

    One message = [routing id frame, on ROUTER sockets only] + one body frame:
        "PL" version:u8 command:u8
        session:u64 corr:u64 seq:u64 created:i64 status:u32
        route room user name kind sub key id cmid : each u16 length + bytes
        body : u32 length + bytes
    Integers are big-endian. A frame with a foreign signature, another
    version, an unknown command or a length that does not add up is logged
    and dropped by pl_msg_recv: it never reaches the actor's logic.

    PL_MSG_PROTOCOL below is the one description of what each command means:
    who sends it to whom and which fields it carries, each a name for one
    wire slot. The accessors are generated from it and refuse (assert) a
    field the message's command does not declare. proto/SPEC.md carries the
    same tables for people; the pl_msg selftest fails when the two differ.
    =========================================================================
*/
#ifndef PL_MSG_H_INCLUDED
#define PL_MSG_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#define PL_MSG_VERSION 1

//  The wire slots in frame order after the command byte: X (slot, type).
//  Types: u64, i64, u32 (big-endian integers), string (u16 length + bytes,
//  no NUL inside), bytes (u32 length + bytes).
#define PL_MSG_SLOTS(X) \
    X (session, u64) X (corr, u64) X (seq, u64) X (created, i64) X (status, u32) \
    X (route, string) X (room, string) X (user, string) X (name, string) X (kind, string) \
    X (sub, string) X (key, string) X (id, string) X (cmid, string) \
    X (body, bytes)

//  Named fields: X (field, slot, type). One name is one meaning, always in
//  the same slot with the slot's type; a slot that means different things
//  in different commands has one name per meaning.
#define PL_MSG_FIELDS(X) \
    X (session,     session, u64)       \
    X (corr,        corr,    u64)       \
    X (seq,         seq,     u64)       \
    X (before,      seq,     u64)       \
    X (after,       seq,     u64)       \
    X (read_seq,    seq,     u64)       \
    X (created,     created, i64)       \
    X (status,      status,  u32)       \
    X (readiness,   status,  u32)       \
    X (limit,       status,  u32)       \
    X (first_hello, status,  u32)       \
    X (route,       route,   string)    \
    X (room,        room,    string)    \
    X (user,        user,    string)    \
    X (actor_name,  name,    string)    \
    X (sender_name, name,    string)    \
    X (caller_name, name,    string)    \
    X (role,        kind,    string)    \
    X (action,      kind,    string)    \
    X (type,        kind,    string)    \
    X (operation,   kind,    string)    \
    X (target_user, sub,     string)    \
    X (stream,      key,     string)    \
    X (entry_id,    id,      string)    \
    X (cmid,        cmid,    string)    \
    X (body,        body,    bytes)

//  The protocol: every command, who sends it to whom, and the fields it
//  declares with their meaning in that command. Fields no row declares
//  stay empty (0, "") on the wire.
//      C (COMMAND, number, "path", "summary")
//      F (COMMAND, field, "meaning")
//  A path is one or more legs "a → b" or "a → b → c", separated by "; ",
//  between conn, router, store and bridge. Meanings hold no '|' (they are
//  markdown table cells in SPEC.md). Commands are only ever added at the
//  end, with the next number.
#define PL_MSG_PROTOCOL(C, F) \
    C (HELLO, 1, "conn → router; store → router; store → bridge; router → bridge", \
       "a peer announces itself; a store and the router repeat it every second as a heart-beat") \
    F (HELLO, role,        "`conn`, `store` or `router`: what the receiver files the peer as") \
    F (HELLO, actor_name,  "for logs, not read: `<host>/conn-<i>` from a conn, the host id from a store or the router") \
    F (HELLO, first_hello, "store only: 1 in its first HELLO since it started, else 0") \
    C (PING, 2, "conn → router; router → conn; bridge → router", \
       "a conn's heart-beat; the answer says what the host is ready for") \
    F (PING, readiness,    "answers only: bit `PL_READY_STORE` (1) a store is connected, bit `PL_READY_BRIDGE` (2) the bridge has Redis; the bridge sets only bit 2") \
    C (RESYNC, 3, "router → conn", \
       "the router does not know this conn (it restarted): announce yourself and your rooms again") \
    C (JOIN, 4, "conn → router", \
       "the conn has its first local subscriber of a room") \
    F (JOIN, room,         "the room") \
    C (LEAVE, 5, "conn → router", \
       "the conn's last local subscriber of a room is gone") \
    F (LEAVE, room,        "the room") \
    C (AUTHZ, 6, "conn → router", \
       "may this user subscribe to this room?") \
    F (AUTHZ, corr,        "chosen by the conn, echoed in the RESULT") \
    F (AUTHZ, session,     "the subscriber's session, echoed in the RESULT") \
    F (AUTHZ, user,        "the subscriber's user id (from its token)") \
    F (AUTHZ, room,        "the room to subscribe to") \
    F (AUTHZ, action,      "`subscribe` (not read by the router)") \
    C (SEND, 7, "conn → router → bridge", \
       "append a message to a room") \
    F (SEND, corr,         "chosen by the conn, echoed in the RESULT") \
    F (SEND, session,      "the sender's session, echoed in the RESULT") \
    F (SEND, user,         "senderId (from the token)") \
    F (SEND, sender_name,  "senderName (from the token)") \
    F (SEND, room,         "the room") \
    F (SEND, type,         "message type: `TALK`, `READ` or `TYPING`") \
    F (SEND, read_seq,     "`READ`: the sender's new read cursor in the room; else 0") \
    F (SEND, cmid,         "clientMsgId, or empty: one repeated within `dedup-ttl-s` is not appended again") \
    F (SEND, body,         "the content") \
    F (SEND, route,        "set by the router: the conn's routing id, copied into the RESULT") \
    C (RESULT, 8, "router → conn; bridge → router → conn; store → router → conn; store → router; store → bridge", \
       "the answer to AUTHZ, SEND, QUERY or REPLAY") \
    F (RESULT, route,      "from the bridge or a store: the conn the router forwards it to; empty from a store: the answer to the router's (or the bridge's) own QUERY") \
    F (RESULT, corr,       "the request's corr") \
    F (RESULT, session,    "the request's session") \
    F (RESULT, room,       "the request's room, from the router and a store (the conn reads it in an AUTHZ answer)") \
    F (RESULT, status,     "HTTP-style: 2xx done, 4xx refused, 503 unavailable (try again)") \
    F (RESULT, seq,        "SEND: the message's room seq (also for a repeated clientMsgId), a `READ`'s cursor (400: past the room's last seq), 0 for `TYPING`; REPLAY: the room's last seq in the stream; else 0") \
    F (RESULT, body,       "AUTHZ, SEND: text for the client when refused; QUERY: JSON; REPLAY: JSON array of DELIVER bodies") \
    C (DELIVER, 9, "bridge → router → conn", \
       "a room message for the conn's subscribers (or a user event)") \
    F (DELIVER, room,      "the room; empty in a user event") \
    F (DELIVER, seq,       "the message's room seq; 0 in an event of the room (`READ_STATUS`, `TYPING`), which no resume holds back or drops") \
    F (DELIVER, created,   "createdAt, milliseconds since the epoch (delivery latency)") \
    F (DELIVER, user,      "a user event (room empty): the user whose sessions get it on `/user/queue/events`; an event of a room (`TYPING`): its sender, whose own sessions do not get it; else empty") \
    F (DELIVER, body,      "the JSON the client gets (`{\"roomId\":…,\"seq\":…}`), rendered once by the bridge") \
    C (PERSIST, 10, "bridge → store", \
       "store this stream entry in MongoDB") \
    F (PERSIST, stream,    "the shard stream that holds the entry") \
    F (PERSIST, entry_id,  "the entry's id in that stream") \
    F (PERSIST, room,      "roomId") \
    F (PERSIST, seq,       "the message's room seq; `READ`: the reader's new cursor") \
    F (PERSIST, type,      "message type; `READ`: a read cursor, not a message") \
    F (PERSIST, user,      "senderId; `READ`: the reader") \
    F (PERSIST, sender_name, "senderName") \
    F (PERSIST, cmid,      "clientMsgId, or empty") \
    F (PERSIST, created,   "createdAt, milliseconds since the epoch") \
    F (PERSIST, body,      "the content") \
    C (PERSISTED, 11, "store → bridge", \
       "the entry is stored, or failed") \
    F (PERSISTED, stream,  "the PERSIST's stream") \
    F (PERSISTED, entry_id, "the PERSIST's entry id") \
    F (PERSISTED, room,    "the PERSIST's room (not read)") \
    F (PERSISTED, seq,     "the PERSIST's seq (not read)") \
    F (PERSISTED, status,  "200 stored (or stored before); 500 failed") \
    F (PERSISTED, body,    "on 500: the error") \
    C (QUERY, 12, "conn → router → store; router → store; bridge → store", \
       "work for MongoDB: the HTTP API, a resume's history, the router's member lists, the bridge's seq floors") \
    F (QUERY, corr,        "chosen by the requester, echoed in the RESULT") \
    F (QUERY, session,     "`room.since`: the subscriber's session; else 0") \
    F (QUERY, route,       "set by the router: the conn's routing id, copied into the RESULT; empty in the router's own") \
    F (QUERY, operation,   "`room.create`, `room.get`, `room.list`, `room.messages`, `room.since`, `room.members`, `rooms.members`, `member.add`, `member.remove`, `user.unread`, `rooms.last_seq` or `room.client_msg_ids`") \
    F (QUERY, user,        "the caller (from its token); empty in the router's and the bridge's own; `user.unread`: the user whose counts are asked") \
    F (QUERY, caller_name, "the caller's name (from its token; not read)") \
    F (QUERY, room,        "the room of the operation; `room.list`: the page starts after this room (empty: from the first)") \
    F (QUERY, target_user, "`member.remove`: the user to remove") \
    F (QUERY, before,      "`room.messages`: only seq < before, newest first (0: no bound)") \
    F (QUERY, after,       "`room.since`: only seq > after, oldest first") \
    F (QUERY, limit,       "`room.messages`, `room.since`, `room.list`: at most this many (0 or over `history-limit`: `history-limit`)") \
    F (QUERY, body,        "`room.create`, `member.add`: the request's JSON object; `user.unread`: a JSON array of room ids (empty: every room of the user); `rooms.members`: a JSON array of 1 to `member-load-batch` room ids; `rooms.last_seq`: a JSON array of 1 to `seq-floor-batch` room ids; `room.client_msg_ids`: {\"after\": seq, \"upTo\": seq}") \
    C (ROOM_CHANGED, 13, "store → router → bridge; bridge → router", \
       "a room's members changed: every host's router drops its cached list") \
    F (ROOM_CHANGED, room, "the room") \
    F (ROOM_CHANGED, type, "the user event it makes: `ROOM_ADDED`, `ROOM_REMOVED`, or empty (members reloaded only)") \
    F (ROOM_CHANGED, target_user, "the user the event is for; empty in a `ROOM_ADDED`: every member of the new room") \
    F (ROOM_CHANGED, body, "`ROOM_ADDED`: the room object (JSON) as the HTTP API answers it") \
    C (REPLAY, 14, "conn → router → bridge", \
       "a room's messages after a seq that are still in its shard stream (resume)") \
    F (REPLAY, corr,       "chosen by the conn, echoed in the RESULT") \
    F (REPLAY, session,    "the subscriber's session, echoed in the RESULT") \
    F (REPLAY, route,      "set by the router: the conn's routing id, copied into the RESULT") \
    F (REPLAY, user,       "the subscriber (the router checks membership)") \
    F (REPLAY, room,       "the room") \
    F (REPLAY, after,      "only seq > after, oldest first") \
    F (REPLAY, limit,      "at most this many (0 or over `history-limit`: `history-limit`)") \
    C (WATCH, 15, "conn → router", \
       "the conn has its first `/user/queue/events` subscriber of a user: send it that user's events") \
    F (WATCH, user,        "the user") \
    C (UNWATCH, 16, "conn → router", \
       "the conn's last `/user/queue/events` subscriber of a user is gone") \
    F (UNWATCH, user,      "the user") \
    C (PRESENT, 17, "conn → router", \
       "the conn has its first subscription of a user to a room") \
    F (PRESENT, room,      "the room") \
    F (PRESENT, user,      "the user") \
    C (ABSENT, 18, "conn → router", \
       "the conn's last subscription of a user to a room is gone") \
    F (ABSENT, room,       "the room") \
    F (ABSENT, user,       "the user") \
    C (BROADCAST, 19, "router → bridge; bridge → router", \
       "best effort to every host's router (Redis pub/sub): presence, typing") \
    F (BROADCAST, body,    "the payload, JSON with a type: `ENTER`, `LEAVE`, `PRESENCE` or `TYPING`")

#define PL_MSG_COMMAND_ENUM(command, number, path, summary) PL_MSG_##command = number,
#define PL_MSG_NO_FIELD(command, field, meaning)
typedef enum {
    PL_MSG_PROTOCOL (PL_MSG_COMMAND_ENUM, PL_MSG_NO_FIELD)
    PL_MSG_COMMAND_LIMIT
} pl_msg_command_t;

//  Readiness bits of a PING answer
#define PL_READY_STORE  1       //  a persistence actor is connected
#define PL_READY_BRIDGE 2       //  the stream bridge has Redis

//  Largest short string field and body the codec accepts
#define PL_MSG_STRING_MAX 65535
#define PL_MSG_BODY_MAX   (16 * 1024 * 1024)

typedef struct _pl_msg_t pl_msg_t;

pl_msg_t *pl_msg_new (pl_msg_command_t command);
void      pl_msg_destroy (pl_msg_t **self_p);
//  A new message with the same fields (not the routing id).
pl_msg_t *pl_msg_dup (const pl_msg_t *self);

//  Receive one message; NULL on interrupt or when the message was malformed
//  (logged and dropped; call again). On a ROUTER socket the routing id is
//  kept for replies.
pl_msg_t *pl_msg_recv (zsock_t *socket);
//  Receive like pl_msg_recv but never block: NULL when nothing is waiting.
pl_msg_t *pl_msg_recv_nowait (zsock_t *socket, bool *malformed);
//  Receive until a message of this command arrives, dropping others (peers'
//  HELLOs and PINGs); NULL on the socket's receive timeout or interrupt.
//  For tests that play a peer of an actor.
pl_msg_t *pl_msg_recv_command (zsock_t *socket, pl_msg_command_t command);
//  Send and destroy. On a ROUTER socket the routing id goes first. 0 / -1.
int       pl_msg_send (pl_msg_t **self_p, zsock_t *socket);
//  Send a copy, keep the message (for fan-out to several peers).
int       pl_msg_send_copy (pl_msg_t *self, zsock_t *socket, const char *routing_id);

//  Encode into one frame / decode one frame (NULL when malformed).
zframe_t *pl_msg_encode (const pl_msg_t *self);
pl_msg_t *pl_msg_decode (const byte *data, size_t size, const char **error);

pl_msg_command_t pl_msg_command (const pl_msg_t *self);
const char *pl_msg_command_name (pl_msg_command_t command);

//  The named fields, for code that serves several commands alike (such as
//  the RESULT builder): it asks whether a command declares a field before
//  it reads it. A table lookup: cheap enough for every message.
typedef enum {
#define PL_MSG_FIELD_ENUM(field, slot, type) PL_MSG_FIELD_##field,
    PL_MSG_FIELDS (PL_MSG_FIELD_ENUM)
    PL_MSG_FIELD_LIMIT
} pl_msg_field_t;

bool pl_msg_declares (pl_msg_command_t command, pl_msg_field_t field);

//  Routing id (ROUTER sockets): the peer it came from / goes to.
const char *pl_msg_routing_id (const pl_msg_t *self);
void        pl_msg_set_routing_id (pl_msg_t *self, const char *routing_id);

//  Every named field of PL_MSG_FIELDS has a getter and a setter:
//      pl_msg_<field> (msg)            pl_msg_set_<field> (msg, value)
//  e.g. pl_msg_limit (query), pl_msg_set_readiness (ping, bits). Both
//  assert that the message's command declares the field. Strings are never
//  NULL ("" when unset); setting NULL sets "", and values longer than
//  PL_MSG_STRING_MAX are truncated (callers enforce their own, smaller
//  limits on input). The body is any bytes, kept NUL-terminated:
//      pl_msg_body (msg), pl_msg_body_size (msg), pl_msg_set_body (msg, data, size)
#define PL_MSG_DECLARE_NUMBER(field, ctype) \
    ctype pl_msg_##field (const pl_msg_t *self); \
    void  pl_msg_set_##field (pl_msg_t *self, ctype value);
#define PL_MSG_DECLARE_u64(field) PL_MSG_DECLARE_NUMBER (field, uint64_t)
#define PL_MSG_DECLARE_i64(field) PL_MSG_DECLARE_NUMBER (field, int64_t)
#define PL_MSG_DECLARE_u32(field) PL_MSG_DECLARE_NUMBER (field, uint32_t)
#define PL_MSG_DECLARE_string(field) \
    const char *pl_msg_##field (const pl_msg_t *self); \
    void        pl_msg_set_##field (pl_msg_t *self, const char *value);
#define PL_MSG_DECLARE_bytes(field) \
    const char *pl_msg_##field (const pl_msg_t *self); \
    size_t      pl_msg_##field##_size (const pl_msg_t *self); \
    void        pl_msg_set_##field (pl_msg_t *self, const char *data, size_t size);
#define PL_MSG_DECLARE_FIELD(field, slot, type) PL_MSG_DECLARE_##type (field)
PL_MSG_FIELDS (PL_MSG_DECLARE_FIELD)

//  One line for logs: the command and its named fields.
void pl_msg_print (const pl_msg_t *self, char *buffer, size_t size);

void pl_msg_test (bool verbose);

#endif
