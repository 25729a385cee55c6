/*
 * qblock.h — the block layouts of GGML's quantized types, field for field
 * as they sit in a GGUF file (llama.cpp's ggml-common.h documents them):
 * fp16 fields are IEEE half bits, integers little-endian, no padding.
 *
 * Legacy types hold 32 values a block, K-quants and IQ4_XS 256 (a "super-
 * block" of 8 or 16 sub-blocks with their own scales).  Q8_1 and Q8_K are
 * never stored in files: they are the activation types the int8 path
 * quantizes to before a dot product with Q4_1/Q5_1 (Q8_1) or K-quant and
 * IQ4_XS (Q8_K) weights.
 *
 * Sizes are asserted; dtype.c's table takes its block sizes from here.
 */
#ifndef MOE_QBLOCK_H
#define MOE_QBLOCK_H

#include <stdint.h>

#define MOE_QK 32      /* values per legacy block */
#define MOE_QK_K 256   /* values per K-quant super-block */
#define MOE_K_SCALE_SIZE 12

/* Q4_0: x = d·(q − 8), q a nibble; value j in the low nibble of qs[j],
 * value j+16 in the high nibble. */
typedef struct moe_block_q4_0 {
    uint16_t d;
    uint8_t qs[MOE_QK / 2];
} moe_block_q4_0;

/* Q4_1: x = d·q + m. */
typedef struct moe_block_q4_1 {
    uint16_t d, m;
    uint8_t qs[MOE_QK / 2];
} moe_block_q4_1;

/* Q5_0: x = d·(q − 16), q = nibble | (bit j of qh) << 4. */
typedef struct moe_block_q5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[MOE_QK / 2];
} moe_block_q5_0;

/* Q5_1: x = d·q + m. */
typedef struct moe_block_q5_1 {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[MOE_QK / 2];
} moe_block_q5_1;

/* Q8_1 (activations only): Q8_0 plus s = fp16(d·Σq) with d in float32. */
typedef struct moe_block_q8_1 {
    uint16_t d, s;
    int8_t qs[MOE_QK];
} moe_block_q8_1;

/* Q2_K: 16 sub-blocks of 16; scales[i] = scale (low nibble) | min (high). */
typedef struct moe_block_q2_K {
    uint8_t scales[MOE_QK_K / 16];
    uint8_t qs[MOE_QK_K / 4];
    uint16_t d, dmin;
} moe_block_q2_K;

/* Q3_K: 16 sub-blocks of 16, 6-bit scales packed in 12 bytes, the third
 * bit of each value in hmask. */
typedef struct moe_block_q3_K {
    uint8_t hmask[MOE_QK_K / 8];
    uint8_t qs[MOE_QK_K / 4];
    uint8_t scales[MOE_K_SCALE_SIZE];
    uint16_t d;
} moe_block_q3_K;

/* Q4_K: 8 sub-blocks of 32, 6-bit scales and mins packed in 12 bytes. */
typedef struct moe_block_q4_K {
    uint16_t d, dmin;
    uint8_t scales[MOE_K_SCALE_SIZE];
    uint8_t qs[MOE_QK_K / 2];
} moe_block_q4_K;

/* Q5_K: Q4_K plus the fifth bit of each value in qh. */
typedef struct moe_block_q5_K {
    uint16_t d, dmin;
    uint8_t scales[MOE_K_SCALE_SIZE];
    uint8_t qh[MOE_QK_K / 8];
    uint8_t qs[MOE_QK_K / 2];
} moe_block_q5_K;

/* Q6_K: 16 sub-blocks of 16 with int8 scales; x = d·scale·(q − 32). */
typedef struct moe_block_q6_K {
    uint8_t ql[MOE_QK_K / 2];
    uint8_t qh[MOE_QK_K / 4];
    int8_t scales[MOE_QK_K / 16];
    uint16_t d;
} moe_block_q6_K;

/* Q8_K (activations only): float32 scale, 256 int8 values, and the sums
 * of each group of 16 values (used for the K-quants' min terms). */
typedef struct moe_block_q8_K {
    float d;
    int8_t qs[MOE_QK_K];
    int16_t bsums[MOE_QK_K / 16];
} moe_block_q8_K;

/* IQ4_NL: x = d·kvalues[nibble], the non-linear 16-entry table. */
typedef struct moe_block_iq4_nl {
    uint16_t d;
    uint8_t qs[MOE_QK / 2];
} moe_block_iq4_nl;

/* IQ4_XS: 8 sub-blocks of 32 with 6-bit scales (low 4 bits in scales_l,
 * high 2 in scales_h), values through the IQ4_NL table. */
typedef struct moe_block_iq4_xs {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[MOE_QK_K / 64];
    uint8_t qs[MOE_QK_K / 2];
} moe_block_iq4_xs;

_Static_assert(sizeof(moe_block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(moe_block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(moe_block_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(moe_block_q5_1) == 24, "q5_1 block");
_Static_assert(sizeof(moe_block_q8_1) == 36, "q8_1 block");
_Static_assert(sizeof(moe_block_q2_K) == 84, "q2_K block");
_Static_assert(sizeof(moe_block_q3_K) == 110, "q3_K block");
_Static_assert(sizeof(moe_block_q4_K) == 144, "q4_K block");
_Static_assert(sizeof(moe_block_q5_K) == 176, "q5_K block");
_Static_assert(sizeof(moe_block_q6_K) == 210, "q6_K block");
_Static_assert(sizeof(moe_block_q8_K) == 292, "q8_K block");
_Static_assert(sizeof(moe_block_iq4_nl) == 18, "iq4_nl block");
_Static_assert(sizeof(moe_block_iq4_xs) == 136, "iq4_xs block");

#endif
