/*  =========================================================================
    pl_link - what the connection actor's lws-free classes (pl_session,
    pl_http) share, and the few things they ask of the lws side

    The actor (pl_connection.c; with pl_connection_accept.c and pl_web.c the
    only files that speak libwebsockets) fills one link and hands it to
    every session and HTTP request. A connection is an opaque pointer (the
    lws wsi) the classes only pass back. The hooks never call back into
    the classes synchronously, except send: the actor reads what is
    waiting from the router after each send, so a RESULT may be handled
    before send returns.

    For selftests, pl_link_fake_t is a link whose hooks write down what
    they were asked, with a request table and a token verifier of its own.
    =========================================================================
*/
#ifndef PL_LINK_H_INCLUDED
#define PL_LINK_H_INCLUDED

#include "pl_config.h"
#include "pl_msg.h"
#include "pl_pending.h"
#include "pl_token.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

//  timeout: close the connection now instead of after some seconds
#define PL_LINK_CLOSE_NOW   (-1)

typedef struct {
    //  Set up by the actor before the first session or request
    const pl_config_t *config;
    const char *name;                   //  "conn-<instance>", in session ids
    pl_token_verifier_t *verifier;
    pl_pending_t *pending;              //  requests to the router in flight
    //  The lws side; arg is passed back to every hook
    void *arg;
    //  Call back when conn can be written (the class's queue has bytes)
    void (*want_write) (void *arg, void *conn);
    //  Close conn unless it is done within seconds, or now
    //  (PL_LINK_CLOSE_NOW), without waiting for a write
    void (*timeout) (void *arg, void *conn, int seconds);
    //  Send to the router and destroy the message. Returns 0, or -1 when
    //  it cannot go out now (queue full, no router)
    int (*send) (void *arg, pl_msg_t **msg_p);
    //  The host's figures for GET /metrics, a new string
    char *(*metrics) (void *arg);
    //  What the actor knows of the router, kept up to date by it
    int64_t router_heard_ms;            //  monotonic ms it last said anything, 0: never
    uint32_t router_readiness;          //  PL_READY_* bits of its last PING
} pl_link_t;


//  --------------------------------------------------------------------------
//  For selftests

typedef struct {
    pl_link_t link;
    zlistx_t *sent;                     //  pl_msg_t sent to the router, oldest first
    int writes;                         //  want_write calls
    void *conn;                         //  the connection of the last hook call
    int timeout_s;                      //  the last timeout asked for, 0 while none
    bool refuse;                        //  send fails
    bool keep_presence;                 //  PRESENT/ABSENT go to sent too
    size_t presence_sent;               //  PRESENT/ABSENT not kept
} pl_link_fake_t;

//  Create a fake link over config (finished, with a jwt-secret; it must
//  outlive the fake), with its own request table and verifier.
pl_link_fake_t *
    pl_link_fake_new (const pl_config_t *config);

//  Destroy it, with what was sent and not taken. Safe on NULL and twice.
void
    pl_link_fake_destroy (pl_link_fake_t **self_p);

//  Take the oldest message sent, which must be of command (checked); the
//  caller destroys it.
pl_msg_t *
    pl_link_fake_take (pl_link_fake_t *self, pl_msg_command_t command);

//  Take the oldest message sent, which must be of command for room
//  (checked), and destroy it.
//  Take every message of a command out of sent, wherever it is; returns
//  how many there were.
size_t
    pl_link_fake_drop (pl_link_fake_t *self, pl_msg_command_t command);

void
    pl_link_fake_expect (pl_link_fake_t *self, pl_msg_command_t command, const char *room);

//  The RESULT the router would send for request: status, seq and body
//  (may be NULL), routed back to the requester.
pl_msg_t *
    pl_link_fake_result (pl_msg_t *request, uint32_t status, uint64_t seq, const char *body);

//  Answer a request taken from the fake as the router would: its RESULT
//  (pl_link_fake_result) into the request table.
void
    pl_link_fake_answer (pl_link_fake_t *self, pl_msg_t *request, uint32_t status,
                         uint64_t seq, const char *body);

void
    pl_link_test (bool verbose);

#endif
