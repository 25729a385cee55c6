/*
 * workers.h — the coordinator's side of the worker job: one ROUTER that
 * the ranks (moe-worker --coordinator) connect to, and what is known of
 * each rank.
 *
 * A rank joins with a WorkerHello (rank, job id, cache size, max_seqs, its
 * model's vocabulary and context), checked whole before it changes
 * anything; from then on the rank is bound to its connection, its CURVE
 * key (if any) and its job until it is lost, and a hello for it from
 * anyone else is refused.  It stays alive by heartbeats, which also
 * list the sequences it holds: one the coordinator no longer wants there is
 * released.  A heartbeat may announce a long step (step_expect_ms): the
 * rank may then be silent longer, within a bound (cfg.max_step_ms).  A rank
 * silent past the timeout, whose job the supervisor found dead, or whose
 * connection closed when a new job's rank says hello, is lost: the loop
 * hears it first (rank_lost), then the scheduler ends its requests.  No
 * send to a rank blocks: what its link does not take at once waits in a
 * bounded outbox (proto/outbox.h), and a rank that lets it overflow is lost
 * too.  Queued requests are placed through the
 * scheduler and sent as Assign messages, built here from plain C (the
 * scheduler's request and the loop's sampler configuration).
 */
#ifndef MOE_COORD_WORKERS_H
#define MOE_COORD_WORKERS_H

#include <stdbool.h>
#include <stdint.h>

#include "link.h"
#include "sampler.h"
#include "front.h"
#include "sched.h"

typedef struct moe_workers moe_workers;

/* What a rank's heartbeat says, as plain C (pointers valid during the
 * call).  The figures are counted since the rank started. */
typedef struct moe_rank_report {
    int rank;
    int64_t sequences;             /* sequences it holds */
    uint64_t cache_tokens_free;    /* not promised to a sequence */
    bool has_stats;                /* the rest is set */
    uint64_t steps;
    double step_seconds_sum;
    const uint64_t *step_counts;   /* [n_step_counts]: per bucket of MOE_MSG_STEP_BOUNDS, + the rest; 0: none */
    int n_step_counts;
    uint64_t cache_blocks_total, cache_blocks_used;
    uint32_t cache_block_tokens;
    uint64_t xchg_bytes_sent, xchg_bytes_recv;
    int first_moe_layer, n_moe_layers;
    const uint64_t *expert_tokens; /* [n_moe_layers]: (token, expert) pairs its experts ran */
    uint64_t tokens_prefill, tokens_decode;
    uint64_t prefix_cache_queries, prefix_cache_hits; /* prompt tokens looked up, and found */
    uint64_t spec_draft_tokens, spec_accepted_tokens; /* MTP drafts fed, and accepted */
    const uint64_t *spec_accepted_per_pos;         /* [n_spec_pos] (checked: at most 4, summing to accepted) */
    int n_spec_pos;
} moe_rank_report;

/* The loop's side, called from moe_workers_recv and _tick. */
typedef struct moe_workers_sink {
    void *ctx;
    /* Rank k is gone (why says how); called before the scheduler ends its
     * running requests, so the loop can give them a clear error. */
    void (*rank_lost)(void *ctx, int rank, const char *why);
    /* A rank ended sequence r (already checked to be its own and running). */
    void (*seq_end)(void *ctx, moe_req *r, moe_end_reason why, const char *message);
    /* The smallest context of the live ranks' models is now max_context
     * tokens (0: no live rank said one); rank: whose join or loss changed
     * it (-1: the whole job). */
    void (*context)(void *ctx, int rank, uint32_t max_context);
    /* Every rank has said hello (again after moe_workers_job_lost). */
    void (*ready)(void *ctx);
    /* The sampling of a request being placed (the scheduler's owner is the loop's). */
    const moe_sampler_cfg *(*sampling)(void *ctx, const moe_req *r);
    /* Optional (NULL: not wanted).  A new token of r, taken by the
     * scheduler (duplicates of a replay are not reported). */
    void (*token)(void *ctx, moe_req *r);
    /* A rank's heartbeat. */
    void (*report)(void *ctx, const moe_rank_report *rep);
    /* Optional.  The job applied (ok) or refused a new expert placement
     * (its own automatic one, or one sent); balancedness -1: no load. */
    void (*placement)(void *ctx, bool ok, double bal_before, double bal_after);
    /* Optional: the recorder's rows from a rank (checked: rows x (24 + 8
     * top_k) bytes); dropped: rows the rank could not keep. */
    void (*record_rows)(void *ctx, int rank, const uint8_t *data, size_t rows, int top_k, uint64_t dropped);
} moe_workers_sink;

typedef struct moe_workers_cfg {
    const char *endpoint;      /* where to bind the ROUTER */
    int n_ranks;               /* ranks the job must have */
    int64_t timeout_ms;        /* a rank silent this long is lost, ... */
    int64_t max_step_ms;       /* ... or during a step it announced, MOE_WORKERS_STEP_FACTOR × the
                                  step's expected time if longer, capped by this */
    uint32_t vocab;            /* every rank must serve this vocabulary */
    bool replay;               /* a lost rank's requests are queued again (the job is restarted),
                                  not ended */
    uint32_t epoch;            /* the coordinator's epoch, sent in every hello reply */
    int64_t outbox_bytes;      /* frames a rank's link has not taken wait in its outbox, at most this
                                  many bytes (0: 64 MiB); over it the rank is lost */
    int sndhwm, sndbuf;        /* the ROUTER's queue per rank (messages) and kernel send buffer (bytes);
                                  0: libzmq's and the system's defaults (small in tests) */
    const moe_link_curve *curve; /* CURVE on the endpoint (zap_domain "worker": only the job's key), or NULL */
} moe_workers_cfg;

/* How many times a rank's own expectation of a long step it may take
 * (the rank's figure errs long already; a prompt's later chunks cost more
 * than its earlier ones, and the machine may be loaded). */
#define MOE_WORKERS_STEP_FACTOR 4

/* sched must outlive the workers. */
int moe_workers_open(moe_workers **out, moe_link_ctx *lctx, const moe_workers_cfg *cfg, moe_sched *sched,
                     const moe_workers_sink *sink, moe_err *err);
/* Logs what each rank served; NULL is fine. */
void moe_workers_close(moe_workers *w);

void moe_workers_poll_item(moe_workers *w, moe_link_poll_item *item);
const char *moe_workers_endpoint(const moe_workers *w);

/* Reads what the ranks sent (a bounded amount). */
void moe_workers_recv(moe_workers *w);
/* Sends what waits in the ranks' outboxes (every turn of the loop); a
 * rank whose outbox overflowed is lost here. */
void moe_workers_flush(moe_workers *w);
/* Ranks silent past the timeout are lost. */
void moe_workers_tick(moe_workers *w, double now);
/* The whole job is gone (the supervisor restarts it): every rank is lost
 * (rank_lost for each known one) and the workers are not ready until every
 * rank of the next job has said hello. */
void moe_workers_job_lost(moe_workers *w, const char *why);
/* A placement file's text to rank 0 of the job (SetPlacement), which
 * proposes it to every rank; MOE_ERR if rank 0 is not alive or the text
 * is empty or too long.  *id numbers it. */
int moe_workers_set_placement(moe_workers *w, const char *text, size_t len, uint64_t *id, moe_err *err);
/* The last placement sent and rank 0's answer (PlacementResult). */
void moe_workers_placement(const moe_workers *w, moe_front_placement *out);
/* Places queued requests on ranks and sends them. */
void moe_workers_place(moe_workers *w);
/* The rank running r lets its sequence go (if r runs on a live rank). */
void moe_workers_release(moe_workers *w, const moe_req *r);

bool moe_workers_ready(const moe_workers *w);      /* every rank has said hello */
bool moe_workers_any_alive(const moe_workers *w);
/* Why a rank was refused last (wrong model, wrong rank count) while the
 * job was not ready; NULL if none. */
const char *moe_workers_refused(const moe_workers *w);
/* Rank k has said hello and not been lost since. */
bool moe_workers_rank_alive(const moe_workers *w, int k);
int moe_workers_n_known(const moe_workers *w);     /* ranks that have said hello */

/* Turns the expert distribution recorder on or off on every rank (and on
 * ranks that join later, while on). */
void moe_workers_record(moe_workers *w, bool on);

#endif
