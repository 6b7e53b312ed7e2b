/*  =========================================================================
    parley-load - a load client for STOMP over WebSocket, in C

    Many connections per thread (epoll), so that the client is not what
    limits the figures. N connections in rooms of R connect and subscribe
    (each with a RECEIPT), then, once all are in, send M messages each at
    a fixed rate with receipts; every member of a room receives every
    message of the room, its own included. One JSON object on stdout says
    what came, what was lost, duplicated or reordered, and how long it
    took; everything else goes to stderr. tests/load/README.md has more.

    Exit status: 0 nothing lost or duplicated and no errors, 1 otherwise,
    2 bad usage.
    =========================================================================
*/
#include "pl_load.h"
#include "pl_loadrun.h"
#include "pl_loadstomp.h"
#include "pl_token.h"

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define EXIT_USAGE 2

static void
s_usage (FILE *stream)
{
    fprintf (stream,
        "usage: parley-load [OPTIONS]\n"
        "  --url URL[,URL...]        WebSocket endpoint (ws://127.0.0.1:8080/ws); several hosts\n"
        "                            of one service differ in their port: connection i takes\n"
        "                            the (i mod count)th\n"
        "  --target parley|rabbitmq  what speaks STOMP there (parley)\n"
        "  --conns N                 connections (100)\n"
        "  --room R                  connections per room; N must be a multiple (2)\n"
        "  --msgs M                  messages each connection sends (100)\n"
        "  --rate PER_CONN           messages a second per connection (1)\n"
        "  --threads T               threads, each an epoll loop over N/T connections (1)\n"
        "  --secret S                parley: HS256 JWT secret (else PARLEY_JWT_SECRET);\n"
        "                            connection i is user \"load-<i>\"\n"
        "  --rooms FILE              parley: one room id per line; room k holds\n"
        "                            connections k*R .. k*R+R-1 (the caller made them)\n"
        "  --login L --passcode P    rabbitmq: credentials (guest, guest)\n"
        "  --vhost V                 rabbitmq: virtual host, CONNECT's host header (/)\n"
        "  --drain-ms D              after the last send, longest wait for missing\n"
        "                            deliveries and receipts (10000)\n"
        "  --connect-timeout-ms C    longest from TCP connect to SUBSCRIBE's RECEIPT (30000)\n"
        "  --connect-window W        connections opening at once, per thread (100)\n"
        "  --selftest [-v]           run the classes' selftests and exit\n"
        "  --help                    this text\n");
}

//  A whole decimal number in [low, high]
static int
s_parse_int (const char *text, long low, long high, int *value)
{
    char *end;
    errno = 0;
    long parsed = strtol (text, &end, 10);
    if (errno || end == text || *end || parsed < low || parsed > high)
        return -1;
    *value = (int) parsed;
    return 0;
}

//  ws://host[:port][/path]; host may be [v6]. Fills host, port, path.
static int
s_parse_one_url (const char *url, size_t size, char *host_out, size_t host_max,
                 int *port_out, char *path_out, size_t path_max)
{
    char text [2048];
    if (size >= sizeof text || size < 5 || strncmp (url, "ws://", 5) != 0) {
        fprintf (stderr, "parley-load: --url must be ws://HOST[:PORT][/PATH] (no wss)\n");
        return -1;
    }
    memcpy (text, url, size);
    text [size] = 0;
    const char *host = text + 5;
    const char *host_end = *host == '['? strchr (host, ']'): host + strcspn (host, ":/");
    bool bracketed = *host == '[';
    if (!host_end || host_end == host || (size_t) (host_end - host) - bracketed >= host_max) {
        fprintf (stderr, "parley-load: no host in --url %s\n", text);
        return -1;
    }
    size_t host_size = (size_t) (host_end - host) - bracketed;
    memcpy (host_out, host + bracketed, host_size);
    host_out [host_size] = 0;
    const char *rest = host_end + bracketed;
    *port_out = 80;
    if (*rest == ':') {
        char *end;
        long port = strtol (rest + 1, &end, 10);
        if (end == rest + 1 || port < 1 || port > 65535 || (*end && *end != '/')) {
            fprintf (stderr, "parley-load: bad port in --url %s\n", text);
            return -1;
        }
        *port_out = (int) port;
        rest = end;
    }
    snprintf (path_out, path_max, "%s", *rest? rest: "/");
    return 0;
}

//  One URL, or several of one service (same host and path, other ports)
static int
s_parse_url (pl_load_config_t *config)
{
    config->port_count = 0;
    for (const char *at = config->url; ; ) {
        size_t size = strcspn (at, ",");
        char host [sizeof config->host], path [sizeof config->path];
        int port;
        if (config->port_count == PL_LOAD_URLS_MAX
        ||  s_parse_one_url (at, size, host, sizeof host, &port, path, sizeof path))
            return -1;
        if (config->port_count == 0) {
            memcpy (config->host, host, sizeof host);
            memcpy (config->path, path, sizeof path);
            config->port = port;
        }
        else
        if (strcmp (host, config->host) || strcmp (path, config->path)) {
            fprintf (stderr, "parley-load: the URLs of --url differ in more than their port\n");
            return -1;
        }
        config->ports [config->port_count++] = port;
        if (!at [size])
            return 0;
        at += size + 1;
    }
}

static int
s_resolve (pl_load_config_t *config)
{
    char port [16];
    snprintf (port, sizeof port, "%d", config->port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *found = NULL;
    int rc = getaddrinfo (config->host, port, &hints, &found);
    if (rc || !found) {
        fprintf (stderr, "parley-load: cannot resolve %s: %s\n", config->host, gai_strerror (rc));
        return -1;
    }
    memcpy (&config->address, found->ai_addr, found->ai_addrlen);
    config->address_size = found->ai_addrlen;
    freeaddrinfo (found);
    return 0;
}

//  One option of the command line into config. Returns 0, or -1 on a
//  bad value (said on stderr).
static int
s_option (pl_load_config_t *config, int option, const char *value)
{
    const char *name = NULL;
    int rc = 0;
    switch (option) {
        case 'u': config->url = value; return 0;
        case 'T':
            rc = strcmp (value, "parley") && strcmp (value, "rabbitmq")? -1: 0;
            name = "--target wants parley or rabbitmq";
            config->target = strcmp (value, "parley")? PL_LOAD_RABBITMQ: PL_LOAD_PARLEY;
            break;
        case 'n': rc = s_parse_int (value, 1, 1000000, &config->conns); name = "--conns wants 1..1000000"; break;
        case 'r': rc = s_parse_int (value, 1, 100000, &config->room); name = "--room wants 1..100000"; break;
        case 'm': rc = s_parse_int (value, 0, 100000000, &config->msgs); name = "--msgs wants 0..100000000"; break;
        case 't': rc = s_parse_int (value, 1, 1024, &config->threads); name = "--threads wants 1..1024"; break;
        case 'd': rc = s_parse_int (value, 0, 3600000, &config->drain_ms); name = "--drain-ms wants 0..3600000"; break;
        case 'c':
            rc = s_parse_int (value, 1, 3600000, &config->connect_timeout_ms);
            name = "--connect-timeout-ms wants 1..3600000";
            break;
        case 'w':
            rc = s_parse_int (value, 1, 1000000, &config->connect_window);
            name = "--connect-window wants 1..1000000";
            break;
        case 'R': {
            char *end;
            config->rate = strtod (value, &end);
            rc = end == value || *end || !(config->rate > 0) || config->rate > 1e9? -1: 0;
            name = "--rate wants messages a second, above 0";
            break;
        }
        case 's': config->secret = value; return 0;
        case 'f': config->rooms_file = value; return 0;
        case 'l': config->login = value; return 0;
        case 'p': config->passcode = value; return 0;
        case 'v': config->vhost = value; return 0;
        default:  return -1;
    }
    if (rc)
        fprintf (stderr, "parley-load: %s\n", name);
    return rc;
}

//  The command line into config. Returns 0, 1 after --help, -1 on misuse.
static int
s_options (pl_load_config_t *config, int argc, char **argv)
{
    static const struct option options [] = {
        { "url", required_argument, NULL, 'u' },    { "target", required_argument, NULL, 'T' },
        { "conns", required_argument, NULL, 'n' },  { "room", required_argument, NULL, 'r' },
        { "msgs", required_argument, NULL, 'm' },   { "rate", required_argument, NULL, 'R' },
        { "threads", required_argument, NULL, 't' }, { "secret", required_argument, NULL, 's' },
        { "rooms", required_argument, NULL, 'f' },  { "login", required_argument, NULL, 'l' },
        { "passcode", required_argument, NULL, 'p' }, { "vhost", required_argument, NULL, 'v' },
        { "drain-ms", required_argument, NULL, 'd' },
        { "connect-timeout-ms", required_argument, NULL, 'c' },
        { "connect-window", required_argument, NULL, 'w' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    opterr = 0;
    int option;
    while ((option = getopt_long (argc, argv, "+", options, NULL)) != -1) {
        if (option == 'h') {
            s_usage (stdout);
            return 1;
        }
        if (option == '?' || option == ':') {
            fprintf (stderr, "parley-load: unknown or incomplete option '%s'\n", argv [optind - 1]);
            return -1;
        }
        if (s_option (config, option, optarg))
            return -1;
    }
    if (optind < argc) {
        fprintf (stderr, "parley-load: unexpected argument '%s'\n", argv [optind]);
        return -1;
    }
    if (config->conns % config->room) {
        fprintf (stderr, "parley-load: --conns (%d) must be a multiple of --room (%d)\n",
                 config->conns, config->room);
        return -1;
    }
    //  A thread without connections would only wait
    if (config->threads > config->conns)
        config->threads = config->conns;
    return 0;
}

//  The first N/R room ids of the rooms file
static int
s_read_rooms (pl_load_config_t *config, int rooms)
{
    FILE *file = fopen (config->rooms_file, "r");
    if (!file) {
        fprintf (stderr, "parley-load: cannot read %s: %s\n", config->rooms_file, strerror (errno));
        return -1;
    }
    char line [256];
    int count = 0;
    while (count < rooms && fgets (line, sizeof line, file)) {
        line [strcspn (line, " \t\r\n")] = 0;
        if (!*line)
            continue;
        if (!pl_id_valid (line)) {
            fprintf (stderr, "parley-load: %s: not a room id: %s\n", config->rooms_file, line);
            break;
        }
        config->room_ids [count++] = strdup (line);
    }
    fclose (file);
    if (count < rooms)
        fprintf (stderr, "parley-load: %s holds %d room ids, %d wanted (--conns / --room)\n",
                 config->rooms_file, count, rooms);
    return count == rooms? 0: -1;
}

//  Rooms, destinations and tokens. Returns 0, or -1 on misuse.
static int
s_prepare (pl_load_config_t *config)
{
    int rooms = config->conns / config->room;
    config->room_ids = pl_load_need (calloc ((size_t) rooms, sizeof (char *)));
    config->subscribe_to = pl_load_need (calloc ((size_t) rooms, sizeof (char *)));
    config->send_to = pl_load_need (calloc ((size_t) rooms, sizeof (char *)));
    if (config->target == PL_LOAD_PARLEY) {
        if (!config->secret)
            config->secret = getenv ("PARLEY_JWT_SECRET");
        if (!config->secret || !*config->secret || !config->rooms_file) {
            fprintf (stderr, "parley-load: parley wants --secret (or PARLEY_JWT_SECRET) and --rooms FILE\n");
            return -1;
        }
        if (s_read_rooms (config, rooms))
            return -1;
    }
    for (int room = 0; room < rooms; room++) {
        int rc;
        if (config->target == PL_LOAD_PARLEY)
            rc = asprintf (&config->subscribe_to [room], "/topic/rooms/%s", config->room_ids [room]) < 0
              || asprintf (&config->send_to [room], "/app/rooms/%s", config->room_ids [room]) < 0;
        else
            rc = asprintf (&config->room_ids [room], "load.%d", room) < 0
              || asprintf (&config->subscribe_to [room], "/topic/load.%d", room) < 0
              || asprintf (&config->send_to [room], "/topic/load.%d", room) < 0;
        if (rc) {
            fprintf (stderr, "parley-load: out of memory\n");
            return -1;
        }
    }
    if (config->target == PL_LOAD_PARLEY) {
        config->tokens = pl_load_need (calloc ((size_t) config->conns, sizeof (char *)));
        for (int index = 0; index < config->conns; index++) {
            char user [32];
            snprintf (user, sizeof user, "load-%d", index);
            config->tokens [index] = pl_token_mint_hs256 (config->secret, user, NULL, 86400);
            if (!config->tokens [index]) {
                fprintf (stderr, "parley-load: cannot mint a token with that secret\n");
                return -1;
            }
        }
    }
    return 0;
}

static void
s_config_free (pl_load_config_t *config)
{
    int rooms = config->conns / config->room;
    for (int room = 0; room < rooms; room++) {
        free (config->room_ids? config->room_ids [room]: NULL);
        free (config->subscribe_to? config->subscribe_to [room]: NULL);
        free (config->send_to? config->send_to [room]: NULL);
    }
    for (int index = 0; config->tokens && index < config->conns; index++)
        free (config->tokens [index]);
    free (config->room_ids);
    free (config->subscribe_to);
    free (config->send_to);
    free (config->tokens);
}

//  Every connection is a descriptor: raise the soft limit to the hard one
static int
s_raise_nofile (int needed)
{
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit (RLIMIT_NOFILE, &limit);
    }
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY
    &&  limit.rlim_cur < (rlim_t) needed) {
        fprintf (stderr, "parley-load: %d descriptors wanted, the limit is %llu (ulimit -Hn)\n",
                 needed, (unsigned long long) limit.rlim_cur);
        return -1;
    }
    return 0;
}

//  Add one thread's figures to the run's
static void
s_figures_add (pl_load_figures_t *total, const pl_load_figures_t *figures)
{
    pl_loadstats_merge (&total->latency, &figures->latency);
    pl_loadstats_merge (&total->connect, &figures->connect);
    pl_loadstats_merge (&total->receipt, &figures->receipt);
    pl_loadstats_merge (&total->lag, &figures->lag);
    total->sent += figures->sent;
    total->receipted += figures->receipted;
    total->delivered += figures->delivered;
    total->duplicated += figures->duplicated;
    total->out_of_order += figures->out_of_order;
    total->seq_gaps += figures->seq_gaps;
    total->events += figures->events;
    total->disconnects_unreceipted += figures->disconnects_unreceipted;
    if (figures->first_send_ns && (!total->first_send_ns || figures->first_send_ns < total->first_send_ns))
        total->first_send_ns = figures->first_send_ns;
    if (figures->last_send_ns > total->last_send_ns)
        total->last_send_ns = figures->last_send_ns;
    if (figures->last_delivery_ns > total->last_delivery_ns)
        total->last_delivery_ns = figures->last_delivery_ns;
}

//  Start the threads, wait for them, add up what they counted.
//  Returns 0, or -1 when a thread could not be set up.
static int
s_run (pl_load_run_t *run, pl_load_figures_t *total)
{
    const pl_load_config_t *config = run->config;
    pl_load_thread_t *threads = pl_load_need (calloc ((size_t) config->threads, sizeof (pl_load_thread_t)));
    int started = 0, rc = 0;
    run->started_ns = pl_load_now ();
    for (; started < config->threads; started++) {
        if (pl_loadrun_init (&threads [started], run, started)
        ||  pthread_create (&threads [started].thread, NULL, pl_loadrun_main, &threads [started])) {
            fprintf (stderr, "parley-load: cannot start thread %d\n", started);
            pl_loadrun_free (&threads [started]);
            rc = -1;
            //  The others would wait at the barrier for these connections
            atomic_fetch_add (&run->settled, config->conns);
            break;
        }
    }
    memset (total, 0, sizeof *total);
    pl_loadstats_init (&total->latency);
    pl_loadstats_init (&total->connect);
    pl_loadstats_init (&total->receipt);
    pl_loadstats_init (&total->lag);
    for (int index = 0; index < started; index++) {
        pthread_join (threads [index].thread, NULL);
        s_figures_add (total, &threads [index].figures);
        pl_loadrun_free (&threads [index]);
    }
    free (threads);
    return rc;
}

static json_t *
s_seconds (int64_t from_ns, int64_t to_ns)
{
    if (!from_ns || to_ns < from_ns)
        return json_null ();
    return json_real (round ((double) (to_ns - from_ns) / 1e6) / 1e3);
}

static json_t *
s_per_second (uint64_t count, int64_t from_ns, int64_t to_ns)
{
    if (!from_ns || to_ns <= from_ns)
        return json_null ();
    return json_real (round ((double) count * 1e10 / (double) (to_ns - from_ns)) / 10);
}

//  The run in one JSON object. Figures past the ones every run has
//  (receipt and lag times, events) come last.
static json_t *
s_result (const pl_load_config_t *config, pl_load_run_t *run, const pl_load_figures_t *total)
{
    uint64_t expected = total->sent * (uint64_t) config->room;
    uint64_t lost = expected > total->delivered? expected - total->delivered: 0;
    struct rusage usage;
    getrusage (RUSAGE_SELF, &usage);
    double cpu = (double) usage.ru_utime.tv_sec + (double) usage.ru_utime.tv_usec / 1e6
               + (double) usage.ru_stime.tv_sec + (double) usage.ru_stime.tv_usec / 1e6;
    static const char *connect_names [] = { "p50", "p99", "max", NULL };
    static const char *latency_names [] = { "p50", "p99", "p999", "max", NULL };
    json_t *result = json_pack ("{s:s, s:i, s:i, s:i, s:f, s:i, s:o, s:o, s:I, s:I, s:I, s:I, s:I,"
                                " s:I, s:I, s:I}",
        "target", config->target == PL_LOAD_PARLEY? "parley": "rabbitmq",
        "conns", config->conns, "room", config->room, "msgs", config->msgs,
        "rate", config->rate, "threads", config->threads,
        "connect_ms", pl_loadstats_json_ms (&total->connect, connect_names),
        "connect_s", s_seconds (run->started_ns, atomic_load (&run->settled_ns)),
        "sent", (json_int_t) total->sent, "receipted", (json_int_t) total->receipted,
        "expected", (json_int_t) expected, "delivered", (json_int_t) total->delivered,
        "lost", (json_int_t) lost, "duplicated", (json_int_t) total->duplicated,
        "out_of_order", (json_int_t) total->out_of_order, "seq_gaps", (json_int_t) total->seq_gaps);
    pl_load_need (result);
    pthread_mutex_lock (&run->lock);
    json_object_set (result, "errors", run->errors);
    json_object_set_new (result, "error_count", json_integer ((json_int_t) run->error_count));
    pthread_mutex_unlock (&run->lock);
    json_object_set_new (result, "send_s", s_seconds (total->first_send_ns, total->last_send_ns));
    json_object_set_new (result, "offered_per_s",
                         s_per_second (total->sent, total->first_send_ns, total->last_send_ns));
    json_object_set_new (result, "delivered_per_s",
                         s_per_second (total->delivered, total->first_send_ns, total->last_delivery_ns));
    json_object_set_new (result, "latency_ms", pl_loadstats_json_ms (&total->latency, latency_names));
    json_object_set_new (result, "client_cpu_s", json_real (round (cpu * 1000) / 1000));
    json_object_set_new (result, "client_rss_kib", json_integer (usage.ru_maxrss));
    json_object_set_new (result, "subscribed", json_integer (atomic_load (&run->subscribed)));
    json_object_set_new (result, "receipt_ms", pl_loadstats_json_ms (&total->receipt, latency_names));
    json_object_set_new (result, "send_lag_ms", pl_loadstats_json_ms (&total->lag, connect_names));
    json_object_set_new (result, "events", json_integer ((json_int_t) total->events));
    json_object_set_new (result, "disconnects_unreceipted",
                         json_integer ((json_int_t) total->disconnects_unreceipted));
    return result;
}

//  What makes the run fail besides the errors the connections recorded
static void
s_final_checks (const pl_load_config_t *config, pl_load_run_t *run, const pl_load_figures_t *total)
{
    if (total->receipted < total->sent)
        pl_load_error (run, "%" PRIu64 " SENDs got no RECEIPT", total->sent - total->receipted);
    uint64_t planned = (uint64_t) config->conns * (uint64_t) config->msgs;
    if (total->sent < planned)
        pl_load_error (run, "%" PRIu64 " of %" PRIu64 " messages were not sent", planned - total->sent, planned);
}

static int
s_selftest (bool verbose)
{
    pl_loadstats_test (verbose);
    pl_wsframe_test (verbose);
    pl_loadstomp_test (verbose);
    return 0;
}

int
main (int argc, char **argv)
{
    if (argc >= 2 && strcmp (argv [1], "--selftest") == 0)
        return s_selftest (argc >= 3 && strcmp (argv [2], "-v") == 0);
    pl_load_config_t config = {
        .target = PL_LOAD_PARLEY, .url = "ws://127.0.0.1:8080/ws", .conns = 100, .room = 2,
        .msgs = 100, .rate = 1, .threads = 1, .login = "guest", .passcode = "guest",
        .vhost = "/", .drain_ms = 10000, .connect_timeout_ms = 30000, .connect_window = 100
    };
    int rc = s_options (&config, argc, argv);
    if (rc)
        return rc > 0? 0: EXIT_USAGE;
    if (s_parse_url (&config) || s_prepare (&config)) {
        s_config_free (&config);
        return EXIT_USAGE;
    }
    if (s_resolve (&config) || s_raise_nofile (config.conns + 16 * config.threads + 64)) {
        s_config_free (&config);
        return 1;
    }
    //  A peer that resets mid-write is an error to count, not a signal
    signal (SIGPIPE, SIG_IGN);
    pl_load_run_t run = { .config = &config, .errors = json_array () };
    pthread_mutex_init (&run.lock, NULL);
    fprintf (stderr, "parley-load: %d connections to %s, rooms of %d, %d messages each at %g/s, %d threads\n",
             config.conns, config.url, config.room, config.msgs, config.rate, config.threads);
    pl_load_figures_t total;
    bool started = s_run (&run, &total) == 0;
    s_final_checks (&config, &run, &total);
    json_t *result = s_result (&config, &run, &total);
    char *text = json_dumps (result, JSON_COMPACT | JSON_REAL_PRECISION (10));
    printf ("%s\n", text? text: "{}");
    bool passed = started && text && json_integer_value (json_object_get (result, "lost")) == 0
               && total.duplicated == 0 && run.error_count == 0;
    free (text);
    json_decref (result);
    json_decref (run.errors);
    pthread_mutex_destroy (&run.lock);
    s_config_free (&config);
    return fflush (stdout) == 0 && passed? 0: 1;
}
