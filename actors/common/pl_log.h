/*  =========================================================================
    pl_log - one line per event on stderr, for journald

    Lines read "LEVEL actor: text". systemd's journal adds time and unit, so
    no timestamp is printed. Debug lines appear only when verbose is set.
    =========================================================================
*/
#ifndef PL_LOG_H_INCLUDED
#define PL_LOG_H_INCLUDED

#include <stdbool.h>

//  Name this thread's actor for the log lines it writes ("bridge", ...).
void pl_log_set_actor (const char *name);
void pl_log_set_verbose (bool verbose);
//  "error", "warning", "info" (default) or "debug". Returns 0 or -1.
int  pl_log_set_level (const char *level);
bool pl_log_verbose (void);

void pl_log_error (const char *format, ...) __attribute__ ((format (printf, 1, 2)));
void pl_log_warning (const char *format, ...) __attribute__ ((format (printf, 1, 2)));
void pl_log_info (const char *format, ...) __attribute__ ((format (printf, 1, 2)));
void pl_log_debug (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

#endif
