/*
 * xchg.c — dispatch, expert compute and combine over MPI (see xchg.h).
 * The expert buffers (xe, ye, groups) are sized once at init for the most
 * rows one engine run of experts takes; the exchange buffers grow to the
 * largest step seen and are then reused.
 */
#include "xchg.h"

#include "exprec.h"
#include "gate.h"
#include "group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct buf {
    void *p;
    size_t cap; /* bytes */
} buf;

static void *grow(buf *b, size_t bytes)
{
    if (bytes > b->cap) {
        free(b->p);
        b->cap = bytes + bytes / 2;
        b->p = moe_xmalloc(b->cap);
    }
    return b->p;
}

struct moe_xchg {
    moe_comm *c;
    moe_engine *e;
    const moe_placement *p;
    int me, n_rank, dim, K, n_expert, ff, first_moe, n_layer;
    moe_dispatch_plan plan;
    /* per-rank counts/offsets (rows) */
    int32_t *d_send_n, *d_send_off, *d_recv_n, *d_recv_off; /* dispatch */
    int32_t *c_send_n, *c_send_off, *c_recv_n, *c_recv_off; /* combine */
    buf d_send, d_recv, c_send, c_recv, pairs, cnt, ids, order, off;
    /* the experts' runs: up to rows_max (token, expert) rows at a time */
    int rows_max;
    float *xe, *ye;             /* [rows_max][dim] inputs, outputs */
    void *xqe;                  /* [rows_max] quantized inputs (int8 path), or NULL */
    uint32_t dt;                /* the layer in flight's dispatch type: MOE_DT_F32 (float rows) or a dot type */
    buf qtok;                   /* the step's token rows quantized once (int8 path) */
    int32_t *g_exp, *g_off;     /* [n_expert + 1] the groups of one run */
    moe_comm_req req;
    int n_tok;          /* rows of the layer in flight */
    bool shared_in_finish;      /* the hook left the shared experts to finish (moe_xchg_hook) */
    int il;
    double t_start, t_ready;
    moe_xchg_layer_stats *stats; /* [n_layer] (only MoE layers used) */
    void (*tick)(void *);
    void *tick_ctx;
    int trace_fd;                /* -1: off */
    const int64_t *seq_req;
    char *tbuf;
    size_t tlen, tcap;
    uint32_t step;               /* steps of the job so far (MoE layer first_moe started) */
    bool rec_on;                 /* the recorder (moe_xchg_set_record) */
    int32_t (*token_of)(void *ctx, int seq, int64_t pos);
    void *token_ctx;
    size_t rec_max;
    uint8_t *rbuf, *rtake;       /* packed rows: filling, handed out */
    size_t rlen, rcap, rtake_cap;
    uint64_t rdropped;
};

static int check_shape(moe_comm *c, moe_engine *e, const moe_placement *p, moe_err *err)
{
    const moe_hparams *hp = &moe_engine_model(e)->hp;
    const moe_placement_shape *s = moe_placement_shape_of(p);
    if (s->n_rank != moe_comm_size(c) || s->n_expert != hp->n_expert || s->n_layer != hp->n_layer ||
        s->first_moe != hp->n_dense_lead)
        return moe_err_set(err, "placement shape (%d ranks, %d experts, layers %d..%d) does not match the job/model",
                           s->n_rank, s->n_expert, s->first_moe, s->n_layer - 1);
    return MOE_OK;
}

int moe_xchg_set_placement(moe_xchg *x, const moe_placement *p, moe_err *err)
{
    MOE_ASSERT(x->il < 0); /* between steps */
    if (check_shape(x->c, x->e, p, err)) return MOE_ERR;
    /* Only the dispatch plan reads the placement; the combine puts each
     * (token, expert) output back at y[t·K + j] whichever rank ran it, so
     * the engine's sum in expert-id order does not change by a bit. */
    x->p = p;
    return MOE_OK;
}

/* Between the engine's runs of a finish: the combine in flight (if any)
 * moves on; Open MPI does not progress it by itself. */
static void combine_tick(void *ctx)
{
    moe_xchg *x = ctx;
    moe_comm_progress(x->c, &x->req);
}

int moe_xchg_init(moe_xchg **out, moe_comm *c, moe_engine *e, const moe_placement *p, moe_err *err)
{
    const moe_hparams *hp = &moe_engine_model(e)->hp;
    if (check_shape(c, e, p, err)) return MOE_ERR;
    moe_xchg *x = moe_xcalloc(1, sizeof *x);
    x->c = c;
    x->e = e;
    x->p = p;
    x->me = moe_comm_rank(c);
    x->n_rank = moe_comm_size(c);
    x->dim = hp->dim;
    x->K = hp->n_used;
    x->n_expert = hp->n_expert;
    x->ff = hp->expert_ff;
    x->first_moe = hp->n_dense_lead;
    x->n_layer = hp->n_layer;
    moe_dispatch_plan_init(&x->plan, x->n_rank);
    int32_t **arrs[] = {&x->d_send_n, &x->d_send_off, &x->d_recv_n, &x->d_recv_off,
                        &x->c_send_n, &x->c_send_off, &x->c_recv_n, &x->c_recv_off};
    for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++) *arrs[i] = moe_xcalloc((size_t)x->n_rank + 1, sizeof(int32_t));
    x->stats = moe_xcalloc((size_t)hp->n_layer, sizeof *x->stats);
    for (int il = x->first_moe; il < hp->n_layer; il++)
        x->stats[il].tokens_per_expert = moe_xcalloc((size_t)hp->n_expert, sizeof(uint64_t));
    x->rows_max = moe_engine_expert_rows(e);
    x->xe = moe_xmalloc_lines((size_t)x->rows_max * (size_t)x->dim * sizeof(float));
    x->ye = moe_xmalloc_lines((size_t)x->rows_max * (size_t)x->dim * sizeof(float));
    const size_t qb = moe_model_expert_qact_bytes_max(moe_engine_model(e), moe_engine_int8(e));
    x->xqe = qb ? moe_xmalloc_lines((size_t)x->rows_max * qb) : NULL;
    x->g_exp = moe_xmalloc((size_t)(x->n_expert + 1) * sizeof(int32_t));
    x->g_off = moe_xmalloc((size_t)(x->n_expert + 1) * sizeof(int32_t));
    x->il = -1;
    x->trace_fd = -1;
    moe_engine_set_experts_tick(e, combine_tick, x);
    *out = x;
    return MOE_OK;
}

void moe_xchg_free(moe_xchg *x)
{
    if (!x) return;
    moe_engine_set_experts_tick(x->e, NULL, NULL);
    moe_xchg_flush_trace(x);
    free(x->tbuf);
    free(x->rbuf);
    free(x->rtake);
    moe_dispatch_plan_free(&x->plan);
    int32_t *arrs[] = {x->d_send_n, x->d_send_off, x->d_recv_n, x->d_recv_off,
                       x->c_send_n, x->c_send_off, x->c_recv_n, x->c_recv_off};
    for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++) free(arrs[i]);
    buf *bufs[] = {&x->d_send, &x->d_recv, &x->c_send, &x->c_recv, &x->pairs,
                   &x->cnt,    &x->ids,    &x->order,  &x->off,    &x->qtok};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]->p);
    free(x->xe);
    free(x->ye);
    free(x->xqe);
    free(x->g_exp);
    free(x->g_off);
    for (int il = 0; il < x->n_layer; il++) free(x->stats[il].tokens_per_expert);
    free(x->stats);
    moe_comm_req_free(&x->req);
    free(x);
}

void moe_xchg_set_tick(moe_xchg *x, void (*tick)(void *), void *ctx)
{
    x->tick = tick;
    x->tick_ctx = ctx;
}

void moe_xchg_set_trace(moe_xchg *x, int fd, const int64_t *seq_req)
{
    x->trace_fd = fd;
    x->seq_req = seq_req;
}

void moe_xchg_flush_trace(moe_xchg *x)
{
    /* whole lines only, so ranks appending to one file never split a line */
    size_t done = 0;
    while (done < x->tlen) {
        ssize_t k = write(x->trace_fd, x->tbuf + done, x->tlen - done);
        if (k <= 0) break; /* a trace is best effort; the run goes on */
        done += (size_t)k;
    }
    x->tlen = 0;
}

static void trace_rows(moe_xchg *x, int il, int n, const int32_t *ids, const float *w, const int *row_seq,
                       const int64_t *row_pos)
{
    const int K = x->K;
    for (int t = 0; t < n; t++) {
        if (x->tcap - x->tlen < 64 + (size_t)K * 48) {
            if (x->tlen > (1u << 16)) moe_xchg_flush_trace(x);
            if (x->tcap - x->tlen < 64 + (size_t)K * 48) {
                x->tcap = x->tcap * 2 + 64 + (size_t)K * 48;
                x->tbuf = moe_xrealloc(x->tbuf, x->tcap);
            }
        }
        char *o = x->tbuf + x->tlen;
        size_t room = x->tcap - x->tlen;
        int k = snprintf(o, room, "%d %lld %lld %d ", il, (long long)(x->seq_req ? x->seq_req[row_seq[t]] : row_seq[t]),
                         (long long)row_pos[t], x->me);
        for (int j = 0; j < K; j++) k += snprintf(o + k, room - (size_t)k, j ? ",%d" : "%d", ids[t * K + j]);
        o[k++] = ' ';
        for (int j = 0; j < K; j++) k += snprintf(o + k, room - (size_t)k, j ? ",%.9g" : "%.9g", (double)w[t * K + j]);
        o[k++] = ' ';
        for (int j = 0; j < K; j++) k += snprintf(o + k, room - (size_t)k, j ? ",%d" : "%d", x->plan.slot_rank[t * K + j]);
        o[k++] = '\n';
        x->tlen += (size_t)k;
    }
}

void moe_xchg_set_record(moe_xchg *x, bool on, int32_t (*token_of)(void *ctx, int seq, int64_t pos), void *ctx,
                         size_t max_bytes)
{
    x->rec_on = on;
    x->token_of = token_of;
    x->token_ctx = ctx;
    x->rec_max = max_bytes;
}

const uint8_t *moe_xchg_record_take(moe_xchg *x, size_t *n, uint64_t *dropped)
{
    if (x->rlen == 0) { /* nothing: drops (only when a row is over the bound) wait for rows */
        *n = 0;
        *dropped = 0;
        return NULL;
    }
    uint8_t *t = x->rtake;
    const size_t cap = x->rtake_cap;
    x->rtake = x->rbuf; /* swap: the rows go out, the other buffer fills */
    x->rtake_cap = x->rcap;
    *n = x->rlen / MOE_EXPREC_ROW_BYTES(x->K);
    *dropped = x->rdropped;
    x->rbuf = t;
    x->rcap = cap;
    x->rlen = 0;
    x->rdropped = 0;
    return x->rtake;
}

static void record_rows(moe_xchg *x, int il, int n, const int32_t *ids, const float *w, const int *row_seq,
                        const int64_t *row_pos)
{
    const int K = x->K;
    const size_t rb = MOE_EXPREC_ROW_BYTES(K);
    size_t want = x->rlen + (size_t)n * rb;
    if (want > x->rec_max) { /* keep what fits: whole rows */
        const size_t fit = (x->rec_max - (x->rlen < x->rec_max ? x->rlen : x->rec_max)) / rb;
        x->rdropped += (uint64_t)n - fit;
        n = (int)fit;
        want = x->rlen + (size_t)n * rb;
    }
    if (want > x->rcap) {
        x->rcap = want + want / 2;
        x->rbuf = moe_xrealloc(x->rbuf, x->rcap);
    }
    int32_t ranks[MOE_GATE_MAX_USED];
    for (int t = 0; t < n; t++) {
        for (int j = 0; j < K; j++) ranks[j] = x->plan.slot_rank[t * K + j];
        const moe_exprec_row r = {.step = x->step - 1, /* steps from 0 */ .token = x->token_of ? x->token_of(x->token_ctx, row_seq[t], row_pos[t]) : -1,
                                  .pos = (int32_t)row_pos[t], .layer = il, .home = x->me,
                                  .req = x->seq_req ? x->seq_req[row_seq[t]] : row_seq[t], .experts = ids + (size_t)t * K,
                                  .ranks = ranks, .weights = w + (size_t)t * K};
        moe_exprec_pack(&r, K, x->rbuf + x->rlen);
        x->rlen += rb;
    }
}

static void hook_start(void *ctx, int il, const float *h, int n, const int32_t *ids, const float *w, const int *row_seq,
                       const int64_t *row_pos)
{
    moe_xchg *x = ctx;
    if (il == x->first_moe) x->step++;
    moe_xchg_start(x, il, h, n, ids);
    if (x->trace_fd >= 0 && n > 0) trace_rows(x, il, n, ids, w, row_seq, row_pos);
    if (x->rec_on && n > 0) record_rows(x, il, n, ids, w, row_seq, row_pos);
}

static void hook_progress(void *ctx) { moe_xchg_progress(ctx); }
static void hook_finish(void *ctx, int il, float *y) { moe_xchg_finish(ctx, il, y); }

void moe_xchg_hook(moe_xchg *x, moe_engine_moe_hook *hook)
{
    hook->ctx = x;
    hook->start = hook_start;
    hook->progress = hook_progress;
    hook->finish = hook_finish;
    hook->shared_in_finish = x->shared_in_finish = x->n_rank == 1;
}

const moe_xchg_layer_stats *moe_xchg_stats(const moe_xchg *x, int il)
{
    MOE_ASSERT(il >= x->first_moe && il < x->n_layer);
    return &x->stats[il];
}

static void prefix(const int32_t *n, int32_t *off, int count)
{
    off[0] = 0;
    for (int r = 0; r < count; r++) off[r + 1] = off[r] + n[r];
}

void moe_xchg_start(moe_xchg *x, int il, const float *h, int n, const int32_t *ids)
{
    MOE_ASSERT(x->il < 0 && il >= x->first_moe && il < x->n_layer && n >= 0);
    const int K = x->K, R = x->n_rank;
    moe_err err;
    /* ids come from our own gate, so a failure here is a bug */
    if (moe_dispatch_plan_build(&x->plan, x->p, il, x->me, n, K, ids, &err) != MOE_OK)
        moe_comm_abort(x->c, 4, err.msg);
    const moe_dispatch_plan *pl = &x->plan;
    x->dt = moe_engine_expert_act_type(x->e, il);
    const moe_model *m = moe_engine_model(x->e);
    const bool q8 = x->dt != MOE_DT_F32;
    const size_t row = moe_model_dispatch_row_bytes(m, il, q8), pay = moe_model_expert_act_bytes(m, il, q8);
    const size_t hdr = (size_t)K * sizeof(int32_t);
    MOE_ASSERT(row <= (size_t)INT32_MAX);
    /* int8 path: each token quantized once, whichever ranks it goes to */
    const char *src = (const char *)h;
    if (x->dt != MOE_DT_F32) {
        char *q = grow(&x->qtok, (size_t)(n ? n : 1) * pay);
        moe_engine_expert_act_quantize(x->e, il, h, n, q);
        src = q;
    }
    char *send = grow(&x->d_send, (size_t)(pl->send_offset[R] ? pl->send_offset[R] : 1) * row);
    for (int r = 0; r < R; r++) {
        for (int i = pl->send_offset[r]; i < pl->send_offset[r + 1]; i++) {
            const int t = pl->send_tok[i];
            char *o = send + (size_t)i * row;
            for (int j = 0; j < K; j++) {
                const int32_t v = pl->slot_rank[t * K + j] == r ? ids[t * K + j] : -1;
                memcpy(o + (size_t)j * sizeof v, &v, sizeof v);
            }
            memcpy(o + hdr, src + (size_t)t * pay, pay);
            memset(o + hdr + pay, 0, row - hdr - pay);
        }
        x->d_send_n[r] = pl->send_count[r];
    }
    prefix(x->d_send_n, x->d_send_off, R);
    moe_comm_alltoall_i32(x->c, x->d_send_n, x->d_recv_n);
    /* another rank's counts: each at most a step's tokens (a token goes at
     * most once to a rank; every rank runs with the same --step-tokens), so
     * the sum stays far inside int */
    for (int r = 0; r < R; r++)
        if (x->d_recv_n[r] < 0 || x->d_recv_n[r] > x->rows_max / K) {
            char msg[160];
            snprintf(msg, sizeof msg, "rank %d announced %d dispatch rows; a step has at most %d tokens here "
                     "(every rank needs the same --step-tokens)", r, (int)x->d_recv_n[r], x->rows_max / K);
            moe_comm_abort(x->c, 4, msg);
        }
    prefix(x->d_recv_n, x->d_recv_off, R);
    char *recv = grow(&x->d_recv, (size_t)(x->d_recv_off[R] ? x->d_recv_off[R] : 1) * row);
    x->t_start = moe_now();
    x->t_ready = 0;
    moe_comm_alltoallv_rows_start(x->c, (int)row, send, x->d_send_n, x->d_send_off, recv, x->d_recv_n, x->d_recv_off,
                                  &x->req);
    moe_xchg_layer_stats *st = &x->stats[il];
    st->rows_sent += (uint64_t)(x->d_send_off[R] - x->d_send_n[x->me]);
    st->rows_recv += (uint64_t)(x->d_recv_off[R] - x->d_recv_n[x->me]);
    st->bytes_sent += (uint64_t)(x->d_send_off[R] - x->d_send_n[x->me]) * (uint64_t)row;
    st->bytes_recv += (uint64_t)(x->d_recv_off[R] - x->d_recv_n[x->me]) * (uint64_t)row;
    x->n_tok = n;
    x->il = il;
}

void moe_xchg_progress(moe_xchg *x)
{
    if (x->il >= 0 && x->t_ready == 0 && moe_comm_progress(x->c, &x->req)) x->t_ready = moe_now();
}

/* (expert, received row, slot) of one unit of expert work. */
typedef struct pair {
    int32_t expert, row, slot;
} pair;

void moe_xchg_finish(moe_xchg *x, int il, float *y)
{
    MOE_ASSERT(x->il == il);
    if (x->tick) x->tick(x->tick_ctx);
    const int D = x->dim, K = x->K, R = x->n_rank, E = x->n_expert;
    const moe_model *m = moe_engine_model(x->e);
    const bool q8 = x->dt != MOE_DT_F32;
    const size_t row = moe_model_dispatch_row_bytes(m, il, q8), pay = moe_model_expert_act_bytes(m, il, q8);
    const size_t hdr = (size_t)K * sizeof(int32_t);
    moe_xchg_layer_stats *st = &x->stats[il];
    const double t_finish = moe_now();
    moe_comm_wait(x->c, &x->req);
    const double t_ready = x->t_ready > 0 ? x->t_ready : moe_now();
    st->t_overlap += (t_ready < t_finish ? t_ready : t_finish) - x->t_start;
    double t_ex = t_ready > t_finish ? t_ready - t_finish : 0.0;

    /* Units of work from every received row, grouped by expert (rows stay
     * ascending within an expert). */
    const int n_rows = x->d_recv_off[R];
    const char *recv = x->d_recv.p;
    const size_t n_slots = (size_t)(n_rows ? n_rows : 1) * (size_t)K;
    int32_t *ids = grow(&x->ids, n_slots * sizeof(int32_t)), *order = grow(&x->order, n_slots * sizeof(int32_t));
    int32_t *off = grow(&x->off, (size_t)(E + 1) * sizeof(int32_t));
    for (int i = 0; i < n_rows; i++)
        for (int j = 0; j < K; j++) {
            int32_t ex;
            memcpy(&ex, recv + (size_t)i * row + (size_t)j * sizeof ex, sizeof ex);
            /* -1, or an expert id this rank hosts */
            if (ex < -1 || ex >= E || (ex >= 0 && !moe_placement_rank_hosts(x->p, il, x->me, ex)))
                moe_comm_abort(x->c, 4, "received a token for an expert this rank does not host");
            ids[(size_t)i * (size_t)K + (size_t)j] = ex;
        }
    const size_t n_pairs = (size_t)moe_group_by_expert(ids, n_rows * K, E, off, order);
    /* Our own rows (sent to ourselves) never go back through the combine:
     * their outputs go straight to y. */
    const moe_dispatch_plan *pl = &x->plan;
    const int me = x->me, l0 = x->d_recv_off[me], l1 = x->d_recv_off[me + 1];
    /* The experts with a row from another rank run first (all their rows,
     * so each expert's weights are read once), their outputs go back while
     * the experts with only our rows run: a rank with less to do for the
     * others waits less for them, and the combine is in flight meanwhile.
     * Within each phase experts stay ascending. */
    pair *pairs = grow(&x->pairs, (n_pairs ? n_pairs : 1) * sizeof(pair));
    size_t n1 = 0, n_first = 0; /* n_first: the pairs of the first phase */
    for (int phase = 0; phase < 2; phase++) {
        for (int ex = 0; ex < E; ex++) {
            bool remote = false;
            for (int32_t q = off[ex]; q < off[ex + 1] && !remote; q++) {
                const int i = order[q] / K;
                remote = i < l0 || i >= l1;
            }
            if (remote != (phase == 0)) continue;
            for (int32_t q = off[ex]; q < off[ex + 1]; q++) pairs[n1++] = (pair){ex, order[q] / K, order[q] % K};
        }
        if (phase == 0) n_first = n1;
    }
    MOE_ASSERT(n1 == n_pairs);

    /* Combine: outputs go back to each other source rank in the order of its
     * rows, slots ascending within a row, which is the order it expects them. */
    memset(x->c_send_n, 0, (size_t)R * sizeof(int32_t));
    for (int s = 0; s < R; s++) {
        if (s == me) continue;
        for (int i = x->d_recv_off[s]; i < x->d_recv_off[s + 1]; i++)
            for (int j = 0; j < K; j++) x->c_send_n[s] += ids[(size_t)i * (size_t)K + (size_t)j] >= 0;
    }
    prefix(x->c_send_n, x->c_send_off, R);
    /* position of each pair in the outgoing buffer (-1: ours, or no expert):
     * walk rows in order */
    int32_t *slot_out = grow(&x->cnt, n_slots * sizeof(int32_t));
    {
        int32_t k = 0;
        for (size_t q = 0; q < (size_t)n_rows * (size_t)K; q++) {
            const int i = (int)(q / (size_t)K);
            slot_out[q] = ids[q] >= 0 && (i < l0 || i >= l1) ? k++ : -1;
        }
    }
    float *csend = grow(&x->c_send, (size_t)(x->c_send_off[R] ? x->c_send_off[R] : 1) * (size_t)D * sizeof(float));
    /* What comes back to us: for each other rank, one row per slot it ran for us. */
    memset(x->c_recv_n, 0, (size_t)R * sizeof(int32_t));
    for (int t = 0; t < x->n_tok; t++)
        for (int j = 0; j < K; j++) x->c_recv_n[pl->slot_rank[t * K + j]]++;
    x->c_recv_n[me] = 0;
    prefix(x->c_recv_n, x->c_recv_off, R);
    float *crecv = grow(&x->c_recv, (size_t)(x->c_recv_off[R] ? x->c_recv_off[R] : 1) * (size_t)D * sizeof(float));

    /* The experts, rows_max pairs at a time (all of a phase's in one run
     * but for very large steps), through the engine's thread pool: gate and
     * up of every expert in one run, down of every one in a second (on one
     * rank the shared experts too, with the first run of the second phase).
     * A pair's output is the same bits whichever run it falls in. */
    const double t0 = moe_now();
    bool shared = x->shared_in_finish && x->n_tok > 0;
    for (int phase = 0; phase < 2; phase++) {
        const size_t q_end = phase == 0 ? n_first : n_pairs;
        for (size_t p0 = phase == 0 ? 0 : n_first; p0 < q_end || (phase == 1 && shared);) {
            const size_t p1 = q_end - p0 > (size_t)x->rows_max ? p0 + (size_t)x->rows_max : q_end;
            int ng = 0;
            for (size_t q = p0; q < p1; q++) {
                if (q == p0 || pairs[q].expert != pairs[q - 1].expert) {
                    x->g_exp[ng] = pairs[q].expert;
                    x->g_off[ng++] = (int32_t)(q - p0);
                }
                st->tokens_per_expert[pairs[q].expert]++;
                const char *in = recv + (size_t)pairs[q].row * row + hdr;
                if (x->dt == MOE_DT_F32) memcpy(x->xe + (q - p0) * (size_t)D, in, pay);
                else memcpy((char *)x->xqe + (q - p0) * pay, in, pay);
            }
            x->g_off[ng] = (int32_t)(p1 - p0);
            const int n_sh = phase == 1 && shared ? x->n_tok : 0;
            if (x->dt == MOE_DT_F32)
                moe_engine_moe_experts_shared(x->e, il, ng, x->g_exp, x->g_off, x->xe, x->ye, n_sh);
            else
                moe_engine_moe_experts_shared_q(x->e, il, ng, x->g_exp, x->g_off, x->xqe, x->ye, n_sh);
            if (phase == 1) shared = false;
            for (size_t q = p0; q < p1; q++) {
                const int i = pairs[q].row, j = pairs[q].slot;
                float *dst;
                if (i >= l0 && i < l1) { /* ours: token send_tok[...], slot j */
                    const int t = pl->send_tok[pl->send_offset[me] + (i - l0)];
                    dst = y + ((size_t)t * (size_t)K + (size_t)j) * (size_t)D;
                } else {
                    dst = csend + (size_t)slot_out[(size_t)i * (size_t)K + (size_t)j] * (size_t)D;
                }
                memcpy(dst, x->ye + (q - p0) * (size_t)D, (size_t)D * sizeof(float));
            }
            p0 = p1;
            if (phase == 1) moe_comm_progress(x->c, &x->req);
        }
        if (phase == 0) {
            moe_comm_alltoallv_rows_start(x->c, D * (int)sizeof(float), csend, x->c_send_n, x->c_send_off, crecv,
                                          x->c_recv_n, x->c_recv_off, &x->req);
            moe_comm_progress(x->c, &x->req);
        }
    }
    const double t2 = moe_now();
    st->t_compute += t2 - t0;
    moe_comm_wait(x->c, &x->req);
    t_ex += moe_now() - t2;
    st->t_exchange += t_ex;
    st->bytes_sent += (uint64_t)x->c_send_off[R] * (uint64_t)D * sizeof(float);
    st->bytes_recv += (uint64_t)x->c_recv_off[R] * (uint64_t)D * sizeof(float);

    /* Place returned rows: rank r's rows follow its tokens in send order. */
    for (int r = 0; r < R; r++) {
        if (r == me) continue;
        int32_t k = x->c_recv_off[r];
        for (int i = pl->send_offset[r]; i < pl->send_offset[r + 1]; i++) {
            const int t = pl->send_tok[i];
            for (int j = 0; j < K; j++)
                if (pl->slot_rank[t * K + j] == r)
                    memcpy(y + ((size_t)t * (size_t)K + (size_t)j) * (size_t)D, crecv + (size_t)k++ * (size_t)D,
                           (size_t)D * sizeof(float));
        }
    }
    x->il = -1;
}
