/*  =========================================================================
    pl_limits - what one connection actor allows its STOMP clients
    =========================================================================
*/
#include "pl_limits.h"
#include "pl_bucket.h"
#include "pl_util.h"

#include <czmq.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _pl_limits_t {
    const pl_config_t *config;
    pl_buckets_t *sends;        //  user id -> SENDs a second
    pl_buckets_t *typing;       //  "user room" -> TYPINGs a second
    zhashx_t *users;            //  user id -> connected sessions (as a pointer)
    size_t open;                //  WebSockets counted by pl_limits_open
    pl_limits_refused_t refused;
};

pl_limits_t *
pl_limits_new (const pl_config_t *config)
{
    assert (config);
    pl_limits_t *self = (pl_limits_t *) calloc (1, sizeof (pl_limits_t));
    if (!self)
        return NULL;
    self->config = config;
    self->sends = pl_buckets_new (config->send_rate, config->send_burst);
    self->typing = pl_buckets_new (config->typing_rate, config->typing_burst);
    self->users = zhashx_new ();
    if (!self->sends || !self->typing || !self->users)
        pl_limits_destroy (&self);
    return self;
}

void
pl_limits_destroy (pl_limits_t **self_p)
{
    pl_limits_t *self = *self_p;
    if (self) {
        pl_buckets_destroy (&self->sends);
        pl_buckets_destroy (&self->typing);
        zhashx_destroy (&self->users);
        free (self);
        *self_p = NULL;
    }
}

//  Count UTF-8 code points (jansson has checked the encoding).
static size_t
s_utf8_chars (const char *text, size_t size)
{
    size_t count = 0;
    for (size_t index = 0; index < size; index++)
        if (((unsigned char) text [index] & 0xC0) != 0x80)
            count++;
    return count;
}

//  Check a SEND body (a JSON object). Returns an error message for the
//  client, or NULL.
static const char *
s_send_check (const pl_config_t *config, json_t *json, char *message, size_t size)
{
    if (!json || !json_is_object (json))
        return "body must be a JSON object";
    const char *type = json_string_value (json_object_get (json, "type"));
    json_t *content = json_object_get (json, "content");
    json_t *cmid = json_object_get (json, "clientMsgId");
    if (!type)
        return "type must be a string";
    if (streq (type, "READ") || streq (type, "TYPING"))
        return NULL;            //  READ's seq: pl_limits_read_seq
    if (!streq (type, "TALK"))
        return "type must be TALK, READ or TYPING";
    if (!json_is_string (content))
        return "content must be a string";
    if (json_string_length (content) == 0)
        return "content must not be empty";
    if (s_utf8_chars (json_string_value (content), json_string_length (content))
        > (size_t) config->max_content_chars) {
        snprintf (message, size, "content over %d characters (max-content-chars)",
                  config->max_content_chars);
        return message;
    }
    if (cmid && !json_is_null (cmid)
    &&  (!json_is_string (cmid) || !pl_id_valid (json_string_value (cmid))))
        return "clientMsgId must be 1 to 64 of [A-Za-z0-9_.:@-]";
    return NULL;
}

json_t *
pl_limits_send_body (pl_limits_t *self, const char *body, size_t size,
                     char *message, size_t message_size)
{
    const pl_config_t *config = self->config;
    if (size > (size_t) config->max_body_bytes) {
        snprintf (message, message_size, "message body over %d bytes (max-body-bytes)",
                  config->max_body_bytes);
        return NULL;
    }
    //  Without JSON_ALLOW_NUL: the bridge, Redis and MongoDB keep content
    //  as a C string, so a "\u0000" would cut what we receipt. Refused.
    json_error_t json_error;
    json_t *json = json_loadb (body, size, 0, &json_error);
    if (!json && json_error_code (&json_error) == json_error_null_character) {
        self->refused.nul++;
        snprintf (message, message_size, "message must not contain NUL characters (\\u0000)");
        return NULL;
    }
    const char *failure = s_send_check (config, json, message, message_size);
    if (failure) {
        if (failure != message)
            snprintf (message, message_size, "%s", failure);
        json_decref (json);
        return NULL;
    }
    return json;
}

int
pl_limits_typing (pl_limits_t *self, const char *user_id, const char *room_id, int64_t now)
{
    //  Ids are [A-Za-z0-9_.:@-]: a space cannot be part of either
    char key [2 * PL_ID_MAX + 2];
    snprintf (key, sizeof key, "%s %s", user_id, room_id);
    if (pl_buckets_take (self->typing, key, now, NULL))
        return 0;
    self->refused.typing_rate++;
    return -1;
}

int
pl_limits_read_seq (json_t *json, uint64_t *seq, char *message, size_t size)
{
    json_t *value = json_object_get (json, "seq");
    //  Up to 2^53 - 1: what a JavaScript client holds exactly
    if (!json_is_integer (value) || json_integer_value (value) < 1
    ||  json_integer_value (value) > 9007199254740991LL) {
        snprintf (message, size, "READ needs \"seq\": a message seq (a positive integer)");
        return -1;
    }
    *seq = (uint64_t) json_integer_value (value);
    return 0;
}

int
pl_limits_open (pl_limits_t *self, char *message, size_t size)
{
    if (self->open >= (size_t) self->config->max_connections) {
        self->refused.connections++;
        snprintf (message, size, "server full: %d connections here (max-connections); "
                  "try again later", self->config->max_connections);
        return -1;
    }
    self->open++;
    return 0;
}

void
pl_limits_close (pl_limits_t *self)
{
    assert (self->open > 0);
    self->open--;
}

int
pl_limits_connect (pl_limits_t *self, const char *user_id, char *message, size_t size)
{
    size_t count = (size_t) (uintptr_t) zhashx_lookup (self->users, user_id);
    int most = self->config->max_connections_per_user;
    if (count >= (size_t) most) {
        self->refused.connections_per_user++;
        snprintf (message, size, "too many connections of user %s: at most %d "
                  "(max-connections-per-user)", user_id, most);
        return -1;
    }
    //  A count as a pointer: nothing to free, updated in place
    zhashx_update (self->users, user_id, (void *) (uintptr_t) (count + 1));
    return 0;
}

void
pl_limits_disconnect (pl_limits_t *self, const char *user_id)
{
    size_t count = (size_t) (uintptr_t) zhashx_lookup (self->users, user_id);
    assert (count > 0);
    if (count == 1)
        zhashx_delete (self->users, user_id);
    else
        zhashx_update (self->users, user_id, (void *) (uintptr_t) (count - 1));
}

int
pl_limits_send (pl_limits_t *self, const char *user_id, int64_t now, char *message, size_t size)
{
    if (pl_buckets_take (self->sends, user_id, now, NULL))
        return 0;
    self->refused.send_rate++;
    snprintf (message, size, "rate limit: more than %d SENDs a second (send-rate); "
              "reconnect, slow down and send again what got no receipt",
              self->config->send_rate);
    return -1;
}

int
pl_limits_request (pl_limits_t *self, size_t in_flight, char *message, size_t size)
{
    int most = self->config->max_in_flight;
    if (in_flight < (size_t) most)
        return 0;
    self->refused.in_flight++;
    snprintf (message, size, "too many requests in flight: at most %d (max-in-flight); "
              "wait for receipts before sending more", most);
    return -1;
}

void
pl_limits_prune (pl_limits_t *self, int64_t now)
{
    pl_buckets_prune (self->sends, now);
    pl_buckets_prune (self->typing, now);
}

const pl_limits_refused_t *
pl_limits_refused (pl_limits_t *self)
{
    return &self->refused;
}


//  --------------------------------------------------------------------------
//  Selftest

//  A SEND body refused with a message that contains text
static void
s_test_refuse (pl_limits_t *limits, const char *body, const char *text)
{
    char message [200] = "";
    json_t *json = pl_limits_send_body (limits, body, strlen (body), message, sizeof message);
    pl_check (!json && strstr (message, text));
}

static void
s_test_bodies (pl_limits_t *limits)
{
    char message [200];
    const char *valid = "{\"type\":\"TALK\",\"content\":\"h\xc3\xa9\",\"clientMsgId\":\"c-1\"}";
    json_t *json = pl_limits_send_body (limits, valid, strlen (valid), message, sizeof message);
    pl_check (json && streq (json_string_value (json_object_get (json, "content")), "h\xc3\xa9"));
    json_decref (json);
    s_test_refuse (limits, "{\"type\":\"TALK\",\"content\":\"seen\\u0000hidden\"}", "NUL characters");
    s_test_refuse (limits, "{\"type\":\"TALK\",\"content\":\"\\u0000\"}", "NUL");
    s_test_refuse (limits, "{\"type\":\"TALK\\u0000x\",\"content\":\"x\"}", "NUL");
    pl_check (pl_limits_refused (limits)->nul == 3);
    s_test_refuse (limits, "{\"type\":\"TALK\",\"content\":\"abcde\"}", "content over 4 characters");
    s_test_refuse (limits, "{\"type\":\"TALK\",\"content\":\"\"}", "content must not be empty");
    s_test_refuse (limits, "not json", "body must be a JSON object");
    char big [200];
    memset (big, ' ', sizeof big - 1);
    big [sizeof big - 1] = 0;
    s_test_refuse (limits, big, "message body over 128 bytes (max-body-bytes)");
}

void
pl_limits_test (bool verbose)
{
    printf (" * pl_limits: ");
    if (verbose)
        printf ("\n");
    pl_config_t *config = pl_config_new_default ();
    const char *settings [] = {
        "send-rate", "10", "send-burst", "3", "max-connections", "3",
        "max-connections-per-user", "2", "max-in-flight", "2",
        "max-content-chars", "4", "max-body-bytes", "128", NULL
    };
    for (int index = 0; settings [index]; index += 2)
        pl_check (pl_config_set (config, settings [index], settings [index + 1]) == 0);
    pl_limits_t *limits = pl_limits_new (config);
    pl_check (limits);
    s_test_bodies (limits);
    char message [200];

    //  Sessions in total, then per user
    for (int count = 0; count < 3; count++)
        pl_check (pl_limits_open (limits, message, sizeof message) == 0);
    pl_check (pl_limits_open (limits, message, sizeof message) == -1);
    pl_check (strstr (message, "max-connections"));
    pl_limits_close (limits);
    pl_check (pl_limits_open (limits, message, sizeof message) == 0);
    pl_check (pl_limits_connect (limits, "u1", message, sizeof message) == 0);
    pl_check (pl_limits_connect (limits, "u1", message, sizeof message) == 0);
    pl_check (pl_limits_connect (limits, "u1", message, sizeof message) == -1);
    pl_check (strstr (message, "max-connections-per-user"));
    pl_check (pl_limits_connect (limits, "u2", message, sizeof message) == 0);
    pl_limits_disconnect (limits, "u1");
    pl_check (pl_limits_connect (limits, "u1", message, sizeof message) == 0);

    //  SENDs: a burst of 3, then 10 a second, per user
    for (int count = 0; count < 3; count++)
        pl_check (pl_limits_send (limits, "u1", 1000, message, sizeof message) == 0);
    pl_check (pl_limits_send (limits, "u1", 1000, message, sizeof message) == -1);
    pl_check (strstr (message, "send-rate"));
    pl_check (pl_limits_send (limits, "u2", 1000, message, sizeof message) == 0);
    pl_check (pl_limits_send (limits, "u1", 1100, message, sizeof message) == 0);
    pl_limits_prune (limits, 100000);

    pl_check (pl_limits_request (limits, 1, message, sizeof message) == 0);
    pl_check (pl_limits_request (limits, 2, message, sizeof message) == -1);
    pl_check (strstr (message, "max-in-flight"));
    const pl_limits_refused_t *refused = pl_limits_refused (limits);
    pl_check (refused->connections == 1 && refused->connections_per_user == 1);
    pl_check (refused->send_rate == 1 && refused->in_flight == 1);

    pl_limits_destroy (&limits);
    pl_limits_destroy (&limits);
    pl_config_destroy (&config);
    printf ("OK\n");
}
