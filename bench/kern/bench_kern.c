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
 *
 * --stream: single-sequence decode's view instead, the one-token products
 * streaming from memory on 1 and --threads threads (see stream_class).
 */
/* (_GNU_SOURCE, for MADV_HUGEPAGE, comes from the build) */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/mman.h>

#include "kern/kern_impl.h"
#include "quant_enc.h"
#include "readbw.h"
#include "threadpool.h"

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

/* ---- --stream ----------------------------------------------------------------
 *
 * Single-sequence decode reads every weight once a step, from memory, so
 * what bounds it is how fast each kernel streams from there with the
 * threads it has, beside what the memory gives a plain read at the same
 * moment (the machine's bandwidth moves from minute to minute).  For each
 * matrix class of the Q4_K_M bench model's decode: n matrices of one shape,
 * about --mb MiB in all (anonymous memory advised MADV_HUGEPAGE, as the
 * engine's mapping is), multiplied by one token, one pool run a matrix,
 * each thread a fixed contiguous share of its rows (the engine's runs
 * give each thread a region of consecutive chunks, and threads that
 * finish early take others' chunks; one run costs well under 1 µs here,
 * a matrix tens of µs); alternating with a plain read of the same rows in
 * the same split (readbw.h, with each of the kernels' prefetches: the
 * faster median is the "read") and with the same
 * kernel over a 512 KiB slice of the first matrix, 32 times after one
 * untimed pass (in cache: the compute rate).  Medians of --reps passes of
 * each, in GB/s of weights. */

typedef struct stream_ctx {
    const moe_kern_set *k;
    const moe_mat *m;
    int cur;          /* the matrix of this run */
    int64_t rows;     /* its rows the run covers (from row 0) */
    int read;         /* a plain read (MOE_READ_PF or _PF2) instead of the product: 0 */
    const void *xq;
    int64_t xs;
    float *y;
    _Alignas(64) uint64_t sink[256 * 8]; /* a thread's sum on its own cache line */
} stream_ctx;

static volatile uint64_t stream_sink; /* the reads' sums end here, so none is dropped */

static void stream_task(void *arg, int ith, int nth)
{
    stream_ctx *c = arg;
    const moe_mat *m = &c->m[c->cur];
    int64_t lo, hi;
    moe_pool_slice(c->rows, ith, nth, &lo, &hi);
    if (lo >= hi) return;
    if (!c->read) {
        moe_kern_matmul_rows_int8(c->k, m, lo, hi, c->xq, c->xs, 1, c->y, m->rows);
        return;
    }
    /* whole 8-byte words of the share (matrices start on 64 bytes) */
    const size_t b0 = ((size_t)lo * m->row_bytes + 7) & ~(size_t)7, b1 = ((size_t)hi * m->row_bytes) & ~(size_t)7;
    if (b0 < b1)
        c->sink[ith * 8] +=
            moe_bench_read((const uint64_t *)(const void *)((const char *)m->data + b0), (b1 - b0) / 8, c->read);
}

/* seconds of one pass: matrices [0, n) (rows each), or matrix 0's first
 * rows `loops` times */
static double stream_pass(moe_pool *pool, stream_ctx *c, int n, int64_t rows, int loops)
{
    c->rows = rows;
    const double t0 = now();
    for (int l = 0; l < loops; l++)
        for (int i = 0; i < n; i++) {
            c->cur = i;
            moe_pool_run(pool, stream_task, c);
        }
    return now() - t0;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* MiB of the last-level cache (-1: not known).  A class's matrices must be
 * well above it to stream from memory: this machine's is 300 MiB, where a
 * 2-thread read of 128 MiB ran at 35 GB/s against 28.5 of 1 GiB. */
static long llc_mib(void)
{
    long b = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
    b = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (b <= 0) b = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return b > 0 ? b >> 20 : -1;
}

/* MiB of anonymous huge pages the process has (-1: not known) */
static long anon_huge_mib(void)
{
    const long kb = moe_bench_proc_kb("/proc/self/smaps_rollup", "AnonHugePages:");
    return kb < 0 ? -1 : kb / 1024;
}

/* One class: rows × cols of `type`, about mib MiB of them.  0 when every
 * product gave the bits of one thread's, 1 when one did not, 3 when the
 * memory could not be had. */
static int stream_class(const moe_kern_set *k, uint32_t type, const char *name, int64_t rows, int64_t cols, int mib,
                        int threads, int reps, int loops)
{
    uint64_t rb;
    if (!moe_dtype_bytes(type, (uint64_t)cols, &rb)) return 1;
    /* each matrix on 64 bytes (the read's 8-byte words, whole lines) */
    const size_t mat = (size_t)rb * (size_t)rows, stride = (mat + 63) & ~(size_t)63, want = (size_t)mib << 20;
    const int n = want / stride > 1 ? (int)(want / stride) : 1;
    const size_t bytes = mat * (size_t)n, huge = (size_t)2 << 20, len = stride * (size_t)n + huge;
    char *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        fprintf(stderr, "bench-kern: --stream: cannot map %zu bytes: %s\n", len, strerror(errno));
        return 3;
    }
    char *w = (char *)(((uintptr_t)map + huge - 1) & ~(uintptr_t)(huge - 1));
    (void)madvise(w, len - huge, MADV_HUGEPAGE);
    /* 17 distinct random rows, repeated: the kernels' speed does not
     * depend on the values, and 17 divides no class's row count, so
     * consecutive matrices differ (a row no thread computes keeps another
     * matrix's value, which the bits check below sees) */
    float *x = xalloc((size_t)cols * sizeof(float));
    const int64_t distinct = 17;
    char *row0 = xalloc((size_t)rb * (size_t)distinct);
    for (int64_t r = 0; r < distinct; r++) {
        for (int64_t i = 0; i < cols; i++) x[i] = frand();
        moe_quant_row(type, x, row0 + (size_t)r * rb, cols);
    }
    moe_mat *m = xalloc((size_t)n * sizeof *m);
    for (int i = 0; i < n; i++) {
        char *d = w + (size_t)i * stride;
        for (int64_t r = 0; r < rows; r++)
            memcpy(d + (size_t)r * rb, row0 + (size_t)(((int64_t)i * rows + r) % distinct) * rb, rb);
        m[i] = (moe_mat){type, rows, cols, (size_t)rb, d, NULL, 0};
    }
    free(row0);
    const uint32_t dt = moe_kern_dot_type(type);
    const size_t xrow = moe_kern_act_row_bytes(dt, cols);
    const int64_t xs = (int64_t)(xrow / moe_kern_act_row_bytes(dt, moe_kern_act_block(dt)));
    for (int64_t i = 0; i < cols; i++) x[i] = frand();
    char *xq = xalloc(xrow);
    moe_kern_quantize_act(k, dt, x, xq, cols);
    free(x);
    float *y = xalloc((size_t)rows * sizeof(float)), *y1 = xalloc((size_t)rows * sizeof(float));
    moe_kern_matmul_rows_int8(k, &m[n - 1], 0, rows, xq, xs, 1, y1, rows); /* one thread's bits */
    /* the in-cache slice: 512 KiB of rows, an even count (the K-quants'
     * one-token product takes rows two at a time; an odd slice would time
     * its one-row tail too) */
    int64_t slice = (int64_t)((512u << 10) / rb) & ~(int64_t)1;
    slice = slice < 2 ? (rows < 2 ? rows : 2) : slice > rows ? rows : slice;
    const long hmib = anon_huge_mib();
    printf("stream %-6s %5lld x %-5lld x %d (%.1f MB)", name, (long long)rows, (long long)cols, n, (double)bytes / 1e6);
    if (hmib >= 0) printf(", %ld MiB in 2 MiB pages", hmib);
    printf("\n");
    int bad = 0;
    stream_ctx *c = moe_xmalloc_lines(sizeof *c);
    *c = (stream_ctx){.k = k, .m = m, .xq = xq, .xs = xs, .y = y};
    double *tk = xalloc((size_t)reps * 4 * sizeof(double)), *tr = tk + reps, *tr2 = tr + reps, *tc = tr2 + reps;
    const int counts[2] = {1, threads};
    for (int ti = 0; ti < (threads > 1 ? 2 : 1); ti++) {
        moe_pool *pool;
        moe_err err;
        if (moe_pool_init(&pool, counts[ti], &err) != MOE_OK) {
            fprintf(stderr, "bench-kern: %s\n", err.msg);
            bad = 3;
            break;
        }
        int diff = 0;
        for (int r = 0; r < reps; r++) {
            for (int64_t i = 0; i < rows; i++) y[i] = NAN; /* a row no thread writes differs */
            c->read = 0;
            tk[r] = stream_pass(pool, c, n, rows, 1);
            diff |= memcmp(y, y1, (size_t)rows * sizeof(float)) != 0; /* the last matrix's rows */
            c->read = MOE_READ_PF;
            tr[r] = stream_pass(pool, c, n, rows, 1);
            c->read = MOE_READ_PF2;
            tr2[r] = stream_pass(pool, c, n, rows, 1);
            c->read = 0;
            (void)stream_pass(pool, c, 1, slice, 1); /* the slice into the caches */
            tc[r] = stream_pass(pool, c, 1, slice, loops);
        }
        moe_pool_free(pool);
        const double gk = (double)bytes / median(tk, reps) / 1e9;
        const double mr = median(tr, reps), mr2 = median(tr2, reps), gr = (double)bytes / (mr < mr2 ? mr : mr2) / 1e9;
        const double gc = (double)slice * (double)rb * loops / median(tc, reps) / 1e9;
        printf("stream %-6s threads %d: kernel %6.2f GB/s  read %6.2f  in cache %6.2f  kernel/read %.2f  %s\n", name,
               counts[ti], gk, gr, gc, gk / gr, diff ? "BITS DIFFER" : "same bits");
        bad |= diff;
    }
    for (int t = 0; t < 256; t++) stream_sink += c->sink[t * 8];
    free(c);
    free(tk);
    free(y);
    free(y1);
    free(xq);
    free(m);
    munmap(map, len);
    return bad;
}

/* The classes of the Q4_K_M bench model's decoded token (moe-gguf
 * --summary: q4_K 168 MB, q6_K 63, q5_0 38, q8_0 37 of its 309 MB), and
 * the two of its attention, named by tensor: a layer's attn_k_b (16 heads
 * of 512 rows of 128 values, Q5_0 as the Q4_K fallback for rows under
 * 256, as in real Q4_K_M files; 5.8 MB a token) and attn_v_b (16 heads of
 * 128 rows of 512, Q4_K; 4.7 MB).  The engine multiplies each head's rows
 * by that head's own vector, here one vector takes every row: the same
 * kernel on the same bytes. */
static int stream_all(const moe_kern_set *k, const char *only, int mib, int threads, int reps, int loops)
{
    static const struct {
        uint32_t type;
        const char *name;
        int64_t rows, cols;
    } cls[] = {{MOE_DT_Q4_K, "q4_K", 704, 2048},   /* an expert's gate or up */
               {MOE_DT_Q6_K, "q6_K", 2048, 2048},  /* output, the dense down: rows of 2048 */
               {MOE_DT_Q5_0, "q5_0", 2048, 704},   /* an expert's down */
               {MOE_DT_Q8_0, "q8_0", 2048, 704},   /* an expert's down (the other layers) */
               {MOE_DT_Q5_0, "k_b", 8192, 128},    /* attention's key product, per head */
               {MOE_DT_Q4_K, "v_b", 2048, 512}};   /* attention's value product, per head */
    int bad = 0, ran = 0;
    for (size_t i = 0; i < sizeof cls / sizeof cls[0]; i++)
        if (!only || !strcmp(only, cls[i].name)) {
            ran++;
            bad |= stream_class(k, cls[i].type, cls[i].name, cls[i].rows, cls[i].cols, mib, threads, reps, loops);
        }
    if (!ran) {
        fprintf(stderr, "bench-kern: --stream --only: no class '%s' (q4_K, q6_K, q5_0, q8_0, k_b, v_b)\n", only);
        return 2;
    }
    return bad;
}

static const char usage[] =
    "usage: bench-kern [--set reference|avx2|avx512] [--reps N] [--only TYPE] [--quick]\n"
    "       bench-kern --stream [--mb N] [--threads N] [--set S] [--reps N] [--only TYPE] [--quick]\n"
    "  --set S      kernel set (default: the best this CPU runs, capped by MOE_KERNELS)\n"
    "  --reps N     runs per figure (default 9: the best kept; --stream: the median)\n"
    "  --only TYPE  only the lines of TYPE (a name as printed: q4_0, iq4_nl, q8_0rp, ...;\n"
    "               --stream: one class, q4_K q6_K q5_0 q8_0 k_b v_b)\n"
    "  --quick      tiny shapes (a smoke test; figures mean nothing)\n"
    "  --stream     one token's products of the Q4_K_M bench model's matrix classes (its\n"
    "               experts, dense matrices and attention's per-head k_b and v_b) streaming\n"
    "               from memory, on 1 and --threads threads, against a plain read of the same\n"
    "               bytes and the same kernel in cache (GB/s of weights)\n"
    "  --mb N       --stream: MiB of weights a class (1..65536; default twice the last-level\n"
    "               cache, at least 160: keep it well above the cache, or the figures are its)\n"
    "  --threads N  --stream: threads of the second line (1..256, default 2)\n"
    "Exit status: 0, 1 when two products that must agree differ in a bit, 2 on a bad argument,\n"
    "3 when --stream cannot get its memory or threads.\n";

/* argv[i + 1] as an integer in [lo, hi], or exits with a message */
static int int_arg(int argc, char **argv, int i, long lo, long hi)
{
    char *end = NULL;
    const long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
    if (i + 1 >= argc || *end || end == argv[i + 1] || v < lo || v > hi) {
        fprintf(stderr, "bench-kern: %s takes %ld..%ld (--help)\n", argv[i], lo, hi);
        exit(2);
    }
    return (int)v;
}

/* argv[i + 1], or exits with a message */
static const char *str_arg(int argc, char **argv, int i)
{
    if (i + 1 >= argc) {
        fprintf(stderr, "bench-kern: %s needs a value (--help)\n", argv[i]);
        exit(2);
    }
    return argv[i + 1];
}

int main(int argc, char **argv)
{
    const char *set = NULL, *only = NULL;
    int quick = 0, reps = 9, stream = 0, mib = 0, threads = 2, stream_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--stream")) stream = 1;
        else if (!strcmp(argv[i], "--set")) set = str_arg(argc, argv, i++);
        else if (!strcmp(argv[i], "--only")) only = str_arg(argc, argv, i++);
        else if (!strcmp(argv[i], "--reps")) reps = int_arg(argc, argv, i++, 1, 1000);
        else if (!strcmp(argv[i], "--mb")) mib = int_arg(argc, argv, i++, 1, 65536), stream_only = 1;
        else if (!strcmp(argv[i], "--threads")) threads = int_arg(argc, argv, i++, 1, 256), stream_only = 1;
        else {
            if (strcmp(argv[i], "--help")) fprintf(stderr, "bench-kern: unknown argument %s\n", argv[i]);
            fputs(usage, strcmp(argv[i], "--help") ? stderr : stdout);
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    if (stream_only && !stream) {
        fprintf(stderr, "bench-kern: --mb and --threads go with --stream (--help)\n");
        return 2;
    }
    const moe_kern_set *k = set ? moe_kern_by_name(set) : moe_kern_default();
    if (!k) {
        fprintf(stderr, "bench-kern: unknown kernel set '%s'\n", set);
        return 2;
    }
    uint64_t mask;
    moe_err err;
    if (moe_kern_check_env(&err) != MOE_OK ||
        moe_kern_cpu_mask(moe_kern_cpu_features(), moe_kern_name(k), &mask, &err) != MOE_OK) {
        fprintf(stderr, "bench-kern: %s\n", err.msg);
        return 2;
    }
    if (stream) {
        const long llc = llc_mib();
        if (!mib) mib = llc > 80 ? (int)(llc > 32768 ? 65536 : 2 * llc) : 160;
        printf("kernels %s (prefetch %s), one token, medians of %d; %d MiB a class (last-level cache ",
               moe_kern_name(k), moe_kern_prefetch_name(k), quick ? 1 : reps, quick ? 2 : mib);
        if (llc > 0) printf("%ld MiB)\n", llc);
        else printf("size not known)\n");
        return stream_all(k, only, quick ? 2 : mib, threads, quick ? 1 : reps, quick ? 2 : 32);
    }
    printf("kernels %s, 1 thread, best of %d\n", moe_kern_name(k), quick ? 1 : reps);
    static const struct {
        uint32_t type;
        const char *name;
    } types[] = {{MOE_DT_Q8_0, "q8_0"},     {MOE_DT_Q4_0, "q4_0"}, {MOE_DT_Q4_1, "q4_1"}, {MOE_DT_Q5_0, "q5_0"},
                 {MOE_DT_Q5_1, "q5_1"},     {MOE_DT_IQ4_NL, "iq4_nl"}, {MOE_DT_Q4_K, "q4_K"}, {MOE_DT_Q6_K, "q6_K"},
                 {MOE_DT_IQ4_XS, "iq4_xs"}, {MOE_DT_Q2_K, "q2_K"}, {MOE_DT_Q3_K, "q3_K"}, {MOE_DT_Q5_K, "q5_K"}};
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
     * the set's tile (rows of at most 1 KiB), and the Q5_1 rows of 1408
     * (1056 bytes) of a V2-Lite Q5_K_M, which avx512 takes through its
     * 1-row tile; v_b (16 × 128 rows of 512) in the K-quants, and V3's and
     * R1's q_b (rows of 1536: 6 super-blocks, a group short of 8) */
    static const struct {
        uint32_t type;
        const char *name;
        int64_t rows, cols;
    } shorts[] = {{MOE_DT_Q5_0, "q5_0", 8192, 128},  {MOE_DT_Q8_0, "q8_0", 8192, 128}, {MOE_DT_Q4_K, "q4_K", 2048, 512},
                  {MOE_DT_Q6_K, "q6_K", 2048, 512},  {MOE_DT_Q5_0, "q5_0", 2048, 704}, {MOE_DT_Q8_0, "q8_0", 2048, 704},
                  {MOE_DT_Q5_1, "q5_1", 2048, 704},  {MOE_DT_Q5_1, "q5_1", 2048, 1408},
                  {MOE_DT_Q4_0, "q4_0", 2048, 1408}, {MOE_DT_IQ4_NL, "iq4_nl", 2048, 1408},
                  {MOE_DT_Q4_K, "q4_K", 1024, 1536}};
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
