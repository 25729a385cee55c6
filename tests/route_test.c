/*
 * route_test.c — router/trace (the reader of moe-worker --trace: good
 * lines, every kind of bad line refused with its line number) and
 * router/simulate on a case worked by hand (the working is in the
 * comment): which rank runs each (token, expert), bytes by phase and
 * node, per-rank pairs, the cost model's seconds.
 */
#include <math.h>
#include <string.h>

#include "check.h"
#include "simulate.h"
#include "trace.h"

static int parse(moe_trace *t, const char *s, moe_err *err) { return moe_trace_parse(t, s, strlen(s), err); }

static void test_trace_good(void)
{
    moe_trace t;
    moe_err err = {0};
    const char *s = "3 7 0 1 2,5,9 0.5,0.25,1e-3 1,0,1\n\n"
                    "4 7 0 1 0,5,6 0.1,0.2,0.3 0,0,2\r\n"
                    "3 -1 12 0 1,2,3 1,1,1 0,0,0";
    CHECK(parse(&t, s, &err) == MOE_OK);
    CHECK(t.n == 3 && t.k == 3 && t.min_layer == 3 && t.max_layer == 4 && t.max_expert == 9 && t.max_rank == 2);
    CHECK(t.layer[1] == 4 && t.req[2] == -1 && t.pos[2] == 12 && t.home[0] == 1);
    CHECK(t.ids[3] == 0 && t.ids[5] == 6 && t.ranks[5] == 2 && fabsf(t.w[2] - 1e-3f) < 1e-9f);
    uint64_t *c = moe_trace_counts(&t, 10, &err);
    CHECK(c != NULL);
    if (c) {
        /* layer 3: 2,5,9 and 1,2,3; layer 4: 0,5,6 */
        CHECK(c[2] == 2 && c[5] == 1 && c[9] == 1 && c[1] == 1 && c[0] == 0);
        CHECK(c[10 + 0] == 1 && c[10 + 5] == 1 && c[10 + 6] == 1 && c[10 + 2] == 0);
    }
    free(c);
    CHECK(moe_trace_counts(&t, 9, &err) == NULL);
    CHECK_CONTAINS(err.msg, "expert 9");
    moe_trace_free(&t);
}

static void test_trace_bad(void)
{
    static const struct { const char *text, *msg; } cases[] = {
        {"", "no rows"},
        {"\n\n", "no rows"},
        {"1 0 0 0 1,2 0.5,0.5 0,0\n1 0 1 0 1,2,3 0.5,0.5,0.5 0,0,0\n", "line 2: more than 2 values in field 5"},
        {"1 0 0 0 1,2 0.5,0.5 0,0\n1 0 1 0 1 0.5 0\n", "line 2: expected 2 comma-separated values in field 5"},
        {"1 0 0 0 2,1 0.5,0.5 0,0\n", "not ascending"},
        {"1 0 0 0 1,1 0.5,0.5 0,0\n", "not ascending"},
        {"1 0 0 0 1,2 0.5,nan 0,0\n", "bad weight 2"},
        {"1 0 0 0 1,2 0.5,inf 0,0\n", "bad weight 2"},
        {"1 0 0 0 1,2 0.5,0.5 0,4096\n", "bad rank 2"},
        {"1 0 0 0 1,65536 0.5,0.5 0,0\n", "bad expert 2"},
        {"1 0 0 0 -1,2 0.5,0.5 0,0\n", "bad expert 1"},
        {"4096 0 0 0 1,2 0.5,0.5 0,0\n", "bad layer"},
        {"1 0 -1 0 1,2 0.5,0.5 0,0\n", "bad position"},
        {"1 0 0 x 1,2 0.5,0.5 0,0\n", "bad home rank"},
        {"1 0 0 0 1,2 0.5,0.5 0,0 extra\n", "unexpected text"},
        {"1 99999999999999999999 0 0 1 1 0\n", "bad request"},
        {"1 0 0 0 1,2 0.5,0.5\n", "bad rank 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        moe_trace t;
        moe_err err = {0};
        CHECK_MSG(parse(&t, cases[i].text, &err) == MOE_ERR, "case %zu accepted", i);
        CHECK_CONTAINS(err.msg, cases[i].msg);
        CHECK(t.ids == NULL && t.n == 0);
    }
    /* K above the cap */
    char line[1024] = "1 0 0 0 ";
    for (int j = 0; j < 65; j++) snprintf(line + strlen(line), sizeof line - strlen(line), j ? ",%d" : "%d", j);
    moe_trace t;
    moe_err err = {0};
    CHECK(parse(&t, line, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "65 experts a token");
}

/*
 * Simulation by hand.  Blocks 0..1, block 1 MoE, 4 experts, 4 ranks on 2
 * nodes (ranks 0, 1 | 2, 3); rank r hosts expert r, expert 0 also on 3.
 * D = 10, K = 2: dispatch rows (10 + 2)·4 = 48 B, combine rows 40 B.
 *   A: home 0, experts 0, 1: 0 at home; 1 -> rank 1 (intra).
 *      step counts: rank 0: 1 (home), rank 1: 1.
 *   B: home 2, experts 0, 3: 0 on {0, 3}, home not among them, no rank
 *      visited yet -> the fewer sent: rank 3 (0 < 1); 3 -> rank 3, visited.
 *      dispatch 1 row 2->3 (intra), combine 2 rows 3->2 (intra).
 *   C: home 1, experts 2, 3 -> ranks 2 and 3, both on the other node:
 *      dispatch 2 rows inter, combine 2 rows inter.
 *   bytes: dispatch intra 96, inter 96; combine intra 40 + 80 = 120, inter 80.
 *   pairs: ranks 0, 1, 2 one each; rank 3 three (B:0, B:3, C:3), 2 experts.
 *   sent: r0 48; r1 40 + 96 = 136; r2 48 + 40 = 88; r3 80 + 40 = 120.
 * Cost, one step of 3 tokens, link 8 Gbit/s (1 B/ns), memcpy 1 GB/s,
 * latency 10 µs, 1 µs a call, 2 µs a row:
 *   experts: rank 3: 2·1 + 3·2 = 8 µs (the maximum).
 *   dispatch: rank 1 sends 96 B inter, receives 48 B intra:
 *             0.096 + 0.048 + 10 = 10.144 µs (the maximum).
 *   combine:  rank 1 receives 80 B inter, sends 40 B intra:
 *             0.080 + 0.040 + 10 = 10.120 µs (ranks 2, 3 the same).
 */
static void test_simulate_by_hand(void)
{
    moe_placement_shape ps = {2, 1, 4, 4};
    const char *pl = "1 0 0\n1 1 1\n1 2 2\n1 3 3 0\n";
    moe_placement *p;
    moe_err err = {0};
    CHECK(moe_placement_parse(&p, &ps, pl, strlen(pl), &err) == MOE_OK);
    moe_trace t;
    const char *tr = "1 0 0 0 0,1 0.5,0.5 0,1\n1 1 0 2 0,3 0.5,0.5 3,3\n1 2 0 1 2,3 0.5,0.5 2,3\n";
    CHECK(parse(&t, tr, &err) == MOE_OK);
    moe_sim_cfg c = {p, 2, 10, 3, false, 0, 8.0, 10.0, 1.0, 1.0, 2.0, NULL};
    moe_sim_result r;
    CHECK(moe_sim_run(&t, &c, &r, &err) == MOE_OK);
    CHECK(r.disp_intra == 96 && r.disp_inter == 96 && r.comb_intra == 120 && r.comb_inter == 80);
    CHECK(r.rank_pairs[0] == 1 && r.rank_pairs[1] == 1 && r.rank_pairs[2] == 1 && r.rank_pairs[3] == 3);
    CHECK(r.rank_sent[0] == 48 && r.rank_sent[1] == 136 && r.rank_sent[2] == 88 && r.rank_sent[3] == 120);
    CHECK(r.steps == 1 && r.rows == 3);
    CHECK_MSG(fabs(r.t_compute - 8e-6) < 1e-12, "compute %g", r.t_compute);
    CHECK_MSG(fabs(r.t_net - 20.264e-6) < 1e-12, "net %g", r.t_net);
    moe_sim_result_free(&r);
    /* the same rows at a layer's own size (the int8 path's quantized rows):
     * 30 bytes each instead of 48; the combine stays floats */
    const uint64_t rows30[2] = {0, 30};
    c.disp_row = rows30;
    CHECK(moe_sim_run(&t, &c, &r, &err) == MOE_OK);
    CHECK(r.disp_intra == 60 && r.disp_inter == 60 && r.comb_intra == 120 && r.comb_inter == 80);
    moe_sim_result_free(&r);
    c.disp_row = NULL;

    /* one token a step: three steps, each its own maximum.  B now starts a
     * step: ranks 0 and 3 have both sent nothing, so expert 0 goes to the
     * lowest, rank 0 (another node: one more inter-node dispatch row and
     * combine row); every step's busiest rank runs 1 call + 1 row (3 µs) */
    c.batch = 1;
    CHECK(moe_sim_run(&t, &c, &r, &err) == MOE_OK);
    CHECK(r.steps == 3 && r.disp_inter == 144 && r.disp_intra == 96 && r.comb_inter == 120 && r.comb_intra == 80);
    CHECK(r.rank_pairs[0] == 2 && r.rank_pairs[3] == 2);
    CHECK_MSG(fabs(r.t_compute - 9e-6) < 1e-12, "compute %g", r.t_compute);
    moe_sim_result_free(&r);

    /* bad configurations and a trace that does not fit */
    c.batch = 3;
    c.ranks_per_node = 3;
    CHECK(moe_sim_run(&t, &c, &r, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "do not divide");
    c.ranks_per_node = 2;
    c.link_gbps = 0;
    CHECK(moe_sim_run(&t, &c, &r, &err) == MOE_ERR);
    c.link_gbps = NAN;
    CHECK(moe_sim_run(&t, &c, &r, &err) == MOE_ERR);
    c.link_gbps = 8;
    moe_trace_free(&t);
    CHECK(parse(&t, "1 0 0 7 0,1 0.5,0.5 0,1\n", &err) == MOE_OK);
    CHECK(moe_sim_run(&t, &c, &r, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "home rank 7");
    c.rehome = true; /* req 0 mod 4: home 0 */
    CHECK(moe_sim_run(&t, &c, &r, &err) == MOE_OK);
    CHECK(r.disp_intra == 48 && r.comb_intra == 40);
    moe_sim_result_free(&r);
    moe_trace_free(&t);
    CHECK(parse(&t, "0 0 0 0 0,1 0.5,0.5 0,1\n", &err) == MOE_OK);
    CHECK(moe_sim_run(&t, &c, &r, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "MoE layers are 1..1");
    moe_trace_free(&t);
    CHECK(parse(&t, "1 0 0 0 0,4 0.5,0.5 0,1\n", &err) == MOE_OK);
    CHECK(moe_sim_run(&t, &c, &r, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "expert 4");
    moe_trace_free(&t);
    moe_placement_free(p);

    /* Node limit 1 (an estimate), worked by hand: experts e on rank e,
     * nodes {0, 1} and {2, 3}, rows of D + K = 12 floats (48 B) out and
     * D = 10 (40 B) back, both rows at home 0:
     *   A: experts 0 (w .3, node 0), 2 (w .7, node 1): node 1 is kept, the
     *      home node is not, so expert 0's stand-in runs on rank 2 (the
     *      kept rank the row visits): dispatch 1 inter row, combine 2 inter
     *      (without the limit: dispatch 1 inter, combine 1 inter);
     *   B: experts 1 (w .6, node 0), 3 (w .4, node 1): node 0, the home
     *      node, is kept, expert 3's stand-in runs at home: dispatch and
     *      combine 1 intra row each (without: 1 intra + 1 inter each). */
    const char *pl2 = "1 0 0\n1 1 1\n1 2 2\n1 3 3\n";
    CHECK(moe_placement_parse(&p, &ps, pl2, strlen(pl2), &err) == MOE_OK);
    CHECK(parse(&t, "1 0 0 0 0,2 0.3,0.7 0,2\n1 1 0 0 1,3 0.6,0.4 1,3\n", &err) == MOE_OK);
    c.p = p;
    c.rehome = false;
    c.node_limit = 0;
    CHECK(moe_sim_run(&t, &c, &r, &err) == MOE_OK);
    CHECK(r.disp_inter == 96 && r.disp_intra == 48 && r.comb_inter == 80 && r.comb_intra == 40);
    moe_sim_result_free(&r);
    c.node_limit = 1;
    CHECK(moe_sim_run(&t, &c, &r, &err) == MOE_OK);
    CHECK_MSG(r.disp_inter == 48 && r.disp_intra == 48 && r.comb_inter == 80 && r.comb_intra == 40,
              "node limit: dispatch %llu/%llu combine %llu/%llu", (unsigned long long)r.disp_intra,
              (unsigned long long)r.disp_inter, (unsigned long long)r.comb_intra, (unsigned long long)r.comb_inter);
    CHECK(r.rank_pairs[0] == 1 && r.rank_pairs[1] == 1 && r.rank_pairs[2] == 2 && r.rank_pairs[3] == 0); /* B's stand-in at home */
    moe_sim_result_free(&r);
    c.node_limit = 3; /* more nodes than the cluster has */
    CHECK(moe_sim_run(&t, &c, &r, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "node limit 3");
    moe_trace_free(&t);
    moe_placement_free(p);
}

int main(void)
{
    test_trace_good();
    test_trace_bad();
    test_simulate_by_hand();
    return check_summary("route_test");
}
