/*
 * place.c — the routing shape of a run, placements, and the placement file
 * of an EPLB result.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "route.h"

int route_shape_get(route_shape *s, const char *model, const moe_trace *t, int n_expert, int n_group, int dim,
                    moe_err *err)
{
    memset(s, 0, sizeof *s);
    if (model) {
        moe_model *m;
        if (moe_model_open(&m, model, err)) return MOE_ERR;
        s->n_layer = m->hp.n_layer;
        s->first_moe = m->hp.n_dense_lead;
        s->n_expert = m->hp.n_expert;
        s->n_group = m->hp.n_group > 1 ? m->hp.n_group : 1;
        s->dim = m->hp.dim;
        moe_model_free(m);
        if (t && (t->min_layer < s->first_moe || t->max_layer >= s->n_layer || t->max_expert >= s->n_expert))
            return moe_err_set(err, "%s: the trace (layers %d..%d, expert ids up to %d) is not of this model "
                                    "(MoE layers %d..%d, %d experts)", model, t->min_layer, t->max_layer, t->max_expert,
                               s->first_moe, s->n_layer - 1, s->n_expert);
        return MOE_OK;
    }
    if (!t) return moe_err_set(err, "no model and no trace to take the shape from");
    s->n_layer = t->max_layer + 1;
    s->first_moe = t->min_layer;
    s->n_expert = n_expert > 0 ? n_expert : t->max_expert + 1;
    if (s->n_expert <= t->max_expert)
        return moe_err_set(err, "--experts %d, but the trace names expert %d", s->n_expert, t->max_expert);
    s->n_group = n_group > 0 ? n_group : 1;
    s->dim = dim;
    return MOE_OK;
}

int route_placement(moe_placement **out, const route_shape *s, int n_rank, const char *path, moe_err *err)
{
    moe_placement_shape ps = {s->n_layer, s->first_moe, s->n_expert, n_rank};
    return path ? moe_placement_load(out, &ps, path, err) : moe_placement_contiguous(out, &ps, err);
}

int route_write_placement(FILE *f, const moe_eplb_result *r, int first_layer, int n_rank, moe_err *err)
{
    if (n_rank < 1 || r->n_phy % n_rank) return moe_err_set(err, "placement: %d slots on %d ranks", r->n_phy, n_rank);
    const int per = r->n_phy / n_rank;
    fprintf(f, "# moe-route rebalance: EPLB (%s policy), %d slots a layer on %d ranks (%d a rank)\n",
            r->hierarchical ? "hierarchical" : "global", r->n_phy, n_rank, per);
    fprintf(f, "# layer rank experts; '#phy2log layer: ...' lines give every slot's expert in slot order\n");
    int dup = 0;
    uint8_t *seen = moe_xcalloc((size_t)r->n_log, 1);
    for (int l = 0; l < r->n_layer; l++) {
        const int32_t *p2l = r->phy2log + (size_t)l * (size_t)r->n_phy;
        fprintf(f, "#phy2log %d:", first_layer + l);
        for (int p = 0; p < r->n_phy; p++) fprintf(f, " %d", p2l[p]);
        fputc('\n', f);
        for (int k = 0; k < n_rank; k++) {
            memset(seen, 0, (size_t)r->n_log);
            fprintf(f, "%d %d", first_layer + l, k);
            for (int q = 0; q < per; q++) {
                const int e = p2l[k * per + q];
                if (seen[e]++) {
                    dup++;
                    continue;
                }
                fprintf(f, " %d", e);
            }
            fputc('\n', f);
        }
    }
    free(seen);
    if (dup)
        fprintf(f, "# %d slot(s) hold an expert its rank already hosts: a rank runs an expert once, so those "
                   "slots are listed once\n", dup);
    if (ferror(f)) return moe_err_set(err, "placement: write failed");
    return MOE_OK;
}
