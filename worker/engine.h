/*
 * engine.h — the deepseek2 forward pass over a batch of sequences.
 *
 * An engine owns a model (borrowed), a latent cache, a thread pool and all
 * scratch memory, sized at init for max_batch_tokens tokens per step; a
 * step allocates nothing.  One step takes tokens from several sequences:
 * some prefill a chunk, some decode one token.  Per layer all tokens go
 * through the projections and the MoE FFN together (experts grouped: all
 * tokens of one expert at once); attention runs per sequence against its
 * cache.  Every value a token gets is computed by the same kernels in the
 * same order whatever its batch-mates and thread count (docs/engine.md).
 *
 * MLA: a chunk of >= decompress_min tokens uses the decompressed form
 * (K/V rebuilt per head from the latent for that step only); shorter chunks
 * and single-token decode use the absorbed form over the cache.
 *
 * The MoE layer is three separable steps, so an expert-parallel worker can
 * run them on different ranks: moe_engine_moe_route (gate → ids, weights),
 * moe_engine_moe_experts (the SwiGLU of several experts, each on its rows) and
 * moe_engine_moe_combine (weighted sum in expert-id order, plus shared).
 */
#ifndef MOE_WORKER_ENGINE_H
#define MOE_WORKER_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"
#include "kern.h"
#include "kvcache.h"
#include "model.h"
#include "threadpool.h"

typedef struct moe_engine moe_engine;

/*
 * Expert parallelism (the MPI worker job): when set, the routed experts of
 * every MoE layer run through this hook instead of locally.  start gets the
 * normed rows and the gate's choice, the engine then computes the shared
 * experts, calling progress between pieces (so an exchange in flight moves
 * on), and finish must fill y[(t·K + j)·dim ...] with the output of expert
 * ids[t·K + j] for row t.  The hook is called for every MoE layer of every
 * step, with zero rows when the step has no tokens on this engine, so the
 * ranks of a job stay in lockstep.
 */
typedef struct moe_engine_moe_hook {
    void *ctx;
    void (*start)(void *ctx, int il, const float *h, int n, const int32_t *ids, const float *w,
                  const int *row_seq, const int64_t *row_pos);
    void (*progress)(void *ctx);
    void (*finish)(void *ctx, int il, float *y);
    /* true: there is no exchange for the shared experts to overlap (one
     * rank), so the engine leaves them to finish, which runs them in the
     * routed experts' runs (moe_engine_moe_experts_shared): two parallel
     * runs a layer instead of five */
    bool shared_in_finish;
} moe_engine_moe_hook;

/*
 * Named intermediate tensors (debugging, and diffing a distributed run
 * against a single-process one layer by layer): when set, called with each
 * named activation of a step, rows = the step's token rows (row_seq /
 * row_pos give each row's sequence and position; NULL for the output rows,
 * which are the rows that asked for logits, in item order).  Names: attn_norm,
 * q (roped), kv_a (before the latent norm), attn_heads, attn_out, ffn_norm,
 * moe_logits (router), ffn_out, l_out; result_norm, logits (layer -1).
 */
typedef void (*moe_engine_tensor_fn)(void *ctx, const char *name, int layer, const float *data, int rows, int cols,
                                     const int *row_seq, const int64_t *row_pos);

typedef struct moe_engine_opts {
    int n_threads;          /* default 1 */
    int block_size;         /* cache tokens per block, default 16 */
    int64_t max_ctx;        /* per sequence, default min(4096, file ctx) */
    int max_seqs;           /* default 16 */
    int64_t cache_tokens;   /* pool capacity in tokens, default max_seqs × max_ctx rounded up to whole blocks */
    int max_batch_tokens;   /* tokens per step, default 512 */
    int decompress_min;     /* chunk length from which prefill decompresses; default 32, 0 = never */
    const moe_kern_set *kernels; /* kernel set; NULL: the best this CPU runs under MOE_KERNELS */
    bool act_q8;            /* int8 activations for quantized weights, in each type's dot type (llama.cpp-like;
                             * the default); false: float activations (--exact, docs/engine.md "Two paths") */
    bool repack;            /* with act_q8: products of the Q8_0 and Q4_K matrices every rank holds
                             * (attention, dense and shared FFN, output) from a repacked copy
                             * (moe_kern_repack; --repack): faster; Q8_0 gives other bits than the
                             * file's layout, Q4_K the same */
    bool mtp;               /* the file's MTP block (moe_engine_mtp_step): its own cache layer; its MoE
                             * runs locally even with moe_hook (every rank reads the experts its own
                             * rows choose) */
    double par_min_cost;    /* smaller products / attention run on the caller (default 65536; 0 = always split) */
    moe_engine_tensor_fn tensor_fn; /* NULL: no tensor callbacks */
    void *tensor_ctx;
    const moe_engine_moe_hook *moe_hook; /* NULL: all experts local */
} moe_engine_opts;

void moe_engine_opts_default(moe_engine_opts *o);

int moe_engine_init(moe_engine **out, const moe_model *m, const moe_engine_opts *opts, moe_err *err);
/* What moe_engine_init(m, opts) would allocate, without allocating:
 * *cache_bytes for the latent cache (moe_kvcache_bytes), *work_bytes for
 * every other buffer (activations, expert scratch, logits, per-thread
 * attention scratch).  For memory plans (moe-gguf --plan). */
int moe_engine_mem(const moe_hparams *hp, const moe_engine_opts *opts, uint64_t *cache_bytes, uint64_t *work_bytes,
                   moe_err *err);
void moe_engine_free(moe_engine *e);

const moe_model *moe_engine_model(const moe_engine *e);
/* The kernel set the engine computes with. */
const moe_kern_set *moe_engine_kernels(const moe_engine *e);
moe_kvcache *moe_engine_cache(moe_engine *e);

/* Whether a chunk of n tokens takes the decompressed attention form (the
 * float path with n >= decompress_min > 0); the int8 path never does. */
bool moe_engine_chunk_decompresses(const moe_engine *e, int n);
/* What a cached latent's bits depend on besides its tokens and their
 * paths: the model's shape, the kernel set, the activation path and
 * --repack (the seed of the cache's prefix keys). */
uint64_t moe_engine_identity(const moe_engine *e);

/* Sequences: ids from the cache's slots. */
int moe_engine_seq_new(moe_engine *e, int *seq, moe_err *err);
void moe_engine_seq_free(moe_engine *e, int seq);
int64_t moe_engine_seq_len(const moe_engine *e, int seq);

typedef enum { MOE_LOGITS_NONE = 0, MOE_LOGITS_LAST, MOE_LOGITS_ALL } moe_logits_mode;

/* One sequence's part of a step. */
typedef struct moe_step_item {
    int seq;
    const int32_t *tokens;  /* [n_tokens], appended at positions len .. len+n-1 */
    int n_tokens;
    moe_logits_mode logits;
    int path_len;           /* 0, or >= n_tokens: the attention path is chosen as for a chunk of this
                             * length (moe_engine_chunk_decompresses): a prompt's chunk cut short by a
                             * cached prefix computes its rows as the whole chunk would */
    /* out */
    int status;             /* MOE_OK, or MOE_ERR with err (item skipped) */
    moe_err err;
    const float *out;       /* [rows][vocab], valid until the next step */
    int out_rows;           /* 0, 1 or n_tokens */
} moe_step_item;

/*
 * Runs one step.  Items with a bad token id, an invalid sequence or no room
 * in the cache get status MOE_ERR and their own message; the others run.
 * Returns MOE_ERR only for a malformed call (too many tokens, a sequence
 * twice).
 */
int moe_engine_step(moe_engine *e, moe_step_item *items, int n_items, moe_err *err);

/* The last step's hidden states: the residual stream after the last trunk
 * block (before the output norm) of every row the step computed, in item
 * order; *rows of them, [rows][dim], valid until the next step. */
const float *moe_engine_hidden(const moe_engine *e, int *rows);
/* After moe_engine_mtp_step: the MTP block's output rows (before its head
 * norm), all the step's rows in item order; valid until the next step. */
const float *moe_engine_mtp_hidden(const moe_engine *e, int *rows);
/* Whether the engine runs the file's MTP block (moe_engine_opts.mtp). */
bool moe_engine_has_mtp(const moe_engine *e);
/* Forgets positions >= len of a sequence (len <= its length): a rejected
 * draft's latents, written again by the next step. */
void moe_engine_seq_truncate(moe_engine *e, int seq, int64_t len);
/* Takes back positions a truncate dropped, their latents untouched since
 * (len <= the reserved length; nothing was written there in between). */
void moe_engine_seq_untruncate(moe_engine *e, int seq, int64_t len);

/*
 * MTP (moe_engine_opts.mtp): draft logits from the file's MTP block
 * (model.h moe_mtp, docs/engine.md "MTP").  An item's rows are positions
 * pos .. pos+n-1 of its sequence, all already computed by the trunk (below
 * the sequence's length); row i takes the trunk's hidden state of position
 * pos+i and the token at pos+i+1, writes the MTP block's latent at that
 * position and attends over the MTP latents of positions <= it, so every
 * earlier position must have had its MTP row.  The rows' logits predict
 * the token at pos+i+2.  The MTP block attends in the absorbed form
 * whatever the item's length, so a row's bits do not depend on how rows
 * are grouped.  Returns MOE_ERR only for a malformed call; a bad item gets
 * its own status.
 */
typedef struct moe_mtp_item {
    int seq;
    int64_t pos;
    int n;
    const int32_t *next;    /* [n] the token after each row's position */
    const float *hidden;    /* [n][dim] the trunk's hidden state of each row's position */
    moe_logits_mode logits; /* draft logits of every row, the last one, or none (latents only) */
    bool ahead;             /* rows may lie past the trunk's length (chained drafts): their blocks
                             * are reserved, only the MTP layer's latents written */
    /* out */
    int status;
    moe_err err;
    const float *out;       /* [rows][vocab] draft logits (n rows, 1 or none), valid until the next step */
} moe_mtp_item;
int moe_engine_mtp_step(moe_engine *e, moe_mtp_item *items, int n_items, moe_err *err);

/* ---- the MoE layer in separable steps (used by the step; reusable) ---- */

/* ids, w: [n_tok][n_used] (ids ascending per token). x: [n_tok][dim] normed. */
void moe_engine_moe_route(moe_engine *e, int il, const float *x, int n_tok, int32_t *ids, float *w);
/* Node-limited routing for MoE layer il from the next step on (router/gate.h;
 * a research option that changes the answer), or NULL for the model's own.
 * lim must outlive its use.  The caller flushes the prefix cache once after
 * changing limits (moe_engine_prefix_flush): latents cached under the old
 * routing are not what a cold run computes under the new. */
void moe_engine_set_gate_limit(moe_engine *e, int il, const moe_gate_limit *lim);
/* Forgets every cached prefix (kvcache.h moe_kvcache_prefix_flush). */
void moe_engine_prefix_flush(moe_engine *e);
/* Routed experts of layer il on rows grouped by expert: group i runs
 * expert experts[i] (ascending or not) on rows off[i] .. off[i+1]-1 of x
 * ([rows][dim], normed) into the same rows of y ([rows][dim]).  Gate and up
 * of every group in one run of the engine's thread pool, SwiGLU, then every
 * down in a second run, on the int8 path each row quantized once per dot
 * type: the same per-row products as the engine's own MoE layer, so a row's
 * output is bitwise what a local run gives it.  Each expert at most once;
 * off[0] >= 0 and off[n_groups] <= moe_engine_expert_rows(e). */
void moe_engine_moe_experts(moe_engine *e, int il, int n_groups, const int32_t *experts, const int32_t *off,
                            const float *x, float *y);
/* The same, plus the layer's shared experts on the n_sh rows of the step
 * the engine is in (inside a hook's finish: the rows given to its start)
 * in the same two runs; their output is what the engine's MoE layer adds
 * (a hook with shared_in_finish calls this once a layer). */
void moe_engine_moe_experts_shared(moe_engine *e, int il, int n_groups, const int32_t *experts, const int32_t *off,
                                   const float *x, float *y, int n_sh);
/* The dot type a routed expert's input takes in MoE layer il: on the int8
 * path the one gate_exps and up_exps both read (a row is quantized once for
 * the two), else MOE_DT_F32: the float path, float-only weights, or gate
 * and up of different dot types keep float rows. */
uint32_t moe_engine_expert_act_type(const moe_engine *e, int il);
/* Whether the engine takes the int8 path (moe_engine_opts.act_q8). */
bool moe_engine_int8(const moe_engine *e);
/* The repacked copies the engine holds (moe_engine_opts.repack): matrices
 * and bytes (0 and 0 without --repack). */
void moe_engine_repacked(const moe_engine *e, int *n_mats, uint64_t *bytes);
/* The bytes --repack would allocate for model m (for memory plans). */
uint64_t moe_engine_repack_bytes(const moe_model *m);
/* n rows of x ([n][dim]) quantized to that type (not F32), rows
 * moe_kern_act_row_bytes(type, dim) apart in out: the blocks the engine's
 * own run would make of them (the quantizer depends on the row alone). */
void moe_engine_expert_act_quantize(const moe_engine *e, int il, const float *x, int n, void *out);
/* moe_engine_moe_experts_shared with the routed rows already quantized by
 * moe_engine_expert_act_quantize (xq, rows in off's order): the same bits
 * as giving their float rows. */
void moe_engine_moe_experts_shared_q(moe_engine *e, int il, int n_groups, const int32_t *experts, const int32_t *off,
                                     const void *xq, float *y, int n_sh);
/* Rows one moe_engine_moe_experts call takes at most: max_batch_tokens × n_used. */
int moe_engine_expert_rows(const moe_engine *e);
/* out[dim] = Σ_j w[j]·y_j in ascending expert-id order (ids ascending), then
 * + shared (NULL if none).  y_rows[j] points at expert ids[j]'s output. */
void moe_engine_moe_combine(int dim, int n_used, const float *w, const float *const *y_rows, const float *shared,
                            float *out);

/*
 * The gate's choices, as they are made: when set, called at every MoE layer
 * of every step that has rows here, right after the gate, with the rows'
 * experts (ids: [n][n_used], ascending per row), their weights (w, same
 * shape), and each row's sequence and position.  Both paths (local experts
 * and the hook's) call it, and it only reads: the step's bits do not depend
 * on it.  NULL (the default) costs one branch per MoE layer.  For returned
 * routed experts and the expert-distribution recorder (worker/gen.c).
 */
typedef void (*moe_engine_route_fn)(void *ctx, int il, int n, const int32_t *ids, const float *w, const int *row_seq,
                                    const int64_t *row_pos);
void moe_engine_set_route_fn(moe_engine *e, moe_engine_route_fn fn, void *ctx);
/* fn(ctx) (NULL: none) is called between the two parallel runs (gate and
 * up, then down) of every moe_engine_moe_experts* call: the worker's
 * exchange drives an MPI transfer in flight there. */
void moe_engine_set_experts_tick(moe_engine *e, void (*fn)(void *), void *ctx);

/* Statistics. */
typedef struct moe_engine_stats {
    uint64_t cache_bytes_in_use;
    uint64_t cache_block_bytes;
    int64_t tokens_processed;
} moe_engine_stats;
void moe_engine_get_stats(const moe_engine *e, moe_engine_stats *st);

/* Where a step's time goes (bench-decode --profile): off by default (no
 * clock reads); enabling resets it.  Seconds summed over steps.  The rest of
 * step_s (minus the three runs and quant_s) is serial per-token work on the
 * calling thread: norms, RoPE, routing, SwiGLU, combine, residuals. */
typedef struct moe_engine_profile {
    uint64_t steps;
    double step_s;      /* inside moe_engine_step */
    double mm_par_s;    /* matrix-product runs on the pool (wall) */
    double attn_par_s;  /* attention runs on the pool (wall) */
    double solo_s;      /* products and attention small enough to run on the caller alone */
    double quant_s;     /* before product runs: placing the int8 activations (and, for runs that stay
                         * on the caller, SwiGLU and quantization; pool runs do those inside) */
    moe_pool_stats pool;
} moe_engine_profile;
void moe_engine_profile_enable(moe_engine *e, bool on);
void moe_engine_profile_get(const moe_engine *e, moe_engine_profile *pr);

#endif
