/*  =========================================================================
    pl_http - one HTTP request to the connection actor, from its request
    line to its answer
    =========================================================================
*/
#include "pl_http.h"
#include "pl_api.h"
#include "pl_token.h"
#include "pl_util.h"

#include <jansson.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _pl_http_t {
    pl_link_t *link;
    pl_http_guard_t *guard;
    void *conn;
    char method [8];
    char *path;
    char *query;
    char *token;                //  Authorization, or NULL
    char *address;              //  the client's, or NULL
    bool verified;              //  token checked and good: identity holds the caller
    pl_identity_t identity;
    char reason [128];          //  why the token was refused
    size_t content_length;
    bool expect_body;
    bool too_large;
    int refusal;                //  status of a refusal decided from the head, or 0
    const char *refusal_reason;
    pl_buf_t body;
    bool ready;                 //  response set
    pl_http_response_t response;
};

static void s_query_answer (pl_pending_request_t *request, pl_msg_t *result);
static void s_query_expire (pl_pending_request_t *request);
static const pl_pending_kind_t s_query_kind = { "QUERY", s_query_answer, s_query_expire };

int
pl_http_guard_init (pl_http_guard_t *guard, const pl_config_t *config)
{
    memset (guard, 0, sizeof *guard);
    if (config->http_rate == 0)
        return 0;
    guard->users = pl_buckets_new (config->http_rate, config->http_burst);
    guard->addresses = pl_buckets_new (config->http_rate, config->http_burst);
    return guard->users && guard->addresses? 0: -1;
}

void
pl_http_guard_prune (pl_http_guard_t *guard)
{
    int64_t now = pl_mono_ms ();
    if (guard->users)
        pl_buckets_prune (guard->users, now);
    if (guard->addresses)
        pl_buckets_prune (guard->addresses, now);
}

void
pl_http_guard_free (pl_http_guard_t *guard)
{
    pl_buckets_destroy (&guard->users);
    pl_buckets_destroy (&guard->addresses);
}

pl_http_t *
pl_http_new (pl_link_t *link, pl_http_guard_t *guard, void *conn)
{
    assert (link);
    assert (guard);
    pl_http_t *self = (pl_http_t *) calloc (1, sizeof (pl_http_t));
    if (!self)
        return NULL;
    self->link = link;
    self->guard = guard;
    self->conn = conn;
    pl_buf_init (&self->body);
    return self;
}

void
pl_http_destroy (pl_http_t **self_p)
{
    pl_http_t *self = *self_p;
    if (!self)
        return;
    pl_pending_drop (self->link->pending, self);
    free (self->path);
    free (self->query);
    free (self->address);
    if (self->token) {
        //  Do not leave bearer tokens lying in freed memory
        memset (self->token, 0, strlen (self->token));
        free (self->token);
    }
    free ((char *) self->response.body);
    pl_buf_free (&self->body);
    free (self);
    *self_p = NULL;
}

//  Set the response (takes body) and ask for a write. The first answer
//  wins: a late one is dropped.
static void
s_respond (pl_http_t *self, int status, const char *content_type, char *body, size_t size)
{
    if (self->ready) {
        free (body);
        return;
    }
    self->ready = true;
    self->response.status = status;
    self->response.content_type = content_type;
    self->response.body = body;
    self->response.size = body? size: 0;
    self->link->want_write (self->link->arg, self->conn);
}

static void
s_respond_json (pl_http_t *self, int status, char *json)
{
    s_respond (self, status, "application/json", json, json? strlen (json): 0);
}

static void
s_respond_error (pl_http_t *self, int status, const char *message)
{
    s_respond_json (self, status, pl_api_error_json (message));
}

//  A refusal decided here (not by the router): counted by kind
static void
s_refuse (pl_http_t *self, int status, const char *message)
{
    if (status == 413 || status == 414 || status == 431)
        self->guard->refused_size++;
    else
    if (status == 429)
        self->guard->rate_limited++;
    else
        self->guard->refused_malformed++;
    s_respond_error (self, status, message);
}

//  Ready when the router spoke lately and said a persistence actor and the
//  bridge are there.
static void
s_respond_readyz (pl_http_t *self)
{
    const pl_link_t *link = self->link;
    if (!link->router_heard_ms
    ||  pl_mono_ms () - link->router_heard_ms > link->config->peer_timeout_ms)
        s_respond_error (self, 503, "router not reachable");
    else
    if (!(link->router_readiness & PL_READY_STORE))
        s_respond_error (self, 503, "no persistence actor connected");
    else
    if (!(link->router_readiness & PL_READY_BRIDGE))
        s_respond_error (self, 503, "stream bridge or Redis not reachable");
    else
        s_respond_json (self, 200, strdup ("{\"status\":\"ready\"}"));
}

//  Dev mode: a token for whoever names themselves, {"userId":..,"name":..}
//  (name optional: the user id). Signed with jwt-secret like any other.
static void
s_respond_dev_token (pl_http_t *self)
{
    const pl_config_t *config = self->link->config;
    json_t *request = json_loadb (pl_buf_head (&self->body), pl_buf_pending (&self->body), 0, NULL);
    json_t *user = json_object_get (request, "userId");
    json_t *name = json_object_get (request, "name");
    const char *user_id = json_string_value (user);
    const char *display = name && !json_is_null (name)? json_string_value (name): user_id;
    char *token = NULL;
    if (!json_is_object (request))
        s_refuse (self, 400, "body must be a JSON object");
    else
    if (!user_id || !pl_id_valid_n (user_id, json_string_length (user)))
        s_refuse (self, 400, "userId must be 1 to 64 letters, digits and _ . : @ -");
    else
    if (!display || !*display || json_string_length (name? name: user) != strlen (display)
    ||  !(token = pl_token_mint_hs256 (config->jwt_secret, user_id, display, config->dev_token_ttl_s)))
        s_refuse (self, 400, "name must be 1 to 128 bytes of text without control characters");
    else {
        json_t *answer = json_pack ("{s:s, s:s, s:s, s:i}", "token", token, "userId", user_id,
                                    "name", display, "expiresIn", config->dev_token_ttl_s);
        char *text = answer? json_dumps (answer, JSON_COMPACT): NULL;
        json_decref (answer);
        if (text)
            s_respond_json (self, 200, text);
        else
            s_respond_error (self, 503, "server out of memory");
        //  Do not leave tokens lying in freed memory
        memset (token, 0, strlen (token));
        free (token);
    }
    json_decref (request);
}

//  Answer what needs no router. Returns true when answered.
static bool
s_dispatch_local (pl_http_t *self, const pl_api_route_t *route)
{
    switch (route->target) {
        case PL_API_ERROR:
            //  404 is an answer, not a refusal of what was sent
            if (route->status == 404)
                s_respond_error (self, route->status, route->error);
            else
                s_refuse (self, route->status, route->error);
            return true;
        case PL_API_HEALTHZ:
            s_respond_json (self, 200, strdup ("{\"status\":\"ok\"}"));
            return true;
        case PL_API_READYZ:
            s_respond_readyz (self);
            return true;
        case PL_API_METRICS: {
            //  The host's figures, this actor's among them
            char *text = self->link->metrics (self->link->arg);
            s_respond (self, 200, "text/plain; version=0.0.4", text, text? strlen (text): 0);
            return true;
        }
        case PL_API_DEV_TOKEN:
            s_respond_dev_token (self);
            return true;
        case PL_API_PREFLIGHT:
            self->response.preflight = true;
            s_respond (self, 204, "application/json", NULL, 0);
            return true;
        case PL_API_QUERY:
            break;
    }
    return false;
}

//  An API call: check the caller, then ask the router.
static void
s_dispatch_query (pl_http_t *self, pl_api_route_t *route)
{
    pl_link_t *link = self->link;
    if (!self->token) {
        s_respond_error (self, 401, "missing bearer token");
        return;
    }
    if (!self->verified) {
        char message [200];
        snprintf (message, sizeof message, "authentication failed: %s",
                  *self->reason? self->reason: "invalid token");
        s_respond_error (self, 401, message);
        return;
    }
    pl_identity_t *identity = &self->identity;
    pl_msg_t *query = pl_api_query (route, identity->user_id, identity->name,
                                    pl_buf_head (&self->body), pl_buf_pending (&self->body));
    if (!query) {
        s_refuse (self, route->status, route->error);
        return;
    }
    uint64_t corr = pl_pending_add (link->pending, &s_query_kind, self, NULL, NULL);
    if (!corr) {
        pl_msg_destroy (&query);
        s_respond_error (self, 503, "server out of memory");
        return;
    }
    pl_msg_set_corr (query, corr);
    if (link->send (link->arg, &query)) {
        pl_pending_cancel (link->pending, corr);
        s_respond_error (self, 503, "server busy, try again");
        return;
    }
    //  lws would drop a quiet connection after its own timeout
    //  (http-body-timeout-s + 2 s); our own deadline answers 503 first
    link->timeout (link->arg, self->conn,
                   (link->config->request_timeout_ms + 999) / 1000 + link->config->close_grace_s);
}

//  One token from the caller's bucket: the user's when the token is good,
//  else the address's. Returns false once answered 429.
static bool
s_rate_limit (pl_http_t *self)
{
    pl_http_guard_t *guard = self->guard;
    if (self->token)
        self->verified = pl_token_verify (self->link->verifier, self->token, &self->identity,
                                          self->reason, sizeof self->reason) == 0;
    pl_buckets_t *buckets = self->verified? guard->users: guard->addresses;
    const char *key = self->verified? self->identity.user_id: self->address;
    int64_t wait_ms = 0;
    if (!buckets || pl_buckets_take (buckets, key? key: "", pl_mono_ms (), &wait_ms))
        return true;
    const pl_config_t *config = self->link->config;
    char message [160];
    snprintf (message, sizeof message, "rate limit: over %d HTTP requests a second "
              "(http-rate) or %d at once (http-burst)%s", config->http_rate, config->http_burst,
              self->verified? "": " from this address");
    self->response.retry_after = (int) ((wait_ms + 999) / 1000);
    if (self->response.retry_after < 1)
        self->response.retry_after = 1;
    s_refuse (self, 429, message);
    return false;
}

//  The request is complete (headers, and body if any): answer or ask.
static void
s_dispatch (pl_http_t *self)
{
    const pl_config_t *config = self->link->config;
    if (!s_rate_limit (self))
        return;
    if (self->refusal) {
        s_refuse (self, self->refusal, self->refusal_reason);
        return;
    }
    if (self->too_large) {
        char message [64];
        snprintf (message, sizeof message, "body over %d bytes", config->max_body_bytes);
        s_refuse (self, 413, message);
        return;
    }
    pl_api_route_t route;
    pl_api_options_t options = {
        .history_limit = config->history_limit, .dev_mode = config->dev_mode
    };
    pl_api_route (self->method, self->path, self->query, &options, &route);
    if (!s_dispatch_local (self, &route))
        s_dispatch_query (self, &route);
}

//  Content-Length: digits only (no sign, no spaces), at most 19 of them.
//  Returns 0 / -1.
static int
s_parse_length (const char *text, size_t *length)
{
    size_t digits = strlen (text);
    if (digits == 0 || digits > 19 || strspn (text, "0123456789") != digits)
        return -1;
    unsigned long long value = strtoull (text, NULL, 10);
    *length = value > SIZE_MAX? SIZE_MAX: (size_t) value;
    return 0;
}

//  What the head alone tells is wrong: sets refusal and its reason
static void
s_check_head (pl_http_t *self, const pl_http_head_t *head)
{
    const pl_config_t *config = self->link->config;
    int status = 0;
    const char *reason = NULL;
    if (head->path_size + strlen (self->query) > (size_t) config->http_url_max)
        status = 414, reason = "request target too long";
    else
    if (self->token && strlen (self->token) > PL_TOKEN_MAX + 16)
        status = 431, reason = "Authorization header too long";
    else
    if (memchr (head->path, 0, head->path_size))
        status = 400, reason = "path holds a NUL byte";
    else
    if (head->transfer_encoding && !streq (head->transfer_encoding, "identity"))
        status = 411, reason = "a body needs Content-Length (chunked bodies are not accepted)";
    else
    if (head->content_length && s_parse_length (head->content_length, &self->content_length))
        status = 400, reason = "invalid Content-Length";
    self->refusal = status;
    self->refusal_reason = reason;
}

int
pl_http_request (pl_http_t *self, const pl_http_head_t *head)
{
    assert (head->method && head->path);
    snprintf (self->method, sizeof self->method, "%s", head->method);
    self->path = strndup (head->path, head->path_size);
    self->query = strdup (head->query? head->query: "");
    if (head->authorization && *head->authorization)
        self->token = strdup (head->authorization);
    if (head->address)
        self->address = strdup (head->address);
    if (!self->path || !self->query || (head->authorization && *head->authorization && !self->token)
    ||  (head->address && !self->address))
        return -1;
    s_check_head (self, head);
    if (self->refusal || self->content_length > (size_t) self->link->config->max_body_bytes) {
        //  Answer now; every answer closes its connection, so the unread
        //  body does no harm
        self->too_large = !self->refusal;
        s_dispatch (self);
    }
    else
    if (self->content_length > 0)
        self->expect_body = true;
    else
        s_dispatch (self);
    return 0;
}

int
pl_http_body (pl_http_t *self, const char *data, size_t size)
{
    if (self->too_large || self->ready)
        return 0;
    if (pl_buf_pending (&self->body) + size > (size_t) self->link->config->max_body_bytes) {
        self->too_large = true;
        pl_buf_reset (&self->body);
        return 0;
    }
    return pl_buf_append (&self->body, data, size);
}

void
pl_http_body_end (pl_http_t *self)
{
    bool waited = pl_http_waits_body (self);
    self->expect_body = false;
    if (waited)
        s_dispatch (self);
}

bool
pl_http_waits_body (pl_http_t *self)
{
    return self->expect_body && !self->ready;
}

void
pl_http_body_expire (pl_http_t *self, int seconds)
{
    if (!pl_http_waits_body (self))
        return;
    self->expect_body = false;
    self->guard->refused_timeout++;
    char message [96];
    snprintf (message, sizeof message, "request body not received within %d s (http-body-timeout-s)",
              seconds);
    s_respond_error (self, 408, message);
}

const pl_http_response_t *
pl_http_response (pl_http_t *self)
{
    return self->ready? &self->response: NULL;
}

//  The router's RESULT: its JSON body goes out as it is, with its status.
static void
s_query_answer (pl_pending_request_t *request, pl_msg_t *result)
{
    pl_http_t *self = (pl_http_t *) request->owner;
    uint32_t status = pl_msg_status (result);
    int http_status = status >= 100 && status <= 599? (int) status: 502;
    const char *body = pl_msg_body (result);
    size_t size = pl_msg_body_size (result);
    json_error_t error;
    json_t *json = size? json_loadb (body, size, 0, &error): NULL;
    if (json)
        s_respond (self, http_status, "application/json", strndup (body, size), size);
    else
    if (http_status >= 400) {
        char reason [256];
        pl_pending_reason (result, reason, sizeof reason);
        s_respond_error (self, http_status, reason);
    }
    else
        s_respond_json (self, http_status, strdup ("{}"));
    json_decref (json);
}

static void
s_query_expire (pl_pending_request_t *request)
{
    s_respond_error ((pl_http_t *) request->owner, 503, "server busy, try again");
}


//  --------------------------------------------------------------------------
//  Selftest

#define TEST_SECRET "pl_http_test-secret-of-32-bytes-or-more"

//  A request without body through the fake link; returns it, answered
//  or waiting
static pl_http_guard_t s_test_guard;

//  A request with body headers (length, encoding may be NULL)
static pl_http_t *
s_test_head (pl_link_fake_t *fake, const char *method, const char *path, const char *query,
             const char *token, const char *length, const char *encoding)
{
    pl_http_t *http = pl_http_new (&fake->link, &s_test_guard, fake);
    pl_check (http);
    pl_http_head_t head = {
        .method = method, .path = path, .path_size = strlen (path), .query = query,
        .authorization = token, .content_length = length, .transfer_encoding = encoding
    };
    pl_check (pl_http_request (http, &head) == 0);
    return http;
}

static pl_http_t *
s_test_request (pl_link_fake_t *fake, const char *method, const char *path,
                const char *query, const char *token)
{
    return s_test_head (fake, method, path, query, token, NULL, NULL);
}

//  Expect an answer with status whose body holds text (when not NULL)
static void
s_test_expect (pl_http_t *http, int status, const char *text)
{
    const pl_http_response_t *response = pl_http_response (http);
    if (!response || response->status != status
    ||  (text && (!response->body || !strstr (response->body, text)))) {
        fprintf (stderr, "expected %d with '%s', got %d: %.*s\n", status, text? text: "",
                 response? response->status: 0, response? (int) response->size: 0,
                 response && response->body? response->body: "");
        pl_check (false);
    }
}

//  Local answers and refusals before any QUERY
static void
s_test_local (pl_link_fake_t *fake, const char *bearer)
{
    pl_http_t *http = s_test_request (fake, "GET", "/healthz", NULL, NULL);
    s_test_expect (http, 200, "{\"status\":\"ok\"}");
    pl_check (strcmp (pl_http_response (http)->content_type, "application/json") == 0);
    pl_check (fake->writes == 1 && fake->conn == fake);
    pl_http_destroy (&http);
    pl_http_destroy (&http);
    http = s_test_request (fake, "POST", "/api/rooms", NULL, NULL);
    s_test_expect (http, 401, "{\"error\":\"missing bearer token\"}");
    pl_http_destroy (&http);
    http = s_test_request (fake, "POST", "/api/rooms", NULL, "Bearer not-a-token");
    s_test_expect (http, 401, "authentication failed");
    pl_http_destroy (&http);
    http = s_test_request (fake, "GET", "/nowhere", NULL, NULL);
    s_test_expect (http, 404, NULL);
    pl_http_destroy (&http);
    http = s_test_request (fake, "GET", "/api/rooms/r1/messages", "limit=x", bearer);
    s_test_expect (http, 400, NULL);
    pl_http_destroy (&http);
    http = s_test_request (fake, "OPTIONS", "/api/rooms", NULL, NULL);
    s_test_expect (http, 204, NULL);
    pl_check (pl_http_response (http)->preflight && pl_http_response (http)->size == 0);
    pl_http_destroy (&http);
    http = s_test_request (fake, "GET", "/metrics", NULL, NULL);
    s_test_expect (http, 200, "parley_fake 1");
    pl_check (strncmp (pl_http_response (http)->content_type, "text/plain", 10) == 0);
    pl_http_destroy (&http);

    //  Bodies over max-body-bytes: announced (answered at once), or arriving
    http = s_test_head (fake, "POST", "/api/rooms", NULL, bearer, "20000", NULL);
    s_test_expect (http, 413, "body over 16384 bytes");
    pl_http_destroy (&http);
    http = s_test_head (fake, "POST", "/api/rooms", NULL, bearer, "100", NULL);
    pl_check (pl_http_response (http) == NULL);
    char chunk [10000];
    memset (chunk, 'x', sizeof chunk);
    pl_check (pl_http_body (http, chunk, sizeof chunk) == 0);
    pl_check (pl_http_body (http, chunk, sizeof chunk) == 0);
    pl_http_body_end (http);
    s_test_expect (http, 413, NULL);
    pl_http_destroy (&http);
    pl_check (zlistx_size (fake->sent) == 0);
}

//  What the head alone refuses, each in JSON, counted, closed after (issue 8)
static void
s_test_head_refusals (pl_link_fake_t *fake, const char *bearer)
{
    pl_http_guard_t before = s_test_guard;
    struct { const char *length, *encoding; int status; const char *text; } cases [] = {
        { "abc", NULL, 400, "invalid Content-Length" },
        { "-1", NULL, 400, "invalid Content-Length" },
        { " 12", NULL, 400, "invalid Content-Length" },
        { "99999999999999999999", NULL, 400, "invalid Content-Length" },
        { NULL, "chunked", 411, "Content-Length" },
        { "2", "chunked", 411, "Content-Length" },
    };
    for (size_t index = 0; index < sizeof cases / sizeof *cases; index++) {
        pl_http_t *http = s_test_head (fake, "POST", "/api/rooms", NULL, bearer,
                                       cases [index].length, cases [index].encoding);
        s_test_expect (http, cases [index].status, cases [index].text);
        pl_http_destroy (&http);
    }
    pl_check (s_test_guard.refused_malformed == before.refused_malformed + 6);
    size_t size = PL_TOKEN_MAX + 200;
    char *url = (char *) malloc (size);
    pl_check (url);
    memset (url, 'a', size - 1);
    url [0] = '/';
    url [size - 1] = 0;
    pl_http_t *http = s_test_request (fake, "GET", url, NULL, NULL);
    s_test_expect (http, 414, "{\"error\":\"request target too long\"}");
    pl_http_destroy (&http);
    http = s_test_request (fake, "GET", "/api/rooms/r1/messages", url, NULL);
    s_test_expect (http, 414, NULL);
    pl_http_destroy (&http);
    memcpy (url, "Bearer ", 7);
    url [PL_TOKEN_MAX + 100] = 0;
    http = s_test_request (fake, "GET", "/api/rooms", NULL, url);
    s_test_expect (http, 431, "Authorization");
    pl_http_destroy (&http);
    free (url);
    pl_check (s_test_guard.refused_size == before.refused_size + 3);
    //  A decoded %00 in the path
    http = pl_http_new (&fake->link, &s_test_guard, fake);
    pl_http_head_t head = { .method = "GET", .path = "/api/rooms/r\0001", .path_size = 14 };
    pl_check (pl_http_request (http, &head) == 0);
    s_test_expect (http, 400, "NUL");
    pl_http_destroy (&http);
    //  The query as the actor passes it: every parameter checked
    http = s_test_request (fake, "GET", "/api/rooms/r1/messages", "x=1&limit=abc", bearer);
    s_test_expect (http, 400, "unknown query parameter 'x'");
    pl_http_destroy (&http);
    http = s_test_request (fake, "OTHER", "/api/rooms", NULL, NULL);
    s_test_expect (http, 501, "not implemented");
    pl_http_destroy (&http);
    pl_check (zlistx_size (fake->sent) == 0);
}

//  /readyz follows what the router said, and when
static void
s_test_readyz (pl_link_fake_t *fake)
{
    pl_http_t *http = s_test_request (fake, "GET", "/readyz", NULL, NULL);
    s_test_expect (http, 503, "router not reachable");
    pl_http_destroy (&http);
    fake->link.router_heard_ms = pl_mono_ms ();
    http = s_test_request (fake, "GET", "/readyz", NULL, NULL);
    s_test_expect (http, 503, "persistence");
    pl_http_destroy (&http);
    fake->link.router_readiness = PL_READY_STORE;
    http = s_test_request (fake, "GET", "/readyz", NULL, NULL);
    s_test_expect (http, 503, "stream bridge");
    pl_http_destroy (&http);
    fake->link.router_readiness = PL_READY_STORE | PL_READY_BRIDGE;
    http = s_test_request (fake, "GET", "/readyz", NULL, NULL);
    s_test_expect (http, 200, "{\"status\":\"ready\"}");
    pl_http_destroy (&http);
    fake->link.router_heard_ms = pl_mono_ms () - fake->link.config->peer_timeout_ms - 1;
    http = s_test_request (fake, "GET", "/readyz", NULL, NULL);
    s_test_expect (http, 503, "router not reachable");
    pl_http_destroy (&http);
}

//  A QUERY to the router and what its RESULT becomes
static void
s_test_query (pl_link_fake_t *fake, const char *bearer)
{
    const char *create = "{\"kind\":\"direct\",\"members\":[\"u2\"]}";
    char length [24];
    snprintf (length, sizeof length, "%zu", strlen (create));
    pl_http_t *http = s_test_head (fake, "POST", "/api/rooms", NULL, bearer, length, NULL);
    pl_check (pl_http_body (http, create, 10) == 0);
    pl_check (pl_http_body (http, create + 10, strlen (create) - 10) == 0);
    pl_http_body_end (http);
    pl_check (pl_http_response (http) == NULL);
    pl_check (fake->timeout_s == 10 + 5);
    pl_msg_t *msg = pl_link_fake_take (fake, PL_MSG_QUERY);
    pl_check (streq (pl_msg_operation (msg), "room.create") && streq (pl_msg_body (msg), create));
    pl_link_fake_answer (fake, msg, 201, 0, "{\"id\":\"d:u1:u2\",\"kind\":\"direct\"}");
    pl_msg_destroy (&msg);
    s_test_expect (http, 201, "\"id\":\"d:u1:u2\"");
    pl_http_destroy (&http);

    http = s_test_request (fake, "GET", "/api/rooms/r1/messages", "before=10&limit=5", bearer);
    msg = pl_link_fake_take (fake, PL_MSG_QUERY);
    pl_check (streq (pl_msg_operation (msg), "room.messages"));
    pl_check (pl_msg_before (msg) == 10 && pl_msg_limit (msg) == 5);
    pl_link_fake_answer (fake, msg, 403, 0, "not a member of room r1");
    s_test_expect (http, 403, "{\"error\":\"not a member of room r1\"}");
    //  A second answer to the same request is dropped
    pl_link_fake_answer (fake, msg, 200, 0, "{}");
    s_test_expect (http, 403, NULL);
    pl_msg_destroy (&msg);
    pl_http_destroy (&http);

    //  A status that is not HTTP, a body that is not JSON
    http = s_test_request (fake, "GET", "/api/rooms", NULL, bearer);
    msg = pl_link_fake_take (fake, PL_MSG_QUERY);
    pl_link_fake_answer (fake, msg, 7, 0, NULL);
    s_test_expect (http, 502, "request failed (7)");
    pl_msg_destroy (&msg);
    pl_http_destroy (&http);
    http = s_test_request (fake, "GET", "/api/rooms", NULL, bearer);
    msg = pl_link_fake_take (fake, PL_MSG_QUERY);
    pl_link_fake_answer (fake, msg, 200, 0, "plain");
    s_test_expect (http, 200, "{}");
    pl_msg_destroy (&msg);
    pl_http_destroy (&http);

    //  No answer in time: 503; the router cannot be reached: 503
    http = s_test_request (fake, "GET", "/api/rooms", NULL, bearer);
    msg = pl_link_fake_take (fake, PL_MSG_QUERY);
    pl_pending_expire (fake->link.pending, pl_mono_ms () + fake->link.config->request_timeout_ms);
    s_test_expect (http, 503, "server busy, try again");
    pl_link_fake_answer (fake, msg, 200, 0, "{}");
    s_test_expect (http, 503, NULL);
    pl_msg_destroy (&msg);
    pl_http_destroy (&http);
    fake->refuse = true;
    http = s_test_request (fake, "GET", "/api/rooms", NULL, bearer);
    s_test_expect (http, 503, "server busy, try again");
    pl_http_destroy (&http);
    fake->refuse = false;

    //  A request that goes away takes its QUERY with it
    http = s_test_request (fake, "GET", "/api/rooms", NULL, bearer);
    pl_check (pl_pending_size (fake->link.pending) == 1);
    pl_http_destroy (&http);
    pl_check (pl_pending_size (fake->link.pending) == 0);
    msg = pl_link_fake_take (fake, PL_MSG_QUERY);
    pl_link_fake_answer (fake, msg, 200, 0, "{}");
    pl_msg_destroy (&msg);
}

//  Requests per user (verified token), else per address: 429 with
//  Retry-After once the burst is spent, the others unaffected
static void
s_test_rate_limit (pl_link_fake_t *fake, pl_config_t *config, const char *bearer)
{
    pl_check (pl_config_set (config, "http-rate", "1") == 0);
    pl_check (pl_config_set (config, "http-burst", "2") == 0);
    pl_http_guard_t saved = s_test_guard;
    pl_check (pl_http_guard_init (&s_test_guard, config) == 0);
    for (int index = 0; index < 2; index++) {
        pl_http_t *http = s_test_request (fake, "GET", "/healthz", NULL, bearer);
        s_test_expect (http, 200, NULL);
        pl_http_destroy (&http);
    }
    pl_http_t *http = s_test_request (fake, "GET", "/healthz", NULL, bearer);
    s_test_expect (http, 429, "http-rate");
    pl_check (pl_http_response (http)->retry_after == 1);
    pl_http_destroy (&http);
    //  Without a (good) token: the address's bucket, not the user's
    http = s_test_request (fake, "GET", "/healthz", NULL, "Bearer forged");
    s_test_expect (http, 200, NULL);
    pl_http_destroy (&http);
    http = s_test_request (fake, "GET", "/healthz", NULL, NULL);
    s_test_expect (http, 200, NULL);
    pl_http_destroy (&http);
    http = s_test_request (fake, "GET", "/healthz", NULL, NULL);
    s_test_expect (http, 429, "from this address");
    pl_check (pl_http_response (http)->retry_after >= 1);
    pl_http_destroy (&http);
    pl_check (s_test_guard.rate_limited == 2);
    pl_check (pl_buckets_size (s_test_guard.users) == 1);
    pl_http_guard_prune (&s_test_guard);
    pl_http_guard_free (&s_test_guard);
    pl_http_guard_free (&s_test_guard);
    s_test_guard = saved;
}

//  http-body-timeout-s: a body that does not come is a 408, counted; once
//  the body is complete, or the request answered, the timeout changes nothing
static void
s_test_body_timeout (pl_link_fake_t *fake, const char *bearer)
{
    uint64_t before = s_test_guard.refused_timeout;
    pl_http_t *http = s_test_head (fake, "POST", "/api/rooms", NULL, bearer, "10", NULL);
    pl_check (pl_http_waits_body (http) && pl_http_response (http) == NULL);
    pl_check (pl_http_body (http, "{\"a", 3) == 0);
    pl_http_body_expire (http, 7);
    s_test_expect (http, 408, "{\"error\":\"request body not received within 7 s (http-body-timeout-s)\"}");
    pl_check (!pl_http_waits_body (http) && s_test_guard.refused_timeout == before + 1);
    //  The rest of the body, late, changes nothing
    pl_check (pl_http_body (http, "\":1}", 4) == 0);
    pl_http_body_end (http);
    pl_http_body_expire (http, 7);
    s_test_expect (http, 408, NULL);
    pl_check (s_test_guard.refused_timeout == before + 1);
    pl_http_destroy (&http);
    //  No body to wait for: answered at once
    http = s_test_request (fake, "GET", "/healthz", NULL, NULL);
    pl_check (!pl_http_waits_body (http));
    pl_http_body_expire (http, 7);
    s_test_expect (http, 200, NULL);
    pl_http_destroy (&http);
    http = s_test_head (fake, "POST", "/api/rooms", NULL, bearer, "0", NULL);
    pl_check (!pl_http_waits_body (http));
    pl_http_destroy (&http);
    //  A complete body: its QUERY is sent, and the timeout is not a 408
    const char create [] = "{\"kind\":\"direct\",\"members\":[\"u3\"]}";
    char length [24];
    snprintf (length, sizeof length, "%zu", strlen (create));
    http = s_test_head (fake, "POST", "/api/rooms", NULL, bearer, length, NULL);
    pl_check (pl_http_body (http, create, strlen (create)) == 0);
    pl_http_body_end (http);
    pl_check (!pl_http_waits_body (http));
    pl_http_body_expire (http, 7);
    pl_check (pl_http_response (http) == NULL && s_test_guard.refused_timeout == before + 1);
    pl_msg_t *msg = pl_link_fake_take (fake, PL_MSG_QUERY);
    pl_link_fake_answer (fake, msg, 201, 0, "{\"id\":\"d:u1:u3\"}");
    pl_msg_destroy (&msg);
    s_test_expect (http, 201, NULL);
    pl_http_destroy (&http);
}

void
pl_http_test (bool verbose)
{
    printf (" * pl_http: ");
    if (verbose)
        printf ("\n");
    pl_config_t *config = pl_config_new_default ();
    pl_check (config);
    pl_check (pl_config_set (config, "jwt-secret", TEST_SECRET) == 0);
    pl_check (pl_config_finish (config) == 0);
    pl_link_fake_t *fake = pl_link_fake_new (config);
    char *token = pl_token_mint_hs256 (TEST_SECRET, "u1", "Alice", 3600);
    pl_check (token);
    char bearer [PL_TOKEN_MAX + 16];
    snprintf (bearer, sizeof bearer, "Bearer %s", token);

    s_test_local (fake, bearer);
    s_test_head_refusals (fake, bearer);
    s_test_readyz (fake);
    s_test_query (fake, bearer);
    s_test_body_timeout (fake, bearer);
    s_test_rate_limit (fake, config, bearer);

    free (token);
    pl_link_fake_destroy (&fake);
    pl_config_destroy (&config);
    pl_token_thread_end ();
    printf ("OK\n");
}
