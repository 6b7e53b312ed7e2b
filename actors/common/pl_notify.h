/*  =========================================================================
    pl_notify - tell systemd how the actor is doing (sd_notify protocol)

    Type=notify units: READY=1 once the actor's sockets are bound and its
    peers reachable, WATCHDOG=1 from the actor's own loop (a stuck loop gets
    the unit restarted), STOPPING=1 when it starts to drain, STATUS= with its
    key figures. Without $NOTIFY_SOCKET (not under systemd) every call does
    nothing. The protocol is one datagram per message on a unix socket, so
    no libsystemd is needed.
    =========================================================================
*/
#ifndef PL_NOTIFY_H_INCLUDED
#define PL_NOTIFY_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

//  Send one notification ("READY=1\nSTATUS=..."). Returns 0, or -1 when
//  $NOTIFY_SOCKET is set but the message could not be sent.
int pl_notify (const char *message);

//  READY=1 with a status line, once; later calls do nothing.
void pl_notify_ready (const char *status);
bool pl_notify_is_ready (void);

//  STOPPING=1 with a status line.
void pl_notify_stopping (const char *status);

//  STATUS= line (key figures), at most once a second whatever the callers do.
void pl_notify_status (const char *status);

//  WATCHDOG=1 when half of $WATCHDOG_USEC has passed since the last one;
//  call it from every turn of the actor's loop.
void pl_notify_watchdog (void);

void pl_notify_test (bool verbose);

#endif
