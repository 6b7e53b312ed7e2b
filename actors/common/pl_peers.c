/*  =========================================================================
    pl_peers - the peers of one kind an actor knows, with one liveness rule
    =========================================================================
*/
#include "pl_peers.h"
#include "pl_util.h"

#include <assert.h>
#include <czmq.h>

struct _pl_peers_t {
    zlistx_t *peers;            //  pl_peer_t, the order of turns
    int timeout_ms;
    pl_peer_data_free_fn *free_data;
};

//  zlistx destructors take no context, so the peer carries its own
typedef struct {
    pl_peer_t peer;
    pl_peer_data_free_fn *free_data;
} s_entry_t;

static void
s_peer_destroy (void **item_p)
{
    s_entry_t *entry = (s_entry_t *) *item_p;
    if (entry) {
        pl_peer_t *peer = &entry->peer;
        if (entry->free_data && peer->data)
            entry->free_data (&peer->data);
        free (peer->id);
        free (peer);
        *item_p = NULL;
    }
}

pl_peers_t *
pl_peers_new (int timeout_ms, pl_peer_data_free_fn *free_data)
{
    assert (timeout_ms > 0);
    pl_peers_t *self = (pl_peers_t *) zmalloc (sizeof (pl_peers_t));
    assert (self);
    self->peers = zlistx_new ();
    assert (self->peers);
    zlistx_set_destructor (self->peers, s_peer_destroy);
    self->timeout_ms = timeout_ms;
    self->free_data = free_data;
    return self;
}

void
pl_peers_destroy (pl_peers_t **self_p)
{
    assert (self_p);
    pl_peers_t *self = *self_p;
    if (self) {
        zlistx_destroy (&self->peers);
        free (self);
        *self_p = NULL;
    }
}

pl_peer_t *
pl_peers_find (pl_peers_t *self, const char *id)
{
    assert (self && id);
    for (pl_peer_t *peer = (pl_peer_t *) zlistx_first (self->peers); peer;
         peer = (pl_peer_t *) zlistx_next (self->peers))
        if (streq (peer->id, id))
            return peer;
    return NULL;
}

pl_peer_t *
pl_peers_seen (pl_peers_t *self, const char *id, int64_t now, bool *added)
{
    pl_peer_t *peer = pl_peers_find (self, id);
    if (added)
        *added = peer == NULL;
    if (!peer) {
        s_entry_t *entry = (s_entry_t *) zmalloc (sizeof (s_entry_t));
        assert (entry);
        entry->free_data = self->free_data;
        peer = &entry->peer;
        peer->id = strdup (id);
        assert (peer->id);
        zlistx_add_end (self->peers, peer);
    }
    peer->last_seen = now;
    return peer;
}

void
pl_peers_remove (pl_peers_t *self, pl_peer_t *peer)
{
    assert (self && peer);
    void *handle = zlistx_find (self->peers, peer);
    assert (handle);
    zlistx_delete (self->peers, handle);
}

size_t
pl_peers_size (pl_peers_t *self)
{
    assert (self);
    return zlistx_size (self->peers);
}

pl_peer_t *
pl_peers_first (pl_peers_t *self)
{
    assert (self);
    return (pl_peer_t *) zlistx_first (self->peers);
}

pl_peer_t *
pl_peers_next (pl_peers_t *self)
{
    assert (self);
    return (pl_peer_t *) zlistx_next (self->peers);
}

pl_peer_t *
pl_peers_pick (pl_peers_t *self, size_t limit)
{
    assert (self);
    pl_peer_t *best = NULL;
    for (pl_peer_t *peer = (pl_peer_t *) zlistx_first (self->peers); peer;
         peer = (pl_peer_t *) zlistx_next (self->peers))
        if ((limit == 0 || peer->outstanding < limit)
        &&  (!best || peer->outstanding < best->outstanding))
            best = peer;
    if (best)
        zlistx_move_end (self->peers, zlistx_find (self->peers, best));
    return best;
}

pl_peer_t *
pl_peers_expired (pl_peers_t *self, int64_t now)
{
    assert (self);
    for (pl_peer_t *peer = (pl_peer_t *) zlistx_first (self->peers); peer;
         peer = (pl_peer_t *) zlistx_next (self->peers))
        if (now - peer->last_seen > self->timeout_ms)
            return peer;
    return NULL;
}

static void
s_test_free_data (void **data_p)
{
    free (*data_p);
    *data_p = NULL;
}

void
pl_peers_test (bool verbose)
{
    if (verbose)
        printf (" * pl_peers: ");
    pl_peers_t *peers = pl_peers_new (1000, s_test_free_data);
    bool added = false;
    pl_peer_t *a = pl_peers_seen (peers, "store-0", 100, &added);
    pl_check (a && added && streq (a->id, "store-0"));
    pl_peer_t *b = pl_peers_seen (peers, "store-1", 100, &added);
    pl_check (b && added);
    b->data = strdup ("freed with its peer");
    pl_check (pl_peers_seen (peers, "store-0", 500, &added) == a && !added);
    pl_check (a->last_seen == 500 && pl_peers_size (peers) == 2);
    pl_check (pl_peers_find (peers, "store-1") == b);
    pl_check (pl_peers_find (peers, "store-9") == NULL);

    //  Equal peers take turns
    pl_check (pl_peers_pick (peers, 0) == a);
    pl_check (pl_peers_pick (peers, 0) == b);
    pl_check (pl_peers_pick (peers, 0) == a);
    //  The least busy wins; a full one is skipped
    a->outstanding = 3;
    pl_check (pl_peers_pick (peers, 0) == b);
    pl_check (pl_peers_pick (peers, 0) == b);
    b->outstanding = 5;
    pl_check (pl_peers_pick (peers, 5) == a);
    a->outstanding = 5;
    pl_check (pl_peers_pick (peers, 5) == NULL);

    //  One liveness rule: silent for longer than the timeout is gone
    pl_check (pl_peers_expired (peers, 1100) == NULL);
    pl_check (pl_peers_expired (peers, 1101) == b);
    pl_peers_remove (peers, b);
    pl_check (pl_peers_expired (peers, 1101) == NULL);
    pl_check (pl_peers_expired (peers, 1501) == a);
    size_t count = 0;
    for (pl_peer_t *peer = pl_peers_first (peers); peer; peer = pl_peers_next (peers))
        count++;
    pl_check (count == 1);
    pl_peers_destroy (&peers);
    pl_peers_destroy (&peers);
    if (verbose)
        printf ("OK\n");
}
