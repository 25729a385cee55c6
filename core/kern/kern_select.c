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
/* A type a SIMD set has no kernels of yet (none today): its column lists the reference
 * entry, so moe_kern_for never fails for a supported type (the reference
 * is deterministic too, so the invariance rules hold).  moe_kern_native()
 * reports these cells. */
#define REF_FALLBACK(T) &moe_kern_ref_##T

static const moe_kern_set sets[MOE_KERN_N_SETS] = {
    {"reference", MOE_KERN_REF, 0, moe_kern_ref_rope, moe_kern_ref_axpy_rows},
    {"avx2", MOE_KERN_AVX2, MOE_KERN_NEEDS_AVX2, SIMD_FN(avx2, rope), SIMD_FN(avx2, axpy_rows)},
    {"avx512", MOE_KERN_AVX512, MOE_KERN_NEEDS_AVX512, SIMD_FN(avx512, rope), SIMD_FN(avx512, axpy_rows)},
};

/* One row per weight type: its int8 dot type (llama.cpp's vec_dot_type;
 * MOE_DT_F32 = float activations only) and its entries per set. */
static const struct kern_row {
    uint32_t type;
    uint32_t dot_type;
    const moe_kern_fns *by_set[MOE_KERN_N_SETS]; /* reference, avx2, avx512 */
} table[] = {
    {MOE_DT_F32, MOE_DT_F32, {&moe_kern_ref_f32, SIMD(avx2, f32), SIMD(avx512, f32)}},
    {MOE_DT_F16, MOE_DT_F32, {&moe_kern_ref_f16, SIMD(avx2, f16), SIMD(avx512, f16)}},
    {MOE_DT_BF16, MOE_DT_F32, {&moe_kern_ref_bf16, SIMD(avx2, bf16), SIMD(avx512, bf16)}},
    {MOE_DT_Q8_0, MOE_DT_Q8_0, {&moe_kern_ref_q8_0, SIMD(avx2, q8_0), SIMD(avx512, q8_0)}},
    {MOE_DT_Q4_0, MOE_DT_Q8_0, {&moe_kern_ref_q4_0, SIMD(avx2, q4_0), SIMD(avx512, q4_0)}},
    {MOE_DT_Q4_1, MOE_DT_Q8_1, {&moe_kern_ref_q4_1, SIMD(avx2, q4_1), SIMD(avx512, q4_1)}},
    {MOE_DT_Q5_0, MOE_DT_Q8_0, {&moe_kern_ref_q5_0, SIMD(avx2, q5_0), SIMD(avx512, q5_0)}},
    {MOE_DT_Q5_1, MOE_DT_Q8_1, {&moe_kern_ref_q5_1, SIMD(avx2, q5_1), SIMD(avx512, q5_1)}},
    {MOE_DT_Q2_K, MOE_DT_Q8_K, {&moe_kern_ref_q2_K, SIMD(avx2, q2_K), SIMD(avx512, q2_K)}},
    {MOE_DT_Q3_K, MOE_DT_Q8_K, {&moe_kern_ref_q3_K, SIMD(avx2, q3_K), SIMD(avx512, q3_K)}},
    {MOE_DT_Q4_K, MOE_DT_Q8_K, {&moe_kern_ref_q4_K, SIMD(avx2, q4_K), SIMD(avx512, q4_K)}},
    {MOE_DT_Q5_K, MOE_DT_Q8_K, {&moe_kern_ref_q5_K, SIMD(avx2, q5_K), SIMD(avx512, q5_K)}},
    {MOE_DT_Q6_K, MOE_DT_Q8_K, {&moe_kern_ref_q6_K, SIMD(avx2, q6_K), SIMD(avx512, q6_K)}},
    {MOE_DT_IQ4_NL, MOE_DT_Q8_0, {&moe_kern_ref_iq4_nl, SIMD(avx2, iq4_nl), SIMD(avx512, iq4_nl)}},
    {MOE_DT_IQ4_XS, MOE_DT_Q8_K, {&moe_kern_ref_iq4_xs, SIMD(avx2, iq4_xs), SIMD(avx512, iq4_xs)}},
};
#define N_ROWS (sizeof table / sizeof table[0])

/* One row per dot type of the int8 path: block shape and quantizer per
 * set (every set bitwise the reference). */
static const struct act_row {
    uint32_t type;
    int64_t block_elems;
    size_t block_bytes;
    moe_kern_quant_act_fn by_set[MOE_KERN_N_SETS];
} acts[] = {
    {MOE_DT_Q8_0, MOE_QK, sizeof(moe_block_q8_0),
     {moe_kern_ref_quant_act, SIMD_FN(avx2, quant_act), SIMD_FN(avx512, quant_act)}},
    {MOE_DT_Q8_1, MOE_QK, sizeof(moe_block_q8_1),
     {moe_kern_ref_quant_act_q8_1, SIMD_FN(avx2, quant_act_q8_1), SIMD_FN(avx512, quant_act_q8_1)}},
    {MOE_DT_Q8_K, MOE_QK_K, sizeof(moe_block_q8_K),
     {moe_kern_ref_quant_act_q8_K, SIMD_FN(avx2, quant_act_q8_K), SIMD_FN(avx512, quant_act_q8_K)}},
};
#define N_ACTS (sizeof acts / sizeof acts[0])

const char *moe_kern_name(const moe_kern_set *k) { return k->name; }

void moe_kern_rope(const moe_kern_set *k, float *v, const float *cs, int n_rot) { k->rope(v, cs, n_rot); }

void moe_kern_axpy_rows(const moe_kern_set *k, const float *const *c, int np, const float *a, int64_t as, int nh,
                        float *y, int64_t ys, int64_t n)
{
    k->axpy_rows(c, np, a, as, nh, y, ys, n);
}

static const struct kern_row *row_of(uint32_t type)
{
    for (size_t i = 0; i < N_ROWS; i++)
        if (table[i].type == type) return &table[i];
    return NULL;
}

static const struct act_row *act_of(uint32_t dot_type)
{
    for (size_t i = 0; i < N_ACTS; i++)
        if (acts[i].type == dot_type) return &acts[i];
    return NULL;
}

uint32_t moe_kern_dot_type(uint32_t type)
{
    const struct kern_row *r = row_of(type);
    return r ? r->dot_type : MOE_DT_F32;
}

int64_t moe_kern_act_block(uint32_t dot_type)
{
    const struct act_row *a = act_of(dot_type);
    return a ? a->block_elems : 0;
}

size_t moe_kern_act_row_bytes(uint32_t dot_type, int64_t n)
{
    const struct act_row *a = act_of(dot_type);
    MOE_ASSERT(a && n >= 0 && n % a->block_elems == 0);
    return (size_t)(n / a->block_elems) * a->block_bytes;
}

size_t moe_kern_act_bytes_max(int64_t n)
{
    size_t best = 0;
    for (size_t i = 0; i < N_ACTS; i++) {
        const size_t b = (size_t)((n + acts[i].block_elems - 1) / acts[i].block_elems) * acts[i].block_bytes;
        best = b > best ? b : best;
    }
    return best;
}

void moe_kern_quantize_act(const moe_kern_set *k, uint32_t dot_type, const float *x, void *y, int64_t n)
{
    const struct act_row *a = act_of(dot_type);
    MOE_ASSERT(a && a->by_set[k->col] && n % a->block_elems == 0);
    a->by_set[k->col](x, y, n);
}

const moe_kern_fns *moe_kern_for(const moe_kern_set *k, uint32_t type)
{
    const struct kern_row *r = row_of(type);
    return r ? r->by_set[k->col] : NULL;
}

bool moe_kern_native(const moe_kern_set *k, uint32_t type)
{
    const struct kern_row *r = row_of(type);
    return r && r->by_set[k->col] && (k->col == MOE_KERN_REF || r->by_set[k->col] != r->by_set[MOE_KERN_REF]);
}

bool moe_kern_type_supported(uint32_t type) { return moe_kern_for(&sets[MOE_KERN_REF], type) != NULL; }

const char *moe_kern_supported_list(char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < N_ROWS && n < size; i++) {
        char nb[24];
        const int w = snprintf(buf + n, size - n, "%s%s", i ? ", " : "", moe_dtype_name(table[i].type, nb, sizeof nb));
        n += w > 0 ? (size_t)w : 0;
    }
    return buf;
}

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

/* MOE_L2_PREFETCH as 1 or 0; -1 unset, -2 anything else */
static int pf_l2_env(void)
{
    const char *e = getenv("MOE_L2_PREFETCH");
    if (!e) return -1;
    return !strcmp(e, "1") ? 1 : !strcmp(e, "0") ? 0 : -2;
}

bool moe_kern_pf_l2;
static int pf_l2_env_at_start = -1; /* pf_l2_env() when the policy was set */

/* Before main, so that no product runs before the choice */
__attribute__((constructor)) static void pf_l2_init(void)
{
    bool intel = false;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid(0, &a, &b, &c, &d)) intel = b == 0x756e6547u && d == 0x49656e69u && c == 0x6c65746eu; /* GenuineIntel */
#endif
    const int e = pf_l2_env();
    pf_l2_env_at_start = e;
    moe_kern_pf_l2 = e >= 0 ? e == 1 : intel;
}

bool moe_kern_l2_prefetch(void) { return moe_kern_pf_l2; }

bool moe_kern_set_l2_prefetch(const moe_kern_set *k) { return moe_kern_pf_l2 && k != moe_kern_reference(); }

const char *moe_kern_prefetch_name(const moe_kern_set *k)
{
    return k == moe_kern_reference() ? "none" : moe_kern_set_l2_prefetch(k) ? "l1+l2" : "l1";
}

int moe_kern_check_env(moe_err *err)
{
    /* the value the policy was set from (a later setenv changes nothing) */
    if (pf_l2_env_at_start == -2) {
        const char *e = getenv("MOE_L2_PREFETCH");
        return moe_err_set(err, "MOE_L2_PREFETCH=%.32s: the value is 1 (prefetch into L2 too) or 0", e ? e : "?");
    }
    return MOE_OK;
}

int moe_kern_choose(const moe_kern_set **out, moe_err *err)
{
    uint64_t mask;
    *out = NULL;
    if (moe_kern_check_env(err)) return MOE_ERR;
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
