/*
 * steptime.h — how long the worker job's next step should take, from the
 * steps it took: what the watchdog is told to expect.
 *
 * A step's time follows the most tokens any one rank has in it (the step
 * header's tokens_max: every rank waits for the busiest in the exchanges).
 * The figure kept is seconds per token, per size class of a step (powers
 * of two of tokens_max), and it rises at once and falls slowly, so the
 * expectation errs long:
 *
 *   timed class         its seconds a token × tokens
 *   else a smaller one  the nearest smaller class's × tokens (a token of a
 *                       small step costs more: fixed costs and less reuse)
 *   else a larger one   the nearest larger class's step time (a smaller
 *                       step takes no longer)
 *   else                first_per_token × tokens (the caller's conservative
 *                       guess from the model's size)
 *
 * Attention grows with a sequence's position, which this does not model:
 * the cost of a prompt's chunks rises chunk by chunk, and the figure
 * follows (it rises at once), but a step can take longer than expected;
 * the coordinator allows a multiple of the expectation (docs/architecture.md).
 * No I/O, no MPI: tested alone (steptime_test).
 */
#ifndef MOE_WORKER_STEPTIME_H
#define MOE_WORKER_STEPTIME_H

#include <stdint.h>

#define MOE_STEPTIME_CLASSES 32 /* tokens_max 1 .. 2^32 - 1 */

typedef struct moe_steptime {
    double first_per_token;                      /* seconds, before any step was timed */
    double per_token[MOE_STEPTIME_CLASSES];      /* by size class; 0: not timed yet */
} moe_steptime;

void moe_steptime_init(moe_steptime *st, double first_per_token);
/* Seconds a step whose busiest rank has `tokens` tokens should take
 * (tokens < 1 counts as 1). */
double moe_steptime_expect(const moe_steptime *st, int64_t tokens);
/* A step of `tokens` (its busiest rank's) took `seconds`. */
void moe_steptime_add(moe_steptime *st, int64_t tokens, double seconds);

#endif
