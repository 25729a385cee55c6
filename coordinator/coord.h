/*
 * coord.h — the coordinator's loop: requests from the front ends
 * (front.h), tokenized and checked (request.h), queued and placed on ranks
 * (sched.h, workers.h), their tokens streamed back.
 *
 * One poll over every front end's sockets and the worker ROUTER (20 ms
 * timeout): worker frames, client frames, then housekeeping every 50 ms
 * (silent ranks, deadlines, queued requests no rank can run), placement of
 * queued requests, the new tokens of every request out to its client, and
 * the front ends' own periodic work.  The loop owns the model (tokenizer,
 * chat template, limits), the scheduler, the worker side and the requests
 * in flight; a front end is added after it is opened with
 * moe_coord_front_sink as its sink.
 *
 * Drain: once *term is set, new requests get SHUTTING_DOWN, requests in
 * flight finish, and moe_coord_run returns; what is still in flight after
 * drain_timeout_ms ends with SHUTTING_DOWN.  *term at 2 or more (a second
 * signal) ends everything in flight at once and returns.
 *
 * No worker job: a request waits at most no_ranks_timeout_ms while no
 * rank is alive, then ends with NOT_READY (saying why, e.g. a rank that
 * was refused for running another model).
 *
 * Metrics and logs: the loop stamps every request's events (arrival,
 * placement, each token, the end) for the metrics (coord_metrics.h) and
 * writes one log line per request when it is over (id, client, tokens,
 * TTFT, total time, finish reason).
 */
#ifndef MOE_COORD_COORD_H
#define MOE_COORD_COORD_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "base.h"
#include "exprec.h"
#include "front.h"
#include "link.h"
#include "request.h"

typedef struct moe_coord moe_coord;

typedef struct moe_coord_cfg {
    const char *model;         /* the GGUF the workers run (its tokenizer, template, limits) */
    const char *workers;       /* worker endpoint */
    int64_t ranks;             /* ranks in the worker job; ready when all said hello */
    int64_t queue;             /* queued requests before new ones are refused */
    int64_t max_running;       /* sequences per rank */
    int64_t prefix_slack;      /* prefix-aware placement's allowance (moe_sched_limits), -1: off */
    bool prefix_per_client;    /* cached prefixes shared only within a client (salted with its key) */
    int64_t max_tokens;        /* default max_tokens of a request */
    int64_t max_frame;         /* largest request frame */
    int64_t worker_timeout_ms; /* a rank silent this long is lost ... */
    int64_t max_step_ms;       /* ... or 4 × a step it announced if longer, at most this */
    int64_t worker_outbox_bytes; /* frames a rank has not taken wait up to this many bytes (0: 64 MiB); then it is lost */
    int64_t worker_hwm, worker_sndbuf; /* the worker socket's queue per rank and kernel buffer (0: defaults) */
    int64_t no_ranks_timeout_ms; /* a request waits at most this long while no rank is alive (then NOT_READY) */
    int64_t drain_timeout_ms;  /* a drain ends what is still in flight after this (SHUTTING_DOWN) */
    uint32_t epoch;            /* this process's epoch (not 0), in every sequence id (docs/protocol.md) */
    const char *metrics_file;  /* NULL, or where the metrics are written at exit and when asked */
    /* the expert distribution recorder (recorder.h) */
    const char *record_dir;    /* where dumps go (NULL: /tmp) */
    moe_exprec_mode record_mode; /* a start's default mode (0: stat) and stat window (0: 1 step) */
    int64_t record_window;
    int64_t record_max_bytes;  /* what one recording keeps (0: 256 MiB) */
    volatile sig_atomic_t *metrics_dump; /* set (e.g. by SIGUSR1): write metrics_file now */
    /* The supervisor (supervisor.h): with launch set the coordinator runs
     * the worker job itself, restarts it when it dies and replays the
     * requests it held; without, the job is someone else's and a lost
     * rank's requests end with WORKER_LOST. */
    char *const *launch;       /* the job's command (NULL-terminated), or NULL */
    int64_t max_start_failures; /* deaths before ready in a row that stop the restarts */
    int64_t restart_backoff_ms; /* first restart delay (doubles per death before ready, to 16x) */
    int64_t start_timeout_ms;   /* a job not ready after this long is dead */
    const char *job_file;       /* records the live job for a new coordinator to adopt; NULL: none */
    /* CURVE (docs/security.md): with curve_secret, the ZAP handler
     * (auth.h) admits only client_keys on the client endpoint and only
     * worker_key on the worker endpoint; an endpoint without keys stays
     * plain ZMTP. */
    const moe_key *curve_secret;   /* the coordinator's secret key; NULL: no CURVE */
    const moe_key *client_keys;    /* [n_client_keys]; 0 keys: the client endpoint is plain */
    size_t n_client_keys;
    const moe_key *worker_key;     /* the worker job's public key; NULL: the worker endpoint is plain */
    /* per client (clients.h: a CURVE key, else a peer address; never a ZMQ routing id) */
    int64_t client_in_flight;   /* requests not yet over; 0: no limit */
    int64_t client_queue;       /* queued requests (its share of the queue); 0: the whole queue */
    int64_t client_prompt_bps;  /* prompt bytes a second (burst: the larger of this and max_frame); 0: no limit */
    int64_t prompt_inline_bytes; /* prompts this large or larger are prepared off the loop */
    int64_t prompt_threads;     /* threads that prepare them */
} moe_coord_cfg;

/* Loads the model's tokenizer and template, binds the worker endpoint. */
int moe_coord_init(moe_coord **out, const moe_coord_cfg *cfg, moe_err *err);
/* Closes every front end and the worker side; NULL is fine. */
void moe_coord_free(moe_coord *c);

/* What a front end needs from the loop: the link context to bind with,
 * the model its requests are checked against, and the sink it reports to. */
moe_link_ctx *moe_coord_link_ctx(moe_coord *c);
/* CURVE settings for the ZMQ client front end (NULL: plain). */
const moe_link_curve *moe_coord_client_curve(const moe_coord *c);
const moe_request_model *moe_coord_model(const moe_coord *c);
const char *moe_coord_model_name(const moe_coord *c);
moe_front_sink moe_coord_front_sink(moe_coord *c);
/* The loop owns f from here on (closed by moe_coord_free); up to 4. */
int moe_coord_add_front(moe_coord *c, moe_front *f, moe_err *err);
const char *moe_coord_workers_endpoint(const moe_coord *c);

/* The metrics (Prometheus text 0.0.4, metrics.h; docs/metrics.md lists
 * them) as they stand; MOE_ERR if writing failed.  From the loop's thread. */
int moe_coord_metrics_write(moe_coord *c, FILE *out);

/* Serves until *term is set and every request in flight has finished. */
void moe_coord_run(moe_coord *c, volatile sig_atomic_t *term);

#endif
