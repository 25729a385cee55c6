/*
 * kvcache.h — the MLA latent cache in fixed-size blocks.
 *
 * Per token per layer it stores only `width` = kv_lora + qk_rope floats: the
 * RMS-normed latent c_kv followed by the roped shared key k_pe.  Never any
 * decompressed K or V.  Storage is a pool of blocks of `block_size` tokens;
 * each block holds all layers:  block[layer][slot][width]  (float32).
 * A sequence owns a table of block ids, so it grows without copying; when
 * the pool is empty or the sequence reaches max_ctx, reserving fails with a
 * message for that sequence only.
 *
 * The pool is allocated once at init (pages are committed only when a
 * block is first written); "bytes in use" counts blocks handed out.
 */
#ifndef MOE_WORKER_KVCACHE_H
#define MOE_WORKER_KVCACHE_H

#include <stdint.h>

#include "base.h"

typedef struct moe_kvcache moe_kvcache;

typedef struct moe_kvcache_cfg {
    int n_layer;
    int width;          /* kv_lora + qk_rope */
    int block_size;     /* tokens per block, 1..4096 */
    int64_t n_blocks;   /* blocks in the pool */
    int max_seqs;
    int64_t max_ctx;    /* tokens per sequence */
} moe_kvcache_cfg;

/* Checks cfg and sets *bytes to what moe_kvcache_init allocates for it:
 * the pool (n_blocks × n_layer × block_size × width floats) and its
 * tables, counting every sequence slot's block table (each is allocated
 * when its slot is first used). */
int moe_kvcache_bytes(const moe_kvcache_cfg *cfg, uint64_t *bytes, moe_err *err);
int moe_kvcache_init(moe_kvcache **out, const moe_kvcache_cfg *cfg, moe_err *err);
void moe_kvcache_free(moe_kvcache *c);

/* A new empty sequence (its id in 0..max_seqs-1). */
int moe_kvcache_seq_new(moe_kvcache *c, int *seq, moe_err *err);
/* Returns the sequence's blocks to the pool. */
void moe_kvcache_seq_free(moe_kvcache *c, int seq);
bool moe_kvcache_seq_valid(const moe_kvcache *c, int seq);
int64_t moe_kvcache_seq_len(const moe_kvcache *c, int seq);
/* Ensures blocks for positions < len (len ≥ current length); a clear error
 * (cache full / context limit) leaves the sequence unchanged. */
int moe_kvcache_reserve(moe_kvcache *c, int seq, int64_t len, moe_err *err);
/* Marks positions < len as written (after a step). */
void moe_kvcache_set_len(moe_kvcache *c, int seq, int64_t len);
/* The width floats of (seq, layer, pos); pos must be reserved. */
float *moe_kvcache_at(moe_kvcache *c, int seq, int layer, int64_t pos);

uint64_t moe_kvcache_bytes_in_use(const moe_kvcache *c);
uint64_t moe_kvcache_block_bytes(const moe_kvcache *c);
int64_t moe_kvcache_blocks_free(const moe_kvcache *c);
int64_t moe_kvcache_blocks_total(const moe_kvcache *c);
int moe_kvcache_block_tokens(const moe_kvcache *c);

#endif
