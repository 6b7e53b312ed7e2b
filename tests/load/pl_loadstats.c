/*  =========================================================================
    pl_loadstats - log-linear latency histogram for parley-load
    =========================================================================
*/
#include "pl_loadstats.h"
#include "pl_load.h"
#include "pl_util.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

//  Bucket of a value: itself below 256; else with e = log2 (value) - 7,
//  the 128 buckets of [2^(7+e), 2^(8+e)) are value >> e, each 2^e wide.
static int
s_bucket (uint64_t value)
{
    if (value < 256)
        return (int) value;
    int exponent = 63 - __builtin_clzll (value) - 7;
    return 256 + (exponent - 1) * 128 + (int) ((value >> exponent) - 128);
}

//  The lowest value of a bucket and its width
static void
s_bucket_range (int bucket, uint64_t *low, uint64_t *width)
{
    if (bucket < 256) {
        *low = (uint64_t) bucket;
        *width = 1;
        return;
    }
    int exponent = (bucket - 256) / 128 + 1;
    *low = ((uint64_t) ((bucket - 256) % 128) + 128) << exponent;
    *width = 1ULL << exponent;
}

void
pl_loadstats_init (pl_loadstats_t *self)
{
    memset (self, 0, sizeof *self);
    self->min_ns = UINT64_MAX;
}

void
pl_loadstats_record (pl_loadstats_t *self, int64_t value_ns)
{
    uint64_t value = value_ns < (int64_t) PL_LOADSTATS_MIN_NS? PL_LOADSTATS_MIN_NS: (uint64_t) value_ns;
    if (value > PL_LOADSTATS_MAX_NS)
        value = PL_LOADSTATS_MAX_NS;
    self->counts [s_bucket (value)]++;
    self->count++;
    if (value < self->min_ns)
        self->min_ns = value;
    if (value > self->max_ns)
        self->max_ns = value;
}

void
pl_loadstats_merge (pl_loadstats_t *self, const pl_loadstats_t *other)
{
    for (int bucket = 0; bucket < PL_LOADSTATS_BUCKETS; bucket++)
        self->counts [bucket] += other->counts [bucket];
    self->count += other->count;
    if (other->min_ns < self->min_ns)
        self->min_ns = other->min_ns;
    if (other->max_ns > self->max_ns)
        self->max_ns = other->max_ns;
}

uint64_t
pl_loadstats_quantile (const pl_loadstats_t *self, double quantile)
{
    if (self->count == 0)
        return 0;
    //  The rank of the value wanted, 1-based: the smallest value with at
    //  least quantile of all values at or below it
    uint64_t rank = (uint64_t) ceil (quantile * (double) self->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (int bucket = 0; bucket < PL_LOADSTATS_BUCKETS; bucket++) {
        seen += self->counts [bucket];
        if (seen >= rank) {
            uint64_t low, width;
            s_bucket_range (bucket, &low, &width);
            uint64_t middle = low + width / 2;
            if (middle > self->max_ns)
                middle = self->max_ns;
            return middle < self->min_ns? self->min_ns: middle;
        }
    }
    return self->max_ns;
}

static json_t *
s_ms (uint64_t value_ns)
{
    return json_real (round ((double) value_ns / 1000.0) / 1000.0);
}

json_t *
pl_loadstats_json_ms (const pl_loadstats_t *self, const char *names [])
{
    json_t *object = pl_load_need (json_object ());
    for (size_t index = 0; names [index]; index++) {
        const char *name = names [index];
        double quantile = streq_safe (name, "p50")? 0.5:
                          streq_safe (name, "p90")? 0.9:
                          streq_safe (name, "p99")? 0.99:
                          streq_safe (name, "p999")? 0.999: -1;
        json_t *value = NULL;
        if (self->count && quantile >= 0)
            value = s_ms (pl_loadstats_quantile (self, quantile));
        else
        if (self->count && streq_safe (name, "max"))
            value = s_ms (self->max_ns);
        json_object_set_new (object, name, value? value: json_null ());
    }
    return object;
}


//  --------------------------------------------------------------------------
//  Selftest

//  A bucket's middle is within 1/256 of anything in the bucket
static void
s_test_error_bound (void)
{
    for (uint64_t value = 1000; value < PL_LOADSTATS_MAX_NS; value = value * 1.013 + 7) {
        int bucket = s_bucket (value);
        pl_check (bucket >= 0 && bucket < PL_LOADSTATS_BUCKETS);
        uint64_t low, width;
        s_bucket_range (bucket, &low, &width);
        pl_check (value >= low && value < low + width);
        double middle = (double) low + (double) width / 2;
        pl_check (fabs (middle - (double) value) <= (double) value / 256 + 0.5);
    }
    pl_check (s_bucket (PL_LOADSTATS_MAX_NS) < PL_LOADSTATS_BUCKETS);
    //  Buckets follow each other without a hole
    for (int bucket = 1; bucket < PL_LOADSTATS_BUCKETS; bucket++) {
        uint64_t low, width, previous_low, previous_width;
        s_bucket_range (bucket, &low, &width);
        s_bucket_range (bucket - 1, &previous_low, &previous_width);
        pl_check (previous_low + previous_width == low);
        pl_check (s_bucket (low) == bucket);
    }
}

void
pl_loadstats_test (bool verbose)
{
    printf (" * pl_loadstats: ");
    if (verbose)
        printf ("\n");
    s_test_error_bound ();

    pl_loadstats_t first, second;
    pl_loadstats_init (&first);
    pl_loadstats_init (&second);
    pl_check (pl_loadstats_quantile (&first, 0.5) == 0);
    //  1..1000 ms, half in each; merged they are one uniform run
    for (int64_t ms = 1; ms <= 1000; ms++)
        pl_loadstats_record (ms % 2? &first: &second, ms * 1000000);
    pl_loadstats_merge (&first, &second);
    pl_check (first.count == 1000);
    double p50 = (double) pl_loadstats_quantile (&first, 0.5) / 1e6;
    double p99 = (double) pl_loadstats_quantile (&first, 0.99) / 1e6;
    pl_check (fabs (p50 - 500) <= 5 && fabs (p99 - 990) <= 9.9);
    pl_check (pl_loadstats_quantile (&first, 1.0) == 1000000000);
    pl_check (first.min_ns == 1000000 && first.max_ns == 1000000000);

    //  Clamped at both ends
    pl_loadstats_init (&second);
    pl_loadstats_record (&second, -5);
    pl_loadstats_record (&second, 3600LL * 1000000000);
    pl_check (second.min_ns == PL_LOADSTATS_MIN_NS && second.max_ns == PL_LOADSTATS_MAX_NS);

    const char *names [] = { "p50", "p999", "max", NULL };
    json_t *json = pl_loadstats_json_ms (&first, names);
    char *text = json_dumps (json, JSON_COMPACT | JSON_REAL_PRECISION (10));
    if (verbose)
        printf ("%s\n", text);
    pl_check (text && strstr (text, "\"max\":1000.0"));
    free (text);
    json_decref (json);
    pl_loadstats_init (&second);
    json = pl_loadstats_json_ms (&second, names);
    pl_check (json_is_null (json_object_get (json, "p50")));
    json_decref (json);
    printf ("OK\n");
}
