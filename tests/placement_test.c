/*
 * placement_test — expert placement (contiguous and from files, with their
 * errors) and dispatch plans: every (token, expert) lands on a rank that
 * hosts the expert, each token goes at most once to each rank, the home
 * rank is preferred, and the plan's bytes match a direct recount.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "placement.h"

static const moe_placement_shape shape16 = {.n_layer = 4, .first_moe = 1, .n_expert = 16, .n_rank = 3};

static void test_contiguous(void)
{
    moe_err err;
    moe_placement *p;
    CHECK(moe_placement_contiguous(&p, &shape16, &err) == 0);
    if (!p) return;
    int per_rank[3] = {0};
    for (int l = 1; l < 4; l++)
        for (int e = 0; e < 16; e++) {
            int n;
            const int32_t *h = moe_placement_hosts(p, l, e, &n);
            CHECK(n == 1);
            per_rank[h[0]]++;
            /* blocks are contiguous and ordered by rank */
            if (e > 0) {
                int m;
                const int32_t *g = moe_placement_hosts(p, l, e - 1, &m);
                CHECK(g[0] <= h[0]);
            }
        }
    CHECK(per_rank[0] == 18 && per_rank[1] == 15 && per_rank[2] == 15); /* 6+5+5 per layer */
    int32_t ids[16];
    CHECK(moe_placement_rank_experts(p, 2, 1, ids) == 5 && ids[0] == 6 && ids[4] == 10);
    moe_placement_free(p);

    moe_placement_shape too_many = shape16;
    too_many.n_rank = 17;
    CHECK(moe_placement_contiguous(&p, &too_many, &err) != 0);
    CHECK_CONTAINS(err.msg, "17 ranks but only 16 experts");
}

static void test_file(void)
{
    moe_err err;
    moe_placement *p = NULL;
    const char *ok = "# scatter and replicate\n"
                     "*  0  0-7 12\n"
                     "*  1, 8-15, 0\r\n"
                     "2  2  3 5 7   # extra replicas on layer 2\n"
                     "\n";
    CHECK(moe_placement_parse(&p, &shape16, ok, strlen(ok), &err) == 0);
    if (p) {
        int n;
        const int32_t *h = moe_placement_hosts(p, 1, 0, &n);
        CHECK(n == 2 && h[0] == 0 && h[1] == 1);
        h = moe_placement_hosts(p, 2, 5, &n);
        CHECK(n == 2 && h[0] == 0 && h[1] == 2);
        h = moe_placement_hosts(p, 3, 5, &n);
        CHECK(n == 1 && h[0] == 0);
        CHECK(moe_placement_rank_hosts(p, 3, 1, 12) && moe_placement_rank_hosts(p, 3, 0, 12));
        CHECK(!moe_placement_rank_hosts(p, 3, 2, 12));
        moe_placement_free(p);
    }
    static const char *bad[][2] = {
        {"* 0 0-15\n0 1 3\n", "layer 0 is not a MoE layer"},
        {"* 3 0-15\n", "rank 3 is out of range"},
        {"* 0 0-16\n", "expert 16 is out of range"},
        {"* 0 0-7\n", "expert 8 of layer 1 is on no rank"},
        {"* 0 7-3\n", "'7-3' is not an expert id or range"},
        {"* 0 x\n", "'x' is not an expert id"},
        {"* 0\n", "no experts listed"},
        {"layer 0 1\n", "expected a layer number or '*'"},
        {"*\n", "expected a rank"},
        {"# nothing\n", "no rules"},
        {"* 99999999999 1\n", "expected a rank"},
        {"* 0 -1\n", "not an expert id"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = NULL;
        err.msg[0] = 0;
        CHECK_MSG(moe_placement_parse(&p, &shape16, bad[i][0], strlen(bad[i][0]), &err) != 0, "accepted: %s", bad[i][0]);
        CHECK(p == NULL);
        CHECK_CONTAINS(err.msg, bad[i][1]);
    }
    CHECK(moe_placement_load(&p, &shape16, "/nonexistent/placement.txt", &err) != 0);
    CHECK_CONTAINS(err.msg, "cannot open");
    printf("placement files: 1 valid, %zu invalid with their messages\n", sizeof bad / sizeof bad[0]);
}

/* Checks a plan against its definition by recounting. */
static int verify_plan(const moe_dispatch_plan *pl, const moe_placement *p, int layer, int home, int n_tok, int k,
                       const int32_t *ids)
{
    int bad = 0, sent = 0;
    for (int t = 0; t < n_tok; t++) {
        bool visits[8] = {false};
        bool home_hosts_any = false;
        for (int j = 0; j < k; j++) {
            int r = pl->slot_rank[t * k + j];
            bad += !moe_placement_rank_hosts(p, layer, r, ids[t * k + j]);
            if (moe_placement_rank_hosts(p, layer, home, ids[t * k + j])) {
                home_hosts_any = true;
                bad += r != home; /* home preferred when it hosts the expert */
            }
            visits[r] = true;
        }
        (void)home_hosts_any;
        for (int r = 0; r < pl->n_rank; r++) {
            int listed = 0;
            for (int i = pl->send_offset[r]; i < pl->send_offset[r + 1]; i++) listed += pl->send_tok[i] == t;
            bad += listed != (visits[r] ? 1 : 0); /* exactly once per visited rank */
            sent += listed;
        }
    }
    for (int r = 0; r < pl->n_rank; r++) {
        bad += pl->send_count[r] != pl->send_offset[r + 1] - pl->send_offset[r];
        for (int i = pl->send_offset[r] + 1; i < pl->send_offset[r + 1]; i++) bad += pl->send_tok[i - 1] >= pl->send_tok[i];
    }
    bad += sent != pl->send_offset[pl->n_rank];
    return bad;
}

static void test_dispatch(void)
{
    moe_err err;
    moe_placement *contig, *repl;
    const char *rtext = "* 0 0-7 12\n* 1 8-15 0\n* 2 3 5 7 9 11 13\n";
    CHECK(moe_placement_contiguous(&contig, &shape16, &err) == 0);
    CHECK(moe_placement_parse(&repl, &shape16, rtext, strlen(rtext), &err) == 0);
    if (!contig || !repl) return;
    enum { T = 200, K = 4 };
    static int32_t ids[T * K];
    uint64_t st = 7;
    for (int t = 0; t < T; t++) {
        /* k distinct ascending experts per token, as the gate gives them */
        bool used[16] = {false};
        int n = 0;
        while (n < K) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            int e = (int)((st >> 33) % 16);
            if (!used[e]) used[e] = true, n++;
        }
        for (int e = 0, j = 0; e < 16; e++)
            if (used[e]) ids[t * K + j++] = e;
    }
    moe_dispatch_plan pl;
    moe_dispatch_plan_init(&pl, 3);
    int checked = 0;
    for (int home = 0; home < 3; home++)
        for (int l = 1; l < 4; l++) {
            const moe_placement *ps[2] = {contig, repl};
            for (int q = 0; q < 2; q++) {
                CHECK(moe_dispatch_plan_build(&pl, ps[q], l, home, T, K, ids, &err) == 0);
                CHECK_MSG(verify_plan(&pl, ps[q], l, home, T, K, ids) == 0, "plan wrong: layer %d home %d placement %d", l,
                          home, q);
                checked++;
            }
        }
    /* zero tokens is a valid plan with nothing to send */
    CHECK(moe_dispatch_plan_build(&pl, contig, 1, 0, 0, K, ids, &err) == 0 && pl.send_offset[3] == 0);
    int32_t bad_ids[K] = {0, 1, 2, 16};
    CHECK(moe_dispatch_plan_build(&pl, contig, 1, 0, 1, K, bad_ids, &err) != 0);
    CHECK_CONTAINS(err.msg, "names expert 16");
    CHECK(moe_dispatch_plan_build(&pl, contig, 0, 0, 1, K, ids, &err) != 0);
    moe_dispatch_plan_free(&pl);
    moe_placement_free(contig);
    moe_placement_free(repl);
    printf("dispatch: %d plans of %d tokens verified\n", checked, T);
}

int main(void)
{
    test_contiguous();
    test_file();
    test_dispatch();
    return check_summary("placement_test");
}
