/*
 * moe-route — routing research on traces of `moe-worker --trace`: load
 * statistics, EPLB rebalancing into a placement file, the eplb.py
 * interface over JSON lines, a cluster simulation and its calibration.
 * docs/routing.md is the manual.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exprec.h"
#include "io.h"
#include "model.h"
#include "route.h"
#include "simulate.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: moe-route stats TRACE [--model F | --experts E] [--placement P --ranks R] [--top N] [--png DIR]\n"
        "       moe-route rebalance TRACE --replicas P --nodes N --ranks R -o PLACEMENT\n"
        "                 [--model F | --experts E --groups G]\n"
        "       moe-route eplb IN.jsonl OUT.jsonl\n"
        "       moe-route simulate TRACE --nodes N --ranks-per-node R --link-gbps B --latency-us L\n"
        "                 [--placement P] [--model F | --experts E --dim D] [--calib FILE]\n"
        "                 [--batch T] [--rehome | --keep-homes] [--node-limit M] [--exact]\n"
        "       moe-route calibrate --model F [-o FILE]\n"
        "\n"
        "TRACE is a file of `moe-worker --trace`, or a per_token record of the expert distribution\n"
        "recorder (`moe-worker --record`, POST /dump_expert_distribution_record; docs/routing.md).\n"
        "  stats       per MoE layer: tokens, expert balancedness (mean/max), entropy, rank\n"
        "              balancedness, hot experts, co-activated pairs; rank loads; with --png\n"
        "              DIR heatmaps layer x expert and layer x rank (gnuplot) and their data\n"
        "  rebalance   DeepSeek's EPLB on the trace's load: P physical expert slots a layer\n"
        "              (P >= experts, a multiple of R) on R ranks in N nodes; hierarchical\n"
        "              when N divides the expert groups, else global; writes a placement\n"
        "              file for `moe-worker --placement` with the slot map in comments\n"
        "  eplb        one case a line {weight, num_replicas, num_groups, num_nodes,\n"
        "              num_gpus} to one result a line {phy2log, log2phy, logcnt}\n"
        "  simulate    the trace replayed on N x R ranks (2..%d) under the placement (default:\n"
        "              contiguous): per-rank expert load, dispatch and combine bytes per\n"
        "              token per layer (intra- and inter-node), a projected step time\n"
        "  calibrate   this machine's cost constants: expert time per call and per row\n"
        "              (the model's experts, one thread) and memcpy bandwidth\n"
        "\n"
        "  --model F          take layers, experts, groups and hidden size from the GGUF file\n"
        "  --experts E        routed experts (default: the largest id in the trace + 1)\n"
        "  --groups G         expert groups (default 1)\n"
        "  --dim D            hidden size (simulate, without --model)\n"
        "  --placement P      a placement file (docs/routing.md)\n"
        "  --ranks R          ranks of the placement (stats) or of the job (rebalance)\n"
        "  --top N            hot experts and pairs listed per layer (default 5)\n"
        "  --png DIR          stats: write expert_load.png, rank_load.png (+ .dat) into DIR\n"
        "  --replicas P       rebalance: physical expert slots a layer (eplb.py's num_replicas)\n"
        "  --nodes N          nodes; --ranks-per-node R ranks a node\n"
        "  --link-gbps B      inter-node bandwidth a rank, Gbit/s; --latency-us L its latency\n"
        "  --calib FILE       constants from `moe-route calibrate -o FILE` (default: calibrate\n"
        "                     now, needs --model)\n"
        "  --batch T          tokens a step (default 256)\n"
        "  --node-limit M     simulate: ESTIMATE the bytes with node-limited routing (moe-worker --node-limit,\n"
        "                     which changes the answer): each token's experts on at most M nodes;\n"
        "                     prints what it saves against the recorded routing (docs/routing.md)\n"
        "  --exact            simulate: dispatch rows as the float path sends them (dim floats;\n"
        "                     default with --model: the int8 path's quantized rows, as moe-worker\n"
        "                     sends them without --exact; without --model: float rows)\n"
        "  --rehome           sequences on rank req mod ranks (default when the ranks differ\n"
        "                     from the recorded run's); --keep-homes: the recorded home ranks\n"
        "  -o FILE            output file\n"
        "  -h, --help         this text\n",
        MOE_PLACEMENT_MAX_RANKS);
}

typedef struct opts {
    const char *cmd, *arg1, *arg2;
    const char *model, *placement, *png, *out, *calib;
    int64_t experts, groups, dim, ranks, top, replicas, nodes, rpn, batch, node_limit;
    double link_gbps, latency_us;
    int rehome; /* -1 auto, 0 keep, 1 rehome */
    bool exact;
} opts;

static int parse(int argc, char **argv, opts *o, moe_err *err)
{
    memset(o, 0, sizeof *o);
    o->rehome = -1;
    o->link_gbps = -1;
    o->latency_us = -1;
    o->batch = 256;
    o->top = 5;
    if (argc < 2) return moe_err_set(err, "no command; see --help");
    o->cmd = argv[1];
    static const struct { const char *flag; size_t off; int64_t lo, hi; } ints[] = {
#define I(f, m, lo, hi) {f, offsetof(opts, m), lo, hi}
        I("--experts", experts, 1, MOE_TRACE_MAX_EXPERT + 1), I("--groups", groups, 1, MOE_TRACE_MAX_EXPERT + 1),
        I("--dim", dim, 1, 1 << 20), I("--ranks", ranks, 1, MOE_PLACEMENT_MAX_RANKS), I("--top", top, 1, 64),
        I("--replicas", replicas, 1, MOE_EPLB_MAX_SLOTS), I("--nodes", nodes, 1, MOE_PLACEMENT_MAX_RANKS),
        I("--ranks-per-node", rpn, 1, MOE_PLACEMENT_MAX_RANKS), I("--batch", batch, 1, 1 << 24),
        I("--node-limit", node_limit, 1, MOE_PLACEMENT_MAX_RANKS),
#undef I
    };
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--rehome")) { o->rehome = 1; continue; }
        if (!strcmp(a, "--keep-homes")) { o->rehome = 0; continue; }
        if (!strcmp(a, "--exact")) { o->exact = true; continue; }
        if (a[0] != '-' || !strcmp(a, "-")) {
            if (!o->arg1) o->arg1 = a;
            else if (!o->arg2) o->arg2 = a;
            else return moe_err_set(err, "unexpected argument '%s'", a);
            continue;
        }
        if (i + 1 >= argc) return moe_err_set(err, "%s needs a value (or is unknown); see --help", a);
        const char *v = argv[++i];
        bool done = false;
        for (size_t k = 0; k < sizeof ints / sizeof ints[0] && !done; k++) {
            if (strcmp(a, ints[k].flag)) continue;
            if (moe_parse_i64(v, ints[k].lo, ints[k].hi, (int64_t *)((char *)o + ints[k].off), err))
                return moe_err_prefix(err, "%s", a);
            done = true;
        }
        if (done) continue;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--placement")) o->placement = v;
        else if (!strcmp(a, "--png")) o->png = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) o->out = v;
        else if (!strcmp(a, "--calib")) o->calib = v;
        else if (!strcmp(a, "--link-gbps")) {
            if (moe_parse_f64(v, 1e-6, 1e6, &o->link_gbps, err)) return moe_err_prefix(err, "--link-gbps");
        } else if (!strcmp(a, "--latency-us")) {
            if (moe_parse_f64(v, 0, 1e7, &o->latency_us, err)) return moe_err_prefix(err, "--latency-us");
        } else return moe_err_set(err, "unknown flag %s; see --help", a);
    }
    return MOE_OK;
}

static int load_trace(const opts *o, moe_trace *t, route_shape *s, moe_err *err)
{
    if (!o->arg1) return moe_err_set(err, "%s needs a TRACE file", o->cmd);
    if (o->arg2) return moe_err_set(err, "unexpected argument '%s'", o->arg2);
    if (moe_trace_load(t, o->arg1, err)) return MOE_ERR;
    if (route_shape_get(s, o->model, t, (int)o->experts, (int)o->groups, (int)o->dim, err)) {
        moe_trace_free(t);
        return MOE_ERR;
    }
    return MOE_OK;
}

static int cmd_stats(const opts *o, moe_err *err)
{
    if (o->arg1 && !o->arg2) { /* a stat record: counts only */
        char *buf = NULL;
        size_t n = 0;
        moe_exprec_file f;
        if (moe_file_read(o->arg1, MOE_TRACE_MAX_BYTES, &buf, &n, err)) return MOE_ERR;
        int rc = -1;
        if (moe_exprec_is((const uint8_t *)buf, n)) {
            rc = moe_exprec_parse(&f, (const uint8_t *)buf, n, err);
            if (rc) moe_err_prefix(err, "%s", o->arg1);
            else if (f.mode == MOE_EXPREC_STAT) rc = route_stats_record(&f, (int)o->top, stdout, err);
            else rc = -1; /* per_token: rows, read as a trace below */
        }
        free(buf);
        if (rc != -1) return rc;
    }
    moe_trace t;
    route_shape s;
    if (load_trace(o, &t, &s, err)) return MOE_ERR;
    moe_placement *p = NULL;
    int rc = MOE_OK;
    if (o->placement || o->ranks) {
        if (!o->ranks) rc = moe_err_set(err, "--placement needs --ranks");
        else rc = route_placement(&p, &s, (int)o->ranks, o->placement, err);
    }
    route_stats_opts so = {p, (int)o->top, o->png};
    if (!rc) rc = route_stats(&t, &s, &so, stdout, err);
    moe_placement_free(p);
    moe_trace_free(&t);
    return rc;
}

static int cmd_rebalance(const opts *o, moe_err *err)
{
    if (!o->replicas || !o->nodes || !o->ranks || !o->out)
        return moe_err_set(err, "rebalance needs --replicas, --nodes, --ranks and -o");
    moe_trace t;
    route_shape s;
    if (load_trace(o, &t, &s, err)) return MOE_ERR;
    uint64_t *cnt = moe_trace_counts(&t, s.n_expert, err);
    if (!cnt) {
        moe_trace_free(&t);
        return MOE_ERR;
    }
    /* the trace's layers must be the model's MoE layers, all of them, or the
     * placement file leaves experts unplaced */
    const int L = t.max_layer - t.min_layer + 1;
    int rc = MOE_OK;
    if (t.min_layer != s.first_moe || t.max_layer != s.n_layer - 1)
        rc = moe_err_set(err, "the trace covers layers %d..%d, the MoE layers are %d..%d", t.min_layer, t.max_layer,
                         s.first_moe, s.n_layer - 1);
    float *w = moe_xmalloc((size_t)L * (size_t)s.n_expert * sizeof *w);
    for (size_t i = 0; i < (size_t)L * (size_t)s.n_expert; i++) w[i] = (float)cnt[i];
    moe_eplb_params q = {(int)o->replicas, s.n_group, (int)o->nodes, (int)o->ranks};
    moe_eplb_result r = {0};
    if (!rc) rc = moe_eplb_rebalance(&r, w, L, s.n_expert, &q, err);
    if (!rc) {
        FILE *f = fopen(o->out, "w");
        if (!f) rc = moe_err_set(err, "%s: %s", o->out, strerror(errno));
        else {
            rc = route_write_placement(f, &r, t.min_layer, (int)o->ranks, err);
            if (fclose(f) && !rc) rc = moe_err_set(err, "%s: write failed", o->out);
        }
        if (!rc)
            printf("rebalance: %s policy, %d layers, %d experts into %d slots on %d ranks (%d nodes); wrote %s\n",
                   r.hierarchical ? "hierarchical" : "global", L, s.n_expert, r.n_phy, (int)o->ranks, (int)o->nodes,
                   o->out);
    }
    moe_eplb_result_free(&r);
    free(w);
    free(cnt);
    moe_trace_free(&t);
    return rc;
}

static int cmd_simulate(const opts *o, moe_err *err)
{
    if (!o->nodes || !o->rpn || o->link_gbps < 0 || o->latency_us < 0)
        return moe_err_set(err, "simulate needs --nodes, --ranks-per-node, --link-gbps and --latency-us");
    const int64_t R = o->nodes * o->rpn;
    if (R < 2 || R > MOE_PLACEMENT_MAX_RANKS)
        return moe_err_set(err, "simulate: %lld ranks (2..%d)", (long long)R, MOE_PLACEMENT_MAX_RANKS);
    moe_trace t;
    route_shape s;
    if (load_trace(o, &t, &s, err)) return MOE_ERR;
    int rc = MOE_OK;
    if (s.dim < 1) rc = moe_err_set(err, "simulate needs --model or --dim");
    route_calib cal;
    if (!rc) {
        if (o->calib) rc = route_calib_load(o->calib, &cal, err);
        else if (o->model) rc = route_calibrate(o->model, &cal, err);
        else rc = moe_err_set(err, "simulate needs --calib FILE or --model (to calibrate now)");
    }
    moe_placement *p = NULL;
    if (!rc) rc = route_placement(&p, &s, (int)R, o->placement, err);
    const bool rehome = o->rehome >= 0 ? o->rehome == 1 : t.max_rank + 1 != R;
    moe_sim_cfg c = {p, (int)o->rpn, s.dim, (int)o->batch, rehome, 0, o->link_gbps, o->latency_us, cal.memcpy_gbps,
                     cal.expert_call_us, cal.expert_row_us, NULL};
    /* with the model: the rows its int8 path dispatches, per layer */
    uint64_t *disp_row = NULL;
    if (!rc && o->model && !o->exact) {
        moe_model *m = NULL;
        rc = moe_model_open(&m, o->model, err);
        if (!rc && m->hp.n_used != t.k)
            rc = moe_err_set(err, "%s: the trace's rows have %d experts each, the model routes to %d", o->model, t.k,
                             m->hp.n_used);
        if (!rc) {
            disp_row = moe_xcalloc((size_t)m->hp.n_layer, sizeof *disp_row);
            for (int il = m->hp.n_dense_lead; il < m->hp.n_layer; il++)
                disp_row[il] = moe_model_dispatch_row_bytes(m, il, true);
            c.disp_row = disp_row;
        }
        if (m) moe_model_free(m);
    }
    moe_sim_result r = {0}, r0 = {0};
    if (!rc && o->node_limit > 0) { /* the recorded routing first, to compare with */
        rc = moe_sim_run(&t, &c, &r0, err);
        c.node_limit = (int)o->node_limit;
    }
    if (!rc) rc = moe_sim_run(&t, &c, &r, err);
    if (!rc) {
        const int L = t.max_layer - t.min_layer + 1;
        printf("simulate: %lld ranks (%lld nodes x %lld), placement %s, %zu rows (%d MoE layers), %d tokens a step, "
               "homes %s\n", (long long)R, (long long)o->nodes, (long long)o->rpn,
               o->placement ? o->placement : "contiguous", t.n, L, c.batch, rehome ? "req mod ranks" : "as recorded");
        printf("dispatch rows: %s\n", disp_row ? "the int8 path's (quantized to the experts' dot type)" : "float");
        printf("constants: expert_call_us %.4g  expert_row_us %.4g  memcpy_gbps %.4g  link_gbps %.4g  latency_us %.4g\n",
               cal.expert_call_us, cal.expert_row_us, cal.memcpy_gbps, o->link_gbps, o->latency_us);
        double *pl = moe_xmalloc((size_t)R * sizeof *pl);
        uint64_t mn = UINT64_MAX, mx = 0, tot = 0;
        for (int k = 0; k < R; k++) {
            pl[k] = (double)r.rank_pairs[k];
            tot += r.rank_pairs[k];
            mn = r.rank_pairs[k] < mn ? r.rank_pairs[k] : mn;
            mx = r.rank_pairs[k] > mx ? r.rank_pairs[k] : mx;
        }
        if (R <= 64) {
            printf("%-6s %12s %8s %14s\n", "rank", "pairs", "share", "bytes_sent");
            for (int k = 0; k < R; k++)
                printf("%-6d %12llu %7.2f%% %14llu\n", k, (unsigned long long)r.rank_pairs[k],
                       tot ? 100.0 * (double)r.rank_pairs[k] / (double)tot : 0.0, (unsigned long long)r.rank_sent[k]);
        }
        printf("expert load a rank: min %llu mean %.1f max %llu; balancedness %.4f\n", (unsigned long long)mn,
               (double)tot / (double)R, (unsigned long long)mx, route_balancedness(pl, (int)R));
        free(pl);
        const double rows = (double)r.rows;
        printf("bytes: dispatch %llu (intra %llu, inter %llu), combine %llu (intra %llu, inter %llu)\n",
               (unsigned long long)(r.disp_intra + r.disp_inter), (unsigned long long)r.disp_intra,
               (unsigned long long)r.disp_inter, (unsigned long long)(r.comb_intra + r.comb_inter),
               (unsigned long long)r.comb_intra, (unsigned long long)r.comb_inter);
        printf("bytes a token a layer: dispatch %.1f, combine %.1f, inter-node %.1f of %.1f\n",
               (double)(r.disp_intra + r.disp_inter) / rows, (double)(r.comb_intra + r.comb_inter) / rows,
               (double)(r.disp_inter + r.comb_inter) / rows,
               (double)(r.disp_intra + r.disp_inter + r.comb_intra + r.comb_inter) / rows);
        if (o->node_limit > 0) {
            const uint64_t b0 = r0.disp_intra + r0.disp_inter + r0.comb_intra + r0.comb_inter,
                           b1 = r.disp_intra + r.disp_inter + r.comb_intra + r.comb_inter;
            const uint64_t i0 = r0.disp_inter + r0.comb_inter, i1 = r.disp_inter + r.comb_inter;
            printf("node limit %lld (an estimate: the figures above are with it): without it dispatch %llu, combine "
                   "%llu bytes (inter-node %llu); saved %.1f%% of all bytes, %.1f%% of inter-node bytes; step %.3f -> "
                   "%.3f ms\n",
                   (long long)o->node_limit, (unsigned long long)(r0.disp_intra + r0.disp_inter),
                   (unsigned long long)(r0.comb_intra + r0.comb_inter), (unsigned long long)i0,
                   b0 ? 100.0 * ((double)b0 - (double)b1) / (double)b0 : 0.0,
                   i0 ? 100.0 * ((double)i0 - (double)i1) / (double)i0 : 0.0,
                   (r0.t_compute + r0.t_net) / ((double)r0.steps / L) * 1e3,
                   (r.t_compute + r.t_net) / ((double)r.steps / L) * 1e3);
        }
        const double steps = (double)r.steps / L, step_s = (r.t_compute + r.t_net) / steps;
        printf("projected: %.0f steps of %d tokens; a step %.3f ms (experts %.3f ms, exchange %.3f ms) over %d MoE "
               "layers; %.0f tokens/s\n", steps, c.batch, step_s * 1e3, r.t_compute / steps * 1e3, r.t_net / steps * 1e3,
               L, (rows / L) / (r.t_compute + r.t_net));
    }
    moe_sim_result_free(&r);
    moe_sim_result_free(&r0);
    free(disp_row);
    moe_placement_free(p);
    moe_trace_free(&t);
    return rc;
}

static int cmd_calibrate(const opts *o, moe_err *err)
{
    if (!o->model) return moe_err_set(err, "calibrate needs --model");
    route_calib c;
    if (route_calibrate(o->model, &c, err)) return MOE_ERR;
    printf("expert_call_us %.4g\nexpert_row_us %.4g\nmemcpy_gbps %.4g\n", c.expert_call_us, c.expert_row_us,
           c.memcpy_gbps);
    return o->out ? route_calib_write(o->out, &c, err) : MOE_OK;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
    opts o;
    moe_err err = {0};
    int rc;
    if (parse(argc, argv, &o, &err)) rc = MOE_ERR;
    else if (!strcmp(o.cmd, "stats")) rc = cmd_stats(&o, &err);
    else if (!strcmp(o.cmd, "rebalance")) rc = cmd_rebalance(&o, &err);
    else if (!strcmp(o.cmd, "simulate")) rc = cmd_simulate(&o, &err);
    else if (!strcmp(o.cmd, "calibrate")) rc = cmd_calibrate(&o, &err);
    else if (!strcmp(o.cmd, "eplb")) {
        rc = !o.arg1 || !o.arg2 ? moe_err_set(&err, "eplb needs IN.jsonl and OUT.jsonl")
                                : route_eplb_jsonl(o.arg1, o.arg2, &err);
    } else rc = moe_err_set(&err, "unknown command '%s'; see --help", o.cmd);
    if (rc) {
        fprintf(stderr, "moe-route: %s\n", err.msg);
        return 1;
    }
    return 0;
}
