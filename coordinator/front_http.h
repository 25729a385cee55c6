/*
 * front_http.h — the coordinator's OpenAI-compatible HTTP API
 * (docs/http.md), behind the moe_front interface (front.h).
 *
 * libmicrohttpd without a thread of its own: its epoll descriptor is one
 * of the loop's poll items and MHD_run is called from recv and tick, so
 * every callback runs on the loop's thread.  One HTTP request is one
 * moe_front_client; its n choices are n requests through the sink.  A
 * streaming answer is a chunked text/event-stream fed from a buffer the
 * sends fill (bounded: a client that does not read gets back-pressure);
 * a whole answer waits on a suspended connection until every choice has
 * finished.  A connection that closes before its answer is complete is a
 * client gone: its sequences are released.  Bodies are parsed and answers
 * written by openai.h.
 */
#ifndef MOE_COORD_FRONT_HTTP_H
#define MOE_COORD_FRONT_HTTP_H

#include <stdint.h>

#include "front.h"
#include "request.h"

typedef struct moe_front_http_cfg {
    const char *listen;        /* "HOST:PORT" (PORT 0: any free port) */
    const char *model_name;    /* what /v1/models lists and requests may name */
    const char *api_key;       /* NULL: none; else "Authorization: Bearer KEY" on /v1, /tokenize, /detokenize */
    int64_t max_body;          /* bytes of a request body (413 above) */
    const char *tls_cert, *tls_key; /* PEM files: HTTPS (libmicrohttpd's GnuTLS); NULL: plain HTTP.
                               The key file must not be open to group or others. */
} moe_front_http_cfg;

/* Binds and listens.  model is read on every request (the loop lowers its
 * max_context to the ranks'); it must outlive the front end. */
int moe_front_http_open(moe_front **out, const moe_front_http_cfg *cfg, const moe_request_model *model,
                        const moe_front_sink *sink, moe_err *err);

#endif
