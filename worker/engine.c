/*
 * engine.c — deepseek2 forward pass (MLA + DeepSeekMoE) over a batched step:
 * set-up, the step, the FFN and MoE layer, the parallel matrix products
 * (attention is in attn.c).
 *
 * Layout of the step's activations: one row per token of the step, rows of
 * one item consecutive, items in call order.  All buffers below are sized
 * for max_batch_tokens rows at init.
 */
#include "engine_impl.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "group.h"

#define MM_MAX_CHUNKS 64
#define MM_MAX_REGIONS 8 /* more threads than this share regions */
#define MM_CHUNK_MIN_COST 65536.0

void moe_engine_opts_default(moe_engine_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_threads = 1;
    o->block_size = 16;
    o->max_ctx = 0;
    o->max_seqs = 16;
    o->cache_tokens = 0;
    o->max_batch_tokens = 512;
    o->decompress_min = 32;
    o->par_min_cost = 65536.0;
    o->act_q8 = true; /* the fast path; false is the exact (float) one */
}

const moe_model *moe_engine_model(const moe_engine *e) { return e->m; }
const moe_kern_set *moe_engine_kernels(const moe_engine *e) { return e->k; }
moe_kvcache *moe_engine_cache(moe_engine *e) { return e->cache; }

/* Activations start on cache lines, so a kernel's speed never depends on
 * where malloc happened to put them (rows of the usual widths stay aligned). */
static float *falloc(int64_t n) { return moe_xmalloc_lines((size_t)(n > 0 ? n : 1) * sizeof(float)); }

/* The options with their defaults filled in, checked. */
static int opts_resolve(const moe_hparams *hp, moe_engine_opts *o, moe_err *err)
{
    if (o->n_threads < 1 || o->n_threads > 256) return moe_err_set(err, "threads %d not in 1..256", o->n_threads);
    if (o->max_ctx <= 0) o->max_ctx = hp->ctx_train < 4096 ? hp->ctx_train : 4096;
    if (o->max_ctx > (1 << 24)) return moe_err_set(err, "max context %lld is too large", (long long)o->max_ctx);
    if (o->max_seqs < 1 || o->max_seqs > 4096) return moe_err_set(err, "max sequences %d not in 1..4096", o->max_seqs);
    if (o->max_batch_tokens < 1 || o->max_batch_tokens > 65536)
        return moe_err_set(err, "max batch tokens %d not in 1..65536", o->max_batch_tokens);
    if (o->decompress_min < 0) return moe_err_set(err, "decompress_min < 0");
    if (o->block_size < 1 || o->block_size > 4096) return moe_err_set(err, "block size %d not in 1..4096", o->block_size);
    /* max_seqs sequences of max_ctx each, a sequence holding whole blocks
     * (<= (2^24 + 4095) · 4096 tokens: no overflow) */
    if (o->cache_tokens <= 0)
        o->cache_tokens = (o->max_ctx + o->block_size - 1) / o->block_size * o->block_size * o->max_seqs;
    if (o->cache_tokens > ((int64_t)1 << 40)) return moe_err_set(err, "cache of %lld tokens is too large", (long long)o->cache_tokens);
    return MOE_OK;
}

static moe_kvcache_cfg cache_cfg(const moe_hparams *hp, const moe_engine_opts *o)
{
    return (moe_kvcache_cfg){
        .n_layer = hp->n_layer + (o->mtp ? 1 : 0), /* the MTP block's latents after the trunk's */
        .width = hp->kv_lora + hp->qk_rope,
        .block_size = o->block_size,
        .n_blocks = (o->cache_tokens + o->block_size - 1) / o->block_size,
        .max_seqs = o->max_seqs,
        .max_ctx = o->max_ctx,
    };
}

/* Bytes of the buffers moe_engine_init allocates beside the cache, buffer
 * for buffer in the order it allocates them (keep the two in step:
 * tests/plan_mem_test.c compares this with what init takes). */
static int work_bytes(const moe_hparams *hp, const moe_engine_opts *o, uint64_t *out, moe_err *err)
{
    const uint64_t N = (uint64_t)o->max_batch_tokens, D = (uint64_t)hp->dim, H = (uint64_t)hp->n_head;
    const uint64_t qk = (uint64_t)(hp->qk_nope + hp->qk_rope);
    const uint64_t sff = (uint64_t)hp->n_shared * (uint64_t)hp->expert_ff;
    const uint64_t fmax = (uint64_t)hp->dense_ff > sff ? (uint64_t)hp->dense_ff : sff;
    const uint64_t NK = N * (uint64_t)(hp->n_used > 0 ? hp->n_used : 1);
    const uint64_t T = (uint64_t)o->n_threads, ctx = (uint64_t)o->max_ctx;
    const uint64_t E = (uint64_t)hp->n_expert, ff = (uint64_t)hp->expert_ff, kv = (uint64_t)hp->kv_lora;
    /* floats of each buffer (falloc: at least one), then other element sizes */
    const uint64_t floats[][2] = {
        {N, D}, {N, D}, {N, D}, {N, (uint64_t)hp->q_lora}, {N, H * qk}, {N, kv + (uint64_t)hp->qk_rope},
        {N, (uint64_t)hp->qk_rope}, {N, H * (uint64_t)hp->v_dim}, {N, fmax}, {N, fmax}, {N, D}, {N, E}, {NK, 1},
        {NK, D}, {NK, ff}, {NK, ff}, {NK, D}, {N, (uint64_t)hp->vocab},
    };
    const uint64_t other[][2] = {
        {N, sizeof(int)}, {N, sizeof(int64_t)}, {NK, sizeof(int32_t)}, {NK, sizeof(int32_t)}, {NK, sizeof(int32_t)},
        {E + 1, sizeof(int32_t)}, {2 * E + 4, sizeof(mm_job)}, {2 * E + 4, sizeof(int32_t)},
        {N * H, sizeof(attn_task)},
        {T, sizeof(attn_scratch)}, {1, sizeof(moe_engine)},
    };
    bool ok = true;
    uint64_t b = 0, t;
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
        ok = ok && moe_mul_u64(floats[i][0], floats[i][1], &t) && moe_mul_u64(t ? t : 1, sizeof(float), &t) &&
             moe_add_u64(b, t, &b);
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        ok = ok && moe_mul_u64(other[i][0], other[i][1], &t) && moe_add_u64(b, t, &b);
    if (o->act_q8) {
        /* as in init: the largest set of distinct activations one run quantizes */
        uint64_t q = (NK + N) * D;
        const uint64_t cands[] = {NK * ff + N * sff, N * (uint64_t)hp->dense_ff, N * H * (uint64_t)hp->v_dim,
                                  N * (uint64_t)hp->q_lora, N * D};
        for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) q = cands[i] > q ? cands[i] : q;
        ok = ok && q <= INT64_MAX / 8 &&
             moe_add_u64(b, 3 * (uint64_t)moe_kern_act_bytes_max((int64_t)q) + 64 * (2 * E + 5), &b);
    }
    /* per thread: scores, q_lat, ctx_lat, dec, ml, xq */
    const uint64_t scores = (ctx > ATTN_CHUNK ? ctx : ATTN_CHUNK) * H;
    const uint64_t dec = o->decompress_min > 0 ? ctx * (uint64_t)(hp->qk_nope + hp->v_dim) : 0;
    const uint64_t ar = (uint64_t)moe_eng_attn_rows(hp, o->n_threads);
    uint64_t lat = 0, xqb = 0, per = 0;
    ok = ok && moe_mul_u64(ar * (uint64_t)moe_eng_attn_heads(hp, o->n_threads), kv, &lat) &&
         moe_mul_u64(ar, (uint64_t)moe_kern_act_bytes_max(hp->kv_lora + hp->qk_nope), &xqb) &&
         moe_add_u64(scores, lat, &per) && moe_add_u64(per, lat, &per) && moe_add_u64(per, dec + 2 * H, &per) &&
         moe_mul_u64(per, sizeof(float), &per) && moe_add_u64(per, xqb, &per) &&
         moe_mul_u64(per, T, &per) && moe_add_u64(b, per, &b);
    if (o->mtp) ok = ok && moe_mul_u64(N, 2 * D * sizeof(float), &t) && moe_add_u64(b, t, &b); /* mtp_in */
    if (!ok) return moe_err_set(err, "engine buffer sizes overflow");
    *out = b;
    return MOE_OK;
}

int moe_engine_mem(const moe_hparams *hp, const moe_engine_opts *opts, uint64_t *cache_bytes, uint64_t *work,
                   moe_err *err)
{
    moe_engine_opts o = *opts;
    if (opts_resolve(hp, &o, err)) return MOE_ERR;
    const moe_kvcache_cfg cc = cache_cfg(hp, &o);
    if (moe_kvcache_bytes(&cc, cache_bytes, err)) return MOE_ERR;
    return work_bytes(hp, &o, work, err);
}

/* One matrix to its repacked copy, if its type has the layout. */
static void repack_mat(moe_engine *e, moe_mat *w, int cap)
{
    const size_t bytes = moe_kern_repack_bytes(w->type, w->rows, w->cols);
    if (!bytes || !w->data) return;
    MOE_ASSERT(e->n_rp < cap);
    void *buf = moe_xmalloc_lines(bytes);
    moe_kern_repack(w, buf);
    w->rp = buf;
    w->rp_row = 0;
    e->rp_bufs[e->n_rp++] = buf;
    e->rp_bytes += bytes;
}

/* --repack: copies of the layers and output whose dense matrices of a
 * type with a repacked layout (Q8_0, Q4_K; every rank reads them for every
 * token) carry repacked data: the attention projections and its per-head
 * k_b / v_b (views of them keep the copy), the dense and shared FFN, the
 * output.  A fused kv_b is left out: its key half only feeds float
 * products (moe_kern_matvec_t), so half its copy would never be read.  The
 * routed experts keep the file's layout: a rank's share of them is most of
 * the model, and copying it would double that. */
enum { RP_PER_LAYER = 13 };
#define RP_LAYER_MATS(L)                                                                                  \
    {&(L)->q, &(L)->q_a, &(L)->q_b, &(L)->kv_a, &(L)->k_b, &(L)->v_b, &(L)->o, &(L)->gate, &(L)->up,     \
     &(L)->down, &(L)->gate_sh, &(L)->up_sh, &(L)->down_sh}

static void repack_dense(moe_engine *e)
{
    const moe_hparams *hp = &e->m->hp;
    const int cap = hp->n_layer * RP_PER_LAYER + 1;
    e->rp_bufs = moe_xcalloc((size_t)cap, sizeof *e->rp_bufs);
    e->lay_own = moe_xmalloc((size_t)hp->n_layer * sizeof *e->lay_own);
    memcpy(e->lay_own, e->m->layers, (size_t)hp->n_layer * sizeof *e->lay_own);
    for (int il = 0; il < hp->n_layer; il++) {
        moe_layer *L = &e->lay_own[il];
        moe_mat *mats[RP_PER_LAYER] = RP_LAYER_MATS(L);
        for (int i = 0; i < RP_PER_LAYER; i++) repack_mat(e, mats[i], cap);
    }
    repack_mat(e, &e->output, cap);
    e->lay = e->lay_own;
}

uint64_t moe_engine_repack_bytes(const moe_model *m)
{
    uint64_t sum = moe_kern_repack_bytes(m->output.type, m->output.rows, m->output.cols);
    for (int il = 0; il < m->hp.n_layer; il++) {
        const moe_layer *L = &m->layers[il];
        const moe_mat *mats[RP_PER_LAYER] = RP_LAYER_MATS(L);
        for (int i = 0; i < RP_PER_LAYER; i++)
            if (mats[i]->data) sum += moe_kern_repack_bytes(mats[i]->type, mats[i]->rows, mats[i]->cols);
    }
    return sum;
}

void moe_engine_repacked(const moe_engine *e, int *n_mats, uint64_t *bytes)
{
    *n_mats = e->n_rp;
    *bytes = e->rp_bytes;
}

int moe_engine_init(moe_engine **out, const moe_model *m, const moe_engine_opts *opts, moe_err *err)
{
    *out = NULL;
    moe_engine_opts o = *opts;
    const moe_hparams *hp = &m->hp;
    if (opts_resolve(hp, &o, err)) return MOE_ERR;
    if (o.mtp && !m->mtp)
        return moe_err_set(err, "MTP: %s", m->mtp_err[0] ? m->mtp_err : "the file has no MTP block (nextn_predict_layers)");
    if (!o.kernels && moe_kern_choose(&o.kernels, err)) return MOE_ERR;

    moe_engine *e = moe_xcalloc(1, sizeof *e);
    e->m = m;
    e->o = o;
    e->k = o.kernels;
    e->lay = m->layers;
    e->output = m->output;
    e->f32 = moe_kern_for(e->k, MOE_DT_F32);
    if (moe_pool_init(&e->pool, o.n_threads, err) != MOE_OK) {
        free(e);
        return MOE_ERR;
    }
    const moe_kvcache_cfg cc = cache_cfg(hp, &o);
    if (moe_kvcache_init(&e->cache, &cc, err) != MOE_OK) {
        moe_pool_free(e->pool);
        free(e);
        return MOE_ERR;
    }
    if (o.act_q8 && o.repack) repack_dense(e); /* after the steps that can fail */
    const int64_t N = o.max_batch_tokens, D = hp->dim, H = hp->n_head;
    if (o.mtp) { /* the MTP block is layer n_layer (in the file's layout) */
        moe_layer *l = moe_xmalloc(((size_t)hp->n_layer + 1) * sizeof *l);
        memcpy(l, e->lay, (size_t)hp->n_layer * sizeof *l);
        l[hp->n_layer] = m->mtp->layer;
        free(e->lay_own);
        e->lay = e->lay_own = l;
        e->mtp_in = falloc(N * 2 * D);
    }
    const int64_t qk = hp->qk_nope + hp->qk_rope;
    const int64_t sff = (int64_t)hp->n_shared * hp->expert_ff;
    const int64_t fmax = hp->dense_ff > sff ? hp->dense_ff : sff;
    const int64_t NK = N * (hp->n_used > 0 ? hp->n_used : 1);
    e->row_seq = moe_xmalloc((size_t)N * sizeof(int));
    e->row_pos = moe_xmalloc((size_t)N * sizeof(int64_t));
    e->x = falloc(N * D);
    e->h = falloc(N * D);
    e->tmp = falloc(N * D);
    e->qa = falloc(N * hp->q_lora);
    e->q = falloc(N * H * qk);
    e->kva = falloc(N * (hp->kv_lora + hp->qk_rope));
    e->cs = falloc(N * hp->qk_rope);
    e->ao = falloc(N * H * hp->v_dim);
    e->fg = falloc(N * fmax);
    e->fu = falloc(N * fmax);
    e->sh = falloc(N * D);
    e->glog = falloc(N * hp->n_expert);
    e->ids = moe_xmalloc((size_t)NK * sizeof(int32_t));
    e->wts = falloc(NK);
    e->slot = moe_xmalloc((size_t)NK * sizeof(int32_t));
    e->order = moe_xmalloc((size_t)NK * sizeof(int32_t));
    e->xe = falloc(NK * D);
    e->ge = falloc(NK * hp->expert_ff);
    e->ue = falloc(NK * hp->expert_ff);
    e->ye = falloc(NK * D);
    e->e_off = moe_xcalloc((size_t)(hp->n_expert + 1), sizeof(int32_t));
    e->logits = falloc(N * hp->vocab);
    e->jobs = moe_xmalloc((size_t)(2 * hp->n_expert + 4) * sizeof(mm_job));
    e->prep = moe_xmalloc((size_t)(2 * hp->n_expert + 4) * sizeof(int32_t));
    if (o.act_q8) {
        /* the largest set of distinct activations one run quantizes */
        int64_t b = (NK + N) * D;
        const int64_t cands[] = {NK * hp->expert_ff + N * sff, N * hp->dense_ff, N * H * hp->v_dim,
                                 N * hp->q_lora, N * D};
        for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) b = cands[i] > b ? cands[i] : b;
        /* once per dot type it meets (q8_0, q8_1, q8_K), each piece
         * rounded up to a 64-byte line */
        e->xq_bytes = 3 * moe_kern_act_bytes_max(b) + 64 * (size_t)(2 * hp->n_expert + 5);
        e->xq = moe_xmalloc_lines(e->xq_bytes);
    }
    e->tasks = moe_xmalloc((size_t)(N * H) * sizeof(attn_task));
    e->as = moe_xcalloc((size_t)o.n_threads, sizeof(attn_scratch));
    const int64_t ar = moe_eng_attn_rows(hp, o.n_threads), lat = ar * moe_eng_attn_heads(hp, o.n_threads) * hp->kv_lora;
    for (int i = 0; i < o.n_threads; i++) {
        e->as[i].scores = falloc((o.max_ctx > ATTN_CHUNK ? o.max_ctx : ATTN_CHUNK) * H);
        e->as[i].q_lat = falloc(lat);
        e->as[i].ctx_lat = falloc(lat);
        e->as[i].dec = o.decompress_min > 0 ? falloc(o.max_ctx * (hp->qk_nope + hp->v_dim)) : NULL;
        e->as[i].ml = falloc(2 * H);
        e->as[i].xq = moe_xmalloc_lines((size_t)ar * moe_kern_act_bytes_max(hp->kv_lora + hp->qk_nope));
    }
    *out = e;
    return MOE_OK;
}

void moe_engine_set_gate_limit(moe_engine *e, int il, const moe_gate_limit *lim)
{
    MOE_ASSERT(il >= 0 && il < e->m->hp.n_layer);
    if (!e->limits) e->limits = moe_xcalloc((size_t)e->m->hp.n_layer, sizeof *e->limits);
    e->limits[il] = lim;
}

void moe_engine_prefix_flush(moe_engine *e) { moe_kvcache_prefix_flush(e->cache); }

bool moe_engine_chunk_decompresses(const moe_engine *e, int n)
{
    /* the int8 path stays absorbed everywhere (llama.cpp's MLA order) */
    return !e->o.act_q8 && e->o.decompress_min > 0 && n >= e->o.decompress_min;
}

uint64_t moe_engine_identity(const moe_engine *e)
{
    const moe_hparams *hp = &e->m->hp;
    const int64_t f[] = {hp->n_layer, hp->dim, hp->n_head, hp->q_lora, hp->kv_lora, hp->qk_nope, hp->qk_rope,
                         hp->v_dim, hp->n_expert, hp->n_used, hp->n_shared, hp->vocab, e->o.act_q8, e->o.repack,
                         e->o.decompress_min};
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the fields and the kernel set's name */
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        for (int b = 0; b < 8; b++) h = (h ^ (uint8_t)((uint64_t)f[i] >> (8 * b))) * 0x100000001b3ull;
    for (const char *c = moe_kern_name(e->k); *c; c++) h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
    return h;
}

void moe_engine_free(moe_engine *e)
{
    if (!e) return;
    for (int i = 0; i < e->n_rp; i++) free(e->rp_bufs[i]);
    free(e->rp_bufs);
    free(e->lay_own);
    free(e->limits);
    moe_pool_free(e->pool);
    moe_kvcache_free(e->cache);
    for (int i = 0; i < e->o.n_threads; i++) {
        free(e->as[i].scores);
        free(e->as[i].q_lat);
        free(e->as[i].ctx_lat);
        free(e->as[i].dec);
        free(e->as[i].xq);
        free(e->as[i].ml);
    }
    free(e->as);
    free(e->row_seq);
    free(e->row_pos);
    free(e->x);
    free(e->h);
    free(e->tmp);
    free(e->qa);
    free(e->q);
    free(e->kva);
    free(e->cs);
    free(e->ao);
    free(e->fg);
    free(e->fu);
    free(e->sh);
    free(e->glog);
    free(e->ids);
    free(e->wts);
    free(e->slot);
    free(e->order);
    free(e->xe);
    free(e->ge);
    free(e->ue);
    free(e->ye);
    free(e->e_off);
    free(e->logits);
    free(e->mtp_in);
    free(e->jobs);
    free(e->prep);
    free(e->xq);
    free(e->tasks);
    free(e);
}

int moe_engine_seq_new(moe_engine *e, int *seq, moe_err *err) { return moe_kvcache_seq_new(e->cache, seq, err); }
void moe_engine_seq_free(moe_engine *e, int seq) { moe_kvcache_seq_free(e->cache, seq); }
int64_t moe_engine_seq_len(const moe_engine *e, int seq) { return moe_kvcache_seq_len(e->cache, seq); }

void moe_engine_get_stats(const moe_engine *e, moe_engine_stats *st)
{
    st->cache_bytes_in_use = moe_kvcache_bytes_in_use(e->cache);
    st->cache_block_bytes = moe_kvcache_block_bytes(e->cache);
    st->tokens_processed = e->tokens_processed;
}

void moe_engine_set_experts_tick(moe_engine *e, void (*fn)(void *), void *ctx)
{
    e->experts_tick = fn;
    e->experts_tick_ctx = ctx;
}

void moe_engine_set_route_fn(moe_engine *e, moe_engine_route_fn fn, void *ctx)
{
    e->route_fn = fn;
    e->route_ctx = ctx;
}

void moe_engine_profile_enable(moe_engine *e, bool on)
{
    e->prof_on = on;
    memset(&e->prof, 0, sizeof e->prof);
    moe_pool_stats_enable(e->pool, on);
}

void moe_engine_profile_get(const moe_engine *e, moe_engine_profile *pr)
{
    *pr = e->prof;
    moe_pool_stats_get(e->pool, &pr->pool);
}

/* ---- parallel matrix products --------------------------------------------- */

typedef struct mm_ctx {
    const moe_kern_set *k;
    const mm_job *jobs;
    int n_jobs;
    int n_chunks;
    double total_cost;
    double edge[MM_MAX_CHUNKS + 1]; /* chunk ci covers costs [edge[ci], edge[ci + 1]) */
    int n_regions;                   /* chunks [first[r], first[r + 1]) are region r's */
    int first[MM_MAX_REGIONS + 1];
    atomic_int next[MM_MAX_REGIONS]; /* region r's next chunk, less first[r] */
    const int32_t *prep; /* jobs whose activation gets SwiGLU / quantization first */
    int n_prep;
    atomic_int next_prep, prep_done;
} mm_ctx;

/* Cost of one output row of a job: weight bytes plus per-token work. */
static double job_row_cost(const mm_job *j) { return (double)j->w.row_bytes + 2.0 * (double)j->w.cols * (double)j->n; }

/* Row r of w moved up to the start of a group of the repacked layout (or
 * to the end): a chunk boundary that splits no group. */
static int64_t rp_align(const moe_mat *w, int64_t r)
{
    const int64_t a = (w->rp_row + r + MOE_RP_ROWS - 1) / MOE_RP_ROWS * MOE_RP_ROWS - w->rp_row;
    return a < w->rows ? a : w->rows;
}

/* Chunk ci of nc takes the rows whose cumulative-cost start lies in
 * [edge[ci], edge[ci + 1]).  Which thread computes a row never changes the
 * value of that row. */
static void mm_chunk(const mm_ctx *c, int ci, int nc)
{
    const double lo = c->edge[ci], hi = c->edge[ci + 1];
    double base = 0.0;
    for (int i = 0; i < c->n_jobs && base < hi; i++) {
        const mm_job *j = &c->jobs[i];
        if (j->n <= 0) continue; /* no cost in total_cost either */
        const double per = job_row_cost(j), end = base + per * (double)j->w.rows;
        if (end > lo) {
            int64_t r0 = lo <= base ? 0 : (int64_t)ceil((lo - base) / per);
            int64_t r1 = hi >= end ? j->w.rows : (int64_t)ceil((hi - base) / per);
            if (ci == nc - 1) r1 = j->w.rows;
            if (j->w.rp) { /* whole groups of the repacked layout to each chunk (the ends stay) */
                if (r0 > 0) r0 = rp_align(&j->w, r0);
                if (r1 < j->w.rows) r1 = rp_align(&j->w, r1);
            }
            if (r0 > j->w.rows) r0 = j->w.rows;
            if (r1 > j->w.rows) r1 = j->w.rows;
            if (r0 < r1 && j->xq)
                moe_kern_matmul_rows_int8(c->k, &j->w, r0, r1, j->xq, j->xqs, j->n, j->y, j->ys);
            else if (r0 < r1)
                moe_kern_matmul_rows(c->k, &j->w, r0, r1, j->x, j->xs, j->n, j->y, j->ys);
        }
        base = end;
    }
}

/* Before the products: each distinct activation of the run (one x) gets
 * its SwiGLU if its job asks for one, then, on the int8 path, is quantized
 * once per dot type its jobs need (one input can feed matrices of several
 * types: a Q4_K q_a beside a Q5_0 kv_a, say), row by row, so a token's
 * blocks never depend on its batch.  Float-only types (F32, F16, BF16) keep
 * x.  plan_prep (on the caller) places the quantized pieces and lists one
 * prep task per activation that needs work; the run's threads take those
 * tasks first (mm_prep_task), so the SwiGLUs and quantizations of the
 * experts of a MoE layer are spread over the threads. */
static bool same_x(const mm_job *a, const mm_job *b) { return a->x == b->x && a->xs == b->xs && a->n == b->n; }

static void plan_prep(moe_engine *e, mm_job *jobs, int n_jobs, mm_ctx *c)
{
    size_t used = 0;
    int n_prep = 0;
    for (int i = 0; i < n_jobs; i++) {
        mm_job *j = &jobs[i];
        if (j->xq_in) continue; /* nothing to prepare; x (NULL) is nobody's */
        const uint32_t dt = moe_kern_dot_type(j->w.type);
        int owner = i;
        for (int p = 0; p < i && owner == i; p++)
            if (same_x(&jobs[p], j)) owner = p;
        /* a shared activation gets its SwiGLU once, from its first job */
        MOE_ASSERT(owner == i || jobs[owner].glu == j->glu);
        j->xq = NULL;
        j->xq_own = false;
        if (e->o.act_q8 && dt != MOE_DT_F32 && j->n > 0) {
            for (int p = 0; p < i && !j->xq; p++)
                if (jobs[p].xq && same_x(&jobs[p], j) && jobs[p].w.cols == j->w.cols &&
                    moe_kern_dot_type(jobs[p].w.type) == dt) {
                    j->xq = jobs[p].xq;
                    j->xqs = jobs[p].xqs;
                }
            if (!j->xq) {
                const size_t rb = moe_kern_act_row_bytes(dt, j->w.cols);
                MOE_ASSERT(used + rb * (size_t)j->n <= e->xq_bytes);
                j->xq = e->xq + used;
                j->xqs = j->w.cols / moe_kern_act_block(dt);
                j->xq_own = true;
                used += (rb * (size_t)j->n + 63) & ~(size_t)63;
            }
        }
        if (j->n <= 0) continue;
        /* the owner's task covers this job's quantization too */
        const bool needs = (owner == i && j->glu) || j->xq_own;
        bool listed = false;
        for (int q = 0; q < n_prep && !listed; q++) listed = e->prep[q] == owner;
        if (needs && !listed) e->prep[n_prep++] = owner;
    }
    c->n_prep = n_prep;
}

/* The prep task of the activation whose first job is jobs[i]. */
static void mm_prep_task(const mm_ctx *c, int i)
{
    const mm_job *o = &c->jobs[i];
    if (o->glu)
        for (int64_t t = 0; t < o->n; t++) moe_kern_swiglu((float *)(uintptr_t)(o->x + t * o->xs), o->glu + t * o->xs, o->w.cols);
    for (int k = i; k < c->n_jobs; k++) {
        const mm_job *j = &c->jobs[k];
        if (!same_x(j, o) || !j->xq_own) continue;
        const uint32_t dt = moe_kern_dot_type(j->w.type);
        const size_t rb = moe_kern_act_row_bytes(dt, j->w.cols);
        for (int64_t t = 0; t < j->n; t++)
            moe_kern_quantize_act(c->k, dt, j->x + t * j->xs, (unsigned char *)(uintptr_t)j->xq + (size_t)t * rb,
                                  j->w.cols);
    }
}

/* Threads take chunks from shared counters until none is left: a thread
 * that starts late (woken from sleep, or preempted by another process on
 * a shared machine) takes fewer, instead of the others waiting for it.
 * The run's cost is cut into one region per thread (at most
 * MM_MAX_REGIONS: thread i starts in region i mod that, so more threads
 * share regions), each a run of consecutive chunks: a thread takes its
 * own region's chunks in order, so it reads one contiguous stream of
 * weights (its prefetches run ahead into its own next rows, not into
 * another thread's), then helps in the next regions.  Within a region
 * chunks shrink towards its end (guided: each takes 1/(2·nth) of what is
 * left of the region, at most 1/(8·nth) of the run, none below
 * MM_CHUNK_MIN_COST, and no fewer than the region's share of the
 * MM_MAX_CHUNKS allows, so its last chunk is no larger than the others),
 * so a thread that finishes first waits at most about one small chunk.
 * (2 threads, a 2.4 MB matrix streamed in 64 KiB chunks taken
 * alternately: 37-38 GB/s; in two halves: 41-46.) */
static void mm_plan_chunks(mm_ctx *c, int nth)
{
    const double total = c->total_cost;
    const int nr = nth < MM_MAX_REGIONS ? nth : MM_MAX_REGIONS;
    /* a run that is small for its threads still gets 2·nth chunks */
    const double minc = MM_CHUNK_MIN_COST < total / (2.0 * nth) ? MM_CHUNK_MIN_COST : total / (2.0 * nth);
    /* and none above 1/8 of a thread's share: a thread preempted (or put to
     * sleep) holding a chunk holds the run for that chunk */
    const double maxc = total / (8.0 * nth);
    const int budget = MM_MAX_CHUNKS / nr; /* chunks a region may have */
    int nc = 0;
    c->edge[0] = 0.0;
    c->n_regions = nr;
    for (int r = 0; r < nr; r++) {
        const double hi = r == nr - 1 ? total : total * (double)(r + 1) / nr;
        double at = c->edge[nc];
        c->first[r] = nc;
        atomic_init(&c->next[r], 0);
        for (int made = 1; made < budget; made++) {
            const double left = hi - at;
            double size = left / (2.0 * nth);
            if (size > maxc) size = maxc;
            /* the chunks still to make (this one and the last) share what is left */
            if (size < left / (double)(budget - made + 1)) size = left / (double)(budget - made + 1);
            if (size < minc) size = minc;
            if (left - size < 0.5 * minc) break; /* the rest is the region's last chunk */
            at += size;
            c->edge[++nc] = at;
        }
        c->edge[++nc] = hi; /* the region's last chunk (its first, when it is small) */
    }
    MOE_ASSERT(nc <= MM_MAX_CHUNKS);
    c->first[nr] = nc;
    c->n_chunks = nc;
}

static void mm_worker(void *arg, int ith, int nth)
{
    (void)nth;
    mm_ctx *c = arg;
    /* prep tasks first; no product starts before all are done (a thread
     * that took one is running it, so this wait is short) */
    for (;;) {
        const int i = atomic_fetch_add_explicit(&c->next_prep, 1, memory_order_relaxed);
        if (i >= c->n_prep) break;
        mm_prep_task(c, c->prep[i]);
        atomic_fetch_add_explicit(&c->prep_done, 1, memory_order_release);
    }
    while (atomic_load_explicit(&c->prep_done, memory_order_acquire) < c->n_prep) moe_pool_relax();
    const int nr = c->n_regions;
    for (int k = 0; k < nr; k++) {
        const int r = (ith + k) % nr;
        for (;;) {
            const int ci = c->first[r] + atomic_fetch_add_explicit(&c->next[r], 1, memory_order_relaxed);
            if (ci >= c->first[r + 1]) break;
            mm_chunk(c, ci, c->n_chunks);
        }
    }
}

void moe_eng_run_jobs(moe_engine *e, mm_job *jobs, int n_jobs)
{
    const double t0 = moe_eng_clock(e);
    mm_ctx c = {.k = e->k, .jobs = jobs, .n_jobs = n_jobs, .prep = e->prep};
    plan_prep(e, jobs, n_jobs, &c);
    atomic_init(&c.next_prep, 0);
    atomic_init(&c.prep_done, 0);
    for (int i = 0; i < n_jobs; i++)
        if (jobs[i].n > 0) c.total_cost += job_row_cost(&jobs[i]) * (double)jobs[i].w.rows;
    if (c.total_cost <= 0.0) return;
    /* small runs stay on the caller: waking threads costs more than it saves
     * (the result is the same either way) */
    if (c.total_cost < e->o.par_min_cost || moe_pool_size(e->pool) == 1) {
        for (int i = 0; i < c.n_prep; i++) mm_prep_task(&c, c.prep[i]);
        const double t1 = moe_eng_clock(e);
        e->prof.quant_s += t1 - t0;
        c.edge[0] = 0.0;
        c.edge[1] = c.total_cost;
        mm_chunk(&c, 0, 1);
        e->prof.solo_s += moe_eng_clock(e) - t1;
        return;
    }
    /* chunks none much below MM_CHUNK_MIN_COST (a chunk's rows share one
     * pass over the activations) */
    mm_plan_chunks(&c, moe_pool_size(e->pool));
    const double t1 = moe_eng_clock(e);
    e->prof.quant_s += t1 - t0;
    moe_pool_run(e->pool, mm_worker, &c);
    e->prof.mm_par_s += moe_eng_clock(e) - t1;
}

/* ---- FFN / MoE --------------------------------------------------------------- */

void moe_engine_moe_route(moe_engine *e, int il, const float *x, int n_tok, int32_t *ids, float *w)
{
    const moe_hparams *hp = &e->m->hp;
    const moe_layer *L = &e->lay[il];
    mm_job jb = moe_eng_job(&L->gate_inp, x, hp->dim, n_tok, e->glog, hp->n_expert);
    moe_eng_run_jobs(e, &jb, 1);
    moe_gate_cfg gc = moe_model_gate_cfg(e->m, il);
    if (e->limits && il < hp->n_layer) gc.limit = e->limits[il];
    for (int t = 0; t < n_tok; t++)
        moe_gate_route(&gc, e->glog + (size_t)t * hp->n_expert, ids + (size_t)t * hp->n_used,
                       w + (size_t)t * hp->n_used, NULL);
}

static moe_mat expert_mat(const moe_mat *all, int expert, int64_t rows)
{
    return moe_mat_rows(all, (int64_t)expert * rows, rows);
}

int moe_engine_expert_rows(const moe_engine *e) { return e->o.max_batch_tokens * (e->m->hp.n_used > 0 ? e->m->hp.n_used : 1); }

/* The routed experts' two parallel runs on rows grouped by expert: gate and
 * up of every group that has rows (plus, with n_sh > 0, the shared experts'
 * gate and up of n_sh rows of e->h) in one run, SwiGLU, then every down
 * (and the shared down into e->sh) in a second.  experts NULL: group i is
 * expert i.  x, y: [off[n_groups]][dim]; rows off[0] .. off[n_groups]-1.
 * order: NULL, or each row's token·n_used + slot, so that a group of one row
 * reads its token's row of e->h in place (x's copy left unwritten).  The
 * down products SwiGLU their inputs inside the run.  On the int8 path quantize_jobs turns each row into its dot type once for
 * gate and up (they share x) and once for down: a row's products depend on
 * the row alone, whoever else is in the run.  xq: the rows come already
 * quantized to moe_engine_expert_act_type (rows of that type's row bytes,
 * x unused): the same blocks quantize_jobs would make of them. */
static void experts_run(moe_engine *e, int il, int n_groups, const int32_t *experts, const int32_t *off,
                        const float *x, const void *xq, const int32_t *order, float *y, int n_sh)
{
    const moe_hparams *hp = &e->m->hp;
    const moe_layer *L = &e->lay[il];
    const int64_t D = hp->dim, ff = hp->expert_ff, sff = (int64_t)hp->n_shared * ff;
    MOE_ASSERT(n_groups >= 0 && n_groups <= hp->n_expert && off[0] >= 0 &&
               off[n_groups] <= moe_engine_expert_rows(e));
    int nj = 0;
    mm_job *jb = e->jobs;
    for (int i = 0; i < n_groups; i++) {
        const int64_t cnt = off[i + 1] - off[i];
        if (cnt <= 0) continue;
        const int ex = experts ? experts[i] : i;
        MOE_ASSERT(ex >= 0 && ex < hp->n_expert);
        const moe_mat wg = expert_mat(&L->gate_exps, ex, ff), wu = expert_mat(&L->up_exps, ex, ff);
        const size_t o = (size_t)off[i];
        if (xq) {
            const uint32_t dt = moe_kern_dot_type(wg.type);
            const char *xr = (const char *)xq + o * moe_kern_act_row_bytes(dt, D);
            const int64_t xqs = D / moe_kern_act_block(dt);
            jb[nj++] = moe_eng_q_job(&wg, xr, xqs, cnt, e->ge + o * ff, ff);
            jb[nj++] = moe_eng_q_job(&wu, xr, xqs, cnt, e->ue + o * ff, ff);
            continue;
        }
        /* order given: a group of one row reads its token's row of e->h in place */
        const float *xin = cnt == 1 && order ? e->h + (size_t)(order[o] / hp->n_used) * D : x + o * D;
        jb[nj++] = moe_eng_job(&wg, xin, D, cnt, e->ge + o * ff, ff);
        jb[nj++] = moe_eng_job(&wu, xin, D, cnt, e->ue + o * ff, ff);
    }
    if (n_sh > 0 && sff > 0) {
        jb[nj++] = moe_eng_job(&L->gate_sh, e->h, D, n_sh, e->fg, sff);
        jb[nj++] = moe_eng_job(&L->up_sh, e->h, D, n_sh, e->fu, sff);
    }
    moe_eng_run_jobs(e, jb, nj);
    if (e->experts_tick) e->experts_tick(e->experts_tick_ctx);
    /* every down (+ shared), each input SwiGLU'd by the run */
    nj = 0;
    for (int i = 0; i < n_groups; i++) {
        const int64_t cnt = off[i + 1] - off[i];
        if (cnt <= 0) continue;
        const moe_mat wd = expert_mat(&L->down_exps, experts ? experts[i] : i, D);
        const size_t o = (size_t)off[i];
        jb[nj++] = moe_eng_glu_job(&wd, e->ge + o * ff, e->ue + o * ff, ff, cnt, y + o * D, D);
    }
    if (n_sh > 0 && sff > 0) jb[nj++] = moe_eng_glu_job(&L->down_sh, e->fg, e->fu, sff, n_sh, e->sh, D);
    moe_eng_run_jobs(e, jb, nj);
}

void moe_engine_moe_experts(moe_engine *e, int il, int n_groups, const int32_t *experts, const int32_t *off,
                            const float *x, float *y)
{
    experts_run(e, il, n_groups, experts, off, x, NULL, NULL, y, 0);
}

void moe_engine_moe_experts_shared(moe_engine *e, int il, int n_groups, const int32_t *experts, const int32_t *off,
                                   const float *x, float *y, int n_sh)
{
    MOE_ASSERT(n_sh >= 0 && n_sh <= e->o.max_batch_tokens);
    experts_run(e, il, n_groups, experts, off, x, NULL, NULL, y, n_sh);
}

bool moe_engine_int8(const moe_engine *e) { return e->o.act_q8; }

uint32_t moe_engine_expert_act_type(const moe_engine *e, int il)
{
    return e->o.act_q8 ? moe_model_expert_dot_type(e->m, il) : MOE_DT_F32;
}

typedef struct quant_rows_ctx {
    const moe_kern_set *k;
    uint32_t dt;
    const float *x;
    char *out;
    int n;
    int64_t dim;
    size_t rb;
} quant_rows_ctx;

/* rows [n·ith/nth, n·(ith+1)/nth) of a quant_rows_ctx */
static void quant_rows(void *arg, int ith, int nth)
{
    const quant_rows_ctx *c = arg;
    const int t0 = (int)((int64_t)c->n * ith / nth), t1 = (int)((int64_t)c->n * (ith + 1) / nth);
    for (int t = t0; t < t1; t++)
        moe_kern_quantize_act(c->k, c->dt, c->x + (size_t)t * (size_t)c->dim, c->out + (size_t)t * c->rb, c->dim);
}

/* Rows quantized on the caller below this many (waking the pool costs more) */
#define QUANT_PAR_MIN_ROWS 32

void moe_engine_expert_act_quantize(const moe_engine *e, int il, const float *x, int n, void *out)
{
    const uint32_t dt = moe_engine_expert_act_type(e, il);
    MOE_ASSERT(dt != MOE_DT_F32 && n >= 0);
    const int64_t D = e->m->hp.dim;
    quant_rows_ctx c = {e->k, dt, x, out, n, D, moe_kern_act_row_bytes(dt, D)};
    if (n >= QUANT_PAR_MIN_ROWS && moe_pool_size(e->pool) > 1) moe_pool_run(e->pool, quant_rows, &c);
    else quant_rows(&c, 0, 1);
}

void moe_engine_moe_experts_shared_q(moe_engine *e, int il, int n_groups, const int32_t *experts, const int32_t *off,
                                     const void *xq, float *y, int n_sh)
{
    MOE_ASSERT(n_sh >= 0 && n_sh <= e->o.max_batch_tokens && moe_engine_expert_act_type(e, il) != MOE_DT_F32);
    experts_run(e, il, n_groups, experts, off, NULL, xq, NULL, y, n_sh);
}

void moe_engine_moe_combine(int dim, int n_used, const float *w, const float *const *y_rows, const float *shared,
                            float *out)
{
    for (int i = 0; i < dim; i++) out[i] = 0.0f;
    for (int j = 0; j < n_used; j++)
        for (int i = 0; i < dim; i++) out[i] += w[j] * y_rows[j][i];
    if (shared)
        for (int i = 0; i < dim; i++) out[i] += shared[i];
}

/* The MoE FFN with routed experts behind the hook: shared experts run here
 * while the hook's exchange is in flight (or inside its finish, with the
 * routed ones, when it has no exchange); the sum is the same as locally. */
static void moe_ffn_remote(moe_engine *e, int il, int n)
{
    const moe_hparams *hp = &e->m->hp;
    const moe_layer *L = &e->lay[il];
    const moe_engine_moe_hook *hk = e->o.moe_hook;
    const int K = hp->n_used;
    const int64_t D = hp->dim, sff = (int64_t)hp->n_shared * hp->expert_ff;
    hk->start(hk->ctx, il, e->h, n, e->ids, e->wts, e->row_seq, e->row_pos);
    if (sff > 0 && !hk->shared_in_finish) {
        mm_job jb[2] = {moe_eng_job(&L->gate_sh, e->h, D, n, e->fg, sff), moe_eng_job(&L->up_sh, e->h, D, n, e->fu, sff)};
        moe_eng_run_jobs(e, jb, 1);
        hk->progress(hk->ctx);
        moe_eng_run_jobs(e, jb + 1, 1);
        hk->progress(hk->ctx);
        jb[0] = moe_eng_glu_job(&L->down_sh, e->fg, e->fu, sff, n, e->sh, D);
        moe_eng_run_jobs(e, jb, 1);
        hk->progress(hk->ctx);
    }
    hk->finish(hk->ctx, il, e->ye);
    const float *yr[MOE_GATE_MAX_USED];
    for (int t = 0; t < n; t++) {
        for (int j = 0; j < K; j++) yr[j] = e->ye + ((size_t)t * K + (size_t)j) * D;
        moe_engine_moe_combine((int)D, K, e->wts + (size_t)t * K, yr, sff > 0 ? e->sh + (size_t)t * D : NULL,
                               e->tmp + (size_t)t * D);
    }
    moe_eng_named(e, "ffn_out", il, e->tmp, n, D);
    for (int64_t i = 0; i < (int64_t)n * D; i++) e->x[i] += e->tmp[i];
}

static void ffn_block(moe_engine *e, int il, int n)
{
    const moe_hparams *hp = &e->m->hp;
    const moe_layer *L = &e->lay[il];
    const int64_t D = hp->dim;
    for (int r = 0; r < n; r++) moe_kern_rmsnorm(e->x + r * D, L->ffn_norm, hp->eps, e->h + r * D, D);
    moe_eng_named(e, "ffn_norm", il, e->h, n, D);
    if (!L->is_moe) {
        const int64_t F = hp->dense_ff;
        mm_job jb[2] = {moe_eng_job(&L->gate, e->h, D, n, e->fg, F), moe_eng_job(&L->up, e->h, D, n, e->fu, F)};
        moe_eng_run_jobs(e, jb, 2);
        jb[0] = moe_eng_glu_job(&L->down, e->fg, e->fu, F, n, e->tmp, D);
        moe_eng_run_jobs(e, jb, 1);
        moe_eng_named(e, "ffn_out", il, e->tmp, n, D);
        for (int64_t i = 0; i < (int64_t)n * D; i++) e->x[i] += e->tmp[i];
        return;
    }
    const int K = hp->n_used, E = hp->n_expert;
    const int64_t sff = (int64_t)hp->n_shared * hp->expert_ff;
    moe_engine_moe_route(e, il, e->h, n, e->ids, e->wts);
    moe_eng_named(e, "moe_logits", il, e->glog, n, E);
    if (e->route_fn && n > 0 && il < hp->n_layer) /* the trunk's choices (not the MTP block's) */
        e->route_fn(e->route_ctx, il, n, e->ids, e->wts, e->row_seq, e->row_pos);
    /* the MTP block's experts run here on every rank, for its own rows (no
     * exchange: a rank's MTP step needs no other rank) */
    if (e->o.moe_hook && il < hp->n_layer) {
        moe_ffn_remote(e, il, n);
        return;
    }
    /* group (token, j) pairs by expert, tokens ascending within one */
    moe_group_by_expert(e->ids, n * K, E, e->e_off, e->order);
    /* an expert with several rows gets them copied together; one with a
     * single row reads it where it is (so on the int8 path every expert of
     * a decoded token shares one quantization of it, see quantize_jobs) */
    for (int32_t s = 0; s < e->e_off[E]; s++) {
        const int32_t tj = e->order[s];
        e->slot[tj] = s;
        if (e->e_off[e->ids[tj] + 1] - e->e_off[e->ids[tj]] > 1) memcpy(e->xe + (size_t)s * D, e->h + (size_t)(tj / K) * D, (size_t)D * sizeof(float));
    }
    /* gate and up of every active expert and the shared experts in one
     * parallel run, every down in a second */
    experts_run(e, il, E, NULL, e->e_off, e->xe, NULL, e->order, e->ye, n);
    const float *yr[MOE_GATE_MAX_USED];
    for (int t = 0; t < n; t++) {
        for (int j = 0; j < K; j++) yr[j] = e->ye + (size_t)e->slot[t * K + j] * D;
        moe_engine_moe_combine((int)D, K, e->wts + (size_t)t * K, yr, sff > 0 ? e->sh + (size_t)t * D : NULL,
                               e->tmp + (size_t)t * D);
    }
    moe_eng_named(e, "ffn_out", il, e->tmp, n, D);
    for (int64_t i = 0; i < (int64_t)n * D; i++) e->x[i] += e->tmp[i];
}

/* ---- the step ------------------------------------------------------------- */

/* The absorbed tasks of rows [r0, r0 + *n): heads in groups of one per
 * thread, so each thread reads a row's cache once.  Empties the run. */
static void absorbed_tasks(moe_engine *e, int r0, int *n)
{
    const moe_hparams *hp = &e->m->hp;
    const int hg = moe_eng_attn_heads(hp, e->o.n_threads);
    for (int hd = 0; *n > 0 && hd < hp->n_head; hd += hg)
        e->tasks[e->n_tasks++] = (attn_task){r0, *n, hd, hd + hg <= hp->n_head ? hg : hp->n_head - hd, false};
    *n = 0;
}

/* The rough cost of one layer's attention over the step's n rows; starts
 * an empty task list. */
static void attn_cost(moe_engine *e, int n)
{
    const moe_hparams *hp = &e->m->hp;
    e->n_tasks = 0;
    e->attn_cost = 0;
    for (int r = 0; r < n; r++)
        e->attn_cost += (double)hp->n_head * ((double)(e->row_pos[r] + 1) * 2 * (hp->kv_lora + hp->qk_rope) +
                                              (double)hp->kv_lora * (hp->qk_nope + hp->v_dim));
}

int moe_engine_step(moe_engine *e, moe_step_item *items, int n_items, moe_err *err)
{
    const moe_hparams *hp = &e->m->hp;
    const int64_t D = hp->dim;
    const double t_step = moe_eng_clock(e);
    if (n_items < 0) return moe_err_set(err, "negative item count");
    int64_t total = 0;
    for (int i = 0; i < n_items; i++) {
        moe_step_item *it = &items[i];
        it->status = MOE_OK;
        it->err.msg[0] = 0;
        it->out = NULL;
        it->out_rows = 0;
        if (it->n_tokens < 0) return moe_err_set(err, "item %d: negative token count", i);
        total += it->n_tokens;
        for (int j = 0; j < i; j++)
            if (items[j].seq == it->seq) return moe_err_set(err, "sequence %d appears twice in one step", it->seq);
    }
    if (total > e->o.max_batch_tokens)
        return moe_err_set(err, "step has %lld tokens; the limit is %d", (long long)total, e->o.max_batch_tokens);
    /* validate items and reserve cache; failing items are skipped */
    int n = 0;
    for (int i = 0; i < n_items; i++) {
        moe_step_item *it = &items[i];
        if (!moe_kvcache_seq_valid(e->cache, it->seq)) {
            it->status = moe_err_set(&it->err, "sequence %d does not exist", it->seq);
            continue;
        }
        if (it->n_tokens == 0) continue;
        if (it->path_len != 0 && it->path_len < it->n_tokens) {
            it->status = moe_err_set(&it->err, "sequence %d: path length %d below the item's %d tokens", it->seq,
                                     it->path_len, it->n_tokens);
            continue;
        }
        bool ok = true;
        for (int j = 0; j < it->n_tokens; j++)
            if (it->tokens[j] < 0 || it->tokens[j] >= hp->vocab) {
                it->status = moe_err_set(&it->err, "token id %d at index %d is not in 0..%d", it->tokens[j], j,
                                         hp->vocab - 1);
                ok = false;
                break;
            }
        if (!ok) continue;
        const int64_t len = moe_kvcache_seq_len(e->cache, it->seq);
        if (moe_kvcache_reserve(e->cache, it->seq, len + it->n_tokens, &it->err) != MOE_OK) {
            it->status = MOE_ERR;
            moe_err_prefix(&it->err, "sequence %d", it->seq);
            continue;
        }
        for (int j = 0; j < it->n_tokens; j++, n++) {
            e->row_seq[n] = it->seq;
            e->row_pos[n] = len + j;
            moe_model_embed(e->m, it->tokens[j], e->x + (size_t)n * D);
            moe_eng_rope_cs(hp, len + j, e->cs + (size_t)n * hp->qk_rope);
        }
    }
    if (n == 0) {
        /* Nothing here this step, but the other ranks' exchanges need us. */
        const moe_engine_moe_hook *hk = e->o.moe_hook;
        for (int il = hp->n_dense_lead; hk && il < hp->n_layer; il++) {
            hk->start(hk->ctx, il, NULL, 0, NULL, NULL, NULL, NULL);
            hk->finish(hk->ctx, il, NULL);
        }
        return MOE_OK;
    }
    /* attention tasks (the same for every layer of this step) */
    attn_cost(e, n);
    /* absorbed rows go in runs of up to moe_eng_attn_rows consecutive rows
     * (of any sequences: a task's key and value products read each head's
     * matrices once for the run) */
    const int run_max = moe_eng_attn_rows(hp, e->o.n_threads);
    int run0 = 0, run_n = 0;
    for (int i = 0, r = 0; i < n_items; i++) {
        const moe_step_item *it = &items[i];
        if (it->status != MOE_OK || it->n_tokens == 0) continue;
        const bool dec = moe_engine_chunk_decompresses(e, it->path_len ? it->path_len : it->n_tokens);
        if (dec) {
            absorbed_tasks(e, run0, &run_n);
            for (int hd = 0; hd < hp->n_head; hd++) e->tasks[e->n_tasks++] = (attn_task){r, it->n_tokens, hd, 1, true};
        } else {
            for (int j = 0; j < it->n_tokens; j++) {
                if (run_n == 0) run0 = r + j;
                if (++run_n == run_max) absorbed_tasks(e, run0, &run_n);
            }
        }
        r += it->n_tokens;
    }
    absorbed_tasks(e, run0, &run_n);
    for (int il = 0; il < hp->n_layer; il++) {
        moe_eng_attention(e, il, n);
        ffn_block(e, il, n);
        moe_eng_named(e, "l_out", il, e->x, n, D);
    }
    /* logits for the rows that want them */
    int n_out = 0;
    for (int i = 0, r = 0; i < n_items; i++) {
        moe_step_item *it = &items[i];
        if (it->status != MOE_OK || it->n_tokens == 0) continue;
        const int first = it->logits == MOE_LOGITS_ALL ? 0 : it->n_tokens - 1;
        if (it->logits != MOE_LOGITS_NONE) {
            it->out = e->logits + (size_t)n_out * hp->vocab;
            it->out_rows = it->n_tokens - first;
            for (int j = first; j < it->n_tokens; j++, n_out++)
                moe_kern_rmsnorm(e->x + (size_t)(r + j) * D, e->m->out_norm, hp->eps, e->h + (size_t)n_out * D, D);
        }
        r += it->n_tokens;
        moe_kvcache_set_len(e->cache, it->seq, moe_kvcache_seq_len(e->cache, it->seq) + it->n_tokens);
    }
    if (n_out > 0) {
        mm_job jb = moe_eng_job(&e->output, e->h, D, n_out, e->logits, hp->vocab);
        moe_eng_run_jobs(e, &jb, 1);
        if (e->o.tensor_fn) {
            e->o.tensor_fn(e->o.tensor_ctx, "result_norm", -1, e->h, n_out, (int)D, NULL, NULL);
            e->o.tensor_fn(e->o.tensor_ctx, "logits", -1, e->logits, n_out, hp->vocab, NULL, NULL);
        }
    }
    e->tokens_processed += n;
    e->n_hidden = n;
    e->prof.steps++;
    e->prof.step_s += moe_eng_clock(e) - t_step;
    return MOE_OK;
}

bool moe_engine_has_mtp(const moe_engine *e) { return e->o.mtp; }

const float *moe_engine_mtp_hidden(const moe_engine *e, int *rows)
{
    *rows = e->n_mtp_rows;
    return e->x;
}

void moe_engine_seq_truncate(moe_engine *e, int seq, int64_t len)
{
    MOE_ASSERT(len >= 0 && len <= moe_kvcache_seq_len(e->cache, seq));
    moe_kvcache_set_len(e->cache, seq, len);
}

void moe_engine_seq_untruncate(moe_engine *e, int seq, int64_t len)
{
    MOE_ASSERT(len >= moe_kvcache_seq_len(e->cache, seq));
    moe_kvcache_set_len(e->cache, seq, len); /* asserts the blocks are reserved */
}

const float *moe_engine_hidden(const moe_engine *e, int *rows)
{
    *rows = e->n_hidden;
    return e->x;
}

int moe_engine_mtp_step(moe_engine *e, moe_mtp_item *items, int n_items, moe_err *err)
{
    const moe_hparams *hp = &e->m->hp;
    const moe_mtp *t = e->m->mtp;
    const int64_t D = hp->dim;
    const int il = hp->n_layer;
    if (!e->o.mtp) return moe_err_set(err, "the engine was not set up for MTP");
    if (n_items < 0) return moe_err_set(err, "negative item count");
    int64_t total = 0;
    for (int i = 0; i < n_items; i++) {
        moe_mtp_item *it = &items[i];
        it->status = MOE_OK;
        it->err.msg[0] = 0;
        it->out = NULL;
        if (it->n < 0) return moe_err_set(err, "item %d: negative row count", i);
        if (it->n > 0 && (!it->next || !it->hidden)) return moe_err_set(err, "item %d: no tokens or hidden states", i);
        for (int j = 0; j < i; j++)
            if (items[j].seq == it->seq) return moe_err_set(err, "sequence %d appears twice in one MTP step", it->seq);
        total += it->n;
    }
    if (total > e->o.max_batch_tokens)
        return moe_err_set(err, "MTP step has %lld rows; the limit is %d", (long long)total, e->o.max_batch_tokens);
    e->n_hidden = 0; /* the trunk's rows are gone: x is the MTP block's now */
    e->n_mtp_rows = 0;
    int n = 0;
    for (int i = 0; i < n_items; i++) {
        moe_mtp_item *it = &items[i];
        if (!moe_kvcache_seq_valid(e->cache, it->seq)) {
            it->status = moe_err_set(&it->err, "sequence %d does not exist", it->seq);
            continue;
        }
        const int64_t len = moe_kvcache_seq_len(e->cache, it->seq);
        if (it->n == 0) continue;
        if (it->pos < 0 || (!it->ahead && it->pos > len - it->n)) {
            it->status = moe_err_set(&it->err, "sequence %d: MTP rows %lld..%lld are not all computed (length %lld)",
                                     it->seq, (long long)it->pos, (long long)(it->pos + it->n - 1), (long long)len);
            continue;
        }
        /* rows past the trunk: their blocks (the trunk's latents there are
         * not written, and not read before the trunk writes them) */
        if (it->ahead && it->pos + it->n > len && moe_kvcache_reserve(e->cache, it->seq, it->pos + it->n, &it->err)) {
            it->status = MOE_ERR;
            continue;
        }
        bool ok = true;
        for (int j = 0; j < it->n && ok; j++)
            if (it->next[j] < 0 || it->next[j] >= hp->vocab) {
                it->status = moe_err_set(&it->err, "token id %d at index %d is not in 0..%d", it->next[j], j,
                                         hp->vocab - 1);
                ok = false;
            }
        if (!ok) continue;
        for (int j = 0; j < it->n; j++, n++) {
            e->row_seq[n] = it->seq;
            e->row_pos[n] = it->pos + j;
            moe_eng_rope_cs(hp, it->pos + j, e->cs + (size_t)n * hp->qk_rope);
            /* [enorm(embedding of the next token) ; hnorm(hidden)] */
            float *in = e->mtp_in + (size_t)n * 2 * D;
            moe_row_to_f32(t->embd.type, moe_mat_row(&t->embd, it->next[j]), e->tmp, D);
            moe_kern_rmsnorm(e->tmp, t->enorm, hp->eps, in, D);
            moe_kern_rmsnorm(it->hidden + (size_t)j * D, t->hnorm, hp->eps, in + D, D);
        }
    }
    if (n == 0) return MOE_OK;
    mm_job jb = moe_eng_job(&t->eh_proj, e->mtp_in, 2 * D, n, e->x, D);
    moe_eng_run_jobs(e, &jb, 1);
    moe_eng_named(e, "mtp_in", il, e->x, n, D);
    /* absorbed attention over the MTP block's own latents, rows in runs */
    attn_cost(e, n);
    const int run_max = moe_eng_attn_rows(hp, e->o.n_threads);
    int run0 = 0, run_n = 0;
    for (int r = 0; r < n; r++) {
        if (run_n == 0) run0 = r;
        if (++run_n == run_max) absorbed_tasks(e, run0, &run_n);
    }
    absorbed_tasks(e, run0, &run_n);
    moe_eng_attention(e, il, n);
    ffn_block(e, il, n);
    moe_eng_named(e, "l_out", il, e->x, n, D);
    e->n_mtp_rows = n;
    /* the head only for the rows asked for (a prompt chunk's MTP rows
     * need their latents, not their logits) */
    int n_out = 0;
    for (int i = 0, r = 0; i < n_items; i++) {
        moe_mtp_item *it = &items[i];
        if (it->status != MOE_OK || it->n == 0) continue;
        const int first = it->logits == MOE_LOGITS_ALL ? 0 : it->n - 1;
        if (it->logits != MOE_LOGITS_NONE) {
            it->out = e->logits + (size_t)n_out * hp->vocab;
            for (int j = first; j < it->n; j++, n_out++)
                moe_kern_rmsnorm(e->x + (size_t)(r + j) * D, t->head_norm, hp->eps, e->h + (size_t)n_out * D, D);
        }
        r += it->n;
    }
    if (n_out > 0) {
        jb = moe_eng_job(&t->head, e->h, D, n_out, e->logits, hp->vocab);
        moe_eng_run_jobs(e, &jb, 1);
        moe_eng_named(e, "mtp_logits", il, e->logits, n_out, hp->vocab);
    }
    return MOE_OK;
}
