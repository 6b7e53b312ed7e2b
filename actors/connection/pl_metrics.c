/*  =========================================================================
    pl_metrics - the host's figures in Prometheus text format
    =========================================================================
*/
#include "pl_metrics.h"
#include "pl_log.h"
#include "pl_util.h"

#include <czmq.h>
#include <glob.h>
#include <jansson.h>

#define RESCAN_MS   2000
//  An actor whose last record is older than this is left out
#define STALE_MS    10000

struct _pl_metrics_t {
    char *runtime_dir;
    zsock_t *subscriber;
    zhashx_t *endpoints;        //  endpoints connected (set)
    zhashx_t *records;          //  "kind.instance" -> record_t
    int64_t next_scan;
};

typedef struct {
    json_t *record;
    int64_t received;
} record_t;

static void
s_record_destroy (void **item_p)
{
    record_t *record = (record_t *) *item_p;
    if (record) {
        json_decref (record->record);
        free (record);
        *item_p = NULL;
    }
}

pl_metrics_t *
pl_metrics_new (const char *runtime_dir)
{
    pl_metrics_t *self = (pl_metrics_t *) zmalloc (sizeof (pl_metrics_t));
    assert (self);
    self->runtime_dir = strdup (runtime_dir);
    self->subscriber = zsock_new (ZMQ_SUB);
    assert (self->subscriber);
    zsock_set_subscribe (self->subscriber, "status.");
    self->endpoints = zhashx_new ();
    self->records = zhashx_new ();
    zhashx_set_destructor (self->records, s_record_destroy);
    return self;
}

void
pl_metrics_destroy (pl_metrics_t **self_p)
{
    assert (self_p);
    pl_metrics_t *self = *self_p;
    if (self) {
        zsock_destroy (&self->subscriber);
        zhashx_destroy (&self->endpoints);
        zhashx_destroy (&self->records);
        free (self->runtime_dir);
        free (self);
        *self_p = NULL;
    }
}

//  Connect to monitor endpoints that appeared since the last look.
static void
s_metrics_scan (pl_metrics_t *self)
{
    char pattern [4096];
    snprintf (pattern, sizeof pattern, "%s/monitor-*.ipc", self->runtime_dir);
    glob_t found;
    if (glob (pattern, 0, NULL, &found) == 0) {
        for (size_t index = 0; index < found.gl_pathc; index++) {
            char endpoint [4200];
            snprintf (endpoint, sizeof endpoint, "ipc://%s", found.gl_pathv [index]);
            if (!zhashx_lookup (self->endpoints, endpoint)
            &&  zsock_connect (self->subscriber, "%s", endpoint) == 0)
                zhashx_insert (self->endpoints, endpoint, (void *) 1);
        }
    }
    globfree (&found);
}

void
pl_metrics_poll (pl_metrics_t *self)
{
    assert (self);
    int64_t now = pl_mono_ms ();
    if (now >= self->next_scan) {
        s_metrics_scan (self);
        self->next_scan = now + RESCAN_MS;
    }
    while (zsock_events (self->subscriber) & ZMQ_POLLIN) {
        zmsg_t *message = zmsg_recv (self->subscriber);
        if (!message)
            break;
        char *topic = zmsg_popstr (message);
        char *text = zmsg_popstr (message);
        json_t *record = text? json_loads (text, 0, NULL): NULL;
        if (topic && json_is_object (record)) {
            record_t *entry = (record_t *) zmalloc (sizeof (record_t));
            entry->record = record;
            entry->received = now;
            zhashx_update (self->records, topic + strlen ("status."), entry);
        }
        else
            json_decref (record);
        free (topic);
        free (text);
        zmsg_destroy (&message);
    }
}

//  A metric name part: [a-zA-Z0-9_], anything else becomes '_'.
static void
s_name_clean (char *name)
{
    for (; *name; name++)
        if (!isalnum ((unsigned char) *name) && *name != '_')
            *name = '_';
}

//  Label values escape backslash, quote and newline.
static void
s_label_value (pl_buf_t *out, const char *value)
{
    for (; *value; value++) {
        if (*value == '\\' || *value == '"')
            pl_buf_append (out, "\\", 1);
        if (*value == '\n')
            pl_buf_append (out, "\\n", 2);
        else
            pl_buf_append (out, value, 1);
    }
}

//  Families: name -> pl_buf_t of samples; kept apart so every sample of a
//  family follows its one TYPE line, as the text format wants.
typedef struct {
    char *type;
    pl_buf_t samples;
} family_t;

static void
s_family_destroy (void **item_p)
{
    family_t *family = (family_t *) *item_p;
    if (family) {
        free (family->type);
        pl_buf_free (&family->samples);
        free (family);
        *item_p = NULL;
    }
}

static family_t *
s_family (zhashx_t *families, const char *name, const char *type)
{
    family_t *family = (family_t *) zhashx_lookup (families, name);
    if (!family) {
        family = (family_t *) zmalloc (sizeof (family_t));
        family->type = strdup (type);
        pl_buf_init (&family->samples);
        zhashx_insert (families, name, family);
    }
    return family;
}

static void
s_labels (pl_buf_t *out, json_t *record, const char *extra_name, const char *extra_value)
{
    pl_buf_append (out, "{host=\"", 7);
    s_label_value (out, json_string_value (json_object_get (record, "host"))?: "");
    pl_buf_printf (out, "\",instance=\"%" JSON_INTEGER_FORMAT "\"",
                   json_integer_value (json_object_get (record, "instance")));
    if (extra_name) {
        pl_buf_printf (out, ",%s=\"", extra_name);
        s_label_value (out, extra_value);
        pl_buf_append (out, "\"", 1);
    }
    pl_buf_append (out, "}", 1);
}

static void
s_render_record (zhashx_t *families, json_t *record)
{
    const char *kind = json_string_value (json_object_get (record, "kind"));
    json_t *figures = json_object_get (record, "figures");
    if (!kind || !json_is_object (figures))
        return;
    const char *key;
    json_t *value;
    json_object_foreach (figures, key, value) {
        char name [200];
        snprintf (name, sizeof name, "parley_%s_%s", kind, key);
        s_name_clean (name);
        if (json_is_number (value) || json_is_boolean (value)) {
            family_t *family = s_family (families, name, "gauge");
            pl_buf_append (&family->samples, name, strlen (name));
            s_labels (&family->samples, record, NULL, NULL);
            double number = json_is_boolean (value)? (json_is_true (value)? 1: 0): json_number_value (value);
            pl_buf_printf (&family->samples, " %.17g\n", number);
        }
        else
        if (json_is_object (value) && !json_object_get (value, "buckets")) {
            //  {"persist": {"pending": 3}, ...}: one family per inner
            //  figure, the outer key as label "name"
            const char *label;
            json_t *inner;
            json_object_foreach (value, label, inner) {
                const char *field;
                json_t *number;
                json_object_foreach (inner, field, number) {
                    if (!json_is_number (number))
                        continue;
                    char inner_name [300];
                    snprintf (inner_name, sizeof inner_name, "%s_%s", name, field);
                    s_name_clean (inner_name);
                    family_t *family = s_family (families, inner_name, "gauge");
                    pl_buf_append (&family->samples, inner_name, strlen (inner_name));
                    s_labels (&family->samples, record, "name", label);
                    pl_buf_printf (&family->samples, " %.17g\n", json_number_value (number));
                }
            }
        }
        else
        if (json_is_object (value) && json_is_object (json_object_get (value, "buckets"))) {
            family_t *family = s_family (families, name, "histogram");
            const char *bound;
            json_t *count;
            json_object_foreach (json_object_get (value, "buckets"), bound, count) {
                pl_buf_printf (&family->samples, "%s_bucket", name);
                s_labels (&family->samples, record, "le", bound);
                pl_buf_printf (&family->samples, " %" JSON_INTEGER_FORMAT "\n", json_integer_value (count));
            }
            pl_buf_printf (&family->samples, "%s_sum", name);
            s_labels (&family->samples, record, NULL, NULL);
            pl_buf_printf (&family->samples, " %.17g\n", json_number_value (json_object_get (value, "sum")));
            pl_buf_printf (&family->samples, "%s_count", name);
            s_labels (&family->samples, record, NULL, NULL);
            pl_buf_printf (&family->samples, " %" JSON_INTEGER_FORMAT "\n",
                           json_integer_value (json_object_get (value, "count")));
        }
    }
}

static char *
s_render (zlistx_t *records)
{
    zhashx_t *families = zhashx_new ();
    zhashx_set_destructor (families, s_family_destroy);
    for (json_t *record = (json_t *) zlistx_first (records); record;
         record = (json_t *) zlistx_next (records))
        s_render_record (families, record);
    pl_buf_t out;
    pl_buf_init (&out);
    zlistx_t *names = zhashx_keys (families);
    zlistx_set_comparator (names, (zlistx_comparator_fn *) strcmp);
    zlistx_sort (names);
    for (const char *name = (const char *) zlistx_first (names); name;
         name = (const char *) zlistx_next (names)) {
        family_t *family = (family_t *) zhashx_lookup (families, name);
        pl_buf_printf (&out, "# HELP %s parley status figure (see MONITOR.md)\n# TYPE %s %s\n",
                       name, name, family->type);
        pl_buf_append (&out, pl_buf_head (&family->samples), pl_buf_pending (&family->samples));
    }
    zlistx_destroy (&names);
    zhashx_destroy (&families);
    char *text = strndup (pl_buf_head (&out), pl_buf_pending (&out));
    pl_buf_free (&out);
    return text;
}

char *
pl_metrics_render (pl_metrics_t *self)
{
    assert (self);
    pl_metrics_poll (self);
    int64_t now = pl_mono_ms ();
    zlistx_t *records = zlistx_new ();
    for (record_t *entry = (record_t *) zhashx_first (self->records); entry;
         entry = (record_t *) zhashx_next (self->records))
        if (now - entry->received <= STALE_MS)
            zlistx_add_end (records, entry->record);
    char *text = s_render (records);
    zlistx_destroy (&records);
    return text;
}

char *
pl_metrics_render_records (const char *records_json)
{
    json_t *array = json_loads (records_json, 0, NULL);
    zlistx_t *records = zlistx_new ();
    size_t index;
    json_t *record;
    json_array_foreach (array, index, record)
        zlistx_add_end (records, record);
    char *text = s_render (records);
    zlistx_destroy (&records);
    json_decref (array);
    return text;
}

void
pl_metrics_test (bool verbose)
{
    if (verbose)
        printf (" * pl_metrics: ");
    char *text = pl_metrics_render_records (
        "[{\"type\":\"status\",\"host\":\"h1\",\"kind\":\"conn\",\"instance\":0,"
        "  \"figures\":{\"sessions\":3,\"ready\":true,\"groups\":{\"persist\":{\"pending\":5,\"lag\":0}},\"latency_ms\":{\"buckets\":{\"1\":1,\"+Inf\":2},\"sum\":7.5,\"count\":2}}},"
        " {\"type\":\"status\",\"host\":\"h\\\"1\",\"kind\":\"conn\",\"instance\":1,\"figures\":{\"sessions\":4}}]");
    assert (text);
    //  One TYPE line per family, all its samples after it
    assert (strstr (text, "# TYPE parley_conn_sessions gauge\n"
                          "parley_conn_sessions{host=\"h1\",instance=\"0\"} 3\n"
                          "parley_conn_sessions{host=\"h\\\"1\",instance=\"1\"} 4\n"));
    assert (strstr (text, "parley_conn_ready{host=\"h1\",instance=\"0\"} 1\n"));
    assert (strstr (text, "parley_conn_groups_pending{host=\"h1\",instance=\"0\",name=\"persist\"} 5\n"));
    assert (strstr (text, "# TYPE parley_conn_latency_ms histogram\n"));
    assert (strstr (text, "parley_conn_latency_ms_bucket{host=\"h1\",instance=\"0\",le=\"+Inf\"} 2\n"));
    assert (strstr (text, "parley_conn_latency_ms_count{host=\"h1\",instance=\"0\"} 2\n"));
    free (text);
    //  Nothing heard yet: an empty page, not an error
    pl_metrics_t *metrics = pl_metrics_new ("/nonexistent");
    text = pl_metrics_render (metrics);
    assert (text && *text == 0);
    free (text);
    pl_metrics_destroy (&metrics);
    if (verbose)
        printf ("OK\n");
}
