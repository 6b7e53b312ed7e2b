/*  =========================================================================
    pl_log - one line per event on stderr, for journald
    =========================================================================
*/
#include "pl_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static __thread char s_actor [32] = "parley";
static bool s_verbose = false;
//  0 error, 1 warning, 2 info, 3 debug
static int s_level = 2;

void
pl_log_set_actor (const char *name)
{
    snprintf (s_actor, sizeof s_actor, "%s", name);
}

void
pl_log_set_verbose (bool verbose)
{
    s_verbose = verbose;
    if (verbose)
        s_level = 3;
}

int
pl_log_set_level (const char *level)
{
    const char *names [] = { "error", "warning", "info", "debug" };
    for (int index = 0; index < 4; index++)
        if (!strcmp (level, names [index])) {
            s_level = index;
            s_verbose = index == 3;
            return 0;
        }
    return -1;
}

bool
pl_log_verbose (void)
{
    return s_verbose;
}

//  One fprintf per line, so lines of several threads do not interleave.
static void
s_log (const char *level, const char *format, va_list args)
{
    char line [1024];
    int used = snprintf (line, sizeof line, "%s %s: ", level, s_actor);
    if (used < 0)
        return;
    vsnprintf (line + used, sizeof line - (size_t) used, format, args);
    fprintf (stderr, "%s\n", line);
}

#define LOG_FUNCTION(function, level, condition) \
void function (const char *format, ...) \
{ \
    if (!(condition)) \
        return; \
    va_list args; \
    va_start (args, format); \
    s_log (level, format, args); \
    va_end (args); \
}

LOG_FUNCTION (pl_log_error, "E", true)
LOG_FUNCTION (pl_log_warning, "W", s_level >= 1)
LOG_FUNCTION (pl_log_info, "I", s_level >= 2)
LOG_FUNCTION (pl_log_debug, "D", s_level >= 3)
