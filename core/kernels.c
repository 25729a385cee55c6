/*
 * kernels.c — scalar reference kernels, the AVX2/FMA/F16C versions, and the
 * row-sliced matrix products built on them.
 *
 * Reference dot products accumulate in float in index order (Q8_0: per
 * block Σ q·x, then acc += d · block sum), so they are easy to check by
 * hand.  The AVX2 versions keep 8-lane accumulators and a fixed horizontal
 * sum; their order depends only on n.
 */
#include "kernels.h"

#include <math.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define MOE_HAVE_AVX2 1
#endif

int moe_kern_type_slot(uint32_t type)
{
    switch (type) {
    case MOE_DT_F32: return 0;
    case MOE_DT_F16: return 1;
    case MOE_DT_BF16: return 2;
    case MOE_DT_Q8_0: return 3;
    default: return -1;
    }
}

bool moe_kern_type_supported(uint32_t type) { return moe_kern_type_slot(type) >= 0; }

/* ---- scalar reference ---------------------------------------------------- */

static float ref_dot_f32(const void *row, const float *x, int64_t n)
{
    const float *w = row;
    float acc = 0.0f;
    for (int64_t i = 0; i < n; i++) acc += w[i] * x[i];
    return acc;
}

static float ref_dot_f16(const void *row, const float *x, int64_t n)
{
    const uint16_t *w = row;
    float acc = 0.0f;
    for (int64_t i = 0; i < n; i++) acc += moe_f16_to_f32(w[i]) * x[i];
    return acc;
}

static float ref_dot_bf16(const void *row, const float *x, int64_t n)
{
    const uint16_t *w = row;
    float acc = 0.0f;
    for (int64_t i = 0; i < n; i++) acc += moe_bf16_to_f32(w[i]) * x[i];
    return acc;
}

static float ref_dot_q8_0(const void *row, const float *x, int64_t n)
{
    const moe_block_q8_0 *b = row;
    float acc = 0.0f;
    for (int64_t k = 0; k < n / MOE_Q8_0_BLOCK; k++) {
        const float *xb = x + k * MOE_Q8_0_BLOCK;
        float s = 0.0f;
        for (int j = 0; j < MOE_Q8_0_BLOCK; j++) s += (float)b[k].qs[j] * xb[j];
        acc += moe_f16_to_f32(b[k].d) * s;
    }
    return acc;
}

static void ref_axpy_f32(const void *row, float a, float *y, int64_t n)
{
    const float *w = row;
    for (int64_t i = 0; i < n; i++) y[i] += a * w[i];
}

static void ref_axpy_f16(const void *row, float a, float *y, int64_t n)
{
    const uint16_t *w = row;
    for (int64_t i = 0; i < n; i++) y[i] += a * moe_f16_to_f32(w[i]);
}

static void ref_axpy_bf16(const void *row, float a, float *y, int64_t n)
{
    const uint16_t *w = row;
    for (int64_t i = 0; i < n; i++) y[i] += a * moe_bf16_to_f32(w[i]);
}

static void ref_axpy_q8_0(const void *row, float a, float *y, int64_t n)
{
    const moe_block_q8_0 *b = row;
    for (int64_t k = 0; k < n / MOE_Q8_0_BLOCK; k++) {
        const float ad = a * moe_f16_to_f32(b[k].d);
        for (int j = 0; j < MOE_Q8_0_BLOCK; j++) y[k * MOE_Q8_0_BLOCK + j] += ad * (float)b[k].qs[j];
    }
}

#define REF_DOT4(T)                                                                                      \
    static void ref_dotn_##T(const void *row, const float *x, int64_t xs, int nt, int64_t n, float *out) \
    {                                                                                                    \
        for (int t = 0; t < nt; t++) out[t] = ref_dot_##T(row, x + t * xs, n);                           \
    }
REF_DOT4(f32)
REF_DOT4(f16)
REF_DOT4(bf16)
REF_DOT4(q8_0)

static const moe_kern_ops kern_reference = {
    .name = "reference",
    .dot = {ref_dot_f32, ref_dot_f16, ref_dot_bf16, ref_dot_q8_0},
    .dotn = {ref_dotn_f32, ref_dotn_f16, ref_dotn_bf16, ref_dotn_q8_0},
    .axpy = {ref_axpy_f32, ref_axpy_f16, ref_axpy_bf16, ref_axpy_q8_0},
};

const moe_kern_ops *moe_kern_reference(void) { return &kern_reference; }

/* ---- AVX2 / FMA / F16C --------------------------------------------------- */

#ifdef MOE_HAVE_AVX2

/* Sum of the 8 lanes in a fixed order. */
static inline float hsum8(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    __m128 sh = _mm_movehdup_ps(lo);
    __m128 s = _mm_add_ps(lo, sh);
    sh = _mm_movehl_ps(sh, s);
    s = _mm_add_ss(s, sh);
    return _mm_cvtss_f32(s);
}

static inline __m256 load_f16x8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 load_bf16x8(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/*
 * Dot products of one weight row with nt activation rows (nt = 1 or 4).
 * Each token keeps its own accumulators and sees exactly the same
 * operations in the same order whatever nt is, so a token's result is
 * bitwise the same alone or in a tile of four; the weights are decoded once
 * per tile.  Float types: four 8-lane accumulators over blocks of 32, then
 * 8-wide steps into the first, a fixed horizontal sum, a scalar tail.
 */
#define ALWAYS_INLINE inline __attribute__((always_inline))

#define DOTN_FLOAT(NAME, WT, LOAD, SCALAR)                                                  \
    static ALWAYS_INLINE void NAME(const WT *w, const float *x, int64_t xs, int nt, int64_t n, \
                                   float *out)                                              \
    {                                                                                       \
        __m256 a[4][4];                                                                     \
        for (int t = 0; t < nt; t++)                                                        \
            for (int u = 0; u < 4; u++) a[t][u] = _mm256_setzero_ps();                      \
        int64_t i = 0;                                                                      \
        for (; i + 32 <= n; i += 32) {                                                      \
            const __m256 w0 = LOAD(w + i), w1 = LOAD(w + i + 8), w2 = LOAD(w + i + 16),     \
                         w3 = LOAD(w + i + 24);                                             \
            for (int t = 0; t < nt; t++) {                                                  \
                const float *xt = x + t * xs + i;                                           \
                a[t][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xt), a[t][0]);                \
                a[t][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xt + 8), a[t][1]);            \
                a[t][2] = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xt + 16), a[t][2]);           \
                a[t][3] = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xt + 24), a[t][3]);           \
            }                                                                               \
        }                                                                                   \
        for (; i + 8 <= n; i += 8) {                                                        \
            const __m256 w0 = LOAD(w + i);                                                  \
            for (int t = 0; t < nt; t++)                                                    \
                a[t][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + t * xs + i), a[t][0]);    \
        }                                                                                   \
        for (int t = 0; t < nt; t++) {                                                      \
            float acc = hsum8(_mm256_add_ps(_mm256_add_ps(a[t][0], a[t][1]),                \
                                            _mm256_add_ps(a[t][2], a[t][3])));              \
            for (int64_t j = i; j < n; j++) acc += SCALAR(w[j]) * x[t * xs + j];            \
            out[t] = acc;                                                                   \
        }                                                                                   \
    }

#define LOAD_F32(p) _mm256_loadu_ps(p)
#define SCALAR_F32(v) (v)
#define SCALAR_F16(v) moe_f16_to_f32(v)
#define SCALAR_BF16(v) moe_bf16_to_f32(v)

DOTN_FLOAT(dotn_f32, float, LOAD_F32, SCALAR_F32)
DOTN_FLOAT(dotn_f16, uint16_t, load_f16x8, SCALAR_F16)
DOTN_FLOAT(dotn_bf16, uint16_t, load_bf16x8, SCALAR_BF16)

/* 8 int8 → 8 floats */
static inline __m256 q8x8(const int8_t *q)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q)));
}

/* Q8_0: per block s = (q0·x0 + q1·x1) + (q2·x2 + q3·x3) (8 lanes each),
 * acc[k & 1] += d · s; then the two accumulators are added and summed
 * horizontally.  Blocks go in pairs so that the accumulator index is a
 * constant (kept in registers, not a stack slot). */
static ALWAYS_INLINE void q8_block(const moe_block_q8_0 *bk, const float *x, int64_t xs, int nt, __m256 *acc)
{
    const __m256 q0 = q8x8(bk->qs), q1 = q8x8(bk->qs + 8), q2 = q8x8(bk->qs + 16), q3 = q8x8(bk->qs + 24);
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(bk->d));
    for (int t = 0; t < nt; t++) {
        const float *xb = x + t * xs;
        /* two short chains instead of one long one (FMA latency) */
        const __m256 s01 = _mm256_fmadd_ps(q1, _mm256_loadu_ps(xb + 8), _mm256_mul_ps(q0, _mm256_loadu_ps(xb)));
        const __m256 s23 = _mm256_fmadd_ps(q3, _mm256_loadu_ps(xb + 24), _mm256_mul_ps(q2, _mm256_loadu_ps(xb + 16)));
        acc[t] = _mm256_fmadd_ps(d, _mm256_add_ps(s01, s23), acc[t]);
    }
}

static ALWAYS_INLINE void dotn_q8_0(const moe_block_q8_0 *b, const float *x, int64_t xs, int nt, int64_t n,
                                   float *out)
{
    __m256 acc0[4], acc1[4];
    for (int t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();
    const int64_t nb = n / MOE_Q8_0_BLOCK;
    int64_t k = 0;
    for (; k + 2 <= nb; k += 2) {
        /* streaming rows from DRAM: ask for the data ~2 KiB ahead (measured
         * +5..15% on 2 threads); no effect on the arithmetic */
        _mm_prefetch((const char *)&b[k] + 2048, _MM_HINT_T0);
        q8_block(&b[k], x + k * MOE_Q8_0_BLOCK, xs, nt, acc0);
        q8_block(&b[k + 1], x + (k + 1) * MOE_Q8_0_BLOCK, xs, nt, acc1);
    }
    if (k < nb) q8_block(&b[k], x + k * MOE_Q8_0_BLOCK, xs, nt, acc0);
    for (int t = 0; t < nt; t++) out[t] = hsum8(_mm256_add_ps(acc0[t], acc1[t]));
}

#define DOT_WRAPPERS(T, WT)                                                                              \
    static float avx_dot_##T(const void *row, const float *x, int64_t n)                                 \
    {                                                                                                    \
        float r;                                                                                         \
        dotn_##T((const WT *)row, x, 0, 1, n, &r);                                                       \
        return r;                                                                                        \
    }                                                                                                    \
    /* nt = 1..4, each a separate specialisation of the same body */                                     \
    static void avx_dotn_##T(const void *row, const float *x, int64_t xs, int nt, int64_t n, float *out) \
    {                                                                                                    \
        switch (nt) {                                                                                    \
        case 1: dotn_##T((const WT *)row, x, xs, 1, n, out); break;                                      \
        case 2: dotn_##T((const WT *)row, x, xs, 2, n, out); break;                                      \
        case 3: dotn_##T((const WT *)row, x, xs, 3, n, out); break;                                      \
        default: dotn_##T((const WT *)row, x, xs, 4, n, out); break;                                     \
        }                                                                                                \
    }

DOT_WRAPPERS(f32, float)
DOT_WRAPPERS(f16, uint16_t)
DOT_WRAPPERS(bf16, uint16_t)
DOT_WRAPPERS(q8_0, moe_block_q8_0)

#define AXPY_BODY(LOAD, SCALAR)                                               \
    const __m256 va = _mm256_set1_ps(a);                                      \
    int64_t i = 0;                                                            \
    for (; i + 8 <= n; i += 8)                                                \
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, LOAD(w + i), _mm256_loadu_ps(y + i))); \
    for (; i < n; i++) y[i] += a * SCALAR(w[i]);

static void avx_axpy_f32(const void *row, float a, float *y, int64_t n)
{
    const float *w = row;
    AXPY_BODY(LOAD_F32, SCALAR_F32)
}

static void avx_axpy_f16(const void *row, float a, float *y, int64_t n)
{
    const uint16_t *w = row;
    AXPY_BODY(load_f16x8, SCALAR_F16)
}

static void avx_axpy_bf16(const void *row, float a, float *y, int64_t n)
{
    const uint16_t *w = row;
    AXPY_BODY(load_bf16x8, SCALAR_BF16)
}

static void avx_axpy_q8_0(const void *row, float a, float *y, int64_t n)
{
    const moe_block_q8_0 *b = row;
    for (int64_t k = 0; k < n / MOE_Q8_0_BLOCK; k++) {
        const __m256 ad = _mm256_set1_ps(a * _cvtsh_ss(b[k].d));
        float *yb = y + k * MOE_Q8_0_BLOCK;
        for (int j = 0; j < MOE_Q8_0_BLOCK; j += 8)
            _mm256_storeu_ps(yb + j, _mm256_fmadd_ps(ad, q8x8(b[k].qs + j), _mm256_loadu_ps(yb + j)));
    }
}

/*
 * Q8_0 × 4 tokens over blocks [k0, k1) with the accumulators carried in
 * st (acc0[4], acc1[4]) between calls.  k0 is even, so block k still goes
 * to acc[k & 1] and the final sums are bitwise those of dotn_q8_0: the
 * product can walk the reduction in chunks (activations stay in L1 while
 * a tile of rows uses them) without changing a single operation.
 */
static void q8_dot4_chunk(const moe_block_q8_0 *b, const float *x, int64_t xs, int64_t k0, int64_t k1, __m256 *st)
{
    __m256 acc0[4], acc1[4];
    for (int t = 0; t < 4; t++) {
        acc0[t] = st[t];
        acc1[t] = st[4 + t];
    }
    int64_t k = k0;
    for (; k + 2 <= k1; k += 2) {
        q8_block(&b[k], x + k * MOE_Q8_0_BLOCK, xs, 4, acc0);
        q8_block(&b[k + 1], x + (k + 1) * MOE_Q8_0_BLOCK, xs, 4, acc1);
    }
    if (k < k1) q8_block(&b[k], x + k * MOE_Q8_0_BLOCK, xs, 4, acc0);
    for (int t = 0; t < 4; t++) {
        st[t] = acc0[t];
        st[4 + t] = acc1[t];
    }
}

#define Q8_KCHUNK 16   /* blocks per chunk (even): 4 tokens × 512 floats = 8 KiB of activations */
#define Q8_RTILE 32    /* rows sharing one activation chunk */

/* y rows [r0, r1) for tokens [t0, t0 + 4) of a Q8_0 matrix. */
static void q8_matmul_quad(const moe_mat *m, int64_t r0, int64_t r1, const float *x, int64_t xs, float *y,
                           int64_t ys)
{
    __m256 st[Q8_RTILE][8];
    const int64_t nb = m->cols / MOE_Q8_0_BLOCK;
    for (int64_t rb = r0; rb < r1; rb += Q8_RTILE) {
        const int64_t re = rb + Q8_RTILE < r1 ? rb + Q8_RTILE : r1;
        for (int64_t r = rb; r < re; r++)
            for (int u = 0; u < 8; u++) st[r - rb][u] = _mm256_setzero_ps();
        for (int64_t kc = 0; kc < nb; kc += Q8_KCHUNK) {
            const int64_t ke = kc + Q8_KCHUNK < nb ? kc + Q8_KCHUNK : nb;
            for (int64_t r = rb; r < re; r++) q8_dot4_chunk(moe_mat_row(m, r), x, xs, kc, ke, st[r - rb]);
        }
        for (int64_t r = rb; r < re; r++)
            for (int t = 0; t < 4; t++) y[t * ys + r] = hsum8(_mm256_add_ps(st[r - rb][t], st[r - rb][4 + t]));
    }
}

static const moe_kern_ops kern_avx2 = {
    .name = "avx2",
    .dot = {avx_dot_f32, avx_dot_f16, avx_dot_bf16, avx_dot_q8_0},
    .dotn = {avx_dotn_f32, avx_dotn_f16, avx_dotn_bf16, avx_dotn_q8_0},
    .axpy = {avx_axpy_f32, avx_axpy_f16, avx_axpy_bf16, avx_axpy_q8_0},
};

const moe_kern_ops *moe_kern_best(void) { return &kern_avx2; }

#else

const moe_kern_ops *moe_kern_best(void) { return &kern_reference; }

#endif

/* ---- products built on the table ----------------------------------------- */

void moe_kern_matmul_rows(const moe_kern_ops *k, const moe_mat *m, int64_t r0, int64_t r1,
                          const float *x, int64_t x_stride, int64_t n_tok,
                          float *y, int64_t y_stride)
{
    const int slot = moe_kern_type_slot(m->type);
    MOE_ASSERT(slot >= 0 && r0 >= 0 && r1 <= m->rows);
    const moe_kern_dotn_fn dotn = k->dotn[slot];
#ifdef MOE_HAVE_AVX2
    if (k == &kern_avx2 && m->type == MOE_DT_Q8_0 && n_tok >= 4) {
        /* a tile of rows (in L2) meets every quad of tokens, chunk by chunk */
        for (int64_t rb = r0; rb < r1; rb += Q8_RTILE) {
            const int64_t re = rb + Q8_RTILE < r1 ? rb + Q8_RTILE : r1;
            int64_t t = 0;
            for (; t + 4 <= n_tok; t += 4)
                q8_matmul_quad(m, rb, re, x + t * x_stride, x_stride, y + t * y_stride, y_stride);
            if (t < n_tok)
                for (int64_t r = rb; r < re; r++) {
                    float o[4];
                    dotn(moe_mat_row(m, r), x + t * x_stride, x_stride, (int)(n_tok - t), m->cols, o);
                    for (int64_t u = t; u < n_tok; u++) y[u * y_stride + r] = o[u - t];
                }
        }
        return;
    }
#endif
    /* Tiles: ~64 KiB of weight rows × ~128 KiB of activations stay in L2
     * while they meet; the tiling changes which loads hit cache, never the
     * arithmetic of a value. */
    int64_t rt = (int64_t)(65536 / (m->row_bytes ? m->row_bytes : 1));
    int64_t tt = (131072 / (m->cols * 4)) & ~(int64_t)3;
    if (rt < 4) rt = 4;
    if (tt < 4) tt = 4;
    for (int64_t rb = r0; rb < r1; rb += rt) {
        const int64_t re = rb + rt < r1 ? rb + rt : r1;
        for (int64_t tb = 0; tb < n_tok; tb += tt) {
            const int64_t te = tb + tt < n_tok ? tb + tt : n_tok;
            for (int64_t r = rb; r < re; r++) {
                const void *row = moe_mat_row(m, r);
                for (int64_t t = tb; t < te; t += 4) {
                    const int nt = te - t < 4 ? (int)(te - t) : 4;
                    float o[4];
                    dotn(row, x + t * x_stride, x_stride, nt, m->cols, o);
                    for (int u = 0; u < nt; u++) y[(t + u) * y_stride + r] = o[u];
                }
            }
        }
    }
}

void moe_kern_matvec_t(const moe_kern_ops *k, const moe_mat *m, const float *x, float *y)
{
    const int slot = moe_kern_type_slot(m->type);
    MOE_ASSERT(slot >= 0);
    memset(y, 0, (size_t)m->cols * sizeof(float));
    for (int64_t r = 0; r < m->rows; r++) k->axpy[slot](moe_mat_row(m, r), x[r], y, m->cols);
}

void moe_kern_rmsnorm(const float *x, const float *w, float eps, float *y, int64_t n)
{
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    const float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

void moe_kern_softmax(float *x, int64_t n)
{
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

void moe_kern_swiglu(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* ---- int8-activation path (Q8_0 weights) ----------------------------------- */

void moe_kern_quantize_act_q8(const float *x, moe_block_q8_0 *y, int64_t n)
{
    for (int64_t b = 0; b < n / MOE_Q8_0_BLOCK; b++) {
        const float *xb = x + b * MOE_Q8_0_BLOCK;
        float amax = 0.0f;
        for (int j = 0; j < MOE_Q8_0_BLOCK; j++) amax = fabsf(xb[j]) > amax ? fabsf(xb[j]) : amax;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[b].d = moe_f32_to_f16(amax / 127.0f);
        for (int j = 0; j < MOE_Q8_0_BLOCK; j++) y[b].qs[j] = (int8_t)nearbyintf(xb[j] * id);
    }
}

float moe_kern_dot_q8q8_ref(const moe_block_q8_0 *w, const moe_block_q8_0 *x, int64_t n)
{
    float acc = 0.0f;
    for (int64_t k = 0; k < n / MOE_Q8_0_BLOCK; k++) {
        int32_t s = 0;
        for (int j = 0; j < MOE_Q8_0_BLOCK; j++) s += (int32_t)w[k].qs[j] * (int32_t)x[k].qs[j];
        acc += moe_f16_to_f32(w[k].d) * moe_f16_to_f32(x[k].d) * (float)s;
    }
    return acc;
}

#ifdef MOE_HAVE_AVX2
/* Per block: |w| · sign(x, w) with maddubs (u8 × s8 → s16 pairs), pairs
 * summed to 8 int32 lanes (exact), to float, acc[k & 1] += d_w·d_x · s
 * (blocks in pairs: constant accumulator index). */
static ALWAYS_INLINE void q8q8_block(const moe_block_q8_0 *wk, const moe_block_q8_0 *x, int64_t xs, int nt,
                                    __m256 *acc)
{
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i qw = _mm256_loadu_si256((const __m256i *)wk->qs);
    const __m256i aw = _mm256_sign_epi8(qw, qw);
    const float dw = _cvtsh_ss(wk->d);
    for (int t = 0; t < nt; t++) {
        const moe_block_q8_0 *xb = &x[t * xs];
        const __m256i qx = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xb->qs), qw);
        const __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, qx), ones);
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * _cvtsh_ss(xb->d)), _mm256_cvtepi32_ps(s32), acc[t]);
    }
}

static ALWAYS_INLINE void dotn_q8q8(const moe_block_q8_0 *w, const moe_block_q8_0 *x, int64_t xs, int nt, int64_t n,
                                   float *out)
{
    __m256 acc0[4], acc1[4];
    for (int t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();
    const int64_t nb = n / MOE_Q8_0_BLOCK;
    int64_t k = 0;
    for (; k + 2 <= nb; k += 2) {
        _mm_prefetch((const char *)&w[k] + 2048, _MM_HINT_T0);
        q8q8_block(&w[k], x + k, xs, nt, acc0);
        q8q8_block(&w[k + 1], x + k + 1, xs, nt, acc1);
    }
    if (k < nb) q8q8_block(&w[k], x + k, xs, nt, acc0);
    for (int t = 0; t < nt; t++) out[t] = hsum8(_mm256_add_ps(acc0[t], acc1[t]));
}

float moe_kern_dot_q8q8(const moe_block_q8_0 *w, const moe_block_q8_0 *x, int64_t n)
{
    float r;
    dotn_q8q8(w, x, 0, 1, n, &r);
    return r;
}

static void dot4_q8q8(const moe_block_q8_0 *w, const moe_block_q8_0 *x, int64_t xs, int64_t n, float *out)
{
    dotn_q8q8(w, x, xs, 4, n, out);
}
#else
float moe_kern_dot_q8q8(const moe_block_q8_0 *w, const moe_block_q8_0 *x, int64_t n)
{
    return moe_kern_dot_q8q8_ref(w, x, n);
}

static void dot4_q8q8(const moe_block_q8_0 *w, const moe_block_q8_0 *x, int64_t xs, int64_t n, float *out)
{
    for (int t = 0; t < 4; t++) out[t] = moe_kern_dot_q8q8(w, x + t * xs, n);
}
#endif

void moe_kern_matmul_rows_q8(bool reference, const moe_mat *m, int64_t r0, int64_t r1, const moe_block_q8_0 *xq,
                             int64_t xq_stride, int64_t n_tok, float *y, int64_t y_stride)
{
    MOE_ASSERT(m->type == MOE_DT_Q8_0 && r0 >= 0 && r1 <= m->rows);
    int64_t rt = (int64_t)(65536 / m->row_bytes), tt = (65536 / (int64_t)(m->cols + m->cols / 16)) & ~(int64_t)3;
    if (rt < 4) rt = 4;
    if (tt < 4) tt = 4;
    for (int64_t rb = r0; rb < r1; rb += rt) {
        const int64_t re = rb + rt < r1 ? rb + rt : r1;
        for (int64_t tb = 0; tb < n_tok; tb += tt) {
            const int64_t te = tb + tt < n_tok ? tb + tt : n_tok;
            for (int64_t r = rb; r < re; r++) {
                const moe_block_q8_0 *row = moe_mat_row(m, r);
                int64_t t = tb;
                if (!reference)
                    for (; t + 4 <= te; t += 4) {
                        float o[4];
                        dot4_q8q8(row, xq + t * xq_stride, xq_stride, m->cols, o);
                        for (int u = 0; u < 4; u++) y[(t + u) * y_stride + r] = o[u];
                    }
                for (; t < te; t++)
                    y[t * y_stride + r] = reference ? moe_kern_dot_q8q8_ref(row, xq + t * xq_stride, m->cols)
                                                    : moe_kern_dot_q8q8(row, xq + t * xq_stride, m->cols);
            }
        }
    }
}
