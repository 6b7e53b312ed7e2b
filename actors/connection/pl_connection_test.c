/*  =========================================================================
    pl_connection_test - the selftest of pl_connection (in a file of its own so that
    pl_connection.c stays a file a person reads in one sitting)
    =========================================================================
*/
#include "pl_connection.h"
#include "pl_config.h"
#include "pl_log.h"
#include "pl_msg.h"
#include "pl_session.h"
#include "pl_util.h"
#include <jansson.h>
#include <assert.h>
#include <errno.h>
#include <sys/socket.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
//  Selftest: the actor in a thread, a ROUTER playing the room-router and a
//  raw TCP client (pl_wsclient) speaking HTTP and WebSocket by hand. What
//  the lws-free classes decide, their own selftests prove case by case;
//  this one proves the glue: sockets, headers, writes, timer, DEALER.

#include "pl_stomp.h"
#include "pl_wsclient.h"

#define TEST_ROUTER   "inproc://pl_connection_test-router"
#define TEST_SECRET   "pl_connection_test-secret-of-32-bytes-or-more"

//  Next message from the actor that is not a PING (or HELLO / JOIN / LEAVE
//  unless asked for).
static pl_msg_t *
s_test_router_expect (zsock_t *router, pl_msg_command_t command)
{
    while (true) {
        pl_msg_t *msg = pl_msg_recv (router);
        if (!msg) {
            fprintf (stderr, "router: expected %s, got nothing\n", pl_msg_command_name (command));
            pl_check (false);
        }
        pl_msg_command_t got = pl_msg_command (msg);
        if (got == command)
            return msg;
        if (got == PL_MSG_PING || got == PL_MSG_HELLO || got == PL_MSG_JOIN || got == PL_MSG_LEAVE
        ||  got == PL_MSG_PRESENT || got == PL_MSG_ABSENT) {
            pl_msg_destroy (&msg);
            continue;
        }
        fprintf (stderr, "router: expected %s, got %s\n",
                 pl_msg_command_name (command), pl_msg_command_name (got));
        pl_check (false);
    }
}

static void
s_test_router_reply (zsock_t *router, pl_msg_t *request, uint32_t status,
                     uint64_t seq, const char *body)
{
    pl_msg_t *reply = pl_link_fake_result (request, status, seq, body);
    pl_check (pl_msg_send (&reply, router) == 0);
}

//  A DELIVER to the actor: a room's message (seq) or a user event (room "")
static void
s_test_router_deliver (zsock_t *router, const char *room, const char *user, uint64_t seq,
                       const char *body, size_t size)
{
    pl_msg_t *msg = pl_msg_new (PL_MSG_DELIVER);
    pl_msg_set_routing_id (msg, "conn-0");
    pl_msg_set_room (msg, room);
    pl_msg_set_user (msg, user);
    pl_msg_set_seq (msg, seq);
    pl_msg_set_body (msg, body, size);
    pl_check (pl_msg_send (&msg, router) == 0);
}

//  Expect the next STOMP frame, as pl_stomp_text_expect
static void
s_test_expect (pl_wsclient_t *client, const char *command, const char *name, const char *value)
{
    char *frame = pl_wsclient_recv_stomp (client);
    pl_stomp_text_expect (frame, command, name, value);
    free (frame);
}

//  Open a WebSocket and CONNECT with a token; expect CONNECTED.
static pl_wsclient_t *
s_test_stomp_connect (int port, const char *token)
{
    pl_wsclient_t *client = pl_wsclient_new (port, "v12.stomp");
    char connect [9000];
    snprintf (connect, sizeof connect,
              "CONNECT\naccept-version:1.1,1.2\nhost:localhost\nheart-beat:0,0\n"
              "Authorization:Bearer %s\n\n", token);
    pl_wsclient_send_stomp (client, connect);
    s_test_expect (client, "CONNECTED", "version", "1.2");
    return client;
}

//  HTTP: headers and bodies as lws writes them, QUERYs through the DEALER,
//  the timer's deadline, readiness from the router's PING
static void
s_test_http (int port, zsock_t *router, const char *alice)
{
    int status;
    char *response = pl_wsclient_http (port, "GET", "/healthz", NULL, NULL, &status);
    pl_check (status == 200);
    pl_check (strstr (response, "{\"status\":\"ok\"}"));
    pl_check (strstr (response, "access-control-allow-origin: *"));
    //  Every HTTP answer closes: the next request passes pl_gate again
    pl_check (strstr (response, "connection: close"));
    free (response);
    response = pl_wsclient_http (port, "OPTIONS", "/api/rooms", NULL, NULL, &status);
    pl_check (status == 204);
    pl_check (strstr (response, "access-control-allow-methods"));
    free (response);
    char big [20000];
    memset (big, 'x', sizeof big - 1);
    big [sizeof big - 1] = 0;
    response = pl_wsclient_http (port, "POST", "/api/rooms", alice, big, &status);
    pl_check (status == 413);
    pl_check (strstr (response, "connection: close"));
    free (response);

    const char *create = "{\"kind\":\"direct\",\"members\":[\"u2\"]}";
    int fd = pl_wsclient_http_send (port, "POST", "/api/rooms", alice, create);
    pl_msg_t *msg = s_test_router_expect (router, PL_MSG_QUERY);
    pl_check (streq (pl_msg_operation (msg), "room.create"));
    pl_check (streq (pl_msg_user (msg), "u1"));
    pl_check (streq (pl_msg_body (msg), create));
    s_test_router_reply (router, msg, 201, 0, "{\"id\":\"d:u1:u2\",\"kind\":\"direct\"}");
    pl_msg_destroy (&msg);
    response = pl_wsclient_http_read (fd, &status);
    pl_check (status == 201);
    pl_check (strstr (response, "\"id\":\"d:u1:u2\""));
    pl_check (strstr (response, "content-type: application/json"));
    free (response);

    //  The query string as lws splits it
    fd = pl_wsclient_http_send (port, "GET", "/api/rooms/r1/messages?before=10&limit=5", alice, NULL);
    msg = s_test_router_expect (router, PL_MSG_QUERY);
    pl_check (streq (pl_msg_operation (msg), "room.messages"));
    pl_check (pl_msg_before (msg) == 10 && pl_msg_limit (msg) == 5);
    s_test_router_reply (router, msg, 403, 0, "not a member of room r1");
    pl_msg_destroy (&msg);
    response = pl_wsclient_http_read (fd, &status);
    pl_check (status == 403);
    pl_check (strstr (response, "{\"error\":\"not a member of room r1\"}"));
    free (response);

    //  No answer in time: 503
    fd = pl_wsclient_http_send (port, "GET", "/api/rooms", alice, NULL);
    msg = s_test_router_expect (router, PL_MSG_QUERY);
    pl_msg_destroy (&msg);
    response = pl_wsclient_http_read (fd, &status);
    pl_check (status == 503);
    free (response);

    //  Ready only once the router says a store and the bridge are there
    response = pl_wsclient_http (port, "GET", "/readyz", NULL, NULL, &status);
    pl_check (status == 503 && strstr (response, "persistence"));
    free (response);
    pl_msg_t *pong = pl_msg_new (PL_MSG_PING);
    pl_msg_set_readiness (pong, PL_READY_STORE | PL_READY_BRIDGE);
    pl_msg_set_routing_id (pong, "conn-0");
    pl_msg_send (&pong, router);
    zclock_sleep (100);
    response = pl_wsclient_http (port, "GET", "/readyz", NULL, NULL, &status);
    pl_check (status == 200);
    free (response);
}

//  STOMP: a session's way through the actor, end to end
static void
s_test_stomp (int port, zsock_t *router, const char *alice)
{
    pl_wsclient_t *client = s_test_stomp_connect (port, alice);
    pl_wsclient_send_stomp (client,
        "SUBSCRIBE\nid:sub-0\ndestination:/topic/rooms/r1\nreceipt:s1\n\n");
    pl_msg_t *msg = s_test_router_expect (router, PL_MSG_AUTHZ);
    pl_check (streq (pl_msg_user (msg), "u1"));
    pl_check (streq (pl_msg_room (msg), "r1"));
    pl_check (streq (pl_msg_action (msg), "subscribe"));
    s_test_router_reply (router, msg, 200, 0, NULL);
    pl_msg_destroy (&msg);
    msg = s_test_router_expect (router, PL_MSG_JOIN);
    pl_check (streq (pl_msg_room (msg), "r1"));
    pl_msg_destroy (&msg);
    s_test_expect (client, "RECEIPT", "receipt-id", "s1");

    pl_wsclient_send_stomp (client, "SUBSCRIBE\nid:sub-1\ndestination:/user/queue/events\nreceipt:s2\n\n");
    s_test_expect (client, "RECEIPT", "receipt-id", "s2");
    msg = s_test_router_expect (router, PL_MSG_WATCH);
    pl_check (streq (pl_msg_user (msg), "u1"));
    pl_msg_destroy (&msg);

    pl_wsclient_send_stomp (client,
        "SEND\ndestination:/app/rooms/r1\nreceipt:m1\ncontent-type:application/json\n\n"
        "{\"type\":\"TALK\",\"content\":\"h\xc3\xa9llo\",\"clientMsgId\":\"c-1\","
        "\"senderId\":\"mallory\",\"senderName\":\"Mallory\"}");
    msg = s_test_router_expect (router, PL_MSG_SEND);
    pl_check (streq (pl_msg_user (msg), "u1"));
    pl_check (streq (pl_msg_sender_name (msg), "Alice"));
    pl_check (streq (pl_msg_room (msg), "r1"));
    pl_check (streq (pl_msg_type (msg), "TALK"));
    pl_check (streq (pl_msg_cmid (msg), "c-1"));
    pl_check (streq (pl_msg_body (msg), "h\xc3\xa9llo"));
    s_test_router_reply (router, msg, 200, 42, NULL);
    pl_msg_destroy (&msg);
    char *frame = pl_wsclient_recv_stomp (client);
    pl_stomp_text_expect (frame, "RECEIPT", "receipt-id", "m1");
    pl_stomp_text_expect (frame, "RECEIPT", "seq", "42");
    free (frame);

    const char *body = "{\"roomId\":\"r1\",\"seq\":42,\"type\":\"TALK\",\"content\":\"h\xc3\xa9llo\"}";
    s_test_router_deliver (router, "r1", "", 42, body, strlen (body));
    frame = pl_wsclient_recv_stomp (client);
    pl_stomp_text_expect (frame, "MESSAGE", "subscription", "sub-0");
    pl_stomp_text_expect (frame, "MESSAGE", "message-id", "r1:42");
    pl_stomp_text_expect (frame, "MESSAGE", "destination", "/topic/rooms/r1");
    pl_stomp_text_expect (frame, "MESSAGE", "content-type", "application/json");
    pl_stomp_text_expect (frame, "MESSAGE", "seq", "42");
    pl_check (streq (strstr (frame, "\n\n") + 2, body));
    free (frame);

    //  A user event reaches the events queue
    s_test_router_deliver (router, "", "u1", 0, "{\"type\":\"UNREAD\"}", 17);
    s_test_expect (client, "MESSAGE", "subscription", "sub-1");

    //  /metrics shows this actor's own status record (sent once a second)
    bool counted = false;
    for (int attempt = 0; attempt < 40 && !counted; attempt++) {
        int status;
        char *response = pl_wsclient_http (port, "GET", "/metrics", NULL, NULL, &status);
        pl_check (status == 200);
        counted = strstr (response, "parley_conn_sessions{host=\"h1\",instance=\"0\"} 1\n") != NULL;
        free (response);
        if (!counted)
            zclock_sleep (100);
    }
    pl_check (counted);

    //  An unknown message type: ERROR and close; the router sees LEAVE r1
    pl_wsclient_send_stomp (client,
        "SEND\ndestination:/app/rooms/r1\nreceipt:m2\n\n{\"type\":\"SHOUT\"}");
    frame = pl_wsclient_recv_stomp (client);
    pl_stomp_text_expect (frame, "ERROR", "message", "type must be TALK, READ or TYPING");
    pl_stomp_text_expect (frame, "ERROR", "receipt-id", "m2");
    free (frame);
    pl_wsclient_expect_closed (client);
    pl_wsclient_destroy (&client);
    //  LEAVE r1 and UNWATCH u1, in the order the session's table holds them
    bool left = false, unwatched = false;
    for (int index = 0; index < 20 && !(left && unwatched); index++) {
        msg = pl_msg_recv (router);
        pl_check (msg);
        if (pl_msg_command (msg) == PL_MSG_LEAVE && streq (pl_msg_room (msg), "r1"))
            left = true;
        if (pl_msg_command (msg) == PL_MSG_UNWATCH && streq (pl_msg_user (msg), "u1"))
            unwatched = true;
        pl_msg_destroy (&msg);
    }
    pl_check (left && unwatched);

    //  A session's refusals and timeouts: pl_session_test
}

//  The wire: subprotocols, closes, heart-beats, slow readers, drops
static void
s_test_wire (int port, zsock_t *router, const char *alice)
{
    //  DISCONNECT with receipt, from a client that offered no subprotocol
    pl_wsclient_t *client = pl_wsclient_new (port, NULL);
    char connect [9000];
    snprintf (connect, sizeof connect, "STOMP\naccept-version:1.0,1.1\nAuthorization:Bearer %s\n\n", alice);
    pl_wsclient_send_stomp (client, connect);
    s_test_expect (client, "CONNECTED", "version", "1.1");
    pl_wsclient_send_stomp (client, "DISCONNECT\nreceipt:bye\n\n");
    s_test_expect (client, "RECEIPT", "receipt-id", "bye");
    pl_wsclient_expect_closed (client);
    pl_wsclient_destroy (&client);

    //  Heart-beats: the server sends EOLs, and closes a silent client
    client = pl_wsclient_new (port, "v12.stomp");
    snprintf (connect, sizeof connect,
              "CONNECT\naccept-version:1.2\nheart-beat:300,300\npasscode:%s\n\n", alice);
    pl_wsclient_send_stomp (client, connect);
    s_test_expect (client, "CONNECTED", "heart-beat", "300,300");
    pl_check (pl_wsclient_recv (client) == 0);
    size_t size;
    const char *received = pl_wsclient_received (client, &size);
    pl_check (size == 1 && *received == '\n');
    int64_t silent_since = zclock_mono ();
    pl_check (pl_wsclient_recv_stomp (client) == NULL);
    pl_check (zclock_mono () - silent_since < 2000);
    pl_wsclient_destroy (&client);

    //  A client that cannot keep up: over max-outbound-bytes, ERROR and close
    client = s_test_stomp_connect (port, alice);
    pl_wsclient_send_stomp (client, "SUBSCRIBE\nid:0\ndestination:/topic/rooms/r5\nreceipt:r\n\n");
    pl_msg_t *msg = s_test_router_expect (router, PL_MSG_AUTHZ);
    s_test_router_reply (router, msg, 200, 0, NULL);
    pl_msg_destroy (&msg);
    s_test_expect (client, "RECEIPT", "receipt-id", "r");
    char flood [5000];
    memset (flood, 'f', sizeof flood);
    s_test_router_deliver (router, "r5", "", 1, flood, sizeof flood);
    char *frame = pl_wsclient_recv_stomp (client);
    pl_stomp_text_expect (frame, "ERROR", "message", NULL);
    pl_check (strstr (frame, "slow consumer"));
    free (frame);
    pl_wsclient_expect_closed (client);
    pl_wsclient_destroy (&client);

    //  Someone drops the connection mid-request: no leak, no crash
    client = s_test_stomp_connect (port, alice);
    pl_wsclient_send_stomp (client, "SUBSCRIBE\nid:0\ndestination:/topic/rooms/r3\n\n");
    msg = s_test_router_expect (router, PL_MSG_AUTHZ);
    pl_wsclient_destroy (&client);
    zclock_sleep (100);
    s_test_router_reply (router, msg, 200, 0, NULL);
    pl_msg_destroy (&msg);
}

void
pl_connection_test (bool verbose)
{
    printf (" * pl_connection: ");
    if (verbose)
        printf ("\n");

    pl_config_t *config = pl_config_new_default ();
    pl_check (config);
    int port = pl_wsclient_free_port ();
    char port_text [16];
    snprintf (port_text, sizeof port_text, "%d", port);
    pl_check (pl_config_set (config, "port", port_text) == 0);
    pl_check (pl_config_set (config, "router-endpoint", TEST_ROUTER) == 0);
    pl_check (pl_config_set (config, "jwt-secret", TEST_SECRET) == 0);
    pl_check (pl_config_set (config, "request-timeout-ms", "700") == 0);
    pl_check (pl_config_set (config, "heartbeat-ms", "300") == 0);
    pl_check (pl_config_set (config, "max-outbound-bytes", "4096") == 0);
    char runtime [] = "/tmp/pl_connection_test-XXXXXX";
    pl_check (mkdtemp (runtime));
    pl_check (pl_config_set (config, "runtime-dir", runtime) == 0);
    pl_check (pl_config_finish (config) == 0);

    zsock_t *router = zsock_new_router (TEST_ROUTER);
    pl_check (router);
    zsock_set_rcvtimeo (router, 5000);

    zactor_t *actor = zactor_new (pl_connection_actor, config);
    pl_check (actor);
    pl_msg_t *msg = s_test_router_expect (router, PL_MSG_HELLO);
    pl_check (streq (pl_msg_role (msg), "conn"));
    pl_check (streq (pl_msg_routing_id (msg), "conn-0"));
    pl_msg_destroy (&msg);

    char *alice = pl_token_mint_hs256 (TEST_SECRET, "u1", "Alice", 3600);
    pl_check (alice);
    s_test_http (port, router, alice);
    s_test_stomp (port, router, alice);
    s_test_wire (port, router, alice);

    free (alice);
    zactor_destroy (&actor);
    zsock_destroy (&router);
    rmdir (runtime);
    pl_config_destroy (&config);
    printf ("OK\n");
}
