/*  =========================================================================
    pl_api - routing of the HTTP API: method + path + query string to a
    local answer or to a QUERY for the room-router
    =========================================================================
*/
#include "pl_api.h"
#include "pl_log.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_SEGMENTS_MAX 6

void
pl_api_route_error (pl_api_route_t *route, int status, const char *message)
{
    assert (route);
    route->target = PL_API_ERROR;
    route->status = status;
    snprintf (route->error, sizeof route->error, "%s", message);
}

//  --------------------------------------------------------------------------
//  Split "/api/rooms/r1" into segments; empty segments (from "//" or a
//  trailing '/') are skipped, so "/api/rooms/" is "/api/rooms". Returns the
//  segment count, or -1 when there are too many for any known path.

static int
s_split_path (const char *path, char segments [][PL_ID_MAX + 2], int max)
{
    int count = 0;
    const char *at = path;
    while (*at) {
        while (*at == '/')
            at++;
        if (*at == 0)
            break;
        const char *end = strchr (at, '/');
        size_t length = end? (size_t) (end - at): strlen (at);
        if (count == max)
            return -1;
        //  A segment too long for an id is kept truncated at one char over,
        //  so it still fails pl_id_valid and never matches a fixed word.
        if (length > PL_ID_MAX + 1)
            length = PL_ID_MAX + 1;
        memcpy (segments [count], at, length);
        segments [count][length] = 0;
        count++;
        at = end? end: at + strlen (at);
    }
    return count;
}

//  Parse a decimal number of at most 19 digits, nothing else. 0 / -1.
static int
s_parse_number (const char *text, uint64_t *value)
{
    size_t length = strlen (text);
    if (length == 0 || length > 19 || strspn (text, "0123456789") != length)
        return -1;
    errno = 0;
    unsigned long long number = strtoull (text, NULL, 10);
    if (errno)
        return -1;
    *value = number;
    return 0;
}

//  A parameter's name for an error message: as it came when short and
//  printable, else a placeholder (the message goes out as JSON).
static void
s_param_error (pl_api_route_t *route, const char *format, const char *name)
{
    bool printable = strlen (name) <= 32;
    for (const char *at = name; printable && *at; at++)
        printable = *at >= 0x20 && *at < 0x7f && *at != '"' && *at != '\\';
    char message [128];
    snprintf (message, sizeof message, format, printable? name: "(unprintable)");
    pl_api_route_error (route, 400, message);
}

//  The query parameters an operation takes; any other is a 400. Each may
//  come once (flag), so a second one is refused rather than silently
//  winning.
typedef enum { PARAM_BEFORE = 1, PARAM_AFTER = 2, PARAM_LIMIT = 4 } s_param_flag_t;
typedef struct {
    const char *kind;
    const char *name;
    s_param_flag_t flag;
} s_param_t;

static const s_param_t s_params [] = {
    { "room.messages", "before", PARAM_BEFORE },
    { "room.messages", "limit", PARAM_LIMIT },
    { "room.list", "after", PARAM_AFTER },
    { "room.list", "limit", PARAM_LIMIT }
};

//  One parameter's value into the route. 0 / -1.
static int
s_parse_param (s_param_flag_t flag, const char *value, int history_limit, pl_api_route_t *route)
{
    uint64_t number = 0;
    if (flag == PARAM_BEFORE) {
        if (!value || s_parse_number (value, &number)) {
            pl_api_route_error (route, 400, "before must be a sequence number");
            return -1;
        }
        route->seq = number;
    }
    else
    if (flag == PARAM_AFTER) {
        //  The page starts after this room (room.list): the route's room
        if (!value || !pl_id_valid (value)) {
            pl_api_route_error (route, 400, "after must be a room id");
            return -1;
        }
        snprintf (route->room, sizeof route->room, "%s", value);
    }
    else {
        if (!value || s_parse_number (value, &number) || number == 0) {
            pl_api_route_error (route, 400, "limit must be a positive number");
            return -1;
        }
        route->limit = number > (uint64_t) history_limit?
                       (uint32_t) history_limit: (uint32_t) number;
    }
    return 0;
}

//  One name=value of an operation's query. 0 / -1.
static int
s_parse_pair (const char *kind, const char *name, const char *value, int history_limit,
              int *seen, pl_api_route_t *route)
{
    const s_param_t *param = NULL;
    for (size_t index = 0; !param && index < sizeof s_params / sizeof *s_params; index++)
        if (kind && streq (s_params [index].kind, kind) && streq (s_params [index].name, name))
            param = &s_params [index];
    if (!param) {
        s_param_error (route, "unknown query parameter '%s'", name);
        return -1;
    }
    if (*seen & (int) param->flag) {
        s_param_error (route, "query parameter '%s' given twice", name);
        return -1;
    }
    *seen |= (int) param->flag;
    return s_parse_param (param->flag, value, history_limit, route);
}

//  The query string of an operation (s_params says what each takes).
//  Every parameter is checked: an unknown, repeated or malformed one is a
//  400, never ignored. Empty pairs ("a&&b") carry nothing and are skipped.
static int
s_parse_query (const char *query, const char *kind, int history_limit, pl_api_route_t *route)
{
    route->seq = 0;
    route->limit = (uint32_t) history_limit;
    if (!query || !*query)
        return 0;
    char *copy = strdup (query);
    if (!copy) {
        pl_api_route_error (route, 503, "out of memory");
        return -1;
    }
    int rc = 0;
    int seen = 0;
    char *saveptr = NULL;
    for (char *pair = strtok_r (copy, "&", &saveptr); pair && rc == 0;
         pair = strtok_r (NULL, "&", &saveptr)) {
        char *equals = strchr (pair, '=');
        if (equals)
            *equals = 0;
        rc = s_parse_pair (kind, pair, equals? equals + 1: NULL, history_limit, &seen, route);
    }
    free (copy);
    return rc;
}

//  --------------------------------------------------------------------------
//  Work out what a request means.

//  A method HTTP does not define here is not "not allowed" but unknown
static bool
s_method_known (const char *method)
{
    static const char *methods [] = {
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"
    };
    for (size_t index = 0; index < sizeof methods / sizeof *methods; index++)
        if (streq (method, methods [index]))
            return true;
    return false;
}

//  What a path under /api/rooms is: the one method it takes (*allowed_p)
//  and its operation (*kind_p), the room and user it names. Returns -1
//  after setting the route's error for an id that cannot be one.
static int
s_match_rooms (const char *method, char segments [][PL_ID_MAX + 2], int count,
               const char **allowed_p, const char **kind_p, pl_api_route_t *route)
{
    if (count == 2) {
        //  The collection takes two methods
        bool get = streq (method, "GET");
        *allowed_p = get? "GET": "POST";
        *kind_p = get? "room.list": "room.create";
        return 0;
    }
    if (!pl_id_valid (segments [2])) {
        pl_api_route_error (route, 400, "invalid room id");
        return -1;
    }
    if (count == 3)
        *allowed_p = "GET", *kind_p = "room.get";
    else
    if (count == 4 && streq (segments [3], "messages"))
        *allowed_p = "GET", *kind_p = "room.messages";
    else
    if (count == 4 && streq (segments [3], "members"))
        *allowed_p = "POST", *kind_p = "member.add";
    else
    if (count == 5 && streq (segments [3], "members")) {
        if (!pl_id_valid (segments [4])) {
            pl_api_route_error (route, 400, "invalid user id");
            return -1;
        }
        *allowed_p = "DELETE", *kind_p = "member.remove";
        strcpy (route->sub, segments [4]);
    }
    if (*allowed_p)
        strcpy (route->room, segments [2]);
    return 0;
}

//  Which resource a path names: its method and target, or NULL in
//  *allowed_p when there is none. Returns -1 when the route holds an error.
static int
s_match_path (const char *method, const char *path, const pl_api_options_t *options,
              const char **allowed_p, const char **kind_p, pl_api_target_t *target_p,
              pl_api_route_t *route)
{
    char segments [PATH_SEGMENTS_MAX][PL_ID_MAX + 2];
    int count = s_split_path (path, segments, PATH_SEGMENTS_MAX);
    //  Answered by the connection actor itself; dev_only ones exist only
    //  in dev-mode (else 404, like any unknown path)
    static const struct {
        const char *path;
        const char *method;
        pl_api_target_t target;
        bool dev_only;
    } locals [] = {
        { "/healthz", "GET", PL_API_HEALTHZ, false },
        { "/readyz", "GET", PL_API_READYZ, false },
        { "/metrics", "GET", PL_API_METRICS, false },
        { "/api/dev/token", "POST", PL_API_DEV_TOKEN, true }
    };
    char joined [PATH_SEGMENTS_MAX * (PL_ID_MAX + 3)] = "";
    for (int index = 0; index < count; index++)
        strcat (strcat (joined, "/"), segments [index]);
    for (size_t index = 0; index < sizeof locals / sizeof *locals; index++)
        if (streq (joined, locals [index].path)
        &&  (!locals [index].dev_only || options->dev_mode)) {
            *allowed_p = locals [index].method;
            *target_p = locals [index].target;
            return 0;
        }
    if (count >= 2 && streq (segments [0], "api") && streq (segments [1], "rooms"))
        return s_match_rooms (method, segments, count, allowed_p, kind_p, route);
    return 0;
}

void
pl_api_route (const char *method, const char *path, const char *query,
              const pl_api_options_t *options, pl_api_route_t *route)
{
    assert (method);
    assert (path);
    assert (options);
    assert (route);
    memset (route, 0, sizeof *route);
    if (!s_method_known (method)) {
        pl_api_route_error (route, 501, "method not implemented");
        return;
    }
    //  allowed: the one method the path takes; kind: its operation
    const char *allowed = NULL;
    const char *kind = NULL;
    pl_api_target_t target = PL_API_QUERY;
    if (s_match_path (method, path, options, &allowed, &kind, &target, route))
        return;
    if (!allowed) {
        pl_api_route_error (route, 404, "not found");
        return;
    }
    if (streq (method, "OPTIONS")) {
        route->target = PL_API_PREFLIGHT;
        return;
    }
    if (!streq (method, allowed)) {
        pl_api_route_error (route, 405, "method not allowed");
        return;
    }
    route->target = target;
    route->kind = kind;
    route->takes_body = streq (method, "POST");
    s_parse_query (query, kind, options->history_limit, route);
}

//  The first segments s_match_path knows, and /ws (pl_connection)
static const char *const s_paths [] = {
    "/api", "/healthz", "/readyz", "/metrics", "/ws"
};

const char *const *
pl_api_paths (size_t *count)
{
    assert (count);
    *count = sizeof s_paths / sizeof s_paths [0];
    return s_paths;
}

bool
pl_api_owns_path (const char *path, size_t size)
{
    assert (path);
    for (size_t index = 0; index < sizeof s_paths / sizeof s_paths [0]; index++) {
        size_t length = strlen (s_paths [index]);
        if (size >= length && memcmp (path, s_paths [index], length) == 0
        &&  (size == length || path [length] == '/'))
            return true;
    }
    return false;
}


//  --------------------------------------------------------------------------
//  Build the QUERY of a route.

pl_msg_t *
pl_api_query (pl_api_route_t *route, const char *user_id, const char *name,
              const char *body, size_t body_size)
{
    assert (route);
    assert (route->target == PL_API_QUERY);
    assert (user_id);
    if (route->takes_body) {
        //  The store checks the fields; here only that it is a JSON object,
        //  so junk never travels further.
        json_error_t error;
        json_t *json = body && body_size? json_loadb (body, body_size, 0, &error): NULL;
        bool object = json && json_is_object (json);
        json_decref (json);
        if (!object) {
            pl_api_route_error (route, 400, "body must be a JSON object");
            return NULL;
        }
    }
    pl_msg_t *query = pl_msg_new (PL_MSG_QUERY);
    if (!query) {
        pl_api_route_error (route, 503, "out of memory");
        return NULL;
    }
    pl_msg_set_operation (query, route->kind);
    pl_msg_set_user (query, user_id);
    pl_msg_set_caller_name (query, name);
    pl_msg_set_room (query, route->room);
    pl_msg_set_target_user (query, route->sub);
    if (streq (route->kind, "room.messages"))
        pl_msg_set_before (query, route->seq);
    if (streq (route->kind, "room.messages") || streq (route->kind, "room.list"))
        pl_msg_set_limit (query, route->limit);
    if (route->takes_body)
        pl_msg_set_body (query, body, body_size);
    return query;
}

char *
pl_api_error_json (const char *message)
{
    json_t *json = json_pack ("{s:s}", "error", message? message: "error");
    char *text = json? json_dumps (json, JSON_COMPACT): NULL;
    json_decref (json);
    return text? text: strdup ("{\"error\":\"error\"}");
}


//  --------------------------------------------------------------------------
//  Selftest

void
pl_api_test (bool verbose)
{
    printf (" * pl_api: ");
    if (verbose)
        printf ("\n");
    pl_api_route_t route;
    pl_api_options_t options = { .history_limit = 200 };

    pl_api_route ("GET", "/healthz", NULL, &options, &route);
    pl_check (route.target == PL_API_HEALTHZ);
    pl_api_route ("POST", "/healthz", NULL, &options, &route);
    pl_check (route.target == PL_API_ERROR && route.status == 405);
    pl_api_route ("GET", "/readyz", "", &options, &route);
    pl_check (route.target == PL_API_READYZ);
    pl_api_route ("GET", "/metrics", "", &options, &route);
    pl_check (route.target == PL_API_METRICS);
    pl_api_route ("GET", "/", "", &options, &route);
    pl_check (route.target == PL_API_ERROR && route.status == 404);
    pl_api_route ("GET", "/nope/a/b/c/d/e/f/g/h", "", &options, &route);
    pl_check (route.target == PL_API_ERROR && route.status == 404);
    pl_api_route ("OPTIONS", "/api/rooms", "", &options, &route);
    pl_check (route.target == PL_API_PREFLIGHT);
    pl_api_route ("OPTIONS", "/elsewhere", "", &options, &route);
    pl_check (route.target == PL_API_ERROR && route.status == 404);
    //  The dev token exists only in dev-mode
    pl_api_route ("POST", "/api/dev/token", NULL, &options, &route);
    pl_check (route.target == PL_API_ERROR && route.status == 404);
    pl_api_route ("OPTIONS", "/api/dev/token", NULL, &options, &route);
    pl_check (route.target == PL_API_ERROR && route.status == 404);
    options.dev_mode = true;
    pl_api_route ("POST", "/api/dev/token", NULL, &options, &route);
    pl_check (route.target == PL_API_DEV_TOKEN && route.takes_body);
    pl_api_route ("GET", "/api/dev/token", NULL, &options, &route);
    pl_check (route.target == PL_API_ERROR && route.status == 405);
    pl_api_route ("OPTIONS", "/api/dev/token", NULL, &options, &route);
    pl_check (route.target == PL_API_PREFLIGHT);
    pl_api_route ("POST", "/api/dev", NULL, &options, &route);
    pl_check (route.target == PL_API_ERROR && route.status == 404);
    options.dev_mode = false;
    //  The paths of the API and the WebSocket; the rest are files
    pl_check (pl_api_owns_path ("/api", 4) && pl_api_owns_path ("/api/rooms", 10));
    pl_check (pl_api_owns_path ("/ws", 3) && pl_api_owns_path ("/healthz/", 9));
    pl_check (!pl_api_owns_path ("/apis", 5) && !pl_api_owns_path ("/", 1));
    pl_check (!pl_api_owns_path ("/index.html", 11) && !pl_api_owns_path ("/ws.js", 6));

    pl_api_route ("GET", "/api/rooms/", NULL, &options, &route);
    pl_check (route.target == PL_API_QUERY && streq (route.kind, "room.list"));
    pl_check (!route.takes_body);
    pl_api_route ("POST", "/api/rooms", NULL, &options, &route);
    pl_check (route.target == PL_API_QUERY && streq (route.kind, "room.create"));
    pl_check (route.takes_body);
    pl_api_route ("DELETE", "/api/rooms", NULL, &options, &route);
    pl_check (route.target == PL_API_ERROR && route.status == 405);

    pl_api_route ("GET", "/api/rooms/r1", NULL, &options, &route);
    pl_check (route.target == PL_API_QUERY && streq (route.kind, "room.get"));
    pl_check (streq (route.room, "r1"));
    pl_api_route ("PUT", "/api/rooms/r1", NULL, &options, &route);
    pl_check (route.status == 405);
    pl_api_route ("GET", "/api/rooms/r%201", NULL, &options, &route);
    pl_check (route.target == PL_API_ERROR && route.status == 400);
    char long_id [200];
    memset (long_id, 'a', sizeof long_id);
    memcpy (long_id, "/api/rooms/", 11);
    long_id [sizeof long_id - 1] = 0;
    pl_api_route ("GET", long_id, NULL, &options, &route);
    pl_check (route.target == PL_API_ERROR && route.status == 400);

    pl_api_route ("GET", "/api/rooms/r1/messages", NULL, &options, &route);
    pl_check (route.target == PL_API_QUERY && streq (route.kind, "room.messages"));
    pl_check (route.seq == 0 && route.limit == 200);
    pl_api_route ("GET", "/api/rooms/r1/messages", "before=42&limit=10", &options, &route);
    pl_check (route.target == PL_API_QUERY && route.seq == 42 && route.limit == 10);
    pl_api_route ("GET", "/api/rooms/r1/messages", "limit=5000", &options, &route);
    pl_check (route.target == PL_API_QUERY && route.limit == 200);
    //  Every parameter is checked, none is ignored (issue 8)
    pl_api_route ("GET", "/api/rooms/r1/messages", "limit=5&x=y", &options, &route);
    pl_check (route.target == PL_API_ERROR && route.status == 400);
    pl_check (streq (route.error, "unknown query parameter 'x'"));
    char long_param [400];
    memset (long_param, 'x', sizeof long_param);
    memcpy (long_param + 300, "=1&limit=abc", 13);
    pl_api_route ("GET", "/api/rooms/r1/messages", long_param, &options, &route);
    pl_check (route.target == PL_API_ERROR && route.status == 400);
    pl_check (streq (route.error, "unknown query parameter '(unprintable)'"));
    pl_api_route ("GET", "/api/rooms/r1/messages", "limit=5&limit=6", &options, &route);
    pl_check (route.status == 400 && strstr (route.error, "given twice"));
    pl_api_route ("GET", "/api/rooms/r1/messages", "limit", &options, &route);
    pl_check (route.status == 400 && strstr (route.error, "limit must be"));
    pl_api_route ("GET", "/api/rooms/r1/messages", "limit=5%26x", &options, &route);
    pl_check (route.status == 400);
    pl_api_route ("GET", "/api/rooms/r1/messages", "&limit=5&", &options, &route);
    pl_check (route.target == PL_API_QUERY && route.limit == 5);
    //  Refused: method, path, query, status
    static const struct {
        const char *method, *path, *query;
        int status;
    } refused [] = {
        { "GET", "/api/rooms", "x", 400 },
        { "GET", "/healthz", "before=1", 400 },
        { "TRACE", "/api/rooms", NULL, 405 },
        { "BREW", "/api/rooms", NULL, 501 },
        { "GET", "/api/rooms/r1/messages", "before=-1", 400 },
        { "GET", "/api/rooms/r1/messages", "limit=0", 400 },
        { "GET", "/api/rooms/r1/messages", "limit=abc", 400 },
        { "GET", "/api/rooms/r1/messages", "before=99999999999999999999", 400 },
        { "GET", "/api/rooms/r1/messages", "before", 400 },
    };
    for (size_t index = 0; index < sizeof refused / sizeof *refused; index++) {
        pl_api_route (refused [index].method, refused [index].path, refused [index].query, &options, &route);
        pl_check (route.target == PL_API_ERROR && route.status == refused [index].status);
    }

    pl_api_route ("POST", "/api/rooms/r1/members", NULL, &options, &route);
    pl_check (route.target == PL_API_QUERY && streq (route.kind, "member.add"));
    pl_api_route ("DELETE", "/api/rooms/r1/members/u2", NULL, &options, &route);
    pl_check (route.target == PL_API_QUERY && streq (route.kind, "member.remove"));
    pl_check (streq (route.room, "r1") && streq (route.sub, "u2"));
    pl_api_route ("DELETE", "/api/rooms/r1/members/u$", NULL, &options, &route);
    pl_check (route.target == PL_API_ERROR && route.status == 400);
    pl_api_route ("GET", "/api/rooms/r1/other", NULL, &options, &route);
    pl_check (route.target == PL_API_ERROR && route.status == 404);

    //  Queries
    pl_api_route ("POST", "/api/rooms", NULL, &options, &route);
    pl_msg_t *query = pl_api_query (&route, "u1", "Alice", "[1]", 3);
    pl_check (!query && route.status == 400);
    pl_api_route ("POST", "/api/rooms", NULL, &options, &route);
    query = pl_api_query (&route, "u1", "Alice", "", 0);
    pl_check (!query && route.status == 400);
    pl_api_route ("POST", "/api/rooms", NULL, &options, &route);
    const char *create = "{\"kind\":\"direct\",\"members\":[\"u2\"]}";
    query = pl_api_query (&route, "u1", "Alice", create, strlen (create));
    pl_check (query);
    pl_check (pl_msg_command (query) == PL_MSG_QUERY);
    pl_check (streq (pl_msg_operation (query), "room.create"));
    pl_check (streq (pl_msg_user (query), "u1"));
    pl_check (streq (pl_msg_body (query), create));
    pl_msg_destroy (&query);
    pl_api_route ("GET", "/api/rooms/r1/messages", "before=7&limit=3", &options, &route);
    query = pl_api_query (&route, "u1", "Alice", NULL, 0);
    pl_check (query);
    pl_check (streq (pl_msg_room (query), "r1"));
    pl_check (pl_msg_before (query) == 7 && pl_msg_limit (query) == 3);
    pl_msg_destroy (&query);
    pl_api_route ("DELETE", "/api/rooms/r1/members/u2", NULL, &options, &route);
    query = pl_api_query (&route, "u1", "Alice", NULL, 0);
    pl_check (streq (pl_msg_target_user (query), "u2"));
    pl_check (pl_msg_body_size (query) == 0);
    pl_msg_destroy (&query);

    char *json = pl_api_error_json ("say \"hi\"");
    pl_check (streq (json, "{\"error\":\"say \\\"hi\\\"\"}"));
    free (json);
    printf ("OK\n");
}
