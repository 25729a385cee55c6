/*
 * kern_avx2.c — the avx2 set: kern_simd.inc compiled for AVX2 + FMA + F16C
 * (core/CMakeLists.txt gives this file its target flags; nothing else in
 * the program is compiled for them).
 */
#define KERN_SET avx2
#include "kern_simd.inc"
