/*  =========================================================================
    pl_main - the thin main of every actor process
    =========================================================================
*/
#include "pl_main.h"

#include <malloc.h>
#include "pl_config.h"
#include "pl_log.h"
#include "pl_notify.h"
#include "pl_util.h"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

//  zactor_destroy sends $TERM and waits for the actor's signal, but a
//  second SIGTERM interrupts that wait and it returns while the actor
//  thread still runs on the configuration main would free next. So the
//  actor runs inside this shim, and main waits for `done`: a condition
//  variable, which signals do not interrupt.
typedef struct {
    zactor_fn *actor_fn;
    void *args;
    pthread_mutex_t lock;
    pthread_cond_t finished;
    bool done;
} s_run_t;

static void
s_actor_shim (zsock_t *pipe, void *args)
{
    s_run_t *run = (s_run_t *) args;
    run->actor_fn (pipe, run->args);
    pthread_mutex_lock (&run->lock);
    run->done = true;
    pthread_cond_broadcast (&run->finished);
    pthread_mutex_unlock (&run->lock);
}

static void
s_run_wait (s_run_t *run)
{
    pthread_mutex_lock (&run->lock);
    while (!run->done)
        pthread_cond_wait (&run->finished, &run->lock);
    pthread_mutex_unlock (&run->lock);
}

//  Start the actor and wait for SIGINT or SIGTERM (or for the actor to stop
//  by itself); then tell it to stop and wait until its thread is done.
//  Meanwhile, every trim_s (0: never), free heap memory goes back to the
//  system: a burst (a full persist window, a big replay) would otherwise
//  keep the process at its high-water mark for good.
static int
s_run (zactor_fn *actor_fn, void *args, int trim_s)
{
    s_run_t run = { actor_fn, args, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false };
    zactor_t *actor = zactor_new (s_actor_shim, &run);
    if (!actor) {
        pl_log_error ("could not start");
        return 1;
    }
    //  The actor may also stop by itself (fatal error): watch its pipe
    zpoller_t *poller = zpoller_new (actor, NULL);
    int rc = 0;
    int64_t next_trim = zclock_mono () + (int64_t) trim_s * 1000;
    while (!zsys_interrupted) {
        void *which = zpoller_wait (poller, 200);
        if (which == actor) {
            pl_log_error ("actor stopped by itself");
            rc = 1;
            break;
        }
        if (trim_s > 0 && zclock_mono () >= next_trim) {
            malloc_trim (0);
            next_trim = zclock_mono () + (int64_t) trim_s * 1000;
        }
    }
    zpoller_destroy (&poller);
    pl_log_info ("stopping");
    pl_notify_stopping ("draining");
    zactor_destroy (&actor);
    s_run_wait (&run);
    return rc;
}

int
pl_main_run (int argc, char **argv, const char *actor_name, zactor_fn *actor_fn)
{
    pl_log_set_actor (actor_name);
    pl_config_t *config = pl_config_new (argc, argv);
    if (!config)
        return 1;
    if (config->informational) {
        pl_config_destroy (&config);
        return 0;
    }
    pl_log_set_level (config->log_level);
    if (config->verbose)
        pl_log_set_verbose (true);
    mkdir (config->runtime_dir, 0700);

    //  czmq turns SIGINT/SIGTERM into zsys_interrupted
    zsys_init ();
    zsys_set_logstream (NULL);
    int rc = s_run (actor_fn, config, config->memory_trim_s);
    //  Only now: the actor thread is gone
    pl_config_destroy (&config);
    return rc;
}

//  --------------------------------------------------------------------------
//  Selftest: a slow actor still running when the second SIGTERM comes

static int s_test_pipe [2];

//  Says "up" when started; after $TERM takes 300 ms (a backlog), reads its
//  configuration and says "done"
static void
s_test_slow_actor (zsock_t *pipe, void *args)
{
    const pl_config_t *config = (const pl_config_t *) args;
    zsock_signal (pipe, 0);
    if (write (s_test_pipe [1], "up", 2) != 2)
        return;
    char *command = zstr_recv (pipe);
    zstr_free (&command);
    zclock_sleep (300);
    const char *word = config->host_id && *config->host_id? "done": "bad!";
    if (write (s_test_pipe [1], word, 4) != 4)
        return;
}

void
pl_main_test (bool verbose)
{
    if (verbose)
        printf (" * pl_main: ");
    pl_check (pipe (s_test_pipe) == 0);
    fflush (NULL);
    pid_t child = fork ();
    pl_check (child >= 0);
    if (child == 0) {
        close (s_test_pipe [0]);
        char *argv [] = { "pl_main_test", "--runtime-dir", "/tmp", "--log-level", "error", NULL };
        _exit (pl_main_run (5, argv, "test", s_test_slow_actor));
    }
    close (s_test_pipe [1]);
    char text [16] = "";
    pl_check (read (s_test_pipe [0], text, 2) == 2 && memcmp (text, "up", 2) == 0);
    //  Two signals, 50 ms apart: the second interrupts zactor_destroy's wait
    pl_check (kill (child, SIGTERM) == 0);
    zclock_sleep (50);
    pl_check (kill (child, SIGTERM) == 0);
    int status = 0;
    pl_check (waitpid (child, &status, 0) == child);
    pl_check (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    //  The process ended only after its actor finished with the configuration
    ssize_t size = read (s_test_pipe [0], text, 4);
    pl_check (size == 4 && memcmp (text, "done", 4) == 0);
    close (s_test_pipe [0]);
    if (verbose)
        printf ("OK\n");
}
