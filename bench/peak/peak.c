/*
 * bench-peak — the machine's compute peak for the prefill roofline: the
 * int8 dot product and the float32 FMA rate, in GOPS (10^9 operations a
 * second, a multiply-add counted as 2), on 1 and 2 threads.
 *
 *   bench-peak [--threads LIST] [--reps N] [--ms M] [--quick]
 *
 * The instructions are those of the kernel set core/kern chooses on this
 * CPU (cpuid, capped by MOE_KERNELS): avx512 -> vpdpbusd and vfmadd231ps on
 * ymm and zmm (the peak is the faster width), avx2 -> vpmaddubsw +
 * vpmaddwd + vpaddd and vfmadd231ps on ymm, reference -> scalar C.  Each
 * loop keeps a dozen independent chains in registers and touches no
 * memory, so it measures the execution units only: no real kernel reaches
 * it (loads, block scales, reductions), which is what a roofline is for.
 *
 * Each (loop, thread count) runs --reps times (default 5) for about --ms
 * milliseconds (default 100) and keeps the best: on a shared machine a
 * slower run means a thread lost its core, not a slower CPU.  Output, one
 * line each, for scripts (bench/throughput/run.sh):
 *   kernels avx512
 *   peak act=int8 threads=1 insn=vpdpbusd.ymm gops=123.4
 *   ...
 *   best act=int8 threads=1 gops=123.4 insn=vpdpbusd.ymm
 * "best" is the fastest loop of an act at a thread count.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kern.h"
#include "peak.h"

#define PEAK_MAX_THREADS 256
#define PEAK_MAX_LISTED 8

/* ---- the reference set's loops: plain C (whatever the compiler makes of
 * it at baseline x86-64), so the reference column is not empty ---- */

#define PEAK_OPAQUE_SCALAR(v) __asm__ volatile("" : "+r"(v))

static uint64_t ref_int8(uint64_t iters, int64_t *sink)
{
    /* each chain its own input: one shared product would be computed once */
    int32_t acc[8] = {0, 1, 2, 3, 4, 5, 6, 7}, a[8] = {3, 4, 5, 6, 7, 8, 9, 10};
    const int32_t b = -2;
    for (uint64_t i = 0; i < iters; i++) {
        for (int c = 0; c < 8; c++) {
            PEAK_OPAQUE_SCALAR(a[c]);
            acc[c] += (int32_t)(int8_t)a[c] * (int32_t)(uint8_t)b;
        }
    }
    for (int c = 0; c < 8; c++) *sink += acc[c];
    return iters * 8 * 2;
}

static uint64_t ref_f32(uint64_t iters, int64_t *sink)
{
    float acc[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    float a = 0.999f;
    for (uint64_t i = 0; i < iters; i++) {
        __asm__ volatile("" : "+m"(a));
        for (int c = 0; c < 8; c++) acc[c] = acc[c] * a + 1e-7f;
    }
    for (int c = 0; c < 8; c++) *sink += (int64_t)acc[c];
    return iters * 8 * 2;
}

static const peak_loop ref_loops[] = {
    {"int8", "scalar", ref_int8},
    {"float", "scalar", ref_f32},
    {0, 0, 0},
};

/* ---- timing ---- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct peak_run {
    peak_loop_fn fn;
    uint64_t iters;
    pthread_barrier_t *start;
    uint64_t ops;
    int64_t sink;
} peak_run;

static void *peak_thread(void *arg)
{
    peak_run *r = arg;
    pthread_barrier_wait(r->start);
    r->ops = r->fn(r->iters, &r->sink);
    return NULL;
}

/* n threads each run fn for iters rounds from one start; GOPS over the wall
 * time of the slowest, or a negative value when threads cannot start. */
static double peak_once(peak_loop_fn fn, int n, uint64_t iters, int64_t *sink)
{
    pthread_t tid[PEAK_MAX_THREADS];
    peak_run run[PEAK_MAX_THREADS];
    pthread_barrier_t start;
    if (pthread_barrier_init(&start, NULL, (unsigned)n + 1)) return -1.0;
    int started = 0;
    for (int i = 0; i < n; i++) {
        run[i] = (peak_run){fn, iters, &start, 0, 0};
        if (pthread_create(&tid[i], NULL, peak_thread, &run[i])) break;
        started++;
    }
    if (started < n) {
        /* the barrier would never open: nothing can be measured; the
         * started threads are left waiting and the process exits */
        return -1.0;
    }
    const double t0 = now_s();
    pthread_barrier_wait(&start);
    uint64_t ops = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(tid[i], NULL);
        ops += run[i].ops;
        *sink += run[i].sink;
    }
    const double dt = now_s() - t0;
    pthread_barrier_destroy(&start);
    return dt > 0.0 ? (double)ops / dt / 1e9 : -1.0;
}

/* rounds for about ms milliseconds on one thread (doubling from 1024) */
static uint64_t peak_calibrate(peak_loop_fn fn, double ms, int64_t *sink)
{
    uint64_t iters = 1024;
    for (;;) {
        const double t0 = now_s();
        fn(iters, sink);
        const double dt = now_s() - t0;
        if (dt * 1e3 >= ms / 4.0 || iters >= ((uint64_t)1 << 40)) {
            const double want = (double)iters * (ms / 1e3) / (dt > 1e-9 ? dt : 1e-9);
            return want < 1024.0 ? 1024 : want > 1e12 ? (uint64_t)1e12 : (uint64_t)want;
        }
        iters *= 2;
    }
}

static const char usage[] =
    "usage: bench-peak [--threads LIST] [--reps N] [--ms M] [--quick]\n"
    "The int8 dot-product and float32 FMA peaks of this CPU (GOPS, a multiply-add = 2 operations),\n"
    "with the instructions of the kernel set core/kern chooses (cpuid, capped by MOE_KERNELS).\n"
    "  --threads LIST  thread counts, comma-separated, each 1..256 (default 1,2; at most 8 counts)\n"
    "  --reps N        runs per figure, the best kept (1..100, default 5)\n"
    "  --ms M          milliseconds a run (1..10000, default 100)\n"
    "  --quick         --reps 2 --ms 10 (a smoke run; figures indicative)\n"
    "Prints 'kernels SET', then 'peak act=A threads=T insn=I gops=G' per loop and\n"
    "'best act=A threads=T gops=G insn=I' per act and thread count.\n";

/* a whole decimal number in [lo, hi], or -1 */
static long parse_int(const char *s, long lo, long hi)
{
    char *end;
    if (!s || !*s) return -1;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi) return -1;
    return v;
}

int main(int argc, char **argv)
{
    int threads[PEAK_MAX_LISTED] = {1, 2}, n_threads = 2;
    long reps = 5, ms = 100;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            reps = 2, ms = 10;
        } else if (!strcmp(a, "--reps") && v) {
            if ((reps = parse_int(v, 1, 100)) < 0) {
                fprintf(stderr, "bench-peak: --reps: want 1..100, not '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--ms") && v) {
            if ((ms = parse_int(v, 1, 10000)) < 0) {
                fprintf(stderr, "bench-peak: --ms: want 1..10000, not '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--threads") && v) {
            char buf[128];
            if (strlen(v) >= sizeof buf) {
                fprintf(stderr, "bench-peak: --threads: list too long\n");
                return 2;
            }
            memcpy(buf, v, strlen(v) + 1);
            n_threads = 0;
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                const long n = parse_int(t, 1, PEAK_MAX_THREADS);
                if (n < 0 || n_threads == PEAK_MAX_LISTED) {
                    fprintf(stderr, "bench-peak: --threads: want up to %d counts of 1..%d, not '%s'\n",
                            PEAK_MAX_LISTED, PEAK_MAX_THREADS, v);
                    return 2;
                }
                threads[n_threads++] = (int)n;
            }
            if (!n_threads) {
                fprintf(stderr, "bench-peak: --threads: empty list\n");
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "bench-peak: %s: unknown flag or missing value\n%s", a, usage);
            return 2;
        }
    }

    const moe_kern_set *k;
    moe_err err;
    if (moe_kern_choose(&k, &err)) {
        fprintf(stderr, "bench-peak: %s\n", err.msg);
        return 1;
    }
    const char *set = moe_kern_name(k);
    const peak_loop *loops = ref_loops;
#if defined(MOE_PEAK_X86)
    if (!strcmp(set, "avx512")) loops = peak_loops_avx512();
    else if (!strcmp(set, "avx2")) loops = peak_loops_avx2();
#endif
    printf("kernels %s\n", set);
    fflush(stdout);

    int64_t sink = 0;
    static const char *const acts[] = {"int8", "float"};
    for (int a = 0; a < 2; a++) {
        double best[PEAK_MAX_LISTED] = {0};
        const char *best_insn[PEAK_MAX_LISTED] = {0};
        for (const peak_loop *l = loops; l->fn; l++) {
            if (strcmp(l->act, acts[a])) continue;
            const uint64_t iters = peak_calibrate(l->fn, (double)ms, &sink);
            for (int t = 0; t < n_threads; t++) {
                double g = -1.0;
                for (long r = 0; r < reps; r++) {
                    const double x = peak_once(l->fn, threads[t], iters, &sink);
                    if (x < 0.0) {
                        fprintf(stderr, "bench-peak: cannot start %d threads\n", threads[t]);
                        return 1;
                    }
                    if (x > g) g = x;
                }
                printf("peak act=%s threads=%d insn=%s gops=%.1f\n", l->act, threads[t], l->insn, g);
                fflush(stdout);
                if (g > best[t]) best[t] = g, best_insn[t] = l->insn;
            }
        }
        for (int t = 0; t < n_threads; t++)
            if (best_insn[t]) printf("best act=%s threads=%d gops=%.1f insn=%s\n", acts[a], threads[t], best[t], best_insn[t]);
    }
    /* the sum of every result, so no loop is dead code; never printed */
    return sink == INT64_MIN ? 3 : 0;
}
