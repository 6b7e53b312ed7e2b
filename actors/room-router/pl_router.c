/*  =========================================================================
    pl_router - the room-router actor of one host
    =========================================================================
*/
#include "pl_router.h"
#include "pl_msg.h"
#include "pl_drain.h"
#include "pl_reply.h"
#include "pl_peers.h"
#include "pl_sockets.h"
#include "pl_notify.h"
#include "pl_monitor.h"
#include "pl_log.h"
#include "pl_util.h"
#include "pl_unread.h"
#include "pl_presence.h"

#include <jansson.h>

#include <jansson.h>

//  Deadlines and idle rooms are checked this often (not a limit)
#define TICK_MS           100

//  A connection actor is a pl_peer_t whose data is the set of rooms it
//  joined (zhashx_t of room ids).

typedef struct {
    pl_msg_t *request;          //  AUTHZ or SEND waiting for the member list
    int64_t deadline;
} waiter_t;

typedef struct {
    char *room_id;
    zhashx_t *conns;            //  identity -> pl_peer_t of a connection actor (not owned)
    zhashx_t *members;          //  member set, NULL until loaded
    bool exists;                //  false when the store said: no such room
    int64_t loaded_at;
    uint64_t loading_corr;      //  non-zero while a member query is out
    int64_t loading_deadline;
    bool load_queued;           //  in self->to_load, for this turn's queries
    zlistx_t *waiters;          //  waiter_t
} room_t;

//  A rooms.members query out: the rooms it asked for (a room whose
//  loading_corr is another by the time the answer comes ignores it)
typedef struct {
    zlistx_t *room_ids;         //  strings, owned
    int64_t deadline;           //  no answer by then: forgotten
} load_t;

//  A room.get on its way: its answer gets "online"
typedef struct {
    char room [PL_ID_MAX + 1];
    int64_t deadline;           //  no answer by then: forgotten
} room_get_t;

typedef struct {
    const pl_config_t *config;
    zsock_t *pipe;
    zsock_t *frontend;          //  ROUTER: connection and persistence actors
    zsock_t *bridge;            //  DEALER to the stream bridge
    pl_peers_t *conns;          //  connection actors; data: the rooms each joined
    zhashx_t *rooms;            //  room id -> room_t
    zlistx_t *to_load;          //  room ids whose members this turn asks for
    zhashx_t *loads;            //  corr (text) -> load_t: member queries out
    pl_peers_t *stores;         //  persistence actors, taking queries in turn
    uint64_t next_corr;
    pl_every_t heartbeat;       //  HELLO to the bridge
    pl_every_t tick;            //  deadlines, silent peers, idle rooms
    pl_every_t status;          //  status record to the monitor
    pl_every_t heap_trim;       //  free heap pages back to the kernel
    pl_every_t unread_tick;     //  unread-interval-ms: UNREAD counts asked and told
    pl_unread_t *unread;        //  the users watched here and their counts
    pl_presence_t *presence;    //  who is online in which room, every host
    pl_every_t presence_tick;   //  refresh and expiry of presence
    zhashx_t *room_gets;        //  "<conn> <corr>" of room.get queries out -> room_get_t
    uint64_t dropped;           //  messages a full or gone peer did not take
    uint64_t not_member;        //  AUTHZ, SEND, REPLAY refused: not a member (issue 8)
    int64_t bridge_ready_at;    //  the bridge last said Redis is reachable
    pl_monitor_t *monitor;      //  socket events and status for operators
    bool terminated;
} self_t;

static void s_conn_join (self_t *self, const char *identity, const char *room_id);
static int s_send_to_store (self_t *self, pl_msg_t *message);
static void s_self_send_load (self_t *self, load_t *load, json_t *ids);
static int s_send_to (self_t *self, pl_msg_t *message, const char *identity);

//  pl_unread's questions: QUERY user.unread, the router's own (no route)
static uint64_t
s_unread_ask (void *arg, const char *user, json_t *rooms)
{
    self_t *self = (self_t *) arg;
    pl_msg_t *query = pl_msg_new (PL_MSG_QUERY);
    pl_msg_set_operation (query, "user.unread");
    pl_msg_set_user (query, user);
    pl_msg_set_corr (query, ++self->next_corr);
    char *body = rooms? json_dumps (rooms, JSON_COMPACT): NULL;
    if (body)
        pl_msg_set_body (query, body, strlen (body));
    free (body);
    uint64_t corr = s_send_to_store (self, query) == 0? self->next_corr: 0;
    pl_msg_destroy (&query);
    return corr;
}

//  An event the router makes (no seq): of a room (room set; user set: its
//  sender, whose own sessions skip it) or of a user (room NULL)
static pl_msg_t *
s_event_new (const char *room, const char *user, const char *body, size_t size)
{
    pl_msg_t *deliver = pl_msg_new (PL_MSG_DELIVER);
    pl_msg_set_room (deliver, room? room: "");
    pl_msg_set_user (deliver, user? user: "");
    pl_msg_set_created (deliver, pl_clock_ms ());
    pl_msg_set_body (deliver, body, size);
    return deliver;
}

//  A room's DELIVER to each connection actor that joined the room
static void
s_self_to_room (self_t *self, const char *room_id, pl_msg_t *deliver)
{
    room_t *room = (room_t *) zhashx_lookup (self->rooms, room_id);
    for (pl_peer_t *conn = room? (pl_peer_t *) zhashx_first (room->conns): NULL; conn;
         conn = (pl_peer_t *) zhashx_next (room->conns))
        s_send_to (self, deliver, conn->id);
}

//  pl_unread's events: a user event to one connection actor
static void
s_unread_event (void *arg, const char *conn, const char *user, const char *body)
{
    self_t *self = (self_t *) arg;
    pl_msg_t *deliver = s_event_new (NULL, user, body, strlen (body));
    s_send_to (self, deliver, conn);
    pl_msg_destroy (&deliver);
}

static const pl_unread_ops_t s_unread_ops = { s_unread_ask, s_unread_event };

//  pl_presence's broadcasts: to the bridge, which publishes them
static void
s_presence_publish (void *arg, const char *payload)
{
    self_t *self = (self_t *) arg;
    pl_msg_t *broadcast = pl_msg_new (PL_MSG_BROADCAST);
    pl_msg_set_body (broadcast, payload, strlen (payload));
    if (pl_msg_send (&broadcast, self->bridge))
        self->dropped++;
}

//  pl_presence's events: ENTER/LEAVE to the room's subscribers here
static void
s_presence_event (void *arg, const char *room_id, const char *body)
{
    self_t *self = (self_t *) arg;
    pl_msg_t *deliver = s_event_new (room_id, NULL, body, strlen (body));
    s_self_to_room (self, room_id, deliver);
    pl_msg_destroy (&deliver);
}

static const pl_presence_ops_t s_presence_ops = { s_presence_publish, s_presence_event };

//  --------------------------------------------------------------------------
//  Destructors for the containers

static void
s_conn_rooms_destroy (void **rooms_p)
{
    zhashx_destroy ((zhashx_t **) rooms_p);
}

static void
s_waiter_destroy (void **item_p)
{
    waiter_t *waiter = (waiter_t *) *item_p;
    if (waiter) {
        pl_msg_destroy (&waiter->request);
        free (waiter);
        *item_p = NULL;
    }
}

static void
s_room_destroy (void **item_p)
{
    room_t *room = (room_t *) *item_p;
    if (room) {
        zhashx_destroy (&room->conns);
        zhashx_destroy (&room->members);
        zlistx_destroy (&room->waiters);
        free (room->room_id);
        free (room);
        *item_p = NULL;
    }
}

static void
s_load_destroy (void **item_p)
{
    load_t *load = (load_t *) *item_p;
    if (load) {
        zlistx_destroy (&load->room_ids);
        free (load);
        *item_p = NULL;
    }
}

static zhashx_t *
s_set_new (void)
{
    zhashx_t *set = zhashx_new ();
    assert (set);
    return set;
}

//  --------------------------------------------------------------------------
//  Construction

static self_t *
s_self_new (zsock_t *pipe, const pl_config_t *config)
{
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    assert (self);
    self->config = config;
    self->pipe = pipe;
    //  Sends to a gone peer fail (mandatory), so gone stores can be skipped
    self->frontend = pl_router_socket_new (config->router_endpoint, config->socket_hwm);
    if (!self->frontend) {
        free (self);
        return NULL;
    }
    self->bridge = pl_dealer_socket_new (PL_ROUTER_IDENTITY, config->bridge_endpoint, config->socket_hwm);
    self->monitor = pl_monitor_new (config, "router", 0);
    if (self->monitor) {
        pl_monitor_watch (self->monitor, self->frontend, "peers");
        pl_monitor_watch (self->monitor, self->bridge, "bridge");
    }

    self->conns = pl_peers_new (config->peer_timeout_ms, s_conn_rooms_destroy);
    self->rooms = zhashx_new ();
    zhashx_set_destructor (self->rooms, s_room_destroy);
    self->to_load = zlistx_new ();
    assert (self->to_load);
    zlistx_set_destructor (self->to_load, pl_free_item);
    self->loads = zhashx_new ();
    assert (self->loads);
    zhashx_set_destructor (self->loads, s_load_destroy);
    self->stores = pl_peers_new (config->peer_timeout_ms, NULL);
    pl_every_init (&self->heartbeat, config->peer_heartbeat_ms);
    pl_every_init (&self->tick, TICK_MS);
    pl_every_init (&self->status, config->status_interval_ms);
    pl_every_init (&self->heap_trim, config->heap_trim_interval_ms);
    pl_every_init (&self->unread_tick, config->unread_interval_ms);
    self->unread = pl_unread_new (&s_unread_ops, self, config->request_timeout_ms);
    assert (self->unread);
    self->presence = pl_presence_new (config->host_id, (int64_t) config->presence_timeout_s * 1000,
                                      (size_t) config->broadcast_max_bytes, &s_presence_ops, self,
                                      pl_mono_ms ());
    assert (self->presence);
    pl_every_init (&self->presence_tick, 1000);
    self->room_gets = zhashx_new ();
    assert (self->room_gets);
    zhashx_set_destructor (self->room_gets, pl_free_item);
    return self;
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (self) {
        pl_unread_destroy (&self->unread);
        pl_presence_destroy (&self->presence);
        zhashx_destroy (&self->room_gets);
        zlistx_destroy (&self->to_load);
        zhashx_destroy (&self->loads);
        zhashx_destroy (&self->rooms);
        pl_peers_destroy (&self->conns);
        pl_peers_destroy (&self->stores);
        zsock_destroy (&self->bridge);
        zsock_destroy (&self->frontend);
        //  After the sockets it watches (see pl_monitor.h)
        pl_monitor_destroy (&self->monitor);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Sending

//  Send to a peer of the frontend; a full or gone peer is counted, not fatal.
static int
s_send_to (self_t *self, pl_msg_t *message, const char *identity)
{
    if (pl_msg_send_copy (message, self->frontend, identity)) {
        self->dropped++;
        pl_log_debug ("%s to '%s' not delivered: %s", pl_msg_command_name (pl_msg_command (message)),
                      identity, zmq_strerror (zmq_errno ()));
        return -1;
    }
    return 0;
}

//  Answer a request that came from a connection actor.
static void
s_reply (self_t *self, const pl_msg_t *request, uint32_t status, const char *text)
{
    pl_msg_t *result = pl_reply_new (request, status, text);
    s_send_to (self, result, pl_msg_routing_id (request));
    pl_msg_destroy (&result);
}

//  Send to persistence actors in turn, skipping those that are gone.
static int
s_send_to_store (self_t *self, pl_msg_t *message)
{
    size_t tries = pl_peers_size (self->stores);
    while (tries--) {
        pl_peer_t *store = pl_peers_pick (self->stores, 0);
        if (pl_msg_send_copy (message, self->frontend, store->id) == 0)
            return 0;
        if (zmq_errno () == EHOSTUNREACH) {
            pl_log_info ("persistence actor %s is gone", store->id);
            pl_peers_remove (self->stores, store);
        }
    }
    return -1;
}

//  --------------------------------------------------------------------------
//  Rooms and members

static room_t *
s_room_require (self_t *self, const char *room_id)
{
    room_t *room = (room_t *) zhashx_lookup (self->rooms, room_id);
    if (!room) {
        room = (room_t *) zmalloc (sizeof (room_t));
        assert (room);
        room->room_id = strdup (room_id);
        room->conns = s_set_new ();
        room->waiters = zlistx_new ();
        zlistx_set_destructor (room->waiters, s_waiter_destroy);
        zhashx_insert (self->rooms, room_id, room);
    }
    return room;
}

static bool
s_room_members_fresh (self_t *self, room_t *room)
{
    return room->members
        && pl_mono_ms () - room->loaded_at < self->config->member_cache_ms;
}

//  Forward a SEND or REPLAY to the bridge, the reply comes back with route set.
static void
s_forward_send (self_t *self, pl_msg_t *request)
{
    pl_msg_set_route (request, pl_msg_routing_id (request));
    if (pl_msg_send_copy (request, self->bridge, NULL))
        s_reply (self, request, 503, "stream bridge unavailable, try again");
}

//  Decide an AUTHZ or SEND with a loaded member list.
static void
s_decide (self_t *self, room_t *room, pl_msg_t *request)
{
    char text [160];
    //  A room that does not exist is one the user is not a member of: the
    //  same answer, or anyone could test which pairs talk (issue 8)
    if (!room->exists || !zhashx_lookup (room->members, pl_msg_user (request))) {
        snprintf (text, sizeof text, "not a member of room %s", room->room_id);
        s_reply (self, request, 403, text);
        self->not_member++;
    }
    else
    if (pl_msg_command (request) == PL_MSG_SEND || pl_msg_command (request) == PL_MSG_REPLAY)
        s_forward_send (self, request);
    else {
        //  The subscription counts from here: the connection actor wants
        //  the room before its client hears RECEIPT, so no message that the
        //  router sees after this answer can miss it (its own JOIN may
        //  still be on the way)
        s_conn_join (self, pl_msg_routing_id (request), room->room_id);
        s_reply (self, request, 200, NULL);
    }
}

static void
s_room_fail_waiters (self_t *self, room_t *room, uint32_t status, const char *text)
{
    waiter_t *waiter = (waiter_t *) zlistx_first (room->waiters);
    while (waiter) {
        s_reply (self, waiter->request, status, text);
        waiter = (waiter_t *) zlistx_next (room->waiters);
    }
    zlistx_purge (room->waiters);
}

//  The answer of the member query out for room, if any, is not for it now
static void
s_room_stop_loading (room_t *room)
{
    room->loading_corr = 0;
}

//  Ask for room's members with this turn's other rooms (s_self_flush_loads)
static void
s_room_load_members (self_t *self, room_t *room)
{
    if (room->loading_corr || room->load_queued)
        return;
    char *room_id = strdup (room->room_id);
    assert (room_id);
    zlistx_add_end (self->to_load, room_id);
    room->load_queued = true;
}

//  The rooms queued, member-load-batch to a rooms.members query, with one
//  query out per persistence actor: what comes meanwhile waits for the next
//  answer and goes in one query with the rest. A connect storm asks for
//  thousands of rooms; one query each made the store the bottleneck, and
//  queries queued in a store aged past their deadline there (FerretDB scans
//  the rooms for each). A lone room still goes at once. With no persistence
//  actor at all, waiters stay until their deadline: one may connect
//  meanwhile (s_store_seen).
static void
s_self_flush_loads (self_t *self)
{
    if (zlistx_size (self->to_load) == 0)
        return;
    int64_t deadline = pl_mono_ms () + self->config->request_timeout_ms / 2;
    size_t window = pl_peers_size (self->stores);
    if (window == 0)
        window = 1;             //  the send fails, and the rooms wait
    while (zlistx_size (self->to_load) && zhashx_size (self->loads) < window) {
        load_t *load = (load_t *) zmalloc (sizeof (load_t));
        assert (load);
        load->room_ids = zlistx_new ();
        assert (load->room_ids);
        zlistx_set_destructor (load->room_ids, pl_free_item);
        load->deadline = deadline;
        json_t *ids = json_array ();
        while (zlistx_size (self->to_load)
        &&     zlistx_size (load->room_ids) < (size_t) self->config->member_load_batch) {
            char *room_id = (char *) zlistx_detach (self->to_load, NULL);
            room_t *room = (room_t *) zhashx_lookup (self->rooms, room_id);
            if (room && room->load_queued) {
                room->load_queued = false;
                json_array_append_new (ids, json_string (room_id));
                zlistx_add_end (load->room_ids, room_id);
            }
            else
                free (room_id);     //  gone meanwhile
        }
        s_self_send_load (self, load, ids);
        json_decref (ids);
    }
}

//  AUTHZ, SEND or REPLAY: decide now when the member list is fresh, else
//  wait for it.
static void
s_self_handle_membership_request (self_t *self, pl_msg_t **request_p)
{
    pl_msg_t *request = *request_p;
    if (!pl_id_valid (pl_msg_room (request)) || !pl_id_valid (pl_msg_user (request))) {
        s_reply (self, request, 400, "invalid room or user id");
        pl_msg_destroy (request_p);
        return;
    }
    room_t *room = s_room_require (self, pl_msg_room (request));
    //  Every change of members drops the list (ROOM_CHANGED, from any
    //  host), so a list that only aged past member-cache-ms is still right:
    //  it decides now while a fresh one loads. Sends never wait behind a
    //  busy store for a list they have (issue 8: a store slowed by a storm
    //  made every SEND of every room wait, then fail).
    if (room->members) {
        s_decide (self, room, request);
        pl_msg_destroy (request_p);
        if (!s_room_members_fresh (self, room))
            s_room_load_members (self, room);
        return;
    }
    waiter_t *waiter = (waiter_t *) zmalloc (sizeof (waiter_t));
    assert (waiter);
    waiter->request = request;
    waiter->deadline = pl_mono_ms () + self->config->request_timeout_ms;
    *request_p = NULL;
    zlistx_add_end (room->waiters, waiter);
    s_room_load_members (self, room);
}

//  Room's member list as the store gave it: a JSON array, or null (no such
//  room); then every waiter is decided
static void
s_room_set_members (self_t *self, room_t *room, json_t *array)
{
    zhashx_t *members = s_set_new ();
    size_t index;
    json_t *member;
    json_array_foreach (array, index, member)
        if (json_is_string (member))
            zhashx_insert (members, json_string_value (member), (void *) 1);
    zhashx_destroy (&room->members);
    room->members = members;
    room->exists = json_is_array (array);
    room->loaded_at = pl_mono_ms ();

    waiter_t *waiter = (waiter_t *) zlistx_first (room->waiters);
    while (waiter) {
        s_decide (self, room, waiter->request);
        waiter = (waiter_t *) zlistx_next (room->waiters);
    }
    zlistx_purge (room->waiters);
}

//  One rooms.members query to a store; the rooms wait for its answer
static void
s_self_send_load (self_t *self, load_t *load, json_t *ids)
{
    if (zlistx_size (load->room_ids) == 0) {
        s_load_destroy ((void **) &load);
        return;
    }
    char *body = json_dumps (ids, JSON_COMPACT);
    assert (body);
    pl_msg_t *query = pl_msg_new (PL_MSG_QUERY);
    pl_msg_set_operation (query, "rooms.members");
    pl_msg_set_body (query, body, strlen (body));
    pl_msg_set_corr (query, ++self->next_corr);
    free (body);
    bool sent = s_send_to_store (self, query) == 0;
    pl_msg_destroy (&query);
    if (!sent) {
        s_load_destroy ((void **) &load);
        return;
    }
    for (const char *room_id = (const char *) zlistx_first (load->room_ids); room_id;
         room_id = (const char *) zlistx_next (load->room_ids)) {
        room_t *room = (room_t *) zhashx_lookup (self->rooms, room_id);
        room->loading_corr = self->next_corr;
        room->loading_deadline = load->deadline;
    }
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, self->next_corr);
    zhashx_insert (self->loads, key, load);
}

//  The answer to our own rooms.members query: {room id: [members] or null}
static void
s_self_handle_members (self_t *self, pl_msg_t *result)
{
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, pl_msg_corr (result));
    load_t *load = (load_t *) zhashx_lookup (self->loads, key);
    if (!load)
        return;                 //  late answer, its rooms gave up already
    json_t *answer = pl_msg_status (result) == 200?
                     json_loadb (pl_msg_body (result), pl_msg_body_size (result), 0, NULL): NULL;
    for (const char *room_id = (const char *) zlistx_first (load->room_ids); room_id;
         room_id = (const char *) zlistx_next (load->room_ids)) {
        room_t *room = (room_t *) zhashx_lookup (self->rooms, room_id);
        if (!room || room->loading_corr != pl_msg_corr (result))
            continue;           //  gone, or asking again after a change
        s_room_stop_loading (room);
        json_t *members = json_object_get (answer, room_id);
        if (!json_is_object (answer) || !(json_is_array (members) || json_is_null (members)))
            s_room_fail_waiters (self, room, 503, "persistence unavailable, try again");
        else
            s_room_set_members (self, room, members);
    }
    json_decref (answer);
    zhashx_delete (self->loads, key);
}

//  A room's members changed: the next AUTHZ or SEND loads them again.
static void
s_self_forget_members (self_t *self, const char *room_id)
{
    room_t *room = (room_t *) zhashx_lookup (self->rooms, room_id);
    if (!room)
        return;
    zhashx_destroy (&room->members);
    //  A load under way may have read the members before the change: its
    //  answer is dropped, and who waits asks again
    if (room->loading_corr) {
        s_room_stop_loading (room);
        if (zlistx_size (room->waiters))
            s_room_load_members (self, room);
    }
}

//  --------------------------------------------------------------------------
//  Peers

//  A connection actor was heard from: known (with an empty room set) now.
static pl_peer_t *
s_conn_require (self_t *self, const char *identity)
{
    bool added = false;
    pl_peer_t *conn = pl_peers_seen (self->conns, identity, pl_mono_ms (), &added);
    if (added)
        conn->data = s_set_new ();
    return conn;
}

//  A connection actor wants a room's messages (idempotent).
static void
s_conn_join (self_t *self, const char *identity, const char *room_id)
{
    pl_peer_t *conn = s_conn_require (self, identity);
    room_t *room = s_room_require (self, room_id);
    zhashx_update (room->conns, identity, conn);
    zhashx_update ((zhashx_t *) conn->data, room_id, (void *) 1);
}

static void
s_conn_leave (self_t *self, pl_peer_t *conn, const char *room_id)
{
    room_t *room = (room_t *) zhashx_lookup (self->rooms, room_id);
    if (room)
        zhashx_delete (room->conns, conn->id);
    zhashx_delete ((zhashx_t *) conn->data, room_id);
}

//  Forget a connection actor and all the rooms it wanted.
static void
s_conn_forget (self_t *self, pl_peer_t *conn)
{
    zlistx_t *rooms = zhashx_keys ((zhashx_t *) conn->data);
    for (const char *room_id = (const char *) zlistx_first (rooms); room_id;
         room_id = (const char *) zlistx_next (rooms))
        s_conn_leave (self, conn, room_id);
    zlistx_destroy (&rooms);
    pl_unread_conn_gone (self->unread, conn->id);
    pl_presence_conn_gone (self->presence, conn->id, pl_mono_ms ());
    pl_peers_remove (self->conns, conn);
}

static void
s_store_seen (self_t *self, const char *identity)
{
    bool added = false;
    pl_peers_seen (self->stores, identity, pl_mono_ms (), &added);
    if (added) {
        pl_log_info ("persistence actor %s connected", identity);
        //  Rooms that waited for a store can ask now
        room_t *room = (room_t *) zhashx_first (self->rooms);
        zlistx_t *pending = zlistx_new ();
        while (room) {
            if (zlistx_size (room->waiters) && !room->loading_corr)
                zlistx_add_end (pending, room);
            room = (room_t *) zhashx_next (self->rooms);
        }
        for (room = (room_t *) zlistx_first (pending); room; room = (room_t *) zlistx_next (pending))
            s_room_load_members (self, room);
        zlistx_destroy (&pending);
    }
}

//  --------------------------------------------------------------------------
//  Handlers

//  What the host can do now, for the connection actors' /readyz: bit 0 a
//  persistence actor is there, bit 1 the bridge has Redis.
static uint32_t
s_self_readiness (self_t *self)
{
    uint32_t readiness = 0;
    if (pl_peers_size (self->stores))
        readiness |= PL_READY_STORE;
    //  The bridge answers every heartbeat; the one liveness rule applies
    if (self->bridge_ready_at && pl_mono_ms () - self->bridge_ready_at <= self->config->peer_timeout_ms)
        readiness |= PL_READY_BRIDGE;
    return readiness;
}

//  A room.get on its way to a store: its answer gets "online" on the way back
static void
s_self_note_room_get (self_t *self, pl_msg_t *query)
{
    if (!streq (pl_msg_operation (query), "room.get"))
        return;
    char key [128];
    snprintf (key, sizeof key, "%s %" PRIu64, pl_msg_route (query), pl_msg_corr (query));
    room_get_t *get = (room_get_t *) zmalloc (sizeof (room_get_t));
    assert (get);
    snprintf (get->room, sizeof get->room, "%s", pl_msg_room (query));
    get->deadline = pl_mono_ms () + self->config->request_timeout_ms;
    zhashx_update (self->room_gets, key, get);
}

//  The answer of a room.get: the users online in the room, from presence
static void
s_self_add_online (self_t *self, pl_msg_t *result)
{
    char key [128];
    snprintf (key, sizeof key, "%s %" PRIu64, pl_msg_route (result), pl_msg_corr (result));
    room_get_t *get = (room_get_t *) zhashx_lookup (self->room_gets, key);
    if (!get)
        return;
    const char *room = get->room;
    json_t *answer = pl_msg_status (result) == 200?
                     json_loadb (pl_msg_body (result), pl_msg_body_size (result), 0, NULL): NULL;
    if (json_is_object (answer)) {
        json_object_set_new (answer, "online", pl_presence_online (self->presence, room));
        char *text = json_dumps (answer, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (text)
            pl_msg_set_body (result, text, strlen (text));
        free (text);
    }
    json_decref (answer);
    zhashx_delete (self->room_gets, key);
}

//  What a connection actor says about itself and its clients: HELLO,
//  PING, JOIN/LEAVE, WATCH/UNWATCH, PRESENT/ABSENT. False when the message
//  is none of these.
static bool
s_self_handle_conn_state (self_t *self, pl_msg_t *message, const char *from)
{
    pl_peer_t *conn = pl_peers_find (self->conns, from);
    switch (pl_msg_command (message)) {
        case PL_MSG_HELLO:
            //  A (re)started connection actor: it sends its JOINs next
            if (conn)
                s_conn_forget (self, conn);
            s_conn_require (self, from);
            pl_log_info ("connection actor %s connected", from);
            return true;
        case PL_MSG_PING: {
            //  The answer tells a known one its router is alive (and what
            //  the host is ready for), an unknown one to announce itself
            pl_msg_t *answer = pl_msg_new (conn? PL_MSG_PING: PL_MSG_RESYNC);
            if (conn) {
                s_conn_require (self, from);
                pl_msg_set_readiness (answer, s_self_readiness (self));
            }
            s_send_to (self, answer, from);
            pl_msg_destroy (&answer);
            return true;
        }
        case PL_MSG_JOIN:
            if (pl_id_valid (pl_msg_room (message)))
                s_conn_join (self, from, pl_msg_room (message));
            return true;
        case PL_MSG_LEAVE:
            if (conn)
                s_conn_leave (self, conn, pl_msg_room (message));
            return true;
        case PL_MSG_WATCH:
            if (conn)
                pl_unread_watch (self->unread, from, pl_msg_user (message));
            return true;
        case PL_MSG_UNWATCH:
            pl_unread_unwatch (self->unread, from, pl_msg_user (message));
            return true;
        case PL_MSG_PRESENT:
            if (conn)
                pl_presence_present (self->presence, from, pl_msg_room (message), pl_msg_user (message),
                                     pl_mono_ms ());
            return true;
        case PL_MSG_ABSENT:
            pl_presence_absent (self->presence, from, pl_msg_room (message), pl_msg_user (message),
                                pl_mono_ms ());
            return true;
        default:
            return false;
    }
}

//  A RESULT from a persistence actor: the router's own question (no
//  route), or an answer for a connection actor
static void
s_self_handle_result (self_t *self, pl_msg_t *result)
{
    if (*pl_msg_route (result) == 0) {
        if (!pl_unread_answer (self->unread, pl_msg_corr (result), pl_msg_status (result),
                               pl_msg_body (result), pl_msg_body_size (result)))
            s_self_handle_members (self, result);
    }
    else {
        s_self_add_online (self, result);
        s_send_to (self, result, pl_msg_route (result));
    }
}

//  A message from a connection or persistence actor (a pl_drain_fn).
static void
s_self_handle_frontend (void *actor, pl_msg_t **message_p)
{
    self_t *self = (self_t *) actor;
    pl_msg_t *message = *message_p;
    const char *from = pl_msg_routing_id (message);
    //  Any message from a known store is a sign of life: a busy store's
    //  RESULTs count as much as its HELLO
    pl_peer_t *store = pl_peers_find (self->stores, from);
    if (store)
        store->last_seen = pl_mono_ms ();
    if (pl_msg_command (message) == PL_MSG_HELLO && streq (pl_msg_role (message), "store"))
        s_store_seen (self, from);
    else
    if (pl_msg_command (message) == PL_MSG_HELLO && !streq (pl_msg_role (message), "conn"))
        pl_log_warning ("HELLO of an unknown role from %s", from);
    else
    if (!s_self_handle_conn_state (self, message, from))
        switch (pl_msg_command (message)) {
            case PL_MSG_AUTHZ:
            case PL_MSG_SEND:
            case PL_MSG_REPLAY:
                s_self_handle_membership_request (self, message_p);
                break;
            case PL_MSG_QUERY:
                pl_msg_set_route (message, from);
                s_self_note_room_get (self, message);
                if (s_send_to_store (self, message))
                    s_reply (self, message, 503, "{\"error\":\"persistence unavailable, try again\"}");
                break;
            case PL_MSG_RESULT:
                s_self_handle_result (self, message);
                break;
            case PL_MSG_ROOM_CHANGED:
                //  Here now, and through the bridge on every other host
                s_self_forget_members (self, pl_msg_room (message));
                pl_msg_send_copy (message, self->bridge, NULL);
                break;
            default:
                pl_log_warning ("unexpected %s from %s", pl_msg_command_name (pl_msg_command (message)), from);
        }
    pl_msg_destroy (message_p);
}

//  A user event to every session of user on this host: every conn gets it,
//  each hands it to that user's sessions (the router does not track users)
static void
s_self_user_event (self_t *self, const char *user, json_t *event)
{
    char *body = json_dumps (event, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!body || !pl_id_valid (user)) {
        free (body);
        return;
    }
    pl_msg_t *deliver = s_event_new (NULL, user, body, strlen (body));
    free (body);
    for (pl_peer_t *conn = pl_peers_first (self->conns); conn; conn = pl_peers_next (self->conns))
        s_send_to (self, deliver, conn->id);
    pl_msg_destroy (&deliver);
}

//  A change of members heard from the stream: ROOM_ADDED to the added
//  user (or every member of a new room), ROOM_REMOVED to the removed one
static void
s_self_room_event (self_t *self, pl_msg_t *changed)
{
    const char *type = pl_msg_type (changed);
    const char *target = pl_msg_target_user (changed);
    if (streq (type, "ROOM_REMOVED")) {
        pl_unread_room_removed (self->unread, pl_msg_room (changed), target);
        json_t *event = json_pack ("{s:s, s:s}", "type", "ROOM_REMOVED", "roomId", pl_msg_room (changed));
        if (event)
            s_self_user_event (self, target, event);
        json_decref (event);
        return;
    }
    if (!streq (type, "ROOM_ADDED"))
        return;
    json_t *room = json_loadb (pl_msg_body (changed), pl_msg_body_size (changed), 0, NULL);
    json_t *event = json_is_object (room)? json_pack ("{s:s, s:O}", "type", "ROOM_ADDED", "room", room): NULL;
    if (event && *target) {
        s_self_user_event (self, target, event);
        pl_unread_room_added (self->unread, pl_msg_room (changed), target);
    }
    else
    if (event) {
        size_t index;
        json_t *member;
        json_array_foreach (json_object_get (room, "members"), index, member)
            if (json_is_string (member)) {
                s_self_user_event (self, json_string_value (member), event);
                pl_unread_room_added (self->unread, pl_msg_room (changed), json_string_value (member));
            }
    }
    json_decref (event);
    json_decref (room);
}

//  What a room's DELIVER changes in the unread counts of users watched
//  here: a message makes the room due, a READ_STATUS the reader's count
//  (parsed only for rooms a watched user is in)
static void
s_self_unread_deliver (self_t *self, pl_msg_t *deliver)
{
    const char *room = pl_msg_room (deliver);
    if (!pl_unread_knows_room (self->unread, room))
        return;
    if (pl_msg_seq (deliver)) {
        pl_unread_message (self->unread, room, pl_msg_seq (deliver));
        return;
    }
    json_t *event = json_loadb (pl_msg_body (deliver), pl_msg_body_size (deliver), 0, NULL);
    const char *reader = json_string_value (json_object_get (event, "readerId"));
    if (reader && streq_safe (json_string_value (json_object_get (event, "type")), "READ_STATUS"))
        pl_unread_read (self->unread, room, reader);
    json_decref (event);
}

//  What some host's router or bridge said to every host, parsed once: a
//  TYPING goes to the room's subscribers here, but not to its sender's
//  own sessions; the rest is presence
static void
s_self_handle_broadcast (self_t *self, pl_msg_t *broadcast)
{
    json_t *said = json_loadb (pl_msg_body (broadcast), pl_msg_body_size (broadcast), 0, NULL);
    if (streq_safe (json_string_value (json_object_get (said, "type")), "TYPING")) {
        const char *room = json_string_value (json_object_get (said, "roomId"));
        const char *sender = json_string_value (json_object_get (said, "senderId"));
        if (room && pl_id_valid (room) && sender && pl_id_valid (sender)) {
            pl_msg_t *deliver = s_event_new (room, sender, pl_msg_body (broadcast),
                                             pl_msg_body_size (broadcast));
            s_self_to_room (self, room, deliver);
            pl_msg_destroy (&deliver);
        }
    }
    else
    if (said)
        pl_presence_heard (self->presence, said, pl_mono_ms ());
    json_decref (said);
}

//  A message from the stream bridge (a pl_drain_fn).
static void
s_self_handle_bridge (void *actor, pl_msg_t **message_p)
{
    self_t *self = (self_t *) actor;
    pl_msg_t *message = *message_p;
    if (pl_msg_command (message) == PL_MSG_DELIVER) {
        s_self_unread_deliver (self, message);
        s_self_to_room (self, pl_msg_room (message), message);
    }
    else
    if (pl_msg_command (message) == PL_MSG_RESULT)
        s_send_to (self, message, pl_msg_route (message));
    else
    if (pl_msg_command (message) == PL_MSG_ROOM_CHANGED) {
        s_self_forget_members (self, pl_msg_room (message));
        s_self_room_event (self, message);
    }
    else
    if (pl_msg_command (message) == PL_MSG_BROADCAST)
        s_self_handle_broadcast (self, message);
    else
    if (pl_msg_command (message) == PL_MSG_PING) {
        if (pl_msg_readiness (message) & PL_READY_BRIDGE)
            self->bridge_ready_at = pl_mono_ms ();
    }
    else
        pl_log_warning ("unexpected %s from the bridge", pl_msg_command_name (pl_msg_command (message)));
}

//  The status record: what an operator sees in parleyctl and /metrics.
static void
s_self_report (self_t *self)
{
    size_t members_cached = 0;
    for (room_t *room = (room_t *) zhashx_first (self->rooms); room;
         room = (room_t *) zhashx_next (self->rooms))
        members_cached += room->members != NULL;
    pl_monitor_report (self->monitor, json_pack ("{s:I, s:I, s:I, s:I, s:I, s:b, s:I}",
        "rooms", (json_int_t) zhashx_size (self->rooms),
        "rooms_with_members_cached", (json_int_t) members_cached,
        "connection_actors", (json_int_t) pl_peers_size (self->conns),
        "persistence_actors", (json_int_t) pl_peers_size (self->stores),
        "undelivered", (json_int_t) self->dropped,
        "bridge_ready", (s_self_readiness (self) & PL_READY_BRIDGE) != 0,
        "not_member_refused", (json_int_t) self->not_member));
}

//  Peers silent past the peer timeout are gone: a connection actor's rooms
//  with it, a persistence actor from the turns.
static void
s_self_expire_peers (self_t *self, int64_t now)
{
    pl_peer_t *peer;
    while ((peer = pl_peers_expired (self->conns, now))) {
        pl_log_info ("connection actor %s went silent", peer->id);
        s_conn_forget (self, peer);
    }
    while ((peer = pl_peers_expired (self->stores, now))) {
        pl_log_info ("persistence actor %s went silent", peer->id);
        pl_peers_remove (self->stores, peer);
    }
}

//  Member loads and waiters past their deadline fail with 503; rooms that
//  nobody wants any more are dropped.
static void
s_self_expire_rooms (self_t *self, int64_t now)
{
    zlistx_t *gone = zlistx_new ();
    for (room_t *room = (room_t *) zhashx_first (self->rooms); room;
         room = (room_t *) zhashx_next (self->rooms)) {
        if (room->loading_corr && now >= room->loading_deadline) {
            s_room_stop_loading (room);
            s_room_fail_waiters (self, room, 503, "persistence unavailable, try again");
        }
        //  Waiters for a room nobody could ask yet (no store connected)
        waiter_t *waiter = (waiter_t *) zlistx_first (room->waiters);
        while (waiter) {
            if (now >= waiter->deadline) {
                s_reply (self, waiter->request, 503, "persistence unavailable, try again");
                zlistx_delete (room->waiters, zlistx_cursor (room->waiters));
                waiter = (waiter_t *) zlistx_first (room->waiters);
            }
            else
                waiter = (waiter_t *) zlistx_next (room->waiters);
        }
        if (zhashx_size (room->conns) == 0 && zlistx_size (room->waiters) == 0
        &&  !room->loading_corr && !s_room_members_fresh (self, room))
            zlistx_add_end (gone, room->room_id);
    }
    for (char *room_id = (char *) zlistx_first (gone); room_id;
         room_id = (char *) zlistx_next (gone))
        zhashx_delete (self->rooms, room_id);
    zlistx_destroy (&gone);
}

//  Timers: heart-beat to the bridge, status, deadlines, silent peers.
static void
s_self_handle_tick (self_t *self)
{
    int64_t now = pl_mono_ms ();
    if (pl_every_due (&self->heartbeat, now)) {
        pl_msg_t *hello = pl_msg_new (PL_MSG_HELLO);
        pl_msg_set_role (hello, "router");
        pl_msg_set_actor_name (hello, self->config->host_id);
        pl_msg_send (&hello, self->bridge);
    }
    pl_notify_watchdog ();
    if (pl_every_due (&self->unread_tick, now))
        pl_unread_tick (self->unread);
    if (pl_every_due (&self->presence_tick, now))
        pl_presence_tick (self->presence, now);
    if (!pl_every_due (&self->tick, now))
        return;
    if (s_self_readiness (self) == (PL_READY_STORE | PL_READY_BRIDGE))
        pl_notify_ready ("routing: persistence and bridge reachable");
    if (pl_every_due (&self->status, now))
        s_self_report (self);
    if (pl_every_due (&self->heap_trim, now))
        pl_heap_trim ();
    s_self_expire_peers (self, now);
    s_self_expire_rooms (self, now);
    //  room.get answers that never came (the requester gave up already)
    zlistx_t *keys = zhashx_keys (self->room_gets);
    for (const char *key = keys? (const char *) zlistx_first (keys): NULL; key;
         key = (const char *) zlistx_next (keys)) {
        room_get_t *get = (room_get_t *) zhashx_lookup (self->room_gets, key);
        if (now > get->deadline)
            zhashx_delete (self->room_gets, key);
    }
    zlistx_destroy (&keys);
    //  rooms.members answers that never came (each room failed its waiters)
    keys = zhashx_keys (self->loads);
    for (const char *key = keys? (const char *) zlistx_first (keys): NULL; key;
         key = (const char *) zlistx_next (keys)) {
        load_t *load = (load_t *) zhashx_lookup (self->loads, key);
        if (now > load->deadline)
            zhashx_delete (self->loads, key);
    }
    zlistx_destroy (&keys);
}

void
pl_router_actor (zsock_t *pipe, void *args)
{
    const pl_config_t *config = (const pl_config_t *) args;
    pl_log_set_actor ("router");
    self_t *self = s_self_new (pipe, config);
    if (!self) {
        zsock_signal (pipe, 1);
        return;
    }
    zsock_signal (pipe, 0);
    pl_log_info ("listening on %s, bridge at %s", config->router_endpoint, config->bridge_endpoint);

    zpoller_t *poller = zpoller_new (pipe, self->frontend, self->bridge, NULL);
    //  Signals are the main thread's business: it sends $TERM, and the
    //  actor drains and stops only then
    zpoller_set_nonstop (poller, true);
    while (!self->terminated) {
        zsock_t *which = (zsock_t *) zpoller_wait (poller, TICK_MS);
        if (which == pipe) {
            char *command = zstr_recv (pipe);
            if (!command || streq (command, "$TERM"))
                self->terminated = true;
            zstr_free (&command);
        }
        //  zpoller checks ZMQ_EVENTS, so what a budget leaves wakes it again
        int budget = self->config->drain_budget;
        pl_drain (self->frontend, budget, "peers", s_self_handle_frontend, self);
        pl_drain (self->bridge, budget, "bridge", s_self_handle_bridge, self);
        s_self_handle_tick (self);
        s_self_flush_loads (self);
    }
    zpoller_destroy (&poller);
    s_self_destroy (&self);
}
