/*
 * bgpool.h — a small pool of background threads for an event loop: the
 * loop hands items over, a thread runs one function on each, and finished
 * items come back to the loop through a queue and an eventfd it polls with
 * its sockets.  The loop never waits on the pool.
 *
 *   moe_bgpool_init(&p, 2, run, &err);
 *   moe_bgpool_submit(p, item);                  // from the loop
 *   poll(moe_bgpool_fd(p)) ... while ((item = moe_bgpool_done(p))) use(item);
 *
 * Items finish in any order.  (Unlike core/threadpool, whose threads work
 * together on one parallel step and are waited for.)
 */
#ifndef MOE_CORE_BGPOOL_H
#define MOE_CORE_BGPOOL_H

#include "base.h"

typedef struct moe_bgpool moe_bgpool;

/* n_threads in 1..16; run is called on a pool thread, once per item. */
int moe_bgpool_init(moe_bgpool **out, int n_threads, void (*run)(void *item), moe_err *err);
/* Stops the threads (an item being run finishes first); every item not
 * yet returned by moe_bgpool_done goes to drop (may be NULL). */
void moe_bgpool_free(moe_bgpool *p, void (*drop)(void *item));
void moe_bgpool_submit(moe_bgpool *p, void *item);
/* Readable while a finished item waits. */
int moe_bgpool_fd(const moe_bgpool *p);
/* The next finished item, or NULL (then the descriptor is quiet again). */
void *moe_bgpool_done(moe_bgpool *p);

#endif
