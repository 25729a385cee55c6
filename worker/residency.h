/*
 * residency.h — which pages of the routed experts a rank holds.
 *
 * Every rank maps the whole file but should touch only its own experts.
 * moe_residency_advise marks the expert tensors MADV_RANDOM: no readahead
 * into other experts' pages; and, when the experts are
 * sharded over ranks, MADV_NOHUGEPAGE, so that the huge-page advice on the
 * whole file (gguf.c) does not read 2 MiB around each one (a job of one
 * rank hosts them all and keeps 2 MiB pages).  That also gives those
 * ranges VMAs of their own, which is what lets /proc/self/smaps report
 * their resident size (moe_residency_resident), to compare with the bytes
 * the placement gives the rank (moe_residency_share).
 */
#ifndef MOE_WORKER_RESIDENCY_H
#define MOE_WORKER_RESIDENCY_H

#include <stdbool.h>
#include <stdint.h>

#include "model.h"
#include "placement.h"

/* Advice only: a failure changes nothing but memory use. */
void moe_residency_advise(const moe_model *m, bool sharded);
/*
 * A sharded job's rank, once its placement is known (and again at each
 * change, before moe_residency_move): the huge-page advice back on the
 * whole 2 MiB pages inside each run of consecutive experts placement p
 * gives rank, small pages on the rest of the expert tensors, and a VMA
 * of their own (MADV_DONTDUMP) to the whole pages of the experts it does
 * not host.  Nothing outside its share is read in or mapped by it (the
 * kernel maps cached pages around a fault only within the fault's VMA),
 * and the experts it streams every token get the dense weights' 2 MiB
 * pages.  Returns the runs given 2 MiB pages (runs shorter than a 2 MiB
 * page have none).  Each kind of advice stops at 8192 ranges, to keep the
 * process's mappings well under the kernel's limit: past that (only very
 * scattered placements of very large models), the remaining runs keep
 * small pages, or share a VMA with their neighbours' experts.
 */
int moe_residency_host(const moe_model *m, const moe_placement *p, int rank);
/* Bytes of the routed experts that placement p gives rank. */
uint64_t moe_residency_share(const moe_model *m, const moe_placement *p, int rank);
/*
 * Placement to replaces from on rank, between steps: the experts the rank
 * no longer hosts are released (MADV_DONTNEED on the whole pages inside
 * each one's share of the expert tensors: a page shared with a neighbour
 * it keeps stays), the ones it newly hosts are read in, a byte a page, so
 * the first step after the change does not wait on page faults.  Bytes
 * released and read in are added to *released and *loaded.
 */
void moe_residency_move(const moe_model *m, const moe_placement *from, const moe_placement *to, int rank,
                        uint64_t *released, uint64_t *loaded);
/* Resident bytes of the expert tensors now (smaps; 0 if unreadable). */
uint64_t moe_residency_resident(const moe_model *m);

#endif
