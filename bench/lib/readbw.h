/*
 * readbw.h — the plain streaming read the benchmarks take a machine's read
 * bandwidth from (bench-decode's roofline, bench-kern --stream's "read"):
 * 8-byte loads, four independent sums, optionally a software prefetch
 * 8 KiB ahead (as the kernels prefetch).
 */
#ifndef MOE_BENCH_READBW_H
#define MOE_BENCH_READBW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The sum of the n words at p (so the reads cannot be dropped). */
uint64_t moe_bench_read(const uint64_t *p, size_t n, bool prefetch);

#endif
