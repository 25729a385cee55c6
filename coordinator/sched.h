/*
 * sched.h — the coordinator's bookkeeping of requests and worker ranks,
 * free of any I/O so it can be tested alone.
 *
 * A request is queued (bounded queue: a full queue rejects at once), then
 * placed on the live rank with the most free cache that can hold its whole
 * sequence (prompt + max tokens), becoming a running sequence with an id
 * unique for the coordinator's lifetime.  Tokens arrive with their index;
 * the scheduler keeps every emitted token, so a request can be replayed on a
 * restarted job, and ignores an index it already has (a replay never
 * re-sends or changes a token).  A request ends exactly once: finished,
 * cancelled, expired (deadline), or failed (its rank was lost).
 *
 * Fairness: the queue is one FIFO per flow (a client: moe_sched_flow_new,
 * clients.c), and placement serves the flows round robin, one request a
 * turn, so a client with a thousand requests waiting delays another's by
 * one placement per turn, not a thousand.  Within a flow, first come first
 * served; a flow's head that no rank can take yet waits (nobody overtakes
 * it: a long request is never starved by short ones).  Requests of a lost
 * job's ranks (moe_sched_rank_requeue) come before every flow.  A flow may
 * hold at most max_queue_per_flow queued requests (its share of the queue).
 */
#ifndef MOE_COORD_SCHED_H
#define MOE_COORD_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"
#include "sampler.h"

typedef struct moe_sched moe_sched;

typedef enum {
    MOE_REQ_QUEUED = 0,
    MOE_REQ_RUNNING,
    MOE_REQ_DONE,
} moe_req_state;

typedef enum {
    MOE_END_NONE = 0,
    MOE_END_STOP,      /* stop token or stop string */
    MOE_END_LENGTH,    /* max tokens */
    MOE_END_CANCELLED, /* by the client, or the client went away */
    MOE_END_DEADLINE,
    MOE_END_ERROR,     /* e.g. its worker rank was lost */
} moe_end_reason;

typedef struct moe_sched_limits {
    int max_queue;        /* queued (not yet placed) requests */
    int max_running;      /* running sequences per rank */
    uint32_t epoch;       /* the upper 32 bits of every request id (the coordinator's epoch) */
    int max_queue_per_flow; /* queued requests of one flow (client); 0: max_queue */
    /* prefix-aware placement (off unless set): a request goes to the rank
     * the longest prefix of its prompt was last placed on (that rank likely
     * holds it in its prefix cache) when that rank could take it and runs
     * at most prefix_slack sequences more than the rank the load alone
     * would pick */
    bool prefix_placement;
    int prefix_slack;
} moe_sched_limits;

/* One client's FIFO of queued requests (opaque). */
typedef struct moe_sched_flow moe_sched_flow;

/* One request as the scheduler sees it. */
typedef struct moe_req {
    uint64_t id;          /* the scheduler's handle (also the sequence id on the worker) */
    void *owner;          /* the front end's per-request context (client, request id ...) */
    moe_req_state state;
    int rank;             /* when running */
    int32_t *prompt;
    int n_prompt;
    int max_tokens;
    int32_t *out;         /* emitted tokens [max_tokens] */
    int n_out;
    int logprobs;         /* -1: none; else alternatives per token (moe_sched_want_logprobs) */
    bool prompt_logprobs;
    moe_token_logprobs *lp;        /* [n_out] of out, when logprobs >= 0 (grows) */
    int cap_lp;
    moe_token_logprobs *prompt_lp; /* [n_prompt] when prompt_logprobs: entries 1 .. n_prompt_lp */
    int n_prompt_lp;      /* prompt positions received, in order from 1 */
    /* routed experts (moe_sched_want_routed): as the ranks sent them, LE bytes */
    bool routed, routed_w;
    uint8_t *r_ids;       /* int16 [n_prompt + max_tokens][r_width], allocated with the first piece */
    uint8_t *r_w;         /* float32, the same shape, when routed_w */
    int r_layers, r_top_k, r_first_moe;
    int64_t r_rows;       /* rows 0 .. r_rows - 1 are in */
    double deadline;      /* moe_now() time, 0 = none */
    int cached_tokens;    /* prompt tokens its rank took from the prefix cache (the last run's) */
    uint64_t cache_salt;  /* the prefix cache's isolation salt (0: none; moe_sched_set_salt) */
    int replays;          /* times it went back to the queue from a lost rank (moe_sched_rank_requeue) */
    moe_end_reason end;
    char error[MOE_ERR_MSG_MAX];
    moe_sched_flow *flow; /* whose queue it waits in (the scheduler's own for moe_sched_submit) */
    struct moe_req *q_prev, *q_next; /* its place in that queue, while queued */
} moe_req;

int moe_sched_init(moe_sched **out, int n_ranks, const moe_sched_limits *lim, moe_err *err);
void moe_sched_free(moe_sched *s);

/* Rank status, from the worker job's hello and heartbeats: the rank's
 * cache capacity in tokens.  Free cache = capacity − the whole-sequence
 * reservations (prompt + max tokens) of its running requests. */
void moe_sched_rank_update(moe_sched *s, int rank, int64_t cache_capacity_tokens);
/* The most sequences the rank runs at once (from its hello); the lower of
 * this and the scheduler's max_running applies. */
void moe_sched_rank_set_max_running(moe_sched *s, int rank, int max_running);
int64_t moe_sched_rank_free(const moe_sched *s, int rank);
/* A rank stopped answering: its running requests end with an error; returns how many. */
int moe_sched_rank_lost(moe_sched *s, int rank, const char *why);
bool moe_sched_rank_alive(const moe_sched *s, int rank);
/* A rank of a job being restarted: its running requests go back to the
 * head of the queue, oldest first, with their emitted tokens (placed again,
 * they are replays); returns how many.  The queue always has room for
 * them (its ring holds max_queue + every running request). */
int moe_sched_rank_requeue(moe_sched *s, int rank);

/* A flow (a client's queue) and its end: a flow is freed only with no
 * request queued in it (asserted); requests placed or ended need it no more. */
moe_sched_flow *moe_sched_flow_new(moe_sched *s);
void moe_sched_flow_free(moe_sched *s, moe_sched_flow *f);
int moe_sched_flow_n_queued(const moe_sched_flow *f);

/* Queues a request (the prompt is copied; max_tokens 0 only scores it) in
 * the scheduler's own flow.  MOE_ERR with *queue_full set when the queue,
 * or the flow's share of it, is at its bound. */
int moe_sched_submit(moe_sched *s, void *owner, const int32_t *prompt, int n_prompt, int max_tokens, double deadline,
                     moe_req **out, bool *queue_full, moe_err *err);
/* The same in flow f (NULL: the scheduler's own). */
int moe_sched_submit_flow(moe_sched *s, moe_sched_flow *f, void *owner, const int32_t *prompt, int n_prompt,
                          int max_tokens, double deadline, moe_req **out, bool *queue_full, moe_err *err);
/* Places queued requests while some rank can take them: replays first,
 * then the flows round robin (above); returns the newly running ones
 * through placed[] (capacity cap). */
int moe_sched_place(moe_sched *s, moe_req **placed, int cap);
/* Prompt tokens of a placement's longest prefix known on its rank (the
 * last moe_sched_place, per request; for tests and logs). */
int moe_sched_prefix_known(const moe_sched *s, const moe_req *r);

/* Logprobs for r, asked before it is placed: n_top alternatives per token
 * (-1: none), and the prompt positions' when prompt. */
void moe_sched_want_logprobs(moe_req *r, int n_top, bool prompt);
/* The rank says how many prompt tokens of the running request came from
 * its prefix cache (capped at the prompt). */
void moe_sched_cached(moe_sched *s, uint64_t id, uint32_t n);
/* The request shares cached prefixes (and placement hints) only with
 * requests of the same salt; set before it is placed. */
void moe_sched_set_salt(moe_req *r, uint64_t salt);
/* A token from the worker (lp: its logprobs, NULL if it brought none); false
 * if it was a duplicate (already emitted) or the request is not running. */
bool moe_sched_token(moe_sched *s, uint64_t id, int index, int32_t token, const moe_token_logprobs *lp);
/* The prompt logprob of position pos (>= 1) from the worker; kept only if it
 * is the next one missing (a replay's repeats and positions past the prompt
 * are ignored) and its id is the prompt's. */
bool moe_sched_prompt_logprob(moe_sched *s, uint64_t id, int pos, const moe_token_logprobs *lp);
/* The most routed-expert ids one request keeps (the protocol's
 * MOE_MSG_MAX_ROUTED_ENTRIES). */
#define MOE_SCHED_MAX_ROUTED_ENTRIES ((uint64_t)1 << 22)
/* Routed experts for r (asked before it is placed), with weights when w. */
void moe_sched_want_routed(moe_req *r, bool routed, bool w);
/* A piece of routed experts from the worker: rows first .. first + rows - 1
 * of layers x top_k int16 ids (LE bytes) and, when asked, float32 weights.
 * Kept only when the request asked, the piece joins what is in (first <=
 * rows in; a replay sends positions again, same values), fits prompt +
 * max_tokens rows and has the shape of the pieces before; else false. */
bool moe_sched_routed(moe_sched *s, uint64_t id, int64_t first, int64_t rows, int layers, int top_k, int first_moe,
                      const uint8_t *ids, const uint8_t *w);
/* All of r's prompt logprobs are in (or none were asked for). */
bool moe_sched_prompt_logprobs_done(const moe_req *r);
/* Ends a request (idempotent: the first reason wins); frees its cache share. */
void moe_sched_end(moe_sched *s, moe_req *r, moe_end_reason why, const char *error);
/* Requests past their deadline at `now` are ended with MOE_END_DEADLINE;
 * returns them through expired[] (capacity cap). */
int moe_sched_expire(moe_sched *s, double now, moe_req **expired, int cap);

moe_req *moe_sched_find(const moe_sched *s, uint64_t id);
/* Drops a finished request (after the front end has reported its end). */
void moe_sched_forget(moe_sched *s, moe_req *r);

int moe_sched_n_queued(const moe_sched *s);
/* A queued request's place in line (1: placed next, if ranks free up and
 * no request comes to a flow served before it); 0 if not queued.
 * O(flows + its place in its flow). */
int moe_sched_queue_position(const moe_sched *s, const moe_req *r);
int moe_sched_n_running(const moe_sched *s, int rank); /* rank -1: all ranks */

#endif
