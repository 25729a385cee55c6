/*
 * openai.h — the OpenAI HTTP API's JSON, without a socket: request bodies
 * to moe_request_spec (each bad field its own 400 message), and the
 * responses, stream chunks and error bodies back (docs/http.md).  The HTTP
 * front end (front_http.c) moves bytes; everything it says is built here,
 * so the parser and the writers are unit-tested and fuzzed alone.
 *
 *   body ─ moe_oai_parse ─► moe_oai_request (one spec per choice: n of them,
 *                            seeds derived with moe_oai_choice_spec)
 *   chunks/outcomes ─ moe_oai_*_json ─► JSON text ─ moe_oai_sse ─► "data: …\n\n"
 *
 * Unknown fields are ignored, as vLLM does (one rule for every endpoint);
 * a known field of the wrong type or out of range is a 400 naming it.
 */
#ifndef MOE_COORD_OPENAI_H
#define MOE_COORD_OPENAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"
#include "request.h"

/* Choices one request may ask for (n). */
#define MOE_OAI_MAX_N 16

typedef enum { MOE_OAI_COMPLETION = 0, MOE_OAI_CHAT } moe_oai_kind;

/* An error as the API reports it: the status and the body's fields. */
typedef struct moe_oai_error {
    int status;               /* 400, 401, 404, 405, 413, 429, 503 ... */
    const char *type;         /* "invalid_request_error" ...; static */
    const char *code;         /* a short code, or NULL; static or code_buf */
    char code_buf[32];
    char param[64];           /* the field at fault, or "" */
    char message[MOE_ERR_MSG_MAX];
} moe_oai_error;

/* Fills e (type from the status); param may be NULL. Returns MOE_ERR. */
int moe_oai_error_set(moe_oai_error *e, int status, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The same for a refusal with a protocol code (MOE__CODE__*). */
void moe_oai_error_from_code(moe_oai_error *e, int code, const char *msg);
/* {"error": {"message", "type", "param", "code"}} (free() it). */
char *moe_oai_error_json(const moe_oai_error *e);

/* A parsed request body.  The spec's pointers point into this struct. */
typedef struct moe_oai_request {
    moe_oai_kind kind;
    void *root;               /* the parsed document (json_t), owner of the strings */
    const char *model;        /* NULL when the body names none */
    moe_request_spec spec;    /* the choices' common spec (id unset) */
    int n;                    /* choices, 1..MOE_OAI_MAX_N */
    bool echo;                /* completions: the prompt before the completion */
    bool include_usage;       /* stream_options.include_usage */
    bool seeded;              /* a seed was given: choice i runs seed + i */
    uint64_t seed;
    int32_t *ids;             /* prompt ids */
    const char **stop;
    moe_chat_msg *chat;
    char **parts;             /* chat contents joined from content parts */
    size_t n_parts;
} moe_oai_request;

/* Parses a /v1/completions or /v1/chat/completions body against the
 * limits (ids below vocab_size, counts, lengths).  MOE_OK, or MOE_ERR with
 * a 400 in e.  Free r with moe_oai_request_free either way. */
int moe_oai_parse(moe_oai_request *r, moe_oai_kind kind, const char *body, size_t len, const moe_msg_limits *lim,
                  moe_oai_error *e);
void moe_oai_request_free(moe_oai_request *r);
/* Choice i's spec: the common one, its id, and seed + i when seeded. */
void moe_oai_choice_spec(const moe_oai_request *r, int i, const char *id, moe_request_spec *spec);

/* /tokenize {"prompt": text, "add_special_tokens": bool} or
 * {"messages": [...], "add_generation_prompt": bool}, /detokenize
 * {"tokens": [ids]}: the answers' JSON (free() it), or NULL with e set. */
char *moe_oai_tokenize(const moe_request_model *m, const char *body, size_t len, moe_oai_error *e);
char *moe_oai_detokenize(const moe_request_model *m, const char *body, size_t len, moe_oai_error *e);
/* GET /v1/models. */
char *moe_oai_models_json(const char *model, long long created, uint32_t max_context);

/* ---- responses ----------------------------------------------------------------------- */

/* Token text for logprobs (the token's bytes; invalid UTF-8 is replaced). */
typedef const char *(*moe_oai_token_text)(void *ctx, int32_t id, size_t *len);

/* What a response says about itself. */
typedef struct moe_oai_render {
    moe_oai_kind kind;
    const char *id;           /* "cmpl-…" / "chatcmpl-…" */
    long long created;        /* Unix seconds */
    const char *model;
    moe_oai_token_text token_text;
    void *token_ctx;
    bool logprobs;            /* the request asked for them */
} moe_oai_render;

/* A choice's routed experts (docs/http.md): base64 of int16 LE ids and of
 * float32 LE weights (or NULL), shape [rows][layers][top_k]. */
typedef struct moe_oai_routed {
    long long rows;
    int layers, top_k, first_moe_layer;
    const char *ids_b64, *w_b64;
} moe_oai_routed;

/* One choice, accumulated for a whole response (or one chunk of it). */
typedef struct moe_oai_choice {
    int index;
    const char *text;         /* valid UTF-8 (the request's stream decoder's) */
    size_t text_len;
    const moe_token_logprobs *lp; /* n_lp entries, or NULL */
    int n_lp;
    const moe_token_logprobs *prompt_lp; /* echo with logprobs: n_prompt_lp entries (entry 0 without one) */
    int n_prompt_lp;
    const char *prompt_text;  /* echo: before the completion's text (counted in text_offset) */
    size_t prompt_text_len;
    const char *finish;       /* "stop" / "length", or NULL (a chunk before the end) */
    size_t text_offset;       /* completions' logprobs: text_offset of the first entry (a stream's
                                 later chunk continues where the one before ended) */
    size_t *text_end;         /* or NULL: where the next chunk's offsets start */
    const moe_oai_routed *routed; /* or NULL: no routed_experts field */
} moe_oai_choice;

typedef struct moe_oai_usage {
    long long prompt_tokens, completion_tokens;
    long long cached_tokens; /* prompt_tokens_details.cached_tokens */
} moe_oai_usage;

/* A whole (non-streaming) response: object "text_completion" or
 * "chat.completion" with every choice and the usage (free() it). */
char *moe_oai_response_json(const moe_oai_render *rd, const moe_oai_choice *ch, int n, const moe_oai_usage *u);
/* One stream chunk for one choice ("chat.completion.chunk" carries the
 * role in a choice's first delta: first). */
char *moe_oai_chunk_json(const moe_oai_render *rd, const moe_oai_choice *ch, bool first);
/* The usage chunk (choices empty). */
char *moe_oai_usage_chunk_json(const moe_oai_render *rd, const moe_oai_usage *u);

/* "data: <json>\n\n" appended to *buf (grown as needed); the end marker is
 * moe_oai_sse(.., "[DONE]"). */
void moe_oai_sse(char **buf, size_t *len, size_t *cap, const char *json);

#endif
