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
#include <string.h>

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

static void ref_dotn_q8q8(const void *w, const void *x, int64_t xs, int nt, int64_t n, float *out)
{
    for (int t = 0; t < nt; t++) out[t] = ref_dot_q8q8(w, (const moe_block_q8_0 *)x + t * xs, n);
}

static void ref_encode_q8_0(const float *x, void *y, int64_t n) { moe_quantize_row_q8_0_ref(x, y, n); }

static void ref_matmul_int8_rp_q4_K(const moe_mat *m, int64_t r0, int64_t r1, const void *xq, int64_t xq_stride,
                                    int64_t n_tok, float *y, int64_t ys);

/* ref_dot_q8q8 read from the repacked layout (kern.h): the same integers
 * and the same float expression, so the same bits as on the file's rows. */
void moe_kern_ref_matmul_int8_rp(const moe_mat *m, int64_t r0, int64_t r1, const void *xq, int64_t xq_stride,
                                 int64_t n_tok, float *y, int64_t ys)
{
    if (m->type == MOE_DT_Q4_K) {
        ref_matmul_int8_rp_q4_K(m, r0, r1, xq, xq_stride, n_tok, y, ys);
        return;
    }
    const int64_t nb = m->cols / MOE_Q8_0_BLOCK;
    const size_t gb = moe_rp_group_bytes(nb);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t a = m->rp_row + r;
        const unsigned char *grp = (const unsigned char *)m->rp + (size_t)(a / MOE_RP_ROWS) * gb;
        const int l = (int)(a % MOE_RP_ROWS);
        for (int64_t t = 0; t < n_tok; t++) {
            const moe_block_q8_0 *x = (const moe_block_q8_0 *)xq + t * xq_stride;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint16_t *d = (const uint16_t *)(const void *)(grp + moe_rp_d_off(b));
                const unsigned char *q = grp + moe_rp_q_off(b);
                int32_t s = 0;
                for (int j = 0; j < MOE_Q8_0_BLOCK; j++)
                    s += ((int32_t)q[moe_rp_q_idx(l, j)] - 128) * (int32_t)x[b].qs[j];
                acc += moe_f16_to_f32(d[l]) * moe_f16_to_f32(x[b].d) * (float)s;
            }
            y[t * ys + r] = acc;
        }
    }
}

/* blk256_q8_K of a Q4_K row read from the repacked layout (kern.h): the
 * same integers and float expression, so the bits of the file's rows. */
static void ref_matmul_int8_rp_q4_K(const moe_mat *m, int64_t r0, int64_t r1, const void *xq, int64_t xq_stride,
                                    int64_t n_tok, float *y, int64_t ys)
{
    const int64_t nsb = m->cols / MOE_QK_K;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t a = m->rp_row + r;
        const unsigned char *grp = (const unsigned char *)m->rp + (size_t)(a / MOE_RP_ROWS * nsb) * MOE_RPK_SB_BYTES;
        const int l = (int)(a % MOE_RP_ROWS);
        for (int64_t t = 0; t < n_tok; t++) {
            const moe_block_q8_K *x = (const moe_block_q8_K *)xq + t * xq_stride;
            float acc = 0.0f;
            for (int64_t k = 0; k < nsb; k++) {
                const unsigned char *sb = grp + (size_t)k * MOE_RPK_SB_BYTES;
                uint16_t d, dmin;
                memcpy(&d, sb + MOE_RPK_D + 2 * l, 2);
                memcpy(&dmin, sb + MOE_RPK_DMIN + 2 * l, 2);
                int32_t isum = 0, msum = 0;
                for (int j = 0; j < 8; j++) {
                    int32_t si = 0;
                    for (int v = 32 * j; v < 32 * j + 32; v++)
                        si += (int32_t)((sb[MOE_RPK_Q + moe_rpk_q_idx(l, v)] >> moe_rpk_q_shift(v)) & 0xF) *
                              (int32_t)x[k].qs[v];
                    isum += (int32_t)sb[MOE_RPK_SC + 16 * j + l] * si;
                    msum += (int32_t)sb[MOE_RPK_M + 32 * (j / 2) + 2 * l + j % 2] *
                            ((int32_t)x[k].bsums[2 * j] + (int32_t)x[k].bsums[2 * j + 1]);
                }
                acc += moe_f16_to_f32(d) * x[k].d * (float)isum - moe_f16_to_f32(dmin) * x[k].d * (float)msum;
            }
            y[t * ys + r] = acc;
        }
    }
}

const moe_kern_fns moe_kern_ref_f32 = {ref_dot_f32, ref_dotn_f32, ref_axpy_f32, NULL, NULL, NULL, NULL, NULL};
const moe_kern_fns moe_kern_ref_f16 = {ref_dot_f16, ref_dotn_f16, ref_axpy_f16, NULL, NULL, NULL, NULL, NULL};
const moe_kern_fns moe_kern_ref_bf16 = {ref_dot_bf16, ref_dotn_bf16, ref_axpy_bf16, NULL, NULL, NULL, NULL, NULL};
const moe_kern_fns moe_kern_ref_q8_0 = {ref_dot_q8_0, ref_dotn_q8_0, ref_axpy_q8_0, NULL, ref_dotn_q8q8,
                                        ref_encode_q8_0, NULL, moe_kern_ref_matmul_int8_rp};

/* fmaf is exact (one rounding) however libm computes it, so this gives the
 * SIMD sets' bits; it is a few hundred pairs per token. */
void moe_kern_ref_axpy_rows(const float *const *c, int np, const float *a, int64_t as, int nh, float *y, int64_t ys,
                            int64_t n)
{
    for (int t = 0; t < np; t++)
        for (int j = 0; j < nh; j++) ref_axpy_f32(c[t], a[j * as + t], y + j * ys, n);
}

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
 * default rounding mode's nearbyintf), d = fp16(amax/127); a block with a
 * NaN or an infinity: d = NaN, q = 0 (kern_impl.h, KERN_F16_NAN). */
void moe_kern_ref_quant_act(const float *x, void *out, int64_t n)
{
    moe_block_q8_0 *y = out;
    for (int64_t b = 0; b < n / MOE_Q8_0_BLOCK; b++) {
        const float *xb = x + b * MOE_Q8_0_BLOCK;
        if (moe_f32_first_nonfinite(xb, MOE_Q8_0_BLOCK) >= 0) {
            kern_nan_q8_0(&y[b]);
            continue;
        }
        float amax = 0.0f;
        for (int j = 0; j < MOE_Q8_0_BLOCK; j++) amax = fabsf(xb[j]) > amax ? fabsf(xb[j]) : amax;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[b].d = moe_f32_to_f16(amax / 127.0f);
        for (int j = 0; j < MOE_Q8_0_BLOCK; j++) y[b].qs[j] = (int8_t)nearbyintf(xb[j] * id);
    }
}


/* ---- the other quantized types ---------------------------------------------
 *
 * Float activations: each block dequantized to its exact values
 * (moe_dequantize_row), then per block s = Σ w·x in index order and
 * acc += s; axpy adds a·w.  Order depends only on n.
 *
 * Int8 activations: a weight block is decoded to integers (wblk:
 * w_i = d·sc[i/sub]·q[i] − dmin·m[i/sub]; legacy blocks have one
 * sub-block, sc = 1, and a float min), each (sub-)block's Σ q·q_x is an
 * exact int32, and the block adds, in this order:
 *   dot type q8_0:  acc += d_w·d_x·Σq·q_x
 *   dot type q8_1:  acc += d_w·d_x·Σq·q_x + m_w·s_x
 *   dot type q8_K:  acc += d_w·d_x·Σ_sub sc·(Σq·q_x) − dmin_w·d_x·Σ_sub m·bsum_x
 * (each product left to right, the block's terms before acc).
 */

typedef struct wblk {
    int8_t q[MOE_QK_K];   /* integer values, offsets applied */
    int32_t sc[16], m[16];/* per sub-block scale and min */
    int sub;              /* values per sub-block (16 or 32) */
    float d, dmin;        /* super-block scale and min scale (legacy: d and the float min m) */
} wblk;

static void dec_q4_0(const void *p, wblk *o)
{
    const moe_block_q4_0 *b = p;
    o->d = moe_f16_to_f32(b->d);
    for (int j = 0; j < 16; j++) {
        o->q[j] = (int8_t)((b->qs[j] & 0xF) - 8);
        o->q[j + 16] = (int8_t)((b->qs[j] >> 4) - 8);
    }
}

static void dec_q4_1(const void *p, wblk *o)
{
    const moe_block_q4_1 *b = p;
    o->d = moe_f16_to_f32(b->d);
    o->dmin = moe_f16_to_f32(b->m);
    for (int j = 0; j < 16; j++) {
        o->q[j] = (int8_t)(b->qs[j] & 0xF);
        o->q[j + 16] = (int8_t)(b->qs[j] >> 4);
    }
}

static void dec_q5(const uint8_t *qh4, const uint8_t *qs, int off, wblk *o)
{
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    for (int j = 0; j < 16; j++) {
        o->q[j] = (int8_t)(((qs[j] & 0xF) | (int)((qh >> j) & 1) << 4) - off);
        o->q[j + 16] = (int8_t)(((qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - off);
    }
}

static void dec_q5_0(const void *p, wblk *o)
{
    const moe_block_q5_0 *b = p;
    o->d = moe_f16_to_f32(b->d);
    dec_q5(b->qh, b->qs, 16, o);
}

static void dec_q5_1(const void *p, wblk *o)
{
    const moe_block_q5_1 *b = p;
    o->d = moe_f16_to_f32(b->d);
    o->dmin = moe_f16_to_f32(b->m);
    dec_q5(b->qh, b->qs, 0, o);
}

static void dec_iq4_nl(const void *p, wblk *o)
{
    const moe_block_iq4_nl *b = p;
    o->d = moe_f16_to_f32(b->d);
    for (int j = 0; j < 16; j++) {
        o->q[j] = moe_iq4_levels[b->qs[j] & 0xF];
        o->q[j + 16] = moe_iq4_levels[b->qs[j] >> 4];
    }
}

static void dec_q2_K(const void *p, wblk *o)
{
    const moe_block_q2_K *b = p;
    o->d = moe_f16_to_f32(b->d);
    o->dmin = moe_f16_to_f32(b->dmin);
    o->sub = 16;
    for (int s = 0; s < 16; s++) {
        o->sc[s] = b->scales[s] & 0xF;
        o->m[s] = b->scales[s] >> 4;
    }
    for (int i = 0; i < MOE_QK_K; i++) o->q[i] = (int8_t)((b->qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3);
}

static void dec_q3_K(const void *p, wblk *o)
{
    const moe_block_q3_K *b = p;
    o->d = moe_f16_to_f32(b->d);
    o->dmin = 0.0f;
    o->sub = 16;
    moe_q3_K_scales(b->scales, o->sc);
    for (int s = 0; s < 16; s++) o->m[s] = 0;
    for (int i = 0; i < MOE_QK_K; i++) {
        const int lo = (b->qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
        o->q[i] = (int8_t)(lo - ((b->hmask[i % 32] >> (i / 32)) & 1 ? 0 : 4));
    }
}

static void dec_q4_K(const void *p, wblk *o)
{
    const moe_block_q4_K *b = p;
    o->d = moe_f16_to_f32(b->d);
    o->dmin = moe_f16_to_f32(b->dmin);
    o->sub = 32;
    for (int s = 0; s < 8; s++) {
        moe_q4_K_scale_min(b->scales, s, &o->sc[s], &o->m[s]);
        for (int l = 0; l < 32; l++) o->q[32 * s + l] = (int8_t)((b->qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 0xF);
    }
}

static void dec_q5_K(const void *p, wblk *o)
{
    const moe_block_q5_K *b = p;
    o->d = moe_f16_to_f32(b->d);
    o->dmin = moe_f16_to_f32(b->dmin);
    o->sub = 32;
    for (int s = 0; s < 8; s++) {
        moe_q4_K_scale_min(b->scales, s, &o->sc[s], &o->m[s]);
        for (int l = 0; l < 32; l++)
            o->q[32 * s + l] =
                (int8_t)(((b->qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 0xF) | (((b->qh[l] >> s) & 1) << 4));
    }
}

static void dec_q6_K(const void *p, wblk *o)
{
    const moe_block_q6_K *b = p;
    o->d = moe_f16_to_f32(b->d);
    o->dmin = 0.0f;
    o->sub = 16;
    for (int s = 0; s < 16; s++) {
        o->sc[s] = b->scales[s];
        o->m[s] = 0;
    }
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        for (int l = 0; l < 32; l++) {
            int8_t *q = o->q + 128 * h + l;
            q[0] = (int8_t)(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
            q[32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            q[64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            q[96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

static void dec_iq4_xs(const void *p, wblk *o)
{
    const moe_block_iq4_xs *b = p;
    o->d = moe_f16_to_f32(b->d);
    o->dmin = 0.0f;
    o->sub = 32;
    for (int s = 0; s < 8; s++) {
        o->sc[s] = moe_iq4_xs_scale(b, s);
        o->m[s] = 0;
        for (int j = 0; j < 16; j++) {
            o->q[32 * s + j] = moe_iq4_levels[b->qs[16 * s + j] & 0xF];
            o->q[32 * s + j + 16] = moe_iq4_levels[b->qs[16 * s + j] >> 4];
        }
    }
}

/* int8 dot of a legacy block (32 values) with a q8_0 or q8_1 block */
static float blk32_q8_0(const wblk *w, const moe_block_q8_0 *x)
{
    int32_t s = 0;
    for (int j = 0; j < MOE_QK; j++) s += (int32_t)w->q[j] * (int32_t)x->qs[j];
    return w->d * moe_f16_to_f32(x->d) * (float)s;
}

static float blk32_q8_1(const wblk *w, const moe_block_q8_1 *x)
{
    int32_t s = 0;
    for (int j = 0; j < MOE_QK; j++) s += (int32_t)w->q[j] * (int32_t)x->qs[j];
    return w->d * moe_f16_to_f32(x->d) * (float)s + w->dmin * moe_f16_to_f32(x->s);
}

static float blk256_q8_K(const wblk *w, const moe_block_q8_K *x)
{
    int32_t isum = 0, msum = 0;
    for (int s = 0; s < MOE_QK_K / w->sub; s++) {
        int32_t si = 0;
        for (int l = 0; l < w->sub; l++) si += (int32_t)w->q[s * w->sub + l] * (int32_t)x->qs[s * w->sub + l];
        isum += w->sc[s] * si;
        int32_t bs = 0;
        for (int g = s * w->sub / 16; g < (s + 1) * w->sub / 16; g++) bs += x->bsums[g];
        msum += w->m[s] * bs;
    }
    return w->d * x->d * (float)isum - w->dmin * x->d * (float)msum;
}

/* Per type: float dotn/dot/axpy through the dequantizer, int8 dotn through
 * the decoder and the dot type's block product.  dotn decodes a block once
 * for its nt tokens and then does, per token, exactly what nt = 1 does. */
#define REF_QTYPE(T, CODE, BLK, EPB, XBLK, BLKDOT)                                                       \
    static void ref_dotn_##T(const void *row, const float *x, int64_t xs, int nt, int64_t n, float *out) \
    {                                                                                                    \
        const BLK *b = row;                                                                              \
        float w[EPB], acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};                                                 \
        for (int64_t k = 0; k < n / (EPB); k++) {                                                        \
            moe_dequantize_row(CODE, &b[k], w, EPB);                                                     \
            for (int t = 0; t < nt; t++) {                                                               \
                const float *xb = x + t * xs + k * (EPB);                                                \
                float s = 0.0f;                                                                          \
                for (int j = 0; j < (EPB); j++) s += w[j] * xb[j];                                       \
                acc[t] += s;                                                                             \
            }                                                                                            \
        }                                                                                                \
        for (int t = 0; t < nt; t++) out[t] = acc[t];                                                    \
    }                                                                                                    \
    static float ref_dot_##T(const void *row, const float *x, int64_t n)                                 \
    {                                                                                                    \
        float r;                                                                                         \
        ref_dotn_##T(row, x, 0, 1, n, &r);                                                               \
        return r;                                                                                        \
    }                                                                                                    \
    static void ref_axpy_##T(const void *row, float a, float *y, int64_t n)                              \
    {                                                                                                    \
        const BLK *b = row;                                                                              \
        float w[EPB];                                                                                    \
        for (int64_t k = 0; k < n / (EPB); k++) {                                                        \
            moe_dequantize_row(CODE, &b[k], w, EPB);                                                     \
            for (int j = 0; j < (EPB); j++) y[k * (EPB) + j] += a * w[j];                                \
        }                                                                                                \
    }                                                                                                    \
    static void ref_dotn_int8_##T(const void *row, const void *x, int64_t xs, int nt, int64_t n, float *out) \
    {                                                                                                    \
        const BLK *b = row;                                                                              \
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};                                                         \
        wblk w;                                                                                          \
        for (int64_t k = 0; k < n / (EPB); k++) {                                                        \
            dec_##T(&b[k], &w);                                                                          \
            for (int t = 0; t < nt; t++) acc[t] += BLKDOT(&w, (const XBLK *)x + t * xs + k);             \
        }                                                                                                \
        for (int t = 0; t < nt; t++) out[t] = acc[t];                                                    \
    }                                                                                                    \
    const moe_kern_fns moe_kern_ref_##T = {ref_dot_##T, ref_dotn_##T, ref_axpy_##T, NULL,                \
                                           ref_dotn_int8_##T, NULL, NULL, NULL};

REF_QTYPE(q4_0, MOE_DT_Q4_0, moe_block_q4_0, MOE_QK, moe_block_q8_0, blk32_q8_0)
REF_QTYPE(q4_1, MOE_DT_Q4_1, moe_block_q4_1, MOE_QK, moe_block_q8_1, blk32_q8_1)
REF_QTYPE(q5_0, MOE_DT_Q5_0, moe_block_q5_0, MOE_QK, moe_block_q8_0, blk32_q8_0)
REF_QTYPE(q5_1, MOE_DT_Q5_1, moe_block_q5_1, MOE_QK, moe_block_q8_1, blk32_q8_1)
REF_QTYPE(iq4_nl, MOE_DT_IQ4_NL, moe_block_iq4_nl, MOE_QK, moe_block_q8_0, blk32_q8_0)
REF_QTYPE(q2_K, MOE_DT_Q2_K, moe_block_q2_K, MOE_QK_K, moe_block_q8_K, blk256_q8_K)
REF_QTYPE(q3_K, MOE_DT_Q3_K, moe_block_q3_K, MOE_QK_K, moe_block_q8_K, blk256_q8_K)
REF_QTYPE(q4_K, MOE_DT_Q4_K, moe_block_q4_K, MOE_QK_K, moe_block_q8_K, blk256_q8_K)
REF_QTYPE(q5_K, MOE_DT_Q5_K, moe_block_q5_K, MOE_QK_K, moe_block_q8_K, blk256_q8_K)
REF_QTYPE(q6_K, MOE_DT_Q6_K, moe_block_q6_K, MOE_QK_K, moe_block_q8_K, blk256_q8_K)
REF_QTYPE(iq4_xs, MOE_DT_IQ4_XS, moe_block_iq4_xs, MOE_QK_K, moe_block_q8_K, blk256_q8_K)

/* q8_1: q8_0's d and q per block of 32, and s = fp16(d·Σq) with the
 * float32 d = amax/127. */
void moe_kern_ref_quant_act_q8_1(const float *x, void *out, int64_t n)
{
    moe_block_q8_1 *y = out;
    for (int64_t b = 0; b < n / MOE_QK; b++) {
        const float *xb = x + b * MOE_QK;
        if (moe_f32_first_nonfinite(xb, MOE_QK) >= 0) {
            kern_nan_q8_1(&y[b]);
            continue;
        }
        float amax = 0.0f;
        for (int j = 0; j < MOE_QK; j++) amax = fabsf(xb[j]) > amax ? fabsf(xb[j]) : amax;
        const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < MOE_QK; j++) {
            y[b].qs[j] = (int8_t)nearbyintf(xb[j] * id);
            sum += y[b].qs[j];
        }
        y[b].d = moe_f32_to_f16(d);
        y[b].s = moe_f32_to_f16(d * (float)sum);
    }
}

/* q8_K: per 256, max = the value of largest |x| (the first of equals),
 * iscale = −127/max, q = min(127, round-half-even(x·iscale)), d = 1/iscale
 * (float32), bsums of each 16; all zero when max = 0. */
void moe_kern_ref_quant_act_q8_K(const float *x, void *out, int64_t n)
{
    moe_block_q8_K *y = out;
    for (int64_t b = 0; b < n / MOE_QK_K; b++) {
        const float *xb = x + b * MOE_QK_K;
        if (moe_f32_first_nonfinite(xb, MOE_QK_K) >= 0) {
            kern_nan_q8_K(&y[b]);
            continue;
        }
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < MOE_QK_K; j++)
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        memset(&y[b], 0, sizeof y[b]);
        if (amax == 0.0f) continue;
        const float iscale = -127.0f / max;
        for (int j = 0; j < MOE_QK_K; j++) {
            const int v = (int)nearbyintf(xb[j] * iscale);
            y[b].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int g = 0; g < MOE_QK_K / 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += y[b].qs[16 * g + l];
            y[b].bsums[g] = (int16_t)s;
        }
        y[b].d = 1.0f / iscale;
    }
}
