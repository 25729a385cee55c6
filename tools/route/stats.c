/*
 * stats.c — moe-route stats: what a routing trace says about expert load.
 *
 * Per MoE layer (c_e = picks of expert e, T = tokens, K picks a token):
 *   balancedness   mean_e c_e / max_e c_e  (1 = even; 1/E = one expert)
 *   entropy        H = -Σ p_e log2 p_e, p_e = c_e / (T·K); also H / log2 E
 *   rank load      (token, expert) pairs a rank runs: the ranks the trace
 *                  recorded, or under a placement c_e split evenly over
 *                  e's replicas; its balancedness mean / max over ranks
 *   hot experts    the largest c_e, as a share of the layer's picks
 *   pairs          the expert pairs most often chosen by one token
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "exprec.h"
#include "route.h"

double route_balancedness(const double *load, int n)
{
    double sum = 0, max = 0;
    for (int i = 0; i < n; i++) {
        sum += load[i];
        max = load[i] > max ? load[i] : max;
    }
    return max > 0 ? sum / n / max : 1.0;
}

typedef struct pair_count {
    int a, b;
    uint32_t n;
} pair_count;

/* Indices of the `top` largest v (ties: lowest index), descending. */
static int top_of(const double *v, int n, int top, int *out)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (v[i] <= 0) continue;
        int at = k < top ? k++ : top;
        if (at == top) {
            if (v[i] <= v[out[top - 1]]) continue;
            at = top - 1;
        }
        while (at > 0 && v[out[at - 1]] < v[i]) {
            out[at] = out[at - 1];
            at--;
        }
        out[at] = i;
    }
    return k;
}

static void gnuplot_run(const char *script, const char *png)
{
    FILE *p = popen("gnuplot", "w");
    if (!p) {
        fprintf(stderr, "moe-route: cannot run gnuplot for %s: %s\n", png, strerror(errno));
        return;
    }
    fputs(script, p);
    int st = pclose(p);
    if (st) fprintf(stderr, "moe-route: gnuplot failed drawing %s (status %d)\n", png, st);
}

/* m: [rows][cols] shares; a heatmap layer × column. */
static int heatmap(const char *dir, const char *name, const char *title, const char *xlabel, const double *m,
                   int rows, int cols, int first_row, moe_err *err)
{
    char dat[4096], png[4096], script[16384];
    snprintf(dat, sizeof dat, "%s/%s.dat", dir, name);
    snprintf(png, sizeof png, "%s/%s.png", dir, name);
    FILE *f = fopen(dat, "w");
    if (!f) return moe_err_set(err, "%s: %s", dat, strerror(errno));
    fprintf(f, "# %s: rows = MoE layers %d.., columns = %s\n", title, first_row, xlabel);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) fprintf(f, c ? " %.6g" : "%.6g", m[(size_t)r * (size_t)cols + (size_t)c]);
        fputc('\n', f);
    }
    if (fclose(f)) return moe_err_set(err, "%s: write failed", dat);
    snprintf(script, sizeof script,
             "set terminal pngcairo size 1100,%d font ',10'\nset output '%s'\nset title '%s'\n"
             "set xlabel '%s'\nset ylabel 'MoE layer'\nset cblabel 'share of the layer''s load'\n"
             "set palette rgbformulae 21,22,23\nset xrange [-0.5:%d.5]\nset yrange [%d.5:%d.5] reverse\n"
             "plot '%s' matrix using 1:($2+%d):3 with image notitle\n",
             rows * 24 + 200 < 2000 ? rows * 24 + 200 : 2000, png, title, xlabel, cols - 1, first_row - 1,
             first_row + rows - 1, dat, first_row);
    gnuplot_run(script, png);
    return MOE_OK;
}

int route_stats(const moe_trace *t, const route_shape *s, const route_stats_opts *o, FILE *out, moe_err *err)
{
    const int E = s->n_expert, K = t->k, L = t->max_layer - t->min_layer + 1;
    const int R = o->p ? moe_placement_shape_of(o->p)->n_rank : t->max_rank + 1;
    if (o->p) {
        const moe_placement_shape *ps = moe_placement_shape_of(o->p);
        if (t->min_layer < ps->first_moe || t->max_layer >= ps->n_layer || ps->n_expert != E)
            return moe_err_set(err, "stats: the trace (layers %d..%d) does not fit the placement (MoE layers %d..%d, %d experts)",
                               t->min_layer, t->max_layer, ps->first_moe, ps->n_layer - 1, ps->n_expert);
    } else if (R > MOE_PLACEMENT_MAX_RANKS) {
        return moe_err_set(err, "stats: %d ranks", R);
    }
    uint64_t *cnt = moe_trace_counts(t, E, err);
    if (!cnt) return MOE_ERR;
    if (o->png_dir && mkdir(o->png_dir, 0755) && errno != EEXIST) {
        free(cnt);
        return moe_err_set(err, "%s: %s", o->png_dir, strerror(errno));
    }
    /* rows per layer, and the recorded rank loads */
    uint64_t *tok = moe_xcalloc((size_t)L, sizeof *tok);
    double *rank_load = moe_xcalloc((size_t)L * (size_t)R, sizeof *rank_load);
    for (size_t i = 0; i < t->n; i++) {
        const int l = t->layer[i] - t->min_layer;
        tok[l]++;
        if (!o->p)
            for (int j = 0; j < K; j++) rank_load[(size_t)l * (size_t)R + (size_t)t->ranks[i * (size_t)K + (size_t)j]]++;
    }
    if (o->p)
        for (int l = 0; l < L; l++)
            for (int e = 0; e < E; e++) {
                int n;
                const int32_t *h = moe_placement_hosts(o->p, t->min_layer + l, e, &n);
                for (int a = 0; a < n; a++)
                    rank_load[(size_t)l * (size_t)R + (size_t)h[a]] += (double)cnt[(size_t)l * (size_t)E + (size_t)e] / n;
            }

    /* co-activation: pairs within a token, per layer (E ≤ 1024) */
    const bool pairs_on = E <= 1024 && K >= 2;
    uint32_t *co = pairs_on ? moe_xcalloc((size_t)E * (size_t)E, sizeof *co) : NULL;
    size_t *lrow = moe_xmalloc(t->n * sizeof *lrow), *loff = moe_xcalloc((size_t)L + 1, sizeof *loff);
    for (size_t i = 0; i < t->n; i++) loff[t->layer[i] - t->min_layer + 1]++;
    for (int l = 0; l < L; l++) loff[l + 1] += loff[l];
    {
        size_t *fill = moe_xmalloc((size_t)L * sizeof *fill);
        memcpy(fill, loff, (size_t)L * sizeof *fill);
        for (size_t i = 0; i < t->n; i++) lrow[fill[t->layer[i] - t->min_layer]++] = i;
        free(fill);
    }

    const int top = o->top > 0 ? (o->top < 64 ? o->top : 64) : 5;
    double *load = moe_xmalloc((size_t)E * sizeof *load);
    double *share = moe_xcalloc((size_t)L * (size_t)E, sizeof *share);
    double *rshare = moe_xcalloc((size_t)L * (size_t)R, sizeof *rshare);
    int hot[64];
    double sum_be = 0, sum_br = 0, sum_h = 0;
    fprintf(out, "trace: %zu rows, %d MoE layers (%d..%d), %d experts a token, %d experts, %d ranks%s\n", t->n, L,
            t->min_layer, t->max_layer, K, E, R, o->p ? " (placement given)" : " (as recorded)");
    fprintf(out, "%-6s %8s %9s %8s %6s %9s  %s\n", "layer", "tokens", "bal_exp", "H_bits", "H/Hmax", "bal_rank",
            "hot experts (share of picks)");
    for (int l = 0; l < L; l++) {
        const uint64_t *c = cnt + (size_t)l * (size_t)E;
        double total = 0, h = 0;
        for (int e = 0; e < E; e++) {
            load[e] = (double)c[e];
            total += load[e];
        }
        for (int e = 0; e < E; e++)
            if (c[e]) {
                const double p = load[e] / total;
                h -= p * log2(p);
                share[(size_t)l * (size_t)E + (size_t)e] = p;
            }
        const double be = route_balancedness(load, E), br = route_balancedness(rank_load + (size_t)l * (size_t)R, R);
        double rt = 0;
        for (int r = 0; r < R; r++) rt += rank_load[(size_t)l * (size_t)R + (size_t)r];
        for (int r = 0; r < R; r++)
            rshare[(size_t)l * (size_t)R + (size_t)r] = rt > 0 ? rank_load[(size_t)l * (size_t)R + (size_t)r] / rt : 0;
        const double hmax = E > 1 ? log2((double)E) : 1;
        sum_be += be;
        sum_br += br;
        sum_h += h;
        fprintf(out, "%-6d %8llu %9.4f %8.3f %6.3f %9.4f ", t->min_layer + l, (unsigned long long)tok[l], be, h,
                h / hmax, br);
        const int nh = top_of(load, E, top, hot);
        for (int k = 0; k < nh; k++) fprintf(out, " e%d %.1f%%", hot[k], 100.0 * load[hot[k]] / total);
        fputc('\n', out);
    }
    fprintf(out, "%-6s %8s %9.4f %8.3f %6s %9.4f  (means over layers)\n", "all", "", sum_be / L, sum_h / L, "",
            sum_br / L);

    if (pairs_on) {
        fprintf(out, "\nco-activated pairs (tokens choosing both; share of the layer's tokens):\n");
        pair_count *best = moe_xmalloc((size_t)top * sizeof *best);
        for (int l = 0; l < L; l++) {
            memset(co, 0, (size_t)E * (size_t)E * sizeof *co);
            for (size_t q = loff[l]; q < loff[l + 1]; q++) {
                const int32_t *ids = t->ids + lrow[q] * (size_t)K;
                for (int a = 0; a < K; a++)
                    for (int b = a + 1; b < K; b++) co[(size_t)ids[a] * (size_t)E + (size_t)ids[b]]++;
            }
            int nb = 0;
            for (int a = 0; a < E; a++)
                for (int b = a + 1; b < E; b++) {
                    const uint32_t n = co[(size_t)a * (size_t)E + (size_t)b];
                    if (!n || (nb == top && n <= best[top - 1].n)) continue;
                    int at = nb < top ? nb++ : top - 1;
                    while (at > 0 && best[at - 1].n < n) {
                        best[at] = best[at - 1];
                        at--;
                    }
                    best[at] = (pair_count){a, b, n};
                }
            fprintf(out, "%-6d", t->min_layer + l);
            for (int k = 0; k < nb; k++)
                fprintf(out, "  %d+%d %u (%.1f%%)", best[k].a, best[k].b, best[k].n, 100.0 * best[k].n / (double)tok[l]);
            fputc('\n', out);
        }
        free(best);
    }

    fprintf(out, "\nrank load, all layers ((token, expert) pairs):\n%-6s %12s %8s\n", "rank", "pairs", "share");
    double all = 0;
    double *rl = moe_xcalloc((size_t)R, sizeof *rl);
    for (int l = 0; l < L; l++)
        for (int r = 0; r < R; r++) rl[r] += rank_load[(size_t)l * (size_t)R + (size_t)r];
    for (int r = 0; r < R; r++) all += rl[r];
    for (int r = 0; r < R; r++) fprintf(out, "%-6d %12.1f %7.2f%%\n", r, rl[r], all > 0 ? 100.0 * rl[r] / all : 0.0);
    fprintf(out, "balancedness over ranks, all layers: %.4f\n", route_balancedness(rl, R));
    free(rl);

    int rc = MOE_OK;
    if (o->png_dir) {
        rc = heatmap(o->png_dir, "expert_load", "expert load (share of picks)", "expert", share, L, E, t->min_layer, err);
        if (!rc) rc = heatmap(o->png_dir, "rank_load", "rank load (share of pairs)", "rank", rshare, L, R, t->min_layer, err);
    }
    free(cnt);
    free(tok);
    free(rank_load);
    free(co);
    free(lrow);
    free(loff);
    free(load);
    free(share);
    free(rshare);
    return rc;
}

/* A stat record (core/exprec): counts per window, layer and expert, no
 * rows: the expert columns of the table over all windows, then the expert
 * balancedness of each window (mean over layers). */
int route_stats_record(const moe_exprec_file *f, int top_n, FILE *out, moe_err *err)
{
    if (f->mode != MOE_EXPREC_STAT) return moe_err_set(err, "stats: not a stat record");
    const int L = f->shape.layers, E = f->shape.experts, K = f->shape.top_k;
    const int top = top_n > 0 ? (top_n < 64 ? top_n : 64) : 5;
    double *load = moe_xmalloc((size_t)E * sizeof *load);
    int hot[64];
    fprintf(out, "record: stat, %llu windows of %u steps from step %llu, %d MoE layers (%d..%d), %d experts a token, "
                 "%d experts, %d ranks, %llu rows dropped\n",
            (unsigned long long)f->records, f->window_steps, (unsigned long long)f->first_step, L, f->shape.first_layer,
            f->shape.first_layer + L - 1, K, E, f->shape.ranks, (unsigned long long)f->dropped);
    fprintf(out, "%-6s %8s %9s %8s %6s  %s\n", "layer", "tokens", "bal_exp", "H_bits", "H/Hmax", "hot experts (share of picks)");
    double sum_be = 0, sum_h = 0;
    const double hmax = E > 1 ? log2((double)E) : 1;
    for (int l = 0; l < L; l++) {
        double total = 0, h = 0;
        for (int e = 0; e < E; e++) {
            load[e] = 0;
            for (uint64_t w = 0; w < f->records; w++) load[e] += (double)moe_exprec_count(f, w, l, e);
            total += load[e];
        }
        for (int e = 0; e < E; e++)
            if (load[e] > 0) h -= load[e] / total * log2(load[e] / total);
        const double be = route_balancedness(load, E);
        sum_be += be;
        sum_h += h;
        fprintf(out, "%-6d %8.0f %9.4f %8.3f %6.3f ", f->shape.first_layer + l, total / K, be, h, h / hmax);
        const int nh = top_of(load, E, top, hot);
        for (int k = 0; k < nh; k++) fprintf(out, " e%d %.1f%%", hot[k], 100.0 * load[hot[k]] / total);
        fputc('\n', out);
    }
    fprintf(out, "%-6s %8s %9.4f %8.3f  (means over layers)\n", "all", "", sum_be / L, sum_h / L);
    fprintf(out, "\nper window (first step: tokens, expert balancedness as the mean over layers):\n");
    for (uint64_t w = 0; w < f->records; w++) {
        double be = 0, picks = 0;
        for (int l = 0; l < L; l++) {
            for (int e = 0; e < E; e++) {
                load[e] = (double)moe_exprec_count(f, w, l, e);
                picks += load[e];
            }
            be += route_balancedness(load, E);
        }
        fprintf(out, "%llu: %.0f %.4f\n", (unsigned long long)(f->first_step + w * f->window_steps), picks / K / L,
                be / L);
    }
    free(load);
    return MOE_OK;
}
