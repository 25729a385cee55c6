/*
 * engine_golden.c — a fixture model against its expected logits, teacher-
 * forced, by the rules of the fixtures' README.
 *
 *   engine_golden MODEL REF TOL MARGIN [int8]
 *     MODEL  fixture base name (tiny_f32; quant/kq_v3_q4_k_m for the
 *            fixtures' quant/ folder)          REF  exact | llamacpp
 *     TOL    max |d| per row                     MARGIN  greedy must match
 *                                                where the margin > MARGIN (0 = every row)
 *     int8   int8-activation path (each quantized weight's dot type): the
 *            README's llamacpp rule, median over rows of d ≤ TOL, no greedy
 *            requirement; int8rp: the same with --repack's layout
 *
 * Runs three configurations: AVX2 kernels, absorbed prefill, 1 thread;
 * AVX2 kernels, decompressed prefill, 2 threads, cache blocks of 4;
 * scalar reference kernels, prompt in chunks of 5, 1 thread.
 * Prints the kernel set, rows compared and max d of each.
 */
#include "check.h"
#include "engine_util.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct cfg {
    const char *name;
    bool reference;
    int decompress_min;
    int threads;
    int block;
    int chunk;
} cfg;

int main(int argc, char **argv)
{
    if (argc != 5 && !(argc == 6 && (!strcmp(argv[5], "int8") || !strcmp(argv[5], "int8rp")))) {
        fprintf(stderr, "usage: engine_golden MODEL REF TOL MARGIN [int8|int8rp]\n");
        return 2;
    }
    const bool int8 = argc == 6, repack = int8 && !strcmp(argv[5], "int8rp");
    const char *model = argv[1], *ref = argv[2];
    const double tol = atof(argv[3]), min_margin = atof(argv[4]);
    const char *fixtures = getenv("MOE_FIXTURES");
    if (!fixtures) return 2;
    char dir[2048];
    const char *slash = strrchr(model, '/');
    if (slash) { /* "quant/kq_v3_q4_k_m": models and expected of a sub-folder */
        snprintf(dir, sizeof dir, "%s/%.*s", fixtures, (int)(slash - model), model);
        model = slash + 1;
    } else {
        snprintf(dir, sizeof dir, "%s", fixtures);
    }
    expected x;
    CHECK_MSG(expected_load(&x, dir, model, ref) == 0, "loading expected %s.%s", model, ref);
    if (check_n_fail) return check_summary("engine_golden");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s.gguf", dir, model);
    moe_err err;
    moe_model *m;
    CHECK_MSG(moe_model_open(&m, path, &err) == MOE_OK, "%s", err.msg);
    if (check_n_fail) return check_summary("engine_golden");
    CHECK(m->hp.vocab == x.n_vocab);

    const cfg cfgs[] = {
        {"best/absorbed/1t", false, 0, 1, 16, 0}, /* best: this CPU's set under MOE_KERNELS */
        {"best/decompressed/2t/block4", false, 2, 2, 4, 0},
        {"reference/chunks5/1t", true, 2, 1, 16, 5},
    };
    float *out = malloc((size_t)x.rows * x.n_vocab * sizeof(float));
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        moe_engine_opts o;
        moe_engine_opts_default(&o);
        o.kernels = cfgs[c].reference ? moe_kern_reference() : NULL;
        o.decompress_min = cfgs[c].decompress_min;
        o.n_threads = cfgs[c].threads;
        o.block_size = cfgs[c].block;
        o.max_ctx = 64;
        o.max_seqs = 2;
        o.max_batch_tokens = 32;
        o.act_q8 = int8;
        o.repack = repack;
        o.par_min_cost = 0; /* always split work among the threads */
        moe_engine *e;
        CHECK_MSG(moe_engine_init(&e, m, &o, &err) == MOE_OK, "%s", err.msg);
        if (check_n_fail) break;
        CHECK(run_teacher_forced(e, &x, cfgs[c].chunk, out) == 0);
        double dmax = 0, drow[EXP_MAX_TOK];
        int greedy_checked = 0;
        for (int r = 0; r < x.rows; r++) {
            const float *got = out + (size_t)r * x.n_vocab, *want = x.logits + (size_t)r * x.n_vocab;
            double d = max_abs_diff(got, want, x.n_vocab);
            drow[r] = d;
            if (d > dmax) dmax = d;
            if (int8) continue;
            CHECK_MSG(d <= tol, "%s %s %s row %d: d = %.3g > %.3g", model, ref, cfgs[c].name, r, d, tol);
            if (x.margin[r] > min_margin) {
                greedy_checked++;
                CHECK_MSG(argmax(got, x.n_vocab) == x.greedy[r], "%s %s row %d: argmax %d, expected %d (margin %g)",
                          model, ref, r, argmax(got, x.n_vocab), x.greedy[r], x.margin[r]);
            }
        }
        if (int8) {
            qsort(drow, (size_t)x.rows, sizeof(double), cmp_double);
            const double med = drow[x.rows / 2];
            CHECK_MSG(med <= tol, "%s %s %s: median d = %.3g > %.3g", model, ref, cfgs[c].name, med, tol);
            int n_rp;
            uint64_t rp_bytes;
            moe_engine_repacked(e, &n_rp, &rp_bytes);
            CHECK_MSG(!repack || n_rp > 0, "int8rp: nothing was repacked");
            printf("%s vs %s [int8 activations%s, %s, kernels %s]: %d rows compared, median d = %.3g (tol %.3g), "
                   "max d = %.3g\n",
                   model, ref, repack ? ", dense Q8_0 repacked" : "", cfgs[c].name, moe_kern_name(moe_engine_kernels(e)), x.rows, med, tol, dmax);
        } else {
            printf("%s vs %s [%s, kernels %s]: %d rows compared, max d = %.3g (tol %.3g), greedy checked on %d rows\n",
                   model, ref, cfgs[c].name, moe_kern_name(moe_engine_kernels(e)), x.rows, dmax, tol, greedy_checked);
        }
        moe_engine_free(e);
    }
    free(out);
    free(x.logits);
    moe_model_free(m);
    return check_summary("engine_golden");
}
