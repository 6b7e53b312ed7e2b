/*  =========================================================================
    pl_streams_test_broadcast - selftest of the broadcast between hosts

    Two instances on one key prefix stand for two hosts: each hears the
    other's broadcasts and its own, binary payloads intact; an oversize
    payload is refused; a subscriber whose connection Redis kills comes
    back subscribed; no handler, no subscriber connection; Redis away,
    broadcasts dropped. The cluster part runs the pair in
    pl_streams_test_cluster.c.
    =========================================================================
*/
#include "pl_streams_test.h"

#define BTEST_MAX_BYTES     32


//  --------------------------------------------------------------------------
//  The probe's handler and the pair

void
pl_streams_test_probe_broadcast (void *arg, const char *payload, size_t size)
{
    probe_t *probe = (probe_t *) arg;
    if (!probe->streams->in_handle)
        probe->broadcast_outside = true;
    int slot = probe->broadcasts++ % PROBE_BROADCASTS_MAX;
    pl_check (size <= sizeof probe->broadcast [slot]);
    memcpy (probe->broadcast [slot], payload, size);
    probe->broadcast_size [slot] = size;
}

//  Whether one of the latest broadcasts the probe got is this payload
static bool
s_probe_got (probe_t *probe, const char *payload, size_t size)
{
    int count = probe->broadcasts < PROBE_BROADCASTS_MAX? probe->broadcasts: PROBE_BROADCASTS_MAX;
    for (int slot = 0; slot < count; slot++)
        if (probe->broadcast_size [slot] == size && !memcmp (probe->broadcast [slot], payload, size))
            return true;
    return false;
}

//  Loop turns of both instances until until holds or max_ms passed
static bool
s_pair_run (probe_t *one, probe_t *other, int max_ms, bool (*until) (probe_t *, probe_t *))
{
    int64_t deadline = pl_mono_ms () + max_ms;
    while (pl_mono_ms () < deadline) {
        if (until (one, other))
            return true;
        pl_streams_test_turn (one->streams, 5);
        pl_streams_test_turn (other->streams, 5);
    }
    return until (one, other);
}

static bool
s_pair_subscribed (probe_t *one, probe_t *other)
{
    return one->streams->broadcast.subscribed && other->streams->broadcast.subscribed
        && pl_streams_connected (one->streams) && pl_streams_connected (other->streams);
}

//  Both have this many broadcasts
static int s_pair_expect;
static bool
s_pair_received (probe_t *one, probe_t *other)
{
    return one->broadcasts >= s_pair_expect && other->broadcasts >= s_pair_expect;
}

void
pl_streams_test_broadcast_pair (probe_t *one, probe_t *other)
{
    pl_streams_set_broadcast_handler (one->streams, pl_streams_test_probe_broadcast, one);
    pl_streams_set_broadcast_handler (other->streams, pl_streams_test_probe_broadcast, other);
    pl_check (s_pair_run (one, other, 10000, s_pair_subscribed));
    int first = one->broadcasts;
    pl_check (other->broadcasts == first);
    //  Opaque bytes: a NUL inside goes through
    const char typing [] = "typing\0room-1";
    int rc = pl_streams_broadcast (one->streams, typing, sizeof typing - 1);
    pl_check (rc == 0);
    rc = pl_streams_broadcast (other->streams, "presence", 8);
    pl_check (rc == 0);
    s_pair_expect = first + 2;
    pl_check (s_pair_run (one, other, 5000, s_pair_received));
    pl_check (one->broadcasts == first + 2 && other->broadcasts == first + 2);
    pl_check (s_probe_got (one, typing, sizeof typing - 1) && s_probe_got (one, "presence", 8));
    pl_check (s_probe_got (other, typing, sizeof typing - 1) && s_probe_got (other, "presence", 8));
    pl_check (!one->broadcast_outside && !other->broadcast_outside);
}


//  --------------------------------------------------------------------------
//  Single Redis

//  Subscribers to a channel, as Redis counts them
static long long
s_subscribers (int port, const char *channel)
{
    redisContext *context = redisConnect ("127.0.0.1", port);
    pl_check (context && !context->err);
    redisReply *reply = redisCommand (context, "PUBSUB NUMSUB %s", channel);
    long long count = -1;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
    &&  reply->element [1]->type == REDIS_REPLY_INTEGER)
        count = reply->element [1]->integer;
    freeReplyObject (reply);
    redisFree (context);
    return count;
}

//  No readers: these instances only broadcast
static probe_t *
s_btest_probe (pl_config_t *config)
{
    probe_t *probe = calloc (1, sizeof (probe_t));
    pl_check (probe);
    probe->streams = pl_streams_new (config, NULL, NULL, probe);
    pl_check (probe->streams);
    pl_check (pl_streams_test_probe_run (probe, 5000, pl_streams_test_probe_connected));
    return probe;
}

static void
s_btest_probe_destroy (probe_t **probe_p)
{
    pl_streams_destroy (&(*probe_p)->streams);
    free (*probe_p);
    *probe_p = NULL;
}

//  Exactly broadcast-max-bytes goes, one more is refused and counted
static void
s_btest_oversize (probe_t *one, probe_t *other)
{
    char payload [BTEST_MAX_BYTES + 1];
    memset (payload, 'x', sizeof payload);
    int rc = pl_streams_broadcast (one->streams, payload, BTEST_MAX_BYTES + 1);
    pl_check (rc == -1);
    payload [0] = 'm';
    rc = pl_streams_broadcast (one->streams, payload, BTEST_MAX_BYTES);
    pl_check (rc == 0);
    s_pair_expect = one->broadcasts + 1;
    pl_check (s_pair_run (one, other, 5000, s_pair_received));
    pl_check (s_probe_got (other, payload, BTEST_MAX_BYTES));
    pl_streams_stats_t stats;
    pl_streams_stats (one->streams, &stats);
    pl_check (stats.broadcasts_dropped == 1 && stats.broadcasts_sent == 2);
}

static bool
s_pair_resubscribed (probe_t *one, probe_t *other)
{
    pl_streams_stats_t stats_one, stats_other;
    pl_streams_stats (one->streams, &stats_one);
    pl_streams_stats (other->streams, &stats_other);
    return stats_one.reconnects == 1 && stats_other.reconnects == 1
        && s_pair_subscribed (one, other);
}

//  Redis drops both subscribers: they come back and hear again
static void
s_btest_killed (probe_t *one, probe_t *other, int port)
{
    pl_check (pl_streams_test_query (port, "CLIENT KILL TYPE pubsub") == 2);
    pl_check (s_pair_run (one, other, 5000, s_pair_resubscribed));
    int rc = pl_streams_broadcast (other->streams, "back", 4);
    pl_check (rc == 0);
    s_pair_expect = one->broadcasts + 1;
    pl_check (s_pair_run (one, other, 5000, s_pair_received));
    pl_check (s_probe_got (one, "back", 4));
}

static bool
s_one_subscriber (probe_t *one, probe_t *other)
{
    (void) other;
    return s_subscribers (one->streams->server.port, one->streams->broadcast.channel) == 1;
}

static bool
s_one_received (probe_t *one, probe_t *other)
{
    (void) other;
    return one->broadcasts >= s_pair_expect;
}

//  Handler removed: the subscriber connection closes, nothing more comes
static void
s_btest_unset (probe_t *one, probe_t *other)
{
    pl_streams_set_broadcast_handler (other->streams, NULL, NULL);
    pl_check (s_pair_run (one, other, 5000, s_one_subscriber));
    pl_check (!other->streams->broadcast.link.ac);
    int before = other->broadcasts;
    int rc = pl_streams_broadcast (other->streams, "alone", 5);
    pl_check (rc == 0);
    s_pair_expect = one->broadcasts + 1;
    pl_check (s_pair_run (one, other, 5000, s_one_received));
    s_pair_expect++;
    s_pair_run (one, other, 100, s_one_received);     //  time to get it, were it subscribed
    pl_check (s_probe_got (one, "alone", 5));
    pl_check (other->broadcasts == before);
}

//  Redis not there: refused, counted, and a handler set meanwhile is safe
static void
s_btest_away (void)
{
    char url [64];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d", pl_streams_test_free_port ());
    pl_config_t *config = pl_streams_test_config (url, 2, "pbcast", "bc-away");
    probe_t probe = { 0 };
    probe.streams = pl_streams_new (config, NULL, NULL, &probe);
    pl_check (probe.streams);
    pl_streams_set_broadcast_handler (probe.streams, pl_streams_test_probe_broadcast, &probe);
    pl_streams_test_turn (probe.streams, 20);
    pl_check (pl_streams_broadcast (probe.streams, "x", 1) == -1);
    pl_streams_stats_t stats;
    pl_streams_stats (probe.streams, &stats);
    pl_check (stats.broadcasts_dropped == 1 && stats.broadcasts_sent == 0);
    pl_streams_destroy (&probe.streams);
    pl_config_destroy (&config);
}

void
pl_streams_test_broadcast (int port, bool verbose)
{
    char url [64];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d", port);
    pl_config_t *config_one = pl_streams_test_config (url, 2, "pbcast", "bc-one");
    pl_config_t *config_other = pl_streams_test_config (url, 2, "pbcast", "bc-other");
    char number [16];
    snprintf (number, sizeof number, "%d", BTEST_MAX_BYTES);
    int rc = pl_config_set (config_one, "broadcast-max-bytes", number);
    pl_check (rc == 0);
    probe_t *one = s_btest_probe (config_one);
    probe_t *other = s_btest_probe (config_other);
    //  No handler yet: no subscriber connection
    pl_check (!one->streams->broadcast.link.ac);
    pl_check (s_subscribers (port, "pbcast:broadcast") == 0);

    pl_streams_test_broadcast_pair (one, other);
    pl_check (s_subscribers (port, "pbcast:broadcast") == 2);
    if (verbose)
        printf ("   broadcast: two hosts hear each other and themselves\n");
    s_btest_oversize (one, other);
    s_btest_killed (one, other, port);
    if (verbose)
        printf ("   broadcast: oversize refused, subscribers killed come back\n");
    s_btest_unset (one, other);
    pl_streams_stats_t stats;
    pl_streams_stats (other->streams, &stats);
    pl_check (stats.broadcasts_sent == 3 && stats.broadcasts_dropped == 0);
    pl_check (stats.broadcasts_received == 4);
    s_btest_away ();

    s_btest_probe_destroy (&one);
    s_btest_probe_destroy (&other);
    pl_config_destroy (&config_one);
    pl_config_destroy (&config_other);
}
