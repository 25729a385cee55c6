/*
 * clients.h — per-client accounting for the coordinator's loop: who a
 * client is, what it may have at once, and its queue (a scheduler flow).
 *
 * A client is named by its front end (front.h, client_key): a ZMQ
 * connection's CURVE key when it has one, else its peer address
 * (proto/link.h, MOE_LINK_CLIENT_MAX); an HTTP connection's address.
 * Never a ZMQ routing id: those cost nothing to mint, so 200 identities
 * from one host are one client here.
 *
 * Limits, each checked before any work grows with the request (before
 * tokenization):
 *   in flight      requests not yet over (tokenizing, queued, running);
 *   prompt bytes   a token bucket: rate bytes a second, holding up to
 *                  burst; a prompt is admitted while the bucket holds
 *                  min(its bytes, burst), then taken out of it (the bucket
 *                  may go below zero: one prompt larger than the burst
 *                  still passes on a full bucket, and then the client waits);
 *   queue share    the scheduler's max_queue_per_flow, on the client's flow.
 *
 * Memory stays bounded: a client with nothing in flight and a full bucket
 * is forgotten at the next moe_clients_tick.  No I/O: tested alone.
 */
#ifndef MOE_COORD_CLIENTS_H
#define MOE_COORD_CLIENTS_H

#include <stddef.h>

#include "base.h"
#include "sched.h"

typedef struct moe_clients moe_clients;
typedef struct moe_client moe_client;

typedef struct moe_clients_limits {
    int max_in_flight;         /* requests of one client not yet over; 0: no limit */
    double prompt_bytes_per_s; /* refill of the bucket; 0: no limit */
    double prompt_burst;       /* what the bucket holds (bytes); at least 1 with a rate */
} moe_clients_limits;

/* s gives each client its flow (and outlives the table). */
int moe_clients_init(moe_clients **out, moe_sched *s, const moe_clients_limits *lim, moe_err *err);
/* Every admitted request must be done first (asserted through the flows). */
void moe_clients_free(moe_clients *c);

/* The client named key (made on first use; key is copied, cut at 127 bytes). */
moe_client *moe_clients_get(moe_clients *c, const char *key, double now);
/* A request of prompt_bytes from cl: MOE_OK and it counts in flight until
 * moe_clients_done; else MOE_ERR, why in err and the limit's name in
 * *limit ("in_flight" or "prompt_bytes", for the metrics; nothing counted). */
int moe_clients_admit(moe_clients *c, moe_client *cl, size_t prompt_bytes, double now, const char **limit,
                      moe_err *err);
/* An admitted request is over. */
void moe_clients_done(moe_clients *c, moe_client *cl);
/* Forgets clients with nothing in flight and a full bucket. */
void moe_clients_tick(moe_clients *c, double now);

moe_sched_flow *moe_client_flow(const moe_client *cl);
const char *moe_client_key(const moe_client *cl);
int moe_client_in_flight(const moe_client *cl);
int moe_clients_count(const moe_clients *c);
/* Requests refused by these limits since start (for the logs and metrics). */
long long moe_clients_refused(const moe_clients *c);

#endif
