/*
 * auth.c — the ZAP handler (see auth.h).  One of the two files that
 * include zmq.h (with link.c).
 *
 * A ZAP request (RFC 27) is the frames: version "1.0", request id, domain,
 * address, routing id, mechanism, then the mechanism's credentials (CURVE:
 * one frame, the client's 32-byte public key).  The reply: version,
 * request id, status code ("200" admits; "400" refuses; "500" is the
 * handler's own failure), status text, user id, metadata (empty).
 */
#include "auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "link_impl.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_MAX_PARTS 8        /* version .. one credential, and one more to notice extra frames */

typedef struct auth_domain {
    char name[65];
    moe_key *keys;
    size_t n_keys;
} auth_domain;

struct moe_auth {
    moe_link_ctx *c;
    void *rep;
    void *stop_tx, *stop_rx;   /* an inproc PAIR: moe_auth_stop wakes the thread (no polling while idle) */
    pthread_t th;
    atomic_uint_fast64_t admitted, refused;
    auth_domain *d;
    int n;
};

typedef struct zap_req {
    zmq_msg_t part[ZAP_MAX_PARTS];
    int n;                     /* parts kept */
    bool more;                 /* there were more than ZAP_MAX_PARTS */
} zap_req;

static bool part_is(const zmq_msg_t *m, const char *s)
{
    const size_t n = strlen(s);
    return zmq_msg_size((zmq_msg_t *)m) == n && memcmp(zmq_msg_data((zmq_msg_t *)m), s, n) == 0;
}

/* A part as a printable, bounded C string (for logs and lookups). */
static void part_str(const zmq_msg_t *m, char *buf, size_t cap)
{
    size_t n = zmq_msg_size((zmq_msg_t *)m);
    const unsigned char *p = zmq_msg_data((zmq_msg_t *)m);
    if (n >= cap) n = cap - 1;
    for (size_t i = 0; i < n; i++) buf[i] = p[i] >= 0x20 && p[i] < 0x7F ? (char)p[i] : '?';
    buf[n] = '\0';
}

static void send_reply(moe_auth *a, const zmq_msg_t *req_id, const char *code, const char *text, const char *user)
{
    zmq_msg_t id;
    zmq_msg_init(&id);
    if (req_id) zmq_msg_copy(&id, (zmq_msg_t *)req_id);
    /* a REP socket sends its reply whole or not at all; a failure here
     * (the context ending) leaves libzmq to refuse the connection */
    if (zmq_send(a->rep, "1.0", 3, ZMQ_SNDMORE) < 0 || zmq_msg_send(&id, a->rep, ZMQ_SNDMORE) < 0 ||
        zmq_send(a->rep, code, strlen(code), ZMQ_SNDMORE) < 0 ||
        zmq_send(a->rep, text, strlen(text), ZMQ_SNDMORE) < 0 ||
        zmq_send(a->rep, user, strlen(user), ZMQ_SNDMORE) < 0 || zmq_send(a->rep, "", 0, 0) < 0)
        MOE_LOG_LIMITED(MOE_LOG_WARN, "auth: sending a ZAP reply failed: %s", zmq_strerror(zmq_errno()));
    zmq_msg_close(&id);
}

static const auth_domain *find_domain(const moe_auth *a, const zmq_msg_t *m)
{
    for (int i = 0; i < a->n; i++)
        if (part_is(m, a->d[i].name)) return &a->d[i];
    return NULL;
}

/* Answers one request (all its parts received). */
static void handle(moe_auth *a, const zap_req *r)
{
    char domain[65] = "?", address[64] = "?";
    if (r->n >= 3) part_str(&r->part[2], domain, sizeof domain);
    if (r->n >= 4) part_str(&r->part[3], address, sizeof address);
    const zmq_msg_t *req_id = r->n >= 2 ? &r->part[1] : NULL;
    const char *why = NULL;
    const auth_domain *d = NULL;
    if (r->n < 6 || r->more || !part_is(&r->part[0], "1.0")) why = "a malformed ZAP request";
    else if (!(d = find_domain(a, &r->part[2]))) why = "no keys for this ZAP domain";
    else if (!part_is(&r->part[5], "CURVE")) why = "the connection is not CURVE (the client gave no key)";
    else if (r->n != 7 || zmq_msg_size((zmq_msg_t *)&r->part[6]) != MOE_KEY_BYTES) why = "a malformed CURVE key";
    if (!why) {
        moe_key k;
        memcpy(k.b, zmq_msg_data((zmq_msg_t *)&r->part[6]), MOE_KEY_BYTES);
        for (size_t i = 0; i < d->n_keys; i++) {
            if (memcmp(d->keys[i].b, k.b, MOE_KEY_BYTES) != 0) continue;
            char z[MOE_KEY_Z85_LEN + 1];
            moe_key_z85(&k, z);
            atomic_fetch_add(&a->admitted, 1);
            send_reply(a, req_id, "200", "OK", z);
            return;
        }
        why = "its key is not listed";
    }
    atomic_fetch_add(&a->refused, 1);
    /* no key in the line: a flood of made-up keys stays one line a minute */
    MOE_LOG_LIMITED(MOE_LOG_WARN, "auth: refused a connection to the '%s' endpoint from %s: %s", domain, address, why);
    send_reply(a, req_id, "400", why, "");
}

static void *auth_main(void *arg)
{
    moe_auth *a = arg;
    for (;;) {
        zmq_pollitem_t pi[2] = {{a->rep, 0, ZMQ_POLLIN, 0}, {a->stop_rx, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(pi, 2, -1) < 0) {
            if (zmq_errno() == EINTR) continue;
            break; /* the context ends */
        }
        if (pi[1].revents & ZMQ_POLLIN) break;
        if (!(pi[0].revents & ZMQ_POLLIN)) continue;
        zap_req r;
        r.n = 0;
        r.more = false;
        for (;;) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, a->rep, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m); /* nothing after all, or the context ends */
                break;
            }
            int more = 0;
            size_t ml = sizeof more;
            zmq_getsockopt(a->rep, ZMQ_RCVMORE, &more, &ml);
            if (r.n < ZAP_MAX_PARTS - 1) r.part[r.n++] = m;
            else {
                r.more = true;
                zmq_msg_close(&m);
            }
            if (!more) {
                handle(a, &r);
                break;
            }
        }
        for (int i = 0; i < r.n; i++) zmq_msg_close(&r.part[i]);
    }
    return NULL;
}

int moe_auth_start(moe_auth **out, moe_link_ctx *c, const moe_auth_domain *domains, int n_domains, moe_err *err)
{
    *out = NULL;
    if (c->zap_running) return moe_err_set(err, "auth: a ZAP handler already runs on this context");
    if (n_domains < 1 || n_domains > 16) return moe_err_set(err, "auth: %d domains (1..16)", n_domains);
    moe_auth *a = moe_xcalloc(1, sizeof *a);
    a->c = c;
    a->d = moe_xcalloc((size_t)n_domains, sizeof *a->d);
    a->n = n_domains;
    atomic_init(&a->admitted, 0);
    atomic_init(&a->refused, 0);
    for (int i = 0; i < n_domains; i++) {
        const size_t len = domains[i].name ? strlen(domains[i].name) : 0;
        if (len == 0 || len > 64 || domains[i].n_keys == 0 || domains[i].n_keys > MOE_KEYLIST_MAX) {
            moe_err_set(err, "auth: domain %d needs a name of 1..64 bytes and 1..%d keys", i, MOE_KEYLIST_MAX);
            goto fail;
        }
        memcpy(a->d[i].name, domains[i].name, len + 1);
        a->d[i].keys = moe_xmalloc(domains[i].n_keys * sizeof *a->d[i].keys);
        memcpy(a->d[i].keys, domains[i].keys, domains[i].n_keys * sizeof *a->d[i].keys);
        a->d[i].n_keys = domains[i].n_keys;
    }
    a->rep = zmq_socket(c->z, ZMQ_REP);
    if (!a->rep) {
        moe_err_set(err, "auth: zmq_socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    int v = 0;
    zmq_setsockopt(a->rep, ZMQ_LINGER, &v, sizeof v);
    if (zmq_bind(a->rep, ZAP_ENDPOINT) != 0) {
        moe_err_set(err, "auth: %s: %s", ZAP_ENDPOINT, zmq_strerror(zmq_errno()));
        goto fail;
    }
    char stop_ep[64];
    snprintf(stop_ep, sizeof stop_ep, "inproc://moe-auth-stop-%p", (void *)a);
    a->stop_rx = zmq_socket(c->z, ZMQ_PAIR);
    a->stop_tx = zmq_socket(c->z, ZMQ_PAIR);
    if (!a->stop_rx || !a->stop_tx || zmq_setsockopt(a->stop_rx, ZMQ_LINGER, &v, sizeof v) != 0 ||
        zmq_setsockopt(a->stop_tx, ZMQ_LINGER, &v, sizeof v) != 0 || zmq_bind(a->stop_rx, stop_ep) != 0 ||
        zmq_connect(a->stop_tx, stop_ep) != 0) {
        moe_err_set(err, "auth: the stop pipe: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    /* the socket passes to the thread: pthread_create is the full barrier
     * libzmq asks for when a socket changes threads */
    const int e = pthread_create(&a->th, NULL, auth_main, a);
    if (e != 0) {
        moe_err_set(err, "auth: pthread_create: %s", strerror(e));
        goto fail;
    }
    c->zap_running = true;
    c->n_links++;
    *out = a;
    return MOE_OK;
fail:
    if (a->rep) zmq_close(a->rep);
    if (a->stop_rx) zmq_close(a->stop_rx);
    if (a->stop_tx) zmq_close(a->stop_tx);
    for (int i = 0; i < a->n; i++) free(a->d[i].keys);
    free(a->d);
    free(a);
    return MOE_ERR;
}

void moe_auth_stop(moe_auth *a)
{
    if (!a) return;
    /* a PAIR queues the byte even if the thread is busy: it sees it next */
    if (zmq_send(a->stop_tx, "", 0, 0) < 0) MOE_ASSERT(!"auth: the stop pipe failed");
    pthread_join(a->th, NULL);
    zmq_close(a->rep);
    zmq_close(a->stop_rx);
    zmq_close(a->stop_tx);
    a->c->zap_running = false;
    a->c->n_links--;
    for (int i = 0; i < a->n; i++) free(a->d[i].keys);
    free(a->d);
    free(a);
}

uint64_t moe_auth_admitted(const moe_auth *a) { return atomic_load(&((moe_auth *)a)->admitted); }
uint64_t moe_auth_refused(const moe_auth *a) { return atomic_load(&((moe_auth *)a)->refused); }

int moe_auth_client_curve(moe_link_curve *cv, bool *on, const char *server_key_file, const char *secret_file,
                          moe_err *err)
{
    *on = false;
    if (!server_key_file && !secret_file) return MOE_OK;
    if (!server_key_file || !secret_file)
        return moe_err_set(err, "--curve-server-key and --curve-secret go together (docs/security.md)");
    memset(cv, 0, sizeof *cv);
    if (moe_keyfile_read_public(server_key_file, &cv->server, err))
        return moe_err_prefix(err, "--curve-server-key");
    if (moe_keyfile_read_secret(secret_file, &cv->secret, err)) return moe_err_prefix(err, "--curve-secret");
    *on = true;
    return MOE_OK;
}
