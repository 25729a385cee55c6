/*
 * group.c — counting sort of slots by expert (group.h).
 */
#include "group.h"

#include <string.h>

#include "base.h"

int32_t moe_group_by_expert(const int32_t *ids, int32_t n, int n_expert, int32_t *off, int32_t *order)
{
    memset(off, 0, ((size_t)n_expert + 1) * sizeof *off);
    for (int32_t i = 0; i < n; i++)
        if (ids[i] >= 0) {
            MOE_ASSERT(ids[i] < n_expert);
            off[ids[i] + 1]++;
        }
    for (int e = 0; e < n_expert; e++) off[e + 1] += off[e];
    /* off[e] walks expert e's run while it is filled, then is restored */
    for (int32_t i = 0; i < n; i++)
        if (ids[i] >= 0) order[off[ids[i]]++] = i;
    for (int e = n_expert; e > 0; e--) off[e] = off[e - 1];
    off[0] = 0;
    return off[n_expert];
}
