/*  =========================================================================
    pl_streams_sentinel - a single primary found through Redis Sentinel

    With redis-sentinel-master, redis-url names Sentinels instead of the
    primary. One link goes to them in turn and asks SENTINEL
    get-master-addr-by-name once it connects and every redis-retry-ms
    after (a failover shows in the next answer; polling needs no second,
    subscribed link). Until the first answer, the command, reader and
    broadcast links do not connect. When the answer names another server,
    they close and reconnect there: the new command link is a new
    generation, so every room's counter is checked against MongoDB before
    its next append (pl_floors), as after any new connection.

    Sentinels are asked without AUTH (a Sentinel's own requirepass is not
    supported); the password of redis-url goes to the primary.
    =========================================================================
*/
#include "pl_streams_internal.h"

#include <assert.h>

bool
pl_streams_sentinel_active (pl_streams_t *self)
{
    return self->sentinel.master_name != NULL;
}

int
pl_streams_sentinel_init (pl_streams_t *self, const char *master_name, const char *url)
{
    if (!master_name || !*master_name)
        return 0;
    if (self->server.cluster) {
        pl_log_error ("redis-sentinel-master and redis-cluster exclude each other");
        return -1;
    }
    //  Sentinels are listed like cluster seeds: redis://[:pw@]h1:p1,h2:p2
    if (pl_streams_cluster_parse_seeds (&self->server, url)) {
        pl_log_error ("redis-url '%s' does not parse (redis://sentinel:port,sentinel:port)", url);
        return -1;
    }
    self->sentinel.master_name = strdup (master_name);
    if (!self->sentinel.master_name)
        return -1;
    pl_streams_link_init (&self->sentinel.link, self, "sentinel", self->settings.request_timeout_ms);
    return 0;
}

void
pl_streams_sentinel_destroy (pl_streams_t *self)
{
    free (self->sentinel.master_name);
}

//  The links that speak to the primary close; each reconnects (to the
//  address now known) from its cleanup, with the shortest backoff
static void
s_links_move (pl_streams_t *self)
{
    conn_t *conns [PL_STREAMS_POLLITEMS_MAX];
    int count = pl_streams_link_list (self, conns);
    for (int index = 0; index < count; index++) {
        conn_t *conn = conns [index];
        if (conn == &self->sentinel.link)
            continue;
        conn->backoff_ms = self->settings.backoff_min_ms;
        if (conn->ac)
            pl_streams_link_close (conn);
        else
            conn->reconnect_at = 0;
    }
}

//  [host, port] of the primary, nil when the Sentinel does not know the name
static void
s_master_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    pl_streams_t *self = ((conn_t *) ac->data)->owner;
    sentinel_t *sentinel = &self->sentinel;
    (void) privdata;
    sentinel->asking = false;
    if (!reply)
        return;                 //  asked again once the link is back
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
    ||  reply->element [0]->type != REDIS_REPLY_STRING
    ||  reply->element [1]->type != REDIS_REPLY_STRING) {
        pl_log_error ("redis sentinel %s:%d does not know a primary named '%s' (%s)",
                      ac->c.tcp.host, ac->c.tcp.port, sentinel->master_name,
                      reply->type == REDIS_REPLY_ERROR? reply->str: "no address");
        return;
    }
    const char *host = reply->element [0]->str;
    char *end = NULL;
    long port = strtol (reply->element [1]->str, &end, 10);
    if (!*host || *end || port < 1 || port > 65535) {
        pl_log_error ("redis sentinel: malformed address %s:%s", host, reply->element [1]->str);
        return;
    }
    if (sentinel->known && self->server.port == port && streq (self->server.host, host))
        return;
    char *copy = strdup (host);
    if (!copy)
        return;
    pl_log_warning ("redis sentinel: the primary of '%s' is %s:%ld%s", sentinel->master_name,
                    host, port, sentinel->known? ", was another: reconnecting": "");
    free (self->server.host);
    self->server.host = copy;
    self->server.port = (int) port;
    sentinel->known = true;
    s_links_move (self);
    self->dirty = true;
}

void
pl_streams_sentinel_ask (pl_streams_t *self)
{
    sentinel_t *sentinel = &self->sentinel;
    if (sentinel->asking || !sentinel->link.ac)
        return;
    const char *argv [] = { "SENTINEL", "get-master-addr-by-name", sentinel->master_name };
    if (pl_streams_link_send (&sentinel->link, s_master_reply, NULL, 3, argv, NULL) == 0) {
        sentinel->asking = true;
        sentinel->ask_at = pl_mono_ms () + self->settings.retry_ms;
    }
}

int64_t
pl_streams_sentinel_due (pl_streams_t *self)
{
    sentinel_t *sentinel = &self->sentinel;
    if (!pl_streams_sentinel_active (self) || sentinel->asking
    ||  !pl_streams_link_up (&sentinel->link))
        return -1;
    return sentinel->ask_at;
}

void
pl_streams_sentinel_tick (pl_streams_t *self, int64_t now)
{
    int64_t due = pl_streams_sentinel_due (self);
    if (due >= 0 && now >= due)
        pl_streams_sentinel_ask (self);
}
