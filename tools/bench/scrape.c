/*
 * scrape.c — /metrics before and after a run (scrape.h).
 */
#include "scrape.h"

#include <curl/curl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_METRICS_BYTES ((size_t)64 << 20)

void moe_bench_prom_free(moe_bench_prom *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->s[i].name);
        free(p->s[i].labels);
    }
    free(p->s);
    memset(p, 0, sizeof *p);
}

static char *dup_n(const char *s, size_t n)
{
    char *o = moe_xmalloc(n + 1);
    memcpy(o, s, n);
    o[n] = 0;
    return o;
}

static void parse_line(const char *l, size_t n, moe_bench_prom *out)
{
    if (!n || l[0] == '#') return;
    size_t i = 0;
    while (i < n && l[i] != '{' && l[i] != ' ') i++;
    if (!i || i == n) return;
    size_t name_end = i, lab0 = i, lab1 = i;
    if (l[i] == '{') {
        /* to the closing brace, past quoted values (which may hold braces) */
        bool q = false;
        lab0 = ++i;
        for (; i < n; i++) {
            if (q && l[i] == '\\') i++;
            else if (l[i] == '"') q = !q;
            else if (!q && l[i] == '}') break;
        }
        if (i >= n) return;
        lab1 = i++;
    }
    while (i < n && l[i] == ' ') i++;
    char num[64];
    size_t k = 0;
    while (i < n && l[i] != ' ' && k + 1 < sizeof num) num[k++] = l[i++];
    num[k] = 0;
    char *end;
    double v = strtod(num, &end);
    if (!k || *end) return;
    if (out->n == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 256;
        out->s = moe_xrealloc(out->s, out->cap * sizeof *out->s);
    }
    out->s[out->n].name = dup_n(l, name_end);
    out->s[out->n].labels = dup_n(l + lab0, lab1 - lab0);
    out->s[out->n].v = v;
    out->n++;
}

void moe_bench_prom_parse(const char *text, size_t len, moe_bench_prom *out)
{
    memset(out, 0, sizeof *out);
    size_t a = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || text[i] == '\n') {
            size_t e = i;
            if (e > a && text[e - 1] == '\r') e--;
            parse_line(text + a, e - a, out);
            a = i + 1;
        }
    }
}

typedef struct buf {
    char *p;
    size_t n, cap;
    bool over;
} buf;

static size_t buf_write(char *p, size_t size, size_t nmemb, void *ud)
{
    buf *b = ud;
    size_t n = size * nmemb;
    if (b->n + n > MAX_METRICS_BYTES) {
        b->over = true;
        return 0;
    }
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = moe_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    return n;
}

int moe_bench_prom_fetch(const char *url, moe_bench_prom *out, moe_err *err)
{
    memset(out, 0, sizeof *out);
    CURL *e = curl_easy_init();
    if (!e) return moe_err_set(err, "curl_easy_init failed");
    buf b = {0};
    char eb[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, eb);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    int r = MOE_OK;
    if (b.over) r = moe_err_set(err, "%s: more than %zu bytes", url, MAX_METRICS_BYTES);
    else if (rc != CURLE_OK) r = moe_err_set(err, "%s: %s", url, eb[0] ? eb : curl_easy_strerror(rc));
    else if (status != 200) r = moe_err_set(err, "%s: HTTP %ld", url, status);
    else moe_bench_prom_parse(b.p ? b.p : "", b.n, out);
    free(b.p);
    return r;
}

bool moe_bench_prom_label(const char *labels, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    const char *p = labels;
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        const char *eq = strchr(p, '=');
        if (!eq || eq[1] != '"') return false;
        bool match = (size_t)(eq - p) == kl && !strncmp(p, key, kl);
        size_t k = 0;
        const char *q = eq + 2;
        for (; *q && *q != '"'; q++) {
            char c = *q;
            if (c == '\\' && q[1]) {
                q++;
                c = *q == 'n' ? '\n' : *q;
            }
            if (match && k + 1 < cap) out[k++] = c;
        }
        if (match) {
            out[k] = 0;
            return true;
        }
        if (!*q) return false;
        p = q + 1;
    }
    return false;
}

double moe_bench_prom_sum(const moe_bench_prom *p, const char *name, const char *key, const char *value)
{
    double s = 0;
    char v[256];
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->s[i].name, name)) continue;
        if (key && (!moe_bench_prom_label(p->s[i].labels, key, v, sizeof v) || strcmp(v, value))) continue;
        s += p->s[i].v;
    }
    return s;
}

/* The distinct values of label key among the series called name. */
static size_t label_values(const moe_bench_prom *p, const char *name, const char *key, char (*vals)[64], size_t cap)
{
    size_t n = 0;
    char v[64];
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->s[i].name, name) || !moe_bench_prom_label(p->s[i].labels, key, v, sizeof v)) continue;
        size_t k = 0;
        while (k < n && strcmp(vals[k], v)) k++;
        if (k == n && n < cap) memcpy(vals[n++], v, sizeof v);
    }
    return n;
}

/* Δ of one series selected by two labels (the second may be NULL). */
static double delta2(const moe_bench_prom *a, const moe_bench_prom *b, const char *name, const char *k1, const char *v1,
                     const char *k2, const char *v2)
{
    double s[2] = {0, 0};
    const moe_bench_prom *pp[2] = {a, b};
    char v[64];
    for (int j = 0; j < 2; j++)
        for (size_t i = 0; i < pp[j]->n; i++) {
            const moe_bench_sample *x = &pp[j]->s[i];
            if (strcmp(x->name, name)) continue;
            if (k1 && (!moe_bench_prom_label(x->labels, k1, v, sizeof v) || strcmp(v, v1))) continue;
            if (k2 && (!moe_bench_prom_label(x->labels, k2, v, sizeof v) || strcmp(v, v2))) continue;
            s[j] += x->v;
        }
    return s[1] - s[0];
}

#define MAX_RANKS 1024
#define MAX_LAYERS 1024

static void line_f(FILE *f, const char *name, double v) { fprintf(f, "%-40s %-10.2f\n", name, v); }
static void line_n(FILE *f, const char *name, double v) { fprintf(f, "%-40s %-10.0f\n", name, v); }

bool moe_bench_cluster(FILE *f, const moe_bench_prom *a, const moe_bench_prom *b, json_t *o)
{
    if (!moe_bench_prom_sum(b, "moe:rank_live", NULL, NULL) &&
        !moe_bench_prom_sum(b, "moe:generation_tokens_total", NULL, NULL))
        return false;
    static char ranks[MAX_RANKS][64], layers[MAX_LAYERS][64];
    size_t nr = label_values(b, "moe:rank_live", "rank", ranks, MAX_RANKS);
    size_t nl = label_values(b, "moe:rank_expert_tokens_total", "layer", layers, MAX_LAYERS);
    double reqs = delta2(a, b, "moe:request_success_total", NULL, NULL, NULL, NULL);
    double gen = delta2(a, b, "moe:generation_tokens_total", NULL, NULL, NULL, NULL);
    double prompt = delta2(a, b, "moe:prompt_tokens_total", NULL, NULL, NULL, NULL);
    double sent = delta2(a, b, "moe:rank_exchange_bytes_sent_total", NULL, NULL, NULL, NULL);
    json_t *j = json_object(), *jr = json_array();
    fprintf(f, "%s\n", "-----------------Cluster (moe)--------------------");
    line_n(f, "Server requests ended:", reqs);
    line_n(f, "Server prompt tokens:", prompt);
    line_n(f, "Server generated tokens:", gen);
    for (size_t r = 0; r < nr; r++) {
        double ds = delta2(a, b, "moe:rank_step_seconds_sum", "rank", ranks[r], NULL, NULL);
        double dc = delta2(a, b, "moe:rank_step_seconds_count", "rank", ranks[r], NULL, NULL);
        char name[96];
        snprintf(name, sizeof name, "Rank %s mean step time (ms):", ranks[r]);
        line_f(f, name, dc > 0 ? ds / dc * 1000 : 0);
        json_t *x = json_object();
        json_object_set_new(x, "rank", json_string(ranks[r]));
        json_object_set_new(x, "steps", json_real(dc));
        json_object_set_new(x, "mean_step_ms", json_real(dc > 0 ? ds / dc * 1000 : 0));
        json_array_append_new(jr, x);
    }
    double per_tok = gen + prompt > 0 ? sent / (gen + prompt) : 0;
    line_f(f, "Exchange bytes per token:", per_tok);
    double bal_sum = 0, bal_min = 1;
    size_t bal_n = 0;
    for (size_t l = 0; l < nl; l++) {
        double sum = 0, max = 0;
        for (size_t r = 0; r < nr; r++) {
            double d = delta2(a, b, "moe:rank_expert_tokens_total", "rank", ranks[r], "layer", layers[l]);
            sum += d;
            if (d > max) max = d;
        }
        if (max <= 0 || !nr) continue;
        double bal = sum / (double)nr / max;
        bal_sum += bal;
        if (bal < bal_min) bal_min = bal;
        bal_n++;
    }
    if (bal_n) {
        line_f(f, "Expert-load balancedness (mean):", bal_sum / (double)bal_n);
        line_f(f, "Expert-load balancedness (worst layer):", bal_min);
    }
    fprintf(f, "%s\n", "==================================================");
    json_object_set_new(j, "requests", json_real(reqs));
    json_object_set_new(j, "prompt_tokens", json_real(prompt));
    json_object_set_new(j, "generation_tokens", json_real(gen));
    json_object_set_new(j, "ranks", jr);
    json_object_set_new(j, "exchange_bytes_sent", json_real(sent));
    json_object_set_new(j, "exchange_bytes_per_token", json_real(per_tok));
    json_object_set_new(j, "expert_load_balancedness_mean", bal_n ? json_real(bal_sum / (double)bal_n) : json_null());
    json_object_set_new(j, "expert_load_balancedness_min", bal_n ? json_real(bal_min) : json_null());
    if (o) json_object_set_new(o, "moe_cluster", j);
    else json_decref(j);
    return true;
}
