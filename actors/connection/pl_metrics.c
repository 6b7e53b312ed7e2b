/*  =========================================================================
    pl_metrics - the host's figures in Prometheus text format
    =========================================================================
*/
#include "pl_metrics.h"
#include "pl_histogram.h"
#include "pl_log.h"
#include "pl_util.h"

#include <czmq.h>
#include <glob.h>
#include <jansson.h>
#include <math.h>

//  How often the runtime directory is looked at for actors that started
//  since (a cadence, not a limit)
#define RESCAN_MS   2000

struct _pl_metrics_t {
    char *runtime_dir;
    int stale_ms;               //  an actor silent this long is left out
    zsock_t *subscriber;
    zhashx_t *endpoints;        //  endpoints connected (set)
    zhashx_t *records;          //  "kind.instance" -> record_t
    zhashx_t *warned;           //  "kind.figure" left out and logged (set)
    int64_t next_scan;
};

typedef struct {
    json_t *record;
    int64_t received;
} record_t;

static void
s_record_destroy (void **item_p)
{
    record_t *record = (record_t *) *item_p;
    if (record) {
        json_decref (record->record);
        free (record);
        *item_p = NULL;
    }
}

pl_metrics_t *
pl_metrics_new (const char *runtime_dir, int stale_ms)
{
    assert (stale_ms > 0);
    pl_metrics_t *self = (pl_metrics_t *) zmalloc (sizeof (pl_metrics_t));
    assert (self);
    self->runtime_dir = strdup (runtime_dir);
    self->stale_ms = stale_ms;
    self->subscriber = zsock_new (ZMQ_SUB);
    assert (self->subscriber);
    zsock_set_subscribe (self->subscriber, "status.");
    self->endpoints = zhashx_new ();
    self->records = zhashx_new ();
    zhashx_set_destructor (self->records, s_record_destroy);
    self->warned = zhashx_new ();
    return self;
}

void
pl_metrics_destroy (pl_metrics_t **self_p)
{
    assert (self_p);
    pl_metrics_t *self = *self_p;
    if (self) {
        zsock_destroy (&self->subscriber);
        zhashx_destroy (&self->endpoints);
        zhashx_destroy (&self->records);
        zhashx_destroy (&self->warned);
        free (self->runtime_dir);
        free (self);
        *self_p = NULL;
    }
}

//  Connect to monitor endpoints that appeared since the last look.
static void
s_metrics_scan (pl_metrics_t *self)
{
    char pattern [4096];
    snprintf (pattern, sizeof pattern, "%s/monitor-*.ipc", self->runtime_dir);
    glob_t found;
    if (glob (pattern, 0, NULL, &found) == 0) {
        for (size_t index = 0; index < found.gl_pathc; index++) {
            char endpoint [4200];
            snprintf (endpoint, sizeof endpoint, "ipc://%s", found.gl_pathv [index]);
            if (!zhashx_lookup (self->endpoints, endpoint)
            &&  zsock_connect (self->subscriber, "%s", endpoint) == 0)
                zhashx_insert (self->endpoints, endpoint, (void *) 1);
        }
    }
    globfree (&found);
}

void
pl_metrics_poll (pl_metrics_t *self)
{
    assert (self);
    int64_t now = pl_mono_ms ();
    if (now >= self->next_scan) {
        s_metrics_scan (self);
        self->next_scan = now + RESCAN_MS;
    }
    while (zsock_events (self->subscriber) & ZMQ_POLLIN) {
        zmsg_t *message = zmsg_recv (self->subscriber);
        if (!message)
            break;
        char *topic = zmsg_popstr (message);
        char *text = zmsg_popstr (message);
        json_t *record = text? json_loads (text, 0, NULL): NULL;
        if (topic && json_is_object (record)) {
            record_t *entry = (record_t *) zmalloc (sizeof (record_t));
            entry->record = record;
            entry->received = now;
            zhashx_update (self->records, topic + strlen ("status."), entry);
        }
        else
            json_decref (record);
        free (topic);
        free (text);
        zmsg_destroy (&message);
    }
}

//  --------------------------------------------------------------------------
//  What /metrics exports: one row per figure of a status record. A figure
//  no row knows (or of another shape than its row says) is left out and
//  counted in parley_metrics_figures_skipped, never guessed at.

typedef enum {
    FAMILY_GAUGE,               //  a number (or boolean: 1/0) that goes up and down
    FAMILY_COUNTER,             //  a number that only grows while the actor runs
    FAMILY_HISTOGRAM            //  pl_histogram JSON
} family_type_t;

typedef struct {
    const char *kind;           //  the record's kind
    const char *figure;         //  key in the record's figures
    const char *field;          //  per-item figure {item: {field: n}}: label
                                //  "name" is the item; else NULL
    const char *name;           //  the family's name
    family_type_t type;
    double divisor;             //  figure / divisor = value in base units
    const char *help;
} family_t;

#define MS  1000.0              //  milliseconds -> seconds

static const family_t s_families [] = {
    //  Connection actor
    { "conn", "sessions", NULL, "parley_conn_sessions", FAMILY_GAUGE, 1,
      "WebSocket sessions open now" },
    { "conn", "sessions_total", NULL, "parley_conn_sessions_opened_total", FAMILY_COUNTER, 1,
      "WebSocket sessions opened" },
    { "conn", "subscriptions", NULL, "parley_conn_subscriptions", FAMILY_GAUGE, 1,
      "STOMP subscriptions of the open sessions" },
    { "conn", "rooms", NULL, "parley_conn_rooms", FAMILY_GAUGE, 1,
      "Rooms with at least one subscription on this actor" },
    { "conn", "requests_pending", NULL, "parley_conn_requests_pending", FAMILY_GAUGE, 1,
      "Requests sent to the router and not answered yet" },
    { "conn", "frames_in", NULL, "parley_conn_frames_in_total", FAMILY_COUNTER, 1,
      "STOMP frames received from clients" },
    { "conn", "frames_out", NULL, "parley_conn_frames_out_total", FAMILY_COUNTER, 1,
      "STOMP frames queued to clients (ERROR frames included)" },
    { "conn", "sends", NULL, "parley_conn_sends_total", FAMILY_COUNTER, 1,
      "Chat messages of SEND frames passed on to be appended" },
    { "conn", "reads", NULL, "parley_conn_reads_total", FAMILY_COUNTER, 1,
      "READ frames (read cursor moves) passed on to be appended" },
    { "conn", "event_errors", NULL, "parley_conn_event_errors_total", FAMILY_COUNTER, 1,
      "ERROR events sent on /user/queue/events (errors that do not end a session, e.g. a rejected READ)" },
    { "conn", "typing", NULL, "parley_conn_typing_total", FAMILY_COUNTER, 1,
      "TYPING frames passed on to every host (not stored)" },
    { "conn", "refused_typing_rate", NULL, "parley_conn_refused_typing_rate_total", FAMILY_COUNTER, 1,
      "TYPING frames dropped silently over typing-rate (per user and room on this actor)" },
    { "conn", "subscriptions_ended", NULL, "parley_conn_subscriptions_ended_total", FAMILY_COUNTER, 1,
      "Room subscriptions ended because their user was removed from the room" },
    { "conn", "deliveries", NULL, "parley_conn_deliveries_total", FAMILY_COUNTER, 1,
      "Messages the router delivered to this actor" },
    { "conn", "errors", NULL, "parley_conn_errors_total", FAMILY_COUNTER, 1,
      "STOMP ERROR frames sent (each closes its session)" },
    { "conn", "slow_consumers", NULL, "parley_conn_slow_consumers_total", FAMILY_COUNTER, 1,
      "Sessions closed because their outbound queue outgrew max-outbound-bytes" },
    //  Connection actor: STOMP refusals (issue 8), one per limit
    { "conn", "refused_nul", NULL, "parley_conn_refused_nul_total", FAMILY_COUNTER, 1,
      "SEND frames refused for a NUL character in a JSON string of the body" },
    { "conn", "refused_send_rate", NULL, "parley_conn_refused_send_rate_total", FAMILY_COUNTER, 1,
      "SEND frames refused over send-rate (SENDs a second per user on this actor)" },
    { "conn", "refused_connections", NULL, "parley_conn_refused_connections_total", FAMILY_COUNTER, 1,
      "WebSocket sessions refused over max-connections of this actor" },
    { "conn", "refused_connections_per_user", NULL, "parley_conn_refused_connections_per_user_total",
      FAMILY_COUNTER, 1, "STOMP CONNECTs refused over max-connections-per-user on this actor" },
    { "conn", "refused_in_flight", NULL, "parley_conn_refused_in_flight_total", FAMILY_COUNTER, 1,
      "SEND and SUBSCRIBE frames refused over max-in-flight requests of their session" },
    { "conn", "tokens_expired", NULL, "parley_conn_tokens_expired_total", FAMILY_COUNTER, 1,
      "STOMP sessions ended with an ERROR because their token expired" },
    { "conn", "http_requests", NULL, "parley_conn_http_requests_total", FAMILY_COUNTER, 1,
      "HTTP requests received (API, health checks, metrics)" },
    //  Connection actor: HTTP refusals and the listening socket (issue 8)
    { "conn", "http_refused_malformed", NULL, "parley_conn_http_refused_malformed_total", FAMILY_COUNTER, 1,
      "HTTP requests refused as malformed before routing (400, 405, 411, 501)" },
    { "conn", "http_refused_size", NULL, "parley_conn_http_refused_size_total", FAMILY_COUNTER, 1,
      "HTTP requests refused for their size (413 body, 414 target, 431 header)" },
    { "conn", "http_refused_timeout", NULL, "parley_conn_http_refused_timeout_total", FAMILY_COUNTER, 1,
      "Connections answered 408 and closed: no whole request head within http-head-timeout-s, "
      "or body within http-body-timeout-s" },
    { "conn", "http_rate_limited", NULL, "parley_conn_http_rate_limited_total", FAMILY_COUNTER, 1,
      "HTTP requests refused with 429 (http-rate, http-burst)" },
    { "conn", "accept_pauses", NULL, "parley_conn_accept_pauses_total", FAMILY_COUNTER, 1,
      "Times accepting paused for accept-pause-ms because the actor ran out of file descriptors" },
    { "conn", "accept_shed", NULL, "parley_conn_accept_shed_total", FAMILY_COUNTER, 1,
      "Clients answered 503 and closed while the actor was out of file descriptors" },
    { "conn", "delivery_latency_ms", NULL, "parley_conn_delivery_latency_seconds", FAMILY_HISTOGRAM, MS,
      "Time from a message's createdAt to its delivery to this actor" },
    //  Room router
    { "router", "rooms", NULL, "parley_router_rooms", FAMILY_GAUGE, 1,
      "Rooms the router holds state for (joined here or members looked up)" },
    { "router", "rooms_with_members_cached", NULL, "parley_router_rooms_with_members_cached", FAMILY_GAUGE, 1,
      "Rooms whose member list is cached" },
    { "router", "connection_actors", NULL, "parley_router_connection_actors", FAMILY_GAUGE, 1,
      "Connection actors the router heard from recently" },
    { "router", "persistence_actors", NULL, "parley_router_persistence_actors", FAMILY_GAUGE, 1,
      "Persistence actors the router heard from recently (member queries)" },
    { "router", "undelivered", NULL, "parley_router_undelivered_total", FAMILY_COUNTER, 1,
      "Messages to a peer actor that could not be sent (peer gone or its queue full)" },
    { "router", "bridge_ready", NULL, "parley_router_bridge_ready", FAMILY_GAUGE, 1,
      "1 while the stream bridge says Redis is reachable, else 0" },
    //  Persistence actor
    { "store", "stored", NULL, "parley_store_stored_total", FAMILY_COUNTER, 1,
      "Messages stored in MongoDB (a redelivered one already there counts too)" },
    { "store", "failed", NULL, "parley_store_failed_total", FAMILY_COUNTER, 1,
      "Messages whose insert failed (the bridge hands them out again)" },
    { "store", "mongodb_ready", NULL, "parley_store_mongodb_ready", FAMILY_GAUGE, 1,
      "1 once MongoDB answered and its indexes exist, else 0" },
    //  Persistence actor: its query queues (issue 8, i8-store)
    { "store", "queries", NULL, "parley_store_queries_total", FAMILY_COUNTER, 1,
      "Queries run against MongoDB (HTTP API, resume pages, member lists)" },
    { "store", "queries_queued", NULL, "parley_store_queries_queued", FAMILY_GAUGE, 1,
      "Queries waiting in the store's per-user queues" },
    { "store", "queries_refused", NULL, "parley_store_queries_refused_total", FAMILY_COUNTER, 1,
      "Queries answered 503 because store-queue-max or store-user-queue-max was reached" },
    { "store", "queries_expired", NULL, "parley_store_queries_expired_total", FAMILY_COUNTER, 1,
      "Queries dropped unrun: queued longer than request-timeout-ms, the requester gave up" },
    { "store", "queries_slow", NULL, "parley_store_queries_slow_total", FAMILY_COUNTER, 1,
      "Queries that took store-slow-query-ms or longer (each logged with its operation and room)" },
    { "store", "queries_stopped", NULL, "parley_store_queries_stopped_total", FAMILY_COUNTER, 1,
      "Queries answered 503 'stopping, try again' because the store was stopping" },
    //  Refusals of a non-member, whether the room exists or not (issue 8)
    { "router", "not_member_refused", NULL, "parley_router_not_member_refused_total", FAMILY_COUNTER, 1,
      "SUBSCRIBE, SEND and resume requests refused: the user is not a member of the room (or there is no such room)" },
    { "store", "rooms_quota_refused", NULL, "parley_store_rooms_quota_refused_total", FAMILY_COUNTER, 1,
      "Room creates and member adds refused: the user is in max-rooms-per-user rooms already" },
    { "store", "not_member_refused", NULL, "parley_store_not_member_refused_total", FAMILY_COUNTER, 1,
      "HTTP room, history and member requests refused: the caller is not a member of the room (or there is no such room)" },
    //  Stream bridge
    { "bridge", "appended", NULL, "parley_bridge_appended_total", FAMILY_COUNTER, 1,
      "Messages appended to a room's stream" },
    { "bridge", "duplicates", NULL, "parley_bridge_duplicates_total", FAMILY_COUNTER, 1,
      "Appends answered as duplicates (clientMsgId already appended)" },
    { "bridge", "append_errors", NULL, "parley_bridge_append_errors_total", FAMILY_COUNTER, 1,
      "Appends that failed" },
    { "bridge", "unreplicated", NULL, "parley_bridge_unreplicated_total", FAMILY_COUNTER, 1,
      "Appends refused because fewer than redis-min-replicas replicas confirmed them within redis-wait-timeout-ms" },
    { "bridge", "replication_waits", NULL, "parley_bridge_replication_waits_total", FAMILY_COUNTER, 1,
      "WAIT commands sent for appends (one per batch of appends on a Redis connection)" },
    { "bridge", "seq_counters_missing", NULL, "parley_bridge_seq_counters_missing_total", FAMILY_COUNTER, 1,
      "Appends to a room whose seq counter Redis did not have (a new room, or Redis lost it): the room's highest stored seq was asked for first" },
    { "bridge", "seq_counters_raised", NULL, "parley_bridge_seq_counters_raised_total", FAMILY_COUNTER, 1,
      "Room seq counters found behind what MongoDB holds (Redis lost writes) and raised past it" },
    { "bridge", "dedup_keys_restored", NULL, "parley_bridge_dedup_keys_restored_total", FAMILY_COUNTER, 1,
      "clientMsgIds of stored messages put back into Redis after it lost them with a room's seq counter" },
    { "bridge", "seq_floor_checks", NULL, "parley_bridge_seq_floor_checks_total", FAMILY_COUNTER, 1,
      "Rooms whose highest stored seq the bridge asked MongoDB for (once per room after each new Redis connection)" },
    { "bridge", "seq_floor_checks_failed", NULL, "parley_bridge_seq_floor_checks_failed_total", FAMILY_COUNTER, 1,
      "Room seq checks that no persistence actor answered in time (their SENDs were answered 503)" },
    { "bridge", "fanout_read", NULL, "parley_bridge_fanout_read_total", FAMILY_COUNTER, 1,
      "Stream entries read by this host's fan-out group (signals included)" },
    { "bridge", "persist_read", NULL, "parley_bridge_persist_read_total", FAMILY_COUNTER, 1,
      "Stream entries read by the persist group" },
    { "bridge", "claimed", NULL, "parley_bridge_claimed_total", FAMILY_COUNTER, 1,
      "Persist entries claimed from a consumer that did not acknowledge them in time" },
    { "bridge", "dead_lettered", NULL, "parley_bridge_dead_lettered_total", FAMILY_COUNTER, 1,
      "Stream entries moved to the dead-letter stream" },
    { "bridge", "trimmed", NULL, "parley_bridge_trimmed_total", FAMILY_COUNTER, 1,
      "Stream entries the janitor trimmed away" },
    { "bridge", "redis_reconnects", NULL, "parley_bridge_redis_reconnects_total", FAMILY_COUNTER, 1,
      "Redis connections set up again after one was lost" },
    { "bridge", "broadcasts_sent", NULL, "parley_bridge_broadcasts_sent_total", FAMILY_COUNTER, 1,
      "Ephemeral events (TYPING) published to every host through Redis pub/sub" },
    { "bridge", "broadcasts_received", NULL, "parley_bridge_broadcasts_received_total", FAMILY_COUNTER, 1,
      "Ephemeral events received from Redis pub/sub (this host's own included)" },
    { "bridge", "broadcasts_dropped", NULL, "parley_bridge_broadcasts_dropped_total", FAMILY_COUNTER, 1,
      "Ephemeral events not published: Redis away or over broadcast-max-bytes" },
    { "bridge", "persist_unconfirmed", NULL, "parley_bridge_persist_unconfirmed", FAMILY_GAUGE, 1,
      "Entries handed to the persistence actors and not confirmed yet" },
    { "bridge", "persist_queued", NULL, "parley_bridge_persist_queued", FAMILY_GAUGE, 1,
      "Entries waiting for a persistence actor to take them" },
    { "bridge", "persistence_actors", NULL, "parley_bridge_persistence_actors", FAMILY_GAUGE, 1,
      "Persistence actors the bridge heard from recently" },
    { "bridge", "appends_in_flight", NULL, "parley_bridge_appends_in_flight", FAMILY_GAUGE, 1,
      "Appends sent to Redis and not answered yet" },
    { "bridge", "redis_connected", NULL, "parley_bridge_redis_connected", FAMILY_GAUGE, 1,
      "1 while the bridge is connected to Redis, else 0" },
    { "bridge", "persist_lag_ms", NULL, "parley_bridge_persist_lag_seconds", FAMILY_HISTOGRAM, MS,
      "Time from a message's createdAt to MongoDB's confirmation that it is stored" },
    { "bridge", "groups", "pending", "parley_bridge_groups_pending", FAMILY_GAUGE, 1,
      "Entries a consumer group read and did not acknowledge yet, all shards" },
    { "bridge", "groups", "lag", "parley_bridge_groups_lag", FAMILY_GAUGE, 1,
      "Entries a consumer group has not read yet, all shards" },
};
#define FAMILIES (sizeof s_families / sizeof s_families [0])

#define SKIPPED_NAME "parley_metrics_figures_skipped"
#define SKIPPED_HELP "Figures of the actor's latest status record that /metrics does not know and leaves out"

//  The row of a figure (field NULL unless per-item), or NULL.
static const family_t *
s_family_find (const char *kind, const char *figure, const char *field)
{
    for (size_t index = 0; index < FAMILIES; index++) {
        const family_t *family = &s_families [index];
        if (streq (family->kind, kind) && streq (family->figure, figure)
        &&  (family->field? field && streq (family->field, field): !field))
            return family;
    }
    return NULL;
}

//  A number in a short form that reads back the same (text: 32 bytes).
static const char *
s_number (double value, char *text)
{
    snprintf (text, 32, "%.15g", value);
    if (strtod (text, NULL) != value)
        snprintf (text, 32, "%.17g", value);
    return text;
}

//  Label values escape backslash, quote and newline.
static void
s_label_value (pl_buf_t *out, const char *value)
{
    for (; *value; value++) {
        if (*value == '\\' || *value == '"')
            pl_buf_append (out, "\\", 1);
        if (*value == '\n')
            pl_buf_append (out, "\\n", 2);
        else
            pl_buf_append (out, value, 1);
    }
}

//  One sample line: name{host,instance[,extra]} value
static void
s_sample (pl_buf_t *out, const char *name, const char *suffix, json_t *record,
          const char *extra_name, const char *extra_value, double value)
{
    pl_buf_printf (out, "%s%s{host=\"", name, suffix);
    s_label_value (out, json_string_value (json_object_get (record, "host"))?: "");
    pl_buf_printf (out, "\",instance=\"%" JSON_INTEGER_FORMAT "\"",
                   json_integer_value (json_object_get (record, "instance")));
    if (extra_name) {
        pl_buf_printf (out, ",%s=\"", extra_name);
        s_label_value (out, extra_value);
        pl_buf_append (out, "\"", 1);
    }
    char number [32];
    pl_buf_printf (out, "} %s\n", s_number (value, number));
}

//  Whether a plain figure has the shape its row wants.
static bool
s_shape_fits (const family_t *family, json_t *value)
{
    if (family->type == FAMILY_HISTOGRAM)
        return json_is_object (value) && json_is_object (json_object_get (value, "buckets"));
    if (family->type == FAMILY_COUNTER)
        return json_is_number (value);
    return json_is_number (value) || json_is_boolean (value);
}

typedef struct {
    double bound;
    double count;
} bucket_t;

static int
s_bucket_compare (const void *left, const void *right)
{
    double one = ((const bucket_t *) left)->bound, other = ((const bucket_t *) right)->bound;
    return one < other? -1: one > other;
}

//  A pl_histogram in base units: buckets in order, +Inf last, then sum, count.
static void
s_histogram (pl_buf_t *out, const family_t *family, json_t *record, json_t *value)
{
    json_t *buckets = json_object_get (value, "buckets");
    double count = json_number_value (json_object_get (value, "count"));
    bucket_t *sorted = (bucket_t *) zmalloc ((json_object_size (buckets) + 1) * sizeof (bucket_t));
    size_t used = 0;
    const char *bound;
    json_t *bucket_count;
    json_object_foreach (buckets, bound, bucket_count) {
        char *end;
        double number = strtod (bound, &end);
        if (end != bound && *end == 0 && !isnan (number) && number > -INFINITY
        &&  json_is_number (bucket_count)) {
            sorted [used].bound = number;
            sorted [used++].count = json_number_value (bucket_count);
        }
    }
    qsort (sorted, used, sizeof (bucket_t), s_bucket_compare);
    if (used == 0 || !isinf (sorted [used - 1].bound)) {
        sorted [used].bound = INFINITY;
        sorted [used++].count = count;
    }
    for (size_t index = 0; index < used; index++) {
        char le [32] = "+Inf";
        if (!isinf (sorted [index].bound))
            s_number (sorted [index].bound / family->divisor, le);
        s_sample (out, family->name, "_bucket", record, "le", le, sorted [index].count);
    }
    free (sorted);
    s_sample (out, family->name, "_sum", record, NULL, NULL,
              json_number_value (json_object_get (value, "sum")) / family->divisor);
    s_sample (out, family->name, "_count", record, NULL, NULL, count);
}

//  The samples of one row from one record (none if the record lacks it).
static void
s_render_family (pl_buf_t *out, const family_t *family, json_t *record)
{
    json_t *value = json_object_get (json_object_get (record, "figures"), family->figure);
    if (!value)
        return;
    if (family->field) {
        if (!json_is_object (value))
            return;
        const char *item;
        json_t *fields;
        json_object_foreach (value, item, fields) {
            json_t *number = json_object_get (fields, family->field);
            if (json_is_number (number))
                s_sample (out, family->name, "", record, "name", item,
                          json_number_value (number) / family->divisor);
        }
    }
    else
    if (s_shape_fits (family, value)) {
        if (family->type == FAMILY_HISTOGRAM)
            s_histogram (out, family, record, value);
        else
            s_sample (out, family->name, "", record, NULL, NULL,
                      json_is_boolean (value)? (json_is_true (value)? 1: 0)
                                             : json_number_value (value) / family->divisor);
    }
}

//  How many figures of a record no row exports; each is logged once when
//  warned is given ("kind.figure" or "kind.figure.field").
static size_t
s_record_skipped (json_t *record, zhashx_t *warned)
{
    const char *kind = json_string_value (json_object_get (record, "kind"))?: "";
    zhashx_t *skipped = zhashx_new ();
    const char *figure;
    json_t *value;
    json_object_foreach (json_object_get (record, "figures"), figure, value) {
        char path [300];
        const family_t *family = s_family_find (kind, figure, NULL);
        if (json_is_object (value) && !json_object_get (value, "buckets") && !family) {
            //  Per-item figures: every field of every item needs a row
            const char *item;
            json_t *fields;
            json_object_foreach (value, item, fields) {
                const char *field;
                json_t *number;
                if (!json_is_object (fields)) {
                    snprintf (path, sizeof path, "%s.%s", kind, figure);
                    zhashx_update (skipped, path, (void *) 1);
                    continue;
                }
                json_object_foreach (fields, field, number)
                    if (!s_family_find (kind, figure, field) || !json_is_number (number)) {
                        snprintf (path, sizeof path, "%s.%s.%s", kind, figure, field);
                        zhashx_update (skipped, path, (void *) 1);
                    }
            }
        }
        else
        if (!family || !s_shape_fits (family, value)) {
            snprintf (path, sizeof path, "%s.%s", kind, figure);
            zhashx_update (skipped, path, (void *) 1);
        }
    }
    for (void *item = zhashx_first (skipped); item; item = zhashx_next (skipped)) {
        const char *path = (const char *) zhashx_cursor (skipped);
        if (warned && !zhashx_lookup (warned, path)) {
            zhashx_insert (warned, path, (void *) 1);
            pl_log_warning ("/metrics leaves out status figure %s: no row in pl_metrics.c "
                            "says its name, type and unit", path);
        }
    }
    size_t count = zhashx_size (skipped);
    zhashx_destroy (&skipped);
    return count;
}

static void
s_family_text (pl_buf_t *out, const char *name, const char *type, const char *help,
               pl_buf_t *samples)
{
    if (pl_buf_pending (samples) == 0)
        return;
    pl_buf_printf (out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    pl_buf_append (out, pl_buf_head (samples), pl_buf_pending (samples));
}

static char *
s_render (zlistx_t *records, zhashx_t *warned)
{
    static const char *type_names [] = { "gauge", "counter", "histogram" };
    pl_buf_t out;
    pl_buf_init (&out);
    for (size_t index = 0; index < FAMILIES; index++) {
        const family_t *family = &s_families [index];
        pl_buf_t samples;
        pl_buf_init (&samples);
        for (json_t *record = (json_t *) zlistx_first (records); record;
             record = (json_t *) zlistx_next (records)) {
            const char *kind = json_string_value (json_object_get (record, "kind"));
            if (kind && streq (kind, family->kind))
                s_render_family (&samples, family, record);
        }
        s_family_text (&out, family->name, type_names [family->type], family->help, &samples);
        pl_buf_free (&samples);
    }
    pl_buf_t samples;
    pl_buf_init (&samples);
    for (json_t *record = (json_t *) zlistx_first (records); record;
         record = (json_t *) zlistx_next (records))
        s_sample (&samples, SKIPPED_NAME, "", record, "kind",
                  json_string_value (json_object_get (record, "kind"))?: "",
                  (double) s_record_skipped (record, warned));
    s_family_text (&out, SKIPPED_NAME, "gauge", SKIPPED_HELP, &samples);
    pl_buf_free (&samples);
    char *text = strndup (pl_buf_head (&out), pl_buf_pending (&out));
    pl_buf_free (&out);
    return text;
}

char *
pl_metrics_render (pl_metrics_t *self)
{
    assert (self);
    pl_metrics_poll (self);
    int64_t now = pl_mono_ms ();
    zlistx_t *records = zlistx_new ();
    for (record_t *entry = (record_t *) zhashx_first (self->records); entry;
         entry = (record_t *) zhashx_next (self->records))
        if (now - entry->received <= self->stale_ms)
            zlistx_add_end (records, entry->record);
    char *text = s_render (records, self->warned);
    zlistx_destroy (&records);
    return text;
}

char *
pl_metrics_render_records (const char *records_json)
{
    json_t *array = json_loads (records_json, 0, NULL);
    zlistx_t *records = zlistx_new ();
    size_t index;
    json_t *record;
    json_array_foreach (array, index, record)
        zlistx_add_end (records, record);
    char *text = s_render (records, NULL);
    zlistx_destroy (&records);
    json_decref (array);
    return text;
}

//  --------------------------------------------------------------------------
//  Selftest

//  Whether name ends with suffix.
static bool
s_ends_with (const char *name, const char *suffix)
{
    size_t length = strlen (name), size = strlen (suffix);
    return length >= size && streq (name + length - size, suffix);
}

//  Status records shaped as the actors build them today (pl_connection.c,
//  pl_router.c, pl_persistence.c, pl_bridge.c + pl_streams_groups_json):
//  a figure added there needs its row here and in s_families.
static char *
s_records_of_today (void)
{
    pl_histogram_t histogram;
    memset (&histogram, 0, sizeof histogram);
    pl_histogram_observe (&histogram, 3);
    pl_histogram_observe (&histogram, 7.5);
    json_t *records = json_pack ("[{s:s, s:s, s:i, s:o}, {s:s, s:s, s:i, s:o},"
                                 " {s:s, s:s, s:i, s:o}, {s:s, s:s, s:i, s:o}]",
        "host", "h1", "kind", "conn", "instance", 0, "figures", json_pack (
            "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
            "sessions", (json_int_t) 3, "sessions_total", (json_int_t) 9,
            "subscriptions", (json_int_t) 4, "rooms", (json_int_t) 2,
            "requests_pending", (json_int_t) 0, "frames_in", (json_int_t) 40,
            "frames_out", (json_int_t) 41, "sends", (json_int_t) 20,
            "deliveries", (json_int_t) 2, "errors", (json_int_t) 1,
            "slow_consumers", (json_int_t) 0, "http_requests", (json_int_t) 5,
            "delivery_latency_ms", pl_histogram_json (&histogram)),
        "host", "h1", "kind", "router", "instance", 0, "figures", json_pack (
            "{s:I, s:I, s:I, s:I, s:I, s:b}",
            "rooms", (json_int_t) 2, "rooms_with_members_cached", (json_int_t) 1,
            "connection_actors", (json_int_t) 1, "persistence_actors", (json_int_t) 1,
            "undelivered", (json_int_t) 0, "bridge_ready", true),
        "host", "h1", "kind", "store", "instance", 0, "figures", json_pack (
            "{s:I, s:I, s:b}", "stored", (json_int_t) 20, "failed", (json_int_t) 0,
            "mongodb_ready", true),
        "host", "h1", "kind", "bridge", "instance", 0, "figures", json_pack (
            "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:o,"
            " s:{s:{s:I, s:I}, s:{s:I, s:I}}}",
            "appended", (json_int_t) 20, "duplicates", (json_int_t) 1,
            "fanout_read", (json_int_t) 20, "persist_read", (json_int_t) 20,
            "claimed", (json_int_t) 0, "dead_lettered", (json_int_t) 0,
            "trimmed", (json_int_t) 0, "append_errors", (json_int_t) 0,
            "redis_reconnects", (json_int_t) 0, "persist_unconfirmed", (json_int_t) 0,
            "persist_queued", (json_int_t) 0, "persistence_actors", (json_int_t) 1,
            "appends_in_flight", (json_int_t) 0, "redis_connected", true,
            "persist_lag_ms", pl_histogram_json (&histogram),
            "groups", "persist", "pending", (json_int_t) 5, "lag", (json_int_t) 0,
                      "fanout:h1", "pending", (json_int_t) 0, "lag", (json_int_t) 2));
    pl_check (records);
    char *text = json_dumps (records, JSON_COMPACT);
    json_decref (records);
    return text;
}

void
pl_metrics_test (bool verbose)
{
    if (verbose)
        printf (" * pl_metrics: ");
    //  The table follows Prometheus' conventions
    for (size_t index = 0; index < FAMILIES; index++) {
        const family_t *family = &s_families [index];
        char prefix [64];
        snprintf (prefix, sizeof prefix, "parley_%s_", family->kind);
        pl_check (strncmp (family->name, prefix, strlen (prefix)) == 0);
        for (const char *next = family->name; *next; next++)
            pl_check (islower ((unsigned char) *next) || isdigit ((unsigned char) *next) || *next == '_');
        pl_check ((family->type == FAMILY_COUNTER) == s_ends_with (family->name, "_total"));
        if (family->type == FAMILY_HISTOGRAM)
            pl_check (s_ends_with (family->name, "_seconds") || s_ends_with (family->name, "_bytes"));
        //  Base units: a figure in ms is divided into seconds
        pl_check (!strstr (family->name, "_ms") && !strstr (family->name, "milli"));
        pl_check (s_ends_with (family->figure, "_ms") == (family->divisor == MS));
        pl_check (family->divisor != MS || strstr (family->name, "_seconds"));
        pl_check (family->divisor > 0);
        pl_check (*family->help && !strchr (family->help, '\\') && !strchr (family->help, '\n'));
        pl_check (!streq (family->help, SKIPPED_HELP) && !streq (family->name, SKIPPED_NAME));
        //  One row per figure, its own name and help
        pl_check (s_family_find (family->kind, family->figure, family->field) == family);
        for (size_t other = 0; other < index; other++) {
            pl_check (!streq (s_families [other].name, family->name));
            pl_check (!streq (s_families [other].help, family->help));
        }
    }
    //  Every figure the actors publish today has its row
    char *records = s_records_of_today ();
    char *text = pl_metrics_render_records (records);
    free (records);
    pl_check (text);
    const char *kinds [] = { "conn", "router", "store", "bridge" };
    for (size_t index = 0; index < sizeof kinds / sizeof kinds [0]; index++) {
        char line [200];
        snprintf (line, sizeof line, SKIPPED_NAME "{host=\"h1\",instance=\"0\",kind=\"%s\"} 0\n",
                  kinds [index]);
        pl_check (strstr (text, line));
    }
    //  One HELP and TYPE line per family, all its samples after them
    pl_check (strstr (text, "# HELP parley_conn_sessions WebSocket sessions open now\n"
                            "# TYPE parley_conn_sessions gauge\n"
                            "parley_conn_sessions{host=\"h1\",instance=\"0\"} 3\n#"));
    pl_check (strstr (text, "# TYPE parley_conn_sessions_opened_total counter\n"
                            "parley_conn_sessions_opened_total{host=\"h1\",instance=\"0\"} 9\n"));
    pl_check (strstr (text, "# TYPE parley_store_stored_total counter\n"));
    pl_check (strstr (text, "parley_router_bridge_ready{host=\"h1\",instance=\"0\"} 1\n"));
    pl_check (strstr (text, "# TYPE parley_bridge_groups_pending gauge\n"
                            "parley_bridge_groups_pending{host=\"h1\",instance=\"0\",name=\"persist\"} 5\n"
                            "parley_bridge_groups_pending{host=\"h1\",instance=\"0\",name=\"fanout:h1\"} 0\n"));
    //  Histograms in seconds: bounds and sum divided, counts as they are
    pl_check (strstr (text, "# TYPE parley_conn_delivery_latency_seconds histogram\n"
                            "parley_conn_delivery_latency_seconds_bucket{host=\"h1\",instance=\"0\",le=\"0.001\"} 0\n"
                            "parley_conn_delivery_latency_seconds_bucket{host=\"h1\",instance=\"0\",le=\"0.002\"} 0\n"
                            "parley_conn_delivery_latency_seconds_bucket{host=\"h1\",instance=\"0\",le=\"0.005\"} 1\n"
                            "parley_conn_delivery_latency_seconds_bucket{host=\"h1\",instance=\"0\",le=\"0.01\"} 2\n"));
    pl_check (strstr (text, "parley_conn_delivery_latency_seconds_bucket{host=\"h1\",instance=\"0\",le=\"10\"} 2\n"
                            "parley_conn_delivery_latency_seconds_bucket{host=\"h1\",instance=\"0\",le=\"+Inf\"} 2\n"
                            "parley_conn_delivery_latency_seconds_sum{host=\"h1\",instance=\"0\"} 0.0105\n"
                            "parley_conn_delivery_latency_seconds_count{host=\"h1\",instance=\"0\"} 2\n"));
    pl_check (strstr (text, "parley_bridge_persist_lag_seconds_count{host=\"h1\",instance=\"0\"} 2\n"));
    pl_check (!strstr (text, "_ms"));
    free (text);

    //  Figures no row knows, or of the wrong shape, are left out and counted;
    //  label values are escaped; buckets come out in order, +Inf added
    text = pl_metrics_render_records (
        "[{\"type\":\"status\",\"host\":\"h\\\"1\",\"kind\":\"conn\",\"instance\":1,"
        "  \"figures\":{\"sessions\":4,\"novel\":7,\"sends\":\"x\",\"frames_in\":true,"
        "               \"delivery_latency_ms\":{\"buckets\":{\"5\":2,\"1\":1},\"sum\":4.5,\"count\":3},"
        "               \"groups\":{\"a\":{\"pending\":1}}}},"
        " {\"type\":\"status\",\"host\":\"h1\",\"kind\":\"bridge\",\"instance\":0,"
        "  \"figures\":{\"groups\":{\"persist\":{\"pending\":5,\"novel\":1},\"x\":{\"novel\":2}},\"trimmed\":3}},"
        " {\"type\":\"status\",\"host\":\"h1\",\"kind\":\"other\",\"instance\":0,\"figures\":{\"a\":1,\"b\":2}}]");
    pl_check (text);
    pl_check (strstr (text, "parley_conn_sessions{host=\"h\\\"1\",instance=\"1\"} 4\n"));
    pl_check (!strstr (text, "novel") && !strstr (text, "parley_conn_sends")
          &&  !strstr (text, "parley_conn_frames_in") && !strstr (text, "parley_other"));
    pl_check (strstr (text, "le=\"0.001\"} 1\n"
                            "parley_conn_delivery_latency_seconds_bucket{host=\"h\\\"1\",instance=\"1\",le=\"0.005\"} 2\n"
                            "parley_conn_delivery_latency_seconds_bucket{host=\"h\\\"1\",instance=\"1\",le=\"+Inf\"} 3\n"
                            "parley_conn_delivery_latency_seconds_sum{host=\"h\\\"1\",instance=\"1\"} 0.0045\n"));
    pl_check (strstr (text, "parley_bridge_groups_pending{host=\"h1\",instance=\"0\",name=\"persist\"} 5\n"));
    pl_check (strstr (text, "parley_bridge_trimmed_total{host=\"h1\",instance=\"0\"} 3\n"));
    //  conn: novel, sends, frames_in, groups.pending; bridge: groups.novel
    //  (once, whatever the items); other: a, b
    pl_check (strstr (text, SKIPPED_NAME "{host=\"h\\\"1\",instance=\"1\",kind=\"conn\"} 4\n"));
    pl_check (strstr (text, SKIPPED_NAME "{host=\"h1\",instance=\"0\",kind=\"bridge\"} 1\n"));
    pl_check (strstr (text, SKIPPED_NAME "{host=\"h1\",instance=\"0\",kind=\"other\"} 2\n"));
    free (text);

    //  Nothing heard yet: an empty page, not an error
    pl_metrics_t *metrics = pl_metrics_new ("/nonexistent", 5000);
    text = pl_metrics_render (metrics);
    pl_check (text && *text == 0);
    free (text);
    pl_metrics_destroy (&metrics);
    if (verbose)
        printf ("OK\n");
}
