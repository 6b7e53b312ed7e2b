/*  =========================================================================
    fuzz_token - libFuzzer target: the JWT check (pl_token_verify) with a
    fixed HS256 secret

    Input: byte 0 is a mode, the rest the token text. Mode bit 0: sign it
    again first, i.e. replace what follows its last '.' by the HS256
    signature of what precedes it, so that mutated headers and claims get
    past the signature to the checks behind it (random bytes never would).
    Mode bit 1: send it as "Bearer <token>". The seeds are valid tokens.

    Checked: an accepted token yields a valid user id, a clean name and an
    exp not in the past; a refusal says why and leaves the identity zeroed;
    and no token signed with our secret passes under another secret.
    =========================================================================
*/
#include "pl_token.h"
#include "pl_util.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

//  The seeds (tests/fuzz/corpus/token) are signed with this secret
#define SECRET "parley-fuzz-secret-0123456789abcdef"
#define OTHER_SECRET "parley-fuzz-secret-0123456789abcdeF"

static pl_token_verifier_t *s_verifier;
static pl_token_verifier_t *s_other;

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    (void) argc, (void) argv;
    s_verifier = pl_token_verifier_new (SECRET, NULL);
    s_other = pl_token_verifier_new (OTHER_SECRET, NULL);
    pl_check (s_verifier && s_other);
    return 0;
}

//  Append the base64url (no padding) of data to out.
static void
s_base64url (pl_buf_t *out, const unsigned char *data, size_t size)
{
    static const char alphabet [] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (size_t index = 0; index < size; index += 3) {
        uint32_t bits = (uint32_t) data [index] << 16;
        if (index + 1 < size)
            bits |= (uint32_t) data [index + 1] << 8;
        if (index + 2 < size)
            bits |= data [index + 2];
        size_t chars = size - index >= 3? 4: size - index + 1;
        for (size_t at = 0; at < chars; at++)
            pl_check (pl_buf_append (out, &alphabet [(bits >> (18 - 6 * at)) & 63], 1) == 0);
    }
}

//  "header.claims.<anything>" becomes "header.claims.<HS256 signature>";
//  text with one '.' or none is signed whole.
static void
s_sign (pl_buf_t *token, const char *text)
{
    const char *last = strrchr (text, '.');
    size_t signed_size = strlen (text);
    if (last && memchr (text, '.', (size_t) (last - text)))
        signed_size = (size_t) (last - text);
    unsigned char mac [EVP_MAX_MD_SIZE];
    unsigned int mac_size = 0;
    pl_check (HMAC (EVP_sha256 (), SECRET, (int) strlen (SECRET),
                    (const unsigned char *) text, signed_size, mac, &mac_size));
    pl_check (pl_buf_append (token, text, signed_size) == 0);
    pl_check (pl_buf_append (token, ".", 1) == 0);
    s_base64url (token, mac, mac_size);
}

static bool
s_zeroed (const pl_identity_t *identity)
{
    static const pl_identity_t zero;
    return memcmp (identity, &zero, sizeof zero) == 0;
}

static void
s_check_identity (const pl_identity_t *identity)
{
    pl_check (pl_id_valid (identity->user_id));
    size_t length = strnlen (identity->name, sizeof identity->name);
    pl_check (length > 0 && length <= PL_NAME_MAX);
    for (size_t index = 0; index < length; index++) {
        unsigned char c = (unsigned char) identity->name [index];
        pl_check (c >= 0x20 && c != 0x7F);
    }
    //  Accepted within the default leeway of 30 s, with a second's slack
    pl_check (identity->expires > pl_clock_ms () / 1000 - 31);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1 || size > 2 * PL_TOKEN_MAX)
        return 0;
    char *text = strndup ((const char *) data + 1, size - 1);
    pl_check (text);
    pl_buf_t token;
    pl_buf_init (&token);
    if (data [0] & 2)
        pl_check (pl_buf_append (&token, "Bearer ", 7) == 0);
    if (data [0] & 1)
        s_sign (&token, text);
    else
        pl_check (pl_buf_append (&token, text, strlen (text)) == 0);
    pl_check (pl_buf_append (&token, "", 1) == 0);

    pl_identity_t identity;
    char error [128] = "";
    if (pl_token_verify (s_verifier, token.data, &identity, error, sizeof error) == 0)
        s_check_identity (&identity);
    else
        pl_check (*error && s_zeroed (&identity));
    //  Our signature means nothing to a verifier with another secret
    pl_check (pl_token_verify (s_other, token.data, &identity, NULL, 0) == -1);
    pl_check (s_zeroed (&identity));
    pl_buf_free (&token);
    free (text);
    return 0;
}
