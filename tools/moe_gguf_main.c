/*
 * moe-gguf — print a GGUF file's metadata and tensor table, or the reason
 * it is not a valid file (exit status 1); with --plan, the memory each node
 * of a worker job needs (worker/plan.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "gguf.h"
#include "plan.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moe-gguf [--full | --summary [--ranks N]] FILE.gguf\n"
            "       moe-gguf --plan --nodes N [--ctx C] [--seqs S] [...] FILE.gguf\n"
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
            "  --plan      the memory each node of a worker job of N nodes (one rank a\n"
            "              node) needs, from the tensor table only (no weight is read):\n"
            "                shared    trunk tensors that are not routed experts (every node)\n"
            "                experts   the node's routed experts under the placement\n"
            "                kv        the latent cache moe-worker allocates: (kv_lora +\n"
            "                          qk_rope) float32 per token per layer, for S x (C + 1\n"
            "                          + block) tokens\n"
            "                work      the engine's activation and scratch buffers\n"
            "                exchange  the expert exchange's buffers at full steps, uniform\n"
            "                          routing (an estimate)\n"
            "              then the exact bytes, and the file's bytes for comparison\n"
            "  --nodes N   nodes (ranks) of the job, 1..%d (--plan)\n"
            "  --ctx C     tokens per sequence, as moe-worker --ctx (default min(4096,\n"
            "              the file's context_length))\n"
            "  --seqs S    sequences a node holds at once, as moe-worker --max-seqs (16)\n"
            "  --step-tokens N, --threads N, --block-size N   as moe-worker (1024, 1, 16)\n"
            "  --placement FILE   expert placement file, as moe-worker (default contiguous)\n"
            "  --exact     as moe-worker --exact: float activations (work leaves out the\n"
            "              int8 activation buffers of the default path)\n"
            "  --repack    as moe-worker --repack: work includes the repacked copies of the\n"
            "              dense Q8_0 and Q4_K matrices (not with --exact)\n"
            "  --help   this text\n",
            MOE_PLACEMENT_MAX_RANKS);
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

static double gib(uint64_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }

/* --plan: one line a node in GiB, the same in bytes, and the file's bytes
 * (the sum over nodes is the trunk's tensor bytes plus nodes - 1 copies of
 * the shared part: only routed experts are split). */
static int print_plan(const char *path, int nodes, const char *placement, const moe_plan_opts *po)
{
    moe_err err;
    moe_model *m;
    if (moe_model_open(&m, path, &err)) {
        fprintf(stderr, "moe-gguf: %s\n", err.msg);
        return 1;
    }
    moe_placement *p = NULL;
    moe_plan_rank *r = moe_xcalloc((size_t)nodes, sizeof *r);
    int rc = 1;
    if (moe_plan_placement(m, nodes, placement, &p, &err)) goto out;
    for (int i = 0; i < nodes; i++)
        if (moe_plan_rank_compute(m, p, po, i, &r[i], &err)) goto out;
    const moe_hparams *hp = &m->hp;
    moe_engine_opts eo;
    moe_plan_engine_opts(hp, po, &eo);
    uint64_t tensors = 0, mtp = 0;
    for (int i = 0; i < moe_gguf_n_tensors(m->gguf); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(m->gguf, i);
        tensors += t->size;
        if (!strncmp(t->name, "blk.", 4) && atoi(t->name + 4) >= hp->n_layer) mtp += t->size;
    }
    printf("plan: %s\n", path);
    printf("  %d node%s, one rank each; placement %s; %d sequences a node of up to %lld tokens (cache of %lld "
           "tokens, blocks of %d); steps of %d tokens; %d thread%s\n",
           nodes, nodes == 1 ? "" : "s", placement ? placement : "contiguous", eo.max_seqs,
           (long long)eo.max_ctx - 1, (long long)eo.cache_tokens, eo.block_size, eo.max_batch_tokens, eo.n_threads,
           eo.n_threads == 1 ? "" : "s");
    printf("  %d layers (%d dense), %d routed experts (%d used), latent cache %d x float32 per token per layer\n",
           hp->n_layer, hp->n_dense_lead, hp->n_expert, hp->n_used, hp->kv_lora + hp->qk_rope);
    printf("  %-6s %12s %12s %12s %12s %12s %12s\n", "node", "shared GiB", "experts GiB", "kv GiB", "work GiB",
           "exchange GiB", "total GiB");
    uint64_t sum = 0, wsum = 0;
    for (int i = 0; i < nodes; i++) {
        printf("  %-6d %12.2f %12.2f %12.2f %12.2f %12.2f %12.2f\n", i, gib(r[i].shared), gib(r[i].experts),
               gib(r[i].kv), gib(r[i].work), gib(r[i].xchg), gib(r[i].total));
        sum += r[i].total; /* each total fits; nodes <= 4096 of them fit too unless near 2^52 bytes each */
        wsum += r[i].shared + r[i].experts;
    }
    printf("  %-6s %12s %12s %12s %12s %12s %12.2f\n", "all", "", "", "", "", "", gib(sum));
    printf("  bytes\n  %-6s %16s %16s %16s %16s %16s %16s\n", "node", "shared", "experts", "kv", "work", "exchange",
           "total");
    for (int i = 0; i < nodes; i++)
        printf("  %-6d %16llu %16llu %16llu %16llu %16llu %16llu\n", i, (unsigned long long)r[i].shared,
               (unsigned long long)r[i].experts, (unsigned long long)r[i].kv, (unsigned long long)r[i].work,
               (unsigned long long)r[i].xchg, (unsigned long long)r[i].total);
    if (po->repack)
        printf("  work includes --repack's copies of the dense Q8_0 and Q4_K matrices: %.2f GiB (%llu bytes) a node\n",
               gib(r[0].repack), (unsigned long long)r[0].repack);
    printf("  file size %llu, tensor bytes %llu (MTP blocks %llu, never read), weights over all nodes %llu\n",
           (unsigned long long)moe_gguf_file_size(m->gguf), (unsigned long long)tensors, (unsigned long long)mtp,
           (unsigned long long)wsum);
    rc = 0;
out:
    if (rc) fprintf(stderr, "moe-gguf: %s\n", err.msg);
    free(r);
    moe_placement_free(p);
    moe_model_free(m);
    return rc;
}

static const size_t elem_size[MOE_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

int main(int argc, char **argv)
{
    bool full = false, summary = false, plan = false;
    int ranks = 1, nodes = 0;
    const char *path = NULL, *placement = NULL;
    moe_plan_opts po;
    moe_plan_opts_default(&po);
    /* numeric flags: name, bounds (moe-worker's), destination */
    struct { const char *flag; int64_t lo, hi, v; bool set; } nums[] = {
        {"--ranks", 1, 1 << 20, 1, false},     {"--nodes", 1, MOE_PLACEMENT_MAX_RANKS, 0, false},
        {"--ctx", 1, 1 << 24, 0, false},       {"--seqs", 1, 4096, 16, false},
        {"--step-tokens", 1, 65536, 1024, false}, {"--threads", 1, 256, 1, false},
        {"--block-size", 1, 4096, 16, false},
    };
    const size_t n_nums = sizeof nums / sizeof nums[0];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--full")) {
            full = true;
        } else if (!strcmp(argv[i], "--summary")) {
            summary = true;
        } else if (!strcmp(argv[i], "--plan")) {
            plan = true;
        } else if (!strcmp(argv[i], "--exact")) {
            po.exact = true;
        } else if (!strcmp(argv[i], "--repack")) {
            po.repack = true;
        } else if (!strcmp(argv[i], "--placement")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moe-gguf: --placement needs a file\n");
                return 2;
            }
            placement = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            size_t k = 0;
            while (k < n_nums && strcmp(argv[i], nums[k].flag)) k++;
            if (k < n_nums) {
                moe_err e;
                if (i + 1 >= argc || moe_parse_i64(argv[i + 1], nums[k].lo, nums[k].hi, &nums[k].v, &e)) {
                    fprintf(stderr, "moe-gguf: %s needs a number in [%lld, %lld]\n", nums[k].flag,
                            (long long)nums[k].lo, (long long)nums[k].hi);
                    return 2;
                }
                nums[k].set = true;
                i++;
                continue;
            }
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
    ranks = (int)nums[0].v;
    nodes = (int)nums[1].v;
    po.ctx = nums[2].v;
    po.max_seqs = (int)nums[3].v;
    po.step_tokens = (int)nums[4].v;
    po.threads = (int)nums[5].v;
    po.block_size = (int)nums[6].v;
    if (plan && !nums[1].set) {
        fprintf(stderr, "moe-gguf: --plan needs --nodes N\n");
        return 2;
    }
    for (size_t k = 1; k < n_nums; k++)
        if (nums[k].set && !plan) {
            fprintf(stderr, "moe-gguf: %s goes with --plan\n", nums[k].flag);
            return 2;
        }
    if ((placement || po.exact || po.repack) && !plan) {
        fprintf(stderr, "moe-gguf: %s goes with --plan\n",
                placement ? "--placement" : po.exact ? "--exact" : "--repack");
        return 2;
    }
    if (po.exact && po.repack) {
        fprintf(stderr, "moe-gguf: --repack is for the int8 path, not with --exact\n");
        return 2;
    }
    if (plan && (summary || full || nums[0].set)) {
        fprintf(stderr, "moe-gguf: --plan does not go with --summary, --full or --ranks\n");
        return 2;
    }
    if (plan) return print_plan(path, nodes, placement, &po);
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
