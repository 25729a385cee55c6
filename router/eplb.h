/*
 * eplb.h — expert-parallel load balancing with redundant experts, the
 * algorithm of DeepSeek's published EPLB (eplb.py), written for this
 * project.  A pure function from a load matrix to a placement of
 * physical expert slots:
 *
 *   weight   [L][E]   load of each logical expert (tokens), finite, >= 0
 *   P  = num_replicas physical slots per layer (P >= E, P % gpus == 0)
 *   G  = num_groups, N = num_nodes, R = num_gpus (ranks; R % N == 0)
 *
 *   phy2log  [L][P]          logical expert in physical slot p; slot p
 *                            lives on rank p / (P/R)
 *   phyrank  [L][P]          which replica of its expert slot p is (0..)
 *   logcnt   [L][E]          replicas of each logical expert (>= 1)
 *   log2phy  [L][E][maxcnt]  the slots of each expert by replica, -1 padded;
 *                            maxcnt = the largest logcnt of all layers
 *
 * Policy: hierarchical when N divides G (then E % G must be 0), else
 * global (which is the hierarchical policy with one group and one node):
 *   1. pack the G groups (load = sum of their experts) onto the N nodes,
 *      G/N groups each, by balanced packing;
 *   2. on each node, replicate its E/N experts into P/N slots: each extra
 *      slot goes to the expert with the largest load / replicas;
 *   3. pack each node's P/N slots (load = expert load / replicas) onto its
 *      R/N ranks, P/R slots each, by balanced packing.
 * Balanced packing: items in descending order of load, each into the
 * lightest pack that still has room.
 *
 * Ties are broken as eplb.py (torch on CPU) breaks them, so that the same
 * input gives the same phy2log:
 *   - the largest load / replicas: the lowest expert id (torch.max);
 *   - the lightest pack: the lowest pack index (Python's min);
 *   - the descending sort: libstdc++'s std::sort (introsort: median of
 *     three, unguarded partition, heap sort past depth 2·floor(log2 n),
 *     insertion sort of runs of 16 or fewer), which moe_eplb_sort_desc
 *     reproduces step by step; for 16 items or fewer that is an insertion
 *     sort, so equal loads stay in index order.  Beyond 16 items equal
 *     loads come out in whatever order that std::sort leaves them, which
 *     is what torch's non-stable CPU sort gives as long as it calls
 *     libstdc++'s std::sort with a strict "greater" (it does in the
 *     versions we read); another sort in another torch build can differ
 *     for equal loads only.
 * Loads are float32 and summed and divided in float32 in eplb.py's
 * order, so integer loads (token counts < 2^24) give bit-equal decisions.
 */
#ifndef MOE_ROUTER_EPLB_H
#define MOE_ROUTER_EPLB_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"

#define MOE_EPLB_MAX_EXPERTS (1 << 16)
#define MOE_EPLB_MAX_SLOTS (1 << 20)  /* physical slots per layer */
#define MOE_EPLB_MAX_CELLS (1 << 26)  /* layers × slots */

typedef struct moe_eplb_params {
    int num_replicas; /* physical slots per layer */
    int num_groups;
    int num_nodes;
    int num_gpus;
} moe_eplb_params;

typedef struct moe_eplb_result {
    int n_layer, n_log, n_phy, max_cnt;
    bool hierarchical;
    int32_t *phy2log;  /* [n_layer][n_phy] */
    int32_t *phyrank;  /* [n_layer][n_phy] */
    int32_t *logcnt;   /* [n_layer][n_log] */
    int32_t *log2phy;  /* [n_layer][n_log][max_cnt] */
} moe_eplb_result;

/* Checks the shapes and parameters and every load; MOE_ERR with the reason
 * (nothing allocated) for bad input. */
int moe_eplb_rebalance(moe_eplb_result *out, const float *weight, int n_layer, int n_log, const moe_eplb_params *prm,
                       moe_err *err);
void moe_eplb_result_free(moe_eplb_result *r);

/* The steps, for tests.  idx[0..n) <- 0..n-1 ordered by v descending, as
 * libstdc++'s std::sort orders (value, index) pairs compared by value. */
void moe_eplb_sort_desc(const float *v, int n, int32_t *idx);
/* Balanced packing of n items onto m packs of n/m (m divides n). */
void moe_eplb_pack(const float *w, int n, int m, int32_t *pack, int32_t *rank_in_pack);
/* Replication of n_log experts into n_phy slots. */
void moe_eplb_replicate(const float *w, int n_log, int n_phy, int32_t *phy2log, int32_t *phyrank, int32_t *logcnt);

#endif
