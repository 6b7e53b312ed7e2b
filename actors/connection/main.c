/*  parley-connection: one connection actor per process (WebSocket, STOMP
    and the HTTP API on --port, shared by every instance); see pl_connection.h  */
#include "pl_connection.h"
#include "pl_main.h"

int
main (int argc, char **argv)
{
    return pl_main_run (argc, argv, "conn", pl_connection_actor);
}
