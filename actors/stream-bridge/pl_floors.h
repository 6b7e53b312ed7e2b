/*  =========================================================================
    pl_floors - which rooms' seq counters the bridge checked against MongoDB
    since Redis last may have lost writes, and the appends waiting for a check

    Redis answers an append before its AOF is on disk or a replica has it:
    a crash or a failover can take the last writes with it, and a room's
    counter goes back below seqs MongoDB already holds. So before the first
    append to a room in each generation of the Redis layer
    (pl_streams_generation: it changes on every new command connection and
    every cluster redirect), the bridge asks a persistence actor for the
    room's highest stored seq, and that append carries it as its floor (the
    append script raises the counter to it). Appends to a room being checked
    wait here; rooms asked for meanwhile go together in one query
    (rooms.last_seq), at most batch rooms, one query out per persistence
    actor.

    Pure: no sockets. The bridge sends the queries this class writes and
    hands it the answers.

    Callbacks run from pl_floors_answer, pl_floors_expire and
    pl_floors_destroy, never from pl_floors_park: each parked item is handed
    back exactly once.
    =========================================================================
*/
#ifndef PL_FLOORS_H_INCLUDED
#define PL_FLOORS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _pl_floors_t pl_floors_t;

//  A parked item back: floor >= 0 is the room's highest stored seq (0:
//  none), append with it; -1: the check failed (no persistence actor
//  answered in time), answer the client that it may try again.
typedef void (pl_floors_release_fn) (void *arg, void *item, int64_t floor);

//  Counters since pl_floors_new
typedef struct {
    uint64_t rooms_checked;     //  rooms whose highest stored seq came back
    uint64_t checks_failed;     //  rooms whose check failed or timed out
    uint64_t queries;           //  rooms.last_seq queries written
} pl_floors_stats_t;

//  batch >= 1: most rooms in one query; a room queued longer than
//  queued_ms (no persistence actor to ask) fails
pl_floors_t *
    pl_floors_new (size_t batch, int64_t queued_ms, pl_floors_release_fn *release, void *arg);

//  Parked items are released with -1 first
void
    pl_floors_destroy (pl_floors_t **self_p);

//  The Redis layer's generation now: a new one forgets every check made.
void
    pl_floors_set_generation (pl_floors_t *self, uint64_t generation);

//  True when room was checked in this generation: append with
//  PL_SEQ_FLOOR_CHECK (the counter must exist).
bool
    pl_floors_checked (pl_floors_t *self, const char *room);

//  The append item waits for room's check; the check is queued unless one
//  is queued or out already. now: monotonic ms.
void
    pl_floors_park (pl_floors_t *self, const char *room, void *item, int64_t now);

//  room is checked in this generation: an append with its floor went
//  through, or the bridge set up the counter of a room just created.
//  Released floors do not mark it: Redis may still answer that the counter
//  is behind (the dedup keys in between are restored first).
void
    pl_floors_mark_checked (pl_floors_t *self, const char *room);

//  Redis has no counter for room (answer 3): check it again.
void
    pl_floors_forget (pl_floors_t *self, const char *room);

//  The next query when one may go (fewer than window out, rooms queued):
//  a JSON array of room ids (free it), registered as out until deadline
//  (monotonic ms) under the corr ++*next_corr. NULL when none goes now
//  (*next_corr unchanged).
char *
    pl_floors_next_query (pl_floors_t *self, size_t window, uint64_t *next_corr, int64_t deadline);

//  The answer to query corr: a JSON object room -> highest stored seq
//  (json NULL or not such an object: failed). Unknown corr: ignored.
void
    pl_floors_answer (pl_floors_t *self, uint64_t corr, const char *json, size_t size);

//  Queries past their deadline fail, and so do rooms queued longer than
//  queued_ms.
void
    pl_floors_expire (pl_floors_t *self, int64_t now);

//  Queries out now
size_t
    pl_floors_out (pl_floors_t *self);

void
    pl_floors_stats (pl_floors_t *self, pl_floors_stats_t *stats);

void
    pl_floors_test (bool verbose);

#endif
