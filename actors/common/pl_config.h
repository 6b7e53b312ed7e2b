/*  =========================================================================
    pl_config - one host's configuration: endpoints, limits, secrets

    Every actor reads the same configuration: built-in defaults, then an
    optional file (--config FILE, czmq's zconfig format), then environment
    variables PARLEY_<KEY> (upper case, '-' as '_'), then command-line
    options --key value. Later sources win. Endpoints and limits live here
    and nowhere else.
    =========================================================================
*/
#ifndef PL_CONFIG_H_INCLUDED
#define PL_CONFIG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    //  Identity and wiring
    char *host_id;              //  unique per host of a cluster
    char *runtime_dir;          //  where ipc:// endpoints live
    char *router_endpoint;      //  default ipc://<runtime_dir>/router.ipc
    char *bridge_endpoint;      //  default ipc://<runtime_dir>/bridge.ipc
    int   instance;             //  index of this actor among its kind (--conn/--store N)

    //  Every actor: liveness of peers, status cadence, fairness between sockets
    int   peer_heartbeat_ms;    //  a DEALER says it is alive this often
    int   peer_timeout_ms;      //  a peer silent this long is gone (one rule for every actor)
    int   status_interval_ms;   //  cadence of the status record (monitor, systemd STATUS=)
    int   heap_trim_interval_ms; // cadence of handing free heap pages back (pl_heap_trim)
    int   drain_budget;         //  envelopes read from one socket per turn
    int   socket_hwm;           //  high-water mark of every actor socket

    //  Connection actor
    char *listen_addr;          //  interface to bind, default 127.0.0.1
    int   port;                 //  HTTP + WebSocket port
    char *jwt_secret;           //  HS256 secret (empty: HS256 refused)
    char *jwt_public_key;       //  path of an RS256 public key PEM (optional)
    int   jwt_leeway_s;         //  clock skew allowed on exp and nbf

    //  Room ids (persistence actor): key of the direct room ids; empty:
    //  derived from jwt_secret, and neither refuses to start a store
    char *room_id_secret;

    int   max_frame_bytes;      //  largest STOMP frame accepted
    int   ws_rx_buffer_bytes;   //  lws's receive buffer of one WebSocket
    int   max_body_bytes;       //  largest SEND body / HTTP body accepted
    int   max_content_chars;    //  largest message content
    int   max_headers;          //  most headers in one STOMP frame
    int   max_subscriptions;    //  most subscriptions per session
    //  STOMP session limits (issue 8), per connection actor
    int   send_rate;            //  SENDs a second per user, 0: no limit
    int   send_burst;           //  SENDs a user may make at once
    int   typing_rate;          //  TYPING a second per user and room (issue 9)
    int   typing_burst;
    int   max_connections;      //  WebSocket sessions in total
    int   max_connections_per_user; //  WebSocket sessions of one user
    int   max_in_flight;        //  requests of one session waiting for the router
    int   max_outbound_bytes;   //  per-session queue bound before disconnect
    int   heartbeat_ms;         //  heart-beat the server offers and wants
    int   request_timeout_ms;   //  a request to peers that gets no answer fails
    int   resume_held_max;      //  live messages held for one resuming subscription
    int   resume_idle_max;      //  resume rounds finding nothing before a seq is skipped
    int   drain_max_ms;         //  on stop, longest wait for answers in flight
    int   close_grace_s;        //  a closing session may take this long to flush
    int   linger_s;             //  a closed session keeps reading this long
    int   http_headers_max;     //  largest HTTP response header block
    int   http_head_timeout_s;  //  slow or silent clients are answered 408 after this
    int   http_body_timeout_s;  //  ... and a body not complete this long after its head
    //  HTTP requests and the listening socket (issue 8)
    int   http_request_bytes;   //  request line + headers lws buffers
    int   http_url_max;         //  longest path + query (414 past it)
    int   http_header_lines_max;    //  most header lines of a request head (431 past it)
    int   http_rate;            //  HTTP requests a second per user / address, 0: no limit
    int   http_burst;           //  ... and at once
    //  The web chat (issue 10)
    char *web_root;             //  folder served at / ("": none)
    int   web_cache_s;          //  max-age of its files
    bool  dev_mode;             //  POST /api/dev/token exists
    int   dev_token_ttl_s;      //  lifetime of its tokens
    int   accept_pause_ms;      //  no accepting this long when out of descriptors

    //  Room router
    int   member_cache_ms;      //  how long a room's member list is trusted
    int   member_load_batch;    //  most rooms in one rooms.members query

    //  Stream bridge
    char *redis_url;            //  redis://host:port (cluster: redis://h1:p1,h2:p2)
    int   redis_min_replicas;   //  replicas that must have an append before its RECEIPT
    int   seq_floor_batch;      //  most rooms in one rooms.last_seq query
    int   redis_wait_timeout_ms; // how long an append waits for them (WAIT)
    bool  redis_cluster;        //  redis_url names Redis Cluster seed nodes
    char *redis_sentinel_master; // "": none; else redis_url names Sentinels
    int   shards;               //  S shard streams
    char *key_prefix;           //  prefix of every Redis key
    int   read_count;           //  COUNT of one XREADGROUP
    int   block_ms;             //  BLOCK of one XREADGROUP
    int   dedup_ttl_s;          //  how long a clientMsgId is remembered
    int   dedup_restore_max;    //  most clientMsgIds put back in Redis for one room
    int   persist_inflight;     //  entries handed to stores and not yet confirmed
    int   persist_timeout_ms;   //  an unconfirmed batch is handed to another store
    int   replay_window;        //  newest entries of a room kept in its replay index
    int   replay_ttl_s;         //  a room's replay index expires this long after its last append
    int   read_cache_ttl_s;     //  read cursors cached in Redis expire after
    int   claim_interval_ms;    //  how often pending persist work of others is claimed
    int   persist_attempts;     //  failed stores of one entry before it is dead-lettered
    int   persist_retry_ms;     //  pause before a failed entry is handed out again (doubles)
    int   persist_retry_max_ms; //  the longest such pause
    int   held_sends_max;       //  SENDs held while Redis is away; more get 503
    int   claim_idle_ms;        //  pending this long without an ack: its consumer is taken as dead
    int   janitor_interval_ms;  //  how often the shard streams are trimmed
    int   stream_retain_s;      //  stored entries this young stay in the streams
    int   host_gone_s;          //  a host silent this long loses its fan-out group
    int   redis_backoff_min_ms; //  first wait before a lost Redis link is tried again
    int   redis_backoff_max_ms; //  the wait doubles up to this
    int   redis_retry_ms;       //  a reader waits this long after an error reply
    int   ack_batch;            //  most entry ids in one XACK
    int   subset_block_ms;      //  BLOCK of a read that covers only some shards
    int   stop_flush_ms;        //  at stop, how long the last XACKs may take
    int   host_refresh_ms;      //  how often the host key is refreshed (at most host-gone-s / 3)
    int   broadcast_max_bytes;  //  largest payload of one broadcast between hosts

    //  Persistence
    char *mongo_url;            //  mongodb://host:port
    char *mongo_db;             //  database name
    char *write_concern;        //  "majority" or a number
    int   store_batch;          //  most entries in one bulk insert
    int   store_linger_ms;      //  longest an entry waits for company in one
    int   history_limit;        //  largest page of GET .../messages
    int   max_room_members;     //  most members of a group room
    int   max_rooms_per_user;   //  most rooms one user is in (create and add refuse more)
    int   max_room_name_chars;  //  longest group room name (characters)
    int   store_prepare_retry_ms;   //  pause between attempts to reach MongoDB
    //  Hostile load on the stores (issue 8, i8-store)
    int   store_turn_ms;            //  longest run of queries between other work
    int   store_slow_query_ms;  //  queries this slow are logged and counted
    int   unread_interval_ms;   //  UNREAD of a room to a user at most this often
    int   presence_timeout_s;   //  a host silent this long takes its users offline
    int   memory_trim_s;        //  free heap memory returned to the system this often
    int   store_queue_max;          //  queries queued in one store
    int   store_user_queue_max;     //  queries of one user queued in one store
    int   resume_user_max;          //  resumes of one user running at once per connection actor

    //  Logging
    char *log_level;            //  error, warning, info, debug
    bool  verbose;              //  same as log_level debug

    //  Set by --help and --print-config: the text was printed, run nothing
    bool  informational;
} pl_config_t;

//  Create a configuration from defaults, PARLEY_* environment, an optional
//  --config file and the command line. Returns NULL (and prints why) when an
//  option is unknown or a value does not parse. Unknown positional words are
//  an error too.
pl_config_t *
    pl_config_new (int argc, char **argv);

//  Create a configuration holding only the defaults.
pl_config_t *
    pl_config_new_default (void);

//  Set one option by name ("redis-url" or "redis_url"). Returns 0 or -1.
int
    pl_config_set (pl_config_t *self, const char *name, const char *value);

//  Fill derived values (endpoints from runtime_dir) and check ranges.
//  Returns 0 or -1 (and prints why).
int
    pl_config_finish (pl_config_t *self);

//  Write a configuration file (zconfig) with every key at its default and
//  its description: the installed example.
void
    pl_config_print_example (FILE *file);

//  Print the option list to stdout.
void
    pl_config_usage (const char *program);

void
    pl_config_destroy (pl_config_t **self_p);

void
    pl_config_test (bool verbose);

#endif
