/*
 * live.c — live placement changes (live.h).
 */
#include "live.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb.h"
#include "io.h"
#include "residency.h"

#define PLACEMENT_MAX_BYTES (16u << 20) /* a placement file's text */

struct moe_live {
    moe_live_opts o;
    moe_comm *c;
    const moe_model *m;
    moe_xchg *x;
    moe_engine *e;
    moe_placement **pl;
    moe_gate_limit *limits;   /* [L] node limit per MoE layer (node_limit > 0) */
    int32_t *lim_off, *lim_units; /* [L][E + 1], [L][E·R]: the limits' arrays */
    int me, R, first, L, E; /* L: MoE layers */
    int64_t *cum, *snap;    /* [L][E]: pairs run so far, summed over the ranks; at the last change */
    int64_t last_steps;     /* steps at the last change (or attempt) */
    int64_t applied;
    /* rank 0 */
    char *text;             /* a proposal not yet applied, or NULL */
    size_t text_len;
    uint64_t text_id;
    char *test_text;        /* the test hook's file, until its step */
    size_t test_len;
    void (*report)(void *ctx, const moe_live_result *r);
    void *report_ctx;
};

/* The node limit of each MoE layer from placement p (units: nodes of
 * ranks_per_node ranks), set into the engine. */
static void set_limits(moe_live *l, const moe_placement *p)
{
    if (l->o.node_limit <= 0) return;
    const int rpn = l->o.ranks_per_node, U = (l->R + rpn - 1) / rpn;
    for (int il = 0; il < l->L; il++) {
        int32_t *off = l->lim_off + (size_t)il * (size_t)(l->E + 1);
        int32_t *units = l->lim_units + (size_t)il * (size_t)l->E * (size_t)l->R;
        off[0] = 0;
        for (int e = 0; e < l->E; e++) {
            int n, k = off[e];
            const int32_t *h = moe_placement_hosts(p, l->first + il, e, &n);
            for (int i = 0; i < n; i++) {
                const int u = h[i] / rpn; /* hosts ascending: a node's ranks are adjacent */
                if (k == off[e] || units[k - 1] != u) units[k++] = u;
            }
            off[e + 1] = k;
        }
        l->limits[il] = (moe_gate_limit){.n_unit = U, .max_units = l->o.node_limit, .unit_off = off, .units = units};
        moe_engine_set_gate_limit(l->e, l->first + il, &l->limits[il]);
    }
    /* a sequence in flight straddles the change either way; a new one must
     * not start from latents the old routing computed */
    moe_engine_prefix_flush(l->e);
}

int moe_live_init(moe_live **out, const moe_live_opts *o, moe_comm *c, const moe_model *m, moe_engine *e,
                  moe_xchg *x, moe_placement **pl, moe_err *err)
{
    moe_live *l = moe_xcalloc(1, sizeof *l);
    l->o = *o;
    l->c = c;
    l->m = m;
    l->x = x;
    l->e = e;
    l->pl = pl;
    l->me = moe_comm_rank(c);
    l->R = moe_comm_size(c);
    l->first = m->hp.n_dense_lead;
    l->L = m->hp.n_layer - m->hp.n_dense_lead;
    l->E = m->hp.n_expert;
    l->cum = moe_xcalloc((size_t)l->L * (size_t)l->E, sizeof *l->cum);
    l->snap = moe_xcalloc((size_t)l->L * (size_t)l->E, sizeof *l->snap);
    *out = l;
    if (o->node_limit > 0) {
        if (o->ranks_per_node < 1 || (l->R + o->ranks_per_node - 1) / o->ranks_per_node > MOE_GATE_MAX_UNITS)
            return moe_err_set(err, "--ranks-per-node %d does not fit %d ranks", o->ranks_per_node, l->R);
        l->limits = moe_xcalloc((size_t)l->L, sizeof *l->limits);
        l->lim_off = moe_xcalloc((size_t)l->L * (size_t)(l->E + 1), sizeof *l->lim_off);
        l->lim_units = moe_xcalloc((size_t)l->L * (size_t)l->E * (size_t)l->R, sizeof *l->lim_units);
        set_limits(l, *pl);
    }
    if (o->rebalance_every > 0 && (l->E + o->rebalance_replicas) % l->R != 0)
        return moe_err_set(err, "--rebalance-replicas %d: %d experts + %d slots do not divide by %d ranks",
                           o->rebalance_replicas, l->E, o->rebalance_replicas, l->R);
    if (o->test_at_step >= 0 && l->me == 0 &&
        moe_file_read(o->test_file, PLACEMENT_MAX_BYTES, &l->test_text, &l->test_len, err))
        return moe_err_prefix(err, "--test-placement-at");
    return MOE_OK;
}

void moe_live_free(moe_live *l)
{
    if (!l) return;
    free(l->cum);
    free(l->snap);
    free(l->text);
    free(l->test_text);
    free(l->limits);
    free(l->lim_off);
    free(l->lim_units);
    free(l);
}

void moe_live_propose(moe_live *l, const char *text, size_t len, uint64_t id)
{
    free(l->text);
    l->text = moe_xmalloc(len + 1);
    memcpy(l->text, text, len);
    l->text[len] = 0;
    l->text_len = len;
    l->text_id = id;
}

void moe_live_set_report(moe_live *l, void (*report)(void *ctx, const moe_live_result *r), void *ctx)
{
    l->report = report;
    l->report_ctx = ctx;
}

int64_t moe_live_applied(const moe_live *l) { return l->applied; }

static bool live_pending(void *ctx, int64_t steps)
{
    moe_live *l = ctx;
    if (l->text) return true;
    if (l->test_text && steps >= l->o.test_at_step) return true;
    return l->o.rebalance_every > 0 && steps - l->last_steps >= l->o.rebalance_every;
}

char *moe_live_eplb_text(const int32_t *phy2log, int n_moe_layers, int first_moe, int n_phy, int n_rank, int n_expert,
                         size_t *len)
{
    char *s = NULL;
    FILE *f = open_memstream(&s, len);
    MOE_ASSERT(f != NULL); /* out of memory */
    bool *seen = moe_xmalloc((size_t)n_expert);
    const int per = n_phy / n_rank;
    fprintf(f, "# EPLB, %d slots a layer over %d ranks\n", n_phy, n_rank);
    for (int l = 0; l < n_moe_layers; l++)
        for (int r = 0; r < n_rank; r++) {
            memset(seen, 0, (size_t)n_expert);
            fprintf(f, "%d %d", first_moe + l, r);
            for (int p = r * per; p < (r + 1) * per; p++) {
                const int e = phy2log[(size_t)l * (size_t)n_phy + (size_t)p];
                if (seen[e]) continue; /* a rank runs an expert once */
                seen[e] = true;
                fprintf(f, " %d", e);
            }
            fputc('\n', f);
        }
    free(seen);
    const int closed = fclose(f); /* fails only out of memory */
    MOE_ASSERT(closed == 0);
    return s;
}

/* The automatic mode's placement from the window w [L][E]. */
static char *auto_text(moe_live *l, const int64_t *w, size_t *len, moe_err *err)
{
    const size_t n = (size_t)l->L * (size_t)l->E;
    float *wf = moe_xmalloc(n * sizeof *wf);
    for (size_t i = 0; i < n; i++) wf[i] = (float)w[i];
    const int G = l->m->hp.n_group > 1 && l->E % l->m->hp.n_group == 0 ? l->m->hp.n_group : 1;
    const moe_eplb_params prm = {.num_replicas = l->E + l->o.rebalance_replicas, .num_groups = G, .num_nodes = 1,
                                 .num_gpus = l->R};
    moe_eplb_result res;
    const int st = moe_eplb_rebalance(&res, wf, l->L, l->E, &prm, err);
    free(wf);
    if (st) return NULL;
    char *t = moe_live_eplb_text(res.phy2log, l->L, l->first, res.n_phy, l->R, l->E, len);
    moe_eplb_result_free(&res);
    return t;
}

static void live_apply(void *ctx, int64_t steps)
{
    moe_live *l = ctx;
    const double t0 = moe_now();
    const size_t n = (size_t)l->L * (size_t)l->E;
    /* 1. rank 0's proposal: the coordinator's, else the test hook's, else
     * empty, the automatic mode's turn */
    char *text = NULL;
    int64_t len = 0;
    uint64_t id = 0;
    const char *origin = "the automatic mode";
    if (l->me == 0) {
        if (l->text) {
            text = l->text, len = (int64_t)l->text_len, id = l->text_id;
            l->text = NULL;
            origin = "the coordinator";
        } else if (l->test_text && steps >= l->o.test_at_step) {
            text = l->test_text, len = (int64_t)l->test_len;
            l->test_text = NULL;
            origin = "--test-placement-at";
        }
    }
    int64_t hdr[2] = {(int64_t)id, l->me == 0 && text ? 1 : 0};
    moe_comm_sum_i64(l->c, hdr, 2); /* only rank 0 puts anything in */
    id = (uint64_t)hdr[0];
    const bool explicit_text = hdr[1] != 0;
    moe_comm_bcast_bytes(l->c, &text, &len);
    if (explicit_text && l->me != 0) origin = id ? "the coordinator" : "--test-placement-at";
    l->last_steps = steps;

    /* 2. the window */
    for (int il = 0; il < l->L; il++) {
        const moe_xchg_layer_stats *ls = moe_xchg_stats(l->x, l->first + il);
        for (int e = 0; e < l->E; e++) l->cum[(size_t)il * (size_t)l->E + (size_t)e] = (int64_t)ls->tokens_per_expert[e];
    }
    moe_comm_sum_i64(l->c, l->cum, (int)n);
    int64_t *w = moe_xmalloc(n * sizeof *w), pairs = 0;
    for (size_t i = 0; i < n; i++) pairs += w[i] = l->cum[i] - l->snap[i];

    moe_live_result res = {.id = id, .ok = false, .message = "", .step = steps, .bal_before = -1, .bal_after = -1};
    moe_err err = {{0}};
    moe_placement *np = NULL;
    int st = MOE_OK;
    if (!explicit_text) {
        free(text);
        text = NULL;
        size_t tl = 0;
        if (pairs == 0) { /* nothing ran: nothing to balance (every rank alike) */
            free(w);
            return;
        }
        text = auto_text(l, w, &tl, &err);
        len = (int64_t)tl;
        if (!text) st = MOE_ERR;
    }
    /* 3. checked whole on every rank before anything changes */
    if (st == MOE_OK) st = moe_placement_parse(&np, moe_placement_shape_of(*l->pl), text, (size_t)len, &err);
    if (st == MOE_OK) st = moe_xchg_set_placement(l->x, np, &err);
    const int bad = moe_comm_agree(l->c, st);
    if (bad >= 0) {
        if (l->me == 0) {
            fprintf(stderr, "moe-worker: placement from %s refused before step %lld: %s%s; the job keeps its placement\n",
                    origin, (long long)steps, bad == 0 ? "" : "another rank failed: ", bad == 0 ? err.msg : "");
            fflush(stderr);
        }
        if (np) moe_xchg_set_placement(l->x, *l->pl, &err); /* back to the old one (same shape) */
        moe_placement_free(np);
        res.message = bad == 0 ? err.msg : "another rank refused it";
        if (l->me == 0 && l->report) l->report(l->report_ctx, &res);
        free(text);
        free(w);
        return;
    }
    res.moved = moe_placement_moved(*l->pl, np);
    res.bal_before = moe_placement_balancedness(*l->pl, w);
    res.bal_after = moe_placement_balancedness(np, w);
    if (!explicit_text && (res.moved == 0 || !(res.bal_after > res.bal_before))) {
        /* the automatic mode moves experts only for a gain (every rank
         * decides alike: the same window, the same placements) */
        moe_xchg_set_placement(l->x, *l->pl, &err);
        moe_placement_free(np);
        if (l->me == 0) {
            fprintf(stderr, "moe-worker: the automatic mode keeps its placement before step %lld: EPLB's would give "
                            "rank balancedness %.4f, not better than %.4f\n",
                    (long long)steps, res.bal_after, res.bal_before);
            fflush(stderr);
        }
        memcpy(l->snap, l->cum, n * sizeof *l->snap); /* a fresh window */
        free(text);
        free(w);
        return;
    }
    /* 4. applied: memory follows, then the figures */
    res.ok = true;
    const uint64_t res_before = moe_residency_resident(l->m);
    uint64_t released = 0, loaded = 0;
    if (l->R > 1) moe_residency_host(l->m, np, l->me); /* the advice first: what is read in comes as it asks */
    moe_residency_move(l->m, *l->pl, np, l->me, &released, &loaded);
    const uint64_t res_after = moe_residency_resident(l->m);
    set_limits(l, np); /* the node limit follows the new placement (the answer may change) */
    moe_placement_free(*l->pl);
    *l->pl = np;
    memcpy(l->snap, l->cum, n * sizeof *l->snap);
    l->applied++;
    char line[512];
    int k = snprintf(line, sizeof line,
                     "moe-worker: rank %d: released %llu bytes of experts it no longer hosts, read in %llu; resident "
                     "expert bytes %llu -> %llu; %.1f ms\n",
                     l->me, (unsigned long long)released, (unsigned long long)loaded, (unsigned long long)res_before,
                     (unsigned long long)res_after, (moe_now() - t0) * 1e3);
    if (k >= (int)sizeof line) k = (int)sizeof line - 1;
    char *all = moe_comm_gather_bytes(l->c, line, k, NULL);
    if (l->me == 0) {
        fprintf(stderr,
                "moe-worker: placement from %s applied before step %lld: %lld of %lld experts moved; rank "
                "balancedness %.4f -> %.4f over the last %lld (token, expert) pairs\n%s",
                origin, (long long)steps, (long long)res.moved, (long long)n, res.bal_before, res.bal_after,
                (long long)pairs, all);
        fflush(stderr);
        if (l->report) l->report(l->report_ctx, &res);
    }
    free(all);
    free(text);
    free(w);
}

moe_job_ctl moe_live_ctl(moe_live *l) { return (moe_job_ctl){.pending = live_pending, .apply = live_apply, .ctx = l}; }
