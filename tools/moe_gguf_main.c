/*
 * moe-gguf — print a GGUF file's metadata and tensor table, or the reason
 * it is not a valid file (exit status 1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "gguf.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moe-gguf [--full | --summary [--ranks N]] FILE.gguf\n"
            "Prints the metadata keys and the tensor table of a GGUF file.\n"
            "Exits 1 with the validation error if the file is not valid.\n"
            "  --full      print whole strings and arrays (default: first items)\n"
            "  --summary   print only the model's shape, the tensors and bytes per type,\n"
            "              and the bytes a rank reads per decoded token:\n"
            "                D + X * k / E / N\n"
            "              D: every tensor of the trunk layers that is not a routed expert\n"
            "              (attention, dense FFN, shared experts, router, norms, output),\n"
            "              token_embd counted as one row; X: the routed expert tensors\n"
            "              (*_exps) of the trunk layers; k/E: expert_used_count /\n"
            "              expert_count (uniform routing); N: --ranks.  MTP blocks\n"
            "              (nextn_predict_layers) are left out.  That is what the home\n"
            "              rank of a sequence reads per decode step at batch 1.\n"
            "  --ranks N   ranks the experts are spread over (default 1)\n"
            "  --help   this text\n");
}

static void put_escaped(const char *s, uint64_t len, uint64_t max)
{
    putchar('"');
    for (uint64_t i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (len > max) printf("... (%llu bytes)", (unsigned long long)len);
}

static void put_scalar(moe_gguf_vtype t, const unsigned char *p)
{
    switch (t) {
    case MOE_GGUF_U8: printf("%u", p[0]); break;
    case MOE_GGUF_I8: printf("%d", (int8_t)p[0]); break;
    case MOE_GGUF_BOOL: fputs(p[0] ? "true" : "false", stdout); break;
    case MOE_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); printf("%u", v); break; }
    case MOE_GGUF_I16: { int16_t v; memcpy(&v, p, 2); printf("%d", v); break; }
    case MOE_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); printf("%u", v); break; }
    case MOE_GGUF_I32: { int32_t v; memcpy(&v, p, 4); printf("%d", v); break; }
    case MOE_GGUF_U64: { uint64_t v; memcpy(&v, p, 8); printf("%llu", (unsigned long long)v); break; }
    case MOE_GGUF_I64: { int64_t v; memcpy(&v, p, 8); printf("%lld", (long long)v); break; }
    case MOE_GGUF_F32: { float v; memcpy(&v, p, 4); printf("%.9g", v); break; }
    case MOE_GGUF_F64: { double v; memcpy(&v, p, 8); printf("%.17g", v); break; }
    default: fputs("?", stdout);
    }
}

/* A short description: the architecture's shape keys and the split of the
 * bytes into routed experts (sharded over ranks) and everything else
 * (replicated on every rank). */
static void print_summary(const moe_gguf *g, const char *path, int ranks)
{
    static const char *const keys[] = {
        "general.name", "general.architecture", "deepseek2.block_count", "deepseek2.leading_dense_block_count",
        "deepseek2.nextn_predict_layers", "deepseek2.embedding_length", "deepseek2.attention.head_count",
        "deepseek2.attention.q_lora_rank", "deepseek2.attention.kv_lora_rank", "deepseek2.rope.dimension_count",
        "deepseek2.expert_count", "deepseek2.expert_used_count", "deepseek2.expert_shared_count",
        "deepseek2.expert_feed_forward_length", "deepseek2.expert_gating_func", "deepseek2.vocab_size",
        "deepseek2.context_length", "tokenizer.ggml.pre",
    };
    printf("%s\n", path);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int k = moe_gguf_find_kv(g, keys[i]);
        if (k < 0) continue;
        const char *short_key = strchr(keys[i], '.') + 1;
        printf("  %-36s ", short_key);
        int64_t v;
        uint64_t len;
        if (moe_gguf_kv_type(g, k) == MOE_GGUF_STRING) {
            const char *s = moe_gguf_kv_str(g, k, &len);
            printf("%.*s\n", (int)(len > 80 ? 80 : len), s);
        } else if (moe_gguf_kv_scalar_i64(g, k, &v) == 0) {
            printf("%lld\n", (long long)v);
        } else {
            printf("(%s)\n", moe_gguf_vtype_name(moe_gguf_kv_type(g, k)));
        }
    }
    uint64_t experts = 0, other = 0;
    for (int i = 0; i < moe_gguf_n_tensors(g); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        if (strstr(t->name, "_exps.")) experts += t->size;
        else other += t->size;
    }
    printf("  %-36s %d (%.1f MiB)\n", "tensors", moe_gguf_n_tensors(g), (double)(experts + other) / 1048576.0);
    printf("  %-36s %.1f MiB (sharded over ranks)\n", "routed experts", (double)experts / 1048576.0);
    printf("  %-36s %.1f MiB (on every rank)\n", "dense, attention, embeddings", (double)other / 1048576.0);

    /* Tensors and bytes per type, in type-code order (the reader accepted
     * every code, so each is one the dtype table knows). */
    enum { MAX_CODE = 64 };
    int count[MAX_CODE] = {0};
    uint64_t bytes[MAX_CODE] = {0};
    for (int i = 0; i < moe_gguf_n_tensors(g); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        if (t->type >= MAX_CODE) continue;
        count[t->type]++;
        bytes[t->type] += t->size;
    }
    printf("  tensors per type\n");
    for (uint32_t c = 0; c < MAX_CODE; c++) {
        char buf[24];
        if (count[c])
            printf("    %-8s %5d %14llu bytes\n", moe_dtype_name(c, buf, sizeof buf), count[c],
                   (unsigned long long)bytes[c]);
    }

    /* Bytes read per decoded token (see --help for the formula). */
    const char *arch = "deepseek2";
    uint64_t alen;
    int ka = moe_gguf_find_kv(g, "general.architecture");
    char key[160];
    if (ka >= 0 && moe_gguf_kv_type(g, ka) == MOE_GGUF_STRING) {
        arch = moe_gguf_kv_str(g, ka, &alen);
        if (alen > 64) alen = 64;
    } else {
        alen = strlen(arch);
    }
    int64_t n_block = -1, n_mtp = 0, k_used = 0, n_expert = 0;
#define GETI(name, out)                                                             \
    do {                                                                            \
        snprintf(key, sizeof key, "%.*s.%s", (int)alen, arch, name);                \
        int k_ = moe_gguf_find_kv(g, key);                                          \
        if (k_ >= 0 && moe_gguf_kv_scalar_i64(g, k_, out) != 0) *(out) = -1;        \
    } while (0)
    GETI("block_count", &n_block);
    GETI("nextn_predict_layers", &n_mtp);
    GETI("expert_used_count", &k_used);
    GETI("expert_count", &n_expert);
#undef GETI
    const int64_t n_trunk = n_block >= 0 && n_mtp >= 0 && n_mtp <= n_block ? n_block - n_mtp : -1;
    double dense = 0.0, routed = 0.0;
    for (int i = 0; i < moe_gguf_n_tensors(g); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        int layer = -1;
        if (!strncmp(t->name, "blk.", 4)) layer = atoi(t->name + 4);
        if (n_trunk >= 0 && layer >= n_trunk) continue; /* MTP block */
        if (strstr(t->name, "_exps.")) routed += (double)t->size;
        else if (!strcmp(t->name, "token_embd.weight") && t->n_dims >= 2) dense += (double)t->size / (double)t->ne[1];
        else dense += (double)t->size;
    }
    const double share = n_expert > 0 && k_used > 0 && k_used <= n_expert ? (double)k_used / (double)n_expert : 1.0;
    const double per_rank = dense + routed * share / (double)ranks;
    printf("  %-36s %.0f (%.2f MiB: %.2f MiB dense + %.2f MiB x %lld/%lld routed / %d rank%s)\n",
           "bytes per decoded token per rank", per_rank, per_rank / 1048576.0, dense / 1048576.0,
           routed / 1048576.0, (long long)k_used, (long long)n_expert, ranks, ranks == 1 ? "" : "s");
}

static const size_t elem_size[MOE_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

int main(int argc, char **argv)
{
    bool full = false, summary = false;
    int ranks = 1;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--full")) {
            full = true;
        } else if (!strcmp(argv[i], "--summary")) {
            summary = true;
        } else if (!strcmp(argv[i], "--ranks")) {
            int64_t v;
            moe_err e;
            if (i + 1 >= argc || moe_parse_i64(argv[i + 1], 1, 1 << 20, &v, &e)) {
                fprintf(stderr, "moe-gguf: --ranks needs a number in [1, %d]\n", 1 << 20);
                return 2;
            }
            ranks = (int)v;
            i++;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "moe-gguf: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "moe-gguf: more than one file given\n");
            return 2;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    moe_err err;
    moe_gguf *g;
    if (moe_gguf_open(&g, path, &err)) {
        fprintf(stderr, "moe-gguf: %s\n", err.msg);
        return 1;
    }
    if (summary) {
        print_summary(g, path, ranks);
        moe_gguf_close(g);
        return 0;
    }
    const uint64_t max_str = full ? UINT64_MAX : 120, max_items = full ? UINT64_MAX : 8;
    printf("file: %s\nversion: %u\nalignment: %u\ndata offset: %llu\nfile size: %llu\n", path, moe_gguf_version(g),
           moe_gguf_alignment(g), (unsigned long long)moe_gguf_data_offset(g),
           (unsigned long long)moe_gguf_file_size(g));
    printf("metadata: %d keys\n", moe_gguf_n_kv(g));
    for (int i = 0; i < moe_gguf_n_kv(g); i++) {
        moe_gguf_vtype t = moe_gguf_kv_type(g, i);
        printf("  %-48s ", moe_gguf_kv_key(g, i));
        if (t == MOE_GGUF_STRING) {
            uint64_t len;
            const char *s = moe_gguf_kv_str(g, i, &len);
            printf("string  ");
            put_escaped(s, len, max_str);
        } else if (t == MOE_GGUF_ARRAY) {
            moe_gguf_arr a;
            moe_gguf_kv_arr(g, i, &a);
            printf("array[%s] %llu [", moe_gguf_vtype_name(a.type), (unsigned long long)a.count);
            for (uint64_t j = 0; j < a.count && j < max_items; j++) {
                if (j) fputs(", ", stdout);
                if (a.type == MOE_GGUF_STRING) {
                    uint64_t len;
                    const char *s = moe_gguf_arr_str(g, &a, j, &len);
                    put_escaped(s, len, max_str);
                } else {
                    put_scalar(a.type, (const unsigned char *)a.data + j * elem_size[a.type]);
                }
            }
            fputs(a.count > max_items ? ", ...]" : "]", stdout);
        } else {
            uint64_t size;
            const unsigned char *p = moe_gguf_kv_raw(g, i, &size);
            printf("%-7s ", moe_gguf_vtype_name(t));
            put_scalar(t, p);
        }
        putchar('\n');
    }
    printf("tensors: %d\n", moe_gguf_n_tensors(g));
    printf("  %-5s %-40s %-6s %-26s %12s %12s\n", "#", "name", "type", "shape", "offset", "bytes");
    uint64_t total = 0;
    for (int i = 0; i < moe_gguf_n_tensors(g); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        char shape[96] = "", buf[24];
        size_t n = 0;
        for (uint32_t d = 0; d < t->n_dims; d++)
            n += (size_t)snprintf(shape + n, sizeof shape - n, d ? " x %llu" : "%llu", (unsigned long long)t->ne[d]);
        printf("  %-5d %-40s %-6s %-26s %12llu %12llu\n", i, t->name, moe_dtype_name(t->type, buf, sizeof buf), shape,
               (unsigned long long)t->offset, (unsigned long long)t->size);
        total += t->size;
    }
    printf("tensor bytes: %llu\n", (unsigned long long)total);
    moe_gguf_close(g);
    return 0;
}
