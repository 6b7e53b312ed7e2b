/*  =========================================================================
    pl_streams_test - what the selftest files of pl_streams share: throwaway
    redis-server processes, synchronous queries for checks, and the probe
    (a caller of pl_streams that records what it was handed)

    Only the pl_streams_test*.c files include it.
    =========================================================================
*/
#ifndef PL_STREAMS_TEST_H_INCLUDED
#define PL_STREAMS_TEST_H_INCLUDED

#include "pl_streams_internal.h"

#include <sys/types.h>

//  --------------------------------------------------------------------------
//  Redis servers and checks (pl_streams_test.c)

//  Start redis-server on a loopback port (cluster: cluster-enabled); ready
//  once it answers PING
pid_t
    pl_streams_test_redis_start (int port, const char *dir, bool cluster);
void
    pl_streams_test_redis_stop (pid_t pid);
//  A loopback port free to bind now
int
    pl_streams_test_free_port (void);
//  A configuration for a throwaway instance: redis-url, shards, key prefix
//  and host id; read-count 50, block-ms 100
pl_config_t *
    pl_streams_test_config (const char *url, int shards, const char *prefix,
                            const char *host_id);
//  One loop turn as a caller would write it: poll the instance's links for
//  at most max_wait_ms, then handle what came
void
    pl_streams_test_turn (pl_streams_t *streams, int max_wait_ms);
//  Remove a folder and what it holds
void
    pl_streams_test_rm (const char *dir);
//  Synchronous query: an integer reply, the first integer of an array
//  reply (XPENDING summary), or -1
long long
    pl_streams_test_query (int port, const char *format, ...);
//  Synchronous query: the string reply, or element [index] of an array
//  reply, into buffer ("" when there is none)
void
    pl_streams_test_query_string (int port, char *buffer, size_t size, int index,
                                  const char *format, ...);

//  --------------------------------------------------------------------------
//  The probe (pl_streams_test_probe.c)

#define PROBE_REPLAY_MAX    64
#define PROBE_BROADCASTS_MAX 8

typedef struct {
    pl_streams_t *streams;
    int fanout_count;
    int signals;                //  fan-out entries with seq 0
    char signal_type [32];
    char signal_room [32];
    char signal_content [8];
    char signal_sender [8];
    int persist_count;
    int persist_signals;        //  persist entries with seq 0: must stay 0
    bool ack;                   //  ack persist entries inside on_persist
    int fail_left;              //  persist_fail this many entries instead
    char first_id [ID_MAX];     //  entry id of the first persist entry
    char first_stream [64];     //  ... and its stream (ids repeat across streams)
    char failed_id [ID_MAX];
    size_t max_inflight;
    int appends_done;
    int appends_failed;
    int wait_done;              //  appends_done to wait for
    int last_result;            //  of the last append answered
    int64_t last_seq;
    char cmid [16];             //  the clientMsgId of s_probe_append_to, "" none
    int reads_fanout;           //  READ entries handed to on_fanout
    int reads_persist;          //  ... and to on_persist
    int64_t read_seq;           //  the last READ's cursor, as fan-out saw it
    char read_sender [16];
    int64_t replayed [PROBE_REPLAY_MAX];
    char replayed_content [PROBE_REPLAY_MAX][32];
    int replay_count;
    bool replay_called;
    bool replay_inside;         //  set around the pl_streams_replay call
    int replay_result;
    int64_t replay_first;
    int64_t replay_last;
    int broadcasts;             //  handed to pl_streams_test_probe_broadcast
    char broadcast [PROBE_BROADCASTS_MAX][48];      //  the latest, round robin
    size_t broadcast_size [PROBE_BROADCASTS_MAX];
    bool broadcast_outside;     //  one came outside pl_streams_handle: must stay false
} probe_t;

//  The probe's entry callbacks for pl_streams_new
void
    pl_streams_test_probe_fanout (void *arg, const pl_entry_t *entry);
void
    pl_streams_test_probe_persist (void *arg, const pl_entry_t *entry);
//  Loop turns until until (probe) holds or max_ms passed; NULL: run max_ms
bool
    pl_streams_test_probe_run (probe_t *probe, int max_ms, bool (*until) (probe_t *probe));
bool
    pl_streams_test_probe_connected (probe_t *probe);
//  Replay and wait for it; checks done comes later than the call
void
    pl_streams_test_probe_replay (probe_t *probe, const char *room, int64_t after, int max);
//  The last replay gave count entries from first ("replay <seq>"), last seq
void
    pl_streams_test_probe_expect (probe_t *probe, int64_t first, int count, int64_t last);

//  --------------------------------------------------------------------------
//  Broadcast (pl_streams_test_broadcast.c)

//  The probe's broadcast handler
void
    pl_streams_test_probe_broadcast (void *arg, const char *payload, size_t size);
//  Two instances ("hosts") with the probe's handler: once both are
//  subscribed, each broadcasts once and each gets both, its own included
void
    pl_streams_test_broadcast_pair (probe_t *one, probe_t *other);

//  Selftest parts, one file each
void
    pl_streams_test_parts (int port, bool verbose);
void
    pl_streams_test_broadcast (int port, bool verbose);
void
    pl_streams_test_cluster (bool verbose);

#endif
