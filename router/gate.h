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

typedef struct moe_gate_cfg {
    int n_expert;        /* 1..MOE_GATE_MAX_EXPERTS */
    int n_used;          /* 1..min(n_expert, MOE_GATE_MAX_USED) */
    moe_gating gating;
    int n_group;         /* 0 or 1 = no groups; else divides n_expert */
    int n_group_used;    /* 1..n_group */
    bool norm_weights;
    float scale;         /* routed scaling factor (0 or 1 = none) */
    const float *bias;   /* [n_expert] score correction, or NULL */
} moe_gate_cfg;

/* Checks a configuration (from a file): MOE_ERR with a message if invalid. */
int moe_gate_check(const moe_gate_cfg *cfg, moe_err *err);

/* The steps, each usable alone (tests, traces, other placements). */
void moe_gate_softmax(const float *logits, float *probs, int n);
void moe_gate_sigmoid(const float *logits, float *probs, int n);
/* Sets allowed[e] for the experts of the n_group_used best groups
 * (group ties: lowest group id).  s: [n_expert] selection scores. */
void moe_gate_group_mask(const moe_gate_cfg *cfg, const float *s, bool *allowed);
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
