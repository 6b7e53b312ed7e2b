/*  parley-persistence: one persistence actor per process; see pl_persistence.h  */
#include "pl_persistence.h"
#include "pl_main.h"

int
main (int argc, char **argv)
{
    return pl_main_run (argc, argv, "store", pl_persistence_actor);
}
