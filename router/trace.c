/*
 * trace.c — the routing trace reader (format in trace.h).
 */
#include "trace.h"

#include "exprec.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

typedef struct cursor {
    const char *p, *end;
    size_t line;
} cursor;

static bool at_eol(const cursor *c) { return c->p >= c->end || *c->p == '\n'; }

static void skip_blanks(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r')) c->p++;
}

/* A decimal integer in [lo, hi]. */
static bool read_int(cursor *c, int64_t lo, int64_t hi, int64_t *out)
{
    bool neg = false;
    if (c->p < c->end && *c->p == '-') {
        neg = true;
        c->p++;
    }
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return false;
    int64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (v > (INT64_MAX - 9) / 10) return false;
        v = v * 10 + (*c->p++ - '0');
    }
    if (neg) v = -v;
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* A float as %.9g writes them (strtod on a bounded copy). */
static bool read_float(cursor *c, float *out)
{
    char buf[64];
    size_t n = 0;
    while (c->p + n < c->end && n < sizeof buf - 1 && strchr("0123456789+-.eEinfaINFA", c->p[n])) n++;
    if (n == 0 || n >= sizeof buf - 1) return false;
    memcpy(buf, c->p, n);
    buf[n] = 0;
    char *e;
    double v = strtod(buf, &e);
    if (e != buf + n || !isfinite(v)) return false;
    c->p += n;
    *out = (float)v;
    return true;
}

/* Grows the row arrays to hold at least n + 1 rows. */
static void grow(moe_trace *t, size_t *cap, int k)
{
    if (t->n < *cap) return;
    size_t c = *cap ? *cap * 2 : 4096;
    t->layer = moe_xrealloc(t->layer, c * sizeof *t->layer);
    t->req = moe_xrealloc(t->req, c * sizeof *t->req);
    t->pos = moe_xrealloc(t->pos, c * sizeof *t->pos);
    t->home = moe_xrealloc(t->home, c * sizeof *t->home);
    t->ids = moe_xrealloc(t->ids, c * (size_t)k * sizeof *t->ids);
    t->w = moe_xrealloc(t->w, c * (size_t)k * sizeof *t->w);
    t->ranks = moe_xrealloc(t->ranks, c * (size_t)k * sizeof *t->ranks);
    *cap = c;
}

/* Counts the comma-separated items of the field at c (for K). */
static int field_items(const cursor *c)
{
    int n = 1;
    for (const char *q = c->p; q < c->end && *q != ' ' && *q != '\t' && *q != '\n' && *q != '\r'; q++) n += *q == ',';
    return n;
}

int moe_trace_parse(moe_trace *t, const char *text, size_t len, moe_err *err)
{
    memset(t, 0, sizeof *t);
    cursor c = {text, text + len, 1};
    size_t cap = 0;
    int k = 0;
    t->min_layer = INT32_MAX;
    t->max_layer = -1;
    t->max_expert = -1;
    t->max_rank = -1;
    for (; c.p < c.end; c.line++) {
        skip_blanks(&c);
        if (at_eol(&c)) {
            if (c.p < c.end) c.p++;
            continue;
        }
        int64_t v[4];
        static const int64_t hi[4] = {MOE_TRACE_MAX_LAYER, INT64_MAX / 2, INT64_MAX / 2, MOE_TRACE_MAX_RANK};
        static const char *what[4] = {"layer", "request", "position", "home rank"};
        for (int f = 0; f < 4; f++) {
            skip_blanks(&c);
            if (!read_int(&c, f == 1 ? -1 : 0, hi[f], &v[f])) {
                moe_err_set(err, "trace line %zu: bad %s", c.line, what[f]);
                goto fail;
            }
        }
        skip_blanks(&c);
        if (k == 0) {
            k = field_items(&c);
            if (k > MOE_TRACE_MAX_K) {
                moe_err_set(err, "trace line %zu: %d experts a token (at most %d)", c.line, k, MOE_TRACE_MAX_K);
                goto fail;
            }
            t->k = k;
        }
        grow(t, &cap, k);
        const size_t row = t->n;
        for (int f = 0; f < 3; f++) {
            skip_blanks(&c);
            for (int j = 0; j < k; j++) {
                if (j > 0) {
                    if (c.p >= c.end || *c.p != ',') {
                        moe_err_set(err, "trace line %zu: expected %d comma-separated values in field %d", c.line, k,
                                    5 + f);
                        goto fail;
                    }
                    c.p++;
                }
                int64_t x;
                bool ok;
                if (f == 1) ok = read_float(&c, &t->w[row * (size_t)k + (size_t)j]);
                else ok = read_int(&c, 0, f == 0 ? MOE_TRACE_MAX_EXPERT : MOE_TRACE_MAX_RANK, &x);
                if (!ok) {
                    moe_err_set(err, "trace line %zu: bad %s %d", c.line, f == 0 ? "expert" : f == 1 ? "weight" : "rank",
                                j + 1);
                    goto fail;
                }
                if (f == 0) {
                    t->ids[row * (size_t)k + (size_t)j] = (int32_t)x;
                    if (j > 0 && x <= t->ids[row * (size_t)k + (size_t)j - 1]) {
                        moe_err_set(err, "trace line %zu: experts are not ascending", c.line);
                        goto fail;
                    }
                    if (x > t->max_expert) t->max_expert = (int)x;
                } else if (f == 2) {
                    t->ranks[row * (size_t)k + (size_t)j] = (int32_t)x;
                    if (x > t->max_rank) t->max_rank = (int)x;
                }
            }
            if (c.p < c.end && *c.p == ',') {
                moe_err_set(err, "trace line %zu: more than %d values in field %d", c.line, k, 5 + f);
                goto fail;
            }
        }
        skip_blanks(&c);
        if (!at_eol(&c)) {
            moe_err_set(err, "trace line %zu: unexpected text after the ranks", c.line);
            goto fail;
        }
        if (c.p < c.end) c.p++;
        t->layer[row] = (int32_t)v[0];
        t->req[row] = v[1];
        t->pos[row] = v[2];
        t->home[row] = (int32_t)v[3];
        if (v[0] < t->min_layer) t->min_layer = (int)v[0];
        if (v[0] > t->max_layer) t->max_layer = (int)v[0];
        if (v[3] > t->max_rank) t->max_rank = (int)v[3];
        t->n++;
    }
    if (t->n == 0) {
        moe_err_set(err, "trace: no rows");
        goto fail;
    }
    return MOE_OK;
fail:
    moe_trace_free(t);
    return MOE_ERR;
}

int moe_trace_from_record(moe_trace *t, const uint8_t *buf, size_t len, moe_err *err)
{
    memset(t, 0, sizeof *t);
    moe_exprec_file f;
    if (moe_exprec_parse(&f, buf, len, err)) return MOE_ERR;
    if (f.mode != MOE_EXPREC_PER_TOKEN)
        return moe_err_set(err, "a stat record holds counts per window, not rows: moe-route reads it with 'stats' only");
    if (f.records == 0) return moe_err_set(err, "the record has no rows");
    if (f.records > MOE_TRACE_MAX_BYTES / MOE_EXPREC_ROW_BYTES(1)) return moe_err_set(err, "too many rows");
    const int K = f.shape.top_k;
    const size_t n = (size_t)f.records, rb = MOE_EXPREC_ROW_BYTES(K);
    t->n = n;
    t->k = K;
    t->layer = moe_xmalloc(n * sizeof *t->layer);
    t->req = moe_xmalloc(n * sizeof *t->req);
    t->pos = moe_xmalloc(n * sizeof *t->pos);
    t->home = moe_xmalloc(n * sizeof *t->home);
    t->ids = moe_xmalloc(n * (size_t)K * sizeof *t->ids);
    t->w = moe_xmalloc(n * (size_t)K * sizeof *t->w);
    t->ranks = moe_xmalloc(n * (size_t)K * sizeof *t->ranks);
    t->min_layer = INT32_MAX;
    t->max_layer = t->max_expert = t->max_rank = -1;
    for (size_t i = 0; i < n; i++) {
        moe_exprec_row r;
        moe_exprec_unpack(f.body + i * rb, K, &r, t->ids + i * (size_t)K, t->ranks + i * (size_t)K, t->w + i * (size_t)K);
        /* the same checks as a text line's */
        if (r.layer < f.shape.first_layer || r.layer >= f.shape.first_layer + f.shape.layers || r.home >= f.shape.ranks ||
            r.pos < 0 || r.req < 0) {
            moe_trace_free(t);
            return moe_err_set(err, "record row %zu: layer %d, home %d, position %d, request %lld out of range", i,
                               r.layer, r.home, (int)r.pos, (long long)r.req);
        }
        for (int j = 0; j < K; j++) {
            const int32_t e = t->ids[i * (size_t)K + (size_t)j], rk = t->ranks[i * (size_t)K + (size_t)j];
            const float w = t->w[i * (size_t)K + (size_t)j];
            if (e < 0 || e >= f.shape.experts || e > MOE_TRACE_MAX_EXPERT || (j > 0 && e <= t->ids[i * (size_t)K + (size_t)j - 1]) ||
                rk >= f.shape.ranks || rk > MOE_TRACE_MAX_RANK || !isfinite(w)) {
                moe_trace_free(t);
                return moe_err_set(err, "record row %zu: expert %d (ascending, below %d), rank %d, weight %g", i, (int)e,
                                   f.shape.experts, (int)rk, (double)w);
            }
            if (e > t->max_expert) t->max_expert = e;
            if (rk > t->max_rank) t->max_rank = rk;
        }
        t->layer[i] = r.layer;
        t->req[i] = r.req;
        t->pos[i] = r.pos;
        t->home[i] = r.home;
        if (r.layer < t->min_layer) t->min_layer = r.layer;
        if (r.layer > t->max_layer) t->max_layer = r.layer;
        if (r.home > t->max_rank) t->max_rank = r.home;
    }
    return MOE_OK;
}

int moe_trace_load(moe_trace *t, const char *path, moe_err *err)
{
    memset(t, 0, sizeof *t);
    char *buf = NULL;
    size_t n = 0;
    if (moe_file_read(path, MOE_TRACE_MAX_BYTES, &buf, &n, err)) return MOE_ERR;
    int rc = moe_exprec_is((const uint8_t *)buf, n) ? moe_trace_from_record(t, (const uint8_t *)buf, n, err)
                                                     : moe_trace_parse(t, buf, n, err);
    free(buf);
    if (rc) moe_err_prefix(err, "%s", path);
    return rc;
}

void moe_trace_free(moe_trace *t)
{
    free(t->layer);
    free(t->req);
    free(t->pos);
    free(t->home);
    free(t->ids);
    free(t->w);
    free(t->ranks);
    memset(t, 0, sizeof *t);
}

uint64_t *moe_trace_counts(const moe_trace *t, int n_expert, moe_err *err)
{
    if (n_expert <= t->max_expert || n_expert > MOE_TRACE_MAX_EXPERT + 1) {
        moe_err_set(err, "trace names expert %d but the model has %d experts", t->max_expert, n_expert);
        return NULL;
    }
    const size_t L = (size_t)(t->max_layer - t->min_layer + 1);
    uint64_t *c = moe_xcalloc(L * (size_t)n_expert, sizeof *c);
    for (size_t i = 0; i < t->n; i++)
        for (int j = 0; j < t->k; j++)
            c[(size_t)(t->layer[i] - t->min_layer) * (size_t)n_expert + (size_t)t->ids[i * (size_t)t->k + (size_t)j]]++;
    return c;
}
