/*
 * plan.c — per-rank memory plan (plan.h).
 */
#include "plan.h"

#include <string.h>

#include "residency.h"

void moe_plan_opts_default(moe_plan_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_seqs = 16;
    o->block_size = 16;
    o->step_tokens = 1024;
    o->threads = 1;
}

int moe_plan_placement(const moe_model *m, int n_rank, const char *path, moe_placement **out, moe_err *err)
{
    const moe_hparams *hp = &m->hp;
    *out = NULL;
    moe_placement_shape shape = {hp->n_layer, hp->n_dense_lead, hp->n_expert, n_rank};
    if (hp->n_dense_lead >= hp->n_layer) return moe_err_set(err, "the model has no MoE layers");
    return path ? moe_placement_load(out, &shape, path, err) : moe_placement_contiguous(out, &shape, err);
}

void moe_plan_engine_opts(const moe_hparams *hp, const moe_plan_opts *o, moe_engine_opts *eo)
{
    moe_engine_opts_default(eo);
    const int64_t ctx = o->ctx ? o->ctx : (hp->ctx_train < 4096 ? hp->ctx_train : 4096);
    eo->n_threads = o->threads;
    eo->block_size = o->block_size;
    eo->max_seqs = o->max_seqs;
    /* the prompt and every generated token, the last one included */
    eo->max_ctx = ctx + 1;
    eo->cache_tokens = (int64_t)o->max_seqs * (eo->max_ctx + o->block_size);
    eo->max_batch_tokens = o->step_tokens;
    eo->act_q8 = !o->exact;
}

uint64_t moe_plan_shared_bytes(const moe_model *m)
{
    uint64_t bytes = 0;
    for (int i = 0; i < moe_gguf_n_tensors(m->gguf); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(m->gguf, i);
        const int il = moe_gguf_layer_of(t->name);
        if (il >= m->hp.n_layer) continue; /* an MTP block */
        bool routed = false;
        if (il >= 0) {
            const moe_mat *mats[3];
            for (int k = 0, n = moe_model_expert_mats(m, il, mats); k < n; k++) routed |= mats[k]->data == t->data;
        }
        if (!routed) bytes += t->size; /* the reader checked the sizes against the file */
    }
    return bytes;
}

/* The exchange's buffers (xchg.c) for a step of N tokens on every rank,
 * each token sending its K routed slots to min(K, R) ranks and the pairs
 * spreading evenly over the experts: d_send, d_recv (rows of the largest
 * layer's moe_model_dispatch_row_bytes), ids, order, cnt, pairs, c_send,
 * c_recv and (int8 path) the step's quantized tokens grow to 1.5 times the
 * largest request; xe, ye (N·K rows of dim floats), the int8 path's
 * quantized input rows (N·K of them) and the two group arrays are
 * allocated once. */
static int xchg_bytes(const moe_model *m, bool int8, int n_rank, int step_tokens, uint64_t *out, moe_err *err)
{
    const moe_hparams *hp = &m->hp;
    const uint64_t N = (uint64_t)step_tokens, K = (uint64_t)hp->n_used, R = (uint64_t)n_rank;
    const uint64_t D = (uint64_t)hp->dim, E = (uint64_t)hp->n_expert;
    const uint64_t rows = N * (K < R ? K : R), pairs = N * K;
    /* bytes: the largest dispatched row, the largest quantized input row */
    const uint64_t q = moe_model_expert_qact_bytes_max(m, int8);
    uint64_t row = 0;
    for (int il = hp->n_dense_lead; il < hp->n_layer; il++) {
        const uint64_t b = moe_model_dispatch_row_bytes(m, il, int8);
        row = b > row ? b : row;
    }
    uint64_t f = 0, t, fixed = 0;
    bool ok = moe_mul_u64(rows, 2 * row + 12 * K, &f); /* d_send, d_recv; ids, order, cnt */
    ok = ok && moe_mul_u64(pairs, 4 * (3 + 2 * D), &t) && moe_add_u64(f, t, &f); /* pairs; c_send, c_recv */
    ok = ok && moe_mul_u64(N, q, &t) && moe_add_u64(f, t, &f) && f <= UINT64_MAX / 3; /* qtok */
    ok = ok && moe_mul_u64(pairs, 8 * D + q, &fixed) && moe_add_u64(fixed, 8 * (E + 1), &fixed) &&
         moe_add_u64(f / 2 * 3, fixed, &t); /* xe, ye, xqe; g_exp, g_off */
    if (!ok) return moe_err_set(err, "exchange buffer sizes overflow");
    *out = t;
    return MOE_OK;
}

int moe_plan_rank_compute(const moe_model *m, const moe_placement *p, const moe_plan_opts *o, int rank,
                          moe_plan_rank *out, moe_err *err)
{
    const moe_placement_shape *s = moe_placement_shape_of(p);
    if (rank < 0 || rank >= s->n_rank) return moe_err_set(err, "rank %d is not in 0..%d", rank, s->n_rank - 1);
    moe_engine_opts eo;
    moe_plan_engine_opts(&m->hp, o, &eo);
    moe_plan_rank r = {.shared = moe_plan_shared_bytes(m), .experts = moe_residency_share(m, p, rank)};
    if (moe_engine_mem(&m->hp, &eo, &r.kv, &r.work, err)) return MOE_ERR;
    if (o->repack && !o->exact) {
        r.repack = moe_engine_repack_bytes(m);
        if (!moe_add_u64(r.work, r.repack, &r.work)) return moe_err_set(err, "the plan's work bytes overflow");
    }
    if (xchg_bytes(m, eo.act_q8, s->n_rank, o->step_tokens, &r.xchg, err)) return MOE_ERR;
    uint64_t t = r.shared;
    if (!moe_add_u64(t, r.experts, &t) || !moe_add_u64(t, r.kv, &t) || !moe_add_u64(t, r.work, &t) ||
        !moe_add_u64(t, r.xchg, &t))
        return moe_err_set(err, "the plan's total overflows");
    r.total = t;
    *out = r;
    return MOE_OK;
}
