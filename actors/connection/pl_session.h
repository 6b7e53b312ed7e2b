/*  =========================================================================
    pl_session - the STOMP sessions of one connection actor

    pl_session_t is one session (one WebSocket): it takes the client's
    bytes, handles its frames (CONNECT through pl_handshake, SUBSCRIBE,
    UNSUBSCRIBE, SEND, ...), asks the router (AUTHZ, SEND, and the resume
    of pl_resume) through pl_pending, and answers with RECEIPT, MESSAGE or
    ERROR. Frames for the client wait in the session's outbound queue
    until the actor writes them; over max-outbound-bytes the client is a
    slow consumer and gets an ERROR. After any ERROR, or DISCONNECT, the
    session is closing: input is ignored and the actor closes it once the
    queue is out, or after close-grace-s.

    pl_sessions_t holds every session of the actor: the rooms their active
    subscriptions want (pl_interest: JOIN on the first, LEAVE after the last),
    the fan-out of DELIVERs, heart-beats, and the drain on shutdown.

    No libwebsockets: everything the lws side does goes through pl_link.
    =========================================================================
*/
#ifndef PL_SESSION_H_INCLUDED
#define PL_SESSION_H_INCLUDED

#include "pl_limits.h"
#include "pl_link.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _pl_sessions_t pl_sessions_t;
typedef struct _pl_session_t pl_session_t;

//  What the sessions counted since the start
typedef struct {
    uint64_t sessions_total, frames_in, frames_out, sends, errors,
             deliveries, slow_consumers;
    //  Sessions ended because their token expired (issue 8)
    uint64_t tokens_expired;
    //  READs passed to the router; ERROR events (errors that do not end
    //  a session)
    uint64_t reads, event_errors;
    //  TYPINGs passed to the router
    uint64_t typing;
    //  Room subscriptions ended because the user was removed from the room
    uint64_t subscriptions_ended;
} pl_sessions_counts_t;

//  Create the sessions of an actor; link must outlive them. Returns NULL
//  when out of memory.
pl_sessions_t *
    pl_sessions_new (pl_link_t *link);

//  Destroy them, once every session has been destroyed. Safe on NULL and
//  twice.
void
    pl_sessions_destroy (pl_sessions_t **self_p);

//  A DELIVER from the router: a room's message to the subscriptions of
//  that room, or a user event (room "", user set) to that user's sessions.
void
    pl_sessions_deliver (pl_sessions_t *self, pl_msg_t *msg);

//  The router restarted: JOIN again every room with subscribers.
void
    pl_sessions_resync (pl_sessions_t *self);

//  Once a timer tick: heart-beats out, silent clients and sockets that
//  never sent CONNECT closed, sessions whose token expired ended. now is
//  monotonic ms.
void
    pl_sessions_tick (pl_sessions_t *self, int64_t now);

//  Every session gives back the buffers it holds between frames (the
//  frame parser's, an empty outbound queue); the next frame in or out
//  allocates them again. On the heap-trim cadence, so that a thousand idle
//  sessions hold no buffers of what they once sent.
void
    pl_sessions_trim (pl_sessions_t *self);

//  Shutting down: no new frames are handled; each session is told to
//  reconnect once its requests in flight are answered.
void
    pl_sessions_drain (pl_sessions_t *self);

//  The drain took too long: tell every session to reconnect now.
void
    pl_sessions_drain_now (pl_sessions_t *self);

//  Sessions, their subscriptions, and rooms with subscribers, now.
size_t
    pl_sessions_size (pl_sessions_t *self);
size_t
    pl_sessions_subscriptions (pl_sessions_t *self);
size_t
    pl_sessions_rooms (pl_sessions_t *self);

const pl_sessions_counts_t *
    pl_sessions_counts (pl_sessions_t *self);

//  What pl_limits refused, per limit
const pl_limits_refused_t *
    pl_sessions_refused (pl_sessions_t *self);

//  Open a session on conn (passed back to the link's hooks); subprotocol
//  is 10, 11 or 12 from the WebSocket subprotocol v1x.stomp, or 0 when
//  the client chose none. Returns NULL when out of memory.
pl_session_t *
    pl_session_new (pl_sessions_t *sessions, void *conn, int subprotocol);

//  Destroy a session whose connection closed: its subscriptions leave
//  their rooms and its requests are forgotten. Safe on NULL and twice.
void
    pl_session_destroy (pl_session_t **self_p);

//  Bytes from the client, in any split. Protocol errors are answered with
//  ERROR and close the session.
void
    pl_session_input (pl_session_t *self, const char *data, size_t size);

//  The queued bytes to write (STOMP frames, each ending in NUL, and
//  heart-beat EOLs), and their number in size; NULL when none.
const char *
    pl_session_outbound (pl_session_t *self, size_t *size);

//  size bytes of the outbound queue went out.
void
    pl_session_sent (pl_session_t *self, size_t size);

//  True once the session ends: close it when the queue is out.
bool
    pl_session_closing (pl_session_t *self);

void
    pl_session_test (bool verbose);

#endif
