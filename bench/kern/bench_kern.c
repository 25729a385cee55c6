/*
 * bench_kern.c — the int8-activation matrix products of one kernel set on
 * one thread: the set's own product (moe_kern_matmul_rows_int8: avx512's
 * 4 × 4 register tiles, the K-quants' dots) against the generic tiling of
 * the same set's 1-row × 1..4-token dotn_int8 (the product before the
 * tiles), alternating, best of --reps, in GMAC/s (weights × tokens per
 * second).  Both give the same bits; the program checks it.  The q8_0rp
 * lines put the file layout's Q8_0 product beside the repacked one
 * (--repack), which must give the reference set's bits.  Pin it
 * (taskset -c 0) on a shared machine.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kern/kern_impl.h"
#include "quant_enc.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) - 0.5f;
}

/* Random rows × cols weights of `type` and ntok activation rows quantized
 * to its dot type in set k (xs: blocks between tokens); y0, y1 (and y2
 * when asked) hold rows × ntok floats. */
typedef struct inputs {
    moe_mat m;
    char *xq;
    int64_t xs;
    float *y0, *y1, *y2;
} inputs;

static void *xalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench-kern: out of memory\n");
        exit(1);
    }
    return p;
}

static int make_inputs(const moe_kern_set *k, uint32_t type, int64_t rows, int64_t cols, int64_t ntok, bool y2,
                       inputs *in)
{
    uint64_t rb;
    if (!moe_dtype_bytes(type, (uint64_t)cols, &rb)) return 1;
    char *w = xalloc((size_t)(rb * (uint64_t)rows));
    float *x = xalloc((size_t)cols * sizeof(float));
    const uint32_t dt = moe_kern_dot_type(type);
    const size_t xrow = moe_kern_act_row_bytes(dt, cols), ny = (size_t)(rows * ntok) * sizeof(float);
    in->xs = (int64_t)(xrow / moe_kern_act_row_bytes(dt, moe_kern_act_block(dt)));
    in->xq = xalloc(xrow * (size_t)ntok);
    in->y0 = xalloc(ny);
    in->y1 = xalloc(ny);
    in->y2 = y2 ? xalloc(ny) : NULL;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) x[i] = frand();
        moe_quant_row(type, x, w + (size_t)r * rb, cols);
    }
    for (int64_t t = 0; t < ntok; t++) {
        for (int64_t i = 0; i < cols; i++) x[i] = frand();
        moe_kern_quantize_act(k, dt, x, in->xq + (size_t)t * xrow, cols);
    }
    free(x);
    in->m = (moe_mat){type, rows, cols, (size_t)rb, w, NULL, 0};
    return 0;
}

static void free_inputs(inputs *in)
{
    free((void *)(uintptr_t)in->m.data);
    free(in->xq);
    free(in->y0);
    free(in->y1);
    free(in->y2);
}

/* 0: the same bits both ways; 1: they differ (a bug) */
static int run(const moe_kern_set *k, uint32_t type, const char *name, int64_t rows, int64_t cols, int64_t ntok,
               int reps)
{
    inputs in;
    if (make_inputs(k, type, rows, cols, ntok, false, &in)) return 1;
    const moe_kern_fns *f = moe_kern_for(k, type);
    double best0 = 1e30, best1 = 1e30;
    for (int i = 0; i < reps; i++) {
        const double t0 = now();
        moe_kern_matmul_int8_generic(f, &in.m, 0, rows, in.xq, in.xs, ntok, in.y0, rows);
        const double t1 = now();
        moe_kern_matmul_rows_int8(k, &in.m, 0, rows, in.xq, in.xs, ntok, in.y1, rows);
        const double t2 = now();
        best0 = t1 - t0 < best0 ? t1 - t0 : best0;
        best1 = t2 - t1 < best1 ? t2 - t1 : best1;
    }
    const double mac = (double)rows * (double)cols * (double)ntok * 1e-9;
    const int same = !memcmp(in.y0, in.y1, (size_t)(rows * ntok) * sizeof(float));
    printf("%-7s %6lld x %-6lld %4lld tok  dotn %7.2f  set %7.2f GMAC/s  x%.2f  %s\n", name, (long long)rows,
           (long long)cols, (long long)ntok, mac / best0, mac / best1, best0 / best1, same ? "same bits" : "BITS DIFFER");
    free_inputs(&in);
    return !same;
}

/* A repacked type (--repack's layouts: Q8_0, Q4_K) against the set's
 * product on the file's rows; the repacked values must be the reference
 * set's. */
static int run_rp(const moe_kern_set *k, uint32_t type, const char *name, int64_t rows, int64_t cols, int64_t ntok,
                  int reps)
{
    inputs in;
    if (make_inputs(k, type, rows, cols, ntok, true, &in)) return 1;
    void *rp = moe_xmalloc_lines(moe_kern_repack_bytes(type, rows, cols));
    moe_kern_repack(&in.m, rp);
    moe_mat mr = in.m;
    mr.rp = rp;
    double best0 = 1e30, best1 = 1e30;
    for (int i = 0; i < reps; i++) {
        const double t0 = now();
        moe_kern_matmul_rows_int8(k, &in.m, 0, rows, in.xq, in.xs, ntok, in.y0, rows);
        const double t1 = now();
        moe_kern_matmul_rows_int8(k, &mr, 0, rows, in.xq, in.xs, ntok, in.y1, rows);
        const double t2 = now();
        best0 = t1 - t0 < best0 ? t1 - t0 : best0;
        best1 = t2 - t1 < best1 ? t2 - t1 : best1;
    }
    moe_kern_matmul_rows_int8(moe_kern_reference(), &in.m, 0, rows, in.xq, in.xs, ntok, in.y2, rows);
    const double mac = (double)rows * (double)cols * (double)ntok * 1e-9;
    const int same = !memcmp(in.y1, in.y2, (size_t)(rows * ntok) * sizeof(float));
    printf("%-7s %6lld x %-6lld %4lld tok  file %7.2f  rp  %7.2f GMAC/s  x%.2f  %s\n", name, (long long)rows,
           (long long)cols, (long long)ntok, mac / best0, mac / best1, best0 / best1,
           same ? "reference bits" : "BITS DIFFER FROM THE REFERENCE");
    free(rp);
    free_inputs(&in);
    return !same;
}

int main(int argc, char **argv)
{
    const char *set = NULL, *only = NULL;
    int quick = 0, reps = 9;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--set") && i + 1 < argc) set = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            char *end;
            const long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000) {
                fprintf(stderr, "bench-kern: --reps takes 1..1000\n");
                return 2;
            }
            reps = (int)v;
        } else {
            fprintf(stderr, "usage: bench-kern [--set reference|avx2|avx512] [--reps N] [--only TYPE] [--quick]\n"
                            "  --set S      kernel set (default: the best this CPU runs, capped by MOE_KERNELS)\n"
                            "  --reps N     runs per figure, the best kept (default 9)\n"
                            "  --only TYPE  only the lines of TYPE (a name as printed: q4_0, iq4_nl, q8_0rp, ...)\n"
                            "  --quick      tiny shapes (a smoke test; figures mean nothing)\n");
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    const moe_kern_set *k = set ? moe_kern_by_name(set) : moe_kern_default();
    if (!k) {
        fprintf(stderr, "bench-kern: unknown kernel set '%s'\n", set);
        return 2;
    }
    uint64_t mask;
    moe_err err;
    if (moe_kern_cpu_mask(moe_kern_cpu_features(), moe_kern_name(k), &mask, &err) != MOE_OK) {
        fprintf(stderr, "bench-kern: %s\n", err.msg);
        return 2;
    }
    printf("kernels %s, 1 thread, best of %d\n", moe_kern_name(k), quick ? 1 : reps);
    static const struct {
        uint32_t type;
        const char *name;
    } types[] = {{MOE_DT_Q8_0, "q8_0"},     {MOE_DT_Q4_0, "q4_0"}, {MOE_DT_Q5_0, "q5_0"}, {MOE_DT_Q5_1, "q5_1"},
                 {MOE_DT_IQ4_NL, "iq4_nl"}, {MOE_DT_Q4_K, "q4_K"}, {MOE_DT_Q6_K, "q6_K"}, {MOE_DT_IQ4_XS, "iq4_xs"},
                 {MOE_DT_Q2_K, "q2_K"},     {MOE_DT_Q3_K, "q3_K"}, {MOE_DT_Q5_K, "q5_K"}};
    int ran = 0; /* lines --only let through */
#define ONLY(name) ((!only || !strcmp(only, (name))) && ++ran)
    static const int64_t toks[] = {1, 3, 16, 128};
    int bad = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        for (size_t j = 0; j < sizeof toks / sizeof toks[0] && ONLY(types[i].name); j++)
            bad |= quick ? run(k, types[i].type, types[i].name, 8, 512, toks[j] < 16 ? toks[j] : 5, 1)
                         : run(k, types[i].type, types[i].name, 1024, 2048, toks[j], reps);
    /* one token over the short rows of a real model's decode: DeepSeek's
     * per-head k_b (16 heads × 512 rows of 128, Q5_0 in a Q4_K_M file) and
     * V2-Lite-style expert downs (rows of 704; of 1408 in the Q4_0 and
     * IQ4_NL a V2-Lite Q2_K/Q3_K or IQ4_XS file falls back to), which take
     * the set's tile (rows of at most 1 KiB); v_b (16 × 128 rows of 512) in
     * the K-quants and Q5_1 rows of 1408 (1056 bytes) are controls: both
     * columns run the same dots there */
    static const struct {
        uint32_t type;
        const char *name;
        int64_t rows, cols;
    } shorts[] = {{MOE_DT_Q5_0, "q5_0", 8192, 128},  {MOE_DT_Q8_0, "q8_0", 8192, 128}, {MOE_DT_Q4_K, "q4_K", 2048, 512},
                  {MOE_DT_Q6_K, "q6_K", 2048, 512},  {MOE_DT_Q5_0, "q5_0", 2048, 704}, {MOE_DT_Q8_0, "q8_0", 2048, 704},
                  {MOE_DT_Q5_1, "q5_1", 2048, 704},  {MOE_DT_Q5_1, "q5_1", 2048, 1408},
                  {MOE_DT_Q4_0, "q4_0", 2048, 1408}, {MOE_DT_IQ4_NL, "iq4_nl", 2048, 1408}};
    for (size_t i = 0; i < sizeof shorts / sizeof shorts[0]; i++)
        if (ONLY(shorts[i].name))
            bad |= quick ? run(k, shorts[i].type, shorts[i].name, 8, shorts[i].cols, 1, 1)
                         : run(k, shorts[i].type, shorts[i].name, shorts[i].rows, shorts[i].cols, 1, reps);
    static const struct {
        uint32_t type;
        const char *name;
    } rps[] = {{MOE_DT_Q8_0, "q8_0rp"}, {MOE_DT_Q4_K, "q4_Krp"}};
    for (size_t i = 0; i < sizeof rps / sizeof rps[0]; i++)
        for (size_t j = 0; j < sizeof toks / sizeof toks[0] && ONLY(rps[i].name); j++)
            bad |= quick ? run_rp(k, rps[i].type, rps[i].name, 40, 512, toks[j] < 16 ? toks[j] : 5, 1)
                         : run_rp(k, rps[i].type, rps[i].name, 1024, 2048, toks[j], reps);
#undef ONLY
    if (!ran) {
        fprintf(stderr, "bench-kern: --only: no lines of '%s'\n", only);
        return 2;
    }
    return bad;
}
