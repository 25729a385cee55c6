/*
 * peak.h — the inner loops of bench-peak: each runs `iters` rounds of
 * independent multiply-accumulate chains in registers (no memory traffic)
 * and returns the operations it did, counting a multiply-add as 2 (one
 * multiply, one add per lane: int8 lanes are byte products, float lanes
 * float32 FMAs).  The result goes to *sink so that nothing is optimised away.
 *
 * One translation unit per instruction set (peak_avx2.c, peak_avx512.c),
 * each compiled with its own target flags as core/kern's sets are; the
 * reference loops (peak.c) are baseline C.
 */
#ifndef MOE_BENCH_PEAK_H
#define MOE_BENCH_PEAK_H

#include <stdint.h>

typedef uint64_t (*peak_loop_fn)(uint64_t iters, int64_t *sink);

typedef struct peak_loop {
    const char *act;  /* "int8" or "float" */
    const char *insn; /* what it runs, e.g. "vpdpbusd.zmm" */
    peak_loop_fn fn;
} peak_loop;

/* The loops of each set, NULL-terminated; NULL where the build has no such
 * set (not x86-64). */
const peak_loop *peak_loops_avx2(void);
const peak_loop *peak_loops_avx512(void);

#endif
