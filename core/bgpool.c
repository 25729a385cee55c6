/*
 * bgpool.c — background threads for an event loop (see bgpool.h): one
 * mutex, a condition for the threads, a FIFO to run and a FIFO run, and an
 * eventfd readable while the second is not empty.
 */
#include "bgpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct node {
    void *item;
    struct node *next;
} node;

typedef struct fifo {
    node *head, *tail;
} fifo;

struct moe_bgpool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t *threads;
    int n_threads;
    void (*run)(void *item);
    fifo todo, done;
    bool stop;
    int efd;
};

static void push(fifo *f, node *n)
{
    n->next = NULL;
    if (f->tail) f->tail->next = n;
    else f->head = n;
    f->tail = n;
}

static node *pop(fifo *f)
{
    node *n = f->head;
    if (n) {
        f->head = n->next;
        if (!f->head) f->tail = NULL;
    }
    return n;
}

static void *worker(void *arg)
{
    moe_bgpool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && !p->todo.head) pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop) break;
        node *n = pop(&p->todo);
        pthread_mutex_unlock(&p->mu);
        p->run(n->item);
        pthread_mutex_lock(&p->mu);
        push(&p->done, n);
        /* the counter only says "look"; it cannot overflow (2^64 - 2) */
        const uint64_t one = 1;
        if (write(p->efd, &one, sizeof one) < 0) {
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int moe_bgpool_init(moe_bgpool **out, int n_threads, void (*run)(void *item), moe_err *err)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > 16) return moe_err_set(err, "background threads: %d is not in 1..16", n_threads);
    moe_bgpool *p = moe_xcalloc(1, sizeof *p);
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->efd < 0) {
        const int e = errno;
        free(p);
        return moe_err_set(err, "eventfd: %s", strerror(e));
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->run = run;
    p->threads = moe_xcalloc((size_t)n_threads, sizeof *p->threads);
    for (int i = 0; i < n_threads; i++) {
        const int rc = pthread_create(&p->threads[i], NULL, worker, p);
        if (rc) {
            moe_bgpool_free(p, NULL);
            return moe_err_set(err, "pthread_create: %s", strerror(rc));
        }
        p->n_threads++;
    }
    *out = p;
    return MOE_OK;
}

void moe_bgpool_free(moe_bgpool *p, void (*drop)(void *item))
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    fifo *both[2] = {&p->todo, &p->done};
    for (int k = 0; k < 2; k++)
        for (node *n; (n = pop(both[k]));) {
            if (drop) drop(n->item);
            free(n);
        }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    close(p->efd);
    free(p->threads);
    free(p);
}

void moe_bgpool_submit(moe_bgpool *p, void *item)
{
    node *n = moe_xmalloc(sizeof *n);
    n->item = item;
    pthread_mutex_lock(&p->mu);
    push(&p->todo, n);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int moe_bgpool_fd(const moe_bgpool *p) { return p->efd; }

void *moe_bgpool_done(moe_bgpool *p)
{
    pthread_mutex_lock(&p->mu);
    node *n = pop(&p->done);
    if (!p->done.head) { /* quiet until the next push, which takes the same lock */
        uint64_t v;
        if (read(p->efd, &v, sizeof v) < 0) {
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (!n) return NULL;
    void *item = n->item;
    free(n);
    return item;
}
