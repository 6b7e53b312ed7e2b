/*  =========================================================================
    pl_connection - the connection actor: STOMP over WebSocket and the HTTP
    API on one port, talking to the room-router over ZeroMQ

    This file is the libwebsockets glue and the actor loop: the lws context,
    its one callback, the writes, the timer, the DEALER to the router; our
    listening socket, the accepts and each new connection's head through
    pl_gate are in pl_connection_accept.c (pl_connection_internal.h holds
    what the two share). What the sessions and HTTP requests mean lives in
    lws-free classes (pl_session with pl_handshake, pl_interest and pl_resume;
    pl_http; pl_pending for requests in flight) that reach back here only
    through pl_link.

    Threading: everything runs on the lws service thread, a libev loop of
    our own that lws joins as a foreign loop. The actor pipe and
    the DEALER are put into that loop by adopting a dup () of their
    ZMQ_FD as raw file descriptors (the dup, because lws closes what it
    adopts). ZMQ_FD is edge-triggered, so each wake-up, each send and each
    timer tick drains the socket while ZMQ_EVENTS says POLLIN.

    Accept: every new connection passes pl_gate before lws adopts it (see
    pl_connection_accept.c). HTTP answers close their connection, so every
    request passes the gate. A request body not complete within
    http-body-timeout-s of its head is answered 408 (the wsi's timer).

    Writes: a session's frames wait in its outbound queue and are written
    only from LWS_CALLBACK_SERVER_WRITEABLE, one lws_write per callback. A
    closing session is closed once the queue is out, or after close-grace-s
    when the client does not read.
    =========================================================================
*/
#include "pl_connection_internal.h"
#include "pl_msg.h"
#include "pl_pending.h"
#include "pl_token.h"
#include "pl_log.h"
#include "pl_drain.h"
#include "pl_notify.h"
#include "pl_sockets.h"

#include <ev.h>
#include <jansson.h>
#include <assert.h>
#include <fcntl.h>
#if defined (__GLIBC__)
#   include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  Timer tick: safety-net drain, request deadlines, heart-beats. Limits
//  and timeouts an operator may tune are in pl_config.
#define TICK_MS             100
//  Largest WebSocket message we write; frames are never split
#define WS_CHUNK            (256 * 1024)

static int s_callback (struct lws *wsi, enum lws_callback_reasons reason,
                       void *user, void *in, size_t len);

//  One callback for every protocol: which one a WebSocket picked only tells
//  the STOMP version. A client that offers no subprotocol lands on [0].
//  lws binds a WebSocket to the first name of its Sec-WebSocket-Protocol
//  list that it finds here: the names that are not subprotocols hold a
//  space, which no name of such a list can (pl_gate lets none through).
//  Buffer sizes are set per actor (s_self_protocols).
static const struct lws_protocols s_protocols [] = {
    { "parley http", s_callback, sizeof (pss_t), 0, 0, NULL, 0 },
    { "v12.stomp",  s_callback, sizeof (pss_t), 0, 12, NULL, 0 },
    { "v11.stomp",  s_callback, sizeof (pss_t), 0, 11, NULL, 0 },
    { "v10.stomp",  s_callback, sizeof (pss_t), 0, 10, NULL, 0 },
    { "parley zmq", s_callback, 0, 0, 0, NULL, 0 },
    { "parley listen", s_callback, 0, 0, 0, NULL, 0 },
    { "parley not-http", s_callback, 0, 0, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void s_self_drain_dealer (self_t *self);


//  --------------------------------------------------------------------------
//  Talking to the router

//  Send and destroy; drain afterwards because a send can swallow the
//  edge of ZMQ_FD. Returns 0 / -1 (queue full or no router).
static int
s_self_send (self_t *self, pl_msg_t **msg_p)
{
    int rc = pl_msg_send (msg_p, self->dealer);
    if (rc)
        pl_log_warning ("cannot send to router (queue full?)");
    s_self_drain_dealer (self);
    return rc;
}

static void
s_self_send_hello (self_t *self)
{
    pl_msg_t *msg = pl_msg_new (PL_MSG_HELLO);
    if (!msg)
        return;
    pl_msg_set_role (msg, "conn");
    char name [128];
    snprintf (name, sizeof name, "%s/%s", self->config->host_id, self->name);
    pl_msg_set_actor_name (msg, name);
    s_self_send (self, &msg);
}

//  One message from the router, to the class that handles it (a
//  pl_drain_fn).
static void
s_self_handle_router (void *actor, pl_msg_t **msg_p)
{
    self_t *self = (self_t *) actor;
    pl_msg_t *msg = *msg_p;
    self->link.router_heard_ms = pl_mono_ms ();
    switch (pl_msg_command (msg)) {
        case PL_MSG_RESULT:
            pl_pending_answer (self->link.pending, msg);
            break;
        case PL_MSG_DELIVER:
            if (*pl_msg_room (msg) && pl_msg_created (msg) > 0)
                pl_histogram_observe (&self->delivery_latency,
                                      (double) (pl_clock_ms () - pl_msg_created (msg)));
            pl_sessions_deliver (self->sessions, msg);
            break;
        case PL_MSG_RESYNC:
            pl_log_info ("router asks for resync: %zu rooms", pl_sessions_rooms (self->sessions));
            s_self_send_hello (self);
            pl_sessions_resync (self->sessions);
            break;
        case PL_MSG_PING:
            self->link.router_readiness = pl_msg_readiness (msg);
            break;
        default:
            pl_log_debug ("unexpected %s from router dropped",
                          pl_msg_command_name (pl_msg_command (msg)));
            break;
    }
}

//  Read everything waiting: lws polls ZMQ_FD, which is edge-triggered, so
//  no budget here (a message left behind would wait for the next one).
//  Handlers may send, and every send drains: the flag keeps that from
//  recursing; this loop picks up what arrives.
static void
s_self_drain_dealer (self_t *self)
{
    if (self->draining || self->stopping)
        return;
    self->draining = true;
    pl_drain (self->dealer, 0, "router", s_self_handle_router, self);
    self->draining = false;
}


//  --------------------------------------------------------------------------
//  The link: what sessions and HTTP requests ask of this side

static void
s_link_want_write (void *arg, void *conn)
{
    (void) arg;
    //  An HTTP request that waited with reading held (s_http_handle_request)
    pss_t *pss = (pss_t *) lws_wsi_user ((struct lws *) conn);
    if (pss && pss->rx_held) {
        pss->rx_held = false;
        lws_rx_flow_control ((struct lws *) conn, 1);
    }
    lws_callback_on_writable ((struct lws *) conn);
}

static void
s_link_timeout (void *arg, void *conn, int seconds)
{
    (void) arg;
    lws_set_timeout ((struct lws *) conn, PENDING_TIMEOUT_USER_OK,
                     seconds == PL_LINK_CLOSE_NOW? LWS_TO_KILL_ASYNC: seconds);
}

static int
s_link_send (void *arg, pl_msg_t **msg_p)
{
    return s_self_send ((self_t *) arg, msg_p);
}

//  The host's figures, this actor's among them: every actor's status record
//  (at most a second old), so there is one source for them.
static char *
s_link_metrics (void *arg)
{
    self_t *self = (self_t *) arg;
    return self->host_metrics? pl_metrics_render (self->host_metrics): strdup ("");
}


//  --------------------------------------------------------------------------
//  Shutdown and the actor pipe

//  Graceful stop: no new connections (the kernel gives them to the other
//  actors on the port), every session finishes and is told to reconnect.
static void
s_self_begin_shutdown (self_t *self)
{
    self->shutting_down = true;
    int drain_ms = self->config->request_timeout_ms < self->config->drain_max_ms?
                   self->config->request_timeout_ms: self->config->drain_max_ms;
    self->shutdown_deadline = pl_mono_ms () + drain_ms;
    if (self->listen_wsi) {
        lws_set_timeout (self->listen_wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        self->listen_wsi = NULL;
    }
    pl_sessions_drain (self->sessions);
}

static void
s_self_handle_pipe (self_t *self)
{
    while (zsock_events (self->pipe) & ZMQ_POLLIN) {
        zmsg_t *request = zmsg_recv (self->pipe);
        if (!request)
            break;
        char *command = zmsg_popstr (request);
        if (command && streq (command, "$TERM")) {
            if (!self->shutting_down)
                s_self_begin_shutdown (self);
        }
        else
            pl_log_warning ("unknown pipe command '%s'", command? command: "");
        free (command);
        zmsg_destroy (&request);
    }
    if (self->terminated)
        ev_break (self->loop, EVBREAK_ALL);
}


//  --------------------------------------------------------------------------
//  Timer: safety-net drain, pings, request deadlines, heart-beats

//  The STOMP sessions' refusals, one figure per limit, for the status record
static json_t *
s_self_refusals (self_t *self)
{
    const pl_limits_refused_t *refused = pl_sessions_refused (self->sessions);
    return json_pack ("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "refused_nul", (json_int_t) refused->nul,
        "refused_typing_rate", (json_int_t) refused->typing_rate,
        "refused_send_rate", (json_int_t) refused->send_rate,
        "refused_connections", (json_int_t) refused->connections,
        "refused_connections_per_user", (json_int_t) refused->connections_per_user,
        "refused_in_flight", (json_int_t) refused->in_flight,
        "tokens_expired", (json_int_t) pl_sessions_counts (self->sessions)->tokens_expired);
}

//  HTTP refusals and the listening socket's troubles (issue 8)
static void
s_self_report_http (self_t *self, json_t *figures)
{
    if (!figures)
        return;
    json_object_set_new (figures, "http_refused_malformed",
                         json_integer ((json_int_t) self->http_guard.refused_malformed));
    json_object_set_new (figures, "http_refused_size",
                         json_integer ((json_int_t) self->http_guard.refused_size));
    json_object_set_new (figures, "http_refused_timeout",
                         json_integer ((json_int_t) self->http_guard.refused_timeout));
    json_object_set_new (figures, "http_rate_limited",
                         json_integer ((json_int_t) self->http_guard.rate_limited));
    json_object_set_new (figures, "accept_pauses", json_integer ((json_int_t) self->accept_pauses));
    json_object_set_new (figures, "accept_shed", json_integer ((json_int_t) self->accept_shed));
    //  Once a second is often enough to forget the buckets that refilled
    pl_http_guard_prune (&self->http_guard);
}

//  This actor's status record for operators, once a second
static void
s_self_report (self_t *self)
{
    const pl_sessions_counts_t *counts = pl_sessions_counts (self->sessions);
    json_t *figures = json_pack (
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
        "sessions", (json_int_t) pl_sessions_size (self->sessions),
        "sessions_total", (json_int_t) counts->sessions_total,
        "subscriptions", (json_int_t) pl_sessions_subscriptions (self->sessions),
        "rooms", (json_int_t) pl_sessions_rooms (self->sessions),
        "requests_pending", (json_int_t) pl_pending_size (self->link.pending),
        "frames_in", (json_int_t) counts->frames_in,
        "frames_out", (json_int_t) counts->frames_out,
        "sends", (json_int_t) counts->sends,
        "deliveries", (json_int_t) counts->deliveries,
        "errors", (json_int_t) counts->errors,
        "slow_consumers", (json_int_t) counts->slow_consumers,
        "http_requests", (json_int_t) self->http_requests,
        "delivery_latency_ms", pl_histogram_json (&self->delivery_latency));
    if (figures) {
        json_object_update_new (figures, s_self_refusals (self));
        json_object_set_new (figures, "reads", json_integer ((json_int_t) counts->reads));
        json_object_set_new (figures, "event_errors", json_integer ((json_int_t) counts->event_errors));
        json_object_set_new (figures, "typing", json_integer ((json_int_t) counts->typing));
        json_object_set_new (figures, "subscriptions_ended",
                             json_integer ((json_int_t) counts->subscriptions_ended));
    }
    s_self_report_http (self, figures);
    pl_monitor_report (self->monitor, figures);
}

//  While draining: tell everyone to go once the deadline passed, stop once
//  every session is gone (or would not go). Returns true to stop now.
static bool
s_self_drained (self_t *self, int64_t now)
{
    if (now >= self->shutdown_deadline && !self->shutdown_forced) {
        //  Answers that did not come in time: tell everyone to go anyway
        self->shutdown_forced = true;
        pl_sessions_drain_now (self->sessions);
    }
    return pl_sessions_size (self->sessions) == 0
        || now >= self->shutdown_deadline + self->config->close_grace_s * 1000;
}

static void
s_self_handle_tick (lws_sorted_usec_list_t *sul)
{
    self_t *self = lws_container_of (sul, self_t, tick);
    s_self_handle_pipe (self);
    s_self_drain_dealer (self);
    int64_t now = pl_mono_ms ();
    pl_notify_watchdog ();
    if (self->link.router_readiness == (PL_READY_STORE | PL_READY_BRIDGE)
    &&  now - self->link.router_heard_ms <= self->config->peer_timeout_ms)
        pl_notify_ready ("listening; router, persistence and bridge reachable");
    if (pl_every_due (&self->status, now))
        s_self_report (self);
    if (pl_every_due (&self->heap_trim, now)) {
        pl_sessions_trim (self->sessions);
        pl_heap_trim ();
    }
    if (self->host_metrics)
        pl_metrics_poll (self->host_metrics);
    if (self->shutting_down && s_self_drained (self, now)) {
        self->terminated = true;
        ev_break (self->loop, EVBREAK_ALL);
        return;
    }
    if (pl_every_due (&self->ping, now)) {
        pl_msg_t *ping = pl_msg_new (PL_MSG_PING);
        if (ping)
            s_self_send (self, &ping);
    }
    pl_pending_expire (self->link.pending, now);
    pl_sessions_tick (self->sessions, now);
    lws_sul_schedule (self->context, 0, &self->tick, s_self_handle_tick, TICK_MS * LWS_US_PER_MS);
}


//  --------------------------------------------------------------------------
//  Writes

//  A write buffer with LWS_PRE bytes in front, as lws_write wants; returns
//  where the payload goes, or NULL when out of memory. The gate peeks into
//  it too (pl_connection_accept.c).
unsigned char *
pl_connection_scratch (self_t *self, size_t size)
{
    if (self->scratch_size < LWS_PRE + size) {
        unsigned char *scratch = (unsigned char *) realloc (self->scratch, LWS_PRE + size);
        if (!scratch)
            return NULL;
        self->scratch = scratch;
        self->scratch_size = LWS_PRE + size;
    }
    return self->scratch + LWS_PRE;
}

//  One lws_write per WRITEABLE callback. Returns -1 to close.
static int
s_session_handle_writeable (self_t *self, struct lws *wsi, pss_t *pss)
{
    pl_session_t *session = pss->session;
    size_t pending;
    const char *head = pl_session_outbound (session, &pending);
    if (head) {
        size_t size = pending;
        //  Big queues go out in several messages, cut after a frame's NUL
        if (size > WS_CHUNK) {
            const char *cut = (const char *) memrchr (head, 0, WS_CHUNK);
            if (!cut)
                cut = (const char *) memchr (head + WS_CHUNK, 0, pending - WS_CHUNK);
            if (cut)
                size = (size_t) (cut - head) + 1;
        }
        unsigned char *start = pl_connection_scratch (self, size);
        if (!start)
            return -1;
        memcpy (start, head, size);
        int written = lws_write (wsi, start, size, LWS_WRITE_TEXT);
        if (written < (int) size)
            return -1;
        pl_session_sent (session, size);
        //  Close only from a later callback: lws calls it once what it may
        //  have buffered of this write is on the wire, so the last frame
        //  (an ERROR) is not cut off by the close
        if (pl_session_outbound (session, &pending) || pl_session_closing (session))
            lws_callback_on_writable (wsi);
        return 0;
    }
    if (pl_session_closing (session) && !pss->lingering) {
        //  Closing now, while the client still sends, would reset the TCP
        //  connection and could take our last frame with it: keep reading
        //  (and ignoring) a moment so the client sees its ERROR or RECEIPT;
        //  a client that closes first ends it sooner
        pss->lingering = true;
        lws_set_timeout (wsi, PENDING_TIMEOUT_USER_OK, self->config->linger_s);
    }
    return 0;
}

static int
s_http_add_header (struct lws *wsi, const char *name, const char *value,
                   unsigned char **p, unsigned char *end)
{
    return lws_add_http_header_by_name (wsi, (const unsigned char *) name,
                                        (const unsigned char *) value, (int) strlen (value), p, end);
}

//  The answer's status line and headers, in one write. Returns 0 / -1.
static int
s_http_write_headers (self_t *self, struct lws *wsi, const pl_http_response_t *response)
{
    size_t size = (size_t) self->config->http_headers_max;
    unsigned char *start = pl_connection_scratch (self, size);
    if (!start)
        return -1;
    unsigned char *p = start, *end = start + size;
    if (lws_add_http_common_headers (wsi, (unsigned int) response->status, response->content_type,
                                     (lws_filepos_t) response->size, &p, end)
    ||  s_http_add_header (wsi, "access-control-allow-origin:", "*", &p, end))
        return -1;
    if (response->preflight
    &&  (s_http_add_header (wsi, "access-control-allow-methods:", "GET, POST, DELETE, OPTIONS", &p, end)
    ||   s_http_add_header (wsi, "access-control-allow-headers:", "authorization, content-type", &p, end)
    ||   s_http_add_header (wsi, "access-control-max-age:", "600", &p, end)))
        return -1;
    //  Every answer closes its connection: the next request comes on a new
    //  one, through pl_gate (see pl_connection_accept.c)
    if (s_http_add_header (wsi, "connection:", "close", &p, end))
        return -1;
    char seconds [16];
    snprintf (seconds, sizeof seconds, "%d", response->retry_after);
    if (response->retry_after && s_http_add_header (wsi, "retry-after:", seconds, &p, end))
        return -1;
    if (lws_finalize_http_header (wsi, &p, end))
        return -1;
    if (lws_write (wsi, start, (size_t) (p - start), LWS_WRITE_HTTP_HEADERS) != (int) (p - start))
        return -1;
    return 0;
}

//  Headers in one write, the body in the next. Returns -1 to close.
static int
s_http_handle_writeable (self_t *self, struct lws *wsi, pss_t *pss)
{
    const pl_http_response_t *response = pss->http? pl_http_response (pss->http): NULL;
    if (!response)
        return 0;
    if (!pss->headers_sent) {
        if (s_http_write_headers (self, wsi, response))
            return -1;
        pss->headers_sent = true;
        if (response->size) {
            lws_callback_on_writable (wsi);
            return 0;
        }
    }
    else
    if (response->size) {
        unsigned char *start = pl_connection_scratch (self, response->size);
        if (!start)
            return -1;
        memcpy (start, response->body, response->size);
        if (lws_write (wsi, start, response->size, LWS_WRITE_HTTP_FINAL) != (int) response->size)
            return -1;
    }
    //  lws sends what it still holds of the answer before it closes
    pl_http_destroy (&pss->http);
    return -1;
}


//  --------------------------------------------------------------------------
//  HTTP requests: what lws parsed, copied for pl_http

//  Copy one header, or NULL when absent.
static char *
s_header_copy (struct lws *wsi, enum lws_token_indexes token)
{
    int length = lws_hdr_total_length (wsi, token);
    if (length <= 0)
        return NULL;
    char *value = (char *) malloc ((size_t) length + 1);
    if (value && lws_hdr_copy (wsi, value, length + 1, token) < 0) {
        free (value);
        value = NULL;
    }
    return value;
}

//  The query string: lws splits it at '&' into urldecoded name=value
//  fragments. They are joined again with '&'; bytes that would change
//  what the join means ('&', '%') or that no parameter holds (controls, a
//  decoded %00, non-ASCII) go back to %XX, so pl_api refuses them instead
//  of misreading them. Every fragment is read, whatever its length.
static char *
s_query_copy (struct lws *wsi)
{
    pl_buf_t query;
    pl_buf_init (&query);
    int rc = 0;
    for (int index = 0; rc == 0; index++) {
        int length = lws_hdr_fragment_length (wsi, WSI_TOKEN_HTTP_URI_ARGS, index);
        if (length <= 0)
            break;
        char *fragment = (char *) malloc ((size_t) length + 1);
        if (!fragment
        ||  lws_hdr_copy_fragment (wsi, fragment, length + 1, WSI_TOKEN_HTTP_URI_ARGS, index) < 0)
            rc = -1;
        if (index && rc == 0)
            rc = pl_buf_append (&query, "&", 1);
        for (int at = 0; at < length && rc == 0; at++) {
            unsigned char byte = (unsigned char) fragment [at];
            if (byte < 0x21 || byte > 0x7e || byte == '&' || byte == '%')
                rc = pl_buf_printf (&query, "%%%02X", byte);
            else
                rc = pl_buf_append (&query, fragment + at, 1);
        }
        free (fragment);
    }
    char *text = rc? NULL: strndup (pl_buf_head (&query), pl_buf_pending (&query));
    pl_buf_free (&query);
    return text;
}

static int
s_http_handle_request (self_t *self, struct lws *wsi, pss_t *pss)
{
    self->http_requests++;
    pl_http_destroy (&pss->http);
    pss->headers_sent = false;
    pss->http = pl_http_new (&self->link, &self->http_guard, wsi);
    if (!pss->http)
        return -1;
    char *uri = NULL;
    int uri_length = 0;
    int method = lws_http_get_uri_and_method (wsi, &uri, &uri_length);
    //  In the order of lws's LWSHUMETH_*
    static const char *names [] = {
        "GET", "POST", "OPTIONS", "PUT", "PATCH", "DELETE", "CONNECT", "HEAD"
    };
    bool has_uri = uri && uri_length > 0;
    char address [64] = "";
    lws_get_peer_simple (wsi, address, sizeof address);
    pl_http_head_t head = {
        .address = address,
        .method = method >= 0 && method < 8? names [method]: "OTHER",
        .path = has_uri? uri: "/",
        .path_size = has_uri? (size_t) uri_length: 1,
        .query = s_query_copy (wsi),
        .authorization = s_header_copy (wsi, WSI_TOKEN_HTTP_AUTHORIZATION),
        .content_length = s_header_copy (wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH),
        .transfer_encoding = s_header_copy (wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING)
    };
    int rc = head.query? pl_http_request (pss->http, &head): -1;
    //  A body to come: answered 408 if it is not complete in time (lws
    //  itself would close without a word, see s_self_start_lws). The time
    //  counts from the head, not from the last byte.
    if (rc == 0 && pl_http_waits_body (pss->http))
        lws_set_timer_usecs (wsi, (lws_usec_t) self->config->http_body_timeout_s * LWS_US_PER_SEC);
    else
    if (rc == 0 && !pl_http_response (pss->http)) {
        //  Waiting for the router, nothing more to read: a pipelined
        //  request behind this one would keep lws polling its buffer (a
        //  busy loop) until the answer; it is never served anyway, every
        //  answer closes. Reading resumes with the answer (s_link_want_write).
        pss->rx_held = true;
        lws_rx_flow_control (wsi, 0);
    }
    free ((char *) head.query);
    if (head.authorization) {
        //  Do not leave bearer tokens lying in freed memory
        memset ((char *) head.authorization, 0, strlen (head.authorization));
        free ((char *) head.authorization);
    }
    free ((char *) head.content_length);
    free ((char *) head.transfer_encoding);
    return rc;
}


//  The answer to bytes lws's HTTP parser could not take: lws hands the
//  connection over as a raw socket (FALLBACK_TO_APPLY_LISTEN_ACCEPT_CONFIG)
//  instead of writing its own HTML 403. Returns -1: close once written.
static int
s_not_http_handle_writeable (self_t *self, struct lws *wsi)
{
    static const char body [] =
        "{\"error\":\"method not implemented, or not an HTTP/1.1 request\"}";
    char response [512];
    int size = snprintf (response, sizeof response,
        "HTTP/1.1 501 Not Implemented\r\ncontent-type: application/json\r\n"
        "content-length: %zu\r\naccess-control-allow-origin: *\r\nconnection: close\r\n\r\n%s",
        sizeof body - 1, body);
    unsigned char *start = pl_connection_scratch (self, (size_t) size);
    if (start) {
        memcpy (start, response, (size_t) size);
        if (lws_write (wsi, start, (size_t) size, LWS_WRITE_RAW) < size)
            return -1;
    }
    return -1;
}


//  --------------------------------------------------------------------------
//  The one lws callback

//  WebSocket and HTTP reasons: the session or request of this connection
static int
s_callback_session (self_t *self, struct lws *wsi, enum lws_callback_reasons reason,
                    pss_t *pss, void *in, size_t len)
{
    switch (reason) {
        //  WebSocket
        case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
            char uri [16];
            if (lws_hdr_total_length (wsi, WSI_TOKEN_GET_URI) != 3
            ||  lws_hdr_copy (wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) < 0
            ||  !streq (uri, "/ws"))
                return 1;       //  WebSocket only on /ws
            return 0;
        }
        case LWS_CALLBACK_ESTABLISHED: {
            if (!pss)
                return -1;
            const struct lws_protocols *protocol = lws_get_protocol (wsi);
            pss->session = pl_session_new (self->sessions, wsi, protocol? (int) protocol->id: 0);
            return pss->session? 0: -1;
        }
        case LWS_CALLBACK_RECEIVE:
            if (pss && pss->session)
                pl_session_input (pss->session, (const char *) in, len);
            return 0;
        case LWS_CALLBACK_SERVER_WRITEABLE:
            if (pss && pss->session)
                return s_session_handle_writeable (self, wsi, pss);
            return 0;
        case LWS_CALLBACK_CLOSED:
            if (pss)
                pl_session_destroy (&pss->session);
            return 0;

        //  HTTP
        case LWS_CALLBACK_HTTP:
            if (!pss)
                return -1;
            return s_http_handle_request (self, wsi, pss);
        case LWS_CALLBACK_HTTP_BODY:
            if (pss && pss->http)
                return pl_http_body (pss->http, (const char *) in, len);
            return 0;
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
            lws_set_timer_usecs (wsi, LWS_SET_TIMER_USEC_CANCEL);
            if (pss && pss->http)
                pl_http_body_end (pss->http);
            return 0;
        case LWS_CALLBACK_HTTP_WRITEABLE:
            if (pss)
                return s_http_handle_writeable (self, wsi, pss);
            return 0;
        case LWS_CALLBACK_CLOSED_HTTP:
        case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
            if (pss)
                pl_http_destroy (&pss->http);
            return 0;
        default:
            return 0;
    }
}

static int
s_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct lws_context *context = lws_get_context (wsi);
    self_t *self = context? (self_t *) lws_context_user (context): NULL;
    pss_t *pss = (pss_t *) user;
    if (!self)
        return 0;

    switch (reason) {
        //  ZeroMQ sockets in the loop
        case LWS_CALLBACK_RAW_RX_FILE:
            if (wsi == self->listen_wsi)
                pl_connection_accept (self);
            else {
                s_self_handle_pipe (self);
                s_self_drain_dealer (self);
            }
            return 0;
        //  An HTTP request's http-body-timeout-s (408 while the body has
        //  not come)
        case LWS_CALLBACK_TIMER:
            if (pss && pss->http)
                pl_http_body_expire (pss->http, self->config->http_body_timeout_s);
            return 0;
        //  What lws's HTTP parser gave up on (an unknown method, an
        //  HTTP/2 preface, no HTTP at all): answered in JSON, then closed
        case LWS_CALLBACK_RAW_ADOPT:
            self->http_guard.refused_malformed++;
            return 0;
        case LWS_CALLBACK_RAW_RX:
            lws_callback_on_writable (wsi);
            return 0;
        case LWS_CALLBACK_RAW_WRITEABLE:
            return s_not_http_handle_writeable (self, wsi);
        case LWS_CALLBACK_RAW_CLOSE_FILE:
        case LWS_CALLBACK_RAW_ADOPT_FILE:
            return 0;
        //  A file of the web chat
        case LWS_CALLBACK_ADD_HEADERS:
        case LWS_CALLBACK_HTTP_FILE_COMPLETION:
            return pl_web_callback (wsi, reason, in);

        default:
            return s_callback_session (self, wsi, reason, pss, in, len);
    }
}


//  --------------------------------------------------------------------------
//  Sockets into the lws loop

//  lws's own log, errors and warnings only
static void
s_lws_log (int level, const char *line)
{
    size_t length = strlen (line);
    while (length && (line [length - 1] == '\n' || line [length - 1] == '\r'))
        length--;
    if (level & LLL_ERR)
        pl_log_error ("lws: %.*s", (int) length, line);
    else
        pl_log_warning ("lws: %.*s", (int) length, line);
}

//  Put a ZeroMQ socket's ZMQ_FD in the lws loop (a dup: lws closes it).
static int
s_self_adopt (self_t *self, zsock_t *socket)
{
    int fd = dup (zsock_fd (socket));
    if (fd < 0)
        return -1;
    lws_sock_file_fd_type descriptor;
    descriptor.filefd = fd;
    if (!lws_adopt_descriptor_vhost (self->vhost, LWS_ADOPT_RAW_FILE_DESC, descriptor,
                                     "parley zmq", NULL))
        return -1;              //  lws has closed fd
    return 0;
}


//  --------------------------------------------------------------------------
//  Actor state

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    if (self->context) {
        lws_sul_cancel (&self->tick);
        lws_sul_cancel (&self->accept_resume);
        self->stopping = true;
        //  Closes every connection: sessions send their LEAVEs meanwhile
        lws_context_destroy (self->context);
        self->context = NULL;
    }
    pl_connection_gates_close (self);
    if (self->loop)
        ev_loop_destroy (self->loop);
    pl_sessions_destroy (&self->sessions);
    pl_pending_destroy (&self->link.pending);
    pl_token_verifier_destroy (&self->link.verifier);
    zsock_destroy (&self->dealer);
    pl_monitor_destroy (&self->monitor);
    pl_metrics_destroy (&self->host_metrics);
    pl_http_guard_free (&self->http_guard);
    if (self->spare_fd >= 0)
        close (self->spare_fd);
    free (self->scratch);
    pl_web_destroy (&self->web);
    free (self);
    *self_p = NULL;
}

//  A vhost for the sockets we adopt: no listening of its own, our
//  protocols, mounts or NULL. Returns NULL when lws cannot make it.
static struct lws_vhost *
s_self_vhost (self_t *self, const char *name, const struct lws_http_mount *mounts)
{
    struct lws_context_creation_info info;
    memset (&info, 0, sizeof info);
    //  lws 4.1 moves a request whose Host names no vhost to the first vhost
    //  of its vhost's port: each vhost a "port" of its own keeps it where
    //  the actor put it
    info.port = mounts? CONTEXT_PORT_NO_LISTEN: CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = self->protocols;
    info.vhost_name = name;
    info.mounts = mounts;
    info.options = LWS_SERVER_OPTION_ALLOW_LISTEN_SHARE
                 | LWS_SERVER_OPTION_FALLBACK_TO_APPLY_LISTEN_ACCEPT_CONFIG;
    //  Where lws's HTTP parser gives up, the connection becomes raw and
    //  ours to answer in JSON (else lws writes an HTML 403)
    info.listen_accept_role = "raw-skt";
    info.listen_accept_protocol = "parley not-http";
    //  lws's own header-buffer idle timeout, a second line only: heads reach
    //  lws whole, and the gate answers 408 to one that does not come
    info.timeout_secs_ah_idle = (unsigned int) self->config->http_head_timeout_s;
    return lws_create_vhost (self->context, &info);
}

//  s_protocols with the sizes of our writes and of a WebSocket's receive
//  buffer. Without tx_packet_size lws sends at most 4 KiB a send () and
//  copies the rest aside, to go out 4 KiB a writable callback; the receive
//  buffer stays with each WebSocket for its life, 4 KiB unless told.
static void
s_self_protocols (self_t *self)
{
    assert (sizeof self->protocols >= sizeof s_protocols);
    memcpy (self->protocols, s_protocols, sizeof s_protocols);
    for (struct lws_protocols *protocol = self->protocols; protocol->name; protocol++) {
        protocol->tx_packet_size = WS_CHUNK;
        if (protocol->per_session_data_size)    //  those a WebSocket takes
            protocol->rx_buffer_size = (size_t) self->config->ws_rx_buffer_bytes;
    }
}

//  lws gives each connection a header table of max_http_header_data2 bytes
//  (below) until its upgrade or answer: a storm of 1,000 connects holds
//  1,000 of them at once, 94 MiB. Below glibc's mmap threshold they come
//  from the heap, which keeps that peak resident for good, 14 KiB a session
//  (bin/parley bench --idle). Blocks of that size and up get a mapping of
//  their own instead, returned to the kernel when freed; a table's pages
//  that the head never touched are never resident. Process-wide, and the
//  same for every connection actor of a process.
static void
s_self_map_header_tables (size_t header_table_bytes)
{
#if defined (__GLIBC__)
    if (mallopt (M_MMAP_THRESHOLD, (int) header_table_bytes) != 1)
        pl_log_warning ("cannot set malloc's mmap threshold");
#else
    (void) header_table_bytes;
#endif
}

//  The lws context, its vhosts, our listening socket, the pipe and the
//  DEALER in its loop, and the first timer tick. Returns 0 / -1.
static int
s_self_start_lws (self_t *self)
{
    lws_set_log_level (LLL_ERR | LLL_WARN, s_lws_log);
    struct lws_context_creation_info info;
    memset (&info, 0, sizeof info);
    //  epoll, whatever LIBEV_FLAGS says: libev's select and poll backends
    //  would scan every descriptor again
    self->loop = ev_loop_new (EVBACKEND_EPOLL | EVFLAG_NOENV);
    if (!self->loop) {
        pl_log_error ("cannot create the libev loop");
        return -1;
    }
    void *foreign_loops [1] = { self->loop };
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_LIBEV;
    info.foreign_loops = foreign_loops;
    info.user = self;
    info.gid = -1;
    info.uid = -1;
    //  pl_gate passes heads up to http-request-bytes; lws keeps each header
    //  it does not know with 8 bytes more than it came with, so a head of
    //  tiny headers takes up to 3 times its size here
    info.max_http_header_data = 0;
    info.max_http_header_data2 = 3 * (unsigned int) self->config->http_request_bytes;
    s_self_map_header_tables (info.max_http_header_data2);
    s_self_protocols (self);
    //  lws 4.1 gives a request body this long (the context's, 5 s unless
    //  set) from the head, and again from each piece of it, then closes
    //  without a word: a second line only, after http-body-timeout-s, whose
    //  timer answers 408 (s_http_handle_request)
    info.timeout_secs = (unsigned int) self->config->http_body_timeout_s + 2;
    self->context = lws_create_context (&info);
    if (!self->context) {
        pl_log_error ("cannot create the libwebsockets context");
        return -1;
    }
    //  The vhost serves the sockets we accept (see pl_connection_listen); the
    //  files vhost, when there is a web-root, the web chat's files
    self->vhost = s_self_vhost (self, self->name, NULL);
    const struct lws_http_mount *mounts = pl_web_mounts (self->web);
    if (mounts) {
        char name [sizeof self->name + 8];
        snprintf (name, sizeof name, "%s-web", self->name);
        self->files_vhost = s_self_vhost (self, name, mounts);
    }
    if (!self->vhost || (mounts && !self->files_vhost)) {
        pl_log_error ("cannot create the libwebsockets vhosts");
        return -1;
    }
    self->listen_fd = pl_connection_listen (self->config);
    if (self->listen_fd < 0)
        return -1;
    lws_sock_file_fd_type descriptor;
    descriptor.filefd = self->listen_fd;
    self->listen_wsi = lws_adopt_descriptor_vhost (self->vhost, LWS_ADOPT_RAW_FILE_DESC,
                                                   descriptor, "parley listen", NULL);
    if (!self->listen_wsi
    ||  s_self_adopt (self, self->pipe) || s_self_adopt (self, self->dealer)) {
        pl_log_error ("cannot put sockets into the lws loop");
        return -1;
    }
    lws_sul_schedule (self->context, 0, &self->tick, s_self_handle_tick, TICK_MS * LWS_US_PER_MS);
    return 0;
}

static self_t *
s_self_new (zsock_t *pipe, const pl_config_t *config)
{
    self_t *self = (self_t *) calloc (1, sizeof (self_t));
    if (!self)
        return NULL;
    self->pipe = pipe;
    self->config = config;
    self->spare_fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);
    snprintf (self->name, sizeof self->name, "conn-%d", config->instance);
    self->link = (pl_link_t) {
        .config = config, .name = self->name, .arg = self,
        .want_write = s_link_want_write, .timeout = s_link_timeout,
        .send = s_link_send, .metrics = s_link_metrics
    };
    self->link.pending = pl_pending_new (config->request_timeout_ms);
    self->sessions = pl_sessions_new (&self->link);
    if (!self->link.pending || !self->sessions
    ||  pl_http_guard_init (&self->http_guard, config)) {
        s_self_destroy (&self);
        return NULL;
    }
    self->link.verifier = pl_token_verifier_new (config->jwt_secret, config->jwt_public_key);
    self->web = pl_web_new (config, s_protocols [0].name);
    if (!self->web) {
        s_self_destroy (&self);
        return NULL;
    }
    if (config->dev_mode && !*config->jwt_secret) {
        pl_log_error ("dev-mode signs tokens with jwt-secret: set it");
        s_self_destroy (&self);
        return NULL;
    }
    if (self->link.verifier)
        pl_token_verifier_set_leeway (self->link.verifier, config->jwt_leeway_s);
    if (!self->link.verifier) {
        pl_log_error ("no usable token key: set --jwt-secret or --jwt-public-key");
        s_self_destroy (&self);
        return NULL;
    }
    self->monitor = pl_monitor_new (config, "conn", config->instance);
    pl_every_init (&self->ping, config->peer_heartbeat_ms);
    pl_every_init (&self->status, config->status_interval_ms);
    pl_every_init (&self->heap_trim, config->heap_trim_interval_ms);
    self->host_metrics = pl_metrics_new (config->runtime_dir, config->peer_timeout_ms);
    self->dealer = pl_dealer_socket_new (self->name, config->router_endpoint, config->socket_hwm);
    if (self->monitor)
        pl_monitor_watch (self->monitor, self->dealer, "router");
    zsock_set_linger (self->dealer, 0);
    //  Never block the service thread: a full queue fails the request
    zsock_set_sndtimeo (self->dealer, 0);
    if (s_self_start_lws (self))
        s_self_destroy (&self);
    return self;
}


//  --------------------------------------------------------------------------
//  The actor

void
pl_connection_actor (zsock_t *pipe, void *args)
{
    const pl_config_t *config = (const pl_config_t *) args;
    assert (config);
    char name [32];
    snprintf (name, sizeof name, "conn-%d", config->instance);
    pl_log_set_actor (name);
    self_t *self = s_self_new (pipe, config);
    if (!self) {
        zsock_signal (pipe, 1);
        return;
    }
    s_self_send_hello (self);
    pl_log_info ("listening on %s:%d (ws://%s:%d/ws), router %s",
                 config->listen_addr, config->port, config->listen_addr, config->port,
                 config->router_endpoint);
    zsock_signal (pipe, 0);
    //  $TERM may have arrived before the pipe was in the loop
    s_self_handle_pipe (self);
    //  Until $TERM's work is done (ev_break), or nothing is left to watch
    while (!self->terminated)
        if (!ev_run (self->loop, 0))
            break;
    pl_log_info ("stopping");
    s_self_destroy (&self);
    pl_token_thread_end ();
}
