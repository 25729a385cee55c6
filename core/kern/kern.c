/*
 * kern.c — the products built on the kernel table (row-sliced, cache-tiled
 * matrix products, the transposed product, the int8 path) and the small
 * per-vector ops.  Baseline x86-64 code: the arithmetic of every value is
 * in the table's entries; this file only decides which rows and tokens
 * meet when.
 */
#include "kern_impl.h"

#include <math.h>
#include <string.h>

void moe_kern_matmul_generic(const moe_kern_fns *f, const moe_mat *m, int64_t r0, int64_t r1, const float *x,
                             int64_t xs, int64_t n_tok, float *y, int64_t ys)
{
    /* Tiles: ~64 KiB of weight rows × ~128 KiB of activations stay in L2
     * while they meet; the tiling changes which loads hit cache, never the
     * arithmetic of a value. */
    int64_t rt = (int64_t)(65536 / (m->row_bytes ? m->row_bytes : 1));
    int64_t tt = (131072 / (m->cols > 0 ? m->cols * 4 : 1)) & ~(int64_t)3;
    if (rt < 4) rt = 4;
    if (tt < 4) tt = 4;
    for (int64_t rb = r0; rb < r1; rb += rt) {
        const int64_t re = rb + rt < r1 ? rb + rt : r1;
        for (int64_t tb = 0; tb < n_tok; tb += tt) {
            const int64_t te = tb + tt < n_tok ? tb + tt : n_tok;
            for (int64_t r = rb; r < re; r++) {
                const void *row = moe_mat_row(m, r);
                for (int64_t t = tb; t < te; t += 4) {
                    const int nt = te - t < 4 ? (int)(te - t) : 4;
                    float o[4];
                    f->dotn(row, x + t * xs, xs, nt, m->cols, o);
                    for (int u = 0; u < nt; u++) y[(t + u) * ys + r] = o[u];
                }
            }
        }
    }
}

void moe_kern_matmul_rows(const moe_kern_set *k, const moe_mat *m, int64_t r0, int64_t r1,
                          const float *x, int64_t x_stride, int64_t n_tok,
                          float *y, int64_t y_stride)
{
    const moe_kern_fns *f = moe_kern_for(k, m->type);
    MOE_ASSERT(f && r0 >= 0 && r1 <= m->rows);
    if (f->matmul && n_tok >= 4) f->matmul(m, r0, r1, x, x_stride, n_tok, y, y_stride);
    else moe_kern_matmul_generic(f, m, r0, r1, x, x_stride, n_tok, y, y_stride);
}

void moe_kern_matvec_t(const moe_kern_set *k, const moe_mat *m, const float *x, float *y)
{
    const moe_kern_fns *f = moe_kern_for(k, m->type);
    MOE_ASSERT(f);
    memset(y, 0, (size_t)m->cols * sizeof(float));
    for (int64_t r = 0; r < m->rows; r++) f->axpy(moe_mat_row(m, r), x[r], y, m->cols);
}

void moe_kern_rmsnorm(const float *x, const float *w, float eps, float *y, int64_t n)
{
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    const float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

void moe_kern_softmax(const float *x, float *y, int64_t n)
{
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        y[i] = expf(x[i] - mx);
        sum += y[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) y[i] *= inv;
}

void moe_kern_swiglu(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* ---- int8-activation path -------------------------------------------------- */

float moe_kern_dot_int8(const moe_kern_set *k, uint32_t type, const void *w, const void *xq, int64_t n)
{
    const moe_kern_fns *f = moe_kern_for(k, type);
    MOE_ASSERT(f && f->dotn_int8);
    float r;
    f->dotn_int8(w, xq, 0, 1, n, &r);
    return r;
}

void moe_kern_matmul_int8_tiled8(const moe_kern_fns *f, moe_kern_dot8_int8_fn dot8, const moe_mat *m, int64_t r0,
                                 int64_t r1, const void *xq, int64_t xq_stride, int64_t n_tok, float *y, int64_t ys)
{
    const uint32_t dt = moe_kern_dot_type(m->type);
    const size_t bb = moe_kern_act_row_bytes(dt, moe_kern_act_block(dt)); /* bytes of one block */
    const size_t xsb = (size_t)xq_stride * bb;                               /* bytes between tokens */
    const size_t xrow = moe_kern_act_row_bytes(dt, m->cols);
    const int64_t group = dot8 ? 8 : 4; /* token blocks a multiple of the widest call */
    int64_t rt = (int64_t)(65536 / m->row_bytes), tt = (int64_t)(65536 / (xrow ? xrow : 1)) & ~(group - 1);
    if (rt < 4) rt = 4;
    if (tt < group) tt = group;
    for (int64_t rb = r0; rb < r1; rb += rt) {
        const int64_t re = rb + rt < r1 ? rb + rt : r1;
        for (int64_t tb = 0; tb < n_tok; tb += tt) {
            const int64_t te = tb + tt < n_tok ? tb + tt : n_tok;
            for (int64_t r = rb; r < re; r++) {
                const void *row = moe_mat_row(m, r);
                int64_t t = tb;
                /* 8s (dot8), quads and the 1 to 3 left each share the row's decode
                 * (3 tokens of q4_K, one thread, in cache: 58.8 GMAC/s, against 37.5
                 * as three single dots) */
                for (; dot8 && t + 8 <= te; t += 8) {
                    float o[8];
                    dot8(row, (const char *)xq + (size_t)t * xsb, xq_stride, m->cols, o);
                    for (int u = 0; u < 8; u++) y[(t + u) * ys + r] = o[u];
                }
                for (; t + 4 <= te; t += 4) {
                    float o[4];
                    f->dotn_int8(row, (const char *)xq + (size_t)t * xsb, xq_stride, 4, m->cols, o);
                    for (int u = 0; u < 4; u++) y[(t + u) * ys + r] = o[u];
                }
                if (t < te) {
                    float o[4];
                    const int nr = (int)(te - t);
                    f->dotn_int8(row, (const char *)xq + (size_t)t * xsb, xq_stride, nr, m->cols, o);
                    for (int u = 0; u < nr; u++) y[(t + u) * ys + r] = o[u];
                }
            }
        }
    }
}

void moe_kern_matmul_int8_generic(const moe_kern_fns *f, const moe_mat *m, int64_t r0, int64_t r1, const void *xq,
                                  int64_t xq_stride, int64_t n_tok, float *y, int64_t ys)
{
    moe_kern_matmul_int8_tiled8(f, NULL, m, r0, r1, xq, xq_stride, n_tok, y, ys);
}

size_t moe_kern_repack_bytes(uint32_t type, int64_t rows, int64_t cols)
{
    if (rows <= 0 || cols <= 0 || cols > 32768) return 0;
    const int64_t groups = (rows + MOE_RP_ROWS - 1) / MOE_RP_ROWS;
    if (type == MOE_DT_Q8_0 && cols % MOE_Q8_0_BLOCK == 0)
        return (size_t)groups * moe_rp_group_bytes(cols / MOE_Q8_0_BLOCK);
    if (type == MOE_DT_Q4_K && cols % MOE_QK_K == 0)
        return (size_t)groups * (size_t)(cols / MOE_QK_K) * MOE_RPK_SB_BYTES;
    return 0;
}

/* Q4_K: each super-block's d, dmin, scales, mins and nibbles moved to
 * their lanes (zero rows pad the last group: d = dmin = 0, so their
 * products are 0).  Chunk i of lane l holds values 8i..8i+3 (low nibbles)
 * and 8i+4..8i+7 (high): in the file both sit in the same half of the same
 * bytes of qs (value v: byte 32·(v / 64) + v % 32, high nibble when
 * v % 64 ≥ 32). */
static void repack_q4_K(const moe_mat *m, void *dst)
{
    const int64_t nsb = m->cols / MOE_QK_K, groups = (m->rows + MOE_RP_ROWS - 1) / MOE_RP_ROWS;
    memset(dst, 0, (size_t)(groups * nsb) * MOE_RPK_SB_BYTES);
    for (int64_t g = 0; g < groups; g++)
        for (int l = 0; l < MOE_RP_ROWS && g * MOE_RP_ROWS + l < m->rows; l++) {
            const moe_block_q4_K *row = moe_mat_row(m, g * MOE_RP_ROWS + l);
            for (int64_t k = 0; k < nsb; k++) {
                const moe_block_q4_K *b = &row[k];
                unsigned char *sb = (unsigned char *)dst + (size_t)(g * nsb + k) * MOE_RPK_SB_BYTES;
                memcpy(sb + MOE_RPK_D + 2 * l, &b->d, 2);
                memcpy(sb + MOE_RPK_DMIN + 2 * l, &b->dmin, 2);
                for (int j = 0; j < 8; j++) {
                    int sc, mn;
                    moe_q4_K_scale_min(b->scales, j, &sc, &mn);
                    sb[MOE_RPK_SC + 16 * j + l] = (unsigned char)sc;
                    sb[MOE_RPK_M + 32 * (j / 2) + 2 * l + j % 2] = (unsigned char)mn;
                }
                for (int i = 0; i < MOE_QK_K / 8; i++) {
                    const int v = 8 * i, sh = (v % 64) / 32 * 4;
                    const uint8_t *src = b->qs + 32 * (v / 64) + v % 32;
                    unsigned char *o = sb + MOE_RPK_Q + moe_rpk_q_idx(l, v);
                    for (int e = 0; e < 4; e++)
                        o[e] = (unsigned char)(((src[e] >> sh) & 0xF) | (((src[e + 4] >> sh) & 0xF) << 4));
                }
            }
        }
}

void moe_kern_repack(const moe_mat *m, void *dst)
{
    if (m->type == MOE_DT_Q4_K) {
        MOE_ASSERT(moe_kern_repack_bytes(m->type, m->rows, m->cols) ==
                   (size_t)((m->rows + MOE_RP_ROWS - 1) / MOE_RP_ROWS * (m->cols / MOE_QK_K)) * MOE_RPK_SB_BYTES);
        repack_q4_K(m, dst);
        return;
    }
    const int64_t nb = m->cols / MOE_Q8_0_BLOCK, groups = (m->rows + MOE_RP_ROWS - 1) / MOE_RP_ROWS;
    const size_t gb = moe_rp_group_bytes(nb);
    MOE_ASSERT(moe_kern_repack_bytes(m->type, m->rows, m->cols) == (size_t)groups * gb);
    for (int64_t g = 0; g < groups; g++) {
        unsigned char *grp = (unsigned char *)dst + (size_t)g * gb;
        memset(grp, 0, gb); /* also a lone last block's missing partner d */
        for (int64_t b = 0; b < nb; b++) {
            uint16_t *d = (uint16_t *)(void *)(grp + moe_rp_d_off(b));
            unsigned char *q = grp + moe_rp_q_off(b);
            for (int l = 0; l < MOE_RP_ROWS; l++) {
                const int64_t r = g * MOE_RP_ROWS + l;
                const moe_block_q8_0 *blk = r < m->rows ? (const moe_block_q8_0 *)moe_mat_row(m, r) + b : NULL;
                d[l] = blk ? blk->d : 0;
                for (int j = 0; j < MOE_Q8_0_BLOCK; j++)
                    q[moe_rp_q_idx(l, j)] = (unsigned char)((blk ? (int)blk->qs[j] : 0) + 128);
            }
        }
    }
}

void moe_kern_matmul_rows_int8(const moe_kern_set *k, const moe_mat *m, int64_t r0, int64_t r1, const void *xq,
                               int64_t xq_stride, int64_t n_tok, float *y, int64_t y_stride)
{
    const moe_kern_fns *f = moe_kern_for(k, m->type);
    MOE_ASSERT(f && f->dotn_int8 && r0 >= 0 && r1 <= m->rows);
    if (m->rp) {
        /* the repacked layout's own products (every set the same bits) */
        MOE_ASSERT(m->type == MOE_DT_Q8_0 || m->type == MOE_DT_Q4_K);
        if (f->matmul_int8_rp) f->matmul_int8_rp(m, r0, r1, xq, xq_stride, n_tok, y, y_stride);
        else moe_kern_ref_matmul_int8_rp(m, r0, r1, xq, xq_stride, n_tok, y, y_stride);
        return;
    }
    /* a set's own product chooses its one-token path (the legacy tile:
     * KERN_INT8_SHORT_ROW, avx512 Q8_0 TILE_SHORT_ROW_q8_0; the K-quants:
     * rows in pairs) */
    if (f->matmul_int8) f->matmul_int8(m, r0, r1, xq, xq_stride, n_tok, y, y_stride);
    else moe_kern_matmul_int8_generic(f, m, r0, r1, xq, xq_stride, n_tok, y, y_stride);
}
