/*  =========================================================================
    pl_loadstats - log-linear latency histogram for parley-load

    HdrHistogram's layout, fixed at 1 ns units: values below 256 ns have a
    bucket each, above that every power of two is split into 128 equal
    buckets, so any value is known to within 1/256 of itself (reported at
    its bucket's middle). Values are clamped to 1 us .. 60 s. Recording is
    a shift and an add, with no allocation; each thread keeps its own and
    the main thread adds them up at the end.
    =========================================================================
*/
#ifndef PL_LOADSTATS_H_INCLUDED
#define PL_LOADSTATS_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define PL_LOADSTATS_MIN_NS     1000ULL             //  1 us
#define PL_LOADSTATS_MAX_NS     60000000000ULL      //  60 s
//  256 linear buckets, then 128 per power of two up to 2^36 ns (> 60 s)
#define PL_LOADSTATS_BUCKETS    (256 + 28 * 128)

typedef struct {
    uint64_t counts [PL_LOADSTATS_BUCKETS];
    uint64_t count;
    uint64_t min_ns;            //  exact, UINT64_MAX while empty
    uint64_t max_ns;            //  exact
} pl_loadstats_t;

//  Empty a histogram.
void
    pl_loadstats_init (pl_loadstats_t *self);

//  Record one value in nanoseconds (clamped to 1 us .. 60 s).
void
    pl_loadstats_record (pl_loadstats_t *self, int64_t value_ns);

//  Add every value of other to self.
void
    pl_loadstats_merge (pl_loadstats_t *self, const pl_loadstats_t *other);

//  The value at quantile (0..1) in nanoseconds: the middle of the bucket
//  that holds it, never above the largest value recorded. 0 when empty.
uint64_t
    pl_loadstats_quantile (const pl_loadstats_t *self, double quantile);

//  {"p50":ms,"p99":ms,...,"max":ms} for the quantiles named in names
//  ("p50", "p99", "p999": 0.5, 0.99, 0.999), milliseconds with three
//  decimals; values are null while the histogram is empty.
json_t *
    pl_loadstats_json_ms (const pl_loadstats_t *self, const char *names []);

void
    pl_loadstats_test (bool verbose);

#endif
