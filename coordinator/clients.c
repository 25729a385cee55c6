/*
 * clients.c — per-client limits (see clients.h): a chained hash of client
 * records by key, grown as clients come, shrunk by forgetting idle ones.
 */
#include "clients.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 128

struct moe_client {
    char key[KEY_MAX];
    uint64_t hash;
    moe_client *next;         /* in its bucket */
    moe_sched_flow *flow;
    int in_flight;
    double tokens, t_fill;    /* the prompt-byte bucket and when it was last filled */
};

struct moe_clients {
    moe_clients_limits lim;
    moe_sched *s;
    moe_client **buckets;
    size_t n_buckets, n;
    long long refused;
};

static uint64_t hash_of(const char *k)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *k; k++) h = (h ^ (unsigned char)*k) * 0x100000001b3ull;
    return h;
}

int moe_clients_init(moe_clients **out, moe_sched *s, const moe_clients_limits *lim, moe_err *err)
{
    *out = NULL;
    if (lim->max_in_flight < 0) return moe_err_set(err, "requests in flight per client: %d", lim->max_in_flight);
    if (!(lim->prompt_bytes_per_s >= 0) || (lim->prompt_bytes_per_s > 0 && !(lim->prompt_burst >= 1)))
        return moe_err_set(err, "prompt bytes per second per client: rate %g, burst %g", lim->prompt_bytes_per_s,
                           lim->prompt_burst);
    moe_clients *c = moe_xcalloc(1, sizeof *c);
    c->lim = *lim;
    c->s = s;
    c->n_buckets = 64;
    c->buckets = moe_xcalloc(c->n_buckets, sizeof *c->buckets);
    *out = c;
    return MOE_OK;
}

static void client_free(moe_clients *c, moe_client *cl)
{
    moe_sched_flow_free(c->s, cl->flow);
    free(cl);
}

void moe_clients_free(moe_clients *c)
{
    if (!c) return;
    for (size_t b = 0; b < c->n_buckets; b++)
        for (moe_client *cl = c->buckets[b], *nx; cl; cl = nx) {
            nx = cl->next;
            client_free(c, cl);
        }
    free(c->buckets);
    free(c);
}

static void rehash(moe_clients *c, size_t n_buckets)
{
    moe_client **nb = moe_xcalloc(n_buckets, sizeof *nb);
    for (size_t b = 0; b < c->n_buckets; b++)
        for (moe_client *cl = c->buckets[b], *nx; cl; cl = nx) {
            nx = cl->next;
            const size_t i = cl->hash & (n_buckets - 1);
            cl->next = nb[i];
            nb[i] = cl;
        }
    free(c->buckets);
    c->buckets = nb;
    c->n_buckets = n_buckets;
}

/* The bucket filled up to now. */
static void refill(const moe_clients *c, moe_client *cl, double now)
{
    if (c->lim.prompt_bytes_per_s <= 0) return;
    if (now > cl->t_fill) cl->tokens += (now - cl->t_fill) * c->lim.prompt_bytes_per_s;
    if (cl->tokens > c->lim.prompt_burst) cl->tokens = c->lim.prompt_burst;
    cl->t_fill = now;
}

moe_client *moe_clients_get(moe_clients *c, const char *key, double now)
{
    const uint64_t h = hash_of(key);
    for (moe_client *cl = c->buckets[h & (c->n_buckets - 1)]; cl; cl = cl->next)
        if (cl->hash == h && !strncmp(cl->key, key, KEY_MAX - 1)) return cl;
    if (c->n + 1 > 2 * c->n_buckets) rehash(c, 2 * c->n_buckets);
    moe_client *cl = moe_xcalloc(1, sizeof *cl);
    snprintf(cl->key, sizeof cl->key, "%s", key);
    cl->hash = hash_of(cl->key); /* of the key as kept (a longer one was cut) */
    cl->flow = moe_sched_flow_new(c->s);
    cl->tokens = c->lim.prompt_burst;
    cl->t_fill = now;
    const size_t i = cl->hash & (c->n_buckets - 1);
    cl->next = c->buckets[i];
    c->buckets[i] = cl;
    c->n++;
    return cl;
}

int moe_clients_admit(moe_clients *c, moe_client *cl, size_t prompt_bytes, double now, const char **limit,
                      moe_err *err)
{
    *limit = NULL;
    if (c->lim.max_in_flight > 0 && cl->in_flight >= c->lim.max_in_flight) {
        c->refused++;
        *limit = "in_flight";
        return moe_err_set(err, "this client has %d requests in flight, its limit", cl->in_flight);
    }
    if (c->lim.prompt_bytes_per_s > 0) {
        refill(c, cl, now);
        const double need = (double)prompt_bytes < c->lim.prompt_burst ? (double)prompt_bytes : c->lim.prompt_burst;
        if (cl->tokens < need) {
            c->refused++;
            *limit = "prompt_bytes";
            return moe_err_set(err, "this client sends more than %.0f prompt bytes a second; retry in %.2f s",
                               c->lim.prompt_bytes_per_s, (need - cl->tokens) / c->lim.prompt_bytes_per_s);
        }
        cl->tokens -= (double)prompt_bytes;
    }
    cl->in_flight++;
    return MOE_OK;
}

void moe_clients_done(moe_clients *c, moe_client *cl)
{
    (void)c;
    MOE_ASSERT(cl->in_flight > 0);
    cl->in_flight--;
}

void moe_clients_tick(moe_clients *c, double now)
{
    for (size_t b = 0; b < c->n_buckets; b++)
        for (moe_client **pp = &c->buckets[b]; *pp;) {
            moe_client *cl = *pp;
            refill(c, cl, now);
            if (cl->in_flight == 0 && moe_sched_flow_n_queued(cl->flow) == 0 &&
                (c->lim.prompt_bytes_per_s <= 0 || cl->tokens >= c->lim.prompt_burst)) {
                *pp = cl->next;
                client_free(c, cl);
                c->n--;
            } else pp = &cl->next;
        }
    /* a table grown by a flood shrinks back once the flood is forgotten */
    size_t want = c->n_buckets;
    while (want > 64 && c->n * 8 < want) want /= 2;
    if (want != c->n_buckets) rehash(c, want);
}

moe_sched_flow *moe_client_flow(const moe_client *cl) { return cl->flow; }
const char *moe_client_key(const moe_client *cl) { return cl->key; }
int moe_client_in_flight(const moe_client *cl) { return cl->in_flight; }
int moe_clients_count(const moe_clients *c) { return (int)c->n; }
long long moe_clients_refused(const moe_clients *c) { return c->refused; }
