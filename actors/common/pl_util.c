/*  =========================================================================
    pl_util - small helpers every actor uses: time, names, growable buffers
    =========================================================================
*/
#include "pl_util.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#if defined (__GLIBC__)
#   include <malloc.h>
#endif

int64_t
pl_clock_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int64_t
pl_mono_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

void
pl_iso8601 (int64_t epoch_ms, char *buffer, size_t size)
{
    time_t seconds = (time_t) (epoch_ms / 1000);
    struct tm utc;
    gmtime_r (&seconds, &utc);
    //  Fields reduced to their digits, so the compiler (and a reader) can
    //  see the text always fits 25 bytes
    snprintf (buffer, size, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
              (unsigned) (utc.tm_year + 1900) % 10000u, (unsigned) (utc.tm_mon + 1) % 100u,
              (unsigned) utc.tm_mday % 100u, (unsigned) utc.tm_hour % 100u,
              (unsigned) utc.tm_min % 100u, (unsigned) utc.tm_sec % 100u,
              (unsigned) (((epoch_ms % 1000) + 1000) % 1000));
}

void
pl_heap_trim (void)
{
#if defined (__GLIBC__)
    malloc_trim (0);
#endif
}

bool
pl_id_valid_n (const char *id, size_t length)
{
    if (!id || length == 0 || length > PL_ID_MAX)
        return false;
    for (size_t index = 0; index < length; index++) {
        char c = id [index];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
        ||  c == '_' || c == '.' || c == ':' || c == '@' || c == '-'))
            return false;
    }
    return true;
}

bool
pl_id_valid (const char *id)
{
    return id && pl_id_valid_n (id, strlen (id));
}

void
pl_free_item (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

void
pl_random_hex (char *buffer, size_t bytes)
{
    unsigned char random [64];
    assert (bytes <= sizeof random);
    if (getrandom (random, bytes, 0) != (ssize_t) bytes)
        for (size_t index = 0; index < bytes; index++)
            random [index] = (unsigned char) rand ();
    for (size_t index = 0; index < bytes; index++)
        sprintf (buffer + 2 * index, "%02x", random [index]);
    buffer [2 * bytes] = 0;
}

void
pl_buf_init (pl_buf_t *self)
{
    memset (self, 0, sizeof *self);
}

void
pl_buf_free (pl_buf_t *self)
{
    free (self->data);
    memset (self, 0, sizeof *self);
}

//  Make room for more bytes, first by moving consumed space out.
static int
s_buf_reserve (pl_buf_t *self, size_t more)
{
    if (self->start && self->start == self->size)
        self->start = self->size = 0;
    if (self->size + more <= self->capacity)
        return 0;
    if (self->start > self->capacity / 2) {
        memmove (self->data, self->data + self->start, self->size - self->start);
        self->size -= self->start;
        self->start = 0;
        if (self->size + more <= self->capacity)
            return 0;
    }
    size_t capacity = self->capacity? self->capacity: 256;
    while (capacity < self->size + more)
        capacity *= 2;
    char *data = realloc (self->data, capacity);
    if (!data)
        return -1;
    self->data = data;
    self->capacity = capacity;
    return 0;
}

int
pl_buf_append (pl_buf_t *self, const void *data, size_t size)
{
    if (s_buf_reserve (self, size))
        return -1;
    if (size)
        memcpy (self->data + self->size, data, size);
    self->size += size;
    return 0;
}

int
pl_buf_printf (pl_buf_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    int needed = vsnprintf (NULL, 0, format, args);
    va_end (args);
    if (needed < 0 || s_buf_reserve (self, (size_t) needed + 1))
        return -1;
    va_start (args, format);
    vsnprintf (self->data + self->size, (size_t) needed + 1, format, args);
    va_end (args);
    self->size += (size_t) needed;
    return 0;
}

size_t
pl_buf_pending (const pl_buf_t *self)
{
    return self->size - self->start;
}

const char *
pl_buf_head (const pl_buf_t *self)
{
    return self->data? self->data + self->start: "";
}

void
pl_buf_consume (pl_buf_t *self, size_t size)
{
    assert (size <= pl_buf_pending (self));
    self->start += size;
    if (self->start == self->size)
        self->start = self->size = 0;
}

void
pl_buf_reset (pl_buf_t *self)
{
    self->start = self->size = 0;
}

void
pl_every_init (pl_every_t *self, int interval_ms)
{
    assert (self && interval_ms > 0);
    self->interval_ms = interval_ms;
    self->next_ms = 0;
}

bool
pl_every_due (pl_every_t *self, int64_t now)
{
    assert (self);
    if (now < self->next_ms)
        return false;
    //  Late turns do not pile up: the next is an interval after this one
    self->next_ms = now + self->interval_ms;
    return true;
}

int
pl_every_wait_ms (const pl_every_t *self, int64_t now)
{
    assert (self);
    return now >= self->next_ms? 0: (int) (self->next_ms - now);
}

void
pl_util_test (bool verbose)
{
    (void) verbose;
    pl_every_t every;
    pl_every_init (&every, 1000);
    pl_check (pl_every_due (&every, 5000));
    pl_check (!pl_every_due (&every, 5999));
    pl_check (pl_every_wait_ms (&every, 5500) == 500);
    pl_check (pl_every_due (&every, 6000));
    pl_check (pl_every_due (&every, 9000) && pl_every_wait_ms (&every, 9000) == 1000);
    char date [32];
    pl_iso8601 (1795348800123LL, date, sizeof date);
    pl_check (strcmp (date, "2026-11-22T12:00:00.123Z") == 0);

    pl_check (pl_id_valid ("room-1"));
    pl_check (pl_id_valid ("d:abc@x.y_z"));
    pl_check (!pl_id_valid (""));
    pl_check (!pl_id_valid ("a/b"));
    pl_check (!pl_id_valid ("a b"));
    pl_check (!pl_id_valid ("0123456789012345678901234567890123456789012345678901234567890123456789"));

    char hex [33];
    pl_random_hex (hex, 16);
    pl_check (strlen (hex) == 32);

    pl_buf_t buf;
    pl_buf_init (&buf);
    for (int index = 0; index < 1000; index++)
        pl_check (pl_buf_printf (&buf, "%04d", index) == 0);
    pl_check (pl_buf_pending (&buf) == 4000);
    pl_check (memcmp (pl_buf_head (&buf), "0000", 4) == 0);
    pl_buf_consume (&buf, 3996);
    pl_check (memcmp (pl_buf_head (&buf), "0999", 4) == 0);
    pl_check (pl_buf_append (&buf, "x", 1) == 0);
    pl_check (pl_buf_pending (&buf) == 5);
    pl_buf_consume (&buf, 5);
    pl_check (pl_buf_pending (&buf) == 0);
    pl_buf_free (&buf);
}
