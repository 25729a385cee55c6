/*
 * kern_select.c — the (operation, weight type) table and the choice of a
 * kernel set from cpuid at start.
 *
 * The table has one row per weight type with the scalar reference beside
 * every optimised set; adding a weight type means adding one row (and its
 * kernels in each set).  A CPU's features become a mask of MOE_CPU_* bits;
 * a set is usable when its `needs` are all in the mask, and the best usable
 * set wins.  Capping (MOE_KERNELS) clears every bit the capping set does not
 * need, so capped masks from several ranks can simply be ANDed.
 */
#include "kern_impl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#ifdef MOE_KERN_X86
#define SIMD(set, T) &moe_kern_##set##_##T
#define SIMD_FN(set, f) moe_kern_##set##_##f
#else
/* no SIMD units in this build: the sets exist but no mask can choose them */
#define SIMD(set, T) NULL
#define SIMD_FN(set, f) NULL
#endif

static const moe_kern_set sets[MOE_KERN_N_SETS] = {
    {"reference", MOE_KERN_REF, 0, moe_kern_ref_rope, moe_kern_ref_quant_act},
    {"avx2", MOE_KERN_AVX2, MOE_KERN_NEEDS_AVX2, SIMD_FN(avx2, rope), SIMD_FN(avx2, quant_act)},
    {"avx512", MOE_KERN_AVX512, MOE_KERN_NEEDS_AVX512, SIMD_FN(avx512, rope), SIMD_FN(avx512, quant_act)},
};

static const struct kern_row {
    uint32_t type;
    const moe_kern_fns *by_set[MOE_KERN_N_SETS]; /* reference, avx2, avx512 */
} table[] = {
    {MOE_DT_F32, {&moe_kern_ref_f32, SIMD(avx2, f32), SIMD(avx512, f32)}},
    {MOE_DT_F16, {&moe_kern_ref_f16, SIMD(avx2, f16), SIMD(avx512, f16)}},
    {MOE_DT_BF16, {&moe_kern_ref_bf16, SIMD(avx2, bf16), SIMD(avx512, bf16)}},
    {MOE_DT_Q8_0, {&moe_kern_ref_q8_0, SIMD(avx2, q8_0), SIMD(avx512, q8_0)}},
};
#define N_ROWS (sizeof table / sizeof table[0])

const char *moe_kern_name(const moe_kern_set *k) { return k->name; }

void moe_kern_rope(const moe_kern_set *k, float *v, const float *cs, int n_rot) { k->rope(v, cs, n_rot); }

void moe_kern_quantize_act_q8(const moe_kern_set *k, const float *x, moe_block_q8_0 *y, int64_t n)
{
    k->quant_act(x, y, n);
}

const moe_kern_fns *moe_kern_for(const moe_kern_set *k, uint32_t type)
{
    for (size_t i = 0; i < N_ROWS; i++)
        if (table[i].type == type) return table[i].by_set[k->col];
    return NULL;
}

bool moe_kern_type_supported(uint32_t type) { return moe_kern_for(&sets[MOE_KERN_REF], type) != NULL; }

int moe_kern_n_sets(void) { return MOE_KERN_N_SETS; }
const moe_kern_set *moe_kern_set_at(int i) { return i >= 0 && i < MOE_KERN_N_SETS ? &sets[i] : NULL; }
const moe_kern_set *moe_kern_reference(void) { return &sets[MOE_KERN_REF]; }

const moe_kern_set *moe_kern_by_name(const char *s)
{
    for (int i = 0; i < MOE_KERN_N_SETS; i++)
        if (!strcmp(s, sets[i].name)) return &sets[i];
    return NULL;
}

/* A set is usable when the build has it and the mask grants its needs. */
static bool usable(const moe_kern_set *k, uint64_t mask)
{
    return (k->needs & ~mask) == 0 && table[0].by_set[k->col] != NULL;
}

const moe_kern_set *moe_kern_best_in(uint64_t mask)
{
    const moe_kern_set *best = &sets[MOE_KERN_REF];
    for (int i = 0; i < MOE_KERN_N_SETS; i++)
        if (usable(&sets[i], mask)) best = &sets[i];
    return best;
}

const char *moe_kern_list(uint64_t mask, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < MOE_KERN_N_SETS; i++)
        if (usable(&sets[i], mask) && n < size) {
            const int w = snprintf(buf + n, size - n, "%s%s", n ? ", " : "", sets[i].name);
            n += w > 0 ? (size_t)w : 0;
        }
    return buf;
}

uint64_t moe_kern_cpu_features(void)
{
    uint64_t f = 0;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const bool osxsave = c & (1u << 27), avx = c & (1u << 28);
    const bool fma = c & (1u << 12), f16c = c & (1u << 29);
    if (!osxsave || !avx) return 0;
    /* The CPU having the registers is not enough: the OS must save them on
     * a context switch (XCR0: bits 1-2 xmm/ymm; 5-7 opmask and zmm). */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const bool os_ymm = (lo & 0x6u) == 0x6u, os_zmm = (lo & 0xe6u) == 0xe6u;
    if (!os_ymm) return 0;
    if (fma) f |= MOE_CPU_FMA;
    if (f16c) f |= MOE_CPU_F16C;
    if (__get_cpuid_max(0, NULL) < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    if (b & (1u << 5)) f |= MOE_CPU_AVX2;
    if (os_zmm) {
        if (b & (1u << 16)) f |= MOE_CPU_AVX512F;
        if (b & (1u << 17)) f |= MOE_CPU_AVX512DQ;
        if (b & (1u << 30)) f |= MOE_CPU_AVX512BW;
        if (b & (1u << 31)) f |= MOE_CPU_AVX512VL;
        if (c & (1u << 11)) f |= MOE_CPU_AVX512VNNI;
    }
#endif
    return f;
}

int moe_kern_cpu_mask(uint64_t cpu, const char *cap, uint64_t *mask, moe_err *err)
{
    *mask = cpu;
    if (!cap || !*cap) return MOE_OK;
    char list[64];
    const moe_kern_set *k = moe_kern_by_name(cap);
    if (!k)
        return moe_err_set(err, "MOE_KERNELS=%.32s is not a kernel set (reference, avx2, avx512); this CPU has %s",
                           cap, moe_kern_list(cpu, list, sizeof list));
    if (!usable(k, cpu))
        return moe_err_set(err, "MOE_KERNELS=%s: this CPU (or build) cannot run that set; it has %s", k->name,
                           moe_kern_list(cpu, list, sizeof list));
    *mask = cpu & k->needs;
    return MOE_OK;
}

int moe_kern_choose(const moe_kern_set **out, moe_err *err)
{
    uint64_t mask;
    *out = NULL;
    if (moe_kern_cpu_mask(moe_kern_cpu_features(), getenv("MOE_KERNELS"), &mask, err)) return MOE_ERR;
    *out = moe_kern_best_in(mask);
    return MOE_OK;
}

static const moe_kern_set *default_set;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_init(void)
{
    moe_err err;
    if (moe_kern_choose(&default_set, &err)) default_set = moe_kern_best_in(moe_kern_cpu_features());
}

const moe_kern_set *moe_kern_default(void)
{
    pthread_once(&default_once, default_init);
    return default_set;
}
