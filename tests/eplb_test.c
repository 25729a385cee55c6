/*
 * eplb_test.c — router/eplb against DeepSeek's worked example (the eplb.py
 * README: 2 layers × 12 experts, 16 slots, 4 groups, 2 nodes, 8 GPUs) and
 * small cases worked by hand (the working is in the comments: each step of
 * eplb.h's algorithm written out), the libstdc++ sort order of ties, and
 * bad input refused with a message.
 */
#include <math.h>
#include <string.h>

#include "check.h"
#include "eplb.h"

static bool eq(const int32_t *a, const int32_t *b, int n)
{
    for (int i = 0; i < n; i++)
        if (a[i] != b[i]) return false;
    return true;
}

static void dump(const char *what, const int32_t *a, int n)
{
    fprintf(stderr, "%s:", what);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", a[i]);
    fputc('\n', stderr);
}

static void test_readme_example(void)
{
    const float w[2 * 12] = {90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86,
                             20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27};
    const int32_t want[2 * 16] = {5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1,
                                  7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1};
    moe_eplb_params q = {16, 4, 2, 8};
    moe_eplb_result r;
    moe_err err = {0};
    CHECK(moe_eplb_rebalance(&r, w, 2, 12, &q, &err) == MOE_OK);
    CHECK(r.hierarchical);
    CHECK_MSG(eq(r.phy2log, want, 32), "phy2log differs from the README");
    if (!eq(r.phy2log, want, 32)) dump("phy2log", r.phy2log, 32);
    /* log2phy and logcnt agree with phy2log: every slot listed once under
     * its expert, at its replica rank */
    for (int l = 0; l < 2; l++) {
        int total = 0;
        for (int e = 0; e < 12; e++) {
            const int c = r.logcnt[l * 12 + e];
            total += c;
            for (int k = 0; k < r.max_cnt; k++) {
                const int p = r.log2phy[(l * 12 + e) * r.max_cnt + k];
                if (k < c) CHECK(p >= 0 && p < 16 && r.phy2log[l * 16 + p] == e && r.phyrank[l * 16 + p] == k);
                else CHECK(p == -1);
            }
        }
        CHECK(total == 16);
    }
    moe_eplb_result_free(&r);
}

/*
 * Global policy (4 groups do not divide among 3 nodes), by hand:
 * loads [10 40 20 30], 6 slots on 2 ranks.
 * replicate: 40 is the largest -> expert 1 twice; then [10 20 20 30] -> 3.
 *   slots 0..5 = experts [0 1 2 3 1 3], slot loads [10 20 20 15 20 15].
 * pack 6 slots onto 2 ranks of 3, descending (6 items: index order on
 *   ties): 20(s1) 20(s2) 20(s4) 15(s3) 15(s5) 10(s0);
 *   s1->r0 (tie: lowest) 20 | s2->r1 20 | s4->r0 (tie) 40 | s3->r1 35 |
 *   s5->r1 50 (full) | s0->r0 50.
 *   rank 0 = s1 s4 s0 = experts 1 1 0; rank 1 = s2 s3 s5 = experts 2 3 3.
 */
static void test_global_by_hand(void)
{
    const float w[4] = {10, 40, 20, 30};
    moe_eplb_params q = {6, 4, 3, 2};
    moe_eplb_result r;
    moe_err err = {0};
    CHECK(moe_eplb_rebalance(&r, w, 1, 4, &q, &err) == MOE_OK);
    CHECK(!r.hierarchical);
    const int32_t p2l[6] = {1, 1, 0, 2, 3, 3}, rk[6] = {0, 1, 0, 0, 0, 1}, cnt[4] = {1, 2, 1, 2};
    const int32_t l2p[8] = {2, -1, 0, 1, 3, -1, 4, 5};
    CHECK(eq(r.phy2log, p2l, 6));
    if (!eq(r.phy2log, p2l, 6)) dump("global phy2log", r.phy2log, 6);
    CHECK(eq(r.phyrank, rk, 6));
    CHECK(eq(r.logcnt, cnt, 4));
    CHECK(r.max_cnt == 2 && eq(r.log2phy, l2p, 8));
    moe_eplb_result_free(&r);
}

/*
 * Hierarchical policy by hand: 8 experts in 4 groups of 2, loads
 * [5 1 | 2 2 | 8 0 | 3 3], 12 slots, 2 nodes, 4 ranks (3 slots a rank).
 * 1. group loads [6 4 8 6]; descending g2 g0 g3 g1 (index order on the tie
 *    6/6); g2->n0 8 | g0->n1 6 | g3->n1 12 | g1->n0 12.
 *    node 0 holds g2, g1 = experts 4 5 2 3; node 1 g0, g3 = 0 1 6 7.
 * 2. node 0 loads [8 0 2 2] into 6 slots: expert 4 gets two more (8, then
 *    8/2 = 4 still largest): slots [4 5 2 3 4 4], loads [8/3 0 2 2 8/3 8/3].
 *    node 1 loads [5 1 3 3]: expert 0 (5), then [2.5 1 3 3] -> expert 6:
 *    slots [0 1 6 7 0 6], loads [2.5 1 1.5 3 2.5 1.5].
 * 3. node 0 onto 2 ranks: 8/3(s0) 8/3(s4) 8/3(s5) 2(s2) 2(s3) 0(s1):
 *    s0->r0 | s4->r1 | s5->r0 (tie) | s2->r1 | s3->r1 (4.67 < 5.33, full) |
 *    s1->r0: rank 0 = s0 s5 s1 = 4 4 5, rank 1 = s4 s2 s3 = 4 2 3.
 *    node 1: 3(s3) 2.5(s0) 2.5(s4) 1.5(s2) 1.5(s5) 1(s1):
 *    s3->r2 | s0->r3 | s4->r3 (2.5 < 3) | s2->r2 (3 < 5) | s5->r2 (4.5 < 5,
 *    full) | s1->r3: rank 2 = s3 s2 s5 = 7 6 6, rank 3 = s0 s4 s1 = 0 0 1.
 */
static void test_hierarchical_by_hand(void)
{
    const float w[8] = {5, 1, 2, 2, 8, 0, 3, 3};
    moe_eplb_params q = {12, 4, 2, 4};
    moe_eplb_result r;
    moe_err err = {0};
    CHECK(moe_eplb_rebalance(&r, w, 1, 8, &q, &err) == MOE_OK);
    CHECK(r.hierarchical);
    const int32_t p2l[12] = {4, 4, 5, 4, 2, 3, 7, 6, 6, 0, 0, 1};
    const int32_t rk[12] = {0, 2, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0};
    const int32_t cnt[8] = {2, 1, 1, 1, 3, 1, 2, 1};
    const int32_t l2p[24] = {9, 10, -1, 11, -1, -1, 4, -1, -1, 5, -1, -1,
                             0, 3, 1,   2, -1, -1,  7, 8, -1,  6, -1, -1};
    CHECK(eq(r.phy2log, p2l, 12));
    if (!eq(r.phy2log, p2l, 12)) dump("hier phy2log", r.phy2log, 12);
    CHECK(eq(r.phyrank, rk, 12));
    CHECK(eq(r.logcnt, cnt, 8));
    CHECK(r.max_cnt == 3 && eq(r.log2phy, l2p, 24));
    moe_eplb_result_free(&r);
}

/*
 * Ties in the sort.  Up to 16 items: index order.  17 equal items, by
 * libstdc++'s introsort: the median of items 1, 8, 16 (all equal) is the
 * last candidate, 8, swapped to the front; the unguarded partition of
 * 1..16 around it swaps 1<->16, 2<->15, ... 7<->10, 8(now 0)<->9 and cuts
 * at 9; both halves are <= 16 long; the final insertion sort moves nothing
 * (strict comparison).  Checked also against g++'s std::sort on pairs.
 */
static void test_sort_ties(void)
{
    float v[17];
    int32_t idx[17];
    for (int i = 0; i < 17; i++) v[i] = 1.0f;
    moe_eplb_sort_desc(v, 16, idx);
    for (int i = 0; i < 16; i++) CHECK(idx[i] == i);
    moe_eplb_sort_desc(v, 17, idx);
    const int32_t want[17] = {8, 16, 15, 14, 13, 12, 11, 10, 9, 0, 7, 6, 5, 4, 3, 2, 1};
    CHECK(eq(idx, want, 17));
    if (!eq(idx, want, 17)) dump("sort17", idx, 17);
    /* a long input still sorts (the heap sort fallback is reached by
     * adversarial inputs only; descending order is what matters here) */
    float big[1000];
    int32_t bi[1000];
    for (int i = 0; i < 1000; i++) big[i] = (float)((i * 7919) % 101);
    moe_eplb_sort_desc(big, 1000, bi);
    bool ok = true;
    for (int i = 1; i < 1000; i++) ok = ok && big[bi[i - 1]] >= big[bi[i]];
    CHECK(ok);
}

static void test_bad_input(void)
{
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    moe_eplb_result r;
    moe_err err = {0};
    moe_eplb_params q = {8, 2, 2, 4};
    CHECK(moe_eplb_rebalance(&r, w, 1, 8, &q, &err) == MOE_OK);
    moe_eplb_result_free(&r);

    q = (moe_eplb_params){6, 2, 2, 4};
    CHECK(moe_eplb_rebalance(&r, w, 1, 8, &q, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "at least the 8 experts");
    q = (moe_eplb_params){10, 2, 2, 4};
    CHECK(moe_eplb_rebalance(&r, w, 1, 8, &q, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "not a multiple of num_gpus");
    q = (moe_eplb_params){12, 3, 3, 4}; /* hierarchical, 8 experts in 3 groups */
    CHECK(moe_eplb_rebalance(&r, w, 1, 8, &q, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "do not divide into 3 groups");
    q = (moe_eplb_params){12, 2, 2, 3}; /* hierarchical, 3 gpus on 2 nodes */
    CHECK(moe_eplb_rebalance(&r, w, 1, 8, &q, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "not a multiple of num_nodes");
    q = (moe_eplb_params){8, 0, 1, 4};
    CHECK(moe_eplb_rebalance(&r, w, 1, 8, &q, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "num_groups is 0");
    q = (moe_eplb_params){8, 2, -1, 4};
    CHECK(moe_eplb_rebalance(&r, w, 1, 8, &q, &err) == MOE_ERR);
    q = (moe_eplb_params){8, 2, 2, 0};
    CHECK(moe_eplb_rebalance(&r, w, 1, 8, &q, &err) == MOE_ERR);
    q = (moe_eplb_params){8, 2, 2, 4};
    CHECK(moe_eplb_rebalance(&r, w, 0, 8, &q, &err) == MOE_ERR);
    CHECK(moe_eplb_rebalance(&r, w, 1, 0, &q, &err) == MOE_ERR);
    w[3] = -1;
    CHECK(moe_eplb_rebalance(&r, w, 1, 8, &q, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "expert 3 is -1");
    w[3] = NAN;
    CHECK(moe_eplb_rebalance(&r, w, 1, 8, &q, &err) == MOE_ERR);
    w[3] = INFINITY;
    CHECK(moe_eplb_rebalance(&r, w, 1, 8, &q, &err) == MOE_ERR);
    CHECK(r.phy2log == NULL);
    q = (moe_eplb_params){1 << 21, 2, 2, 4};
    w[3] = 4;
    CHECK(moe_eplb_rebalance(&r, w, 1, 8, &q, &err) == MOE_ERR);
}

/* Invariants on a bigger, skewed case under both policies: every expert
 * has a slot, replicas go to the heaviest, the per-rank maximum load never
 * exceeds that of no replication. */
static void test_invariants(void)
{
    enum { L = 3, E = 64 };
    float w[L * E];
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) w[l * E + e] = (float)(1000 / (1 + (e * 5 + l * 11) % E));
    for (int pass = 0; pass < 2; pass++) {
        moe_eplb_params q = pass ? (moe_eplb_params){80, 8, 4, 16} : (moe_eplb_params){96, 8, 3, 32};
        moe_eplb_result r;
        moe_err err = {0};
        CHECK(moe_eplb_rebalance(&r, w, L, E, &q, &err) == MOE_OK);
        CHECK(r.hierarchical == (pass == 1));
        const int per = q.num_replicas / q.num_gpus;
        for (int l = 0; l < L; l++) {
            int seen[E] = {0};
            for (int p = 0; p < q.num_replicas; p++) seen[r.phy2log[l * q.num_replicas + p]]++;
            bool ok = true;
            for (int e = 0; e < E; e++) ok = ok && seen[e] >= 1 && seen[e] == r.logcnt[l * E + e];
            CHECK(ok);
            double worst = 0, plain = 0, tot = 0;
            for (int g = 0; g < q.num_gpus; g++) {
                double s = 0;
                for (int k = 0; k < per; k++) {
                    const int e = r.phy2log[l * q.num_replicas + g * per + k];
                    s += w[l * E + e] / r.logcnt[l * E + e];
                }
                worst = s > worst ? s : worst;
            }
            for (int e = 0; e < E; e++) {
                tot += w[l * E + e];
                plain = w[l * E + e] > plain ? w[l * E + e] : plain;
            }
            CHECK(worst >= tot / q.num_gpus - 1e-3);
            CHECK_MSG(worst <= plain + tot / q.num_gpus, "layer %d: max rank load %g", l, worst);
        }
        moe_eplb_result_free(&r);
    }
}

int main(void)
{
    test_readme_example();
    test_global_by_hand();
    test_hierarchical_by_hand();
    test_sort_ties();
    test_bad_input();
    test_invariants();
    return check_summary("eplb_test");
}
