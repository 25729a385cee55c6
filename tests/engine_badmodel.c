/*
 * engine_badmodel.c — deepseek2 files that are valid GGUF but not a usable
 * model fail at load with a message naming the key or tensor, never a
 * crash; an MTP block counted by nextn_predict_layers is left out of the
 * trunk.  Each case is tiny_f32.gguf copied with one change.
 *
 * Damaged weights and vocabularies (the checks every program shares with
 * the coordinator): NaN/Inf in a norm, the router or its bias is refused
 * at load; one in an embedding row, or a NaN scale in a big Q8_0 matrix
 * (tiny_q8_0.gguf, on both activation paths), ends the sequences that use
 * it with an error naming non-finite logits (never token 0 and a normal
 * finish);
 * an EOS id outside the vocabulary, a vocabulary shorter than the
 * embedding and a token string given twice are refused at load.
 */
#include <unistd.h>

#include <math.h>

#include "check.h"
#include "engine.h"
#include "gen.h"
#include "gguf_write.h"

typedef struct mutation {
    const char *key;        /* override this key ... */
    char kind;              /* 'u' u32, 's' string, 0 none */
    uint32_t u;
    const char *s;
    const char *drop;       /* leave out this tensor */
    const char *f16;        /* store this tensor as f16 */
    const char *reshape;    /* swap ne[0] and ne[1] of this tensor */
    const char *poison;     /* in this f32 tensor ... (a Q8_0 one: ...   */
    uint64_t at;            /* ... the value at this index ... (block's  */
    float value;            /* ... becomes this                 scale)  */
    int vocab_drop;         /* tokenizer.ggml.tokens (and token_type): leave out the last N */
    int vocab_dup;          /* > 0: token vocab_dup gets token vocab_dup + 1's string */
} mutation;

/* The tokens array (and the types beside it) with a mutation's change. */
static bool write_vocab(moe_gguf_writer *w, const moe_gguf *src, const char *key, const mutation *mu)
{
    if (!mu->vocab_drop && !mu->vocab_dup) return false;
    moe_gguf_arr a;
    moe_err err;
    if (moe_gguf_get_arr(src, key, &a, &err)) return false;
    const uint64_t n = a.count - (uint64_t)mu->vocab_drop;
    if (!strcmp(key, "tokenizer.ggml.token_type")) {
        int32_t *v = moe_xmalloc(n * sizeof *v); /* the file's copy may be unaligned */
        memcpy(v, a.data, n * sizeof *v);
        moe_gguf_writer_kv_arr_i32(w, key, n, v);
        free(v);
        return true;
    }
    const bool merges = !strcmp(key, "tokenizer.ggml.merges");
    if (strcmp(key, "tokenizer.ggml.tokens") && !(merges && mu->vocab_drop)) return false;
    /* the merges lose those that make or use a dropped token */
    char dropped[256] = "";
    if (merges) {
        moe_gguf_arr toks;
        uint64_t len;
        CHECK(moe_gguf_get_arr(src, "tokenizer.ggml.tokens", &toks, &err) == MOE_OK);
        const char *d = moe_gguf_arr_str(src, &toks, toks.count - 1, &len);
        snprintf(dropped, sizeof dropped, "%.*s", (int)len, d);
    }
    char **strs = moe_xcalloc(a.count, sizeof *strs);
    uint64_t kept = 0;
    for (uint64_t i = 0; i < (merges ? a.count : n); i++) {
        uint64_t len;
        const uint64_t from = mu->vocab_dup > 0 && i == (uint64_t)mu->vocab_dup ? i + 1 : i;
        const char *t = moe_gguf_arr_str(src, &a, from, &len);
        char *c = moe_xmalloc(len + 1);
        memcpy(c, t, len);
        c[len] = 0;
        if (merges) {
            char joined[512];
            const char *sp = strchr(c, ' ');
            snprintf(joined, sizeof joined, "%.*s%s", sp ? (int)(sp - c) : 0, c, sp ? sp + 1 : "");
            const size_t dl = strlen(dropped);
            const bool uses = sp && (!strcmp(joined, dropped) || (!strncmp(c, dropped, dl) && c[dl] == ' ') ||
                                     !strcmp(sp + 1, dropped));
            if (uses) {
                free(c);
                continue;
            }
        }
        strs[kept++] = c;
    }
    moe_gguf_writer_kv_arr_str(w, key, kept, (const char *const *)strs, NULL);
    for (uint64_t i = 0; i < kept; i++) free(strs[i]);
    free(strs);
    return true;
}

static int write_mutated(const moe_gguf *src, const char *path, const mutation *mu, moe_err *err)
{
    moe_gguf_writer *w = moe_gguf_writer_new();
    for (int i = 0; i < moe_gguf_n_kv(src); i++) {
        const char *k = moe_gguf_kv_key(src, i);
        if (write_vocab(w, src, k, mu)) continue;
        if (mu->key && !strcmp(k, mu->key)) {
            if (mu->kind == 'u') moe_gguf_writer_kv_u32(w, k, mu->u);
            else if (mu->kind == 's') moe_gguf_writer_kv_str(w, k, mu->s);
            continue;
        }
        moe_gguf_writer_kv_copy(w, src, i);
    }
    if (mu->key && mu->kind && !moe_gguf_writer_has_kv(w, mu->key)) {
        if (mu->kind == 'u') moe_gguf_writer_kv_u32(w, mu->key, mu->u);
        else moe_gguf_writer_kv_str(w, mu->key, mu->s);
    }
    int map[256];
    int n = 0;
    for (int i = 0; i < moe_gguf_n_tensors(src) && n < 256; i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(src, i);
        if (mu->drop && !strcmp(t->name, mu->drop)) continue;
        uint64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        uint32_t type = t->type;
        if (mu->f16 && !strcmp(t->name, mu->f16)) type = MOE_DT_F16;
        if (mu->reshape && !strcmp(t->name, mu->reshape)) {
            ne[0] = t->ne[1];
            ne[1] = t->ne[0];
        }
        if (moe_gguf_writer_add_tensor(w, t->name, type, t->n_dims, ne, err) < 0) goto fail;
        map[n++] = i;
    }
    if (moe_gguf_writer_open(w, path, err)) goto fail;
    for (int j = 0; j < n; j++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(src, map[j]);
        const uint64_t size = moe_gguf_writer_tensor_size(w, j);
        void *buf = moe_xcalloc(1, size ? size : 1);
        if (moe_gguf_writer_tensor_type(w, j) == t->type) memcpy(buf, t->data, size < t->size ? size : t->size);
        else moe_row_from_f32(MOE_DT_F16, t->data, buf, (int64_t)t->n_elems);
        if (mu->poison && !strcmp(t->name, mu->poison) && t->type == MOE_DT_F32 && mu->at < t->n_elems)
            memcpy((char *)buf + 4 * mu->at, &mu->value, 4);
        if (mu->poison && !strcmp(t->name, mu->poison) && t->type == MOE_DT_Q8_0 && mu->at < t->n_elems / 32) {
            const uint16_t h = moe_f32_to_f16(mu->value);
            memcpy((char *)buf + sizeof(moe_block_q8_0) * mu->at, &h, 2);
        }
        int rc = moe_gguf_writer_write(w, j, 0, buf, size, err);
        free(buf);
        if (rc) goto fail;
    }
    if (moe_gguf_writer_commit(w, err)) goto fail;
    moe_gguf_writer_free(w);
    return MOE_OK;
fail:
    moe_gguf_writer_free(w);
    return MOE_ERR;
}

typedef struct ended {
    moe_gen_end why;
    char msg[256];
    int tokens;
} ended;

static void on_token(void *ctx, const moe_gen_seq *s, int index, int32_t tok, const moe_token_logprobs *lp)
{
    (void)s, (void)index, (void)tok, (void)lp;
    ((ended *)ctx)->tokens++;
}

static void on_end(void *ctx, const moe_gen_seq *s, moe_gen_end why, const char *msg)
{
    (void)s;
    ended *e = ctx;
    e->why = why;
    snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : "");
}

/* Runs the prompt through the generate loop (greedy, 4 tokens). */
static ended generate(moe_model *m, const int32_t *toks, int n, bool int8)
{
    ended out = {.why = -1};
    moe_err err;
    moe_engine_opts o;
    moe_engine_opts_default(&o);
    o.act_q8 = int8;
    o.max_ctx = 32;
    o.max_seqs = 1;
    moe_engine *e = NULL;
    moe_gen *g = NULL;
    CHECK_MSG(moe_engine_init(&e, m, &o, &err) == MOE_OK, "%s", err.msg);
    const moe_gen_opts go = {.max_seqs = 1, .max_ctx = 32, .step_tokens = 16, .prefill_chunk = 16, .eos = -1};
    const moe_gen_cb cb = {.ctx = &out, .token = on_token, .end = on_end};
    CHECK_MSG(e && moe_gen_init(&g, e, &go, &cb, &err) == MOE_OK, "%s", err.msg);
    moe_gen_req r = {.id = 1, .tokens = toks, .n_tokens = n, .max_out = 4};
    moe_sampler_cfg_default(&r.sc);
    r.sc.ignore_eos = true;
    CHECK_MSG(g && moe_gen_add(g, &r, &err) == MOE_OK, "%s", err.msg);
    for (int i = 0; g && i < 16 && moe_gen_live(g) > 0; i++) {
        moe_gen_plan p;
        moe_gen_plan_step(g, &p);
        CHECK_MSG(moe_gen_step(g, &err) == MOE_OK, "%s", err.msg);
    }
    moe_gen_free(g);
    moe_engine_free(e);
    return out;
}

/* An infinity in token 5's embedding row: a sequence that feeds token 5
 * ends with an error and no token; one that does not is unharmed. */
static void nonfinite_rows(const moe_gguf *src, const char *path)
{
    moe_err err;
    const mutation mu = {.poison = "token_embd.weight", .at = 5 * 64 + 3, .value = INFINITY};
    CHECK(write_mutated(src, path, &mu, &err) == MOE_OK);
    moe_model *m = NULL;
    CHECK_MSG(moe_model_open(&m, path, &err) == MOE_OK, "%s", err.msg);
    if (!m) return;
    const int32_t bad[3] = {7, 5, 9}, good[3] = {7, 6, 9};
    const ended b = generate(m, bad, 3, true);
    CHECK_MSG(b.why == MOE_GEN_END_ERROR && b.tokens == 0, "poisoned prompt: end %d after %d tokens", (int)b.why, b.tokens);
    CHECK_CONTAINS(b.msg, "non-finite logit");
    const ended ok = generate(m, good, 3, true);
    CHECK_MSG(ok.why == MOE_GEN_END_LENGTH && ok.tokens == 4, "clean prompt: end %d after %d tokens (%s)", (int)ok.why,
              ok.tokens, ok.msg);
    moe_model_free(m);
}

/* A NaN scale in one block of a big Q8_0 matrix (no load check reads
 * those): row 5 of the dense FFN's up projection is NaN, so one value of
 * the down projection's input.  On the int8 path (the default) that one
 * NaN must reach the logits as on the float path, and end the sequence
 * with an error: the activation quantizer makes its block NaN
 * (core/kern/kern_impl.h), where it had rounded the NaN to an int8 and
 * kept a finite scale, which dropped it and gave finite, wrong logits.
 * The clean file generates normally on both paths. */
static void nonfinite_int8(const char *path)
{
    moe_err err;
    moe_gguf *q8;
    CHECK_MSG(moe_gguf_open(&q8, fixture_path("models/tiny_q8_0.gguf"), &err) == MOE_OK, "%s", err.msg);
    if (!q8) return;
    const int32_t toks[3] = {7, 6, 9};
    for (int damaged = 0; damaged < 2; damaged++) {
        const mutation mu = {.poison = damaged ? "blk.0.ffn_up.weight" : NULL, .at = 5 * 2, .value = NAN};
        CHECK(write_mutated(q8, path, &mu, &err) == MOE_OK);
        moe_model *m = NULL;
        CHECK_MSG(moe_model_open(&m, path, &err) == MOE_OK, "%s", err.msg);
        if (!m) continue;
        for (int exact = 0; exact < 2; exact++) {
            const ended r = generate(m, toks, 3, !exact);
            if (damaged) {
                CHECK_MSG(r.why == MOE_GEN_END_ERROR && r.tokens == 0, "NaN scale, %s path: end %d after %d tokens",
                          exact ? "float" : "int8", (int)r.why, r.tokens);
                CHECK_CONTAINS(r.msg, "non-finite logit");
            } else {
                CHECK_MSG(r.why == MOE_GEN_END_LENGTH && r.tokens == 4, "clean Q8_0, %s path: end %d after %d tokens (%s)",
                          exact ? "float" : "int8", (int)r.why, r.tokens, r.msg);
            }
        }
        moe_model_free(m);
    }
    moe_gguf_close(q8);
}

int main(void)
{
    moe_err err;
    moe_gguf *src;
    CHECK_MSG(moe_gguf_open(&src, fixture_path("models/tiny_f32.gguf"), &err) == MOE_OK, "%s", err.msg);
    if (check_n_fail) return check_summary("engine_badmodel");
    char dir[] = "/tmp/moe_badmodel_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/m.gguf", dir);

    struct {
        mutation mu;
        const char *want; /* NULL: must load */
    } cases[] = {
        {{.key = NULL}, NULL},
        {{.key = "deepseek2.expert_used_count", .kind = 'u', .u = 9}, "experts used 9"},
        {{.key = "deepseek2.expert_gating_func", .kind = 'u', .u = 3}, "expert_gating_func = 3"},
        {{.key = "deepseek2.expert_group_count", .kind = 'u', .u = 3}, "not a multiple of the group count 3"},
        {{.key = "deepseek2.block_count", .kind = 'u', .u = 0}, "block_count = 0"},
        {{.key = "deepseek2.leading_dense_block_count", .kind = 'u', .u = 5}, "leading_dense_block_count = 5"},
        {{.key = "deepseek2.attention.key_length_mla", .kind = 'u', .u = 8}, "not larger than the rope dimension"},
        {{.key = "deepseek2.attention.kv_lora_rank", .kind = 'u', .u = 48}, "attn_kv_a_mqa.weight has shape"},
        {{.key = "general.architecture", .kind = 's', .s = "llama"}, "architecture \"llama\" is not supported"},
        {{.key = "deepseek2.rope.scaling.type", .kind = 's', .s = "linear"}, "\"linear\" is not supported"},
        {{.key = "deepseek2.rope.scaling.type", .kind = 's', .s = "yarn"}, "rope.scaling.factor"},
        {{.drop = "blk.1.ffn_up_exps.weight"}, "tensor blk.1.ffn_up_exps.weight is missing"},
        {{.drop = "output.weight"}, NULL}, /* tied: token_embd is the output matrix */
        {{.f16 = "blk.0.attn_norm.weight"}, "blk.0.attn_norm.weight must be f32"},
        {{.reshape = "blk.0.ffn_gate.weight"}, "blk.0.ffn_gate.weight has shape"},
        {{.reshape = "blk.1.attn_k_b.weight"}, "blk.1.attn_k_b.weight has shape"},
        /* damaged weights every token reads: refused at load */
        {{.poison = "blk.0.attn_norm.weight", .at = 7, .value = NAN}, "blk.0.attn_norm.weight has a non-finite value"},
        {{.poison = "output_norm.weight", .at = 0, .value = INFINITY}, "output_norm.weight has a non-finite value"},
        {{.poison = "blk.1.ffn_gate_inp.weight", .at = 130, .value = -INFINITY},
         "blk.1.ffn_gate_inp.weight has a non-finite value (-inf) at row 2, column 2"},
        /* the big embedding: checked as used (below), so it loads */
        {{.poison = "token_embd.weight", .at = 5 * 64 + 3, .value = INFINITY}, NULL},
        /* damaged vocabularies: refused by every program, as by the coordinator */
        {{.key = "tokenizer.ggml.eos_token_id", .kind = 'u', .u = 300}, "eos_token_id"},
        {{.vocab_drop = 1}, "the vocabulary has 299 tokens but token_embd.weight has 300 rows"},
        {{.vocab_dup = 40}, "tokens 40 and 41 are the same string"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        CHECK_MSG(write_mutated(src, path, &cases[c].mu, &err) == MOE_OK, "case %zu: writing: %s", c, err.msg);
        moe_model *m = NULL;
        err.msg[0] = 0;
        const int rc = moe_model_open(&m, path, &err);
        if (!cases[c].want) {
            CHECK_MSG(rc == MOE_OK, "case %zu: %s", c, err.msg);
        } else {
            CHECK_MSG(rc == MOE_ERR, "case %zu loaded; expected \"%s\"", c, cases[c].want);
            CHECK_CONTAINS(err.msg, cases[c].want);
        }
        moe_model_free(m);
    }
    /* nextn_predict_layers = 1: block 1 (MoE) becomes the MTP block; the
     * trunk is the one dense block, and it runs */
    mutation mtp = {.key = "deepseek2.nextn_predict_layers", .kind = 'u', .u = 1};
    CHECK(write_mutated(src, path, &mtp, &err) == MOE_OK);
    moe_model *m = NULL;
    CHECK_MSG(moe_model_open(&m, path, &err) == MOE_OK, "%s", err.msg);
    if (m) {
        CHECK(m->hp.n_layer == 1 && m->hp.n_mtp == 1);
        moe_engine_opts o;
        moe_engine_opts_default(&o);
        o.max_ctx = 16;
        o.max_seqs = 1;
        moe_engine *e = NULL;
        CHECK(moe_engine_init(&e, m, &o, &err) == MOE_OK);
        int seq;
        CHECK(moe_engine_seq_new(e, &seq, &err) == MOE_OK);
        int32_t toks[3] = {1, 2, 3};
        moe_step_item it = {.seq = seq, .tokens = toks, .n_tokens = 3, .logits = MOE_LOGITS_LAST};
        CHECK(moe_engine_step(e, &it, 1, &err) == MOE_OK && it.status == MOE_OK && it.out_rows == 1);
        moe_engine_free(e);
        moe_model_free(m);
    }
    mutation too_many = {.key = "deepseek2.nextn_predict_layers", .kind = 'u', .u = 2};
    CHECK(write_mutated(src, path, &too_many, &err) == MOE_OK);
    CHECK(moe_model_open(&m, path, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "nextn_predict_layers = 2");
    nonfinite_rows(src, path);
    nonfinite_int8(path);
    /* the router's bias (v3_mini has one) */
    moe_gguf *v3;
    CHECK_MSG(moe_gguf_open(&v3, fixture_path("models/v3_mini_f32.gguf"), &err) == MOE_OK, "%s", err.msg);
    if (v3) {
        const mutation bias = {.poison = "blk.1.exp_probs_b.bias", .at = 3, .value = NAN};
        CHECK(write_mutated(v3, path, &bias, &err) == MOE_OK);
        CHECK(moe_model_open(&m, path, &err) == MOE_ERR);
        CHECK_CONTAINS(err.msg, "blk.1.exp_probs_b.bias has a non-finite value");
        moe_gguf_close(v3);
    }
    remove(path);
    rmdir(dir);
    moe_gguf_close(src);
    return check_summary("engine_badmodel");
}
