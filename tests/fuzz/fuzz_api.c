/*  =========================================================================
    fuzz_api - libFuzzer target: the HTTP API's routing and query parsing
    (pl_api)

    Input: byte 0 picks history-limit; then lines "METHOD\nPATH\nQUERY\n"
    and the rest is the request body (no third line: no query string).
    Method, path and query are whatever a client put on its request line.

    Checked: every route is one the header file describes (a refusal has a
    4xx/5xx status and a message, a QUERY has a known operation and valid
    ids, a page within history-limit), the QUERY built from it survives
    the envelope codec, and the error's JSON parses.
    =========================================================================
*/
#include "pl_api.h"
#include "pl_util.h"

#include <jansson.h>
#include <string.h>

//  The one call into pl_api_route: its signature may change (stricter
//  query checks are under way), the checks below need not.
static void
s_route (const char *method, const char *path, const char *query,
         int history_limit, bool dev_mode, pl_api_route_t *route)
{
    pl_api_options_t options = { .history_limit = history_limit, .dev_mode = dev_mode };
    pl_api_route (method, path, query, &options, route);
}

static const char *s_kinds [] = {
    "room.create", "room.list", "room.get", "room.messages", "member.add", "member.remove"
};
#define KIND_COUNT (sizeof s_kinds / sizeof s_kinds [0])

//  Next line of the input as a new string; NULL when no LF is left.
static char *
s_line (const char **data, const char *end)
{
    const char *eol = memchr (*data, '\n', (size_t) (end - *data));
    if (!eol)
        return NULL;
    char *line = strndup (*data, (size_t) (eol - *data));
    pl_check (line);
    *data = eol + 1;
    return line;
}

static void
s_check_query_route (const char *method, const pl_api_route_t *route, int history_limit)
{
    pl_check (route->kind);
    size_t kind = 0;
    while (kind < KIND_COUNT && strcmp (s_kinds [kind], route->kind))
        kind++;
    pl_check (kind < KIND_COUNT);
    pl_check (route->takes_body == (strcmp (method, "POST") == 0));
    //  room.list's room is its after= (empty: from the first)
    if (streq (route->kind, "room.create"))
        pl_check (*route->room == 0);
    else
    if (streq (route->kind, "room.list"))
        pl_check (*route->room == 0 || pl_id_valid (route->room));
    else
        pl_check (pl_id_valid (route->room));
    pl_check (streq (route->kind, "member.remove")? pl_id_valid (route->sub): *route->sub == 0);
    if (streq (route->kind, "room.messages") || streq (route->kind, "room.list"))
        pl_check (route->limit >= 1 && route->limit <= (uint32_t) history_limit);
}

//  The QUERY of a route goes through the codec unchanged.
static void
s_check_query (pl_api_route_t *route, const char *body, size_t body_size)
{
    pl_api_route_t before = *route;
    pl_msg_t *query = pl_api_query (route, "alice", "Alice", body, body_size);
    if (!query) {
        pl_check (route->target == PL_API_ERROR && route->status == 400 && *route->error);
        return;
    }
    pl_check (memcmp (&before, route, sizeof before) == 0);
    pl_check (pl_msg_command (query) == PL_MSG_QUERY);
    pl_check (streq (pl_msg_operation (query), route->kind));
    pl_check (streq (pl_msg_room (query), route->room));
    pl_check (streq (pl_msg_target_user (query), route->sub));
    zframe_t *frame = pl_msg_encode (query);
    pl_msg_t *decoded = pl_msg_decode (zframe_data (frame), zframe_size (frame), NULL);
    pl_check (decoded);
    pl_check (streq (pl_msg_operation (decoded), route->kind));
    pl_check (pl_msg_body_size (decoded) == (route->takes_body? body_size: 0));
    pl_msg_destroy (&decoded);
    zframe_destroy (&frame);
    pl_msg_destroy (&query);
}

static void
s_check_error (const pl_api_route_t *route)
{
    pl_check (route->status >= 400 && route->status <= 599);
    pl_check (*route->error && memchr (route->error, 0, sizeof route->error));
    char *text = pl_api_error_json (route->error);
    pl_check (text);
    json_t *json = json_loads (text, 0, NULL);
    pl_check (json_is_object (json) && json_is_string (json_object_get (json, "error")));
    json_decref (json);
    free (text);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const int limits [] = { 1, 50, 200, 10000 };
    int history_limit = limits [data [0] & 3];
    bool dev_mode = data [0] & 4;
    const char *at = (const char *) data + 1, *end = (const char *) data + size;
    char *method = s_line (&at, end);
    char *path = method? s_line (&at, end): NULL;
    char *query = path? s_line (&at, end): NULL;
    if (path) {
        pl_api_route_t route;
        s_route (method, path, query, history_limit, dev_mode, &route);
        switch (route.target) {
            case PL_API_ERROR:     s_check_error (&route); break;
            case PL_API_HEALTHZ:
            case PL_API_READYZ:
            case PL_API_METRICS:   pl_check (streq (method, "GET")); break;
            case PL_API_PREFLIGHT: pl_check (streq (method, "OPTIONS")); break;
            case PL_API_DEV_TOKEN: pl_check (dev_mode && streq (method, "POST")); break;
            case PL_API_QUERY:
                s_check_query_route (method, &route, history_limit);
                s_check_query (&route, at, (size_t) (end - at));
                break;
            default:               pl_check (false);
        }
    }
    free (method);
    free (path);
    free (query);
    return 0;
}
