/*
 * prefix_cache.c — prefix caching of the latent cache (worker/kvcache.h,
 * worker/gen.h).
 *
 *  - The block index alone: attach takes the longest published chain,
 *    whole blocks, verified token by token and tag by tag; shared blocks
 *    hold what the publisher wrote; references, LRU eviction (a prefix
 *    outlives its tails), a flush, and a hash that gives every key the same
 *    value (test knob) never serving a wrong prefix, nor one of another
 *    salt (the isolation of --prefix-cache-scope client and cache_salt).
 *  - Exactness through the generate loop: a sequence that starts from a
 *    cached prefix gives every logits row and token bitwise equal to the
 *    same sequence run cold, sweeping the prompt, shared and suffix lengths
 *    across the cache block size, the prefill chunk and decompress_min, on
 *    the int8 path and the float path (--exact, where long chunks take the
 *    decompressed attention form), including a later turn that reuses
 *    blocks written by decode, two equal prompts at once, and a pool so
 *    small that cached blocks are evicted.  The tokens it hits are counted
 *    against a formula written here from the rules (docs/engine.md
 *    "Prefix caching"), so a cache that hit nothing would fail too.
 *  - Requests that want every prompt row (prompt logprobs, routed experts)
 *    start cold and get every row; a routing change (a gate limit, as
 *    --node-limit's placements set) flushes the cache, and the next
 *    sequence equals a cold run under the new routing.
 */
#include "check.h"

#include <stdint.h>

#include "engine.h"
#include "gen.h"
#include "kvcache.h"

/* ---- the block index ---- */

static float mark(int64_t pos, int32_t tok) { return (float)(tok * 1000 + pos); }

/* A sequence written as the engine would: each position's floats marked
 * with its token, then published. */
static int write_seq_salt(moe_kvcache *c, const int32_t *tok, int64_t n, uint64_t salt)
{
    moe_err err;
    int s = -1;
    CHECK(moe_kvcache_seq_new(c, &s, &err) == MOE_OK);
    moe_kvcache_seq_salt(c, s, salt);
    CHECK_MSG(moe_kvcache_reserve(c, s, n, &err) == MOE_OK, "%s", err.msg);
    for (int64_t p = 0; p < n; p++) moe_kvcache_at(c, s, 0, p)[0] = mark(p, tok[p]);
    moe_kvcache_set_len(c, s, n);
    moe_kvcache_prefix_publish(c, s, tok, NULL, n);
    return s;
}

static int write_seq(moe_kvcache *c, const int32_t *tok, int64_t n) { return write_seq_salt(c, tok, n, 0); }

/* Attaches a new sequence to tok (at most max tokens) and checks that every
 * attached position holds what was written for tok; returns the length. */
static int64_t attach_salt(moe_kvcache *c, const int32_t *tok, const uint8_t *tags, int64_t max, int *seq_out,
                           uint64_t salt)
{
    moe_err err;
    int s = -1;
    CHECK(moe_kvcache_seq_new(c, &s, &err) == MOE_OK);
    moe_kvcache_seq_salt(c, s, salt);
    const int64_t n = moe_kvcache_prefix_attach(c, s, tok, tags, max, max);
    CHECK(n == moe_kvcache_seq_len(c, s));
    for (int64_t p = 0; p < n; p++) CHECK(moe_kvcache_at(c, s, 0, p)[0] == mark(p, tok[p]));
    if (seq_out) *seq_out = s;
    else moe_kvcache_seq_free(c, s);
    return n;
}

static int64_t attach_check(moe_kvcache *c, const int32_t *tok, const uint8_t *tags, int64_t max, int *seq_out)
{
    return attach_salt(c, tok, tags, max, seq_out, 0);
}

static void test_index(bool collide)
{
    const moe_kvcache_cfg cfg = {.n_layer = 1, .width = 2, .block_size = 4, .n_blocks = 8, .max_seqs = 4, .max_ctx = 32};
    moe_err err;
    moe_kvcache *c = NULL;
    CHECK(moe_kvcache_init(&c, &cfg, &err) == MOE_OK);
    moe_kvcache_prefix_enable(c, 12345, false);
    if (collide) moe_kvcache_prefix_test_collide(c);
    int32_t a[32], b[32];
    for (int i = 0; i < 32; i++) a[i] = b[i] = 10 + i;
    /* 10 tokens: blocks 0 and 1 published, the partial third private */
    moe_kvcache_seq_free(c, write_seq(c, a, 10));
    CHECK(moe_kvcache_blocks_free(c) == 8);
    uint64_t q, h;
    int64_t idle;
    moe_kvcache_prefix_stats(c, &q, &h, &idle);
    CHECK(idle == 2);
    CHECK(attach_check(c, a, NULL, 31, NULL) == 8);
    CHECK(attach_check(c, a, NULL, 7, NULL) == 4);  /* whole blocks only */
    CHECK(attach_check(c, a, NULL, 3, NULL) == 0);
    b[5] = 999; /* differs in the second block */
    CHECK(attach_check(c, b, NULL, 31, NULL) == 4);
    b[5] = a[5];
    b[0] = 999; /* differs in the first: nothing, though the second block is the same */
    CHECK(attach_check(c, b, NULL, 31, NULL) == 0);
    b[0] = a[0];
    uint8_t tags[32] = {0};
    tags[6] = 1; /* the same tokens computed another way */
    CHECK(attach_check(c, a, tags, 31, NULL) == 4);
    moe_kvcache_prefix_stats(c, &q, &h, &idle);
    CHECK(q == 31 + 7 + 3 + 31 + 31 + 31 && h == 8 + 4 + 0 + 4 + 0 + 4);

    /* a second chain sharing the first block, then a duplicate of a held block */
    for (int i = 4; i < 32; i++) b[i] = 500 + i;
    int held = -1;
    CHECK(attach_check(c, b, NULL, 4, &held) == 4);    /* holds a's first block */
    CHECK_MSG(moe_kvcache_reserve(c, held, 12, &err) == MOE_OK, "%s", err.msg);
    for (int64_t p = 4; p < 12; p++) moe_kvcache_at(c, held, 0, p)[0] = mark(p, b[p]);
    moe_kvcache_set_len(c, held, 12);
    moe_kvcache_prefix_publish(c, held, b, NULL, 12);
    int dup = write_seq(c, b, 8); /* the same 8 tokens again: its blocks stay private */
    CHECK(attach_check(c, b, NULL, 31, NULL) == 12);
    CHECK(attach_check(c, a, NULL, 31, NULL) == 8);
    moe_kvcache_seq_free(c, dup);
    moe_kvcache_seq_free(c, held);
    CHECK(moe_kvcache_blocks_free(c) == 8);

    /* eviction: least recently released first, and a sequence releases its
     * blocks last-first.  Idle now, oldest first: a1 (released by the last
     * attach of a), then held's b2, b1, a0. */
    int s = -1;
    CHECK(moe_kvcache_seq_new(c, &s, &err) == MOE_OK);
    moe_kvcache_prefix_stats(c, &q, &h, &idle);
    CHECK(idle == 4);
    const int64_t take = (8 - idle + 1) * 4; /* all free blocks and one idle */
    CHECK_MSG(moe_kvcache_reserve(c, s, take, &err) == MOE_OK, "%s", err.msg);
    moe_kvcache_seq_free(c, s);
    CHECK(attach_check(c, a, NULL, 31, NULL) == 4); /* a1 went */
    CHECK(attach_check(c, b, NULL, 31, NULL) == 12); /* the shared head a0 stayed */
    CHECK(moe_kvcache_seq_new(c, &s, &err) == MOE_OK);
    CHECK_MSG(moe_kvcache_reserve(c, s, (8 - 3 + 1) * 4, &err) == MOE_OK, "%s", err.msg);
    moe_kvcache_seq_free(c, s);
    CHECK(attach_check(c, b, NULL, 31, NULL) == 8); /* b's tail b2 went before b1 and a0 */
    CHECK(moe_kvcache_seq_new(c, &s, &err) == MOE_OK);
    CHECK_MSG(moe_kvcache_reserve(c, s, 32, &err) == MOE_OK, "%s", err.msg); /* the whole pool */
    CHECK(moe_kvcache_reserve(c, s, 33, &err) == MOE_ERR);
    moe_kvcache_seq_free(c, s);
    CHECK(attach_check(c, a, NULL, 31, NULL) == 0);

    /* flush: nothing matches after it, and a held sequence publishes nothing more */
    moe_kvcache_seq_free(c, write_seq(c, a, 12));
    CHECK(attach_check(c, a, NULL, 31, &s) == 12);
    moe_kvcache_prefix_flush(c);
    CHECK(attach_check(c, a, NULL, 31, NULL) == 0);
    CHECK_MSG(moe_kvcache_reserve(c, s, 16, &err) == MOE_OK, "%s", err.msg);
    for (int64_t p = 12; p < 16; p++) moe_kvcache_at(c, s, 0, p)[0] = mark(p, a[p]);
    moe_kvcache_set_len(c, s, 16);
    moe_kvcache_prefix_publish(c, s, a, NULL, 16);
    moe_kvcache_seq_free(c, s);
    CHECK(attach_check(c, a, NULL, 31, NULL) == 0);
    CHECK(moe_kvcache_blocks_free(c) == 8);

    /* salts: a chain is found only under the salt that published it (with
     * every key colliding, only the salt check keeps them apart) */
    moe_kvcache_seq_free(c, write_seq_salt(c, a, 12, 7));
    CHECK(attach_salt(c, a, NULL, 31, NULL, 7) == 12);
    CHECK(attach_salt(c, a, NULL, 31, NULL, 8) == 0);
    CHECK(attach_check(c, a, NULL, 31, NULL) == 0);
    moe_kvcache_seq_free(c, write_seq(c, a, 8));
    CHECK(attach_check(c, a, NULL, 31, NULL) == 8);
    CHECK(attach_salt(c, a, NULL, 31, NULL, 7) == 12);
    moe_kvcache_free(c);
}

/* ---- exactness through the generate loop ---- */

#define MAX_TOK 96
#define GEN 4

typedef struct run_out {
    float *rows;           /* [MAX_TOK][vocab] */
    int n_rows;
    int32_t toks[MAX_TOK];
    int n_toks;
    int64_t cached;
    bool ended, failed;
} run_out;

typedef struct cfg {
    const char *model;
    bool int8;
    int block, chunk, dmin;
    int64_t cache_tokens;  /* 0: the default pool */
    bool repack;
    bool special;          /* also run_special */
} cfg;

static int g_vocab;

static int on_row(void *ctx, const moe_gen_seq *s, const float *logits, moe_err *err)
{
    (void)ctx;
    (void)err;
    run_out *o = s->user;
    if (o->n_rows < MAX_TOK) memcpy(o->rows + (size_t)o->n_rows * g_vocab, logits, (size_t)g_vocab * sizeof(float));
    o->n_rows++;
    return MOE_OK;
}

static void on_token(void *ctx, const moe_gen_seq *s, int index, int32_t tok, const moe_token_logprobs *lp)
{
    (void)ctx;
    (void)lp;
    run_out *o = s->user;
    if (index < MAX_TOK) o->toks[index] = tok;
    o->n_toks = index + 1;
    o->cached = s->n_cached;
}

static void on_end(void *ctx, const moe_gen_seq *s, moe_gen_end why, const char *msg)
{
    (void)ctx;
    run_out *o = s->user;
    o->ended = true;
    o->cached = s->n_cached;
    if (why == MOE_GEN_END_ERROR) {
        o->failed = true;
        fprintf(stderr, "sequence %lld: %s\n", (long long)s->id, msg);
    }
}

typedef struct rig {
    moe_engine *e;
    moe_gen *g;
} rig;

static int rig_open(rig *r, const moe_model *m, const cfg *c, bool prefix)
{
    moe_engine_opts o;
    moe_engine_opts_default(&o);
    o.block_size = c->block;
    o.max_ctx = 128;
    o.max_seqs = 4;
    o.max_batch_tokens = 64;
    o.decompress_min = c->dmin;
    o.act_q8 = c->int8;
    o.repack = c->repack;
    o.par_min_cost = 0;
    if (c->cache_tokens) o.cache_tokens = c->cache_tokens;
    moe_err err;
    if (moe_engine_init(&r->e, m, &o, &err)) {
        fprintf(stderr, "engine: %s\n", err.msg);
        return -1;
    }
    const moe_gen_opts go = {.max_seqs = 4, .max_ctx = 128, .step_tokens = 64, .prefill_chunk = c->chunk, .eos = -1,
                             .prefix_cache = prefix};
    const moe_gen_cb cb = {.row = on_row, .token = on_token, .end = on_end};
    if (moe_gen_init(&r->g, r->e, &go, &cb, &err)) {
        fprintf(stderr, "gen: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static void rig_close(rig *r)
{
    moe_gen_free(r->g);
    moe_engine_free(r->e);
}

static void add_req(rig *r, int64_t id, const int32_t *tok, int n, run_out *o, bool prompt_lp, bool routed);
static void add(rig *r, int64_t id, const int32_t *tok, int n, run_out *o) { add_req(r, id, tok, n, o, false, false); }

static void add_req(rig *r, int64_t id, const int32_t *tok, int n, run_out *o, bool prompt_lp, bool routed)
{
    memset(o->toks, 0, sizeof o->toks);
    o->n_rows = o->n_toks = 0;
    o->cached = -1;
    o->ended = o->failed = false;
    moe_gen_req q = {.id = id, .user = o, .tokens = tok, .n_tokens = n, .max_out = GEN, .prompt_logprobs = prompt_lp,
                     .routed = routed};
    moe_sampler_cfg_default(&q.sc); /* greedy */
    moe_err err;
    CHECK_MSG(moe_gen_add(r->g, &q, &err) == MOE_OK, "%s", err.msg);
}

static void run_all(rig *r)
{
    moe_err err;
    for (int guard = 0; moe_gen_live(r->g) > 0 && guard < 1000; guard++) {
        moe_gen_plan p;
        moe_gen_plan_step(r->g, &p);
        CHECK_MSG(moe_gen_step(r->g, &err) == MOE_OK, "%s", err.msg);
    }
    CHECK(moe_gen_live(r->g) == 0);
}

/* The path a position of a prompt of n tokens takes (docs/engine.md):
 * its chunk's length decides, positions past the prompt go alone. */
static int path_of(const cfg *c, int n, int p)
{
    int len = 1;
    if (p < n) len = n - p / c->chunk * c->chunk < c->chunk ? n - p / c->chunk * c->chunk : c->chunk;
    return !c->int8 && c->dmin > 0 && len >= c->dmin;
}

/* Tokens a sequence (prompt b of nb) can take from a finished one (prompt
 * a of na, history ha of len_a positions written): whole blocks of the
 * common part where tokens and paths agree, short of b's last token. */
static int expect_hit(const cfg *c, const int32_t *ha, int na, int len_a, const int32_t *b, int nb)
{
    int p = 0;
    while (p < len_a && p < nb && ha[p] == b[p] && path_of(c, na, p) == path_of(c, nb, p)) p++;
    if (p > nb - 1) p = nb - 1;
    return p / c->block * c->block;
}

static bool same_run(const run_out *x, const run_out *y)
{
    return !x->failed && !y->failed && x->n_rows == y->n_rows && x->n_toks == y->n_toks &&
           memcmp(x->toks, y->toks, sizeof x->toks) == 0 &&
           memcmp(x->rows, y->rows, (size_t)x->n_rows * g_vocab * sizeof(float)) == 0;
}

static int64_t g_cases, g_hit_cases, g_hit_tokens;

/* One case: A runs to its end, then B (sharing A's first `shared` prompt
 * tokens, or with `turn`, A's whole history then more); B against B cold. */
static void run_case(const cfg *c, rig *warm, rig *cold, int id, int na, int shared, int nb, bool turn, run_out *o)
{
    int32_t a[MAX_TOK], b[MAX_TOK];
    for (int i = 0; i < MAX_TOK; i++) a[i] = (int32_t)((id * 131 + i * 37 + 11) % g_vocab);
    run_out *oa = &o[0], *ob = &o[1], *oc = &o[2];
    add(warm, 3 * id, a, na, oa);
    run_all(warm);
    int32_t ha[MAX_TOK];
    memcpy(ha, a, sizeof a);
    for (int i = 0; i < GEN; i++) ha[na + i] = oa->toks[i];
    const int len_a = na + GEN - 1; /* the last token is sampled, never fed */
    if (turn) shared = len_a;
    for (int i = 0; i < nb; i++) b[i] = i < shared ? ha[i] : (int32_t)((ha[i] + 1 + i) % g_vocab);
    add(warm, 3 * id + 1, b, nb, ob);
    run_all(warm);
    add(cold, 3 * id + 2, b, nb, oc);
    run_all(cold);
    const int want = expect_hit(c, ha, na, len_a, b, nb);
    CHECK_MSG(oc->cached == 0, "cold run took %lld from a cache", (long long)oc->cached);
    CHECK_MSG(ob->cached == want, "%s %s block %d chunk %d dmin %d: A %d, shared %d, B %d%s: hit %lld, expected %d",
              c->model, c->int8 ? "int8" : "exact", c->block, c->chunk, c->dmin, na, shared, nb, turn ? " (turn)" : "",
              (long long)ob->cached, want);
    CHECK_MSG(same_run(ob, oc), "%s %s block %d chunk %d dmin %d: A %d, shared %d, B %d%s (hit %lld): warm and cold differ",
              c->model, c->int8 ? "int8" : "exact", c->block, c->chunk, c->dmin, na, shared, nb, turn ? " (turn)" : "",
              (long long)ob->cached);
    g_cases++;
    g_hit_cases += ob->cached > 0;
    g_hit_tokens += ob->cached;
}

/* Two equal prompts at once (both compute, one publishes), then a third
 * that hits: all three bitwise one cold run. */
static void run_twins(const cfg *c, rig *warm, rig *cold, int id, int n, run_out *o)
{
    int32_t a[MAX_TOK];
    for (int i = 0; i < MAX_TOK; i++) a[i] = (int32_t)((id * 71 + i * 13 + 5) % g_vocab);
    add(warm, 3 * id, a, n, &o[0]);
    add(warm, 3 * id + 1, a, n, &o[1]);
    run_all(warm);
    add(cold, 3 * id + 2, a, n, &o[2]);
    run_all(cold);
    CHECK(same_run(&o[0], &o[2]) && same_run(&o[1], &o[2]));
    add(warm, 3 * id, a, n, &o[0]);
    run_all(warm);
    CHECK(o[0].cached == (n - 1) / c->block * c->block);
    CHECK(same_run(&o[0], &o[2]));
}

static int g_prompt_rows;
static void on_prompt(void *ctx, const moe_gen_seq *s, int first, const moe_token_logprobs *lp, int n)
{
    (void)ctx;
    (void)s;
    (void)first;
    (void)lp;
    g_prompt_rows += n;
}

/* prompt logprobs and routed experts: cold, every prompt row; then a gate
 * limit (every MoE layer's experts in two units, one unit a token) and a
 * flush: no hit, and bitwise a cold engine under the same limit */
static void run_special(const cfg *c, const moe_model *m, rig *warm, rig *cold, int id, run_out *o)
{
    const int n = 3 * c->block + 1;
    int32_t a[MAX_TOK];
    for (int i = 0; i < MAX_TOK; i++) a[i] = (int32_t)((id * 53 + i * 19 + 3) % g_vocab);
    add(warm, 3 * id, a, n, &o[0]);
    run_all(warm);
    CHECK(o[0].cached == 0);
    moe_gen_free(warm->g);
    const moe_gen_opts go = {.max_seqs = 4, .max_ctx = 128, .step_tokens = 64, .prefill_chunk = c->chunk, .eos = -1,
                             .prefix_cache = true};
    const moe_gen_cb cb = {.row = on_row, .token = on_token, .end = on_end, .prompt = on_prompt};
    moe_err err;
    CHECK(moe_gen_init(&warm->g, warm->e, &go, &cb, &err) == MOE_OK); /* the same engine: its cache kept */
    g_prompt_rows = 0;
    add_req(warm, 3 * id + 1, a, n, &o[1], true, false);
    run_all(warm);
    CHECK_MSG(o[1].cached == 0 && g_prompt_rows == n - 1, "prompt logprobs: hit %lld, %d rows", (long long)o[1].cached,
              g_prompt_rows);
    add_req(warm, 3 * id + 1, a, n, &o[1], false, true);
    run_all(warm);
    CHECK(o[1].cached == 0);
    add(warm, 3 * id + 1, a, n, &o[1]);
    run_all(warm);
    CHECK(o[1].cached == (n - 1) / c->block * c->block); /* still there */
    /* the routing changes */
    const int E = m->hp.n_expert;
    int32_t off[MOE_GATE_MAX_EXPERTS + 1], units[MOE_GATE_MAX_EXPERTS];
    for (int e = 0; e <= E; e++) off[e] = e;
    for (int e = 0; e < E; e++) units[e] = e < E / 2 ? 0 : 1;
    const moe_gate_limit lim = {.n_unit = 2, .max_units = 1, .unit_off = off, .units = units};
    for (int il = m->hp.n_dense_lead; il < m->hp.n_layer; il++) {
        moe_engine_set_gate_limit(warm->e, il, &lim);
        moe_engine_set_gate_limit(cold->e, il, &lim);
    }
    moe_engine_prefix_flush(warm->e);
    add(warm, 3 * id + 1, a, n, &o[1]);
    run_all(warm);
    add(cold, 3 * id + 2, a, n, &o[2]);
    run_all(cold);
    CHECK_MSG(o[1].cached == 0, "hit %lld after the flush", (long long)o[1].cached);
    CHECK(same_run(&o[1], &o[2]));
    CHECK_MSG(!same_run(&o[0], &o[2]), "the gate limit changed nothing: the test would not see a stale prefix");
    for (int il = m->hp.n_dense_lead; il < m->hp.n_layer; il++) {
        moe_engine_set_gate_limit(warm->e, il, NULL);
        moe_engine_set_gate_limit(cold->e, il, NULL);
    }
    moe_engine_prefix_flush(warm->e);
}

static void sweep(const cfg *c, run_out *o)
{
    char path[4096];
    snprintf(path, sizeof path, strchr(c->model, '/') ? "%s/%s.gguf" : "%s/models/%s.gguf", getenv("MOE_FIXTURES"),
             c->model);
    moe_model *m = NULL;
    moe_err err;
    CHECK_MSG(moe_model_open(&m, path, &err) == MOE_OK, "%s", err.msg);
    if (!m) return;
    g_vocab = m->hp.vocab;
    rig warm = {0}, cold = {0};
    if (rig_open(&warm, m, c, true) || rig_open(&cold, m, c, false)) {
        CHECK(!"engine");
        moe_model_free(m);
        return;
    }
    const int B = c->block, C = c->chunk;
    const int lens[] = {1, B - 1, B, B + 1, C - 1, C, C + 1, 2 * C + 3, 40};
    const int n_lens = SANITIZED ? 5 : (int)(sizeof lens / sizeof lens[0]);
    int id = 1;
    for (int i = 0; i < n_lens; i++) {
        const int na = lens[i];
        if (na < 1 || na + GEN > 60) continue;
        const int shares[] = {na, na / 2 + 1, na - 1};
        for (int j = 0; j < 3; j++) {
            const int sh = shares[j] < 0 ? 0 : shares[j];
            const int tails[] = {1, B, C + 1};
            for (int k = 0; k < 3; k++) {
                const int nb = sh + tails[k];
                if (nb > 60) continue;
                run_case(c, &warm, &cold, id++, na, sh, nb, false, o);
                if (SANITIZED) break;
            }
        }
        if (na + GEN - 1 + C + 1 <= 60) run_case(c, &warm, &cold, id++, na, 0, na + GEN - 1 + C + 1, true, o);
    }
    run_twins(c, &warm, &cold, id++, 2 * B + 1, o);
    if (c->special) run_special(c, m, &warm, &cold, id++, o);
    rig_close(&warm);
    rig_close(&cold);
    moe_model_free(m);
}

int main(void)
{
    test_index(false);
    test_index(true);
    run_out o[3];
    for (int i = 0; i < 3; i++) o[i].rows = malloc((size_t)MAX_TOK * 512 * sizeof(float));
    const cfg cfgs[] = {
        {"v3_mini_q8_0", true, 16, 64, 32, 0, false, true},
        {"v3_mini_q8_0", true, 4, 8, 32, 0, false, false},
        {"v3_mini_q8_0", false, 4, 8, 6, 0, false, false},    /* float path: chunks of 6+ decompress */
        {"v3_mini_q8_0", false, 5, 12, 9, 0, false, false},   /* block not dividing the chunk */
        {"v2lite_mini_f32", false, 16, 40, 32, 0, false, false},
        {"quant/models/kq_v3_q4_k_m", true, 4, 10, 32, 0, false, false},
        {"v3_mini_q8_0", true, 4, 8, 32, 64, false, false},   /* a pool of 16 blocks: cached ones get evicted */
        {"v3_mini_q8_0", true, 4, 8, 32, 0, true, false},     /* --repack */
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) sweep(&cfgs[i], o);
    printf("prefix_cache: %lld cases, %lld hit (%lld tokens from the cache)\n", (long long)g_cases,
           (long long)g_hit_cases, (long long)g_hit_tokens);
    CHECK(g_hit_cases * 3 > g_cases); /* the rules allow hits in most cases (61% full, 42% sanitized) */
    for (int i = 0; i < 3; i++) free(o[i].rows);
    return check_summary("prefix_cache");
}
