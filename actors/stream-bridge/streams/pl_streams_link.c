/*  =========================================================================
    pl_streams_link - hiredis async connections under the caller's zmq_poll

    A tiny event adapter: hiredis's ev hooks only set want-read/write flags,
    pl_streams_pollitems turns them into poll items and pl_streams_link_io
    hands the revents back. A dropped connection is freed by hiredis
    (pending callbacks get a NULL reply, then the cleanup hook runs); the
    cleanup hook is the single place that notices and schedules a reconnect
    with backoff. A link that gets no reply for grace_ms is freed the same
    way, so a hung Redis looks like a lost one.
    =========================================================================
*/
#include "pl_streams_internal.h"

#include <assert.h>
#include <sys/ioctl.h>


//  --------------------------------------------------------------------------
//  Event adapter: hiredis tells us what it wants, the caller's poll waits

static void s_ev_add_read (void *data)  { ((conn_t *) data)->want_read = true; }
static void s_ev_del_read (void *data)  { ((conn_t *) data)->want_read = false; }
static void s_ev_add_write (void *data) { ((conn_t *) data)->want_write = true; }
static void s_ev_del_write (void *data) { ((conn_t *) data)->want_write = false; }

//  Next attempt after the current backoff, which doubles up to the maximum
static void
s_backoff (conn_t *conn)
{
    const settings_t *settings = &conn->owner->settings;
    conn->reconnect_at = pl_mono_ms () + conn->backoff_ms;
    conn->backoff_ms = conn->backoff_ms * 2 > settings->backoff_max_ms?
                       settings->backoff_max_ms: conn->backoff_ms * 2;
}

//  hiredis frees the context: after an I/O error, EOF, a failed connect, or
//  our own redisAsyncFree. Pending callbacks have run with NULL replies.
static void
s_ev_cleanup (void *data)
{
    conn_t *conn = (conn_t *) data;
    pl_streams_t *self = conn->owner;
    const char *why = conn->ac && conn->ac->errstr && *conn->ac->errstr?
                      conn->ac->errstr: "closed";
    //  A link closed on purpose (no broadcast handler) is no news
    if (!self->destroying && conn->enabled) {
        if (conn->connected)
            pl_log_warning ("redis %s connection lost (%s), reconnecting", conn->name, why);
        else
            pl_log_debug ("redis %s connect to %s:%d failed (%s), retry in %d ms",
                          conn->name, conn->ac && conn->ac->c.tcp.host? conn->ac->c.tcp.host:
                          self->server.host, conn->ac? conn->ac->c.tcp.port: self->server.port,
                          why, conn->backoff_ms);
    }
    conn->ac = NULL;
    conn->want_read = conn->want_write = false;
    conn->connected = false;
    conn->outstanding = 0;
    conn->target = -1;
    if (conn == &self->cluster.map)
        self->cluster.loading = false;
    if (conn == &self->sentinel.link)
        self->sentinel.asking = false;
    s_backoff (conn);
    if (conn->reader)
        pl_streams_readers_reset (conn->reader);
    else
    if (conn == &self->broadcast.link)
        self->broadcast.subscribed = false;
    else
        self->janitor.host_at = 0;      //  refresh the host key as soon as we are back
}

static void
s_on_connect (const redisAsyncContext *ac, int status)
{
    conn_t *conn = (conn_t *) ac->data;
    if (status == REDIS_OK) {
        conn->connected = true;
        conn->backoff_ms = conn->owner->settings.backoff_min_ms;
        if (conn->was_connected)
            conn->owner->stats.reconnects++;
        conn->was_connected = true;
        pl_log_debug ("redis %s connected to %s:%d", conn->name,
                      ac->c.tcp.host? ac->c.tcp.host: conn->owner->server.host, ac->c.tcp.port);
    }
}


//  --------------------------------------------------------------------------
//  Commands and replies

int
pl_streams_link_send (conn_t *conn, redisCallbackFn *fn, void *privdata,
                      int argc, const char **argv, const size_t *argvlen)
{
    if (!conn->ac)
        return -1;
    if (redisAsyncCommandArgv (conn->ac, fn, privdata, argc, argv, argvlen) != REDIS_OK)
        return -1;
    //  The watchdog measures from the first request to an idle link
    if (conn->outstanding++ == 0)
        conn->progress_ms = pl_mono_ms ();
    return 0;
}

redisReply *
pl_streams_link_reply (redisAsyncContext *ac, void *reply_p)
{
    conn_t *conn = (conn_t *) ac->data;
    if (conn->outstanding > 0)
        conn->outstanding--;
    conn->progress_ms = pl_mono_ms ();
    return (redisReply *) reply_p;
}

void
pl_streams_link_error_only (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    if (reply && reply->type == REDIS_REPLY_ERROR)
        pl_log_error ("redis %s %s: %s", ((conn_t *) ac->data)->name,
                      (const char *) privdata, reply->str);
}


//  --------------------------------------------------------------------------
//  Connect

void
pl_streams_link_init (conn_t *conn, pl_streams_t *owner, const char *name, int grace_ms)
{
    conn->owner = owner;
    conn->name = name;
    conn->enabled = true;
    conn->target = -1;
    conn->backoff_ms = owner->settings.backoff_min_ms;
    conn->grace_ms = grace_ms;
}

//  What every link sends first (queued in hiredis until the connect
//  completes), then what its role needs before anything else
static void
s_link_greet (conn_t *conn)
{
    pl_streams_t *self = conn->owner;
    if (conn == &self->sentinel.link) {
        pl_streams_sentinel_ask (self);         //  no AUTH, no SELECT
        return;
    }
    if (self->server.password) {
        const char *argv [] = { "AUTH", self->server.password };
        pl_streams_link_send (conn, pl_streams_link_error_only, (void *) "AUTH", 2, argv, NULL);
    }
    if (self->server.db && !self->server.cluster) {
        char number [16];
        snprintf (number, sizeof number, "%d", self->server.db);
        const char *argv [] = { "SELECT", number };
        pl_streams_link_send (conn, pl_streams_link_error_only, (void *) "SELECT", 2, argv, NULL);
    }
    if (conn->reader)
        pl_streams_readers_kick (conn->reader);
    else
    if (conn == &self->cluster.map) {
        self->cluster.stale = true;
        pl_streams_cluster_map_load (self);
    }
    else
    if (conn == &self->broadcast.link)
        pl_streams_broadcast_greet (conn);
    else {
        //  Pipelined ahead of every EVALSHA on this connection, and the
        //  server may have restarted (or be another): a new generation
        pl_streams_append_load_scripts (conn);
        self->generation++;
    }
}

void
pl_streams_link_start (conn_t *conn)
{
    pl_streams_t *self = conn->owner;
    const char *host = NULL;
    int port = 0;
    if (pl_streams_cluster_address (conn, &host, &port)) {
        conn->reconnect_at = pl_mono_ms () + self->settings.backoff_min_ms;
        return;
    }
    redisAsyncContext *ac = redisAsyncConnect (host, port);
    if (!ac || ac->err) {
        pl_log_debug ("redis %s connect: %s", conn->name, ac? ac->errstr: "out of memory");
        if (ac)
            redisAsyncFree (ac);
        s_backoff (conn);
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
    s_link_greet (conn);
}

void
pl_streams_link_close (conn_t *conn)
{
    if (conn->ac && !(conn->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)))
        redisAsyncDisconnect (conn->ac);
}

bool
pl_streams_link_up (conn_t *conn)
{
    return conn->ac && (conn->ac->c.flags & REDIS_CONNECTED);
}

//  Every link, for poll and timers: (cluster) the slot-map link, the
//  command links, the readers, then the broadcast subscriber. At most
//  PL_STREAMS_POLLITEMS_MAX.
int
pl_streams_link_list (pl_streams_t *self, conn_t **conns)
{
    int count = 0;
    if (self->server.cluster)
        conns [count++] = &self->cluster.map;
    if (pl_streams_sentinel_active (self))
        conns [count++] = &self->sentinel.link;
    count += pl_streams_cluster_command_links (self, conns + count);
    for (int index = 0; index < self->readers.count; index++)
        conns [count++] = &self->readers.all [index]->conn;
    conns [count++] = &self->broadcast.link;
    return count;
}


//  --------------------------------------------------------------------------
//  Poll integration

void
pl_streams_link_io (conn_t *conn, redisAsyncContext *ac, short revents)
{
    if (!(ac->c.flags & REDIS_CONNECTED)) {
        //  hiredis finishes (or fails) a connect on a write event
        if (revents & (ZMQ_POLLOUT | ZMQ_POLLERR | ZMQ_POLLIN))
            redisAsyncHandleWrite (ac);
        return;
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
    //  A callback above may have freed the link
    if (conn->ac == ac && (revents & ZMQ_POLLOUT))
        redisAsyncHandleWrite (ac);
}

void
pl_streams_link_tick (conn_t *conn, int64_t now)
{
    if (!conn->enabled)
        return;
    if (!conn->ac) {
        if (now >= conn->reconnect_at)
            pl_streams_link_start (conn);
    }
    else
    if ((conn->outstanding > 0 || !conn->connected)
    &&  now - conn->progress_ms > conn->grace_ms) {
        //  Redis hangs or the network ate the link: start over
        pl_log_warning ("redis %s: no answer for %d ms, reconnecting", conn->name, conn->grace_ms);
        redisAsyncFree (conn->ac);
    }
}

int64_t
pl_streams_link_due (conn_t *conn)
{
    if (!conn->enabled)
        return -1;
    if (!conn->ac)
        return conn->reconnect_at;
    if (conn->outstanding > 0 || !conn->connected)
        return conn->progress_ms + conn->grace_ms + 1;
    if (conn->reader && conn->reader->retry_at && !conn->reader->busy)
        return conn->reader->retry_at;
    return -1;
}


//  --------------------------------------------------------------------------
//  redis://[[user]:password@]host[:port][/db]

//  host, [v6 host] or host:port between url and end; port stays NULL if none
static int
s_parse_host (server_t *server, const char *url, const char *end, const char **port)
{
    if (*url == '[') {
        const char *close = memchr (url, ']', (size_t) (end - url));
        if (!close)
            return -1;
        server->host = strndup (url + 1, (size_t) (close - url - 1));
        if (close + 1 < end) {
            if (close [1] != ':')
                return -1;
            *port = close + 2;
        }
    }
    else {
        const char *colon = memrchr (url, ':', (size_t) (end - url));
        server->host = strndup (url, (size_t) ((colon? colon: end) - url));
        if (colon)
            *port = colon + 1;
    }
    return server->host && *server->host? 0: -1;
}

int
pl_streams_link_parse_url (server_t *server, const char *url)
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
            server->password = strndup (secret, (size_t) (at - secret));
        url = at + 1;
    }
    const char *end = slash? slash: url + strlen (url);
    const char *port = NULL;
    if (s_parse_host (server, url, end, &port))
        return -1;
    server->port = 6379;
    if (port) {
        char *stop = NULL;
        long number = strtol (port, &stop, 10);
        if (stop != end || number < 1 || number > 65535)
            return -1;
        server->port = (int) number;
    }
    if (slash && slash [1]) {
        char *stop = NULL;
        long number = strtol (slash + 1, &stop, 10);
        if (*stop || number < 0 || number > 65535)
            return -1;
        server->db = (int) number;
    }
    return 0;
}
