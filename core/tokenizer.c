/*
 * tokenizer.c — byte-level BPE from GGUF metadata (see tokenizer.h).
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
 * The split rules are hand-written scanners equivalent to the regular
 * expressions of the original tokenizers (backtracking, leftmost-first
 * alternation), each running in linear time over a piece.
 */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "unicode.h"

/* ---------------------------------------------------------------- tables */

typedef struct merge_slot {
    uint64_t key; /* (left << 32) | right; MERGE_EMPTY when free */
    uint32_t rank;
    int32_t id;
} merge_slot;
#define MERGE_EMPTY UINT64_MAX

typedef struct trie_node {
    int32_t child;   /* first child, -1 if none */
    int32_t sibling; /* next sibling, -1 if none */
    int32_t id;      /* token ending here, -1 if none */
    uint8_t byte;
} trie_node;

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
    struct lookup_slot { uint32_t id1, tag; } *lookup; /* id1 = id + 1, 0 = empty */
    uint64_t lookup_mask;
    int32_t byte_id[256];
    merge_slot *merges;
    uint64_t merge_mask;
    trie_node *trie;   /* node 0 is the root */
    int32_t n_trie;
    bool has_control, has_user; /* which kinds of added tokens the trie holds */
    uint8_t trie_first[32]; /* bitmap of first bytes of added tokens */
};

/* GPT-2's byte-to-unicode map: printable Latin-1 bytes stand for
 * themselves, the other 68 bytes are moved to U+0100.. in byte order, so
 * every byte is a visible character in vocab and merge strings. */
uint32_t moe_tokenizer_byte_to_cp(unsigned b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    unsigned k = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) k++;
    return 0x100 + k;
}

static uint64_t hash_bytes(const void *p, size_t n)
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

static inline uint64_t hash_pair(uint64_t key)
{
    /* The high half of the product depends on every bit of both ids. */
    key *= 0x9E3779B97F4A7C15ull;
    return (key >> 32) ^ (key >> 17);
}

static uint64_t pow2_at_least(uint64_t x)
{
    uint64_t p = 16;
    while (p < x) p <<= 1;
    return p;
}

static int32_t lookup_hashed(const moe_tokenizer *t, const char *s, size_t len, uint64_t h)
{
    uint32_t tag = (uint32_t)(h >> 32);
    for (uint64_t i = h & t->lookup_mask;; i = (i + 1) & t->lookup_mask) {
        struct lookup_slot v = t->lookup[i];
        if (!v.id1) return -1;
        if (v.tag != tag) continue;
        int32_t id = (int32_t)(v.id1 - 1);
        size_t l = t->str_off[id + 1] - t->str_off[id];
        if (l == len && memcmp(t->str + t->str_off[id], s, len) == 0) return id;
    }
}

/* The id in the first slot on h's probe path whose tag matches, without
 * reading any string (-1 if none): the cheap first step of a lookup. */
static int32_t lookup_candidate(const moe_tokenizer *t, uint64_t h)
{
    uint32_t tag = (uint32_t)(h >> 32);
    for (uint64_t i = h & t->lookup_mask;; i = (i + 1) & t->lookup_mask) {
        struct lookup_slot v = t->lookup[i];
        if (!v.id1) return -1;
        if (v.tag == tag) return (int32_t)(v.id1 - 1);
    }
}

static inline bool str_is(const moe_tokenizer *t, int32_t id, const char *s, size_t len)
{
    return t->str_off[id + 1] - t->str_off[id] == len && memcmp(t->str + t->str_off[id], s, len) == 0;
}

static int32_t lookup_str(const moe_tokenizer *t, const char *s, size_t len)
{
    return lookup_hashed(t, s, len, hash_bytes(s, len));
}

static inline const merge_slot *merge_find(const moe_tokenizer *t, int32_t l, int32_t r)
{
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    for (uint64_t i = hash_pair(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const merge_slot *m = &t->merges[i];
        if (m->key == key) return m;
        if (m->key == MERGE_EMPTY) return NULL;
    }
}

/* ------------------------------------------------------------------ load */

static int load_fail(moe_tokenizer *t, moe_err *err)
{
    moe_tokenizer_free(t);
    return moe_err_prefix(err, "tokenizer");
}

static int get_opt_id(const moe_gguf *g, const char *key, int32_t n_vocab, int32_t *out, moe_err *err)
{
    *out = -1;
    if (moe_gguf_find_kv(g, key) < 0) return MOE_OK;
    int64_t v;
    if (moe_gguf_get_i64(g, key, &v, err)) return MOE_ERR;
    /* Converters write -1 (signed, or as u32 max) for "none". */
    if (v < 0 || v == UINT32_MAX) return MOE_OK;
    if (v >= n_vocab) return moe_err_set(err, "%s = %lld is not below n_vocab %d", key, (long long)v, n_vocab);
    *out = (int32_t)v;
    return MOE_OK;
}

/* Decodes a normal token's byte-level string to its bytes in out (room for
 * len bytes); false if it holds a character outside the byte map. */
static bool decode_byte_level(const int16_t *inv, const char *s, size_t len, char *out, size_t *out_len)
{
    size_t i = 0, o = 0, l;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) { /* most bytes of most tokens: no call */
            if (inv[c] < 0) return false;
            out[o++] = (char)inv[c];
            i++;
            continue;
        }
        uint32_t cp = moe_utf8_decode((const unsigned char *)s + i, len - i, &l);
        if (cp == MOE_UTF8_INVALID || cp >= 0x144 || inv[cp] < 0) return false;
        out[o++] = (char)inv[cp];
        i += l;
    }
    *out_len = o;
    return true;
}

static void trie_add(moe_tokenizer *t, int32_t *cap, const char *s, size_t len, int32_t id)
{
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = t->trie[node].child;
        while (c >= 0 && t->trie[c].byte != b) c = t->trie[c].sibling;
        if (c < 0) {
            if (t->n_trie == *cap) {
                *cap *= 2;
                t->trie = moe_xrealloc(t->trie, (size_t)*cap * sizeof *t->trie);
            }
            c = t->n_trie++;
            t->trie[c] = (trie_node){.child = -1, .sibling = t->trie[node].child, .id = -1, .byte = b};
            t->trie[node].child = c;
        }
        node = c;
    }
    if (t->trie[node].id < 0) t->trie[node].id = id; /* first (lowest id) wins */
}

#define LOAD_BATCH 32

/* Merges "left right" -> (left id, right id) -> (rank, merged id).  The
 * merged token's string is the concatenation of the two, because the
 * byte-level map works byte by byte.  Load time is dominated by cache
 * misses, so merges go in batches: parse and hash, prefetch the lookup
 * slots, resolve, prefetch the merge slots, insert.  Converters write the
 * merged tokens in rank order (id = rank + constant), so the merged id is
 * first guessed from the previous one and verified against its string
 * (sequential memory), falling back to the hash. */
static int resolve_merges(moe_tokenizer *t, const moe_gguf *g, const moe_gguf_arr *merges,
                          const uint8_t *canon, moe_err *err)
{
    struct pend {
        const char *ms;
        size_t ll, rl;
        uint64_t hl, hr, key, slot;
        int32_t m, cl, cr;
    } b[LOAD_BATCH];
    int64_t delta = 0;
    size_t cat_cap = 256;
    char *cat = moe_xmalloc(cat_cap);
    int rc = MOE_OK;
    for (uint64_t r0 = 0; r0 < merges->count && rc == MOE_OK; r0 += LOAD_BATCH) {
        size_t nb = merges->count - r0 < LOAD_BATCH ? (size_t)(merges->count - r0) : LOAD_BATCH;
        for (size_t j = 0; j < nb; j++) {
            uint64_t slen;
            const char *ms = moe_gguf_arr_str(g, merges, r0 + j, &slen);
            const char *sp = slen > 1 ? memchr(ms + 1, ' ', slen - 1) : NULL;
            if (!sp || sp + 1 == ms + slen || r0 + j >= UINT32_MAX) {
                rc = moe_err_set(err, "merge %llu is not of the form 'left right'",
                                 (unsigned long long)(r0 + j));
                break;
            }
            b[j].ms = ms;
            b[j].ll = (size_t)(sp - ms);
            b[j].rl = (size_t)slen - b[j].ll - 1;
            b[j].hl = hash_bytes(ms, b[j].ll);
            b[j].hr = hash_bytes(sp + 1, b[j].rl);
            __builtin_prefetch(&t->lookup[b[j].hl & t->lookup_mask]);
            __builtin_prefetch(&t->lookup[b[j].hr & t->lookup_mask]);
        }
        /* Candidates from the slots alone; prefetch their strings' offsets. */
        for (size_t j = 0; j < nb && rc == MOE_OK; j++) {
            b[j].cl = lookup_candidate(t, b[j].hl);
            b[j].cr = lookup_candidate(t, b[j].hr);
            if (b[j].cl >= 0) __builtin_prefetch(&t->str_off[b[j].cl]);
            if (b[j].cr >= 0) __builtin_prefetch(&t->str_off[b[j].cr]);
        }
        for (size_t j = 0; j < nb && rc == MOE_OK; j++) {
            if (b[j].cl >= 0) __builtin_prefetch(t->str + t->str_off[b[j].cl]);
            if (b[j].cr >= 0) __builtin_prefetch(t->str + t->str_off[b[j].cr]);
        }
        for (size_t j = 0; j < nb && rc == MOE_OK; j++) {
            uint64_t r = r0 + j;
            const char *ms = b[j].ms, *rs = ms + b[j].ll + 1;
            size_t ll = b[j].ll, rl = b[j].rl;
            /* A candidate whose string differs (a tag collision) falls back
             * to the full lookup, so the result is exact. */
            int32_t l = b[j].cl >= 0 && str_is(t, b[j].cl, ms, ll) ? b[j].cl : lookup_hashed(t, ms, ll, b[j].hl);
            int32_t rr = b[j].cr >= 0 && str_is(t, b[j].cr, rs, rl) ? b[j].cr : lookup_hashed(t, rs, rl, b[j].hr);
            int64_t guess = (int64_t)r + delta;
            int32_t m = -1;
            if (guess >= 0 && guess < t->n_vocab && canon[guess] &&
                t->str_off[guess + 1] - t->str_off[guess] == ll + rl &&
                memcmp(t->str + t->str_off[guess], ms, ll) == 0 &&
                memcmp(t->str + t->str_off[guess] + ll, rs, rl) == 0) {
                m = (int32_t)guess;
            } else {
                if (ll + rl > cat_cap) {
                    cat_cap = ll + rl;
                    cat = moe_xrealloc(cat, cat_cap);
                }
                memcpy(cat, ms, ll);
                memcpy(cat + ll, rs, rl);
                m = lookup_str(t, cat, ll + rl);
                if (m >= 0) delta = (int64_t)m - (int64_t)r;
            }
            if (l < 0 || rr < 0 || m < 0) {
                size_t sl = ll + 1 + rl;
                rc = moe_err_set(err, "merge %llu '%.*s' names a token that is not in the vocabulary",
                                 (unsigned long long)r, (int)(sl > 64 ? 64 : sl), ms);
                break;
            }
            b[j].key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)rr;
            b[j].slot = hash_pair(b[j].key) & t->merge_mask;
            b[j].m = m;
            __builtin_prefetch(&t->merges[b[j].slot], 1);
        }
        for (size_t j = 0; j < nb && rc == MOE_OK; j++) {
            uint64_t key = b[j].key, h = b[j].slot;
            while (t->merges[h].key != MERGE_EMPTY && t->merges[h].key != key) h = (h + 1) & t->merge_mask;
            if (t->merges[h].key == key) continue; /* a repeated pair keeps its first rank */
            t->merges[h] = (merge_slot){.key = key, .rank = (uint32_t)(r0 + j), .id = b[j].m};
        }
    }
    free(cat);
    return rc;
}

int moe_tokenizer_load(moe_tokenizer **out, const moe_gguf *g, moe_err *err)
{
    *out = NULL;
    moe_tokenizer *t = moe_xcalloc(1, sizeof *t);
    const char *s;
    uint64_t slen;

    if (moe_gguf_get_str(g, "tokenizer.ggml.model", &s, &slen, err)) return load_fail(t, err);
    if (!(slen == 4 && memcmp(s, "gpt2", 4) == 0)) {
        moe_err_set(err, "unsupported tokenizer.ggml.model '%.*s' (only 'gpt2', byte-level BPE)",
                    (int)(slen > 64 ? 64 : slen), s);
        return load_fail(t, err);
    }
    if (moe_gguf_get_str(g, "tokenizer.ggml.pre", &s, &slen, err)) return load_fail(t, err);
    if (slen == 11 && memcmp(s, "deepseek-v3", 11) == 0) t->pre = MOE_TOK_PRE_DEEPSEEK_V3;
    else if (slen == 12 && memcmp(s, "deepseek-llm", 12) == 0) t->pre = MOE_TOK_PRE_DEEPSEEK_LLM;
    else {
        moe_err_set(err, "unsupported pre-tokenizer tokenizer.ggml.pre = '%.*s' "
                    "(supported: deepseek-v3, deepseek-llm)", (int)(slen > 64 ? 64 : slen), s);
        return load_fail(t, err);
    }

    moe_gguf_arr tokens, types = {0}, merges;
    if (moe_gguf_get_arr(g, "tokenizer.ggml.tokens", &tokens, err)) return load_fail(t, err);
    if (tokens.type != MOE_GGUF_STRING || tokens.count == 0 || tokens.count >= INT32_MAX) {
        moe_err_set(err, "tokenizer.ggml.tokens must be a non-empty string array below 2^31 entries");
        return load_fail(t, err);
    }
    t->n_vocab = (int32_t)tokens.count;
    bool have_types = moe_gguf_find_kv(g, "tokenizer.ggml.token_type") >= 0;
    if (have_types) {
        if (moe_gguf_get_arr(g, "tokenizer.ggml.token_type", &types, err)) return load_fail(t, err);
        if ((types.type != MOE_GGUF_I32 && types.type != MOE_GGUF_U32) || types.count != tokens.count) {
            moe_err_set(err, "tokenizer.ggml.token_type must be an i32 array of %d entries", t->n_vocab);
            return load_fail(t, err);
        }
    }
    if (moe_gguf_get_arr(g, "tokenizer.ggml.merges", &merges, err)) return load_fail(t, err);
    if (merges.type != MOE_GGUF_STRING) {
        moe_err_set(err, "tokenizer.ggml.merges must be a string array");
        return load_fail(t, err);
    }
    if (get_opt_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos, err) ||
        get_opt_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos, err) ||
        get_opt_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot, err))
        return load_fail(t, err);
    if (moe_gguf_find_kv(g, "tokenizer.ggml.add_bos_token") >= 0 &&
        moe_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err))
        return load_fail(t, err);

    /* Types, and the total size of the strings (checked: they come from a file). */
    size_t n = (size_t)t->n_vocab, total = 0;
    t->type = moe_xmalloc(n);
    for (size_t i = 0; i < n; i++) {
        int32_t ty = MOE_TOKTYPE_NORMAL;
        if (have_types) memcpy(&ty, (const char *)types.data + 4 * i, 4);
        if (ty < MOE_TOKTYPE_UNDEFINED || ty > MOE_TOKTYPE_BYTE) {
            moe_err_set(err, "token %zu has unknown type %d", i, ty);
            return load_fail(t, err);
        }
        t->type[i] = (uint8_t)ty;
        moe_gguf_arr_str(g, &tokens, i, &slen);
        /* 32-bit offsets and trie indices: 2 GB of token text is plenty. */
        if (!moe_add_size(total, (size_t)slen, &total) || total >= INT32_MAX) {
            moe_err_set(err, "token strings too large");
            return load_fail(t, err);
        }
    }

    /* Copy the strings and build the string -> id hash (at most half full). */
    t->str = moe_xmalloc(total + 1);
    t->str_off = moe_xmalloc((n + 1) * sizeof *t->str_off);
    uint64_t nslots = pow2_at_least(2 * (uint64_t)n);
    t->lookup = moe_xcalloc(nslots, sizeof *t->lookup);
    t->lookup_mask = nslots - 1;
    /* canon[i]: token i owns its string's slot (false for unused tokens and
     * later duplicates), which lets the merge pass verify a guessed id. */
    uint8_t *canon = moe_xcalloc(n, 1);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const char *ts = moe_gguf_arr_str(g, &tokens, i, &slen);
        t->str_off[i] = (uint32_t)off;
        memcpy(t->str + off, ts, slen);
        off += slen;
    }
    t->str_off[n] = (uint32_t)off;
    /* Inserting is bound by cache misses on the slots, so hash a batch
     * first, prefetch its slots, then insert. */
    uint64_t hb[LOAD_BATCH];
    for (size_t i0 = 0; i0 < n; i0 += LOAD_BATCH) {
        size_t nb = n - i0 < LOAD_BATCH ? n - i0 : LOAD_BATCH;
        for (size_t j = 0; j < nb; j++) {
            size_t i = i0 + j;
            hb[j] = hash_bytes(t->str + t->str_off[i], t->str_off[i + 1] - t->str_off[i]);
            __builtin_prefetch(&t->lookup[hb[j] & t->lookup_mask], 1);
        }
        for (size_t j = 0; j < nb; j++) {
            size_t i = i0 + j;
            if (t->type[i] == MOE_TOKTYPE_UNUSED) continue;
            const char *ts = t->str + t->str_off[i];
            size_t len = t->str_off[i + 1] - t->str_off[i];
            /* Duplicate strings: the first (lowest id) keeps the slot. */
            if (lookup_hashed(t, ts, len, hb[j]) >= 0) continue;
            uint64_t h = hb[j] & t->lookup_mask;
            while (t->lookup[h].id1) h = (h + 1) & t->lookup_mask;
            t->lookup[h] = (struct lookup_slot){(uint32_t)i + 1, (uint32_t)(hb[j] >> 32)};
            canon[i] = 1;
        }
    }
    t->str[off] = 0;

    /* Decoded bytes: byte-level strings for normal tokens, the text itself
     * for added tokens, nothing for unused/unknown ones.  Decoding never
     * grows a string, so `total` bytes are enough. */
    int16_t inv[0x144];
    for (int i = 0; i < 0x144; i++) inv[i] = -1;
    for (unsigned b = 0; b < 256; b++) inv[moe_tokenizer_byte_to_cp(b)] = (int16_t)b;
    t->dec = moe_xmalloc(total + 1);
    t->dec_off = moe_xmalloc((n + 1) * sizeof *t->dec_off);
    off = 0;
    size_t n_raw = 0;
    for (size_t i = 0; i < n; i++) {
        const char *ts = t->str + t->str_off[i];
        size_t len = t->str_off[i + 1] - t->str_off[i], dl = 0;
        t->dec_off[i] = (uint32_t)off;
        switch (t->type[i]) {
        case MOE_TOKTYPE_NORMAL:
        case MOE_TOKTYPE_BYTE:
        case MOE_TOKTYPE_UNDEFINED:
            if (!decode_byte_level(inv, ts, len, t->dec + off, &dl)) {
                /* Not byte-level text: keep the string as it is. */
                memcpy(t->dec + off, ts, len);
                dl = len;
                n_raw++;
            }
            break;
        case MOE_TOKTYPE_CONTROL:
        case MOE_TOKTYPE_USER_DEFINED:
            memcpy(t->dec + off, ts, len);
            dl = len;
            break;
        default:
            break;
        }
        off += dl;
        if (dl > t->max_dec) t->max_dec = dl;
    }
    t->dec_off[n] = (uint32_t)off;
    if (n_raw) moe_log(MOE_LOG_DEBUG, "tokenizer: %zu normal tokens are not byte-level strings", n_raw);

    /* The 256 starting symbols. */
    for (unsigned b = 0; b < 256; b++) {
        unsigned char u[4];
        size_t ul = moe_utf8_encode(moe_tokenizer_byte_to_cp(b), u);
        t->byte_id[b] = lookup_str(t, (const char *)u, ul);
        if (t->byte_id[b] < 0) {
            moe_err_set(err, "the vocabulary has no token for byte 0x%02x (not a byte-level BPE vocabulary)", b);
            free(canon);
            return load_fail(t, err);
        }
    }

    /* Merges "left right" -> (left id, right id) -> (rank, merged id).  The
     * merged token's string is the concatenation of the two, because the
     * byte-level map works byte by byte. */
    nslots = pow2_at_least(2 * merges.count);
    t->merges = moe_xmalloc(nslots * sizeof *t->merges);
    for (uint64_t i = 0; i < nslots; i++) t->merges[i].key = MERGE_EMPTY;
    t->merge_mask = nslots - 1;
    if (resolve_merges(t, g, &merges, canon, err)) {
        free(canon);
        return load_fail(t, err);
    }
    free(canon);

    /* Added tokens for text matching: control and user-defined ones. */
    int32_t cap = 1024;
    t->trie = moe_xmalloc((size_t)cap * sizeof *t->trie);
    t->trie[0] = (trie_node){.child = -1, .sibling = -1, .id = -1, .byte = 0};
    t->n_trie = 1;
    t->eot_text = -1;
    for (size_t i = 0; i < n; i++) {
        if (t->type[i] != MOE_TOKTYPE_CONTROL && t->type[i] != MOE_TOKTYPE_USER_DEFINED) continue;
        size_t len = t->dec_off[i + 1] - t->dec_off[i];
        if (len == 0) continue;
        const char *ts = t->dec + t->dec_off[i];
        trie_add(t, &cap, ts, len, (int32_t)i);
        if (t->type[i] == MOE_TOKTYPE_CONTROL) t->has_control = true;
        else t->has_user = true;
        t->trie_first[(uint8_t)ts[0] >> 3] |= (uint8_t)(1u << ((uint8_t)ts[0] & 7));
        if (len == 7 && memcmp(ts, "<|EOT|>", 7) == 0 && t->eot_text < 0) t->eot_text = (int32_t)i;
    }

    *out = t;
    return MOE_OK;
}

void moe_tokenizer_free(moe_tokenizer *t)
{
    if (!t) return;
    free(t->type);
    free(t->str);
    free(t->str_off);
    free(t->dec);
    free(t->dec_off);
    free(t->lookup);
    free(t->merges);
    free(t->trie);
    free(t);
}

/* ------------------------------------------------------------- accessors */

int32_t moe_tokenizer_n_vocab(const moe_tokenizer *t) { return t->n_vocab; }
int32_t moe_tokenizer_bos(const moe_tokenizer *t) { return t->bos; }
int32_t moe_tokenizer_eos(const moe_tokenizer *t) { return t->eos; }
bool moe_tokenizer_add_bos(const moe_tokenizer *t) { return t->add_bos; }
moe_tok_pre moe_tokenizer_pre(const moe_tokenizer *t) { return t->pre; }
size_t moe_tokenizer_max_token_bytes(const moe_tokenizer *t) { return t->max_dec; }

moe_toktype moe_tokenizer_type(const moe_tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->n_vocab) return MOE_TOKTYPE_UNDEFINED;
    return (moe_toktype)t->type[id];
}

bool moe_tokenizer_is_control(const moe_tokenizer *t, int32_t id)
{
    return moe_tokenizer_type(t, id) == MOE_TOKTYPE_CONTROL;
}

bool moe_tokenizer_is_eog(const moe_tokenizer *t, int32_t id)
{
    return id >= 0 && (id == t->eos || id == t->eot || id == t->eot_text);
}

const char *moe_tokenizer_token_bytes(const moe_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab) return NULL;
    *len = t->dec_off[id + 1] - t->dec_off[id];
    return t->dec + t->dec_off[id];
}

const char *moe_tokenizer_token_str(const moe_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab) return NULL;
    *len = t->str_off[id + 1] - t->str_off[id];
    return t->str + t->str_off[id];
}

int32_t moe_tokenizer_find(const moe_tokenizer *t, const char *s, size_t len)
{
    return lookup_str(t, s, len);
}

/* ---------------------------------------------------------------- tokens */

void moe_tokens_push(moe_tokens *t, int32_t id)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        t->ids = moe_xrealloc(t->ids, cap * sizeof *t->ids);
        t->cap = cap;
    }
    t->ids[t->n++] = id;
}

void moe_tokens_clear(moe_tokens *t) { t->n = 0; }

void moe_tokens_free(moe_tokens *t)
{
    free(t->ids);
    t->ids = NULL;
    t->n = t->cap = 0;
}

/* ------------------------------------------------------------------- BPE */

/* Working memory of one encode call: the text as characters, and the BPE
 * symbol arrays, grown (rarely) to the longest piece seen. */
typedef struct heap_ent {
    uint32_t rank, pos;
} heap_ent;

typedef struct enc {
    const moe_tokenizer *tok;
    const unsigned char *text;
    uint32_t *cp;    /* [n_chars] code point, MOE_UTF8_INVALID for a stray byte */
    uint8_t *fl;     /* [n_chars] Unicode flags (0 for a stray byte) */
    uint32_t *off;   /* [n_chars + 1] byte offset of each character */
    moe_tokens *out;
    /* BPE symbols, one per byte of the piece at the start */
    int32_t *sid;    /* token id */
    int32_t *prev, *next;
    uint32_t *prank; /* rank of the pair (i, next[i]), UINT32_MAX if none */
    heap_ent *heap;
    size_t n_heap, cap_sym, cap_heap;
    /* Pieces already merged in this call (words repeat, and a lookup is far
     * cheaper than re-merging): piece bytes -> ids kept in `pool`.  Only
     * for texts long enough to repay the table; never shared between calls,
     * so the tokenizer stays read-only. */
    struct cache_slot { uint64_t hash; uint32_t text_off, pool_off, len, n_ids; } *cache;
    size_t n_cache;
    int32_t *pool;
    size_t n_pool, cap_pool;
} enc;

#define CACHE_SLOTS 16384            /* power of two */
#define CACHE_MAX_ENTRIES 12288      /* at most 3/4 full */
#define CACHE_MIN_TEXT 4096          /* bytes of input before a cache is used */

static inline bool heap_less(heap_ent a, heap_ent b)
{
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void heap_push(enc *e, uint32_t rank, uint32_t pos)
{
    heap_ent v = {rank, pos};
    MOE_ASSERT(e->n_heap < e->cap_heap);
    size_t i = e->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(v, e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = v;
}

static heap_ent heap_pop(enc *e)
{
    heap_ent top = e->heap[0], v = e->heap[--e->n_heap];
    size_t i = 0, n = e->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(e->heap[c + 1], e->heap[c])) c++;
        if (!heap_less(e->heap[c], v)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = v;
    return top;
}

static inline uint32_t pair_rank(const moe_tokenizer *t, int32_t l, int32_t r, int32_t *merged)
{
    const merge_slot *m = merge_find(t, l, r);
    if (!m) return UINT32_MAX;
    *merged = m->id;
    return m->rank;
}

/* Short pieces: rescan for the best pair after each merge, with the pair
 * ranks cached (a few dozen symbols at most, so this beats a heap). */
#define BPE_SHORT 48

static void bpe_short(enc *e, size_t n)
{
    const moe_tokenizer *t = e->tok;
    int32_t dummy;
    /* The first lookups miss the cache: start them all before using any. */
    for (size_t i = 0; i + 1 < n; i++) {
        uint64_t key = ((uint64_t)(uint32_t)e->sid[i] << 32) | (uint32_t)e->sid[i + 1];
        __builtin_prefetch(&t->merges[hash_pair(key) & t->merge_mask]);
    }
    for (size_t i = 0; i + 1 < n; i++) e->prank[i] = pair_rank(t, e->sid[i], e->sid[i + 1], &dummy);
    e->prank[n - 1] = UINT32_MAX;
    for (size_t i = 0; i < n; i++) {
        e->next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        e->prev[i] = (int32_t)i - 1;
    }
    for (;;) {
        uint32_t best = UINT32_MAX;
        int32_t bi = -1;
        for (int32_t i = 0; i >= 0; i = e->next[i])
            if (e->prank[i] < best) best = e->prank[i], bi = i;
        if (bi < 0) break;
        int32_t r = e->next[bi], merged = 0;
        pair_rank(t, e->sid[bi], e->sid[r], &merged);
        e->sid[bi] = merged;
        e->next[bi] = e->next[r];
        if (e->next[r] >= 0) e->prev[e->next[r]] = bi;
        e->prank[bi] = e->next[bi] >= 0 ? pair_rank(t, merged, e->sid[e->next[bi]], &dummy) : UINT32_MAX;
        if (e->prev[bi] >= 0) e->prank[e->prev[bi]] = pair_rank(t, e->sid[e->prev[bi]], merged, &dummy);
    }
    for (int32_t i = 0; i >= 0; i = e->next[i]) moe_tokens_push(e->out, e->sid[i]);
}

/* Long pieces: a heap of candidate pairs ordered by (rank, position).  An
 * entry is stale once either side has merged since; a rank names exactly
 * one pair, so "the pair at pos still has this rank" is the validity test.
 * Each merge pushes at most two entries: O(n log n) in all. */
static void bpe_long(enc *e, size_t n)
{
    const moe_tokenizer *t = e->tok;
    int32_t merged = 0;
    e->n_heap = 0;
    for (size_t i = 0; i < n; i++) {
        e->next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        e->prev[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t rk = pair_rank(t, e->sid[i], e->sid[i + 1], &merged);
        if (rk != UINT32_MAX) heap_push(e, rk, (uint32_t)i);
    }
    while (e->n_heap) {
        heap_ent h = heap_pop(e);
        int32_t l = (int32_t)h.pos, r = e->next[l];
        /* prev == -2 marks a symbol already merged into its left neighbour. */
        if (e->prev[l] == -2 || r < 0) continue;
        if (pair_rank(t, e->sid[l], e->sid[r], &merged) != h.rank) continue;
        e->sid[l] = merged;
        e->next[l] = e->next[r];
        if (e->next[r] >= 0) e->prev[e->next[r]] = l;
        e->prev[r] = -2;
        int32_t tmp;
        if (e->prev[l] >= 0) {
            int32_t p = e->prev[l];
            uint32_t rk = pair_rank(t, e->sid[p], merged, &tmp);
            if (rk != UINT32_MAX) heap_push(e, rk, (uint32_t)p);
        }
        if (e->next[l] >= 0) {
            uint32_t rk = pair_rank(t, merged, e->sid[e->next[l]], &tmp);
            if (rk != UINT32_MAX) heap_push(e, rk, (uint32_t)l);
        }
    }
    for (int32_t i = 0; i >= 0; i = e->next[i]) moe_tokens_push(e->out, e->sid[i]);
}

static void bpe_reserve(enc *e, size_t n)
{
    if (n <= e->cap_sym) return;
    size_t cap = e->cap_sym ? e->cap_sym : 256;
    while (cap < n) cap *= 2;
    e->sid = moe_xrealloc(e->sid, cap * sizeof *e->sid);
    e->prev = moe_xrealloc(e->prev, cap * sizeof *e->prev);
    e->next = moe_xrealloc(e->next, cap * sizeof *e->next);
    e->prank = moe_xrealloc(e->prank, cap * sizeof *e->prank);
    e->cap_sym = cap;
    if (cap > BPE_SHORT) { /* n - 1 initial pairs + two per merge */
        e->cap_heap = 3 * cap;
        e->heap = moe_xrealloc(e->heap, e->cap_heap * sizeof *e->heap);
    }
}

static void bpe_merge(enc *e, const unsigned char *s, size_t n)
{
    bpe_reserve(e, n);
    for (size_t i = 0; i < n; i++) e->sid[i] = e->tok->byte_id[s[i]];
    if (n <= BPE_SHORT) bpe_short(e, n);
    else bpe_long(e, n);
}

/* Characters [a, b) form one pre-token: BPE-merge its bytes. */
static void bpe_piece(enc *e, size_t a, size_t b)
{
    const unsigned char *s = e->text + e->off[a];
    size_t n = e->off[b] - e->off[a];
    if (n == 1) {
        moe_tokens_push(e->out, e->tok->byte_id[s[0]]);
        return;
    }
    if (!e->cache) {
        bpe_merge(e, s, n);
        return;
    }
    uint64_t h = hash_bytes(s, n), i;
    for (i = h & (CACHE_SLOTS - 1); e->cache[i].len; i = (i + 1) & (CACHE_SLOTS - 1)) {
        const struct cache_slot *c = &e->cache[i];
        if (c->hash == h && c->len == n && memcmp(e->text + c->text_off, s, n) == 0) {
            for (size_t k = 0; k < c->n_ids; k++) moe_tokens_push(e->out, e->pool[c->pool_off + k]);
            return;
        }
    }
    size_t start = e->out->n;
    bpe_merge(e, s, n);
    if (e->n_cache >= CACHE_MAX_ENTRIES) return;
    size_t k = e->out->n - start; /* <= n: the pool never outgrows the text */
    if (e->n_pool + k > e->cap_pool) {
        size_t cap = e->cap_pool ? 2 * e->cap_pool : 4096;
        while (cap < e->n_pool + k) cap *= 2;
        e->pool = moe_xrealloc(e->pool, cap * sizeof *e->pool);
        e->cap_pool = cap;
    }
    memcpy(e->pool + e->n_pool, e->out->ids + start, k * sizeof *e->pool);
    e->cache[i] = (struct cache_slot){.hash = h, .text_off = e->off[a], .pool_off = (uint32_t)e->n_pool,
                                      .len = (uint32_t)n, .n_ids = (uint32_t)k};
    e->n_pool += k;
    e->n_cache++;
}

/* ----------------------------------------------------------- split rules */

/* Each rule gets a piece [a, b) (character indices) and calls split_next
 * for its matches and for the text between them, in order ("Isolated"). */
typedef void (*split_rule)(enc *e, int stage, size_t a, size_t b);

static void split_next(enc *e, int stage, size_t a, size_t b);

#define CP(i) (e->cp[i])
#define FL(i) (e->fl[i])
#define IS_WS(i) ((FL(i) & MOE_UC_WS) != 0)
#define IS_CRLF(i) (CP(i) == '\r' || CP(i) == '\n')

/* Generic driver: match(e, p, b) returns the end (> p) of the match that
 * starts at p, or p if none starts there. */
#define DEFINE_ISOLATED_RULE(name, match_fn)                          \
    static void name(enc *e, int stage, size_t a, size_t b)           \
    {                                                                 \
        size_t gap = a, p = a;                                        \
        while (p < b) {                                               \
            size_t m = match_fn(e, p, b);                             \
            if (m > p) {                                              \
                if (gap < p) split_next(e, stage + 1, gap, p);        \
                split_next(e, stage + 1, p, m);                       \
                gap = p = m;                                          \
            } else p++;                                               \
        }                                                             \
        if (gap < b) split_next(e, stage + 1, gap, b);                \
    }

/* --- deepseek-v3 (DeepSeek-V3 tokenizer.json), rule by rule:
 *   1  \p{N}{1,3}
 *   2  [\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+
 *   3  [!-/:-@[-`{-~][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
 *      | ' '?[\p{P}\p{S}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+          */

static size_t v3_digits(enc *e, size_t p, size_t b)
{
    size_t q = p;
    while (q < b && q - p < 3 && (FL(q) & MOE_UC_N)) q++;
    return q;
}

static inline bool v3_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x3040 && c <= 0x30FF);
}

static size_t v3_cjk_run(enc *e, size_t p, size_t b)
{
    size_t q = p;
    while (q < b && v3_cjk(CP(q))) q++;
    return q;
}

static inline bool ascii_punct(uint32_t c)
{
    return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
}

static inline bool ascii_alpha(uint32_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

static size_t v3_words(enc *e, size_t p, size_t b)
{
    size_t q;
    /* [!-/:-@[-`{-~][A-Za-z]+ */
    if (p + 1 < b && ascii_punct(CP(p)) && ascii_alpha(CP(p + 1))) {
        q = p + 2;
        while (q < b && ascii_alpha(CP(q))) q++;
        return q;
    }
    /* [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ */
    const uint8_t LM = MOE_UC_L | MOE_UC_M, LPS = MOE_UC_L | MOE_UC_P | MOE_UC_S;
    q = p;
    if (!(FL(p) & LPS) && !IS_CRLF(p) && p + 1 < b && (FL(p + 1) & LM)) q = p + 1;
    if (FL(q) & LM) {
        while (q < b && (FL(q) & LM)) q++;
        return q;
    }
    /* ' '?[\p{P}\p{S}]+[\r\n]* */
    const uint8_t PS = MOE_UC_P | MOE_UC_S;
    q = p;
    if (CP(q) == ' ' && q + 1 < b && (FL(q + 1) & PS)) q++;
    if (FL(q) & PS) {
        while (q < b && (FL(q) & PS)) q++;
        while (q < b && IS_CRLF(q)) q++;
        return q;
    }
    if (!IS_WS(p)) return p;
    /* The whitespace run W from p.  \s*[\r\n]+ backtracks to the last
     * CR/LF inside W; \s+(?!\S) gives all of W at the end of the piece and
     * all but its last character before a non-space; \s+ takes the one
     * remaining space before a non-space. */
    size_t w = p, last_crlf = 0;
    bool crlf = false;
    while (w < b && IS_WS(w)) {
        if (IS_CRLF(w)) crlf = true, last_crlf = w;
        w++;
    }
    if (crlf) return last_crlf + 1;
    if (w == b || w - p == 1) return w;
    return w - 1;
}

DEFINE_ISOLATED_RULE(v3_rule1, v3_digits)
DEFINE_ISOLATED_RULE(v3_rule2, v3_cjk_run)
DEFINE_ISOLATED_RULE(v3_rule3, v3_words)

/* --- deepseek-llm (DeepSeek LLM / V2), rule by rule:
 *   1  [\r\n]
 *   2  \s?[letters of the DeepSeek LLM class]+
 *   3  \s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+
 *   4  \s+$
 *   5  [\x{4E00}-\x{9FA5}\x{0800}-\x{4E00}\x{AC00}-\x{D7FF}]+
 *   6  \p{N}+
 * The letter class is the literal one of the original pattern (a fixed
 * list of ranges, not a Unicode category), so it is spelled out here. */

static const uint32_t llm_letters[][2] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
    {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377},
    {0x37B, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C},
    {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
    {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
    {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE},
    {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC},
    {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
    {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
    {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149},
    {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787},
    {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};

static bool llm_letter(uint32_t c)
{
    if (c < 0x80) return ascii_alpha(c);
    size_t lo = 0, hi = sizeof llm_letters / sizeof llm_letters[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < llm_letters[mid][0]) hi = mid;
        else if (c > llm_letters[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

static inline bool llm_punct(uint32_t c)
{
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x7E) || (c >= 0xFF01 && c <= 0xFF0F) ||
           (c >= 0xFF1A && c <= 0xFF5E) || (c >= 0x2018 && c <= 0x201F) || (c >= 0x3000 && c <= 0x3002);
}

static inline bool llm_cjk(uint32_t c)
{
    /* U+4E00-9FA5, U+0800-4E00, U+AC00-D7FF */
    return (c >= 0x800 && c <= 0x9FA5) || (c >= 0xAC00 && c <= 0xD7FF);
}

static size_t llm_crlf(enc *e, size_t p, size_t b) { (void)b; return IS_CRLF(p) ? p + 1 : p; }

static size_t llm_letter_run(enc *e, size_t p, size_t b)
{
    size_t q = p;
    if (IS_WS(q) && q + 1 < b && llm_letter(CP(q + 1))) q++;
    if (!llm_letter(CP(q))) return p;
    while (q < b && llm_letter(CP(q))) q++;
    return q;
}

static size_t llm_punct_run(enc *e, size_t p, size_t b)
{
    size_t q = p;
    if (IS_WS(q) && q + 1 < b && llm_punct(CP(q + 1))) q++;
    if (!llm_punct(CP(q))) return p;
    while (q < b && llm_punct(CP(q))) q++;
    return q;
}

static size_t llm_cjk_run(enc *e, size_t p, size_t b)
{
    size_t q = p;
    while (q < b && llm_cjk(CP(q))) q++;
    return q;
}

static size_t llm_number_run(enc *e, size_t p, size_t b)
{
    size_t q = p;
    while (q < b && (FL(q) & MOE_UC_N)) q++;
    return q;
}

DEFINE_ISOLATED_RULE(llm_rule1, llm_crlf)
DEFINE_ISOLATED_RULE(llm_rule2, llm_letter_run)
DEFINE_ISOLATED_RULE(llm_rule3, llm_punct_run)
DEFINE_ISOLATED_RULE(llm_rule5, llm_cjk_run)
DEFINE_ISOLATED_RULE(llm_rule6, llm_number_run)

/* \s+$ can only match the trailing whitespace of the piece, and its
 * leftmost match is where that run starts: found with one backward scan
 * (a per-position forward check would be quadratic on long space runs). */
static void llm_rule4(enc *e, int stage, size_t a, size_t b)
{
    size_t t = b;
    while (t > a && IS_WS(t - 1)) t--;
    if (t > a) split_next(e, stage + 1, a, t);
    if (t < b) split_next(e, stage + 1, t, b);
}

static const split_rule v3_rules[] = {v3_rule1, v3_rule2, v3_rule3, NULL};
static const split_rule llm_rules[] = {llm_rule1, llm_rule2, llm_rule3, llm_rule4, llm_rule5, llm_rule6, NULL};

static void split_next(enc *e, int stage, size_t a, size_t b)
{
    const split_rule *rules = e->tok->pre == MOE_TOK_PRE_DEEPSEEK_V3 ? v3_rules : llm_rules;
    if (rules[stage]) rules[stage](e, stage, a, b);
    else bpe_piece(e, a, b);
}

/* ---------------------------------------------------------------- encode */

/* Longest added token starting at byte i, allowed by flags; its id and
 * byte length, or -1. */
static int32_t match_added(const moe_tokenizer *t, const unsigned char *s, size_t n, size_t i,
                           unsigned flags, size_t *mlen)
{
    int32_t node = 0, best = -1;
    for (size_t k = i; k < n; k++) {
        int32_t c = t->trie[node].child;
        while (c >= 0 && t->trie[c].byte != s[k]) c = t->trie[c].sibling;
        if (c < 0) break;
        node = c;
        int32_t id = t->trie[c].id;
        if (id >= 0 && (t->type[id] == MOE_TOKTYPE_USER_DEFINED || (flags & MOE_TOK_SPECIAL))) {
            best = id;
            *mlen = k + 1 - i;
        }
    }
    return best;
}

int moe_tokenizer_encode(const moe_tokenizer *t, const char *text, size_t len, unsigned flags,
                         moe_tokens *out, moe_err *err)
{
    size_t n0 = out->n;
    /* Offsets are 32-bit to halve the working memory; 4 GB prompts are not a use case. */
    if (len >= UINT32_MAX) return moe_err_set(err, "tokenizer: input of %zu bytes is too large", len);
    enc e = {.tok = t, .text = (const unsigned char *)text, .out = out};
    e.cp = moe_xmalloc((len + 1) * sizeof *e.cp);
    e.fl = moe_xmalloc(len + 1);
    e.off = moe_xmalloc((len + 1) * sizeof *e.off);

    /* Decode once; a stray byte becomes one character with no category. */
    size_t nc = 0;
    for (size_t i = 0; i < len;) {
        size_t l;
        uint32_t c = moe_utf8_decode(e.text + i, len - i, &l);
        e.cp[nc] = c;
        e.fl[nc] = c == MOE_UTF8_INVALID ? 0 : moe_uc_flags(c);
        e.off[nc++] = (uint32_t)i;
        i += l;
    }
    e.off[nc] = (uint32_t)len;
    if (len >= CACHE_MIN_TEXT) e.cache = moe_xcalloc(CACHE_SLOTS, sizeof *e.cache);

    /* Control tokens only count with MOE_TOK_SPECIAL; user-defined ones always. */
    bool any_added = t->has_user || ((flags & MOE_TOK_SPECIAL) && t->has_control);
    size_t seg = 0;
    for (size_t c = 0; c < nc && any_added; c++) {
        unsigned char b0 = e.text[e.off[c]];
        if (!(t->trie_first[b0 >> 3] & (1u << (b0 & 7)))) continue;
        size_t mlen = 0;
        int32_t id = match_added(t, e.text, len, e.off[c], flags, &mlen);
        if (id < 0) continue;
        /* The match must end on a character boundary of the text. */
        size_t end = e.off[c] + mlen, d = c;
        while (d < nc && e.off[d] < end) d++;
        if (e.off[d] != end) continue;
        if (seg < c) split_next(&e, 0, seg, c);
        moe_tokens_push(out, id);
        seg = d;
        c = d - 1;
    }
    if (seg < nc) split_next(&e, 0, seg, nc);

    free(e.cp);
    free(e.fl);
    free(e.off);
    free(e.sid);
    free(e.prev);
    free(e.next);
    free(e.prank);
    free(e.heap);
    free(e.cache);
    free(e.pool);

    if ((flags & MOE_TOK_BOS) && t->bos >= 0 && (out->n == n0 || out->ids[n0] != t->bos)) {
        moe_tokens_push(out, t->bos);
        memmove(out->ids + n0 + 1, out->ids + n0, (out->n - 1 - n0) * sizeof *out->ids);
        out->ids[n0] = t->bos;
    }
    return MOE_OK;
}

/* ---------------------------------------------------------------- decode */

int moe_tokenizer_decode(const moe_tokenizer *t, const int32_t *ids, size_t n, char **out,
                         size_t *out_len, moe_err *err)
{
    *out = NULL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return moe_err_set(err, "token id %d at position %zu is out of range [0, %d)", ids[i], i,
                               t->n_vocab);
        if (!moe_add_size(total, t->dec_off[ids[i] + 1] - t->dec_off[ids[i]], &total) || total == SIZE_MAX)
            return moe_err_set(err, "decoded text too large");
    }
    char *s = moe_xmalloc(total + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = t->dec_off[ids[i] + 1] - t->dec_off[ids[i]];
        memcpy(s + o, t->dec + t->dec_off[ids[i]], l);
        o += l;
    }
    s[o] = 0;
    *out = s;
    if (out_len) *out_len = o;
    return MOE_OK;
}

/* ------------------------------------------------------------- streaming */

struct moe_tok_stream {
    const moe_tokenizer *tok;
    unsigned flags;
    unsigned char pend[4]; /* incomplete UTF-8 sequence held back */
    size_t n_pend;
    unsigned char *in;     /* pending + one token */
    char *buf;             /* output: at most 3 bytes per input byte */
};

int moe_tok_stream_init(moe_tok_stream **out, const moe_tokenizer *tok, unsigned flags, moe_err *err)
{
    (void)err;
    moe_tok_stream *s = moe_xcalloc(1, sizeof *s);
    s->tok = tok;
    s->flags = flags;
    s->in = moe_xmalloc(tok->max_dec + 8);
    s->buf = moe_xmalloc(3 * (tok->max_dec + 8));
    *out = s;
    return MOE_OK;
}

void moe_tok_stream_free(moe_tok_stream *s)
{
    if (!s) return;
    free(s->in);
    free(s->buf);
    free(s);
}

void moe_tok_stream_reset(moe_tok_stream *s) { s->n_pend = 0; }

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

int moe_tok_stream_push(moe_tok_stream *s, int32_t id, const char **text, size_t *len, moe_err *err)
{
    *text = s->buf;
    *len = 0;
    size_t tl;
    const char *tb = moe_tokenizer_token_bytes(s->tok, id, &tl);
    if (!tb) return moe_err_set(err, "token id %d is out of range [0, %d)", id, s->tok->n_vocab);
    if ((s->flags & MOE_TOK_STREAM_SKIP_CONTROL) && s->tok->type[id] == MOE_TOKTYPE_CONTROL) return MOE_OK;
    memcpy(s->in, s->pend, s->n_pend);
    memcpy(s->in + s->n_pend, tb, tl);
    size_t n = s->n_pend + tl, i = 0, o = 0, l;
    s->n_pend = 0;
    while (i < n) {
        if (moe_utf8_decode(s->in + i, n - i, &l) != MOE_UTF8_INVALID) {
            memcpy(s->buf + o, s->in + i, l);
            o += l;
            i += l;
            continue;
        }
        bool more;
        l = moe_utf8_partial(s->in + i, n - i, &more);
        if (more) { /* wait for the rest of this character */
            memcpy(s->pend, s->in + i, l);
            s->n_pend = l;
            break;
        }
        memcpy(s->buf + o, REPLACEMENT, 3);
        o += 3;
        i += l;
    }
    *len = o;
    return MOE_OK;
}

void moe_tok_stream_flush(moe_tok_stream *s, const char **text, size_t *len)
{
    *text = s->buf;
    *len = 0;
    if (s->n_pend) { /* an incomplete sequence is one maximal subpart */
        memcpy(s->buf, REPLACEMENT, 3);
        *len = 3;
    }
    s->n_pend = 0;
}
