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

#include "pl_link.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct _pl_http_t pl_http_t;

//  The answer to write
typedef struct {
    int status;
    const char *content_type;
    const char *body;           //  size bytes, or NULL when there is none
    size_t size;
    bool preflight;             //  CORS preflight: add the allow-* headers
    bool close_after;           //  the request body was left unread: close after
} pl_http_response_t;

//  Create a request on conn (passed back to the link's hooks). Returns
//  NULL when out of memory.
pl_http_t *
    pl_http_new (pl_link_t *link, void *conn);

//  Destroy it: its QUERY, if in flight, is forgotten and the bearer token
//  scrubbed. Safe on NULL and twice.
void
    pl_http_destroy (pl_http_t **self_p);

//  The request line and headers: method ("GET", ...), path, query string
//  (may be ""), the Authorization header and Content-Length as they came
//  (NULL when absent). When no body follows, the request is handled now;
//  a body over max-body-bytes is refused at once (and the connection is
//  closed after the answer, the body being unread). Returns 0, or -1 when
//  out of memory.
int
    pl_http_request (pl_http_t *self, const char *method, const char *path,
                     const char *query, const char *authorization,
                     const char *content_length);

//  Body bytes as they arrive. Returns 0, or -1 when out of memory.
int
    pl_http_body (pl_http_t *self, const char *data, size_t size);

//  The body is complete: handle the request if it waited for it.
void
    pl_http_body_end (pl_http_t *self);

//  The answer, or NULL while there is none yet.
const pl_http_response_t *
    pl_http_response (pl_http_t *self);

void
    pl_http_test (bool verbose);

#endif
