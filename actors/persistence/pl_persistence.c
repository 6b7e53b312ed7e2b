/*  =========================================================================
    pl_persistence - the persistence actor: MongoDB writes and queries

    Glue between the envelope and the two halves below it: PERSIST entries
    from the bridge go to pl_store in bulk and come back as PERSISTED; a
    QUERY from the router is checked by pl_rooms (the rules), answered
    from pl_store (the data) and goes back as a RESULT. Sockets, receive
    loop, heartbeat and RESULT building are one function each.
    =========================================================================
*/
#include "pl_persistence.h"
#include "pl_rooms.h"
#include "pl_store.h"
#include "pl_msg.h"
#include "pl_drain.h"
#include "pl_reply.h"
#include "pl_sockets.h"
#include "pl_notify.h"
#include "pl_monitor.h"
#include "pl_log.h"
#include "pl_util.h"

#include <jansson.h>
#include <inttypes.h>

#define POLL_MS         200     //  longest wait: the heartbeat and retries run between

typedef struct {
    const pl_config_t *config;
    zsock_t *pipe;
    pl_store_t *store;          //  the data: MongoDB
    pl_rooms_t *rooms;          //  the rules: who may do what, the answers
    zsock_t *bridge;            //  DEALER: PERSIST in, PERSISTED out
    zsock_t *router;            //  DEALER: QUERY in, RESULT and ROOM_CHANGED out
    bool prepared;              //  indexes exist
    bool greeted;               //  first HELLO sent (it says: I restarted)
    pl_every_t heartbeat;       //  HELLO to bridge and router
    pl_every_t status;          //  status record to the monitor
    int64_t next_prepare;
    pl_msg_t **batch;           //  PERSIST messages of one batch, in order
    size_t batch_size;
    int64_t batch_since_ms;     //  when its first entry came
    pl_store_message_t *rows;   //  its messages: one bulk insert
    size_t row_count;
    pl_store_cursor_t *cursors; //  its READs: one bulk update
    size_t cursor_count;
    pl_monitor_t *monitor;      //  socket events and status for operators
    uint64_t stored;            //  entries confirmed
    uint64_t failed;            //  entries a bulk insert failed
    uint64_t not_member;        //  queries refused: not a member (issue 8)
    uint64_t rooms_quota;       //  creates and adds refused: max-rooms-per-user
    bool terminated;
    //  Queries wait in one queue per user and run in turns, so one user's
    //  flood (a resume storm) cannot starve the others' queries
    zhashx_t *queues;           //  user -> s_queue_t ("" for the router's own)
    zlistx_t *turns;            //  s_queue_t with work, the order of turns
    size_t queued;              //  queries in all queues
    uint64_t queries;           //  queries answered
    uint64_t queries_refused;   //  answered 503: queue full
    uint64_t queries_expired;   //  dropped: the requester gave up already
    uint64_t queries_stopped;   //  answered 503: the store was stopping
    uint64_t queries_slow;      //  took store-slow-query-ms or longer
} self_t;

//  One user's queued queries; arrival times say when the requester gave up
typedef struct {
    char *user;
    zlistx_t *queries;          //  pl_msg_t, oldest first
    zlistx_t *arrivals;         //  int64_t ms (as pointers), same order
} s_queue_t;

static void
s_queue_destroy (void **item_p)
{
    s_queue_t *queue = (s_queue_t *) *item_p;
    if (queue) {
        pl_msg_t *query;
        while ((query = (pl_msg_t *) zlistx_detach (queue->queries, NULL)))
            pl_msg_destroy (&query);
        zlistx_destroy (&queue->queries);
        zlistx_destroy (&queue->arrivals);
        free (queue->user);
        free (queue);
        *item_p = NULL;
    }
}

static self_t *
s_self_new (zsock_t *pipe, const pl_config_t *config)
{
    //  No key for direct room ids (pl_rooms_new logs why): no start
    pl_rooms_t *rooms = pl_rooms_new (config);
    if (!rooms)
        return NULL;
    pl_store_t *store = pl_store_new (config->mongo_url, config->mongo_db, config->write_concern);
    if (!store) {
        pl_rooms_destroy (&rooms);
        return NULL;
    }
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    assert (self);
    self->config = config;
    self->pipe = pipe;
    self->store = store;
    self->rooms = rooms;
    char identity [32];
    snprintf (identity, sizeof identity, "store-%d", config->instance);
    self->bridge = pl_dealer_socket_new (identity, config->bridge_endpoint, config->socket_hwm);
    self->monitor = pl_monitor_new (config, "store", config->instance);
    self->router = pl_dealer_socket_new (identity, config->router_endpoint, config->socket_hwm);
    if (self->monitor) {
        pl_monitor_watch (self->monitor, self->bridge, "bridge");
        pl_monitor_watch (self->monitor, self->router, "router");
    }
    self->batch = (pl_msg_t **) zmalloc (sizeof (pl_msg_t *) * (size_t) config->store_batch);
    self->rows = (pl_store_message_t *) zmalloc (sizeof (pl_store_message_t) * (size_t) config->store_batch);
    self->cursors = (pl_store_cursor_t *) zmalloc (sizeof (pl_store_cursor_t) * (size_t) config->store_batch);
    assert (self->batch && self->rows && self->cursors);
    pl_every_init (&self->heartbeat, config->peer_heartbeat_ms);
    pl_every_init (&self->status, config->status_interval_ms);
    self->queues = zhashx_new ();
    self->turns = zlistx_new ();
    assert (self->queues && self->turns);
    zhashx_set_destructor (self->queues, s_queue_destroy);
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
        pl_rooms_destroy (&self->rooms);
        zlistx_destroy (&self->turns);
        zhashx_destroy (&self->queues);
        free (self->batch);
        free (self->rows);
        free (self->cursors);
        free (self);
        *self_p = NULL;
    }
}


//  --------------------------------------------------------------------------
//  PERSIST from the bridge: per batch one bulk insert of its messages and
//  one bulk update of its read cursors, PERSISTED for each entry

//  Confirm one entry of a batch to the bridge
static void
s_self_confirm (self_t *self, pl_msg_t *entry, int result, const char *error)
{
    pl_msg_t *persisted = pl_msg_new (PL_MSG_PERSISTED);
    pl_msg_set_stream (persisted, pl_msg_stream (entry));
    pl_msg_set_entry_id (persisted, pl_msg_entry_id (entry));
    pl_msg_set_room (persisted, pl_msg_room (entry));
    pl_msg_set_seq (persisted, pl_msg_seq (entry));
    if (result == 0) {
        pl_msg_set_status (persisted, 200);
        self->stored++;
    }
    else {
        self->failed++;
        pl_msg_set_status (persisted, 500);
        pl_msg_set_body (persisted, error, strlen (error));
    }
    //  A confirmation the bridge does not get is harmless: it hands the
    //  entry out again and the duplicate insert counts as stored
    pl_msg_send (&persisted, self->bridge);
}

//  rooms.last_seq: the highest stored seq of each room asked for
static int
s_bridge_last_seqs (self_t *self, pl_msg_t *query, char **json_p)
{
    char **ids = NULL;
    size_t count = 0;
    int status = pl_rooms_ids_request (pl_msg_body (query), pl_msg_body_size (query),
                                       (size_t) self->config->seq_floor_batch, &ids, &count, json_p);
    int64_t *lasts = status == 0? (int64_t *) calloc (count, sizeof (int64_t)): NULL;
    if (status == 0)
        status = !lasts || pl_store_rooms_last_seq (self->store, ids, count, lasts)?
                 pl_rooms_unavailable (json_p): pl_rooms_last_seqs_answer (ids, lasts, count, json_p);
    free (lasts);
    pl_rooms_ids_free (&ids, count);
    return status;
}

typedef struct {
    json_t *found;              //  [{senderId, clientMsgId, seq}]
    int64_t after;
    int64_t since_ms;           //  older ones have no dedup key to restore
} s_cmids_t;

static int
s_cmids_add (const pl_room_message_t *message, void *arg)
{
    s_cmids_t *cmids = (s_cmids_t *) arg;
    if (message->seq > cmids->after && message->created_ms >= cmids->since_ms
    &&  message->client_msg_id && *message->client_msg_id && message->sender_id)
        json_array_append_new (cmids->found, json_pack ("{s:s, s:s, s:I}", "senderId", message->sender_id,
                               "clientMsgId", message->client_msg_id, "seq", (json_int_t) message->seq));
    return 0;
}

//  room.client_msg_ids {"after": C, "upTo": F}: the clientMsgIds of the
//  room's messages after C up to F (newest first, at most
//  dedup-restore-max, within dedup-ttl-s), whose dedup keys Redis lost with
//  its counter
static int
s_bridge_client_msg_ids (self_t *self, pl_msg_t *query, char **json_p)
{
    json_t *request = json_loadb (pl_msg_body (query), pl_msg_body_size (query), 0, NULL);
    json_int_t after = json_integer_value (json_object_get (request, "after"));
    json_int_t up_to = json_integer_value (json_object_get (request, "upTo"));
    json_decref (request);
    int status = pl_rooms_room_request (pl_msg_room (query), json_p);
    if (status)
        return status;
    if (after < 0 || up_to <= after) {
        json_t *none = json_array ();
        return pl_rooms_answer (json_p, 200, none);
    }
    s_cmids_t cmids = { json_array (), after, pl_clock_ms () - (int64_t) self->config->dedup_ttl_s * 1000 };
    int64_t span = up_to - after;
    int limit = span < self->config->dedup_restore_max? (int) span: self->config->dedup_restore_max;
    if (pl_store_messages_before (self->store, pl_msg_room (query), up_to + 1, limit, s_cmids_add, &cmids)) {
        json_decref (cmids.found);
        return pl_rooms_unavailable (json_p);
    }
    return pl_rooms_answer (json_p, 200, cmids.found);
}

//  The bridge's QUERYs, answered at once: rooms.last_seq (its seq counters
//  must never go below) and room.client_msg_ids (dedup keys to restore)
static void
s_self_bridge_query (self_t *self, pl_msg_t *query)
{
    char *json = NULL;
    int status = streq (pl_msg_operation (query), "rooms.last_seq")? s_bridge_last_seqs (self, query, &json):
                 streq (pl_msg_operation (query), "room.client_msg_ids")?
                 s_bridge_client_msg_ids (self, query, &json): pl_rooms_unknown_query (&json);
    pl_reply_send (self->bridge, query, (uint32_t) status, json);
    free (json);
}

//  One PERSIST from the bridge joins the batch, a QUERY is answered (a
//  pl_drain_fn).
static void
s_self_batch_add (void *actor, pl_msg_t **message_p)
{
    self_t *self = (self_t *) actor;
    pl_msg_t *message = *message_p;
    if (pl_msg_command (message) == PL_MSG_QUERY) {
        s_self_bridge_query (self, message);
        return;
    }
    if (pl_msg_command (message) != PL_MSG_PERSIST) {
        pl_log_warning ("unexpected %s from the bridge", pl_msg_command_name (pl_msg_command (message)));
        return;
    }
    size_t count = self->batch_size;
    assert (count < (size_t) self->config->store_batch);
    self->batch [count] = message;
    self->batch_size = count + 1;
    *message_p = NULL;
    if (streq (pl_msg_type (message), "READ")) {
        self->cursors [self->cursor_count++] = (pl_store_cursor_t) {
            .room_id = pl_msg_room (message),
            .user_id = pl_msg_user (message),
            .seq = (int64_t) pl_msg_seq (message)
        };
        return;
    }
    pl_store_message_t *row = &self->rows [self->row_count++];
    memset (row, 0, sizeof *row);
    row->message = (pl_room_message_t) {
        .room_id = pl_msg_room (message),
        .seq = (int64_t) pl_msg_seq (message),
        .type = pl_msg_type (message),
        .sender_id = pl_msg_user (message),
        .sender_name = pl_msg_sender_name (message),
        .content = pl_msg_body (message),
        .client_msg_id = pl_msg_cmid (message),
        .created_ms = pl_msg_created (message)
    };
}

//  Read PERSIST entries into the batch; store it in one bulk insert and
//  confirm each entry once it is full, once its first entry waited
//  store-linger-ms, or when flush says so. Returns how many were stored.
static int
s_self_persist_batch (self_t *self, bool flush)
{
    const pl_config_t *config = self->config;
    size_t before = self->batch_size;
    size_t room = (size_t) config->store_batch - before;
    if (room)
        pl_drain (self->bridge, (int) room, "bridge", s_self_batch_add, self);
    size_t count = self->batch_size;
    if (count == 0)
        return 0;
    if (before == 0)
        self->batch_since_ms = pl_mono_ms ();
    //  FerretDB spends 465 us on a document inserted alone and 55 in a
    //  batch of 50 or more (docs/bench/profile-2026-11-30.md): below
    //  store-batch, entries wait a little for company. Only the XACK
    //  waits; receipts and deliveries went out before.
    if (!flush && count < (size_t) config->store_batch
    &&  pl_mono_ms () - self->batch_since_ms < config->store_linger_ms)
        return 0;
    if (self->row_count && pl_store_insert_messages (self->store, self->rows, self->row_count))
        pl_log_warning ("bulk insert of %zu entries failed: %s", self->row_count, self->rows [0].error);
    if (self->cursor_count)
        pl_store_read_cursors (self->store, self->cursors, self->cursor_count);
    size_t row = 0, cursor = 0;
    for (size_t index = 0; index < count; index++) {
        if (streq (pl_msg_type (self->batch [index]), "READ")) {
            pl_store_cursor_t *done = &self->cursors [cursor++];
            s_self_confirm (self, self->batch [index], done->result, done->error);
        }
        else {
            pl_store_message_t *done = &self->rows [row++];
            s_self_confirm (self, self->batch [index], done->result, done->error);
        }
        pl_msg_destroy (&self->batch [index]);
    }
    self->batch_size = self->row_count = self->cursor_count = 0;
    return (int) count;
}

//  How long the loop may wait for input: POLL_MS, or what is left of the
//  batch's linger
static int
s_self_wait_ms (self_t *self)
{
    if (self->batch_size == 0)
        return POLL_MS;
    int64_t left = self->batch_since_ms + self->config->store_linger_ms - pl_mono_ms ();
    return left <= 0? 0: left < POLL_MS? (int) left: POLL_MS;
}


//  --------------------------------------------------------------------------
//  QUERY from the router: rules first (pl_rooms), then data (pl_store).
//  Each handler returns the HTTP status and sets *json_p.

//  Tell the router that a room's members changed, so every host reloads
//  them; change (NULL: none) is the user event it makes: ROOM_ADDED for
//  target (NULL: every member of the new room in room_json), ROOM_REMOVED
//  for target.
static void
s_self_room_changed (self_t *self, const char *room_id, const char *change, const char *target,
                     const char *room_json)
{
    if (!room_id || !*room_id)
        return;
    pl_msg_t *changed = pl_msg_new (PL_MSG_ROOM_CHANGED);
    pl_msg_set_room (changed, room_id);
    if (change) {
        pl_msg_set_type (changed, change);
        pl_msg_set_target_user (changed, target? target: "");
        if (room_json)
            pl_msg_set_body (changed, room_json, strlen (room_json));
    }
    pl_msg_send (&changed, self->router);
}

//  Load the room a query names, for a caller who must be a member.
//  Returns 0 with *room loaded, or a status with *json_p set.
static int
s_self_member_room (self_t *self, const char *caller, const char *room_id, pl_room_t *room, char **json_p)
{
    memset (room, 0, sizeof *room);
    int status = pl_rooms_room_request (room_id, json_p);
    if (status)
        return status;
    int found = pl_store_room_load (self->store, room_id, room);
    if (found == PL_STORE_FAILED)
        return pl_rooms_unavailable (json_p);
    status = pl_rooms_may_enter (found == PL_STORE_OK? room: NULL, room_id, caller, json_p);
    if (status == 403)
        self->not_member++;
    return status;
}

//  Answer with a room as it is now, with its last seq (after a change)
static int
s_self_room_answer (self_t *self, const char *room_id, int status, char **json_p)
{
    pl_room_t room;
    int found = pl_store_room_load (self->store, room_id, &room);
    if (found == PL_STORE_OK && pl_store_room_last_seq (self->store, &room) == 0)
        status = pl_rooms_room_answer (&room, status, json_p);
    else
    if (found == PL_STORE_MISSING)
        status = pl_rooms_room_answer (NULL, status, json_p);
    else
        status = pl_rooms_unavailable (json_p);
    pl_rooms_room_reset (&room);
    return status;
}

//  May user be in one more room (max-rooms-per-user)? 0, or the answer.
static int
s_self_quota (self_t *self, const char *user, char **json_p)
{
    int64_t held = 0;
    if (pl_store_rooms_count (self->store, user, &held))
        return pl_rooms_unavailable (json_p);
    return pl_rooms_may_join_another (self->rooms, user, held, json_p);
}

//  A create at the quota: a direct room of the pair that exists already is
//  no new room, so it is answered as it is (200) instead of refused.
static int
s_self_quota_for_create (self_t *self, const pl_room_t *room, const char *caller, char **json_p)
{
    int status = s_self_quota (self, caller, json_p);
    if (status == 429 && streq_safe (room->kind, "direct")) {
        pl_room_t existing;
        int found = pl_store_room_load (self->store, room->id, &existing);
        pl_rooms_room_reset (&existing);
        if (found == PL_STORE_OK) {
            free (*json_p);
            *json_p = NULL;
            status = s_self_room_answer (self, room->id, 200, json_p);
        }
    }
    if (status == 429)
        self->rooms_quota++;
    return status;
}

static int
s_query_room_members (self_t *self, pl_msg_t *query, char **json_p)
{
    pl_room_t room;
    int status = pl_rooms_room_request (pl_msg_room (query), json_p);
    if (status)
        return status;
    int found = pl_store_room_load (self->store, pl_msg_room (query), &room);
    if (found == PL_STORE_FAILED)
        return pl_rooms_unavailable (json_p);
    status = pl_rooms_members_answer (found == PL_STORE_OK? &room: NULL, json_p);
    pl_rooms_room_reset (&room);
    return status;
}

//  The router's member lists of many rooms at once (a connect storm asks
//  for thousands): one store query for up to member-load-batch rooms
static int
s_query_rooms_members (self_t *self, pl_msg_t *query, char **json_p)
{
    char **ids = NULL;
    size_t count = 0;
    int status = pl_rooms_ids_request (pl_msg_body (query), pl_msg_body_size (query),
                                       (size_t) self->config->member_load_batch, &ids, &count, json_p);
    if (status)
        return status;
    pl_room_t *rooms = NULL;
    size_t found = 0;
    status = pl_store_rooms_load (self->store, ids, count, &rooms, &found)?
             pl_rooms_unavailable (json_p): pl_rooms_members_many_answer (rooms, found, ids, count, json_p);
    pl_rooms_list_destroy (&rooms, count);
    pl_rooms_ids_free (&ids, count);
    return status;
}

//  A direct room of the pair stored under the id of before keyed ids
//  (pl_rooms_legacy_id): answered as it is, 200, with its id in *id_p.
//  0 when there is none (or the room is a group): create the new one.
static int
s_self_legacy_room (self_t *self, const pl_room_t *room, char **id_p, char **json_p)
{
    char legacy [40];
    if (pl_rooms_legacy_id (room, legacy, sizeof legacy))
        return 0;
    pl_room_t old;
    int found = pl_store_room_load (self->store, legacy, &old);
    pl_rooms_room_reset (&old);
    if (found == PL_STORE_FAILED)
        return pl_rooms_unavailable (json_p);
    if (found == PL_STORE_MISSING)
        return 0;
    *id_p = strdup (legacy);
    return *id_p? s_self_room_answer (self, legacy, 200, json_p): pl_rooms_unavailable (json_p);
}

static int
s_query_room_create (self_t *self, pl_msg_t *query, char **json_p)
{
    pl_room_t room;
    int status = pl_rooms_create_request (self->rooms, pl_msg_user (query), pl_msg_body (query),
                                          pl_msg_body_size (query), &room, json_p);
    if (status)
        return status;
    char *legacy_id = NULL;
    status = s_self_legacy_room (self, &room, &legacy_id, json_p);
    if (status || legacy_id) {
        if (status == 200)
            s_self_room_changed (self, legacy_id, NULL, NULL, NULL);
        free (legacy_id);
        pl_rooms_room_reset (&room);
        return status;
    }
    status = s_self_quota_for_create (self, &room, pl_msg_user (query), json_p);
    if (status) {
        pl_rooms_room_reset (&room);
        return status;
    }
    int inserted = pl_store_room_insert (self->store, &room);
    if (inserted == PL_STORE_OK)
        status = pl_rooms_room_answer (&room, 201, json_p);
    else
    if (inserted == PL_STORE_EXISTED)
        //  A direct room of this pair: as it was first made
        status = s_self_room_answer (self, room.id, 200, json_p);
    else
        status = pl_rooms_unavailable (json_p);
    if (status == 201)
        s_self_room_changed (self, room.id, "ROOM_ADDED", NULL, *json_p);
    else
    if (status == 200)
        s_self_room_changed (self, room.id, NULL, NULL, NULL);
    pl_rooms_room_reset (&room);
    return status;
}

static int
s_query_room_get (self_t *self, pl_msg_t *query, char **json_p)
{
    pl_room_t room;
    int status = s_self_member_room (self, pl_msg_user (query), pl_msg_room (query), &room, json_p);
    if (status == 0) {
        if (pl_store_room_read_seqs (self->store, &room) || pl_store_room_last_seq (self->store, &room))
            status = pl_rooms_unavailable (json_p);
        else
            status = pl_rooms_detail_answer (&room, json_p);
    }
    pl_rooms_room_reset (&room);
    return status;
}

static int
s_query_room_list (self_t *self, pl_msg_t *query, char **json_p)
{
    const char *caller = pl_msg_user (query);
    int status = pl_rooms_list_request (caller, json_p);
    if (status)
        return status;
    pl_room_t *rooms;
    size_t count;
    if (pl_store_rooms_of_user (self->store, caller, &rooms, &count))
        return pl_rooms_unavailable (json_p);
    int limit = (int) pl_msg_limit (query);
    if (limit <= 0 || limit > self->config->history_limit)
        limit = self->config->history_limit;
    status = pl_rooms_list_answer (rooms, count, pl_msg_room (query), (size_t) limit, json_p);
    pl_rooms_list_destroy (&rooms, count);
    return status;
}

//  The router's UNREAD counts of a user: in the rooms of the body (a JSON
//  array of room ids), or in every room of the user (no body)
static int
s_query_user_unread (self_t *self, pl_msg_t *query, char **json_p)
{
    const char *user = pl_msg_user (query);
    int status = pl_rooms_list_request (user, json_p);
    if (status)
        return status;
    pl_room_t *rooms = NULL;
    size_t count = 0;
    int rc;
    if (pl_msg_body_size (query) == 0)
        rc = pl_store_rooms_of_user (self->store, user, &rooms, &count);
    else {
        json_t *ids = json_loadb (pl_msg_body (query), pl_msg_body_size (query), 0, NULL);
        size_t id_count = json_is_array (ids)? json_array_size (ids): 0;
        const char **list = (const char **) calloc (id_count + 1, sizeof (char *));
        for (size_t index = 0; list && index < id_count; index++)
            list [index] = json_string_value (json_array_get (ids, index))?
                           json_string_value (json_array_get (ids, index)): "";
        rc = list? pl_store_rooms_of_user_in (self->store, user, list, id_count, &rooms, &count): -1;
        free (list);
        json_decref (ids);
    }
    if (rc)
        return pl_rooms_unavailable (json_p);
    status = pl_rooms_unread_answer (rooms, count, json_p);
    pl_rooms_list_destroy (&rooms, count);
    return status;
}

//  Collects a page of messages as the JSON array of the answer
static int
s_page_append (const pl_room_message_t *message, void *page)
{
    return json_array_append_new ((json_t *) page, pl_rooms_message_json (message));
}

//  History (newest first, seq < the query's seq; none: no bound) or resume
//  (oldest first, seq > the query's seq); the query's status asks a limit
static int
s_self_page (self_t *self, pl_msg_t *query, bool resume, char **json_p)
{
    const char *room_id = pl_msg_room (query);
    pl_room_t room;
    int status = s_self_member_room (self, pl_msg_user (query), room_id, &room, json_p);
    pl_rooms_room_reset (&room);
    if (status)
        return status;
    int limit = pl_rooms_page_limit (self->rooms, (int) pl_msg_limit (query));
    //  room.since pages forward from after, room.messages back from before
    int64_t bound = (int64_t) (resume? pl_msg_after (query): pl_msg_before (query));
    json_t *page = json_array ();
    int rc = resume? pl_store_messages_after (self->store, room_id, bound, limit, s_page_append, page)
                   : pl_store_messages_before (self->store, room_id, bound, limit, s_page_append, page);
    if (rc) {
        json_decref (page);
        return pl_rooms_unavailable (json_p);
    }
    return pl_rooms_answer (json_p, 200, page);
}

static int
s_query_room_messages (self_t *self, pl_msg_t *query, char **json_p)
{
    return s_self_page (self, query, false, json_p);
}

static int
s_query_room_since (self_t *self, pl_msg_t *query, char **json_p)
{
    return s_self_page (self, query, true, json_p);
}

static int
s_query_member_add (self_t *self, pl_msg_t *query, char **json_p)
{
    char user [PL_ID_MAX + 1];
    int status = pl_rooms_add_request (pl_msg_body (query), pl_msg_body_size (query), user, json_p);
    if (status)
        return status;
    pl_room_t room;
    status = s_self_member_room (self, pl_msg_user (query), pl_msg_room (query), &room, json_p);
    if (status == 0)
        status = pl_rooms_may_add (self->rooms, &room, user, json_p);
    if (status == 0) {
        status = s_self_quota (self, user, json_p);
        if (status == 429)
            self->rooms_quota++;
    }
    if (status == 200)
        //  A member already: the room as it is, nothing changes
        status = pl_store_room_last_seq (self->store, &room)? pl_rooms_unavailable (json_p)
                                                             : pl_rooms_room_answer (&room, 200, json_p);
    else
    if (status == 0) {
        status = pl_store_member_add (self->store, room.id, user)? pl_rooms_unavailable (json_p)
                                                                 : s_self_room_answer (self, room.id, 200, json_p);
        if (status == 200)
            s_self_room_changed (self, room.id, "ROOM_ADDED", user, *json_p);
    }
    pl_rooms_room_reset (&room);
    return status;
}

static int
s_query_member_remove (self_t *self, pl_msg_t *query, char **json_p)
{
    const char *user = pl_msg_target_user (query);
    int status = pl_rooms_remove_request (user, json_p);
    if (status)
        return status;
    pl_room_t room;
    status = s_self_member_room (self, pl_msg_user (query), pl_msg_room (query), &room, json_p);
    if (status == 0)
        status = pl_rooms_may_remove (&room, pl_msg_user (query), user, json_p);
    if (status == 0)
        status = pl_store_member_remove (self->store, room.id, user)? pl_rooms_unavailable (json_p)
                                                                    : s_self_room_answer (self, room.id, 200, json_p);
    if (status == 200 || status == 204)
        s_self_room_changed (self, room.id, "ROOM_REMOVED", user, NULL);
    pl_rooms_room_reset (&room);
    return status;
}

//  The kinds of QUERY (proto/SPEC.md) and their handlers
static const struct {
    const char *kind;
    int (*handler) (self_t *self, pl_msg_t *query, char **json_p);
} s_queries [] = {
    { "room.members",   s_query_room_members },
    { "rooms.members",  s_query_rooms_members },
    { "room.create",    s_query_room_create },
    { "room.get",       s_query_room_get },
    { "room.list",      s_query_room_list },
    { "room.messages",  s_query_room_messages },
    { "room.since",     s_query_room_since },
    { "member.add",     s_query_member_add },
    { "member.remove",  s_query_member_remove },
    { "user.unread",    s_query_user_unread },
};

static void s_self_heartbeat (self_t *self);

//  Answer a QUERY with a RESULT: its route, correlation and session, the
//  room it named, the status and the JSON body
static void
s_self_send_result (self_t *self, pl_msg_t *query, int status, const char *json)
{
    pl_reply_send (self->router, query, (uint32_t) status, json);
}

static void
s_self_handle_query (self_t *self, pl_msg_t *query)
{
    char *json = NULL;
    int status = -1;
    int64_t started = pl_mono_ms ();
    for (size_t index = 0; index < sizeof s_queries / sizeof s_queries [0]; index++)
        if (streq (pl_msg_operation (query), s_queries [index].kind)) {
            status = s_queries [index].handler (self, query, &json);
            break;
        }
    if (status == -1)
        status = pl_rooms_unknown_query (&json);
    //  One slow query holds up every batch behind it: operators should know
    int64_t took = pl_mono_ms () - started;
    if (took >= self->config->store_slow_query_ms) {
        self->queries_slow++;
        pl_log_warning ("slow query: %s of room %s by %s took %" PRId64 " ms", pl_msg_operation (query),
                        pl_msg_room (query), pl_msg_user (query), took);
    }
    s_self_send_result (self, query, status, json);
    free (json);
}

//  --------------------------------------------------------------------------
//  The query queues: one per user, served in turns, bounded in size, and
//  in time per turn so the heartbeat and $TERM never wait behind them

//  Answer a query without running it (queue full, stopping)
static void
s_self_refuse (self_t *self, pl_msg_t *query, const char *error)
{
    char json [160];
    snprintf (json, sizeof json, "{\"error\":\"%s\"}", error);
    s_self_send_result (self, query, 503, json);
}

//  One message from the router joins its user's queue (a pl_drain_fn)
static void
s_self_handle_router_message (void *actor, pl_msg_t **message_p)
{
    self_t *self = (self_t *) actor;
    if (pl_msg_command (*message_p) != PL_MSG_QUERY) {
        pl_log_warning ("unexpected %s from the router", pl_msg_command_name (pl_msg_command (*message_p)));
        return;
    }
    const char *user = pl_msg_user (*message_p);
    s_queue_t *queue = (s_queue_t *) zhashx_lookup (self->queues, user);
    size_t waiting = queue? zlistx_size (queue->queries): 0;
    if (self->queued >= (size_t) self->config->store_queue_max
    ||  waiting >= (size_t) self->config->store_user_queue_max) {
        self->queries_refused++;
        s_self_refuse (self, *message_p, self->queued >= (size_t) self->config->store_queue_max
                       ? "persistence busy (store-queue-max), try again"
                       : "too many queries of this user queued (store-user-queue-max), try again");
        return;
    }
    if (!queue) {
        queue = (s_queue_t *) zmalloc (sizeof (s_queue_t));
        assert (queue);
        queue->user = strdup (user);
        queue->queries = zlistx_new ();
        queue->arrivals = zlistx_new ();
        assert (queue->user && queue->queries && queue->arrivals);
        zhashx_insert (self->queues, user, queue);
    }
    if (waiting == 0)
        zlistx_add_end (self->turns, queue);
    zlistx_add_end (queue->queries, *message_p);
    zlistx_add_end (queue->arrivals, (void *) (intptr_t) pl_mono_ms ());
    self->queued++;
    *message_p = NULL;
}

//  Take the next query in turn: the first of the next user's queue; that
//  user goes to the end of the turns, or leaves them when done. Sets
//  *arrived. Returns NULL when nothing waits.
static pl_msg_t *
s_self_next_query (self_t *self, int64_t *arrived)
{
    s_queue_t *queue = (s_queue_t *) zlistx_first (self->turns);
    if (!queue)
        return NULL;
    pl_msg_t *query = (pl_msg_t *) zlistx_detach (queue->queries, NULL);
    *arrived = (int64_t) (intptr_t) zlistx_detach (queue->arrivals, NULL);
    self->queued--;
    zlistx_detach (self->turns, NULL);
    if (zlistx_size (queue->queries))
        zlistx_add_end (self->turns, queue);
    else
        zhashx_delete (self->queues, queue->user);
    return query;
}

//  Run queued queries in turns until none wait or until is reached. A
//  query its requester gave up on (request-timeout-ms) is dropped: its
//  RESULT would be. When stopping, every one is answered 503 instead.
static void
s_self_run_queries (self_t *self, int64_t until, bool stopping)
{
    int64_t arrived;
    pl_msg_t *query;
    while ((stopping || pl_mono_ms () < until) && (query = s_self_next_query (self, &arrived))) {
        if (pl_mono_ms () - arrived >= self->config->request_timeout_ms)
            self->queries_expired++;
        else
        if (stopping) {
            self->queries_stopped++;
            s_self_refuse (self, query, "stopping, try again");
        }
        else {
            s_self_handle_query (self, query);
            self->queries++;
            //  HELLO is due every peer-heartbeat-ms, whatever the work
            s_self_heartbeat (self);
        }
        pl_msg_destroy (&query);
    }
}

//  Read what the router sent into the queues; true when more may wait
static bool
s_self_take_queries (self_t *self)
{
    int budget = self->config->drain_budget;
    return pl_drain (self->router, budget, "router", s_self_handle_router_message, self) == budget;
}


//  --------------------------------------------------------------------------
//  Plumbing: readiness, heartbeat, status, the receive loop

//  Until MongoDB answered and the indexes exist, try again every
//  store-prepare-retry-ms
static void
s_self_prepare (self_t *self)
{
    if (self->prepared || pl_mono_ms () < self->next_prepare)
        return;
    self->prepared = pl_store_prepare (self->store) == 0;
    if (self->prepared) {
        pl_log_info ("MongoDB ready at %s, database %s", self->config->mongo_url, self->config->mongo_db);
        pl_notify_ready ("MongoDB reachable, indexes in place");
    }
    else
        pl_log_warning ("MongoDB at %s not ready, retrying", self->config->mongo_url);
    self->next_prepare = pl_mono_ms () + self->config->store_prepare_retry_ms;
}

//  HELLO to bridge and router every peer-heartbeat-ms; the first one says
//  this store (re)started. Only once indexes exist: the unique index is
//  what makes a redelivered entry a harmless duplicate.
static void
s_self_heartbeat (self_t *self)
{
    if (!self->prepared || !pl_every_due (&self->heartbeat, pl_mono_ms ()))
        return;
    zsock_t *peers [] = { self->bridge, self->router };
    for (int index = 0; index < 2; index++) {
        pl_msg_t *hello = pl_msg_new (PL_MSG_HELLO);
        pl_msg_set_role (hello, "store");
        pl_msg_set_actor_name (hello, self->config->host_id);
        pl_msg_set_first_hello (hello, self->greeted? 0: 1);
        pl_msg_send (&hello, peers [index]);
    }
    self->greeted = true;
}

//  Figures for operators (monitor socket, systemd STATUS)
static void
s_self_report (self_t *self)
{
    if (!pl_every_due (&self->status, pl_mono_ms ()))
        return;
    pl_monitor_report (self->monitor, json_pack ("{s:I, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "stored", (json_int_t) self->stored, "failed", (json_int_t) self->failed,
        "mongodb_ready", self->prepared,
        "queries", (json_int_t) self->queries,
        "queries_queued", (json_int_t) self->queued,
        "queries_refused", (json_int_t) self->queries_refused,
        "queries_expired", (json_int_t) self->queries_expired,
        "queries_stopped", (json_int_t) self->queries_stopped,
        "queries_slow", (json_int_t) self->queries_slow,
        "not_member_refused", (json_int_t) self->not_member,
        "rooms_quota_refused", (json_int_t) self->rooms_quota));
}

//  $TERM: what the router sent and what is queued gets 503 "stopping", at
//  once, so the requesters try again elsewhere and the stop is quick
static void
s_self_stop (self_t *self)
{
    //  What lingers is stored now; without MongoDB it is dropped, and the
    //  bridge hands it out again (nothing confirmed, nothing acked)
    if (self->prepared)
        s_self_persist_batch (self, true);
    for (size_t index = 0; index < self->batch_size; index++)
        pl_msg_destroy (&self->batch [index]);
    self->batch_size = self->row_count = self->cursor_count = 0;
    pl_drain (self->router, 0, "router", s_self_handle_router_message, self);
    s_self_run_queries (self, 0, true);
    pl_log_info ("stopped: %" PRIu64 " queries answered 'stopping'", self->queries_stopped);
}

//  Poll pipe, bridge and router until $TERM. Each turn runs the timers,
//  stores one batch, then runs queued queries for up to store-turn-ms;
//  while work is left the next turn starts at once.
static void
s_self_receive_loop (self_t *self)
{
    zpoller_t *poller = zpoller_new (self->pipe, self->bridge, self->router, NULL);
    //  Signals are the main thread's business: it sends $TERM, and the
    //  actor drains and stops only then
    zpoller_set_nonstop (poller, true);
    bool busy = false;
    while (!self->terminated) {
        zsock_t *which = (zsock_t *) zpoller_wait (poller, busy? 0: s_self_wait_ms (self));
        if (which == self->pipe || zsock_events (self->pipe) & ZMQ_POLLIN) {
            char *command = zstr_recv (self->pipe);
            if (!command || streq (command, "$TERM"))
                self->terminated = true;
            zstr_free (&command);
            if (self->terminated)
                break;
        }
        s_self_prepare (self);
        s_self_heartbeat (self);
        pl_notify_watchdog ();
        s_self_report (self);
        busy = false;
        if (self->prepared)
            busy = s_self_persist_batch (self, false) == self->config->store_batch;
        busy |= s_self_take_queries (self);
        s_self_run_queries (self, pl_mono_ms () + self->config->store_turn_ms, false);
        busy |= self->queued > 0;
    }
    s_self_stop (self);
    zpoller_destroy (&poller);
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
    s_self_receive_loop (self);
    s_self_destroy (&self);
}
