/*  =========================================================================
    pl_presence - who is online in which room, on every host
    =========================================================================
*/
#include "pl_presence.h"
#include "pl_util.h"

#include <czmq.h>
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Keys are "<room> <user>": ids never hold a space
#define KEY_MAX     (2 * PL_ID_MAX + 2)

struct _pl_presence_t {
    char *host;
    int64_t timeout_ms;
    size_t payload_max;
    const pl_presence_ops_t *ops;
    void *arg;
    zhashx_t *local;            //  key -> zhashx_t set of conns (this host)
    zhashx_t *hosts;            //  key -> zhashx_t host -> int64_t heard at
    zhashx_t *rooms;            //  room -> zhashx_t set of users online
    int64_t learning_until;     //  no events before this
    int64_t next_refresh;
    bool reset_sent;
};

static void
s_hash_destroy (void **item_p)
{
    zhashx_destroy ((zhashx_t **) item_p);
}

static zhashx_t *
s_set_new (bool owns_values)
{
    zhashx_t *set = zhashx_new ();
    if (set && owns_values)
        zhashx_set_destructor (set, pl_free_item);
    return set;
}

pl_presence_t *
pl_presence_new (const char *host, int64_t timeout_ms, size_t payload_max,
                 const pl_presence_ops_t *ops, void *arg, int64_t now)
{
    assert (host && ops && ops->publish && ops->event);
    pl_presence_t *self = (pl_presence_t *) calloc (1, sizeof (pl_presence_t));
    if (!self)
        return NULL;
    self->host = strdup (host);
    self->timeout_ms = timeout_ms;
    self->payload_max = payload_max;
    self->ops = ops;
    self->arg = arg;
    self->local = zhashx_new ();
    self->hosts = zhashx_new ();
    self->rooms = zhashx_new ();
    if (!self->host || !self->local || !self->hosts || !self->rooms) {
        pl_presence_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->local, s_hash_destroy);
    zhashx_set_destructor (self->hosts, s_hash_destroy);
    zhashx_set_destructor (self->rooms, s_hash_destroy);
    self->learning_until = now + timeout_ms / 3 + 1000;
    self->next_refresh = now;
    return self;
}

void
pl_presence_destroy (pl_presence_t **self_p)
{
    pl_presence_t *self = *self_p;
    if (self) {
        zhashx_destroy (&self->local);
        zhashx_destroy (&self->hosts);
        zhashx_destroy (&self->rooms);
        free (self->host);
        free (self);
        *self_p = NULL;
    }
}


//  --------------------------------------------------------------------------
//  The table of every host

//  room and user of a key, into buffers of PL_ID_MAX + 1
static void
s_split (const char *key, char *room, char *user)
{
    const char *space = strchr (key, ' ');
    assert (space);
    snprintf (room, PL_ID_MAX + 1, "%.*s", (int) (space - key), key);
    snprintf (user, PL_ID_MAX + 1, "%s", space + 1);
}

static void
s_event (pl_presence_t *self, const char *type, const char *room, const char *user, int64_t now)
{
    if (now < self->learning_until)
        return;
    char body [KEY_MAX + 64];
    snprintf (body, sizeof body, "{\"type\":\"%s\",\"roomId\":\"%s\",\"userId\":\"%s\"}", type, room, user);
    self->ops->event (self->arg, room, body);
}

//  host has user online in room, heard now
static void
s_host_add (pl_presence_t *self, const char *room, const char *user, const char *host, int64_t now)
{
    char key [KEY_MAX];
    snprintf (key, sizeof key, "%s %s", room, user);
    zhashx_t *hosts = (zhashx_t *) zhashx_lookup (self->hosts, key);
    if (!hosts) {
        hosts = s_set_new (true);
        zhashx_t *users = (zhashx_t *) zhashx_lookup (self->rooms, room);
        if (!users) {
            users = s_set_new (false);
            zhashx_insert (self->rooms, room, users);
        }
        zhashx_insert (users, user, users);
        zhashx_insert (self->hosts, key, hosts);
        s_event (self, "ENTER", room, user, now);
    }
    int64_t *heard = (int64_t *) zhashx_lookup (hosts, host);
    if (!heard) {
        heard = (int64_t *) malloc (sizeof (int64_t));
        assert (heard);
        zhashx_insert (hosts, host, heard);
    }
    *heard = now;
}

static void
s_host_remove (pl_presence_t *self, const char *room, const char *user, const char *host, int64_t now)
{
    char key [KEY_MAX];
    snprintf (key, sizeof key, "%s %s", room, user);
    zhashx_t *hosts = (zhashx_t *) zhashx_lookup (self->hosts, key);
    if (!hosts)
        return;
    zhashx_delete (hosts, host);
    if (zhashx_size (hosts))
        return;
    zhashx_delete (self->hosts, key);
    zhashx_t *users = (zhashx_t *) zhashx_lookup (self->rooms, room);
    if (users) {
        zhashx_delete (users, user);
        if (zhashx_size (users) == 0)
            zhashx_delete (self->rooms, room);
    }
    s_event (self, "LEAVE", room, user, now);
}

//  Every entry of host (NULL: entries not heard since before) goes
static void
s_drop_host (pl_presence_t *self, const char *host, int64_t heard_before, int64_t now)
{
    zlistx_t *gone = zlistx_new ();
    zlistx_set_destructor (gone, (zlistx_destructor_fn *) zstr_free);
    for (zhashx_t *hosts = (zhashx_t *) zhashx_first (self->hosts); hosts;
         hosts = (zhashx_t *) zhashx_next (self->hosts))
        for (int64_t *heard = (int64_t *) zhashx_first (hosts); heard; heard = (int64_t *) zhashx_next (hosts)) {
            const char *name = (const char *) zhashx_cursor (hosts);
            if (streq (name, self->host))
                continue;       //  this host's part is its local table
            if (host? streq (name, host): *heard < heard_before)
                zlistx_add_end (gone, zsys_sprintf ("%s %s", (const char *) zhashx_cursor (self->hosts), name));
        }
    for (char *item = (char *) zlistx_first (gone); item; item = (char *) zlistx_next (gone)) {
        char *host_name = strrchr (item, ' ');
        *host_name++ = 0;
        char room [PL_ID_MAX + 1], user [PL_ID_MAX + 1];
        s_split (item, room, user);
        s_host_remove (self, room, user, host_name, now);
    }
    zlistx_destroy (&gone);
}


//  --------------------------------------------------------------------------
//  This host's part

static void
s_publish_change (pl_presence_t *self, const char *type, const char *room, const char *user)
{
    char payload [KEY_MAX + 160];
    snprintf (payload, sizeof payload, "{\"type\":\"%s\",\"roomId\":\"%s\",\"userId\":\"%s\",\"host\":\"%s\"}",
              type, room, user, self->host);
    self->ops->publish (self->arg, payload);
}

void
pl_presence_present (pl_presence_t *self, const char *conn, const char *room, const char *user,
                     int64_t now)
{
    if (!pl_id_valid (room) || !pl_id_valid (user))
        return;
    char key [KEY_MAX];
    snprintf (key, sizeof key, "%s %s", room, user);
    zhashx_t *conns = (zhashx_t *) zhashx_lookup (self->local, key);
    if (!conns) {
        conns = s_set_new (false);
        zhashx_insert (self->local, key, conns);
        s_host_add (self, room, user, self->host, now);
        s_publish_change (self, "ENTER", room, user);
    }
    zhashx_update (conns, conn, conns);
}

void
pl_presence_absent (pl_presence_t *self, const char *conn, const char *room, const char *user,
                    int64_t now)
{
    char key [KEY_MAX];
    snprintf (key, sizeof key, "%s %s", room, user);
    zhashx_t *conns = (zhashx_t *) zhashx_lookup (self->local, key);
    if (!conns)
        return;
    zhashx_delete (conns, conn);
    if (zhashx_size (conns))
        return;
    zhashx_delete (self->local, key);
    s_host_remove (self, room, user, self->host, now);
    s_publish_change (self, "LEAVE", room, user);
}

void
pl_presence_conn_gone (pl_presence_t *self, const char *conn, int64_t now)
{
    zlistx_t *keys = zhashx_keys (self->local);
    for (const char *key = keys? (const char *) zlistx_first (keys): NULL; key;
         key = (const char *) zlistx_next (keys)) {
        char room [PL_ID_MAX + 1], user [PL_ID_MAX + 1];
        s_split (key, room, user);
        pl_presence_absent (self, conn, room, user, now);
    }
    zlistx_destroy (&keys);
}

//  The whole local part in pieces that fit a broadcast
static void
s_publish_state (pl_presence_t *self)
{
    size_t per_piece = self->payload_max > 300? (self->payload_max - 100) / (KEY_MAX + 8): 1;
    json_t *entries = json_array ();
    bool sent = false;
    for (void *conns = zhashx_first (self->local); ; conns = zhashx_next (self->local)) {
        if (conns) {
            char room [PL_ID_MAX + 1], user [PL_ID_MAX + 1];
            s_split ((const char *) zhashx_cursor (self->local), room, user);
            json_array_append_new (entries, json_pack ("[s, s]", room, user));
        }
        if (json_array_size (entries) >= per_piece || (!conns && (!sent || json_array_size (entries)))) {
            json_t *piece = json_pack ("{s:s, s:s, s:b, s:O}", "type", "PRESENCE", "host", self->host,
                                       "reset", !self->reset_sent, "entries", entries);
            char *text = piece? json_dumps (piece, JSON_COMPACT): NULL;
            if (text)
                self->ops->publish (self->arg, text);
            free (text);
            json_decref (piece);
            json_array_clear (entries);
            self->reset_sent = sent = true;
        }
        if (!conns)
            break;
    }
    json_decref (entries);
}


//  --------------------------------------------------------------------------
//  What other hosts say

void
pl_presence_heard (pl_presence_t *self, json_t *message, int64_t now)
{
    const char *type = json_string_value (json_object_get (message, "type"));
    const char *host = json_string_value (json_object_get (message, "host"));
    if (!type || !host || !pl_id_valid (host) || streq (host, self->host))
        return;                 //  not presence, or this host's own
    const char *room = json_string_value (json_object_get (message, "roomId"));
    const char *user = json_string_value (json_object_get (message, "userId"));
    bool valid = room && user && pl_id_valid (room) && pl_id_valid (user);
    if (streq (type, "ENTER") && valid)
        s_host_add (self, room, user, host, now);
    else
    if (streq (type, "LEAVE") && valid)
        s_host_remove (self, room, user, host, now);
    else
    if (streq (type, "PRESENCE")) {
        if (json_is_true (json_object_get (message, "reset")))
            s_drop_host (self, host, 0, now);
        size_t index;
        json_t *entry;
        json_array_foreach (json_object_get (message, "entries"), index, entry) {
            room = json_string_value (json_array_get (entry, 0));
            user = json_string_value (json_array_get (entry, 1));
            if (room && user && pl_id_valid (room) && pl_id_valid (user))
                s_host_add (self, room, user, host, now);
        }
    }
}

void
pl_presence_tick (pl_presence_t *self, int64_t now)
{
    if (now >= self->next_refresh) {
        s_publish_state (self);
        self->next_refresh = now + self->timeout_ms / 3;
    }
    s_drop_host (self, NULL, now - self->timeout_ms, now);
}

json_t *
pl_presence_online (pl_presence_t *self, const char *room)
{
    json_t *online = json_array ();
    zhashx_t *users = (zhashx_t *) zhashx_lookup (self->rooms, room);
    zlistx_t *keys = users? zhashx_keys (users): NULL;
    if (keys) {
        zlistx_set_comparator (keys, (zlistx_comparator_fn *) strcmp);
        zlistx_sort (keys);
        for (const char *user = (const char *) zlistx_first (keys); user; user = (const char *) zlistx_next (keys))
            json_array_append_new (online, json_string (user));
    }
    zlistx_destroy (&keys);
    return online;
}


//  --------------------------------------------------------------------------
//  Selftest

typedef struct {
    char published [2048];      //  payloads, ";" after each
    char events [1024];         //  "room body;" each
} test_t;

static void
s_test_publish (void *arg, const char *payload)
{
    test_t *test = (test_t *) arg;
    size_t used = strlen (test->published);
    snprintf (test->published + used, sizeof test->published - used, "%s;", payload);
}

static void
s_test_event (void *arg, const char *room, const char *body)
{
    test_t *test = (test_t *) arg;
    size_t used = strlen (test->events);
    snprintf (test->events + used, sizeof test->events - used, "%s %s;", room, body);
}

static const pl_presence_ops_t s_test_ops = { s_test_publish, s_test_event };

static void
s_test_heard (pl_presence_t *presence, const char *payload, int64_t now)
{
    json_t *message = json_loads (payload, 0, NULL);
    pl_presence_heard (presence, message, now);
    json_decref (message);
}

static void
s_test_online (pl_presence_t *presence, const char *room, const char *expected)
{
    json_t *online = pl_presence_online (presence, room);
    char *text = json_dumps (online, JSON_COMPACT);
    pl_check (text && streq (text, expected));
    free (text);
    json_decref (online);
}

void
pl_presence_test (bool verbose)
{
    printf (" * pl_presence: ");
    if (verbose)
        printf ("\n");
    test_t test = { { 0 }, { 0 } };
    int64_t now = 1000000;
    pl_presence_t *presence = pl_presence_new ("h1", 30000, 4096, &s_test_ops, &test, now);
    pl_check (presence);
    //  Learning first: the reset goes out, what is heard makes no event
    pl_presence_tick (presence, now);
    pl_check (strstr (test.published, "\"type\":\"PRESENCE\",\"host\":\"h1\",\"reset\":true,\"entries\":[]"));
    s_test_heard (presence, "{\"type\":\"PRESENCE\",\"host\":\"h2\",\"entries\":[[\"r1\",\"bob\"]]}", now);
    pl_check (test.events [0] == 0);
    s_test_online (presence, "r1", "[\"bob\"]");
    now += 12000;

    //  Two sessions on two conns here and one on h2: ENTER once, LEAVE once
    test.published [0] = 0;
    pl_presence_present (presence, "conn-0", "r1", "ann", now);
    pl_presence_present (presence, "conn-1", "r1", "ann", now);
    s_test_heard (presence, "{\"type\":\"ENTER\",\"roomId\":\"r1\",\"userId\":\"ann\",\"host\":\"h2\"}", now);
    pl_check (streq (test.events, "r1 {\"type\":\"ENTER\",\"roomId\":\"r1\",\"userId\":\"ann\"};"));
    pl_check (streq (test.published, "{\"type\":\"ENTER\",\"roomId\":\"r1\",\"userId\":\"ann\",\"host\":\"h1\"};"));
    s_test_online (presence, "r1", "[\"ann\",\"bob\"]");
    test.events [0] = 0;
    pl_presence_absent (presence, "conn-0", "r1", "ann", now);
    pl_presence_conn_gone (presence, "conn-1", now);
    pl_check (test.events [0] == 0 && strstr (test.published, "\"type\":\"LEAVE\""));
    s_test_heard (presence, "{\"type\":\"LEAVE\",\"roomId\":\"r1\",\"userId\":\"ann\",\"host\":\"h2\"}", now);
    pl_check (streq (test.events, "r1 {\"type\":\"LEAVE\",\"roomId\":\"r1\",\"userId\":\"ann\"};"));

    //  Its own broadcasts change nothing; junk is ignored
    test.events [0] = 0;
    s_test_heard (presence, "{\"type\":\"ENTER\",\"roomId\":\"r1\",\"userId\":\"cy\",\"host\":\"h1\"}", now);
    s_test_heard (presence, "{\"type\":\"ENTER\",\"roomId\":\"a b\",\"userId\":\"cy\",\"host\":\"h2\"}", now);
    s_test_heard (presence, "not json", now);
    pl_check (test.events [0] == 0);

    //  h2 dies: not heard for the timeout, bob leaves; h3 restarts: reset
    s_test_heard (presence, "{\"type\":\"PRESENCE\",\"host\":\"h2\",\"entries\":[[\"r1\",\"bob\"]]}", now);
    s_test_heard (presence, "{\"type\":\"PRESENCE\",\"host\":\"h3\",\"entries\":[[\"r2\",\"dee\"]]}", now);
    now += 25000;
    pl_presence_tick (presence, now);
    pl_check (strstr (test.events, "\"type\":\"LEAVE\",\"roomId\":\"r1\",\"userId\":\"bob\"") == NULL);
    s_test_heard (presence, "{\"type\":\"PRESENCE\",\"host\":\"h3\",\"entries\":[[\"r2\",\"dee\"]]}", now);
    now += 6000;
    pl_presence_tick (presence, now);
    pl_check (strstr (test.events, "\"type\":\"LEAVE\",\"roomId\":\"r1\",\"userId\":\"bob\""));
    s_test_online (presence, "r1", "[]");
    s_test_online (presence, "r2", "[\"dee\"]");
    test.events [0] = 0;
    s_test_heard (presence, "{\"type\":\"PRESENCE\",\"host\":\"h3\",\"reset\":true,\"entries\":[]}", now);
    pl_check (strstr (test.events, "\"type\":\"LEAVE\",\"roomId\":\"r2\",\"userId\":\"dee\""));

    //  The refresh carries this host's whole part
    pl_presence_present (presence, "conn-0", "r3", "eve", now);
    test.published [0] = 0;
    now += 10000;
    pl_presence_tick (presence, now);
    pl_check (strstr (test.published, "\"reset\":false,\"entries\":[[\"r3\",\"eve\"]]"));
    pl_presence_destroy (&presence);
    pl_presence_destroy (&presence);
    printf ("OK\n");
}
