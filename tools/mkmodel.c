/*
 * mkmodel.c — builds deepseek2 GGUF files: the metadata and tensor list of
 * a spec, random tensor data, and re-encoding of an existing file.
 *
 * Random values: per (tensor name, chunk of 64 Ki values) a splitmix64
 * stream; each value is an Irwin-Hall sum of four 16-bit uniforms, scaled
 * to unit variance (approximately normal, tails cut at ±3.46 sigma), which
 * keeps a 2 GB model to a few seconds.  Scales follow the fixtures: matrices
 * N(0, 1/fan_in) with fan_in = ne[0], token embeddings N(0, 1), norm
 * weights 1 + 0.1·N, exp_probs_b 0.1·N.
 */
#include "mkmodel.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "gguf_write.h"
#include "quant_enc.h"

#define CHUNK (1u << 16) /* values per random stream; a multiple of every block size */

/* ---- presets ----------------------------------------------------------------- */

typedef struct preset {
    const char *name;
    mk_spec spec;
} preset;

static const preset presets[] = {
    {"tiny", {.n_layer = 2, .n_dense = 1, .dim = 64, .n_head = 4, .q_lora = 0, .kv_lora = 32, .qk_nope = 16,
              .qk_rope = 8, .v_dim = 16, .n_expert = 8, .n_expert_used = 2, .n_shared = 1, .expert_ff = 32,
              .dense_ff = 128, .vocab = 300, .gating = 1, .scale = 1.0f, .type = "f32"}},
    {"v2lite-mini", {.n_layer = 4, .n_dense = 1, .dim = 128, .n_head = 4, .q_lora = 0, .kv_lora = 64, .qk_nope = 32,
                     .qk_rope = 16, .v_dim = 32, .n_expert = 16, .n_expert_used = 6, .n_shared = 2, .expert_ff = 32,
                     .dense_ff = 256, .vocab = 400, .gating = 1, .scale = 1.0f, .yarn_factor = 40.0f,
                     .yarn_orig_ctx = 4096, .mscale_all_dim = 0.707, .type = "f32", .pre = "deepseek-llm"}},
    {"v3-mini", {.n_layer = 4, .n_dense = 1, .dim = 128, .n_head = 4, .q_lora = 96, .kv_lora = 64, .qk_nope = 32,
                 .qk_rope = 16, .v_dim = 32, .n_expert = 16, .n_expert_used = 4, .n_shared = 1, .expert_ff = 32,
                 .dense_ff = 256, .vocab = 400, .gating = 2, .n_group = 4, .n_group_used = 2, .norm_weights = true,
                 .scale = 2.5f, .yarn_factor = 40.0f, .yarn_orig_ctx = 4096, .mscale_all_dim = 1.0,
                 .type = "f32"}},
    /* The decode benchmark's shape (about 2.3 GB in q8_0). */
    {"bench", {.n_layer = 8, .n_dense = 1, .dim = 2048, .n_head = 16, .q_lora = 1536, .kv_lora = 512, .qk_nope = 128,
               .qk_rope = 64, .v_dim = 128, .n_expert = 64, .n_expert_used = 6, .n_shared = 2, .expert_ff = 704,
               .dense_ff = 5632, .vocab = 32000, .gating = 2, .n_group = 8, .n_group_used = 4, .norm_weights = true,
               .scale = 2.5f, .yarn_factor = 40.0f, .yarn_orig_ctx = 4096, .mscale_all_dim = 1.0,
               .type = "q8_0"}},
    /* The quick-start model: V3-style, small enough to make in a second. */
    {"default", {.n_layer = 6, .n_dense = 1, .dim = 512, .n_head = 8, .q_lora = 384, .kv_lora = 256, .qk_nope = 64,
                 .qk_rope = 32, .v_dim = 64, .n_expert = 32, .n_expert_used = 4, .n_shared = 1, .expert_ff = 256,
                 .dense_ff = 1024, .vocab = 2048, .gating = 2, .n_group = 4, .n_group_used = 2, .norm_weights = true,
                 .scale = 2.5f, .yarn_factor = 40.0f, .yarn_orig_ctx = 4096, .mscale_all_dim = 1.0,
                 .type = "q8_0"}},
    /* V3's routing (256 experts, 8 groups of which 4 are used, top-8,
     * sigmoid with exp_probs_b) around tiny dims: traces of it look like a
     * V3 run's routing and take seconds to record here (docs/routing.md). */
    {"v3-route", {.n_layer = 4, .n_dense = 1, .dim = 64, .n_head = 2, .q_lora = 32, .kv_lora = 32, .qk_nope = 16,
                  .qk_rope = 8, .v_dim = 16, .n_expert = 256, .n_expert_used = 8, .n_shared = 1, .expert_ff = 32,
                  .dense_ff = 128, .vocab = 512, .gating = 2, .n_group = 8, .n_group_used = 4, .norm_weights = true,
                  .scale = 2.5f, .yarn_factor = 40.0f, .yarn_orig_ctx = 4096, .mscale_all_dim = 1.0,
                  .type = "f32"}},
    /* The published shapes (Hugging Face config.json of
     * deepseek-ai/DeepSeek-V2-Lite and deepseek-ai/DeepSeek-V3; the
     * context is max_position_embeddings = 4096 x 40).  V3's MTP block is
     * left out, as llama.cpp's converter leaves it out. */
    {"v2-lite", {.n_layer = 27, .n_dense = 1, .dim = 2048, .n_head = 16, .q_lora = 0, .kv_lora = 512, .qk_nope = 128,
                 .qk_rope = 64, .v_dim = 128, .n_expert = 64, .n_expert_used = 6, .n_shared = 2, .expert_ff = 1408,
                 .dense_ff = 10944, .vocab = 102400, .gating = 1, .scale = 1.0f, .yarn_factor = 40.0f,
                 .yarn_orig_ctx = 4096, .mscale_all_dim = 0.707, .type = "q8_0", .pre = "deepseek-llm"}},
    {"v3", {.n_layer = 61, .n_dense = 3, .dim = 7168, .n_head = 128, .q_lora = 1536, .kv_lora = 512, .qk_nope = 128,
            .qk_rope = 64, .v_dim = 128, .n_expert = 256, .n_expert_used = 8, .n_shared = 1, .expert_ff = 2048,
            .dense_ff = 18432, .vocab = 129280, .gating = 2, .n_group = 8, .n_group_used = 4, .norm_weights = true,
            .scale = 2.5f, .yarn_factor = 40.0f, .yarn_orig_ctx = 4096, .mscale_all_dim = 1.0, .type = "q8_0"}},
};

const char *mk_preset_names(void) { return "tiny, v2lite-mini, v3-mini, bench, default, v3-route, v2-lite, v3"; }

int mk_spec_preset(mk_spec *s, const char *name, moe_err *err)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (!strcmp(presets[i].name, name)) {
            uint64_t seed = s->seed;
            int threads = s->threads;
            bool sparse = s->sparse;
            float skew = s->router_skew;
            *s = presets[i].spec;
            s->router_skew = skew;
            s->seed = seed;
            s->threads = threads;
            s->sparse = sparse;
            return MOE_OK;
        }
    }
    return moe_err_set(err, "unknown preset '%s' (known: %s)", name, mk_preset_names());
}

int mk_spec_validate(const mk_spec *s, moe_err *err)
{
    struct { const char *name; int v, lo, hi; } r[] = {
        {"--layers", s->n_layer, 1, 4096},       {"--dense-layers", s->n_dense, 0, s->n_layer},
        {"--dim", s->dim, 1, 1 << 20},          {"--heads", s->n_head, 1, 4096},
        {"--q-lora", s->q_lora, 0, 1 << 20},    {"--kv-lora", s->kv_lora, 1, 1 << 20},
        {"--qk-nope", s->qk_nope, 1, 1 << 16},  {"--qk-rope", s->qk_rope, 2, 1 << 16},
        {"--v-dim", s->v_dim, 1, 1 << 16},      {"--experts", s->n_expert, 1, 1 << 16},
        {"--experts-used", s->n_expert_used, 1, s->n_expert}, {"--shared-experts", s->n_shared, 0, 1 << 10},
        {"--expert-ff", s->expert_ff, 1, 1 << 20}, {"--dense-ff", s->dense_ff, 1, 1 << 22},
        {"--vocab", s->vocab, 260, 1 << 24},    {"--mtp", s->mtp, 0, 64},
        {"--groups", s->n_group, 0, s->n_expert}, {"--ctx", s->ctx, 0, 1 << 30},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (r[i].v < r[i].lo || r[i].v > r[i].hi)
            return moe_err_set(err, "%s %d is out of range [%d, %d]", r[i].name, r[i].v, r[i].lo, r[i].hi);
    if (s->qk_rope % 2) return moe_err_set(err, "--qk-rope %d must be even (rope rotates pairs)", s->qk_rope);
    if (s->gating != 1 && s->gating != 2) return moe_err_set(err, "gating must be softmax or sigmoid");
    if (s->n_group > 0) {
        if (s->n_expert % s->n_group)
            return moe_err_set(err, "--experts %d is not a multiple of --groups %d", s->n_expert, s->n_group);
        if (s->n_group_used < 1 || s->n_group_used > s->n_group)
            return moe_err_set(err, "--groups-used %d is out of range [1, %d]", s->n_group_used, s->n_group);
        if (s->n_expert_used > s->n_group_used * (s->n_expert / s->n_group))
            return moe_err_set(err, "--experts-used %d exceeds the experts in %d groups", s->n_expert_used,
                               s->n_group_used);
    }
    if (!(s->scale > 0.0f) || !isfinite(s->scale)) return moe_err_set(err, "--scale must be a positive number");
    if (!(s->router_skew >= 0.0f) || !isfinite(s->router_skew))
        return moe_err_set(err, "--router-skew must be a number >= 0");
    if (s->router_skew > 0.0f && s->gating != 2)
        return moe_err_set(err, "--router-skew needs --gating sigmoid (the skew is the selection bias exp_probs_b)");
    if (s->yarn_factor != 0.0f && (!(s->yarn_factor >= 1.0f) || !isfinite(s->yarn_factor) || s->yarn_orig_ctx < 1))
        return moe_err_set(err, "--yarn needs a factor >= 1 and --yarn-orig-ctx >= 1");
    if (s->yarn_factor > 0 && !s->ctx && (double)s->yarn_orig_ctx * s->yarn_factor > (double)(1 << 30))
        return moe_err_set(err, "--yarn-orig-ctx x --yarn is more than 2^30 tokens; give --ctx");
    const mk_ftype *ft = mk_ftype_find(s->type ? s->type : "f32", err);
    if (!ft) return MOE_ERR;
    if (moe_dtype_info_get(ft->main)->block_elems > 1 && s->dim % 32)
        return moe_err_set(err, "--dim %d must be a multiple of 32 for %s", s->dim, ft->name);
    return MOE_OK;
}

/* ---- type rules ------------------------------------------------------------ */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !memcmp(s + n - m, suffix, m);
}

/* llama.cpp's general.file_type numbers (enum llama_ftype).  The uniform
 * K-quant types borrow the number of the "_S" file type, the closest one. */
static const mk_ftype ftypes[] = {
    {"f32", MOE_DT_F32, 0, false},        {"f16", MOE_DT_F16, 1, false},
    {"bf16", MOE_DT_BF16, 32, false},     {"q8_0", MOE_DT_Q8_0, 7, true},
    {"q4_0", MOE_DT_Q4_0, 2, true},       {"q4_1", MOE_DT_Q4_1, 3, true},
    {"q5_0", MOE_DT_Q5_0, 8, true},       {"q5_1", MOE_DT_Q5_1, 9, true},
    {"q2_k", MOE_DT_Q2_K, 10, true},      {"q3_k_m", MOE_DT_Q3_K, 12, true},
    {"q4_k_m", MOE_DT_Q4_K, 15, true},    {"q5_k_m", MOE_DT_Q5_K, 17, true},
    {"q6_k", MOE_DT_Q6_K, 18, true},      {"iq4_nl", MOE_DT_IQ4_NL, 25, true},
    {"iq4_xs", MOE_DT_IQ4_XS, 30, true},  {"q3_k", MOE_DT_Q3_K, 11, false},
    {"q4_k", MOE_DT_Q4_K, 14, false},     {"q5_k", MOE_DT_Q5_K, 16, false},
};

const char *mk_ftype_names(void)
{
    return "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_m, q4_k_m, q5_k_m, q6_k, iq4_nl, iq4_xs "
           "(llama-quantize mixes); q3_k, q4_k, q5_k (that type for every matrix)";
}

const mk_ftype *mk_ftype_find(const char *name, moe_err *err)
{
    for (size_t i = 0; i < sizeof ftypes / sizeof ftypes[0]; i++)
        if (!strcasecmp(name, ftypes[i].name)) return &ftypes[i];
    moe_err_set(err, "unknown weight type '%s' (known: %s)", name, mk_ftype_names());
    return NULL;
}

/* llama-quantize gives more bits to the first and last eighth of the
 * layers and every third one in between. */
static bool use_more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static bool fits(uint32_t type, uint64_t row)
{
    return row % moe_dtype_info_get(type)->block_elems == 0;
}

uint32_t mk_tensor_type(const char *name, uint32_t n_dims, const uint64_t *ne, const mk_ftype *ft, int n_layer,
                        bool has_output)
{
    if (n_dims < 2 || ends_with(name, "_norm.weight") || ends_with(name, "ffn_gate_inp.weight")) return MOE_DT_F32;
    const moe_dtype m = ft->main;
    uint32_t t = m;
    if (ft->mix) {
        const int i = moe_gguf_layer_of(name), n = n_layer;
        if (!strcmp(name, "output.weight") || (!has_output && !strcmp(name, "token_embd.weight"))) {
            t = !fits(m, ne[0]) || m == MOE_DT_Q8_0 ? MOE_DT_Q8_0 : MOE_DT_Q6_K;
        } else if (strstr(name, "ffn_down")) {
            if ((m == MOE_DT_Q4_K || m == MOE_DT_Q5_K) && i >= 0 && use_more_bits(i, n)) t = MOE_DT_Q6_K;
            else if (m == MOE_DT_Q3_K) t = i >= 0 && i < n / 16 ? MOE_DT_Q5_K : MOE_DT_Q4_K;
            else if (m == MOE_DT_Q2_K) t = MOE_DT_Q3_K;
            else if ((m == MOE_DT_IQ4_XS || m == MOE_DT_IQ4_NL) && i >= 0 && i < n / 8) t = MOE_DT_Q5_K;
        } else if (ends_with(name, "attn_output.weight")) {
            if (m == MOE_DT_Q3_K) t = MOE_DT_Q4_K;
            else if (m == MOE_DT_Q2_K) t = MOE_DT_Q3_K;
        }
    }
    if (!fits(t, ne[0])) {
        switch (t) {
        case MOE_DT_Q4_K: t = MOE_DT_Q5_0; break;
        case MOE_DT_Q5_K: t = MOE_DT_Q5_1; break;
        case MOE_DT_Q6_K: t = MOE_DT_Q8_0; break;
        case MOE_DT_Q2_K: case MOE_DT_Q3_K: t = MOE_DT_Q4_0; break;
        case MOE_DT_IQ4_XS: t = MOE_DT_IQ4_NL; break;
        default: break;
        }
        if (!fits(t, ne[0])) t = MOE_DT_F16;
    }
    return t;
}

/* ---- random data ------------------------------------------------------------- */

static inline uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t hash_str(const char *s, uint64_t h)
{
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

typedef enum { INIT_MATRIX, INIT_EMBED, INIT_NORM, INIT_BIAS } init_kind;

static init_kind init_of(const char *name)
{
    if (ends_with(name, "token_embd.weight") || ends_with(name, "nextn.embed_tokens.weight")) return INIT_EMBED;
    if (ends_with(name, "exp_probs_b.bias")) return INIT_BIAS;
    if (strstr(name, "norm")) return INIT_NORM;
    return INIT_MATRIX;
}

/* Fills x[0..n) with the values of chunk `chunk` of the tensor. */
/* Router skew: the bias of the expert of rank k in a random order of the
 * layer's experts (a function of seed and layer) gains S / (1 + k), a
 * Zipf-like preference that makes a few experts hot.  The bias tensor is
 * one chunk (at most 2^16 experts). */
static void add_skew(uint64_t seed, const char *name, float skew, float *x, uint32_t n)
{
    uint32_t *order = moe_xmalloc((size_t)n * sizeof *order);
    for (uint32_t i = 0; i < n; i++) order[i] = i;
    uint64_t st = seed ^ (0x5851f42d4c957f2dull * (uint64_t)(moe_gguf_layer_of(name) + 1));
    for (uint32_t i = n; i > 1; i--) {
        const uint32_t j = (uint32_t)(splitmix64(&st) % i), t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    for (uint32_t k = 0; k < n; k++) x[order[k]] += skew / (float)(1 + k);
    free(order);
}

static void gen_chunk(uint64_t seed, const char *name, uint64_t fan_in, uint64_t chunk, float *x, uint32_t n,
                      float skew)
{
    uint64_t st = hash_str(name, 1469598103934665603ull ^ seed) ^ (chunk * 0xd1b54a32d192ed03ull);
    splitmix64(&st);
    const float unit = 1.7320508f / 65536.0f; /* sqrt(3) · 2^-16: unit variance for a sum of 4 */
    float mul = unit, add = 0.0f;
    switch (init_of(name)) {
    case INIT_MATRIX: mul = unit / sqrtf((float)fan_in); break;
    case INIT_EMBED: break;
    case INIT_NORM: mul = 0.1f * unit; add = 1.0f; break;
    case INIT_BIAS: mul = 0.1f * unit; break;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint64_t r = splitmix64(&st);
        int32_t s = (int32_t)(r & 0xffff) + (int32_t)((r >> 16) & 0xffff) + (int32_t)((r >> 32) & 0xffff) +
                    (int32_t)(r >> 48) - 2 * 65535;
        x[i] = add + mul * (float)s;
    }
    if (skew > 0.0f && init_of(name) == INIT_BIAS && chunk == 0) add_skew(seed, name, skew, x, n);
}

/* ---- parallel fill ------------------------------------------------------------- */

/* One unit of work: a chunk of one output tensor. */
typedef struct job {
    int tensor;
    uint64_t chunk;
} job;

typedef struct fill_ctx {
    moe_gguf_writer *w;
    const char **names;
    uint32_t *types;
    uint64_t *n_elems;
    uint64_t *fan_in;
    const moe_gguf_tensor **src; /* recode: source tensors; NULL for random */
    uint64_t seed;
    float skew; /* router skew (random models only) */
    job *jobs;
    size_t n_jobs;
    atomic_size_t next;
    atomic_int failed;
    moe_err err; /* first failure */
} fill_ctx;

static void *fill_worker(void *arg)
{
    fill_ctx *c = arg;
    float *buf = moe_xmalloc(CHUNK * sizeof(float));
    uint8_t *out = moe_xmalloc(CHUNK * sizeof(float));
    while (!atomic_load(&c->failed)) {
        size_t j = atomic_fetch_add(&c->next, 1);
        if (j >= c->n_jobs) break;
        int t = c->jobs[j].tensor;
        uint64_t first = c->jobs[j].chunk * CHUNK;
        uint64_t n = c->n_elems[t] - first < CHUNK ? c->n_elems[t] - first : CHUNK;
        if (c->src) {
            const moe_gguf_tensor *s = c->src[t];
            const moe_dtype_info *si = moe_dtype_info_get(s->type);
            const uint8_t *p = (const uint8_t *)s->data + first / si->block_elems * si->block_bytes;
            moe_row_to_f32(s->type, p, buf, (int64_t)n);
            /* the quantizers' float-to-int steps need finite input */
            for (uint64_t i = 0; i < n; i++) {
                if (!isfinite(buf[i])) {
                    moe_err e;
                    moe_err_set(&e, "tensor '%s' holds a non-finite value (element %llu); not re-encoded", s->name,
                                (unsigned long long)(first + i));
                    if (atomic_exchange(&c->failed, 1) == 0) c->err = e;
                    break;
                }
            }
            if (atomic_load(&c->failed)) break;
        } else {
            gen_chunk(c->seed, c->names[t], c->fan_in[t], c->jobs[j].chunk, buf, (uint32_t)n, c->skew);
        }
        const moe_dtype_info *di = moe_dtype_info_get(c->types[t]);
        moe_quant_row(c->types[t], buf, out, (int64_t)n);
        moe_err e;
        if (moe_gguf_writer_write(c->w, t, first / di->block_elems * di->block_bytes, out,
                                  n / di->block_elems * di->block_bytes, &e)) {
            if (atomic_exchange(&c->failed, 1) == 0) c->err = e;
        }
    }
    free(out);
    free(buf);
    return NULL;
}

static void fill_all(fill_ctx *c, int n_tensors, int threads)
{
    size_t n_jobs = 0;
    for (int t = 0; t < n_tensors; t++) n_jobs += (size_t)((c->n_elems[t] + CHUNK - 1) / CHUNK);
    c->jobs = moe_xmalloc(n_jobs * sizeof *c->jobs);
    c->n_jobs = 0;
    for (int t = 0; t < n_tensors; t++)
        for (uint64_t k = 0; k * CHUNK < c->n_elems[t]; k++) c->jobs[c->n_jobs++] = (job){t, k};
    atomic_init(&c->next, 0);
    atomic_init(&c->failed, 0);
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    pthread_t tid[64];
    int started = 0;
    for (int i = 1; i < threads; i++)
        if (pthread_create(&tid[started], NULL, fill_worker, c) == 0) started++;
    fill_worker(c);
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
    free(c->jobs);
}

/* ---- model ----------------------------------------------------------------------- */

static int add(moe_gguf_writer *w, const mk_spec *s, moe_err *err, const char *name, uint32_t n_dims, uint64_t a,
               uint64_t b, uint64_t c)
{
    uint64_t ne[3] = {a, b, c};
    const mk_ftype *ft = mk_ftype_find(s->type, err);
    if (!ft) return MOE_ERR;
    const uint32_t type = mk_tensor_type(name, n_dims, ne, ft, s->n_layer + s->mtp, true);
    return moe_gguf_writer_add_tensor(w, name, type, n_dims, ne, err) < 0 ? MOE_ERR : MOE_OK;
}

static int add_block(moe_gguf_writer *w, const mk_spec *s, int il, bool dense, moe_err *err)
{
    char n[128];
    const uint64_t H = (uint64_t)s->n_head, qk = (uint64_t)(s->qk_nope + s->qk_rope);
#define T(suffix, nd, a, b, c)                                                     \
    do {                                                                           \
        snprintf(n, sizeof n, "blk.%d.%s", il, suffix);                            \
        if (add(w, s, err, n, nd, (uint64_t)(a), (uint64_t)(b), (uint64_t)(c))) return MOE_ERR; \
    } while (0)
    T("attn_norm.weight", 1, s->dim, 1, 1);
    if (s->q_lora > 0) {
        T("attn_q_a_norm.weight", 1, s->q_lora, 1, 1);
        T("attn_q_a.weight", 2, s->dim, s->q_lora, 1);
        T("attn_q_b.weight", 2, s->q_lora, H * qk, 1);
    } else {
        T("attn_q.weight", 2, s->dim, H * qk, 1);
    }
    T("attn_kv_a_norm.weight", 1, s->kv_lora, 1, 1);
    T("attn_kv_a_mqa.weight", 2, s->dim, s->kv_lora + s->qk_rope, 1);
    if (s->fused_mla) {
        T("attn_kv_b.weight", 2, s->kv_lora, H * (uint64_t)(s->qk_nope + s->v_dim), 1);
    } else {
        T("attn_k_b.weight", 3, s->qk_nope, s->kv_lora, H);
        T("attn_v_b.weight", 3, s->kv_lora, s->v_dim, H);
    }
    T("attn_output.weight", 2, H * (uint64_t)s->v_dim, s->dim, 1);
    T("ffn_norm.weight", 1, s->dim, 1, 1);
    if (dense) {
        T("ffn_gate.weight", 2, s->dim, s->dense_ff, 1);
        T("ffn_down.weight", 2, s->dense_ff, s->dim, 1);
        T("ffn_up.weight", 2, s->dim, s->dense_ff, 1);
    } else {
        T("ffn_gate_inp.weight", 2, s->dim, s->n_expert, 1);
        if (s->gating == 2) T("exp_probs_b.bias", 1, s->n_expert, 1, 1);
        T("ffn_gate_exps.weight", 3, s->dim, s->expert_ff, s->n_expert);
        T("ffn_down_exps.weight", 3, s->expert_ff, s->dim, s->n_expert);
        T("ffn_up_exps.weight", 3, s->dim, s->expert_ff, s->n_expert);
        if (s->n_shared > 0) {
            const uint64_t sh = (uint64_t)s->expert_ff * (uint64_t)s->n_shared;
            T("ffn_gate_shexp.weight", 2, s->dim, sh, 1);
            T("ffn_down_shexp.weight", 2, sh, s->dim, 1);
            T("ffn_up_shexp.weight", 2, s->dim, sh, 1);
        }
    }
    return MOE_OK;
}

/* MTP block extras, named as llama.cpp names the NextN tensors. */
static int add_nextn(moe_gguf_writer *w, const mk_spec *s, int il, moe_err *err)
{
    char n[128];
    T("nextn.eh_proj.weight", 2, 2 * s->dim, s->dim, 1);
    T("nextn.embed_tokens.weight", 2, s->dim, s->vocab, 1);
    T("nextn.enorm.weight", 1, s->dim, 1, 1);
    T("nextn.hnorm.weight", 1, s->dim, 1, 1);
    T("nextn.shared_head_head.weight", 2, s->dim, s->vocab, 1);
    T("nextn.shared_head_norm.weight", 1, s->dim, 1, 1);
#undef T
    return MOE_OK;
}

static void put_tokenizer_synth(moe_gguf_writer *w, int n_vocab, const char *pre)
{
    mk_vocab v;
    mk_vocab_build(&v, n_vocab);
    moe_gguf_writer_kv_str(w, "tokenizer.ggml.model", "gpt2");
    moe_gguf_writer_kv_str(w, "tokenizer.ggml.pre", pre ? pre : "deepseek-v3");
    moe_gguf_writer_kv_arr_str(w, "tokenizer.ggml.tokens", (uint64_t)v.n_tokens, (const char *const *)v.tokens, NULL);
    moe_gguf_writer_kv_arr_i32(w, "tokenizer.ggml.token_type", (uint64_t)v.n_tokens, v.types);
    moe_gguf_writer_kv_arr_str(w, "tokenizer.ggml.merges", (uint64_t)v.n_merges, (const char *const *)v.merges, NULL);
    moe_gguf_writer_kv_u32(w, "tokenizer.ggml.bos_token_id", 0);
    moe_gguf_writer_kv_u32(w, "tokenizer.ggml.eos_token_id", 1);
    moe_gguf_writer_kv_u32(w, "tokenizer.ggml.padding_token_id", 2);
    moe_gguf_writer_kv_bool(w, "tokenizer.ggml.add_bos_token", true);
    moe_gguf_writer_kv_bool(w, "tokenizer.ggml.add_eos_token", false);
    mk_vocab_free(&v);
}

static int default_threads(int t)
{
    if (t > 0) return t;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Opens the output, fills every tensor (random, or decoded from src[i]) on
 * `threads` threads, and commits. */
static int fill_and_commit(moe_gguf_writer *w, const char *path, uint64_t seed, float skew,
                           const moe_gguf_tensor **src, int threads, moe_err *err)
{
    if (moe_gguf_writer_open(w, path, err)) return MOE_ERR;
    const int n = moe_gguf_writer_n_tensors(w);
    fill_ctx c = {.w = w, .src = src, .seed = seed, .skew = skew};
    c.names = moe_xcalloc((size_t)n, sizeof *c.names);
    c.types = moe_xcalloc((size_t)n, sizeof *c.types);
    c.n_elems = moe_xcalloc((size_t)n, sizeof *c.n_elems);
    c.fan_in = moe_xcalloc((size_t)n, sizeof *c.fan_in);
    for (int i = 0; i < n; i++) {
        const uint64_t *ne = moe_gguf_writer_tensor_ne(w, i);
        c.names[i] = moe_gguf_writer_tensor_name(w, i);
        c.types[i] = moe_gguf_writer_tensor_type(w, i);
        c.n_elems[i] = ne[0] * ne[1] * ne[2] * ne[3]; /* checked by add_tensor */
        c.fan_in[i] = ne[0];
    }
    fill_all(&c, n, threads);
    int failed = atomic_load(&c.failed);
    if (failed) *err = c.err;
    free(c.names);
    free(c.types);
    free(c.n_elems);
    free(c.fan_in);
    return failed ? MOE_ERR : moe_gguf_writer_commit(w, err);
}

int mk_write_model(const mk_spec *s0, const char *path, moe_err *err)
{
    mk_spec s = *s0;
    if (mk_spec_validate(&s, err)) return MOE_ERR;
    moe_gguf *vf = NULL;
    int rc = MOE_ERR;
    moe_gguf_writer *w = moe_gguf_writer_new();
    if (s.vocab_from) {
        if (moe_gguf_open(&vf, s.vocab_from, err)) goto out;
        moe_gguf_arr toks;
        if (moe_gguf_get_arr(vf, "tokenizer.ggml.tokens", &toks, err)) goto out;
        if (toks.count < 1 || toks.count > (1u << 24)) {
            moe_err_set(err, "%s: %llu tokens is not a usable vocabulary", s.vocab_from, (unsigned long long)toks.count);
            goto out;
        }
        s.vocab = (int)toks.count;
    }
    const char *A = "deepseek2.";
    char key[128], name[128];
#define K(k) (snprintf(key, sizeof key, "%s%s", A, k), key)
    const bool split = !s.fused_mla;
    const int ctx = s.ctx ? s.ctx : s.yarn_factor > 0 ? (int)(s.yarn_orig_ctx * s.yarn_factor) : 4096;
    snprintf(name, sizeof name, "deepseek2-random-L%d-d%d-E%d", s.n_layer, s.dim, s.n_expert);
    moe_gguf_writer_kv_str(w, "general.architecture", "deepseek2");
    moe_gguf_writer_kv_str(w, "general.type", "model");
    moe_gguf_writer_kv_str(w, "general.name", name);
    moe_gguf_writer_kv_u32(w, K("block_count"), (uint32_t)(s.n_layer + s.mtp));
    moe_gguf_writer_kv_u32(w, K("context_length"), (uint32_t)ctx);
    moe_gguf_writer_kv_u32(w, K("embedding_length"), (uint32_t)s.dim);
    moe_gguf_writer_kv_u32(w, K("feed_forward_length"), (uint32_t)s.dense_ff);
    moe_gguf_writer_kv_u32(w, K("attention.head_count"), (uint32_t)s.n_head);
    moe_gguf_writer_kv_u32(w, K("attention.head_count_kv"), split ? 1u : (uint32_t)s.n_head);
    if (s.yarn_factor > 0) {
        moe_gguf_writer_kv_str(w, K("rope.scaling.type"), "yarn");
        moe_gguf_writer_kv_f32(w, K("rope.scaling.factor"), s.yarn_factor);
        moe_gguf_writer_kv_u32(w, K("rope.scaling.original_context_length"), (uint32_t)s.yarn_orig_ctx);
        moe_gguf_writer_kv_f32(w, K("rope.scaling.yarn_beta_fast"), 32.0f);
        moe_gguf_writer_kv_f32(w, K("rope.scaling.yarn_beta_slow"), 1.0f);
    }
    moe_gguf_writer_kv_f32(w, K("rope.freq_base"), 10000.0f);
    moe_gguf_writer_kv_f32(w, K("attention.layer_norm_rms_epsilon"), 1e-6f);
    moe_gguf_writer_kv_u32(w, K("expert_count"), (uint32_t)s.n_expert);
    moe_gguf_writer_kv_u32(w, K("expert_used_count"), (uint32_t)s.n_expert_used);
    if (s.n_group > 0) {
        moe_gguf_writer_kv_u32(w, K("expert_group_count"), (uint32_t)s.n_group);
        moe_gguf_writer_kv_u32(w, K("expert_group_used_count"), (uint32_t)s.n_group_used);
    }
    moe_gguf_writer_kv_u32(w, K("expert_gating_func"), (uint32_t)s.gating);
    moe_gguf_writer_kv_u32(w, K("leading_dense_block_count"), (uint32_t)s.n_dense);
    moe_gguf_writer_kv_u32(w, K("vocab_size"), (uint32_t)s.vocab);
    moe_gguf_writer_kv_u32(w, K("attention.q_lora_rank"), (uint32_t)s.q_lora);
    moe_gguf_writer_kv_u32(w, K("attention.kv_lora_rank"), (uint32_t)s.kv_lora);
    if (split) {
        moe_gguf_writer_kv_u32(w, K("attention.key_length"), (uint32_t)(s.kv_lora + s.qk_rope));
        moe_gguf_writer_kv_u32(w, K("attention.value_length"), (uint32_t)s.kv_lora);
        moe_gguf_writer_kv_u32(w, K("attention.key_length_mla"), (uint32_t)(s.qk_nope + s.qk_rope));
        moe_gguf_writer_kv_u32(w, K("attention.value_length_mla"), (uint32_t)s.v_dim);
    } else {
        moe_gguf_writer_kv_u32(w, K("attention.key_length"), (uint32_t)(s.qk_nope + s.qk_rope));
        moe_gguf_writer_kv_u32(w, K("attention.value_length"), (uint32_t)s.v_dim);
    }
    moe_gguf_writer_kv_u32(w, K("expert_feed_forward_length"), (uint32_t)s.expert_ff);
    moe_gguf_writer_kv_u32(w, K("expert_shared_count"), (uint32_t)s.n_shared);
    moe_gguf_writer_kv_f32(w, K("expert_weights_scale"), s.scale);
    moe_gguf_writer_kv_bool(w, K("expert_weights_norm"), s.norm_weights);
    moe_gguf_writer_kv_u32(w, K("rope.dimension_count"), (uint32_t)s.qk_rope);
    if (s.mtp > 0) moe_gguf_writer_kv_u32(w, K("nextn_predict_layers"), (uint32_t)s.mtp);
    if (s.yarn_factor > 0) moe_gguf_writer_kv_f32(w, K("rope.scaling.yarn_log_multiplier"), (float)(0.1 * s.mscale_all_dim));
#undef K
    moe_gguf_writer_kv_u32(w, "general.file_type", mk_ftype_find(s.type, err)->file_type); /* validated */
    moe_gguf_writer_kv_u32(w, "general.quantization_version", 2);
    if (vf) {
        for (int i = 0; i < moe_gguf_n_kv(vf); i++)
            if (!strncmp(moe_gguf_kv_key(vf, i), "tokenizer.", 10)) moe_gguf_writer_kv_copy(w, vf, i);
    } else {
        put_tokenizer_synth(w, s.vocab, s.pre);
    }

    if (add(w, &s, err, "token_embd.weight", 2, (uint64_t)s.dim, (uint64_t)s.vocab, 1) ||
        add(w, &s, err, "output_norm.weight", 1, (uint64_t)s.dim, 1, 1) ||
        add(w, &s, err, "output.weight", 2, (uint64_t)s.dim, (uint64_t)s.vocab, 1))
        goto out;
    for (int il = 0; il < s.n_layer + s.mtp; il++) {
        if (add_block(w, &s, il, il < s.n_dense, err)) goto out;
        if (il >= s.n_layer && add_nextn(w, &s, il, err)) goto out;
    }
    if (s.sparse) /* commit sizes the file: what was never written stays a hole */
        rc = moe_gguf_writer_open(w, path, err) ? MOE_ERR : moe_gguf_writer_commit(w, err);
    else
        rc = fill_and_commit(w, path, s.seed, s.router_skew, NULL, default_threads(s.threads), err);
out:
    moe_gguf_writer_free(w);
    moe_gguf_close(vf);
    return rc;
}

/* llama-quantize's tensor order: tensors without a layer first, then by
 * layer, each group by name (bytewise). */
static int tensor_order(const void *a, const void *b)
{
    const moe_gguf_tensor *x = *(const moe_gguf_tensor *const *)a, *y = *(const moe_gguf_tensor *const *)b;
    const int lx = moe_gguf_layer_of(x->name), ly = moe_gguf_layer_of(y->name);
    if (lx != ly) return lx < ly ? -1 : 1;
    return strcmp(x->name, y->name);
}

int mk_recode(const char *in_path, const char *type, const char *out_path, int threads, moe_err *err)
{
    const mk_ftype *ft = mk_ftype_find(type, err);
    if (!ft) return MOE_ERR;
    moe_gguf *g;
    if (moe_gguf_open(&g, in_path, err)) return MOE_ERR;
    int rc = MOE_ERR;
    moe_gguf_writer *w = moe_gguf_writer_new();
    const int n = moe_gguf_n_tensors(g);
    const moe_gguf_tensor **src = moe_xcalloc((size_t)(n ? n : 1), sizeof *src);
    int64_t n_layer = 0;
    bool has_output = false;
    if (moe_gguf_writer_set_alignment(w, moe_gguf_alignment(g), err)) goto out;
    for (int i = 0; i < moe_gguf_n_kv(g); i++) {
        const char *k = moe_gguf_kv_key(g, i);
        if (!strcmp(k, "general.alignment")) continue; /* written by set_alignment if needed */
        if (!strcmp(k, "general.file_type") || !strcmp(k, "general.quantization_version")) continue; /* last */
        if (ends_with(k, ".block_count") && moe_gguf_kv_scalar_i64(g, i, &n_layer) == 0 &&
            (n_layer < 0 || n_layer > (1 << 20))) {
            moe_err_set(err, "%s: %s = %lld is out of range", in_path, k, (long long)n_layer);
            goto out;
        }
        moe_gguf_writer_kv_copy(w, g, i);
    }
    moe_gguf_writer_kv_u32(w, "general.quantization_version", 2);
    moe_gguf_writer_kv_u32(w, "general.file_type", ft->file_type);
    for (int i = 0; i < n; i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        char buf[24];
        if (t->type != MOE_DT_F32 && t->type != MOE_DT_F16 && t->type != MOE_DT_BF16 && t->type != MOE_DT_Q8_0) {
            moe_err_set(err, "%s: tensor '%s' is %s; only f32, f16, bf16 and q8_0 can be re-encoded", in_path, t->name,
                        moe_dtype_name(t->type, buf, sizeof buf));
            goto out;
        }
        if (!strcmp(t->name, "output.weight")) has_output = true;
        src[i] = t;
    }
    qsort(src, (size_t)n, sizeof *src, tensor_order);
    if (n_layer <= 0 && n > 0) n_layer = moe_gguf_layer_of(src[n - 1]->name) + 1; /* no block_count key */
    for (int i = 0; i < n; i++) {
        const moe_gguf_tensor *t = src[i];
        const uint32_t tt = mk_tensor_type(t->name, t->n_dims, t->ne, ft, (int)n_layer, has_output);
        if (moe_gguf_writer_add_tensor(w, t->name, tt, t->n_dims, t->ne, err) < 0) goto out;
    }
    rc = fill_and_commit(w, out_path, 0, 0.0f, src, default_threads(threads), err);
out:
    free(src);
    moe_gguf_writer_free(w);
    moe_gguf_close(g);
    return rc;
}
