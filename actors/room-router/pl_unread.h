/*  =========================================================================
    pl_unread - the users watched on this host and their unread counts

    A connection actor WATCHes a user while it has a /user/queue/events
    subscriber of that user. For each watched user this class keeps the
    user's rooms and the count each connection actor was last told, and
    says UNREAD {"type":"UNREAD","roomId":..,"unread":N}:
      - for every room at once when a user is first watched (the counts of
        a QUERY user.unread with every room), and to a connection actor
        that starts watching a user already known here;
      - afterwards for a room whose count changed, at most once per room
        every interval: a message appended to the room or a READ of the
        user makes the room due; each tick asks MongoDB (QUERY user.unread)
        for the due rooms of each user, one question per user at a time.
    MongoDB lags the stream: while its last seq of a room is below the one
    seen here, the room stays due and is asked again next tick, so the
    count a client ends with is exact.

    No sockets: questions and events go out through the ops the router
    gives, answers come in through pl_unread_answer, so the selftest drives
    it with hand-made answers.
    =========================================================================
*/
#ifndef PL_UNREAD_H_INCLUDED
#define PL_UNREAD_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct _pl_unread_t pl_unread_t;

typedef struct {
    //  Ask MongoDB for user's counts in rooms (a JSON array of room ids,
    //  borrowed; NULL: every room of the user), answered later through
    //  pl_unread_answer with the corr returned. 0: could not ask now.
    uint64_t (*ask) (void *arg, const char *user, json_t *rooms);
    //  Send a user event to one connection actor.
    void (*event) (void *arg, const char *conn, const char *user, const char *body);
} pl_unread_ops_t;

//  ops and arg outlive the object; a question not answered within
//  timeout_ms (the store died with it) is forgotten and asked again.
//  Returns NULL when out of memory.
pl_unread_t *
    pl_unread_new (const pl_unread_ops_t *ops, void *arg, int64_t timeout_ms);

//  Safe on NULL and twice.
void
    pl_unread_destroy (pl_unread_t **self_p);

//  WATCH and UNWATCH of a connection actor.
void
    pl_unread_watch (pl_unread_t *self, const char *conn, const char *user);
void
    pl_unread_unwatch (pl_unread_t *self, const char *conn, const char *user);

//  A connection actor restarted or went away: it watches nobody now.
void
    pl_unread_conn_gone (pl_unread_t *self, const char *conn);

//  Whether some watched user is a member of room (is the room worth a look).
bool
    pl_unread_knows_room (pl_unread_t *self, const char *room);

//  A message with seq was appended to room.
void
    pl_unread_message (pl_unread_t *self, const char *room, uint64_t seq);

//  user's read cursor in room moved.
void
    pl_unread_read (pl_unread_t *self, const char *room, const char *user);

//  user was added to or removed from room.
void
    pl_unread_room_added (pl_unread_t *self, const char *room, const char *user);
void
    pl_unread_room_removed (pl_unread_t *self, const char *room, const char *user);

//  A RESULT of the router's own QUERY: true when it answered one of ours
//  (then it is handled), false when corr is not ours.
bool
    pl_unread_answer (pl_unread_t *self, uint64_t corr, uint32_t status, const char *body,
                      size_t size);

//  Once an interval (unread-interval-ms): ask for what is due.
void
    pl_unread_tick (pl_unread_t *self);

//  Watched users (for figures and tests).
size_t
    pl_unread_users (pl_unread_t *self);

void
    pl_unread_test (bool verbose);

#endif
