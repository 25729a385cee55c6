/*
 * peak_avx2.c — bench-peak's loops for the avx2 kernel set (-mavx2 -mfma):
 *   int8   vpmaddubsw + vpmaddwd + vpaddd on ymm, the sequence core/kern's
 *          avx2 int8 path uses for a 32-byte block (u8 x s8 -> s16 pairs ->
 *          s32 quads): 32 byte products = 64 operations a sequence
 *   float  vfmadd231ps on ymm: 8 lanes = 16 operations an instruction
 */
#include <immintrin.h>

#include "peak.h"

/* An empty asm that claims to change v: the compiler must redo the work
 * that depends on v every round (no hoisting of loop-invariant products),
 * and it costs no instruction. */
#define PEAK_OPAQUE(v) __asm__ volatile("" : "+x"(v))

/* int8: each chain its own input (a product of shared inputs would be
 * computed once and added six times); 5 chains x (input, accumulator) + the
 * constants and temporaries fit the 16 ymm registers */
enum { CHAINS_I8 = 5, CHAINS_F32 = 12 };

static uint64_t int8_maddubs(uint64_t iters, int64_t *sink)
{
    const __m256i b = _mm256_set1_epi8(-2), one = _mm256_set1_epi16(1);
    __m256i a[CHAINS_I8], acc[CHAINS_I8];
    for (int c = 0; c < CHAINS_I8; c++) a[c] = _mm256_set1_epi8((char)(3 + c)), acc[c] = _mm256_set1_epi32(c);
    for (uint64_t i = 0; i < iters; i++) {
        for (int c = 0; c < CHAINS_I8; c++) {
            PEAK_OPAQUE(a[c]);
            acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(a[c], b), one));
        }
    }
    __m256i s = acc[0];
    for (int c = 1; c < CHAINS_I8; c++) s = _mm256_add_epi32(s, acc[c]);
    *sink += _mm256_extract_epi32(s, 0);
    return iters * CHAINS_I8 * 32 * 2;
}

static uint64_t f32_fma256(uint64_t iters, int64_t *sink)
{
    __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-7f);
    __m256 acc[CHAINS_F32];
    for (int c = 0; c < CHAINS_F32; c++) acc[c] = _mm256_set1_ps((float)c);
    for (uint64_t i = 0; i < iters; i++) {
        PEAK_OPAQUE(a);
        for (int c = 0; c < CHAINS_F32; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    }
    __m256 s = acc[0];
    for (int c = 1; c < CHAINS_F32; c++) s = _mm256_add_ps(s, acc[c]);
    *sink += (int64_t)_mm256_cvtss_f32(s);
    return iters * CHAINS_F32 * 8 * 2;
}

static const peak_loop loops[] = {
    {"int8", "vpmaddubsw+vpmaddwd.ymm", int8_maddubs},
    {"float", "vfmadd231ps.ymm", f32_fma256},
    {0, 0, 0},
};

const peak_loop *peak_loops_avx2(void) { return loops; }
