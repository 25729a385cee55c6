/*
 * source.h — the two sources of the worker job's requests (job.h's
 * moe_source): a batch file, and the coordinator link.
 *
 * Batch (tests, benchmarks): every rank reads the same file, places its
 * requests on ranks the same way (longest first, to the least-loaded rank),
 * starts its own, and at the end the results are printed by rank 0 in
 * input order, one line per request: the generated ids, or "error: ...".
 *
 * Link (serving): every rank connects to the coordinator's worker
 * endpoint, says hello until answered, then heartbeats with its free cache
 * and live sequences; Assign starts a sequence (a replay carries the tokens
 * already emitted), Release drops one; every sampled token and every end
 * goes back at once.
 */
#ifndef MOE_WORKER_SOURCE_H
#define MOE_WORKER_SOURCE_H

#include <stdint.h>

#include "comm.h"
#include "job.h"
#include "link.h"
#include "model.h"

/* ---- batch file ---- */

typedef struct moe_source_batch moe_source_batch;

typedef struct moe_batch_opts {
    const char *path;
    const char *dump_dir;    /* DIR/req<i>.logits.f32 per request, or NULL */
    double linger;           /* seconds to stay up after the last step with work */
    int replay_after;        /* > 0: a sequence that has emitted this many tokens is dropped and
                              * added again as a replay (prompt + emitted, as after a restart);
                              * its logits file starts again with the replay's rows */
} moe_batch_opts;

/* Reads and places the requests (the same on every rank). */
int moe_source_batch_open(moe_source_batch **out, const moe_batch_opts *o, const moe_model *m, int rank, int n_rank,
                          moe_err *err);
/* A batch with no file: only lingers (an idle job, for tests). */
moe_source_batch *moe_source_batch_empty(double linger);
void moe_source_batch_free(moe_source_batch *b);
/* What this rank's engine must hold: its sequences, the longest one
 * (tokens + 1) and the cache tokens they need with blocks of block. */
void moe_source_batch_sizes(const moe_source_batch *b, int block, int *n_seqs, int64_t *max_len, int64_t *cache_tokens);
/* Starts this rank's requests in g (and opens their logits files). */
int moe_source_batch_start(moe_source_batch *b, moe_gen *g, moe_err *err);
/* Requests this rank owns. */
int moe_source_batch_owned(const moe_source_batch *b);
/* Gathers the results on rank 0 and prints them in input order; returns
 * the number of failed requests (on every rank). */
int moe_source_batch_report(moe_source_batch *b, moe_comm *c);
moe_source moe_source_batch_source(moe_source_batch *b);

/* ---- coordinator link ---- */

typedef struct moe_source_link moe_source_link;

typedef struct moe_link_src_opts {
    const char *endpoint;
    int heartbeat_ms;
    int max_seqs;
    int64_t max_ctx;          /* per sequence, as the generate loop's */
    const char *kernels;      /* the job's kernel set (hello), or NULL */
    int64_t outbox_bytes;     /* frames the coordinator has not taken, held here; 0: 64 MiB */
    int sndhwm;               /* the link's own queue in messages; 0: 100000 */
    int sndbuf;               /* its kernel send buffer in bytes; 0: the system's (tests make it small) */
    const moe_link_curve *curve; /* CURVE keys (the coordinator's --worker-key pair), or NULL; used at open */
} moe_link_src_opts;

/* A rank's figures for the coordinator's metrics, sent with every
 * heartbeat.  Filled by the program that holds the engine and the
 * exchange; pointers stay valid until the next call. */
typedef struct moe_link_stats {
    const moe_job_stats *job;       /* steps and their times; NULL: none */
    int64_t cache_blocks_total, cache_blocks_used;
    int cache_block_tokens;
    uint64_t xchg_bytes_sent, xchg_bytes_recv;
    int first_moe_layer, n_moe_layers;
    const uint64_t *expert_tokens;  /* [n_moe_layers] (token, expert) pairs this rank ran */
    uint64_t prefix_queries, prefix_hits; /* prompt tokens looked up in the prefix cache, and found */
    uint64_t spec_drafts, spec_accepted;  /* MTP draft tokens fed, and accepted */
    uint64_t spec_accepted_at[4];         /* accepted by position in the step's drafts (MOE_GEN_MAX_DRAFT) */
    int n_spec_pos;                       /* positions (0: not decoding with MTP) */
} moe_link_stats;

int moe_source_link_open(moe_source_link **out, const moe_link_src_opts *o, const moe_model *m, int rank, int n_rank,
                         moe_err *err);
/* The loop it serves (heartbeats report its free cache and sequences). */
void moe_source_link_attach(moe_source_link *l, moe_gen *g);
/* Where heartbeats take the rank's figures from (none: no stats sent). */
void moe_source_link_set_stats(moe_source_link *l, void (*fill)(void *ctx, moe_link_stats *st), void *ctx);
/* Rank 0: SetPlacement messages from the coordinator go to live (live.h),
 * and each outcome goes back as a PlacementResult. */
struct moe_live;
void moe_source_link_set_live(moe_source_link *l, struct moe_live *live);
/* The recorder: the coordinator's RecordControl turns x's recording on and
 * off (rows a rank keeps between sends: max_bytes), and the rows go out as
 * RecordRows before each token and end and at every beat, so the rows of a
 * step reach the coordinator before that step's tokens. */
struct moe_xchg;
void moe_source_link_set_record(moe_source_link *l, struct moe_xchg *x, size_t max_bytes);
/* Ends every live sequence with an error the coordinator sees. */
void moe_source_link_close(moe_source_link *l, moe_gen *g);
void moe_source_link_free(moe_source_link *l);
/* Heartbeats between the layers of a long step (xchg's tick). */
void moe_source_link_tick(void *l);
moe_source moe_source_link_source(moe_source_link *l);

#endif
