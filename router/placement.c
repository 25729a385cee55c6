/*
 * placement.c — expert placement tables and dispatch plans.
 *
 * Storage: for each MoE layer and expert, the sorted list of hosting ranks
 * in one CSR array (offsets + ranks), built from a per-layer bitset while
 * parsing, so lookups are O(replicas) and memory O(layers × experts × replicas).
 */
#include "placement.h"

#include "io.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct moe_placement {
    moe_placement_shape shape;
    int n_moe;          /* MoE layers */
    int32_t *offset;    /* [n_moe × n_expert + 1] */
    int32_t *ranks;     /* [offset[end]] */
};

static int check_shape(const moe_placement_shape *s, moe_err *err)
{
    if (s->n_layer < 1 || s->first_moe < 0 || s->first_moe >= s->n_layer)
        return moe_err_set(err, "placement: no MoE layers (%d blocks, %d dense)", s->n_layer, s->first_moe);
    if (s->n_expert < 1 || s->n_expert > (1 << 20)) return moe_err_set(err, "placement: %d experts", s->n_expert);
    if (s->n_rank < 1 || s->n_rank > MOE_PLACEMENT_MAX_RANKS)
        return moe_err_set(err, "placement: %d ranks (1..%d)", s->n_rank, MOE_PLACEMENT_MAX_RANKS);
    size_t cells;
    if (!moe_mul_size((size_t)(s->n_layer - s->first_moe), (size_t)s->n_expert, &cells) ||
        !moe_mul_size(cells, (size_t)s->n_rank, &cells) || cells > ((size_t)1 << 32))
        return moe_err_set(err, "placement: %d layers × %d experts × %d ranks is too large", s->n_layer - s->first_moe,
                           s->n_expert, s->n_rank);
    return MOE_OK;
}

/* Turns a [n_moe][n_expert][n_rank] byte map into the CSR lists. */
static int build(moe_placement **out, const moe_placement_shape *s, const uint8_t *map, moe_err *err)
{
    const int n_moe = s->n_layer - s->first_moe;
    const size_t n_cells = (size_t)n_moe * (size_t)s->n_expert;
    moe_placement *p = moe_xcalloc(1, sizeof *p);
    p->shape = *s;
    p->n_moe = n_moe;
    p->offset = moe_xmalloc((n_cells + 1) * sizeof *p->offset);
    size_t total = 0;
    for (size_t c = 0; c < n_cells; c++) {
        p->offset[c] = (int32_t)total;
        size_t here = 0;
        for (int r = 0; r < s->n_rank; r++) here += map[c * (size_t)s->n_rank + (size_t)r];
        if (here == 0) {
            int layer = s->first_moe + (int)(c / (size_t)s->n_expert), e = (int)(c % (size_t)s->n_expert);
            free(p->offset);
            free(p);
            return moe_err_set(err, "placement: expert %d of layer %d is on no rank", e, layer);
        }
        total += here;
    }
    if (total > INT32_MAX) {
        free(p->offset);
        free(p);
        return moe_err_set(err, "placement: too many replicas");
    }
    p->offset[n_cells] = (int32_t)total;
    p->ranks = moe_xmalloc((total ? total : 1) * sizeof *p->ranks);
    size_t k = 0;
    for (size_t c = 0; c < n_cells; c++)
        for (int r = 0; r < s->n_rank; r++)
            if (map[c * (size_t)s->n_rank + (size_t)r]) p->ranks[k++] = r;
    *out = p;
    return MOE_OK;
}

int moe_placement_contiguous(moe_placement **out, const moe_placement_shape *s, moe_err *err)
{
    *out = NULL;
    if (check_shape(s, err)) return MOE_ERR;
    if (s->n_rank > s->n_expert)
        return moe_err_set(err, "placement: %d ranks but only %d experts; give a placement file to replicate experts",
                           s->n_rank, s->n_expert);
    const int n_moe = s->n_layer - s->first_moe;
    uint8_t *map = moe_xcalloc((size_t)n_moe * (size_t)s->n_expert * (size_t)s->n_rank, 1);
    for (int l = 0; l < n_moe; l++)
        for (int e = 0; e < s->n_expert; e++) {
            /* rank r owns [r·E/R, (r+1)·E/R), so e belongs to floor(e·R/E) */
            int r = (int)(((int64_t)e * s->n_rank) / s->n_expert);
            map[((size_t)l * (size_t)s->n_expert + (size_t)e) * (size_t)s->n_rank + (size_t)r] = 1;
        }
    int rc = build(out, s, map, err);
    free(map);
    return rc;
}

/* ---- placement files ---------------------------------------------------------- */

typedef struct lexer {
    const char *p, *end;
    int line;
} lexer;

/* Next token on the current line (NULL at end of line); '#' ends the line. */
static const char *next_token(lexer *lx, size_t *len)
{
    while (lx->p < lx->end && (*lx->p == ' ' || *lx->p == '\t' || *lx->p == ',' || *lx->p == '\r')) lx->p++;
    if (lx->p >= lx->end || *lx->p == '\n' || *lx->p == '#') return NULL;
    const char *s = lx->p;
    while (lx->p < lx->end && !strchr(" \t,\r\n#", *lx->p)) lx->p++;
    *len = (size_t)(lx->p - s);
    return s;
}

static void skip_line(lexer *lx)
{
    while (lx->p < lx->end && *lx->p != '\n') lx->p++;
    if (lx->p < lx->end) lx->p++;
    lx->line++;
}

/* Parses a decimal in [0, hi] from s[0..len). */
static bool parse_uint(const char *s, size_t len, int hi, int *out)
{
    if (len == 0 || len > 9) return false;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > hi) return false;
    *out = v;
    return true;
}

int moe_placement_parse(moe_placement **out, const moe_placement_shape *s, const char *text, size_t len, moe_err *err)
{
    *out = NULL;
    if (check_shape(s, err)) return MOE_ERR;
    const int n_moe = s->n_layer - s->first_moe;
    uint8_t *map = moe_xcalloc((size_t)n_moe * (size_t)s->n_expert * (size_t)s->n_rank, 1);
    lexer lx = {text, text + len, 1};
    int rules = 0, rc = MOE_ERR;
    while (lx.p < lx.end) {
        size_t n;
        const char *t = next_token(&lx, &n);
        if (!t) {
            skip_line(&lx);
            continue;
        }
        int l0, l1, rank;
        if (n == 1 && t[0] == '*') {
            l0 = s->first_moe;
            l1 = s->n_layer - 1;
        } else if (parse_uint(t, n, INT32_MAX - 1, &l0)) {
            if (l0 < s->first_moe || l0 >= s->n_layer) {
                moe_err_set(err, "placement line %d: layer %d is not a MoE layer (MoE layers are %d..%d)", lx.line, l0,
                            s->first_moe, s->n_layer - 1);
                goto out;
            }
            l1 = l0;
        } else {
            moe_err_set(err, "placement line %d: expected a layer number or '*', got '%.*s'", lx.line, (int)(n > 40 ? 40 : n), t);
            goto out;
        }
        t = next_token(&lx, &n);
        if (!t || !parse_uint(t, n, INT32_MAX - 1, &rank)) {
            moe_err_set(err, "placement line %d: expected a rank after the layer", lx.line);
            goto out;
        }
        if (rank >= s->n_rank) {
            moe_err_set(err, "placement line %d: rank %d is out of range (the job has %d ranks)", lx.line, rank, s->n_rank);
            goto out;
        }
        int n_items = 0;
        while ((t = next_token(&lx, &n))) {
            const char *dash = memchr(t, '-', n);
            int e0, e1;
            bool ok = dash ? parse_uint(t, (size_t)(dash - t), INT32_MAX - 1, &e0) &&
                                 parse_uint(dash + 1, n - (size_t)(dash - t) - 1, INT32_MAX - 1, &e1)
                           : parse_uint(t, n, INT32_MAX - 1, &e0);
            if (!dash) e1 = e0;
            if (!ok || e1 < e0) {
                moe_err_set(err, "placement line %d: '%.*s' is not an expert id or range a-b", lx.line,
                            (int)(n > 40 ? 40 : n), t);
                goto out;
            }
            if (e1 >= s->n_expert) {
                moe_err_set(err, "placement line %d: expert %d is out of range (the model has %d experts)", lx.line, e1,
                            s->n_expert);
                goto out;
            }
            for (int l = l0; l <= l1; l++)
                for (int e = e0; e <= e1; e++)
                    map[((size_t)(l - s->first_moe) * (size_t)s->n_expert + (size_t)e) * (size_t)s->n_rank +
                        (size_t)rank] = 1;
            n_items++;
        }
        if (n_items == 0) {
            moe_err_set(err, "placement line %d: no experts listed", lx.line);
            goto out;
        }
        rules++;
        skip_line(&lx);
    }
    if (rules == 0) {
        moe_err_set(err, "placement: no rules");
        goto out;
    }
    rc = build(out, s, map, err);
out:
    free(map);
    return rc;
}

int moe_placement_load(moe_placement **out, const moe_placement_shape *s, const char *path, moe_err *err)
{
    *out = NULL;
    char *buf = NULL;
    size_t n = 0;
    if (moe_file_read(path, 64u << 20, &buf, &n, err)) return MOE_ERR;
    int rc = moe_placement_parse(out, s, buf, n, err);
    free(buf);
    if (rc) moe_err_prefix(err, "%s", path);
    return rc;
}

void moe_placement_free(moe_placement *p)
{
    if (!p) return;
    free(p->offset);
    free(p->ranks);
    free(p);
}

const moe_placement_shape *moe_placement_shape_of(const moe_placement *p) { return &p->shape; }

const int32_t *moe_placement_hosts(const moe_placement *p, int layer, int expert, int *n)
{
    MOE_ASSERT(layer >= p->shape.first_moe && layer < p->shape.n_layer && expert >= 0 && expert < p->shape.n_expert);
    size_t c = (size_t)(layer - p->shape.first_moe) * (size_t)p->shape.n_expert + (size_t)expert;
    *n = p->offset[c + 1] - p->offset[c];
    return p->ranks + p->offset[c];
}

bool moe_placement_rank_hosts(const moe_placement *p, int layer, int rank, int expert)
{
    int n;
    const int32_t *h = moe_placement_hosts(p, layer, expert, &n);
    for (int i = 0; i < n; i++)
        if (h[i] == rank) return true;
    return false;
}

int moe_placement_rank_experts(const moe_placement *p, int layer, int rank, int32_t *ids)
{
    int k = 0;
    for (int e = 0; e < p->shape.n_expert; e++)
        if (moe_placement_rank_hosts(p, layer, rank, e)) ids[k++] = e;
    return k;
}

/* ---- dispatch plans ---------------------------------------------------------- */

void moe_dispatch_plan_init(moe_dispatch_plan *plan, int n_rank)
{
    memset(plan, 0, sizeof *plan);
    plan->n_rank = n_rank;
    plan->send_count = moe_xcalloc((size_t)n_rank, sizeof *plan->send_count);
    plan->send_offset = moe_xcalloc((size_t)n_rank + 1, sizeof *plan->send_offset);
}

void moe_dispatch_plan_free(moe_dispatch_plan *plan)
{
    free(plan->slot_rank);
    free(plan->send_count);
    free(plan->send_offset);
    free(plan->send_tok);
    memset(plan, 0, sizeof *plan);
}

int moe_dispatch_plan_build(moe_dispatch_plan *plan, const moe_placement *p, int layer, int home_rank, int n_tok,
                            int k, const int32_t *expert_ids, moe_err *err)
{
    const moe_placement_shape *s = &p->shape;
    MOE_ASSERT(plan->n_rank == s->n_rank && home_rank >= 0 && home_rank < s->n_rank && n_tok >= 0 && k >= 1);
    if (layer < s->first_moe || layer >= s->n_layer) return moe_err_set(err, "dispatch: layer %d is not a MoE layer", layer);
    size_t slots;
    if (!moe_mul_size((size_t)n_tok, (size_t)k, &slots) || slots > INT32_MAX)
        return moe_err_set(err, "dispatch: %d tokens × %d experts is too many", n_tok, k);
    if (slots > plan->cap_tok) {
        plan->slot_rank = moe_xrealloc(plan->slot_rank, slots * sizeof *plan->slot_rank);
        plan->send_tok = moe_xrealloc(plan->send_tok, slots * sizeof *plan->send_tok);
        plan->cap_tok = slots;
    }
    plan->n_tok = n_tok;
    plan->k = k;
    memset(plan->send_count, 0, (size_t)s->n_rank * sizeof *plan->send_count);

    /* Pass 1: choose a rank for each slot and count tokens per rank (a token
     * counts once per rank, however many of its experts are there). */
    for (int t = 0; t < n_tok; t++) {
        int32_t *sr = plan->slot_rank + (size_t)t * (size_t)k;
        const int32_t *ids = expert_ids + (size_t)t * (size_t)k;
        for (int j = 0; j < k; j++) {
            if (ids[j] < 0 || ids[j] >= s->n_expert)
                return moe_err_set(err, "dispatch: token %d names expert %d (the model has %d)", t, ids[j], s->n_expert);
            int n;
            const int32_t *h = moe_placement_hosts(p, layer, ids[j], &n);
            int pick = -1;
            for (int i = 0; i < n && pick < 0; i++)
                if (h[i] == home_rank) pick = home_rank;
            for (int i = 0; i < n && pick < 0; i++)
                for (int q = 0; q < j && pick < 0; q++)
                    if (sr[q] == h[i]) pick = h[i];
            if (pick < 0) {
                pick = h[0];
                for (int i = 1; i < n; i++)
                    if (plan->send_count[h[i]] < plan->send_count[pick]) pick = h[i];
            }
            sr[j] = pick;
            bool first_visit = true;
            for (int q = 0; q < j; q++)
                if (sr[q] == pick) first_visit = false;
            if (first_visit) plan->send_count[pick]++;
        }
    }
    plan->send_offset[0] = 0;
    for (int r = 0; r < s->n_rank; r++) plan->send_offset[r + 1] = plan->send_offset[r] + plan->send_count[r];

    /* Pass 2: list each rank's tokens in ascending order. */
    int32_t *fill = moe_xmalloc((size_t)s->n_rank * sizeof *fill);
    memcpy(fill, plan->send_offset, (size_t)s->n_rank * sizeof *fill);
    for (int t = 0; t < n_tok; t++) {
        const int32_t *sr = plan->slot_rank + (size_t)t * (size_t)k;
        for (int j = 0; j < k; j++) {
            bool first_visit = true;
            for (int q = 0; q < j; q++)
                if (sr[q] == sr[j]) first_visit = false;
            if (first_visit) plan->send_tok[fill[sr[j]]++] = t;
        }
    }
    free(fill);
    return MOE_OK;
}

int64_t moe_placement_moved(const moe_placement *a, const moe_placement *b)
{
    const moe_placement_shape *s = moe_placement_shape_of(a), *t = moe_placement_shape_of(b);
    MOE_ASSERT(s->n_layer == t->n_layer && s->first_moe == t->first_moe && s->n_expert == t->n_expert &&
               s->n_rank == t->n_rank);
    int64_t moved = 0;
    for (int il = s->first_moe; il < s->n_layer; il++)
        for (int e = 0; e < s->n_expert; e++) {
            int na, nb;
            const int32_t *ha = moe_placement_hosts(a, il, e, &na), *hb = moe_placement_hosts(b, il, e, &nb);
            moved += na != nb || memcmp(ha, hb, (size_t)na * sizeof *ha) != 0; /* both ascending */
        }
    return moved;
}

double moe_placement_balancedness(const moe_placement *p, const int64_t *counts)
{
    const moe_placement_shape *s = moe_placement_shape_of(p);
    double *load = moe_xcalloc((size_t)s->n_rank, sizeof *load), sum = 0;
    int layers = 0;
    for (int il = s->first_moe; il < s->n_layer; il++) {
        const int64_t *c = counts + (size_t)(il - s->first_moe) * (size_t)s->n_expert;
        memset(load, 0, (size_t)s->n_rank * sizeof *load);
        double total = 0, max = 0;
        for (int e = 0; e < s->n_expert; e++) {
            if (c[e] <= 0) continue;
            int n;
            const int32_t *h = moe_placement_hosts(p, il, e, &n);
            for (int k = 0; k < n; k++) load[h[k]] += (double)c[e] / n;
            total += (double)c[e];
        }
        if (total <= 0) continue;
        for (int r = 0; r < s->n_rank; r++) max = load[r] > max ? load[r] : max;
        sum += total / s->n_rank / max;
        layers++;
    }
    free(load);
    return layers ? sum / layers : -1.0;
}
