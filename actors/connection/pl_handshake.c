/*  =========================================================================
    pl_handshake - what a STOMP CONNECT settles: the protocol version, the
    heart-beat intervals each way, and who the client is
    =========================================================================
*/
#include "pl_handshake.h"
#include "pl_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Highest version both sides speak. accept-version absent means 1.0, or
//  the subprotocol's version when the client picked one.
static int
s_negotiate_version (const char *accept_version, int subprotocol)
{
    if (!accept_version)
        return subprotocol? subprotocol: 10;
    int best = 0;
    const char *at = accept_version;
    while (*at) {
        while (*at == ' ' || *at == ',')
            at++;
        size_t length = strcspn (at, ", ");
        int version = 0;
        if (length == 3 && strncmp (at, "1.2", 3) == 0)
            version = 12;
        else
        if (length == 3 && strncmp (at, "1.1", 3) == 0)
            version = 11;
        else
        if (length == 3 && strncmp (at, "1.0", 3) == 0)
            version = 10;
        if (version > best)
            best = version;
        at += length;
    }
    return best;
}

//  "cx,cy" -> two numbers; 0 / -1
static int
s_parse_heart_beat (const char *text, int *cx, int *cy)
{
    *cx = *cy = 0;
    if (!text)
        return 0;
    long a = 0, b = 0;
    int used = 0;
    if (sscanf (text, " %ld , %ld %n", &a, &b, &used) != 2 || text [used] != 0
    ||  a < 0 || b < 0 || a > 86400000 || b > 86400000)
        return -1;
    *cx = (int) a;
    *cy = (int) b;
    return 0;
}

//  The token of a CONNECT, verified into identity. Returns 0 / -1.
static int
s_authenticate (pl_handshake_t *self, const pl_stomp_frame_t *frame,
                pl_token_verifier_t *verifier, char *message, size_t size)
{
    const char *token = pl_stomp_frame_header (frame, "Authorization");
    if (!token)
        token = pl_stomp_frame_header (frame, "authorization");
    if (!token)
        token = pl_stomp_frame_header (frame, "passcode");
    if (!token || !*token) {
        snprintf (message, size, "authentication failed: no token (send Authorization: Bearer <jwt>)");
        return -1;
    }
    char reason [128] = "";
    if (pl_token_verify (verifier, token, &self->identity, reason, sizeof reason)) {
        snprintf (message, size, "authentication failed: %s", *reason? reason: "invalid token");
        return -1;
    }
    return 0;
}

int
pl_handshake_settle (pl_handshake_t *self, const pl_stomp_frame_t *frame, int subprotocol,
                     int heartbeat_ms, pl_token_verifier_t *verifier,
                     char *message, size_t size)
{
    memset (self, 0, sizeof *self);
    self->version = s_negotiate_version (pl_stomp_frame_header (frame, "accept-version"),
                                         subprotocol);
    if (self->version == 0) {
        snprintf (message, size, "supported protocol versions are 1.0 1.1 1.2");
        return -1;
    }
    int cx, cy;
    if (s_parse_heart_beat (pl_stomp_frame_header (frame, "heart-beat"), &cx, &cy)) {
        snprintf (message, size, "bad heart-beat header");
        return -1;
    }
    if (s_authenticate (self, frame, verifier, message, size))
        return -1;
    int sx = heartbeat_ms, sy = heartbeat_ms;
    self->out_interval_ms = (sx && cy)? (sx > cy? sx: cy): 0;
    self->in_interval_ms = (cx && sy)? (cx > sy? cx: sy): 0;
    return 0;
}


//  --------------------------------------------------------------------------
//  Selftest

#define TEST_SECRET "pl_handshake_test-secret-of-32-bytes-or-more"

//  Settle a CONNECT with these headers (NULL: absent); the message or ""
static int
s_test_settle (pl_handshake_t *handshake, pl_token_verifier_t *verifier, int subprotocol,
               const char *accept, const char *heart_beat, const char *token_header,
               const char *token, char *message)
{
    pl_stomp_header_t headers [3];
    size_t count = 0;
    if (accept)
        headers [count++] = (pl_stomp_header_t) { "accept-version", (char *) accept };
    if (heart_beat)
        headers [count++] = (pl_stomp_header_t) { "heart-beat", (char *) heart_beat };
    if (token_header)
        headers [count++] = (pl_stomp_header_t) { (char *) token_header, (char *) token };
    pl_stomp_frame_t frame = { PL_STOMP_CONNECT, "CONNECT", headers, count, "", 0 };
    *message = 0;
    return pl_handshake_settle (handshake, &frame, subprotocol, 300, verifier, message, 200);
}

void
pl_handshake_test (bool verbose)
{
    printf (" * pl_handshake: ");
    if (verbose)
        printf ("\n");
    pl_token_verifier_t *verifier = pl_token_verifier_new (TEST_SECRET, NULL);
    pl_check (verifier);
    char *token = pl_token_mint_hs256 (TEST_SECRET, "u1", "Alice", 3600);
    pl_check (token);
    char bearer [PL_TOKEN_MAX + 16];
    snprintf (bearer, sizeof bearer, "Bearer %s", token);
    pl_handshake_t handshake;
    char message [200];

    //  Versions: the highest both speak, else the subprotocol's, else 1.0
    const struct { int subprotocol; const char *accept; int version; } versions [] = {
        { 12, NULL, 12 }, { 11, NULL, 11 }, { 0, NULL, 10 }, { 12, "1.0,1.1", 11 },
        { 0, " 1.2 , 1.0", 12 }, { 10, "1.1,1.3", 11 }, { 12, "2.0", 0 }, { 12, "", 0 }
    };
    for (size_t index = 0; index < sizeof versions / sizeof versions [0]; index++) {
        int rc = s_test_settle (&handshake, verifier, versions [index].subprotocol,
                                versions [index].accept, NULL, "passcode", token, message);
        if (versions [index].version) {
            pl_check (rc == 0 && handshake.version == versions [index].version);
            pl_check (strcmp (handshake.identity.user_id, "u1") == 0);
            pl_check (strcmp (handshake.identity.name, "Alice") == 0);
        }
        else
            pl_check (rc == -1 && strcmp (message, "supported protocol versions are 1.0 1.1 1.2") == 0);
    }
    //  Heart-beats: the larger wish each way, none when either says 0
    const struct { const char *text; int out, in; } beats [] = {
        { NULL, 0, 0 }, { "0,0", 0, 0 }, { "500,100", 300, 500 }, { " 100 , 1000 ", 1000, 300 },
        { "0,50", 300, 0 }, { "x", -1, -1 }, { "1,2,3", -1, -1 }, { "-1,0", -1, -1 },
        { "86400001,0", -1, -1 }
    };
    for (size_t index = 0; index < sizeof beats / sizeof beats [0]; index++) {
        int rc = s_test_settle (&handshake, verifier, 12, "1.2", beats [index].text,
                                "Authorization", bearer, message);
        if (beats [index].out >= 0)
            pl_check (rc == 0 && handshake.out_interval_ms == beats [index].out
                                && handshake.in_interval_ms == beats [index].in);
        else
            pl_check (rc == -1 && strcmp (message, "bad heart-beat header") == 0);
    }
    //  Tokens: in Authorization, authorization or passcode, and valid
    pl_check (s_test_settle (&handshake, verifier, 12, NULL, NULL, "authorization", bearer, message) == 0);
    pl_check (s_test_settle (&handshake, verifier, 12, NULL, NULL, NULL, NULL, message) == -1);
    pl_check (strcmp (message, "authentication failed: no token (send Authorization: Bearer <jwt>)") == 0);
    pl_check (s_test_settle (&handshake, verifier, 12, NULL, NULL, "passcode", "", message) == -1);
    pl_check (strncmp (message, "authentication failed: no token", 31) == 0);
    pl_check (s_test_settle (&handshake, verifier, 12, NULL, NULL, "login", token, message) == -1);
    pl_check (s_test_settle (&handshake, verifier, 12, NULL, NULL, "passcode", "x.y.z", message) == -1);
    pl_check (strncmp (message, "authentication failed: ", 23) == 0 && strlen (message) > 23);
    pl_check (!*handshake.identity.user_id);

    free (token);
    pl_token_verifier_destroy (&verifier);
    pl_token_thread_end ();
    printf ("OK\n");
}
