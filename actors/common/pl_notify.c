/*  =========================================================================
    pl_notify - tell systemd how the actor is doing (sd_notify protocol)
    =========================================================================
*/
#include "pl_notify.h"
#include "pl_log.h"
#include "pl_util.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

//  One actor per process calls these, from its own thread
static bool s_ready = false;
static int64_t s_last_status = 0;
static int64_t s_last_watchdog = 0;

int
pl_notify (const char *message)
{
    const char *path = getenv ("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    size_t length = strlen (path);
    if ((path [0] != '/' && path [0] != '@') || length >= sizeof address.sun_path)
        return -1;
    memcpy (address.sun_path, path, length);
    //  "@name" is a socket in the abstract namespace: a leading NUL
    if (path [0] == '@')
        address.sun_path [0] = 0;
    int fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    socklen_t size = (socklen_t) (offsetof (struct sockaddr_un, sun_path) + length);
    ssize_t sent = sendto (fd, message, strlen (message), MSG_NOSIGNAL,
                           (struct sockaddr *) &address, size);
    close (fd);
    if (sent < 0) {
        pl_log_warning ("notify: %s", strerror (errno));
        return -1;
    }
    return 0;
}

static void
s_notify_with_status (const char *first, const char *status)
{
    char message [512];
    snprintf (message, sizeof message, "%s\nSTATUS=%s", first, status? status: "");
    pl_notify (message);
}

void
pl_notify_ready (const char *status)
{
    if (s_ready)
        return;
    s_ready = true;
    s_notify_with_status ("READY=1", status);
    pl_log_info ("ready: %s", status? status: "");
}

bool
pl_notify_is_ready (void)
{
    return s_ready;
}

void
pl_notify_stopping (const char *status)
{
    s_notify_with_status ("STOPPING=1", status);
}

void
pl_notify_status (const char *status)
{
    int64_t now = pl_mono_ms ();
    if (now - s_last_status < 1000)
        return;
    s_last_status = now;
    char message [512];
    snprintf (message, sizeof message, "STATUS=%s", status);
    pl_notify (message);
}

void
pl_notify_watchdog (void)
{
    const char *usec_text = getenv ("WATCHDOG_USEC");
    if (!usec_text)
        return;
    //  WATCHDOG_PID, when set, names the process the watchdog is for
    const char *pid_text = getenv ("WATCHDOG_PID");
    if (pid_text && atol (pid_text) != (long) getpid ())
        return;
    int64_t interval_ms = atoll (usec_text) / 1000 / 2;
    int64_t now = pl_mono_ms ();
    if (interval_ms <= 0 || now - s_last_watchdog < interval_ms)
        return;
    s_last_watchdog = now;
    pl_notify ("WATCHDOG=1");
}

void
pl_notify_test (bool verbose)
{
    if (verbose)
        printf (" * pl_notify: ");
    //  A socket standing in for systemd's, in the abstract namespace
    char name [64];
    snprintf (name, sizeof name, "@pl_notify_test-%d", (int) getpid ());
    int fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    pl_check (fd >= 0);
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    memcpy (address.sun_path, name, strlen (name));
    address.sun_path [0] = 0;
    int rc = bind (fd, (struct sockaddr *) &address,
                   (socklen_t) (offsetof (struct sockaddr_un, sun_path) + strlen (name)));
    pl_check (rc == 0);
    struct timeval timeout = { 1, 0 };
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);

    setenv ("NOTIFY_SOCKET", name, 1);
    setenv ("WATCHDOG_USEC", "2000", 1);
    char buffer [600];
    pl_notify_ready ("bound");
    ssize_t size = recv (fd, buffer, sizeof buffer - 1, 0);
    pl_check (size > 0);
    buffer [size] = 0;
    pl_check (strcmp (buffer, "READY=1\nSTATUS=bound") == 0);
    pl_check (pl_notify_is_ready ());
    pl_notify_ready ("again");          //  only once
    pl_notify_watchdog ();
    size = recv (fd, buffer, sizeof buffer - 1, 0);
    pl_check (size > 0);
    buffer [size] = 0;
    pl_check (strcmp (buffer, "WATCHDOG=1") == 0);
    pl_notify_stopping ("draining");
    size = recv (fd, buffer, sizeof buffer - 1, 0);
    pl_check (size > 0);
    buffer [size] = 0;
    pl_check (strcmp (buffer, "STOPPING=1\nSTATUS=draining") == 0);
    unsetenv ("NOTIFY_SOCKET");
    unsetenv ("WATCHDOG_USEC");
    //  Not under systemd: nothing happens, nothing fails
    pl_check (pl_notify ("READY=1") == 0);
    close (fd);
    if (verbose)
        printf ("OK\n");
}
