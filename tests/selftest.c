/*  =========================================================================
    parley-selftest - runs the class selftests, all or one by name

        parley-selftest             every class
        parley-selftest pl_stomp    one class
        parley-selftest --list      the class names

    Classes whose test needs servers read PARLEY_TEST_REDIS_URL and
    PARLEY_TEST_MONGO_URL (tests/servers.sh starts them for ctest).
    =========================================================================
*/
#include <czmq.h>
#include "pl_config.h"
#include "pl_util.h"
#include "pl_msg.h"
#include "pl_drain.h"
#include "pl_bucket.h"
#include "pl_main.h"
#include "pl_reply.h"
#include "pl_peers.h"
#include "pl_notify.h"
#include "pl_monitor.h"
#include "pl_histogram.h"
#include "pl_metrics.h"
#include "pl_stomp.h"
#include "pl_token.h"
#include "pl_api.h"
#include "pl_pending.h"
#include "pl_resume.h"
#include "pl_link.h"
#include "pl_http.h"
#include "pl_gate.h"
#include "pl_handshake.h"
#include "pl_interest.h"
#include "pl_session.h"
#include "pl_limits.h"          //  issue 8: STOMP limits
#include "pl_wsclient.h"
#include "pl_connection.h"
#include "pl_router.h"
#include "pl_unread.h"
#include "pl_presence.h"
#include "pl_floors.h"
#include "pl_rooms.h"
#include "pl_store.h"
#include "pl_persistence.h"
#include "pl_streams.h"
#include "pl_bridge.h"

static void pl_pipeline_test (bool verbose);

typedef struct {
    const char *name;
    void (*test) (bool verbose);
} selftest_t;

static const selftest_t s_selftests [] = {
    { "pl_util",        pl_util_test },
    { "pl_config",      pl_config_test },
    { "pl_msg",         pl_msg_test },
    { "pl_drain",       pl_drain_test },
    { "pl_bucket",      pl_bucket_test },
    { "pl_main",        pl_main_test },
    { "pl_reply",       pl_reply_test },
    { "pl_peers",       pl_peers_test },
    { "pl_notify",      pl_notify_test },
    { "pl_monitor",     pl_monitor_test },
    { "pl_histogram",   pl_histogram_test },
    { "pl_metrics",     pl_metrics_test },
    { "pl_stomp",       pl_stomp_test },
    { "pl_token",       pl_token_test },
    { "pl_api",         pl_api_test },
    { "pl_pending",     pl_pending_test },
    { "pl_resume",      pl_resume_test },
    { "pl_link",        pl_link_test },
    { "pl_http",        pl_http_test },
    { "pl_gate",        pl_gate_test },
    { "pl_handshake",   pl_handshake_test },
    { "pl_interest",    pl_interest_test },
    { "pl_limits",      pl_limits_test },     //  issue 8: STOMP limits
    { "pl_session",     pl_session_test },
    { "pl_wsclient",    pl_wsclient_test },
    { "pl_connection",  pl_connection_test },
    { "pl_unread",      pl_unread_test },
    { "pl_presence",    pl_presence_test },
    { "pl_router",      pl_router_test },
    { "pl_rooms",       pl_rooms_test },
    { "pl_store",       pl_store_test },
    { "pl_persistence", pl_persistence_test },
    { "pl_streams",     pl_streams_test },
    { "pl_floors",      pl_floors_test },
    { "pl_bridge",      pl_bridge_test },
    { "pl_pipeline",    pl_pipeline_test },
};
#define SELFTEST_COUNT (sizeof (s_selftests) / sizeof (s_selftests [0]))

int
main (int argc, char **argv)
{
    zsys_init ();
    zsys_set_logstream (NULL);
    const char *only = argc > 1? argv [1]: NULL;
    if (only && streq (only, "--list")) {
        for (size_t index = 0; index < SELFTEST_COUNT; index++)
            printf ("%s\n", s_selftests [index].name);
        return 0;
    }
    bool found = false;
    for (size_t index = 0; index < SELFTEST_COUNT; index++)
        if (!only || streq (only, s_selftests [index].name)) {
            printf ("running %s\n", s_selftests [index].name);
            fflush (stdout);
            s_selftests [index].test (true);
            found = true;
        }
    if (!found) {
        fprintf (stderr, "parley-selftest: no class named '%s'\n", only);
        return 2;
    }
    printf ("selftests passed\n");
    return 0;
}

//  --------------------------------------------------------------------------
//  All actors but the connection actor in one process over inproc, against
//  real Redis and MongoDB: a fake connection actor sends, receives its
//  RESULT and the DELIVER, and the message ends up in MongoDB once.

static void
pl_pipeline_test (bool verbose)
{
    if (verbose)
        printf (" * pl_pipeline: ");
    const char *redis_url = getenv ("PARLEY_TEST_REDIS_URL");
    const char *mongo_url = getenv ("PARLEY_TEST_MONGO_URL");
    if (!redis_url || !mongo_url) {
        fprintf (stderr, "pl_pipeline_test needs PARLEY_TEST_REDIS_URL and PARLEY_TEST_MONGO_URL\n");
        pl_check (false);
    }
    char unique [17];
    pl_random_hex (unique, 8);
    pl_config_t *config = pl_config_new_default ();
    pl_config_set (config, "redis-url", redis_url);
    pl_config_set (config, "mongo-url", mongo_url);
    char text [64];
    snprintf (text, sizeof text, "parley_pipeline_%s", unique);
    pl_config_set (config, "mongo-db", text);
    snprintf (text, sizeof text, "pipeline%s", unique);
    pl_config_set (config, "key-prefix", text);
    pl_config_set (config, "router-endpoint", "inproc://pl_pipeline-router");
    pl_config_set (config, "bridge-endpoint", "inproc://pl_pipeline-bridge");
    pl_config_set (config, "block-ms", "100");
    pl_config_set (config, "room-id-secret", "pl_pipeline_test");     //  a store needs a key (issue 8)
    pl_check (pl_config_finish (config) == 0);

    //  Any start order works: the bridge binds last
    zactor_t *store = zactor_new (pl_persistence_actor, config);
    zactor_t *router = zactor_new (pl_router_actor, config);
    zactor_t *bridge = zactor_new (pl_bridge_actor, config);

    zsock_t *conn = zsock_new (ZMQ_DEALER);
    zsock_set_identity (conn, "conn-0");
    zsock_set_rcvtimeo (conn, 15000);
    zsock_connect (conn, "inproc://pl_pipeline-router");
    pl_msg_t *message = pl_msg_new (PL_MSG_HELLO);
    pl_msg_set_role (message, "conn");
    pl_msg_send (&message, conn);

    //  Create a room; retry until the store is connected and ready
    char *room_id = NULL;
    while (!room_id) {
        message = pl_msg_new (PL_MSG_QUERY);
        pl_msg_set_operation (message, "room.create");
        pl_msg_set_user (message, "u1");
        const char *body = "{\"kind\":\"direct\",\"members\":[\"u2\"]}";
        pl_msg_set_body (message, body, strlen (body));
        pl_msg_send (&message, conn);
        message = pl_msg_recv_command (conn, PL_MSG_RESULT);
        pl_check (message);
        if (pl_msg_status (message) == 201 || pl_msg_status (message) == 200) {
            const char *id = strstr (pl_msg_body (message), "\"id\":\"");
            pl_check (id);
            room_id = strndup (id + 6, strcspn (id + 6, "\""));
        }
        else
            zclock_sleep (200);
        pl_msg_destroy (&message);
    }
    message = pl_msg_new (PL_MSG_JOIN);
    pl_msg_set_room (message, room_id);
    pl_msg_send (&message, conn);

    //  Send until the bridge's groups exist (a new host starts at the live
    //  end), then count: 100 RESULTs with seq and 100 DELIVERs in order
    int delivered = 0;
    uint64_t last_seq = 0;
    int results = 0;
    for (int index = 0; index < 100; index++) {
        message = pl_msg_new (PL_MSG_SEND);
        pl_msg_set_corr (message, (uint64_t) index + 1);
        pl_msg_set_room (message, room_id);
        pl_msg_set_user (message, "u2");
        pl_msg_set_sender_name (message, "Bob");
        pl_msg_set_type (message, "TALK");
        char cmid [16];
        snprintf (cmid, sizeof cmid, "c%d", index);
        pl_msg_set_cmid (message, cmid);
        pl_msg_set_body (message, "hello", 5);
        pl_msg_send (&message, conn);
    }
    while (results < 100 || delivered < 100) {
        message = pl_msg_recv (conn);
        pl_check (message);
        if (pl_msg_command (message) == PL_MSG_RESULT) {
            pl_check (pl_msg_status (message) == 200);
            results++;
        }
        else
        if (pl_msg_command (message) == PL_MSG_DELIVER && *pl_msg_room (message)) {
            //  (a user event, the room's ROOM_ADDED, has no room)
            pl_check (pl_msg_seq (message) == last_seq + 1);
            last_seq = pl_msg_seq (message);
            delivered++;
        }
        pl_msg_destroy (&message);
    }
    //  Stored once, through ack-after-persist
    pl_store_t *mongo = pl_store_new (mongo_url, config->mongo_db, "majority");
    int64_t deadline = zclock_mono () + 15000;
    while (pl_store_count_messages (mongo, room_id) < 100 && zclock_mono () < deadline)
        zclock_sleep (100);
    pl_check (pl_store_count_messages (mongo, room_id) == 100);
    pl_store_destroy (&mongo);

    free (room_id);
    zsock_destroy (&conn);
    zactor_destroy (&bridge);
    zactor_destroy (&router);
    zactor_destroy (&store);
    pl_config_destroy (&config);
    if (verbose)
        printf ("OK\n");
}
