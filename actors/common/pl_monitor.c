/*  =========================================================================
    pl_monitor - one actor's monitor endpoint: socket events and status

    The caller's thread owns the watched sockets, so it is the one that
    calls zmq_socket_monitor; each call binds a fresh inproc PAIR endpoint.
    The agent thread (a zactor) connects a PAIR to it, turns each event
    into JSON and publishes it on the PUB socket, which only the agent
    touches. Status records are built in the caller's thread and passed to
    the agent over the zactor pipe.
    =========================================================================
*/
#include "pl_monitor.h"
#include "pl_notify.h"
#include "pl_log.h"
#include "pl_util.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_KIND_MAX 16
//  How long destroy waits for the teardown events of sockets the actor
//  has just destroyed (see s_agent_linger)
#define S_LINGER_MS 500

struct _pl_monitor_t {
    zactor_t *agent;            //  owns the PUB and the monitor PAIRs
    char kind [S_KIND_MAX + 1];
    int instance;
    char *host_id;
    char *endpoint;             //  ipc://.../monitor-<kind>-<instance>.ipc
    int64_t started_ms;         //  monotonic, for uptime_s
    int bind_rc;                //  written by the agent before it signals
};

//  Process-wide, so inproc endpoints never clash: a socket that outlives
//  its monitor keeps its endpoint bound until the socket closes.
static unsigned int s_watch_sequence = 0;

//  ---------------------------------------------------------------------
//  The agent thread

typedef struct {
    zsock_t *pair;              //  connected to the socket's monitor endpoint
    char *name;                 //  the actor's name of the watched socket
} s_watch_t;

typedef struct {
    pl_monitor_t *monitor;      //  read-only fields: kind, instance, host_id
    zsock_t *pipe;
    zsock_t *publisher;
    zpoller_t *poller;
    zlistx_t *watches;          //  of s_watch_t
    bool terminated;
} s_agent_t;

static void
s_watch_destroy (void **item_p)
{
    s_watch_t *watch = (s_watch_t *) *item_p;
    if (watch) {
        zsock_destroy (&watch->pair);
        free (watch->name);
        free (watch);
        *item_p = NULL;
    }
}

const char *
pl_monitor_event_name (int event)
{
    switch (event) {
        case ZMQ_EVENT_CONNECTED:                   return "CONNECTED";
        case ZMQ_EVENT_CONNECT_DELAYED:             return "CONNECT_DELAYED";
        case ZMQ_EVENT_CONNECT_RETRIED:             return "CONNECT_RETRIED";
        case ZMQ_EVENT_LISTENING:                   return "LISTENING";
        case ZMQ_EVENT_BIND_FAILED:                 return "BIND_FAILED";
        case ZMQ_EVENT_ACCEPTED:                    return "ACCEPTED";
        case ZMQ_EVENT_ACCEPT_FAILED:               return "ACCEPT_FAILED";
        case ZMQ_EVENT_CLOSED:                      return "CLOSED";
        case ZMQ_EVENT_CLOSE_FAILED:                return "CLOSE_FAILED";
        case ZMQ_EVENT_DISCONNECTED:                return "DISCONNECTED";
        case ZMQ_EVENT_MONITOR_STOPPED:             return "MONITOR_STOPPED";
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:  return "HANDSHAKE_FAILED_NO_DETAIL";
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:         return "HANDSHAKE_SUCCEEDED";
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:   return "HANDSHAKE_FAILED_PROTOCOL";
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:       return "HANDSHAKE_FAILED_AUTH";
        default:                                    return "UNKNOWN";
    }
}

//  The value of these events is an errno; operators want the text
static bool
s_event_value_is_errno (int event)
{
    return event == ZMQ_EVENT_BIND_FAILED || event == ZMQ_EVENT_ACCEPT_FAILED
        || event == ZMQ_EVENT_CLOSE_FAILED || event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
}

//  Topic and JSON text as one two-frame message. Takes ownership of record.
static void
s_agent_publish (s_agent_t *self, const char *topic_prefix, json_t *record)
{
    char *text = record? json_dumps (record, JSON_COMPACT): NULL;
    json_decref (record);
    if (!text) {
        pl_log_warning ("monitor: cannot encode a record");
        return;
    }
    char topic [64];
    snprintf (topic, sizeof topic, "%s%s.%d", topic_prefix, self->monitor->kind,
              self->monitor->instance);
    //  A PUB drops what its subscribers cannot take, so this never blocks
    zstr_sendx (self->publisher, topic, text, NULL);
    free (text);
}

static s_agent_t *
s_agent_new (zsock_t *pipe, pl_monitor_t *monitor)
{
    s_agent_t *self = (s_agent_t *) zmalloc (sizeof (s_agent_t));
    assert (self);
    self->monitor = monitor;
    self->pipe = pipe;
    self->watches = zlistx_new ();
    assert (self->watches);
    zlistx_set_destructor (self->watches, s_watch_destroy);
    self->poller = zpoller_new (pipe, NULL);
    assert (self->poller);
    //  Only $TERM stops the agent: on SIGINT the actor still has to drain
    //  and publish its last events before it destroys us
    zpoller_set_nonstop (self->poller, true);
    self->publisher = zsock_new (ZMQ_PUB);
    assert (self->publisher);
    //  An operator tool may lag; old events are worth less than a live actor
    zsock_set_sndhwm (self->publisher, 10000);
    zsock_set_linger (self->publisher, 0);
    if (zsock_bind (self->publisher, "%s", monitor->endpoint) == -1) {
        pl_log_error ("monitor: cannot bind %s: %s", monitor->endpoint, zmq_strerror (zmq_errno ()));
        monitor->bind_rc = -1;
    }
    return self;
}

static void
s_agent_destroy (s_agent_t **self_p)
{
    s_agent_t *self = *self_p;
    if (self) {
        zpoller_destroy (&self->poller);
        zlistx_destroy (&self->watches);
        zsock_destroy (&self->publisher);
        //  libzmq 4.3 leaves the file of an ipc endpoint behind; remove it so
        //  that parleyctl tells an actor that stopped from one that died
        if (self->monitor->bind_rc == 0)
            unlink (self->monitor->endpoint + strlen ("ipc://"));
        free (self);
        *self_p = NULL;
    }
}

//  WATCH endpoint name: connect a PAIR to the socket's monitor endpoint.
//  Signals 0 or -1 so pl_monitor_watch returns only once events flow.
static void
s_agent_watch (s_agent_t *self, const char *endpoint, const char *name)
{
    s_watch_t *watch = (s_watch_t *) zmalloc (sizeof (s_watch_t));
    assert (watch);
    watch->name = strdup (name);
    watch->pair = zsock_new (ZMQ_PAIR);
    assert (watch->name && watch->pair);
    if (zsock_connect (watch->pair, "%s", endpoint) == -1) {
        pl_log_error ("monitor: cannot connect %s: %s", endpoint, zmq_strerror (zmq_errno ()));
        void *item = watch;
        s_watch_destroy (&item);
        zsock_signal (self->pipe, 1);
        return;
    }
    zlistx_add_end (self->watches, watch);
    zpoller_add (self->poller, watch->pair);
    zsock_signal (self->pipe, 0);
}

//  One event: frame 1 is a 16-bit event id and a 32-bit value in host
//  order (libzmq's v1 format), frame 2 the endpoint it is about.
static void
s_agent_recv_event (s_agent_t *self, s_watch_t *watch)
{
    zmsg_t *msg = zmsg_recv (watch->pair);
    if (!msg)
        return;             //  interrupted
    zframe_t *head = zmsg_first (msg);
    zframe_t *address = zmsg_next (msg);
    if (!head || zframe_size (head) != 6 || !address) {
        pl_log_warning ("monitor: malformed event on socket %s", watch->name);
        zmsg_destroy (&msg);
        return;
    }
    uint16_t event;
    uint32_t value;
    memcpy (&event, zframe_data (head), sizeof event);
    memcpy (&value, zframe_data (head) + sizeof event, sizeof value);
    char *endpoint = zframe_strdup (address);
    assert (endpoint);

    char now [32];
    pl_iso8601 (pl_clock_ms (), now, sizeof now);
    pl_monitor_t *monitor = self->monitor;
    json_t *record = json_pack ("{s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:I, s:s}",
        "type", "event", "host", monitor->host_id, "kind", monitor->kind,
        "instance", monitor->instance, "socket", watch->name,
        "event", pl_monitor_event_name (event), "endpoint", endpoint,
        "value", (json_int_t) value, "time", now);
    if (record && s_event_value_is_errno (event))
        json_object_set_new (record, "error", json_string (zmq_strerror ((int) value)));
    pl_log_debug ("monitor: %s %s %s", watch->name, pl_monitor_event_name (event), endpoint);
    s_agent_publish (self, PL_MONITOR_TOPIC_EVENT, record);
    free (endpoint);
    zmsg_destroy (&msg);

    //  The socket closed or was unwatched: its monitor endpoint is gone
    if (event == ZMQ_EVENT_MONITOR_STOPPED) {
        zpoller_remove (self->poller, watch->pair);
        void *handle = zlistx_find (self->watches, watch);
        assert (handle);
        zlistx_delete (self->watches, handle);
    }
}

static void
s_agent_recv_api (s_agent_t *self)
{
    zmsg_t *request = zmsg_recv (self->pipe);
    if (!request) {
        self->terminated = true;
        return;
    }
    char *command = zmsg_popstr (request);
    if (streq_safe (command, "$TERM"))
        self->terminated = true;
    else
    if (streq_safe (command, "WATCH")) {
        char *endpoint = zmsg_popstr (request);
        char *name = zmsg_popstr (request);
        assert (endpoint && name);
        s_agent_watch (self, endpoint, name);
        free (endpoint);
        free (name);
    }
    else
    if (streq_safe (command, "STATUS")) {
        char *text = zmsg_popstr (request);
        assert (text);
        json_t *record = json_loads (text, 0, NULL);
        free (text);
        s_agent_publish (self, PL_MONITOR_TOPIC_STATUS, record);
    }
    else
        pl_log_error ("monitor: invalid command '%s'", command? command: "");
    free (command);
    zmsg_destroy (&request);
}

//  A socket's teardown events (DISCONNECTED, CLOSED, MONITOR_STOPPED) come
//  from libzmq's I/O and reaper threads after zsock_destroy returns. If
//  our PAIR closed first, libzmq may leak the events left in its pipe, so
//  at $TERM wait a little for every watched socket to report
//  MONITOR_STOPPED. A socket still alive never does: it was not
//  destroyed or unwatched before pl_monitor_destroy, which is the
//  caller's error; say so and go on.
static void
s_agent_linger (s_agent_t *self)
{
    zpoller_remove (self->poller, self->pipe);
    int64_t deadline = pl_mono_ms () + S_LINGER_MS;
    while (zlistx_size (self->watches) > 0) {
        int64_t left = deadline - pl_mono_ms ();
        if (left <= 0)
            break;
        void *which = zpoller_wait (self->poller, (int) left);
        if (!which)
            continue;
        s_watch_t *watch = (s_watch_t *) zlistx_first (self->watches);
        while (watch && watch->pair != which)
            watch = (s_watch_t *) zlistx_next (self->watches);
        if (watch)
            s_agent_recv_event (self, watch);
    }
    s_watch_t *watch = (s_watch_t *) zlistx_first (self->watches);
    for (; watch; watch = (s_watch_t *) zlistx_next (self->watches))
        pl_log_warning ("monitor: socket %s still watched at destroy"
                        " (destroy or unwatch it before the monitor)", watch->name);
}

static void
s_agent_actor (zsock_t *pipe, void *args)
{
    pl_monitor_t *monitor = (pl_monitor_t *) args;
    char log_name [S_KIND_MAX + 32];
    snprintf (log_name, sizeof log_name, "%s-%d", monitor->kind, monitor->instance);
    pl_log_set_actor (log_name);

    s_agent_t *self = s_agent_new (pipe, monitor);
    zsock_signal (pipe, 0);
    //  zactor_new consumed the signal; bind_rc tells pl_monitor_new the rest
    if (monitor->bind_rc) {
        s_agent_destroy (&self);
        return;
    }
    while (!self->terminated) {
        void *which = zpoller_wait (self->poller, -1);
        if (!which) {
            if (zmq_errno () == EINTR)
                continue;       //  a signal: the actor decides when we stop
            break;              //  the context is gone
        }
        if (which == pipe)
            s_agent_recv_api (self);
        else {
            s_watch_t *watch = (s_watch_t *) zlistx_first (self->watches);
            while (watch && watch->pair != which)
                watch = (s_watch_t *) zlistx_next (self->watches);
            if (watch)
                s_agent_recv_event (self, watch);
        }
    }
    s_agent_linger (self);
    s_agent_destroy (&self);
}

//  ---------------------------------------------------------------------
//  The class, in the caller's thread

static bool
s_kind_valid (const char *kind)
{
    size_t length = kind? strlen (kind): 0;
    return length > 0 && length <= S_KIND_MAX
        && strspn (kind, "abcdefghijklmnopqrstuvwxyz") == length;
}

pl_monitor_t *
pl_monitor_new (const pl_config_t *config, const char *kind, int instance)
{
    assert (config);
    assert (instance >= 0);
    //  The kind names the endpoint file: a bad one is the caller's bug, and
    //  a build without asserts still refuses it rather than make a bad path
    if (!s_kind_valid (kind)) {
        assert (!"monitor kind must be 1..16 letters a-z");
        return NULL;
    }
    pl_monitor_t *self = (pl_monitor_t *) zmalloc (sizeof (pl_monitor_t));
    assert (self);
    snprintf (self->kind, sizeof self->kind, "%s", kind);
    self->instance = instance;
    self->host_id = strdup (config->host_id);
    assert (self->host_id);
    self->started_ms = pl_mono_ms ();
    if (asprintf (&self->endpoint, "ipc://%s/" PL_MONITOR_FILE_PREFIX "%s-%d" PL_MONITOR_FILE_SUFFIX,
                  config->runtime_dir, kind, instance) < 0) {
        self->endpoint = NULL;
        pl_monitor_destroy (&self);
        return NULL;
    }
    self->agent = zactor_new (s_agent_actor, self);
    if (!self->agent || self->bind_rc)
        pl_monitor_destroy (&self);
    return self;
}

void
pl_monitor_destroy (pl_monitor_t **self_p)
{
    assert (self_p);
    pl_monitor_t *self = *self_p;
    if (self) {
        zactor_destroy (&self->agent);
        free (self->host_id);
        free (self->endpoint);
        free (self);
        *self_p = NULL;
    }
}

int
pl_monitor_watch (pl_monitor_t *self, zsock_t *socket, const char *socket_name)
{
    assert (self);
    assert (socket);
    assert (socket_name);
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "inproc://pl-monitor-%d-%u", (int) getpid (),
              __atomic_fetch_add (&s_watch_sequence, 1, __ATOMIC_RELAXED));
    if (zmq_socket_monitor (zsock_resolve (socket), endpoint, ZMQ_EVENT_ALL) == -1) {
        pl_log_error ("monitor: cannot watch socket %s: %s", socket_name, zmq_strerror (zmq_errno ()));
        return -1;
    }
    if (zstr_sendx (self->agent, "WATCH", endpoint, socket_name, NULL) == -1
    ||  zsock_wait (self->agent) != 0) {
        zmq_socket_monitor (zsock_resolve (socket), NULL, 0);
        return -1;
    }
    return 0;
}

void
pl_monitor_unwatch (pl_monitor_t *self, zsock_t *socket)
{
    assert (self);
    assert (socket);
    (void) self;                //  the agent learns it from libzmq's event
    //  libzmq sends MONITOR_STOPPED, on which the agent drops its PAIR
    zmq_socket_monitor (zsock_resolve (socket), NULL, 0);
}

void
pl_monitor_report (pl_monitor_t *self, json_t *figures)
{
    char line [400] = "";
    size_t used = 0;
    const char *key;
    json_t *value;
    json_object_foreach (figures, key, value) {
        if (!json_is_number (value) && !json_is_boolean (value))
            continue;           //  histograms and groups: monitor only
        int written = snprintf (line + used, sizeof line - used, "%s%s=%.15g", used? " ": "", key,
                                json_is_boolean (value)? (json_is_true (value)? 1.0: 0.0)
                                                       : json_number_value (value));
        if (written < 0 || (size_t) written >= sizeof line - used)
            break;              //  the line is for people: the start is enough
        used += (size_t) written;
    }
    pl_notify_status (line);
    if (self)
        pl_monitor_status (self, figures);
    else
        json_decref (figures);
}

void
pl_monitor_status (pl_monitor_t *self, json_t *figures)
{
    assert (self);
    if (!figures)
        figures = json_object ();
    char now [32];
    pl_iso8601 (pl_clock_ms (), now, sizeof now);
    json_t *record = json_pack ("{s:s, s:s, s:s, s:i, s:I, s:s, s:I}",
        "type", "status", "host", self->host_id, "kind", self->kind,
        "instance", self->instance, "pid", (json_int_t) getpid (), "time", now,
        "uptime_s", (json_int_t) ((pl_mono_ms () - self->started_ms) / 1000));
    char *text = NULL;
    if (record && json_object_set_new (record, "figures", figures) == 0)
        text = json_dumps (record, JSON_COMPACT);
    else
        json_decref (figures);
    json_decref (record);
    if (!text) {
        pl_log_warning ("monitor: cannot encode the status record");
        return;
    }
    //  Never block the actor on its monitor: if the agent is stuck, the
    //  pipe fills and records are dropped. PAIR multipart is atomic, so
    //  once the first frame is queued the second is too.
    void *pipe = zsock_resolve (self->agent);
    if (zmq_send (pipe, "STATUS", 6, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1
    ||  zmq_send (pipe, text, strlen (text), ZMQ_DONTWAIT) == -1)
        pl_log_debug ("monitor: status record dropped: %s", zmq_strerror (zmq_errno ()));
    free (text);
}

//  ---------------------------------------------------------------------
//  Selftest

//  Read monitor messages until one is the event wanted on this socket;
//  returns its record (caller owns) or NULL after timeout_ms.
static json_t *
s_test_expect (zsock_t *subscriber, const char *topic_prefix, const char *socket_name,
               const char *event_name, int timeout_ms, bool verbose)
{
    int64_t deadline = pl_mono_ms () + timeout_ms;
    zpoller_t *poller = zpoller_new (subscriber, NULL);
    pl_check (poller);
    json_t *found = NULL;
    while (!found) {
        int64_t left = deadline - pl_mono_ms ();
        if (left <= 0 || !zpoller_wait (poller, (int) left))
            break;
        char *topic = NULL, *text = NULL;
        if (zstr_recvx (subscriber, &topic, &text, NULL) != 2) {
            zstr_free (&topic);
            zstr_free (&text);
            continue;
        }
        if (verbose)
            printf ("    %s %s\n", topic, text);
        json_t *record = json_loads (text, 0, NULL);
        pl_check (record);
        if (strncmp (topic, topic_prefix, strlen (topic_prefix)) == 0
        && (!socket_name || streq_safe (json_string_value (json_object_get (record, "socket")), socket_name))
        && (!event_name || streq_safe (json_string_value (json_object_get (record, "event")), event_name)))
            found = record;
        else
            json_decref (record);
        zstr_free (&topic);
        zstr_free (&text);
    }
    zpoller_destroy (&poller);
    return found;
}

void
pl_monitor_test (bool verbose)
{
    printf (" * pl_monitor: ");
    if (verbose)
        printf ("\n");

    char runtime_dir [] = "/tmp/pl-monitor-test-XXXXXX";
    pl_check (mkdtemp (runtime_dir));
    pl_config_t *config = pl_config_new_default ();
    pl_check (config);
    pl_check (pl_config_set (config, "host-id", "test-host") == 0);
    pl_check (pl_config_set (config, "runtime-dir", runtime_dir) == 0);
    pl_check (pl_config_finish (config) == 0);

    //  A runtime directory that does not exist: NULL, nothing left behind
    pl_config_t *bad_config = pl_config_new_default ();
    pl_check (bad_config);
    pl_check (pl_config_set (bad_config, "runtime-dir", "/nonexistent/pl-monitor-test") == 0);
    pl_check (pl_config_finish (bad_config) == 0);
    pl_monitor_t *bad = pl_monitor_new (bad_config, "conn", 0);
    pl_check (bad == NULL);
    pl_config_destroy (&bad_config);

    pl_monitor_t *monitor = pl_monitor_new (config, "conn", 3);
    pl_check (monitor);
    char path [PATH_MAX];
    snprintf (path, sizeof path, "%s/monitor-conn-3.ipc", runtime_dir);
    struct stat info;
    pl_check (stat (path, &info) == 0);

    zsock_t *subscriber = zsock_new_sub (NULL, "");
    pl_check (subscriber);
    pl_check (zsock_connect (subscriber, "ipc://%s", path) == 0);

    //  A PUB drops messages until the subscription has arrived: publish
    //  probes until one is seen
    json_t *record = NULL;
    for (int attempt = 0; attempt < 50 && !record; attempt++) {
        pl_monitor_status (monitor, json_pack ("{s:i}", "probe", attempt));
        record = s_test_expect (subscriber, "status.conn.3", NULL, NULL, 100, verbose);
    }
    pl_check (record);
    json_decref (record);

    //  A status record gets the monitor's fields around the actor's figures
    pl_monitor_status (monitor, json_pack ("{s:i, s:{s:{s:i, s:i}}}", "connections", 2,
                                           "streams", "g1", "lag", 5, "pending", 1));
    record = NULL;
    while (!record) {
        record = s_test_expect (subscriber, "status.conn.3", NULL, NULL, 2000, verbose);
        pl_check (record);
        json_t *figures = json_object_get (record, "figures");
        if (json_object_get (figures, "probe")) {
            json_decref (record);       //  a late probe
            record = NULL;
        }
    }
    pl_check (streq (json_string_value (json_object_get (record, "type")), "status"));
    pl_check (streq (json_string_value (json_object_get (record, "host")), "test-host"));
    pl_check (streq (json_string_value (json_object_get (record, "kind")), "conn"));
    pl_check (json_integer_value (json_object_get (record, "instance")) == 3);
    pl_check (json_integer_value (json_object_get (record, "pid")) == getpid ());
    pl_check (json_integer_value (json_object_get (record, "uptime_s")) >= 0);
    pl_check (strlen (json_string_value (json_object_get (record, "time"))) == 24);
    json_t *figures = json_object_get (record, "figures");
    pl_check (json_integer_value (json_object_get (figures, "connections")) == 2);
    pl_check (json_integer_value (json_object_get (
        json_object_get (json_object_get (figures, "streams"), "g1"), "lag")) == 5);
    json_decref (record);
    //  No figures at all is an empty object
    pl_monitor_status (monitor, NULL);
    record = s_test_expect (subscriber, "status.conn.3", NULL, NULL, 2000, verbose);
    pl_check (record && json_is_object (json_object_get (record, "figures")));
    json_decref (record);

    //  Watch a ROUTER before it binds and a DEALER before it connects
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    pl_check (router && dealer);
    pl_check (pl_monitor_watch (monitor, router, "router-in") == 0);
    pl_check (pl_monitor_watch (monitor, dealer, "dealer-out") == 0);
    pl_check (zsock_bind (router, "ipc://%s/test.ipc", runtime_dir) == 0);
    pl_check (zsock_connect (dealer, "ipc://%s/test.ipc", runtime_dir) == 0);
    zstr_send (dealer, "hello");
    char *identity = NULL, *hello = NULL;
    pl_check (zstr_recvx (router, &identity, &hello, NULL) == 2);
    pl_check (streq (hello, "hello"));
    zstr_free (&identity);
    zstr_free (&hello);

    //  Events of one socket come in order; the two sockets interleave,
    //  so each expectation gets its own subscriber-side filter
    record = s_test_expect (subscriber, "event.conn.3", "router-in", "LISTENING", 2000, verbose);
    pl_check (record);
    pl_check (streq (json_string_value (json_object_get (record, "type")), "event"));
    pl_check (streq (json_string_value (json_object_get (record, "host")), "test-host"));
    pl_check (json_integer_value (json_object_get (record, "instance")) == 3);
    const char *endpoint = json_string_value (json_object_get (record, "endpoint"));
    pl_check (endpoint && strstr (endpoint, "test.ipc"));
    json_decref (record);

    //  Now with a second subscriber that filters by kind, reading only
    //  events; both sides' connection events have been published by now
    //  or will be shortly, so collect them all in a set
    const char *wanted [] = { "router-in ACCEPTED", "router-in HANDSHAKE_SUCCEEDED",
                              "dealer-out CONNECTED", "dealer-out HANDSHAKE_SUCCEEDED" };
    bool seen [4] = { false, false, false, false };
    int seen_count = 0;
    while (seen_count < 4) {
        record = s_test_expect (subscriber, "event.conn.3", NULL, NULL, 2000, verbose);
        pl_check (record);
        char key [128];
        snprintf (key, sizeof key, "%s %s", json_string_value (json_object_get (record, "socket")),
                  json_string_value (json_object_get (record, "event")));
        for (int index = 0; index < 4; index++)
            if (!seen [index] && streq (key, wanted [index])) {
                seen [index] = true;
                seen_count++;
            }
        json_decref (record);
    }

    //  The DEALER goes without being unwatched: the ROUTER sees it leave
    //  and libzmq stops the DEALER's monitor, which the agent drops
    zsock_destroy (&dealer);
    record = s_test_expect (subscriber, "event.conn.3", "router-in", "DISCONNECTED", 2000, verbose);
    pl_check (record);
    json_decref (record);

    //  Unwatching a live socket publishes MONITOR_STOPPED
    pl_monitor_unwatch (monitor, router);
    record = s_test_expect (subscriber, "event.conn.3", "router-in", "MONITOR_STOPPED", 2000, verbose);
    pl_check (record);
    json_decref (record);
    //  ... and the socket may be watched again
    pl_check (pl_monitor_watch (monitor, router, "router-again") == 0);

    //  The documented order: watched sockets first, then the monitor,
    //  which waits for their teardown events (no wait is the rule)
    zsock_destroy (&router);
    int64_t destroy_start = pl_mono_ms ();
    pl_monitor_destroy (&monitor);
    pl_check (monitor == NULL);
    if (verbose)
        printf ("    destroy took %d ms\n", (int) (pl_mono_ms () - destroy_start));
    pl_monitor_destroy (&monitor);
    zsock_destroy (&subscriber);

    //  The monitor removed its endpoint file; test.ipc is left to us
    pl_check (stat (path, &info) == -1 && errno == ENOENT);
    snprintf (path, sizeof path, "%s/test.ipc", runtime_dir);
    unlink (path);
    pl_check (rmdir (runtime_dir) == 0);
    pl_config_destroy (&config);
    printf ("OK\n");
}
