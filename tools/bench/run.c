/*
 * run.c — one benchmark run (run.h).
 */
#include "run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void moe_bench_arrivals(const moe_bench_run_cfg *c, size_t n, double *at)
{
    moe_bench_rng rng = {c->seed};
    double t = 0;
    for (size_t i = 0; i < n; i++) {
        at[i] = t;
        if (!isinf(c->request_rate) && c->request_rate > 0)
            t += moe_bench_rng_gamma(&rng, c->burstiness, 1.0 / (c->request_rate * c->burstiness));
    }
}

static void progress(const moe_bench_run_cfg *c, size_t done, size_t n, size_t inflight, uint64_t tokens, double el,
                     bool tty, bool last)
{
    if (tty) {
        fprintf(stderr, "\r%s: %zu/%zu done, %zu running, %llu tokens, %.1f s%s", c->label ? c->label : "run", done, n,
                inflight, (unsigned long long)tokens, el, last ? "\n" : "   ");
    } else {
        fprintf(stderr, "%s: %zu/%zu done, %zu running, %llu tokens, %.1f s\n", c->label ? c->label : "run", done, n,
                inflight, (unsigned long long)tokens, el);
    }
    fflush(stderr);
}

int moe_bench_run(moe_bench_target *t, const moe_bench_run_cfg *c, const moe_bench_prompt *p, size_t n,
                  moe_bench_rec *recs, double *duration, moe_err *err)
{
    memset(recs, 0, n * sizeof *recs);
    double *at = moe_xmalloc((n ? n : 1) * sizeof *at);
    size_t *done = moe_xmalloc((n ? n : 1) * sizeof *done);
    moe_bench_arrivals(c, n, at);
    const double t0 = moe_now();
    moe_bench_target_set_t0(t, t0);
    size_t next = 0, inflight = 0, n_done = 0;
    uint64_t tokens = 0;
    const bool tty = isatty(2);
    double last_progress = 0;
    size_t last_decile = 0;
    int rc = MOE_OK;
    while (n_done < n) {
        double now = moe_now() - t0;
        while (next < n && at[next] <= now && (c->max_concurrency <= 0 || inflight < (size_t)c->max_concurrency)) {
            recs[next].prompt_len = p[next].prompt_len;
            if (moe_bench_target_submit(t, next, &p[next], &recs[next], err) == MOE_OK) inflight++;
            else n_done++; /* failed before it left: its record says why */
            next++;
        }
        if (n_done >= n) break;
        int timeout_ms = 100;
        if (next < n && (c->max_concurrency <= 0 || inflight < (size_t)c->max_concurrency)) {
            double wait = at[next] - (moe_now() - t0);
            timeout_ms = wait <= 0 ? 0 : wait < 0.1 ? (int)ceil(wait * 1000) : 100;
        }
        size_t k = 0;
        if (moe_bench_target_step(t, timeout_ms, done, &k, err)) {
            rc = MOE_ERR;
            break;
        }
        for (size_t i = 0; i < k; i++) {
            inflight--;
            n_done++;
            tokens += recs[done[i]].ok ? recs[done[i]].output_len : 0;
        }
        if (c->progress) {
            double el = moe_now() - t0;
            size_t decile = n ? n_done * 10 / n : 10;
            if ((tty && el - last_progress > 0.2) || (!tty && decile > last_decile)) {
                progress(c, n_done, n, inflight, tokens, el, tty, false);
                last_progress = el;
                last_decile = decile;
            }
        }
    }
    if (rc) {
        /* The target is gone: whatever has not ended fails with its error. */
        double now = moe_now() - t0;
        for (size_t i = 0; i < n; i++) {
            if (recs[i].ok || recs[i].error) continue;
            if (i >= next) recs[i].t_sent = now;
            recs[i].t_end = now;
            recs[i].error = moe_xstrdup(err->msg);
        }
    }
    double first = INFINITY, last = 0;
    for (size_t i = 0; i < n; i++) {
        if (recs[i].t_sent < first) first = recs[i].t_sent;
        if (recs[i].t_end > last) last = recs[i].t_end;
    }
    *duration = n && last > first ? last - first : 0;
    if (c->progress && tty) progress(c, n_done, n, 0, tokens, moe_now() - t0, tty, true);
    free(at);
    free(done);
    return rc;
}
