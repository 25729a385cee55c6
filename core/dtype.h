/*
 * dtype.h — tensor element types as GGUF numbers them, their block layout,
 * and the scalar reference conversions (F16, BF16, Q8_0; the other
 * quantized types' dequantization in dequant.c).
 *
 * A quantized type stores `block_elems` values in `block_bytes` bytes; a row
 * of a tensor is a whole number of blocks.  Type codes come from files, so
 * moe_dtype_info() range-checks before it looks anything up.
 */
#ifndef MOE_DTYPE_H
#define MOE_DTYPE_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"
#include "qblock.h"

typedef enum {
    MOE_DT_F32 = 0,
    MOE_DT_F16 = 1,
    MOE_DT_Q4_0 = 2,
    MOE_DT_Q4_1 = 3,
    MOE_DT_Q5_0 = 6,
    MOE_DT_Q5_1 = 7,
    MOE_DT_Q8_0 = 8,
    MOE_DT_Q8_1 = 9,    /* activations only */
    MOE_DT_Q2_K = 10,
    MOE_DT_Q3_K = 11,
    MOE_DT_Q4_K = 12,
    MOE_DT_Q5_K = 13,
    MOE_DT_Q6_K = 14,
    MOE_DT_Q8_K = 15,   /* activations only */
    MOE_DT_IQ4_NL = 20,
    MOE_DT_IQ4_XS = 23,
    MOE_DT_BF16 = 30,
} moe_dtype;

typedef struct moe_dtype_info {
    const char *name;     /* "f32", "q8_0", ... as llama.cpp spells them */
    uint32_t block_elems; /* values per block (1 for plain floats) */
    uint32_t block_bytes; /* bytes per block */
} moe_dtype_info;

/* Info for a supported type, or NULL (unknown or unsupported code). */
const moe_dtype_info *moe_dtype_info_get(uint32_t code);
/* A name for any code, known to GGML or not ("q4_0", "type 77"); never NULL.
 * buf (>= 24 bytes) is used only for unknown codes. */
const char *moe_dtype_name(uint32_t code, char *buf, size_t buf_size);
/* "f32, f16, q4_0, ...": the names of the supported types, into buf (for
 * the refusal of a file holding another type). */
const char *moe_dtype_supported_list(char *buf, size_t buf_size);
/* Parses "f32", "f16", "bf16", "q8_0" (the writable types). */
int moe_dtype_parse(const char *s, moe_dtype *out, moe_err *err);

/* Bytes of n_elems values of a supported type; false if n_elems is not a
 * multiple of the block or the size overflows. */
bool moe_dtype_bytes(uint32_t code, uint64_t n_elems, uint64_t *bytes);

/* Half precision, IEEE binary16, round-to-nearest-even; NaN stays NaN. */
uint16_t moe_f32_to_f16(float f);
float moe_f16_to_f32(uint16_t h);
/* bfloat16, round-to-nearest-even; NaN stays (quiet) NaN. */
uint16_t moe_f32_to_bf16(float f);
static inline float moe_bf16_to_f32(uint16_t h)
{
    union { uint32_t u; float f; } v = {.u = (uint32_t)h << 16};
    return v.f;
}

/* Q8_0: blocks of 32 int8 values sharing one fp16 scale. */
#define MOE_Q8_0_BLOCK 32
typedef struct moe_block_q8_0 {
    uint16_t d;      /* fp16 scale */
    int8_t qs[MOE_Q8_0_BLOCK];
} moe_block_q8_0;
_Static_assert(sizeof(moe_block_q8_0) == 34, "q8_0 block is 34 bytes");

/* Encoders: n a multiple of 32 (the caller checks).  _ref is the scalar
 * reference; the other is the fast version of the kernel set in use
 * (core/kern), bit-identical to it. */
void moe_quantize_row_q8_0_ref(const float *x, moe_block_q8_0 *y, int64_t n);
void moe_quantize_row_q8_0(const float *x, moe_block_q8_0 *y, int64_t n);
void moe_dequantize_row_q8_0(const moe_block_q8_0 *x, float *y, int64_t n);

/* Converts n values (whole blocks) of any supported type to float32. */
void moe_row_to_f32(uint32_t code, const void *src, float *dst, int64_t n);

/* The index of the first NaN or infinity in x[0..n), or -1 when every
 * value is finite (a bit test on the exponent, so it vectorizes). */
int64_t moe_f32_first_nonfinite(const float *x, int64_t n);

/* ---- the other quantized weight types (dequant.c) ---- */

/* Dequantizes n values (whole blocks) of Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K,
 * IQ4_NL or IQ4_XS: llama.cpp's values bit for bit.  False for other codes. */
bool moe_dequantize_row(uint32_t code, const void *src, float *dst, int64_t n);
/* The IQ4 levels K[16] a nibble selects. */
extern const int8_t moe_iq4_levels[16];
/* Sub-block j (0..7) scale and min of a Q4_K/Q5_K block's 12 scale bytes. */
void moe_q4_K_scale_min(const uint8_t *scales, int j, int *sc, int *m);
/* The 16 signed scales (6-bit value − 32) of a Q3_K block. */
void moe_q3_K_scales(const uint8_t *scales, int sc[16]);
/* Signed scale (6-bit value − 32) of sub-block s (0..7) of an IQ4_XS block. */
int moe_iq4_xs_scale(const moe_block_iq4_xs *b, int s);
/* Encodes n float32 values as `code` (f32, f16, bf16, q8_0). */
void moe_row_from_f32(uint32_t code, const float *src, void *dst, int64_t n);

#endif
