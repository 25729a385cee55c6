/*
 * residency.c — expert residency: advice and accounting (residency.h).
 */
#include "residency.h"

#include <stdbool.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

static uint64_t mat_bytes(const moe_mat *w) { return (uint64_t)w->rows * (uint64_t)w->row_bytes; }

void moe_residency_advise(const moe_model *m, bool sharded)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int il = 0; il < m->hp.n_layer; il++) {
        const moe_mat *mats[3];
        for (int k = 0, n = moe_model_expert_mats(m, il, mats); k < n; k++) {
            uintptr_t a, b;
            moe_mat_page_range(mats[k], page, &a, &b);
            madvise((void *)a, b - a, MADV_RANDOM);
            /* small pages: a 2 MiB one (the file's advice, gguf.c) would
             * bring in the neighbours of an expert the rank hosts */
            if (sharded) madvise((void *)a, b - a, MADV_NOHUGEPAGE);
        }
    }
}

/* Advised ranges of each kind (2 MiB pages, a VMA of their own)
 * moe_residency_host gives at most: two VMAs each, 32768 in all, half the
 * kernel's default of 65530 mappings a process */
#define HOST_MAX_RANGES 8192

int moe_residency_host(const moe_model *m, const moe_placement *p, int rank)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), huge = (uintptr_t)2 << 20;
    const int E = m->hp.n_expert;
    /* 2 MiB pages are read in at 2 MiB file offsets and mapped whole only
     * at 2 MiB addresses: a mapping that does not start on one (a file
     * under 2 MiB, gguf.c) would only read its neighbours' bytes */
    const bool huge_ok = !m->gguf || !((uintptr_t)moe_gguf_base(m->gguf) & (huge - 1));
    int hg = 0, dd = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        const moe_mat *mats[3];
        for (int k = 0, n = moe_model_expert_mats(m, il, mats); k < n; k++) {
            uintptr_t a, b;
            moe_mat_page_range(mats[k], page, &a, &b);
            /* a former placement's runs */
            madvise((void *)a, b - a, MADV_NOHUGEPAGE);
            madvise((void *)a, b - a, MADV_DODUMP);
            const uintptr_t share = (uintptr_t)(mat_bytes(mats[k]) / (uint64_t)E), base = (uintptr_t)mats[k]->data;
            for (int e = 0; e < E;) {
                /* a run of experts [e, e1) the rank hosts, or does not */
                const bool hosts = moe_placement_rank_hosts(p, il, rank, e);
                int e1 = e + 1;
                while (e1 < E && moe_placement_rank_hosts(p, il, rank, e1) == hosts) e1++;
                const uintptr_t x = base + share * (uintptr_t)e, y = base + share * (uintptr_t)e1;
                if (hosts && huge_ok && hg < HOST_MAX_RANGES) {
                    /* the whole 2 MiB pages inside the run's bytes */
                    const uintptr_t lo = (x + huge - 1) & ~(huge - 1), hi = y & ~(huge - 1);
                    if (hi > lo && madvise((void *)lo, hi - lo, MADV_HUGEPAGE) == 0) hg++;
                } else if (!hosts && dd < HOST_MAX_RANGES) {
                    /* the whole pages of the neighbours' run: a mapping
                     * of their own (the flag is only a difference from
                     * the hosted pages' VMA), so that fault-around, which
                     * stays within a VMA, maps none of them when the
                     * file is cached in 2 MiB pages (read so by another
                     * process on this machine) */
                    const uintptr_t lo = (x + page - 1) & ~(page - 1), hi = y & ~(page - 1);
                    if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTDUMP) == 0) dd++;
                }
                e = e1;
            }
        }
    }
    return hg;
}

uint64_t moe_residency_share(const moe_model *m, const moe_placement *p, int rank)
{
    uint64_t bytes = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        const moe_mat *mats[3];
        const int n = moe_model_expert_mats(m, il, mats);
        if (n == 0) continue;
        int hosted = 0;
        for (int e = 0; e < m->hp.n_expert; e++) hosted += moe_placement_rank_hosts(p, il, rank, e);
        for (int k = 0; k < n; k++) bytes += mat_bytes(mats[k]) / (uint64_t)m->hp.n_expert * (uint64_t)hosted;
    }
    return bytes;
}

void moe_residency_move(const moe_model *m, const moe_placement *from, const moe_placement *to, int rank,
                        uint64_t *released, uint64_t *loaded)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const int E = m->hp.n_expert;
    for (int il = 0; il < m->hp.n_layer; il++) {
        const moe_mat *mats[3];
        const int n = moe_model_expert_mats(m, il, mats);
        for (int e = 0; e < E && n > 0; e++) {
            const bool was = moe_placement_rank_hosts(from, il, rank, e), now = moe_placement_rank_hosts(to, il, rank, e);
            if (was == now) continue;
            for (int k = 0; k < n; k++) {
                /* expert e is rows [e·rows/E, (e+1)·rows/E) of the tensor */
                const uint64_t share = mat_bytes(mats[k]) / (uint64_t)E;
                const uintptr_t lo = (uintptr_t)mats[k]->data + (uintptr_t)(share * (uint64_t)e), hi = lo + share;
                if (was) {
                    const uintptr_t a = (lo + page - 1) & ~(page - 1), b = hi & ~(page - 1);
                    if (b > a && madvise((void *)a, b - a, MADV_DONTNEED) == 0) *released += b - a;
                } else {
                    volatile const unsigned char *p = (const unsigned char *)lo;
                    unsigned char sum = 0;
                    for (uintptr_t at = 0; at < hi - lo; at += page) sum ^= p[at];
                    sum ^= p[hi - lo - 1];
                    (void)sum;
                    *loaded += share;
                }
            }
        }
    }
}

/* Bytes of [lo, hi) covered by the expert tensors' page ranges. */
static uint64_t expert_overlap(const moe_model *m, uintptr_t page, uintptr_t lo, uintptr_t hi)
{
    uint64_t covered = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        const moe_mat *mats[3];
        for (int k = 0, n = moe_model_expert_mats(m, il, mats); k < n; k++) {
            uintptr_t a, b;
            moe_mat_page_range(mats[k], page, &a, &b);
            const uintptr_t x = a > lo ? a : lo, y = b < hi ? b : hi;
            if (y > x) covered += y - x;
        }
    }
    return covered;
}

/* Sums Rss over the VMAs that the expert ranges cover entirely (advice gave
 * them VMAs of their own; adjacent expert tensors share one). */
uint64_t moe_residency_resident(const moe_model *m)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return 0;
    char line[512];
    uint64_t total = 0;
    bool inside = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        unsigned long long kb;
        char dash;
        if (sscanf(line, "%lx%c%lx ", &lo, &dash, &hi) == 3 && dash == '-')
            inside = expert_overlap(m, page, lo, hi) >= hi - lo;
        else if (inside && sscanf(line, "Rss: %llu kB", &kb) == 1)
            total += kb * 1024ull;
    }
    fclose(f);
    return total;
}
