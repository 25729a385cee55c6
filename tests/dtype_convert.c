/*
 * dtype_convert.c — the scalar reference conversions against independent
 * references:
 *   f16  against the CPU's F16C instructions (_cvtss_sh with round to
 *        nearest even, _cvtsh_ss): all 65536 halfs, every tie between two
 *        adjacent halfs and its neighbours, and a sweep over float32 bit
 *        patterns (all 2^32 of them in an optimised build, every 7th
 *        under the sanitizers), plus hand-picked values with known answers;
 *   bf16 against a nearest-even reference computed in double, on
 *        hand-picked ties, NaNs, infinities, subnormals and a sweep;
 *   q8_0 against the rule (d = amax/127 in float32, q = roundf(x * (1/d)),
 *        d stored as fp16) on hand-picked blocks, incl. all zero.
 * Without F16C the f16 hardware comparison is a failure, not a skip.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "dtype.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_X86 1
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f)
{
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
/* 8 at a time, for the sweep. */
__attribute__((target("avx,f16c"))) static void hw_f32_to_f16_x8(const float *f, uint16_t *h)
{
    __m128i r = _mm256_cvtps_ph(_mm256_loadu_ps(f), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128((__m128i *)h, r);
}
/* clang 14's __builtin_cpu_supports does not know "f16c": ask CPUID for it
 * (leaf 1, ECX bit 29); "avx" also says the OS saves the YMM registers. */
static int have_f16c(void)
{
    unsigned a, b, c, d;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx") || !__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & bit_F16C) != 0;
}
#else
#define HAVE_X86 0
static int have_f16c(void) { return 0; }
#endif

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int h_isnan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }

static long n_cases;
static int n_report;

/* One f32 -> f16 comparison: equal bits, or both NaN with the input's sign. */
static int f16_same(uint32_t x, uint16_t got, uint16_t want)
{
    if (isnan(from_bits(x))) return h_isnan(got) && (got & 0x8000u) == ((x >> 16) & 0x8000u);
    return got == want;
}

static void f16_mismatch(uint32_t x, uint16_t got, uint16_t want)
{
    CHECK_MSG(0, "f32->f16 of 0x%08x (%.9g): got 0x%04x, hardware 0x%04x", x, from_bits(x), got, want);
    n_report++;
}

#if HAVE_X86
static void test_f16_hardware(void)
{
    /* All halfs to float, and back. */
    long bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float got = moe_f16_to_f32((uint16_t)h), want = hw_f16_to_f32((uint16_t)h);
        n_cases++;
        if (h_isnan((uint16_t)h)) {
            /* NaN stays NaN with its sign; the payload is kept. */
            uint32_t g = bits(got);
            if (!isnan(got) || (g >> 31) != (h >> 15) || ((g >> 13) & 0x3ffu) != (h & 0x3ffu)) bad++;
            if (!h_isnan(moe_f32_to_f16(got)) || (moe_f32_to_f16(got) & 0x8000u) != (h & 0x8000u)) bad++;
        } else {
            if (bits(got) != bits(want)) bad++;
            if (moe_f32_to_f16(got) != h) bad++;
            if (hw_f32_to_f16(want) != h) bad++; /* the reference agrees with itself */
        }
    }
    CHECK_MSG(bad == 0, "%ld of 65536 halfs convert differently from the hardware", bad);

    /* Every tie between adjacent halfs (positive and negative), one float ulp
     * either side of it, and the halfs themselves.  Between 65504 (the
     * largest half) and the next step (65536, "inf") the tie is 65520. */
    bad = 0;
    for (uint32_t h = 0; h < 0x7c00u; h++) {
        double lo = moe_f16_to_f32((uint16_t)h);
        double hi = h + 1 == 0x7c00u ? 65536.0 : moe_f16_to_f32((uint16_t)(h + 1));
        float tie = (float)((lo + hi) / 2); /* exact: halfs have 11 significant bits */
        uint32_t t = bits(tie);
        uint32_t xs[] = {t, t - 1, t + 1, bits((float)lo), bits((float)lo) + 1};
        for (size_t k = 0; k < sizeof xs / sizeof xs[0]; k++) {
            for (uint32_t sign = 0; sign <= 1; sign++) {
                uint32_t x = xs[k] | (sign << 31);
                uint16_t got = moe_f32_to_f16(from_bits(x)), want = hw_f32_to_f16(from_bits(x));
                n_cases++;
                if (!f16_same(x, got, want)) {
                    bad++;
                    if (n_report < 10) f16_mismatch(x, got, want);
                }
            }
        }
    }
    CHECK_MSG(bad == 0, "%ld tie cases differ from the hardware", bad);

    /* A sweep over float32 bit patterns: every one in an optimised build,
     * every 7th (all exponents, 600 million values) under the sanitizers. */
    const uint64_t stride = SANITIZED ? 7 : 1;
    uint64_t swept = 0;
    bad = 0;
    float in[8];
    uint16_t out[8];
    for (uint64_t x = 0; x < (1ull << 32); x += 8 * stride) {
        for (int k = 0; k < 8; k++) {
            uint64_t v = x + (uint64_t)k * stride;
            in[k] = from_bits((uint32_t)(v < (1ull << 32) ? v : 0));
        }
        hw_f32_to_f16_x8(in, out);
        for (int k = 0; k < 8; k++) {
            uint16_t got = moe_f32_to_f16(in[k]);
            if (!f16_same(bits(in[k]), got, out[k])) {
                bad++;
                if (n_report < 20) f16_mismatch(bits(in[k]), got, out[k]);
            }
        }
        swept += 8;
    }
    n_cases += (long)swept;
    CHECK_MSG(bad == 0, "%ld of %llu swept floats differ from the hardware", bad, (unsigned long long)swept);
    printf("dtype_convert: f16 sweep of %llu float32 values (stride %llu), %s\n", (unsigned long long)swept,
           (unsigned long long)stride, bad ? "MISMATCHES" : "all match F16C");
}
#endif

/* Values with known answers (checked with or without F16C). */
static void test_f16_known(void)
{
    static const struct { float f; uint16_t h; } known[] = {
        {0.0f, 0x0000},
        {-0.0f, 0x8000},
        {1.0f, 0x3c00},
        {-2.0f, 0xc000},
        {65504.0f, 0x7bff},               /* largest half */
        {65519.99f, 0x7bff},              /* just below the tie: down */
        {65520.0f, 0x7c00},               /* tie between 65504 and 65536: even = inf */
        {-65520.0f, 0xfc00},
        {1e10f, 0x7c00},                  /* overflow to inf */
        {INFINITY, 0x7c00},
        {-INFINITY, 0xfc00},
        {0x1p-14f, 0x0400},               /* smallest normal */
        {0x1p-24f, 0x0001},               /* smallest subnormal */
        {0x1p-25f, 0x0000},               /* tie with zero: even = 0 */
        {0x1.000002p-25f, 0x0001},        /* just above the tie */
        {0x1.8p-24f, 0x0002},             /* 1.5 units: tie, even = 2 */
        {0x1.4p-23f, 0x0002},             /* 2.5 units: tie, even = 2 */
        {0x1.cp-23f, 0x0004},             /* 3.5 units: tie, even = 4 */
        {0x1.ff8p-15f, 0x03ff},           /* largest subnormal */
        {0x1.ffcp-15f, 0x0400},           /* tie between it and the smallest normal: even */
        {0x1.ffbffep-15f, 0x03ff},        /* just below that tie */
        {0x1.002p0f, 0x3c00},             /* 1 + 2^-11: tie, even = 1.0 */
        {0x1.006p0f, 0x3c02},             /* 1 + 3·2^-11: tie, even = 1 + 2^-9 */
        {0x1.002002p0f, 0x3c01},          /* above the tie */
        {1e-40f, 0x0000},                 /* float subnormal */
        {-1e-40f, 0x8000},
        {0.1f, 0x2e66},
        {3.14159265f, 0x4248},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        uint16_t got = moe_f32_to_f16(known[i].f);
        n_cases++;
        CHECK_MSG(got == known[i].h, "f32->f16 of %a: got 0x%04x, want 0x%04x", known[i].f, got, known[i].h);
    }
    /* NaNs stay NaN (quiet or signalling, either sign). */
    static const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu, 0x7f802000u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = moe_f32_to_f16(from_bits(nans[i]));
        n_cases++;
        CHECK_MSG(h_isnan(h) && (h >> 15) == (nans[i] >> 31), "NaN 0x%08x became 0x%04x", nans[i], h);
    }
    n_cases += 4;
    CHECK(bits(moe_f16_to_f32(0x7c00)) == 0x7f800000u && bits(moe_f16_to_f32(0xfc00)) == 0xff800000u);
    CHECK(moe_f16_to_f32(0x0001) == 0x1p-24f && moe_f16_to_f32(0x83ff) == -0x1.ff8p-15f);
    CHECK(moe_f16_to_f32(0x7bff) == 65504.0f && bits(moe_f16_to_f32(0x8000)) == 0x80000000u);
    CHECK(isnan(moe_f16_to_f32(0x7e00)) && isnan(moe_f16_to_f32(0xfc01)));
}

/* bf16 by an independent rule: the nearer of the two bf16 neighbours
 * (compared in double), ties to the even one; NaN stays NaN. */
static uint16_t ref_bf16(uint32_t u)
{
    float f = from_bits(u);
    if (isnan(f)) return 0xffff; /* checked apart */
    uint16_t lo = (uint16_t)(u >> 16);
    if ((u & 0xffffu) == 0) return lo;
    uint16_t hi = (uint16_t)(lo + 1);
    double vlo = fabs((double)from_bits((uint32_t)lo << 16));
    double vhi = (hi & 0x7fffu) == 0x7f80u ? ldexp(1.0, 128) : fabs((double)from_bits((uint32_t)hi << 16));
    double a = fabs((double)f);
    double dlo = a - vlo, dhi = vhi - a;
    if (dlo < dhi) return lo;
    if (dhi < dlo) return hi;
    return (lo & 1) ? hi : lo;
}

static void test_bf16(void)
{
    static const struct { uint32_t in; uint16_t out; } known[] = {
        {0x3f800000u, 0x3f80}, /* 1.0 */
        {0x3f808000u, 0x3f80}, /* 1 + 2^-8: tie, even = 1.0 */
        {0x3f818000u, 0x3f82}, /* 1 + 3·2^-8: tie, even up */
        {0x3f808001u, 0x3f81}, /* just above the tie */
        {0x3f807fffu, 0x3f80}, /* just below */
        {0xbf818000u, 0xbf82}, /* negative tie */
        {0x7f7f7fffu, 0x7f7f},
        {0x7f7f8000u, 0x7f80}, /* tie at the top, odd: up to inf */
        {0x7f7fffffu, 0x7f80}, /* FLT_MAX rounds to inf */
        {0x7f7e8000u, 0x7f7e}, /* tie, even: stays */
        {0x7f800000u, 0x7f80}, /* inf */
        {0xff800000u, 0xff80},
        {0x00000000u, 0x0000},
        {0x80000000u, 0x8000},
        {0x00008000u, 0x0000}, /* subnormal tie, even = 0 */
        {0x00018000u, 0x0002},
        {0x00008001u, 0x0001},
        {0x007fffffu, 0x0080}, /* largest subnormal rounds to the smallest normal */
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        uint16_t got = moe_f32_to_bf16(from_bits(known[i].in));
        n_cases++;
        CHECK_MSG(got == known[i].out, "f32->bf16 of 0x%08x: got 0x%04x, want 0x%04x", known[i].in, got, known[i].out);
        CHECK_MSG(ref_bf16(known[i].in) == known[i].out, "reference disagrees on 0x%08x", known[i].in);
    }
    /* NaNs, incl. the signalling ones whose top 16 bits alone would read as inf. */
    static const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7f80ffffu, 0x7fffffffu};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = moe_f32_to_bf16(from_bits(nans[i]));
        n_cases++;
        CHECK_MSG(isnan(moe_bf16_to_f32(h)) && (h >> 15) == (nans[i] >> 31), "NaN 0x%08x became 0x%04x", nans[i], h);
    }
    /* Back to float is exact for every bf16. */
    long bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        n_cases++;
        if (bits(moe_bf16_to_f32((uint16_t)h)) != h << 16) bad++;
        if (!isnan(moe_bf16_to_f32((uint16_t)h)) && moe_f32_to_bf16(moe_bf16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK_MSG(bad == 0, "%ld bf16 values do not round-trip", bad);
    /* A sweep over float32 bit patterns (stride prime, all exponents). */
    const uint64_t stride = SANITIZED ? 4099 : 257;
    bad = 0;
    long swept = 0;
    for (uint64_t x = 0; x < (1ull << 32); x += stride) {
        uint32_t u = (uint32_t)x;
        uint16_t got = moe_f32_to_bf16(from_bits(u));
        swept++;
        if (isnan(from_bits(u)) ? !(isnan(moe_bf16_to_f32(got)) && (got >> 15) == (u >> 31)) : got != ref_bf16(u)) {
            if (bad++ < 10) CHECK_MSG(0, "f32->bf16 of 0x%08x: got 0x%04x, reference 0x%04x", u, got, ref_bf16(u));
        }
    }
    n_cases += swept;
    CHECK_MSG(bad == 0, "%ld of %ld swept floats differ from the bf16 reference", bad, swept);
}

/* ---- q8_0 ---------------------------------------------------------------------- */

/* The rule, written out: d = amax/127 in float32, q = roundf(x * (1/d)). */
static void ref_q8_0(const float *x, uint16_t *d16, int8_t *q)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    *d16 = moe_f32_to_f16(d);
    for (int j = 0; j < 32; j++) q[j] = (int8_t)roundf(x[j] * id);
}

static void check_block(const float *x, const char *what)
{
    moe_block_q8_0 blk;
    uint16_t d16;
    int8_t q[32];
    moe_quantize_row_q8_0(x, &blk, 32);
    ref_q8_0(x, &d16, q);
    n_cases++;
    CHECK_MSG(blk.d == d16, "%s: d 0x%04x, rule 0x%04x", what, blk.d, d16);
    CHECK_MSG(!memcmp(blk.qs, q, 32), "%s: quants differ from the rule", what);
    float y[32];
    moe_dequantize_row_q8_0(&blk, y, 32);
    int bad = 0;
    for (int j = 0; j < 32; j++) bad += y[j] != moe_f16_to_f32(blk.d) * (float)blk.qs[j];
    CHECK_MSG(bad == 0, "%s: dequantized values are not d*q", what);
}

static void test_q8_0(void)
{
    float x[32];
    moe_block_q8_0 blk;

    /* All zero: d = 0, q = 0 (no division by zero). */
    memset(x, 0, sizeof x);
    moe_quantize_row_q8_0(x, &blk, 32);
    n_cases++;
    CHECK(blk.d == 0);
    for (int j = 0; j < 32; j++) CHECK_MSG(blk.qs[j] == 0, "zero block q[%d] = %d", j, blk.qs[j]);
    x[5] = -0.0f;
    check_block(x, "zero block with -0");

    /* amax 127: d = 1 exactly, and roundf rounds halves away from zero
     * (rint would give 2 for 2.5 and -2 for -2.5). */
    static const float halves[32] = {127, -127, 63.5f, -63.5f, 0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -2.5f, 0.49999997f,
                                     -0.49999997f, 126.5f, -126.5f, 3, -3, 0.25f, 100.4f, -100.6f, 0, 0, 0, 0, 0,
                                     0, 0, 0, 0, 0, 0, 0, 1};
    static const int8_t halves_q[32] = {127, -127, 64, -64, 1, -1, 2, -2, 3, -3, 0, 0, 127, -127, 3, -3, 0, 100, -101,
                                        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    moe_quantize_row_q8_0(halves, &blk, 32);
    n_cases++;
    CHECK_MSG(blk.d == 0x3c00, "d = 0x%04x, want 0x3c00 (1.0)", blk.d);
    for (int j = 0; j < 32; j++) CHECK_MSG(blk.qs[j] == halves_q[j], "q[%d] = %d, want %d", j, blk.qs[j], halves_q[j]);
    check_block(halves, "halves");

    /* amax from a negative value: d = 2, that value maps to -127. */
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) * 0.25f;
    x[9] = -254.0f;
    moe_quantize_row_q8_0(x, &blk, 32);
    n_cases++;
    CHECK(blk.d == 0x4000 && blk.qs[9] == -127 && blk.qs[31] == 2 && blk.qs[0] == -2);
    check_block(x, "negative amax");

    /* q uses the float32 d, not its fp16 rounding: find an x in a block of
     * amax 1 where the two differ and check which one was used. */
    {
        float d = 1.0f / 127.0f, id32 = 1.0f / d, id16 = 1.0f / moe_f16_to_f32(moe_f32_to_f16(d));
        float pick = 0;
        for (int k = 1; k < 100000 && !pick; k++) {
            float v = (float)k / 100000.0f;
            if (roundf(v * id32) != roundf(v * id16)) pick = v;
        }
        n_cases++;
        CHECK_MSG(pick != 0, "no discriminating value found");
        memset(x, 0, sizeof x);
        x[0] = 1.0f;
        x[1] = pick;
        x[2] = -pick;
        moe_quantize_row_q8_0(x, &blk, 32);
        CHECK_MSG(blk.qs[1] == (int8_t)roundf(pick * id32) && blk.qs[2] == (int8_t)roundf(-pick * id32),
                  "x = %.9g: q = %d, float32-d rule %d, fp16-d rule %d", pick, blk.qs[1], (int)roundf(pick * id32),
                  (int)roundf(pick * id16));
        check_block(x, "float32 d");
    }

    /* d that is not exact in fp16 (rounded to nearest even when stored). */
    for (int j = 0; j < 32; j++) x[j] = sinf((float)j * 0.7f) * 3.3f;
    check_block(x, "sine");
    /* Tiny values: d underflows fp16 to 0 while q still uses the float32 d. */
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 10) * 1e-9f;
    moe_quantize_row_q8_0(x, &blk, 32);
    n_cases++;
    CHECK(blk.d == 0 && blk.qs[31] == 127 && blk.qs[0] == -60);
    check_block(x, "tiny");
    /* Large values: d = 65504/127·... still finite in fp16. */
    for (int j = 0; j < 32; j++) x[j] = (float)(j * 997 % 61 - 30) * 1e5f;
    check_block(x, "large");
    /* A single non-zero value. */
    memset(x, 0, sizeof x);
    x[17] = 0.001f;
    check_block(x, "single");

    /* Several blocks in a row are independent; the row helpers go the same way. */
    float row[96], back[96], back2[96];
    moe_block_q8_0 blks[3], blks2[3];
    for (int j = 0; j < 96; j++) row[j] = (float)((j * 37) % 23 - 11) * (j < 32 ? 0.01f : j < 64 ? 10.0f : 0.0f);
    moe_quantize_row_q8_0(row, blks, 96);
    for (int b = 0; b < 3; b++) {
        moe_block_q8_0 one;
        moe_quantize_row_q8_0(row + 32 * b, &one, 32);
        n_cases++;
        CHECK_MSG(!memcmp(&one, &blks[b], sizeof one), "block %d of a row differs from the block alone", b);
    }
    moe_row_from_f32(MOE_DT_Q8_0, row, blks2, 96);
    CHECK(!memcmp(blks, blks2, sizeof blks));
    moe_dequantize_row_q8_0(blks, back, 96);
    moe_row_to_f32(MOE_DT_Q8_0, blks, back2, 96);
    CHECK(!memcmp(back, back2, sizeof back));
    for (int j = 64; j < 96; j++) CHECK(back[j] == 0.0f);

    /* The f16/bf16 row helpers use the scalar conversions. */
    uint16_t h[96], hb[96];
    moe_row_from_f32(MOE_DT_F16, row, h, 96);
    moe_row_from_f32(MOE_DT_BF16, row, hb, 96);
    moe_row_to_f32(MOE_DT_F16, h, back, 96);
    moe_row_to_f32(MOE_DT_BF16, hb, back2, 96);
    int bad = 0;
    for (int j = 0; j < 96; j++) {
        bad += h[j] != moe_f32_to_f16(row[j]) || hb[j] != moe_f32_to_bf16(row[j]);
        bad += back[j] != moe_f16_to_f32(h[j]) || back2[j] != moe_bf16_to_f32(hb[j]);
    }
    n_cases += 4;
    CHECK(bad == 0);
}

int main(void)
{
    test_f16_known();
    if (have_f16c()) {
#if HAVE_X86
        test_f16_hardware();
#endif
    } else {
        CHECK_MSG(0, "this CPU has no F16C: the f16 hardware comparison cannot run");
    }
    test_bf16();
    test_q8_0();
    printf("dtype_convert: %ld cases checked\n", n_cases);
    return check_summary("dtype_convert");
}
