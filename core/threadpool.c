/*
 * threadpool.c — generation-counted job hand-off.  The caller publishes a
 * job and bumps `gen`; workers see the new generation (spinning a little,
 * then sleeping), run their slice, and count down `pending`.
 */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_ITERS 4000

struct moe_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work;  /* workers wait for a new generation */
    pthread_cond_t cv_done;  /* caller waits for pending == 0 */
    atomic_uint gen;
    atomic_int pending;
    bool stop;
    moe_pool_fn fn;
    void *ctx;
};

typedef struct worker_arg {
    moe_pool *p;
    int ith;
} worker_arg;


static void *worker_main(void *arg)
{
    moe_pool *p = ((worker_arg *)arg)->p;
    const int ith = ((worker_arg *)arg)->ith;
    free(arg);
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int s = 0; g == seen && s < SPIN_ITERS; s++) {
            CPU_RELAX();
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen && !p->stop)
                pthread_cond_wait(&p->cv_work, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (g == seen) break; /* stop */
        seen = g;
        if (p->stop) break;
        p->fn(p->ctx, ith, p->n);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

int moe_pool_init(moe_pool **out, int n_threads, moe_err *err)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > 256) return moe_err_set(err, "thread count %d is not in 1..256", n_threads);
    moe_pool *p = moe_xcalloc(1, sizeof *p);
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    p->threads = moe_xcalloc((size_t)n_threads, sizeof *p->threads);
    for (int i = 1; i < n_threads; i++) {
        worker_arg *a = moe_xmalloc(sizeof *a);
        a->p = p;
        a->ith = i;
        int rc = pthread_create(&p->threads[i], NULL, worker_main, a);
        if (rc != 0) {
            free(a);
            p->n = i; /* threads 1..i-1 exist */
            moe_pool_free(p);
            return moe_err_set(err, "pthread_create: %s", strerror(rc));
        }
    }
    *out = p;
    return MOE_OK;
}

void moe_pool_free(moe_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p->threads);
    free(p);
}

int moe_pool_size(const moe_pool *p) { return p->n; }

void moe_pool_run(moe_pool *p, moe_pool_fn fn, void *ctx)
{
    if (p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    for (int s = 0; s < SPIN_ITERS && atomic_load_explicit(&p->pending, memory_order_acquire) > 0; s++) CPU_RELAX();
    if (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) pthread_cond_wait(&p->cv_done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
