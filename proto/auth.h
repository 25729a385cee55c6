/*
 * auth.h — the ZAP handler (ZeroMQ RFC 27): who may connect to a CURVE
 * link (link.h, moe_link_curve).
 *
 * libzmq asks the handler about every new connection to a CURVE server
 * socket of the context, on inproc://zeromq.zap.01: the socket's ZAP
 * domain, the peer's address and, for CURVE, the client's public key.  The
 * handler (a thread with a REP socket) admits the key if the domain lists
 * it, and refuses everything else: an unknown domain, another mechanism
 * (NULL, PLAIN), a malformed request.  An admitted connection carries the
 * key in Z85 as its User-Id: moe_link_in.user_id of every frame it sends,
 * which is how the coordinator tells clients (and ranks) apart by key.
 *
 *   moe_auth_domain d[2] = {{"client", client_keys, n}, {"worker", &job_key, 1}};
 *   moe_auth_start(&auth, lctx, d, 2, &err);    // before binding the CURVE links
 *   ... moe_link_bind(... o.curve = &cv (cv.zap_domain = "client") ...)
 *   moe_auth_stop(auth);                        // after closing them, before moe_link_ctx_free
 *
 * The lists are copied at start and never change, so the thread shares
 * nothing mutable but its counters.  Refusals are logged (rate-limited)
 * with the domain, the peer's address and the key.
 */
#ifndef MOE_PROTO_AUTH_H
#define MOE_PROTO_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "keyfile.h"
#include "link.h"

typedef struct moe_auth moe_auth;

typedef struct moe_auth_domain {
    const char *name;     /* a link's moe_link_curve.zap_domain */
    const moe_key *keys;  /* [n_keys] public keys admitted */
    size_t n_keys;
} moe_auth_domain;

/* One handler per context (libzmq allows one).  MOE_ERR if one runs. */
int moe_auth_start(moe_auth **out, moe_link_ctx *c, const moe_auth_domain *domains, int n_domains, moe_err *err);
/* Stops and joins the thread; NULL is fine. */
void moe_auth_stop(moe_auth *a);

/* Connections admitted and refused so far (any thread). */
uint64_t moe_auth_admitted(const moe_auth *a);
uint64_t moe_auth_refused(const moe_auth *a);

/* A connecting side's CURVE settings from its two flags (--curve-server-key
 * FILE --curve-secret FILE): both or neither (then *on is false and cv is
 * untouched); the secret file is checked as moe_keyfile_read_secret does. */
int moe_auth_client_curve(moe_link_curve *cv, bool *on, const char *server_key_file, const char *secret_file,
                          moe_err *err);

#endif
