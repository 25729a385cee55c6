/*
 * kern_avx512.c — the avx512 set: kern_simd.inc compiled with AVX-512
 * F/VL/BW/DQ + VNNI on top of the avx2 flags (core/CMakeLists.txt).  The
 * same source as avx2, so the same bits: AVX-512VL gives the compiler
 * ymm16-31 for it, the int8 path uses vpdpbusd (KERN_VNNI, exact like the
 * maddubs + madd it replaces; see q8q8_block) and 4 × 4 register tiles of
 * rows × tokens (TILE_INT8_Q8_0), and the K-quant float loop
 * puts two of avx2's 8-lane groups in one 512-bit register (KERN_AVX512;
 * lane for lane the same operations, see kern_simd_q.inc).
 */
#define KERN_SET avx512
#define KERN_VNNI 1
#define KERN_AVX512 1 /* 512-bit registers where the lanes stay avx2's (kern_simd_q.inc) */
#include "kern_simd.inc"
