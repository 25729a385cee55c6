/*
 * model.h — a deepseek2 GGUF model bound for inference: hyperparameters from
 * the metadata and views of every trunk weight, pointing into the file
 * mapping (no copies, no repacking).
 *
 * Supported: split (attn_k_b / attn_v_b) and fused (attn_kv_b) MLA, optional
 * q_lora, leading dense layers, MoE layers with shared experts, softmax or
 * sigmoid gating with optional score-correction bias and expert groups,
 * weight types F32, F16, BF16, Q8_0 (norms must be F32).  Of the trailing
 * MTP blocks (nextn_predict_layers) the first is bound when the file has
 * one (moe_model.mtp; a damaged one only disables MTP, with its message in
 * mtp_err); the trunk never touches it.
 *
 * Matrix views are moe_mat: rows × cols, cols contiguous (ggml ne[0]).
 */
#ifndef MOE_WORKER_MODEL_H
#define MOE_WORKER_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"
#include "gate.h"
#include "gguf.h"
#include "kern.h"

typedef struct moe_hparams {
    int n_layer;        /* trunk blocks (block_count − n_mtp) */
    int n_mtp;          /* trailing MTP blocks, never used */
    int n_dense_lead;   /* leading dense-FFN blocks */
    int dim;            /* embedding length */
    int n_head;
    int q_lora;         /* 0 = plain attn_q */
    int kv_lora;        /* latent width c_kv */
    int qk_nope, qk_rope, v_dim;
    int n_expert, n_used, n_shared;
    int expert_ff, dense_ff;
    int vocab;
    moe_gating gating;
    int n_group, n_group_used;
    bool norm_weights;
    float weights_scale;
    float eps;
    float rope_base;
    bool yarn;
    float yarn_factor;
    int yarn_orig_ctx;
    float yarn_log_mul; /* 0.1 · mscale_all_dim */
    bool mla_fused;
    int64_t ctx_train;  /* context_length from the file */
    float attn_scale;   /* softmax scale incl. YaRN mscale² */
} moe_hparams;

typedef struct moe_layer {
    const float *attn_norm;   /* [dim] */
    moe_mat q;                /* n_head·(nope+rope) × dim   (q_lora == 0) */
    moe_mat q_a;              /* q_lora × dim */
    const float *q_a_norm;    /* [q_lora] */
    moe_mat q_b;              /* n_head·(nope+rope) × q_lora */
    moe_mat kv_a;             /* (kv_lora+rope) × dim */
    const float *kv_a_norm;   /* [kv_lora] */
    moe_mat k_b;              /* split: n_head·kv_lora × nope (head h: rows h·kv_lora..) */
    moe_mat v_b;              /* split: n_head·v × kv_lora */
    moe_mat kv_b;             /* fused: n_head·(nope+v) × kv_lora */
    moe_mat o;                /* dim × n_head·v */
    const float *ffn_norm;    /* [dim] */
    bool is_moe;
    /* dense FFN */
    moe_mat gate, up;         /* dense_ff × dim */
    moe_mat down;             /* dim × dense_ff */
    /* MoE FFN */
    moe_mat gate_inp;         /* n_expert × dim */
    const float *exp_probs_b; /* [n_expert] or NULL */
    moe_mat gate_exps, up_exps; /* n_expert·expert_ff × dim (expert e: rows e·ff..) */
    moe_mat down_exps;        /* n_expert·dim × expert_ff */
    moe_mat gate_sh, up_sh;   /* n_shared·ff × dim (absent if n_shared == 0) */
    moe_mat down_sh;          /* dim × n_shared·ff */
} moe_layer;

/* DeepSeek-V3's multi-token prediction block (the first of the file's
 * nextn blocks, block n_layer): from the trunk's last hidden state h_p at
 * position p and the next token t_{p+1},
 *     x = eh_proj · [RMSNorm_enorm(embd(t_{p+1})) ; RMSNorm_hnorm(h_p)]
 * then one transformer block (`layer`, MLA over its own latent cache and
 * MoE), RMSNorm_head_norm, and `head`: logits for t_{p+2} (docs/engine.md
 * "MTP"). */
typedef struct moe_mtp {
    moe_layer layer;
    const float *enorm, *hnorm, *head_norm; /* [dim] */
    moe_mat eh_proj;          /* dim × 2·dim */
    moe_mat embd;             /* vocab × dim: nextn.embed_tokens, else token_embd */
    moe_mat head;             /* vocab × dim: nextn.shared_head_head, else the output matrix */
} moe_mtp;

typedef struct moe_model {
    moe_gguf *gguf;
    moe_hparams hp;
    moe_mat tok_embd;         /* vocab × dim */
    const float *out_norm;    /* [dim] */
    moe_mat output;           /* vocab × dim; token_embd when the file has no output.weight */
    bool output_tied;         /* output is token_embd (tied embeddings, as llama.cpp falls back) */
    moe_layer *layers;        /* [n_layer] */
    moe_mtp *mtp;             /* the first MTP block, or NULL (none, or mtp_err says why not) */
    char mtp_err[MOE_ERR_MSG_MAX];
    uint64_t file_bytes;
} moe_model;

int moe_model_open(moe_model **out, const char *path, moe_err *err);
void moe_model_free(moe_model *m);

/* Block il: a trunk layer (< n_layer), or n_layer: the MTP block's (mtp set). */
const moe_layer *moe_model_layer(const moe_model *m, int il);

/* Gate configuration of layer il (an MoE layer; n_layer: the MTP block's). */
moe_gate_cfg moe_model_gate_cfg(const moe_model *m, int il);

/* Head / expert sub-views. */
moe_mat moe_mat_rows(const moe_mat *m, int64_t r0, int64_t n);
/* [*a, *b): the whole pages (of page bytes) that cover w's bytes, for madvise. */
void moe_mat_page_range(const moe_mat *w, uintptr_t page, uintptr_t *a, uintptr_t *b);

/* Embedding row of token id (< vocab) as float32. */
void moe_model_embed(const moe_model *m, int32_t id, float *out);

/* The routed-expert tensors of layer il as byte ranges of the mapping:
 * fills mats with gate_exps, up_exps, down_exps and returns 3, or returns
 * 0 for a dense layer.  Each tensor holds every expert, expert e being an
 * equal 1/n_expert share (residency accounting, madvise). */
int moe_model_expert_mats(const moe_model *m, int il, const moe_mat *mats[3]);

/* Bytes of weights read per token for a given routed-expert count
 * (dense + attention + lm_head + shared + n_routed experts); for rooflines. */
uint64_t moe_model_bytes_per_token(const moe_model *m);

/* The dot type the routed experts' gate and up of MoE layer il both read
 * on the int8 path (so one quantized row feeds the two), or MOE_DT_F32:
 * float-only weights, or gate and up of different dot types. */
uint32_t moe_model_expert_dot_type(const moe_model *m, int il);

/* Bytes of a token's routed-expert input in MoE layer il as the worker job
 * dispatches it: its dim floats, or with int8 its row of
 * moe_model_expert_dot_type's blocks (when that is not MOE_DT_F32). */
size_t moe_model_expert_act_bytes(const moe_model *m, int il, bool int8);
/* The largest of those rows that is quantized, over the MoE layers (int8);
 * 0 when every layer keeps floats. */
size_t moe_model_expert_qact_bytes_max(const moe_model *m, bool int8);

/* Bytes of one row the worker job dispatches in MoE layer il (worker/xchg):
 * n_used int32 expert ids, then moe_model_expert_act_bytes, padded to 4
 * bytes.  Each (token, expert) output comes back as dim floats. */
size_t moe_model_dispatch_row_bytes(const moe_model *m, int il, bool int8);

#endif
