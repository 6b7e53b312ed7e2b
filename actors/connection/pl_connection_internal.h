/*  =========================================================================
    pl_connection_internal - what the two files of the connection actor share

    pl_connection.c holds the actor: its state, the lws context and vhosts,
    the one callback, the ZeroMQ side, the writes; pl_connection_accept.c
    our listening socket, the accepts and each new connection's first
    request head through pl_gate. Only they include this header.
    =========================================================================
*/
#ifndef PL_CONNECTION_INTERNAL_H_INCLUDED
#define PL_CONNECTION_INTERNAL_H_INCLUDED

#include "pl_connection.h"
#include "pl_config.h"
#include "pl_gate.h"
#include "pl_histogram.h"
#include "pl_http.h"
#include "pl_link.h"
#include "pl_metrics.h"
#include "pl_monitor.h"
#include "pl_session.h"
#include "pl_util.h"
#include "pl_web.h"

#include <libwebsockets.h>

typedef struct _self_t self_t;
typedef struct _gate_conn_t gate_conn_t;   //  a connection at the gate (pl_connection_accept.c)

//  What lws keeps per connection
typedef struct {
    pl_session_t *session;      //  a WebSocket's
    pl_http_t *http;            //  the HTTP request being answered
    bool lingering;             //  session all sent, closes after linger-s
    bool headers_sent;          //  the HTTP answer's headers are out
    bool rx_held;               //  reading stopped while the answer is awaited
} pss_t;

struct _self_t {
    const pl_config_t *config;
    zsock_t *pipe;
    zsock_t *dealer;
    char name [32];             //  "conn-<instance>", DEALER identity
    pl_link_t link;             //  what sessions and HTTP requests share
    pl_sessions_t *sessions;
    //  lws runs on this libev loop (epoll): its poll () backend scans every
    //  descriptor on every wake-up, which with thousands of sessions was
    //  most of this actor's CPU
    struct ev_loop *loop;
    struct lws_context *context;
    struct lws_protocols protocols [8];  //  s_protocols with our buffer sizes
    struct lws_vhost *vhost;
    struct lws_vhost *files_vhost;      //  the web chat's files, or NULL
    int listen_fd;              //  ours, SO_REUSEPORT; lws owns it once adopted
    struct lws *listen_wsi;
    gate_conn_t *gates;         //  connections whose head is not through the gate yet
    //  Out of file descriptors (issue 8): accepting pauses, a spare
    //  descriptor lets one waiting client hear 503 each time
    int spare_fd;               //  /dev/null, closed to make room for that answer
    lws_sorted_usec_list_t accept_resume;
    bool accept_paused;
    int64_t accept_warned_ms;   //  last warning; one per ACCEPT_WARN_MS
    uint64_t accept_pauses;     //  figures: pauses, and clients told 503
    uint64_t accept_shed;
    lws_sorted_usec_list_t tick;
    bool terminated;
    bool shutting_down;         //  $TERM came: finish in-flight work, then stop
    int64_t shutdown_deadline;
    bool shutdown_forced;       //  the deadline passed: every session was told
    bool draining;
    bool stopping;              //  context going down: no more router input
    pl_every_t ping;            //  PING to the router (its answer says it is alive)
    pl_monitor_t *monitor;      //  socket events and status for operators
    pl_every_t status;          //  status record cadence
    pl_every_t heap_trim;       //  free heap pages back to the kernel
    pl_metrics_t *host_metrics; //  every actor's status records, for /metrics
    pl_histogram_t delivery_latency;    //  createdAt to delivery here, ms
    uint64_t http_requests;
    pl_http_guard_t http_guard;         //  HTTP refusals and rate limits
    pl_web_t *web;              //  the web chat's mounts (lws keeps a pointer)
    unsigned char *scratch;     //  LWS_PRE + bytes for lws_write
    size_t scratch_size;
};

//  In pl_connection.c

//  A write buffer with LWS_PRE bytes in front, as lws_write wants; returns
//  where the payload goes, or NULL when out of memory.
unsigned char *
    pl_connection_scratch (self_t *self, size_t size);

//  In pl_connection_accept.c

//  Our own listening socket on config's address and port, SO_REUSEPORT.
//  Returns the fd or -1 (after logging why).
int
    pl_connection_listen (const pl_config_t *config);

//  The listening socket is readable: accept a bounded batch, each socket
//  to the gate; out of descriptors, pause accepting and shed.
void
    pl_connection_accept (self_t *self);

//  Close every connection still at the gate (shutdown)
void
    pl_connection_gates_close (self_t *self);

#endif
