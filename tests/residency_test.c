/*
 * residency_test.c — the memory advice on a model's mapping, read back
 * from /proc/self/smaps (VmFlags): the file is mapped with the huge-page
 * advice (hg; core/gguf.c), and after moe_residency_advise every routed
 * expert tensor's pages are random-access (rr) and, in a sharded job,
 * small-page (nh; a job of one rank keeps hg there), while the dense
 * weights keep hg; token_embd (untied: looked up, not streamed) has nh
 * from the model's open; and moe_residency_host gives hg back to the runs
 * of experts a placement gives the rank, and only to them; a file of 2 MiB
 * or more is mapped from a 2 MiB address, leaving no other mapping.  Where the kernel has no transparent huge
 * pages (no /sys/kernel/mm/transparent_hugepage), the advice cannot be
 * given: the hg and nh checks are left out and the test says so.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "gguf.h"
#include "vmflags.h"
#include "model.h"
#include "residency.h"

static bool thp;

/* One fresh mapping of the fixture, advised for a sharded job or a job of
 * one rank; returns the number of expert tensors checked. */
static int check_advice(const char *path, bool sharded)
{
    moe_err err;
    moe_model *m;
    if (moe_model_open(&m, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    char fl[512];
    /* the middle of the output matrix: far from any expert's page */
    CHECK_MSG(!m->output_tied, "the fixture's output is tied");
    const void *dense = (const char *)m->output.data + (size_t)m->output.rows * m->output.row_bytes / 2;
    vma_flags(dense, fl, sizeof fl);
    CHECK_MSG(fl[0] != '\0', "no mapping holds the output matrix");
    if (thp) CHECK_MSG(has_flag(fl, "hg"), "the model's mapping lacks the huge-page advice: %s", fl);
    /* the embeddings, looked up a row a token, have small pages */
    vma_flags(m->tok_embd.data, fl, sizeof fl);
    if (thp) CHECK_MSG(has_flag(fl, "nh") && !has_flag(fl, "hg"), "token_embd: not small pages: %s", fl);

    moe_residency_advise(m, sharded);
    int experts = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        const moe_mat *mats[3];
        for (int k = 0, n = moe_model_expert_mats(m, il, mats); k < n; k++) {
            /* the first and the last byte of the tensor */
            const char *ends[2] = {mats[k]->data,
                                   (const char *)mats[k]->data + (size_t)mats[k]->rows * mats[k]->row_bytes - 1};
            for (int e = 0; e < 2; e++) {
                vma_flags(ends[e], fl, sizeof fl);
                CHECK_MSG(has_flag(fl, "rr"), "layer %d expert tensor %d: not random-access: %s", il, k, fl);
                if (thp && sharded) {
                    CHECK_MSG(has_flag(fl, "nh"), "layer %d expert tensor %d: not small pages: %s", il, k, fl);
                    CHECK_MSG(!has_flag(fl, "hg"), "layer %d expert tensor %d: huge-page advice: %s", il, k, fl);
                } else if (thp) {
                    CHECK_MSG(has_flag(fl, "hg"), "one rank, layer %d expert tensor %d: no huge-page advice: %s", il,
                              k, fl);
                }
            }
            experts++;
        }
    }
    CHECK_MSG(experts > 0, "the fixture has no routed experts");
    vma_flags(dense, fl, sizeof fl);
    if (thp) CHECK_MSG(has_flag(fl, "hg"), "the dense weights lost the huge-page advice: %s", fl);
    CHECK_MSG(!has_flag(fl, "rr"), "the dense weights became random-access: %s", fl);
    moe_model_free(m);
    return experts;
}

/* moe_residency_host on a model of two blocks, one MoE block of 8
 * experts: gate and up of 4 MiB an expert, down of 1 MiB + 2 KiB (so half
 * its experts start inside a page), in anonymous memory starting 1 MiB +
 * 4 KiB past a 2 MiB boundary (so no run edge is on one).  Rank 0 hosts
 * experts 0-2 and 5: a page has hg exactly when the 2 MiB page holding it
 * lies inside one of its runs (down's run 5, 1 MiB, has none), nh
 * otherwise; and dd (a mapping of its own) exactly when the 4 KiB page
 * holding it lies inside the experts it does not host; then the placement
 * changes. */
#define HOST_MIB ((size_t)1 << 20)
static const size_t host_expert[3] = {4 * HOST_MIB, 4 * HOST_MIB, HOST_MIB + 2048};

static bool host_want_hg(const char *t, size_t expert, const char *x, const bool hosted[8])
{
    const size_t huge = 2 * HOST_MIB;
    const uintptr_t blk = (uintptr_t)x & ~(uintptr_t)(huge - 1);
    if (blk < (uintptr_t)t || blk + huge > (uintptr_t)t + 8 * expert) return false;
    for (size_t e = (blk - (uintptr_t)t) / expert; e <= (blk + huge - 1 - (uintptr_t)t) / expert; e++)
        if (!hosted[e]) return false;
    return true;
}

static bool host_want_dd(const char *t, size_t expert, const char *x, const bool hosted[8])
{
    const uintptr_t psz = (uintptr_t)sysconf(_SC_PAGESIZE), pg = (uintptr_t)x & ~(psz - 1);
    if (pg < (uintptr_t)t || pg + psz > (uintptr_t)t + 8 * expert) return false;
    for (size_t e = (pg - (uintptr_t)t) / expert; e <= (pg + psz - 1 - (uintptr_t)t) / expert; e++)
        if (hosted[e]) return false;
    return true;
}

static void check_host_flags(char *const t[3], const bool hosted[8], const char *when)
{
    char fl[512];
    for (int k = 0; k < 3; k++)
        for (size_t e = 0; e < 8; e++) {
            const char *at[4] = {t[k] + e * host_expert[k], t[k] + e * host_expert[k] + 4096,
                                 t[k] + e * host_expert[k] + host_expert[k] / 2, t[k] + (e + 1) * host_expert[k] - 1};
            for (int i = 0; i < 4; i++) {
                vma_flags(at[i], fl, sizeof fl);
                const bool hg = host_want_hg(t[k], host_expert[k], at[i], hosted);
                CHECK_MSG(hg ? has_flag(fl, "hg") && !has_flag(fl, "nh") : has_flag(fl, "nh") && !has_flag(fl, "hg"),
                          "%s: tensor %d expert %zu (%s) byte %td: want %s, flags%s", when, k, e,
                          hosted[e] ? "hosted" : "not hosted", at[i] - (t[k] + e * host_expert[k]), hg ? "hg" : "nh",
                          fl);
                const bool dd = host_want_dd(t[k], host_expert[k], at[i], hosted);
                CHECK_MSG(dd == has_flag(fl, "dd"), "%s: tensor %d expert %zu (%s) byte %td: want%s dd, flags%s",
                          when, k, e, hosted[e] ? "hosted" : "not hosted", at[i] - (t[k] + e * host_expert[k]),
                          dd ? "" : " no", fl);
            }
        }
}

static void check_host(void)
{
    const size_t len = 3 * 8 * 4 * HOST_MIB + 4 * HOST_MIB;
    char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(mem != MAP_FAILED);
    if (mem == MAP_FAILED) return;
    char *t[3];
    t[0] = (char *)(((uintptr_t)mem + 2 * HOST_MIB - 1) & ~(uintptr_t)(2 * HOST_MIB - 1)) + HOST_MIB + 4096;
    t[1] = t[0] + 8 * host_expert[0] + 4096;
    t[2] = t[1] + 8 * host_expert[1];
    moe_layer layers[2] = {0};
    layers[1].is_moe = true;
    moe_mat *mats[3] = {&layers[1].gate_exps, &layers[1].up_exps, &layers[1].down_exps};
    for (int k = 0; k < 3; k++) {
        mats[k]->row_bytes = 2048;
        mats[k]->rows = (int64_t)(8 * host_expert[k] / 2048);
        mats[k]->cols = 1024;
        mats[k]->data = t[k];
    }
    moe_model m = {0};
    m.hp.n_layer = 2;
    m.hp.n_dense_lead = 1;
    m.hp.n_expert = 8;
    m.layers = layers;
    const moe_placement_shape shape = {.n_layer = 2, .first_moe = 1, .n_expert = 8, .n_rank = 2};
    static const char text[] = "* 0 0-2 5\n* 1 3-4 6-7\n";
    moe_placement *p;
    moe_err err;
    CHECK_MSG(moe_placement_parse(&p, &shape, text, sizeof text - 1, &err) == MOE_OK, "%s", err.msg);
    /* gate and up: runs 0-2 and 5; down: run 0-2 only (run 5 is 1 MiB) */
    const int ranges = moe_residency_host(&m, p, 0);
    CHECK_MSG(ranges == 5, "%d ranges advised, want 5", ranges);
    const bool hosted[8] = {true, true, true, false, false, true, false, false};
    check_host_flags(t, hosted, "placement 1");
    /* a new placement: expert 5 leaves, 3 comes */
    static const char text2[] = "* 0 0-3\n* 1 4-7\n";
    moe_placement *p2;
    CHECK_MSG(moe_placement_parse(&p2, &shape, text2, sizeof text2 - 1, &err) == MOE_OK, "%s", err.msg);
    CHECK(moe_residency_host(&m, p2, 0) == 3);
    const bool hosted2[8] = {true, true, true, true, false, false, false, false};
    check_host_flags(t, hosted2, "placement 2");
    moe_placement_free(p);
    moe_placement_free(p2);
    munmap(mem, len);
}

static int map_count(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

/* A file of 2 MiB or more is mapped from a 2 MiB address (gguf.c), with
 * nothing of the address space it reserved for that left behind. */
static void check_map_aligned(const char *path)
{
    const int before = map_count();
    moe_gguf *g;
    moe_err err;
    CHECK_MSG(moe_gguf_open(&g, path, &err) == MOE_OK, "%s", err.msg);
    if (!g) return;
    CHECK_MSG(moe_gguf_file_size(g) >= (2u << 20), "%s is under 2 MiB", path);
    CHECK_MSG(((uintptr_t)moe_gguf_base(g) & ((2u << 20) - 1)) == 0, "%s mapped at %p", path, moe_gguf_base(g));
    const int during = map_count();
    CHECK_MSG(during == before + 1, "%d mappings while open, %d before: want one more", during, before);
    moe_gguf_close(g);
    CHECK_MSG(map_count() == before, "%d mappings after close, %d before", map_count(), before);
}

int main(void)
{
    const char *fx = getenv("MOE_FIXTURES");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/v3_mini_q8_0.gguf", fx ? fx : "../shared/fixtures");
    thp = access("/sys/kernel/mm/transparent_hugepage", F_OK) == 0;
    const int sharded = check_advice(path, true), one = check_advice(path, false);
    snprintf(path, sizeof path, "%s/models/v3_mini_f32.gguf", fx ? fx : "../shared/fixtures");
    check_map_aligned(path);
    if (thp) check_host();
    printf("residency_test: %d expert tensors advised for a sharded job, %d for one rank%s\n", sharded, one,
           thp ? "" : "; no transparent huge pages here: the hg/nh checks were left out");
    return check_summary("residency_test");
}
