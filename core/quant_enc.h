/*
 * quant_enc.h — reference encoders of GGML's quantized weight types, the
 * ones llama-quantize uses without an importance matrix.
 *
 * Each encoder writes n / block_elems blocks of its type (core/qblock.h)
 * for n float32 values; n is a multiple of the type's block (32 or 256, the
 * caller checks).  The arithmetic is float32 in the order llama.cpp's
 * ggml-quants.c uses, without fused multiply-add (this file is compiled
 * with -ffp-contract=off), so a file re-encoded here is byte for byte the
 * file llama-quantize writes.  Blocks are independent: encoding a row in
 * pieces gives the same bytes as encoding it whole.
 *
 * Q8_0's encoder lives in dtype.c (moe_quantize_row_q8_0_ref).
 */
#ifndef MOE_QUANT_ENC_H
#define MOE_QUANT_ENC_H

#include <stdbool.h>
#include <stdint.h>

#include "qblock.h"

void moe_quantize_row_q4_0_ref(const float *x, moe_block_q4_0 *y, int64_t n);
void moe_quantize_row_q4_1_ref(const float *x, moe_block_q4_1 *y, int64_t n);
void moe_quantize_row_q5_0_ref(const float *x, moe_block_q5_0 *y, int64_t n);
void moe_quantize_row_q5_1_ref(const float *x, moe_block_q5_1 *y, int64_t n);
void moe_quantize_row_q2_K_ref(const float *x, moe_block_q2_K *y, int64_t n);
void moe_quantize_row_q3_K_ref(const float *x, moe_block_q3_K *y, int64_t n);
void moe_quantize_row_q4_K_ref(const float *x, moe_block_q4_K *y, int64_t n);
void moe_quantize_row_q5_K_ref(const float *x, moe_block_q5_K *y, int64_t n);
void moe_quantize_row_q6_K_ref(const float *x, moe_block_q6_K *y, int64_t n);
/* The non-linear types: llama-quantize's search (7 scale tries each side),
 * not the single-pass quantize_row_iq4_nl_ref of ggml. */
void moe_quantize_row_iq4_nl(const float *x, moe_block_iq4_nl *y, int64_t n);
void moe_quantize_row_iq4_xs(const float *x, moe_block_iq4_xs *y, int64_t n);
/* The index (0..15) of the IQ4 level nearest to x, ties to the upper one,
 * as both IQ4 encoders choose it (exposed for its test). */
int moe_quant_iq4_nearest(float x);
/* The K-quant searches behind the encoders, exposed for their test (n <=
 * 32): ggml's make_qkx2_quants (levels 0..nmax of x ≈ scale·L − min, L
 * and min in *the_min, nstep + 1 scale candidates from rmin in steps of
 * rdelta, the weighted absolute error when use_mad, else squared) and
 * make_qx_quants with rmse 1 (levels -nmax..nmax-1, L = level + nmax);
 * both return the scale. */
float moe_quant_fit_affine(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                           float rmin, float rdelta, int nstep, bool use_mad);
float moe_quant_fit_symmetric(int n, int nmax, const float *x, int8_t *L);

/* True if `code` (a moe_dtype) has an encoder here or in dtype.c. */
bool moe_quant_can_encode(uint32_t code);
/* Encodes n values as `code`: any type moe_quant_can_encode accepts, plus
 * f32, f16, bf16 and q8_0 through moe_row_from_f32. */
void moe_quant_row(uint32_t code, const float *x, void *y, int64_t n);

#endif
