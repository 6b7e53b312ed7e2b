/*  =========================================================================
    pl_streams_test_cluster - selftest of Redis Cluster: three masters on
    loopback, made with redis-cli --cluster create

    Key slots as Redis computes them, a wrong seed skipped, appends and
    readers spread over the masters, replay, a slot moved under load
    (MOVED followed, map loaded again), dead letters, the host key,
    broadcasts between two instances subscribed on different masters.
    =========================================================================
*/
#include "pl_streams_test.h"

#include <inttypes.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#define CTEST_NODES     3
#define CTEST_SHARDS    6
#define CTEST_ROOMS     30
#define CTEST_PER_ROOM  20
//  Slots per room: its appends, then room for more later
#define CTEST_ROOM_SLOTS (CTEST_PER_ROOM + 10)

typedef struct {
    int64_t seq;
    int result;
    bool called;
} ctest_slot_t;

//  The cluster's processes and what the checks need to reach it
typedef struct {
    int ports [CTEST_NODES];
    pid_t pids [CTEST_NODES];
    char dirs [CTEST_NODES][64];
    probe_t *probe;
    ctest_slot_t *slots;        //  CTEST_ROOM_SLOTS per room
    pl_config_t *config;
    bool verbose;
} ctest_t;

static void
s_ctest_appended (void *arg, int result, int64_t seq, const char *error)
{
    ctest_slot_t *slot = (ctest_slot_t *) arg;
    (void) error;
    pl_check (!slot->called);
    slot->called = true;
    slot->result = result;
    slot->seq = seq;
}

//  Is this loopback port free to bind?
static bool
s_port_free (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    pl_check (fd >= 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    bool free_port = bind (fd, (struct sockaddr *) &address, sizeof address) == 0;
    close (fd);
    return free_port;
}

//  A cluster node also listens on port + 10000 (its bus): both must be
//  free, so ephemeral ports (up to 60999) do not do
static int
s_free_cluster_port (void)
{
    static bool seeded = false;
    if (!seeded) {
        srandom ((unsigned) getpid () ^ (unsigned) time (NULL));
        seeded = true;
    }
    for (int attempt = 0; attempt < 1000; attempt++) {
        int port = 20000 + (int) (random () % 20000);
        if (s_port_free (port) && s_port_free (port + 10000))
            return port;
    }
    pl_check (false);
    return -1;
}

//  Integer reply of the cluster node that owns key (others answer MOVED)
static long long
s_ctest_query (ctest_t *ctest, const char *format, const char *key)
{
    for (int index = 0; index < CTEST_NODES; index++) {
        long long value = pl_streams_test_query (ctest->ports [index], format, key);
        if (value >= 0)
            return value;
    }
    return -1;
}

//  Port of the node that serves key
static int
s_ctest_owner (ctest_t *ctest, const char *key)
{
    for (int index = 0; index < CTEST_NODES; index++)
        if (pl_streams_test_query (ctest->ports [index], "EXISTS %s", key) >= 0)
            return ctest->ports [index];
    return -1;
}

static bool
s_ctest_all_ok (ctest_t *ctest)
{
    for (int index = 0; index < CTEST_NODES; index++) {
        redisContext *context = redisConnect ("127.0.0.1", ctest->ports [index]);
        pl_check (context && !context->err);
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

//  MIGRATE every key of a slot; returns how many
static int
s_ctest_migrate_keys (redisContext *source, int slot, int to)
{
    int moved = 0;
    while (true) {
        redisReply *keys = redisCommand (source, "CLUSTER GETKEYSINSLOT %d 100", slot);
        pl_check (keys && keys->type == REDIS_REPLY_ARRAY);
        size_t count = keys->elements;
        for (size_t index = 0; index < count; index++) {
            redisReply *reply = redisCommand (source, "MIGRATE 127.0.0.1 %d %s 0 5000", to,
                                              keys->element [index]->str);
            pl_check (reply && reply->type == REDIS_REPLY_STATUS);
            freeReplyObject (reply);
            moved++;
        }
        freeReplyObject (keys);
        if (count == 0)
            return moved;
    }
}

//  Moves one slot from one master to another the way redis-cli does:
//  IMPORTING, MIGRATING, MIGRATE of its keys, then SETSLOT NODE everywhere
static void
s_ctest_move_slot (ctest_t *ctest, int slot, int from, int to)
{
    char from_id [64], to_id [64];
    pl_streams_test_query_string (from, from_id, sizeof from_id, 0, "CLUSTER MYID");
    pl_streams_test_query_string (to, to_id, sizeof to_id, 0, "CLUSTER MYID");
    pl_check (*from_id && *to_id);
    redisContext *source = redisConnect ("127.0.0.1", from);
    redisContext *target = redisConnect ("127.0.0.1", to);
    pl_check (source && !source->err && target && !target->err);
    redisReply *reply = redisCommand (target, "CLUSTER SETSLOT %d IMPORTING %s", slot, from_id);
    pl_check (reply && reply->type == REDIS_REPLY_STATUS);
    freeReplyObject (reply);
    reply = redisCommand (source, "CLUSTER SETSLOT %d MIGRATING %s", slot, to_id);
    pl_check (reply && reply->type == REDIS_REPLY_STATUS);
    freeReplyObject (reply);
    pl_check (s_ctest_migrate_keys (source, slot, to) > 0);
    for (int index = 0; index < CTEST_NODES; index++) {
        long long rc = pl_streams_test_query (ctest->ports [index], "CLUSTER SETSLOT %d NODE %s",
                                              slot, to_id);
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
        pl_check (rc == 0);
    }
}

static bool
s_probe_cluster_done (probe_t *probe)
{
    return probe->appends_done == probe->fanout_count
        && probe->appends_done == probe->persist_count
        && pl_streams_persist_inflight (probe->streams) == 0;
}

//  Three masters, their slots assigned by redis-cli
static void
s_ctest_start (ctest_t *ctest)
{
    int64_t started = pl_mono_ms ();
    for (int index = 0; index < CTEST_NODES; index++) {
        snprintf (ctest->dirs [index], sizeof ctest->dirs [index], "/tmp/pl_streams_cluster_XXXXXX");
        char *made = mkdtemp (ctest->dirs [index]);
        pl_check (made);
        ctest->ports [index] = s_free_cluster_port ();
        ctest->pids [index] = pl_streams_test_redis_start (ctest->ports [index],
                                                           ctest->dirs [index], true);
    }
    char command [512];
    snprintf (command, sizeof command, "redis-cli --cluster create 127.0.0.1:%d 127.0.0.1:%d "
              "127.0.0.1:%d --cluster-replicas 0 --cluster-yes >/dev/null 2>&1",
              ctest->ports [0], ctest->ports [1], ctest->ports [2]);
    int rc = system (command);
    pl_check (rc == 0);
    for (int attempt = 0; attempt < 500 && !s_ctest_all_ok (ctest); attempt++)
        usleep (20000);
    pl_check (s_ctest_all_ok (ctest));
    if (ctest->verbose)
        printf ("   cluster of %d masters up in %d ms\n", CTEST_NODES,
                (int) (pl_mono_ms () - started));
}

//  Key slots as Redis computes them, hash tags included
static void
s_ctest_keyslots (ctest_t *ctest)
{
    int port = ctest->ports [0];
    for (int shard = 0; shard < CTEST_SHARDS; shard++) {
        char key [64];
        snprintf (key, sizeof key, "pclu:{%d}:stream", shard);
        pl_check (pl_streams_test_query (port, "CLUSTER KEYSLOT %s", key)
                  == pl_streams_cluster_keyslot (key));
        snprintf (key, sizeof key, "pclu:{%d}:dedup:room:u:c", shard);
        pl_check (pl_streams_test_query (port, "CLUSTER KEYSLOT %s", key)
                  == pl_streams_cluster_keyslot (key));
    }
    const char *keys [] = { "pclu:dead", "a{}b", "{x}{y}" };
    for (size_t index = 0; index < sizeof keys / sizeof keys [0]; index++)
        pl_check (pl_streams_test_query (port, "CLUSTER KEYSLOT %s", keys [index])
                  == pl_streams_cluster_keyslot (keys [index]));
}

//  Two seeds, the first one wrong: the other gives the map
static pl_config_t *
s_ctest_config (ctest_t *ctest)
{
    char url [128];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d,127.0.0.1:%d",
              pl_streams_test_free_port (), ctest->ports [1]);
    pl_config_t *config = pl_streams_test_config (url, CTEST_SHARDS, "pclu", "clu-host");
    int rc = pl_config_set (config, "redis-cluster", "true");
    pl_check (rc == 0);
    pl_config_set (config, "persist-inflight", "1000");
    return config;
}

//  Appends over many rooms, pipelined to every master at once; the shard
//  streams are spread over the masters
static void
s_ctest_appends (ctest_t *ctest)
{
    probe_t *probe = ctest->probe;
    for (int room = 0; room < CTEST_ROOMS; room++) {
        char name [32];
        snprintf (name, sizeof name, "croom-%d", room);
        s_ctest_append_room (probe, ctest->slots + room * CTEST_ROOM_SLOTS, name, 1, CTEST_PER_ROOM);
    }
    int total = CTEST_ROOMS * CTEST_PER_ROOM;
    probe->appends_done = total;        //  s_ctest_appended does not count
    pl_check (pl_streams_test_probe_run (probe, 10000, s_probe_cluster_done));
    for (int room = 0; room < CTEST_ROOMS; room++)
        for (int index = 0; index < CTEST_PER_ROOM; index++) {
            ctest_slot_t *slot = &ctest->slots [room * CTEST_ROOM_SLOTS + index];
            pl_check (slot->called && slot->result == 0 && slot->seq == index + 1);
        }
    int owners [CTEST_NODES] = { 0 };
    long long entries = 0;
    for (int shard = 0; shard < CTEST_SHARDS; shard++) {
        char key [64];
        snprintf (key, sizeof key, "pclu:{%d}:stream", shard);
        int owner = s_ctest_owner (ctest, key);
        for (int index = 0; index < CTEST_NODES; index++)
            if (owner == ctest->ports [index])
                owners [index]++;
        entries += s_ctest_query (ctest, "XLEN %s", key);
        if (ctest->verbose)
            printf ("   %s: slot %d on :%d\n", key, pl_streams_cluster_keyslot (key), owner);
    }
    pl_check (entries == total);
    int used = 0;
    for (int index = 0; index < CTEST_NODES; index++)
        used += owners [index] > 0;
    pl_check (used >= 2);
    pl_check (probe->fanout_count == total && probe->persist_count == total);
    if (ctest->verbose)
        printf ("   %d appends over %d rooms gapless, fan-out and persist got all, "
                "streams on %d masters\n", total, CTEST_ROOMS, used);
}

//  Move the slot of one shard to another master: MOVED is followed
static void
s_ctest_moved (ctest_t *ctest)
{
    probe_t *probe = ctest->probe;
    int moved_shard = pl_streams_shard ("croom-3", CTEST_SHARDS);
    char moved_key [64];
    snprintf (moved_key, sizeof moved_key, "pclu:{%d}:stream", moved_shard);
    int from = s_ctest_owner (ctest, moved_key);
    int to = from == ctest->ports [0]? ctest->ports [1]: ctest->ports [0];
    pl_streams_stats_t before;
    pl_streams_stats (probe->streams, &before);
    s_ctest_move_slot (ctest, pl_streams_cluster_keyslot (moved_key), from, to);
    pl_check (s_ctest_owner (ctest, moved_key) == to);
    //  An append that only asks the counter to exist is not resent: the
    //  new master's counter was never checked
    ctest_slot_t pinned = { 0 };
    pl_entry_t check = { .room_id = "croom-3", .type = "CHAT", .sender_id = "u-r",
                         .sender_name = "R", .content = "pinned", .seq_floor = PL_SEQ_FLOOR_CHECK };
    pl_check (pl_streams_append (probe->streams, &check, s_ctest_appended, &pinned) == 0);
    ctest_slot_t *more = ctest->slots + 3 * CTEST_ROOM_SLOTS + CTEST_PER_ROOM;
    s_ctest_append_room (probe, more, "croom-3", CTEST_PER_ROOM + 1, 10);
    probe->appends_done += 10;
    pl_check (pl_streams_test_probe_run (probe, 10000, s_probe_cluster_done));
    pl_check (pinned.called && pinned.result == 3);
    for (int index = 0; index < 10; index++)
        pl_check (more [index].called && more [index].result == 0
               && more [index].seq == CTEST_PER_ROOM + 1 + index);
    pl_streams_stats_t after;
    pl_streams_stats (probe->streams, &after);
    pl_check (after.redirects > before.redirects);
    pl_check (after.slot_map_loads > before.slot_map_loads);
    pl_streams_test_probe_replay (probe, "croom-3", CTEST_PER_ROOM - 2, 5);
    pl_streams_test_probe_expect (probe, CTEST_PER_ROOM - 1, 5, CTEST_PER_ROOM + 10);
    pl_check (pl_streams_test_probe_run (probe, 5000, pl_streams_test_probe_connected));
    if (ctest->verbose)
        printf ("   slot %d moved :%d -> :%d: %" PRIu64 " redirects followed, map loaded "
                "again, appends and readers go on, a checked-only append answered 3\n", pl_streams_cluster_keyslot (moved_key),
                from, to, after.redirects - before.redirects);
}

//  Dead letter: XADD to the dead stream's master, then XACK; the host key
//  on its own master
static void
s_ctest_dead_letter (ctest_t *ctest)
{
    probe_t *probe = ctest->probe;
    probe->fail_left = 1;
    ctest_slot_t dead_slot [1];
    s_ctest_append_room (probe, dead_slot, "croom-9", CTEST_PER_ROOM + 1, 1);
    probe->appends_done++;
    pl_check (pl_streams_test_probe_run (probe, 10000, s_probe_cluster_done));
    pl_streams_stats_t stats;
    pl_streams_stats (probe->streams, &stats);
    pl_check (stats.dead_lettered == 1);
    pl_check (s_ctest_query (ctest, "XLEN %s", "pclu:dead") == 1);
    char dead_stream [64];
    snprintf (dead_stream, sizeof dead_stream, "pclu:{%d}:stream",
              pl_streams_shard ("croom-9", CTEST_SHARDS));
    pl_check (s_ctest_query (ctest, "XPENDING %s persist", dead_stream) == 0);
    pl_check (s_ctest_query (ctest, "EXISTS %s", "pclu:host:clu-host") == 1);
}

//  A second instance (a second host, no readers) and the first broadcast
//  to each other. Its subscriber goes to another master than the one the
//  first publishes on (the first master of its table), so the cluster bus
//  has to carry it.
static void
s_ctest_broadcast (ctest_t *ctest)
{
    probe_t *other = calloc (1, sizeof (probe_t));
    pl_check (other);
    other->streams = pl_streams_new (ctest->config, NULL, NULL, other);
    pl_check (other->streams);
    pl_check (pl_streams_test_probe_run (other, 10000, pl_streams_test_probe_connected));
    cluster_t *cluster = &other->streams->cluster;
    int publisher = ctest->probe->streams->cluster.nodes [0]->port;
    int node = cluster->nodes [0]->port == publisher? 1: 0;
    other->streams->broadcast.next_node = node;
    pl_streams_test_broadcast_pair (ctest->probe, other);
    pl_check (other->streams->broadcast.link.target == node);
    pl_check (cluster->nodes [node]->port != publisher);
    pl_streams_destroy (&other->streams);
    free (other);
    if (ctest->verbose)
        printf ("   broadcast between two instances over the cluster bus\n");
}

static bool
s_probe_croom3_down (probe_t *probe)
{
    return !pl_streams_room_ready (probe->streams, "croom-3");
}

//  A master dies (last, no replica takes over here): only the rooms of its
//  slots stop, and the slot map is asked for again while it is down
static void
s_ctest_master_down (ctest_t *ctest)
{
    probe_t *probe = ctest->probe;
    char key [64];
    snprintf (key, sizeof key, "pclu:{%d}:stream", pl_streams_shard ("croom-3", CTEST_SHARDS));
    int victim = s_ctest_owner (ctest, key);
    char other [32] = "";
    for (int room = 0; room < CTEST_ROOMS && !*other; room++) {
        snprintf (other, sizeof other, "croom-%d", room);
        snprintf (key, sizeof key, "pclu:{%d}:stream", pl_streams_shard (other, CTEST_SHARDS));
        if (s_ctest_owner (ctest, key) == victim)
            *other = 0;
    }
    pl_check (*other);
    for (int index = 0; index < CTEST_NODES; index++)
        if (ctest->ports [index] == victim) {
            pl_streams_test_redis_stop (ctest->pids [index]);
            ctest->pids [index] = 0;
        }
    pl_check (pl_streams_test_probe_run (probe, 5000, s_probe_croom3_down));
    pl_check (pl_streams_room_ready (probe->streams, other));
    pl_check (!pl_streams_connected (probe->streams));
    pl_streams_stats_t before, after;
    pl_streams_stats (probe->streams, &before);
    pl_streams_test_probe_run (probe, 2500, NULL);
    pl_streams_stats (probe->streams, &after);
    pl_check (after.slot_map_loads >= before.slot_map_loads + 2);
    if (ctest->verbose)
        printf ("   master :%d killed: its rooms wait, %s goes on, slot map asked %" PRIu64
                " times in 2.5 s\n", victim, other, after.slot_map_loads - before.slot_map_loads);
}

void
pl_streams_test_cluster (bool verbose)
{
    int64_t started = pl_mono_ms ();
    ctest_t *ctest = calloc (1, sizeof (ctest_t));
    pl_check (ctest);
    ctest->verbose = verbose;
    s_ctest_start (ctest);
    s_ctest_keyslots (ctest);

    ctest->config = s_ctest_config (ctest);
    probe_t *probe = calloc (1, sizeof (probe_t));
    pl_check (probe);
    ctest->probe = probe;
    probe->ack = true;
    probe->streams = pl_streams_new (ctest->config, pl_streams_test_probe_fanout,
                                     pl_streams_test_probe_persist, probe);
    pl_check (probe->streams);
    pl_check (pl_streams_test_probe_run (probe, 10000, pl_streams_test_probe_connected));
    pl_check (probe->streams->cluster.node_count == CTEST_NODES);
    ctest->slots = calloc (CTEST_ROOMS * CTEST_ROOM_SLOTS, sizeof (ctest_slot_t));
    pl_check (ctest->slots);

    s_ctest_appends (ctest);
    //  Replay from the room's master
    pl_streams_test_probe_replay (probe, "croom-7", 5, 8);
    pl_streams_test_probe_expect (probe, 6, 8, CTEST_PER_ROOM);
    s_ctest_moved (ctest);
    s_ctest_dead_letter (ctest);
    s_ctest_broadcast (ctest);
    s_ctest_master_down (ctest);

    pl_streams_destroy (&probe->streams);
    free (probe);
    free (ctest->slots);
    pl_config_destroy (&ctest->config);
    for (int index = 0; index < CTEST_NODES; index++) {
        if (ctest->pids [index])
            pl_streams_test_redis_stop (ctest->pids [index]);
        pl_streams_test_rm (ctest->dirs [index]);
    }
    free (ctest);
    if (verbose)
        printf ("   cluster part took %d ms\n", (int) (pl_mono_ms () - started));
}
