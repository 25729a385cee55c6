/*
 * engine_badmodel.c — deepseek2 files that are valid GGUF but not a usable
 * model fail at load with a message naming the key or tensor, never a
 * crash; an MTP block counted by nextn_predict_layers is left out of the
 * trunk.  Each case is tiny_f32.gguf copied with one change.
 */
#include <unistd.h>

#include "check.h"
#include "engine.h"
#include "gguf_write.h"

typedef struct mutation {
    const char *key;        /* override this key ... */
    char kind;              /* 'u' u32, 's' string, 0 none */
    uint32_t u;
    const char *s;
    const char *drop;       /* leave out this tensor */
    const char *f16;        /* store this tensor as f16 */
    const char *reshape;    /* swap ne[0] and ne[1] of this tensor */
} mutation;

static int write_mutated(const moe_gguf *src, const char *path, const mutation *mu, moe_err *err)
{
    moe_gguf_writer *w = moe_gguf_writer_new();
    for (int i = 0; i < moe_gguf_n_kv(src); i++) {
        const char *k = moe_gguf_kv_key(src, i);
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
    remove(path);
    rmdir(dir);
    moe_gguf_close(src);
    return check_summary("engine_badmodel");
}
