/*
 * threadpool.c — generation-counted job hand-off.  The caller publishes a
 * job and bumps `gen`; workers see the new generation (spinning a little,
 * then sleeping), run their slice, and count down `pending`.
 *
 * The mutex and condition variables are touched only when someone sleeps:
 * a sleeper announces itself (`sleepers`, `caller_waits`) before its last
 * look at the counter, and the other side looks at the announcement after
 * changing the counter (all sequentially consistent), so either the
 * sleeper sees the change or the changer sees the sleeper and signals
 * under the mutex.  A run with every thread spinning costs no lock.
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

/* One pool thread's timing, on its own cache lines (written by that thread
 * only, read by the caller between runs). */
typedef struct thread_stats {
    double lag_s, busy_s;
    atomic_ulong sleeps;
    char pad[64];
} thread_stats;

struct moe_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work;  /* workers wait for a new generation */
    pthread_cond_t cv_done;  /* caller waits for pending == 0 */
    atomic_uint gen;
    atomic_int pending;
    atomic_int sleepers;     /* pool threads in (or entering) cv_work */
    atomic_bool caller_waits;/* the caller in (or entering) cv_done */
    bool stop;
    moe_pool_fn fn;
    void *ctx;
    atomic_bool stats_on;
    double t_pub;            /* when the current run was published (stats_on) */
    moe_pool_stats st;       /* the caller's part */
    thread_stats *ts;        /* [n] */
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
    thread_stats *ts = &p->ts[ith];
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int s = 0; g == seen && s < SPIN_ITERS; s++) {
            CPU_RELAX();
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            if (atomic_load_explicit(&p->stats_on, memory_order_relaxed))
                atomic_fetch_add_explicit(&ts->sleeps, 1, memory_order_relaxed);
            atomic_fetch_add(&p->sleepers, 1);
            while ((g = atomic_load(&p->gen)) == seen && !p->stop) pthread_cond_wait(&p->cv_work, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (g == seen) break; /* stop */
        seen = g;
        if (p->stop) break;
        if (atomic_load_explicit(&p->stats_on, memory_order_relaxed)) {
            const double t0 = moe_now();
            p->fn(p->ctx, ith, p->n);
            const double t1 = moe_now();
            ts->lag_s += t0 - p->t_pub;
            ts->busy_s += t1 - t0;
        } else {
            p->fn(p->ctx, ith, p->n);
        }
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_waits)) {
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
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_waits, false);
    atomic_init(&p->stats_on, false);
    p->ts = moe_xcalloc((size_t)n_threads, sizeof *p->ts);
    for (int i = 0; i < n_threads; i++) atomic_init(&p->ts[i].sleeps, 0);
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
    free(p->ts);
    free(p);
}

int moe_pool_size(const moe_pool *p) { return p->n; }

void moe_pool_stats_enable(moe_pool *p, bool on)
{
    atomic_store_explicit(&p->stats_on, on, memory_order_relaxed);
    memset(&p->st, 0, sizeof p->st);
    for (int i = 0; i < p->n; i++) {
        p->ts[i].lag_s = p->ts[i].busy_s = 0.0;
        atomic_store_explicit(&p->ts[i].sleeps, 0, memory_order_relaxed);
    }
}

void moe_pool_stats_get(const moe_pool *p, moe_pool_stats *st)
{
    *st = p->st;
    for (int i = 1; i < p->n; i++) {
        st->lag_s += p->ts[i].lag_s;
        st->busy_s += p->ts[i].busy_s;
        st->sleeps += atomic_load_explicit(&p->ts[i].sleeps, memory_order_relaxed);
    }
}

void moe_pool_run(moe_pool *p, moe_pool_fn fn, void *ctx)
{
    if (p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    const bool timed = atomic_load_explicit(&p->stats_on, memory_order_relaxed);
    const double t0 = timed ? moe_now() : 0.0;
    p->fn = fn;
    p->ctx = ctx;
    p->t_pub = t0;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
    }
    const double t1 = timed ? moe_now() : 0.0;
    fn(ctx, 0, p->n);
    const double t2 = timed ? moe_now() : 0.0;
    for (int s = 0; s < SPIN_ITERS && atomic_load_explicit(&p->pending, memory_order_acquire) > 0; s++) CPU_RELAX();
    if (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_waits, true);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->cv_done, &p->mu);
        atomic_store(&p->caller_waits, false);
        pthread_mutex_unlock(&p->mu);
    }
    if (timed) {
        const double t3 = moe_now();
        p->st.runs++;
        p->st.run_s += t3 - t0;
        p->st.own_s += t2 - t1;
        p->st.join_s += t3 - t2;
    }
}
