/*
 * sampler.c — greedy, temperature, top-k, top-p, min-p, repetition penalty,
 * stop tokens, and randomness as a pure function of (seed, position).
 */
#include <math.h>

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
    return check_summary("sampler");
}
