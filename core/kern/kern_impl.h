/*
 * kern_impl.h — what the kernel sets share inside core/kern/ (not a public
 * header): the set descriptor and the per-(set, type) entries each set's
 * translation unit exports.  Only declarations and `static inline` code
 * may live here: an inline function with external linkage would be
 * emitted by every unit that uses it, and the linker could keep the copy
 * compiled with AVX-512 flags for baseline callers.
 */
#ifndef MOE_KERN_IMPL_H
#define MOE_KERN_IMPL_H

#include <math.h>
#include <string.h>

#include "kern.h"

/* Rotation of n_rot/2 (cos, sin) pairs in place (moe_kern_rope). */
typedef void (*moe_kern_rope_fn)(float *v, const float *cs, int n_rot);
/* Weighted sums of float rows into several outputs (moe_kern_axpy_rows). */
typedef void (*moe_kern_axpy_rows_fn)(const float *const *c, int np, const float *a, int64_t as, int nh, float *y,
                                      int64_t ys, int64_t n);
struct moe_kern_set {
    const char *name;
    int col;         /* column of the table in kern_select.c */
    uint64_t needs;  /* MOE_CPU_* bits the set's code uses */
    moe_kern_rope_fn rope;
    moe_kern_axpy_rows_fn axpy_rows;
};

/* The columns, weakest first. */
enum { MOE_KERN_REF, MOE_KERN_AVX2, MOE_KERN_AVX512, MOE_KERN_N_SETS };

#define MOE_KERN_NEEDS_AVX2 ((uint64_t)(MOE_CPU_AVX2 | MOE_CPU_FMA | MOE_CPU_F16C))
#define MOE_KERN_NEEDS_AVX512                                                                        \
    (MOE_KERN_NEEDS_AVX2 | (uint64_t)(MOE_CPU_AVX512F | MOE_CPU_AVX512VL | MOE_CPU_AVX512BW |      \
                                      MOE_CPU_AVX512DQ | MOE_CPU_AVX512VNNI))

/* Entries of each set, one per weight type (kern_ref.c, kern_avx2.c,
 * kern_avx512.c; the SIMD ones only in x86-64 builds, MOE_KERN_X86). */
#define MOE_KERN_DECLARE(set)                                                                        \
    extern const moe_kern_fns moe_kern_##set##_f32, moe_kern_##set##_f16, moe_kern_##set##_bf16,    \
        moe_kern_##set##_q8_0;
MOE_KERN_DECLARE(ref)
MOE_KERN_DECLARE(avx2)
MOE_KERN_DECLARE(avx512)
/* The quantized types (kern_ref.c; kern_simd_q.inc for the SIMD sets). */
#define MOE_KERN_DECLARE_Q(set)                                                                      \
    extern const moe_kern_fns moe_kern_##set##_q4_0, moe_kern_##set##_q4_1, moe_kern_##set##_q5_0,  \
        moe_kern_##set##_q5_1, moe_kern_##set##_q2_K, moe_kern_##set##_q3_K, moe_kern_##set##_q4_K, \
        moe_kern_##set##_q5_K, moe_kern_##set##_q6_K, moe_kern_##set##_iq4_nl, moe_kern_##set##_iq4_xs;
MOE_KERN_DECLARE_Q(ref)
MOE_KERN_DECLARE_Q(avx2)
MOE_KERN_DECLARE_Q(avx512)

void moe_kern_ref_rope(float *v, const float *cs, int n_rot);
void moe_kern_ref_axpy_rows(const float *const *c, int np, const float *a, int64_t as, int nh, float *y, int64_t ys,
                            int64_t n);
void moe_kern_avx2_axpy_rows(const float *const *c, int np, const float *a, int64_t as, int nh, float *y, int64_t ys,
                             int64_t n);
void moe_kern_avx512_axpy_rows(const float *const *c, int np, const float *a, int64_t as, int nh, float *y,
                               int64_t ys, int64_t n);
void moe_kern_avx2_rope(float *v, const float *cs, int n_rot);
void moe_kern_avx512_rope(float *v, const float *cs, int n_rot);

/* Activation quantizers of the int8 path, one per dot type (y: blocks of
 * moe_block_q8_0, moe_block_q8_1 or moe_block_q8_K). */
void moe_kern_ref_quant_act(const float *x, void *y, int64_t n); /* q8_0 */
void moe_kern_ref_quant_act_q8_1(const float *x, void *y, int64_t n);
void moe_kern_ref_quant_act_q8_K(const float *x, void *y, int64_t n);
void moe_kern_avx2_quant_act(const float *x, void *y, int64_t n); /* q8_0 */
void moe_kern_avx2_quant_act_q8_1(const float *x, void *y, int64_t n);
void moe_kern_avx2_quant_act_q8_K(const float *x, void *y, int64_t n);
void moe_kern_avx512_quant_act(const float *x, void *y, int64_t n);
void moe_kern_avx512_quant_act_q8_1(const float *x, void *y, int64_t n);
void moe_kern_avx512_quant_act_q8_K(const float *x, void *y, int64_t n);

/* The repacked Q8_0 layout (kern.h): bytes of one group of MOE_RP_ROWS
 * rows of nb blocks, and where block b's d (16 fp16) and values (512
 * bytes) sit in it. */
static inline size_t moe_rp_group_bytes(int64_t nb) { return (size_t)((nb + 1) / 2) * 64 + (size_t)nb * 512; }
static inline size_t moe_rp_d_off(int64_t b) { return (size_t)(b / 2) * 1088 + (size_t)(b % 2) * 32; }
static inline size_t moe_rp_q_off(int64_t b) { return (size_t)(b / 2) * 1088 + 64 + (size_t)(b % 2) * 512; }
/* Byte of value j (< 32) of lane (row in the group) l in a block's values:
 * step j / 4, then the lane's 4 bytes. */
static inline size_t moe_rp_q_idx(int l, int j) { return (size_t)(j / 4) * 64 + (size_t)l * 4 + (size_t)(j % 4); }
/* The repacked Q4_K layout (kern.h): one super-block of a group takes
 * MOE_RPK_SB_BYTES; in it the 16 rows' fp16 d, then dmin, the 6-bit scales
 * (sub-block j: 16 bytes, one a row), the mins (pair p of sub-blocks 2p,
 * 2p + 1: 16 rows × 2 bytes) and 32 chunks of 64 bytes of nibbles. */
#define MOE_RPK_D 0
#define MOE_RPK_DMIN 32
#define MOE_RPK_SC 64
#define MOE_RPK_M 192
#define MOE_RPK_Q 320
/* Byte of value v (< 256) of lane l among the nibbles: step s = v / 4 (4
 * values a lane) goes to chunk s / 2, low nibble for even s, high for
 * odd. */
static inline size_t moe_rpk_q_idx(int l, int v) { return (size_t)(v / 8) * 64 + (size_t)l * 4 + (size_t)(v % 4); }
static inline int moe_rpk_q_shift(int v) { return (v / 4) % 2 ? 4 : 0; }
/* The reference set's product on a repacked matrix (scalar; every set
 * without its own gives these bits through it). */
void moe_kern_ref_matmul_int8_rp(const moe_mat *m, int64_t r0, int64_t r1, const void *xq, int64_t xq_stride,
                                 int64_t n_tok, float *y, int64_t ys);

/* One token (decode) streams each long weight row once, one row at a
 * time: the legacy types' 4-row tile (activation pack, 4-row blocks) only
 * pays off when rows are reused across tokens (one thread, Q8_0 bench
 * model: 37 tok/s decode through it, 56 through the dot).  Rows of at
 * most this many bytes are the exception, and take the 4-row tile for one
 * token too: a dot call per row of a few blocks costs more than the blocks
 * (per-head k_b rows of 128, the Q5_0 expert downs of 704; bench-kern's
 * short-row lines: 1.0-1.7x through the tile).  The avx512 set's Q8_0
 * takes the dot from 512 bytes where the L2 prefetch is off (not Intel;
 * TILE_SHORT_ROW_q8_0, kern_simd_q.inc), its
 * expert downs of 704 included: in cache its tile is faster there too,
 * but from memory it is not.  Longer rows of Q4_0, Q4_1, Q5_0, Q5_1 and
 * IQ4_NL take the 1-row tile on the packed token in avx512 (TILE_LONG1_*), and Q4_0
 * and Q5_0 avx2's own pack: both read the row as the dot does.  Same bits
 * either way. */
#define KERN_INT8_SHORT_ROW 1024

/* moe_kern_l2_prefetch(), as the kernels read it: set once before main
 * (kern_select.c), read-only after */
extern bool moe_kern_pf_l2;
#define KERN_PF_L2_BYTES MOE_KERN_PF_L2_BYTES /* and the avx512 tiles' L2 prefetch, always (kern_simd_q.inc) */
/* the one-token kernels' second prefetch of the weight line at p */
#define KERN_PF_L2(p)                                                                                    \
    do {                                                                                                 \
        if (moe_kern_pf_l2) _mm_prefetch((const char *)(p) + KERN_PF_L2_BYTES, _MM_HINT_T1);              \
    } while (0)

/* An activation block holding a NaN or an infinity quantizes, in every set,
 * to d = NaN (q8_0, q8_1: this fp16; q8_K: the float NAN), every q and
 * bsum 0, and (q8_1) s = NaN.  Every product it enters is then NaN (d_w·NaN
 * even where the integers are 0), as on the float path, so damaged weights
 * reach the logits as non-finite values, which end the sequence with an
 * error (worker/gen.c), instead of vanishing in the rounding (x·id of a NaN
 * has no int8 value; the packs gave −128 and a finite d) and the same in
 * every set.  No quantizer writes −128: |x·id| <= 127 for finite x.  The
 * reference and the SIMD quantizers write these blocks by the helpers
 * below. */
#define KERN_F16_NAN 0x7e00
static inline void kern_nan_q8_0(moe_block_q8_0 *b)
{
    b->d = KERN_F16_NAN;
    memset(b->qs, 0, sizeof b->qs);
}
static inline void kern_nan_q8_1(moe_block_q8_1 *b)
{
    b->d = b->s = KERN_F16_NAN;
    memset(b->qs, 0, sizeof b->qs);
}
static inline void kern_nan_q8_K(moe_block_q8_K *b)
{
    memset(b, 0, sizeof *b);
    b->d = NAN;
}

/* The generic cache-tiled product over an entry's dotn (kern.c); the SIMD
 * sets' own products fall back to it. */
void moe_kern_matmul_generic(const moe_kern_fns *f, const moe_mat *m, int64_t r0, int64_t r1, const float *x,
                             int64_t xs, int64_t n_tok, float *y, int64_t ys);
/* The same over an entry's dotn_int8 (xq_stride in blocks of the dot type). */
void moe_kern_matmul_int8_generic(const moe_kern_fns *f, const moe_mat *m, int64_t r0, int64_t r1, const void *xq,
                                  int64_t xq_stride, int64_t n_tok, float *y, int64_t ys);
/* One weight row against 8 tokens (xq_stride blocks apart), each output
 * the bits of that token's dotn_int8. */
typedef void (*moe_kern_dot8_int8_fn)(const void *w, const void *xq, int64_t xq_stride, int64_t n, float *out);
/* The generic int8 tiling with 8-token groups through dot8 first (its
 * token blocks a multiple of 8), then quads, then the 1 to 3 left in one
 * dotn_int8 call. */
void moe_kern_matmul_int8_tiled8(const moe_kern_fns *f, moe_kern_dot8_int8_fn dot8, const moe_mat *m, int64_t r0,
                                 int64_t r1, const void *xq, int64_t xq_stride, int64_t n_tok, float *y, int64_t ys);

#endif
