/*
 * readbw.h — what the benchmarks read of the machine: the plain streaming
 * read they take its read bandwidth from (bench-decode's roofline,
 * bench-kern --stream's "read": 8-byte loads, four independent sums,
 * optionally software prefetches as the kernels make them), and the
 * process's own memory figures from /proc.
 */
#ifndef MOE_BENCH_READBW_H
#define MOE_BENCH_READBW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How a read prefetches: not at all, each line 8 KiB ahead into L1 (as
 * the kernels' dots), or that and each line 24 KiB ahead into L2 too (as
 * the avx512 tiles).  Which is fastest depends on the machine: on an
 * Intel Xeon (2026-12-06, 2 threads, 1 GiB) 22, 31 and 34 GB/s. */
enum { MOE_READ_PLAIN, MOE_READ_PF, MOE_READ_PF2, MOE_READ_KINDS };

/* The sum of the n words at p (so the reads cannot be dropped), read with
 * the prefetch `how` (MOE_READ_*). */
uint64_t moe_bench_read(const uint64_t *p, size_t n, int how);

/* The kB figure of the line starting with key (say "VmRSS:") in the /proc
 * file at path (say /proc/self/status), or -1 when there is none. */
long moe_bench_proc_kb(const char *path, const char *key);

#endif
