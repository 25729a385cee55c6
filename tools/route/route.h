/*
 * route.h — moe-route's parts (docs/routing.md is the manual):
 *   shape      the model's routing shape, from the GGUF file or from the
 *              trace and flags;
 *   stats      per layer expert load, balancedness, entropy, hot experts,
 *              co-activated pairs, per-rank load; heatmaps through gnuplot;
 *   rebalance  a trace's load matrix through router/eplb into a placement
 *              file the worker reads (plus the full physical map);
 *   eplb       eplb.py's interface over JSON lines, for cross-checks;
 *   calibrate  this machine's cost constants for router/simulate.
 */
#ifndef MOE_TOOLS_ROUTE_H
#define MOE_TOOLS_ROUTE_H

#include <stdbool.h>
#include <stdio.h>

#include "base.h"
#include "eplb.h"
#include "placement.h"
#include "trace.h"

typedef struct route_shape {
    int n_layer, first_moe, n_expert, n_group, dim;
} route_shape;

/* From the model file when model is non-NULL, else from the trace: blocks
 * up to its last layer, MoE from its first, experts = n_expert (0: the
 * largest id + 1), groups = n_group (0: 1), dim (0: unknown). */
int route_shape_get(route_shape *s, const char *model, const moe_trace *t, int n_expert, int n_group, int dim,
                    moe_err *err);

/* A placement for n_rank ranks: the file, or contiguous blocks. */
int route_placement(moe_placement **out, const route_shape *s, int n_rank, const char *path, moe_err *err);

typedef struct route_stats_opts {
    const moe_placement *p; /* NULL: the ranks recorded in the trace */
    int top;                /* hot experts and pairs listed per layer */
    const char *png_dir;    /* NULL: no heatmaps */
} route_stats_opts;

struct moe_exprec_file;
/* moe-route stats of a stat record (core/exprec.h): the expert columns of
 * the table over all its windows, then each window's balancedness. */
int route_stats_record(const struct moe_exprec_file *f, int top, FILE *out, moe_err *err);
int route_stats(const moe_trace *t, const route_shape *s, const route_stats_opts *o, FILE *out, moe_err *err);

/* Balancedness of a load vector: mean / max (1 = perfectly even; 1 when
 * all zero). */
double route_balancedness(const double *load, int n);

/* Writes the placement file of an EPLB result: rank r holds slots
 * [r·P/R, (r+1)·P/R) of each layer (first_layer + l); a slot's expert
 * hosted twice on one rank is listed once; comment lines give phy2log. */
int route_write_placement(FILE *f, const moe_eplb_result *r, int first_layer, int n_rank, moe_err *err);

int route_eplb_jsonl(const char *in_path, const char *out_path, moe_err *err);

typedef struct route_calib {
    double expert_call_us, expert_row_us, memcpy_gbps;
} route_calib;

int route_calibrate(const char *model, route_calib *c, moe_err *err);
int route_calib_load(const char *path, route_calib *c, moe_err *err);
int route_calib_write(const char *path, const route_calib *c, moe_err *err);

#endif
