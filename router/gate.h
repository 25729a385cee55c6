/*
 * gate.h — DeepSeekMoE gating as pure functions: from one token's router
 * logits to the experts it visits and their weights.
 *
 *   probs  = softmax(logits) (DeepSeek-V2) or sigmoid(logits) (V3)
 *   s      = probs + bias            (score-correction bias; selection only)
 *   groups : experts form n_group groups of consecutive ids; a group scores
 *            the sum of its two largest s (sigmoid) or its largest s
 *            (softmax); only the n_group_used best groups compete
 *   top-k  : the n_used experts with the largest s (ties: lowest id)
 *   w      = probs of those experts; optionally w /= max(Σw, 2^-14);
 *            w *= scale unless scale is 0 or 1
 *
 * Node-limited routing (a research option, off unless cfg.limit is set; it
 * changes the model's answer): experts live on units (ranks, or nodes of
 * ranks), and a token may visit at most max_units of them, chosen as
 * DeepSeek-V3 chooses expert groups: a unit scores the sum of the two
 * largest s among the (still allowed) experts it hosts (its largest alone
 * if it hosts one), the max_units best units are kept (ties: lowest unit),
 * and top-k runs among the experts they host.  Should the kept units host
 * fewer than n_used allowed experts, the next best units are added until
 * they host enough.  With replicas an expert counts for every unit that
 * hosts it.
 *
 * The result lists the chosen experts in ascending id order, which is the
 * order the MoE layer sums them in on the token's home rank.
 */
#ifndef MOE_ROUTER_GATE_H
#define MOE_ROUTER_GATE_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"

#define MOE_GATE_MAX_EXPERTS 1024
#define MOE_GATE_MAX_USED 64

typedef enum { MOE_GATING_SOFTMAX = 1, MOE_GATING_SIGMOID = 2 } moe_gating;

#define MOE_GATE_MAX_UNITS 4096

/* Which units host each expert (CSR): units[unit_off[e] .. unit_off[e+1]). */
typedef struct moe_gate_limit {
    int n_unit;              /* 1..MOE_GATE_MAX_UNITS */
    int max_units;           /* a token visits at most this many (>= 1) */
    const int32_t *unit_off; /* [n_expert + 1] */
    const int32_t *units;    /* [unit_off[n_expert]] each in [0, n_unit) */
} moe_gate_limit;

typedef struct moe_gate_cfg {
    int n_expert;        /* 1..MOE_GATE_MAX_EXPERTS */
    int n_used;          /* 1..min(n_expert, MOE_GATE_MAX_USED) */
    moe_gating gating;
    int n_group;         /* 0 or 1 = no groups; else divides n_expert */
    int n_group_used;    /* 1..n_group */
    bool norm_weights;
    float scale;         /* routed scaling factor (0 or 1 = none) */
    const float *bias;   /* [n_expert] score correction, or NULL */
    const moe_gate_limit *limit; /* node-limited routing, or NULL (the model's routing) */
} moe_gate_cfg;

/* Checks a configuration (from a file): MOE_ERR with a message if invalid. */
int moe_gate_check(const moe_gate_cfg *cfg, moe_err *err);

/* The steps, each usable alone (tests, traces, other placements). */
void moe_gate_softmax(const float *logits, float *probs, int n);
void moe_gate_sigmoid(const float *logits, float *probs, int n);
/* Sets allowed[e] for the experts of the n_group_used best groups
 * (group ties: lowest group id).  s: [n_expert] selection scores. */
void moe_gate_group_mask(const moe_gate_cfg *cfg, const float *s, bool *allowed);
/* Node limit: clears allowed[e] (in place) for the experts outside the
 * units kept for this token (see above); k = cfg->n_used. */
void moe_gate_unit_mask(const moe_gate_cfg *cfg, const float *s, bool *allowed);
/* The k largest s among allowed (NULL = all), ids ascending; ties lowest id. */
void moe_gate_topk(const float *s, const bool *allowed, int n, int k, int32_t *ids);
/* Normalisation and scaling of the selected weights (in place). */
void moe_gate_finish_weights(const moe_gate_cfg *cfg, float *w, int k);

/*
 * The whole gate for one token.  logits: [n_expert]; ids, weights:
 * [n_used] out, ids ascending.  probs_out (optional, [n_expert]).
 */
void moe_gate_route(const moe_gate_cfg *cfg, const float *logits, int32_t *ids, float *weights,
                    float *probs_out);

#endif
