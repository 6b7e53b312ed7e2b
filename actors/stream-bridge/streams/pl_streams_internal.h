/*  =========================================================================
    pl_streams_internal - what the files of pl_streams share: the private
    state, split by concern, and the functions one file offers the others

    Only the files in this folder include it. Every function here is named
    pl_streams_<file>_<what> after the file that defines it; static helpers
    inside a file are s_*.
    =========================================================================
*/
#ifndef PL_STREAMS_INTERNAL_H_INCLUDED
#define PL_STREAMS_INTERNAL_H_INCLUDED

#include "pl_streams.h"
#include "pl_log.h"
#include "pl_util.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

//  Protocol constants: facts of Redis, not settings
#define ID_MAX              48      //  "18446744073709551615-18446744073709551615"
#define READ_ROUNDS         16      //  hiredis reads 16 KB a call: drain more per turn
#define CLUSTER_SLOTS       16384
#define SEEDS_MAX           16

typedef struct _reader_t reader_t;
typedef struct _node_t node_t;
typedef struct _jshard_t jshard_t;
typedef struct _op_t op_t;


//  --------------------------------------------------------------------------
//  Links (pl_streams_link.c): one hiredis async connection each

typedef struct {
    pl_streams_t *owner;
    const char *name;           //  "command", "fanout", "persist", "cluster"
    node_t *node;               //  cluster: the master a command link goes to
    int target;                 //  cluster: node index of the live link, -1 none
    bool enabled;               //  a reader without callback never connects
    redisAsyncContext *ac;      //  NULL while down
    bool want_read;             //  set by hiredis through the ev hooks
    bool want_write;
    bool connected;             //  onConnect said OK
    bool was_connected;         //  once: a later connect counts as a reconnect
    int64_t reconnect_at;       //  mono ms of the next attempt while down
    int backoff_ms;
    int outstanding;            //  replies we still wait for
    int64_t progress_ms;        //  last reply, or first request to an idle link
    int grace_ms;               //  no progress this long: the link is dead
    reader_t *reader;           //  NULL on command and slot-map links
    op_t *unconfirmed_head;     //  appends answered here, awaiting their WAIT
    op_t *unconfirmed_tail;
} conn_t;

//  Settings, fixed at new; every default lives in pl_config.c
typedef struct {
    int shards;
    int read_count;             //  COUNT of one read or claim
    int block_ms;               //  BLOCK of a live read over every shard
    int subset_block_ms;        //  ... over only some shards
    int persist_limit;          //  persist-inflight
    int request_timeout_ms;     //  a link without progress this long is dead
    int backoff_min_ms;         //  reconnect: first wait, doubled up to max
    int backoff_max_ms;
    int retry_ms;               //  a reader retries after an error reply
    int ack_batch;              //  most ids in one XACK
    int stop_flush_ms;          //  destroy waits this long for its XACKs
    int claim_interval_ms;
    int janitor_interval_ms;
    int host_refresh_ms;        //  at most a third of host-gone-s
    int stream_retain_s;        //  entries this young are never trimmed
    size_t broadcast_max;       //  broadcast-max-bytes
    int min_replicas;           //  redis-min-replicas: WAIT for this many
    char min_replicas_text [16];
    char wait_timeout_text [16];    //  redis-wait-timeout-ms
    char dedup_ttl_text [16];   //  dedup-ttl-s
    char window_text [16];      //  replay-window
    char index_ttl_text [16];   //  replay-ttl-s
    char read_ttl_text [16];    //  read-cache-ttl-s
    char claim_idle_text [16];  //  claim-idle-ms
    char host_gone_text [16];   //  host-gone-s
} settings_t;

//  Where Redis is, from redis-url
typedef struct {
    char *host;                 //  cluster: the first seed, for the logs
    int port;
    char *password;             //  NULL: no AUTH
    int db;
    bool cluster;               //  redis-cluster: the url lists seeds
    char *seed_hosts [SEEDS_MAX];
    int seed_ports [SEEDS_MAX];
    int seed_count;
    int seed_next;              //  seed the slot-map link tries next
} server_t;

//  Names of every key we use, made at new
typedef struct {
    char *prefix;               //  key-prefix
    char *host_id;
    char *fanout_group;         //  "fanout:<host_id>"
    char **stream;              //  per shard "<prefix>:{<shard>}:stream"
    char **seq;                 //  per shard "<prefix>:{<shard>}:seq"
    char *shard_prefix;         //  "<prefix>:{" (shard, "}" and the rest follow)
    char *host;                 //  "<prefix>:host:<host_id>"
    char *dead;                 //  "<prefix>:dead"
} keys_t;

//  Every link, in poll order; conns has room for PL_STREAMS_POLLITEMS_MAX.
//  Returns how many.
int
    pl_streams_link_list (pl_streams_t *self, conn_t **conns);
//  A link that is down; grace_ms: no reply for this long drops it
void
    pl_streams_link_init (conn_t *conn, pl_streams_t *owner, const char *name, int grace_ms);
//  Connect; AUTH, SELECT and what the link's role needs are queued behind
void
    pl_streams_link_start (conn_t *conn);
//  Whether the connect completed and the link is not lost
bool
    pl_streams_link_up (conn_t *conn);
//  Queue one command. Returns 0, or -1 when the link is down.
int
    pl_streams_link_send (conn_t *conn, redisCallbackFn *fn, void *privdata,
                          int argc, const char **argv, const size_t *argvlen);
//  Opens every reply callback: the reply counts for the no-progress
//  watchdog of the link it came on. Returns it typed; NULL when the link
//  was lost or is being freed (hiredis then runs every pending callback).
redisReply *
    pl_streams_link_reply (redisAsyncContext *ac, void *reply_p);
//  Reply callback of commands whose only interest is an error: privdata
//  names the command for the log
void
    pl_streams_link_error_only (redisAsyncContext *ac, void *reply_p, void *privdata);
//  After zmq_poll: let hiredis read and write what revents allow
void
    pl_streams_link_io (conn_t *conn, redisAsyncContext *ac, short revents);
//  Reconnect when due, drop a link that stopped answering
void
    pl_streams_link_tick (conn_t *conn, int64_t now);
//  Close the link once the replies still due came (hiredis frees it then,
//  or once the callback under way returns); nothing when down or closing
void
    pl_streams_link_close (conn_t *conn);
//  Mono ms of the link's next timer, -1 none
int64_t
    pl_streams_link_due (conn_t *conn);
//  redis://[[user]:password@]host[:port][/db]
int
    pl_streams_link_parse_url (server_t *server, const char *url);


//  --------------------------------------------------------------------------
//  Redis Cluster (pl_streams_cluster.c)

//  A cluster master and its command link
struct _node_t {
    char host [256];
    int port;
    int slots;                  //  slots it serves in our map; 0: its link rests
    conn_t command;
};

typedef struct {
    conn_t map;                 //  CLUSTER SLOTS link
    bool loading;               //  a CLUSTER SLOTS is out
    bool stale;                 //  a MOVED came, or slots unserved: load again
    bool loaded;
    int64_t load_at;            //  no reload before this mono ms
    int16_t *slot_node;         //  per slot: index in nodes, -1 unknown
    node_t *nodes [PL_STREAMS_NODES_MAX];
    int node_count;
} cluster_t;

//  CRC16-XMODEM, as Redis Cluster computes slots
uint16_t
    pl_streams_cluster_crc16 (const char *data, size_t length);
//  Slot of a key: CRC16 of its hash tag, else of the whole key
int
    pl_streams_cluster_keyslot (const char *key);
//  redis://[[user]:password@]host[:port][,host[:port]...]
int
    pl_streams_cluster_parse_seeds (server_t *server, const char *url);
//  Where a link connects to. Returns -1 when not known yet (a reader whose
//  shard's master is not in the slot map).
int
    pl_streams_cluster_address (conn_t *conn, const char **host, int *port);
//  The command links: single Redis one, a cluster one per master
int
    pl_streams_cluster_command_links (pl_streams_t *self, conn_t **conns);
//  Whether every command link is up (cluster: the slot map is in and the
//  link of every master that serves slots is up)
bool
    pl_streams_cluster_commands_up (pl_streams_t *self);
//  The slot map's timers: loaded again after a MOVED, while slots are
//  unserved, and while a master that serves slots is unreachable (its
//  replica may have taken over). Ticks at now; due returns the mono ms of
//  the next load, -1 none.
void
    pl_streams_cluster_tick (pl_streams_t *self, int64_t now);
int64_t
    pl_streams_cluster_due (pl_streams_t *self);
//  Send a command about key on the command link that serves it; under a
//  cluster wrapped, so a MOVED or ASK reply resends it. Returns 0 or -1.
int
    pl_streams_cluster_send (pl_streams_t *self, const char *key, redisCallbackFn *fn,
                             void *privdata, int argc, const char **argv,
                             const size_t *argvlen);
//  The same for a command that holds only on the master it was meant for:
//  a MOVED reply (the slot has another master, maybe a promoted replica
//  that lacks writes) updates the map and goes to fn, nothing is resent.
int
    pl_streams_cluster_send_pinned (pl_streams_t *self, const char *key, redisCallbackFn *fn,
                                    void *privdata, int argc, const char **argv,
                                    const size_t *argvlen);
//  Whether the link that serves key is connected
bool
    pl_streams_cluster_key_up (pl_streams_t *self, const char *key);
//  Ask for the slot map (again); one request at a time
void
    pl_streams_cluster_map_load (pl_streams_t *self);
//  A reader's reply was MOVED or ASK: the reader follows its shard.
//  Returns true when it was one.
bool
    pl_streams_cluster_redirected (reader_t *reader, redisReply *reply);
//  Cluster: the slot map and its link (the masters' links take the place
//  of the single command link). Returns 0 or -1.
int
    pl_streams_cluster_init (pl_streams_t *self);
void
    pl_streams_cluster_destroy (pl_streams_t *self);


//  --------------------------------------------------------------------------
//  Redis Sentinel (pl_streams_sentinel.c)

typedef struct {
    char *master_name;          //  redis-sentinel-master; NULL: no Sentinel
    conn_t link;                //  to the Sentinels of redis-url in turn
    bool asking;                //  a get-master-addr-by-name is out
    int64_t ask_at;             //  mono ms of the next question
    bool known;                 //  server.host and port name the primary
} sentinel_t;

//  With master_name (not empty): url lists Sentinels. Returns 0 or -1.
int
    pl_streams_sentinel_init (pl_streams_t *self, const char *master_name, const char *url);
void
    pl_streams_sentinel_destroy (pl_streams_t *self);
bool
    pl_streams_sentinel_active (pl_streams_t *self);
//  Ask the Sentinel link for the primary's address (one question out)
void
    pl_streams_sentinel_ask (pl_streams_t *self);
//  The next question every redis-retry-ms: tick at now; due, -1 none
void
    pl_streams_sentinel_tick (pl_streams_t *self, int64_t now);
int64_t
    pl_streams_sentinel_due (pl_streams_t *self);


//  --------------------------------------------------------------------------
//  Scripted requests: appends and replays (pl_streams_append.c)

typedef enum { SCRIPT_APPEND, SCRIPT_READ, SCRIPT_REPLAY, SCRIPT_COUNT } script_id_t;

typedef struct {
    const char *name;
    const char *text;
    char sha [41];              //  lower case, computed at new
    bool reloading;             //  a SCRIPT LOAD after NOSCRIPT is under way
} script_t;

typedef enum { OP_APPEND, OP_REPLAY } op_kind_t;

//  A scripted request with a caller callback: an append or a replay
struct _op_t {
    pl_streams_t *owner;
    op_kind_t kind;
    script_t *script;
    pl_append_fn *append_done;
    pl_entry_fn *on_entry;      //  replay
    pl_replay_done_fn *replay_done;
    void *arg;
    int shard;                  //  the room's shard
    int argc;                   //  of the EVAL form
    const char **argv;          //  point into the same allocation
    size_t *argvlen;
    bool retried;               //  already resent as EVAL after NOSCRIPT
    bool pinned;                //  an append with PL_SEQ_FLOOR_CHECK: not resent after MOVED
    const char *error;          //  failed before sending (deferred list)
    int result;                 //  the primary's answer, while awaiting WAIT
    int64_t seq;
    op_t *next;                 //  in the deferred list, or a WAIT's list
};

typedef struct {
    script_t scripts [SCRIPT_COUNT];
    op_t *failed_head;          //  requests that failed before sending
    op_t *failed_tail;
} scripted_t;

//  SHA1 of every script, so EVALSHA can follow SCRIPT LOAD in one pipeline
int
    pl_streams_append_init (pl_streams_t *self);
//  SCRIPT LOAD of every script on a command link just started
void
    pl_streams_append_load_scripts (conn_t *conn);
//  Callbacks of requests that failed before they were sent
void
    pl_streams_append_run_failed (pl_streams_t *self);
//  With redis-min-replicas: one WAIT on each command link for the appends
//  answered there since its last (their callbacks wait for it). Once a
//  turn, after the replies were read.
void
    pl_streams_append_flush_waits (pl_streams_t *self);
//  The appends a link holds for a WAIT fail (the link is being freed)
void
    pl_streams_append_fail_unconfirmed (conn_t *conn, const char *error);


//  --------------------------------------------------------------------------
//  Readers: group reads, acks, claims (pl_streams_readers.c)

typedef enum { PHASE_SETUP, PHASE_PENDING, PHASE_LIVE } phase_t;

typedef struct {
    char  **ids;
    size_t  size;
    size_t  capacity;
} id_list_t;

//  XAUTOCLAIM scan of one shard's persist group
typedef struct {
    reader_t *reader;
    int shard;
    char cursor [ID_MAX];       //  where the scan goes on, "0-0" = from the start
    bool more;                  //  scan of this round not finished
} claim_t;

struct _reader_t {
    pl_streams_t *owner;
    conn_t conn;
    bool persist;
    const char *group;
    const char *start_id;       //  where XGROUP CREATE puts a new group
    pl_entry_fn *callback;
    phase_t phase;
    bool busy;                  //  a request is under way on conn
    int setup_waiting;          //  XGROUP CREATE replies still due
    bool setup_failed;
    int64_t retry_at;           //  no request before this mono ms
    char (*cursor) [ID_MAX];    //  pending phase: last id read, per shard
    bool *drained;              //  pending phase: shard has no more pending
    int *picked;                //  shards of the read under way
    int picked_count;
    int rotate;                 //  first candidate of the next subset read
    const char **argv;
    id_list_t *acks;            //  XACKs to send, per shard
    claim_t *claims;            //  persist reader: XAUTOCLAIM state per shard
    int claims_waiting;         //  XAUTOCLAIM replies still due
    bool claimed_last;          //  the last request was a claim round: read next
    bool skip_reply;            //  fan-out released mid-read: leave that reply pending
    int64_t claim_at;           //  next claim round, mono ms
    int only_shard;             //  cluster: the one shard it reads; -1 = all
    long reserved;              //  persist in-flight room taken by the request out
};

typedef struct {
    reader_t fanout;            //  single Redis: one reader per group
    reader_t persist;
    reader_t *per_shard;        //  cluster: fan-out readers, then persist, per shard
    reader_t **all;             //  every reader
    int count;
    zhashx_t *inflight;         //  "shard/id" of persist entries not acked
    long persist_reserved;      //  sum of the readers' reserved
    int acks_outstanding;
    bool fanout_held;           //  the caller cannot take fan-out entries now
    const char **ack_argv;      //  room for one XACK of ack-batch ids
} readers_t;

//  The readers (a callback NULL: that reader never connects) and the
//  persist in-flight set. Returns 0 or -1.
int
    pl_streams_readers_init (pl_streams_t *self, pl_entry_fn *on_fanout, pl_entry_fn *on_persist);
void
    pl_streams_readers_destroy (pl_streams_t *self);
//  Issue the reader's next request when it is idle and may
void
    pl_streams_readers_kick (reader_t *reader);
//  The reader's link is gone: it starts over (groups, pending, live)
void
    pl_streams_readers_reset (reader_t *reader);
//  Send batched XACKs on the command links
void
    pl_streams_readers_flush_acks (reader_t *reader);
//  Reader of a shard's fan-out or persist group
reader_t *
    pl_streams_readers_for (pl_streams_t *self, bool persist, int shard);
//  Shard of one of our stream keys, or -1 when it is none of ours
int
    pl_streams_readers_shard_of_key (pl_streams_t *self, const char *key);
//  Fields of one stream entry [id, [field, value, ...]] into message; its
//  strings point into the reply. Returns 0 parsed, 1 gone (no fields: a
//  pending entry trimmed away), -1 malformed (no id), -2 lacks room or seq.
int
    pl_streams_readers_parse_entry (pl_streams_t *self, int shard, redisReply *entry,
                                    pl_entry_t *message);
//  Mono ms of the earliest claim round a persist reader waits for, -1 none
int64_t
    pl_streams_readers_claim_due (pl_streams_t *self, int64_t now);


//  --------------------------------------------------------------------------
//  Janitor and host key (pl_streams_janitor.c)

//  One consumer group as the janitor sees it
typedef struct {
    jshard_t *jshard;
    char *name;
    char last [ID_MAX];         //  last-delivered-id
    char oldest [ID_MAX];       //  oldest pending entry, "" = none
    bool gone;                  //  ... whose host key has expired
} jgroup_t;

//  One shard stream during a janitor round
struct _jshard_t {
    pl_streams_t *owner;
    int shard;
    int waiting;                //  replies still due before the shard is decided
    bool failed;                //  something did not answer: no trim this round
    bool decided;               //  destroy and trim sent, waiting for the trim
    bool has_persist;           //  never trim a stream nothing persists
    jgroup_t *groups;
    size_t group_count;
};

typedef struct {
    int64_t at;                 //  next round, mono ms
    jshard_t *shards;           //  state per shard
    int shards_left;            //  shards of the current round not decided yet
    uint64_t rounds;            //  rounds completed (the selftest waits on it)
    zhashx_t *group_figures;    //  "<shard>/<group>" -> group_figures_t
    int64_t host_at;            //  next host key refresh, mono ms
    bool host_key_set;          //  cluster: our host key answered OK once
} janitor_t;

//  Per-shard round state and the group figures. Returns 0 or -1.
int
    pl_streams_janitor_init (pl_streams_t *self);
void
    pl_streams_janitor_destroy (pl_streams_t *self);
//  Host key refresh and janitor round, when due
void
    pl_streams_janitor_tick (pl_streams_t *self, int64_t now);
//  Mono ms of the next host key refresh or round (one still out waits)
int64_t
    pl_streams_janitor_due (pl_streams_t *self);
//  SET the host key on one link, or (NULL) on the command link serving it
void
    pl_streams_janitor_host_key (pl_streams_t *self, conn_t *conn);


//  --------------------------------------------------------------------------
//  Broadcast between hosts (pl_streams_broadcast.c): PUBLISH on a command
//  link, a subscriber link of its own in SUBSCRIBE mode

typedef struct {
    conn_t link;                //  the subscriber; enabled while there is a handler
    pl_broadcast_fn *handler;
    void *arg;
    char *channel;              //  "<prefix>:broadcast"
    bool subscribed;            //  the SUBSCRIBE on this link was confirmed
    int next_node;              //  cluster: the master the subscriber tries next
    int64_t log_at;             //  no log line before this mono ms
    uint64_t log_skipped;       //  lines left out since the last one
} broadcast_t;

//  The channel name and the subscriber link, off. Returns 0 or -1.
int
    pl_streams_broadcast_init (pl_streams_t *self);
void
    pl_streams_broadcast_destroy (pl_streams_t *self);
//  SUBSCRIBE on a subscriber link just started
void
    pl_streams_broadcast_greet (conn_t *conn);


//  --------------------------------------------------------------------------
//  The whole (pl_streams.c)

struct _pl_streams_t {
    settings_t settings;
    server_t server;
    keys_t keys;
    void *arg;                  //  of the caller's entry callbacks
    conn_t command;             //  single Redis: the command link
    cluster_t cluster;
    sentinel_t sentinel;
    scripted_t scripted;
    readers_t readers;
    janitor_t janitor;
    broadcast_t broadcast;
    pl_streams_stats_t stats;
    //  Which link each item of the last pl_streams_pollitems belongs to
    conn_t *item_conn [PL_STREAMS_POLLITEMS_MAX];
    redisAsyncContext *item_ac [PL_STREAMS_POLLITEMS_MAX];
    uint64_t generation;        //  pl_streams_generation
    bool dirty;                 //  work for the next pl_streams_handle
    bool destroying;
    bool in_handle;
};

#endif
