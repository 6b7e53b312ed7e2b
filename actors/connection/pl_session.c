/*  =========================================================================
    pl_session - the STOMP sessions of one connection actor

    A subscription to a room is active once the router said yes to its
    AUTHZ; only active ones are in the room table and get DELIVERs. Each
    has a pl_resume that keeps its seq cursor and, with since-seq, fills the
    gap before live messages flow.
    =========================================================================
*/
#include "pl_session.h"
#include "pl_limits.h"
#include "pl_stomp.h"
#include "pl_util.h"
#include "pl_handshake.h"
#include "pl_log.h"
#include "pl_resume.h"
#include "pl_interest.h"

#include <jansson.h>
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC_ROOMS         "/topic/rooms/"
#define APP_ROOMS           "/app/rooms/"
#define USER_EVENTS         "/user/queue/events"
#define SHUTDOWN_MESSAGE    "server shutting down: reconnect and resume with since-seq"
#define EXPIRED_MESSAGE     "token expired: reconnect with a new token and resume with since-seq " \
                            "(send again what got no receipt)"

struct _pl_sessions_t {
    pl_link_t *link;
    uint64_t next_number;
    bool shutting_down;         //  no new frames; sessions end when answered
    zlistx_t *list;             //  pl_session_t, not owned
    pl_interest_t *rooms;       //  the active subscriptions of each room
    pl_interest_t *watchers;    //  the /user/queue/events subscriptions of each user
    pl_interest_t *presence;    //  the active room subscriptions of each room and user
    pl_limits_t *limits;        //  connections, SEND rate, requests in flight
    pl_sessions_counts_t counts;
    pl_resume_gate_t *resumes;  //  resume-user-max per user at once (issue 8)
};

struct _pl_session_t {
    pl_sessions_t *owner;
    void *conn;
    uint64_t number;
    int subprotocol;            //  10/11/12 from v1x.stomp, 0 when none
    bool connected;
    bool counted;               //  pl_limits_open said yes
    pl_handshake_t terms;       //  what CONNECT settled, zero before
    int64_t expires_ms;         //  monotonic ms the token (with leeway) expires
    bool expired;               //  past it: no new frames, ERROR once answered
    bool closing;               //  ERROR queued or DISCONNECT: no more input
    pl_stomp_parser_t *parser;
    zhashx_t *subs;             //  id -> sub_t
    pl_buf_t out;
    int64_t created_ms;
    int64_t last_in_ms;
    int64_t last_out_ms;
    void *list_handle;          //  in owner->list
    uint64_t events;            //  MESSAGEs without a seq so far: their message-ids
};

//  One subscription of a session
typedef struct {
    pl_session_t *session;
    char *id;                   //  client's subscription id
    char *destination;
    char room [PL_ID_MAX + 1];  //  "" for the user queue
    bool active;                //  AUTHZ answered 200 (or no AUTHZ needed)
    uint64_t corr;              //  AUTHZ or resume request in flight
    void *room_handle;          //  in the room's list, when active
    void *presence_handle;      //  in the room and user's list, when active
    int64_t since;              //  since-seq asked for, -1 when none
    pl_resume_t *resume;        //  a room's: cursor and resume
} sub_t;

static void s_session_error (pl_session_t *self, const char *message, const char *receipt);
static void s_session_shutdown (pl_session_t *self);
static void s_session_expire_check (pl_session_t *self, int64_t now);

static void s_authz_answer (pl_pending_request_t *request, pl_msg_t *result);
static void s_send_answer (pl_pending_request_t *request, pl_msg_t *result);
static void s_soft_answer (pl_pending_request_t *request, pl_msg_t *result);
static void s_soft_expire (pl_pending_request_t *request);
static void s_resume_answer (pl_pending_request_t *request, pl_msg_t *result);
static void s_request_expire (pl_pending_request_t *request);
static const pl_pending_kind_t s_authz_kind = { "AUTHZ", s_authz_answer, s_request_expire };
static const pl_pending_kind_t s_send_kind = { "SEND", s_send_answer, s_request_expire };
static const pl_pending_kind_t s_read_kind = { "READ", s_soft_answer, s_soft_expire };
static const pl_pending_kind_t s_typing_kind = { "TYPING", s_soft_answer, s_soft_expire };
static const pl_pending_kind_t s_resume_kind = { "RESUME", s_resume_answer, s_request_expire };


//  A subscription leaves its room's list, if it is in one
static void
s_sub_leave (sub_t *sub)
{
    if (sub->room_handle) {
        pl_sessions_t *owner = sub->session->owner;
        if (*sub->room)
            pl_interest_remove (owner->rooms, sub->room, sub->room_handle);
        else
            pl_interest_remove (owner->watchers, sub->session->terms.identity.user_id, sub->room_handle);
        sub->room_handle = NULL;
    }
    if (sub->presence_handle) {
        char key [2 * PL_ID_MAX + 2];
        snprintf (key, sizeof key, "%s %s", sub->room, sub->session->terms.identity.user_id);
        pl_interest_remove (sub->session->owner->presence, key, sub->presence_handle);
        sub->presence_handle = NULL;
    }
}

//  The room of a ROOM_REMOVED user event into room, else ""
static void
s_event_removed_room (pl_msg_t *msg, char *room)
{
    *room = 0;
    //  Most user events are UNREAD counts: parse only what can be a removal
    if (!memmem (pl_msg_body (msg), pl_msg_body_size (msg), "\"ROOM_REMOVED\"", 14))
        return;
    json_t *event = json_loadb (pl_msg_body (msg), pl_msg_body_size (msg), 0, NULL);
    const char *room_id = json_string_value (json_object_get (event, "roomId"));
    if (streq_safe (json_string_value (json_object_get (event, "type")), "ROOM_REMOVED")
    &&  room_id && pl_id_valid (room_id))
        snprintf (room, PL_ID_MAX + 1, "%s", room_id);
    json_decref (event);
}

//  The user is no longer a member: its subscriptions to the room end now
//  (no ERROR, the session goes on; the ROOM_REMOVED event says why)
static void
s_session_end_room (pl_session_t *self, const char *room)
{
    zlistx_t *ended = zlistx_new ();
    assert (ended);
    for (sub_t *sub = (sub_t *) zhashx_first (self->subs); sub; sub = (sub_t *) zhashx_next (self->subs))
        if (streq (sub->room, room))
            zlistx_add_end (ended, sub->id);
    for (char *id = (char *) zlistx_first (ended); id; id = (char *) zlistx_next (ended)) {
        s_sub_leave ((sub_t *) zhashx_lookup (self->subs, id));
        zhashx_delete (self->subs, id);
        self->owner->counts.subscriptions_ended++;
    }
    zlistx_destroy (&ended);
}


//  --------------------------------------------------------------------------
//  The outbound queue, ERROR and RECEIPT

static int
s_session_version (pl_session_t *self)
{
    //  Before CONNECTED nothing is escaped, so an ERROR reads plainly
    return self->terms.version? self->terms.version: 10;
}

static void
s_session_want_write (pl_session_t *self)
{
    self->owner->link->want_write (self->owner->link->arg, self->conn);
}

//  The client has close-grace-s to read what is queued before we close
static void
s_session_close_after_flush (pl_session_t *self)
{
    self->closing = true;
    pl_link_t *link = self->owner->link;
    link->timeout (link->arg, self->conn, link->config->close_grace_s);
    s_session_want_write (self);
}

//  Close at once, with nothing more to say
static void
s_session_close_now (pl_session_t *self)
{
    self->closing = true;
    self->owner->link->timeout (self->owner->link->arg, self->conn, PL_LINK_CLOSE_NOW);
}

//  Append one frame and ask for a write. Over the queue bound the client
//  is too slow to follow: drop what it has not read, tell it so and close;
//  it resumes with since-seq.
static void
s_session_queue (pl_session_t *self, const char *command,
                 const char *const *headers, const char *body, size_t body_size)
{
    if (self->closing)
        return;
    pl_sessions_t *owner = self->owner;
    if (pl_stomp_write (&self->out, s_session_version (self), command,
                        headers, body, body_size)) {
        s_session_error (self, "server out of memory", NULL);
        return;
    }
    owner->counts.frames_out++;
    int max_outbound = owner->link->config->max_outbound_bytes;
    if (pl_buf_pending (&self->out) > (size_t) max_outbound) {
        owner->counts.slow_consumers++;
        pl_buf_reset (&self->out);
        char message [160];
        snprintf (message, sizeof message,
                  "slow consumer: outbound queue over %d bytes; reconnect and resume",
                  max_outbound);
        pl_log_info ("session %" PRIu64 ": %s", self->number, message);
        s_session_error (self, message, NULL);
        return;
    }
    s_session_want_write (self);
}

//  Queue an ERROR and close once it is out. STOMP ends a session after
//  any ERROR.
static void
s_session_error (pl_session_t *self, const char *message, const char *receipt)
{
    if (self->closing)
        return;
    self->owner->counts.errors++;
    self->owner->counts.frames_out++;
    pl_log_debug ("session %" PRIu64 ": ERROR %s", self->number, message);
    if (pl_stomp_write_error (&self->out, s_session_version (self), message, NULL, receipt))
        pl_buf_reset (&self->out);
    //  A client that does not read never makes us writable: bound the wait
    s_session_close_after_flush (self);
}

static void
s_session_receipt (pl_session_t *self, const char *receipt, const char *seq)
{
    if (!receipt)
        return;
    const char *headers [] = { "receipt-id", receipt, seq? "seq": NULL, seq, NULL };
    s_session_queue (self, "RECEIPT", headers, NULL, 0);
}

//  Queue one MESSAGE for a subscription: a room's message (seq > 0), an
//  event of a room (READ_STATUS: seq 0) or of the user queue (room "").
//  Returns -1 when the session is closing.
static int
s_sub_message (sub_t *sub, const char *room, uint64_t seq, const char *body, size_t size)
{
    char message_id [PL_ID_MAX + 32], seq_text [24];
    snprintf (seq_text, sizeof seq_text, "%" PRIu64, seq);
    //  A room id is at most PL_ID_MAX characters (checked at SUBSCRIBE).
    //  Events have no seq: they are numbered per session, "<room>:e<n>"
    if (seq)
        snprintf (message_id, sizeof message_id, "%.*s:%s", PL_ID_MAX, room, seq_text);
    else
        snprintf (message_id, sizeof message_id, "%.*s:e%" PRIu64, PL_ID_MAX,
                  *room? room: "user", ++sub->session->events);
    const char *headers [] = {
        "subscription", sub->id, "message-id", message_id, "destination", sub->destination,
        "content-type", "application/json", "seq", seq_text, NULL
    };
    //  Only messages carry a seq: a client resumes from it
    if (!seq)
        headers [8] = NULL;
    s_session_queue (sub->session, "MESSAGE", headers, body, size);
    return sub->session->closing? -1: 0;
}


//  --------------------------------------------------------------------------
//  Requests to the router, answered through the pending table

//  Send a request for the session: corr, session and user are set here.
//  track (may be NULL) gets the corr before the message goes out, as the
//  answer may be handled before the send returns. On failure the session
//  gets an ERROR. Returns the corr, or 0.
static uint64_t
s_session_request (pl_session_t *self, const pl_pending_kind_t *kind, pl_msg_t **msg_p,
                   const char *sub_id, const char *receipt, uint64_t *track)
{
    pl_link_t *link = self->owner->link;
    uint64_t corr = *msg_p? pl_pending_add (link->pending, kind, self, sub_id, receipt): 0;
    if (!corr) {
        pl_msg_destroy (msg_p);
        s_session_error (self, "server out of memory", receipt);
        return 0;
    }
    if (track)
        *track = corr;
    pl_msg_set_corr (*msg_p, corr);
    pl_msg_set_session (*msg_p, self->number);
    pl_msg_set_user (*msg_p, self->terms.identity.user_id);
    if (link->send (link->arg, msg_p)) {
        pl_pending_cancel (link->pending, corr);
        s_session_error (self, "server busy, try again", receipt);
        return 0;
    }
    return corr;
}

//  A session asks the router once more: within max-in-flight? Else ERROR.
static bool
s_session_may_request (pl_session_t *self, const char *receipt)
{
    char message [200];
    size_t in_flight = pl_pending_owned (self->owner->link->pending, self);
    if (pl_limits_request (self->owner->limits, in_flight, message, sizeof message) == 0)
        return true;
    s_session_error (self, message, receipt);
    return false;
}

//  After an answer: a draining session with nothing left in flight is
//  told to reconnect now.
static void
s_session_answered (pl_session_t *self)
{
    if (self->owner->shutting_down && pl_pending_owned (self->owner->link->pending, self) == 0)
        s_session_shutdown (self);
    if (self->expired && pl_pending_owned (self->owner->link->pending, self) == 0)
        s_session_error (self, EXPIRED_MESSAGE, NULL);
}

static void
s_request_expire (pl_pending_request_t *request)
{
    s_session_error ((pl_session_t *) request->owner, "server busy, try again", request->receipt);
}

//  The subscription a request is for, when it is still the one that asked
//  and its session goes on; NULL otherwise.
static sub_t *
s_request_sub (pl_pending_request_t *request)
{
    pl_session_t *session = (pl_session_t *) request->owner;
    sub_t *sub = (sub_t *) zhashx_lookup (session->subs, request->sub_id);
    return sub && sub->corr == request->corr && !session->closing? sub: NULL;
}

static void
s_authz_answer (pl_pending_request_t *request, pl_msg_t *result)
{
    pl_session_t *session = (pl_session_t *) request->owner;
    pl_sessions_t *owner = session->owner;
    sub_t *sub = s_request_sub (request);
    const char *room = pl_msg_room (result);
    //  The router counted the room for us on 200: if the subscription is
    //  gone (unsubscribed, perhaps re-subscribed) and no other one here
    //  wants the room, take that back
    if (pl_msg_status (result) == 200 && !sub)
        pl_interest_release (owner->rooms, room);
    if (sub && pl_msg_status (result) == 200) {
        sub->active = true;
        sub->corr = 0;
        //  Joined first, so nothing live slips between gap and live
        sub->room_handle = pl_interest_add (owner->rooms, sub->room, sub);
        //  Online in the room (presence): after JOIN, so the router routes
        //  the ENTER of this very user here too
        char key [2 * PL_ID_MAX + 2];
        snprintf (key, sizeof key, "%s %s", sub->room, session->terms.identity.user_id);
        sub->presence_handle = pl_interest_add (owner->presence, key, sub);
        s_session_receipt (session, request->receipt, NULL);
        if (sub->since >= 0)
            pl_resume_start (sub->resume, (uint64_t) sub->since);
    }
    else
    if (sub) {
        char reason [256];
        pl_pending_reason (result, reason, sizeof reason);
        zhashx_delete (session->subs, request->sub_id);
        s_session_error (session, reason, request->receipt);
    }
    s_session_answered (session);
}

static void
s_send_answer (pl_pending_request_t *request, pl_msg_t *result)
{
    pl_session_t *session = (pl_session_t *) request->owner;
    if (pl_msg_status (result) == 200) {
        char seq [24];
        snprintf (seq, sizeof seq, "%" PRIu64, pl_msg_seq (result));
        s_session_receipt (session, request->receipt, seq);
    }
    else {
        char reason [256];
        pl_pending_reason (result, reason, sizeof reason);
        s_session_error (session, reason, request->receipt);
    }
    s_session_answered (session);
}

//  An event for this session only, on its /user/queue/events
//  subscriptions (none: dropped, the client did not ask for events)
static void
s_session_event (pl_session_t *self, const char *body, size_t size)
{
    for (sub_t *sub = (sub_t *) zhashx_first (self->subs); sub && !self->closing;
         sub = (sub_t *) zhashx_next (self->subs))
        if (!sub->resume && sub->active)
            s_sub_message (sub, "", 0, body, size);
}

//  An error that does not end the session (a rejected READ): an ERROR
//  event, with the room and the frame's receipt when there are some
static void
s_session_event_error (pl_session_t *self, const char *room, const char *message,
                       const char *receipt)
{
    json_t *event = json_pack ("{s:s, s:s}", "type", "ERROR", "message", message);
    if (!event)
        return;
    if (room && *room)
        json_object_set_new (event, "roomId", json_string (room));
    //  A receipt that is not UTF-8 is left out (json_string says NULL)
    if (receipt)
        json_object_set_new (event, "receiptId", json_string (receipt));
    char *text = json_dumps (event, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref (event);
    if (text)
        s_session_event (self, text, strlen (text));
    free (text);
    self->owner->counts.event_errors++;
}

//  A READ or TYPING answered: RECEIPT when it went through (a READ's names
//  the cursor, also when it changed nothing, not being forward), else an
//  ERROR event; the session goes on either way
static void
s_soft_answer (pl_pending_request_t *request, pl_msg_t *result)
{
    pl_session_t *session = (pl_session_t *) request->owner;
    if (pl_msg_status (result) == 200) {
        char seq [24];
        snprintf (seq, sizeof seq, "%" PRIu64, pl_msg_seq (result));
        s_session_receipt (session, request->receipt, pl_msg_seq (result)? seq: NULL);
    }
    else {
        char reason [256];
        pl_pending_reason (result, reason, sizeof reason);
        s_session_event_error (session, pl_msg_room (result), reason, request->receipt);
    }
    s_session_answered (session);
}

static void
s_soft_expire (pl_pending_request_t *request)
{
    char message [64];
    snprintf (message, sizeof message, "server busy, %s not passed on", request->kind->name);
    s_session_event_error ((pl_session_t *) request->owner, NULL, message, request->receipt);
}

static void
s_resume_answer (pl_pending_request_t *request, pl_msg_t *result)
{
    sub_t *sub = s_request_sub (request);
    if (sub && pl_resume_active (sub->resume))
        pl_resume_answer (sub->resume, result);
    s_session_answered ((pl_session_t *) request->owner);
}


//  --------------------------------------------------------------------------
//  Subscriptions

static int
s_resume_deliver (void *arg, uint64_t seq, const char *body, size_t size)
{
    sub_t *sub = (sub_t *) arg;
    return s_sub_message (sub, sub->room, seq, body, size);
}

//  Ask MongoDB (through a persistence actor) or the bridge for the next
//  messages after the cursor: see proto/SPEC.md, "Resume".
static void
s_resume_ask (void *arg, uint64_t cursor, bool from_store)
{
    sub_t *sub = (sub_t *) arg;
    if (sub->session->closing)
        return;                 //  its turn came while the session ends: no work for nobody
    pl_msg_t *request = pl_msg_new (from_store? PL_MSG_QUERY: PL_MSG_REPLAY);
    if (request) {
        pl_msg_set_room (request, sub->room);
        pl_msg_set_after (request, cursor);
        pl_msg_set_limit (request, (uint32_t) sub->session->owner->link->config->history_limit);
        if (from_store)
            pl_msg_set_operation (request, "room.since");
    }
    s_session_request (sub->session, &s_resume_kind, &request, sub->id, NULL, &sub->corr);
}

static void
s_resume_fail (void *arg, const char *message)
{
    s_session_error (((sub_t *) arg)->session, message, NULL);
}

static const pl_resume_ops_t s_resume_ops = { s_resume_deliver, s_resume_ask, s_resume_fail };

//  zhashx wants destructors of this shape
static void
s_sub_destroy (sub_t **self_p)
{
    if (*self_p) {
        free ((*self_p)->id);
        free ((*self_p)->destination);
        pl_resume_destroy (&(*self_p)->resume);
        free (*self_p);
        *self_p = NULL;
    }
}

//  A new subscription; room is NULL for the user queue. NULL when out of
//  memory.
static sub_t *
s_sub_new (pl_session_t *session, const char *id, const char *destination, const char *room)
{
    const pl_config_t *config = session->owner->link->config;
    sub_t *sub = (sub_t *) calloc (1, sizeof (sub_t));
    if (!sub)
        return NULL;
    sub->session = session;
    sub->since = -1;
    sub->id = strdup (id);
    sub->destination = strdup (destination);
    if (room) {
        snprintf (sub->room, sizeof sub->room, "%s", room);
        sub->resume = pl_resume_new (room, config->resume_held_max, config->resume_idle_max,
                                     config->history_limit, &s_resume_ops, sub);
        if (sub->resume)
            pl_resume_set_gate (sub->resume, session->owner->resumes, session->terms.identity.user_id);
    }
    if (!sub->id || !sub->destination || (room && !sub->resume))
        s_sub_destroy (&sub);
    return sub;
}

//  Queue a DELIVER for one subscription: a room's through its cursor, a
//  user event at once.
static void
s_sub_deliver (sub_t *sub, pl_msg_t *msg)
{
    if (sub->resume)
        pl_resume_live (sub->resume, msg);
    else
        s_sub_message (sub, "", pl_msg_seq (msg), pl_msg_body (msg), pl_msg_body_size (msg));
}


//  --------------------------------------------------------------------------
//  Frames from the client

static void
s_session_handle_connect (pl_session_t *self, pl_stomp_frame_t *frame)
{
    pl_link_t *link = self->owner->link;
    if (self->connected) {
        s_session_error (self, "already connected", NULL);
        return;
    }
    char message [200];
    if (pl_handshake_settle (&self->terms, frame, self->subprotocol, link->config->heartbeat_ms,
                             link->verifier, message, sizeof message)) {
        memset (&self->terms, 0, sizeof self->terms);
        s_session_error (self, message, NULL);
        return;
    }
    if (pl_limits_connect (self->owner->limits, self->terms.identity.user_id,
                           message, sizeof message)) {
        s_session_error (self, message, NULL);
        return;
    }
    self->connected = true;
    pl_stomp_parser_set_version (self->parser, self->terms.version);
    //  The token's exp on the monotonic clock, so the tick can end us
    int64_t expires_wall = (self->terms.identity.expires + link->config->jwt_leeway_s) * 1000;
    self->expires_ms = pl_mono_ms () + expires_wall - pl_clock_ms ();

    char version_text [16], heart_beat [32], session_id [96];
    snprintf (version_text, sizeof version_text, "1.%d", self->terms.version - 10);
    snprintf (heart_beat, sizeof heart_beat, "%d,%d",
              link->config->heartbeat_ms, link->config->heartbeat_ms);
    snprintf (session_id, sizeof session_id, "%s-%s-%" PRIu64,
              link->config->host_id, link->name, self->number);
    const char *headers [] = {
        "version", version_text, "heart-beat", heart_beat, "server", "parley",
        "session", session_id, "user-name", self->terms.identity.name, NULL
    };
    s_session_queue (self, "CONNECTED", headers, NULL, 0);
    pl_log_debug ("session %" PRIu64 ": user %s connected, STOMP %s",
                  self->number, self->terms.identity.user_id, version_text);
}

//  What a SUBSCRIBE frame asks for, checked. Returns an error message for
//  the client, or NULL; *room is the room, or NULL for the user queue.
static const char *
s_subscribe_check (pl_session_t *self, pl_stomp_frame_t *frame, const char **room,
                   char *message, size_t size)
{
    const char *id = pl_stomp_frame_header (frame, "id");
    const char *destination = pl_stomp_frame_header (frame, "destination");
    *room = NULL;
    if (!id || !*id)
        return "SUBSCRIBE needs an id header";
    if (strlen (id) > 255)
        return "subscription id too long";
    if (!destination)
        return "SUBSCRIBE needs a destination header";
    if (zhashx_lookup (self->subs, id))
        return "subscription id already in use";
    int max_subscriptions = self->owner->link->config->max_subscriptions;
    if (zhashx_size (self->subs) >= (size_t) max_subscriptions) {
        snprintf (message, size, "too many subscriptions (at most %d)", max_subscriptions);
        return message;
    }
    if (streq (destination, USER_EVENTS))
        return NULL;
    if (strncmp (destination, TOPIC_ROOMS, strlen (TOPIC_ROOMS))
    ||  !pl_id_valid (destination + strlen (TOPIC_ROOMS)))
        return "unknown destination";
    *room = destination + strlen (TOPIC_ROOMS);
    const char *since = pl_stomp_frame_header (frame, "since-seq");
    size_t digits = since? strspn (since, "0123456789"): 1;
    if (digits == 0 || digits > 15 || (since && since [digits]))
        return "since-seq must be a number of 1 to 15 digits";
    return NULL;
}

static void
s_session_handle_subscribe (pl_session_t *self, pl_stomp_frame_t *frame)
{
    const char *receipt = pl_stomp_frame_header (frame, "receipt");
    const char *room;
    char text [80];
    const char *failure = s_subscribe_check (self, frame, &room, text, sizeof text);
    if (failure) {
        s_session_error (self, failure, receipt);
        return;
    }
    if (room && !s_session_may_request (self, receipt))
        return;
    const char *id = pl_stomp_frame_header (frame, "id");
    sub_t *sub = s_sub_new (self, id, pl_stomp_frame_header (frame, "destination"), room);
    if (!sub) {
        s_session_error (self, "server out of memory", receipt);
        return;
    }
    const char *since = pl_stomp_frame_header (frame, "since-seq");
    if (since && room)
        sub->since = strtoll (since, NULL, 10);
    zhashx_insert (self->subs, id, sub);
    if (!room) {
        //  The router sends this user's events here from now on (WATCH)
        sub->active = true;
        sub->room_handle = pl_interest_add (self->owner->watchers, self->terms.identity.user_id, sub);
        s_session_receipt (self, receipt, NULL);
        return;
    }
    pl_msg_t *authz = pl_msg_new (PL_MSG_AUTHZ);
    if (authz) {
        pl_msg_set_room (authz, sub->room);
        pl_msg_set_action (authz, "subscribe");
    }
    if (!s_session_request (self, &s_authz_kind, &authz, id, receipt, &sub->corr))
        zhashx_delete (self->subs, id);
}

static void
s_session_handle_unsubscribe (pl_session_t *self, pl_stomp_frame_t *frame)
{
    const char *id = pl_stomp_frame_header (frame, "id");
    const char *receipt = pl_stomp_frame_header (frame, "receipt");
    if (!id || !*id) {
        s_session_error (self, "UNSUBSCRIBE needs an id header", receipt);
        return;
    }
    sub_t *sub = (sub_t *) zhashx_lookup (self->subs, id);
    if (sub) {
        //  A pending AUTHZ finds no subscription with its corr and is dropped
        s_sub_leave (sub);
        zhashx_delete (self->subs, id);
    }
    //  Unknown ids are not an error: the client may race a failed SUBSCRIBE
    s_session_receipt (self, receipt, NULL);
}

//  A READ moves the sender's cursor in the room. What is wrong with it is
//  said by an ERROR event: the session goes on.
static void
s_session_handle_read (pl_session_t *self, const char *room, json_t *json, const char *receipt)
{
    char message [200];
    uint64_t seq;
    pl_sessions_t *owner = self->owner;
    if (pl_limits_read_seq (json, &seq, message, sizeof message)
    ||  pl_limits_send (owner->limits, self->terms.identity.user_id, pl_mono_ms (),
                        message, sizeof message)
    ||  pl_limits_request (owner->limits, pl_pending_owned (owner->link->pending, self),
                           message, sizeof message)) {
        s_session_event_error (self, room, message, receipt);
        return;
    }
    pl_msg_t *read = pl_msg_new (PL_MSG_SEND);
    if (read) {
        pl_msg_set_sender_name (read, self->terms.identity.name);
        pl_msg_set_room (read, room);
        pl_msg_set_type (read, "READ");
        pl_msg_set_read_seq (read, seq);
        owner->counts.reads++;
    }
    s_session_request (self, &s_read_kind, &read, NULL, receipt, NULL);
}

//  TYPING: to the room's other sessions on every host, never stored. Over
//  typing-rate it is dropped silently (counted); other refusals are ERROR
//  events.
static void
s_session_handle_typing (pl_session_t *self, const char *room, const char *receipt)
{
    char message [200];
    pl_sessions_t *owner = self->owner;
    const char *user = self->terms.identity.user_id;
    if (pl_limits_typing (owner->limits, user, room, pl_mono_ms ())) {
        s_session_receipt (self, receipt, NULL);
        return;
    }
    if (pl_limits_request (owner->limits, pl_pending_owned (owner->link->pending, self),
                           message, sizeof message)) {
        s_session_event_error (self, room, message, receipt);
        return;
    }
    pl_msg_t *typing = pl_msg_new (PL_MSG_SEND);
    if (typing) {
        pl_msg_set_sender_name (typing, self->terms.identity.name);
        pl_msg_set_room (typing, room);
        pl_msg_set_type (typing, "TYPING");
        owner->counts.typing++;
    }
    s_session_request (self, &s_typing_kind, &typing, NULL, receipt, NULL);
}

static void
s_session_handle_send (pl_session_t *self, pl_stomp_frame_t *frame)
{
    const char *destination = pl_stomp_frame_header (frame, "destination");
    const char *receipt = pl_stomp_frame_header (frame, "receipt");
    char message [200];
    if (!destination
    ||  strncmp (destination, APP_ROOMS, strlen (APP_ROOMS))
    ||  !pl_id_valid (destination + strlen (APP_ROOMS))) {
        s_session_error (self, "unknown destination", receipt);
        return;
    }
    json_t *json = pl_limits_send_body (self->owner->limits, frame->body, frame->body_size,
                                        message, sizeof message);
    if (!json) {
        s_session_error (self, message, receipt);
        return;
    }
    const char *room = destination + strlen (APP_ROOMS);
    const char *type = json_string_value (json_object_get (json, "type"));
    if (streq (type, "READ") || streq (type, "TYPING")) {
        if (streq (type, "READ"))
            s_session_handle_read (self, room, json, receipt);
        else
            s_session_handle_typing (self, room, receipt);
        json_decref (json);
        return;
    }
    if (pl_limits_send (self->owner->limits, self->terms.identity.user_id, pl_mono_ms (),
                        message, sizeof message)) {
        json_decref (json);
        s_session_error (self, message, receipt);
        return;
    }
    if (!s_session_may_request (self, receipt)) {
        json_decref (json);
        return;
    }
    json_t *content = json_object_get (json, "content");
    json_t *cmid = json_object_get (json, "clientMsgId");
    pl_msg_t *send = pl_msg_new (PL_MSG_SEND);
    if (send) {
        //  Sender id and name come from the token, never from the body
        pl_msg_set_sender_name (send, self->terms.identity.name);
        pl_msg_set_room (send, room);
        pl_msg_set_type (send, "TALK");
        pl_msg_set_cmid (send, json_is_string (cmid)? json_string_value (cmid): "");
        pl_msg_set_body (send, json_string_value (content), json_string_length (content));
        self->owner->counts.sends++;
    }
    json_decref (json);
    s_session_request (self, &s_send_kind, &send, NULL, receipt, NULL);
}

//  The parser calls this once per complete frame.
static int
s_session_handle_frame (void *arg, pl_stomp_frame_t *frame)
{
    pl_session_t *self = (pl_session_t *) arg;
    self->owner->counts.frames_in++;
    //  Draining: nothing new starts, what is in flight finishes; the ERROR
    //  that follows tells the client to send again what has no receipt
    if (self->owner->shutting_down)
        return 0;
    //  So is a session whose token expired, until its answers are out
    s_session_expire_check (self, pl_mono_ms ());
    if (self->expired)
        return 0;
    const char *receipt = pl_stomp_frame_header (frame, "receipt");
    if (!self->connected
    &&  frame->command != PL_STOMP_CONNECT && frame->command != PL_STOMP_STOMP) {
        s_session_error (self, "not connected: send CONNECT first", receipt);
        return -1;
    }
    switch (frame->command) {
        case PL_STOMP_CONNECT:
        case PL_STOMP_STOMP:
            s_session_handle_connect (self, frame);
            break;
        case PL_STOMP_SUBSCRIBE:
            s_session_handle_subscribe (self, frame);
            break;
        case PL_STOMP_UNSUBSCRIBE:
            s_session_handle_unsubscribe (self, frame);
            break;
        case PL_STOMP_SEND:
            s_session_handle_send (self, frame);
            break;
        case PL_STOMP_ACK:
        case PL_STOMP_NACK:
            //  Subscriptions are ack:auto; accepted and ignored
            s_session_receipt (self, receipt, NULL);
            break;
        case PL_STOMP_BEGIN:
        case PL_STOMP_COMMIT:
        case PL_STOMP_ABORT:
            s_session_error (self, "transactions are not supported", receipt);
            break;
        case PL_STOMP_DISCONNECT:
            s_session_receipt (self, receipt, NULL);
            s_session_close_after_flush (self);
            break;
    }
    return self->closing? -1: 0;
}


//  --------------------------------------------------------------------------
//  One session

pl_session_t *
pl_session_new (pl_sessions_t *sessions, void *conn, int subprotocol)
{
    assert (sessions);
    const pl_config_t *config = sessions->link->config;
    pl_session_t *self = (pl_session_t *) calloc (1, sizeof (pl_session_t));
    if (!self)
        return NULL;
    self->owner = sessions;
    self->conn = conn;
    self->number = ++sessions->next_number;
    self->subprotocol = subprotocol;
    self->parser = pl_stomp_parser_new ((size_t) config->max_frame_bytes,
                                        (size_t) config->max_headers);
    self->subs = zhashx_new ();
    if (!self->parser || !self->subs) {
        pl_stomp_parser_destroy (&self->parser);
        zhashx_destroy (&self->subs);
        free (self);
        return NULL;
    }
    zhashx_set_destructor (self->subs, (zhashx_destructor_fn *) s_sub_destroy);
    pl_buf_init (&self->out);
    self->created_ms = self->last_in_ms = self->last_out_ms = pl_mono_ms ();
    self->list_handle = zlistx_add_end (sessions->list, self);
    sessions->counts.sessions_total++;
    pl_log_debug ("session %" PRIu64 " opened", self->number);
    //  Over max-connections: the client learns why once upgraded
    char message [200];
    if (pl_limits_open (sessions->limits, message, sizeof message) == 0)
        self->counted = true;
    else
        s_session_error (self, message, NULL);
    return self;
}

void
pl_session_destroy (pl_session_t **self_p)
{
    pl_session_t *self = *self_p;
    if (!self)
        return;
    pl_sessions_t *owner = self->owner;
    self->closing = true;       //  resumes whose turn comes now ask nothing
    for (sub_t *sub = (sub_t *) zhashx_first (self->subs); sub;
         sub = (sub_t *) zhashx_next (self->subs))
        s_sub_leave (sub);
    zhashx_destroy (&self->subs);
    pl_pending_drop (owner->link->pending, self);
    if (self->counted)
        pl_limits_close (owner->limits);
    if (self->connected)
        pl_limits_disconnect (owner->limits, self->terms.identity.user_id);
    if (self->list_handle)
        zlistx_delete (owner->list, self->list_handle);
    pl_stomp_parser_destroy (&self->parser);
    pl_buf_free (&self->out);
    pl_log_debug ("session %" PRIu64 " closed", self->number);
    free (self);
    *self_p = NULL;
}

void
pl_session_input (pl_session_t *self, const char *data, size_t size)
{
    if (self->closing)
        return;                 //  after ERROR or DISCONNECT input is ignored
    self->last_in_ms = pl_mono_ms ();
    if (pl_stomp_parser_feed (self->parser, data, size, s_session_handle_frame, self)
    &&  !self->closing) {
        const char *reason = pl_stomp_parser_error (self->parser);
        s_session_error (self, reason? reason: "protocol error", NULL);
    }
}

const char *
pl_session_outbound (pl_session_t *self, size_t *size)
{
    *size = pl_buf_pending (&self->out);
    return *size? pl_buf_head (&self->out): NULL;
}

void
pl_session_sent (pl_session_t *self, size_t size)
{
    pl_buf_consume (&self->out, size);
    self->last_out_ms = pl_mono_ms ();
}

bool
pl_session_closing (pl_session_t *self)
{
    return self->closing;
}

//  A session without requests in flight is told to go elsewhere now; one
//  with requests waits for their answers (its receipts) first.
static void
s_session_shutdown (pl_session_t *self)
{
    if (self->closing)
        return;
    if (!self->connected)
        s_session_close_now (self);
    else
    if (pl_pending_owned (self->owner->link->pending, self) == 0)
        s_session_error (self, SHUTDOWN_MESSAGE, NULL);
}

//  A token is checked at CONNECT only: past its exp (and jwt-leeway-s)
//  the session takes no new frames and ends with an ERROR once the
//  receipts it owes are out.
static void
s_session_expire_check (pl_session_t *self, int64_t now)
{
    if (!self->connected || self->closing || self->expired || now < self->expires_ms)
        return;
    self->expired = true;
    self->owner->counts.tokens_expired++;
    pl_log_debug ("session %" PRIu64 ": token of %s expired", self->number,
                  self->terms.identity.user_id);
    if (pl_pending_owned (self->owner->link->pending, self) == 0)
        s_session_error (self, EXPIRED_MESSAGE, NULL);
}

//  Heart-beats, silence and token expiry, once a tick
static void
s_session_tick (pl_session_t *self, int64_t now)
{
    s_session_expire_check (self, now);
    if (self->closing)
        return;
    if (!self->connected) {
        //  A socket that never says CONNECT does not hold a slot forever
        if (now - self->created_ms > self->owner->link->config->request_timeout_ms) {
            pl_log_debug ("session %" PRIu64 ": no CONNECT in time", self->number);
            s_session_close_now (self);
        }
        return;
    }
    int in_interval_ms = self->terms.in_interval_ms;
    if (in_interval_ms && now - self->last_in_ms > 2 * (int64_t) in_interval_ms) {
        pl_log_info ("session %" PRIu64 ": client silent for %" PRId64 " ms, closing",
                     self->number, now - self->last_in_ms);
        s_session_close_now (self);
        return;
    }
    if (self->terms.out_interval_ms && pl_buf_pending (&self->out) == 0
    &&  now - self->last_out_ms >= self->terms.out_interval_ms) {
        pl_buf_append (&self->out, "\n", 1);
        s_session_want_write (self);
    }
}


//  --------------------------------------------------------------------------
//  Every session of the actor

pl_sessions_t *
pl_sessions_new (pl_link_t *link)
{
    assert (link);
    pl_sessions_t *self = (pl_sessions_t *) calloc (1, sizeof (pl_sessions_t));
    if (!self)
        return NULL;
    self->link = link;
    self->list = zlistx_new ();
    self->rooms = pl_interest_new (link);
    self->watchers = pl_interest_new_users (link);
    self->presence = pl_interest_new_presence (link);
    self->resumes = pl_resume_gate_new (link->config->resume_user_max);
    self->limits = pl_limits_new (link->config);
    if (!self->list || !self->rooms || !self->watchers || !self->presence || !self->resumes
    ||  !self->limits) {
        pl_sessions_destroy (&self);
        return NULL;
    }
    return self;
}

void
pl_sessions_destroy (pl_sessions_t **self_p)
{
    pl_sessions_t *self = *self_p;
    if (self) {
        assert (!self->list || zlistx_size (self->list) == 0);
        zlistx_destroy (&self->list);
        pl_interest_destroy (&self->rooms);
        pl_interest_destroy (&self->watchers);
        pl_interest_destroy (&self->presence);
        pl_resume_gate_destroy (&self->resumes);
        pl_limits_destroy (&self->limits);
        free (self);
        *self_p = NULL;
    }
}

void
pl_sessions_deliver (pl_sessions_t *self, pl_msg_t *msg)
{
    self->counts.deliveries++;
    const char *room = pl_msg_room (msg);
    if (*room) {
        zlistx_t *list = pl_interest_subscribers (self->rooms, room);
        if (!list)
            return;
        //  Queueing never changes the room lists: closing happens later.
        //  An event of a room that names its sender (TYPING) skips the
        //  sender's own sessions.
        const char *sender = pl_msg_user (msg);
        for (sub_t *sub = (sub_t *) zlistx_first (list); sub; sub = (sub_t *) zlistx_next (list))
            if (!*sender || !streq (sub->session->terms.identity.user_id, sender))
                s_sub_deliver (sub, msg);
    }
    else
    if (*pl_msg_user (msg)) {
        //  A user event: every session of that user on its events queue;
        //  a removal from a room first ends the user's subscriptions to it
        char removed [PL_ID_MAX + 1];
        s_event_removed_room (msg, removed);
        for (pl_session_t *session = (pl_session_t *) zlistx_first (self->list); session && *removed;
             session = (pl_session_t *) zlistx_next (self->list))
            if (session->connected && streq (session->terms.identity.user_id, pl_msg_user (msg)))
                s_session_end_room (session, removed);
        zlistx_t *list = pl_interest_subscribers (self->watchers, pl_msg_user (msg));
        for (sub_t *sub = list? (sub_t *) zlistx_first (list): NULL; sub; sub = (sub_t *) zlistx_next (list))
            s_sub_deliver (sub, msg);
    }
}

void
pl_sessions_resync (pl_sessions_t *self)
{
    pl_interest_resync (self->rooms);
    pl_interest_resync (self->watchers);
    pl_interest_resync (self->presence);
}

void
pl_sessions_tick (pl_sessions_t *self, int64_t now)
{
    pl_limits_prune (self->limits, now);
    for (pl_session_t *session = (pl_session_t *) zlistx_first (self->list); session;
         session = (pl_session_t *) zlistx_next (self->list))
        s_session_tick (session, now);
}

void
pl_sessions_trim (pl_sessions_t *self)
{
    for (pl_session_t *session = (pl_session_t *) zlistx_first (self->list); session;
         session = (pl_session_t *) zlistx_next (self->list)) {
        pl_stomp_parser_trim (session->parser);
        if (pl_buf_pending (&session->out) == 0)
            pl_buf_free (&session->out);
    }
}

void
pl_sessions_drain (pl_sessions_t *self)
{
    self->shutting_down = true;
    pl_log_info ("draining %zu sessions", zlistx_size (self->list));
    for (pl_session_t *session = (pl_session_t *) zlistx_first (self->list); session;
         session = (pl_session_t *) zlistx_next (self->list))
        s_session_shutdown (session);
}

void
pl_sessions_drain_now (pl_sessions_t *self)
{
    for (pl_session_t *session = (pl_session_t *) zlistx_first (self->list); session;
         session = (pl_session_t *) zlistx_next (self->list))
        s_session_error (session, SHUTDOWN_MESSAGE, NULL);
}

size_t
pl_sessions_size (pl_sessions_t *self)
{
    return zlistx_size (self->list);
}

size_t
pl_sessions_subscriptions (pl_sessions_t *self)
{
    size_t count = 0;
    for (pl_session_t *session = (pl_session_t *) zlistx_first (self->list); session;
         session = (pl_session_t *) zlistx_next (self->list))
        count += zhashx_size (session->subs);
    return count;
}

size_t
pl_sessions_rooms (pl_sessions_t *self)
{
    return pl_interest_size (self->rooms);
}

const pl_sessions_counts_t *
pl_sessions_counts (pl_sessions_t *self)
{
    return &self->counts;
}

const pl_limits_refused_t *
pl_sessions_refused (pl_sessions_t *self)
{
    return pl_limits_refused (self->limits);
}
