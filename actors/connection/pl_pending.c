/*  =========================================================================
    pl_pending - the connection actor's requests to the router that wait
    for their RESULT

    Two tables: corr -> request, and owner -> how many requests it has, so
    that an owner without requests goes away without a scan.
    =========================================================================
*/
#include "pl_pending.h"
#include "pl_log.h"
#include "pl_util.h"

#include <czmq.h>
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _pl_pending_t {
    int timeout_ms;
    uint64_t next_corr;
    zhashx_t *requests;         //  corr -> pl_pending_request_t
    zhashx_t *owners;           //  owner -> count, as a pointer-sized number
};

static const char *
s_corr_key (uint64_t corr, char *buffer, size_t size)
{
    snprintf (buffer, size, "%" PRIu64, corr);
    return buffer;
}

static const char *
s_owner_key (void *owner, char *buffer, size_t size)
{
    snprintf (buffer, size, "%p", owner);
    return buffer;
}

static void
s_request_free (pl_pending_request_t **request_p)
{
    if (*request_p) {
        free ((*request_p)->sub_id);
        free ((*request_p)->receipt);
        free (*request_p);
        *request_p = NULL;
    }
}

static void
s_owner_count (pl_pending_t *self, void *owner, int change)
{
    char key [32];
    s_owner_key (owner, key, sizeof key);
    uintptr_t count = (uintptr_t) zhashx_lookup (self->owners, key);
    count = change > 0? count + 1: count - 1;
    if (count)
        zhashx_update (self->owners, key, (void *) count);
    else
        zhashx_delete (self->owners, key);
}

//  Take a request out of the tables; the caller frees it.
static pl_pending_request_t *
s_take (pl_pending_t *self, uint64_t corr)
{
    char key [24];
    s_corr_key (corr, key, sizeof key);
    pl_pending_request_t *request = (pl_pending_request_t *) zhashx_lookup (self->requests, key);
    if (request) {
        zhashx_delete (self->requests, key);
        s_owner_count (self, request->owner, -1);
    }
    return request;
}

//  The corrs of the requests that match an owner (any when NULL) and are
//  due by deadline: collected first, as handlers change the table.
static zlistx_t *
s_select (pl_pending_t *self, void *owner, int64_t deadline)
{
    zlistx_t *corrs = zlistx_new ();
    if (!corrs)
        return NULL;
    for (pl_pending_request_t *request = (pl_pending_request_t *) zhashx_first (self->requests);
         request; request = (pl_pending_request_t *) zhashx_next (self->requests))
        if ((!owner || request->owner == owner) && request->deadline <= deadline)
            zlistx_add_end (corrs, (void *) (uintptr_t) request->corr);
    return corrs;
}

pl_pending_t *
pl_pending_new (int timeout_ms)
{
    pl_pending_t *self = (pl_pending_t *) calloc (1, sizeof (pl_pending_t));
    if (!self)
        return NULL;
    self->timeout_ms = timeout_ms;
    self->requests = zhashx_new ();
    self->owners = zhashx_new ();
    if (!self->requests || !self->owners) {
        pl_pending_destroy (&self);
        return NULL;
    }
    return self;
}

void
pl_pending_destroy (pl_pending_t **self_p)
{
    if (*self_p) {
        //  No destructor in the table: taking a request out must not free it
        zhashx_t *requests = (*self_p)->requests;
        for (void *request = requests? zhashx_first (requests): NULL; request;
             request = zhashx_next (requests))
            s_request_free ((pl_pending_request_t **) &request);
        zhashx_destroy (&(*self_p)->requests);
        zhashx_destroy (&(*self_p)->owners);
        free (*self_p);
        *self_p = NULL;
    }
}

uint64_t
pl_pending_add (pl_pending_t *self, const pl_pending_kind_t *kind, void *owner,
                const char *sub_id, const char *receipt)
{
    assert (kind && owner);
    pl_pending_request_t *request =
        (pl_pending_request_t *) calloc (1, sizeof (pl_pending_request_t));
    if (request) {
        request->sub_id = sub_id? strdup (sub_id): NULL;
        request->receipt = receipt? strdup (receipt): NULL;
    }
    if (!request || (sub_id && !request->sub_id) || (receipt && !request->receipt)) {
        s_request_free (&request);
        return 0;
    }
    request->corr = ++self->next_corr;
    request->kind = kind;
    request->owner = owner;
    request->deadline = pl_mono_ms () + self->timeout_ms;
    char key [24];
    zhashx_insert (self->requests, s_corr_key (request->corr, key, sizeof key), request);
    s_owner_count (self, owner, +1);
    return request->corr;
}

void
pl_pending_cancel (pl_pending_t *self, uint64_t corr)
{
    pl_pending_request_t *request = s_take (self, corr);
    s_request_free (&request);
}

int
pl_pending_answer (pl_pending_t *self, pl_msg_t *result)
{
    pl_pending_request_t *request = s_take (self, pl_msg_corr (result));
    if (!request) {
        pl_log_debug ("RESULT for unknown request %" PRIu64 " dropped", pl_msg_corr (result));
        return -1;
    }
    request->kind->answer (request, result);
    s_request_free (&request);
    return 0;
}

void
pl_pending_expire (pl_pending_t *self, int64_t now)
{
    zlistx_t *expired = s_select (self, NULL, now);
    for (void *item = expired? zlistx_first (expired): NULL; item; item = zlistx_next (expired)) {
        pl_pending_request_t *request = s_take (self, (uint64_t) (uintptr_t) item);
        if (!request)
            continue;           //  a handler before dropped it with its owner
        pl_log_warning ("request %" PRIu64 " got no answer in %d ms",
                        request->corr, self->timeout_ms);
        request->kind->expire (request);
        s_request_free (&request);
    }
    zlistx_destroy (&expired);
}

void
pl_pending_drop (pl_pending_t *self, void *owner)
{
    if (!owner || pl_pending_owned (self, owner) == 0)
        return;
    zlistx_t *corrs = s_select (self, owner, INT64_MAX);
    for (void *item = corrs? zlistx_first (corrs): NULL; item; item = zlistx_next (corrs))
        pl_pending_cancel (self, (uint64_t) (uintptr_t) item);
    zlistx_destroy (&corrs);
}

size_t
pl_pending_owned (pl_pending_t *self, void *owner)
{
    char key [32];
    return (size_t) (uintptr_t) zhashx_lookup (self->owners, s_owner_key (owner, key, sizeof key));
}

size_t
pl_pending_size (pl_pending_t *self)
{
    return zhashx_size (self->requests);
}

void
pl_pending_reason (pl_msg_t *result, char *reason, size_t size)
{
    snprintf (reason, size, "%.*s", (int) pl_msg_body_size (result), pl_msg_body (result));
    if (!*reason)
        snprintf (reason, size, "request failed (%u)", pl_msg_status (result));
}


//  --------------------------------------------------------------------------
//  Selftest

static int s_test_answers;
static int s_test_expired;
static char s_test_seen [64];

static void
s_test_answer (pl_pending_request_t *request, pl_msg_t *result)
{
    s_test_answers++;
    snprintf (s_test_seen, sizeof s_test_seen, "%s/%u/%s", request->kind->name,
              pl_msg_status (result), request->receipt? request->receipt: "-");
}

static void
s_test_expire (pl_pending_request_t *request)
{
    s_test_expired++;
    snprintf (s_test_seen, sizeof s_test_seen, "%s/expired/%s", request->kind->name,
              request->sub_id? request->sub_id: "-");
}

static const pl_pending_kind_t s_test_kind_a = { "A", s_test_answer, s_test_expire };
static const pl_pending_kind_t s_test_kind_b = { "B", s_test_answer, s_test_expire };

static pl_msg_t *
s_test_result (uint64_t corr, uint32_t status, const char *body)
{
    pl_msg_t *result = pl_msg_new (PL_MSG_RESULT);
    pl_check (result);
    pl_msg_set_corr (result, corr);
    pl_msg_set_status (result, status);
    if (body)
        pl_msg_set_body (result, body, strlen (body));
    return result;
}

void
pl_pending_test (bool verbose)
{
    printf (" * pl_pending: ");
    if (verbose)
        printf ("\n");
    int owner_1, owner_2;
    pl_pending_t *pending = pl_pending_new (100);
    pl_check (pending);

    //  Each kind's handler answers; the request is gone afterwards
    uint64_t corr_a = pl_pending_add (pending, &s_test_kind_a, &owner_1, NULL, "r1");
    uint64_t corr_b = pl_pending_add (pending, &s_test_kind_b, &owner_1, "sub-1", NULL);
    pl_check (corr_a && corr_b && corr_a != corr_b);
    pl_check (pl_pending_size (pending) == 2);
    pl_check (pl_pending_owned (pending, &owner_1) == 2);
    pl_check (pl_pending_owned (pending, &owner_2) == 0);
    pl_msg_t *result = s_test_result (corr_b, 403, NULL);
    pl_check (pl_pending_answer (pending, result) == 0);
    pl_check (streq (s_test_seen, "B/403/-"));
    pl_check (pl_pending_answer (pending, result) == -1);
    pl_check (s_test_answers == 1);
    char reason [64];
    pl_pending_reason (result, reason, sizeof reason);
    pl_check (streq (reason, "request failed (403)"));
    pl_msg_destroy (&result);
    result = s_test_result (corr_a, 200, "not a member");
    pl_pending_reason (result, reason, sizeof reason);
    pl_check (streq (reason, "not a member"));
    pl_check (pl_pending_answer (pending, result) == 0);
    pl_check (streq (s_test_seen, "A/200/r1"));
    pl_msg_destroy (&result);
    pl_check (pl_pending_size (pending) == 0 && pl_pending_owned (pending, &owner_1) == 0);

    //  Cancelled and dropped requests run no handler
    uint64_t corr = pl_pending_add (pending, &s_test_kind_a, &owner_1, NULL, NULL);
    pl_pending_cancel (pending, corr);
    pl_pending_add (pending, &s_test_kind_a, &owner_1, NULL, NULL);
    pl_pending_add (pending, &s_test_kind_a, &owner_1, NULL, NULL);
    corr = pl_pending_add (pending, &s_test_kind_b, &owner_2, "sub-2", NULL);
    pl_pending_drop (pending, &owner_1);
    pl_check (pl_pending_size (pending) == 1);
    pl_check (pl_pending_owned (pending, &owner_1) == 0);
    pl_check (pl_pending_owned (pending, &owner_2) == 1);
    pl_check (s_test_answers == 2 && s_test_expired == 0);

    //  Deadlines: nothing before, the expire handler after
    pl_pending_expire (pending, pl_mono_ms ());
    pl_check (s_test_expired == 0);
    pl_pending_expire (pending, pl_mono_ms () + 100);
    pl_check (s_test_expired == 1);
    pl_check (streq (s_test_seen, "B/expired/sub-2"));
    pl_check (pl_pending_size (pending) == 0 && pl_pending_owned (pending, &owner_2) == 0);
    result = s_test_result (corr, 200, NULL);
    pl_check (pl_pending_answer (pending, result) == -1);
    pl_msg_destroy (&result);

    //  Destroying a table with requests in it frees them
    pl_pending_add (pending, &s_test_kind_a, &owner_1, "x", "y");
    pl_pending_destroy (&pending);
    pl_pending_destroy (&pending);
    printf ("OK\n");
}
