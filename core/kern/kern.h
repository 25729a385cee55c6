/*
 * kern.h — the numeric kernels of the engine: dot products of a weight row
 * with a float activation, matrix products over views of mmapped weights,
 * and the small per-vector ops (RMSNorm, softmax, SwiGLU).
 *
 * Kernels sit in a table keyed by (operation, weight type): for each
 * supported weight type one row holds the scalar reference beside every
 * optimised version (kern_select.c), so a new weight type is one new row.
 * The versions come in sets, each its own translation unit compiled with
 * its own target flags:
 *   reference  scalar C, written for clarity, used by tests (always there)
 *   avx2       AVX2 + FMA + F16C
 *   avx512     AVX-512 F/VL/BW/DQ + VNNI (32 vector registers; VNNI for
 *              the int8 path), bitwise identical to avx2
 * The rest of the program is compiled for baseline x86-64, so one binary
 * runs on every node; the set is chosen at start from cpuid (and the OS's
 * saved register state), capped by the environment variable
 * MOE_KERNELS=reference|avx2|avx512.  Ranks of one MPI job agree on one set
 * (the best one all of them can run), see moe_kern_cpu_mask().
 *
 * Activations are float32 by default (optionally int8, see below); weights
 * are read in their stored type (F32, F16, BF16, Q8_0, the legacy quants
 * Q4_0..Q5_1, the K-quants Q2_K..Q6_K, IQ4_NL, IQ4_XS) straight from the
 * file mapping.
 *
 * Invariance rules (see docs/engine.md):
 *   - every output value is one dot product computed by one thread, with a
 *     reduction order that depends only on the row length, never on how many
 *     tokens are in the batch or how rows are split among threads;
 *   - the matrix product is the dot product applied per (token, row), so a
 *     token's result is bitwise the same alone or in any batch.
 */
#ifndef MOE_KERN_H
#define MOE_KERN_H

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
    /* The int8 path's repacked copy of the whole matrix this view is part
     * of (moe_kern_repack), or NULL; rp_row is the view's row 0 in it.
     * Only the int8 products read it; data stays valid for the rest. */
    const void *rp;
    int64_t rp_row;
} moe_mat;

/* Pointer to row r of m. */
static inline const void *moe_mat_row(const moe_mat *m, int64_t r)
{
    return (const char *)m->data + (size_t)r * m->row_bytes;
}

/* dot(row, x) over n values; row of the entry's weight type. */
typedef float (*moe_kern_dot_fn)(const void *row, const float *x, int64_t n);
/* out[t] = dot(row, x + t·xs) for t < nt (1..4), each bitwise equal to the
 * single dot: the weights are decoded once for the nt tokens */
typedef void (*moe_kern_dotn_fn)(const void *row, const float *x, int64_t xs, int nt, int64_t n, float *out);
/* y[0..n) += a · row[0..n) */
typedef void (*moe_kern_axpy_fn)(const void *row, float a, float *y, int64_t n);
/* y[t][r] for rows [r0, r1) and n_tok >= 4 tokens, each value bitwise the
 * entry's dotn (a cache-tiled product; optional) */
typedef void (*moe_kern_matmul_fn)(const moe_mat *m, int64_t r0, int64_t r1, const float *x, int64_t xs,
                                   int64_t n_tok, float *y, int64_t ys);
/* Int8 activations: out[t] = the integer dot of weight row w (n values of
 * the entry's weight type) with the quantized activation row xq + t·xs,
 * t < nt (1..4); xq holds n values in the weight type's dot type (see
 * "int8-activation path" below), xs counts blocks of that dot type.  Each
 * out[t] is bitwise the nt = 1 result. */
typedef void (*moe_kern_dotn_int8_fn)(const void *w, const void *xq, int64_t xs, int nt, int64_t n, float *out);
/* As moe_kern_matmul_fn on the int8 path: y[t][r] for rows [r0, r1) and
 * n_tok >= 1 tokens of quantized activations (xq_stride blocks of the dot
 * type apart), each value bitwise the entry's dotn_int8 (optional). */
typedef void (*moe_kern_matmul_int8_fn)(const moe_mat *m, int64_t r0, int64_t r1, const void *xq,
                                        int64_t xq_stride, int64_t n_tok, float *y, int64_t ys);
/* As moe_kern_matmul_int8_fn, on m->rp (the repacked layout; rows
 * [r0, r1) of the view are rows [rp_row + r0, rp_row + r1) of it). */
typedef moe_kern_matmul_int8_fn moe_kern_matmul_int8_rp_fn;
/* Row encoder from float32 (bitwise the dtype.h reference encoder). */
typedef void (*moe_kern_encode_fn)(const float *x, void *y, int64_t n);
/* Activation quantizer of one dot type: n floats (a multiple of the dot
 * type's block) to n/block blocks at y. */
typedef void (*moe_kern_quant_act_fn)(const float *x, void *y, int64_t n);

/* The operations of one weight type in one set.  dot, dotn and axpy are
 * always there; the others may be NULL (matmul: the generic tiling over
 * dotn; dotn_int8: the type has no int8 path (F32, F16, BF16); encode:
 * no encoder in this set; matmul_int8: the generic tiling over
 * dotn_int8).  Fields are appended, never reordered. */
typedef struct moe_kern_fns {
    moe_kern_dot_fn dot;
    moe_kern_dotn_fn dotn;
    moe_kern_axpy_fn axpy;
    moe_kern_matmul_fn matmul;
    moe_kern_dotn_int8_fn dotn_int8;
    moe_kern_encode_fn encode;
    moe_kern_matmul_int8_fn matmul_int8;
    moe_kern_matmul_int8_rp_fn matmul_int8_rp; /* NULL: this set has no kernel of its own for the
                                                * repacked layout (moe_kern_repack_bytes says which
                                                * types have one; the reference's scalar product runs) */
} moe_kern_fns;

/* A kernel set (one column of the table). */
typedef struct moe_kern_set moe_kern_set;

/* "reference", "avx2", "avx512". */
const char *moe_kern_name(const moe_kern_set *k);
/* The operations of weight type `type` in set k, or NULL (no kernels).
 * Never NULL for a supported type in a set the build has: a set without
 * its own kernels for a type lists the reference ones (kern_select.c says
 * which, and moe_kern_native() tells them apart). */
const moe_kern_fns *moe_kern_for(const moe_kern_set *k, uint32_t type);
/* True when set k has its own kernels for type (false where it falls back
 * to the reference row). */
bool moe_kern_native(const moe_kern_set *k, uint32_t type);
/* True when type has kernels (so a model can be bound). */
bool moe_kern_type_supported(uint32_t type);
/* "f32, f16, bf16, q8_0, q4_0, ...": the weight types with kernels, into
 * buf (for the refusal of a tensor of another type). */
const char *moe_kern_supported_list(char *buf, size_t size);

/* ---- choosing a set ---- */

/* CPU features the sets need (bits of a feature mask). */
enum {
    MOE_CPU_AVX2 = 1u << 0,     /* with the OS saving ymm state */
    MOE_CPU_FMA = 1u << 1,
    MOE_CPU_F16C = 1u << 2,
    MOE_CPU_AVX512F = 1u << 3,  /* AVX-512 bits: with the OS saving zmm/opmask state */
    MOE_CPU_AVX512VL = 1u << 4,
    MOE_CPU_AVX512BW = 1u << 5,
    MOE_CPU_AVX512DQ = 1u << 6,
    MOE_CPU_AVX512VNNI = 1u << 7,
};

/* Every set, weakest first (reference, avx2, avx512; a set a build lacks is
 * still listed: it just needs features no CPU mask grants). */
int moe_kern_n_sets(void);
const moe_kern_set *moe_kern_set_at(int i);
/* The set named s, or NULL. */
const moe_kern_set *moe_kern_by_name(const char *s);
/* The scalar reference set. */
const moe_kern_set *moe_kern_reference(void);

/* Features of this CPU (cpuid + xgetbv). */
uint64_t moe_kern_cpu_features(void);
/*
 * The feature mask this process offers: `cpu` reduced to what the capping
 * set (cap = MOE_KERNELS' value, NULL or "" for none) needs.  Errors: an
 * unknown name, or a set this CPU cannot run (the message names the sets
 * it can).  Ranks AND their masks and take moe_kern_best_in() of the result.
 */
int moe_kern_cpu_mask(uint64_t cpu, const char *cap, uint64_t *mask, moe_err *err);
/* The best set whose needs are all in mask (reference at worst). */
const moe_kern_set *moe_kern_best_in(uint64_t mask);
/* Best set for this CPU under MOE_KERNELS (an error if it is bad). */
int moe_kern_choose(const moe_kern_set **out, moe_err *err);
/* As moe_kern_choose, but a bad MOE_KERNELS means the CPU's best set (for
 * code with no error path whose result is the same in every set, such as
 * the Q8_0 encoder).  Cached after the first call. */
const moe_kern_set *moe_kern_default(void);
/* How far ahead the products prefetch each weight line: into L1, and
 * into L2 (the one-token products where moe_kern_l2_prefetch says so, the
 * avx512 tiles always).  bench/lib/readbw.c's prefetching reads take the
 * same distances. */
#define MOE_KERN_PF_L1_BYTES 8192
#define MOE_KERN_PF_L2_BYTES 24576

/* Whether the one-token products, besides prefetching each weight line
 * 8 KiB ahead into L1, prefetch it 24 KiB ahead into L2 too (the avx512
 * tiles always do).  Chosen at start from the CPU's vendor: on Intel yes,
 * elsewhere no (docs/engine.md: on an Intel Xeon a read so prefetched ran
 * 10% faster and the decode 6%; on an AMD EPYC the one-token Q8_0 dot lost
 * 7% by it); MOE_L2_PREFETCH=1 or 0 overrides (moe_kern_choose refuses
 * other values).  A prefetch never changes a result. */
bool moe_kern_l2_prefetch(void);
/* Whether set k's one-token products prefetch into L2 too: the policy
 * above, for any set but the reference one (which prefetches nothing) */
bool moe_kern_set_l2_prefetch(const moe_kern_set *k);
/* What set k's products prefetch, as the tools print it: "none" (the
 * reference set), "l1" or "l1+l2" (moe_kern_set_l2_prefetch) */
const char *moe_kern_prefetch_name(const moe_kern_set *k);
/* MOE_OK, or MOE_ERR with the message when MOE_L2_PREFETCH is set to
 * something else than 1 or 0 (moe_kern_choose checks it too). */
int moe_kern_check_env(moe_err *err);
/* "reference, avx2, avx512": the sets a feature mask can run, into buf. */
const char *moe_kern_list(uint64_t mask, char *buf, size_t size);

/* ---- products built on the table ---- */

static inline float moe_kern_dot(const moe_kern_set *k, const moe_mat *m, int64_t r, const float *x)
{
    return moe_kern_for(k, m->type)->dot(moe_mat_row(m, r), x, m->cols);
}

/*
 * y[t][r] = dot(m row r, x[t]) for tokens t in [0, n_tok), rows r in [r0, r1).
 * x: n_tok × cols (x_stride floats apart); y: n_tok × rows (y_stride apart).
 * Loops rows outside, tokens inside (in groups of up to 4 sharing one decode of the
 * row): the row stays in cache while every token uses it, and each value is
 * bitwise moe_kern_dot.
 */
void moe_kern_matmul_rows(const moe_kern_set *k, const moe_mat *m, int64_t r0, int64_t r1,
                          const float *x, int64_t x_stride, int64_t n_tok,
                          float *y, int64_t y_stride);

/*
 * Optional int8-activation path (as llama.cpp's CPU backend; off by
 * default).  Before a product with a quantized weight the activation row
 * is converted to the weight type's "dot type", in blocks along the
 * reduction, and each block (or sub-block) is summed in integers:
 *
 *   weight type                      dot type  activation block
 *   q4_0, q5_0, q8_0, iq4_nl         q8_0      32: fp16 d, 32 int8
 *   q4_1, q5_1                       q8_1      32: fp16 d, fp16 s, 32 int8
 *   q2_K..q6_K, iq4_xs               q8_K      256: f32 d, 256 int8, 16 int16 sums
 *   f32, f16, bf16                   none (MOE_DT_F32: float activations)
 *
 * Quantizers (bit for bit the rules of the fixtures' README):
 *   q8_0: per 32, amax = max |x|, d = fp16(amax/127), id = 127/amax (0 if
 *         amax = 0), q = round-half-even(x·id);
 *   q8_1: q8_0's d and q, and s = fp16((amax/127)·Σq) (float32 product);
 *   q8_K: per 256, max = the x of largest |x| (the first of equals),
 *         iscale = −127/max, q = min(127, round-half-even(x·iscale)),
 *         d = 1/iscale (float32), bsums[g] = Σ of q over 16-groups; all
 *         zero when max = 0.
 * The integer dot of a block is exact (int32); the float scaling order of
 * each weight type is in kern_ref.c, docs/engine.md lists it.  One
 * activation row may feed matrices of different dot types; a caller
 * quantizes it once per dot type it needs.
 */
/* The dot type of weight type `type`: MOE_DT_Q8_0, MOE_DT_Q8_1, MOE_DT_Q8_K,
 * or MOE_DT_F32 for a type without an int8 path (f32, f16, bf16, unknown). */
uint32_t moe_kern_dot_type(uint32_t type);
/* Values per block of a dot type (32 or 256; 0 for anything else). */
int64_t moe_kern_act_block(uint32_t dot_type);
/* Bytes of one quantized row of n values (n a multiple of the block). */
size_t moe_kern_act_row_bytes(uint32_t dot_type, int64_t n);
/* Bytes that hold a quantized row of up to n values in ANY dot type
 * (scratch sized once for whatever matrices a vector meets). */
size_t moe_kern_act_bytes_max(int64_t n);
/* x (n values) to blocks of dot_type at y, in set k (every set bitwise
 * the reference). */
void moe_kern_quantize_act(const moe_kern_set *k, uint32_t dot_type, const float *x, void *y, int64_t n);
/* The int8 dot of one row w of weight type `type` with quantized xq. */
float moe_kern_dot_int8(const moe_kern_set *k, uint32_t type, const void *w, const void *xq, int64_t n);
/* As moe_kern_matmul_rows for quantized activations: xq holds n_tok rows
 * of cols values in m's dot type, xq_stride blocks of it apart.  Per
 * (token, row) bitwise moe_kern_dot_int8. */
void moe_kern_matmul_rows_int8(const moe_kern_set *k, const moe_mat *m, int64_t r0, int64_t r1, const void *xq,
                               int64_t xq_stride, int64_t n_tok, float *y, int64_t y_stride);

/* The Q8_0 case under its old names (q8_0 activations, Q8_0 weights). */
static inline void moe_kern_quantize_act_q8(const moe_kern_set *k, const float *x, moe_block_q8_0 *y, int64_t n)
{
    moe_kern_quantize_act(k, MOE_DT_Q8_0, x, y, n);
}
static inline float moe_kern_dot_q8q8(const moe_kern_set *k, const moe_block_q8_0 *w, const moe_block_q8_0 *x,
                                      int64_t n)
{
    return moe_kern_dot_int8(k, MOE_DT_Q8_0, w, x, n);
}

/*
 * Repacked Q8_0 and Q4_K for the int8 path (opt-in: moe-run / moe-worker /
 * bench --repack).  The file's layout gives each (row, token, block pair) its own
 * 8-lane float accumulation; a copy with 16 rows interleaved lets one
 * 512-bit vpdpbusd add 4 products into each of 16 rows, so a block's whole
 * integer sum is formed in a lane and scaled once.  Per group of 16 rows
 * (the last one padded with zero rows) and pair of blocks (2p, 2p + 1):
 *   64 bytes   the 16 rows' fp16 d of block 2p, then of block 2p + 1
 *              (zero for a missing odd block)
 *   512 bytes  block 2p: for s = 0..7, rows 0..15, its 4 values 4s..4s+3,
 *              each stored as q + 128 (unsigned)
 *   512 bytes  block 2p + 1 (absent when the row has an odd block count)
 * Every value is the reference set's int8 dot, bitwise (the exact int32 Σ
 * q_w·q_x per block, then acc + (d_w·d_x)·Σ, blocks in order): a repacked
 * matrix therefore gives other bits than the file's layout (whose SIMD sets
 * sum 8 lanes per block pair), the same in every set, for any batch,
 * thread count and row range.  The copy costs the matrix's own bytes.
 *
 * Repacked Q4_K, the same 16-row groups.  In the file's layout a row's
 * super-block pays its 6-bit scale decode and its 8 sub-block sums alone;
 * interleaved, the 16 rows share every instruction.  Per group and
 * super-block (2368 bytes, 2.8% more than the file's 2304):
 *   32 + 32    the 16 rows' fp16 d, then their fp16 dmin
 *   128        scales: sub-block j, rows 0..15, one byte each (0..63)
 *   128        mins: sub-blocks 2p, 2p + 1 as rows 0..15 × 2 bytes
 *   2048       32 chunks of 64 bytes: chunk i gives row l bytes 4l..4l+3,
 *              values 8i..8i+3 in the low nibbles, 8i+4..8i+7 in the high
 * Every value is the reference's int8 dot (exact Σ_j sc_j·Σq·q_x and
 * Σ_j m_j·bsum_j, then acc + ((d·d_x)·isum − (dmin·d_x)·msum) by
 * super-block): the bits of the file's layout, in every set.
 */
#define MOE_RP_ROWS 16
/* Bytes of one super-block of a 16-row group of repacked Q4_K. */
#define MOE_RPK_SB_BYTES 2368
/* Bytes of the repacked copy of a rows × cols matrix of `type`, or 0 when
 * the type has no repacked layout (Q8_0 and Q4_K have one) or the shape
 * does not fit (cols above 32768). */
size_t moe_kern_repack_bytes(uint32_t type, int64_t rows, int64_t cols);
/* Writes m's repacked copy to dst (moe_kern_repack_bytes bytes, 64-byte
 * aligned); m is a whole matrix (m->rp unused). */
void moe_kern_repack(const moe_mat *m, void *dst);

/* y[0..cols) = Σ_r x[r] · m row r (the transposed product), rows in order. */
void moe_kern_matvec_t(const moe_kern_set *k, const moe_mat *m, const float *x, float *y);

/* Small float ops (one version; they are a negligible share of time).
 * x, y may alias. */
void moe_kern_rmsnorm(const float *x, const float *w, float eps, float *y, int64_t n);
/* y = softmax(x) over n ≥ 1 values: max, then Σ exp(x − max) in double in
 * index order, then one float reciprocal.  The attention and the router
 * both use it. */
void moe_kern_softmax(const float *x, float *y, int64_t n);
/*
 * Rotary embedding of n_rot values in place: pair i (v[2i], v[2i+1]) turns
 * by (c, s) = (cs[2i], cs[2i+1]) with one fused multiply-add per output:
 *   v[2i]   = fma(a, c, −(b·s)),   v[2i+1] = fma(a, s, b·c)
 * (a = v[2i], b = v[2i+1]; the inner products rounded first).  That is what
 * the engine computed when gcc vectorised its rotation loop with
 * vfmaddsub under -march=native, and the regression data hold those bits;
 * every set gives them (the reference through fmaf()).
 */
void moe_kern_rope(const moe_kern_set *k, float *v, const float *cs, int n_rot);
/* For every output j < nh and position t < np in order:
 *   y[j·ys + i] += a[j·as + t] · c[t][i]   (i < n)
 * each element exactly as np calls of the set's F32 axpy would update it
 * (the same fused or unfused operation, t in order), with the outputs held
 * in registers across positions: attention's weighted sum of latents. */
void moe_kern_axpy_rows(const moe_kern_set *k, const float *const *c, int np, const float *a, int64_t as, int nh,
                        float *y, int64_t ys, int64_t n);
/* g[i] = silu(g[i]) · u[i] */
void moe_kern_swiglu(float *g, const float *u, int64_t n);

#endif
