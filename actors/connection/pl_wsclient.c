/*  =========================================================================
    pl_wsclient - a blocking HTTP/1.1 and WebSocket client over a plain TCP
    socket, for the connection actor's end-to-end selftest
    =========================================================================
*/
#include "pl_wsclient.h"
#include "pl_util.h"

#include <czmq.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  The handshake key of RFC 6455's example, and the answer it wants
#define WS_KEY      "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT   "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

struct _pl_wsclient_t {
    int fd;
    pl_buf_t in;                //  bytes received, not yet returned
    bool closed;
};

int
pl_wsclient_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    pl_check (fd >= 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = 0 };
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    pl_check (bind (fd, (struct sockaddr *) &address, sizeof address) == 0);
    socklen_t size = sizeof address;
    pl_check (getsockname (fd, (struct sockaddr *) &address, &size) == 0);
    close (fd);
    return ntohs (address.sin_port);
}

static int
s_connect (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    pl_check (fd >= 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    pl_check (connect (fd, (struct sockaddr *) &address, sizeof address) == 0);
    struct timeval timeout = { .tv_sec = 5 };
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    return fd;
}

static void
s_write (int fd, const void *data, size_t size)
{
    pl_check (send (fd, data, size, MSG_NOSIGNAL) == (ssize_t) size);
}

//  Read until the peer closes; all of it as a string.
static char *
s_read_all (int fd)
{
    pl_buf_t buf;
    pl_buf_init (&buf);
    char chunk [4096];
    ssize_t got;
    while ((got = recv (fd, chunk, sizeof chunk, 0)) > 0)
        pl_buf_append (&buf, chunk, (size_t) got);
    char *text = strndup (pl_buf_head (&buf), pl_buf_pending (&buf));
    pl_check (text);
    pl_buf_free (&buf);
    return text;
}

static int
s_recv_exact (int fd, void *data, size_t size)
{
    size_t used = 0;
    while (used < size) {
        ssize_t got = recv (fd, (char *) data + used, size - used, 0);
        if (got <= 0)
            return -1;
        used += (size_t) got;
    }
    return 0;
}

//  Read up to and with the blank line after HTTP headers
static void
s_read_headers (int fd, char *text, size_t size)
{
    size_t used = 0;
    while (used < size - 1) {
        pl_check (recv (fd, text + used, 1, 0) == 1);
        used++;
        if (used >= 4 && memcmp (text + used - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    text [used] = 0;
}

int
pl_wsclient_http_send (int port, const char *method, const char *path,
                       const char *token, const char *body)
{
    int fd = s_connect (port);
    pl_buf_t request;
    pl_buf_init (&request);
    pl_buf_printf (&request,
        "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        "%s%s%s" "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
        method, path, token? "Authorization: Bearer ": "", token? token: "", token? "\r\n": "",
        body? strlen (body): 0, body? body: "");
    s_write (fd, pl_buf_head (&request), pl_buf_pending (&request));
    pl_buf_free (&request);
    return fd;
}

char *
pl_wsclient_http_read (int fd, int *status)
{
    char *response = s_read_all (fd);
    close (fd);
    *status = 0;
    sscanf (response, "HTTP/1.1 %d", status);
    return response;
}

char *
pl_wsclient_http (int port, const char *method, const char *path, const char *token,
                  const char *body, int *status)
{
    return pl_wsclient_http_read (pl_wsclient_http_send (port, method, path, token, body), status);
}

pl_wsclient_t *
pl_wsclient_new (int port, const char *subprotocol)
{
    pl_wsclient_t *self = (pl_wsclient_t *) calloc (1, sizeof (pl_wsclient_t));
    pl_check (self);
    pl_buf_init (&self->in);
    self->fd = s_connect (port);
    char request [1024];
    int size = snprintf (request, sizeof request,
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
        subprotocol? "Sec-WebSocket-Protocol: ": "", subprotocol? subprotocol: "",
        subprotocol? "\r\n": "");
    s_write (self->fd, request, (size_t) size);
    char answer [1024];
    s_read_headers (self->fd, answer, sizeof answer);
    pl_check (strncmp (answer, "HTTP/1.1 101", 12) == 0);
    pl_check (strstr (answer, WS_ACCEPT));
    return self;
}

void
pl_wsclient_destroy (pl_wsclient_t **self_p)
{
    if (*self_p) {
        close ((*self_p)->fd);
        pl_buf_free (&(*self_p)->in);
        free (*self_p);
        *self_p = NULL;
    }
}

int
pl_wsclient_frame (pl_buf_t *out, int opcode, const void *payload, size_t size, uint32_t mask)
{
    unsigned char header [14];
    size_t used = 0;
    header [used++] = (unsigned char) (0x80 | opcode);
    if (size < 126)
        header [used++] = (unsigned char) (0x80 | size);
    else
    if (size < 65536) {
        header [used++] = 0x80 | 126;
        header [used++] = (unsigned char) (size >> 8);
        header [used++] = (unsigned char) size;
    }
    else {
        header [used++] = 0x80 | 127;
        for (int shift = 56; shift >= 0; shift -= 8)
            header [used++] = (unsigned char) ((uint64_t) size >> shift);
    }
    unsigned char key [4];
    memcpy (key, &mask, 4);
    memcpy (header + used, key, 4);
    used += 4;
    if (pl_buf_append (out, header, used) || pl_buf_append (out, payload, size))
        return -1;
    unsigned char *masked = (unsigned char *) out->data + out->size - size;
    for (size_t index = 0; index < size; index++)
        masked [index] ^= key [index & 3];
    return 0;
}

void
pl_wsclient_send (pl_wsclient_t *self, const char *data, size_t size)
{
    pl_buf_t frame;
    pl_buf_init (&frame);
    pl_check (pl_wsclient_frame (&frame, 1, data, size, 0x78563412) == 0);     //  text
    s_write (self->fd, pl_buf_head (&frame), pl_buf_pending (&frame));
    pl_buf_free (&frame);
}

void
pl_wsclient_send_stomp (pl_wsclient_t *self, const char *frame)
{
    pl_wsclient_send (self, frame, strlen (frame) + 1);
}

int
pl_wsclient_recv (pl_wsclient_t *self)
{
    unsigned char header [2];
    if (s_recv_exact (self->fd, header, 2))
        return -1;
    uint64_t size = header [1] & 0x7F;
    pl_check (!(header [1] & 0x80));                //  server frames are not masked
    if (size == 126 || size == 127) {
        unsigned char extended [8];
        size_t bytes = size == 126? 2: 8;
        if (s_recv_exact (self->fd, extended, bytes))
            return -1;
        size = 0;
        for (size_t index = 0; index < bytes; index++)
            size = (size << 8) | extended [index];
    }
    char *payload = (char *) malloc (size + 1);
    pl_check (payload);
    if (s_recv_exact (self->fd, payload, size)) {
        free (payload);
        return -1;
    }
    int opcode = header [0] & 0x0F;
    if (opcode == 8)
        self->closed = true;
    else
    if (opcode <= 2)
        pl_buf_append (&self->in, payload, size);
    free (payload);
    return self->closed? -1: 0;
}

char *
pl_wsclient_recv_stomp (pl_wsclient_t *self)
{
    while (true) {
        while (pl_buf_pending (&self->in)
        &&    (*pl_buf_head (&self->in) == '\n' || *pl_buf_head (&self->in) == '\r'))
            pl_buf_consume (&self->in, 1);
        const char *head = pl_buf_head (&self->in);
        const char *nul = (const char *) memchr (head, 0, pl_buf_pending (&self->in));
        if (nul) {
            char *frame = strndup (head, (size_t) (nul - head));
            pl_check (frame);
            pl_buf_consume (&self->in, (size_t) (nul - head) + 1);
            return frame;
        }
        if (pl_wsclient_recv (self))
            return NULL;
    }
}

const char *
pl_wsclient_received (pl_wsclient_t *self, size_t *size)
{
    *size = pl_buf_pending (&self->in);
    return pl_buf_head (&self->in);
}

void
pl_wsclient_expect_closed (pl_wsclient_t *self)
{
    char *frame = pl_wsclient_recv_stomp (self);
    if (frame)
        fprintf (stderr, "expected the close, got: %s\n", frame);
    pl_check (frame == NULL);
}


//  --------------------------------------------------------------------------
//  Selftest: a server in a thread that answers the handshake, echoes one
//  message unmasked, and closes; and one that answers HTTP

static void
s_test_server (zsock_t *pipe, void *args)
{
    int listener = *(int *) args;
    zsock_signal (pipe, 0);
    int fd = accept (listener, NULL, NULL);
    pl_check (fd >= 0);
    char text [1024];
    s_read_headers (fd, text, sizeof text);
    if (strncmp (text, "GET /ws ", 8) == 0) {
        pl_check (strstr (text, "Sec-WebSocket-Key: " WS_KEY));
        const char *answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Accept: " WS_ACCEPT "\r\n\r\n";
        s_write (fd, answer, strlen (answer));
        unsigned char header [6];
        pl_check (s_recv_exact (fd, header, 6) == 0);
        pl_check (header [0] == 0x81 && (header [1] & 0x80));
        size_t size = header [1] & 0x7F;
        unsigned char echo [130] = { 0x81, (unsigned char) size };
        pl_check (size < 126 && s_recv_exact (fd, echo + 2, size) == 0);
        for (size_t index = 0; index < size; index++)
            echo [2 + index] ^= header [2 + index % 4];
        s_write (fd, echo, 2 + size);
        s_write (fd, "\x88\x00", 2);
    }
    else {
        pl_check (strstr (text, "Authorization: Bearer t0k3n\r\n"));
        const char *answer = "HTTP/1.1 418 I'm a teapot\r\nContent-Length: 2\r\n\r\n{}";
        s_write (fd, answer, strlen (answer));
    }
    close (fd);
    free (zstr_recv (pipe));    //  $TERM
}

static zactor_t *
s_test_listen (int *listener, int *port)
{
    *port = pl_wsclient_free_port ();
    *listener = socket (AF_INET, SOCK_STREAM, 0);
    pl_check (*listener >= 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) *port) };
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    pl_check (bind (*listener, (struct sockaddr *) &address, sizeof address) == 0);
    pl_check (listen (*listener, 4) == 0);
    zactor_t *server = zactor_new (s_test_server, listener);
    pl_check (server);
    return server;
}

void
pl_wsclient_test (bool verbose)
{
    printf (" * pl_wsclient: ");
    if (verbose)
        printf ("\n");
    int listener, port;
    zactor_t *server = s_test_listen (&listener, &port);
    pl_wsclient_t *client = pl_wsclient_new (port, "v12.stomp");
    pl_wsclient_send_stomp (client, "\nRECEIPT\nreceipt-id:1\n\n");
    char *frame = pl_wsclient_recv_stomp (client);
    pl_check (frame && streq (frame, "RECEIPT\nreceipt-id:1\n\n"));
    free (frame);
    size_t size;
    pl_wsclient_received (client, &size);
    pl_check (size == 0);
    pl_wsclient_expect_closed (client);
    pl_wsclient_destroy (&client);
    pl_wsclient_destroy (&client);
    zactor_destroy (&server);
    close (listener);

    server = s_test_listen (&listener, &port);
    int status;
    char *response = pl_wsclient_http (port, "GET", "/x", "t0k3n", NULL, &status);
    pl_check (status == 418 && strstr (response, "\r\n\r\n{}"));
    free (response);
    zactor_destroy (&server);
    close (listener);
    printf ("OK\n");
}
