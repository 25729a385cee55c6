/*
 * quant_files.c — GGUF files built from the quant fixtures.
 *
 * Tied output: a file without output.weight uses token_embd
 * as the output matrix, in any type.  For two quant fixtures (token_embd
 * q4_K, dot type q8_K; and q4_1, dot type q8_1) two copies are written:
 * A without output.weight, B with output.weight = token_embd (same type,
 * same bytes).  Teacher-forced on the `exact` reference's tokens, A's
 * logits are bitwise B's on the float and the int8 path, and A differs
 * from the original file (whose output is another matrix), so the test
 * sees which matrix ran.
 *
 * Mixed dot types: kq_v3_q4_k_m with some matrices taken from the q4_0,
 * q4_1, q5_1 and iq4_nl files, so one activation feeds matrices of the
 * three dot types in one run (attn_norm: q_a q4_0 and kv_a q4_1; ffn_norm:
 * q4_K experts, q5_1 shared gate, iq4_nl shared up).  The int8 path
 * quantizes it once per dot type; a buffer of the wrong type would give
 * garbage, so its logits must stay within twice the README's int8 rule
 * (median d <= 0.2; 0.076 measured, every set) of the same file's float
 * path, which itself must match the
 * float path of kq_v3_q4_k_m closely enough to show the substitutions are
 * the same model (median d <= 2: quantization noise, not garbage; the
 * int8 bound fails at d = 4.4 when the per-dot-type cache is keyed
 * without the dot type).
 */
#include <unistd.h>

#include "check.h"
#include "engine_util.h"
#include "gguf_write.h"
#include "vmflags.h"

/* Tensors replaced in a copy: name -> the same tensor of another file. */
typedef struct subst {
    const char *name;
    const moe_gguf *from;
} subst;

/* What a copy does with output.weight. */
enum { OUT_DROP, OUT_EMBD, OUT_KEEP };

/* src's keys and tensors; output.weight left out, replaced by token_embd's
 * type and data, or kept; tensors named in subs taken from another file. */
static int write_copy(const moe_gguf *src, const char *path, int out, const subst *subs, int n_subs, moe_err *err)
{
    moe_gguf_writer *w = moe_gguf_writer_new();
    for (int i = 0; i < moe_gguf_n_kv(src); i++) moe_gguf_writer_kv_copy(w, src, i);
    const moe_gguf_tensor *emb = moe_gguf_find_tensor(src, "token_embd.weight");
    const moe_gguf_tensor *srcs[512];
    int n = 0;
    for (int i = 0; i < moe_gguf_n_tensors(src) && n < 512; i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(src, i);
        if (!strcmp(t->name, "output.weight") && out != OUT_KEEP) {
            if (out == OUT_DROP) continue;
            t = emb; /* same shape: dim × vocab */
            if (moe_gguf_writer_add_tensor(w, "output.weight", t->type, t->n_dims, t->ne, err) < 0) goto fail;
        } else {
            for (int k = 0; k < n_subs; k++)
                if (!strcmp(t->name, subs[k].name)) t = moe_gguf_find_tensor(subs[k].from, t->name);
            if (!t || moe_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, err) < 0) goto fail;
        }
        srcs[n++] = t;
    }
    if (moe_gguf_writer_open(w, path, err)) goto fail;
    for (int j = 0; j < n; j++)
        if (moe_gguf_writer_write(w, j, 0, srcs[j]->data, srcs[j]->size, err)) goto fail;
    if (moe_gguf_writer_commit(w, err)) goto fail;
    moe_gguf_writer_free(w);
    return MOE_OK;
fail:
    moe_gguf_writer_free(w);
    return MOE_ERR;
}

/* Teacher-forced logits of the file at path on x's tokens: the float or
 * int8 path, in kernel set k (NULL: the default), with --repack or not;
 * *tied: the model's output is token_embd; *n_rp: matrices repacked. */
static float *run_on(const char *path, const expected *x, bool int8, const moe_kern_set *k, bool repack, bool *tied,
                     int *n_rp)
{
    moe_err err;
    moe_model *m;
    if (moe_model_open(&m, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    *tied = m->output_tied;
    /* token_embd keeps the file's huge-page advice when it is also the
     * output matrix (streamed every token), and has small pages when only
     * looked up (worker/model.c) */
    if (access("/sys/kernel/mm/transparent_hugepage", F_OK) == 0) {
        char fl[512];
        vma_flags(m->tok_embd.data, fl, sizeof fl);
        CHECK_MSG(m->output_tied ? has_flag(fl, "hg") && !has_flag(fl, "nh") : has_flag(fl, "nh"),
                  "%s: token_embd (%s) has the advice %s", path, m->output_tied ? "tied" : "untied", fl);
    }
    moe_engine_opts o;
    moe_engine_opts_default(&o);
    o.max_ctx = 64;
    o.max_seqs = 1;
    o.max_batch_tokens = 32;
    o.act_q8 = int8;
    o.repack = repack;
    o.kernels = k;
    moe_engine *e;
    float *out = malloc((size_t)x->rows * x->n_vocab * sizeof(float));
    if (moe_engine_init(&e, m, &o, &err) || run_teacher_forced(e, x, 0, out)) {
        fprintf(stderr, "%s\n", err.msg);
        free(out);
        out = NULL;
    } else {
        printf("  %s [%s activations%s, kernels %s]: ran\n", path, int8 ? "int8" : "float", repack ? ", --repack" : "",
               moe_kern_name(moe_engine_kernels(e)));
        uint64_t bytes;
        moe_engine_repacked(e, n_rp, &bytes);
        moe_engine_free(e);
    }
    moe_model_free(m);
    return out;
}

static float *run(const char *path, const expected *x, bool int8, bool *tied)
{
    int n_rp;
    return run_on(path, x, int8, NULL, false, tied, &n_rp);
}

/* Repacked Q4_K (--repack): its products are the reference's int8 dot of
 * the file's rows, which every set's file-layout K-quant dot also gives, so
 * on kq_v3_q4_k_m (Q4_K, Q6_K and Q5_0; no Q8_0, whose repacked sums are
 * other bits) --repack must not change one bit of the logits, in every set
 * this CPU runs; and it must have repacked every Q4_K matrix of the file
 * but the routed experts and the embedding (counted from its table). */
static void test_repack_q4_K(void)
{
    expected x;
    CHECK(expected_load(&x, fixture_path("quant"), "kq_v3_q4_k_m", "exact") == 0);
    if (check_n_fail) return;
    char path[4096];
    snprintf(path, sizeof path, "%s", fixture_path("quant/models/kq_v3_q4_k_m.gguf"));
    moe_gguf *g;
    moe_err gerr;
    CHECK_MSG(moe_gguf_open(&g, path, &gerr) == MOE_OK, "%s", gerr.msg);
    if (check_n_fail) return;
    int want = 0;
    for (int i = 0; i < moe_gguf_n_tensors(g); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        want += t->type == MOE_DT_Q4_K && !strstr(t->name, "_exps") && strcmp(t->name, "token_embd.weight");
    }
    moe_gguf_close(g);
    const uint64_t cpu = moe_kern_cpu_features();
    for (int i = 0; i < moe_kern_n_sets(); i++) {
        const moe_kern_set *k = moe_kern_set_at(i);
        uint64_t mask;
        moe_err err;
        if (moe_kern_cpu_mask(cpu, moe_kern_name(k), &mask, &err) != MOE_OK) {
            printf("repacked q4_K: set %s not on this CPU\n", moe_kern_name(k));
            continue;
        }
        int n0 = -1, n1 = -1;
        bool tied;
        float *a = run_on(path, &x, true, k, false, &tied, &n0), *b = run_on(path, &x, true, k, true, &tied, &n1);
        CHECK(a && b);
        if (a && b) {
            CHECK_MSG(n0 == 0 && n1 == want && want > 0, "set %s: %d matrices repacked (without --repack %d), want %d",
                      moe_kern_name(k), n1, n0, want);
            CHECK_MSG(!memcmp(a, b, (size_t)x.rows * x.n_vocab * sizeof(float)),
                      "set %s: --repack changed the logits of a file with no Q8_0 matrix", moe_kern_name(k));
            printf("repacked q4_K, set %s: %d matrices, logits bitwise the file's layout (%d rows)\n",
                   moe_kern_name(k), n1, x.rows);
        }
        free(a);
        free(b);
    }
    free(x.logits);
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* median over rows of the max |a − b| */
static double median_d(const float *a, const float *b, const expected *x)
{
    double d[EXP_MAX_TOK];
    for (int r = 0; r < x->rows; r++)
        d[r] = max_abs_diff(a + (size_t)r * x->n_vocab, b + (size_t)r * x->n_vocab, x->n_vocab);
    qsort(d, (size_t)x->rows, sizeof d[0], cmp_double);
    return d[x->rows / 2];
}

static void test_mixed(const char *dir)
{
    static const struct {
        const char *name, *from;
    } picks[] = {
        {"blk.0.attn_q_a.weight", "kq_v3_q4_0"},          {"blk.0.attn_kv_a_mqa.weight", "kq_v3_q4_1"},
        {"blk.1.ffn_gate_shexp.weight", "kq_v3_q5_1"},    {"blk.1.ffn_up_shexp.weight", "kq_v3_iq4_nl"},
    };
    enum { N = sizeof picks / sizeof picks[0] };
    moe_gguf *src = NULL, *from[N] = {NULL};
    subst subs[N];
    moe_err err;
    char path[512];
    CHECK_MSG(moe_gguf_open(&src, fixture_path("quant/models/kq_v3_q4_k_m.gguf"), &err) == MOE_OK, "%s", err.msg);
    for (int i = 0; i < N; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "quant/models/%s.gguf", picks[i].from);
        CHECK_MSG(moe_gguf_open(&from[i], fixture_path(rel), &err) == MOE_OK, "%s", err.msg);
        subs[i] = (subst){picks[i].name, from[i]};
    }
    snprintf(path, sizeof path, "%s/mixed.gguf", dir);
    if (!check_n_fail) CHECK_MSG(write_copy(src, path, OUT_KEEP, subs, N, &err) == MOE_OK, "%s", err.msg);
    expected x;
    CHECK(expected_load(&x, fixture_path("quant"), "kq_v3_q4_k_m", "exact") == 0);
    if (!check_n_fail) {
        bool t;
        float *mf = run(path, &x, false, &t), *mi = run(path, &x, true, &t);
        float *of = run(fixture_path("quant/models/kq_v3_q4_k_m.gguf"), &x, false, &t);
        CHECK(mf && mi && of);
        if (mf && mi && of) {
            const double d_int8 = median_d(mi, mf, &x), d_files = median_d(mf, of, &x);
            CHECK_MSG(d_int8 <= 0.2, "mixed file: int8 path median d = %.3g from its float path", d_int8);
            CHECK_MSG(d_files <= 2.0 && d_files > 0, "mixed file vs kq_v3_q4_k_m, float paths: median d = %.3g", d_files);
            printf("mixed dot types (q8_0, q8_1, q8_K from one input): int8 vs float path median d = %.3g; "
                   "float path vs kq_v3_q4_k_m median d = %.3g\n", d_int8, d_files);
        }
        free(mf);
        free(mi);
        free(of);
        free(x.logits);
    }
    unlink(path);
    for (int i = 0; i < N; i++) moe_gguf_close(from[i]);
    moe_gguf_close(src);
}

int main(void)
{
    char dir[] = "/tmp/moe_qfiles_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    static const char *const models[] = {"kq_v3_q4_k_m", "kq_v3_q4_1"};
    for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
        char rel[128], orig[4096], a[512], b[512];
        snprintf(rel, sizeof rel, "quant/models/%s.gguf", models[mi]);
        snprintf(orig, sizeof orig, "%s", fixture_path(rel));
        snprintf(a, sizeof a, "%s/%s_tied.gguf", dir, models[mi]);
        snprintf(b, sizeof b, "%s/%s_embd_as_output.gguf", dir, models[mi]);
        moe_err err;
        moe_gguf *src;
        CHECK_MSG(moe_gguf_open(&src, orig, &err) == MOE_OK, "%s", err.msg);
        if (check_n_fail) break;
        CHECK_MSG(write_copy(src, a, OUT_DROP, NULL, 0, &err) == MOE_OK, "%s", err.msg);
        CHECK_MSG(write_copy(src, b, OUT_EMBD, NULL, 0, &err) == MOE_OK, "%s", err.msg);
        char nb[24];
        printf("%s: token_embd %s\n", models[mi],
               moe_dtype_name(moe_gguf_find_tensor(src, "token_embd.weight")->type, nb, sizeof nb));
        moe_gguf_close(src);
        expected x;
        CHECK(expected_load(&x, fixture_path("quant"), models[mi], "exact") == 0);
        if (check_n_fail) break;
        for (int int8 = 0; int8 < 2; int8++) {
            bool ta = false, tb = true, to = true;
            float *la = run(a, &x, int8, &ta), *lb = run(b, &x, int8, &tb), *lo = run(orig, &x, int8, &to);
            CHECK(la && lb && lo);
            if (la && lb && lo) {
                const size_t n = (size_t)x.rows * x.n_vocab;
                CHECK_MSG(ta && !tb && !to, "output_tied: tied file %d, embd-as-output file %d, original %d", ta, tb, to);
                CHECK_MSG(!memcmp(la, lb, n * sizeof(float)), "%s %s: tied logits differ from output.weight = token_embd",
                          models[mi], int8 ? "int8" : "float");
                CHECK_MSG(memcmp(la, lo, n * sizeof(float)) != 0, "%s: tied logits equal the original file's", models[mi]);
                printf("%s, %s activations: tied output bitwise equal to output.weight = token_embd (%d rows)\n",
                       models[mi], int8 ? "int8" : "float", x.rows);
            }
            free(la);
            free(lb);
            free(lo);
        }
        free(x.logits);
        unlink(a);
        unlink(b);
    }
    test_mixed(dir);
    test_repack_q4_K();
    rmdir(dir);
    return check_summary("quant_files");
}
