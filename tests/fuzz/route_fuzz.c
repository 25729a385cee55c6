/*
 * route_fuzz.c — libFuzzer target: any bytes as a routing trace
 * (router/trace) and, when they parse, replayed by router/simulate on a
 * small placement; the same bytes as an EPLB case (router/eplb: four
 * parameters and a load matrix).  Bad input is refused with a message;
 * what is accepted keeps its invariants; never a crash or a leak.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eplb.h"
#include "simulate.h"
#include "trace.h"

static void fuzz_trace(const uint8_t *data, size_t size)
{
    moe_trace t;
    moe_err err = {0};
    if (moe_trace_parse(&t, (const char *)data, size, &err) != MOE_OK) {
        if (!err.msg[0] || t.ids) abort();
        return;
    }
    if (t.n == 0 || t.k < 1 || t.k > MOE_TRACE_MAX_K || t.min_layer > t.max_layer) abort();
    for (size_t i = 0; i < t.n * (size_t)t.k; i++)
        if (t.ids[i] < 0 || t.ids[i] > t.max_expert || t.ranks[i] < 0 || t.ranks[i] > t.max_rank) abort();
    if (t.max_layer < 8 && t.max_expert < 32) {
        moe_placement_shape ps = {8, t.min_layer, 32, 4};
        moe_placement *p;
        if (moe_placement_contiguous(&p, &ps, &err)) abort();
        moe_sim_cfg c = {p, 2, 16, 3, true, 0, 10, 1, 5, 1, 1, NULL};
        moe_sim_result r;
        if (moe_sim_run(&t, &c, &r, &err) == MOE_OK) {
            uint64_t pairs = 0;
            for (int k = 0; k < 4; k++) pairs += r.rank_pairs[k];
            if (pairs != t.n * (uint64_t)t.k) abort();
            moe_sim_result_free(&r);
            c.node_limit = 1; /* the node-limit estimate runs every pair too */
            if (moe_sim_run(&t, &c, &r, &err) != MOE_OK) abort();
            pairs = 0;
            for (int k = 0; k < 4; k++) pairs += r.rank_pairs[k];
            if (pairs != t.n * (uint64_t)t.k) abort();
            moe_sim_result_free(&r);
        }
        moe_placement_free(p);
    }
    moe_trace_free(&t);
}

static void fuzz_eplb(const uint8_t *data, size_t size)
{
    if (size < 6) return;
    moe_eplb_params q = {data[0] % 40, data[1] % 9, data[2] % 5, data[3] % 9};
    const int L = 1 + data[4] % 3, E = data[5] % 24;
    if ((size_t)L * (size_t)E > size - 6 || E == 0) return;
    float w[3 * 24];
    for (int i = 0; i < L * E; i++) w[i] = data[6 + i] == 255 ? -1.0f : (float)(data[6 + i] % 50);
    moe_eplb_result r;
    moe_err err = {0};
    if (moe_eplb_rebalance(&r, w, L, E, &q, &err) != MOE_OK) {
        if (!err.msg[0]) abort();
        return;
    }
    for (int l = 0; l < L; l++) {
        int total = 0;
        for (int e = 0; e < E; e++) total += r.logcnt[l * E + e];
        if (total != q.num_replicas) abort();
        for (int p = 0; p < q.num_replicas; p++) {
            const int e = r.phy2log[l * q.num_replicas + p];
            if (e < 0 || e >= E || r.log2phy[(l * E + e) * r.max_cnt + r.phyrank[l * q.num_replicas + p]] != p) abort();
        }
    }
    moe_eplb_result_free(&r);
}

/* The same bytes behind a per_token record's header (core/exprec): a
 * shape from the first bytes, the rest as rows; and as a whole file. */
static void fuzz_record(const uint8_t *data, size_t size)
{
    moe_trace t;
    moe_err err = {0};
    if (moe_trace_from_record(&t, data, size, &err) == MOE_OK) moe_trace_free(&t);
    if (size < 4) return;
    uint8_t *buf = malloc(64 + size);
    memset(buf, 0, 64);
    memcpy(buf, "MOEEXPD", 8);
    const uint32_t k = 1 + data[0] % 4, layers = 1 + data[1] % 3, experts = k + data[2] % 8, ranks = 1 + data[3] % 4;
    const uint32_t hdr[8] = {1, 2, layers, 1, experts, k, ranks, 0};
    for (int i = 0; i < 8; i++)
        for (int b = 0; b < 4; b++) buf[8 + 4 * i + b] = (uint8_t)(hdr[i] >> (8 * b));
    const size_t body = size - 4, rb = 24 + 8 * (size_t)k, rows = body / rb;
    for (int b = 0; b < 8; b++) buf[40 + b] = (uint8_t)((uint64_t)rows >> (8 * b));
    memcpy(buf + 64, data + 4, rows * rb);
    if (moe_trace_from_record(&t, buf, 64 + rows * rb, &err) == MOE_OK) {
        if (t.n != rows || t.k != (int)k) abort();
        for (size_t i = 0; i < t.n * (size_t)t.k; i++)
            if (t.ids[i] < 0 || t.ids[i] >= (int32_t)experts || t.ranks[i] < 0 || t.ranks[i] >= (int32_t)ranks) abort();
        moe_trace_free(&t);
    } else if (!err.msg[0]) {
        abort();
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_trace(data, size);
    fuzz_record(data, size);
    fuzz_eplb(data, size);
    return 0;
}
