/*  =========================================================================
    pl_util - small helpers every actor uses: time, names, growable buffers
    =========================================================================
*/
#ifndef PL_UTIL_H_INCLUDED
#define PL_UTIL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <stdio.h>
#include <stdlib.h>

//  A selftest's check: always evaluated and enforced, in every build type
//  (Release defines NDEBUG, which compiles assert out). assert stays for
//  programmer errors in the code itself.
#define pl_check(condition) \
    do { \
        if (!(condition)) { \
            fprintf (stderr, "%s:%d: %s: check failed: %s\n", \
                     __FILE__, __LINE__, __func__, #condition); \
            abort (); \
        } \
    } while (0)

#ifndef streq_safe
#   define streq_safe(a,b) ((a) && (b) && strcmp ((a), (b)) == 0)
#endif

//  Wall-clock milliseconds since the epoch (for createdAt).
int64_t pl_clock_ms (void);
//  Monotonic milliseconds (for timeouts).
int64_t pl_mono_ms (void);
//  Write "2026-11-22T12:00:00.000Z" for a wall-clock time; buffer >= 25 bytes.
void pl_iso8601 (int64_t epoch_ms, char *buffer, size_t size);

//  A cadence: due once per interval (status records, heartbeats, ticks),
//  the first time at once. Written once so every actor keeps time alike.
typedef struct {
    int64_t interval_ms;
    int64_t next_ms;            //  monotonic ms when due next (0: at once)
} pl_every_t;

void pl_every_init (pl_every_t *self, int interval_ms);
//  True when due at monotonic time now; then the next is an interval later.
bool pl_every_due (pl_every_t *self, int64_t now);
//  Milliseconds until due (0 when due now), for a poll timeout.
int  pl_every_wait_ms (const pl_every_t *self, int64_t now);

//  Hands the free pages of every malloc arena back to the kernel (glibc's
//  malloc_trim; nothing elsewhere). Without it a heap keeps the pages of its
//  highest mark, a storm of connects, resident for good. Costs a walk of the
//  free lists: call it on a cadence (heap-trim-interval-ms), never per event.
void pl_heap_trim (void);

//  A room or user id is 1..64 of [A-Za-z0-9_.:@-]: safe in Redis keys,
//  STOMP destinations and URLs without escaping.
#define PL_ID_MAX 64
bool pl_id_valid (const char *id);
bool pl_id_valid_n (const char *id, size_t length);

//  Fill buffer with 2*bytes random hex digits and a NUL.
void pl_random_hex (char *buffer, size_t bytes);

//  A czmq container destructor (zhashx, zlistx) for items made with malloc
void pl_free_item (void **item_p);

//  A growable byte buffer with a read position, used for outbound queues.
typedef struct {
    char  *data;
    size_t size;        //  bytes held from data [0]
    size_t start;       //  bytes before this were consumed
    size_t capacity;
} pl_buf_t;

void   pl_buf_init (pl_buf_t *self);
void   pl_buf_free (pl_buf_t *self);
int    pl_buf_append (pl_buf_t *self, const void *data, size_t size);
int    pl_buf_printf (pl_buf_t *self, const char *format, ...)
           __attribute__ ((format (printf, 2, 3)));
//  Bytes waiting to be consumed
size_t pl_buf_pending (const pl_buf_t *self);
const char *pl_buf_head (const pl_buf_t *self);
void   pl_buf_consume (pl_buf_t *self, size_t size);
void   pl_buf_reset (pl_buf_t *self);

void pl_util_test (bool verbose);

#endif
