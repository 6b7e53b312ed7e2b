/*  =========================================================================
    pl_http - one HTTP request to the connection actor, from its request
    line to its answer

    The actor copies what lws parsed (method, path, query, Authorization,
    Content-Length) and the body as it arrives; pl_http routes the request
    (pl_api), answers locally (/healthz, /readyz, /metrics, CORS preflight,
    errors) or verifies the bearer token and sends a QUERY to the router,
    whose RESULT becomes the answer; no answer within request-timeout-ms
    is a 503. Once there is an answer, pl_http asks the link for a write
    and the actor writes what pl_http_response holds.
    =========================================================================
*/
#ifndef PL_HTTP_H_INCLUDED
#define PL_HTTP_H_INCLUDED

#include "pl_bucket.h"
#include "pl_link.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _pl_http_t pl_http_t;

//  What every request of one actor shares: the refusal counters (its
//  status record) and the rate limits. The actor owns it.
typedef struct {
    pl_buckets_t *users;        //  requests per user id (verified token), or NULL: no limit
    pl_buckets_t *addresses;    //  requests per remote address without a valid token
    uint64_t refused_malformed; //  400, 405, 411, 501, 505 answered before routing (pl_gate too)
    uint64_t refused_size;      //  413, 414, 431 (pl_gate too)
    uint64_t refused_timeout;   //  408: no whole request head within http-head-timeout-s
                                //  (pl_gate), or body within http-body-timeout-s
    uint64_t rate_limited;      //  429
} pl_http_guard_t;

//  A request's line and headers as lws parsed them. Strings are NULL
//  when absent; path is decoded, so a %00 shows as a NUL before path_size.
typedef struct {
    const char *method;         //  "GET", ...; a method lws does not know: "OTHER"
    const char *path;
    size_t path_size;
    const char *query;          //  without '?', pairs joined by '&' (may be NULL)
    const char *authorization;
    const char *content_length;
    const char *transfer_encoding;
    const char *address;        //  the client's, for its rate limit without a token
} pl_http_head_t;

//  The answer to write
typedef struct {
    int status;
    const char *content_type;
    const char *body;           //  size bytes, or NULL when there is none
    size_t size;
    bool preflight;             //  CORS preflight: add the allow-* headers
    int retry_after;            //  429: seconds to wait (Retry-After), else 0
} pl_http_response_t;

//  Set up guard's rate limits from config (http-rate, http-burst; none
//  when http-rate is 0). Returns 0, or -1 when out of memory.
int
    pl_http_guard_init (pl_http_guard_t *guard, const pl_config_t *config);

//  Forget buckets that are full again (call now and then).
void
    pl_http_guard_prune (pl_http_guard_t *guard);

//  Free guard's buckets. Safe twice.
void
    pl_http_guard_free (pl_http_guard_t *guard);

//  Create a request on conn (passed back to the link's hooks), counted
//  and limited in guard. Returns NULL when out of memory.
pl_http_t *
    pl_http_new (pl_link_t *link, pl_http_guard_t *guard, void *conn);

//  Destroy it: its QUERY, if in flight, is forgotten and the bearer token
//  scrubbed. Safe on NULL and twice.
void
    pl_http_destroy (pl_http_t **self_p);

//  The request line and headers. When no body follows, the request is
//  handled now. Each request takes a token from its user's bucket (its
//  address's without a valid token); an empty bucket is a 429 with
//  Retry-After. A request that cannot be served as sent (target over
//  http-url-max: 414, Authorization too long: 431, a NUL in the path, a
//  Content-Length that is not a number: 400, a chunked body: 411, a body
//  over max-body-bytes: 413) is refused at once, and the connection is
//  closed after the answer (its body is left unread). Returns 0, or -1
//  when out of memory.
int
    pl_http_request (pl_http_t *self, const pl_http_head_t *head);

//  Body bytes as they arrive. Returns 0, or -1 when out of memory.
int
    pl_http_body (pl_http_t *self, const char *data, size_t size);

//  The body is complete: handle the request if it waited for it.
void
    pl_http_body_end (pl_http_t *self);

//  Whether the request waits for its body: the head said one comes, it
//  is not complete, and there is no answer yet.
bool
    pl_http_waits_body (pl_http_t *self);

//  The body did not come within seconds (http-body-timeout-s) of the
//  head: while the request waits for it, the answer is a 408 (counted
//  as refused_timeout).
void
    pl_http_body_expire (pl_http_t *self, int seconds);

//  The answer, or NULL while there is none yet.
const pl_http_response_t *
    pl_http_response (pl_http_t *self);

void
    pl_http_test (bool verbose);

#endif
