/*
 * outbox.c — a bounded queue of frames for one peer (outbox.h).
 */
#include "outbox.h"

#include <stdlib.h>

#include "msg.h"

typedef struct frame {
    uint8_t *data;
    size_t len;
} frame;

struct moe_outbox {
    int64_t max_bytes;
    frame *ring;              /* [cap], the waiting frames from head, in order */
    size_t head, n, cap, bytes;
};

moe_outbox *moe_outbox_new(int64_t max_bytes)
{
    MOE_ASSERT(max_bytes > 0);
    moe_outbox *o = moe_xcalloc(1, sizeof *o);
    o->max_bytes = max_bytes;
    return o;
}

void moe_outbox_clear(moe_outbox *o)
{
    for (size_t i = 0; i < o->n; i++) free(o->ring[(o->head + i) % o->cap].data);
    o->head = o->n = o->bytes = 0;
}

void moe_outbox_free(moe_outbox *o)
{
    if (!o) return;
    moe_outbox_clear(o);
    free(o->ring);
    free(o);
}

size_t moe_outbox_frames(const moe_outbox *o) { return o->n; }
size_t moe_outbox_bytes(const moe_outbox *o) { return o->bytes; }

static void pop(moe_outbox *o)
{
    frame *f = &o->ring[o->head];
    o->bytes -= f->len;
    free(f->data);
    o->head = (o->head + 1) % o->cap;
    o->n--;
}

int moe_outbox_flush(moe_outbox *o, moe_link *l, const moe_link_peer *to, moe_err *err)
{
    while (o->n > 0) {
        const frame *f = &o->ring[o->head];
        const int rc = moe_link_send_bytes(l, to, f->data, f->len, MOE_LINK_DONTWAIT, err);
        if (rc == MOE_LINK_AGAIN) return MOE_OK;
        pop(o); /* sent, or failed for good: either way it is done with */
        if (rc != MOE_OK) return rc;
    }
    return MOE_OK;
}

int moe_outbox_send(moe_outbox *o, moe_link *l, const moe_link_peer *to, const ProtobufCMessage *env, moe_err *err)
{
    if (o->n > 0) {
        const int rc = moe_outbox_flush(o, l, to, err);
        if (rc == MOE_LINK_UNREACHABLE) { /* the peer is gone: so is whatever waited for it */
            moe_outbox_clear(o);
            return rc;
        }
    }
    if (o->n == 0) {
        const int rc = moe_link_send(l, to, env, MOE_LINK_DONTWAIT, err);
        if (rc != MOE_LINK_AGAIN) return rc;
    }
    size_t len;
    if (moe_msg_encoded_size(env, moe_link_max_frame(l), &len, err)) return MOE_ERR;
    if (len > (uint64_t)o->max_bytes || o->bytes > (uint64_t)o->max_bytes - len) {
        moe_err_set(err, "%zu frames (%zu bytes) wait for the peer; one more of %zu bytes is over the bound of %lld",
                    o->n, o->bytes, len, (long long)o->max_bytes);
        return MOE_OUTBOX_FULL;
    }
    if (o->n == o->cap) { /* grow the ring, unrolled into the new array */
        const size_t cap = o->cap ? 2 * o->cap : 64;
        frame *nr = moe_xmalloc(cap * sizeof *nr);
        for (size_t i = 0; i < o->n; i++) nr[i] = o->ring[(o->head + i) % o->cap];
        free(o->ring);
        o->ring = nr;
        o->cap = cap;
        o->head = 0;
    }
    frame *f = &o->ring[(o->head + o->n) % o->cap];
    f->data = moe_xmalloc(len ? len : 1);
    f->len = protobuf_c_message_pack(env, f->data);
    MOE_ASSERT(f->len == len);
    o->bytes += len;
    o->n++;
    return MOE_OK;
}
