/*
 * kern_ref.c — the scalar reference set: written for clarity and checked
 * by hand; the optimised sets are tested against it.
 *
 * Dot products accumulate in float in index order (Q8_0: per block Σ q·x,
 * then acc += d · block sum; int8 activations: per block an exact int32
 * Σ q_w·q_x, then acc += d_w·d_x·sum).  Compiled for baseline x86-64 like
 * the rest of the program.
 */
#include "kern_impl.h"

#include <math.h>

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

/* nt tokens: nt single dots (the reference shares no work between them) */
#define REF_DOTN(T)                                                                                      \
    static void ref_dotn_##T(const void *row, const float *x, int64_t xs, int nt, int64_t n, float *out) \
    {                                                                                                    \
        for (int t = 0; t < nt; t++) out[t] = ref_dot_##T(row, x + t * xs, n);                           \
    }
REF_DOTN(f32)
REF_DOTN(f16)
REF_DOTN(bf16)
REF_DOTN(q8_0)

static float ref_dot_q8q8(const moe_block_q8_0 *w, const moe_block_q8_0 *x, int64_t n)
{
    float acc = 0.0f;
    for (int64_t k = 0; k < n / MOE_Q8_0_BLOCK; k++) {
        int32_t s = 0;
        for (int j = 0; j < MOE_Q8_0_BLOCK; j++) s += (int32_t)w[k].qs[j] * (int32_t)x[k].qs[j];
        acc += moe_f16_to_f32(w[k].d) * moe_f16_to_f32(x[k].d) * (float)s;
    }
    return acc;
}

static void ref_dotn_q8q8(const moe_block_q8_0 *w, const moe_block_q8_0 *x, int64_t xs, int nt, int64_t n,
                          float *out)
{
    for (int t = 0; t < nt; t++) out[t] = ref_dot_q8q8(w, x + t * xs, n);
}

static void ref_encode_q8_0(const float *x, void *y, int64_t n) { moe_quantize_row_q8_0_ref(x, y, n); }

const moe_kern_fns moe_kern_ref_f32 = {ref_dot_f32, ref_dotn_f32, ref_axpy_f32, NULL, NULL, NULL};
const moe_kern_fns moe_kern_ref_f16 = {ref_dot_f16, ref_dotn_f16, ref_axpy_f16, NULL, NULL, NULL};
const moe_kern_fns moe_kern_ref_bf16 = {ref_dot_bf16, ref_dotn_bf16, ref_axpy_bf16, NULL, NULL, NULL};
const moe_kern_fns moe_kern_ref_q8_0 = {ref_dot_q8_0, ref_dotn_q8_0, ref_axpy_q8_0, NULL, ref_dotn_q8q8,
                                        ref_encode_q8_0};

/* fmaf is exact (one rounding) however libm computes it, so this gives the
 * SIMD sets' bits; it is a few hundred pairs per token. */
void moe_kern_ref_rope(float *v, const float *cs, int n_rot)
{
    for (int i = 0; i < n_rot / 2; i++) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = fmaf(a, c, -(b * s));
        v[2 * i + 1] = fmaf(a, s, b * c);
    }
}

/* Per block of 32: amax, id = 127/amax, q = round-half-even(x·id) (the
 * default rounding mode's nearbyintf), d = fp16(amax/127). */
void moe_kern_ref_quant_act(const float *x, moe_block_q8_0 *y, int64_t n)
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

