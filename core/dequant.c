/*
 * dequant.c — scalar reference dequantization of GGML's quantized weight
 * types (the layouts of qblock.h), value for value what llama.cpp's
 * dequantize_row_* give.
 *
 * Every value is its formula evaluated in float32 in the order written
 * (d·sc first, then ·q, then − dmin·m): the products before the last
 * operation are exact in float32 (fp16 scales have 11 significant bits,
 * sub-block scales at most 8, quants at most 6), so each value is the
 * exact one rounded once.  tests/quant_blocks.c checks this bit for bit
 * against the fixtures' blocks.
 */
#include "dtype.h"

#include <string.h>

/* IQ4_NL / IQ4_XS: the 16 non-linear levels a nibble selects. */
const int8_t moe_iq4_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static uint32_t load_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4); /* files are little-endian, so is x86-64 */
    return v;
}

void moe_q4_K_scale_min(const uint8_t *s, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

void moe_q3_K_scales(const uint8_t *s, int sc[16])
{
    /* 16 6-bit scales: low 4 bits in bytes 0..7 (two per byte, scales
     * 0..7 in the low nibbles, 8..15 in the high ones), high 2 bits in
     * bytes 8..11 (four per byte). */
    for (int j = 0; j < 16; j++) {
        const int lo = (s[j % 8] >> (4 * (j / 8))) & 0xF;
        const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (lo | (hi << 4)) - 32;
    }
}

static void deq_q4_0(const moe_block_q4_0 *b, float *y)
{
    const float d = moe_f16_to_f32(b->d);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((b->qs[j] & 0xF) - 8) * d;
        y[j + 16] = (float)((b->qs[j] >> 4) - 8) * d;
    }
}

static void deq_q4_1(const moe_block_q4_1 *b, float *y)
{
    const float d = moe_f16_to_f32(b->d), m = moe_f16_to_f32(b->m);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(b->qs[j] & 0xF) * d + m;
        y[j + 16] = (float)(b->qs[j] >> 4) * d + m;
    }
}

static void deq_q5_0(const moe_block_q5_0 *b, float *y)
{
    const float d = moe_f16_to_f32(b->d);
    const uint32_t qh = load_u32(b->qh);
    for (int j = 0; j < 16; j++) {
        const int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = (float)(((b->qs[j] & 0xF) | h0) - 16) * d;
        y[j + 16] = (float)(((b->qs[j] >> 4) | h1) - 16) * d;
    }
}

static void deq_q5_1(const moe_block_q5_1 *b, float *y)
{
    const float d = moe_f16_to_f32(b->d), m = moe_f16_to_f32(b->m);
    const uint32_t qh = load_u32(b->qh);
    for (int j = 0; j < 16; j++) {
        const int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = (float)((b->qs[j] & 0xF) | h0) * d + m;
        y[j + 16] = (float)((b->qs[j] >> 4) | h1) * d + m;
    }
}

/* Q2_K: value i (0..255) sits in qs[32·(i/128) + i%32] at bit 2·((i%128)/32);
 * sub-block i/16. */
static void deq_q2_K(const moe_block_q2_K *b, float *y)
{
    const float d = moe_f16_to_f32(b->d), dmin = moe_f16_to_f32(b->dmin);
    for (int i = 0; i < MOE_QK_K; i++) {
        const int q = (b->qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
        const uint8_t s = b->scales[i / 16];
        const float dl = d * (float)(s & 0xF), ml = dmin * (float)(s >> 4);
        y[i] = dl * (float)q - ml;
    }
}

/* Q3_K: the low 2 bits as Q2_K, the third bit at hmask[i%32] bit i/32
 * (set: q, clear: q − 4). */
static void deq_q3_K(const moe_block_q3_K *b, float *y)
{
    const float d = moe_f16_to_f32(b->d);
    int sc[16];
    moe_q3_K_scales(b->scales, sc);
    for (int i = 0; i < MOE_QK_K; i++) {
        const int lo = (b->qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
        const int q = lo - ((b->hmask[i % 32] >> (i / 32)) & 1 ? 0 : 4);
        const float dl = d * (float)sc[i / 16];
        y[i] = dl * (float)q;
    }
}

/* Q4_K: value i in qs[32·(i/64) + i%32], low nibble for (i%64) < 32;
 * sub-block i/32. */
static void deq_q4_K(const moe_block_q4_K *b, float *y)
{
    const float d = moe_f16_to_f32(b->d), dmin = moe_f16_to_f32(b->dmin);
    for (int s = 0; s < 8; s++) {
        int sc, m;
        moe_q4_K_scale_min(b->scales, s, &sc, &m);
        const float dl = d * (float)sc, ml = dmin * (float)m;
        for (int l = 0; l < 32; l++) {
            const int q = (b->qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 0xF;
            y[32 * s + l] = dl * (float)q - ml;
        }
    }
}

/* Q5_K: Q4_K's nibbles plus bit s of qh[l] as the fifth bit. */
static void deq_q5_K(const moe_block_q5_K *b, float *y)
{
    const float d = moe_f16_to_f32(b->d), dmin = moe_f16_to_f32(b->dmin);
    for (int s = 0; s < 8; s++) {
        int sc, m;
        moe_q4_K_scale_min(b->scales, s, &sc, &m);
        const float dl = d * (float)sc, ml = dmin * (float)m;
        for (int l = 0; l < 32; l++) {
            const int q = ((b->qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 0xF) | (((b->qh[l] >> s) & 1) << 4);
            y[32 * s + l] = dl * (float)q - ml;
        }
    }
}

/* Q6_K: per half h of 128 values and l < 32, four values l, l+32, l+64,
 * l+96 from ql[64h + l] (low/high nibble), ql[64h + l + 32] and the 2-bit
 * pairs of qh[32h + l]; sub-block (value index)/16. */
static void deq_q6_K(const moe_block_q6_K *b, float *y)
{
    const float d = moe_f16_to_f32(b->d);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        for (int l = 0; l < 32; l++) {
            const int q[4] = {
                ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32,
                ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32,
                ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32,
                ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32,
            };
            for (int k = 0; k < 4; k++) {
                const int i = 128 * h + 32 * k + l;
                y[i] = d * (float)b->scales[i / 16] * (float)q[k];
            }
        }
    }
}

static void deq_iq4_nl(const moe_block_iq4_nl *b, float *y)
{
    const float d = moe_f16_to_f32(b->d);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)moe_iq4_levels[b->qs[j] & 0xF];
        y[j + 16] = d * (float)moe_iq4_levels[b->qs[j] >> 4];
    }
}

int moe_iq4_xs_scale(const moe_block_iq4_xs *b, int s)
{
    return (((b->scales_l[s / 2] >> (4 * (s % 2))) & 0xF) | (((b->scales_h >> (2 * s)) & 3) << 4)) - 32;
}

static void deq_iq4_xs(const moe_block_iq4_xs *b, float *y)
{
    const float d = moe_f16_to_f32(b->d);
    for (int s = 0; s < 8; s++) {
        const float dl = d * (float)moe_iq4_xs_scale(b, s);
        const uint8_t *qs = b->qs + 16 * s;
        for (int j = 0; j < 16; j++) {
            y[32 * s + j] = dl * (float)moe_iq4_levels[qs[j] & 0xF];
            y[32 * s + j + 16] = dl * (float)moe_iq4_levels[qs[j] >> 4];
        }
    }
}

#define DEQ_ROWS(T, blk, epb)                                                         \
    case MOE_DT_##T: {                                                                \
        const blk *b = src;                                                           \
        for (int64_t i = 0; i < n / (epb); i++) deq_##T(&b[i], dst + i * (epb));     \
        return true;                                                                  \
    }
#define deq_Q4_0 deq_q4_0
#define deq_Q4_1 deq_q4_1
#define deq_Q5_0 deq_q5_0
#define deq_Q5_1 deq_q5_1
#define deq_Q2_K deq_q2_K
#define deq_Q3_K deq_q3_K
#define deq_Q4_K deq_q4_K
#define deq_Q5_K deq_q5_K
#define deq_Q6_K deq_q6_K
#define deq_IQ4_NL deq_iq4_nl
#define deq_IQ4_XS deq_iq4_xs

bool moe_dequantize_row(uint32_t code, const void *src, float *dst, int64_t n)
{
    switch (code) {
        DEQ_ROWS(Q4_0, moe_block_q4_0, MOE_QK)
        DEQ_ROWS(Q4_1, moe_block_q4_1, MOE_QK)
        DEQ_ROWS(Q5_0, moe_block_q5_0, MOE_QK)
        DEQ_ROWS(Q5_1, moe_block_q5_1, MOE_QK)
        DEQ_ROWS(Q2_K, moe_block_q2_K, MOE_QK_K)
        DEQ_ROWS(Q3_K, moe_block_q3_K, MOE_QK_K)
        DEQ_ROWS(Q4_K, moe_block_q4_K, MOE_QK_K)
        DEQ_ROWS(Q5_K, moe_block_q5_K, MOE_QK_K)
        DEQ_ROWS(Q6_K, moe_block_q6_K, MOE_QK_K)
        DEQ_ROWS(IQ4_NL, moe_block_iq4_nl, MOE_QK)
        DEQ_ROWS(IQ4_XS, moe_block_iq4_xs, MOE_QK_K)
    default: return false;
    }
}
