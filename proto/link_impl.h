/*
 * link_impl.h — what link.c and auth.c share inside proto/ (not for
 * other modules): the context, so the ZAP handler lives on the links'
 * libzmq context and is counted like a link.
 */
#ifndef MOE_PROTO_LINK_IMPL_H
#define MOE_PROTO_LINK_IMPL_H

#include <stdbool.h>

struct moe_link_ctx {
    void *z;
    int n_links;      /* open links and ZAP handlers: zmq_ctx_term would block on any of them */
    bool zap_running; /* a handler is bound to inproc://zeromq.zap.01 */
};

static inline bool moe_link_ctx_zap_running(const struct moe_link_ctx *c) { return c->zap_running; }

#endif
