/*
 * tokenizer_golden_test — the tokenizer against the shared fixtures:
 *   cases.tsv on deepseek-v3-vocab.gguf (special matching off and on),
 *   special.tsv on deepseek-v3-vocab.gguf (special matching on),
 *   deepseek-llm-cases.tsv on deepseek-llm-rules.gguf;
 * every case must give the file's ids, decode back to the input bytes, and
 * stream-decode (token by token) to the same bytes.  A missing fixture is
 * a failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gguf.h"
#include "tokenizer.h"
#include "tokenizer_util.h"

#define MAX_IDS 8192

static moe_tokenizer *load(const char *rel, double *secs)
{
    moe_err err = {{0}};
    moe_gguf *g = NULL;
    if (moe_gguf_open(&g, fixture_path(rel), &err)) {
        CHECK_MSG(0, "open %s: %s", rel, err.msg);
        return NULL;
    }
    moe_tokenizer *tok = NULL;
    double t0 = moe_now();
    int rc = moe_tokenizer_load(&tok, g, &err);
    *secs = moe_now() - t0;
    CHECK_MSG(rc == MOE_OK, "load %s: %s", rel, err.msg);
    moe_gguf_close(g); /* the tokenizer must not need the mapping */
    return tok;
}

static void stream_check(const moe_tokenizer *tok, const int32_t *ids, size_t n, const char *want,
                         size_t want_len, int line)
{
    moe_err err = {{0}};
    moe_tok_stream *s = NULL;
    CHECK(moe_tok_stream_init(&s, tok, 0, &err) == MOE_OK);
    char *acc = malloc(want_len + 64);
    size_t o = 0;
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        const char *t;
        size_t l;
        if (moe_tok_stream_push(s, ids[i], &t, &l, &err) || o + l > want_len) ok = false;
        else memcpy(acc + o, t, l), o += l;
    }
    const char *t;
    size_t l;
    moe_tok_stream_flush(s, &t, &l);
    if (ok && o + l <= want_len) memcpy(acc + o, t, l), o += l;
    else ok = false;
    CHECK_MSG(ok && o == want_len && memcmp(acc, want, o) == 0, "line %d: streamed text differs", line);
    free(acc);
    moe_tok_stream_free(s);
}

/* Runs every line of a cases file; returns the number of cases. */
static int run_cases(const moe_tokenizer *tok, const char *rel, unsigned flags, int *n_ok)
{
    size_t flen;
    char *file = tu_read_file(fixture_path(rel), &flen);
    CHECK_MSG(file != NULL, "fixture %s is missing", fixture_path(rel));
    if (!file || !tok) return 0;
    int32_t *want = malloc(MAX_IDS * sizeof *want);
    moe_tokens got = {0};
    int n = 0, line = 0;
    *n_ok = 0;
    for (char *p = file, *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        CHECK_MSG(nl != NULL, "%s: last line has no LF", rel);
        if (!nl) break;
        *nl = 0;
        line++;
        char *f[3];
        int nf = tu_fields(p, f, 3);
        CHECK_MSG(nf == 2, "%s:%d: expected 2 fields", rel, line);
        if (nf != 2) continue;
        size_t hl = strlen(f[0]);
        char *text = malloc(hl / 2 + 1);
        CHECK_MSG(tu_unhex(f[0], hl, text) == 0, "%s:%d: bad hex", rel, line);
        long nw = tu_ids(f[1], want, MAX_IDS);
        CHECK_MSG(nw >= 0, "%s:%d: bad ids", rel, line);
        moe_err err = {{0}};
        moe_tokens_clear(&got);
        int rc = moe_tokenizer_encode(tok, text, hl / 2, flags, &got, &err);
        CHECK_MSG(rc == MOE_OK, "%s:%d: %s", rel, line, err.msg);
        bool same = rc == MOE_OK && nw >= 0 && got.n == (size_t)nw &&
                    (got.n == 0 || memcmp(got.ids, want, got.n * sizeof *want) == 0);
        CHECK_MSG(same, "%s:%d: ids differ (got %zu, want %ld)", rel, line, got.n, nw);
        if (!same && getenv("MOE_TEST_VERBOSE")) {
            fprintf(stderr, "  got: ");
            for (size_t i = 0; i < got.n; i++) fprintf(stderr, "%d ", got.ids[i]);
            fprintf(stderr, "\n  want: %s\n", f[1]);
        }
        /* Round trip, from the file's ids so a mismatch above is not hidden. */
        char *dec = NULL;
        size_t dl = 0;
        rc = moe_tokenizer_decode(tok, want, nw > 0 ? (size_t)nw : 0, &dec, &dl, &err);
        bool rt = rc == MOE_OK && dl == hl / 2 && memcmp(dec, text, dl) == 0;
        CHECK_MSG(rt, "%s:%d: decode(ids) != text", rel, line);
        free(dec);
        if (nw >= 0) stream_check(tok, want, (size_t)nw, text, hl / 2, line);
        if (same && rt) (*n_ok)++;
        n++;
        free(text);
    }
    moe_tokens_free(&got);
    free(want);
    free(file);
    return n;
}

int main(void)
{
    double t_v3 = 0, t_llm = 0;
    moe_tokenizer *v3 = load("tokenizer/deepseek-v3-vocab.gguf", &t_v3);
    moe_tokenizer *llm = load("tokenizer/deepseek-llm-rules.gguf", &t_llm);
    printf("vocab load: %.1f ms (deepseek-v3), %.1f ms (deepseek-llm)\n", t_v3 * 1e3, t_llm * 1e3);
    if (v3) {
        CHECK(moe_tokenizer_n_vocab(v3) == 129280);
        CHECK(moe_tokenizer_bos(v3) == 0);
        CHECK(moe_tokenizer_eos(v3) == 1);
        CHECK(moe_tokenizer_add_bos(v3));
        CHECK(moe_tokenizer_pre(v3) == MOE_TOK_PRE_DEEPSEEK_V3);
        CHECK(moe_tokenizer_is_control(v3, 0));
        CHECK(!moe_tokenizer_is_control(v3, 3));
        CHECK(moe_tokenizer_is_eog(v3, 1));
        CHECK(!moe_tokenizer_is_eog(v3, 0));
    }
    if (llm) CHECK(moe_tokenizer_pre(llm) == MOE_TOK_PRE_DEEPSEEK_LLM);

    int ok, n;
    n = run_cases(v3, "tokenizer/cases.tsv", 0, &ok);
    printf("cases.tsv (deepseek-v3): %d/%d cases identical and round-tripped\n", ok, n);
    CHECK(n == 74);
    n = run_cases(v3, "tokenizer/cases.tsv", MOE_TOK_SPECIAL, &ok);
    printf("cases.tsv (deepseek-v3, special on): %d/%d\n", ok, n);
    CHECK(n == 74);
    n = run_cases(v3, "tokenizer/special.tsv", MOE_TOK_SPECIAL, &ok);
    printf("special.tsv (deepseek-v3, special on): %d/%d\n", ok, n);
    CHECK(n == 6);
    n = run_cases(llm, "tokenizer/deepseek-llm-cases.tsv", 0, &ok);
    printf("deepseek-llm-cases.tsv (deepseek-llm): %d/%d\n", ok, n);
    CHECK(n == 59);

    moe_tokenizer_free(v3);
    moe_tokenizer_free(llm);
    return check_summary("tokenizer_golden_test");
}
