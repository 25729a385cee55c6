/*
 * trace.h — routing traces as `moe-worker --trace FILE` writes them
 * (worker/xchg.c), read back for the tools (moe-route):
 *
 *   layer req pos home e1,e2,..,eK w1,..,wK r1,..,rK
 *
 * one line per (token, MoE layer): the block index, the request number,
 * the token's position, the home rank (where the sequence lives), the K
 * chosen experts ascending, their gate weights, and the rank that ran each.
 * Ranks append whole lines to one file, so lines of different ranks
 * interleave; a rank's own lines keep their order.
 *
 * Everything is checked: K the same on every line (1..MOE_TRACE_MAX_K),
 * layers, experts and ranks in range, weights finite; the first bad line
 * is named in the error.
 */
#ifndef MOE_ROUTER_TRACE_H
#define MOE_ROUTER_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

#define MOE_TRACE_MAX_K 64
#define MOE_TRACE_MAX_LAYER 4095
#define MOE_TRACE_MAX_EXPERT ((1 << 16) - 1)
#define MOE_TRACE_MAX_RANK 4095
#define MOE_TRACE_MAX_BYTES ((size_t)1 << 32)

typedef struct moe_trace {
    size_t n;                 /* rows (token × layer) */
    int k;                    /* experts per row */
    int min_layer, max_layer; /* block indices seen */
    int max_expert;           /* largest expert id seen */
    int max_rank;             /* largest home or expert rank seen */
    int32_t *layer;           /* [n] */
    int64_t *req, *pos;       /* [n] */
    int32_t *home;            /* [n] */
    int32_t *ids;             /* [n × k] ascending per row */
    float *w;                 /* [n × k] */
    int32_t *ranks;           /* [n × k] */
} moe_trace;

/* Parses trace text (need not be NUL-terminated); a trace with no rows is
 * an error. */
int moe_trace_parse(moe_trace *t, const char *text, size_t len, moe_err *err);
/* A per_token expert record (core/exprec.h: the recorder's binary file)
 * as a trace: the same rows, the same checks. */
int moe_trace_from_record(moe_trace *t, const uint8_t *buf, size_t len, moe_err *err);
/* A text trace, or a per_token record (told apart by the record's magic). */
int moe_trace_load(moe_trace *t, const char *path, moe_err *err);
void moe_trace_free(moe_trace *t);

/*
 * Load matrix: counts[(l - min_layer) × n_expert + e] = rows of layer l that
 * chose expert e, for l in [min_layer, max_layer].  n_expert must exceed
 * every id in the trace.  Returns the array (caller frees) or NULL with err.
 */
uint64_t *moe_trace_counts(const moe_trace *t, int n_expert, moe_err *err);

#endif
