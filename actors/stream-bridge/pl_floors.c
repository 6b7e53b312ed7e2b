/*  =========================================================================
    pl_floors - which rooms' seq counters the bridge checked against MongoDB
    since Redis last may have lost writes, and the appends waiting for a check

    See pl_floors.h. A room waiting for its check has a wait_t: its parked
    items and the query it is in (corr 0 while queued). Checked rooms are a
    set, emptied when the generation changes.
    =========================================================================
*/
#include "pl_floors.h"
#include "pl_util.h"

#include <czmq.h>
#include <jansson.h>
#include <assert.h>
#include <inttypes.h>

typedef struct {
    zlistx_t *items;            //  parked, in order (not owned)
    uint64_t corr;              //  the query it is in; 0: queued
    int64_t since;              //  parked first, monotonic ms
} wait_t;

typedef struct {
    zlistx_t *rooms;            //  room ids asked for (owned)
    int64_t deadline;
} query_t;

struct _pl_floors_t {
    size_t batch;
    int64_t queued_ms;
    pl_floors_release_fn *release;
    void *arg;
    uint64_t generation;
    zhashx_t *checked;          //  room -> (void *) 1
    zhashx_t *waits;            //  room -> wait_t
    zlistx_t *queue;            //  room ids to ask for (owned)
    zhashx_t *queries;          //  corr (text) -> query_t
    pl_floors_stats_t stats;
};

static void
s_wait_destroy (void **item_p)
{
    wait_t *wait = (wait_t *) *item_p;
    if (wait) {
        zlistx_destroy (&wait->items);
        free (wait);
        *item_p = NULL;
    }
}

static void
s_query_destroy (void **item_p)
{
    query_t *query = (query_t *) *item_p;
    if (query) {
        zlistx_destroy (&query->rooms);
        free (query);
        *item_p = NULL;
    }
}

pl_floors_t *
pl_floors_new (size_t batch, int64_t queued_ms, pl_floors_release_fn *release, void *arg)
{
    assert (batch >= 1 && release);
    pl_floors_t *self = (pl_floors_t *) zmalloc (sizeof (pl_floors_t));
    assert (self);
    self->batch = batch;
    self->queued_ms = queued_ms;
    self->release = release;
    self->arg = arg;
    self->checked = zhashx_new ();
    self->waits = zhashx_new ();
    zhashx_set_destructor (self->waits, s_wait_destroy);
    self->queue = zlistx_new ();
    zlistx_set_destructor (self->queue, pl_free_item);
    self->queries = zhashx_new ();
    zhashx_set_destructor (self->queries, s_query_destroy);
    assert (self->checked && self->waits && self->queue && self->queries);
    return self;
}

//  Every item parked for room goes back with floor; the room waits no more
static void
s_release_room (pl_floors_t *self, const char *room, int64_t floor)
{
    wait_t *wait = (wait_t *) zhashx_lookup (self->waits, room);
    if (!wait)
        return;
    //  Detached first: a release may park the item again (a new wait)
    zlistx_t *items = wait->items;
    wait->items = NULL;
    zhashx_delete (self->waits, room);
    if (floor >= 0)
        self->stats.rooms_checked++;
    else
        self->stats.checks_failed++;
    for (void *item = zlistx_first (items); item; item = zlistx_next (items))
        self->release (self->arg, item, floor);
    zlistx_destroy (&items);
}

void
pl_floors_destroy (pl_floors_t **self_p)
{
    assert (self_p);
    pl_floors_t *self = *self_p;
    if (!self)
        return;
    zlistx_t *rooms = zhashx_keys (self->waits);
    for (const char *room = rooms? (const char *) zlistx_first (rooms): NULL; room;
         room = (const char *) zlistx_next (rooms))
        s_release_room (self, room, -1);
    zlistx_destroy (&rooms);
    zhashx_destroy (&self->queries);
    zlistx_destroy (&self->queue);
    zhashx_destroy (&self->waits);
    zhashx_destroy (&self->checked);
    free (self);
    *self_p = NULL;
}

void
pl_floors_set_generation (pl_floors_t *self, uint64_t generation)
{
    assert (self);
    if (generation != self->generation) {
        self->generation = generation;
        zhashx_purge (self->checked);
    }
}

bool
pl_floors_checked (pl_floors_t *self, const char *room)
{
    assert (self && room);
    return zhashx_lookup (self->checked, room) != NULL;
}

void
pl_floors_park (pl_floors_t *self, const char *room, void *item, int64_t now)
{
    assert (self && room && item);
    wait_t *wait = (wait_t *) zhashx_lookup (self->waits, room);
    if (!wait) {
        wait = (wait_t *) zmalloc (sizeof (wait_t));
        assert (wait);
        wait->since = now;
        wait->items = zlistx_new ();
        assert (wait->items);
        zhashx_insert (self->waits, room, wait);
        char *queued = strdup (room);
        assert (queued);
        zlistx_add_end (self->queue, queued);
    }
    zlistx_add_end (wait->items, item);
}

void
pl_floors_mark_checked (pl_floors_t *self, const char *room)
{
    assert (self && room);
    zhashx_insert (self->checked, room, (void *) 1);
}

void
pl_floors_forget (pl_floors_t *self, const char *room)
{
    assert (self && room);
    zhashx_delete (self->checked, room);
}

char *
pl_floors_next_query (pl_floors_t *self, size_t window, uint64_t *next_corr, int64_t deadline)
{
    assert (self && next_corr);
    if (zhashx_size (self->queries) >= window || zlistx_size (self->queue) == 0)
        return NULL;
    uint64_t corr = ++*next_corr;
    query_t *query = (query_t *) zmalloc (sizeof (query_t));
    assert (query);
    query->rooms = zlistx_new ();
    assert (query->rooms);
    zlistx_set_destructor (query->rooms, pl_free_item);
    query->deadline = deadline;
    json_t *ids = json_array ();
    while (zlistx_size (self->queue) && zlistx_size (query->rooms) < self->batch) {
        char *room = (char *) zlistx_detach (self->queue, NULL);
        wait_t *wait = (wait_t *) zhashx_lookup (self->waits, room);
        if (wait && wait->corr == 0) {
            wait->corr = corr;
            json_array_append_new (ids, json_string (room));
            zlistx_add_end (query->rooms, room);
        }
        else
            free (room);
    }
    char *text = json_dumps (ids, JSON_COMPACT);
    json_decref (ids);
    assert (text);
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, corr);
    zhashx_insert (self->queries, key, query);
    self->stats.queries++;
    return text;
}

void
pl_floors_answer (pl_floors_t *self, uint64_t corr, const char *json, size_t size)
{
    assert (self);
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, corr);
    query_t *query = (query_t *) zhashx_lookup (self->queries, key);
    if (!query)
        return;
    json_t *answer = json? json_loadb (json, size, 0, NULL): NULL;
    for (const char *room = (const char *) zlistx_first (query->rooms); room;
         room = (const char *) zlistx_next (query->rooms)) {
        wait_t *wait = (wait_t *) zhashx_lookup (self->waits, room);
        if (!wait || wait->corr != corr)
            continue;
        json_t *last = json_object_get (answer, room);
        int64_t floor = json_is_integer (last) && json_integer_value (last) >= 0?
                        (int64_t) json_integer_value (last): -1;
        //  The room counts as checked only once an append with this floor
        //  went through (pl_floors_mark_checked): Redis may answer that
        //  the counter is behind, and what comes meanwhile must not
        //  append without a floor
        s_release_room (self, room, floor);
    }
    json_decref (answer);
    zhashx_delete (self->queries, key);
}

void
pl_floors_expire (pl_floors_t *self, int64_t now)
{
    assert (self);
    zlistx_t *keys = zhashx_keys (self->queries);
    for (const char *key = keys? (const char *) zlistx_first (keys): NULL; key;
         key = (const char *) zlistx_next (keys)) {
        query_t *query = (query_t *) zhashx_lookup (self->queries, key);
        if (now >= query->deadline)
            pl_floors_answer (self, strtoull (key, NULL, 10), NULL, 0);
    }
    zlistx_destroy (&keys);
    //  Queued with nobody to ask: the queue keeps their ids, which the next
    //  query skips
    zlistx_t *rooms = zhashx_keys (self->waits);
    for (const char *room = rooms? (const char *) zlistx_first (rooms): NULL; room;
         room = (const char *) zlistx_next (rooms)) {
        wait_t *wait = (wait_t *) zhashx_lookup (self->waits, room);
        if (wait && wait->corr == 0 && now - wait->since >= self->queued_ms)
            s_release_room (self, room, -1);
    }
    zlistx_destroy (&rooms);
}

size_t
pl_floors_out (pl_floors_t *self)
{
    assert (self);
    return zhashx_size (self->queries);
}

void
pl_floors_stats (pl_floors_t *self, pl_floors_stats_t *stats)
{
    assert (self && stats);
    *stats = self->stats;
}


//  --------------------------------------------------------------------------
//  Selftest

typedef struct {
    char released [16][16];     //  "item:floor"
    int count;
} s_test_t;

static void
s_test_release (void *arg, void *item, int64_t floor)
{
    s_test_t *test = (s_test_t *) arg;
    pl_check (test->count < 16);
    snprintf (test->released [test->count++], 16, "%s:%" PRId64, (const char *) item, floor);
}

void
pl_floors_test (bool verbose)
{
    if (verbose)
        printf (" * pl_floors: ");
    s_test_t test = { .count = 0 };
    pl_floors_t *floors = pl_floors_new (2, 5000, s_test_release, &test);
    uint64_t corr = 6;
    pl_floors_set_generation (floors, 1);
    pl_check (!pl_floors_checked (floors, "r1"));
    //  Three rooms parked, in queries of two, one query out at a time
    pl_floors_park (floors, "r1", "a", 0);
    pl_floors_park (floors, "r2", "b", 0);
    pl_floors_park (floors, "r1", "c", 0);
    pl_floors_park (floors, "r3", "d", 0);
    pl_check (test.count == 0);             //  never from inside park
    char *first = pl_floors_next_query (floors, 1, &corr, 1000);
    pl_check (first && streq (first, "[\"r1\",\"r2\"]"));
    pl_check (corr == 7 && pl_floors_next_query (floors, 1, &corr, 1000) == NULL && corr == 7);
    pl_floors_park (floors, "r1", "e", 0);     //  joins the check out
    pl_floors_answer (floors, 7, "{\"r1\":41,\"r2\":0}", 16);
    pl_check (test.count == 4);
    pl_check (streq (test.released [0], "a:41") && streq (test.released [1], "c:41"));
    pl_check (streq (test.released [2], "e:41") && streq (test.released [3], "b:0"));
    //  Checked once the caller's append with the floor went through
    pl_check (!pl_floors_checked (floors, "r1"));
    pl_floors_mark_checked (floors, "r1");
    pl_floors_mark_checked (floors, "r2");
    pl_check (pl_floors_checked (floors, "r1") && pl_floors_checked (floors, "r2"));
    pl_floors_answer (floors, 7, "{}", 2);  //  twice: ignored
    pl_check (test.count == 4);
    //  r3's query times out: released with -1, not checked
    char *second = pl_floors_next_query (floors, 1, &corr, 1000);
    pl_check (second && streq (second, "[\"r3\"]"));
    pl_floors_expire (floors, 999);
    pl_check (test.count == 4 && pl_floors_out (floors) == 1);
    pl_floors_expire (floors, 1000);
    pl_check (test.count == 5 && streq (test.released [4], "d:-1") && pl_floors_out (floors) == 0);
    pl_check (!pl_floors_checked (floors, "r3"));
    //  A room missing from the answer fails; a forgotten room is asked again
    pl_floors_park (floors, "r3", "f", 0);
    pl_floors_forget (floors, "r1");
    pl_check (!pl_floors_checked (floors, "r1"));
    pl_floors_mark_checked (floors, "r9");
    pl_check (pl_floors_checked (floors, "r9"));
    pl_floors_park (floors, "r1", "g", 0);
    char *third = pl_floors_next_query (floors, 1, &corr, 1000);
    pl_check (third && streq (third, "[\"r3\",\"r1\"]"));
    //  A new generation forgets every check
    pl_floors_set_generation (floors, 2);
    pl_check (!pl_floors_checked (floors, "r2") && !pl_floors_checked (floors, "r9"));
    pl_check (corr == 9);
    pl_floors_answer (floors, 9, "{\"r1\":44}", 9);
    pl_check (test.count == 7 && streq (test.released [5], "f:-1") && streq (test.released [6], "g:44"));
    //  Not an object: everything in it fails; destroy releases what waits
    pl_floors_park (floors, "r4", "h", 0);
    char *fourth = pl_floors_next_query (floors, 1, &corr, 1000);
    pl_floors_answer (floors, 10, "[1]", 3);
    pl_check (test.count == 8 && streq (test.released [7], "h:-1"));
    //  Queued with nobody to ask, past queued_ms: failed
    pl_floors_park (floors, "r6", "j", 0);
    pl_floors_expire (floors, 4999);
    pl_check (test.count == 8);
    pl_floors_expire (floors, 5000);
    pl_check (test.count == 9 && streq (test.released [8], "j:-1"));
    pl_floors_park (floors, "r5", "i", 5000);
    pl_floors_stats_t stats;
    pl_floors_stats (floors, &stats);
    pl_check (stats.rooms_checked == 3 && stats.checks_failed == 4 && stats.queries == 4);
    pl_floors_destroy (&floors);
    pl_check (test.count == 10 && streq (test.released [9], "i:-1"));
    free (first);
    free (second);
    free (third);
    free (fourth);
    if (verbose)
        printf ("OK\n");
}
