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

    Callbacks run from inside pl_streams_handle (or pl_streams_destroy for
    appends that fail at teardown). They may call pl_streams_append and
    pl_streams_persist_ack, never pl_streams_destroy.
    =========================================================================
*/
#ifndef PL_STREAMS_H_INCLUDED
#define PL_STREAMS_H_INCLUDED

#include <czmq.h>
#include "pl_config.h"

//  Most poll items pl_streams_pollitems fills (command, fan-out, persist)
#define PL_STREAMS_POLLITEMS_MAX 3

typedef struct {
    const char *room_id;
    const char *type;
    const char *sender_id;
    const char *sender_name;
    const char *content;
    const char *client_msg_id;  //  NULL or "" = none
    int64_t created_ms;
    int64_t seq;                //  only for output
    const char *stream_key;     //  set on entries read from a stream
    const char *entry_id;       //  set on entries read from a stream
} pl_entry_t;

typedef struct _pl_streams_t pl_streams_t;

//  result: 0 appended (seq set), 1 duplicate clientMsgId (seq = original
//  seq), -1 failed (error text). A failure after the command was sent (lost
//  connection, teardown) leaves the outcome unknown: retry with the same
//  clientMsgId, the dedup key makes that safe.
typedef void (pl_append_fn) (void *arg, int result, int64_t seq, const char *error);
//  entry and its strings are valid only during the call
typedef void (pl_entry_fn) (void *arg, const pl_entry_t *entry);

//  Create the layer and start connecting (it keeps retrying while Redis is
//  down). Returns NULL when the configuration cannot be used (bad redis_url).
//  on_fanout or on_persist may be NULL: that reader then does not run.
pl_streams_t *
    pl_streams_new (const pl_config_t *config, pl_entry_fn *on_fanout,
                    pl_entry_fn *on_persist, void *arg);

//  Flush batched XACKs (waits at most 500 ms), fail queued appends, close.
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

//  Queue one append. Returns 0 when queued: done is then called exactly
//  once, later (never from inside this call), also on failure or destroy.
//  Returns -1 when refused (no room id, or destroy under way): done is not
//  called.
int
    pl_streams_append (pl_streams_t *self, const pl_entry_t *message,
                       pl_append_fn *done, void *done_arg);

//  A persist entry was stored: XACK it (batched).
void
    pl_streams_persist_ack (pl_streams_t *self, const char *stream_key, const char *entry_id);

//  Entries handed to on_persist and not yet acked.
size_t
    pl_streams_persist_inflight (pl_streams_t *self);

//  True when the command connection is up and both readers have their
//  groups (appends made from now on reach this host's fan-out).
bool
    pl_streams_connected (pl_streams_t *self);

//  Shard of a room: CRC16-XMODEM (as Redis Cluster) of room_id mod shards.
int
    pl_streams_shard (const char *room_id, int shards);

void
    pl_streams_test (bool verbose);

#endif
