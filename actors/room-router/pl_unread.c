/*  =========================================================================
    pl_unread - the users watched on this host and their unread counts
    =========================================================================
*/
#include "pl_unread.h"
#include "pl_util.h"

#include <czmq.h>
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  One room of a watched user
typedef struct {
    int64_t sent;               //  the count last told, -1: none yet
    bool due;                   //  changed since it was last asked
} room_state_t;

//  A user some connection actor here watches
typedef struct {
    char *user;
    zhashx_t *conns;            //  conn id -> itself (a set)
    zhashx_t *rooms;            //  room id -> room_state_t
    bool loaded;                //  every room asked for and answered once
    uint64_t asking;            //  the corr of the question out, 0: none
    int64_t asked_at;           //  monotonic ms it went out
} watched_t;

//  A room some watched user is in
typedef struct {
    zhashx_t *users;            //  user -> watched_t (not owned)
    uint64_t last_seq;          //  the highest seq seen in the stream
} room_t;

struct _pl_unread_t {
    const pl_unread_ops_t *ops;
    void *arg;
    zhashx_t *users;            //  user -> watched_t
    zhashx_t *rooms;            //  room id -> room_t
    zhashx_t *asked;            //  corr -> watched_t (not owned)
    int64_t timeout_ms;         //  an answer later than this is not waited for
};

static void
s_watched_destroy (watched_t **self_p)
{
    watched_t *self = *self_p;
    if (self) {
        zhashx_destroy (&self->conns);
        zhashx_destroy (&self->rooms);
        free (self->user);
        free (self);
        *self_p = NULL;
    }
}

static void
s_room_destroy (room_t **self_p)
{
    if (*self_p) {
        zhashx_destroy (&(*self_p)->users);
        free (*self_p);
        *self_p = NULL;
    }
}

pl_unread_t *
pl_unread_new (const pl_unread_ops_t *ops, void *arg, int64_t timeout_ms)
{
    assert (ops && ops->ask && ops->event);
    pl_unread_t *self = (pl_unread_t *) calloc (1, sizeof (pl_unread_t));
    if (!self)
        return NULL;
    self->ops = ops;
    self->arg = arg;
    self->timeout_ms = timeout_ms;
    self->users = zhashx_new ();
    self->rooms = zhashx_new ();
    self->asked = zhashx_new ();
    if (!self->users || !self->rooms || !self->asked) {
        pl_unread_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->users, (zhashx_destructor_fn *) s_watched_destroy);
    zhashx_set_destructor (self->rooms, (zhashx_destructor_fn *) s_room_destroy);
    return self;
}

void
pl_unread_destroy (pl_unread_t **self_p)
{
    pl_unread_t *self = *self_p;
    if (self) {
        zhashx_destroy (&self->asked);
        zhashx_destroy (&self->rooms);
        zhashx_destroy (&self->users);
        free (self);
        *self_p = NULL;
    }
}


//  --------------------------------------------------------------------------
//  Rooms of watched users

//  user is in room from now on; returns its state there, or NULL
static room_state_t *
s_join (pl_unread_t *self, watched_t *watched, const char *room_id)
{
    room_state_t *state = (room_state_t *) zhashx_lookup (watched->rooms, room_id);
    if (state)
        return state;
    room_t *room = (room_t *) zhashx_lookup (self->rooms, room_id);
    if (!room) {
        room = (room_t *) calloc (1, sizeof (room_t));
        if (!room || !(room->users = zhashx_new ())) {
            free (room);
            return NULL;
        }
        zhashx_insert (self->rooms, room_id, room);
    }
    state = (room_state_t *) calloc (1, sizeof (room_state_t));
    if (!state)
        return NULL;
    state->sent = -1;
    zhashx_insert (watched->rooms, room_id, state);
    zhashx_update (room->users, watched->user, watched);
    return state;
}

static void
s_leave (pl_unread_t *self, watched_t *watched, const char *room_id)
{
    room_t *room = (room_t *) zhashx_lookup (self->rooms, room_id);
    if (room) {
        zhashx_delete (room->users, watched->user);
        if (zhashx_size (room->users) == 0)
            zhashx_delete (self->rooms, room_id);
    }
    zhashx_delete (watched->rooms, room_id);
}

//  Nobody here watches the user any more
static void
s_forget (pl_unread_t *self, watched_t *watched)
{
    zlistx_t *rooms = zhashx_keys (watched->rooms);
    for (const char *room = rooms? (const char *) zlistx_first (rooms): NULL; room;
         room = (const char *) zlistx_next (rooms))
        s_leave (self, watched, room);
    zlistx_destroy (&rooms);
    if (watched->asking) {
        char key [24];
        snprintf (key, sizeof key, "%" PRIu64, watched->asking);
        zhashx_delete (self->asked, key);
    }
    zhashx_delete (self->users, watched->user);
}


//  --------------------------------------------------------------------------
//  Events out, questions out

//  The UNREAD of a room to one connection actor, or to all of the user's
static void
s_tell (pl_unread_t *self, watched_t *watched, const char *conn, const char *room, int64_t unread)
{
    char body [PL_ID_MAX + 80];
    snprintf (body, sizeof body, "{\"type\":\"UNREAD\",\"roomId\":\"%s\",\"unread\":%" PRId64 "}",
              room, unread);
    if (conn)
        self->ops->event (self->arg, conn, watched->user, body);
    else
        for (void *item = zhashx_first (watched->conns); item; item = zhashx_next (watched->conns))
            self->ops->event (self->arg, (const char *) zhashx_cursor (watched->conns), watched->user, body);
}

//  Ask for rooms (NULL: every room of the user); true when asked
static bool
s_ask (pl_unread_t *self, watched_t *watched, json_t *rooms)
{
    uint64_t corr = self->ops->ask (self->arg, watched->user, rooms);
    if (!corr)
        return false;
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, corr);
    zhashx_update (self->asked, key, watched);
    watched->asking = corr;
    watched->asked_at = pl_mono_ms ();
    return true;
}

//  The due rooms of a user, asked for together; their due flags go down
//  (an answer that is behind the stream raises them again)
static void
s_ask_due (pl_unread_t *self, watched_t *watched)
{
    json_t *rooms = json_array ();
    for (room_state_t *state = (room_state_t *) zhashx_first (watched->rooms); state;
         state = (room_state_t *) zhashx_next (watched->rooms))
        if (state->due)
            json_array_append_new (rooms, json_string ((const char *) zhashx_cursor (watched->rooms)));
    if (json_array_size (rooms) && s_ask (self, watched, rooms)) {
        for (room_state_t *state = (room_state_t *) zhashx_first (watched->rooms); state;
             state = (room_state_t *) zhashx_next (watched->rooms))
            state->due = false;
    }
    json_decref (rooms);
}


//  --------------------------------------------------------------------------
//  Public API

void
pl_unread_watch (pl_unread_t *self, const char *conn, const char *user)
{
    if (!pl_id_valid (user))
        return;
    watched_t *watched = (watched_t *) zhashx_lookup (self->users, user);
    if (!watched) {
        watched = (watched_t *) calloc (1, sizeof (watched_t));
        if (!watched)
            return;
        watched->user = strdup (user);
        watched->conns = zhashx_new ();
        watched->rooms = zhashx_new ();
        if (!watched->user || !watched->conns || !watched->rooms) {
            s_watched_destroy (&watched);
            return;
        }
        zhashx_set_destructor (watched->rooms, pl_free_item);
        zhashx_insert (self->users, user, watched);
        s_ask (self, watched, NULL);    //  else the next tick
    }
    else
    if (watched->loaded && !zhashx_lookup (watched->conns, conn))
        //  A newcomer here gets what the others were told
        for (room_state_t *state = (room_state_t *) zhashx_first (watched->rooms); state;
             state = (room_state_t *) zhashx_next (watched->rooms))
            if (state->sent >= 0)
                s_tell (self, watched, conn, (const char *) zhashx_cursor (watched->rooms), state->sent);
    zhashx_update (watched->conns, conn, watched);
}

void
pl_unread_unwatch (pl_unread_t *self, const char *conn, const char *user)
{
    watched_t *watched = (watched_t *) zhashx_lookup (self->users, user);
    if (!watched)
        return;
    zhashx_delete (watched->conns, conn);
    if (zhashx_size (watched->conns) == 0)
        s_forget (self, watched);
}

void
pl_unread_conn_gone (pl_unread_t *self, const char *conn)
{
    zlistx_t *users = zhashx_keys (self->users);
    for (const char *user = users? (const char *) zlistx_first (users): NULL; user;
         user = (const char *) zlistx_next (users))
        pl_unread_unwatch (self, conn, user);
    zlistx_destroy (&users);
}

bool
pl_unread_knows_room (pl_unread_t *self, const char *room)
{
    return zhashx_lookup (self->rooms, room) != NULL;
}

void
pl_unread_message (pl_unread_t *self, const char *room_id, uint64_t seq)
{
    room_t *room = (room_t *) zhashx_lookup (self->rooms, room_id);
    if (!room)
        return;
    if (seq > room->last_seq)
        room->last_seq = seq;
    for (watched_t *watched = (watched_t *) zhashx_first (room->users); watched;
         watched = (watched_t *) zhashx_next (room->users)) {
        room_state_t *state = (room_state_t *) zhashx_lookup (watched->rooms, room_id);
        if (state)
            state->due = true;
    }
}

void
pl_unread_read (pl_unread_t *self, const char *room, const char *user)
{
    watched_t *watched = (watched_t *) zhashx_lookup (self->users, user);
    room_state_t *state = watched? (room_state_t *) zhashx_lookup (watched->rooms, room): NULL;
    if (state)
        state->due = true;
}

void
pl_unread_room_added (pl_unread_t *self, const char *room, const char *user)
{
    watched_t *watched = (watched_t *) zhashx_lookup (self->users, user);
    room_state_t *state = watched && pl_id_valid (room)? s_join (self, watched, room): NULL;
    if (state)
        state->due = true;
}

void
pl_unread_room_removed (pl_unread_t *self, const char *room, const char *user)
{
    watched_t *watched = (watched_t *) zhashx_lookup (self->users, user);
    if (watched)
        s_leave (self, watched, room);
}

//  One room of an answer: told when its count changed, due again while
//  MongoDB is behind the stream
static void
s_answer_room (pl_unread_t *self, watched_t *watched, json_t *entry, bool everything)
{
    const char *room_id = json_string_value (json_object_get (entry, "roomId"));
    json_t *unread = json_object_get (entry, "unread");
    if (!room_id || !pl_id_valid (room_id) || !json_is_integer (unread))
        return;
    room_state_t *state = (room_state_t *) zhashx_lookup (watched->rooms, room_id);
    if (!state && everything)
        state = s_join (self, watched, room_id);
    if (!state)
        return;                 //  left meanwhile
    room_t *room = (room_t *) zhashx_lookup (self->rooms, room_id);
    json_int_t last_seq = json_integer_value (json_object_get (entry, "lastSeq"));
    if (room && (uint64_t) last_seq < room->last_seq)
        state->due = true;
    if (json_integer_value (unread) != state->sent) {
        state->sent = json_integer_value (unread);
        s_tell (self, watched, NULL, room_id, state->sent);
    }
}

bool
pl_unread_answer (pl_unread_t *self, uint64_t corr, uint32_t status, const char *body, size_t size)
{
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, corr);
    watched_t *watched = (watched_t *) zhashx_lookup (self->asked, key);
    if (!watched)
        return false;
    zhashx_delete (self->asked, key);
    watched->asking = 0;
    json_t *answer = status == 200? json_loadb (body, size, 0, NULL): NULL;
    json_t *rooms = json_object_get (answer, "rooms");
    if (!json_is_array (rooms)) {
        //  MongoDB away: what was asked is due again
        for (room_state_t *state = (room_state_t *) zhashx_first (watched->rooms); state;
             state = (room_state_t *) zhashx_next (watched->rooms))
            state->due = true;
        json_decref (answer);
        return true;
    }
    bool everything = !watched->loaded;
    watched->loaded = true;
    size_t index;
    json_t *entry;
    json_array_foreach (rooms, index, entry)
        s_answer_room (self, watched, entry, everything);
    json_decref (answer);
    return true;
}

void
pl_unread_tick (pl_unread_t *self)
{
    for (watched_t *watched = (watched_t *) zhashx_first (self->users); watched;
         watched = (watched_t *) zhashx_next (self->users)) {
        if (watched->asking && pl_mono_ms () - watched->asked_at > self->timeout_ms) {
            //  No answer will come: what was asked is due again
            char key [24];
            snprintf (key, sizeof key, "%" PRIu64, watched->asking);
            zhashx_delete (self->asked, key);
            watched->asking = 0;
            for (room_state_t *state = (room_state_t *) zhashx_first (watched->rooms); state;
                 state = (room_state_t *) zhashx_next (watched->rooms))
                state->due = true;
        }
        if (watched->asking)
            continue;           //  one question per user at a time
        if (!watched->loaded)
            s_ask (self, watched, NULL);
        else
            s_ask_due (self, watched);
    }
}

size_t
pl_unread_users (pl_unread_t *self)
{
    return zhashx_size (self->users);
}


//  --------------------------------------------------------------------------
//  Selftest: questions and events written down

typedef struct {
    uint64_t next_corr;
    char asked [256];           //  the last question: "u1:*" or "u1:[r1,...]"
    int asks;
    char events [1024];         //  "conn user body;" each
    bool refuse;                //  ask cannot go out
} test_t;

static uint64_t
s_test_ask (void *arg, const char *user, json_t *rooms)
{
    test_t *test = (test_t *) arg;
    if (test->refuse)
        return 0;
    char *list = rooms? json_dumps (rooms, JSON_COMPACT): strdup ("*");
    snprintf (test->asked, sizeof test->asked, "%s:%s", user, list);
    free (list);
    test->asks++;
    return ++test->next_corr;
}

static void
s_test_event (void *arg, const char *conn, const char *user, const char *body)
{
    test_t *test = (test_t *) arg;
    size_t used = strlen (test->events);
    snprintf (test->events + used, sizeof test->events - used, "%s %s %s;", conn, user, body);
}

static const pl_unread_ops_t s_test_ops = { s_test_ask, s_test_event };

static void
s_test_answer (pl_unread_t *unread, test_t *test, const char *body)
{
    test->events [0] = 0;
    pl_check (pl_unread_answer (unread, test->next_corr, 200, body, strlen (body)));
}

void
pl_unread_test (bool verbose)
{
    printf (" * pl_unread: ");
    if (verbose)
        printf ("\n");
    test_t test = { 0 };
    pl_unread_t *unread = pl_unread_new (&s_test_ops, &test, 100);
    pl_check (unread);

    //  Watched: every room asked at once, every count told
    pl_unread_watch (unread, "conn-0", "u1");
    pl_check (streq (test.asked, "u1:*") && pl_unread_users (unread) == 1);
    pl_check (!pl_unread_answer (unread, 99, 200, "{}", 2));
    s_test_answer (unread, &test, "{\"rooms\":[{\"roomId\":\"r1\",\"unread\":3,\"lastSeq\":9},"
                                  "{\"roomId\":\"r2\",\"unread\":0,\"lastSeq\":0}]}");
    pl_check (strstr (test.events, "conn-0 u1 {\"type\":\"UNREAD\",\"roomId\":\"r1\",\"unread\":3};"));
    pl_check (strstr (test.events, "\"roomId\":\"r2\",\"unread\":0"));
    pl_check (pl_unread_knows_room (unread, "r1") && !pl_unread_knows_room (unread, "r3"));

    //  A second conn gets what the first was told; nothing is asked
    test.events [0] = 0;
    pl_unread_watch (unread, "conn-1", "u1");
    pl_check (test.asks == 1 && strstr (test.events, "conn-1 u1") && !strstr (test.events, "conn-0"));

    //  Messages make the room due: one question per tick, for due rooms
    pl_unread_message (unread, "r1", 10);
    pl_unread_message (unread, "r1", 11);
    pl_unread_message (unread, "r9", 1);
    pl_unread_tick (unread);
    pl_check (test.asks == 2 && streq (test.asked, "u1:[\"r1\"]"));
    pl_unread_tick (unread);
    pl_check (test.asks == 2);              //  one at a time
    //  MongoDB behind (lastSeq 10 < 11): told, and asked again next tick
    s_test_answer (unread, &test, "{\"rooms\":[{\"roomId\":\"r1\",\"unread\":4,\"lastSeq\":10}]}");
    pl_check (strstr (test.events, "conn-0 u1 {\"type\":\"UNREAD\",\"roomId\":\"r1\",\"unread\":4}"));
    pl_check (strstr (test.events, "conn-1 u1"));
    pl_unread_tick (unread);
    pl_check (test.asks == 3 && streq (test.asked, "u1:[\"r1\"]"));
    s_test_answer (unread, &test, "{\"rooms\":[{\"roomId\":\"r1\",\"unread\":5,\"lastSeq\":11}]}");
    pl_unread_tick (unread);
    pl_check (test.asks == 3);              //  caught up: nothing due
    //  The same count again is not told
    pl_unread_read (unread, "r1", "u1");
    pl_unread_tick (unread);
    s_test_answer (unread, &test, "{\"rooms\":[{\"roomId\":\"r1\",\"unread\":5,\"lastSeq\":11}]}");
    pl_check (test.events [0] == 0);
    //  A failed answer: due again
    pl_unread_read (unread, "r2", "u1");
    pl_unread_tick (unread);
    pl_check (pl_unread_answer (unread, test.next_corr, 503, NULL, 0));
    pl_unread_tick (unread);
    pl_check (test.asks == 6);

    //  Rooms come and go
    s_test_answer (unread, &test, "{\"rooms\":[]}");
    pl_unread_room_added (unread, "r5", "u1");
    pl_unread_tick (unread);
    pl_check (streq (test.asked, "u1:[\"r5\"]"));
    pl_unread_room_removed (unread, "r5", "u1");
    s_test_answer (unread, &test, "{\"rooms\":[{\"roomId\":\"r5\",\"unread\":1,\"lastSeq\":1}]}");
    pl_check (test.events [0] == 0 && !pl_unread_knows_room (unread, "r5"));

    //  The last conn goes: the user is forgotten with its rooms
    pl_unread_unwatch (unread, "conn-0", "u1");
    pl_check (pl_unread_users (unread) == 1);
    pl_unread_conn_gone (unread, "conn-1");
    pl_check (pl_unread_users (unread) == 0 && !pl_unread_knows_room (unread, "r1"));

    //  A question never answered is asked again after the timeout
    pl_unread_watch (unread, "conn-0", "u3");
    int before = test.asks;
    pl_unread_tick (unread);
    pl_check (test.asks == before);
    zclock_sleep (150);
    pl_unread_tick (unread);
    pl_check (test.asks == before + 1 && streq (test.asked, "u3:*"));
    pl_unread_unwatch (unread, "conn-0", "u3");

    //  Asking cannot go out: the next tick asks
    test.refuse = true;
    pl_unread_watch (unread, "conn-0", "u2");
    test.refuse = false;
    int asks = test.asks;
    pl_unread_tick (unread);
    pl_check (test.asks == asks + 1 && streq (test.asked, "u2:*"));
    pl_unread_destroy (&unread);
    pl_unread_destroy (&unread);
    printf ("OK\n");
}
