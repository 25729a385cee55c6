/*
 * dataset.h — what moe-bench sends: prompts with their lengths, and the
 * seeded randomness behind them and behind the arrival times.
 *
 *   random         prompts of random token ids (token-exact: sent as ids),
 *                  lengths uniform in [len·(1−r), len·(1+r)] (vLLM's
 *                  --random-range-ratio), ids drawn from the model's
 *                  normal tokens (never a control token)
 *   sharegpt       a ShareGPT JSON file: [{"conversations": [{"from",
 *                  "value"}, ...]}]; the first turn is the prompt, the
 *                  second's token count the output length; pairs with
 *                  fewer than 4 tokens on a side, a prompt over 1024 or
 *                  both over 2048 tokens are skipped (vLLM's filter);
 *                  shuffled by the seed
 *   shared-prefix  groups of prompts that start with the same random
 *                  "system prompt" and end with their own random question
 *                  (SGLang's generated-shared-prefix), shuffled by the seed
 */
#ifndef MOE_TOOLS_BENCH_DATASET_H
#define MOE_TOOLS_BENCH_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "tokenizer.h"

typedef struct moe_bench_prompt {
    int32_t *ids;          /* [n_ids] a prompt of ids, or NULL */
    size_t n_ids;
    char *text;            /* a text prompt (sharegpt; ids decoded for chat), or NULL */
    uint32_t prompt_len;   /* tokens */
    uint32_t output_len;   /* tokens to ask for */
} moe_bench_prompt;

void moe_bench_prompts_free(moe_bench_prompt *p, size_t n);

/* splitmix64: one seed, the same sequence everywhere. */
typedef struct moe_bench_rng {
    uint64_t s;
} moe_bench_rng;
uint64_t moe_bench_rng_next(moe_bench_rng *r);
double moe_bench_rng_uniform(moe_bench_rng *r); /* [0, 1) */
/* Gamma(shape, scale) (Marsaglia and Tsang): mean shape·scale. */
double moe_bench_rng_gamma(moe_bench_rng *r, double shape, double scale);

/* The ids random prompts are drawn from: the tokenizer's normal tokens. */
int moe_bench_vocab(const moe_tokenizer *tok, int32_t **ids, size_t *n, moe_err *err);

int moe_bench_random(moe_bench_prompt **out, size_t n, uint32_t input_len, uint32_t output_len, double range_ratio,
                     const int32_t *vocab, size_t n_vocab, moe_bench_rng *rng, moe_err *err);

int moe_bench_shared_prefix(moe_bench_prompt **out, size_t *n_out, size_t groups, size_t per_group,
                            uint32_t system_len, uint32_t question_len, uint32_t output_len, const int32_t *vocab,
                            size_t n_vocab, moe_bench_rng *rng, moe_err *err);

/* output_len 0: each pair's own. */
int moe_bench_sharegpt(moe_bench_prompt **out, size_t n, const char *path, const moe_tokenizer *tok,
                       uint32_t output_len, moe_bench_rng *rng, moe_err *err);

/* Fills p->text from p->ids (for the chat endpoint). */
int moe_bench_prompts_decode(moe_bench_prompt *p, size_t n, const moe_tokenizer *tok, moe_err *err);

#endif
