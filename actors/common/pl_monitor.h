/*  =========================================================================
    pl_monitor - one actor's monitor endpoint: socket events and status

    Every actor owns one monitor. It binds a PUB socket at
    ipc://<runtime_dir>/monitor-<kind>-<instance>.ipc and publishes two
    kinds of two-frame messages there (see MONITOR.md):

        [event.<kind>.<instance>]  [JSON]   a ZeroMQ event of a watched socket
        [status.<kind>.<instance>] [JSON]   the actor's periodic status record

    The PUB socket and the monitor PAIR sockets live in a small czmq actor
    thread of their own, so the calling actor never polls them. All calls
    below come from the one thread that owns the actor's sockets.

    Order at shutdown: either order of pl_monitor_destroy and destroying
    the watched sockets is safe. pl_monitor_destroy never touches the
    watched sockets (they may be gone already); a socket that outlives its
    monitor keeps an unread inproc monitor, which libzmq closes with it.
    Call pl_monitor_unwatch only on a socket that is still alive.
    =========================================================================
*/
#ifndef PL_MONITOR_H_INCLUDED
#define PL_MONITOR_H_INCLUDED

#include "pl_config.h"

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>

//  File names in the runtime directory: monitor-<kind>-<instance>.ipc
#define PL_MONITOR_FILE_PREFIX "monitor-"
#define PL_MONITOR_FILE_SUFFIX ".ipc"
//  Topic prefixes; the full topic is "<prefix><kind>.<instance>"
#define PL_MONITOR_TOPIC_EVENT  "event."
#define PL_MONITOR_TOPIC_STATUS "status."

typedef struct _pl_monitor_t pl_monitor_t;

//  One per actor. Binds a PUB socket at ipc://<runtime_dir>/monitor-<kind>-
//  <instance>.ipc (kind: "conn", "router", "store", "bridge": 1..16 of
//  [a-z]). Returns NULL (logged) if it cannot bind.
pl_monitor_t *
    pl_monitor_new (const pl_config_t *config, const char *kind, int instance);

//  Stop the monitor thread and close its endpoint. Safe on NULL. Does not
//  touch the watched sockets (see above).
void
    pl_monitor_destroy (pl_monitor_t **self_p);

//  Attach zmq_socket_monitor to a socket of the actor; its events
//  (LISTENING, ACCEPTED, CONNECTED, DISCONNECTED, CLOSED, BIND_FAILED,
//  HANDSHAKE_*...) are republished as they happen, tagged with kind,
//  instance, host and socket_name. Watch a socket before it binds or
//  connects to see those first events. A socket has at most one monitor:
//  watching it again replaces the earlier watch. Returns 0 or -1 (logged).
int
    pl_monitor_watch (pl_monitor_t *self, zsock_t *socket, const char *socket_name);

//  Stop watching a socket that is still alive (a MONITOR_STOPPED event is
//  published). Optional: destroying the socket ends its watch as well.
void
    pl_monitor_unwatch (pl_monitor_t *self, zsock_t *socket);

//  Publish the actor's status record. figures is a JSON object the actor
//  builds (its own numbers); the monitor adds type, host, kind, instance,
//  pid, time and uptime_s. Takes ownership of figures (NULL: no figures).
//  Never blocks: a record the monitor thread cannot take is dropped.
//  Actors call it about once a second.
void
    pl_monitor_status (pl_monitor_t *self, json_t *figures);

//  An actor's once-a-second report of its figures, the one place they go
//  out: the status record on the monitor (self may be NULL when the monitor
//  could not start) and systemd's STATUS= line, made of the top-level
//  numbers as "key=value" pairs. Takes ownership of figures.
void
    pl_monitor_report (pl_monitor_t *self, json_t *figures);

//  Name of a ZeroMQ monitor event ("CONNECTED"...), "UNKNOWN" if none.
const char *
    pl_monitor_event_name (int event);

void
    pl_monitor_test (bool verbose);

#endif
