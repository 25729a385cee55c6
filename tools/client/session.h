/*
 * session.h — a client's ZMQ session with moe-coordinator: one DEALER
 * (proto/link.h) and the client side of the protocol (docs/protocol.md):
 * the hello, GenerateRequests built from plain values, heartbeats, cancels,
 * receiving and waiting.  It keeps no request state: what a request is and
 * how its answers add up is the caller's (moe-client's loop, client.h; the
 * benchmark's).  Protobuf structs are built here and only live for a send.
 *
 *   moe_session *s;
 *   moe_session_open(&s, "tcp://127.0.0.1:5555", "me", 500, NULL, &err);
 *   moe_session_hello(s, &err);                 // then requests right away
 *   moe_session_generate(s, &gen, &err);        // MOE_LINK_AGAIN: try later
 *   moe_session_poll(s, false, -1, 1000, &in, NULL, &err);
 *   moe_session_recv(s, &msg, &err) ... moe_link_in_clear(&msg);
 *   moe_session_close(s);
 *
 * Sends never wait except a cancel (up to the send timeout): a full queue
 * means MOE_LINK_AGAIN and the caller decides.  What arrives is untrusted;
 * the link has size-capped and checked it (moe_link_in.code).
 */
#ifndef MOE_TOOLS_CLIENT_SESSION_H
#define MOE_TOOLS_CLIENT_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "chat.h"
#include "link.h"
#include "sampler.h"

typedef struct moe_session moe_session;

/* The endpoint to connect to from what a user wrote: tcp://, ipc:// and
 * inproc:// endpoints as they are, HOST:PORT as tcp://HOST:PORT.  Anything
 * else is an error with a hint. */
int moe_session_endpoint(const char *in, char *out, size_t cap, moe_err *err);

/* Connects (ZMQ connects lazily: nothing is known about the server yet).
 * send_timeout_ms bounds a blocking send (a cancel).  curve: the server's
 * key and this client's secret (auth.h, moe_auth_client_curve), or NULL.
 * A server that refuses the key never answers: the hello's wait times out
 * (ZMQ hides the refusal from the client). */
int moe_session_open(moe_session **out, const char *endpoint, const char *client_name, int send_timeout_ms,
                     const moe_link_curve *curve, moe_err *err);
void moe_session_close(moe_session *s); /* NULL is fine */

/* One GenerateRequest, as plain values (pointers borrowed for the call). */
typedef enum { MOE_SESSION_TEXT = 0, MOE_SESSION_IDS, MOE_SESSION_CHAT } moe_session_prompt;
typedef struct moe_session_gen {
    const char *id;                 /* the request id */
    moe_session_prompt prompt;
    const char *text;               /* TEXT */
    const int32_t *ids;             /* IDS: [n_ids] */
    size_t n_ids;
    const moe_chat_conv *chat;      /* CHAT */
    int32_t max_tokens;             /* 0: the server's default */
    const moe_sampler_cfg *sampling;/* only the parameters in its set mask are sent; NULL: none */
    int64_t deadline_ms;            /* 0: none */
    char *const *stop;              /* [n_stop] stop strings */
    size_t n_stop;
    const int32_t *stop_ids;        /* [n_stop_ids] */
    size_t n_stop_ids;
    bool no_stream;                 /* ask for the text in one chunk */
    int logprobs;                   /* each token's logprob + this many alternatives (0..20); -1: none
                                       (gen_defaults sets -1; a zeroed struct asks for 0 alternatives) */
    bool prompt_logprobs;           /* the prompt's too; with max_tokens 0 the prompt is only scored */
    bool routed, routed_weights;    /* return_routed_experts (and their weights) */
} moe_session_gen;

/* MOE_OK (sent), MOE_LINK_AGAIN (queue full: try again later) or MOE_ERR
 * (cannot be sent at all, e.g. above the frame cap; err says why). */
int moe_session_hello(moe_session *s, moe_err *err);
/* ids: the requests still waited for (at most MOE_MSG_MAX_HEARTBEAT_IDS),
 * so the server can say which it does not know and which are queued. */
int moe_session_heartbeat(moe_session *s, char **ids, size_t n_ids, moe_err *err);
int moe_session_generate(moe_session *s, const moe_session_gen *g, moe_err *err);
/* Waits for room up to the send timeout: a cancel matters more than a
 * heartbeat.  MOE_LINK_AGAIN then means the server is not reading. */
int moe_session_cancel(moe_session *s, const char *request_id, moe_err *err);

/* One frame if one is waiting: MOE_OK (in->code says whether it passed the
 * checks; in->msg is a Moe__ServerMsg), MOE_LINK_AGAIN, MOE_ERR. */
int moe_session_recv(moe_session *s, moe_link_in *in, moe_err *err);

/* Waits up to timeout_ms for a frame (*in), for room to send when want_out,
 * or for fd to be readable (*fd_in; fd < 0: none).  MOE_OK or MOE_ERR. */
int moe_session_poll(moe_session *s, bool want_out, int fd, int timeout_ms, bool *in, bool *fd_in, moe_err *err);

#endif
