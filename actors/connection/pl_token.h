/*  =========================================================================
    pl_token - verify the bearer tokens (JWT) that clients present

    A verifier holds the keys of one server: an HS256 secret, an RS256
    public key, or both. A token is accepted only when it is signed with
    the key that belongs to the algorithm its header names (HS256 or RS256,
    nothing else), carries an exp in the future and a sub that is a valid
    user id. The verifier is read-only after construction, so one instance
    may be shared by threads.
    =========================================================================
*/
#ifndef PL_TOKEN_H_INCLUDED
#define PL_TOKEN_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PL_NAME_MAX  128        //  bytes of a display name
#define PL_TOKEN_MAX 8192       //  longer tokens are refused undecoded

typedef struct {
    char user_id [65];          //  claim "sub", satisfies pl_id_valid ()
    char name [PL_NAME_MAX + 1];//  claim "name" (UTF-8, no control chars), else = sub
    int64_t expires;            //  claim "exp", seconds since the epoch
} pl_identity_t;

typedef struct _pl_token_verifier_t pl_token_verifier_t;

//  Create a verifier. hs256_secret may be "" (HS256 tokens then refused);
//  rs256_public_key_path is "" or the path of a PEM "PUBLIC KEY" file, read
//  now. NULL counts as "". Returns NULL, with a logged error, when the key
//  file cannot be read or neither key is configured.
pl_token_verifier_t *
    pl_token_verifier_new (const char *hs256_secret, const char *rs256_public_key_path);

//  Accept exp and nbf this many seconds off (clock skew between the token
//  issuer and this host); 30 until set.
void
    pl_token_verifier_set_leeway (pl_token_verifier_t *self, int seconds);

//  Destroy a verifier, scrubbing its keys. Safe on NULL and twice.
void
    pl_token_verifier_destroy (pl_token_verifier_t **self_p);

//  Verify a token, with or without a "Bearer " prefix. Returns 0 and fills
//  identity when valid; else -1, identity zeroed, and a short reason in
//  error (which may be NULL).
int
    pl_token_verify (pl_token_verifier_t *self, const char *token,
                     pl_identity_t *identity, char *error, size_t error_size);

//  Mint an HS256 token with claims sub, name (left out if NULL), iat and
//  exp = now + ttl_s, for the demo and tests. Returns a string the caller
//  frees, or NULL if secret is empty, user_id or name invalid, or ttl_s
//  is not positive.
char *
    pl_token_mint_hs256 (const char *secret, const char *user_id,
                         const char *name, int64_t ttl_s);

//  Free what the crypto library keeps for the calling thread. A thread
//  that verified tokens calls it before it ends: otherwise the process can
//  exit before the thread's cleanup ran, and leak checkers report it.
void
    pl_token_thread_end (void);

void
    pl_token_test (bool verbose);

#endif
