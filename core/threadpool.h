/*
 * threadpool.h — a fixed pool of worker threads that run one parallel job
 * at a time.  A job is a function called once per thread with (ith, nth);
 * the function slices its own work from those two numbers, so the split is
 * static and reproducible.  Kernels never split one reduction across
 * threads, which keeps results independent of the thread count.
 *
 * The calling thread is thread 0; nth - 1 pool threads are created at init.
 * Waiting threads spin briefly, then sleep on a condition variable (the
 * machine may be shared, so an idle pool uses no CPU).
 */
#ifndef MOE_THREADPOOL_H
#define MOE_THREADPOOL_H

#include "base.h"

typedef struct moe_pool moe_pool;

typedef void (*moe_pool_fn)(void *ctx, int ith, int nth);

/* n_threads in 1..256 (1 = everything runs on the caller). */
int moe_pool_init(moe_pool **out, int n_threads, moe_err *err);
void moe_pool_free(moe_pool *p);
int moe_pool_size(const moe_pool *p);
/* Runs fn(ctx, ith, nth) on every thread, returns when all are done. */
void moe_pool_run(moe_pool *p, moe_pool_fn fn, void *ctx);

/* The [lo, hi) share of n items for thread ith of nth. */
static inline void moe_pool_slice(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

#endif
