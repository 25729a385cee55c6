/*
 * kernels.c — every optimised kernel set this CPU runs, against the scalar
 * reference with a normalised error bound:  |opt − ref| ≤ 1e-5 · Σ|w_i·x_i|
 * (+ tiny), for every weight type and lengths with and without tails; the
 * matrix product is bitwise the dot product per (token, row) whatever the
 * batch and row range; avx512 is bitwise avx2; the choice of a set from
 * feature masks and MOE_KERNELS; the thread pool runs every slice exactly
 * once.
 */
#include <math.h>

#include "check.h"
#include "kern.h"
#include "quant_enc.h"
#include "threadpool.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static const uint32_t types[] = {MOE_DT_F32, MOE_DT_F16, MOE_DT_BF16, MOE_DT_Q8_0};

/* Encodes n random values of type t into buf; returns the decoded floats. */
static void make_row(uint32_t t, int64_t n, void *buf, float *dec)
{
    float *src = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) src[i] = frand() * 2.0f;
    moe_row_from_f32(t, src, buf, n);
    moe_row_to_f32(t, buf, dec, n);
    free(src);
}

static void test_dot_axpy(const moe_kern_set *opt)
{
    const moe_kern_set *ref = moe_kern_reference();
    printf("kernels %s against the reference\n", moe_kern_name(opt));
    const int64_t lens[] = {32, 64, 96, 128, 160, 512, 704, 2048, 5632};
    for (size_t ti = 0; ti < 4; ti++) {
        const uint32_t t = types[ti];
        const moe_kern_fns *rf = moe_kern_for(ref, t), *of = moe_kern_for(opt, t);
        CHECK(rf && of);
        double worst = 0;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            for (int extra = 0; extra < (t == MOE_DT_Q8_0 ? 1 : 8); extra += 3) {
                const int64_t n = lens[li] + extra;
                uint64_t rb;
                CHECK(moe_dtype_bytes(t, (uint64_t)n, &rb));
                void *row = malloc((size_t)rb);
                float *w = malloc((size_t)n * 4), *x = malloc((size_t)n * 4);
                float *y1 = malloc((size_t)n * 4), *y2 = malloc((size_t)n * 4);
                make_row(t, n, row, w);
                double mag = 0;
                for (int64_t i = 0; i < n; i++) {
                    x[i] = frand();
                    mag += fabs((double)w[i] * x[i]);
                }
                const float r = rf->dot(row, x, n), o = of->dot(row, x, n);
                double exact = 0;
                for (int64_t i = 0; i < n; i++) exact += (double)w[i] * x[i];
                const double err = fabs((double)o - (double)r) / (mag + 1e-30);
                if (err > worst) worst = err;
                CHECK_MSG(err <= 1e-5, "dot type %u n %lld: opt %g ref %g (normalised error %g)", t, (long long)n, o,
                          r, err);
                CHECK_MSG(fabs(r - exact) / (mag + 1e-30) <= 1e-5, "reference dot type %u n %lld far from exact", t,
                          (long long)n);
                /* axpy */
                for (int64_t i = 0; i < n; i++) y1[i] = y2[i] = frand();
                const float a = frand();
                rf->axpy(row, a, y1, n);
                of->axpy(row, a, y2, n);
                double ad = 0;
                for (int64_t i = 0; i < n; i++) {
                    double e = fabs((double)y1[i] - y2[i]) / (fabs(a * w[i]) + fabs(y1[i]) + 1e-30);
                    if (e > ad) ad = e;
                }
                CHECK_MSG(ad <= 1e-6, "axpy type %u n %lld: normalised error %g", t, (long long)n, ad);
                free(row);
                free(w);
                free(x);
                free(y1);
                free(y2);
            }
        }
        printf("dot %-5s worst normalised error vs reference: %.3g\n", moe_dtype_name(t, NULL, 0), worst);
    }
}

/* Matrix product: each value bitwise equals the dot product, for any token
 * count and row range; matvec_t against a double reference. */
static void test_matmul(const moe_kern_set *k, int64_t cols, int64_t ntok)
{
    for (size_t ti = 0; ti < 4; ti++) {
        const uint32_t t = types[ti];
        const int64_t rows = 37;
        uint64_t rb;
        CHECK(moe_dtype_bytes(t, (uint64_t)cols, &rb));
        char *data = malloc((size_t)(rb * rows));
        float *dec = malloc((size_t)(rows * cols) * 4);
        for (int64_t r = 0; r < rows; r++) make_row(t, cols, data + r * rb, dec + r * cols);
        moe_mat m = {t, rows, cols, (size_t)rb, data, NULL, 0};
        float *x = malloc((size_t)(ntok * cols) * 4), *y = malloc((size_t)(ntok * rows) * 4);
        for (int64_t i = 0; i < ntok * cols; i++) x[i] = frand();
        moe_kern_matmul_rows(k, &m, 0, 20, x, cols, ntok, y, rows);
        moe_kern_matmul_rows(k, &m, 20, rows, x, cols, ntok, y, rows);
        int same = 1;
        for (int64_t tk = 0; tk < ntok; tk++) {
            float one[37];
            moe_kern_matmul_rows(k, &m, 0, rows, x + tk * cols, cols, 1, one, rows);
            for (int64_t r = 0; r < rows; r++) {
                float d = moe_kern_dot(k, &m, r, x + tk * cols);
                same &= memcmp(&d, &y[tk * rows + r], 4) == 0 && memcmp(&d, &one[r], 4) == 0;
            }
        }
        CHECK_MSG(same, "matmul type %u cols %lld: not bitwise the per-token dot product", t, (long long)cols);
        /* transposed product */
        float *yt = malloc((size_t)cols * 4);
        moe_kern_matvec_t(k, &m, x, yt);
        for (int64_t c = 0; c < cols; c++) {
            double s = 0, mag = 0;
            for (int64_t r = 0; r < rows; r++) {
                s += (double)x[r] * dec[r * cols + c];
                mag += fabs((double)x[r] * dec[r * cols + c]);
            }
            if (!(fabs(s - yt[c]) <= 1e-5 * mag + 1e-30))
                CHECK_MSG(fabs(s - yt[c]) <= 1e-5 * mag + 1e-30, "matvec_t type %u col %lld", t, (long long)c);
        }
        free(yt);
        free(data);
        free(dec);
        free(x);
        free(y);
    }
}

/* int8-activation path: quantizer rule, q8×q8 dot vs reference, tiles */
static void test_q8q8(const moe_kern_set *k)
{
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = frand();
    x[5] = 1.5f; /* amax of block 0 */
    x[6] = 1.5f * 63.5f / 127.0f; /* exactly half-way: rounds to even (64) */
    moe_block_q8_0 q[2], qr[2];
    moe_kern_quantize_act_q8(k, x, q, 64);
    CHECK(q[0].qs[5] == 127 && q[0].d == moe_f32_to_f16(1.5f / 127.0f));
    CHECK(q[0].qs[6] == 64 || q[0].qs[6] == 63); /* float rounding of x·127/amax */
    /* every set quantizes bitwise as the reference, ties and zeros included */
    for (int rep = 0; rep < 200; rep++) {
        for (int i = 0; i < 64; i++) x[i] = frand() * (rep % 7 == 0 ? 0.0f : 4.0f);
        if (rep % 3 == 0) { /* exact halves of the scale: round half to even */
            x[0] = 2.0f;
            for (int i = 1; i < 32; i++) x[i] = 2.0f * ((float)(i % 9) + 0.5f) / 127.0f * (i & 1 ? 1 : -1);
        }
        moe_kern_quantize_act_q8(k, x, q, 64);
        moe_kern_quantize_act_q8(moe_kern_reference(), x, qr, 64);
        CHECK_MSG(memcmp(q, qr, sizeof q) == 0, "%s: activation blocks differ from the reference (rep %d)",
                  moe_kern_name(k), rep);
    }
    /* 96 and 2144: dotn_q8q8's block pairs and a last odd block, beside the
     * lone block (32) and pairs only (64, 2048, 704) */
    const int64_t lens[] = {32, 64, 96, 2048, 2144, 704};
    double worst = 0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li], nb = n / 32;
        moe_block_q8_0 *w = malloc((size_t)nb * 5 * sizeof *w), *xq = malloc((size_t)nb * 5 * sizeof *xq);
        float *xf = malloc((size_t)n * 4), *wd = malloc((size_t)n * 4);
        for (int rr = 0; rr < 5; rr++) {
            for (int64_t i = 0; i < n; i++) xf[i] = frand() * 3;
            make_row(MOE_DT_Q8_0, n, w + rr * nb, wd);
            moe_kern_quantize_act_q8(k, xf, xq + rr * nb, n);
        }
        for (int rr = 0; rr < 5; rr++) {
            const float r = moe_kern_dot_q8q8(moe_kern_reference(), w, xq + rr * nb, n),
                        o = moe_kern_dot_q8q8(k, w, xq + rr * nb, n);
            double mag = 0;
            for (int64_t b = 0; b < nb; b++)
                for (int j = 0; j < 32; j++)
                    mag += fabs(moe_f16_to_f32(w[b].d) * w[b].qs[j] * moe_f16_to_f32(xq[rr * nb + b].d) *
                                xq[rr * nb + b].qs[j]);
            const double err = fabs((double)o - r) / (mag + 1e-30);
            worst = err > worst ? err : worst;
            CHECK_MSG(err <= 1e-5, "q8q8 n %lld: %g vs %g", (long long)n, o, r);
        }
        /* 5 tokens (a tile of 4 and a single) bitwise the single dot */
        moe_mat m = {MOE_DT_Q8_0, 1, n, (size_t)nb * 34, w, NULL, 0};
        float y[5];
        moe_kern_matmul_rows_int8(k, &m, 0, 1, xq, nb, 5, y, 1);
        int same = 1;
        for (int t = 0; t < 5; t++) {
            float d = moe_kern_dot_q8q8(k, w, xq + t * nb, n);
            same &= memcmp(&d, &y[t], 4) == 0;
        }
        CHECK_MSG(same, "q8q8 tile n %lld not bitwise the single dot", (long long)n);
        free(w);
        free(xq);
        free(xf);
        free(wd);
    }
    printf("%s dot q8_0 x int8 activations: worst normalised error vs reference %.3g\n", moe_kern_name(k), worst);
}

static void test_small_ops(void)
{
    float x[5] = {1, -2, 3, 0.5f, 0}, w[5] = {1, 1, 2, 1, 1}, y[5];
    moe_kern_rmsnorm(x, w, 1e-6f, y, 5);
    double ms = (1 + 4 + 9 + 0.25) / 5.0, sc = 1.0 / sqrt(ms + 1e-6);
    for (int i = 0; i < 5; i++) CHECK(fabs(y[i] - x[i] * sc * w[i]) < 1e-6);
    float s[4] = {1, 2, 3, 1000};
    moe_kern_softmax(s, s, 4);
    CHECK(fabs(s[3] - 1.0f) < 1e-6 && s[0] >= 0 && s[0] < 1e-30);
    float g[2] = {0, 2}, u[2] = {3, 0.5f};
    moe_kern_swiglu(g, u, 2);
    CHECK(g[0] == 0.0f && fabs(g[1] - 2.0 / (1 + exp(-2.0)) * 0.5) < 1e-6);
}

typedef struct pool_ctx {
    int hits[1000];
    int nth_seen;
} pool_ctx;

static void pool_fn(void *arg, int ith, int nth)
{
    pool_ctx *c = arg;
    int64_t lo, hi;
    moe_pool_slice(1000, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) c->hits[i]++;
    if (ith == 0) c->nth_seen = nth;
}

static void test_pool(void)
{
    moe_err err;
    moe_pool *p;
    CHECK(moe_pool_init(&p, 0, &err) == MOE_ERR);
    for (int n = 1; n <= 3; n++) {
        CHECK(moe_pool_init(&p, n, &err) == MOE_OK);
        pool_ctx c;
        memset(&c, 0, sizeof c);
        for (int rep = 0; rep < 500; rep++) moe_pool_run(p, pool_fn, &c);
        int ok = 1;
        for (int i = 0; i < 1000; i++) ok &= c.hits[i] == 500;
        CHECK_MSG(ok, "pool of %d: a slice ran a wrong number of times", n);
        CHECK(c.nth_seen == n && moe_pool_size(p) == n);
        /* timing: counted only while enabled, only for runs with threads */
        moe_pool_stats st;
        moe_pool_stats_get(p, &st);
        CHECK(st.runs == 0 && st.run_s == 0.0);
        moe_pool_stats_enable(p, true);
        for (int rep = 0; rep < 100; rep++) moe_pool_run(p, pool_fn, &c);
        moe_pool_stats_get(p, &st);
        CHECK_MSG(st.runs == (n > 1 ? 100u : 0u), "pool of %d: %llu runs counted", n, (unsigned long long)st.runs);
        CHECK(st.own_s >= 0 && st.join_s >= 0 && st.own_s + st.join_s <= st.run_s && st.lag_s >= 0);
        CHECK(n > 1 ? st.busy_s > 0 : st.busy_s == 0.0);
        moe_pool_stats_enable(p, false);
        moe_pool_stats_get(p, &st);
        CHECK(st.runs == 0);
        moe_pool_free(p);
    }
}

/* The int8 sums are exact in every set: with scales 1.0 the result is an
 * integer below 2^24, so every set must give the reference's value bit for
 * bit, even for the extreme bytes (|w| = 128 next to |x| = 127 in every
 * lane: the pairs maddubs forms reach ±32512, and would saturate if the
 * operands were taken the wrong way round). */
static void test_q8q8_exact(const moe_kern_set *k)
{
    static const int8_t wv[] = {-128, 127, -128, -127, 127, 0, -1, 1};
    static const int8_t xv[] = {127, -127, -127, 127, 127, -127, 5, -3};
    moe_block_q8_0 w[4], x[4];
    for (int v = 0; v < 8; v++) {
        for (int b = 0; b < 4; b++) {
            w[b].d = x[b].d = moe_f32_to_f16(1.0f);
            for (int j = 0; j < 32; j++) {
                w[b].qs[j] = wv[(v + (b == 3 ? j : 0)) % 8];
                x[b].qs[j] = xv[(v + (b >= 2 ? j / 2 : 0)) % 8];
            }
        }
        const float r = moe_kern_dot_q8q8(moe_kern_reference(), w, x, 128), o = moe_kern_dot_q8q8(k, w, x, 128);
        CHECK_MSG(memcmp(&r, &o, 4) == 0, "%s: exact int8 dot %g vs reference %g (case %d)", moe_kern_name(k), o, r, v);
    }
}

/* The checks both repacked layouts share: m (37 rows, file layout at
 * m->data, wb bytes a row) repacked at rp; ref[t·37 + r] the reference dot
 * of row r and token t (x, xs blocks apart).  Views: the whole matrix and
 * rows 5.. of it (its row 0 inside a group); row ranges cutting groups at
 * both ends; 1..19 tokens (the longest row: only rows 3..29, 19 tokens).
 * Every product must be ref's bits, and no row outside the range written. */
static void check_rp_views(const moe_kern_set *k, const moe_mat *m, const void *rp, const void *x, int64_t xs,
                           const float *ref, int64_t ntok, bool longest, float *y, const char *what)
{
    const int64_t rows = m->rows;
    static const int64_t ranges[][2] = {{0, 37}, {3, 29}, {16, 32}, {17, 18}, {0, 16}, {31, 37}};
    for (int view = 0; view < 2; view++) {
        const int64_t off = view ? 5 : 0;
        moe_mat mv = *m;
        mv.rows = rows - off;
        mv.data = (const char *)m->data + (size_t)off * m->row_bytes;
        mv.rp = rp;
        mv.rp_row = off;
        for (size_t ri = 0; ri < sizeof ranges / sizeof ranges[0]; ri++) {
            const int64_t r0 = ranges[ri][0], r1 = ranges[ri][1] - off;
            if (r1 <= r0 || (longest && ri != 1)) continue;
            for (int64_t nt = longest ? ntok : 1; nt <= ntok; nt += (nt < 10 ? 1 : 9)) {
                for (int64_t i = 0; i < ntok * rows; i++) y[i] = -7.0f;
                moe_kern_matmul_rows_int8(k, &mv, r0, r1, x, xs, nt, y, rows);
                bool same = true, untouched = true;
                for (int64_t t = 0; t < ntok; t++)
                    for (int64_t r = 0; r < rows; r++) {
                        const bool in = t < nt && r >= r0 && r < r1;
                        if (in) same &= !memcmp(&y[t * rows + r], &ref[t * rows + r + off], sizeof(float));
                        else untouched &= y[t * rows + r] == -7.0f;
                    }
                CHECK_MSG(same, "%s: repacked %s (cols %lld, view at %lld, rows %lld..%lld, %lld tokens) not "
                          "bitwise the reference dot", moe_kern_name(k), what, (long long)m->cols, (long long)off,
                          (long long)r0, (long long)r1, (long long)nt);
                CHECK_MSG(untouched, "%s: repacked %s wrote outside rows %lld..%lld", moe_kern_name(k), what,
                          (long long)r0, (long long)r1);
            }
        }
    }
}

/* The repacked Q8_0 layout (--repack): every set's product on it is the
 * reference set's int8 dot of each (row, token), bitwise, for any token
 * count (the 8-token tile and what is left of it), any row range (groups
 * cut at either end, a view starting inside the copy) and a padded last
 * group; rows outside the range are not written.  Rows 0-3 hold the
 * extreme bytes (q_w = -128 and ±127, q_x = ±127) with scales 1, where
 * the result is the exact integer sum. */
static void test_repack(const moe_kern_set *k)
{
    CHECK(moe_kern_repack_bytes(MOE_DT_Q4_0, 16, 64) == 0 && moe_kern_repack_bytes(MOE_DT_Q8_0, 16, 32800) == 0);
    CHECK(moe_kern_repack_bytes(MOE_DT_Q8_0, 17, 96) == 2 * (2 * 64 + 3 * 512));
    /* 3 and 67 blocks: odd counts, a lone last block; 1024 blocks, the
     * longest row repacked: its 19 tokens take 3 passes of the activation
     * pack (8 tokens each), checked on fewer ranges */
    static const int64_t colss[] = {96, 2144, 32768};
    for (size_t ci = 0; ci < sizeof colss / sizeof colss[0]; ci++) {
        const int64_t rows = 37, cols = colss[ci], nb = cols / 32, ntok = 19;
        const bool longest = cols == 32768;
        moe_block_q8_0 *w = malloc((size_t)(rows * nb) * sizeof *w), *x = malloc((size_t)(ntok * nb) * sizeof *x);
        void *rp = moe_xmalloc_lines(moe_kern_repack_bytes(MOE_DT_Q8_0, rows, cols));
        float *y = malloc((size_t)(ntok * rows) * sizeof(float)), *ref = malloc((size_t)(ntok * rows) * sizeof(float));
        float *v = malloc((size_t)cols * sizeof(float));
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < cols; i++) v[i] = frand();
            moe_quantize_row_q8_0_ref(v, w + r * nb, cols);
            if (r < 4)
                for (int64_t b = 0; b < nb; b++) {
                    w[r * nb + b].d = moe_f32_to_f16(1.0f);
                    for (int j = 0; j < 32; j++) w[r * nb + b].qs[j] = (int8_t)(r == 0 ? -128 : (r == 1 ? 127 : (j % 2 ? -128 : 127)));
                }
        }
        for (int64_t t = 0; t < ntok; t++) {
            for (int64_t i = 0; i < cols; i++) v[i] = frand();
            moe_kern_quantize_act(k, MOE_DT_Q8_0, v, x + t * nb, cols);
            if (t < 2)
                for (int64_t b = 0; b < nb; b++) {
                    x[t * nb + b].d = moe_f32_to_f16(1.0f);
                    for (int j = 0; j < 32; j++) x[t * nb + b].qs[j] = (int8_t)(t == 0 ? 127 : (j % 3 ? -127 : 127));
                }
        }
        const moe_mat m = {MOE_DT_Q8_0, rows, cols, (size_t)nb * sizeof *w, w, NULL, 0};
        moe_kern_repack(&m, rp);
        for (int64_t t = 0; t < ntok; t++)
            for (int64_t r = 0; r < rows; r++)
                ref[t * rows + r] = moe_kern_dot_int8(moe_kern_reference(), MOE_DT_Q8_0, w + r * nb, x + t * nb, cols);
        CHECK(ref[0] == (float)(-128 * 127 * cols) && ref[1] == (float)(127 * 127 * cols));
        check_rp_views(k, &m, rp, x, nb, ref, ntok, longest, y, "q8_0");
        free(w);
        free(x);
        free(rp);
        free(y);
        free(ref);
        free(v);
    }
}

/* The repacked Q4_K layout: every set's product on it is the reference
 * set's int8 dot of the file's rows (blk256_q8_K), bitwise, for 1..19
 * tokens (the 4-token tile and what is left of it), row ranges cutting
 * groups at both ends, a view starting inside the copy and a padded last
 * group.  Blocks are random bytes (every nibble, 6-bit scale and min);
 * rows 0-2 and tokens 0-1 hold the extremes (nibbles 15 or 0, scales and
 * mins 63, q_x = ±127), where the sums are largest. */
static void test_repack_q4_K(const moe_kern_set *k)
{
    CHECK(moe_kern_repack_bytes(MOE_DT_Q4_K, 17, 512) == 2 * 2 * MOE_RPK_SB_BYTES);
    CHECK(moe_kern_repack_bytes(MOE_DT_Q4_K, 16, 384) == 0 && moe_kern_repack_bytes(MOE_DT_Q4_K, 16, 33024) == 0);
    static const int64_t colss[] = {256, 2304, 32768};
    for (size_t ci = 0; ci < sizeof colss / sizeof colss[0]; ci++) {
        const int64_t rows = 37, cols = colss[ci], nsb = cols / MOE_QK_K, ntok = 19;
        const bool longest = cols == 32768;
        moe_block_q4_K *w = malloc((size_t)(rows * nsb) * sizeof *w);
        moe_block_q8_K *x = malloc((size_t)(ntok * nsb) * sizeof *x);
        void *rp = moe_xmalloc_lines(moe_kern_repack_bytes(MOE_DT_Q4_K, rows, cols));
        float *y = malloc((size_t)(ntok * rows) * sizeof(float)), *ref = malloc((size_t)(ntok * rows) * sizeof(float));
        float *v = malloc((size_t)cols * sizeof(float));
        for (int64_t i = 0; i < rows * nsb; i++) {
            unsigned char *b = (unsigned char *)&w[i];
            for (size_t j = 0; j < sizeof *w; j++) b[j] = (unsigned char)(rand() & 0xFF);
            const int64_t r = i / nsb;
            w[i].d = moe_f32_to_f16(r < 3 ? 1.0f : frand());
            w[i].dmin = moe_f32_to_f16(r < 3 ? 1.0f : frand());
            if (r < 3) {
                memset(w[i].scales, 0xFF, sizeof w[i].scales); /* every scale and min 63 */
                memset(w[i].qs, r == 1 ? 0x00 : 0xFF, sizeof w[i].qs);
            }
        }
        for (int64_t t = 0; t < ntok; t++) {
            for (int64_t i = 0; i < cols; i++) v[i] = frand();
            moe_kern_quantize_act(k, MOE_DT_Q8_K, v, x + t * nsb, cols);
            if (t < 2)
                for (int64_t b = 0; b < nsb; b++) {
                    moe_block_q8_K *xb = &x[t * nsb + b];
                    xb->d = 1.0f;
                    for (int j = 0; j < MOE_QK_K; j++) xb->qs[j] = (int8_t)(t == 0 || j % 3 ? 127 : -127);
                    for (int g = 0; g < MOE_QK_K / 16; g++) {
                        int s = 0;
                        for (int j = 0; j < 16; j++) s += xb->qs[16 * g + j];
                        xb->bsums[g] = (int16_t)s;
                    }
                }
        }
        const moe_mat m = {MOE_DT_Q4_K, rows, cols, (size_t)nsb * sizeof *w, w, NULL, 0};
        moe_kern_repack(&m, rp);
        for (int64_t t = 0; t < ntok; t++)
            for (int64_t r = 0; r < rows; r++)
                ref[t * rows + r] = moe_kern_dot_int8(moe_kern_reference(), MOE_DT_Q4_K, w + r * nsb, x + t * nsb, cols);
        /* the extremes: 63·15·127 a value less 63·127·32 a sub-block's min term */
        CHECK(ref[0] == (float)((63 * 15 * 127 - 63 * 127) * cols) && ref[1] == (float)(-63 * 127 * cols));
        check_rp_views(k, &m, rp, x, nsb, ref, ntok, longest, y, "q4_K");
        free(w);
        free(x);
        free(rp);
        free(y);
        free(ref);
        free(v);
    }
}

/* The set's Q8_0 encoder is bitwise the reference encoder (halves, zeros,
 * tiny and large values). */
static void test_encode(const moe_kern_set *k)
{
    const moe_kern_fns *f = moe_kern_for(k, MOE_DT_Q8_0);
    CHECK(f && f->encode);
    float x[32 * 9];
    for (int i = 0; i < 32 * 9; i++) x[i] = frand() * (i < 32 ? 1e-30f : (i < 64 ? 0.0f : 3.0f));
    for (int j = 0; j < 32; j++) x[32 * 8 + j] = (float)(j - 16) * 0.5f; /* amax 8: halves of the step */
    moe_block_q8_0 a[9], b[9];
    moe_quantize_row_q8_0_ref(x, a, 32 * 9);
    f->encode(x, b, 32 * 9);
    CHECK_MSG(memcmp(a, b, sizeof a) == 0, "%s: Q8_0 encoder differs from the reference", moe_kern_name(k));
}

/* Two sets give the same bits for every operation (avx512 against avx2). */
static void test_same_bits(const moe_kern_set *a, const moe_kern_set *b)
{
    int same = 1;
    for (size_t ti = 0; ti < 4; ti++) {
        const uint32_t t = types[ti];
        const moe_kern_fns *fa = moe_kern_for(a, t), *fb = moe_kern_for(b, t);
        const int64_t cols = t == MOE_DT_Q8_0 ? 2144 : 2151, rows = 37, ntok = 9;
        uint64_t rb;
        CHECK(moe_dtype_bytes(t, (uint64_t)cols, &rb));
        char *data = malloc((size_t)(rb * rows));
        float *dec = malloc((size_t)cols * 4);
        for (int64_t r = 0; r < rows; r++) make_row(t, cols, data + r * rb, dec);
        moe_mat m = {t, rows, cols, (size_t)rb, data, NULL, 0};
        const int64_t ny = ntok * rows > cols ? ntok * rows : cols;
        float *x = malloc((size_t)(ntok * cols) * 4), *ya = malloc((size_t)ny * 4), *yb = malloc((size_t)ny * 4);
        for (int64_t i = 0; i < ntok * cols; i++) x[i] = frand();
        for (int64_t n = 1; n <= ntok; n++) {
            moe_kern_matmul_rows(a, &m, 0, rows, x, cols, n, ya, rows);
            moe_kern_matmul_rows(b, &m, 0, rows, x, cols, n, yb, rows);
            same &= memcmp(ya, yb, (size_t)(n * rows) * 4) == 0;
        }
        for (int nt = 1; nt <= 4; nt++) {
            fa->dotn(data, x, cols, nt, cols, ya);
            fb->dotn(data, x, cols, nt, cols, yb);
            same &= memcmp(ya, yb, (size_t)nt * 4) == 0;
        }
        memcpy(ya, x, (size_t)cols * 4);
        memcpy(yb, x, (size_t)cols * 4);
        fa->axpy(data, 0.37f, ya, cols);
        fb->axpy(data, 0.37f, yb, cols);
        same &= memcmp(ya, yb, (size_t)cols * 4) == 0;
        moe_kern_matvec_t(a, &m, x, ya);
        moe_kern_matvec_t(b, &m, x, yb);
        same &= memcmp(ya, yb, (size_t)cols * 4) == 0;
        if (t == MOE_DT_Q8_0) {
            const int64_t nb = cols / 32;
            moe_block_q8_0 *xq = malloc((size_t)(ntok * nb) * sizeof *xq);
            for (int64_t n = 0; n < ntok; n++) moe_kern_quantize_act_q8(a, x + n * cols, xq + n * nb, cols);
            const int64_t counts[] = {1, ntok}; /* one token: the dot; 9: the tiles */
            for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
                const int64_t n = counts[ci];
                moe_kern_matmul_rows_int8(a, &m, 0, rows, xq, nb, n, ya, rows);
                moe_kern_matmul_rows_int8(b, &m, 0, rows, xq, nb, n, yb, rows);
                same &= memcmp(ya, yb, (size_t)(n * rows) * 4) == 0;
            }
            free(xq);
        }
        CHECK_MSG(same, "%s and %s differ on type %u", moe_kern_name(a), moe_kern_name(b), t);
        free(data);
        free(dec);
        free(x);
        free(ya);
        free(yb);
    }
    if (same) printf("%s is bitwise %s on every operation and type\n", moe_kern_name(b), moe_kern_name(a));
}

/* Choosing a set from feature masks: caps, unknown names, a set the CPU
 * lacks (the message names the sets it has), and ranks ANDing masks. */
static void test_select(void)
{
    const uint64_t zen3 = MOE_CPU_AVX2 | MOE_CPU_FMA | MOE_CPU_F16C;
    const uint64_t zen4 = zen3 | MOE_CPU_AVX512F | MOE_CPU_AVX512VL | MOE_CPU_AVX512BW | MOE_CPU_AVX512DQ |
                          MOE_CPU_AVX512VNNI;
    moe_err err;
    uint64_t m3, m4;
    CHECK(!strcmp(moe_kern_name(moe_kern_best_in(0)), "reference"));
    CHECK(!strcmp(moe_kern_name(moe_kern_best_in(zen3)), "avx2"));
    CHECK(!strcmp(moe_kern_name(moe_kern_best_in(zen3 & ~(uint64_t)MOE_CPU_F16C)), "reference"));
    CHECK(!strcmp(moe_kern_name(moe_kern_best_in(zen4)), "avx512"));
    CHECK(!strcmp(moe_kern_name(moe_kern_best_in(zen4 & ~(uint64_t)MOE_CPU_AVX512VNNI)), "avx2"));
    CHECK(moe_kern_cpu_mask(zen4, NULL, &m4, &err) == MOE_OK && m4 == zen4);
    CHECK(moe_kern_cpu_mask(zen4, "avx2", &m4, &err) == MOE_OK && !strcmp(moe_kern_name(moe_kern_best_in(m4)), "avx2"));
    CHECK(moe_kern_cpu_mask(zen4, "reference", &m4, &err) == MOE_OK && m4 == 0);
    CHECK(moe_kern_cpu_mask(zen3, "avx512", &m3, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "MOE_KERNELS=avx512");
    CHECK_CONTAINS(err.msg, "it has reference, avx2");
    CHECK(moe_kern_cpu_mask(zen4, "avx9", &m4, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "not a kernel set");
    CHECK_CONTAINS(err.msg, "reference, avx2, avx512");
    /* two ranks, one capped: the common set is the cap */
    CHECK(moe_kern_cpu_mask(zen4, "avx2", &m4, &err) == MOE_OK && moe_kern_cpu_mask(zen4, NULL, &m3, &err) == MOE_OK);
    CHECK(!strcmp(moe_kern_name(moe_kern_best_in(m4 & m3)), "avx2"));
    /* a Zen3 and a Zen4 node: avx2 */
    CHECK(!strcmp(moe_kern_name(moe_kern_best_in(zen3 & zen4)), "avx2"));
    CHECK(moe_kern_by_name("avx512") == moe_kern_set_at(2) && moe_kern_by_name("x") == NULL);
    /* iq2_xxs (16) and the activation-only q8_K have no kernels; every
     * supported type has an entry in every set the build has */
    CHECK(moe_kern_for(moe_kern_reference(), 16) == NULL && !moe_kern_type_supported(16));
    CHECK(!moe_kern_type_supported(MOE_DT_Q8_K) && moe_kern_type_supported(MOE_DT_Q4_K));
    char buf[64];
    printf("this CPU runs: %s; one-token L2 prefetch %s\n", moe_kern_list(moe_kern_cpu_features(), buf, sizeof buf),
           moe_kern_l2_prefetch() ? "on" : "off");
}

/* The quantized types on long rows (quant_kernels.c covers single fixture
 * blocks): rows encoded with the reference quantizers, lengths of several
 * super-blocks (legacy types also 704 and 96, the V2-Lite-style fallback
 * widths).  Float dot within the normalised bound of the reference; the
 * float and int8 products (1..9 tokens, two row ranges) bitwise the
 * per-token dots; int8 dots within the bound of the reference, bitwise it
 * for the q8_K types; with b given, every result of set k bitwise b's. */
static void test_quant_rows(const moe_kern_set *k, const moe_kern_set *b)
{
    static const uint32_t qt[] = {MOE_DT_Q4_0, MOE_DT_Q4_1, MOE_DT_Q5_0, MOE_DT_Q5_1, MOE_DT_IQ4_NL, MOE_DT_Q2_K,
                                  MOE_DT_Q3_K, MOE_DT_Q4_K, MOE_DT_Q5_K, MOE_DT_Q6_K, MOE_DT_IQ4_XS};
    const moe_kern_set *ref = moe_kern_reference();
    for (size_t ti = 0; ti < sizeof qt / sizeof qt[0]; ti++) {
        const uint32_t t = qt[ti], dt = moe_kern_dot_type(t);
        const int64_t lens[] = {256, 2048, 2816, 704, 96};
        const size_t nlen = dt == MOE_DT_Q8_K ? 3 : 5;
        double worst = 0, worst_i = 0;
        int same = 1, same_b = 1, exact_k = 1;
        for (size_t li = 0; li < nlen; li++) {
            const int64_t cols = lens[li], rows = 7, ntok = 9, ab = moe_kern_act_block(dt);
            uint64_t rb;
            CHECK(moe_dtype_bytes(t, (uint64_t)cols, &rb));
            char *data = malloc((size_t)(rb * rows));
            float *src = malloc((size_t)cols * 4), *dec = malloc((size_t)(rows * cols) * 4);
            for (int64_t r = 0; r < rows; r++) {
                for (int64_t i = 0; i < cols; i++) src[i] = frand() * (1.0f + (float)(i % 5));
                moe_quant_row(t, src, data + r * rb, cols);
                moe_row_to_f32(t, data + r * rb, dec + r * cols, cols);
            }
            moe_mat m = {t, rows, cols, (size_t)rb, data, NULL, 0};
            float *x = malloc((size_t)(ntok * cols) * 4), *y = malloc((size_t)(ntok * rows) * 4);
            float *yb = malloc((size_t)(ntok * rows) * 4);
            for (int64_t i = 0; i < ntok * cols; i++) x[i] = frand();
            const size_t xrow = moe_kern_act_row_bytes(dt, cols);
            char *xq = malloc(xrow * (size_t)ntok);
            for (int64_t n = 0; n < ntok; n++) moe_kern_quantize_act(k, dt, x + n * cols, xq + n * xrow, cols);
            /* float */
            moe_kern_matmul_rows(k, &m, 0, 3, x, cols, ntok, y, rows);
            moe_kern_matmul_rows(k, &m, 3, rows, x, cols, ntok, y, rows);
            for (int64_t tk = 0; tk < ntok; tk++)
                for (int64_t r = 0; r < rows; r++) {
                    const float d = moe_kern_dot(k, &m, r, x + tk * cols), dr = moe_kern_dot(ref, &m, r, x + tk * cols);
                    double mag = 0;
                    for (int64_t i = 0; i < cols; i++) mag += fabs((double)dec[r * cols + i] * x[tk * cols + i]);
                    const double e = fabs((double)d - dr) / (mag + 1e-30);
                    worst = e > worst ? e : worst;
                    CHECK_MSG(e <= 1e-5, "%s type %u cols %lld: float dot normalised error %g", moe_kern_name(k), t,
                              (long long)cols, e);
                    same &= memcmp(&d, &y[tk * rows + r], 4) == 0;
                }
            if (b) {
                moe_kern_matmul_rows(b, &m, 0, rows, x, cols, ntok, yb, rows);
                same_b &= memcmp(y, yb, (size_t)(ntok * rows) * 4) == 0;
            }
            /* int8 */
            moe_kern_matmul_rows_int8(k, &m, 0, 3, xq, (int64_t)(xrow / moe_kern_act_row_bytes(dt, ab)), ntok, y, rows);
            moe_kern_matmul_rows_int8(k, &m, 3, rows, xq, (int64_t)(xrow / moe_kern_act_row_bytes(dt, ab)), ntok, y,
                                      rows);
            for (int64_t tk = 0; tk < ntok; tk++)
                for (int64_t r = 0; r < rows; r++) {
                    const void *w = data + r * rb, *xt = xq + tk * xrow;
                    const float d = moe_kern_dot_int8(k, t, w, xt, cols), dr = moe_kern_dot_int8(ref, t, w, xt, cols);
                    double mag = 0;
                    for (int64_t i = 0; i < cols; i++) mag += fabs((double)dec[r * cols + i] * x[tk * cols + i]);
                    const double e = fabs((double)d - dr) / (mag + 1e-30);
                    worst_i = e > worst_i ? e : worst_i;
                    CHECK_MSG(e <= 1e-5, "%s type %u cols %lld: int8 dot normalised error %g", moe_kern_name(k), t,
                              (long long)cols, e);
                    if (dt == MOE_DT_Q8_K) exact_k &= memcmp(&d, &dr, 4) == 0;
                    same &= memcmp(&d, &y[tk * rows + r], 4) == 0;
                }
            if (b) {
                moe_kern_matmul_rows_int8(b, &m, 0, rows, xq, (int64_t)(xrow / moe_kern_act_row_bytes(dt, ab)), ntok,
                                          yb, rows);
                same_b &= memcmp(y, yb, (size_t)(ntok * rows) * 4) == 0;
                /* axpy and the activation quantizer too */
                float *a1 = malloc((size_t)cols * 4), *a2 = malloc((size_t)cols * 4);
                memcpy(a1, x, (size_t)cols * 4);
                memcpy(a2, x, (size_t)cols * 4);
                moe_kern_for(k, t)->axpy(data, 0.37f, a1, cols);
                moe_kern_for(b, t)->axpy(data, 0.37f, a2, cols);
                same_b &= memcmp(a1, a2, (size_t)cols * 4) == 0;
                char *xq2 = malloc(xrow);
                moe_kern_quantize_act(b, dt, x, xq2, cols);
                same_b &= memcmp(xq, xq2, xrow) == 0;
                free(xq2);
                free(a1);
                free(a2);
            }
            free(data);
            free(src);
            free(dec);
            free(x);
            free(y);
            free(yb);
            free(xq);
        }
        CHECK_MSG(same, "%s type %u: products not bitwise the per-token dots", moe_kern_name(k), t);
        CHECK_MSG(exact_k, "%s type %u: int8 dots not bitwise the reference", moe_kern_name(k), t);
        CHECK_MSG(same_b, "%s type %u: not bitwise %s", moe_kern_name(k), t, b ? moe_kern_name(b) : "");
        printf("%s %-6s long rows: float worst %.3g, int8 worst %.3g vs reference%s%s\n", moe_kern_name(k),
               moe_dtype_name(t, NULL, 0), worst, worst_i, dt == MOE_DT_Q8_K ? " (int8 bitwise)" : "",
               b ? "; bitwise avx2" : "");
    }
}

/* The tiled products (register tiles of rows × tokens, e.g. avx512's
 * int8 4 × 4 tile) against the per-row dot, bit for bit, for every
 * quantized weight type: 14 rows taken as [0, 1) and [1, 14) (tiles that
 * do not start at row 0, a row left over), 17 tokens at once (4 full token
 * quads and a single), 2 and 3 at once, against each token alone (n = 1)
 * and against the single int8 dot (one token also on rows [1, 14): row
 * pairs, and the 8, 4 or 2 rows a group of rows of 1-4 super-blocks
 * takes, starting on an odd row, and a last row alone); lengths of 1, 3 (odd: a last block
 * alone), 67, 1025, 513 and 22 blocks (the q8_0 and q8_1 dot types), 1 to 4, 11
 * and 97 super-blocks (q8_K: rows sharing a group, a group of 8 and a
 * partial one, and a row longer than avx512's one-token activation copy
 * takes).  Q8_0 weights also hold -128 and 127 and a zero scale; Q6_K,
 * Q3_K and IQ4_XS rows their largest integer sums (every value and scale
 * at its extreme), which the last token (every q_x 127) meets.  Then a
 * NaN or an infinity in one token's activation: NaN in each of its rows,
 * alone and between two clean tokens, whose rows do not change. */
static void test_tiles(const moe_kern_set *k)
{
    static const uint32_t qt[] = {MOE_DT_Q8_0, MOE_DT_Q4_0, MOE_DT_Q4_1, MOE_DT_Q5_0, MOE_DT_Q5_1, MOE_DT_IQ4_NL,
                                  MOE_DT_Q2_K, MOE_DT_Q3_K, MOE_DT_Q4_K, MOE_DT_Q5_K, MOE_DT_Q6_K, MOE_DT_IQ4_XS};
    int same = 1, checked = 0;
    for (size_t ti = 0; ti < sizeof qt / sizeof qt[0]; ti++) {
        const uint32_t t = qt[ti], dt = moe_kern_dot_type(t);
        /* 32800: one token's packed activations exceed avx512's tile pack and avx2's one-token
         * pack of Q4_0 and Q5_0 (the dotn fallback) */
        /* 16416: 2 or 3 tokens' pairs exceed it (the 4 × 4 tile, a token at a time); one
         * token's exceeds avx2's pack (513 blocks > 256) */
        /* 512 .. 1024: 2 .. 4 super-blocks, the one-token rows packed 4 or 2 to a group */
        /* 704 (Q8_0): rows of 748 bytes, which one token reads through the dot in avx512 where
         * the L2 prefetch is off (over 512 bytes), else through the tile (kernels_both_prefetch
         * runs both) */
        /* 24832: 97 super-blocks, over the bound of avx512's one-token activation copy (kz_xperm) */
        /* 128 and 256: 2 and 4 block pairs, one token 8 rows to a call (avx512's tile8x1;
         * 32 and 96 too, with a lone last block) */
        const int64_t lens32[] = {32, 96, 2144, 32800, 16416, 704, 128, 256};
        /* 1536 and 2560: a row's last group of 6 or 2 super-blocks, which avx512's one-token
         * K-quant dots take in pairs (V3's q_b rows are 1536) */
        const int64_t lens256[] = {256, 512, 768, 1024, 2816, 24832, 1536, 2560};
        const int64_t *lens = dt == MOE_DT_Q8_K ? lens256 : lens32;
        const size_t nlen = dt == MOE_DT_Q8_K ? sizeof lens256 / sizeof *lens256 : sizeof lens32 / sizeof *lens32;
        for (size_t li = 0; li < nlen; li++) {
            /* 14 rows: from row 0 an 8-row call, a quad and 2 rows through the dot; from
             * row 1 an 8-row call, a quad and 1 */
            const int64_t cols = lens[li], rows = 14, ntok = 17, ab = moe_kern_act_block(dt);
            uint64_t rb;
            CHECK(moe_dtype_bytes(t, (uint64_t)cols, &rb));
            char *data = malloc((size_t)(rb * rows));
            float *src = malloc((size_t)cols * 4);
            for (int64_t r = 0; r < rows; r++) {
                for (int64_t i = 0; i < cols; i++) src[i] = frand() * (1.0f + (float)((i + r) % 7));
                moe_quant_row(t, src, data + r * rb, cols);
            }
            if (t == MOE_DT_Q8_0) { /* extreme values the quantizer never writes */
                moe_block_q8_0 *b = (moe_block_q8_0 *)data;
                b[0].qs[0] = -128;
                b[0].qs[5] = 127;
                b[(rb / sizeof *b) * 2].d = 0; /* row 2, block 0 */
                if (cols >= 96) memset(((moe_block_q8_0 *)(data + 5 * rb))[2].qs, 0x80, 32);
            }
            /* the largest integer sums of the int8 path's unsigned Q6_K and
             * Q3_K (value bits all set, the most negative scales): row 3 */
            if (t == MOE_DT_Q6_K) {
                moe_block_q6_K *b = (moe_block_q6_K *)(data + 3 * rb);
                memset(b->ql, 0xFF, sizeof b->ql);
                memset(b->qh, 0xFF, sizeof b->qh);
                memset(b->scales, 0x80, sizeof b->scales);
            }
            if (t == MOE_DT_Q3_K) {
                moe_block_q3_K *b = (moe_block_q3_K *)(data + 3 * rb);
                memset(b->hmask, 0xFF, sizeof b->hmask);
                memset(b->qs, 0xFF, sizeof b->qs);
                memset(b->scales, 0, sizeof b->scales);
            }
            /* IQ4_XS's extreme levels at its extreme scales (its one-token sums
             * take the levels as unsigned, level + 128): row 3 all -127 at -32,
             * row 4 all 113 at 31 */
            if (t == MOE_DT_IQ4_XS)
                for (int r = 3; r <= 4; r++)
                    for (int64_t j = 0; j < cols / 256; j++) {
                        moe_block_iq4_xs *b = (moe_block_iq4_xs *)(data + r * rb) + j;
                        memset(b->qs, r == 3 ? 0x00 : 0xFF, sizeof b->qs);
                        memset(b->scales_l, r == 3 ? 0x00 : 0xFF, sizeof b->scales_l);
                        b->scales_h = r == 3 ? 0 : 0xFFFF;
                    }
            moe_mat m = {t, rows, cols, (size_t)rb, data, NULL, 0};
            const size_t xrow = moe_kern_act_row_bytes(dt, cols);
            const int64_t xs = (int64_t)(xrow / moe_kern_act_row_bytes(dt, ab));
            char *xq = malloc(xrow * (size_t)ntok);
            float *x = malloc((size_t)cols * 4), *y = malloc((size_t)(ntok * rows) * 4), y1[14], y1o[14];
            for (int64_t n = 0; n < ntok; n++) {
                for (int64_t i = 0; i < cols; i++) x[i] = n == ntok - 1 ? 1.0f : frand() * (n % 3 ? 1.0f : 40.0f);
                moe_kern_quantize_act(k, dt, x, xq + n * xrow, cols);
            }
            moe_kern_matmul_rows_int8(k, &m, 0, 1, xq, xs, ntok, y, rows);
            moe_kern_matmul_rows_int8(k, &m, 1, rows, xq, xs, ntok, y, rows);
            /* and in batches of 2 and 3 (avx512: 1-row tiles), tokens 0-1 (rows [0, 1)
             * and [1, 14)) and 2-4; and 11 tokens, 5-15 (8 or two quads, then 3 left) */
            float *y23 = malloc((size_t)(ntok * rows) * 4), *y11 = malloc((size_t)(11 * rows) * 4);
            moe_kern_matmul_rows_int8(k, &m, 0, 1, xq, xs, 2, y23, rows);
            moe_kern_matmul_rows_int8(k, &m, 1, rows, xq, xs, 2, y23, rows);
            moe_kern_matmul_rows_int8(k, &m, 0, 4, xq + 2 * xrow, xs, 3, y23 + 2 * rows, rows);
            moe_kern_matmul_rows_int8(k, &m, 4, rows, xq + 2 * xrow, xs, 3, y23 + 2 * rows, rows);
            moe_kern_matmul_rows_int8(k, &m, 0, rows, xq + 5 * xrow, xs, 11, y11, rows);
            for (int64_t n = 0; n < ntok; n++) {
                moe_kern_matmul_rows_int8(k, &m, 0, rows, xq + n * xrow, xs, 1, y1, rows);
                /* one token on rows [1, 14): the K-quants pair the rows (or group 8,
                 * 4 or 2 short ones), here from an odd row, and the last row alone */
                y1o[0] = y1[0];
                moe_kern_matmul_rows_int8(k, &m, 1, rows, xq + n * xrow, xs, 1, y1o, rows);
                for (int64_t r = 0; r < rows; r++) {
                    const float d = moe_kern_dot_int8(k, t, data + r * rb, xq + n * xrow, cols);
                    /* the q8_K types' int8 dots are bitwise the reference's */
                    const moe_kern_set *ref = moe_kern_reference();
                    const float dr =
                        dt == MOE_DT_Q8_K ? moe_kern_dot_int8(ref, t, data + r * rb, xq + n * xrow, cols) : d;
                    const int ok = !memcmp(&d, &y[n * rows + r], 4) && !memcmp(&d, &y1[r], 4) && !memcmp(&d, &y1o[r], 4) &&
                                   (n >= 5 || !memcmp(&d, &y23[n * rows + r], 4)) &&
                                   (n < 5 || n > 15 || !memcmp(&d, &y11[(n - 5) * rows + r], 4)) && !memcmp(&d, &dr, 4);
                    CHECK_MSG(ok,
                              "%s type %u cols %lld row %lld token %lld: tiled %g, alone %g, in 2, 3 or 11 %g, dot %g, "
                              "reference %g",
                              moe_kern_name(k), t, (long long)cols, (long long)r, (long long)n, y[n * rows + r],
                              y1[r], n < 5 ? y23[n * rows + r] : n <= 15 ? y11[(n - 5) * rows + r] : d, d, dr);
                    same &= ok;
                    checked++;
                }
            }
            /* a NaN or an infinity in token 1's activation: every row of it NaN, alone
             * and between tokens 0 and 2 (theirs unchanged) */
            char *x3 = malloc(xrow * 3);
            float *y3 = malloc((size_t)(3 * rows) * 4);
            memcpy(x3, xq, xrow);
            memcpy(x3 + 2 * xrow, xq + 2 * xrow, xrow);
            for (int64_t i = 0; i < cols; i++) x[i] = frand();
            x[(li * 37) % cols] = li % 2 ? INFINITY : NAN;
            moe_kern_quantize_act(k, dt, x, x3 + xrow, cols);
            moe_kern_matmul_rows_int8(k, &m, 0, rows, x3, xs, 3, y3, rows);
            moe_kern_matmul_rows_int8(k, &m, 0, rows, x3 + xrow, xs, 1, y1, rows);
            for (int64_t r = 0; r < rows; r++) {
                const int ok = isnan(y3[rows + r]) && isnan(y1[r]) && !memcmp(&y3[r], &y[r], 4) &&
                               !memcmp(&y3[2 * rows + r], &y[2 * rows + r], 4);
                CHECK_MSG(ok, "%s type %u cols %lld row %lld: a non-finite activation gave %g alone, %g in 3 "
                          "(tokens 0, 2: %g, %g; were %g, %g)", moe_kern_name(k), t, (long long)cols, (long long)r,
                          y1[r], y3[rows + r], y3[r], y3[2 * rows + r], y[r], y[2 * rows + r]);
                same &= ok;
            }
            free(x3);
            free(y3);
            free(y23);
            free(y11);
            free(data);
            free(src);
            free(xq);
            free(x);
            free(y);
        }
    }
    if (same)
        printf("kernels %s: int8 products of 17, 11, 3 and 2 tokens bitwise 1 token and the dot, q8_K types the "
               "reference (%d values); a NaN or infinity in an activation NaN in every row\n",
               moe_kern_name(k), checked);
}

/* moe_kern_axpy_rows bitwise the set's F32 axpy called per (position,
 * output) in position order: lengths with and without 8- and 32-value
 * tails, 1..33 positions, 1..5 outputs (an odd one alone). */
static void test_axpy_rows(const moe_kern_set *k)
{
    const moe_kern_fns *f = moe_kern_for(k, MOE_DT_F32);
    const int64_t lens[] = {512, 37, 5, 72};
    int same = 1;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li];
        float *c = malloc((size_t)(33 * n) * 4), *a = malloc(5 * 33 * 4);
        float *y1 = malloc((size_t)(5 * n) * 4), *y2 = malloc((size_t)(5 * n) * 4);
        const float *cp[33];
        for (int64_t i = 0; i < 33 * n; i++) c[i] = frand();
        for (int i = 0; i < 5 * 33; i++) a[i] = frand();
        for (int t = 0; t < 33; t++) cp[t] = c + t * n;
        for (int np = 1; np <= 33; np += 8)
            for (int nh = 1; nh <= 5; nh++) {
                for (int64_t i = 0; i < 5 * n; i++) y1[i] = y2[i] = frand();
                moe_kern_axpy_rows(k, cp, np, a, 33, nh, y1, n, n);
                for (int t = 0; t < np; t++)
                    for (int j = 0; j < nh; j++) f->axpy(cp[t], a[j * 33 + t], y2 + j * n, n);
                const int ok = !memcmp(y1, y2, (size_t)(5 * n) * 4);
                CHECK_MSG(ok, "%s axpy_rows n %lld np %d nh %d not bitwise the axpys", moe_kern_name(k),
                          (long long)n, np, nh);
                same &= ok;
            }
        free(c);
        free(a);
        free(y1);
        free(y2);
    }
    if (same) printf("kernels %s: axpy_rows bitwise the per-position axpys\n", moe_kern_name(k));
}

int main(void)
{
    test_select();
    /* every set this CPU runs (MOE_KERNELS does not narrow a unit test) */
    const uint64_t cpu = moe_kern_cpu_features();
    const moe_kern_set *avx2 = NULL, *avx512 = NULL;
    for (int i = 0; i < moe_kern_n_sets(); i++) {
        const moe_kern_set *k = moe_kern_set_at(i);
        uint64_t mask;
        moe_err err;
        if (moe_kern_cpu_mask(cpu, moe_kern_name(k), &mask, &err) != MOE_OK) {
            printf("kernels %s: not on this CPU\n", moe_kern_name(k));
            continue;
        }
        if (!strcmp(moe_kern_name(k), "avx2")) avx2 = k;
        if (!strcmp(moe_kern_name(k), "avx512")) avx512 = k;
        test_dot_axpy(k);
        for (int64_t nt = 1; nt <= 7; nt++) {
            test_matmul(k, 96, nt);
            test_matmul(k, 2144, nt); /* 67 blocks: several reduction chunks and an odd tail */
        }
        test_q8q8(k);
        test_axpy_rows(k);
        test_q8q8_exact(k);
        test_encode(k);
        test_repack(k);
        test_repack_q4_K(k);
        printf("kernels %s: repacked q8_0 and q4_K checked\n", moe_kern_name(k));
    }
    if (avx2 && avx512) test_same_bits(avx2, avx512);
    for (int i = 0; i < moe_kern_n_sets(); i++) {
        const moe_kern_set *k = moe_kern_set_at(i);
        uint64_t mask;
        moe_err err;
        if (k == moe_kern_reference() || moe_kern_cpu_mask(cpu, moe_kern_name(k), &mask, &err) != MOE_OK) continue;
        test_quant_rows(k, k == avx512 ? avx2 : NULL);
        test_tiles(k);
    }
    test_small_ops();
    test_pool();
    return check_summary("kernels");
}
