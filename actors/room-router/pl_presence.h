/*  =========================================================================
    pl_presence - who is online in which room, on every host

    This host's part comes from its connection actors (PRESENT/ABSENT per
    room and user); the other hosts' parts come as broadcasts (Redis
    pub/sub through the bridge: best effort). For each room and user it
    keeps the hosts where the user is online, each with when it was last
    heard, and says ENTER {"type":"ENTER","roomId":..,"userId":..} to the
    room when the first host appears and LEAVE when the last one goes, so
    a user with several sessions on several hosts enters once and leaves
    once.

    What it publishes: ENTER/LEAVE of this host's part as it changes, and
    every refresh (a third of the timeout) its whole part in PRESENCE
    pieces, so a lost message heals and the others know this host lives;
    a host not heard for the timeout (it died) drops out, its users leave.
    Its first PRESENCE says reset (a restarted host's old part goes). For
    a refresh and a second after it starts it only learns: a starting host
    does not announce everyone already online.

    No sockets: it publishes and tells rooms through the ops the router
    gives; broadcasts come in through pl_presence_heard.
    =========================================================================
*/
#ifndef PL_PRESENCE_H_INCLUDED
#define PL_PRESENCE_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _pl_presence_t pl_presence_t;

typedef struct {
    //  Send payload to every host's router (this one's too)
    void (*publish) (void *arg, const char *payload);
    //  Hand an event (ENTER/LEAVE JSON) to room's subscribers on this host
    void (*event) (void *arg, const char *room, const char *body);
} pl_presence_ops_t;

//  host: this host's id; timeout_ms: presence-timeout-s; payload_max: the
//  largest broadcast (broadcast-max-bytes); now: monotonic ms. NULL when
//  out of memory.
pl_presence_t *
    pl_presence_new (const char *host, int64_t timeout_ms, size_t payload_max,
                     const pl_presence_ops_t *ops, void *arg, int64_t now);

void
    pl_presence_destroy (pl_presence_t **self_p);

//  PRESENT and ABSENT of a connection actor.
void
    pl_presence_present (pl_presence_t *self, const char *conn, const char *room, const char *user,
                         int64_t now);
void
    pl_presence_absent (pl_presence_t *self, const char *conn, const char *room, const char *user,
                        int64_t now);

//  A connection actor restarted or went silent: its users are gone.
void
    pl_presence_conn_gone (pl_presence_t *self, const char *conn, int64_t now);

//  A broadcast heard (the parsed body of a BROADCAST); what is not presence
//  is ignored.
void
    pl_presence_heard (pl_presence_t *self, json_t *message, int64_t now);

//  Refresh and expiry; call at least every second.
void
    pl_presence_tick (pl_presence_t *self, int64_t now);

//  The users online in room, sorted (a new array).
json_t *
    pl_presence_online (pl_presence_t *self, const char *room);

void
    pl_presence_test (bool verbose);

#endif
