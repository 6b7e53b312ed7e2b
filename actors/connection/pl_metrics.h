/*  =========================================================================
    pl_metrics - the host's figures in Prometheus text format

    Subscribes to the status records every actor of the host publishes on
    its monitor endpoint (ipc://RUNTIME/monitor-*.ipc, see MONITOR.md),
    keeps the latest of each, and renders them for GET /metrics. One table
    (s_families in pl_metrics.c) gives each figure its family: name
    (parley_<kind>_..., counters ..._total, base units: a figure in ms is
    exported in seconds), type (gauge, counter, histogram) and help text;
    samples carry labels host and instance (and name for per-item figures
    such as the bridge's groups). A figure the table does not know is left
    out, logged once, and counted in parley_metrics_figures_skipped{host,
    instance,kind}. So one scrape of any connection actor shows the host.
    =========================================================================
*/
#ifndef PL_METRICS_H_INCLUDED
#define PL_METRICS_H_INCLUDED

#include <stdbool.h>

typedef struct _pl_metrics_t pl_metrics_t;

//  Records come from the actors' monitor endpoints in runtime_dir; an actor
//  whose last record is older than stale_ms is gone (the peer timeout).
pl_metrics_t *pl_metrics_new (const char *runtime_dir, int stale_ms);
void pl_metrics_destroy (pl_metrics_t **self_p);
//  Take in what arrived (never blocks); finds new actors every few seconds.
void pl_metrics_poll (pl_metrics_t *self);
//  Prometheus text of every actor heard from in the last seconds; malloc'd.
char *pl_metrics_render (pl_metrics_t *self);
//  Render one set of records (a JSON array of status records): for tests.
char *pl_metrics_render_records (const char *records_json);

void pl_metrics_test (bool verbose);

#endif
