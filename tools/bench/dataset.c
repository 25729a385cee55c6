/*
 * dataset.c — moe-bench's prompts (dataset.h).
 */
#include "dataset.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void moe_bench_prompts_free(moe_bench_prompt *p, size_t n)
{
    if (!p) return;
    for (size_t i = 0; i < n; i++) {
        free(p[i].ids);
        free(p[i].text);
    }
    free(p);
}

uint64_t moe_bench_rng_next(moe_bench_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double moe_bench_rng_uniform(moe_bench_rng *r) { return (double)(moe_bench_rng_next(r) >> 11) * 0x1.0p-53; }

static double rng_normal(moe_bench_rng *r)
{
    double u1 = moe_bench_rng_uniform(r), u2 = moe_bench_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2 * log(u1)) * cos(2 * 3.14159265358979323846 * u2);
}

double moe_bench_rng_gamma(moe_bench_rng *r, double shape, double scale)
{
    if (shape < 1) {
        /* Gamma(a) = Gamma(a + 1) · U^(1/a) */
        double u = moe_bench_rng_uniform(r);
        return moe_bench_rng_gamma(r, shape + 1, scale) * pow(u > 0 ? u : 1e-300, 1 / shape);
    }
    double d = shape - 1.0 / 3, c = 1 / sqrt(9 * d);
    for (;;) {
        double x = rng_normal(r), v = 1 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = moe_bench_rng_uniform(r);
        if (u < 1 - 0.0331 * x * x * x * x) return d * v * scale;
        if (log(u > 0 ? u : 1e-300) < 0.5 * x * x + d * (1 - v + log(v))) return d * v * scale;
    }
}

static size_t rng_below(moe_bench_rng *r, size_t n) { return (size_t)(moe_bench_rng_next(r) % n); }

int moe_bench_vocab(const moe_tokenizer *tok, int32_t **ids, size_t *n, moe_err *err)
{
    int32_t nv = moe_tokenizer_n_vocab(tok);
    int32_t *v = moe_xmalloc((size_t)(nv > 0 ? nv : 1) * sizeof *v);
    size_t k = 0;
    for (int32_t i = 0; i < nv; i++)
        if (moe_tokenizer_type(tok, i) == MOE_TOKTYPE_NORMAL && !moe_tokenizer_is_eog(tok, i)) v[k++] = i;
    if (!k) {
        free(v);
        return moe_err_set(err, "the tokenizer has no normal tokens to build random prompts from");
    }
    *ids = v;
    *n = k;
    return MOE_OK;
}

/* A length uniform in [len·(1−r), len·(1+r)], at least 1. */
static uint32_t draw_len(moe_bench_rng *rng, uint32_t len, double ratio)
{
    double lo = floor((double)len * (1 - ratio)), hi = floor((double)len * (1 + ratio));
    if (lo < 1) lo = 1;
    if (hi < lo) hi = lo;
    return (uint32_t)(lo + (double)rng_below(rng, (size_t)(hi - lo) + 1));
}

static void fill_ids(int32_t *dst, size_t n, const int32_t *vocab, size_t n_vocab, moe_bench_rng *rng)
{
    for (size_t i = 0; i < n; i++) dst[i] = vocab[rng_below(rng, n_vocab)];
}

int moe_bench_random(moe_bench_prompt **out, size_t n, uint32_t input_len, uint32_t output_len, double range_ratio,
                     const int32_t *vocab, size_t n_vocab, moe_bench_rng *rng, moe_err *err)
{
    if (!n_vocab) return moe_err_set(err, "random prompts need a vocabulary");
    if (range_ratio < 0 || range_ratio >= 1) return moe_err_set(err, "--random-range-ratio must be in [0, 1)");
    moe_bench_prompt *p = moe_xcalloc(n ? n : 1, sizeof *p);
    for (size_t i = 0; i < n; i++) {
        p[i].prompt_len = draw_len(rng, input_len, range_ratio);
        p[i].output_len = draw_len(rng, output_len, range_ratio);
        p[i].n_ids = p[i].prompt_len;
        p[i].ids = moe_xmalloc(p[i].n_ids * sizeof *p[i].ids);
        fill_ids(p[i].ids, p[i].n_ids, vocab, n_vocab, rng);
    }
    *out = p;
    return MOE_OK;
}

static void shuffle(moe_bench_prompt *p, size_t n, moe_bench_rng *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rng_below(rng, i);
        moe_bench_prompt t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
}

int moe_bench_shared_prefix(moe_bench_prompt **out, size_t *n_out, size_t groups, size_t per_group,
                            uint32_t system_len, uint32_t question_len, uint32_t output_len, const int32_t *vocab,
                            size_t n_vocab, moe_bench_rng *rng, moe_err *err)
{
    if (!n_vocab) return moe_err_set(err, "shared-prefix prompts need a vocabulary");
    if (!groups || !per_group || groups > (1u << 20) / per_group)
        return moe_err_set(err, "shared-prefix: groups x prompts per group must be 1 .. 2^20");
    size_t n = groups * per_group;
    moe_bench_prompt *p = moe_xcalloc(n, sizeof *p);
    int32_t *sys = moe_xmalloc(((size_t)system_len + 1) * sizeof *sys);
    for (size_t g = 0; g < groups; g++) {
        fill_ids(sys, system_len, vocab, n_vocab, rng);
        for (size_t k = 0; k < per_group; k++) {
            moe_bench_prompt *q = &p[g * per_group + k];
            q->n_ids = (size_t)system_len + question_len;
            q->prompt_len = (uint32_t)q->n_ids;
            q->output_len = output_len;
            q->ids = moe_xmalloc((q->n_ids ? q->n_ids : 1) * sizeof *q->ids);
            memcpy(q->ids, sys, (size_t)system_len * sizeof *sys);
            fill_ids(q->ids + system_len, question_len, vocab, n_vocab, rng);
        }
    }
    free(sys);
    shuffle(p, n, rng);
    *out = p;
    *n_out = n;
    return MOE_OK;
}

static const char *turn_text(json_t *conv, size_t i)
{
    json_t *t = json_array_get(conv, i);
    json_t *v = json_is_object(t) ? json_object_get(t, "value") : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int moe_bench_sharegpt(moe_bench_prompt **out, size_t n, const char *path, const moe_tokenizer *tok,
                       uint32_t output_len, moe_bench_rng *rng, moe_err *err)
{
    if (!tok) return moe_err_set(err, "--dataset-name sharegpt needs the model's tokenizer (--tokenizer GGUF)");
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return moe_err_set(err, "%s: line %d: %s", path, je.line, je.text);
    if (!json_is_array(root)) {
        json_decref(root);
        return moe_err_set(err, "%s: not a JSON array of conversations", path);
    }
    size_t total = json_array_size(root);
    size_t *order = moe_xmalloc((total ? total : 1) * sizeof *order);
    for (size_t i = 0; i < total; i++) order[i] = i;
    for (size_t i = total; i > 1; i--) {
        size_t j = rng_below(rng, i), t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    moe_bench_prompt *p = moe_xcalloc(n ? n : 1, sizeof *p);
    size_t k = 0;
    moe_tokens t = {0};
    int rc = MOE_OK;
    for (size_t i = 0; i < total && k < n; i++) {
        json_t *item = json_array_get(root, order[i]);
        json_t *conv = json_is_object(item) ? json_object_get(item, "conversations") : NULL;
        if (!json_is_array(conv) || json_array_size(conv) < 2) continue;
        const char *prompt = turn_text(conv, 0), *answer = turn_text(conv, 1);
        if (!prompt || !answer) continue;
        moe_tokens_clear(&t);
        if (moe_tokenizer_encode(tok, prompt, strlen(prompt), 0, &t, err)) {
            rc = moe_err_prefix(err, "%s: conversation %zu", path, order[i]);
            break;
        }
        size_t plen = t.n;
        moe_tokens_clear(&t);
        if (moe_tokenizer_encode(tok, answer, strlen(answer), 0, &t, err)) {
            rc = moe_err_prefix(err, "%s: conversation %zu", path, order[i]);
            break;
        }
        size_t olen = output_len ? output_len : t.n;
        if (plen < 4 || (!output_len && olen < 4)) continue;
        if (plen > 1024 || plen + olen > 2048) continue;
        p[k].text = moe_xstrdup(prompt);
        p[k].prompt_len = (uint32_t)plen;
        p[k].output_len = (uint32_t)olen;
        k++;
    }
    moe_tokens_free(&t);
    free(order);
    json_decref(root);
    if (rc == MOE_OK && k < n) rc = moe_err_set(err, "%s: only %zu usable conversations, %zu asked for", path, k, n);
    if (rc) {
        moe_bench_prompts_free(p, k);
        return rc;
    }
    *out = p;
    return MOE_OK;
}

int moe_bench_prompts_decode(moe_bench_prompt *p, size_t n, const moe_tokenizer *tok, moe_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i].text || !p[i].ids) continue;
        size_t len;
        if (moe_tokenizer_decode(tok, p[i].ids, p[i].n_ids, &p[i].text, &len, err)) return MOE_ERR;
    }
    return MOE_OK;
}
