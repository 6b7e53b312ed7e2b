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

void
pl_log_set_actor (const char *name)
{
    snprintf (s_actor, sizeof s_actor, "%s", name);
}

void
pl_log_set_verbose (bool verbose)
{
    s_verbose = verbose;
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
LOG_FUNCTION (pl_log_warning, "W", true)
LOG_FUNCTION (pl_log_info, "I", true)
LOG_FUNCTION (pl_log_debug, "D", s_verbose)
