/*  parley-room-router: one router actor per process; see pl_router.h  */
#include "pl_router.h"
#include "pl_main.h"

int
main (int argc, char **argv)
{
    return pl_main_run (argc, argv, "router", pl_router_actor);
}
