/*  =========================================================================
    parleyctl - operator and demo tool for a parley host

    parleyctl COMMAND [OPTIONS]. Each command is one entry in s_commands,
    with its own option parsing, so new ones slot in without touching main.
    Exit status: 0 done, 1 failed, 2 usage error.

    status and monitor read the per-actor monitor endpoints that
    pl_monitor binds in the runtime directory (actors/common/MONITOR.md).
    =========================================================================
*/
#include "pl_config.h"
#include "pl_monitor.h"
#include "pl_token.h"
#include "pl_util.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define EXIT_USAGE 2

typedef struct _s_command_t s_command_t;
struct _s_command_t {
    const char *name;
    const char *arguments;      //  synopsis after the command name
    const char *summary;
    //  argv [0] is the command name; returns the exit status
    int (*run) (const s_command_t *command, int argc, char **argv);
};

static int s_token (const s_command_t *command, int argc, char **argv);
static int s_status (const s_command_t *command, int argc, char **argv);
static int s_monitor (const s_command_t *command, int argc, char **argv);

static const s_command_t s_commands [] = {
    { "token",
      "[--secret S | --config FILE] --user U [--name N] [--ttl SECONDS]",
      "print an HS256 token for user U with the configured secret (--config FILE, "
      "PARLEY_JWT_SECRET) or --secret",
      s_token },
    { "status",
      "[--runtime-dir DIR] [--json] [--wait MS]",
      "show every actor of the host from its status record (exit 1 if one does not answer)",
      s_status },
    { "monitor",
      "[--runtime-dir DIR] [--actor conn|router|store|bridge] [--json]",
      "print the actors' ZeroMQ socket events as they happen, until Ctrl-C",
      s_monitor },
};
#define S_COMMANDS (sizeof s_commands / sizeof s_commands [0])

static void
s_usage (FILE *stream)
{
    fprintf (stream, "usage: parleyctl COMMAND [OPTIONS]\n       parleyctl --help\ncommands:\n");
    for (size_t index = 0; index < S_COMMANDS; index++)
        fprintf (stream, "  %s %s\n      %s\n", s_commands [index].name,
                 s_commands [index].arguments, s_commands [index].summary);
}

static int
s_command_usage (const s_command_t *command, FILE *stream)
{
    fprintf (stream, "usage: parleyctl %s %s\n", command->name, command->arguments);
    return stream == stdout? 0: EXIT_USAGE;
}

//  What every subcommand says when getopt_long meets an unknown option
static int
s_option_unknown (const s_command_t *command, char **argv)
{
    fprintf (stderr, "parleyctl: unknown or incomplete option '%s'\n", argv [optind - 1]);
    return s_command_usage (command, stderr);
}

//  After the options: no words may be left. 0, or the usage exit code.
static int
s_no_arguments_left (const s_command_t *command, int argc, char **argv)
{
    if (optind >= argc)
        return 0;
    fprintf (stderr, "parleyctl: unexpected argument '%s'\n", argv [optind]);
    return s_command_usage (command, stderr);
}

//  strtoll that accepts only a whole, in-range decimal number
static int
s_parse_int64 (const char *text, int64_t *value_p)
{
    char *end;
    errno = 0;
    long long value = strtoll (text, &end, 10);
    if (errno || end == text || *end)
        return -1;
    *value_p = (int64_t) value;
    return 0;
}

static int
s_token (const s_command_t *command, int argc, char **argv)
{
    static const struct option options [] = {
        { "secret", required_argument, NULL, 's' },
        { "config", required_argument, NULL, 'c' },
        { "user",   required_argument, NULL, 'u' },
        { "name",   required_argument, NULL, 'n' },
        { "ttl",    required_argument, NULL, 't' },
        { "help",   no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    //  A secret on the command line shows in ps; the configuration (file,
    //  then PARLEY_JWT_SECRET) is what the actors use
    const char *secret = NULL;
    const char *config_file = NULL;
    const char *user = NULL;
    const char *name = NULL;
    int64_t ttl = 86400;

    optind = 1;
    opterr = 0;
    int option;
    while ((option = getopt_long (argc, argv, "+", options, NULL)) != -1) {
        switch (option) {
            case 's': secret = optarg; break;
            case 'c': config_file = optarg; break;
            case 'u': user = optarg; break;
            case 'n': name = optarg; break;
            case 't':
                if (s_parse_int64 (optarg, &ttl) || ttl <= 0) {
                    fprintf (stderr, "parleyctl: --ttl wants a positive number of seconds\n");
                    return s_command_usage (command, stderr);
                }
                break;
            case 'h': return s_command_usage (command, stdout);
            default:
                return s_option_unknown (command, argv);
        }
    }
    if (s_no_arguments_left (command, argc, argv))
        return EXIT_USAGE;
    pl_config_t *config = NULL;
    if (!secret) {
        char *config_argv [] = { "parleyctl", "--config", (char *) config_file, NULL };
        config = pl_config_new (config_file? 3: 1, config_argv);
        if (!config)
            return EXIT_USAGE;
        secret = config->jwt_secret;
    }
    if (!secret || !*secret || !user) {
        if (user && (!secret || !*secret))
            fprintf (stderr, "parleyctl: no secret: --secret, jwt-secret in --config FILE, or PARLEY_JWT_SECRET\n");
        pl_config_destroy (&config);
        return s_command_usage (command, stderr);
    }
    if (!pl_id_valid (user)) {
        fprintf (stderr, "parleyctl: user must be 1..%d of [A-Za-z0-9_.:@-]\n", PL_ID_MAX);
        pl_config_destroy (&config);
        return EXIT_USAGE;
    }
    char *token = pl_token_mint_hs256 (secret, user, name, ttl);
    pl_config_destroy (&config);
    if (!token) {
        //  The other arguments were checked; what is left is the name or ttl
        fprintf (stderr, "parleyctl: cannot mint token (name must be 1..%d bytes of UTF-8"
                         " without control characters; ttl must not overflow)\n", PL_NAME_MAX);
        return EXIT_USAGE;
    }
    printf ("%s\n", token);
    free (token);
    return fflush (stdout) == 0? 0: 1;
}

//  ---------------------------------------------------------------------
//  status and monitor: clients of the actors' monitor endpoints

//  One actor found in the runtime directory by its monitor endpoint
typedef struct {
    char kind [17];
    int instance;
    char *path;                 //  of monitor-<kind>-<instance>.ipc
    json_t *record;             //  its status record, NULL while none came
} s_actor_t;

typedef struct {
    s_actor_t *actors;
    size_t count;
} s_actors_t;

static void
s_actors_free (s_actors_t *self)
{
    for (size_t index = 0; index < self->count; index++) {
        free (self->actors [index].path);
        json_decref (self->actors [index].record);
    }
    free (self->actors);
    self->actors = NULL;
    self->count = 0;
}

//  The runtime directory the actors use: pl_config reads PARLEY_RUNTIME_DIR
//  and the rest of the environment exactly as the actors do.
static char *
s_runtime_dir (const char *option)
{
    char *argv [] = { "parleyctl", "--runtime-dir", (char *) option, NULL };
    pl_config_t *config = pl_config_new (option? 3: 1, argv);
    if (!config)
        return NULL;
    char *runtime_dir = strdup (config->runtime_dir);
    pl_config_destroy (&config);
    return runtime_dir;
}

//  "monitor-<kind>-<instance>.ipc", written exactly as pl_monitor does
static bool
s_monitor_file_parse (const char *name, char *kind, int *instance)
{
    int end = 0;
    if (sscanf (name, PL_MONITOR_FILE_PREFIX "%16[a-z]-%d" PL_MONITOR_FILE_SUFFIX "%n",
                kind, instance, &end) != 2 || end == 0 || name [end] || *instance < 0)
        return false;
    char again [64];
    snprintf (again, sizeof again, PL_MONITOR_FILE_PREFIX "%s-%d" PL_MONITOR_FILE_SUFFIX,
              kind, *instance);
    return strcmp (again, name) == 0;
}

static int
s_actor_compare (const void *left, const void *right)
{
    const s_actor_t *a = (const s_actor_t *) left;
    const s_actor_t *b = (const s_actor_t *) right;
    int order = strcmp (a->kind, b->kind);
    return order? order: (a->instance > b->instance) - (a->instance < b->instance);
}

//  The monitor endpoints in runtime_dir, of one kind if kind is set,
//  sorted by kind and instance. Returns 0, or -1 with errno set.
static int
s_actors_scan (s_actors_t *self, const char *runtime_dir, const char *kind)
{
    DIR *dir = opendir (runtime_dir);
    if (!dir)
        return -1;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        s_actor_t actor = { .instance = 0 };
        if (!s_monitor_file_parse (entry->d_name, actor.kind, &actor.instance)
        ||  (kind && strcmp (kind, actor.kind)))
            continue;
        s_actor_t *grown = realloc (self->actors, (self->count + 1) * sizeof (s_actor_t));
        if (!grown || asprintf (&actor.path, "%s/%s", runtime_dir, entry->d_name) < 0) {
            self->actors = grown? grown: self->actors;
            closedir (dir);
            errno = ENOMEM;
            return -1;
        }
        self->actors = grown;
        self->actors [self->count++] = actor;
    }
    closedir (dir);
    if (self->count)
        qsort (self->actors, self->count, sizeof (s_actor_t), s_actor_compare);
    return 0;
}

//  An endpoint file left by an actor that died without closing it refuses
//  connections; a live one accepts. Only asked of actors that did not answer.
static bool
s_endpoint_alive (const char *path)
{
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    if (strlen (path) >= sizeof address.sun_path)
        return true;            //  cannot tell; do not call it stale
    strcpy (address.sun_path, path);
    int handle = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (handle == -1)
        return true;
    bool alive = connect (handle, (struct sockaddr *) &address, sizeof address) == 0
              || errno != ECONNREFUSED;
    close (handle);
    return alive;
}

static void
s_no_actors (const char *runtime_dir)
{
    fprintf (stderr, "parleyctl: no parley actors found in %s (is the host running? --runtime-dir)\n",
             runtime_dir);
}

//  "45s", "12m05s", "3h02m", "2d04h"
static void
s_duration (int64_t seconds, char *buffer, size_t size)
{
    if (seconds < 0)
        snprintf (buffer, size, "-");
    else
    if (seconds < 60)
        snprintf (buffer, size, "%" PRId64 "s", seconds);
    else
    if (seconds < 3600)
        snprintf (buffer, size, "%" PRId64 "m%02" PRId64 "s", seconds / 60, seconds % 60);
    else
    if (seconds < 86400)
        snprintf (buffer, size, "%" PRId64 "h%02" PRId64 "m", seconds / 3600, seconds / 60 % 60);
    else
        snprintf (buffer, size, "%" PRId64 "d%02" PRId64 "h", seconds / 86400, seconds / 3600 % 24);
}

//  Figures as key=value pairs; nested objects become dotted keys
//  (streams.g1.lag=3), so per-group numbers stay on one line.
static void
s_figures_print (FILE *stream, const char *prefix, json_t *value, bool *first)
{
    if (json_is_object (value)) {
        const char *key;
        json_t *member;
        json_object_foreach (value, key, member) {
            char name [256];
            snprintf (name, sizeof name, "%s%s%s", prefix, *prefix? ".": "", key);
            s_figures_print (stream, name, member, first);
        }
        return;
    }
    fprintf (stream, "%s%s=", *first? "": " ", prefix);
    *first = false;
    if (json_is_string (value) && !strpbrk (json_string_value (value), " \t\n=\""))
        fputs (json_string_value (value), stream);
    else {
        char *text = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
        fputs (text? text: "?", stream);
        free (text);
    }
}

static void
s_status_print_table (s_actors_t *actors, bool *alive)
{
    int host_width = 4, kind_width = 4;
    for (size_t index = 0; index < actors->count; index++) {
        const char *host = json_string_value (json_object_get (actors->actors [index].record, "host"));
        if (host && (int) strlen (host) > host_width)
            host_width = (int) strlen (host);
        if ((int) strlen (actors->actors [index].kind) > kind_width)
            kind_width = (int) strlen (actors->actors [index].kind);
    }
    printf ("%-*s  %-*s  %4s  %8s  %7s  %s\n", host_width, "HOST", kind_width, "KIND",
            "INST", "PID", "UPTIME", "FIGURES");
    for (size_t index = 0; index < actors->count; index++) {
        s_actor_t *actor = &actors->actors [index];
        if (!actor->record) {
            printf ("%-*s  %-*s  %4d  %8s  %7s  %s\n", host_width, "-", kind_width, actor->kind,
                    actor->instance, "-", "-",
                    alive [index]? "no answer": "no answer (stale endpoint: the actor is not running)");
            continue;
        }
        const char *host = json_string_value (json_object_get (actor->record, "host"));
        char uptime [32];
        json_t *uptime_s = json_object_get (actor->record, "uptime_s");
        s_duration (json_is_integer (uptime_s)? json_integer_value (uptime_s): -1,
                    uptime, sizeof uptime);
        printf ("%-*s  %-*s  %4d  %8" JSON_INTEGER_FORMAT "  %7s  ", host_width, host? host: "-",
                kind_width, actor->kind, actor->instance,
                json_integer_value (json_object_get (actor->record, "pid")), uptime);
        bool first = true;
        s_figures_print (stdout, "", json_object_get (actor->record, "figures"), &first);
        printf ("\n");
    }
}

//  The runtime directory and the actors found there (of one kind, or all).
//  Returns 0, EXIT_USAGE, or 1 after saying what is wrong: no directory is
//  a wrong --runtime-dir more likely than a host that is about to start.
static int
s_actors_open (const char *runtime_option, const char *kind, s_actors_t *actors, char **runtime_dir_p)
{
    char *runtime_dir = s_runtime_dir (runtime_option);
    if (!runtime_dir)
        return EXIT_USAGE;
    if (s_actors_scan (actors, runtime_dir, kind)) {
        if (errno == ENOENT || errno == ENOTDIR)
            s_no_actors (runtime_dir);
        else
            fprintf (stderr, "parleyctl: cannot read %s: %s\n", runtime_dir, strerror (errno));
        s_actors_free (actors);
        free (runtime_dir);
        return 1;
    }
    *runtime_dir_p = runtime_dir;
    return 0;
}

//  Give the actor that published this status record its record.
//  Returns true when it was one we waited for.
static bool
s_status_take (s_actors_t *actors, const char *text)
{
    bool taken = false;
    json_t *record = json_loads (text, 0, NULL);
    const char *kind = json_string_value (json_object_get (record, "kind"));
    json_t *instance = json_object_get (record, "instance");
    for (size_t index = 0; kind && json_is_integer (instance) && index < actors->count; index++) {
        s_actor_t *actor = &actors->actors [index];
        if (!actor->record && streq (actor->kind, kind)
        &&  actor->instance == json_integer_value (instance)) {
            actor->record = json_incref (record);
            taken = true;
            break;
        }
    }
    json_decref (record);
    return taken;
}

//  Actors publish a status record about once a second; one SUB socket
//  connected to every endpoint collects one record from each, until all
//  answered or wait_ms passed. Returns how many answered, -1 on interrupt.
static int
s_status_collect (s_actors_t *actors, int64_t wait_ms)
{
    zsock_t *subscriber = zsock_new (ZMQ_SUB);
    assert (subscriber);
    zsock_set_subscribe (subscriber, PL_MONITOR_TOPIC_STATUS);
    for (size_t index = 0; index < actors->count; index++)
        if (zsock_connect (subscriber, "ipc://%s", actors->actors [index].path))
            fprintf (stderr, "parleyctl: cannot connect to %s: %s\n",
                     actors->actors [index].path, zmq_strerror (zmq_errno ()));
    zpoller_t *poller = zpoller_new (subscriber, NULL);
    assert (poller);
    int answered = 0;
    int64_t deadline = pl_mono_ms () + wait_ms;
    while ((size_t) answered < actors->count) {
        int64_t left = deadline - pl_mono_ms ();
        if (left <= 0)
            break;
        if (!zpoller_wait (poller, (int) left)) {
            if (zpoller_terminated (poller)) {
                answered = -1;
                break;
            }
            continue;
        }
        char *topic = NULL, *text = NULL;
        if (zstr_recvx (subscriber, &topic, &text, NULL) == 2 && s_status_take (actors, text))
            answered++;
        zstr_free (&topic);
        zstr_free (&text);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&subscriber);
    return answered;
}

//  Every actor's record as one JSON array; the silent ones say why.
static void
s_status_print_json (s_actors_t *actors, bool *alive)
{
    json_t *array = json_array ();
    for (size_t index = 0; index < actors->count; index++) {
        s_actor_t *actor = &actors->actors [index];
        json_array_append_new (array, actor->record? json_incref (actor->record):
            json_pack ("{s:s, s:s, s:i, s:s}", "type", "status", "kind", actor->kind,
                       "instance", actor->instance,
                       "error", alive [index]? "no answer": "stale endpoint"));
    }
    char *text = json_dumps (array, JSON_COMPACT);
    printf ("%s\n", text? text: "[]");
    free (text);
    json_decref (array);
}

//  Print what was collected. Returns 0 when every actor answered.
static int
s_status_print (s_actors_t *actors, bool json)
{
    //  An actor without a record may be slow or not running at all: a
    //  stale endpoint file is told apart by connecting to it
    bool *alive = calloc (actors->count, sizeof (bool));
    assert (alive);
    bool all_answered = true;
    for (size_t index = 0; index < actors->count; index++) {
        alive [index] = actors->actors [index].record
                     || s_endpoint_alive (actors->actors [index].path);
        all_answered &= actors->actors [index].record != NULL;
    }
    if (json)
        s_status_print_json (actors, alive);
    else
        s_status_print_table (actors, alive);
    free (alive);
    return fflush (stdout) || !all_answered? 1: 0;
}

static int
s_status (const s_command_t *command, int argc, char **argv)
{
    static const struct option options [] = {
        { "runtime-dir", required_argument, NULL, 'r' },
        { "json",        no_argument,       NULL, 'j' },
        { "wait",        required_argument, NULL, 'w' },
        { "help",        no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    const char *runtime_option = NULL;
    bool json = false;
    int64_t wait_ms = 3000;

    optind = 1;
    opterr = 0;
    int option;
    while ((option = getopt_long (argc, argv, "+", options, NULL)) != -1) {
        switch (option) {
            case 'r': runtime_option = optarg; break;
            case 'j': json = true; break;
            case 'w':
                if (s_parse_int64 (optarg, &wait_ms) || wait_ms < 0 || wait_ms > 3600000) {
                    fprintf (stderr, "parleyctl: --wait wants milliseconds from 0 to 3600000\n");
                    return s_command_usage (command, stderr);
                }
                break;
            case 'h': return s_command_usage (command, stdout);
            default:
                return s_option_unknown (command, argv);
        }
    }
    if (s_no_arguments_left (command, argc, argv))
        return EXIT_USAGE;
    char *runtime_dir = NULL;
    s_actors_t actors = { NULL, 0 };
    int rc = s_actors_open (runtime_option, NULL, &actors, &runtime_dir);
    if (rc)
        return rc;
    if (actors.count == 0) {
        s_no_actors (runtime_dir);
        free (runtime_dir);
        return 1;
    }
    rc = s_status_collect (&actors, wait_ms) < 0? 1: s_status_print (&actors, json);
    s_actors_free (&actors);
    free (runtime_dir);
    return rc;
}

//  A string field of a record, "?" when it is missing
static const char *
s_field (json_t *record, const char *name)
{
    const char *value = json_string_value (json_object_get (record, name));
    return value? value: "?";
}

static void
s_monitor_print_event (const char *text, bool json)
{
    if (json) {
        printf ("%s\n", text);
        return;
    }
    json_t *record = json_loads (text, 0, NULL);
    if (!json_is_object (record)) {
        json_decref (record);
        return;
    }
    const char *endpoint = json_string_value (json_object_get (record, "endpoint"));
    const char *event = json_string_value (json_object_get (record, "event"));
    printf ("%s %s-%" JSON_INTEGER_FORMAT " %s %s %s", s_field (record, "time"),
            s_field (record, "kind"), json_integer_value (json_object_get (record, "instance")),
            s_field (record, "socket"), event? event: "?", endpoint && *endpoint? endpoint: "-");
    const char *error = json_string_value (json_object_get (record, "error"));
    if (error)
        printf (" (%s)", error);
    else
    if (streq_safe (event, "CONNECT_RETRIED"))
        printf (" (retry in %" JSON_INTEGER_FORMAT " ms)",
                json_integer_value (json_object_get (record, "value")));
    printf ("\n");
    json_decref (record);
}

//  Connect to endpoints that appeared since the last scan, and forget the
//  ones whose file went away (the actor stopped).
static void
s_monitor_rescan (zsock_t *subscriber, zhash_t *watched, const char *runtime_dir, const char *kind)
{
    s_actors_t actors = { NULL, 0 };
    if (s_actors_scan (&actors, runtime_dir, kind)) {
        s_actors_free (&actors);
        return;                 //  the directory went away: keep what we have
    }
    zhash_t *present = zhash_new ();
    assert (present);
    for (size_t index = 0; index < actors.count; index++) {
        s_actor_t *actor = &actors.actors [index];
        zhash_insert (present, actor->path, (void *) "");
        if (zhash_lookup (watched, actor->path))
            continue;
        char label [64];
        snprintf (label, sizeof label, "%s-%d", actor->kind, actor->instance);
        if (zsock_connect (subscriber, "ipc://%s", actor->path) == 0) {
            zhash_insert (watched, actor->path, label);
            fprintf (stderr, "parleyctl: watching %s\n", label);
        }
    }
    zlist_t *paths = zhash_keys (watched);
    assert (paths);
    for (const char *path = (const char *) zlist_first (paths); path;
         path = (const char *) zlist_next (paths))
        if (!zhash_lookup (present, path)) {
            zsock_disconnect (subscriber, "ipc://%s", path);
            fprintf (stderr, "parleyctl: %s is gone\n", (const char *) zhash_lookup (watched, path));
            zhash_delete (watched, path);
        }
    zlist_destroy (&paths);
    zhash_destroy (&present);
    s_actors_free (&actors);
}

//  Print the events of the actors (of one kind, or all) as they happen,
//  picking up actors that start later, until Ctrl-C.
static void
s_monitor_follow (const char *runtime_dir, const char *kind, bool json)
{
    //  Lines go out as they happen, also into a pipe
    setvbuf (stdout, NULL, _IOLBF, 0);
    zsock_t *subscriber = zsock_new (ZMQ_SUB);
    assert (subscriber);
    char topic [64];
    snprintf (topic, sizeof topic, "%s%s%s", PL_MONITOR_TOPIC_EVENT, kind? kind: "", kind? ".": "");
    zsock_set_subscribe (subscriber, topic);
    zhash_t *watched = zhash_new ();           //  endpoint file -> "kind-instance"
    assert (watched);
    zhash_autofree (watched);
    zpoller_t *poller = zpoller_new (subscriber, NULL);
    assert (poller);
    int64_t next_scan = 0;
    while (true) {
        if (pl_mono_ms () >= next_scan) {
            s_monitor_rescan (subscriber, watched, runtime_dir, kind);
            next_scan = pl_mono_ms () + 1000;
        }
        int64_t left = next_scan - pl_mono_ms ();
        if (!zpoller_wait (poller, left > 0? (int) left: 0)) {
            if (zpoller_terminated (poller))
                break;          //  Ctrl-C
            continue;
        }
        char *event_topic = NULL, *text = NULL;
        if (zstr_recvx (subscriber, &event_topic, &text, NULL) == 2)
            s_monitor_print_event (text, json);
        zstr_free (&event_topic);
        zstr_free (&text);
    }
    zpoller_destroy (&poller);
    zhash_destroy (&watched);
    zsock_destroy (&subscriber);
}

static int
s_monitor (const s_command_t *command, int argc, char **argv)
{
    static const struct option options [] = {
        { "runtime-dir", required_argument, NULL, 'r' },
        { "actor",       required_argument, NULL, 'a' },
        { "json",        no_argument,       NULL, 'j' },
        { "help",        no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    const char *runtime_option = NULL;
    const char *kind = NULL;
    bool json = false;

    optind = 1;
    opterr = 0;
    int option;
    while ((option = getopt_long (argc, argv, "+", options, NULL)) != -1) {
        switch (option) {
            case 'r': runtime_option = optarg; break;
            case 'a':
                kind = optarg;
                if (!streq (kind, "conn") && !streq (kind, "router")
                &&  !streq (kind, "store") && !streq (kind, "bridge")) {
                    fprintf (stderr, "parleyctl: --actor is one of conn, router, store, bridge\n");
                    return s_command_usage (command, stderr);
                }
                break;
            case 'j': json = true; break;
            case 'h': return s_command_usage (command, stdout);
            default:
                return s_option_unknown (command, argv);
        }
    }
    if (s_no_arguments_left (command, argc, argv))
        return EXIT_USAGE;
    char *runtime_dir = NULL;
    s_actors_t actors = { NULL, 0 };
    int rc = s_actors_open (runtime_option, kind, &actors, &runtime_dir);
    if (rc)
        return rc;
    if (actors.count == 0)
        fprintf (stderr, "parleyctl: no parley %s%sactors in %s yet; waiting for them (Ctrl-C stops)\n",
                 kind? kind: "", kind? " ": "", runtime_dir);
    s_actors_free (&actors);
    s_monitor_follow (runtime_dir, kind, json);
    free (runtime_dir);
    return 0;
}

int
main (int argc, char **argv)
{
    if (argc < 2) {
        s_usage (stderr);
        return EXIT_USAGE;
    }
    if (streq_safe (argv [1], "--help") || streq_safe (argv [1], "-h")
    ||  streq_safe (argv [1], "help")) {
        s_usage (stdout);
        return 0;
    }
    for (size_t index = 0; index < S_COMMANDS; index++)
        if (streq_safe (argv [1], s_commands [index].name))
            return s_commands [index].run (&s_commands [index], argc - 1, argv + 1);
    fprintf (stderr, "parleyctl: unknown command '%s'\n", argv [1]);
    s_usage (stderr);
    return EXIT_USAGE;
}
