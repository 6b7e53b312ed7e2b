/*  =========================================================================
    pl_session_test - the selftest of pl_session (in a file of its own so that
    pl_session.c stays a file a person reads in one sitting)
    =========================================================================
*/
#include "pl_session.h"
#include "pl_handshake.h"
#include "pl_log.h"
#include "pl_resume.h"
#include "pl_interest.h"
#include "pl_limits.h"
#include "pl_stomp.h"
#include "pl_util.h"
#include <jansson.h>
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  Selftest: sessions driven frame by frame through a fake link, the
//  router's answers given by hand

#define TEST_SECRET "pl_session_test-secret-of-32-bytes-or-more"

static void
s_test_send (pl_session_t *session, const char *frame)
{
    pl_session_input (session, frame, strlen (frame) + 1);
}

//  Expect the next frame the session queued (heart-beats skipped) to be
//  command with a header name of value (see pl_stomp_text_expect)
static void
s_test_expect (pl_session_t *session, const char *command, const char *name, const char *value)
{
    size_t size;
    const char *head = pl_session_outbound (session, &size);
    while (size && *head == '\n') {
        pl_session_sent (session, 1);
        head = pl_session_outbound (session, &size);
    }
    const char *nul = head? (const char *) memchr (head, 0, size): NULL;
    char *frame = nul? strndup (head, (size_t) (nul - head)): NULL;
    pl_stomp_text_expect (frame, command, name, value);
    pl_session_sent (session, (size_t) (nul - head) + 1);
    free (frame);
}

//  Expect an ERROR whose message starts with text; the session closes
static void
s_test_expect_error (pl_session_t *session, const char *text)
{
    size_t size;
    const char *head = pl_session_outbound (session, &size);
    pl_check (head && strstr (head, text) && pl_session_closing (session));
    s_test_expect (session, "ERROR", "message", NULL);
}

static pl_session_t *
s_test_connect (pl_sessions_t *sessions, const char *headers)
{
    pl_session_t *session = pl_session_new (sessions, sessions, 12);
    pl_check (session);
    char *token = pl_token_mint_hs256 (TEST_SECRET, "u1", "Alice", 3600);
    char connect [9000];
    snprintf (connect, sizeof connect, "CONNECT\n%spasscode:%s\n\n", headers, token);
    free (token);
    s_test_send (session, connect);
    return session;
}

//  SUBSCRIBE to a room, the router's answer with status; returns the AUTHZ
static void
s_test_subscribe (pl_link_fake_t *fake, pl_session_t *session, const char *frame,
                  uint32_t status, const char *reason)
{
    s_test_send (session, frame);
    pl_msg_t *authz = pl_link_fake_take (fake, PL_MSG_AUTHZ);
    pl_check (streq (pl_msg_user (authz), "u1") && streq (pl_msg_action (authz), "subscribe"));
    pl_link_fake_answer (fake, authz, status, 0, reason);
    pl_msg_destroy (&authz);
}

static void
s_test_deliver (pl_sessions_t *sessions, const char *room, const char *user, uint64_t seq)
{
    pl_msg_t *msg = pl_msg_new (PL_MSG_DELIVER);
    pl_msg_set_room (msg, room);
    pl_msg_set_user (msg, user);
    pl_msg_set_seq (msg, seq);
    pl_msg_set_body (msg, "{}", 2);
    pl_sessions_deliver (sessions, msg);
    pl_msg_destroy (&msg);
}

//  Frames a session refuses: ERROR, closed
static void
s_test_refusals (pl_sessions_t *sessions)
{
    const char *frames [] = {
        "SEND\ndestination:/app/rooms/r1\n\nx", "not connected",
        "\x01\x02garbage", "",
        "BEGIN\ntransaction:t1\n\n", "transactions are not supported",
        "SUBSCRIBE\ndestination:/queue/other\n\n", "SUBSCRIBE needs an id header",
        "SUBSCRIBE\nid:0\ndestination:/queue/other\n\n", "unknown destination",
        "SUBSCRIBE\nid:0\n\n", "SUBSCRIBE needs a destination header",
        "SUBSCRIBE\nid:0\ndestination:/topic/rooms/r1\nsince-seq:x\n\n", "since-seq must be",
        "SEND\ndestination:/queue/x\n\n{}", "unknown destination",
        "SEND\ndestination:/app/rooms/r1\n\nnot json", "body must be a JSON object",
        "SEND\ndestination:/app/rooms/r1\n\n[1]", "body must be a JSON object",
        "SEND\ndestination:/app/rooms/r1\n\n{\"type\":\"TALK\"}", "content must be a string",
        "SEND\ndestination:/app/rooms/r1\n\n{\"type\":\"TALK\",\"content\":\"\"}", "content must not",
        "SEND\ndestination:/app/rooms/r1\n\n{\"type\":\"TALK\",\"content\":\"x\",\"clientMsgId\":\"a b\"}",
            "clientMsgId must be",
        "SEND\ndestination:/app/rooms/r1\n\n{\"type\":\"SHOUT\",\"content\":\"x\"}", "type must be TALK",
        "SEND\ndestination:/app/rooms/r1\n\n{\"type\":\"TALK\",\"content\":\"seen\\u0000hidden\"}",
            "message must not contain NUL characters",
        "CONNECT\naccept-version:1.2\n\n", "already connected",
        NULL
    };
    for (int index = 0; frames [index]; index += 2) {
        pl_session_t *session = index < 4? pl_session_new (sessions, sessions, 12)
                                         : s_test_connect (sessions, "accept-version:1.2\n");
        if (index >= 4)
            s_test_expect (session, "CONNECTED", "version", "1.2");
        s_test_send (session, frames [index]);
        s_test_expect_error (session, frames [index + 1]);
        //  Input after the ERROR is ignored
        s_test_send (session, "DISCONNECT\nreceipt:x\n\n");
        size_t size;
        pl_check (pl_session_outbound (session, &size) == NULL);
        pl_session_destroy (&session);
    }
    //  A frame over max-frame-bytes
    pl_session_t *session = s_test_connect (sessions, "");
    s_test_expect (session, "CONNECTED", "version", "1.2");
    char huge [70000];
    memset (huge, 'h', sizeof huge);
    memcpy (huge, "SEND\ndestination:/app/rooms/r1\n\n", 32);
    pl_session_input (session, huge, sizeof huge);
    s_test_expect_error (session, "frame exceeds");
    pl_session_destroy (&session);
    //  A CONNECT the handshake refuses (pl_handshake_test has the rest)
    session = pl_session_new (sessions, sessions, 11);
    s_test_send (session, "STOMP\npasscode:x\n\n");
    s_test_expect_error (session, "authentication failed");
    pl_session_destroy (&session);
}

//  Versions and heart-beats: each side's interval is the larger wish
static void
s_test_heartbeats (pl_link_fake_t *fake, pl_sessions_t *sessions)
{
    pl_session_t *session = s_test_connect (sessions, "accept-version:1.0,1.1\nheart-beat:500,100\n");
    s_test_expect (session, "CONNECTED", "version", "1.1");
    pl_session_t *other = s_test_connect (sessions, "accept-version:1.2\n");
    s_test_expect (other, "CONNECTED", "heart-beat", "300,300");
    pl_sessions_tick (sessions, pl_mono_ms () + 400);
    size_t size;
    pl_check (pl_session_outbound (session, &size) && size == 1);
    pl_check (pl_session_outbound (other, &size) == NULL);
    //  A trim keeps what waits to go out, and sessions go on after it
    pl_sessions_trim (sessions);
    pl_check (pl_session_outbound (session, &size) && size == 1);
    s_test_send (other, "SUBSCRIBE\nid:t\ndestination:/topic/nowhere\nreceipt:after-trim\n\n");
    s_test_expect_error (other, "destination");
    pl_session_destroy (&other);
    other = s_test_connect (sessions, "accept-version:1.2\n");
    s_test_expect (other, "CONNECTED", "heart-beat", "300,300");
    pl_sessions_tick (sessions, pl_mono_ms () + 1001);
    pl_check (pl_session_closing (session) && fake->timeout_s == PL_LINK_CLOSE_NOW);
    pl_check (!pl_session_closing (other));
    pl_session_destroy (&session);
    pl_session_destroy (&other);
}

//  Subscriptions, SEND and resume, with the router's answers
static void
s_test_rooms (pl_link_fake_t *fake, pl_sessions_t *sessions)
{
    //  A room: AUTHZ, JOIN, RECEIPT; MESSAGEs in seq order, once
    pl_session_t *session = s_test_connect (sessions, "accept-version:1.2\n");
    s_test_expect (session, "CONNECTED", NULL, NULL);
    s_test_subscribe (fake, session, "SUBSCRIBE\nid:s0\ndestination:/topic/rooms/r1\nreceipt:a\n\n",
                      200, NULL);
    pl_link_fake_expect (fake, PL_MSG_JOIN, "r1");
    s_test_expect (session, "RECEIPT", "receipt-id", "a");
    s_test_send (session, "SUBSCRIBE\nid:s1\ndestination:/user/queue/events\nreceipt:b\n\n");
    s_test_expect (session, "RECEIPT", "receipt-id", "b");
    pl_check (pl_link_fake_drop (fake, PL_MSG_WATCH) == 1);
    s_test_deliver (sessions, "r1", "", 5);
    s_test_deliver (sessions, "r1", "", 5);
    s_test_deliver (sessions, "", "u1", 0);
    s_test_deliver (sessions, "", "u2", 0);
    s_test_expect (session, "MESSAGE", "message-id", "r1:5");
    s_test_expect (session, "MESSAGE", "subscription", "s1");
    size_t size;
    pl_check (pl_session_outbound (session, &size) == NULL);
    pl_check (pl_sessions_size (sessions) == 1 && pl_sessions_subscriptions (sessions) == 2);

    //  SEND: sender from the token; RECEIPT with seq
    s_test_send (session, "SEND\ndestination:/app/rooms/r1\nreceipt:m1\n\n"
                          "{\"type\":\"TALK\",\"content\":\"hi\",\"clientMsgId\":\"c-1\","
                          "\"senderId\":\"x\"}");
    pl_msg_t *send = pl_link_fake_take (fake, PL_MSG_SEND);
    pl_check (streq (pl_msg_user (send), "u1") && streq (pl_msg_sender_name (send), "Alice"));
    pl_check (streq (pl_msg_cmid (send), "c-1") && streq (pl_msg_body (send), "hi"));
    pl_link_fake_answer (fake, send, 200, 42, NULL);
    pl_msg_destroy (&send);
    s_test_expect (session, "RECEIPT", "seq", "42");

    //  Resume: the stream first (trimmed past 4 here), MongoDB, the stream
    //  again; live messages wait for the gap
    s_test_subscribe (fake, session, "SUBSCRIBE\nid:s2\ndestination:/topic/rooms/r1\n"
                                     "since-seq:3\n\n", 200, NULL);
    pl_msg_t *replay = pl_link_fake_take (fake, PL_MSG_REPLAY);
    pl_check (pl_msg_after (replay) == 3);
    s_test_deliver (sessions, "r1", "", 6);
    s_test_expect (session, "MESSAGE", "subscription", "s0");
    pl_link_fake_answer (fake, replay, 200, 5, "[{\"seq\":5}]");
    pl_msg_destroy (&replay);
    pl_msg_t *query = pl_link_fake_take (fake, PL_MSG_QUERY);
    pl_check (streq (pl_msg_operation (query), "room.since") && pl_msg_after (query) == 3);
    pl_link_fake_answer (fake, query, 200, 0, "[{\"seq\":4}]");
    pl_msg_destroy (&query);
    s_test_expect (session, "MESSAGE", "seq", "4");
    replay = pl_link_fake_take (fake, PL_MSG_REPLAY);
    pl_link_fake_answer (fake, replay, 200, 5, "[{\"seq\":5}]");
    pl_msg_destroy (&replay);
    s_test_expect (session, "MESSAGE", "seq", "5");
    s_test_expect (session, "MESSAGE", "seq", "6");

    //  UNSUBSCRIBE: LEAVE after the room's last; a late AUTHZ yes is given back
    s_test_send (session, "SUBSCRIBE\nid:s3\ndestination:/topic/rooms/r2\n\n");
    pl_msg_t *authz = pl_link_fake_take (fake, PL_MSG_AUTHZ);
    s_test_send (session, "UNSUBSCRIBE\nid:s0\n\n");
    s_test_send (session, "UNSUBSCRIBE\nid:s2\n\n");
    s_test_send (session, "UNSUBSCRIBE\nid:s3\nreceipt:u\n\n");
    s_test_expect (session, "RECEIPT", "receipt-id", "u");
    pl_link_fake_expect (fake, PL_MSG_LEAVE, "r1");
    pl_link_fake_answer (fake, authz, 200, 0, NULL);
    pl_msg_destroy (&authz);
    pl_link_fake_expect (fake, PL_MSG_LEAVE, "r2");

    //  Not a member: the router's reason in the ERROR
    s_test_subscribe (fake, session, "SUBSCRIBE\nid:s4\ndestination:/topic/rooms/r3\n\n",
                      403, "not a member of room r3");
    s_test_expect_error (session, "not a member of room r3");
    pl_session_destroy (&session);
    pl_check (pl_link_fake_drop (fake, PL_MSG_UNWATCH) == 1);
}

//  Expect an ERROR event on the events subscription that contains text;
//  the session goes on
static void
s_test_expect_event_error (pl_session_t *session, const char *text)
{
    size_t size;
    const char *head = pl_session_outbound (session, &size);
    pl_check (head && strstr (head, "\"type\":\"ERROR\"") && strstr (head, text));
    pl_check (!pl_session_closing (session));
    s_test_expect (session, "MESSAGE", "subscription", "ev");
}

//  A session of u1 with its events queue ("ev") and room r1 ("s0")
static pl_session_t *
s_test_events_and_room (pl_link_fake_t *fake, pl_sessions_t *sessions)
{
    pl_session_t *session = s_test_connect (sessions, "accept-version:1.2\n");
    s_test_expect (session, "CONNECTED", NULL, NULL);
    s_test_send (session, "SUBSCRIBE\nid:ev\ndestination:/user/queue/events\n\n");
    pl_check (pl_link_fake_drop (fake, PL_MSG_WATCH) == 1);
    s_test_subscribe (fake, session, "SUBSCRIBE\nid:s0\ndestination:/topic/rooms/r1\n\n", 200, NULL);
    pl_link_fake_expect (fake, PL_MSG_JOIN, "r1");
    return session;
}

//  READ: the router gets the cursor; what goes wrong is an ERROR event, not
//  the end of the session; READ_STATUS (seq 0) passes a room's cursor
static void
s_test_reads (pl_link_fake_t *fake, pl_sessions_t *sessions)
{
    pl_session_t *session = s_test_events_and_room (fake, sessions);

    s_test_send (session, "SEND\ndestination:/app/rooms/r1\nreceipt:r0\n\n{\"type\":\"READ\",\"seq\":0}");
    s_test_expect_event_error (session, "READ needs \\\"seq\\\"");
    s_test_send (session, "SEND\ndestination:/app/rooms/r1\n\n{\"type\":\"READ\",\"seq\":\"3\"}");
    s_test_expect_event_error (session, "\"roomId\":\"r1\"");
    pl_check (zlistx_size (fake->sent) == 0);

    s_test_send (session, "SEND\ndestination:/app/rooms/r1\nreceipt:r1\n\n{\"type\":\"READ\",\"seq\":3}");
    pl_msg_t *read = pl_link_fake_take (fake, PL_MSG_SEND);
    pl_check (streq (pl_msg_type (read), "READ") && pl_msg_read_seq (read) == 3);
    pl_check (streq (pl_msg_user (read), "u1") && streq (pl_msg_room (read), "r1"));
    pl_link_fake_answer (fake, read, 200, 3, NULL);
    pl_msg_destroy (&read);
    s_test_expect (session, "RECEIPT", "seq", "3");

    s_test_send (session, "SEND\ndestination:/app/rooms/r1\nreceipt:r2\n\n{\"type\":\"READ\",\"seq\":99}");
    read = pl_link_fake_take (fake, PL_MSG_SEND);
    pl_link_fake_answer (fake, read, 400, 0, "seq 99 is past the room's last message (3)");
    pl_msg_destroy (&read);
    s_test_expect_event_error (session, "\"receiptId\":\"r2\"");

    //  Events of a room carry no seq, and a message-id of their own
    s_test_deliver (sessions, "r1", "", 0);
    s_test_expect (session, "MESSAGE", "message-id", "r1:e4");
    s_test_deliver (sessions, "r1", "", 0);
    size_t size;
    const char *head = pl_session_outbound (session, &size);
    pl_check (head && !strstr (head, "\nseq:"));
    s_test_expect (session, "MESSAGE", "message-id", "r1:e5");
    pl_check (pl_sessions_counts (sessions)->event_errors == 3);

    //  TYPING: to the router, RECEIPT without a seq; past typing-burst (3)
    //  dropped silently; one that names u1 as its sender skips u1's sessions
    for (int index = 0; index < 4; index++) {
        s_test_send (session, "SEND\ndestination:/app/rooms/r1\nreceipt:t\n\n{\"type\":\"TYPING\"}");
        if (index < 3) {
            pl_msg_t *typing = pl_link_fake_take (fake, PL_MSG_SEND);
            pl_check (streq (pl_msg_type (typing), "TYPING") && streq (pl_msg_room (typing), "r1"));
            pl_link_fake_answer (fake, typing, 200, 0, NULL);
            pl_msg_destroy (&typing);
        }
        head = pl_session_outbound (session, &size);
        pl_check (head && !strstr (head, "\nseq:"));
        s_test_expect (session, "RECEIPT", "receipt-id", "t");
    }
    pl_check (zlistx_size (fake->sent) == 0 && pl_sessions_refused (sessions)->typing_rate == 1);
    pl_msg_t *typing = pl_msg_new (PL_MSG_DELIVER);
    pl_msg_set_room (typing, "r1");
    pl_msg_set_user (typing, "u1");
    pl_msg_set_body (typing, "{}", 2);
    pl_sessions_deliver (sessions, typing);
    pl_msg_destroy (&typing);
    pl_check (pl_session_outbound (session, &size) == NULL);
    pl_session_destroy (&session);
    pl_check (pl_link_fake_drop (fake, PL_MSG_UNWATCH) == 1);
    pl_link_fake_expect (fake, PL_MSG_LEAVE, "r1");
}

//  ROOM_REMOVED ends the user's subscriptions to the room at once, not the
//  session, and is handed to its events queue
static void
s_test_removed (pl_link_fake_t *fake, pl_sessions_t *sessions)
{
    pl_session_t *session = s_test_events_and_room (fake, sessions);
    s_test_subscribe (fake, session, "SUBSCRIBE\nid:s1\ndestination:/topic/rooms/r2\n\n", 200, NULL);
    pl_link_fake_expect (fake, PL_MSG_JOIN, "r2");
    pl_msg_t *event = pl_msg_new (PL_MSG_DELIVER);
    pl_msg_set_user (event, "u1");
    const char *body = "{\"type\":\"ROOM_REMOVED\",\"roomId\":\"r1\"}";
    pl_msg_set_body (event, body, strlen (body));
    pl_sessions_deliver (sessions, event);
    pl_msg_destroy (&event);
    pl_link_fake_expect (fake, PL_MSG_LEAVE, "r1");
    size_t size;
    const char *head = pl_session_outbound (session, &size);
    pl_check (head && strstr (head, "ROOM_REMOVED"));
    s_test_expect (session, "MESSAGE", "subscription", "ev");
    s_test_deliver (sessions, "r1", "", 7);
    pl_check (pl_session_outbound (session, &size) == NULL);
    s_test_deliver (sessions, "r2", "", 7);
    s_test_expect (session, "MESSAGE", "subscription", "s1");
    pl_check (!pl_session_closing (session) && pl_sessions_counts (sessions)->subscriptions_ended == 1);
    pl_session_destroy (&session);
    pl_check (pl_link_fake_drop (fake, PL_MSG_UNWATCH) == 1);
    pl_link_fake_expect (fake, PL_MSG_LEAVE, "r2");
}

//  Presence: PRESENT with the first subscription of a user to a room
//  here, ABSENT after the last one (two sessions: once each)
static void
s_test_presence (pl_link_fake_t *fake, pl_sessions_t *sessions)
{
    fake->keep_presence = true;
    pl_session_t *first = s_test_connect (sessions, "accept-version:1.2\n");
    pl_session_t *second = s_test_connect (sessions, "accept-version:1.2\n");
    s_test_expect (first, "CONNECTED", NULL, NULL);
    s_test_expect (second, "CONNECTED", NULL, NULL);
    s_test_subscribe (fake, first, "SUBSCRIBE\nid:s0\ndestination:/topic/rooms/r1\n\n", 200, NULL);
    pl_link_fake_expect (fake, PL_MSG_JOIN, "r1");
    pl_msg_t *present = pl_link_fake_take (fake, PL_MSG_PRESENT);
    pl_check (streq (pl_msg_room (present), "r1") && streq (pl_msg_user (present), "u1"));
    pl_msg_destroy (&present);
    s_test_subscribe (fake, second, "SUBSCRIBE\nid:s0\ndestination:/topic/rooms/r1\n\n", 200, NULL);
    pl_check (zlistx_size (fake->sent) == 0);
    pl_session_destroy (&first);
    pl_check (zlistx_size (fake->sent) == 0);
    pl_session_destroy (&second);
    pl_link_fake_expect (fake, PL_MSG_LEAVE, "r1");
    pl_msg_t *absent = pl_link_fake_take (fake, PL_MSG_ABSENT);
    pl_check (streq (pl_msg_room (absent), "r1") && streq (pl_msg_user (absent), "u1"));
    pl_msg_destroy (&absent);
    fake->keep_presence = false;
}

//  No answer in time, the router out of reach, a client too slow to read
static void
s_test_failures (pl_link_fake_t *fake, pl_sessions_t *sessions)
{
    pl_session_t *session = s_test_connect (sessions, "");
    s_test_send (session, "SEND\ndestination:/app/rooms/r1\nreceipt:m3\n\n"
                          "{\"type\":\"TALK\",\"content\":\"x\"}");
    pl_pending_expire (fake->link.pending, pl_mono_ms () + fake->link.config->request_timeout_ms);
    pl_link_fake_expect (fake, PL_MSG_SEND, "r1");
    s_test_expect (session, "CONNECTED", NULL, NULL);
    size_t size;
    pl_check (strstr (pl_session_outbound (session, &size), "\nreceipt-id:m3\n"));
    s_test_expect_error (session, "server busy, try again");
    pl_session_destroy (&session);

    fake->refuse = true;
    session = s_test_connect (sessions, "");
    s_test_send (session, "SUBSCRIBE\nid:0\ndestination:/topic/rooms/r1\n\n");
    s_test_expect (session, "CONNECTED", NULL, NULL);
    s_test_expect_error (session, "server busy, try again");
    pl_check (pl_sessions_subscriptions (sessions) == 0);
    pl_session_destroy (&session);
    fake->refuse = false;

    session = s_test_connect (sessions, "");
    s_test_send (session, "SUBSCRIBE\nid:0\ndestination:/user/queue/events\n\n");
    for (int count = 0; count < 2000 && !pl_session_closing (session); count++)
        s_test_deliver (sessions, "", "u1", 0);
    s_test_expect_error (session, "slow consumer");
    pl_check (pl_sessions_counts (sessions)->slow_consumers == 1);
    pl_session_destroy (&session);
    pl_check (pl_link_fake_drop (fake, PL_MSG_WATCH) == 1);
    pl_check (pl_link_fake_drop (fake, PL_MSG_UNWATCH) == 1);
}

//  Draining: a session's requests are answered first, then it is told
static void
s_test_drain (pl_link_fake_t *fake, pl_sessions_t *sessions)
{
    pl_session_t *session = s_test_connect (sessions, "");
    s_test_expect (session, "CONNECTED", NULL, NULL);
    s_test_send (session, "SEND\ndestination:/app/rooms/r1\nreceipt:m4\n\n"
                          "{\"type\":\"TALK\",\"content\":\"x\"}");
    pl_session_t *other = pl_session_new (sessions, sessions, 0);
    pl_sessions_drain (sessions);
    pl_check (!pl_session_closing (session) && pl_session_closing (other));
    pl_msg_t *send = pl_link_fake_take (fake, PL_MSG_SEND);
    pl_link_fake_answer (fake, send, 200, 43, NULL);
    pl_msg_destroy (&send);
    s_test_expect (session, "RECEIPT", "seq", "43");
    s_test_expect_error (session, "server shutting down");
    pl_session_destroy (&session);
    pl_session_destroy (&other);
}

//  Limits (pl_limits_test has the rest): requests in flight, sessions of
//  a user; each ERROR names its option
static void
s_test_limits (pl_link_fake_t *fake, pl_sessions_t *sessions)
{
    pl_session_t *first = s_test_connect (sessions, "");
    pl_session_t *second = s_test_connect (sessions, "");
    pl_session_t *third = s_test_connect (sessions, "");
    s_test_expect_error (third, "max-connections-per-user");
    pl_session_destroy (&third);
    s_test_expect (first, "CONNECTED", NULL, NULL);
    for (int count = 0; count < 3; count++)
        s_test_send (first, "SEND\ndestination:/app/rooms/r1\n\n{\"type\":\"TALK\",\"content\":\"x\"}");
    s_test_expect_error (first, "max-in-flight");
    pl_check (zlistx_size (fake->sent) == 2);
    pl_link_fake_expect (fake, PL_MSG_SEND, "r1");
    pl_link_fake_expect (fake, PL_MSG_SEND, "r1");
    pl_session_destroy (&first);
    pl_session_destroy (&second);
    pl_check (pl_sessions_refused (sessions)->in_flight == 1);
}

//  A token expires: the receipt owed goes out first, then the ERROR;
//  frames after exp are not handled
static void
s_test_expiry (pl_link_fake_t *fake, pl_sessions_t *sessions)
{
    int64_t later = pl_mono_ms () + (3600 + fake->link.config->jwt_leeway_s + 1) * 1000;
    pl_session_t *session = s_test_connect (sessions, "");
    s_test_expect (session, "CONNECTED", NULL, NULL);
    s_test_send (session, "SEND\ndestination:/app/rooms/r1\nreceipt:m5\n\n"
                          "{\"type\":\"TALK\",\"content\":\"x\"}");
    pl_sessions_tick (sessions, later - 2000);
    pl_check (!pl_session_closing (session));
    pl_sessions_tick (sessions, later);
    pl_check (!pl_session_closing (session));
    s_test_send (session, "SEND\ndestination:/app/rooms/r1\nreceipt:m6\n\n"
                          "{\"type\":\"TALK\",\"content\":\"y\"}");
    pl_msg_t *send = pl_link_fake_take (fake, PL_MSG_SEND);
    pl_check (zlistx_size (fake->sent) == 0);
    pl_link_fake_answer (fake, send, 200, 44, NULL);
    pl_msg_destroy (&send);
    s_test_expect (session, "RECEIPT", "seq", "44");
    s_test_expect_error (session, "reconnect with a new token and resume with since-seq");
    pl_session_destroy (&session);

    //  Nothing owed: the ERROR at once
    session = s_test_connect (sessions, "");
    s_test_expect (session, "CONNECTED", NULL, NULL);
    pl_sessions_tick (sessions, later);
    s_test_expect_error (session, "token expired");
    pl_session_destroy (&session);
    pl_check (pl_sessions_counts (sessions)->tokens_expired == 2);
}

void
pl_session_test (bool verbose)
{
    printf (" * pl_session: ");
    if (verbose)
        printf ("\n");
    pl_config_t *config = pl_config_new_default ();
    pl_check (pl_config_set (config, "jwt-secret", TEST_SECRET) == 0);
    pl_check (pl_config_set (config, "heartbeat-ms", "300") == 0);
    pl_check (pl_config_set (config, "max-outbound-bytes", "4096") == 0);
    pl_check (pl_config_set (config, "max-in-flight", "2") == 0);
    pl_check (pl_config_set (config, "max-connections-per-user", "2") == 0);
    pl_check (pl_config_finish (config) == 0);
    pl_link_fake_t *fake = pl_link_fake_new (config);
    pl_sessions_t *sessions = pl_sessions_new (&fake->link);
    pl_check (sessions);

    s_test_refusals (sessions);
    pl_check (zlistx_size (fake->sent) == 0);
    pl_check (pl_sessions_refused (sessions)->nul == 1);
    s_test_heartbeats (fake, sessions);
    s_test_rooms (fake, sessions);
    s_test_reads (fake, sessions);
    s_test_removed (fake, sessions);
    s_test_presence (fake, sessions);
    s_test_failures (fake, sessions);
    s_test_limits (fake, sessions);
    s_test_expiry (fake, sessions);
    s_test_drain (fake, sessions);

    pl_check (zlistx_size (fake->sent) == 0 && pl_sessions_size (sessions) == 0);
    pl_sessions_destroy (&sessions);
    pl_sessions_destroy (&sessions);
    pl_link_fake_destroy (&fake);
    pl_config_destroy (&config);
    pl_token_thread_end ();
    printf ("OK\n");
}
