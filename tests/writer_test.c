/*
 * writer_test — the GGUF writer and moe-mkmodel against the fixtures:
 *  - re-encoding each F32 fixture reproduces its F16 / Q8_0 twin (tensor
 *    data byte for byte, and the metadata) in llama-quantize's layout;
 *  - a moe-mkmodel file of a fixture's shape has the same keys and values
 *    (tokenizer contents and random data aside), tensor names, shapes, types;
 *  - the writer round-trips every value type and a custom alignment;
 *  - generation is deterministic per seed and thread count, MTP blocks do
 *    not change the trunk, bf16 and recode-to-f32 agree;
 *  - bad flags are refused with a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "dtype.h"
#include "gguf.h"
#include "gguf_write.h"

static char tmpdir[4096];

static const char *tmp(const char *name)
{
    static char buf[8][4200];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", tmpdir, name);
    return b;
}

/* Runs a command; returns its exit status (or -1). */
static int run(const char *fmt, ...) MOE_PRINTF(1, 2);
#include <stdarg.h>
#include <sys/wait.h>
static int run(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *bin(void)
{
    const char *b = getenv("MOE_BIN");
    if (!b) {
        fprintf(stderr, "MOE_BIN is not set\n");
        exit(2);
    }
    return b;
}

static moe_gguf *open_or_fail(const char *path)
{
    moe_err err;
    moe_gguf *g = NULL;
    if (moe_gguf_open(&g, path, &err)) {
        fprintf(stderr, "cannot open %s: %s\n", path, err.msg);
        CHECK(!"open failed");
    }
    return g;
}

static bool same_kv_value(const moe_gguf *a, int i, const moe_gguf *b, int j)
{
    uint64_t na, nb;
    const void *pa = moe_gguf_kv_raw(a, i, &na), *pb = moe_gguf_kv_raw(b, j, &nb);
    return moe_gguf_kv_type(a, i) == moe_gguf_kv_type(b, j) && na == nb && !memcmp(pa, pb, na);
}

/* Compares tensor lists (names, order, types, shapes) and optionally data. */
static int compare_tensors(const moe_gguf *a, const moe_gguf *b, bool data)
{
    int n = 0;
    CHECK_MSG(moe_gguf_n_tensors(a) == moe_gguf_n_tensors(b), "%d vs %d tensors", moe_gguf_n_tensors(a),
              moe_gguf_n_tensors(b));
    for (int i = 0; i < moe_gguf_n_tensors(a) && i < moe_gguf_n_tensors(b); i++) {
        const moe_gguf_tensor *x = moe_gguf_tensor_at(a, i), *y = moe_gguf_tensor_at(b, i);
        CHECK_MSG(!strcmp(x->name, y->name), "tensor %d: %s vs %s", i, x->name, y->name);
        CHECK_MSG(x->type == y->type, "%s: type %u vs %u", x->name, x->type, y->type);
        CHECK_MSG(x->n_dims == y->n_dims && !memcmp(x->ne, y->ne, sizeof x->ne), "%s: shape differs", x->name);
        if (data) CHECK_MSG(x->size == y->size && !memcmp(x->data, y->data, x->size), "%s: data differs", x->name);
        n++;
    }
    return n;
}

static void test_recode(void)
{
    static const char *cases[][3] = {
        {"tiny_f32", "f16", "tiny_f16"},
        {"tiny_f32", "q8_0", "tiny_q8_0"},
        {"v3_mini_f32", "q8_0", "v3_mini_q8_0"},
    };
    int tensors = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char src[64], want[64], out[64];
        snprintf(src, sizeof src, "models/%s.gguf", cases[c][0]);
        snprintf(want, sizeof want, "models/%s.gguf", cases[c][2]);
        snprintf(out, sizeof out, "recode_%s.gguf", cases[c][2]);
        CHECK(run("%s/moe-mkmodel --recode %s --type %s -o %s 2>/dev/null", bin(), fixture_path(src), cases[c][1],
                  tmp(out)) == 0);
        moe_gguf *a = open_or_fail(tmp(out)), *b = open_or_fail(fixture_path(want));
        if (!a || !b) continue;
        /* The fixtures keep the F32 file's order; --recode writes
         * llama-quantize's (tensors by layer then name, the two
         * quantization keys last), so compare by name. */
        CHECK(moe_gguf_n_tensors(a) == moe_gguf_n_tensors(b));
        for (int i = 0; i < moe_gguf_n_tensors(b); i++) {
            const moe_gguf_tensor *y = moe_gguf_tensor_at(b, i), *x = moe_gguf_find_tensor(a, y->name);
            CHECK_MSG(x != NULL, "%s missing", y->name);
            if (!x) continue;
            CHECK_MSG(x->type == y->type, "%s: type %u vs %u", x->name, x->type, y->type);
            CHECK_MSG(x->n_dims == y->n_dims && !memcmp(x->ne, y->ne, sizeof x->ne), "%s: shape differs", x->name);
            CHECK_MSG(x->size == y->size && !memcmp(x->data, y->data, x->size), "%s: data differs", x->name);
            tensors++;
        }
        for (int i = 1; i < moe_gguf_n_tensors(a); i++) {
            const char *p = moe_gguf_tensor_at(a, i - 1)->name, *q = moe_gguf_tensor_at(a, i)->name;
            const int lp = !strncmp(p, "blk.", 4) ? atoi(p + 4) : -1, lq = !strncmp(q, "blk.", 4) ? atoi(q + 4) : -1;
            CHECK_MSG(lp < lq || (lp == lq && strcmp(p, q) < 0), "tensor order: %s before %s", p, q);
        }
        CHECK(moe_gguf_n_kv(a) == moe_gguf_n_kv(b));
        const int n_kv = moe_gguf_n_kv(a);
        CHECK(n_kv >= 2 && !strcmp(moe_gguf_kv_key(a, n_kv - 2), "general.quantization_version") &&
              !strcmp(moe_gguf_kv_key(a, n_kv - 1), "general.file_type"));
        for (int j = 0; j < moe_gguf_n_kv(b); j++) {
            const int i = moe_gguf_find_kv(a, moe_gguf_kv_key(b, j));
            CHECK_MSG(i >= 0 && same_kv_value(a, i, b, j), "key %s differs", moe_gguf_kv_key(b, j));
        }
        moe_gguf_close(a);
        moe_gguf_close(b);
    }
    printf("recode: %zu fixture pairs, %d tensors byte-identical\n", sizeof cases / sizeof cases[0], tensors);
}

/* Keys whose values differ legitimately between a generated file and a
 * fixture: the tokenizer's contents (its own synthetic vocabulary). */
static bool is_vocab_content(const char *key)
{
    return !strcmp(key, "tokenizer.ggml.tokens") || !strcmp(key, "tokenizer.ggml.token_type") ||
           !strcmp(key, "tokenizer.ggml.merges");
}

static void test_mkmodel_matches_fixtures(void)
{
    static const char *cases[][3] = {
        {"tiny_f32", "tiny", ""},
        {"v2lite_mini_f32", "v2lite-mini", ""},
        {"v2lite_mini_fused_f32", "v2lite-mini", "--mla fused"},
        {"v3_mini_f32", "v3-mini", ""},
        {"v3_mini_q8_0", "v3-mini", "--type q8_0"},
        {"tiny_q8_0", "tiny", "--type q8_0"},
        {"tiny_f16", "tiny", "--type f16"},
    };
    int keys = 0, tensors = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char want[64], out[64];
        snprintf(want, sizeof want, "models/%s.gguf", cases[c][0]);
        snprintf(out, sizeof out, "mk_%s.gguf", cases[c][0]);
        CHECK(run("%s/moe-mkmodel --preset %s %s -o %s 2>/dev/null", bin(), cases[c][1], cases[c][2], tmp(out)) == 0);
        moe_gguf *a = open_or_fail(tmp(out)), *b = open_or_fail(fixture_path(want));
        if (!a || !b) continue;
        CHECK_MSG(moe_gguf_n_kv(a) == moe_gguf_n_kv(b), "%s: %d vs %d keys", cases[c][0], moe_gguf_n_kv(a),
                  moe_gguf_n_kv(b));
        for (int i = 0; i < moe_gguf_n_kv(a) && i < moe_gguf_n_kv(b); i++) {
            const char *k = moe_gguf_kv_key(a, i);
            CHECK_MSG(!strcmp(k, moe_gguf_kv_key(b, i)), "key %d: %s vs %s", i, k, moe_gguf_kv_key(b, i));
            if (is_vocab_content(k)) {
                moe_gguf_arr x, y;
                moe_gguf_kv_arr(a, i, &x);
                moe_gguf_kv_arr(b, i, &y);
                CHECK(x.type == y.type);
                if (strcmp(k, "tokenizer.ggml.merges")) CHECK_MSG(x.count == y.count, "%s count", k);
            } else {
                CHECK_MSG(same_kv_value(a, i, b, i), "%s: key %s differs", cases[c][0], k);
            }
            keys++;
        }
        tensors += compare_tensors(a, b, false);
        moe_gguf_close(a);
        moe_gguf_close(b);
    }
    printf("mkmodel vs fixtures: %zu models, %d keys and %d tensor descriptions compared\n",
           sizeof cases / sizeof cases[0], keys, tensors);
}

static bool files_equal(const char *p, const char *q)
{
    return run("cmp -s %s %s", p, q) == 0;
}

static void test_determinism_and_mtp(void)
{
    const char *b = bin();
    CHECK(run("%s/moe-mkmodel --preset v3-mini --seed 7 --threads 1 -o %s 2>/dev/null", b, tmp("d1.gguf")) == 0);
    CHECK(run("%s/moe-mkmodel --preset v3-mini --seed 7 --threads 3 -o %s 2>/dev/null", b, tmp("d2.gguf")) == 0);
    CHECK(run("%s/moe-mkmodel --preset v3-mini --seed 8 -o %s 2>/dev/null", b, tmp("d3.gguf")) == 0);
    CHECK(files_equal(tmp("d1.gguf"), tmp("d2.gguf")));
    CHECK(!files_equal(tmp("d1.gguf"), tmp("d3.gguf")));

    /* MTP: same trunk data; the extra block and key are there. */
    CHECK(run("%s/moe-mkmodel --preset v3-mini --seed 7 --mtp 1 -o %s 2>/dev/null", b, tmp("mtp.gguf")) == 0);
    moe_gguf *a = open_or_fail(tmp("d1.gguf")), *m = open_or_fail(tmp("mtp.gguf"));
    if (a && m) {
        moe_err err;
        uint32_t blocks = 0, nextn = 0;
        CHECK(moe_gguf_get_u32(m, "deepseek2.block_count", &blocks, &err) == 0 && blocks == 5);
        CHECK(moe_gguf_get_u32(m, "deepseek2.nextn_predict_layers", &nextn, &err) == 0 && nextn == 1);
        CHECK(moe_gguf_find_kv(a, "deepseek2.nextn_predict_layers") < 0);
        int same = 0;
        for (int i = 0; i < moe_gguf_n_tensors(a); i++) {
            const moe_gguf_tensor *x = moe_gguf_tensor_at(a, i), *y = moe_gguf_find_tensor(m, x->name);
            CHECK_MSG(y && y->size == x->size && !memcmp(x->data, y->data, x->size), "%s", x->name);
            same++;
        }
        CHECK(moe_gguf_find_tensor(m, "blk.4.nextn.eh_proj.weight") != NULL);
        CHECK(moe_gguf_find_tensor(m, "blk.4.ffn_gate_exps.weight") != NULL);
        CHECK(moe_gguf_find_tensor(a, "blk.4.attn_norm.weight") == NULL);
        printf("mtp: %d trunk tensors identical with and without the MTP block\n", same);
    }
    moe_gguf_close(a);
    moe_gguf_close(m);

    /* bf16 file, and its f32 recode holding the same bf16-representable values. */
    CHECK(run("%s/moe-mkmodel --preset v3-mini --type bf16 -o %s 2>/dev/null", b, tmp("bf.gguf")) == 0);
    CHECK(run("%s/moe-mkmodel --recode %s --type f32 -o %s 2>/dev/null", b, tmp("bf.gguf"), tmp("bf32.gguf")) == 0);
    moe_gguf *x = open_or_fail(tmp("bf.gguf")), *y = open_or_fail(tmp("bf32.gguf"));
    if (x && y) {
        long values = 0;
        for (int i = 0; i < moe_gguf_n_tensors(x); i++) {
            const moe_gguf_tensor *s = moe_gguf_tensor_at(x, i), *t = moe_gguf_find_tensor(y, s->name);
            CHECK_MSG(t && t->type == MOE_DT_F32, "%s: missing or not f32 in the recode", s->name);
            if (!t) continue;
            CHECK_MSG(s->type == (s->n_dims == 1 || strstr(s->name, "ffn_gate_inp") ? MOE_DT_F32 : MOE_DT_BF16),
                      "%s has type %u", s->name, s->type);
            if (s->type != MOE_DT_BF16) continue;
            const uint16_t *h = s->data;
            const float *f = t->data;
            bool ok = true;
            for (uint64_t k = 0; k < s->n_elems; k++, values++) ok &= moe_bf16_to_f32(h[k]) == f[k];
            CHECK_MSG(ok, "%s: f32 recode differs from bf16 values", s->name);
        }
        printf("bf16: %ld values recoded to f32 exactly\n", values);
    }
    moe_gguf_close(x);
    moe_gguf_close(y);
}

/* --vocab-from copies a real tokenizer verbatim and sizes the model to it. */
static void test_vocab_from(void)
{
    const char *vocab = fixture_path("tokenizer/deepseek-v3-vocab.gguf");
    CHECK(run("%s/moe-mkmodel --preset tiny --type q8_0 --vocab-from %s -o %s 2>/dev/null", bin(), vocab,
              tmp("vf.gguf")) == 0);
    moe_gguf *a = open_or_fail(tmp("vf.gguf")), *v = open_or_fail(vocab);
    if (!a || !v) goto out;
    moe_err err;
    uint32_t n = 0;
    CHECK(moe_gguf_get_u32(a, "deepseek2.vocab_size", &n, &err) == 0 && n == 129280);
    const moe_gguf_tensor *e = moe_gguf_find_tensor(a, "token_embd.weight");
    CHECK(e && e->ne[1] == 129280);
    int copied = 0;
    for (int i = 0; i < moe_gguf_n_kv(v); i++) {
        const char *k = moe_gguf_kv_key(v, i);
        if (strncmp(k, "tokenizer.", 10)) continue;
        int j = moe_gguf_find_kv(a, k);
        CHECK_MSG(j >= 0 && same_kv_value(v, i, a, j), "%s not copied", k);
        copied++;
    }
    CHECK(copied >= 9);
    printf("vocab-from: %d tokenizer keys copied, vocabulary of %u\n", copied, n);
out:
    moe_gguf_close(a);
    moe_gguf_close(v);
}

static void test_writer_roundtrip(void)
{
    moe_err err;
    moe_gguf_writer *w = moe_gguf_writer_new();
    CHECK(moe_gguf_writer_set_alignment(w, 64, &err) == 0);
    CHECK(moe_gguf_writer_set_alignment(w, 48, &err) != 0);
    moe_gguf_writer_kv_str(w, "a.str", "hello");
    moe_gguf_writer_kv_u32(w, "a.u32", 4000000000u);
    moe_gguf_writer_kv_i32(w, "a.i32", -7);
    moe_gguf_writer_kv_f32(w, "a.f32", 0.25f);
    moe_gguf_writer_kv_bool(w, "a.bool", true);
    const char *strs[] = {"x", "", "zz"};
    moe_gguf_writer_kv_arr_str(w, "a.strs", 3, strs, NULL);
    const int32_t is[] = {1, -2, 3};
    moe_gguf_writer_kv_arr_i32(w, "a.ints", 3, is);
    const float fs[] = {1.5f, -2.5f};
    moe_gguf_writer_kv_arr_f32(w, "a.floats", 2, fs);
    uint64_t ne1[2] = {32, 3}, ne2[1] = {5}, bad[1] = {33};
    int t1 = moe_gguf_writer_add_tensor(w, "t.q8", MOE_DT_Q8_0, 2, ne1, &err);
    int t2 = moe_gguf_writer_add_tensor(w, "t.f32", MOE_DT_F32, 1, ne2, &err);
    CHECK(t1 == 0 && t2 == 1);
    CHECK(moe_gguf_writer_add_tensor(w, "t.bad", MOE_DT_Q8_0, 1, bad, &err) < 0);
    CHECK_CONTAINS(err.msg, "not a multiple of the q8_0 block");
    CHECK(moe_gguf_writer_open(w, tmp("rt.gguf"), &err) == 0);
    uint8_t q8[3 * 34];
    memset(q8, 0x11, sizeof q8);
    CHECK(moe_gguf_writer_tensor_size(w, t1) == sizeof q8);
    CHECK(moe_gguf_writer_write(w, t1, 0, q8, 34, &err) == 0);
    CHECK(moe_gguf_writer_write(w, t1, 34, q8, 2 * 34, &err) == 0);
    float five[5] = {1, 2, 3, 4, 5};
    CHECK(moe_gguf_writer_write(w, t2, 0, five, sizeof five, &err) == 0);
    CHECK(access(tmp("rt.gguf"), F_OK) != 0); /* only the .tmp exists until commit */
    CHECK(moe_gguf_writer_commit(w, &err) == 0);
    moe_gguf_writer_free(w);

    moe_gguf *g = open_or_fail(tmp("rt.gguf"));
    if (!g) return;
    const char *s;
    uint64_t len, u;
    int64_t i64;
    float f;
    bool bo;
    moe_gguf_arr arr;
    CHECK(moe_gguf_alignment(g) == 64 && moe_gguf_data_offset(g) % 64 == 0);
    CHECK(moe_gguf_get_str(g, "a.str", &s, &len, &err) == 0 && len == 5 && !memcmp(s, "hello", 5));
    CHECK(moe_gguf_get_u64(g, "a.u32", &u, &err) == 0 && u == 4000000000u);
    CHECK(moe_gguf_get_i64(g, "a.i32", &i64, &err) == 0 && i64 == -7);
    CHECK(moe_gguf_get_u64(g, "a.i32", &u, &err) != 0);
    CHECK(moe_gguf_get_f32(g, "a.f32", &f, &err) == 0 && f == 0.25f);
    CHECK(moe_gguf_get_bool(g, "a.bool", &bo, &err) == 0 && bo);
    CHECK(moe_gguf_get_arr(g, "a.strs", &arr, &err) == 0 && arr.count == 3 && arr.type == MOE_GGUF_STRING);
    if (arr.count == 3) {
        const char *e = moe_gguf_arr_str(g, &arr, 2, &len);
        CHECK(len == 2 && !memcmp(e, "zz", 2));
        moe_gguf_arr_str(g, &arr, 1, &len);
        CHECK(len == 0);
    }
    CHECK(moe_gguf_get_arr(g, "a.ints", &arr, &err) == 0 && arr.count == 3 && arr.type == MOE_GGUF_I32 &&
          !memcmp(arr.data, is, sizeof is));
    CHECK(moe_gguf_get_arr(g, "a.floats", &arr, &err) == 0 && arr.count == 2 && !memcmp(arr.data, fs, sizeof fs));
    const moe_gguf_tensor *t = moe_gguf_find_tensor(g, "t.f32");
    CHECK(t && t->offset % 64 == 0 && !memcmp(t->data, five, sizeof five));
    t = moe_gguf_find_tensor(g, "t.q8");
    CHECK(t && t->size == 3 * 34 && !memcmp(t->data, q8, sizeof q8));
    moe_gguf_close(g);
    printf("writer: round trip of 8 keys and 2 tensors at alignment 64\n");
}

static void test_bad_flags(void)
{
    static const char *bad[][2] = {
        {"--experts 16 --experts-used 20", "--experts-used 20 is out of range"},
        {"--experts 10 --groups 4", "is not a multiple of --groups"},
        {"--qk-rope 7", "must be even"},
        {"--type iq2_xxs", "unknown weight type 'iq2_xxs'"},
        {"--preset nope", "unknown preset 'nope'"},
        {"--dim abc", "'abc' is not an integer"},
        {"--gating relu", "--gating must be softmax or sigmoid"},
        {"--frobnicate 1", "unknown option '--frobnicate'"},
        {"--recode /nonexistent.gguf --type f16", "cannot open"},
        {"--type q8_0 --dim 100", "must be a multiple of 32"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = run("%s/moe-mkmodel %s -o %s 2>%s", bin(), bad[i][0], tmp("bad.gguf"), tmp("bad.err"));
        CHECK_MSG(rc != 0, "'%s' was accepted", bad[i][0]);
        char msg[1024] = "";
        FILE *f = fopen(tmp("bad.err"), "r");
        if (f) {
            size_t n = fread(msg, 1, sizeof msg - 1, f);
            msg[n] = 0;
            fclose(f);
        }
        CHECK_CONTAINS(msg, bad[i][1]);
        CHECK(access(tmp("bad.gguf"), F_OK) != 0 && access(tmp("bad.gguf.tmp"), F_OK) != 0);
    }
    CHECK(run("%s/moe-mkmodel --help >/dev/null", bin()) == 0);
    printf("bad flags: %zu refused with their messages\n", sizeof bad / sizeof bad[0]);
}

/* The fast q8_0 encoder against the scalar reference: random blocks with
 * exact halves, zeros, one-element blocks, huge and tiny magnitudes. */
static void test_q8_0_fast_matches_ref(void)
{
    enum { N = 32 * 4096 };
    static float x[N];
    static moe_block_q8_0 a[N / 32], b[N / 32];
    uint64_t st = 12345;
    for (int i = 0; i < N; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        int kind = (int)((st >> 60) & 3), blk = i / 32;
        float r = (float)((int32_t)(st >> 32)) / 2147483648.0f;
        if (blk % 7 == 0) x[i] = (float)((int)(r * 254.0f)) * 0.5f; /* many exact halves after scaling */
        else if (blk % 11 == 0) x[i] = i % 32 == 5 ? r : 0.0f;     /* one non-zero */
        else if (blk % 13 == 0) x[i] = 0.0f;                      /* all zero: d = 0 */
        else x[i] = r * (kind == 0 ? 1e-30f : kind == 1 ? 1e30f : 1.0f);
    }
    moe_quantize_row_q8_0_ref(x, a, N);
    moe_quantize_row_q8_0(x, b, N);
    CHECK(!memcmp(a, b, sizeof a));
    printf("q8_0: fast encoder bit-identical to the reference on %d blocks\n", N / 32);
}

int main(void)
{
    test_q8_0_fast_matches_ref();
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/moe-writer-XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    test_writer_roundtrip();
    test_recode();
    test_mkmodel_matches_fixtures();
    test_determinism_and_mtp();
    test_bad_flags();
    test_vocab_from();
    run("rm -rf %s", tmpdir);
    return check_summary("writer_test");
}
