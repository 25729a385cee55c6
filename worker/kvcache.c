/*
 * kvcache.c — block pool with a free stack and per-sequence block tables.
 */
#include "kvcache.h"

#include <stdlib.h>
#include <string.h>

typedef struct kv_seq {
    bool used;
    int64_t len;       /* positions written */
    int64_t n_blocks;  /* blocks in the table */
    int32_t *blocks;   /* [max_blocks_per_seq] */
} kv_seq;

struct moe_kvcache {
    moe_kvcache_cfg cfg;
    int64_t max_blocks_per_seq;
    size_t block_floats;
    float *pool;           /* n_blocks × block_floats */
    int32_t *free_stack;   /* [n_blocks] */
    int64_t n_free;
    kv_seq *seqs;          /* [max_seqs] */
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
    *out = c;
    return MOE_OK;
}

void moe_kvcache_free(moe_kvcache *c)
{
    if (!c) return;
    for (int i = 0; i < c->cfg.max_seqs; i++) free(c->seqs[i].blocks);
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
        *seq = i;
        return MOE_OK;
    }
    return moe_err_set(err, "all %d sequence slots are in use", c->cfg.max_seqs);
}

bool moe_kvcache_seq_valid(const moe_kvcache *c, int seq)
{
    return seq >= 0 && seq < c->cfg.max_seqs && c->seqs[seq].used;
}

void moe_kvcache_seq_free(moe_kvcache *c, int seq)
{
    MOE_ASSERT(moe_kvcache_seq_valid(c, seq));
    kv_seq *s = &c->seqs[seq];
    for (int64_t i = 0; i < s->n_blocks; i++) c->free_stack[c->n_free++] = s->blocks[i];
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
    if (need - s->n_blocks > c->n_free)
        return moe_err_set(err, "latent cache full: sequence needs %lld more blocks, %lld free",
                           (long long)(need - s->n_blocks), (long long)c->n_free);
    while (s->n_blocks < need) s->blocks[s->n_blocks++] = c->free_stack[--c->n_free];
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
    return (uint64_t)(c->cfg.n_blocks - c->n_free) * moe_kvcache_block_bytes(c);
}

int64_t moe_kvcache_blocks_free(const moe_kvcache *c) { return c->n_free; }
int64_t moe_kvcache_blocks_total(const moe_kvcache *c) { return c->cfg.n_blocks; }
int moe_kvcache_block_tokens(const moe_kvcache *c) { return c->cfg.block_size; }
