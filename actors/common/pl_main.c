/*  =========================================================================
    pl_main - the thin main of every actor process
    =========================================================================
*/
#include "pl_main.h"
#include "pl_config.h"
#include "pl_log.h"
#include "pl_notify.h"

#include <sys/stat.h>

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
    zactor_t *actor = zactor_new (actor_fn, config);
    if (!actor) {
        pl_log_error ("could not start");
        pl_config_destroy (&config);
        return 1;
    }
    //  The actor may also stop by itself (fatal error): watch its pipe
    zpoller_t *poller = zpoller_new (actor, NULL);
    int rc = 0;
    while (!zsys_interrupted) {
        void *which = zpoller_wait (poller, 200);
        if (which == actor) {
            pl_log_error ("actor stopped by itself");
            rc = 1;
            break;
        }
    }
    zpoller_destroy (&poller);
    pl_log_info ("stopping");
    pl_notify_stopping ("draining");
    zactor_destroy (&actor);
    pl_config_destroy (&config);
    return rc;
}
