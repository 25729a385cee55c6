/*
 * quant_enc_test — the reference quantizers and moe-mkmodel's type rules:
 *  - each encoder, run on the F32 source values of the tensor a block
 *    fixture (quant/blocks/) was cut from, gives its bytes exactly (12
 *    types, 256 blocks each; the same check as the byte-for-byte recode,
 *    small enough to run under the sanitizers);
 *  - encoding a row in pieces gives the bytes of encoding it whole;
 *  - a Q4_0 block with known values encodes to the bytes worked out by hand;
 *  - the IQ4 level search equals llama.cpp's halving on every level,
 *    midpoint (ties), their neighbours, random values, ±inf and NaN;
 *  - edge inputs (zeros, a constant, one spike, subnormals, 1e30) encode
 *    without undefined behaviour and all-zero rows keep zero scales;
 *  - mk_tensor_type follows llama-quantize's rules on real DeepSeek shapes
 *    (61 layers, attn_k_b rows of 128, V2-Lite experts 1408 wide), and
 *    gives every tensor of the 23 llama-quantize fixtures its type there
 *    (including the V2-Lite-style files, whose F32 source is not included,
 *    so their bytes cannot be checked);
 *  - a source holding NaN is refused by name, leaving no file behind;
 *    without it the file is written, its last tensor padded to 32 bytes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "dtype.h"
#include "gguf.h"
#include "gguf_write.h"
#include "mkmodel.h"
#include "quant_enc.h"

static void *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(n > 0 ? (size_t)n : 1);
    *len = fread(p, 1, (size_t)n, f);
    fclose(f);
    return p;
}

static uint32_t code_of(const char *name)
{
    static const struct { const char *n; uint32_t c; } t[] = {
        {"q4_0", MOE_DT_Q4_0}, {"q4_1", MOE_DT_Q4_1}, {"q5_0", MOE_DT_Q5_0},     {"q5_1", MOE_DT_Q5_1},
        {"q8_0", MOE_DT_Q8_0}, {"q2_K", MOE_DT_Q2_K}, {"q3_K", MOE_DT_Q3_K},     {"q4_K", MOE_DT_Q4_K},
        {"q5_K", MOE_DT_Q5_K}, {"q6_K", MOE_DT_Q6_K}, {"iq4_nl", MOE_DT_IQ4_NL}, {"iq4_xs", MOE_DT_IQ4_XS},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(t[i].n, name)) return t[i].c;
    return 0xffffffffu;
}

static void test_block_fixtures(void)
{
    moe_err err;
    moe_gguf *g;
    if (moe_gguf_open(&g, fixture_path("quant/models/kq_v3_f32.gguf"), &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    FILE *f = fopen(fixture_path("quant/blocks/blocks.txt"), "r");
    CHECK(f != NULL);
    char type[16], file[64], tensor[96];
    unsigned id, bpb, epb, nb, first;
    int n_types = 0;
    while (f && fscanf(f, "%15s %u %u %u %u %63s %95s %u", type, &id, &bpb, &epb, &nb, file, tensor, &first) == 8) {
        const uint32_t code = code_of(type);
        CHECK_MSG(code == id, "%s: code %u, table says %u", type, code, id);
        const moe_dtype_info *info = moe_dtype_info_get(code);
        CHECK_MSG(info && info->block_bytes == bpb && info->block_elems == epb, "%s: block size", type);
        const moe_gguf_tensor *t = moe_gguf_find_tensor(g, tensor);
        CHECK_MSG(t && t->type == MOE_DT_F32, "%s: no f32 tensor %s", type, tensor);
        if (!t || !info || code != id) continue;
        const uint64_t n = (uint64_t)nb * epb, off = (uint64_t)first * epb;
        CHECK(off + n <= t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        char rel[64];
        snprintf(rel, sizeof rel, "quant/blocks/%s.blocks", type);
        size_t len;
        uint8_t *want = read_all(fixture_path(rel), &len);
        CHECK_MSG(want && len == (size_t)nb * bpb, "%s: %zu bytes", rel, want ? len : 0);
        uint8_t *got = calloc((size_t)nb, bpb);
        moe_quant_row(code, (const float *)t->data + off, got, (int64_t)n);
        if (want && len == (size_t)nb * bpb) {
            size_t bad = 0;
            while (bad < len && got[bad] == want[bad]) bad++;
            CHECK_MSG(bad == len, "%s: byte %zu (block %zu) differs from llama-quantize's", type, bad, bad / bpb);
        }
        /* pieces of one block, two blocks, the rest: the same bytes */
        uint8_t *pieces = calloc((size_t)nb, bpb);
        const float *x = (const float *)t->data + off;
        moe_quant_row(code, x, pieces, epb);
        moe_quant_row(code, x + epb, pieces + bpb, 2 * (int64_t)epb);
        moe_quant_row(code, x + 3 * epb, pieces + 3 * bpb, (int64_t)n - 3 * epb);
        CHECK_MSG(!memcmp(pieces, got, (size_t)nb * bpb), "%s: encoding in pieces differs", type);
        free(pieces);
        free(got);
        free(want);
        n_types++;
    }
    if (f) fclose(f);
    CHECK_MSG(n_types == 12, "%d block fixtures checked, expected 12", n_types);
    printf("block fixtures: %d types encode to llama-quantize's bytes\n", n_types);
    moe_gguf_close(g);
}

/* x = j − 8 for j < 16 and 7 for the rest: the largest magnitude is −8
 * (value 0), so d = −8 / −8 = 1 and q = x + 8. */
static void test_q4_0_by_hand(void)
{
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = j < 16 ? (float)(j - 8) : 7.0f;
    moe_block_q4_0 b;
    moe_quantize_row_q4_0_ref(x, &b, 32);
    CHECK(b.d == 0x3c00); /* 1.0 in fp16 */
    for (int j = 0; j < 16; j++) CHECK_MSG(b.qs[j] == (uint8_t)(j | 15 << 4), "qs[%d] = 0x%02x", j, b.qs[j]);
}

static void test_edges(void)
{
    static const uint32_t codes[] = {MOE_DT_Q4_0, MOE_DT_Q4_1, MOE_DT_Q5_0, MOE_DT_Q5_1, MOE_DT_Q2_K, MOE_DT_Q3_K,
                                     MOE_DT_Q4_K, MOE_DT_Q5_K, MOE_DT_Q6_K, MOE_DT_IQ4_NL, MOE_DT_IQ4_XS};
    float x[512];
    uint8_t out[4096];
    for (int kind = 0; kind < 5; kind++) {
        for (int j = 0; j < 512; j++) {
            switch (kind) {
            case 0: x[j] = 0.0f; break;
            case 1: x[j] = 0.25f; break;
            case 2: x[j] = j == 37 ? -3.0f : 0.0f; break;
            case 3: x[j] = (float)(j % 7 - 3) * 1e-40f; break; /* subnormal */
            default: x[j] = (float)(j % 5 - 2) * 1e30f; break;
            }
        }
        for (size_t c = 0; c < sizeof codes / sizeof codes[0]; c++) {
            memset(out, 0xaa, sizeof out);
            moe_quant_row(codes[c], x, out, 512);
            const moe_dtype_info *info = moe_dtype_info_get(codes[c]);
            const size_t bytes = 512 / info->block_elems * info->block_bytes;
            CHECK(out[bytes] == 0xaa); /* nothing written past the blocks */
            if (kind == 0) {
                /* the fp16 scale of the first block (at the start, or at the
                 * end for Q2_K/Q3_K/Q6_K) is ±0: max/-8 of zeros is -0, as in ggml */
                uint16_t d;
                const size_t at = codes[c] == MOE_DT_Q2_K ? 80 : codes[c] == MOE_DT_Q3_K ? 108
                                                              : codes[c] == MOE_DT_Q6_K ? 208 : 0;
                memcpy(&d, out + at, 2);
                CHECK_MSG((d & 0x7fff) == 0, "%s: zero row has scale 0x%04x", info->name, d);
            }
        }
    }
}

/* The IQ4 level search against the halving llama.cpp ran when the
 * fixtures were made (x at or beyond an end gives that end; else halve
 * [0, 15] with x < level[mid], then the nearer of the bracket's two, ties
 * to the upper), on every level, every midpoint (exact ties), the floats
 * next to both, random values, ±0, ±inf, huge values and NaN. */
static int iq4_halving(float x)
{
    static const int8_t L[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    if (x <= L[0]) return 0;
    if (x >= L[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (x < L[mid]) hi = mid;
        else lo = mid;
    }
    return x - L[lo] < L[hi] - x ? lo : hi;
}

static void test_iq4_nearest(void)
{
    static const int8_t L[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    float xs[4096];
    int n = 0;
    for (int i = 0; i < 16; i++) {
        const float l = L[i], m = i < 15 ? ((float)L[i] + (float)L[i + 1]) / 2 : 300.0f;
        const float pts[6] = {l, nextafterf(l, -INFINITY), nextafterf(l, INFINITY), m, nextafterf(m, -INFINITY),
                              nextafterf(m, INFINITY)};
        for (int k = 0; k < 6; k++) xs[n++] = pts[k];
    }
    const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e30f, -1e30f, 3.4e38f, -3.4e38f, 1e-40f};
    for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++) xs[n++] = specials[k];
    uint64_t r = 0x9e3779b97f4a7c15u;
    while (n < 4096) {
        r = r * 6364136223846793005u + 1442695040888963407u;
        xs[n++] = (float)((double)(r >> 11) / 9007199254740992.0 * 600.0 - 300.0);
    }
    int bad = 0, ties = 0;
    for (int k = 0; k < n; k++) {
        const int got = moe_quant_iq4_nearest(xs[k]), want = iq4_halving(xs[k]);
        if (got != want && bad++ < 5) CHECK_MSG(got == want, "iq4 nearest of %.9g: %d, want %d", xs[k], got, want);
        for (int i = 0; i < 15; i++) ties += xs[k] == ((float)L[i] + (float)L[i + 1]) / 2 && xs[k] - L[i] == L[i + 1] - xs[k];
    }
    CHECK(bad == 0);
    CHECK(ties >= 8); /* the set holds exact ties (odd gaps), which go up */
    CHECK(moe_quant_iq4_nearest(-115.5f) == 1 && moe_quant_iq4_nearest(NAN) == 15);
}

static void test_rules(void)
{
    moe_err err;
    const mk_ftype *q4km = mk_ftype_find("q4_k_m", &err), *q6k = mk_ftype_find("Q6_K", &err),
                   *q2k = mk_ftype_find("q2_k", &err), *iq4xs = mk_ftype_find("iq4_xs", &err),
                   *q3km = mk_ftype_find("q3_k_m", &err), *q40 = mk_ftype_find("q4_0", &err),
                   *q80 = mk_ftype_find("q8_0", &err), *q4k = mk_ftype_find("q4_k", &err);
    CHECK(q4km && q6k && q2k && iq4xs && q3km && q40 && q80 && q4k);
    CHECK(mk_ftype_find("iq2_xxs", &err) == NULL);
    CHECK_CONTAINS(err.msg, "unknown weight type 'iq2_xxs'");
    if (!(q4km && q6k && q2k && iq4xs && q3km && q40 && q80 && q4k)) return;
    CHECK(q4km->file_type == 15 && q6k->file_type == 18 && iq4xs->file_type == 30 && q80->file_type == 7);
    struct { const char *name; uint32_t nd; uint64_t ne0; const mk_ftype *ft; bool has_out; uint32_t want; } r[] = {
        /* DeepSeek-V3: 61 layers, n/8 = 7, 7n/8 = 53 */
        {"blk.3.ffn_down_exps.weight", 3, 2048, q4km, true, MOE_DT_Q6_K},  /* i < n/8 */
        {"blk.10.ffn_down_exps.weight", 3, 2048, q4km, true, MOE_DT_Q4_K}, /* (10-7) % 3 = 0 */
        {"blk.12.ffn_down_shexp.weight", 2, 2048, q4km, true, MOE_DT_Q6_K}, /* (12-7) % 3 = 2 */
        {"blk.55.ffn_down.weight", 2, 18432, q4km, true, MOE_DT_Q6_K},     /* i >= 7n/8 */
        {"blk.10.ffn_up_exps.weight", 3, 7168, q4km, true, MOE_DT_Q4_K},
        {"blk.10.attn_k_b.weight", 3, 128, q4km, true, MOE_DT_Q5_0},       /* 128 % 256: fallback */
        {"blk.10.attn_k_b.weight", 3, 128, q6k, true, MOE_DT_Q8_0},
        {"blk.10.attn_k_b.weight", 3, 128, q2k, true, MOE_DT_Q4_0},
        {"blk.10.attn_k_b.weight", 3, 128, iq4xs, true, MOE_DT_IQ4_NL},
        {"blk.10.attn_k_b.weight", 3, 128, q4k, true, MOE_DT_Q5_0},        /* uniform types fall back too */
        {"blk.10.attn_k_b.weight", 3, 48, iq4xs, true, MOE_DT_F16},        /* not even iq4_nl fits */
        {"blk.10.attn_output.weight", 2, 16384, q2k, true, MOE_DT_Q3_K},
        {"blk.10.attn_output.weight", 2, 16384, q3km, true, MOE_DT_Q4_K},
        {"blk.10.ffn_down_exps.weight", 3, 2048, q3km, true, MOE_DT_Q4_K},
        {"blk.2.ffn_down_exps.weight", 3, 2048, q3km, true, MOE_DT_Q5_K},  /* i < n/16 = 3 */
        {"blk.2.ffn_down_exps.weight", 3, 2048, iq4xs, true, MOE_DT_Q5_K}, /* i < n/8 */
        {"blk.20.ffn_down_exps.weight", 3, 2048, iq4xs, true, MOE_DT_IQ4_XS},
        {"output.weight", 2, 7168, q4km, true, MOE_DT_Q6_K},
        {"output.weight", 2, 7168, q40, true, MOE_DT_Q6_K},
        {"output.weight", 2, 7168, q80, true, MOE_DT_Q8_0},
        {"output.weight", 2, 7168, q4k, true, MOE_DT_Q4_K},                /* uniform: no output rule */
        {"output.weight", 2, 7040, q4km, true, MOE_DT_Q8_0},               /* rows do not fit q4_K */
        {"token_embd.weight", 2, 7168, q4km, true, MOE_DT_Q4_K},
        {"token_embd.weight", 2, 7168, q4km, false, MOE_DT_Q6_K},          /* tied output */
        /* V2-Lite: 27 layers, experts 1408 wide */
        {"blk.4.ffn_down_exps.weight", 3, 1408, q4km, true, MOE_DT_Q5_0},  /* n/8 = 3, (4-3) % 3 = 1 */
        {"blk.5.ffn_down_exps.weight", 3, 1408, q4km, true, MOE_DT_Q8_0},  /* (5-3) % 3 = 2: q6_K, falls back */
        {"blk.0.ffn_down_exps.weight", 3, 1408, q4km, true, MOE_DT_Q8_0},  /* q6_K, then fallback */
        {"blk.5.ffn_down_exps.weight", 3, 1408, q2k, true, MOE_DT_Q4_0},
        {"blk.5.ffn_gate_inp.weight", 2, 2048, q4km, true, MOE_DT_F32},
        {"blk.5.attn_kv_a_norm.weight", 1, 512, q4km, true, MOE_DT_F32},
        {"blk.5.exp_probs_b.bias", 1, 64, q4km, true, MOE_DT_F32},
    };
    const int layers[] = {61, 61, 61, 61, 61, 61, 61, 61, 61, 61, 61, 61, 61, 61, 61, 61, 61, 61,
                          61, 61, 61, 61, 61, 61, 27, 27, 27, 27, 27, 27, 27};
    _Static_assert(sizeof layers / sizeof layers[0] == 31, "one layer count per rule case");
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        const uint64_t ne[4] = {r[i].ne0, 64, 8, 1};
        const uint32_t got = mk_tensor_type(r[i].name, r[i].nd, ne, r[i].ft, layers[i], r[i].has_out);
        char a[24], b[24];
        CHECK_MSG(got == r[i].want, "%s (%s, row %llu): %s, want %s", r[i].name, r[i].ft->name,
                  (unsigned long long)r[i].ne0, moe_dtype_name(got, a, sizeof a), moe_dtype_name(r[i].want, b, sizeof b));
    }
}

static void test_rules_on_fixtures(void)
{
    static const char *const models[] = {"kq_v3", "kq_v2lite"};
    static const char *const types[] = {"q4_k_m", "q5_k_m", "q6_k", "q3_k_m", "q2_k", "iq4_xs",
                                        "q4_0",   "q4_1",   "q5_0", "q5_1",   "iq4_nl", "q8_0"};
    int files = 0, tensors = 0;
    for (size_t m = 0; m < 2; m++) {
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            char rel[96];
            snprintf(rel, sizeof rel, "quant/models/%s_%s.gguf", models[m], types[k]);
            if (m == 1 && !strcmp(types[k], "q8_0")) continue; /* not among the fixtures */
            moe_err err;
            moe_gguf *g;
            if (moe_gguf_open(&g, fixture_path(rel), &err)) {
                CHECK_MSG(0, "%s", err.msg);
                continue;
            }
            const mk_ftype *ft = mk_ftype_find(types[k], &err);
            uint32_t n_layer = 0;
            CHECK(ft && moe_gguf_get_u32(g, "deepseek2.block_count", &n_layer, &err) == 0);
            const bool has_output = moe_gguf_find_tensor(g, "output.weight") != NULL;
            for (int i = 0; ft && i < moe_gguf_n_tensors(g); i++, tensors++) {
                const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
                const uint32_t want = mk_tensor_type(t->name, t->n_dims, t->ne, ft, (int)n_layer, has_output);
                char a[24], b[24];
                CHECK_MSG(t->type == want, "%s: %s is %s, the rules give %s", rel, t->name,
                          moe_dtype_name(t->type, a, sizeof a), moe_dtype_name(want, b, sizeof b));
            }
            moe_gguf_close(g);
            files++;
        }
    }
    CHECK(files == 23);
    printf("type rules: %d tensors of %d llama-quantize files\n", tensors, files);
}

static void test_nan_source(void)
{
    char dir[] = "/tmp/quant_enc_test.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char in[128], out[128], tmp[140];
    snprintf(in, sizeof in, "%s/nan.gguf", dir);
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    moe_err err;
    moe_gguf_writer *w = moe_gguf_writer_new();
    moe_gguf_writer_kv_str(w, "general.architecture", "deepseek2");
    moe_gguf_writer_kv_u32(w, "deepseek2.block_count", 1);
    const uint64_t ne[2] = {256, 3}; /* 3 q4_K rows: 432 bytes, not a multiple of 32 */
    const int t = moe_gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", MOE_DT_F32, 2, ne, &err);
    float x[768];
    for (int i = 0; i < 768; i++) x[i] = (float)(i % 13) - 6.0f;
    x[700] = NAN;
    CHECK(t == 0 && moe_gguf_writer_open(w, in, &err) == 0 && moe_gguf_writer_write(w, t, 0, x, sizeof x, &err) == 0 &&
          moe_gguf_writer_commit(w, &err) == 0);
    moe_gguf_writer_free(w);
    CHECK(mk_recode(in, "q4_k_m", out, 1, &err) != 0);
    CHECK_CONTAINS(err.msg, "tensor 'blk.0.ffn_up.weight' holds a non-finite value (element 700)");
    CHECK(access(out, F_OK) != 0 && access(tmp, F_OK) != 0);
    x[700] = 1.0f; /* the same file without the NaN re-encodes */
    unlink(in);
    w = moe_gguf_writer_new();
    moe_gguf_writer_kv_str(w, "general.architecture", "deepseek2");
    moe_gguf_writer_kv_u32(w, "deepseek2.block_count", 1);
    CHECK(moe_gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", MOE_DT_F32, 2, ne, &err) == 0 &&
          moe_gguf_writer_open(w, in, &err) == 0 && moe_gguf_writer_write(w, 0, 0, x, sizeof x, &err) == 0 &&
          moe_gguf_writer_commit(w, &err) == 0);
    moe_gguf_writer_free(w);
    CHECK_MSG(mk_recode(in, "q4_k_m", out, 1, &err) == 0, "%s", err.msg);
    moe_gguf *g;
    if (moe_gguf_open(&g, out, &err) == 0) {
        const moe_gguf_tensor *q = moe_gguf_find_tensor(g, "blk.0.ffn_up.weight");
        CHECK(q && q->type == MOE_DT_Q4_K && q->size == 432);
        /* the last tensor is zero padded to the alignment, as llama.cpp writes it */
        CHECK(q && moe_gguf_file_size(g) == q->offset + 448 && moe_gguf_file_size(g) % 32 == 0);
        moe_gguf_close(g);
    } else {
        CHECK_MSG(0, "%s", err.msg);
    }
    unlink(in);
    unlink(out);
    rmdir(dir);
}

int main(void)
{
    test_block_fixtures();
    test_q4_0_by_hand();
    test_edges();
    test_iq4_nearest();
    test_rules();
    test_rules_on_fixtures();
    test_nan_source();
    return check_summary("quant_enc_test");
}
