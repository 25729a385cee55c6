/*
 * auth_test — CURVE links and the ZAP handler (proto/auth.h) in one
 * process over inproc and ipc sockets: a listed key connects, its frames
 * carry the key as User-Id and the answer comes back encrypted; an
 * unlisted key, a client without CURVE and a client of another domain get
 * nothing through; a CURVE server cannot bind without a handler.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "check.h"
#include "link.h"
#include "msg.h"

static Moe__ClientMsg hello_msg(Moe__Hello *h)
{
    moe__hello__init(h);
    h->has_protocol_version = true;
    h->protocol_version = MOE_PROTO_VERSION;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_HELLO;
    m.hello = h;
    return m;
}

/* Waits up to ms for one frame on l; true if one came (in filled). */
static bool recv_within(moe_link *l, moe_link_in *in, int ms)
{
    moe_err err;
    const double t0 = moe_now();
    while ((moe_now() - t0) * 1000.0 < ms) {
        if (moe_link_recv(l, in, MOE_LINK_DONTWAIT, &err) == MOE_OK) return true;
        moe_link_poll_item pi = {.link = l};
        moe_link_poll(&pi, 1, 20, &err);
    }
    return false;
}

/* A client with the given keys (or none) says hello; true if the server got it. */
static bool try_client(moe_link_ctx *ctx, moe_link *srv, const char *ep, const moe_link_curve *cv, int ms,
                       char *user_id_out)
{
    moe_err err;
    moe_link_opts o;
    moe_link_opts_default(&o, &moe__server_msg__descriptor);
    o.curve = cv;
    moe_link *cl;
    if (moe_link_connect(&cl, ctx, ep, &o, &err)) {
        fprintf(stderr, "connect: %s\n", err.msg);
        return false;
    }
    Moe__Hello h;
    Moe__ClientMsg m = hello_msg(&h);
    moe_link_send(cl, NULL, &m.base, MOE_LINK_DONTWAIT, &err);
    moe_link_in in;
    const bool got = recv_within(srv, &in, ms);
    if (got) {
        CHECK(in.code == MOE__CODE__OK);
        if (user_id_out) strcpy(user_id_out, in.user_id);
        /* and back, through the same encrypted connection */
        Moe__HelloReply r = MOE__HELLO_REPLY__INIT;
        r.has_protocol_version = true;
        r.protocol_version = MOE_PROTO_VERSION;
        Moe__ServerMsg sm = MOE__SERVER_MSG__INIT;
        sm.body_case = MOE__SERVER_MSG__BODY_HELLO_REPLY;
        sm.hello_reply = &r;
        CHECK(moe_link_send(srv, &in.from, &sm.base, 0, &err) == MOE_OK);
        moe_link_in back;
        CHECK(recv_within(cl, &back, 5000));
        CHECK(back.code == MOE__CODE__OK && back.msg &&
              ((Moe__ServerMsg *)back.msg)->body_case == MOE__SERVER_MSG__BODY_HELLO_REPLY);
        moe_link_in_clear(&back);
        moe_link_in_clear(&in);
    }
    moe_link_close(cl);
    return got;
}

int main(void)
{
    if (!moe_link_has_curve()) {
        printf("auth_test: this libzmq has no CURVE\n");
        return 77;
    }
    moe_err err;
    moe_key srv_pub, srv_sec, alice_pub, alice_sec, eve_pub, eve_sec, job_pub, job_sec;
    CHECK(moe_link_curve_keypair(&srv_pub, &srv_sec, &err) == MOE_OK);
    CHECK(moe_link_curve_keypair(&alice_pub, &alice_sec, &err) == MOE_OK);
    CHECK(moe_link_curve_keypair(&eve_pub, &eve_sec, &err) == MOE_OK);
    CHECK(moe_link_curve_keypair(&job_pub, &job_sec, &err) == MOE_OK);
    moe_key derived;
    CHECK(moe_link_curve_public(&alice_sec, &derived, &err) == MOE_OK && !memcmp(derived.b, alice_pub.b, 32));

    moe_link_ctx *ctx;
    CHECK(moe_link_ctx_init(&ctx, &err) == MOE_OK);
    moe_link_opts so;
    moe_link_opts_default(&so, &moe__client_msg__descriptor);
    moe_link_curve scv = {.secret = srv_sec, .zap_domain = "client"};
    so.curve = &scv;
    moe_link *srv = NULL;
    /* no handler: a CURVE server would admit anyone, so it does not open */
    CHECK(moe_link_bind(&srv, ctx, "inproc://nohandler", &so, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "ZAP handler");

    const moe_auth_domain d[2] = {{"client", &alice_pub, 1}, {"worker", &job_pub, 1}};
    moe_auth *auth;
    CHECK(moe_auth_start(&auth, ctx, d, 2, &err) == MOE_OK);
    moe_auth *again;
    CHECK(moe_auth_start(&again, ctx, d, 2, &err) == MOE_ERR); /* one per context */
    char dir[] = "/tmp/moe-auth.XXXXXX", ep[256];
    CHECK(mkdtemp(dir) != NULL);
    CHECK(moe_link_endpoint_ipc(ep, sizeof ep, dir, "s", &err) == MOE_OK);
    CHECK(moe_link_bind(&srv, ctx, ep, &so, &err) == MOE_OK);

    char uid[MOE_LINK_USER_MAX + 1] = "";
    moe_link_curve alice = {.secret = alice_sec, .server = srv_pub};
    CHECK(try_client(ctx, srv, ep, &alice, 5000, uid));
    char z[MOE_KEY_Z85_LEN + 1];
    moe_key_z85(&alice_pub, z);
    CHECK_MSG(!strcmp(uid, z), "User-Id '%s', key '%s'", uid, z);

    moe_link_curve eve = {.secret = eve_sec, .server = srv_pub};
    CHECK(!try_client(ctx, srv, ep, &eve, 500, NULL));                /* not listed */
    moe_link_curve job = {.secret = job_sec, .server = srv_pub};
    CHECK(!try_client(ctx, srv, ep, &job, 500, NULL));                /* listed, but for the other domain */
    CHECK(!try_client(ctx, srv, ep, NULL, 500, NULL));                /* no CURVE */
    moe_link_curve wrong_server = {.secret = alice_sec, .server = eve_pub};
    CHECK(!try_client(ctx, srv, ep, &wrong_server, 500, NULL));       /* not this server */
    CHECK(try_client(ctx, srv, ep, &alice, 5000, NULL));              /* still fine */
    CHECK(moe_auth_admitted(auth) == 2);
    CHECK_MSG(moe_auth_refused(auth) == 2, "refused %llu", (unsigned long long)moe_auth_refused(auth));

    moe_auth_domain bad = {"", &alice_pub, 1};
    moe_link_close(srv);
    moe_auth_stop(auth);
    CHECK(moe_auth_start(&auth, ctx, &bad, 1, &err) == MOE_ERR);
    moe_link_ctx_free(ctx);
    char p[300];
    snprintf(p, sizeof p, "%s/s", dir);
    unlink(p);
    rmdir(dir);
    return check_summary("auth_test");
}
