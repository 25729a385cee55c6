/*
 * plan.h — the memory one rank of the worker job needs, computed from the
 * model's tensor table and the serving flags without touching a weight
 * (what moe-gguf --plan prints):
 *
 *   shared   every trunk tensor that is not a routed expert: attention,
 *            dense FFN, shared experts, router, norms, token_embd, output
 *            (mapped and read on every rank; MTP blocks are never read);
 *   experts  the routed-expert bytes the placement gives the rank
 *            (moe_residency_share: the rule moe-worker accounts with);
 *   kv       the latent cache moe_engine_init allocates for the flags
 *            (moe_engine_mem: kv_lora + qk_rope float32 per token per
 *            layer, for max_seqs × (ctx + 1 + block_size) tokens);
 *   work     the engine's other buffers (moe_engine_mem), and with --repack
 *            its repacked copies of the dense Q8_0 and Q4_K matrices;
 *   xchg     the expert exchange's buffers at full steps under uniform
 *            routing (an estimate: the exchange buffers grow to the largest
 *            step seen; the experts' input and output rows, step_tokens ×
 *            top-k × dim floats each, are allocated once).
 */
#ifndef MOE_WORKER_PLAN_H
#define MOE_WORKER_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "model.h"
#include "placement.h"

/* The moe-worker flags that size a rank (defaults: moe-worker's). */
typedef struct moe_plan_opts {
    int64_t ctx;      /* --ctx: tokens per sequence; 0 = min(4096, the file's context_length) */
    int max_seqs;     /* --max-seqs (16) */
    int block_size;   /* --block-size (16) */
    int step_tokens;  /* --step-tokens (1024) */
    int threads;      /* --threads (1) */
    bool exact;       /* --exact: float activations (no int8 activation buffers); default false */
    bool repack;      /* --repack: the engine's repacked copies of the dense Q8_0 and Q4_K matrices */
} moe_plan_opts;

typedef struct moe_plan_rank {
    uint64_t shared, experts, kv, work, xchg;
    uint64_t repack;  /* --repack's copies (0 without it); counted in work */
    uint64_t total;
} moe_plan_rank;

void moe_plan_opts_default(moe_plan_opts *o);
/* The job's placement: the file at path (NULL: contiguous blocks) over
 * n_rank ranks, shaped by the model; what moe-worker --placement uses. */
int moe_plan_placement(const moe_model *m, int n_rank, const char *path, moe_placement **out, moe_err *err);
/* The engine options moe-worker --coordinator runs with for these flags. */
void moe_plan_engine_opts(const moe_hparams *hp, const moe_plan_opts *o, moe_engine_opts *eo);
/* Bytes of the trunk's tensors that are not routed experts. */
uint64_t moe_plan_shared_bytes(const moe_model *m);
/* The plan of rank `rank` of placement p (whose rank count is the job's). */
int moe_plan_rank_compute(const moe_model *m, const moe_placement *p, const moe_plan_opts *o, int rank,
                          moe_plan_rank *out, moe_err *err);

#endif
