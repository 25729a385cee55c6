/*
 * peak_avx512.c — bench-peak's loops for the avx512 kernel set (AVX-512
 * F/VL/BW/DQ + VNNI), at both widths: core/kern's avx512 set runs vpdpbusd
 * on ymm, and some CPUs (Intel with two 512-bit FMA ports) double their
 * rate on zmm, others (AMD Zen 4) split a zmm instruction in two; the peak
 * is the faster of the two.
 *   int8   vpdpbusd: 4 byte products summed into each int32 lane, 64
 *          operations an instruction on ymm, 128 on zmm
 *   float  vfmadd231ps: 16 operations an instruction on ymm, 32 on zmm
 */
#include <immintrin.h>

#include "peak.h"

#define PEAK_OPAQUE(v) __asm__ volatile("" : "+v"(v))

/* enough independent chains to cover the latency (4-5 cycles) at two
 * instructions a cycle */
enum { CHAINS = 12 };

static uint64_t int8_vnni512(uint64_t iters, int64_t *sink)
{
    __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
    __m512i acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_epi32(c);
    for (uint64_t i = 0; i < iters; i++) {
        PEAK_OPAQUE(a);
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_dpbusd_epi32(acc[c], a, b);
    }
    __m512i s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm512_add_epi32(s, acc[c]);
    *sink += _mm512_reduce_add_epi32(s);
    return iters * CHAINS * 64 * 2;
}

static uint64_t int8_vnni256(uint64_t iters, int64_t *sink)
{
    __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2);
    __m256i acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_epi32(c);
    for (uint64_t i = 0; i < iters; i++) {
        PEAK_OPAQUE(a);
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_dpbusd_epi32(acc[c], a, b);
    }
    __m256i s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm256_add_epi32(s, acc[c]);
    *sink += _mm256_extract_epi32(s, 0);
    return iters * CHAINS * 32 * 2;
}

static uint64_t f32_fma512(uint64_t iters, int64_t *sink)
{
    __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-7f);
    __m512 acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_ps((float)c);
    for (uint64_t i = 0; i < iters; i++) {
        PEAK_OPAQUE(a);
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    }
    __m512 s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm512_add_ps(s, acc[c]);
    *sink += (int64_t)_mm512_reduce_add_ps(s);
    return iters * CHAINS * 16 * 2;
}

static uint64_t f32_fma256(uint64_t iters, int64_t *sink)
{
    __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-7f);
    __m256 acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps((float)c);
    for (uint64_t i = 0; i < iters; i++) {
        PEAK_OPAQUE(a);
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    }
    __m256 s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm256_add_ps(s, acc[c]);
    *sink += (int64_t)_mm256_cvtss_f32(s);
    return iters * CHAINS * 8 * 2;
}

static const peak_loop loops[] = {
    {"int8", "vpdpbusd.ymm", int8_vnni256},
    {"int8", "vpdpbusd.zmm", int8_vnni512},
    {"float", "vfmadd231ps.ymm", f32_fma256},
    {"float", "vfmadd231ps.zmm", f32_fma512},
    {0, 0, 0},
};

const peak_loop *peak_loops_avx512(void) { return loops; }
