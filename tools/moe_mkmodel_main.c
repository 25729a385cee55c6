/*
 * moe-mkmodel — write a random-weight deepseek2 GGUF model, or re-encode an
 * existing one to another weight type.
 */
#include <stdio.h>
#include <string.h>

#include "mkmodel.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: moe-mkmodel -o OUT.gguf [--preset NAME] [options]\n"
        "       moe-mkmodel --recode IN.gguf --type T -o OUT.gguf\n"
        "\n"
        "Writes a deepseek2 model with random weights (llama.cpp's keys, tensor names,\n"
        "shapes and types), or re-encodes every weight of IN.gguf as type T.\n"
        "\n"
        "  -o, --output FILE      output path (written as FILE.tmp, then renamed)\n"
        "  --preset NAME          start from a shape: %s (default: default)\n"
        "  --type T               weights (default: the preset's): f32, f16, bf16, q8_0,\n"
        "                         llama-quantize file types q4_k_m, q5_k_m, q3_k_m, q2_k, q6_k,\n"
        "                         iq4_xs, iq4_nl, q4_0, q4_1, q5_0, q5_1 (each tensor's type by\n"
        "                         llama-quantize's rules, fallbacks included), or q3_k, q4_k,\n"
        "                         q5_k (that type for every matrix); see docs/quant.md\n"
        "  --seed S               random seed (default 1); data depends only on (seed, tensor name)\n"
        "  --layers N             trunk blocks            --dense-layers N   leading dense blocks\n"
        "  --dim N                embedding width         --heads N          attention heads\n"
        "  --q-lora N             q compression rank (0 = none, V2-Lite style)\n"
        "  --kv-lora N            latent rank             --qk-nope N / --qk-rope N / --v-dim N\n"
        "  --experts N            routed experts          --experts-used N   top-k\n"
        "  --shared-experts N     shared experts          --expert-ff N / --dense-ff N\n"
        "  --vocab N              vocabulary size (synthetic byte-level BPE)\n"
        "  --vocab-from FILE      copy the tokenizer of another GGUF (sets the vocabulary size)\n"
        "  --pre NAME             tokenizer.ggml.pre of the synthetic vocabulary (deepseek-v3, deepseek-llm)\n"
        "  --gating softmax|sigmoid   sigmoid adds exp_probs_b (V3 style)\n"
        "  --groups N             expert groups (0 = no group keys)  --groups-used N\n"
        "  --norm-weights | --no-norm-weights   normalise the selected expert weights\n"
        "  --scale F              routed scaling factor\n"
        "  --router-skew S        hot experts: exp_probs_b of the expert of rank k in a random\n"
        "                         per-layer order gains S / (1 + k) (sigmoid gating; 0 = none)\n"
        "  --yarn F               YaRN factor (0 = no rope scaling)  --yarn-orig-ctx N\n"
        "  --mscale-all-dim F     YaRN mscale_all_dim (yarn_log_multiplier = 0.1 F)\n"
        "  --ctx N                context_length (default: derived)\n"
        "  --mtp N                trailing MTP blocks (nextn_predict_layers)\n"
        "  --mla split|fused      attn_k_b/attn_v_b (current) or legacy attn_kv_b\n"
        "  --threads N            writer threads (default: all cores)\n"
        "  --sparse               write the header and tensor table only; the tensor data is a\n"
        "                         hole of the file's full size (zeros, no disk used): a file\n"
        "                         for moe-gguf --plan / --summary of shapes too large to write\n"
        "  --recode IN.gguf       re-encode IN.gguf (f32, f16, bf16 or q8_0 tensors) as --type,\n"
        "                         in llama-quantize's file layout (byte for byte its output\n"
        "                         from an f32 file)\n"
        "  -h, --help             this text\n",
        mk_preset_names());
}

int main(int argc, char **argv)
{
    mk_spec s = {.seed = 1};
    moe_err err;
    const char *out = NULL, *recode = NULL, *type = NULL;
    const char *preset = "default";
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[i + 1];
    if (mk_spec_preset(&s, preset, &err)) {
        fprintf(stderr, "moe-mkmodel: %s\n", err.msg);
        return 2;
    }

    static const struct { const char *flag; size_t off; } ints[] = {
#define F(f, m) {f, offsetof(mk_spec, m)}
        F("--layers", n_layer),        F("--dense-layers", n_dense), F("--dim", dim),
        F("--heads", n_head),          F("--q-lora", q_lora),        F("--kv-lora", kv_lora),
        F("--qk-nope", qk_nope),       F("--qk-rope", qk_rope),      F("--v-dim", v_dim),
        F("--experts", n_expert),      F("--experts-used", n_expert_used), F("--shared-experts", n_shared),
        F("--expert-ff", expert_ff),   F("--dense-ff", dense_ff),    F("--vocab", vocab),
        F("--groups", n_group),        F("--groups-used", n_group_used), F("--yarn-orig-ctx", yarn_orig_ctx),
        F("--ctx", ctx),               F("--mtp", mtp),              F("--threads", threads),
    };
    static const struct { const char *flag; size_t off; } floats[] = {
        F("--scale", scale), F("--yarn", yarn_factor), F("--router-skew", router_skew),
#undef F
    };

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--norm-weights")) { s.norm_weights = true; continue; }
        if (!strcmp(a, "--no-norm-weights")) { s.norm_weights = false; continue; }
        if (!strcmp(a, "--sparse")) { s.sparse = true; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "moe-mkmodel: %s needs a value (or is unknown); see --help\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int done = 0;
        for (size_t k = 0; k < sizeof ints / sizeof ints[0] && !done; k++) {
            if (strcmp(a, ints[k].flag)) continue;
            int64_t x;
            if (moe_parse_i64(v, 0, 1 << 30, &x, &err)) {
                fprintf(stderr, "moe-mkmodel: %s: %s\n", a, err.msg);
                return 2;
            }
            *(int *)((char *)&s + ints[k].off) = (int)x;
            done = 1;
        }
        for (size_t k = 0; k < sizeof floats / sizeof floats[0] && !done; k++) {
            if (strcmp(a, floats[k].flag)) continue;
            double x;
            if (moe_parse_f64(v, 0.0, 1e6, &x, &err)) {
                fprintf(stderr, "moe-mkmodel: %s: %s\n", a, err.msg);
                return 2;
            }
            *(float *)((char *)&s + floats[k].off) = (float)x;
            done = 1;
        }
        if (done) continue;
        if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = v;
        else if (!strcmp(a, "--preset")) { /* applied first */ }
        else if (!strcmp(a, "--type")) type = v;
        else if (!strcmp(a, "--recode")) recode = v;
        else if (!strcmp(a, "--vocab-from")) s.vocab_from = v;
        else if (!strcmp(a, "--pre")) s.pre = v;
        else if (!strcmp(a, "--mscale-all-dim")) {
            if (moe_parse_f64(v, 0.0, 1e3, &s.mscale_all_dim, &err)) {
                fprintf(stderr, "moe-mkmodel: --mscale-all-dim: %s\n", err.msg);
                return 2;
            }
        }
        else if (!strcmp(a, "--seed")) {
            int64_t x;
            if (moe_parse_i64(v, 0, INT64_MAX, &x, &err)) {
                fprintf(stderr, "moe-mkmodel: --seed: %s\n", err.msg);
                return 2;
            }
            s.seed = (uint64_t)x;
        } else if (!strcmp(a, "--gating")) {
            if (!strcmp(v, "softmax")) s.gating = 1;
            else if (!strcmp(v, "sigmoid")) s.gating = 2;
            else {
                fprintf(stderr, "moe-mkmodel: --gating must be softmax or sigmoid, not '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--mla")) {
            if (!strcmp(v, "split")) s.fused_mla = false;
            else if (!strcmp(v, "fused")) s.fused_mla = true;
            else {
                fprintf(stderr, "moe-mkmodel: --mla must be split or fused, not '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "moe-mkmodel: unknown option '%s'; see --help\n", a);
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "moe-mkmodel: no output file (-o FILE); see --help\n");
        return 2;
    }
    if (type) {
        if (!mk_ftype_find(type, &err)) {
            fprintf(stderr, "moe-mkmodel: %s\n", err.msg);
            return 2;
        }
        s.type = type;
    }
    double t0 = moe_now();
    if (recode) {
        if (!type) {
            fprintf(stderr, "moe-mkmodel: --recode needs --type\n");
            return 2;
        }
        if (mk_recode(recode, type, out, s.threads, &err)) {
            fprintf(stderr, "moe-mkmodel: %s\n", err.msg);
            return 1;
        }
    } else if (mk_write_model(&s, out, &err)) {
        fprintf(stderr, "moe-mkmodel: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "moe-mkmodel: wrote %s in %.2f s\n", out, moe_now() - t0);
    return 0;
}
