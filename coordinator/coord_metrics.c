/*
 * coord_metrics.c — the coordinator's metrics (see coord_metrics.h).
 */
#include "coord_metrics.h"

#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "msg.h"

/* vLLM's bucket bounds, so its dashboards' quantiles mean the same. */
static const double TTFT_BOUNDS[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                     1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
static const double ITL_BOUNDS[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                    0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
static const double REQUEST_BOUNDS[] = {0.3,  0.5,  0.8,  1.0,  1.5,  2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
                                        30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Balancedness window: a snapshot of every rank's expert counters every
 * SNAP_EVERY seconds, N_SNAPS kept; the oldest is the baseline. */
#define SNAP_EVERY 5.0
#define N_SNAPS 12

typedef struct rank_m {
    moe_metric_series *live, *seqs, *blocks_used, *blocks_total, *steps, *sent, *recv, *pc_queries, *pc_hits;
    moe_metric_series *sd_draft, *sd_acc, *sd_pos[4];
    moe_metric_series **expert;   /* [n_layers] */
    bool reported;                /* a report with stats came */
    uint64_t steps_n;             /* its last step total (restart detection) */
    uint64_t blocks_used_n, blocks_total_n;
} rank_m;

struct moe_cmetrics {
    moe_metrics *reg;
    char *model;
    int n_ranks;
    moe_metric *running, *waiting, *kv_usage, *prompt_tok, *gen_tok, *success;
    moe_metric *ttft, *itl, *e2e, *queue, *prefill, *decode;
    moe_metric_series *s_pl_applied, *s_pl_refused, *s_pl_before, *s_pl_after;
    moe_metric *restarts, *replayed, *replayed_tok, *recovery, *job_up, *job_failed, *client_refused;
    moe_metric_series *s_heap_used, *s_heap_free;
    moe_metric_series *s_restarts, *s_replayed, *s_replayed_tok, *s_recovery, *s_job_up, *s_job_failed;
    moe_metric *r_live, *r_seqs, *r_used, *r_total, *r_step, *r_sent, *r_recv, *r_expert, *balance;
    moe_metric *r_pc_queries, *r_pc_hits, *r_sd_draft, *r_sd_acc, *r_sd_acc_pos;
    moe_metric_series *s_running, *s_waiting, *s_kv, *s_prompt, *s_gen, *s_ttft, *s_itl, *s_e2e, *s_queue, *s_prefill,
        *s_decode;
    rank_m *ranks;                /* [n_ranks] */
    /* expert load: the layer shape of the first report, then per rank */
    int first_layer, n_layers;    /* n_layers 0: not known yet */
    uint64_t *cur;                /* [n_ranks][n_layers] latest totals */
    uint64_t *snaps;              /* [N_SNAPS][n_ranks][n_layers] */
    double snap_t[N_SNAPS];
    int n_snaps, snap_head;       /* ring: oldest at snap_head once full */
};

static moe_metric *fam(moe_cmetrics *cm, moe_metric_type t, const char *name, const char *help, const char *const *labels,
                       int n_labels, const double *bounds, int n_bounds)
{
    moe_err err;
    moe_metric *f = moe_metrics_add(cm->reg, t, name, help, labels, n_labels, bounds, n_bounds, &err);
    MOE_ASSERT(f != NULL); /* the names here are fixed and valid */
    return f;
}

void moe_cmetrics_init(moe_cmetrics **out, const char *model_name, int n_ranks)
{
    moe_cmetrics *cm = moe_xcalloc(1, sizeof *cm);
    moe_metrics_init(&cm->reg);
    cm->model = moe_xstrdup(model_name ? model_name : "");
    cm->n_ranks = n_ranks;
    const char *m[] = {"model_name"}, *mr[] = {"model_name", "finished_reason"}, *rk[] = {"model_name", "rank"},
               *rl[] = {"model_name", "rank", "layer"}, *ly[] = {"model_name", "layer"},
               *lm[] = {"model_name", "limit"};
    const moe_metric_type C = MOE_METRIC_COUNTER, G = MOE_METRIC_GAUGE, H = MOE_METRIC_HISTOGRAM;
    cm->running = fam(cm, G, "moe:num_requests_running", "Requests running on a worker rank.", m, 1, NULL, 0);
    cm->waiting = fam(cm, G, "moe:num_requests_waiting", "Requests waiting in the queue for a rank.", m, 1, NULL, 0);
    cm->kv_usage = fam(cm, G, "moe:kv_cache_usage_perc",
                       "Fraction of the live ranks' latent cache blocks in use (0 to 1).", m, 1, NULL, 0);
    cm->prompt_tok = fam(cm, C, "moe:prompt_tokens_total", "Prompt tokens of the requests placed on a rank.", m, 1, NULL, 0);
    cm->gen_tok = fam(cm, C, "moe:generation_tokens_total", "Tokens generated (received from the ranks).", m, 1, NULL, 0);
    cm->success = fam(cm, C, "moe:request_success_total", "Requests ended, by finish reason.", mr, 2, NULL, 0);
    cm->ttft = fam(cm, H, "moe:time_to_first_token_seconds", "Time from arrival to the first token.", m, 1, TTFT_BOUNDS,
                   N_OF(TTFT_BOUNDS));
    cm->itl = fam(cm, H, "moe:inter_token_latency_seconds", "Time between two tokens of a request.", m, 1, ITL_BOUNDS,
                  N_OF(ITL_BOUNDS));
    cm->e2e = fam(cm, H, "moe:e2e_request_latency_seconds", "Time from arrival to the end of a request.", m, 1,
                  REQUEST_BOUNDS, N_OF(REQUEST_BOUNDS));
    cm->queue = fam(cm, H, "moe:request_queue_time_seconds", "Time from arrival to placement on a rank.", m, 1,
                    REQUEST_BOUNDS, N_OF(REQUEST_BOUNDS));
    cm->prefill = fam(cm, H, "moe:request_prefill_time_seconds", "Time from placement to the first token.", m, 1,
                      REQUEST_BOUNDS, N_OF(REQUEST_BOUNDS));
    cm->decode = fam(cm, H, "moe:request_decode_time_seconds", "Time from the first token to the last.", m, 1,
                     REQUEST_BOUNDS, N_OF(REQUEST_BOUNDS));
    cm->r_live = fam(cm, G, "moe:rank_live", "1 if the rank has said hello and answers heartbeats, else 0.", rk, 2, NULL, 0);
    cm->r_seqs = fam(cm, G, "moe:rank_sequences", "Sequences the rank holds (its last heartbeat).", rk, 2, NULL, 0);
    cm->r_used = fam(cm, G, "moe:rank_cache_blocks_used", "Latent cache blocks in use on the rank.", rk, 2, NULL, 0);
    cm->r_total = fam(cm, G, "moe:rank_cache_blocks_total", "Latent cache blocks of the rank's pool.", rk, 2, NULL, 0);
    cm->r_step = fam(cm, H, "moe:rank_step_seconds", "Duration of the rank's lockstep steps with work.", rk, 2,
                     moe_msg_step_bounds, MOE_MSG_STEP_BOUNDS);
    cm->r_sent = fam(cm, C, "moe:rank_exchange_bytes_sent_total",
                     "Bytes the rank sent to other ranks in expert exchanges (dispatch and combine).", rk, 2, NULL, 0);
    cm->r_recv = fam(cm, C, "moe:rank_exchange_bytes_received_total",
                     "Bytes the rank received from other ranks in expert exchanges.", rk, 2, NULL, 0);
    cm->r_pc_queries = fam(cm, C, "moe:prefix_cache_queries_total",
                           "Prompt tokens the rank looked up in its prefix cache (vLLM's prefix_cache_queries).", rk,
                           2, NULL, 0);
    cm->r_pc_hits = fam(cm, C, "moe:prefix_cache_hits_total",
                        "Prompt tokens the rank found in its prefix cache and did not compute (vLLM's "
                        "prefix_cache_hits).",
                        rk, 2, NULL, 0);
    cm->r_sd_draft = fam(cm, C, "moe:spec_decode_num_draft_tokens_total",
                         "MTP draft tokens the rank fed to the trunk (vLLM's spec_decode_num_draft_tokens).", rk, 2,
                         NULL, 0);
    cm->r_sd_acc = fam(cm, C, "moe:spec_decode_num_accepted_tokens_total",
                       "MTP draft tokens the trunk accepted (vLLM's spec_decode_num_accepted_tokens).", rk, 2, NULL, 0);
    const char *rp[] = {"model_name", "rank", "position"};
    cm->r_sd_acc_pos = fam(cm, C, "moe:spec_decode_num_accepted_tokens_per_pos_total",
                           "Accepted MTP draft tokens by draft position (one draft a step: position 0).", rp, 3,
                           NULL, 0);
    cm->r_expert = fam(cm, C, "moe:rank_expert_tokens_total",
                       "(token, expert) pairs the rank's routed experts ran, per MoE layer.", rl, 3, NULL, 0);
    cm->balance = fam(cm, G, "moe:expert_load_balancedness",
                      "Per MoE layer, mean over max of the expert work per live rank in the last minute (1: even).",
                      ly, 2, NULL, 0);
    cm->restarts = fam(cm, C, "moe:worker_job_restarts_total",
                       "Times the supervisor (--launch) started the worker job again after it died.", m, 1, NULL, 0);
    cm->replayed = fam(cm, C, "moe:replayed_requests_total",
                       "Requests in flight on a dead worker job, queued again to be replayed on the next.", m, 1, NULL, 0);
    cm->replayed_tok = fam(cm, C, "moe:replayed_tokens_total",
                           "Tokens those requests had emitted, fed again (not re-sent) by their replay.", m, 1, NULL, 0);
    cm->recovery = fam(cm, H, "moe:worker_job_recovery_seconds",
                       "Time from finding the worker job dead to every rank of the new one having said hello.", m, 1,
                       REQUEST_BOUNDS, N_OF(REQUEST_BOUNDS));
    cm->job_up = fam(cm, G, "moe:worker_job_up", "1 while every rank of the worker job has said hello, else 0.", m, 1,
                     NULL, 0);
    cm->job_failed = fam(cm, G, "moe:worker_job_failed",
                         "1 once the supervisor gave up restarting the worker job (a crash loop), else 0.", m, 1, NULL, 0);
    cm->client_refused = fam(cm, C, "moe:client_limit_refusals_total",
                             "Requests refused by a per-client limit (in flight, prompt bytes a second, share of "
                             "the queue) or a full prompt pool.",
                             lm, 2, NULL, 0);
    const char *hk[] = {"model_name", "kind"};
    moe_metric *heap = fam(cm, G, "moe:coordinator_heap_bytes",
                           "The coordinator's malloc heap (glibc mallinfo2, every arena): in_use is allocated, free "
                           "is held for reuse and not yet returned to the system.",
                           hk, 2, NULL, 0);
    const char *hu[] = {cm->model, "in_use"}, *hf[] = {cm->model, "free"};
    cm->s_heap_used = moe_metric_series_get(heap, hu);
    cm->s_heap_free = moe_metric_series_get(heap, hf);
    const char *pr[] = {"model_name", "result"}, *pw[] = {"model_name", "when"};
    moe_metric *placements = fam(cm, C, "moe:expert_placements_total",
                                 "New expert placements the worker job applied or refused while serving (POST "
                                 "/admin/placement, moe-worker --rebalance-every).",
                                 pr, 2, NULL, 0);
    moe_metric *pl_bal = fam(cm, G, "moe:expert_placement_balancedness",
                             "Mean over max of the ranks' expert work over the job's window, under the placement "
                             "before and after the last one applied (1: even; -1: no load in the window).",
                             pw, 2, NULL, 0);
    const char *pa[] = {cm->model, "applied"}, *pf[] = {cm->model, "refused"};
    const char *pb[] = {cm->model, "before"}, *pt[] = {cm->model, "after"};
    cm->s_pl_applied = moe_metric_series_get(placements, pa);
    cm->s_pl_refused = moe_metric_series_get(placements, pf);
    cm->s_pl_before = moe_metric_series_get(pl_bal, pb);
    cm->s_pl_after = moe_metric_series_get(pl_bal, pt);
    cm->s_restarts = moe_metric_series_get1(cm->restarts, cm->model);
    cm->s_replayed = moe_metric_series_get1(cm->replayed, cm->model);
    cm->s_replayed_tok = moe_metric_series_get1(cm->replayed_tok, cm->model);
    cm->s_recovery = moe_metric_series_get1(cm->recovery, cm->model);
    cm->s_job_up = moe_metric_series_get1(cm->job_up, cm->model);
    cm->s_job_failed = moe_metric_series_get1(cm->job_failed, cm->model);
    cm->s_running = moe_metric_series_get1(cm->running, cm->model);
    cm->s_waiting = moe_metric_series_get1(cm->waiting, cm->model);
    cm->s_kv = moe_metric_series_get1(cm->kv_usage, cm->model);
    cm->s_prompt = moe_metric_series_get1(cm->prompt_tok, cm->model);
    cm->s_gen = moe_metric_series_get1(cm->gen_tok, cm->model);
    cm->s_ttft = moe_metric_series_get1(cm->ttft, cm->model);
    cm->s_itl = moe_metric_series_get1(cm->itl, cm->model);
    cm->s_e2e = moe_metric_series_get1(cm->e2e, cm->model);
    cm->s_queue = moe_metric_series_get1(cm->queue, cm->model);
    cm->s_prefill = moe_metric_series_get1(cm->prefill, cm->model);
    cm->s_decode = moe_metric_series_get1(cm->decode, cm->model);
    /* the finish reasons exist from the start (rates need a series at 0) */
    static const char *const reasons[] = {"stop", "length", "cancelled", "deadline", "error"};
    for (int i = 0; i < N_OF(reasons); i++) {
        const char *v[] = {cm->model, reasons[i]};
        moe_metric_series_get(cm->success, v);
    }
    cm->ranks = moe_xcalloc((size_t)n_ranks, sizeof *cm->ranks);
    for (int k = 0; k < n_ranks; k++) {
        char rs[16];
        snprintf(rs, sizeof rs, "%d", k);
        const char *v[] = {cm->model, rs};
        rank_m *r = &cm->ranks[k];
        r->live = moe_metric_series_get(cm->r_live, v);
        r->seqs = moe_metric_series_get(cm->r_seqs, v);
        r->blocks_used = moe_metric_series_get(cm->r_used, v);
        r->blocks_total = moe_metric_series_get(cm->r_total, v);
        r->steps = moe_metric_series_get(cm->r_step, v);
        r->sent = moe_metric_series_get(cm->r_sent, v);
        r->recv = moe_metric_series_get(cm->r_recv, v);
        r->pc_queries = moe_metric_series_get(cm->r_pc_queries, v);
        r->pc_hits = moe_metric_series_get(cm->r_pc_hits, v);
        r->sd_draft = moe_metric_series_get(cm->r_sd_draft, v);
        r->sd_acc = moe_metric_series_get(cm->r_sd_acc, v);
        const char *vp[] = {cm->model, rs, "0"};
        r->sd_pos[0] = moe_metric_series_get(cm->r_sd_acc_pos, vp); /* the others once a rank drafts more */
    }
    *out = cm;
}

void moe_cmetrics_free(moe_cmetrics *cm)
{
    if (!cm) return;
    for (int k = 0; k < cm->n_ranks; k++) free(cm->ranks[k].expert);
    free(cm->ranks);
    free(cm->cur);
    free(cm->snaps);
    free(cm->model);
    moe_metrics_free(cm->reg);
    free(cm);
}

/* ---- requests ------------------------------------------------------------------------- */

void moe_cmetrics_placed(moe_cmetrics *cm, moe_req_timing *t, int n_prompt, double now)
{
    if (t->placed > 0) return;
    t->placed = now;
    moe_metric_add(cm->s_prompt, n_prompt);
    moe_metric_observe(cm->s_queue, now - t->arrival);
}

void moe_cmetrics_token(moe_cmetrics *cm, moe_req_timing *t, double now)
{
    moe_metric_add(cm->s_gen, 1);
    if (t->n_tokens++ == 0) {
        t->first_token = now;
        moe_metric_observe(cm->s_ttft, now - t->arrival);
        if (t->placed > 0) moe_metric_observe(cm->s_prefill, now - t->placed);
    } else {
        moe_metric_observe(cm->s_itl, now - t->last_token);
    }
    t->last_token = now;
}

void moe_cmetrics_finished(moe_cmetrics *cm, const moe_req_timing *t, const char *reason, double now)
{
    const char *v[] = {cm->model, reason};
    moe_metric_add(moe_metric_series_get(cm->success, v), 1);
    moe_metric_observe(cm->s_e2e, now - t->arrival);
    if (t->n_tokens > 0) moe_metric_observe(cm->s_decode, t->last_token - t->first_token);
}

/* ---- the worker job -------------------------------------------------------------------- */

void moe_cmetrics_replayed(moe_cmetrics *cm, int n_tokens)
{
    moe_metric_add(cm->s_replayed, 1);
    moe_metric_add(cm->s_replayed_tok, n_tokens);
}

void moe_cmetrics_client_refused(moe_cmetrics *cm, const char *limit)
{
    const char *v[] = {cm->model, limit};
    moe_metric_add(moe_metric_series_get(cm->client_refused, v), 1);
}

void moe_cmetrics_restarted(moe_cmetrics *cm) { moe_metric_add(cm->s_restarts, 1); }

void moe_cmetrics_placement(moe_cmetrics *cm, bool ok, double bal_before, double bal_after)
{
    moe_metric_add(ok ? cm->s_pl_applied : cm->s_pl_refused, 1);
    if (!ok) return;
    moe_metric_set(cm->s_pl_before, bal_before);
    moe_metric_set(cm->s_pl_after, bal_after);
}

void moe_cmetrics_recovered(moe_cmetrics *cm, double seconds) { moe_metric_observe(cm->s_recovery, seconds); }

/* ---- ranks ------------------------------------------------------------------------------ */

/* The layer shape comes with the first report that has one; the arrays
 * for the window are made then. */
static bool layers_ready(moe_cmetrics *cm, const moe_rank_report *rep, double now)
{
    if (rep->n_moe_layers <= 0) return false;
    if (cm->n_layers == 0) {
        cm->first_layer = rep->first_moe_layer;
        cm->n_layers = rep->n_moe_layers;
        const size_t per = (size_t)cm->n_ranks * (size_t)cm->n_layers;
        cm->cur = moe_xcalloc(per, sizeof *cm->cur);
        cm->snaps = moe_xcalloc(per * N_SNAPS, sizeof *cm->snaps);
        cm->n_snaps = 1; /* an all-zero baseline: "since start" until the ring fills */
        cm->snap_t[0] = now;
    }
    return rep->first_moe_layer == cm->first_layer && rep->n_moe_layers == cm->n_layers;
}

static void snapshot(moe_cmetrics *cm, double now)
{
    const size_t per = (size_t)cm->n_ranks * (size_t)cm->n_layers;
    const int newest = (cm->snap_head + cm->n_snaps - 1) % N_SNAPS;
    if (now - cm->snap_t[newest] < SNAP_EVERY) return;
    int slot;
    if (cm->n_snaps < N_SNAPS) slot = (cm->snap_head + cm->n_snaps++) % N_SNAPS;
    else {
        slot = cm->snap_head; /* the oldest goes */
        cm->snap_head = (cm->snap_head + 1) % N_SNAPS;
    }
    memcpy(cm->snaps + (size_t)slot * per, cm->cur, per * sizeof *cm->cur);
    cm->snap_t[slot] = now;
}

void moe_cmetrics_rank_report(moe_cmetrics *cm, const moe_rank_report *rep, double now)
{
    if (rep->rank < 0 || rep->rank >= cm->n_ranks) return;
    rank_m *r = &cm->ranks[rep->rank];
    moe_metric_set(r->seqs, (double)rep->sequences);
    if (!rep->has_stats) return;
    r->reported = true;
    r->blocks_used_n = rep->cache_blocks_used;
    r->blocks_total_n = rep->cache_blocks_total;
    moe_metric_set(r->blocks_used, (double)rep->cache_blocks_used);
    moe_metric_set(r->blocks_total, (double)rep->cache_blocks_total);
    if (rep->n_step_counts) moe_metric_load(r->steps, rep->step_counts, rep->n_step_counts, rep->step_seconds_sum);
    moe_metric_set(r->sent, (double)rep->xchg_bytes_sent);
    moe_metric_set(r->recv, (double)rep->xchg_bytes_recv);
    moe_metric_set(r->pc_queries, (double)rep->prefix_cache_queries);
    moe_metric_set(r->pc_hits, (double)rep->prefix_cache_hits);
    moe_metric_set(r->sd_draft, (double)rep->spec_draft_tokens);
    moe_metric_set(r->sd_acc, (double)rep->spec_accepted_tokens);
    if (rep->n_spec_pos == 0) moe_metric_set(r->sd_pos[0], (double)rep->spec_accepted_tokens); /* an older rank */
    for (int i = 0; i < rep->n_spec_pos && i < 4; i++) {
        if (!r->sd_pos[i]) {
            char rs[16], ps[8];
            snprintf(rs, sizeof rs, "%d", rep->rank);
            snprintf(ps, sizeof ps, "%d", i);
            const char *vp[] = {cm->model, rs, ps};
            r->sd_pos[i] = moe_metric_series_get(cm->r_sd_acc_pos, vp);
        }
        moe_metric_set(r->sd_pos[i], (double)rep->spec_accepted_per_pos[i]);
    }
    if (!layers_ready(cm, rep, now)) return;
    if (!r->expert) {
        r->expert = moe_xcalloc((size_t)cm->n_layers, sizeof *r->expert);
        char rs[16], ls[16];
        snprintf(rs, sizeof rs, "%d", rep->rank);
        for (int l = 0; l < cm->n_layers; l++) {
            snprintf(ls, sizeof ls, "%d", cm->first_layer + l);
            const char *v[] = {cm->model, rs, ls};
            r->expert[l] = moe_metric_series_get(cm->r_expert, v);
        }
    }
    uint64_t *cur = cm->cur + (size_t)rep->rank * (size_t)cm->n_layers;
    /* a rank whose totals went down has restarted from 0: its part of
     * every snapshot is 0 too, so the window counts its new work whole */
    bool restarted = rep->steps < r->steps_n;
    for (int l = 0; l < cm->n_layers; l++) restarted |= rep->expert_tokens[l] < cur[l];
    r->steps_n = rep->steps;
    if (restarted)
        for (int s = 0; s < N_SNAPS; s++)
            memset(cm->snaps + (size_t)s * (size_t)cm->n_ranks * (size_t)cm->n_layers +
                       (size_t)rep->rank * (size_t)cm->n_layers,
                   0, (size_t)cm->n_layers * sizeof *cm->snaps);
    for (int l = 0; l < cm->n_layers; l++) {
        cur[l] = rep->expert_tokens[l];
        moe_metric_set(r->expert[l], (double)rep->expert_tokens[l]);
    }
    snapshot(cm, now);
}

/* mean / max of the live ranks' expert work per layer in the window. */
static void balancedness(moe_cmetrics *cm, const bool *alive)
{
    moe_metric_clear(cm->balance);
    if (cm->n_layers == 0) return;
    const size_t per = (size_t)cm->n_ranks * (size_t)cm->n_layers;
    const uint64_t *base = cm->snaps + (size_t)cm->snap_head * per;
    for (int l = 0; l < cm->n_layers; l++) {
        double sum = 0, max = 0;
        int n = 0;
        for (int k = 0; k < cm->n_ranks; k++) {
            if (!alive[k] || !cm->ranks[k].reported) continue;
            const uint64_t c = cm->cur[(size_t)k * (size_t)cm->n_layers + (size_t)l];
            const uint64_t b = base[(size_t)k * (size_t)cm->n_layers + (size_t)l];
            const double d = (double)(c >= b ? c - b : c); /* (restarts are handled in the report) */
            sum += d;
            if (d > max) max = d;
            n++;
        }
        if (n == 0 || max <= 0) continue;
        char ls[16];
        snprintf(ls, sizeof ls, "%d", cm->first_layer + l);
        const char *v[] = {cm->model, ls};
        moe_metric_set(moe_metric_series_get(cm->balance, v), sum / n / max);
    }
}

int moe_cmetrics_write(moe_cmetrics *cm, const moe_cmetrics_state *st, double now, FILE *out)
{
    (void)now;
    moe_metric_set(cm->s_running, st->running);
    moe_metric_set(cm->s_job_up, st->job_up ? 1 : 0);
    moe_metric_set(cm->s_job_failed, st->job_failed ? 1 : 0);
    moe_metric_set(cm->s_waiting, st->waiting);
    uint64_t used = 0, total = 0;
    for (int k = 0; k < cm->n_ranks; k++) {
        rank_m *r = &cm->ranks[k];
        moe_metric_set(r->live, st->rank_alive[k] ? 1 : 0);
        if (!st->rank_alive[k]) {
            moe_metric_set(r->seqs, 0);
            continue;
        }
        if (r->reported) used += r->blocks_used_n, total += r->blocks_total_n;
    }
    moe_metric_set(cm->s_kv, total ? (double)used / (double)total : 0.0);
    balancedness(cm, st->rank_alive);
    const struct mallinfo2 mi = mallinfo2();
    moe_metric_set(cm->s_heap_used, (double)(mi.uordblks + mi.hblkhd));
    moe_metric_set(cm->s_heap_free, (double)mi.fordblks);
    return moe_metrics_write(cm->reg, out);
}
