/*  =========================================================================
    pl_interest - the rooms a connection actor has joined at the router, and
    which subscribers here want each (or, made with pl_interest_new_users,
    the users whose events it watches, and which subscribers want each)

    The first subscriber of a room sends JOIN, the last one to go sends
    LEAVE, so the router routes a room's DELIVERs here exactly while
    someone wants them. After a router restart (RESYNC) every room is
    joined again. A subscriber is an opaque pointer to the caller.
    =========================================================================
*/
#ifndef PL_INTEREST_H_INCLUDED
#define PL_INTEREST_H_INCLUDED

#include "pl_link.h"

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct _pl_interest_t pl_interest_t;

//  Create an empty table that sends through link. Returns NULL when out
//  of memory.
pl_interest_t *
    pl_interest_new (pl_link_t *link);

//  The same for users: the /user/queue/events subscribers of each user,
//  with WATCH and UNWATCH (the user in the user field) for JOIN and LEAVE.
pl_interest_t *
    pl_interest_new_users (pl_link_t *link);

//  The same for presence: keys "<room> <user>", the room subscriptions of
//  each user, with PRESENT and ABSENT (room and user fields).
pl_interest_t *
    pl_interest_new_presence (pl_link_t *link);

//  Destroy it (no LEAVEs). Safe on NULL and twice.
void
    pl_interest_destroy (pl_interest_t **self_p);

//  Add a subscriber (not NULL) to a room: JOIN when it is the first.
//  Returns the handle to remove it by, or NULL when out of memory.
void *
    pl_interest_add (pl_interest_t *self, const char *room, void *subscriber);

//  Remove a subscriber by its handle: LEAVE when it was the last.
void
    pl_interest_remove (pl_interest_t *self, const char *room, void *handle);

//  The subscribers of a room in the order they came, or NULL when none.
//  The list is the table's: do not add or remove while going through it.
zlistx_t *
    pl_interest_subscribers (pl_interest_t *self, const char *room);

//  The router counted room as joined for a subscriber that is gone: LEAVE
//  unless another subscriber here wants it.
void
    pl_interest_release (pl_interest_t *self, const char *room);

//  JOIN every room again (the router restarted).
void
    pl_interest_resync (pl_interest_t *self);

//  Rooms with subscribers.
size_t
    pl_interest_size (pl_interest_t *self);

void
    pl_interest_test (bool verbose);

#endif
