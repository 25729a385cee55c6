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

#include "kern.h"

/* Rotation of n_rot/2 (cos, sin) pairs in place (moe_kern_rope). */
typedef void (*moe_kern_rope_fn)(float *v, const float *cs, int n_rot);
/* Activations to Q8_0 blocks for the int8 path (moe_kern_quantize_act_q8). */
typedef void (*moe_kern_quant_act_fn)(const float *x, moe_block_q8_0 *y, int64_t n);

struct moe_kern_set {
    const char *name;
    int col;         /* column of the table in kern_select.c */
    uint64_t needs;  /* MOE_CPU_* bits the set's code uses */
    moe_kern_rope_fn rope;
    moe_kern_quant_act_fn quant_act;
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
void moe_kern_ref_rope(float *v, const float *cs, int n_rot);
void moe_kern_avx2_rope(float *v, const float *cs, int n_rot);
void moe_kern_avx512_rope(float *v, const float *cs, int n_rot);
void moe_kern_ref_quant_act(const float *x, moe_block_q8_0 *y, int64_t n);
void moe_kern_avx2_quant_act(const float *x, moe_block_q8_0 *y, int64_t n);
void moe_kern_avx512_quant_act(const float *x, moe_block_q8_0 *y, int64_t n);
MOE_KERN_DECLARE(avx2)
MOE_KERN_DECLARE(avx512)

/* The generic cache-tiled product over an entry's dotn (kern.c); the SIMD
 * sets' own products fall back to it. */
void moe_kern_matmul_generic(const moe_kern_fns *f, const moe_mat *m, int64_t r0, int64_t r1, const float *x,
                             int64_t xs, int64_t n_tok, float *y, int64_t ys);

#endif
