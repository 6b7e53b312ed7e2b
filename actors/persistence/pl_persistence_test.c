/*  =========================================================================
    pl_persistence_test - selftest of the persistence actor: the actor
    between a fake router and a fake bridge over inproc, against the test
    MongoDB (FerretDB)
    =========================================================================
*/
#include "pl_persistence.h"
#include "pl_rooms.h"
#include "pl_store.h"
#include "pl_msg.h"
#include "pl_log.h"
#include "pl_util.h"

//  --------------------------------------------------------------------------
//  Selftest

//  One QUERY as the router sends it
typedef struct {
    const char *kind;
    const char *user;
    const char *room;
    const char *body;
    const char *sub;
    uint32_t limit;
    uint64_t seq;
} s_test_query_t;

//  Send a query, read up to its RESULT: check the status and whether a
//  ROOM_CHANGED for the query's room came first; return the parsed body
static json_t *
s_test_query (zsock_t *router, s_test_query_t spec, int expected, bool changed, int line)
{
    pl_msg_t *query = pl_msg_new (PL_MSG_QUERY);
    pl_msg_set_routing_id (query, "store-0");
    pl_msg_set_operation (query, spec.kind);
    pl_msg_set_user (query, spec.user? spec.user: "");
    pl_msg_set_room (query, spec.room? spec.room: "");
    pl_msg_set_target_user (query, spec.sub? spec.sub: "");
    pl_msg_set_limit (query, spec.limit);
    //  One slot: before for room.messages, after for room.since
    if (streq (spec.kind, "room.since"))
        pl_msg_set_after (query, spec.seq);
    else
        pl_msg_set_before (query, spec.seq);
    pl_msg_set_route (query, "conn-0");
    if (spec.body)
        pl_msg_set_body (query, spec.body, strlen (spec.body));
    pl_msg_send (&query, router);
    bool seen_change = false;
    pl_msg_t *result = NULL;
    while (!result) {
        pl_msg_t *message = pl_msg_recv (router);
        pl_check (message);
        if (pl_msg_command (message) == PL_MSG_RESULT)
            result = message;
        else {
            if (pl_msg_command (message) == PL_MSG_ROOM_CHANGED)
                seen_change = true;
            pl_msg_destroy (&message);
        }
    }
    if ((int) pl_msg_status (result) != expected || seen_change != changed)
        fprintf (stderr, "pl_persistence_test: line %d: %s: expected %d, got %d %s%s\n", line, spec.kind,
                 expected, (int) pl_msg_status (result), pl_msg_body (result),
                 seen_change != changed? " (ROOM_CHANGED unlike expected)": "");
    pl_check ((int) pl_msg_status (result) == expected && seen_change == changed);
    pl_check (streq (pl_msg_route (result), "conn-0"));
    json_t *json = json_loads (pl_msg_body (result), 0, NULL);
    pl_check (json);
    if (expected >= 400)
        pl_check (json_string_value (json_object_get (json, "error")));
    pl_msg_destroy (&result);
    return json;
}

#define s_test_ask(router, expected, changed, ...) \
    s_test_query ((router), (s_test_query_t) { __VA_ARGS__ }, (expected), (changed), __LINE__)
#define s_test_refused(router, expected, ...) \
    json_decref (s_test_ask ((router), (expected), false, __VA_ARGS__))

//  Persist 300 entries twice: every one confirmed, stored once
static void
s_test_persist (zsock_t *bridge, const char *room_id)
{
    for (int round = 0; round < 2; round++)
        for (int seq = 1; seq <= 300; seq++) {
            pl_msg_t *persist = pl_msg_new (PL_MSG_PERSIST);
            pl_msg_set_routing_id (persist, "store-0");
            pl_msg_set_stream (persist, "s");
            char entry_id [32];
            snprintf (entry_id, sizeof entry_id, "%d-0", seq);
            pl_msg_set_entry_id (persist, entry_id);
            pl_msg_set_room (persist, room_id);
            pl_msg_set_seq (persist, (uint64_t) seq);
            pl_msg_set_type (persist, "TALK");
            pl_msg_set_user (persist, "u1");
            pl_msg_set_sender_name (persist, "Alice");
            pl_msg_set_body (persist, "hello", 5);
            char cmid [16];
            snprintf (cmid, sizeof cmid, "c%d", seq);
            pl_msg_set_cmid (persist, seq % 2? cmid: "");
            pl_msg_set_created (persist, pl_clock_ms ());
            pl_msg_send (&persist, bridge);
        }
    int confirmed = 0;
    while (confirmed < 600) {
        pl_msg_t *message = pl_msg_recv (bridge);
        pl_check (message);
        if (pl_msg_command (message) == PL_MSG_PERSISTED) {
            pl_check (pl_msg_status (message) == 200);
            confirmed++;
        }
        pl_msg_destroy (&message);
    }
}

//  The bridge's rooms.last_seq: the highest stored seq of each room, 0 for
//  one without messages; a bad body is refused
static void
s_test_last_seqs (zsock_t *bridge, const char *room_id)
{
    char body [128];
    snprintf (body, sizeof body, "[\"%s\",\"g:empty\"]", room_id);
    const char *bodies [] = { body, "[]", "[\"not an id\"]" };
    uint32_t statuses [] = { 200, 400, 400 };
    for (int index = 0; index < 3; index++) {
        pl_msg_t *query = pl_msg_new (PL_MSG_QUERY);
        pl_msg_set_routing_id (query, "store-0");
        pl_msg_set_operation (query, "rooms.last_seq");
        pl_msg_set_corr (query, 90 + (uint64_t) index);
        pl_msg_set_body (query, bodies [index], strlen (bodies [index]));
        pl_msg_send (&query, bridge);
        pl_msg_t *result = pl_msg_recv_command (bridge, PL_MSG_RESULT);
        pl_check (result && pl_msg_corr (result) == 90 + (uint64_t) index);
        pl_check (pl_msg_status (result) == statuses [index]);
        if (index == 0) {
            json_t *lasts = json_loadb (pl_msg_body (result), pl_msg_body_size (result), 0, NULL);
            pl_check (json_integer_value (json_object_get (lasts, room_id)) == 300);
            pl_check (json_integer_value (json_object_get (lasts, "g:empty")) == 0);
            json_decref (lasts);
        }
        pl_msg_destroy (&result);
    }
    //  room.client_msg_ids: those of seqs 296..300 that have one, newest first
    pl_msg_t *query = pl_msg_new (PL_MSG_QUERY);
    pl_msg_set_routing_id (query, "store-0");
    pl_msg_set_operation (query, "room.client_msg_ids");
    pl_msg_set_room (query, room_id);
    pl_msg_set_corr (query, 99);
    const char *range = "{\"after\":295,\"upTo\":300}";
    pl_msg_set_body (query, range, strlen (range));
    pl_msg_send (&query, bridge);
    pl_msg_t *result = pl_msg_recv_command (bridge, PL_MSG_RESULT);
    pl_check (result && pl_msg_corr (result) == 99 && pl_msg_status (result) == 200);
    json_t *cmids = json_loadb (pl_msg_body (result), pl_msg_body_size (result), 0, NULL);
    pl_check (json_array_size (cmids) == 2);
    pl_check (streq (json_string_value (json_object_get (json_array_get (cmids, 0), "clientMsgId")), "c299"));
    pl_check (json_integer_value (json_object_get (json_array_get (cmids, 1), "seq")) == 297);
    pl_check (streq (json_string_value (json_object_get (json_array_get (cmids, 1), "senderId")), "u1"));
    json_decref (cmids);
    pl_msg_destroy (&result);
}

//  History and resume through the router side
static void
s_test_history (zsock_t *router, const char *room_id)
{
    //  Capped by history-limit (default 200), newest first
    json_t *page = s_test_ask (router, 200, false, .kind = "room.messages", .user = "u2", .room = room_id,
                               .limit = 1000);
    pl_check (json_array_size (page) == 200);
    pl_check (json_integer_value (json_object_get (json_array_get (page, 0), "seq")) == 300);
    json_decref (page);
    page = s_test_ask (router, 200, false, .kind = "room.messages", .user = "u1", .room = room_id,
                       .limit = 5, .seq = 100);
    pl_check (json_array_size (page) == 5);
    pl_check (json_integer_value (json_object_get (json_array_get (page, 0), "seq")) == 99);
    json_decref (page);
    //  Resume: oldest first after a seq
    page = s_test_ask (router, 200, false, .kind = "room.since", .user = "u1", .room = room_id, .seq = 295);
    pl_check (json_array_size (page) == 5);
    pl_check (json_integer_value (json_object_get (json_array_get (page, 0), "seq")) == 296);
    pl_check (streq (json_string_value (json_object_get (json_array_get (page, 0), "senderName")), "Alice"));
    json_decref (page);
    s_test_refused (router, 403, .kind = "room.messages", .user = "u3", .room = room_id);
    s_test_refused (router, 403, .kind = "room.since", .user = "u3", .room = room_id);
    //  No such room: the same as a room of others (issue 8)
    s_test_refused (router, 403, .kind = "room.messages", .user = "u1", .room = "g:nothing");
    s_test_refused (router, 403, .kind = "room.since", .user = "u1", .room = "g:nothing");
    s_test_refused (router, 400, .kind = "room.messages", .user = "u1", .room = "not/an/id");
}

//  Rooms: create, read, list; members come and go
static void
s_test_rooms (zsock_t *router, const char *direct_id)
{
    //  The other one of the pair gets the same room, as it was made
    json_t *room = s_test_ask (router, 200, true, .kind = "room.create", .user = "u2",
                               .body = "{\"kind\":\"direct\",\"members\":[\"u1\"]}");
    pl_check (streq (json_string_value (json_object_get (room, "id")), direct_id));
    pl_check (json_integer_value (json_object_get (room, "lastSeq")) == 300);
    json_decref (room);
    s_test_refused (router, 400, .kind = "room.create", .user = "u1", .body = "{\"kind\":\"channel\"}");
    s_test_refused (router, 400, .kind = "room.create", .user = "", .body = "{\"kind\":\"group\"}");
    room = s_test_ask (router, 201, true, .kind = "room.create", .user = "u1",
                       .body = "{\"kind\":\"group\",\"name\":\"Team\",\"members\":[\"u2\"]}");
    char *group_id = strdup (json_string_value (json_object_get (room, "id")));
    json_decref (room);

    room = s_test_ask (router, 200, false, .kind = "room.get", .user = "u2", .room = direct_id);
    pl_check (json_object_size (json_object_get (room, "readSeq")) == 2);
    json_decref (room);
    s_test_refused (router, 403, .kind = "room.get", .user = "u3", .room = direct_id);
    s_test_refused (router, 403, .kind = "room.get", .user = "u1", .room = "g:nothing");
    s_test_refused (router, 403, .kind = "member.add", .user = "u1", .room = "g:nothing", .body = "{\"userId\":\"u3\"}");
    s_test_refused (router, 403, .kind = "member.remove", .user = "u1", .room = "g:nothing", .sub = "u1");
    json_t *list = s_test_ask (router, 200, false, .kind = "room.list", .user = "u2");
    pl_check (json_array_size (list) == 2);
    json_decref (list);
    s_test_refused (router, 400, .kind = "room.list", .user = "not an id");
    json_t *members = s_test_ask (router, 200, false, .kind = "room.members", .room = group_id);
    pl_check (json_array_size (members) == 2);
    json_decref (members);
    s_test_refused (router, 404, .kind = "room.members", .room = "g:nothing");
    //  Many rooms at once: every id asked for, null where there is none
    char many [128];
    snprintf (many, sizeof many, "[\"%s\",\"g:nothing\"]", group_id);
    members = s_test_ask (router, 200, false, .kind = "rooms.members", .body = many);
    pl_check (json_array_size (json_object_get (members, group_id)) == 2);
    pl_check (json_is_null (json_object_get (members, "g:nothing")) && json_object_size (members) == 2);
    json_decref (members);
    s_test_refused (router, 400, .kind = "rooms.members", .body = "[]");
    s_test_refused (router, 400, .kind = "rooms.members", .body = "[\"not an id\"]");
    s_test_refused (router, 400, .kind = "rooms.members", .body = "{}");

    const char *add_u3 = "{\"userId\":\"u3\"}";
    room = s_test_ask (router, 200, true, .kind = "member.add", .user = "u2", .room = group_id, .body = add_u3);
    pl_check (json_array_size (json_object_get (room, "members")) == 3);
    json_decref (room);
    //  A member already: nothing changes, nobody is told
    json_decref (s_test_ask (router, 200, false, .kind = "member.add", .user = "u2", .room = group_id, .body = add_u3));
    json_t *counts = s_test_ask (router, 200, false, .kind = "user.unread", .user = "u3");
    pl_check (json_array_size (json_object_get (counts, "rooms")) == 1);
    json_decref (counts);
    counts = s_test_ask (router, 200, false, .kind = "user.unread", .user = "u3", .body = "[\"g:none\"]");
    pl_check (json_array_size (json_object_get (counts, "rooms")) == 0);
    json_decref (counts);
    s_test_refused (router, 400, .kind = "member.add", .user = "u2", .room = group_id, .body = "{]");
    s_test_refused (router, 400, .kind = "member.add", .user = "u2", .room = direct_id, .body = add_u3);
    s_test_refused (router, 403, .kind = "member.add", .user = "u4", .room = group_id, .body = add_u3);
    s_test_refused (router, 403, .kind = "member.remove", .user = "u3", .room = group_id, .sub = "u2");
    s_test_refused (router, 400, .kind = "member.remove", .user = "u1", .room = direct_id, .sub = "u2");
    s_test_refused (router, 404, .kind = "member.remove", .user = "u1", .room = group_id, .sub = "u4");
    s_test_refused (router, 400, .kind = "member.remove", .user = "u1", .room = group_id, .sub = "a b");
    room = s_test_ask (router, 200, true, .kind = "member.remove", .user = "u1", .room = group_id, .sub = "u3");
    pl_check (json_array_size (json_object_get (room, "members")) == 2);
    json_decref (room);
    s_test_refused (router, 400, .kind = "room.rename", .user = "u1", .room = group_id);
    free (group_id);
}

//  Send count resume pages of u1 and one room.get of u2
static void
s_test_flood (zsock_t *router, const char *room_id, int count)
{
    for (int index = 0; index <= count; index++) {
        pl_msg_t *query = pl_msg_new (PL_MSG_QUERY);
        pl_msg_set_routing_id (query, "store-0");
        pl_msg_set_operation (query, index < count? "room.since": "room.get");
        pl_msg_set_user (query, index < count? "u1": "u2");
        pl_msg_set_room (query, room_id);
        pl_msg_set_corr (query, (uint64_t) index + 1);
        pl_msg_set_route (query, "conn-0");
        pl_msg_send (&query, router);
    }
}

//  A flood of one user's queries: bounded per user (503 naming the
//  limit), and another user's query is answered among the first, not
//  after the flood; on $TERM what is queued is answered "stopping" at once
static void
s_test_queues (zsock_t *router, zactor_t **actor_p, const char *room_id)
{
    s_test_flood (router, room_id, 150);
    int position = -1, refused = 0;
    for (int index = 0; index < 151; index++) {
        pl_msg_t *result = pl_msg_recv_command (router, PL_MSG_RESULT);
        pl_check (result);
        if (pl_msg_corr (result) == 151)
            position = index;
        if (pl_msg_status (result) == 503) {
            pl_check (strstr (pl_msg_body (result), "store-user-queue-max"));
            refused++;
        }
        pl_msg_destroy (&result);
    }
    pl_check (position >= 0 && position < 60);
    pl_check (refused > 0);

    s_test_flood (router, room_id, 100);
    zclock_sleep (20);
    int64_t started = pl_mono_ms ();
    zactor_destroy (actor_p);
    pl_check (pl_mono_ms () - started < 3000);
    int stopping = 0;
    for (int index = 0; index < 101; index++) {
        pl_msg_t *result = pl_msg_recv_command (router, PL_MSG_RESULT);
        pl_check (result);
        if (pl_msg_status (result) == 503 && strstr (pl_msg_body (result), "stopping"))
            stopping++;
        pl_msg_destroy (&result);
    }
    pl_check (stopping > 0);
}

//  A direct room stored under its id of before keyed ids stays the pair's
//  room: a create by either finds it (200) instead of making a second
static void
s_test_legacy_room (zsock_t *router, const char *mongo_url, const char *database)
{
    pl_room_t room = { .kind = "direct", .created_by = "u5", .created_ms = pl_clock_ms () };
    char *members [] = { "u5", "u6" };
    room.members = members;
    room.member_count = 2;
    char legacy [40];
    pl_check (pl_rooms_legacy_id (&room, legacy, sizeof legacy) == 0);
    room.id = legacy;
    pl_store_t *store = pl_store_new (mongo_url, database, "majority");
    pl_check (store && pl_store_room_insert (store, &room) == PL_STORE_OK);
    pl_store_destroy (&store);
    for (int round = 0; round < 2; round++) {
        json_t *answer = s_test_ask (router, 200, true, .kind = "room.create", .user = round? "u6": "u5",
                                     .body = round? "{\"kind\":\"direct\",\"members\":[\"u5\"]}"
                                                  : "{\"kind\":\"direct\",\"members\":[\"u6\"]}");
        pl_check (streq (json_string_value (json_object_get (answer, "id")), legacy));
        json_decref (answer);
    }
    json_decref (s_test_ask (router, 200, false, .kind = "room.get", .user = "u6", .room = legacy));
}

void
pl_persistence_test (bool verbose)
{
    //  The actor against a real MongoDB-compatible server: fake bridge and
    //  router sockets over inproc hand it work and read its answers
    if (verbose)
        printf (" * pl_persistence: ");
    const char *mongo_url = getenv ("PARLEY_TEST_MONGO_URL");
    if (!mongo_url) {
        fprintf (stderr, "pl_persistence_test needs PARLEY_TEST_MONGO_URL (bin/parley test sets it)\n");
        pl_check (false);
    }
    pl_config_t *config = pl_config_new_default ();
    char database [48];
    char random [17];
    pl_random_hex (random, 8);
    snprintf (database, sizeof database, "parley_persistence_%s", random);
    pl_config_set (config, "mongo-url", mongo_url);
    pl_config_set (config, "mongo-db", database);
    pl_config_set (config, "room-id-secret", "pl_persistence_test");
    pl_config_set (config, "router-endpoint", "inproc://pl_persistence_test-router");
    pl_config_set (config, "bridge-endpoint", "inproc://pl_persistence_test-bridge");
    pl_config_set (config, "store-user-queue-max", "100");
    pl_check (pl_config_finish (config) == 0);
    zsock_t *bridge = zsock_new_router ("inproc://pl_persistence_test-bridge");
    zsock_t *router = zsock_new_router ("inproc://pl_persistence_test-router");
    zsock_set_rcvtimeo (bridge, 10000);
    zsock_set_rcvtimeo (router, 10000);
    zactor_t *actor = zactor_new (pl_persistence_actor, config);

    //  The first HELLO says it (re)started
    pl_msg_t *hello = pl_msg_recv (bridge);
    pl_check (hello && pl_msg_command (hello) == PL_MSG_HELLO && pl_msg_first_hello (hello) == 1);
    pl_msg_destroy (&hello);

    //  Create a room through a QUERY: the RESULT goes back where it came from
    pl_msg_t *query = pl_msg_new (PL_MSG_QUERY);
    pl_msg_set_routing_id (query, "store-0");
    pl_msg_set_operation (query, "room.create");
    pl_msg_set_user (query, "u1");
    pl_msg_set_route (query, "conn-0");
    pl_msg_set_corr (query, 7);
    const char *request = "{\"kind\":\"direct\",\"members\":[\"u2\"]}";
    pl_msg_set_body (query, request, strlen (request));
    pl_msg_send (&query, router);
    pl_msg_t *result = pl_msg_recv_command (router, PL_MSG_RESULT);
    pl_check (result);
    pl_check (pl_msg_status (result) == 201 && pl_msg_corr (result) == 7);
    pl_check (streq (pl_msg_route (result), "conn-0"));
    json_t *room = json_loads (pl_msg_body (result), 0, NULL);
    char *room_id = strdup (json_string_value (json_object_get (room, "id")));
    json_decref (room);
    pl_msg_destroy (&result);

    s_test_persist (bridge, room_id);
    s_test_last_seqs (bridge, room_id);
    s_test_history (router, room_id);
    s_test_rooms (router, room_id);
    s_test_legacy_room (router, mongo_url, database);
    s_test_queues (router, &actor, room_id);
    pl_store_t *store = pl_store_new (mongo_url, database, "majority");
    pl_check (pl_store_count_messages (store, room_id) == 300);
    pl_store_destroy (&store);
    free (room_id);
    zsock_destroy (&bridge);
    zsock_destroy (&router);
    pl_config_destroy (&config);
    if (verbose)
        printf ("OK\n");
}
