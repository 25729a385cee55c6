/*
 * gate.c — gating steps.  Everything is per token and uses fixed-size
 * stack buffers (bounded by MOE_GATE_MAX_EXPERTS), so it allocates nothing.
 */
#include "gate.h"

#include "kern.h"

#include <math.h>
#include <string.h>

int moe_gate_check(const moe_gate_cfg *c, moe_err *err)
{
    if (c->n_expert < 1 || c->n_expert > MOE_GATE_MAX_EXPERTS)
        return moe_err_set(err, "expert count %d is not in 1..%d", c->n_expert, MOE_GATE_MAX_EXPERTS);
    if (c->n_used < 1 || c->n_used > c->n_expert || c->n_used > MOE_GATE_MAX_USED)
        return moe_err_set(err, "experts used %d is not in 1..%d", c->n_used,
                           c->n_expert < MOE_GATE_MAX_USED ? c->n_expert : MOE_GATE_MAX_USED);
    if (c->gating != MOE_GATING_SOFTMAX && c->gating != MOE_GATING_SIGMOID)
        return moe_err_set(err, "gating function %d is not softmax (1) or sigmoid (2)", (int)c->gating);
    if (c->n_group > 1) {
        if (c->n_expert % c->n_group != 0)
            return moe_err_set(err, "expert count %d is not a multiple of the group count %d", c->n_expert, c->n_group);
        if (c->n_group_used < 1 || c->n_group_used > c->n_group)
            return moe_err_set(err, "groups used %d is not in 1..%d", c->n_group_used, c->n_group);
        if ((int64_t)c->n_group_used * (c->n_expert / c->n_group) < c->n_used)
            return moe_err_set(err, "groups used %d × %d experts each cannot hold %d selected experts",
                               c->n_group_used, c->n_expert / c->n_group, c->n_used);
        if (c->gating == MOE_GATING_SIGMOID && c->n_expert / c->n_group < 2)
            return moe_err_set(err, "sigmoid group scoring needs at least 2 experts per group");
    } else if (c->n_group < 0) {
        return moe_err_set(err, "group count %d is negative", c->n_group);
    }
    if (!isfinite(c->scale)) return moe_err_set(err, "expert weights scale is not finite");
    return MOE_OK;
}

/* The engine's attention uses the same function (one summation order). */
void moe_gate_softmax(const float *logits, float *probs, int n) { moe_kern_softmax(logits, probs, n); }

void moe_gate_sigmoid(const float *logits, float *probs, int n)
{
    for (int i = 0; i < n; i++) probs[i] = 1.0f / (1.0f + expf(-logits[i]));
}

void moe_gate_group_mask(const moe_gate_cfg *cfg, const float *s, bool *allowed)
{
    const int G = cfg->n_group, per = cfg->n_expert / G;
    float gscore[MOE_GATE_MAX_EXPERTS];
    for (int g = 0; g < G; g++) {
        float b1 = -INFINITY, b2 = -INFINITY; /* largest, second largest */
        for (int j = 0; j < per; j++) {
            float v = s[g * per + j];
            if (v > b1) {
                b2 = b1;
                b1 = v;
            } else if (v > b2) {
                b2 = v;
            }
        }
        gscore[g] = cfg->gating == MOE_GATING_SIGMOID ? b1 + b2 : b1;
    }
    int32_t best[MOE_GATE_MAX_EXPERTS];
    moe_gate_topk(gscore, NULL, G, cfg->n_group_used, best);
    for (int e = 0; e < cfg->n_expert; e++) allowed[e] = false;
    for (int k = 0; k < cfg->n_group_used; k++)
        for (int j = 0; j < per; j++) allowed[best[k] * per + j] = true;
}

void moe_gate_unit_mask(const moe_gate_cfg *cfg, const float *s, bool *allowed)
{
    const moe_gate_limit *lim = cfg->limit;
    const int U = lim->n_unit, E = cfg->n_expert;
    MOE_ASSERT(U >= 1 && U <= MOE_GATE_MAX_UNITS && lim->max_units >= 1);
    float b1[MOE_GATE_MAX_UNITS], b2[MOE_GATE_MAX_UNITS];
    int hosted[MOE_GATE_MAX_UNITS];
    for (int u = 0; u < U; u++) b1[u] = b2[u] = -INFINITY, hosted[u] = 0;
    for (int e = 0; e < E; e++) {
        if (!allowed[e]) continue;
        for (int32_t i = lim->unit_off[e]; i < lim->unit_off[e + 1]; i++) {
            const int u = lim->units[i];
            const float v = s[e];
            hosted[u]++;
            if (v > b1[u]) {
                b2[u] = b1[u];
                b1[u] = v;
            } else if (v > b2[u]) {
                b2[u] = v;
            }
        }
    }
    /* keep units best first (ties: lowest unit) until max_units are kept
     * and they host n_used allowed experts */
    bool keep[MOE_GATE_MAX_UNITS] = {false};
    int kept = 0, reach = 0;
    for (;;) {
        int best = -1;
        float bs = 0;
        for (int u = 0; u < U; u++) {
            if (keep[u] || hosted[u] == 0) continue;
            const float sc = hosted[u] > 1 ? b1[u] + b2[u] : b1[u];
            if (best < 0 || sc > bs) best = u, bs = sc;
        }
        if (best < 0) break;
        keep[best] = true;
        kept++;
        reach = 0; /* allowed experts on kept units */
        for (int e = 0; e < E; e++) {
            if (!allowed[e]) continue;
            for (int32_t i = lim->unit_off[e]; i < lim->unit_off[e + 1]; i++)
                if (keep[lim->units[i]]) {
                    reach++;
                    break;
                }
        }
        if (kept >= lim->max_units && reach >= cfg->n_used) break;
    }
    for (int e = 0; e < E; e++) {
        if (!allowed[e]) continue;
        bool on = false;
        for (int32_t i = lim->unit_off[e]; i < lim->unit_off[e + 1] && !on; i++) on = keep[lim->units[i]];
        allowed[e] = on;
    }
}

void moe_gate_topk(const float *s, const bool *allowed, int n, int k, int32_t *ids)
{
    bool taken[MOE_GATE_MAX_EXPERTS] = {false};
    MOE_ASSERT(n >= 1 && n <= MOE_GATE_MAX_EXPERTS && k >= 1 && k <= n);
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < n; e++) {
            if (taken[e] || (allowed && !allowed[e])) continue;
            if (best < 0 || s[e] > s[best]) best = e; /* strict: ties keep the lower id */
        }
        MOE_ASSERT(best >= 0);
        taken[best] = true;
    }
    int m = 0;
    for (int e = 0; e < n && m < k; e++)
        if (taken[e]) ids[m++] = e;
}

void moe_gate_finish_weights(const moe_gate_cfg *cfg, float *w, int k)
{
    if (cfg->norm_weights) {
        float sum = 0.0f;
        for (int j = 0; j < k; j++) sum += w[j];
        if (sum < 6.103515625e-5f) sum = 6.103515625e-5f;
        for (int j = 0; j < k; j++) w[j] /= sum;
    }
    if (cfg->scale != 0.0f && cfg->scale != 1.0f)
        for (int j = 0; j < k; j++) w[j] *= cfg->scale;
}

void moe_gate_route(const moe_gate_cfg *cfg, const float *logits, int32_t *ids, float *weights,
                    float *probs_out)
{
    const int n = cfg->n_expert;
    float probs[MOE_GATE_MAX_EXPERTS], s[MOE_GATE_MAX_EXPERTS];
    bool allowed[MOE_GATE_MAX_EXPERTS];
    if (cfg->gating == MOE_GATING_SOFTMAX) moe_gate_softmax(logits, probs, n);
    else moe_gate_sigmoid(logits, probs, n);
    for (int e = 0; e < n; e++) s[e] = cfg->bias ? probs[e] + cfg->bias[e] : probs[e];
    const bool grouped = cfg->n_group > 1 && cfg->n_group_used < cfg->n_group;
    if (grouped) moe_gate_group_mask(cfg, s, allowed);
    if (cfg->limit) { /* node-limited routing, among what the groups allow */
        if (!grouped)
            for (int e = 0; e < n; e++) allowed[e] = true;
        moe_gate_unit_mask(cfg, s, allowed);
    }
    const bool masked = grouped || cfg->limit;
    moe_gate_topk(s, masked ? allowed : NULL, n, cfg->n_used, ids);
    for (int j = 0; j < cfg->n_used; j++) weights[j] = probs[ids[j]];
    moe_gate_finish_weights(cfg, weights, cfg->n_used);
    if (probs_out) memcpy(probs_out, probs, (size_t)n * sizeof(float));
}
