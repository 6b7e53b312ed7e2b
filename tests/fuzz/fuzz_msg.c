/*  =========================================================================
    fuzz_msg - libFuzzer target: the envelope codec (proto/pl_msg.h)

    Input: any bytes, decoded as one envelope frame. A frame that decodes
    must encode back to exactly the same bytes (the codec has one wire form
    per message, so a peer cannot smuggle what a re-encode would change),
    and so must its copy; one that does not decode must say why.
    =========================================================================
*/
#include "pl_msg.h"
#include "pl_util.h"

#include <string.h>

//  The bytes of a message's encoding equal data.
static bool
s_encodes_to (const pl_msg_t *msg, const uint8_t *data, size_t size)
{
    zframe_t *frame = pl_msg_encode (msg);
    pl_check (frame);
    bool same = zframe_size (frame) == size
             && (size == 0 || memcmp (zframe_data (frame), data, size) == 0);
    zframe_destroy (&frame);
    return same;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    const char *error = NULL;
    pl_msg_t *msg = pl_msg_decode (data, size, &error);
    if (!msg) {
        pl_check (error && *error);
        return 0;
    }
    pl_check (pl_msg_command (msg) > 0 && pl_msg_command (msg) < PL_MSG_COMMAND_LIMIT);
    pl_check (s_encodes_to (msg, data, size));
    pl_msg_t *copy = pl_msg_dup (msg);
    pl_check (s_encodes_to (copy, data, size));
    pl_msg_destroy (&copy);

    //  The log line of any message stays within its buffer, NUL-terminated
    char line [256];
    memset (line, 'x', sizeof line);
    pl_msg_print (msg, line, sizeof line);
    pl_check (memchr (line, 0, sizeof line) != NULL);
    pl_msg_destroy (&msg);
    return 0;
}
