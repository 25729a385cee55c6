/*
 * sampler.c — candidates are (id, logit) pairs in order of logit
 * descending (ties: lower id first).  Only as much of that order is sorted
 * as top-p and the draw need (sort_prefix_to_mass): a draw over a 129k
 * vocabulary sorts a few candidates, not all.  Probabilities in double;
 * the softmax sum runs in candidate order (id order without top-k).
 */
#include "sampler.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    int32_t id;
    float logit;
    double p;
} cand;

struct moe_sampler {
    moe_sampler_cfg cfg;
    int n_vocab;
    float *v;       /* [n_vocab] penalised logits */
    cand *c;        /* [n_vocab] candidates */
    uint64_t *seen; /* [n_vocab / 64 + 1] the penalty's marks, all clear between calls */
};

void moe_sampler_cfg_default(moe_sampler_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->temperature = 0.0f;
    c->top_k = 0;
    c->top_p = 1.0f;
    c->min_p = 0.0f;
    c->repeat_penalty = 1.0f;
    c->repeat_last_n = 64;
    c->seed = 0;
}

int moe_sampler_cfg_check(const moe_sampler_cfg *c, moe_err *err)
{
    if (!isfinite(c->temperature) || c->temperature > 1000.0f) return moe_err_set(err, "temperature must be finite, ≤ 1000");
    if (c->top_k < 0) return moe_err_set(err, "top-k must be ≥ 0");
    if (!(c->top_p > 0.0f && c->top_p <= 1.0f)) return moe_err_set(err, "top-p must be in (0, 1]");
    if (!(c->min_p >= 0.0f && c->min_p <= 1.0f)) return moe_err_set(err, "min-p must be in [0, 1]");
    if (!(c->repeat_penalty > 0.0f && c->repeat_penalty <= 100.0f))
        return moe_err_set(err, "repetition penalty must be in (0, 100]");
    if (c->repeat_last_n < -1) return moe_err_set(err, "repeat-last-n must be ≥ -1");
    if (c->min_tokens < 0 || c->min_tokens > (1 << 20)) return moe_err_set(err, "min-tokens must be in [0, 2^20]");
    if (c->n_stop < 0 || c->n_stop > MOE_SAMPLER_MAX_STOP)
        return moe_err_set(err, "at most %d stop tokens", MOE_SAMPLER_MAX_STOP);
    return MOE_OK;
}

int moe_sampler_init(moe_sampler **out, const moe_sampler_cfg *cfg, int n_vocab, moe_err *err)
{
    *out = NULL;
    if (moe_sampler_cfg_check(cfg, err)) return MOE_ERR;
    if (n_vocab < 1) return moe_err_set(err, "vocabulary size %d < 1", n_vocab);
    moe_sampler *s = moe_xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    s->n_vocab = n_vocab;
    s->v = moe_xmalloc((size_t)n_vocab * sizeof(float));
    s->c = moe_xmalloc((size_t)n_vocab * sizeof(cand));
    s->seen = moe_xcalloc((size_t)n_vocab / 64 + 1, sizeof(uint64_t));
    *out = s;
    return MOE_OK;
}

void moe_sampler_free(moe_sampler *s)
{
    if (!s) return;
    free(s->v);
    free(s->c);
    free(s->seen);
    free(s);
}

bool moe_sampler_is_stop(const moe_sampler_cfg *c, int32_t tok)
{
    for (int i = 0; i < c->n_stop; i++)
        if (c->stop[i] == tok) return true;
    return false;
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

double moe_sampler_uniform(uint64_t seed, int64_t position)
{
    const uint64_t h = splitmix64(splitmix64(seed) ^ (uint64_t)position);
    return (double)(h >> 11) * (1.0 / 9007199254740992.0); /* 53 bits */
}

/* a before b: larger logit, then lower id */
static bool cand_before(const cand *a, const cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    if (cand_before(a, b)) return -1;
    if (cand_before(b, a)) return 1;
    return 0;
}

/* The k best of v[0..V) into c[0..k), in order: a heap whose root is the
 * worst kept, O(V log k), then a sort of the k. */
static void select_top_k(cand *c, const float *v, int V, int k)
{
    int n = 0;
    for (int32_t i = 0; i < V; i++) {
        const cand x = {i, v[i], 0};
        int pos;
        if (n < k) {
            pos = n++; /* sift up */
            while (pos > 0 && cand_before(&c[(pos - 1) / 2], &x)) {
                c[pos] = c[(pos - 1) / 2];
                pos = (pos - 1) / 2;
            }
        } else {
            if (!cand_before(&x, &c[0])) continue;
            pos = 0; /* replace the root, sift down */
            for (;;) {
                int ch = 2 * pos + 1;
                if (ch >= n) break;
                if (ch + 1 < n && cand_before(&c[ch], &c[ch + 1])) ch++;
                if (!cand_before(&x, &c[ch])) break;
                c[pos] = c[ch];
                pos = ch;
            }
        }
        c[pos] = x;
    }
    qsort(c, (size_t)n, sizeof(cand), cand_cmp);
}

/* Move to c[from..) every candidate of c[from..n) whose logit is at least
 * the lowest logit among those with p ≥ floor_p, and return the end of
 * them: a top set in candidate order (everything moved comes before
 * everything left) that holds every p ≥ floor_p, decided on the logits so
 * that it does not lean on exp being monotone. */
static int partition_top(cand *c, int from, int n, double floor_p)
{
    float lo = INFINITY;
    for (int i = from; i < n; i++)
        if (c[i].p >= floor_p && c[i].logit < lo) lo = c[i].logit;
    int m = from;
    for (int i = from; i < n; i++)
        if (c[i].logit >= lo) {
            const cand t = c[m];
            c[m++] = c[i];
            c[i] = t;
        }
    return m;
}

/* c[0..sorted) is in order and before every element of c[sorted..n).
 * Extend that prefix until its probability mass (have so far) reaches
 * target, or it is all of c, and return its new length.  The candidates
 * that could be needed are those with p ≥ 2^e for the largest e whose
 * binary-exponent buckets hold the mass; only they are sorted.  Which
 * elements get sorted never changes the order of the prefix, so the
 * caller's walk gives what a full sort would; a short prefix only costs
 * the caller another call. */
static int sort_prefix_to_mass(cand *c, int n, int sorted, double have, double target)
{
    if (sorted >= n) return n;
    enum { NB = 66 };
    double mass[NB] = {0};
    int emax = INT32_MIN;
    for (int i = sorted; i < n; i++)
        if (c[i].p > 0) {
            int e;
            frexp(c[i].p, &e);
            if (e > emax) emax = e;
        }
    int lim = NB - 1; /* the bucket of zero and of everything past 64 halvings */
    if (emax != INT32_MIN && isfinite(target)) {
        for (int i = sorted; i < n; i++) {
            int e = emax - (NB - 1);
            if (c[i].p > 0) frexp(c[i].p, &e);
            const int b = emax - e < NB - 1 ? emax - e : NB - 1;
            mass[b] += c[i].p;
        }
        const double want = target * (1.0 + 1e-9); /* a margin far above rounding */
        double cum = have;
        for (lim = 0; lim < NB - 1; lim++) {
            cum += mass[lim];
            if (cum >= want) break;
        }
    }
    const int m = lim >= NB - 1 ? n : partition_top(c, sorted, n, ldexp(1.0, emax - lim - 1)); /* p ≥ this ⇔ bucket ≤ lim */
    qsort(c + sorted, (size_t)(m - sorted), sizeof(cand), cand_cmp);
    return m;
}

/* Repetition penalty, each distinct token of the window once: seen ids are
 * marked in a bit set of the vocabulary and cleared after, so the cost is
 * the window's length whatever it is. */
static void apply_penalty(moe_sampler *s, float *v, const int32_t *history, int64_t from, int64_t to)
{
    const moe_sampler_cfg *c = &s->cfg;
    const int V = s->n_vocab;
    for (int64_t i = from; i < to; i++) {
        const int32_t t = history[i];
        if (t < 0 || t >= V) continue;
        uint64_t *w = &s->seen[t >> 6];
        const uint64_t bit = 1ull << (t & 63);
        if (*w & bit) continue;
        *w |= bit;
        v[t] = v[t] > 0 ? v[t] / c->repeat_penalty : v[t] * c->repeat_penalty;
    }
    for (int64_t i = from; i < to; i++)
        if (history[i] >= 0 && history[i] < V) s->seen[history[i] >> 6] = 0;
}

int32_t moe_sampler_sample(moe_sampler *s, const float *logits, const int32_t *history, int64_t n_hist,
                           int64_t position, int64_t n_out)
{
    const moe_sampler_cfg *c = &s->cfg;
    const int V = s->n_vocab;
    float *v = s->v;
    memcpy(v, logits, (size_t)V * sizeof(float));
    if (c->repeat_penalty != 1.0f && c->repeat_last_n != 0 && n_hist > 0) {
        const int64_t from = c->repeat_last_n < 0 || c->repeat_last_n > n_hist ? 0 : n_hist - c->repeat_last_n;
        apply_penalty(s, v, history, from, n_hist);
    }
    /* min_tokens: no stop id before then (-inf: probability 0, last in order) */
    if (n_out < c->min_tokens)
        for (int i = 0; i < c->n_stop; i++)
            if (c->stop[i] >= 0 && c->stop[i] < V) v[c->stop[i]] = -INFINITY;
    if (c->temperature <= 0.0f) {
        int32_t b = 0;
        for (int32_t i = 1; i < V; i++)
            if (v[i] > v[b]) b = i;
        return b;
    }
    /* candidates: with top-k the k best in order, else all in id order
     * (c[0..sorted) is the part known to be in order) */
    cand *cd = s->c;
    int n, sorted;
    if (c->top_k > 0 && c->top_k < V) {
        select_top_k(cd, v, V, c->top_k);
        n = sorted = c->top_k;
    } else {
        for (int32_t i = 0; i < V; i++) cd[i] = (cand){i, v[i], 0};
        n = V;
        sorted = 0;
    }
    /* temperature + softmax, the sum in candidate order */
    float mx = cd[0].logit;
    for (int i = sorted ? n : 1; i < n; i++)
        if (cd[i].logit > mx) mx = cd[i].logit;
    const double inv_t = 1.0 / c->temperature;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        cd[i].p = exp(((double)cd[i].logit - mx) * inv_t);
        sum += cd[i].p;
    }
    double total = 0; /* the mass of all, in candidate order */
    for (int i = 0; i < n; i++) total += cd[i].p /= sum;
    /* top-p: the smallest prefix in order with mass ≥ p */
    int keep = n;
    if (c->top_p < 1.0f) {
        double cum = 0;
        for (int i = 0, ext = 0; i < n; i++) {
            if (i == sorted) sorted = sort_prefix_to_mass(cd, n, sorted, cum, ext++ ? INFINITY : (double)c->top_p);
            cum += cd[i].p;
            if (cum >= c->top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    /* min-p: p ≥ min_p · p_max, a prefix in order */
    if (c->min_p > 0.0f) {
        double pmax = 0;
        for (int i = 0; i < keep; i++)
            if (cd[i].p > pmax) pmax = cd[i].p;
        const double th = c->min_p * pmax;
        if (sorted < keep) { /* the candidates at or above the threshold, in order */
            const int m = partition_top(cd, sorted, keep, th);
            qsort(cd + sorted, (size_t)(m - sorted), sizeof(cand), cand_cmp);
            sorted = m;
        }
        int k = 1;
        while (k < keep && cd[k].p >= th) k++;
        keep = k;
    }
    /* the kept mass: summed in order when something was cut, in candidate
     * order when not */
    double mass = total;
    if (keep < n) {
        mass = 0;
        for (int i = 0; i < keep; i++) mass += cd[i].p;
    }
    const double u = moe_sampler_uniform(c->seed, position) * mass;
    double cum = 0;
    for (int i = 0, ext = 0; i < keep; i++) {
        if (i == sorted) sorted = sort_prefix_to_mass(cd, keep, sorted, cum, ext++ ? INFINITY : u);
        cum += cd[i].p;
        if (u < cum) return cd[i].id;
    }
    return cd[keep - 1].id;
}

/* ---- log-probabilities (sampler.h) ------------------------------------------ */

/* a before b in the alternatives: larger logit, then lower id */
static bool lp_before(float za, int32_t a, float zb, int32_t b) { return za > zb || (za == zb && a < b); }

void moe_logprobs_compute(const float *z, int V, int32_t tok, int n_top, moe_token_logprobs *out)
{
    MOE_ASSERT(V >= 1 && tok >= 0 && tok < V && n_top >= 0 && n_top <= MOE_MAX_TOP_LOGPROBS);
    float mx = z[0];
    for (int i = 1; i < V; i++)
        if (z[i] > mx) mx = z[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)z[i] - (double)mx);
    const double lse = (double)mx + log(sum);
    out->id = tok;
    out->logprob = (float)((double)z[tok] - lse);
    /* the n_top best by insertion into a sorted prefix */
    const int k = n_top < V ? n_top : V;
    int n = 0;
    for (int32_t i = 0; i < V && k > 0; i++) {
        if (n == k && !lp_before(z[i], i, z[out->top[k - 1].id], out->top[k - 1].id)) continue;
        int pos = n < k ? n++ : k - 1;
        while (pos > 0 && lp_before(z[i], i, z[out->top[pos - 1].id], out->top[pos - 1].id)) {
            out->top[pos] = out->top[pos - 1];
            pos--;
        }
        out->top[pos].id = i;
    }
    for (int j = 0; j < n; j++) out->top[j].logprob = (float)((double)z[out->top[j].id] - lse);
    out->n_top = n;
}

/* ---- parameters by name ----------------------------------------------------- */

typedef struct param_def {
    const char *name, *alias;
    bool integer, open_lo;
    double lo, hi;
} param_def;

/* The one place the ranges are written (sampler.h). */
static const param_def PARAMS[MOE_SP_COUNT] = {
    [MOE_SP_TEMP] = {"temp", "temperature", false, false, 0, 1000},
    [MOE_SP_TOP_K] = {"top_k", NULL, true, false, 0, INT32_MAX},
    [MOE_SP_TOP_P] = {"top_p", NULL, false, true, 0, 1},
    [MOE_SP_MIN_P] = {"min_p", NULL, false, false, 0, 1},
    [MOE_SP_REPEAT_PENALTY] = {"repeat_penalty", "repetition_penalty", false, true, 0, 100},
    [MOE_SP_REPEAT_LAST_N] = {"repeat_last_n", NULL, true, false, -1, INT32_MAX},
    [MOE_SP_SEED] = {"seed", NULL, true, false, 0, 9007199254740992.0}, /* as a number: exact doubles; text takes all 64 bits */
    [MOE_SP_MIN_TOKENS] = {"min_tokens", NULL, true, false, 0, 1 << 20},
    [MOE_SP_IGNORE_EOS] = {"ignore_eos", NULL, true, false, 0, 1},
};

static bool name_is(const char *given, const char *name)
{
    if (!name) return false;
    for (; *given && *name; given++, name++)
        if (*given != *name && !(*given == '-' && *name == '_')) return false;
    return !*given && !*name;
}

int moe_sampler_param_find(const char *name)
{
    for (int p = 0; p < MOE_SP_COUNT; p++)
        if (name_is(name, PARAMS[p].name) || name_is(name, PARAMS[p].alias)) return p;
    return -1;
}

const char *moe_sampler_param_name(moe_sampler_param p)
{
    MOE_ASSERT(p >= 0 && p < MOE_SP_COUNT);
    return PARAMS[p].name;
}

static void param_store(moe_sampler_cfg *c, moe_sampler_param p, double v)
{
    switch (p) {
    case MOE_SP_TEMP: c->temperature = (float)v; break;
    case MOE_SP_TOP_K: c->top_k = (int)v; break;
    case MOE_SP_TOP_P: c->top_p = (float)v; break;
    case MOE_SP_MIN_P: c->min_p = (float)v; break;
    case MOE_SP_REPEAT_PENALTY: c->repeat_penalty = (float)v; break;
    case MOE_SP_REPEAT_LAST_N: c->repeat_last_n = (int)v; break;
    case MOE_SP_MIN_TOKENS: c->min_tokens = (int)v; break;
    case MOE_SP_IGNORE_EOS: c->ignore_eos = v != 0; break;
    default: MOE_ASSERT(!"seed goes through moe_sampler_cfg_set_seed");
    }
    c->set |= 1u << p;
}

int moe_sampler_cfg_set_num(moe_sampler_cfg *c, moe_sampler_param p, double v, moe_err *err)
{
    MOE_ASSERT(p >= 0 && p < MOE_SP_COUNT);
    const param_def *d = &PARAMS[p];
    if (isnan(v)) return moe_err_set(err, "%s is NaN", d->name);
    if (isinf(v)) return moe_err_set(err, "%s is infinite", d->name);
    if (d->integer && v != floor(v)) return moe_err_set(err, "%s = %g is not a whole number", d->name, v);
    if (v < d->lo || v > d->hi || (d->open_lo && v <= d->lo)) {
        if (d->integer)
            return moe_err_set(err, "%s = %.0f is out of range [%.0f, %.0f]", d->name, v, d->lo, d->hi);
        return moe_err_set(err, "%s = %g is out of range %c%g, %g]", d->name, v, d->open_lo ? '(' : '[', d->lo, d->hi);
    }
    if (p == MOE_SP_SEED) moe_sampler_cfg_set_seed(c, (uint64_t)v);
    else param_store(c, p, v);
    return MOE_OK;
}

void moe_sampler_cfg_set_seed(moe_sampler_cfg *c, uint64_t seed)
{
    c->seed = seed;
    c->set |= 1u << MOE_SP_SEED;
}

int moe_sampler_cfg_set(moe_sampler_cfg *c, const char *name, const char *value, moe_err *err)
{
    const int p = moe_sampler_param_find(name);
    if (p < 0) return moe_err_set(err, "unknown sampling parameter '%s'", name);
    const param_def *d = &PARAMS[p];
    if (!value || !*value) return moe_err_set(err, "%s: empty value", d->name);
    if (p == MOE_SP_SEED) {
        /* whole-string unsigned decimal: strtoull alone takes "-1" as 2^64-1 */
        for (const char *q = value; *q; q++)
            if (*q < '0' || *q > '9') return moe_err_set(err, "%s: '%s' is not an unsigned integer", d->name, value);
        errno = 0;
        char *end = NULL;
        const unsigned long long v = strtoull(value, &end, 10);
        if (errno == ERANGE || *end) return moe_err_set(err, "%s: '%s' does not fit 64 bits", d->name, value);
        moe_sampler_cfg_set_seed(c, (uint64_t)v);
        return MOE_OK;
    }
    double v;
    if (d->integer) {
        int64_t x;
        if (moe_parse_i64(value, (int64_t)d->lo, (int64_t)d->hi, &x, err)) return moe_err_prefix(err, "%s", d->name);
        v = (double)x;
    } else if (moe_parse_f64(value, -HUGE_VAL, HUGE_VAL, &v, err)) {
        return moe_err_prefix(err, "%s", d->name);
    }
    return moe_sampler_cfg_set_num(c, (moe_sampler_param)p, v, err);
}
