/*
 * sampler.h — next-token choice from one row of logits.
 *
 * Order: repetition penalty → stop ids masked while fewer than min_tokens
 * tokens exist → (greedy if temperature ≤ 0) → top-k → temperature →
 * softmax → top-p → min-p → draw.  The draw's uniform number
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
    int min_tokens;        /* the stop ids cannot be drawn before this many completion tokens; 0: off */
    bool ignore_eos;       /* the model's EOS is not added to the stop ids (the generate loop's rule) */
    unsigned set;          /* bit p set: parameter p was given (moe_sampler_cfg_set*) */
} moe_sampler_cfg;

/*
 * The sampling parameters by name, their ranges written once (the table in
 * sampler.c): every way a parameter arrives — moe-run flags, request-file
 * options, the protocol's fields — goes through these two setters.
 *
 *   name            range          meaning
 *   temp            [0, 1000]      temperature, 0 greedy
 *   top_k           [0, 2^31-1]    0 off
 *   top_p           (0, 1]         1 off
 *   min_p           [0, 1]         0 off
 *   repeat_penalty  (0, 100]       1 off
 *   repeat_last_n   [-1, 2^31-1]   -1 all, 0 off
 *   seed            [0, 2^64-1]
 *   min_tokens      [0, 2^20]      0 off (stop ids masked before it)
 *   ignore_eos      [0, 1]         1: EOS does not end the sequence
 *
 * Names may be written with '-' for '_' (flags: --top-k); "temperature" and
 * "repetition_penalty" (the protocol's names) are accepted too.
 */
typedef enum {
    MOE_SP_TEMP = 0,
    MOE_SP_TOP_K,
    MOE_SP_TOP_P,
    MOE_SP_MIN_P,
    MOE_SP_REPEAT_PENALTY,
    MOE_SP_REPEAT_LAST_N,
    MOE_SP_SEED,
    MOE_SP_MIN_TOKENS,
    MOE_SP_IGNORE_EOS,
    MOE_SP_COUNT
} moe_sampler_param;

/* The parameter called name, or -1. */
int moe_sampler_param_find(const char *name);
/* Its canonical name ("top_p"). */
const char *moe_sampler_param_name(moe_sampler_param p);
/* Sets parameter `name` from text (whole string, in range) and marks it
 * set.  Errors: "unknown sampling parameter 'x'", "top_p: 1.5 is out of
 * range (0, 1]" — the caller prefixes where it came from. */
int moe_sampler_cfg_set(moe_sampler_cfg *c, const char *name, const char *value, moe_err *err);
/* Sets parameter p from a number (a protocol field); NaN, infinities,
 * fractions for integer parameters and values out of range are errors. */
int moe_sampler_cfg_set_num(moe_sampler_cfg *c, moe_sampler_param p, double value, moe_err *err);
/* Seeds are 64-bit: a double cannot carry them all. */
void moe_sampler_cfg_set_seed(moe_sampler_cfg *c, uint64_t seed);

typedef struct moe_sampler moe_sampler;

void moe_sampler_cfg_default(moe_sampler_cfg *c);
/* Checks ranges; MOE_ERR with a message naming the field. */
int moe_sampler_cfg_check(const moe_sampler_cfg *c, moe_err *err);

int moe_sampler_init(moe_sampler **out, const moe_sampler_cfg *cfg, int n_vocab, moe_err *err);
void moe_sampler_free(moe_sampler *s);

/* Picks a token.  history: the sequence so far (prompt + generated), n_hist
 * tokens; position: index of the token being chosen (normally n_hist);
 * n_out: completion tokens before this one (while n_out < min_tokens the
 * stop ids get probability 0). */
int32_t moe_sampler_sample(moe_sampler *s, const float *logits, const int32_t *history, int64_t n_hist,
                           int64_t position, int64_t n_out);

/* True if tok is an EOS / stop token of cfg. */
bool moe_sampler_is_stop(const moe_sampler_cfg *c, int32_t tok);

/* The uniform number in [0, 1) used at (seed, position). */
double moe_sampler_uniform(uint64_t seed, int64_t position);

/* ---- log-probabilities ----------------------------------------------------
 *
 * Of one row of raw logits z (the row the sampler was given, before the
 * repetition penalty, stop masking, temperature and truncation; vLLM's
 * default "raw" logprobs):
 *
 *   m = max_i z_i,  S = Σ_i exp((double)z_i − m)  (double, index order),
 *   logprob(t) = (float)((double)z_t − m − log S)
 *
 * so a row gives the same bits wherever it is computed.  The alternatives
 * are the n_top largest logits, best first, ties to the lower id. */

/* At most this many alternatives per position (the OpenAI API's limit). */
#define MOE_MAX_TOP_LOGPROBS 20

typedef struct moe_logprob {
    int32_t id;
    float logprob;
} moe_logprob;

/* One position: the token's own logprob and the n_top most likely tokens. */
typedef struct moe_token_logprobs {
    int32_t id;
    float logprob;
    int n_top;
    moe_logprob top[MOE_MAX_TOP_LOGPROBS];
} moe_token_logprobs;

/* out for token tok of logits[0..n_vocab) with n_top (0..MOE_MAX_TOP_LOGPROBS)
 * alternatives. */
void moe_logprobs_compute(const float *logits, int n_vocab, int32_t tok, int n_top, moe_token_logprobs *out);

#endif
