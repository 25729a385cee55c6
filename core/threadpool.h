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

/* Where the time of the pool's runs went (for profiles: bench-decode
 * --profile).  Seconds, summed over runs since the last reset. */
typedef struct moe_pool_stats {
    uint64_t runs;      /* runs with more than one thread */
    double run_s;       /* the caller inside moe_pool_run */
    double own_s;       /* the caller running its own share */
    double join_s;      /* the caller waiting for the others after its share */
    double lag_s;       /* pool threads: from a run's publication to their start (sum over threads) */
    double busy_s;      /* pool threads: running their share (sum over threads) */
    uint64_t sleeps;    /* pool threads that went to sleep waiting for a run */
} moe_pool_stats;
/* Turns timing on or off (off by default: no clock reads); resets it.
 * Call between runs only. */
void moe_pool_stats_enable(moe_pool *p, bool on);
void moe_pool_stats_get(const moe_pool *p, moe_pool_stats *st);

/* One step of a spin wait (x86 PAUSE: yields the core's pipeline to its
 * sibling and saves power while a thread waits for another). */
static inline void moe_pool_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* The [lo, hi) share of n items for thread ith of nth. */
static inline void moe_pool_slice(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

#endif
