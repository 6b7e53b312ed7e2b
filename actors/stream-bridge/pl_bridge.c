/*  =========================================================================
    pl_bridge - the stream-bridge actor of one host
    =========================================================================
*/
#include "pl_bridge.h"
#include "pl_streams.h"
#include "pl_floors.h"
#include "pl_msg.h"
#include "pl_drain.h"
#include "pl_reply.h"
#include "pl_peers.h"
#include "pl_sockets.h"
#include "pl_notify.h"
#include "pl_monitor.h"
#include "pl_histogram.h"
#include "pl_log.h"
#include "pl_util.h"

#include <jansson.h>

//  Deadlines and silent stores are checked this often (not a limit)
#define TICK_MS         100

//  A persistence actor is a pl_peer_t; its outstanding count is the entries
//  handed to it and not yet confirmed.
typedef struct {
    char *key;                  //  "<stream>/<entry id>"
    pl_msg_t *persist;          //  the PERSIST message
    pl_peer_t *store;           //  where it went, NULL while queued
    pl_peer_t *slow;            //  a store that missed the deadline and still
                                //  holds a copy: its count stays until the end
    int64_t deadline;           //  hand to another store after this
    int64_t not_before;         //  retry pause after a failure
    int attempts;               //  stores that failed it
} work_t;

typedef struct _self_t self_t;

typedef struct {
    self_t *self;
    pl_msg_t *request;          //  the SEND, kept to answer it (routing id included)
    int64_t floor;              //  the room's highest stored seq, or PL_SEQ_FLOOR_CHECK
    uint64_t generation;        //  of the Redis layer when it was sent
    int64_t deadline;           //  while its dedup keys are restored
} append_t;

struct _self_t {
    const pl_config_t *config;
    zsock_t *pipe;
    zsock_t *frontend;          //  ROUTER: room-router and persistence actors
    pl_streams_t *streams;
    char *router;               //  routing id of this host's room-router
    pl_peers_t *stores;         //  persistence actors
    zhashx_t *work;             //  key -> work_t, every entry not yet acked
    zlistx_t *queue;            //  work_t waiting for a store (not owned)
    size_t appends;             //  appends in flight
    pl_monitor_t *monitor;      //  socket events and status for operators
    pl_every_t status;          //  status record cadence
    pl_every_t tick;            //  deadlines, silent stores
    pl_histogram_t persist_lag; //  createdAt to MongoDB's confirmation, ms
    zlistx_t *held;             //  SENDs held until their room's shard is ready
    zhashx_t *held_rooms;       //  room -> SENDs of it in held (as a pointer)
    zlistx_t *held_replays;     //  REPLAYs (replay_t) waiting for their room's shard
    pl_floors_t *floors;        //  rooms' seq counters checked against MongoDB
    zhashx_t *restores;         //  corr -> append_t whose dedup keys come back
    uint64_t next_corr;         //  of our own QUERYs to stores
    bool terminated;
};

static void
s_work_destroy (void **item_p)
{
    work_t *work = (work_t *) *item_p;
    if (work) {
        free (work->key);
        pl_msg_destroy (&work->persist);
        free (work);
        *item_p = NULL;
    }
}

static void
s_msg_destroy (void **item_p)
{
    pl_msg_destroy ((pl_msg_t **) item_p);
}

static void s_on_fanout (void *arg, const pl_entry_t *entry);
static void s_floor_release (void *arg, void *item, int64_t floor);
static void s_replays_destroy (zlistx_t **replays_p);
static void s_restore_fail (void **item_p);
static void s_self_append (self_t *self, pl_msg_t *request, int64_t floor, bool restored);
static void s_on_persist (void *arg, const pl_entry_t *entry);
static void s_on_broadcast (void *arg, const char *payload, size_t size);

static self_t *
s_self_new (zsock_t *pipe, const pl_config_t *config)
{
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    assert (self);
    self->config = config;
    self->pipe = pipe;
    self->frontend = pl_router_socket_new (config->bridge_endpoint, config->socket_hwm);
    if (!self->frontend) {
        free (self);
        return NULL;
    }
    self->streams = pl_streams_new (config, s_on_fanout, s_on_persist, self);
    if (!self->streams) {
        zsock_destroy (&self->frontend);
        free (self);
        return NULL;
    }
    self->monitor = pl_monitor_new (config, "bridge", 0);
    if (self->monitor)
        pl_monitor_watch (self->monitor, self->frontend, "peers");
    //  Fan-out waits for the router's first HELLO
    pl_streams_fanout_hold (self->streams, true);
    pl_streams_set_broadcast_handler (self->streams, s_on_broadcast, self);
    self->stores = pl_peers_new (config->peer_timeout_ms, NULL);
    pl_every_init (&self->status, config->status_interval_ms);
    pl_every_init (&self->tick, TICK_MS);
    self->work = zhashx_new ();
    zhashx_set_destructor (self->work, s_work_destroy);
    self->queue = zlistx_new ();
    self->held = zlistx_new ();
    zlistx_set_destructor (self->held, s_msg_destroy);
    self->held_rooms = zhashx_new ();
    self->held_replays = zlistx_new ();
    self->floors = pl_floors_new ((size_t) config->seq_floor_batch, config->request_timeout_ms / 2,
                                  s_floor_release, self);
    self->restores = zhashx_new ();
    return self;
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (self) {
        //  Entries not yet confirmed stay pending in the persist group and
        //  are read again at the next start: nothing to do for them here.
        //  SENDs waiting for their room's check are answered 503.
        pl_floors_destroy (&self->floors);
        for (append_t *append = (append_t *) zhashx_first (self->restores); append;
             append = (append_t *) zhashx_next (self->restores))
            s_restore_fail ((void **) &append);
        zhashx_destroy (&self->restores);
        pl_streams_destroy (&self->streams);
        zlistx_destroy (&self->queue);
        zlistx_destroy (&self->held);
        zhashx_destroy (&self->held_rooms);
        s_replays_destroy (&self->held_replays);
        zhashx_destroy (&self->work);
        pl_peers_destroy (&self->stores);
        zsock_destroy (&self->frontend);
        pl_monitor_destroy (&self->monitor);
        free (self->router);
        free (self);
        *self_p = NULL;
    }
}

char *
pl_bridge_render (const char *room_id, int64_t seq, const char *type,
                  const char *sender_id, const char *sender_name,
                  const char *content, const char *client_msg_id, int64_t created_ms)
{
    char created [32];
    pl_iso8601 (created_ms, created, sizeof created);
    json_t *object = json_pack ("{s:s, s:I, s:s, s:s, s:s, s:s}",
                                "roomId", room_id, "seq", (json_int_t) seq, "type", type,
                                "senderId", sender_id, "senderName", sender_name,
                                "content", content);
    if (!object)
        return NULL;            //  not UTF-8: the connection actor let it through?
    if (client_msg_id && *client_msg_id)
        json_object_set_new (object, "clientMsgId", json_string (client_msg_id));
    json_object_set_new (object, "createdAt", json_string (created));
    char *text = json_dumps (object, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref (object);
    return text;
}

char *
pl_bridge_render_read (const char *room_id, const char *reader_id, int64_t seq)
{
    json_t *object = json_pack ("{s:s, s:s, s:s, s:I}", "type", "READ_STATUS", "roomId", room_id,
                                "readerId", reader_id, "seq", (json_int_t) seq);
    if (!object)
        return NULL;
    char *text = json_dumps (object, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref (object);
    return text;
}

//  --------------------------------------------------------------------------
//  Fan-out: every entry of this host's group goes to the room-router

static void
s_on_fanout (void *arg, const pl_entry_t *entry)
{
    self_t *self = (self_t *) arg;
    pl_msg_t *message;
    if (entry->seq == 0) {
        //  A signal from some host: the room's members changed, perhaps
        //  with a user event to make (its type other than ROOM_CHANGED)
        message = pl_msg_new (PL_MSG_ROOM_CHANGED);
        pl_msg_set_room (message, entry->room_id);
        if (!streq (entry->type, "ROOM_CHANGED")) {
            pl_msg_set_type (message, entry->type);
            pl_msg_set_target_user (message, entry->sender_id);
            pl_msg_set_body (message, entry->content, strlen (entry->content));
        }
    }
    else
    if (streq (entry->type, "READ")) {
        //  A read cursor: an event of the room, without a seq of its own
        char *body = pl_bridge_render_read (entry->room_id, entry->sender_id, entry->seq);
        if (!body)
            return;
        message = pl_msg_new (PL_MSG_DELIVER);
        pl_msg_set_room (message, entry->room_id);
        pl_msg_set_created (message, entry->created_ms);
        pl_msg_set_body (message, body, strlen (body));
        free (body);
    }
    else {
        char *body = pl_bridge_render (entry->room_id, entry->seq, entry->type, entry->sender_id,
                                       entry->sender_name, entry->content, entry->client_msg_id,
                                       entry->created_ms);
        if (!body) {
            pl_log_warning ("entry %s of %s cannot be rendered", entry->entry_id, entry->stream_key);
            return;
        }
        message = pl_msg_new (PL_MSG_DELIVER);
        pl_msg_set_room (message, entry->room_id);
        pl_msg_set_seq (message, (uint64_t) entry->seq);
        pl_msg_set_created (message, entry->created_ms);
        pl_msg_set_body (message, body, strlen (body));
        free (body);
    }
    //  No router, or one that does not take it: hold fan-out (the entry
    //  stays pending) until the router says HELLO again
    if (!self->router || pl_msg_send_copy (message, self->frontend, self->router)) {
        pl_log_debug ("router not reachable: fan-out held");
        pl_streams_fanout_hold (self->streams, true);
    }
    pl_msg_destroy (&message);
}

//  --------------------------------------------------------------------------
//  Persist: hand entries to persistence actors, ack what they confirm

static void
s_on_persist (void *arg, const pl_entry_t *entry)
{
    self_t *self = (self_t *) arg;
    char key [512];
    snprintf (key, sizeof key, "%s/%s", entry->stream_key, entry->entry_id);
    if (zhashx_lookup (self->work, key))
        return;                 //  read again while we still hold it
    pl_msg_t *persist = pl_msg_new (PL_MSG_PERSIST);
    pl_msg_set_stream (persist, entry->stream_key);
    pl_msg_set_entry_id (persist, entry->entry_id);
    pl_msg_set_room (persist, entry->room_id);
    pl_msg_set_seq (persist, (uint64_t) entry->seq);
    pl_msg_set_type (persist, entry->type);
    pl_msg_set_user (persist, entry->sender_id);
    pl_msg_set_sender_name (persist, entry->sender_name);
    pl_msg_set_cmid (persist, entry->client_msg_id);
    pl_msg_set_created (persist, entry->created_ms);
    pl_msg_set_body (persist, entry->content, strlen (entry->content));

    work_t *work = (work_t *) zmalloc (sizeof (work_t));
    assert (work);
    work->key = strdup (key);
    work->persist = persist;
    zhashx_insert (self->work, key, work);
    zlistx_add_end (self->queue, work);
}

//  The entry is done or goes back to the queue: the stores holding it no
//  longer count it.
static void
s_work_release (work_t *work)
{
    if (work->store && work->store->outstanding)
        work->store->outstanding--;
    if (work->slow && work->slow->outstanding)
        work->slow->outstanding--;
    work->store = work->slow = NULL;
}

//  Put a store's unconfirmed work back in the queue (it restarted or left);
//  what a slower store still holds stays with that one.
static void
s_store_requeue (self_t *self, pl_peer_t *store)
{
    int64_t now = pl_mono_ms ();
    for (work_t *work = (work_t *) zhashx_first (self->work); work;
         work = (work_t *) zhashx_next (self->work)) {
        if (work->slow == store)
            work->slow = NULL;
        if (work->store == store) {
            work->store = work->slow;
            work->slow = NULL;
            work->deadline = now + self->config->persist_timeout_ms;
            if (!work->store)
                zlistx_add_start (self->queue, work);
        }
    }
    store->outstanding = 0;
}

static void
s_store_forget (self_t *self, pl_peer_t *store)
{
    pl_log_info ("persistence actor %s is gone", store->id);
    s_store_requeue (self, store);
    pl_peers_remove (self->stores, store);
}

//  Hand queued work to the least busy stores.
static void
s_self_dispatch (self_t *self)
{
    int64_t now = pl_mono_ms ();
    size_t limit = (size_t) self->config->store_batch * 2;
    work_t *work = (work_t *) zlistx_first (self->queue);
    while (work) {
        if (work->not_before > now) {
            work = (work_t *) zlistx_next (self->queue);
            continue;
        }
        //  The least busy store; ties go round
        pl_peer_t *best = pl_peers_pick (self->stores, limit);
        if (!best)
            break;              //  every store is full or none is there
        if (pl_msg_send_copy (work->persist, self->frontend, best->id)) {
            if (zmq_errno () == EHOSTUNREACH)
                s_store_forget (self, best);
            else
                break;          //  full pipe: try again next turn
            work = (work_t *) zlistx_first (self->queue);
            continue;
        }
        work->store = best;
        work->deadline = now + self->config->persist_timeout_ms;
        best->outstanding++;
        zlistx_delete (self->queue, zlistx_cursor (self->queue));
        work = (work_t *) zlistx_first (self->queue);
    }
}

//  The least busy store with room other than not, or NULL
static pl_peer_t *
s_store_other (self_t *self, pl_peer_t *not, size_t limit)
{
    pl_peer_t *best = NULL;
    for (pl_peer_t *peer = pl_peers_first (self->stores); peer; peer = pl_peers_next (self->stores))
        if (peer != not && peer->outstanding < limit && (!best || peer->outstanding < best->outstanding))
            best = peer;
    return best;
}

//  A store did not confirm in time: a copy goes to another store, once. The
//  first keeps its copy (and its count), so a store that is only slow
//  never gets the same entry again and its inbound queue stays bounded;
//  with no other store there is nothing better than waiting on it.
static void
s_work_overdue (self_t *self, work_t *work, int64_t now)
{
    work->deadline = now + self->config->persist_timeout_ms;
    if (work->slow)
        return;                 //  handed out twice already
    pl_peer_t *other = s_store_other (self, work->store, (size_t) self->config->store_batch * 2);
    if (!other || pl_msg_send_copy (work->persist, self->frontend, other->id))
        return;
    pl_log_warning ("store %s did not confirm %s in time: %s has it too", work->store->id,
                    work->key, other->id);
    work->slow = work->store;
    work->store = other;
    other->outstanding++;
}

static void
s_self_handle_persisted (self_t *self, pl_msg_t *message)
{
    char key [512];
    snprintf (key, sizeof key, "%s/%s", pl_msg_stream (message), pl_msg_entry_id (message));
    work_t *work = (work_t *) zhashx_lookup (self->work, key);
    if (!work)
        return;                 //  confirmed twice (handed out twice)
    bool queued = !work->store;
    s_work_release (work);
    if (pl_msg_status (message) == 200) {
        pl_histogram_observe (&self->persist_lag,
                              (double) (pl_clock_ms () - pl_msg_created (work->persist)));
        pl_streams_persist_ack (self->streams, pl_msg_stream (message), pl_msg_entry_id (message));
        if (queued)
            zlistx_delete (self->queue, zlistx_find (self->queue, work));
        zhashx_delete (self->work, key);
    }
    else
    if (!queued) {
        work->attempts++;
        if (work->attempts >= self->config->persist_attempts) {
            //  It will not store: out of the way, kept with its error
            pl_msg_t *persist = work->persist;
            pl_entry_t entry = {
                .room_id = pl_msg_room (persist), .type = pl_msg_type (persist),
                .sender_id = pl_msg_user (persist), .sender_name = pl_msg_sender_name (persist),
                .content = pl_msg_body (persist), .client_msg_id = pl_msg_cmid (persist),
                .created_ms = pl_msg_created (persist), .seq = (int64_t) pl_msg_seq (persist),
                .stream_key = pl_msg_stream (persist), .entry_id = pl_msg_entry_id (persist)
            };
            pl_log_error ("entry %s failed %d times, dead-lettered: %s", key, work->attempts,
                          pl_msg_body (message));
            pl_streams_persist_fail (self->streams, &entry, pl_msg_body (message));
            zhashx_delete (self->work, key);
            return;
        }
        int shift = work->attempts - 1 < 20? work->attempts - 1: 20;
        int64_t pause = (int64_t) self->config->persist_retry_ms << shift;
        if (pause > self->config->persist_retry_max_ms)
            pause = self->config->persist_retry_max_ms;
        work->not_before = pl_mono_ms () + pause;
        pl_log_warning ("store %s failed %s (attempt %d): %s", pl_msg_routing_id (message), key,
                        work->attempts, pl_msg_body (message));
        zlistx_add_end (self->queue, work);
    }
}

//  --------------------------------------------------------------------------
//  Appends: SEND from the router, RESULT back once Redis has the entry

//  Answer a request of the router (SEND, REPLAY): RESULT to the router that
//  asked, with the route and correlation of the request.
static void
s_self_answer (self_t *self, const pl_msg_t *request, uint32_t status, uint64_t seq,
               const char *body, size_t size)
{
    pl_msg_t *reply = pl_reply_new (request, status, NULL);
    pl_msg_set_seq (reply, seq);
    pl_msg_set_body (reply, body, size);
    if (self->frontend && pl_msg_send_copy (reply, self->frontend, pl_msg_routing_id (request)))
        pl_log_debug ("RESULT not taken by the router: %s", zmq_strerror (zmq_errno ()));
    pl_msg_destroy (&reply);
}

static void
s_self_answer_text (self_t *self, const pl_msg_t *request, uint32_t status, const char *text)
{
    s_self_answer (self, request, status, 0, text, strlen (text));
}

//  One QUERY of our own (corr, operation, room or NULL, JSON body) to the
//  least busy persistence actor. Returns 0, or -1 when none took it.
static int
s_self_ask_store (self_t *self, uint64_t corr, const char *operation, const char *room,
                  const char *body)
{
    pl_peer_t *store = pl_peers_pick (self->stores, 0);
    if (!store)
        return -1;
    pl_msg_t *query = pl_msg_new (PL_MSG_QUERY);
    pl_msg_set_operation (query, operation);
    if (room)
        pl_msg_set_room (query, room);
    pl_msg_set_corr (query, corr);
    pl_msg_set_body (query, body, strlen (body));
    int rc = pl_msg_send_copy (query, self->frontend, store->id);
    pl_msg_destroy (&query);
    return rc;
}

//  An append whose dedup keys did not come back: the client may try again
static void
s_restore_fail (void **item_p)
{
    append_t *append = (append_t *) *item_p;
    if (append) {
        s_self_answer_text (append->self, append->request, 503, "persistence unavailable, try again");
        pl_msg_destroy (&append->request);
        free (append);
        *item_p = NULL;
    }
}

//  Redis lost writes: the room's counter (counter) is below its floor.
//  Before it is raised, the dedup keys of the stored messages in between
//  come back from MongoDB (room.client_msg_ids), so a retry of one of them
//  gets its seq and is not appended again. The room is checked again by
//  whatever comes meanwhile.
static void
s_self_restore_dedup (self_t *self, append_t *append, int64_t counter)
{
    pl_floors_forget (self->floors, pl_msg_room (append->request));
    char body [64];
    snprintf (body, sizeof body, "{\"after\":%" PRId64 ",\"upTo\":%" PRId64 "}", counter, append->floor);
    if (s_self_ask_store (self, ++self->next_corr, "room.client_msg_ids", pl_msg_room (append->request),
                          body)) {
        s_restore_fail ((void **) &append);
        return;
    }
    append->deadline = pl_mono_ms () + self->config->request_timeout_ms / 2;
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, self->next_corr);
    zhashx_insert (self->restores, key, append);
}

//  A store's answer to room.client_msg_ids: the keys go back, then the
//  append with the floor raises the counter. Returns false when corr is
//  none of ours.
static bool
s_self_restored (self_t *self, pl_msg_t *result)
{
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, pl_msg_corr (result));
    append_t *append = (append_t *) zhashx_lookup (self->restores, key);
    if (!append)
        return false;
    json_t *found = pl_msg_status (result) == 200?
                    json_loadb (pl_msg_body (result), pl_msg_body_size (result), 0, NULL): NULL;
    zhashx_delete (self->restores, key);
    if (!json_is_array (found)) {
        json_decref (found);
        s_restore_fail ((void **) &append);
        return true;
    }
    size_t index;
    json_t *entry;
    json_array_foreach (found, index, entry)
        pl_streams_dedup_restore (self->streams, pl_msg_room (append->request),
                                  json_string_value (json_object_get (entry, "senderId")),
                                  json_string_value (json_object_get (entry, "clientMsgId")),
                                  (int64_t) json_integer_value (json_object_get (entry, "seq")));
    json_decref (found);
    s_self_append (self, append->request, append->floor, true);
    free (append);
    return true;
}

//  Restores past their deadline: answered 503 (a late answer finds none)
static void
s_self_expire_restores (self_t *self, int64_t now)
{
    zlistx_t *keys = zhashx_keys (self->restores);
    for (const char *key = keys? (const char *) zlistx_first (keys): NULL; key;
         key = (const char *) zlistx_next (keys)) {
        append_t *append = (append_t *) zhashx_lookup (self->restores, key);
        if (now >= append->deadline) {
            zhashx_delete (self->restores, key);
            s_restore_fail ((void **) &append);
        }
    }
    zlistx_destroy (&keys);
}

static void
s_append_done (void *arg, int result, int64_t seq, const char *error)
{
    append_t *append = (append_t *) arg;
    self_t *self = append->self;
    self->appends--;
    if (result == 3) {
        //  Redis has no counter for the room: its floor first, then again
        pl_floors_forget (self->floors, pl_msg_room (append->request));
        pl_floors_park (self->floors, pl_msg_room (append->request), append->request, pl_mono_ms ());
        free (append);
        return;
    }
    if (result == 5) {
        s_self_restore_dedup (self, append, seq);
        return;
    }
    //  The first append with the room's floor went through: the room's
    //  counter is at or past it for the rest of this generation
    if (result == 0 && append->floor >= 0
    &&  append->generation == pl_streams_generation (self->streams))
        pl_floors_mark_checked (self->floors, pl_msg_room (append->request));
    if (result == 2) {
        char text [120];
        snprintf (text, sizeof text, "seq %" PRIu64 " is past the room's last message (%" PRId64 ")",
                  pl_msg_read_seq (append->request), seq);
        s_self_answer_text (self, append->request, 400, text);
    }
    else
    if (result >= 0)
        s_self_answer (self, append->request, 200, (uint64_t) seq, NULL, 0);
    else
    if (result == -2) {
        //  On the primary, not yet on enough replicas: not acknowledged
        char text [160];
        snprintf (text, sizeof text, "message not confirmed by %d Redis replicas in time, "
                  "send it again with the same clientMsgId", self->config->redis_min_replicas);
        s_self_answer_text (self, append->request, 503, text);
    }
    else {
        //  The outcome is unknown (Redis went away mid-way): the client's
        //  retry with the same clientMsgId is safe
        pl_log_warning ("append failed: %s", error? error: "unknown error");
        s_self_answer_text (self, append->request, 503,
                            "message may not be stored, send it again with the same clientMsgId");
    }
    pl_msg_destroy (&append->request);
    free (append);
}

//  Takes the request: it is answered once Redis has the entry. floor: the
//  room's highest stored seq, or PL_SEQ_FLOOR_CHECK (see pl_floors.h);
//  restored: the dedup keys below the floor are back (s_self_restore_dedup).
static void
s_self_append (self_t *self, pl_msg_t *request, int64_t floor, bool restored)
{
    append_t *append = (append_t *) zmalloc (sizeof (append_t));
    assert (append);
    append->self = self;
    append->request = request;
    append->floor = floor;
    append->generation = pl_streams_generation (self->streams);
    pl_entry_t entry = {
        .room_id = pl_msg_room (request),
        .type = pl_msg_type (request),
        .sender_id = pl_msg_user (request),
        .sender_name = pl_msg_sender_name (request),
        .content = pl_msg_body (request),
        .client_msg_id = pl_msg_cmid (request),
        .created_ms = pl_clock_ms (),
        .seq = (int64_t) pl_msg_read_seq (request),
        .seq_floor = floor,
        .dedup_restored = restored
    };
    self->appends++;
    if (pl_streams_append (self->streams, &entry, s_append_done, append))
        s_append_done (append, -1, 0, "append refused");
}

//  Takes the request. A READ takes no seq; a message to a room whose
//  counter was not checked in this generation of the Redis layer waits for
//  the room's highest stored seq (pl_floors.h).
static void
s_self_handle_send (self_t *self, pl_msg_t **request_p)
{
    pl_msg_t *request = *request_p;
    *request_p = NULL;
    if (streq (pl_msg_type (request), "READ")) {
        s_self_append (self, request, 0, false);
        return;
    }
    pl_floors_set_generation (self->floors, pl_streams_generation (self->streams));
    if (pl_floors_checked (self->floors, pl_msg_room (request)))
        s_self_append (self, request, PL_SEQ_FLOOR_CHECK, false);
    else
        pl_floors_park (self->floors, pl_msg_room (request), request, pl_mono_ms ());
}

//  A SEND back from pl_floors: append it above the floor, or tell the
//  client to try again
static void
s_floor_release (void *arg, void *item, int64_t floor)
{
    self_t *self = (self_t *) arg;
    pl_msg_t *request = (pl_msg_t *) item;
    if (floor >= 0)
        s_self_append (self, request, floor, false);
    else {
        s_self_answer_text (self, request, 503, "persistence unavailable, try again");
        pl_msg_destroy (&request);
    }
}

//  The rooms' seq checks queued: one rooms.last_seq query out per store.
//  With no store known (the bridge just started) they wait for one, at
//  most half of request-timeout-ms (pl_floors_expire).
static void
s_self_ask_floors (self_t *self)
{
    int64_t deadline = pl_mono_ms () + self->config->request_timeout_ms / 2;
    size_t window = pl_peers_size (self->stores);
    char *body;
    while ((body = pl_floors_next_query (self->floors, window, &self->next_corr, deadline))) {
        if (s_self_ask_store (self, self->next_corr, "rooms.last_seq", NULL, body))
            pl_floors_answer (self->floors, self->next_corr, NULL, 0);
        free (body);
    }
}

//  SENDs of a room wait while its shard is not ready (Redis away, a
//  cluster master failing over, this host's groups not made yet: an
//  append would not reach this host's subscribers), and behind the room's
//  SENDs already waiting, so they keep their order. Takes the message.
static void
s_self_send_or_hold (self_t *self, pl_msg_t **message_p)
{
    const char *room = pl_msg_room (*message_p);
    uintptr_t waiting = (uintptr_t) zhashx_lookup (self->held_rooms, room);
    if (!waiting && pl_streams_room_ready (self->streams, room)) {
        s_self_handle_send (self, message_p);
        return;
    }
    if (zlistx_size (self->held) >= (size_t) self->config->held_sends_max) {
        s_self_answer_text (self, *message_p, 503, "Redis not reachable, try again");
        return;
    }
    zhashx_update (self->held_rooms, room, (void *) (waiting + 1));
    zlistx_add_end (self->held, *message_p);
    *message_p = NULL;
}

//  Held SENDs go out, in order, once their room's shard is ready
static void
s_self_release_held (self_t *self)
{
    if (!zlistx_size (self->held))
        return;
    pl_msg_t *message = (pl_msg_t *) zlistx_first (self->held);
    while (message) {
        const char *room = pl_msg_room (message);
        if (!pl_streams_room_ready (self->streams, room)) {
            message = (pl_msg_t *) zlistx_next (self->held);
            continue;
        }
        uintptr_t waiting = (uintptr_t) zhashx_lookup (self->held_rooms, room);
        if (waiting > 1)
            zhashx_update (self->held_rooms, room, (void *) (waiting - 1));
        else
            zhashx_delete (self->held_rooms, room);
        void *handle = zlistx_cursor (self->held);
        message = (pl_msg_t *) zlistx_next (self->held);
        pl_msg_t *ready = (pl_msg_t *) zlistx_detach (self->held, handle);
        s_self_handle_send (self, &ready);
    }
}

//  --------------------------------------------------------------------------
//  Ephemeral events (TYPING): Redis pub/sub to every host's bridge, best
//  effort; never in a stream, the persist group or MongoDB

//  A TYPING from the router: published as the JSON clients get, answered
//  at once (there is nothing to wait for: no host confirms a broadcast)
static void
s_self_handle_typing (self_t *self, pl_msg_t *request)
{
    json_t *event = json_pack ("{s:s, s:s, s:s, s:s}", "type", "TYPING",
                               "roomId", pl_msg_room (request), "senderId", pl_msg_user (request),
                               "senderName", pl_msg_sender_name (request));
    char *text = event? json_dumps (event, JSON_COMPACT | JSON_PRESERVE_ORDER): NULL;
    json_decref (event);
    if (text && pl_streams_broadcast (self->streams, text, strlen (text)) == 0)
        s_self_answer (self, request, 200, 0, NULL, 0);
    else
        s_self_answer_text (self, request, 503, "Redis not reachable, TYPING not passed on");
    free (text);
}

//  A broadcast from some host (this one too): the router's to read (what
//  it means, TYPING or presence, is decided there, parsed once)
static void
s_on_broadcast (void *arg, const char *payload, size_t size)
{
    self_t *self = (self_t *) arg;
    pl_msg_t *broadcast = pl_msg_new (PL_MSG_BROADCAST);
    pl_msg_set_body (broadcast, payload, size);
    //  Best effort: a router that does not take it misses one event
    if (self->router)
        pl_msg_send_copy (broadcast, self->frontend, self->router);
    pl_msg_destroy (&broadcast);
}

//  --------------------------------------------------------------------------
//  Replay: a room's entries after a seq, for a resuming subscriber

typedef struct {
    self_t *self;
    pl_msg_t *request;          //  the REPLAY, kept to answer it
    pl_buf_t body;              //  JSON array of rendered messages
    size_t count;
    int64_t deadline;           //  while it waits for its room's shard
} replay_t;

static void
s_replay_entry (void *arg, const pl_entry_t *entry)
{
    replay_t *replay = (replay_t *) arg;
    char *text = pl_bridge_render (entry->room_id, entry->seq, entry->type, entry->sender_id,
                                   entry->sender_name, entry->content, entry->client_msg_id,
                                   entry->created_ms);
    if (!text)
        return;
    pl_buf_append (&replay->body, replay->count++? ",": "[", 1);
    pl_buf_append (&replay->body, text, strlen (text));
    free (text);
}

static void
s_replay_done (void *arg, int result, int64_t first_seq, int64_t last_seq)
{
    replay_t *replay = (replay_t *) arg;
    (void) first_seq;
    if (result == 0) {
        pl_buf_append (&replay->body, replay->count? "]": "[]", replay->count? 1: 2);
        s_self_answer (replay->self, replay->request, 200, (uint64_t) last_seq,
                       pl_buf_head (&replay->body), pl_buf_pending (&replay->body));
    }
    else
        s_self_answer_text (replay->self, replay->request, 503, "Redis not reachable, try again");
    pl_msg_destroy (&replay->request);
    pl_buf_free (&replay->body);
    free (replay);
}

static void
s_replay_start (replay_t *replay)
{
    self_t *self = replay->self;
    pl_msg_t *request = replay->request;
    int max = (int) pl_msg_limit (request);
    if (max <= 0 || max > self->config->history_limit)
        max = self->config->history_limit;
    if (pl_streams_replay (self->streams, pl_msg_room (request), (int64_t) pl_msg_after (request),
                           max, s_replay_entry, s_replay_done, replay))
        s_replay_done (replay, -1, 0, 0);
}

//  Takes the request: it is answered once Redis gave the entries. While
//  the room's shard is not ready (Redis failing over) it waits at most
//  half of request-timeout-ms, so a resume rides through a failover.
static void
s_self_handle_replay (self_t *self, pl_msg_t **request_p)
{
    replay_t *replay = (replay_t *) zmalloc (sizeof (replay_t));
    assert (replay);
    replay->self = self;
    replay->request = *request_p;
    *request_p = NULL;
    pl_buf_init (&replay->body);
    if (!pl_streams_room_ready (self->streams, pl_msg_room (replay->request))
    &&  zlistx_size (self->held_replays) < (size_t) self->config->held_sends_max) {
        replay->deadline = pl_mono_ms () + self->config->request_timeout_ms / 2;
        zlistx_add_end (self->held_replays, replay);
    }
    else
        s_replay_start (replay);
}

//  Waiting REPLAYs go once their room's shard is ready, or are refused at
//  their deadline
static void
s_self_release_replays (self_t *self)
{
    if (!zlistx_size (self->held_replays))
        return;
    int64_t now = pl_mono_ms ();
    replay_t *replay = (replay_t *) zlistx_first (self->held_replays);
    while (replay) {
        bool ready = pl_streams_room_ready (self->streams, pl_msg_room (replay->request));
        void *handle = zlistx_cursor (self->held_replays);
        replay_t *next = (replay_t *) zlistx_next (self->held_replays);
        if (ready || now >= replay->deadline) {
            zlistx_detach (self->held_replays, handle);
            if (ready)
                s_replay_start (replay);
            else
                s_replay_done (replay, -1, 0, 0);
        }
        replay = next;
    }
}

static void
s_replays_destroy (zlistx_t **replays_p)
{
    if (!*replays_p)
        return;
    replay_t *replay;
    while ((replay = (replay_t *) zlistx_detach (*replays_p, NULL))) {
        pl_msg_destroy (&replay->request);
        pl_buf_free (&replay->body);
        free (replay);
    }
    zlistx_destroy (replays_p);
}

//  --------------------------------------------------------------------------
//  Peers and the loop

//  A message from the room-router or a persistence actor (a pl_drain_fn).
//  Handlers that keep the message take it from *message_p.
static void
s_self_handle_frontend (void *actor, pl_msg_t **message_p)
{
    self_t *self = (self_t *) actor;
    pl_msg_t *message = *message_p;
    const char *from = pl_msg_routing_id (message);
    switch (pl_msg_command (message)) {
        case PL_MSG_HELLO:
            if (streq (pl_msg_role (message), "router")) {
                if (!streq_safe (self->router, from)) {
                    free (self->router);
                    self->router = strdup (from);
                    pl_log_info ("room-router %s connected", from);
                }
                pl_msg_t *pong = pl_msg_new (PL_MSG_PING);
                pl_msg_set_readiness (pong, pl_streams_connected (self->streams)? PL_READY_BRIDGE: 0);
                if (pl_msg_send_copy (pong, self->frontend, from) == 0)
                    pl_streams_fanout_hold (self->streams, false);
                pl_msg_destroy (&pong);
            }
            else
            if (streq (pl_msg_role (message), "store")) {
                bool added = false;
                pl_peer_t *store = pl_peers_seen (self->stores, from, pl_mono_ms (), &added);
                if (added)
                    pl_log_info ("persistence actor %s connected", from);
                else
                if (pl_msg_first_hello (message))
                    //  It restarted: what it held is lost with it
                    s_store_requeue (self, store);
            }
            break;
        case PL_MSG_SEND:
            if (streq (pl_msg_type (message), "TYPING")) {
                s_self_handle_typing (self, message);
                break;
            }
            s_self_send_or_hold (self, message_p);
            break;
        case PL_MSG_RESULT:
            //  A store's answer to our room.client_msg_ids or rooms.last_seq
            if (!s_self_restored (self, message))
                pl_floors_answer (self->floors, pl_msg_corr (message),
                                  pl_msg_status (message) == 200? pl_msg_body (message): NULL,
                                  pl_msg_body_size (message));
            break;
        case PL_MSG_PERSISTED:
            s_self_handle_persisted (self, message);
            break;
        case PL_MSG_BROADCAST:
            //  Best effort: refused (Redis away, too big) is counted there
            pl_streams_broadcast (self->streams, pl_msg_body (message), pl_msg_body_size (message));
            break;
        case PL_MSG_REPLAY:
            s_self_handle_replay (self, message_p);
            break;
        case PL_MSG_ROOM_CHANGED:
            //  A room just created has nothing stored: its counter starts
            //  at 0, and its first SEND needs no check against MongoDB
            if (streq (pl_msg_type (message), "ROOM_ADDED") && !*pl_msg_target_user (message)
            &&  pl_streams_room_created (self->streams, pl_msg_room (message)) == 0) {
                pl_floors_set_generation (self->floors, pl_streams_generation (self->streams));
                pl_floors_mark_checked (self->floors, pl_msg_room (message));
            }
            //  Through the room's stream, so every host's router hears it
            if (pl_streams_signal (self->streams, pl_msg_room (message),
                                   *pl_msg_type (message)? pl_msg_type (message): "ROOM_CHANGED",
                                   pl_msg_target_user (message), pl_msg_body (message)))
                pl_log_warning ("ROOM_CHANGED of %s not signalled: Redis not reachable",
                                pl_msg_room (message));
            break;
        default:
            pl_log_warning ("unexpected %s from %s", pl_msg_command_name (pl_msg_command (message)), from);
    }
}

//  The status record: the Redis layer's counters, persist work, seq checks
static void
s_self_report (self_t *self)
{
    pl_streams_stats_t stats;
    pl_streams_stats (self->streams, &stats);
    json_t *figures = json_pack (
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:o, s:o}",
        "appended", (json_int_t) stats.appended, "duplicates", (json_int_t) stats.duplicates,
        "fanout_read", (json_int_t) stats.fanout_read, "persist_read", (json_int_t) stats.persist_read,
        "claimed", (json_int_t) stats.claimed, "dead_lettered", (json_int_t) stats.dead_lettered,
        "trimmed", (json_int_t) stats.trimmed, "append_errors", (json_int_t) stats.append_errors,
        "redis_reconnects", (json_int_t) stats.reconnects,
        "persist_unconfirmed", (json_int_t) zhashx_size (self->work),
        "persist_queued", (json_int_t) zlistx_size (self->queue),
        "persistence_actors", (json_int_t) pl_peers_size (self->stores),
        "appends_in_flight", (json_int_t) self->appends,
        "redis_connected", pl_streams_connected (self->streams),
        "persist_lag_ms", pl_histogram_json (&self->persist_lag),
        "groups", pl_streams_groups_json (self->streams));
    if (figures) {
        json_object_set_new (figures, "broadcasts_sent", json_integer ((json_int_t) stats.broadcasts_sent));
        json_object_set_new (figures, "broadcasts_received",
                             json_integer ((json_int_t) stats.broadcasts_received));
        json_object_set_new (figures, "broadcasts_dropped",
                             json_integer ((json_int_t) stats.broadcasts_dropped));
        json_object_set_new (figures, "unreplicated", json_integer ((json_int_t) stats.unreplicated));
        json_object_set_new (figures, "replication_waits",
                             json_integer ((json_int_t) stats.replication_waits));
        json_object_set_new (figures, "seq_counters_missing",
                             json_integer ((json_int_t) stats.counters_missing));
        json_object_set_new (figures, "seq_counters_raised",
                             json_integer ((json_int_t) stats.counters_raised));
        json_object_set_new (figures, "dedup_keys_restored",
                             json_integer ((json_int_t) stats.dedup_restored));
        pl_floors_stats_t floors;
        pl_floors_stats (self->floors, &floors);
        json_object_set_new (figures, "seq_floor_checks", json_integer ((json_int_t) floors.rooms_checked));
        json_object_set_new (figures, "seq_floor_checks_failed",
                             json_integer ((json_int_t) floors.checks_failed));
    }
    pl_monitor_report (self->monitor, figures);
}

static void
s_self_handle_tick (self_t *self)
{
    int64_t now = pl_mono_ms ();
    if (self->router && pl_streams_connected (self->streams))
        pl_notify_ready ("Redis connected, router known");
    if (pl_every_due (&self->status, now))
        s_self_report (self);
    //  Work a store did not confirm in time goes to another store
    for (work_t *work = (work_t *) zhashx_first (self->work); work;
         work = (work_t *) zhashx_next (self->work))
        if (work->store && now >= work->deadline)
            s_work_overdue (self, work, now);
    pl_peer_t *store;
    while ((store = pl_peers_expired (self->stores, now)))
        s_store_forget (self, store);
    pl_floors_expire (self->floors, now);
    s_self_expire_restores (self, now);
}

void
pl_bridge_actor (zsock_t *pipe, void *args)
{
    const pl_config_t *config = (const pl_config_t *) args;
    pl_log_set_actor ("bridge");
    self_t *self = s_self_new (pipe, config);
    if (!self) {
        zsock_signal (pipe, 1);
        return;
    }
    zsock_signal (pipe, 0);
    pl_log_info ("listening on %s, Redis at %s, %d shards", config->bridge_endpoint,
                 config->redis_url, config->shards);
    while (!self->terminated) {
        zmq_pollitem_t items [2 + PL_STREAMS_POLLITEMS_MAX] = {
            { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 },
            { zsock_resolve (self->frontend), 0, ZMQ_POLLIN, 0 }
        };
        int redis_items = pl_streams_pollitems (self->streams, items + 2, PL_STREAMS_POLLITEMS_MAX);
        long timeout = TICK_MS;
        int streams_timeout = pl_streams_timeout (self->streams);
        if (streams_timeout >= 0 && streams_timeout < timeout)
            timeout = streams_timeout;
        if (zlistx_size (self->queue) && pl_peers_size (self->stores))
            timeout = timeout < 10? timeout: 10;
        if (zmq_poll (items, 2 + redis_items, timeout) == -1 && zmq_errno () != EINTR)
            break;
        if (items [0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (pipe);
            if (!command || streq (command, "$TERM"))
                self->terminated = true;
            zstr_free (&command);
        }
        //  Bounded per turn so Redis replies are read in between; zmq_poll
        //  checks ZMQ_EVENTS, so what the budget leaves wakes it at once
        pl_drain (self->frontend, config->drain_budget, "peers", s_self_handle_frontend, self);
        pl_streams_handle (self->streams, items + 2, redis_items);
        pl_notify_watchdog ();
        s_self_release_held (self);
        s_self_release_replays (self);
        s_self_ask_floors (self);
        s_self_dispatch (self);
        if (pl_every_due (&self->tick, pl_mono_ms ()))
            s_self_handle_tick (self);
    }
    s_self_destroy (&self);
}

void
pl_bridge_test (bool verbose)
{
    if (verbose)
        printf (" * pl_bridge: ");
    char *text = pl_bridge_render ("r1", 42, "TALK", "u1", "Alice", "hi \"there\"\n", "c1",
                                   1795348800000LL);
    pl_check (text);
    pl_check (streq (text, "{\"roomId\":\"r1\",\"seq\":42,\"type\":\"TALK\",\"senderId\":\"u1\","
                         "\"senderName\":\"Alice\",\"content\":\"hi \\\"there\\\"\\n\","
                         "\"clientMsgId\":\"c1\",\"createdAt\":\"2026-11-22T12:00:00.000Z\"}"));
    free (text);
    text = pl_bridge_render ("r1", 1, "TALK", "u1", "Alice", "x", "", 0);
    pl_check (text && !strstr (text, "clientMsgId"));
    free (text);
    //  Invalid UTF-8 is refused, not rendered as broken JSON
    pl_check (pl_bridge_render ("r1", 1, "TALK", "u1", "Alice", "\xff", "", 0) == NULL);
    text = pl_bridge_render_read ("r1", "u2", 7);
    pl_check (text && streq (text, "{\"type\":\"READ_STATUS\",\"roomId\":\"r1\",\"readerId\":\"u2\",\"seq\":7}"));
    free (text);
    if (verbose)
        printf ("OK\n");
}
