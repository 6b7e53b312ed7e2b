/*  =========================================================================
    pl_web - the web chat's files, served at / by libwebsockets' own mounts

    lws glue only: which paths are files, and the headers of a file answer.
    =========================================================================
*/
#include "pl_web.h"
#include "pl_log.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

//  What lws would guess wrong or not at all. Its own table knows .html,
//  .css, .js, .png, .ico, .svg and a few more; module scripts and source
//  maps must not be served as application/octet-stream.
static const struct lws_protocol_vhost_options s_mime_map = {
    NULL, NULL, ".map", "application/json"
};
static const struct lws_protocol_vhost_options s_mime_mjs = {
    &s_mime_map, NULL, ".mjs", "text/javascript"
};

//  Headers of every file answer: what the page may load (only its own
//  files, and its own WebSocket), no sniffing, no framing, no referrer.
//  Every answer of this actor closes its connection (see pl_web.h).
static const char *s_file_headers [][2] = {
    { "content-security-policy:",
      "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
      "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'" },
    { "x-content-type-options:", "nosniff" },
    { "referrer-policy:", "no-referrer" },
    { "connection:", "close" }
};
#define FILE_HEADERS (sizeof s_file_headers / sizeof s_file_headers [0])

struct _pl_web_t {
    char *root;                             //  web-root, resolved
    struct lws_http_mount files;            //  "/"
};

pl_web_t *
pl_web_new (const pl_config_t *config, const char *callback_protocol)
{
    assert (config);
    assert (callback_protocol);
    //  The actor's callback adds the headers of every file answer
    pl_web_t *self = (pl_web_t *) calloc (1, sizeof (pl_web_t));
    if (!self || !*config->web_root)
        return self;
    self->root = realpath (config->web_root, NULL);
    struct stat status;
    if (!self->root || stat (self->root, &status) || !S_ISDIR (status.st_mode)) {
        pl_log_error ("web-root %s is not a folder", config->web_root);
        pl_web_destroy (&self);
        return NULL;
    }
    //  A file that is not there goes on to the vhost's first protocol,
    //  the actor's callback: a JSON 404 like any unknown path
    self->files = (struct lws_http_mount) {
        .mountpoint = "/", .mountpoint_len = 1,
        .origin = self->root, .def = "index.html",
        .origin_protocol = LWSMPRO_FILE,
        //  lws asks this protocol for a file answer's extra headers
        .protocol = callback_protocol,
        .extra_mimetypes = &s_mime_mjs,
        //  ETag on every file; a browser asks again after web-cache-s
        //  and gets a 304 while the file is the same (0: lws says
        //  no-store, the browser fetches every time)
        .cache_max_age = config->web_cache_s,
        .cache_reusable = 1, .cache_revalidate = 1
    };
    return self;
}

void
pl_web_destroy (pl_web_t **self_p)
{
    assert (self_p);
    pl_web_t *self = *self_p;
    if (!self)
        return;
    free (self->root);
    free (self);
    *self_p = NULL;
}

const struct lws_http_mount *
pl_web_mounts (pl_web_t *self)
{
    assert (self);
    return self->root? &self->files: NULL;
}

//  LWS_CALLBACK_ADD_HEADERS: in is the room left in lws's header buffer
static int
s_add_headers (struct lws *wsi, struct lws_process_html_args *args)
{
    unsigned char *p = (unsigned char *) args->p;
    unsigned char *end = p + args->max_len;
    for (size_t index = 0; index < FILE_HEADERS; index++) {
        const char *value = s_file_headers [index][1];
        if (lws_add_http_header_by_name (wsi, (const unsigned char *) s_file_headers [index][0],
                                         (const unsigned char *) value, (int) strlen (value), &p, end))
            return -1;
    }
    args->max_len -= (int) (p - (unsigned char *) args->p);
    args->p = (char *) p;
    return 0;
}

int
pl_web_callback (struct lws *wsi, enum lws_callback_reasons reason, void *in)
{
    //  lws asks for extra headers of a WebSocket's 101 too: none there
    if (reason == LWS_CALLBACK_ADD_HEADERS)
        return lws_hdr_total_length (wsi, WSI_TOKEN_UPGRADE)? 0:
               s_add_headers (wsi, (struct lws_process_html_args *) in);
    //  LWS_CALLBACK_HTTP_FILE_COMPLETION: the file is out, close as every
    //  answer does
    return -1;
}
