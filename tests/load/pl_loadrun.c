/*  =========================================================================
    pl_loadrun - one thread of parley-load
    =========================================================================
*/
#include "pl_loadrun.h"
#include "pl_loadconn.h"
#include "pl_token.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define S_TICK_NS       (100 * 1000000LL)   //  heart-beats and deadlines
#define S_BARRIER_NS    (2 * 1000000LL)     //  how often a thread looks at the barrier
#define S_GO_MARGIN_NS  (20 * 1000000LL)    //  every thread sees the start before it comes
#define S_SEND_BUDGET   1000                //  sends in a row before reading again
#define S_EVENTS        256
#define S_SCRATCH       65536

int64_t
pl_load_now (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t) now.tv_sec * 1000000000 + now.tv_nsec;
}

uint64_t
pl_load_random (uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

//  JSON wants UTF-8; what a server said may not be
static json_t *
s_error_text (char *text)
{
    json_t *string = json_string (text);
    if (string)
        return string;
    for (char *at = text; *at; at++)
        if ((unsigned char) *at < 0x20 || (unsigned char) *at >= 0x7F)
            *at = '?';
    return json_string (text);
}

void
pl_load_error (pl_load_run_t *run, const char *format, ...)
{
    char text [1024];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    pthread_mutex_lock (&run->lock);
    run->error_count++;
    if (run->error_count <= PL_LOAD_ERRORS_KEPT) {
        fprintf (stderr, "parley-load: %s\n", text);
        json_array_append_new (run->errors, s_error_text (text));
    }
    else
    if (run->error_count == PL_LOAD_ERRORS_KEPT + 1)
        fprintf (stderr, "parley-load: more errors: counted, not shown\n");
    pthread_mutex_unlock (&run->lock);
}

int
pl_loadrun_init (pl_load_thread_t *self, pl_load_run_t *run, int index)
{
    const pl_load_config_t *config = run->config;
    memset (self, 0, sizeof *self);
    self->run = run;
    self->config = config;
    self->index = index;
    int first = (int) ((int64_t) config->conns * index / config->threads);
    self->count = (int) ((int64_t) config->conns * (index + 1) / config->threads) - first;
    size_t room = (size_t) config->room;
    size_t words = ((size_t) config->msgs + 63) / 64;
    self->epoll = epoll_create1 (EPOLL_CLOEXEC);
    self->conns = calloc ((size_t) self->count, sizeof (pl_load_conn_t));
    self->order = calloc ((size_t) self->count, sizeof (int));
    self->scratch_size = S_SCRATCH;
    self->scratch = malloc (self->scratch_size);
    self->highest_block = calloc ((size_t) self->count * room, sizeof (int32_t));
    self->seen_block = calloc ((size_t) self->count * room * words + 1, sizeof (uint64_t));
    if (self->epoll < 0 || !self->conns || !self->order || !self->scratch
    ||  !self->highest_block || !self->seen_block)
        return -1;
    //  Seeded apart per thread: offsets, masks and keys differ
    self->rng = 0x9E3779B97F4A7C15ULL * (uint64_t) (index + 1) ^ (uint64_t) pl_load_now ();
    if (!self->rng)
        self->rng = 1;
    for (int local = 0; local < self->count; local++)
        pl_loadconn_init (&self->conns [local], self, first + local,
                          self->highest_block + (size_t) local * room,
                          self->seen_block + (size_t) local * room * words);
    pl_loadstats_init (&self->figures.latency);
    pl_loadstats_init (&self->figures.connect);
    pl_loadstats_init (&self->figures.receipt);
    pl_loadstats_init (&self->figures.lag);
    return 0;
}

void
pl_loadrun_free (pl_load_thread_t *self)
{
    for (int local = 0; self->conns && local < self->count; local++)
        pl_loadconn_free (&self->conns [local]);
    free (self->conns);
    free (self->order);
    free (self->scratch);
    free (self->highest_block);
    free (self->seen_block);
    pl_buf_free (&self->frame);
    if (self->epoll >= 0)
        close (self->epoll);
    self->conns = NULL;
    self->epoll = -1;
}

//  epoll_wait to the nanosecond where the kernel has epoll_pwait2 (sends
//  at 50 a second want better than millisecond timeouts), else rounded
//  up to the millisecond
static int
s_wait (int epoll, struct epoll_event *events, int64_t timeout_ns)
{
    static atomic_bool no_pwait2 = false;
    if (!atomic_load (&no_pwait2)) {
        struct timespec timeout = { .tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000 };
        int count = epoll_pwait2 (epoll, events, S_EVENTS, &timeout, NULL);
        if (count >= 0 || errno != ENOSYS)
            return count;
        atomic_store (&no_pwait2, true);
    }
    return epoll_wait (epoll, events, S_EVENTS, (int) ((timeout_ns + 999999) / 1000000));
}

//  One turn of the loop: the tick when due, then whatever the sockets
//  have, waiting at most until until_ns
static void
s_turn (pl_load_thread_t *self, int64_t until_ns)
{
    int64_t now = pl_load_now ();
    if (now >= self->next_tick_ns) {
        for (int local = 0; local < self->count; local++)
            pl_loadconn_tick (&self->conns [local], now);
        self->next_tick_ns = now + S_TICK_NS;
    }
    int64_t wake = until_ns < self->next_tick_ns? until_ns: self->next_tick_ns;
    struct epoll_event events [S_EVENTS];
    int count = s_wait (self->epoll, events, wake > now? wake - now: 0);
    if (count < 0 && errno != EINTR)
        pl_load_error (self->run, "epoll_wait: %s", strerror (errno));
    now = pl_load_now ();
    for (int index = 0; index < count; index++)
        pl_loadconn_handle ((pl_load_conn_t *) events [index].data.ptr, events [index].events, now);
}

//  Open every connection, connect-window at a time, until each settled
static void
s_phase_connect (pl_load_thread_t *self)
{
    int window = self->config->connect_window;
    while (self->settled < self->count) {
        int64_t now = pl_load_now ();
        while (self->opened < self->count && self->opening < window)
            pl_loadconn_open (&self->conns [self->opened], now);
        s_turn (self, now + S_TICK_NS);
    }
}

//  Wait for every connection of the run; the first thread past sets the
//  start. Returns it.
static int64_t
s_phase_barrier (pl_load_thread_t *self)
{
    pl_load_run_t *run = self->run;
    while (atomic_load (&run->settled) < self->config->conns)
        s_turn (self, pl_load_now () + S_BARRIER_NS);
    long long none = 0;
    atomic_compare_exchange_strong (&run->go_ns, &none, pl_load_now () + S_GO_MARGIN_NS);
    return atomic_load (&run->go_ns);
}

static int
s_compare_offsets (const void *left, const void *right, void *arg)
{
    const pl_load_conn_t *conns = (const pl_load_conn_t *) arg;
    int64_t a = conns [*(const int *) left].offset_ns;
    int64_t b = conns [*(const int *) right].offset_ns;
    return (a > b) - (a < b);
}

//  Each connection's offset in the first interval, and the order they
//  send in: round after round, by offset, since offsets are below one
//  interval. Finding the next send is then a step, not a search.
static void
s_schedule (pl_load_thread_t *self, int64_t interval_ns)
{
    for (int local = 0; local < self->count; local++) {
        self->conns [local].offset_ns = (int64_t) (pl_load_random (&self->rng) % (uint64_t) interval_ns);
        self->order [local] = local;
    }
    qsort_r (self->order, (size_t) self->count, sizeof (int), s_compare_offsets, self->conns);
    self->round = 0;
    self->position = 0;
}

//  Every message of every connection, on schedule. A thread that falls
//  behind sends what is due at once (the lag figure shows it), reading
//  its sockets between batches.
static void
s_phase_send (pl_load_thread_t *self, int64_t go_ns)
{
    const pl_load_config_t *config = self->config;
    int64_t interval_ns = (int64_t) (1e9 / config->rate);
    if (interval_ns < 1)
        interval_ns = 1;
    s_schedule (self, interval_ns);
    while (self->count && self->round < config->msgs) {
        int64_t now = pl_load_now ();
        int64_t due = 0;
        int budget = S_SEND_BUDGET;
        while (self->round < config->msgs && budget-- > 0) {
            pl_load_conn_t *conn = &self->conns [self->order [self->position]];
            due = go_ns + conn->offset_ns + (int64_t) self->round * interval_ns;
            if (due > now)
                break;
            pl_loadconn_send (conn, due);
            if (++self->position == self->count) {
                self->position = 0;
                self->round++;
            }
        }
        s_turn (self, budget < 0 || self->round >= config->msgs? now: due);
    }
    //  The run's last send starts every thread's drain clock
    pl_load_run_t *run = self->run;
    long long last = atomic_load (&run->last_send_ns);
    while (self->figures.last_send_ns > last
    &&    !atomic_compare_exchange_weak (&run->last_send_ns, &last, self->figures.last_send_ns))
        ;
    atomic_fetch_add (&run->threads_sent, 1);
}

//  Until this thread's receivers have all and its SENDs are receipted, or
//  drain-ms after the run's last send
static void
s_phase_drain (pl_load_thread_t *self)
{
    pl_load_run_t *run = self->run;
    while (self->incomplete > 0 || self->unreceipted > 0) {
        int64_t now = pl_load_now ();
        int64_t until = now + S_TICK_NS;
        if (atomic_load (&run->threads_sent) == self->config->threads) {
            int64_t deadline = atomic_load (&run->last_send_ns)
                             + (int64_t) self->config->drain_ms * 1000000;
            if (now >= deadline)
                break;
            if (deadline < until)
                until = deadline;
        }
        s_turn (self, until);
    }
}

//  DISCONNECT every connection and wait until all are closed; the tick
//  ends those that do not finish in time
static void
s_phase_close (pl_load_thread_t *self)
{
    int64_t now = pl_load_now ();
    for (int local = 0; local < self->count; local++)
        pl_loadconn_disconnect (&self->conns [local], now);
    while (self->live > 0)
        s_turn (self, pl_load_now () + S_TICK_NS);
}

void *
pl_loadrun_main (void *arg)
{
    pl_load_thread_t *self = (pl_load_thread_t *) arg;
    s_phase_connect (self);
    int64_t go_ns = s_phase_barrier (self);
    s_phase_send (self, go_ns);
    s_phase_drain (self);
    s_phase_close (self);
    //  The handshake check hashed with OpenSSL, which keeps state per thread
    pl_token_thread_end ();
    return NULL;
}
