/*
 * scrape.h — moe-bench's cluster figures: /metrics (docs/metrics.md) read
 * before and after a run, and what changed in between: the server's own
 * request and token counts, each rank's mean step time, exchange bytes per
 * token, and expert-load balancedness (per MoE layer, mean ÷ max over the
 * ranks of their (token, expert) pairs during the run; 1 is even).
 *
 * The parser reads the Prometheus text format's sample lines
 * (`name{labels} value`); comments and everything it does not need are
 * skipped.  What it reads is untrusted: a malformed line is skipped.
 */
#ifndef MOE_TOOLS_BENCH_SCRAPE_H
#define MOE_TOOLS_BENCH_SCRAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "base.h"

typedef struct moe_bench_sample {
    char *name;
    char *labels;   /* what is between the braces, "" if none */
    double v;
} moe_bench_sample;

typedef struct moe_bench_prom {
    moe_bench_sample *s;
    size_t n, cap;
} moe_bench_prom;

void moe_bench_prom_parse(const char *text, size_t len, moe_bench_prom *out);
void moe_bench_prom_free(moe_bench_prom *p);
/* GET url (…/metrics) and parse it. */
int moe_bench_prom_fetch(const char *url, moe_bench_prom *out, moe_err *err);

/* The value of label key in labels (a copy in buf), false if absent. */
bool moe_bench_prom_label(const char *labels, const char *key, char *buf, size_t cap);
/* Sum of the series called name (whose label key is value, if key). */
double moe_bench_prom_sum(const moe_bench_prom *p, const char *name, const char *key, const char *value);

/* The cluster block after the report block, and the same under "moe_cluster"
 * in o (when o is not NULL).  false when after has no moe metrics (not a
 * moe server): nothing is printed. */
bool moe_bench_cluster(FILE *f, const moe_bench_prom *before, const moe_bench_prom *after, json_t *o);

#endif
