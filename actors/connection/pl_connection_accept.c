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
#include <inttypes.h>
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

//  Adopt the socket as a raw descriptor of ours, with its pl_gate as the
//  wsi's opaque data; a client that does not finish its head within
//  http-head-timeout-s is answered 408 (the wsi's timer, pl_connection_gate_expire).
//  The time counts from the accept, not from the last byte, so a client
//  that dribbles its head gets no more of it.
static void
s_gate_adopt (self_t *self, int fd)
{
    lws_adopt_desc_t adopt = {
        .vh = self->vhost, .type = LWS_ADOPT_RAW_FILE_DESC, .vh_prot_name = "parley gate",
        .opaque = pl_gate_new ((size_t) self->config->http_request_bytes,
                               (size_t) self->config->http_url_max,
                               (size_t) self->config->http_header_lines_max)
    };
    adopt.fd.filefd = fd;
    struct lws *wsi = adopt.opaque? lws_adopt_descriptor_vhost_via_info (&adopt): NULL;
    if (!wsi) {
        pl_log_warning ("cannot adopt a new connection");
        pl_gate_t *gate = (pl_gate_t *) adopt.opaque;
        pl_gate_destroy (&gate);
        close (fd);             //  lws closes only the sockets it adopts as such
        return;
    }
    lws_set_timer_usecs (wsi, (lws_usec_t) self->config->http_head_timeout_s * LWS_US_PER_SEC);
}

//  The head is refused: the JSON answer, counted, and our side shut.
//  Closing with unread bytes would reset the connection and could take
//  the answer with it, so what else comes is read and dropped for
//  linger-s (the head's timer stops). Returns -1 to close now.
static int
s_gate_refuse (self_t *self, struct lws *wsi, int fd, pl_gate_t *gate)
{
    lws_set_timer_usecs (wsi, LWS_SET_TIMER_USEC_CANCEL);
    int status = pl_gate_status (gate);
    if (status == 408)
        self->http_guard.refused_timeout++;
    else
    if (status == 414 || status == 431)
        self->http_guard.refused_size++;
    else
    if (status != 404)          //  an answer, not a refusal of what was sent (as in pl_http)
        self->http_guard.refused_malformed++;
    size_t size;
    const char *answer = pl_gate_answer (gate, &size);
    //  Best effort: a fresh socket's buffer takes this at once
    if (send (fd, answer, size, MSG_NOSIGNAL) < 0 || shutdown (fd, SHUT_WR))
        return -1;
    lws_set_timeout (wsi, PENDING_TIMEOUT_USER_OK, self->config->linger_s);
    return 0;
}

//  http-head-timeout-s is up and the head is not complete (or not begun):
//  408, then as any refusal. SO_RCVLOWAT back to 1, so that what the
//  client sent (peeked, not taken) and sends on is read and dropped.
//  Returns -1 to close now.
int
pl_connection_gate_expire (self_t *self, struct lws *wsi, pl_gate_t *gate)
{
    if (pl_gate_verdict (gate) != PL_GATE_MORE)
        return 0;               //  refused already (its timer stopped then)
    pl_gate_expire (gate, self->config->http_head_timeout_s);
    int fd = lws_get_socket_fd (wsi);
    int low = 1;
    if (setsockopt (fd, SOL_SOCKET, SO_RCVLOWAT, &low, sizeof low))
        return -1;
    return s_gate_refuse (self, wsi, fd, gate);
}

//  A head that passed goes to lws with copy, a dup of the socket (closing
//  the raw wsi closes only ours), unread; or, when the gate dropped lines
//  from it, taken off the socket and handed over as the gate rewrote it
//  (scratch holds at least the head). lws closes copy when it cannot
//  adopt it.
static void
s_gate_hand_over (self_t *self, int fd, int copy, pl_gate_t *gate, char *scratch)
{
    size_t size, head = pl_gate_head_size (gate);
    const char *rewritten = pl_gate_rewritten (gate, &size);
    struct lws *wsi = NULL;
    //  A file of the web chat is served on a vhost of its own (pl_web.h)
    struct lws_vhost *vhost = self->files_vhost && pl_gate_for_file (gate)?
                              self->files_vhost: self->vhost;
    if (!rewritten)
        wsi = lws_adopt_socket_vhost (vhost, copy);
    else
    if (recv (fd, scratch, head, 0) == (ssize_t) head)
        wsi = lws_adopt_socket_vhost_readbuf (vhost, copy, rewritten, size);
    else {
        close (copy);
        return;                 //  the client went
    }
    if (!wsi)
        pl_log_warning ("lws cannot adopt a new connection");
}

//  Bytes from a connection at the gate. They are peeked at, never taken,
//  so lws reads the head that passes (and what follows) itself; until the
//  head is complete, SO_RCVLOWAT keeps poll quiet until more bytes come.
//  (lws 4.1's lws_adopt_socket_vhost_readbuf loops on a head with a body
//  to come: the gate rewrites only heads without a body.) Returns -1 to
//  close the raw wsi.
int
pl_connection_gate_input (self_t *self, struct lws *wsi, pl_gate_t *gate)
{
    int fd = lws_get_socket_fd (wsi);
    size_t seen, limit = (size_t) self->config->http_request_bytes + 1;
    pl_gate_data (gate, &seen);
    char *peeked = (char *) pl_connection_scratch (self, limit);
    if (!peeked)
        return -1;
    bool refused = pl_gate_verdict (gate) == PL_GATE_REFUSE;
    ssize_t size = recv (fd, peeked, limit, refused? 0: MSG_PEEK);
    if (size < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (refused)
        return size > 0? 0: -1;     //  lingering after the answer: dropped
    if (size <= (ssize_t) seen)
        return -1;              //  nothing new: the client went, or its socket failed
    int low = 1;
    switch (pl_gate_input (gate, peeked + seen, (size_t) size - seen)) {
        case PL_GATE_MORE:
            low = (int) size + 1;
            return setsockopt (fd, SOL_SOCKET, SO_RCVLOWAT, &low, sizeof low);
        case PL_GATE_REFUSE:
            setsockopt (fd, SOL_SOCKET, SO_RCVLOWAT, &low, sizeof low);
            return s_gate_refuse (self, wsi, fd, gate);
        case PL_GATE_PASS:
            break;
    }
    int copy = setsockopt (fd, SOL_SOCKET, SO_RCVLOWAT, &low, sizeof low)?
               -1: fcntl (fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0)
        s_self_shed (self, fd);
    else
        s_gate_hand_over (self, fd, copy, gate, peeked);
    return -1;
}
