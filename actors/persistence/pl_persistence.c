/*  =========================================================================
    pl_persistence - the persistence actor: MongoDB writes and queries
    =========================================================================
*/
#include "pl_persistence.h"
#include "pl_store.h"
#include "pl_msg.h"
#include "pl_sockets.h"
#include "pl_notify.h"
#include "pl_monitor.h"
#include "pl_log.h"
#include "pl_util.h"

#include <jansson.h>

#define HEARTBEAT_MS    1000
#define PREPARE_RETRY_MS 1000

typedef struct {
    const pl_config_t *config;
    zsock_t *pipe;
    pl_store_t *store;
    zsock_t *bridge;            //  DEALER: PERSIST in, PERSISTED out
    zsock_t *router;            //  DEALER: QUERY in, RESULT and ROOM_CHANGED out
    bool prepared;              //  indexes exist
    bool greeted;               //  first HELLO sent (it says: I restarted)
    int64_t next_hello;
    int64_t next_prepare;
    pl_msg_t **batch;           //  PERSIST messages of one bulk insert
    pl_store_message_t *rows;
    pl_monitor_t *monitor;      //  socket events and status for operators
    int64_t last_status;
    uint64_t stored;            //  entries confirmed
    uint64_t failed;            //  entries a bulk insert failed
    bool terminated;
} self_t;

static self_t *
s_self_new (zsock_t *pipe, const pl_config_t *config)
{
    pl_store_t *store = pl_store_new (config->mongo_url, config->mongo_db, config->write_concern);
    if (!store)
        return NULL;
    pl_store_set_max_members (store, config->max_room_members);
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    assert (self);
    self->config = config;
    self->pipe = pipe;
    self->store = store;
    char identity [32];
    snprintf (identity, sizeof identity, "store-%d", config->instance);
    self->bridge = pl_dealer_socket_new (identity, config->bridge_endpoint);
    self->monitor = pl_monitor_new (config, "store", config->instance);
    self->router = pl_dealer_socket_new (identity, config->router_endpoint);
    if (self->monitor) {
        pl_monitor_watch (self->monitor, self->bridge, "bridge");
        pl_monitor_watch (self->monitor, self->router, "router");
    }
    self->batch = (pl_msg_t **) zmalloc (sizeof (pl_msg_t *) * (size_t) config->store_batch);
    self->rows = (pl_store_message_t *) zmalloc (sizeof (pl_store_message_t) * (size_t) config->store_batch);
    assert (self->batch && self->rows);
    return self;
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (self) {
        zsock_destroy (&self->bridge);
        zsock_destroy (&self->router);
        pl_monitor_destroy (&self->monitor);
        pl_store_destroy (&self->store);
        free (self->batch);
        free (self->rows);
        free (self);
        *self_p = NULL;
    }
}

//  Read up to one batch of PERSIST entries, store them in one bulk insert
//  and confirm each. Returns how many were read.
static int
s_self_persist_batch (self_t *self)
{
    size_t count = 0;
    while (count < (size_t) self->config->store_batch) {
        bool malformed = false;
        pl_msg_t *message = pl_msg_recv_nowait (self->bridge, &malformed);
        if (!message) {
            if (malformed)
                continue;
            break;
        }
        if (pl_msg_command (message) != PL_MSG_PERSIST) {
            pl_log_warning ("unexpected %s from the bridge", pl_msg_command_name (pl_msg_command (message)));
            pl_msg_destroy (&message);
            continue;
        }
        pl_store_message_t *row = &self->rows [count];
        memset (row, 0, sizeof *row);
        row->room_id = pl_msg_room (message);
        row->seq = (int64_t) pl_msg_seq (message);
        row->type = pl_msg_kind (message);
        row->sender_id = pl_msg_user (message);
        row->sender_name = pl_msg_name (message);
        row->content = pl_msg_body (message);
        row->client_msg_id = pl_msg_cmid (message);
        row->created_ms = pl_msg_created (message);
        self->batch [count++] = message;
    }
    if (count == 0)
        return 0;
    if (pl_store_insert_messages (self->store, self->rows, count))
        pl_log_warning ("bulk insert of %zu entries failed: %s", count, self->rows [0].error);
    for (size_t index = 0; index < count; index++) {
        pl_msg_t *persisted = pl_msg_new (PL_MSG_PERSISTED);
        pl_msg_set_key (persisted, pl_msg_key (self->batch [index]));
        pl_msg_set_id (persisted, pl_msg_id (self->batch [index]));
        pl_msg_set_room (persisted, pl_msg_room (self->batch [index]));
        pl_msg_set_seq (persisted, pl_msg_seq (self->batch [index]));
        if (self->rows [index].result == 0) {
            pl_msg_set_status (persisted, 200);
            self->stored++;
        }
        else {
            self->failed++;
            pl_msg_set_status (persisted, 500);
            pl_msg_set_body (persisted, self->rows [index].error, strlen (self->rows [index].error));
        }
        //  A confirmation the bridge does not get is harmless: it hands the
        //  entry out again and the duplicate insert counts as stored
        pl_msg_send (&persisted, self->bridge);
        pl_msg_destroy (&self->batch [index]);
    }
    return (int) count;
}

//  Tell the router that a room's members changed, so it reloads them.
static void
s_self_room_changed (self_t *self, const char *room_id)
{
    if (!room_id || !*room_id)
        return;
    pl_msg_t *changed = pl_msg_new (PL_MSG_ROOM_CHANGED);
    pl_msg_set_room (changed, room_id);
    pl_msg_send (&changed, self->router);
}

//  The room id of a JSON room answer.
static void
s_self_room_changed_json (self_t *self, const char *json)
{
    json_t *room = json_loads (json, 0, NULL);
    s_self_room_changed (self, json_string_value (json_object_get (room, "id")));
    json_decref (room);
}

static void
s_self_handle_query (self_t *self, pl_msg_t *query)
{
    const char *kind = pl_msg_kind (query);
    const char *caller = pl_msg_user (query);
    const char *room_id = pl_msg_room (query);
    char *json = NULL;
    int status;
    if (streq (kind, "room.members"))
        status = pl_store_room_members (self->store, room_id, &json);
    else
    if (streq (kind, "room.create")) {
        status = pl_store_room_create (self->store, caller, pl_msg_body (query), pl_msg_body_size (query),
                                       self->config->max_room_members, &json);
        if (status == 200 || status == 201)
            s_self_room_changed_json (self, json);
    }
    else
    if (streq (kind, "room.get"))
        status = pl_store_room_get (self->store, caller, room_id, &json);
    else
    if (streq (kind, "room.list"))
        status = pl_store_rooms_of_user (self->store, caller, &json);
    else
    if (streq (kind, "room.messages")) {
        int limit = (int) pl_msg_status (query);
        if (limit <= 0 || limit > self->config->history_limit)
            limit = self->config->history_limit;
        status = pl_store_room_messages (self->store, caller, room_id, (int64_t) pl_msg_seq (query),
                                         limit, &json);
    }
    else
    if (streq (kind, "room.since")) {
        int limit = (int) pl_msg_status (query);
        if (limit <= 0 || limit > self->config->history_limit)
            limit = self->config->history_limit;
        status = pl_store_room_since (self->store, caller, room_id, (int64_t) pl_msg_seq (query),
                                      limit, &json);
    }
    else
    if (streq (kind, "member.add")) {
        status = pl_store_member_add (self->store, caller, room_id, pl_msg_body (query),
                                      pl_msg_body_size (query), &json);
        if (status == 200 || status == 201)
            s_self_room_changed (self, room_id);
    }
    else
    if (streq (kind, "member.remove")) {
        status = pl_store_member_remove (self->store, caller, room_id, pl_msg_sub (query), &json);
        if (status == 200 || status == 204)
            s_self_room_changed (self, room_id);
    }
    else {
        status = 400;
        json = strdup ("{\"error\":\"unknown query\"}");
    }
    pl_msg_t *result = pl_msg_new (PL_MSG_RESULT);
    pl_msg_set_route (result, pl_msg_route (query));
    pl_msg_set_corr (result, pl_msg_corr (query));
    pl_msg_set_session (result, pl_msg_session (query));
    pl_msg_set_room (result, room_id);
    pl_msg_set_status (result, (uint32_t) status);
    if (json)
        pl_msg_set_body (result, json, strlen (json));
    free (json);
    pl_msg_send (&result, self->router);
}

static void
s_self_handle_router (self_t *self)
{
    for (int budget = 1000; budget > 0; budget--) {
        bool malformed = false;
        pl_msg_t *message = pl_msg_recv_nowait (self->router, &malformed);
        if (!message) {
            if (malformed)
                continue;
            break;
        }
        if (pl_msg_command (message) == PL_MSG_QUERY)
            s_self_handle_query (self, message);
        else
            pl_log_warning ("unexpected %s from the router", pl_msg_command_name (pl_msg_command (message)));
        pl_msg_destroy (&message);
    }
}

static void
s_self_handle_tick (self_t *self)
{
    int64_t now = pl_mono_ms ();
    if (!self->prepared && now >= self->next_prepare) {
        self->prepared = pl_store_prepare (self->store) == 0;
        if (self->prepared) {
            pl_log_info ("MongoDB ready at %s, database %s", self->config->mongo_url, self->config->mongo_db);
            pl_notify_ready ("MongoDB reachable, indexes in place");
        }
        else
            pl_log_warning ("MongoDB at %s not ready, retrying", self->config->mongo_url);
        self->next_prepare = pl_mono_ms () + PREPARE_RETRY_MS;
    }
    //  Offer work only once indexes exist: the unique index is what makes a
    //  redelivered entry a harmless duplicate
    if (self->prepared && now >= self->next_hello) {
        zsock_t *peers [] = { self->bridge, self->router };
        for (int index = 0; index < 2; index++) {
            pl_msg_t *hello = pl_msg_new (PL_MSG_HELLO);
            pl_msg_set_kind (hello, "store");
            pl_msg_set_name (hello, self->config->host_id);
            pl_msg_set_status (hello, self->greeted? 0: 1);
            pl_msg_send (&hello, peers [index]);
        }
        self->greeted = true;
        self->next_hello = now + HEARTBEAT_MS;
    }
}

void
pl_persistence_actor (zsock_t *pipe, void *args)
{
    const pl_config_t *config = (const pl_config_t *) args;
    char name [32];
    snprintf (name, sizeof name, "store-%d", config->instance);
    pl_log_set_actor (name);
    self_t *self = s_self_new (pipe, config);
    if (!self) {
        zsock_signal (pipe, 1);
        return;
    }
    zsock_signal (pipe, 0);
    pl_log_info ("store-%d: bridge at %s, router at %s", config->instance,
                 config->bridge_endpoint, config->router_endpoint);
    zpoller_t *poller = zpoller_new (pipe, self->bridge, self->router, NULL);
    //  Signals are the main thread's business: it sends $TERM, and the
    //  actor drains and stops only then
    zpoller_set_nonstop (poller, true);
    while (!self->terminated) {
        zsock_t *which = (zsock_t *) zpoller_wait (poller, 200);
        if (which == pipe) {
            char *command = zstr_recv (pipe);
            if (!command || streq (command, "$TERM"))
                self->terminated = true;
            zstr_free (&command);
        }
        s_self_handle_tick (self);
        pl_notify_watchdog ();
        if (pl_mono_ms () - self->last_status >= 1000) {
            self->last_status = pl_mono_ms ();
            pl_monitor_report (self->monitor, json_pack ("{s:I, s:I, s:b}",
                "stored", (json_int_t) self->stored, "failed", (json_int_t) self->failed,
                "mongodb_ready", self->prepared));
        }
        if (self->prepared)
            while (s_self_persist_batch (self) == self->config->store_batch)
                s_self_handle_router (self);
        s_self_handle_router (self);
    }
    zpoller_destroy (&poller);
    s_self_destroy (&self);
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
        assert (false);
    }
    pl_config_t *config = pl_config_new_default ();
    char database [48];
    char random [17];
    pl_random_hex (random, 8);
    snprintf (database, sizeof database, "parley_persistence_%s", random);
    pl_config_set (config, "mongo-url", mongo_url);
    pl_config_set (config, "mongo-db", database);
    pl_config_set (config, "router-endpoint", "inproc://pl_persistence_test-router");
    pl_config_set (config, "bridge-endpoint", "inproc://pl_persistence_test-bridge");
    assert (pl_config_finish (config) == 0);
    zsock_t *bridge = zsock_new_router ("inproc://pl_persistence_test-bridge");
    zsock_t *router = zsock_new_router ("inproc://pl_persistence_test-router");
    zsock_set_rcvtimeo (bridge, 10000);
    zsock_set_rcvtimeo (router, 10000);
    zactor_t *actor = zactor_new (pl_persistence_actor, config);

    //  The first HELLO says it (re)started
    pl_msg_t *hello = pl_msg_recv (bridge);
    assert (hello && pl_msg_command (hello) == PL_MSG_HELLO && pl_msg_status (hello) == 1);
    pl_msg_destroy (&hello);

    //  Create a room through a QUERY, then persist 300 entries twice
    pl_msg_t *query = pl_msg_new (PL_MSG_QUERY);
    pl_msg_set_routing_id (query, "store-0");
    pl_msg_set_kind (query, "room.create");
    pl_msg_set_user (query, "u1");
    pl_msg_set_route (query, "conn-0");
    pl_msg_set_corr (query, 7);
    const char *request = "{\"kind\":\"direct\",\"members\":[\"u2\"]}";
    pl_msg_set_body (query, request, strlen (request));
    pl_msg_send (&query, router);
    pl_msg_t *result = pl_msg_recv_command (router, PL_MSG_RESULT);
    assert (result);
    assert (pl_msg_status (result) == 201 && pl_msg_corr (result) == 7);
    assert (streq (pl_msg_route (result), "conn-0"));
    json_t *room = json_loads (pl_msg_body (result), 0, NULL);
    char *room_id = strdup (json_string_value (json_object_get (room, "id")));
    json_decref (room);
    pl_msg_destroy (&result);

    for (int round = 0; round < 2; round++)
        for (int seq = 1; seq <= 300; seq++) {
            pl_msg_t *persist = pl_msg_new (PL_MSG_PERSIST);
            pl_msg_set_routing_id (persist, "store-0");
            pl_msg_set_key (persist, "s");
            char entry_id [32];
            snprintf (entry_id, sizeof entry_id, "%d-0", seq);
            pl_msg_set_id (persist, entry_id);
            pl_msg_set_room (persist, room_id);
            pl_msg_set_seq (persist, (uint64_t) seq);
            pl_msg_set_kind (persist, "TALK");
            pl_msg_set_user (persist, "u1");
            pl_msg_set_name (persist, "Alice");
            pl_msg_set_body (persist, "hello", 5);
            pl_msg_set_created (persist, pl_clock_ms ());
            pl_msg_send (&persist, bridge);
        }
    int confirmed = 0;
    while (confirmed < 600) {
        pl_msg_t *message = pl_msg_recv (bridge);
        assert (message);
        if (pl_msg_command (message) == PL_MSG_PERSISTED) {
            assert (pl_msg_status (message) == 200);
            confirmed++;
        }
        pl_msg_destroy (&message);
    }
    //  History through the router side
    query = pl_msg_new (PL_MSG_QUERY);
    pl_msg_set_routing_id (query, "store-0");
    pl_msg_set_kind (query, "room.messages");
    pl_msg_set_user (query, "u2");
    pl_msg_set_room (query, room_id);
    pl_msg_set_status (query, 1000);
    pl_msg_send (&query, router);
    result = pl_msg_recv_command (router, PL_MSG_RESULT);
    assert (result);
    assert (pl_msg_status (result) == 200);
    json_t *history = json_loads (pl_msg_body (result), 0, NULL);
    //  Capped by history-limit (default 200), newest first
    assert (json_array_size (history) == 200);
    assert (json_integer_value (json_object_get (json_array_get (history, 0), "seq")) == 300);
    json_decref (history);
    pl_msg_destroy (&result);

    zactor_destroy (&actor);
    pl_store_t *store = pl_store_new (mongo_url, database, "majority");
    assert (pl_store_count_messages (store, room_id) == 300);
    pl_store_destroy (&store);
    free (room_id);
    zsock_destroy (&bridge);
    zsock_destroy (&router);
    pl_config_destroy (&config);
    if (verbose)
        printf ("OK\n");
}
