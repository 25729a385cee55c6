/*
 * request.h — one generate request as the coordinator handles it, with no
 * transport: prompt to tokens, validation against the model, stop strings,
 * streaming detokenization and the end reason.  Front ends (ZMQ, HTTP)
 * turn what arrives into a moe_request_spec and what leaves into their own
 * messages; everything in between lives here, so it is tested without a
 * socket.
 *
 *   spec (text | ids | chat, sampling, stops, limits)
 *     └─ moe_request_new ──► prompt tokens (for the scheduler) + moe_request
 *   tokens emitted so far (the scheduler's record, out[0..n_out))
 *     └─ moe_request_next_chunk ──► ids + text the client has not had yet
 *        (text that could still become a stop string is held back; a stop
 *        string found ends the request and cuts the tokens after it)
 *   moe_request_finish_due ──► moe_request_finish (reason, code, usage)
 *
 * Codes are the protocol's (MOE__CODE__*, proto/msg.h); a front end maps
 * them to its own (moe_msg_code_http_status).
 */
#ifndef MOE_COORD_REQUEST_H
#define MOE_COORD_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "chat.h"
#include "msg.h"
#include "sampler.h"
#include "sched.h"
#include "tokenizer.h"

/* What requests are checked and tokenized against. */
typedef struct moe_request_model {
    const moe_tokenizer *tok;
    const moe_chat *chat;     /* NULL: chat prompts are refused */
    moe_msg_limits lim;       /* vocab_size, max_context (the ranks'), max_tokens ... */
    int default_max_tokens;   /* of a request that names none */
    int routed_width;         /* MoE layers x experts a token (the file's), for the size of returned
                                 routed experts; 0: unknown (they are refused) */
} moe_request_model;

typedef enum {
    MOE_PROMPT_TEXT = 0,      /* tokenized with BOS as the model file says */
    MOE_PROMPT_IDS,           /* as given */
    MOE_PROMPT_CHAT,          /* rendered through the model's template */
} moe_prompt_kind;

/* Log-probabilities (MOE_MAX_TOP_LOGPROBS, moe_logprob, moe_token_logprobs)
 * are core/sampler.h's: the ranks compute them (moe_logprobs_compute) from
 * the row they sampled, as the log-softmax of the raw logits (before
 * penalties, temperature and truncation, as vLLM's default "raw" logprobs):
 * the token's own and the n_top most likely tokens, best first (ties:
 * lower id first). */

/* A request as a front end received it, already converted from its wire
 * form and checked field by field there (lengths, UTF-8, ids against the
 * vocabulary, sampling ranges).  Pointers are borrowed for the call to
 * moe_request_new only: nothing here is kept. */
typedef struct moe_request_spec {
    const char *id;           /* the client's request id */
    moe_prompt_kind kind;
    const char *text;         /* MOE_PROMPT_TEXT: NUL-terminated */
    const int32_t *ids;       /* MOE_PROMPT_IDS */
    size_t n_ids;
    const moe_chat_msg *chat; /* MOE_PROMPT_CHAT */
    size_t n_chat;
    bool add_generation_prompt;
    moe_sampler_cfg sampling; /* defaults + the client's fields (marked in .set) + its stop ids in .stop */
    const char *const *stop;  /* stop strings, each non-empty */
    size_t n_stop;
    int max_tokens;           /* < 0: the model's default_max_tokens; 0: no completion token
                                 (allowed only with prompt_logprobs: scoring a prompt) */
    int64_t deadline_ms;      /* from receipt; 0: none */
    bool stream;              /* chunks as tokens come (else one chunk at the end) */
    int logprobs;             /* < 0: none; 0..MOE_MAX_TOP_LOGPROBS: every completion token's
                                 logprob and this many alternatives */
    bool prompt_logprobs;     /* the prompt tokens' logprobs too (echo + logprobs); needs logprobs >= 0 */
    bool ignore_eos;          /* the model's EOS does not end the request (stop ids still do) */
    int min_tokens;           /* EOS and stop ids cannot be sampled before this many tokens (0: off) */
    bool routed_experts;      /* every fed token's routed experts in the outcome (docs/routing.md) ... */
    bool routed_weights;      /* ... with their gate weights (needs routed_experts) */
    const char *cache_salt;   /* NULL, or the prefix cache's isolation salt (at most MOE_CACHE_SALT_MAX bytes) */
} moe_request_spec;

#define MOE_CACHE_SALT_MAX 256

/* A salt's 64-bit value (FNV-1a, never 0) as the ranks get it. */
static inline uint64_t moe_cache_salt_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h ? h : 1;
}

/* One request.  The loop reads the first group; the rest is request.c's. */
typedef struct moe_request {
    char *id;
    bool stream;
    moe_sampler_cfg sampling; /* what the rank runs: the client's fields, a seed (drawn here if the
                                 client gave none, so a replay is identical), its stop ids */
    int max_tokens;
    double deadline;          /* moe_now() time; 0: none */
    moe_end_reason end;       /* MOE_END_NONE while it runs; the first reason wins */
    int code;                 /* of MOE_END_ERROR */
    char message[MOE_ERR_MSG_MAX];

    char **stop;              /* stop strings */
    size_t n_stop;
    bool stop_matched;        /* a stop string ended it: what follows it is not the client's */
    moe_tok_stream *ts;
    int n_decoded;            /* tokens pushed through ts */
    int n_sent;               /* tokens handed out in chunks */
    char *text;               /* decoded text not yet handed out (NUL-terminated) */
    size_t text_len, text_cap;
    size_t sendable;          /* bytes of text that can no longer become a stop string */
    char *chunk;              /* the text of the last chunk (NUL-terminated) */
    size_t chunk_cap;
    int logprobs;             /* the spec's: -1 none, else alternatives per token */
    bool prompt_logprobs;
    bool routed_experts, routed_weights;
    uint64_t cache_salt;      /* the spec's salt hashed (0: none) */
    const moe_req *rec;       /* the scheduler's record (moe_request_attach): logprobs come from it */
} moe_request;

/* Ids in one chunk of a request with logprobs, at most (the rest follow in
 * the next chunks; the text comes with the last ids). */
#define MOE_REQUEST_CHUNK_LOGPROBS 1024

/* What the client has not had yet. */
typedef struct moe_request_chunk {
    const int32_t *ids;       /* completion tokens index .. index + n_ids */
    int n_ids;
    int index;                /* position of ids[0] in the completion */
    const char *text;         /* their text, NUL-terminated (valid until the next call) */
    size_t text_len;
    const moe_token_logprobs *logprobs; /* n_ids entries when the request asked for logprobs, else NULL */
} moe_request_chunk;

/* How a request ended, for the front end's Finish. */
typedef struct moe_request_outcome {
    moe_end_reason end;
    int wire_reason;          /* Moe__EndReason */
    const char *reason_name;  /* "stop", "length", "cancelled", "deadline", "error" */
    int code;                 /* MOE__CODE__OK, or why (deadline, error) */
    const char *message;      /* with a code: what happened */
    int prompt_tokens, completion_tokens;
    int cached_tokens;                    /* of prompt_tokens, taken from the rank's prefix cache */
    const int32_t *prompt_ids;            /* the prompt as the rank ran it, prompt_tokens ids */
    const moe_token_logprobs *prompt_logprobs; /* prompt_tokens entries (entry 0 has no logprob:
                                             n_top 0, logprob NAN) when asked, else NULL */
    /* Routed experts when asked (else routed_ids NULL): rows 0 .. routed_rows - 1
     * (prompt_tokens + completion_tokens - 1 when all came), each
     * routed_layers x routed_top_k int16 LE; routed_w float32 LE or NULL. */
    const uint8_t *routed_ids, *routed_w;
    int64_t routed_rows;
    int routed_layers, routed_top_k, routed_first_moe;
} moe_request_outcome;

/* A spec with nothing set: no prompt, default sampling, the model's
 * default max_tokens (-1), no logprobs (-1).  Front ends start from it. */
void moe_request_spec_init(moe_request_spec *spec);

/* Tokenizes and checks spec against m (context, max tokens).  Returns
 * MOE__CODE__OK with *out and the prompt's ids appended to *prompt, or the
 * refusal's code with the reason in err (and *out NULL). */
int moe_request_new(moe_request **out, moe_tokens *prompt, const moe_request_model *m, const moe_request_spec *spec,
                    moe_err *err);
void moe_request_free(moe_request *q); /* NULL is fine */

/* The scheduler's record of q (it must outlive q's use): the logprobs the
 * ranks sent (rec->lp, rec->prompt_lp) go into chunks and the outcome. */
void moe_request_attach(moe_request *q, const moe_req *rec);

/* Ends the request here (cancel, deadline, lost rank ...) unless it has
 * ended already: the first reason wins.  code matters for MOE_END_ERROR;
 * msg may be NULL. */
void moe_request_end(moe_request *q, moe_end_reason why, int code, const char *msg);

/* Decodes tokens out[0..*n_out) not yet decoded.  A stop string found ends
 * the request (MOE_END_STOP) and lowers *n_out to the token that completed
 * it: the tokens after it are not the client's. */
void moe_request_decode(moe_request *q, const int32_t *out, int *n_out);

/* Decodes as above, then fills *ch with what the client has not had: the
 * ids from n_sent on and the text that can no longer become a stop string
 * (all of it once the request has ended).  False if there is nothing to
 * send now — always, for a non-streaming request, until it ends.  Call
 * moe_request_chunk_sent once the chunk is out; if it could not go, the
 * next call hands out the same and more. */
bool moe_request_next_chunk(moe_request *q, const int32_t *out, int *n_out, moe_request_chunk *ch);
void moe_request_chunk_sent(moe_request *q, const moe_request_chunk *ch);

/* The request has ended and every token went out in a chunk: time for the
 * Finish. */
bool moe_request_finish_due(const moe_request *q, int n_out);
void moe_request_finish(const moe_request *q, int n_prompt, int n_out, moe_request_outcome *f);

/* End reasons, mapped once: to the wire's Moe__EndReason, from it (a
 * missing or unknown reason is MOE_END_ERROR), and their names. */
int moe_request_end_to_wire(moe_end_reason why);
moe_end_reason moe_request_end_from_wire(bool has, int reason);
const char *moe_request_end_name(moe_end_reason why);

/* A seed for a request that names none: differs between requests. */
uint64_t moe_request_fresh_seed(void);

#endif
