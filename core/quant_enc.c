/*
 * quant_enc.c — the encoders of quant_enc.h.
 *
 * Bytes, not just values, must match llama-quantize's, so every expression
 * keeps the operand order and the float32 types of ggml's reference
 * quantizers (a product `w*l*x` is (w·l)·x, an int meets a float as a
 * float) and the file is built with -ffp-contract=off.  The search loops
 * (scale tries, least-squares refits) are the same searches; only the
 * layout of the code is this project's: candidates are fitted four at a
 * time in vector lanes, each lane with the scalar code's operations in its
 * order, and taken in ggml's order (see fit_affine for the one search
 * whose candidates depend on the last winner).
 */
#include "quant_enc.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "dtype.h"

#define GROUP_EPS 1e-15f /* a group whose largest |x| is below this is all zero */

/* Round to nearest, ties to even, of |f| < 2^22, by adding 1.5·2^23 so the
 * integer lands in the mantissa (llama.cpp rounds this way, not with
 * lrintf, and the ties must agree). */
static inline int nearest_int(float f)
{
    const float v = f + 12582912.0f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* C's float-to-int truncation, with what x86's cvttss2si gives (INT32_MIN)
 * for NaN and values out of range instead of undefined behaviour: the
 * legacy encoders reach those on blocks of subnormals, where 1/d
 * overflows to inf, and must still write what llama.cpp writes there. */
static inline int trunc_int(float v)
{
    return v > -2147483648.0f && v < 2147483648.0f ? (int)v : INT32_MIN;
}

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* Four float lanes and four int32 lanes (GCC and Clang vector extensions,
 * at the width every x86-64 and arm64 core has): element-wise IEEE
 * operations, the same bits as the scalar code (with -ffp-contract=off:
 * contracted, `v * x + c` would become one fused operation in a lane and
 * two in the scalar code), so a search can try four candidates at once
 * and keep each one's arithmetic. */
typedef float qe_f4 __attribute__((vector_size(16)));
typedef int32_t qe_i4 __attribute__((vector_size(16)));
/* m ? a : b, lane by lane (m: all ones or all zeros, as comparisons give) */
#define QE_PICK(m, a, b) ((qe_f4)(((qe_i4)(a) & (m)) | ((qe_i4)(b) & ~(m))))

/* imax(lo, imin(hi, nearest_int(f))) in each lane: nearest_int's rounding
 * trick on the lanes' bits, then the clamp. */
static inline qe_i4 nearest_int4_clamp(qe_f4 f, int lo, int hi)
{
    const qe_i4 none = {0, 0, 0, 0};
    qe_i4 l = ((qe_i4)(f + 12582912.0f) & 0x007fffff) - 0x00400000;
    const qe_i4 under = l < lo, over = l > hi;
    l = (l & ~under) | ((none + lo) & under);
    return (l & ~over) | ((none + hi) & over);
}

/* ---- legacy types: blocks of 32 --------------------------------------------------- */

/* The value of largest magnitude (the first of equal ones), with its sign. */
static float signed_absmax(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *min_out, float *max_out)
{
    float min = 3.402823466e38f, max = -3.402823466e38f;
    for (int j = 0; j < n; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    *min_out = min;
    *max_out = max;
}

void moe_quantize_row_q4_0_ref(const float *x, moe_block_q4_0 *y, int64_t n)
{
    for (int64_t b = 0; b < n / MOE_QK; b++, x += MOE_QK) {
        /* d = max / -8 puts the largest magnitude on level -8 (0 after the
         * offset) and leaves 15 levels on the other side */
        const float d = signed_absmax(x, MOE_QK) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = moe_f32_to_f16(d);
        for (int j = 0; j < MOE_QK / 2; j++) {
            const uint8_t lo = (uint8_t)imin(15, (int8_t)trunc_int(x[j] * id + 8.5f));
            const uint8_t hi = (uint8_t)imin(15, (int8_t)trunc_int(x[j + MOE_QK / 2] * id + 8.5f));
            y[b].qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

void moe_quantize_row_q4_1_ref(const float *x, moe_block_q4_1 *y, int64_t n)
{
    for (int64_t b = 0; b < n / MOE_QK; b++, x += MOE_QK) {
        float min, max;
        min_max(x, MOE_QK, &min, &max);
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = moe_f32_to_f16(d);
        y[b].m = moe_f32_to_f16(min);
        for (int j = 0; j < MOE_QK / 2; j++) {
            const uint8_t lo = (uint8_t)imin(15, (int8_t)trunc_int((x[j] - min) * id + 0.5f));
            const uint8_t hi = (uint8_t)imin(15, (int8_t)trunc_int((x[j + MOE_QK / 2] - min) * id + 0.5f));
            y[b].qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

/* Low nibbles into qs, the fifth bits into the 32-bit qh (value j at bit j). */
static void pack5(const int *q, uint8_t *qs, uint8_t qh_out[4])
{
    uint32_t qh = 0;
    for (int j = 0; j < MOE_QK / 2; j++) {
        const int lo = q[j], hi = q[j + MOE_QK / 2];
        qs[j] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
        qh |= (uint32_t)((lo & 0x10) >> 4) << j;
        qh |= (uint32_t)((hi & 0x10) >> 4) << (j + MOE_QK / 2);
    }
    for (int k = 0; k < 4; k++) qh_out[k] = (uint8_t)(qh >> (8 * k));
}

void moe_quantize_row_q5_0_ref(const float *x, moe_block_q5_0 *y, int64_t n)
{
    int q[MOE_QK];
    for (int64_t b = 0; b < n / MOE_QK; b++, x += MOE_QK) {
        const float d = signed_absmax(x, MOE_QK) / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = moe_f32_to_f16(d);
        for (int j = 0; j < MOE_QK; j++) q[j] = imin(31, (int8_t)trunc_int(x[j] * id + 16.5f));
        pack5(q, y[b].qs, y[b].qh);
    }
}

void moe_quantize_row_q5_1_ref(const float *x, moe_block_q5_1 *y, int64_t n)
{
    int q[MOE_QK];
    for (int64_t b = 0; b < n / MOE_QK; b++, x += MOE_QK) {
        float min, max;
        min_max(x, MOE_QK, &min, &max);
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = moe_f32_to_f16(d);
        y[b].m = moe_f32_to_f16(min);
        /* no clamp, as in ggml: (max - min)·id + 0.5 stays below 32 */
        for (int j = 0; j < MOE_QK; j++) q[j] = (uint8_t)trunc_int((x[j] - min) * id + 0.5f);
        pack5(q, y[b].qs, y[b].qh);
    }
}

/* ---- K-quant helpers ------------------------------------------------------------------ */

/* Symmetric levels -nmax..nmax-1 of iscale·x (level + nmax into L). */
static void symmetric_levels(int n, int nmax, float iscale, const float *x, int8_t *L)
{
    for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i]))));
}

/* Σ w·x·l and Σ w·l² (w = x²) over n values for the four inverse scales of
 * isc, each lane in ggml's order (nearest_int and the clamp lane by lane). */
static void symmetric_sums4(int n, int nmax, qe_f4 isc, const float *x, qe_f4 *sumlx, qe_f4 *suml2)
{
    const qe_f4 zero = {0, 0, 0, 0};
    qe_f4 lx = zero, l2 = zero;
    for (int i = 0; i < n; i++) {
        const qe_f4 lf = __builtin_convertvector(nearest_int4_clamp(isc * x[i], -nmax, nmax - 1), qe_f4);
        const float w = x[i] * x[i];
        lx += w * x[i] * lf;
        l2 += w * lf * lf;
    }
    *sumlx = lx;
    *suml2 = l2;
}

/* Symmetric levels -nmax..nmax-1 for n values with weights x², refined by
 * trying 18 scales around nmax/max and keeping the best least-squares fit.
 * L gets level + nmax; returns the scale (ggml's make_qx_quants, rmse 1).
 * The 19 fits do not depend on each other: they are summed four at a time
 * and compared in ggml's order, and L is the levels of the last winner. */
static float fit_symmetric(int n, int nmax, const float *x, int8_t *L)
{
    const float max = signed_absmax(x, n);
    if (fabsf(max) < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float isc[20] = {0}, sumlx[20], suml2[20]; /* lane 19: padding, never compared */
    isc[0] = (float)-nmax / max;
    for (int is = -9, k = 1; is <= 9; is++)
        if (is != 0) isc[k++] = -((float)nmax + 0.1f * (float)is) / max;
    for (int g = 0; g < 20; g += 4) {
        qe_f4 v, lx, l2;
        memcpy(&v, isc + g, sizeof v);
        symmetric_sums4(n, nmax, v, x, &lx, &l2);
        memcpy(sumlx + g, &lx, sizeof lx);
        memcpy(suml2 + g, &l2, sizeof l2);
    }
    float scale = suml2[0] != 0.0f ? sumlx[0] / suml2[0] : 0.0f;
    float best = scale * sumlx[0];
    int won = 0;
    for (int k = 1; k < 19; k++) {
        if (suml2[k] > 0 && sumlx[k] * sumlx[k] > best * suml2[k]) {
            scale = sumlx[k] / suml2[k];
            best = scale * sumlx[k];
            won = k;
        }
    }
    symmetric_levels(n, nmax, isc[won], x, L);
    return scale;
}

/* Q3_K's group fit: symmetric levels from nmax/max, then up to five passes
 * that move single values to the level that raises the weighted fit
 * (weights x²).  L gets level + nmax (ggml's make_q3_quants with rmse). */
static float fit_q3(int n, int nmax, const float *x, int8_t *L)
{
    const float max = signed_absmax(x, n);
    if (fabsf(max) < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = (float)-nmax / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                const int nl = imax(-nmax, imin(nmax - 1, nearest_int(x[i] * sl2 / slx)));
                if (nl != L[i]) {
                    slx += w * x[i] * (float)nl;
                    sl2 += w * (float)nl * (float)nl;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Asymmetric levels 0..nmax with x ≈ scale·L − min (min ≥ 0 returned in
 * *the_min): start from the range, then for nstep+1 scale candidates
 * refit scale and offset by weighted least squares and keep the one with
 * the smallest weighted error, absolute (use_mad) or squared (ggml's
 * make_qkx2_quants).  n ≤ 32. */
static float fit_affine(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                        float rmin, float rdelta, int nstep, bool use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)imax(0, imin(nmax, l));
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    /* The candidates in order, four at a time: all four are fitted with
     * the offset `min` of the moment, then taken in order; a win changes
     * `min`, which the next candidates start from, so the search goes on
     * from the one after the winner (and refits the group's rest). */
    assert(n <= 32);
    const qe_f4 zero = {0, 0, 0, 0};
    qe_i4 lv[32];
    for (int is = 0; is <= nstep;) { /* lanes past nstep are fitted, never taken */
        const float range = max - min;
        qe_f4 isc;
        for (int k = 0; k < 4; k++) isc[k] = (rmin + rdelta * (float)(is + k) + (float)nmax) / range;
        qe_f4 sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < n; i++) {
            const qe_i4 l = nearest_int4_clamp(isc * (x[i] - min), 0, nmax);
            lv[i] = l;
            const qe_f4 lf = __builtin_convertvector(l, qe_f4), w = zero + weights[i];
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        const qe_f4 D = sum_w * sum_l2 - sum_l * sum_l;
        qe_f4 this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        qe_f4 this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        const qe_i4 pos = this_min > 0;
        this_scale = QE_PICK(pos, sum_xl / sum_l2, this_scale);
        this_min = QE_PICK(pos, zero, this_min);
        qe_f4 cur_error = zero;
        for (int i = 0; i < n; i++) {
            qe_f4 diff = this_scale * __builtin_convertvector(lv[i], qe_f4) + this_min - x[i];
            diff = use_mad ? (qe_f4)((qe_i4)diff & 0x7fffffff) : diff * diff;
            cur_error += weights[i] * diff;
        }
        int next = is + 4;
        for (int k = 0; k < 4 && is + k <= nstep; k++) {
            if (D[k] > 0 && cur_error[k] < best_error) {
                for (int i = 0; i < n; i++) L[i] = (uint8_t)lv[i][k];
                best_error = cur_error[k];
                scale = this_scale[k];
                min = this_min[k];
                next = is + k + 1;
                break;
            }
        }
        is = next;
    }
    *the_min = -min;
    return scale;
}

float moe_quant_fit_affine(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                           float rmin, float rdelta, int nstep, bool use_mad)
{
    return fit_affine(n, nmax, x, weights, L, the_min, rmin, rdelta, nstep, use_mad);
}

float moe_quant_fit_symmetric(int n, int nmax, const float *x, int8_t *L)
{
    return fit_symmetric(n, nmax, x, L);
}

/* Sub-block j's 6-bit scale and min from Q4_K/Q5_K's 12 packed bytes. */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0x0f) | (q[j - 4] >> 6) << 4);
        *m = (uint8_t)((q[j + 4] >> 4) | (q[j] >> 6) << 4);
    }
}

/* Packs Q4_K/Q5_K's eight 6-bit scales and mins into 12 bytes. */
static void pack_scale_min_k4(const uint8_t *ls, const uint8_t *lm, uint8_t *s)
{
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (uint8_t)((ls[j] & 0x0f) | (lm[j] & 0x0f) << 4);
            s[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            s[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* Q2_K/Q3_K/Q6_K store the values of a 128-value half as four 32-value
 * rows in 2-bit lanes: byte l holds values l, l+32, l+64, l+96. */
static void pack2(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < MOE_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
}

/* ---- K-quants: super-blocks of 256 ----------------------------------------------------- */

void moe_quantize_row_q2_K_ref(const float *x, moe_block_q2_K *y, int64_t n)
{
    uint8_t L[MOE_QK_K];
    float weights[16], mins[16], scales[16];
    for (int64_t b = 0; b < n / MOE_QK_K; b++, x += MOE_QK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = fit_affine(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        /* 4-bit scales and mins relative to the largest of each */
        if (max_scale > 0) {
            const float iscale = 15.0f / max_scale;
            for (int j = 0; j < 16; j++) y[b].scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            y[b].d = moe_f32_to_f16(max_scale / 15.0f);
        } else {
            memset(y[b].scales, 0, sizeof y[b].scales);
            y[b].d = moe_f32_to_f16(0.0f);
        }
        if (max_min > 0) {
            const float iscale = 15.0f / max_min;
            for (int j = 0; j < 16; j++) y[b].scales[j] |= (uint8_t)((unsigned)nearest_int(iscale * mins[j]) << 4);
            y[b].dmin = moe_f32_to_f16(max_min / 15.0f);
        } else {
            y[b].dmin = moe_f32_to_f16(0.0f);
        }
        /* requantize against the scales as stored */
        for (int j = 0; j < 16; j++) {
            const float d = moe_f16_to_f32(y[b].d) * (float)(y[b].scales[j] & 0x0f);
            if (d == 0.0f) continue;
            const float dm = moe_f16_to_f32(y[b].dmin) * (float)(y[b].scales[j] >> 4);
            for (int i = 0; i < 16; i++)
                L[16 * j + i] = (uint8_t)imax(0, imin(3, nearest_int((x[16 * j + i] + dm) / d)));
        }
        pack2(L, y[b].qs);
    }
}

void moe_quantize_row_q3_K_ref(const float *x, moe_block_q3_K *y, int64_t n)
{
    int8_t L[MOE_QK_K];
    float scales[16];
    for (int64_t b = 0; b < n / MOE_QK_K; b++, x += MOE_QK_K) {
        for (int j = 0; j < 16; j++) scales[j] = fit_q3(16, 4, x + 16 * j, L + 16 * j);
        const float max_scale = signed_absmax(scales, 16);
        /* 6-bit signed scales: low nibbles in bytes 0-7, top two bits in 8-11 */
        uint8_t *s = y[b].scales;
        memset(s, 0, MOE_K_SCALE_SIZE);
        if (max_scale != 0.0f) {
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; j++) {
                int l = (int8_t)nearest_int(iscale * scales[j]);
                l = imax(-32, imin(31, l)) + 32;
                if (j < 8) s[j] = (uint8_t)(l & 0x0f);
                else s[j - 8] |= (uint8_t)((l & 0x0f) << 4);
                s[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            y[b].d = moe_f32_to_f16(1 / iscale);
        } else {
            y[b].d = moe_f32_to_f16(0.0f);
        }
        for (int j = 0; j < 16; j++) {
            int sc = j < 8 ? s[j] & 0x0f : s[j - 8] >> 4;
            sc = (int8_t)((sc | ((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32);
            const float d = moe_f16_to_f32(y[b].d) * (float)sc;
            if (d == 0.0f) continue;
            for (int i = 0; i < 16; i++)
                L[16 * j + i] = (int8_t)(imax(-4, imin(3, nearest_int(x[16 * j + i] / d))) + 4);
        }
        /* third bit into hmask: value j at bit j/32 of byte j%32 */
        memset(y[b].hmask, 0, sizeof y[b].hmask);
        for (int j = 0; j < MOE_QK_K; j++) {
            if (L[j] > 3) {
                y[b].hmask[j % 32] |= (uint8_t)(1u << (j / 32));
                L[j] = (int8_t)(L[j] - 4);
            }
        }
        pack2((const uint8_t *)L, y[b].qs);
    }
}

/* Q4_K and Q5_K differ in the number of levels (16 or 32), the search
 * constants and how the values are packed. */
static void fit_k4(const float *x, int nmax, float rmin, float rdelta, int nstep, uint8_t *L, uint16_t *d_out,
                   uint16_t *dmin_out, uint8_t *packed)
{
    uint8_t ls[8], lm[8];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = fit_affine(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], rmin, rdelta, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < 8; j++) {
        const uint8_t s = (uint8_t)nearest_int(inv_scale * scales[j]);
        const uint8_t m = (uint8_t)nearest_int(inv_min * mins[j]);
        ls[j] = s < 63 ? s : 63;
        lm[j] = m < 63 ? m : 63;
    }
    pack_scale_min_k4(ls, lm, packed);
    *d_out = moe_f32_to_f16(max_scale / 63.0f);
    *dmin_out = moe_f32_to_f16(max_min / 63.0f);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        scale_min_k4(j, packed, &sc, &m);
        const float d = moe_f16_to_f32(*d_out) * (float)sc;
        if (d == 0.0f) continue;
        const float dm = moe_f16_to_f32(*dmin_out) * (float)m;
        for (int i = 0; i < 32; i++)
            L[32 * j + i] = (uint8_t)imax(0, imin(nmax, nearest_int((x[32 * j + i] + dm) / d)));
    }
}

void moe_quantize_row_q4_K_ref(const float *x, moe_block_q4_K *y, int64_t n)
{
    uint8_t L[MOE_QK_K];
    for (int64_t b = 0; b < n / MOE_QK_K; b++, x += MOE_QK_K) {
        fit_k4(x, 15, -1.0f, 0.1f, 20, L, &y[b].d, &y[b].dmin, y[b].scales);
        /* each 64-value chunk: 32 bytes, first 32 values low, next 32 high */
        for (int j = 0; j < MOE_QK_K; j += 64)
            for (int l = 0; l < 32; l++) y[b].qs[j / 2 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
    }
}

void moe_quantize_row_q5_K_ref(const float *x, moe_block_q5_K *y, int64_t n)
{
    uint8_t L[MOE_QK_K];
    for (int64_t b = 0; b < n / MOE_QK_K; b++, x += MOE_QK_K) {
        fit_k4(x, 31, -0.5f, 0.1f, 15, L, &y[b].d, &y[b].dmin, y[b].scales);
        memset(y[b].qh, 0, sizeof y[b].qh);
        /* chunk c of 64 values: fifth bits at bit 2c (first 32) and 2c+1 */
        for (int c = 0; c < 4; c++) {
            for (int j = 0; j < 32; j++) {
                int l1 = L[64 * c + j], l2 = L[64 * c + j + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    y[b].qh[j] |= (uint8_t)(1u << (2 * c));
                }
                if (l2 > 15) {
                    l2 -= 16;
                    y[b].qh[j] |= (uint8_t)(2u << (2 * c));
                }
                y[b].qs[32 * c + j] = (uint8_t)(l1 | l2 << 4);
            }
        }
    }
}

void moe_quantize_row_q6_K_ref(const float *x, moe_block_q6_K *y, int64_t n)
{
    int8_t L[MOE_QK_K];
    float scales[16];
    for (int64_t b = 0; b < n / MOE_QK_K; b++, x += MOE_QK_K) {
        for (int j = 0; j < 16; j++) scales[j] = fit_symmetric(16, 32, x + 16 * j, L + 16 * j);
        const float max_scale = signed_absmax(scales, 16);
        if (fabsf(max_scale) < GROUP_EPS) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        y[b].d = moe_f32_to_f16(1 / iscale);
        for (int j = 0; j < 16; j++) y[b].scales[j] = (int8_t)imin(127, nearest_int(iscale * scales[j]));
        for (int j = 0; j < 16; j++) {
            const float d = moe_f16_to_f32(y[b].d) * (float)y[b].scales[j];
            if (d == 0.0f) continue;
            for (int i = 0; i < 16; i++)
                L[16 * j + i] = (int8_t)(imax(-32, imin(31, nearest_int(x[16 * j + i] / d))) + 32);
        }
        /* per 128 values: low nibbles of values l and l+64 share ql[l],
         * l+32 and l+96 share ql[l+32]; the top two bits go to qh[l] */
        uint8_t *ql = y[b].ql, *qh = y[b].qh;
        for (int j = 0; j < MOE_QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
                ql[l] = (uint8_t)((q1 & 0x0f) | (q3 & 0x0f) << 4);
                ql[l + 32] = (uint8_t)((q2 & 0x0f) | (q4 & 0x0f) << 4);
                qh[l] = (uint8_t)(q1 >> 4 | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
            }
        }
    }
}

/* ---- IQ4_NL / IQ4_XS ------------------------------------------------------------------- */

/* moe_iq4_levels (dtype.h) as floats (exact), here so that the search's
 * constants fold (quant_enc_test checks the two agree). */
static const float iq4_levels_f[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* The level nearest to each lane of v (ties to the upper one): its index
 * in *idx and its value in *q, as llama.cpp found it when the fixtures
 * were made: a halving of [0, 15] with `x < level[mid]` to the bracket
 * [lo, lo + 1], then `x - level[lo] < level[lo + 1] - x` in float (x at
 * or beyond either end gives that end).  Here without a branch: lo is the
 * number of levels 1..14 with !(x < level), the bracket's two levels are
 * sums of the steps those levels pass (integers, so exact), and the
 * comparison picks one.  It is the halving's function everywhere: below
 * level 0 the bracket is [0, 1] and the comparison picks 0, above level 15
 * it is [14, 15] and it picks 15, and a NaN (0·∞ from an infinite inverse
 * scale), which fails every `<`, ends at 15 as the halving did.  The scale
 * search runs it 512 times a block of 32, and the halving's branches were
 * unpredictable (this made IQ4_XS encoding several times faster). */
static inline void iq4_nearest4(qe_f4 v, qe_i4 *idx, qe_f4 *q)
{
    const qe_f4 zero = {0, 0, 0, 0};
    qe_f4 below = zero + iq4_levels_f[0], above = zero + iq4_levels_f[1];
    qe_i4 lo = {0, 0, 0, 0};
    for (int i = 1; i < 15; i++) {
        const float l = iq4_levels_f[i];
        const qe_i4 past = ~(v < zero + l); /* all ones when past */
        lo -= past;
        below += QE_PICK(past, zero + (l - iq4_levels_f[i - 1]), zero);
        above += QE_PICK(past, zero + (iq4_levels_f[i + 1] - l), zero);
    }
    const qe_i4 low = v - below < above - v;
    *q = QE_PICK(low, below, above);
    *idx = lo + 1 + low; /* lo when low (all ones is -1), else lo + 1 */
}

int moe_quant_iq4_nearest(float x)
{
    const qe_f4 v = {x, x, x, x};
    qe_i4 idx;
    qe_f4 q;
    iq4_nearest4(v, &idx, &q);
    return idx[0];
}

/* Best scale for one block of 32 with weights x²: start from max/-127, then
 * 15 tries of (k − 127)/max, keeping the best least-squares fit.  The 16
 * fits run side by side, four to a vector, each lane summing over j =
 * 0..31 in order, so every sum has llama.cpp's bits; the fits are then
 * compared in llama.cpp's order. */
static float iq4_block_scale(const float *x)
{
    const float max = signed_absmax(x, 32);
    if (fabsf(max) < GROUP_EPS) return 0.0f;
    float idf[16];
    idf[0] = 1 / (-max / iq4_levels_f[0]);
    for (int t = -7; t <= 7; t++) idf[t + 8] = (float)(t + moe_iq4_levels[0]) / max;
    const qe_f4 zero = {0, 0, 0, 0};
    qe_f4 id[4], sumqx[4], sumq2[4];
    for (int g = 0; g < 4; g++) {
        id[g] = (qe_f4){idf[4 * g], idf[4 * g + 1], idf[4 * g + 2], idf[4 * g + 3]};
        sumqx[g] = sumq2[g] = zero;
    }
    for (int j = 0; j < 32; j++) {
        const qe_f4 xj = zero + x[j], w = xj * xj;
        for (int g = 0; g < 4; g++) {
            qe_i4 idx;
            qe_f4 q;
            iq4_nearest4(id[g] * xj, &idx, &q);
            sumqx[g] += w * q * xj;
            sumq2[g] += w * q * q;
        }
    }
    float qx[16], q2[16];
    memcpy(qx, sumqx, sizeof qx);
    memcpy(q2, sumq2, sizeof q2);
    float d = q2[0] > 0 ? qx[0] / q2[0] : 0.0f;
    float best = d * qx[0];
    for (int k = 1; k < 16; k++) {
        if (q2[k] > 0 && qx[k] * qx[k] > best * q2[k]) {
            d = qx[k] / q2[k];
            best = d * qx[k];
        }
    }
    return d;
}

static void iq4_pack(const float *x, float id, uint8_t *qs)
{
    const qe_f4 vid = {id, id, id, id};
    for (int j = 0; j < 16; j += 4) {
        qe_f4 a, b, q;
        memcpy(&a, x + j, sizeof a);
        memcpy(&b, x + j + 16, sizeof b);
        qe_i4 ia, ib;
        iq4_nearest4(vid * a, &ia, &q);
        iq4_nearest4(vid * b, &ib, &q);
        for (int k = 0; k < 4; k++) qs[j + k] = (uint8_t)(ia[k] | ib[k] << 4);
    }
}

void moe_quantize_row_iq4_nl(const float *x, moe_block_iq4_nl *y, int64_t n)
{
    for (int64_t b = 0; b < n / MOE_QK; b++, x += MOE_QK) {
        const float d = iq4_block_scale(x);
        y[b].d = moe_f32_to_f16(d);
        iq4_pack(x, d != 0.0f ? 1 / d : 0.0f, y[b].qs);
    }
}

void moe_quantize_row_iq4_xs(const float *x, moe_block_iq4_xs *y, int64_t n)
{
    float scales[8];
    for (int64_t b = 0; b < n / MOE_QK_K; b++, x += MOE_QK_K) {
        for (int k = 0; k < 8; k++) scales[k] = iq4_block_scale(x + 32 * k);
        const float max_scale = signed_absmax(scales, 8);
        /* 6-bit signed block scales relative to a super-block scale */
        const float d = -max_scale / 32;
        y[b].d = moe_f32_to_f16(d);
        y[b].scales_h = 0;
        const float id = d != 0.0f ? 1 / d : 0.0f;
        for (int k = 0; k < 8; k++) {
            const int l = imax(-32, imin(31, nearest_int(id * scales[k])));
            const float dl = d * (float)l;
            iq4_pack(x + 32 * k, dl != 0.0f ? 1 / dl : 0.0f, y[b].qs + 16 * k);
            const int u = l + 32;
            if (k % 2 == 0) y[b].scales_l[k / 2] = (uint8_t)(u & 0x0f);
            else y[b].scales_l[k / 2] |= (uint8_t)((u & 0x0f) << 4);
            y[b].scales_h |= (uint16_t)((u >> 4) << (2 * k));
        }
    }
}

/* ---- dispatch -------------------------------------------------------------------------- */

bool moe_quant_can_encode(uint32_t code)
{
    switch (code) {
    case MOE_DT_F32: case MOE_DT_F16: case MOE_DT_BF16: case MOE_DT_Q8_0:
    case MOE_DT_Q4_0: case MOE_DT_Q4_1: case MOE_DT_Q5_0: case MOE_DT_Q5_1:
    case MOE_DT_Q2_K: case MOE_DT_Q3_K: case MOE_DT_Q4_K: case MOE_DT_Q5_K: case MOE_DT_Q6_K:
    case MOE_DT_IQ4_NL: case MOE_DT_IQ4_XS:
        return true;
    default:
        return false;
    }
}

void moe_quant_row(uint32_t code, const float *x, void *y, int64_t n)
{
    switch (code) {
    case MOE_DT_Q4_0: moe_quantize_row_q4_0_ref(x, y, n); return;
    case MOE_DT_Q4_1: moe_quantize_row_q4_1_ref(x, y, n); return;
    case MOE_DT_Q5_0: moe_quantize_row_q5_0_ref(x, y, n); return;
    case MOE_DT_Q5_1: moe_quantize_row_q5_1_ref(x, y, n); return;
    case MOE_DT_Q2_K: moe_quantize_row_q2_K_ref(x, y, n); return;
    case MOE_DT_Q3_K: moe_quantize_row_q3_K_ref(x, y, n); return;
    case MOE_DT_Q4_K: moe_quantize_row_q4_K_ref(x, y, n); return;
    case MOE_DT_Q5_K: moe_quantize_row_q5_K_ref(x, y, n); return;
    case MOE_DT_Q6_K: moe_quantize_row_q6_K_ref(x, y, n); return;
    case MOE_DT_IQ4_NL: moe_quantize_row_iq4_nl(x, y, n); return;
    case MOE_DT_IQ4_XS: moe_quantize_row_iq4_xs(x, y, n); return;
    default: moe_row_from_f32(code, x, y, n); return;
    }
}
