/*
 * run.h — one benchmark run: requests leave at their arrival times (gaps
 * drawn from Gamma(burstiness, 1/(rate·burstiness)), so the mean rate is
 * `rate` and burstiness 1 is a Poisson process; rate inf sends all at
 * once, as vLLM does), at most max_concurrency in flight (a request whose
 * time has come waits for a slot), every outcome into its record.
 */
#ifndef MOE_TOOLS_BENCH_RUN_H
#define MOE_TOOLS_BENCH_RUN_H

#include <stdbool.h>
#include <stddef.h>

#include "dataset.h"
#include "stats.h"
#include "target.h"

typedef struct moe_bench_run_cfg {
    double request_rate;   /* requests/s; INFINITY: all at once */
    double burstiness;     /* gamma shape, > 0 */
    int max_concurrency;   /* 0: no limit */
    uint64_t seed;         /* of the arrival gaps */
    const char *label;     /* for the progress line */
    bool progress;         /* a progress line on stderr */
} moe_bench_run_cfg;

/* The arrival times (s from the start) of n requests. */
void moe_bench_arrivals(const moe_bench_run_cfg *c, size_t n, double *at);

/* Runs p[0..n) against t; recs[0..n) are zeroed first.  *duration is from
 * the first send to the last end.  MOE_ERR when the target fails (the
 * requests still in flight are then failed too). */
int moe_bench_run(moe_bench_target *t, const moe_bench_run_cfg *c, const moe_bench_prompt *p, size_t n,
                  moe_bench_rec *recs, double *duration, moe_err *err);

#endif
