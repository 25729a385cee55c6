/*
 * live.h — a new expert placement applied to a running worker job
 * (docs/routing.md, "Live rebalancing").
 *
 * Where a placement comes from, all on rank 0:
 *   - the coordinator (a SetPlacement control message, from
 *     `POST /admin/placement`), through moe_live_propose;
 *   - the batch test hook (`moe-worker --test-placement-at STEP:FILE`);
 *   - the automatic mode (`--rebalance-every N`): every N steps, from the
 *     job's own load window, by router/eplb.
 * Rank 0 proposes it in the step header (job.h's moe_job_ctl); every rank
 * then applies it at the same turn, before the same step:
 *
 *   1. rank 0's text is broadcast (empty: the automatic mode's turn);
 *   2. the load window: the (token, expert) pairs each rank ran per MoE
 *      layer and expert since the last change, summed over the ranks
 *      (every pair runs on exactly one rank, so this is every token's
 *      picks); the automatic mode computes its placement from it, EPLB
 *      with --rebalance-replicas redundant slots, on every rank alike;
 *   3. the text is parsed and checked whole on every rank against the
 *      model and the job (router/placement.c) and the ranks agree: a bad
 *      one changes nothing (rank 0 logs why; the coordinator is told) and
 *      the job steps on with the old one;
 *   4. the exchange takes the new placement (xchg.h; the combine does not
 *      depend on it, so no output bit changes), experts a rank no longer
 *      hosts are released (MADV_DONTNEED), the new ones read in
 *      (residency.h), and rank 0 logs the step, the experts moved and the
 *      ranks' balancedness over the window under the old and the new
 *      placement.
 */
#ifndef MOE_WORKER_LIVE_H
#define MOE_WORKER_LIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "comm.h"
#include "job.h"
#include "model.h"
#include "placement.h"
#include "xchg.h"

typedef struct moe_live moe_live;

typedef struct moe_live_opts {
    int64_t test_at_step;     /* >= 0: rank 0 proposes test_file's text before this step */
    const char *test_file;
    int64_t rebalance_every;  /* > 0: the automatic mode, every N steps */
    int rebalance_replicas;   /* redundant slots per layer (n_expert + this must divide by the ranks) */
    int node_limit;           /* > 0: node-limited routing, a token's experts on at most this many
                               * nodes of ranks_per_node ranks (router/gate.h), rebuilt from each
                               * placement applied; 0: the model's routing */
    int ranks_per_node;       /* >= 1 (1: the units are ranks) */
} moe_live_opts;

/* What became of a placement (for the coordinator). */
typedef struct moe_live_result {
    uint64_t id;              /* the proposal's (0: the hook or the automatic mode) */
    bool ok;
    const char *message;      /* why not, or "" */
    int64_t step;             /* the step it applies before */
    int64_t moved;            /* (layer, expert) pairs whose hosts changed */
    double bal_before, bal_after; /* -1: no load in the window */
} moe_live_result;

/* *pl is the job's placement: the live module replaces it (and frees the
 * old one) as it applies new ones.  Rank 0 reads the test file here. */
int moe_live_init(moe_live **out, const moe_live_opts *o, moe_comm *c, const moe_model *m, moe_engine *e,
                  moe_xchg *x, moe_placement **pl, moe_err *err);
void moe_live_free(moe_live *l);

/* Rank 0: a placement file's text to apply at the next turn (a newer
 * proposal replaces one not yet applied). */
void moe_live_propose(moe_live *l, const char *text, size_t len, uint64_t id);

/* Rank 0: told of each outcome (e.g. the coordinator link). */
void moe_live_set_report(moe_live *l, void (*report)(void *ctx, const moe_live_result *r), void *ctx);

/* Placements applied so far (every rank the same). */
int64_t moe_live_applied(const moe_live *l);

/* The job loop's control hooks. */
moe_job_ctl moe_live_ctl(moe_live *l);

/* A placement file's text of an EPLB result (phy2log [layers][slots],
 * rank r holding slots [r·P/R, (r+1)·P/R), each expert once a rank),
 * malloc'd, its length in *len. */
char *moe_live_eplb_text(const int32_t *phy2log, int n_moe_layers, int first_moe, int n_phy, int n_rank, int n_expert,
                         size_t *len);

#endif
