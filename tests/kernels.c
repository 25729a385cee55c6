/*
 * kernels.c — every optimised kernel against its scalar reference with a
 * normalised error bound:  |opt − ref| ≤ 1e-5 · Σ|w_i·x_i| (+ tiny),
 * for every weight type and lengths with and without tails; the matrix
 * product is bitwise the dot product per (token, row) whatever the batch
 * and row range; the thread pool runs every slice exactly once.
 */
#include <math.h>

#include "check.h"
#include "kernels.h"
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

static void test_dot_axpy(void)
{
    const moe_kern_ops *ref = moe_kern_reference(), *opt = moe_kern_best();
    printf("optimised kernels: %s\n", opt->name);
    const int64_t lens[] = {32, 64, 96, 128, 160, 512, 704, 2048, 5632};
    for (size_t ti = 0; ti < 4; ti++) {
        const uint32_t t = types[ti];
        const int slot = moe_kern_type_slot(t);
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
                const float r = ref->dot[slot](row, x, n), o = opt->dot[slot](row, x, n);
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
                ref->axpy[slot](row, a, y1, n);
                opt->axpy[slot](row, a, y2, n);
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
static void test_matmul(int64_t cols, int64_t ntok)
{
    const moe_kern_ops *k = moe_kern_best();
    for (size_t ti = 0; ti < 4; ti++) {
        const uint32_t t = types[ti];
        const int64_t rows = 37;
        uint64_t rb;
        CHECK(moe_dtype_bytes(t, (uint64_t)cols, &rb));
        char *data = malloc((size_t)(rb * rows));
        float *dec = malloc((size_t)(rows * cols) * 4);
        for (int64_t r = 0; r < rows; r++) make_row(t, cols, data + r * rb, dec + r * cols);
        moe_mat m = {t, rows, cols, (size_t)rb, data};
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
static void test_q8q8(void)
{
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = frand();
    x[5] = 1.5f; /* amax of block 0 */
    x[6] = 1.5f * 63.5f / 127.0f; /* exactly half-way: rounds to even (64) */
    moe_block_q8_0 q[2];
    moe_kern_quantize_act_q8(x, q, 64);
    CHECK(q[0].qs[5] == 127 && q[0].d == moe_f32_to_f16(1.5f / 127.0f));
    CHECK(q[0].qs[6] == 64 || q[0].qs[6] == 63); /* float rounding of x·127/amax */
    const int64_t lens[] = {32, 64, 2048, 704};
    double worst = 0;
    for (size_t li = 0; li < 4; li++) {
        const int64_t n = lens[li], nb = n / 32;
        moe_block_q8_0 *w = malloc((size_t)nb * 5 * sizeof *w), *xq = malloc((size_t)nb * 5 * sizeof *xq);
        float *xf = malloc((size_t)n * 4), *wd = malloc((size_t)n * 4);
        for (int rr = 0; rr < 5; rr++) {
            for (int64_t i = 0; i < n; i++) xf[i] = frand() * 3;
            make_row(MOE_DT_Q8_0, n, w + rr * nb, wd);
            moe_kern_quantize_act_q8(xf, xq + rr * nb, n);
        }
        for (int rr = 0; rr < 5; rr++) {
            const float r = moe_kern_dot_q8q8_ref(w, xq + rr * nb, n), o = moe_kern_dot_q8q8(w, xq + rr * nb, n);
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
        moe_mat m = {MOE_DT_Q8_0, 1, n, (size_t)nb * 34, w};
        float y[5];
        moe_kern_matmul_rows_q8(false, &m, 0, 1, xq, nb, 5, y, 1);
        int same = 1;
        for (int t = 0; t < 5; t++) {
            float d = moe_kern_dot_q8q8(w, xq + t * nb, n);
            same &= memcmp(&d, &y[t], 4) == 0;
        }
        CHECK_MSG(same, "q8q8 tile n %lld not bitwise the single dot", (long long)n);
        free(w);
        free(xq);
        free(xf);
        free(wd);
    }
    printf("dot q8_0 x int8 activations: worst normalised error vs reference %.3g\n", worst);
}

static void test_small_ops(void)
{
    float x[5] = {1, -2, 3, 0.5f, 0}, w[5] = {1, 1, 2, 1, 1}, y[5];
    moe_kern_rmsnorm(x, w, 1e-6f, y, 5);
    double ms = (1 + 4 + 9 + 0.25) / 5.0, sc = 1.0 / sqrt(ms + 1e-6);
    for (int i = 0; i < 5; i++) CHECK(fabs(y[i] - x[i] * sc * w[i]) < 1e-6);
    float s[4] = {1, 2, 3, 1000};
    moe_kern_softmax(s, 4);
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
        moe_pool_free(p);
    }
}

int main(void)
{
    test_dot_axpy();
    for (int64_t nt = 1; nt <= 7; nt++) {
        test_matmul(96, nt);
        test_matmul(2144, nt); /* 67 blocks: several reduction chunks and an odd tail */
    }
    test_small_ops();
    test_q8q8();
    test_pool();
    return check_summary("kernels");
}
