/*  =========================================================================
    pl_resume - where one room subscription stands in its room: the seq
    cursor, and the resume that fills the gap after SUBSCRIBE with since-seq

    Every room subscription has one. Live messages go out in seq order, once:
    one at or below the cursor (a redelivery after a restart, or one the
    resume sent already) is dropped. While a resume runs, live messages are
    held back and the gap is asked for page by page: from the bridge
    first (a recent gap is all in the stream), from MongoDB for what the
    stream no longer has, then the bridge again (proto/SPEC.md, "Resume");
    once the cursor reaches the room's last seq as the bridge saw
    it, the held messages follow. A seq neither has is skipped after a few
    rounds that found nothing.

    No sockets: the subscription sends, asks and fails through the hooks it
    gives, so a selftest drives a resume with hand-made RESULTs.
    =========================================================================
*/
#ifndef PL_RESUME_H_INCLUDED
#define PL_RESUME_H_INCLUDED

#include "pl_msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _pl_resume_t pl_resume_t;

//  The resumes of one connection actor, per user: at most per_user of a
//  user's resumes ask at once, the others wait their turn (oldest first),
//  so one user's 256 resuming subscriptions cannot flood the stores.
typedef struct _pl_resume_gate_t pl_resume_gate_t;

//  Create a gate letting per_user resumes of a user run at once. Returns
//  NULL when out of memory.
pl_resume_gate_t *
    pl_resume_gate_new (int per_user);

//  Destroy it, after every resume that used it. Safe on NULL and twice.
void
    pl_resume_gate_destroy (pl_resume_gate_t **self_p);

//  Resumes running and waiting, of all users (for status records).
size_t
    pl_resume_gate_running (pl_resume_gate_t *self);
size_t
    pl_resume_gate_waiting (pl_resume_gate_t *self);

//  What a resume asks of its subscription; arg is passed back to each.
typedef struct {
    //  Queue one MESSAGE of the room (body: the delivered JSON). Returns
    //  0, or -1 when the session is closing and takes nothing more.
    int (*deliver) (void *arg, uint64_t seq, const char *body, size_t size);
    //  Ask for the messages after cursor: MongoDB (QUERY room.since) when
    //  from_store, else the bridge (REPLAY). The answer goes to
    //  pl_resume_answer; a request that cannot be sent fails the session.
    void (*ask) (void *arg, uint64_t cursor, bool from_store);
    //  Give up: the session ends with this ERROR message.
    void (*fail) (void *arg, const char *message);
} pl_resume_ops_t;

//  Create the position of a subscription to room: nothing delivered yet.
//  held_max live messages at most wait while resuming; after idle_max
//  rounds that found nothing a missing seq is skipped; page_size is the
//  most messages one answer from MongoDB holds. Returns NULL when out of
//  memory.
pl_resume_t *
    pl_resume_new (const char *room, int held_max, int idle_max, int page_size,
                   const pl_resume_ops_t *ops, void *arg);

//  Let this resume run only when the gate lets user's next one run (set
//  before pl_resume_start; without a gate it runs at once).
void
    pl_resume_set_gate (pl_resume_t *self, pl_resume_gate_t *gate, const char *user);

//  Destroy it, with any held messages; its turn passes to the user's next
//  waiting resume. Safe on NULL and twice.
void
    pl_resume_destroy (pl_resume_t **self_p);

//  Start filling the gap after since: live messages are held from now,
//  and the first page is asked of MongoDB (once the gate lets it).
void
    pl_resume_start (pl_resume_t *self, uint64_t since);

//  True while the gap is being filled.
bool
    pl_resume_active (pl_resume_t *self);

//  The highest seq delivered (or resumed from).
uint64_t
    pl_resume_cursor (pl_resume_t *self);

//  A live DELIVER of the room: delivered now, held, or dropped as a
//  redelivery. Held ones over held_max fail the session.
void
    pl_resume_live (pl_resume_t *self, pl_msg_t *msg);

//  The RESULT of the last ask, while active: deliver the page and ask
//  again, finish, or fail.
void
    pl_resume_answer (pl_resume_t *self, pl_msg_t *result);

void
    pl_resume_test (bool verbose);

#endif
