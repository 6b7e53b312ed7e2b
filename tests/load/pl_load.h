/*  =========================================================================
    pl_load - what the parts of parley-load share: the run's settings,
    its state across threads, one thread's connections and figures

    T threads each drive an epoll loop over a contiguous share of the N
    connections. Threads meet only at the run's atomics (the barrier
    before sending, the end of sending) and its error list; every figure
    is kept per thread and added up once the threads are joined.
    =========================================================================
*/
#ifndef PL_LOAD_H_INCLUDED
#define PL_LOAD_H_INCLUDED

#include "pl_loadstats.h"
#include "pl_util.h"
#include "pl_wsframe.h"

#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#define PL_LOAD_ERRORS_KEPT     10          //  errors the JSON lists
#define PL_LOAD_HEARTBEAT_MS    10000       //  offered and wanted, as stompjs does by default
#define PL_LOAD_CLOSE_MS        5000        //  longest wait for DISCONNECT's receipt and the close
#define PL_LOAD_MAX_FRAME       (1 << 20)   //  largest server frame taken

typedef enum { PL_LOAD_PARLEY, PL_LOAD_RABBITMQ } pl_load_target_t;

//  --url may list several, comma-separated (hosts of one service): the
//  same host and path, other ports
#define PL_LOAD_URLS_MAX    64

//  The run's settings, read-only once the threads start
typedef struct {
    pl_load_target_t target;
    const char *url;
    char host [256];                //  of the URL
    int port;                       //  the first URL's
    int ports [PL_LOAD_URLS_MAX];   //  one per URL: connection i goes to ports [i % port_count]
    int port_count;
    char path [1024];
    struct sockaddr_storage address;
    socklen_t address_size;
    int conns, room, msgs, threads;
    double rate;                    //  messages a second per connection
    const char *secret;             //  parley
    const char *rooms_file;         //  parley
    const char *login, *passcode, *vhost;   //  rabbitmq
    int drain_ms, connect_timeout_ms, connect_window;
    char **tokens;                  //  parley: one per connection
    char **subscribe_to;            //  per room: SUBSCRIBE destination
    char **send_to;                 //  per room: SEND destination
    char **room_ids;                //  per room: parley room id, or "load.<k>"
} pl_load_config_t;

//  The run across threads
typedef struct {
    const pl_load_config_t *config;
    int64_t started_ns;             //  before the first connect
    atomic_int settled;             //  connections subscribed or failed
    atomic_int subscribed;
    atomic_llong settled_ns;        //  when the last one settled, 0 before
    atomic_llong go_ns;             //  when sending starts, 0 before the barrier
    atomic_int threads_sent;        //  threads done sending
    atomic_llong last_send_ns;
    pthread_mutex_t lock;           //  for what follows
    json_t *errors;                 //  the first PL_LOAD_ERRORS_KEPT
    uint64_t error_count;
} pl_load_run_t;

typedef struct _pl_load_thread_t pl_load_thread_t;

typedef enum {
    PL_LOADCONN_IDLE,               //  not opened yet
    PL_LOADCONN_TCP,                //  TCP connect in progress
    PL_LOADCONN_UPGRADE,            //  handshake sent, waiting for 101
    PL_LOADCONN_STOMP,              //  CONNECT sent, waiting for CONNECTED
    PL_LOADCONN_SUBSCRIBING,        //  SUBSCRIBE sent, waiting for its RECEIPT
    PL_LOADCONN_READY,              //  subscribed: sends and receives
    PL_LOADCONN_DISCONNECTING,      //  DISCONNECT sent, waiting for its RECEIPT
    PL_LOADCONN_CLOSING,            //  close frame sent, waiting for the server's
    PL_LOADCONN_CLOSED,             //  ended as planned
    PL_LOADCONN_FAILED              //  ended by an error
} pl_loadconn_state_t;

typedef struct {
    pl_load_thread_t *thread;
    int index;                      //  connection number in the run, 0..N-1
    int fd;
    pl_loadconn_state_t state;
    uint32_t events;                //  what epoll watches
    pl_buf_t in;                    //  bytes of an incomplete WebSocket frame
    pl_buf_t stomp;                 //  bytes of an incomplete STOMP frame
    pl_buf_t out;                   //  bytes the socket did not take yet
    pl_wsreader_t reader;
    char key [PL_WSFRAME_KEY_SIZE];
    bool escape;                    //  STOMP 1.2 agreed: headers escaped
    int64_t started_ns, last_in_ns, last_out_ns, deadline_ns;
    int heartbeat_out_ms, heartbeat_in_ms;  //  agreed, 0: none
    int64_t offset_ns;              //  of its first send after go
    int next_n;                     //  next message to send
    uint64_t unreceipted;           //  SENDs waiting for their RECEIPT
    uint64_t delivered;             //  distinct messages received
    uint64_t last_seq;              //  parley: seq header of the last MESSAGE
    bool seq_started;
    int32_t *highest;               //  per sender of its room: highest n seen, -1
    uint64_t *seen;                 //  per sender of its room: bitmap of n seen
} pl_load_conn_t;

//  What a thread counted
typedef struct {
    pl_loadstats_t latency;         //  SEND to MESSAGE
    pl_loadstats_t connect;         //  TCP connect to SUBSCRIBE's RECEIPT
    pl_loadstats_t receipt;         //  SEND to its RECEIPT
    pl_loadstats_t lag;             //  how late sends went out against the schedule
    uint64_t sent, receipted, delivered, duplicated, out_of_order, seq_gaps, events;
    uint64_t disconnects_unreceipted;   //  server closed at DISCONNECT without RECEIPT
    int64_t first_send_ns, last_send_ns, last_delivery_ns;
} pl_load_figures_t;

struct _pl_load_thread_t {
    pl_load_run_t *run;
    const pl_load_config_t *config;
    int index;
    pthread_t thread;
    int epoll;
    pl_load_conn_t *conns;
    int count;                      //  connections of this thread
    int opened, opening;            //  opened so far; opened and not settled
    int settled, live;              //  settled; with an open socket
    int incomplete;                 //  ready, still missing deliveries
    uint64_t unreceipted;           //  SENDs of live connections waiting for RECEIPT
    int *order;                     //  connections by send offset
    int round, position;            //  next send: round n, order [position]
    int64_t next_tick_ns;
    uint64_t rng;
    pl_buf_t frame;                 //  scratch for one outbound STOMP frame
    char *scratch;                  //  recv buffer
    size_t scratch_size;
    int32_t *highest_block;
    uint64_t *seen_block;
    pl_load_figures_t figures;
};

//  Monotonic nanoseconds: message timestamps and every deadline
int64_t
    pl_load_now (void);

//  A pseudo-random 64-bit number from the thread's state (xorshift64*):
//  send offsets, masks and handshake keys need spread, not secrecy
uint64_t
    pl_load_random (uint64_t *state);

//  Record an error of the run: counted, the first ones kept for the JSON
//  and said on stderr
void
    pl_load_error (pl_load_run_t *run, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  What a run cannot go on without: out of memory is the end of the run,
//  said clearly (an assert would be gone under NDEBUG)
static inline void *
pl_load_need (void *pointer)
{
    if (!pointer) {
        fprintf (stderr, "parley-load: out of memory\n");
        exit (EXIT_FAILURE);
    }
    return pointer;
}

#endif
