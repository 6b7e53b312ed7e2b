/*  =========================================================================
    pl_bucket - token buckets: rate limits that a burst may use up at once

    A bucket holds up to `burst` tokens and refills at `rate` tokens a
    second; each action takes one. An empty bucket says how long until the
    next token (for HTTP Retry-After). pl_buckets_t keeps one bucket per key
    (a user id, a session) and forgets buckets that are full again, so a
    million users who came once cost nothing.
    =========================================================================
*/
#ifndef PL_BUCKET_H_INCLUDED
#define PL_BUCKET_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    double rate;                //  tokens a second
    double burst;               //  most tokens held
    double tokens;
    int64_t updated_ms;         //  monotonic ms of the last refill
} pl_bucket_t;

//  A full bucket. rate 0 means no limit (every take succeeds).
void
    pl_bucket_init (pl_bucket_t *self, double rate, double burst, int64_t now_ms);

//  Take one token at monotonic time now_ms. Returns true when there was
//  one; false when the limit is reached (nothing taken).
bool
    pl_bucket_take (pl_bucket_t *self, int64_t now_ms);

//  Milliseconds until a token is there (0 when one is there now).
int64_t
    pl_bucket_wait_ms (pl_bucket_t *self, int64_t now_ms);

typedef struct _pl_buckets_t pl_buckets_t;

//  Buckets of this rate and burst, one per key.
pl_buckets_t *
    pl_buckets_new (double rate, double burst);

void
    pl_buckets_destroy (pl_buckets_t **self_p);

//  Take one token from key's bucket. On false, *wait_ms (when not NULL)
//  says when to try again.
bool
    pl_buckets_take (pl_buckets_t *self, const char *key, int64_t now_ms, int64_t *wait_ms);

//  Forget the buckets that refilled completely (call now and then).
void
    pl_buckets_prune (pl_buckets_t *self, int64_t now_ms);

//  Buckets held (for tests and figures)
size_t
    pl_buckets_size (pl_buckets_t *self);

void
    pl_bucket_test (bool verbose);

#endif
