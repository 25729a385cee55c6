/*
 * exprec.c — expert distribution records (exprec.h).
 */
#include "exprec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put16(uint8_t *o, uint16_t v) { o[0] = (uint8_t)v, o[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *o, uint32_t v)
{
    for (int i = 0; i < 4; i++) o[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *o, uint64_t v)
{
    for (int i = 0; i < 8; i++) o[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

int moe_exprec_mode_parse(const char *s, moe_exprec_mode *mode, moe_err *err)
{
    if (!strcmp(s, "stat")) *mode = MOE_EXPREC_STAT;
    else if (!strcmp(s, "per_token")) *mode = MOE_EXPREC_PER_TOKEN;
    else return moe_err_set(err, "recorder mode '%s': stat or per_token", s);
    return MOE_OK;
}

const char *moe_exprec_mode_name(moe_exprec_mode m) { return m == MOE_EXPREC_STAT ? "stat" : "per_token"; }

int moe_exprec_shape_check(const moe_exprec_shape *s, moe_err *err)
{
    if (s->layers < 1 || s->layers > MOE_EXPREC_MAX_LAYERS || s->first_layer < 0 ||
        s->first_layer > MOE_EXPREC_MAX_LAYERS - s->layers || s->experts < 1 || s->experts > MOE_EXPREC_MAX_EXPERTS ||
        s->top_k < 1 || s->top_k > MOE_EXPREC_MAX_K || s->top_k > s->experts || s->ranks < 1 || s->ranks > 65535)
        return moe_err_set(err,
                           "record shape: %d MoE layers from block %d, %d experts, top-%d, %d ranks (1..%d layers "
                           "below block %d, 1..%d experts, top-k 1..%d, 1..65535 ranks)",
                           s->layers, s->first_layer, s->experts, s->top_k, s->ranks, MOE_EXPREC_MAX_LAYERS,
                           MOE_EXPREC_MAX_LAYERS, MOE_EXPREC_MAX_EXPERTS, MOE_EXPREC_MAX_K);
    return MOE_OK;
}

void moe_exprec_pack(const moe_exprec_row *r, int k, uint8_t *o)
{
    put32(o, r->step);
    put32(o + 4, (uint32_t)r->token);
    put32(o + 8, (uint32_t)r->pos);
    put16(o + 12, (uint16_t)r->layer);
    put16(o + 14, (uint16_t)r->home);
    put64(o + 16, (uint64_t)r->req);
    uint8_t *e = o + 24, *rk = e + 2 * k, *w = rk + 2 * k;
    for (int j = 0; j < k; j++) {
        put16(e + 2 * j, (uint16_t)(int16_t)r->experts[j]);
        put16(rk + 2 * j, (uint16_t)r->ranks[j]);
        uint32_t u;
        memcpy(&u, &r->weights[j], sizeof u);
        put32(w + 4 * j, u);
    }
}

void moe_exprec_unpack(const uint8_t *in, int k, moe_exprec_row *row, int32_t *experts, int32_t *ranks,
                       float *weights)
{
    row->step = get32(in);
    row->token = (int32_t)get32(in + 4);
    row->pos = (int32_t)get32(in + 8);
    row->layer = get16(in + 12);
    row->home = get16(in + 14);
    row->req = (int64_t)get64(in + 16);
    const uint8_t *e = in + 24, *rk = e + 2 * k, *w = rk + 2 * k;
    for (int j = 0; j < k; j++) {
        experts[j] = (int16_t)get16(e + 2 * j);
        ranks[j] = get16(rk + 2 * j);
        const uint32_t u = get32(w + 4 * j);
        memcpy(&weights[j], &u, sizeof u);
    }
    row->experts = experts;
    row->ranks = ranks;
    row->weights = weights;
}

struct moe_exprec {
    moe_exprec_mode mode;
    moe_exprec_shape s;
    uint32_t window;
    size_t max_bytes;
    size_t row_bytes;
    uint8_t *rows;           /* per_token: [n_rows] packed */
    size_t n_rows, cap_rows;
    uint64_t *counts;        /* stat: [n_windows][layers][experts] */
    uint64_t base, n_windows; /* window indices base .. base + n_windows - 1 */
    uint64_t cap_windows;     /* windows counts has room for (the rest zero) */
    moe_exprec_totals t;
};

int moe_exprec_init(moe_exprec **out, moe_exprec_mode mode, const moe_exprec_shape *s, int window_steps,
                    size_t max_bytes, moe_err *err)
{
    *out = NULL;
    if (moe_exprec_shape_check(s, err)) return MOE_ERR;
    if (mode != MOE_EXPREC_STAT && mode != MOE_EXPREC_PER_TOKEN) return moe_err_set(err, "record mode %d", (int)mode);
    if (mode == MOE_EXPREC_STAT && window_steps < 1)
        return moe_err_set(err, "a stat window of %d steps (at least 1)", window_steps);
    moe_exprec *r = moe_xcalloc(1, sizeof *r);
    r->mode = mode;
    r->s = *s;
    r->window = mode == MOE_EXPREC_STAT ? (uint32_t)window_steps : 0;
    r->max_bytes = max_bytes;
    r->row_bytes = MOE_EXPREC_ROW_BYTES(s->top_k);
    *out = r;
    return MOE_OK;
}

void moe_exprec_free(moe_exprec *r)
{
    if (!r) return;
    free(r->rows);
    free(r->counts);
    free(r);
}

/* Makes window w a kept one; false if that would pass the bound.  The
 * array grows upward by doubling (windows come in step order, so this is
 * the common case and costs amortized O(1) a window); a window below base
 * (a rank's rows arriving late) moves what is kept up, rarely. */
static bool stat_window(moe_exprec *r, uint64_t w)
{
    const size_t per = (size_t)r->s.layers * (size_t)r->s.experts; /* <= 2^28 */
    if (r->n_windows && w >= r->base && w < r->base + r->n_windows) return true;
    const uint64_t lo = r->n_windows && r->base < w ? r->base : w;
    const uint64_t hi = r->n_windows && r->base + r->n_windows - 1 > w ? r->base + r->n_windows - 1 : w;
    const uint64_t n = hi - lo + 1, max_windows = r->max_bytes / 8 / per;
    if (n > max_windows) return false;
    if (lo == r->base && r->n_windows && n <= r->cap_windows) { /* room above: zeroed already */
        r->n_windows = n;
        return true;
    }
    uint64_t cap = n;
    if (lo == r->base || !r->n_windows) { /* growing upward: double */
        cap = r->cap_windows * 2 > n ? r->cap_windows * 2 : n;
        if (cap > max_windows) cap = max_windows;
    }
    uint64_t *c = moe_xcalloc((size_t)cap * per, sizeof *c);
    if (r->n_windows) memcpy(c + (size_t)(r->base - lo) * per, r->counts, (size_t)r->n_windows * per * sizeof *c);
    free(r->counts);
    r->counts = c;
    r->base = lo;
    r->n_windows = n;
    r->cap_windows = cap;
    return true;
}

int moe_exprec_add(moe_exprec *r, const uint8_t *rows, size_t n, moe_err *err)
{
    const int K = r->s.top_k;
    int32_t ex[MOE_EXPREC_MAX_K], rk[MOE_EXPREC_MAX_K];
    float w[MOE_EXPREC_MAX_K];
    moe_exprec_row row;
    for (size_t i = 0; i < n; i++) { /* all checked before any is kept */
        moe_exprec_unpack(rows + i * r->row_bytes, K, &row, ex, rk, w);
        if (row.layer < r->s.first_layer || row.layer >= r->s.first_layer + r->s.layers || row.home >= r->s.ranks)
            return moe_err_set(err, "record row %zu: layer %d, home rank %d out of the shape", i, row.layer, row.home);
        for (int j = 0; j < K; j++)
            if (ex[j] < 0 || ex[j] >= r->s.experts || rk[j] >= r->s.ranks)
                return moe_err_set(err, "record row %zu: expert %d on rank %d out of the shape", i, (int)ex[j],
                                   (int)rk[j]);
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = rows + i * r->row_bytes;
        r->t.rows++;
        r->t.picks += (uint64_t)K;
        if (r->mode == MOE_EXPREC_PER_TOKEN) {
            if (r->n_rows == r->cap_rows) {
                size_t cap = r->cap_rows ? r->cap_rows * 2 : 1024;
                if (cap > r->max_bytes / r->row_bytes) cap = r->max_bytes / r->row_bytes;
                if (cap <= r->n_rows) {
                    r->t.dropped++;
                    continue;
                }
                r->rows = moe_xrealloc(r->rows, cap * r->row_bytes);
                r->cap_rows = cap;
            }
            memcpy(r->rows + r->n_rows++ * r->row_bytes, p, r->row_bytes);
            continue;
        }
        moe_exprec_unpack(p, K, &row, ex, rk, w);
        const uint64_t win = row.step / r->window;
        if (!stat_window(r, win)) {
            r->t.dropped++;
            continue;
        }
        uint64_t *c = r->counts + ((size_t)(win - r->base) * (size_t)r->s.layers + (size_t)(row.layer - r->s.first_layer)) *
                                      (size_t)r->s.experts;
        for (int j = 0; j < K; j++) c[ex[j]]++;
    }
    return MOE_OK;
}

void moe_exprec_totals_get(const moe_exprec *r, moe_exprec_totals *t)
{
    *t = r->t;
    t->records = r->mode == MOE_EXPREC_PER_TOKEN ? r->n_rows : r->n_windows;
}

int moe_exprec_write(const moe_exprec *r, const char *path, moe_err *err)
{
    uint8_t h[MOE_EXPREC_HEADER] = {0};
    memcpy(h, MOE_EXPREC_MAGIC, 8);
    put32(h + 8, MOE_EXPREC_VERSION);
    put32(h + 12, (uint32_t)r->mode);
    put32(h + 16, (uint32_t)r->s.layers);
    put32(h + 20, (uint32_t)r->s.first_layer);
    put32(h + 24, (uint32_t)r->s.experts);
    put32(h + 28, (uint32_t)r->s.top_k);
    put32(h + 32, (uint32_t)r->s.ranks);
    put32(h + 36, r->window);
    put64(h + 40, r->mode == MOE_EXPREC_PER_TOKEN ? r->n_rows : r->n_windows);
    put64(h + 48, r->n_windows ? r->base * r->window : 0);
    put64(h + 56, r->t.dropped);
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return moe_err_set(err, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return moe_err_set(err, "%s: %s", tmp, strerror(errno));
    bool ok = fwrite(h, 1, sizeof h, f) == sizeof h;
    if (r->mode == MOE_EXPREC_PER_TOKEN) {
        ok = ok && fwrite(r->rows, r->row_bytes, r->n_rows, f) == r->n_rows;
    } else {
        const size_t n = (size_t)r->n_windows * (size_t)r->s.layers * (size_t)r->s.experts;
        uint8_t b[8];
        for (size_t i = 0; i < n && ok; i++) {
            put64(b, r->counts[i]);
            ok = fwrite(b, 1, 8, f) == 8;
        }
    }
    if (fclose(f) != 0) ok = false;
    if (!ok || rename(tmp, path) != 0) {
        const int e = errno;
        remove(tmp);
        return moe_err_set(err, "%s: %s", path, ok ? strerror(e) : "write failed");
    }
    return MOE_OK;
}

bool moe_exprec_is(const uint8_t *buf, size_t len) { return len >= 8 && !memcmp(buf, MOE_EXPREC_MAGIC, 8); }

int moe_exprec_parse(moe_exprec_file *f, const uint8_t *buf, size_t len, moe_err *err)
{
    memset(f, 0, sizeof *f);
    if (len < MOE_EXPREC_HEADER || !moe_exprec_is(buf, len))
        return moe_err_set(err, "not an expert record (%zu bytes, no '%s' header)", len, MOE_EXPREC_MAGIC);
    const uint32_t version = get32(buf + 8), mode = get32(buf + 12);
    if (version != MOE_EXPREC_VERSION)
        return moe_err_set(err, "expert record version %u (this build reads %d)", version, MOE_EXPREC_VERSION);
    if (mode != MOE_EXPREC_STAT && mode != MOE_EXPREC_PER_TOKEN) return moe_err_set(err, "expert record mode %u", mode);
    const uint32_t v[5] = {get32(buf + 16), get32(buf + 20), get32(buf + 24), get32(buf + 28), get32(buf + 32)};
    for (int i = 0; i < 5; i++)
        if (v[i] > 65536) return moe_err_set(err, "expert record: header field %d is %u", i, v[i]);
    f->mode = (moe_exprec_mode)mode;
    f->shape = (moe_exprec_shape){(int)v[0], (int)v[1], (int)v[2], (int)v[3], (int)v[4]};
    if (moe_exprec_shape_check(&f->shape, err)) return moe_err_prefix(err, "expert record");
    f->window_steps = get32(buf + 36);
    f->records = get64(buf + 40);
    f->first_step = get64(buf + 48);
    f->dropped = get64(buf + 56);
    if (f->mode == MOE_EXPREC_STAT && f->window_steps < 1) return moe_err_set(err, "expert record: a stat window of 0 steps");
    const uint64_t per = f->mode == MOE_EXPREC_STAT ? (uint64_t)f->shape.layers * (uint64_t)f->shape.experts * 8
                                                    : MOE_EXPREC_ROW_BYTES(f->shape.top_k);
    const uint64_t body = len - MOE_EXPREC_HEADER;
    if (f->records > body / per || f->records * per != body)
        return moe_err_set(err, "expert record: %llu records of %llu bytes, but the body has %llu bytes",
                           (unsigned long long)f->records, (unsigned long long)per, (unsigned long long)body);
    f->body = buf + MOE_EXPREC_HEADER;
    return MOE_OK;
}

uint64_t moe_exprec_count(const moe_exprec_file *f, uint64_t window, int layer, int expert)
{
    MOE_ASSERT(f->mode == MOE_EXPREC_STAT && window < f->records && layer >= 0 && layer < f->shape.layers &&
               expert >= 0 && expert < f->shape.experts);
    return get64(f->body + ((window * (uint64_t)f->shape.layers + (uint64_t)layer) * (uint64_t)f->shape.experts +
                            (uint64_t)expert) * 8);
}
