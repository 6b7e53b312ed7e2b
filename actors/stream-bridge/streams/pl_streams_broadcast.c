/*  =========================================================================
    pl_streams_broadcast - best-effort broadcast between the bridges of all
    hosts: PUBLISH on "<prefix>:broadcast", a subscriber link in SUBSCRIBE
    mode hands what comes to the caller's handler

    For what may be lost (typing indicators, presence): nothing goes
    through the streams, the persist group or MongoDB, nothing is stored or
    retried. A PUBLISH goes on a command link that is up (cluster: any
    master, Redis Cluster passes it to the subscribers of every node). The
    subscriber has a link of its own, because SUBSCRIBE takes the whole
    connection; it reconnects like the other links and subscribes again
    each time. What is published while it is away is lost.
    =========================================================================
*/
#include "pl_streams_internal.h"

#include <assert.h>
#include <inttypes.h>

//  A broadcast failing fails again and again (Redis away, a caller over
//  the bound): at most one log line this often
#define LOG_EVERY_MS    10000


//  --------------------------------------------------------------------------
//  Publish

//  One warning per LOG_EVERY_MS, saying how many were left out before it
static void
s_log_limited (pl_streams_t *self, const char *what, const char *detail)
{
    broadcast_t *broadcast = &self->broadcast;
    int64_t now = pl_mono_ms ();
    if (now < broadcast->log_at) {
        broadcast->log_skipped++;
        return;
    }
    if (broadcast->log_skipped)
        pl_log_warning ("redis broadcast %s (%s); %" PRIu64 " more not logged before this",
                        what, detail, broadcast->log_skipped);
    else
        pl_log_warning ("redis broadcast %s (%s)", what, detail);
    broadcast->log_at = now + LOG_EVERY_MS;
    broadcast->log_skipped = 0;
}

//  Only an error is of interest: the count of receivers is no promise
//  that any host's handler got it
static void
s_publish_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    (void) privdata;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        s_log_limited (((conn_t *) ac->data)->owner, "PUBLISH failed", reply->str);
}

//  A command link that is up, NULL when none is. Under a cluster the
//  channel is no key: any master does.
static conn_t *
s_publish_link (pl_streams_t *self)
{
    if (self->server.cluster && !self->cluster.loaded)
        return NULL;
    conn_t *conns [PL_STREAMS_NODES_MAX];
    int count = pl_streams_cluster_command_links (self, conns);
    for (int index = 0; index < count; index++)
        if (pl_streams_link_up (conns [index]))
            return conns [index];
    return NULL;
}

int
pl_streams_broadcast (pl_streams_t *self, const char *payload, size_t size)
{
    assert (self);
    assert (payload || size == 0);
    if (self->destroying)
        return -1;
    conn_t *conn = NULL;
    const char *why = size > self->settings.broadcast_max?
                      "over broadcast-max-bytes": NULL;
    if (!why && !(conn = s_publish_link (self)))
        why = "redis not connected";
    const char *argv [] = { "PUBLISH", self->broadcast.channel, payload? payload: "" };
    size_t argvlen [] = { 7, strlen (self->broadcast.channel), size };
    if (!why && pl_streams_link_send (conn, s_publish_reply, NULL, 3, argv, argvlen))
        why = "not queued";
    if (why) {
        self->stats.broadcasts_dropped++;
        s_log_limited (self, "dropped", why);
        return -1;
    }
    self->stats.broadcasts_sent++;
    return 0;
}


//  --------------------------------------------------------------------------
//  Subscribe

//  The SUBSCRIBE confirmation, then every message of the channel, on the
//  same callback. NULL when the link is gone: the link reconnects by
//  itself and subscribes again.
static void
s_subscribe_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    pl_streams_t *self = ((conn_t *) ac->data)->owner;
    broadcast_t *broadcast = &self->broadcast;
    (void) privdata;
    if (!reply || self->destroying)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
    ||  reply->element [0]->type != REDIS_REPLY_STRING) {
        s_log_limited (self, "subscriber", "unexpected reply");
        return;
    }
    const char *kind = reply->element [0]->str;
    if (streq (kind, "subscribe")) {
        broadcast->subscribed = true;
        pl_log_debug ("redis broadcast: subscribed to %s", broadcast->channel);
    }
    else
    if (streq (kind, "message") && reply->element [2]->type == REDIS_REPLY_STRING
    &&  broadcast->handler) {
        self->stats.broadcasts_received++;
        broadcast->handler (broadcast->arg, reply->element [2]->str,
                            reply->element [2]->len);
    }
}

void
pl_streams_broadcast_greet (conn_t *conn)
{
    pl_streams_t *self = conn->owner;
    //  A subscriber never waits for a reply, so the no-progress watchdog
    //  cannot see a dead peer: TCP keepalive does
    redisEnableKeepAlive (&conn->ac->c);
    const char *argv [] = { "SUBSCRIBE", self->broadcast.channel };
    //  Queued on a link just started: fails only out of memory, the link
    //  watchdog then finds it silent and starts over
    if (pl_streams_link_send (conn, s_subscribe_reply, NULL, 2, argv, NULL))
        pl_log_error ("redis broadcast: SUBSCRIBE not queued");
}

void
pl_streams_set_broadcast_handler (pl_streams_t *self, pl_broadcast_fn *handler, void *arg)
{
    assert (self);
    broadcast_t *broadcast = &self->broadcast;
    broadcast->handler = handler;
    broadcast->arg = arg;
    conn_t *link = &broadcast->link;
    if (handler && !link->enabled) {
        //  Connects on the next pl_streams_handle: its timer is due now
        link->enabled = true;
        link->reconnect_at = 0;
    }
    else
    if (!handler && link->enabled) {
        pl_log_debug ("redis broadcast: no handler, subscriber closed");
        link->enabled = false;
        broadcast->subscribed = false;
        pl_streams_link_close (link);
    }
}


//  --------------------------------------------------------------------------
//  Lifecycle

int
pl_streams_broadcast_init (pl_streams_t *self)
{
    broadcast_t *broadcast = &self->broadcast;
    pl_streams_link_init (&broadcast->link, self, "broadcast",
                          self->settings.request_timeout_ms);
    broadcast->link.enabled = false;        //  until a handler is set
    if (asprintf (&broadcast->channel, "%s:broadcast", self->keys.prefix) < 0) {
        broadcast->channel = NULL;          //  asprintf leaves it undefined
        return -1;
    }
    return 0;
}

void
pl_streams_broadcast_destroy (pl_streams_t *self)
{
    free (self->broadcast.channel);
    self->broadcast.channel = NULL;
}
