#include "dtype.h"

#include "kern.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The types this engine reads (block sizes from qblock.h).  Q8_1 and Q8_K
 * are activation types only: a file holding them is refused. */
static const struct {
    uint32_t code;
    moe_dtype_info info;
} supported[] = {
    {MOE_DT_F32, {"f32", 1, 4}},
    {MOE_DT_F16, {"f16", 1, 2}},
    {MOE_DT_Q4_0, {"q4_0", MOE_QK, sizeof(moe_block_q4_0)}},
    {MOE_DT_Q4_1, {"q4_1", MOE_QK, sizeof(moe_block_q4_1)}},
    {MOE_DT_Q5_0, {"q5_0", MOE_QK, sizeof(moe_block_q5_0)}},
    {MOE_DT_Q5_1, {"q5_1", MOE_QK, sizeof(moe_block_q5_1)}},
    {MOE_DT_Q8_0, {"q8_0", MOE_QK, sizeof(moe_block_q8_0)}},
    {MOE_DT_Q2_K, {"q2_K", MOE_QK_K, sizeof(moe_block_q2_K)}},
    {MOE_DT_Q3_K, {"q3_K", MOE_QK_K, sizeof(moe_block_q3_K)}},
    {MOE_DT_Q4_K, {"q4_K", MOE_QK_K, sizeof(moe_block_q4_K)}},
    {MOE_DT_Q5_K, {"q5_K", MOE_QK_K, sizeof(moe_block_q5_K)}},
    {MOE_DT_Q6_K, {"q6_K", MOE_QK_K, sizeof(moe_block_q6_K)}},
    {MOE_DT_IQ4_NL, {"iq4_nl", MOE_QK, sizeof(moe_block_iq4_nl)}},
    {MOE_DT_IQ4_XS, {"iq4_xs", MOE_QK_K, sizeof(moe_block_iq4_xs)}},
    {MOE_DT_BF16, {"bf16", 1, 2}},
};

/* Names of the other codes GGML has used, for error messages only. */
static const char *const ggml_names[] = {
    [2] = "q4_0",     [3] = "q4_1",     [6] = "q5_0",     [7] = "q5_1",    [9] = "q8_1",
    [10] = "q2_K",    [11] = "q3_K",    [13] = "q5_K",    [15] = "q8_K",   [16] = "iq2_xxs",
    [17] = "iq2_xs",  [18] = "iq3_xxs", [19] = "iq1_s",   [20] = "iq4_nl", [21] = "iq3_s",
    [22] = "iq2_s",   [23] = "iq4_xs",  [24] = "i8",      [25] = "i16",    [26] = "i32",
    [27] = "i64",     [28] = "f64",     [29] = "iq1_m",   [34] = "tq1_0",  [35] = "tq2_0",
    [39] = "mxfp4",
};

const moe_dtype_info *moe_dtype_info_get(uint32_t code)
{
    for (size_t i = 0; i < sizeof supported / sizeof supported[0]; i++)
        if (supported[i].code == code) return &supported[i].info;
    return NULL;
}

const char *moe_dtype_name(uint32_t code, char *buf, size_t buf_size)
{
    const moe_dtype_info *info = moe_dtype_info_get(code);
    if (info) return info->name;
    if (code < sizeof ggml_names / sizeof ggml_names[0] && ggml_names[code]) return ggml_names[code];
    snprintf(buf, buf_size, "type %u", code);
    return buf;
}

const char *moe_dtype_supported_list(char *buf, size_t buf_size)
{
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof supported / sizeof supported[0] && n < buf_size; i++) {
        const int w = snprintf(buf + n, buf_size - n, "%s%s", i ? ", " : "", supported[i].info.name);
        n += w > 0 ? (size_t)w : 0;
    }
    return buf;
}

int moe_dtype_parse(const char *s, moe_dtype *out, moe_err *err)
{
    static const struct { const char *name; moe_dtype t; } names[] = {
        {"f32", MOE_DT_F32}, {"f16", MOE_DT_F16}, {"bf16", MOE_DT_BF16}, {"q8_0", MOE_DT_Q8_0},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strcmp(s, names[i].name)) {
            *out = names[i].t;
            return MOE_OK;
        }
    }
    return moe_err_set(err, "unknown weight type '%s' (expected f32, f16, bf16 or q8_0)", s);
}

bool moe_dtype_bytes(uint32_t code, uint64_t n_elems, uint64_t *bytes)
{
    const moe_dtype_info *info = moe_dtype_info_get(code);
    if (!info || n_elems % info->block_elems != 0) return false;
    return moe_mul_u64(n_elems / info->block_elems, info->block_bytes, bytes);
}

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t moe_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t abs = x & 0x7fffffffu;
    if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u); /* NaN */
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf (>= 65520) */
    if (abs < 0x38800000u) {
        /* Result is subnormal or zero: value = m · 2^-24 with m rounded to even. */
        if (abs < 0x33000000u) return sign; /* < 2^-25: rounds to zero */
        uint32_t e = abs >> 23;
        uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14..24: mant >> shift gives units of 2^-24 */
        uint32_t q = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    /* Normal: rebias exponent, round 13 dropped mantissa bits to even. */
    uint32_t r = abs + 0xfffu + ((abs >> 13) & 1u);
    r -= (uint32_t)(127 - 15) << 23;
    return (uint16_t)(sign | (r >> 13));
}

float moe_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0) {
        if (m == 0) return bits_f32(sign);
        /* subnormal: m · 2^-24, exact in float32 */
        float v = (float)m * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

uint16_t moe_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* roundf (halves away from zero) written so that it vectorises: for
 * |v| < 2^23, v - trunc(v) is exact, so this gives roundf's result bit for bit. */
static inline float round_away(float v)
{
    const float t = truncf(v);
    const float step = fabsf(v - t) >= 0.5f ? 1.0f : 0.0f;
    return t + copysignf(step, v);
}

void moe_quantize_row_q8_0_ref(const float *x, moe_block_q8_0 *y, int64_t n)
{
    for (int64_t b = 0; b < n / MOE_Q8_0_BLOCK; b++) {
        const float *xb = x + b * MOE_Q8_0_BLOCK;
        float amax = 0.0f;
        for (int j = 0; j < MOE_Q8_0_BLOCK; j++) {
            const float a = fabsf(xb[j]); /* like fmaxf, NaN is skipped; but inlined */
            amax = a > amax ? a : amax;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = moe_f32_to_f16(d);
        float q[MOE_Q8_0_BLOCK];
        for (int j = 0; j < MOE_Q8_0_BLOCK; j++) q[j] = round_away(xb[j] * id);
        for (int j = 0; j < MOE_Q8_0_BLOCK; j++) y[b].qs[j] = (int8_t)(int32_t)q[j];
    }
}

/* The fast encoder is an entry of the kernel table (each SIMD set has its
 * own, bit-identical to the reference), so this file stays baseline code. */
void moe_quantize_row_q8_0(const float *x, moe_block_q8_0 *y, int64_t n)
{
    moe_kern_for(moe_kern_default(), MOE_DT_Q8_0)->encode(x, y, n);
}

void moe_dequantize_row_q8_0(const moe_block_q8_0 *x, float *y, int64_t n)
{
    for (int64_t b = 0; b < n / MOE_Q8_0_BLOCK; b++) {
        const float d = moe_f16_to_f32(x[b].d);
        for (int j = 0; j < MOE_Q8_0_BLOCK; j++) y[b * MOE_Q8_0_BLOCK + j] = d * (float)x[b].qs[j];
    }
}

int64_t moe_f32_first_nonfinite(const float *x, int64_t n)
{
    enum { BLOCK = 256 };
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
        const int64_t m = n - i0 < BLOCK ? n - i0 : BLOCK;
        uint32_t bad = 0;
        for (int64_t i = 0; i < m; i++) {
            uint32_t u;
            memcpy(&u, x + i0 + i, 4);
            bad |= (uint32_t)((u & 0x7F800000u) == 0x7F800000u);
        }
        if (!bad) continue;
        for (int64_t i = 0; i < m; i++)
            if (!isfinite(x[i0 + i])) return i0 + i;
    }
    return -1;
}

void moe_row_to_f32(uint32_t code, const void *src, float *dst, int64_t n)
{
    switch (code) {
    case MOE_DT_F32: memcpy(dst, src, (size_t)n * 4); return;
    case MOE_DT_F16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = moe_f16_to_f32(s[i]);
        return;
    }
    case MOE_DT_BF16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = moe_bf16_to_f32(s[i]);
        return;
    }
    case MOE_DT_Q8_0: moe_dequantize_row_q8_0(src, dst, n); return;
    default: {
        const bool ok = moe_dequantize_row(code, src, dst, n); /* the other quantized types */
        MOE_ASSERT(ok && "moe_row_to_f32: type without a float conversion");
    }
    }
}

void moe_row_from_f32(uint32_t code, const float *src, void *dst, int64_t n)
{
    switch (code) {
    case MOE_DT_F32: memcpy(dst, src, (size_t)n * 4); return;
    case MOE_DT_F16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = moe_f32_to_f16(src[i]);
        return;
    }
    case MOE_DT_BF16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = moe_f32_to_bf16(src[i]);
        return;
    }
    case MOE_DT_Q8_0: moe_quantize_row_q8_0(src, dst, n); return;
    default: MOE_ASSERT(!"moe_row_from_f32: type without an encoder");
    }
}
