/*  =========================================================================
    pl_interest - the rooms a connection actor has joined at the router, and
    which subscribers here want each
    =========================================================================
*/
#include "pl_interest.h"
#include "pl_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  What the keys are, and the commands that say the first came and the
//  last went
typedef struct {
    pl_msg_command_t join, leave;
    bool user_key;              //  the key is a user (else a room)
    bool room_user_key;         //  the key is "<room> <user>"
} s_kind_t;

static const s_kind_t s_rooms = { PL_MSG_JOIN, PL_MSG_LEAVE, false, false };
static const s_kind_t s_users = { PL_MSG_WATCH, PL_MSG_UNWATCH, true, false };
static const s_kind_t s_presence = { PL_MSG_PRESENT, PL_MSG_ABSENT, false, true };

struct _pl_interest_t {
    pl_link_t *link;
    zhashx_t *rooms;            //  key -> zlistx_t of subscribers, never empty
    const s_kind_t *kind;
};

static void
s_list_destroy (zlistx_t **list_p)
{
    zlistx_destroy (list_p);
}

//  The kind's join command (JOIN, WATCH, PRESENT), else its leave command
static void
s_send (pl_interest_t *self, bool join, const char *key)
{
    pl_msg_t *msg = pl_msg_new (join? self->kind->join: self->kind->leave);
    if (!msg)
        return;
    const char *space = self->kind->room_user_key? strchr (key, ' '): NULL;
    if (self->kind->user_key)
        pl_msg_set_user (msg, key);
    else
    if (space) {
        char room [PL_ID_MAX + 1];
        snprintf (room, sizeof room, "%.*s", (int) (space - key), key);
        pl_msg_set_room (msg, room);
        pl_msg_set_user (msg, space + 1);
    }
    else
        pl_msg_set_room (msg, key);
    self->link->send (self->link->arg, &msg);
}

pl_interest_t *
pl_interest_new (pl_link_t *link)
{
    assert (link);
    pl_interest_t *self = (pl_interest_t *) calloc (1, sizeof (pl_interest_t));
    if (!self)
        return NULL;
    self->link = link;
    self->kind = &s_rooms;
    self->rooms = zhashx_new ();
    if (!self->rooms) {
        free (self);
        return NULL;
    }
    zhashx_set_destructor (self->rooms, (zhashx_destructor_fn *) s_list_destroy);
    return self;
}

pl_interest_t *
pl_interest_new_presence (pl_link_t *link)
{
    pl_interest_t *self = pl_interest_new (link);
    if (self)
        self->kind = &s_presence;
    return self;
}

pl_interest_t *
pl_interest_new_users (pl_link_t *link)
{
    pl_interest_t *self = pl_interest_new (link);
    if (self)
        self->kind = &s_users;
    return self;
}

void
pl_interest_destroy (pl_interest_t **self_p)
{
    if (*self_p) {
        zhashx_destroy (&(*self_p)->rooms);
        free (*self_p);
        *self_p = NULL;
    }
}

void *
pl_interest_add (pl_interest_t *self, const char *room, void *subscriber)
{
    assert (subscriber);
    zlistx_t *list = (zlistx_t *) zhashx_lookup (self->rooms, room);
    if (!list) {
        list = zlistx_new ();
        if (!list)
            return NULL;
        zhashx_insert (self->rooms, room, list);
        s_send (self, true, room);
    }
    return zlistx_add_end (list, subscriber);
}

void
pl_interest_remove (pl_interest_t *self, const char *room, void *handle)
{
    zlistx_t *list = (zlistx_t *) zhashx_lookup (self->rooms, room);
    assert (list && handle);
    zlistx_delete (list, handle);
    if (zlistx_size (list) == 0) {
        //  Copy: the key may be the caller's, about to go with the entry
        char copy [PL_ID_MAX + 1];
        snprintf (copy, sizeof copy, "%s", room);
        zhashx_delete (self->rooms, copy);
        s_send (self, false, copy);
    }
}

zlistx_t *
pl_interest_subscribers (pl_interest_t *self, const char *room)
{
    return (zlistx_t *) zhashx_lookup (self->rooms, room);
}

void
pl_interest_release (pl_interest_t *self, const char *room)
{
    if (!zhashx_lookup (self->rooms, room) && pl_id_valid (room))
        s_send (self, false, room);
}

void
pl_interest_resync (pl_interest_t *self)
{
    for (void *list = zhashx_first (self->rooms); list; list = zhashx_next (self->rooms))
        s_send (self, true, (const char *) zhashx_cursor (self->rooms));
}

size_t
pl_interest_size (pl_interest_t *self)
{
    return zhashx_size (self->rooms);
}


//  --------------------------------------------------------------------------
//  Selftest

void
pl_interest_test (bool verbose)
{
    printf (" * pl_interest: ");
    if (verbose)
        printf ("\n");
    pl_config_t *config = pl_config_new_default ();
    pl_check (config);
    pl_check (pl_config_set (config, "jwt-secret", "pl_interest_test-secret-of-32-bytes-or-more") == 0);
    pl_check (pl_config_finish (config) == 0);
    pl_link_fake_t *fake = pl_link_fake_new (config);
    pl_interest_t *rooms = pl_interest_new (&fake->link);
    pl_check (rooms);
    int a, b, c;

    //  JOIN on the first subscriber only, LEAVE after the last
    void *handle_a = pl_interest_add (rooms, "r1", &a);
    pl_link_fake_expect (fake, PL_MSG_JOIN, "r1");
    void *handle_b = pl_interest_add (rooms, "r1", &b);
    void *handle_c = pl_interest_add (rooms, "r2", &c);
    pl_link_fake_expect (fake, PL_MSG_JOIN, "r2");
    pl_check (zlistx_size (fake->sent) == 0);
    pl_check (pl_interest_size (rooms) == 2);
    zlistx_t *list = pl_interest_subscribers (rooms, "r1");
    pl_check (list && zlistx_size (list) == 2 && zlistx_first (list) == &a);
    pl_check (pl_interest_subscribers (rooms, "r3") == NULL);
    pl_interest_remove (rooms, "r1", handle_a);
    pl_check (zlistx_size (fake->sent) == 0);

    //  Giving back a room counted for someone gone: only when nobody here
    //  wants it
    pl_interest_release (rooms, "r1");
    pl_interest_release (rooms, "not valid!");
    pl_check (zlistx_size (fake->sent) == 0);
    pl_interest_release (rooms, "r9");
    pl_link_fake_expect (fake, PL_MSG_LEAVE, "r9");

    //  Every room again, in no particular order
    pl_interest_resync (rooms);
    pl_msg_t *first = pl_link_fake_take (fake, PL_MSG_JOIN);
    pl_msg_t *second = pl_link_fake_take (fake, PL_MSG_JOIN);
    pl_check (streq (pl_msg_room (first), "r1")? streq (pl_msg_room (second), "r2")
                                               : streq (pl_msg_room (second), "r1"));
    pl_msg_destroy (&first);
    pl_msg_destroy (&second);
    pl_interest_remove (rooms, "r1", handle_b);
    pl_link_fake_expect (fake, PL_MSG_LEAVE, "r1");
    pl_interest_remove (rooms, "r2", handle_c);
    pl_link_fake_expect (fake, PL_MSG_LEAVE, "r2");
    pl_check (pl_interest_size (rooms) == 0);

    pl_interest_add (rooms, "r4", &a);
    pl_link_fake_expect (fake, PL_MSG_JOIN, "r4");
    pl_interest_destroy (&rooms);
    pl_interest_destroy (&rooms);

    //  Users: WATCH on the first, UNWATCH after the last, again on resync
    pl_interest_t *users = pl_interest_new_users (&fake->link);
    pl_check (users);
    void *watch_a = pl_interest_add (users, "u1", &a);
    void *watch_b = pl_interest_add (users, "u1", &b);
    pl_msg_t *watch = pl_link_fake_take (fake, PL_MSG_WATCH);
    pl_check (streq (pl_msg_user (watch), "u1"));
    pl_msg_destroy (&watch);
    pl_check (zlistx_size (fake->sent) == 0);
    pl_interest_resync (users);
    watch = pl_link_fake_take (fake, PL_MSG_WATCH);
    pl_msg_destroy (&watch);
    pl_interest_remove (users, "u1", watch_a);
    pl_check (zlistx_size (fake->sent) == 0);
    pl_interest_remove (users, "u1", watch_b);
    watch = pl_link_fake_take (fake, PL_MSG_UNWATCH);
    pl_check (streq (pl_msg_user (watch), "u1"));
    pl_msg_destroy (&watch);
    pl_interest_destroy (&users);
    pl_link_fake_destroy (&fake);
    pl_config_destroy (&config);
    printf ("OK\n");
}
