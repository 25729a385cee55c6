/*
 * request.c — a generate request without transport (see request.h).
 */
#include "request.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- end reasons ---------------------------------------------------------------- */

int moe_request_end_to_wire(moe_end_reason why)
{
    switch (why) {
    case MOE_END_STOP: return MOE__END_REASON__END_STOP;
    case MOE_END_LENGTH: return MOE__END_REASON__END_LENGTH;
    case MOE_END_CANCELLED: return MOE__END_REASON__END_CANCELLED;
    case MOE_END_DEADLINE: return MOE__END_REASON__END_DEADLINE;
    case MOE_END_NONE: /* not ended: a caller's bug, reported as an error rather than a stop */
    case MOE_END_ERROR: break;
    }
    return MOE__END_REASON__END_ERROR;
}

moe_end_reason moe_request_end_from_wire(bool has, int reason)
{
    if (!has) return MOE_END_ERROR;
    switch (reason) {
    case MOE__END_REASON__END_STOP: return MOE_END_STOP;
    case MOE__END_REASON__END_LENGTH: return MOE_END_LENGTH;
    case MOE__END_REASON__END_CANCELLED: return MOE_END_CANCELLED;
    case MOE__END_REASON__END_DEADLINE: return MOE_END_DEADLINE;
    default: return MOE_END_ERROR;
    }
}

const char *moe_request_end_name(moe_end_reason why)
{
    if (why == MOE_END_NONE) return "none";
    return moe_msg_end_name(moe_request_end_to_wire(why));
}

/* ---- creation -------------------------------------------------------------------- */

uint64_t moe_request_fresh_seed(void)
{
    static _Atomic uint64_t counter; /* requests are made on the loop and in the prompt pool (prep.c) */
    const uint64_t k = atomic_fetch_add(&counter, 1) + 1;
    uint64_t z = ((uint64_t)getpid() << 32) ^ (uint64_t)(moe_now() * 1e9) ^ (k * 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The prompt's ids: text as every program encodes a prompt (BOS as the
 * model file says, special-token texts matched), ids as given,
 * chat through the model's template. */
static int tokenize(const moe_request_model *m, const moe_request_spec *spec, moe_tokens *toks, moe_err *err)
{
    switch (spec->kind) {
    case MOE_PROMPT_TEXT: {
        const char *t = spec->text ? spec->text : "";
        if (moe_tokenizer_encode_prompt(m->tok, t, strlen(t), toks, err)) return MOE__CODE__BAD_REQUEST;
        return MOE__CODE__OK;
    }
    case MOE_PROMPT_IDS:
        for (size_t i = 0; i < spec->n_ids; i++) moe_tokens_push(toks, spec->ids[i]);
        return MOE__CODE__OK;
    case MOE_PROMPT_CHAT:
        if (!m->chat) {
            moe_err_set(err, "the model has no chat template this server knows");
            return MOE__CODE__BAD_REQUEST;
        }
        if (moe_chat_tokenize(m->chat, m->tok, spec->chat, spec->n_chat, spec->add_generation_prompt, toks, err))
            return MOE__CODE__BAD_REQUEST;
        return MOE__CODE__OK;
    }
    moe_err_set(err, "unknown prompt kind %d", (int)spec->kind);
    return MOE__CODE__BAD_REQUEST;
}

void moe_request_spec_init(moe_request_spec *spec)
{
    memset(spec, 0, sizeof *spec);
    moe_sampler_cfg_default(&spec->sampling);
    spec->max_tokens = -1;
    spec->logprobs = -1;
}

int moe_request_new(moe_request **out, moe_tokens *prompt, const moe_request_model *m, const moe_request_spec *spec,
                    moe_err *err)
{
    *out = NULL;
    const size_t n0 = prompt->n;
    int code = tokenize(m, spec, prompt, err);
    const int max_tokens = spec->max_tokens >= 0 ? spec->max_tokens : m->default_max_tokens;
    if (code == MOE__CODE__OK && max_tokens == 0 && !spec->prompt_logprobs) {
        moe_err_set(err, "max_tokens 0 asks for no token: allowed only to score the prompt (prompt logprobs)");
        code = MOE__CODE__BAD_REQUEST;
    }
    if (code == MOE__CODE__OK && spec->logprobs > MOE_MAX_TOP_LOGPROBS) {
        moe_err_set(err, "logprobs = %d is above the limit of %d alternatives", spec->logprobs, MOE_MAX_TOP_LOGPROBS);
        code = MOE__CODE__BAD_REQUEST;
    }
    if (code == MOE__CODE__OK && spec->prompt_logprobs && spec->logprobs < 0) {
        moe_err_set(err, "prompt logprobs need logprobs (0..%d alternatives)", MOE_MAX_TOP_LOGPROBS);
        code = MOE__CODE__BAD_REQUEST;
    }
    if (code == MOE__CODE__OK && (spec->min_tokens < 0 || spec->min_tokens > max_tokens)) {
        moe_err_set(err, "min_tokens = %d is outside [0, max_tokens %d]", spec->min_tokens, max_tokens);
        code = MOE__CODE__BAD_REQUEST;
    }
    if (code == MOE__CODE__OK && spec->cache_salt && strlen(spec->cache_salt) > MOE_CACHE_SALT_MAX) {
        moe_err_set(err, "cache_salt is longer than %d bytes", MOE_CACHE_SALT_MAX);
        code = MOE__CODE__BAD_REQUEST;
    }
    if (code == MOE__CODE__OK && spec->routed_weights && !spec->routed_experts) {
        moe_err_set(err, "routed expert weights need routed experts");
        code = MOE__CODE__BAD_REQUEST;
    }
    if (code == MOE__CODE__OK && spec->routed_experts) {
        /* every position may have a row: prompt + max_tokens of them */
        const uint64_t cells = ((uint64_t)(prompt->n - n0) + (uint64_t)max_tokens) * (uint64_t)m->routed_width;
        if (m->routed_width <= 0) {
            moe_err_set(err, "routed experts: the model's MoE shape is unknown to this server");
            code = MOE__CODE__BAD_REQUEST;
        } else if (cells > MOE_MSG_MAX_ROUTED_ENTRIES) {
            moe_err_set(err,
                        "routed experts of %zu prompt tokens + max_tokens %d would be %llu ids (%d a token), more than "
                        "the limit of %llu: ask for fewer tokens",
                        prompt->n - n0, max_tokens, (unsigned long long)cells, m->routed_width,
                        (unsigned long long)MOE_MSG_MAX_ROUTED_ENTRIES);
            code = MOE__CODE__BAD_REQUEST;
        }
    }
    /* a scored prompt (max_tokens 0) must fit as one that gets a token would:
     * the ranks' context keeps room for one */
    if (code == MOE__CODE__OK)
        code = moe_msg_check_context((int64_t)(prompt->n - n0), max_tokens ? max_tokens : 1, &m->lim, err);
    if (code != MOE__CODE__OK) {
        prompt->n = n0;
        return code;
    }
    moe_request *q = moe_xcalloc(1, sizeof *q);
    q->id = moe_xstrdup(spec->id ? spec->id : "");
    q->stream = spec->stream;
    q->sampling = spec->sampling;
    /* No seed given: draw one here, so that requests differ and the
     * request (which keeps it) replays identically. */
    if (!(q->sampling.set & (1u << MOE_SP_SEED))) moe_sampler_cfg_set_seed(&q->sampling, moe_request_fresh_seed());
    /* the spec's fields are what the rank runs (a front end may also have
     * set them in sampling: the spec's win when given) */
    if (spec->ignore_eos) {
        q->sampling.ignore_eos = true;
        q->sampling.set |= 1u << MOE_SP_IGNORE_EOS;
    }
    if (spec->min_tokens > 0) {
        q->sampling.min_tokens = spec->min_tokens;
        q->sampling.set |= 1u << MOE_SP_MIN_TOKENS;
    }
    q->logprobs = spec->logprobs < 0 ? -1 : spec->logprobs;
    q->prompt_logprobs = spec->prompt_logprobs;
    q->routed_experts = spec->routed_experts;
    q->routed_weights = spec->routed_weights;
    q->cache_salt = spec->cache_salt ? moe_cache_salt_hash(spec->cache_salt, strlen(spec->cache_salt)) : 0;
    q->max_tokens = max_tokens;
    q->deadline = spec->deadline_ms > 0 ? moe_now() + (double)spec->deadline_ms / 1000.0 : 0;
    q->n_stop = spec->n_stop;
    q->stop = moe_xcalloc(spec->n_stop ? spec->n_stop : 1, sizeof *q->stop);
    for (size_t i = 0; i < spec->n_stop; i++) q->stop[i] = moe_xstrdup(spec->stop[i]);
    if (moe_tok_stream_init(&q->ts, m->tok, MOE_TOK_STREAM_SKIP_CONTROL, err)) {
        moe_request_free(q);
        prompt->n = n0;
        return MOE__CODE__INTERNAL;
    }
    *out = q;
    return MOE__CODE__OK;
}

void moe_request_free(moe_request *q)
{
    if (!q) return;
    free(q->id);
    for (size_t i = 0; i < q->n_stop; i++) free(q->stop[i]);
    free(q->stop);
    moe_tok_stream_free(q->ts);
    free(q->text);
    free(q->chunk);
    free(q);
}

void moe_request_attach(moe_request *q, const moe_req *rec) { q->rec = rec; }

void moe_request_end(moe_request *q, moe_end_reason why, int code, const char *msg)
{
    if (q->end != MOE_END_NONE) return;
    q->end = why;
    q->code = code;
    if (msg) snprintf(q->message, sizeof q->message, "%s", msg);
}

/* ---- streaming ------------------------------------------------------------------- */

static void text_append(moe_request *q, const char *t, size_t n)
{
    if (q->text_len + n + 1 > q->text_cap) {
        q->text_cap = (q->text_len + n + 1) * 2;
        q->text = moe_xrealloc(q->text, q->text_cap);
    }
    memcpy(q->text + q->text_len, t, n);
    q->text_len += n;
    q->text[q->text_len] = 0;
}

void moe_request_decode(moe_request *q, const int32_t *out, int *n_out)
{
    moe_err err;
    while (q->n_decoded < *n_out && q->end == MOE_END_NONE) {
        const char *t;
        size_t n;
        if (moe_tok_stream_push(q->ts, out[q->n_decoded++], &t, &n, &err) == MOE_OK) text_append(q, t, n);
        /* The whole pending text is searched: a stop string may start in
         * text held back from earlier tokens. */
        for (size_t i = 0; i < q->n_stop && q->text; i++) {
            char *hit = strstr(q->text, q->stop[i]);
            if (!hit) continue;
            q->text_len = (size_t)(hit - q->text);
            q->text[q->text_len] = 0;
            q->end = MOE_END_STOP;
            q->stop_matched = true;
            *n_out = q->n_decoded;
            break;
        }
    }
    if (q->end != MOE_END_NONE || q->n_stop == 0) {
        q->sendable = q->text_len;
        return;
    }
    /* hold back the longest tail that is a proper prefix of a stop string */
    size_t keep = 0;
    for (size_t i = 0; i < q->n_stop; i++) {
        const size_t ls = strlen(q->stop[i]);
        for (size_t k = ls - 1; k > keep; k--)
            if (k <= q->text_len && !memcmp(q->text + q->text_len - k, q->stop[i], k)) {
                keep = k;
                break;
            }
    }
    q->sendable = q->text_len - keep;
}

bool moe_request_next_chunk(moe_request *q, const int32_t *out, int *n_out, moe_request_chunk *ch)
{
    moe_request_decode(q, out, n_out);
    const bool ending = q->end != MOE_END_NONE;
    if (ending) {
        /* The stream's unfinished bytes go out now, except after a stop
         * string (text past it is not the client's); a stop token keeps them. */
        const char *t;
        size_t n;
        moe_tok_stream_flush(q->ts, &t, &n);
        if (!q->stop_matched) text_append(q, t, n);
        q->sendable = q->text_len;
    }
    if (!q->stream && !ending) return false;
    if (q->n_sent >= *n_out && q->sendable == 0) return false;
    if (q->sendable + 1 > q->chunk_cap) {
        q->chunk_cap = (q->sendable + 1) * 2;
        q->chunk = moe_xrealloc(q->chunk, q->chunk_cap);
    }
    if (q->sendable) memcpy(q->chunk, q->text, q->sendable);
    q->chunk[q->sendable] = 0;
    ch->ids = out + q->n_sent;
    ch->n_ids = *n_out - q->n_sent;
    ch->index = q->n_sent;
    ch->text = q->chunk;
    ch->text_len = q->sendable;
    /* With logprobs (~200 bytes a token at 20 alternatives) a chunk holds at
     * most MOE_REQUEST_CHUNK_LOGPROBS ids, so it fits any frame; the text
     * waits for the chunk with the last ids. */
    if (q->logprobs >= 0 && ch->n_ids > MOE_REQUEST_CHUNK_LOGPROBS) {
        ch->n_ids = MOE_REQUEST_CHUNK_LOGPROBS;
        ch->text_len = 0;
        q->chunk[0] = 0;
    }
    ch->logprobs = q->logprobs >= 0 && q->rec && q->rec->lp ? q->rec->lp + q->n_sent : NULL;
    return true;
}

void moe_request_chunk_sent(moe_request *q, const moe_request_chunk *ch)
{
    MOE_ASSERT(ch->index == q->n_sent && ch->text_len <= q->text_len);
    q->n_sent = ch->index + ch->n_ids;
    if (q->text) {
        memmove(q->text, q->text + ch->text_len, q->text_len - ch->text_len + 1);
        q->text_len -= ch->text_len;
    }
    q->sendable -= ch->text_len;
}

bool moe_request_finish_due(const moe_request *q, int n_out)
{
    return q->end != MOE_END_NONE && q->n_sent >= n_out;
}

void moe_request_finish(const moe_request *q, int n_prompt, int n_out, moe_request_outcome *f)
{
    memset(f, 0, sizeof *f);
    f->end = q->end;
    f->wire_reason = moe_request_end_to_wire(q->end);
    f->reason_name = moe_request_end_name(q->end);
    f->prompt_tokens = n_prompt;
    f->completion_tokens = n_out;
    f->code = MOE__CODE__OK;
    if (q->rec) {
        f->prompt_ids = q->rec->prompt;
        f->cached_tokens = q->rec->cached_tokens;
    }
    /* all of them or none (a request that ended early may lack some) */
    if (q->prompt_logprobs && q->rec && q->rec->prompt_lp && moe_sched_prompt_logprobs_done(q->rec))
        f->prompt_logprobs = q->rec->prompt_lp;
    if (q->routed_experts && q->rec && q->rec->r_ids) {
        /* the rows of the tokens the client gets (a stop string may have
         * cut some): every one fed, the last token never is */
        const int64_t want = (int64_t)n_prompt + (n_out > 0 ? n_out - 1 : 0); /* a scored prompt: all of it */
        f->routed_ids = q->rec->r_ids;
        f->routed_w = q->rec->r_w;
        f->routed_rows = q->rec->r_rows < want ? q->rec->r_rows : want;
        f->routed_layers = q->rec->r_layers;
        f->routed_top_k = q->rec->r_top_k;
        f->routed_first_moe = q->rec->r_first_moe;
    }
    if (q->end == MOE_END_ERROR || q->end == MOE_END_DEADLINE) {
        f->code = q->end == MOE_END_DEADLINE ? MOE__CODE__DEADLINE_EXCEEDED : q->code;
        f->message = q->message;
    }
}
