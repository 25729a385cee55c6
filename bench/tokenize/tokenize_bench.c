/*
 * tokenize-bench — how fast the tokenizer is, on the shared fixtures.
 *
 *   tokenize-bench [--mb N] [--runs N] [--fixtures DIR]
 *
 * Text: the inputs of tokenizer/cases.tsv (many scripts, whitespace runs,
 * numbers, emoji, code) concatenated, separated by newlines, repeated up to
 * N MB (default 1).  For each vocabulary (deepseek-v3, deepseek-llm) it
 * prints the load time (best and median of --runs loads) and the encoding
 * and decoding throughput (best and median of --runs passes).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base.h"
#include "gguf.h"
#include "io.h"
#include "tokenizer.h"

/* The whole file, or NULL (the caller names it). */
static char *read_file(const char *path, size_t *len)
{
    char *b = NULL;
    moe_err err;
    return moe_file_read(path, (size_t)1 << 30, &b, len, &err) ? NULL : b;
}

/* CPU time of this thread: steadier than wall time on a shared machine. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int hexv(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

/* The cases' texts, one after another with a newline between. */
static size_t case_end[256], n_cases;

static char *corpus(const char *dir, size_t target, size_t *out_len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer/cases.tsv", dir);
    size_t flen;
    char *file = read_file(path, &flen);
    if (!file) {
        fprintf(stderr, "tokenize-bench: cannot read %s\n", path);
        return NULL;
    }
    char *one = moe_xmalloc(flen + 1);
    size_t n1 = 0;
    for (char *p = file; *p;) {
        char *tab = strchr(p, '\t'), *nl = strchr(p, '\n');
        if (!tab || !nl) break;
        for (char *h = p; h + 1 < tab; h += 2) one[n1++] = (char)(hexv(h[0]) * 16 + hexv(h[1]));
        if (n_cases < 256) case_end[n_cases++] = n1;
        one[n1++] = '\n';
        p = nl + 1;
    }
    free(file);
    char *text = moe_xmalloc(target + 1);
    size_t n = 0;
    while (n < target) {
        size_t k = n1 < target - n ? n1 : target - n;
        memcpy(text + n, one, k);
        n += k;
    }
    /* Do not end inside a UTF-8 character. */
    while (n > 0 && ((unsigned char)text[n - 1] & 0xC0) == 0x80) n--;
    if (n > 0 && (unsigned char)text[n - 1] >= 0xC0) n--;
    free(one);
    *out_len = n;
    return text;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench_one(const char *dir, const char *file, const char *text, size_t len, int runs)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer/%s", dir, file);
    moe_err err;
    moe_gguf *g = NULL;
    if (moe_gguf_open(&g, path, &err)) {
        fprintf(stderr, "tokenize-bench: %s\n", err.msg);
        return 1;
    }
    double *t = moe_xmalloc((size_t)runs * sizeof *t), *lc = moe_xmalloc((size_t)runs * sizeof *lc);
    moe_tokenizer *tok = NULL;
    for (int r = 0; r < runs; r++) {
        moe_tokenizer_free(tok);
        double t0 = moe_now(), c0 = cpu_now();
        if (moe_tokenizer_load(&tok, g, &err)) {
            fprintf(stderr, "tokenize-bench: %s\n", err.msg);
            return 1;
        }
        t[r] = moe_now() - t0;
        lc[r] = cpu_now() - c0;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_d);
    qsort(lc, (size_t)runs, sizeof *lc, cmp_d);
    printf("%-26s load      best %7.1f ms   median %7.1f ms   cpu-time best %7.1f ms  (%d tokens)\n", file,
           t[0] * 1e3, t[runs / 2] * 1e3, lc[0] * 1e3, moe_tokenizer_n_vocab(tok));
    free(lc);

    moe_tokens ids = {0};
    double *c = moe_xmalloc((size_t)runs * sizeof *c);
    for (int r = 0; r < runs; r++) {
        moe_tokens_clear(&ids);
        double t0 = moe_now(), c0 = cpu_now();
        if (moe_tokenizer_encode(tok, text, len, 0, &ids, &err)) {
            fprintf(stderr, "tokenize-bench: %s\n", err.msg);
            return 1;
        }
        t[r] = moe_now() - t0;
        c[r] = cpu_now() - c0;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_d);
    qsort(c, (size_t)runs, sizeof *c, cmp_d);
    double mb = (double)len / 1e6;
    printf("%-26s encode    best %7.1f MB/s median %7.1f MB/s  cpu-time best %7.1f MB/s"
           "  (one call: %zu bytes -> %zu ids)\n", file, mb / t[0], mb / t[runs / 2], mb / c[0], len, ids.n);

    /* One call per case, as prompts arrive: short texts, so no piece cache
     * (it is per call), and the per-call setup counts. */
    moe_tokens one = {0};
    for (int r = 0; r < runs; r++) {
        size_t done = 0;
        double t0 = moe_now(), c0 = cpu_now();
        for (size_t k = 0; k < n_cases; k++) {
            size_t a = k ? case_end[k - 1] + 1 : 0;
            moe_tokens_clear(&one);
            moe_tokenizer_encode(tok, text + a, case_end[k] - a, 0, &one, &err);
            done += case_end[k] - a;
        }
        t[r] = (moe_now() - t0) / (double)done;
        c[r] = (cpu_now() - c0) / (double)done;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_d);
    qsort(c, (size_t)runs, sizeof *c, cmp_d);
    printf("%-26s encode    best %7.1f MB/s median %7.1f MB/s  cpu-time best %7.1f MB/s"
           "  (one call per case, %zu cases)\n", file, 1e-6 / t[0], 1e-6 / t[runs / 2], 1e-6 / c[0], n_cases);
    moe_tokens_free(&one);
    free(c);
    for (int r = 0; r < runs; r++) {
        char *d = NULL;
        size_t dl;
        double t0 = moe_now();
        moe_tokenizer_decode(tok, ids.ids, ids.n, &d, &dl, &err);
        t[r] = moe_now() - t0;
        if (dl != len || memcmp(d, text, len) != 0) {
            fprintf(stderr, "tokenize-bench: decode(encode(text)) != text\n");
            return 1;
        }
        free(d);
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_d);
    printf("%-26s decode    best %7.1f MB/s median %7.1f MB/s\n", file, mb / t[0], mb / t[runs / 2]);
    moe_tokens_free(&ids);
    moe_tokenizer_free(tok);
    moe_gguf_close(g);
    free(t);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = getenv("MOE_FIXTURES");
    if (!dir) dir = MOE_FIXTURES_DEFAULT;
    int64_t mb = 1, runs = 7;
    moe_err err;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: tokenize-bench [--mb N] [--runs N] [--fixtures DIR]\n"
                   "Encoding/decoding throughput on a mixed-script text built from\n"
                   "tokenizer/cases.tsv, and vocabulary load time.\n");
            return 0;
        } else if (!strcmp(argv[i], "--mb") && i + 1 < argc) {
            if (moe_parse_i64(argv[++i], 1, 1024, &mb, &err)) goto bad;
        } else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            if (moe_parse_i64(argv[++i], 1, 1000, &runs, &err)) goto bad;
        } else if (!strcmp(argv[i], "--fixtures") && i + 1 < argc) {
            dir = argv[++i];
        } else {
            fprintf(stderr, "tokenize-bench: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    size_t len;
    char *text = corpus(dir, (size_t)mb << 20, &len);
    if (!text) return 1;
    printf("text: %zu bytes from tokenizer/cases.tsv, %d runs each\n", len, (int)runs);
    int rc = bench_one(dir, "deepseek-v3-vocab.gguf", text, len, (int)runs) ||
             bench_one(dir, "deepseek-llm-rules.gguf", text, len, (int)runs);
    free(text);
    return rc;
bad:
    fprintf(stderr, "tokenize-bench: %s\n", err.msg);
    return 2;
}
