/*  =========================================================================
    pl_config - one host's configuration: endpoints, limits, secrets
    =========================================================================
*/
#include "pl_config.h"
#include "pl_log.h"
#include "pl_util.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <czmq.h>

typedef enum { OPT_STR, OPT_INT, OPT_BOOL } opt_type_t;

typedef struct {
    const char *name;           //  option name, words joined by '-'
    opt_type_t type;
    size_t offset;
    const char *fallback;       //  default as text
    int min, max;               //  range of an OPT_INT
    const char *help;
} opt_t;

#define S(field) OPT_STR, offsetof (pl_config_t, field)
#define I(field) OPT_INT, offsetof (pl_config_t, field)
#define B(field) OPT_BOOL, offsetof (pl_config_t, field)

static const opt_t s_options [] = {
    { "host-id",            S (host_id),            "h1", 0, 0, "unique id of this host in the cluster" },
    { "runtime-dir",        S (runtime_dir),        "/tmp/parley", 0, 0, "folder of the ipc:// endpoints" },
    { "router-endpoint",    S (router_endpoint),    "", 0, 0, "room-router endpoint (default ipc://RUNTIME/router.ipc)" },
    { "bridge-endpoint",    S (bridge_endpoint),    "", 0, 0, "stream-bridge endpoint (default ipc://RUNTIME/bridge.ipc)" },
    { "instance",           I (instance),           "0", 0, 1023, "index of this actor among its kind" },
    { "peer-heartbeat-ms",  I (peer_heartbeat_ms),  "1000", 10, 60000, "how often an actor tells its peers it is alive" },
    { "peer-timeout-ms",    I (peer_timeout_ms),    "5000", 100, 600000, "a peer actor silent this long is gone" },
    { "status-interval-ms", I (status_interval_ms), "1000", 100, 60000, "how often an actor publishes its status record" },
    { "heap-trim-interval-ms", I (heap_trim_interval_ms), "10000", 1000, 3600000, "how often the connection actor and the router hand free heap pages back to the kernel (after a storm of connects); each WebSocket session then gives back the buffers it holds between frames" },
    { "socket-hwm",         I (socket_hwm),         "100000", 1000, 100000000, "envelopes queued per peer link before sends fail" },
    { "drain-budget",       I (drain_budget),       "1000", 1, 1000000, "most envelopes an actor reads from one socket before serving its others" },
    { "listen-addr",        S (listen_addr),        "127.0.0.1", 0, 0, "interface the connection actors bind" },
    { "port",               I (port),               "8080", 1, 65535, "HTTP and WebSocket port" },
    { "jwt-secret",         S (jwt_secret),         "", 0, 0, "HS256 secret of the tokens" },
    { "jwt-public-key",     S (jwt_public_key),     "", 0, 0, "RS256 public key file (PEM)" },
    { "jwt-leeway-s",       I (jwt_leeway_s),       "30", 0, 3600, "clock skew allowed on a token's exp and nbf" },
    //  Room ids (issue 8: direct room ids are keyed, not guessable)
    { "room-id-secret",     S (room_id_secret),     "", 0, 0, "key of direct room ids (HMAC-SHA256), the same on every host; empty: derived from jwt-secret" },
    { "ws-rx-buffer-bytes", I (ws_rx_buffer_bytes), "1024", 128, 1048576, "receive buffer lws holds for each WebSocket, for its whole life; a longer message reaches the STOMP parser in pieces of this size" },
    { "max-frame-bytes",    I (max_frame_bytes),    "65536", 256, 16777216, "largest STOMP frame" },
    { "max-body-bytes",     I (max_body_bytes),     "16384", 64, 16777216, "largest SEND or HTTP body" },
    { "max-content-chars",  I (max_content_chars),  "4000", 1, 1048576, "largest message content" },
    { "max-headers",        I (max_headers),        "32", 4, 1024, "most headers in one STOMP frame" },
    { "max-subscriptions",  I (max_subscriptions),  "256", 1, 65536, "most subscriptions of one session" },
    //  STOMP session limits (issue 8); per connection actor
    { "send-rate",          I (send_rate),          "20", 0, 1000000, "SENDs a second per user on one connection actor (0: no limit)" },
    { "typing-rate",        I (typing_rate),        "2", 0, 1000, "TYPING events a second per user and room on one connection actor; more are dropped silently and counted (0: no limit)" },
    { "typing-burst",       I (typing_burst),       "3", 1, 1000, "TYPING events a user may send to a room at once before typing-rate applies" },
    { "send-burst",         I (send_burst),         "100", 1, 1000000, "SENDs a user may make at once before send-rate applies" },
    { "max-connections",    I (max_connections),    "20000", 1, 10000000, "WebSocket sessions of one connection actor" },
    { "max-connections-per-user", I (max_connections_per_user), "32", 1, 1000000, "WebSocket sessions of one user on one connection actor" },
    { "max-in-flight",      I (max_in_flight),      "256", 1, 1000000, "SENDs and SUBSCRIBEs of one session waiting for the router" },
    { "max-outbound-bytes", I (max_outbound_bytes), "4194304", 4096, 1073741824, "outbound queue of one session" },
    { "heartbeat-ms",       I (heartbeat_ms),       "10000", 0, 3600000, "heart-beat interval offered and wanted" },
    { "request-timeout-ms", I (request_timeout_ms), "10000", 100, 600000, "a peer request without answer fails" },
    { "resume-held-max",    I (resume_held_max),    "10000", 1, 10000000, "live messages held for one resuming subscription" },
    { "resume-idle-max",    I (resume_idle_max),    "3", 0, 1000, "resume rounds finding nothing before a missing seq is skipped" },
    { "drain-max-ms",       I (drain_max_ms),       "5000", 0, 600000, "on stop, longest wait for answers in flight" },
    { "close-grace-s",      I (close_grace_s),      "5", 1, 3600, "a closing session may take this long to flush" },
    { "linger-s",           I (linger_s),           "1", 1, 60, "a closed session keeps reading this long" },
    { "http-headers-max",   I (http_headers_max),   "1024", 512, 65536, "largest HTTP response header block" },
    { "http-head-timeout-s", I (http_head_timeout_s), "10", 1, 300, "a client that has not sent its whole request head (or anything) by then is answered 408 and closed" },
    { "http-body-timeout-s", I (http_body_timeout_s), "10", 1, 300, "a request body not complete this long after its head is answered 408 and closed" },
    //  HTTP requests and the listening socket (issue 8)
    { "http-request-bytes", I (http_request_bytes), "32768", 12288, 1048576, "request line and headers a client may send; past it 431 (414 when the target is over http-url-max)" },
    { "http-url-max",       I (http_url_max),       "4096", 64, 1048576, "longest request target (path and query); longer gets 414" },
    //  At most 60: libwebsockets 4.1 keeps 92 header lines and query parts
    //  together, and pl_gate lets 32 query parts through (PL_GATE_HEADER_LINES_MOST)
    { "http-header-lines-max", I (http_header_lines_max), "48", 8, 60, "header lines a request head may have; more get 431" },
    { "http-rate",          I (http_rate),          "20", 0, 1000000, "HTTP requests a second per user (per address without a valid token); 0: no limit" },
    { "http-burst",         I (http_burst),         "40", 1, 1000000, "HTTP requests a user (or address) may make at once" },
    //  The web chat (issue 10)
    { "web-root",           S (web_root),           "", 0, 0, "folder of the web chat served at / (empty: none; the systemd unit names the installed one)" },
    { "web-cache-s",        I (web_cache_s),        "60", 0, 31536000, "max-age of the web chat's files; browsers revalidate them after it (ETag; 0: no-store)" },
    { "dev-mode",           B (dev_mode),           "0", 0, 0, "POST /api/dev/token signs anyone in by name: for trying parley, never in production" },
    { "dev-token-ttl-s",    I (dev_token_ttl_s),    "86400", 60, 31536000, "lifetime of a token from /api/dev/token" },
    { "accept-pause-ms",    I (accept_pause_ms),    "100", 10, 60000, "pause in accepting connections while out of file descriptors" },
    { "member-cache-ms",    I (member_cache_ms),    "30000", 0, 3600000, "how long a member list is trusted" },
    { "member-load-batch",  I (member_load_batch),  "256", 1, 1000, "most rooms in one member-list query of the router; one query is out per persistence actor, and the rooms asked for meanwhile go in the next (a connect storm asks for thousands at once)" },
    { "redis-url",          S (redis_url),          "redis://127.0.0.1:6379", 0, 0, "Redis server; with redis-cluster, seed nodes redis://[:pw@]h1:p1,h2:p2" },
    { "redis-min-replicas", I (redis_min_replicas), "0", 0, 64, "replicas that must confirm an append (WAIT, one per batch of appends on a connection) before its SEND is receipted; 0: the RECEIPT follows the primary's answer" },
    { "redis-wait-timeout-ms", I (redis_wait_timeout_ms), "1000", 1, 60000, "how long appends wait for redis-min-replicas replicas; then the SEND is refused (sent again with the same clientMsgId, it gets its first seq)" },
    { "seq-floor-batch",    I (seq_floor_batch),    "256", 1, 1000, "most rooms in one query of the bridge for the rooms' highest stored seqs (checked once per room after every new Redis connection, so a seq counter Redis lost never goes back)" },
    { "redis-cluster",      B (redis_cluster),      "0", 0, 0, "redis-url names Redis Cluster seed nodes" },
    { "redis-sentinel-master", S (redis_sentinel_master), "", 0, 0, "name of the primary that Redis Sentinel watches; redis-url then names the Sentinels redis://[:pw@]h1:26379,h2:26379 (the password goes to the primary) and the bridge follows their failovers" },
    { "shards",             I (shards),             "8", 1, 4096, "number of shard streams" },
    { "key-prefix",         S (key_prefix),         "parley", 0, 0, "prefix of every Redis key" },
    { "read-count",         I (read_count),         "512", 1, 100000, "COUNT of one XREADGROUP" },
    { "block-ms",           I (block_ms),           "2000", 1, 60000, "BLOCK of one XREADGROUP" },
    { "dedup-ttl-s",        I (dedup_ttl_s),        "86400", 1, 31536000, "how long a clientMsgId is remembered" },
    { "dedup-restore-max",  I (dedup_restore_max),  "10000", 1, 10000000, "most clientMsgIds of stored messages the bridge puts back into Redis for one room whose seq counter Redis lost (the newest ones, within dedup-ttl-s)" },
    { "persist-inflight",   I (persist_inflight),   "4096", 1, 1000000, "entries handed to stores, unconfirmed" },
    { "persist-timeout-ms", I (persist_timeout_ms), "5000", 100, 600000, "unconfirmed work goes to another store" },
    { "replay-window",      I (replay_window),      "10000", 1, 10000000, "newest entries of a room kept for replay" },
    { "replay-ttl-s",       I (replay_ttl_s),       "604800", 1, 31536000, "replay index of an idle room expires after" },
    { "read-cache-ttl-s",   I (read_cache_ttl_s),   "2592000", 60, 31536000, "Redis keeps a room's read cursors this long after its last READ (MongoDB keeps them for good)" },
    { "claim-interval-ms",  I (claim_interval_ms),  "1000", 10, 3600000, "how often pending persist work is claimed" },
    { "persist-attempts",   I (persist_attempts),   "5", 1, 1000, "failed stores of an entry before it is dead-lettered" },
    { "persist-retry-ms",   I (persist_retry_ms),   "1000", 10, 600000, "pause before a failed entry is stored again (doubles each time)" },
    { "persist-retry-max-ms", I (persist_retry_max_ms), "30000", 10, 3600000, "longest pause between stores of a failed entry" },
    { "held-sends-max",     I (held_sends_max),     "10000", 0, 10000000, "SENDs held while their room's Redis shard is not reachable; more are refused" },
    { "claim-idle-ms",      I (claim_idle_ms),      "30000", 1, 86400000, "persist work idle this long is claimed" },
    { "stream-retain-s",    I (stream_retain_s),    "120", 0, 86400, "entries this young stay in the shard streams even once stored, so a resume after a short break is served from Redis (memory: about rate x this x entry size)" },
    { "janitor-interval-ms", I (janitor_interval_ms), "5000", 10, 3600000, "how often shard streams are trimmed" },
    { "host-gone-s",        I (host_gone_s),        "300", 2, 2592000, "a silent host loses its fan-out group after" },
    { "redis-backoff-min-ms", I (redis_backoff_min_ms), "100", 1, 60000, "first wait before a lost Redis connection is tried again" },
    { "redis-backoff-max-ms", I (redis_backoff_max_ms), "2000", 1, 600000, "longest wait between Redis reconnect attempts (doubling from the first)" },
    { "redis-retry-ms",     I (redis_retry_ms),     "1000", 10, 600000, "a Redis reader waits this long after an error reply" },
    { "ack-batch",          I (ack_batch),          "1000", 1, 100000, "most entry ids in one XACK" },
    { "subset-block-ms",    I (subset_block_ms),    "50", 1, 60000, "BLOCK of a read that covers only some shards (persist-inflight nearly full)" },
    { "stop-flush-ms",      I (stop_flush_ms),      "500", 0, 60000, "at stop, how long the bridge waits for its last XACKs" },
    { "host-refresh-ms",    I (host_refresh_ms),    "5000", 100, 3600000, "how often the host key is refreshed (at most a third of host-gone-s)" },
    { "broadcast-max-bytes", I (broadcast_max_bytes), "4096", 1, 1048576, "largest payload broadcast to every host's bridge (Redis PUBLISH, best effort); larger ones are refused" },
    { "mongo-url",          S (mongo_url),          "mongodb://127.0.0.1:27017", 0, 0, "MongoDB server" },
    { "mongo-db",           S (mongo_db),           "parley", 0, 0, "MongoDB database" },
    { "write-concern",      S (write_concern),      "majority", 0, 0, "write concern of stored messages" },
    { "store-batch",        I (store_batch),        "512", 1, 100000, "most entries in one bulk insert" },
    { "store-linger-ms",    I (store_linger_ms),    "20", 0, 1000, "an entry waits up to this long for others to share its bulk insert (the store spends far less per entry in a larger one; receipts and deliveries never wait for it)" },
    { "history-limit",      I (history_limit),      "200", 1, 10000, "largest history page" },
    { "max-room-members",   I (max_room_members),   "1000", 2, 100000, "most members of a group room" },
    { "max-rooms-per-user", I (max_rooms_per_user), "10000", 1, 10000000, "most rooms one user is a member of" },
    { "max-room-name-chars", I (max_room_name_chars), "100", 1, 10000, "longest group room name, in characters" },
    { "store-prepare-retry-ms", I (store_prepare_retry_ms), "1000", 100, 60000, "pause before a store retries reaching MongoDB and creating indexes" },
    //  Hostile load on the stores (issue 8, i8-store): bounded, fair, stoppable
    { "memory-trim-s",      I (memory_trim_s),      "60", 0, 86400, "every this many seconds free heap memory goes back to the system (0: never)" },
    { "presence-timeout-s", I (presence_timeout_s), "30", 3, 3600, "a host not heard this long is gone: its users LEAVE their rooms" },
    { "unread-interval-ms", I (unread_interval_ms), "1000", 10, 3600000, "a room's UNREAD count goes to a user at most this often (changes coalesce)" },
    { "store-slow-query-ms", I (store_slow_query_ms), "500", 1, 3600000, "a query that takes this long is logged and counted as slow" },
    { "store-turn-ms",      I (store_turn_ms),      "50", 1, 10000, "longest a store runs queries before it serves its other work (heartbeat, stop, inserts)" },
    { "store-queue-max",    I (store_queue_max),    "10000", 1, 10000000, "queries one store holds queued; more are answered 503" },
    { "store-user-queue-max", I (store_user_queue_max), "256", 1, 10000000, "queries of one user one store holds queued; more are answered 503" },
    { "resume-user-max",    I (resume_user_max),    "8", 1, 65536, "resumes of one user that run at once on a connection actor; more wait their turn" },
    { "log-level",          S (log_level),          "info", 0, 0, "error, warning, info or debug" },
    { "verbose",            B (verbose),            "0", 0, 0, "log every message (log-level debug)" },
};
#define OPTION_COUNT (sizeof (s_options) / sizeof (s_options [0]))

//  Options match with '-' and '_' taken as the same.
static bool
s_name_matches (const char *option, const char *name)
{
    for (; *option && *name; option++, name++) {
        char a = *option == '_'? '-': *option;
        char b = *name == '_'? '-': (char) tolower ((unsigned char) *name);
        if (a != b)
            return false;
    }
    return *option == 0 && *name == 0;
}

static const opt_t *
s_option_find (const char *name)
{
    for (size_t index = 0; index < OPTION_COUNT; index++)
        if (s_name_matches (s_options [index].name, name))
            return &s_options [index];
    return NULL;
}

static int
s_option_apply (pl_config_t *self, const opt_t *option, const char *value)
{
    void *field = (char *) self + option->offset;
    if (option->type == OPT_STR) {
        char *copy = strdup (value);
        if (!copy)
            return -1;
        free (*(char **) field);
        *(char **) field = copy;
        return 0;
    }
    if (option->type == OPT_BOOL) {
        if (!strcmp (value, "1") || !strcmp (value, "true") || !strcmp (value, "yes"))
            *(bool *) field = true;
        else
        if (!strcmp (value, "0") || !strcmp (value, "false") || !strcmp (value, "no"))
            *(bool *) field = false;
        else {
            fprintf (stderr, "parley: option %s wants true or false, not '%s'\n", option->name, value);
            return -1;
        }
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long number = strtol (value, &end, 10);
    if (errno || end == value || *end || number < option->min || number > option->max) {
        fprintf (stderr, "parley: option %s wants a number from %d to %d, not '%s'\n",
                 option->name, option->min, option->max, value);
        return -1;
    }
    *(int *) field = (int) number;
    return 0;
}

int
pl_config_set (pl_config_t *self, const char *name, const char *value)
{
    assert (self);
    const opt_t *option = s_option_find (name);
    if (!option) {
        fprintf (stderr, "parley: unknown option '%s'\n", name);
        return -1;
    }
    return s_option_apply (self, option, value);
}

pl_config_t *
pl_config_new_default (void)
{
    pl_config_t *self = calloc (1, sizeof (pl_config_t));
    if (!self)
        return NULL;
    for (size_t index = 0; index < OPTION_COUNT; index++)
        if (s_option_apply (self, &s_options [index], s_options [index].fallback)) {
            pl_config_destroy (&self);
            return NULL;
        }
    return self;
}

//  Set every leaf of a zconfig tree: "redis\n    url = x" sets redis-url.
//  A top-level "parley" section is only a wrapper.
static int
s_config_load_tree (pl_config_t *self, zconfig_t *node, const char *prefix, const char *path)
{
    for (zconfig_t *child = zconfig_child (node); child; child = zconfig_next (child)) {
        char name [128];
        const char *own = zconfig_name (child);
        if (*prefix == 0 && streq (own, "parley"))
            snprintf (name, sizeof name, "%s", "");
        else
            snprintf (name, sizeof name, "%s%s%s", prefix, *prefix? "-": "", own);
        if (zconfig_child (child)) {
            if (s_config_load_tree (self, child, name, path))
                return -1;
        }
        else
        if (*name) {
            const char *value = zconfig_value (child);
            if (pl_config_set (self, name, value? value: "")) {
                fprintf (stderr, "parley: %s: key '%s' is not valid here\n", path, name);
                return -1;
            }
        }
    }
    return 0;
}

//  The file is czmq's zconfig format (ZPL): "key = value" lines, sections
//  by indentation, '#' comments. A flat file of "key = value" lines is ZPL too.
static int
s_config_load_file (pl_config_t *self, const char *path)
{
    if (access (path, R_OK)) {
        fprintf (stderr, "parley: cannot read config file %s: %s\n", path, strerror (errno));
        return -1;
    }
    zconfig_t *root = zconfig_load (path);
    if (!root) {
        fprintf (stderr, "parley: config file %s is not valid zconfig (ZPL)\n", path);
        return -1;
    }
    int rc = s_config_load_tree (self, root, "", path);
    zconfig_destroy (&root);
    return rc;
}

static int
s_config_load_env (pl_config_t *self)
{
    for (size_t index = 0; index < OPTION_COUNT; index++) {
        char name [64] = "PARLEY_";
        size_t at = strlen (name);
        for (const char *c = s_options [index].name; *c && at < sizeof name - 1; c++)
            name [at++] = *c == '-'? '_': (char) toupper ((unsigned char) *c);
        name [at] = 0;
        const char *value = getenv (name);
        //  An empty variable counts as unset (shells and unit files leave them)
        if (value && *value && s_option_apply (self, &s_options [index], value)) {
            fprintf (stderr, "parley: environment variable %s is not valid\n", name);
            return -1;
        }
    }
    return 0;
}

pl_config_t *
pl_config_new (int argc, char **argv)
{
    pl_config_t *self = pl_config_new_default ();
    if (!self)
        return NULL;
    //  Defaults, then the file, then the environment, then the command line
    for (int arg = 1; arg < argc - 1; arg++)
        if (!strcmp (argv [arg], "--config") && s_config_load_file (self, argv [arg + 1])) {
            pl_config_destroy (&self);
            return NULL;
        }
    if (s_config_load_env (self)) {
        pl_config_destroy (&self);
        return NULL;
    }
    for (int arg = 1; arg < argc; arg++) {
        const char *word = argv [arg];
        if (!strcmp (word, "--help") || !strcmp (word, "-h")) {
            pl_config_usage (argv [0]);
            self->informational = true;
            return self;
        }
        if (!strcmp (word, "--print-config")) {
            pl_config_print_example (stdout);
            self->informational = true;
            return self;
        }
        if (strncmp (word, "--", 2)) {
            fprintf (stderr, "parley: unexpected argument '%s'\n", word);
            pl_config_destroy (&self);
            return NULL;
        }
        const char *name = word + 2;
        const char *value = NULL;
        char name_copy [64];
        const char *equals = strchr (name, '=');
        if (equals && (size_t) (equals - name) < sizeof name_copy) {
            memcpy (name_copy, name, (size_t) (equals - name));
            name_copy [equals - name] = 0;
            name = name_copy;
            value = equals + 1;
        }
        const opt_t *option = strcmp (name, "config")? s_option_find (name): NULL;
        if (!value && option && option->type == OPT_BOOL) {
            //  "--verbose" alone, or "--verbose false" (so wrappers may
            //  always pass option and value)
            const char *next = arg + 1 < argc? argv [arg + 1]: "";
            if (streq_safe (next, "true") || streq_safe (next, "false") || streq_safe (next, "yes")
            ||  streq_safe (next, "no") || streq_safe (next, "1") || streq_safe (next, "0"))
                value = argv [++arg];
            else
                value = "true";
        }
        if (!value) {
            if (arg + 1 >= argc) {
                fprintf (stderr, "parley: option --%s needs a value\n", name);
                pl_config_destroy (&self);
                return NULL;
            }
            value = argv [++arg];
        }
        if (!strcmp (name, "config"))
            continue;           //  read above
        if (pl_config_set (self, name, value)) {
            pl_config_destroy (&self);
            return NULL;
        }
    }
    if (pl_config_finish (self))
        pl_config_destroy (&self);
    return self;
}

int
pl_config_finish (pl_config_t *self)
{
    assert (self);
    char endpoint [PATH_MAX + 16];
    if (*self->router_endpoint == 0) {
        snprintf (endpoint, sizeof endpoint, "ipc://%s/router.ipc", self->runtime_dir);
        if (s_option_apply (self, s_option_find ("router-endpoint"), endpoint))
            return -1;
    }
    if (*self->bridge_endpoint == 0) {
        snprintf (endpoint, sizeof endpoint, "ipc://%s/bridge.ipc", self->runtime_dir);
        if (s_option_apply (self, s_option_find ("bridge-endpoint"), endpoint))
            return -1;
    }
    //  A peer that says it is alive less often than twice per timeout
    //  would be declared gone between two heart-beats
    if (self->peer_heartbeat_ms * 2 > self->peer_timeout_ms) {
        fprintf (stderr, "parley: peer-heartbeat-ms (%d) must be at most half of peer-timeout-ms (%d)\n",
                 self->peer_heartbeat_ms, self->peer_timeout_ms);
        return -1;
    }
    if (strcmp (self->log_level, "error") && strcmp (self->log_level, "warning")
    &&  strcmp (self->log_level, "info") && strcmp (self->log_level, "debug")) {
        fprintf (stderr, "parley: log-level must be error, warning, info or debug, not '%s'\n",
                 self->log_level);
        return -1;
    }
    if (strlen (self->host_id) == 0 || strlen (self->host_id) > 64
    ||  strspn (self->host_id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
        != strlen (self->host_id)) {
        fprintf (stderr, "parley: host-id must be 1 to 64 of [A-Za-z0-9_.-]\n");
        return -1;
    }
    return 0;
}

void
pl_config_print_example (FILE *file)
{
    fprintf (file,
        "#   parley configuration: one file for every actor of a host, in czmq's\n"
        "#   zconfig format (ZPL). Written by `parley-connection --print-config`\n"
        "#   with every key at its default; change what you need.\n"
        "#   Each key can also be set in the environment (PARLEY_<KEY>, upper case,\n"
        "#   '-' as '_'; secrets belong there, e.g. PARLEY_JWT_SECRET in\n"
        "#   /etc/parley/parley.env) or on the command line (--key value), and\n"
        "#   those win over this file. `bin/parley up` passes its flags on.\n"
        "parley\n");
    for (size_t index = 0; index < OPTION_COUNT; index++) {
        const opt_t *option = &s_options [index];
        fprintf (file, "    #   %s\n", option->help);
        if (option->type == OPT_INT)
            fprintf (file, "    #   (%d to %d)\n", option->min, option->max);
        fprintf (file, "    %s = \"%s\"\n", option->name, option->fallback);
    }
}

void
pl_config_usage (const char *program)
{
    printf ("usage: %s [--config FILE] [--option value ...]\n", program);
    for (size_t index = 0; index < OPTION_COUNT; index++)
        printf ("  --%-20s %s (default '%s')\n", s_options [index].name,
                s_options [index].help, s_options [index].fallback);
}

void
pl_config_destroy (pl_config_t **self_p)
{
    assert (self_p);
    pl_config_t *self = *self_p;
    if (self) {
        for (size_t index = 0; index < OPTION_COUNT; index++)
            if (s_options [index].type == OPT_STR)
                free (*(char **) ((char *) self + s_options [index].offset));
        free (self);
        *self_p = NULL;
    }
}

void
pl_config_test (bool verbose)
{
    (void) verbose;
    char *argv [] = { "test", "--port", "9001", "--redis_url=redis://127.0.0.1:7000",
                      "--runtime-dir", "/tmp/x", "--verbose", "--redis-cluster", "false", NULL };
    pl_config_t *config = pl_config_new (9, argv);
    pl_check (config);
    pl_check (config->port == 9001);
    pl_check (streq_safe (config->redis_url, "redis://127.0.0.1:7000"));
    pl_check (streq_safe (config->router_endpoint, "ipc:///tmp/x/router.ipc"));
    pl_check (config->verbose);
    pl_check (!config->redis_cluster);
    pl_check (config->shards == 8);
    pl_config_destroy (&config);
    pl_config_destroy (&config);

    //  A zconfig file, sections flattened into names; the command line wins
    char path [] = "/tmp/pl_config_test-XXXXXX";
    int fd = mkstemp (path);
    pl_check (fd >= 0);
    const char *text = "parley\n    port = 7000\n    redis\n        url = \"redis://10.0.0.1:7000\"\n"
                       "    host-id = h7\n";
    pl_check (write (fd, text, strlen (text)) == (ssize_t) strlen (text));
    close (fd);
    char *with_file [] = { "test", "--config", path, "--port", "7001", NULL };
    config = pl_config_new (5, with_file);
    pl_check (config);
    pl_check (config->port == 7001);
    pl_check (streq_safe (config->redis_url, "redis://10.0.0.1:7000"));
    pl_check (streq_safe (config->host_id, "h7"));
    pl_config_destroy (&config);
    //  A bad value in the file names its key
    FILE *bad_file = fopen (path, "w");
    fprintf (bad_file, "parley\n    shards = lots\n");
    fclose (bad_file);
    char *with_bad [] = { "test", "--config", path, NULL };
    pl_check (pl_config_new (3, with_bad) == NULL);
    unlink (path);

    char *bad_number [] = { "test", "--port", "99999", NULL };
    pl_check (pl_config_new (3, bad_number) == NULL);
    char *unknown [] = { "test", "--no-such-option", "1", NULL };
    pl_check (pl_config_new (3, unknown) == NULL);
    char *bad_host [] = { "test", "--host-id", "a/b", NULL };
    pl_check (pl_config_new (3, bad_host) == NULL);
}
