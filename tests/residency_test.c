/*
 * residency_test.c — the memory advice on a model's mapping, read back
 * from /proc/self/smaps (VmFlags): the file is mapped with the huge-page
 * advice (hg; core/gguf.c), and after moe_residency_advise every routed
 * expert tensor's pages are random-access (rr) and, in a sharded job,
 * small-page (nh; a job of one rank keeps hg there), while the dense
 * weights keep hg; token_embd (untied: looked up, not streamed) has nh
 * from the model's open; and moe_residency_host gives hg back to the runs
 * of experts a placement gives the rank, and only to them.  Where the kernel has no transparent huge
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

/* moe_residency_host on a model of two blocks (one MoE block of 8 experts
 * whose three tensors are 32 MiB of anonymous memory each, 4 MiB an
 * expert) and a scattered placement: rank 0 hosts experts 0-2 and 5, so
 * their bytes have hg and the others' nh, in each tensor. */
static void check_host(void)
{
    const size_t mib = (size_t)1 << 20, tensor = 32 * mib;
    char *mem = mmap(NULL, 3 * tensor + 2 * mib, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(mem != MAP_FAILED);
    if (mem == MAP_FAILED) return;
    char *base = (char *)(((uintptr_t)mem + 2 * mib - 1) & ~(uintptr_t)(2 * mib - 1));
    moe_layer layers[2] = {0};
    layers[1].is_moe = true;
    moe_mat *mats[3] = {&layers[1].gate_exps, &layers[1].up_exps, &layers[1].down_exps};
    for (int k = 0; k < 3; k++) {
        mats[k]->rows = 8 * 1024;
        mats[k]->cols = 1024;
        mats[k]->row_bytes = 4096;
        mats[k]->data = base + k * tensor;
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
    const int ranges = moe_residency_host(&m, p, 0);
    CHECK_MSG(ranges == 6, "%d ranges advised, want 2 runs x 3 tensors", ranges);
    char fl[512];
    for (int k = 0; k < 3; k++)
        for (int e = 0; e < 8; e++)
            for (int at = 0; at < 2; at++) { /* the first and the last byte of expert e */
                vma_flags(base + k * tensor + (size_t)e * 4 * mib + (at ? 4 * mib - 1 : 0), fl, sizeof fl);
                const bool hosted = e <= 2 || e == 5;
                CHECK_MSG(hosted ? has_flag(fl, "hg") : has_flag(fl, "nh"), "tensor %d expert %d (%s): %s", k, e,
                          hosted ? "hosted" : "not hosted", fl);
            }
    /* a new placement: expert 5 leaves, 3 comes; its runs move with it */
    static const char text2[] = "* 0 0-3\n* 1 4-7\n";
    moe_placement *p2;
    CHECK_MSG(moe_placement_parse(&p2, &shape, text2, sizeof text2 - 1, &err) == MOE_OK, "%s", err.msg);
    CHECK(moe_residency_host(&m, p2, 0) == 3);
    for (int e = 0; e < 8; e++) {
        vma_flags(base + (size_t)e * 4 * mib + 2 * mib, fl, sizeof fl);
        CHECK_MSG(e <= 3 ? has_flag(fl, "hg") : has_flag(fl, "nh"), "after the change, expert %d: %s", e, fl);
    }
    moe_placement_free(p);
    moe_placement_free(p2);
    munmap(mem, 3 * tensor + 2 * mib);
}

int main(void)
{
    const char *fx = getenv("MOE_FIXTURES");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/v3_mini_q8_0.gguf", fx ? fx : "../shared/fixtures");
    thp = access("/sys/kernel/mm/transparent_hugepage", F_OK) == 0;
    const int sharded = check_advice(path, true), one = check_advice(path, false);
    if (thp) check_host();
    printf("residency_test: %d expert tensors advised for a sharded job, %d for one rank%s\n", sharded, one,
           thp ? "" : "; no transparent huge pages here: the hg/nh checks were left out");
    return check_summary("residency_test");
}
