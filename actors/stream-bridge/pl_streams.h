/*  =========================================================================
    pl_streams - the stream bridge's Redis layer: shard streams, appends,
    fan-out and persist consumer groups

    The only place of parley that speaks to Redis. Messages of a room go to
    one of S shard streams "<prefix>:{<shard>}:stream"; an append is one Lua
    script (dedup, seq, XADD) pipelined on a command connection. Two readers,
    each on its own connection, consume the group "fanout:<host_id>" and the
    shared group "persist". Everything runs under the caller's zmq_poll loop:
    put the items of pl_streams_pollitems in the poll array, then call
    pl_streams_handle every loop turn.

    Each append also records the entry in a per-room replay index
    "<prefix>:{<shard>}:idx:<roomId>" (newest replay-window entries), read
    by pl_streams_replay. Housekeeping runs by itself from pl_streams_handle:
    pending persist work that another consumer left idle is claimed
    (XAUTOCLAIM), a janitor trims every shard stream to what some group
    still needs and destroys the fan-out groups of hosts gone for good, and
    this host's liveness key "<prefix>:host:<host_id>" is refreshed.

    Redis Cluster (configuration redis-cluster = true, no auto-detection):
    redis-url lists seed nodes, "redis://[[user]:password@]h1:p1,h2:p2,..."
    (no /db: a cluster has only db 0). The slot map comes from CLUSTER
    SLOTS on a seed; each master gets one command connection; each shard
    gets its own fan-out and persist reader connection (XREADGROUP cannot
    span slots), on the master owning the shard's slot. MOVED is followed
    (map reloaded, command resent), ASK too (ASKING, then the command, map
    unchanged), at most PL_STREAMS_REDIRECTS_MAX times per command. Every
    script and transaction stays within one shard's hash tag; the dead-letter
    path becomes XADD to "<prefix>:dead", then XACK once that answered OK.

    Broadcast: pl_streams_broadcast PUBLISHes opaque bytes on the channel
    "<prefix>:broadcast" over a command link (cluster: any master, a
    PUBLISH reaches the subscribers of every node); a subscriber link of
    its own (cluster: on one master), opened only once a handler is set,
    hands every message of the channel to it, this host's own included.
    Best effort and bounded (broadcast-max-bytes): nothing is stored or
    retried, and what is published while the subscriber is away (Redis
    restarting, the link reconnecting) is lost. For what may be lost:
    typing indicators, presence; never chat messages.

    Callbacks run from inside pl_streams_handle (or pl_streams_destroy for
    requests that fail at teardown). They may call any function here except
    pl_streams_destroy.

    The code lives in streams/, one concern a file: streams/pl_streams.c
    opens with a map of them. Limits and timeouts come from pl_config.
    =========================================================================
*/
#ifndef PL_STREAMS_H_INCLUDED
#define PL_STREAMS_H_INCLUDED

#include <czmq.h>
#include <jansson.h>
#include "pl_config.h"

//  Most poll items pl_streams_pollitems fills: single Redis uses 4
//  (command, fan-out, persist, broadcast subscriber); a cluster 1 +
//  masters + 2 * shards + 1, so redis-cluster allows at most
//  (256 - 2 - 16) / 2 = 119 shards
#define PL_STREAMS_POLLITEMS_MAX 256
//  Most cluster masters the layer talks to
#define PL_STREAMS_NODES_MAX 16
//  Most MOVED/ASK redirects one command follows
#define PL_STREAMS_REDIRECTS_MAX 5

typedef struct {
    const char *room_id;
    const char *type;
    const char *sender_id;
    const char *sender_name;
    const char *content;
    const char *client_msg_id;  //  NULL or "" = none
    int64_t created_ms;
    int64_t seq;                //  output; input of a READ: the new cursor
    //  Append: the room's highest seq stored elsewhere (MongoDB). >= 0: the
    //  room's counter is raised to it (or to its replay index's newest)
    //  first; 0 when the caller knows of nothing stored. PL_SEQ_FLOOR_CHECK:
    //  the counter must exist, else the append is answered 3
    int64_t seq_floor;
    //  Append with a floor: the caller restored the dedup keys of the
    //  messages between the counter and the floor (after an answer 5)
    bool dedup_restored;
    const char *stream_key;     //  set on entries read from a stream
    const char *entry_id;       //  set on entries read from a stream
} pl_entry_t;

typedef struct _pl_streams_t pl_streams_t;

#define PL_SEQ_FLOOR_CHECK  (-1)

//  Counters since pl_streams_new
typedef struct {
    uint64_t appended;          //  appends answered 0
    uint64_t duplicates;        //  appends answered 1 (clientMsgId seen)
    uint64_t fanout_read;       //  entries handed to on_fanout (signals too)
    uint64_t persist_read;      //  entries handed to on_persist from reads
    uint64_t claimed;           //  entries handed to on_persist from XAUTOCLAIM
    uint64_t dead_lettered;     //  entries moved to <prefix>:dead
    uint64_t trimmed;           //  entries the janitor removed
    uint64_t append_errors;     //  appends answered -1
    uint64_t unreplicated;      //  appends answered -2 (WAIT came back short)
    uint64_t counters_missing;  //  appends answered 3 (no counter, no floor)
    uint64_t counters_raised;   //  appends whose floor raised a counter that was behind
    uint64_t dedup_restored;    //  clientMsgId keys put back (pl_streams_dedup_restore)
    uint64_t replication_waits; //  WAITs sent (redis-min-replicas > 0)
    uint64_t reconnects;        //  connections set up again after a loss
    uint64_t redirects;         //  cluster: MOVED/ASK replies followed
    uint64_t slot_map_loads;    //  cluster: CLUSTER SLOTS replies applied
    uint64_t broadcasts_sent;   //  PUBLISHes queued by pl_streams_broadcast
    uint64_t broadcasts_received;   //  messages handed to the broadcast handler
    uint64_t broadcasts_dropped;    //  pl_streams_broadcast refused (not connected, too big)
} pl_streams_stats_t;

//  result: 0 appended (seq set), 1 duplicate clientMsgId (seq = original
//  seq), -1 failed (error text). A READ: 0 cursor moved (seq = the new
//  cursor), 1 not forward, nothing appended (seq = the cursor), 2 refused,
//  seq past the room's last (seq = the room's last seq). A failure after
//  the command was sent (lost connection, teardown) leaves the outcome
//  unknown: retry with the same clientMsgId, the dedup key makes that safe. -2: with redis-min-replicas
//  set, the primary answered (seq set) but fewer replicas confirmed it
//  within redis-wait-timeout-ms (a crash of the primary could lose it):
//  not acknowledged; a retry with the same clientMsgId gets this seq.
//  3: appended with PL_SEQ_FLOOR_CHECK to a room whose counter Redis does
//  not have (a new room, or Redis lost it), or (cluster) whose slot has
//  another master now, maybe a promoted replica that lacks writes: nothing
//  appended; append again with the room's highest stored seq (0: none) as
//  seq_floor. 5: appended
//  with a floor above the room's counter (seq = the counter: Redis lost
//  writes) and dedup_restored false: nothing appended; restore the dedup
//  keys of the stored messages with seqs above seq up to the floor
//  (pl_streams_dedup_restore), then append again with dedup_restored.
typedef void (pl_append_fn) (void *arg, int result, int64_t seq, const char *error);
//  entry and its strings are valid only during the call
typedef void (pl_entry_fn) (void *arg, const pl_entry_t *entry);
//  payload: size bytes as published (may hold NULs; use size, not strlen),
//  valid only during the call
typedef void (pl_broadcast_fn) (void *arg, const char *payload, size_t size);
//  result 0 ok / -1 failed; first_seq: lowest seq delivered (0 if none);
//  last_seq: the room's current last seq (0 on failure)
typedef void (pl_replay_done_fn) (void *arg, int result, int64_t first_seq, int64_t last_seq);

//  Create the layer and start connecting (it keeps retrying while Redis is
//  down). Returns NULL when the configuration cannot be used (bad redis_url).
//  on_fanout or on_persist may be NULL: that reader then does not run.
pl_streams_t *
    pl_streams_new (const pl_config_t *config, pl_entry_fn *on_fanout,
                    pl_entry_fn *on_persist, void *arg);

//  Flush batched XACKs (waits at most stop-flush-ms), fail queued appends,
//  close.
void
    pl_streams_destroy (pl_streams_t **self_p);

//  Poll integration: fill up to max items (fd + events wanted) for the Redis
//  connections; returns how many (at most PL_STREAMS_POLLITEMS_MAX).
int
    pl_streams_pollitems (pl_streams_t *self, zmq_pollitem_t *items, int max);

//  After zmq_poll: handle the revents of the items pl_streams_pollitems
//  filled (same order), then timers (reconnects) and batched XACKs. Call
//  this every loop turn even if nothing was ready.
void
    pl_streams_handle (pl_streams_t *self, zmq_pollitem_t *items, int count);

//  Milliseconds until the next timer (for the poll timeout), or -1.
int
    pl_streams_timeout (pl_streams_t *self);

//  Queue one append. A message of type "READ" is a read cursor instead
//  (entry seq = the reader's new cursor, sender = the reader): it takes
//  no seq of its own and is not in the replay index, but both groups read
//  it like a message (entry type READ, seq = the cursor). Returns 0 when
//  queued: done is then called exactly once, later (never from inside
//  this call), also on failure or destroy. Returns -1 when refused (no
//  room id, a READ without a cursor, or destroy under way): done is not
//  called.
int
    pl_streams_append (pl_streams_t *self, const pl_entry_t *message,
                       pl_append_fn *done, void *done_arg);

//  Read the room's entries with seq > after_seq that are still in the
//  stream, ascending, at most max (from the room's replay index, one Lua
//  script on the command connection, pipelined behind earlier appends).
//  on_entry is called for each (fields as for fan-out, seq set), then done
//  exactly once, later (never inside this call). The entries delivered are
//  consecutive seqs from first_seq: index members whose entry was trimmed
//  from the stream are skipped only before the first one delivered (the
//  caller finds a gap between what MongoDB has and first_seq and asks
//  MongoDB again); a hole after it ends the batch early (ask again after
//  the last seq received). Returns 0 when queued, -1 when refused (no room
//  id, max < 1, destroy under way): done is then not called.
int
    pl_streams_replay (pl_streams_t *self, const char *room_id, int64_t after_seq, int max,
                       pl_entry_fn *on_entry, pl_replay_done_fn *done, void *arg);

//  XADD to the room's shard stream an entry with v=1, room, type (e.g.
//  "ROOM_CHANGED"), seq 0, and user and content (NULL: empty) as its
//  sender and content: every host's fan-out reader hands it to on_fanout
//  like any entry (entry->seq == 0 tells it apart; it is not a chat
//  message); the persist reader XACKs it itself and never calls
//  on_persist. Returns 0 when sent, -1 when Redis is not connected or room
//  or type is empty (nothing sent).
int
    pl_streams_signal (pl_streams_t *self, const char *room_id, const char *type,
                       const char *user, const char *content);

//  A room was just created, nothing of it stored: its seq counter starts at
//  0 unless Redis has one (HSETNX), queued ahead of whatever is sent for
//  the room after this call, so its first append needs no floor. Returns
//  0 when queued, -1 when Redis is not connected (the first append then
//  finds no counter and is answered 3).
int
    pl_streams_room_created (pl_streams_t *self, const char *room_id);

//  A stored message's clientMsgId remembered again (SET NX, dedup-ttl-s),
//  queued ahead of what is sent for the room after this call: a retry of
//  it then gets seq. Returns 0 when queued, -1 when refused (Redis not
//  connected, no cmid).
int
    pl_streams_dedup_restore (pl_streams_t *self, const char *room_id, const char *sender,
                              const char *cmid, int64_t seq);

//  A persist entry was stored: XACK it (batched).
void
    pl_streams_persist_ack (pl_streams_t *self, const char *stream_key, const char *entry_id);

//  A persist entry cannot be stored (the caller counts attempts itself):
//  in one MULTI/EXEC, XADD it to "<prefix>:dead" (all its fields plus
//  stream, entry_id, error, failed_at) and XACK it from the persist group.
//  Takes the place of pl_streams_persist_ack. If the transaction does not
//  go through (Redis away), the entry stays pending and is handed to
//  on_persist again later (re-read or XAUTOCLAIM).
void
    pl_streams_persist_fail (pl_streams_t *self, const pl_entry_t *entry, const char *error);

//  Hold or release fan-out. While held no entry goes to on_fanout and none
//  is acked; on_fanout may set the hold itself when it cannot pass the
//  entry on (that entry is then not acked either). On release, whatever was
//  held is read again first, in stream order, then new entries.
void
    pl_streams_fanout_hold (pl_streams_t *self, bool hold);

//  Per consumer group, summed over the shard streams, as the janitor last
//  saw them: {"persist": {"pending": n, "lag": n}, "fanout:h1": {...}}.
//  pending: delivered, not acked; lag: not yet delivered to the group.
json_t *
    pl_streams_groups_json (pl_streams_t *self);

//  Entries handed to on_persist and not yet acked.
size_t
    pl_streams_persist_inflight (pl_streams_t *self);

//  Changes whenever Redis may have lost writes it had answered: a command
//  connection (re)starts (a restart of Redis breaks it), a cluster redirect
//  is followed, the slot map changes (a failover). A room's counter
//  checked against MongoDB under an older generation must be checked again
//  (PL_SEQ_FLOOR_CHECK finds only a missing counter, not one gone back).
uint64_t
    pl_streams_generation (pl_streams_t *self);

//  True when the command connection is up and both readers have their
//  groups (appends made from now on reach this host's fan-out).
bool
    pl_streams_connected (pl_streams_t *self);

//  The same for one room: the link that appends to its shard is up and
//  the shard's readers have their groups. Under a cluster, a master that
//  is down stops only the rooms of its slots.
bool
    pl_streams_room_ready (pl_streams_t *self, const char *room_id);

//  PUBLISH payload (size bytes, binary-safe) to every host's broadcast
//  handler, this one's included. Never blocks, nothing comes back: an
//  error reply is only logged. Returns 0 when queued, -1 when Redis is not
//  connected or size is over broadcast-max-bytes (nothing sent, counted as
//  dropped). Best effort: a host whose subscriber is away misses it.
int
    pl_streams_broadcast (pl_streams_t *self, const char *payload, size_t size);

//  Hand every broadcast received to handler (arg as given), from inside
//  pl_streams_handle. The subscriber link opens with the first handler
//  (none is opened until then) and closes when handler is NULL; what is
//  published before it has subscribed is not received (pl_streams_connected
//  does not wait for it).
void
    pl_streams_set_broadcast_handler (pl_streams_t *self, pl_broadcast_fn *handler, void *arg);

//  Copy the counters.
void
    pl_streams_stats (pl_streams_t *self, pl_streams_stats_t *stats);

//  Shard of a room: CRC16-XMODEM (as Redis Cluster) of room_id mod shards.
int
    pl_streams_shard (const char *room_id, int shards);

void
    pl_streams_test (bool verbose);

#endif
