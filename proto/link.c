/*
 * link.c — thin, checked wrappers over libzmq (the project's only zmq.h
 * user).  See link.h for what the link guarantees.
 *
 * Framing: a DEALER sends and receives a one-part message, the encoded
 * envelope.  A ROUTER sees [routing id][envelope] and sends the same; no
 * empty delimiter part, since no REQ/REP socket ever takes part.
 */
#include "link.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <zmq.h>

#include "link_impl.h"

struct moe_link {
    moe_link_ctx *ctx;
    void *sock;
    bool router;
    moe_link_opts opts; /* opts.identity points nowhere after creation */
    char endpoint[1024];
};

/* "what: libzmq's reason" into err. */
static int zfail(moe_err *err, const char *what)
{
    int e = zmq_errno();
    return moe_err_set(err, "%s: %s", what, zmq_strerror(e));
}

void moe_link_opts_default(moe_link_opts *o, const ProtobufCMessageDescriptor *recv_type)
{
    memset(o, 0, sizeof *o);
    o->recv_type = recv_type;
    moe_msg_limits_default(&o->limits);
    o->max_wire = 0;
    o->sndhwm = 0;
    o->rcvhwm = 0;
    o->send_timeout_ms = -1;
    o->recv_timeout_ms = -1;
    o->identity = NULL;
    o->router_handover = false;
}

void moe_link_opts_bound_peers(moe_link_opts *o)
{
    size_t wire = o->limits.max_frame + 64 * 1024;
    if (wire < o->limits.max_frame) wire = SIZE_MAX / 2; /* cannot happen with a checked max_frame */
    o->max_wire = wire;
    const size_t per_peer = (size_t)4 << 20;
    size_t hwm = per_peer / wire;
    o->rcvhwm = (int)(hwm < 2 ? 2 : hwm > 1000 ? 1000 : hwm);
}

int moe_link_ctx_init(moe_link_ctx **out, moe_err *err)
{
    *out = NULL;
    void *z = zmq_ctx_new();
    if (!z) return zfail(err, "zmq_ctx_new");
    moe_link_ctx *c = moe_xcalloc(1, sizeof *c);
    c->z = z;
    *out = c;
    return MOE_OK;
}

void moe_link_ctx_free(moe_link_ctx *c)
{
    if (!c) return;
    /* An open socket would make zmq_ctx_term wait forever: a bug, not input. */
    MOE_ASSERT(c->n_links == 0);
    while (zmq_ctx_term(c->z) != 0 && zmq_errno() == EINTR) {
    }
    free(c);
}

static int set_int(void *sock, int opt, int v, const char *name, moe_err *err)
{
    if (zmq_setsockopt(sock, opt, &v, sizeof v) != 0) return zfail(err, name);
    return MOE_OK;
}

static int set_key(void *sock, int opt, const moe_key *k, const char *name, moe_err *err)
{
    if (zmq_setsockopt(sock, opt, k->b, MOE_KEY_BYTES) != 0) return zfail(err, name);
    return MOE_OK;
}

/* CURVE on a socket before it binds or connects (RFC 26): the server
 * needs its secret key and a ZAP domain (every client then goes through
 * the handler), the client its own pair and the server's public key. */
static int set_curve(void *s, bool router, const moe_link_curve *cv, moe_err *err)
{
    if (router) {
        if (set_int(s, ZMQ_CURVE_SERVER, 1, "ZMQ_CURVE_SERVER", err)) return MOE_ERR;
        if (set_key(s, ZMQ_CURVE_SECRETKEY, &cv->secret, "ZMQ_CURVE_SECRETKEY", err)) return MOE_ERR;
        if (zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, cv->zap_domain, strlen(cv->zap_domain)) != 0)
            return zfail(err, "ZMQ_ZAP_DOMAIN");
#ifdef ZMQ_ZAP_ENFORCE_DOMAIN
        /* draft option where present: no handler, no connection */
        (void)zmq_setsockopt(s, ZMQ_ZAP_ENFORCE_DOMAIN, &(int){1}, sizeof(int));
#endif
        return MOE_OK;
    }
    moe_key pub;
    if (moe_link_curve_public(&cv->secret, &pub, err)) return MOE_ERR;
    if (set_key(s, ZMQ_CURVE_SERVERKEY, &cv->server, "ZMQ_CURVE_SERVERKEY", err)) return MOE_ERR;
    if (set_key(s, ZMQ_CURVE_PUBLICKEY, &pub, "ZMQ_CURVE_PUBLICKEY", err)) return MOE_ERR;
    return set_key(s, ZMQ_CURVE_SECRETKEY, &cv->secret, "ZMQ_CURVE_SECRETKEY", err);
}

/* Creates the socket with every option from o; the endpoint is bound or
 * connected by the caller. */
static int link_open(moe_link **out, moe_link_ctx *c, bool router, const moe_link_opts *o, moe_err *err)
{
    *out = NULL;
    if (!o || !o->recv_type) return moe_err_set(err, "link options need the envelope type received");
    if (o->limits.max_frame == 0 || o->limits.max_decode_mem == 0)
        return moe_err_set(err, "link: limits.max_frame and limits.max_decode_mem must be above 0");
    size_t wire = o->max_wire;
    if (wire == 0) {
        /* Room to read (and answer) a frame several times the cap. */
        if (!moe_mul_size(o->limits.max_frame, 4, &wire) || !moe_add_size(wire, 64 * 1024, &wire))
            return moe_err_set(err, "link: limits.max_frame %zu is too large", o->limits.max_frame);
    }
    if (wire <= o->limits.max_frame || wire > (size_t)INT64_MAX)
        return moe_err_set(err, "link: max_wire %zu must be above limits.max_frame %zu", wire, o->limits.max_frame);
    size_t id_len = 0;
    if (o->identity) {
        if (router) return moe_err_set(err, "link: an identity is for a connecting (DEALER) link");
        id_len = strlen(o->identity);
        if (id_len == 0 || id_len > MOE_LINK_PEER_MAX)
            return moe_err_set(err, "link: identity must be 1..%d bytes, not %zu", MOE_LINK_PEER_MAX, id_len);
    }
    if (o->sndhwm < 0 || o->rcvhwm < 0) return moe_err_set(err, "link: negative high-water mark");
    if (o->curve) {
        if (!moe_link_has_curve()) return moe_err_set(err, "link: this libzmq has no CURVE");
        if (router) {
            const size_t d = o->curve->zap_domain ? strlen(o->curve->zap_domain) : 0;
            if (d == 0 || d > 64) return moe_err_set(err, "link: a CURVE server needs a ZAP domain of 1..64 bytes");
            if (!moe_link_ctx_zap_running(c))
                return moe_err_set(err, "link: a CURVE server needs the ZAP handler running (moe_auth_start)");
        }
    }

    void *s = zmq_socket(c->z, router ? ZMQ_ROUTER : ZMQ_DEALER);
    if (!s) return zfail(err, "zmq_socket");
    int64_t maxmsg = (int64_t)wire;
    if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0) {
        zfail(err, "ZMQ_MAXMSGSIZE");
        goto fail;
    }
    if (set_int(s, ZMQ_LINGER, 0, "ZMQ_LINGER", err)) goto fail;
    if (o->sndhwm && set_int(s, ZMQ_SNDHWM, o->sndhwm, "ZMQ_SNDHWM", err)) goto fail;
    if (o->rcvhwm && set_int(s, ZMQ_RCVHWM, o->rcvhwm, "ZMQ_RCVHWM", err)) goto fail;
    if (o->sndbuf && set_int(s, ZMQ_SNDBUF, o->sndbuf, "ZMQ_SNDBUF", err)) goto fail;
    if (o->rcvbuf && set_int(s, ZMQ_RCVBUF, o->rcvbuf, "ZMQ_RCVBUF", err)) goto fail;
    if (set_int(s, ZMQ_SNDTIMEO, o->send_timeout_ms < 0 ? -1 : o->send_timeout_ms, "ZMQ_SNDTIMEO", err)) goto fail;
    if (set_int(s, ZMQ_RCVTIMEO, o->recv_timeout_ms < 0 ? -1 : o->recv_timeout_ms, "ZMQ_RCVTIMEO", err)) goto fail;
    if (router) {
        if (set_int(s, ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY", err)) goto fail;
        if (o->router_handover && set_int(s, ZMQ_ROUTER_HANDOVER, 1, "ZMQ_ROUTER_HANDOVER", err)) goto fail;
    }
    if (o->curve && set_curve(s, router, o->curve, err)) goto fail;
    if (o->identity) {
        /* libzmq reserves routing ids starting with a 0 byte for its own. */
        if (zmq_setsockopt(s, ZMQ_ROUTING_ID, o->identity, id_len) != 0) {
            zfail(err, "ZMQ_ROUTING_ID");
            goto fail;
        }
    }

    moe_link *l = moe_xcalloc(1, sizeof *l);
    l->ctx = c;
    l->sock = s;
    l->router = router;
    l->opts = *o;
    l->opts.identity = NULL;
    l->opts.curve = NULL; /* applied to the socket; the keys are not kept */
    l->opts.max_wire = wire;
    c->n_links++;
    *out = l;
    return MOE_OK;
fail:
    zmq_close(s);
    return MOE_ERR;
}

static void read_endpoint(moe_link *l, const char *fallback)
{
    size_t n = sizeof l->endpoint;
    if (zmq_getsockopt(l->sock, ZMQ_LAST_ENDPOINT, l->endpoint, &n) != 0 || n == 0 || l->endpoint[0] == '\0')
        snprintf(l->endpoint, sizeof l->endpoint, "%s", fallback);
    l->endpoint[sizeof l->endpoint - 1] = '\0';
}

int moe_link_bind(moe_link **out, moe_link_ctx *c, const char *endpoint, const moe_link_opts *o, moe_err *err)
{
    moe_link *l;
    if (link_open(&l, c, true, o, err)) return MOE_ERR;
    if (zmq_bind(l->sock, endpoint) != 0) {
        zfail(err, "bind");
        moe_err_prefix(err, "%s", endpoint);
        moe_link_close(l);
        *out = NULL;
        return MOE_ERR;
    }
    read_endpoint(l, endpoint);
    *out = l;
    return MOE_OK;
}

int moe_link_connect(moe_link **out, moe_link_ctx *c, const char *endpoint, const moe_link_opts *o, moe_err *err)
{
    moe_link *l;
    if (link_open(&l, c, false, o, err)) return MOE_ERR;
    if (zmq_connect(l->sock, endpoint) != 0) {
        zfail(err, "connect");
        moe_err_prefix(err, "%s", endpoint);
        moe_link_close(l);
        *out = NULL;
        return MOE_ERR;
    }
    read_endpoint(l, endpoint);
    *out = l;
    return MOE_OK;
}

void moe_link_close(moe_link *l)
{
    if (!l) return;
    zmq_close(l->sock);
    l->ctx->n_links--;
    free(l);
}

const char *moe_link_endpoint(const moe_link *l) { return l->endpoint; }

int moe_link_port(const moe_link *l)
{
    if (strncmp(l->endpoint, "tcp://", 6) != 0) return -1;
    const char *colon = strrchr(l->endpoint, ':');
    if (!colon) return -1;
    int64_t port;
    if (moe_parse_i64(colon + 1, 1, 65535, &port, NULL)) return -1;
    return (int)port;
}

size_t moe_link_max_frame(const moe_link *l) { return l->opts.limits.max_frame; }

/* ---- sending -------------------------------------------------------------- */

/* Maps a failed zmq send to the link's returns. */
static int send_errno(moe_err *err, const char *what)
{
    int e = zmq_errno();
    if (e == EAGAIN || e == EINTR) {
        moe_err_set(err, "%s: %s", what, e == EAGAIN ? "peer's queue is full (back-pressure)" : "interrupted");
        return MOE_LINK_AGAIN;
    }
    if (e == EHOSTUNREACH) {
        moe_err_set(err, "%s: no connected peer with that identity", what);
        return MOE_LINK_UNREACHABLE;
    }
    moe_err_set(err, "%s: %s", what, zmq_strerror(e));
    return MOE_ERR;
}

/* Sends the routing part (ROUTER) and then the prepared payload; the
 * payload is consumed or closed in every case. */
static int send_frame(moe_link *l, const moe_link_peer *to, zmq_msg_t *payload, int flags, moe_err *err)
{
    int zf = (flags & MOE_LINK_DONTWAIT) ? ZMQ_DONTWAIT : 0;
    if (l->router) {
        if (!to || to->len == 0) {
            zmq_msg_close(payload);
            return moe_err_set(err, "send: a ROUTER link needs the peer to send to");
        }
        /* With ZMQ_ROUTER_MANDATORY an unknown peer or a full queue fails
         * here, on the first part, before anything is queued. */
        if (zmq_send(l->sock, to->id, to->len, zf | ZMQ_SNDMORE) < 0) {
            zmq_msg_close(payload);
            return send_errno(err, "send");
        }
    } else if (to) {
        zmq_msg_close(payload);
        return moe_err_set(err, "send: a DEALER link has one peer; pass NULL");
    }
    if (zmq_msg_send(payload, l->sock, zf) < 0) {
        /* After an accepted first part the rest of a message goes through
         * as a whole; failing here means the socket itself is broken. */
        zmq_msg_close(payload);
        return send_errno(err, "send");
    }
    return MOE_OK;
}

int moe_link_send(moe_link *l, const moe_link_peer *to, const ProtobufCMessage *env, int flags, moe_err *err)
{
    size_t n;
    if (moe_msg_encoded_size(env, l->opts.limits.max_frame, &n, err)) return MOE_ERR;
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, n) != 0) return zfail(err, "zmq_msg_init_size");
    /* Encode straight into the message libzmq will send: no copy. */
    size_t w = protobuf_c_message_pack(env, zmq_msg_data(&m));
    MOE_ASSERT(w == n);
    return send_frame(l, to, &m, flags, err);
}

int moe_link_send_bytes(moe_link *l, const moe_link_peer *to, const void *data, size_t len, int flags, moe_err *err)
{
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, len) != 0) return zfail(err, "zmq_msg_init_size");
    if (len) memcpy(zmq_msg_data(&m), data, len);
    return send_frame(l, to, &m, flags, err);
}

/* ---- receiving ------------------------------------------------------------ */

void moe_link_in_clear(moe_link_in *in)
{
    if (!in) return;
    moe_msg_free(in->msg);
    memset(in, 0, sizeof *in);
}

/* The one place a frame's sender becomes a client (link.h,
 * MOE_LINK_CLIENT_MAX): the CURVE key the ZAP handler authenticated, else
 * the TCP peer's address, else "local".  Metadata comes from the
 * connection, so a client cannot forge it by choosing a routing id. */
static void client_of(zmq_msg_t *m, char *out, size_t cap)
{
    const char *uid = zmq_msg_gets(m, "User-Id");
    const char *addr = zmq_msg_gets(m, "Peer-Address");
    int n;
    if (uid && *uid) n = snprintf(out, cap, "key:%s", uid);
    else if (addr && *addr) n = snprintf(out, cap, "addr:%s", addr);
    else n = snprintf(out, cap, "local");
    if (n < 0) snprintf(out, cap, "local");
    /* printable for the logs; a longer value is cut (a Z85 key is 40 bytes, an address < 64) */
    for (char *p = out; *p; p++)
        if (*p <= 0x20 || *p >= 0x7F) *p = '_';
}

/* Maps a failed zmq receive: nothing waiting or a signal is AGAIN. */
static int recv_errno(moe_err *err)
{
    int e = zmq_errno();
    if (e == EAGAIN || e == EINTR) {
        moe_err_set(err, "recv: %s", e == EAGAIN ? "nothing to receive" : "interrupted");
        return MOE_LINK_AGAIN;
    }
    moe_err_set(err, "recv: %s", zmq_strerror(e));
    return MOE_ERR;
}

static bool more_parts(void *sock)
{
    int more = 0;
    size_t n = sizeof more;
    return zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &n) == 0 && more;
}

int moe_link_recv(moe_link *l, moe_link_in *in, int flags, moe_err *err)
{
    memset(in, 0, sizeof *in);
    int zf = (flags & MOE_LINK_DONTWAIT) ? ZMQ_DONTWAIT : 0;
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, l->sock, zf) < 0) {
        zmq_msg_close(&part);
        return recv_errno(err);
    }
    if (l->router) {
        /* The routing id: at most 255 bytes by ZMTP, checked anyway. */
        size_t n = zmq_msg_size(&part);
        in->from.len = (uint8_t)(n <= MOE_LINK_PEER_MAX ? n : MOE_LINK_PEER_MAX);
        memcpy(in->from.id, zmq_msg_data(&part), in->from.len);
        client_of(&part, in->client, sizeof in->client);
        bool more = more_parts(l->sock);
        zmq_msg_close(&part);
        zmq_msg_init(&part);
        if (!more) {
            /* Cannot come from a peer (libzmq always adds the payload part);
             * reported rather than trusted. */
            in->code = MOE__CODE__MALFORMED_FRAME;
            moe_err_set(err, "frame has no payload");
            zmq_msg_close(&part);
            return MOE_OK;
        }
        /* The parts of one message arrive together: this does not block. */
        if (zmq_msg_recv(&part, l->sock, 0) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&part);
            return moe_err_set(err, "recv: message cut short: %s", zmq_strerror(e));
        }
    }
    in->len = zmq_msg_size(&part);
    /* With a ZAP handler, the sender's User-Id travels as a property of
     * every message of its connection. */
    const char *uid = zmq_msg_gets(&part, "User-Id");
    if (uid) snprintf(in->user_id, sizeof in->user_id, "%s", uid);
    /* the payload carries the connection's metadata (the routing id part
     * the ROUTER makes itself may not) */
    if (l->router) client_of(&part, in->client, sizeof in->client);
    /* One envelope per frame: extra parts are read and dropped so the next
     * receive starts at a message boundary. */
    size_t extra = 0;
    while (more_parts(l->sock)) {
        zmq_msg_t x;
        zmq_msg_init(&x);
        int rc = zmq_msg_recv(&x, l->sock, 0);
        zmq_msg_close(&x);
        if (rc < 0) {
            zmq_msg_close(&part);
            return moe_err_set(err, "recv: message cut short: %s", zmq_strerror(zmq_errno()));
        }
        extra++;
    }
    if (extra) {
        in->code = MOE__CODE__MALFORMED_FRAME;
        moe_err_set(err, "message has %zu parts; one envelope per frame", extra + 1);
        zmq_msg_close(&part);
        return MOE_OK;
    }
    in->code = moe_msg_decode(l->opts.recv_type, zmq_msg_data(&part), in->len, &l->opts.limits, &in->msg, err);
    zmq_msg_close(&part);
    if (in->code == MOE__CODE__OK) in->code = moe_msg_check(in->msg, &l->opts.limits, err);
    return MOE_OK;
}

/* ---- polling ---------------------------------------------------------------- */

int moe_link_poll(moe_link_poll_item *items, int n, int timeout_ms, moe_err *err)
{
    if (n < 0) return moe_err_set(err, "poll: %d items", n);
    zmq_pollitem_t stack[16];
    zmq_pollitem_t *z = n <= 16 ? stack : moe_xcalloc((size_t)n, sizeof *z);
    for (int i = 0; i < n; i++) {
        z[i].socket = items[i].link ? items[i].link->sock : NULL;
        z[i].fd = items[i].link ? 0 : items[i].fd;
        z[i].events = (short)(ZMQ_POLLIN | (items[i].want_out ? ZMQ_POLLOUT : 0));
        z[i].revents = 0;
    }
    int rc = zmq_poll(z, n, timeout_ms < 0 ? -1 : (long)timeout_ms);
    int ret;
    if (rc < 0) {
        /* A signal ends the wait early, as a timeout would: the caller
         * looks at its flags and polls again. */
        ret = zmq_errno() == EINTR ? 0 : zfail(err, "poll");
        rc = 0;
    } else ret = rc;
    for (int i = 0; i < n; i++) {
        items[i].in = rc > 0 && (z[i].revents & ZMQ_POLLIN);
        items[i].out = rc > 0 && (z[i].revents & ZMQ_POLLOUT);
    }
    if (z != stack) free(z);
    return ret;
}

/* ---- helpers ------------------------------------------------------------------ */

int moe_link_endpoint_ipc(char *buf, size_t cap, const char *dir, const char *name, moe_err *err)
{
    struct sockaddr_un sa;
    size_t path = strlen(dir) + 1 + strlen(name);
    if (path >= sizeof sa.sun_path)
        return moe_err_set(err, "ipc path %s/%s is %zu bytes, more than a socket path holds (%zu)", dir, name, path,
                           sizeof sa.sun_path - 1);
    int n = snprintf(buf, cap, "ipc://%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return moe_err_set(err, "ipc endpoint does not fit %zu bytes", cap);
    return MOE_OK;
}

/* ---- CURVE keys ------------------------------------------------------------------ */

bool moe_link_has_curve(void) { return zmq_has("curve") == 1; }

int moe_link_curve_keypair(moe_key *pub, moe_key *sec, moe_err *err)
{
    char zp[41], zs[41];
    if (!moe_link_has_curve()) return moe_err_set(err, "this libzmq has no CURVE");
    if (zmq_curve_keypair(zp, zs) != 0) return zfail(err, "zmq_curve_keypair");
    if (moe_key_from_z85(zp, 40, pub, err) || moe_key_from_z85(zs, 40, sec, err)) return MOE_ERR;
    return MOE_OK;
}

int moe_link_curve_public(const moe_key *sec, moe_key *pub, moe_err *err)
{
    char zs[41], zp[41];
    moe_key_z85(sec, zs);
    if (zmq_curve_public(zp, zs) != 0) return zfail(err, "zmq_curve_public");
    return moe_key_from_z85(zp, 40, pub, err);
}

bool moe_link_peer_eq(const moe_link_peer *a, const moe_link_peer *b)
{
    return a->len == b->len && memcmp(a->id, b->id, a->len) == 0;
}

char *moe_link_peer_hex(const moe_link_peer *p, char *buf)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < p->len; i++) {
        buf[2 * i] = hex[p->id[i] >> 4];
        buf[2 * i + 1] = hex[p->id[i] & 15];
    }
    buf[2 * (size_t)p->len] = '\0';
    return buf;
}
