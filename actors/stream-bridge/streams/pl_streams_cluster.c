/*  =========================================================================
    pl_streams_cluster - Redis Cluster routing: slot of a key, the slot map
    from CLUSTER SLOTS, one command link per master, MOVED and ASK followed

    Single Redis takes none of these paths: pl_streams_cluster_send goes
    straight to the one command link, and the one reader per group reads
    every shard. Under a cluster each shard has a fan-out and a persist
    reader of its own (XREADGROUP cannot span slots) on the master that
    owns the shard's slot; they reconnect when the slot moves.
    =========================================================================
*/
#include "pl_streams_internal.h"

#include <assert.h>

//  A command with what it takes to resend it after MOVED or ASK
typedef struct {
    pl_streams_t *owner;
    redisCallbackFn *fn;
    void *privdata;
    bool pinned;                //  a MOVED goes to fn, not resent
    int redirects;
    int argc;
    const char **argv;          //  point into the same allocation
    size_t *argvlen;
} creq_t;

typedef enum { REDIRECT_NONE, REDIRECT_MOVED, REDIRECT_ASK } redirect_t;


//  --------------------------------------------------------------------------
//  Slots and shards

//  CRC16-XMODEM (poly 0x1021, init 0), the one Redis Cluster uses for slots
uint16_t
pl_streams_cluster_crc16 (const char *data, size_t length)
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
    return (int) (pl_streams_cluster_crc16 (room_id, strlen (room_id)) % (unsigned) shards);
}

//  Redis Cluster's key slot: CRC16 of the hash tag (the text between the
//  first '{' and the next '}', when not empty), else of the whole key
int
pl_streams_cluster_keyslot (const char *key)
{
    const char *open = strchr (key, '{');
    if (open) {
        const char *close = strchr (open + 1, '}');
        if (close && close > open + 1)
            return pl_streams_cluster_crc16 (open + 1, (size_t) (close - open - 1))
                   & (CLUSTER_SLOTS - 1);
    }
    return pl_streams_cluster_crc16 (key, strlen (key)) & (CLUSTER_SLOTS - 1);
}

//  Credentials before '@' parsed as for one server; no /db in a cluster
static int
s_parse_credentials (server_t *server, const char *url, const char *at)
{
    char *first = strndup (url, (size_t) (at - url) + 1);
    char *text = NULL;
    int rc = first && asprintf (&text, "%sx", first) > 0?
             pl_streams_link_parse_url (server, text): -1;
    free (first);
    free (text);
    free (server->host);
    server->host = NULL;
    return rc;
}

int
pl_streams_cluster_parse_seeds (server_t *server, const char *url)
{
    if (!strncmp (url, "redis://", 8))
        url += 8;
    const char *at = strrchr (url, '@');
    if (at) {
        if (s_parse_credentials (server, url, at))
            return -1;
        url = at + 1;
    }
    char *list = strdup (url);
    if (!list)
        return -1;
    int rc = 0;
    char *save = NULL;
    for (char *item = strtok_r (list, ",", &save); item && rc == 0;
         item = strtok_r (NULL, ",", &save)) {
        server_t probe = { 0 };
        if (server->seed_count == SEEDS_MAX || strchr (item, '/')
        ||  pl_streams_link_parse_url (&probe, item))
            rc = -1;
        else {
            server->seed_hosts [server->seed_count] = probe.host;
            server->seed_ports [server->seed_count++] = probe.port;
            probe.host = NULL;
        }
        free (probe.host);
        free (probe.password);
    }
    free (list);
    if (rc || server->seed_count == 0)
        return -1;
    //  For the logs
    server->host = strdup (server->seed_hosts [0]);
    server->port = server->seed_ports [0];
    return server->host? 0: -1;
}


//  --------------------------------------------------------------------------
//  Masters and their command links

//  Index of the master host:port, added when new; -1 when the table is full
static int
s_node_get (pl_streams_t *self, const char *host, int port)
{
    cluster_t *cluster = &self->cluster;
    for (int index = 0; index < cluster->node_count; index++)
        if (cluster->nodes [index]->port == port && streq (cluster->nodes [index]->host, host))
            return index;
    if (cluster->node_count == PL_STREAMS_NODES_MAX
    ||  strlen (host) >= sizeof cluster->nodes [0]->host) {
        pl_log_error ("redis cluster: no room for node %s:%d", host, port);
        return -1;
    }
    node_t *node = calloc (1, sizeof (node_t));
    if (!node)
        return -1;
    strcpy (node->host, host);
    node->port = port;
    pl_streams_link_init (&node->command, self, "command", self->settings.request_timeout_ms);
    node->command.node = node;
    cluster->nodes [cluster->node_count] = node;
    self->dirty = true;         //  the next turn connects it
    return cluster->node_count++;
}

//  The slot's master is now the node at index: the counts of slots per
//  node follow, and a master that serves slots keeps its link up
static void
s_slot_assign (pl_streams_t *self, int slot, int index)
{
    cluster_t *cluster = &self->cluster;
    int before = cluster->slot_node [slot];
    if (before == index)
        return;
    if (before >= 0)
        cluster->nodes [before]->slots--;
    cluster->slot_node [slot] = (int16_t) index;
    if (index >= 0) {
        node_t *node = cluster->nodes [index];
        node->slots++;
        if (!node->command.enabled) {
            node->command.enabled = true;       //  out of its rest, now
            node->command.reconnect_at = 0;
        }
    }
}

//  Command link of a slot's master, NULL when unknown or down
static conn_t *
s_slot_conn (pl_streams_t *self, int slot)
{
    int index = self->cluster.loaded? self->cluster.slot_node [slot]: -1;
    if (index < 0 || !self->cluster.nodes [index]->command.ac)
        return NULL;
    return &self->cluster.nodes [index]->command;
}

int
pl_streams_cluster_address (conn_t *conn, const char **host, int *port)
{
    pl_streams_t *self = conn->owner;
    server_t *server = &self->server;
    *host = server->host;
    *port = server->port;
    if (pl_streams_sentinel_active (self)) {
        if (conn != &self->sentinel.link)
            return self->sentinel.known? 0: -1;     //  once a Sentinel named it
        int seed = server->seed_next++ % server->seed_count;
        *host = server->seed_hosts [seed];
        *port = server->seed_ports [seed];
        return 0;
    }
    if (!server->cluster)
        return 0;
    if (conn == &self->cluster.map) {
        //  Seeds in turn, so one that is down does not keep us out
        int seed = server->seed_next++ % server->seed_count;
        *host = server->seed_hosts [seed];
        *port = server->seed_ports [seed];
    }
    else
    if (conn->node) {
        *host = conn->node->host;
        *port = conn->node->port;
    }
    else
    if (conn == &self->broadcast.link) {
        //  Every node hears a PUBLISH made on any: the masters in turn, so
        //  one that is down does not keep the subscriber out
        if (self->cluster.node_count == 0)
            return -1;
        int index = self->broadcast.next_node % self->cluster.node_count;
        self->broadcast.next_node = index + 1;
        *host = self->cluster.nodes [index]->host;
        *port = self->cluster.nodes [index]->port;
        conn->target = index;
    }
    else {
        //  A reader goes to the master of its shard's slot, once known
        int slot = pl_streams_cluster_keyslot (self->keys.stream [conn->reader->only_shard]);
        int index = self->cluster.loaded? self->cluster.slot_node [slot]: -1;
        if (index < 0)
            return -1;
        *host = self->cluster.nodes [index]->host;
        *port = self->cluster.nodes [index]->port;
        conn->target = index;
    }
    return 0;
}

int
pl_streams_cluster_command_links (pl_streams_t *self, conn_t **conns)
{
    if (!self->server.cluster) {
        conns [0] = &self->command;
        return 1;
    }
    for (int index = 0; index < self->cluster.node_count; index++)
        conns [index] = &self->cluster.nodes [index]->command;
    return self->cluster.node_count;
}

bool
pl_streams_cluster_commands_up (pl_streams_t *self)
{
    if (self->server.cluster && !self->cluster.loaded)
        return false;
    conn_t *conns [PL_STREAMS_NODES_MAX];
    int count = pl_streams_cluster_command_links (self, conns);
    for (int index = 0; index < count; index++)
        //  A master that lost its slots (failed over) does not count
        if ((!conns [index]->node || conns [index]->node->slots > 0)
        &&  !pl_streams_link_up (conns [index]))
            return false;
    return true;
}


//  --------------------------------------------------------------------------
//  Sending by key, MOVED and ASK

static void s_request_reply (redisAsyncContext *ac, void *reply_p, void *privdata);

//  A copy of the command in one allocation, for a resend after a redirect
static creq_t *
s_request_new (pl_streams_t *self, redisCallbackFn *fn, void *privdata,
               int argc, const char **argv, const size_t *argvlen)
{
    size_t total = sizeof (creq_t) + (size_t) argc * (sizeof (char *) + sizeof (size_t));
    for (int index = 0; index < argc; index++)
        total += (argvlen? argvlen [index]: strlen (argv [index])) + 1;
    creq_t *request = calloc (1, total);
    if (!request)
        return NULL;
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
    return request;
}

static int
s_send (pl_streams_t *self, const char *key, bool pinned, redisCallbackFn *fn,
        void *privdata, int argc, const char **argv, const size_t *argvlen)
{
    if (!self->server.cluster)
        return pl_streams_link_send (&self->command, fn, privdata, argc, argv, argvlen);
    conn_t *conn = s_slot_conn (self, pl_streams_cluster_keyslot (key));
    if (!conn)
        return -1;
    creq_t *request = s_request_new (self, fn, privdata, argc, argv, argvlen);
    if (!request)
        return -1;
    request->pinned = pinned;
    if (pl_streams_link_send (conn, s_request_reply, request, argc,
                              request->argv, request->argvlen)) {
        free (request);
        return -1;
    }
    return 0;
}

int
pl_streams_cluster_send (pl_streams_t *self, const char *key, redisCallbackFn *fn,
                         void *privdata, int argc, const char **argv, const size_t *argvlen)
{
    return s_send (self, key, false, fn, privdata, argc, argv, argvlen);
}

int
pl_streams_cluster_send_pinned (pl_streams_t *self, const char *key, redisCallbackFn *fn,
                                void *privdata, int argc, const char **argv,
                                const size_t *argvlen)
{
    return s_send (self, key, true, fn, privdata, argc, argv, argvlen);
}

bool
pl_streams_cluster_key_up (pl_streams_t *self, const char *key)
{
    if (!self->server.cluster)
        return pl_streams_link_up (&self->command);
    conn_t *conn = s_slot_conn (self, pl_streams_cluster_keyslot (key));
    return conn && pl_streams_link_up (conn);
}

//  "MOVED <slot> <host>:<port>" or "ASK ..."
static redirect_t
s_redirect_parse (redisReply *reply, int *slot, char *host, size_t size, int *port)
{
    if (!reply || reply->type != REDIS_REPLY_ERROR)
        return REDIRECT_NONE;
    redirect_t kind = !strncmp (reply->str, "MOVED ", 6)? REDIRECT_MOVED:
                      !strncmp (reply->str, "ASK ", 4)? REDIRECT_ASK: REDIRECT_NONE;
    if (!kind)
        return REDIRECT_NONE;
    const char *scan = reply->str + (kind == REDIRECT_MOVED? 6: 4);
    char *end = NULL;
    long number = strtol (scan, &end, 10);
    if (end == scan || *end != ' ' || number < 0 || number >= CLUSTER_SLOTS)
        return REDIRECT_NONE;
    *slot = (int) number;
    const char *address = end + 1;
    const char *colon = strrchr (address, ':');
    if (!colon || (size_t) (colon - address) >= size)
        return REDIRECT_NONE;
    memcpy (host, address, (size_t) (colon - address));
    host [colon - address] = 0;
    number = strtol (colon + 1, &end, 10);
    if (*end || number < 1 || number > 65535)
        return REDIRECT_NONE;
    *port = (int) number;
    //  An empty host means "the node you asked"; not what Redis 7 sends us
    return *host? kind: REDIRECT_NONE;
}

//  MOVED: the slot's master, known right away for what follows; the full
//  map comes next. Returns the master's node index, -1 when no room.
static int
s_moved (pl_streams_t *self, int slot, const char *host, int port)
{
    int index = s_node_get (self, host, port);
    if (index >= 0)
        s_slot_assign (self, slot, index);
    pl_streams_cluster_map_load (self);
    self->stats.redirects++;
    //  Another server answers for the slot: what it holds was not checked
    self->generation++;
    return index;
}

//  Resend a redirected command to the master named. Returns 0 when sent.
static int
s_request_follow (creq_t *request, redirect_t kind, int slot, const char *host, int port)
{
    pl_streams_t *self = request->owner;
    request->redirects++;
    int index = kind == REDIRECT_MOVED? s_moved (self, slot, host, port):
                                        s_node_get (self, host, port);
    if (index < 0)
        return -1;
    conn_t *target = &self->cluster.nodes [index]->command;
    if (!target->ac)
        pl_streams_link_start (target);         //  a master we had no link to yet
    if (kind == REDIRECT_ASK) {
        //  Migration under way: this command only, the map stays
        const char *asking [] = { "ASKING" };
        pl_streams_link_send (target, pl_streams_link_error_only, (void *) "ASKING", 1, asking, NULL);
    }
    return pl_streams_link_send (target, s_request_reply, request, request->argc,
                                 request->argv, request->argvlen);
}

static void
s_request_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    creq_t *request = (creq_t *) privdata;
    pl_streams_t *self = request->owner;
    char host [256];
    int slot = 0, port = 0;
    redirect_t kind = self->destroying? REDIRECT_NONE:
                      s_redirect_parse (reply_p, &slot, host, sizeof host, &port);
    if (kind == REDIRECT_MOVED && request->pinned)
        s_moved (self, slot, host, port);       //  the caller hears the MOVED
    else
    if (kind && request->redirects < PL_STREAMS_REDIRECTS_MAX) {
        if (s_request_follow (request, kind, slot, host, port) == 0) {
            if (kind == REDIRECT_ASK)
                self->stats.redirects++;
            pl_streams_link_reply (ac, reply_p);
            return;
        }
    }
    else
    if (kind)
        pl_log_error ("redis cluster: %s redirected %d times, giving up", request->argv [0],
                      request->redirects);
    //  The caller's callback counts the reply on this link
    request->fn (ac, reply_p, request->privdata);
    free (request);
}


//  --------------------------------------------------------------------------
//  The slot map

//  One range [start, end, [host, port, id, ...], replicas ...] into the
//  map: masters only. Returns the slots it covered.
static int
s_slots_range (pl_streams_t *self, redisReply *range, const char *asked)
{
    if (range->type != REDIS_REPLY_ARRAY || range->elements < 3
    ||  range->element [0]->type != REDIS_REPLY_INTEGER
    ||  range->element [1]->type != REDIS_REPLY_INTEGER
    ||  range->element [2]->type != REDIS_REPLY_ARRAY
    ||  range->element [2]->elements < 2
    ||  range->element [2]->element [0]->type != REDIS_REPLY_STRING
    ||  range->element [2]->element [1]->type != REDIS_REPLY_INTEGER)
        return 0;
    long long first = range->element [0]->integer;
    long long last = range->element [1]->integer;
    const char *host = range->element [2]->element [0]->str;
    //  "" when the node does not know its address: the one we asked
    int node = s_node_get (self, *host? host: asked,
                           (int) range->element [2]->element [1]->integer);
    int covered = 0;
    for (long long slot = first; node >= 0 && slot <= last; slot++)
        if (slot >= 0 && slot < CLUSTER_SLOTS) {
            s_slot_assign (self, (int) slot, node);
            covered++;
        }
    return covered;
}

//  Readers whose shard moved go to the new master; one that is down tries
//  at once (its master may have been the one that failed)
static void
s_readers_follow (pl_streams_t *self, int64_t now)
{
    for (int index = 0; index < self->readers.count; index++) {
        reader_t *reader = self->readers.all [index];
        conn_t *conn = &reader->conn;
        int slot = pl_streams_cluster_keyslot (self->keys.stream [reader->only_shard]);
        if (!conn->ac && conn->reconnect_at > now)
            conn->reconnect_at = now;
        else
        if (conn->ac && conn->target >= 0 && conn->target != self->cluster.slot_node [slot]) {
            pl_log_info ("redis %s reader of shard %d: slot %d moved, reconnecting",
                         conn->name, reader->only_shard, slot);
            pl_streams_link_close (conn);
        }
    }
}

//  A master left with no slots (its replica took over, or it handed them
//  all on) rests: no reconnects to a dead server, and back as a replica it
//  does not count as a new generation. A MOVED to it wakes it.
static void
s_nodes_rest (pl_streams_t *self)
{
    for (int index = 0; index < self->cluster.node_count; index++) {
        node_t *node = self->cluster.nodes [index];
        if (node->slots > 0 || !node->command.enabled)
            continue;
        pl_log_info ("redis cluster: %s:%d serves no slots, its link rests", node->host, node->port);
        node->command.enabled = false;
        pl_streams_link_close (&node->command);
    }
}

static void
s_slots_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    pl_streams_t *self = ((conn_t *) ac->data)->owner;
    cluster_t *cluster = &self->cluster;
    (void) privdata;
    cluster->loading = false;
    if (!reply)
        return;                 //  loaded again once the link is back
    if (reply->type != REDIS_REPLY_ARRAY) {
        pl_log_warning ("redis CLUSTER SLOTS: %s", reply->type == REDIS_REPLY_ERROR?
                        reply->str: "malformed reply");
        cluster->stale = true;
        return;
    }
    for (int slot = 0; slot < CLUSTER_SLOTS; slot++)
        cluster->slot_node [slot] = -1;
    for (int index = 0; index < cluster->node_count; index++)
        cluster->nodes [index]->slots = 0;
    int covered = 0;
    for (size_t index = 0; index < reply->elements; index++)
        covered += s_slots_range (self, reply->element [index], ac->c.tcp.host);
    if (covered < CLUSTER_SLOTS) {
        pl_log_warning ("redis cluster: %d of %d slots served", covered, CLUSTER_SLOTS);
        cluster->stale = true;          //  ask again a little later
    }
    cluster->loaded = covered > 0;
    self->stats.slot_map_loads++;
    self->dirty = true;
    s_nodes_rest (self);
    s_readers_follow (self, pl_mono_ms ());
}

void
pl_streams_cluster_map_load (pl_streams_t *self)
{
    cluster_t *cluster = &self->cluster;
    cluster->stale = true;
    if (!self->server.cluster || cluster->loading || !cluster->map.ac)
        return;
    const char *argv [] = { "CLUSTER", "SLOTS" };
    if (pl_streams_link_send (&cluster->map, s_slots_reply, NULL, 2, argv, NULL) == 0) {
        cluster->loading = true;
        cluster->stale = false;
        cluster->load_at = pl_mono_ms () + self->settings.retry_ms;
    }
}

//  Whether a master that serves slots cannot be reached (down, or its
//  connect failed): until its replica takes over, the map says the same,
//  so it is asked again every retry-ms
static bool
s_master_down (pl_streams_t *self)
{
    for (int index = 0; index < self->cluster.node_count; index++) {
        node_t *node = self->cluster.nodes [index];
        if (node->slots > 0 && !pl_streams_link_up (&node->command))
            return true;
    }
    return false;
}

int64_t
pl_streams_cluster_due (pl_streams_t *self)
{
    cluster_t *cluster = &self->cluster;
    if (!self->server.cluster || cluster->loading || !pl_streams_link_up (&cluster->map)
    ||  !(cluster->stale || s_master_down (self)))
        return -1;
    return cluster->load_at;
}

void
pl_streams_cluster_tick (pl_streams_t *self, int64_t now)
{
    int64_t due = pl_streams_cluster_due (self);
    if (due >= 0 && now >= due)
        pl_streams_cluster_map_load (self);
}

bool
pl_streams_cluster_redirected (reader_t *reader, redisReply *reply)
{
    pl_streams_t *self = reader->owner;
    char host [256];
    int slot = 0, port = 0;
    redirect_t kind = self->server.cluster?
                      s_redirect_parse (reply, &slot, host, sizeof host, &port): REDIRECT_NONE;
    if (!kind)
        return false;
    if (kind == REDIRECT_MOVED) {
        s_moved (self, slot, host, port);
        pl_streams_link_close (&reader->conn);
    }
    //  ASK: the slot is migrating; ask again shortly, the MOVED follows
    reader->retry_at = pl_mono_ms () + (kind == REDIRECT_ASK? 50: self->settings.retry_ms);
    return true;
}


//  --------------------------------------------------------------------------
//  Lifecycle

int
pl_streams_cluster_init (pl_streams_t *self)
{
    if (!self->server.cluster)
        return 0;
    self->cluster.slot_node = malloc (CLUSTER_SLOTS * sizeof (int16_t));
    if (!self->cluster.slot_node)
        return -1;
    for (int slot = 0; slot < CLUSTER_SLOTS; slot++)
        self->cluster.slot_node [slot] = -1;
    pl_streams_link_init (&self->cluster.map, self, "cluster", self->settings.request_timeout_ms);
    self->command.enabled = false;      //  the masters' links take its place
    return 0;
}

void
pl_streams_cluster_destroy (pl_streams_t *self)
{
    for (int index = 0; index < self->cluster.node_count; index++)
        free (self->cluster.nodes [index]);
    for (int index = 0; index < self->server.seed_count; index++)
        free (self->server.seed_hosts [index]);
    free (self->cluster.slot_node);
}
