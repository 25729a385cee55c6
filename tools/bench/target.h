/*
 * target.h — where moe-bench sends its requests, behind one small table so
 * that the run loop (run.h) does not know HTTP from ZMQ:
 *
 *   http  an OpenAI-compatible server (moe-coordinator --http, llama-server,
 *         vLLM): POST /v1/completions or /v1/chat/completions with
 *         "stream": true, read as Server-Sent Events, libcurl's multi
 *         interface (every request a transfer of one multi handle, all on
 *         this thread); a chunk with text is one content chunk (1 token
 *         unless the usage says otherwise), the usage chunk gives the
 *         output tokens;
 *   zmq   moe-coordinator's native protocol through moe-client's session
 *         (tools/client/session.h): a chunk's ids are its tokens, the
 *         Finish's usage the output tokens.
 *
 * Both ask for greedy decoding (temperature 0), as vLLM's benchmark does,
 * and for max_tokens = the prompt's output length; --ignore-eos makes
 * every request run to it.
 */
#ifndef MOE_TOOLS_BENCH_TARGET_H
#define MOE_TOOLS_BENCH_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "dataset.h"
#include "stats.h"

typedef struct moe_bench_target moe_bench_target;

typedef struct moe_bench_target_cfg {
    const char *base_url;   /* http: "http://HOST:PORT" */
    const char *endpoint;   /* http: "/v1/completions" or "/v1/chat/completions" */
    const char *connect;    /* zmq: the endpoint */
    const char *curve_server_key, *curve_secret; /* zmq: CURVE key files (both or neither) */
    const char *model;      /* the "model" field (NULL: left out) */
    const char *api_key;    /* http: a bearer token, or NULL */
    bool ignore_eos;
    double timeout_s;       /* a request that receives nothing for this long fails */
} moe_bench_target_cfg;

int moe_bench_target_open(moe_bench_target **out, const moe_bench_target_cfg *c, moe_err *err);
void moe_bench_target_close(moe_bench_target *t); /* NULL is fine */

/* Times are seconds since t0 (moe_now()). */
void moe_bench_target_set_t0(moe_bench_target *t, double t0);

/* Sends p; rec (kept until the request is done) gets its times, chunks and
 * outcome; slot is what step reports when it is done.  MOE_ERR only when
 * the request cannot be started at all (rec is then failed, and done). */
int moe_bench_target_submit(moe_bench_target *t, size_t slot, const moe_bench_prompt *p, moe_bench_rec *rec,
                            moe_err *err);

/* Waits up to timeout_ms for progress; the slots of requests that ended
 * are written to done[0..*n_done) (room for every request in flight).
 * MOE_ERR only when the target itself fails. */
int moe_bench_target_step(moe_bench_target *t, int timeout_ms, size_t *done, size_t *n_done, moe_err *err);

/* Without the model file: the distinct ids of a built-in English text as
 * the server's POST BASE/tokenize encodes it (vLLM's {"prompt"} and
 * llama-server's {"content"} in one body; both answer {"tokens": [...]}),
 * a pool of real, normal tokens of the served vocabulary for random
 * prompts.  *ids is malloc'ed. */
int moe_bench_http_vocab(const char *base_url, const char *api_key, int32_t **ids, size_t *n, moe_err *err);

#endif
