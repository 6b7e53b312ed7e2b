/*  =========================================================================
    pl_web - the web chat's files, served at / by libwebsockets' own mounts

    The connection actor has a vhost for the web chat's files, apart from
    the one of the API and the WebSocket: pl_gate tells which request is
    a file's (a GET off the API's paths) and the actor adopts its socket
    there. (With a mount on the API's vhost, lws 4.1.6 never delivers a
    request body: every POST hangs. Measured; the files need no body.)
    That vhost's one mount is the folder of `web-root` at "/" (index.html
    for "/"); a file that is not there goes on to the actor's callback,
    which answers 404 in JSON. lws serves the files (content type from the
    name, ETag, cache-control from `web-cache-s`); this class adds the
    headers every file answer carries and closes each connection after its
    file, as every other answer of the actor does (the next request comes
    through pl_gate again).

    With an empty `web-root` there is no files vhost: every path goes to
    the callback, and "/" answers 404 like any unknown path.
    =========================================================================
*/
#ifndef PL_WEB_H_INCLUDED
#define PL_WEB_H_INCLUDED

#include "pl_config.h"

#include <libwebsockets.h>
#include <stdbool.h>

typedef struct _pl_web_t pl_web_t;

//  The mount of config's web-root; callback_protocol (a name of the
//  vhost's protocol list) is asked for a file answer's extra headers and
//  answers what is not a file. Returns NULL when out of memory, or when
//  web-root is set but is not a folder (logged).
pl_web_t *
    pl_web_new (const pl_config_t *config, const char *callback_protocol);

void
    pl_web_destroy (pl_web_t **self_p);

//  The files vhost's mount list (lws keeps the pointer: self must outlive
//  the vhost), or NULL when no web chat is served.
const struct lws_http_mount *
    pl_web_mounts (pl_web_t *self);

//  What lws says about a file it serves: LWS_CALLBACK_ADD_HEADERS (in is
//  its struct lws_process_html_args) and LWS_CALLBACK_HTTP_FILE_COMPLETION.
//  Returns what the callback returns: -1 closes the connection (after a
//  file: every answer closes), 0 goes on.
int
    pl_web_callback (struct lws *wsi, enum lws_callback_reasons reason, void *in);

#endif
