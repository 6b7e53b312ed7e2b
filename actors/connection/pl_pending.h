/*  =========================================================================
    pl_pending - the connection actor's requests to the router that wait
    for their RESULT

    Each request gets a correlation id (corr) and a deadline. A RESULT with
    a known corr takes its request out of the table and runs the answer
    handler of the request's kind; a RESULT nobody waits for any more (the
    deadline passed, the session closed) is dropped. A request whose
    deadline passes runs its kind's expire handler instead. Each request
    belongs to an owner (a session or an HTTP request) that must drop its
    requests when it goes away.

    No sockets and no libwebsockets: the caller sends the request itself.
    =========================================================================
*/
#ifndef PL_PENDING_H_INCLUDED
#define PL_PENDING_H_INCLUDED

#include "pl_msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _pl_pending_t pl_pending_t;
typedef struct _pl_pending_kind_t pl_pending_kind_t;

//  One request in flight. The table owns it; a handler may read it but
//  not keep it.
typedef struct {
    uint64_t corr;
    const pl_pending_kind_t *kind;
    void *owner;                //  session or HTTP request that waits
    char *sub_id;               //  subscription it is for, or NULL
    char *receipt;              //  receipt header to answer, or NULL
    int64_t deadline;           //  monotonic ms
} pl_pending_request_t;

//  A kind of request and who handles what comes back. The request is
//  already out of the table when a handler runs, and freed after it.
struct _pl_pending_kind_t {
    const char *name;           //  for logs: "AUTHZ", "SEND", ...
    //  The RESULT came
    void (*answer) (pl_pending_request_t *request, pl_msg_t *result);
    //  The deadline passed without one
    void (*expire) (pl_pending_request_t *request);
};

//  Create a table whose requests get timeout_ms to be answered.
pl_pending_t *
    pl_pending_new (int timeout_ms);

//  Destroy a table and forget its requests. Safe on NULL and twice.
void
    pl_pending_destroy (pl_pending_t **self_p);

//  Add a request of a kind for an owner (not NULL); sub_id and receipt
//  (may be NULL) are copied. Returns its corr, or 0 when out of memory.
uint64_t
    pl_pending_add (pl_pending_t *self, const pl_pending_kind_t *kind, void *owner,
                    const char *sub_id, const char *receipt);

//  Forget a request without running a handler (it could not be sent).
void
    pl_pending_cancel (pl_pending_t *self, uint64_t corr);

//  A RESULT from the router: run its request's answer handler. Returns 0,
//  or -1 when no request has that corr (the RESULT is dropped).
int
    pl_pending_answer (pl_pending_t *self, pl_msg_t *result);

//  Run the expire handler of every request whose deadline is at or before
//  now (monotonic ms).
void
    pl_pending_expire (pl_pending_t *self, int64_t now);

//  Forget every request of an owner that goes away.
void
    pl_pending_drop (pl_pending_t *self, void *owner);

//  Requests in flight for an owner.
size_t
    pl_pending_owned (pl_pending_t *self, void *owner);

//  Requests in flight in all.
size_t
    pl_pending_size (pl_pending_t *self);

//  The router's message in a RESULT for the client, or a generic one
//  naming the status when it sent none.
void
    pl_pending_reason (pl_msg_t *result, char *reason, size_t size);

void
    pl_pending_test (bool verbose);

#endif
