/*
 * residency_test.c — the memory advice on a model's mapping, read back
 * from /proc/self/smaps (VmFlags): the file is mapped with the huge-page
 * advice (hg; core/gguf.c), and after moe_residency_advise every routed
 * expert tensor's pages are random-access (rr) and, in a sharded job,
 * small-page (nh; a job of one rank keeps hg there), while the dense
 * weights keep hg; token_embd (untied: looked up, not streamed) has nh
 * from the model's open.  Where the kernel has no transparent huge
 * pages (no /sys/kernel/mm/transparent_hugepage), the advice cannot be
 * given: the hg and nh checks are left out and the test says so.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(void)
{
    const char *fx = getenv("MOE_FIXTURES");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/v3_mini_q8_0.gguf", fx ? fx : "../shared/fixtures");
    thp = access("/sys/kernel/mm/transparent_hugepage", F_OK) == 0;
    const int sharded = check_advice(path, true), one = check_advice(path, false);
    printf("residency_test: %d expert tensors advised for a sharded job, %d for one rank%s\n", sharded, one,
           thp ? "" : "; no transparent huge pages here: the hg/nh checks were left out");
    return check_summary("residency_test");
}
