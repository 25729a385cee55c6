/*
 * metrics.h — a small registry of metrics (counters, gauges, histograms
 * with fixed bucket bounds, labelled series) and its rendering in the
 * Prometheus text exposition format, version 0.0.4.
 *
 * No I/O but the FILE the renderer writes to, no global state, no
 * threads: the coordinator's loop owns one registry and is its only user.
 *
 *   registry ── family (name, help, type, label names, bucket bounds)
 *                 └─ series (one per distinct tuple of label values)
 *
 * A family is declared once; its series are found (or made) by their label
 * values and kept: a pointer to a series stays valid until the registry is
 * freed, so a hot path looks its series up once and then only adds.
 *
 * What is rendered, per family (in the order they were declared):
 *
 *   # HELP name help text          (backslash and newline escaped)
 *   # TYPE name counter|gauge|histogram
 *   name{l1="v1",l2="v2"} value                         counter, gauge
 *   name_bucket{l1="v1",le="0.005"} n   ... le="+Inf"    histogram, cumulative
 *   name_sum{l1="v1"} s
 *   name_count{l1="v1"} n
 *
 * Label values are escaped (\\, \", \n) and made valid UTF-8 (a byte that
 * is not part of a valid sequence becomes U+FFFD), so any bytes — a model
 * name from a file — give a parseable exposition.  Values are printed so
 * they read back exactly (shortest of %.15g/%.17g that round-trips), with
 * +Inf, -Inf and NaN spelled as Prometheus spells them.
 *
 * Counters follow Prometheus' convention: the family name ends in _total
 * and is printed as declared.
 */
#ifndef MOE_COORD_METRICS_H
#define MOE_COORD_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base.h"

typedef struct moe_metrics moe_metrics;
typedef struct moe_metric moe_metric;         /* a family */
typedef struct moe_metric_series moe_metric_series;

typedef enum { MOE_METRIC_COUNTER = 0, MOE_METRIC_GAUGE, MOE_METRIC_HISTOGRAM } moe_metric_type;

#define MOE_METRIC_MAX_LABELS 4     /* label names of a family (le not counted) */
#define MOE_METRIC_MAX_BUCKETS 64   /* bucket bounds of a histogram (+Inf not counted) */
#define MOE_METRIC_MAX_SERIES 65536 /* series of one family: a bound on what label values can cost */

void moe_metrics_init(moe_metrics **out);
void moe_metrics_free(moe_metrics *m); /* NULL is fine */

/*
 * Declares a family.  name: [a-zA-Z_:][a-zA-Z0-9_:]*, unique in the
 * registry; label names: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__",
 * not "le", distinct; bounds (histograms only): finite, strictly
 * ascending, 1..MOE_METRIC_MAX_BUCKETS of them (+Inf is implied).
 * Strings are copied.  NULL with the reason in err.
 */
moe_metric *moe_metrics_add(moe_metrics *m, moe_metric_type type, const char *name, const char *help,
                            const char *const *label_names, int n_labels, const double *bounds, int n_bounds,
                            moe_err *err);

/* The series of these label values (n_labels of them, any bytes, NUL
 * terminated; NULL reads as ""), made on first use.  NULL only when the
 * family holds MOE_METRIC_MAX_SERIES series already. */
moe_metric_series *moe_metric_series_get(moe_metric *f, const char *const *values);
/* The same for a family of one label. */
moe_metric_series *moe_metric_series_get1(moe_metric *f, const char *value);

/* Counters and gauges.  add: a counter only grows (a negative or NaN v is
 * ignored); set: a gauge's value, or a counter mirrored from a peer that
 * keeps its own total (it may go down when the peer restarts, which
 * Prometheus reads as a reset). */
void moe_metric_add(moe_metric_series *s, double v);
void moe_metric_set(moe_metric_series *s, double v);
double moe_metric_value(const moe_metric_series *s);

/* Histograms.  observe: one observation (NaN is ignored).  load: the whole
 * state from a peer that keeps its own histogram with the family's bounds:
 * counts[0..n_bounds] per bucket, not cumulative, the last one above the
 * highest bound; MOE_ERR if n differs from n_bounds + 1. */
void moe_metric_observe(moe_metric_series *s, double v);
int moe_metric_load(moe_metric_series *s, const uint64_t *counts, int n, double sum);
uint64_t moe_metric_count(const moe_metric_series *s);
double moe_metric_sum(const moe_metric_series *s);

/* Drops every series of a family (e.g. a per-layer gauge recomputed at
 * each rendering); pointers to them become invalid. */
void moe_metric_clear(moe_metric *f);

/* The exposition of every family; MOE_ERR if writing failed. */
int moe_metrics_write(const moe_metrics *m, FILE *out);

/* Writes s escaped as a label value (without the quotes). */
void moe_metrics_write_label_value(FILE *out, const char *s);

/* The content type of the exposition, for an HTTP front end. */
#define MOE_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
