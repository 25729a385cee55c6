/*
 * sched_test — the coordinator's request bookkeeping: bounded queue,
 * placement on the rank with the most free cache, reservations, tokens by
 * index (duplicates ignored), ends (first reason wins), lost ranks,
 * deadlines, and a table that stays small under churn; fairness: flows
 * (clients) served round robin, a flow's share of the queue, queue
 * positions that tell the order placement really takes; prefix-aware
 * placement (the rank a prompt's longest prefix went to, within the
 * slack, forgotten when that rank is lost).
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "sched.h"

static const int32_t prompt[4] = {1, 2, 3, 4};

static void test_queue_and_place(void)
{
    moe_err err;
    moe_sched *s;
    moe_sched_limits lim = {.max_queue = 3, .max_running = 8};
    CHECK(moe_sched_init(&s, 2, &lim, &err) == 0);
    moe_req *r[5];
    bool full;
    for (int i = 0; i < 3; i++) CHECK(moe_sched_submit(s, NULL, prompt, 4, 6, 0, &r[i], &full, &err) == 0 && !full);
    CHECK(moe_sched_submit(s, NULL, prompt, 4, 6, 0, &r[3], &full, &err) != 0 && full && r[3] == NULL);
    CHECK_CONTAINS(err.msg, "queue is full");
    CHECK(moe_sched_submit(s, NULL, prompt, 0, 6, 0, &r[3], &full, &err) != 0 && !full);
    CHECK(moe_sched_submit(s, NULL, prompt, 4, -1, 0, &r[3], &full, &err) != 0 && !full);
    CHECK(r[0]->id != r[1]->id && r[1]->id != r[2]->id);

    moe_req *placed[8];
    CHECK(moe_sched_place(s, placed, 8) == 0); /* no rank known yet */
    moe_sched_rank_update(s, 0, 25);
    moe_sched_rank_update(s, 1, 12);
    /* each needs 10 tokens: r0 -> rank 0 (none running, 25 free > 12),
     * r1 -> rank 1 (it runs none), r2 -> rank 0 (one each, 15 free > 2) */
    CHECK(moe_sched_place(s, placed, 8) == 3);
    CHECK(r[0]->rank == 0 && r[1]->rank == 1 && r[2]->rank == 0);
    CHECK(moe_sched_rank_free(s, 0) == 5 && moe_sched_rank_free(s, 1) == 2);
    CHECK(moe_sched_n_running(s, -1) == 3 && moe_sched_n_queued(s) == 0);

    /* a request nobody can hold waits, and blocks those behind it (FIFO) */
    CHECK(moe_sched_submit(s, NULL, prompt, 4, 20, 0, &r[3], &full, &err) == 0);
    CHECK(moe_sched_submit(s, NULL, prompt, 1, 1, 0, &r[4], &full, &err) == 0);
    CHECK(moe_sched_place(s, placed, 8) == 0 && moe_sched_n_queued(s) == 2);

    /* tokens by index */
    CHECK(moe_sched_token(s, r[0]->id, 0, 7, NULL));
    CHECK(!moe_sched_token(s, r[0]->id, 0, 8, NULL)); /* duplicate index: ignored */
    CHECK(!moe_sched_token(s, r[0]->id, 2, 9, NULL)); /* gap: refused */
    CHECK(moe_sched_token(s, r[0]->id, 1, 9, NULL));
    CHECK(r[0]->n_out == 2 && r[0]->out[0] == 7 && r[0]->out[1] == 9);
    CHECK(!moe_sched_token(s, 999999, 0, 1, NULL));

    /* ends: first reason wins, reservations return */
    moe_sched_end(s, r[0], MOE_END_STOP, NULL);
    moe_sched_end(s, r[0], MOE_END_CANCELLED, NULL);
    CHECK(r[0]->end == MOE_END_STOP && r[0]->state == MOE_REQ_DONE);
    CHECK(!moe_sched_token(s, r[0]->id, 2, 1, NULL));
    moe_sched_end(s, r[2], MOE_END_LENGTH, NULL);
    CHECK(moe_sched_rank_free(s, 0) == 25);
    CHECK(moe_sched_place(s, placed, 8) == 2 && placed[0] == r[3] && r[3]->rank == 0 && r[4]->rank == 1);

    /* cancelling a queued request takes it out of the queue in order */
    moe_req *q[3];
    for (int i = 0; i < 3; i++) CHECK(moe_sched_submit(s, NULL, prompt, 4, 100, 0, &q[i], &full, &err) == 0);
    moe_sched_end(s, q[1], MOE_END_CANCELLED, NULL);
    CHECK(moe_sched_n_queued(s) == 2);
    moe_sched_rank_update(s, 1, 1000);
    CHECK(moe_sched_place(s, placed, 8) == 2 && placed[0] == q[0] && placed[1] == q[2]);

    /* a rank's own limit on running sequences applies when lower */
    moe_sched_rank_set_max_running(s, 0, 1);
    moe_req *lim1;
    CHECK(moe_sched_submit(s, NULL, prompt, 1, 1, 0, &lim1, &full, &err) == 0);
    moe_sched_rank_update(s, 1, 0); /* rank 1 has no room: only rank 0 could take it */
    CHECK(moe_sched_n_running(s, 0) >= 1 && moe_sched_place(s, placed, 8) == 0 && lim1->state == MOE_REQ_QUEUED);
    moe_sched_rank_set_max_running(s, 0, 0);
    moe_sched_rank_update(s, 1, 1000);

    /* losing a rank ends its running requests with an error */
    int on1 = moe_sched_n_running(s, 1);
    CHECK(moe_sched_rank_lost(s, 1, "rank 1 stopped answering") == on1 && on1 > 0);
    CHECK(!moe_sched_rank_alive(s, 1) && moe_sched_rank_free(s, 1) == 0);
    CHECK(q[0]->state == MOE_REQ_DONE && q[0]->end == MOE_END_ERROR);
    CHECK_CONTAINS(q[0]->error, "stopped answering");

    const uint64_t id3 = r[3]->id;
    CHECK(moe_sched_find(s, id3) == r[3]);
    moe_sched_end(s, r[3], MOE_END_STOP, NULL);
    moe_sched_forget(s, r[3]);
    CHECK(moe_sched_find(s, id3) == NULL);
    moe_sched_free(s);
}

static void test_deadline_and_churn(void)
{
    moe_err err;
    moe_sched *s;
    moe_sched_limits lim = {.max_queue = 100000, .max_running = 1 << 20};
    CHECK(moe_sched_init(&s, 1, &lim, &err) == 0);
    moe_sched_rank_update(s, 0, 1 << 30);
    moe_req *a, *b, *out[4];
    bool full;
    CHECK(moe_sched_submit(s, NULL, prompt, 4, 4, 10.0, &a, &full, &err) == 0);
    CHECK(moe_sched_submit(s, NULL, prompt, 4, 4, 20.0, &b, &full, &err) == 0);
    CHECK(moe_sched_expire(s, 5.0, out, 4) == 0);
    CHECK(moe_sched_expire(s, 15.0, out, 4) == 1 && out[0] == a && a->end == MOE_END_DEADLINE);
    CHECK(moe_sched_n_queued(s) == 1);
    /* 100k requests through the table, a few alive at a time */
    moe_req *live[8] = {0};
    int ok = 1;
    for (int i = 0; i < 100000; i++) {
        moe_req *r;
        if (moe_sched_submit(s, NULL, prompt, 4, 4, 0, &r, &full, &err)) ok = 0;
        if (live[i % 8]) {
            moe_sched_end(s, live[i % 8], MOE_END_STOP, NULL);
            moe_sched_forget(s, live[i % 8]);
        }
        live[i % 8] = r;
    }
    CHECK(ok);
    for (int i = 0; i < 8; i++) CHECK(moe_sched_find(s, live[i]->id) == live[i]);
    moe_sched_free(s);
    printf("sched: deadlines and 100000 requests of churn\n");
}

/* A restarted job: the lost rank's requests go back to the head of the
 * queue, oldest first, ahead of those already waiting, keeping their
 * tokens; a full queue still takes them; placed again, tokens go on from
 * where they were and a repeat of an old index is ignored. */
static void test_requeue(void)
{
    moe_err err;
    moe_sched *s;
    moe_sched_limits lim = {.max_queue = 2, .max_running = 3};
    CHECK(moe_sched_init(&s, 2, &lim, &err) == 0);
    moe_sched_rank_update(s, 0, 1000);
    moe_sched_rank_update(s, 1, 0);
    moe_req *r[5];
    bool full;
    moe_req *placed[8];
    for (int i = 0; i < 3; i++) {
        if (i == 2) moe_sched_rank_update(s, 1, 1000);
        CHECK(moe_sched_submit(s, NULL, prompt, 4, 6, 0, &r[i], &full, &err) == 0);
        CHECK(moe_sched_place(s, placed, 8) == 1);
    }
    CHECK(r[0]->rank == 0 && r[1]->rank == 0 && r[2]->rank == 1);
    CHECK(moe_sched_token(s, r[0]->id, 0, 7, NULL) && moe_sched_token(s, r[0]->id, 1, 8, NULL));
    CHECK(moe_sched_token(s, r[1]->id, 0, 9, NULL));
    moe_sched_rank_update(s, 1, 0);
    CHECK(moe_sched_submit(s, NULL, prompt, 4, 2000, 0, &r[3], &full, &err) == 0); /* too big: waits */
    CHECK(moe_sched_submit(s, NULL, prompt, 4, 6, 0, &r[4], &full, &err) == 0);
    CHECK(moe_sched_place(s, placed, 8) == 0 && moe_sched_n_queued(s) == 2);
    CHECK(moe_sched_rank_requeue(s, 0) == 2);
    CHECK(!moe_sched_rank_alive(s, 0));
    CHECK(r[0]->state == MOE_REQ_QUEUED && r[1]->state == MOE_REQ_QUEUED && r[2]->state == MOE_REQ_RUNNING);
    CHECK(r[0]->n_out == 2 && r[0]->out[1] == 8 && r[1]->n_out == 1 && r[0]->replays == 1);
    CHECK(moe_sched_n_queued(s) == 4 && moe_sched_n_running(s, 0) == 0);
    /* the job is back: the replays are placed first, oldest first */
    moe_sched_rank_update(s, 0, 1000);
    CHECK(moe_sched_place(s, placed, 8) == 2 && placed[0] == r[0] && placed[1] == r[1]);
    CHECK(moe_sched_rank_free(s, 0) == 1000 - 20);
    CHECK(!moe_sched_token(s, r[0]->id, 1, 99, NULL) && r[0]->out[1] == 8); /* a replay's repeat */
    CHECK(moe_sched_token(s, r[0]->id, 2, 5, NULL) && r[0]->n_out == 3);
    /* ending a queued replay keeps the others in order */
    CHECK(moe_sched_rank_requeue(s, 0) == 2);
    moe_sched_end(s, r[0], MOE_END_CANCELLED, NULL);
    moe_sched_rank_update(s, 0, 1000);
    CHECK(moe_sched_place(s, placed, 8) == 1 && placed[0] == r[1] && r[1]->replays == 2);
    moe_sched_free(s);
    printf("sched: a lost rank's requests are queued again, first, with their tokens\n");
}

/* Three clients: A sends 6 at once, then B 2, then C 1.  Round robin
 * places A B C A B A A A A, not A×6 first (FIFO over all). */
/* Sequences spread over the ranks by count: a rank with a little more free
 * cache does not take them all (16 over 4 ranks: 4 each). */
static void test_spread(void)
{
    moe_err err;
    moe_sched *s;
    moe_sched_limits lim = {.max_queue = 64, .max_running = 64};
    CHECK(moe_sched_init(&s, 4, &lim, &err) == 0);
    for (int k = 0; k < 4; k++) moe_sched_rank_update(s, k, 100000 - 1000 * k);
    moe_req *r, *placed[16];
    bool full;
    for (int i = 0; i < 16; i++) CHECK(moe_sched_submit(s, NULL, prompt, 4, 28, 0, &r, &full, &err) == 0);
    CHECK(moe_sched_place(s, placed, 16) == 16);
    int on[4] = {0};
    for (int i = 0; i < 16; i++) on[placed[i]->rank]++;
    CHECK_MSG(on[0] == 4 && on[1] == 4 && on[2] == 4 && on[3] == 4, "per rank: %d %d %d %d", on[0], on[1], on[2], on[3]);
    CHECK(placed[0]->rank == 0 && placed[1]->rank == 1 && placed[4]->rank == 0); /* ties: the freer */
    for (int i = 0; i < 16; i++) moe_sched_end(s, placed[i], MOE_END_STOP, NULL);
    moe_sched_free(s);
    printf("sched: 16 sequences over 4 ranks of unequal free cache, 4 each\n");
}

static void test_fair_round_robin(void)
{
    moe_err err;
    moe_sched *s;
    moe_sched_limits lim = {.max_queue = 64, .max_running = 64};
    CHECK(moe_sched_init(&s, 1, &lim, &err) == 0);
    moe_sched_flow *f[3] = {moe_sched_flow_new(s), moe_sched_flow_new(s), moe_sched_flow_new(s)};
    static char tag[3] = {'A', 'B', 'C'};
    const int count[3] = {6, 2, 1};
    moe_req *r;
    bool full;
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < count[k]; i++)
            CHECK(moe_sched_submit_flow(s, f[k], &tag[k], prompt, 4, 4, 0, &r, &full, &err) == 0);
    CHECK(moe_sched_n_queued(s) == 9 && moe_sched_flow_n_queued(f[0]) == 6);
    moe_sched_rank_update(s, 0, 1 << 20);
    moe_req *placed[16];
    CHECK(moe_sched_place(s, placed, 16) == 9);
    char order[10] = {0};
    for (int i = 0; i < 9; i++) order[i] = *(char *)placed[i]->owner;
    CHECK(!strcmp(order, "ABCABAAAA"));
    for (int i = 0; i < 9; i++) moe_sched_end(s, placed[i], MOE_END_STOP, NULL);
    for (int k = 0; k < 3; k++) moe_sched_flow_free(s, f[k]);
    moe_sched_free(s);
    printf("sched: clients are served round robin (%s)\n", order);
}

/* A flow's share of the queue refuses its own excess only; cancelling
 * frees its share. */
static void test_flow_share(void)
{
    moe_err err;
    moe_sched *s;
    moe_sched_limits lim = {.max_queue = 5, .max_running = 4, .max_queue_per_flow = 2};
    CHECK(moe_sched_init(&s, 1, &lim, &err) == 0);
    moe_sched_flow *junk = moe_sched_flow_new(s), *good = moe_sched_flow_new(s);
    moe_req *r[4];
    bool full;
    CHECK(moe_sched_submit_flow(s, junk, NULL, prompt, 4, 4, 0, &r[0], &full, &err) == 0);
    CHECK(moe_sched_submit_flow(s, junk, NULL, prompt, 4, 4, 0, &r[1], &full, &err) == 0);
    CHECK(moe_sched_submit_flow(s, junk, NULL, prompt, 4, 4, 0, &r[2], &full, &err) != 0 && full);
    CHECK_CONTAINS(err.msg, "its share of the queue");
    CHECK(moe_sched_submit_flow(s, good, NULL, prompt, 4, 4, 0, &r[2], &full, &err) == 0 && !full);
    moe_sched_end(s, r[0], MOE_END_CANCELLED, NULL);
    CHECK(moe_sched_flow_n_queued(junk) == 1);
    CHECK(moe_sched_submit_flow(s, junk, NULL, prompt, 4, 4, 0, &r[3], &full, &err) == 0);
    /* out of range shares are refused at init */
    moe_sched *bad;
    moe_sched_limits over = {.max_queue = 5, .max_running = 4, .max_queue_per_flow = 6};
    CHECK(moe_sched_init(&bad, 1, &over, &err) != 0);
    moe_sched_end(s, r[1], MOE_END_CANCELLED, NULL);
    moe_sched_end(s, r[2], MOE_END_CANCELLED, NULL);
    moe_sched_end(s, r[3], MOE_END_CANCELLED, NULL);
    CHECK(moe_sched_n_queued(s) == 0);
    moe_sched_flow_free(s, junk);
    moe_sched_flow_free(s, good);
    moe_sched_free(s);
    printf("sched: a client's share of the queue refuses only its own excess\n");
}

/* Positions reported while queued are the order placement then takes,
 * whatever the mix of flows, replays and where the turn stands; a flow
 * whose head does not fit keeps its turn (nobody overtakes it). */
static void test_positions(void)
{
    moe_err err;
    moe_sched *s;
    moe_sched_limits lim = {.max_queue = 200, .max_running = 1000};
    CHECK(moe_sched_init(&s, 1, &lim, &err) == 0);
    enum { NF = 5, NR = 60 };
    moe_sched_flow *f[NF];
    for (int k = 0; k < NF; k++) f[k] = moe_sched_flow_new(s);
    moe_req *r[NR];
    bool full;
    uint32_t x = 12345;
    moe_sched_rank_update(s, 0, 1 << 20);
    moe_req *placed[NR];
    int n_placed = 0;
    for (int i = 0; i < NR; i++) {
        x = x * 1103515245u + 12345u;
        CHECK(moe_sched_submit_flow(s, f[(x >> 16) % NF], NULL, prompt, 4, 4, 0, &r[i], &full, &err) == 0);
        if (i == 20) n_placed += moe_sched_place(s, placed + n_placed, 3); /* the turn is somewhere mid-round */
    }
    int pos[NR];
    for (int i = 0; i < NR; i++) pos[i] = moe_sched_queue_position(s, r[i]);
    const int n_queued = moe_sched_n_queued(s);
    int got = moe_sched_place(s, placed + n_placed, NR - n_placed);
    CHECK(got == n_queued);
    bool ok = true;
    for (int k = 0; k < got; k++) {
        moe_req *p = placed[n_placed + k];
        int idx = -1;
        for (int i = 0; i < NR; i++)
            if (r[i] == p) idx = i;
        ok &= idx >= 0 && pos[idx] == k + 1;
    }
    CHECK(ok);
    for (int i = 0; i < NR; i++) moe_sched_end(s, r[i], MOE_END_STOP, NULL);

    /* head of the line: B's big request does not fit; C must wait behind it */
    moe_sched_rank_update(s, 0, 100);
    moe_req *a, *b, *c2;
    CHECK(moe_sched_submit_flow(s, f[0], NULL, prompt, 4, 6, 0, &a, &full, &err) == 0);
    CHECK(moe_sched_submit_flow(s, f[1], NULL, prompt, 4, 500, 0, &b, &full, &err) == 0);
    CHECK(moe_sched_submit_flow(s, f[2], NULL, prompt, 4, 6, 0, &c2, &full, &err) == 0);
    CHECK(moe_sched_place(s, placed, 8) == 1 && placed[0] == a);
    CHECK(b->state == MOE_REQ_QUEUED && c2->state == MOE_REQ_QUEUED && moe_sched_queue_position(s, b) == 1);
    moe_sched_rank_update(s, 0, 1000);
    CHECK(moe_sched_place(s, placed, 8) == 2 && placed[0] == b && placed[1] == c2);
    moe_sched_end(s, a, MOE_END_STOP, NULL);
    moe_sched_end(s, b, MOE_END_STOP, NULL);
    moe_sched_end(s, c2, MOE_END_STOP, NULL);
    for (int k = 0; k < NF; k++) moe_sched_flow_free(s, f[k]);
    moe_sched_free(s);
    printf("sched: queue positions are the order of placement (%d requests, %d clients)\n", got, NF);
}

static void test_prefix_placement(void)
{
    moe_err err;
    moe_sched *s;
    moe_sched_limits lim = {.max_queue = 64, .max_running = 8, .prefix_placement = true, .prefix_slack = 1};
    CHECK(moe_sched_init(&s, 2, &lim, &err) == 0);
    moe_sched_rank_update(s, 0, 100000);
    moe_sched_rank_update(s, 1, 100000);
    int32_t sys[80], other[80];
    for (int i = 0; i < 80; i++) sys[i] = 1000 + i, other[i] = 5000 + i;
    moe_req *r[8], *placed[8];
    bool full;
    /* the first goes by load (rank 0); the same 64-token prefix follows it
     * while rank 0 runs at most one more than rank 1 */
    CHECK(moe_sched_submit(s, NULL, sys, 70, 4, 0, &r[0], &full, &err) == 0);
    CHECK(moe_sched_place(s, placed, 8) == 1 && r[0]->rank == 0 && moe_sched_prefix_known(s, r[0]) == 64);
    sys[70] = 1; /* a longer prompt with the same first 64 (5 pieces) */
    CHECK(moe_sched_submit(s, NULL, sys, 80, 4, 0, &r[1], &full, &err) == 0);
    CHECK(moe_sched_place(s, placed, 8) == 1 && r[1]->rank == 0);
    /* rank 0 now runs 2, rank 1 none: beyond the slack, load decides */
    CHECK(moe_sched_submit(s, NULL, sys, 70, 4, 0, &r[2], &full, &err) == 0);
    CHECK(moe_sched_place(s, placed, 8) == 1 && r[2]->rank == 1);
    /* the deepest known prefix wins: r[2] noted the first 64 on rank 1,
     * r[1]'s fifth piece (64..79) is still rank 0's, which runs 2 to 1 */
    CHECK(moe_sched_submit(s, NULL, sys, 80, 4, 0, &r[3], &full, &err) == 0);
    CHECK(moe_sched_place(s, placed, 8) == 1 && r[3]->rank == 0);
    /* an unrelated prompt goes by load; prompts shorter than a piece too */
    CHECK(moe_sched_submit(s, NULL, other, 40, 4, 0, &r[4], &full, &err) == 0);
    CHECK(moe_sched_place(s, placed, 8) == 1 && r[4]->rank == 1 && moe_sched_prefix_known(s, r[4]) == 32);
    /* a lost rank is forgotten: its prefixes go by load again */
    moe_sched_rank_lost(s, 1, "gone");
    moe_sched_rank_update(s, 1, 100000);
    CHECK(moe_sched_submit(s, NULL, other, 40, 4, 0, &r[5], &full, &err) == 0);
    CHECK(moe_sched_place(s, placed, 8) == 1 && r[5]->rank == 1); /* rank 1 runs none now */

    /* a request with prompt logprobs computes every position: no hint used
     * or left.  Rank 0 (restarted) runs 1, rank 1 runs 2: within the slack
     * the hint would send it to rank 1 */
    moe_sched_rank_lost(s, 0, "gone");
    moe_sched_rank_update(s, 0, 100000);
    moe_req *filler;
    CHECK(moe_sched_submit(s, NULL, sys + 40, 20, 4, 0, &filler, &full, &err) == 0);
    CHECK(moe_sched_place(s, placed, 8) == 1 && filler->rank == 0);
    CHECK(moe_sched_submit(s, NULL, other, 40, 4, 0, &r[6], &full, &err) == 0);
    moe_sched_want_logprobs(r[6], -1, true);
    CHECK(moe_sched_place(s, placed, 8) == 1 && r[6]->rank == 0 && moe_sched_prefix_known(s, r[6]) == 0);
    /* the cached count a rank reports is capped at the prompt, and a
     * requeued request forgets it */
    moe_sched_cached(s, r[5]->id, 1000);
    CHECK(r[5]->cached_tokens == 40);
    moe_sched_cached(s, r[5]->id, 32);
    CHECK(r[5]->cached_tokens == 32);
    CHECK(moe_sched_rank_requeue(s, 1) >= 1 && r[5]->cached_tokens == 0);
    moe_sched_free(s);

    /* off: load alone */
    lim.prefix_placement = false;
    CHECK(moe_sched_init(&s, 2, &lim, &err) == 0);
    moe_sched_rank_update(s, 0, 100000);
    moe_sched_rank_update(s, 1, 100000);
    for (int i = 0; i < 2; i++) CHECK(moe_sched_submit(s, NULL, sys, 70, 4, 0, &r[i], &full, &err) == 0);
    CHECK(moe_sched_place(s, placed, 8) == 2 && r[0]->rank == 0 && r[1]->rank == 1);
    CHECK(moe_sched_prefix_known(s, r[1]) == 0);
    moe_sched_free(s);
    lim.prefix_slack = -1;
    CHECK(moe_sched_init(&s, 2, &lim, &err) != 0);
    printf("sched: prefix-aware placement\n");
}

int main(void)
{
    test_prefix_placement();
    test_fair_round_robin();
    test_spread();
    test_flow_share();
    test_positions();
    test_queue_and_place();
    test_requeue();
    test_deadline_and_churn();
    return check_summary("sched_test");
}
