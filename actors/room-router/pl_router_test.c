/*  =========================================================================
    pl_router_test - selftest of the room-router actor: the router between a
    fake connection actor, a fake store and a fake bridge, all over inproc
    =========================================================================
*/
#include "pl_router.h"
#include "pl_msg.h"
#include "pl_log.h"
#include "pl_util.h"

#include <jansson.h>
#include <inttypes.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  Selftest: the router between a fake connection actor, a fake store and a
//  fake bridge, all over inproc.

static pl_msg_t *
s_test_recv (zsock_t *socket)
{
    zsock_set_rcvtimeo (socket, 2000);
    pl_msg_t *message = pl_msg_recv (socket);
    pl_check (message);
    return message;
}

//  Ask whether user may subscribe to room; the answer's status
static uint32_t
s_test_authz (zsock_t *conn, const char *room, const char *user, uint64_t corr)
{
    pl_msg_t *message = pl_msg_new (PL_MSG_AUTHZ);
    pl_msg_set_corr (message, corr);
    pl_msg_set_room (message, room);
    pl_msg_set_user (message, user);
    pl_msg_send (&message, conn);
    message = pl_msg_recv_command (conn, PL_MSG_RESULT);
    pl_check (message && pl_msg_corr (message) == corr);
    uint32_t status = pl_msg_status (message);
    pl_msg_destroy (&message);
    return status;
}

//  The answer to a rooms.members query of one room: {room: members}
static void
s_test_members_answer (zsock_t *store, pl_msg_t *query, const char *room, const char *members)
{
    pl_check (streq (pl_msg_operation (query), "rooms.members"));
    char asked [64], body [256];
    snprintf (asked, sizeof asked, "[\"%s\"]", room);
    pl_check (pl_msg_body_size (query) == strlen (asked)
           && memcmp (pl_msg_body (query), asked, strlen (asked)) == 0);
    snprintf (body, sizeof body, "{\"%s\":%s}", room, members);
    pl_msg_t *answer = pl_msg_new (PL_MSG_RESULT);
    pl_msg_set_corr (answer, pl_msg_corr (query));
    pl_msg_set_status (answer, 200);
    pl_msg_set_body (answer, body, strlen (body));
    pl_msg_send (&answer, store);
}

//  The store's next rooms.members query, for room, answered with these
//  members (NULL: left unanswered); returns whether one came
static bool
s_test_members_query (zsock_t *store, const char *room, const char *members)
{
    zsock_set_rcvtimeo (store, 300);
    pl_msg_t *query = pl_msg_recv_command (store, PL_MSG_QUERY);
    if (!query)
        return false;
    pl_check (streq (pl_msg_operation (query), "rooms.members"));
    if (members)
        s_test_members_answer (store, query, room, members);
    pl_msg_destroy (&query);
    return true;
}

//  Rooms asked for meanwhile share rooms.members queries of at most
//  member-load-batch (2 here) rooms, one query out at a time with one
//  store; a room the store does not know (null) refuses as a non-member
static void
s_test_batched_loads (zsock_t *conn, zsock_t *store)
{
    const char *rooms [] = { "b1", "b2", "b3" };
    for (int index = 0; index < 3; index++) {
        pl_msg_t *message = pl_msg_new (PL_MSG_AUTHZ);
        pl_msg_set_corr (message, 50 + (uint64_t) index);
        pl_msg_set_room (message, rooms [index]);
        pl_msg_set_user (message, "u1");
        pl_msg_send (&message, conn);
    }
    size_t asked = 0;
    while (asked < 3) {
        pl_msg_t *query = pl_msg_recv_command (store, PL_MSG_QUERY);
        pl_check (query && streq (pl_msg_operation (query), "rooms.members"));
        //  No second query while this one is out
        zsock_set_rcvtimeo (store, 200);
        pl_msg_t *early = pl_msg_recv_command (store, PL_MSG_QUERY);
        pl_check (early == NULL);
        zsock_set_rcvtimeo (store, 2000);
        json_t *ids = json_loadb (pl_msg_body (query), pl_msg_body_size (query), 0, NULL);
        pl_check (json_array_size (ids) >= 1 && json_array_size (ids) <= 2);
        json_t *answer = json_object ();
        size_t index;
        json_t *id;
        json_array_foreach (ids, index, id) {
            const char *room = json_string_value (id);
            json_object_set_new (answer, room, streq (room, "b1")? json_pack ("[s]", "u1"):
                                               streq (room, "b2")? json_pack ("[s]", "u2"): json_null ());
        }
        asked += json_array_size (ids);
        char *body = json_dumps (answer, JSON_COMPACT);
        pl_msg_t *result = pl_msg_new (PL_MSG_RESULT);
        pl_msg_set_corr (result, pl_msg_corr (query));
        pl_msg_set_status (result, 200);
        pl_msg_set_body (result, body, strlen (body));
        pl_msg_send (&result, store);
        free (body);
        json_decref (answer);
        json_decref (ids);
        pl_msg_destroy (&query);
    }
    pl_check (asked == 3);
    for (int count = 0; count < 3; count++) {
        pl_msg_t *message = pl_msg_recv_command (conn, PL_MSG_RESULT);
        pl_check (message);
        pl_check (pl_msg_status (message) == (pl_msg_corr (message) == 50? 200: 403));
        pl_msg_destroy (&message);
    }
}

//  A member list past member-cache-ms still decides at once while a fresh
//  one loads: a busy store never holds up SENDs of a room in use. A
//  ROOM_CHANGED drops the list, and then requests wait for the new one.
static void
s_test_stale_members (void)
{
    pl_config_t *config = pl_config_new_default ();
    pl_config_set (config, "router-endpoint", "inproc://pl_router_stale-router");
    pl_config_set (config, "bridge-endpoint", "inproc://pl_router_stale-bridge");
    pl_config_set (config, "member-cache-ms", "100");
    pl_config_set (config, "member-load-batch", "2");
    pl_check (pl_config_finish (config) == 0);
    zsock_t *bridge = zsock_new_router ("inproc://pl_router_stale-bridge");
    zactor_t *router = zactor_new (pl_router_actor, config);
    zsock_t *conn = zsock_new_dealer (NULL);
    zsock_set_identity (conn, "conn-0");
    zsock_connect (conn, "inproc://pl_router_stale-router");
    zsock_set_rcvtimeo (conn, 2000);
    zsock_t *store = zsock_new_dealer (NULL);
    zsock_set_identity (store, "store-0");
    zsock_connect (store, "inproc://pl_router_stale-router");
    pl_msg_t *hello = pl_msg_new (PL_MSG_HELLO);
    pl_msg_set_role (hello, "store");
    pl_msg_send (&hello, store);
    hello = pl_msg_new (PL_MSG_HELLO);
    pl_msg_set_role (hello, "conn");
    pl_msg_send (&hello, conn);
    zclock_sleep (50);

    //  First: loaded from the store
    pl_msg_t *message = pl_msg_new (PL_MSG_AUTHZ);
    pl_msg_set_corr (message, 1);
    pl_msg_set_room (message, "r9");
    pl_msg_set_user (message, "u1");
    pl_msg_send (&message, conn);
    pl_check (s_test_members_query (store, "r9", "[\"u1\"]"));
    message = pl_msg_recv_command (conn, PL_MSG_RESULT);
    pl_check (message && pl_msg_status (message) == 200);
    pl_msg_destroy (&message);
    //  Aged: answered at once from the old list, a reload goes out (once)
    zclock_sleep (150);
    pl_check (s_test_authz (conn, "r9", "u1", 2) == 200);
    pl_check (s_test_authz (conn, "r9", "u2", 3) == 403);
    pl_check (s_test_members_query (store, "r9", "[\"u1\"]"));
    pl_check (!s_test_members_query (store, "r9", NULL));
    //  A change of members: the list is gone, the next request waits for it
    message = pl_msg_new (PL_MSG_ROOM_CHANGED);
    pl_msg_set_room (message, "r9");
    pl_msg_send (&message, store);
    zclock_sleep (50);
    message = pl_msg_new (PL_MSG_AUTHZ);
    pl_msg_set_corr (message, 4);
    pl_msg_set_room (message, "r9");
    pl_msg_set_user (message, "u2");
    pl_msg_send (&message, conn);
    pl_check (s_test_members_query (store, "r9", "[\"u1\",\"u2\"]"));
    message = pl_msg_recv_command (conn, PL_MSG_RESULT);
    pl_check (message && pl_msg_corr (message) == 4 && pl_msg_status (message) == 200);
    pl_msg_destroy (&message);
    s_test_batched_loads (conn, store);

    zsock_destroy (&store);
    zsock_destroy (&conn);
    zactor_destroy (&router);
    zsock_destroy (&bridge);
    pl_config_destroy (&config);
}

void
pl_router_test (bool verbose)
{
    if (verbose)
        printf (" * pl_router: ");
    pl_config_t *config = pl_config_new_default ();
    pl_config_set (config, "router-endpoint", "inproc://pl_router_test-router");
    pl_config_set (config, "bridge-endpoint", "inproc://pl_router_test-bridge");
    pl_config_set (config, "request-timeout-ms", "500");
    pl_check (pl_config_finish (config) == 0);

    zsock_t *bridge = zsock_new_router ("inproc://pl_router_test-bridge");
    zactor_t *router = zactor_new (pl_router_actor, config);
    pl_check (router);

    zsock_t *conn = zsock_new (ZMQ_DEALER);
    zsock_set_identity (conn, "conn-0");
    zsock_connect (conn, "inproc://pl_router_test-router");
    zsock_t *other = zsock_new (ZMQ_DEALER);
    zsock_set_identity (other, "conn-1");
    zsock_connect (other, "inproc://pl_router_test-router");
    zsock_t *store = zsock_new (ZMQ_DEALER);
    zsock_set_identity (store, "store-0");
    zsock_connect (store, "inproc://pl_router_test-router");

    //  The bridge hears the router's HELLO
    pl_msg_t *message = s_test_recv (bridge);
    pl_check (pl_msg_command (message) == PL_MSG_HELLO && streq (pl_msg_role (message), "router"));
    pl_msg_destroy (&message);

    //  Without a store, a membership question fails after its deadline
    pl_check (s_test_authz (conn, "r1", "u1", 1) == 503);

    message = pl_msg_new (PL_MSG_HELLO);
    pl_msg_set_role (message, "store");
    pl_msg_send (&message, store);
    message = pl_msg_new (PL_MSG_HELLO);
    pl_msg_set_role (message, "conn");
    pl_msg_send (&message, conn);

    //  AUTHZ: the router asks the store once, then answers from its cache
    for (int round = 0; round < 2; round++) {
        message = pl_msg_new (PL_MSG_AUTHZ);
        pl_msg_set_corr (message, 10 + round);
        pl_msg_set_room (message, "r1");
        pl_msg_set_user (message, round == 0? "u1": "u3");
        pl_msg_send (&message, conn);
        if (round == 0) {
            pl_msg_t *query = s_test_recv (store);
            pl_check (pl_msg_command (query) == PL_MSG_QUERY);
            s_test_members_answer (store, query, "r1", "[\"u1\",\"u2\"]");
            pl_msg_destroy (&query);
        }
        message = s_test_recv (conn);
        pl_check (pl_msg_corr (message) == (uint64_t) (10 + round));
        pl_check (pl_msg_status (message) == (round == 0? 200: 403));
        pl_msg_destroy (&message);
    }
    //  SEND of a member goes to the bridge with the route back
    message = pl_msg_new (PL_MSG_SEND);
    pl_msg_set_corr (message, 20);
    pl_msg_set_room (message, "r1");
    pl_msg_set_user (message, "u2");
    pl_msg_set_body (message, "hi", 2);
    pl_msg_send (&message, conn);
    message = pl_msg_recv_command (bridge, PL_MSG_SEND);     //  past presence broadcasts
    pl_check (message);
    pl_check (pl_msg_command (message) == PL_MSG_SEND && streq (pl_msg_route (message), "conn-0"));
    pl_msg_t *result = pl_msg_new (PL_MSG_RESULT);
    pl_msg_set_routing_id (result, pl_msg_routing_id (message));
    pl_msg_set_route (result, "conn-0");
    pl_msg_set_corr (result, 20);
    pl_msg_set_status (result, 200);
    pl_msg_set_seq (result, 1);
    pl_msg_destroy (&message);
    pl_msg_send (&result, bridge);
    message = s_test_recv (conn);
    pl_check (pl_msg_command (message) == PL_MSG_RESULT && pl_msg_seq (message) == 1);
    pl_msg_destroy (&message);

    //  DELIVER reaches only the connection actor that joined the room
    message = pl_msg_new (PL_MSG_JOIN);
    pl_msg_set_room (message, "r1");
    pl_msg_send (&message, conn);
    message = pl_msg_new (PL_MSG_PING);
    pl_msg_send (&message, other);
    message = s_test_recv (other);
    pl_check (pl_msg_command (message) == PL_MSG_RESYNC);
    pl_msg_destroy (&message);
    zclock_sleep (50);
    message = pl_msg_new (PL_MSG_DELIVER);
    pl_msg_set_routing_id (message, PL_ROUTER_IDENTITY);
    pl_msg_set_room (message, "r1");
    pl_msg_set_seq (message, 1);
    pl_msg_send (&message, bridge);
    message = s_test_recv (conn);
    pl_check (pl_msg_command (message) == PL_MSG_DELIVER && pl_msg_seq (message) == 1);
    pl_msg_destroy (&message);
    zsock_set_rcvtimeo (other, 100);
    pl_check (pl_msg_recv (other) == NULL);

    //  A change of members heard from the stream: a user event per member
    //  of a new room, to every conn (each knows its own users); a room
    //  other than r1, whose cached members the next parts use
    message = pl_msg_new (PL_MSG_ROOM_CHANGED);
    pl_msg_set_routing_id (message, PL_ROUTER_IDENTITY);
    pl_msg_set_room (message, "r9");
    pl_msg_set_type (message, "ROOM_ADDED");
    const char *room_json = "{\"id\":\"r9\",\"members\":[\"u1\",\"u2\"]}";
    pl_msg_set_body (message, room_json, strlen (room_json));
    pl_msg_send (&message, bridge);
    for (int index = 0; index < 2; index++) {
        message = s_test_recv (conn);
        pl_check (pl_msg_command (message) == PL_MSG_DELIVER && !*pl_msg_room (message));
        pl_check (streq (pl_msg_user (message), index? "u2": "u1"));
        pl_check (strstr (pl_msg_body (message), "\"type\":\"ROOM_ADDED\",\"room\":{\"id\":\"r9\""));
        pl_msg_destroy (&message);
    }
    message = pl_msg_new (PL_MSG_ROOM_CHANGED);
    pl_msg_set_routing_id (message, PL_ROUTER_IDENTITY);
    pl_msg_set_room (message, "r9");
    pl_msg_set_type (message, "ROOM_REMOVED");
    pl_msg_set_target_user (message, "u2");
    pl_msg_send (&message, bridge);
    message = s_test_recv (conn);
    pl_check (streq (pl_msg_user (message), "u2"));
    pl_check (streq (pl_msg_body (message), "{\"type\":\"ROOM_REMOVED\",\"roomId\":\"r9\"}"));
    pl_msg_destroy (&message);

    //  A QUERY goes to the store and its RESULT back to the asker
    message = pl_msg_new (PL_MSG_QUERY);
    pl_msg_set_corr (message, 30);
    pl_msg_set_operation (message, "room.get");
    pl_msg_send (&message, other);
    message = s_test_recv (store);
    pl_check (streq (pl_msg_route (message), "conn-1"));
    pl_msg_t *answer = pl_msg_new (PL_MSG_RESULT);
    pl_msg_set_route (answer, pl_msg_route (message));
    pl_msg_set_corr (answer, pl_msg_corr (message));
    pl_msg_set_status (answer, 200);
    pl_msg_destroy (&message);
    pl_msg_send (&answer, store);
    message = s_test_recv (other);
    pl_check (pl_msg_command (message) == PL_MSG_RESULT && pl_msg_corr (message) == 30);
    pl_msg_destroy (&message);

    //  A granted AUTHZ already counts as a JOIN: a DELIVER right after the
    //  answer reaches the new subscriber's actor
    pl_check (s_test_authz (other, "r1", "u2", 35) == 200);
    message = pl_msg_new (PL_MSG_DELIVER);
    pl_msg_set_routing_id (message, PL_ROUTER_IDENTITY);
    pl_msg_set_room (message, "r1");
    pl_msg_set_seq (message, 2);
    pl_msg_send (&message, bridge);
    message = pl_msg_recv_command (other, PL_MSG_DELIVER);
    pl_check (message && pl_msg_seq (message) == 2);
    pl_msg_destroy (&message);

    //  Garbage is dropped and the router goes on
    zstr_send (conn, "garbage");
    message = pl_msg_new (PL_MSG_AUTHZ);
    pl_msg_set_corr (message, 40);
    pl_msg_set_room (message, "r1");
    pl_msg_set_user (message, "u2");
    pl_msg_send (&message, conn);
    message = pl_msg_recv_command (conn, PL_MSG_RESULT);      //  after the DELIVER of seq 2
    pl_check (message && pl_msg_corr (message) == 40 && pl_msg_status (message) == 200);
    pl_msg_destroy (&message);

    zactor_destroy (&router);
    zsock_destroy (&conn);
    zsock_destroy (&other);
    zsock_destroy (&store);
    zsock_destroy (&bridge);
    pl_config_destroy (&config);
    s_test_stale_members ();
    if (verbose)
        printf ("OK\n");
}
