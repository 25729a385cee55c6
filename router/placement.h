/*
 * placement.h — which worker rank hosts which routed experts, per MoE layer,
 * and the dispatch plan of a batch of tokens under a placement.
 *
 * A placement maps (layer, expert) to one or more ranks (replicas allowed).
 * The default is contiguous blocks: rank r hosts experts
 * [r·E/R, (r+1)·E/R) of every layer.  A placement file overrides it:
 *
 *     # layer   rank   experts
 *     *         0      0-7 12
 *     3         1      8-15 0
 *
 * one rule per line, '#' starts a comment; a layer is a block index of the
 * file (only MoE blocks may be named) or '*' for every MoE layer; experts
 * are ids and inclusive ranges separated by spaces or commas.  Every expert
 * of every MoE layer must end up on at least one rank.
 *
 * Memory is O(layers × experts × replicas); nothing is O(experts²).
 */
#ifndef MOE_ROUTER_PLACEMENT_H
#define MOE_ROUTER_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

#define MOE_PLACEMENT_MAX_RANKS 4096

typedef struct moe_placement moe_placement;

/* Shape shared by both constructors: blocks [first_moe, n_layer) are MoE. */
typedef struct moe_placement_shape {
    int n_layer;     /* blocks in the trunk */
    int first_moe;   /* leading dense blocks */
    int n_expert;    /* routed experts per MoE layer */
    int n_rank;      /* ranks in the worker job */
} moe_placement_shape;

int moe_placement_contiguous(moe_placement **out, const moe_placement_shape *shape, moe_err *err);
/* Parses placement-file text (need not be NUL-terminated). */
int moe_placement_parse(moe_placement **out, const moe_placement_shape *shape, const char *text, size_t len,
                        moe_err *err);
int moe_placement_load(moe_placement **out, const moe_placement_shape *shape, const char *path, moe_err *err);
void moe_placement_free(moe_placement *p);

const moe_placement_shape *moe_placement_shape_of(const moe_placement *p);
/* Ranks hosting (layer, expert), ascending; *n set to their count. */
const int32_t *moe_placement_hosts(const moe_placement *p, int layer, int expert, int *n);
bool moe_placement_rank_hosts(const moe_placement *p, int layer, int rank, int expert);
/* Experts of a layer hosted by rank (ascending) into ids (capacity n_expert);
 * returns their count. */
int moe_placement_rank_experts(const moe_placement *p, int layer, int rank, int32_t *ids);

/* (layer, expert) pairs of the MoE layers whose set of hosting ranks
 * differs between a and b (same shape). */
int64_t moe_placement_moved(const moe_placement *a, const moe_placement *b);

/*
 * Balancedness of the ranks under p for a load window: counts
 * [n_layer - first_moe][n_expert] (tokens per MoE layer and expert), each
 * expert's count split evenly over its replicas; per layer
 * mean_r load_r / max_r load_r (1 = even), averaged over the layers that
 * have any load.  -1 when no layer has any.
 */
double moe_placement_balancedness(const moe_placement *p, const int64_t *counts);

/*
 * Dispatch plan of one MoE layer on one home rank: n_tok tokens, each with
 * k expert ids (ascending, from the gate).  For every (token, slot) it picks
 * the rank that computes that expert: the home rank if it hosts a replica,
 * else a rank this token already visits, else the replica with the fewest
 * tokens so far in this plan (ties: lowest rank) — so a token is sent at
 * most once to each rank, and the choice is a pure function of the inputs.
 */
typedef struct moe_dispatch_plan {
    int n_rank;
    int n_tok, k;
    int32_t *slot_rank;   /* [n_tok × k] rank computing each (token, slot) */
    int32_t *send_count;  /* [n_rank] tokens sent to each rank (home rank included) */
    int32_t *send_offset; /* [n_rank + 1] prefix sums of send_count */
    int32_t *send_tok;    /* [send_offset[n_rank]] token index, grouped by rank, ascending within */
    size_t cap_tok;       /* capacity of the per-token arrays */
} moe_dispatch_plan;

void moe_dispatch_plan_init(moe_dispatch_plan *plan, int n_rank);
void moe_dispatch_plan_free(moe_dispatch_plan *plan);
/* Builds the plan; returns MOE_ERR if an id is out of range. */
int moe_dispatch_plan_build(moe_dispatch_plan *plan, const moe_placement *p, int layer, int home_rank, int n_tok,
                            int k, const int32_t *expert_ids, moe_err *err);

#endif
