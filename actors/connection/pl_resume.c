/*  =========================================================================
    pl_resume - where one room subscription stands in its room: the seq
    cursor, and the resume that fills the gap after SUBSCRIBE with since-seq
    =========================================================================
*/
#include "pl_resume.h"
#include "pl_log.h"
#include "pl_pending.h"
#include "pl_util.h"

#include <czmq.h>
#include <jansson.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _pl_resume_t {
    char room [PL_ID_MAX + 1];
    int held_max;
    int idle_max;
    int page_size;
    const pl_resume_ops_t *ops;
    void *arg;
    uint64_t cursor;            //  highest seq delivered: later ones only
    bool resuming;              //  filling the gap, live held back
    bool asked_store;           //  the last ask went to MongoDB (else the bridge)
    zlistx_t *held;             //  live DELIVERs (pl_msg_t) held while resuming
    int idle_rounds;            //  rounds that found nothing new
    bool store_down;            //  MongoDB did not answer the last page
    bool bridge_down;           //  the bridge did not answer the last page
    pl_resume_gate_t *gate;     //  whose turn it is, per user; NULL: always ours
    char user [PL_ID_MAX + 1];
    enum { TURN_NONE, TURN_WAITING, TURN_RUNNING } turn;
};

struct _pl_resume_gate_t {
    int per_user;
    zhashx_t *users;            //  user -> s_gate_user_t
    size_t running;
    size_t waiting;
};

//  One user's resumes at a gate
typedef struct {
    int running;
    zlistx_t *waiting;          //  pl_resume_t, not owned, oldest first
} s_gate_user_t;

static void
s_gate_user_destroy (void **item_p)
{
    s_gate_user_t *user = (s_gate_user_t *) *item_p;
    if (user) {
        zlistx_destroy (&user->waiting);
        free (user);
        *item_p = NULL;
    }
}

pl_resume_gate_t *
pl_resume_gate_new (int per_user)
{
    assert (per_user > 0);
    pl_resume_gate_t *self = (pl_resume_gate_t *) calloc (1, sizeof (pl_resume_gate_t));
    if (!self)
        return NULL;
    self->per_user = per_user;
    self->users = zhashx_new ();
    if (!self->users) {
        free (self);
        return NULL;
    }
    zhashx_set_destructor (self->users, s_gate_user_destroy);
    return self;
}

void
pl_resume_gate_destroy (pl_resume_gate_t **self_p)
{
    if (*self_p) {
        zhashx_destroy (&(*self_p)->users);
        free (*self_p);
        *self_p = NULL;
    }
}

size_t
pl_resume_gate_running (pl_resume_gate_t *self)
{
    return self->running;
}

size_t
pl_resume_gate_waiting (pl_resume_gate_t *self)
{
    return self->waiting;
}

void
pl_resume_set_gate (pl_resume_t *self, pl_resume_gate_t *gate, const char *user)
{
    assert (self->turn == TURN_NONE);
    self->gate = gate;
    snprintf (self->user, sizeof self->user, "%s", user? user: "");
}

//  Take a turn at the gate: true when this resume may ask now, false when
//  it waits (out of memory counts as a turn: better unfair than stuck)
static bool
s_gate_enter (pl_resume_t *self)
{
    pl_resume_gate_t *gate = self->gate;
    if (!gate)
        return true;
    s_gate_user_t *user = (s_gate_user_t *) zhashx_lookup (gate->users, self->user);
    if (!user) {
        user = (s_gate_user_t *) calloc (1, sizeof (s_gate_user_t));
        if (user)
            user->waiting = zlistx_new ();
        if (!user || !user->waiting || zhashx_insert (gate->users, self->user, user)) {
            void *item = user;
            s_gate_user_destroy (&item);
            return true;
        }
    }
    if (user->running < gate->per_user) {
        user->running++;
        gate->running++;
        self->turn = TURN_RUNNING;
        return true;
    }
    if (!zlistx_add_end (user->waiting, self))
        return true;
    gate->waiting++;
    self->turn = TURN_WAITING;
    return false;
}

static void s_ask (pl_resume_t *self, bool from_store);

//  Give up this resume's turn (done, failed or gone): the user's oldest
//  waiting resume starts
static void
s_gate_leave (pl_resume_t *self)
{
    pl_resume_gate_t *gate = self->gate;
    s_gate_user_t *user = gate? (s_gate_user_t *) zhashx_lookup (gate->users, self->user): NULL;
    if (!user || self->turn == TURN_NONE)
        return;
    if (self->turn == TURN_WAITING) {
        zlistx_delete (user->waiting, zlistx_find (user->waiting, self));
        gate->waiting--;
    }
    else {
        user->running--;
        gate->running--;
    }
    self->turn = TURN_NONE;
    pl_resume_t *next = user->running < gate->per_user? (pl_resume_t *) zlistx_detach (user->waiting, NULL): NULL;
    if (next) {
        gate->waiting--;
        user->running++;
        gate->running++;
        next->turn = TURN_RUNNING;
        s_ask (next, false);      //  the stream first, as in pl_resume_start
    }
    else
    if (user->running == 0 && zlistx_size (user->waiting) == 0)
        zhashx_delete (gate->users, self->user);
}

//  Give up: the turn passes on, the session is told
static void
s_fail (pl_resume_t *self, const char *message)
{
    s_gate_leave (self);
    self->ops->fail (self->arg, message);
}

static void
s_held_destroy (void **item_p)
{
    pl_msg_destroy ((pl_msg_t **) item_p);
}

pl_resume_t *
pl_resume_new (const char *room, int held_max, int idle_max, int page_size,
               const pl_resume_ops_t *ops, void *arg)
{
    assert (room && ops);
    pl_resume_t *self = (pl_resume_t *) calloc (1, sizeof (pl_resume_t));
    if (!self)
        return NULL;
    self->held = zlistx_new ();
    if (!self->held) {
        free (self);
        return NULL;
    }
    zlistx_set_destructor (self->held, s_held_destroy);
    snprintf (self->room, sizeof self->room, "%s", room);
    self->held_max = held_max;
    self->idle_max = idle_max;
    self->page_size = page_size;
    self->ops = ops;
    self->arg = arg;
    return self;
}

void
pl_resume_destroy (pl_resume_t **self_p)
{
    if (*self_p) {
        s_gate_leave (*self_p);
        zlistx_destroy (&(*self_p)->held);
        free (*self_p);
        *self_p = NULL;
    }
}

static void
s_ask (pl_resume_t *self, bool from_store)
{
    self->asked_store = from_store;
    pl_log_debug ("room %s: resume asks %s after %" PRIu64, self->room,
                  from_store? "MongoDB": "the stream", self->cursor);
    self->ops->ask (self->arg, self->cursor, from_store);
}

void
pl_resume_start (pl_resume_t *self, uint64_t since)
{
    self->resuming = true;
    self->cursor = since;
    //  The stream first: a recent gap (a reconnect) is all there, and
    //  MongoDB is spared the query
    if (s_gate_enter (self))
        s_ask (self, false);
}

bool
pl_resume_active (pl_resume_t *self)
{
    return self->resuming;
}

uint64_t
pl_resume_cursor (pl_resume_t *self)
{
    return self->cursor;
}

void
pl_resume_live (pl_resume_t *self, pl_msg_t *msg)
{
    if (self->resuming) {
        //  Live messages wait until the gap before them is filled
        if (zlistx_size (self->held) >= (size_t) self->held_max) {
            s_fail (self, "slow resume: too many messages arrived meanwhile; "
                             "reconnect and resume");
            return;
        }
        zlistx_add_end (self->held, pl_msg_dup (msg));
        return;
    }
    //  An event of the room (READ_STATUS) has no seq: it passes as it comes
    uint64_t seq = pl_msg_seq (msg);
    if (seq == 0) {
        self->ops->deliver (self->arg, 0, pl_msg_body (msg), pl_msg_body_size (msg));
        return;
    }
    //  Already delivered, by the resume or by a redelivery after a restart
    if (seq <= self->cursor)
        return;
    //  A hole after what was delivered: Redis lost entries that MongoDB
    //  has (a failover, a primary back on an older copy), or they come
    //  late. Filled like a resume, with this message held until then.
    if (self->cursor > 0 && seq > self->cursor + 1) {
        pl_log_debug ("room %s: seq %" PRIu64 " after %" PRIu64 ", filling the hole",
                      self->room, seq, self->cursor);
        zlistx_add_end (self->held, pl_msg_dup (msg));
        pl_resume_start (self, self->cursor);
        return;
    }
    self->cursor = seq;
    self->ops->deliver (self->arg, seq, pl_msg_body (msg), pl_msg_body_size (msg));
}

//  The gap is filled: what arrived live meanwhile follows, then live.
static void
s_finish (pl_resume_t *self)
{
    self->resuming = false;
    s_gate_leave (self);
    //  One at a time: a hole among them starts another fill, and the rest
    //  wait behind it
    pl_msg_t *msg;
    while (!self->resuming && (msg = (pl_msg_t *) zlistx_detach (self->held, NULL))) {
        pl_resume_live (self, msg);
        pl_msg_destroy (&msg);
    }
}

//  Deliver what in a page continues the cursor. Returns the number of
//  messages in the page, or -1 when the page is not an array or the
//  session closed meanwhile (it has been told, or is going anyway).
static int
s_deliver_page (pl_resume_t *self, pl_msg_t *result)
{
    json_t *array = json_loadb (pl_msg_body (result), pl_msg_body_size (result), 0, NULL);
    if (!json_is_array (array)) {
        json_decref (array);
        s_fail (self, "resume failed: bad answer, subscribe again");
        return -1;
    }
    bool closed = false;
    size_t index;
    json_t *message;
    json_array_foreach (array, index, message) {
        json_int_t seq = json_integer_value (json_object_get (message, "seq"));
        if (seq <= 0 || (uint64_t) seq <= self->cursor)
            continue;
        if ((uint64_t) seq != self->cursor + 1)
            break;              //  a hole: ask again from the cursor
        char *body = json_dumps (message, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (body) {
            if (self->ops->deliver (self->arg, (uint64_t) seq, body, strlen (body)))
                closed = true;
            free (body);
        }
        self->cursor = (uint64_t) seq;
    }
    int count = (int) json_array_size (array);
    json_decref (array);
    return closed? -1: count;
}

//  One page of the gap came back: deliver what continues the cursor, then
//  decide where to ask next.
static void
s_page (pl_resume_t *self, pl_msg_t *result)
{
    uint64_t before = self->cursor;
    int count = s_deliver_page (self, result);
    if (count < 0)
        return;
    bool progressed = self->cursor > before;
    self->idle_rounds = progressed? 0: self->idle_rounds + 1;
    if (self->asked_store) {
        self->store_down = false;
        //  A full page: MongoDB may have more; else the stream has the rest
        s_ask (self, count >= self->page_size && progressed);
        return;
    }
    self->bridge_down = false;
    uint64_t last_seq = pl_msg_seq (result);
    if (self->cursor >= last_seq)
        s_finish (self);
    else
    if (progressed)
        s_ask (self, false);
    else
    if (self->store_down)
        //  The next seq is only in MongoDB, and MongoDB is not there
        s_fail (self, "resume failed: persistence unavailable, try again");
    else {
        //  Neither MongoDB nor the stream has the next seq: persisted and
        //  trimmed meanwhile (MongoDB has it now), or never to be stored
        //  (dead-lettered): after a few rounds, go past it
        if (self->idle_rounds > self->idle_max) {
            pl_log_warning ("room %s: seq %" PRIu64 " is in neither MongoDB nor the stream, skipped",
                            self->room, self->cursor + 1);
            self->cursor++;
            self->idle_rounds = 0;
        }
        s_ask (self, true);
    }
}

void
pl_resume_answer (pl_resume_t *self, pl_msg_t *result)
{
    if (!self->resuming)
        return;
    if (pl_msg_status (result) != 200)
        pl_log_debug ("room %s: resume page from %s failed (%u)", self->room,
                      self->asked_store? "MongoDB": "the stream", pl_msg_status (result));
    if (pl_msg_status (result) == 200)
        s_page (self, result);
    else
    if (self->asked_store && !self->store_down) {
        //  What is not stored yet is still in the stream: try there
        self->store_down = true;
        s_ask (self, false);
    }
    else
    if (!self->asked_store && !self->bridge_down) {
        //  Redis away: MongoDB may hold the gap, or a part of it
        self->bridge_down = true;
        s_ask (self, true);
    }
    else {
        char reason [256], message [300];
        pl_pending_reason (result, reason, sizeof reason);
        snprintf (message, sizeof message, "resume failed: %s", reason);
        s_fail (self, message);
    }
}


//  --------------------------------------------------------------------------
//  Selftest: a subscription that writes down what the resume did

typedef struct {
    char delivered [256];       //  seqs, comma-separated
    char asked [64];            //  last ask: "S5" MongoDB after 5, "B5" the bridge
    int asks;
    char failed [128];          //  the fail message, or ""
    bool closing;               //  deliver answers -1
} test_sub_t;

static int
s_test_deliver (void *arg, uint64_t seq, const char *body, size_t size)
{
    test_sub_t *sub = (test_sub_t *) arg;
    pl_check (body && size > 0);
    size_t used = strlen (sub->delivered);
    snprintf (sub->delivered + used, sizeof sub->delivered - used, "%s%" PRIu64,
              used? ",": "", seq);
    return sub->closing? -1: 0;
}

static void
s_test_ask (void *arg, uint64_t cursor, bool from_store)
{
    test_sub_t *sub = (test_sub_t *) arg;
    snprintf (sub->asked, sizeof sub->asked, "%c%" PRIu64, from_store? 'S': 'B', cursor);
    sub->asks++;
}

static void
s_test_fail (void *arg, const char *message)
{
    test_sub_t *sub = (test_sub_t *) arg;
    snprintf (sub->failed, sizeof sub->failed, "%s", message);
}

static const pl_resume_ops_t s_test_ops = { s_test_deliver, s_test_ask, s_test_fail };

//  A live DELIVER of room r1
static void
s_test_live (pl_resume_t *resume, uint64_t seq)
{
    pl_msg_t *msg = pl_msg_new (PL_MSG_DELIVER);
    pl_check (msg);
    char body [64];
    snprintf (body, sizeof body, "{\"roomId\":\"r1\",\"seq\":%" PRIu64 "}", seq);
    pl_msg_set_room (msg, "r1");
    pl_msg_set_seq (msg, seq);
    pl_msg_set_body (msg, body, strlen (body));
    pl_resume_live (resume, msg);
    pl_msg_destroy (&msg);
}

//  An answer with the messages first..last (none when first > last); seq
//  is the room's last seq for a REPLAY
static void
s_test_page (pl_resume_t *resume, uint32_t status, uint64_t first, uint64_t last, uint64_t seq)
{
    pl_buf_t body;
    pl_buf_init (&body);
    pl_buf_printf (&body, "[");
    for (uint64_t at = first; at <= last; at++)
        pl_buf_printf (&body, "%s{\"roomId\":\"r1\",\"seq\":%" PRIu64 ",\"content\":\"x\"}",
                       at == first? "": ",", at);
    pl_buf_printf (&body, "]");
    pl_msg_t *result = pl_msg_new (PL_MSG_RESULT);
    pl_check (result);
    pl_msg_set_status (result, status);
    pl_msg_set_seq (result, seq);
    if (status == 200)
        pl_msg_set_body (result, pl_buf_head (&body), pl_buf_pending (&body));
    pl_buf_free (&body);
    pl_resume_answer (resume, result);
    pl_msg_destroy (&result);
}

static pl_resume_t *
s_test_new (test_sub_t *sub)
{
    memset (sub, 0, sizeof *sub);
    //  At most 3 held, skip after 2 idle rounds, pages of 4
    pl_resume_t *resume = pl_resume_new ("r1", 3, 2, 4, &s_test_ops, sub);
    pl_check (resume);
    return resume;
}

//  In order and once: live only, then a whole resume
static void
s_test_in_order (void)
{
    test_sub_t sub;
    //  Live only: in order, redeliveries dropped
    pl_resume_t *resume = s_test_new (&sub);
    s_test_live (resume, 3);
    s_test_live (resume, 4);
    s_test_live (resume, 4);
    s_test_live (resume, 3);
    s_test_live (resume, 5);
    pl_check (streq (sub.delivered, "3,4,5"));
    pl_check (pl_resume_cursor (resume) == 5 && !pl_resume_active (resume));
    pl_check (sub.asks == 0);
    //  A hole (Redis lost 6 and 7, MongoDB has them): filled before 8,
    //  and what comes meanwhile waits behind; a second hole among what
    //  waited is filled in turn
    s_test_live (resume, 8);
    pl_check (pl_resume_active (resume) && streq (sub.asked, "B5"));
    s_test_live (resume, 9);
    s_test_live (resume, 11);
    s_test_page (resume, 200, 1, 0, 9);
    pl_check (streq (sub.asked, "S5"));
    s_test_page (resume, 200, 6, 7, 0);
    pl_check (streq (sub.asked, "B7"));
    s_test_page (resume, 200, 8, 9, 9);
    pl_check (streq (sub.delivered, "3,4,5,6,7,8,9"));
    pl_check (pl_resume_active (resume) && streq (sub.asked, "B9"));
    s_test_page (resume, 200, 10, 11, 11);
    pl_check (streq (sub.delivered, "3,4,5,6,7,8,9,10,11") && !pl_resume_active (resume));
    pl_resume_destroy (&resume);
    pl_resume_destroy (&resume);

    //  The stream first: trimmed past the cursor, so MongoDB, a full page
    //  then a short one; the bridge has the rest; what came live meanwhile
    //  follows, once
    resume = s_test_new (&sub);
    pl_resume_start (resume, 2);
    pl_check (pl_resume_active (resume) && streq (sub.asked, "B2"));
    s_test_live (resume, 12);
    s_test_live (resume, 13);
    pl_check (streq (sub.delivered, ""));
    s_test_page (resume, 200, 7, 12, 12);
    pl_check (streq (sub.delivered, "") && streq (sub.asked, "S2"));
    s_test_page (resume, 200, 3, 6, 0);
    pl_check (streq (sub.delivered, "3,4,5,6") && streq (sub.asked, "S6"));
    s_test_page (resume, 200, 7, 8, 0);
    pl_check (streq (sub.asked, "B8"));
    s_test_page (resume, 200, 7, 12, 12);
    pl_check (!pl_resume_active (resume));
    pl_check (streq (sub.delivered, "3,4,5,6,7,8,9,10,11,12,13"));
    s_test_live (resume, 13);
    s_test_live (resume, 14);
    pl_check (streq (sub.delivered, "3,4,5,6,7,8,9,10,11,12,13,14"));
    pl_check (pl_resume_cursor (resume) == 14);
    //  An answer after the end changes nothing
    s_test_page (resume, 200, 15, 16, 16);
    pl_check (pl_resume_cursor (resume) == 14);
    pl_resume_destroy (&resume);
}

//  Holes: in a page, and before the first seq the bridge still has
static void
s_test_holes (void)
{
    test_sub_t sub;
    //  A hole in a page: ask again from the cursor; the bridge's first seq
    //  is past the cursor (trimmed meanwhile): MongoDB again
    pl_resume_t *resume = s_test_new (&sub);
    pl_resume_start (resume, 0);
    pl_check (streq (sub.asked, "B0"));
    s_test_page (resume, 200, 1, 1, 5);
    pl_check (streq (sub.asked, "B1"));
    s_test_page (resume, 200, 3, 5, 5);
    pl_check (streq (sub.delivered, "1") && streq (sub.asked, "S1"));
    s_test_page (resume, 200, 2, 3, 0);
    pl_check (streq (sub.asked, "B3"));
    s_test_page (resume, 200, 4, 5, 5);
    pl_check (streq (sub.delivered, "1,2,3,4,5") && !pl_resume_active (resume));
    pl_resume_destroy (&resume);
}

//  Stores down, a seq nobody has, too many held, a bad answer, closing
static void
s_test_failures (void)
{
    test_sub_t sub;
    //  The bridge down: MongoDB; down too: the session fails
    pl_resume_t *resume = s_test_new (&sub);
    pl_resume_start (resume, 10);
    s_test_page (resume, 503, 0, 0, 0);
    pl_check (streq (sub.asked, "S10") && !*sub.failed);
    s_test_page (resume, 503, 0, 0, 0);
    pl_check (streq (sub.asked, "B10") && !*sub.failed);
    s_test_page (resume, 503, 0, 0, 0);
    pl_check (streq (sub.failed, "resume failed: request failed (503)"));
    pl_resume_destroy (&resume);
    //  MongoDB down and the bridge does not have the next seq either
    resume = s_test_new (&sub);
    pl_resume_start (resume, 10);
    s_test_page (resume, 200, 12, 13, 13);
    pl_check (streq (sub.asked, "S10"));
    s_test_page (resume, 503, 0, 0, 0);
    pl_check (streq (sub.asked, "B10") && !*sub.failed);
    s_test_page (resume, 200, 12, 13, 13);
    pl_check (streq (sub.failed, "resume failed: persistence unavailable, try again"));
    pl_resume_destroy (&resume);

    //  A seq nobody has is skipped after idle_max rounds
    resume = s_test_new (&sub);
    pl_resume_start (resume, 0);
    s_test_page (resume, 200, 2, 3, 3);             //  the bridge starts at 2
    pl_check (streq (sub.asked, "S0"));
    s_test_page (resume, 200, 1, 0, 0);             //  MongoDB: nothing
    pl_check (streq (sub.asked, "B0"));
    s_test_page (resume, 200, 2, 3, 3);             //  a third round: skipped
    pl_check (streq (sub.asked, "S1"));
    pl_check (pl_resume_cursor (resume) == 1 && streq (sub.delivered, ""));
    s_test_page (resume, 200, 2, 3, 0);
    pl_check (streq (sub.asked, "B3"));
    s_test_page (resume, 200, 4, 3, 3);
    pl_check (streq (sub.delivered, "2,3") && !pl_resume_active (resume));
    pl_resume_destroy (&resume);

    //  Too many live messages while resuming; a bad answer
    resume = s_test_new (&sub);
    pl_resume_start (resume, 0);
    for (uint64_t seq = 10; seq < 13; seq++)
        s_test_live (resume, seq);
    pl_check (!*sub.failed);
    s_test_live (resume, 13);
    pl_check (strncmp (sub.failed, "slow resume", 11) == 0);
    pl_resume_destroy (&resume);
    resume = s_test_new (&sub);
    pl_resume_start (resume, 0);
    pl_msg_t *result = pl_msg_new (PL_MSG_RESULT);
    pl_msg_set_status (result, 200);
    pl_msg_set_body (result, "{}", 2);
    pl_resume_answer (resume, result);
    pl_msg_destroy (&result);
    pl_check (streq (sub.failed, "resume failed: bad answer, subscribe again"));
    pl_resume_destroy (&resume);

    //  The session closes while a page goes out: nothing more is asked
    resume = s_test_new (&sub);
    pl_resume_start (resume, 0);
    sub.closing = true;
    s_test_page (resume, 200, 1, 2, 0);
    pl_check (streq (sub.delivered, "1,2") && sub.asks == 1);
    pl_resume_destroy (&resume);
}

//  The gate: one resume of a user at a time, the others wait their turn;
//  another user is not held up; a gone one passes its turn on
static void
s_test_gate (void)
{
    pl_resume_gate_t *gate = pl_resume_gate_new (1);
    pl_check (gate);
    test_sub_t subs [4];
    pl_resume_t *resumes [4];
    for (int index = 0; index < 4; index++) {
        resumes [index] = s_test_new (&subs [index]);
        pl_resume_set_gate (resumes [index], gate, index < 3? "u1": "u2");
        pl_resume_start (resumes [index], 0);
        pl_check (pl_resume_active (resumes [index]));
    }
    //  u1's first and u2's asked; u1's second and third wait
    pl_check (subs [0].asks == 1 && subs [1].asks == 0 && subs [2].asks == 0 && subs [3].asks == 1);
    pl_check (pl_resume_gate_running (gate) == 2 && pl_resume_gate_waiting (gate) == 2);
    //  Waiting, live messages are held like in any resume
    s_test_live (resumes [1], 1);
    pl_check (streq (subs [1].delivered, ""));
    //  The first finishes: the second asks
    s_test_page (resumes [0], 200, 1, 1, 0);
    s_test_page (resumes [0], 200, 2, 1, 1);
    pl_check (!pl_resume_active (resumes [0]) && subs [1].asks == 1 && subs [2].asks == 0);
    //  The second goes (its session closed): the third asks
    pl_resume_destroy (&resumes [1]);
    pl_check (subs [2].asks == 1 && streq (subs [2].asked, "B0"));
    //  A failed one passes its turn too; a gone waiting one just leaves
    pl_resume_t *late = s_test_new (&subs [1]);
    pl_resume_set_gate (late, gate, "u1");
    pl_resume_start (late, 0);
    pl_check (subs [1].asks == 0 && pl_resume_gate_waiting (gate) == 1);
    pl_resume_destroy (&late);
    pl_check (pl_resume_gate_waiting (gate) == 0 && subs [1].asks == 0);
    for (int failed = 0; failed < 3; failed++)
        s_test_page (resumes [2], 503, 0, 0, 0);
    pl_check (*subs [2].failed && pl_resume_gate_running (gate) == 1);
    for (int index = 0; index < 4; index++)
        pl_resume_destroy (&resumes [index]);
    pl_check (pl_resume_gate_running (gate) == 0);
    pl_resume_gate_destroy (&gate);
    pl_resume_gate_destroy (&gate);
}

void
pl_resume_test (bool verbose)
{
    printf (" * pl_resume: ");
    if (verbose)
        printf ("\n");
    s_test_in_order ();
    s_test_holes ();
    s_test_failures ();
    s_test_gate ();
    printf ("OK\n");
}
