/*  =========================================================================
    pl_loadconn - one client connection of parley-load
    =========================================================================
*/
#include "pl_loadconn.h"
#include "pl_loadstomp.h"
#include "pl_wsclient.h"
#include "pl_token.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

//  What stompjs offers by default, best first
#define S_PROTOCOLS "v12.stomp, v11.stomp, v10.stomp"

static const char *s_state_names [] = {
    "idle", "TCP connect", "WebSocket handshake", "CONNECT", "SUBSCRIBE", "ready",
    "DISCONNECT", "close", "closed", "failed"
};

void
pl_loadconn_init (pl_load_conn_t *self, pl_load_thread_t *thread, int index,
                  int32_t *highest, uint64_t *seen)
{
    memset (self, 0, sizeof *self);
    self->thread = thread;
    self->index = index;
    self->fd = -1;
    self->state = PL_LOADCONN_IDLE;
    self->highest = highest;
    self->seen = seen;
    for (int slot = 0; slot < thread->config->room; slot++)
        highest [slot] = -1;
    pl_wsreader_init (&self->reader, PL_LOAD_MAX_FRAME);
}

void
pl_loadconn_free (pl_load_conn_t *self)
{
    if (self->fd >= 0) {
        close (self->fd);
        self->fd = -1;
    }
    pl_buf_free (&self->in);
    pl_buf_free (&self->stomp);
    pl_buf_free (&self->out);
}

bool
pl_loadconn_live (const pl_load_conn_t *self)
{
    return self->fd >= 0;
}

//  Close the socket (epoll forgets it with it) and end in state.
static void
s_conn_close (pl_load_conn_t *self, pl_loadconn_state_t state)
{
    if (self->fd >= 0) {
        close (self->fd);
        self->fd = -1;
        self->thread->live--;
    }
    self->state = state;
}

//  Count the connection as settled: subscribed, or failed before that.
//  The last one of the run to settle lifts the barrier.
static void
s_conn_settle (pl_load_conn_t *self, bool subscribed, int64_t now)
{
    pl_load_thread_t *thread = self->thread;
    pl_load_run_t *run = thread->run;
    thread->settled++;
    thread->opening--;
    if (subscribed) {
        pl_loadstats_record (&thread->figures.connect, now - self->started_ns);
        atomic_fetch_add (&run->subscribed, 1);
        if (thread->config->msgs > 0)
            thread->incomplete++;
    }
    if (atomic_fetch_add (&run->settled, 1) + 1 == thread->config->conns) {
        long long none = 0;
        atomic_compare_exchange_strong (&run->settled_ns, &none, now);
    }
}

//  Leaving READY: the thread stops waiting for what this one misses
static void
s_conn_leave_ready (pl_load_conn_t *self)
{
    const pl_load_config_t *config = self->thread->config;
    if (config->msgs > 0 && self->delivered < (uint64_t) config->room * (uint64_t) config->msgs)
        self->thread->incomplete--;
    self->thread->unreceipted -= self->unreceipted;
    self->unreceipted = 0;
}

//  The connection ends by an error: say why, once, and settle it.
static void
s_conn_fail (pl_load_conn_t *self, const char *format, ...)
{
    if (self->state >= PL_LOADCONN_CLOSED)
        return;
    char reason [512];
    va_list args;
    va_start (args, format);
    vsnprintf (reason, sizeof reason, format, args);
    va_end (args);
    pl_load_error (self->thread->run, "conn %d (%s): %s", self->index,
                   s_state_names [self->state], reason);
    if (self->state < PL_LOADCONN_READY)
        s_conn_settle (self, false, pl_load_now ());
    else
    if (self->state == PL_LOADCONN_READY)
        s_conn_leave_ready (self);
    s_conn_close (self, PL_LOADCONN_FAILED);
}

//  Watch for writability only while bytes wait (or the connect does)
static void
s_conn_watch (pl_load_conn_t *self)
{
    uint32_t events = EPOLLIN;
    if (pl_buf_pending (&self->out) || self->state == PL_LOADCONN_TCP)
        events |= EPOLLOUT;
    if (events == self->events || self->fd < 0)
        return;
    struct epoll_event event = { .events = events, .data.ptr = self };
    if (epoll_ctl (self->thread->epoll, EPOLL_CTL_MOD, self->fd, &event))
        s_conn_fail (self, "epoll_ctl: %s", strerror (errno));
    else
        self->events = events;
}

//  Write what the socket takes now; the rest waits for EPOLLOUT.
static void
s_conn_flush (pl_load_conn_t *self)
{
    while (pl_buf_pending (&self->out) && self->fd >= 0) {
        ssize_t written = send (self->fd, pl_buf_head (&self->out), pl_buf_pending (&self->out),
                                MSG_NOSIGNAL);
        if (written > 0)
            pl_buf_consume (&self->out, (size_t) written);
        else
        if (written < 0 && errno == EINTR)
            continue;
        else
        if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        else {
            s_conn_fail (self, "send: %s", strerror (errno));
            return;
        }
    }
    s_conn_watch (self);
}

//  Queue one WebSocket frame (masked, FIN) and write it.
static void
s_conn_ws_send (pl_load_conn_t *self, int opcode, const void *payload, size_t size)
{
    uint32_t mask = (uint32_t) pl_load_random (&self->thread->rng);
    if (pl_wsclient_frame (&self->out, opcode, payload, size, mask)) {
        s_conn_fail (self, "out of memory");
        return;
    }
    self->last_out_ns = pl_load_now ();
    s_conn_flush (self);
}

//  One STOMP frame as one WebSocket text message, as stompjs sends it
static void
s_conn_stomp_send (pl_load_conn_t *self, const char *command, const char *headers [],
                   const char *body, size_t body_size)
{
    pl_buf_t *frame = &self->thread->frame;
    pl_buf_reset (frame);
    if (pl_loadstomp_write (frame, command, headers, body, body_size, self->escape)) {
        s_conn_fail (self, "out of memory");
        return;
    }
    s_conn_ws_send (self, PL_WSFRAME_TEXT, pl_buf_head (frame), pl_buf_pending (frame));
}

void
pl_loadconn_open (pl_load_conn_t *self, int64_t now)
{
    pl_load_thread_t *thread = self->thread;
    const pl_load_config_t *config = thread->config;
    thread->opened++;
    thread->opening++;
    self->started_ns = now;
    self->deadline_ns = now + (int64_t) config->connect_timeout_ms * 1000000;
    self->state = PL_LOADCONN_TCP;
    self->fd = socket (config->address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (self->fd < 0) {
        s_conn_fail (self, "socket: %s", strerror (errno));
        return;
    }
    thread->live++;
    //  Small frames go out at once, as browsers send them
    int one = 1;
    setsockopt (self->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    //  This connection's host of the service (--url lists one or more)
    struct sockaddr_storage address = config->address;
    uint16_t port = htons ((uint16_t) config->ports [self->index % config->port_count]);
    if (address.ss_family == AF_INET6)
        ((struct sockaddr_in6 *) &address)->sin6_port = port;
    else
        ((struct sockaddr_in *) &address)->sin_port = port;
    if (connect (self->fd, (struct sockaddr *) &address, config->address_size)
    &&  errno != EINPROGRESS) {
        s_conn_fail (self, "connect: %s", strerror (errno));
        return;
    }
    struct epoll_event event = { .events = EPOLLIN | EPOLLOUT, .data.ptr = self };
    if (epoll_ctl (thread->epoll, EPOLL_CTL_ADD, self->fd, &event)) {
        s_conn_fail (self, "epoll_ctl: %s", strerror (errno));
        return;
    }
    self->events = event.events;
}

//  The TCP connect finished: send the opening handshake.
static void
s_conn_connected_tcp (pl_load_conn_t *self)
{
    int error = 0;
    socklen_t size = sizeof error;
    if (getsockopt (self->fd, SOL_SOCKET, SO_ERROR, &error, &size) || error) {
        s_conn_fail (self, "connect: %s", strerror (error? error: errno));
        return;
    }
    const pl_load_config_t *config = self->thread->config;
    unsigned char random [16];
    uint64_t first = pl_load_random (&self->thread->rng);
    uint64_t second = pl_load_random (&self->thread->rng);
    memcpy (random, &first, 8);
    memcpy (random + 8, &second, 8);
    pl_wsframe_key (random, self->key);
    self->state = PL_LOADCONN_UPGRADE;
    if (pl_wsframe_request (&self->out, config->host,
                            config->ports [self->index % config->port_count], config->path,
                            self->key, S_PROTOCOLS)) {
        s_conn_fail (self, "out of memory");
        return;
    }
    s_conn_flush (self);
}

//  CONNECT as stompjs writes it: its connectHeaders first, then
//  accept-version and heart-beat; never escaped
static void
s_conn_stomp_connect (pl_load_conn_t *self)
{
    const pl_load_config_t *config = self->thread->config;
    char heart_beat [32];
    snprintf (heart_beat, sizeof heart_beat, "%d,%d", PL_LOAD_HEARTBEAT_MS, PL_LOAD_HEARTBEAT_MS);
    char authorization [PL_TOKEN_MAX + 16];
    const char *headers [12];
    size_t count = 0;
    if (config->target == PL_LOAD_PARLEY) {
        snprintf (authorization, sizeof authorization, "Bearer %s", config->tokens [self->index]);
        headers [count++] = "host";
        headers [count++] = config->host;
        headers [count++] = "Authorization";
        headers [count++] = authorization;
    }
    else {
        headers [count++] = "host";
        headers [count++] = config->vhost;
        headers [count++] = "login";
        headers [count++] = config->login;
        headers [count++] = "passcode";
        headers [count++] = config->passcode;
    }
    headers [count++] = "accept-version";
    headers [count++] = "1.2,1.1,1.0";
    headers [count++] = "heart-beat";
    headers [count++] = heart_beat;
    headers [count] = NULL;
    self->state = PL_LOADCONN_STOMP;
    s_conn_stomp_send (self, "CONNECT", headers, NULL, 0);
}

//  "sx,sy" of CONNECTED against our 10000,10000: each way the larger
//  of the two, or none when either side wants none
static void
s_conn_heart_beats (pl_load_conn_t *self, const char *value)
{
    int server_out = 0, server_in = 0;
    if (!value || sscanf (value, "%d,%d", &server_out, &server_in) != 2
    ||  server_out < 0 || server_in < 0)
        server_out = server_in = 0;
    self->heartbeat_out_ms = server_in? (server_in > PL_LOAD_HEARTBEAT_MS? server_in: PL_LOAD_HEARTBEAT_MS): 0;
    self->heartbeat_in_ms = server_out? (server_out > PL_LOAD_HEARTBEAT_MS? server_out: PL_LOAD_HEARTBEAT_MS): 0;
}

//  CONNECTED: agree escaping and heart-beats, SUBSCRIBE the room with a
//  receipt (stompjs: the caller's headers, then id and destination)
static void
s_conn_on_connected (pl_load_conn_t *self, pl_loadstomp_frame_t *frame)
{
    const char *version = pl_loadstomp_header (frame, "version");
    //  stompjs escapes header values only once 1.2 is agreed
    self->escape = version && strcmp (version, "1.2") == 0;
    s_conn_heart_beats (self, pl_loadstomp_header (frame, "heart-beat"));
    const pl_load_config_t *config = self->thread->config;
    const char *headers [] = {
        "receipt", "sub-0", "id", "sub-0",
        "destination", config->subscribe_to [self->index / config->room], NULL
    };
    self->state = PL_LOADCONN_SUBSCRIBING;
    s_conn_stomp_send (self, "SUBSCRIBE", headers, NULL, 0);
}

//  "m-<n>-<t>": a SEND's receipt, carrying when it was sent
static void
s_conn_on_send_receipt (pl_load_conn_t *self, const char *id)
{
    pl_load_thread_t *thread = self->thread;
    char *end;
    long n = strtol (id + 2, &end, 10);
    long long sent_ns = *end == '-'? strtoll (end + 1, &end, 10): -1;
    if (*end || n < 0 || n >= self->next_n || sent_ns < 0) {
        s_conn_fail (self, "RECEIPT for no SEND of ours: receipt-id %.64s", id);
        return;
    }
    thread->figures.receipted++;
    pl_loadstats_record (&thread->figures.receipt, pl_load_now () - sent_ns);
    //  After READY the thread stopped waiting for this one's receipts
    if (self->state == PL_LOADCONN_READY && self->unreceipted) {
        self->unreceipted--;
        thread->unreceipted--;
    }
}

static void
s_conn_on_receipt (pl_load_conn_t *self, pl_loadstomp_frame_t *frame)
{
    const char *id = pl_loadstomp_header (frame, "receipt-id");
    if (!id)
        s_conn_fail (self, "RECEIPT without receipt-id");
    else
    if (strncmp (id, "m-", 2) == 0)
        s_conn_on_send_receipt (self, id);
    else
    if (strcmp (id, "sub-0") == 0 && self->state == PL_LOADCONN_SUBSCRIBING) {
        self->state = PL_LOADCONN_READY;
        s_conn_settle (self, true, pl_load_now ());
    }
    else
    if (strcmp (id, "close-0") == 0 && self->state == PL_LOADCONN_DISCONNECTING) {
        //  stompjs closes the WebSocket once DISCONNECT is receipted
        self->state = PL_LOADCONN_CLOSING;
        s_conn_ws_send (self, PL_WSFRAME_CLOSE, "\x03\xe8", 2);
    }
    else
        s_conn_fail (self, "unexpected RECEIPT: receipt-id %.64s", id);
}

//  "<t> <i> <n>" at text: the send time, the sender and its message number
static int
s_conn_parse_stamp (const char *text, long long *sent_ns, long *sender, long *n)
{
    char *end;
    errno = 0;
    *sent_ns = strtoll (text, &end, 10);
    if (*end != ' ')
        return -1;
    *sender = strtol (end + 1, &end, 10);
    if (*end != ' ')
        return -1;
    *n = strtol (end + 1, &end, 10);
    return errno || (*end != '"' && *end != 0)? -1: 0;
}

//  Where "<t> <i> <n>" is in a MESSAGE body: all of it for rabbitmq, the
//  content field of parley's JSON (found, not parsed: the server wrote it)
static const char *
s_conn_stamp_of (pl_load_conn_t *self, pl_loadstomp_frame_t *frame)
{
    if (self->thread->config->target == PL_LOAD_RABBITMQ)
        return frame->body;
    static const char field [] = "\"content\":\"";
    const char *content = memmem (frame->body, frame->body_size, field, sizeof field - 1);
    return content? content + sizeof field - 1: NULL;
}

//  parley's seq header: every message of the room once, in order, so each
//  is the one before plus one. Returns -1 when the MESSAGE has none (an
//  event of the room: presence, read status), which is not ours to count.
static int
s_conn_check_seq (pl_load_conn_t *self, pl_loadstomp_frame_t *frame)
{
    const char *text = pl_loadstomp_header (frame, "seq");
    if (!text)
        return -1;
    uint64_t seq = strtoull (text, NULL, 10);
    if (self->seq_started && seq != self->last_seq + 1)
        self->thread->figures.seq_gaps++;
    self->last_seq = seq;
    self->seq_started = true;
    return 0;
}

//  A MESSAGE: latency, and per sender which n came, so that duplicates,
//  losses and order show. No allocation: bits and counters only.
static void
s_conn_on_message (pl_load_conn_t *self, pl_loadstomp_frame_t *frame)
{
    pl_load_thread_t *thread = self->thread;
    const pl_load_config_t *config = thread->config;
    int64_t now = pl_load_now ();
    if (config->target == PL_LOAD_PARLEY && s_conn_check_seq (self, frame)) {
        thread->figures.events++;
        return;
    }
    const char *stamp = s_conn_stamp_of (self, frame);
    long long sent_ns;
    long sender, n;
    if (!stamp || s_conn_parse_stamp (stamp, &sent_ns, &sender, &n)
    ||  sender < 0 || sender >= config->conns || sender / config->room != self->index / config->room
    ||  n < 0 || n >= config->msgs) {
        pl_load_error (thread->run, "conn %d: MESSAGE not sent to its room by this run: %.100s",
                       self->index, frame->body);
        return;
    }
    size_t slot = (size_t) (sender % config->room);
    size_t words = ((size_t) config->msgs + 63) / 64;
    uint64_t *word = &self->seen [slot * words + (size_t) n / 64];
    uint64_t bit = 1ULL << (n % 64);
    if (*word & bit) {
        thread->figures.duplicated++;
        return;
    }
    *word |= bit;
    thread->figures.delivered++;
    thread->figures.last_delivery_ns = now;
    pl_loadstats_record (&thread->figures.latency, now - sent_ns);
    if (self->highest [slot] > n)
        thread->figures.out_of_order++;
    else
        self->highest [slot] = (int32_t) n;
    if (++self->delivered == (uint64_t) config->room * (uint64_t) config->msgs
    &&  self->state == PL_LOADCONN_READY)
        thread->incomplete--;
}

static void
s_conn_on_error (pl_load_conn_t *self, pl_loadstomp_frame_t *frame)
{
    const char *message = pl_loadstomp_header (frame, "message");
    s_conn_fail (self, "ERROR %s%s%.200s", message? message: "(no message header)",
                 frame->body_size? ": ": "", frame->body);
}

//  One complete STOMP frame from the server
static int
s_conn_on_frame (void *arg, pl_loadstomp_frame_t *frame)
{
    pl_load_conn_t *self = (pl_load_conn_t *) arg;
    const char *command = frame->command;
    if (strcmp (command, "MESSAGE") == 0 && self->state >= PL_LOADCONN_SUBSCRIBING)
        s_conn_on_message (self, frame);
    else
    if (strcmp (command, "RECEIPT") == 0 && self->state >= PL_LOADCONN_SUBSCRIBING)
        s_conn_on_receipt (self, frame);
    else
    if (strcmp (command, "CONNECTED") == 0 && self->state == PL_LOADCONN_STOMP)
        s_conn_on_connected (self, frame);
    else
    if (strcmp (command, "ERROR") == 0)
        s_conn_on_error (self, frame);
    else
        s_conn_fail (self, "unexpected %.32s frame", command);
    return self->state >= PL_LOADCONN_CLOSED? -1: 0;
}

//  Feed data from the server's messages to the STOMP reader, straight
//  from where it lies when no frame is in progress
static void
s_conn_stomp_data (pl_load_conn_t *self, char *data, size_t size)
{
    const char *error = NULL;
    ssize_t taken;
    if (pl_buf_pending (&self->stomp) == 0) {
        taken = pl_loadstomp_feed (data, size, &self->escape, PL_LOAD_MAX_FRAME,
                                   s_conn_on_frame, self, &error);
        if (taken >= 0 && pl_buf_append (&self->stomp, data + taken, size - (size_t) taken))
            error = "out of memory";
    }
    else {
        if (pl_buf_append (&self->stomp, data, size)) {
            s_conn_fail (self, "out of memory");
            return;
        }
        taken = pl_loadstomp_feed (self->stomp.data + self->stomp.start, pl_buf_pending (&self->stomp),
                                   &self->escape, PL_LOAD_MAX_FRAME, s_conn_on_frame, self, &error);
        if (taken >= 0)
            pl_buf_consume (&self->stomp, (size_t) taken);
    }
    if (error)
        s_conn_fail (self, "STOMP: %s", error);
}

//  The server's close frame: expected after our own, else the end
static void
s_conn_on_close (pl_load_conn_t *self, const char *payload, size_t size)
{
    if (self->state == PL_LOADCONN_CLOSING) {
        s_conn_close (self, PL_LOADCONN_CLOSED);
        return;
    }
    if (self->state == PL_LOADCONN_DISCONNECTING) {
        //  RabbitMQ closes at DISCONNECT without its RECEIPT; stompjs
        //  takes that as the end too. Counted, not an error.
        self->thread->figures.disconnects_unreceipted++;
        s_conn_ws_send (self, PL_WSFRAME_CLOSE, payload, size >= 2? 2: 0);
        s_conn_close (self, PL_LOADCONN_CLOSED);
        return;
    }
    int code = size >= 2? ((unsigned char) payload [0] << 8) | (unsigned char) payload [1]: 1005;
    //  Answer as RFC 6455 wants, then record why it ended
    s_conn_ws_send (self, PL_WSFRAME_CLOSE, payload, size >= 2? 2: 0);
    s_conn_fail (self, "server closed the WebSocket: %d %.*s", code,
                 size > 2? (int) size - 2: 0, size > 2? payload + 2: "");
}

//  One complete WebSocket frame from the server
static int
s_conn_on_ws (void *arg, int opcode, char *payload, size_t size, bool fin)
{
    (void) fin;                 //  STOMP frames may span messages anyway
    pl_load_conn_t *self = (pl_load_conn_t *) arg;
    if (opcode == PL_WSFRAME_TEXT || opcode == PL_WSFRAME_BINARY)
        s_conn_stomp_data (self, payload, size);
    else
    if (opcode == PL_WSFRAME_PING)
        s_conn_ws_send (self, PL_WSFRAME_PONG, payload, size);
    else
    if (opcode == PL_WSFRAME_CLOSE)
        s_conn_on_close (self, payload, size);
    return self->state >= PL_LOADCONN_CLOSED? -1: 0;
}

//  Bytes after the handshake: WebSocket frames, taken straight from data
//  when no frame is in progress
static void
s_conn_ws_data (pl_load_conn_t *self, char *data, size_t size)
{
    const char *error = NULL;
    ssize_t taken;
    if (pl_buf_pending (&self->in) == 0) {
        taken = pl_wsreader_feed (&self->reader, data, size, s_conn_on_ws, self, &error);
        if (taken >= 0 && pl_buf_append (&self->in, data + taken, size - (size_t) taken))
            error = "out of memory";
    }
    else {
        if (pl_buf_append (&self->in, data, size)) {
            s_conn_fail (self, "out of memory");
            return;
        }
        taken = pl_wsreader_feed (&self->reader, self->in.data + self->in.start,
                                  pl_buf_pending (&self->in), s_conn_on_ws, self, &error);
        if (taken >= 0)
            pl_buf_consume (&self->in, (size_t) taken);
    }
    if (error)
        s_conn_fail (self, "WebSocket: %s", error);
}

//  Bytes of the handshake answer; what follows it is WebSocket already
static void
s_conn_upgrade_data (pl_load_conn_t *self, const char *data, size_t size)
{
    if (pl_buf_append (&self->in, data, size)) {
        s_conn_fail (self, "out of memory");
        return;
    }
    char protocol [64], error [256];
    ssize_t answer = pl_wsframe_response (pl_buf_head (&self->in), pl_buf_pending (&self->in),
                                          self->key, protocol, sizeof protocol, error, sizeof error);
    if (answer < 0) {
        s_conn_fail (self, "%s", error);
        return;
    }
    if (answer == 0)
        return;
    pl_buf_consume (&self->in, (size_t) answer);
    s_conn_stomp_connect (self);
    if (pl_buf_pending (&self->in) && self->state == PL_LOADCONN_STOMP) {
        //  Frames that came with the answer: fed from a copy, as the
        //  buffer they lie in is where a partial frame would be kept
        size_t rest = pl_buf_pending (&self->in);
        char *copy = malloc (rest);
        if (!copy) {
            s_conn_fail (self, "out of memory");
            return;
        }
        memcpy (copy, pl_buf_head (&self->in), rest);
        pl_buf_reset (&self->in);
        s_conn_ws_data (self, copy, rest);
        free (copy);
    }
}

//  The socket ended (EOF or reset): as planned while closing (also right
//  after DISCONNECT), else a failure
static void
s_conn_ended (pl_load_conn_t *self, const char *how)
{
    if (self->state == PL_LOADCONN_CLOSING)
        s_conn_close (self, PL_LOADCONN_CLOSED);
    else
    if (self->state == PL_LOADCONN_DISCONNECTING) {
        self->thread->figures.disconnects_unreceipted++;
        s_conn_close (self, PL_LOADCONN_CLOSED);
    }
    else
        s_conn_fail (self, "%s", how);
}

//  Read what came, a few buffers at most so that other connections get
//  their turn (epoll is level-triggered: the rest is reported again)
static void
s_conn_read (pl_load_conn_t *self, int64_t now)
{
    pl_load_thread_t *thread = self->thread;
    for (int turn = 0; turn < 4 && self->fd >= 0; turn++) {
        ssize_t got = recv (self->fd, thread->scratch, thread->scratch_size, 0);
        if (got == 0) {
            s_conn_ended (self, "server closed the connection");
            return;
        }
        if (got < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                char how [128];
                snprintf (how, sizeof how, "recv: %s", strerror (errno));
                s_conn_ended (self, how);
            }
            return;
        }
        self->last_in_ns = now;
        if (self->state == PL_LOADCONN_UPGRADE)
            s_conn_upgrade_data (self, thread->scratch, (size_t) got);
        else
            s_conn_ws_data (self, thread->scratch, (size_t) got);
        if ((size_t) got < thread->scratch_size)
            return;
    }
}

void
pl_loadconn_handle (pl_load_conn_t *self, uint32_t events, int64_t now)
{
    if (self->state == PL_LOADCONN_TCP) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            s_conn_connected_tcp (self);
        return;
    }
    if ((events & EPOLLOUT) && self->fd >= 0)
        s_conn_flush (self);
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && self->fd >= 0)
        s_conn_read (self, now);
}

void
pl_loadconn_send (pl_load_conn_t *self, int64_t scheduled_ns)
{
    if (self->state != PL_LOADCONN_READY || self->next_n >= self->thread->config->msgs)
        return;
    pl_load_thread_t *thread = self->thread;
    const pl_load_config_t *config = thread->config;
    int n = self->next_n++;
    int64_t now = pl_load_now ();
    char body [192], receipt [48];
    int size;
    if (config->target == PL_LOAD_PARLEY)
        size = snprintf (body, sizeof body,
                         "{\"type\":\"TALK\",\"content\":\"%" PRId64 " %d %d\",\"clientMsgId\":\"%d-%d\"}",
                         now, self->index, n, self->index, n);
    else
        size = snprintf (body, sizeof body, "%" PRId64 " %d %d", now, self->index, n);
    snprintf (receipt, sizeof receipt, "m-%d-%" PRId64, n, now);
    //  stompjs's publish: destination, the caller's headers, content-length
    const char *headers [] = {
        "destination", config->send_to [self->index / config->room], "receipt", receipt, NULL
    };
    s_conn_stomp_send (self, "SEND", headers, body, (size_t) size);
    if (self->state != PL_LOADCONN_READY)
        return;                 //  failed while writing: not sent
    pl_load_figures_t *figures = &thread->figures;
    figures->sent++;
    if (figures->first_send_ns == 0)
        figures->first_send_ns = now;
    figures->last_send_ns = now;
    pl_loadstats_record (&figures->lag, now - scheduled_ns);
    self->unreceipted++;
    thread->unreceipted++;
}

void
pl_loadconn_tick (pl_load_conn_t *self, int64_t now)
{
    if (self->fd < 0)
        return;
    if (self->state < PL_LOADCONN_READY && now > self->deadline_ns) {
        s_conn_fail (self, "not subscribed after %d ms (--connect-timeout-ms)",
                     self->thread->config->connect_timeout_ms);
        return;
    }
    if (self->state >= PL_LOADCONN_DISCONNECTING && now > self->deadline_ns) {
        if (self->state == PL_LOADCONN_DISCONNECTING)
            s_conn_fail (self, "no RECEIPT for DISCONNECT after %d ms", PL_LOAD_CLOSE_MS);
        else
            s_conn_close (self, PL_LOADCONN_CLOSED);    //  no close frame back: done anyway
        return;
    }
    if (self->state < PL_LOADCONN_SUBSCRIBING || self->state == PL_LOADCONN_CLOSING)
        return;                 //  no heart-beats before CONNECTED, nor after our close frame
    //  stompjs's tolerance: twice the agreed interval without a byte
    if (self->heartbeat_in_ms && now - self->last_in_ns > 2 * (int64_t) self->heartbeat_in_ms * 1000000) {
        s_conn_fail (self, "nothing from the server for %" PRId64 " ms (heart-beat %d ms)",
                     (now - self->last_in_ns) / 1000000, self->heartbeat_in_ms);
        return;
    }
    if (self->heartbeat_out_ms && now - self->last_out_ns >= (int64_t) self->heartbeat_out_ms * 1000000)
        s_conn_ws_send (self, PL_WSFRAME_TEXT, "\n", 1);
}

void
pl_loadconn_disconnect (pl_load_conn_t *self, int64_t now)
{
    if (self->state != PL_LOADCONN_READY)
        return;
    s_conn_leave_ready (self);
    self->state = PL_LOADCONN_DISCONNECTING;
    self->deadline_ns = now + (int64_t) PL_LOAD_CLOSE_MS * 1000000;
    const char *headers [] = { "receipt", "close-0", NULL };
    s_conn_stomp_send (self, "DISCONNECT", headers, NULL, 0);
}
