/*
 * coord_metrics.h — what the coordinator measures, in the metrics registry
 * (metrics.h), named as vLLM names its own with "moe:" in place of
 * "vllm:" (so its dashboards carry over), plus the cluster's per-rank
 * figures.  docs/metrics.md lists every metric.
 *
 * Requests: the loop stamps each request's events into its moe_req_timing
 * (arrival, first placement, every token, the end) and calls the functions
 * below at those events; they feed the token counters and the latency
 * histograms (TTFT, inter-token latency, end to end, queue, prefill,
 * decode).  A request is counted once, when it ends.
 *
 * Ranks: every heartbeat's figures (moe_rank_report) are mirrored as
 * per-rank series.  The ranks count their own totals, so those counters
 * are set, not added to (a restarted rank starts again from 0, which
 * Prometheus reads as a counter reset).
 *
 * Expert-load balancedness per MoE layer: mean / max over the live ranks
 * of the (token, expert) pairs each rank's experts ran in the window (the
 * last 55-60 s; since start for the first minute): 1 is perfectly even,
 * 1/ranks is one rank doing everything.  A layer with no routed token in
 * the window has no sample.  A rank whose totals go down has restarted:
 * the window counts its new totals whole.
 */
#ifndef MOE_COORD_COORD_METRICS_H
#define MOE_COORD_COORD_METRICS_H

#include <stdbool.h>
#include <stdio.h>

#include "workers.h"

typedef struct moe_cmetrics moe_cmetrics;

/* A request's times (moe_now()); 0: not yet. */
typedef struct moe_req_timing {
    double arrival, placed, first_token, last_token;
    int n_tokens;             /* tokens seen */
} moe_req_timing;

void moe_cmetrics_init(moe_cmetrics **out, const char *model_name, int n_ranks);
void moe_cmetrics_free(moe_cmetrics *cm);

/* Request events.  placed counts the prompt once (a replay on a restarted
 * rank is not a new prompt). */
void moe_cmetrics_placed(moe_cmetrics *cm, moe_req_timing *t, int n_prompt, double now);
void moe_cmetrics_token(moe_cmetrics *cm, moe_req_timing *t, double now);
/* reason: "stop", "length", "cancelled", "deadline", "error". */
void moe_cmetrics_finished(moe_cmetrics *cm, const moe_req_timing *t, const char *reason, double now);

/* The worker job: a request queued again for a replay with n_tokens
 * emitted; the supervisor started the job again; the new job was ready
 * seconds after the old one was found dead. */
void moe_cmetrics_replayed(moe_cmetrics *cm, int n_tokens);
/* A request refused by a per-client limit (docs/limits.md): "in_flight",
 * "prompt_bytes", "queue_share" or "prompt_pool". */
void moe_cmetrics_client_refused(moe_cmetrics *cm, const char *limit);
void moe_cmetrics_restarted(moe_cmetrics *cm);
/* The worker job applied (ok) or refused a new expert placement; the
 * ranks' balancedness over its window before and after (-1: no load). */
void moe_cmetrics_placement(moe_cmetrics *cm, bool ok, double bal_before, double bal_after);
void moe_cmetrics_recovered(moe_cmetrics *cm, double seconds);

/* A rank's heartbeat. */
void moe_cmetrics_rank_report(moe_cmetrics *cm, const moe_rank_report *rep, double now);

/* What only the loop knows at the time of a scrape. */
typedef struct moe_cmetrics_state {
    int running, waiting;     /* requests */
    const bool *rank_alive;   /* [n_ranks] */
    bool job_up;              /* every rank has said hello */
    bool job_failed;          /* the supervisor gave up (crash loop) */
} moe_cmetrics_state;

/* The exposition (Prometheus text 0.0.4); MOE_ERR if writing failed. */
int moe_cmetrics_write(moe_cmetrics *cm, const moe_cmetrics_state *st, double now, FILE *out);

#endif
