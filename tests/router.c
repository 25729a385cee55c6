/*
 * router.c — gating functions: softmax/sigmoid, score-correction bias used
 * for selection only, group-limited top-k (sigmoid: sum of the two best
 * scores per group; softmax: the best), ties to the lowest id, weight
 * normalisation and scaling, ids ascending, configuration errors.
 */
#include <math.h>

#include "check.h"
#include "gate.h"

static moe_gate_cfg cfg(int n, int k, moe_gating g)
{
    moe_gate_cfg c = {n, k, g, 0, 0, false, 1.0f, NULL, NULL};
    return c;
}

static void test_softmax_topk(void)
{
    float lg[6] = {0.1f, 2.0f, -1.0f, 1.5f, 2.0f, 0.0f};
    moe_gate_cfg c = cfg(6, 2, MOE_GATING_SOFTMAX);
    int32_t ids[2];
    float w[2], probs[6];
    moe_gate_route(&c, lg, ids, w, probs);
    /* tie between 1 and 4 (both 2.0): both chosen, ascending */
    CHECK(ids[0] == 1 && ids[1] == 4);
    double z = 0;
    for (int i = 0; i < 6; i++) z += exp(lg[i]);
    CHECK(fabs(w[0] - exp(2.0) / z) < 1e-6 && fabs(w[1] - exp(2.0) / z) < 1e-6);
    double s = 0;
    for (int i = 0; i < 6; i++) s += probs[i];
    CHECK(fabs(s - 1) < 1e-6);
    /* k = 1 with a tie: the lower id wins */
    c.n_used = 1;
    moe_gate_route(&c, lg, ids, w, NULL);
    CHECK(ids[0] == 1);
}

static void test_bias_selection_only(void)
{
    float lg[4] = {1.0f, 0.0f, -1.0f, 0.5f};
    float bias[4] = {0.0f, 0.0f, 5.0f, 0.0f};
    moe_gate_cfg c = cfg(4, 2, MOE_GATING_SIGMOID);
    c.bias = bias;
    int32_t ids[2];
    float w[2];
    moe_gate_route(&c, lg, ids, w, NULL);
    /* expert 2 selected through its bias, but weighted by its probability */
    CHECK(ids[0] == 0 && ids[1] == 2);
    CHECK(fabs(w[0] - 1 / (1 + exp(-1.0))) < 1e-6);
    CHECK(fabs(w[1] - 1 / (1 + exp(1.0))) < 1e-6);
    /* normalisation and scale */
    c.norm_weights = true;
    c.scale = 2.5f;
    moe_gate_route(&c, lg, ids, w, NULL);
    const double p0 = 1 / (1 + exp(-1.0)), p2 = 1 / (1 + exp(1.0));
    CHECK(fabs(w[0] - 2.5 * p0 / (p0 + p2)) < 1e-5 && fabs(w[1] - 2.5 * p2 / (p0 + p2)) < 1e-5);
    /* tiny sum: divided by the floor 2^-14, not by the sum */
    float tiny[2] = {1e-6f, 1e-6f};
    moe_gate_cfg cn = cfg(4, 2, MOE_GATING_SIGMOID);
    cn.norm_weights = true;
    moe_gate_finish_weights(&cn, tiny, 2);
    CHECK(fabs(tiny[0] - 1e-6 / 6.103515625e-5) < 1e-9);
}

static void test_groups(void)
{
    /* 8 experts, 4 groups of 2, 2 groups used, 2 experts chosen */
    float s[8] = {0.9f, 0.0f, /* g0: max .9, sum .9 */ 0.5f, 0.5f, /* g1: max .5, sum 1.0 */
                  0.6f, 0.25f, /* g2: max .6, sum .85 */ 0.1f, 0.1f /* g3 */};
    moe_gate_cfg c = cfg(8, 2, MOE_GATING_SIGMOID);
    c.n_group = 4;
    c.n_group_used = 2;
    bool allowed[8];
    moe_gate_group_mask(&c, s, allowed);
    /* sigmoid: sums g1 = 1.0, g0 = .9, g2 = .85 */
    CHECK(allowed[2] && allowed[3] && allowed[0] && allowed[1] && !allowed[4] && !allowed[6]);
    c.gating = MOE_GATING_SOFTMAX;
    moe_gate_group_mask(&c, s, allowed);
    /* softmax: max g0 = .9, g2 = .6 */
    CHECK(allowed[0] && allowed[4] && !allowed[2] && !allowed[6]);
    /* whole route with groups: the global best (expert 4 via bias) is excluded */
    float lg[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float bias[8] = {0.3f, 0.3f, 0.2f, 0.2f, 0.0f, 0.5f, 0.0f, 0.0f};
    moe_gate_cfg r = cfg(8, 2, MOE_GATING_SIGMOID);
    r.n_group = 4;
    r.n_group_used = 1;
    r.bias = bias;
    int32_t ids[2];
    float w[2];
    moe_gate_route(&r, lg, ids, w, NULL);
    /* s = .5 + bias; group sums g0 = 1.6, g1 = 1.4, g2 = 1.5 → only g0, though expert 5 has the best s */
    CHECK(ids[0] == 0 && ids[1] == 1);
    CHECK(fabs(w[0] - 0.5) < 1e-6);
}

/* Node-limited routing, worked by hand: 8 experts on 4 units, 2 each
 * (unit = expert / 2), scores exact in binary so no sum rounds:
 *   s      .875 0 | .5 .5 | .625 .25 | .125 .75
 *   units  u0 .875, u1 1.0, u2 .875, u3 .875 (sum of the two best) */
static void test_unit_limit(void)
{
    const float s[8] = {0.875f, 0.0f, 0.5f, 0.5f, 0.625f, 0.25f, 0.125f, 0.75f};
    const int32_t off[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8}, units[8] = {0, 0, 1, 1, 2, 2, 3, 3};
    moe_gate_limit lim = {.n_unit = 4, .max_units = 1, .unit_off = off, .units = units};
    moe_gate_cfg c = cfg(8, 2, MOE_GATING_SIGMOID);
    c.limit = &lim;
    bool allowed[8];
    int32_t ids[3];
    /* one unit: u1 (1.0) alone, so experts 2 and 3, not the global best 0 and 7 */
    for (int e = 0; e < 8; e++) allowed[e] = true;
    moe_gate_unit_mask(&c, s, allowed);
    CHECK(!allowed[0] && !allowed[1] && allowed[2] && allowed[3] && !allowed[4] && !allowed[7]);
    moe_gate_topk(s, allowed, 8, 2, ids);
    CHECK(ids[0] == 2 && ids[1] == 3);
    moe_gate_topk(s, NULL, 8, 2, ids);
    CHECK(ids[0] == 0 && ids[1] == 7); /* what the model alone picks */
    /* two units: u1, then the three-way tie at .875 goes to the lowest, u0 */
    lim.max_units = 2;
    for (int e = 0; e < 8; e++) allowed[e] = true;
    moe_gate_unit_mask(&c, s, allowed);
    CHECK(allowed[0] && allowed[1] && allowed[2] && allowed[3] && !allowed[4] && !allowed[6] && !allowed[7]);
    moe_gate_topk(s, allowed, 8, 2, ids);
    CHECK(ids[0] == 0 && ids[1] == 2); /* .875, then .5 (2 before 3 on the tie) */
    /* one unit but 3 experts wanted: u1 hosts only 2, so u0 is added */
    lim.max_units = 1;
    c.n_used = 3;
    for (int e = 0; e < 8; e++) allowed[e] = true;
    moe_gate_unit_mask(&c, s, allowed);
    CHECK(allowed[0] && allowed[1] && allowed[2] && allowed[3] && !allowed[4] && !allowed[7]);
    moe_gate_topk(s, allowed, 8, 3, ids);
    CHECK(ids[0] == 0 && ids[1] == 2 && ids[2] == 3);
    /* a replica of expert 7 on u1: u1 scores .75 + .5 = 1.25 and hosts 2, 3, 7 */
    const int32_t off2[9] = {0, 1, 2, 3, 4, 5, 6, 7, 9}, units2[9] = {0, 0, 1, 1, 2, 2, 3, 3, 1};
    lim.unit_off = off2;
    lim.units = units2;
    c.n_used = 2;
    for (int e = 0; e < 8; e++) allowed[e] = true;
    moe_gate_unit_mask(&c, s, allowed);
    CHECK(allowed[2] && allowed[3] && allowed[7] && !allowed[0] && !allowed[6]);
    moe_gate_topk(s, allowed, 8, 2, ids);
    CHECK(ids[0] == 2 && ids[1] == 7);
    /* through the whole gate: logits 0 (probability .5 each), s from the
     * bias; with the limit the weights are the kept experts' */
    float lg[8] = {0}, bias[8], w[2];
    for (int e = 0; e < 8; e++) bias[e] = s[e] - 0.5f;
    lim.unit_off = off;
    lim.units = units;
    c.bias = bias;
    c.norm_weights = true;
    moe_gate_route(&c, lg, ids, w, NULL);
    CHECK(ids[0] == 2 && ids[1] == 3 && w[0] == 0.5f && w[1] == 0.5f);
    c.limit = NULL;
    moe_gate_route(&c, lg, ids, w, NULL);
    CHECK(ids[0] == 0 && ids[1] == 7);
}

static void test_check(void)
{
    moe_err err;
    moe_gate_cfg c = cfg(16, 4, MOE_GATING_SIGMOID);
    CHECK(moe_gate_check(&c, &err) == MOE_OK);
    c.n_used = 17;
    CHECK(moe_gate_check(&c, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "experts used 17");
    c = cfg(16, 4, MOE_GATING_SIGMOID);
    c.n_group = 3;
    c.n_group_used = 1;
    CHECK(moe_gate_check(&c, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "not a multiple of the group count");
    c.n_group = 8;
    c.n_group_used = 1;
    CHECK(moe_gate_check(&c, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "cannot hold 4 selected");
    c = cfg(16, 4, (moe_gating)3);
    CHECK(moe_gate_check(&c, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "gating function 3");
}

int main(void)
{
    test_softmax_topk();
    test_bias_selection_only();
    test_groups();
    test_unit_limit();
    test_check();
    return check_summary("router");
}
