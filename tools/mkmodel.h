/*
 * mkmodel.h — random-weight deepseek2 GGUF models (moe-mkmodel) and
 * re-encoding of existing files to another weight type.
 *
 * Metadata keys, tensor names, shapes and types are those llama.cpp uses
 * for the `deepseek2` architecture.  Tensor data is a pure function of
 * (seed, tensor name): two files that share a tensor name and seed share
 * its values, whatever else differs (MTP blocks, thread count).
 */
#ifndef MOE_MKMODEL_H
#define MOE_MKMODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"
#include "dtype.h"
#include "gguf.h"

typedef struct mk_spec {
    int n_layer;        /* trunk blocks (MTP blocks come on top) */
    int n_dense;        /* leading dense blocks */
    int dim;            /* embedding_length */
    int n_head;
    int q_lora;         /* 0 = no q compression (V2-Lite style) */
    int kv_lora;
    int qk_nope, qk_rope, v_dim;
    int n_expert, n_expert_used, n_shared;
    int expert_ff, dense_ff;
    int vocab;
    int gating;         /* 1 softmax (V2), 2 sigmoid + exp_probs_b (V3) */
    int n_group, n_group_used; /* 0 = keys absent */
    bool norm_weights;
    float scale;        /* routed scaling factor */
    float yarn_factor;  /* 0 = no rope scaling */
    int yarn_orig_ctx;
    double mscale_all_dim;
    int ctx;            /* 0 = derived */
    int mtp;            /* trailing MTP blocks (nextn_predict_layers) */
    bool fused_mla;     /* legacy attn_kv_b instead of attn_k_b/attn_v_b */
    moe_dtype type;
    uint64_t seed;
    const char *vocab_from; /* copy tokenizer.* from this GGUF */
    const char *pre;        /* tokenizer.ggml.pre of the synthetic vocabulary */
    int threads;
} mk_spec;

/* Names: tiny, v2lite-mini, v3-mini (the fixtures' shapes), bench (the
 * decode benchmark's), default (the quick-start model). */
int mk_spec_preset(mk_spec *s, const char *name, moe_err *err);
const char *mk_preset_names(void);
/* Checks a spec for consistency (every flag may come from a user). */
int mk_spec_validate(const mk_spec *s, moe_err *err);

/* Writes a random model to path. */
int mk_write_model(const mk_spec *s, const char *path, moe_err *err);
/* Re-encodes every tensor of in_path as `type` (by the same type rules). */
int mk_recode(const char *in_path, moe_dtype type, const char *out_path, int threads, moe_err *err);

/* The storage type of a tensor in a file whose weight type is `wtype`:
 * 1-D tensors (norms, biases) and the router stay f32; in q8_0 files a
 * matrix whose rows are not a multiple of 32 is stored f16. */
uint32_t mk_tensor_type(const char *name, uint32_t n_dims, const uint64_t *ne, moe_dtype wtype);
/* llama.cpp's general.file_type for a weight type. */
uint32_t mk_file_type(moe_dtype wtype);

/* Synthetic byte-level BPE vocabulary: 3 control tokens, 256 byte tokens,
 * merges learned from a built-in text, then unused fillers up to n_vocab. */
typedef struct mk_vocab {
    int n_tokens;
    char **tokens;
    int32_t *types;
    int n_merges;
    char **merges;
} mk_vocab;
void mk_vocab_build(mk_vocab *v, int n_vocab);
void mk_vocab_free(mk_vocab *v);

#endif
