/*  =========================================================================
    pl_reply - the RESULT that answers a request, built in one place
    =========================================================================
*/
#include "pl_reply.h"
#include "pl_util.h"

pl_msg_t *
pl_reply_new (const pl_msg_t *request, uint32_t status, const char *body)
{
    assert (request);
    pl_msg_t *reply = pl_msg_new (PL_MSG_RESULT);
    pl_msg_set_routing_id (reply, pl_msg_routing_id (request));
    //  A request forwarded by the router names the conn to go back to
    if (pl_msg_declares (pl_msg_command (request), PL_MSG_FIELD_route))
        pl_msg_set_route (reply, pl_msg_route (request));
    pl_msg_set_corr (reply, pl_msg_corr (request));
    if (pl_msg_declares (pl_msg_command (request), PL_MSG_FIELD_session))
        pl_msg_set_session (reply, pl_msg_session (request));
    if (pl_msg_declares (pl_msg_command (request), PL_MSG_FIELD_room))
        pl_msg_set_room (reply, pl_msg_room (request));
    pl_msg_set_status (reply, status);
    if (body)
        pl_msg_set_body (reply, body, strlen (body));
    return reply;
}

int
pl_reply_send (zsock_t *socket, const pl_msg_t *request, uint32_t status, const char *body)
{
    pl_msg_t *reply = pl_reply_new (request, status, body);
    return pl_msg_send (&reply, socket);
}

void
pl_reply_test (bool verbose)
{
    if (verbose)
        printf (" * pl_reply: ");
    pl_msg_t *request = pl_msg_new (PL_MSG_QUERY);
    pl_msg_set_routing_id (request, "router");
    pl_msg_set_route (request, "conn-1");
    pl_msg_set_corr (request, 42);
    pl_msg_set_session (request, 7);
    pl_msg_set_room (request, "r1");
    pl_msg_set_user (request, "u1");
    pl_msg_t *reply = pl_reply_new (request, 403, "not a member");
    pl_check (pl_msg_command (reply) == PL_MSG_RESULT);
    pl_check (streq (pl_msg_routing_id (reply), "router"));
    pl_check (streq (pl_msg_route (reply), "conn-1"));
    pl_check (pl_msg_corr (reply) == 42 && pl_msg_session (reply) == 7);
    pl_check (streq (pl_msg_room (reply), "r1"));
    pl_check (pl_msg_status (reply) == 403);
    pl_check (streq (pl_msg_body (reply), "not a member"));
    pl_msg_destroy (&reply);
    pl_msg_t *authz = pl_msg_new (PL_MSG_AUTHZ);
    pl_msg_set_corr (authz, 9);
    reply = pl_reply_new (authz, 200, NULL);
    pl_check (pl_msg_corr (reply) == 9 && streq (pl_msg_route (reply), ""));
    pl_msg_destroy (&authz);
    pl_msg_destroy (&reply);
    reply = pl_reply_new (request, 200, NULL);
    pl_check (pl_msg_body_size (reply) == 0);
    pl_msg_destroy (&reply);

    //  Over a socket pair: the RESULT reaches the requester
    zsock_t *pull = zsock_new_pull ("inproc://pl-reply-test");
    zsock_t *push = zsock_new_push (">inproc://pl-reply-test");
    pl_check (pl_reply_send (push, request, 201, "{}") == 0);
    reply = pl_msg_recv (pull);
    pl_check (reply && pl_msg_status (reply) == 201 && pl_msg_corr (reply) == 42);
    pl_msg_destroy (&reply);
    zsock_destroy (&push);
    zsock_destroy (&pull);
    pl_msg_destroy (&request);
    if (verbose)
        printf ("OK\n");
}
