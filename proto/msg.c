/*
 * msg.c — the wire side of the messages: code and end-reason names,
 * size-capped decoding and encoding of the envelopes (see msg.h for the
 * contract).  The field-by-field validation is in msg_check.c.
 */
#include "msg.h"

#include <stdlib.h>
#include <string.h>

/* A refusal of a frame: the message goes into err, the code is returned. */
#define REFUSE(err, code, ...) (moe_err_set((err), __VA_ARGS__), (code))

/* ---- names ------------------------------------------------------------ */

const char *moe_msg_code_name(int code)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&moe__code__descriptor, code);
    return v ? v->name : "UNKNOWN";
}

int moe_msg_code_http_status(int code)
{
    switch (code) {
    case MOE__CODE__OK: return 200;
    case MOE__CODE__OVERSIZED_FRAME: return 413;
    case MOE__CODE__UNKNOWN_REQUEST: return 404;
    case MOE__CODE__DUPLICATE_REQUEST: return 409;
    case MOE__CODE__QUEUE_FULL: return 429;
    case MOE__CODE__DEADLINE_EXCEEDED: return 504;
    case MOE__CODE__WORKER_LOST:
    case MOE__CODE__NOT_READY:
    case MOE__CODE__SHUTTING_DOWN: return 503;
    case MOE__CODE__INTERNAL: return 500;
    case MOE__CODE__MALFORMED_FRAME:
    case MOE__CODE__BAD_VERSION:
    case MOE__CODE__EMPTY_PROMPT:
    case MOE__CODE__BAD_MAX_TOKENS:
    case MOE__CODE__BAD_SAMPLING:
    case MOE__CODE__BAD_REQUEST:
    case MOE__CODE__PROMPT_TOO_LONG: return 400;
    default: return 500;
    }
}

const char *moe_msg_end_name(int reason)
{
    switch (reason) {
    case MOE__END_REASON__END_STOP: return "stop";
    case MOE__END_REASON__END_LENGTH: return "length";
    case MOE__END_REASON__END_CANCELLED: return "cancelled";
    case MOE__END_REASON__END_DEADLINE: return "deadline";
    case MOE__END_REASON__END_ERROR: return "error";
    default: return "unknown";
    }
}

/* ---- envelopes -------------------------------------------------------- */

/* The oneof case of an envelope, read through its descriptor: all four
 * envelopes are a single `oneof body`, whose case word every body field
 * points at (quantifier_offset).  0 is "not set". */
static uint32_t body_case(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        if (d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t c;
            memcpy(&c, (const char *)m + d->fields[i].quantifier_offset, sizeof c);
            return c;
        }
    }
    return 0;
}

static bool is_envelope(const ProtobufCMessageDescriptor *d)
{
    return d == &moe__client_msg__descriptor || d == &moe__server_msg__descriptor ||
           d == &moe__worker_msg__descriptor || d == &moe__coord_msg__descriptor;
}

/* ---- decoding ----------------------------------------------------------- */

/* protobuf-c keeps fields it does not know (a newer peer's) and accepts a
 * field number 0 written as a padded varint, which no encoder may produce
 * and it would not read back.  Refused as malformed, in every nested
 * message (the schema has no recursive types, so the depth is small). */
static bool unknown_fields_ok(const ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0) return false;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        const char *base = (const char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n;
            ProtobufCMessage **sub;
            memcpy(&n, base + f->quantifier_offset, sizeof n);
            memcpy(&sub, base + f->offset, sizeof sub);
            for (size_t k = 0; k < n; k++)
                if (sub[k] && !unknown_fields_ok(sub[k])) return false;
        } else {
            if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) {
                uint32_t c;
                memcpy(&c, base + f->quantifier_offset, sizeof c);
                if (c != f->id) continue; /* the union holds another member */
            }
            ProtobufCMessage *sub;
            memcpy(&sub, base + f->offset, sizeof sub);
            if (sub && !unknown_fields_ok(sub)) return false;
        }
    }
    return true;
}

/* protobuf-c sizes its allocations from counts in the frame (a packed
 * int32 array of n bytes becomes up to 4n bytes, a repeated empty message
 * of 2 bytes a whole struct).  This allocator refuses once a frame's total
 * passes the budget, which makes the parser fail cleanly instead of
 * growing with whatever a peer claims. */
typedef struct decode_budget {
    size_t used, cap;
    bool over;
} decode_budget;

static void *budget_alloc(void *data, size_t n)
{
    decode_budget *b = data;
    size_t t;
    if (!moe_add_size(b->used, n, &t) || t > b->cap) {
        b->over = true;
        return NULL;
    }
    b->used = t;
    return moe_xmalloc(n);
}

/* Plain free(): a decoded message is later freed with protobuf-c's default
 * allocator (moe_msg_free), which must agree with this one. */
static void budget_free(void *data, void *p)
{
    (void)data;
    free(p);
}

int moe_msg_decode(const ProtobufCMessageDescriptor *desc, const void *data, size_t len, const moe_msg_limits *lim,
                   ProtobufCMessage **out, moe_err *err)
{
    moe_msg_limits defaults;
    if (!lim) {
        moe_msg_limits_default(&defaults);
        lim = &defaults;
    }
    *out = NULL;
    if (len > lim->max_frame)
        return REFUSE(err, MOE__CODE__OVERSIZED_FRAME, "frame of %zu bytes is larger than the limit of %zu bytes", len,
                    lim->max_frame);
    static const uint8_t empty[1];
    if (!data) {
        if (len) return REFUSE(err, MOE__CODE__MALFORMED_FRAME, "frame has no data");
        data = empty;
    }
    decode_budget b = {.used = 0, .cap = lim->max_decode_mem, .over = false};
    ProtobufCAllocator a = {.alloc = budget_alloc, .free = budget_free, .allocator_data = &b};
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, &a, len, data);
    if (!m) {
        if (b.over)
            return REFUSE(err, MOE__CODE__OVERSIZED_FRAME,
                        "frame of %zu bytes needs more than %zu bytes of memory to decode", len, lim->max_decode_mem);
        return REFUSE(err, MOE__CODE__MALFORMED_FRAME, "frame of %zu bytes is not a valid %s", len, desc->short_name);
    }
    if (!unknown_fields_ok(m)) {
        moe_msg_free(m);
        return REFUSE(err, MOE__CODE__MALFORMED_FRAME, "frame of %zu bytes has a field numbered 0", len);
    }
    if (is_envelope(desc) && body_case(m) == 0) {
        moe_msg_free(m);
        return REFUSE(err, MOE__CODE__MALFORMED_FRAME, "%s has no body (an empty or unknown message)", desc->short_name);
    }
    *out = m;
    return MOE__CODE__OK;
}

void moe_msg_free(ProtobufCMessage *m)
{
    if (m) protobuf_c_message_free_unpacked(m, NULL);
}

int moe_msg_encoded_size(const ProtobufCMessage *m, size_t max_frame, size_t *out_len, moe_err *err)
{
    if (is_envelope(m->descriptor) && body_case(m) == 0)
        return moe_err_set(err, "%s has no body", m->descriptor->short_name);
    size_t n = protobuf_c_message_get_packed_size(m);
    if (max_frame && n > max_frame)
        return moe_err_set(err, "%s of %zu bytes is larger than the frame limit of %zu bytes",
                           m->descriptor->short_name, n, max_frame);
    *out_len = n;
    return MOE_OK;
}

int moe_msg_encode(const ProtobufCMessage *m, size_t max_frame, uint8_t **out, size_t *out_len, moe_err *err)
{
    size_t n;
    *out = NULL;
    if (moe_msg_encoded_size(m, max_frame, &n, err)) return MOE_ERR;
    uint8_t *buf = moe_xmalloc(n);
    size_t w = protobuf_c_message_pack(m, buf);
    MOE_ASSERT(w == n);
    *out = buf;
    *out_len = n;
    return MOE_OK;
}

/* ---- log-probabilities ----------------------------------------------------------- */

void moe_msg_logprobs_to_wire(const moe_token_logprobs *in, moe_msg_logprobs *out)
{
    moe__token_logprobs__init(&out->m);
    out->m.has_logprob = true;
    out->m.logprob = in->logprob;
    const int n = in->n_top < 0 ? 0 : in->n_top > MOE_MAX_TOP_LOGPROBS ? MOE_MAX_TOP_LOGPROBS : in->n_top;
    for (int i = 0; i < n; i++) {
        out->ids[i] = in->top[i].id;
        out->lps[i] = in->top[i].logprob;
    }
    out->m.n_top_ids = out->m.n_top_logprobs = (size_t)n;
    out->m.top_ids = out->ids;
    out->m.top_logprobs = out->lps;
}

void moe_msg_logprobs_from_wire(const Moe__TokenLogprobs *in, int32_t id, moe_token_logprobs *out)
{
    MOE_ASSERT(in->n_top_ids == in->n_top_logprobs && in->n_top_ids <= MOE_MAX_TOP_LOGPROBS);
    out->id = id;
    out->logprob = in->logprob;
    out->n_top = (int)in->n_top_ids;
    for (size_t i = 0; i < in->n_top_ids; i++) out->top[i] = (moe_logprob){in->top_ids[i], in->top_logprobs[i]};
}
