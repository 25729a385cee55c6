/*
 * link.h — the ZMQ link: one envelope per frame over a ROUTER (the side
 * that binds: the coordinator's client front end and worker back end) or a
 * DEALER (the side that connects: clients, worker ranks).  link.c and
 * auth.c (the ZAP handler) are the only files in the project that include
 * zmq.h.
 *
 *   moe_link_ctx *ctx;  moe_link *srv;  moe_link_opts o;  moe_err err;
 *   moe_link_ctx_init(&ctx, &err);
 *   moe_link_opts_default(&o, &moe__client_msg__descriptor);   // what srv receives
 *   moe_link_bind(&srv, ctx, "tcp://127.0.0.1:*", &o, &err);
 *   ...
 *   moe_link_in in;
 *   if (moe_link_recv(srv, &in, MOE_LINK_DONTWAIT, &err) == MOE_OK) {
 *       if (in.code != MOE__CODE__OK)      // oversized, malformed or invalid: err.msg says why
 *           reply with an Error {moe_msg_request_id(in.msg), in.code, err.msg} to &in.from;
 *       else
 *           handle (Moe__ClientMsg *)in.msg;
 *       moe_link_in_clear(&in);
 *   }
 *
 * What the link guarantees:
 *   - Frames are size-capped before decoding (opts.limits.max_frame) and
 *     every field is validated (moe_msg_check) on receipt; a bad frame is
 *     reported through moe_link_in.code and the link keeps working.
 *     ZMQ_MAXMSGSIZE is set to opts.max_wire, above the cap, so a frame a
 *     little too big still arrives and can be answered; only a frame above
 *     max_wire makes libzmq drop that connection (protecting memory).
 *   - A ROUTER refuses to drop: sending to a peer that is gone (or never
 *     was) returns MOE_LINK_UNREACHABLE (ZMQ_ROUTER_MANDATORY); a peer
 *     whose queue is at its high-water mark makes a MOE_LINK_DONTWAIT send
 *     return MOE_LINK_AGAIN (back-pressure) and a blocking send wait.
 *   - Linger is 0: closing a link never blocks on unsent messages.
 *   - Nothing aborts: failures are MOE_ERR with a message.
 *
 * ZMQ gives no notice when a peer disconnects: liveness is the protocol's
 * heartbeats.  A link (like a ZMQ socket) must be used by one thread at a
 * time.
 */
#ifndef MOE_PROTO_LINK_H
#define MOE_PROTO_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "keyfile.h"
#include "msg.h"

typedef struct moe_link_ctx moe_link_ctx;
typedef struct moe_link moe_link;

/* Returns besides MOE_OK / MOE_ERR. */
enum {
    MOE_LINK_AGAIN = 1,       /* nothing sent / received now: would block, send timeout, or a signal */
    MOE_LINK_UNREACHABLE = 2, /* ROUTER send: no connected peer has that identity */
};

/* Flags of send and recv. */
enum { MOE_LINK_DONTWAIT = 1 };

/* A ROUTER's name for one connected peer (its ZMQ routing id). */
#define MOE_LINK_PEER_MAX 255
typedef struct moe_link_peer {
    uint8_t len;
    uint8_t id[MOE_LINK_PEER_MAX];
} moe_link_peer;

/* CURVE (ZeroMQ RFC 26): the link authenticated and encrypted.  A
 * binding link is the CURVE server: its clients are checked by the ZAP
 * handler (auth.h) in zap_domain, and a binding link with CURVE refuses to
 * open unless a handler runs (moe_auth_start), so no client goes
 * unchecked.  A connecting link is a CURVE client of the server's key. */
typedef struct moe_link_curve {
    moe_key secret;         /* this side's secret key (the public one is derived from it) */
    moe_key server;         /* connecting link: the server's public key */
    const char *zap_domain; /* binding link: the ZAP domain (auth.h), 1..64 bytes; copied */
} moe_link_curve;

typedef struct moe_link_opts {
    const ProtobufCMessageDescriptor *recv_type; /* envelope received, e.g. &moe__client_msg__descriptor */
    moe_msg_limits limits;  /* for received frames; limits.max_frame also caps what moe_link_send encodes */
    size_t max_wire;        /* ZMQ_MAXMSGSIZE; 0: 4 x limits.max_frame + 64 KiB (moe_link_opts_bound_peers: + 64 KiB) */
    int sndhwm, rcvhwm;     /* high-water marks in messages; 0: libzmq's default (1000) */
    int sndbuf, rcvbuf;     /* kernel socket buffers in bytes; 0: the system's default.  Small
                               values make back-pressure show early (tests). */
    int send_timeout_ms;    /* a blocking send gives up after this (MOE_LINK_AGAIN); -1: waits (default) */
    int recv_timeout_ms;    /* a blocking receive gives up after this (MOE_LINK_AGAIN); -1: waits (default) */
    const char *identity;   /* DEALER: routing id the ROUTER sees (1..255 bytes, not starting with a 0 byte);
                               NULL: the ROUTER makes one up.  Copied. */
    bool router_handover;   /* ROUTER: a new connection with an identity in use takes it over (a
                               restarted worker rank); off: the newcomer is refused (default) */
    const moe_link_curve *curve; /* NULL: no CURVE (plain ZMTP, default); copied */
} moe_link_opts;

/* Defaults: moe_msg_limits_default, max_wire 0, libzmq's HWMs, blocking sends and receives wait. */
/* What a ROUTER that takes frames from strangers sets (the client front
 * end): max_wire = max_frame + 64 KiB, so a frame a little too big is still
 * answered and one far too big drops its connection, and a receive HWM of
 * at most 4 MiB / max_wire messages (at least 2, at most 1000), so one
 * peer's queue inside libzmq holds a few MiB, not 1000 frames. */
void moe_link_opts_bound_peers(moe_link_opts *o);
void moe_link_opts_default(moe_link_opts *o, const ProtobufCMessageDescriptor *recv_type);

/* One per process (it owns libzmq's I/O thread).  Free it after every link
 * made from it is closed. */
int moe_link_ctx_init(moe_link_ctx **out, moe_err *err);
void moe_link_ctx_free(moe_link_ctx *c);

/* A ROUTER bound to endpoint ("tcp://127.0.0.1:5555", "tcp://127.0.0.1:*",
 * "ipc:///path").  With a wildcard port, moe_link_endpoint tells the real one. */
int moe_link_bind(moe_link **out, moe_link_ctx *c, const char *endpoint, const moe_link_opts *o, moe_err *err);
/* A DEALER connecting to endpoint.  Connecting is asynchronous: messages
 * sent before the ROUTER is there are queued (up to sndhwm), not lost. */
int moe_link_connect(moe_link **out, moe_link_ctx *c, const char *endpoint, const moe_link_opts *o, moe_err *err);
void moe_link_close(moe_link *l); /* NULL is fine */

/* The endpoint as libzmq reports it (wildcards resolved): pass it to connect. */
const char *moe_link_endpoint(const moe_link *l);
/* The TCP port of a tcp:// endpoint, -1 otherwise. */
int moe_link_port(const moe_link *l);
/* The largest frame moe_link_send encodes (opts.limits.max_frame). */
size_t moe_link_max_frame(const moe_link *l);

/* Sends one envelope (encoded here; refused above limits.max_frame).  to:
 * the peer on a ROUTER, NULL on a DEALER.  MOE_OK, MOE_LINK_AGAIN,
 * MOE_LINK_UNREACHABLE or MOE_ERR (nothing was sent unless MOE_OK). */
int moe_link_send(moe_link *l, const moe_link_peer *to, const ProtobufCMessage *env, int flags, moe_err *err);
/* Sends raw bytes as one frame, unchecked (tests, relays).  Same returns. */
int moe_link_send_bytes(moe_link *l, const moe_link_peer *to, const void *data, size_t len, int flags,
                        moe_err *err);

#define MOE_LINK_USER_MAX 64

/* Who sent a frame, for per-client limits: never the routing id, which
 * costs nothing to mint.  "key:<Z85>" when the connection authenticated
 * with CURVE (the ZAP handler's User-Id), else "addr:<IP>" for TCP (the
 * peer's address, no port), else "local" (ipc://, inproc://). */
#define MOE_LINK_CLIENT_MAX 96

/* One received frame. */
typedef struct moe_link_in {
    moe_link_peer from;    /* ROUTER: the sender, to answer with moe_link_send; DEALER: empty */
    char client[MOE_LINK_CLIENT_MAX]; /* ROUTER: the sender as a client (above); DEALER: empty */
    size_t len;            /* bytes of the frame */
    int code;              /* MOE__CODE__OK, or why it was refused (OVERSIZED_FRAME,
                              MALFORMED_FRAME, or a field check's code); reason in err */
    ProtobufCMessage *msg; /* the decoded envelope (of opts.recv_type), also when a field check
                              failed so its request id can be echoed; NULL if it did not decode */
    char user_id[MOE_LINK_USER_MAX + 1]; /* the sender's User-Id from the ZAP handler (with
                              CURVE: its public key in Z85, auth.h); "" without one */
} moe_link_in;

/* Receives one frame: MOE_OK (look at in->code), MOE_LINK_AGAIN (nothing
 * waiting with MOE_LINK_DONTWAIT, opts.recv_timeout_ms passed, or a
 * signal) or MOE_ERR.  A frame of
 * several parts is consumed whole and reported as MALFORMED_FRAME.
 * Release in with moe_link_in_clear. */
int moe_link_recv(moe_link *l, moe_link_in *in, int flags, moe_err *err);
void moe_link_in_clear(moe_link_in *in);

/* Waiting on several links (and plain file descriptors, e.g. a listening
 * HTTP socket or a signal pipe). */
typedef struct moe_link_poll_item {
    moe_link *link;  /* or NULL, and then fd */
    int fd;
    bool want_out;   /* also wake when it can send; a ROUTER is always
                        writable as a whole, per-peer back-pressure shows only as MOE_LINK_AGAIN */
    bool in, out;    /* results */
} moe_link_poll_item;

/* Waits up to timeout_ms (-1: no limit, 0: just look) until an item is
 * ready; returns how many are (0: timeout or a signal) or MOE_ERR. */
int moe_link_poll(moe_link_poll_item *items, int n, int timeout_ms, moe_err *err);

/* Endpoint helpers for tests and local runs. */
#define MOE_LINK_TCP_LOOPBACK_ANY "tcp://127.0.0.1:*"
/* "ipc://<dir>/<name>" into buf; MOE_ERR if it does not fit buf or the
 * socket path limit (sun_path, 107 bytes). */
int moe_link_endpoint_ipc(char *buf, size_t cap, const char *dir, const char *name, moe_err *err);

/* CURVE keys (libzmq's generator; false where libzmq has no CURVE). */
bool moe_link_has_curve(void);
int moe_link_curve_keypair(moe_key *pub, moe_key *sec, moe_err *err);
int moe_link_curve_public(const moe_key *sec, moe_key *pub, moe_err *err);

bool moe_link_peer_eq(const moe_link_peer *a, const moe_link_peer *b);
/* Hex of the identity for logs, into buf of at least 2 x MOE_LINK_PEER_MAX + 1 bytes; returns buf. */
char *moe_link_peer_hex(const moe_link_peer *p, char *buf);

#endif
