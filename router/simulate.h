/*
 * simulate.h — a routing trace replayed on a hypothetical expert-parallel
 * cluster: which rank runs each (token, expert), the bytes the exchange
 * moves, and a projected time from a cost model.  Pure arithmetic on the
 * trace; nothing here calls the worker's exchange.
 *
 * Ranks: R = the placement's ranks, node(r) = r / ranks_per_node.
 * Home of a row: the recorded home rank, or with rehome req mod R (a trace
 * from 2 ranks replayed on 320 spreads its sequences over all of them).
 *
 * Which rank runs (token, expert e): the home rank if it hosts e; else a
 * rank this token already visits that hosts e (the lowest); else the host
 * with the fewest tokens sent to it so far in this step (ties: lowest
 * rank).  This is the rule of router/placement's dispatch plan, written
 * again here from its description; with one host per expert it is exact,
 * with replicas the step's counters are shared by all home ranks (the
 * worker counts per home rank), so replica choices can differ.
 *
 * Bytes, as worker/xchg.c sends them:
 *   dispatch: one row per (token, rank it visits ≠ home): K int32 ids and
 *             D floats (4·(D + K) bytes), or the layer's disp_row bytes
 *             (the int8 path's quantized rows, moe_model_dispatch_row_bytes);
 *   combine:  one row of D floats per (token, expert) run off its home rank.
 * A row is inter-node when the two ranks are on different nodes.
 *
 * Steps: the rows of each layer, in trace order, are cut into steps of
 * `batch` tokens.  Cost of one layer of one step (seconds):
 *   compute_r = calls_r · expert_call + pairs_r · expert_row
 *               (calls: experts with work on rank r; pairs: (token, expert))
 *   net_r(phase) = inter_bytes_r / link + intra_bytes_r / memcpy
 *                  + latency if rank r sends or receives inter-node rows
 *                  (bytes_r = max(sent, received) of rank r in that phase)
 *   layer = max_r net_r(dispatch) + max_r compute_r + max_r net_r(combine)
 * and a step is the sum of its layers.  Attention, shared experts and dense
 * layers are not in it (they do not depend on the placement).
 *
 * Node limit (node_limit M > 0; an ESTIMATE of what router/gate.h's
 * node-limited routing would move, since a trace records the chosen
 * experts and their weights, not every score): per row, a node scores the
 * sum of the two largest recorded weights of the row's experts it hosts
 * (an expert counts on its home-node host if it has one, else its first
 * host); the M best nodes are kept (ties: lowest node).  The experts on
 * the other nodes stand for experts the limited gate would pick instead,
 * on a kept node: each runs on the home rank if the home node is kept,
 * else on the first rank the row already visits on a kept node, else on
 * the lowest rank of the best kept node hosting one of the row's experts.
 */
#ifndef MOE_ROUTER_SIMULATE_H
#define MOE_ROUTER_SIMULATE_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"
#include "placement.h"
#include "trace.h"

typedef struct moe_sim_cfg {
    const moe_placement *p;
    int ranks_per_node;      /* >= 1, divides the ranks */
    int dim;                 /* hidden size D */
    int batch;               /* tokens a step, >= 1 */
    bool rehome;
    int node_limit;          /* > 0: the node-limited estimate above; 0: as recorded */
    double link_gbps;        /* inter-node, per rank, Gbit/s */
    double latency_us;       /* inter-node, one exchange */
    double memcpy_gbps;      /* intra-node, GB/s (calibrated) */
    double expert_call_us;   /* per expert with work (calibrated) */
    double expert_row_us;    /* per (token, expert) row (calibrated) */
    const uint64_t *disp_row; /* NULL (float rows), or [layer]: a dispatched row's bytes, every traced layer */
} moe_sim_cfg;

typedef struct moe_sim_result {
    int n_rank;
    uint64_t rows;              /* trace rows (token × layer) replayed */
    uint64_t steps;             /* layer-steps */
    uint64_t *rank_pairs;       /* [n_rank] (token, expert) pairs run */
    uint64_t *rank_sent;        /* [n_rank] bytes sent (both phases) */
    uint64_t disp_intra, disp_inter, comb_intra, comb_inter; /* bytes */
    double t_compute, t_net;    /* projected seconds over all steps */
} moe_sim_result;

int moe_sim_run(const moe_trace *t, const moe_sim_cfg *c, moe_sim_result *r, moe_err *err);
void moe_sim_result_free(moe_sim_result *r);

#endif
