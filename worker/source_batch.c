/*
 * source_batch.c — requests from a batch file (source.h), in the one
 * request-line format (core/reqline.h): ids or text prompts, sampling
 * options, stop ids.  A bad line becomes that request's error; the others
 * run.  Stop strings need the coordinator's detokenizer and are refused
 * here; deadline_ms is the server's and is ignored (a batch runs every
 * request to its end).
 */
#include "source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "reqline.h"
#include "tokenizer.h"

typedef struct breq {
    int32_t *prompt;
    int n_prompt;
    int n_gen;
    moe_sampler_cfg sc;
    int logprobs;        /* -1: none */
    bool prompt_lp;
    int rank;            /* owner (a bad line: rank 0, which reports it) */
    /* owner only */
    int32_t *out;        /* [n_gen] */
    int n_out;
    FILE *dump;
    FILE *lp;            /* DIR/req<i>.logprobs */
    bool done;
    bool replay_due, replayed;
    char error[MOE_ERR_MSG_MAX];
} breq;

struct moe_source_batch {
    moe_batch_opts o;
    int me;
    breq *reqs;
    int n;
    int vocab;
};

/* ---- the file ---- */

/* One parsed line into a request: its prompt ids (text through the model's
 * tokenizer, loaded on first use), checked against the model. */
static int make_request(const moe_reqline *l, const moe_model *m, moe_tokenizer **tok, breq *r, moe_err *err)
{
    const moe_hparams *hp = &m->hp;
    if (l->kind == MOE_REQLINE_BAD) return moe_err_set(err, "%s", l->error);
    if (l->n_stop) return moe_err_set(err, "line %d: stop strings need the coordinator (use stop_id= here)", l->line);
    size_t n = l->n_ids;
    if (l->kind == MOE_REQLINE_TEXT) {
        if (!*tok && moe_tokenizer_load(tok, m->gguf, err)) return moe_err_prefix(err, "line %d: tokenizer", l->line);
        moe_tokens ids = {0};
        if (moe_tokenizer_encode_prompt(*tok, l->text, l->text_len, &ids, err)) {
            moe_tokens_free(&ids);
            return moe_err_prefix(err, "line %d", l->line);
        }
        n = ids.n;
        r->prompt = moe_xmalloc((n ? n : 1) * sizeof *r->prompt);
        memcpy(r->prompt, ids.ids, n * sizeof *r->prompt);
        moe_tokens_free(&ids);
    } else {
        r->prompt = moe_xmalloc(n * sizeof *r->prompt);
        memcpy(r->prompt, l->ids, n * sizeof *r->prompt);
    }
    if (n == 0 || n > MOE_REQLINE_MAX_TOKENS) return moe_err_set(err, "line %d: the prompt has %zu tokens", l->line, n);
    r->n_prompt = (int)n;
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] >= hp->vocab)
            return moe_err_set(err, "line %d: prompt id %d: %d is not in 0..%d", l->line, i + 1, r->prompt[i], hp->vocab - 1);
    r->n_gen = l->max_tokens;
    if ((int64_t)r->n_prompt + r->n_gen > hp->ctx_train)
        return moe_err_set(err, "line %d: prompt (%d) + generated (%d) exceeds the model's context (%lld)", l->line,
                           r->n_prompt, r->n_gen, (long long)hp->ctx_train);
    r->sc = l->sampling;
    r->logprobs = l->logprobs;
    r->prompt_lp = l->prompt_logprobs;
    for (size_t i = 0; i < l->n_stop_ids; i++) {
        if (l->stop_ids[i] >= hp->vocab)
            return moe_err_set(err, "line %d: stop_id %d is not in 0..%d", l->line, l->stop_ids[i], hp->vocab - 1);
        if (moe_sampler_is_stop(&r->sc, l->stop_ids[i])) continue;
        if (r->sc.n_stop >= MOE_SAMPLER_MAX_STOP)
            return moe_err_set(err, "line %d: more than %d stop ids", l->line, MOE_SAMPLER_MAX_STOP);
        r->sc.stop[r->sc.n_stop++] = l->stop_ids[i];
    }
    return MOE_OK;
}

static int read_batch(moe_source_batch *b, const moe_model *m, moe_err *err)
{
    moe_reqline_list list = {0};
    if (moe_reqline_list_read(b->o.path, NULL, &list, err)) return MOE_ERR;
    if (list.n == 0) {
        moe_reqline_list_free(&list);
        return moe_err_set(err, "%s: no requests", b->o.path);
    }
    b->reqs = moe_xcalloc(list.n, sizeof *b->reqs);
    b->n = (int)list.n;
    moe_tokenizer *tok = NULL;
    for (size_t i = 0; i < list.n; i++) {
        breq *r = &b->reqs[i];
        moe_err e = {{0}};
        if (make_request(&list.items[i], m, &tok, r, &e)) {
            /* this request fails alone; rank 0 reports it */
            free(r->prompt);
            memset(r, 0, sizeof *r);
            r->done = true;
            snprintf(r->error, sizeof r->error, "%s", e.msg);
        }
    }
    moe_tokenizer_free(tok);
    moe_reqline_list_free(&list);
    return MOE_OK;
}

/* Longest first, then input order: a total order, so every rank agrees. */
typedef struct by_len {
    int64_t len;
    int index;
} by_len;

static int cmp_by_len(const void *a, const void *b)
{
    const by_len *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Each request to the rank with the fewest tokens so far (ties: lowest). */
static void place(moe_source_batch *b, int n_rank)
{
    int64_t *load = moe_xcalloc((size_t)n_rank, sizeof *load);
    by_len *order = moe_xmalloc((size_t)(b->n ? b->n : 1) * sizeof *order);
    for (int i = 0; i < b->n; i++) order[i] = (by_len){(int64_t)b->reqs[i].n_prompt + b->reqs[i].n_gen, i};
    qsort(order, (size_t)b->n, sizeof *order, cmp_by_len);
    for (int i = 0; i < b->n; i++) {
        breq *r = &b->reqs[order[i].index];
        if (r->done) continue; /* a bad line: rank 0 reports it */
        int best = 0;
        for (int q = 1; q < n_rank; q++)
            if (load[q] < load[best]) best = q;
        r->rank = best;
        load[best] += r->n_prompt + r->n_gen;
    }
    free(order);
    free(load);
}

int moe_source_batch_open(moe_source_batch **out, const moe_batch_opts *o, const moe_model *m, int rank, int n_rank,
                          moe_err *err)
{
    moe_source_batch *b = moe_xcalloc(1, sizeof *b);
    b->o = *o;
    b->me = rank;
    b->vocab = m->hp.vocab;
    *out = b;
    if (read_batch(b, m, err)) return MOE_ERR;
    place(b, n_rank);
    return MOE_OK;
}

moe_source_batch *moe_source_batch_empty(double linger)
{
    moe_source_batch *b = moe_xcalloc(1, sizeof *b);
    b->o.linger = linger;
    return b;
}

void moe_source_batch_free(moe_source_batch *b)
{
    if (!b) return;
    for (int i = 0; i < b->n; i++) {
        if (b->reqs[i].dump) fclose(b->reqs[i].dump);
        if (b->reqs[i].lp) fclose(b->reqs[i].lp);
        free(b->reqs[i].prompt);
        free(b->reqs[i].out);
    }
    free(b->reqs);
    free(b);
}

void moe_source_batch_sizes(const moe_source_batch *b, int block, int *n_seqs, int64_t *max_len, int64_t *cache_tokens)
{
    *n_seqs = 0;
    *max_len = 1;
    *cache_tokens = 0;
    for (int i = 0; i < b->n; i++)
        if (b->reqs[i].rank == b->me && !b->reqs[i].done) {
            ++*n_seqs;
            const int64_t len = b->reqs[i].n_prompt + b->reqs[i].n_gen + 1;
            if (len > *max_len) *max_len = len;
            *cache_tokens += len + block; /* room for partial blocks */
        }
}

int moe_source_batch_owned(const moe_source_batch *b)
{
    int n = 0;
    for (int i = 0; i < b->n; i++) n += b->reqs[i].rank == b->me;
    return n;
}

int moe_source_batch_start(moe_source_batch *b, moe_gen *g, moe_err *err)
{
    for (int i = 0; i < b->n; i++) {
        breq *r = &b->reqs[i];
        if (r->rank != b->me || r->done) continue;
        r->out = moe_xmalloc((size_t)(r->n_gen ? r->n_gen : 1) * sizeof *r->out);
        if (b->o.dump_dir) {
            char path[4096];
            snprintf(path, sizeof path, "%s/req%d.logits.f32", b->o.dump_dir, i);
            if (!(r->dump = fopen(path, "wb"))) return moe_err_set(err, "%s: %s", path, strerror(errno));
            snprintf(path, sizeof path, "%s/req%d.logprobs", b->o.dump_dir, i);
            if (r->logprobs >= 0 && !(r->lp = fopen(path, "w"))) return moe_err_set(err, "%s: %s", path, strerror(errno));
        }
        const moe_gen_req gr = {.id = i, .user = r, .tokens = r->prompt, .n_tokens = r->n_prompt, .max_out = r->n_gen,
                                .sc = r->sc, .logprobs = r->logprobs >= 0, .n_top = r->logprobs >= 0 ? r->logprobs : 0,
                                .prompt_logprobs = r->prompt_lp};
        if (moe_gen_add(g, &gr, err)) return MOE_ERR;
    }
    return MOE_OK;
}

/* ---- the source's operations ---- */

/* --replay-after: what a restarted job does with a sequence in flight
 * (docs/engine.md, "Replay"): prompt + the tokens already emitted, the
 * prompt in the same chunks, the emitted tokens fed one per step. */
static void b_poll(void *ctx, moe_gen *g)
{
    moe_source_batch *b = ctx;
    for (int i = 0; i < b->n; i++) {
        breq *r = &b->reqs[i];
        if (r->rank != b->me || r->done || !r->replay_due) continue;
        r->replay_due = false;
        r->replayed = true;
        moe_gen_remove(g, i);
        if (r->dump) { /* the replay's rows replace the first run's */
            if (fflush(r->dump) != 0 || ftruncate(fileno(r->dump), 0) != 0) {
                snprintf(r->error, sizeof r->error, "logits file: %s", strerror(errno));
                r->done = true;
                continue;
            }
            rewind(r->dump);
        }
        int32_t *toks = moe_xmalloc(((size_t)r->n_prompt + (size_t)r->n_out) * sizeof *toks);
        memcpy(toks, r->prompt, (size_t)r->n_prompt * sizeof *toks);
        memcpy(toks + r->n_prompt, r->out, (size_t)r->n_out * sizeof *toks);
        const moe_gen_req gr = {.id = i, .user = r, .tokens = toks, .n_tokens = r->n_prompt + r->n_out,
                                .n_chunked = r->n_prompt, .n_emitted = r->n_out, .max_out = r->n_gen, .sc = r->sc,
                                .logprobs = r->logprobs >= 0, .n_top = r->logprobs >= 0 ? r->logprobs : 0};
        moe_err err = {{0}};
        if (moe_gen_add(g, &gr, &err)) {
            snprintf(r->error, sizeof r->error, "%s", err.msg);
            r->done = true;
        }
        free(toks);
    }
}
static void b_beat(void *ctx) { (void)ctx; }

static bool b_stay(void *ctx, double idle_s)
{
    const moe_source_batch *b = ctx;
    return idle_s < b->o.linger;
}

static void b_idle(void *ctx, int ms)
{
    (void)ctx;
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

static int b_row(void *ctx, const moe_gen_seq *s, const float *logits, moe_err *err)
{
    const moe_source_batch *b = ctx;
    breq *r = s->user;
    if (r->dump && fwrite(logits, sizeof(float), (size_t)b->vocab, r->dump) != (size_t)b->vocab)
        return moe_err_set(err, "writing logits failed");
    return MOE_OK;
}

/* One position of DIR/req<i>.logprobs: KIND POS ID LOGPROB then ID:LOGPROB
 * per alternative, floats as %.9g (they read back to the same bits). */
static void lp_line(FILE *f, char kind, int pos, const moe_token_logprobs *lp)
{
    fprintf(f, "%c %d %d %.9g", kind, pos, lp->id, (double)lp->logprob);
    for (int k = 0; k < lp->n_top; k++) fprintf(f, " %d:%.9g", lp->top[k].id, (double)lp->top[k].logprob);
    fputc('\n', f);
}

static void b_prompt(void *ctx, const moe_gen_seq *s, int first, const moe_token_logprobs *lp, int n)
{
    (void)ctx;
    breq *r = s->user;
    for (int i = 0; i < n && r->lp; i++) lp_line(r->lp, 'P', first + i, &lp[i]);
}

static void b_token(void *ctx, const moe_gen_seq *s, int index, int32_t tok, const moe_token_logprobs *lp)
{
    breq *r = s->user;
    if (lp && r->lp) lp_line(r->lp, 'T', index, lp);
    MOE_ASSERT(index >= 0 && index < r->n_gen);
    r->out[index] = tok;
    r->n_out = index + 1;
    const moe_source_batch *b = ctx;
    if (b->o.replay_after > 0 && r->n_out == b->o.replay_after && !r->replayed) r->replay_due = true;
}

static void b_end(void *ctx, const moe_gen_seq *s, moe_gen_end why, const char *msg)
{
    (void)ctx, (void)why;
    breq *r = s->user;
    r->done = true;
    r->replay_due = false;
    if (msg) snprintf(r->error, sizeof r->error, "%s", msg);
    if (r->dump) {
        if (fclose(r->dump) != 0 && !r->error[0]) snprintf(r->error, sizeof r->error, "logits file: %s", strerror(errno));
        r->dump = NULL;
    }
    if (r->lp) {
        if (fclose(r->lp) != 0 && !r->error[0]) snprintf(r->error, sizeof r->error, "logprobs file: %s", strerror(errno));
        r->lp = NULL;
    }
}

static const moe_source_ops BATCH_OPS = {
    .name = "batch", .poll = b_poll, .beat = b_beat, .stay = b_stay, .idle = b_idle,
    .row = b_row, .token = b_token, .prompt = b_prompt, .end = b_end,
};

moe_source moe_source_batch_source(moe_source_batch *b) { return (moe_source){&BATCH_OPS, b}; }

/* ---- results ---- */

int moe_source_batch_report(moe_source_batch *b, moe_comm *c)
{
    char *mine = NULL;
    size_t n_mine = 0;
    FILE *f = open_memstream(&mine, &n_mine);
    if (!f) moe_comm_abort(c, 6, "open_memstream failed"); /* out of memory */
    for (int i = 0; i < b->n; i++) {
        const breq *r = &b->reqs[i];
        if (r->rank != b->me) continue;
        fprintf(f, "%d", i);
        if (r->error[0]) fprintf(f, " error: %s", r->error);
        else if (!r->done) fprintf(f, " error: stopped before it finished");
        else
            for (int k = 0; k < r->n_out; k++) fprintf(f, " %d", r->out[k]);
        fprintf(f, "\n");
    }
    fclose(f);
    char *all = moe_comm_gather_bytes(c, mine, (int64_t)n_mine, NULL);
    int64_t failed = 0;
    if (b->me == 0 && b->n > 0) {
        char **line_of = moe_xcalloc((size_t)b->n, sizeof *line_of);
        for (char *p = all, *nl; p && (nl = strchr(p, '\n')); p = nl + 1) {
            *nl = 0;
            const int idx = atoi(p);
            if (idx >= 0 && idx < b->n) line_of[idx] = strchr(p, ' ') ? strchr(p, ' ') + 1 : (char *)"";
        }
        for (int i = 0; i < b->n; i++) {
            printf("%s\n", line_of[i] ? line_of[i] : "error: lost");
            failed += !line_of[i] || !strncmp(line_of[i], "error:", 6);
        }
        fflush(stdout);
        free(line_of);
    }
    free(all);
    free(mine);
    moe_comm_sum_i64(c, &failed, 1); /* rank 0's count, known to all */
    return (int)failed;
}
