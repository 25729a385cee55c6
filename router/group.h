/*
 * group.h — slots grouped by expert: the counting sort that both the
 * engine (its local experts) and the expert exchange (the rows a rank
 * received) use to run each expert once on all of its rows.
 */
#ifndef MOE_ROUTER_GROUP_H
#define MOE_ROUTER_GROUP_H

#include <stdint.h>

/*
 * ids[0..n) are slots (slot i = row i / k, choice i % k for k choices per
 * row) holding an expert id in [0, n_expert), or a negative value for a
 * slot with nothing to run.  On return expert e's slots are
 * order[off[e] .. off[e + 1]) (off has n_expert + 1 entries), in ascending
 * slot order, so rows ascend within an expert (a stable sort: which row
 * lands where never depends on anything but the ids).  Returns off[n_expert],
 * the number of slots grouped.  Ids must have been checked (< n_expert).
 */
int32_t moe_group_by_expert(const int32_t *ids, int32_t n, int n_expert, int32_t *off, int32_t *order);

#endif
