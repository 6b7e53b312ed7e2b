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

//  Dedup, seq, XADD in one script, so a duplicate never gets a seq and a
//  seq never goes unused. All keys come in KEYS, all share one hash tag.
//  KEYS: stream, seq hash, [dedup key]. ARGV: room type sender name content
//  cmid created ttl. Returns {seq, entry id, duplicate}.
static const char *s_append_script =
    "local dedup = KEYS[3]\n"
    "if dedup then\n"
    "  local seen = redis.call('GET', dedup)\n"
    "  if seen then return {tonumber(seen), '', 1} end\n"
    "end\n"
    "local seq = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)\n"
    "local id = redis.call('XADD', KEYS[1], '*', 'v', '1', 'room', ARGV[1],"
    " 'seq', tostring(seq), 'type', ARGV[2], 'sender', ARGV[3], 'name', ARGV[4],"
    " 'content', ARGV[5], 'cmid', ARGV[6], 'created', ARGV[7])\n"
    "if dedup then redis.call('SET', dedup, seq, 'EX', ARGV[8]) end\n"
    "return {seq, id, 0}\n";

typedef enum { PHASE_SETUP, PHASE_PENDING, PHASE_LIVE } phase_t;

typedef struct {
    char  **ids;
    size_t  size;
    size_t  capacity;
} id_list_t;

typedef struct _reader_t reader_t;

typedef struct {
    pl_streams_t *owner;
    const char *name;           //  "command", "fanout", "persist"
    bool enabled;               //  a reader without callback never connects
    redisAsyncContext *ac;      //  NULL while down
    bool want_read;             //  set by hiredis through the ev hooks
    bool want_write;
    bool connected;             //  onConnect said OK
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
};

typedef struct _append_op_t append_op_t;
struct _append_op_t {
    pl_streams_t *owner;
    pl_append_fn *done;
    void *done_arg;
    int argc;                   //  of the EVAL form
    const char **argv;          //  point into the same allocation
    size_t *argvlen;
    bool retried;               //  already resent as EVAL after NOSCRIPT
    const char *error;          //  failed before sending (deferred list)
    append_op_t *next;
};

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
    char **stream_keys;         //  per shard
    char **seq_keys;            //  per shard
    char *dedup_prefix;         //  "<prefix>:{" (shard and rest follow)
    char *key_prefix;
    char sha [41];              //  of s_append_script, lower case
    pl_entry_fn *on_fanout;
    pl_entry_fn *on_persist;
    void *arg;
    conn_t command;
    reader_t fanout;
    reader_t persist;
    zhashx_t *inflight;         //  "shard/id" of persist entries not acked
    append_op_t *failed_head;   //  appends that failed before sending
    append_op_t *failed_tail;
    int acks_outstanding;
    bool script_reloading;      //  a SCRIPT LOAD after NOSCRIPT is under way
    bool dirty;                 //  work for the next pl_streams_handle
    bool destroying;
    bool in_handle;
    conn_t *item_conn [PL_STREAMS_POLLITEMS_MAX];
    redisAsyncContext *item_ac [PL_STREAMS_POLLITEMS_MAX];
};

static void s_reader_kick (reader_t *reader);


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
                          conn->name, self->host, self->port, why, conn->backoff_ms);
    }
    conn->ac = NULL;
    conn->want_read = conn->want_write = false;
    conn->connected = false;
    conn->outstanding = 0;
    conn->reconnect_at = pl_mono_ms () + conn->backoff_ms;
    conn->backoff_ms = conn->backoff_ms * 2 > BACKOFF_MAX_MS? BACKOFF_MAX_MS: conn->backoff_ms * 2;
    if (conn->reader) {
        //  After a reconnect the reader starts over: groups, pending, live
        conn->reader->phase = PHASE_SETUP;
        conn->reader->busy = false;
        conn->reader->setup_waiting = 0;
        conn->reader->retry_at = 0;
    }
}

static void
s_on_connect (const redisAsyncContext *ac, int status)
{
    conn_t *conn = (conn_t *) ac->data;
    if (status == REDIS_OK) {
        conn->connected = true;
        conn->backoff_ms = BACKOFF_MIN_MS;
        pl_log_debug ("redis %s connected to %s:%d", conn->name,
                      conn->owner->host, conn->owner->port);
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

//  Replies of AUTH, SELECT, SCRIPT LOAD: only errors matter (logged).
static void
s_setup_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    redisReply *reply = (redisReply *) reply_p;
    s_conn_replied (conn);
    if (!strcmp ((const char *) privdata, "SCRIPT LOAD"))
        conn->owner->script_reloading = false;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR)
        pl_log_error ("redis %s %s: %s", conn->name, (const char *) privdata, reply->str);
    else
    if (!strcmp ((const char *) privdata, "SCRIPT LOAD")
    &&  (reply->type != REDIS_REPLY_STRING || strcasecmp (reply->str, conn->owner->sha)))
        //  Our EVALSHA then gets NOSCRIPT and falls back to EVAL
        pl_log_error ("redis SCRIPT LOAD answered an unexpected SHA1");
}

static void
s_conn_start (conn_t *conn)
{
    pl_streams_t *self = conn->owner;
    redisAsyncContext *ac = redisAsyncConnect (self->host, self->port);
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
    if (self->db) {
        char number [16];
        snprintf (number, sizeof number, "%d", self->db);
        const char *argv [] = { "SELECT", number };
        s_conn_send (conn, s_setup_reply, (void *) "SELECT", 2, argv, NULL);
    }
    if (conn->reader)
        s_reader_kick (conn->reader);
    else {
        //  Pipelined ahead of every EVALSHA on this connection
        const char *argv [] = { "SCRIPT", "LOAD", s_append_script };
        s_conn_send (conn, s_setup_reply, (void *) "SCRIPT LOAD", 3, argv, NULL);
    }
}

static bool
s_conn_up (conn_t *conn)
{
    return conn->ac && (conn->ac->c.flags & REDIS_CONNECTED);
}


//  --------------------------------------------------------------------------
//  Appends

static append_op_t *
s_op_new (pl_streams_t *self, pl_append_fn *done, void *done_arg,
          int argc, const char **argv)
{
    size_t total = sizeof (append_op_t) + (size_t) argc * (sizeof (char *) + sizeof (size_t));
    for (int index = 0; index < argc; index++)
        total += strlen (argv [index]) + 1;
    append_op_t *op = calloc (1, total);
    if (!op)
        return NULL;
    op->owner = self;
    op->done = done;
    op->done_arg = done_arg;
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
s_op_finish (append_op_t *op, int result, int64_t seq, const char *error)
{
    op->done (op->done_arg, result, seq, error);
    free (op);
}

//  Fails later from pl_streams_handle, so done never runs inside append.
static void
s_op_fail_later (pl_streams_t *self, append_op_t *op, const char *error)
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
        append_op_t *op = self->failed_head;
        self->failed_head = op->next;
        if (!self->failed_head)
            self->failed_tail = NULL;
        s_op_finish (op, -1, 0, op->error);
    }
}

static void s_append_reply (redisAsyncContext *ac, void *reply_p, void *privdata);

static int
s_append_send (pl_streams_t *self, append_op_t *op, bool by_sha)
{
    const char *argv [op->argc];
    size_t argvlen [op->argc];
    memcpy (argv, op->argv, sizeof argv);
    memcpy (argvlen, op->argvlen, sizeof argvlen);
    if (by_sha) {
        argv [0] = "EVALSHA";
        argvlen [0] = 7;
        argv [1] = self->sha;
        argvlen [1] = 40;
    }
    return s_conn_send (&self->command, s_append_reply, op, op->argc, argv, argvlen);
}

static void
s_append_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    conn_t *conn = (conn_t *) ac->data;
    pl_streams_t *self = conn->owner;
    redisReply *reply = (redisReply *) reply_p;
    append_op_t *op = (append_op_t *) privdata;
    s_conn_replied (conn);
    if (!reply) {
        s_op_finish (op, -1, 0, self->destroying? "shutting down": "redis connection lost");
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!strncmp (reply->str, "NOSCRIPT", 8) && !op->retried) {
            //  Script cache flushed: this one goes as EVAL, and reload
            //  once so later appends find it again
            op->retried = true;
            if (!self->script_reloading) {
                pl_log_warning ("redis lost the append script, loading it again");
                const char *argv [] = { "SCRIPT", "LOAD", s_append_script };
                if (s_conn_send (conn, s_setup_reply, (void *) "SCRIPT LOAD", 3, argv, NULL) == 0)
                    self->script_reloading = true;
            }
            if (s_append_send (self, op, false) == 0)
                return;
        }
        s_op_finish (op, -1, 0, reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
    ||  reply->element [0]->type != REDIS_REPLY_INTEGER
    ||  reply->element [2]->type != REDIS_REPLY_INTEGER) {
        pl_log_error ("redis append: malformed reply (type %d)", reply->type);
        s_op_finish (op, -1, 0, "malformed reply from redis");
        return;
    }
    int64_t seq = reply->element [0]->integer;
    bool duplicate = reply->element [2]->integer != 0;
    s_op_finish (op, duplicate? 1: 0, seq, NULL);
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
    if (*cmid
    &&  asprintf (&dedup_key, "%s%d}:dedup:%s:%s:%s", self->dedup_prefix, shard,
                  message->room_id, sender, cmid) < 0)
        return -1;
    char created [24];
    snprintf (created, sizeof created, "%" PRId64, message->created_ms);
    const char *argv [14];
    int argc = 0;
    argv [argc++] = "EVAL";
    argv [argc++] = s_append_script;
    argv [argc++] = dedup_key? "3": "2";
    argv [argc++] = self->stream_keys [shard];
    argv [argc++] = self->seq_keys [shard];
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
    append_op_t *op = s_op_new (self, done, done_arg, argc, argv);
    free (dedup_key);
    if (!op)
        return -1;
    if (s_append_send (self, op, true))
        s_op_fail_later (self, op, "redis not connected");
    return 0;
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
    if (!reader->acks || !self->command.ac)
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
            if (s_conn_send (&self->command, s_ack_reply, NULL, (int) (3 + count), argv, NULL))
                return;         //  kept for after the reconnect
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
    if (reply->type == REDIS_REPLY_ERROR && strncmp (reply->str, "BUSYGROUP", 9)) {
        if (!reader->setup_failed)
            pl_log_warning ("redis XGROUP CREATE %s: %s", reader->group, reply->str);
        reader->setup_failed = true;
    }
    if (--reader->setup_waiting > 0)
        return;
    reader->busy = false;
    if (reader->setup_failed) {
        reader->retry_at = pl_mono_ms () + RETRY_MS;
        return;
    }
    //  Groups exist: first what was delivered to us and not acked
    reader->phase = PHASE_PENDING;
    for (int shard = 0; shard < reader->owner->shards; shard++) {
        strcpy (reader->cursor [shard], "0");
        reader->drained [shard] = false;
    }
    pl_log_debug ("redis %s reader: groups ready, reading pending entries", conn->name);
    s_reader_kick (reader);
}

//  Deliver one entry [id, [field, value, ...]] of a shard.
static void
s_reader_deliver (reader_t *reader, int shard, redisReply *entry)
{
    pl_streams_t *self = reader->owner;
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2
    ||  entry->element [0]->type != REDIS_REPLY_STRING) {
        pl_log_warning ("redis %s: malformed stream entry skipped", reader->conn.name);
        return;
    }
    const char *id = entry->element [0]->str;
    redisReply *fields = entry->element [1];
    if (fields->type != REDIS_REPLY_ARRAY) {
        //  A pending entry trimmed away: nothing to deliver, forget it
        pl_log_warning ("redis %s: entry %s of %s is gone, acked", reader->conn.name,
                        id, self->stream_keys [shard]);
        s_reader_ack (reader, shard, id);
        return;
    }
    pl_entry_t message = { .stream_key = self->stream_keys [shard], .entry_id = id,
                           .type = "", .sender_id = "", .sender_name = "",
                           .content = "", .client_msg_id = "" };
    bool seq_ok = false;
    for (size_t index = 0; index + 1 < fields->elements; index += 2) {
        redisReply *name = fields->element [index];
        redisReply *value = fields->element [index + 1];
        if (name->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING)
            continue;
        const char *text = value->str;
        if (!strcmp (name->str, "room"))
            message.room_id = text;
        else
        if (!strcmp (name->str, "seq")) {
            char *end = NULL;
            errno = 0;
            long long number = strtoll (text, &end, 10);
            seq_ok = !errno && end != text && !*end && number > 0;
            message.seq = number;
        }
        else
        if (!strcmp (name->str, "type"))
            message.type = text;
        else
        if (!strcmp (name->str, "sender"))
            message.sender_id = text;
        else
        if (!strcmp (name->str, "name"))
            message.sender_name = text;
        else
        if (!strcmp (name->str, "content"))
            message.content = text;
        else
        if (!strcmp (name->str, "cmid"))
            message.client_msg_id = text;
        else
        if (!strcmp (name->str, "created"))
            message.created_ms = strtoll (text, NULL, 10);
    }
    if (!message.room_id || !seq_ok) {
        pl_log_warning ("redis %s: entry %s of %s lacks room or seq, acked",
                        reader->conn.name, id, self->stream_keys [shard]);
        s_reader_ack (reader, shard, id);
        return;
    }
    if (reader->persist) {
        char key [ID_MAX + 16];
        snprintf (key, sizeof key, "%d/%s", shard, id);
        if (zhashx_lookup (self->inflight, key))
            return;             //  re-read after a reconnect: the caller has it
        zhashx_insert (self->inflight, key, self);
        reader->callback (self->arg, &message);
    }
    else {
        reader->callback (self->arg, &message);
        s_reader_ack (reader, shard, id);
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
            s_reader_deliver (reader, shard, entries->element [entry]);
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
        if (reader->phase == PHASE_LIVE || !reader->drained [shard])
            candidates [candidate_count++] = shard;
    if (candidate_count == 0)
        return;

    //  COUNT is per stream: n streams at COUNT c may hand out n * c entries
    int streams = candidate_count;
    int count = self->read_count;
    if (reader->persist) {
        long room = (long) self->persist_limit - (long) zhashx_size (self->inflight);
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
    int block_ms = streams < self->shards && self->block_ms > SUBSET_BLOCK_MS?
                   SUBSET_BLOCK_MS: self->block_ms;
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
    if (s_conn_send (&reader->conn, s_reader_reply, reader, argc, argv, NULL) == 0)
        reader->busy = true;
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
        for (int shard = 0; shard < self->shards; shard++) {
            //  On the reader's own link, so they run before its first read
            const char *argv [] = { "XGROUP", "CREATE", self->stream_keys [shard],
                                    reader->group, reader->start_id, "MKSTREAM" };
            if (s_conn_send (&reader->conn, s_reader_setup_reply, reader, 6, argv, NULL))
                break;
            reader->setup_waiting++;
        }
        reader->busy = reader->setup_waiting > 0;
    }
    else
        s_reader_read (reader);
}

static int
s_reader_init (pl_streams_t *self, reader_t *reader, const char *name, bool persist,
               const char *group, const char *start_id, pl_entry_fn *callback)
{
    reader->owner = self;
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
    return 0;
}

static void
s_reader_free (pl_streams_t *self, reader_t *reader)
{
    if (reader->acks)
        for (int shard = 0; shard < self->shards; shard++)
            s_id_list_free (&reader->acks [shard]);
    free (reader->acks);
    free (reader->cursor);
    free (reader->drained);
    free (reader->picked);
    free (reader->argv);
    free (reader->argvlen);
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
    self->on_fanout = on_fanout;
    self->on_persist = on_persist;
    self->arg = arg;
    if (s_parse_url (self, config->redis_url? config->redis_url: "")) {
        pl_log_error ("redis-url '%s' does not parse (redis://host:port)",
                      config->redis_url? config->redis_url: "");
        pl_streams_destroy (&self);
        return NULL;
    }
    self->host_id = strdup (config->host_id? config->host_id: "h1");
    self->key_prefix = strdup (config->key_prefix? config->key_prefix: "parley");
    self->stream_keys = calloc ((size_t) self->shards, sizeof (char *));
    self->seq_keys = calloc ((size_t) self->shards, sizeof (char *));
    self->inflight = zhashx_new ();
    if (!self->host_id || !self->key_prefix || !self->stream_keys || !self->seq_keys
    ||  !self->inflight
    ||  asprintf (&self->fanout_group, "fanout:%s", self->host_id) < 0
    ||  asprintf (&self->dedup_prefix, "%s:{", self->key_prefix) < 0) {
        self->fanout_group = NULL;
        pl_streams_destroy (&self);
        return NULL;
    }
    for (int shard = 0; shard < self->shards; shard++)
        if (asprintf (&self->stream_keys [shard], "%s:{%d}:stream", self->key_prefix, shard) < 0
        ||  asprintf (&self->seq_keys [shard], "%s:{%d}:seq", self->key_prefix, shard) < 0) {
            pl_streams_destroy (&self);
            return NULL;
        }

    //  SHA1 computed here so EVALSHA can follow SCRIPT LOAD in one pipeline
    zdigest_t *digest = zdigest_new ();
    if (!digest) {
        pl_streams_destroy (&self);
        return NULL;
    }
    zdigest_update (digest, (const byte *) s_append_script, strlen (s_append_script));
    snprintf (self->sha, sizeof self->sha, "%s", zdigest_string (digest));
    zdigest_destroy (&digest);
    for (char *scan = self->sha; *scan; scan++)
        *scan = (char) tolower ((unsigned char) *scan);

    self->command.owner = self;
    self->command.name = "command";
    self->command.enabled = true;
    self->command.backoff_ms = BACKOFF_MIN_MS;
    self->command.grace_ms = config->request_timeout_ms > 0? config->request_timeout_ms: 10000;
    if (s_reader_init (self, &self->fanout, "fanout", false, self->fanout_group, "$", on_fanout)
    ||  s_reader_init (self, &self->persist, "persist", true, "persist", "0", on_persist)) {
        pl_streams_destroy (&self);
        return NULL;
    }
    self->fanout.conn.grace_ms = self->block_ms + self->command.grace_ms;
    self->persist.conn.grace_ms = self->block_ms + self->command.grace_ms;
    if (self->persist_limit < self->shards && on_persist)
        pl_log_warning ("persist-inflight %d is below shards %d: persist reads cover "
                        "some shards at a time", self->persist_limit, self->shards);

    s_conn_start (&self->command);
    if (self->fanout.conn.enabled)
        s_conn_start (&self->fanout.conn);
    if (self->persist.conn.enabled)
        s_conn_start (&self->persist.conn);
    return self;
}

//  Send what is batched and wait a little for the replies, so acked fan-out
//  and persist entries are not read again by the next instance.
static void
s_destroy_flush (pl_streams_t *self)
{
    s_reader_flush_acks (&self->fanout);
    s_reader_flush_acks (&self->persist);
    int64_t deadline = pl_mono_ms () + DESTROY_FLUSH_MS;
    while (self->acks_outstanding > 0 && s_conn_up (&self->command)) {
        int64_t left = deadline - pl_mono_ms ();
        if (left <= 0)
            break;
        struct pollfd item = { .fd = self->command.ac->c.fd };
        item.events = (short) ((self->command.want_read? POLLIN: 0)
                             | (self->command.want_write? POLLOUT: 0));
        if (poll (&item, 1, (int) left) < 0 && errno != EINTR)
            break;
        redisAsyncContext *ac = self->command.ac;
        if (item.revents & (POLLIN | POLLERR | POLLHUP))
            redisAsyncHandleRead (ac);
        if (self->command.ac == ac && (item.revents & POLLOUT))
            redisAsyncHandleWrite (ac);
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
    if (self->stream_keys && self->fanout.acks && self->persist.acks)
        s_destroy_flush (self);
    //  Pending appends get their callback with an error from hiredis
    conn_t *conns [] = { &self->command, &self->fanout.conn, &self->persist.conn };
    for (int index = 0; index < 3; index++)
        if (conns [index]->ac)
            redisAsyncFree (conns [index]->ac);
    s_run_failed (self);
    s_reader_free (self, &self->fanout);
    s_reader_free (self, &self->persist);
    if (self->stream_keys)
        for (int shard = 0; shard < self->shards; shard++)
            free (self->stream_keys [shard]);
    if (self->seq_keys)
        for (int shard = 0; shard < self->shards; shard++)
            free (self->seq_keys [shard]);
    free (self->stream_keys);
    free (self->seq_keys);
    zhashx_destroy (&self->inflight);
    free (self->host);
    free (self->password);
    free (self->host_id);
    free (self->key_prefix);
    free (self->fanout_group);
    free (self->dedup_prefix);
    free (self);
    *self_p = NULL;
}

int
pl_streams_pollitems (pl_streams_t *self, zmq_pollitem_t *items, int max)
{
    assert (self);
    assert (items || max == 0);
    conn_t *conns [] = { &self->command, &self->fanout.conn, &self->persist.conn };
    int count = 0;
    for (int index = 0; index < 3 && count < max; index++) {
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
    conn_t *conns [] = { &self->command, &self->fanout.conn, &self->persist.conn };
    for (int index = 0; index < 3; index++) {
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
    s_reader_kick (&self->fanout);
    s_reader_kick (&self->persist);
    s_reader_flush_acks (&self->fanout);
    s_reader_flush_acks (&self->persist);
    s_run_failed (self);        //  in case a callback above failed an append

    //  Write what this turn queued now rather than after another poll
    for (int index = 0; index < 3; index++)
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
    conn_t *conns [] = { &self->command, &self->fanout.conn, &self->persist.conn };
    for (int index = 0; index < 3; index++) {
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
    s_reader_ack (&self->persist, shard, entry_id);
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
    if (!s_conn_up (&self->command))
        return false;
    reader_t *readers [] = { &self->fanout, &self->persist };
    for (int index = 0; index < 2; index++)
        if (readers [index]->conn.enabled
        &&  (!s_conn_up (&readers [index]->conn) || readers [index]->phase == PHASE_SETUP))
            return false;
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
s_test_redis_start (int port, const char *dir)
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
    }

    //  Our own Redis
    char dir [] = "/tmp/pl_streams_test_XXXXXX";
    char *made = mkdtemp (dir);
    assert (made);
    int port = s_test_free_port ();
    pid_t redis = s_test_redis_start (port, dir);

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
    redis = s_test_redis_start (port, dir);
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

    s_test_redis_stop (redis);
    nftw (dir, s_test_rm, 8, FTW_DEPTH | FTW_PHYS);
    zlistx_destroy (&test->to_ack);
    zhashx_destroy (&test->first_ids);
    free (test);
    pl_config_destroy (&config);
    printf ("OK\n");
}
