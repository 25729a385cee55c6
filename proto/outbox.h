/*
 * outbox.h — a bounded queue of frames for one peer of a link, so that a
 * sender never blocks on a peer that stopped reading.
 *
 *   moe_outbox *ob = moe_outbox_new(64 << 20);
 *   rc = moe_outbox_send(ob, link, &peer, &msg.base, &err);  // sent now, or queued
 *   ...
 *   moe_outbox_flush(ob, link, &peer, &err);   // on every turn of the loop
 *
 * A frame goes out at once (MOE_LINK_DONTWAIT) when nothing waits before
 * it; otherwise, or when the link pushes back (the peer's queue is at its
 * high-water mark), it is encoded and kept here, and the flushes send what
 * waits in order until the link pushes back again.  Frames keep their
 * order: nothing new overtakes a waiting frame.
 *
 * The queue is bounded in bytes: a frame that would take it over the
 * bound is refused (MOE_OUTBOX_FULL) and nothing is queued; the caller
 * decides what a peer that far behind means (the coordinator takes the
 * rank as lost).  A peer that is gone (MOE_LINK_UNREACHABLE) drops what
 * was meant for it: liveness is the protocol's heartbeats, not the queue.
 */
#ifndef MOE_PROTO_OUTBOX_H
#define MOE_PROTO_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "link.h"

typedef struct moe_outbox moe_outbox;

/* Returned by moe_outbox_send besides MOE_OK, MOE_ERR and MOE_LINK_UNREACHABLE. */
enum { MOE_OUTBOX_FULL = 3 };

/* max_bytes: the most encoded bytes that may wait (at least 1). */
moe_outbox *moe_outbox_new(int64_t max_bytes);
void moe_outbox_free(moe_outbox *o); /* NULL is fine */

/* Sends env to `to` (NULL on a DEALER) now or queues it.  MOE_OK: sent or
 * queued; MOE_OUTBOX_FULL: over the bound, nothing queued (err says how
 * much waits); MOE_LINK_UNREACHABLE: no such peer, dropped; MOE_ERR: too
 * large for the link or a broken socket (err). */
int moe_outbox_send(moe_outbox *o, moe_link *l, const moe_link_peer *to, const ProtobufCMessage *env, moe_err *err);
/* Sends what waits, in order, until the link pushes back.  MOE_OK (also
 * when frames still wait), or MOE_LINK_UNREACHABLE / MOE_ERR: the first
 * frame that failed was dropped (err). */
int moe_outbox_flush(moe_outbox *o, moe_link *l, const moe_link_peer *to, moe_err *err);
/* Drops what waits (the peer is gone or replaced). */
void moe_outbox_clear(moe_outbox *o);

size_t moe_outbox_frames(const moe_outbox *o); /* frames waiting */
size_t moe_outbox_bytes(const moe_outbox *o);  /* their encoded bytes */

#endif
