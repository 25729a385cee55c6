/*
 * exprec_test.c — expert distribution records (core/exprec): rows packed
 * and unpacked; a stat file's counts per window equal the picks added; a
 * per_token file holds the rows byte for byte; the header's bytes are the
 * documented ones; every truncation and many corruptions of a file are
 * refused with a message, never read out of bounds (ASan), and rows out of
 * the shape are refused whole.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "exprec.h"
#include "io.h"

static char dir[] = "/tmp/exprec_test.XXXXXX";

static uint8_t *row_bytes(int k, uint32_t step, int layer, int home, const int32_t *ex, const int32_t *rk,
                          const float *w, uint8_t *out)
{
    const moe_exprec_row r = {.step = step, .token = 7 + (int32_t)step, .pos = (int32_t)step, .layer = layer,
                              .home = home, .req = 1000 + step, .experts = ex, .ranks = rk, .weights = w};
    moe_exprec_pack(&r, k, out);
    return out;
}

static uint8_t *load(const char *path, size_t *n)
{
    char *buf = NULL;
    moe_err err;
    CHECK(moe_file_read(path, 1 << 24, &buf, n, &err) == MOE_OK);
    return (uint8_t *)buf;
}

int main(void)
{
    CHECK(mkdtemp(dir) != NULL);
    moe_err err = {{0}};
    const moe_exprec_shape sh = {.layers = 2, .first_layer = 1, .experts = 6, .top_k = 2, .ranks = 3};
    const int K = 2;
    const size_t rb = MOE_EXPREC_ROW_BYTES(K);
    CHECK(rb == 40);

    /* pack / unpack */
    uint8_t rows[5 * 40];
    const int32_t e[5][2] = {{0, 5}, {1, 2}, {2, 5}, {0, 1}, {4, 5}}, rk[5][2] = {{0, 2}, {1, 1}, {0, 2}, {0, 0}, {2, 2}};
    const float w[5][2] = {{0.25f, 0.75f}, {0.5f, 0.5f}, {1.0f, 2.0f}, {0.1f, 0.2f}, {3.0f, -1.0f}};
    const uint32_t steps[5] = {0, 0, 3, 4, 9};
    const int layers[5] = {1, 2, 1, 2, 1}, homes[5] = {0, 1, 2, 0, 1};
    for (int i = 0; i < 5; i++) row_bytes(K, steps[i], layers[i], homes[i], e[i], rk[i], w[i], rows + (size_t)i * rb);
    /* the documented little-endian layout */
    CHECK(rows[40 + 0] == 0 && rows[40 + 4] == 7 && rows[40 + 12] == 2 && rows[40 + 14] == 1 && rows[40 + 16] == 0xe8 &&
          rows[40 + 17] == 0x03 && rows[40 + 24] == 1 && rows[40 + 26] == 2 && rows[40 + 28] == 1 && rows[40 + 30] == 1);
    {
        int32_t ex[2], rr[2];
        float ww[2];
        moe_exprec_row r;
        moe_exprec_unpack(rows + 2 * rb, K, &r, ex, rr, ww);
        CHECK(r.step == 3 && r.token == 10 && r.pos == 3 && r.layer == 1 && r.home == 2 && r.req == 1003);
        CHECK(ex[0] == 2 && ex[1] == 5 && rr[0] == 0 && rr[1] == 2 && ww[0] == 1.0f && ww[1] == 2.0f);
    }

    /* stat: windows of 4 steps: steps 0,0,3 -> window 0; 4 -> 1; 9 -> 2 */
    moe_exprec *st;
    CHECK(moe_exprec_init(&st, MOE_EXPREC_STAT, &sh, 4, 1 << 20, &err) == MOE_OK);
    CHECK(moe_exprec_add(st, rows + 3 * rb, 2, &err) == MOE_OK); /* later windows first: the array grows down */
    CHECK(moe_exprec_add(st, rows, 3, &err) == MOE_OK);
    moe_exprec_totals t;
    moe_exprec_totals_get(st, &t);
    CHECK(t.rows == 5 && t.picks == 10 && t.records == 3 && t.dropped == 0);
    char path[256];
    snprintf(path, sizeof path, "%s/stat.bin", dir);
    CHECK(moe_exprec_write(st, path, &err) == MOE_OK);
    size_t n;
    uint8_t *b = load(path, &n);
    CHECK(n == 64 + 3 * 2 * 6 * 8);
    CHECK(!memcmp(b, "MOEEXPD\0", 8) && b[8] == 1 && b[12] == 1 && b[16] == 2 && b[20] == 1 && b[24] == 6 &&
          b[28] == 2 && b[32] == 3 && b[36] == 4 && b[40] == 3);
    moe_exprec_file f;
    CHECK(moe_exprec_parse(&f, b, n, &err) == MOE_OK);
    CHECK(f.mode == MOE_EXPREC_STAT && f.records == 3 && f.window_steps == 4 && f.first_step == 0);
    /* window 0: layer 1 (index 0) rows 0 and 2: experts 0,5,2,5; layer 2 row 1: 1,2 */
    uint64_t sum = 0;
    for (uint64_t wi = 0; wi < 3; wi++)
        for (int l = 0; l < 2; l++)
            for (int x = 0; x < 6; x++) sum += moe_exprec_count(&f, wi, l, x);
    CHECK(sum == 10);
    CHECK(moe_exprec_count(&f, 0, 0, 5) == 2 && moe_exprec_count(&f, 0, 0, 0) == 1 && moe_exprec_count(&f, 0, 0, 2) == 1);
    CHECK(moe_exprec_count(&f, 0, 1, 1) == 1 && moe_exprec_count(&f, 0, 1, 2) == 1);
    CHECK(moe_exprec_count(&f, 1, 1, 0) == 1 && moe_exprec_count(&f, 1, 1, 1) == 1);
    CHECK(moe_exprec_count(&f, 2, 0, 4) == 1 && moe_exprec_count(&f, 2, 0, 5) == 1);

    /* every truncation of the file is refused; so are corrupt headers */
    for (size_t cut = 0; cut < n; cut++) CHECK(moe_exprec_parse(&f, b, cut, &err) == MOE_ERR);
    uint8_t *c = malloc(n + 8);
    memcpy(c, b, n);
    memset(c + n, 0, 8);
    CHECK(moe_exprec_parse(&f, c, n + 8, &err) == MOE_ERR); /* trailing bytes */
    CHECK_CONTAINS(err.msg, "body has");
    const size_t at[] = {0, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 47};
    const uint8_t val[] = {'X', 2, 3, 0, 0xff, 0, 0xff, 0, 0, 0xff, 1, 0x80};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        memcpy(c, b, n);
        c[at[i]] = val[i];
        if (at[i] == 20) c[22] = 0xff; /* first layer past the limit */
        CHECK_MSG(moe_exprec_parse(&f, c, n, &err) == MOE_ERR, "corrupt byte %zu accepted", at[i]);
    }
    /* random bytes in the header, many times: refused or consistent */
    srand(1);
    for (int it = 0; it < 20000; it++) {
        memcpy(c, b, n);
        const int flips = 1 + rand() % 3;
        for (int k = 0; k < flips; k++) c[8 + rand() % 56] = (uint8_t)rand();
        size_t len = n - (size_t)(rand() % 2) * (size_t)(rand() % (int)n);
        if (moe_exprec_parse(&f, c, len, &err) == MOE_OK) {
            /* then every count it announces is inside the buffer */
            uint64_t s2 = 0;
            for (uint64_t wi = 0; wi < f.records; wi++)
                for (int l = 0; l < f.shape.layers && f.mode == MOE_EXPREC_STAT; l++)
                    for (int x = 0; x < f.shape.experts; x++) s2 += moe_exprec_count(&f, wi, l, x);
            (void)s2;
        }
    }
    free(c);
    free(b);
    moe_exprec_free(st);

    /* per_token: the rows as added, byte for byte */
    moe_exprec *pt;
    CHECK(moe_exprec_init(&pt, MOE_EXPREC_PER_TOKEN, &sh, 0, 1 << 20, &err) == MOE_OK);
    CHECK(moe_exprec_add(pt, rows, 5, &err) == MOE_OK);
    snprintf(path, sizeof path, "%s/pt.bin", dir);
    CHECK(moe_exprec_write(pt, path, &err) == MOE_OK);
    b = load(path, &n);
    CHECK(n == 64 + 5 * rb && b[12] == 2 && b[40] == 5);
    CHECK(moe_exprec_parse(&f, b, n, &err) == MOE_OK && f.records == 5 && !memcmp(f.body, rows, 5 * rb));
    for (size_t cut = 0; cut < n; cut++) CHECK(moe_exprec_parse(&f, b, cut, &err) == MOE_ERR);
    free(b);
    /* rows out of the shape are refused whole: nothing added */
    uint8_t bad[40];
    const int32_t be[2] = {0, 6}, br[2] = {0, 0};
    const float bw[2] = {1, 1};
    row_bytes(K, 0, 1, 0, be, br, bw, bad);
    CHECK(moe_exprec_add(pt, bad, 1, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "expert 6");
    const int32_t ge[2] = {0, 1}, gr[2] = {0, 3};
    row_bytes(K, 0, 1, 0, ge, gr, bw, bad);
    CHECK(moe_exprec_add(pt, bad, 1, &err) == MOE_ERR);
    row_bytes(K, 0, 3, 0, ge, br, bw, bad);
    CHECK(moe_exprec_add(pt, bad, 1, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "layer 3");
    moe_exprec_totals_get(pt, &t);
    CHECK(t.rows == 5);
    moe_exprec_free(pt);

    /* the bound: rows past max_bytes are counted, not kept */
    CHECK(moe_exprec_init(&pt, MOE_EXPREC_PER_TOKEN, &sh, 0, 3 * rb, &err) == MOE_OK);
    CHECK(moe_exprec_add(pt, rows, 5, &err) == MOE_OK);
    moe_exprec_totals_get(pt, &t);
    CHECK(t.rows == 5 && t.records == 3 && t.dropped == 2);
    moe_exprec_free(pt);
    CHECK(moe_exprec_init(&st, MOE_EXPREC_STAT, &sh, 1, 2 * 2 * 6 * 8, &err) == MOE_OK); /* two windows at most */
    CHECK(moe_exprec_add(st, rows, 5, &err) == MOE_OK); /* steps 0, 0 fit; 3, 4, 9 would need 4+ windows */
    moe_exprec_totals_get(st, &t);
    CHECK(t.rows == 5 && t.dropped == 3 && t.records == 1);
    moe_exprec_free(st);

    /* bad arguments */
    moe_exprec_shape bs = sh;
    bs.top_k = 7;
    CHECK(moe_exprec_init(&st, MOE_EXPREC_STAT, &bs, 1, 1 << 20, &err) == MOE_ERR);
    CHECK(moe_exprec_init(&st, MOE_EXPREC_STAT, &sh, 0, 1 << 20, &err) == MOE_ERR);
    moe_exprec_mode m;
    CHECK(moe_exprec_mode_parse("per_token", &m, &err) == MOE_OK && m == MOE_EXPREC_PER_TOKEN);
    CHECK(moe_exprec_mode_parse("stats", &m, &err) == MOE_ERR);
    CHECK(!moe_exprec_is((const uint8_t *)"1 0 0 0 1,2", 11));

    snprintf(path, sizeof path, "%s/stat.bin", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/pt.bin", dir);
    unlink(path);
    rmdir(dir);
    return check_summary("exprec_test");
}
