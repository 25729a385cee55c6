/*
 * gen.h — the one generate loop: the live sequences of one engine, stepped
 * together, and sampled.
 *
 * moe-run (one process) and every rank of moe-worker (an MPI job in
 * lockstep) run their sequences through this module, so a sequence is fed
 * in the same chunks and sampled the same way in both, and its logits and
 * tokens are bitwise the same.
 *
 * A step is planned, then run:
 *
 *   moe_gen_plan   takes from every live sequence, in the order they were
 *                  added, one piece while the step's token budget lasts:
 *                    - the next prefill chunk of its prompt (prefill_chunk
 *                      tokens, or what is left: chunk boundaries never
 *                      depend on the budget or on other sequences, because
 *                      the attention form of a chunk depends on its length);
 *                    - or one teacher-forced token (see n_chunked below);
 *                    - or its last sampled token (decode).
 *                  A piece that does not fit waits for the next step.
 *   moe_gen_step   runs the engine on the planned items (zero items is a
 *                  valid step: an expert-parallel rank must still enter
 *                  every exchange), then for each item that produced a row
 *                  of logits: the row callback, then, once the prompt is
 *                  fed, samples the next token (token callback) and ends
 *                  the sequence on a stop token or at max_out (end
 *                  callback).  An ended sequence's cache is free at once.
 *
 * Log-probabilities (sampler.h's moe_logprobs_compute) come from the very
 * row that was sampled: with logprobs set, each token callback carries its
 * token's logprob and n_top alternatives.  With prompt_logprobs, every
 * prompt chunk asks the engine for all its rows (MOE_LOGITS_ALL; a row is
 * bitwise the same as when only the last is asked for, docs/engine.md) and
 * the prompt callback gets, for each prompt position p ≥ 1, the logprob of
 * token p under the row of position p − 1.
 *
 * Prefix caching (moe_gen_opts.prefix_cache): a new sequence starts from
 * the longest run of whole cache blocks some earlier sequence of this
 * engine wrote for the same tokens computed the same way (kvcache.h), at
 * most up to its prompt's last token, and prefills only the rest; after
 * every step a sequence publishes its newly full blocks.  The rows are
 * bitwise those of a cold run (docs/engine.md "Prefix caching"): chunk
 * boundaries stay at multiples of prefill_chunk from position 0, the
 * chunk a cached prefix cuts short takes the attention path of the whole
 * chunk (moe_step_item.path_len), and a block's key tags each position
 * with the path that computed it.  Requests that want the prompt's rows
 * (prompt_logprobs) or routed experts of every position start cold.
 *
 * MTP speculative decoding (moe_gen_opts.mtp, an engine with its MTP
 * block): after every step the MTP block runs on each new position whose
 * next token is known (engine.h moe_engine_mtp_step), and its row at a
 * sequence's last position gives a draft d1 (argmax); with mtp_draft k > 1
 * the block runs again on its own output row and d1 for d2, and so on.
 * The next decode step feeds [last token, d1..dk] as one item with every
 * row.  Row 0 is sampled exactly as without MTP; if it gives d1, row 1 is
 * the very row a later step would have computed (the invariance rules), so
 * it is sampled too, and so on while the samples equal the drafts; the
 * drafts' positions past the first miss are dropped (moe_engine_seq_truncate).  Every emitted token is therefore the
 * one decoding without MTP emits, greedy or sampled (the draw is
 * splitmix(seed, position)): accepting a deterministic draft iff the
 * target's own sample equals it is the standard acceptance rule for a
 * one-hot draft, with its acceptance probability p(d).  With prefix
 * caching a block's key includes the token after it (its MTP latents read
 * it), and a block is published once its MTP rows exist.
 *
 * Splitting plan from step lets the worker job agree on a step header
 * (tokens per rank) between the two.
 */
#ifndef MOE_WORKER_GEN_H
#define MOE_WORKER_GEN_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"
#include "engine.h"
#include "sampler.h"

typedef struct moe_gen moe_gen;

/* MTP drafts a step at most (moe_gen_opts.mtp_draft). */
#define MOE_GEN_MAX_DRAFT 4

typedef enum { MOE_GEN_END_STOP = 0, MOE_GEN_END_LENGTH, MOE_GEN_END_ERROR } moe_gen_end;

/* A sequence to run. */
typedef struct moe_gen_req {
    int64_t id;             /* the caller's name for it (request index, sequence id) */
    void *user;             /* handed back in callbacks */
    const int32_t *tokens;  /* [n_tokens] prompt, copied; a replay appends the tokens already emitted */
    int n_tokens;           /* >= 1 */
    int n_chunked;          /* the first n_chunked tokens are prefilled in chunks, the rest fed one per
                             * step with a logits row each (teacher forcing); 0 means n_tokens */
    int max_out;            /* tokens to emit in all, n_emitted included; 0: only the prompt's rows */
    int n_emitted;          /* a replay: the last n_emitted of tokens were emitted before */
    moe_sampler_cfg sc;     /* sampling and stop ids; the loop adds its EOS unless sc.ignore_eos */
    bool logprobs;          /* each emitted token's logprob ... */
    int n_top;              /* ... and this many alternatives (0..MOE_MAX_TOP_LOGPROBS) */
    bool prompt_logprobs;   /* the prompt positions' logprobs (prompt callback) */
    bool routed;            /* keep every fed position's routed experts (moe_gen_routed_take) ... */
    bool routed_weights;    /* ... and their gate weights */
    uint64_t cache_salt;    /* prefix caching: shares cached latents only with sequences of the same salt */
} moe_gen_req;

/* What a callback learns of its sequence. */
typedef struct moe_gen_seq {
    int64_t id;
    void *user;
    int seq;                /* its engine sequence (cache) */
    const int32_t *hist;    /* prompt + emitted so far */
    int64_t n_hist;
    int n_tokens;           /* prompt part of hist */
    bool routed;            /* it keeps its routed experts (moe_gen_routed_take) */
    int64_t n_cached;       /* prompt tokens taken from the prefix cache (not computed) */
} moe_gen_seq;

typedef struct moe_gen_cb {
    void *ctx;
    /* Every row of logits a sequence gets ([vocab] floats, valid during
     * the call): after its chunked prompt and after every single token fed.
     * MOE_ERR ends the sequence with err's message.  NULL: no rows wanted. */
    int (*row)(void *ctx, const moe_gen_seq *s, const float *logits, moe_err *err);
    /* Token number index (0-based over all emitted, replayed ones included);
     * lp: its logprobs when the request asked for them, else NULL (valid
     * during the call). */
    void (*token)(void *ctx, const moe_gen_seq *s, int index, int32_t tok, const moe_token_logprobs *lp);
    /* Prompt logprobs of positions first .. first + n - 1 (first ≥ 1; one
     * call per row batch, positions ascending, each once; lp[i].id is the
     * prompt token at first + i).  NULL: none wanted. */
    void (*prompt)(void *ctx, const moe_gen_seq *s, int first, const moe_token_logprobs *lp, int n);
    /* The sequence ended (msg: NULL unless MOE_GEN_END_ERROR); it is gone
     * after the call. */
    void (*end)(void *ctx, const moe_gen_seq *s, moe_gen_end why, const char *msg);
} moe_gen_cb;

typedef struct moe_gen_opts {
    int max_seqs;           /* live at once */
    int64_t max_ctx;        /* per sequence: n_tokens + (max_out - n_emitted) must not exceed it */
    int step_tokens;        /* token budget of a step (the engine's max_batch_tokens) */
    int prefill_chunk;      /* <= step_tokens */
    int32_t eos;            /* added to every sequence's stop ids; -1: none */
    bool prefix_cache;      /* share cached prefixes between sequences (see the overview) */
    bool mtp;               /* MTP speculative decoding (see the overview; the engine needs its MTP block) */
    int mtp_draft;          /* drafts a step, 1..MOE_GEN_MAX_DRAFT (0: 1): the MTP block chained on its
                             * own output for the second and later */
    /* TEST HOOK (NULL: off): draft number depth (0-based, for completion
     * index n_hist - n_tokens + depth) a sequence gets instead of the MTP
     * block's argmax mtp_draft (which is still computed, so its cost counts) */
    int32_t (*draft_hook)(void *ctx, const moe_gen_seq *s, int depth, int32_t mtp_draft);
    void *draft_ctx;
} moe_gen_opts;

/* The engine is borrowed (and must outlive the loop). */
int moe_gen_init(moe_gen **out, moe_engine *e, const moe_gen_opts *o, const moe_gen_cb *cb, moe_err *err);
/* Frees every sequence without callbacks. */
void moe_gen_free(moe_gen *g);

/* Starts a sequence.  Refused (nothing kept) when the loop is full, the
 * sequence would not fit max_ctx, its id is live, or its sampling is bad. */
int moe_gen_add(moe_gen *g, const moe_gen_req *r, moe_err *err);
/* Drops a live sequence without callbacks (a release); false if unknown. */
bool moe_gen_remove(moe_gen *g, int64_t id);
/* Ends every live sequence with MOE_GEN_END_ERROR and msg. */
void moe_gen_end_all(moe_gen *g, const char *msg);

typedef struct moe_gen_plan {
    int n_items;
    int64_t tokens;         /* in this step */
    int64_t prefill;        /* of which prefill (chunked) */
} moe_gen_plan;

/* Plans the next step (see the overview). */
void moe_gen_plan_step(moe_gen *g, moe_gen_plan *p);
/* Runs the planned step.  MOE_ERR only for a malformed step (a bug);
 * a sequence's own failure ends it through the end callback. */
int moe_gen_step(moe_gen *g, moe_err *err);

int moe_gen_live(const moe_gen *g);
/* ids of the live sequences, at most max of them; returns how many. */
int moe_gen_live_ids(const moe_gen *g, int64_t *ids, int max);
/* Tokens of cache not promised to a live sequence (of max_seqs × (max_ctx - 1)). */
int64_t moe_gen_free_tokens(const moe_gen *g);
/*
 * Routed experts of a sequence that asked for them (moe_gen_req.routed):
 * for each position fed through the model, each MoE layer's experts as the
 * gate chose them (ascending), as int16, and with routed_weights their
 * weights.  Rows [first, first + rows) not taken before, row p at
 * ids[(p - first) · layers · top_k ...]; valid until the next step.  The
 * last sampled token has no row until it is fed.  false (nothing) for an
 * unknown id or a sequence that did not ask; rows may be 0.
 */
typedef struct moe_gen_routed {
    int64_t first, rows;
    int layers, top_k;      /* MoE layers (from the first), experts a token */
    const int16_t *ids;     /* [rows][layers][top_k] */
    const float *w;         /* the same shape, or NULL */
} moe_gen_routed;
bool moe_gen_routed_take(moe_gen *g, int64_t id, moe_gen_routed *out);

/* The token at position pos of the sequence in engine sequence seq (the
 * recorder's rows); -1 if none is live there or pos is not in it yet. */
int32_t moe_gen_token_at(const moe_gen *g, int seq, int64_t pos);

/* engine sequence -> id of the sequence that holds it (for traces); an
 * array of max_seqs entries owned by the loop, kept current. */
const int64_t *moe_gen_seq_ids(const moe_gen *g);

/* MTP: drafts fed to the trunk and drafts accepted, since init. */
void moe_gen_mtp_stats(const moe_gen *g, uint64_t *drafts, uint64_t *accepted);
/* Drafts accepted at position pos of their step's drafts (0-based). */
uint64_t moe_gen_mtp_accepted_at(const moe_gen *g, int pos);

#endif
