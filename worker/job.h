/*
 * job.h — the worker job's loop: every rank of the MPI job runs its own
 * generate loop (gen.h) in lockstep with the others, on requests from one
 * source.
 *
 * A turn: the source delivers what arrived (new sequences, releases) and
 * beats; the generate loop plans its step; one small collective (the step
 * header, comm.h) tells every rank what the job as a whole has; then
 * either every rank steps — a rank without tokens too, because every rank
 * must enter every expert exchange of the step — or, when no rank has
 * work or some rank asks the job to hold (its coordinator is not
 * reading), the job idles (a pause growing to 20 ms, or until the source
 * wakes it) or leaves, all ranks at the same turn.  Holding keeps every
 * sequence: nothing is produced, so nothing is lost, until the rank that
 * asked can send again.
 *
 * Before each step every rank tells its source how long the step should
 * take (steptime.h, from the job's earlier steps), so a watchdog can tell a
 * long step from a hung rank.
 *
 * The loop knows no source: the batch file (source_batch.c) and the
 * coordinator link (source_link.c) are both behind moe_source_ops.
 */
#ifndef MOE_WORKER_JOB_H
#define MOE_WORKER_JOB_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "comm.h"
#include "gen.h"
#include "steptime.h"

/* A source of requests (like redis's connection types: one table of
 * operations, one context). */
typedef struct moe_source_ops {
    const char *name;
    bool serves;  /* work may arrive while the job idles (a link, not a file) */
    /* Start what arrived: new sequences into g (moe_gen_add), releases out
     * of it (moe_gen_remove).  Called once a turn, before planning. */
    void (*poll)(void *ctx, moe_gen *g);
    /* Liveness: called once a turn and between the layers of a long step. */
    void (*beat)(void *ctx);
    /* Rank 0 only: keep the job up although no rank has had work for
     * idle_s seconds? */
    bool (*stay)(void *ctx, double idle_s);
    /* No rank has work, or the job holds: wait up to ms, or less if work
     * arrives. */
    void (*idle)(void *ctx, int ms);
    /* Does this rank ask the job to hold (take no step, so produce
     * nothing, while it keeps polling and beating)?  A link whose
     * coordinator stopped reading does.  NULL: never. */
    bool (*hold)(void *ctx);
    /* A step the job expects to take about expect_s seconds (steptime.h)
     * starts now; 0 when it is over.  Called on every rank around every
     * step.  NULL: not wanted. */
    void (*busy)(void *ctx, double expect_s);
    /* Rows, tokens and ends of the source's sequences (gen.h's callbacks;
     * their ctx is the source's). */
    int (*row)(void *ctx, const moe_gen_seq *s, const float *logits, moe_err *err);
    void (*token)(void *ctx, const moe_gen_seq *s, int index, int32_t tok, const moe_token_logprobs *lp);
    void (*prompt)(void *ctx, const moe_gen_seq *s, int first, const moe_token_logprobs *lp, int n);
    void (*end)(void *ctx, const moe_gen_seq *s, moe_gen_end why, const char *msg);
} moe_source_ops;

typedef struct moe_source {
    const moe_source_ops *ops;
    void *ctx;
} moe_source;

/* The generate loop's callbacks that reach src. */
moe_gen_cb moe_source_gen_cb(const moe_source *src);

/*
 * Reconfiguration between steps (a new expert placement, docs/routing.md
 * "Live rebalancing").  Each turn every rank asks `pending` (only rank 0's
 * answer is acted on; the others may say false); when rank 0 proposes,
 * the step header carries it and every rank calls `apply` at the same
 * turn, after the header and before the step, with the number of steps
 * taken so far — the same number on every rank.  apply may run
 * collectives (every rank is in it).  NULL ctl: never.
 */
typedef struct moe_job_ctl {
    bool (*pending)(void *ctx, int64_t steps);
    void (*apply)(void *ctx, int64_t steps);
    void *ctx;
} moe_job_ctl;

#define MOE_JOB_STEP_BUCKETS 15

typedef struct moe_job_stats {
    int64_t steps;                /* steps this rank took part in */
    int64_t tok_prefill, tok_decode;  /* this rank's */
    int64_t decode_steps;         /* steps in which no rank prefilled */
    int64_t decode_tokens;        /* the job's tokens in those steps */
    double decode_seconds, seconds;
    /* steps with work by duration, in the buckets of the protocol's step
     * bounds (proto/msg.h MOE_MSG_STEP_BOUNDS, + 1 for the rest), and their sum */
    uint64_t step_buckets[MOE_JOB_STEP_BUCKETS];
    double step_seconds;
    double hold_seconds;          /* turns the job held (a rank's coordinator was not reading) */
} moe_job_stats;

/*
 * st is kept current while the job runs (a source's beat may read it).
 * Runs until no rank has work and rank 0's source does not want to stay,
 * or until any rank's *stop is set (SIGTERM).  A malformed step (a bug)
 * aborts the job.  Sequences still live at the end stay in g.
 * first_step_cost: the guess of a step's seconds per token before one of
 * its size was timed (steptime.h; conservative: errs long).
 */
void moe_job_run(moe_comm *c, moe_gen *g, const moe_source *src, const moe_job_ctl *ctl, volatile sig_atomic_t *stop,
                 double first_step_cost, moe_job_stats *st);

#endif
