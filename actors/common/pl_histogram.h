/*  =========================================================================
    pl_histogram - latency histogram in milliseconds, Prometheus-shaped

    Fixed buckets (1 ms to 10 s), so observing is a few compares and the
    status records of every actor add up. JSON form, used in status records
    and turned into Prometheus text by pl_metrics:
        {"buckets": {"1": n, "2": n, ..., "+Inf": n}, "sum": ms, "count": n}
    with cumulative bucket counts, as Prometheus wants them.
    =========================================================================
*/
#ifndef PL_HISTOGRAM_H_INCLUDED
#define PL_HISTOGRAM_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define PL_HISTOGRAM_BOUNDS 13

typedef struct {
    uint64_t counts [PL_HISTOGRAM_BOUNDS + 1];  //  per bucket, last is +Inf
    uint64_t count;
    double sum;
} pl_histogram_t;

void    pl_histogram_observe (pl_histogram_t *self, double milliseconds);
json_t *pl_histogram_json (const pl_histogram_t *self);
void    pl_histogram_test (bool verbose);

#endif
