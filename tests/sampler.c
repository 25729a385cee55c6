/*
 * sampler.c — greedy, temperature, top-k, top-p, min-p, repetition penalty,
 * stop tokens, and randomness as a pure function of (seed, position).
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sampler.h"

#define V 8

static int32_t pick(const moe_sampler_cfg *c, const float *lg, const int32_t *hist, int64_t nh, int64_t pos)
{
    moe_sampler *s;
    moe_err err;
    if (moe_sampler_init(&s, c, V, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    int32_t t = moe_sampler_sample(s, lg, hist, nh, pos, 0);
    moe_sampler_free(s);
    return t;
}


/* ---- the sampler against a plain reference over a large vocabulary ----------
 * The reference sorts every candidate and walks the whole order: what the
 * sampler must give while sorting only the prefix it needs.  Its sums are
 * in the orders the sampler documents: the softmax over the candidates in
 * candidate order (the k best in order with top-k, id order without), the
 * kept mass in order when something was cut, in candidate order when not. */

typedef struct rc {
    int32_t id;
    float z;
    double p;
} rc;

static int rc_cmp(const void *pa, const void *pb)
{
    const rc *a = pa, *b = pb;
    if (a->z != b->z) return a->z > b->z ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static int32_t ref_sample(const moe_sampler_cfg *c, const float *lg, int n_vocab, const int32_t *hist, int64_t nh,
                          int64_t pos)
{
    float *v = malloc((size_t)n_vocab * sizeof *v);
    rc *a = malloc((size_t)n_vocab * sizeof *a), *o = malloc((size_t)n_vocab * sizeof *o);
    memcpy(v, lg, (size_t)n_vocab * sizeof *v);
    if (c->repeat_penalty != 1.0f && c->repeat_last_n != 0 && nh > 0) {
        const int64_t from = c->repeat_last_n < 0 || c->repeat_last_n > nh ? 0 : nh - c->repeat_last_n;
        for (int64_t i = from; i < nh; i++) {
            bool seen = false;
            for (int64_t j = from; j < i; j++) seen |= hist[j] == hist[i];
            if (!seen) v[hist[i]] = v[hist[i]] > 0 ? v[hist[i]] / c->repeat_penalty : v[hist[i]] * c->repeat_penalty;
        }
    }
    for (int i = 0; i < n_vocab; i++) a[i] = (rc){i, v[i], 0};
    memcpy(o, a, (size_t)n_vocab * sizeof *a);
    qsort(o, (size_t)n_vocab, sizeof *o, rc_cmp);
    int n = n_vocab;
    rc *cand = a; /* candidate order */
    if (c->top_k > 0 && c->top_k < n_vocab) {
        n = c->top_k;
        cand = o;
    }
    const double inv_t = 1.0 / c->temperature, mx = o[0].z;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp(((double)cand[i].z - mx) * inv_t);
    for (int i = 0; i < n; i++) o[i].p = exp(((double)o[i].z - mx) * inv_t) / sum;
    for (int i = 0; i < n; i++) cand[i].p = exp(((double)cand[i].z - mx) * inv_t) / sum;
    int keep = n;
    if (c->top_p < 1.0f) {
        double cum = 0;
        for (int i = 0; i < n; i++)
            if ((cum += o[i].p) >= c->top_p) {
                keep = i + 1;
                break;
            }
    }
    if (c->min_p > 0.0f) {
        const double th = c->min_p * o[0].p;
        int k = 1;
        while (k < keep && o[k].p >= th) k++;
        keep = k;
    }
    double mass = 0;
    for (int i = 0; i < keep; i++) mass += (keep == n ? cand : o)[i].p;
    const double u = moe_sampler_uniform(c->seed, pos) * mass;
    double cum = 0;
    int32_t t = o[keep - 1].id;
    for (int i = 0; i < keep; i++)
        if (u < (cum += o[i].p)) {
            t = o[i].id;
            break;
        }
    free(v);
    free(a);
    free(o);
    return t;
}

static void check_against_reference(void)
{
    enum { NV = 3001 };
    float *lg = malloc(NV * sizeof *lg);
    int32_t hist[300];
    uint64_t r = 12345;
    int draws = 0, differ = 0;
    for (int shape = 0; shape < 4; shape++) {
        /* peaked (a few dominate), flat, heavy ties (logits on a coarse
         * grid), and one huge logit */
        for (int i = 0; i < NV; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            const double x = (double)(r >> 11) / 9007199254740992.0;
            lg[i] = shape == 0 ? (float)(20.0 * x * x * x * x) :
                    shape == 1 ? (float)(0.5 * x) :
                    shape == 2 ? (float)floor(8.0 * x) : (float)(4.0 * x);
        }
        if (shape == 3) lg[1234] = 60.0f;
        for (int i = 0; i < 300; i++) hist[i] = (int32_t)((i * 7919) % NV);
        for (int cfg = 0; cfg < 12; cfg++) {
            moe_sampler_cfg c;
            moe_sampler_cfg_default(&c);
            c.temperature = cfg % 3 == 0 ? 0.3f : cfg % 3 == 1 ? 1.0f : 2.5f;
            c.top_p = (float[]){1.0f, 0.9f, 0.5f, 0.999f}[cfg % 4];
            c.min_p = cfg % 5 == 1 ? 0.05f : cfg % 5 == 3 ? 0.9f : 0.0f;
            c.top_k = cfg == 7 ? 50 : cfg == 9 ? NV - 1 : 0;
            c.repeat_penalty = cfg % 2 ? 1.3f : 1.0f;
            c.repeat_last_n = cfg == 5 ? -1 : 64;
            c.seed = (uint64_t)(cfg * 977 + shape);
            moe_sampler *s;
            moe_err err;
            CHECK(moe_sampler_init(&s, &c, NV, &err) == MOE_OK);
            for (int64_t p = 0; p < 40; p++) {
                const int64_t nh = 300 - p;
                const int32_t got = moe_sampler_sample(s, lg, hist, nh, p, 0), want = ref_sample(&c, lg, NV, hist, nh, p);
                draws++;
                if (got != want) {
                    if (!differ++)
                        CHECK_MSG(0, "shape %d config %d position %lld: sampler drew %d, reference %d", shape, cfg,
                                  (long long)p, got, want);
                }
            }
            moe_sampler_free(s);
        }
    }
    CHECK_MSG(differ == 0, "%d of %d draws differ from the reference", differ, draws);
    free(lg);
}

int main(void)
{
    const float lg[V] = {1.0f, 3.0f, 2.5f, 3.0f, -1.0f, 0.0f, 2.9f, 0.5f};
    moe_sampler_cfg c;
    moe_err err;
    /* greedy: ties to the lowest id */
    moe_sampler_cfg_default(&c);
    CHECK(pick(&c, lg, NULL, 0, 0) == 1);
    /* repetition penalty pushes 1 and 3 below 6 (2.9) */
    int32_t hist[3] = {1, 3, 1};
    c.repeat_penalty = 1.5f;
    CHECK(pick(&c, lg, hist, 3, 3) == 6);
    /* negative logits are multiplied: 4 becomes even less likely */
    c.repeat_last_n = 1; /* only the last token (1) */
    CHECK(pick(&c, lg, hist, 3, 3) == 3);
    /* top-k 1 / tiny top-p = greedy, whatever the seed */
    for (uint64_t seed = 0; seed < 50; seed++) {
        moe_sampler_cfg_default(&c);
        c.temperature = 1.0f;
        c.seed = seed;
        c.top_k = 1;
        CHECK(pick(&c, lg, NULL, 0, (int64_t)seed) == 1);
        c.top_k = 0;
        c.min_p = 1.0f; /* keeps exactly the tied best: 1 and 3 */
        int32_t tm = pick(&c, lg, NULL, 0, (int64_t)seed);
        CHECK(tm == 1 || tm == 3);
        c.min_p = 0;
        c.top_p = 1e-6f;
        CHECK(pick(&c, lg, NULL, 0, (int64_t)seed) == 1);
        /* top-k 3 keeps {1, 3, 6} */
        c.top_p = 1.0f;
        c.top_k = 3;
        int32_t t = pick(&c, lg, NULL, 0, (int64_t)seed);
        CHECK(t == 1 || t == 3 || t == 6);
        /* min-p 0.5: p ≥ 0.5·p_max ⇔ logit ≥ 3 − ln 2 → {1, 2, 3, 6} */
        c.top_k = 0;
        c.min_p = 0.5f;
        t = pick(&c, lg, NULL, 0, (int64_t)seed);
        CHECK(t == 1 || t == 2 || t == 3 || t == 6);
    }
    /* pure function of (seed, position): same inputs, same token; the
     * frequencies over positions follow softmax(lg / T) */
    moe_sampler_cfg_default(&c);
    c.temperature = 0.7f;
    c.seed = 1234;
    moe_sampler *s;
    CHECK(moe_sampler_init(&s, &c, V, &err) == MOE_OK);
    int count[V] = {0};
    const int N = 20000;
    for (int64_t p = 0; p < N; p++) {
        int32_t a = moe_sampler_sample(s, lg, NULL, 0, p, 0);
        int32_t b = moe_sampler_sample(s, lg, NULL, 0, p, 0);
        if (a != b) CHECK(a == b);
        count[a]++;
    }
    double z = 0;
    for (int i = 0; i < V; i++) z += exp(lg[i] / 0.7);
    for (int i = 0; i < V; i++) {
        const double want = exp(lg[i] / 0.7) / z, got = (double)count[i] / N;
        CHECK_MSG(fabs(got - want) < 0.015, "token %d: frequency %.4f, expected %.4f", i, got, want);
    }
    moe_sampler_free(s);
    CHECK(moe_sampler_uniform(1, 5) == moe_sampler_uniform(1, 5));
    CHECK(moe_sampler_uniform(1, 5) != moe_sampler_uniform(2, 5));
    CHECK(moe_sampler_uniform(1, 5) != moe_sampler_uniform(1, 6));
    /* stop tokens */
    moe_sampler_cfg_default(&c);
    c.n_stop = 2;
    c.stop[0] = 1;
    c.stop[1] = 7;
    CHECK(moe_sampler_is_stop(&c, 7) && moe_sampler_is_stop(&c, 1) && !moe_sampler_is_stop(&c, 2));
    /* min_tokens: the stop ids (1 and 3, the tied best) cannot be drawn
     * while fewer than 2 tokens exist; from then on they can */
    moe_sampler_cfg_default(&c);
    c.n_stop = 2;
    c.stop[0] = 1;
    c.stop[1] = 3;
    c.min_tokens = 2;
    CHECK(moe_sampler_init(&s, &c, V, &err) == MOE_OK);
    CHECK(moe_sampler_sample(s, lg, NULL, 0, 0, 0) == 6); /* greedy: next best */
    CHECK(moe_sampler_sample(s, lg, NULL, 0, 1, 1) == 6);
    CHECK(moe_sampler_sample(s, lg, NULL, 0, 2, 2) == 1);
    moe_sampler_free(s);
    c.temperature = 5.0f; /* flat: every token is likely, but no stop id before 2 */
    CHECK(moe_sampler_init(&s, &c, V, &err) == MOE_OK);
    int seen_stop = 0;
    for (int64_t p = 0; p < 2000; p++) {
        const int32_t a = moe_sampler_sample(s, lg, NULL, 0, p, 1);
        if (a == 1 || a == 3) CHECK_MSG(0, "position %lld drew stop id %d before min_tokens", (long long)p, a);
        const int32_t b = moe_sampler_sample(s, lg, NULL, 0, p, 2);
        seen_stop += b == 1 || b == 3;
    }
    CHECK(seen_stop > 100);
    moe_sampler_free(s);
    CHECK(moe_sampler_cfg_set(&c, "min_tokens", "7", &err) == MOE_OK && c.min_tokens == 7);
    CHECK(moe_sampler_cfg_set(&c, "min-tokens", "-1", &err) == MOE_ERR);
    CHECK(moe_sampler_cfg_set(&c, "ignore_eos", "1", &err) == MOE_OK && c.ignore_eos);
    CHECK(moe_sampler_cfg_set(&c, "ignore_eos", "2", &err) == MOE_ERR);
    /* logprobs: log-softmax in double, top-N best first, ties to the lower id */
    moe_token_logprobs lp;
    moe_logprobs_compute(lg, V, 4, 4, &lp);
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)lg[i] - 3.0);
    const double lse = 3.0 + log(sum);
    CHECK(lp.id == 4 && lp.logprob == (float)(-1.0 - lse));
    CHECK(lp.n_top == 4 && lp.top[0].id == 1 && lp.top[1].id == 3 && lp.top[2].id == 6 && lp.top[3].id == 2);
    CHECK(lp.top[0].logprob == lp.top[1].logprob && lp.top[0].logprob == (float)(3.0 - lse));
    CHECK(lp.top[3].logprob == (float)(2.5 - lse));
    double mass = 0;
    for (int i = 0; i < V; i++) {
        moe_token_logprobs one;
        moe_logprobs_compute(lg, V, i, 0, &one);
        CHECK(one.n_top == 0);
        mass += exp((double)one.logprob);
    }
    CHECK_MSG(fabs(mass - 1.0) < 1e-6, "probabilities sum to %.9f", mass);
    moe_logprobs_compute(lg, V, 0, MOE_MAX_TOP_LOGPROBS, &lp); /* more asked than the vocabulary */
    CHECK(lp.n_top == V && lp.top[V - 1].id == 4);
    /* bad configurations */
    moe_sampler_cfg_default(&c);
    c.top_p = 0.0f;
    CHECK(moe_sampler_cfg_check(&c, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "top-p");
    moe_sampler_cfg_default(&c);
    c.repeat_penalty = 0.0f;
    CHECK(moe_sampler_cfg_check(&c, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "repetition penalty");
    check_against_reference();
    return check_summary("sampler");
}
