/*
 * client.h — moe-client's loop: requests in flight over a session
 * (session.h), their answers put together and checked, their outcomes.
 *
 * A single-threaded loop: the hello first (not waiting for its reply),
 * then up to `concurrency` requests in flight; chunks must continue
 * exactly where the previous one ended and stay within max_tokens (a gap,
 * an overlap or too many tokens fail the request with protocol_error and
 * cancel it; its late frames are dropped quietly); one Finish or Error
 * ends a request; a heartbeat every heartbeat_ms while anything is
 * outstanding; a timeout when the server says nothing for timeout_s;
 * SIGINT/SIGTERM cancel everything in flight and wait a little for the
 * finishes (a second signal stops waiting).  Whatever the server sends is
 * untrusted: a frame that does not decode or validate, or names a request
 * not in flight, is reported (a bounded number of times) and ignored.
 *
 * Output: a single request streams its text (or ids) to stdout as chunks
 * arrive; many requests print one result line each (output.h) in input
 * order, each as soon as every request before it is done.
 */
#ifndef MOE_TOOLS_CLIENT_CLIENT_H
#define MOE_TOOLS_CLIENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base.h"
#include "session.h"

typedef struct moe_client_opts {
    const char *endpoint;  /* for messages (the session is already open) */
    const char *name;      /* client name in the hello */
    bool single;           /* one request, streamed; else result lines */
    bool ids_out;          /* ids instead of text */
    bool verbose;          /* the server's hello reply to stderr */
    int concurrency;       /* requests in flight at once, >= 1 */
    double timeout_s;      /* silence from the server that ends the run */
    int heartbeat_ms;
    FILE *logprobs_out;    /* logprob lines (output.h's moe_output_logprobs), or NULL */
    FILE *routed_out;      /* routed-expert lines "<line> <pos> <layer> e1,..,eK [w1,..,wK]", or NULL */
    bool curve;            /* the session is CURVE (a silent server may have refused the key) */
} moe_client_opts;

typedef enum { MOE_CLIENT_PENDING = 0, MOE_CLIENT_SENT, MOE_CLIENT_DONE } moe_client_state;

/* One request.  The caller sets line and gen (not gen.id) or bad; the run
 * fills in the rest. */
typedef struct moe_client_req {
    int line;              /* in the request file (1 for a single request) */
    moe_session_gen gen;   /* what to send; its pointers stay valid for the run */
    const char *bad;       /* non-NULL: not a request (a bad line): fails with bad_line, never sent */

    char id[24];           /* "r<index>" */
    moe_client_state state;
    bool abandoned;        /* failed on our side and cancelled: its late messages are expected */
    double abandon_until;  /* ... until then */
    uint32_t next_index;   /* the index the next chunk must carry */
    int32_t *ids;          /* generated ids, [n_ids] */
    size_t n_ids, cap_ids;
    char *text;            /* generated text (many requests; a single one is printed at once) */
    size_t text_len, text_cap;
    double t_sent, t_first;/* t_first < 0 until the first chunk */
    bool ok;               /* finished with stop or length */
    int reason;            /* MOE__END_REASON__* when a Finish came, -1 otherwise */
    char err_name[32];     /* a server code in lower case (queue_full ...) or the client's own
                              (cancelled, timeout, protocol_error, client_error, bad_line) */
    char *err_msg;
    uint32_t prompt_tokens, completion_tokens; /* from the Finish's usage */
    uint32_t next_prompt_pos;  /* the prompt logprob position due next (from 1; repeats ignored) */
    uint32_t next_routed_row;  /* the routed-expert row due next (repeats ignored) */
    uint32_t queue_pos;    /* its place in the server's queue as last told (0: not queued) */
} moe_client_req;

/* How the run ended, beyond each request's outcome. */
typedef struct moe_client_result {
    int signal;            /* the first SIGINT/SIGTERM, 0 if none */
    bool timed_out;
    bool out_error;        /* writing stdout failed */
    bool single_printed;   /* something of the single request is on stdout */
    double wall_s;
} moe_client_result;

/* Runs reqs[0..n) to their ends over s (opened by the caller, with a send
 * timeout that bounds a cancel).  MOE_ERR only when the run itself cannot
 * go on (signal set-up, polling); request failures are in the requests. */
int moe_client_run(const moe_client_opts *o, moe_session *s, moe_client_req *reqs, size_t n, moe_client_result *res,
                   moe_err *err);

/* Frees what the run allocated in reqs. */
void moe_client_reqs_free(moe_client_req *reqs, size_t n);

#endif
