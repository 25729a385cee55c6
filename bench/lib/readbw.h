/*
 * readbw.h — what the benchmarks read of the machine: the plain streaming
 * read they take its read bandwidth from (bench-decode's roofline,
 * bench-kern --stream's "read": 8-byte loads, four independent sums,
 * optionally a software prefetch 8 KiB ahead, as the kernels prefetch),
 * and the process's own memory figures from /proc.
 */
#ifndef MOE_BENCH_READBW_H
#define MOE_BENCH_READBW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The sum of the n words at p (so the reads cannot be dropped). */
uint64_t moe_bench_read(const uint64_t *p, size_t n, bool prefetch);

/* The kB figure of the line starting with key (say "VmRSS:") in the /proc
 * file at path (say /proc/self/status), or -1 when there is none. */
long moe_bench_proc_kb(const char *path, const char *key);

#endif
