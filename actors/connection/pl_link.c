/*  =========================================================================
    pl_link - the connection actor's lws-free classes and the lws side:
    here only the fake link that selftests drive them through
    =========================================================================
*/
#include "pl_link.h"
#include "pl_util.h"

#include <stdlib.h>
#include <string.h>

static void
s_fake_want_write (void *arg, void *conn)
{
    pl_link_fake_t *self = (pl_link_fake_t *) arg;
    self->writes++;
    self->conn = conn;
}

static void
s_fake_timeout (void *arg, void *conn, int seconds)
{
    pl_link_fake_t *self = (pl_link_fake_t *) arg;
    self->timeout_s = seconds;
    self->conn = conn;
}

static int
s_fake_send (void *arg, pl_msg_t **msg_p)
{
    pl_link_fake_t *self = (pl_link_fake_t *) arg;
    if (self->refuse) {
        pl_msg_destroy (msg_p);
        return -1;
    }
    pl_msg_command_t command = pl_msg_command (*msg_p);
    if (!self->keep_presence && (command == PL_MSG_PRESENT || command == PL_MSG_ABSENT)) {
        self->presence_sent++;
        pl_msg_destroy (msg_p);
        return 0;
    }
    zlistx_add_end (self->sent, *msg_p);
    *msg_p = NULL;
    return 0;
}

static char *
s_fake_metrics (void *arg)
{
    (void) arg;
    return strdup ("parley_fake 1\n");
}

static void
s_fake_msg_destroy (void **item_p)
{
    pl_msg_destroy ((pl_msg_t **) item_p);
}

pl_link_fake_t *
pl_link_fake_new (const pl_config_t *config)
{
    pl_link_fake_t *self = (pl_link_fake_t *) calloc (1, sizeof (pl_link_fake_t));
    pl_check (self);
    self->sent = zlistx_new ();
    pl_check (self->sent);
    zlistx_set_destructor (self->sent, s_fake_msg_destroy);
    self->link.config = config;
    self->link.name = "conn-0";
    self->link.verifier = pl_token_verifier_new (config->jwt_secret, config->jwt_public_key);
    if (self->link.verifier)
        pl_token_verifier_set_leeway (self->link.verifier, config->jwt_leeway_s);
    self->link.pending = pl_pending_new (config->request_timeout_ms);
    pl_check (self->link.verifier && self->link.pending);
    self->link.arg = self;
    self->link.want_write = s_fake_want_write;
    self->link.timeout = s_fake_timeout;
    self->link.send = s_fake_send;
    self->link.metrics = s_fake_metrics;
    return self;
}

void
pl_link_fake_destroy (pl_link_fake_t **self_p)
{
    pl_link_fake_t *self = *self_p;
    if (self) {
        zlistx_destroy (&self->sent);
        pl_pending_destroy (&self->link.pending);
        pl_token_verifier_destroy (&self->link.verifier);
        free (self);
        *self_p = NULL;
    }
}

pl_msg_t *
pl_link_fake_take (pl_link_fake_t *self, pl_msg_command_t command)
{
    pl_msg_t *msg = (pl_msg_t *) zlistx_first (self->sent);
    if (!msg || pl_msg_command (msg) != command) {
        fprintf (stderr, "fake link: expected %s, got %s\n", pl_msg_command_name (command),
                 msg? pl_msg_command_name (pl_msg_command (msg)): "nothing");
        pl_check (false);
    }
    zlistx_detach_cur (self->sent);
    return msg;
}

size_t
pl_link_fake_drop (pl_link_fake_t *self, pl_msg_command_t command)
{
    size_t dropped = 0;
    bool again = true;
    while (again) {
        again = false;
        for (pl_msg_t *msg = (pl_msg_t *) zlistx_first (self->sent); msg;
             msg = (pl_msg_t *) zlistx_next (self->sent))
            if (pl_msg_command (msg) == command) {
                zlistx_delete (self->sent, zlistx_cursor (self->sent));
                dropped++;
                again = true;
                break;
            }
    }
    return dropped;
}

void
pl_link_fake_expect (pl_link_fake_t *self, pl_msg_command_t command, const char *room)
{
    pl_msg_t *msg = pl_link_fake_take (self, command);
    if (!streq (pl_msg_room (msg), room))
        fprintf (stderr, "fake link: expected room %s, got %s\n", room, pl_msg_room (msg));
    pl_check (streq (pl_msg_room (msg), room));
    pl_msg_destroy (&msg);
}

pl_msg_t *
pl_link_fake_result (pl_msg_t *request, uint32_t status, uint64_t seq, const char *body)
{
    pl_msg_t *result = pl_msg_new (PL_MSG_RESULT);
    pl_check (result);
    pl_msg_set_routing_id (result, pl_msg_routing_id (request));
    pl_msg_set_corr (result, pl_msg_corr (request));
    pl_msg_set_session (result, pl_msg_session (request));
    pl_msg_set_room (result, pl_msg_room (request));
    pl_msg_set_status (result, status);
    pl_msg_set_seq (result, seq);
    if (body)
        pl_msg_set_body (result, body, strlen (body));
    return result;
}

void
pl_link_fake_answer (pl_link_fake_t *self, pl_msg_t *request, uint32_t status,
                     uint64_t seq, const char *body)
{
    pl_msg_t *result = pl_link_fake_result (request, status, seq, body);
    pl_pending_answer (self->link.pending, result);
    pl_msg_destroy (&result);
}


//  --------------------------------------------------------------------------
//  Selftest

static void
s_test_answer (pl_pending_request_t *request, pl_msg_t *result)
{
    *(uint32_t *) request->owner = pl_msg_status (result);
}

static void
s_test_expire (pl_pending_request_t *request)
{
    (void) request;
}

static const pl_pending_kind_t s_test_kind = { "TEST", s_test_answer, s_test_expire };

void
pl_link_test (bool verbose)
{
    printf (" * pl_link: ");
    if (verbose)
        printf ("\n");
    pl_config_t *config = pl_config_new_default ();
    pl_check (config);
    pl_check (pl_config_set (config, "jwt-secret", "pl_link_test-secret-of-32-bytes-or-more") == 0);
    pl_check (pl_config_finish (config) == 0);
    pl_link_fake_t *fake = pl_link_fake_new (config);
    pl_link_t *link = &fake->link;
    int conn;

    link->want_write (link->arg, &conn);
    link->timeout (link->arg, &conn, 5);
    pl_check (fake->writes == 1 && fake->timeout_s == 5 && fake->conn == &conn);
    char *metrics = link->metrics (link->arg);
    pl_check (metrics && *metrics);
    free (metrics);

    //  What is sent can be taken and answered through the request table
    uint32_t status = 0;
    pl_msg_t *msg = pl_msg_new (PL_MSG_QUERY);
    pl_msg_set_corr (msg, pl_pending_add (link->pending, &s_test_kind, &status, NULL, NULL));
    pl_check (link->send (link->arg, &msg) == 0 && msg == NULL);
    msg = pl_link_fake_take (fake, PL_MSG_QUERY);
    pl_link_fake_answer (fake, msg, 201, 0, "{}");
    pl_msg_destroy (&msg);
    pl_check (status == 201);
    pl_check (pl_pending_size (link->pending) == 0);

    fake->refuse = true;
    msg = pl_msg_new (PL_MSG_PING);
    pl_check (link->send (link->arg, &msg) == -1 && msg == NULL);
    pl_check (zlistx_size (fake->sent) == 0);
    fake->refuse = false;
    msg = pl_msg_new (PL_MSG_JOIN);
    pl_msg_set_room (msg, "r1");
    link->send (link->arg, &msg);
    pl_link_fake_expect (fake, PL_MSG_JOIN, "r1");
    msg = pl_msg_new (PL_MSG_PING);
    link->send (link->arg, &msg);

    pl_link_fake_destroy (&fake);
    pl_link_fake_destroy (&fake);
    pl_config_destroy (&config);
    printf ("OK\n");
}
