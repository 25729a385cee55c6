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
    float router_skew;  /* S: exp_probs_b += S / (1 + k) for the expert of rank k in a
                         * per-layer random order (hot experts); 0 = none */
    float yarn_factor;  /* 0 = no rope scaling */
    int yarn_orig_ctx;
    double mscale_all_dim;
    int ctx;            /* 0 = derived */
    int mtp;            /* trailing MTP blocks (nextn_predict_layers) */
    bool fused_mla;     /* legacy attn_kv_b instead of attn_k_b/attn_v_b */
    const char *type;   /* a file type name (mk_ftype_find) */
    uint64_t seed;
    const char *vocab_from; /* copy tokenizer.* from this GGUF */
    const char *pre;        /* tokenizer.ggml.pre of the synthetic vocabulary */
    int threads;
    bool sparse;        /* header and tensor table only: the data is a file hole */
} mk_spec;

/* Names: tiny, v2lite-mini, v3-mini (the fixtures' shapes), bench (the
 * decode benchmark's), default (the quick-start model), v3-route (V3's
 * routing, 256 experts in 8 groups, top-8, with tiny dims), v2-lite and v3
 * (the published DeepSeek-V2-Lite and DeepSeek-V3 shapes: meant for
 * --sparse, a full file is 16 GB / 700 GB in q8_0). */
int mk_spec_preset(mk_spec *s, const char *name, moe_err *err);
const char *mk_preset_names(void);
/* Checks a spec for consistency (every flag may come from a user). */
int mk_spec_validate(const mk_spec *s, moe_err *err);

/* A file type, what --type names: the main weight type, llama.cpp's
 * general.file_type, and whether llama-quantize's per-tensor rules of that
 * file type apply (a "mix": q4_k_m, q6_k, q4_0, ...) or every matrix gets
 * the main type (f32, f16, bf16, q3_k, q4_k, q5_k).  Either way a matrix
 * whose rows do not fit the chosen type's block falls back (mk_tensor_type). */
typedef struct mk_ftype {
    const char *name;
    moe_dtype main;
    uint32_t file_type;
    bool mix;
} mk_ftype;

/* The file type called `name` (case-insensitive), or NULL with a message
 * listing the known names. */
const mk_ftype *mk_ftype_find(const char *name, moe_err *err);
const char *mk_ftype_names(void);

/* Writes a random model to path; with s->sparse only the header and the
 * tensor table, the data being a hole of the file's full size (reads give
 * zeros, no disk is used): for tools that read the tensor table only,
 * such as moe-gguf --plan. */
int mk_write_model(const mk_spec *s, const char *path, moe_err *err);
/* Re-encodes every tensor of in_path (f32, f16, bf16 or q8_0) as file type
 * `type`, streaming: memory does not grow with the model.  The layout is
 * llama-quantize's: the source's keys in order with
 * general.quantization_version and general.file_type moved to the end,
 * tensor infos sorted by layer then name, 32-byte aligned data. */
int mk_recode(const char *in_path, const char *type, const char *out_path, int threads, moe_err *err);

/* The storage type of a tensor in a file of type ft whose block_count is
 * n_layer (has_output: the file has output.weight; without it token_embd
 * takes the output's rules, as in llama-quantize):
 * - f32 for tensors with fewer than 2 dimensions, *_norm.weight and the
 *   router (ffn_gate_inp.weight);
 * - otherwise the main type, or for a mix llama-quantize's choice:
 *   output q6_K (q8_0 for q8_0 files or rows that do not fit the main
 *   type), ffn_down* and attn_output by the file type and layer;
 * - then the fallback for rows that are not a multiple of the type's
 *   block: q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0, q2_K/q3_K -> q4_0,
 *   iq4_xs -> iq4_nl, and f16 if even that does not fit. */
uint32_t mk_tensor_type(const char *name, uint32_t n_dims, const uint64_t *ne, const mk_ftype *ft, int n_layer,
                        bool has_output);

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
