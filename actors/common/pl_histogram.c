/*  =========================================================================
    pl_histogram - latency histogram in milliseconds, Prometheus-shaped
    =========================================================================
*/
#include "pl_histogram.h"
#include "pl_util.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static const double s_bounds [PL_HISTOGRAM_BOUNDS] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};

void
pl_histogram_observe (pl_histogram_t *self, double milliseconds)
{
    if (milliseconds < 0)
        milliseconds = 0;       //  clocks of two hosts disagree a little
    int bucket = 0;
    while (bucket < PL_HISTOGRAM_BOUNDS && milliseconds > s_bounds [bucket])
        bucket++;
    self->counts [bucket]++;
    self->count++;
    self->sum += milliseconds;
}

json_t *
pl_histogram_json (const pl_histogram_t *self)
{
    json_t *buckets = json_object ();
    uint64_t cumulative = 0;
    for (int bucket = 0; bucket <= PL_HISTOGRAM_BOUNDS; bucket++) {
        cumulative += self->counts [bucket];
        char bound [16];
        if (bucket < PL_HISTOGRAM_BOUNDS)
            snprintf (bound, sizeof bound, "%g", s_bounds [bucket]);
        else
            strcpy (bound, "+Inf");
        json_object_set_new (buckets, bound, json_integer ((json_int_t) cumulative));
    }
    return json_pack ("{s:o, s:f, s:I}", "buckets", buckets, "sum", self->sum,
                      "count", (json_int_t) self->count);
}

void
pl_histogram_test (bool verbose)
{
    if (verbose)
        printf (" * pl_histogram: ");
    pl_histogram_t histogram;
    memset (&histogram, 0, sizeof histogram);
    pl_histogram_observe (&histogram, 0.5);
    pl_histogram_observe (&histogram, 3);
    pl_histogram_observe (&histogram, 20000);
    pl_histogram_observe (&histogram, -4);
    json_t *json = pl_histogram_json (&histogram);
    json_t *buckets = json_object_get (json, "buckets");
    pl_check (json_integer_value (json_object_get (buckets, "1")) == 2);
    pl_check (json_integer_value (json_object_get (buckets, "5")) == 3);
    pl_check (json_integer_value (json_object_get (buckets, "10000")) == 3);
    pl_check (json_integer_value (json_object_get (buckets, "+Inf")) == 4);
    pl_check (json_integer_value (json_object_get (json, "count")) == 4);
    pl_check (json_real_value (json_object_get (json, "sum")) == 20003.5);
    json_decref (json);
    if (verbose)
        printf ("OK\n");
}
