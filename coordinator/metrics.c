/*
 * metrics.c — the registry and the text exposition (see metrics.h).
 * Families and series are kept in arrays in declaration / creation order,
 * so an exposition is stable from one scrape to the next.
 */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct moe_metric_series {
    const struct moe_metric *f;
    char **values;          /* [family n_labels] */
    double value;           /* counter, gauge */
    uint64_t *counts;       /* histogram: [n_bounds + 1] per bucket, not cumulative */
    double sum;
};

struct moe_metric {
    moe_metric_type type;
    char *name, *help;
    int n_labels;
    char *labels[MOE_METRIC_MAX_LABELS];
    int n_bounds;
    double *bounds;
    moe_metric_series **series;
    int n_series, cap_series;
};

struct moe_metrics {
    moe_metric **fam;
    int n_fam, cap_fam;
};

void moe_metrics_init(moe_metrics **out) { *out = moe_xcalloc(1, sizeof **out); }

static void series_free(const moe_metric *f, moe_metric_series *s)
{
    for (int i = 0; i < f->n_labels; i++) free(s->values[i]);
    free(s->values);
    free(s->counts);
    free(s);
}

void moe_metric_clear(moe_metric *f)
{
    for (int i = 0; i < f->n_series; i++) series_free(f, f->series[i]);
    f->n_series = 0;
}

void moe_metrics_free(moe_metrics *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_fam; i++) {
        moe_metric *f = m->fam[i];
        moe_metric_clear(f);
        free(f->series);
        for (int k = 0; k < f->n_labels; k++) free(f->labels[k]);
        free(f->bounds);
        free(f->name);
        free(f->help);
        free(f);
    }
    free(m->fam);
    free(m);
}

/* ---- declaring ------------------------------------------------------------------------ */

static bool name_ok(const char *s, bool colon)
{
    if (!s || !*s) return false;
    for (size_t i = 0; s[i]; i++) {
        const char c = s[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

moe_metric *moe_metrics_add(moe_metrics *m, moe_metric_type type, const char *name, const char *help,
                            const char *const *label_names, int n_labels, const double *bounds, int n_bounds,
                            moe_err *err)
{
    if (!name_ok(name, true)) {
        moe_err_set(err, "metric name '%s' is not [a-zA-Z_:][a-zA-Z0-9_:]*", name ? name : "");
        return NULL;
    }
    for (int i = 0; i < m->n_fam; i++)
        if (!strcmp(m->fam[i]->name, name)) {
            moe_err_set(err, "metric %s is declared twice", name);
            return NULL;
        }
    if (n_labels < 0 || n_labels > MOE_METRIC_MAX_LABELS) {
        moe_err_set(err, "metric %s: %d labels (at most %d)", name, n_labels, MOE_METRIC_MAX_LABELS);
        return NULL;
    }
    for (int i = 0; i < n_labels; i++) {
        const char *l = label_names[i];
        if (!name_ok(l, false) || !strncmp(l, "__", 2) || !strcmp(l, "le")) {
            moe_err_set(err, "metric %s: label name '%s' is not allowed", name, l ? l : "");
            return NULL;
        }
        for (int k = 0; k < i; k++)
            if (!strcmp(label_names[k], l)) {
                moe_err_set(err, "metric %s: label %s twice", name, l);
                return NULL;
            }
    }
    if (type == MOE_METRIC_HISTOGRAM) {
        if (n_bounds < 1 || n_bounds > MOE_METRIC_MAX_BUCKETS) {
            moe_err_set(err, "metric %s: %d bucket bounds (1..%d)", name, n_bounds, MOE_METRIC_MAX_BUCKETS);
            return NULL;
        }
        for (int i = 0; i < n_bounds; i++)
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
                moe_err_set(err, "metric %s: bucket bounds must be finite and strictly ascending", name);
                return NULL;
            }
    } else if (n_bounds != 0) {
        moe_err_set(err, "metric %s: only a histogram has buckets", name);
        return NULL;
    }
    moe_metric *f = moe_xcalloc(1, sizeof *f);
    f->type = type;
    f->name = moe_xstrdup(name);
    f->help = moe_xstrdup(help ? help : "");
    f->n_labels = n_labels;
    for (int i = 0; i < n_labels; i++) f->labels[i] = moe_xstrdup(label_names[i]);
    if (n_bounds) {
        f->n_bounds = n_bounds;
        f->bounds = moe_xmalloc((size_t)n_bounds * sizeof *f->bounds);
        memcpy(f->bounds, bounds, (size_t)n_bounds * sizeof *f->bounds);
    }
    if (m->n_fam == m->cap_fam) {
        m->cap_fam = m->cap_fam ? 2 * m->cap_fam : 32;
        m->fam = moe_xrealloc(m->fam, (size_t)m->cap_fam * sizeof *m->fam);
    }
    m->fam[m->n_fam++] = f;
    return f;
}

moe_metric_series *moe_metric_series_get(moe_metric *f, const char *const *values)
{
    for (int i = 0; i < f->n_series; i++) {
        moe_metric_series *s = f->series[i];
        int k = 0;
        while (k < f->n_labels && !strcmp(s->values[k], values[k] ? values[k] : "")) k++;
        if (k == f->n_labels) return s;
    }
    if (f->n_series >= MOE_METRIC_MAX_SERIES) return NULL;
    moe_metric_series *s = moe_xcalloc(1, sizeof *s);
    s->f = f;
    s->values = moe_xcalloc(f->n_labels ? (size_t)f->n_labels : 1, sizeof *s->values);
    for (int k = 0; k < f->n_labels; k++) s->values[k] = moe_xstrdup(values[k] ? values[k] : "");
    if (f->type == MOE_METRIC_HISTOGRAM) s->counts = moe_xcalloc((size_t)f->n_bounds + 1, sizeof *s->counts);
    if (f->n_series == f->cap_series) {
        f->cap_series = f->cap_series ? 2 * f->cap_series : 8;
        f->series = moe_xrealloc(f->series, (size_t)f->cap_series * sizeof *f->series);
    }
    f->series[f->n_series++] = s;
    return s;
}

moe_metric_series *moe_metric_series_get1(moe_metric *f, const char *value)
{
    MOE_ASSERT(f->n_labels == 1);
    return moe_metric_series_get(f, &value);
}

/* ---- values ---------------------------------------------------------------------------- */

void moe_metric_add(moe_metric_series *s, double v)
{
    if (!s || !(v >= 0)) return;
    s->value += v;
}

void moe_metric_set(moe_metric_series *s, double v)
{
    if (s) s->value = v;
}

double moe_metric_value(const moe_metric_series *s) { return s->value; }

void moe_metric_observe(moe_metric_series *s, double v)
{
    if (!s || !s->counts || isnan(v)) return;
    const moe_metric *f = s->f;
    int b = 0;
    while (b < f->n_bounds && v > f->bounds[b]) b++;
    s->counts[b]++;
    s->sum += v;
}

int moe_metric_load(moe_metric_series *s, const uint64_t *counts, int n, double sum)
{
    if (!s || !s->counts) return MOE_ERR;
    const moe_metric *f = s->f;
    if (n != f->n_bounds + 1) return MOE_ERR;
    memcpy(s->counts, counts, (size_t)n * sizeof *counts);
    s->sum = sum;
    return MOE_OK;
}

uint64_t moe_metric_count(const moe_metric_series *s)
{
    if (!s->counts) return 0;
    const moe_metric *f = s->f;
    uint64_t n = 0;
    for (int b = 0; b <= f->n_bounds; b++) n += s->counts[b];
    return n;
}

double moe_metric_sum(const moe_metric_series *s) { return s->sum; }

/* ---- rendering ------------------------------------------------------------------------- */

/* Shortest of %.15g / %.17g that reads back as v; Prometheus' spellings of
 * the infinities and NaN. */
static void write_value(FILE *out, double v)
{
    if (isnan(v)) {
        fputs("NaN", out);
        return;
    }
    if (isinf(v)) {
        fputs(v > 0 ? "+Inf" : "-Inf", out);
        return;
    }
    char b[40];
    snprintf(b, sizeof b, "%.15g", v);
    if (strtod(b, NULL) != v) snprintf(b, sizeof b, "%.17g", v);
    fputs(b, out);
}

/* Length of the valid UTF-8 sequence at s (1..4), 0 if none starts there
 * (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). */
static int utf8_seq(const unsigned char *s)
{
    const unsigned c = s[0];
    if (c < 0x80) return 1;
    int n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        else if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (s[1] < lo || s[1] > hi) return 0; /* a NUL here stops it too */
    for (int i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return n;
}

/* Escapes backslash and newline, and the double quote when in a label
 * value; bytes that are not valid UTF-8 become U+FFFD. */
static void write_escaped(FILE *out, const char *str, bool quote)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        if (*s == '\\') fputs("\\\\", out);
        else if (*s == '\n') fputs("\\n", out);
        else if (*s == '"' && quote) fputs("\\\"", out);
        else {
            const int n = utf8_seq(s);
            if (n == 0) {
                fputs("\xEF\xBF\xBD", out);
                s++;
                continue;
            }
            fwrite(s, 1, (size_t)n, out);
            s += n;
            continue;
        }
        s++;
    }
}

void moe_metrics_write_label_value(FILE *out, const char *s) { write_escaped(out, s, true); }

/* {l1="v1",...[,le="b"]} or nothing when there is no label at all. */
static void write_labels(FILE *out, const moe_metric *f, const moe_metric_series *s, const double *le)
{
    if (f->n_labels == 0 && !le) return;
    fputc('{', out);
    for (int k = 0; k < f->n_labels; k++) {
        fprintf(out, "%s%s=\"", k ? "," : "", f->labels[k]);
        write_escaped(out, s->values[k], true);
        fputc('"', out);
    }
    if (le) {
        fprintf(out, "%sle=\"", f->n_labels ? "," : "");
        write_value(out, *le);
        fputc('"', out);
    }
    fputc('}', out);
}

int moe_metrics_write(const moe_metrics *m, FILE *out)
{
    static const char *const type_name[] = {"counter", "gauge", "histogram"};
    for (int i = 0; i < m->n_fam; i++) {
        const moe_metric *f = m->fam[i];
        fprintf(out, "# HELP %s ", f->name);
        write_escaped(out, f->help, false);
        fprintf(out, "\n# TYPE %s %s\n", f->name, type_name[f->type]);
        for (int j = 0; j < f->n_series; j++) {
            const moe_metric_series *s = f->series[j];
            if (f->type != MOE_METRIC_HISTOGRAM) {
                fputs(f->name, out);
                write_labels(out, f, s, NULL);
                fputc(' ', out);
                write_value(out, s->value);
                fputc('\n', out);
                continue;
            }
            uint64_t cum = 0;
            for (int b = 0; b <= f->n_bounds; b++) {
                cum += s->counts[b];
                const double le = b < f->n_bounds ? f->bounds[b] : INFINITY;
                fprintf(out, "%s_bucket", f->name);
                write_labels(out, f, s, &le);
                fprintf(out, " %llu\n", (unsigned long long)cum);
            }
            fprintf(out, "%s_sum", f->name);
            write_labels(out, f, s, NULL);
            fputc(' ', out);
            write_value(out, s->sum);
            fprintf(out, "\n%s_count", f->name);
            write_labels(out, f, s, NULL);
            fprintf(out, " %llu\n", (unsigned long long)cum);
        }
    }
    return ferror(out) ? MOE_ERR : MOE_OK;
}
