/*  =========================================================================
    pl_connection_accept - the connection actor's listening socket, its
    accepts, and each new connection's first request head through pl_gate

    Accept: each new socket is adopted as a raw descriptor first, and its
    request head read into a pl_gate, which refuses in JSON what lws 4.1's
    parser would refuse in its own way, and answers 408 to a head not
    complete within http-head-timeout-s; a head that passes goes to lws
    with a dup () of the socket, unread (the gate only peeks), or, when
    the gate left its Upgrade out, taken off the socket and handed over
    rewritten. HTTP answers close their connection, so every request
    passes the gate.

    Out of descriptors, accepting pauses for accept-pause-ms, and a spare
    descriptor lets one waiting client hear 503 each time (issue 8).
    Everything here runs on the lws service thread, as the rest of the
    actor does (pl_connection.c).
    =========================================================================
*/
#include "pl_connection_internal.h"
#include "pl_log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <ev.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

//  Out of descriptors, warn at most this often (a cadence, not a limit)
#define ACCEPT_WARN_MS      10000

static void s_gate_adopt (self_t *self, int fd);


//  --------------------------------------------------------------------------
//  Our listening socket

//  Our own listening socket: lws 4.1 sets SO_REUSEPORT only with several
//  service threads, so LWS_SERVER_OPTION_ALLOW_LISTEN_SHARE alone does not
//  let several actors share the port. Returns the fd or -1.
int
pl_connection_listen (const pl_config_t *config)
{
    struct addrinfo hints, *addresses = NULL;
    memset (&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port [16];
    snprintf (port, sizeof port, "%d", config->port);
    int rc = getaddrinfo (*config->listen_addr? config->listen_addr: NULL, port, &hints, &addresses);
    if (rc) {
        pl_log_error ("cannot resolve listen address %s: %s", config->listen_addr, gai_strerror (rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *address = addresses; address && fd < 0; address = address->ai_next) {
        fd = socket (address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                     address->ai_protocol);
        if (fd < 0)
            continue;
        int on = 1;
        if (setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on)
        ||  setsockopt (fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on)
        ||  bind (fd, address->ai_addr, address->ai_addrlen)
        ||  listen (fd, SOMAXCONN)) {
            pl_log_error ("cannot listen on %s:%d: %s", config->listen_addr, config->port,
                          strerror (errno));
            close (fd);
            fd = -1;
        }
    }
    freeaddrinfo (addresses);
    return fd;
}


//  --------------------------------------------------------------------------
//  Accepting, and pausing when out of descriptors

//  The pause is over: poll the listening socket again
static void
s_self_accept_resume (lws_sorted_usec_list_t *sul)
{
    self_t *self = lws_container_of (sul, self_t, accept_resume);
    self->accept_paused = false;
    if (self->listen_wsi)
        lws_rx_flow_control (self->listen_wsi, 1);
}

//  Out of descriptors: tell the client 503 in JSON, best effort (a fresh
//  socket's buffer takes this at once)
static void
s_self_shed (self_t *self, int fd)
{
    static const char body [] = "{\"error\":\"server out of connections, try again\"}";
    char busy [256];
    int size = snprintf (busy, sizeof busy, "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/json\r\ncontent-length: %zu\r\n"
        "retry-after: 1\r\nconnection: close\r\n\r\n%s", sizeof body - 1, body);
    if (send (fd, busy, (size_t) size, MSG_NOSIGNAL) > 0)
        self->accept_shed++;
}

//  accept () said EMFILE or ENFILE. The listener is level-triggered, so
//  polling it on would spin (and log) until a descriptor frees up: stop
//  polling it for accept-pause-ms instead. The spare descriptor makes room
//  to tell one waiting client 503 rather than leave it hanging.
static void
s_self_accept_pause (self_t *self, int error)
{
    self->accept_pauses++;
    int64_t now = pl_mono_ms ();
    if (!self->accept_warned_ms || now - self->accept_warned_ms >= ACCEPT_WARN_MS) {
        pl_log_warning ("accept: %s; pausing %d ms at a time (%" PRIu64 " pauses, %" PRIu64
                        " clients told 503 so far); raise LimitNOFILE", strerror (error),
                        self->config->accept_pause_ms, self->accept_pauses, self->accept_shed);
        self->accept_warned_ms = now;
    }
    if (self->spare_fd >= 0) {
        close (self->spare_fd);
        int fd = accept4 (self->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            s_self_shed (self, fd);
            close (fd);
        }
        self->spare_fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (self->listen_wsi && !self->accept_paused) {
        self->accept_paused = true;
        lws_rx_flow_control (self->listen_wsi, 0);
        lws_sul_schedule (self->context, 0, &self->accept_resume, s_self_accept_resume,
                          (lws_usec_t) self->config->accept_pause_ms * LWS_US_PER_MS);
    }
}

//  Accept what is waiting and put each socket at the gate (then lws serves
//  it as HTTP, and WebSocket after the upgrade). The listener is
//  level-triggered: a bounded batch per wake-up keeps the loop fair.
void
pl_connection_accept (self_t *self)
{
    if (self->accept_paused)
        return;                 //  a wake-up from before the pause took hold
    for (int count = 0; count < 64; count++) {
        int fd = accept4 (self->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                s_self_accept_pause (self, errno);
            else
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR
            &&  errno != ECONNABORTED)
                pl_log_warning ("accept: %s", strerror (errno));
            break;
        }
        //  lws sets no socket options on what it adopts: without this each
        //  small frame after the first waits for the client's delayed ACK
        //  (up to 40 ms a RECEIPT or MESSAGE, measured by parley-load)
        int one = 1;
        setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        s_gate_adopt (self, fd);
    }
}


//  --------------------------------------------------------------------------
//  The gate: a new connection's first request head, before lws sees it
//
//  A socket at the gate is watched by libev watchers of ours on the loop
//  lws runs on, not by an lws wsi: a head that passes goes to lws as the
//  same descriptor. (Handing lws a dup () and closing the raw wsi's number
//  left a stale registration in epoll, since the socket stayed open, and
//  libev answers that with a rebuild of its whole epoll set: O(sessions)
//  per accept, 31 s of CPU for 10,000 connections.)

struct _gate_conn_t {
    ev_io io;                   //  readable: more of the head, or the client went
    ev_timer timer;             //  http-head-timeout-s, then linger-s once refused
    self_t *self;
    pl_gate_t *gate;
    gate_conn_t *prev, *next;   //  in self->gates, freed at shutdown
};

static void s_gate_io (struct ev_loop *loop, ev_io *io, int events);
static void s_gate_timer (struct ev_loop *loop, ev_timer *timer, int events);

//  Off the loop and out of the list; closes the socket when told to (not
//  when lws has it now)
static void
s_gate_conn_end (gate_conn_t *conn, bool close_socket)
{
    self_t *self = conn->self;
    ev_io_stop (self->loop, &conn->io);
    ev_timer_stop (self->loop, &conn->timer);
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        self->gates = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    if (close_socket)
        close (conn->io.fd);
    pl_gate_destroy (&conn->gate);
    free (conn);
}

void
pl_connection_gates_close (self_t *self)
{
    while (self->gates)
        s_gate_conn_end (self->gates, true);
}

//  Watch the socket with a pl_gate; a client that does not finish its head
//  within http-head-timeout-s is answered 408 (s_gate_timer). The time
//  counts from the accept, not from the last byte, so a client that
//  dribbles its head gets no more of it.
static void
s_gate_adopt (self_t *self, int fd)
{
    gate_conn_t *conn = (gate_conn_t *) calloc (1, sizeof (gate_conn_t));
    if (conn)
        conn->gate = pl_gate_new ((size_t) self->config->http_request_bytes,
                                  (size_t) self->config->http_url_max,
                                  (size_t) self->config->http_header_lines_max);
    if (!conn || !conn->gate) {
        pl_log_warning ("out of memory for a new connection");
        free (conn);
        close (fd);
        return;
    }
    conn->self = self;
    ev_io_init (&conn->io, s_gate_io, fd, EV_READ);
    ev_timer_init (&conn->timer, s_gate_timer, (ev_tstamp) self->config->http_head_timeout_s, 0);
    conn->next = self->gates;
    if (conn->next)
        conn->next->prev = conn;
    self->gates = conn;
    ev_io_start (self->loop, &conn->io);
    ev_timer_start (self->loop, &conn->timer);
}

//  The head is refused: the JSON answer, counted, and our side shut.
//  Closing with unread bytes would reset the connection and could take
//  the answer with it, so what else comes is read and dropped for
//  linger-s. Returns -1 to close now.
static int
s_gate_refuse (gate_conn_t *conn)
{
    self_t *self = conn->self;
    int status = pl_gate_status (conn->gate);
    if (status == 408)
        self->http_guard.refused_timeout++;
    else
    if (status == 414 || status == 431)
        self->http_guard.refused_size++;
    else
    if (status != 404)          //  an answer, not a refusal of what was sent (as in pl_http)
        self->http_guard.refused_malformed++;
    size_t size;
    const char *answer = pl_gate_answer (conn->gate, &size);
    //  Best effort: a fresh socket's buffer takes this at once
    if (send (conn->io.fd, answer, size, MSG_NOSIGNAL) < 0 || shutdown (conn->io.fd, SHUT_WR))
        return -1;
    ev_timer_stop (self->loop, &conn->timer);
    ev_timer_set (&conn->timer, (ev_tstamp) self->config->linger_s, 0);
    ev_timer_start (self->loop, &conn->timer);
    return 0;
}

//  http-head-timeout-s is up and the head is not complete (or not begun):
//  408, then as any refusal. SO_RCVLOWAT back to 1, so that what the
//  client sent (peeked, not taken) and sends on is read and dropped.
//  Once refused, this is the end of linger-s: closed.
static void
s_gate_timer (struct ev_loop *loop, ev_timer *timer, int events)
{
    (void) loop;
    (void) events;
    gate_conn_t *conn = (gate_conn_t *) ((char *) timer - offsetof (gate_conn_t, timer));
    if (pl_gate_verdict (conn->gate) != PL_GATE_MORE) {
        s_gate_conn_end (conn, true);
        return;
    }
    pl_gate_expire (conn->gate, conn->self->config->http_head_timeout_s);
    int low = 1;
    if (setsockopt (conn->io.fd, SOL_SOCKET, SO_RCVLOWAT, &low, sizeof low) || s_gate_refuse (conn))
        s_gate_conn_end (conn, true);
}

//  A head that passed goes to lws, the same descriptor, unread; or, when
//  the gate dropped lines from it, taken off the socket and handed over as
//  the gate rewrote it (scratch holds at least the head). lws closes the
//  socket when it cannot adopt it.
static void
s_gate_hand_over (gate_conn_t *conn, char *scratch)
{
    self_t *self = conn->self;
    int fd = conn->io.fd;
    size_t size, head = pl_gate_head_size (conn->gate);
    const char *rewritten = pl_gate_rewritten (conn->gate, &size);
    //  A file of the web chat is served on a vhost of its own (pl_web.h)
    struct lws_vhost *vhost = self->files_vhost && pl_gate_for_file (conn->gate)?
                              self->files_vhost: self->vhost;
    bool taken = !rewritten || recv (fd, scratch, head, 0) == (ssize_t) head;
    //  rewritten points into the gate, which ends with conn
    char *copy = taken && rewritten? (char *) malloc (size): NULL;
    if (copy)
        memcpy (copy, rewritten, size);
    s_gate_conn_end (conn, !taken || (rewritten && !copy));
    if (!taken || (rewritten && !copy))
        return;                 //  the client went, or no memory
    struct lws *wsi = copy? lws_adopt_socket_vhost_readbuf (vhost, fd, copy, size):
                            lws_adopt_socket_vhost (vhost, fd);
    free (copy);
    if (!wsi)
        pl_log_warning ("lws cannot adopt a new connection");
}

//  Bytes from a connection at the gate. They are peeked at, never taken,
//  so lws reads the head that passes (and what follows) itself; until the
//  head is complete, SO_RCVLOWAT keeps the socket quiet until more bytes
//  come. (lws 4.1's lws_adopt_socket_vhost_readbuf loops on a head with a
//  body to come: the gate rewrites only heads without a body.) Returns -1
//  to close the socket.
static int
s_gate_input (gate_conn_t *conn)
{
    self_t *self = conn->self;
    int fd = conn->io.fd;
    size_t seen, limit = (size_t) self->config->http_request_bytes + 1;
    pl_gate_data (conn->gate, &seen);
    char *peeked = (char *) pl_connection_scratch (self, limit);
    if (!peeked)
        return -1;
    bool refused = pl_gate_verdict (conn->gate) == PL_GATE_REFUSE;
    ssize_t size = recv (fd, peeked, limit, refused? 0: MSG_PEEK);
    if (size < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (refused)
        return size > 0? 0: -1;     //  lingering after the answer: dropped
    if (size <= (ssize_t) seen)
        return -1;              //  nothing new: the client went, or its socket failed
    int low = 1;
    switch (pl_gate_input (conn->gate, peeked + seen, (size_t) size - seen)) {
        case PL_GATE_MORE:
            low = (int) size + 1;
            return setsockopt (fd, SOL_SOCKET, SO_RCVLOWAT, &low, sizeof low);
        case PL_GATE_REFUSE:
            setsockopt (fd, SOL_SOCKET, SO_RCVLOWAT, &low, sizeof low);
            return s_gate_refuse (conn);
        case PL_GATE_PASS:
            break;
    }
    if (setsockopt (fd, SOL_SOCKET, SO_RCVLOWAT, &low, sizeof low)) {
        s_self_shed (self, fd);
        return -1;
    }
    s_gate_hand_over (conn, peeked);
    return 1;                   //  conn is gone
}

static void
s_gate_io (struct ev_loop *loop, ev_io *io, int events)
{
    (void) loop;
    (void) events;
    gate_conn_t *conn = (gate_conn_t *) io;
    if (s_gate_input (conn) < 0)
        s_gate_conn_end (conn, true);
}
