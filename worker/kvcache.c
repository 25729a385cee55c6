/*
 * kvcache.c — block pool with a free stack and per-sequence block tables;
 * with prefix caching, an index of published blocks (hash buckets chained
 * through the blocks) and an LRU list of the published blocks no sequence
 * holds.
 */
#include "kvcache.h"

#include <stdlib.h>
#include <string.h>

typedef struct kv_seq {
    bool used;
    int64_t len;       /* positions written */
    int64_t n_blocks;  /* blocks in the table */
    int32_t *blocks;   /* [max_blocks_per_seq] */
    /* prefix caching: blocks [0, n_pub) are published or matched, pub_key
     * is the chain's key after them and (pub_id, pub_gen) the published
     * block holding block n_pub - 1's content (-1: none yet) */
    int64_t n_pub;
    uint64_t pub_key;
    int32_t pub_id;
    uint32_t pub_gen;
    bool no_pub;       /* its earlier positions predate a flush */
    uint64_t salt;     /* moe_kvcache_seq_salt */
} kv_seq;

/* A block's bookkeeping (the per-block arrays below are allocated only with
 * prefix caching). */
typedef struct kv_block {
    int32_t ref;       /* sequences holding it */
    uint32_t gen;      /* bumped whenever it leaves the index */
    bool published;
    uint64_t key;
    int32_t parent;    /* the published block before it in its chain, -1: first */
    uint32_t parent_gen;
    uint64_t salt;     /* of the sequence that published it (a chain's first block compares it) */
    int32_t look;      /* with lookahead: the token after the block */
    int32_t bucket_next;        /* next published block in its bucket, -1 */
    int32_t lru_prev, lru_next; /* idle published blocks, oldest first */
} kv_block;

struct moe_kvcache {
    moe_kvcache_cfg cfg;
    int64_t max_blocks_per_seq;
    size_t block_floats;
    float *pool;           /* n_blocks × block_floats */
    int32_t *free_stack;   /* [n_blocks] */
    int64_t n_free;
    kv_seq *seqs;          /* [max_seqs] */
    /* prefix caching (the arrays exist either way: the plan counts them) */
    bool on;               /* moe_kvcache_prefix_enable */
    bool lookahead;        /* a block's key and identity include the token after it */
    uint64_t seed;
    kv_block *blk;         /* [n_blocks] */
    int32_t *tok;          /* [n_blocks][block_size] a published block's tokens */
    uint8_t *tag;          /* [n_blocks][block_size] and tags */
    int32_t *bucket;       /* [n_buckets] first published block, -1 */
    uint64_t n_buckets;    /* a power of two */
    int32_t lru_head, lru_tail;
    int64_t n_idle;        /* published blocks no sequence holds */
    int64_t n_published;   /* all published blocks (held or idle) */
    uint64_t queries, hits;
    bool collide;          /* test knob: every key 0 */
};

/* Checks cfg; *block_floats and *pool_bytes as the pool needs them. */
static int cfg_check(const moe_kvcache_cfg *cfg, size_t *block_floats, size_t *pool_bytes, moe_err *err)
{
    if (cfg->n_layer < 1 || cfg->width < 1) return moe_err_set(err, "cache: bad layer count or width");
    if (cfg->block_size < 1 || cfg->block_size > 4096)
        return moe_err_set(err, "cache block size %d is not in 1..4096", cfg->block_size);
    if (cfg->n_blocks < 1 || cfg->n_blocks > INT32_MAX) return moe_err_set(err, "cache block count is not in 1..2^31");
    if (cfg->max_seqs < 1 || cfg->max_seqs > 1 << 20) return moe_err_set(err, "cache: max sequences not in 1..2^20");
    if (cfg->max_ctx < 1 || cfg->max_ctx > INT64_MAX - 4096) return moe_err_set(err, "cache: max context not in 1..2^63");
    size_t bf = 0, total = 0;
    if (!moe_mul_size((size_t)cfg->n_layer, (size_t)cfg->block_size, &bf) || !moe_mul_size(bf, (size_t)cfg->width, &bf) ||
        !moe_mul_size(bf, (size_t)cfg->n_blocks, &total) || !moe_mul_size(total, sizeof(float), &total))
        return moe_err_set(err, "cache size overflows");
    *block_floats = bf;
    *pool_bytes = total;
    return MOE_OK;
}

int moe_kvcache_bytes(const moe_kvcache_cfg *cfg, uint64_t *bytes, moe_err *err)
{
    size_t bf = 0, pool = 0;
    if (cfg_check(cfg, &bf, &pool, err)) return MOE_ERR;
    const uint64_t per_seq = (uint64_t)((cfg->max_ctx + cfg->block_size - 1) / cfg->block_size);
    uint64_t b = 0, t;
    if (!moe_mul_u64(per_seq, sizeof(int32_t), &t) || !moe_add_u64(t, sizeof(kv_seq), &t) ||
        !moe_mul_u64(t, (uint64_t)cfg->max_seqs, &b) || !moe_add_u64(b, pool, &b) ||
        !moe_add_u64(b, (uint64_t)cfg->n_blocks * sizeof(int32_t) + sizeof(moe_kvcache), &b))
        return moe_err_set(err, "cache size overflows");
    /* prefix caching's bookkeeping, counted whether it is on or not: per
     * block its record, tokens, tags and at most two bucket heads */
    const uint64_t per_block = sizeof(kv_block) + (uint64_t)cfg->block_size * (sizeof(int32_t) + 1) + 2 * sizeof(int32_t);
    if (!moe_mul_u64(per_block, (uint64_t)cfg->n_blocks, &t) || !moe_add_u64(b, t, &b))
        return moe_err_set(err, "cache size overflows");
    *bytes = b;
    return MOE_OK;
}

int moe_kvcache_init(moe_kvcache **out, const moe_kvcache_cfg *cfg, moe_err *err)
{
    *out = NULL;
    size_t bf = 0, total = 0;
    if (cfg_check(cfg, &bf, &total, err)) return MOE_ERR;
    moe_kvcache *c = moe_xcalloc(1, sizeof *c);
    c->cfg = *cfg;
    c->block_floats = bf;
    c->max_blocks_per_seq = (cfg->max_ctx + cfg->block_size - 1) / cfg->block_size;
    c->pool = moe_xmalloc(total);
    c->free_stack = moe_xmalloc((size_t)cfg->n_blocks * sizeof(int32_t));
    /* hand out low ids first */
    for (int64_t i = 0; i < cfg->n_blocks; i++) c->free_stack[i] = (int32_t)(cfg->n_blocks - 1 - i);
    c->n_free = cfg->n_blocks;
    c->seqs = moe_xcalloc((size_t)cfg->max_seqs, sizeof *c->seqs);
    c->lru_head = c->lru_tail = -1;
    const size_t nb = (size_t)cfg->n_blocks, bs = (size_t)cfg->block_size;
    c->blk = moe_xcalloc(nb, sizeof *c->blk);
    for (size_t b = 0; b < nb; b++) {
        c->blk[b].parent = -1;
        c->blk[b].bucket_next = c->blk[b].lru_prev = c->blk[b].lru_next = -1;
    }
    c->tok = moe_xmalloc(nb * bs * sizeof *c->tok); /* n_blocks × block_size fits: the pool is bigger */
    c->tag = moe_xmalloc(nb * bs);
    c->n_buckets = 1;
    while (c->n_buckets < (uint64_t)nb) c->n_buckets <<= 1;
    c->bucket = moe_xmalloc((size_t)c->n_buckets * sizeof *c->bucket);
    for (uint64_t i = 0; i < c->n_buckets; i++) c->bucket[i] = -1;
    *out = c;
    return MOE_OK;
}

void moe_kvcache_free(moe_kvcache *c)
{
    if (!c) return;
    for (int i = 0; i < c->cfg.max_seqs; i++) free(c->seqs[i].blocks);
    free(c->blk);
    free(c->tok);
    free(c->tag);
    free(c->bucket);
    free(c->seqs);
    free(c->free_stack);
    free(c->pool);
    free(c);
}

int moe_kvcache_seq_new(moe_kvcache *c, int *seq, moe_err *err)
{
    for (int i = 0; i < c->cfg.max_seqs; i++) {
        kv_seq *s = &c->seqs[i];
        if (s->used) continue;
        if (!s->blocks) s->blocks = moe_xmalloc((size_t)c->max_blocks_per_seq * sizeof(int32_t));
        s->used = true;
        s->len = 0;
        s->n_blocks = 0;
        s->n_pub = 0;
        s->pub_key = c->seed;
        s->pub_id = -1;
        s->pub_gen = 0;
        s->no_pub = false;
        s->salt = 0;
        *seq = i;
        return MOE_OK;
    }
    return moe_err_set(err, "all %d sequence slots are in use", c->cfg.max_seqs);
}

bool moe_kvcache_seq_valid(const moe_kvcache *c, int seq)
{
    return seq >= 0 && seq < c->cfg.max_seqs && c->seqs[seq].used;
}

/* ---- block bookkeeping (prefix caching) ---- */

static void lru_unlink(moe_kvcache *c, int32_t b)
{
    kv_block *k = &c->blk[b];
    if (k->lru_prev >= 0) c->blk[k->lru_prev].lru_next = k->lru_next;
    else c->lru_head = k->lru_next;
    if (k->lru_next >= 0) c->blk[k->lru_next].lru_prev = k->lru_prev;
    else c->lru_tail = k->lru_prev;
    k->lru_prev = k->lru_next = -1;
    c->n_idle--;
}

static void lru_append(moe_kvcache *c, int32_t b)
{
    kv_block *k = &c->blk[b];
    k->lru_prev = c->lru_tail;
    k->lru_next = -1;
    if (c->lru_tail >= 0) c->blk[c->lru_tail].lru_next = b;
    else c->lru_head = b;
    c->lru_tail = b;
    c->n_idle++;
}

static uint64_t bucket_of(const moe_kvcache *c, uint64_t key) { return key & (c->n_buckets - 1); }

/* Takes a published block out of the index (its content is no longer
 * anyone's prefix). */
static void unpublish(moe_kvcache *c, int32_t b)
{
    kv_block *k = &c->blk[b];
    int32_t *at = &c->bucket[bucket_of(c, k->key)];
    while (*at != b) {
        MOE_ASSERT(*at >= 0);
        at = &c->blk[*at].bucket_next;
    }
    *at = k->bucket_next;
    k->bucket_next = -1;
    k->published = false;
    k->gen++;
    c->n_published--;
}

/* A block for a sequence: a free one, else the idle published block
 * released longest ago.  The caller checked that one exists. */
static int32_t block_take(moe_kvcache *c)
{
    int32_t b;
    if (c->n_free > 0) {
        b = c->free_stack[--c->n_free];
    } else {
        b = c->lru_head;
        MOE_ASSERT(b >= 0);
        lru_unlink(c, b);
        unpublish(c, b);
    }
    c->blk[b].ref = 1;
    return b;
}

/* A sequence lets go of block b: free when no sequence holds it and it is
 * not published, idle (evictable, most recent) when published. */
static void block_drop(moe_kvcache *c, int32_t b)
{
    kv_block *k = &c->blk[b];
    MOE_ASSERT(k->ref > 0);
    if (--k->ref > 0) return;
    if (k->published) {
        lru_append(c, b);
    } else {
        k->gen++;
        c->free_stack[c->n_free++] = b;
    }
}

void moe_kvcache_seq_free(moe_kvcache *c, int seq)
{
    MOE_ASSERT(moe_kvcache_seq_valid(c, seq));
    kv_seq *s = &c->seqs[seq];
    /* last block first: a prefix is released after its tails, so it is
     * evicted after them */
    for (int64_t i = s->n_blocks; i-- > 0;) block_drop(c, s->blocks[i]);
    s->n_blocks = 0;
    s->len = 0;
    s->used = false;
}

int64_t moe_kvcache_seq_len(const moe_kvcache *c, int seq)
{
    MOE_ASSERT(moe_kvcache_seq_valid(c, seq));
    return c->seqs[seq].len;
}

int moe_kvcache_reserve(moe_kvcache *c, int seq, int64_t len, moe_err *err)
{
    MOE_ASSERT(moe_kvcache_seq_valid(c, seq));
    kv_seq *s = &c->seqs[seq];
    if (len > c->cfg.max_ctx)
        return moe_err_set(err, "sequence would reach %lld tokens; the context limit is %lld", (long long)len,
                           (long long)c->cfg.max_ctx);
    const int64_t need = (len + c->cfg.block_size - 1) / c->cfg.block_size;
    if (need - s->n_blocks > moe_kvcache_blocks_free(c))
        return moe_err_set(err, "latent cache full: sequence needs %lld more blocks, %lld free",
                           (long long)(need - s->n_blocks), (long long)moe_kvcache_blocks_free(c));
    while (s->n_blocks < need) s->blocks[s->n_blocks++] = block_take(c);
    return MOE_OK;
}

void moe_kvcache_set_len(moe_kvcache *c, int seq, int64_t len)
{
    MOE_ASSERT(moe_kvcache_seq_valid(c, seq));
    MOE_ASSERT(len <= c->seqs[seq].n_blocks * c->cfg.block_size);
    c->seqs[seq].len = len;
}

float *moe_kvcache_at(moe_kvcache *c, int seq, int layer, int64_t pos)
{
    const kv_seq *s = &c->seqs[seq];
    const int64_t b = pos / c->cfg.block_size, slot = pos % c->cfg.block_size;
    MOE_ASSERT(b < s->n_blocks && layer >= 0 && layer < c->cfg.n_layer);
    float *blk = c->pool + (size_t)s->blocks[b] * c->block_floats;
    return blk + ((size_t)layer * (size_t)c->cfg.block_size + (size_t)slot) * (size_t)c->cfg.width;
}

uint64_t moe_kvcache_block_bytes(const moe_kvcache *c) { return (uint64_t)c->block_floats * sizeof(float); }

uint64_t moe_kvcache_bytes_in_use(const moe_kvcache *c)
{
    return (uint64_t)(c->cfg.n_blocks - moe_kvcache_blocks_free(c)) * moe_kvcache_block_bytes(c);
}

int64_t moe_kvcache_blocks_free(const moe_kvcache *c) { return c->n_free + c->n_idle; }
int64_t moe_kvcache_blocks_total(const moe_kvcache *c) { return c->cfg.n_blocks; }
int moe_kvcache_block_tokens(const moe_kvcache *c) { return c->cfg.block_size; }

/* ---- prefix caching ---- */

void moe_kvcache_prefix_enable(moe_kvcache *c, uint64_t seed, bool lookahead)
{
    if (c->on) {
        MOE_ASSERT(c->lookahead == lookahead);
        return;
    }
    for (int i = 0; i < c->cfg.max_seqs; i++) MOE_ASSERT(!c->seqs[i].used);
    c->seed = seed;
    c->lookahead = lookahead;
    c->on = true;
}

/* The key a block is filed under: the chain's key, and with lookahead the
 * token after it. */
static uint64_t filed_key(const moe_kvcache *c, uint64_t chain, int32_t look)
{
    if (!c->lookahead || c->collide) return chain;
    uint64_t h = chain ^ ((uint64_t)(uint32_t)look * 0xd6e8feb86659fd93ull);
    h ^= h >> 32;
    return h * 0x9e3779b97f4a7c15ull;
}

bool moe_kvcache_prefix_enabled(const moe_kvcache *c) { return c->on; }
bool moe_kvcache_prefix_lookahead(const moe_kvcache *c) { return c->lookahead; }

/* The chain's key after one more block of tokens and tags. */
static uint64_t chain_key(const moe_kvcache *c, uint64_t key, const int32_t *tok, const uint8_t *tag, int n)
{
    if (c->collide) return 0;
    uint64_t h = key;
    for (int i = 0; i < n; i++) {
        h ^= ((uint64_t)(uint32_t)tok[i] << 8 | (tag ? tag[i] : 0u)) + 0x9e3779b97f4a7c15ull;
        h ^= h >> 30;
        h *= 0xbf58476d1ce4e5b9ull;
        h ^= h >> 27;
        h *= 0x94d049bb133111ebull;
        h ^= h >> 31;
    }
    return h;
}

/* The published block with this key, parent (a first block: salt) and
 * content, or -1. */
static int32_t find_block(const moe_kvcache *c, uint64_t key, int32_t parent, uint32_t parent_gen, uint64_t salt,
                          const int32_t *tok, const uint8_t *tag)
{
    const int bs = c->cfg.block_size;
    for (int32_t b = c->bucket[bucket_of(c, key)]; b >= 0; b = c->blk[b].bucket_next) {
        const kv_block *k = &c->blk[b];
        if (k->key != key || k->parent != parent || (parent >= 0 && k->parent_gen != parent_gen) ||
            (parent < 0 && k->salt != salt) || (c->lookahead && k->look != tok[bs]))
            continue;
        const int32_t *bt = c->tok + (size_t)b * (size_t)bs;
        const uint8_t *bg = c->tag + (size_t)b * (size_t)bs;
        bool same = memcmp(bt, tok, (size_t)bs * sizeof *tok) == 0;
        for (int i = 0; same && i < bs; i++) same = bg[i] == (tag ? tag[i] : 0u);
        if (same) return b;
    }
    return -1;
}

/* Sequence s's next block (number s->n_pub: tokens/tags from position 0)
 * as the index knows it: its chain key (*key), the key it is filed under
 * (*filed), and the published block holding it, or -1. */
static int32_t next_block(const moe_kvcache *c, const kv_seq *s, const int32_t *tokens, const uint8_t *tags,
                          uint64_t *key, uint64_t *filed)
{
    const int bs = c->cfg.block_size;
    const size_t at = (size_t)s->n_pub * (size_t)bs;
    const uint8_t *tg = tags ? tags + at : NULL;
    *key = chain_key(c, s->pub_key, tokens + at, tg, bs);
    *filed = filed_key(c, *key, c->lookahead ? tokens[at + (size_t)bs] : 0);
    return find_block(c, *filed, s->pub_id, s->pub_gen, s->salt, tokens + at, tg);
}

/* The chain goes on from block b (key: its chain key). */
static void chain_advance(const moe_kvcache *c, kv_seq *s, uint64_t key, int32_t b)
{
    s->pub_key = key;
    s->pub_id = b;
    s->pub_gen = c->blk[b].gen;
    s->n_pub++;
}

int64_t moe_kvcache_prefix_attach(moe_kvcache *c, int seq, const int32_t *tokens, const uint8_t *tags,
                                  int64_t max_tokens, int64_t n_query)
{
    MOE_ASSERT(moe_kvcache_seq_valid(c, seq));
    kv_seq *s = &c->seqs[seq];
    if (!c->on) return 0;
    MOE_ASSERT(s->n_blocks == 0 && s->len == 0);
    c->queries += n_query > 0 ? (uint64_t)n_query : 0;
    const int bs = c->cfg.block_size;
    const int64_t max_b = (max_tokens < c->cfg.max_ctx ? max_tokens : c->cfg.max_ctx) / bs;
    while (s->n_blocks < max_b) { /* n_pub == n_blocks: every attached block is a published one */
        uint64_t key, filed;
        const int32_t b = next_block(c, s, tokens, tags, &key, &filed);
        if (b < 0) break;
        if (c->blk[b].ref++ == 0) lru_unlink(c, b);
        s->blocks[s->n_blocks++] = b;
        chain_advance(c, s, key, b);
    }
    s->len = s->n_blocks * bs;
    c->hits += (uint64_t)s->len;
    return s->len;
}

void moe_kvcache_prefix_publish(moe_kvcache *c, int seq, const int32_t *tokens, const uint8_t *tags, int64_t len)
{
    MOE_ASSERT(moe_kvcache_seq_valid(c, seq));
    kv_seq *s = &c->seqs[seq];
    if (!c->on || s->no_pub) return;
    MOE_ASSERT(len <= s->len);
    const int bs = c->cfg.block_size;
    while (s->n_pub < len / bs) {
        const size_t at = (size_t)s->n_pub * (size_t)bs;
        const uint8_t *tg = tags ? tags + at : NULL;
        uint64_t key, filed;
        int32_t b = next_block(c, s, tokens, tags, &key, &filed);
        if (b < 0) { /* publish this sequence's own block */
            b = s->blocks[s->n_pub];
            kv_block *k = &c->blk[b];
            MOE_ASSERT(!k->published && k->ref == 1);
            k->published = true;
            k->key = filed;
            k->look = c->lookahead ? tokens[at + (size_t)bs] : 0;
            k->parent = s->pub_id;
            k->parent_gen = s->pub_gen;
            k->salt = s->salt;
            memcpy(c->tok + (size_t)b * (size_t)bs, tokens + at, (size_t)bs * sizeof *tokens);
            for (int i = 0; i < bs; i++) c->tag[(size_t)b * (size_t)bs + (size_t)i] = tg ? tg[i] : 0u;
            int32_t *head = &c->bucket[bucket_of(c, filed)];
            k->bucket_next = *head;
            *head = b;
            c->n_published++;
        }
        chain_advance(c, s, key, b);
    }
}

void moe_kvcache_prefix_flush(moe_kvcache *c)
{
    if (!c->on) return;
    for (int i = 0; i < c->cfg.max_seqs; i++)
        if (c->seqs[i].used) c->seqs[i].no_pub = true;
    while (c->lru_head >= 0) { /* idle ones become free */
        const int32_t b = c->lru_head;
        lru_unlink(c, b);
        unpublish(c, b);
        c->free_stack[c->n_free++] = b;
    }
    for (int64_t b = 0; b < c->cfg.n_blocks && c->n_published > 0; b++) /* held ones stay with their sequences */
        if (c->blk[b].published) unpublish(c, (int32_t)b);
}

void moe_kvcache_seq_salt(moe_kvcache *c, int seq, uint64_t salt)
{
    MOE_ASSERT(moe_kvcache_seq_valid(c, seq));
    kv_seq *s = &c->seqs[seq];
    MOE_ASSERT(s->n_pub == 0 && s->n_blocks == 0);
    uint64_t h = c->seed ^ (salt * 0x9e3779b97f4a7c15ull);
    h ^= h >> 31;
    s->pub_key = salt ? h * 0xbf58476d1ce4e5b9ull : c->seed;
    s->salt = salt;
}

void moe_kvcache_prefix_test_collide(moe_kvcache *c) { c->collide = true; }

void moe_kvcache_prefix_stats(const moe_kvcache *c, uint64_t *queries, uint64_t *hits, int64_t *idle_blocks)
{
    *queries = c->queries;
    *hits = c->hits;
    *idle_blocks = c->n_idle;
}
