/*
 * msg.h — the wire messages: size-capped decoding, validation of every
 * field, and the error codes.
 *
 * The messages are defined in proto/moe.proto and compiled by protoc-c into
 * moe.pb-c.h (types Moe__ClientMsg, Moe__GenerateRequest ...; codes
 * MOE__CODE__*).  docs/protocol.md describes them.  Four envelopes carry
 * everything, one per direction, each a `oneof body`:
 *
 *   client -> coordinator  Moe__ClientMsg   (hello, generate, cancel, heartbeat)
 *   coordinator -> client  Moe__ServerMsg   (hello_reply, chunk, finish, error, heartbeat)
 *   worker -> coordinator  Moe__WorkerMsg   (hello, token, seq_end, heartbeat, error)
 *   coordinator -> worker  Moe__CoordMsg    (hello_reply, assign, release, heartbeat, error)
 *
 * Everything received is untrusted.  Receiving is two steps:
 *
 *   1. moe_msg_decode: the frame size is checked against lim->max_frame
 *      BEFORE anything is parsed (MOE__CODE__OVERSIZED_FRAME), the parser's
 *      allocations are bounded by lim->max_decode_mem, and an envelope
 *      without a body is refused (MOE__CODE__MALFORMED_FRAME).
 *   2. moe_msg_check (or one of the moe_msg_check_<body> functions): every
 *      field — presence, string lengths, UTF-8, counts, ranges, NaN, enum
 *      values — against the limits.  Returns the first problem's code.
 *
 * Both return a Moe__Code: MOE__CODE__OK (0) or the reason, with a message
 * naming the field in *err (e.g. "sampling.top_p = 1.5 is out of
 * range (0, 1]").  The decoded message survives a failed check, so a
 * reply can still echo its request id (moe_msg_request_id).
 *
 * Sending: build the envelope with the generated *_INIT macros and hand it
 * to moe_link_send (link.h), or encode it with moe_msg_encode:
 *
 *   Moe__Cancel c = MOE__CANCEL__INIT;
 *   c.request_id = "r1";
 *   Moe__ClientMsg m = MOE__CLIENT_MSG__INIT;
 *   m.body_case = MOE__CLIENT_MSG__BODY_CANCEL;
 *   m.cancel = &c;
 *   moe_link_send(link, NULL, &m.base, 0, &err);
 *
 * Known limit: protobuf-c hands strings over NUL-terminated, so a string
 * with an embedded NUL byte is seen up to that byte.
 */
#ifndef MOE_PROTO_MSG_H
#define MOE_PROTO_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "moe.pb-c.h"
#include "sampler.h"

/* The protocol version this build speaks (Hello, HelloReply, WorkerHello,
 * WorkerHelloReply carry it; a mismatch is MOE__CODE__BAD_VERSION). */
#define MOE_PROTO_VERSION 1u

/* The default application frame cap.  The ZMQ link sets ZMQ_MAXMSGSIZE
 * well above it, so an oversized frame still arrives and is answered. */
#define MOE_MSG_MAX_FRAME_DEFAULT ((size_t)1 << 20)

/* What a receiver accepts.  moe_msg_limits_default gives values that fit
 * any DeepSeek model; the coordinator tightens them from its flags and the
 * model (vocab_size, max_context). */
typedef struct moe_msg_limits {
    size_t max_frame;         /* bytes of one frame, checked before decoding (1 MiB) */
    size_t max_decode_mem;    /* bytes the parser may allocate for one frame (16 x max_frame) */
    size_t max_id_len;        /* request id: 1..max_id_len printable ASCII bytes (128) */
    size_t max_name_len;      /* model/client/server names, roles (256) */
    size_t max_text_len;      /* prompt text, one chat message, chunk text, error messages (1 MiB) */
    size_t max_ids;           /* token ids in a prompt, chunk, assign, heartbeat (262144) */
    size_t max_chat_messages; /* (1024) */
    size_t max_stop;          /* stop strings (16) */
    size_t max_stop_len;      /* bytes of one stop string (256) */
    size_t max_stop_ids;      /* stop ids of a request; the sampler holds MOE_SAMPLER_MAX_STOP
                                 including the model's EOS ids (8) */
    int32_t max_tokens;       /* upper bound of max_tokens (1 << 20) */
    int64_t max_deadline_ms;  /* upper bound of deadline_ms (24 h) */
    uint32_t max_ranks;       /* ranks of a worker job (4096) */
    uint32_t vocab_size;      /* token ids must be < vocab_size; 0: not checked (0) */
    uint32_t max_context;     /* prompt + max_tokens must fit; 0: not checked (0) */
} moe_msg_limits;

void moe_msg_limits_default(moe_msg_limits *lim);

/* "malformed_frame", "queue_full" ... ("unknown" for a value outside Moe__Code). */
const char *moe_msg_code_name(int code);
/* The HTTP status a gateway should answer with for a code (400, 413, 429, 503, 504, 500 ...). */
int moe_msg_code_http_status(int code);
/* "stop", "length", "cancelled", "deadline", "error" ("unknown" otherwise). */
const char *moe_msg_end_name(int reason);

/* The upper bounds (seconds) of the buckets of a rank's step times
 * (RankStats.step_seconds_counts has one count more, for +Inf).  Part of
 * the protocol: both ends use these. */
#define MOE_MSG_STEP_BOUNDS 14
extern const double moe_msg_step_bounds[MOE_MSG_STEP_BOUNDS];
/* The bucket of a step of t seconds (0..MOE_MSG_STEP_BOUNDS). */
int moe_msg_step_bucket(double t);
/* MoE layers a RankStats may list. */
#define MOE_MSG_MAX_LAYERS 4096
/* WorkerHeartbeat.step_expect_ms: at most a day. */
#define MOE_MSG_MAX_STEP_EXPECT_MS 86400000u
/* Request ids one Heartbeat may list (docs/protocol.md). */
#define MOE_MSG_MAX_HEARTBEAT_IDS 4096

/* ---- decoding and encoding ------------------------------------------ */

/* Decodes one frame as an envelope of type `desc` (e.g.
 * &moe__client_msg__descriptor).  Returns MOE__CODE__OK and *out (free it
 * with moe_msg_free), or OVERSIZED_FRAME / MALFORMED_FRAME with *out NULL
 * and the reason in err.  data may be NULL when len is 0. */
int moe_msg_decode(const ProtobufCMessageDescriptor *desc, const void *data, size_t len, const moe_msg_limits *lim,
                   ProtobufCMessage **out, moe_err *err);
/* Frees a message from moe_msg_decode (or moe_link_recv); NULL is fine. */
void moe_msg_free(ProtobufCMessage *m);

/* Encodes m into a new buffer (free() it).  MOE_ERR if it would be larger
 * than max_frame (0: no cap) or an envelope has no body. */
int moe_msg_encode(const ProtobufCMessage *m, size_t max_frame, uint8_t **out, size_t *out_len, moe_err *err);
/* The same checks without encoding: the size it will have, or MOE_ERR. */
int moe_msg_encoded_size(const ProtobufCMessage *m, size_t max_frame, size_t *out_len, moe_err *err);

/* ---- validation: each returns MOE__CODE__OK or the first problem ----- */

/* Any of the four envelopes (dispatches on m->descriptor). */
int moe_msg_check(const ProtobufCMessage *m, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_client(const Moe__ClientMsg *m, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_server(const Moe__ServerMsg *m, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_worker(const Moe__WorkerMsg *m, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_coord(const Moe__CoordMsg *m, const moe_msg_limits *lim, moe_err *err);

/* The bodies.  A NULL body is MALFORMED_FRAME. */
int moe_msg_check_hello(const Moe__Hello *h, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_hello_reply(const Moe__HelloReply *h, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_generate(const Moe__GenerateRequest *r, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_sampling(const Moe__Sampling *s, moe_err *err); /* NULL (all defaults) is fine */
int moe_msg_check_cancel(const Moe__Cancel *c, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_heartbeat(const Moe__Heartbeat *h, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_chunk(const Moe__TokenChunk *c, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_finish(const Moe__Finish *f, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_error(const Moe__Error *e, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_worker_hello(const Moe__WorkerHello *h, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_worker_hello_reply(const Moe__WorkerHelloReply *h, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_assign(const Moe__Assign *a, const moe_msg_limits *lim, moe_err *err);
/* A SetPlacement's text (placement files of V3's 58 layers × 256 experts
 * over hundreds of ranks stay well below it; the frame cap is 1 MiB). */
#define MOE_MSG_MAX_PLACEMENT_BYTES (512 * 1024)
int moe_msg_check_release(const Moe__Release *r, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_token(const Moe__Token *t, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_seq_end(const Moe__SeqEnd *s, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_worker_heartbeat(const Moe__WorkerHeartbeat *h, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_rank_stats(const Moe__RankStats *s, moe_err *err); /* NULL (none kept) is fine */
/* to_client: a ServerMsg's (request_id required), else a WorkerMsg's (seq_id). */
int moe_msg_check_prompt_logprobs(const Moe__PromptLogprobs *p, bool to_client, const moe_msg_limits *lim,
                                  moe_err *err);

/* Routed experts of one request or sequence (docs/routing.md): at most
 * MOE_MSG_MAX_ROUTED_ENTRIES ids (rows x moe_layers x top_k) in all, a
 * piece at most MOE_MSG_ROUTED_PIECE_BYTES of ids and weights. */
#define MOE_MSG_MAX_ROUTED_ENTRIES ((uint64_t)1 << 22)
#define MOE_MSG_ROUTED_PIECE_BYTES ((size_t)512 << 10)
#define MOE_MSG_MAX_ROUTED_TOP_K 64
int moe_msg_check_routed_experts(const Moe__RoutedExperts *r, bool to_client, const moe_msg_limits *lim,
                                 moe_err *err);

/* The recorder's messages: RecordRows rank below max_ranks, top_k 1..64,
 * rows >= 1 and data exactly rows x (24 + 8 top_k) bytes; RecordControl
 * says on or off. */
int moe_msg_check_record_rows(const Moe__RecordRows *r, const moe_msg_limits *lim, moe_err *err);
int moe_msg_check_record_control(const Moe__RecordControl *r, moe_err *err);

/* After tokenization (text and chat prompts are only counted then): the
 * prompt must be non-empty and leave room for max_tokens within
 * lim->max_context (when set).  EMPTY_PROMPT, PROMPT_TOO_LONG or
 * BAD_MAX_TOKENS. */
int moe_msg_check_context(int64_t n_prompt, int64_t max_tokens, const moe_msg_limits *lim, moe_err *err);

/* ---- helpers --------------------------------------------------------- */

/* The request id a client envelope refers to (generate or cancel), or NULL
 * if there is none or it is not a valid id — safe to echo in an Error. */
const char *moe_msg_request_id(const Moe__ClientMsg *m, const moe_msg_limits *lim);

/* Fills a sampler configuration from wire parameters: cfg comes in with the
 * server's defaults (and the model's EOS ids in cfg->stop); each field set
 * in s overrides its default, stop_ids are appended (duplicates skipped).
 * BAD_SAMPLING if a value is out of range or the stop ids do not fit
 * MOE_SAMPLER_MAX_STOP; cfg is only written on success. */
int moe_msg_sampler_cfg(const Moe__Sampling *s, const int32_t *stop_ids, size_t n_stop_ids, moe_sampler_cfg *cfg,
                        moe_err *err);

/* One position's logprobs as the wire's TokenLogprobs: the message and the
 * arrays it points into, in one piece (no allocation). */
typedef struct moe_msg_logprobs {
    Moe__TokenLogprobs m;
    int32_t ids[MOE_MAX_TOP_LOGPROBS];
    float lps[MOE_MAX_TOP_LOGPROBS];
} moe_msg_logprobs;
void moe_msg_logprobs_to_wire(const moe_token_logprobs *in, moe_msg_logprobs *out);
/* From a checked message (moe_msg_check_*); id is the token it is for. */
void moe_msg_logprobs_from_wire(const Moe__TokenLogprobs *in, int32_t id, moe_token_logprobs *out);

#endif
