/*  =========================================================================
    pl_streams_readers - the fan-out and persist group readers: group
    setup, pending then live XREADGROUP, batched XACKs, XAUTOCLAIM

    A reader owns a link because a blocking read occupies it: one request
    at a time, and each reply issues the next (pl_streams_readers_kick).
    After (re)connecting it creates its groups, reads what was delivered to
    it and not acked (pending phase, from id 0), then new entries (live
    phase, ">", BLOCK). The persist reader keeps the entries it handed out
    and not acked under persist-inflight, and between two reads claims what
    other consumers left pending longer than claim-idle-ms.
    =========================================================================
*/
#include "pl_streams_internal.h"

#include <assert.h>
#include <errno.h>


//  --------------------------------------------------------------------------
//  Batched XACKs

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

static void
s_ack_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    (void) privdata;
    ((conn_t *) ac->data)->owner->readers.acks_outstanding--;
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

//  One XACK per stream and ack-batch ids, on the command link serving it
void
pl_streams_readers_flush_acks (reader_t *reader)
{
    pl_streams_t *self = reader->owner;
    if (!reader->acks || (!self->server.cluster && !self->command.ac))
        return;
    const char **argv = self->readers.ack_argv;
    for (int shard = 0; shard < self->settings.shards; shard++) {
        id_list_t *list = &reader->acks [shard];
        while (list->size > 0) {
            size_t batch = (size_t) self->settings.ack_batch;
            size_t count = list->size > batch? batch: list->size;
            argv [0] = "XACK";
            argv [1] = self->keys.stream [shard];
            argv [2] = reader->group;
            for (size_t index = 0; index < count; index++)
                argv [3 + index] = list->ids [list->size - count + index];
            if (pl_streams_cluster_send (self, argv [1], s_ack_reply, NULL,
                                         (int) (3 + count), argv, NULL)) {
                if (self->server.cluster)
                    break;      //  this master is down; the others may not be
                return;         //  kept for after the reconnect
            }
            self->readers.acks_outstanding++;
            for (size_t index = 0; index < count; index++)
                free (list->ids [--list->size]);
        }
    }
}


//  --------------------------------------------------------------------------
//  Entries

int
pl_streams_readers_shard_of_key (pl_streams_t *self, const char *key)
{
    const char *brace = key? strchr (key, '{'): NULL;
    if (!brace)
        return -1;
    char *end = NULL;
    errno = 0;
    long shard = strtol (brace + 1, &end, 10);
    if (errno || end == brace + 1 || *end != '}' || shard < 0 || shard >= self->settings.shards)
        return -1;
    return strcmp (self->keys.stream [shard], key)? -1: (int) shard;
}

//  One field of a stream entry into message; seq_ok says whether seq parsed
static void
s_entry_field (pl_entry_t *message, const char *name, const char *text, bool *seq_ok)
{
    if (!strcmp (name, "room"))
        message->room_id = text;
    else
    if (!strcmp (name, "seq")) {
        char *end = NULL;
        errno = 0;
        long long number = strtoll (text, &end, 10);
        *seq_ok = !errno && end != text && !*end && number >= 0;
        message->seq = number;
    }
    else
    if (!strcmp (name, "type"))
        message->type = text;
    else
    if (!strcmp (name, "sender"))
        message->sender_id = text;
    else
    if (!strcmp (name, "name"))
        message->sender_name = text;
    else
    if (!strcmp (name, "content"))
        message->content = text;
    else
    if (!strcmp (name, "cmid"))
        message->client_msg_id = text;
    else
    if (!strcmp (name, "created"))
        message->created_ms = strtoll (text, NULL, 10);
}

//  seq 0 is a signal (pl_streams_signal), not a message
int
pl_streams_readers_parse_entry (pl_streams_t *self, int shard, redisReply *entry,
                                pl_entry_t *message)
{
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2
    ||  entry->element [0]->type != REDIS_REPLY_STRING)
        return -1;
    *message = (pl_entry_t) { .stream_key = self->keys.stream [shard],
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
        if (name->type == REDIS_REPLY_STRING && value->type == REDIS_REPLY_STRING)
            s_entry_field (message, name->str, value->str, &seq_ok);
    }
    return message->room_id && seq_ok? 0: -2;
}

//  A persist entry goes to the caller once while it is in flight
static bool
s_deliver_persist (reader_t *reader, int shard, const pl_entry_t *message)
{
    pl_streams_t *self = reader->owner;
    if (message->seq == 0) {
        //  A signal: nothing to store
        s_reader_ack (reader, shard, message->entry_id);
        return false;
    }
    char key [ID_MAX + 16];
    snprintf (key, sizeof key, "%d/%s", shard, message->entry_id);
    if (zhashx_lookup (self->readers.inflight, key))
        return false;           //  re-read or claimed again: the caller has it
    zhashx_insert (self->readers.inflight, key, self);
    reader->callback (self->arg, message);
    return true;
}

//  Held: the entry stays pending for us and is read again, in order, once
//  the caller releases the hold
static bool
s_deliver_fanout (reader_t *reader, int shard, const pl_entry_t *message)
{
    pl_streams_t *self = reader->owner;
    if (self->readers.fanout_held || reader->skip_reply)
        return false;
    reader->callback (self->arg, message);
    if (self->readers.fanout_held)
        return false;           //  the callback could not pass it on
    s_reader_ack (reader, shard, message->entry_id);
    self->stats.fanout_read++;
    return true;
}

//  Deliver one entry [id, [field, value, ...]] of a shard. Returns true
//  when it went to the reader's callback.
static bool
s_reader_deliver (reader_t *reader, int shard, redisReply *entry)
{
    pl_streams_t *self = reader->owner;
    pl_entry_t message;
    int rc = pl_streams_readers_parse_entry (self, shard, entry, &message);
    if (rc == -1) {
        pl_log_warning ("redis %s: malformed stream entry skipped", reader->conn.name);
        return false;
    }
    if (rc == 1) {
        //  A pending entry trimmed away: nothing to deliver, forget it
        pl_log_warning ("redis %s: entry %s of %s is gone, acked", reader->conn.name,
                        message.entry_id, self->keys.stream [shard]);
        s_reader_ack (reader, shard, message.entry_id);
        return false;
    }
    if (rc == -2) {
        pl_log_warning ("redis %s: entry %s of %s lacks room or seq, acked",
                        reader->conn.name, message.entry_id, self->keys.stream [shard]);
        s_reader_ack (reader, shard, message.entry_id);
        return false;
    }
    return reader->persist? s_deliver_persist (reader, shard, &message):
                            s_deliver_fanout (reader, shard, &message);
}


//  --------------------------------------------------------------------------
//  Group setup

static bool
s_reader_owns (reader_t *reader, int shard)
{
    return reader->only_shard < 0 || reader->only_shard == shard;
}

//  Read what is pending for us from the start, before anything new.
static void
s_reader_restart_pending (reader_t *reader)
{
    reader->phase = PHASE_PENDING;
    for (int shard = 0; shard < reader->owner->settings.shards; shard++) {
        strcpy (reader->cursor [shard], "0");
        reader->drained [shard] = !s_reader_owns (reader, shard);
    }
}

static void
s_setup_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    reader_t *reader = (reader_t *) privdata;
    if (!reply)
        return;                 //  the link is going; cleanup resets the reader
    if (pl_streams_cluster_redirected (reader, reply))
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
            reader->retry_at = pl_mono_ms () + reader->owner->settings.retry_ms;
        return;
    }
    //  Groups exist: first what was delivered to us and not acked
    s_reader_restart_pending (reader);
    pl_log_debug ("redis %s reader: groups ready, reading pending entries", reader->conn.name);
    pl_streams_readers_kick (reader);
}

//  XGROUP CREATE of every shard the reader owns, on its own link so they
//  run before its first read
static void
s_reader_setup (reader_t *reader)
{
    pl_streams_t *self = reader->owner;
    reader->setup_failed = false;
    reader->setup_waiting = 0;
    if (!reader->persist && !self->server.cluster)
        //  Ahead of the group on the same link: no janitor can see our
        //  new fan-out group before our host key, and take us for gone
        pl_streams_janitor_host_key (self, &reader->conn);
    if (!reader->persist && self->server.cluster && !self->janitor.host_key_set)
        //  The host key lives on another master: wait until it is set
        return;
    for (int shard = 0; shard < self->settings.shards; shard++) {
        if (!s_reader_owns (reader, shard))
            continue;
        const char *argv [] = { "XGROUP", "CREATE", self->keys.stream [shard],
                                reader->group, reader->start_id, "MKSTREAM" };
        if (pl_streams_link_send (&reader->conn, s_setup_reply, reader, 6, argv, NULL))
            break;
        reader->setup_waiting++;
    }
    reader->busy = reader->setup_waiting > 0;
}


//  --------------------------------------------------------------------------
//  Reads

//  A read or claim answered: the in-flight room it held is free again
static void
s_reader_release (reader_t *reader)
{
    reader->busy = false;
    reader->owner->readers.persist_reserved -= reader->reserved;
    reader->reserved = 0;
}

//  In-flight room left for persist reads and claims: other readers'
//  requests out count too (cluster: one per shard)
static long
s_persist_room (pl_streams_t *self)
{
    return (long) self->settings.persist_limit - (long) zhashx_size (self->readers.inflight)
         - self->readers.persist_reserved;
}

//  A read error: a missing group is created again, others wait retry-ms
static void
s_read_error (reader_t *reader, redisReply *reply)
{
    if (!strncmp (reply->str, "NOGROUP", 7)) {
        //  Stream or group deleted, or Redis restarted empty
        pl_log_info ("redis %s: group missing, creating it again", reader->conn.name);
        reader->phase = PHASE_SETUP;
    }
    else {
        pl_log_warning ("redis %s XREADGROUP: %s", reader->conn.name, reply->str);
        reader->retry_at = pl_mono_ms () + reader->owner->settings.retry_ms;
    }
    pl_streams_readers_kick (reader);
}

//  Pending phase: a shard read from its cursor that gave nothing has no
//  more pending; once none has, the reader goes live
static void
s_pending_progress (reader_t *reader, const bool *answered)
{
    pl_streams_t *self = reader->owner;
    bool all_drained = true;
    for (int index = 0; index < reader->picked_count; index++)
        if (!answered [reader->picked [index]])
            reader->drained [reader->picked [index]] = true;
    for (int shard = 0; shard < self->settings.shards; shard++)
        all_drained &= reader->drained [shard];
    if (all_drained) {
        pl_log_debug ("redis %s reader: pending entries read, now live", reader->conn.name);
        reader->phase = PHASE_LIVE;
    }
}

//  The entries of one stream [key, [entry, ...]] of a read's reply
static void
s_read_stream (reader_t *reader, int shard, redisReply *entries)
{
    pl_streams_t *self = reader->owner;
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

//  A read's reply: an array of streams, or nil when BLOCK ran out
static void
s_read_result (reader_t *reader, redisReply *reply)
{
    pl_streams_t *self = reader->owner;
    bool answered [self->settings.shards];
    memset (answered, 0, sizeof answered);
    size_t streams = reply->type == REDIS_REPLY_ARRAY? reply->elements: 0;
    for (size_t index = 0; index < streams; index++) {
        redisReply *stream = reply->element [index];
        int shard = -1;
        if (stream->type == REDIS_REPLY_ARRAY && stream->elements == 2
        &&  stream->element [0]->type == REDIS_REPLY_STRING
        &&  stream->element [1]->type == REDIS_REPLY_ARRAY)
            shard = pl_streams_readers_shard_of_key (self, stream->element [0]->str);
        if (shard < 0) {
            pl_log_warning ("redis %s XREADGROUP: malformed stream in reply", reader->conn.name);
            continue;
        }
        answered [shard] = stream->element [1]->elements > 0;
        s_read_stream (reader, shard, stream->element [1]);
    }
    if (reader->phase == PHASE_PENDING)
        s_pending_progress (reader, answered);
}

static void
s_read_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    reader_t *reader = (reader_t *) privdata;
    if (!reply)
        return;                 //  the link is going; cleanup resets the reader
    s_reader_release (reader);
    if (reader->skip_reply) {
        //  Released while this read was out: what it brought stays pending
        //  and comes again, in order, from the pending phase
        reader->skip_reply = false;
        if (reader->phase != PHASE_SETUP)
            s_reader_restart_pending (reader);
        pl_streams_readers_kick (reader);
        return;
    }
    if (pl_streams_cluster_redirected (reader, reply))
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        s_read_error (reader, reply);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY && reply->type != REDIS_REPLY_NIL) {
        pl_log_warning ("redis %s XREADGROUP: malformed reply (type %d)",
                        reader->conn.name, reply->type);
        reader->retry_at = pl_mono_ms () + reader->owner->settings.retry_ms;
        return;
    }
    s_read_result (reader, reply);
    pl_streams_readers_kick (reader);
}

//  Which shards the next read covers and how many entries each may give
//  (COUNT is per stream: n streams at COUNT c may hand out n * c entries).
//  Returns the number of streams picked, 0 when no read may go now.
static int
s_read_pick (reader_t *reader, int *count)
{
    pl_streams_t *self = reader->owner;
    int candidates [self->settings.shards];
    int candidate_count = 0;
    for (int shard = 0; shard < self->settings.shards; shard++)
        if (s_reader_owns (reader, shard) && (reader->phase == PHASE_LIVE || !reader->drained [shard]))
            candidates [candidate_count++] = shard;
    if (candidate_count == 0)
        return 0;
    int streams = candidate_count;
    *count = self->settings.read_count;
    if (reader->persist) {
        long room = s_persist_room (self);
        long limit = self->settings.persist_limit;
        long needed = candidate_count < limit? candidate_count: limit;
        if (room < needed)
            return 0;           //  at the limit: wait for acks
        if (room < streams)
            streams = (int) room;
        if (room / streams < *count)
            *count = (int) (room / streams);
    }
    //  A subset read rotates, so every shard gets its turn
    reader->picked_count = 0;
    for (int index = 0; index < streams; index++)
        reader->picked [reader->picked_count++] =
            candidates [(reader->rotate + index) % candidate_count];
    reader->rotate = (reader->rotate + streams) % candidate_count;
    return streams;
}

//  BLOCK of a live read: short when it covers only some shards (the others
//  wait for their turn), and never past the next claim round
static int
s_read_block_ms (reader_t *reader, int streams)
{
    const settings_t *settings = &reader->owner->settings;
    int owned = reader->only_shard < 0? settings->shards: 1;
    int block_ms = streams < owned && settings->block_ms > settings->subset_block_ms?
                   settings->subset_block_ms: settings->block_ms;
    if (reader->claims && reader->phase == PHASE_LIVE) {
        int64_t until_claim = reader->claim_at - pl_mono_ms ();
        if (until_claim < block_ms)
            block_ms = until_claim < 1? 1: (int) until_claim;
    }
    return block_ms;
}

//  Issue the next XREADGROUP when the reader may read.
static void
s_reader_read (reader_t *reader)
{
    pl_streams_t *self = reader->owner;
    int count = 0;
    int streams = s_read_pick (reader, &count);
    if (streams == 0)
        return;
    char count_text [16], block_text [16];
    snprintf (count_text, sizeof count_text, "%d", count);
    snprintf (block_text, sizeof block_text, "%d", s_read_block_ms (reader, streams));
    int argc = 0;
    const char **argv = reader->argv;
    argv [argc++] = "XREADGROUP";
    argv [argc++] = "GROUP";
    argv [argc++] = reader->group;
    argv [argc++] = self->keys.host_id;
    argv [argc++] = "COUNT";
    argv [argc++] = count_text;
    if (reader->phase == PHASE_LIVE) {
        argv [argc++] = "BLOCK";
        argv [argc++] = block_text;
    }
    argv [argc++] = "STREAMS";
    for (int index = 0; index < streams; index++)
        argv [argc++] = self->keys.stream [reader->picked [index]];
    for (int index = 0; index < streams; index++)
        argv [argc++] = reader->phase == PHASE_LIVE? ">": reader->cursor [reader->picked [index]];
    if (pl_streams_link_send (&reader->conn, s_read_reply, reader, argc, argv, NULL) == 0) {
        reader->busy = true;
        reader->claimed_last = false;
        if (reader->persist) {
            reader->reserved = (long) count * streams;
            self->readers.persist_reserved += reader->reserved;
        }
    }
}


//  --------------------------------------------------------------------------
//  Claims

//  XAUTOCLAIM's reply [cursor, [entry, ...], [deleted id, ...]]
static void
s_claim_result (claim_t *claim, redisReply *reply)
{
    reader_t *reader = claim->reader;
    pl_streams_t *self = reader->owner;
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
                        "were stored, acked", reader->conn.name, deleted->elements,
                        self->keys.stream [claim->shard]);
        for (size_t index = 0; index < deleted->elements; index++)
            if (deleted->element [index]->type == REDIS_REPLY_STRING)
                s_reader_ack (reader, claim->shard, deleted->element [index]->str);
    }
}

//  Every claim of the round answered: read next, and scan on right after
//  that read when a scan is not finished
static void
s_claim_round_done (reader_t *reader)
{
    pl_streams_t *self = reader->owner;
    s_reader_release (reader);
    reader->claimed_last = true;
    bool more = false;
    for (int shard = 0; shard < self->settings.shards; shard++)
        more |= reader->claims [shard].more;
    reader->claim_at = pl_mono_ms () + (more? 0: self->settings.claim_interval_ms);
    pl_streams_readers_kick (reader);
}

static void
s_claim_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    claim_t *claim = (claim_t *) privdata;
    reader_t *reader = claim->reader;
    if (!reply)
        return;                 //  the link is going; cleanup resets the reader
    claim->more = false;
    if (pl_streams_cluster_redirected (reader, reply))
        ;                       //  the link follows the shard; claimed next round
    else
    if (reply->type == REDIS_REPLY_ERROR)
        //  NOGROUP included: the next read finds out and sets groups up again
        pl_log_warning ("redis %s XAUTOCLAIM %s: %s", reader->conn.name,
                        reader->owner->keys.stream [claim->shard], reply->str);
    else
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2
    ||  reply->element [0]->type != REDIS_REPLY_STRING
    ||  reply->element [1]->type != REDIS_REPLY_ARRAY)
        pl_log_warning ("redis %s XAUTOCLAIM: malformed reply (type %d)",
                        reader->conn.name, reply->type);
    else
        s_claim_result (claim, reply);
    if (--reader->claims_waiting > 0)
        return;
    s_claim_round_done (reader);
}

//  A claim round on the persist link: XAUTOCLAIM, pipelined over the
//  shards whose scan is not finished, what consumers (this one included)
//  left pending longer than claim-idle-ms, within the in-flight room left.
//  Returns true when sent.
static bool
s_reader_claim (reader_t *reader)
{
    pl_streams_t *self = reader->owner;
    int shards = self->settings.shards;
    long room = s_persist_room (self);
    if (room < 1)
        return false;
    bool more = false;
    for (int shard = 0; shard < shards; shard++)
        more |= reader->claims [shard].more;
    if (!more)
        //  A new round scans every shard's pending entries from the start
        for (int shard = 0; shard < shards; shard++) {
            strcpy (reader->claims [shard].cursor, "0-0");
            reader->claims [shard].more = s_reader_owns (reader, shard);
        }
    int picked [shards];
    int picked_count = 0;
    for (int shard = 0; shard < shards && picked_count < room; shard++)
        if (reader->claims [shard].more)
            picked [picked_count++] = shard;
    long count = room / picked_count;
    if (count > self->settings.read_count)
        count = self->settings.read_count;
    char count_text [24];
    snprintf (count_text, sizeof count_text, "%ld", count);
    for (int index = 0; index < picked_count; index++) {
        claim_t *claim = &reader->claims [picked [index]];
        const char *argv [] = { "XAUTOCLAIM", self->keys.stream [claim->shard], reader->group,
                                self->keys.host_id, self->settings.claim_idle_text,
                                claim->cursor, "COUNT", count_text };
        if (pl_streams_link_send (&reader->conn, s_claim_reply, claim, 8, argv, NULL))
            break;
        reader->claims_waiting++;
        reader->reserved += count;
    }
    self->readers.persist_reserved += reader->reserved;
    reader->busy = reader->claims_waiting > 0;
    return reader->busy;
}

int64_t
pl_streams_readers_claim_due (pl_streams_t *self, int64_t now)
{
    int64_t next = -1;
    for (int index = 0; index < self->readers.count; index++) {
        reader_t *reader = self->readers.all [index];
        if (reader->persist && reader->conn.enabled && reader->phase == PHASE_LIVE
        &&  !reader->busy && reader->claim_at > now
        &&  (next < 0 || reader->claim_at < next))
            next = reader->claim_at;
    }
    return next;
}


//  --------------------------------------------------------------------------
//  The reader's next step

void
pl_streams_readers_kick (reader_t *reader)
{
    pl_streams_t *self = reader->owner;
    if (!reader->conn.enabled || !reader->conn.ac || reader->busy || self->destroying)
        return;
    if (reader->retry_at && pl_mono_ms () < reader->retry_at)
        return;
    reader->retry_at = 0;
    if (reader->phase == PHASE_SETUP)
        s_reader_setup (reader);
    else {
        if (!reader->persist && self->readers.fanout_held)
            return;             //  the caller cannot take entries now
        if (reader->claims && reader->phase == PHASE_LIVE && !reader->claimed_last
        &&  pl_mono_ms () >= reader->claim_at && s_reader_claim (reader))
            return;
        s_reader_read (reader);
    }
}

void
pl_streams_readers_reset (reader_t *reader)
{
    reader->phase = PHASE_SETUP;
    reader->setup_waiting = 0;
    reader->retry_at = 0;
    reader->claims_waiting = 0;
    reader->claimed_last = false;
    s_reader_release (reader);
}

reader_t *
pl_streams_readers_for (pl_streams_t *self, bool persist, int shard)
{
    if (!self->server.cluster)
        return persist? &self->readers.persist: &self->readers.fanout;
    return &self->readers.per_shard [(persist? self->settings.shards: 0) + shard];
}


//  --------------------------------------------------------------------------
//  Lifecycle

static int
s_reader_init (pl_streams_t *self, reader_t *reader, bool persist,
               pl_entry_fn *callback, int only_shard)
{
    reader->owner = self;
    reader->only_shard = only_shard;
    reader->persist = persist;
    reader->group = persist? "persist": self->keys.fanout_group;
    //  A new persist group stores everything; a new host's fan-out starts live
    reader->start_id = persist? "0": "$";
    reader->callback = callback;
    reader->phase = PHASE_SETUP;
    pl_streams_link_init (&reader->conn, self, persist? "persist": "fanout",
                          self->settings.block_ms + self->settings.request_timeout_ms);
    reader->conn.reader = reader;
    reader->conn.enabled = callback != NULL;
    size_t shards = (size_t) self->settings.shards;
    reader->cursor = calloc (shards, ID_MAX);
    reader->drained = calloc (shards, sizeof (bool));
    reader->picked = calloc (shards, sizeof (int));
    reader->argv = calloc (10 + 2 * shards, sizeof (char *));
    reader->acks = calloc (shards, sizeof (id_list_t));
    if (!reader->cursor || !reader->drained || !reader->picked || !reader->argv || !reader->acks)
        return -1;
    if (persist) {
        reader->claims = calloc (shards, sizeof (claim_t));
        if (!reader->claims)
            return -1;
        for (int shard = 0; shard < self->settings.shards; shard++) {
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
        for (int shard = 0; shard < self->settings.shards; shard++)
            s_id_list_free (&reader->acks [shard]);
    free (reader->acks);
    free (reader->claims);
    free (reader->cursor);
    free (reader->drained);
    free (reader->picked);
    free (reader->argv);
}

//  Single Redis: a fan-out and a persist reader over every shard; cluster:
//  one of each per shard
int
pl_streams_readers_init (pl_streams_t *self, pl_entry_fn *on_fanout, pl_entry_fn *on_persist)
{
    readers_t *readers = &self->readers;
    bool cluster = self->server.cluster;
    int total = cluster? 2 * self->settings.shards: 2;
    readers->inflight = zhashx_new ();
    readers->all = calloc ((size_t) total, sizeof (reader_t *));
    readers->ack_argv = calloc (3 + (size_t) self->settings.ack_batch, sizeof (char *));
    if (cluster)
        readers->per_shard = calloc ((size_t) total, sizeof (reader_t));
    if (!readers->inflight || !readers->all || !readers->ack_argv
    ||  (cluster && !readers->per_shard))
        return -1;
    for (int index = 0; index < total; index++) {
        bool persist = index >= total / 2;
        reader_t *reader = cluster? &readers->per_shard [index]:
                           persist? &readers->persist: &readers->fanout;
        //  Listed first, so destroy frees what a failed init allocated
        readers->all [readers->count++] = reader;
        if (s_reader_init (self, reader, persist, persist? on_persist: on_fanout,
                           cluster? index % self->settings.shards: -1))
            return -1;
    }
    return 0;
}

void
pl_streams_readers_destroy (pl_streams_t *self)
{
    readers_t *readers = &self->readers;
    for (int index = 0; index < readers->count; index++)
        s_reader_free (self, readers->all [index]);
    free (readers->all);
    free (readers->per_shard);
    free (readers->ack_argv);
    zhashx_destroy (&readers->inflight);
}


//  --------------------------------------------------------------------------
//  Public API: acks and the fan-out hold

void
pl_streams_persist_ack (pl_streams_t *self, const char *stream_key, const char *entry_id)
{
    assert (self);
    int shard = pl_streams_readers_shard_of_key (self, stream_key);
    if (shard < 0 || !entry_id || !*entry_id || strlen (entry_id) >= ID_MAX) {
        pl_log_warning ("persist ack of unknown entry %s %s", stream_key? stream_key: "-",
                        entry_id? entry_id: "-");
        return;
    }
    char key [ID_MAX + 16];
    snprintf (key, sizeof key, "%d/%s", shard, entry_id);
    zhashx_delete (self->readers.inflight, key);
    s_reader_ack (pl_streams_readers_for (self, true, shard), shard, entry_id);
}

void
pl_streams_fanout_hold (pl_streams_t *self, bool hold)
{
    assert (self);
    if (hold == self->readers.fanout_held)
        return;
    self->readers.fanout_held = hold;
    if (hold)
        return;
    for (int index = 0; index < self->readers.count; index++) {
        reader_t *reader = self->readers.all [index];
        if (reader->persist)
            continue;
        if (reader->busy && reader->phase != PHASE_SETUP)
            reader->skip_reply = true;
        else
        if (reader->phase != PHASE_SETUP)
            s_reader_restart_pending (reader);
        pl_streams_readers_kick (reader);
    }
}
