/*
 * vocab_synth.c — a small byte-level BPE vocabulary for generated models.
 *
 * Tokens use the GPT-2 byte-to-unicode mapping (printable bytes stand for
 * themselves, the others map to U+0100 onwards), so any byte string can be
 * tokenized.  Merges are learned greedily from the built-in text below:
 * split into words with a leading space ("Ġ" in the mapping), repeatedly
 * merge the most frequent adjacent pair (ties to the lower ids).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mkmodel.h"
#include "tokenizer.h"

static const char corpus[] =
    "A mixture of experts model sends every token to a few of its many feed forward networks. "
    "The gate scores each expert, the router keeps the best ones, and the token visits only those. "
    "Most of the weights sit in the experts, so a cluster can spread them over several machines "
    "while each machine keeps the dense layers, the attention and the cache of its own sequences. "
    "Attention with a latent cache stores one small vector per token and layer instead of full keys "
    "and values. The queries are projected into the latent space, so decoding reads far less memory. "
    "When the model runs on many ranks, the tokens travel to the ranks that hold their experts and the "
    "results travel back, where they are added in a fixed order so that every run gives the same answer. "
    "The coordinator takes requests, places each sequence on the rank with the most free cache, and "
    "streams the tokens back as soon as they are sampled. It keeps the prompt and the tokens so far, "
    "so a request can be replayed on a restarted job with nothing lost and nothing repeated. "
    "Numbers like 0 1 2 3 4 5 6 7 8 9 10 16 32 64 128 256 512 1024 2048 4096 appear in shapes and sizes. "
    "This is the story of the engine: it is small, it is fast, and it is correct to the last logit. "
    "Users send text and chat messages; the tokenizer turns them into ids, the model turns ids into "
    "logits, the sampler picks the next token, and the detokenizer turns ids back into text.\n"
    "def forward(x):\n    return expert(x) + shared(x)\n";

static int put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    o[0] = (char)(0xc0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2; /* mapping stays below U+0800 */
}

static char *concat(const char *a, const char *b, char sep)
{
    size_t na = strlen(a), nb = strlen(b);
    char *s = moe_xmalloc(na + nb + 2);
    memcpy(s, a, na);
    size_t k = na;
    if (sep) s[k++] = sep;
    memcpy(s + k, b, nb + 1);
    return s;
}

typedef struct pair_count {
    int a, b, count;
} pair_count;

static int cmp_pair(const void *x, const void *y)
{
    const pair_count *p = x, *q = y;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    return (p->b > q->b) - (p->b < q->b);
}

typedef struct word {
    int *ids;
    int n;
    int count;
} word;

void mk_vocab_build(mk_vocab *v, int n_vocab)
{
    static const char *const specials[3] = {"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"};
    memset(v, 0, sizeof *v);
    v->tokens = moe_xcalloc((size_t)n_vocab, sizeof *v->tokens);
    v->types = moe_xcalloc((size_t)n_vocab, sizeof *v->types);
    v->merges = moe_xcalloc((size_t)n_vocab, sizeof *v->merges);
    int n = 0;
    for (int i = 0; i < 3 && n < n_vocab; i++, n++) {
        v->tokens[n] = moe_xstrdup(specials[i]);
        v->types[n] = 3; /* control */
    }
    for (unsigned b = 0; b < 256 && n < n_vocab; b++, n++) {
        char s[4] = {0};
        put_utf8(s, moe_tokenizer_byte_to_cp(b));
        v->tokens[n] = moe_xstrdup(s);
        v->types[n] = 1;
    }

    /* Words: a space starts a new word and belongs to it, as GPT-2 splits. */
    size_t len = sizeof corpus - 1;
    word *words = moe_xcalloc(len, sizeof *words);
    int n_words = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i + 1;
        while (j < len && corpus[j] != ' ' && corpus[j] != '\n') j++;
        int found = -1;
        for (int w = 0; w < n_words && found < 0; w++) {
            if (words[w].n != (int)(j - i)) continue;
            int same = 1;
            for (int k = 0; k < words[w].n && same; k++) same = words[w].ids[k] == 3 + (unsigned char)corpus[i + k];
            if (same) found = w;
        }
        if (found >= 0) words[found].count++;
        else {
            word *w = &words[n_words++];
            w->n = (int)(j - i);
            w->count = 1;
            w->ids = moe_xmalloc((size_t)w->n * sizeof *w->ids);
            for (int k = 0; k < w->n; k++) w->ids[k] = 3 + (unsigned char)corpus[i + k];
        }
        i = j;
    }

    /* Greedy merges while there are pairs and room in the vocabulary:
     * gather every adjacent pair, sort, and sum the counts of equal pairs. */
    size_t max_pairs = len;
    pair_count *pairs = moe_xmalloc(max_pairs * sizeof *pairs);
    while (n < n_vocab) {
        size_t np = 0;
        for (int w = 0; w < n_words; w++)
            for (int k = 0; k + 1 < words[w].n; k++)
                pairs[np++] = (pair_count){words[w].ids[k], words[w].ids[k + 1], words[w].count};
        qsort(pairs, np, sizeof *pairs, cmp_pair);
        int best_a = -1, best_b = -1, best_c = 0;
        for (size_t i = 0; i < np;) {
            size_t j = i;
            int c = 0;
            while (j < np && pairs[j].a == pairs[i].a && pairs[j].b == pairs[i].b) c += pairs[j++].count;
            if (c > best_c) { /* sorted order: the first maximum has the lowest ids */
                best_a = pairs[i].a;
                best_b = pairs[i].b;
                best_c = c;
            }
            i = j;
        }
        if (best_c == 0) break;
        v->merges[v->n_merges++] = concat(v->tokens[best_a], v->tokens[best_b], ' ');
        v->tokens[n] = concat(v->tokens[best_a], v->tokens[best_b], 0);
        v->types[n] = 1;
        for (int w = 0; w < n_words; w++) {
            int o = 0;
            for (int k = 0; k < words[w].n; k++) {
                if (k + 1 < words[w].n && words[w].ids[k] == best_a && words[w].ids[k + 1] == best_b) {
                    words[w].ids[o++] = n;
                    k++;
                } else {
                    words[w].ids[o++] = words[w].ids[k];
                }
            }
            words[w].n = o;
        }
        n++;
    }
    free(pairs);
    for (int w = 0; w < n_words; w++) free(words[w].ids);
    free(words);

    /* Unused fillers, as real vocabularies padded to the model's size have. */
    for (; n < n_vocab; n++) {
        char s[32];
        snprintf(s, sizeof s, "[PAD%d]", n);
        v->tokens[n] = moe_xstrdup(s);
        v->types[n] = 5;
    }
    v->n_tokens = n;
}

void mk_vocab_free(mk_vocab *v)
{
    for (int i = 0; i < v->n_tokens; i++) free(v->tokens[i]);
    for (int i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->types);
    free(v->merges);
    memset(v, 0, sizeof *v);
}
