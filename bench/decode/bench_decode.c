/*
 * bench-decode — single-process engine throughput on the bench
 * shape (8 layers, dim 2048, 64 experts top-6, ...) in any weight type the
 * engine loads, with the machine's read bandwidth as the roofline.
 *
 *   bench-decode [--model FILE] [--quick] [--reps N] [--act float|int8|both]
 *   bench-decode --model FILE --case SEQS:PROMPT:GEN [--case ...] [--threads N]
 *                [--reps N] [--act ...] [--bandwidth]
 *
 * Without --model it makes build/.../bench_q8_0.gguf with moe-mkmodel
 * (--preset bench --type q8_0) beside the binary, once.  --quick is a smoke
 * run on a small generated model (CI); its figures mean nothing.
 *
 * The default suite prints: resident memory after load beside the file
 * size; prefill (128 tokens) and decode (64 tokens) tokens/s at 1 and 2
 * threads; aggregate decode tokens/s with 4 and 16 concurrent sequences
 * (32-token prompts, 32 generated); decode at context 2048 beside context 32
 * (the 2048 positions of cache are filled with random latents instead of
 * running a 2048-token prefill: decode cost does not depend on their
 * values); the read bandwidth (median of 2-thread streaming reads over
 * 1 GiB and over the model file's mapping, the higher; see read_bandwidth);
 * and the decode speed as a fraction of the roofline, where bytes
 * per token = dense and attention weights + lm_head + the shared and the
 * used routed experts.
 *
 * --case is the form the bench/ scripts parse: SEQS sequences each prefill
 * a PROMPT-token prompt in one step, then GEN decode steps run with all of
 * them batched.  After one warm-up run, each of --reps runs prints one line
 *   case act=float threads=2 seqs=1 prompt=128 gen=0 rep=1 prefill_tps=X decode_tps=Y
 * (decode_tps is 0 when GEN is 0), preceded by "model", "file_bytes",
 * "kernels", "prefetch" (none, l1 or l1+l2: moe_kern_prefetch_name) and
 * "bytes_per_token" lines; with --bandwidth, a last
 * "bandwidth_gbs" line: the 2-thread read bandwidth, the best of 7 reads
 * (of 1 GiB of anonymous memory and of the model's mapping, each without
 * a prefetch and with each of readbw.h's) before and of 7 after the runs,
 * the higher first;
 * and each case line ends in bw_gbs=B: the read bandwidth around that run
 * (the mean of the best of 6 reads of the mapping just before it, 2 with
 * each prefetch, and of 6 just after), as the runs' threads read.  On a shared machine the
 * bandwidth moves from minute to minute; a run against the bandwidth of
 * its own moment is the fairer ratio, the best of all reads the strictest.
 */
#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "readbw.h"

static long rss_kib(void) { return moe_bench_proc_kb("/proc/self/status", "VmRSS:"); }

/* prompt ids (bench/lib/job.sh job_batch writes the same for the worker job) */
static int32_t tok(int seq, int i, int vocab) { return (int32_t)(((int64_t)seq * 7919 + (int64_t)i * 104729 + 13) % vocab); }

static void die(const char *what, const moe_err *err)
{
    fprintf(stderr, "bench-decode: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

static bool g_int8;
static bool g_repack; /* --act int8rp: int8 with the dense Q8_0 and Q4_K matrices repacked (--repack) */
static const char *const act_name[3] = {"float", "int8", "int8rp"};
static bool g_profile; /* --profile: where the decode steps' time went */

static moe_engine *mk(const moe_model *m, int threads, int max_seqs, int64_t max_ctx, int max_prompt)
{
    moe_engine_opts o;
    moe_engine_opts_default(&o);
    o.n_threads = threads;
    o.max_seqs = max_seqs;
    o.max_ctx = max_ctx;
    o.max_batch_tokens = max_prompt > 512 ? max_prompt : 512;
    o.act_q8 = g_int8;
    o.repack = g_repack;
    moe_engine *e;
    moe_err err;
    if (moe_engine_init(&e, m, &o, &err)) die("engine", &err);
    return e;
}

static int greedy(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* One line: microseconds per decode step, split by where they went. */
static void print_profile(moe_engine *e, int n_steps)
{
    moe_engine_profile pr;
    moe_engine_profile_get(e, &pr);
    moe_engine_profile_enable(e, false);
    const double us = 1e6 / n_steps, par = pr.mm_par_s + pr.attn_par_s;
    const double nw = pr.pool.runs ? (double)pr.pool.runs : 1.0;
    printf("profile us_per_step=%.1f serial=%.1f quant=%.1f solo=%.1f par_runs=%.1f (mm %.1f attn %.1f) "
           "runs_per_step=%.1f caller_own=%.1f caller_join_wait=%.1f workers_busy=%.1f worker_start_lag_us_per_run=%.2f "
           "worker_sleeps_per_step=%.2f\n",
           pr.step_s * us, (pr.step_s - par - pr.solo_s - pr.quant_s) * us, pr.quant_s * us, pr.solo_s * us, par * us,
           pr.mm_par_s * us, pr.attn_par_s * us, (double)pr.pool.runs / n_steps, pr.pool.own_s * us,
           pr.pool.join_s * us, pr.pool.busy_s * us, pr.pool.lag_s * 1e6 / nw, (double)pr.pool.sleeps / n_steps);
}

/* n_seq sequences: prompts of n_prompt (one step each), then n_gen decode
 * steps with all sequences batched.  Returns prefill and decode tokens/s. */
static void run_batch(moe_engine *e, int n_seq, int n_prompt, int n_gen, double *pf_tps, double *dec_tps)
{
    const moe_model *m = moe_engine_model(e);
    const int V = m->hp.vocab;
    moe_err err;
    int seq[64];
    int32_t *prompt = malloc((size_t)n_prompt * sizeof(int32_t)), last[64];
    moe_step_item it[64];
    for (int s = 0; s < n_seq; s++)
        if (moe_engine_seq_new(e, &seq[s], &err)) die("seq", &err);
    double t0 = moe_now();
    for (int s = 0; s < n_seq; s++) {
        for (int i = 0; i < n_prompt; i++) prompt[i] = tok(s, i, V);
        it[0] = (moe_step_item){.seq = seq[s], .tokens = prompt, .n_tokens = n_prompt, .logits = MOE_LOGITS_LAST};
        if (moe_engine_step(e, it, 1, &err) || it[0].status) die("prefill", &err);
        last[s] = greedy(it[0].out, V);
    }
    if (g_profile) moe_engine_profile_enable(e, true);
    const double t1 = moe_now();
    for (int g = 0; g < n_gen; g++) {
        for (int s = 0; s < n_seq; s++)
            it[s] = (moe_step_item){.seq = seq[s], .tokens = &last[s], .n_tokens = 1, .logits = MOE_LOGITS_LAST};
        if (moe_engine_step(e, it, n_seq, &err)) die("decode", &err);
        for (int s = 0; s < n_seq; s++) {
            if (it[s].status) die("decode item", &it[s].err);
            last[s] = greedy(it[s].out, V);
        }
    }
    const double t2 = moe_now();
    if (g_profile && n_gen > 0) print_profile(e, n_gen);
    for (int s = 0; s < n_seq; s++) moe_engine_seq_free(e, seq[s]);
    free(prompt);
    *pf_tps = n_seq * n_prompt / (t1 - t0);
    *dec_tps = n_gen > 0 ? (double)n_seq * n_gen / (t2 - t1) : 0.0;
}

/* Decode speed of one sequence whose cache already holds ctx positions
 * (random latents written straight into the cache). */
static double decode_at_ctx(moe_engine *e, int64_t ctx, int n_gen)
{
    const moe_model *m = moe_engine_model(e);
    const int V = m->hp.vocab, W = m->hp.kv_lora + m->hp.qk_rope;
    moe_kvcache *c = moe_engine_cache(e);
    moe_err err;
    int seq;
    if (moe_engine_seq_new(e, &seq, &err)) die("seq", &err);
    if (moe_kvcache_reserve(c, seq, ctx, &err)) die("reserve", &err);
    uint64_t r = 12345;
    for (int il = 0; il < m->hp.n_layer; il++)
        for (int64_t p = 0; p < ctx; p++) {
            float *v = moe_kvcache_at(c, seq, il, p);
            for (int i = 0; i < W; i++) {
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                v[i] = (float)((r >> 40) & 0xffff) / 32768.0f - 1.0f;
            }
        }
    moe_kvcache_set_len(c, seq, ctx);
    int32_t t = 1;
    double t0 = moe_now();
    for (int g = 0; g < n_gen; g++) {
        moe_step_item it = {.seq = seq, .tokens = &t, .n_tokens = 1, .logits = MOE_LOGITS_LAST};
        if (moe_engine_step(e, &it, 1, &err) || it.status) die("decode", &err);
        t = greedy(it.out, V);
    }
    double dt = moe_now() - t0;
    moe_engine_seq_free(e, seq);
    return n_gen / dt;
}

/* ---- read bandwidth ----
 *
 * The roofline's bandwidth is the best rate 2 threads read at, over two
 * kinds of memory: 1 GiB of anonymous memory, and the model file's own
 * mapping (MAP_SHARED, as the engine maps it; its pages are in the page
 * cache after a first pass), the memory the kernels actually read.  Each
 * pass also runs with the kernels' software prefetches (readbw.h: 8 KiB
 * ahead into L1, and that with 24 KiB ahead into L2, as the avx512 tiles
 * read).  (One plain stream over anonymous memory once measured 44 GB/s
 * while Q8_0 decode read its weights at 53; on an Intel Xeon the second
 * prefetch read 10% faster than the first.)  The best of every read is
 * the roofline (the strictest ratio); on the shared test machine the
 * readings still move between two levels from run to run. */

typedef struct bw_arg {
    const uint64_t *p;
    size_t n;
    int how;
    uint64_t sum;
} bw_arg;

static void *bw_read(void *a)
{
    bw_arg *b = a;
    b->sum = moe_bench_read(b->p, b->n, b->how);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* GB/s of one pass of threads over n words at p */
static double bw_pass(const uint64_t *p, size_t n, int threads, int how)
{
    pthread_t th[8];
    bw_arg a[8];
    volatile uint64_t sink = 0;
    const size_t per = n / (size_t)threads;
    double t0 = moe_now();
    for (int t = 0; t < threads; t++) {
        a[t] = (bw_arg){p + per * (size_t)t, per, how, 0};
        pthread_create(&th[t], NULL, bw_read, &a[t]);
    }
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        sink += a[t].sum;
    }
    (void)sink;
    return (double)(per * (size_t)threads * 8) / (moe_now() - t0) / 1e9;
}

/* The engine's own mapping of the model file (core/gguf.c: from a 2 MiB
 * address, with the huge-page advice), paged in: *len bytes to read (a
 * multiple of 64); NULL when the file is under 1 MiB, with a note on
 * stderr unless quiet. */
static const uint64_t *map_model(const moe_model *m, bool quiet, size_t *len)
{
    if (m->file_bytes < 1 << 20) {
        if (!quiet) fprintf(stderr, "bench-decode: the model is under 1 MiB; no bandwidth around each run\n");
        return NULL;
    }
    const uint64_t *map = moe_gguf_base(m->gguf);
    *len = (size_t)m->file_bytes & ~(size_t)63;
    bw_pass(map, *len / 8, 1, MOE_READ_PLAIN); /* page it in */
    return map;
}

/* median (best = false) or highest (best = true) of reps reads of each kind:
 * anonymous memory with each prefetch (MOE_READ_*), and the model's mapping
 * (the engine's own, when the file is 1 MiB or more) likewise; *anon and
 * *file get each kind's figure */
static double read_bandwidth(size_t bytes, const moe_model *m, int threads, int reps, bool best, double *anon_out,
                             double *file_out)
{
    threads = threads < 1 ? 1 : threads > 8 ? 8 : threads;
    double fig[2] = {0.0, 0.0};
    double *gbs = malloc((size_t)reps * MOE_READ_KINDS * sizeof(double));
    for (int kind = 0; kind < 2; kind++) {
        const uint64_t *p = NULL;
        size_t len = 0;
        uint64_t *buf = NULL;
        if (kind == 0) {
            buf = malloc(bytes);
            if (!buf) continue;
            for (size_t i = 0; i < bytes / 8; i++) buf[i] = i;
            p = buf, len = bytes;
        } else {
            if (!(p = map_model(m, true, &len))) continue;
        }
        /* the reads alternate between the prefetches; each prefetch's
         * reads kept apart (gbs[h·reps ..]), its best or median taken, and
         * the highest over the prefetches */
        for (int r = 0; r < reps; r++)
            for (int h = 0; h < MOE_READ_KINDS; h++) gbs[h * reps + r] = bw_pass(p, len / 8, threads, h);
        for (int h = 0; h < MOE_READ_KINDS; h++) {
            double *g = gbs + h * reps;
            qsort(g, (size_t)reps, sizeof(double), cmp_d);
            const double v = best ? g[reps - 1] : g[reps / 2];
            fig[kind] = v > fig[kind] ? v : fig[kind];
        }
        free(buf);
    }
    free(gbs);
    if (anon_out) *anon_out = fig[0];
    if (file_out) *file_out = fig[1];
    return fig[0] > fig[1] ? fig[0] : fig[1];
}

/* the best of two reads of the mapping with each prefetch */
static double map_bandwidth(const uint64_t *p, size_t len, int threads)
{
    double best = 0.0;
    for (int r = 0; r < 2; r++)
        for (int h = 0; h < MOE_READ_KINDS; h++) {
            const double g = bw_pass(p, len / 8, threads, h);
            best = g > best ? g : best;
        }
    return best;
}

static const char usage[] =
    "usage: bench-decode [--model FILE] [--quick] [--reps N] [--act float|int8|int8rp|both|all]\n"
    "                    [--decode-only]\n"
    "       bench-decode --model FILE --case SEQS:PROMPT:GEN [--case ...] [--threads N]\n"
    "                    [--reps N] [--act ...] [--bandwidth] [--profile]\n"
    "  --model FILE   any deepseek2 GGUF the engine loads (default: makes a Q8_0 bench model)\n"
    "  --quick        smoke run on a small generated model (figures mean nothing)\n"
    "  --reps N       runs per figure (default 3; the suite keeps the best, --case prints each)\n"
    "  --act A        activation path(s): int8 (the programs' default path), float (their\n"
    "                 --exact path), int8rp (int8 with --repack), both (float and int8, the\n"
    "                 default) or all three\n"
    "  --decode-only  the suite keeps only 2-thread single-sequence decode and the roofline\n"
    "  --case S:P:G   S sequences (1..64) prefill P tokens (1..8192) each, then G (0..100000)\n"
    "                 batched decode steps; prints one parseable line per run (no suite)\n"
    "  --threads N    engine threads for --case (1..256, default 2)\n"
    "  --bandwidth    with --case: also measure the 2-thread read bandwidth (before and after\n"
    "                 all runs, and around each run: its line's bw_gbs)\n"
    "  --profile      after each decode run, a 'profile' line: microseconds per step in serial\n"
    "                 work, activation quantization, runs on the pool (caller's share, its wait\n"
    "                 for the others, pool threads' busy time and start lag, sleeps)\n";

/* a whole decimal number in [lo, hi], or -1 */
static long parse_num(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    return v;
}

typedef struct bench_case {
    int seqs, prompt, gen;
} bench_case;

enum { MAX_CASES = 16 };

static int parse_case(const char *s, bench_case *c)
{
    char buf[64];
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    char *p1 = strchr(buf, ':'), *p2 = p1 ? strchr(p1 + 1, ':') : NULL;
    if (!p1 || !p2) return -1;
    *p1 = *p2 = 0;
    long a = parse_num(buf, 1, 64), b = parse_num(p1 + 1, 1, 8192), g = parse_num(p2 + 1, 0, 100000);
    if (a < 0 || b < 0 || g < 0) return -1;
    *c = (bench_case){(int)a, (int)b, (int)g};
    return 0;
}

/* --case mode: one line per run, for scripts */
static int run_cases(const char *model, const bench_case *cases, int n_cases, int threads, int reps,
                     const bool acts[3], bool bandwidth)
{
    moe_err err;
    const moe_kern_set *kset;
    if (moe_kern_choose(&kset, &err)) die("kernels", &err);
    moe_model *m;
    if (moe_model_open(&m, model, &err)) die("model", &err);
    printf("model %s\n", model);
    printf("file_bytes %llu\n", (unsigned long long)m->file_bytes);
    printf("kernels %s\n", moe_kern_name(kset));
    printf("prefetch %s\n", moe_kern_prefetch_name(kset));
    printf("bytes_per_token %llu\n", (unsigned long long)moe_model_bytes_per_token(m));
    double a0 = 0.0, f0 = 0.0, a1 = 0.0, f1 = 0.0;
    const double bw0 = bandwidth ? read_bandwidth((size_t)1 << 30, m, 2, 7, true, &a0, &f0) : 0.0;
    size_t map_len = 0;
    const uint64_t *map = bandwidth ? map_model(m, false, &map_len) : NULL;
    const int bw_threads = threads < 8 ? threads : 8;
    fflush(stdout);
    for (int mode = 0; mode < 3; mode++) {
        if (!acts[mode]) continue;
        g_int8 = mode >= 1;
        g_repack = mode == 2;
        for (int c = 0; c < n_cases; c++) {
            const bench_case *k = &cases[c];
            moe_engine *e = mk(m, threads, k->seqs, (int64_t)k->prompt + k->gen + 8, k->prompt);
            double pf, dc;
            run_batch(e, 1, k->prompt < 16 ? k->prompt : 16, 1, &pf, &dc); /* warm-up: page the weights in */
            for (int rep = 1; rep <= reps; rep++) {
                const double b0 = map ? map_bandwidth(map, map_len, bw_threads) : 0.0;
                run_batch(e, k->seqs, k->prompt, k->gen, &pf, &dc);
                printf("case act=%s threads=%d seqs=%d prompt=%d gen=%d rep=%d prefill_tps=%.3f decode_tps=%.3f",
                       act_name[mode], threads, k->seqs, k->prompt, k->gen, rep, pf, dc);
                if (map) printf(" bw_gbs=%.3f", (b0 + map_bandwidth(map, map_len, bw_threads)) / 2);
                printf("\n");
                fflush(stdout);
            }
            moe_engine_free(e);
        }
    }
    /* the machine may be shared: the best of 7 reads before and of 7 after
     * the runs, the higher is the roofline's (the stricter ratio; a median
     * taken under a passing load put moe's decode above its roofline) */
    if (bandwidth) {
        const double bw1 = read_bandwidth((size_t)1 << 30, m, 2, 7, true, &a1, &f1);
        printf("bandwidth_gbs %.3f (before the runs %.3f, after %.3f; anonymous memory %.3f, the model's mapping "
               "%.3f)\n",
               bw0 > bw1 ? bw0 : bw1, bw0, bw1, a0 > a1 ? a0 : a1, f0 > f1 ? f0 : f1);
    }
    moe_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    const char *model = NULL;
    bool quick = false, bandwidth = false, decode_only = false, acts[3] = {true, true, false};
    int reps = 3, threads = 2, n_cases = 0;
    bench_case cases[MAX_CASES];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            quick = true;
        } else if (!strcmp(a, "--decode-only")) {
            decode_only = true;
        } else if (!strcmp(a, "--bandwidth")) {
            bandwidth = true;
        } else if (!strcmp(a, "--profile")) {
            g_profile = true;
        } else if (!v) {
            fprintf(stderr, "bench-decode: %s: unknown flag or missing value\n%s", a, usage);
            return 2;
        } else if (!strcmp(a, "--model")) {
            model = argv[++i];
        } else if (!strcmp(a, "--reps") || !strcmp(a, "--threads")) {
            if ((n = parse_num(v, 1, !strcmp(a, "--reps") ? 1000 : 256)) < 0) {
                fprintf(stderr, "bench-decode: %s: bad value '%s'\n", a, v);
                return 2;
            }
            *(!strcmp(a, "--reps") ? &reps : &threads) = (int)n;
            i++;
        } else if (!strcmp(a, "--act")) {
            acts[0] = !strcmp(v, "float") || !strcmp(v, "both") || !strcmp(v, "all");
            acts[1] = !strcmp(v, "int8") || !strcmp(v, "both") || !strcmp(v, "all");
            acts[2] = !strcmp(v, "int8rp") || !strcmp(v, "all");
            if (!acts[0] && !acts[1] && !acts[2]) {
                fprintf(stderr, "bench-decode: --act: want float, int8, int8rp, both or all, not '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--case")) {
            if (n_cases == MAX_CASES || parse_case(v, &cases[n_cases])) {
                fprintf(stderr, "bench-decode: --case: want SEQS:PROMPT:GEN (1..64:1..8192:0..100000, at most %d), not '%s'\n",
                        MAX_CASES, v);
                return 2;
            }
            n_cases++;
            i++;
        } else {
            fprintf(stderr, "bench-decode: unknown flag %s\n%s", a, usage);
            return 2;
        }
    }
    if (n_cases > 0) {
        if (!model || quick) {
            fprintf(stderr, "bench-decode: --case needs --model and no --quick\n");
            return 2;
        }
        return run_cases(model, cases, n_cases, threads, reps, acts, bandwidth);
    }
    char path[4096], cmd[8192], exe[4096];
    ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (el <= 0) return 1;
    exe[el] = 0;
    const char *bindir = dirname(exe);
    if (!model) {
        snprintf(path, sizeof path, "%s/%s", bindir, quick ? "bench_quick.gguf" : "bench_q8_0.gguf");
        struct stat st;
        if (stat(path, &st) != 0) {
            snprintf(cmd, sizeof cmd, "'%s/moe-mkmodel' %s --type q8_0 -o '%s' >&2", bindir,
                     quick ? "--preset v3-mini" : "--preset bench", path);
            fprintf(stderr, "bench-decode: making %s\n", path);
            if (system(cmd) != 0) {
                fprintf(stderr, "bench-decode: moe-mkmodel failed\n");
                return 1;
            }
        }
        model = path;
    }
    moe_err err;
    moe_model *m;
    /* the engines below pick the same set (MOE_KERNELS caps it) */
    const moe_kern_set *kset;
    if (moe_kern_choose(&kset, &err)) die("kernels", &err);
    const long rss0 = rss_kib();
    if (moe_model_open(&m, model, &err)) die("model", &err);
    const long rss1 = rss_kib();
    const int np = quick ? 16 : 128, nd = quick ? 8 : 64;
    printf("# bench-decode: %s\n", model);
    printf("model file %.1f MiB; resident after load %.1f MiB (process grew %.1f MiB; weights stay in the mapping)\n",
           m->file_bytes / 1048576.0, rss1 / 1024.0, (rss1 - rss0) / 1024.0);
    printf("kernels: %s (prefetch %s); single-sequence rows are the best of %d runs\n", moe_kern_name(kset),
           moe_kern_prefetch_name(kset), reps);
    {
        FILE *la = fopen("/proc/loadavg", "r");
        char buf[128] = "?";
        if (la && fgets(buf, sizeof buf, la)) buf[strcspn(buf, "\n")] = 0;
        if (la) fclose(la);
        printf("load average at start: %s (other processes share the cores)\n", buf);
    }
    /* bandwidth first, while nothing else of ours is running */
    const size_t bw_bytes = quick ? (64u << 20) : (1u << 30);
    double a0, f0;
    const double bw0 = read_bandwidth(bw_bytes, m, 2, quick ? 3 : 7, false, &a0, &f0);
    const uint64_t bpt = moe_model_bytes_per_token(m);
    printf("read bandwidth (2 threads, median of %d reads a prefetch, the best prefetch): %.2f GB/s (%zu MiB of "
           "anonymous memory %.2f, the model's "
           "mapping %.2f)\n",
           quick ? 3 : 7, bw0, bw_bytes >> 20, a0, f0);
    printf("bytes per decoded token: %.1f MB (dense + attention + lm_head + shared + %d routed experts)\n", bpt / 1e6,
           m->hp.n_used);
    printf("roofline at that bandwidth: %.2f t/s\n", bw0 * 1e9 / (double)bpt);
    double dec2_mode[3] = {0, 0, 0};
    static const char *const mode_desc[3] = {"float32 (the --exact path)", "int8 (the default path)",
                                              "int8, dense Q8_0/Q4_K matrices repacked (--repack)"};
    for (int mode = 0; mode < 3; mode++) {
        if (!acts[mode]) continue;
        g_int8 = mode >= 1;
        g_repack = mode == 2;
        printf("\n== activations: %s\n", mode_desc[mode]);
        printf("%-52s %12s %12s\n", "case", "prefill t/s", "decode t/s");
        double dec2 = 0;
        for (int th = decode_only ? 2 : 1; th <= 2; th++) {
            moe_engine *e = mk(m, th, 1, np + nd + 8, np);
            double pf, dc;
            run_batch(e, 1, np, 1, &pf, &dc); /* warm-up: page the weights in */
            /* best of `reps` runs: the machine may be shared */
            pf = dc = 0;
            for (int rep = 0; rep < reps; rep++) {
                double p1, d1;
                run_batch(e, 1, np, nd, &p1, &d1);
                pf = p1 > pf ? p1 : pf;
                dc = d1 > dc ? d1 : dc;
            }
            char label[96];
            snprintf(label, sizeof label, "1 sequence, %d-token prompt, %d decoded, %d thr", np, nd, th);
            printf("%-52s %12.2f %12.2f\n", label, pf, dc);
            if (th == 2) dec2 = dc;
            moe_engine_free(e);
        }
        dec2_mode[mode] = dec2;
        if (decode_only) continue;
        for (int ns = 4; ns <= 16; ns *= 4) {
            moe_engine *e = mk(m, 2, ns, 80, 32);
            double pf, dc;
            const int p = quick ? 8 : 32, g = quick ? 4 : 32;
            run_batch(e, ns, p, g, &pf, &dc);
            char label[96];
            snprintf(label, sizeof label, "%d sequences, %d-token prompts, %d decoded, 2 thr", ns, p, g);
            printf("%-52s %12.2f %12.2f  (aggregate decode = %.2fx single)\n", label, pf, dc, dec2 > 0 ? dc / dec2 : 0);
            moe_engine_free(e);
        }
        {
            const int64_t big = quick ? 256 : 2048;
            moe_engine *e = mk(m, 2, 1, big + 64, 1);
            const double d32 = decode_at_ctx(e, 32, quick ? 4 : 32), dbig = decode_at_ctx(e, big, quick ? 4 : 32);
            printf("decode at context 32: %.2f t/s; at context %lld: %.2f t/s (%.0f%%), 2 thr\n", d32, (long long)big,
                   dbig, 100.0 * dbig / d32);
            moe_engine_free(e);
        }
        dec2_mode[mode] = dec2;
    }
    /* bandwidth again: the machine may be shared, so the roofline uses the
     * higher of the two medians (the stricter ratio) */
    const double bw1 = read_bandwidth(bw_bytes, m, 2, quick ? 3 : 7, false, NULL, NULL);
    const double bw = bw0 > bw1 ? bw0 : bw1, roof = bw * 1e9 / (double)bpt;
    printf("\nread bandwidth again after the runs: %.2f GB/s; roofline uses %.2f GB/s = %.2f t/s\n", bw1, bw, roof);
    for (int mode = 0; mode < 3; mode++)
        if (acts[mode])
            printf("single-sequence decode at 2 threads, %s activations: %.2f t/s = %.0f%% of roofline\n",
                   act_name[mode], dec2_mode[mode], 100.0 * dec2_mode[mode] / roof);
    moe_model_free(m);
    return 0;
}
