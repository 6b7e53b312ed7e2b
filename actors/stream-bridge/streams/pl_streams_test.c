/*  =========================================================================
    pl_streams_test - the selftest of pl_streams: runs its own redis-server
    on a free loopback port

    This file: shard mapping and URL parsing, then one instance with both
    readers through 2000 appends, duplicates, the in-flight limit, pending
    re-reads after re-creation, a Redis restart, NOSCRIPT and teardown.
    Replay, signals, claims, dead letters and the janitor follow in
    pl_streams_test_probe.c, broadcasts in pl_streams_test_broadcast.c,
    Redis Cluster in pl_streams_test_cluster.c.
    =========================================================================
*/
#include "pl_streams_test.h"

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#define TEST_MESSAGES   2000
#define TEST_ROOMS      3
#define TEST_PER_ROOM   ((TEST_MESSAGES + TEST_ROOMS - 1) / TEST_ROOMS)
#define TEST_INFLIGHT   64
#define TEST_SHARDS     4


//  --------------------------------------------------------------------------
//  Redis servers and checks

pid_t
pl_streams_test_redis_start (int port, const char *dir, bool cluster)
{
    pid_t pid = fork ();
    pl_check (pid >= 0);
    if (pid == 0) {
        char port_text [16];
        snprintf (port_text, sizeof port_text, "%d", port);
        int null = open ("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2 (null, STDOUT_FILENO);
            dup2 (null, STDERR_FILENO);
        }
        if (cluster)
            execlp ("redis-server", "redis-server", "--port", port_text, "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no",
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    (char *) NULL);
        else
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
        pl_check (waitpid (pid, &status, WNOHANG) == 0);    //  redis-server died
        usleep (10000);
    }
    pl_check (false);
    return -1;
}

void
pl_streams_test_redis_stop (pid_t pid)
{
    kill (pid, SIGKILL);
    int status;
    waitpid (pid, &status, 0);
}

int
pl_streams_test_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    pl_check (fd >= 0);
    struct sockaddr_in address = { .sin_family = AF_INET };
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    int rc = bind (fd, (struct sockaddr *) &address, sizeof address);
    pl_check (rc == 0);
    socklen_t length = sizeof address;
    rc = getsockname (fd, (struct sockaddr *) &address, &length);
    pl_check (rc == 0);
    close (fd);
    return ntohs (address.sin_port);
}

pl_config_t *
pl_streams_test_config (const char *url, int shards, const char *prefix, const char *host_id)
{
    pl_config_t *config = pl_config_new_default ();
    pl_check (config);
    int rc = pl_config_set (config, "redis-url", url);
    pl_check (rc == 0);
    char number [16];
    snprintf (number, sizeof number, "%d", shards);
    pl_config_set (config, "shards", number);
    pl_config_set (config, "read-count", "50");
    pl_config_set (config, "block-ms", "100");
    //  Trimmed as soon as stored, as the janitor parts expect
    pl_config_set (config, "stream-retain-s", "0");
    pl_config_set (config, "key-prefix", prefix);
    pl_config_set (config, "host-id", host_id);
    return config;
}

void
pl_streams_test_turn (pl_streams_t *streams, int max_wait_ms)
{
    zmq_pollitem_t items [PL_STREAMS_POLLITEMS_MAX];
    int count = pl_streams_pollitems (streams, items, PL_STREAMS_POLLITEMS_MAX);
    int timeout = pl_streams_timeout (streams);
    if (timeout < 0 || timeout > max_wait_ms)
        timeout = max_wait_ms;
    int rc = zmq_poll (items, count, timeout);
    pl_check (rc >= 0);
    pl_streams_handle (streams, items, count);
}

static int
s_rm_one (const char *path, const struct stat *status, int flag, struct FTW *ftw)
{
    (void) status; (void) flag; (void) ftw;
    return remove (path);
}

void
pl_streams_test_rm (const char *dir)
{
    nftw (dir, s_rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

//  The reply of one command on a connection of its own
static redisReply *
s_query (int port, const char *format, va_list args)
{
    redisContext *context = redisConnect ("127.0.0.1", port);
    pl_check (context && !context->err);
    redisReply *reply = redisvCommand (context, format, args);
    redisFree (context);
    return reply;
}

long long
pl_streams_test_query (int port, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    redisReply *reply = s_query (port, format, args);
    va_end (args);
    long long value = -1;
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        value = reply->integer;
    else
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1
    &&  reply->element [0]->type == REDIS_REPLY_INTEGER)
        value = reply->element [0]->integer;        //  XPENDING summary
    freeReplyObject (reply);
    return value;
}

void
pl_streams_test_query_string (int port, char *buffer, size_t size, int index,
                              const char *format, ...)
{
    va_list args;
    va_start (args, format);
    redisReply *reply = s_query (port, format, args);
    va_end (args);
    *buffer = 0;
    if (reply && reply->type == REDIS_REPLY_STRING)
        snprintf (buffer, size, "%s", reply->str);
    else
    if (reply && reply->type == REDIS_REPLY_ARRAY && (size_t) index < reply->elements
    &&  reply->element [index]->type == REDIS_REPLY_STRING)
        snprintf (buffer, size, "%s", reply->element [index]->str);
    freeReplyObject (reply);
}


//  --------------------------------------------------------------------------
//  Without Redis: shards, URLs, key slots

static void
s_test_shards (void)
{
    //  Shard mapping: the CRC16 of Redis Cluster
    pl_check (pl_streams_cluster_crc16 ("123456789", 9) == 0x31C3);
    pl_check (pl_streams_shard ("123456789", 16384) == 0x31C3);
    pl_check (pl_streams_shard ("123456789", 1) == 0);
    pl_check (pl_streams_cluster_crc16 ("", 0) == 0);
    int per_shard [8] = { 0 };
    for (int index = 0; index < 200; index++) {
        char room [32];
        snprintf (room, sizeof room, "room-%d", index);
        int shard = pl_streams_shard (room, 8);
        pl_check (shard >= 0 && shard < 8);
        pl_check (shard == pl_streams_shard (room, 8));
        per_shard [shard]++;
    }
    for (int shard = 0; shard < 8; shard++)
        pl_check (per_shard [shard] > 5);
    //  Key slots: hash tags as Redis Cluster reads them
    pl_check (pl_streams_cluster_keyslot ("123456789") == 0x31C3 % CLUSTER_SLOTS);
    pl_check (pl_streams_cluster_keyslot ("p:{7}:stream") == pl_streams_cluster_keyslot ("7"));
    pl_check (pl_streams_cluster_keyslot ("{}x")
              == pl_streams_cluster_crc16 ("{}x", 3) % CLUSTER_SLOTS);
}

static void
s_server_free (server_t *server)
{
    for (int index = 0; index < server->seed_count; index++)
        free (server->seed_hosts [index]);
    free (server->host);
    free (server->password);
    *server = (server_t) { 0 };
}

static void
s_test_urls (void)
{
    server_t probe = { 0 };
    pl_check (pl_streams_link_parse_url (&probe, "redis://h.example:7000/2") == 0);
    pl_check (streq (probe.host, "h.example") && probe.port == 7000 && probe.db == 2);
    s_server_free (&probe);
    pl_check (pl_streams_link_parse_url (&probe, "redis://:se@cret@[::1]") == 0);
    pl_check (streq (probe.host, "::1") && probe.port == 6379 && streq (probe.password, "se@cret"));
    s_server_free (&probe);
    pl_check (pl_streams_link_parse_url (&probe, "redis://host:99999") == -1);
    s_server_free (&probe);
    //  Cluster seeds
    pl_check (pl_streams_cluster_parse_seeds (&probe, "redis://:pw@10.0.0.1:7000,[::1]:7001,h3") == 0);
    pl_check (probe.seed_count == 3 && streq (probe.password, "pw"));
    pl_check (streq (probe.seed_hosts [1], "::1") && probe.seed_ports [1] == 7001);
    pl_check (streq (probe.seed_hosts [2], "h3") && probe.seed_ports [2] == 6379);
    pl_check (streq (probe.host, "10.0.0.1") && probe.port == 7000);
    s_server_free (&probe);
    pl_check (pl_streams_cluster_parse_seeds (&probe, "redis://h1:7000/2") == -1);
    s_server_free (&probe);
}


//  --------------------------------------------------------------------------
//  One instance, both readers, 2000 appends

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
    pl_config_t *config;
    int port;
    bool verbose;
    test_slot_t slots [TEST_MESSAGES + 16];
    int done_count;
    int fanout_count;
    int persist_count;
    int fanout_seen [TEST_ROOMS][TEST_PER_ROOM + 1];
    int persist_seen [TEST_ROOMS][TEST_PER_ROOM + 1];
    int late_fanout;            //  after the restart
    int late_persist;
    int late_done;
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
    pl_check (!slot->called);
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

//  A batch entry: counted, and remembered (first instance) or looked up
//  (after re-creation)
static void
s_test_persist_seen (test_t *test, const pl_entry_t *entry)
{
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

static void
s_test_on_persist (void *arg, const pl_entry_t *entry)
{
    test_t *test = (test_t *) arg;
    size_t inflight = pl_streams_persist_inflight (test->streams);
    if (inflight > test->max_inflight)
        test->max_inflight = inflight;
    if (!strcmp (entry->room_id, "late"))
        test->late_persist++;
    else
        s_test_persist_seen (test, entry);
    if (test->ack_mode && test->ack_in_callback && entry->seq % 2)
        pl_streams_persist_ack (test->streams, entry->stream_key, entry->entry_id);
    else
    if (test->ack_mode) {
        char *pair = NULL;
        int rc = asprintf (&pair, "%s\t%s", entry->stream_key, entry->entry_id);
        pl_check (rc > 0);
        zlistx_add_end (test->to_ack, pair);
        free (pair);
    }
}

//  One loop turn, then the acks the callbacks left for the loop
static void
s_test_turn (test_t *test, int max_wait_ms)
{
    pl_streams_test_turn (test->streams, max_wait_ms);
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

static bool
s_test_late_all (test_t *test)
{
    return test->late_done == 10 && test->late_fanout == 10 && test->late_persist == 10;
}

//  Appends of room "late": arg is the test, the seqs come 1, 2, ... from
//  test->late_first
typedef struct {
    test_t *test;
    int64_t expect;
} late_t;

static void
s_test_late_append (void *arg, int result, int64_t seq, const char *error)
{
    (void) error;
    late_t *late = (late_t *) arg;
    pl_check (result == 0);
    pl_check (seq == late->expect);
    late->test->late_done++;
}

//  Append one message and run until its callback came; returns the slot
static test_slot_t *
s_test_append_one (test_t *test, int slot_index, const pl_entry_t *message)
{
    test_slot_t *slot = &test->slots [slot_index];
    *slot = (test_slot_t) { .test = test, .index = -1 };
    int rc = pl_streams_append (test->streams, message, s_test_done, slot);
    pl_check (rc == 0);
    pl_check (!slot->called);
    while (!slot->called)
        s_test_turn (test, 20);
    return slot;
}

//  Ten appends to room "late", seqs first .. first + 9, all seen by both
//  readers
static void
s_test_late_ten (test_t *test, int64_t first, const char *content, int64_t created)
{
    late_t late [10];
    test->late_done = 0;
    test->late_fanout = test->late_persist = 0;
    for (int index = 0; index < 10; index++) {
        late [index] = (late_t) { .test = test, .expect = first + index };
        pl_entry_t message = { .room_id = "late", .type = "CHAT", .sender_id = "u",
                               .content = content, .client_msg_id = "",
                               .created_ms = created };
        int rc = pl_streams_append (test->streams, &message, s_test_late_append, &late [index]);
        pl_check (rc == 0);
    }
    pl_check (s_test_run (test, 10000, s_test_late_all));
}

static void
s_test_appends (test_t *test)
{
    //  destroy is safe twice
    test->streams = pl_streams_new (test->config, s_test_on_fanout, s_test_on_persist, test);
    pl_check (test->streams);
    pl_streams_destroy (&test->streams);
    pl_streams_destroy (&test->streams);
    pl_check (test->streams == NULL);
    test->streams = pl_streams_new (test->config, s_test_on_fanout, s_test_on_persist, test);
    pl_check (test->streams);
    pl_check (s_test_run (test, 5000, s_test_is_connected));

    //  2000 appends over 3 rooms, all queued before the first poll
    for (int index = 0; index < TEST_MESSAGES; index++) {
        pl_entry_t message;
        char content [64], sender [16], name [16], cmid [16];
        s_test_message (index, &message, content, sender, name, cmid);
        test->slots [index] = (test_slot_t) { .test = test, .index = index };
        int rc = pl_streams_append (test->streams, &message, s_test_done, &test->slots [index]);
        pl_check (rc == 0);
    }
    pl_check (test->done_count == 0);           //  never called from append
    pl_check (s_test_run (test, 20000, s_test_all_done));
    for (int index = 0; index < TEST_MESSAGES; index++) {
        pl_check (test->slots [index].result == 0);
        pl_check (test->slots [index].seq == index / TEST_ROOMS + 1);
    }
    if (test->verbose)
        printf ("   2000 appends: seqs gapless and in order\n");
}

//  A duplicate clientMsgId gives the original seq and no entry
static void
s_test_duplicate (test_t *test)
{
    pl_entry_t message;
    char content [64], sender [16], name [16], cmid [16];
    s_test_message (7, &message, content, sender, name, cmid);
    test_slot_t *slot = s_test_append_one (test, TEST_MESSAGES, &message);
    pl_check (slot->result == 1);
    pl_check (slot->seq == 7 / TEST_ROOMS + 1);
    //  Same clientMsgId from another sender is a new message
    message.sender_id = "someone-else";
    message.room_id = "other-room";
    slot = s_test_append_one (test, TEST_MESSAGES + 1, &message);
    pl_check (slot->result == 0 && slot->seq == 1);
    long long total = 0;
    for (int shard = 0; shard < TEST_SHARDS; shard++)
        total += pl_streams_test_query (test->port, "XLEN ptest:{%d}:stream", shard);
    pl_check (total == TEST_MESSAGES + 1);
    pl_check (pl_streams_test_query (test->port, "TTL ptest:{%d}:dedup:room-b:user-2:cm-7",
                                     pl_streams_shard ("room-b", TEST_SHARDS)) > 86000);
}

//  Fan-out delivers all once; persist stops at the in-flight limit.
//  Returns how many persist entries the instance holds.
static int
s_test_inflight (test_t *test)
{
    s_test_run (test, 20000, s_test_all_fanned_out);
    if (test->verbose)
        printf ("   fanout %d persist %d\n", test->fanout_count, test->persist_count);
    pl_check (s_test_all_fanned_out (test));
    s_test_run (test, 500, NULL);
    for (int index = 0; index < TEST_MESSAGES; index++)
        pl_check (test->fanout_seen [index % TEST_ROOMS][index / TEST_ROOMS + 1] == 1);
    pl_check (test->fanout_count == TEST_MESSAGES + 1);     //  + other-room
    pl_check (test->persist_count <= TEST_INFLIGHT);
    pl_check (pl_streams_persist_inflight (test->streams) == (size_t) test->persist_count);
    pl_check (test->max_inflight <= TEST_INFLIGHT);
    pl_check (test->bad_fields == 0);
    if (test->verbose)
        printf ("   fan-out got all once, persist held at %d in flight\n", test->persist_count);
    return test->persist_count;
}

//  Re-created: the unacked persist entries come again (pending re-read),
//  fan-out entries were acked and do not. Acked: a new instance reads
//  nothing again.
static void
s_test_redelivery (test_t *test, int first_persisted)
{
    pl_streams_destroy (&test->streams);
    pl_check (test->slots [TEST_MESSAGES].called);
    test->ack_mode = true;
    test->ack_in_callback = true;
    test->streams = pl_streams_new (test->config, s_test_on_fanout, s_test_on_persist, test);
    pl_check (test->streams);
    pl_check (s_test_run (test, 30000, s_test_all_persisted));
    pl_check (test->first_redelivered == first_persisted);
    pl_check (test->fanout_count == TEST_MESSAGES + 1);
    pl_check (test->max_inflight <= TEST_INFLIGHT);
    pl_check (test->bad_fields == 0);
    for (int index = 0; index < TEST_MESSAGES; index++)
        pl_check (test->persist_seen [index % TEST_ROOMS][index / TEST_ROOMS + 1] >= 1);
    s_test_run (test, 300, NULL);
    pl_check (test->persist_count == TEST_MESSAGES + 1 + first_persisted);
    if (test->verbose)
        printf ("   pending persist entries read again, all %d persisted\n", TEST_MESSAGES);

    pl_streams_destroy (&test->streams);
    for (int shard = 0; shard < TEST_SHARDS; shard++) {
        pl_check (pl_streams_test_query (test->port, "XPENDING ptest:{%d}:stream persist", shard) == 0);
        pl_check (pl_streams_test_query (test->port,
                                         "XPENDING ptest:{%d}:stream fanout:test-host", shard) == 0);
    }
    int persisted = test->persist_count;
    test->streams = pl_streams_new (test->config, s_test_on_fanout, s_test_on_persist, test);
    pl_check (s_test_run (test, 5000, s_test_is_connected));
    s_test_run (test, 600, NULL);
    pl_check (test->persist_count == persisted);
    pl_check (test->fanout_count == TEST_MESSAGES + 1);
}

//  Redis restarts (empty): appends fail meanwhile, then work again
static void
s_test_restart (test_t *test, const char *dir, pid_t *redis)
{
    test->late_fanout = 0;
    pl_streams_test_redis_stop (*redis);
    pl_check (s_test_run (test, 5000, s_test_is_disconnected));
    pl_entry_t message = { .room_id = "late", .type = "CHAT", .sender_id = "u",
                           .content = "lost", .created_ms = 1 };
    test_slot_t *slot = s_test_append_one (test, TEST_MESSAGES + 2, &message);
    pl_check (slot->result == -1);
    s_test_run (test, 300, NULL);
    *redis = pl_streams_test_redis_start (test->port, dir, false);
    pl_check (s_test_run (test, 10000, s_test_is_connected));
    s_test_late_ten (test, 1, "after restart", 2);
    pl_streams_stats_t stats;
    pl_streams_stats (test->streams, &stats);
    pl_check (stats.reconnects == 3);           //  command, fan-out, persist
    pl_check (stats.appended == 10 && stats.append_errors == 1);
    if (test->verbose)
        printf ("   reconnected after a Redis restart, appends and reads work\n");
}

//  NOSCRIPT: the script cache is flushed, appends fall back to EVAL; then
//  teardown with appends still queued: each gets its callback once
static void
s_test_noscript_teardown (test_t *test)
{
    pl_streams_test_query (test->port, "SCRIPT FLUSH");
    s_test_late_ten (test, 11, "after flush", 3);
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
        pl_check (test->slots [TEST_MESSAGES + 3 + index].called);
    if (test->verbose)
        printf ("   NOSCRIPT fallback, teardown callbacks\n");
}

static pl_config_t *
s_test_config (int port)
{
    char url [64];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d", port);
    pl_config_t *config = pl_streams_test_config (url, TEST_SHARDS, "ptest", "test-host");
    char number [16];
    snprintf (number, sizeof number, "%d", TEST_INFLIGHT);
    pl_config_set (config, "persist-inflight", number);
    pl_config_set (config, "block-ms", "200");
    return config;
}

static void
s_string_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

static void *
s_string_dup (const void *item)
{
    return strdup ((const char *) item);
}

void
pl_streams_test (bool verbose)
{
    printf (" * pl_streams: ");
    if (verbose)
        printf ("\n");
    pl_log_set_verbose (verbose);
    s_test_shards ();
    s_test_urls ();

    //  Our own Redis
    char dir [] = "/tmp/pl_streams_test_XXXXXX";
    char *made = mkdtemp (dir);
    pl_check (made);
    int port = pl_streams_test_free_port ();
    pid_t redis = pl_streams_test_redis_start (port, dir, false);

    test_t *test = calloc (1, sizeof (test_t));
    pl_check (test);
    test->config = s_test_config (port);
    test->port = port;
    test->verbose = verbose;
    test->to_ack = zlistx_new ();
    zlistx_set_destructor (test->to_ack, s_string_destroy);
    zlistx_set_duplicator (test->to_ack, s_string_dup);
    test->first_ids = zhashx_new ();
    test->late_fanout = -1;

    s_test_appends (test);
    s_test_duplicate (test);
    s_test_redelivery (test, s_test_inflight (test));
    s_test_restart (test, dir, &redis);
    s_test_noscript_teardown (test);

    pl_streams_test_parts (port, verbose);
    pl_streams_test_broadcast (port, verbose);
    pl_streams_test_cluster (verbose);

    pl_streams_test_redis_stop (redis);
    pl_streams_test_rm (dir);
    zlistx_destroy (&test->to_ack);
    zhashx_destroy (&test->first_ids);
    pl_config_destroy (&test->config);
    free (test);
    printf ("OK\n");
}
