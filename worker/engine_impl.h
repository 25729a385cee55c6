/*
 * engine_impl.h — the engine's insides, shared by its two files: engine.c
 * (set-up, the step, the FFN and MoE layer, the parallel matrix products)
 * and attn.c (RoPE and MLA attention).  Not a public header: only those
 * two include it.
 */
#ifndef MOE_WORKER_ENGINE_IMPL_H
#define MOE_WORKER_ENGINE_IMPL_H

#include "engine.h"

/* A matrix product job: y[t][r] = W row r · x[t], t < n. */
typedef struct mm_job {
    moe_mat w;
    const float *x;
    int64_t xs;      /* x stride (floats) */
    int64_t n;       /* tokens */
    float *y;
    int64_t ys;      /* y stride (floats) */
    const void *xq;  /* int8 path: x in w's dot type, xqs blocks of it apart (else NULL) */
    int64_t xqs;
    const float *glu;/* if set, the run first makes x[t] ← silu(x[t])·glu[t] in place (SwiGLU;
                      * x is then the job's own writable gate rows, glu has x's stride) */
    bool xq_own;     /* set by the run: this job's activation is quantized into xq (not shared) */
    bool xq_in;      /* the caller gave xq (x unused): the run leaves it as it is */
} mm_job;

/* Attention work unit: one (token row, head) in absorbed form, or one
 * (chunk, head) in decompressed form. */
typedef struct attn_task {
    int row0;        /* first row */
    int n_rows;      /* rows (absorbed: consecutive rows of any sequences) */
    int head;        /* first head */
    int n_heads;     /* absorbed: heads done in one pass over the cache */
    bool decompress;
} attn_task;

typedef struct attn_scratch {
    float *scores;   /* [n_head][max(max_ctx, ATTN_CHUNK)] */
    float *q_lat;    /* [attn_rows][attn_heads][kv_lora] */
    float *ctx_lat;  /* [attn_rows][attn_heads][kv_lora] */
    float *dec;      /* [max_ctx][nope + v] (decompressed K_nope | V), or NULL */
    void *xq;        /* int8 path: attn_rows quantized q_nope or latents (any dot type) */
    float *ml;       /* [2][n_head] running max and sum of the online softmax */
} attn_scratch;

#define ATTN_CHUNK 32  /* positions per pass of the absorbed attention */
#define ATTN_ROWS 16   /* at most this many rows per absorbed task */
#define ATTN_LAT 65536 /* floats of a thread's q_lat (and of its ctx_lat) */

/* Absorbed tasks: heads per task (one group per thread, so each thread
 * reads a row's cache once) and rows per task (their latents fit in
 * ATTN_LAT floats). */
static inline int moe_eng_attn_heads(const moe_hparams *hp, int n_threads)
{
    return (hp->n_head + n_threads - 1) / n_threads;
}
static inline int moe_eng_attn_rows(const moe_hparams *hp, int n_threads)
{
    const int64_t per = (int64_t)moe_eng_attn_heads(hp, n_threads) * hp->kv_lora;
    const int64_t r = per > 0 ? ATTN_LAT / per : ATTN_ROWS;
    return r < 1 ? 1 : r > ATTN_ROWS ? ATTN_ROWS : (int)r;
}

struct moe_engine {
    moe_engine_route_fn route_fn; /* NULL: nobody watches the gate (moe_engine_set_route_fn) */
    void *route_ctx;
    void (*experts_tick)(void *); /* NULL, or called between the two runs of experts_run */
    void *experts_tick_ctx;
    const moe_model *m;
    /* the layers and output the engine computes with: the model's, or with
     * --repack copies of them whose Q8_0 dense matrices carry rp */
    const moe_layer *lay;
    moe_mat output;
    moe_layer *lay_own;       /* the copy (NULL without --repack) */
    void **rp_bufs;           /* [n_rp] the repacked matrices */
    int n_rp;
    uint64_t rp_bytes;
    const moe_gate_limit **limits; /* [n_layer] node-limited routing per layer, or NULL: the model's */
    moe_engine_opts o;
    const moe_kern_set *k;
    const moe_kern_fns *f32; /* the F32 entry of k (attention over the cache) */
    moe_pool *pool;
    moe_kvcache *cache;
    int64_t tokens_processed;

    /* per-row metadata [N] */
    int *row_seq;
    int64_t *row_pos;
    /* activations, N = max_batch_tokens rows */
    float *x;        /* [N][dim] residual stream */
    float *h;        /* [N][dim] normed input of a block */
    float *tmp;      /* [N][dim] block output */
    float *qa;       /* [N][q_lora] */
    float *q;        /* [N][H·(nope+rope)] */
    float *kva;      /* [N][kv_lora + rope] */
    float *cs;       /* [N][rope] cos/sin pairs per row */
    float *ao;       /* [N][H·v] attention output (heads concatenated) */
    float *fg, *fu;  /* [N][max(dense_ff, shared ff)] */
    float *sh;       /* [N][dim] shared-expert output */
    float *glog;     /* [N][n_expert] router logits */
    int32_t *ids;    /* [N][n_used] */
    float *wts;      /* [N][n_used] */
    int32_t *slot;   /* [N][n_used] row of (token, j) in the expert buffers */
    int32_t *order;  /* [N·n_used] (token, j) slots grouped by expert */
    float *xe;       /* [N·n_used][dim] token rows grouped by expert */
    float *ge, *ue;  /* [N·n_used][expert_ff] */
    float *ye;       /* [N·n_used][dim] */
    int32_t *e_off;  /* [n_expert + 1] rows of each expert in xe, ge, ue, ye */
    float *logits;   /* [N][vocab] */
    float *mtp_in;   /* [N][2·dim] the MTP block's inputs (opts.mtp), else NULL */
    int n_hidden;    /* rows of the last step (moe_engine_hidden) */
    int n_mtp_rows;  /* rows of the last MTP step (moe_engine_mtp_hidden) */
    mm_job *jobs;    /* [2·n_expert + 4] */
    int32_t *prep;   /* [2·n_expert + 4] the jobs of one run whose activation needs SwiGLU or quantization */
    unsigned char *xq; /* int8 path: the quantized activations of one run, one
                        * 64-byte aligned piece per (activation, dot type) */
    size_t xq_bytes;
    attn_task *tasks;/* [N·H] */
    int n_tasks;
    double attn_cost;   /* rough flops of one layer's attention this step */
    attn_scratch *as;/* [n_threads] */
    bool prof_on;       /* moe_engine_profile_enable */
    moe_engine_profile prof;
};

/* Profile clock: 0 unless profiling (no clock reads otherwise). */
static inline double moe_eng_clock(const moe_engine *e) { return e->prof_on ? moe_now() : 0.0; }

/* Runs matrix-product jobs on the pool (or on the caller when small). */
void moe_eng_run_jobs(moe_engine *e, mm_job *jobs, int n_jobs);

static inline mm_job moe_eng_job(const moe_mat *w, const float *x, int64_t xs, int64_t n, float *y, int64_t ys)
{
    mm_job j = {*w, x, xs, n, y, ys, NULL, 0, NULL, false, false};
    return j;
}

/* A product whose input comes already in w's dot type (int8 path): n rows
 * of xq, xqs blocks apart. */
static inline mm_job moe_eng_q_job(const moe_mat *w, const void *xq, int64_t xqs, int64_t n, float *y, int64_t ys)
{
    mm_job j = {*w, NULL, 0, n, y, ys, xq, xqs, NULL, false, true};
    return j;
}

/* A down projection whose input is SwiGLU(g, u), computed by the run itself
 * (spread over its threads) before the product: g[t] ← silu(g[t])·u[t]. */
static inline mm_job moe_eng_glu_job(const moe_mat *w, float *g, const float *u, int64_t gs, int64_t n, float *y,
                                     int64_t ys)
{
    mm_job j = {*w, g, gs, n, y, ys, NULL, 0, u, false, false};
    return j;
}

/* Named intermediate (see moe_engine_tensor_fn); a no-op unless set. */
static inline void moe_eng_named(const moe_engine *e, const char *name, int il, const float *data, int rows, int64_t cols)
{
    if (e->o.tensor_fn) e->o.tensor_fn(e->o.tensor_ctx, name, il, data, rows, (int)cols, e->row_seq, e->row_pos);
}

/* attn.c: cos/sin of every rotary pair at position pos (YaRN as the
 * fixtures' README); one layer's attention block for the step's n rows
 * (norm, projections, cache write, attention, output projection, residual). */
void moe_eng_rope_cs(const moe_hparams *hp, int64_t pos, float *cs);
void moe_eng_attention(moe_engine *e, int il, int n);

#endif
