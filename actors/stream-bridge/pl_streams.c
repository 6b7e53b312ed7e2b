/*  =========================================================================
    pl_streams - the stream bridge's Redis layer: shard streams, appends,
    fan-out and persist consumer groups

    Three hiredis async connections, driven by the caller's zmq_poll loop
    through a tiny event adapter (the ev hooks only set want-read/write
    flags): "command" carries pipelined appends (Lua, EVALSHA) and XACKs,
    "fanout" and "persist" each carry one XREADGROUP at a time because a
    blocking read occupies its connection. A dropped connection is freed by
    hiredis (pending callbacks get a NULL reply, then the cleanup hook runs);
    the cleanup hook is the single place that notices and schedules a
    reconnect with backoff.

    Housekeeping shares these links, so it costs no thread and no blocking
    round trip: XAUTOCLAIM goes on the persist link between two reads (so
    the in-flight limit is exact), the janitor and the host key on the
    command link, as chains of pipelined requests whose replies drive the
    next step.
    =========================================================================
*/
#include "pl_streams.h"
#include "pl_log.h"
#include "pl_util.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define BACKOFF_MIN_MS      100
#define BACKOFF_MAX_MS      2000
#define RETRY_MS            1000    //  a reader retries after an error reply
#define ACK_CHUNK           1000    //  most ids in one XACK
#define SUBSET_BLOCK_MS     50      //  BLOCK of a read that covers only some shards
#define DESTROY_FLUSH_MS    500     //  destroy waits this long for its XACKs
#define ID_MAX              48      //  "18446744073709551615-18446744073709551615"
#define READ_ROUNDS         16      //  hiredis reads 16 KB a call: drain more per turn
#define HOST_REFRESH_MS     5000    //  host key refresh, at most (a third of host-gone-s)
#define CLUSTER_SLOTS       16384
#define SEEDS_MAX           16

//  Dedup, seq, XADD and the room's replay index in one script, so a
//  duplicate never gets a seq, a seq never goes unused and the index never
//  misses an entry. All keys come in KEYS, all share one hash tag.
//  KEYS: stream, seq hash, index, [dedup key]. ARGV: room type sender name
//  content cmid created dedup-ttl window index-ttl.
//  Returns {seq, entry id, duplicate}.
static const char *s_append_script =
    "local dedup = KEYS[4]\n"
    "if dedup then\n"
    "  local seen = redis.call('GET', dedup)\n"
    "  if seen then return {tonumber(seen), '', 1} end\n"
    "end\n"
    "local seq = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)\n"
    "local id = redis.call('XADD', KEYS[1], '*', 'v', '1', 'room', ARGV[1],"
    " 'seq', tostring(seq), 'type', ARGV[2], 'sender', ARGV[3], 'name', ARGV[4],"
    " 'content', ARGV[5], 'cmid', ARGV[6], 'created', ARGV[7])\n"
    "if dedup then redis.call('SET', dedup, seq, 'EX', ARGV[8]) end\n"
    "redis.call('ZADD', KEYS[3], seq, id)\n"
    "redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -1 - tonumber(ARGV[9]))\n"
    "redis.call('EXPIRE', KEYS[3], ARGV[10])\n"
    "return {seq, id, 0}\n";

//  Replay in one round trip, bounded by max entries and by the index size.
//  Ids grow with seq inside a room, and the janitor trims streams from the
//  oldest end: index members older than the stream's first entry are a
//  prefix, skipped by comparing ids (no XRANGE) and dropped from the index
//  so the next replay does not walk them again. Past the first entry
//  delivered, a hole ends the batch: what is delivered is consecutive.
//  KEYS: index, stream, seq hash. ARGV: room, after seq, max.
//  Returns {room's last seq, {entry, ...}} with entries as XRANGE gives them.
static const char *s_replay_script =
    "local function older (a, b)\n"
    "  local am, as = string.match(a, '^(%d+)-(%d+)$')\n"
    "  local bm, bs = string.match(b, '^(%d+)-(%d+)$')\n"
    "  if not am or not bm then return false end\n"
    "  if #am ~= #bm then return #am < #bm end\n"
    "  if am ~= bm then return am < bm end\n"
    "  if #as ~= #bs then return #as < #bs end\n"
    "  return as < bs\n"
    "end\n"
    "local last = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0') or 0\n"
    "local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]\n"
    "local max = tonumber(ARGV[3])\n"
    "local from = '(' .. ARGV[2]\n"
    "local out = {}\n"
    "local dead = nil\n"
    "local expect = nil\n"
    "local stop = false\n"
    "while not stop and #out < max do\n"
    "  local page = redis.call('ZRANGEBYSCORE', KEYS[1], from, '+inf', 'WITHSCORES',"
    " 'LIMIT', 0, max - #out + 16)\n"
    "  if #page == 0 then break end\n"
    "  for i = 1, #page, 2 do\n"
    "    local id, score = page[i], page[i + 1]\n"
    "    local seq = tonumber(score)\n"
    "    from = '(' .. score\n"
    "    local entry = nil\n"
    "    if head and not older(id, head[1]) and (not expect or seq == expect) then\n"
    "      entry = redis.call('XRANGE', KEYS[2], id, id)[1]\n"
    "    end\n"
    "    if entry then\n"
    "      out[#out + 1] = entry\n"
    "      expect = seq + 1\n"
    "      if #out == max then stop = true break end\n"
    "    elseif expect then\n"
    "      stop = true break\n"
    "    elseif not head or older(id, head[1]) then\n"
    "      dead = score\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if dead then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', dead) end\n"
    "return {last, out}\n";

typedef struct {
    const char *name;
    const char *text;
    char sha [41];              //  lower case, computed at new
    bool reloading;             //  a SCRIPT LOAD after NOSCRIPT is under way
} script_t;

typedef enum { SCRIPT_APPEND, SCRIPT_REPLAY, SCRIPT_COUNT } script_id_t;

typedef enum { PHASE_SETUP, PHASE_PENDING, PHASE_LIVE } phase_t;

typedef struct {
    char  **ids;
    size_t  size;
    size_t  capacity;
} id_list_t;

typedef struct _reader_t reader_t;

//  XAUTOCLAIM scan of one shard's persist group
typedef struct {
    reader_t *reader;
    int shard;
    char cursor [ID_MAX];       //  where the scan goes on, "0-0" = from the start
    bool more;                  //  scan of this round not finished
} claim_t;

typedef struct _jshard_t jshard_t;

//  What the janitor last saw of one group on one shard, for status records
typedef struct {
    long long pending;          //  delivered, not acked
    long long lag;              //  not yet delivered (-1: Redis did not say)
} group_figures_t;

static void
s_free_item (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

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

typedef struct _node_t node_t;

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
    reader_t *reader;           //  NULL on the command connection
} conn_t;

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
    size_t *argvlen;
    id_list_t *acks;            //  XACKs to send, per shard
    claim_t *claims;            //  persist reader: XAUTOCLAIM state per shard
    int claims_waiting;         //  XAUTOCLAIM replies still due
    bool claimed_last;          //  the last request was a claim round: read next
    bool skip_reply;            //  fan-out released mid-read: leave that reply pending
    int64_t claim_at;           //  next claim round, mono ms
    int only_shard;             //  cluster: the one shard it reads; -1 = all
    long reserved;              //  persist in-flight room taken by the request out
};

//  A cluster master and its command link
struct _node_t {
    char host [256];
    int port;
    conn_t command;
};

//  Cluster: a command with what it takes to resend it after MOVED or ASK
typedef struct {
    pl_streams_t *owner;
    redisCallbackFn *fn;
    void *privdata;
    int redirects;
    int argc;
    const char **argv;          //  point into the same allocation
    size_t *argvlen;
} creq_t;

//  A scripted request with a caller callback: an append or a replay
typedef enum { OP_APPEND, OP_REPLAY } op_kind_t;

typedef struct _op_t op_t;
struct _op_t {
    pl_streams_t *owner;
    op_kind_t kind;
    script_t *script;
    pl_append_fn *append_done;
    pl_entry_fn *on_entry;      //  replay
    pl_replay_done_fn *replay_done;
    void *arg;
    int shard;                  //  replay: the room's shard
    int argc;                   //  of the EVAL form
    const char **argv;          //  point into the same allocation
    size_t *argvlen;
    bool retried;               //  already resent as EVAL after NOSCRIPT
    const char *error;          //  failed before sending (deferred list)
    op_t *next;
};

//  A dead-letter transaction waiting for its EXEC reply
typedef struct {
    pl_streams_t *owner;
    char inflight_key [ID_MAX + 16];
    char *stream_key;
    char *entry_id;
    int shard;
    char dead_id [ID_MAX];      //  cluster: id of the copy in the dead stream
} dead_op_t;

struct _pl_streams_t {
    int shards;
    char *host;
    int port;
    char *password;             //  NULL: no AUTH
    int db;
    char *host_id;
    char *fanout_group;
    int read_count;
    int block_ms;
    int persist_limit;
    char ttl_text [16];
    char window_text [16];      //  replay-window
    char index_ttl_text [16];   //  replay-ttl-s
    char claim_idle_text [16];  //  claim-idle-ms
    char host_gone_text [16];   //  host-gone-s
    int claim_interval_ms;
    int janitor_interval_ms;
    int host_refresh_ms;
    char **stream_keys;         //  per shard
    char **seq_keys;            //  per shard
    char *dedup_prefix;         //  "<prefix>:{" (shard and rest follow)
    char *key_prefix;
    char *host_key;             //  "<prefix>:host:<host_id>"
    char *dead_key;             //  "<prefix>:dead"
    script_t scripts [SCRIPT_COUNT];
    pl_entry_fn *on_fanout;
    pl_entry_fn *on_persist;
    void *arg;
    conn_t command;
    reader_t fanout;
    reader_t persist;
    zhashx_t *inflight;         //  "shard/id" of persist entries not acked
    op_t *failed_head;          //  requests that failed before sending
    op_t *failed_tail;
    int acks_outstanding;
    int64_t host_at;            //  next host key refresh, mono ms
    int64_t janitor_at;         //  next janitor round, mono ms
    jshard_t *jshards;          //  janitor state per shard
    int janitor_shards;         //  shards of the current round not decided yet
    uint64_t janitor_rounds;    //  rounds completed (the selftest waits on it)
    pl_streams_stats_t stats;
    zhashx_t *group_figures;    //  "<shard>/<group>" -> group_figures_t, from the janitor
    bool dirty;                 //  work for the next pl_streams_handle
    bool destroying;
    bool fanout_held;           //  the caller cannot take fan-out entries now
    bool in_handle;
    conn_t *item_conn [PL_STREAMS_POLLITEMS_MAX];
    redisAsyncContext *item_ac [PL_STREAMS_POLLITEMS_MAX];
    //  Redis Cluster
    bool cluster;
    char *seed_hosts [SEEDS_MAX];
    int seed_ports [SEEDS_MAX];
    int seed_count;
    int seed_next;              //  seed the slot-map link tries next
    conn_t map;                 //  CLUSTER SLOTS link
    bool map_loading;           //  a CLUSTER SLOTS is out
    bool map_stale;             //  a MOVED came: load again
    bool map_loaded;
    int64_t map_at;             //  no reload before this mono ms
    int16_t *slot_node;         //  per slot: index in nodes, -1 unknown
    node_t *nodes [PL_STREAMS_NODES_MAX];
    int node_count;
    reader_t *shard_readers;    //  fan-out readers, then persist readers, per shard
    reader_t **readers;         //  every reader (single: &fanout, &persist)
    int reader_count;
    long persist_reserved;      //  sum of the readers' reserved
    bool host_key_set;          //  cluster: our host key answered OK once
};

static void s_reader_kick (reader_t *reader);
static void s_map_load (pl_streams_t *self);
static int s_keyslot (const char *key);


//  --------------------------------------------------------------------------
//  CRC16-XMODEM (poly 0x1021, init 0), the one Redis Cluster uses for slots

static uint16_t
s_crc16 (const char *data, size_t length)
{
    uint16_t crc = 0;
    for (size_t index = 0; index < length; index++) {
        crc ^= (uint16_t) ((uint8_t) data [index] << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 0x8000)? (uint16_t) ((crc << 1) ^ 0x1021): (uint16_t) (crc << 1);
    }
    return crc;
}

int
pl_streams_shard (const char *room_id, int shards)
{
    assert (room_id);
    assert (shards > 0);
    return (int) (s_crc16 (room_id, strlen (room_id)) % (unsigned) shards);
}


//  --------------------------------------------------------------------------
//  redis://[[user]:password@]host[:port][/db]

static int
s_parse_url (pl_streams_t *self, const char *url)
{
    if (!strncmp (url, "redis://", 8))
        url += 8;
    const char *slash = strchr (url, '/');
    const char *at = NULL;
    for (const char *scan = url; *scan && (!slash || scan < slash); scan++)
        if (*scan == '@')
            at = scan;
    if (at) {
        const char *colon = memchr (url, ':', (size_t) (at - url));
        const char *secret = colon? colon + 1: url;
        if (at > secret)
            self->password = strndup (secret, (size_t) (at - secret));
        url = at + 1;
    }
    const char *end = slash? slash: url + strlen (url);
    const char *port = NULL;
    if (*url == '[') {
        const char *close = memchr (url, ']', (size_t) (end - url));
        if (!close)
            return -1;
        self->host = strndup (url + 1, (size_t) (close - url - 1));
        if (close + 1 < end) {
            if (close [1] != ':')
                return -1;
            port = close + 2;
        }
    }
    else {
        const char *colon = memrchr (url, ':', (size_t) (end - url));
        self->host = strndup (url, (size_t) ((colon? colon: end) - url));
        if (colon)
            port = colon + 1;
    }
    if (!self->host || !*self->host)
        return -1;
    self->port = 6379;
    if (port) {
        char *stop = NULL;
        long number = strtol (port, &stop, 10);
        if (stop != end || number < 1 || number > 65535)
            return -1;
        self->port = (int) number;
    }
    if (slash && slash [1]) {
        char *stop = NULL;
        long number = strtol (slash + 1, &stop, 10);
        if (*stop || number < 0 || number > 65535)
            return -1;
        self->db = (int) number;
    }
    return 0;
}

//  Cluster seeds: redis://[[user]:password@]host[:port][,host[:port]...]
static int
s_parse_seeds (pl_streams_t *self, const char *url)
{
    if (!strncmp (url, "redis://", 8))
        url += 8;
    const char *at = strrchr (url, '@');
    char *list = NULL;
    if (at) {
        //  Credentials parsed as for one server; no /db in a cluster
        char *first = strndup (url, (size_t) (at - url) + 1);
        char *text = NULL;
        int rc = first && asprintf (&text, "%sx", first) > 0? s_parse_url (self, text): -1;
        free (first);
        free (text);
        free (self->host);
        self->host = NULL;
        if (rc)
            return -1;
        url = at + 1;
    }
    list = strdup (url);
    if (!list)
        return -1;
    int rc = 0;
    char *save = NULL;
    for (char *item = strtok_r (list, ",", &save); item && rc == 0;
         item = strtok_r (NULL, ",", &save)) {
        pl_streams_t probe = { 0 };
        if (self->seed_count == SEEDS_MAX || strchr (item, '/') || s_parse_url (&probe, item))
            rc = -1;
        else {
            self->seed_hosts [self->seed_count] = probe.host;
            self->seed_ports [self->seed_count++] = probe.port;
            probe.host = NULL;
        }
        free (probe.host);
        free (probe.password);
    }
    free (list);
    if (rc || self->seed_count == 0)
        return -1;
    //  For the logs
    self->host = strdup (self->seed_hosts [0]);
    self->port = self->seed_ports [0];
    return self->host? 0: -1;
}

//  Shard of one of our stream keys, or -1 when it is none of ours.
static int
s_shard_of_key (pl_streams_t *self, const char *key)
{
    const char *brace = key? strchr (key, '{'): NULL;
    if (!brace)
        return -1;
    char *end = NULL;
    errno = 0;
    long shard = strtol (brace + 1, &end, 10);
    if (errno || end == brace + 1 || *end != '}' || shard < 0 || shard >= self->shards)
        return -1;
    return strcmp (self->stream_keys [shard], key)? -1: (int) shard;
}

//  Stream ids "ms-seq" compared as numbers: <0, 0, >0. An id that does not
//  parse sorts first, so it can only hold trimming back, never push it on.
static int
s_id_compare (const char *a, const char *b)
{
    unsigned long long part_a [2] = { 0, 0 }, part_b [2] = { 0, 0 };
    bool ok_a = sscanf (a, "%llu-%llu", &part_a [0], &part_a [1]) == 2;
    bool ok_b = sscanf (b, "%llu-%llu", &part_b [0], &part_b [1]) == 2;
    if (!ok_a || !ok_b)
        return ok_a - ok_b;
    for (int index = 0; index < 2; index++)
        if (part_a [index] != part_b [index])
            return part_a [index] < part_b [index]? -1: 1;
    return 0;
}


//  --------------------------------------------------------------------------
//  Id lists of batched XACKs

static int
s_id_list_push (id_list_t *list, const char *id)
{
    if (list->size == list->capacity) {
        size_t capacity = list->capacity? list->capacity * 2: 64;
        char **ids = realloc (list->ids, capacity * sizeof (char *));
        if (!ids)
            return -1;
        list->ids = ids;
        list->capacity = capacity;
    }
    char *copy = strdup (id);
    if (!copy)
        return -1;
    list->ids [list->size++] = copy;
    return 0;
}

static void
s_id_list_free (id_list_t *list)
{
    for (size_t index = 0; index < list->size; index++)
        free (list->ids [index]);
    free (list->ids);
    memset (list, 0, sizeof *list);
}


//  --------------------------------------------------------------------------
//  Event adapter: hiredis tells us what it wants, the caller's poll waits

static void s_ev_add_read (void *data)  { ((conn_t *) data)->want_read = true; }
static void s_ev_del_read (void *data)  { ((conn_t *) data)->want_read = false; }
static void s_ev_add_write (void *data) { ((conn_t *) data)->want_write = true; }
static void s_ev_del_write (void *data) { ((conn_t *) data)->want_write = false; }

//  hiredis frees the context: after an I/O error, EOF, a failed connect, or
//  our own redisAsyncFree. Pending callbacks have run with NULL replies.
static void
s_ev_cleanup (void *data)
{
    conn_t *conn = (conn_t *) data;
    pl_streams_t *self = conn->owner;
    const char *why = conn->ac && conn->ac->errstr && *conn->ac->errstr?
                      conn->ac->errstr: "closed";
    if (!self->destroying) {
        if (conn->connected)
            pl_log_warning ("redis %s connection lost (%s), reconnecting", conn->name, why);
        else
            pl_log_debug ("redis %s connect to %s:%d failed (%s), retry in %d ms",
                          conn->name, conn->ac && conn->ac->c.tcp.host? conn->ac->c.tcp.host:
                          self->host, conn->ac? conn->ac->c.tcp.port: self->port, why,
                          conn->backoff_ms);
    }
    conn->ac = NULL;
    conn->want_read = conn->want_write = false;
    conn->connected = false;
    conn->outstanding = 0;
    conn->target = -1;
    if (conn == &self->map)
        self->map_loading = false;
    conn->reconnect_at = pl_mono_ms () + conn->backoff_ms;
    conn->backoff_ms = conn->backoff_ms * 2 > BACKOFF_MAX_MS? BACKOFF_MAX_MS: conn->backoff_ms * 2;
    if (conn->reader) {
        //  After a reconnect the reader starts over: groups, pending, live
        conn->reader->phase = PHASE_SETUP;
        conn->reader->busy = false;
        conn->reader->setup_waiting = 0;
        conn->reader->retry_at = 0;
        conn->reader->claims_waiting = 0;
        conn->reader->claimed_last = false;
        self->persist_reserved -= conn->reader->reserved;
        conn->reader->reserved = 0;
    }
    else
        self->host_at = 0;      //  refresh the host key as soon as we are back
}

static void
s_on_connect (const redisAsyncContext *ac, int status)
{
    conn_t *conn = (conn_t *) ac->data;
    if (status == REDIS_OK) {
        conn->connected = true;
        conn->backoff_ms = BACKOFF_MIN_MS;
        if (conn->was_connected)
            conn->owner->stats.reconnects++;
        conn->was_connected = true;
        pl_log_debug ("redis %s connected to %s:%d", conn->name,
                      ac->c.tcp.host? ac->c.tcp.host: conn->owner->host, ac->c.tcp.port);
    }
}

//  Queue one command; counts it for the no-progress watchdog.
static int
s_conn_send (conn_t *conn, redisCallbackFn *fn, void *privdata,
             int argc, const char **argv, const size_t *argvlen)
{
    if (!conn->ac)
        return -1;
    if (redisAsyncCommandArgv (conn->ac, fn, privdata, argc, argv, argvlen) != REDIS_OK)
        return -1;
    if (conn->outstanding++ == 0)
        conn->progress_ms = pl_mono_ms ();
    return 0;
}

static void
s_conn_replied (conn_t *conn)
{
    if (conn->outstanding > 0)
        conn->outstanding--;
    conn->progress_ms = pl_mono_ms ();
}

//  Replies whose only interest is an error (AUTH, SELECT, SET of the host
//  key, the steps of MULTI): privdata names the command for the log.
static void
s_setup_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    s_conn_replied (conn);
    if (reply && reply->type == REDIS_REPLY_ERROR)
        pl_log_error ("redis %s %s: %s", conn->name, (const char *) privdata, reply->str);
}

static void
s_script_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    script_t *script = (script_t *) privdata;
    s_conn_replied (conn);
    script->reloading = false;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR)
        pl_log_error ("redis SCRIPT LOAD %s: %s", script->name, reply->str);
    else
    if (reply->type != REDIS_REPLY_STRING || strcasecmp (reply->str, script->sha))
        //  Our EVALSHA then gets NOSCRIPT and falls back to EVAL
        pl_log_error ("redis SCRIPT LOAD %s answered an unexpected SHA1", script->name);
}

//  On a command link (a cluster caches scripts per node)
static int
s_script_load (conn_t *conn, script_t *script)
{
    const char *argv [] = { "SCRIPT", "LOAD", script->text };
    return s_conn_send (conn, s_script_reply, script, 3, argv, NULL);
}

static void
s_conn_start (conn_t *conn)
{
    pl_streams_t *self = conn->owner;
    const char *host = self->host;
    int port = self->port;
    if (self->cluster) {
        if (conn == &self->map) {
            //  Seeds in turn, so one that is down does not keep us out
            int seed = self->seed_next++ % self->seed_count;
            host = self->seed_hosts [seed];
            port = self->seed_ports [seed];
        }
        else
        if (conn->node) {
            host = conn->node->host;
            port = conn->node->port;
        }
        else {
            //  A reader goes to the master of its shard's slot, once known
            int slot = s_keyslot (self->stream_keys [conn->reader->only_shard]);
            int index = self->map_loaded? self->slot_node [slot]: -1;
            if (index < 0) {
                conn->reconnect_at = pl_mono_ms () + BACKOFF_MIN_MS;
                return;
            }
            host = self->nodes [index]->host;
            port = self->nodes [index]->port;
            conn->target = index;
        }
    }
    redisAsyncContext *ac = redisAsyncConnect (host, port);
    if (!ac || ac->err) {
        pl_log_debug ("redis %s connect: %s", conn->name, ac? ac->errstr: "out of memory");
        if (ac)
            redisAsyncFree (ac);
        conn->reconnect_at = pl_mono_ms () + conn->backoff_ms;
        conn->backoff_ms = conn->backoff_ms * 2 > BACKOFF_MAX_MS? BACKOFF_MAX_MS: conn->backoff_ms * 2;
        return;
    }
    ac->data = conn;
    ac->ev.data = conn;
    ac->ev.addRead = s_ev_add_read;
    ac->ev.delRead = s_ev_del_read;
    ac->ev.addWrite = s_ev_add_write;
    ac->ev.delWrite = s_ev_del_write;
    ac->ev.cleanup = s_ev_cleanup;
    redisAsyncSetConnectCallback (ac, s_on_connect);
    conn->ac = ac;
    conn->connected = false;
    conn->outstanding = 0;
    conn->progress_ms = pl_mono_ms ();
    //  Writable means connect() finished, whether or not we queue anything
    conn->want_write = true;
    conn->want_read = false;

    //  Commands queue in hiredis until the connect completes
    if (self->password) {
        const char *argv [] = { "AUTH", self->password };
        s_conn_send (conn, s_setup_reply, (void *) "AUTH", 2, argv, NULL);
    }
    if (self->db && !self->cluster) {
        char number [16];
        snprintf (number, sizeof number, "%d", self->db);
        const char *argv [] = { "SELECT", number };
        s_conn_send (conn, s_setup_reply, (void *) "SELECT", 2, argv, NULL);
    }
    if (conn->reader)
        s_reader_kick (conn->reader);
    else
    if (conn == &self->map) {
        self->map_stale = true;
        s_map_load (self);
    }
    else
        //  Pipelined ahead of every EVALSHA on this connection
        for (int index = 0; index < SCRIPT_COUNT; index++)
            s_script_load (conn, &self->scripts [index]);
}

static bool
s_conn_up (conn_t *conn)
{
    return conn->ac && (conn->ac->c.flags & REDIS_CONNECTED);
}


//  --------------------------------------------------------------------------
//  Redis Cluster routing: slot of a key, slot map from CLUSTER SLOTS, one
//  command link per master, MOVED and ASK followed. Single Redis takes none
//  of these paths: s_send_key goes straight to the one command link.

//  Redis Cluster's key slot: CRC16 of the hash tag (the text between the
//  first '{' and the next '}', when not empty), else of the whole key
static int
s_keyslot (const char *key)
{
    const char *open = strchr (key, '{');
    if (open) {
        const char *close = strchr (open + 1, '}');
        if (close && close > open + 1)
            return s_crc16 (open + 1, (size_t) (close - open - 1)) & (CLUSTER_SLOTS - 1);
    }
    return s_crc16 (key, strlen (key)) & (CLUSTER_SLOTS - 1);
}

//  Index of the master host:port, added when new; -1 when the table is full
static int
s_node_get (pl_streams_t *self, const char *host, int port)
{
    for (int index = 0; index < self->node_count; index++)
        if (self->nodes [index]->port == port && streq (self->nodes [index]->host, host))
            return index;
    if (self->node_count == PL_STREAMS_NODES_MAX || strlen (host) >= sizeof self->nodes [0]->host) {
        pl_log_error ("redis cluster: no room for node %s:%d", host, port);
        return -1;
    }
    node_t *node = calloc (1, sizeof (node_t));
    if (!node)
        return -1;
    strcpy (node->host, host);
    node->port = port;
    node->command.owner = self;
    node->command.name = "command";
    node->command.node = node;
    node->command.target = -1;
    node->command.enabled = true;
    node->command.backoff_ms = BACKOFF_MIN_MS;
    node->command.grace_ms = self->command.grace_ms;
    self->nodes [self->node_count] = node;
    self->dirty = true;         //  the next turn connects it
    return self->node_count++;
}

//  Command link of a slot's master, NULL when unknown or down
static conn_t *
s_slot_conn (pl_streams_t *self, int slot)
{
    int index = self->map_loaded? self->slot_node [slot]: -1;
    if (index < 0 || !self->nodes [index]->command.ac)
        return NULL;
    return &self->nodes [index]->command;
}

static void s_cluster_reply (redisAsyncContext *ac, void *reply_p, void *privdata);

//  Send a command about key on the command link that serves it. Under a
//  cluster it goes wrapped, so a MOVED or ASK reply resends it.
static int
s_send_key (pl_streams_t *self, const char *key, redisCallbackFn *fn, void *privdata,
            int argc, const char **argv, const size_t *argvlen)
{
    if (!self->cluster)
        return s_conn_send (&self->command, fn, privdata, argc, argv, argvlen);
    conn_t *conn = s_slot_conn (self, s_keyslot (key));
    if (!conn)
        return -1;
    size_t total = sizeof (creq_t) + (size_t) argc * (sizeof (char *) + sizeof (size_t));
    for (int index = 0; index < argc; index++)
        total += (argvlen? argvlen [index]: strlen (argv [index])) + 1;
    creq_t *request = calloc (1, total);
    if (!request)
        return -1;
    *request = (creq_t) { .owner = self, .fn = fn, .privdata = privdata, .argc = argc };
    request->argv = (const char **) (request + 1);
    request->argvlen = (size_t *) (request->argv + argc);
    char *text = (char *) (request->argvlen + argc);
    for (int index = 0; index < argc; index++) {
        size_t length = argvlen? argvlen [index]: strlen (argv [index]);
        memcpy (text, argv [index], length);
        text [length] = 0;
        request->argv [index] = text;
        request->argvlen [index] = length;
        text += length + 1;
    }
    if (s_conn_send (conn, s_cluster_reply, request, argc, request->argv, request->argvlen)) {
        free (request);
        return -1;
    }
    return 0;
}

//  Whether the link that serves key is connected
static bool
s_key_up (pl_streams_t *self, const char *key)
{
    if (!self->cluster)
        return s_conn_up (&self->command);
    conn_t *conn = s_slot_conn (self, s_keyslot (key));
    return conn && s_conn_up (conn);
}

//  "MOVED <slot> <host>:<port>" or "ASK ...": 1 MOVED, 2 ASK, 0 neither
static int
s_redirect_parse (redisReply *reply, int *slot, char *host, size_t size, int *port)
{
    if (!reply || reply->type != REDIS_REPLY_ERROR)
        return 0;
    int kind = !strncmp (reply->str, "MOVED ", 6)? 1: !strncmp (reply->str, "ASK ", 4)? 2: 0;
    if (!kind)
        return 0;
    const char *scan = reply->str + (kind == 1? 6: 4);
    char *end = NULL;
    long number = strtol (scan, &end, 10);
    if (end == scan || *end != ' ' || number < 0 || number >= CLUSTER_SLOTS)
        return 0;
    *slot = (int) number;
    const char *address = end + 1;
    const char *colon = strrchr (address, ':');
    if (!colon || (size_t) (colon - address) >= size)
        return 0;
    memcpy (host, address, (size_t) (colon - address));
    host [colon - address] = 0;
    number = strtol (colon + 1, &end, 10);
    if (*end || number < 1 || number > 65535)
        return 0;
    *port = (int) number;
    //  An empty host means "the node you asked"; not what Redis 7 sends us
    return *host? kind: 0;
}

static void
s_cluster_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    creq_t *request = (creq_t *) privdata;
    pl_streams_t *self = request->owner;
    char host [256];
    int slot = 0, port = 0;
    int kind = self->destroying? 0: s_redirect_parse (reply, &slot, host, sizeof host, &port);
    if (kind && request->redirects < PL_STREAMS_REDIRECTS_MAX) {
        request->redirects++;
        int index = s_node_get (self, host, port);
        conn_t *target = index < 0? NULL: &self->nodes [index]->command;
        if (target && !target->ac)
            s_conn_start (target);      //  a master we had no link to yet
        if (target && kind == 1) {
            //  Known right away for what follows; the full map comes next
            self->slot_node [slot] = (int16_t) index;
            s_map_load (self);
        }
        if (target && kind == 2) {
            //  Migration under way: this command only, the map stays
            const char *asking [] = { "ASKING" };
            s_conn_send (target, s_setup_reply, (void *) "ASKING", 1, asking, NULL);
        }
        if (target
        &&  s_conn_send (target, s_cluster_reply, request, request->argc,
                         request->argv, request->argvlen) == 0) {
            self->stats.redirects++;
            s_conn_replied (conn);
            return;
        }
    }
    else
    if (kind)
        pl_log_error ("redis cluster: %s redirected %d times, giving up", request->argv [0],
                      request->redirects);
    //  The caller's callback counts the reply on this link
    request->fn (ac, reply, request->privdata);
    free (request);
}

static void
s_slots_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    pl_streams_t *self = conn->owner;
    (void) privdata;
    s_conn_replied (conn);
    self->map_loading = false;
    if (!reply)
        return;                 //  loaded again once the link is back
    if (reply->type != REDIS_REPLY_ARRAY) {
        pl_log_warning ("redis CLUSTER SLOTS: %s", reply->type == REDIS_REPLY_ERROR?
                        reply->str: "malformed reply");
        self->map_stale = true;
        return;
    }
    int covered = 0;
    for (int slot = 0; slot < CLUSTER_SLOTS; slot++)
        self->slot_node [slot] = -1;
    for (size_t index = 0; index < reply->elements; index++) {
        //  [start, end, [host, port, id, ...], replicas ...]: masters only
        redisReply *range = reply->element [index];
        if (range->type != REDIS_REPLY_ARRAY || range->elements < 3
        ||  range->element [0]->type != REDIS_REPLY_INTEGER
        ||  range->element [1]->type != REDIS_REPLY_INTEGER
        ||  range->element [2]->type != REDIS_REPLY_ARRAY
        ||  range->element [2]->elements < 2
        ||  range->element [2]->element [0]->type != REDIS_REPLY_STRING
        ||  range->element [2]->element [1]->type != REDIS_REPLY_INTEGER)
            continue;
        long long first = range->element [0]->integer;
        long long last = range->element [1]->integer;
        const char *host = range->element [2]->element [0]->str;
        //  "" when the node does not know its address: the one we asked
        int node = s_node_get (self, *host? host: ac->c.tcp.host,
                               (int) range->element [2]->element [1]->integer);
        for (long long slot = first; node >= 0 && slot <= last; slot++)
            if (slot >= 0 && slot < CLUSTER_SLOTS) {
                self->slot_node [slot] = (int16_t) node;
                covered++;
            }
    }
    if (covered < CLUSTER_SLOTS) {
        pl_log_warning ("redis cluster: %d of %d slots served", covered, CLUSTER_SLOTS);
        self->map_stale = true;         //  ask again a little later
    }
    self->map_loaded = covered > 0;
    self->stats.slot_map_loads++;
    self->dirty = true;
    //  Readers whose shard moved go to the new master
    for (int index = 0; index < self->reader_count; index++) {
        conn_t *reader = &self->readers [index]->conn;
        int slot = s_keyslot (self->stream_keys [self->readers [index]->only_shard]);
        if (reader->ac && reader->target >= 0 && reader->target != self->slot_node [slot]
        &&  !(reader->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING))) {
            pl_log_info ("redis %s reader of shard %d: slot %d moved, reconnecting",
                         reader->name, self->readers [index]->only_shard, slot);
            redisAsyncDisconnect (reader->ac);
        }
    }
}

//  Ask for the slot map (again); one request at a time
static void
s_map_load (pl_streams_t *self)
{
    self->map_stale = true;
    if (!self->cluster || self->map_loading || !self->map.ac)
        return;
    const char *argv [] = { "CLUSTER", "SLOTS" };
    if (s_conn_send (&self->map, s_slots_reply, NULL, 2, argv, NULL) == 0) {
        self->map_loading = true;
        self->map_stale = false;
        self->map_at = pl_mono_ms () + RETRY_MS;
    }
}

//  Every link, for poll and timers: command (or slot-map link and masters'
//  command links), then the readers. At most PL_STREAMS_POLLITEMS_MAX.
static int
s_conns (pl_streams_t *self, conn_t **conns)
{
    int count = 0;
    if (self->cluster) {
        conns [count++] = &self->map;
        for (int index = 0; index < self->node_count; index++)
            conns [count++] = &self->nodes [index]->command;
    }
    else
        conns [count++] = &self->command;
    for (int index = 0; index < self->reader_count; index++)
        conns [count++] = &self->readers [index]->conn;
    return count;
}

//  Reader of a shard's fan-out or persist group
static reader_t *
s_reader_for (pl_streams_t *self, bool persist, int shard)
{
    if (!self->cluster)
        return persist? &self->persist: &self->fanout;
    return &self->shard_readers [(persist? self->shards: 0) + shard];
}

static bool
s_reader_owns (reader_t *reader, int shard)
{
    return reader->only_shard < 0 || reader->only_shard == shard;
}

//  A reader's request answered MOVED or ASK: under a cluster the link
//  follows its shard to the master the map names, after a reload
static bool
s_reader_redirected (reader_t *reader, redisReply *reply)
{
    pl_streams_t *self = reader->owner;
    char host [256];
    int slot = 0, port = 0;
    int kind = self->cluster? s_redirect_parse (reply, &slot, host, sizeof host, &port): 0;
    if (!kind)
        return false;
    if (kind == 1) {
        int index = s_node_get (self, host, port);
        if (index >= 0)
            self->slot_node [slot] = (int16_t) index;
        s_map_load (self);
        self->stats.redirects++;
        if (reader->conn.ac && !(reader->conn.ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)))
            redisAsyncDisconnect (reader->conn.ac);
    }
    //  ASK: the slot is migrating; ask again shortly, the MOVED follows
    reader->retry_at = pl_mono_ms () + (kind == 2? 50: RETRY_MS);
    return true;
}


//  --------------------------------------------------------------------------
//  Entries

//  Fields of one stream entry [id, [field, value, ...]] into message; its
//  strings point into the reply. Returns 0 parsed, 1 gone (no fields: a
//  pending entry trimmed away), -1 malformed (no id), -2 lacks room or seq.
//  seq 0 is a signal (pl_streams_signal), not a message.
static int
s_entry_parse (pl_streams_t *self, int shard, redisReply *entry, pl_entry_t *message)
{
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2
    ||  entry->element [0]->type != REDIS_REPLY_STRING)
        return -1;
    *message = (pl_entry_t) { .stream_key = self->stream_keys [shard],
                              .entry_id = entry->element [0]->str,
                              .type = "", .sender_id = "", .sender_name = "",
                              .content = "", .client_msg_id = "" };
    redisReply *fields = entry->element [1];
    if (fields->type != REDIS_REPLY_ARRAY)
        return 1;
    bool seq_ok = false;
    for (size_t index = 0; index + 1 < fields->elements; index += 2) {
        redisReply *name = fields->element [index];
        redisReply *value = fields->element [index + 1];
        if (name->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING)
            continue;
        const char *text = value->str;
        if (!strcmp (name->str, "room"))
            message->room_id = text;
        else
        if (!strcmp (name->str, "seq")) {
            char *end = NULL;
            errno = 0;
            long long number = strtoll (text, &end, 10);
            seq_ok = !errno && end != text && !*end && number >= 0;
            message->seq = number;
        }
        else
        if (!strcmp (name->str, "type"))
            message->type = text;
        else
        if (!strcmp (name->str, "sender"))
            message->sender_id = text;
        else
        if (!strcmp (name->str, "name"))
            message->sender_name = text;
        else
        if (!strcmp (name->str, "content"))
            message->content = text;
        else
        if (!strcmp (name->str, "cmid"))
            message->client_msg_id = text;
        else
        if (!strcmp (name->str, "created"))
            message->created_ms = strtoll (text, NULL, 10);
    }
    return message->room_id && seq_ok? 0: -2;
}


//  --------------------------------------------------------------------------
//  Scripted requests: appends and replays

static op_t *
s_op_new (pl_streams_t *self, op_kind_t kind, script_id_t script, int argc, const char **argv)
{
    size_t total = sizeof (op_t) + (size_t) argc * (sizeof (char *) + sizeof (size_t));
    for (int index = 0; index < argc; index++)
        total += strlen (argv [index]) + 1;
    op_t *op = calloc (1, total);
    if (!op)
        return NULL;
    op->owner = self;
    op->kind = kind;
    op->script = &self->scripts [script];
    op->argc = argc;
    op->argv = (const char **) (op + 1);
    op->argvlen = (size_t *) (op->argv + argc);
    char *text = (char *) (op->argvlen + argc);
    for (int index = 0; index < argc; index++) {
        size_t length = strlen (argv [index]);
        memcpy (text, argv [index], length + 1);
        op->argv [index] = text;
        op->argvlen [index] = length;
        text += length + 1;
    }
    return op;
}

static void
s_append_finish (op_t *op, int result, int64_t seq, const char *error)
{
    pl_streams_t *self = op->owner;
    if (result == 0)
        self->stats.appended++;
    else
    if (result == 1)
        self->stats.duplicates++;
    else
        self->stats.append_errors++;
    op->append_done (op->arg, result, seq, error);
    free (op);
}

//  The caller hears of the failure through its callback; frees op.
static void
s_op_fail (op_t *op, const char *error)
{
    if (op->kind == OP_APPEND)
        s_append_finish (op, -1, 0, error);
    else {
        pl_log_debug ("redis replay failed: %s", error);
        op->replay_done (op->arg, -1, 0, 0);
        free (op);
    }
}

//  Fails later from pl_streams_handle, so no callback runs inside the call
//  that made the request.
static void
s_op_fail_later (pl_streams_t *self, op_t *op, const char *error)
{
    op->error = error;
    op->next = NULL;
    if (self->failed_tail)
        self->failed_tail->next = op;
    else
        self->failed_head = op;
    self->failed_tail = op;
    self->dirty = true;
}

static void
s_run_failed (pl_streams_t *self)
{
    while (self->failed_head) {
        op_t *op = self->failed_head;
        self->failed_head = op->next;
        if (!self->failed_head)
            self->failed_tail = NULL;
        s_op_fail (op, op->error);
    }
}

static void s_op_reply (redisAsyncContext *ac, void *reply_p, void *privdata);

static int
s_op_send (pl_streams_t *self, op_t *op, bool by_sha)
{
    const char *argv [op->argc];
    size_t argvlen [op->argc];
    memcpy (argv, op->argv, sizeof argv);
    memcpy (argvlen, op->argvlen, sizeof argvlen);
    if (by_sha) {
        argv [0] = "EVALSHA";
        argvlen [0] = 7;
        argv [1] = op->script->sha;
        argvlen [1] = 40;
    }
    return s_send_key (self, self->stream_keys [op->shard], s_op_reply, op, op->argc, argv, argvlen);
}

static void
s_append_result (op_t *op, redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
    ||  reply->element [0]->type != REDIS_REPLY_INTEGER
    ||  reply->element [2]->type != REDIS_REPLY_INTEGER) {
        pl_log_error ("redis append: malformed reply (type %d)", reply->type);
        s_append_finish (op, -1, 0, "malformed reply from redis");
        return;
    }
    int64_t seq = reply->element [0]->integer;
    bool duplicate = reply->element [2]->integer != 0;
    s_append_finish (op, duplicate? 1: 0, seq, NULL);
}

static void
s_replay_result (op_t *op, redisReply *reply)
{
    pl_streams_t *self = op->owner;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
    ||  reply->element [0]->type != REDIS_REPLY_INTEGER
    ||  reply->element [1]->type != REDIS_REPLY_ARRAY) {
        pl_log_error ("redis replay: malformed reply (type %d)", reply->type);
        s_op_fail (op, "malformed reply from redis");
        return;
    }
    redisReply *entries = reply->element [1];
    int64_t first_seq = 0;
    for (size_t index = 0; index < entries->elements; index++) {
        pl_entry_t message;
        if (s_entry_parse (self, op->shard, entries->element [index], &message)
        ||  message.seq < 1) {
            pl_log_warning ("redis replay: malformed entry in %s", self->stream_keys [op->shard]);
            break;              //  what is delivered stays consecutive
        }
        if (!first_seq)
            first_seq = message.seq;
        op->on_entry (op->arg, &message);
    }
    op->replay_done (op->arg, 0, first_seq, reply->element [0]->integer);
    free (op);
}

static void
s_op_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    pl_streams_t *self = conn->owner;
    redisReply *reply = (redisReply *) reply_p;
    op_t *op = (op_t *) privdata;
    s_conn_replied (conn);
    if (!reply) {
        s_op_fail (op, self->destroying? "shutting down": "redis connection lost");
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!strncmp (reply->str, "NOSCRIPT", 8) && !op->retried) {
            //  Script cache flushed: this one goes as EVAL, and reload
            //  once so later requests find it again
            op->retried = true;
            if (!op->script->reloading) {
                pl_log_warning ("redis lost the %s script, loading it again", op->script->name);
                if (s_script_load (conn, op->script) == 0)
                    op->script->reloading = true;
            }
            if (s_op_send (self, op, false) == 0)
                return;
        }
        s_op_fail (op, reply->str);
        return;
    }
    if (op->kind == OP_APPEND)
        s_append_result (op, reply);
    else
        s_replay_result (op, reply);
}

int
pl_streams_append (pl_streams_t *self, const pl_entry_t *message,
                   pl_append_fn *done, void *done_arg)
{
    assert (self);
    assert (message);
    assert (done);
    if (self->destroying || !message->room_id || !*message->room_id)
        return -1;

    int shard = pl_streams_shard (message->room_id, self->shards);
    const char *cmid = message->client_msg_id? message->client_msg_id: "";
    const char *sender = message->sender_id? message->sender_id: "";
    char *dedup_key = NULL;
    char *index_key = NULL;
    if (asprintf (&index_key, "%s%d}:idx:%s", self->dedup_prefix, shard, message->room_id) < 0)
        return -1;
    if (*cmid
    &&  asprintf (&dedup_key, "%s%d}:dedup:%s:%s:%s", self->dedup_prefix, shard,
                  message->room_id, sender, cmid) < 0) {
        free (index_key);
        return -1;
    }
    char created [24];
    snprintf (created, sizeof created, "%" PRId64, message->created_ms);
    const char *argv [17];
    int argc = 0;
    argv [argc++] = "EVAL";
    argv [argc++] = s_append_script;
    argv [argc++] = dedup_key? "4": "3";
    argv [argc++] = self->stream_keys [shard];
    argv [argc++] = self->seq_keys [shard];
    argv [argc++] = index_key;
    if (dedup_key)
        argv [argc++] = dedup_key;
    argv [argc++] = message->room_id;
    argv [argc++] = message->type? message->type: "";
    argv [argc++] = sender;
    argv [argc++] = message->sender_name? message->sender_name: "";
    argv [argc++] = message->content? message->content: "";
    argv [argc++] = cmid;
    argv [argc++] = created;
    argv [argc++] = self->ttl_text;
    argv [argc++] = self->window_text;
    argv [argc++] = self->index_ttl_text;
    op_t *op = s_op_new (self, OP_APPEND, SCRIPT_APPEND, argc, argv);
    free (dedup_key);
    free (index_key);
    if (!op)
        return -1;
    op->append_done = done;
    op->arg = done_arg;
    op->shard = shard;
    if (s_op_send (self, op, true))
        s_op_fail_later (self, op, "redis not connected");
    return 0;
}

int
pl_streams_replay (pl_streams_t *self, const char *room_id, int64_t after_seq, int max,
                   pl_entry_fn *on_entry, pl_replay_done_fn *done, void *arg)
{
    assert (self);
    assert (on_entry);
    assert (done);
    if (self->destroying || !room_id || !*room_id || max < 1)
        return -1;
    int shard = pl_streams_shard (room_id, self->shards);
    char *index_key = NULL;
    if (asprintf (&index_key, "%s%d}:idx:%s", self->dedup_prefix, shard, room_id) < 0)
        return -1;
    char after [24], count [16];
    snprintf (after, sizeof after, "%" PRId64, after_seq > 0? after_seq: 0);
    snprintf (count, sizeof count, "%d", max);
    const char *argv [] = { "EVAL", s_replay_script, "3", index_key, self->stream_keys [shard],
                            self->seq_keys [shard], room_id, after, count };
    op_t *op = s_op_new (self, OP_REPLAY, SCRIPT_REPLAY, 9, argv);
    free (index_key);
    if (!op)
        return -1;
    op->on_entry = on_entry;
    op->replay_done = done;
    op->arg = arg;
    op->shard = shard;
    if (s_op_send (self, op, true))
        s_op_fail_later (self, op, "redis not connected");
    return 0;
}

static void
s_signal_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    (void) privdata;
    s_conn_replied (conn);
    if (!reply) {
        if (!conn->owner->destroying)
            pl_log_warning ("redis signal may be lost with the connection");
    }
    else
    if (reply->type == REDIS_REPLY_ERROR)
        pl_log_error ("redis signal XADD: %s", reply->str);
}

int
pl_streams_signal (pl_streams_t *self, const char *room_id, const char *type)
{
    assert (self);
    if (self->destroying || !room_id || !*room_id || !type || !*type)
        return -1;
    //  Queued on a link still connecting, it could vanish unnoticed
    int shard = pl_streams_shard (room_id, self->shards);
    if (!s_key_up (self, self->stream_keys [shard]))
        return -1;
    //  Not in the replay index: a signal has no seq of its own
    const char *argv [] = { "XADD", self->stream_keys [shard], "*", "v", "1", "room", room_id,
                            "seq", "0", "type", type };
    return s_send_key (self, self->stream_keys [shard], s_signal_reply, NULL, 11, argv, NULL);
}


//  --------------------------------------------------------------------------
//  Readers

static void
s_ack_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    (void) privdata;
    s_conn_replied (conn);
    conn->owner->acks_outstanding--;
    if (!reply)
        pl_log_debug ("redis XACK lost with the connection");
    else
    if (reply->type == REDIS_REPLY_ERROR)
        pl_log_warning ("redis XACK: %s", reply->str);
}

static void
s_reader_ack (reader_t *reader, int shard, const char *id)
{
    if (s_id_list_push (&reader->acks [shard], id))
        pl_log_error ("out of memory queueing XACK of %s", id);
    reader->owner->dirty = true;
}

//  Send batched XACKs on the command connection: one XACK per stream.
static void
s_reader_flush_acks (reader_t *reader)
{
    pl_streams_t *self = reader->owner;
    if (!reader->acks || (!self->cluster && !self->command.ac))
        return;
    for (int shard = 0; shard < self->shards; shard++) {
        id_list_t *list = &reader->acks [shard];
        while (list->size > 0) {
            size_t count = list->size > ACK_CHUNK? ACK_CHUNK: list->size;
            const char *argv [3 + ACK_CHUNK];
            argv [0] = "XACK";
            argv [1] = self->stream_keys [shard];
            argv [2] = reader->group;
            for (size_t index = 0; index < count; index++)
                argv [3 + index] = list->ids [list->size - count + index];
            if (s_send_key (self, argv [1], s_ack_reply, NULL, (int) (3 + count), argv, NULL)) {
                if (self->cluster)
                    break;      //  this master is down; the others may not be
                return;         //  kept for after the reconnect
            }
            self->acks_outstanding++;
            for (size_t index = 0; index < count; index++)
                free (list->ids [--list->size]);
        }
    }
}

static void
s_reader_setup_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    reader_t *reader = (reader_t *) privdata;
    s_conn_replied (conn);
    if (!reply)
        return;                 //  the link is going; cleanup resets the reader
    if (s_reader_redirected (reader, reply))
        reader->setup_failed = true;
    else
    if (reply->type == REDIS_REPLY_ERROR && strncmp (reply->str, "BUSYGROUP", 9)) {
        if (!reader->setup_failed)
            pl_log_warning ("redis XGROUP CREATE %s: %s", reader->group, reply->str);
        reader->setup_failed = true;
    }
    if (--reader->setup_waiting > 0)
        return;
    reader->busy = false;
    if (reader->setup_failed) {
        if (!reader->retry_at)
            reader->retry_at = pl_mono_ms () + RETRY_MS;
        return;
    }
    //  Groups exist: first what was delivered to us and not acked
    reader->phase = PHASE_PENDING;
    for (int shard = 0; shard < reader->owner->shards; shard++) {
        strcpy (reader->cursor [shard], "0");
        reader->drained [shard] = !s_reader_owns (reader, shard);
    }
    pl_log_debug ("redis %s reader: groups ready, reading pending entries", conn->name);
    s_reader_kick (reader);
}

//  Deliver one entry [id, [field, value, ...]] of a shard. Returns true
//  when it went to the reader's callback.
static bool
s_reader_deliver (reader_t *reader, int shard, redisReply *entry)
{
    pl_streams_t *self = reader->owner;
    pl_entry_t message;
    int rc = s_entry_parse (self, shard, entry, &message);
    if (rc == -1) {
        pl_log_warning ("redis %s: malformed stream entry skipped", reader->conn.name);
        return false;
    }
    if (rc == 1) {
        //  A pending entry trimmed away: nothing to deliver, forget it
        pl_log_warning ("redis %s: entry %s of %s is gone, acked", reader->conn.name,
                        message.entry_id, self->stream_keys [shard]);
        s_reader_ack (reader, shard, message.entry_id);
        return false;
    }
    if (rc == -2) {
        pl_log_warning ("redis %s: entry %s of %s lacks room or seq, acked",
                        reader->conn.name, message.entry_id, self->stream_keys [shard]);
        s_reader_ack (reader, shard, message.entry_id);
        return false;
    }
    if (reader->persist) {
        if (message.seq == 0) {
            //  A signal: nothing to store
            s_reader_ack (reader, shard, message.entry_id);
            return false;
        }
        char key [ID_MAX + 16];
        snprintf (key, sizeof key, "%d/%s", shard, message.entry_id);
        if (zhashx_lookup (self->inflight, key))
            return false;       //  re-read or claimed again: the caller has it
        zhashx_insert (self->inflight, key, self);
        reader->callback (self->arg, &message);
    }
    else {
        //  Held: the entry stays pending for us and is read again, in
        //  order, once the caller releases the hold
        if (self->fanout_held || reader->skip_reply)
            return false;
        reader->callback (self->arg, &message);
        if (self->fanout_held)
            return false;       //  the callback could not pass it on
        s_reader_ack (reader, shard, message.entry_id);
        self->stats.fanout_read++;
    }
    return true;
}

//  Read what is pending for us from the start, before anything new.
static void
s_reader_restart_pending (reader_t *reader)
{
    reader->phase = PHASE_PENDING;
    for (int shard = 0; shard < reader->owner->shards; shard++) {
        strcpy (reader->cursor [shard], "0");
        reader->drained [shard] = !s_reader_owns (reader, shard);
    }
}

static void
s_reader_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    reader_t *reader = (reader_t *) privdata;
    pl_streams_t *self = reader->owner;
    s_conn_replied (conn);
    if (!reply)
        return;                 //  the link is going; cleanup resets the reader
    reader->busy = false;
    self->persist_reserved -= reader->reserved;
    reader->reserved = 0;
    if (reader->skip_reply) {
        //  Released while this read was out: what it brought stays pending
        //  and comes again, in order, from the pending phase
        reader->skip_reply = false;
        if (reader->phase != PHASE_SETUP)
            s_reader_restart_pending (reader);
        s_reader_kick (reader);
        return;
    }

    if (s_reader_redirected (reader, reply))
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!strncmp (reply->str, "NOGROUP", 7)) {
            //  Stream or group deleted, or Redis restarted empty
            pl_log_info ("redis %s: group missing, creating it again", conn->name);
            reader->phase = PHASE_SETUP;
        }
        else {
            pl_log_warning ("redis %s XREADGROUP: %s", conn->name, reply->str);
            reader->retry_at = pl_mono_ms () + RETRY_MS;
        }
        s_reader_kick (reader);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY && reply->type != REDIS_REPLY_NIL) {
        pl_log_warning ("redis %s XREADGROUP: malformed reply (type %d)", conn->name, reply->type);
        reader->retry_at = pl_mono_ms () + RETRY_MS;
        return;
    }
    bool answered [self->shards];
    memset (answered, 0, sizeof answered);
    size_t streams = reply->type == REDIS_REPLY_ARRAY? reply->elements: 0;
    for (size_t index = 0; index < streams; index++) {
        redisReply *stream = reply->element [index];
        int shard = -1;
        if (stream->type == REDIS_REPLY_ARRAY && stream->elements == 2
        &&  stream->element [0]->type == REDIS_REPLY_STRING
        &&  stream->element [1]->type == REDIS_REPLY_ARRAY)
            shard = s_shard_of_key (self, stream->element [0]->str);
        if (shard < 0) {
            pl_log_warning ("redis %s XREADGROUP: malformed stream in reply", conn->name);
            continue;
        }
        redisReply *entries = stream->element [1];
        answered [shard] = entries->elements > 0;
        for (size_t entry = 0; entry < entries->elements; entry++) {
            if (s_reader_deliver (reader, shard, entries->element [entry]) && reader->persist)
                self->stats.persist_read++;
            redisReply *item = entries->element [entry];
            if (reader->phase == PHASE_PENDING && item->type == REDIS_REPLY_ARRAY
            &&  item->elements == 2 && item->element [0]->type == REDIS_REPLY_STRING
            &&  item->element [0]->len < ID_MAX)
                strcpy (reader->cursor [shard], item->element [0]->str);
        }
    }
    if (reader->phase == PHASE_PENDING) {
        //  A shard read from its cursor that gave nothing has no more pending
        bool all_drained = true;
        for (int index = 0; index < reader->picked_count; index++)
            if (!answered [reader->picked [index]])
                reader->drained [reader->picked [index]] = true;
        for (int shard = 0; shard < self->shards; shard++)
            all_drained &= reader->drained [shard];
        if (all_drained) {
            pl_log_debug ("redis %s reader: pending entries read, now live", conn->name);
            reader->phase = PHASE_LIVE;
        }
    }
    s_reader_kick (reader);
}

//  Issue the next XREADGROUP when the reader is idle and may read.
static void
s_reader_read (reader_t *reader)
{
    pl_streams_t *self = reader->owner;
    int candidates [self->shards];
    int candidate_count = 0;
    for (int shard = 0; shard < self->shards; shard++)
        if (s_reader_owns (reader, shard) && (reader->phase == PHASE_LIVE || !reader->drained [shard]))
            candidates [candidate_count++] = shard;
    if (candidate_count == 0)
        return;

    //  COUNT is per stream: n streams at COUNT c may hand out n * c entries
    int streams = candidate_count;
    int count = self->read_count;
    if (reader->persist) {
        //  Other readers' requests out count too (cluster: one per shard)
        long room = (long) self->persist_limit - (long) zhashx_size (self->inflight)
                  - self->persist_reserved;
        long needed = candidate_count < self->persist_limit? candidate_count: self->persist_limit;
        if (room < needed)
            return;             //  at the limit: wait for acks
        if (room < streams)
            streams = (int) room;
        if (room / streams < count)
            count = (int) (room / streams);
    }
    reader->picked_count = 0;
    for (int index = 0; index < streams; index++)
        reader->picked [reader->picked_count++] =
            candidates [(reader->rotate + index) % candidate_count];
    reader->rotate = (reader->rotate + streams) % candidate_count;

    char count_text [16], block_text [16];
    snprintf (count_text, sizeof count_text, "%d", count);
    int owned = reader->only_shard < 0? self->shards: 1;
    int block_ms = streams < owned && self->block_ms > SUBSET_BLOCK_MS?
                   SUBSET_BLOCK_MS: self->block_ms;
    if (reader->claims && reader->phase == PHASE_LIVE) {
        //  Wake up for the next claim round rather than sleep through it
        int64_t until_claim = reader->claim_at - pl_mono_ms ();
        if (until_claim < block_ms)
            block_ms = until_claim < 1? 1: (int) until_claim;
    }
    snprintf (block_text, sizeof block_text, "%d", block_ms);
    int argc = 0;
    const char **argv = reader->argv;
    argv [argc++] = "XREADGROUP";
    argv [argc++] = "GROUP";
    argv [argc++] = reader->group;
    argv [argc++] = self->host_id;
    argv [argc++] = "COUNT";
    argv [argc++] = count_text;
    if (reader->phase == PHASE_LIVE) {
        argv [argc++] = "BLOCK";
        argv [argc++] = block_text;
    }
    argv [argc++] = "STREAMS";
    for (int index = 0; index < streams; index++)
        argv [argc++] = self->stream_keys [reader->picked [index]];
    for (int index = 0; index < streams; index++)
        argv [argc++] = reader->phase == PHASE_LIVE? ">": reader->cursor [reader->picked [index]];
    if (s_conn_send (&reader->conn, s_reader_reply, reader, argc, argv, NULL) == 0) {
        reader->busy = true;
        reader->claimed_last = false;
        if (reader->persist) {
            reader->reserved = (long) count * streams;
            self->persist_reserved += reader->reserved;
        }
    }
}

static void
s_claim_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    claim_t *claim = (claim_t *) privdata;
    reader_t *reader = claim->reader;
    pl_streams_t *self = reader->owner;
    const char *stream = self->stream_keys [claim->shard];
    s_conn_replied (conn);
    if (!reply)
        return;                 //  the link is going; cleanup resets the reader
    claim->more = false;
    if (s_reader_redirected (reader, reply))
        ;                       //  the link follows the shard; claimed next round
    else
    if (reply->type == REDIS_REPLY_ERROR)
        //  NOGROUP included: the next read finds out and sets groups up again
        pl_log_warning ("redis %s XAUTOCLAIM %s: %s", conn->name, stream, reply->str);
    else
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2
    ||  reply->element [0]->type != REDIS_REPLY_STRING
    ||  reply->element [1]->type != REDIS_REPLY_ARRAY)
        pl_log_warning ("redis %s XAUTOCLAIM: malformed reply (type %d)", conn->name, reply->type);
    else {
        redisReply *cursor = reply->element [0];
        if (strcmp (cursor->str, "0-0") && cursor->len < ID_MAX) {
            strcpy (claim->cursor, cursor->str);
            claim->more = true;
        }
        redisReply *entries = reply->element [1];
        for (size_t index = 0; index < entries->elements; index++)
            //  Redis 6.2 gives a deleted entry as nil (and drops it itself)
            if (entries->element [index]->type != REDIS_REPLY_NIL
            &&  s_reader_deliver (reader, claim->shard, entries->element [index]))
                self->stats.claimed++;
        //  Redis 7: ids whose entry was deleted before anyone stored it. The
        //  data is gone for good: ack so nothing waits for them
        redisReply *deleted = reply->elements > 2? reply->element [2]: NULL;
        if (deleted && deleted->type == REDIS_REPLY_ARRAY && deleted->elements > 0) {
            pl_log_warning ("redis %s: %zu pending entries of %s were deleted before they "
                            "were stored, acked", conn->name, deleted->elements, stream);
            for (size_t index = 0; index < deleted->elements; index++)
                if (deleted->element [index]->type == REDIS_REPLY_STRING)
                    s_reader_ack (reader, claim->shard, deleted->element [index]->str);
        }
    }
    if (--reader->claims_waiting > 0)
        return;
    reader->busy = false;
    reader->claimed_last = true;
    self->persist_reserved -= reader->reserved;
    reader->reserved = 0;
    bool more = false;
    for (int shard = 0; shard < self->shards; shard++)
        more |= reader->claims [shard].more;
    //  An unfinished scan goes on right after the next read
    reader->claim_at = pl_mono_ms () + (more? 0: self->claim_interval_ms);
    s_reader_kick (reader);
}

//  A claim round on the persist link: XAUTOCLAIM, pipelined over the
//  shards whose scan is not finished, what consumers (this one included)
//  left pending longer than claim-idle-ms, within the in-flight room left.
//  Returns true when sent.
static bool
s_reader_claim (reader_t *reader)
{
    pl_streams_t *self = reader->owner;
    long room = (long) self->persist_limit - (long) zhashx_size (self->inflight)
              - self->persist_reserved;
    if (room < 1)
        return false;
    bool more = false;
    for (int shard = 0; shard < self->shards; shard++)
        more |= reader->claims [shard].more;
    if (!more)
        //  A new round scans every shard's pending entries from the start
        for (int shard = 0; shard < self->shards; shard++) {
            strcpy (reader->claims [shard].cursor, "0-0");
            reader->claims [shard].more = s_reader_owns (reader, shard);
        }
    int picked [self->shards];
    int picked_count = 0;
    for (int shard = 0; shard < self->shards && picked_count < room; shard++)
        if (reader->claims [shard].more)
            picked [picked_count++] = shard;
    long count = room / picked_count;
    if (count > self->read_count)
        count = self->read_count;
    char count_text [24];
    snprintf (count_text, sizeof count_text, "%ld", count);
    for (int index = 0; index < picked_count; index++) {
        claim_t *claim = &reader->claims [picked [index]];
        const char *argv [] = { "XAUTOCLAIM", self->stream_keys [claim->shard], reader->group,
                                self->host_id, self->claim_idle_text, claim->cursor,
                                "COUNT", count_text };
        if (s_conn_send (&reader->conn, s_claim_reply, claim, 8, argv, NULL))
            break;
        reader->claims_waiting++;
        reader->reserved += count;
    }
    self->persist_reserved += reader->reserved;
    reader->busy = reader->claims_waiting > 0;
    return reader->busy;
}

static void
s_host_key_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = (redisReply *) reply_p;
    s_setup_reply (ac, reply_p, privdata);
    if (reply && reply->type == REDIS_REPLY_STATUS)
        ((conn_t *) ac->data)->owner->host_key_set = true;
}

//  SET <prefix>:host:<host_id> <now> EX host-gone-s on one link, or (NULL)
//  on the command link that serves the key
static void
s_host_key_send (pl_streams_t *self, conn_t *conn)
{
    char now [24];
    snprintf (now, sizeof now, "%" PRId64, pl_clock_ms ());
    const char *argv [] = { "SET", self->host_key, now, "EX", self->host_gone_text };
    if (conn)
        s_conn_send (conn, s_setup_reply, (void *) "SET host key", 5, argv, NULL);
    else
        s_send_key (self, self->host_key, s_host_key_reply, (void *) "SET host key", 5, argv, NULL);
}

static void
s_reader_kick (reader_t *reader)
{
    pl_streams_t *self = reader->owner;
    if (!reader->conn.enabled || !reader->conn.ac || reader->busy || self->destroying)
        return;
    if (reader->retry_at && pl_mono_ms () < reader->retry_at)
        return;
    reader->retry_at = 0;
    if (reader->phase == PHASE_SETUP) {
        reader->setup_failed = false;
        reader->setup_waiting = 0;
        if (!reader->persist && !self->cluster)
            //  Ahead of the group on the same link: no janitor can see our
            //  new fan-out group before our host key, and take us for gone
            s_host_key_send (self, &reader->conn);
        if (!reader->persist && self->cluster && !self->host_key_set)
            //  The host key lives on another master: wait until it is set
            return;
        for (int shard = 0; shard < self->shards; shard++) {
            if (!s_reader_owns (reader, shard))
                continue;
            //  On the reader's own link, so they run before its first read
            const char *argv [] = { "XGROUP", "CREATE", self->stream_keys [shard],
                                    reader->group, reader->start_id, "MKSTREAM" };
            if (s_conn_send (&reader->conn, s_reader_setup_reply, reader, 6, argv, NULL))
                break;
            reader->setup_waiting++;
        }
        reader->busy = reader->setup_waiting > 0;
    }
    else {
        if (!reader->persist && self->fanout_held)
            return;             //  the caller cannot take entries now
        if (reader->claims && reader->phase == PHASE_LIVE && !reader->claimed_last
        &&  pl_mono_ms () >= reader->claim_at && s_reader_claim (reader))
            return;
        s_reader_read (reader);
    }
}

static int
s_reader_init (pl_streams_t *self, reader_t *reader, const char *name, bool persist,
               const char *group, const char *start_id, pl_entry_fn *callback, int only_shard)
{
    reader->owner = self;
    reader->only_shard = only_shard;
    reader->conn.target = -1;
    reader->persist = persist;
    reader->group = group;
    reader->start_id = start_id;
    reader->callback = callback;
    reader->phase = PHASE_SETUP;
    reader->conn.owner = self;
    reader->conn.name = name;
    reader->conn.reader = reader;
    reader->conn.enabled = callback != NULL;
    reader->conn.backoff_ms = BACKOFF_MIN_MS;
    reader->conn.grace_ms = self->block_ms + 10000;
    size_t shards = (size_t) self->shards;
    reader->cursor = calloc (shards, ID_MAX);
    reader->drained = calloc (shards, sizeof (bool));
    reader->picked = calloc (shards, sizeof (int));
    reader->argv = calloc (10 + 2 * shards, sizeof (char *));
    reader->argvlen = calloc (10 + 2 * shards, sizeof (size_t));
    reader->acks = calloc (shards, sizeof (id_list_t));
    if (!reader->cursor || !reader->drained || !reader->picked || !reader->argv
    ||  !reader->argvlen || !reader->acks)
        return -1;
    if (persist) {
        reader->claims = calloc (shards, sizeof (claim_t));
        if (!reader->claims)
            return -1;
        for (int shard = 0; shard < self->shards; shard++) {
            reader->claims [shard].reader = reader;
            reader->claims [shard].shard = shard;
            strcpy (reader->claims [shard].cursor, "0-0");
        }
    }
    return 0;
}

static void
s_reader_free (pl_streams_t *self, reader_t *reader)
{
    if (reader->acks)
        for (int shard = 0; shard < self->shards; shard++)
            s_id_list_free (&reader->acks [shard]);
    free (reader->acks);
    free (reader->claims);
    free (reader->cursor);
    free (reader->drained);
    free (reader->picked);
    free (reader->argv);
    free (reader->argvlen);
}


//  --------------------------------------------------------------------------
//  Janitor: every janitor-interval-ms, per shard stream, XINFO GROUPS; then
//  for each group its oldest pending entry (XPENDING - + 1) and, for the
//  fan-out group of another host, whether that host's key still exists;
//  once all replies are in, XGROUP DESTROY the groups of departed hosts and
//  XTRIM MINID = the smallest id a remaining group still needs. Everything
//  before it was delivered to every group and acked. All on the command
//  link, pipelined: a round costs a few round trips, never blocks the loop.

static void
s_jshard_clear (jshard_t *jshard)
{
    for (size_t index = 0; index < jshard->group_count; index++)
        free (jshard->groups [index].name);
    free (jshard->groups);
    jshard->groups = NULL;
    jshard->group_count = 0;
}

static void s_janitor_step_done (jshard_t *jshard);

static void
s_janitor_trim_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    s_conn_replied (conn);
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        conn->owner->stats.trimmed += (uint64_t) reply->integer;
    else
    if (reply && reply->type == REDIS_REPLY_ERROR)
        pl_log_warning ("redis janitor XTRIM: %s", reply->str);
    s_janitor_step_done ((jshard_t *) privdata);
}

//  Sends what the round decided for the shard; the round ends for it once
//  the XTRIM (if any) has answered.
static void
s_janitor_decide (jshard_t *jshard)
{
    pl_streams_t *self = jshard->owner;
    const char *stream = self->stream_keys [jshard->shard];
    //  A round with a missing answer decides nothing: the next one will
    if (!jshard->failed && !self->destroying) {
        const char *needed = NULL;
        for (size_t index = 0; index < jshard->group_count; index++) {
            jgroup_t *group = &jshard->groups [index];
            if (group->gone) {
                pl_log_info ("redis janitor: host %s is gone, destroying group %s of %s",
                             group->name + 7, group->name, stream);
                const char *argv [] = { "XGROUP", "DESTROY", stream, group->name };
                s_send_key (self, stream, s_setup_reply, (void *) "XGROUP DESTROY", 4, argv, NULL);
                continue;
            }
            const char *group_needs = group->last;
            if (*group->oldest && s_id_compare (group->oldest, group_needs) < 0)
                group_needs = group->oldest;
            if (!needed || s_id_compare (group_needs, needed) < 0)
                needed = group_needs;
        }
        //  Without a persist group nothing stores the entries: keep them
        if (needed && jshard->has_persist && s_id_compare (needed, "0-1") > 0) {
            const char *argv [] = { "XTRIM", stream, "MINID", "=", needed };
            if (s_send_key (self, stream, s_janitor_trim_reply, jshard, 5, argv, NULL) == 0)
                jshard->waiting++;
        }
    }
    s_jshard_clear (jshard);
}

static void
s_janitor_step_done (jshard_t *jshard)
{
    if (--jshard->waiting > 0)
        return;
    if (!jshard->decided) {
        jshard->decided = true;
        s_janitor_decide (jshard);
        if (jshard->waiting > 0)
            return;
    }
    pl_streams_t *self = jshard->owner;
    if (--self->janitor_shards == 0)
        self->janitor_rounds++;
}

static void
s_janitor_host_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    jgroup_t *group = (jgroup_t *) privdata;
    s_conn_replied (conn);
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        group->gone = reply->integer == 0;
    else {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            pl_log_warning ("redis janitor EXISTS: %s", reply->str);
        group->jshard->failed = true;
    }
    s_janitor_step_done (group->jshard);
}

static void
s_janitor_pending_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    jgroup_t *group = (jgroup_t *) privdata;
    s_conn_replied (conn);
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            pl_log_warning ("redis janitor XPENDING: %s", reply->str);
        group->jshard->failed = true;
    }
    else
    if (reply->elements > 0) {
        //  [[id, consumer, idle, deliveries]]; none: all acked meanwhile
        redisReply *first = reply->element [0];
        if (first->type == REDIS_REPLY_ARRAY && first->elements > 0
        &&  first->element [0]->type == REDIS_REPLY_STRING
        &&  first->element [0]->len < ID_MAX)
            strcpy (group->oldest, first->element [0]->str);
        else
            group->jshard->failed = true;
    }
    s_janitor_step_done (group->jshard);
}

//  Reads one group of XINFO GROUPS (flat name/value pairs) into the next
//  slot and asks what else the decision needs.
static void
s_janitor_add_group (jshard_t *jshard, redisReply *info)
{
    pl_streams_t *self = jshard->owner;
    const char *stream = self->stream_keys [jshard->shard];
    const char *name = NULL;
    const char *last = NULL;
    long long pending = 0;
    long long lag = -1;
    for (size_t index = 0; info->type == REDIS_REPLY_ARRAY && index + 1 < info->elements; index += 2) {
        redisReply *key = info->element [index];
        redisReply *value = info->element [index + 1];
        if (key->type != REDIS_REPLY_STRING)
            continue;
        if (!strcmp (key->str, "name") && value->type == REDIS_REPLY_STRING)
            name = value->str;
        else
        if (!strcmp (key->str, "pending") && value->type == REDIS_REPLY_INTEGER)
            pending = value->integer;
        else
        if (!strcmp (key->str, "last-delivered-id") && value->type == REDIS_REPLY_STRING)
            last = value->str;
        else
        if (!strcmp (key->str, "lag"))
            lag = value->type == REDIS_REPLY_INTEGER? value->integer: -1;
    }
    if (name) {
        group_figures_t *figures = (group_figures_t *) malloc (sizeof (group_figures_t));
        if (figures) {
            char key [256];
            snprintf (key, sizeof key, "%d/%s", jshard->shard, name);
            figures->pending = pending;
            figures->lag = lag;
            zhashx_update (self->group_figures, key, figures);
        }
    }
    jgroup_t *group = &jshard->groups [jshard->group_count];
    if (!name || !last || strlen (last) >= ID_MAX || !(group->name = strdup (name))) {
        jshard->failed = true;
        return;
    }
    jshard->group_count++;
    group->jshard = jshard;
    strcpy (group->last, last);
    if (streq (name, "persist"))
        jshard->has_persist = true;
    //  Our own group stays whatever our key says
    if (!strncmp (name, "fanout:", 7) && name [7] && strcmp (name + 7, self->host_id)) {
        char *host_key = NULL;
        if (asprintf (&host_key, "%s:host:%s", self->key_prefix, name + 7) < 0) {
            jshard->failed = true;
            return;
        }
        const char *argv [] = { "EXISTS", host_key };
        if (s_send_key (self, host_key, s_janitor_host_reply, group, 2, argv, NULL) == 0)
            jshard->waiting++;
        else
            jshard->failed = true;
        free (host_key);
    }
    if (pending > 0) {
        const char *argv [] = { "XPENDING", stream, name, "-", "+", "1" };
        if (s_send_key (self, stream, s_janitor_pending_reply, group, 6, argv, NULL) == 0)
            jshard->waiting++;
        else
            jshard->failed = true;
    }
}

static void
s_janitor_groups_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    jshard_t *jshard = (jshard_t *) privdata;
    s_conn_replied (conn);
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        //  "no such key": the stream does not exist yet, nothing to trim
        if (reply && reply->type == REDIS_REPLY_ERROR && !strstr (reply->str, "no such key"))
            pl_log_warning ("redis janitor XINFO GROUPS: %s", reply->str);
        jshard->failed = true;
    }
    else {
        //  Groups destroyed since the last round leave the figures
        char prefix [16];
        snprintf (prefix, sizeof prefix, "%d/", jshard->shard);
        zlistx_t *keys = zhashx_keys (jshard->owner->group_figures);
        for (const char *key = (const char *) zlistx_first (keys); key;
             key = (const char *) zlistx_next (keys))
            if (!strncmp (key, prefix, strlen (prefix)))
                zhashx_delete (jshard->owner->group_figures, key);
        zlistx_destroy (&keys);
        jshard->groups = calloc (reply->elements + 1, sizeof (jgroup_t));
        if (!jshard->groups)
            jshard->failed = true;
        for (size_t index = 0; jshard->groups && index < reply->elements; index++)
            s_janitor_add_group (jshard, reply->element [index]);
    }
    s_janitor_step_done (jshard);       //  the XINFO itself
}

static void
s_janitor_start (pl_streams_t *self)
{
    self->janitor_at = pl_mono_ms () + self->janitor_interval_ms;
    if (self->janitor_shards > 0)
        return;                 //  the last round is still out (slow Redis)
    for (int shard = 0; shard < self->shards; shard++) {
        jshard_t *jshard = &self->jshards [shard];
        jshard->failed = false;
        jshard->decided = false;
        jshard->has_persist = false;
        const char *argv [] = { "XINFO", "GROUPS", self->stream_keys [shard] };
        if (s_send_key (self, argv [2], s_janitor_groups_reply, jshard, 3, argv, NULL))
            break;
        jshard->waiting = 1;
        self->janitor_shards++;
    }
}


//  --------------------------------------------------------------------------
//  Public API

pl_streams_t *
pl_streams_new (const pl_config_t *config, pl_entry_fn *on_fanout,
                pl_entry_fn *on_persist, void *arg)
{
    assert (config);
    assert (config->shards > 0);
    pl_streams_t *self = calloc (1, sizeof (pl_streams_t));
    if (!self)
        return NULL;
    self->shards = config->shards;
    self->read_count = config->read_count > 0? config->read_count: 1;
    self->block_ms = config->block_ms > 0? config->block_ms: 1;
    self->persist_limit = config->persist_inflight > 0? config->persist_inflight: 1;
    snprintf (self->ttl_text, sizeof self->ttl_text, "%d",
              config->dedup_ttl_s > 0? config->dedup_ttl_s: 1);
    snprintf (self->window_text, sizeof self->window_text, "%d",
              config->replay_window > 0? config->replay_window: 10000);
    snprintf (self->index_ttl_text, sizeof self->index_ttl_text, "%d",
              config->replay_ttl_s > 0? config->replay_ttl_s: 604800);
    snprintf (self->claim_idle_text, sizeof self->claim_idle_text, "%d",
              config->claim_idle_ms > 0? config->claim_idle_ms: 30000);
    int host_gone_s = config->host_gone_s > 1? config->host_gone_s: 300;
    snprintf (self->host_gone_text, sizeof self->host_gone_text, "%d", host_gone_s);
    //  Several refreshes per host-gone-s, so one lost SET does not look like death
    self->host_refresh_ms = host_gone_s * 1000 / 3 < HOST_REFRESH_MS?
                            host_gone_s * 1000 / 3: HOST_REFRESH_MS;
    self->claim_interval_ms = config->claim_interval_ms > 0? config->claim_interval_ms: 1000;
    self->janitor_interval_ms = config->janitor_interval_ms > 0? config->janitor_interval_ms: 5000;
    self->janitor_at = pl_mono_ms () + self->janitor_interval_ms;
    self->on_fanout = on_fanout;
    self->on_persist = on_persist;
    self->arg = arg;
    self->cluster = config->redis_cluster;
    if (self->cluster
    &&  s_parse_seeds (self, config->redis_url? config->redis_url: "")) {
        pl_log_error ("redis-url '%s' does not parse (redis://host:port,host:port)",
                      config->redis_url? config->redis_url: "");
        pl_streams_destroy (&self);
        return NULL;
    }
    if (!self->cluster
    &&  s_parse_url (self, config->redis_url? config->redis_url: "")) {
        pl_log_error ("redis-url '%s' does not parse (redis://host:port)",
                      config->redis_url? config->redis_url: "");
        pl_streams_destroy (&self);
        return NULL;
    }
    if (self->cluster && 1 + PL_STREAMS_NODES_MAX + 2 * self->shards > PL_STREAMS_POLLITEMS_MAX) {
        pl_log_error ("redis-cluster takes at most %d shards, not %d",
                      (PL_STREAMS_POLLITEMS_MAX - 1 - PL_STREAMS_NODES_MAX) / 2, self->shards);
        pl_streams_destroy (&self);
        return NULL;
    }
    self->host_id = strdup (config->host_id? config->host_id: "h1");
    self->key_prefix = strdup (config->key_prefix? config->key_prefix: "parley");
    self->stream_keys = calloc ((size_t) self->shards, sizeof (char *));
    self->seq_keys = calloc ((size_t) self->shards, sizeof (char *));
    self->inflight = zhashx_new ();
    self->group_figures = zhashx_new ();
    zhashx_set_destructor (self->group_figures, s_free_item);
    self->jshards = calloc ((size_t) self->shards, sizeof (jshard_t));
    if (!self->host_id || !self->key_prefix || !self->stream_keys || !self->seq_keys
    ||  !self->inflight || !self->jshards
    ||  asprintf (&self->fanout_group, "fanout:%s", self->host_id) < 0
    ||  asprintf (&self->dedup_prefix, "%s:{", self->key_prefix) < 0
    ||  asprintf (&self->host_key, "%s:host:%s", self->key_prefix, self->host_id) < 0
    ||  asprintf (&self->dead_key, "%s:dead", self->key_prefix) < 0) {
        //  asprintf leaves its pointer undefined on failure
        self->fanout_group = self->dedup_prefix = self->host_key = self->dead_key = NULL;
        pl_streams_destroy (&self);
        return NULL;
    }
    for (int shard = 0; shard < self->shards; shard++) {
        self->jshards [shard].owner = self;
        self->jshards [shard].shard = shard;
    }
    for (int shard = 0; shard < self->shards; shard++)
        if (asprintf (&self->stream_keys [shard], "%s:{%d}:stream", self->key_prefix, shard) < 0
        ||  asprintf (&self->seq_keys [shard], "%s:{%d}:seq", self->key_prefix, shard) < 0) {
            pl_streams_destroy (&self);
            return NULL;
        }

    //  SHA1 computed here so EVALSHA can follow SCRIPT LOAD in one pipeline
    self->scripts [SCRIPT_APPEND] = (script_t) { .name = "append", .text = s_append_script };
    self->scripts [SCRIPT_REPLAY] = (script_t) { .name = "replay", .text = s_replay_script };
    for (int index = 0; index < SCRIPT_COUNT; index++) {
        script_t *script = &self->scripts [index];
        zdigest_t *digest = zdigest_new ();
        if (!digest) {
            pl_streams_destroy (&self);
            return NULL;
        }
        zdigest_update (digest, (const byte *) script->text, strlen (script->text));
        snprintf (script->sha, sizeof script->sha, "%s", zdigest_string (digest));
        zdigest_destroy (&digest);
        for (char *scan = script->sha; *scan; scan++)
            *scan = (char) tolower ((unsigned char) *scan);
    }

    self->command.owner = self;
    self->command.name = "command";
    self->command.enabled = true;
    self->command.backoff_ms = BACKOFF_MIN_MS;
    self->command.grace_ms = config->request_timeout_ms > 0? config->request_timeout_ms: 10000;
    self->command.target = -1;
    int reader_total = self->cluster? 2 * self->shards: 2;
    self->readers = calloc ((size_t) reader_total, sizeof (reader_t *));
    if (self->cluster) {
        self->shard_readers = calloc ((size_t) reader_total, sizeof (reader_t));
        self->slot_node = malloc (CLUSTER_SLOTS * sizeof (int16_t));
    }
    if (!self->readers || (self->cluster && (!self->shard_readers || !self->slot_node))) {
        pl_streams_destroy (&self);
        return NULL;
    }
    for (int index = 0; index < reader_total; index++) {
        bool persist = index >= reader_total / 2;
        reader_t *reader = !self->cluster? (persist? &self->persist: &self->fanout):
                           &self->shard_readers [index];
        int shard = self->cluster? index % self->shards: -1;
        self->readers [self->reader_count++] = reader;
        if (persist? s_reader_init (self, reader, "persist", true, "persist", "0",
                                    on_persist, shard):
                     s_reader_init (self, reader, "fanout", false, self->fanout_group, "$",
                                    on_fanout, shard)) {
            pl_streams_destroy (&self);
            return NULL;
        }
        reader->conn.grace_ms = self->block_ms + self->command.grace_ms;
    }
    if (self->cluster) {
        for (int slot = 0; slot < CLUSTER_SLOTS; slot++)
            self->slot_node [slot] = -1;
        self->map.owner = self;
        self->map.name = "cluster";
        self->map.enabled = true;
        self->map.target = -1;
        self->map.backoff_ms = BACKOFF_MIN_MS;
        self->map.grace_ms = self->command.grace_ms;
        self->command.enabled = false;  //  the masters' links take its place
    }
    if (self->persist_limit < self->shards && on_persist)
        pl_log_warning ("persist-inflight %d is below shards %d: persist reads cover "
                        "some shards at a time", self->persist_limit, self->shards);

    if (self->cluster)
        //  Masters and readers follow once the slot map is in
        s_conn_start (&self->map);
    else {
        s_conn_start (&self->command);
        if (self->fanout.conn.enabled)
            s_conn_start (&self->fanout.conn);
        if (self->persist.conn.enabled)
            s_conn_start (&self->persist.conn);
    }
    return self;
}

//  Send what is batched and wait a little for the replies, so acked fan-out
//  and persist entries are not read again by the next instance.
static void
s_destroy_flush (pl_streams_t *self)
{
    for (int index = 0; index < self->reader_count; index++)
        s_reader_flush_acks (self->readers [index]);
    int64_t deadline = pl_mono_ms () + DESTROY_FLUSH_MS;
    while (self->acks_outstanding > 0) {
        int64_t left = deadline - pl_mono_ms ();
        if (left <= 0)
            break;
        //  The command links: one, or the masters'
        conn_t *conns [PL_STREAMS_NODES_MAX + 1];
        int count = 0;
        if (!self->cluster)
            conns [count++] = &self->command;
        for (int index = 0; self->cluster && index < self->node_count; index++)
            conns [count++] = &self->nodes [index]->command;
        struct pollfd items [PL_STREAMS_NODES_MAX + 1];
        redisAsyncContext *acs [PL_STREAMS_NODES_MAX + 1];
        int used = 0;
        for (int index = 0; index < count; index++) {
            if (!s_conn_up (conns [index]))
                continue;
            items [used] = (struct pollfd) { .fd = conns [index]->ac->c.fd };
            items [used].events = (short) ((conns [index]->want_read? POLLIN: 0)
                                         | (conns [index]->want_write? POLLOUT: 0));
            acs [used] = conns [index]->ac;
            conns [used++] = conns [index];
        }
        if (used == 0)
            break;
        if (poll (items, (nfds_t) used, (int) left) < 0 && errno != EINTR)
            break;
        for (int index = 0; index < used; index++) {
            redisAsyncContext *ac = acs [index];
            if (conns [index]->ac == ac && (items [index].revents & (POLLIN | POLLERR | POLLHUP)))
                redisAsyncHandleRead (ac);
            if (conns [index]->ac == ac && (items [index].revents & POLLOUT))
                redisAsyncHandleWrite (ac);
        }
    }
}

void
pl_streams_destroy (pl_streams_t **self_p)
{
    assert (self_p);
    pl_streams_t *self = *self_p;
    if (!self)
        return;
    assert (!self->in_handle);          //  not from inside a callback
    self->destroying = true;
    bool readers_ready = self->stream_keys && self->reader_count > 0;
    for (int index = 0; index < self->reader_count; index++)
        readers_ready &= self->readers [index]->acks != NULL;
    if (readers_ready)
        s_destroy_flush (self);
    //  Pending appends get their callback with an error from hiredis
    conn_t *conns [PL_STREAMS_POLLITEMS_MAX];
    int count = s_conns (self, conns);
    for (int index = 0; index < count; index++)
        if (conns [index]->ac)
            redisAsyncFree (conns [index]->ac);
    s_run_failed (self);
    //  After the links: their callbacks (NULL replies) still used these
    if (self->jshards)
        for (int shard = 0; shard < self->shards; shard++)
            s_jshard_clear (&self->jshards [shard]);
    free (self->jshards);
    for (int index = 0; index < self->reader_count; index++)
        s_reader_free (self, self->readers [index]);
    free (self->readers);
    free (self->shard_readers);
    for (int index = 0; index < self->node_count; index++)
        free (self->nodes [index]);
    for (int index = 0; index < self->seed_count; index++)
        free (self->seed_hosts [index]);
    free (self->slot_node);
    if (self->stream_keys)
        for (int shard = 0; shard < self->shards; shard++)
            free (self->stream_keys [shard]);
    if (self->seq_keys)
        for (int shard = 0; shard < self->shards; shard++)
            free (self->seq_keys [shard]);
    free (self->stream_keys);
    free (self->seq_keys);
    zhashx_destroy (&self->inflight);
    zhashx_destroy (&self->group_figures);
    free (self->host);
    free (self->password);
    free (self->host_id);
    free (self->key_prefix);
    free (self->fanout_group);
    free (self->dedup_prefix);
    free (self->host_key);
    free (self->dead_key);
    free (self);
    *self_p = NULL;
}

int
pl_streams_pollitems (pl_streams_t *self, zmq_pollitem_t *items, int max)
{
    assert (self);
    assert (items || max == 0);
    conn_t *conns [PL_STREAMS_POLLITEMS_MAX];
    int total = s_conns (self, conns);
    int count = 0;
    for (int index = 0; index < total && count < max; index++) {
        conn_t *conn = conns [index];
        if (!conn->ac)
            continue;
        items [count].socket = NULL;
        items [count].fd = conn->ac->c.fd;
        items [count].events = (short) ((conn->want_read? ZMQ_POLLIN: 0)
                                      | (conn->want_write? ZMQ_POLLOUT: 0));
        items [count].revents = 0;
        self->item_conn [count] = conn;
        self->item_ac [count] = conn->ac;
        count++;
    }
    for (int index = count; index < PL_STREAMS_POLLITEMS_MAX; index++) {
        self->item_conn [index] = NULL;
        self->item_ac [index] = NULL;
    }
    return count;
}

//  Whether host key refresh and janitor may go: the command link is up, or
//  under a cluster the slot map is in and every master's link is up
static bool
s_commands_up (pl_streams_t *self)
{
    if (!self->cluster)
        return s_conn_up (&self->command);
    if (!self->map_loaded)
        return false;
    for (int index = 0; index < self->node_count; index++)
        if (!s_conn_up (&self->nodes [index]->command))
            return false;
    return true;
}

void
pl_streams_handle (pl_streams_t *self, zmq_pollitem_t *items, int count)
{
    assert (self);
    assert (items || count == 0);
    self->in_handle = true;
    for (int index = 0; index < count && index < PL_STREAMS_POLLITEMS_MAX; index++) {
        conn_t *conn = self->item_conn [index];
        redisAsyncContext *ac = self->item_ac [index];
        //  Skip an item whose link went away since pl_streams_pollitems
        if (!conn || !ac || conn->ac != ac || items [index].fd != ac->c.fd)
            continue;
        short revents = items [index].revents;
        if (!(ac->c.flags & REDIS_CONNECTED)) {
            //  hiredis finishes (or fails) a connect on a write event
            if (revents & (ZMQ_POLLOUT | ZMQ_POLLERR | ZMQ_POLLIN))
                redisAsyncHandleWrite (ac);
            continue;
        }
        if (revents & (ZMQ_POLLIN | ZMQ_POLLERR)) {
            redisAsyncHandleRead (ac);
            for (int round = 1; round < READ_ROUNDS && conn->ac == ac; round++) {
                int waiting = 0;
                if (ioctl (ac->c.fd, FIONREAD, &waiting) || waiting <= 0)
                    break;
                redisAsyncHandleRead (ac);
            }
        }
        if (conn->ac == ac && (revents & ZMQ_POLLOUT))
            redisAsyncHandleWrite (ac);
    }
    s_run_failed (self);

    int64_t now = pl_mono_ms ();
    conn_t *conns [PL_STREAMS_POLLITEMS_MAX];
    int conn_count = s_conns (self, conns);
    for (int index = 0; index < conn_count; index++) {
        conn_t *conn = conns [index];
        if (!conn->enabled)
            continue;
        if (!conn->ac) {
            if (now >= conn->reconnect_at)
                s_conn_start (conn);
        }
        else
        if ((conn->outstanding > 0 || !conn->connected)
        &&  now - conn->progress_ms > conn->grace_ms) {
            //  Redis hangs or the network ate the link: start over
            pl_log_warning ("redis %s: no answer for %d ms, reconnecting",
                            conn->name, conn->grace_ms);
            redisAsyncFree (conn->ac);
        }
    }
    if (self->cluster && self->map_stale && now >= self->map_at)
        s_map_load (self);
    for (int index = 0; index < self->reader_count; index++)
        s_reader_kick (self->readers [index]);
    if (s_commands_up (self)) {
        now = pl_mono_ms ();
        if (now >= self->host_at) {
            self->host_at = now + self->host_refresh_ms;
            s_host_key_send (self, NULL);
        }
        if (now >= self->janitor_at)
            s_janitor_start (self);
    }
    for (int index = 0; index < self->reader_count; index++)
        s_reader_flush_acks (self->readers [index]);
    s_run_failed (self);        //  in case a callback above failed an append

    //  Write what this turn queued now rather than after another poll
    for (int index = 0; index < conn_count; index++)
        if (s_conn_up (conns [index]) && conns [index]->want_write)
            redisAsyncHandleWrite (conns [index]->ac);
    s_run_failed (self);
    self->dirty = false;
    self->in_handle = false;
}

int
pl_streams_timeout (pl_streams_t *self)
{
    assert (self);
    if (self->dirty || self->failed_head)
        return 0;
    int64_t now = pl_mono_ms ();
    int64_t next = -1;
    conn_t *conns [PL_STREAMS_POLLITEMS_MAX];
    int conn_count = s_conns (self, conns);
    for (int index = 0; index < conn_count; index++) {
        conn_t *conn = conns [index];
        int64_t when = -1;
        if (!conn->enabled)
            continue;
        if (!conn->ac)
            when = conn->reconnect_at;
        else
        if (conn->outstanding > 0 || !conn->connected)
            when = conn->progress_ms + conn->grace_ms + 1;
        else
        if (conn->reader && conn->reader->retry_at && !conn->reader->busy)
            when = conn->reader->retry_at;
        if (when >= 0 && (next < 0 || when < next))
            next = when;
    }
    //  Housekeeping timers; one already due but waiting for something else
    //  (a janitor round still out, no in-flight room to claim) is left out,
    //  or the caller's poll would spin
    int64_t timers [3] = { -1, -1, -1 };
    if (s_commands_up (self)) {
        timers [0] = self->host_at;
        if (self->janitor_shards == 0)
            timers [1] = self->janitor_at;
    }
    if (self->cluster && self->map_stale && !self->map_loading && s_conn_up (&self->map))
        timers [2] = self->map_at;
    for (int index = 0; index < self->reader_count; index++) {
        reader_t *persist = self->readers [index];
        if (persist->persist && persist->conn.enabled && persist->phase == PHASE_LIVE
        &&  !persist->busy && persist->claim_at > now
        &&  (timers [2] < 0 || persist->claim_at < timers [2]))
            timers [2] = persist->claim_at;
    }
    for (int index = 0; index < 3; index++)
        if (timers [index] >= 0 && (next < 0 || timers [index] < next))
            next = timers [index];
    if (next < 0)
        return -1;
    return next <= now? 0: (int) (next - now > INT_MAX? INT_MAX: next - now);
}


void
pl_streams_persist_ack (pl_streams_t *self, const char *stream_key, const char *entry_id)
{
    assert (self);
    int shard = s_shard_of_key (self, stream_key);
    if (shard < 0 || !entry_id || !*entry_id || strlen (entry_id) >= ID_MAX) {
        pl_log_warning ("persist ack of unknown entry %s %s", stream_key? stream_key: "-",
                        entry_id? entry_id: "-");
        return;
    }
    char key [ID_MAX + 16];
    snprintf (key, sizeof key, "%d/%s", shard, entry_id);
    zhashx_delete (self->inflight, key);
    s_reader_ack (s_reader_for (self, true, shard), shard, entry_id);
}

static void
s_dead_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    dead_op_t *dead = (dead_op_t *) privdata;
    pl_streams_t *self = dead->owner;
    s_conn_replied (conn);
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
    &&  reply->element [0]->type == REDIS_REPLY_STRING) {
        self->stats.dead_lettered++;
        pl_log_error ("entry %s of %s could not be stored, moved to %s as %s",
                      dead->entry_id, dead->stream_key, self->dead_key, reply->element [0]->str);
    }
    else
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2)
        //  XADD failed at run time (the dead key is not a stream?) while
        //  the XACK went through: say loudly what to recover by hand
        pl_log_error ("entry %s of %s LOST: XADD to %s failed (%s) but it was acked",
                      dead->entry_id, dead->stream_key, self->dead_key,
                      reply->element [0]->type == REDIS_REPLY_ERROR?
                      reply->element [0]->str: "unexpected reply");
    else
        //  Nothing happened: the entry is still pending and comes back
        //  (re-read after a reconnect, or claimed once idle)
        pl_log_error ("entry %s of %s: dead-letter transaction failed (%s), it stays pending",
                      dead->entry_id, dead->stream_key,
                      !reply? "connection lost": reply->type == REDIS_REPLY_ERROR?
                      reply->str: "unexpected reply");
    zhashx_delete (self->inflight, dead->inflight_key);
    self->dirty = true;
    free (dead->stream_key);
    free (dead->entry_id);
    free (dead);
}

static void
s_dead_free (dead_op_t *dead)
{
    pl_streams_t *self = dead->owner;
    zhashx_delete (self->inflight, dead->inflight_key);
    self->dirty = true;
    free (dead->stream_key);
    free (dead->entry_id);
    free (dead);
}

//  Cluster, second step: the XACK after the copy is in the dead stream
static void
s_dead_xack_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    dead_op_t *dead = (dead_op_t *) privdata;
    pl_streams_t *self = dead->owner;
    s_conn_replied (conn);
    if (reply && reply->type == REDIS_REPLY_INTEGER) {
        self->stats.dead_lettered++;
        pl_log_error ("entry %s of %s could not be stored, moved to %s as %s",
                      dead->entry_id, dead->stream_key, self->dead_key, dead->dead_id);
    }
    else
        //  Copied, not acked: it comes back and may be dead-lettered twice,
        //  which beats losing it
        pl_log_error ("entry %s of %s copied to %s as %s, but XACK failed (%s): it stays pending",
                      dead->entry_id, dead->stream_key, self->dead_key, dead->dead_id,
                      !reply? "connection lost": reply->type == REDIS_REPLY_ERROR?
                      reply->str: "unexpected reply");
    s_dead_free (dead);
}

//  Cluster, first step: the dead stream is another slot, so no MULTI; XACK
//  only once the XADD answered with an id, so the entry is never lost
static void
s_dead_xadd_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    dead_op_t *dead = (dead_op_t *) privdata;
    pl_streams_t *self = dead->owner;
    s_conn_replied (conn);
    if (reply && reply->type == REDIS_REPLY_STRING && reply->len < ID_MAX) {
        strcpy (dead->dead_id, reply->str);
        const char *xack [] = { "XACK", dead->stream_key,
                                s_reader_for (self, true, dead->shard)->group, dead->entry_id };
        if (s_send_key (self, dead->stream_key, s_dead_xack_reply, dead, 4, xack, NULL) == 0)
            return;
        pl_log_error ("entry %s of %s copied to %s as %s, XACK not sent: it stays pending",
                      dead->entry_id, dead->stream_key, self->dead_key, dead->dead_id);
        s_dead_free (dead);
        return;
    }
    pl_log_error ("entry %s of %s: XADD to %s failed (%s), it stays pending",
                  dead->entry_id, dead->stream_key, self->dead_key,
                  !reply? "connection lost": reply->type == REDIS_REPLY_ERROR?
                  reply->str: "unexpected reply");
    s_dead_free (dead);
}

void
pl_streams_persist_fail (pl_streams_t *self, const pl_entry_t *entry, const char *error)
{
    assert (self);
    assert (entry);
    int shard = s_shard_of_key (self, entry->stream_key);
    if (shard < 0 || !entry->entry_id || !*entry->entry_id || strlen (entry->entry_id) >= ID_MAX) {
        pl_log_warning ("persist failure of unknown entry %s %s",
                        entry->stream_key? entry->stream_key: "-",
                        entry->entry_id? entry->entry_id: "-");
        return;
    }
    dead_op_t *dead = calloc (1, sizeof (dead_op_t));
    if (dead) {
        dead->owner = self;
        dead->stream_key = strdup (entry->stream_key);
        dead->entry_id = strdup (entry->entry_id);
    }
    if (!dead || !dead->stream_key || !dead->entry_id) {
        pl_log_error ("out of memory moving entry %s of %s to %s", entry->entry_id,
                      entry->stream_key, self->dead_key);
        if (dead) {
            free (dead->stream_key);
            free (dead->entry_id);
            free (dead);
        }
        return;
    }
    snprintf (dead->inflight_key, sizeof dead->inflight_key, "%d/%s", shard, entry->entry_id);
    dead->shard = shard;
    char seq [24], created [24], failed_at [24];
    snprintf (seq, sizeof seq, "%" PRId64, entry->seq);
    snprintf (created, sizeof created, "%" PRId64, entry->created_ms);
    snprintf (failed_at, sizeof failed_at, "%" PRId64, pl_clock_ms ());
    const char *xadd [] = {
        "XADD", self->dead_key, "*", "v", "1",
        "room", entry->room_id? entry->room_id: "", "seq", seq,
        "type", entry->type? entry->type: "", "sender", entry->sender_id? entry->sender_id: "",
        "name", entry->sender_name? entry->sender_name: "",
        "content", entry->content? entry->content: "",
        "cmid", entry->client_msg_id? entry->client_msg_id: "", "created", created,
        "stream", entry->stream_key, "entry_id", entry->entry_id,
        "error", error? error: "unknown error", "failed_at", failed_at };
    if (self->cluster) {
        if (s_send_key (self, self->dead_key, s_dead_xadd_reply, dead,
                        (int) (sizeof xadd / sizeof xadd [0]), xadd, NULL)) {
            pl_log_error ("entry %s of %s could not be moved to %s: redis not connected",
                          entry->entry_id, entry->stream_key, self->dead_key);
            s_dead_free (dead);
        }
        return;
    }
    const char *xack [] = { "XACK", entry->stream_key, self->persist.group, entry->entry_id };
    const char *multi [] = { "MULTI" };
    const char *exec [] = { "EXEC" };
    //  One transaction, so the entry is never both pending and dead-lettered
    //  (doubled) nor acked without its copy (lost). The dead stream is
    //  another slot: under Redis Cluster this becomes XADD, then XACK once
    //  the XADD answered OK.
    if (s_conn_send (&self->command, s_setup_reply, (void *) "MULTI", 1, multi, NULL)) {
        //  Not connected: it stays pending and comes back (see s_dead_reply)
        pl_log_error ("entry %s of %s could not be moved to %s: redis not connected",
                      entry->entry_id, entry->stream_key, self->dead_key);
        zhashx_delete (self->inflight, dead->inflight_key);
        free (dead->stream_key);
        free (dead->entry_id);
        free (dead);
        return;
    }
    if (s_conn_send (&self->command, s_setup_reply, (void *) "XADD dead",
                     (int) (sizeof xadd / sizeof xadd [0]), xadd, NULL)
    ||  s_conn_send (&self->command, s_setup_reply, (void *) "XACK dead", 4, xack, NULL)
    ||  s_conn_send (&self->command, s_dead_reply, dead, 1, exec, NULL)) {
        //  Only out of memory gets here. The link is inside MULTI: close it
        //  after its replies, so nothing else lands in the transaction
        pl_log_error ("out of memory in a dead-letter transaction, closing the command link");
        redisAsyncDisconnect (self->command.ac);
        //  s_dead_reply was not registered (EXEC is the last one sent)
        zhashx_delete (self->inflight, dead->inflight_key);
        free (dead->stream_key);
        free (dead->entry_id);
        free (dead);
    }
}

void
pl_streams_stats (pl_streams_t *self, pl_streams_stats_t *stats)
{
    assert (self);
    assert (stats);
    *stats = self->stats;
}

json_t *
pl_streams_groups_json (pl_streams_t *self)
{
    assert (self);
    json_t *groups = json_object ();
    for (group_figures_t *figures = (group_figures_t *) zhashx_first (self->group_figures); figures;
         figures = (group_figures_t *) zhashx_next (self->group_figures)) {
        const char *name = strchr ((const char *) zhashx_cursor (self->group_figures), '/') + 1;
        json_t *group = json_object_get (groups, name);
        if (!group) {
            group = json_pack ("{s:I, s:I}", "pending", (json_int_t) 0, "lag", (json_int_t) 0);
            json_object_set_new (groups, name, group);
        }
        json_object_set_new (group, "pending", json_integer (
            json_integer_value (json_object_get (group, "pending")) + figures->pending));
        if (figures->lag >= 0)
            json_object_set_new (group, "lag", json_integer (
                json_integer_value (json_object_get (group, "lag")) + figures->lag));
    }
    return groups;
}

void
pl_streams_fanout_hold (pl_streams_t *self, bool hold)
{
    assert (self);
    if (hold == self->fanout_held)
        return;
    self->fanout_held = hold;
    if (hold)
        return;
    for (int index = 0; index < self->reader_count; index++) {
        reader_t *reader = self->readers [index];
        if (reader->persist)
            continue;
        if (reader->busy && reader->phase != PHASE_SETUP)
            reader->skip_reply = true;
        else
        if (reader->phase != PHASE_SETUP)
            s_reader_restart_pending (reader);
        s_reader_kick (reader);
    }
}

size_t
pl_streams_persist_inflight (pl_streams_t *self)
{
    assert (self);
    return zhashx_size (self->inflight);
}

bool
pl_streams_connected (pl_streams_t *self)
{
    assert (self);
    if (!s_commands_up (self))
        return false;
    for (int index = 0; index < self->reader_count; index++) {
        reader_t *reader = self->readers [index];
        if (reader->conn.enabled && (!s_conn_up (&reader->conn) || reader->phase == PHASE_SETUP))
            return false;
    }
    return true;
}


//  --------------------------------------------------------------------------
//  Selftest: runs its own redis-server on a free loopback port

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>
#include <ftw.h>

#define TEST_MESSAGES   2000
#define TEST_ROOMS      3
#define TEST_PER_ROOM   ((TEST_MESSAGES + TEST_ROOMS - 1) / TEST_ROOMS)
#define TEST_INFLIGHT   64
#define TEST_SHARDS     4

static const char *s_test_rooms [TEST_ROOMS] = { "room-a", "room-b", "room-c" };

typedef struct _test_t test_t;

typedef struct {
    test_t *test;
    int index;                  //  message number, -1 = not a message of the batch
    int result;
    int64_t seq;
    bool called;
} test_slot_t;

struct _test_t {
    pl_streams_t *streams;
    bool verbose;
    test_slot_t slots [TEST_MESSAGES + 16];
    int done_count;
    int fanout_count;
    int persist_count;
    int fanout_seen [TEST_ROOMS][TEST_PER_ROOM + 1];
    int persist_seen [TEST_ROOMS][TEST_PER_ROOM + 1];
    int late_fanout;            //  after the restart
    int late_persist;
    bool ack_mode;              //  ack persist entries
    bool ack_in_callback;       //  ... some of them right inside on_persist
    zlistx_t *to_ack;           //  "stream\tid" waiting for the loop to ack
    zhashx_t *first_ids;        //  persist ids delivered to the first instance
    int first_redelivered;      //  of these, delivered again after re-creation
    size_t max_inflight;
    int bad_fields;
};

static void
s_test_message (int index, pl_entry_t *message, char *content, char *sender,
                char *name, char *cmid)
{
    sprintf (content, "message %d \"quoted\"\nline two", index);
    sprintf (sender, "user-%d", index % 5);
    sprintf (name, "User %d", index % 5);
    sprintf (cmid, "cm-%d", index);
    *message = (pl_entry_t) {
        .room_id = s_test_rooms [index % TEST_ROOMS], .type = "CHAT",
        .sender_id = sender, .sender_name = name, .content = content,
        .client_msg_id = cmid, .created_ms = 1700000000000 + index
    };
}

static void
s_test_done (void *arg, int result, int64_t seq, const char *error)
{
    test_slot_t *slot = (test_slot_t *) arg;
    assert (!slot->called);
    slot->called = true;
    slot->result = result;
    slot->seq = seq;
    slot->test->done_count++;
    if (result < 0 && slot->test->verbose)
        printf (" (append %d failed: %s)", slot->index, error);
}

//  Check an entry of the batch against what was appended; returns its room.
static int
s_test_check (test_t *test, const pl_entry_t *entry)
{
    int room = -1;
    if (!strcmp (entry->room_id, "other-room"))
        return -1;              //  the one with a reused clientMsgId
    for (int index = 0; index < TEST_ROOMS; index++)
        if (!strcmp (entry->room_id, s_test_rooms [index]))
            room = index;
    if (room < 0 || entry->seq < 1 || entry->seq > TEST_PER_ROOM) {
        test->bad_fields++;
        return -1;
    }
    int index = (int) (entry->seq - 1) * TEST_ROOMS + room;
    pl_entry_t expect;
    char content [64], sender [16], name [16], cmid [16];
    s_test_message (index, &expect, content, sender, name, cmid);
    if (strcmp (entry->type, "CHAT") || strcmp (entry->sender_id, sender)
    ||  strcmp (entry->sender_name, name) || strcmp (entry->content, content)
    ||  strcmp (entry->client_msg_id, cmid) || entry->created_ms != expect.created_ms
    ||  !entry->entry_id || !*entry->entry_id
    ||  pl_streams_shard (entry->room_id, TEST_SHARDS)
        != atoi (strchr (entry->stream_key, '{') + 1))
        test->bad_fields++;
    return room;
}

static void
s_test_on_fanout (void *arg, const pl_entry_t *entry)
{
    test_t *test = (test_t *) arg;
    if (test->late_fanout >= 0 && !strcmp (entry->room_id, "late")) {
        test->late_fanout++;
        return;
    }
    int room = s_test_check (test, entry);
    if (room >= 0)
        test->fanout_seen [room][entry->seq]++;
    test->fanout_count++;
}

static void
s_test_on_persist (void *arg, const pl_entry_t *entry)
{
    test_t *test = (test_t *) arg;
    size_t inflight = pl_streams_persist_inflight (test->streams);
    if (inflight > test->max_inflight)
        test->max_inflight = inflight;
    if (!strcmp (entry->room_id, "late"))
        test->late_persist++;
    else {
        int room = s_test_check (test, entry);
        if (room >= 0)
            test->persist_seen [room][entry->seq]++;
        test->persist_count++;
        char key [128];
        snprintf (key, sizeof key, "%s\t%s", entry->stream_key, entry->entry_id);
        if (!test->ack_mode)
            zhashx_insert (test->first_ids, key, test);
        else
        if (zhashx_lookup (test->first_ids, key))
            test->first_redelivered++;
    }
    if (test->ack_mode && test->ack_in_callback && entry->seq % 2)
        pl_streams_persist_ack (test->streams, entry->stream_key, entry->entry_id);
    else
    if (test->ack_mode) {
        char *pair = NULL;
        int rc = asprintf (&pair, "%s\t%s", entry->stream_key, entry->entry_id);
        assert (rc > 0);
        zlistx_add_end (test->to_ack, pair);
        free (pair);
    }
}

//  One loop turn as a caller would write it.
static void
s_test_turn (test_t *test, int max_wait_ms)
{
    zmq_pollitem_t items [PL_STREAMS_POLLITEMS_MAX];
    int count = pl_streams_pollitems (test->streams, items, PL_STREAMS_POLLITEMS_MAX);
    int timeout = pl_streams_timeout (test->streams);
    if (timeout < 0 || timeout > max_wait_ms)
        timeout = max_wait_ms;
    int rc = zmq_poll (items, count, timeout);
    assert (rc >= 0);
    pl_streams_handle (test->streams, items, count);
    char *pair;
    while ((pair = (char *) zlistx_detach (test->to_ack, NULL))) {
        char *tab = strchr (pair, '\t');
        *tab = 0;
        pl_streams_persist_ack (test->streams, pair, tab + 1);
        free (pair);
    }
}

static bool
s_test_run (test_t *test, int max_ms, bool (*until) (test_t *test))
{
    int64_t deadline = pl_mono_ms () + max_ms;
    while (pl_mono_ms () < deadline) {
        if (until && until (test))
            return true;
        s_test_turn (test, 20);
    }
    return until? until (test): true;
}

static bool s_test_is_connected (test_t *test) { return pl_streams_connected (test->streams); }
static bool s_test_is_disconnected (test_t *test) { return !pl_streams_connected (test->streams); }
static bool s_test_all_done (test_t *test) { return test->done_count == TEST_MESSAGES; }

static bool
s_test_all_fanned_out (test_t *test)
{
    //  Reads stop when less room is left than a read of all shards needs
    return test->fanout_count >= TEST_MESSAGES
        && test->persist_count > TEST_INFLIGHT - TEST_SHARDS;
}

static bool
s_test_all_persisted (test_t *test)
{
    for (int index = 0; index < TEST_MESSAGES; index++)
        if (!test->persist_seen [index % TEST_ROOMS][index / TEST_ROOMS + 1])
            return false;
    return pl_streams_persist_inflight (test->streams) == 0;
}

static int s_test_late_done;
static bool s_test_late_all (test_t *test)
{
    return s_test_late_done == 10 && test->late_fanout == 10 && test->late_persist == 10;
}

static void
s_test_late_append (void *arg, int result, int64_t seq, const char *error)
{
    (void) error;
    int *expect = (int *) arg;
    assert (result == 0);
    assert (seq == *expect);
    s_test_late_done++;
}

static pid_t
s_test_redis_start (int port, const char *dir, bool cluster)
{
    pid_t pid = fork ();
    assert (pid >= 0);
    if (pid == 0) {
        char port_text [16];
        snprintf (port_text, sizeof port_text, "%d", port);
        int null = open ("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2 (null, STDOUT_FILENO);
            dup2 (null, STDERR_FILENO);
        }
        if (cluster)
            execlp ("redis-server", "redis-server", "--port", port_text, "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no",
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    (char *) NULL);
        else
            execlp ("redis-server", "redis-server", "--port", port_text, "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", dir,
                    "--daemonize", "no", (char *) NULL);
        _exit (127);
    }
    //  Ready when it answers PING
    for (int attempt = 0; attempt < 500; attempt++) {
        struct timeval timeout = { 0, 200000 };
        redisContext *context = redisConnectWithTimeout ("127.0.0.1", port, timeout);
        if (context && !context->err) {
            redisReply *reply = redisCommand (context, "PING");
            bool ok = reply && reply->type == REDIS_REPLY_STATUS;
            freeReplyObject (reply);
            redisFree (context);
            if (ok)
                return pid;
        }
        else
        if (context)
            redisFree (context);
        int status;
        assert (waitpid (pid, &status, WNOHANG) == 0);      //  redis-server died
        usleep (10000);
    }
    assert (false);
    return -1;
}

static void
s_test_redis_stop (pid_t pid)
{
    kill (pid, SIGKILL);
    int status;
    waitpid (pid, &status, 0);
}

//  Is this loopback port free to bind?
static bool
s_test_port_free (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert (fd >= 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    bool free_port = bind (fd, (struct sockaddr *) &address, sizeof address) == 0;
    close (fd);
    return free_port;
}

static int
s_test_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert (fd >= 0);
    struct sockaddr_in address = { .sin_family = AF_INET };
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    int rc = bind (fd, (struct sockaddr *) &address, sizeof address);
    assert (rc == 0);
    socklen_t length = sizeof address;
    rc = getsockname (fd, (struct sockaddr *) &address, &length);
    assert (rc == 0);
    close (fd);
    return ntohs (address.sin_port);
}

//  A cluster node also listens on port + 10000 (its bus): both must be
//  free, so ephemeral ports (up to 60999) do not do
static int
s_test_free_cluster_port (void)
{
    static bool seeded = false;
    if (!seeded) {
        srandom ((unsigned) getpid () ^ (unsigned) time (NULL));
        seeded = true;
    }
    for (int attempt = 0; attempt < 1000; attempt++) {
        int port = 20000 + (int) (random () % 20000);
        if (s_test_port_free (port) && s_test_port_free (port + 10000))
            return port;
    }
    assert (false);
    return -1;
}

//  Synchronous query for checks: an integer reply, or -1
static long long
s_test_query (int port, const char *format, ...)
{
    redisContext *context = redisConnect ("127.0.0.1", port);
    assert (context && !context->err);
    va_list args;
    va_start (args, format);
    redisReply *reply = redisvCommand (context, format, args);
    va_end (args);
    long long value = -1;
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        value = reply->integer;
    else
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1
    &&  reply->element [0]->type == REDIS_REPLY_INTEGER)
        value = reply->element [0]->integer;        //  XPENDING summary
    freeReplyObject (reply);
    redisFree (context);
    return value;
}

static void
s_test_string_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

static void *
s_test_string_dup (const void *item)
{
    return strdup ((const char *) item);
}

static int
s_test_rm (const char *path, const struct stat *status, int flag, struct FTW *ftw)
{
    (void) status; (void) flag; (void) ftw;
    return remove (path);
}

//  --------------------------------------------------------------------------
//  Selftest of replay, signals, claims, dead letters, janitor and stats:
//  each part on its own key prefix, so they do not see each other's keys

#define PROBE_REPLAY_MAX    64
#define BULK_MESSAGES       100000
#define BULK_READ_COUNT     128
#define BULK_SHARDS         4
//  Appends ahead of what persist acked: one full read of every shard
#define BULK_WINDOW         (BULK_READ_COUNT * BULK_SHARDS)

typedef struct {
    pl_streams_t *streams;
    int fanout_count;
    int signals;                //  fan-out entries with seq 0
    char signal_type [32];
    char signal_room [32];
    char signal_content [8];
    int persist_count;
    int persist_signals;        //  persist entries with seq 0: must stay 0
    bool ack;                   //  ack persist entries inside on_persist
    int fail_left;              //  persist_fail this many entries instead
    char first_id [ID_MAX];     //  entry id of the first persist entry
    char first_stream [64];     //  ... and its stream (ids repeat across streams)
    char failed_id [ID_MAX];
    size_t max_inflight;
    int appends_done;
    int appends_failed;
    int64_t replayed [PROBE_REPLAY_MAX];
    char replayed_content [PROBE_REPLAY_MAX][32];
    int replay_count;
    bool replay_called;
    bool replay_inside;         //  set around the pl_streams_replay call
    int replay_result;
    int64_t replay_first;
    int64_t replay_last;
} probe_t;

static void
s_probe_fanout (void *arg, const pl_entry_t *entry)
{
    probe_t *probe = (probe_t *) arg;
    probe->fanout_count++;
    if (entry->seq == 0) {
        probe->signals++;
        snprintf (probe->signal_type, sizeof probe->signal_type, "%s", entry->type);
        snprintf (probe->signal_room, sizeof probe->signal_room, "%s", entry->room_id);
        snprintf (probe->signal_content, sizeof probe->signal_content, "%s", entry->content);
    }
}

static void
s_probe_persist (void *arg, const pl_entry_t *entry)
{
    probe_t *probe = (probe_t *) arg;
    size_t inflight = pl_streams_persist_inflight (probe->streams);
    if (inflight > probe->max_inflight)
        probe->max_inflight = inflight;
    if (entry->seq == 0)
        probe->persist_signals++;
    if (probe->persist_count++ == 0) {
        snprintf (probe->first_id, sizeof probe->first_id, "%s", entry->entry_id);
        snprintf (probe->first_stream, sizeof probe->first_stream, "%s", entry->stream_key);
    }
    if (probe->fail_left > 0) {
        probe->fail_left--;
        snprintf (probe->failed_id, sizeof probe->failed_id, "%s", entry->entry_id);
        pl_streams_persist_fail (probe->streams, entry, "mongo says no");
    }
    else
    if (probe->ack)
        pl_streams_persist_ack (probe->streams, entry->stream_key, entry->entry_id);
}

static void
s_probe_appended (void *arg, int result, int64_t seq, const char *error)
{
    (void) seq; (void) error;
    probe_t *probe = (probe_t *) arg;
    probe->appends_done++;
    if (result != 0)
        probe->appends_failed++;
}

static void
s_probe_replay_entry (void *arg, const pl_entry_t *entry)
{
    probe_t *probe = (probe_t *) arg;
    assert (!probe->replay_inside);
    assert (probe->replay_count < PROBE_REPLAY_MAX);
    assert (!strcmp (entry->type, "CHAT") && !strcmp (entry->sender_id, "u-r"));
    assert (entry->entry_id && *entry->entry_id && entry->stream_key);
    snprintf (probe->replayed_content [probe->replay_count], 32, "%s", entry->content);
    probe->replayed [probe->replay_count++] = entry->seq;
}

static void
s_probe_replay_done (void *arg, int result, int64_t first_seq, int64_t last_seq)
{
    probe_t *probe = (probe_t *) arg;
    assert (!probe->replay_inside);
    assert (!probe->replay_called);
    probe->replay_called = true;
    probe->replay_result = result;
    probe->replay_first = first_seq;
    probe->replay_last = last_seq;
}

static void
s_probe_turn (probe_t *probe, int max_wait_ms)
{
    zmq_pollitem_t items [PL_STREAMS_POLLITEMS_MAX];
    int count = pl_streams_pollitems (probe->streams, items, PL_STREAMS_POLLITEMS_MAX);
    int timeout = pl_streams_timeout (probe->streams);
    if (timeout < 0 || timeout > max_wait_ms)
        timeout = max_wait_ms;
    int rc = zmq_poll (items, count, timeout);
    assert (rc >= 0);
    pl_streams_handle (probe->streams, items, count);
}

static bool
s_probe_run (probe_t *probe, int max_ms, bool (*until) (probe_t *probe))
{
    int64_t deadline = pl_mono_ms () + max_ms;
    while (pl_mono_ms () < deadline) {
        if (until && until (probe))
            return true;
        s_probe_turn (probe, 20);
    }
    return until? until (probe): true;
}

static bool s_probe_connected (probe_t *probe) { return pl_streams_connected (probe->streams); }
static bool s_probe_replayed (probe_t *probe) { return probe->replay_called; }

static pl_config_t *
s_probe_config (int port, const char *prefix, const char *host_id)
{
    pl_config_t *config = pl_config_new_default ();
    assert (config);
    char url [64];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d", port);
    int rc = pl_config_set (config, "redis-url", url);
    assert (rc == 0);
    pl_config_set (config, "shards", "4");
    pl_config_set (config, "read-count", "50");
    pl_config_set (config, "block-ms", "100");
    pl_config_set (config, "key-prefix", prefix);
    pl_config_set (config, "host-id", host_id);
    return config;
}

//  Synchronous query for checks: the string reply, or element [index] of an
//  array reply, into buffer ("" when there is none)
static void
s_test_query_string (int port, char *buffer, size_t size, int index, const char *format, ...)
{
    redisContext *context = redisConnect ("127.0.0.1", port);
    assert (context && !context->err);
    va_list args;
    va_start (args, format);
    redisReply *reply = redisvCommand (context, format, args);
    va_end (args);
    *buffer = 0;
    if (reply && reply->type == REDIS_REPLY_STRING)
        snprintf (buffer, size, "%s", reply->str);
    else
    if (reply && reply->type == REDIS_REPLY_ARRAY && (size_t) index < reply->elements
    &&  reply->element [index]->type == REDIS_REPLY_STRING)
        snprintf (buffer, size, "%s", reply->element [index]->str);
    freeReplyObject (reply);
    redisFree (context);
}

//  Whether a stream has a consumer group of that name
static bool
s_test_has_group (int port, const char *stream, const char *group)
{
    redisContext *context = redisConnect ("127.0.0.1", port);
    assert (context && !context->err);
    redisReply *reply = redisCommand (context, "XINFO GROUPS %s", stream);
    bool found = false;
    for (size_t index = 0; reply && reply->type == REDIS_REPLY_ARRAY && index < reply->elements; index++) {
        redisReply *info = reply->element [index];
        for (size_t field = 0; field + 1 < info->elements; field += 2)
            if (!strcmp (info->element [field]->str, "name")
            &&  !strcmp (info->element [field + 1]->str, group))
                found = true;
    }
    freeReplyObject (reply);
    redisFree (context);
    return found;
}

//  A field of the newest entry of a stream
static void
s_test_stream_field (int port, const char *stream, const char *field, char *buffer, size_t size)
{
    redisContext *context = redisConnect ("127.0.0.1", port);
    assert (context && !context->err);
    redisReply *reply = redisCommand (context, "XREVRANGE %s + - COUNT 1", stream);
    *buffer = 0;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1) {
        redisReply *fields = reply->element [0]->element [1];
        for (size_t index = 0; index + 1 < fields->elements; index += 2)
            if (!strcmp (fields->element [index]->str, field))
                snprintf (buffer, size, "%s", fields->element [index + 1]->str);
    }
    freeReplyObject (reply);
    redisFree (context);
}

static long long
s_test_total (int port, const char *format, const char *prefix, int shards)
{
    long long total = 0;
    for (int shard = 0; shard < shards; shard++) {
        char key [128];
        snprintf (key, sizeof key, "%s:{%d}:stream", prefix, shard);
        long long value = s_test_query (port, format, key);
        total += value > 0? value: 0;
    }
    return total;
}

//  Replay and wait for it; checks done comes later than the call
static void
s_probe_replay (probe_t *probe, const char *room, int64_t after, int max)
{
    probe->replay_count = 0;
    probe->replay_called = false;
    probe->replay_inside = true;
    int rc = pl_streams_replay (probe->streams, room, after, max, s_probe_replay_entry,
                                s_probe_replay_done, probe);
    probe->replay_inside = false;
    assert (rc == 0);
    assert (!probe->replay_called);
    bool done = s_probe_run (probe, 5000, s_probe_replayed);
    assert (done);
}

static void
s_probe_expect (probe_t *probe, int64_t first, int count, int64_t last)
{
    assert (probe->replay_result == 0);
    assert (probe->replay_count == count);
    assert (probe->replay_first == (count? first: 0));
    assert (probe->replay_last == last);
    for (int index = 0; index < count; index++) {
        assert (probe->replayed [index] == first + index);
        char expect [32];
        snprintf (expect, sizeof expect, "replay %d", (int) (first + index));
        assert (streq (probe->replayed_content [index], expect));
    }
}

static void
s_test_replay (int port, bool verbose)
{
    pl_config_t *config = s_probe_config (port, "prep", "rep-host");
    pl_config_set (config, "replay-window", "25");
    pl_config_set (config, "replay-ttl-s", "1000");
    probe_t *probe = calloc (1, sizeof (probe_t));
    assert (probe);
    probe->streams = pl_streams_new (config, NULL, NULL, probe);
    assert (probe->streams);
    assert (s_probe_run (probe, 5000, s_probe_connected));

    //  Refused without a callback
    assert (pl_streams_replay (probe->streams, NULL, 0, 5, s_probe_replay_entry,
                               s_probe_replay_done, probe) == -1);
    assert (pl_streams_replay (probe->streams, "rr", 0, 0, s_probe_replay_entry,
                               s_probe_replay_done, probe) == -1);

    for (int index = 1; index <= 30; index++) {
        char content [32];
        snprintf (content, sizeof content, "replay %d", index);
        pl_entry_t message = { .room_id = "rr", .type = "CHAT", .sender_id = "u-r",
                               .sender_name = "R", .content = content, .created_ms = index };
        int rc = pl_streams_append (probe->streams, &message, s_probe_appended, probe);
        assert (rc == 0);
    }
    //  A replay behind the appends on the same link sees all of them
    s_probe_replay (probe, "rr", 10, 5);
    assert (probe->appends_done == 30 && probe->appends_failed == 0);
    s_probe_expect (probe, 11, 5, 30);

    int shard = pl_streams_shard ("rr", 4);
    assert (s_test_query (port, "ZCARD prep:{%d}:idx:rr", shard) == 25);
    long long ttl = s_test_query (port, "TTL prep:{%d}:idx:rr", shard);
    assert (ttl > 990 && ttl <= 1000);

    //  The index keeps the newest replay-window entries: 6..30
    s_probe_replay (probe, "rr", 0, 3);
    s_probe_expect (probe, 6, 3, 30);
    s_probe_replay (probe, "rr", 28, 10);
    s_probe_expect (probe, 29, 2, 30);
    s_probe_replay (probe, "rr", 30, 10);
    s_probe_expect (probe, 0, 0, 30);
    s_probe_replay (probe, "nowhere", 0, 10);
    s_probe_expect (probe, 0, 0, 0);

    //  Trimmed from the stream up to seq 9: members 6..8 are skipped, and
    //  dropped from the index
    char id [ID_MAX];
    s_test_query_string (port, id, sizeof id, 0, "ZRANGEBYSCORE prep:{%d}:idx:rr 9 9", shard);
    assert (*id);
    assert (s_test_query (port, "XTRIM prep:{%d}:stream MINID = %s", shard, id) == 8);
    s_probe_replay (probe, "rr", 0, 5);
    s_probe_expect (probe, 9, 5, 30);
    assert (s_test_query (port, "ZCARD prep:{%d}:idx:rr", shard) == 22);

    //  A hole after the first entry delivered ends the batch; before it, it
    //  is skipped
    s_test_query_string (port, id, sizeof id, 0, "ZRANGEBYSCORE prep:{%d}:idx:rr 15 15", shard);
    assert (s_test_query (port, "XDEL prep:{%d}:stream %s", shard, id) == 1);
    s_probe_replay (probe, "rr", 10, 10);
    s_probe_expect (probe, 11, 4, 30);
    s_probe_replay (probe, "rr", 14, 3);
    s_probe_expect (probe, 16, 3, 30);

    //  Script cache flushed: EVAL fallback
    s_test_query (port, "SCRIPT FLUSH");
    s_probe_replay (probe, "rr", 20, 100);
    s_probe_expect (probe, 21, 10, 30);

    //  Teardown with a replay under way: done once, failed
    probe->replay_called = false;
    probe->replay_count = 0;
    assert (pl_streams_replay (probe->streams, "rr", 0, 5, s_probe_replay_entry,
                               s_probe_replay_done, probe) == 0);
    pl_streams_destroy (&probe->streams);
    assert (probe->replay_called && probe->replay_result == -1);
    if (verbose)
        printf ("   replay: after_seq, max, window, trimmed prefix skipped, hole, NOSCRIPT\n");
    free (probe);
    pl_config_destroy (&config);
}

static bool s_probe_signalled (probe_t *probe) { return probe->signals == 1 && probe->persist_count == 1; }

static void
s_test_signal (int port, bool verbose)
{
    pl_config_t *config = s_probe_config (port, "psig", "sig-host");
    probe_t *probe = calloc (1, sizeof (probe_t));
    assert (probe);
    probe->ack = true;
    probe->streams = pl_streams_new (config, s_probe_fanout, s_probe_persist, probe);
    assert (probe->streams);
    assert (s_probe_run (probe, 5000, s_probe_connected));
    assert (pl_streams_signal (probe->streams, "sig-room", "") == -1);
    assert (pl_streams_signal (probe->streams, "sig-room", "ROOM_CHANGED") == 0);
    pl_entry_t message = { .room_id = "sig-room", .type = "CHAT", .sender_id = "u",
                           .content = "after the signal", .created_ms = 1 };
    pl_streams_append (probe->streams, &message, s_probe_appended, probe);
    assert (s_probe_run (probe, 5000, s_probe_signalled));
    assert (streq (probe->signal_type, "ROOM_CHANGED"));
    assert (streq (probe->signal_room, "sig-room"));
    assert (streq (probe->signal_content, ""));
    s_probe_run (probe, 300, NULL);
    assert (probe->persist_signals == 0);
    assert (probe->fanout_count == 2 && probe->persist_count == 1);
    int shard = pl_streams_shard ("sig-room", 4);
    assert (s_test_query (port, "XLEN psig:{%d}:stream", shard) == 2);
    assert (s_test_query (port, "XPENDING psig:{%d}:stream persist", shard) == 0);
    assert (s_test_query (port, "XPENDING psig:{%d}:stream fanout:sig-host", shard) == 0);
    //  Signals stay out of the replay index
    assert (s_test_query (port, "ZCARD psig:{%d}:idx:sig-room", shard) == 1);
    pl_streams_stats_t stats;
    pl_streams_stats (probe->streams, &stats);
    assert (stats.appended == 1 && stats.fanout_read == 2 && stats.persist_read == 1);
    assert (stats.claimed == 0 && stats.dead_lettered == 0 && stats.append_errors == 0);
    pl_streams_destroy (&probe->streams);
    if (verbose)
        printf ("   signal: fan-out sees seq 0 with its type, persist acks it unseen\n");
    free (probe);
    pl_config_destroy (&config);
}

static bool s_probe_20 (probe_t *probe) { return probe->persist_count == 20; }
static bool s_probe_19 (probe_t *probe) { return probe->persist_count == 19; }
static bool s_probe_dead (probe_t *probe)
{
    pl_streams_stats_t stats;
    pl_streams_stats (probe->streams, &stats);
    return stats.dead_lettered == 1 && pl_streams_persist_inflight (probe->streams) == 0;
}

static void
s_test_claim (int port, bool verbose)
{
    //  Host a reads 20 persist entries and dies without acking any
    pl_config_t *config_a = s_probe_config (port, "pclaim", "host-a");
    probe_t *probe = calloc (1, sizeof (probe_t));
    assert (probe);
    probe->streams = pl_streams_new (config_a, NULL, s_probe_persist, probe);
    assert (probe->streams);
    assert (s_probe_run (probe, 5000, s_probe_connected));
    for (int index = 0; index < 20; index++) {
        char room [16];
        snprintf (room, sizeof room, "claim-%d", index % 5);
        pl_entry_t message = { .room_id = room, .type = "CHAT", .sender_id = "u",
                               .content = "claim me", .created_ms = 1 };
        pl_streams_append (probe->streams, &message, s_probe_appended, probe);
    }
    assert (s_probe_run (probe, 5000, s_probe_20));
    pl_streams_destroy (&probe->streams);
    assert (s_test_total (port, "XPENDING %s persist", "pclaim", 4) == 20);
    //  One of them is deleted meanwhile: its data is gone
    assert (s_test_query (port, "XDEL %s %s", probe->first_stream, probe->first_id) == 1);

    //  Host b claims what a left idle, acks it; the deleted one is acked
    pl_config_t *config_b = s_probe_config (port, "pclaim", "host-b");
    pl_config_set (config_b, "claim-idle-ms", "300");
    pl_config_set (config_b, "claim-interval-ms", "100");
    memset (probe, 0, sizeof *probe);
    probe->ack = true;
    int64_t started = pl_mono_ms ();
    probe->streams = pl_streams_new (config_b, NULL, s_probe_persist, probe);
    assert (probe->streams);
    assert (s_probe_run (probe, 5000, s_probe_19));
    int64_t took = pl_mono_ms () - started;
    s_probe_run (probe, 200, NULL);
    assert (probe->persist_count == 19);
    assert (s_test_total (port, "XPENDING %s persist", "pclaim", 4) == 0);
    pl_streams_stats_t stats;
    pl_streams_stats (probe->streams, &stats);
    assert (stats.claimed == 19 && stats.persist_read == 0);
    if (verbose)
        printf ("   XAUTOCLAIM: 19 entries of a dead consumer claimed in %d ms, "
                "a deleted one acked\n", (int) took);

    //  A store that cannot store: the entry goes to the dead stream
    probe->fail_left = 1;
    pl_entry_t message = { .room_id = "claim-0", .type = "CHAT", .sender_id = "u-d",
                           .sender_name = "Dee", .content = "doomed", .client_msg_id = "cm-d",
                           .created_ms = 77 };
    pl_streams_append (probe->streams, &message, s_probe_appended, probe);
    assert (s_probe_run (probe, 5000, s_probe_dead));
    assert (probe->persist_count == 20);
    assert (s_test_query (port, "XLEN pclaim:dead") == 1);
    assert (s_test_total (port, "XPENDING %s persist", "pclaim", 4) == 0);
    char value [128];
    s_test_stream_field (port, "pclaim:dead", "error", value, sizeof value);
    assert (streq (value, "mongo says no"));
    s_test_stream_field (port, "pclaim:dead", "content", value, sizeof value);
    assert (streq (value, "doomed"));
    s_test_stream_field (port, "pclaim:dead", "entry_id", value, sizeof value);
    assert (streq (value, probe->failed_id));
    s_test_stream_field (port, "pclaim:dead", "stream", value, sizeof value);
    char stream [64];
    snprintf (stream, sizeof stream, "pclaim:{%d}:stream", pl_streams_shard ("claim-0", 4));
    assert (streq (value, stream));
    s_test_stream_field (port, "pclaim:dead", "cmid", value, sizeof value);
    assert (streq (value, "cm-d"));
    s_test_stream_field (port, "pclaim:dead", "failed_at", value, sizeof value);
    assert (atoll (value) > 1700000000000LL);
    pl_streams_destroy (&probe->streams);
    if (verbose)
        printf ("   persist_fail: entry in pclaim:dead with its error, not pending\n");
    free (probe);
    pl_config_destroy (&config_a);
    pl_config_destroy (&config_b);
}

static bool s_probe_all_1000 (probe_t *probe)
{
    return probe->appends_done == 1000 && probe->persist_count == 1000 && probe->fanout_count == 1000;
}

//  Runs until the janitor completed two more rounds (the first may have
//  started before what the caller waits for)
static void
s_probe_janitor_rounds (probe_t *probe)
{
    uint64_t until = probe->streams->janitor_rounds + 2;
    int64_t deadline = pl_mono_ms () + 5000;
    while (probe->streams->janitor_rounds < until && pl_mono_ms () < deadline)
        s_probe_turn (probe, 20);
    assert (probe->streams->janitor_rounds >= until);
}

static void
s_test_janitor (int port, bool verbose)
{
    pl_config_t *config = s_probe_config (port, "pjan", "jan-host");
    pl_config_set (config, "janitor-interval-ms", "100");
    pl_config_set (config, "host-gone-s", "2");
    char number [16];
    snprintf (number, sizeof number, "%d", BULK_READ_COUNT);
    pl_config_set (config, "read-count", number);
    pl_config_set (config, "persist-inflight", "512");
    //  A departed host (no key) on every shard; a live one on shard 0
    for (int shard = 0; shard < BULK_SHARDS; shard++)
        assert (s_test_query (port, "XGROUP CREATE pjan:{%d}:stream fanout:ghost 0 MKSTREAM", shard) == -1);
    s_test_query (port, "XGROUP CREATE pjan:{0}:stream fanout:alive 0");
    s_test_query (port, "SET pjan:host:alive 1 EX 60");
    assert (s_test_has_group (port, "pjan:{0}:stream", "fanout:alive"));

    probe_t *probe = calloc (1, sizeof (probe_t));
    assert (probe);
    probe->ack = true;
    probe->streams = pl_streams_new (config, s_probe_fanout, s_probe_persist, probe);
    assert (probe->streams);
    assert (s_probe_run (probe, 5000, s_probe_connected));
    for (int index = 0; index < 1000; index++) {
        char room [16];
        snprintf (room, sizeof room, "jan-%d", index % 16);
        pl_entry_t message = { .room_id = room, .type = "CHAT", .sender_id = "u",
                               .content = "tidy", .created_ms = 1 };
        pl_streams_append (probe->streams, &message, s_probe_appended, probe);
    }
    assert (s_probe_run (probe, 10000, s_probe_all_1000));
    s_probe_janitor_rounds (probe);
    long long shard_0 = s_test_query (port, "XLEN pjan:{0}:stream");
    for (int shard = 0; shard < BULK_SHARDS; shard++) {
        char stream [64];
        snprintf (stream, sizeof stream, "pjan:{%d}:stream", shard);
        assert (!s_test_has_group (port, stream, "fanout:ghost"));
        assert (s_test_has_group (port, stream, "persist"));
        assert (s_test_has_group (port, stream, "fanout:jan-host"));
        if (shard > 0)
            assert (s_test_query (port, "XLEN %s", stream) <= 1);
    }
    //  The live host's group has read nothing: shard 0 is kept whole
    assert (s_test_has_group (port, "pjan:{0}:stream", "fanout:alive"));
    assert (shard_0 > 100);
    //  Its host goes: its group goes, shard 0 is trimmed too
    s_test_query (port, "DEL pjan:host:alive");
    s_probe_janitor_rounds (probe);
    assert (!s_test_has_group (port, "pjan:{0}:stream", "fanout:alive"));
    assert (s_test_query (port, "XLEN pjan:{0}:stream") <= 1);
    long long ttl = s_test_query (port, "TTL pjan:host:jan-host");
    assert (ttl > 0 && ttl <= 2);
    pl_streams_stats_t stats;
    pl_streams_stats (probe->streams, &stats);
    assert (stats.trimmed >= 1000 - BULK_SHARDS);
    if (verbose)
        printf ("   janitor: departed hosts' groups destroyed, live one kept and "
                "holding trim, streams trimmed to %d entries\n",
                (int) s_test_total (port, "XLEN %s", "pjan", BULK_SHARDS));

    //  Bound: 100,000 appends pipelined, at most BULK_WINDOW ahead of what
    //  persist acked, janitor every 100 ms; after every janitor round the
    //  shard streams together stay under the bound below
    probe->appends_done = probe->persist_count = probe->fanout_count = 0;
    int issued = 0;
    long long longest = 0;
    int samples = 0;
    uint64_t rounds = probe->streams->janitor_rounds;
    int64_t started = pl_mono_ms ();
    while (probe->appends_done < BULK_MESSAGES || probe->persist_count < BULK_MESSAGES
       ||  probe->fanout_count < BULK_MESSAGES) {
        assert (pl_mono_ms () - started < 60000);
        while (issued < BULK_MESSAGES && issued - probe->persist_count < BULK_WINDOW) {
            char room [16];
            snprintf (room, sizeof room, "bulk-%d", issued % 100);
            pl_entry_t message = { .room_id = room, .type = "CHAT", .sender_id = "u",
                                   .sender_name = "Bulk", .content = "a bulk message of some length",
                                   .created_ms = issued };
            int rc = pl_streams_append (probe->streams, &message, s_probe_appended, probe);
            assert (rc == 0);
            issued++;
        }
        s_probe_turn (probe, 20);
        if (probe->streams->janitor_rounds != rounds) {
            rounds = probe->streams->janitor_rounds;
            long long length = s_test_total (port, "XLEN %s", "pjan", BULK_SHARDS);
            if (length > longest)
                longest = length;
            samples++;
        }
    }
    int took = (int) (pl_mono_ms () - started);
    assert (probe->appends_failed == 0);
    s_probe_janitor_rounds (probe);
    long long final = s_test_total (port, "XLEN %s", "pjan", BULK_SHARDS);
    //  Left after a trim: the producer's lead (W) and the read batch not yet
    //  acked (R*S), plus what lands while the round's XPENDING and XTRIM
    //  wait behind pipelined appends on the command link (at most W each):
    //  about 4*R*S with W = R*S; asserted with some room
    int bound = 5 * BULK_READ_COUNT * BULK_SHARDS;
    if (verbose)
        printf ("   bound: %d appends in %d ms, %d janitor rounds, longest %lld entries "
                "(bound %d), %lld at the end\n", BULK_MESSAGES, took, samples, longest,
                bound, final);
    assert (samples > 5);
    assert (longest <= bound);
    assert (final <= BULK_SHARDS);
    pl_streams_stats (probe->streams, &stats);
    assert (stats.appended == 1000 + BULK_MESSAGES);
    assert (stats.persist_read == 1000 + BULK_MESSAGES);
    assert (stats.fanout_read == 1000 + BULK_MESSAGES);
    assert (stats.trimmed >= 1000 + BULK_MESSAGES - BULK_SHARDS);
    assert (probe->max_inflight <= 512);
    pl_streams_destroy (&probe->streams);
    free (probe);
    pl_config_destroy (&config);
}


//  --------------------------------------------------------------------------
//  Selftest of Redis Cluster: three masters on loopback

#define CTEST_NODES     3
#define CTEST_SHARDS    6
#define CTEST_ROOMS     30
#define CTEST_PER_ROOM  20

typedef struct {
    int64_t seq;
    int result;
    bool called;
} ctest_slot_t;

static void
s_ctest_appended (void *arg, int result, int64_t seq, const char *error)
{
    ctest_slot_t *slot = (ctest_slot_t *) arg;
    (void) error;
    assert (!slot->called);
    slot->called = true;
    slot->result = result;
    slot->seq = seq;
}

//  Integer reply of the cluster node that owns key (others answer MOVED)
static long long
s_ctest_query (int *ports, const char *format, const char *key)
{
    for (int index = 0; index < CTEST_NODES; index++) {
        long long value = s_test_query (ports [index], format, key);
        if (value >= 0)
            return value;
    }
    return -1;
}

//  Port of the node that serves key
static int
s_ctest_owner (int *ports, const char *key)
{
    for (int index = 0; index < CTEST_NODES; index++)
        if (s_test_query (ports [index], "EXISTS %s", key) >= 0)
            return ports [index];
    return -1;
}

static bool
s_ctest_all_ok (int *ports)
{
    for (int index = 0; index < CTEST_NODES; index++) {
        redisContext *context = redisConnect ("127.0.0.1", ports [index]);
        assert (context && !context->err);
        redisReply *reply = redisCommand (context, "CLUSTER INFO");
        bool ok = reply && reply->type == REDIS_REPLY_STRING
               && strstr (reply->str, "cluster_state:ok");
        freeReplyObject (reply);
        redisFree (context);
        if (!ok)
            return false;
    }
    return true;
}

//  Moves one slot from one master to another the way redis-cli does:
//  IMPORTING, MIGRATING, MIGRATE of its keys, then SETSLOT NODE everywhere
static void
s_ctest_move_slot (int *ports, int slot, int from, int to)
{
    char from_id [64], to_id [64];
    s_test_query_string (from, from_id, sizeof from_id, 0, "CLUSTER MYID");
    s_test_query_string (to, to_id, sizeof to_id, 0, "CLUSTER MYID");
    assert (*from_id && *to_id);
    redisContext *source = redisConnect ("127.0.0.1", from);
    redisContext *target = redisConnect ("127.0.0.1", to);
    assert (source && !source->err && target && !target->err);
    redisReply *reply = redisCommand (target, "CLUSTER SETSLOT %d IMPORTING %s", slot, from_id);
    assert (reply && reply->type == REDIS_REPLY_STATUS);
    freeReplyObject (reply);
    reply = redisCommand (source, "CLUSTER SETSLOT %d MIGRATING %s", slot, to_id);
    assert (reply && reply->type == REDIS_REPLY_STATUS);
    freeReplyObject (reply);
    int moved = 0;
    while (true) {
        redisReply *keys = redisCommand (source, "CLUSTER GETKEYSINSLOT %d 100", slot);
        assert (keys && keys->type == REDIS_REPLY_ARRAY);
        size_t count = keys->elements;
        for (size_t index = 0; index < count; index++) {
            reply = redisCommand (source, "MIGRATE 127.0.0.1 %d %s 0 5000", to,
                                  keys->element [index]->str);
            assert (reply && reply->type == REDIS_REPLY_STATUS);
            freeReplyObject (reply);
            moved++;
        }
        freeReplyObject (keys);
        if (count == 0)
            break;
    }
    assert (moved > 0);
    for (int index = 0; index < CTEST_NODES; index++) {
        long long rc = s_test_query (ports [index], "CLUSTER SETSLOT %d NODE %s", slot, to_id);
        (void) rc;
    }
    redisFree (source);
    redisFree (target);
}

static void
s_ctest_append_room (probe_t *probe, ctest_slot_t *slots, const char *room, int first, int count)
{
    for (int index = 0; index < count; index++) {
        char content [32];
        snprintf (content, sizeof content, "replay %d", first + index);
        pl_entry_t message = { .room_id = room, .type = "CHAT", .sender_id = "u-r",
                               .sender_name = "R", .content = content, .created_ms = index };
        slots [index] = (ctest_slot_t) { 0 };
        int rc = pl_streams_append (probe->streams, &message, s_ctest_appended, &slots [index]);
        assert (rc == 0);
    }
}

static bool
s_probe_cluster_done (probe_t *probe)
{
    return probe->appends_done == probe->fanout_count
        && probe->appends_done == probe->persist_count
        && pl_streams_persist_inflight (probe->streams) == 0;
}

static void
s_test_cluster (bool verbose)
{
    int64_t started = pl_mono_ms ();
    int ports [CTEST_NODES];
    pid_t pids [CTEST_NODES];
    char dirs [CTEST_NODES][64];
    for (int index = 0; index < CTEST_NODES; index++) {
        snprintf (dirs [index], sizeof dirs [index], "/tmp/pl_streams_cluster_XXXXXX");
        char *made = mkdtemp (dirs [index]);
        assert (made);
        ports [index] = s_test_free_cluster_port ();
        pids [index] = s_test_redis_start (ports [index], dirs [index], true);
    }
    char command [512];
    snprintf (command, sizeof command, "redis-cli --cluster create 127.0.0.1:%d 127.0.0.1:%d "
              "127.0.0.1:%d --cluster-replicas 0 --cluster-yes >/dev/null 2>&1",
              ports [0], ports [1], ports [2]);
    int rc = system (command);
    assert (rc == 0);
    for (int attempt = 0; attempt < 500 && !s_ctest_all_ok (ports); attempt++)
        usleep (20000);
    assert (s_ctest_all_ok (ports));
    if (verbose)
        printf ("   cluster of %d masters up in %d ms\n", CTEST_NODES,
                (int) (pl_mono_ms () - started));

    //  Key slots as Redis computes them, hash tags included
    for (int shard = 0; shard < CTEST_SHARDS; shard++) {
        char key [64];
        snprintf (key, sizeof key, "pclu:{%d}:stream", shard);
        assert (s_test_query (ports [0], "CLUSTER KEYSLOT %s", key) == s_keyslot (key));
        snprintf (key, sizeof key, "pclu:{%d}:dedup:room:u:c", shard);
        assert (s_test_query (ports [0], "CLUSTER KEYSLOT %s", key) == s_keyslot (key));
    }
    assert (s_test_query (ports [0], "CLUSTER KEYSLOT %s", "pclu:dead") == s_keyslot ("pclu:dead"));
    assert (s_test_query (ports [0], "CLUSTER KEYSLOT %s", "a{}b") == s_keyslot ("a{}b"));
    assert (s_test_query (ports [0], "CLUSTER KEYSLOT %s", "{x}{y}") == s_keyslot ("{x}{y}"));

    //  Two seeds, the first one wrong: the other gives the map
    pl_config_t *config = pl_config_new_default ();
    assert (config);
    char url [128];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d,127.0.0.1:%d", s_test_free_port (), ports [1]);
    pl_config_set (config, "redis-url", url);
    rc = pl_config_set (config, "redis-cluster", "true");
    assert (rc == 0);
    char number [16];
    snprintf (number, sizeof number, "%d", CTEST_SHARDS);
    pl_config_set (config, "shards", number);
    pl_config_set (config, "read-count", "50");
    pl_config_set (config, "block-ms", "100");
    pl_config_set (config, "persist-inflight", "1000");
    pl_config_set (config, "key-prefix", "pclu");
    pl_config_set (config, "host-id", "clu-host");
    probe_t *probe = calloc (1, sizeof (probe_t));
    assert (probe);
    probe->ack = true;
    probe->streams = pl_streams_new (config, s_probe_fanout, s_probe_persist, probe);
    assert (probe->streams);
    assert (s_probe_run (probe, 10000, s_probe_connected));
    assert (probe->streams->node_count == CTEST_NODES);

    //  Appends over many rooms, pipelined to every master at once
    ctest_slot_t *slots = calloc (CTEST_ROOMS * (CTEST_PER_ROOM + 10), sizeof (ctest_slot_t));
    assert (slots);
    for (int room = 0; room < CTEST_ROOMS; room++) {
        char name [32];
        snprintf (name, sizeof name, "croom-%d", room);
        s_ctest_append_room (probe, slots + room * (CTEST_PER_ROOM + 10), name, 1, CTEST_PER_ROOM);
    }
    int total = CTEST_ROOMS * CTEST_PER_ROOM;
    probe->appends_done = total;        //  s_ctest_appended does not count
    assert (s_probe_run (probe, 10000, s_probe_cluster_done));
    for (int room = 0; room < CTEST_ROOMS; room++)
        for (int index = 0; index < CTEST_PER_ROOM; index++) {
            ctest_slot_t *slot = &slots [room * (CTEST_PER_ROOM + 10) + index];
            assert (slot->called && slot->result == 0 && slot->seq == index + 1);
        }
    //  The shard streams are spread over the masters
    int owners [CTEST_NODES] = { 0 };
    long long entries = 0;
    for (int shard = 0; shard < CTEST_SHARDS; shard++) {
        char key [64];
        snprintf (key, sizeof key, "pclu:{%d}:stream", shard);
        int owner = s_ctest_owner (ports, key);
        for (int index = 0; index < CTEST_NODES; index++)
            if (owner == ports [index])
                owners [index]++;
        entries += s_ctest_query (ports, "XLEN %s", key);
        if (verbose)
            printf ("   %s: slot %d on :%d\n", key, s_keyslot (key), owner);
    }
    assert (entries == total);
    int used = 0;
    for (int index = 0; index < CTEST_NODES; index++)
        used += owners [index] > 0;
    assert (used >= 2);
    assert (probe->fanout_count == total && probe->persist_count == total);
    if (verbose)
        printf ("   %d appends over %d rooms gapless, fan-out and persist got all, "
                "streams on %d masters\n", total, CTEST_ROOMS, used);

    //  Replay from the room's master
    s_probe_replay (probe, "croom-7", 5, 8);
    s_probe_expect (probe, 6, 8, CTEST_PER_ROOM);

    //  Move the slot of one shard to another master: MOVED is followed
    int moved_shard = pl_streams_shard ("croom-3", CTEST_SHARDS);
    char moved_key [64];
    snprintf (moved_key, sizeof moved_key, "pclu:{%d}:stream", moved_shard);
    int from = s_ctest_owner (ports, moved_key);
    int to = from == ports [0]? ports [1]: ports [0];
    pl_streams_stats_t before;
    pl_streams_stats (probe->streams, &before);
    s_ctest_move_slot (ports, s_keyslot (moved_key), from, to);
    assert (s_ctest_owner (ports, moved_key) == to);
    ctest_slot_t *more = slots + 3 * (CTEST_PER_ROOM + 10) + CTEST_PER_ROOM;
    s_ctest_append_room (probe, more, "croom-3", CTEST_PER_ROOM + 1, 10);
    probe->appends_done += 10;
    assert (s_probe_run (probe, 10000, s_probe_cluster_done));
    for (int index = 0; index < 10; index++)
        assert (more [index].called && more [index].result == 0
             && more [index].seq == CTEST_PER_ROOM + 1 + index);
    pl_streams_stats_t after;
    pl_streams_stats (probe->streams, &after);
    assert (after.redirects > before.redirects);
    assert (after.slot_map_loads > before.slot_map_loads);
    s_probe_replay (probe, "croom-3", CTEST_PER_ROOM - 2, 5);
    s_probe_expect (probe, CTEST_PER_ROOM - 1, 5, CTEST_PER_ROOM + 10);
    assert (s_probe_run (probe, 5000, s_probe_connected));
    if (verbose)
        printf ("   slot %d moved :%d -> :%d: %" PRIu64 " redirects followed, map loaded "
                "again, appends and readers go on\n", s_keyslot (moved_key), from, to,
                after.redirects - before.redirects);

    //  Dead letter: XADD to the dead stream's master, then XACK
    probe->fail_left = 1;
    ctest_slot_t dead_slot [1];
    s_ctest_append_room (probe, dead_slot, "croom-9", CTEST_PER_ROOM + 1, 1);
    probe->appends_done++;
    assert (s_probe_run (probe, 10000, s_probe_cluster_done));
    pl_streams_stats (probe->streams, &after);
    assert (after.dead_lettered == 1);
    assert (s_ctest_query (ports, "XLEN %s", "pclu:dead") == 1);
    char dead_stream [64];
    snprintf (dead_stream, sizeof dead_stream, "pclu:{%d}:stream",
              pl_streams_shard ("croom-9", CTEST_SHARDS));
    assert (s_ctest_query (ports, "XPENDING %s persist", dead_stream) == 0);
    //  Host key on its own master
    assert (s_ctest_query (ports, "EXISTS %s", "pclu:host:clu-host") == 1);

    pl_streams_destroy (&probe->streams);
    free (probe);
    free (slots);
    pl_config_destroy (&config);
    for (int index = 0; index < CTEST_NODES; index++) {
        s_test_redis_stop (pids [index]);
        nftw (dirs [index], s_test_rm, 8, FTW_DEPTH | FTW_PHYS);
    }
    if (verbose)
        printf ("   cluster part took %d ms\n", (int) (pl_mono_ms () - started));
}

void
pl_streams_test (bool verbose)
{
    printf (" * pl_streams: ");
    if (verbose)
        printf ("\n");
    pl_log_set_verbose (verbose);

    //  Shard mapping: the CRC16 of Redis Cluster
    assert (s_crc16 ("123456789", 9) == 0x31C3);
    assert (pl_streams_shard ("123456789", 16384) == 0x31C3);
    assert (pl_streams_shard ("123456789", 1) == 0);
    assert (s_crc16 ("", 0) == 0);
    int per_shard [8] = { 0 };
    for (int index = 0; index < 200; index++) {
        char room [32];
        snprintf (room, sizeof room, "room-%d", index);
        int shard = pl_streams_shard (room, 8);
        assert (shard >= 0 && shard < 8);
        assert (shard == pl_streams_shard (room, 8));
        per_shard [shard]++;
    }
    for (int shard = 0; shard < 8; shard++)
        assert (per_shard [shard] > 5);

    //  URL parsing
    {
        pl_streams_t probe = { 0 };
        assert (s_parse_url (&probe, "redis://h.example:7000/2") == 0);
        assert (streq (probe.host, "h.example") && probe.port == 7000 && probe.db == 2);
        free (probe.host);
        probe = (pl_streams_t) { 0 };
        assert (s_parse_url (&probe, "redis://:se@cret@[::1]") == 0);
        assert (streq (probe.host, "::1") && probe.port == 6379 && streq (probe.password, "se@cret"));
        free (probe.host);
        free (probe.password);
        probe = (pl_streams_t) { 0 };
        assert (s_parse_url (&probe, "redis://host:99999") == -1);
        free (probe.host);
        //  Cluster seeds
        probe = (pl_streams_t) { 0 };
        assert (s_parse_seeds (&probe, "redis://:pw@10.0.0.1:7000,[::1]:7001,h3") == 0);
        assert (probe.seed_count == 3 && streq (probe.password, "pw"));
        assert (streq (probe.seed_hosts [1], "::1") && probe.seed_ports [1] == 7001);
        assert (streq (probe.seed_hosts [2], "h3") && probe.seed_ports [2] == 6379);
        assert (streq (probe.host, "10.0.0.1") && probe.port == 7000);
        for (int index = 0; index < probe.seed_count; index++)
            free (probe.seed_hosts [index]);
        free (probe.host);
        free (probe.password);
        probe = (pl_streams_t) { 0 };
        assert (s_parse_seeds (&probe, "redis://h1:7000/2") == -1);
        free (probe.host);
        //  Key slots: hash tags as Redis Cluster reads them
        assert (s_keyslot ("123456789") == 0x31C3 % CLUSTER_SLOTS);
        assert (s_keyslot ("p:{7}:stream") == s_keyslot ("7"));
        assert (s_keyslot ("{}x") == s_crc16 ("{}x", 3) % CLUSTER_SLOTS);
    }

    //  Our own Redis
    char dir [] = "/tmp/pl_streams_test_XXXXXX";
    char *made = mkdtemp (dir);
    assert (made);
    int port = s_test_free_port ();
    pid_t redis = s_test_redis_start (port, dir, false);

    pl_config_t *config = pl_config_new_default ();
    assert (config);
    char url [64];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d", port);
    char number [16];
    int rc = pl_config_set (config, "redis-url", url);
    assert (rc == 0);
    snprintf (number, sizeof number, "%d", TEST_SHARDS);
    pl_config_set (config, "shards", number);
    snprintf (number, sizeof number, "%d", TEST_INFLIGHT);
    pl_config_set (config, "persist-inflight", number);
    pl_config_set (config, "read-count", "50");
    pl_config_set (config, "block-ms", "200");
    pl_config_set (config, "key-prefix", "ptest");
    pl_config_set (config, "host-id", "test-host");

    test_t *test = calloc (1, sizeof (test_t));
    assert (test);
    test->verbose = verbose;
    test->to_ack = zlistx_new ();
    zlistx_set_destructor (test->to_ack, s_test_string_destroy);
    zlistx_set_duplicator (test->to_ack, s_test_string_dup);
    test->first_ids = zhashx_new ();
    test->late_fanout = -1;

    pl_streams_t *streams = pl_streams_new (config, s_test_on_fanout, s_test_on_persist, test);
    assert (streams);
    test->streams = streams;
    pl_streams_destroy (&test->streams);        //  destroy is safe twice
    pl_streams_destroy (&test->streams);
    assert (test->streams == NULL);
    test->streams = pl_streams_new (config, s_test_on_fanout, s_test_on_persist, test);
    assert (test->streams);
    assert (s_test_run (test, 5000, s_test_is_connected));

    //  2000 appends over 3 rooms, all queued before the first poll
    for (int index = 0; index < TEST_MESSAGES; index++) {
        pl_entry_t message;
        char content [64], sender [16], name [16], cmid [16];
        s_test_message (index, &message, content, sender, name, cmid);
        test->slots [index] = (test_slot_t) { .test = test, .index = index };
        rc = pl_streams_append (test->streams, &message, s_test_done, &test->slots [index]);
        assert (rc == 0);
    }
    assert (test->done_count == 0);             //  never called from append
    assert (s_test_run (test, 20000, s_test_all_done));
    for (int index = 0; index < TEST_MESSAGES; index++) {
        assert (test->slots [index].result == 0);
        assert (test->slots [index].seq == index / TEST_ROOMS + 1);
    }
    if (verbose)
        printf ("   2000 appends: seqs gapless and in order\n");

    //  A duplicate clientMsgId gives the original seq and no entry
    {
        pl_entry_t message;
        char content [64], sender [16], name [16], cmid [16];
        s_test_message (7, &message, content, sender, name, cmid);
        test_slot_t *slot = &test->slots [TEST_MESSAGES];
        *slot = (test_slot_t) { .test = test, .index = -1 };
        pl_streams_append (test->streams, &message, s_test_done, slot);
        while (!slot->called)
            s_test_turn (test, 20);
        assert (slot->result == 1);
        assert (slot->seq == 7 / TEST_ROOMS + 1);
        //  Same clientMsgId from another sender is a new message
        slot = &test->slots [TEST_MESSAGES + 1];
        *slot = (test_slot_t) { .test = test, .index = -1 };
        message.sender_id = "someone-else";
        message.room_id = "other-room";
        pl_streams_append (test->streams, &message, s_test_done, slot);
        while (!slot->called)
            s_test_turn (test, 20);
        assert (slot->result == 0 && slot->seq == 1);
        long long total = 0;
        for (int shard = 0; shard < TEST_SHARDS; shard++)
            total += s_test_query (port, "XLEN ptest:{%d}:stream", shard);
        assert (total == TEST_MESSAGES + 1);
        assert (s_test_query (port, "TTL ptest:{%d}:dedup:room-b:user-2:cm-7",
                              pl_streams_shard ("room-b", TEST_SHARDS)) > 86000);
    }

    //  Fan-out delivers all once; persist stops at the in-flight limit
    s_test_run (test, 20000, s_test_all_fanned_out);
    if (verbose) printf ("   fanout %d persist %d\n", test->fanout_count, test->persist_count);
    assert (s_test_all_fanned_out (test));
    s_test_run (test, 500, NULL);
    for (int index = 0; index < TEST_MESSAGES; index++)
        assert (test->fanout_seen [index % TEST_ROOMS][index / TEST_ROOMS + 1] == 1);
    assert (test->fanout_count == TEST_MESSAGES + 1);   //  + other-room
    assert (test->persist_count <= TEST_INFLIGHT);
    assert (pl_streams_persist_inflight (test->streams) == (size_t) test->persist_count);
    assert (test->max_inflight <= TEST_INFLIGHT);
    assert (test->bad_fields == 0);
    int first_persisted = test->persist_count;
    if (verbose)
        printf ("   fan-out got all once, persist held at %d in flight\n", first_persisted);

    //  Re-created: the unacked persist entries come again (pending re-read),
    //  fan-out entries were acked and do not
    pl_streams_destroy (&test->streams);
    assert (test->slots [TEST_MESSAGES].called);
    test->ack_mode = true;
    test->ack_in_callback = true;
    test->streams = pl_streams_new (config, s_test_on_fanout, s_test_on_persist, test);
    assert (test->streams);
    assert (s_test_run (test, 30000, s_test_all_persisted));
    assert (test->first_redelivered == first_persisted);
    assert (test->fanout_count == TEST_MESSAGES + 1);
    assert (test->max_inflight <= TEST_INFLIGHT);
    assert (test->bad_fields == 0);
    for (int index = 0; index < TEST_MESSAGES; index++)
        assert (test->persist_seen [index % TEST_ROOMS][index / TEST_ROOMS + 1] >= 1);
    s_test_run (test, 300, NULL);
    assert (test->persist_count == TEST_MESSAGES + 1 + first_persisted);
    if (verbose)
        printf ("   pending persist entries read again, all %d persisted\n", TEST_MESSAGES);

    //  Acked: a new instance reads nothing again
    pl_streams_destroy (&test->streams);
    for (int shard = 0; shard < TEST_SHARDS; shard++) {
        assert (s_test_query (port, "XPENDING ptest:{%d}:stream persist", shard) == 0);
        assert (s_test_query (port, "XPENDING ptest:{%d}:stream fanout:test-host", shard) == 0);
    }
    int persisted = test->persist_count;
    test->streams = pl_streams_new (config, s_test_on_fanout, s_test_on_persist, test);
    assert (s_test_run (test, 5000, s_test_is_connected));
    s_test_run (test, 600, NULL);
    assert (test->persist_count == persisted);
    assert (test->fanout_count == TEST_MESSAGES + 1);

    //  Redis restarts (empty): appends fail meanwhile, then work again
    test->late_fanout = 0;
    s_test_redis_stop (redis);
    assert (s_test_run (test, 5000, s_test_is_disconnected));
    {
        pl_entry_t message = { .room_id = "late", .type = "CHAT", .sender_id = "u",
                               .content = "lost", .created_ms = 1 };
        test_slot_t *slot = &test->slots [TEST_MESSAGES + 2];
        *slot = (test_slot_t) { .test = test, .index = -1 };
        rc = pl_streams_append (test->streams, &message, s_test_done, slot);
        assert (rc == 0);
        assert (!slot->called);
        while (!slot->called)
            s_test_turn (test, 20);
        assert (slot->result == -1);
    }
    s_test_run (test, 300, NULL);
    redis = s_test_redis_start (port, dir, false);
    assert (s_test_run (test, 10000, s_test_is_connected));
    int expect [10];
    for (int index = 0; index < 10; index++) {
        pl_entry_t message = { .room_id = "late", .type = "CHAT", .sender_id = "u",
                               .content = "after restart", .client_msg_id = "",
                               .created_ms = 2 };
        expect [index] = index + 1;
        rc = pl_streams_append (test->streams, &message, s_test_late_append, &expect [index]);
        assert (rc == 0);
    }
    assert (s_test_run (test, 10000, s_test_late_all));
    pl_streams_stats_t stats;
    pl_streams_stats (test->streams, &stats);
    assert (stats.reconnects == 3);             //  command, fan-out, persist
    assert (stats.appended == 10 && stats.append_errors == 1);
    if (verbose)
        printf ("   reconnected after a Redis restart, appends and reads work\n");

    //  NOSCRIPT: the script cache is flushed, appends fall back to EVAL
    s_test_query (port, "SCRIPT FLUSH");
    s_test_late_done = 0;
    test->late_fanout = test->late_persist = 0;
    for (int index = 0; index < 10; index++) {
        expect [index] = index + 11;
        pl_entry_t message = { .room_id = "late", .type = "CHAT", .sender_id = "u",
                               .content = "after flush", .created_ms = 3 };
        pl_streams_append (test->streams, &message, s_test_late_append, &expect [index]);
    }
    assert (s_test_run (test, 10000, s_test_late_all));

    //  Teardown with appends still queued: each gets its callback once
    for (int index = 0; index < 5; index++) {
        pl_entry_t message;
        char content [64], sender [16], name [16], cmid [16];
        s_test_message (index, &message, content, sender, name, cmid);
        test_slot_t *slot = &test->slots [TEST_MESSAGES + 3 + index];
        *slot = (test_slot_t) { .test = test, .index = -1 };
        pl_streams_append (test->streams, &message, s_test_done, slot);
    }
    pl_streams_destroy (&test->streams);
    for (int index = 0; index < 5; index++)
        assert (test->slots [TEST_MESSAGES + 3 + index].called);
    if (verbose)
        printf ("   NOSCRIPT fallback, teardown callbacks\n");

    s_test_replay (port, verbose);
    s_test_signal (port, verbose);
    s_test_claim (port, verbose);
    s_test_janitor (port, verbose);
    s_test_cluster (verbose);

    s_test_redis_stop (redis);
    nftw (dir, s_test_rm, 8, FTW_DEPTH | FTW_PHYS);
    zlistx_destroy (&test->to_ack);
    zhashx_destroy (&test->first_ids);
    free (test);
    pl_config_destroy (&config);
    printf ("OK\n");
}
