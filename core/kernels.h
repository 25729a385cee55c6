/*
 * kernels.h — the numeric kernels of the engine: dot products of a weight row
 * with a float activation, matrix products over views of mmapped weights,
 * and the small per-vector ops (RMSNorm, softmax, SwiGLU).
 *
 * Two implementations sit behind one table (moe_kern_ops): the scalar
 * reference, written for clarity and used by tests, and the AVX2/FMA/F16C
 * one (chosen when the compiler targets it).  Both keep activations in
 * float32; weights are read in their stored type (F32, F16, BF16, Q8_0)
 * straight from the file mapping.
 *
 * Invariance rules (see docs/engine.md):
 *   - every output value is one dot product computed by one thread, with a
 *     reduction order that depends only on the row length, never on how many
 *     tokens are in the batch or how rows are split among threads;
 *   - the matrix product is the dot product applied per (token, row), so a
 *     token's result is bitwise the same alone or in any batch.
 */
#ifndef MOE_KERNELS_H
#define MOE_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "dtype.h"

/* A read-only 2-D weight view: rows × cols values of `type`, row-major,
 * cols contiguous (ggml ne[0] = cols, ne[1] = rows), row_bytes apart. */
typedef struct moe_mat {
    uint32_t type;     /* moe_dtype */
    int64_t rows;
    int64_t cols;
    size_t row_bytes;
    const void *data;
} moe_mat;

/* Pointer to row r of m. */
static inline const void *moe_mat_row(const moe_mat *m, int64_t r)
{
    return (const char *)m->data + (size_t)r * m->row_bytes;
}

/* dot(row, x) over n values; row of the kernel's weight type. */
typedef float (*moe_kern_dot_fn)(const void *row, const float *x, int64_t n);
/* out[t] = dot(row, x + t·xs) for t < nt (1..4), each bitwise equal to the
 * single dot: the weights are decoded once for the nt tokens */
typedef void (*moe_kern_dotn_fn)(const void *row, const float *x, int64_t xs, int nt, int64_t n, float *out);
/* y[0..n) += a · row[0..n) */
typedef void (*moe_kern_axpy_fn)(const void *row, float a, float *y, int64_t n);

typedef struct moe_kern_ops {
    const char *name;            /* "reference" or "avx2" */
    moe_kern_dot_fn dot[4];      /* indexed by moe_kern_type_slot() */
    moe_kern_dotn_fn dotn[4];
    moe_kern_axpy_fn axpy[4];
} moe_kern_ops;

/* Slot of a weight type in the tables: F32 0, F16 1, BF16 2, Q8_0 3;
 * -1 for types without kernels. */
int moe_kern_type_slot(uint32_t type);
/* True when type has dot/axpy kernels (so a model can be bound). */
bool moe_kern_type_supported(uint32_t type);

/* The scalar reference table and the fastest table this build has. */
const moe_kern_ops *moe_kern_reference(void);
const moe_kern_ops *moe_kern_best(void);

static inline float moe_kern_dot(const moe_kern_ops *k, const moe_mat *m, int64_t r, const float *x)
{
    return k->dot[moe_kern_type_slot(m->type)](moe_mat_row(m, r), x, m->cols);
}

/*
 * y[t][r] = dot(m row r, x[t]) for tokens t in [0, n_tok), rows r in [r0, r1).
 * x: n_tok × cols (x_stride floats apart); y: n_tok × rows (y_stride apart).
 * Loops rows outside, tokens inside (in groups of up to 4 sharing one decode of the
 * row): the row stays in cache while every token uses it, and each value is
 * bitwise moe_kern_dot.
 */
void moe_kern_matmul_rows(const moe_kern_ops *k, const moe_mat *m, int64_t r0, int64_t r1,
                          const float *x, int64_t x_stride, int64_t n_tok,
                          float *y, int64_t y_stride);

/*
 * Optional int8-activation path for Q8_0 weights (as llama.cpp's CPU
 * backend): the activation row is quantized to Q8_0 blocks of 32 along the
 * reduction (d = fp16(amax/127), q = round-half-even(x·127/amax)), and each
 * block's integer dot is scaled by d_w·d_x.  Faster, less exact; off by
 * default.  n a multiple of 32.
 */
void moe_kern_quantize_act_q8(const float *x, moe_block_q8_0 *y, int64_t n);
/* Scalar reference and the build's best version of Σ_blocks d_w·d_x·Σ q_w·q_x. */
float moe_kern_dot_q8q8_ref(const moe_block_q8_0 *w, const moe_block_q8_0 *x, int64_t n);
float moe_kern_dot_q8q8(const moe_block_q8_0 *w, const moe_block_q8_0 *x, int64_t n);
/* As moe_kern_matmul_rows for a Q8_0 matrix and quantized activations
 * (xq: n_tok rows of cols/32 blocks, xq_stride blocks apart); reference
 * selects the scalar kernel.  Per (token, row) bitwise moe_kern_dot_q8q8. */
void moe_kern_matmul_rows_q8(bool reference, const moe_mat *m, int64_t r0, int64_t r1, const moe_block_q8_0 *xq,
                             int64_t xq_stride, int64_t n_tok, float *y, int64_t y_stride);

/* y[0..cols) = Σ_r x[r] · m row r (the transposed product), rows in order. */
void moe_kern_matvec_t(const moe_kern_ops *k, const moe_mat *m, const float *x, float *y);

/* Small float ops (one reference; they are a negligible share of time).
 * x, y may alias. */
void moe_kern_rmsnorm(const float *x, const float *w, float eps, float *y, int64_t n);
/* In-place softmax over n values; returns nothing, n ≥ 1. */
void moe_kern_softmax(float *x, int64_t n);
/* g[i] = silu(g[i]) · u[i] */
void moe_kern_swiglu(float *g, const float *u, int64_t n);

#endif
