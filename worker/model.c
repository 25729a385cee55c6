/*
 * model.c — deepseek2 metadata and tensor binding.
 *
 * Every count from the file is range-checked before it sizes anything, and
 * every tensor is checked against the shape the metadata implies, so a bad
 * file fails here with a message naming the key or tensor.
 */
#include "model.h"

#include "tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ARCH "deepseek2"
#define MAX_DIM (1 << 20)

static int get_u32_range(const moe_gguf *g, const char *key, uint32_t lo, uint32_t hi, int *out, moe_err *err)
{
    uint32_t v;
    if (moe_gguf_get_u32(g, key, &v, err) != MOE_OK) return MOE_ERR;
    if (v < lo || v > hi) return moe_err_set(err, "%s = %u is not in %u..%u", key, v, lo, hi);
    *out = (int)v;
    return MOE_OK;
}

static int get_u32_opt(const moe_gguf *g, const char *key, uint32_t lo, uint32_t hi, int def, int *out, moe_err *err)
{
    if (moe_gguf_find_kv(g, key) < 0) {
        *out = def;
        return MOE_OK;
    }
    return get_u32_range(g, key, lo, hi, out, err);
}

static int get_f32_opt(const moe_gguf *g, const char *key, float def, float *out, moe_err *err)
{
    if (moe_gguf_find_kv(g, key) < 0) {
        *out = def;
        return MOE_OK;
    }
    if (moe_gguf_get_f32(g, key, out, err) != MOE_OK) return MOE_ERR;
    if (!isfinite(*out)) return moe_err_set(err, "%s is not finite", key);
    return MOE_OK;
}

moe_mat moe_mat_rows(const moe_mat *m, int64_t r0, int64_t n)
{
    MOE_ASSERT(r0 >= 0 && n >= 0 && r0 + n <= m->rows);
    moe_mat v = *m;
    v.rows = n;
    v.data = (const char *)m->data + (size_t)r0 * m->row_bytes;
    v.rp_row = m->rp_row + r0;
    return v;
}

/* Binds tensor `name` as a (ne1·ne2) × ne0 matrix with the given dims. */
static int bind_mat(const moe_gguf *g, const char *name, int64_t ne0, int64_t ne1, int64_t ne2, moe_mat *out,
                    moe_err *err)
{
    const moe_gguf_tensor *t = moe_gguf_find_tensor(g, name);
    if (!t) return moe_err_set(err, "tensor %s is missing", name);
    if (!moe_kern_type_supported(t->type)) {
        char buf[32], list[256];
        return moe_err_set(err, "tensor %s has type %s, which this engine does not read; supported: %s", name,
                           moe_dtype_name(t->type, buf, sizeof buf), moe_kern_supported_list(list, sizeof list));
    }
    if ((int64_t)t->ne[0] != ne0 || (int64_t)t->ne[1] != ne1 || (int64_t)t->ne[2] != ne2 || t->ne[3] != 1)
        return moe_err_set(err, "tensor %s has shape %llu x %llu x %llu x %llu, expected %lld x %lld x %lld", name,
                           (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                           (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], (long long)ne0,
                           (long long)ne1, (long long)ne2);
    uint64_t rb;
    if (!moe_dtype_bytes(t->type, (uint64_t)ne0, &rb)) {
        char buf[32];
        return moe_err_set(err, "tensor %s: rows of %lld values are not whole %s blocks", name, (long long)ne0,
                           moe_dtype_name(t->type, buf, sizeof buf));
    }
    out->type = t->type;
    out->rows = ne1 * ne2;
    out->cols = ne0;
    out->row_bytes = (size_t)rb;
    out->data = t->data;
    return MOE_OK;
}

/* NaN or Inf in a small tensor every token reads (a norm, the router, the
 * router's bias) is refused at load: it would otherwise give a token 0
 * forever and a normal finish. */
static int check_finite(const char *name, const float *x, int64_t n, int64_t row, moe_err *err)
{
    const int64_t at = moe_f32_first_nonfinite(x, n);
    if (at < 0) return MOE_OK;
    return moe_err_set(err, "tensor %s has a non-finite value (%g) at row %lld, column %lld: the file is damaged", name,
                       (double)x[at], (long long)row, (long long)at);
}

/* Every row of a matrix, converted to float32. */
static int check_finite_mat(const char *name, const moe_mat *w, moe_err *err)
{
    float *row = moe_xmalloc((size_t)w->cols * sizeof *row);
    int rc = MOE_OK;
    for (int64_t r = 0; r < w->rows && rc == MOE_OK; r++) {
        moe_row_to_f32(w->type, moe_mat_row(w, r), row, w->cols);
        rc = check_finite(name, row, w->cols, r, err);
    }
    free(row);
    return rc;
}

static int bind_vec(const moe_gguf *g, const char *name, int64_t n, const float **out, moe_err *err)
{
    const moe_gguf_tensor *t = moe_gguf_find_tensor(g, name);
    if (!t) return moe_err_set(err, "tensor %s is missing", name);
    if (t->type != MOE_DT_F32) return moe_err_set(err, "tensor %s must be f32", name);
    if (t->n_elems != (uint64_t)n || (int64_t)t->ne[0] != n)
        return moe_err_set(err, "tensor %s has %llu values, expected %lld", name, (unsigned long long)t->n_elems,
                           (long long)n);
    *out = t->data;
    return check_finite(name, *out, n, 0, err);
}

static int read_hparams(const moe_gguf *g, moe_hparams *hp, moe_err *err)
{
    const char *s;
    uint64_t len;
    if (moe_gguf_get_str(g, "general.architecture", &s, &len, err) != MOE_OK) return MOE_ERR;
    if (len != strlen(ARCH) || memcmp(s, ARCH, len) != 0)
        return moe_err_set(err, "architecture \"%.*s\" is not supported (only deepseek2)", (int)(len > 64 ? 64 : len),
                           s);
    int n_block = 0;
    if (get_u32_range(g, ARCH ".block_count", 1, 4096, &n_block, err)) return MOE_ERR;
    if (get_u32_opt(g, ARCH ".nextn_predict_layers", 0, (uint32_t)n_block - 1, 0, &hp->n_mtp, err)) return MOE_ERR;
    hp->n_layer = n_block - hp->n_mtp;
    if (get_u32_opt(g, ARCH ".leading_dense_block_count", 0, (uint32_t)hp->n_layer, 0, &hp->n_dense_lead, err))
        return MOE_ERR;
    if (get_u32_range(g, ARCH ".embedding_length", 1, MAX_DIM, &hp->dim, err)) return MOE_ERR;
    if (get_u32_range(g, ARCH ".attention.head_count", 1, 4096, &hp->n_head, err)) return MOE_ERR;
    if (get_u32_opt(g, ARCH ".attention.q_lora_rank", 0, MAX_DIM, 0, &hp->q_lora, err)) return MOE_ERR;
    if (get_u32_range(g, ARCH ".attention.kv_lora_rank", 1, MAX_DIM, &hp->kv_lora, err)) return MOE_ERR;
    if (get_u32_range(g, ARCH ".rope.dimension_count", 2, 4096, &hp->qk_rope, err)) return MOE_ERR;
    if (hp->qk_rope % 2) return moe_err_set(err, "rope.dimension_count %d is odd", hp->qk_rope);
    int klen = 0, vlen = 0;
    const bool mla_keys = moe_gguf_find_kv(g, ARCH ".attention.key_length_mla") >= 0;
    if (get_u32_range(g, mla_keys ? ARCH ".attention.key_length_mla" : ARCH ".attention.key_length", 1, MAX_DIM,
                      &klen, err))
        return MOE_ERR;
    if (get_u32_range(g, mla_keys ? ARCH ".attention.value_length_mla" : ARCH ".attention.value_length", 1, MAX_DIM,
                      &vlen, err))
        return MOE_ERR;
    if (klen <= hp->qk_rope)
        return moe_err_set(err, "key length %d is not larger than the rope dimension %d", klen, hp->qk_rope);
    hp->qk_nope = klen - hp->qk_rope;
    hp->v_dim = vlen;
    if (get_u32_range(g, ARCH ".vocab_size", 1, 1 << 24, &hp->vocab, err)) {
        /* older files carry the vocabulary size only in the token list */
        const moe_gguf_tensor *te = moe_gguf_find_tensor(g, "token_embd.weight");
        if (!te || te->ne[1] < 1 || te->ne[1] > (1u << 24)) return MOE_ERR;
        hp->vocab = (int)te->ne[1];
    }
    if (get_u32_opt(g, ARCH ".feed_forward_length", 1, MAX_DIM, 0, &hp->dense_ff, err)) return MOE_ERR;
    if (hp->n_dense_lead > 0 && hp->dense_ff == 0)
        return moe_err_set(err, "%s.feed_forward_length is missing", ARCH);
    const bool has_moe = hp->n_layer > hp->n_dense_lead;
    if (has_moe) {
        if (get_u32_range(g, ARCH ".expert_count", 1, MOE_GATE_MAX_EXPERTS, &hp->n_expert, err)) return MOE_ERR;
        if (get_u32_range(g, ARCH ".expert_used_count", 1, MOE_GATE_MAX_USED, &hp->n_used, err)) return MOE_ERR;
        if (get_u32_opt(g, ARCH ".expert_shared_count", 0, 256, 0, &hp->n_shared, err)) return MOE_ERR;
        if (get_u32_range(g, ARCH ".expert_feed_forward_length", 1, MAX_DIM, &hp->expert_ff, err)) return MOE_ERR;
        int gf = 1;
        if (get_u32_opt(g, ARCH ".expert_gating_func", 1, 2, 1, &gf, err)) return MOE_ERR;
        hp->gating = (moe_gating)gf;
        if (get_u32_opt(g, ARCH ".expert_group_count", 0, MOE_GATE_MAX_EXPERTS, 0, &hp->n_group, err)) return MOE_ERR;
        if (get_u32_opt(g, ARCH ".expert_group_used_count", 0, MOE_GATE_MAX_EXPERTS, 0, &hp->n_group_used, err))
            return MOE_ERR;
        hp->norm_weights = false;
        if (moe_gguf_find_kv(g, ARCH ".expert_weights_norm") >= 0 &&
            moe_gguf_get_bool(g, ARCH ".expert_weights_norm", &hp->norm_weights, err))
            return MOE_ERR;
        if (get_f32_opt(g, ARCH ".expert_weights_scale", 1.0f, &hp->weights_scale, err)) return MOE_ERR;
        moe_gate_cfg c = {hp->n_expert, hp->n_used, hp->gating, hp->n_group, hp->n_group_used, hp->norm_weights,
                          hp->weights_scale, NULL, NULL};
        if (moe_gate_check(&c, err)) return moe_err_prefix(err, "MoE gating");
    }
    if (moe_gguf_get_f32(g, ARCH ".attention.layer_norm_rms_epsilon", &hp->eps, err)) return MOE_ERR;
    if (!(hp->eps >= 0.0f && hp->eps < 1.0f)) return moe_err_set(err, "RMS epsilon %g is not in [0, 1)", hp->eps);
    if (get_f32_opt(g, ARCH ".rope.freq_base", 10000.0f, &hp->rope_base, err)) return MOE_ERR;
    if (!(hp->rope_base > 1.0f)) return moe_err_set(err, "rope.freq_base %g is not > 1", hp->rope_base);
    hp->yarn = false;
    hp->yarn_factor = 1.0f;
    hp->yarn_log_mul = 0.0f;
    hp->yarn_orig_ctx = 0;
    if (moe_gguf_find_kv(g, ARCH ".rope.scaling.type") >= 0) {
        if (moe_gguf_get_str(g, ARCH ".rope.scaling.type", &s, &len, err)) return MOE_ERR;
        if (len == 4 && memcmp(s, "yarn", 4) == 0) hp->yarn = true;
        else if (!(len == 4 && memcmp(s, "none", 4) == 0))
            return moe_err_set(err, "rope.scaling.type \"%.*s\" is not supported (yarn or none)",
                               (int)(len > 32 ? 32 : len), s);
    }
    if (hp->yarn) {
        if (moe_gguf_get_f32(g, ARCH ".rope.scaling.factor", &hp->yarn_factor, err)) return MOE_ERR;
        if (!(hp->yarn_factor >= 1.0f && hp->yarn_factor < 1e6f))
            return moe_err_set(err, "rope.scaling.factor %g is not in [1, 1e6)", hp->yarn_factor);
        if (get_u32_range(g, ARCH ".rope.scaling.original_context_length", 1, 1u << 30, &hp->yarn_orig_ctx, err))
            return MOE_ERR;
        if (get_f32_opt(g, ARCH ".rope.scaling.yarn_log_multiplier", 0.0f, &hp->yarn_log_mul, err)) return MOE_ERR;
    }
    int ctx = 0;
    if (get_u32_opt(g, ARCH ".context_length", 1, 0xffffffffu, 4096, &ctx, err)) return MOE_ERR;
    hp->ctx_train = ctx;
    double scale = 1.0 / sqrt((double)(hp->qk_nope + hp->qk_rope));
    if (hp->yarn && hp->yarn_factor > 1.0f) {
        double m = 1.0 + (double)hp->yarn_log_mul * log((double)hp->yarn_factor);
        scale *= m * m;
    }
    hp->attn_scale = (float)scale;
    return MOE_OK;
}

static int bind_layer(const moe_model *m, int il, moe_layer *L, moe_err *err)
{
    const moe_gguf *g = m->gguf;
    const moe_hparams *hp = &m->hp;
    char n[128];
    const int64_t qk = hp->qk_nope + hp->qk_rope, H = hp->n_head;
#define NM(suffix) (snprintf(n, sizeof n, "blk.%d." suffix, il), n)
    if (bind_vec(g, NM("attn_norm.weight"), hp->dim, &L->attn_norm, err)) return MOE_ERR;
    if (hp->q_lora > 0) {
        if (bind_mat(g, NM("attn_q_a.weight"), hp->dim, hp->q_lora, 1, &L->q_a, err)) return MOE_ERR;
        if (bind_vec(g, NM("attn_q_a_norm.weight"), hp->q_lora, &L->q_a_norm, err)) return MOE_ERR;
        if (bind_mat(g, NM("attn_q_b.weight"), hp->q_lora, H * qk, 1, &L->q_b, err)) return MOE_ERR;
    } else {
        if (bind_mat(g, NM("attn_q.weight"), hp->dim, H * qk, 1, &L->q, err)) return MOE_ERR;
    }
    if (bind_mat(g, NM("attn_kv_a_mqa.weight"), hp->dim, hp->kv_lora + hp->qk_rope, 1, &L->kv_a, err)) return MOE_ERR;
    if (bind_vec(g, NM("attn_kv_a_norm.weight"), hp->kv_lora, &L->kv_a_norm, err)) return MOE_ERR;
    if (hp->mla_fused) {
        if (bind_mat(g, NM("attn_kv_b.weight"), hp->kv_lora, H * (hp->qk_nope + hp->v_dim), 1, &L->kv_b, err))
            return MOE_ERR;
    } else {
        if (bind_mat(g, NM("attn_k_b.weight"), hp->qk_nope, hp->kv_lora, H, &L->k_b, err)) return MOE_ERR;
        if (bind_mat(g, NM("attn_v_b.weight"), hp->kv_lora, hp->v_dim, H, &L->v_b, err)) return MOE_ERR;
    }
    if (bind_mat(g, NM("attn_output.weight"), H * hp->v_dim, hp->dim, 1, &L->o, err)) return MOE_ERR;
    if (bind_vec(g, NM("ffn_norm.weight"), hp->dim, &L->ffn_norm, err)) return MOE_ERR;
    L->is_moe = il >= hp->n_dense_lead;
    if (!L->is_moe) {
        if (bind_mat(g, NM("ffn_gate.weight"), hp->dim, hp->dense_ff, 1, &L->gate, err)) return MOE_ERR;
        if (bind_mat(g, NM("ffn_up.weight"), hp->dim, hp->dense_ff, 1, &L->up, err)) return MOE_ERR;
        if (bind_mat(g, NM("ffn_down.weight"), hp->dense_ff, hp->dim, 1, &L->down, err)) return MOE_ERR;
        return MOE_OK;
    }
    const int64_t E = hp->n_expert, ff = hp->expert_ff;
    if (bind_mat(g, NM("ffn_gate_inp.weight"), hp->dim, E, 1, &L->gate_inp, err) ||
        check_finite_mat(n, &L->gate_inp, err))
        return MOE_ERR;
    L->exp_probs_b = NULL;
    if (moe_gguf_find_tensor(g, NM("exp_probs_b.bias")) &&
        bind_vec(g, NM("exp_probs_b.bias"), E, &L->exp_probs_b, err))
        return MOE_ERR;
    if (bind_mat(g, NM("ffn_gate_exps.weight"), hp->dim, ff, E, &L->gate_exps, err)) return MOE_ERR;
    if (bind_mat(g, NM("ffn_up_exps.weight"), hp->dim, ff, E, &L->up_exps, err)) return MOE_ERR;
    if (bind_mat(g, NM("ffn_down_exps.weight"), ff, hp->dim, E, &L->down_exps, err)) return MOE_ERR;
    if (hp->n_shared > 0) {
        const int64_t sff = ff * hp->n_shared;
        if (bind_mat(g, NM("ffn_gate_shexp.weight"), hp->dim, sff, 1, &L->gate_sh, err)) return MOE_ERR;
        if (bind_mat(g, NM("ffn_up_shexp.weight"), hp->dim, sff, 1, &L->up_sh, err)) return MOE_ERR;
        if (bind_mat(g, NM("ffn_down_shexp.weight"), sff, hp->dim, 1, &L->down_sh, err)) return MOE_ERR;
    }
#undef NM
    return MOE_OK;
}

/* The first MTP block (block n_layer) and its nextn tensors, as llama.cpp
 * names them; a failure leaves m->mtp NULL and the reason in m->mtp_err. */
static void bind_mtp(moe_model *m)
{
    const moe_gguf *g = m->gguf;
    const moe_hparams *hp = &m->hp;
    moe_mtp *t = moe_xcalloc(1, sizeof *t);
    moe_err err = {{0}};
    char n[128];
    const int il = hp->n_layer;
#define NM(suffix) (snprintf(n, sizeof n, "blk.%d." suffix, il), n)
    if (bind_layer(m, il, &t->layer, &err) || bind_vec(g, NM("nextn.enorm.weight"), hp->dim, &t->enorm, &err) ||
        bind_vec(g, NM("nextn.hnorm.weight"), hp->dim, &t->hnorm, &err) ||
        bind_vec(g, NM("nextn.shared_head_norm.weight"), hp->dim, &t->head_norm, &err) ||
        bind_mat(g, NM("nextn.eh_proj.weight"), 2 * (int64_t)hp->dim, hp->dim, 1, &t->eh_proj, &err)) {
        moe_err_prefix(&err, "MTP block %d", il);
        memcpy(m->mtp_err, err.msg, sizeof m->mtp_err);
        free(t);
        return;
    }
    t->embd = m->tok_embd;
    t->head = m->output;
    if ((moe_gguf_find_tensor(g, NM("nextn.embed_tokens.weight")) &&
         bind_mat(g, n, hp->dim, hp->vocab, 1, &t->embd, &err)) ||
        (moe_gguf_find_tensor(g, NM("nextn.shared_head_head.weight")) &&
         bind_mat(g, n, hp->dim, hp->vocab, 1, &t->head, &err))) {
        moe_err_prefix(&err, "MTP block %d", il);
        memcpy(m->mtp_err, err.msg, sizeof m->mtp_err);
        free(t);
        return;
    }
#undef NM
    m->mtp = t;
}

const moe_layer *moe_model_layer(const moe_model *m, int il)
{
    MOE_ASSERT(il >= 0 && (il < m->hp.n_layer || (il == m->hp.n_layer && m->mtp)));
    return il < m->hp.n_layer ? &m->layers[il] : &m->mtp->layer;
}

void moe_mat_page_range(const moe_mat *w, uintptr_t page, uintptr_t *a, uintptr_t *b)
{
    *a = (uintptr_t)w->data & ~(page - 1);
    *b = ((uintptr_t)w->data + (uintptr_t)w->rows * w->row_bytes + page - 1) & ~(page - 1);
}

/* Small pages for the bytes of w (advice only: a failure changes nothing
 * but memory use). */
static void advise_small_pages(const moe_mat *w)
{
    uintptr_t a, b;
    moe_mat_page_range(w, (uintptr_t)sysconf(_SC_PAGESIZE), &a, &b);
    (void)madvise((void *)a, b - a, MADV_NOHUGEPAGE);
}

int moe_model_open(moe_model **out, const char *path, moe_err *err)
{
    *out = NULL;
    moe_model *m = moe_xcalloc(1, sizeof *m);
    if (moe_gguf_open(&m->gguf, path, err) != MOE_OK) {
        free(m);
        return MOE_ERR;
    }
    moe_hparams *hp = &m->hp;
    if (read_hparams(m->gguf, hp, err) != MOE_OK) goto fail;
    /* split vs fused MLA: decided by the tensors of block 0 */
    hp->mla_fused = moe_gguf_find_tensor(m->gguf, "blk.0.attn_k_b.weight") == NULL &&
                    moe_gguf_find_tensor(m->gguf, "blk.0.attn_kv_b.weight") != NULL;
    if (hp->mla_fused && moe_gguf_find_kv(m->gguf, ARCH ".attention.key_length_mla") >= 0) {
        moe_err_set(err, "file has key_length_mla but only the fused attn_kv_b tensor");
        goto fail;
    }
    if (bind_mat(m->gguf, "token_embd.weight", hp->dim, hp->vocab, 1, &m->tok_embd, err)) goto fail;
    if (bind_vec(m->gguf, "output_norm.weight", hp->dim, &m->out_norm, err)) goto fail;
    /* no output.weight: the embeddings double as the output matrix (tied),
     * whatever their type, as llama.cpp does */
    m->output_tied = moe_gguf_find_tensor(m->gguf, "output.weight") == NULL;
    if (m->output_tied) m->output = m->tok_embd;
    else if (bind_mat(m->gguf, "output.weight", hp->dim, hp->vocab, 1, &m->output, err)) goto fail;
    /* The embeddings are looked up a row a token: small pages there, so a
     * lookup does not read 2 MiB around its row (the file's huge-page
     * advice, core/gguf.c, is for the weights every token streams).  Tied,
     * they are streamed as the output matrix and keep it. */
    if (!m->output_tied) advise_small_pages(&m->tok_embd);
    m->layers = moe_xcalloc((size_t)hp->n_layer, sizeof *m->layers);
    for (int il = 0; il < hp->n_layer; il++)
        if (bind_layer(m, il, &m->layers[il], err) != MOE_OK) goto fail;
    if (hp->n_mtp > 0) bind_mtp(m);
    /* the coordinator's checks of the vocabulary, here too: a file it
     * would refuse is refused by every program */
    if (moe_tokenizer_check_model(m->gguf, err)) goto fail;
    m->file_bytes = moe_gguf_file_size(m->gguf);
    *out = m;
    return MOE_OK;
fail:
    moe_err_prefix(err, "%s", path);
    moe_model_free(m);
    return MOE_ERR;
}

void moe_model_free(moe_model *m)
{
    if (!m) return;
    moe_gguf_close(m->gguf);
    free(m->layers);
    free(m->mtp);
    free(m);
}

moe_gate_cfg moe_model_gate_cfg(const moe_model *m, int il)
{
    const moe_hparams *hp = &m->hp;
    moe_gate_cfg c = {hp->n_expert, hp->n_used,       hp->gating,        hp->n_group,
                      hp->n_group_used, hp->norm_weights, hp->weights_scale, moe_model_layer(m, il)->exp_probs_b, NULL};
    return c;
}

void moe_model_embed(const moe_model *m, int32_t id, float *out)
{
    MOE_ASSERT(id >= 0 && id < m->hp.vocab);
    moe_row_to_f32(m->tok_embd.type, moe_mat_row(&m->tok_embd, id), out, m->hp.dim);
    /* too big to check at load: checked as used; the sequence then ends
     * on its non-finite logits (gen.c), and this names the cause */
    if (moe_f32_first_nonfinite(out, m->hp.dim) >= 0)
        MOE_LOG_LIMITED(MOE_LOG_ERROR, "token %d's embedding row (token_embd.weight) has NaN or Inf: the file is damaged",
                        (int)id);
}

static uint64_t mat_bytes(const moe_mat *w) { return w->data ? (uint64_t)w->rows * w->row_bytes : 0; }

uint64_t moe_model_bytes_per_token(const moe_model *m)
{
    const moe_hparams *hp = &m->hp;
    uint64_t b = mat_bytes(&m->output) + m->tok_embd.row_bytes;
    for (int il = 0; il < hp->n_layer; il++) {
        const moe_layer *L = &m->layers[il];
        b += mat_bytes(&L->q) + mat_bytes(&L->q_a) + mat_bytes(&L->q_b) + mat_bytes(&L->kv_a) + mat_bytes(&L->k_b) +
             mat_bytes(&L->v_b) + mat_bytes(&L->kv_b) + mat_bytes(&L->o);
        if (!L->is_moe) {
            b += mat_bytes(&L->gate) + mat_bytes(&L->up) + mat_bytes(&L->down);
        } else {
            b += mat_bytes(&L->gate_inp) + mat_bytes(&L->gate_sh) + mat_bytes(&L->up_sh) + mat_bytes(&L->down_sh);
            b += (mat_bytes(&L->gate_exps) + mat_bytes(&L->up_exps) + mat_bytes(&L->down_exps)) /
                 (uint64_t)hp->n_expert * (uint64_t)hp->n_used;
        }
    }
    return b;
}

int moe_model_expert_mats(const moe_model *m, int il, const moe_mat *mats[3])
{
    MOE_ASSERT(il >= 0 && il < m->hp.n_layer);
    const moe_layer *L = &m->layers[il];
    if (!L->is_moe) return 0;
    mats[0] = &L->gate_exps;
    mats[1] = &L->up_exps;
    mats[2] = &L->down_exps;
    return 3;
}

uint32_t moe_model_expert_dot_type(const moe_model *m, int il)
{
    MOE_ASSERT(il >= m->hp.n_dense_lead && il < m->hp.n_layer);
    const moe_layer *L = &m->layers[il];
    const uint32_t dt = moe_kern_dot_type(L->gate_exps.type);
    return moe_kern_dot_type(L->up_exps.type) == dt ? dt : MOE_DT_F32;
}

size_t moe_model_expert_act_bytes(const moe_model *m, int il, bool int8)
{
    const uint32_t dt = int8 ? moe_model_expert_dot_type(m, il) : MOE_DT_F32;
    const int64_t D = m->hp.dim;
    return dt == MOE_DT_F32 ? (size_t)D * sizeof(float) : moe_kern_act_row_bytes(dt, D);
}

size_t moe_model_expert_qact_bytes_max(const moe_model *m, bool int8)
{
    size_t q = 0;
    for (int il = m->hp.n_dense_lead; il < m->hp.n_layer && int8; il++) {
        const size_t b = moe_model_expert_dot_type(m, il) == MOE_DT_F32 ? 0 : moe_model_expert_act_bytes(m, il, true);
        q = b > q ? b : q;
    }
    return q;
}

size_t moe_model_dispatch_row_bytes(const moe_model *m, int il, bool int8)
{
    const size_t pay = moe_model_expert_act_bytes(m, il, int8);
    return (size_t)m->hp.n_used * sizeof(int32_t) + ((pay + 3) & ~(size_t)3);
}
