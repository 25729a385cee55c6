/*
 * comm.h — everything the worker job says over MPI (the only user of mpi.h).
 *
 * Ranks of the worker job step in lockstep; a failure on one rank must not
 * leave the others waiting in a collective, and an idle job must not spin
 * (Open MPI busy-polls inside blocking collectives, 65-100% of a core per
 * waiting rank).  So every collective here is started non-blocking and
 * waited for by moe_comm_wait(): it polls with MPI_Test for a short while
 * (fast steps stay fast), then sleeps between polls with a growing pause
 * (idle ranks cost almost nothing).  Open MPI 4 does not progress
 * non-blocking collectives by itself, so callers that compute while an
 * exchange is in flight call moe_comm_progress() between pieces of work.
 *
 * Activations move as rows of `row_len` floats with a contiguous MPI
 * datatype, so counts are in rows and a long prefill never overflows int.
 */
#ifndef MOE_WORKER_COMM_H
#define MOE_WORKER_COMM_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"

typedef struct moe_comm moe_comm;

/* One exchange in flight. */
typedef struct moe_comm_req {
    void *impl;      /* MPI_Request, boxed so mpi.h stays in comm.c */
    bool active;
    double t_start;  /* moe_now() when it started (the test delay counts from it) */
} moe_comm_req;

/* name prefixes the messages this module prints ("moe-worker: rank 2: ..."),
 * so they say which program they come from; it must outlive the handle. */
int moe_comm_init(moe_comm **out, const char *name, int *argc, char ***argv, moe_err *err);
/* Finalizes MPI. */
void moe_comm_finalize(moe_comm *c);
int moe_comm_rank(const moe_comm *c);
int moe_comm_size(const moe_comm *c);

/* Ends the whole job now (another rank cannot be trusted to follow):
 * prints "NAME: rank R: msg" and calls MPI_Abort. */
_Noreturn void moe_comm_abort(moe_comm *c, int code, const char *msg);

/*
 * Agreement on failure: every rank passes its own status (MOE_OK or
 * MOE_ERR) and gets back the lowest failing rank, or -1 if all succeeded.
 * A failing rank prints its own reason; the others learn who failed.
 */
int moe_comm_agree(moe_comm *c, int status);

/* Bitwise AND of every rank's value (e.g. the CPU features all ranks
 * share, so they agree on one kernel set). */
uint64_t moe_comm_allreduce_and_u64(moe_comm *c, uint64_t mine);

/* Sleeping barrier (an idle job waits here). */
void moe_comm_barrier(moe_comm *c);

/*
 * The header that opens every lockstep step: each rank puts in its part,
 * every rank gets the job's sums back (one small allreduce, with an
 * operation of our own that sums the counts and takes the largest
 * tokens_max), so all ranks take the same decision (step, hold, idle,
 * leave) at the same step.
 */
typedef struct moe_comm_step_hdr {
    int64_t active;   /* live sequences here */
    int64_t tokens;   /* tokens in this rank's step */
    int64_t prefill;  /* of which prefill */
    int64_t stay;     /* rank 0 only: keep stepping when no rank has work */
    int64_t stop;     /* this rank saw SIGTERM: everyone leaves */
    int64_t hold;     /* ranks that ask the job to hold (no step, no token: their
                       * coordinator link is backed up); the job polls and waits */
    int64_t reconf;   /* ranks that propose a new expert placement this turn (rank 0
                       * only; docs/routing.md "Live rebalancing"): every rank then
                       * applies it before the turn's step, so all at one step */
    int64_t tokens_max; /* this rank's tokens; in the job's: the most any rank has
                         * (a max, not a sum: what the step's time follows) */
} moe_comm_step_hdr;
/* idle: the job had no step at the last header.  Its ranks then arrive
 * up to a pause apart, a scheduler's delay more on a loaded node, and a
 * wait that spun first (moe_comm_set_spin) would burn that time on every
 * header; so an idle header's wait sleeps from the start. */
void moe_comm_step_header(moe_comm *c, const moe_comm_step_hdr *mine, bool idle, moe_comm_step_hdr *job);

/* v[0..n) = the sum over ranks of each rank's v[0..n) (n >= 1), in place. */
void moe_comm_sum_i64(moe_comm *c, int64_t *v, int n);

/* Rank 0's bytes to every rank: on rank 0 *buf and *n are its bytes (kept);
 * elsewhere *buf is set to a malloc'd copy with a NUL after the *n bytes. */
void moe_comm_bcast_bytes(moe_comm *c, char **buf, int64_t *n);

/* all[r·n .. r·n+n) = rank r's mine[0..n). */
void moe_comm_allgather_i64(moe_comm *c, const int64_t *mine, int n, int64_t *all);

/* recv[r] = what rank r put in its send[me] (per-destination counts). */
void moe_comm_alltoall_i32(moe_comm *c, const int32_t *send, int32_t *recv);

/* Starts an all-to-all of rows of row_bytes bytes each (copied as they
 * are): send rows [send_off[r], +send_n[r]) go to rank r, landing at its
 * recv_off[me]; counts and offsets are in rows. */
void moe_comm_alltoallv_rows_start(moe_comm *c, int row_bytes, const void *send, const int32_t *send_n,
                                   const int32_t *send_off, void *recv, const int32_t *recv_n, const int32_t *recv_off,
                                   moe_comm_req *req);
/* Releases a request's storage (after it completed). */
void moe_comm_req_free(moe_comm_req *req);
/* Drives an exchange forward; true when it has completed. */
bool moe_comm_progress(moe_comm *c, moe_comm_req *req);
/* Waits (polling, then sleeping) until it completes. */
void moe_comm_wait(moe_comm *c, moe_comm_req *req);

/* Gathers variable-length byte strings on rank 0: returns a malloc'd
 * buffer of all ranks' bytes in rank order (with *lens[r] each) and a NUL
 * after them on rank 0, NULL elsewhere. */
char *moe_comm_gather_bytes(moe_comm *c, const void *mine, int64_t n, int64_t **lens);

/*
 * TEST KNOB, off (0) by default: every collective of the job (the step
 * header, and the counts, dispatch and combine of each MoE layer) completes
 * no sooner than `us` microseconds after it started, as if each message
 * round crossed a link with that one-way latency.  It only delays: what is
 * sent and received, and so every bit of the output, is unchanged.  For
 * emulated clusters (deploy/rig) where the kernel has no netem.
 */
void moe_comm_set_test_delay_us(moe_comm *c, int64_t us);

/* Seconds spent waiting inside moe_comm_wait since init (for stats). */
double moe_comm_wait_seconds(const moe_comm *c);

/*
 * Collective.  How long a wait polls before it starts to sleep: 2 ms when
 * each rank has cores of its own for its `threads` (unbound: this node's
 * ranks × threads fit the CPUs; bound to a CPU set: the set holds the
 * threads), so polling takes nothing from anyone and wakes at once; else
 * 100 µs (oversubscribed: a polling rank would hold a core
 * another rank needs).  The sleeps that follow double from 20 µs to 2 ms,
 * so a rank that only sleeps wakes up to that late after its data came:
 * bench model, 2 ranks × 1 thread on 2 cores, 16 sequences, 3 runs each,
 * 232-253 tok/s polling 100 µs, 260-273 polling 2 ms.  Returns the chosen
 * seconds.
 */
double moe_comm_set_spin(moe_comm *c, int threads);

#endif
