/*
 * engine_util.h — helpers shared by the engine tests: reading the fixtures'
 * expected files and running a teacher-forced sequence through an engine.
 */
#ifndef MOE_TEST_ENGINE_UTIL_H
#define MOE_TEST_ENGINE_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

#define EXP_MAX_TOK 64

typedef struct expected {
    int n_vocab, rows, n_prompt;
    int prompt[EXP_MAX_TOK];
    int greedy[EXP_MAX_TOK];
    double margin[EXP_MAX_TOK];
    float *logits; /* rows × n_vocab */
} expected;

static inline int read_ints(char *line, int *out, int max)
{
    int n = 0;
    for (char *tok = strtok(line, " \n"); tok && n < max; tok = strtok(NULL, " \n")) out[n++] = atoi(tok);
    return n;
}

/* Loads expected/<model>.<ref>.{txt,logits.f32}; 0 on success. */
static inline int expected_load(expected *x, const char *dir, const char *model, const char *ref)
{
    char path[4096], line[8192];
    memset(x, 0, sizeof *x);
    snprintf(path, sizeof path, "%s/expected/%s.%s.txt", dir, model, ref);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        char *sp = strchr(line, ' ');
        if (!sp) continue;
        *sp = 0;
        char *rest = sp + 1;
        if (!strcmp(line, "n_vocab")) x->n_vocab = atoi(rest);
        else if (!strcmp(line, "rows")) x->rows = atoi(rest);
        else if (!strcmp(line, "prompt")) x->n_prompt = read_ints(rest, x->prompt, EXP_MAX_TOK);
        else if (!strcmp(line, "greedy")) read_ints(rest, x->greedy, EXP_MAX_TOK);
        else if (!strcmp(line, "margin")) {
            int n = 0;
            for (char *tok = strtok(rest, " \n"); tok && n < EXP_MAX_TOK; tok = strtok(NULL, " \n"))
                x->margin[n++] = atof(tok);
        }
    }
    fclose(f);
    if (x->rows < 1 || x->rows > EXP_MAX_TOK || x->n_vocab < 1 || x->n_prompt < 1) return -1;
    snprintf(path, sizeof path, "%s/expected/%s.%s.logits.f32", dir, model, ref);
    f = fopen(path, "rb");
    if (!f) return -1;
    x->logits = malloc((size_t)x->rows * x->n_vocab * sizeof(float));
    size_t got = fread(x->logits, sizeof(float), (size_t)x->rows * x->n_vocab, f);
    fclose(f);
    return got == (size_t)x->rows * x->n_vocab ? 0 : -1;
}

static inline int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static inline double max_abs_diff(const float *a, const float *b, int n)
{
    double d = 0;
    for (int i = 0; i < n; i++) {
        double t = fabs((double)a[i] - (double)b[i]);
        if (t > d || isnan(t)) d = isnan(t) ? INFINITY : t;
    }
    return d;
}

/*
 * Teacher forcing: prefill the prompt (one chunk), then feed greedy[0..rows-2]
 * one at a time.  out: rows × vocab.  chunk > 0 splits the prompt into
 * chunks of that many tokens.  Returns 0 on success.
 */
static inline int run_teacher_forced(moe_engine *e, const expected *x, int chunk, float *out)
{
    moe_err err;
    int seq;
    const int V = moe_engine_model(e)->hp.vocab;
    if (moe_engine_seq_new(e, &seq, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    int32_t toks[EXP_MAX_TOK];
    for (int i = 0; i < x->n_prompt; i++) toks[i] = x->prompt[i];
    if (chunk <= 0) chunk = x->n_prompt;
    for (int p = 0; p < x->n_prompt; p += chunk) {
        int nt = x->n_prompt - p < chunk ? x->n_prompt - p : chunk;
        moe_step_item it = {.seq = seq, .tokens = toks + p, .n_tokens = nt, .logits = MOE_LOGITS_LAST};
        if (moe_engine_step(e, &it, 1, &err) || it.status) {
            fprintf(stderr, "step: %s %s\n", err.msg, it.err.msg);
            return -1;
        }
        if (p + nt == x->n_prompt) memcpy(out, it.out, (size_t)V * sizeof(float));
    }
    for (int k = 0; k + 1 < x->rows; k++) {
        int32_t t = x->greedy[k];
        moe_step_item it = {.seq = seq, .tokens = &t, .n_tokens = 1, .logits = MOE_LOGITS_LAST};
        if (moe_engine_step(e, &it, 1, &err) || it.status) {
            fprintf(stderr, "step: %s %s\n", err.msg, it.err.msg);
            return -1;
        }
        memcpy(out + (size_t)(k + 1) * V, it.out, (size_t)V * sizeof(float));
    }
    moe_engine_seq_free(e, seq);
    return 0;
}

#endif
