/*  =========================================================================
    pl_api - routing of the HTTP API: method + path + query string to a
    local answer or to a QUERY for the room-router

    Pure functions, no sockets and no libwebsockets: the connection actor
    copies what it got from the wire into plain strings, asks pl_api what
    the request means, and sends the QUERY or writes the local answer. Every
    refusal carries an HTTP status and a short message for {"error":"..."}.
    =========================================================================
*/
#ifndef PL_API_H_INCLUDED
#define PL_API_H_INCLUDED

#include "pl_msg.h"
#include "pl_util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    PL_API_ERROR = 0,           //  answer at once: status + error
    PL_API_HEALTHZ,             //  GET /healthz
    PL_API_READYZ,              //  GET /readyz
    PL_API_METRICS,             //  GET /metrics
    PL_API_DEV_TOKEN,           //  POST /api/dev/token (dev-mode only)
    PL_API_PREFLIGHT,           //  OPTIONS on a known path (CORS)
    PL_API_QUERY                //  authenticated QUERY to the router
} pl_api_target_t;

typedef struct {
    pl_api_target_t target;
    int status;                 //  PL_API_ERROR: HTTP status
    char error [160];           //  PL_API_ERROR: message for {"error":..}
    const char *kind;           //  PL_API_QUERY: operation, "room.create"...
    char room [PL_ID_MAX + 1];  //  room id from the path (room.list: after=), or ""
    char sub [PL_ID_MAX + 1];   //  user id from the path, or ""
    uint64_t seq;               //  room.messages: before (0 = newest)
    uint32_t limit;             //  room.messages, room.list: page size
    bool takes_body;            //  the QUERY carries the request JSON
} pl_api_route_t;

//  What pl_api_route may answer besides the routes every host serves
typedef struct {
    int history_limit;          //  the largest page (of messages, of rooms)
    bool dev_mode;              //  POST /api/dev/token exists
} pl_api_options_t;

//  Work out what a request means. method is "GET", "POST", ...; path is
//  the URL path without query; query is the query string without '?'
//  (may be NULL or ""). Fills route; route->target says what to do.
void
    pl_api_route (const char *method, const char *path, const char *query,
                  const pl_api_options_t *options, pl_api_route_t *route);

//  The paths the API and the WebSocket own: each one and everything below
//  it ("/api", "/api/rooms"); every other path is a file of the web chat.
//  Returns the list and its count.
const char *const *
    pl_api_paths (size_t *count);

//  Whether a decoded path (no query) is one of pl_api_paths or below one.
bool
    pl_api_owns_path (const char *path, size_t size);

//  Build the QUERY of a route whose target is PL_API_QUERY, for the caller
//  user_id, with the request body (used when route->takes_body). Returns
//  the message (corr not set), or NULL when the body is not acceptable:
//  then route becomes a PL_API_ERROR with status 400.
pl_msg_t *
    pl_api_query (pl_api_route_t *route, const char *user_id, const char *name,
                  const char *body, size_t body_size);

//  {"error":"message"} as a new string the caller frees.
char *
    pl_api_error_json (const char *message);

//  Make a route a local error (status and message).
void
    pl_api_route_error (pl_api_route_t *route, int status, const char *message);

void
    pl_api_test (bool verbose);

#endif
