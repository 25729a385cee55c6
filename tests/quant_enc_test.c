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
 *  - the K-quant searches (four candidates at a time) equal ggml's
 *    sequential ones bit for bit on hard blocks (ties, constants, spikes,
 *    ±0, subnormals, huge values, random bits);
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
    const int8_t *L = moe_iq4_levels;
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
    const int8_t *L = moe_iq4_levels; /* the dequantizer's: the encoder's float copy must agree */
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

/* The K-quant searches against ggml's own sequential form of them
 * (make_qkx2_quants and make_qx_quants as the fixtures' llama.cpp runs
 * them, candidate after candidate), written here plainly: the encoders try
 * four candidates at a time, and the affine fit restarts after a winner,
 * whose offset the next candidates start from.  Returned scale, offset and
 * levels bit for bit, on blocks made to be hard: integer grids (ties),
 * constants, spikes, one-signed blocks, ±0, subnormals, huge values and
 * random bit patterns, at the callers' parameters and at others. */
static int seq_nearest_int(float f)
{
    const float v = f + 12582912.0f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}
static int seq_clamp(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static float seq_fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min, float rmin,
                            float rdelta, int nstep, bool use_mad)
{
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        min = x[i] < min ? x[i] : min;
        max = x[i] > max ? x[i] : max;
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)seq_clamp(seq_nearest_int(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += w[i] * diff;
    }
    for (int is = 0; nstep >= 1 && is <= nstep; is++) {
        uint8_t Laux[32];
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = seq_clamp(seq_nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D, this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float cur_error = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * (float)Laux[i] + this_min - x[i];
            diff = use_mad ? fabsf(diff) : diff * diff;
            cur_error += w[i] * diff;
        }
        if (cur_error < best_error) {
            memcpy(L, Laux, (size_t)n);
            best_error = cur_error;
            scale = this_scale;
            min = this_min;
        }
    }
    *the_min = -min;
    return scale;
}

static float seq_fit_symmetric(int n, int nmax, const float *x, int8_t *L)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    if (fabsf(max) < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float scale = 0, best = 0;
    for (int is = -10; is <= 9; is++) { /* -10: the start, nmax/max */
        if (is == 0) continue;
        const float iscale = is == -10 ? (float)-nmax / max : -((float)nmax + 0.1f * (float)is) / max;
        float lx = 0, l2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = seq_clamp(seq_nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            lx += w * x[i] * (float)l;
            l2 += w * (float)l * (float)l;
        }
        if (is == -10) {
            scale = l2 != 0.0f ? lx / l2 : 0.0f;
            best = scale * lx;
        } else if (!(l2 > 0 && lx * lx > best * l2)) {
            continue;
        } else {
            scale = lx / l2;
            best = scale * lx;
        }
        for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + seq_clamp(seq_nearest_int(iscale * x[i]), -nmax, nmax - 1));
    }
    return scale;
}

static void hard_block(uint64_t *r, int kind, int n, float *x)
{
    for (int i = 0; i < n; i++) {
        *r = *r * 6364136223846793005u + 1442695040888963407u;
        const uint32_t b = (uint32_t)(*r >> 32);
        const float u = (float)(b >> 8) / 16777216.0f - 0.5f; /* [-0.5, 0.5) */
        switch (kind) {
        case 0: x[i] = u * (float)(1u << (b & 15)); break;
        case 1: x[i] = (float)(int)(u * 16.0f) / 4.0f; break; /* a grid: ties */
        case 2: x[i] = 0.75f; break;
        case 3: x[i] = i == (int)(b % (uint32_t)n) ? -5.0f : 0.0f; break;
        case 4: x[i] = fabsf(u) + 0.01f; break;
        case 5: x[i] = -fabsf(u) - 3.0f; break;
        case 6: x[i] = (b & 1) ? 0.0f : (b & 2) ? -0.0f : u * 1e-3f; break;
        case 7: x[i] = u * 1e-39f; break; /* subnormal */
        case 8: x[i] = u * 1e30f; break;
        default: {
            uint32_t bits = b;
            float f;
            memcpy(&f, &bits, sizeof f);
            x[i] = isfinite(f) ? f : u;
        }
        }
    }
}

static void test_k_searches(void)
{
    static const struct { int n, nmax; float rmin, rdelta; int nstep; bool mad; } aff[] = {
        {32, 15, -1.0f, 0.1f, 20, false}, /* Q4_K */
        {32, 31, -0.5f, 0.1f, 15, false}, /* Q5_K */
        {16, 3, -0.5f, 0.1f, 15, true},   /* Q2_K */
        {32, 7, -0.3f, 0.05f, 6, true},   {17, 15, -1.0f, 0.2f, 1, false}, {32, 15, -1.0f, 0.1f, 0, false},
    };
    uint64_t r = 0x2545f4914f6cdd1du;
    int bad_aff = 0, bad_sym = 0, runs = 0;
    for (int it = 0; it < 400; it++) {
        for (int kind = 0; kind < 10; kind++) {
            float x[32], w[32];
            for (size_t c = 0; c < sizeof aff / sizeof aff[0]; c++) {
                const int n = aff[c].n;
                hard_block(&r, kind, n, x);
                float sum_x2 = 0;
                for (int i = 0; i < n; i++) sum_x2 += x[i] * x[i];
                for (int i = 0; i < n; i++) w[i] = (it & 1) ? sqrtf(sum_x2 / (float)n) + fabsf(x[i]) : (float)(1 + (i * 7 + it) % 5);
                uint8_t La[32], Lb[32];
                float ma, mb;
                const float sa = moe_quant_fit_affine(n, aff[c].nmax, x, w, La, &ma, aff[c].rmin, aff[c].rdelta,
                                                      aff[c].nstep, aff[c].mad);
                const float sb = seq_fit_affine(n, aff[c].nmax, x, w, Lb, &mb, aff[c].rmin, aff[c].rdelta,
                                                aff[c].nstep, aff[c].mad);
                if ((memcmp(&sa, &sb, 4) || memcmp(&ma, &mb, 4) || memcmp(La, Lb, (size_t)n)) && bad_aff++ < 3)
                    CHECK_MSG(0, "fit_affine (set %zu, kind %d): scale %a min %a, ggml's %a %a", c, kind, sa, ma, sb, mb);
                runs++;
            }
            static const int nm[3] = {32, 4, 16};
            for (int c = 0; c < 3; c++) {
                hard_block(&r, kind, 16, x);
                int8_t La[16], Lb[16];
                const float sa = moe_quant_fit_symmetric(16, nm[c], x, La), sb = seq_fit_symmetric(16, nm[c], x, Lb);
                if ((memcmp(&sa, &sb, 4) || memcmp(La, Lb, 16)) && bad_sym++ < 3)
                    CHECK_MSG(0, "fit_symmetric (nmax %d, kind %d): scale %a, ggml's %a", nm[c], kind, sa, sb);
            }
        }
    }
    CHECK(bad_aff == 0 && bad_sym == 0);
    printf("K-quant searches: %d affine and %d symmetric fits equal ggml's sequential ones\n", runs, 400 * 10 * 3);
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
    test_k_searches();
    test_rules();
    test_rules_on_fixtures();
    test_nan_source();
    return check_summary("quant_enc_test");
}
