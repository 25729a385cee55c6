/*
 * eplb.c — DeepSeek's EPLB (see eplb.h for the algorithm and its ties).
 *
 * Everything is per layer and O(P·E) at worst (replication picks each extra
 * slot by a scan of the experts), which is nothing next to a trace.
 */
#include "eplb.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- libstdc++'s std::sort on (value, index) pairs, "greater" by value --- */

typedef struct item {
    float v;
    int32_t i;
} item;

/* comp(a, b): a goes before b.  Equal values are not ordered. */
static bool before(const item *a, const item *b) { return a->v > b->v; }

static void swap_items(item *a, item *b)
{
    item t = *a;
    *a = *b;
    *b = t;
}

/* Inserts a[k] into the sorted a[0..k) knowing some element before it does
 * not go after it (the "unguarded" insertion). */
static void linear_insert(item *a, size_t k)
{
    item val = a[k];
    size_t j = k;
    while (before(&val, &a[j - 1])) {
        a[j] = a[j - 1];
        j--;
    }
    a[j] = val;
}

static void insertion_sort(item *a, size_t n)
{
    for (size_t k = 1; k < n; k++) {
        if (before(&a[k], &a[0])) {
            item val = a[k];
            memmove(a + 1, a, k * sizeof *a);
            a[0] = val;
        } else {
            linear_insert(a, k);
        }
    }
}

/* The heap of std::make_heap / std::sort_heap with "before" as less-than:
 * the root is the element that goes last. */
static void push_heap(item *a, size_t hole, size_t top, item val)
{
    size_t parent = (hole - 1) / 2;
    while (hole > top && before(&a[parent], &val)) {
        a[hole] = a[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    a[hole] = val;
}

static void adjust_heap(item *a, size_t hole, size_t len, item val)
{
    const size_t top = hole;
    size_t child = hole;
    while (len > 0 && child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (before(&a[child], &a[child - 1])) child--;
        a[hole] = a[child];
        hole = child;
    }
    if ((len & 1) == 0 && len >= 2 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        a[hole] = a[child - 1];
        hole = child - 1;
    }
    push_heap(a, hole, top, val);
}

static void heap_sort(item *a, size_t n)
{
    if (n < 2) return;
    for (size_t parent = (n - 2) / 2;; parent--) {
        adjust_heap(a, parent, n, a[parent]);
        if (parent == 0) break;
    }
    for (size_t last = n - 1; last > 0; last--) {
        item val = a[last];
        a[last] = a[0];
        adjust_heap(a, 0, last, val);
    }
}

/* Puts the median of a, b, c into *result (std::__move_median_to_first). */
static void median_to_first(item *result, item *a, item *b, item *c)
{
    if (before(a, b)) {
        if (before(b, c)) swap_items(result, b);
        else if (before(a, c)) swap_items(result, c);
        else swap_items(result, a);
    } else if (before(a, c)) {
        swap_items(result, a);
    } else if (before(b, c)) {
        swap_items(result, c);
    } else {
        swap_items(result, b);
    }
}

/* Partitions [lo, hi) around *pivot (outside the range); returns the cut. */
static size_t partition(item *a, size_t lo, size_t hi, const item *pivot)
{
    for (;;) {
        while (before(&a[lo], pivot)) lo++;
        hi--;
        while (before(pivot, &a[hi])) hi--;
        if (!(lo < hi)) return lo;
        swap_items(&a[lo], &a[hi]);
        lo++;
    }
}

enum { SORT_THRESHOLD = 16 };

static void introsort_loop(item *a, size_t first, size_t last, int depth)
{
    while (last - first > SORT_THRESHOLD) {
        if (depth == 0) {
            heap_sort(a + first, last - first);
            return;
        }
        depth--;
        size_t mid = first + (last - first) / 2;
        median_to_first(&a[first], &a[first + 1], &a[mid], &a[last - 1]);
        size_t cut = partition(a, first + 1, last, &a[first]);
        introsort_loop(a, cut, last, depth);
        last = cut;
    }
}

static void std_sort(item *a, size_t n)
{
    if (n < 2) return;
    int lg = 0;
    while (((size_t)1 << (lg + 1)) <= n) lg++;
    introsort_loop(a, 0, n, 2 * lg);
    if (n > SORT_THRESHOLD) {
        insertion_sort(a, SORT_THRESHOLD);
        for (size_t k = SORT_THRESHOLD; k < n; k++) linear_insert(a, k);
    } else {
        insertion_sort(a, n);
    }
}

void moe_eplb_sort_desc(const float *v, int n, int32_t *idx)
{
    item *a = moe_xmalloc((size_t)(n > 0 ? n : 1) * sizeof *a);
    for (int k = 0; k < n; k++) a[k] = (item){v[k], k};
    std_sort(a, (size_t)(n > 0 ? n : 0));
    for (int k = 0; k < n; k++) idx[k] = a[k].i;
    free(a);
}

/* ---- the three steps ------------------------------------------------------ */

void moe_eplb_pack(const float *w, int n, int m, int32_t *pack, int32_t *rank_in_pack)
{
    MOE_ASSERT(n >= 0 && m >= 1 && n % m == 0);
    const int per = n / m;
    if (per == 1) {
        for (int k = 0; k < n; k++) {
            pack[k] = k;
            rank_in_pack[k] = 0;
        }
        return;
    }
    int32_t *order = moe_xmalloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    float *load = moe_xcalloc((size_t)m, sizeof *load);
    int32_t *count = moe_xcalloc((size_t)m, sizeof *count);
    moe_eplb_sort_desc(w, n, order);
    for (int k = 0; k < n; k++) {
        const int g = order[k];
        int best = -1;
        for (int p = 0; p < m; p++)
            if (count[p] < per && (best < 0 || load[p] < load[best])) best = p;
        MOE_ASSERT(best >= 0);
        pack[g] = best;
        rank_in_pack[g] = count[best]++;
        load[best] += w[g];
    }
    free(order);
    free(load);
    free(count);
}

void moe_eplb_replicate(const float *w, int n_log, int n_phy, int32_t *phy2log, int32_t *phyrank, int32_t *logcnt)
{
    MOE_ASSERT(n_log >= 1 && n_phy >= n_log);
    for (int e = 0; e < n_log; e++) {
        phy2log[e] = e;
        phyrank[e] = 0;
        logcnt[e] = 1;
    }
    for (int p = n_log; p < n_phy; p++) {
        int best = 0;
        float best_v = w[0] / (float)logcnt[0];
        for (int e = 1; e < n_log; e++) {
            const float v = w[e] / (float)logcnt[e];
            if (v > best_v) {
                best = e;
                best_v = v;
            }
        }
        phy2log[p] = best;
        phyrank[p] = logcnt[best]++;
    }
}

static int check(const float *weight, int L, int E, const moe_eplb_params *q, bool *hier, moe_err *err)
{
    if (L < 1) return moe_err_set(err, "eplb: no layers");
    if (E < 1 || E > MOE_EPLB_MAX_EXPERTS) return moe_err_set(err, "eplb: %d experts (1..%d)", E, MOE_EPLB_MAX_EXPERTS);
    if (q->num_gpus < 1) return moe_err_set(err, "eplb: num_gpus is %d, needs >= 1", q->num_gpus);
    if (q->num_nodes < 1) return moe_err_set(err, "eplb: num_nodes is %d, needs >= 1", q->num_nodes);
    if (q->num_groups < 1) return moe_err_set(err, "eplb: num_groups is %d, needs >= 1", q->num_groups);
    if (q->num_replicas < E || q->num_replicas > MOE_EPLB_MAX_SLOTS)
        return moe_err_set(err, "eplb: num_replicas %d must be at least the %d experts (and at most %d)", q->num_replicas,
                           E, MOE_EPLB_MAX_SLOTS);
    if (q->num_replicas % q->num_gpus)
        return moe_err_set(err, "eplb: num_replicas %d is not a multiple of num_gpus %d", q->num_replicas, q->num_gpus);
    size_t cells;
    if (!moe_mul_size((size_t)L, (size_t)q->num_replicas, &cells) || cells > MOE_EPLB_MAX_CELLS)
        return moe_err_set(err, "eplb: %d layers × %d slots is too large", L, q->num_replicas);
    *hier = q->num_groups % q->num_nodes == 0;
    if (*hier) {
        if (E % q->num_groups)
            return moe_err_set(err, "eplb: %d experts do not divide into %d groups", E, q->num_groups);
        if (q->num_gpus % q->num_nodes)
            return moe_err_set(err, "eplb: num_gpus %d is not a multiple of num_nodes %d", q->num_gpus, q->num_nodes);
    }
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) {
            const float v = weight[(size_t)l * (size_t)E + (size_t)e];
            if (!isfinite(v) || v < 0)
                return moe_err_set(err, "eplb: load of layer %d expert %d is %g (needs a finite number >= 0)", l, e,
                                   (double)v);
        }
    return MOE_OK;
}

int moe_eplb_rebalance(moe_eplb_result *out, const float *weight, int L, int E, const moe_eplb_params *prm,
                       moe_err *err)
{
    memset(out, 0, sizeof *out);
    bool hier = false;
    if (check(weight, L, E, prm, &hier, err)) return MOE_ERR;
    /* the global policy is the hierarchical one with one group on one node */
    const int G = hier ? prm->num_groups : 1, N = hier ? prm->num_nodes : 1, R = prm->num_gpus, P = prm->num_replicas;
    const int gs = E / G, gpn = G / N, En = E / N, Pn = P / N, per_gpu = P / R, gpus_pn = R / N;

    out->n_layer = L;
    out->n_log = E;
    out->n_phy = P;
    out->hierarchical = hier;
    out->phy2log = moe_xmalloc((size_t)L * (size_t)P * sizeof(int32_t));
    out->phyrank = moe_xmalloc((size_t)L * (size_t)P * sizeof(int32_t));
    out->logcnt = moe_xmalloc((size_t)L * (size_t)E * sizeof(int32_t));

    float *tpg = moe_xmalloc((size_t)G * sizeof *tpg);
    int32_t *gpack = moe_xmalloc((size_t)G * sizeof *gpack), *grank = moe_xmalloc((size_t)G * sizeof *grank);
    int32_t *log2mlog = moe_xmalloc((size_t)E * sizeof *log2mlog), *mlog2log = moe_xmalloc((size_t)E * sizeof *mlog2log);
    float *tpm = moe_xmalloc((size_t)En * sizeof *tpm), *tpp = moe_xmalloc((size_t)Pn * sizeof *tpp);
    int32_t *phy2mlog = moe_xmalloc((size_t)Pn * sizeof(int32_t)), *prank = moe_xmalloc((size_t)Pn * sizeof(int32_t));
    int32_t *mlogcnt = moe_xmalloc((size_t)E * sizeof(int32_t));
    int32_t *pidx = moe_xmalloc((size_t)Pn * sizeof(int32_t)), *rip = moe_xmalloc((size_t)Pn * sizeof(int32_t));
    int32_t *pphy2phy = moe_xmalloc((size_t)Pn * sizeof(int32_t));

    for (int l = 0; l < L; l++) {
        const float *w = weight + (size_t)l * (size_t)E;
        /* 1: groups onto nodes; experts renumbered node by node ("mlog") */
        for (int g = 0; g < G; g++) {
            float s = 0;
            for (int j = 0; j < gs; j++) s += w[g * gs + j];
            tpg[g] = s;
        }
        moe_eplb_pack(tpg, G, N, gpack, grank);
        for (int e = 0; e < E; e++) {
            const int g = e / gs;
            log2mlog[e] = (gpack[g] * gpn + grank[g]) * gs + e % gs;
            mlog2log[log2mlog[e]] = e;
        }
        int32_t *p2l = out->phy2log + (size_t)l * (size_t)P, *p2r = out->phyrank + (size_t)l * (size_t)P;
        for (int n = 0; n < N; n++) {
            /* 2: replicas within the node */
            for (int i = 0; i < En; i++) tpm[i] = w[mlog2log[n * En + i]];
            int32_t *cnt = mlogcnt + (size_t)n * (size_t)En;
            moe_eplb_replicate(tpm, En, Pn, phy2mlog, prank, cnt);
            /* 3: the node's slots onto its ranks */
            for (int p = 0; p < Pn; p++) tpp[p] = tpm[phy2mlog[p]] / (float)cnt[phy2mlog[p]];
            moe_eplb_pack(tpp, Pn, gpus_pn, pidx, rip);
            for (int p = 0; p < Pn; p++) pphy2phy[pidx[p] * per_gpu + rip[p]] = p;
            for (int q = 0; q < Pn; q++) {
                const int p = pphy2phy[q];
                p2l[n * Pn + q] = mlog2log[n * En + phy2mlog[p]];
                p2r[n * Pn + q] = prank[p];
            }
        }
        for (int e = 0; e < E; e++) out->logcnt[(size_t)l * (size_t)E + (size_t)e] = mlogcnt[log2mlog[e]];
    }
    free(tpg);
    free(gpack);
    free(grank);
    free(log2mlog);
    free(mlog2log);
    free(tpm);
    free(tpp);
    free(phy2mlog);
    free(prank);
    free(mlogcnt);
    free(pidx);
    free(rip);
    free(pphy2phy);

    int maxc = 1;
    for (size_t k = 0; k < (size_t)L * (size_t)E; k++)
        if (out->logcnt[k] > maxc) maxc = out->logcnt[k];
    out->max_cnt = maxc;
    out->log2phy = moe_xmalloc((size_t)L * (size_t)E * (size_t)maxc * sizeof(int32_t));
    for (size_t k = 0; k < (size_t)L * (size_t)E * (size_t)maxc; k++) out->log2phy[k] = -1;
    for (int l = 0; l < L; l++)
        for (int p = 0; p < P; p++) {
            const size_t c = (size_t)l * (size_t)P + (size_t)p;
            const int e = out->phy2log[c], r = out->phyrank[c];
            MOE_ASSERT(r < maxc);
            out->log2phy[((size_t)l * (size_t)E + (size_t)e) * (size_t)maxc + (size_t)r] = p;
        }
    return MOE_OK;
}

void moe_eplb_result_free(moe_eplb_result *r)
{
    free(r->phy2log);
    free(r->phyrank);
    free(r->logcnt);
    free(r->log2phy);
    memset(r, 0, sizeof *r);
}
