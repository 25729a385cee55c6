/*
 * moe-run — one sequence through the engine in one process.
 *
 *   moe-run --model M.gguf --tokens 1,2,3 [-n N] [sampling] [--threads T]
 *           [--dump-logits FILE] [--logits-from P] [--stats]
 *
 * Generated ids go to stdout, space-separated, on one line.  --dump-logits
 * writes raw little-endian float32 rows of n_vocab in the fixtures' layout:
 * row 0 = logits at the last prompt position, row k = after feeding the
 * k-th generated token (N rows for -n N).  With -n 0 --logits-from P the
 * first P tokens are prefilled and the rest fed one at a time (teacher
 * forcing): rows for positions P−1 .. end.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "engine.h"
#include "sampler.h"
#include "tokenizer.h"

static void usage(FILE *f)
{
    fputs("usage: moe-run --model FILE.gguf --tokens ID,ID,... [options]\n"
          "Runs a deepseek2 GGUF model on token ids and prints the generated ids.\n"
          "  --model FILE          GGUF model (deepseek2)\n"
          "  --tokens LIST         prompt token ids, comma-separated\n"
          "  --prompt TEXT         prompt text, tokenized with the model's tokenizer\n"
          "  --chat FILE.json      {\"messages\":[{\"role\":..,\"content\":..}],\"add_generation_prompt\":true}\n"
          "                        rendered with the model's chat template (deepseek-v3 / -v2)\n"
          "                        (BOS as the file says, special-token texts matched)\n"
          "  --text                print the generated text instead of ids\n"
          "  -n N                  tokens to generate (default 16; 0 = none)\n"
          "  --temp T              temperature (default 0 = greedy)\n"
          "  --top-k K             keep the K most likely tokens (0 = off)\n"
          "  --top-p P             nucleus sampling mass (default 1 = off)\n"
          "  --min-p P             drop tokens below P × the best probability (0 = off)\n"
          "  --repeat-penalty R    repetition penalty (default 1 = off)\n"
          "  --repeat-last-n N     tokens the penalty looks back over (default 64, -1 = all)\n"
          "  --seed S              sampling seed (default 0)\n"
          "  --stop ID             stop after generating ID (repeatable; EOS is a stop token)\n"
          "  --ignore-eos          do not stop at the file's EOS token\n"
          "  --threads T           worker threads (default 1)\n"
          "  --block-size B        latent cache tokens per block (default 16)\n"
          "  --ctx N               context limit (default prompt + n)\n"
          "  --batch N             prefill chunk length (default 512)\n"
          "  --decompress-min N    prefill chunks of ≥ N tokens decompress K/V (default 32, 0 = never)\n"
          "  --reference-kernels   scalar reference kernels (slow; for checking); otherwise the\n"
          "                        best set of this CPU, capped by MOE_KERNELS=reference|avx2|avx512\n"
          "  --int8                int8 activations for Q8_0 weights (faster, llama.cpp-like rounding)\n"
          "  --dump-logits FILE    write float32 logits rows (fixtures' layout)\n"
          "  --logits-from P       with -n 0: logits of positions P-1 .. end (teacher forcing)\n"
          "  --dump-tensors FILE   write every named intermediate of every step: records of\n"
          "                        name[16] layer step rows cols (int32 LE) + rows×cols float32\n"
          "  --stats               print timings, cache bytes and the kernel set to stderr\n"
          "  --help                this text\n",
          f);
}

static int parse_tokens(const char *s, int32_t **out, int *n, moe_err *err)
{
    int cap = 16, k = 0;
    int32_t *v = moe_xmalloc((size_t)cap * sizeof *v);
    const char *p = s;
    if (!*p) {
        free(v);
        return moe_err_set(err, "--tokens: empty list");
    }
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char buf[32];
        if (len == 0 || len >= sizeof buf) {
            free(v);
            return moe_err_set(err, "--tokens: item %d is empty or too long", k + 1);
        }
        memcpy(buf, p, len);
        buf[len] = 0;
        int64_t x;
        if (moe_parse_i64(buf, 0, INT32_MAX, &x, err)) {
            free(v);
            return moe_err_prefix(err, "--tokens item %d", k + 1);
        }
        if (k == cap) v = moe_xrealloc(v, (size_t)(cap *= 2) * sizeof *v);
        v[k++] = (int32_t)x;
        if (!comma) break;
        p = comma + 1;
    }
    *out = v;
    *n = k;
    return MOE_OK;
}

typedef struct run_args {
    const char *model, *tokens, *dump, *prompt, *dump_tensors, *chat;
    int64_t n_gen, threads, block, ctx, batch, decompress, logits_from;
    bool stats, ignore_eos, reference, int8, text;
    moe_sampler_cfg sc;
} run_args;

static int parse_args(int argc, char **argv, run_args *a, moe_err *err)
{
    memset(a, 0, sizeof *a);
    a->n_gen = 16;
    a->threads = 1;
    a->block = 16;
    a->batch = 512;
    a->decompress = 32;
    a->logits_from = -1;
    moe_sampler_cfg_default(&a->sc);
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(f, "--stats")) { a->stats = true; continue; }
        if (!strcmp(f, "--ignore-eos")) { a->ignore_eos = true; continue; }
        if (!strcmp(f, "--reference-kernels")) { a->reference = true; continue; }
        if (!strcmp(f, "--int8")) { a->int8 = true; continue; }
        if (!strcmp(f, "--text")) { a->text = true; continue; }
        static const char *const with_value[] = {"--model", "--tokens", "--prompt", "--chat", "--dump-logits", "--dump-tensors", "-n", "--threads",
                                                 "--block-size", "--ctx", "--batch", "--decompress-min",
                                                 "--logits-from", "--temp", "--top-k", "--top-p", "--min-p",
                                                 "--repeat-penalty", "--repeat-last-n", "--seed", "--stop"};
        bool known = false;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) known |= !strcmp(f, with_value[k]);
        if (!known) return moe_err_set(err, "unknown flag %s (see --help)", f);
        if (i + 1 >= argc) return moe_err_set(err, "%s needs a value (see --help)", f);
        const char *v = argv[++i];
        double d;
        int64_t x;
        if (!strcmp(f, "--model")) a->model = v;
        else if (!strcmp(f, "--tokens")) a->tokens = v;
        else if (!strcmp(f, "--prompt")) a->prompt = v;
        else if (!strcmp(f, "--chat")) a->chat = v;
        else if (!strcmp(f, "--dump-logits")) a->dump = v;
        else if (!strcmp(f, "--dump-tensors")) a->dump_tensors = v;
        else if (!strcmp(f, "-n")) { if (moe_parse_i64(v, 0, 1 << 24, &a->n_gen, err)) return moe_err_prefix(err, "-n"); }
        else if (!strcmp(f, "--threads")) { if (moe_parse_i64(v, 1, 256, &a->threads, err)) return moe_err_prefix(err, "--threads"); }
        else if (!strcmp(f, "--block-size")) { if (moe_parse_i64(v, 1, 4096, &a->block, err)) return moe_err_prefix(err, "--block-size"); }
        else if (!strcmp(f, "--ctx")) { if (moe_parse_i64(v, 1, 1 << 24, &a->ctx, err)) return moe_err_prefix(err, "--ctx"); }
        else if (!strcmp(f, "--batch")) { if (moe_parse_i64(v, 1, 65536, &a->batch, err)) return moe_err_prefix(err, "--batch"); }
        else if (!strcmp(f, "--decompress-min")) { if (moe_parse_i64(v, 0, 1 << 24, &a->decompress, err)) return moe_err_prefix(err, "--decompress-min"); }
        else if (!strcmp(f, "--logits-from")) { if (moe_parse_i64(v, 1, 1 << 24, &a->logits_from, err)) return moe_err_prefix(err, "--logits-from"); }
        else if (!strcmp(f, "--temp")) { if (moe_parse_f64(v, 0, 1000, &d, err)) return moe_err_prefix(err, "--temp"); a->sc.temperature = (float)d; }
        else if (!strcmp(f, "--top-k")) { if (moe_parse_i64(v, 0, INT32_MAX, &x, err)) return moe_err_prefix(err, "--top-k"); a->sc.top_k = (int)x; }
        else if (!strcmp(f, "--top-p")) { if (moe_parse_f64(v, 1e-9, 1, &d, err)) return moe_err_prefix(err, "--top-p"); a->sc.top_p = (float)d; }
        else if (!strcmp(f, "--min-p")) { if (moe_parse_f64(v, 0, 1, &d, err)) return moe_err_prefix(err, "--min-p"); a->sc.min_p = (float)d; }
        else if (!strcmp(f, "--repeat-penalty")) { if (moe_parse_f64(v, 1e-6, 100, &d, err)) return moe_err_prefix(err, "--repeat-penalty"); a->sc.repeat_penalty = (float)d; }
        else if (!strcmp(f, "--repeat-last-n")) { if (moe_parse_i64(v, -1, INT32_MAX, &x, err)) return moe_err_prefix(err, "--repeat-last-n"); a->sc.repeat_last_n = (int)x; }
        else if (!strcmp(f, "--seed")) { if (moe_parse_i64(v, 0, INT64_MAX, &x, err)) return moe_err_prefix(err, "--seed"); a->sc.seed = (uint64_t)x; }
        else if (!strcmp(f, "--stop")) {
            if (moe_parse_i64(v, 0, INT32_MAX, &x, err)) return moe_err_prefix(err, "--stop");
            if (a->sc.n_stop >= MOE_SAMPLER_MAX_STOP - 1) return moe_err_set(err, "too many --stop tokens");
            a->sc.stop[a->sc.n_stop++] = (int32_t)x;
        } else return moe_err_set(err, "unknown flag %s (see --help)", f);
    }
    if (!a->model) return moe_err_set(err, "--model is required (see --help)");
    if ((a->tokens != NULL) + (a->prompt != NULL) + (a->chat != NULL) != 1)
        return moe_err_set(err, "give one of --tokens, --prompt and --chat (see --help)");
    if (a->logits_from >= 0 && a->n_gen != 0) return moe_err_set(err, "--logits-from needs -n 0");
    return MOE_OK;
}

/* --dump-tensors: one record per named intermediate (see --help). */
typedef struct tensor_dump {
    FILE *f;
    int32_t step;
    bool failed;
} tensor_dump;

static void dump_tensor(void *ctx, const char *name, int layer, const float *data, int rows, int cols,
                        const int *row_seq, const int64_t *row_pos)
{
    (void)row_seq;
    (void)row_pos;
    tensor_dump *d = ctx;
    char nm[16] = {0};
    strncpy(nm, name, sizeof nm - 1);
    const int32_t hdr[4] = {layer, d->step, rows, cols};
    if (fwrite(nm, 1, sizeof nm, d->f) != sizeof nm || fwrite(hdr, sizeof hdr, 1, d->f) != 1 ||
        fwrite(data, sizeof(float), (size_t)rows * (size_t)cols, d->f) != (size_t)rows * (size_t)cols)
        d->failed = true;
    if (!strcmp(name, "logits")) d->step++; /* the last record of a step */
}

typedef struct rows_out {
    FILE *f;
    const char *path;
    int vocab;
} rows_out;

static int put_row(rows_out *o, const float *row, moe_err *err)
{
    if (!o->f) return MOE_OK;
    if (fwrite(row, sizeof(float), (size_t)o->vocab, o->f) != (size_t)o->vocab)
        return moe_err_set(err, "%s: write failed: %s", o->path, strerror(errno));
    return MOE_OK;
}

/* Feeds tokens[0..n) in chunks of `batch`; *last gets the final row. */
static int prefill(moe_engine *e, int seq, const int32_t *toks, int n, int batch, const float **last, moe_err *err)
{
    for (int p = 0; p < n; p += batch) {
        const int nt = n - p < batch ? n - p : batch;
        moe_step_item it = {.seq = seq, .tokens = toks + p, .n_tokens = nt, .logits = MOE_LOGITS_LAST};
        if (moe_engine_step(e, &it, 1, err)) return MOE_ERR;
        if (it.status) {
            *err = it.err;
            return MOE_ERR;
        }
        *last = it.out;
    }
    return MOE_OK;
}

static int feed_one(moe_engine *e, int seq, int32_t tok, const float **row, moe_err *err)
{
    moe_step_item it = {.seq = seq, .tokens = &tok, .n_tokens = 1, .logits = MOE_LOGITS_LAST};
    if (moe_engine_step(e, &it, 1, err)) return MOE_ERR;
    if (it.status) {
        *err = it.err;
        return MOE_ERR;
    }
    *row = it.out;
    return MOE_OK;
}

/* The ids of a conversation file rendered with the model's chat template
 * (special tokens matched, no BOS added: the template writes it). */
static int chat_tokens(const char *path, const moe_gguf *g, const moe_tokenizer *tok, moe_tokens *ids, moe_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return moe_err_set(err, "--chat %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0, k;
    char *buf = moe_xmalloc(cap);
    while ((k = fread(buf + n, 1, cap - n, f)) > 0)
        if ((n += k) == cap) {
            if (cap >= (64u << 20)) break;
            buf = moe_xrealloc(buf, cap *= 2);
        }
    const bool too_big = n == cap, bad = ferror(f);
    fclose(f);
    moe_chat_conv conv = {0};
    moe_chat *chat = NULL;
    int rc = MOE_ERR;
    if (too_big || bad) moe_err_set(err, "--chat %s: %s", path, bad ? "read error" : "larger than 64 MiB");
    else if (moe_chat_conv_parse(&conv, buf, n, err)) moe_err_prefix(err, "--chat %s", path);
    else if (moe_chat_init(&chat, g, tok, err)) moe_err_prefix(err, "--chat");
    else rc = moe_chat_tokenize(chat, tok, conv.msgs, conv.n, conv.add_generation_prompt, ids, err);
    moe_chat_free(chat);
    moe_chat_conv_free(&conv);
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    moe_err err = {{0}};
    run_args a;
    int rc = 1;
    int32_t *toks = NULL, *hist = NULL;
    int n_tok = 0;
    moe_model *m = NULL;
    moe_engine *e = NULL;
    moe_sampler *smp = NULL;
    moe_tokenizer *tokz = NULL;
    rows_out out = {0};
    tensor_dump td = {0};
    if (parse_args(argc, argv, &a, &err) || (a.tokens && parse_tokens(a.tokens, &toks, &n_tok, &err))) {
        fprintf(stderr, "moe-run: %s\n", err.msg);
        return 2;
    }
    if (a.tokens && a.logits_from > n_tok) {
        fprintf(stderr, "moe-run: --logits-from %lld is past the %d given tokens\n", (long long)a.logits_from, n_tok);
        free(toks);
        return 2;
    }
    if (moe_model_open(&m, a.model, &err)) goto done;
    const moe_hparams *hp = &m->hp;
    if (a.prompt || a.chat || a.text) {
        if (moe_tokenizer_load(&tokz, m->gguf, &err)) {
            moe_err_prefix(&err, "tokenizer of %s", a.model);
            goto done;
        }
    }
    if (a.prompt || a.chat) {
        moe_tokens ids = {0};
        const unsigned fl = MOE_TOK_SPECIAL | (moe_tokenizer_add_bos(tokz) ? MOE_TOK_BOS : 0u);
        if (a.chat ? chat_tokens(a.chat, m->gguf, tokz, &ids, &err)
                   : moe_tokenizer_encode(tokz, a.prompt, strlen(a.prompt), fl, &ids, &err)) {
            moe_tokens_free(&ids);
            goto done;
        }
        if (ids.n == 0 || ids.n > (size_t)INT32_MAX / 2) {
            moe_tokens_free(&ids);
            moe_err_set(&err, "%s gives no tokens", a.chat ? "--chat" : "--prompt");
            goto done;
        }
        n_tok = (int)ids.n;
        toks = moe_xmalloc(ids.n * sizeof(int32_t));
        memcpy(toks, ids.ids, ids.n * sizeof(int32_t));
        moe_tokens_free(&ids);
        if (a.logits_from > n_tok) {
            moe_err_set(&err, "--logits-from %lld is past the %d prompt tokens", (long long)a.logits_from, n_tok);
            goto done;
        }
    }
    for (int i = 0; i < n_tok; i++)
        if (toks[i] >= hp->vocab) {
            moe_err_set(&err, "--tokens item %d: id %d is not in 0..%d (vocabulary of %s)", i + 1, toks[i],
                        hp->vocab - 1, a.model);
            goto done;
        }
    for (int i = 0; i < a.sc.n_stop; i++)
        if (a.sc.stop[i] >= hp->vocab) {
            moe_err_set(&err, "--stop %d is not in 0..%d", a.sc.stop[i], hp->vocab - 1);
            goto done;
        }
    if (!a.ignore_eos && moe_gguf_find_kv(m->gguf, "tokenizer.ggml.eos_token_id") >= 0) {
        uint32_t eos;
        if (moe_gguf_get_u32(m->gguf, "tokenizer.ggml.eos_token_id", &eos, &err) == MOE_OK && eos < (uint32_t)hp->vocab)
            a.sc.stop[a.sc.n_stop++] = (int32_t)eos;
    }
    moe_engine_opts o;
    moe_engine_opts_default(&o);
    o.n_threads = (int)a.threads;
    o.block_size = (int)a.block;
    o.max_ctx = a.ctx > 0 ? a.ctx : n_tok + a.n_gen + 1;
    o.max_seqs = 1;
    o.max_batch_tokens = (int)(a.batch < n_tok ? a.batch : n_tok);
    o.decompress_min = (int)a.decompress;
    o.kernels = a.reference ? moe_kern_reference() : NULL; /* NULL: best for this CPU under MOE_KERNELS */
    o.act_q8 = a.int8;
    if (n_tok + a.n_gen > o.max_ctx) {
        moe_err_set(&err, "prompt (%d) + -n (%lld) exceeds --ctx %lld", n_tok, (long long)a.n_gen, (long long)o.max_ctx);
        goto done;
    }
    if (a.dump_tensors) {
        td.f = fopen(a.dump_tensors, "wb");
        if (!td.f) {
            moe_err_set(&err, "%s: %s", a.dump_tensors, strerror(errno));
            goto done;
        }
        o.tensor_fn = dump_tensor;
        o.tensor_ctx = &td;
    }
    if (moe_engine_init(&e, m, &o, &err)) goto done;
    if (moe_sampler_init(&smp, &a.sc, hp->vocab, &err)) goto done;
    if (a.dump) {
        out.f = fopen(a.dump, "wb");
        out.path = a.dump;
        out.vocab = hp->vocab;
        if (!out.f) {
            moe_err_set(&err, "%s: %s", a.dump, strerror(errno));
            goto done;
        }
    }
    int seq;
    if (moe_engine_seq_new(e, &seq, &err)) goto done;
    const float *row = NULL;
    const int n_prefill = a.logits_from > 0 ? (int)a.logits_from : n_tok;
    double t0 = moe_now();
    if (prefill(e, seq, toks, n_prefill, o.max_batch_tokens, &row, &err)) goto done;
    const double t_prefill = moe_now() - t0;
    if (put_row(&out, row, &err)) goto done;
    t0 = moe_now();
    int64_t n_decoded = 0;
    hist = moe_xmalloc((size_t)(n_tok + a.n_gen + 1) * sizeof(int32_t));
    memcpy(hist, toks, (size_t)n_tok * sizeof(int32_t));
    int64_t n_hist = n_tok;
    if (a.logits_from > 0) {
        for (int i = n_prefill; i < n_tok; i++, n_decoded++)
            if (feed_one(e, seq, toks[i], &row, &err) || put_row(&out, row, &err)) goto done;
    }
    for (int64_t k = 0; k < a.n_gen; k++) {
        const int32_t t = moe_sampler_sample(smp, row, hist, n_hist, n_hist);
        hist[n_hist++] = t;
        if (!a.text) printf(k ? " %d" : "%d", t);
        if (moe_sampler_is_stop(&a.sc, t) || k + 1 == a.n_gen) break;
        if (feed_one(e, seq, t, &row, &err) || put_row(&out, row, &err)) goto done;
        n_decoded++;
    }
    const double t_decode = moe_now() - t0;
    if (a.text) {
        char *txt = NULL;
        size_t len = 0;
        if (moe_tokenizer_decode(tokz, hist + n_tok, (size_t)(n_hist - n_tok), &txt, &len, &err)) goto done;
        fwrite(txt, 1, len, stdout);
        free(txt);
    }
    printf("\n");
    if (a.stats) {
        moe_engine_stats st;
        moe_engine_get_stats(e, &st);
        fprintf(stderr, "prefill: %d tokens in %.3f s = %.2f tokens/s\n", n_prefill, t_prefill,
                t_prefill > 0 ? n_prefill / t_prefill : 0.0);
        fprintf(stderr, "decode: %lld tokens in %.3f s = %.2f tokens/s\n", (long long)n_decoded, t_decode,
                t_decode > 0 ? n_decoded / t_decode : 0.0);
        fprintf(stderr, "cache: %llu bytes in use (%lld tokens, blocks of %llu bytes)\n",
                (unsigned long long)st.cache_bytes_in_use, (long long)moe_engine_seq_len(e, seq),
                (unsigned long long)st.cache_block_bytes);
        fprintf(stderr, "kernels: %s%s, threads: %lld\n", moe_kern_name(moe_engine_kernels(e)),
                a.int8 ? " + int8 activations" : "", (long long)a.threads);
    }
    rc = 0;
done:
    if (td.f && (fclose(td.f) != 0 || td.failed) && rc == 0) {
        moe_err_set(&err, "%s: write failed", a.dump_tensors);
        rc = 1;
    }
    if (out.f && fclose(out.f) != 0 && rc == 0) {
        moe_err_set(&err, "%s: %s", a.dump, strerror(errno));
        rc = 1;
    }
    if (rc) fprintf(stderr, "moe-run: %s\n", err.msg);
    moe_sampler_free(smp);
    moe_tokenizer_free(tokz);
    moe_engine_free(e);
    moe_model_free(m);
    free(toks);
    free(hist);
    return rc;
}
