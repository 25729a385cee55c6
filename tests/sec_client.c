/*
 * sec_client — what an attacker on the same machine can send, driven by
 * tests/sec_test.sh (real sockets, a running coordinator):
 *
 *   sec_client impostor WORKERS_EP VOCAB N_RANKS
 *       a forged WorkerHello for rank 0 (another job, max_context 8) on the
 *       worker endpoint; prints "refused CODE: message" or "accepted", then
 *       listens 2 s more and prints "assign" for every Assign it gets.
 *       Exit 0 if refused and sent nothing, 1 otherwise.
 *   sec_client nohello CLIENT_EP
 *       a GenerateRequest with no Hello before it: prints the answer
 *       ("refused CODE: message" or "served"); then says hello and sends
 *       the same request, which must be served ("then served").  Exit 0 if
 *       the first was refused and the second served.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link.h"
#include "msg.h"

static moe_link_ctx *ctx;
static moe_link *L;

static int send_env(const ProtobufCMessage *m)
{
    moe_err err;
    if (moe_link_send(L, NULL, m, 0, &err) != MOE_OK) {
        fprintf(stderr, "sec_client: send: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* The next well-formed message within timeout_s (NULL on timeout). */
static ProtobufCMessage *next(double timeout_s, moe_link_in *in)
{
    const double t0 = moe_now();
    for (;;) {
        moe_err err;
        if (moe_link_recv(L, in, MOE_LINK_DONTWAIT, &err) == MOE_OK) {
            if (in->code == MOE__CODE__OK && in->msg) return in->msg;
            moe_link_in_clear(in);
            continue;
        }
        if (moe_now() - t0 > timeout_s) return NULL;
        moe_link_poll_item pi = {.link = L};
        moe_link_poll(&pi, 1, 50, &err);
    }
}

static int impostor(uint32_t vocab, uint32_t n_ranks)
{
    Moe__ModelIdentity mi = MOE__MODEL_IDENTITY__INIT;
    mi.name = (char *)"impostor";
    mi.has_vocab_size = mi.has_max_context = true;
    mi.vocab_size = vocab;
    mi.max_context = 8; /* would cut every request's context */
    Moe__WorkerHello h = MOE__WORKER_HELLO__INIT;
    h.has_protocol_version = h.has_rank = h.has_n_ranks = h.has_cache_tokens_total = h.has_cache_tokens_free = true;
    h.has_job_id = h.has_max_seqs = true;
    h.protocol_version = MOE_PROTO_VERSION;
    h.rank = 0;
    h.n_ranks = n_ranks;
    h.cache_tokens_total = h.cache_tokens_free = 1 << 20;
    h.job_id = 0x1badcafe;
    h.max_seqs = 64;
    h.model = &mi;
    Moe__WorkerMsg m = MOE__WORKER_MSG__INIT;
    m.body_case = MOE__WORKER_MSG__BODY_HELLO;
    m.hello = &h;
    if (send_env(&m.base)) return 2;
    int rc = 1;
    moe_link_in in;
    const Moe__CoordMsg *r = (const Moe__CoordMsg *)next(10, &in);
    if (!r) printf("no answer\n");
    else if (r->body_case == MOE__COORD_MSG__BODY_ERROR) {
        printf("refused %s: %s\n", moe_msg_code_name(r->error->code), r->error->message ? r->error->message : "");
        rc = 0;
    } else printf("accepted (%d)\n", (int)r->body_case);
    if (r) moe_link_in_clear(&in);
    fflush(stdout); /* the test checks the victim is still running at this point */
    /* whatever comes now would be another client's work */
    const double t0 = moe_now();
    while (moe_now() - t0 < 2.0) {
        r = (const Moe__CoordMsg *)next(2.0 - (moe_now() - t0), &in);
        if (!r) break;
        if (r->body_case == MOE__COORD_MSG__BODY_ASSIGN) {
            printf("assign\n");
            rc = 1;
        }
        moe_link_in_clear(&in);
    }
    fflush(stdout);
    return rc;
}

static int generate_once(const char *id)
{
    int32_t ids[4] = {1, 2, 3, 4};
    Moe__TokenIds ti = MOE__TOKEN_IDS__INIT;
    ti.n_ids = 4;
    ti.ids = ids;
    Moe__GenerateRequest g = MOE__GENERATE_REQUEST__INIT;
    g.request_id = (char *)id;
    g.prompt_case = MOE__GENERATE_REQUEST__PROMPT_IDS;
    g.ids = &ti;
    g.has_max_tokens = true;
    g.max_tokens = 4;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_GENERATE;
    m.generate = &g;
    return send_env(&m.base);
}

/* 1: served (a chunk or a finish came), 0: refused (printed), -1: nothing. */
static int answer(const char *what)
{
    moe_link_in in;
    for (;;) {
        const Moe__ServerMsg *r = (const Moe__ServerMsg *)next(30, &in);
        if (!r) {
            printf("%sno answer\n", what);
            return -1;
        }
        const int body = (int)r->body_case;
        if (body == MOE__SERVER_MSG__BODY_ERROR)
            printf("%srefused %s: %s\n", what, moe_msg_code_name(r->error->code),
                   r->error->message ? r->error->message : "");
        moe_link_in_clear(&in);
        if (body == MOE__SERVER_MSG__BODY_ERROR) return 0;
        if (body == MOE__SERVER_MSG__BODY_CHUNK || body == MOE__SERVER_MSG__BODY_FINISH) {
            printf("%sserved\n", what);
            return 1;
        }
    }
}

static int nohello(void)
{
    if (generate_once("early")) return 2;
    const int first = answer("");
    Moe__Hello h = MOE__HELLO__INIT;
    h.has_protocol_version = true;
    h.protocol_version = MOE_PROTO_VERSION;
    Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
    m.body_case = MOE__CLIENT_MSG__BODY_HELLO;
    m.hello = &h;
    if (send_env(&m.base)) return 2;
    moe_link_in in;
    const Moe__ServerMsg *r = (const Moe__ServerMsg *)next(30, &in);
    const bool replied = r && r->body_case == MOE__SERVER_MSG__BODY_HELLO_REPLY;
    if (r) moe_link_in_clear(&in);
    if (!replied) {
        printf("no hello reply\n");
        return 1;
    }
    if (generate_once("after")) return 2;
    const int second = answer("then ");
    fflush(stdout);
    return first == 0 && second == 1 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: sec_client impostor WORKERS_EP VOCAB N_RANKS | nohello CLIENT_EP\n");
        return 2;
    }
    const bool imp = !strcmp(argv[1], "impostor");
    if (imp && argc != 5) return 2;
    moe_err err;
    moe_link_opts o;
    moe_link_opts_default(&o, imp ? &moe__coord_msg__descriptor : &moe__server_msg__descriptor);
    if (imp) o.identity = "rank-0"; /* the name today's ranks use: a takeover if the server lets it */
    if (moe_link_ctx_init(&ctx, &err) || moe_link_connect(&L, ctx, argv[2], &o, &err)) {
        fprintf(stderr, "sec_client: %s\n", err.msg);
        return 2;
    }
    int rc;
    if (imp) {
        int64_t vocab, n;
        if (moe_parse_i64(argv[3], 1, INT32_MAX, &vocab, &err) || moe_parse_i64(argv[4], 1, 4096, &n, &err)) {
            fprintf(stderr, "sec_client: %s\n", err.msg);
            return 2;
        }
        rc = impostor((uint32_t)vocab, (uint32_t)n);
    } else if (!strcmp(argv[1], "nohello")) rc = nohello();
    else rc = 2;
    moe_link_close(L);
    moe_link_ctx_free(ctx);
    return rc;
}
