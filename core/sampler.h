/*
 * sampler.h — next-token choice from one row of logits.
 *
 * Order: repetition penalty → (greedy if temperature ≤ 0) → top-k →
 * temperature → softmax → top-p → min-p → draw.  The draw's uniform number
 * is a pure function of (seed, position): the same request replayed on
 * another worker, in another batch, picks the same token.
 * Ties between equal logits go to the lowest id.
 */
#ifndef MOE_SAMPLER_H
#define MOE_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"

#define MOE_SAMPLER_MAX_STOP 16

typedef struct moe_sampler_cfg {
    float temperature;     /* ≤ 0: greedy */
    int top_k;             /* 0: off */
    float top_p;           /* 1: off; in (0, 1] */
    float min_p;           /* 0: off; in [0, 1] */
    float repeat_penalty;  /* 1: off; > 0 */
    int repeat_last_n;     /* history window for the penalty (0: off, -1: all) */
    uint64_t seed;
    int n_stop;            /* EOS and stop tokens */
    int32_t stop[MOE_SAMPLER_MAX_STOP];
} moe_sampler_cfg;

typedef struct moe_sampler moe_sampler;

void moe_sampler_cfg_default(moe_sampler_cfg *c);
/* Checks ranges; MOE_ERR with a message naming the field. */
int moe_sampler_cfg_check(const moe_sampler_cfg *c, moe_err *err);

int moe_sampler_init(moe_sampler **out, const moe_sampler_cfg *cfg, int n_vocab, moe_err *err);
void moe_sampler_free(moe_sampler *s);

/* Picks a token.  history: the sequence so far (prompt + generated), n_hist
 * tokens; position: index of the token being chosen (normally n_hist). */
int32_t moe_sampler_sample(moe_sampler *s, const float *logits, const int32_t *history, int64_t n_hist,
                           int64_t position);

/* True if tok is an EOS / stop token of cfg. */
bool moe_sampler_is_stop(const moe_sampler_cfg *c, int32_t tok);

/* The uniform number in [0, 1) used at (seed, position). */
double moe_sampler_uniform(uint64_t seed, int64_t position);

#endif
