/*
 * plan_mem_test.c — moe_engine_mem (what moe-gguf --plan counts for a
 * rank's cache and buffers) against what moe_engine_init really takes from
 * malloc (glibc's mallinfo2: bytes in use plus mmapped chunks), for a
 * fixture model under several option sets; and moe_engine_mem refusing the
 * options init refuses.  The malloc comparison needs glibc's allocator, so
 * it is left out (and said so) under the sanitizers, whose allocator
 * mallinfo2 does not see; the other checks run everywhere.
 */
#include <malloc.h>

#include "check.h"
#include "engine.h"
#include "plan.h"

static size_t heap_now(void)
{
    const struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

int main(void)
{
    const char *fx = getenv("MOE_FIXTURES");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/v3_mini_q8_0.gguf", fx ? fx : "../shared/fixtures");
    moe_err err;
    moe_model *m;
    if (moe_model_open(&m, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const moe_kern_set *k;
    CHECK(moe_kern_choose(&k, &err) == MOE_OK);
    struct { int threads, seqs, step, block, dec; int64_t ctx; bool q8; } cases[] = {
        {1, 16, 1024, 16, 32, 4097, false}, {3, 4, 512, 16, 0, 2049, true},
        {2, 64, 2048, 32, 32, 1025, true},  {1, 1, 1, 1, 32, 1, false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        moe_engine_opts o;
        moe_engine_opts_default(&o);
        o.kernels = k;
        o.n_threads = cases[c].threads;
        o.max_seqs = cases[c].seqs;
        o.max_batch_tokens = cases[c].step;
        o.block_size = cases[c].block;
        o.decompress_min = cases[c].dec;
        o.max_ctx = cases[c].ctx;
        o.act_q8 = cases[c].q8;
        uint64_t cache = 0, work = 0;
        CHECK(moe_engine_mem(&m->hp, &o, &cache, &work, &err) == MOE_OK);
        /* the cache: pool of whole blocks of (kv_lora + qk_rope) floats a layer */
        const int64_t blocks = (cases[c].ctx * cases[c].seqs + cases[c].block - 1) / cases[c].block;
        const uint64_t pool = (uint64_t)blocks * (uint64_t)cases[c].block * (uint64_t)m->hp.n_layer *
                              (uint64_t)(m->hp.kv_lora + m->hp.qk_rope) * 4u;
        CHECK_MSG(cache >= pool && cache - pool < pool / 8 + 65536, "case %zu: cache %llu, pool %llu", c,
                  (unsigned long long)cache, (unsigned long long)pool);
        const size_t before = heap_now();
        moe_engine *e;
        CHECK(moe_engine_init(&e, m, &o, &err) == MOE_OK);
        /* every sequence slot's block table, as counted */
        for (int s = 0, id; s < cases[c].seqs; s++) CHECK(moe_engine_seq_new(e, &id, &err) == MOE_OK);
        const size_t taken = heap_now() - before;
        const uint64_t want = cache + work;
        if (!SANITIZED) {
            /* malloc's headers and alignment, page rounding of mmapped
             * chunks, the thread pool's own small allocations */
            const uint64_t slack = 64 * 1024 + 8192 * (uint64_t)(60 + 8 * cases[c].threads);
            CHECK_MSG(taken + 4096 >= want && taken <= want + slack,
                      "case %zu: init took %zu bytes, moe_engine_mem says %llu + %llu", c, taken,
                      (unsigned long long)cache, (unsigned long long)work);
            printf("case %zu: init took %zu bytes, moe_engine_mem %llu (cache %llu, work %llu)\n", c, taken,
                   (unsigned long long)want, (unsigned long long)cache, (unsigned long long)work);
        }
        moe_engine_free(e);
    }
    if (SANITIZED) printf("malloc comparison not run: sanitizer build (mallinfo2 does not see its allocator)\n");

    /* options init refuses are refused here too, with init's message */
    moe_engine_opts o;
    moe_engine_opts_default(&o);
    uint64_t a, b;
    o.max_seqs = 5000;
    CHECK(moe_engine_mem(&m->hp, &o, &a, &b, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "max sequences");
    moe_engine_opts_default(&o);
    o.max_ctx = (int64_t)1 << 30;
    CHECK(moe_engine_mem(&m->hp, &o, &a, &b, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "max context");
    moe_engine_opts_default(&o);
    o.block_size = 0;
    CHECK(moe_engine_mem(&m->hp, &o, &a, &b, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "block size");

    /* the serving sizes moe-worker --coordinator uses */
    moe_plan_opts po;
    moe_plan_opts_default(&po);
    po.ctx = 1000;
    po.max_seqs = 3;
    moe_engine_opts_default(&o);
    moe_plan_engine_opts(&m->hp, &po, &o);
    CHECK(o.max_ctx == 1001 && o.max_seqs == 3 && o.cache_tokens == 3 * (1001 + 16) && o.max_batch_tokens == 1024);
    moe_model_free(m);
    return check_summary("plan_mem_test");
}
