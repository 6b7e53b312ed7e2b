/*  =========================================================================
    pl_token - verify the bearer tokens (JWT) that clients present

    libjwt 1.10 verifies a signature with whatever key it is given, using
    the algorithm the token's own header names. Handed an RS256 public key,
    it will happily check an HS256 token using the PEM text as the HMAC
    secret, which anyone can forge. So we read the header's alg ourselves
    first, pick the key that belongs to that alg (or refuse), and only then
    let libjwt verify. libjwt 1.10 checks no claims either: exp, nbf and
    sub are checked here.
    =========================================================================
*/
#include "pl_token.h"
#include "pl_log.h"
#include "pl_util.h"

#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

//  Clocks of issuer and server may differ this much
//  Clock skew between the token issuer and this host, until configured
#define PL_TOKEN_LEEWAY_DEFAULT_S 30
//  A PEM public key is a few hundred bytes; anything huge is a wrong file
#define PL_TOKEN_KEY_MAX 65536

struct _pl_token_verifier_t {
    char *secret;               //  HS256 secret, NULL if HS256 refused
    size_t secret_size;
    char *public_key;           //  RS256 PEM text, NULL if RS256 refused
    size_t public_key_size;
    int leeway_s;               //  exp and nbf are accepted this far off
};

//  Read a whole (small) file as a NUL-terminated string.
static char *
s_read_file (const char *path, size_t *size_p)
{
    FILE *file = fopen (path, "rb");
    if (!file)
        return NULL;
    char *data = malloc (PL_TOKEN_KEY_MAX + 1);
    size_t size = data? fread (data, 1, PL_TOKEN_KEY_MAX + 1, file): 0;
    bool failed = !data || ferror (file) || size == 0 || size > PL_TOKEN_KEY_MAX;
    fclose (file);
    if (failed) {
        free (data);
        return NULL;
    }
    data [size] = 0;
    *size_p = size;
    return data;
}

pl_token_verifier_t *
pl_token_verifier_new (const char *hs256_secret, const char *rs256_public_key_path)
{
    if (!hs256_secret)
        hs256_secret = "";
    if (!rs256_public_key_path)
        rs256_public_key_path = "";
    if (!*hs256_secret && !*rs256_public_key_path) {
        pl_log_error ("token: neither an HS256 secret nor an RS256 public key is configured");
        return NULL;
    }
    pl_token_verifier_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->leeway_s = PL_TOKEN_LEEWAY_DEFAULT_S;

    if (*hs256_secret) {
        //  libjwt takes key lengths as int
        self->secret_size = strlen (hs256_secret);
        self->secret = self->secret_size < INT_MAX? strdup (hs256_secret): NULL;
        if (!self->secret) {
            pl_log_error ("token: cannot hold the HS256 secret");
            pl_token_verifier_destroy (&self);
            return NULL;
        }
        if (self->secret_size < 32)
            pl_log_warning ("token: HS256 secret is shorter than 32 bytes, tokens can be brute-forced");
    }
    if (*rs256_public_key_path) {
        self->public_key = s_read_file (rs256_public_key_path, &self->public_key_size);
        if (!self->public_key) {
            pl_log_error ("token: cannot read RS256 public key file '%s'", rs256_public_key_path);
            pl_token_verifier_destroy (&self);
            return NULL;
        }
        //  libjwt reads only SubjectPublicKeyInfo PEM; a private key or a
        //  PKCS#1 "RSA PUBLIC KEY" would make every token fail later
        if (!strstr (self->public_key, "-----BEGIN PUBLIC KEY-----")) {
            pl_log_error ("token: '%s' holds no PEM 'PUBLIC KEY' block", rs256_public_key_path);
            pl_token_verifier_destroy (&self);
            return NULL;
        }
    }
    return self;
}

void
pl_token_verifier_set_leeway (pl_token_verifier_t *self, int seconds)
{
    assert (self && seconds >= 0);
    self->leeway_s = seconds;
}

void
pl_token_verifier_destroy (pl_token_verifier_t **self_p)
{
    assert (self_p);
    pl_token_verifier_t *self = *self_p;
    if (!self)
        return;
    if (self->secret) {
        explicit_bzero (self->secret, self->secret_size);
        free (self->secret);
    }
    free (self->public_key);
    free (self);
    *self_p = NULL;
}

static int
s_fail (char *error, size_t error_size, const char *reason)
{
    if (error && error_size)
        snprintf (error, error_size, "%s", reason);
    return -1;
}

//  Strict base64url without padding, as JWS uses. Returns a malloc'd
//  buffer (NUL-terminated for convenience) or NULL if the text is invalid.
static unsigned char *
s_base64url_decode (const char *text, size_t length, size_t *size_p)
{
    if (length % 4 == 1)
        return NULL;
    unsigned char *data = malloc (length * 3 / 4 + 3);
    if (!data)
        return NULL;
    size_t size = 0;
    uint32_t bits = 0;
    int nbits = 0;
    for (size_t index = 0; index < length; index++) {
        char c = text [index];
        int value;
        if (c >= 'A' && c <= 'Z')
            value = c - 'A';
        else
        if (c >= 'a' && c <= 'z')
            value = c - 'a' + 26;
        else
        if (c >= '0' && c <= '9')
            value = c - '0' + 52;
        else
        if (c == '-')
            value = 62;
        else
        if (c == '_')
            value = 63;
        else {
            free (data);
            return NULL;
        }
        bits = (bits << 6) | (uint32_t) value;
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            data [size++] = (unsigned char) (bits >> nbits);
            bits &= (1u << nbits) - 1;
        }
    }
    data [size] = 0;
    *size_p = size;
    return data;
}

//  Read the alg of the token's (unverified) header. Returns 0 and the alg,
//  JWT_ALG_INVAL for any alg we do not accept; -1 if the header is malformed.
static int
s_header_alg (const char *token, jwt_alg_t *alg_p)
{
    const char *dot = strchr (token, '.');
    if (!dot || dot == token)
        return -1;
    size_t size;
    unsigned char *text = s_base64url_decode (token, (size_t) (dot - token), &size);
    if (!text)
        return -1;
    //  Duplicate keys could make us and libjwt read different algs
    json_t *header = json_loadb ((const char *) text, size, JSON_REJECT_DUPLICATES, NULL);
    free (text);
    if (!json_is_object (header)) {
        json_decref (header);
        return -1;
    }
    const char *alg = json_string_value (json_object_get (header, "alg"));
    int rc = alg? 0: -1;
    if (streq_safe (alg, "HS256"))
        *alg_p = JWT_ALG_HS256;
    else
    if (streq_safe (alg, "RS256"))
        *alg_p = JWT_ALG_RS256;
    else
        *alg_p = JWT_ALG_INVAL;
    json_decref (header);
    return rc;
}

//  A JWT NumericDate: seconds since the epoch, integer or not.
static int
s_numeric_date (json_t *value, int64_t *date_p)
{
    if (json_is_integer (value)) {
        *date_p = (int64_t) json_integer_value (value);
        return 0;
    }
    if (json_is_real (value)) {
        double date = json_real_value (value);
        //  Converting an out-of-range double is undefined behaviour
        if (!isfinite (date) || date > 1e15 || date < -1e15)
            return -1;
        *date_p = (int64_t) date;
        return 0;
    }
    return -1;
}

//  A display name: 1..PL_NAME_MAX bytes of UTF-8 (shortest form, no
//  surrogates) without C0, DEL or C1 controls, which could break log
//  lines or forge frames downstream.
static bool
s_name_valid (const char *name, size_t length)
{
    if (!name || length == 0 || length > PL_NAME_MAX)
        return false;
    const unsigned char *bytes = (const unsigned char *) name;
    size_t index = 0;
    while (index < length) {
        unsigned char c = bytes [index];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7F)
                return false;
            index++;
            continue;
        }
        size_t extra;
        uint32_t point;
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
            point = c & 0x1F;
        }
        else
        if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            point = c & 0x0F;
        }
        else
        if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            point = c & 0x07;
        }
        else
            return false;
        if (index + extra >= length)
            return false;
        for (size_t next = 1; next <= extra; next++) {
            unsigned char follow = bytes [index + next];
            if ((follow & 0xC0) != 0x80)
                return false;
            point = (point << 6) | (follow & 0x3F);
        }
        if ((extra == 2 && point < 0x800)
        ||  (extra == 3 && point < 0x10000)
        ||  point > 0x10FFFF
        ||  (point >= 0xD800 && point <= 0xDFFF)
        ||  (point >= 0x80 && point <= 0x9F))
            return false;
        index += extra + 1;
    }
    return true;
}

//  Check the claims of a verified token and fill identity.
static int
s_identity_from_claims (json_t *claims, int leeway_s, pl_identity_t *identity,
                        char *error, size_t error_size)
{
    int64_t now = pl_clock_ms () / 1000;

    json_t *value = json_object_get (claims, "exp");
    int64_t expires;
    if (!value)
        return s_fail (error, error_size, "token has no exp claim");
    if (s_numeric_date (value, &expires))
        return s_fail (error, error_size, "token has an invalid exp claim");
    if (expires <= now - leeway_s)
        return s_fail (error, error_size, "token expired");

    value = json_object_get (claims, "nbf");
    if (value) {
        int64_t not_before;
        if (s_numeric_date (value, &not_before))
            return s_fail (error, error_size, "token has an invalid nbf claim");
        if (not_before > now + leeway_s)
            return s_fail (error, error_size, "token not yet valid");
    }

    value = json_object_get (claims, "sub");
    if (!json_is_string (value)
    ||  !pl_id_valid_n (json_string_value (value), json_string_length (value)))
        return s_fail (error, error_size, "token has no valid sub claim");
    const char *user_id = json_string_value (value);

    //  A null name is as good as none
    value = json_object_get (claims, "name");
    const char *name = user_id;
    if (value && !json_is_null (value)) {
        if (!json_is_string (value)
        ||  !s_name_valid (json_string_value (value), json_string_length (value)))
            return s_fail (error, error_size, "token has an invalid name claim");
        name = json_string_value (value);
    }
    snprintf (identity->user_id, sizeof identity->user_id, "%s", user_id);
    snprintf (identity->name, sizeof identity->name, "%s", name);
    identity->expires = expires;
    return 0;
}

int
pl_token_verify (pl_token_verifier_t *self, const char *token,
                 pl_identity_t *identity, char *error, size_t error_size)
{
    assert (self);
    assert (identity);
    memset (identity, 0, sizeof *identity);
    if (!token)
        return s_fail (error, error_size, "missing token");
    //  As an Authorization header would carry it; the scheme is case-blind
    if (strncasecmp (token, "Bearer ", 7) == 0) {
        token += 7;
        while (*token == ' ')
            token++;
    }
    size_t length = strnlen (token, PL_TOKEN_MAX + 1);
    if (length == 0)
        return s_fail (error, error_size, "missing token");
    if (length > PL_TOKEN_MAX)
        return s_fail (error, error_size, "token too long");

    jwt_alg_t alg;
    if (s_header_alg (token, &alg))
        return s_fail (error, error_size, "malformed token");
    const char *key = NULL;
    size_t key_size = 0;
    if (alg == JWT_ALG_HS256 && self->secret) {
        key = self->secret;
        key_size = self->secret_size;
    }
    else
    if (alg == JWT_ALG_RS256 && self->public_key) {
        key = self->public_key;
        key_size = self->public_key_size;
    }
    else
        return s_fail (error, error_size, "token algorithm not accepted");

    jwt_t *jwt = NULL;
    if (jwt_decode (&jwt, token, (const unsigned char *) key, (int) key_size)) {
        //  Decoding without a key checks only the form, which tells a
        //  forged or mis-keyed token from a mangled one
        jwt_t *unverified = NULL;
        int rc = jwt_decode (&unverified, token, NULL, 0);
        jwt_free (unverified);
        jwt_free (jwt);
        return s_fail (error, error_size, rc == 0? "bad token signature": "malformed token");
    }
    //  libjwt verified with the alg it read; it must be the one we keyed for
    if (jwt_get_alg (jwt) != alg) {
        jwt_free (jwt);
        return s_fail (error, error_size, "token algorithm not accepted");
    }
    char *text = jwt_get_grants_json (jwt, NULL);
    jwt_free (jwt);
    json_t *claims = text? json_loads (text, 0, NULL): NULL;
    free (text);
    if (!json_is_object (claims)) {
        json_decref (claims);
        return s_fail (error, error_size, "malformed token");
    }
    int rc = s_identity_from_claims (claims, self->leeway_s, identity, error, error_size);
    json_decref (claims);
    if (rc)
        memset (identity, 0, sizeof *identity);
    return rc;
}

//  Sign a claims object with libjwt. Returns a malloc'd token or NULL.
static char *
s_encode (jwt_alg_t alg, const char *key, size_t key_size, json_t *claims)
{
    if (key_size > INT_MAX)
        return NULL;
    char *text = json_dumps (claims, JSON_COMPACT);
    if (!text)
        return NULL;
    char *token = NULL;
    jwt_t *jwt = NULL;
    if (jwt_new (&jwt) == 0
    &&  jwt_add_grants_json (jwt, text) == 0
    &&  jwt_set_alg (jwt, alg, (const unsigned char *) key, (int) key_size) == 0)
        token = jwt_encode_str (jwt);
    jwt_free (jwt);
    free (text);
    return token;
}

char *
pl_token_mint_hs256 (const char *secret, const char *user_id, const char *name, int64_t ttl_s)
{
    //  Refuse to mint what the verifier would refuse
    if (!secret || !*secret || !pl_id_valid (user_id)
    ||  (name && !s_name_valid (name, strlen (name))))
        return NULL;
    int64_t now = pl_clock_ms () / 1000;
    if (ttl_s <= 0 || ttl_s > INT64_MAX - now)
        return NULL;
    json_t *claims = json_pack ("{s:s, s:I, s:I}", "sub", user_id,
                                "iat", (json_int_t) now, "exp", (json_int_t) (now + ttl_s));
    if (!claims)
        return NULL;
    if (name && json_object_set_new (claims, "name", json_string (name))) {
        json_decref (claims);
        return NULL;
    }
    char *token = s_encode (JWT_ALG_HS256, secret, strlen (secret), claims);
    json_decref (claims);
    return token;
}


//  --------------------------------------------------------------------------
//  Selftest

#include <unistd.h>

#define SELFTEST_SECRET "parley-selftest-secret-0123456789abcdef"

static bool s_test_verbose = false;

//  Sign claims (JSON text) with any alg and key.
static char *
s_test_sign (jwt_alg_t alg, const char *key, const char *claims_text)
{
    json_t *claims = json_loads (claims_text, 0, NULL);
    pl_check (claims);
    char *token = s_encode (alg, key, key? strlen (key): 0, claims);
    json_decref (claims);
    pl_check (token);
    return token;
}

static char *
s_test_base64url (const char *text)
{
    static const char alphabet [] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t length = strlen (text);
    char *encoded = malloc (length * 4 / 3 + 4);
    pl_check (encoded);
    size_t used = 0;
    uint32_t bits = 0;
    int nbits = 0;
    for (size_t index = 0; index < length; index++) {
        bits = (bits << 8) | (unsigned char) text [index];
        nbits += 8;
        while (nbits >= 6) {
            nbits -= 6;
            encoded [used++] = alphabet [(bits >> nbits) & 63];
        }
    }
    if (nbits)
        encoded [used++] = alphabet [(bits << (6 - nbits)) & 63];
    encoded [used] = 0;
    return encoded;
}

//  Assert a token gives rc, and (when refused) a reason holding reason.
static void
s_test_expect (pl_token_verifier_t *verifier, const char *label, const char *token,
               int expected, const char *reason)
{
    pl_identity_t identity;
    char error [128] = "";
    int rc = pl_token_verify (verifier, token, &identity, error, sizeof error);
    if (s_test_verbose)
        printf ("    %-36s -> %d %s\n", label, rc, rc? error: identity.user_id);
    if (rc != expected || (rc && reason && !strstr (error, reason))) {
        fprintf (stderr, "pl_token: case '%s' gave %d '%s', expected %d '%s'\n",
                 label, rc, error, expected, reason? reason: "");
        pl_check (false);
    }
    if (rc)
        pl_check (identity.user_id [0] == 0);
}

static void
s_test_rs256 (const char *hs_token)
{
    char folder [] = "/tmp/pl_token_XXXXXX";
    if (system ("command -v openssl >/dev/null 2>&1") != 0) {
        //  Tests never skip: bin/parley deps installs openssl
        fprintf (stderr, "pl_token: RS256 tests need the openssl command\n");
        pl_check (false);
    }
    pl_check (mkdtemp (folder));
    char private_path [64], public_path [64], other_path [64], command [512];
    snprintf (private_path, sizeof private_path, "%s/private.pem", folder);
    snprintf (public_path, sizeof public_path, "%s/public.pem", folder);
    snprintf (other_path, sizeof other_path, "%s/other.pem", folder);
    snprintf (command, sizeof command,
              "openssl genrsa -out %s 2048 2>/dev/null"
              " && openssl rsa -in %s -pubout -out %s 2>/dev/null"
              " && openssl genrsa -out %s 2048 2>/dev/null",
              private_path, private_path, public_path, other_path);
    int rc = system (command);
    pl_check (rc == 0);

    size_t size;
    char *private_key = s_read_file (private_path, &size);
    char *public_key = s_read_file (public_path, &size);
    char *other_key = s_read_file (other_path, &size);
    pl_check (private_key && public_key && other_key);

    //  A private key is not a public key file
    pl_check (pl_token_verifier_new ("", private_path) == NULL);

    pl_token_verifier_t *rs = pl_token_verifier_new ("", public_path);
    pl_check (rs);
    pl_token_verifier_t *both = pl_token_verifier_new (SELFTEST_SECRET, public_path);
    pl_check (both);
    pl_token_verifier_t *hs = pl_token_verifier_new (SELFTEST_SECRET, NULL);
    pl_check (hs);

    char claims [128];
    snprintf (claims, sizeof claims, "{\"sub\":\"rsa-user\",\"name\":\"R. S. A.\",\"exp\":%" PRId64 "}",
              pl_clock_ms () / 1000 + 3600);
    char *token = s_test_sign (JWT_ALG_RS256, private_key, claims);
    s_test_expect (rs, "RS256 valid", token, 0, NULL);
    pl_identity_t identity;
    pl_check (pl_token_verify (both, token, &identity, NULL, 0) == 0);
    pl_check (streq_safe (identity.user_id, "rsa-user"));
    pl_check (streq_safe (identity.name, "R. S. A."));
    s_test_expect (hs, "RS256 to HS256-only verifier", token, -1, "algorithm not accepted");
    s_test_expect (both, "HS256 to both-keys verifier", hs_token, 0, NULL);
    s_test_expect (rs, "HS256 to RS256-only verifier", hs_token, -1, "algorithm not accepted");
    free (token);

    token = s_test_sign (JWT_ALG_RS256, other_key, claims);
    s_test_expect (rs, "RS256 signed by another key", token, -1, "bad token signature");
    free (token);

    //  Alg confusion: the public key text used as an HMAC secret
    token = s_test_sign (JWT_ALG_HS256, public_key, claims);
    s_test_expect (rs, "HS256 keyed with RS256 public PEM", token, -1, "algorithm not accepted");
    s_test_expect (both, "same, both-keys verifier", token, -1, "bad token signature");
    free (token);

    pl_token_verifier_destroy (&rs);
    pl_token_verifier_destroy (&both);
    pl_token_verifier_destroy (&hs);
    free (private_key);
    free (public_key);
    free (other_key);
    unlink (private_path);
    unlink (public_path);
    unlink (other_path);
    rmdir (folder);
}

void
pl_token_thread_end (void)
{
    //  libjwt signs and verifies with OpenSSL, which keeps per-thread state
    OPENSSL_thread_stop ();
}

void
pl_token_test (bool verbose)
{
    printf (" * pl_token: ");
    if (verbose)
        printf ("\n");
    s_test_verbose = verbose;
    int64_t now = pl_clock_ms () / 1000;

    //  Construction
    pl_check (pl_token_verifier_new ("", "") == NULL);
    pl_check (pl_token_verifier_new (NULL, NULL) == NULL);
    pl_check (pl_token_verifier_new ("", "/nonexistent/parley.pem") == NULL);
    pl_token_verifier_t *verifier = pl_token_verifier_new (SELFTEST_SECRET, "");
    pl_check (verifier);

    //  Valid, with and without Bearer
    char *token = pl_token_mint_hs256 (SELFTEST_SECRET, "alice", "Alice Ünïcødé 😀", 3600);
    pl_check (token);
    pl_identity_t identity;
    char error [128];
    pl_check (pl_token_verify (verifier, token, &identity, error, sizeof error) == 0);
    pl_check (streq_safe (identity.user_id, "alice"));
    pl_check (streq_safe (identity.name, "Alice Ünïcødé 😀"));
    pl_check (identity.expires >= now + 3600 && identity.expires <= now + 3602);
    s_test_expect (verifier, "HS256 valid", token, 0, NULL);
    char bearer [PL_TOKEN_MAX + 64];
    snprintf (bearer, sizeof bearer, "Bearer %s", token);
    s_test_expect (verifier, "Bearer prefix", bearer, 0, NULL);
    snprintf (bearer, sizeof bearer, "bearer  %s", token);
    s_test_expect (verifier, "bearer prefix, two spaces", bearer, 0, NULL);

    //  Any changed byte before the signature breaks the signature
    char *hs_token = token;
    token = strdup (hs_token);
    pl_check (token);
    size_t signed_length = (size_t) (strrchr (token, '.') - token);
    for (size_t index = 0; index < signed_length; index++) {
        char saved = token [index];
        token [index] = saved == 'A'? 'B': 'A';
        pl_check (pl_token_verify (verifier, token, &identity, error, sizeof error) == -1);
        token [index] = saved;
    }
    //  Cut the signature off
    token [signed_length + 1] = 0;
    s_test_expect (verifier, "signature removed", token, -1, NULL);
    free (token);

    //  Wrong secret
    token = pl_token_mint_hs256 ("some-other-secret-0123456789abcdefgh", "alice", NULL, 3600);
    s_test_expect (verifier, "wrong secret", token, -1, "bad token signature");
    free (token);

    //  Name absent becomes sub
    token = pl_token_mint_hs256 (SELFTEST_SECRET, "bob@example.com", NULL, 60);
    pl_check (pl_token_verify (verifier, token, &identity, error, sizeof error) == 0);
    pl_check (streq_safe (identity.user_id, "bob@example.com"));
    pl_check (streq_safe (identity.name, "bob@example.com"));
    free (token);

    //  Claims, case by case
    struct {
        const char *label;
        const char *claims;
        int rc;
        const char *reason;
    } cases [] = {
        { "expired in 1970",    "{\"sub\":\"a\",\"exp\":1}", -1, "token expired" },
        { "missing exp",        "{\"sub\":\"a\"}", -1, "no exp claim" },
        { "exp a string",       "{\"sub\":\"a\",\"exp\":\"4102444800\"}", -1, "invalid exp" },
        { "exp real",           "{\"sub\":\"a\",\"exp\":4102444800.5}", 0, NULL },
        { "exp huge real",      "{\"sub\":\"a\",\"exp\":1e300}", -1, "invalid exp" },
        { "nbf future",         "{\"sub\":\"a\",\"exp\":4102444800,\"nbf\":4102444000}", -1, "not yet valid" },
        { "nbf past",           "{\"sub\":\"a\",\"exp\":4102444800,\"nbf\":1}", 0, NULL },
        { "nbf a string",       "{\"sub\":\"a\",\"exp\":4102444800,\"nbf\":\"1\"}", -1, "invalid nbf" },
        { "missing sub",        "{\"exp\":4102444800}", -1, "no valid sub" },
        { "sub a/b",            "{\"sub\":\"a/b\",\"exp\":4102444800}", -1, "no valid sub" },
        { "sub empty",          "{\"sub\":\"\",\"exp\":4102444800}", -1, "no valid sub" },
        { "sub a number",       "{\"sub\":42,\"exp\":4102444800}", -1, "no valid sub" },
        { "sub 65 chars",       "{\"sub\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
                                "\"exp\":4102444800}", -1, "no valid sub" },
        { "sub 64 chars",       "{\"sub\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
                                "\"exp\":4102444800}", 0, NULL },
        { "name with newline",  "{\"sub\":\"a\",\"name\":\"x\\ny\",\"exp\":4102444800}", -1, "invalid name" },
        { "name with C1",       "{\"sub\":\"a\",\"name\":\"x\\u0085y\",\"exp\":4102444800}", -1, "invalid name" },
        { "name empty",         "{\"sub\":\"a\",\"name\":\"\",\"exp\":4102444800}", -1, "invalid name" },
        { "name a number",      "{\"sub\":\"a\",\"name\":7,\"exp\":4102444800}", -1, "invalid name" },
        { "name null",          "{\"sub\":\"a\",\"name\":null,\"exp\":4102444800}", 0, NULL },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases [0]; index++) {
        token = s_test_sign (JWT_ALG_HS256, SELFTEST_SECRET, cases [index].claims);
        s_test_expect (verifier, cases [index].label, token, cases [index].rc, cases [index].reason);
        free (token);
    }
    //  Expired beyond the clock skew
    char claims [256];
    snprintf (claims, sizeof claims, "{\"sub\":\"a\",\"exp\":%" PRId64 "}", now - 31);
    token = s_test_sign (JWT_ALG_HS256, SELFTEST_SECRET, claims);
    s_test_expect (verifier, "expired 31 s ago", token, -1, "token expired");
    free (token);
    //  Clock skew: 10 s expired or 10 s early still passes
    snprintf (claims, sizeof claims, "{\"sub\":\"a\",\"exp\":%" PRId64 ",\"nbf\":%" PRId64 "}",
              now - 10, now + 10);
    token = s_test_sign (JWT_ALG_HS256, SELFTEST_SECRET, claims);
    s_test_expect (verifier, "within clock skew", token, 0, NULL);
    free (token);

    //  Names: 128 bytes pass, 129 do not; broken UTF-8 never
    pl_check (s_name_valid ("\xC3\xA9", 2));
    pl_check (!s_name_valid ("\xC3", 1));
    pl_check (!s_name_valid ("\xC0\xAF", 2));             //  overlong
    pl_check (!s_name_valid ("\xED\xA0\x80", 3));         //  surrogate
    pl_check (!s_name_valid ("\xF4\x90\x80\x80", 4));     //  > U+10FFFF
    char name [PL_NAME_MAX + 2];
    memset (name, 'n', sizeof name);
    name [PL_NAME_MAX] = 0;
    token = pl_token_mint_hs256 (SELFTEST_SECRET, "a", name, 60);
    s_test_expect (verifier, "name 128 bytes", token, 0, NULL);
    free (token);
    name [PL_NAME_MAX] = 'n';
    name [PL_NAME_MAX + 1] = 0;
    pl_check (pl_token_mint_hs256 (SELFTEST_SECRET, "a", name, 60) == NULL);
    snprintf (claims, sizeof claims, "{\"sub\":\"a\",\"name\":\"%s\",\"exp\":4102444800}", name);
    token = s_test_sign (JWT_ALG_HS256, SELFTEST_SECRET, claims);
    s_test_expect (verifier, "name 129 bytes", token, -1, "invalid name");
    free (token);

    //  Algorithms: none and anything but HS256/RS256 refused
    const char *none_headers [] = {
        "{\"alg\":\"none\"}", "{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"alg\":\"NONE\"}",
        "{\"alg\":\"HS256\",\"alg\":\"none\"}"
    };
    char *payload = s_test_base64url ("{\"sub\":\"mallory\",\"exp\":4102444800}");
    for (size_t index = 0; index < sizeof none_headers / sizeof none_headers [0]; index++) {
        char *header = s_test_base64url (none_headers [index]);
        char unsigned_token [256];
        snprintf (unsigned_token, sizeof unsigned_token, "%s.%s.", header, payload);
        s_test_expect (verifier, none_headers [index], unsigned_token, -1, NULL);
        snprintf (unsigned_token, sizeof unsigned_token, "%s.%s", header, payload);
        s_test_expect (verifier, "same without last dot", unsigned_token, -1, NULL);
        free (header);
    }
    //  The plain one must be refused for its alg, not by chance
    char *header = s_test_base64url ("{\"alg\":\"none\"}");
    snprintf (claims, sizeof claims, "%s.%s.", header, payload);
    s_test_expect (verifier, "alg none", claims, -1, "algorithm not accepted");
    free (header);
    free (payload);
    token = s_test_sign (JWT_ALG_HS512, SELFTEST_SECRET, "{\"sub\":\"a\",\"exp\":4102444800}");
    s_test_expect (verifier, "HS512", token, -1, "algorithm not accepted");
    free (token);

    //  Garbage
    const char *garbage [] = {
        "", ".", "..", "...", "a.b.c", "a.b", "a", "Bearer ", "Bearer", " ",
        "eyJhbGciOiJIUzI1NiJ9", "eyJhbGciOiJIUzI1NiJ9.", "eyJhbGciOiJIUzI1NiJ9..",
        "eyJhbGciOiJIUzI1NiJ9.e30.", "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.xx",
        "e30.e30.e30", "W10.W10.", "bnVsbA.bnVsbA.", "=.=.=", "eyJhbGciOiJIUzI1NiJ9=.e30.",
        "\xff\xfe.\x01.\x80"
    };
    for (size_t index = 0; index < sizeof garbage / sizeof garbage [0]; index++)
        s_test_expect (verifier, garbage [index], garbage [index], -1, NULL);
    s_test_expect (verifier, "NULL", NULL, -1, "missing token");
    pl_check (pl_token_verify (verifier, "x", &identity, NULL, 0) == -1);

    //  Random bytes and random base64url-ish text
    char random [512];
    const char charset [] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    srand (7);
    for (int round = 0; round < 2000; round++) {
        size_t length = (size_t) (rand () % (int) (sizeof random - 1));
        for (size_t index = 0; index < length; index++) {
            if (round % 2)
                random [index] = (char) (1 + rand () % 255);
            else
                random [index] = charset [rand () % (int) (sizeof charset - 1)];
        }
        random [length] = 0;
        pl_check (pl_token_verify (verifier, random, &identity, error, sizeof error) == -1);
    }

    //  Too long: refused before any decoding
    char *long_token = malloc (PL_TOKEN_MAX + 2);
    pl_check (long_token);
    memset (long_token, 'a', PL_TOKEN_MAX + 1);
    long_token [PL_TOKEN_MAX + 1] = 0;
    s_test_expect (verifier, "8193 bytes", long_token, -1, "token too long");
    free (long_token);

    //  Minting refuses what verification would refuse
    pl_check (pl_token_mint_hs256 ("", "a", NULL, 60) == NULL);
    pl_check (pl_token_mint_hs256 (NULL, "a", NULL, 60) == NULL);
    pl_check (pl_token_mint_hs256 (SELFTEST_SECRET, "a/b", NULL, 60) == NULL);
    pl_check (pl_token_mint_hs256 (SELFTEST_SECRET, NULL, NULL, 60) == NULL);
    pl_check (pl_token_mint_hs256 (SELFTEST_SECRET, "a", "bad\tname", 60) == NULL);
    pl_check (pl_token_mint_hs256 (SELFTEST_SECRET, "a", NULL, 0) == NULL);
    pl_check (pl_token_mint_hs256 (SELFTEST_SECRET, "a", NULL, INT64_MAX) == NULL);

    s_test_rs256 (hs_token);
    free (hs_token);

    pl_token_verifier_destroy (&verifier);
    pl_token_verifier_destroy (&verifier);
    pl_check (verifier == NULL);
    printf ("OK\n");
}
