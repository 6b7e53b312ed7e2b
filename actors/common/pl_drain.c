/*  =========================================================================
    pl_drain - the one receive-and-dispatch loop of every actor
    =========================================================================
*/
#include "pl_drain.h"
#include "pl_log.h"
#include "pl_util.h"

int
pl_drain (zsock_t *socket, int budget, const char *from, pl_drain_fn *handler, void *actor)
{
    assert (socket && handler);
    int handled = 0;
    while (budget <= 0 || handled < budget) {
        bool malformed = false;
        pl_msg_t *message = pl_msg_recv_nowait (socket, &malformed);
        if (!message) {
            if (malformed)
                continue;       //  logged and dropped; the next may be fine
            break;
        }
        if (pl_log_verbose ()) {
            char line [256];
            pl_msg_print (message, line, sizeof line);
            const char *peer = *pl_msg_routing_id (message)? pl_msg_routing_id (message): from;
            pl_log_debug ("%s: %s", peer? peer: "?", line);
        }
        handler (actor, &message);
        pl_msg_destroy (&message);
        handled++;
    }
    return handled;
}

//  --------------------------------------------------------------------------
//  Selftest

typedef struct {
    int seen;
    pl_msg_t *kept;
} s_test_actor_t;

static void
s_test_handler (void *actor, pl_msg_t **message_p)
{
    s_test_actor_t *test = (s_test_actor_t *) actor;
    test->seen++;
    if (pl_msg_corr (*message_p) == 3 && !test->kept) {
        test->kept = *message_p;
        *message_p = NULL;
    }
}

void
pl_drain_test (bool verbose)
{
    if (verbose)
        printf (" * pl_drain: ");
    zsock_t *pull = zsock_new_pull ("inproc://pl-drain-test");
    zsock_t *push = zsock_new_push (">inproc://pl-drain-test");
    pl_check (pull && push);
    for (uint64_t corr = 1; corr <= 5; corr++) {
        pl_msg_t *message = pl_msg_new (PL_MSG_QUERY);
        pl_msg_set_corr (message, corr);
        pl_check (pl_msg_send (&message, push) == 0);
    }
    //  A malformed frame in between is skipped, not the end of the turn
    zstr_send (push, "not an envelope");
    pl_msg_t *message = pl_msg_new (PL_MSG_QUERY);
    pl_check (pl_msg_send (&message, push) == 0);
    zclock_sleep (50);

    s_test_actor_t test = { 0, NULL };
    //  The budget bounds one turn; the next turn takes the rest
    pl_check (pl_drain (pull, 4, "test", s_test_handler, &test) == 4);
    pl_check (test.seen == 4);
    pl_check (test.kept && pl_msg_corr (test.kept) == 3);
    pl_check (pl_drain (pull, 0, "test", s_test_handler, &test) == 2);
    pl_check (test.seen == 6);
    pl_check (pl_drain (pull, 0, "test", s_test_handler, &test) == 0);
    pl_msg_destroy (&test.kept);
    zsock_destroy (&push);
    zsock_destroy (&pull);
    if (verbose)
        printf ("OK\n");
}
