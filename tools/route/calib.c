/*
 * calib.c — moe-route calibrate: the cost constants of router/simulate,
 * measured on this machine with the model's own expert weights and the
 * engine's expert call (moe_engine_moe_experts, one thread):
 *   expert_row_us   the time of one more row through one routed expert
 *                   (SwiGLU: gate, up, down), the slope of t(n) between
 *                   n = 1 and n = 64 rows;
 *   expert_call_us  the time of a call with one row less that slope (the
 *                   fixed cost of an expert with work);
 *   memcpy_gbps     a copy of 64 MiB (intra-node traffic goes through
 *                   memory), GB/s.
 * Each figure is the median of 5 timed runs of at least 50 ms.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "io.h"
#include "model.h"
#include "route.h"

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median over 5 runs of the seconds one call of fn takes. */
static double time_median(void (*fn)(void *), void *ctx)
{
    double t[5];
    for (int r = 0; r < 5; r++) {
        long reps = 0;
        const double t0 = moe_now();
        double t1;
        do {
            fn(ctx);
            reps++;
            t1 = moe_now();
        } while (t1 - t0 < 0.05);
        t[r] = (t1 - t0) / (double)reps;
    }
    qsort(t, 5, sizeof t[0], cmp_double);
    return t[2];
}

typedef struct expert_ctx {
    moe_engine *e;
    int il, expert, n;
    float *x, *y;
} expert_ctx;

static void run_expert(void *p)
{
    expert_ctx *c = p;
    const int32_t off[2] = {0, c->n};
    moe_engine_moe_experts(c->e, c->il, 1, &c->expert, off, c->x, c->y);
}

typedef struct copy_ctx {
    char *a, *b;
    size_t n;
} copy_ctx;

static void run_copy(void *p)
{
    copy_ctx *c = p;
    memcpy(c->b, c->a, c->n);
    __asm__ __volatile__("" ::"r"(c->b) : "memory");
}

int route_calibrate(const char *model, route_calib *out, moe_err *err)
{
    moe_model *m;
    if (moe_model_open(&m, model, err)) return MOE_ERR;
    if (m->hp.n_layer <= m->hp.n_dense_lead) {
        moe_model_free(m);
        return moe_err_set(err, "%s: no MoE layers", model);
    }
    moe_engine_opts o;
    moe_engine_opts_default(&o);
    o.max_seqs = 1;
    o.max_ctx = 16;
    o.max_batch_tokens = 64;
    moe_engine *e;
    if (moe_engine_init(&e, m, &o, err)) {
        moe_model_free(m);
        return MOE_ERR;
    }
    const int D = m->hp.dim, N = 64;
    expert_ctx c = {e, m->hp.n_dense_lead, 0, 1, moe_xmalloc((size_t)N * (size_t)D * sizeof(float)),
                    moe_xmalloc((size_t)N * (size_t)D * sizeof(float))};
    for (size_t i = 0; i < (size_t)N * (size_t)D; i++) c.x[i] = (float)sin((double)i * 0.37) * 0.5f;
    const double t1 = time_median(run_expert, &c);
    c.n = N;
    const double tn = time_median(run_expert, &c);
    const double row = (tn - t1) / (N - 1);
    out->expert_row_us = (row > 0 ? row : tn / N) * 1e6;
    out->expert_call_us = (t1 - row > 0 ? t1 - row : 0) * 1e6;
    free(c.x);
    free(c.y);
    moe_engine_free(e);
    moe_model_free(m);

    copy_ctx cc = {moe_xmalloc((size_t)64 << 20), moe_xmalloc((size_t)64 << 20), (size_t)64 << 20};
    memset(cc.a, 1, cc.n);
    memset(cc.b, 2, cc.n);
    const double tc = time_median(run_copy, &cc);
    out->memcpy_gbps = (double)cc.n / tc / 1e9;
    free(cc.a);
    free(cc.b);
    return MOE_OK;
}

int route_calib_write(const char *path, const route_calib *c, moe_err *err)
{
    FILE *f = fopen(path, "w");
    if (!f) return moe_err_set(err, "%s: %s", path, strerror(errno));
    fprintf(f, "# moe-route calibrate\nexpert_call_us %.6g\nexpert_row_us %.6g\nmemcpy_gbps %.6g\n", c->expert_call_us,
            c->expert_row_us, c->memcpy_gbps);
    return fclose(f) ? moe_err_set(err, "%s: write failed", path) : MOE_OK;
}

int route_calib_load(const char *path, route_calib *c, moe_err *err)
{
    char *buf;
    size_t n;
    if (moe_file_read(path, 1 << 16, &buf, &n, err)) return MOE_ERR;
    double v[3] = {-1, -1, -1};
    static const char *keys[3] = {"expert_call_us", "expert_row_us", "memcpy_gbps"};
    int rc = MOE_OK, line = 0;
    for (char *s = buf, *end = buf + n; s < end && !rc;) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        if (!nl) nl = end;
        *nl = 0;
        line++;
        char key[32], val[64];
        if (*s && *s != '#') {
            if (sscanf(s, "%31s %63s", key, val) != 2) rc = moe_err_set(err, "%s line %d: expected 'key value'", path, line);
            int k = 0;
            while (!rc && k < 3 && strcmp(key, keys[k])) k++;
            if (!rc && k == 3) rc = moe_err_set(err, "%s line %d: unknown key '%s'", path, line, key);
            if (!rc && moe_parse_f64(val, 0, 1e9, &v[k], err)) rc = moe_err_prefix(err, "%s line %d", path, line);
        }
        s = nl + 1;
    }
    free(buf);
    for (int k = 0; k < 3 && !rc; k++)
        if (v[k] < 0) rc = moe_err_set(err, "%s: no %s", path, keys[k]);
    if (!rc && !(v[2] > 0)) rc = moe_err_set(err, "%s: memcpy_gbps must be > 0", path);
    if (rc) return MOE_ERR;
    c->expert_call_us = v[0];
    c->expert_row_us = v[1];
    c->memcpy_gbps = v[2];
    return MOE_OK;
}
