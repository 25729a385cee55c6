/*
 * attn.c — RoPE and Multi-head Latent Attention for the engine's step: the
 * absorbed form over the latent cache (decode, short chunks) and the
 * decompressed form (long prefill chunks), see engine.h and docs/engine.md.
 */
#include "engine_impl.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

/* ---- RoPE ------------------------------------------------------------------ */

/* cos/sin of every rotary pair at position pos, YaRN as the fixtures' README. */
void moe_eng_rope_cs(const moe_hparams *hp, int64_t pos, float *cs)
{
    const int n_rot = hp->qk_rope;
    const double base = hp->rope_base;
    double low = 0, high = 0;
    if (hp->yarn) {
        const double lb = 2.0 * log(base);
        const double c32 = n_rot * log((double)hp->yarn_orig_ctx / (2.0 * M_PI * 32.0)) / lb;
        const double c1 = n_rot * log((double)hp->yarn_orig_ctx / (2.0 * M_PI * 1.0)) / lb;
        low = floor(c32);
        if (low < 0) low = 0;
        high = ceil(c1);
        if (high > n_rot - 1) high = n_rot - 1;
    }
    for (int i = 0; i < n_rot / 2; i++) {
        const double extrap = (double)pos * pow(base, -2.0 * i / n_rot);
        double theta = extrap;
        if (hp->yarn) {
            const double interp = extrap / hp->yarn_factor;
            double y = ((double)i - low) / fmax(0.001, high - low);
            y = y < 0 ? 0 : (y > 1 ? 1 : y);
            const double gamma = 1.0 - y;
            theta = interp * (1.0 - gamma) + extrap * gamma;
        }
        cs[2 * i] = (float)cos(theta);
        cs[2 * i + 1] = (float)sin(theta);
    }
}

/* ---- attention ------------------------------------------------------------- */

typedef struct attn_ctx {
    moe_engine *e;
    int il;
    atomic_int next; /* the next task to take */
} attn_ctx;

/* Per head: the matrix mapping c to the non-rotary key and the one mapping a
 * latent to the value, for split and fused files. */
static void head_mats(const moe_engine *e, const moe_layer *L, int hd, moe_mat *kh, moe_mat *vh)
{
    const moe_hparams *hp = &e->m->hp;
    if (hp->mla_fused) {
        const int64_t r = (int64_t)hd * (hp->qk_nope + hp->v_dim);
        *kh = moe_mat_rows(&L->kv_b, r, hp->qk_nope);          /* nope × kv_lora */
        *vh = moe_mat_rows(&L->kv_b, r + hp->qk_nope, hp->v_dim); /* v × kv_lora */
    } else {
        *kh = moe_mat_rows(&L->k_b, (int64_t)hd * hp->kv_lora, hp->kv_lora); /* kv_lora × nope */
        *vh = moe_mat_rows(&L->v_b, (int64_t)hd * hp->v_dim, hp->v_dim);     /* v × kv_lora */
    }
}

/* y_i = m · x_i for n vectors x_i (xs floats apart) into y_i (ys floats
 * apart); on the int8 path a quantized matrix gets each x_i in its dot type
 * (as llama.cpp's absorbed MLA products do).  Every y_i has the bits of a
 * product of that one vector (the kernels' invariance). */
static void matvecs(const moe_engine *e, const moe_mat *m, const float *x, int64_t xs, int n, float *y, int64_t ys,
                    void *xq)
{
    const uint32_t dt = moe_kern_dot_type(m->type);
    if (e->o.act_q8 && dt != MOE_DT_F32) {
        const size_t rb = moe_kern_act_row_bytes(dt, m->cols);
        for (int i = 0; i < n; i++) moe_kern_quantize_act(e->k, dt, x + (size_t)i * xs, (char *)xq + i * rb, m->cols);
        moe_kern_matmul_rows_int8(e->k, m, 0, m->rows, xq, m->cols / moe_kern_act_block(dt), n, y, ys);
    } else {
        moe_kern_matmul_rows(e->k, m, 0, m->rows, x, xs, n, y, ys);
    }
}

/* Scores and latent contexts of row r for heads [h0, h0 + nh), from their
 * latent queries q_lat[nh][kv] into ctx_lat[nh][kv]: one pass over the
 * row's cache for all those heads.  Each head's values do not depend on
 * nh. */
static void attn_row(moe_engine *e, int il, int r, int h0, int nh, const float *q_lat, float *ctx_lat,
                     attn_scratch *s)
{
    const moe_hparams *hp = &e->m->hp;
    const moe_kern_set *k = e->k;
    const moe_kern_fns *f32 = e->f32;
    const int kv = hp->kv_lora, nope = hp->qk_nope, rope = hp->qk_rope, qk = nope + rope;
    const int seq = e->row_seq[r];
    const int64_t pos = e->row_pos[r];
    const float *qrow = e->q + (size_t)r * hp->n_head * qk; /* per head [nope | rope] */
    /* One pass over the cache in chunks of ATTN_CHUNK positions with an
     * online softmax: a chunk's latents are read from memory once, scored
     * for every head, and re-read from cache for the weighted sum.  Chunk
     * boundaries are fixed positions, so the arithmetic of a (row, head)
     * depends only on its position. */
    float *m = s->ml, *l = s->ml + nh;
    for (int j = 0; j < nh; j++) {
        m[j] = -INFINITY;
        l[j] = 0.0f;
    }
    memset(ctx_lat, 0, (size_t)nh * kv * sizeof(float));
    for (int64_t c0 = 0; c0 <= pos; c0 += ATTN_CHUNK) {
        const int64_t c1 = c0 + ATTN_CHUNK <= pos + 1 ? c0 + ATTN_CHUNK : pos + 1;
        for (int64_t t = c0; t < c1; t++) {
            const float *c = moe_kvcache_at(e->cache, seq, il, t);
            /* up to 4 heads per pass over c_t (bitwise the single dots) */
            for (int j = 0; j < nh; j += 4) {
                const int nj = nh - j < 4 ? nh - j : 4;
                float sl[4], sp[4];
                f32->dotn(c, q_lat + (size_t)j * kv, kv, nj, kv, sl);
                f32->dotn(c + kv, qrow + (size_t)(h0 + j) * qk + nope, qk, nj, rope, sp);
                for (int u = 0; u < nj; u++) s->scores[(j + u) * ATTN_CHUNK + (t - c0)] = hp->attn_scale * (sl[u] + sp[u]);
            }
        }
        for (int j = 0; j < nh; j++) {
            float *sc = s->scores + j * ATTN_CHUNK, mx = m[j];
            for (int64_t t = 0; t < c1 - c0; t++) mx = sc[t] > mx ? sc[t] : mx;
            if (mx > m[j]) {
                const float alpha = m[j] == -INFINITY ? 0.0f : expf(m[j] - mx);
                l[j] *= alpha;
                float *cl = ctx_lat + (size_t)j * kv;
                for (int i = 0; i < kv; i++) cl[i] *= alpha;
                m[j] = mx;
            }
            for (int64_t t = 0; t < c1 - c0; t++) {
                sc[t] = expf(sc[t] - mx);
                l[j] += sc[t];
            }
        }
        /* ctx_lat[j] += Σ_t p_jt·c_t, t in order: per element exactly the
         * F32 axpy per (t, j), with the contexts kept in registers */
        const float *cp[ATTN_CHUNK];
        for (int64_t t = c0; t < c1; t++) cp[t - c0] = moe_kvcache_at(e->cache, seq, il, t);
        moe_kern_axpy_rows(k, cp, (int)(c1 - c0), s->scores, ATTN_CHUNK, nh, ctx_lat, kv, kv);
    }
    for (int j = 0; j < nh; j++) {
        const float inv = 1.0f / l[j];
        float *cl = ctx_lat + (size_t)j * kv;
        for (int i = 0; i < kv; i++) cl[i] *= inv;
    }
}

/* Absorbed form for rows [r0, r0 + nr) (consecutive rows of any
 * sequences) and heads [h0, h0 + nh): a head's key product, and later its
 * value product, runs over all the rows at once (its matrices read once,
 * each row's bits those of its own product), and one pass over each row's
 * cache scores all the heads. */
static void attn_absorbed(moe_engine *e, int il, int r0, int nr, int h0, int nh, attn_scratch *s)
{
    const moe_hparams *hp = &e->m->hp;
    const moe_layer *L = &e->lay[il];
    const int kv = hp->kv_lora, qk = hp->qk_nope + hp->qk_rope, H = hp->n_head, vd = hp->v_dim;
    const int64_t lat = (int64_t)nh * kv; /* floats of one row's latents */
    /* q_lat[i][j] = K_h q_nope of row r0 + i, head h = h0 + j */
    for (int j = 0; j < nh; j++) {
        moe_mat kh, vh;
        head_mats(e, L, h0 + j, &kh, &vh);
        const float *qn = e->q + (size_t)r0 * H * qk + (size_t)(h0 + j) * qk;
        if (hp->mla_fused)
            for (int i = 0; i < nr; i++) moe_kern_matvec_t(e->k, &kh, qn + (size_t)i * H * qk, s->q_lat + i * lat + j * kv);
        else
            matvecs(e, &kh, qn, (int64_t)H * qk, nr, s->q_lat + (size_t)j * kv, lat, s->xq);
    }
    for (int i = 0; i < nr; i++) attn_row(e, il, r0 + i, h0, nh, s->q_lat + i * lat, s->ctx_lat + i * lat, s);
    for (int j = 0; j < nh; j++) {
        moe_mat kh, vh;
        head_mats(e, L, h0 + j, &kh, &vh);
        float *o = e->ao + (size_t)r0 * H * vd + (size_t)(h0 + j) * vd;
        matvecs(e, &vh, s->ctx_lat + (size_t)j * kv, lat, nr, o, (int64_t)H * vd, s->xq);
    }
}

/* Decompressed form for a chunk of rows of one sequence and one head. */
static void attn_decompressed(moe_engine *e, int il, int r0, int n_rows, int hd, attn_scratch *s)
{
    const moe_hparams *hp = &e->m->hp;
    const moe_layer *L = &e->lay[il];
    const moe_kern_set *k = e->k;
    const moe_kern_fns *f32 = e->f32;
    const int kv = hp->kv_lora, nope = hp->qk_nope, rope = hp->qk_rope, qk = nope + rope, vd = hp->v_dim;
    const int w = nope + vd;
    moe_mat kh, vh;
    head_mats(e, L, hd, &kh, &vh);
    const int seq = e->row_seq[r0];
    const int64_t len = e->row_pos[r0 + n_rows - 1] + 1;
    for (int64_t t = 0; t < len; t++) {
        const float *c = moe_kvcache_at(e->cache, seq, il, t);
        float *kn = s->dec + (size_t)t * w, *vv = kn + nope;
        if (hp->mla_fused) moe_kern_matmul_rows(k, &kh, 0, nope, c, 0, 1, kn, 0);
        else moe_kern_matvec_t(k, &kh, c, kn);
        moe_kern_matmul_rows(k, &vh, 0, vd, c, 0, 1, vv, 0);
    }
    for (int r = r0; r < r0 + n_rows; r++) {
        const float *qn = e->q + (size_t)r * hp->n_head * qk + (size_t)hd * qk, *qp = qn + nope;
        const int64_t pos = e->row_pos[r];
        for (int64_t t = 0; t <= pos; t++) {
            const float *kpe = moe_kvcache_at(e->cache, seq, il, t) + kv;
            s->scores[t] = hp->attn_scale * (f32->dot(s->dec + (size_t)t * w, qn, nope) + f32->dot(kpe, qp, rope));
        }
        moe_kern_softmax(s->scores, s->scores, pos + 1);
        float *o = e->ao + (size_t)r * hp->n_head * vd + (size_t)hd * vd;
        memset(o, 0, (size_t)vd * sizeof(float));
        for (int64_t t = 0; t <= pos; t++) f32->axpy(s->dec + (size_t)t * w + nope, s->scores[t], o, vd);
    }
}

/* Threads take tasks from one shared counter (the products' chunks come
 * from a counter per region, see moe_eng_run_jobs): a thread that starts
 * late takes fewer instead of the others waiting for it.  A task's arithmetic does not depend on the thread that runs it. */
static void attn_worker(void *arg, int ith, int nth)
{
    (void)nth;
    attn_ctx *c = arg;
    moe_engine *e = c->e;
    for (;;) {
        const int i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (i >= e->n_tasks) break;
        const attn_task *t = &e->tasks[i];
        if (t->decompress) attn_decompressed(e, c->il, t->row0, t->n_rows, t->head, &e->as[ith]);
        else attn_absorbed(e, c->il, t->row0, t->n_rows, t->head, t->n_heads, &e->as[ith]);
    }
}

void moe_eng_attention(moe_engine *e, int il, int n)
{
    const moe_hparams *hp = &e->m->hp;
    const moe_layer *L = &e->lay[il];
    const int64_t D = hp->dim, H = hp->n_head, qk = hp->qk_nope + hp->qk_rope, kvw = hp->kv_lora + hp->qk_rope;
    for (int r = 0; r < n; r++) moe_kern_rmsnorm(e->x + r * D, L->attn_norm, hp->eps, e->h + r * D, D);
    moe_eng_named(e, "attn_norm", il, e->h, n, D);
    mm_job jb[2];
    if (hp->q_lora > 0) {
        jb[0] = moe_eng_job(&L->q_a, e->h, D, n, e->qa, hp->q_lora);
        jb[1] = moe_eng_job(&L->kv_a, e->h, D, n, e->kva, kvw);
        moe_eng_run_jobs(e, jb, 2);
        for (int r = 0; r < n; r++)
            moe_kern_rmsnorm(e->qa + (size_t)r * hp->q_lora, L->q_a_norm, hp->eps, e->qa + (size_t)r * hp->q_lora,
                             hp->q_lora);
        jb[0] = moe_eng_job(&L->q_b, e->qa, hp->q_lora, n, e->q, H * qk);
        moe_eng_run_jobs(e, jb, 1);
    } else {
        jb[0] = moe_eng_job(&L->q, e->h, D, n, e->q, H * qk);
        jb[1] = moe_eng_job(&L->kv_a, e->h, D, n, e->kva, kvw);
        moe_eng_run_jobs(e, jb, 2);
    }
    moe_eng_named(e, "kv_a", il, e->kva, n, kvw);
    /* latent + rotary key into the cache; rotate the query's rope part */
    for (int r = 0; r < n; r++) {
        const float *cs = e->cs + (size_t)r * hp->qk_rope;
        float *kv = e->kva + (size_t)r * kvw;
        float *dst = moe_kvcache_at(e->cache, e->row_seq[r], il, e->row_pos[r]);
        moe_kern_rmsnorm(kv, L->kv_a_norm, hp->eps, dst, hp->kv_lora);
        memcpy(dst + hp->kv_lora, kv + hp->kv_lora, (size_t)hp->qk_rope * sizeof(float));
        moe_kern_rope(e->k, dst + hp->kv_lora, cs, hp->qk_rope);
        for (int hd = 0; hd < H; hd++) moe_kern_rope(e->k, e->q + (size_t)r * H * qk + (size_t)hd * qk + hp->qk_nope, cs, hp->qk_rope);
    }
    moe_eng_named(e, "q", il, e->q, n, H * qk);
    attn_ctx c = {.e = e, .il = il};
    atomic_init(&c.next, 0);
    const double t0 = moe_eng_clock(e);
    if (e->attn_cost < e->o.par_min_cost) {
        attn_worker(&c, 0, 1); /* not worth waking threads */
        e->prof.solo_s += moe_eng_clock(e) - t0;
    } else {
        moe_pool_run(e->pool, attn_worker, &c);
        e->prof.attn_par_s += moe_eng_clock(e) - t0;
    }
    moe_eng_named(e, "attn_heads", il, e->ao, n, H * hp->v_dim);
    jb[0] = moe_eng_job(&L->o, e->ao, H * hp->v_dim, n, e->tmp, D);
    moe_eng_run_jobs(e, jb, 1);
    moe_eng_named(e, "attn_out", il, e->tmp, n, D);
    for (int64_t i = 0; i < (int64_t)n * D; i++) e->x[i] += e->tmp[i];
}

