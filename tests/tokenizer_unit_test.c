/*
 * tokenizer_unit_test — behaviour the fixtures do not pin down:
 *   invalid UTF-8 (defined, lossless, no crash), long inputs (1 MB of one
 *   repeated character, random bytes, spaces, digits, CJK, CR/LF, '<' and
 *   special tokens: must finish fast and round-trip), BOS handling,
 *   special-token matching on/off, the streaming decoder's UTF-8 holding
 *   and U+FFFD policy, load errors (unknown pre-tokenizer or model), and
 *   moe_tokenizer_eos_from_gguf on handcrafted files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gguf.h"
#include "gguf_builder.h"
#include "tokenizer.h"
#include "tokenizer_util.h"

static moe_tokenizer *load_path(const char *path)
{
    moe_err err = {{0}};
    moe_gguf *g = NULL;
    if (moe_gguf_open(&g, path, &err)) {
        CHECK_MSG(0, "open %s: %s", path, err.msg);
        return NULL;
    }
    moe_tokenizer *tok = NULL;
    CHECK_MSG(moe_tokenizer_load(&tok, g, &err) == MOE_OK, "%s", err.msg);
    moe_gguf_close(g);
    return tok;
}

/* Encodes, checks every id is in range and that decoding gives the input. */
static bool round_trip(const moe_tokenizer *tok, const char *s, size_t n, unsigned flags, moe_tokens *ids)
{
    moe_err err = {{0}};
    moe_tokens_clear(ids);
    if (moe_tokenizer_encode(tok, s, n, flags, ids, &err)) {
        fprintf(stderr, "encode: %s\n", err.msg);
        return false;
    }
    for (size_t i = 0; i < ids->n; i++)
        if (ids->ids[i] < 0 || ids->ids[i] >= moe_tokenizer_n_vocab(tok)) return false;
    char *d = NULL;
    size_t dl = 0;
    if (moe_tokenizer_decode(tok, ids->ids, ids->n, &d, &dl, &err)) return false;
    bool ok = dl == n && memcmp(d, s, n) == 0;
    free(d);
    return ok;
}

static int32_t byte_token(const moe_tokenizer *tok, unsigned char b)
{
    /* The GPT-2 byte map for the bytes used below: printable bytes map to
     * themselves; 0xC3 -> U+00C3, 0xA9 -> U+00A9, 0xFF -> U+00FF. */
    char u[2] = {(char)(0xC0 | (b >> 6)), (char)(0x80 | (b & 0x3F))};
    if (b < 0x80) return moe_tokenizer_find(tok, (const char *)&b, 1);
    return moe_tokenizer_find(tok, u, 2);
}

static void test_invalid_utf8(const moe_tokenizer *tok, const char *name)
{
    static const struct { const char *s; size_t n; } cases[] = {
        {"\xff", 1}, {"\xc3", 1}, {"abc\xff" "def", 7}, {"\xe2\x82" "a", 3},
        {"\xc0\xaf", 2}, {"\xed\xa0\x80", 3}, {"\xf4\x90\x80\x80", 4}, {"\xf8\x88\x80\x80\x80", 5},
        {"caf\xc3", 4}, {" \xff \xfe\r\n\x80", 7}, {"\xe4\xb8", 2}, {"12\xff" "34", 5},
        {"\xe4\xb8\xad\xe6\x96", 5}, {"x\xed\xbf\xbfy", 5},
    };
    moe_tokens ids = {0};
    int ok = 0, n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        bool rt = round_trip(tok, cases[i].s, cases[i].n, 0, &ids);
        CHECK_MSG(rt, "%s: invalid UTF-8 case %d does not round-trip", name, i);
        ok += rt;
        rt = round_trip(tok, cases[i].s, cases[i].n, MOE_TOK_SPECIAL, &ids);
        CHECK_MSG(rt, "%s: invalid UTF-8 case %d (special on) does not round-trip", name, i);
    }
    /* A lone stray byte is its byte token. */
    round_trip(tok, "\xff", 1, 0, &ids);
    CHECK(ids.n == 1 && ids.ids[0] == byte_token(tok, 0xff));
    printf("%s: invalid UTF-8: %d/%d cases round-trip\n", name, ok, n);
    moe_tokens_free(&ids);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rng(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

static void test_long(const moe_tokenizer *tok, const char *name)
{
    const size_t N = 1 << 20;
    char *buf = malloc(N + 64);
    moe_tokens ids = {0};
    const char *kinds[] = {"one repeated char", "random bytes", "spaces", "digits", "CJK",
                           "CR/LF mix", "'<' (special on)", "special tokens (special on)",
                           "random ASCII words"};
    for (int k = 0; k < 9; k++) {
        size_t n = N;
        unsigned flags = 0;
        switch (k) {
        case 0: memset(buf, 'a', n); break;
        case 1: for (size_t i = 0; i < n; i++) buf[i] = (char)(rng() & 0xff); break;
        case 2: memset(buf, ' ', n); buf[n - 1] = 'x'; break;
        case 3: for (size_t i = 0; i < n; i++) buf[i] = (char)('0' + i % 10); break;
        case 4: n = N / 3 * 3; for (size_t i = 0; i < n; i += 3) memcpy(buf + i, "\xe4\xb8\xad", 3); break;
        case 5: for (size_t i = 0; i < n; i++) buf[i] = "\r\n \t"[rng() % 4]; break;
        case 6: memset(buf, '<', n); flags = MOE_TOK_SPECIAL; break;
        case 7: {
            static const char sp[] = "<\xef\xbd\x9c" "User\xef\xbd\x9c>"; /* <｜User｜> */
            size_t l = sizeof sp - 1;
            n = N / l * l;
            for (size_t i = 0; i < n; i += l) memcpy(buf + i, sp, l);
            flags = MOE_TOK_SPECIAL;
            break;
        }
        case 8: for (size_t i = 0; i < n; i++) buf[i] = rng() % 6 == 0 ? ' ' : (char)('a' + rng() % 26); break;
        }
        double t0 = moe_now();
        bool rt = round_trip(tok, buf, n, flags, &ids);
        double dt = moe_now() - t0;
        CHECK_MSG(rt, "%s: 1 MB of %s does not round-trip", name, kinds[k]);
        /* Generous bound: a quadratic path would take minutes; ASan and a
         * loaded machine take a few times longer than a release build. */
        CHECK_MSG(dt < 20.0, "%s: 1 MB of %s took %.1f s", name, kinds[k], dt);
        printf("%s: 1 MB of %-28s %8zu ids  %7.1f ms\n", name, kinds[k], ids.n, dt * 1e3);
        if (k == 7) CHECK(ids.n == n / 12 && ids.ids[0] == 128803);
    }
    moe_tokens_free(&ids);
    free(buf);
}


/* ---- an independent, naive BPE to check the fast one on long pieces ----
 * Straight from the definition: symbols are the GPT-2 byte-level strings of
 * the bytes; repeatedly merge the adjacent pair whose "left right" string
 * has the lowest rank in tokenizer.ggml.merges (leftmost on ties); look the
 * final strings up in tokenizer.ggml.tokens.  Quadratic, so short inputs. */

typedef struct ref_entry {
    const char *s;
    size_t len;
    int64_t val;
} ref_entry;

static int ref_cmp(const void *a, const void *b)
{
    const ref_entry *x = a, *y = b;
    size_t l = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, l);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int64_t ref_find(const ref_entry *t, size_t n, const char *s, size_t len)
{
    ref_entry key = {s, len, 0};
    const ref_entry *e = bsearch(&key, t, n, sizeof *t, ref_cmp);
    return e ? e->val : -1;
}

static size_t ref_byte_char(unsigned b, char *out)
{
    unsigned cp = b;
    bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    if (!printable) {
        unsigned k = 0;
        for (unsigned x = 0; x < b; x++)
            k += !((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF));
        cp = 0x100 + k;
    }
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

static void test_reference_bpe(const moe_tokenizer *tok)
{
    moe_err err = {{0}};
    moe_gguf *g = NULL;
    if (moe_gguf_open(&g, fixture_path("tokenizer/deepseek-v3-vocab.gguf"), &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    moe_gguf_arr ta, ma;
    CHECK(moe_gguf_get_arr(g, "tokenizer.ggml.tokens", &ta, &err) == 0);
    CHECK(moe_gguf_get_arr(g, "tokenizer.ggml.merges", &ma, &err) == 0);
    ref_entry *toks = malloc(ta.count * sizeof *toks), *merges = malloc(ma.count * sizeof *merges);
    for (uint64_t i = 0; i < ta.count; i++) {
        uint64_t l;
        toks[i].s = moe_gguf_arr_str(g, &ta, i, &l);
        toks[i].len = l;
        toks[i].val = (int64_t)i;
    }
    for (uint64_t i = 0; i < ma.count; i++) {
        uint64_t l;
        merges[i].s = moe_gguf_arr_str(g, &ma, i, &l);
        merges[i].len = l;
        merges[i].val = (int64_t)i;
    }
    /* Tokens: keep the lowest id of equal strings (stable enough: ids are
     * distinct strings in this vocabulary). */
    qsort(toks, ta.count, sizeof *toks, ref_cmp);
    qsort(merges, ma.count, sizeof *merges, ref_cmp);

    /* Words of random letters (one pre-token each under deepseek-v3),
     * 40..300 bytes so that both of the fast BPE's paths are used. */
    static const char *alpha[] = {"a", "b", "e", "r", "s", "t", "n", "o", "\xc3\xa9", "\xc3\xa8", "z"};
    char word[1024], sym[1024][64], pair[136];
    size_t slen[1024];
    moe_tokens ids = {0};
    int n_ok = 0, n_words = 40;
    for (int w = 0; w < n_words; w++) {
        size_t target = 40 + rng() % 260, n = 0;
        while (n < target) {
            const char *a = alpha[rng() % (w % 3 == 0 ? 2 : 11)];
            size_t al = strlen(a);
            memcpy(word + n, a, al);
            n += al;
        }
        /* reference */
        size_t ns = 0;
        for (size_t i = 0; i < n; i++) slen[ns] = ref_byte_char((unsigned char)word[i], sym[ns]), ns++;
        for (;;) {
            int64_t best = -1;
            size_t bi = 0;
            for (size_t i = 0; i + 1 < ns; i++) {
                if (slen[i] + 1 + slen[i + 1] > sizeof pair) continue;
                memcpy(pair, sym[i], slen[i]);
                pair[slen[i]] = ' ';
                memcpy(pair + slen[i] + 1, sym[i + 1], slen[i + 1]);
                int64_t r = ref_find(merges, ma.count, pair, slen[i] + 1 + slen[i + 1]);
                if (r >= 0 && (best < 0 || r < best)) best = r, bi = i;
            }
            if (best < 0) break;
            if (slen[bi] + slen[bi + 1] > sizeof sym[0]) break; /* no such token here */
            memcpy(sym[bi] + slen[bi], sym[bi + 1], slen[bi + 1]);
            slen[bi] += slen[bi + 1];
            memmove(sym + bi + 1, sym + bi + 2, (ns - bi - 2) * sizeof sym[0]);
            memmove(slen + bi + 1, slen + bi + 2, (ns - bi - 2) * sizeof slen[0]);
            ns--;
        }
        moe_tokens_clear(&ids);
        CHECK(moe_tokenizer_encode(tok, word, n, 0, &ids, &err) == 0);
        bool same = ids.n == ns;
        for (size_t i = 0; same && i < ns; i++) same = ids.ids[i] == ref_find(toks, ta.count, sym[i], slen[i]);
        CHECK_MSG(same, "word %d (%zu bytes): fast BPE differs from the naive one", w, n);
        n_ok += same;
    }
    printf("deepseek-v3: naive reference BPE: %d/%d long words identical\n", n_ok, n_words);
    moe_tokens_free(&ids);
    free(toks);
    free(merges);
    moe_gguf_close(g);
}

static void test_bos_special(const moe_tokenizer *tok)
{
    moe_err err = {{0}};
    moe_tokens ids = {0};
    CHECK(moe_tokenizer_encode(tok, "Hello", 5, MOE_TOK_BOS, &ids, &err) == MOE_OK);
    CHECK(ids.n == 2 && ids.ids[0] == 0 && ids.ids[1] == 19923);
    /* A text that already starts with the BOS text gets no second BOS. */
    static const char bos_hello[] = "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>Hello";
    moe_tokens_clear(&ids);
    CHECK(moe_tokenizer_encode(tok, bos_hello, sizeof bos_hello - 1, MOE_TOK_BOS | MOE_TOK_SPECIAL, &ids, &err) == 0);
    CHECK(ids.n == 2 && ids.ids[0] == 0 && ids.ids[1] == 19923);
    /* Special matching off: the same text is plain text (BOS then added). */
    moe_tokens_clear(&ids);
    CHECK(moe_tokenizer_encode(tok, bos_hello, sizeof bos_hello - 1, MOE_TOK_BOS, &ids, &err) == 0);
    CHECK(ids.n > 3 && ids.ids[0] == 0 && ids.ids[1] != 0);
    bool no_control = true;
    for (size_t i = 1; i < ids.n; i++) no_control &= !moe_tokenizer_is_control(tok, ids.ids[i]);
    CHECK(no_control);
    /* Empty input: nothing, or just BOS. */
    moe_tokens_clear(&ids);
    CHECK(moe_tokenizer_encode(tok, "", 0, 0, &ids, &err) == 0 && ids.n == 0);
    CHECK(moe_tokenizer_encode(tok, "", 0, MOE_TOK_BOS, &ids, &err) == 0 && ids.n == 1 && ids.ids[0] == 0);
    /* encode appends to what is there. */
    CHECK(moe_tokenizer_encode(tok, "Hello", 5, 0, &ids, &err) == 0 && ids.n == 2 && ids.ids[1] == 19923);
    /* Out-of-range ids are errors, not crashes. */
    int32_t bad[2] = {5, 1 << 30};
    char *d = NULL;
    CHECK(moe_tokenizer_decode(tok, bad, 2, &d, NULL, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "out of range");
    CHECK(moe_tokenizer_token_bytes(tok, -1, &(size_t){0}) == NULL);
    moe_tokens_free(&ids);
}

static void test_stream(const moe_tokenizer *tok)
{
    moe_err err = {{0}};
    moe_tok_stream *s = NULL;
    CHECK(moe_tok_stream_init(&s, tok, 0, &err) == MOE_OK);
    const char *t;
    size_t l;
    /* "é" = C3 A9 as two byte tokens: nothing, then the whole character. */
    CHECK(moe_tok_stream_push(s, byte_token(tok, 0xc3), &t, &l, &err) == 0 && l == 0);
    CHECK(moe_tok_stream_push(s, byte_token(tok, 0xa9), &t, &l, &err) == 0 && l == 2 &&
          memcmp(t, "\xc3\xa9", 2) == 0);
    /* A byte that can never start UTF-8 becomes U+FFFD at once. */
    CHECK(moe_tok_stream_push(s, byte_token(tok, 0xff), &t, &l, &err) == 0 && l == 3 &&
          memcmp(t, "\xef\xbf\xbd", 3) == 0);
    /* An incomplete character then ASCII: one U+FFFD, then the ASCII. */
    CHECK(moe_tok_stream_push(s, byte_token(tok, 0xc3), &t, &l, &err) == 0 && l == 0);
    CHECK(moe_tok_stream_push(s, byte_token(tok, 'a'), &t, &l, &err) == 0 && l == 4 &&
          memcmp(t, "\xef\xbf\xbd" "a", 4) == 0);
    /* An incomplete character at the end is flushed as U+FFFD. */
    CHECK(moe_tok_stream_push(s, byte_token(tok, 0xc3), &t, &l, &err) == 0 && l == 0);
    moe_tok_stream_flush(s, &t, &l);
    CHECK(l == 3 && memcmp(t, "\xef\xbf\xbd", 3) == 0);
    moe_tok_stream_flush(s, &t, &l);
    CHECK(l == 0);
    /* Control tokens print their text unless skipped. */
    CHECK(moe_tok_stream_push(s, 1, &t, &l, &err) == 0 && l > 0);
    CHECK(moe_tok_stream_push(s, -3, &t, &l, &err) == MOE_ERR);
    moe_tok_stream_free(s);
    CHECK(moe_tok_stream_init(&s, tok, MOE_TOK_STREAM_SKIP_CONTROL, &err) == MOE_OK);
    CHECK(moe_tok_stream_push(s, 1, &t, &l, &err) == 0 && l == 0);
    CHECK(moe_tok_stream_push(s, 19923, &t, &l, &err) == 0 && l == 5 && memcmp(t, "Hello", 5) == 0);
    moe_tok_stream_free(s);
}

/* Loads a copy of the vocabulary file with one string value replaced by
 * another of the same length; returns the load status and message. */
static int load_patched(const char *key, const char *from, const char *to, moe_err *err)
{
    size_t n;
    char *buf = tu_read_file(fixture_path("tokenizer/deepseek-v3-vocab.gguf"), &n);
    CHECK_MSG(buf != NULL, "fixture deepseek-v3-vocab.gguf is missing");
    if (!buf) return MOE_ERR;
    char *k = memmem(buf, n, key, strlen(key));
    CHECK(k != NULL);
    char *v = k ? memmem(k, n - (size_t)(k - buf), from, strlen(from)) : NULL;
    CHECK(v != NULL && v - k < 64);
    if (v) memcpy(v, to, strlen(to));
    moe_gguf *g = NULL;
    int rc = moe_gguf_open_memory(&g, buf, n, err);
    CHECK_MSG(rc == MOE_OK, "%s", err->msg);
    moe_tokenizer *tok = NULL;
    if (rc == MOE_OK) rc = moe_tokenizer_load(&tok, g, err);
    moe_tokenizer_free(tok);
    moe_gguf_close(g);
    free(buf);
    return rc;
}

static void test_load_errors(void)
{
    moe_err err = {{0}};
    CHECK(load_patched("tokenizer.ggml.pre", "deepseek-v3", "deepseek-v9", &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "unsupported pre-tokenizer");
    CHECK_CONTAINS(err.msg, "deepseek-v9");
    CHECK(load_patched("tokenizer.ggml.model", "gpt2", "bert", &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "unsupported tokenizer.ggml.model 'bert'");
    /* A merge naming a token that does not exist. */
    CHECK(load_patched("tokenizer.ggml.merges", "\xc4\xa0 t", "\xc4\xa0 \x01", &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "not in the vocabulary");
    /* A missing key. */
    CHECK(load_patched("tokenizer.ggml.tokens", "tokens", "tokenz", &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "tokenizer.ggml.tokens");
    /* Sanity: an unpatched copy loads. */
    CHECK(load_patched("tokenizer.ggml.pre", "deepseek-v3", "deepseek-v3", &err) == MOE_OK);
}

/* A GGUF with one key/value, eos_token_id of the given type code and
 * value (no key at all when type is 0): the EOS read from it. */
static int eos_of(uint32_t type, uint64_t v, int32_t n_vocab, int32_t *eos, moe_err *err)
{
    gb b = {0};
    gb_header(&b, 3, 0, type ? 1 : 0);
    if (type) {
        gb_key(&b, "tokenizer.ggml.eos_token_id");
        gb_u32(&b, type);
        if (type == MOE_GGUF_STRING) gb_str(&b, "2");
        else if (type == MOE_GGUF_U64 || type == MOE_GGUF_I64) gb_u64(&b, v);
        else gb_u32(&b, (uint32_t)v);
    }
    uint8_t *buf = gb_copy(&b);
    moe_gguf *g = NULL;
    int rc = moe_gguf_open_memory(&g, buf, b.n, err);
    CHECK_MSG(rc == MOE_OK, "%s", err->msg);
    *eos = 12345;
    if (rc == MOE_OK) rc = moe_tokenizer_eos_from_gguf(g, n_vocab, eos, err);
    moe_gguf_close(g);
    free(buf);
    gb_free(&b);
    return rc;
}

static void test_eos_from_gguf(const moe_tokenizer *v3)
{
    moe_err err = {{0}};
    int32_t eos;
    CHECK(eos_of(0, 0, 10, &eos, &err) == MOE_OK && eos == -1);                     /* no key */
    CHECK(eos_of(MOE_GGUF_U32, 7, 10, &eos, &err) == MOE_OK && eos == 7);
    CHECK(eos_of(MOE_GGUF_U32, 0, 10, &eos, &err) == MOE_OK && eos == 0);           /* 0 is an id */
    CHECK(eos_of(MOE_GGUF_I32, 9, 10, &eos, &err) == MOE_OK && eos == 9);
    CHECK(eos_of(MOE_GGUF_I32, UINT32_MAX, 10, &eos, &err) == MOE_OK && eos == -1); /* i32 -1: none */
    CHECK(eos_of(MOE_GGUF_U32, UINT32_MAX, 10, &eos, &err) == MOE_OK && eos == -1); /* u32 -1: none */
    CHECK(eos_of(MOE_GGUF_U32, 10, 10, &eos, &err) == MOE_ERR && eos == -1);
    CHECK_CONTAINS(err.msg, "tokenizer.ggml.eos_token_id = 10 is not below n_vocab 10");
    CHECK(eos_of(MOE_GGUF_U64, 1ull << 40, 10, &eos, &err) == MOE_ERR && eos == -1);
    CHECK_CONTAINS(err.msg, "not below n_vocab");
    CHECK(eos_of(MOE_GGUF_STRING, 0, 10, &eos, &err) == MOE_ERR && eos == -1);
    CHECK_CONTAINS(err.msg, "tokenizer.ggml.eos_token_id");
    CHECK(eos_of(MOE_GGUF_U32, 0, 0, &eos, &err) == MOE_ERR && eos == -1);
    CHECK_CONTAINS(err.msg, "n_vocab 0");
    /* On a real vocabulary: the same id the loaded tokenizer has. */
    if (!v3) return;
    moe_gguf *g = NULL;
    CHECK_MSG(moe_gguf_open(&g, fixture_path("tokenizer/deepseek-v3-vocab.gguf"), &err) == MOE_OK, "%s", err.msg);
    if (!g) return;
    CHECK(moe_tokenizer_eos_from_gguf(g, moe_tokenizer_n_vocab(v3), &eos, &err) == MOE_OK);
    CHECK(eos >= 0 && eos == moe_tokenizer_eos(v3));
    /* A smaller vocabulary than the file's EOS (e.g. a model's embedding) is an error, not a wrong id. */
    CHECK(moe_tokenizer_eos_from_gguf(g, eos, &eos, &err) == MOE_ERR && eos == -1);
    moe_gguf_close(g);
}

int main(void)
{
    moe_tokenizer *v3 = load_path(fixture_path("tokenizer/deepseek-v3-vocab.gguf"));
    moe_tokenizer *llm = load_path(fixture_path("tokenizer/deepseek-llm-rules.gguf"));
    if (v3) {
        test_invalid_utf8(v3, "deepseek-v3");
        test_long(v3, "deepseek-v3");
        test_bos_special(v3);
        test_reference_bpe(v3);
        test_stream(v3);
    }
    if (llm) {
        test_invalid_utf8(llm, "deepseek-llm");
        test_long(llm, "deepseek-llm");
    }
    test_load_errors();
    test_eos_from_gguf(v3);
    moe_tokenizer_free(v3);
    moe_tokenizer_free(llm);
    return check_summary("tokenizer_unit_test");
}
