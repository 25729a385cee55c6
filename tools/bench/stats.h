/*
 * stats.h — moe-bench's figures: per-request records in, vLLM's "Serving
 * Benchmark Result" out (the block, the JSON keys of `vllm bench serve
 * --save-result`, a per-request CSV).  No sockets and no clocks: plain
 * values, so it is tested alone (tests/bench_stats_test.c).
 *
 * Definitions (vLLM's, so the numbers read the same):
 *   TTFT  = first content chunk − request sent
 *   E2EL  = last byte − request sent
 *   TPOT  = (E2EL − TTFT) / (output tokens − 1), requests with ≥ 2 tokens
 *   ITL   = gap between consecutive content chunks (one per chunk, so a
 *           chunk of several tokens is one gap, as vLLM counts SSE events)
 *   percentiles: linear interpolation between closest ranks (numpy's
 *   default): rank = p/100 · (n − 1).  std is the population std.
 *   goodput: successful requests meeting every given SLO (ms), per second.
 *   peak output throughput: the most tokens whose chunks arrived within
 *   one 1 s bucket of the run (buckets from its start), as vLLM;
 *   peak concurrency: the most successful requests in flight at one
 *   instant (sent, not yet ended).
 */
#ifndef MOE_TOOLS_BENCH_STATS_H
#define MOE_TOOLS_BENCH_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* One request's outcome.  Times are seconds since the run started. */
typedef struct moe_bench_rec {
    bool ok;
    char *error;            /* why it failed (owned), NULL if ok */
    uint32_t prompt_len;    /* tokens sent */
    uint32_t output_len;    /* tokens generated (the server's usage when it gave one) */
    double t_sent, t_end;
    double *chunk_t;        /* [n_chunks] arrival of each content chunk */
    uint32_t *chunk_n;      /* [n_chunks] tokens in it (1 when unknown: an SSE event) */
    size_t n_chunks, cap_chunks;
} moe_bench_rec;

void moe_bench_rec_chunk(moe_bench_rec *r, double t, uint32_t n_tokens);
void moe_bench_rec_free(moe_bench_rec *r);

enum { MOE_BENCH_TTFT = 0, MOE_BENCH_TPOT, MOE_BENCH_ITL, MOE_BENCH_E2EL, MOE_BENCH_N_METRICS };
#define MOE_BENCH_MAX_PCT 16

/* A metric's summary, in ms. */
typedef struct moe_bench_dist {
    double mean, median, std;
    double pct[MOE_BENCH_MAX_PCT]; /* at the report's percentiles */
    size_t n;                      /* samples */
} moe_bench_dist;

typedef struct moe_bench_report_cfg {
    bool metric[MOE_BENCH_N_METRICS]; /* --percentile-metrics */
    double pct[MOE_BENCH_MAX_PCT];    /* --metric-percentiles */
    size_t n_pct;
    double slo_ms[MOE_BENCH_N_METRICS]; /* --goodput; < 0: no SLO on that metric (ITL never has one) */
    bool goodput;                     /* any SLO given */
    int max_concurrency;              /* 0: none (the block leaves the line out) */
    double request_rate;              /* inf: all at once */
    double burstiness;
} moe_bench_report_cfg;

typedef struct moe_bench_report {
    size_t completed, failed;
    double duration;                  /* s */
    uint64_t total_input, total_output;
    double request_throughput, request_goodput, output_throughput, total_token_throughput;
    double max_output_tokens_per_s, max_concurrent_requests;
    moe_bench_dist dist[MOE_BENCH_N_METRICS];
} moe_bench_report;

/* numpy.percentile(v, p) for sorted v[0..n); 0 when n is 0. */
double moe_bench_percentile(const double *sorted, size_t n, double p);

/* TPOT of one request in s, or -1 when it has fewer than 2 tokens or no chunk. */
double moe_bench_tpot(const moe_bench_rec *r);

/* The report of recs[0..n) over a run of duration seconds. */
void moe_bench_report_compute(const moe_bench_report_cfg *c, const moe_bench_rec *recs, size_t n, double duration,
                              moe_bench_report *out);

/* The block, as vLLM prints it ("{:<40} {:<10.2f}"). */
void moe_bench_report_print(FILE *f, const moe_bench_report_cfg *c, const moe_bench_report *r);

/* Parses "ttft,tpot,itl,e2el" / "25,50,99" / "ttft:200 tpot:50" into c.
 * Returns 0, or -1 with msg filled. */
int moe_bench_parse_metrics(moe_bench_report_cfg *c, const char *s, char *msg, size_t cap);
int moe_bench_parse_percentiles(moe_bench_report_cfg *c, const char *s, char *msg, size_t cap);
int moe_bench_parse_goodput(moe_bench_report_cfg *c, const char *s, char *msg, size_t cap);

/* The metric's short name ("ttft") and its key in vLLM's JSON for a
 * percentile ("p99" / "p99.9"). */
const char *moe_bench_metric_name(int m);
void moe_bench_pct_key(double p, char *buf, size_t cap);

/* The figures under vLLM's keys (completed, failed, duration,
 * total_input_tokens, ..., mean_ttft_ms, median_ttft_ms, std_ttft_ms,
 * p99_ttft_ms, ...; input_lens, output_lens, ttfts (s), itls (s), errors).
 * A new reference. */
json_t *moe_bench_report_json(const moe_bench_report_cfg *c, const moe_bench_report *r, const moe_bench_rec *recs,
                               size_t n);

/* The per-request CSV: a header line, then one line per record. */
void moe_bench_csv(FILE *f, const moe_bench_rec *recs, size_t n);

#endif
