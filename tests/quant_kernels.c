/*
 * quant_kernels.c — the quantized weight types and the int8 path, checked
 * exactly where the arithmetic allows:
 *
 *  1. every block fixture (quant/blocks/<type>.blocks) dequantizes to its
 *     .f32 file bit for bit (moe_row_to_f32), and dtype.c's sizes are the
 *     fixtures';
 *  2. the q8_0, q8_1 and q8_K activation quantizers of every set this CPU
 *     runs, bit for bit against the README's rules written out here
 *     (ties, zero blocks, equal |x| of both signs, negative maxima), and
 *     blocks holding a NaN or an infinity as NaN blocks (d and s NaN, q 0:
 *     core/kern/kern_impl.h; the README's rules are for finite values);
 *  3. each type's kernels, using the fixture blocks as weights:
 *     - float path: dot with a one-hot x is the dequantized value bit for
 *       bit; with random x within 1e-5·Σ|w·x| of a float64 sum of the
 *       dequantized values; axpy likewise; dotn bitwise dot;
 *     - int8 path: the integer dot of a block with a one-hot activation
 *       block (d = 1, s = 1) is the dequantized value bit for bit (so the
 *       integer unpacking, scales and mins are the dequantizer's); with
 *       random activations within 1e-5 of a float64 sum over dequantized
 *       weights × quantized activations (q8_1: the min term through s);
 *       dotn_int8 for 1..4 tokens and moe_kern_matmul_rows_int8 bitwise the
 *       single dot;
 *     - every set bitwise the reference where it falls back to it, within
 *       the normalised bound where it has its own kernels; the int8 dots
 *       of the q8_K types bitwise the reference in every set; avx512
 *       bitwise avx2 (float and int8 dots) when the CPU runs both;
 *  4. the table: every supported type has an entry in every set the build
 *     has, its dot type is llama.cpp's.
 * Prints the sets exercised and, per type, which sets are native.
 */
#include <math.h>

#include "check.h"
#include "kern.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

typedef struct qtype {
    const char *name;
    uint32_t code, dot_type;
    uint32_t bpb, epb; /* fixture: bytes and values per block */
    int n_blocks;
    uint8_t *blocks;
    float *values;
} qtype;

static qtype qtypes[] = {
    {"q4_0", MOE_DT_Q4_0, MOE_DT_Q8_0, 0, 0, 0, NULL, NULL},   {"q4_1", MOE_DT_Q4_1, MOE_DT_Q8_1, 0, 0, 0, NULL, NULL},
    {"q5_0", MOE_DT_Q5_0, MOE_DT_Q8_0, 0, 0, 0, NULL, NULL},   {"q5_1", MOE_DT_Q5_1, MOE_DT_Q8_1, 0, 0, 0, NULL, NULL},
    {"q8_0", MOE_DT_Q8_0, MOE_DT_Q8_0, 0, 0, 0, NULL, NULL},   {"q2_K", MOE_DT_Q2_K, MOE_DT_Q8_K, 0, 0, 0, NULL, NULL},
    {"q3_K", MOE_DT_Q3_K, MOE_DT_Q8_K, 0, 0, 0, NULL, NULL},   {"q4_K", MOE_DT_Q4_K, MOE_DT_Q8_K, 0, 0, 0, NULL, NULL},
    {"q5_K", MOE_DT_Q5_K, MOE_DT_Q8_K, 0, 0, 0, NULL, NULL},   {"q6_K", MOE_DT_Q6_K, MOE_DT_Q8_K, 0, 0, 0, NULL, NULL},
    {"iq4_nl", MOE_DT_IQ4_NL, MOE_DT_Q8_0, 0, 0, 0, NULL, NULL}, {"iq4_xs", MOE_DT_IQ4_XS, MOE_DT_Q8_K, 0, 0, 0, NULL, NULL},
};
#define N_QTYPES (int)(sizeof qtypes / sizeof qtypes[0])

static void *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    const long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(sz > 0 ? (size_t)sz : 1);
    *n = fread(p, 1, (size_t)(sz > 0 ? sz : 0), f);
    fclose(f);
    return p;
}

/* 1. blocks.txt and the bitwise dequantization */
static void test_blocks(void)
{
    FILE *f = fopen(fixture_path("quant/blocks/blocks.txt"), "r");
    CHECK(f != NULL);
    if (!f) return;
    char name[32], file[128], tensor[128];
    unsigned id, bpb, epb, nb, first;
    int seen = 0;
    while (fscanf(f, "%31s %u %u %u %u %127s %127s %u", name, &id, &bpb, &epb, &nb, file, tensor, &first) == 8) {
        qtype *q = NULL;
        for (int i = 0; i < N_QTYPES; i++)
            if (!strcmp(qtypes[i].name, name)) q = &qtypes[i];
        CHECK_MSG(q != NULL, "blocks.txt names type %s", name);
        if (!q) continue;
        seen++;
        const moe_dtype_info *info = moe_dtype_info_get(id);
        CHECK_MSG(id == q->code && info && info->block_bytes == bpb && info->block_elems == epb,
                  "%s: code %u, %u bytes per %u values", name, id, bpb, epb);
        char rel[96];
        size_t nbytes = 0, nvals = 0;
        snprintf(rel, sizeof rel, "quant/blocks/%s.blocks", name);
        q->blocks = read_all(fixture_path(rel), &nbytes);
        snprintf(rel, sizeof rel, "quant/blocks/%s.f32", name);
        q->values = read_all(fixture_path(rel), &nvals);
        CHECK_MSG(q->blocks && q->values && nbytes == (size_t)nb * bpb && nvals == (size_t)nb * epb * 4,
                  "%s: fixture sizes", name);
        if (!q->blocks || !q->values) continue;
        q->bpb = bpb;
        q->epb = epb;
        q->n_blocks = (int)nb;
        float *got = malloc(nvals);
        moe_row_to_f32(id, q->blocks, got, (int64_t)nb * epb);
        size_t bad = 0;
        for (size_t i = 0; i < (size_t)nb * epb; i++) bad += memcmp(&got[i], &q->values[i], 4) != 0;
        CHECK_MSG(bad == 0, "%s: %zu of %zu dequantized values differ from the fixture", name, bad, (size_t)nb * epb);
        printf("blocks %-6s: %u blocks dequantized, %zu values differ\n", name, nb, bad);
        free(got);
    }
    fclose(f);
    CHECK_MSG(seen == N_QTYPES, "blocks.txt has %d of the %d types", seen, N_QTYPES);
}

/* ---- 2. activation quantizers, the README's rules written out ---- */

/* round half to even, in double (x·id is a float: exact there) */
static int rne(float v)
{
    const double d = (double)v, r = floor(d + 0.5);
    return (int)((r - d == 0.5 && fmod(r, 2.0) != 0.0) ? r - 1.0 : r);
}

/* A block holding a NaN or an infinity: d (and s) NaN, every q 0 */
static bool nonfinite(const float *x, int n)
{
    for (int j = 0; j < n; j++)
        if (!isfinite(x[j])) return true;
    return false;
}

static void rule_q8_0(const float *x, moe_block_q8_0 *y)
{
    if (nonfinite(x, 32)) {
        y->d = 0x7e00;
        memset(y->qs, 0, sizeof y->qs);
        return;
    }
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    y->d = moe_f32_to_f16(amax / 127.0f);
    for (int j = 0; j < 32; j++) y->qs[j] = (int8_t)rne(x[j] * id);
}

static void rule_q8_1(const float *x, moe_block_q8_1 *y)
{
    if (nonfinite(x, 32)) {
        y->d = y->s = 0x7e00;
        memset(y->qs, 0, sizeof y->qs);
        return;
    }
    moe_block_q8_0 b;
    rule_q8_0(x, &b);
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    int sum = 0;
    for (int j = 0; j < 32; j++) sum += b.qs[j];
    y->d = b.d;
    memcpy(y->qs, b.qs, 32);
    y->s = moe_f32_to_f16(amax / 127.0f * (float)sum);
}

static void rule_q8_K(const float *x, moe_block_q8_K *y)
{
    memset(y, 0, sizeof *y);
    if (nonfinite(x, 256)) {
        const uint32_t qnan = 0x7fc00000u; /* the quiet NaN of NAN */
        memcpy(&y->d, &qnan, 4);
        return;
    }
    int imax = -1;
    for (int j = 0; j < 256; j++)
        if (x[j] != 0.0f && (imax < 0 || fabsf(x[j]) > fabsf(x[imax]))) imax = j;
    if (imax < 0) return;
    const float iscale = -127.0f / x[imax];
    for (int j = 0; j < 256; j++) {
        const int v = rne(x[j] * iscale);
        y->qs[j] = (int8_t)(v < 127 ? v : 127);
    }
    for (int g = 0; g < 16; g++)
        for (int l = 0; l < 16; l++) y->bsums[g] = (int16_t)(y->bsums[g] + y->qs[16 * g + l]);
    y->d = 1.0f / iscale;
}

static void test_quantizers(const moe_kern_set *k)
{
    enum { N = 1024 };
    static float rows[8][N];
    for (int i = 0; i < N; i++) rows[0][i] = frand() * 3.0f;            /* random */
    for (int i = 0; i < N; i++) rows[1][i] = (float)((i % 255) - 127) / 2; /* halves: ties with id = 1 ... */
    for (int b = 0; b < N / 32; b++) rows[1][32 * b] = 127.0f;           /* ... amax 127 in every block */
    memset(rows[2], 0, sizeof rows[2]);                                   /* zero blocks */
    for (int i = 0; i < N; i++) rows[3][i] = frand();
    for (int b = 0; b < N / 256; b++) {                                   /* equal |x|, both signs */
        rows[3][256 * b + 3] = -4.0f;
        rows[3][256 * b + 200] = 4.0f;
    }
    for (int i = 0; i < N; i++) rows[4][i] = frand() - 1.5f;             /* negative maxima */
    for (int i = 0; i < N; i++) rows[5][i] = frand() * 1e-30f;           /* tiny, subnormal scales */
    for (int i = 256; i < 512; i++) rows[5][i] = 0.0f;
    /* NaN, +inf and -inf, one each in blocks 0-2 of 32 (of each 4), at
     * positions across the vector lanes, in the first two q8_K blocks; the
     * rest finite (their blocks as in row 0) */
    for (int i = 0; i < N; i++) rows[6][i] = frand() * 3.0f;
    for (int b = 0; b < 16; b++) {
        const float bad = b % 4 == 0 ? NAN : b % 4 == 1 ? INFINITY : -INFINITY;
        if (b % 4 != 3) rows[6][32 * b + (b * 7) % 32] = bad;
    }
    /* one NaN, the last value of the last block */
    for (int i = 0; i < N; i++) rows[7][i] = frand();
    rows[7][N - 1] = NAN;
    int bad[3] = {0, 0, 0};
    for (int r = 0; r < 8; r++) {
        moe_block_q8_0 a0[N / 32], w0[N / 32];
        moe_block_q8_1 a1[N / 32], w1[N / 32];
        moe_block_q8_K aK[N / 256], wK[N / 256];
        memset(a0, 0x55, sizeof a0);
        memset(a1, 0x55, sizeof a1);
        memset(aK, 0x55, sizeof aK);
        moe_kern_quantize_act(k, MOE_DT_Q8_0, rows[r], a0, N);
        moe_kern_quantize_act(k, MOE_DT_Q8_1, rows[r], a1, N);
        moe_kern_quantize_act(k, MOE_DT_Q8_K, rows[r], aK, N);
        for (int b = 0; b < N / 32; b++) rule_q8_0(rows[r] + 32 * b, &w0[b]);
        for (int b = 0; b < N / 32; b++) rule_q8_1(rows[r] + 32 * b, &w1[b]);
        for (int b = 0; b < N / 256; b++) rule_q8_K(rows[r] + 256 * b, &wK[b]);
        bad[0] += memcmp(a0, w0, sizeof a0) != 0;
        bad[1] += memcmp(a1, w1, sizeof a1) != 0;
        bad[2] += memcmp(aK, wK, sizeof aK) != 0;
    }
    CHECK_MSG(!bad[0] && !bad[1] && !bad[2], "set %s: quantizer rows differing from the rules: q8_0 %d, q8_1 %d, q8_K %d",
              moe_kern_name(k), bad[0], bad[1], bad[2]);
    /* spot checks of the rules themselves on hand-made blocks */
    if (k == moe_kern_reference()) {
        moe_block_q8_K z;
        float x[256] = {0};
        x[5] = -4.0f, x[9] = 4.0f, x[10] = 2.0f, x[11] = -1.0f;
        moe_kern_quantize_act(k, MOE_DT_Q8_K, x, &z, 256);
        /* max = −4 (the first of equals): iscale = 31.75, 63.5 rounds to 64 */
        CHECK(z.qs[5] == -127 && z.qs[9] == 127 && z.qs[10] == 64 && z.qs[11] == -32);
        CHECK(z.d == 1.0f / 31.75f && z.bsums[0] == -127 + 127 + 64 - 32 && z.bsums[1] == 0);
        moe_block_q8_0 h;
        float y[32] = {127.0f, 2.5f, 3.5f, -0.5f, -1.5f};
        moe_kern_quantize_act(k, MOE_DT_Q8_0, y, &h, 32);
        CHECK(h.qs[0] == 127 && h.qs[1] == 2 && h.qs[2] == 4 && h.qs[3] == 0 && h.qs[4] == -2 && h.d == 0x3c00);
    }
    printf("quantizers %s: q8_0, q8_1, q8_K bit for bit the README's rules on 6 rows of %d, and NaN blocks for "
           "2 rows with NaN and infinities\n", moe_kern_name(k), N);
}

/* ---- 3. kernels of each type ---- */

/* A one-hot activation block of the dot type: value 1 at i, d = 1 (s = 1). */
static void one_hot(uint32_t dt, int i, void *out)
{
    if (dt == MOE_DT_Q8_0) {
        moe_block_q8_0 *b = out;
        memset(b, 0, sizeof *b);
        b->d = 0x3c00;
        b->qs[i] = 1;
    } else if (dt == MOE_DT_Q8_1) {
        moe_block_q8_1 *b = out;
        memset(b, 0, sizeof *b);
        b->d = b->s = 0x3c00;
        b->qs[i] = 1;
    } else {
        moe_block_q8_K *b = out;
        memset(b, 0, sizeof *b);
        b->d = 1.0f;
        b->qs[i] = 1;
        b->bsums[i / 16] = 1;
    }
}

/* The int8 product in float64 from the dequantized weights: Σ w·q·d_x per
 * activation block; for q8_1 weights the min goes through s: Σ (w − m)·q·d
 * + m·s (m = the block's fp16 min at byte 2). */
static double int8_f64(const qtype *q, const uint8_t *row, const float *w, const void *xq, int nblk, double *mag)
{
    double s = 0;
    *mag = 0;
    for (int b = 0; b < nblk; b++) {
        const float *wb = w + (size_t)b * q->epb;
        if (q->dot_type == MOE_DT_Q8_K) {
            const moe_block_q8_K *x = (const moe_block_q8_K *)xq + b;
            for (int j = 0; j < 256; j++) {
                s += (double)wb[j] * x->qs[j] * x->d;
                *mag += fabs((double)wb[j] * x->qs[j] * x->d);
            }
        } else if (q->dot_type == MOE_DT_Q8_0) {
            const moe_block_q8_0 *x = (const moe_block_q8_0 *)xq + b;
            const double d = moe_f16_to_f32(x->d);
            for (int j = 0; j < 32; j++) {
                s += (double)wb[j] * x->qs[j] * d;
                *mag += fabs((double)wb[j] * x->qs[j] * d);
            }
        } else {
            const moe_block_q8_1 *x = (const moe_block_q8_1 *)xq + b;
            uint16_t mh;
            memcpy(&mh, row + (size_t)b * q->bpb + 2, 2);
            const double d = moe_f16_to_f32(x->d), m = moe_f16_to_f32(mh);
            for (int j = 0; j < 32; j++) {
                s += ((double)wb[j] - m) * x->qs[j] * d;
                *mag += fabs((double)wb[j] * x->qs[j] * d);
            }
            s += m * moe_f16_to_f32(x->s);
            *mag += fabs(m * moe_f16_to_f32(x->s));
        }
    }
    return s;
}

static void test_type(const qtype *q, const moe_kern_set *k)
{
    const moe_kern_set *ref = moe_kern_reference();
    const moe_kern_fns *f = moe_kern_for(k, q->code), *rf = moe_kern_for(ref, q->code);
    CHECK_MSG(f && rf && f->dot && f->dotn && f->axpy && f->dotn_int8, "%s: entries in set %s", q->name, moe_kern_name(k));
    if (!f || !rf || !q->blocks) return;
    const bool native = moe_kern_native(k, q->code);
    CHECK_MSG(native || f == rf, "%s in %s: not native, yet not the reference entry", q->name, moe_kern_name(k));
    CHECK_MSG(moe_kern_dot_type(q->code) == q->dot_type, "%s: dot type %u", q->name, moe_kern_dot_type(q->code));
    const int64_t epb = q->epb;
    _Alignas(16) unsigned char xb[sizeof(moe_block_q8_K)];
    /* one-hot: exact */
    int bad_f = 0, bad_i = 0;
    const int nb_hot = SANITIZED ? 4 : 32;
    for (int b = 0; b < nb_hot && b < q->n_blocks; b++) {
        const uint8_t *blk = q->blocks + (size_t)b * q->bpb;
        for (int i = 0; i < epb; i++) {
            float x[256] = {0};
            x[i] = 1.0f;
            /* == : the exact value; a −0 weight gives +0 through a sum */
            const float want = q->values[(size_t)b * epb + i], got = f->dot(blk, x, epb);
            bad_f += !(want == got);
            one_hot(q->dot_type, i, xb);
            float gi;
            f->dotn_int8(blk, xb, 0, 1, epb, &gi);
            bad_i += !(want == gi);
        }
    }
    CHECK_MSG(!bad_f && !bad_i, "%s in %s: one-hot dots differing from the dequantized value: float %d, int8 %d",
              q->name, moe_kern_name(k), bad_f, bad_i);
    /* random activations over rows of 4 blocks */
    const int nblk = 4;
    const int64_t n = nblk * epb;
    const size_t xrow = moe_kern_act_row_bytes(q->dot_type, n);
    double worst_f = 0, worst_i = 0;
    int not_same = 0, not_same_k = 0, not_as_avx2 = 0;
    /* the avx2 set, when this is a later set this CPU also runs */
    const moe_kern_set *a2 = moe_kern_by_name("avx2");
    uint64_t a2mask;
    moe_err a2err;
    if (k == ref || k == a2 || moe_kern_cpu_mask(moe_kern_cpu_features(), "avx2", &a2mask, &a2err) != MOE_OK) a2 = NULL;
    for (int r = 0; r + nblk <= q->n_blocks; r += nblk) {
        const uint8_t *row = q->blocks + (size_t)r * q->bpb;
        const float *w = q->values + (size_t)r * epb;
        float x[4][1024], y1[1024], y2[1024];
        unsigned char *xq = malloc(4 * xrow);
        for (int t = 0; t < 4; t++)
            for (int64_t i = 0; i < n; i++) x[t][i] = frand() * (1.0f + (float)(i % 7));
        for (int t = 0; t < 4; t++) moe_kern_quantize_act(ref, q->dot_type, x[t], xq + t * xrow, n);
        for (int t = 0; t < 4; t++) {
            double ex = 0, mag = 0;
            for (int64_t i = 0; i < n; i++) {
                ex += (double)w[i] * x[t][i];
                mag += fabs((double)w[i] * x[t][i]);
            }
            const float d = f->dot(row, x[t], n), dr = rf->dot(row, x[t], n);
            const double e = fabs(d - ex) / (mag + 1e-30);
            worst_f = e > worst_f ? e : worst_f;
            CHECK_MSG(e <= 1e-5, "%s float dot in %s: normalised error %g", q->name, moe_kern_name(k), e);
            if (!native) not_same += memcmp(&d, &dr, 4) != 0;
            const float di = moe_kern_dot_int8(k, q->code, row, xq + t * xrow, n);
            const float dri = moe_kern_dot_int8(ref, q->code, row, xq + t * xrow, n);
            const double ei = int8_f64(q, row, w, xq + t * xrow, nblk, &mag);
            const double e2 = fabs(di - ei) / (mag + 1e-30);
            worst_i = e2 > worst_i ? e2 : worst_i;
            CHECK_MSG(e2 <= 1e-5, "%s int8 dot in %s: normalised error %g", q->name, moe_kern_name(k), e2);
            if (!native) not_same += memcmp(&di, &dri, 4) != 0;
            if (native)
                CHECK_MSG(fabs(di - dri) <= 1e-5 * mag, "%s int8 dot in %s vs reference", q->name, moe_kern_name(k));
            /* q8_K types: exact integer sums and the reference's float
             * expression in its order, so bitwise the reference */
            if (q->dot_type == MOE_DT_Q8_K) not_same_k += memcmp(&di, &dri, 4) != 0;
            /* avx512 is the avx2 source with more registers (and vpdpbusd):
             * bitwise avx2 on every kernel */
            if (a2 && a2 != k) {
                const float d2 = moe_kern_for(a2, q->code)->dot(row, x[t], n);
                const float di2 = moe_kern_dot_int8(a2, q->code, row, xq + t * xrow, n);
                not_as_avx2 += memcmp(&d, &d2, 4) != 0 || memcmp(&di, &di2, 4) != 0;
            }
        }
        /* dotn, dotn_int8 and the int8 product: bitwise the single dots */
        for (int nt = 1; nt <= 4; nt++) {
            float o[4], oi[4];
            f->dotn(row, x[0], 1024, nt, n, o);
            f->dotn_int8(row, xq, (int64_t)(xrow / moe_kern_act_row_bytes(q->dot_type, moe_kern_act_block(q->dot_type))),
                         nt, n, oi);
            for (int t = 0; t < nt; t++) {
                const float d = f->dot(row, x[t], n), di = moe_kern_dot_int8(k, q->code, row, xq + t * xrow, n);
                CHECK_MSG(!memcmp(&o[t], &d, 4) && !memcmp(&oi[t], &di, 4), "%s in %s: dotn of %d tokens, token %d",
                          q->name, moe_kern_name(k), nt, t);
            }
        }
        moe_mat m = {q->code, 1, n, (size_t)nblk * q->bpb, row, NULL, 0};
        float ym[5];
        unsigned char *xq5 = malloc(5 * xrow);
        memcpy(xq5, xq, 4 * xrow);
        memcpy(xq5 + 4 * xrow, xq, xrow);
        moe_kern_matmul_rows_int8(k, &m, 0, 1, xq5, n / moe_kern_act_block(q->dot_type), 5, ym, 1);
        for (int t = 0; t < 5; t++) {
            const float di = moe_kern_dot_int8(k, q->code, row, xq5 + t * xrow, n);
            CHECK_MSG(!memcmp(&ym[t], &di, 4), "%s in %s: matmul_rows_int8 token %d", q->name, moe_kern_name(k), t);
        }
        free(xq5);
        /* axpy */
        const float a = frand();
        for (int64_t i = 0; i < n; i++) y1[i] = y2[i] = frand();
        f->axpy(row, a, y1, n);
        for (int64_t i = 0; i < n; i++) {
            const double e = fabs((double)y1[i] - ((double)y2[i] + (double)a * w[i])) / (fabs(a * w[i]) + fabs(y2[i]) + 1e-30);
            if (!(e <= 1e-6)) {
                CHECK_MSG(e <= 1e-6, "%s axpy in %s at %lld", q->name, moe_kern_name(k), (long long)i);
                break;
            }
        }
        free(xq);
    }
    CHECK_MSG(not_same == 0, "%s in %s: %d fallback results differ from the reference", q->name, moe_kern_name(k),
              not_same);
    CHECK_MSG(not_same_k == 0, "%s in %s: %d int8 dots differ from the reference's bits", q->name, moe_kern_name(k),
              not_same_k);
    CHECK_MSG(not_as_avx2 == 0, "%s in %s: %d dots differ from avx2's bits", q->name, moe_kern_name(k), not_as_avx2);
    printf("%-6s %-9s (%s): one-hot dots exact (float; int8 via %s%s); random rows: max normalised error float %.2g, "
           "int8 %.2g%s\n",
           q->name, moe_kern_name(k), native ? "own kernels" : "reference row", moe_dtype_name(q->dot_type, NULL, 0),
           q->dot_type == MOE_DT_Q8_K ? ", bitwise the reference" : "", worst_f, worst_i,
           a2 ? "; bitwise avx2" : "");
}

int main(void)
{
    test_blocks();
    /* 4. the table */
    static const uint32_t all[] = {MOE_DT_F32, MOE_DT_F16, MOE_DT_BF16, MOE_DT_Q8_0, MOE_DT_Q4_0, MOE_DT_Q4_1,
                                   MOE_DT_Q5_0, MOE_DT_Q5_1, MOE_DT_Q2_K, MOE_DT_Q3_K, MOE_DT_Q4_K, MOE_DT_Q5_K,
                                   MOE_DT_Q6_K, MOE_DT_IQ4_NL, MOE_DT_IQ4_XS};
    const uint64_t cpu = moe_kern_cpu_features();
    for (int s = 0; s < moe_kern_n_sets(); s++) {
        const moe_kern_set *k = moe_kern_set_at(s);
        if (!moe_kern_for(k, MOE_DT_F32)) continue; /* not in this build */
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            CHECK_MSG(moe_kern_for(k, all[i]) != NULL, "set %s has no entry for type %u", moe_kern_name(k), all[i]);
    }
    CHECK(moe_kern_dot_type(MOE_DT_F16) == MOE_DT_F32 && moe_kern_dot_type(MOE_DT_BF16) == MOE_DT_F32);
    CHECK(moe_kern_act_block(MOE_DT_Q8_0) == 32 && moe_kern_act_block(MOE_DT_Q8_1) == 32 &&
          moe_kern_act_block(MOE_DT_Q8_K) == 256 && moe_kern_act_block(MOE_DT_Q4_K) == 0);
    CHECK(moe_kern_act_bytes_max(100) == 292 && moe_kern_act_bytes_max(512) == 2 * 292 && moe_kern_act_bytes_max(64) == 292);
    char list[256];
    CHECK(!strcmp(moe_kern_supported_list(list, sizeof list),
                  "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl, iq4_xs"));
    for (int s = 0; s < moe_kern_n_sets(); s++) {
        const moe_kern_set *k = moe_kern_set_at(s);
        uint64_t mask;
        moe_err err;
        if (moe_kern_cpu_mask(cpu, moe_kern_name(k), &mask, &err) != MOE_OK) {
            printf("== kernel set %s: not exercised (this CPU or build cannot run it)\n", moe_kern_name(k));
            continue;
        }
        printf("== kernel set %s\n", moe_kern_name(k));
        test_quantizers(k);
        for (int i = 0; i < N_QTYPES; i++) test_type(&qtypes[i], k);
    }
    for (int i = 0; i < N_QTYPES; i++) {
        free(qtypes[i].blocks);
        free(qtypes[i].values);
    }
    return check_summary("quant_kernels");
}
