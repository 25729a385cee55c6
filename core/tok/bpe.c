/*
 * bpe.c — encoding (see tokenizer.h): the text is decoded to characters
 * once, added tokens are matched, the rest goes through the pre-tokenizer's
 * split rules (pre.c), and each pre-token's bytes are merged by BPE here:
 * a rescan for short pieces, a heap of candidate pairs for long ones, and
 * a per-call cache of pieces already merged.
 */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"
#include "unicode.h"

/* ---------------------------------------------------------------- tokens */

void moe_tokens_push(moe_tokens *t, int32_t id) { tok_push(t, id); }

void moe_tokens_clear(moe_tokens *t) { t->n = 0; }

void moe_tokens_free(moe_tokens *t)
{
    free(t->ids);
    t->ids = NULL;
    t->n = t->cap = 0;
}

/* The per-call piece cache (tok_enc.cache). */
#define CACHE_SLOTS 16384            /* power of two */
#define CACHE_MAX_ENTRIES 12288      /* at most 3/4 full */
#define CACHE_MIN_TEXT 4096          /* bytes of input before a cache is used */

static inline bool heap_less(tok_heap_ent a, tok_heap_ent b)
{
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void heap_push(tok_enc *e, uint32_t rank, uint32_t pos)
{
    tok_heap_ent v = {rank, pos};
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

static tok_heap_ent heap_pop(tok_enc *e)
{
    tok_heap_ent top = e->heap[0], v = e->heap[--e->n_heap];
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
    const tok_merge_slot *m = tok_merge_find(t, l, r);
    if (!m) return UINT32_MAX;
    *merged = m->id;
    return m->rank;
}

/* Short pieces: rescan for the best pair after each merge, with the pair
 * ranks cached (a few dozen symbols at most, so this beats a heap). */
#define BPE_SHORT 48

static void bpe_short(tok_enc *e, size_t n)
{
    const moe_tokenizer *t = e->tok;
    int32_t dummy;
    /* The first lookups miss the cache: start them all before using any. */
    for (size_t i = 0; i + 1 < n; i++) {
        uint64_t key = ((uint64_t)(uint32_t)e->sid[i] << 32) | (uint32_t)e->sid[i + 1];
        __builtin_prefetch(&t->merges[tok_hash_pair(key) & t->merge_mask]);
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
    for (int32_t i = 0; i >= 0; i = e->next[i]) tok_push(e->out, e->sid[i]);
}

/* Long pieces: a heap of candidate pairs ordered by (rank, position).  An
 * entry is stale once either side has merged since; a rank names exactly
 * one pair, so "the pair at pos still has this rank" is the validity test.
 * Each merge pushes at most two entries: O(n log n) in all. */
static void bpe_long(tok_enc *e, size_t n)
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
        tok_heap_ent h = heap_pop(e);
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
    for (int32_t i = 0; i >= 0; i = e->next[i]) tok_push(e->out, e->sid[i]);
}

static void bpe_reserve(tok_enc *e, size_t n)
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

static void bpe_merge(tok_enc *e, const unsigned char *s, size_t n)
{
    bpe_reserve(e, n);
    for (size_t i = 0; i < n; i++) e->sid[i] = e->tok->byte_id[s[i]];
    if (n <= BPE_SHORT) bpe_short(e, n);
    else bpe_long(e, n);
}

/* (see tok_internal.h) */
void moe_tok_bpe_piece(tok_enc *e, size_t a, size_t b)
{
    const unsigned char *s = e->text + e->off[a];
    size_t n = e->off[b] - e->off[a];
    if (n == 1) {
        tok_push(e->out, e->tok->byte_id[s[0]]);
        return;
    }
    if (!e->cache) {
        bpe_merge(e, s, n);
        return;
    }
    uint64_t h = tok_hash_bytes(s, n), i;
    for (i = h & (CACHE_SLOTS - 1); e->cache[i].len; i = (i + 1) & (CACHE_SLOTS - 1)) {
        const struct tok_cache_slot *c = &e->cache[i];
        if (c->hash == h && c->len == n && memcmp(e->text + c->text_off, s, n) == 0) {
            for (size_t k = 0; k < c->n_ids; k++) tok_push(e->out, e->pool[c->pool_off + k]);
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
    e->cache[i] = (struct tok_cache_slot){.hash = h, .text_off = e->off[a], .pool_off = (uint32_t)e->n_pool,
                                          .len = (uint32_t)n, .n_ids = (uint32_t)k};
    e->n_pool += k;
    e->n_cache++;
}

/* ---------------------------------------------------------------- encode */

int moe_tokenizer_encode(const moe_tokenizer *t, const char *text, size_t len, unsigned flags,
                         moe_tokens *out, moe_err *err)
{
    size_t n0 = out->n;
    /* Offsets are 32-bit to halve the working memory; 4 GB prompts are not a use case. */
    if (len >= UINT32_MAX) return moe_err_set(err, "tokenizer: input of %zu bytes is too large", len);
    tok_enc e = {.tok = t, .rules = moe_tok_pre_rules(t->pre), .text = (const unsigned char *)text, .out = out};
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
        int32_t id = moe_tok_vocab_match_added(t, e.text, len, e.off[c], flags, &mlen);
        if (id < 0) continue;
        /* The match must end on a character boundary of the text. */
        size_t end = e.off[c] + mlen, d = c;
        while (d < nc && e.off[d] < end) d++;
        if (e.off[d] != end) continue;
        if (seg < c) moe_tok_pre_split(&e, seg, c);
        moe_tokens_push(out, id);
        seg = d;
        c = d - 1;
    }
    if (seg < nc) moe_tok_pre_split(&e, seg, nc);

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


int moe_tokenizer_encode_prompt(const moe_tokenizer *tok, const char *text, size_t len, moe_tokens *out, moe_err *err)
{
    const unsigned flags = MOE_TOK_SPECIAL | (moe_tokenizer_add_bos(tok) ? MOE_TOK_BOS : 0u);
    return moe_tokenizer_encode(tok, text, len, flags, out, err);
}
