/*
 * front_zmq.h — the coordinator's ZMQ client API (moe-client, the
 * benchmarks): one ROUTER, protobuf ClientMsg in, ServerMsg out
 * (docs/protocol.md), behind the moe_front interface (front.h).
 *
 * At the edge: a GenerateRequest, checked field by field by the link
 * (moe_msg_check_generate), becomes a moe_request_spec (its sampling a
 * moe_sampler_cfg); hello and heartbeat are answered here, and a request
 * from a client that has not sent a valid Hello is refused (BAD_REQUEST).
 * With CURVE only clients whose key is listed connect at all (auth.h), and
 * each client carries its key (the ZAP User-Id).  Clients are
 * known by routing id and kept alive by their heartbeats: one silent past
 * client_timeout_ms is reported to the loop (client_gone) and forgotten.
 * A refusal that meets back-pressure waits in a bounded list and is retried
 * until the client reads or times out.
 */
#ifndef MOE_COORD_FRONT_ZMQ_H
#define MOE_COORD_FRONT_ZMQ_H

#include <stdint.h>

#include "front.h"
#include "link.h"
#include "request.h"

typedef struct moe_front_zmq_cfg {
    const char *endpoint;      /* where to bind the ROUTER */
    const char *model_name;    /* for HelloReply */
    int64_t client_hwm;        /* messages queued to one client before back-pressure */
    int64_t client_sndbuf;     /* kernel send buffer (0: the system's) */
    int64_t client_timeout_ms; /* silence after which a client is gone */
    const moe_link_curve *curve; /* CURVE (zap_domain "client": only listed keys), or NULL */
} moe_front_zmq_cfg;

/* Binds the client ROUTER.  model is read on every frame (its limits, and
 * max_context, which the loop lowers to the ranks'); it must outlive the
 * front end. */
int moe_front_zmq_open(moe_front **out, moe_link_ctx *lctx, const moe_front_zmq_cfg *cfg,
                       const moe_request_model *model, const moe_front_sink *sink, moe_err *err);

#endif
