/*  =========================================================================
    pl_streams_append - the Lua scripts and the requests that run them:
    appends (dedup, seq, XADD, replay index), replays, and signals

    Scripts go as EVALSHA, pipelined on the command link right behind the
    SCRIPT LOAD that every new command link sends first; a NOSCRIPT reply
    (cache flushed) resends that request as EVAL and loads the script
    again. A request that cannot be sent fails from the next
    pl_streams_handle, never inside the call that made it.

    With redis-min-replicas, an append's answer waits on the link it came
    from; once a turn, each such link gets one WAIT for all of them, and
    the callbacks run with its answer: a WAIT on a connection covers every
    write made on it before. Replies of one link come in order, so a WAIT
    sent after an answer was read always follows that write.
    =========================================================================
*/
#include "pl_streams_internal.h"

#include <assert.h>
#include <ctype.h>
#include <inttypes.h>

//  Dedup, seq, XADD and the room's replay index in one script, so a
//  duplicate never gets a seq, a seq never goes unused and the index never
//  misses an entry. All keys come in KEYS, all share one hash tag.
//  The floor (ARGV[11]) keeps the room's counter from going back when
//  Redis lost writes: -1 asks that the counter exist (else nothing is
//  appended, outcome 3: the caller finds the room's highest stored seq and
//  appends again with it); a floor >= 0 raises the counter to it, or to the
//  newest seq of the room's replay index. A counter that is behind is
//  raised only once the caller restored the dedup keys of the messages in
//  between (ARGV[12] = 1; else nothing is appended, outcome 5 with the
//  counter as seq), then counts on (outcome 4).
//  KEYS: stream, seq hash, index, [dedup key]. ARGV: room type sender name
//  content cmid created dedup-ttl window index-ttl floor restored.
//  Returns {seq, entry id, outcome}: 0 appended, 1 duplicate, 3 no counter,
//  4 appended after raising the counter, 5 counter behind.
static const char *s_append_script =
    "local dedup = KEYS[4]\n"
    "if dedup then\n"
    "  local seen = redis.call('GET', dedup)\n"
    "  if seen then return {tonumber(seen), '', 1} end\n"
    "end\n"
    "local floor = tonumber(ARGV[11])\n"
    "local outcome = 0\n"
    "if floor < 0 then\n"
    "  if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return {0, '', 3} end\n"
    "else\n"
    "  local top = redis.call('ZREVRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2]\n"
    "  if top and tonumber(top) > floor then floor = tonumber(top) end\n"
    "  local current = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')\n"
    "  if floor > current then\n"
    "    if ARGV[12] ~= '1' then return {current, '', 5} end\n"
    "    redis.call('HSET', KEYS[2], ARGV[1], floor)\n"
    "    outcome = 4\n"
    "  end\n"
    "end\n"
    "local seq = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)\n"
    "local id = redis.call('XADD', KEYS[1], '*', 'v', '1', 'room', ARGV[1],"
    " 'seq', tostring(seq), 'type', ARGV[2], 'sender', ARGV[3], 'name', ARGV[4],"
    " 'content', ARGV[5], 'cmid', ARGV[6], 'created', ARGV[7])\n"
    "if dedup then redis.call('SET', dedup, seq, 'EX', ARGV[8]) end\n"
    "redis.call('ZADD', KEYS[3], seq, id)\n"
    "redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -1 - tonumber(ARGV[9]))\n"
    "redis.call('EXPIRE', KEYS[3], ARGV[10])\n"
    "return {seq, id, outcome}\n";

//  A READ moves the reader's cursor in the room: refused past the room's
//  last seq, a no-op when not forward, else cached (per room, expiring
//  read-cache-ttl-s after the last READ) and XADDed as an entry of type
//  READ whose seq is the new cursor. Not in the replay index: it is not a
//  message. The cache only keeps READ_STATUS from going backwards;
//  MongoDB's $max is the truth.
//  KEYS: stream, seq hash, the room's cursors. ARGV: room reader name seq
//  created ttl. Returns {seq, entry id, 0} moved, {cursor, '', 1} not
//  forward, {last seq, '', 2} past the end.
static const char *s_read_script =
    "local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') or 0\n"
    "local want = tonumber(ARGV[4])\n"
    "if want > last then return {last, '', 2} end\n"
    "local cursor = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0') or 0\n"
    "if want <= cursor then return {cursor, '', 1} end\n"
    "redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])\n"
    "redis.call('EXPIRE', KEYS[3], ARGV[6])\n"
    "local id = redis.call('XADD', KEYS[1], '*', 'v', '1', 'room', ARGV[1],"
    " 'seq', ARGV[4], 'type', 'READ', 'sender', ARGV[2], 'name', ARGV[3], 'created', ARGV[5])\n"
    "return {want, id, 0}\n";

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


//  --------------------------------------------------------------------------
//  Scripts

int
pl_streams_append_init (pl_streams_t *self)
{
    script_t *scripts = self->scripted.scripts;
    scripts [SCRIPT_APPEND] = (script_t) { .name = "append", .text = s_append_script };
    scripts [SCRIPT_READ] = (script_t) { .name = "read", .text = s_read_script };
    scripts [SCRIPT_REPLAY] = (script_t) { .name = "replay", .text = s_replay_script };
    for (int index = 0; index < SCRIPT_COUNT; index++) {
        script_t *script = &scripts [index];
        zdigest_t *digest = zdigest_new ();
        if (!digest)
            return -1;
        zdigest_update (digest, (const byte *) script->text, strlen (script->text));
        snprintf (script->sha, sizeof script->sha, "%s", zdigest_string (digest));
        zdigest_destroy (&digest);
        for (char *scan = script->sha; *scan; scan++)
            *scan = (char) tolower ((unsigned char) *scan);
    }
    return 0;
}

static void
s_script_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    script_t *script = (script_t *) privdata;
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
    return pl_streams_link_send (conn, s_script_reply, script, 3, argv, NULL);
}

void
pl_streams_append_load_scripts (conn_t *conn)
{
    for (int index = 0; index < SCRIPT_COUNT; index++)
        s_script_load (conn, &conn->owner->scripted.scripts [index]);
}


//  --------------------------------------------------------------------------
//  Requests

//  A request with a copy of its EVAL form, for the room's shard. argv [1],
//  the script's text, is not copied: the scripts are static, and the text
//  goes only after a NOSCRIPT (a copy of 1 KB per message was 10 % of the
//  bridge's CPU)
static op_t *
s_op_new (pl_streams_t *self, op_kind_t kind, script_id_t script, int shard, void *arg,
          int argc, const char **argv)
{
    assert (argc > 2 && argv [1] == self->scripted.scripts [script].text);
    size_t total = sizeof (op_t) + (size_t) argc * (sizeof (char *) + sizeof (size_t));
    for (int index = 0; index < argc; index++)
        total += index == 1? 0: strlen (argv [index]) + 1;
    op_t *op = calloc (1, total);
    if (!op)
        return NULL;
    op->owner = self;
    op->kind = kind;
    op->script = &self->scripted.scripts [script];
    op->shard = shard;
    op->arg = arg;
    op->argc = argc;
    op->argv = (const char **) (op + 1);
    op->argvlen = (size_t *) (op->argv + argc);
    char *text = (char *) (op->argvlen + argc);
    for (int index = 0; index < argc; index++) {
        if (index == 1) {
            op->argv [index] = argv [index];     //  its length: s_op_send
            continue;
        }
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
    if (result == -2)
        self->stats.unreplicated++;
    else
    if (result == -1)
        self->stats.append_errors++;
    //  2 (a READ refused), 3 (no counter) and 5 (behind) are answers, not
    //  errors
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
    scripted_t *scripted = &self->scripted;
    op->error = error;
    op->next = NULL;
    if (scripted->failed_tail)
        scripted->failed_tail->next = op;
    else
        scripted->failed_head = op;
    scripted->failed_tail = op;
    self->dirty = true;
}

void
pl_streams_append_run_failed (pl_streams_t *self)
{
    scripted_t *scripted = &self->scripted;
    while (scripted->failed_head) {
        op_t *op = scripted->failed_head;
        scripted->failed_head = op->next;
        if (!scripted->failed_head)
            scripted->failed_tail = NULL;
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
    else
        argvlen [1] = strlen (argv [1]);
    //  An append that only asks the counter to exist holds on the master
    //  whose counter was checked: after a MOVED it is checked again
    return (op->pinned? pl_streams_cluster_send_pinned: pl_streams_cluster_send)
           (self, self->keys.stream [op->shard], s_op_reply, op, op->argc, argv, argvlen);
}

//  Send by SHA; a request that cannot go fails from the next turn
static void
s_op_start (pl_streams_t *self, op_t *op)
{
    if (s_op_send (self, op, true))
        s_op_fail_later (self, op, "redis not connected");
}

//  The primary's answer: the caller hears it now, or with redis-min-replicas
//  once the link's next WAIT answers (pl_streams_append_flush_waits)
static void
s_append_answered (conn_t *conn, op_t *op, int result, int64_t seq)
{
    pl_streams_t *self = op->owner;
    if (self->settings.min_replicas == 0) {
        s_append_finish (op, result, seq, NULL);
        return;
    }
    op->result = result;
    op->seq = seq;
    op->next = NULL;
    if (conn->unconfirmed_tail)
        conn->unconfirmed_tail->next = op;
    else
        conn->unconfirmed_head = op;
    conn->unconfirmed_tail = op;
    self->dirty = true;
}

static void
s_append_result (conn_t *conn, op_t *op, redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
    ||  reply->element [0]->type != REDIS_REPLY_INTEGER
    ||  reply->element [2]->type != REDIS_REPLY_INTEGER) {
        pl_log_error ("redis append: malformed reply (type %d)", reply->type);
        s_append_finish (op, -1, 0, "malformed reply from redis");
        return;
    }
    int64_t seq = reply->element [0]->integer;
    long long outcome = reply->element [2]->integer;
    if (outcome == 4) {
        op->owner->stats.counters_raised++;
        pl_log_warning ("redis: a room's seq counter was behind what is stored; raised to %" PRId64,
                        seq - 1);
        outcome = 0;
    }
    if (outcome == 3) {
        op->owner->stats.counters_missing++;
        s_append_finish (op, 3, 0, NULL);       //  nothing written: no WAIT
        return;
    }
    if (outcome == 5) {
        s_append_finish (op, 5, seq, NULL);     //  nothing written either
        return;
    }
    s_append_answered (conn, op, outcome == 1 || outcome == 2? (int) outcome: 0, seq);
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
        if (pl_streams_readers_parse_entry (self, op->shard, entries->element [index], &message)
        ||  message.seq < 1) {
            pl_log_warning ("redis replay: malformed entry in %s", self->keys.stream [op->shard]);
            break;              //  what is delivered stays consecutive
        }
        if (!first_seq)
            first_seq = message.seq;
        op->on_entry (op->arg, &message);
    }
    op->replay_done (op->arg, 0, first_seq, reply->element [0]->integer);
    free (op);
}

//  Script cache flushed: this request goes as EVAL, and the script is
//  loaded once more so later requests find it again. Returns 0 when resent.
static int
s_op_noscript (conn_t *conn, op_t *op)
{
    op->retried = true;
    if (!op->script->reloading) {
        pl_log_warning ("redis lost the %s script, loading it again", op->script->name);
        if (s_script_load (conn, op->script) == 0)
            op->script->reloading = true;
    }
    return s_op_send (op->owner, op, false);
}

static void
s_op_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    op_t *op = (op_t *) privdata;
    if (!reply) {
        s_op_fail (op, op->owner->destroying? "shutting down": "redis connection lost");
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!strncmp (reply->str, "NOSCRIPT", 8) && !op->retried
        &&  s_op_noscript ((conn_t *) ac->data, op) == 0)
            return;
        if (op->pinned && !strncmp (reply->str, "MOVED ", 6)) {
            //  Not run: the room's floor first, as for a missing counter
            s_append_finish (op, 3, 0, NULL);
            return;
        }
        s_op_fail (op, reply->str);
        return;
    }
    if (op->kind == OP_APPEND)
        s_append_result ((conn_t *) ac->data, op, reply);
    else
        s_replay_result (op, reply);
}


//  --------------------------------------------------------------------------
//  Replicas: WAIT

//  The ops of one WAIT, in the order they were answered
typedef struct {
    pl_streams_t *owner;
    op_t *head;
} wait_t;

//  Every op of a list gets result (-2: seq kept) or the error; frees them
static void
s_wait_finish_all (op_t *op, int result, const char *error)
{
    while (op) {
        op_t *next = op->next;
        if (result == 0)
            s_append_finish (op, op->result, op->seq, NULL);
        else
            s_append_finish (op, result, result == -2? op->seq: 0, error);
        op = next;
    }
}

static void
s_wait_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    wait_t *wait = (wait_t *) privdata;
    pl_streams_t *self = wait->owner;
    if (!reply)
        //  Applied on the primary, replicated or not: a retry is safe
        s_wait_finish_all (wait->head, -1, self->destroying? "shutting down":
                           "redis connection lost before the replicas confirmed");
    else
    if (reply->type == REDIS_REPLY_ERROR) {
        pl_log_error ("redis WAIT: %s", reply->str);
        s_wait_finish_all (wait->head, -1, reply->str);
    }
    else
    if (reply->type != REDIS_REPLY_INTEGER || reply->integer < self->settings.min_replicas) {
        pl_log_warning ("redis WAIT: %lld of %d replicas confirmed in time",
                        reply->type == REDIS_REPLY_INTEGER? reply->integer: -1LL,
                        self->settings.min_replicas);
        s_wait_finish_all (wait->head, -2, "not confirmed by redis-min-replicas replicas in time");
    }
    else
        s_wait_finish_all (wait->head, 0, NULL);
    free (wait);
}

void
pl_streams_append_flush_waits (pl_streams_t *self)
{
    if (self->settings.min_replicas == 0)
        return;
    conn_t *conns [PL_STREAMS_NODES_MAX + 1];
    int count = pl_streams_cluster_command_links (self, conns);
    for (int index = 0; index < count; index++) {
        conn_t *conn = conns [index];
        if (!conn->unconfirmed_head)
            continue;
        wait_t *wait = (wait_t *) calloc (1, sizeof (wait_t));
        if (!wait) {
            pl_streams_append_fail_unconfirmed (conn, "out of memory");
            continue;
        }
        wait->owner = self;
        wait->head = conn->unconfirmed_head;
        conn->unconfirmed_head = conn->unconfirmed_tail = NULL;
        const char *argv [] = { "WAIT", self->settings.min_replicas_text,
                                self->settings.wait_timeout_text };
        if (pl_streams_link_send (conn, s_wait_reply, wait, 3, argv, NULL) == 0)
            self->stats.replication_waits++;
        else {
            s_wait_finish_all (wait->head, -1, "redis connection lost before the replicas confirmed");
            free (wait);
        }
    }
}

void
pl_streams_append_fail_unconfirmed (conn_t *conn, const char *error)
{
    op_t *head = conn->unconfirmed_head;
    conn->unconfirmed_head = conn->unconfirmed_tail = NULL;
    s_wait_finish_all (head, -1, error);
}


//  --------------------------------------------------------------------------
//  Public API: append, replay, signal

//  The EVAL form of an append: KEYS stream, seq, index, [dedup], then ARGV
static op_t *
s_append_op (pl_streams_t *self, const pl_entry_t *message, int shard, void *arg,
             const char *index_key, const char *dedup_key)
{
    char created [24], floor [24];
    snprintf (created, sizeof created, "%" PRId64, message->created_ms);
    snprintf (floor, sizeof floor, "%" PRId64, message->seq_floor < 0? -1: message->seq_floor);
    const settings_t *settings = &self->settings;
    const char *argv [19];
    int argc = 0;
    argv [argc++] = "EVAL";
    argv [argc++] = s_append_script;
    argv [argc++] = dedup_key? "4": "3";
    argv [argc++] = self->keys.stream [shard];
    argv [argc++] = self->keys.seq [shard];
    argv [argc++] = index_key;
    if (dedup_key)
        argv [argc++] = dedup_key;
    argv [argc++] = message->room_id;
    argv [argc++] = message->type? message->type: "";
    argv [argc++] = message->sender_id? message->sender_id: "";
    argv [argc++] = message->sender_name? message->sender_name: "";
    argv [argc++] = message->content? message->content: "";
    argv [argc++] = message->client_msg_id? message->client_msg_id: "";
    argv [argc++] = created;
    argv [argc++] = settings->dedup_ttl_text;
    argv [argc++] = settings->window_text;
    argv [argc++] = settings->index_ttl_text;
    argv [argc++] = floor;
    argv [argc++] = message->dedup_restored? "1": "0";
    return s_op_new (self, OP_APPEND, SCRIPT_APPEND, shard, arg, argc, argv);
}

//  "<prefix>:{<shard>}:dedup:<room>:<sender>:<cmid>" (free it), or NULL
static char *
s_dedup_key (pl_streams_t *self, int shard, const char *room, const char *sender, const char *cmid)
{
    char *key = NULL;
    if (asprintf (&key, "%s%d}:dedup:%s:%s:%s", self->keys.shard_prefix, shard, room, sender, cmid) < 0)
        return NULL;
    return key;
}

int
pl_streams_dedup_restore (pl_streams_t *self, const char *room_id, const char *sender,
                          const char *cmid, int64_t seq)
{
    assert (self);
    if (self->destroying || !room_id || !*room_id || !sender || !cmid || !*cmid || seq < 1)
        return -1;
    int shard = pl_streams_shard (room_id, self->settings.shards);
    char *key = s_dedup_key (self, shard, room_id, sender, cmid);
    if (!key)
        return -1;
    char seq_text [24];
    snprintf (seq_text, sizeof seq_text, "%" PRId64, seq);
    const char *argv [] = { "SET", key, seq_text, "EX", self->settings.dedup_ttl_text, "NX" };
    int rc = pl_streams_cluster_send (self, key, pl_streams_link_error_only, (void *) "SET",
                                      6, argv, NULL);
    free (key);
    if (rc == 0)
        self->stats.dedup_restored++;
    return rc;
}

//  The EVAL form of a READ: KEYS stream, seq, the room's cursors, then ARGV
static op_t *
s_read_op (pl_streams_t *self, const pl_entry_t *message, int shard, void *arg)
{
    char *cursors_key = NULL;
    if (asprintf (&cursors_key, "%s%d}:read:%s", self->keys.shard_prefix, shard,
                  message->room_id) < 0)
        return NULL;
    char created [24], seq [24];
    snprintf (created, sizeof created, "%" PRId64, message->created_ms);
    snprintf (seq, sizeof seq, "%" PRId64, message->seq);
    const char *argv [] = {
        "EVAL", s_read_script, "3", self->keys.stream [shard], self->keys.seq [shard],
        cursors_key, message->room_id, message->sender_id? message->sender_id: "",
        message->sender_name? message->sender_name: "", seq, created,
        self->settings.read_ttl_text
    };
    op_t *op = s_op_new (self, OP_APPEND, SCRIPT_READ, shard, arg, 12, argv);
    free (cursors_key);
    return op;
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

    int shard = pl_streams_shard (message->room_id, self->settings.shards);
    if (message->type && streq (message->type, "READ")) {
        if (message->seq < 1)
            return -1;
        op_t *op = s_read_op (self, message, shard, done_arg);
        if (!op)
            return -1;
        op->append_done = done;
        s_op_start (self, op);
        return 0;
    }
    const char *cmid = message->client_msg_id? message->client_msg_id: "";
    const char *sender = message->sender_id? message->sender_id: "";
    char *dedup_key = NULL;
    char *index_key = NULL;
    if (asprintf (&index_key, "%s%d}:idx:%s", self->keys.shard_prefix, shard,
                  message->room_id) < 0)
        return -1;
    if (*cmid && !(dedup_key = s_dedup_key (self, shard, message->room_id, sender, cmid))) {
        free (index_key);
        return -1;
    }
    op_t *op = s_append_op (self, message, shard, done_arg, index_key, dedup_key);
    free (dedup_key);
    free (index_key);
    if (!op)
        return -1;
    op->append_done = done;
    op->pinned = message->seq_floor < 0;
    s_op_start (self, op);
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
    int shard = pl_streams_shard (room_id, self->settings.shards);
    char *index_key = NULL;
    if (asprintf (&index_key, "%s%d}:idx:%s", self->keys.shard_prefix, shard, room_id) < 0)
        return -1;
    char after [24], count [16];
    snprintf (after, sizeof after, "%" PRId64, after_seq > 0? after_seq: 0);
    snprintf (count, sizeof count, "%d", max);
    const char *argv [] = { "EVAL", s_replay_script, "3", index_key, self->keys.stream [shard],
                            self->keys.seq [shard], room_id, after, count };
    op_t *op = s_op_new (self, OP_REPLAY, SCRIPT_REPLAY, shard, arg, 9, argv);
    free (index_key);
    if (!op)
        return -1;
    op->on_entry = on_entry;
    op->replay_done = done;
    s_op_start (self, op);
    return 0;
}

int
pl_streams_room_created (pl_streams_t *self, const char *room_id)
{
    assert (self);
    if (self->destroying || !room_id || !*room_id)
        return -1;
    const char *seq = self->keys.seq [pl_streams_shard (room_id, self->settings.shards)];
    if (!pl_streams_cluster_key_up (self, seq))
        return -1;
    const char *argv [] = { "HSETNX", seq, room_id, "0" };
    return pl_streams_cluster_send (self, seq, pl_streams_link_error_only, (void *) "HSETNX",
                                    4, argv, NULL);
}

static void
s_signal_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    (void) privdata;
    if (!reply) {
        if (!((conn_t *) ac->data)->owner->destroying)
            pl_log_warning ("redis signal may be lost with the connection");
    }
    else
    if (reply->type == REDIS_REPLY_ERROR)
        pl_log_error ("redis signal XADD: %s", reply->str);
}

int
pl_streams_signal (pl_streams_t *self, const char *room_id, const char *type,
                   const char *user, const char *content)
{
    assert (self);
    if (self->destroying || !room_id || !*room_id || !type || !*type)
        return -1;
    //  Queued on a link still connecting, it could vanish unnoticed
    int shard = pl_streams_shard (room_id, self->settings.shards);
    const char *stream = self->keys.stream [shard];
    if (!pl_streams_cluster_key_up (self, stream))
        return -1;
    //  Not in the replay index: a signal has no seq of its own
    const char *argv [] = { "XADD", stream, "*", "v", "1", "room", room_id,
                            "seq", "0", "type", type, "sender", user? user: "",
                            "content", content? content: "" };
    return pl_streams_cluster_send (self, stream, s_signal_reply, NULL, 15, argv, NULL);
}
