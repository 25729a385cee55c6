/*
 * vocab.c — the tokenizer's vocabulary (see tok_internal.h for the layout):
 * loading it from GGUF metadata, the string -> id hash, the merges table,
 * the trie of added tokens, the special ids; lookups, accessors, decode.
 */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"
#include "unicode.h"

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

/* --------------------------------------------------------------- lookups */

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
        struct tok_lookup_slot v = t->lookup[i];
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
        struct tok_lookup_slot v = t->lookup[i];
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
    return lookup_hashed(t, s, len, tok_hash_bytes(s, len));
}

/* ------------------------------------------------------------------ load */

static int load_fail(moe_tokenizer *t, moe_err *err)
{
    moe_tokenizer_free(t);
    return moe_err_prefix(err, "tokenizer");
}

int moe_tokenizer_check_embd(const moe_tokenizer *tok, const moe_gguf *g, moe_err *err)
{
    const moe_gguf_tensor *e = moe_gguf_find_tensor(g, "token_embd.weight");
    if (e && e->n_dims >= 2 && e->ne[1] != (uint64_t)tok->n_vocab)
        return moe_err_set(err, "the vocabulary has %d tokens but token_embd.weight has %llu rows", (int)tok->n_vocab,
                           (unsigned long long)e->ne[1]);
    return MOE_OK;
}

int moe_tokenizer_check_model(const moe_gguf *g, moe_err *err)
{
    if (moe_gguf_find_kv(g, "tokenizer.ggml.tokens") < 0) return MOE_OK;
    moe_tokenizer *tok;
    if (moe_tokenizer_load(&tok, g, err)) return MOE_ERR;
    const int rc = moe_tokenizer_check_embd(tok, g, err);
    moe_tokenizer_free(tok);
    return rc;
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

int moe_tokenizer_eos_from_gguf(const moe_gguf *g, int32_t n_vocab, int32_t *eos, moe_err *err)
{
    *eos = -1;
    if (n_vocab <= 0) return moe_err_set(err, "n_vocab %d: no id can be EOS", n_vocab);
    return get_opt_id(g, "tokenizer.ggml.eos_token_id", n_vocab, eos, err);
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
            t->trie[c] = (tok_trie_node){.child = -1, .sibling = t->trie[node].child, .id = -1, .byte = b};
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
            b[j].hl = tok_hash_bytes(ms, b[j].ll);
            b[j].hr = tok_hash_bytes(sp + 1, b[j].rl);
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
            b[j].slot = tok_hash_pair(b[j].key) & t->merge_mask;
            b[j].m = m;
            __builtin_prefetch(&t->merges[b[j].slot], 1);
        }
        for (size_t j = 0; j < nb && rc == MOE_OK; j++) {
            uint64_t key = b[j].key, h = b[j].slot;
            while (t->merges[h].key != TOK_MERGE_EMPTY && t->merges[h].key != key) h = (h + 1) & t->merge_mask;
            if (t->merges[h].key == key) continue; /* a repeated pair keeps its first rank */
            t->merges[h] = (tok_merge_slot){.key = key, .rank = (uint32_t)(r0 + j), .id = b[j].m};
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
    if (moe_tok_pre_from_name(s, (size_t)slen, &t->pre, err)) return load_fail(t, err);

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
        moe_tokenizer_eos_from_gguf(g, t->n_vocab, &t->eos, err) ||
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
            hb[j] = tok_hash_bytes(t->str + t->str_off[i], t->str_off[i + 1] - t->str_off[i]);
            __builtin_prefetch(&t->lookup[hb[j] & t->lookup_mask], 1);
        }
        for (size_t j = 0; j < nb; j++) {
            size_t i = i0 + j;
            if (t->type[i] == MOE_TOKTYPE_UNUSED) continue;
            const char *ts = t->str + t->str_off[i];
            size_t len = t->str_off[i + 1] - t->str_off[i];
            /* The same string twice: which id would text encode to?  Refused
             * (real vocabularies have none; a damaged or forged file might). */
            const int32_t first = lookup_hashed(t, ts, len, hb[j]);
            if (first >= 0) {
                moe_err_set(err, "tokens %d and %zu are the same string (a damaged vocabulary)", (int)first, i);
                free(canon);
                return load_fail(t, err);
            }
            uint64_t h = hb[j] & t->lookup_mask;
            while (t->lookup[h].id1) h = (h + 1) & t->lookup_mask;
            t->lookup[h] = (struct tok_lookup_slot){(uint32_t)i + 1, (uint32_t)(hb[j] >> 32)};
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
    for (uint64_t i = 0; i < nslots; i++) t->merges[i].key = TOK_MERGE_EMPTY;
    t->merge_mask = nslots - 1;
    if (resolve_merges(t, g, &merges, canon, err)) {
        free(canon);
        return load_fail(t, err);
    }
    free(canon);

    /* Added tokens for text matching: control and user-defined ones. */
    int32_t cap = 1024;
    t->trie = moe_xmalloc((size_t)cap * sizeof *t->trie);
    t->trie[0] = (tok_trie_node){.child = -1, .sibling = -1, .id = -1, .byte = 0};
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

/* ---------------------------------------------------------- added tokens */

/* (see tok_internal.h) */
int32_t moe_tok_vocab_match_added(const moe_tokenizer *t, const unsigned char *s, size_t n, size_t i,
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
