/*
 * gen.c — the generate loop (gen.h).
 */
#include "gen.h"

#include "dtype.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gseq {
    moe_gen_seq pub;        /* id, user, seq, hist, n_hist, n_tokens */
    int n_chunked;
    int max_out;
    int n_out;              /* emitted, replayed ones included */
    int fed;                /* prompt tokens fed */
    int32_t last;           /* the token to feed next (decode) */
    moe_sampler_cfg sc;
    moe_sampler *smp;
    bool logprobs, prompt_lp;
    int n_top;
    int32_t *hist;          /* [n_tokens + max_out + 1] */
    uint8_t *tag;           /* [n_tokens + max_out + 1] each position's attention path (1: decompressed) */
    int16_t *r_ids;         /* routed experts [n_tokens + max_out][n_moe][K], or NULL */
    float *r_w;             /* their weights, or NULL */
    int64_t r_taken;        /* rows handed out (moe_gen_routed_take) */
    /* MTP */
    int64_t mtp_done;       /* positions below have their MTP rows */
    int32_t draft[MOE_GEN_MAX_DRAFT]; /* the next decode step's drafts */
    int n_draft;            /* how many */
    int drafting;           /* drafts the planned item carries (0: none) */
} gseq;

struct moe_gen {
    moe_engine *e;
    moe_gen_opts o;
    moe_gen_cb cb;
    int vocab;
    gseq **live;            /* [max_seqs], in arrival order */
    int n_live;
    int64_t *seq_ids;       /* [max_seqs + 1] engine sequence -> id */
    /* the planned step */
    moe_step_item *items;   /* [max_seqs] */
    gseq **item_seq;        /* [max_seqs] */
    int n_items;
    moe_token_logprobs tlp;  /* a sampled token's */
    moe_token_logprobs *plp; /* [step_tokens] a prompt chunk's */
    /* routed experts: the engine's route callback is set only while some
     * live sequence keeps them */
    gseq **by_seq;          /* [max_seqs + 1] engine sequence -> live sequence */
    int n_routed;           /* live sequences that keep routed experts */
    int first_moe, n_moe, K;
    /* MTP */
    int *item_row;          /* [max_seqs] each planned item's first row in the step */
    int64_t *item_pos0;     /* [max_seqs] and its first position */
    moe_mtp_item *mtp_items;/* [max_seqs] */
    gseq **mtp_seq;         /* [max_seqs] */
    float *chain;           /* [max_seqs][dim] the MTP block's output rows that chain the next drafts */
    uint64_t drafts, accepted, accepted_at[MOE_GEN_MAX_DRAFT];
};

int moe_gen_init(moe_gen **out, moe_engine *e, const moe_gen_opts *o, const moe_gen_cb *cb, moe_err *err)
{
    *out = NULL;
    if (o->mtp && !moe_engine_has_mtp(e)) return moe_err_set(err, "MTP: the engine was set up without the MTP block");
    const moe_kvcache *kv = moe_engine_cache(e);
    if (moe_kvcache_prefix_enabled(kv) && (!o->prefix_cache || moe_kvcache_prefix_lookahead(kv) != o->mtp))
        return moe_err_set(err, "the engine's prefix cache was set up by an earlier generate loop with other options");
    const int k_draft = o->mtp_draft < 1 ? 1 : o->mtp_draft > MOE_GEN_MAX_DRAFT ? MOE_GEN_MAX_DRAFT : o->mtp_draft;
    if (o->mtp && moe_engine_chunk_decompresses(e, 1) != moe_engine_chunk_decompresses(e, 1 + k_draft))
        return moe_err_set(err, "MTP needs a step of the token and its %d draft(s) to take the attention path of a "
                                "1-token one (decompress_min %d..%d makes it differ)", k_draft, 2, 1 + k_draft);
    if (o->max_seqs < 1 || o->max_ctx < 1 || o->step_tokens < 1 || o->prefill_chunk < 1 ||
        o->prefill_chunk > o->step_tokens)
        return moe_err_set(err, "generate loop: bad sizes (sequences %d, context %lld, step %d, chunk %d)",
                           o->max_seqs, (long long)o->max_ctx, o->step_tokens, o->prefill_chunk);
    moe_gen *g = moe_xcalloc(1, sizeof *g);
    g->e = e;
    g->o = *o;
    g->cb = *cb;
    g->vocab = moe_engine_model(e)->hp.vocab;
    g->live = moe_xcalloc((size_t)o->max_seqs, sizeof *g->live);
    g->seq_ids = moe_xcalloc((size_t)o->max_seqs + 1, sizeof *g->seq_ids);
    g->items = moe_xcalloc((size_t)o->max_seqs, sizeof *g->items);
    g->item_seq = moe_xcalloc((size_t)o->max_seqs, sizeof *g->item_seq);
    g->plp = moe_xmalloc((size_t)o->step_tokens * sizeof *g->plp);
    g->by_seq = moe_xcalloc((size_t)o->max_seqs + 1, sizeof *g->by_seq);
    g->item_row = moe_xcalloc((size_t)o->max_seqs, sizeof *g->item_row);
    g->item_pos0 = moe_xcalloc((size_t)o->max_seqs, sizeof *g->item_pos0);
    g->mtp_items = moe_xcalloc((size_t)o->max_seqs, sizeof *g->mtp_items);
    g->mtp_seq = moe_xcalloc((size_t)o->max_seqs, sizeof *g->mtp_seq);
    g->o.mtp_draft = k_draft;
    const moe_hparams *hp = &moe_engine_model(e)->hp;
    g->first_moe = hp->n_dense_lead;
    g->n_moe = hp->n_layer - hp->n_dense_lead;
    g->K = hp->n_used;
    /* with MTP a block's MTP latents read the token after it: it is part of the key */
    if (o->prefix_cache) moe_kvcache_prefix_enable(moe_engine_cache(e), moe_engine_identity(e), o->mtp);
    *out = g;
    return MOE_OK;
}

/* The gate's choices of a step's rows, kept for the sequences that asked
 * (engine thread, between the gate and the experts). */
static void on_route(void *ctx, int il, int n, const int32_t *ids, const float *w, const int *row_seq,
                     const int64_t *row_pos)
{
    moe_gen *g = ctx;
    const int K = g->K;
    const size_t width = (size_t)g->n_moe * (size_t)K, at = (size_t)(il - g->first_moe) * (size_t)K;
    for (int t = 0; t < n; t++) {
        gseq *s = g->by_seq[row_seq[t]];
        if (!s || !s->r_ids) continue;
        /* positions are below n_tokens + max_out - n_emitted (moe_gen_add) */
        const size_t o = (size_t)row_pos[t] * width + at;
        for (int j = 0; j < K; j++) s->r_ids[o + (size_t)j] = (int16_t)ids[(size_t)t * (size_t)K + (size_t)j];
        if (s->r_w) memcpy(s->r_w + o, w + (size_t)t * (size_t)K, (size_t)K * sizeof(float));
    }
}

static void route_fn_update(moe_gen *g)
{
    moe_engine_set_route_fn(g->e, g->n_routed > 0 ? on_route : NULL, g);
}

bool moe_gen_routed_take(moe_gen *g, int64_t id, moe_gen_routed *out)
{
    memset(out, 0, sizeof *out);
    gseq *s = NULL;
    for (int i = 0; i < g->n_live && !s; i++)
        if (g->live[i]->pub.id == id) s = g->live[i];
    if (!s || !s->r_ids) return false;
    const int64_t len = moe_engine_seq_len(g->e, s->pub.seq); /* positions fed */
    const size_t width = (size_t)g->n_moe * (size_t)g->K;
    out->layers = g->n_moe;
    out->top_k = g->K;
    out->first = s->r_taken;
    out->rows = len > s->r_taken ? len - s->r_taken : 0;
    out->ids = s->r_ids + (size_t)s->r_taken * width;
    out->w = s->r_w ? s->r_w + (size_t)s->r_taken * width : NULL;
    s->r_taken += out->rows;
    return true;
}

/* The prompt chunk that holds position p < n_chunked: [*c0, return value).
 * Boundaries sit at multiples of prefill_chunk from position 0, whatever the
 * step budget or a cached prefix (a chunk's attention path depends on its
 * length). */
static int chunk_of(const moe_gen *g, const gseq *s, int p, int *c0)
{
    const int C = g->o.prefill_chunk;
    *c0 = p / C * C;
    return s->n_chunked - *c0 < C ? s->n_chunked : *c0 + C;
}

static void seq_release(moe_gen *g, gseq *s)
{
    for (int i = 0; i < g->n_live; i++)
        if (g->live[i] == s) {
            memmove(&g->live[i], &g->live[i + 1], (size_t)(g->n_live - i - 1) * sizeof *g->live);
            g->n_live--;
            break;
        }
    /* a planned item must not outlive its sequence */
    for (int k = 0; k < g->n_items; k++)
        if (g->item_seq[k] == s) g->item_seq[k] = NULL;
    moe_engine_seq_free(g->e, s->pub.seq);
    g->by_seq[s->pub.seq] = NULL;
    if (s->r_ids) {
        g->n_routed--;
        route_fn_update(g);
    }
    moe_sampler_free(s->smp);
    free(s->hist);
    free(s->tag);
    free(s->r_ids);
    free(s->r_w);
    free(s);
}

void moe_gen_free(moe_gen *g)
{
    if (!g) return;
    while (g->n_live > 0) seq_release(g, g->live[0]);
    free(g->live);
    free(g->seq_ids);
    free(g->items);
    free(g->item_seq);
    free(g->plp);
    free(g->by_seq);
    free(g->item_row);
    free(g->item_pos0);
    free(g->mtp_items);
    free(g->mtp_seq);
    free(g->chain);
    free(g);
}

static gseq *find(const moe_gen *g, int64_t id)
{
    for (int i = 0; i < g->n_live; i++)
        if (g->live[i]->pub.id == id) return g->live[i];
    return NULL;
}

int moe_gen_add(moe_gen *g, const moe_gen_req *r, moe_err *err)
{
    if (g->n_live >= g->o.max_seqs) return moe_err_set(err, "this rank already runs %d sequences", g->o.max_seqs);
    if (find(g, r->id)) return moe_err_set(err, "sequence %lld is already running here", (long long)r->id);
    if (r->n_tokens < 1 || r->max_out < 0 || r->n_emitted < 0 || r->n_emitted > r->n_tokens ||
        (r->max_out > 0 && r->n_emitted >= r->max_out) || r->n_chunked < 0 || r->n_chunked > r->n_tokens)
        return moe_err_set(err, "nothing to do (prompt %d, max tokens %d, emitted %d)", r->n_tokens, r->max_out,
                           r->n_emitted);
    if (r->routed && g->o.mtp)
        return moe_err_set(err, "routed experts with MTP are not supported yet (a draft's rows would be handed out)");
    if (r->n_top < 0 || r->n_top > MOE_MAX_TOP_LOGPROBS)
        return moe_err_set(err, "%d logprob alternatives asked, at most %d", r->n_top, MOE_MAX_TOP_LOGPROBS);
    if ((int64_t)r->n_tokens + (r->max_out - r->n_emitted) > g->o.max_ctx)
        return moe_err_set(err, "prompt (%d) + tokens (%d) exceeds the context of %lld", r->n_tokens,
                           r->max_out - r->n_emitted, (long long)g->o.max_ctx);
    for (int i = 0; i < r->n_tokens; i++)
        if (r->tokens[i] < 0 || r->tokens[i] >= g->vocab)
            return moe_err_set(err, "token id %d is not in the vocabulary (0..%d)", r->tokens[i], g->vocab - 1);
    gseq *s = moe_xcalloc(1, sizeof *s);
    s->sc = r->sc;
    s->logprobs = r->logprobs;
    s->n_top = r->n_top;
    s->prompt_lp = r->prompt_logprobs;
    if (g->o.eos >= 0 && !s->sc.ignore_eos && !moe_sampler_is_stop(&s->sc, g->o.eos) &&
        s->sc.n_stop < MOE_SAMPLER_MAX_STOP)
        s->sc.stop[s->sc.n_stop++] = g->o.eos;
    if (moe_sampler_init(&s->smp, &s->sc, g->vocab, err)) {
        free(s);
        return MOE_ERR;
    }
    if (moe_engine_seq_new(g->e, &s->pub.seq, err)) {
        moe_sampler_free(s->smp);
        free(s);
        return MOE_ERR;
    }
    MOE_ASSERT(s->pub.seq >= 0 && s->pub.seq <= g->o.max_seqs);
    s->hist = moe_xmalloc(((size_t)r->n_tokens + (size_t)r->max_out + 1) * sizeof *s->hist);
    memcpy(s->hist, r->tokens, (size_t)r->n_tokens * sizeof *s->hist);
    s->pub = (moe_gen_seq){.id = r->id, .user = r->user, .seq = s->pub.seq, .hist = s->hist, .n_hist = r->n_tokens,
                           .n_tokens = r->n_tokens, .routed = r->routed};
    s->n_chunked = r->n_chunked ? r->n_chunked : r->n_tokens;
    s->max_out = r->max_out;
    s->n_out = r->n_emitted;
    /* each position's attention path: a prompt position's chunk (boundaries
     * at multiples of prefill_chunk), every later position fed alone */
    const size_t n_pos = (size_t)r->n_tokens + (size_t)r->max_out + 1;
    s->tag = moe_xmalloc(n_pos);
    for (size_t p = 0; p < n_pos; p++) {
        int c0 = 0;
        const int len = p < (size_t)s->n_chunked ? chunk_of(g, s, (int)p, &c0) - c0 : 1;
        s->tag[p] = moe_engine_chunk_decompresses(g->e, len);
    }
    moe_kvcache_seq_salt(moe_engine_cache(g->e), s->pub.seq, r->cache_salt);
    if (!r->prompt_logprobs && !r->routed) {
        /* at least the prompt's last chunked token is computed: its row */
        s->fed = (int)moe_kvcache_prefix_attach(moe_engine_cache(g->e), s->pub.seq, s->hist, s->tag,
                                                s->n_chunked - 1, s->n_chunked);
        s->pub.n_cached = s->fed;
        s->mtp_done = s->fed; /* the attached blocks' MTP latents came with them */
    }
    if (r->routed) {
        /* every position the sequence can reach: n_tokens + max_out - n_emitted,
         * within max_ctx (checked above) */
        const int more = r->max_out > r->n_emitted ? r->max_out - r->n_emitted : 0;
        const size_t cells = ((size_t)r->n_tokens + (size_t)more) * (size_t)g->n_moe * (size_t)g->K;
        s->r_ids = moe_xcalloc(cells ? cells : 1, sizeof *s->r_ids);
        if (r->routed_weights) s->r_w = moe_xcalloc(cells ? cells : 1, sizeof *s->r_w);
        g->n_routed++;
        route_fn_update(g);
    }
    g->seq_ids[s->pub.seq] = r->id;
    g->by_seq[s->pub.seq] = s;
    g->live[g->n_live++] = s;
    return MOE_OK;
}

bool moe_gen_remove(moe_gen *g, int64_t id)
{
    gseq *s = find(g, id);
    if (s) seq_release(g, s);
    return s != NULL;
}

static void end_seq(moe_gen *g, gseq *s, moe_gen_end why, const char *msg)
{
    if (g->cb.end) g->cb.end(g->cb.ctx, &s->pub, why, msg);
    seq_release(g, s);
}

void moe_gen_end_all(moe_gen *g, const char *msg)
{
    while (g->n_live > 0) end_seq(g, g->live[0], MOE_GEN_END_ERROR, msg);
}

void moe_gen_plan_step(moe_gen *g, moe_gen_plan *p)
{
    memset(p, 0, sizeof *p);
    int64_t budget = g->o.step_tokens;
    g->n_items = 0;
    for (int i = 0; i < g->n_live; i++) {
        gseq *s = g->live[i];
        moe_step_item *it = &g->items[g->n_items];
        memset(it, 0, sizeof *it);
        it->seq = s->pub.seq;
        it->logits = MOE_LOGITS_LAST;
        if (s->fed < s->n_chunked) {
            /* to the end of the chunk (a cached prefix may end inside one:
             * the rest of that chunk computes its rows by the whole chunk's
             * path) */
            int c0 = 0;
            const int c1 = chunk_of(g, s, s->fed, &c0);
            const int left = s->n_chunked - s->fed;
            const int chunk = c1 - s->fed;
            if (chunk > budget) continue; /* next step */
            it->tokens = s->hist + s->fed;
            it->n_tokens = chunk;
            it->path_len = c1 - c0;
            /* only the prompt's last chunk needs its row (lm_head skipped),
             * unless the prompt's logprobs are asked for */
            if (s->prompt_lp) it->logits = MOE_LOGITS_ALL;
            else if (chunk < left) it->logits = MOE_LOGITS_NONE;
            p->prefill += chunk;
        } else {
            if (budget < 1) continue;
            it->tokens = s->fed < s->pub.n_tokens ? s->hist + s->fed : &s->last;
            it->n_tokens = 1;
            s->drafting = 0;
            int m = s->n_draft;
            if (m > budget - 1) m = (int)budget - 1;
            if (m > 0 && s->fed >= s->pub.n_tokens) {
                /* the last sampled token and the drafts after it, every row
                 * (hist has room: n_out + n_draft < max_out) */
                memcpy(s->hist + s->pub.n_hist, s->draft, (size_t)m * sizeof *s->draft);
                it->tokens = s->hist + s->pub.n_hist - 1;
                it->n_tokens = 1 + m;
                it->logits = MOE_LOGITS_ALL;
                s->drafting = m;
            }
        }
        budget -= it->n_tokens;
        g->item_seq[g->n_items++] = s;
    }
    p->n_items = g->n_items;
    p->tokens = g->o.step_tokens - budget;
}

/* A row of logits with a NaN or an infinity (non-finite weights the load
 * checks do not cover: a big matrix, an embedding row) ends its sequence
 * with an error; sampling it would give token 0 and a normal finish. */
static bool row_finite(moe_gen *g, gseq *s, const float *row, int pos)
{
    const int64_t at = moe_f32_first_nonfinite(row, g->vocab);
    if (at < 0) return true;
    char msg[200];
    snprintf(msg, sizeof msg, "the model gave a non-finite logit (%g for token %lld) at position %d: "
             "NaN or Inf in its weights", (double)row[at], (long long)at, pos);
    MOE_LOG_LIMITED(MOE_LOG_ERROR, "sequence %lld: %s", (long long)s->pub.id, msg);
    end_seq(g, s, MOE_GEN_END_ERROR, msg);
    return false;
}

/* After a row of logits: report it, then sample unless the prompt is still
 * being fed. */
static void after_row(moe_gen *g, gseq *s, const float *row)
{
    moe_err err = {{0}};
    if (!row_finite(g, s, row, s->pub.n_hist - 1)) return;
    if (g->cb.row && g->cb.row(g->cb.ctx, &s->pub, row, &err)) {
        end_seq(g, s, MOE_GEN_END_ERROR, err.msg);
        return;
    }
    if (s->fed < s->pub.n_tokens) return; /* teacher forcing: next token is given */
    if (s->n_out >= s->max_out) {          /* max_out 0: the prompt's rows only */
        end_seq(g, s, MOE_GEN_END_LENGTH, NULL);
        return;
    }
    const int32_t t = moe_sampler_sample(s->smp, row, s->hist, s->pub.n_hist, s->pub.n_hist, s->n_out);
    s->hist[s->pub.n_hist++] = t;
    s->last = t;
    if (s->logprobs) moe_logprobs_compute(row, g->vocab, t, s->n_top, &g->tlp);
    if (g->cb.token) g->cb.token(g->cb.ctx, &s->pub, s->n_out, t, s->logprobs ? &g->tlp : NULL);
    s->n_out++;
    const bool stop = moe_sampler_is_stop(&s->sc, t);
    if (stop || s->n_out == s->max_out) end_seq(g, s, stop ? MOE_GEN_END_STOP : MOE_GEN_END_LENGTH, NULL);
}

/* The prompt logprobs an item's rows give: the row of position q scores
 * the prompt token at q + 1. */
static bool prompt_rows(moe_gen *g, gseq *s, const moe_step_item *it, int fed0)
{
    const int q0 = fed0 + it->n_tokens - it->out_rows; /* position of the first row */
    int n = 0;
    for (int r = 0; r < it->out_rows && q0 + r + 1 < s->pub.n_tokens; r++)
        if (!row_finite(g, s, it->out + (size_t)r * (size_t)g->vocab, q0 + r)) return false;
    for (int r = 0; r < it->out_rows && q0 + r + 1 < s->pub.n_tokens; r++)
        moe_logprobs_compute(it->out + (size_t)r * (size_t)g->vocab, g->vocab, s->hist[q0 + r + 1], s->n_top,
                             &g->plp[n++]);
    if (n > 0 && g->cb.prompt) g->cb.prompt(g->cb.ctx, &s->pub, q0 + 1, g->plp, n);
    return true;
}

/* A sequence's MTP rows stop (a position lacks one, or the MTP step
 * failed): no more drafts, nothing more published; its tokens unchanged. */
static void mtp_stop(gseq *s, const char *why)
{
    MOE_LOG_LIMITED(MOE_LOG_WARN, "sequence %lld: no more MTP drafts: %s", (long long)s->pub.id, why);
    s->mtp_done = INT64_MAX;
    s->n_draft = 0;
}

/* The argmax of a draft row (ties to the lower id), or the test hook's
 * choice. */
static int32_t take_draft(moe_gen *g, const gseq *s, int depth, const float *row)
{
    int32_t best = 0;
    for (int v = 1; v < g->vocab; v++)
        if (row[v] > row[best]) best = v;
    const int32_t d = g->o.draft_hook ? g->o.draft_hook(g->o.draft_ctx, &s->pub, depth, best) : best;
    return d >= 0 && d < g->vocab ? d : -1;
}

/* After the MTP pass's n items: each decoding sequence's first draft from
 * its last position's row, then up to mtp_draft - 1 more, each from the MTP
 * block run once more at the next position on its own output row and the
 * draft before (moe_mtp_item.ahead: positions the trunk has not reached;
 * those latents are drafts' and the next pass overwrites them). */
/* Takes draft number depth of s from its MTP row (logits, and the
 * block's output row x); when s can take one more draft (mtp_draft, and
 * every draft emittable), it becomes chain row *m. */
static void keep_draft(moe_gen *g, gseq *s, int depth, const float *logits, const float *x, int *m)
{
    const int32_t d = take_draft(g, s, depth, logits);
    if (d < 0) return;
    s->draft[depth] = d;
    s->n_draft = depth + 1;
    if (depth + 1 >= g->o.mtp_draft || s->n_out + depth + 2 >= s->max_out) return;
    const size_t D = (size_t)moe_engine_model(g->e)->hp.dim;
    memcpy(g->chain + (size_t)*m * D, x, D * sizeof *g->chain);
    g->mtp_seq[(*m)++] = s;
}

static void mtp_drafts(moe_gen *g, int n)
{
    const size_t D = (size_t)moe_engine_model(g->e)->hp.dim;
    int rows = 0;
    const float *out = moe_engine_mtp_hidden(g->e, &rows);
    if (!g->chain) g->chain = moe_xmalloc((size_t)g->o.max_seqs * D * sizeof *g->chain);
    int m = 0; /* the sequences that chain on: mtp_seq[0..m), their rows in chain */
    for (int i = 0, r = 0; i < n; i++) {
        const moe_mtp_item *mi = &g->mtp_items[i];
        if (mi->status != MOE_OK) continue;
        r += mi->n;
        if (mi->logits != MOE_LOGITS_NONE) keep_draft(g, g->mtp_seq[i], 0, mi->out, out + (size_t)(r - 1) * D, &m);
    }
    for (int depth = 1; m > 0; depth++) {
        for (int i = 0; i < m; i++) {
            gseq *s = g->mtp_seq[i];
            g->mtp_items[i] = (moe_mtp_item){.seq = s->pub.seq, .pos = moe_engine_seq_len(g->e, s->pub.seq) + depth - 1,
                                             .n = 1, .next = &s->draft[depth - 1], .hidden = g->chain + (size_t)i * D,
                                             .logits = MOE_LOGITS_LAST, .ahead = true};
        }
        moe_err e2 = {{0}};
        if (moe_engine_mtp_step(g->e, g->mtp_items, m, &e2) != MOE_OK) break; /* the drafts so far stand */
        out = moe_engine_mtp_hidden(g->e, &rows);
        /* the step has read the chain rows: they are rewritten in place (row k <= i) */
        int k = 0;
        for (int i = 0, r = 0; i < m; i++) {
            const moe_mtp_item *mi = &g->mtp_items[i];
            if (mi->status != MOE_OK) continue; /* no row of its own in the step */
            keep_draft(g, g->mtp_seq[i], depth, mi->out, out + (size_t)r++ * D, &k);
        }
        m = k;
    }
}

/* The MTP block on every position this step computed whose next token is
 * known, then each decoding sequence's drafts from its last position. */
static void mtp_pass(moe_gen *g)
{
    int rows = 0, n = 0;
    const float *hid = moe_engine_hidden(g->e, &rows);
    const int64_t D = moe_engine_model(g->e)->hp.dim;
    for (int k = 0; k < g->n_items; k++) {
        gseq *s = g->item_seq[k];
        if (!s || g->items[k].status != MOE_OK || g->items[k].n_tokens == 0) continue;
        const int64_t len = moe_engine_seq_len(g->e, s->pub.seq);
        const int64_t end = len < s->pub.n_hist - 1 ? len : s->pub.n_hist - 1; /* rows with a next token */
        if (end <= s->mtp_done) continue;
        /* the step computed positions step0 .. step0 + n_tokens - 1, rows
         * item_row[k] .. of the hidden states; the earlier ones have theirs */
        const int64_t p0 = s->mtp_done, step0 = g->item_pos0[k];
        if (p0 != step0 || g->item_row[k] + (end - step0) > rows) {
            mtp_stop(s, "an earlier position lacks its MTP row (its hidden state is gone)");
            continue;
        }
        /* drafts only from a sequence's last position, once it decodes, with
         * tokens left to emit after the next */
        const bool draft = end == len && s->fed >= s->pub.n_tokens && s->n_out + 1 < s->max_out;
        g->mtp_items[n] = (moe_mtp_item){.seq = s->pub.seq, .pos = p0, .n = (int)(end - p0), .next = s->hist + p0 + 1,
                                         .hidden = hid + (size_t)(g->item_row[k] + (p0 - step0)) * (size_t)D,
                                         .logits = draft ? MOE_LOGITS_LAST : MOE_LOGITS_NONE};
        g->mtp_seq[n++] = s;
    }
    if (n == 0) return;
    /* the drafts only speed things up: a failure stops them, never a sequence */
    moe_err e2 = {{0}};
    const bool failed = moe_engine_mtp_step(g->e, g->mtp_items, n, &e2) != MOE_OK;
    for (int i = 0; i < n; i++) {
        gseq *s = g->mtp_seq[i];
        const moe_mtp_item *mi = &g->mtp_items[i];
        if (failed || mi->status != MOE_OK) {
            mtp_stop(s, failed ? e2.msg : mi->err.msg);
            continue;
        }
        s->mtp_done = mi->pos + mi->n;
        s->n_draft = 0;
    }
    if (!failed) mtp_drafts(g, n);
}

void moe_gen_mtp_stats(const moe_gen *g, uint64_t *drafts, uint64_t *accepted)
{
    *drafts = g->drafts;
    *accepted = g->accepted;
}

uint64_t moe_gen_mtp_accepted_at(const moe_gen *g, int pos)
{
    return pos >= 0 && pos < MOE_GEN_MAX_DRAFT ? g->accepted_at[pos] : 0;
}

int moe_gen_step(moe_gen *g, moe_err *err)
{
    for (int k = 0; k < g->n_items; k++) /* where each item starts (the MTP block needs it) */
        g->item_pos0[k] = g->item_seq[k] ? moe_engine_seq_len(g->e, g->item_seq[k]->pub.seq) : 0;
    if (moe_engine_step(g->e, g->items, g->n_items, err)) return MOE_ERR;
    moe_kvcache *kv = moe_engine_cache(g->e);
    for (int k = 0; k < g->n_items && moe_kvcache_prefix_enabled(kv); k++) {
        const gseq *s = g->item_seq[k];
        if (!s || g->items[k].status != MOE_OK) continue;
        int64_t len = moe_engine_seq_len(g->e, s->pub.seq);
        /* with MTP only positions with their MTP latents (the last step's
         * get theirs after the callbacks: published a step later) */
        if (g->o.mtp && s->mtp_done == INT64_MAX) continue; /* its MTP rows stopped */
        if (g->o.mtp && s->mtp_done < len) len = s->mtp_done;
        moe_kvcache_prefix_publish(kv, s->pub.seq, s->hist, s->tag, len);
    }
    for (int k = 0, row = 0; k < g->n_items; k++) { /* each item's rows in the step, for the MTP block */
        g->item_row[k] = row;
        if (g->items[k].status == MOE_OK) row += g->items[k].n_tokens;
    }
    for (int k = 0; k < g->n_items; k++) {
        const moe_step_item *it = &g->items[k];
        gseq *s = g->item_seq[k];
        if (!s) continue; /* dropped by a callback earlier in this step */
        if (it->status != MOE_OK) {
            end_seq(g, s, MOE_GEN_END_ERROR, it->err.msg);
            continue;
        }
        if (s->drafting) {
            /* row 0 is sampled as without MTP; row i + 1 counts only if rows
             * 0..i gave drafts 0..i */
            const int m = s->drafting;
            s->drafting = 0;
            const int64_t len = moe_engine_seq_len(g->e, s->pub.seq), len0 = len - m; /* with the token, not the drafts */
            g->drafts += (uint64_t)m;
            /* the callbacks see the sequence as without MTP: a draft's
             * position joins it only once accepted (its latents stay in place) */
            moe_engine_seq_truncate(g->e, s->pub.seq, len0);
            for (int i = 0; i <= m; i++) {
                after_row(g, s, it->out + (size_t)i * (size_t)g->vocab);
                if (!g->item_seq[k] || i == m || s->last != s->draft[i]) break; /* ended, or a draft missed */
                g->accepted++;
                g->accepted_at[i]++;
                moe_engine_seq_untruncate(g->e, s->pub.seq, len0 + i + 1);
            }
            continue;
        }
        const int fed0 = s->fed;
        s->fed += s->fed < s->pub.n_tokens ? it->n_tokens : 0;
        if (it->out_rows <= 0) continue;
        if (s->prompt_lp && fed0 < s->pub.n_tokens && !prompt_rows(g, s, it, fed0)) continue;
        if (fed0 < s->n_chunked && s->fed < s->n_chunked) continue; /* a chunk before the last: rows for the above only */
        after_row(g, s, it->out + (size_t)(it->out_rows - 1) * (size_t)g->vocab);
    }
    if (g->o.mtp) mtp_pass(g);
    g->n_items = 0; /* the plan is used up */
    return MOE_OK;
}

int moe_gen_live(const moe_gen *g) { return g->n_live; }

int moe_gen_live_ids(const moe_gen *g, int64_t *ids, int max)
{
    int n = 0;
    for (int i = 0; i < g->n_live && n < max; i++) ids[n++] = g->live[i]->pub.id;
    return n;
}

int64_t moe_gen_free_tokens(const moe_gen *g)
{
    int64_t used = 0;
    for (int i = 0; i < g->n_live; i++) used += g->live[i]->pub.n_tokens + g->live[i]->max_out;
    const int64_t total = (int64_t)g->o.max_seqs * (g->o.max_ctx - 1);
    return total > used ? total - used : 0;
}

const int64_t *moe_gen_seq_ids(const moe_gen *g) { return g->seq_ids; }

int32_t moe_gen_token_at(const moe_gen *g, int seq, int64_t pos)
{
    const gseq *s = seq >= 0 && seq <= g->o.max_seqs ? g->by_seq[seq] : NULL;
    return s && pos >= 0 && pos < s->pub.n_hist ? s->hist[pos] : -1;
}
