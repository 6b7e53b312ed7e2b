/*  =========================================================================
    pl_peers - the peers of one kind an actor knows, with one liveness rule

    A peer is a DEALER on the far side of this actor's ROUTER, known by its
    routing id. It is alive while it was heard from within the configured
    peer-timeout-ms (every actor's peers send something, at least a
    heartbeat, every peer-heartbeat-ms). The room-router keeps its
    connection actors and persistence actors here; the stream bridge its
    persistence actors.

    Work is spread by pl_peers_pick: the peer with the least outstanding
    work (a count the owner keeps in each peer), ties taken in turn, so
    equal peers share the load round-robin.
    =========================================================================
*/
#ifndef PL_PEERS_H_INCLUDED
#define PL_PEERS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *id;                   //  routing id
    int64_t last_seen;          //  monotonic ms of the last message from it
    size_t outstanding;         //  work handed to it, unconfirmed (owner's count)
    void *data;                 //  the owner's, freed by its destructor
} pl_peer_t;

typedef struct _pl_peers_t pl_peers_t;

//  Frees a peer's data (called when the peer is removed or destroyed).
typedef void (pl_peer_data_free_fn) (void **data_p);

//  Peers silent for longer than timeout_ms are gone. free_data may be NULL.
pl_peers_t *
    pl_peers_new (int timeout_ms, pl_peer_data_free_fn *free_data);

void
    pl_peers_destroy (pl_peers_t **self_p);

//  A message came from peer id at monotonic time now: the peer, added if it
//  was not known (then *added is true, when added is not NULL).
pl_peer_t *
    pl_peers_seen (pl_peers_t *self, const char *id, int64_t now, bool *added);

//  The peer with this routing id, or NULL.
pl_peer_t *
    pl_peers_find (pl_peers_t *self, const char *id);

//  Forget a peer (it left, or a send to it failed). The pointer is invalid
//  afterwards.
void
    pl_peers_remove (pl_peers_t *self, pl_peer_t *peer);

size_t
    pl_peers_size (pl_peers_t *self);

//  Iterate in the current order; do not add or remove while iterating.
pl_peer_t *
    pl_peers_first (pl_peers_t *self);
pl_peer_t *
    pl_peers_next (pl_peers_t *self);

//  The peer that should take the next piece of work: the fewest outstanding
//  below limit (0: no limit), ties in turn. It moves to the back, so the
//  next tie goes to another. NULL when there is none or all are full.
pl_peer_t *
    pl_peers_pick (pl_peers_t *self, size_t limit);

//  One peer silent past the timeout at time now, or NULL. The owner cleans
//  up after it (requeues its work, logs) and removes it, then asks again.
pl_peer_t *
    pl_peers_expired (pl_peers_t *self, int64_t now);

void
    pl_peers_test (bool verbose);

#endif
