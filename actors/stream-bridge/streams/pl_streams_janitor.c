/*  =========================================================================
    pl_streams_janitor - keeps the shard streams bounded, and this host's
    liveness key "<prefix>:host:<host_id>" fresh

    Every janitor-interval-ms, per shard stream, XINFO GROUPS; then for each
    group its oldest pending entry (XPENDING - + 1) and, for the fan-out
    group of another host, whether that host's key still exists; once all
    replies are in, XGROUP DESTROY the groups of departed hosts and XTRIM
    MINID = the smallest id a remaining group still needs. Everything before
    it was delivered to every group and acked. All on the command links,
    pipelined: a round costs a few round trips and never blocks the loop.
    The figures XINFO GROUPS gives feed pl_streams_groups_json.
    =========================================================================
*/
#include "pl_streams_internal.h"

#include <assert.h>
#include <inttypes.h>

//  What the janitor last saw of one group on one shard, for status records
typedef struct {
    long long pending;          //  delivered, not acked
    long long lag;              //  not yet delivered (-1: Redis did not say)
} group_figures_t;

//  One group's fields of XINFO GROUPS
typedef struct {
    const char *name;
    const char *last;           //  last-delivered-id
    long long pending;
    long long lag;
} group_info_t;

//  Stream ids "ms-seq" compared as numbers: <0, 0, >0. An id that does not
//  parse sorts first, so it can only hold trimming back, never push it on.
static int
s_id_compare (const char *a, const char *b)
{
    unsigned long long part_a [2] = { 0, 0 }, part_b [2] = { 0, 0 };
    bool ok_a = sscanf (a, "%llu-%llu", &part_a [0], &part_a [1]) == 2;
    bool ok_b = sscanf (b, "%llu-%llu", &part_b [0], &part_b [1]) == 2;
    if (!ok_a || !ok_b)
        return ok_a - ok_b;
    for (int index = 0; index < 2; index++)
        if (part_a [index] != part_b [index])
            return part_a [index] < part_b [index]? -1: 1;
    return 0;
}

static void
s_jshard_clear (jshard_t *jshard)
{
    for (size_t index = 0; index < jshard->group_count; index++)
        free (jshard->groups [index].name);
    free (jshard->groups);
    jshard->groups = NULL;
    jshard->group_count = 0;
}


//  --------------------------------------------------------------------------
//  The decision of a round, per shard

static void s_janitor_step_done (jshard_t *jshard);

static void
s_trim_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    jshard_t *jshard = (jshard_t *) privdata;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        jshard->owner->stats.trimmed += (uint64_t) reply->integer;
    else
    if (reply && reply->type == REDIS_REPLY_ERROR)
        pl_log_warning ("redis janitor XTRIM: %s", reply->str);
    s_janitor_step_done (jshard);
}

//  XGROUP DESTROY the groups whose host is gone
static void
s_destroy_gone (jshard_t *jshard)
{
    pl_streams_t *self = jshard->owner;
    const char *stream = self->keys.stream [jshard->shard];
    for (size_t index = 0; index < jshard->group_count; index++) {
        jgroup_t *group = &jshard->groups [index];
        if (!group->gone)
            continue;
        pl_log_info ("redis janitor: host %s is gone, destroying group %s of %s",
                     group->name + 7, group->name, stream);
        const char *argv [] = { "XGROUP", "DESTROY", stream, group->name };
        pl_streams_cluster_send (self, stream, pl_streams_link_error_only,
                                 (void *) "XGROUP DESTROY", 4, argv, NULL);
    }
}

//  The smallest id a remaining group still needs: its oldest pending
//  entry, else what follows its last delivered one. NULL: no group.
static const char *
s_needed_id (jshard_t *jshard)
{
    const char *needed = NULL;
    for (size_t index = 0; index < jshard->group_count; index++) {
        jgroup_t *group = &jshard->groups [index];
        if (group->gone)
            continue;
        const char *group_needs = group->last;
        if (*group->oldest && s_id_compare (group->oldest, group_needs) < 0)
            group_needs = group->oldest;
        if (!needed || s_id_compare (group_needs, needed) < 0)
            needed = group_needs;
    }
    return needed;
}

//  Sends what the round decided for the shard; the round ends for it once
//  the XTRIM (if any) has answered.
static void
s_janitor_decide (jshard_t *jshard)
{
    pl_streams_t *self = jshard->owner;
    const char *stream = self->keys.stream [jshard->shard];
    //  A round with a missing answer decides nothing: the next one will
    if (!jshard->failed && !self->destroying) {
        s_destroy_gone (jshard);
        const char *needed = s_needed_id (jshard);
        //  What is newer than stream-retain-s stays too: a resume after a
        //  short break reads it from Redis, sparing MongoDB the query
        char retained [32];
        snprintf (retained, sizeof retained, "%" PRId64 "-0",
                  pl_clock_ms () - (int64_t) self->settings.stream_retain_s * 1000);
        if (needed && s_id_compare (retained, needed) < 0)
            needed = retained;
        //  Without a persist group nothing stores the entries: keep them
        if (needed && jshard->has_persist && s_id_compare (needed, "0-1") > 0) {
            const char *argv [] = { "XTRIM", stream, "MINID", "=", needed };
            if (pl_streams_cluster_send (self, stream, s_trim_reply, jshard, 5, argv, NULL) == 0)
                jshard->waiting++;
        }
    }
    s_jshard_clear (jshard);
}

static void
s_janitor_step_done (jshard_t *jshard)
{
    if (--jshard->waiting > 0)
        return;
    if (!jshard->decided) {
        jshard->decided = true;
        s_janitor_decide (jshard);
        if (jshard->waiting > 0)
            return;
    }
    pl_streams_t *self = jshard->owner;
    if (--self->janitor.shards_left == 0)
        self->janitor.rounds++;
}


//  --------------------------------------------------------------------------
//  What the decision needs, per group

static void
s_host_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    jgroup_t *group = (jgroup_t *) privdata;
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        group->gone = reply->integer == 0;
    else {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            pl_log_warning ("redis janitor EXISTS: %s", reply->str);
        group->jshard->failed = true;
    }
    s_janitor_step_done (group->jshard);
}

static void
s_pending_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    jgroup_t *group = (jgroup_t *) privdata;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            pl_log_warning ("redis janitor XPENDING: %s", reply->str);
        group->jshard->failed = true;
    }
    else
    if (reply->elements > 0) {
        //  [[id, consumer, idle, deliveries]]; none: all acked meanwhile
        redisReply *first = reply->element [0];
        if (first->type == REDIS_REPLY_ARRAY && first->elements > 0
        &&  first->element [0]->type == REDIS_REPLY_STRING
        &&  first->element [0]->len < ID_MAX)
            strcpy (group->oldest, first->element [0]->str);
        else
            group->jshard->failed = true;
    }
    s_janitor_step_done (group->jshard);
}

//  One group of XINFO GROUPS: flat name/value pairs
static group_info_t
s_group_info (redisReply *info)
{
    group_info_t group = { .lag = -1 };
    for (size_t index = 0; info->type == REDIS_REPLY_ARRAY && index + 1 < info->elements; index += 2) {
        redisReply *key = info->element [index];
        redisReply *value = info->element [index + 1];
        if (key->type != REDIS_REPLY_STRING)
            continue;
        if (!strcmp (key->str, "name") && value->type == REDIS_REPLY_STRING)
            group.name = value->str;
        else
        if (!strcmp (key->str, "pending") && value->type == REDIS_REPLY_INTEGER)
            group.pending = value->integer;
        else
        if (!strcmp (key->str, "last-delivered-id") && value->type == REDIS_REPLY_STRING)
            group.last = value->str;
        else
        if (!strcmp (key->str, "lag"))
            group.lag = value->type == REDIS_REPLY_INTEGER? value->integer: -1;
    }
    return group;
}

static void
s_figures_record (pl_streams_t *self, int shard, const group_info_t *info)
{
    group_figures_t *figures = (group_figures_t *) malloc (sizeof (group_figures_t));
    if (!figures)
        return;
    char key [256];
    snprintf (key, sizeof key, "%d/%s", shard, info->name);
    figures->pending = info->pending;
    figures->lag = info->lag;
    zhashx_update (self->janitor.group_figures, key, figures);
}

//  EXISTS of the host key behind another host's fan-out group (our own
//  group stays whatever our key says), XPENDING when it has pending entries
static void
s_group_ask (jshard_t *jshard, jgroup_t *group, long long pending)
{
    pl_streams_t *self = jshard->owner;
    const char *stream = self->keys.stream [jshard->shard];
    const char *name = group->name;
    if (!strncmp (name, "fanout:", 7) && name [7] && strcmp (name + 7, self->keys.host_id)) {
        char *host_key = NULL;
        if (asprintf (&host_key, "%s:host:%s", self->keys.prefix, name + 7) < 0) {
            jshard->failed = true;
            return;
        }
        const char *argv [] = { "EXISTS", host_key };
        if (pl_streams_cluster_send (self, host_key, s_host_reply, group, 2, argv, NULL) == 0)
            jshard->waiting++;
        else
            jshard->failed = true;
        free (host_key);
    }
    if (pending > 0) {
        const char *argv [] = { "XPENDING", stream, name, "-", "+", "1" };
        if (pl_streams_cluster_send (self, stream, s_pending_reply, group, 6, argv, NULL) == 0)
            jshard->waiting++;
        else
            jshard->failed = true;
    }
}

//  Reads one group of XINFO GROUPS into the next slot and asks what else
//  the decision needs.
static void
s_group_add (jshard_t *jshard, redisReply *reply)
{
    group_info_t info = s_group_info (reply);
    if (info.name)
        s_figures_record (jshard->owner, jshard->shard, &info);
    jgroup_t *group = &jshard->groups [jshard->group_count];
    if (!info.name || !info.last || strlen (info.last) >= ID_MAX
    ||  !(group->name = strdup (info.name))) {
        jshard->failed = true;
        return;
    }
    jshard->group_count++;
    group->jshard = jshard;
    strcpy (group->last, info.last);
    if (streq (info.name, "persist"))
        jshard->has_persist = true;
    s_group_ask (jshard, group, info.pending);
}

//  Groups destroyed since the last round leave the figures
static void
s_figures_forget (pl_streams_t *self, int shard)
{
    char prefix [16];
    snprintf (prefix, sizeof prefix, "%d/", shard);
    zlistx_t *keys = zhashx_keys (self->janitor.group_figures);
    for (const char *key = (const char *) zlistx_first (keys); key;
         key = (const char *) zlistx_next (keys))
        if (!strncmp (key, prefix, strlen (prefix)))
            zhashx_delete (self->janitor.group_figures, key);
    zlistx_destroy (&keys);
}

static void
s_groups_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = pl_streams_link_reply (ac, reply_p);
    jshard_t *jshard = (jshard_t *) privdata;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        //  "no such key": the stream does not exist yet, nothing to trim
        if (reply && reply->type == REDIS_REPLY_ERROR && !strstr (reply->str, "no such key"))
            pl_log_warning ("redis janitor XINFO GROUPS: %s", reply->str);
        jshard->failed = true;
    }
    else {
        s_figures_forget (jshard->owner, jshard->shard);
        jshard->groups = calloc (reply->elements + 1, sizeof (jgroup_t));
        if (!jshard->groups)
            jshard->failed = true;
        for (size_t index = 0; jshard->groups && index < reply->elements; index++)
            s_group_add (jshard, reply->element [index]);
    }
    s_janitor_step_done (jshard);       //  the XINFO itself
}

static void
s_janitor_start (pl_streams_t *self)
{
    janitor_t *janitor = &self->janitor;
    janitor->at = pl_mono_ms () + self->settings.janitor_interval_ms;
    if (janitor->shards_left > 0)
        return;                 //  the last round is still out (slow Redis)
    for (int shard = 0; shard < self->settings.shards; shard++) {
        jshard_t *jshard = &janitor->shards [shard];
        jshard->failed = false;
        jshard->decided = false;
        jshard->has_persist = false;
        const char *argv [] = { "XINFO", "GROUPS", self->keys.stream [shard] };
        if (pl_streams_cluster_send (self, argv [2], s_groups_reply, jshard, 3, argv, NULL))
            break;
        jshard->waiting = 1;
        janitor->shards_left++;
    }
}


//  --------------------------------------------------------------------------
//  Host key

static void
s_host_key_reply (redisAsyncContext *ac, void *reply_p, void *privdata)
{
    redisReply *reply = (redisReply *) reply_p;
    pl_streams_link_error_only (ac, reply_p, privdata);
    if (reply && reply->type == REDIS_REPLY_STATUS)
        ((conn_t *) ac->data)->owner->janitor.host_key_set = true;
}

//  SET <prefix>:host:<host_id> <now> EX host-gone-s
void
pl_streams_janitor_host_key (pl_streams_t *self, conn_t *conn)
{
    char now [24];
    snprintf (now, sizeof now, "%" PRId64, pl_clock_ms ());
    const char *argv [] = { "SET", self->keys.host, now, "EX", self->settings.host_gone_text };
    if (conn)
        pl_streams_link_send (conn, pl_streams_link_error_only, (void *) "SET host key",
                              5, argv, NULL);
    else
        pl_streams_cluster_send (self, self->keys.host, s_host_key_reply,
                                 (void *) "SET host key", 5, argv, NULL);
}


//  --------------------------------------------------------------------------
//  Timers and lifecycle

void
pl_streams_janitor_tick (pl_streams_t *self, int64_t now)
{
    janitor_t *janitor = &self->janitor;
    if (now >= janitor->host_at) {
        janitor->host_at = now + self->settings.host_refresh_ms;
        pl_streams_janitor_host_key (self, NULL);
    }
    if (now >= janitor->at)
        s_janitor_start (self);
}

//  A round still out is left out, or the caller's poll would spin
int64_t
pl_streams_janitor_due (pl_streams_t *self)
{
    janitor_t *janitor = &self->janitor;
    if (janitor->shards_left == 0 && janitor->at < janitor->host_at)
        return janitor->at;
    return janitor->host_at;
}

int
pl_streams_janitor_init (pl_streams_t *self)
{
    janitor_t *janitor = &self->janitor;
    janitor->at = pl_mono_ms () + self->settings.janitor_interval_ms;
    janitor->group_figures = zhashx_new ();
    janitor->shards = calloc ((size_t) self->settings.shards, sizeof (jshard_t));
    if (!janitor->group_figures || !janitor->shards)
        return -1;
    zhashx_set_destructor (janitor->group_figures, pl_free_item);
    for (int shard = 0; shard < self->settings.shards; shard++) {
        janitor->shards [shard].owner = self;
        janitor->shards [shard].shard = shard;
    }
    return 0;
}

void
pl_streams_janitor_destroy (pl_streams_t *self)
{
    janitor_t *janitor = &self->janitor;
    if (janitor->shards)
        for (int shard = 0; shard < self->settings.shards; shard++)
            s_jshard_clear (&janitor->shards [shard]);
    free (janitor->shards);
    zhashx_destroy (&janitor->group_figures);
}


//  --------------------------------------------------------------------------
//  Public API: group figures

json_t *
pl_streams_groups_json (pl_streams_t *self)
{
    assert (self);
    zhashx_t *all = self->janitor.group_figures;
    json_t *groups = json_object ();
    for (group_figures_t *figures = (group_figures_t *) zhashx_first (all); figures;
         figures = (group_figures_t *) zhashx_next (all)) {
        const char *name = strchr ((const char *) zhashx_cursor (all), '/') + 1;
        json_t *group = json_object_get (groups, name);
        if (!group) {
            group = json_pack ("{s:I, s:I}", "pending", (json_int_t) 0, "lag", (json_int_t) 0);
            json_object_set_new (groups, name, group);
        }
        json_object_set_new (group, "pending", json_integer (
            json_integer_value (json_object_get (group, "pending")) + figures->pending));
        if (figures->lag >= 0)
            json_object_set_new (group, "lag", json_integer (
                json_integer_value (json_object_get (group, "lag")) + figures->lag));
    }
    return groups;
}
