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
 * block is first written); "bytes in use" counts blocks held by sequences.
 *
 * Prefix caching (moe_kvcache_prefix_enable): a full block a sequence has
 * written can be published under a key, a 64-bit hash chained over every
 * (token, tag) of the sequence up to the block's end, starting from the
 * cache's seed.  A tag is the caller's note of how a position was computed
 * (the attention path), so only positions computed the same way match.  A
 * new sequence attaches the longest chain of published blocks that matches
 * its tokens: blocks are shared (reference-counted), never copied, and
 * each hit is verified — the block's own tokens and tags are compared and
 * its parent must be the block matched just before (id and generation), so
 * by induction the whole prefix is equal and a hash collision can never
 * serve a wrong prefix.  A published block no sequence holds stays cached
 * until the pool needs room: then the least recently released goes first
 * (a sequence's blocks are released last-first, so a prefix outlives its
 * tails).  A sequence only ever writes positions past its attached prefix,
 * so shared blocks are read-only.
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
 * when its slot is first used) and prefix caching's bookkeeping (whether
 * it is turned on or not). */
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

/* ---- prefix caching ---- */

/* Turns prefix caching on (before any sequence exists); seed names what
 * the cached values depend on besides the tokens (the model, the path).
 * lookahead: a block's values depend on the token after it too (the MTP
 * block's latent of a position reads the next token), so a block is
 * published only once that token is known, and it is part of its key and
 * compared on every hit. */
void moe_kvcache_prefix_enable(moe_kvcache *c, uint64_t seed, bool lookahead);
bool moe_kvcache_prefix_enabled(const moe_kvcache *c);
bool moe_kvcache_prefix_lookahead(const moe_kvcache *c);
/* Forgets every published block (what they hold is no longer what a cold
 * run computes: the routing changed); the live sequences keep their blocks
 * but publish nothing more.  No-op when caching is off. */
void moe_kvcache_prefix_flush(moe_kvcache *c);
/* Sequence seq (new, nothing attached or published) shares latents only
 * with sequences of the same salt (0: the default, shared by all). */
void moe_kvcache_seq_salt(moe_kvcache *c, int seq, uint64_t salt);
/* Attaches to the new, empty sequence seq the longest chain of published
 * blocks matching tokens/tags (tags NULL: all 0), at most max_tokens
 * tokens (whole blocks), and sets its length to match.  Returns the
 * tokens attached (0 when caching is off).  Counts n_query queried tokens
 * and the attached ones as hits (moe_kvcache_prefix_stats). */
int64_t moe_kvcache_prefix_attach(moe_kvcache *c, int seq, const int32_t *tokens, const uint8_t *tags,
                                  int64_t max_tokens, int64_t n_query);
/* Publishes the sequence's full blocks below position len (len <= its
 * length) that are not yet published; tokens/tags are the sequence's from
 * position 0 (the same it attached with; with lookahead, tokens[len] too).  A block whose key is already
 * published by another sequence stays private (the published one is the
 * chain's parent from then on).  No-op when caching is off. */
void moe_kvcache_prefix_publish(moe_kvcache *c, int seq, const int32_t *tokens, const uint8_t *tags, int64_t len);
/* TEST KNOB: every key the same (each lookup then rests on the
 * verification alone: a hash that collides must never serve a wrong
 * prefix). */
void moe_kvcache_prefix_test_collide(moe_kvcache *c);
/* Tokens queried and hit since init; blocks published and held by no
 * sequence (evictable, counted as free by moe_kvcache_blocks_free). */
void moe_kvcache_prefix_stats(const moe_kvcache *c, uint64_t *queries, uint64_t *hits, int64_t *idle_blocks);

uint64_t moe_kvcache_bytes_in_use(const moe_kvcache *c);
uint64_t moe_kvcache_block_bytes(const moe_kvcache *c);
/* Blocks a sequence can still get: free ones plus cached ones no sequence
 * holds (evicted when needed). */
int64_t moe_kvcache_blocks_free(const moe_kvcache *c);
int64_t moe_kvcache_blocks_total(const moe_kvcache *c);
int moe_kvcache_block_tokens(const moe_kvcache *c);

#endif
