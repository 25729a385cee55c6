/*
 * residency.h — which pages of the routed experts a rank holds.
 *
 * Every rank maps the whole file but should touch only its own experts.
 * moe_residency_advise marks the expert tensors MADV_RANDOM: no readahead
 * and no fault-around into other experts' pages.  That also gives those
 * ranges VMAs of their own, which is what lets /proc/self/smaps report
 * their resident size (moe_residency_resident), to compare with the bytes
 * the placement gives the rank (moe_residency_share).
 */
#ifndef MOE_WORKER_RESIDENCY_H
#define MOE_WORKER_RESIDENCY_H

#include <stdint.h>

#include "model.h"
#include "placement.h"

/* Advice only: a failure changes nothing but memory use. */
void moe_residency_advise(const moe_model *m);
/* Bytes of the routed experts that placement p gives rank. */
uint64_t moe_residency_share(const moe_model *m, const moe_placement *p, int rank);
/* Resident bytes of the expert tensors now (smaps; 0 if unreadable). */
uint64_t moe_residency_resident(const moe_model *m);

#endif
