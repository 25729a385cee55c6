/*
 * engine_batch.c — the batched step and the invariance rules.
 *
 *  - a sequence's logits are bitwise identical decoded alone, among 7 other
 *    sequences of different lengths (some prefilling chunks, some decoding
 *    in the same steps), with 1 or 2 threads, and with cache blocks of 4
 *    tokens instead of 16 (F32, Q8_0 and llama-quantize K-quant/legacy
 *    files, float and int8 activations, and int8 with the dense Q8_0
 *    matrices repacked);
 *  - prefill paths (decompressed chunk with logits for every position,
 *    absorbed chunks) agree with token-by-token decode within 1e-4;
 *  - latent cache bytes in use after 100 tokens equal
 *    100 × layers × (kv_lora + qk_rope) × 4 rounded up to whole blocks;
 *  - a full cache, a context limit, a bad token id are errors of that item
 *    only; malformed steps and bad model files fail with clear messages.
 */
#include "check.h"
#include "engine_util.h"

#define TGT_PROMPT 16
#define TGT_DECODE 10
#define ROWS (TGT_DECODE + 1)

static int32_t tok_at(int seq, int i) { return (int32_t)((seq * 97 + i * 31 + 7) % 300); }

static bool g_int8;
static bool g_repack; /* with g_int8: the dense Q8_0 matrices repacked (--repack) */
static const moe_kern_set *g_kernels; /* NULL: the best this CPU runs */

static moe_engine *mk_engine(const moe_model *m, int threads, int block, int decompress_min)
{
    moe_engine_opts o;
    moe_engine_opts_default(&o);
    o.n_threads = threads;
    o.block_size = block;
    o.max_ctx = 128;
    o.max_seqs = 8;
    o.max_batch_tokens = 128;
    o.decompress_min = decompress_min;
    o.act_q8 = g_int8;
    o.repack = g_repack;
    o.kernels = g_kernels;
    o.par_min_cost = 0; /* always split work, so thread-count invariance is tested */
    moe_engine *e = NULL;
    moe_err err;
    if (moe_engine_init(&e, m, &o, &err)) fprintf(stderr, "engine: %s\n", err.msg);
    if (e && g_repack) {
        int n_rp;
        uint64_t rp_bytes;
        moe_engine_repacked(e, &n_rp, &rp_bytes);
        CHECK_MSG(n_rp > 0 && rp_bytes > 0, "--repack repacked nothing");
    }
    return e;
}

/*
 * Target sequence (id tokens tok_at(0, i)): a prompt of TGT_PROMPT in one
 * chunk, then TGT_DECODE single tokens; out gets ROWS rows.  With
 * `crowd`, 7 other sequences join: each starts at a different step, with a
 * prompt of 3 + 5k tokens fed in chunks of 4 or whole, then decodes.
 */
static int run_target(moe_engine *e, bool crowd, float *out, int vocab)
{
    moe_err err;
    int seqs[8];
    int n_seq = crowd ? 8 : 1;
    for (int s = 0; s < n_seq; s++)
        if (moe_engine_seq_new(e, &seqs[s], &err)) return -1;
    int fed[8] = {0}, plen[8];
    int32_t toks[8][64];
    for (int s = 0; s < 8; s++) {
        plen[s] = s == 0 ? TGT_PROMPT : 3 + 5 * s;
        for (int i = 0; i < 64; i++) toks[s][i] = tok_at(s, i);
    }
    int row = 0;
    for (int step = 0; row < ROWS; step++) {
        moe_step_item it[8];
        int n = 0, tgt = -1;
        /* others first in some steps, last in others: order must not matter */
        for (int k = 0; k < n_seq; k++) {
            int s = (step % 2) ? k : n_seq - 1 - k;
            if (step < (s * 3) % 5) continue; /* staggered start; s = 5 starts with the target */
            int nt;
            if (fed[s] < plen[s]) {
                const int chunk = (s % 2) ? 4 : plen[s];
                nt = plen[s] - fed[s] < chunk ? plen[s] - fed[s] : chunk;
            } else {
                nt = 1;
            }
            if (fed[s] + nt > 60) continue;
            if (s == 0) tgt = n;
            it[n++] = (moe_step_item){.seq = seqs[s], .tokens = toks[s] + fed[s], .n_tokens = nt,
                                      .logits = (s % 3 == 1) ? MOE_LOGITS_ALL : MOE_LOGITS_LAST};
            fed[s] += nt;
        }
        if (moe_engine_step(e, it, n, &err)) {
            fprintf(stderr, "step: %s\n", err.msg);
            return -1;
        }
        for (int i = 0; i < n; i++)
            if (it[i].status) {
                fprintf(stderr, "item: %s\n", it[i].err.msg);
                return -1;
            }
        if (tgt >= 0) memcpy(out + (size_t)row++ * vocab, it[tgt].out, (size_t)vocab * sizeof(float));
    }
    for (int s = 0; s < n_seq; s++) moe_engine_seq_free(e, seqs[s]);
    return 0;
}

/* The engine computes with the repacked copies: in the reference set the
 * repacked product is the file layout's int8 dot (the same expression), so
 * --repack gives the same logits there; in a SIMD set, whose file-layout
 * dot sums 8 lanes a block pair, they differ. */
/* A fixture model: "v3_mini_f32" in models/, or a path under the fixtures
 * ("quant/models/..."); NULL (a failed check) if it does not open. */
static moe_model *open_fixture(const char *model_name)
{
    char path[4096];
    snprintf(path, sizeof path, strchr(model_name, '/') ? "%s/%s.gguf" : "%s/models/%s.gguf", getenv("MOE_FIXTURES"),
             model_name);
    moe_err err;
    moe_model *m = NULL;
    CHECK_MSG(moe_model_open(&m, path, &err) == MOE_OK, "%s", err.msg);
    return check_n_fail ? NULL : m;
}

static void test_repack_used(const char *model_name)
{
    moe_model *m = open_fixture(model_name);
    if (!m) return;
    const int V = m->hp.vocab;
    float *a = malloc((size_t)ROWS * V * 4), *b = malloc((size_t)ROWS * V * 4);
    const moe_kern_set *best = moe_kern_default();
    const moe_kern_set *sets[2] = {moe_kern_reference(), best};
    g_int8 = true;
    for (int i = 0; i < (best == moe_kern_reference() ? 1 : 2); i++) {
        g_kernels = sets[i];
        for (int rp = 0; rp < 2; rp++) {
            g_repack = rp;
            moe_engine *e = mk_engine(m, 2, 16, 8);
            CHECK(e && run_target(e, true, rp ? b : a, V) == 0);
            moe_engine_free(e);
        }
        const bool same = !memcmp(a, b, (size_t)ROWS * V * 4);
        if (i == 0) CHECK_MSG(same, "%s, reference set: --repack changed the logits", model_name);
        else CHECK_MSG(!same, "%s, %s set: --repack gave the file layout's bits (copies unused?)", model_name,
                       moe_kern_name(best));
        printf("%s, %s set: --repack %s the logits without it\n", model_name, moe_kern_name(sets[i]),
               same ? "gives bitwise" : "differs from");
    }
    g_kernels = NULL;
    g_repack = g_int8 = false;
    free(a);
    free(b);
    moe_model_free(m);
}

static void test_invariance(const char *model_name)
{
    moe_model *m = open_fixture(model_name);
    if (!m) return;
    moe_err err;
    const int V = m->hp.vocab;
    float *a = malloc((size_t)ROWS * V * 4), *b = malloc((size_t)ROWS * V * 4);
    moe_engine *e = mk_engine(m, 1, 16, 8);
    CHECK(run_target(e, false, a, V) == 0);
    CHECK(run_target(e, true, b, V) == 0);
    CHECK_MSG(memcmp(a, b, (size_t)ROWS * V * 4) == 0, "%s: logits differ alone vs among 7 others (max d %.3g)",
              model_name, max_abs_diff(a, b, ROWS * V));
    moe_engine_free(e);
    e = mk_engine(m, 2, 16, 8);
    CHECK(run_target(e, true, b, V) == 0);
    CHECK_MSG(memcmp(a, b, (size_t)ROWS * V * 4) == 0, "%s: logits differ with 2 threads", model_name);
    /* with the profile on (timers only): the same bits, and times that add up */
    moe_engine_profile_enable(e, true);
    CHECK(run_target(e, false, b, V) == 0);
    CHECK_MSG(memcmp(a, b, (size_t)ROWS * V * 4) == 0, "%s: logits differ with 2 threads alone", model_name);
    moe_engine_profile pr;
    moe_engine_profile_get(e, &pr);
    CHECK_MSG(pr.steps == TGT_DECODE + 1 && pr.pool.runs > 0 && pr.mm_par_s > 0 && pr.attn_par_s > 0,
              "profile: %llu steps (want %d), %llu runs", (unsigned long long)pr.steps, TGT_DECODE + 1,
              (unsigned long long)pr.pool.runs);
    CHECK_MSG(pr.mm_par_s + pr.attn_par_s + pr.solo_s + pr.quant_s <= pr.step_s &&
                  pr.pool.own_s + pr.pool.join_s <= pr.pool.run_s && pr.pool.run_s <= pr.mm_par_s + pr.attn_par_s &&
                  pr.pool.busy_s > 0,
              "profile parts exceed their wholes");
    moe_engine_profile_enable(e, false);
    moe_engine_free(e);
    e = mk_engine(m, 3, 16, 8);
    CHECK(run_target(e, true, b, V) == 0);
    CHECK_MSG(memcmp(a, b, (size_t)ROWS * V * 4) == 0, "%s: logits differ with 3 threads", model_name);
    moe_engine_free(e);
    /* 3 threads take a region of chunks each; 9, more than MM_MAX_REGIONS (8), share them */
    e = mk_engine(m, 9, 16, 8);
    CHECK(run_target(e, true, b, V) == 0);
    CHECK_MSG(memcmp(a, b, (size_t)ROWS * V * 4) == 0, "%s: logits differ with 9 threads", model_name);
    moe_engine_free(e);
    e = mk_engine(m, 1, 4, 8);
    CHECK(run_target(e, true, b, V) == 0);
    CHECK_MSG(memcmp(a, b, (size_t)ROWS * V * 4) == 0, "%s: logits differ with blocks of 4", model_name);
    moe_engine_free(e);
    printf("%s%s: alone / among 7 / 2, 3 and 9 threads / blocks of 4: bitwise identical\n", model_name,
           g_repack ? " (int8 activations, dense Q8_0 repacked)" : g_int8 ? " (int8 activations)" : "");
    if (g_int8) {
        free(a);
        free(b);
        moe_model_free(m);
        return;
    }

    /* prefill paths vs decode: all positions of prompt + decoded tokens in
     * one chunk (decompressed, and absorbed), logits of the last ROWS rows */
    const int total = TGT_PROMPT + TGT_DECODE;
    int32_t toks[64];
    for (int i = 0; i < total; i++) toks[i] = tok_at(0, i);
    for (int dm = 0; dm < 2; dm++) {
        e = mk_engine(m, 2, 16, dm == 0 ? 2 : 0);
        int seq;
        CHECK(moe_engine_seq_new(e, &seq, &err) == MOE_OK);
        moe_step_item it = {.seq = seq, .tokens = toks, .n_tokens = total, .logits = MOE_LOGITS_ALL};
        CHECK(moe_engine_step(e, &it, 1, &err) == MOE_OK && it.status == MOE_OK && it.out_rows == total);
        double d = max_abs_diff(it.out + (size_t)(TGT_PROMPT - 1) * V, a, ROWS * V);
        printf("%s: one-chunk prefill (%s) vs decode: %d rows, max d = %.3g\n", model_name,
               dm == 0 ? "decompressed" : "absorbed", ROWS, d);
        CHECK_MSG(d <= 1e-4, "%s prefill vs decode: d = %g", model_name, d);
        moe_engine_free(e);
    }
    free(a);
    free(b);
    moe_model_free(m);
}

static void test_cache_and_errors(void)
{
    moe_err err;
    moe_model *m;
    CHECK_MSG(moe_model_open(&m, fixture_path("models/tiny_f32.gguf"), &err) == MOE_OK, "%s", err.msg);
    if (check_n_fail) return;
    const uint64_t per_tok = (uint64_t)m->hp.n_layer * (m->hp.kv_lora + m->hp.qk_rope) * sizeof(float);
    int32_t toks[128];
    for (int i = 0; i < 128; i++) toks[i] = tok_at(1, i);
    for (int block = 4; block <= 16; block += 12) {
        moe_engine *e = mk_engine(m, 1, block, 32);
        int seq;
        CHECK(moe_engine_seq_new(e, &seq, &err) == MOE_OK);
        moe_step_item it = {.seq = seq, .tokens = toks, .n_tokens = 60, .logits = MOE_LOGITS_NONE};
        CHECK(moe_engine_step(e, &it, 1, &err) == MOE_OK && it.status == MOE_OK && it.out == NULL);
        for (int i = 60; i < 100; i++) {
            moe_step_item one = {.seq = seq, .tokens = toks + i, .n_tokens = 1, .logits = MOE_LOGITS_LAST};
            CHECK(moe_engine_step(e, &one, 1, &err) == MOE_OK && one.status == MOE_OK);
        }
        moe_engine_stats st;
        moe_engine_get_stats(e, &st);
        const uint64_t want = (uint64_t)((100 + block - 1) / block * block) * per_tok;
        CHECK_MSG(st.cache_bytes_in_use == want, "block %d: %llu bytes in use, want %llu", block,
                  (unsigned long long)st.cache_bytes_in_use, (unsigned long long)want);
        printf("cache after 100 tokens, blocks of %d: %llu bytes (formula %llu)\n", block,
               (unsigned long long)st.cache_bytes_in_use, (unsigned long long)want);
        moe_engine_seq_free(e, seq);
        moe_engine_get_stats(e, &st);
        CHECK(st.cache_bytes_in_use == 0);
        moe_engine_free(e);
    }
    /* a small pool: 3 blocks of 16 tokens */
    moe_engine_opts o;
    moe_engine_opts_default(&o);
    o.max_ctx = 40;
    o.max_seqs = 4;
    o.cache_tokens = 48;
    o.max_batch_tokens = 64;
    moe_engine *e;
    CHECK(moe_engine_init(&e, m, &o, &err) == MOE_OK);
    int s1 = -1, s2 = -1, s3 = -1;
    CHECK(moe_engine_seq_new(e, &s1, &err) == MOE_OK && moe_engine_seq_new(e, &s2, &err) == MOE_OK &&
          moe_engine_seq_new(e, &s3, &err) == MOE_OK);
    int32_t bad[2] = {5, 300};
    moe_step_item it[3] = {
        {.seq = s1, .tokens = toks, .n_tokens = 20, .logits = MOE_LOGITS_LAST},
        {.seq = s2, .tokens = bad, .n_tokens = 2, .logits = MOE_LOGITS_LAST},
        {.seq = s3, .tokens = toks, .n_tokens = 17, .logits = MOE_LOGITS_LAST},
    };
    CHECK(moe_engine_step(e, it, 3, &err) == MOE_OK);
    CHECK(it[0].status == MOE_OK && it[0].out_rows == 1);
    CHECK(it[1].status == MOE_ERR);
    CHECK_CONTAINS(it[1].err.msg, "token id 300 at index 1 is not in 0..299");
    CHECK(it[2].status == MOE_ERR); /* s1 took 2 blocks, s3 needs 2, 1 free */
    CHECK_CONTAINS(it[2].err.msg, "latent cache full");
    CHECK(moe_engine_seq_len(e, s3) == 0 && moe_engine_seq_len(e, s1) == 20);
    /* context limit 40 */
    moe_step_item more = {.seq = s1, .tokens = toks, .n_tokens = 21, .logits = MOE_LOGITS_LAST};
    CHECK(moe_engine_step(e, &more, 1, &err) == MOE_OK && more.status == MOE_ERR);
    CHECK_CONTAINS(more.err.msg, "context limit is 40");
    /* malformed steps */
    moe_step_item twice[2] = {{.seq = s1, .tokens = toks, .n_tokens = 1}, {.seq = s1, .tokens = toks, .n_tokens = 1}};
    CHECK(moe_engine_step(e, twice, 2, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "appears twice");
    moe_step_item big = {.seq = s2, .tokens = toks, .n_tokens = 65};
    CHECK(moe_engine_step(e, &big, 1, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "the limit is 64");
    moe_step_item gone = {.seq = 3, .tokens = toks, .n_tokens = 1};
    CHECK(moe_engine_step(e, &gone, 1, &err) == MOE_OK && gone.status == MOE_ERR);
    CHECK_CONTAINS(gone.err.msg, "sequence 3 does not exist");
    moe_engine_free(e);
    /* the default pool holds max_seqs sequences of max_ctx, each in whole
     * blocks: 3 of 17 tokens take 2 blocks of 16 each (a pool of 3 × 17
     * tokens, 4 blocks, left the third sequence without room) */
    moe_engine_opts_default(&o);
    o.max_ctx = 17;
    o.max_seqs = 3;
    CHECK(moe_engine_init(&e, m, &o, &err) == MOE_OK);
    int sq[3];
    moe_step_item full[3];
    for (int i = 0; i < 3; i++) {
        CHECK(moe_engine_seq_new(e, &sq[i], &err) == MOE_OK);
        full[i] = (moe_step_item){.seq = sq[i], .tokens = toks, .n_tokens = 17, .logits = MOE_LOGITS_LAST};
    }
    CHECK(moe_engine_step(e, full, 3, &err) == MOE_OK);
    for (int i = 0; i < 3; i++) {
        CHECK_MSG(full[i].status == MOE_OK, "sequence %d of 17 tokens in the default pool: %s", i, full[i].err.msg);
        CHECK(moe_engine_seq_len(e, sq[i]) == 17);
    }
    moe_engine_free(e);
    moe_model_free(m);
    /* bad model files */
    CHECK(moe_model_open(&m, fixture_path("models/missing.gguf"), &err) == MOE_ERR);
    CHECK(moe_model_open(&m, fixture_path("tokenizer/deepseek-v3-vocab.gguf"), &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "is missing");
}

/* The separable MoE steps (reused by the expert-parallel worker): route
 * gives ids ascending with gate weights, one expert's SwiGLU matches a
 * double-precision evaluation from the dequantized weights, and combine
 * sums in the listed (ascending id) order, then adds the shared output. */
static void test_moe_steps(void)
{
    moe_err err;
    moe_model *m;
    CHECK_MSG(moe_model_open(&m, fixture_path("models/v3_mini_f32.gguf"), &err) == MOE_OK, "%s", err.msg);
    if (check_n_fail) return;
    moe_engine *e = mk_engine(m, 1, 16, 0);
    const moe_hparams *hp = &m->hp;
    const int D = hp->dim, F = hp->expert_ff, K = hp->n_used, il = 1;
    float *x = malloc((size_t)6 * D * 4), *y = malloc((size_t)6 * D * 4), *y1 = malloc((size_t)3 * D * 4);
    for (int i = 0; i < 3 * D; i++) x[i] = (float)((i * 37 % 101) - 50) / 40.0f;
    memcpy(x + 3 * D, x, (size_t)3 * D * 4);
    int32_t ids[3 * 8];
    float w[3 * 8];
    moe_engine_moe_route(e, il, x, 3, ids, w);
    for (int t = 0; t < 3; t++) {
        for (int j = 1; j < K; j++) CHECK(ids[t * K + j] > ids[t * K + j - 1]);
        float sum = 0;
        for (int j = 0; j < K; j++) sum += w[t * K + j];
        CHECK(fabsf(sum - hp->weights_scale) < 1e-5f); /* normalised, then scaled */
    }
    /* two experts in one call (the second on the same rows again), and the
     * second alone: its rows are the same bits either way */
    const int ex = ids[0], ex2 = ids[1];
    const int32_t two[2] = {ex, ex2}, off2[3] = {0, 3, 6}, one[1] = {ex2}, off1[2] = {0, 3};
    moe_engine_moe_experts(e, il, 2, two, off2, x, y);
    moe_engine_moe_experts(e, il, 1, one, off1, x + 3 * D, y1);
    CHECK(memcmp(y + 3 * D, y1, (size_t)3 * D * 4) == 0);
    const moe_layer *L = &m->layers[il];
    float *row = malloc((size_t)(D > F ? D : F) * 4);
    double worst = 0;
    for (int t = 0; t < 3; t++) {
        double h[256];
        for (int f = 0; f < F; f++) {
            double a = 0, b = 0;
            moe_row_to_f32(L->gate_exps.type, moe_mat_row(&L->gate_exps, (int64_t)ex * F + f), row, D);
            for (int i = 0; i < D; i++) a += (double)row[i] * x[t * D + i];
            moe_row_to_f32(L->up_exps.type, moe_mat_row(&L->up_exps, (int64_t)ex * F + f), row, D);
            for (int i = 0; i < D; i++) b += (double)row[i] * x[t * D + i];
            h[f] = a / (1 + exp(-a)) * b;
        }
        for (int d = 0; d < D; d++) {
            double o = 0;
            moe_row_to_f32(L->down_exps.type, moe_mat_row(&L->down_exps, (int64_t)ex * D + d), row, F);
            for (int f = 0; f < F; f++) o += (double)row[f] * h[f];
            const double err1 = fabs(o - y[t * D + d]);
            worst = err1 > worst ? err1 : worst;
        }
    }
    CHECK_MSG(worst < 1e-4, "expert SwiGLU differs from double evaluation by %g", worst);
    /* combine */
    const float a0[3] = {1, 2, 3}, a1[3] = {10, 20, 30}, sh[3] = {0.5f, 0.5f, 0.5f};
    const float *rows[2] = {a0, a1};
    const float wt[2] = {0.5f, 2.0f};
    float out[3];
    moe_engine_moe_combine(3, 2, wt, rows, sh, out);
    CHECK(out[0] == 0.5f * 1 + 2.0f * 10 + 0.5f && out[2] == 0.5f * 3 + 2.0f * 30 + 0.5f);
    printf("moe steps: route ids ascending, expert SwiGLU within %.2g of double, combine ordered\n", worst);
    free(row);
    free(x);
    free(y);
    free(y1);
    moe_engine_free(e);
    moe_model_free(m);
}

/* Named intermediates: every layer reports l_out for all rows of a step,
 * and the "logits" record is exactly what the step returns. */
typedef struct tap {
    int l_out_calls, rows_seen;
    float last_logit0;
} tap;

static void tap_fn(void *ctx, const char *name, int layer, const float *data, int rows, int cols, const int *rs,
                   const int64_t *rp)
{
    tap *t = ctx;
    (void)layer;
    (void)cols;
    if (!strcmp(name, "l_out")) {
        t->l_out_calls++;
        t->rows_seen = rows;
        CHECK(rs != NULL && rp != NULL && rp[rows - 1] == rows - 1);
    }
    if (!strcmp(name, "logits")) t->last_logit0 = data[0];
}

static void test_named_tensors(void)
{
    moe_err err;
    moe_model *m;
    CHECK_MSG(moe_model_open(&m, fixture_path("models/v2lite_mini_f32.gguf"), &err) == MOE_OK, "%s", err.msg);
    if (check_n_fail) return;
    moe_engine_opts o;
    moe_engine_opts_default(&o);
    o.max_ctx = 32;
    o.max_seqs = 1;
    tap t = {0};
    o.tensor_fn = tap_fn;
    o.tensor_ctx = &t;
    moe_engine *e;
    CHECK(moe_engine_init(&e, m, &o, &err) == MOE_OK);
    int seq;
    CHECK(moe_engine_seq_new(e, &seq, &err) == MOE_OK);
    int32_t toks[5] = {3, 1, 4, 1, 5};
    moe_step_item it = {.seq = seq, .tokens = toks, .n_tokens = 5, .logits = MOE_LOGITS_LAST};
    CHECK(moe_engine_step(e, &it, 1, &err) == MOE_OK && it.status == MOE_OK);
    CHECK(t.l_out_calls == m->hp.n_layer && t.rows_seen == 5);
    CHECK(t.last_logit0 == it.out[0]);
    moe_engine_free(e);
    moe_model_free(m);
}

int main(void)
{
    test_moe_steps();
    test_named_tensors();
    test_invariance("v3_mini_f32");
    test_invariance("v2lite_mini_fused_f32");
    test_invariance("tiny_q8_0");
    test_invariance("quant/models/kq_v3_q4_k_m"); /* q4_K, q6_K, q5_0 */
    g_int8 = true;
    test_invariance("v3_mini_q8_0");
    test_invariance("quant/models/kq_v2lite_q3_k_m"); /* dot types q8_K and q8_0 */
    test_invariance("quant/models/kq_v3_q5_1");       /* q8_1 */
    g_repack = true;
    test_invariance("v3_mini_q8_0");
    g_repack = false;
    g_int8 = false;
    test_repack_used("v3_mini_q8_0");
    test_cache_and_errors();
    return check_summary("engine_batch");
}
