/*  =========================================================================
    pl_streams - the stream bridge's Redis layer: lifecycle, the poll loop
    hooks and the figures (the rest of the public API lives with its
    concern)

    Links: a command link carries pipelined scripts, XACKs, housekeeping and
    broadcasts; a fan-out and a persist reader link each carry one
    XREADGROUP at a time, because a blocking read occupies its connection;
    the broadcast subscriber has a link of its own too (SUBSCRIBE takes the
    whole connection). Housekeeping shares these links, so it costs no
    thread and no blocking round trip.

    Where to find what, all in this folder:
      pl_streams_internal.h   the private state and what the files share
      pl_streams.c            new, destroy, pollitems, handle, timeout, stats
      pl_streams_link.c       hiredis under zmq_poll, connect, reconnect, backoff
      pl_streams_cluster.c    shards and slots, CLUSTER SLOTS, MOVED and ASK
      pl_streams_append.c     Lua scripts: append, dedup, replay index; signals
      pl_streams_readers.c    group setup, reads, acks, XAUTOCLAIM, fan-out hold
      pl_streams_janitor.c    XTRIM, groups of departed hosts, host key, figures
      pl_streams_dead.c       dead letters
      pl_streams_broadcast.c  best-effort PUBLISH between hosts, the subscriber
      pl_streams_test*.c      the selftest, with a redis-server of its own
    =========================================================================
*/
#include "pl_streams_internal.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>


//  --------------------------------------------------------------------------
//  Lifecycle

//  Settings come from pl_config, which holds every default and checks every
//  range; a value out of range here is a programmer error.
static void
s_settings_init (settings_t *settings, const pl_config_t *config)
{
    assert (config->shards > 0 && config->read_count > 0 && config->block_ms > 0);
    assert (config->persist_inflight > 0 && config->ack_batch > 0);
    assert (config->redis_backoff_min_ms > 0 && config->host_gone_s > 0);
    settings->shards = config->shards;
    settings->read_count = config->read_count;
    settings->block_ms = config->block_ms;
    settings->subset_block_ms = config->subset_block_ms;
    settings->persist_limit = config->persist_inflight;
    settings->request_timeout_ms = config->request_timeout_ms;
    settings->backoff_min_ms = config->redis_backoff_min_ms;
    //  The backoff doubles from the first wait: never below it
    settings->backoff_max_ms = config->redis_backoff_max_ms > config->redis_backoff_min_ms?
                               config->redis_backoff_max_ms: config->redis_backoff_min_ms;
    settings->retry_ms = config->redis_retry_ms;
    settings->ack_batch = config->ack_batch;
    settings->stop_flush_ms = config->stop_flush_ms;
    settings->claim_interval_ms = config->claim_interval_ms;
    settings->janitor_interval_ms = config->janitor_interval_ms;
    settings->stream_retain_s = config->stream_retain_s;
    //  Several refreshes per host-gone-s, so one lost SET does not look like death
    int64_t third = (int64_t) config->host_gone_s * 1000 / 3;
    settings->host_refresh_ms = third < config->host_refresh_ms?
                                (int) third: config->host_refresh_ms;
    snprintf (settings->dedup_ttl_text, sizeof settings->dedup_ttl_text, "%d",
              config->dedup_ttl_s);
    snprintf (settings->window_text, sizeof settings->window_text, "%d", config->replay_window);
    snprintf (settings->index_ttl_text, sizeof settings->index_ttl_text, "%d",
              config->replay_ttl_s);
    snprintf (settings->read_ttl_text, sizeof settings->read_ttl_text, "%d",
              config->read_cache_ttl_s);
    snprintf (settings->claim_idle_text, sizeof settings->claim_idle_text, "%d",
              config->claim_idle_ms);
    snprintf (settings->host_gone_text, sizeof settings->host_gone_text, "%d",
              config->host_gone_s);
    assert (config->broadcast_max_bytes > 0);
    settings->broadcast_max = (size_t) config->broadcast_max_bytes;
    settings->min_replicas = config->redis_min_replicas;
    snprintf (settings->min_replicas_text, sizeof settings->min_replicas_text, "%d",
              config->redis_min_replicas);
    snprintf (settings->wait_timeout_text, sizeof settings->wait_timeout_text, "%d",
              config->redis_wait_timeout_ms);
}

//  Where Redis is: one server, (redis-cluster) seed nodes, or
//  (redis-sentinel-master) the Sentinels that know the primary
static int
s_server_init (pl_streams_t *self, const pl_config_t *config)
{
    server_t *server = &self->server;
    const char *url = config->redis_url;
    assert (url);
    server->cluster = config->redis_cluster;
    if (config->redis_sentinel_master && *config->redis_sentinel_master)
        return pl_streams_sentinel_init (self, config->redis_sentinel_master, url);
    if (server->cluster && pl_streams_cluster_parse_seeds (server, url)) {
        pl_log_error ("redis-url '%s' does not parse (redis://host:port,host:port)", url);
        return -1;
    }
    if (!server->cluster && pl_streams_link_parse_url (server, url)) {
        pl_log_error ("redis-url '%s' does not parse (redis://host:port)", url);
        return -1;
    }
    if (server->cluster
    &&  2 + PL_STREAMS_NODES_MAX + 2 * self->settings.shards > PL_STREAMS_POLLITEMS_MAX) {
        pl_log_error ("redis-cluster takes at most %d shards, not %d",
                      (PL_STREAMS_POLLITEMS_MAX - 2 - PL_STREAMS_NODES_MAX) / 2,
                      self->settings.shards);
        return -1;
    }
    return 0;
}

static int
s_keys_init (pl_streams_t *self, const pl_config_t *config)
{
    keys_t *keys = &self->keys;
    assert (config->host_id && config->key_prefix);
    keys->host_id = strdup (config->host_id);
    keys->prefix = strdup (config->key_prefix);
    keys->stream = calloc ((size_t) self->settings.shards, sizeof (char *));
    keys->seq = calloc ((size_t) self->settings.shards, sizeof (char *));
    if (!keys->host_id || !keys->prefix || !keys->stream || !keys->seq
    ||  asprintf (&keys->fanout_group, "fanout:%s", keys->host_id) < 0
    ||  asprintf (&keys->shard_prefix, "%s:{", keys->prefix) < 0
    ||  asprintf (&keys->host, "%s:host:%s", keys->prefix, keys->host_id) < 0
    ||  asprintf (&keys->dead, "%s:dead", keys->prefix) < 0) {
        //  asprintf leaves its pointer undefined on failure
        keys->fanout_group = keys->shard_prefix = keys->host = keys->dead = NULL;
        return -1;
    }
    for (int shard = 0; shard < self->settings.shards; shard++)
        if (asprintf (&keys->stream [shard], "%s:{%d}:stream", keys->prefix, shard) < 0
        ||  asprintf (&keys->seq [shard], "%s:{%d}:seq", keys->prefix, shard) < 0)
            return -1;
    return 0;
}

static void
s_keys_destroy (keys_t *keys, int shards)
{
    for (int shard = 0; keys->stream && shard < shards; shard++)
        free (keys->stream [shard]);
    for (int shard = 0; keys->seq && shard < shards; shard++)
        free (keys->seq [shard]);
    free (keys->stream);
    free (keys->seq);
    free (keys->host_id);
    free (keys->prefix);
    free (keys->fanout_group);
    free (keys->shard_prefix);
    free (keys->host);
    free (keys->dead);
}

pl_streams_t *
pl_streams_new (const pl_config_t *config, pl_entry_fn *on_fanout,
                pl_entry_fn *on_persist, void *arg)
{
    assert (config);
    pl_streams_t *self = calloc (1, sizeof (pl_streams_t));
    if (!self)
        return NULL;
    self->arg = arg;
    s_settings_init (&self->settings, config);
    pl_streams_link_init (&self->command, self, "command", self->settings.request_timeout_ms);
    if (s_server_init (self, config)
    ||  s_keys_init (self, config)
    ||  pl_streams_broadcast_init (self)
    ||  pl_streams_append_init (self)
    ||  pl_streams_janitor_init (self)
    ||  pl_streams_readers_init (self, on_fanout, on_persist)
    ||  pl_streams_cluster_init (self)) {
        pl_streams_destroy (&self);
        return NULL;
    }
    if (self->settings.persist_limit < self->settings.shards && on_persist)
        pl_log_warning ("persist-inflight %d is below shards %d: persist reads cover "
                        "some shards at a time", self->settings.persist_limit,
                        self->settings.shards);
    if (self->server.cluster)
        //  Masters and readers follow once the slot map is in
        pl_streams_link_start (&self->cluster.map);
    else
    if (pl_streams_sentinel_active (self))
        //  The others follow once a Sentinel named the primary
        pl_streams_link_start (&self->sentinel.link);
    else {
        pl_streams_link_start (&self->command);
        if (self->readers.fanout.conn.enabled)
            pl_streams_link_start (&self->readers.fanout.conn);
        if (self->readers.persist.conn.enabled)
            pl_streams_link_start (&self->readers.persist.conn);
    }
    return self;
}

//  One poll over the command links that are up. Returns -1 when there is
//  nothing more to wait for.
static int
s_flush_poll (pl_streams_t *self, int64_t left)
{
    conn_t *conns [PL_STREAMS_NODES_MAX + 1];
    int count = pl_streams_cluster_command_links (self, conns);
    struct pollfd items [PL_STREAMS_NODES_MAX + 1];
    redisAsyncContext *acs [PL_STREAMS_NODES_MAX + 1];
    int used = 0;
    for (int index = 0; index < count; index++) {
        if (!pl_streams_link_up (conns [index]))
            continue;
        items [used] = (struct pollfd) { .fd = conns [index]->ac->c.fd };
        items [used].events = (short) ((conns [index]->want_read? POLLIN: 0)
                                     | (conns [index]->want_write? POLLOUT: 0));
        acs [used] = conns [index]->ac;
        conns [used++] = conns [index];
    }
    if (used == 0)
        return -1;
    if (poll (items, (nfds_t) used, (int) left) < 0 && errno != EINTR)
        return -1;
    for (int index = 0; index < used; index++) {
        redisAsyncContext *ac = acs [index];
        if (conns [index]->ac == ac && (items [index].revents & (POLLIN | POLLERR | POLLHUP)))
            redisAsyncHandleRead (ac);
        if (conns [index]->ac == ac && (items [index].revents & POLLOUT))
            redisAsyncHandleWrite (ac);
    }
    return 0;
}

//  Send what is batched and wait a little for the replies, so acked fan-out
//  and persist entries are not read again by the next instance.
static void
s_destroy_flush (pl_streams_t *self)
{
    for (int index = 0; index < self->readers.count; index++)
        pl_streams_readers_flush_acks (self->readers.all [index]);
    int64_t deadline = pl_mono_ms () + self->settings.stop_flush_ms;
    while (self->readers.acks_outstanding > 0) {
        int64_t left = deadline - pl_mono_ms ();
        if (left <= 0 || s_flush_poll (self, left))
            break;
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
    bool readers_ready = self->keys.stream && self->readers.count > 0;
    for (int index = 0; index < self->readers.count; index++)
        readers_ready &= self->readers.all [index]->acks != NULL;
    if (readers_ready)
        s_destroy_flush (self);
    //  Pending appends get their callback with an error from hiredis
    conn_t *conns [PL_STREAMS_POLLITEMS_MAX];
    int count = pl_streams_link_list (self, conns);
    for (int index = 0; index < count; index++) {
        if (conns [index]->ac)
            redisAsyncFree (conns [index]->ac);
        pl_streams_append_fail_unconfirmed (conns [index], "shutting down");
    }
    pl_streams_append_run_failed (self);
    //  After the links: their callbacks (NULL replies) still used these
    pl_streams_janitor_destroy (self);
    pl_streams_readers_destroy (self);
    pl_streams_cluster_destroy (self);
    pl_streams_sentinel_destroy (self);
    pl_streams_broadcast_destroy (self);
    s_keys_destroy (&self->keys, self->settings.shards);
    free (self->server.host);
    free (self->server.password);
    free (self);
    *self_p = NULL;
}


//  --------------------------------------------------------------------------
//  Poll integration

int
pl_streams_pollitems (pl_streams_t *self, zmq_pollitem_t *items, int max)
{
    assert (self);
    assert (items || max == 0);
    conn_t *conns [PL_STREAMS_POLLITEMS_MAX];
    int total = pl_streams_link_list (self, conns);
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

//  Reconnects, stalled links, the slot map, readers, host key and janitor
static void
s_handle_timers (pl_streams_t *self, conn_t **conns, int conn_count)
{
    int64_t now = pl_mono_ms ();
    for (int index = 0; index < conn_count; index++)
        pl_streams_link_tick (conns [index], now);
    pl_streams_cluster_tick (self, now);
    pl_streams_sentinel_tick (self, now);
    for (int index = 0; index < self->readers.count; index++)
        pl_streams_readers_kick (self->readers.all [index]);
    if (pl_streams_cluster_commands_up (self))
        pl_streams_janitor_tick (self, pl_mono_ms ());
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
        pl_streams_link_io (conn, ac, items [index].revents);
    }
    pl_streams_append_run_failed (self);

    conn_t *conns [PL_STREAMS_POLLITEMS_MAX];
    int conn_count = pl_streams_link_list (self, conns);
    s_handle_timers (self, conns, conn_count);
    for (int index = 0; index < self->readers.count; index++)
        pl_streams_readers_flush_acks (self->readers.all [index]);
    pl_streams_append_run_failed (self);        //  in case a callback above failed an append
    pl_streams_append_flush_waits (self);

    //  Write what this turn queued now rather than after another poll
    for (int index = 0; index < conn_count; index++)
        if (pl_streams_link_up (conns [index]) && conns [index]->want_write)
            redisAsyncHandleWrite (conns [index]->ac);
    pl_streams_append_run_failed (self);
    self->dirty = false;
    self->in_handle = false;
}

//  The earlier of two mono ms timers; -1 is none
static int64_t
s_earlier (int64_t next, int64_t when)
{
    return when >= 0 && (next < 0 || when < next)? when: next;
}

int
pl_streams_timeout (pl_streams_t *self)
{
    assert (self);
    if (self->dirty || self->scripted.failed_head)
        return 0;
    int64_t now = pl_mono_ms ();
    int64_t next = -1;
    conn_t *conns [PL_STREAMS_POLLITEMS_MAX];
    int conn_count = pl_streams_link_list (self, conns);
    for (int index = 0; index < conn_count; index++)
        next = s_earlier (next, pl_streams_link_due (conns [index]));
    //  Housekeeping timers; one already due but waiting for something else
    //  (a janitor round still out, no in-flight room to claim) is left out,
    //  or the caller's poll would spin
    if (pl_streams_cluster_commands_up (self))
        next = s_earlier (next, pl_streams_janitor_due (self));
    next = s_earlier (next, pl_streams_cluster_due (self));
    next = s_earlier (next, pl_streams_sentinel_due (self));
    next = s_earlier (next, pl_streams_readers_claim_due (self, now));
    if (next < 0)
        return -1;
    return next <= now? 0: (int) (next - now > INT_MAX? INT_MAX: next - now);
}


//  --------------------------------------------------------------------------
//  Figures

void
pl_streams_stats (pl_streams_t *self, pl_streams_stats_t *stats)
{
    assert (self);
    assert (stats);
    *stats = self->stats;
}

size_t
pl_streams_persist_inflight (pl_streams_t *self)
{
    assert (self);
    return zhashx_size (self->readers.inflight);
}

uint64_t
pl_streams_generation (pl_streams_t *self)
{
    assert (self);
    return self->generation;
}

//  A reader that should be reading shard (-1: all) and is not yet
static bool
s_reader_missing (reader_t *reader, int shard)
{
    return reader->conn.enabled
        && (shard < 0 || reader->only_shard < 0 || reader->only_shard == shard)
        && (!pl_streams_link_up (&reader->conn) || reader->phase == PHASE_SETUP);
}

bool
pl_streams_room_ready (pl_streams_t *self, const char *room_id)
{
    assert (self);
    assert (room_id);
    int shard = pl_streams_shard (room_id, self->settings.shards);
    if (!pl_streams_cluster_key_up (self, self->keys.stream [shard]))
        return false;
    for (int index = 0; index < self->readers.count; index++)
        if (s_reader_missing (self->readers.all [index], shard))
            return false;
    return true;
}

bool
pl_streams_connected (pl_streams_t *self)
{
    assert (self);
    if (!pl_streams_cluster_commands_up (self))
        return false;
    for (int index = 0; index < self->readers.count; index++)
        if (s_reader_missing (self->readers.all [index], -1))
            return false;
    return true;
}
