/*  =========================================================================
    pl_bucket - token buckets: rate limits that a burst may use up at once
    =========================================================================
*/
#include "pl_bucket.h"
#include "pl_util.h"

#include <assert.h>
#include <czmq.h>
#include <math.h>

void
pl_bucket_init (pl_bucket_t *self, double rate, double burst, int64_t now_ms)
{
    assert (self && rate >= 0 && burst >= 1);
    self->rate = rate;
    self->burst = burst;
    self->tokens = burst;
    self->updated_ms = now_ms;
}

static void
s_bucket_refill (pl_bucket_t *self, int64_t now_ms)
{
    if (now_ms > self->updated_ms) {
        self->tokens += self->rate * (double) (now_ms - self->updated_ms) / 1000.0;
        if (self->tokens > self->burst)
            self->tokens = self->burst;
        self->updated_ms = now_ms;
    }
}

bool
pl_bucket_take (pl_bucket_t *self, int64_t now_ms)
{
    assert (self);
    if (self->rate == 0)
        return true;
    s_bucket_refill (self, now_ms);
    if (self->tokens < 1.0)
        return false;
    self->tokens -= 1.0;
    return true;
}

int64_t
pl_bucket_wait_ms (pl_bucket_t *self, int64_t now_ms)
{
    assert (self);
    if (self->rate == 0)
        return 0;
    s_bucket_refill (self, now_ms);
    if (self->tokens >= 1.0)
        return 0;
    return (int64_t) ceil ((1.0 - self->tokens) * 1000.0 / self->rate);
}

//  --------------------------------------------------------------------------
//  One bucket per key

struct _pl_buckets_t {
    zhashx_t *buckets;          //  key -> pl_bucket_t
    double rate;
    double burst;
};

pl_buckets_t *
pl_buckets_new (double rate, double burst)
{
    assert (rate >= 0 && burst >= 1);
    pl_buckets_t *self = (pl_buckets_t *) zmalloc (sizeof (pl_buckets_t));
    assert (self);
    self->buckets = zhashx_new ();
    assert (self->buckets);
    zhashx_set_destructor (self->buckets, (zhashx_destructor_fn *) zstr_free);
    self->rate = rate;
    self->burst = burst;
    return self;
}

void
pl_buckets_destroy (pl_buckets_t **self_p)
{
    assert (self_p);
    pl_buckets_t *self = *self_p;
    if (self) {
        zhashx_destroy (&self->buckets);
        free (self);
        *self_p = NULL;
    }
}

bool
pl_buckets_take (pl_buckets_t *self, const char *key, int64_t now_ms, int64_t *wait_ms)
{
    assert (self && key);
    if (wait_ms)
        *wait_ms = 0;
    if (self->rate == 0)
        return true;
    pl_bucket_t *bucket = (pl_bucket_t *) zhashx_lookup (self->buckets, key);
    if (!bucket) {
        bucket = (pl_bucket_t *) zmalloc (sizeof (pl_bucket_t));
        assert (bucket);
        pl_bucket_init (bucket, self->rate, self->burst, now_ms);
        zhashx_insert (self->buckets, key, bucket);
    }
    if (pl_bucket_take (bucket, now_ms))
        return true;
    if (wait_ms)
        *wait_ms = pl_bucket_wait_ms (bucket, now_ms);
    return false;
}

void
pl_buckets_prune (pl_buckets_t *self, int64_t now_ms)
{
    assert (self);
    zlistx_t *full = zlistx_new ();
    for (pl_bucket_t *bucket = (pl_bucket_t *) zhashx_first (self->buckets); bucket;
         bucket = (pl_bucket_t *) zhashx_next (self->buckets)) {
        s_bucket_refill (bucket, now_ms);
        if (bucket->tokens >= bucket->burst)
            zlistx_add_end (full, (void *) zhashx_cursor (self->buckets));
    }
    for (const char *key = (const char *) zlistx_first (full); key;
         key = (const char *) zlistx_next (full))
        zhashx_delete (self->buckets, key);
    zlistx_destroy (&full);
}

size_t
pl_buckets_size (pl_buckets_t *self)
{
    assert (self);
    return zhashx_size (self->buckets);
}

void
pl_bucket_test (bool verbose)
{
    if (verbose)
        printf (" * pl_bucket: ");
    pl_bucket_t bucket;
    pl_bucket_init (&bucket, 10, 3, 1000);          //  10 a second, bursts of 3
    pl_check (pl_bucket_take (&bucket, 1000));
    pl_check (pl_bucket_take (&bucket, 1000));
    pl_check (pl_bucket_take (&bucket, 1000));
    pl_check (!pl_bucket_take (&bucket, 1000));
    pl_check (pl_bucket_wait_ms (&bucket, 1000) == 100);
    pl_check (!pl_bucket_take (&bucket, 1050));
    pl_check (pl_bucket_take (&bucket, 1100));
    //  A long pause refills up to the burst, no more
    pl_check (pl_bucket_take (&bucket, 60000));
    pl_check (pl_bucket_take (&bucket, 60000));
    pl_check (pl_bucket_take (&bucket, 60000));
    pl_check (!pl_bucket_take (&bucket, 60000));
    //  Rate 0: no limit
    pl_bucket_init (&bucket, 0, 1, 0);
    for (int count = 0; count < 1000; count++)
        pl_check (pl_bucket_take (&bucket, 0));

    pl_buckets_t *buckets = pl_buckets_new (1, 2);
    int64_t wait = -1;
    pl_check (pl_buckets_take (buckets, "alice", 0, &wait) && wait == 0);
    pl_check (pl_buckets_take (buckets, "alice", 0, &wait));
    pl_check (!pl_buckets_take (buckets, "alice", 0, &wait) && wait == 1000);
    //  Keys are apart
    pl_check (pl_buckets_take (buckets, "bob", 0, NULL));
    pl_check (pl_buckets_size (buckets) == 2);
    //  Full again: forgotten (bob after one second, alice after two)
    pl_buckets_prune (buckets, 1000);
    pl_check (pl_buckets_size (buckets) == 1);
    pl_buckets_prune (buckets, 2000);
    pl_check (pl_buckets_size (buckets) == 0);
    pl_buckets_destroy (&buckets);
    pl_buckets_destroy (&buckets);
    if (verbose)
        printf ("OK\n");
}
