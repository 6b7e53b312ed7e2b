/*  =========================================================================
    pl_limits - what one connection actor allows its STOMP clients

    SEND bodies (max-body-bytes, max-content-chars, no NUL), SENDs a second
    per user (send-rate, send-burst), sessions in total (max-connections)
    and per user (max-connections-per-user), and requests in flight per
    session (max-in-flight). Rates and connection counts are per connection
    actor: a host with N of them allows N times as much. Each refusal says
    which limit in its message and is counted.
    =========================================================================
*/
#ifndef PL_LIMITS_H_INCLUDED
#define PL_LIMITS_H_INCLUDED

#include "pl_config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _pl_limits_t pl_limits_t;

//  Refusals counted since the start, one per limit
typedef struct {
    uint64_t nul, send_rate, connections, connections_per_user, in_flight;
    //  TYPING events dropped over typing-rate (issue 9)
    uint64_t typing_rate;
} pl_limits_refused_t;

//  Limits of config (which must outlive them). NULL when out of memory.
pl_limits_t *
    pl_limits_new (const pl_config_t *config);

//  Safe on NULL and twice.
void
    pl_limits_destroy (pl_limits_t **self_p);

//  A SEND body checked: the JSON object of a valid TALK message, or of a
//  READ (its seq: pl_limits_read_seq), which the caller decrefs; or NULL
//  with the reason for the client in message.
json_t *
    pl_limits_send_body (pl_limits_t *self, const char *body, size_t size,
                         char *message, size_t message_size);

//  May user send one more TYPING to room at monotonic time now? Returns 0,
//  or -1 (counted) when over typing-rate: the caller drops it silently.
int
    pl_limits_typing (pl_limits_t *self, const char *user_id, const char *room_id, int64_t now);

//  The seq of a READ body (1 to 2^53 - 1). Returns 0, or -1 with the
//  reason for the client in message.
int
    pl_limits_read_seq (json_t *json, uint64_t *seq, char *message, size_t size);

//  A WebSocket opens. Returns 0, or -1 with the reason in message when the
//  actor holds max-connections already (then no pl_limits_close).
int
    pl_limits_open (pl_limits_t *self, char *message, size_t size);

void
    pl_limits_close (pl_limits_t *self);

//  A session of user_id connects. Returns 0, or -1 with the reason when
//  the user has max-connections-per-user here (then no disconnect).
int
    pl_limits_connect (pl_limits_t *self, const char *user_id, char *message, size_t size);

void
    pl_limits_disconnect (pl_limits_t *self, const char *user_id);

//  user_id SENDs at monotonic now. Returns 0, or -1 with the reason when
//  over send-rate.
int
    pl_limits_send (pl_limits_t *self, const char *user_id, int64_t now,
                    char *message, size_t size);

//  A session with in_flight requests waiting asks for one more. Returns 0,
//  or -1 with the reason at max-in-flight.
int
    pl_limits_request (pl_limits_t *self, size_t in_flight, char *message, size_t size);

//  Forget what refilled (call now and then).
void
    pl_limits_prune (pl_limits_t *self, int64_t now);

const pl_limits_refused_t *
    pl_limits_refused (pl_limits_t *self);

void
    pl_limits_test (bool verbose);

#endif
