/*  =========================================================================
    pl_streams_dead - dead letters: a persist entry that cannot be stored
    moves to the stream "<prefix>:dead" with its error

    Single Redis: one MULTI/EXEC (XADD to the dead stream, XACK from the
    persist group), so the entry is never both pending and dead-lettered
    (doubled) nor acked without its copy (lost). Under Redis Cluster the
    dead stream is another slot: XADD first, XACK only once the XADD
    answered with an id. Until then the entry stays pending and comes back
    (re-read after a reconnect, or claimed once idle).
    =========================================================================
*/
#include "pl_streams_internal.h"

#include <assert.h>
#include <inttypes.h>

//  A dead-letter request waiting for its replies
typedef struct {
    pl_streams_t *owner;
    char inflight_key [ID_MAX + 16];
    char *stream_key;
    char *entry_id;
    int shard;
    char dead_id [ID_MAX];      //  cluster: id of the copy in the dead stream
} dead_op_t;

//  The entry leaves the persist in-flight set, done or not: if it stays
//  pending it comes back to the caller as if new
static void
s_dead_free (dead_op_t *dead)
{
    pl_streams_t *self = dead->owner;
    zhashx_delete (self->readers.inflight, dead->inflight_key);
    self->dirty = true;
    free (dead->stream_key);
    free (dead->entry_id);
    free (dead);
}

//  Text of a failed reply, for the log
static const char *
s_reply_error (redisReply *reply)
{
    return !reply? "connection lost": reply->type == REDIS_REPLY_ERROR?
           reply->str: "unexpected reply";
}

//  Single Redis: the EXEC reply, [XADD id, XACK count] when it went through
static void
s_exec_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    dead_op_t *dead = (dead_op_t *) privdata;
    pl_streams_t *self = dead->owner;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
    &&  reply->element [0]->type == REDIS_REPLY_STRING) {
        self->stats.dead_lettered++;
        pl_log_error ("entry %s of %s could not be stored, moved to %s as %s",
                      dead->entry_id, dead->stream_key, self->keys.dead, reply->element [0]->str);
    }
    else
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2)
        //  XADD failed at run time (the dead key is not a stream?) while
        //  the XACK went through: say loudly what to recover by hand
        pl_log_error ("entry %s of %s LOST: XADD to %s failed (%s) but it was acked",
                      dead->entry_id, dead->stream_key, self->keys.dead,
                      s_reply_error (reply->element [0]));
    else
        //  Nothing happened: the entry is still pending and comes back
        pl_log_error ("entry %s of %s: dead-letter transaction failed (%s), it stays pending",
                      dead->entry_id, dead->stream_key, s_reply_error (reply));
    s_dead_free (dead);
}

//  Cluster, second step: the XACK after the copy is in the dead stream
static void
s_xack_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    dead_op_t *dead = (dead_op_t *) privdata;
    pl_streams_t *self = dead->owner;
    if (reply && reply->type == REDIS_REPLY_INTEGER) {
        self->stats.dead_lettered++;
        pl_log_error ("entry %s of %s could not be stored, moved to %s as %s",
                      dead->entry_id, dead->stream_key, self->keys.dead, dead->dead_id);
    }
    else
        //  Copied, not acked: it comes back and may be dead-lettered twice,
        //  which beats losing it
        pl_log_error ("entry %s of %s copied to %s as %s, but XACK failed (%s): it stays pending",
                      dead->entry_id, dead->stream_key, self->keys.dead, dead->dead_id,
                      s_reply_error (reply));
    s_dead_free (dead);
}

//  Cluster, first step: the XADD to the dead stream
static void
s_xadd_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    dead_op_t *dead = (dead_op_t *) privdata;
    pl_streams_t *self = dead->owner;
    if (reply && reply->type == REDIS_REPLY_STRING && reply->len < ID_MAX) {
        strcpy (dead->dead_id, reply->str);
        const char *xack [] = { "XACK", dead->stream_key,
                                pl_streams_readers_for (self, true, dead->shard)->group,
                                dead->entry_id };
        if (pl_streams_cluster_send (self, dead->stream_key, s_xack_reply, dead, 4, xack, NULL) == 0)
            return;
        pl_log_error ("entry %s of %s copied to %s as %s, XACK not sent: it stays pending",
                      dead->entry_id, dead->stream_key, self->keys.dead, dead->dead_id);
        s_dead_free (dead);
        return;
    }
    pl_log_error ("entry %s of %s: XADD to %s failed (%s), it stays pending",
                  dead->entry_id, dead->stream_key, self->keys.dead, s_reply_error (reply));
    s_dead_free (dead);
}

//  Single Redis: MULTI, XADD, XACK, EXEC on the command link
static void
s_dead_transaction (dead_op_t *dead, const pl_entry_t *entry, int argc, const char **xadd)
{
    pl_streams_t *self = dead->owner;
    conn_t *command = &self->command;
    const char *xack [] = { "XACK", entry->stream_key, self->readers.persist.group,
                            entry->entry_id };
    const char *multi [] = { "MULTI" };
    const char *exec [] = { "EXEC" };
    if (pl_streams_link_send (command, pl_streams_link_error_only, (void *) "MULTI", 1, multi, NULL)) {
        //  Not connected: it stays pending and comes back
        pl_log_error ("entry %s of %s could not be moved to %s: redis not connected",
                      entry->entry_id, entry->stream_key, self->keys.dead);
        s_dead_free (dead);
        return;
    }
    if (pl_streams_link_send (command, pl_streams_link_error_only, (void *) "XADD dead",
                              argc, xadd, NULL)
    ||  pl_streams_link_send (command, pl_streams_link_error_only, (void *) "XACK dead",
                              4, xack, NULL)
    ||  pl_streams_link_send (command, s_exec_reply, dead, 1, exec, NULL)) {
        //  Only out of memory gets here. The link is inside MULTI: close it
        //  after its replies, so nothing else lands in the transaction
        pl_log_error ("out of memory in a dead-letter transaction, closing the command link");
        redisAsyncDisconnect (command->ac);
        //  s_exec_reply was not registered (EXEC is the last one sent)
        s_dead_free (dead);
    }
}

static dead_op_t *
s_dead_new (pl_streams_t *self, const pl_entry_t *entry, int shard)
{
    dead_op_t *dead = calloc (1, sizeof (dead_op_t));
    if (dead) {
        dead->owner = self;
        dead->shard = shard;
        dead->stream_key = strdup (entry->stream_key);
        dead->entry_id = strdup (entry->entry_id);
        snprintf (dead->inflight_key, sizeof dead->inflight_key, "%d/%s", shard, entry->entry_id);
    }
    if (!dead || !dead->stream_key || !dead->entry_id) {
        pl_log_error ("out of memory moving entry %s of %s to %s", entry->entry_id,
                      entry->stream_key, self->keys.dead);
        if (dead) {
            free (dead->stream_key);
            free (dead->entry_id);
            free (dead);
        }
        return NULL;
    }
    return dead;
}

void
pl_streams_persist_fail (pl_streams_t *self, const pl_entry_t *entry, const char *error)
{
    assert (self);
    assert (entry);
    int shard = pl_streams_readers_shard_of_key (self, entry->stream_key);
    if (shard < 0 || !entry->entry_id || !*entry->entry_id || strlen (entry->entry_id) >= ID_MAX) {
        pl_log_warning ("persist failure of unknown entry %s %s",
                        entry->stream_key? entry->stream_key: "-",
                        entry->entry_id? entry->entry_id: "-");
        return;
    }
    dead_op_t *dead = s_dead_new (self, entry, shard);
    if (!dead)
        return;
    char seq [24], created [24], failed_at [24];
    snprintf (seq, sizeof seq, "%" PRId64, entry->seq);
    snprintf (created, sizeof created, "%" PRId64, entry->created_ms);
    snprintf (failed_at, sizeof failed_at, "%" PRId64, pl_clock_ms ());
    const char *xadd [] = {
        "XADD", self->keys.dead, "*", "v", "1",
        "room", entry->room_id? entry->room_id: "", "seq", seq,
        "type", entry->type? entry->type: "", "sender", entry->sender_id? entry->sender_id: "",
        "name", entry->sender_name? entry->sender_name: "",
        "content", entry->content? entry->content: "",
        "cmid", entry->client_msg_id? entry->client_msg_id: "", "created", created,
        "stream", entry->stream_key, "entry_id", entry->entry_id,
        "error", error? error: "unknown error", "failed_at", failed_at };
    int argc = (int) (sizeof xadd / sizeof xadd [0]);
    if (!self->server.cluster)
        s_dead_transaction (dead, entry, argc, xadd);
    else
    if (pl_streams_cluster_send (self, self->keys.dead, s_xadd_reply, dead, argc, xadd, NULL)) {
        pl_log_error ("entry %s of %s could not be moved to %s: redis not connected",
                      entry->entry_id, entry->stream_key, self->keys.dead);
        s_dead_free (dead);
    }
}
