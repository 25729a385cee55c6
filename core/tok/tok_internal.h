/*
 * tok_internal.h — what the parts of the tokenizer share; private to
 * core/tok/ (the public API is core/tokenizer.h).
 *
 * The tokenizer is four parts, one file each:
 *   vocab.c   load from GGUF: token strings and types, the string -> id
 *             hash, decoded bytes, the merges table, the trie of added
 *             tokens, the EOS/EOT ids; lookups, accessors, decode
 *   pre.c     pre-tokenizers: the split rules of each tokenizer.ggml.pre,
 *             in one table keyed by that name
 *   bpe.c     encode: the per-call working memory, added-token matching,
 *             then BPE merging of each pre-token (short and heap paths)
 *   stream.c  the streaming detokenizer (moe_tok_stream_*)
 *
 * Layout after load (nothing points into the GGUF mapping):
 *   str/str_off   every token's GGUF string, for --pieces and lookups
 *   dec/dec_off   every token's decoded bytes (what decode emits)
 *   byte_id[256]  the token of each single byte, BPE's starting symbols
 *   merges        open-addressed hash (left id, right id) -> (rank, merged id);
 *                 BPE then works on integer ids only, no string hashing
 *   trie          the texts of control and user-defined tokens, for
 *                 leftmost-longest added-token matching
 *
 * The hashes and the merge lookup are static inline here: BPE calls them
 * for every pair it looks at, so they must stay inlined in bpe.c.
 */
#ifndef MOE_TOK_INTERNAL_H
#define MOE_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* ---------------------------------------------------------------- tables */

typedef struct tok_merge_slot {
    uint64_t key; /* (left << 32) | right; TOK_MERGE_EMPTY when free */
    uint32_t rank;
    int32_t id;
} tok_merge_slot;
#define TOK_MERGE_EMPTY UINT64_MAX

typedef struct tok_trie_node {
    int32_t child;   /* first child, -1 if none */
    int32_t sibling; /* next sibling, -1 if none */
    int32_t id;      /* token ending here, -1 if none */
    uint8_t byte;
} tok_trie_node;

struct moe_tokenizer {
    moe_tok_pre pre;
    int32_t n_vocab;
    int32_t bos, eos, eot, eot_text; /* -1 if absent */
    bool add_bos;
    uint8_t *type;     /* [n_vocab] moe_toktype */
    char *str;         /* GGUF strings, concatenated */
    uint32_t *str_off; /* [n_vocab + 1] */
    char *dec;         /* decoded bytes, concatenated */
    uint32_t *dec_off; /* [n_vocab + 1] */
    size_t max_dec;    /* longest decoded token */
    /* GGUF string -> id: open addressing, at most half full.  Each slot
     * keeps 32 bits of the hash so that probing past other strings rarely
     * touches their bytes (load time is dominated by these lookups). */
    struct tok_lookup_slot { uint32_t id1, tag; } *lookup; /* id1 = id + 1, 0 = empty */
    uint64_t lookup_mask;
    int32_t byte_id[256];
    tok_merge_slot *merges;
    uint64_t merge_mask;
    tok_trie_node *trie; /* node 0 is the root */
    int32_t n_trie;
    bool has_control, has_user; /* which kinds of added tokens the trie holds */
    uint8_t trie_first[32];     /* bitmap of first bytes of added tokens */
};

static inline uint64_t tok_hash_bytes(const void *p, size_t n)
{
    /* FNV-1a, then a final mix so that the low bits used as a slot index
     * depend on every byte. */
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

static inline uint64_t tok_hash_pair(uint64_t key)
{
    /* The high half of the product depends on every bit of both ids. */
    key *= 0x9E3779B97F4A7C15ull;
    return (key >> 32) ^ (key >> 17);
}

static inline const tok_merge_slot *tok_merge_find(const moe_tokenizer *t, int32_t l, int32_t r)
{
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    for (uint64_t i = tok_hash_pair(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const tok_merge_slot *m = &t->merges[i];
        if (m->key == key) return m;
        if (m->key == TOK_MERGE_EMPTY) return NULL;
    }
}

/* Longest added token starting at byte i of s[0..n), allowed by flags
 * (user-defined always, control only with MOE_TOK_SPECIAL); its id and
 * byte length in *mlen, or -1.  (vocab.c) */
int32_t moe_tok_vocab_match_added(const moe_tokenizer *t, const unsigned char *s, size_t n, size_t i,
                                  unsigned flags, size_t *mlen);

/* ------------------------------------------------------ one encode call */

typedef struct tok_heap_ent {
    uint32_t rank, pos;
} tok_heap_ent;

typedef struct tok_enc tok_enc;

/* A split rule gets a piece [a, b) (character indices) and passes its
 * matches and the text between them, in order, to the next rule
 * ("Isolated" in the tokenizer.json sense); after the last rule, BPE. */
typedef void (*tok_split_rule)(tok_enc *e, int stage, size_t a, size_t b);

/* Working memory of one encode call: the text as characters, and the BPE
 * symbol arrays, grown (rarely) to the longest piece seen. */
struct tok_enc {
    const moe_tokenizer *tok;
    const tok_split_rule *rules; /* the pre-tokenizer's rules, NULL-terminated */
    const unsigned char *text;
    uint32_t *cp;    /* [n_chars] code point, MOE_UTF8_INVALID for a stray byte */
    uint8_t *fl;     /* [n_chars] Unicode flags (0 for a stray byte) */
    uint32_t *off;   /* [n_chars + 1] byte offset of each character */
    moe_tokens *out;
    /* BPE symbols, one per byte of the piece at the start */
    int32_t *sid;    /* token id */
    int32_t *prev, *next;
    uint32_t *prank; /* rank of the pair (i, next[i]), UINT32_MAX if none */
    tok_heap_ent *heap;
    size_t n_heap, cap_sym, cap_heap;
    /* Pieces already merged in this call (words repeat, and a lookup is far
     * cheaper than re-merging): piece bytes -> ids kept in `pool`.  Only
     * for texts long enough to repay the table; never shared between calls,
     * so the tokenizer stays read-only. */
    struct tok_cache_slot { uint64_t hash; uint32_t text_off, pool_off, len, n_ids; } *cache;
    size_t n_cache;
    int32_t *pool;
    size_t n_pool, cap_pool;
};

/* pre.c: the pre-tokenizer named s[0..len) (tokenizer.ggml.pre); an error
 * listing the supported names if there is none. */
int moe_tok_pre_from_name(const char *s, size_t len, moe_tok_pre *out, moe_err *err);
/* pre.c: the split rules of a pre-tokenizer, NULL-terminated. */
const tok_split_rule *moe_tok_pre_rules(moe_tok_pre pre);
/* pre.c: splits characters [a, b) by e->rules and BPE-merges each
 * resulting pre-token (moe_tok_bpe_piece), in order. */
void moe_tok_pre_split(tok_enc *e, size_t a, size_t b);

/* moe_tokens_push, inlined where tokens are produced one by one. */
static inline void tok_push(moe_tokens *t, int32_t id)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        t->ids = moe_xrealloc(t->ids, cap * sizeof *t->ids);
        t->cap = cap;
    }
    t->ids[t->n++] = id;
}

/* bpe.c: characters [a, b) form one pre-token: BPE-merge its bytes and
 * append the ids to e->out. */
void moe_tok_bpe_piece(tok_enc *e, size_t a, size_t b);

#endif
