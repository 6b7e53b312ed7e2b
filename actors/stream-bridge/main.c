/*  parley-stream-bridge: one bridge actor per process; see pl_bridge.h  */
#include "pl_bridge.h"
#include "pl_main.h"

int
main (int argc, char **argv)
{
    return pl_main_run (argc, argv, "bridge", pl_bridge_actor);
}
