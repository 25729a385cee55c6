/*
 * xchg.h — the routed-expert half of a MoE layer across the ranks of the
 * worker job (expert parallelism).
 *
 * For the token rows of its own sequences, a rank (the home rank):
 *   start:    builds the dispatch plan (router/placement: each token goes at
 *             most once to each rank, the home rank preferred) and starts
 *             the dispatch all-to-all: a row is the K expert ids that
 *             rank must run for the token (int32, -1 for the others), then
 *             the token's normed hidden state: as floats on the float path;
 *             on the int8 path as the blocks the receiver's gate and up
 *             would quantize it to (moe_engine_expert_act_type: the same
 *             bits, about a quarter of the bytes), quantized once by the
 *             home rank (moe_model_dispatch_row_bytes: a row's size);
 *   progress: drives the exchange while the engine computes the shared
 *             experts (overlap);
 *   finish:   waits for the rows sent to it, runs its experts on them grouped
 *             by expert (ascending; the experts with rows from other ranks
 *             first), returns each (token, expert) output of another rank's
 *             token to that home rank (the combine, driven while the experts
 *             with only its own rows run) and puts its own tokens' outputs
 *             and the rows it gets back at y[t·K + j], so the engine sums
 *             them in expert-id order exactly as in one process: the answer
 *             does not depend on the ranks.
 * Every rank calls start/finish for every MoE layer of every step, with zero
 * rows when it has none (lockstep).
 */
#ifndef MOE_WORKER_XCHG_H
#define MOE_WORKER_XCHG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base.h"
#include "comm.h"
#include "engine.h"
#include "placement.h"

typedef struct moe_xchg moe_xchg;

/* Per MoE layer counters since init. */
typedef struct moe_xchg_layer_stats {
    uint64_t bytes_sent, bytes_recv;       /* dispatch + combine, this rank */
    uint64_t rows_sent, rows_recv;         /* dispatch rows (tokens) */
    double t_compute, t_exchange, t_overlap; /* seconds */
    uint64_t *tokens_per_expert;           /* [n_expert]: tokens this rank ran per expert */
} moe_xchg_layer_stats;

int moe_xchg_init(moe_xchg **out, moe_comm *c, moe_engine *e, const moe_placement *p, moe_err *err);
void moe_xchg_free(moe_xchg *x);

/* h: [n][dim] normed rows; ids: [n][K] ascending per token. */
void moe_xchg_start(moe_xchg *x, int il, const float *h, int n, const int32_t *ids);
void moe_xchg_progress(moe_xchg *x);
/* y: [n·K][dim] (unused when n == 0).  Through the hook of a one-rank job
 * (moe_xchg_hook) it also runs the layer's shared experts on h, which the
 * engine then leaves to it; called directly, never. */
void moe_xchg_finish(moe_xchg *x, int il, float *y);

/* A new placement of the same shape, between steps (no layer in flight);
 * it must outlive its use, as the first one. */
int moe_xchg_set_placement(moe_xchg *x, const moe_placement *p, moe_err *err);

/* The engine hook that runs the routed experts through this exchange. */
void moe_xchg_hook(moe_xchg *x, moe_engine_moe_hook *hook);

/*
 * Routing trace: one line per token and MoE layer, written with O_APPEND
 * whole-line writes to fd (ranks may share a file):
 *   layer req pos home_rank e1,e2,.. w1,w2,.. r1,r2,..
 * experts ascending, their weights, and the rank that ran each.  req is
 * seq_req[engine sequence id] (the caller's request number).
 */
void moe_xchg_set_trace(moe_xchg *x, int fd, const int64_t *seq_req);
void moe_xchg_flush_trace(moe_xchg *x);

/*
 * The recorder's rows (core/exprec.h): while on, every row this rank routes
 * (its own sequences' tokens, at every MoE layer) is packed with the job's
 * step (every rank counts the same steps: each calls start for every MoE
 * layer of every step), the token (token_of(ctx, engine sequence,
 * position)), the request (seq_req, as for the trace), the experts, the
 * rank that runs each and the weights.  Off (the default) costs a branch.
 * moe_xchg_record_take hands the packed rows over (n rows; the buffer is
 * the exchange's, valid until the next step) and empties it; rows past
 * max_bytes since the last take are dropped and counted.
 */
void moe_xchg_set_record(moe_xchg *x, bool on, int32_t (*token_of)(void *ctx, int seq, int64_t pos), void *ctx,
                         size_t max_bytes);
const uint8_t *moe_xchg_record_take(moe_xchg *x, size_t *n, uint64_t *dropped);

const moe_xchg_layer_stats *moe_xchg_stats(const moe_xchg *x, int il);

/* A function called at every MoE layer (from the step's thread), e.g. to
 * keep heartbeats going during a long step. */
void moe_xchg_set_tick(moe_xchg *x, void (*tick)(void *), void *ctx);

#endif
