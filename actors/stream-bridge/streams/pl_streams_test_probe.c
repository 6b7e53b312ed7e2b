/*  =========================================================================
    pl_streams_test_probe - selftest of replay, signals, claims, dead
    letters, the janitor and stats

    Each part runs its own instances on its own key prefix against the
    selftest's redis-server, so they do not see each other's keys. The
    probe records what the instance handed it; the cluster part uses it too.
    =========================================================================
*/
#include "pl_streams_test.h"

#include <signal.h>

#define BULK_MESSAGES       100000
#define BULK_READ_COUNT     128
#define BULK_SHARDS         4
//  Appends ahead of what persist acked: one full read of every shard
#define BULK_WINDOW         (BULK_READ_COUNT * BULK_SHARDS)


//  --------------------------------------------------------------------------
//  The probe

void
pl_streams_test_probe_fanout (void *arg, const pl_entry_t *entry)
{
    probe_t *probe = (probe_t *) arg;
    probe->fanout_count++;
    if (streq (entry->type, "READ")) {
        probe->reads_fanout++;
        probe->read_seq = entry->seq;
        snprintf (probe->read_sender, sizeof probe->read_sender, "%s", entry->sender_id);
    }
    if (entry->seq == 0) {
        probe->signals++;
        snprintf (probe->signal_type, sizeof probe->signal_type, "%s", entry->type);
        snprintf (probe->signal_room, sizeof probe->signal_room, "%s", entry->room_id);
        snprintf (probe->signal_content, sizeof probe->signal_content, "%s", entry->content);
        snprintf (probe->signal_sender, sizeof probe->signal_sender, "%s", entry->sender_id);
    }
}

void
pl_streams_test_probe_persist (void *arg, const pl_entry_t *entry)
{
    probe_t *probe = (probe_t *) arg;
    size_t inflight = pl_streams_persist_inflight (probe->streams);
    if (inflight > probe->max_inflight)
        probe->max_inflight = inflight;
    if (entry->seq == 0)
        probe->persist_signals++;
    if (streq (entry->type, "READ"))
        probe->reads_persist++;
    if (probe->persist_count++ == 0) {
        snprintf (probe->first_id, sizeof probe->first_id, "%s", entry->entry_id);
        snprintf (probe->first_stream, sizeof probe->first_stream, "%s", entry->stream_key);
    }
    if (probe->fail_left > 0) {
        probe->fail_left--;
        snprintf (probe->failed_id, sizeof probe->failed_id, "%s", entry->entry_id);
        pl_streams_persist_fail (probe->streams, entry, "mongo says no");
    }
    else
    if (probe->ack)
        pl_streams_persist_ack (probe->streams, entry->stream_key, entry->entry_id);
}

static void
s_probe_appended (void *arg, int result, int64_t seq, const char *error)
{
    (void) seq; (void) error;
    probe_t *probe = (probe_t *) arg;
    probe->appends_done++;
    probe->last_result = result;
    probe->last_seq = seq;
    if (result != 0)
        probe->appends_failed++;
}

static void
s_probe_replay_entry (void *arg, const pl_entry_t *entry)
{
    probe_t *probe = (probe_t *) arg;
    pl_check (!probe->replay_inside);
    pl_check (probe->replay_count < PROBE_REPLAY_MAX);
    pl_check (!strcmp (entry->type, "CHAT") && !strcmp (entry->sender_id, "u-r"));
    pl_check (entry->entry_id && *entry->entry_id && entry->stream_key);
    snprintf (probe->replayed_content [probe->replay_count], 32, "%s", entry->content);
    probe->replayed [probe->replay_count++] = entry->seq;
}

static void
s_probe_replay_done (void *arg, int result, int64_t first_seq, int64_t last_seq)
{
    probe_t *probe = (probe_t *) arg;
    pl_check (!probe->replay_inside);
    pl_check (!probe->replay_called);
    probe->replay_called = true;
    probe->replay_result = result;
    probe->replay_first = first_seq;
    probe->replay_last = last_seq;
}

bool
pl_streams_test_probe_run (probe_t *probe, int max_ms, bool (*until) (probe_t *probe))
{
    int64_t deadline = pl_mono_ms () + max_ms;
    while (pl_mono_ms () < deadline) {
        if (until && until (probe))
            return true;
        pl_streams_test_turn (probe->streams, 20);
    }
    return until? until (probe): true;
}

bool
pl_streams_test_probe_connected (probe_t *probe)
{
    return pl_streams_connected (probe->streams);
}

static bool s_probe_replayed (probe_t *probe) { return probe->replay_called; }

void
pl_streams_test_probe_replay (probe_t *probe, const char *room, int64_t after, int max)
{
    probe->replay_count = 0;
    probe->replay_called = false;
    probe->replay_inside = true;
    int rc = pl_streams_replay (probe->streams, room, after, max, s_probe_replay_entry,
                                s_probe_replay_done, probe);
    probe->replay_inside = false;
    pl_check (rc == 0);
    pl_check (!probe->replay_called);
    bool done = pl_streams_test_probe_run (probe, 5000, s_probe_replayed);
    pl_check (done);
}

void
pl_streams_test_probe_expect (probe_t *probe, int64_t first, int count, int64_t last)
{
    pl_check (probe->replay_result == 0);
    pl_check (probe->replay_count == count);
    pl_check (probe->replay_first == (count? first: 0));
    pl_check (probe->replay_last == last);
    for (int index = 0; index < count; index++) {
        pl_check (probe->replayed [index] == first + index);
        char expect [32];
        snprintf (expect, sizeof expect, "replay %d", (int) (first + index));
        pl_check (streq (probe->replayed_content [index], expect));
    }
}

//  A probe on its own key prefix and host id, running
static probe_t *
s_probe_new (pl_config_t *config, pl_entry_fn *on_fanout, pl_entry_fn *on_persist, bool ack)
{
    probe_t *probe = calloc (1, sizeof (probe_t));
    pl_check (probe);
    probe->ack = ack;
    probe->streams = pl_streams_new (config, on_fanout, on_persist, probe);
    pl_check (probe->streams);
    pl_check (pl_streams_test_probe_run (probe, 5000, pl_streams_test_probe_connected));
    return probe;
}

static pl_config_t *
s_probe_config (int port, const char *prefix, const char *host_id)
{
    char url [64];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d", port);
    return pl_streams_test_config (url, 4, prefix, host_id);
}

//  Append count messages "<content>" to rooms "<prefix>-<index % rooms>"
static void
s_probe_append_rooms (probe_t *probe, const char *prefix, int rooms, int count,
                      const char *content)
{
    for (int index = 0; index < count; index++) {
        char room [16];
        snprintf (room, sizeof room, "%s-%d", prefix, index % rooms);
        pl_entry_t message = { .room_id = room, .type = "CHAT", .sender_id = "u",
                               .content = content, .created_ms = 1 };
        pl_streams_append (probe->streams, &message, s_probe_appended, probe);
    }
}


//  --------------------------------------------------------------------------
//  Checks on Redis

//  Whether a stream has a consumer group of that name
static bool
s_test_has_group (int port, const char *stream, const char *group)
{
    redisContext *context = redisConnect ("127.0.0.1", port);
    pl_check (context && !context->err);
    redisReply *reply = redisCommand (context, "XINFO GROUPS %s", stream);
    bool found = false;
    for (size_t index = 0; reply && reply->type == REDIS_REPLY_ARRAY && index < reply->elements; index++) {
        redisReply *info = reply->element [index];
        for (size_t field = 0; field + 1 < info->elements; field += 2)
            if (!strcmp (info->element [field]->str, "name")
            &&  !strcmp (info->element [field + 1]->str, group))
                found = true;
    }
    freeReplyObject (reply);
    redisFree (context);
    return found;
}

//  A field of the newest entry of a stream
static void
s_test_stream_field (int port, const char *stream, const char *field, char *buffer, size_t size)
{
    redisContext *context = redisConnect ("127.0.0.1", port);
    pl_check (context && !context->err);
    redisReply *reply = redisCommand (context, "XREVRANGE %s + - COUNT 1", stream);
    *buffer = 0;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1) {
        redisReply *fields = reply->element [0]->element [1];
        for (size_t index = 0; index + 1 < fields->elements; index += 2)
            if (!strcmp (fields->element [index]->str, field))
                snprintf (buffer, size, "%s", fields->element [index + 1]->str);
    }
    freeReplyObject (reply);
    redisFree (context);
}

//  An integer query summed over the shard streams of a prefix
static long long
s_test_total (int port, const char *format, const char *prefix, int shards)
{
    long long total = 0;
    for (int shard = 0; shard < shards; shard++) {
        char key [128];
        snprintf (key, sizeof key, "%s:{%d}:stream", prefix, shard);
        long long value = pl_streams_test_query (port, format, key);
        total += value > 0? value: 0;
    }
    return total;
}


//  --------------------------------------------------------------------------
//  Replay

//  Refused without a room or with max < 1; a replay behind appends on the
//  same link sees all of them; the index keeps the newest replay-window
static void
s_test_replay_window (probe_t *probe, int port)
{
    pl_check (pl_streams_replay (probe->streams, NULL, 0, 5, s_probe_replay_entry,
                                 s_probe_replay_done, probe) == -1);
    pl_check (pl_streams_replay (probe->streams, "rr", 0, 0, s_probe_replay_entry,
                                 s_probe_replay_done, probe) == -1);
    for (int index = 1; index <= 30; index++) {
        char content [32];
        snprintf (content, sizeof content, "replay %d", index);
        pl_entry_t message = { .room_id = "rr", .type = "CHAT", .sender_id = "u-r",
                               .sender_name = "R", .content = content, .created_ms = index };
        int rc = pl_streams_append (probe->streams, &message, s_probe_appended, probe);
        pl_check (rc == 0);
    }
    pl_streams_test_probe_replay (probe, "rr", 10, 5);
    pl_check (probe->appends_done == 30 && probe->appends_failed == 0);
    pl_streams_test_probe_expect (probe, 11, 5, 30);

    int shard = pl_streams_shard ("rr", 4);
    pl_check (pl_streams_test_query (port, "ZCARD prep:{%d}:idx:rr", shard) == 25);
    long long ttl = pl_streams_test_query (port, "TTL prep:{%d}:idx:rr", shard);
    pl_check (ttl > 990 && ttl <= 1000);

    //  The index keeps the newest replay-window entries: 6..30
    pl_streams_test_probe_replay (probe, "rr", 0, 3);
    pl_streams_test_probe_expect (probe, 6, 3, 30);
    pl_streams_test_probe_replay (probe, "rr", 28, 10);
    pl_streams_test_probe_expect (probe, 29, 2, 30);
    pl_streams_test_probe_replay (probe, "rr", 30, 10);
    pl_streams_test_probe_expect (probe, 0, 0, 30);
    pl_streams_test_probe_replay (probe, "nowhere", 0, 10);
    pl_streams_test_probe_expect (probe, 0, 0, 0);
}

//  Trimmed entries, holes, NOSCRIPT, and a replay out at teardown
static void
s_test_replay_holes (probe_t *probe, int port)
{
    //  Trimmed from the stream up to seq 9: members 6..8 are skipped, and
    //  dropped from the index
    int shard = pl_streams_shard ("rr", 4);
    char id [ID_MAX];
    pl_streams_test_query_string (port, id, sizeof id, 0, "ZRANGEBYSCORE prep:{%d}:idx:rr 9 9", shard);
    pl_check (*id);
    pl_check (pl_streams_test_query (port, "XTRIM prep:{%d}:stream MINID = %s", shard, id) == 8);
    pl_streams_test_probe_replay (probe, "rr", 0, 5);
    pl_streams_test_probe_expect (probe, 9, 5, 30);
    pl_check (pl_streams_test_query (port, "ZCARD prep:{%d}:idx:rr", shard) == 22);

    //  A hole after the first entry delivered ends the batch; before it, it
    //  is skipped
    pl_streams_test_query_string (port, id, sizeof id, 0, "ZRANGEBYSCORE prep:{%d}:idx:rr 15 15", shard);
    pl_check (pl_streams_test_query (port, "XDEL prep:{%d}:stream %s", shard, id) == 1);
    pl_streams_test_probe_replay (probe, "rr", 10, 10);
    pl_streams_test_probe_expect (probe, 11, 4, 30);
    pl_streams_test_probe_replay (probe, "rr", 14, 3);
    pl_streams_test_probe_expect (probe, 16, 3, 30);

    //  Script cache flushed: EVAL fallback
    pl_streams_test_query (port, "SCRIPT FLUSH");
    pl_streams_test_probe_replay (probe, "rr", 20, 100);
    pl_streams_test_probe_expect (probe, 21, 10, 30);

    //  Teardown with a replay under way: done once, failed
    probe->replay_called = false;
    probe->replay_count = 0;
    pl_check (pl_streams_replay (probe->streams, "rr", 0, 5, s_probe_replay_entry,
                                 s_probe_replay_done, probe) == 0);
    pl_streams_destroy (&probe->streams);
    pl_check (probe->replay_called && probe->replay_result == -1);
}

static void
s_test_replay (int port, bool verbose)
{
    pl_config_t *config = s_probe_config (port, "prep", "rep-host");
    pl_config_set (config, "replay-window", "25");
    pl_config_set (config, "replay-ttl-s", "1000");
    probe_t *probe = s_probe_new (config, NULL, NULL, false);
    s_test_replay_window (probe, port);
    s_test_replay_holes (probe, port);
    if (verbose)
        printf ("   replay: after_seq, max, window, trimmed prefix skipped, hole, NOSCRIPT\n");
    free (probe);
    pl_config_destroy (&config);
}


//  --------------------------------------------------------------------------
//  Signals

static bool s_probe_signalled (probe_t *probe) { return probe->signals == 1 && probe->persist_count == 1; }

static void
s_test_signal (int port, bool verbose)
{
    pl_config_t *config = s_probe_config (port, "psig", "sig-host");
    probe_t *probe = s_probe_new (config, pl_streams_test_probe_fanout,
                                  pl_streams_test_probe_persist, true);
    pl_check (pl_streams_signal (probe->streams, "sig-room", "", NULL, NULL) == -1);
    pl_check (pl_streams_signal (probe->streams, "sig-room", "ROOM_CHANGED", "u9", "{}") == 0);
    pl_entry_t message = { .room_id = "sig-room", .type = "CHAT", .sender_id = "u",
                           .content = "after the signal", .created_ms = 1 };
    pl_streams_append (probe->streams, &message, s_probe_appended, probe);
    pl_check (pl_streams_test_probe_run (probe, 5000, s_probe_signalled));
    pl_check (streq (probe->signal_type, "ROOM_CHANGED"));
    pl_check (streq (probe->signal_room, "sig-room"));
    pl_check (streq (probe->signal_content, "{}") && streq (probe->signal_sender, "u9"));
    pl_streams_test_probe_run (probe, 300, NULL);
    pl_check (probe->persist_signals == 0);
    pl_check (probe->fanout_count == 2 && probe->persist_count == 1);
    int shard = pl_streams_shard ("sig-room", 4);
    pl_check (pl_streams_test_query (port, "XLEN psig:{%d}:stream", shard) == 2);
    pl_check (pl_streams_test_query (port, "XPENDING psig:{%d}:stream persist", shard) == 0);
    pl_check (pl_streams_test_query (port, "XPENDING psig:{%d}:stream fanout:sig-host", shard) == 0);
    //  Signals stay out of the replay index
    pl_check (pl_streams_test_query (port, "ZCARD psig:{%d}:idx:sig-room", shard) == 1);
    pl_streams_stats_t stats;
    pl_streams_stats (probe->streams, &stats);
    pl_check (stats.appended == 1 && stats.fanout_read == 2 && stats.persist_read == 1);
    pl_check (stats.claimed == 0 && stats.dead_lettered == 0 && stats.append_errors == 0);
    pl_check (stats.replication_waits == 0);    //  redis-min-replicas 0: no WAIT
    pl_streams_destroy (&probe->streams);
    if (verbose)
        printf ("   signal: fan-out sees seq 0 with its type, persist acks it unseen\n");
    free (probe);
    pl_config_destroy (&config);
}


//  --------------------------------------------------------------------------
//  Read cursors

static bool s_probe_answered (probe_t *probe) { return probe->appends_done >= probe->wait_done; }

//  One READ of room "rd" by u1, answered
static void
s_probe_read (probe_t *probe, int64_t seq, int expect_result, int64_t expect_seq)
{
    pl_entry_t read = { .room_id = "rd", .type = "READ", .sender_id = "u1",
                        .sender_name = "One", .seq = seq, .created_ms = 2 };
    probe->wait_done = probe->appends_done + 1;
    pl_check (pl_streams_append (probe->streams, &read, s_probe_appended, probe) == 0);
    pl_check (pl_streams_test_probe_run (probe, 5000, s_probe_answered));
    pl_check (probe->last_result == expect_result && probe->last_seq == expect_seq);
}

static bool s_probe_read_seen (probe_t *probe) { return probe->reads_fanout == 2 && probe->reads_persist == 2; }

//  Forward only, never past the room's last seq, no seq of its own, not
//  in the replay index; both groups read it
static void
s_test_reads (int port, bool verbose)
{
    pl_config_t *config = s_probe_config (port, "prd", "rd-host");
    pl_config_set (config, "read-cache-ttl-s", "500");
    probe_t *probe = s_probe_new (config, pl_streams_test_probe_fanout,
                                  pl_streams_test_probe_persist, true);
    for (int index = 0; index < 5; index++) {
        pl_entry_t message = { .room_id = "rd", .type = "CHAT", .sender_id = "u2",
                               .content = "m", .created_ms = 1 };
        pl_check (pl_streams_append (probe->streams, &message, s_probe_appended, probe) == 0);
    }
    probe->wait_done = 5;
    pl_check (pl_streams_test_probe_run (probe, 5000, s_probe_answered));
    pl_entry_t read = { .room_id = "rd", .type = "READ", .sender_id = "u1", .seq = 0 };
    pl_check (pl_streams_append (probe->streams, &read, s_probe_appended, probe) == -1);
    s_probe_read (probe, 3, 0, 3);
    s_probe_read (probe, 2, 1, 3);              //  backwards: nothing
    s_probe_read (probe, 3, 1, 3);
    s_probe_read (probe, 9, 2, 5);              //  past the end: refused
    s_probe_read (probe, 5, 0, 5);
    pl_check (pl_streams_test_probe_run (probe, 5000, s_probe_read_seen));
    pl_check (probe->read_seq == 5 && streq (probe->read_sender, "u1"));

    int shard = pl_streams_shard ("rd", 4);
    char value [16];
    pl_streams_test_query_string (port, value, sizeof value, 0, "HGET prd:{%d}:seq rd", shard);
    pl_check (streq (value, "5"));
    pl_check (pl_streams_test_query (port, "ZCARD prd:{%d}:idx:rd", shard) == 5);
    pl_check (pl_streams_test_query (port, "XLEN prd:{%d}:stream", shard) == 7);
    pl_streams_test_query_string (port, value, sizeof value, 0, "HGET prd:{%d}:read:rd u1", shard);
    pl_check (streq (value, "5"));
    long long ttl = pl_streams_test_query (port, "TTL prd:{%d}:read:rd", shard);
    pl_check (ttl > 490 && ttl <= 500);
    pl_streams_destroy (&probe->streams);
    if (verbose)
        printf ("   reads: forward only, refused past the end, both groups, no seq taken\n");
    free (probe);
    pl_config_destroy (&config);
}


//  --------------------------------------------------------------------------
//  Claims and dead letters

static bool s_probe_20 (probe_t *probe) { return probe->persist_count == 20; }
static bool s_probe_19 (probe_t *probe) { return probe->persist_count == 19; }
static bool s_probe_dead (probe_t *probe)
{
    pl_streams_stats_t stats;
    pl_streams_stats (probe->streams, &stats);
    return stats.dead_lettered == 1 && pl_streams_persist_inflight (probe->streams) == 0;
}

//  Host a reads 20 persist entries and dies without acking any; one of
//  them is deleted meanwhile: its data is gone
static void
s_test_claim_abandon (probe_t *probe, int port, pl_config_t *config)
{
    probe->streams = pl_streams_new (config, NULL, pl_streams_test_probe_persist, probe);
    pl_check (probe->streams);
    pl_check (pl_streams_test_probe_run (probe, 5000, pl_streams_test_probe_connected));
    s_probe_append_rooms (probe, "claim", 5, 20, "claim me");
    pl_check (pl_streams_test_probe_run (probe, 5000, s_probe_20));
    pl_streams_destroy (&probe->streams);
    pl_check (s_test_total (port, "XPENDING %s persist", "pclaim", 4) == 20);
    pl_check (pl_streams_test_query (port, "XDEL %s %s", probe->first_stream, probe->first_id) == 1);
}

//  A store that cannot store: the entry goes to the dead stream
static void
s_test_dead_letter (probe_t *probe, int port)
{
    probe->fail_left = 1;
    pl_entry_t message = { .room_id = "claim-0", .type = "CHAT", .sender_id = "u-d",
                           .sender_name = "Dee", .content = "doomed", .client_msg_id = "cm-d",
                           .created_ms = 77 };
    pl_streams_append (probe->streams, &message, s_probe_appended, probe);
    pl_check (pl_streams_test_probe_run (probe, 5000, s_probe_dead));
    pl_check (probe->persist_count == 20);
    pl_check (pl_streams_test_query (port, "XLEN pclaim:dead") == 1);
    pl_check (s_test_total (port, "XPENDING %s persist", "pclaim", 4) == 0);
    char value [128];
    s_test_stream_field (port, "pclaim:dead", "error", value, sizeof value);
    pl_check (streq (value, "mongo says no"));
    s_test_stream_field (port, "pclaim:dead", "content", value, sizeof value);
    pl_check (streq (value, "doomed"));
    s_test_stream_field (port, "pclaim:dead", "entry_id", value, sizeof value);
    pl_check (streq (value, probe->failed_id));
    s_test_stream_field (port, "pclaim:dead", "stream", value, sizeof value);
    char stream [64];
    snprintf (stream, sizeof stream, "pclaim:{%d}:stream", pl_streams_shard ("claim-0", 4));
    pl_check (streq (value, stream));
    s_test_stream_field (port, "pclaim:dead", "cmid", value, sizeof value);
    pl_check (streq (value, "cm-d"));
    s_test_stream_field (port, "pclaim:dead", "failed_at", value, sizeof value);
    pl_check (atoll (value) > 1700000000000LL);
}

static void
s_test_claim (int port, bool verbose)
{
    pl_config_t *config_a = s_probe_config (port, "pclaim", "host-a");
    probe_t *probe = calloc (1, sizeof (probe_t));
    pl_check (probe);
    s_test_claim_abandon (probe, port, config_a);

    //  Host b claims what a left idle, acks it; the deleted one is acked
    pl_config_t *config_b = s_probe_config (port, "pclaim", "host-b");
    pl_config_set (config_b, "claim-idle-ms", "300");
    pl_config_set (config_b, "claim-interval-ms", "100");
    memset (probe, 0, sizeof *probe);
    probe->ack = true;
    int64_t started = pl_mono_ms ();
    probe->streams = pl_streams_new (config_b, NULL, pl_streams_test_probe_persist, probe);
    pl_check (probe->streams);
    pl_check (pl_streams_test_probe_run (probe, 5000, s_probe_19));
    int64_t took = pl_mono_ms () - started;
    pl_streams_test_probe_run (probe, 200, NULL);
    pl_check (probe->persist_count == 19);
    pl_check (s_test_total (port, "XPENDING %s persist", "pclaim", 4) == 0);
    pl_streams_stats_t stats;
    pl_streams_stats (probe->streams, &stats);
    pl_check (stats.claimed == 19 && stats.persist_read == 0);
    if (verbose)
        printf ("   XAUTOCLAIM: 19 entries of a dead consumer claimed in %d ms, "
                "a deleted one acked\n", (int) took);

    s_test_dead_letter (probe, port);
    pl_streams_destroy (&probe->streams);
    if (verbose)
        printf ("   persist_fail: entry in pclaim:dead with its error, not pending\n");
    free (probe);
    pl_config_destroy (&config_a);
    pl_config_destroy (&config_b);
}


//  --------------------------------------------------------------------------
//  Janitor

static bool s_probe_all_1000 (probe_t *probe)
{
    return probe->appends_done == 1000 && probe->persist_count == 1000 && probe->fanout_count == 1000;
}

//  Runs until the janitor completed two more rounds (the first may have
//  started before what the caller waits for)
static void
s_probe_janitor_rounds (probe_t *probe)
{
    uint64_t until = probe->streams->janitor.rounds + 2;
    int64_t deadline = pl_mono_ms () + 5000;
    while (probe->streams->janitor.rounds < until && pl_mono_ms () < deadline)
        pl_streams_test_turn (probe->streams, 20);
    pl_check (probe->streams->janitor.rounds >= until);
}

//  Departed hosts' groups are destroyed; a live host's group is kept and
//  holds trimming back until its host goes too
static void
s_test_janitor_groups (probe_t *probe, int port, bool verbose)
{
    s_probe_append_rooms (probe, "jan", 16, 1000, "tidy");
    pl_check (pl_streams_test_probe_run (probe, 10000, s_probe_all_1000));
    s_probe_janitor_rounds (probe);
    long long shard_0 = pl_streams_test_query (port, "XLEN pjan:{0}:stream");
    for (int shard = 0; shard < BULK_SHARDS; shard++) {
        char stream [64];
        snprintf (stream, sizeof stream, "pjan:{%d}:stream", shard);
        pl_check (!s_test_has_group (port, stream, "fanout:ghost"));
        pl_check (s_test_has_group (port, stream, "persist"));
        pl_check (s_test_has_group (port, stream, "fanout:jan-host"));
        if (shard > 0)
            pl_check (pl_streams_test_query (port, "XLEN %s", stream) <= 1);
    }
    //  The live host's group has read nothing: shard 0 is kept whole
    pl_check (s_test_has_group (port, "pjan:{0}:stream", "fanout:alive"));
    pl_check (shard_0 > 100);
    //  Its host goes: its group goes, shard 0 is trimmed too
    pl_streams_test_query (port, "DEL pjan:host:alive");
    s_probe_janitor_rounds (probe);
    pl_check (!s_test_has_group (port, "pjan:{0}:stream", "fanout:alive"));
    pl_check (pl_streams_test_query (port, "XLEN pjan:{0}:stream") <= 1);
    long long ttl = pl_streams_test_query (port, "TTL pjan:host:jan-host");
    pl_check (ttl > 0 && ttl <= 2);
    pl_streams_stats_t stats;
    pl_streams_stats (probe->streams, &stats);
    pl_check (stats.trimmed >= 1000 - BULK_SHARDS);
    if (verbose)
        printf ("   janitor: departed hosts' groups destroyed, live one kept and "
                "holding trim, streams trimmed to %d entries\n",
                (int) s_test_total (port, "XLEN %s", "pjan", BULK_SHARDS));
}

//  Appends of the bound test while the producer is at most BULK_WINDOW
//  ahead of what persist acked
static void
s_bulk_issue (probe_t *probe, int *issued)
{
    while (*issued < BULK_MESSAGES && *issued - probe->persist_count < BULK_WINDOW) {
        char room [16];
        snprintf (room, sizeof room, "bulk-%d", *issued % 100);
        pl_entry_t message = { .room_id = room, .type = "CHAT", .sender_id = "u",
                               .sender_name = "Bulk", .content = "a bulk message of some length",
                               .created_ms = *issued };
        int rc = pl_streams_append (probe->streams, &message, s_probe_appended, probe);
        pl_check (rc == 0);
        (*issued)++;
    }
}

//  Bound: 100,000 appends pipelined, janitor every 100 ms; after every
//  janitor round the shard streams together stay under the bound below
static void
s_test_janitor_bound (probe_t *probe, int port, bool verbose)
{
    probe->appends_done = probe->persist_count = probe->fanout_count = 0;
    int issued = 0;
    long long longest = 0;
    int samples = 0;
    uint64_t rounds = probe->streams->janitor.rounds;
    int64_t started = pl_mono_ms ();
    while (probe->appends_done < BULK_MESSAGES || probe->persist_count < BULK_MESSAGES
       ||  probe->fanout_count < BULK_MESSAGES) {
        pl_check (pl_mono_ms () - started < 60000);
        s_bulk_issue (probe, &issued);
        pl_streams_test_turn (probe->streams, 20);
        if (probe->streams->janitor.rounds != rounds) {
            rounds = probe->streams->janitor.rounds;
            long long length = s_test_total (port, "XLEN %s", "pjan", BULK_SHARDS);
            if (length > longest)
                longest = length;
            samples++;
        }
    }
    int took = (int) (pl_mono_ms () - started);
    pl_check (probe->appends_failed == 0);
    s_probe_janitor_rounds (probe);
    long long final = s_test_total (port, "XLEN %s", "pjan", BULK_SHARDS);
    //  Left after a trim: the producer's lead (W) and the read batch not yet
    //  acked (R*S), plus what lands while the round's XPENDING and XTRIM
    //  wait behind pipelined appends on the command link (at most W each):
    //  about 4*R*S with W = R*S; asserted with some room
    int bound = 5 * BULK_READ_COUNT * BULK_SHARDS;
    if (verbose)
        printf ("   bound: %d appends in %d ms, %d janitor rounds, longest %lld entries "
                "(bound %d), %lld at the end\n", BULK_MESSAGES, took, samples, longest,
                bound, final);
    pl_check (samples > 5);
    pl_check (longest <= bound);
    pl_check (final <= BULK_SHARDS);
}

static void
s_test_janitor (int port, bool verbose)
{
    pl_config_t *config = s_probe_config (port, "pjan", "jan-host");
    pl_config_set (config, "janitor-interval-ms", "100");
    pl_config_set (config, "host-gone-s", "2");
    char number [16];
    snprintf (number, sizeof number, "%d", BULK_READ_COUNT);
    pl_config_set (config, "read-count", number);
    pl_config_set (config, "persist-inflight", "512");
    //  A departed host (no key) on every shard; a live one on shard 0
    for (int shard = 0; shard < BULK_SHARDS; shard++)
        pl_check (pl_streams_test_query (port, "XGROUP CREATE pjan:{%d}:stream fanout:ghost 0 MKSTREAM",
                                         shard) == -1);
    pl_streams_test_query (port, "XGROUP CREATE pjan:{0}:stream fanout:alive 0");
    pl_streams_test_query (port, "SET pjan:host:alive 1 EX 60");
    pl_check (s_test_has_group (port, "pjan:{0}:stream", "fanout:alive"));

    probe_t *probe = s_probe_new (config, pl_streams_test_probe_fanout,
                                  pl_streams_test_probe_persist, true);
    s_test_janitor_groups (probe, port, verbose);
    s_test_janitor_bound (probe, port, verbose);
    pl_streams_stats_t stats;
    pl_streams_stats (probe->streams, &stats);
    pl_check (stats.appended == 1000 + BULK_MESSAGES);
    pl_check (stats.persist_read == 1000 + BULK_MESSAGES);
    pl_check (stats.fanout_read == 1000 + BULK_MESSAGES);
    pl_check (stats.trimmed >= 1000 + BULK_MESSAGES - BULK_SHARDS);
    pl_check (probe->max_inflight <= 512);
    pl_streams_destroy (&probe->streams);
    free (probe);
    pl_config_destroy (&config);
}

//  --------------------------------------------------------------------------
//  Replicas: redis-min-replicas

//  Whether the replica on replica_port has its link to the primary up
static bool
s_replica_linked (int replica_port)
{
    char info [4096];
    pl_streams_test_query_string (replica_port, info, sizeof info, 0, "INFO replication");
    return strstr (info, "master_link_status:up") != NULL;
}

//  One append of room "rep" with cmid, answered: its result and seq
static void
s_probe_append_cmid (probe_t *probe, const char *cmid, int expect_result, int64_t expect_seq)
{
    pl_entry_t message = { .room_id = "rep", .type = "CHAT", .sender_id = "u",
                           .content = cmid, .client_msg_id = cmid, .created_ms = 3 };
    probe->wait_done = probe->appends_done + 1;
    pl_check (pl_streams_append (probe->streams, &message, s_probe_appended, probe) == 0);
    pl_check (pl_streams_test_probe_run (probe, 5000, s_probe_answered));
    pl_check (probe->last_result == expect_result && probe->last_seq == expect_seq);
}

//  With redis-min-replicas 1 an append is answered once a replica has it;
//  a replica that does not confirm in time makes it -2, and the retry
//  with the same clientMsgId gets the seq it was given
static void
s_test_replicas (int port, bool verbose)
{
    char dir [] = "/tmp/pl_streams_replica_XXXXXX";
    pl_check (mkdtemp (dir));
    int replica_port = pl_streams_test_free_port ();
    pid_t replica = pl_streams_test_redis_start (replica_port, dir, false);
    pl_streams_test_query (replica_port, "REPLICAOF 127.0.0.1 %d", port);
    for (int attempt = 0; attempt < 500 && !s_replica_linked (replica_port); attempt++)
        usleep (20000);
    pl_check (s_replica_linked (replica_port));

    pl_config_t *config = s_probe_config (port, "prep", "rep-host");
    pl_config_set (config, "redis-min-replicas", "1");
    pl_config_set (config, "redis-wait-timeout-ms", "300");
    probe_t *probe = s_probe_new (config, pl_streams_test_probe_fanout,
                                  pl_streams_test_probe_persist, true);
    s_probe_append_cmid (probe, "c1", 0, 1);
    char seq [8];
    pl_streams_test_query_string (replica_port, seq, sizeof seq, 0, "HGET prep:{%d}:seq rep",
                                  pl_streams_shard ("rep", 4));
    pl_check (streq (seq, "1"));        //  on the replica when answered
    //  A replica that answers nothing: not acknowledged, the seq is kept
    kill (replica, SIGSTOP);
    s_probe_append_cmid (probe, "c2", -2, 2);
    kill (replica, SIGCONT);
    s_probe_append_cmid (probe, "c2", 1, 2);
    pl_streams_stats_t stats;
    pl_streams_stats (probe->streams, &stats);
    pl_check (stats.appended == 1 && stats.duplicates == 1 && stats.unreplicated == 1);
    pl_check (stats.replication_waits >= 3 && stats.append_errors == 0);
    pl_streams_destroy (&probe->streams);
    free (probe);
    pl_config_destroy (&config);
    pl_streams_test_redis_stop (replica);
    pl_streams_test_rm (dir);
    if (verbose)
        printf ("   replicas: answered after WAIT; a silent replica makes it -2, the retry keeps its seq\n");
}

//  --------------------------------------------------------------------------
//  Seq floors: a counter never goes back below what is stored

//  One append of room "fl" (or "fl-new") with floor, answered: its result
//  and seq
static void
s_probe_append_to (probe_t *probe, const char *room, int64_t floor, int expect_result,
                   int64_t expect_seq)
{
    //  A floor of 100 + n: n, the dedup keys restored
    pl_entry_t message = { .room_id = room, .type = "CHAT", .sender_id = "u", .content = "x",
                           .client_msg_id = probe->cmid, .created_ms = 4,
                           .seq_floor = floor >= 100? floor - 100: floor, .dedup_restored = floor >= 100 };
    probe->wait_done = probe->appends_done + 1;
    pl_check (pl_streams_append (probe->streams, &message, s_probe_appended, probe) == 0);
    pl_check (pl_streams_test_probe_run (probe, 5000, s_probe_answered));
    pl_check (probe->last_result == expect_result && probe->last_seq == expect_seq);
}
#define s_probe_append_floor(probe,floor,result,seq) s_probe_append_to ((probe), "fl", (floor), (result), (seq))

static uint64_t s_generation_was;
static bool
s_probe_new_generation (probe_t *probe)
{
    return pl_streams_generation (probe->streams) > s_generation_was
        && pl_streams_connected (probe->streams);
}

static void
s_test_floors (int port, bool verbose)
{
    pl_config_t *config = s_probe_config (port, "pflo", "flo-host");
    probe_t *probe = s_probe_new (config, pl_streams_test_probe_fanout,
                                  pl_streams_test_probe_persist, true);
    int shard = pl_streams_shard ("fl", 4);
    //  No counter, and the caller asks that one exist: nothing appended
    s_probe_append_floor (probe, PL_SEQ_FLOOR_CHECK, 3, 0);
    pl_check (pl_streams_test_query (port, "XLEN pflo:{%d}:stream", shard) == 0);
    //  MongoDB has up to 5: nothing appended until the dedup keys of 1..5
    //  are back (5: the counter is 0), then the counter starts above it
    s_probe_append_floor (probe, 5, 5, 0);
    pl_check (pl_streams_dedup_restore (probe->streams, "fl", "u", "lost-3", 3) == 0);
    s_probe_append_floor (probe, 105, 0, 6);
    s_probe_append_floor (probe, PL_SEQ_FLOOR_CHECK, 0, 7);
    //  The restored key answers a retry of that message with its seq
    snprintf (probe->cmid, sizeof probe->cmid, "lost-3");
    s_probe_append_floor (probe, PL_SEQ_FLOOR_CHECK, 1, 3);
    probe->cmid [0] = 0;
    //  A counter gone back (Redis lost writes): a floor of 0 still lifts it
    //  past the room's replay index, once the keys are back
    pl_streams_test_query (port, "HSET pflo:{%d}:seq fl 2", shard);
    s_probe_append_floor (probe, 0, 5, 2);
    s_probe_append_floor (probe, 100, 0, 8);
    //  A counter gone: checked appends refuse until a floor comes
    pl_streams_test_query (port, "HDEL pflo:{%d}:seq fl", shard);
    s_probe_append_floor (probe, PL_SEQ_FLOOR_CHECK, 3, 0);
    s_probe_append_floor (probe, 108, 0, 9);
    //  A room just created: its counter is there at 0, no floor needed
    pl_check (pl_streams_room_created (probe->streams, "fl-new") == 0);
    s_probe_append_to (probe, "fl-new", PL_SEQ_FLOOR_CHECK, 0, 1);
    pl_check (pl_streams_room_created (probe->streams, "fl-new") == 0);     //  not reset
    s_probe_append_to (probe, "fl-new", PL_SEQ_FLOOR_CHECK, 0, 2);
    pl_streams_stats_t stats;
    pl_streams_stats (probe->streams, &stats);
    pl_check (stats.counters_missing == 2 && stats.counters_raised == 3);
    pl_check (stats.appended == 6 && stats.duplicates == 1 && stats.append_errors == 0);
    pl_check (stats.dedup_restored == 1);
    //  A new command connection is a new generation
    s_generation_was = pl_streams_generation (probe->streams);
    pl_check (s_generation_was > 0);
    pl_streams_test_query (port, "CLIENT KILL TYPE normal");
    pl_check (pl_streams_test_probe_run (probe, 10000, s_probe_new_generation));
    pl_streams_destroy (&probe->streams);
    free (probe);
    pl_config_destroy (&config);
    if (verbose)
        printf ("   floors: a missing counter refused until a floor comes; a floor or the index lifts one gone back\n");
}

void
pl_streams_test_parts (int port, bool verbose)
{
    s_test_replay (port, verbose);
    s_test_signal (port, verbose);
    s_test_reads (port, verbose);
    s_test_claim (port, verbose);
    s_test_janitor (port, verbose);
    s_test_replicas (port, verbose);
    s_test_floors (port, verbose);
}
