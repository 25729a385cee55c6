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
#include "gen.h"
#include "io.h"
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
          "  --text                print the generated text instead of ids (as the server's clients\n"
          "                        get it: valid UTF-8, control tokens such as EOS left out)\n"
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
          "  --min-tokens N        no stop token (EOS or --stop) before N generated tokens\n"
          "  --threads T           worker threads (default 1)\n"
          "  --block-size B        latent cache tokens per block (default 16)\n"
          "  --ctx N               context limit (default prompt + n)\n"
          "  --batch N             prefill chunk length (default 512)\n"
          "  --decompress-min N    prefill chunks of ≥ N tokens decompress K/V (default 32, 0 = never)\n"
          "  --reference-kernels   scalar reference kernels (slow; for checking); otherwise the\n"
          "                        best set of this CPU, capped by MOE_KERNELS=reference|avx2|avx512\n"
          "  --exact               float activations everywhere (within ~5e-6 of the exact reference);\n"
          "                        the default quantizes activations to int8 for quantized weights, in\n"
          "                        each type's dot type (q8_0, q8_1 or q8_K as llama.cpp; faster)\n"
          "  --int8                the default (int8 activations); accepted for old command lines\n"
          "  --repack              with int8: the Q8_0 and Q4_K attention, dense/shared FFN and output\n"
          "                        matrices from a repacked copy (16 rows interleaved; costs their bytes\n"
          "                        again in memory): faster batches and prompts; Q4_K gives the\n"
          "                        same bits, Q8_0 other bits (the reference set's int8 sums; docs/engine.md\n"
          "                        \"Repacked layouts\")\n"
          "  --mtp                 speculative decoding with the file's MTP block (nextn_predict_layers):\n"
          "                        draft tokens (--mtp-draft) verified by the trunk in one step; the\n"
          "                        output is bitwise the output without it, greedy or sampled\n"
          "                        (docs/engine.md \"MTP\"); --stats prints drafts and acceptance\n"
          "  --mtp-draft K         drafts a step with --mtp, 1..4 (default 1): the MTP block chained on\n"
          "                        its own output for the second and later\n"
          "  --test-mtp-accept F   TEST KNOB (with --mtp): a first pass without MTP records the tokens;\n"
          "                        then a fraction F of the drafts is that token (accepted), the rest a\n"
          "                        token that is not (rejected); the MTP block still runs.  For\n"
          "                        measuring the mechanism at a chosen acceptance (bench/mtp)\n"
          "  --dump-logits FILE    write float32 logits rows (fixtures' layout)\n"
          "  --logits-from P       with -n 0: logits of positions P-1 .. end (teacher forcing)\n"
          "  --dump-tensors FILE   write every named intermediate of every step: records of\n"
          "                        name[16] layer step rows cols (int32 LE) + rows×cols float32\n"
          "  --stats               print timings, cache bytes and the kernel set to stderr\n"
          "  --help                this text\n",
          f);
}

typedef struct run_args {
    const char *model, *tokens, *dump, *prompt, *dump_tensors, *chat;
    int64_t n_gen, threads, block, ctx, batch, decompress, logits_from, mtp_draft;
    bool stats, ignore_eos, reference, exact, text, repack, mtp;
    double test_accept;    /* --test-mtp-accept, < 0: off */
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
    a->test_accept = -1;
    a->mtp_draft = 1;
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
        if (!strcmp(f, "--exact")) { a->exact = true; continue; }
        if (!strcmp(f, "--int8")) { a->exact = false; continue; }
        if (!strcmp(f, "--mtp")) { a->mtp = true; continue; }
        if (!strcmp(f, "--repack")) { a->repack = true; continue; }
        if (!strcmp(f, "--text")) { a->text = true; continue; }
        static const char *const with_value[] = {"--model", "--tokens", "--prompt", "--chat", "--dump-logits", "--dump-tensors", "-n", "--threads",
                                                 "--block-size", "--ctx", "--batch", "--decompress-min",
                                                 "--logits-from", "--temp", "--top-k", "--top-p", "--min-p",
                                                 "--repeat-penalty", "--repeat-last-n", "--seed", "--stop", "--min-tokens",
                                                 "--test-mtp-accept", "--mtp-draft"};
        bool known = false;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) known |= !strcmp(f, with_value[k]);
        if (!known) return moe_err_set(err, "unknown flag %s (see --help)", f);
        if (i + 1 >= argc) return moe_err_set(err, "%s needs a value (see --help)", f);
        const char *v = argv[++i];
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
        else if (!strcmp(f, "--mtp-draft")) { if (moe_parse_i64(v, 1, MOE_GEN_MAX_DRAFT, &a->mtp_draft, err)) return moe_err_prefix(err, "--mtp-draft"); }
        else if (!strcmp(f, "--test-mtp-accept")) { if (moe_parse_f64(v, 0, 1, &a->test_accept, err)) return moe_err_prefix(err, "--test-mtp-accept"); }
        else if (!strcmp(f, "--logits-from")) { if (moe_parse_i64(v, 1, 1 << 24, &a->logits_from, err)) return moe_err_prefix(err, "--logits-from"); }
        else if (moe_sampler_param_find(f + 2) >= 0) { if (moe_sampler_cfg_set(&a->sc, f + 2, v, err)) return moe_err_prefix(err, "%s", f); }
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
    if (a->test_accept >= 0 && !a->mtp) return moe_err_set(err, "--test-mtp-accept needs --mtp");
    if (a->mtp_draft != 1 && !a->mtp) return moe_err_set(err, "--mtp-draft needs --mtp");
    if (a->mtp && a->dump_tensors) return moe_err_set(err, "--dump-tensors with --mtp is not supported (the MTP steps' records)");
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

/* What the generate loop reports, and where it goes. */
typedef struct run_out {
    moe_engine *e;
    const moe_kern_set *kernels; /* the set the engine chose */
    int n_rp;                    /* --repack: matrices and bytes repacked */
    uint64_t rp_bytes;
    FILE *rows;            /* --dump-logits, or NULL */
    const char *rows_path;
    int vocab;
    bool text;             /* print text at the end instead of ids as they come */
    int64_t n_rows, n_out;
    double t_start, t_first_row, t_end;
    int32_t *out;          /* the generated ids, at the end */
    moe_engine_stats st;   /* at the end, with the sequence's cache still held */
    int64_t seq_len;
    moe_gen_end why;
    char error[MOE_ERR_MSG_MAX];
    bool quiet;            /* the oracle pass of --test-mtp-accept: nothing printed or dumped */
    uint64_t drafts, accepted;
} run_out;

static int on_row(void *ctx, const moe_gen_seq *s, const float *logits, moe_err *err)
{
    (void)s;
    run_out *o = ctx;
    if (o->n_rows++ == 0) o->t_first_row = moe_now();
    if (o->rows && !o->quiet && fwrite(logits, sizeof(float), (size_t)o->vocab, o->rows) != (size_t)o->vocab)
        return moe_err_set(err, "%s: write failed: %s", o->rows_path, strerror(errno));
    return MOE_OK;
}

static void on_token(void *ctx, const moe_gen_seq *s, int index, int32_t tok, const moe_token_logprobs *lp)
{
    (void)s, (void)lp;
    run_out *o = ctx;
    if (!o->text && !o->quiet) printf(index ? " %d" : "%d", tok);
    o->n_out = index + 1;
}

static void on_end(void *ctx, const moe_gen_seq *s, moe_gen_end why, const char *msg)
{
    run_out *o = ctx;
    o->t_end = moe_now();
    o->why = why;
    if (msg) snprintf(o->error, sizeof o->error, "%s", msg);
    moe_engine_get_stats(o->e, &o->st);
    o->seq_len = moe_engine_seq_len(o->e, s->seq);
    /* the history dies with the sequence: keep the generated ids */
    int32_t *ids = moe_xmalloc((size_t)(o->n_out ? o->n_out : 1) * sizeof *ids);
    memcpy(ids, s->hist + s->n_tokens, (size_t)o->n_out * sizeof *ids);
    o->out = ids;
}

/* The ids of a conversation file rendered with the model's chat template
 * (special tokens matched, no BOS added: the template writes it). */
static int chat_tokens(const char *path, const moe_gguf *g, const moe_tokenizer *tok, moe_tokens *ids, moe_err *err)
{
    char *buf = NULL;
    size_t n = 0;
    if (moe_file_read(path, 64u << 20, &buf, &n, err)) return moe_err_prefix(err, "--chat");
    moe_chat_conv conv = {0};
    moe_chat *chat = NULL;
    int rc = MOE_ERR;
    if (moe_chat_conv_parse(&conv, buf, n, err)) moe_err_prefix(err, "--chat %s", path);
    else if (moe_chat_init(&chat, g, tok, err)) moe_err_prefix(err, "--chat");
    else rc = moe_chat_tokenize(chat, tok, conv.msgs, conv.n, conv.add_generation_prompt, ids, err);
    moe_chat_free(chat);
    moe_chat_conv_free(&conv);
    free(buf);
    return rc;
}

/* The prompt's ids from --tokens, --prompt or --chat, checked against the
 * vocabulary and --logits-from. */
static int prompt_tokens(const run_args *a, const moe_model *m, const moe_tokenizer *tokz, int32_t **out, size_t *n_out,
                         moe_err *err)
{
    size_t n = *n_out;
    int32_t *toks = *out;
    if (!a->tokens) {
        moe_tokens ids = {0};
        if (a->chat ? chat_tokens(a->chat, m->gguf, tokz, &ids, err)
                    : moe_tokenizer_encode_prompt(tokz, a->prompt, strlen(a->prompt), &ids, err)) {
            moe_tokens_free(&ids);
            return MOE_ERR;
        }
        if (ids.n == 0 || ids.n > MOE_IDS_MAX) {
            moe_tokens_free(&ids);
            return moe_err_set(err, "%s gives %s tokens", a->chat ? "--chat" : "--prompt", ids.n ? "too many" : "no");
        }
        n = ids.n;
        toks = moe_xmalloc(n * sizeof *toks);
        memcpy(toks, ids.ids, n * sizeof *toks);
        moe_tokens_free(&ids);
    }
    *out = toks;
    *n_out = n;
    if (a->logits_from > (int64_t)n)
        return moe_err_set(err, "--logits-from %lld is past the %zu prompt tokens", (long long)a->logits_from, n);
    for (size_t i = 0; i < n; i++)
        if (toks[i] >= m->hp.vocab)
            return moe_err_set(err, "--tokens item %zu: id %d is not in 0..%d (vocabulary of %s)", i + 1, toks[i],
                               m->hp.vocab - 1, a->model);
    for (int i = 0; i < a->sc.n_stop; i++)
        if (a->sc.stop[i] >= m->hp.vocab)
            return moe_err_set(err, "--stop %d is not in 0..%d", a->sc.stop[i], m->hp.vocab - 1);
    return MOE_OK;
}

static void print_stats(const run_args *a, const run_out *o, int n_prefill)
{
    const double t_prefill = o->t_first_row - o->t_start, t_decode = o->t_end - o->t_first_row;
    const int64_t n_decoded = o->n_rows - 1; /* rows after the prompt's: forced tokens and fed samples */
    fprintf(stderr, "prefill: %d tokens in %.3f s = %.2f tokens/s\n", n_prefill, t_prefill,
            t_prefill > 0 ? n_prefill / t_prefill : 0.0);
    fprintf(stderr, "decode: %lld tokens in %.3f s = %.2f tokens/s\n", (long long)n_decoded, t_decode,
            t_decode > 0 ? (double)n_decoded / t_decode : 0.0);
    fprintf(stderr, "cache: %llu bytes in use (%lld tokens, blocks of %llu bytes)\n",
            (unsigned long long)o->st.cache_bytes_in_use, (long long)o->seq_len,
            (unsigned long long)o->st.cache_block_bytes);
    fprintf(stderr, "kernels: %s%s, threads: %lld%s\n", moe_kern_name(o->kernels),
            a->exact ? " + float activations (--exact)" : " + int8 activations", (long long)a->threads,
            moe_kern_set_l2_prefetch(o->kernels) ? ", L2 prefetch (MOE_L2_PREFETCH)" : "");
    if (a->repack)
        fprintf(stderr, "repacked: %d matrices, %.1f MiB (--repack)\n", o->n_rp, (double)o->rp_bytes / 1048576.0);
    if (a->mtp)
        fprintf(stderr, "mtp: %llu drafts, %llu accepted (%.1f%%)%s\n", (unsigned long long)o->drafts,
                (unsigned long long)o->accepted, o->drafts ? 100.0 * (double)o->accepted / (double)o->drafts : 0.0,
                a->test_accept >= 0 ? " (--test-mtp-accept)" : "");
}

/* --test-mtp-accept: the drafts come from the tokens a pass without MTP
 * emitted, a fraction of them right */
typedef struct oracle {
    const int32_t *ids;
    int64_t n;
    double accept;
    int vocab;
} oracle;

static int32_t oracle_draft(void *ctx, const moe_gen_seq *s, int depth, int32_t mtp_draft)
{
    const oracle *o = ctx;
    const int64_t idx = s->n_hist - s->n_tokens + depth; /* the completion index the draft is for */
    if (idx < 0 || idx >= o->n) return mtp_draft;
    uint64_t z = (uint64_t)idx * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull; /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    const int32_t right = o->ids[idx];
    if ((double)(z >> 11) * 0x1.0p-53 < o->accept) return right;
    return mtp_draft != right ? mtp_draft : (right + 1) % o->vocab;
}

/* Runs the one sequence through the generate loop to its end. */
static int run(const run_args *a, moe_engine *e, const moe_engine_opts *eo, const int32_t *toks, size_t n_tok,
               run_out *out, moe_err *err)
{
    const moe_model *m = moe_engine_model(e);
    int32_t eos = -1;
    if (!a->ignore_eos && moe_tokenizer_eos_from_gguf(m->gguf, m->hp.vocab, &eos, err)) return moe_err_prefix(err, "%s", a->model);
    /* the prompt's chunks as without --mtp (which may raise the step's budget to 2) */
    const int chunk = (int)(a->batch < (int64_t)n_tok ? a->batch : (int64_t)n_tok);
    moe_gen_opts go = {.max_seqs = 1, .max_ctx = eo->max_ctx, .step_tokens = eo->max_batch_tokens,
                       .prefill_chunk = chunk, .eos = eos, .mtp = a->mtp, .mtp_draft = (int)a->mtp_draft};
    moe_gen_cb cb = {.ctx = out, .row = on_row, .token = on_token, .end = on_end};
    moe_gen *g = NULL;
    const int n_prefill = a->logits_from > 0 ? (int)a->logits_from : (int)n_tok;
    moe_gen_req rq = {.tokens = toks, .n_tokens = (int)n_tok, .n_chunked = n_prefill, .max_out = (int)a->n_gen, .sc = a->sc};
    oracle orc = {0};
    if (a->mtp && a->test_accept >= 0) {
        /* the oracle pass: the same request without MTP, silent */
        run_out first = {.e = e, .vocab = out->vocab, .quiet = true};
        moe_gen_cb cb1 = {.ctx = &first, .row = on_row, .token = on_token, .end = on_end};
        moe_gen_opts go1 = go;
        go1.mtp = false;
        int rc1 = moe_gen_init(&g, e, &go1, &cb1, err) || moe_gen_add(g, &rq, err) ? MOE_ERR : MOE_OK;
        while (rc1 == MOE_OK) {
            moe_gen_plan p;
            moe_gen_plan_step(g, &p);
            if (p.n_items == 0) break;
            rc1 = moe_gen_step(g, err);
        }
        moe_gen_free(g);
        g = NULL;
        if (rc1 == MOE_OK && first.why == MOE_GEN_END_ERROR) rc1 = moe_err_set(err, "%s", first.error);
        if (rc1) {
            free(first.out);
            return MOE_ERR;
        }
        orc = (oracle){.ids = first.out, .n = first.n_out, .accept = a->test_accept, .vocab = out->vocab};
        go.draft_hook = oracle_draft;
        go.draft_ctx = &orc;
    }
    if (moe_gen_init(&g, e, &go, &cb, err) || moe_gen_add(g, &rq, err)) {
        free((void *)orc.ids);
        moe_gen_free(g);
        return MOE_ERR;
    }
    out->e = e;
    out->kernels = moe_engine_kernels(e);
    moe_engine_repacked(e, &out->n_rp, &out->rp_bytes);
    out->t_start = moe_now();
    for (;;) {
        moe_gen_plan p;
        moe_gen_plan_step(g, &p);
        if (p.n_items == 0) break;
        if (moe_gen_step(g, err)) {
            moe_gen_free(g);
            free((void *)orc.ids);
            return MOE_ERR;
        }
    }
    moe_gen_mtp_stats(g, &out->drafts, &out->accepted);
    moe_gen_free(g);
    free((void *)orc.ids);
    if (out->why == MOE_GEN_END_ERROR) return moe_err_set(err, "%s", out->error);
    /* decoded: the rows after the prompt's (forced tokens and fed samples) */
    if (a->stats) print_stats(a, out, n_prefill);
    return MOE_OK;
}

int main(int argc, char **argv)
{
    moe_err err = {{0}};
    run_args a;
    int rc = 1;
    int32_t *toks = NULL;
    size_t n_tok = 0;
    moe_model *m = NULL;
    moe_engine *e = NULL;
    moe_tokenizer *tokz = NULL;
    run_out out = {0};
    tensor_dump td = {0};
    if (parse_args(argc, argv, &a, &err) ||
        (a.tokens && moe_ids_parse(a.tokens, strlen(a.tokens), &toks, &n_tok, &err) && moe_err_prefix(&err, "--tokens"))) {
        fprintf(stderr, "moe-run: %s\n", err.msg);
        return 2;
    }
    if (a.tokens && a.logits_from > (int64_t)n_tok) {
        fprintf(stderr, "moe-run: --logits-from %lld is past the %zu given tokens\n", (long long)a.logits_from, n_tok);
        free(toks);
        return 2;
    }
    if (moe_model_open(&m, a.model, &err)) goto done;
    const moe_hparams *hp = &m->hp;
    if ((a.prompt || a.chat || a.text) && moe_tokenizer_load(&tokz, m->gguf, &err)) {
        moe_err_prefix(&err, "tokenizer of %s", a.model);
        goto done;
    }
    if (prompt_tokens(&a, m, tokz, &toks, &n_tok, &err)) goto done;
    moe_engine_opts o;
    moe_engine_opts_default(&o);
    o.n_threads = (int)a.threads;
    o.block_size = (int)a.block;
    o.max_ctx = a.ctx > 0 ? a.ctx : (int64_t)n_tok + a.n_gen + 1;
    o.max_seqs = 1;
    o.max_batch_tokens = (int)(a.batch < (int64_t)n_tok ? a.batch : (int64_t)n_tok);
    o.decompress_min = (int)a.decompress;
    o.kernels = a.reference ? moe_kern_reference() : NULL; /* NULL: best for this CPU under MOE_KERNELS */
    o.act_q8 = !a.exact;
    o.repack = a.repack;
    o.mtp = a.mtp;
    if (a.mtp && o.max_batch_tokens < 1 + a.mtp_draft) /* a decode step feeds the token and its drafts */
        o.max_batch_tokens = 1 + (int)a.mtp_draft;
    if (a.repack && a.exact) {
        moe_err_set(&err, "--repack is for the int8 path; --exact reads the file's layout");
        goto done;
    }
    if ((int64_t)n_tok + a.n_gen > o.max_ctx) {
        moe_err_set(&err, "prompt (%zu) + -n (%lld) exceeds --ctx %lld", n_tok, (long long)a.n_gen, (long long)o.max_ctx);
        goto done;
    }
    if (a.dump_tensors) {
        if (!(td.f = fopen(a.dump_tensors, "wb"))) {
            moe_err_set(&err, "%s: %s", a.dump_tensors, strerror(errno));
            goto done;
        }
        o.tensor_fn = dump_tensor;
        o.tensor_ctx = &td;
    }
    out.vocab = hp->vocab;
    out.text = a.text;
    if (a.dump && !(out.rows = fopen(out.rows_path = a.dump, "wb"))) {
        moe_err_set(&err, "%s: %s", a.dump, strerror(errno));
        goto done;
    }
    if (moe_engine_init(&e, m, &o, &err) || run(&a, e, &o, toks, n_tok, &out, &err)) goto done;
    if (a.text) { /* the text a client of the server gets */
        char *txt = NULL;
        size_t len = 0;
        if (moe_tokenizer_decode_served(tokz, out.out, (size_t)out.n_out, &txt, &len, &err)) goto done;
        fwrite(txt, 1, len, stdout);
        free(txt);
    }
    printf("\n");
    rc = 0;
done:
    if (td.f && (fclose(td.f) != 0 || td.failed) && rc == 0) {
        moe_err_set(&err, "%s: write failed", a.dump_tensors);
        rc = 1;
    }
    if (out.rows && fclose(out.rows) != 0 && rc == 0) {
        moe_err_set(&err, "%s: %s", a.dump, strerror(errno));
        rc = 1;
    }
    if (rc) fprintf(stderr, "moe-run: %s\n", err.msg);
    moe_tokenizer_free(tokz);
    moe_engine_free(e);
    moe_model_free(m);
    free(toks);
    free(out.out);
    return rc;
}
