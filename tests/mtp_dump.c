/*
 * mtp_dump.c — the engine's MTP draft rows for tests/mtp_ref.py, and the
 * MTP step's own invariance.
 *
 *   mtp_dump MODEL.gguf DIR TOKENS [exact|int8]
 *
 * Prefills TOKENS (comma-separated ids) in one step with every row's
 * logits (DIR/trunk.f32), then runs the MTP block on positions 0 .. n-2
 * (the trunk's hidden state of each, the next prompt token) in one MTP
 * step (DIR/mtp.f32: n-1 rows of draft logits).  Checks on its own that
 * the draft rows are bitwise the same when a second sequence (with other
 * batch-mates: the first one's rows again) feeds the prompt in two chunks
 * and the MTP rows in three pieces, as a decode loop would, and that bad
 * MTP items fail alone (a row past the sequence, a bad token).  Then the
 * generate loop with MTP (gen.h): every draft it takes from the MTP block
 * (recorded through its draft hook) is the argmax of the MTP row that one
 * MTP step over the whole history (prompt + generated) gives for that
 * position, so the loop feeds the block the right hidden states, tokens
 * and positions.
 * Exit 0 only if every check holds.
 */
#include "check.h"

#include <stdlib.h>

#include "engine.h"
#include "gen.h"

#define MAX_T 128
#define GEN_N 24

/* chained drafts (depth 1) by completion index */
static int32_t g_chain[MAX_T];
static int32_t record_chain(void *ctx, const moe_gen_seq *s, int depth, int32_t mtp_draft)
{
    (void)ctx;
    const int64_t idx = s->n_hist - s->n_tokens + depth;
    if (depth == 1 && idx >= 0 && idx < MAX_T) g_chain[idx] = mtp_draft;
    return mtp_draft;
}

/* the generate loop's drafts, by completion index, its tokens and rows */
typedef struct drafts {
    int32_t at[MAX_T];
    int32_t toks[MAX_T];
    int n_toks;
    float *rows;             /* [MAX_T][vocab] or NULL */
    int n_rows, vocab;
    int64_t cached;
} drafts;

static int rec_row(void *ctx, const moe_gen_seq *s, const float *logits, moe_err *err)
{
    (void)err;
    drafts *d = ctx;
    d->cached = s->n_cached;
    if (d->rows && d->n_rows < MAX_T) memcpy(d->rows + (size_t)d->n_rows * d->vocab, logits, (size_t)d->vocab * sizeof(float));
    d->n_rows++;
    return MOE_OK;
}

/* One request through a generate loop with MTP (and prefix caching: pc)
 * on engine e, to its end. */
static void run_gen(moe_engine *e, moe_gen *g, const int32_t *tok, int n, drafts *d)
{
    memset(d->at, 0xff, sizeof d->at);
    d->n_toks = d->n_rows = 0;
    moe_err err;
    moe_gen_req rq = {.id = 1, .tokens = tok, .n_tokens = n, .max_out = GEN_N};
    moe_sampler_cfg_default(&rq.sc);
    CHECK_MSG(moe_gen_add(g, &rq, &err) == MOE_OK, "%s", err.msg);
    for (int guard = 0; moe_gen_live(g) > 0 && guard < 4 * MAX_T; guard++) {
        moe_gen_plan p;
        moe_gen_plan_step(g, &p);
        CHECK(moe_gen_step(g, &err) == MOE_OK);
    }
    (void)e;
}

static int32_t record_draft(void *ctx, const moe_gen_seq *s, int depth, int32_t mtp_draft)
{
    drafts *d = ctx;
    if (depth > 0) return mtp_draft; /* the first drafts only */
    const int64_t idx = s->n_hist - s->n_tokens;
    if (idx >= 0 && idx < MAX_T) d->at[idx] = mtp_draft;
    return mtp_draft;
}

static void rec_token(void *ctx, const moe_gen_seq *s, int index, int32_t tok, const moe_token_logprobs *lp)
{
    (void)s;
    (void)lp;
    drafts *d = ctx;
    if (index < MAX_T) d->toks[index] = tok;
    d->n_toks = index + 1;
}

static int32_t argmax(const float *row, int n)
{
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (row[i] > row[b]) b = i;
    return b;
}

static int write_rows(const char *dir, const char *name, const float *rows, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(rows, sizeof(float), n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "mtp_dump: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: mtp_dump MODEL.gguf DIR TOKENS [exact|int8]\n");
        return 2;
    }
    int32_t tok[MAX_T];
    int n = 0;
    for (char *s = argv[3], *end; *s && n < MAX_T; s = *end ? end + 1 : end) tok[n++] = (int32_t)strtol(s, &end, 10);
    const bool int8 = argc > 4 && !strcmp(argv[4], "int8");
    moe_err err;
    moe_model *m = NULL;
    if (moe_model_open(&m, argv[1], &err)) {
        fprintf(stderr, "mtp_dump: %s\n", err.msg);
        return 1;
    }
    const int V = m->hp.vocab, D = m->hp.dim;
    moe_engine_opts o;
    moe_engine_opts_default(&o);
    o.max_ctx = MAX_T;
    o.max_seqs = 4;
    o.max_batch_tokens = 2 * MAX_T;
    o.decompress_min = 0; /* absorbed everywhere: the whole-history step below computes as the loop did */
    o.act_q8 = int8;
    o.mtp = true;
    o.n_threads = 2;
    o.par_min_cost = 0;
    moe_engine *e = NULL;
    if (moe_engine_init(&e, m, &o, &err)) {
        fprintf(stderr, "mtp_dump: %s\n", err.msg);
        return 1;
    }
    float *hid = malloc((size_t)MAX_T * D * sizeof(float)), *draft = malloc((size_t)MAX_T * V * sizeof(float));
    int a = -1, b = -1;
    CHECK(moe_engine_seq_new(e, &a, &err) == MOE_OK && moe_engine_seq_new(e, &b, &err) == MOE_OK);
    /* sequence a: the prompt in one step, every row */
    moe_step_item it = {.seq = a, .tokens = tok, .n_tokens = n, .logits = MOE_LOGITS_ALL};
    CHECK_MSG(moe_engine_step(e, &it, 1, &err) == MOE_OK && it.status == MOE_OK, "%s", it.err.msg);
    if (write_rows(argv[2], "trunk.f32", it.out, (size_t)n * V)) return 1;
    int rows = 0;
    memcpy(hid, moe_engine_hidden(e, &rows), (size_t)n * D * sizeof(float));
    CHECK(rows == n);
    moe_mtp_item mi = {.seq = a, .pos = 0, .n = n - 1, .next = tok + 1, .hidden = hid, .logits = MOE_LOGITS_ALL};
    CHECK_MSG(moe_engine_mtp_step(e, &mi, 1, &err) == MOE_OK && mi.status == MOE_OK, "%s", mi.err.msg);
    memcpy(draft, mi.out, (size_t)(n - 1) * V * sizeof(float));
    if (write_rows(argv[2], "mtp.f32", draft, (size_t)(n - 1) * V)) return 1;

    /* sequence b: chunks of k and n - k; MTP rows [0, k-1) after the first,
     * then [k-1, n-2) and [n-2, n-1) after the second (the last as a decode
     * step would add it), beside an MTP row of a */
    const int k = n / 2;
    float *hb = malloc((size_t)MAX_T * D * sizeof(float));
    /* both chunks take the whole prompt's attention path (path_len), as the
     * chunk a cached prefix cuts short does */
    moe_step_item ib = {.seq = b, .tokens = tok, .n_tokens = k, .logits = MOE_LOGITS_LAST, .path_len = n};
    CHECK(moe_engine_step(e, &ib, 1, &err) == MOE_OK && ib.status == MOE_OK);
    memcpy(hb, moe_engine_hidden(e, &rows), (size_t)k * D * sizeof(float));
    moe_mtp_item m1 = {.seq = b, .pos = 0, .n = k - 1, .next = tok + 1, .hidden = hb, .logits = MOE_LOGITS_ALL};
    CHECK(moe_engine_mtp_step(e, &m1, 1, &err) == MOE_OK && m1.status == MOE_OK);
    CHECK_MSG(!memcmp(m1.out, draft, (size_t)(k - 1) * V * sizeof(float)), "first MTP piece differs");
    ib = (moe_step_item){.seq = b, .tokens = tok + k, .n_tokens = n - k, .logits = MOE_LOGITS_LAST, .path_len = n};
    CHECK(moe_engine_step(e, &ib, 1, &err) == MOE_OK && ib.status == MOE_OK);
    memcpy(hb + (size_t)k * D, moe_engine_hidden(e, &rows), (size_t)(n - k) * D * sizeof(float));
    moe_mtp_item two[2] = {
        {.seq = b, .pos = k - 1, .n = n - 1 - k, .next = tok + k, .hidden = hb + (size_t)(k - 1) * D,
         .logits = MOE_LOGITS_LAST}, /* only its last row's logits */
        {.seq = a, .pos = n, .n = 1, .next = tok, .hidden = hid}, /* past a's length: its own error */
    };
    CHECK(moe_engine_mtp_step(e, two, 2, &err) == MOE_OK);
    CHECK(two[0].status == MOE_OK && two[1].status == MOE_ERR);
    CHECK_CONTAINS(two[1].err.msg, "not all computed");
    CHECK_MSG(!memcmp(two[0].out, draft + (size_t)(n - 3) * V, (size_t)V * sizeof(float)),
              "second MTP piece's last row differs");
    moe_mtp_item last = {.seq = b, .pos = n - 2, .n = 1, .next = tok + n - 1, .hidden = hb + (size_t)(n - 2) * D,
                         .logits = MOE_LOGITS_LAST};
    CHECK(moe_engine_mtp_step(e, &last, 1, &err) == MOE_OK && last.status == MOE_OK);
    CHECK_MSG(!memcmp(last.out, draft + (size_t)(n - 2) * V, (size_t)V * sizeof(float)), "last MTP row differs");
    moe_mtp_item bad = {.seq = b, .pos = 0, .n = 1, .next = (const int32_t[]){-1}, .hidden = hb};
    CHECK(moe_engine_mtp_step(e, &bad, 1, &err) == MOE_OK && bad.status == MOE_ERR);
    CHECK_CONTAINS(bad.err.msg, "not in 0..");
    /* malformed calls */
    moe_mtp_item big = {.seq = b, .pos = 0, .n = 3 * MAX_T, .next = tok, .hidden = hb};
    CHECK(moe_engine_mtp_step(e, &big, 1, &err) == MOE_ERR);
    moe_mtp_item twice[2] = {{.seq = b, .pos = 0, .n = 1, .next = tok + 1, .hidden = hb},
                             {.seq = b, .pos = 1, .n = 1, .next = tok + 2, .hidden = hb}};
    CHECK(moe_engine_mtp_step(e, twice, 2, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "twice");
    moe_engine_seq_free(e, a);
    moe_engine_seq_free(e, b);

    /* the generate loop's drafts against one MTP step over the history */
    drafts d;
    memset(&d, 0xff, sizeof d.at);
    d.n_toks = 0;
    const moe_gen_opts go = {.max_seqs = 2, .max_ctx = MAX_T, .step_tokens = 2 * MAX_T, .prefill_chunk = 7, .eos = -1,
                             .mtp = true, .draft_hook = record_draft, .draft_ctx = &d};
    const moe_gen_cb cb = {.ctx = &d, .token = rec_token};
    moe_gen *g = NULL;
    moe_gen_req rq = {.id = 1, .tokens = tok, .n_tokens = n, .max_out = GEN_N};
    moe_sampler_cfg_default(&rq.sc);
    CHECK_MSG(moe_gen_init(&g, e, &go, &cb, &err) == MOE_OK && moe_gen_add(g, &rq, &err) == MOE_OK, "%s", err.msg);
    for (int guard = 0; g && moe_gen_live(g) > 0 && guard < 4 * MAX_T; guard++) {
        moe_gen_plan p;
        moe_gen_plan_step(g, &p);
        CHECK(moe_gen_step(g, &err) == MOE_OK);
    }
    uint64_t nd = 0, na = 0;
    if (g) moe_gen_mtp_stats(g, &nd, &na);
    moe_gen_free(g);
    CHECK(d.n_toks == GEN_N && nd > 0);
    int32_t all[MAX_T];
    memcpy(all, tok, (size_t)n * sizeof *all);
    memcpy(all + n, d.toks, (size_t)GEN_N * sizeof *all);
    const int T = n + GEN_N - 1; /* the last token is never fed */
    int c = -1;
    CHECK(moe_engine_seq_new(e, &c, &err) == MOE_OK);
    it = (moe_step_item){.seq = c, .tokens = all, .n_tokens = T, .logits = MOE_LOGITS_LAST, .path_len = 0};
    CHECK(moe_engine_step(e, &it, 1, &err) == MOE_OK && it.status == MOE_OK);
    memcpy(hid, moe_engine_hidden(e, &rows), (size_t)T * D * sizeof(float));
    mi = (moe_mtp_item){.seq = c, .pos = 0, .n = T, .next = all + 1, .hidden = hid, .logits = MOE_LOGITS_ALL};
    CHECK(moe_engine_mtp_step(e, &mi, 1, &err) == MOE_OK && mi.status == MOE_OK);
    int checked = 0;
    for (int i = 1; i < GEN_N; i++) { /* the draft for completion index i comes from position n + i - 2 */
        if (d.at[i] < 0) continue;
        const int32_t want = argmax(mi.out + (size_t)(n + i - 2) * V, V);
        CHECK_MSG(d.at[i] == want, "draft for token %d: the loop took %d, the MTP block over the history says %d", i,
                  d.at[i], want);
        checked++;
    }
    CHECK_MSG(checked >= GEN_N / 2, "only %d drafts checked", checked);

    /* MTP with prefix caching: a block's MTP latents read the token after
     * it, so a prompt that shares 2 blocks of 16 but not the token after
     * them reuses only the first block, and one that shares 33 tokens
     * reuses both; drafts, tokens and rows are a cold engine's */
    o.block_size = 16;
    moe_engine *warm = NULL, *cold = NULL;
    CHECK(moe_engine_init(&warm, m, &o, &err) == MOE_OK && moe_engine_init(&cold, m, &o, &err) == MOE_OK);
    moe_gen_opts gw = go, gc = go;
    gw.prefix_cache = true;
    gw.draft_hook = gc.draft_hook = record_draft;
    drafts dw = {.vocab = V, .rows = malloc((size_t)MAX_T * V * sizeof(float))};
    drafts dc = {.vocab = V, .rows = malloc((size_t)MAX_T * V * sizeof(float))};
    gw.draft_ctx = &dw;
    gc.draft_ctx = &dc;
    const moe_gen_cb cbw = {.ctx = &dw, .token = rec_token, .row = rec_row};
    const moe_gen_cb cbc = {.ctx = &dc, .token = rec_token, .row = rec_row};
    moe_gen *g1 = NULL, *g2 = NULL;
    CHECK_MSG(moe_gen_init(&g1, warm, &gw, &cbw, &err) == MOE_OK, "%s", err.msg);
    CHECK_MSG(moe_gen_init(&g2, cold, &gc, &cbc, &err) == MOE_OK, "%s", err.msg);
    if (g1 && g2 && n >= 36) {
        int32_t pa[MAX_T], pb[MAX_T];
        for (int i = 0; i < n; i++) pa[i] = pb[i] = tok[i];
        run_gen(warm, g1, pa, n, &dw); /* publishes its prompt's blocks (and more) */
        const int shares[] = {32, 33};
        const int64_t want[] = {16, 32};
        for (int c2 = 0; c2 < 2; c2++) {
            for (int i = 0; i < n; i++) pb[i] = i < shares[c2] ? tok[i] : (tok[i] + 7) % V; /* differs from shares[c2] on */
            run_gen(warm, g1, pb, n, &dw);
            run_gen(cold, g2, pb, n, &dc);
            CHECK_MSG(dw.cached == want[c2] && dc.cached == 0, "shared %d: cached %lld (cold %lld), want %lld",
                      shares[c2], (long long)dw.cached, (long long)dc.cached, (long long)want[c2]);
            CHECK(dw.n_toks == GEN_N && dw.n_toks == dc.n_toks && !memcmp(dw.toks, dc.toks, sizeof dw.toks));
            CHECK(dw.n_rows == dc.n_rows && !memcmp(dw.rows, dc.rows, (size_t)dw.n_rows * V * sizeof(float)));
            CHECK_MSG(!memcmp(dw.at, dc.at, sizeof dw.at), "shared %d: the drafts differ from a cold run's", shares[c2]);
        }
        printf("mtp_dump: MTP with prefix caching: hits of 16 and 32 tokens, drafts, tokens and rows a cold run's\n");
    }
    moe_gen_free(g1);
    moe_gen_free(g2);

    /* chained drafts (mtp_draft 2): each second draft is the argmax of the
     * MTP block run at the sequence's length on its own output row at the
     * last position and the first draft, recomputed here on a fresh
     * sequence of the same tokens */
    moe_gen_opts g3o = gc;
    g3o.mtp_draft = 2;
    g3o.draft_hook = record_chain;
    memset(g_chain, 0xff, sizeof g_chain);
    drafts d3 = {.vocab = V};
    const moe_gen_cb cb3 = {.ctx = &d3, .token = rec_token};
    moe_gen *g3 = NULL;
    moe_engine_free(cold);
    cold = NULL;
    CHECK(moe_engine_init(&cold, m, &o, &err) == MOE_OK);
    CHECK_MSG(cold && moe_gen_init(&g3, cold, &g3o, &cb3, &err) == MOE_OK, "%s", err.msg);
    int chained = 0;
    if (g3) {
        run_gen(cold, g3, tok, n, &d3);
        moe_gen_free(g3);
        int32_t all2[MAX_T];
        memcpy(all2, tok, (size_t)n * sizeof *all2);
        memcpy(all2 + n, d3.toks, (size_t)d3.n_toks * sizeof *all2);
        for (int j = 2; j < d3.n_toks && chained < 6; j++) {
            if (g_chain[j] < 0) continue;
            /* drafted after emitting j - 1 tokens: the trunk had n + j - 2 positions */
            const int L = n + j - 2;
            int q = -1;
            CHECK(moe_engine_seq_new(cold, &q, &err) == MOE_OK);
            moe_step_item ti = {.seq = q, .tokens = all2, .n_tokens = L, .logits = MOE_LOGITS_NONE};
            CHECK(moe_engine_step(cold, &ti, 1, &err) == MOE_OK && ti.status == MOE_OK);
            memcpy(hid, moe_engine_hidden(cold, &rows), (size_t)L * D * sizeof(float));
            moe_mtp_item a1 = {.seq = q, .pos = 0, .n = L, .next = all2 + 1, .hidden = hid, .logits = MOE_LOGITS_LAST};
            CHECK(moe_engine_mtp_step(cold, &a1, 1, &err) == MOE_OK && a1.status == MOE_OK);
            const int32_t d1 = argmax(a1.out, V);
            float *xr = malloc((size_t)D * sizeof(float));
            memcpy(xr, moe_engine_mtp_hidden(cold, &rows) + (size_t)(L - 1) * D, (size_t)D * sizeof(float));
            moe_mtp_item a2 = {.seq = q, .pos = L, .n = 1, .next = &d1, .hidden = xr, .logits = MOE_LOGITS_LAST,
                               .ahead = true};
            CHECK(moe_engine_mtp_step(cold, &a2, 1, &err) == MOE_OK && a2.status == MOE_OK);
            CHECK_MSG(argmax(a2.out, V) == g_chain[j], "chained draft for token %d: the loop took %d, recomputed %d", j,
                      g_chain[j], argmax(a2.out, V));
            free(xr);
            moe_engine_seq_free(cold, q);
            chained++;
        }
    }
    CHECK_MSG(chained >= 3, "only %d chained drafts checked", chained);
    printf("mtp_dump: %d chained drafts of the generate loop recomputed\n", chained);
    moe_engine_free(warm);
    moe_engine_free(cold);
    free(dw.rows);
    free(dc.rows);
    printf("mtp_dump: %d drafts of the generate loop equal the MTP block's argmax over the history (%llu fed, %llu "
           "accepted)\n", checked, (unsigned long long)nd, (unsigned long long)na);
    printf("mtp_dump: %d prompt rows, %d MTP rows (%s path), pieces bitwise the whole\n", n, n - 1,
           int8 ? "int8" : "float");
    free(hid);
    free(hb);
    free(draft);
    moe_engine_free(e);
    moe_model_free(m);
    return check_summary("mtp_dump");
}
