/* readbw.c — see readbw.h */
#include "readbw.h"

#include "kern/kern.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t moe_bench_read(const uint64_t *p, size_t n, int how)
{
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    if (how != MOE_READ_PLAIN) {
        for (size_t i = 0; i + 8 <= n; i += 8) {
            /* addresses, never dereferenced: a prefetch never faults, and
             * past the end it is computed as an integer */
            __builtin_prefetch((const void *)((uintptr_t)(p + i) + MOE_KERN_PF_L1_BYTES), 0, 3);
            if (how == MOE_READ_PF2) __builtin_prefetch((const void *)((uintptr_t)(p + i) + MOE_KERN_PF_L2_BYTES), 0, 2);
            s0 += p[i] + p[i + 4];
            s1 += p[i + 1] + p[i + 5];
            s2 += p[i + 2] + p[i + 6];
            s3 += p[i + 3] + p[i + 7];
        }
    } else {
        for (size_t i = 0; i + 4 <= n; i += 4) {
            s0 += p[i];
            s1 += p[i + 1];
            s2 += p[i + 2];
            s3 += p[i + 3];
        }
    }
    return s0 + s1 + s2 + s3;
}

long moe_bench_proc_kb(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    char line[256];
    long kb = -1;
    const size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n)) kb = atol(line + n);
    if (f) fclose(f);
    return kb;
}
