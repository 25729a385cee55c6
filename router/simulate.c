/*
 * simulate.c — trace replay and cost model (see simulate.h).
 */
#include "simulate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void moe_sim_result_free(moe_sim_result *r)
{
    free(r->rank_pairs);
    free(r->rank_sent);
    memset(r, 0, sizeof *r);
}

static int check_cfg(const moe_trace *t, const moe_sim_cfg *c, moe_err *err)
{
    const moe_placement_shape *s = moe_placement_shape_of(c->p);
    if (c->ranks_per_node < 1 || s->n_rank % c->ranks_per_node)
        return moe_err_set(err, "simulate: %d ranks do not divide into nodes of %d", s->n_rank, c->ranks_per_node);
    if (c->dim < 1 || c->dim > (1 << 20)) return moe_err_set(err, "simulate: hidden size %d", c->dim);
    if (c->batch < 1) return moe_err_set(err, "simulate: batch %d", c->batch);
    if (c->node_limit < 0 || c->node_limit > s->n_rank / c->ranks_per_node)
        return moe_err_set(err, "simulate: node limit %d is not in 0..%d nodes", c->node_limit, s->n_rank / c->ranks_per_node);
    const double v[5] = {c->link_gbps, c->latency_us, c->memcpy_gbps, c->expert_call_us, c->expert_row_us};
    for (int i = 0; i < 5; i++)
        if (!isfinite(v[i]) || v[i] < 0 || ((i == 0 || i == 2) && v[i] == 0))
            return moe_err_set(err, "simulate: cost constant %d is %g", i, v[i]);
    if (t->min_layer < s->first_moe || t->max_layer >= s->n_layer)
        return moe_err_set(err, "simulate: the trace has layers %d..%d, the placement's MoE layers are %d..%d",
                           t->min_layer, t->max_layer, s->first_moe, s->n_layer - 1);
    if (t->max_expert >= s->n_expert)
        return moe_err_set(err, "simulate: the trace names expert %d, the placement has %d", t->max_expert, s->n_expert);
    if ((uint64_t)s->n_rank * (uint64_t)s->n_expert > ((uint64_t)1 << 26))
        return moe_err_set(err, "simulate: %d ranks × %d experts is too large", s->n_rank, s->n_expert);
    if (!c->rehome)
        for (size_t i = 0; i < t->n; i++)
            if (t->home[i] >= s->n_rank)
                return moe_err_set(err, "simulate: the trace has home rank %d but the placement has %d ranks "
                                        "(rehome the sequences)", t->home[i], s->n_rank);
    return MOE_OK;
}

static double phase_time(const moe_sim_cfg *c, int R, const uint64_t *si, const uint64_t *so, const uint64_t *ri,
                         const uint64_t *ro)
{
    double worst = 0;
    for (int r = 0; r < R; r++) {
        const uint64_t inter = so[r] > ro[r] ? so[r] : ro[r], intra = si[r] > ri[r] ? si[r] : ri[r];
        double t = (double)inter * 8.0 / (c->link_gbps * 1e9) + (double)intra / (c->memcpy_gbps * 1e9);
        if (inter) t += c->latency_us * 1e-6;
        worst = t > worst ? t : worst;
    }
    return worst;
}

/* The node limit's estimate for one row (simulate.h): forced[j] is the
 * rank slot j runs on when its node was dropped, else -1 (the usual rule). */
static void limit_row(const moe_sim_cfg *c, int layer, int home, const int32_t *ids, const float *w, int K,
                      int32_t *forced)
{
    const int RPN = c->ranks_per_node;
    int node[MOE_TRACE_MAX_K], rank_of[MOE_TRACE_MAX_K];
    for (int j = 0; j < K; j++) {
        int n;
        const int32_t *h = moe_placement_hosts(c->p, layer, ids[j], &n);
        rank_of[j] = h[0];
        for (int a = 0; a < n; a++)
            if (h[a] / RPN == home / RPN) {
                rank_of[j] = h[a];
                break;
            }
        node[j] = rank_of[j] / RPN;
    }
    /* the row's nodes, each scored by its two best weights */
    int nodes[MOE_TRACE_MAX_K], nn = 0;
    float b1[MOE_TRACE_MAX_K], b2[MOE_TRACE_MAX_K];
    for (int j = 0; j < K; j++) {
        int k = 0;
        while (k < nn && nodes[k] != node[j]) k++;
        if (k == nn) nodes[nn] = node[j], b1[nn] = b2[nn] = -INFINITY, nn++;
        if (w[j] > b1[k]) b2[k] = b1[k], b1[k] = w[j];
        else if (w[j] > b2[k]) b2[k] = w[j];
    }
    bool keep[MOE_TRACE_MAX_K] = {false};
    int best_node = -1;
    for (int m = 0; m < c->node_limit && m < nn; m++) {
        int b = -1;
        float bs = 0;
        for (int k = 0; k < nn; k++) {
            if (keep[k]) continue;
            const float sc = b2[k] > -INFINITY ? b1[k] + b2[k] : b1[k];
            if (b < 0 || sc > bs || (sc == bs && nodes[k] < nodes[b])) b = k, bs = sc;
        }
        keep[b] = true;
        if (m == 0) best_node = b;
    }
    bool home_kept = false;
    for (int k = 0; k < nn; k++) home_kept |= keep[k] && nodes[k] == home / RPN;
    int fallback = -1; /* the first kept rank the row visits, else the best node's lowest */
    for (int j = 0; j < K && fallback < 0; j++)
        for (int k = 0; k < nn; k++)
            if (keep[k] && nodes[k] == node[j]) fallback = rank_of[j];
    if (fallback < 0) fallback = nodes[best_node] * RPN;
    for (int j = 0; j < K; j++) {
        int k = 0;
        while (nodes[k] != node[j]) k++;
        forced[j] = keep[k] ? -1 : home_kept ? home : fallback;
    }
}

int moe_sim_run(const moe_trace *t, const moe_sim_cfg *c, moe_sim_result *res, moe_err *err)
{
    memset(res, 0, sizeof *res);
    if (check_cfg(t, c, err)) return MOE_ERR;
    const moe_placement_shape *s = moe_placement_shape_of(c->p);
    const int R = s->n_rank, E = s->n_expert, K = t->k, RPN = c->ranks_per_node;
    const uint64_t disp_float = (uint64_t)(c->dim + K) * 4, comb_row = (uint64_t)c->dim * 4;
    res->n_rank = R;
    res->rank_pairs = moe_xcalloc((size_t)R, sizeof(uint64_t));
    res->rank_sent = moe_xcalloc((size_t)R, sizeof(uint64_t));

    /* rows grouped by layer, trace order kept (counting sort) */
    const int L = t->max_layer - t->min_layer + 1;
    size_t *off = moe_xcalloc((size_t)L + 1, sizeof *off), *idx = moe_xmalloc(t->n * sizeof *idx);
    for (size_t i = 0; i < t->n; i++) off[t->layer[i] - t->min_layer + 1]++;
    for (int l = 0; l < L; l++) off[l + 1] += off[l];
    size_t *fill = moe_xmalloc((size_t)L * sizeof *fill);
    memcpy(fill, off, (size_t)L * sizeof *fill);
    for (size_t i = 0; i < t->n; i++) idx[fill[t->layer[i] - t->min_layer]++] = i;
    free(fill);

    uint64_t *buf = moe_xcalloc((size_t)R * 8, sizeof *buf);
    uint64_t *d_si = buf, *d_so = buf + R, *d_ri = buf + 2 * R, *d_ro = buf + 3 * R;
    uint64_t *c_si = buf + 4 * R, *c_so = buf + 5 * R, *c_ri = buf + 6 * R, *c_ro = buf + 7 * R;
    uint64_t *pairs = moe_xcalloc((size_t)R, sizeof *pairs), *calls = moe_xcalloc((size_t)R, sizeof *calls);
    int64_t *sent = moe_xcalloc((size_t)R, sizeof *sent);
    uint32_t *stamp = moe_xcalloc((size_t)R * (size_t)E, sizeof *stamp); /* step that last counted (rank, expert) */
    int32_t slot_rank[MOE_TRACE_MAX_K];
    uint32_t step_id = 0; /* < 2^32: a step has a row, a row a line of > 16 bytes, a trace < 2^32 bytes */

    for (int l = 0; l < L; l++) {
        const int layer = t->min_layer + l;
        const uint64_t disp_row = c->disp_row ? c->disp_row[layer] : disp_float;
        for (size_t b0 = off[l]; b0 < off[l + 1]; b0 += (size_t)c->batch) {
            const size_t b1 = b0 + (size_t)c->batch < off[l + 1] ? b0 + (size_t)c->batch : off[l + 1];
            step_id++;
            memset(buf, 0, (size_t)R * 8 * sizeof *buf);
            memset(pairs, 0, (size_t)R * sizeof *pairs);
            memset(calls, 0, (size_t)R * sizeof *calls);
            memset(sent, 0, (size_t)R * sizeof *sent);
            for (size_t q = b0; q < b1; q++) {
                const size_t i = idx[q];
                const int home = c->rehome ? (int)(((t->req[i] % R) + R) % R) : t->home[i];
                const int32_t *ids = t->ids + i * (size_t)K;
                int32_t forced[MOE_TRACE_MAX_K];
                if (c->node_limit > 0) limit_row(c, layer, home, ids, t->w + i * (size_t)K, K, forced);
                for (int j = 0; j < K; j++) {
                    int n;
                    const int32_t *h = moe_placement_hosts(c->p, layer, ids[j], &n);
                    int pick = c->node_limit > 0 ? forced[j] : -1;
                    for (int a = 0; a < n && pick < 0; a++)
                        if (h[a] == home) pick = home;
                    for (int a = 0; a < n && pick < 0; a++)
                        for (int q2 = 0; q2 < j && pick < 0; q2++)
                            if (slot_rank[q2] == h[a]) pick = h[a];
                    if (pick < 0) {
                        pick = h[0];
                        for (int a = 1; a < n; a++)
                            if (sent[h[a]] < sent[pick]) pick = h[a];
                    }
                    slot_rank[j] = pick;
                    bool first = true;
                    for (int q2 = 0; q2 < j; q2++) first = first && slot_rank[q2] != pick;
                    if (first) sent[pick]++;
                    pairs[pick]++;
                    uint32_t *st = &stamp[(size_t)pick * (size_t)E + (size_t)ids[j]];
                    if (*st != step_id) {
                        *st = step_id;
                        calls[pick]++;
                    }
                    if (pick == home) continue;
                    const bool inter = pick / RPN != home / RPN;
                    (inter ? c_so : c_si)[pick] += comb_row;
                    (inter ? c_ro : c_ri)[home] += comb_row;
                    (inter ? &res->comb_inter : &res->comb_intra)[0] += comb_row;
                    res->rank_sent[pick] += comb_row;
                    if (!first) continue;
                    (inter ? d_so : d_si)[home] += disp_row;
                    (inter ? d_ro : d_ri)[pick] += disp_row;
                    (inter ? &res->disp_inter : &res->disp_intra)[0] += disp_row;
                    res->rank_sent[home] += disp_row;
                }
            }
            double comp = 0;
            for (int r = 0; r < R; r++) {
                const double tr = (double)calls[r] * c->expert_call_us * 1e-6 + (double)pairs[r] * c->expert_row_us * 1e-6;
                comp = tr > comp ? tr : comp;
                res->rank_pairs[r] += pairs[r];
            }
            res->t_compute += comp;
            res->t_net += phase_time(c, R, d_si, d_so, d_ri, d_ro) + phase_time(c, R, c_si, c_so, c_ri, c_ro);
            res->steps++;
        }
    }
    res->rows = t->n;
    free(off);
    free(idx);
    free(buf);
    free(pairs);
    free(calls);
    free(sent);
    free(stamp);
    return MOE_OK;
}
