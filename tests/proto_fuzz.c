/*
 * proto_fuzz — libFuzzer target over the wire decoder (clang tree, ctest
 * label "fuzz").
 *
 * The first byte picks the envelope (client, server, worker, coordinator)
 * and a small or default frame cap; the rest is the frame.  For any input:
 * decoding either refuses with OVERSIZED_FRAME / MALFORMED_FRAME and no
 * message, or gives a message whose check returns a known code with a
 * message; a decoded message re-encodes, and decoding that again gives the
 * same bytes (encode ∘ decode is stable); the request-id and sampler
 * helpers never misbehave on what the check let through.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

#define REQUIRE(c)                                                             \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "proto_fuzz: %s:%d: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                           \
        }                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static const ProtobufCMessageDescriptor *const envs[4] = {
        &moe__client_msg__descriptor, &moe__server_msg__descriptor, &moe__worker_msg__descriptor,
        &moe__coord_msg__descriptor};
    const ProtobufCMessageDescriptor *desc = envs[data[0] & 3];
    moe_msg_limits lim;
    moe_msg_limits_default(&lim);
    if (data[0] & 4) {
        lim.max_frame = 256; /* reach the size refusal too */
        lim.max_decode_mem = 2048;
    }
    if (data[0] & 8) {
        lim.vocab_size = 1000;
        lim.max_context = 512;
    }
    data++, size--;

    ProtobufCMessage *m = NULL;
    moe_err err = {{0}};
    int code = moe_msg_decode(desc, data, size, &lim, &m, &err);
    if (code != MOE__CODE__OK) {
        REQUIRE(m == NULL);
        REQUIRE(code == MOE__CODE__OVERSIZED_FRAME || code == MOE__CODE__MALFORMED_FRAME);
        REQUIRE(err.msg[0] != '\0');
        return 0;
    }
    REQUIRE(m != NULL && m->descriptor == desc);

    moe_err cerr = {{0}};
    int check = moe_msg_check(m, &lim, &cerr);
    REQUIRE(protobuf_c_enum_descriptor_get_value(&moe__code__descriptor, check) != NULL);
    REQUIRE(check == MOE__CODE__OK || cerr.msg[0] != '\0');

    if (desc == &moe__client_msg__descriptor) {
        const Moe__ClientMsg *cm = (const Moe__ClientMsg *)m;
        const char *id = moe_msg_request_id(cm, &lim);
        REQUIRE(id == NULL || (strlen(id) >= 1 && strlen(id) <= lim.max_id_len));
        if (check == MOE__CODE__OK && cm->body_case == MOE__CLIENT_MSG__BODY_GENERATE) {
            REQUIRE(id != NULL);
            moe_sampler_cfg cfg;
            moe_sampler_cfg_default(&cfg);
            const Moe__GenerateRequest *g = cm->generate;
            /* The check passed, so the parameters and stop ids must fit. */
            REQUIRE(moe_msg_sampler_cfg(g->sampling, g->stop_ids, g->n_stop_ids, &cfg, &err) == MOE__CODE__OK);
        }
    }

    /* Logprobs the check let through convert to plain C and back unchanged. */
    const Moe__TokenLogprobs *lps[2] = {NULL, NULL};
    int32_t lp_ids[2] = {0, 0};
    if (check == MOE__CODE__OK && desc == &moe__worker_msg__descriptor) {
        const Moe__WorkerMsg *wm = (const Moe__WorkerMsg *)m;
        if (wm->body_case == MOE__WORKER_MSG__BODY_TOKEN) lps[0] = wm->token->logprobs, lp_ids[0] = wm->token->token;
        if (wm->body_case == MOE__WORKER_MSG__BODY_PROMPT_LOGPROBS && wm->prompt_logprobs->n_entries) {
            const Moe__PromptLogprobs *pl = wm->prompt_logprobs;
            lps[0] = pl->entries[0], lp_ids[0] = pl->ids[0];
            lps[1] = pl->entries[pl->n_entries - 1], lp_ids[1] = pl->ids[pl->n_ids - 1];
        }
    }
    if (check == MOE__CODE__OK && desc == &moe__server_msg__descriptor) {
        const Moe__ServerMsg *sm = (const Moe__ServerMsg *)m;
        if (sm->body_case == MOE__SERVER_MSG__BODY_CHUNK && sm->chunk->n_logprobs)
            lps[0] = sm->chunk->logprobs[0], lp_ids[0] = sm->chunk->ids[0];
    }
    for (int k = 0; k < 2; k++) {
        if (!lps[k]) continue;
        moe_token_logprobs t;
        moe_msg_logprobs w;
        moe_msg_logprobs_from_wire(lps[k], lp_ids[k], &t);
        REQUIRE(t.id == lp_ids[k] && t.n_top >= 0 && t.n_top <= MOE_MAX_TOP_LOGPROBS && t.logprob <= 0.0f);
        moe_msg_logprobs_to_wire(&t, &w);
        REQUIRE(w.m.n_top_ids == lps[k]->n_top_ids && w.m.logprob == lps[k]->logprob);
        for (size_t i = 0; i < w.m.n_top_ids; i++)
            REQUIRE(w.ids[i] == lps[k]->top_ids[i] && w.lps[i] == lps[k]->top_logprobs[i]);
    }

    /* Stable round trip: encode, decode, encode gives the same bytes. */
    uint8_t *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    REQUIRE(moe_msg_encode(m, 0, &a, &la, &err) == MOE_OK);
    ProtobufCMessage *m2 = NULL;
    moe_msg_limits big;
    moe_msg_limits_default(&big);
    big.max_frame = la + 1;
    big.max_decode_mem = (size_t)1 << 30;
    REQUIRE(moe_msg_decode(desc, a, la, &big, &m2, &err) == MOE__CODE__OK);
    REQUIRE(moe_msg_encode(m2, 0, &b, &lb, &err) == MOE_OK);
    REQUIRE(la == lb && memcmp(a, b, la) == 0);
    moe_err e2 = {{0}};
    REQUIRE(moe_msg_check(m2, &lim, &e2) == check);
    free(a);
    free(b);
    moe_msg_free(m2);
    moe_msg_free(m);
    return 0;
}
