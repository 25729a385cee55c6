/*
 * stats.c — moe-bench's figures (stats.h).
 */
#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

static const char *const METRIC_NAME[MOE_BENCH_N_METRICS] = {"ttft", "tpot", "itl", "e2el"};
static const char *const METRIC_UPPER[MOE_BENCH_N_METRICS] = {"TTFT", "TPOT", "ITL", "E2EL"};
static const char *const METRIC_TITLE[MOE_BENCH_N_METRICS] = {
    "Time to First Token", "Time per Output Token (excl. 1st token)", "Inter-token Latency", "End-to-end Latency"};

const char *moe_bench_metric_name(int m) { return m >= 0 && m < MOE_BENCH_N_METRICS ? METRIC_NAME[m] : "?"; }

void moe_bench_rec_chunk(moe_bench_rec *r, double t, uint32_t n_tokens)
{
    if (r->n_chunks == r->cap_chunks) {
        size_t cap = r->cap_chunks ? r->cap_chunks * 2 : 64;
        r->chunk_t = moe_xrealloc(r->chunk_t, cap * sizeof *r->chunk_t);
        r->chunk_n = moe_xrealloc(r->chunk_n, cap * sizeof *r->chunk_n);
        r->cap_chunks = cap;
    }
    r->chunk_t[r->n_chunks] = t;
    r->chunk_n[r->n_chunks] = n_tokens;
    r->n_chunks++;
}

void moe_bench_rec_free(moe_bench_rec *r)
{
    free(r->error);
    free(r->chunk_t);
    free(r->chunk_n);
    memset(r, 0, sizeof *r);
}

double moe_bench_percentile(const double *v, size_t n, double p)
{
    if (n == 0) return 0;
    double rank = p / 100.0 * (double)(n - 1);
    if (rank <= 0) return v[0];
    if (rank >= (double)(n - 1)) return v[n - 1];
    size_t lo = (size_t)floor(rank);
    double frac = rank - (double)lo;
    return v[lo] + (v[lo + 1] - v[lo]) * frac;
}

double moe_bench_tpot(const moe_bench_rec *r)
{
    if (r->n_chunks == 0 || r->output_len < 2) return -1;
    double ttft = r->chunk_t[0] - r->t_sent;
    return (r->t_end - r->t_sent - ttft) / (double)(r->output_len - 1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct edge {
    double t;
    int d; /* +1 a start, -1 an end */
} edge;

static int cmp_edge(const void *a, const void *b)
{
    const edge *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->d - y->d; /* ends first */
}

/* v[0..n) in s -> d in ms (sorts v). */
static void dist_of(const moe_bench_report_cfg *c, double *v, size_t n, moe_bench_dist *d)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    if (!n) return;
    qsort(v, n, sizeof *v, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += v[i];
    double mean = sum / (double)n, ss = 0;
    for (size_t i = 0; i < n; i++) ss += (v[i] - mean) * (v[i] - mean);
    d->mean = mean * 1000;
    d->std = sqrt(ss / (double)n) * 1000;
    d->median = moe_bench_percentile(v, n, 50) * 1000;
    for (size_t k = 0; k < c->n_pct; k++) d->pct[k] = moe_bench_percentile(v, n, c->pct[k]) * 1000;
}

void moe_bench_report_compute(const moe_bench_report_cfg *c, const moe_bench_rec *recs, size_t n, double duration,
                              moe_bench_report *out)
{
    memset(out, 0, sizeof *out);
    out->duration = duration;
    size_t n_itl = 0;
    double t_last = 0;
    for (size_t i = 0; i < n; i++) {
        if (!recs[i].ok) continue;
        if (recs[i].n_chunks > 1) n_itl += recs[i].n_chunks - 1;
        if (recs[i].t_end > t_last) t_last = recs[i].t_end;
    }
    double *v[MOE_BENCH_N_METRICS];
    size_t nv[MOE_BENCH_N_METRICS] = {0};
    for (int m = 0; m < MOE_BENCH_N_METRICS; m++) v[m] = moe_xmalloc(((m == MOE_BENCH_ITL ? n_itl : n) + 1) * sizeof(double));
    size_t good = 0;
    for (size_t i = 0; i < n; i++) {
        const moe_bench_rec *r = &recs[i];
        if (!r->ok) {
            out->failed++;
            continue;
        }
        out->completed++;
        out->total_input += r->prompt_len;
        out->total_output += r->output_len;
        double ttft = r->n_chunks ? r->chunk_t[0] - r->t_sent : 0;
        double e2el = r->t_end - r->t_sent;
        double tpot = moe_bench_tpot(r);
        v[MOE_BENCH_TTFT][nv[MOE_BENCH_TTFT]++] = ttft;
        v[MOE_BENCH_E2EL][nv[MOE_BENCH_E2EL]++] = e2el;
        if (tpot >= 0) v[MOE_BENCH_TPOT][nv[MOE_BENCH_TPOT]++] = tpot;
        for (size_t k = 1; k < r->n_chunks; k++) v[MOE_BENCH_ITL][nv[MOE_BENCH_ITL]++] = r->chunk_t[k] - r->chunk_t[k - 1];
        if (c->goodput) {
            /* vLLM counts a request of one token as TPOT 0. */
            double got[MOE_BENCH_N_METRICS] = {ttft * 1000, (tpot < 0 ? 0 : tpot) * 1000, 0, e2el * 1000};
            bool ok = true;
            for (int m = 0; m < MOE_BENCH_N_METRICS; m++)
                if (c->slo_ms[m] >= 0 && got[m] > c->slo_ms[m]) ok = false;
            good += ok;
        }
    }
    for (int m = 0; m < MOE_BENCH_N_METRICS; m++) {
        dist_of(c, v[m], nv[m], &out->dist[m]);
        free(v[m]);
    }
    if (duration > 0) {
        out->request_throughput = (double)out->completed / duration;
        out->request_goodput = (double)good / duration;
        out->output_throughput = (double)out->total_output / duration;
        out->total_token_throughput = (double)(out->total_input + out->total_output) / duration;
    }
    /* Peak output throughput over 1 s buckets of the run. */
    double span = t_last > duration ? t_last : duration;
    size_t n_b = (size_t)floor(span) + 1;
    if (n_b > 1000000) n_b = 1000000; /* a run of eleven days: the tail shares the last bucket */
    double *tok = moe_xcalloc(n_b, sizeof *tok);
    for (size_t i = 0; i < n; i++) {
        const moe_bench_rec *r = &recs[i];
        if (!r->ok) continue;
        for (size_t k = 0; k < r->n_chunks; k++) {
            size_t b = r->chunk_t[k] > 0 ? (size_t)floor(r->chunk_t[k]) : 0;
            tok[b < n_b ? b : n_b - 1] += r->chunk_n[k];
        }
    }
    for (size_t b = 0; b < n_b; b++)
        if (tok[b] > out->max_output_tokens_per_s) out->max_output_tokens_per_s = tok[b];
    free(tok);
    /* Peak concurrency: the most requests in flight at one instant (an end
     * sorts before a start at the same time). */
    size_t n_ev = 2 * out->completed;
    edge *e = moe_xmalloc((n_ev + 1) * sizeof *e);
    for (size_t i = 0, k = 0; i < n; i++) {
        if (!recs[i].ok) continue;
        e[k++] = (edge){recs[i].t_sent, +1};
        e[k++] = (edge){recs[i].t_end, -1};
    }
    qsort(e, n_ev, sizeof *e, cmp_edge);
    long cur = 0, peak = 0;
    for (size_t i = 0; i < n_ev; i++) {
        cur += e[i].d;
        if (cur > peak) peak = cur;
    }
    out->max_concurrent_requests = (double)peak;
    free(e);
}

void moe_bench_pct_key(double p, char *buf, size_t cap)
{
    if (p == floor(p)) snprintf(buf, cap, "p%d", (int)p);
    else snprintf(buf, cap, "p%g", p);
}

static void line_f(FILE *f, const char *name, double v) { fprintf(f, "%-40s %-10.2f\n", name, v); }
static void line_u(FILE *f, const char *name, uint64_t v) { fprintf(f, "%-40s %-10llu\n", name, (unsigned long long)v); }

/* "{s:{c}^{n}}": s centred in n columns of c, the extra one on the right. */
static void rule(FILE *f, const char *s, char c)
{
    int len = (int)strlen(s), left = (50 - len) / 2, right = 50 - len - left;
    for (int i = 0; i < left; i++) fputc(c, f);
    fputs(s, f);
    for (int i = 0; i < right; i++) fputc(c, f);
    fputc('\n', f);
}

void moe_bench_report_print(FILE *f, const moe_bench_report_cfg *c, const moe_bench_report *r)
{
    rule(f, " Serving Benchmark Result ", '=');
    line_u(f, "Successful requests:", r->completed);
    line_u(f, "Failed requests:", r->failed);
    if (c->max_concurrency > 0) line_u(f, "Maximum request concurrency:", (uint64_t)c->max_concurrency);
    line_f(f, "Benchmark duration (s):", r->duration);
    line_u(f, "Total input tokens:", r->total_input);
    line_u(f, "Total generated tokens:", r->total_output);
    line_f(f, "Request throughput (req/s):", r->request_throughput);
    if (c->goodput) line_f(f, "Request goodput (req/s):", r->request_goodput);
    line_f(f, "Output token throughput (tok/s):", r->output_throughput);
    line_f(f, "Peak output token throughput (tok/s):", r->max_output_tokens_per_s);
    line_f(f, "Peak concurrent requests:", r->max_concurrent_requests);
    line_f(f, "Total Token throughput (tok/s):", r->total_token_throughput);
    for (int m = 0; m < MOE_BENCH_N_METRICS; m++) {
        if (!c->metric[m]) continue;
        char title[64], name[64];
        snprintf(title, sizeof title, "%s", METRIC_TITLE[m]);
        rule(f, title, '-');
        const moe_bench_dist *d = &r->dist[m];
        snprintf(name, sizeof name, "Mean %s (ms):", METRIC_UPPER[m]);
        line_f(f, name, d->mean);
        snprintf(name, sizeof name, "Median %s (ms):", METRIC_UPPER[m]);
        line_f(f, name, d->median);
        for (size_t k = 0; k < c->n_pct; k++) {
            char key[32];
            moe_bench_pct_key(c->pct[k], key, sizeof key);
            key[0] = 'P';
            snprintf(name, sizeof name, "%s %s (ms):", key, METRIC_UPPER[m]);
            line_f(f, name, d->pct[k]);
        }
    }
    rule(f, "", '=');
}

static char *trim_dup(const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    char *o = moe_xmalloc(n + 1);
    memcpy(o, s, n);
    o[n] = 0;
    return o;
}

static int metric_find(const char *s)
{
    for (int m = 0; m < MOE_BENCH_N_METRICS; m++)
        if (!strcmp(s, METRIC_NAME[m])) return m;
    return -1;
}

int moe_bench_parse_metrics(moe_bench_report_cfg *c, const char *s, char *msg, size_t cap)
{
    bool want[MOE_BENCH_N_METRICS] = {false};
    const char *p = s;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char *w = trim_dup(p, n);
        int m = metric_find(w);
        if (m < 0) {
            snprintf(msg, cap, "--percentile-metrics: '%s' is not one of ttft, tpot, itl, e2el", w);
            free(w);
            return -1;
        }
        free(w);
        want[m] = true;
        if (!e) break;
        p = e + 1;
    }
    memcpy(c->metric, want, sizeof want);
    return 0;
}

int moe_bench_parse_percentiles(moe_bench_report_cfg *c, const char *s, char *msg, size_t cap)
{
    double v[MOE_BENCH_MAX_PCT];
    size_t n = 0;
    const char *p = s;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char *w = trim_dup(p, len);
        moe_err err;
        double x;
        if (n == MOE_BENCH_MAX_PCT) {
            snprintf(msg, cap, "--metric-percentiles: at most %d values", MOE_BENCH_MAX_PCT);
            free(w);
            return -1;
        }
        if (moe_parse_f64(w, 0, 100, &x, &err) || x <= 0 || x >= 100) {
            snprintf(msg, cap, "--metric-percentiles: '%s' is not a percentile in (0, 100)", w);
            free(w);
            return -1;
        }
        free(w);
        v[n++] = x;
        if (!e) break;
        p = e + 1;
    }
    memcpy(c->pct, v, n * sizeof *v);
    c->n_pct = n;
    return 0;
}

int moe_bench_parse_goodput(moe_bench_report_cfg *c, const char *s, char *msg, size_t cap)
{
    double slo[MOE_BENCH_N_METRICS] = {-1, -1, -1, -1};
    bool any = false;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        size_t len = strcspn(p, " ,");
        char *w = trim_dup(p, len);
        char *colon = strchr(w, ':');
        int m = -1;
        double x = 0;
        moe_err err;
        if (colon) {
            *colon = 0;
            m = metric_find(w);
        }
        if (m < 0 || m == MOE_BENCH_ITL || moe_parse_f64(colon + 1, 0, 1e12, &x, &err)) {
            if (colon) *colon = ':';
            snprintf(msg, cap, "--goodput: '%s' is not ttft:MS, tpot:MS or e2el:MS (a non-negative number of ms)", w);
            free(w);
            return -1;
        }
        free(w);
        slo[m] = x;
        any = true;
        p += len;
    }
    if (!any) {
        snprintf(msg, cap, "--goodput: no SLO given (ttft:MS tpot:MS e2el:MS)");
        return -1;
    }
    memcpy(c->slo_ms, slo, sizeof slo);
    c->goodput = true;
    return 0;
}

json_t *moe_bench_report_json(const moe_bench_report_cfg *c, const moe_bench_report *r, const moe_bench_rec *recs,
                              size_t n)
{
    json_t *o = json_object();
    json_object_set_new(o, "duration", json_real(r->duration));
    json_object_set_new(o, "completed", json_integer((json_int_t)r->completed));
    json_object_set_new(o, "failed", json_integer((json_int_t)r->failed));
    json_object_set_new(o, "total_input_tokens", json_integer((json_int_t)r->total_input));
    json_object_set_new(o, "total_output_tokens", json_integer((json_int_t)r->total_output));
    json_object_set_new(o, "request_throughput", json_real(r->request_throughput));
    json_object_set_new(o, "request_goodput", c->goodput ? json_real(r->request_goodput) : json_null());
    json_object_set_new(o, "output_throughput", json_real(r->output_throughput));
    json_object_set_new(o, "total_token_throughput", json_real(r->total_token_throughput));
    json_object_set_new(o, "max_output_tokens_per_s", json_real(r->max_output_tokens_per_s));
    json_object_set_new(o, "max_concurrent_requests", json_real(r->max_concurrent_requests));
    json_t *in = json_array(), *outl = json_array(), *ttfts = json_array(), *itls = json_array(), *errs = json_array();
    for (size_t i = 0; i < n; i++) {
        const moe_bench_rec *q = &recs[i];
        json_array_append_new(in, json_integer(q->prompt_len));
        json_array_append_new(outl, json_integer(q->ok ? q->output_len : 0));
        json_array_append_new(ttfts, json_real(q->ok && q->n_chunks ? q->chunk_t[0] - q->t_sent : 0));
        json_t *it = json_array();
        for (size_t k = 1; q->ok && k < q->n_chunks; k++) json_array_append_new(it, json_real(q->chunk_t[k] - q->chunk_t[k - 1]));
        json_array_append_new(itls, it);
        json_array_append_new(errs, json_string(q->error ? q->error : ""));
    }
    json_object_set_new(o, "input_lens", in);
    json_object_set_new(o, "output_lens", outl);
    json_object_set_new(o, "ttfts", ttfts);
    json_object_set_new(o, "itls", itls);
    json_object_set_new(o, "errors", errs);
    for (int m = 0; m < MOE_BENCH_N_METRICS; m++) {
        if (!c->metric[m]) continue;
        const moe_bench_dist *d = &r->dist[m];
        char key[64], pk[32];
        snprintf(key, sizeof key, "mean_%s_ms", METRIC_NAME[m]);
        json_object_set_new(o, key, json_real(d->mean));
        snprintf(key, sizeof key, "median_%s_ms", METRIC_NAME[m]);
        json_object_set_new(o, key, json_real(d->median));
        snprintf(key, sizeof key, "std_%s_ms", METRIC_NAME[m]);
        json_object_set_new(o, key, json_real(d->std));
        for (size_t k = 0; k < c->n_pct; k++) {
            moe_bench_pct_key(c->pct[k], pk, sizeof pk);
            snprintf(key, sizeof key, "%s_%s_ms", pk, METRIC_NAME[m]);
            json_object_set_new(o, key, json_real(d->pct[k]));
        }
    }
    return o;
}

void moe_bench_csv(FILE *f, const moe_bench_rec *recs, size_t n)
{
    fputs("index,ok,prompt_tokens,output_tokens,sent_s,ttft_ms,e2el_ms,tpot_ms,chunks,mean_itl_ms,error\n", f);
    for (size_t i = 0; i < n; i++) {
        const moe_bench_rec *r = &recs[i];
        double ttft = r->n_chunks ? (r->chunk_t[0] - r->t_sent) * 1000 : 0;
        double tpot = moe_bench_tpot(r);
        double itl = r->n_chunks > 1 ? (r->chunk_t[r->n_chunks - 1] - r->chunk_t[0]) * 1000 / (double)(r->n_chunks - 1) : 0;
        fprintf(f, "%zu,%d,%u,%u,%.6f,%.3f,%.3f,%.3f,%zu,%.3f,", i, r->ok ? 1 : 0, r->prompt_len, r->output_len,
                r->t_sent, ttft, (r->t_end - r->t_sent) * 1000, tpot < 0 ? 0 : tpot * 1000, r->n_chunks, itl);
        /* The error as one CSV field: quoted, quotes doubled, no newlines. */
        fputc('"', f);
        for (const char *p = r->error ? r->error : ""; *p; p++) {
            if (*p == '"') fputs("\"\"", f);
            else if (*p == '\n' || *p == '\r') fputc(' ', f);
            else fputc(*p, f);
        }
        fputs("\"\n", f);
    }
}
