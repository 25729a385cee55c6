/*
 * msg_check.c — the limits and the field-by-field validation of the wire
 * messages (see msg.h for the contract; decoding is in msg.c).
 *
 * Every check names the body and the field in its message and returns the
 * most specific Moe__Code; anything without a code of its own is
 * BAD_REQUEST.  Strings are scanned with strnlen bounded by their limit, so
 * a check never reads further than it would accept.
 */
#include "msg.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The defaults, in one place (moe_msg_limits_default copies them, and a
 * NULL lim means these). */
static const moe_msg_limits DEFAULT_LIMITS = {
    .max_frame = MOE_MSG_MAX_FRAME_DEFAULT,
    .max_decode_mem = 16 * MOE_MSG_MAX_FRAME_DEFAULT,
    .max_id_len = 128,
    .max_name_len = 256,
    .max_text_len = (size_t)1 << 20,
    .max_ids = (size_t)1 << 18,
    .max_chat_messages = 1024,
    .max_stop = 16,
    .max_stop_len = 256,
    .max_stop_ids = 8,
    .max_tokens = 1 << 20,
    .max_deadline_ms = 24LL * 3600 * 1000,
    .max_ranks = 4096,
    .vocab_size = 0,
    .max_context = 0,
};

void moe_msg_limits_default(moe_msg_limits *lim) { *lim = DEFAULT_LIMITS; }

static const moe_msg_limits *limits_or_default(const moe_msg_limits *lim) { return lim ? lim : &DEFAULT_LIMITS; }

/* Records a refusal: the message goes into err, the code is returned. */
MOE_PRINTF(3, 4)
static int fail(moe_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ---- field checks ------------------------------------------------------ */

/* strlen that stops after max + 1 bytes: enough to tell "too long". */
static size_t bounded_len(const char *s, size_t max)
{
    return strnlen(s, max < SIZE_MAX ? max + 1 : max);
}

/* Length of a valid UTF-8 prefix; == len when all of s is valid.  Rejects
 * overlong forms, surrogates and code points above U+10FFFF, as RFC 3629. */
static size_t utf8_valid_prefix(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) n = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            if (c == 0xE0) lo = 0xA0;      /* overlong */
            else if (c == 0xED) hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            if (c == 0xF0) lo = 0x90;      /* overlong */
            else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
        } else return i;
        if (len - i < n) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += n;
    }
    return len;
}

/* A string field: present (if required), at most max bytes, UTF-8 if
 * asked.  what is "body: field" for the message.  *len_out gets the length. */
static int check_string(const char *s, const char *what, bool required, size_t max, bool utf8, size_t *len_out,
                        moe_err *err)
{
    if (len_out) *len_out = 0;
    if (!s) {
        if (required) return fail(err, MOE__CODE__BAD_REQUEST, "%s is missing", what);
        return MOE__CODE__OK;
    }
    size_t n = bounded_len(s, max);
    if (n > max) return fail(err, MOE__CODE__BAD_REQUEST, "%s is longer than %zu bytes", what, max);
    if (utf8) {
        size_t ok = utf8_valid_prefix((const unsigned char *)s, n);
        if (ok != n) return fail(err, MOE__CODE__BAD_REQUEST, "%s is not valid UTF-8 (at byte %zu)", what, ok);
    }
    if (len_out) *len_out = n;
    return MOE__CODE__OK;
}

/* A request id: 1..max_id_len bytes of printable ASCII without spaces, so
 * it can go into logs, headers and JSON unescaped. */
static int check_request_id(const char *id, const char *body, bool required, const moe_msg_limits *lim,
                            moe_err *err)
{
    if (!id) {
        if (required) return fail(err, MOE__CODE__BAD_REQUEST, "%s: request_id is missing", body);
        return MOE__CODE__OK;
    }
    size_t n = bounded_len(id, lim->max_id_len);
    if (n == 0) return fail(err, MOE__CODE__BAD_REQUEST, "%s: request_id is empty", body);
    if (n > lim->max_id_len)
        return fail(err, MOE__CODE__BAD_REQUEST, "%s: request_id is longer than %zu bytes", body, lim->max_id_len);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c < 0x21 || c > 0x7E)
            return fail(err, MOE__CODE__BAD_REQUEST,
                        "%s: request_id byte %zu (0x%02x) is not printable ASCII (spaces are not allowed)", body, i,
                        c);
    }
    return MOE__CODE__OK;
}

/* Token ids: each in [0, vocab_size) (or just >= 0 when the vocabulary is
 * unknown). */
static int check_token_ids(const int32_t *ids, size_t n, const char *what, const moe_msg_limits *lim, moe_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (lim->vocab_size && (uint32_t)ids[i] >= lim->vocab_size)) {
            if (lim->vocab_size)
                return fail(err, MOE__CODE__BAD_REQUEST, "%s[%zu] = %" PRId32 " is outside the vocabulary [0, %" PRIu32 ")",
                            what, i, ids[i], lim->vocab_size);
            return fail(err, MOE__CODE__BAD_REQUEST, "%s[%zu] = %" PRId32 " is negative", what, i, ids[i]);
        }
    }
    return MOE__CODE__OK;
}

static bool enum_valid(const ProtobufCEnumDescriptor *d, int v)
{
    return protobuf_c_enum_descriptor_get_value(d, v) != NULL;
}

static int check_version(protobuf_c_boolean has, uint32_t v, const char *body, moe_err *err)
{
    if (!has) return fail(err, MOE__CODE__BAD_VERSION, "%s: protocol_version is missing", body);
    if (v != MOE_PROTO_VERSION)
        return fail(err, MOE__CODE__BAD_VERSION, "%s: protocol_version %" PRIu32 " is not supported (this side speaks %u)",
                    body, v, MOE_PROTO_VERSION);
    return MOE__CODE__OK;
}

/* max_tokens when present: >= 1 (0 when the prompt is only scored) and at
 * most the cap and the context. */
static int check_max_tokens(int32_t v, bool scoring, const char *body, const moe_msg_limits *lim, moe_err *err)
{
    if (v == 0 && scoring) return MOE__CODE__OK;
    if (v == 0)
        return fail(err, MOE__CODE__BAD_MAX_TOKENS,
                    "%s: max_tokens = 0 must be at least 1 (0 only scores a prompt: with prompt_logprobs)", body);
    if (v < 1) return fail(err, MOE__CODE__BAD_MAX_TOKENS, "%s: max_tokens = %" PRId32 " must be at least 1", body, v);
    if (v > lim->max_tokens)
        return fail(err, MOE__CODE__BAD_MAX_TOKENS, "%s: max_tokens = %" PRId32 " is above the limit of %" PRId32, body, v,
                    lim->max_tokens);
    if (lim->max_context && (uint32_t)v >= lim->max_context)
        return fail(err, MOE__CODE__BAD_MAX_TOKENS, "%s: max_tokens = %" PRId32 " does not fit the context of %" PRIu32 " tokens",
                    body, v, lim->max_context);
    return MOE__CODE__OK;
}

/* ---- sampling ------------------------------------------------------------ */

/* One wire field onto cfg through the sampler's table (core/sampler.c), so
 * the ranges are written once.  The sampler names its parameter first
 * ("temp = -1 is out of range [0, 1000]"); the refusal names the field as
 * the client wrote it instead: "sampling.temperature = -1 is out of range
 * [0, 1000]". */
static int set_field(moe_sampler_cfg *cfg, moe_sampler_param p, const char *field, double v, moe_err *err)
{
    moe_err e = {{0}};
    if (moe_sampler_cfg_set_num(cfg, p, v, &e) == MOE_OK) return MOE__CODE__OK;
    const char *name = moe_sampler_param_name(p);
    const size_t n = strlen(name);
    if (!strncmp(e.msg, name, n)) return fail(err, MOE__CODE__BAD_SAMPLING, "sampling.%s%s", field, e.msg + n);
    return fail(err, MOE__CODE__BAD_SAMPLING, "sampling.%s: %s", field, e.msg);
}

/* Applies the fields s sets onto cfg (unset ones keep cfg's values), then
 * the sampler's check of the whole configuration. */
static int apply_sampling(const Moe__Sampling *s, moe_sampler_cfg *cfg, moe_err *err)
{
    int rc;
    if (!s) return MOE__CODE__OK;
    if (s->has_temperature && (rc = set_field(cfg, MOE_SP_TEMP, "temperature", s->temperature, err))) return rc;
    if (s->has_top_p && (rc = set_field(cfg, MOE_SP_TOP_P, "top_p", s->top_p, err))) return rc;
    if (s->has_top_k && (rc = set_field(cfg, MOE_SP_TOP_K, "top_k", s->top_k, err))) return rc;
    if (s->has_min_p && (rc = set_field(cfg, MOE_SP_MIN_P, "min_p", s->min_p, err))) return rc;
    if (s->has_repetition_penalty &&
        (rc = set_field(cfg, MOE_SP_REPEAT_PENALTY, "repetition_penalty", s->repetition_penalty, err)))
        return rc;
    if (s->has_repeat_last_n && (rc = set_field(cfg, MOE_SP_REPEAT_LAST_N, "repeat_last_n", s->repeat_last_n, err)))
        return rc;
    if (s->has_min_tokens && (rc = set_field(cfg, MOE_SP_MIN_TOKENS, "min_tokens", s->min_tokens, err))) return rc;
    if (s->has_ignore_eos && (rc = set_field(cfg, MOE_SP_IGNORE_EOS, "ignore_eos", s->ignore_eos ? 1 : 0, err)))
        return rc;
    /* 64 bits: any value is a seed, and a double could not carry them all */
    if (s->has_seed) moe_sampler_cfg_set_seed(cfg, s->seed);
    moe_err e;
    if (moe_sampler_cfg_check(cfg, &e)) return fail(err, MOE__CODE__BAD_SAMPLING, "sampling: %s", e.msg);
    return MOE__CODE__OK;
}

int moe_msg_check_sampling(const Moe__Sampling *s, moe_err *err)
{
    moe_sampler_cfg cfg;
    moe_sampler_cfg_default(&cfg);
    return apply_sampling(s, &cfg, err);
}

int moe_msg_sampler_cfg(const Moe__Sampling *s, const int32_t *stop_ids, size_t n_stop_ids, moe_sampler_cfg *cfg,
                        moe_err *err)
{
    moe_sampler_cfg c = *cfg;
    int rc = apply_sampling(s, &c, err);
    if (rc) return rc;
    for (size_t i = 0; i < n_stop_ids; i++) {
        if (moe_sampler_is_stop(&c, stop_ids[i])) continue;
        if (c.n_stop >= MOE_SAMPLER_MAX_STOP)
            return fail(err, MOE__CODE__BAD_SAMPLING, "more than %d stop ids (the model's end ids included)",
                        MOE_SAMPLER_MAX_STOP);
        c.stop[c.n_stop++] = stop_ids[i];
    }
    *cfg = c;
    return MOE__CODE__OK;
}

static int check_seq_id(protobuf_c_boolean has, const char *body, moe_err *err)
{
    if (!has) return fail(err, MOE__CODE__BAD_REQUEST, "%s: seq_id is missing", body);
    return MOE__CODE__OK;
}

/* ---- log-probabilities -------------------------------------------------- */

/* The alternatives asked for: at most MOE_MAX_TOP_LOGPROBS. */
static int check_logprobs_n(uint32_t n, const char *body, moe_err *err)
{
    if (n > MOE_MAX_TOP_LOGPROBS)
        return fail(err, MOE__CODE__BAD_REQUEST, "%s: logprobs = %" PRIu32 " is above the limit of %d alternatives",
                    body, n, MOE_MAX_TOP_LOGPROBS);
    return MOE__CODE__OK;
}

/* One position: its logprob (a log-probability: not NaN, <= 0), at most
 * MOE_MAX_TOP_LOGPROBS alternatives as pairs, ids in the vocabulary. */
static int check_token_logprobs(const Moe__TokenLogprobs *t, const char *what, const moe_msg_limits *lim, moe_err *err)
{
    if (!t) return fail(err, MOE__CODE__MALFORMED_FRAME, "%s is missing", what);
    if (!t->has_logprob) return fail(err, MOE__CODE__BAD_REQUEST, "%s: logprob is missing", what);
    if (!(t->logprob <= 0.0f)) return fail(err, MOE__CODE__BAD_REQUEST, "%s: logprob %g is not a log-probability", what,
                                           (double)t->logprob);
    if (t->n_top_ids != t->n_top_logprobs)
        return fail(err, MOE__CODE__BAD_REQUEST, "%s: %zu top_ids but %zu top_logprobs", what, t->n_top_ids,
                    t->n_top_logprobs);
    if (t->n_top_ids > MOE_MAX_TOP_LOGPROBS)
        return fail(err, MOE__CODE__BAD_REQUEST, "%s: %zu alternatives, more than the limit of %d", what, t->n_top_ids,
                    MOE_MAX_TOP_LOGPROBS);
    for (size_t i = 0; i < t->n_top_logprobs; i++)
        if (!(t->top_logprobs[i] <= 0.0f))
            return fail(err, MOE__CODE__BAD_REQUEST, "%s: top_logprobs[%zu] %g is not a log-probability", what, i,
                        (double)t->top_logprobs[i]);
    return check_token_ids(t->top_ids, t->n_top_ids, what, lim, err);
}

int moe_msg_check_prompt_logprobs(const Moe__PromptLogprobs *p, bool to_client, const moe_msg_limits *lim,
                                  moe_err *err)
{
    lim = limits_or_default(lim);
    if (!p) return fail(err, MOE__CODE__MALFORMED_FRAME, "prompt_logprobs: no body");
    int rc = to_client ? check_request_id(p->request_id, "prompt_logprobs", true, lim, err)
                       : check_seq_id(p->has_seq_id, "prompt_logprobs", err);
    if (rc) return rc;
    if (!p->has_index || p->index < 1)
        return fail(err, MOE__CODE__BAD_REQUEST, "prompt_logprobs: index is missing or 0 (position 0 has no logprob)");
    if (p->n_ids == 0 || p->n_ids != p->n_entries)
        return fail(err, MOE__CODE__BAD_REQUEST, "prompt_logprobs: %zu ids and %zu entries (must be the same, >= 1)",
                    p->n_ids, p->n_entries);
    if (p->n_ids > lim->max_ids || (uint64_t)p->index + p->n_ids > (uint64_t)lim->max_ids)
        return fail(err, MOE__CODE__BAD_REQUEST, "prompt_logprobs: positions %" PRIu32 " + %zu are beyond the limit of %zu",
                    p->index, p->n_ids, lim->max_ids);
    if ((rc = check_token_ids(p->ids, p->n_ids, "prompt_logprobs: ids", lim, err))) return rc;
    for (size_t i = 0; i < p->n_entries; i++) {
        char what[48];
        snprintf(what, sizeof what, "prompt_logprobs: entries[%zu]", i);
        if ((rc = check_token_logprobs(p->entries[i], what, lim, err))) return rc;
    }
    return MOE__CODE__OK;
}

int moe_msg_check_routed_experts(const Moe__RoutedExperts *r, bool to_client, const moe_msg_limits *lim,
                                 moe_err *err)
{
    lim = limits_or_default(lim);
    if (!r) return fail(err, MOE__CODE__MALFORMED_FRAME, "routed_experts: no body");
    int rc = to_client ? check_request_id(r->request_id, "routed_experts", true, lim, err)
                       : check_seq_id(r->has_seq_id, "routed_experts", err);
    if (rc) return rc;
    if (!r->has_first || !r->has_rows || !r->has_moe_layers || !r->has_top_k || !r->has_first_moe_layer)
        return fail(err, MOE__CODE__BAD_REQUEST, "routed_experts: first, rows, moe_layers, top_k or first_moe_layer is missing");
    if (r->moe_layers < 1 || r->moe_layers > MOE_MSG_MAX_LAYERS || r->first_moe_layer >= MOE_MSG_MAX_LAYERS ||
        r->top_k < 1 || r->top_k > MOE_MSG_MAX_ROUTED_TOP_K)
        return fail(err, MOE__CODE__BAD_REQUEST,
                    "routed_experts: %" PRIu32 " MoE layers from %" PRIu32 ", top_k %" PRIu32
                    " (1..%d layers below %d, 1..%d experts)",
                    r->moe_layers, r->first_moe_layer, r->top_k, MOE_MSG_MAX_LAYERS, MOE_MSG_MAX_LAYERS,
                    MOE_MSG_MAX_ROUTED_TOP_K);
    /* all in 64 bits: each factor is below 2^32, 2^12 and 2^7 */
    const uint64_t width = (uint64_t)r->moe_layers * r->top_k;
    const uint64_t end = (uint64_t)r->first + r->rows;
    if (r->rows < 1 || end * width > MOE_MSG_MAX_ROUTED_ENTRIES)
        return fail(err, MOE__CODE__BAD_REQUEST,
                    "routed_experts: rows %" PRIu32 " .. %" PRIu64 " of %" PRIu64 " ids each: at least one row, at most %" PRIu64
                    " ids in all",
                    r->first, end, width, MOE_MSG_MAX_ROUTED_ENTRIES);
    const uint64_t cells = (uint64_t)r->rows * width;
    if (!r->has_ids || r->ids.len != cells * 2)
        return fail(err, MOE__CODE__BAD_REQUEST, "routed_experts: ids has %zu bytes, %" PRIu64 " int16 expected",
                    r->has_ids ? r->ids.len : (size_t)0, cells);
    if (r->has_weights && r->weights.len != cells * 4)
        return fail(err, MOE__CODE__BAD_REQUEST, "routed_experts: weights has %zu bytes, %" PRIu64 " float32 expected",
                    r->weights.len, cells);
    for (uint64_t i = 0; i < cells; i++) {
        const int v = (int16_t)(uint16_t)(r->ids.data[2 * i] | (unsigned)r->ids.data[2 * i + 1] << 8);
        if (v < 0) return fail(err, MOE__CODE__BAD_REQUEST, "routed_experts: ids[%" PRIu64 "] is %d", i, v);
    }
    if (r->has_weights)
        for (uint64_t i = 0; i < cells; i++) {
            float f;
            uint32_t u = 0;
            for (int b = 3; b >= 0; b--) u = u << 8 | r->weights.data[4 * i + (uint64_t)b];
            memcpy(&f, &u, sizeof f);
            if (!isfinite(f)) return fail(err, MOE__CODE__BAD_REQUEST, "routed_experts: weights[%" PRIu64 "] is not finite", i);
        }
    return MOE__CODE__OK;
}

int moe_msg_check_record_rows(const Moe__RecordRows *r, const moe_msg_limits *lim, moe_err *err)
{
    lim = limits_or_default(lim);
    if (!r) return fail(err, MOE__CODE__MALFORMED_FRAME, "record_rows: no body");
    if (!r->has_rank || r->rank >= lim->max_ranks || !r->has_top_k || r->top_k < 1 ||
        r->top_k > MOE_MSG_MAX_ROUTED_TOP_K || !r->has_rows || r->rows < 1)
        return fail(err, MOE__CODE__BAD_REQUEST, "record_rows: rank, top_k (1..%d) or rows (>= 1) missing or out of range",
                    MOE_MSG_MAX_ROUTED_TOP_K);
    const uint64_t row = 24 + 8 * (uint64_t)r->top_k;
    if (!r->has_data || (uint64_t)r->data.len != (uint64_t)r->rows * row)
        return fail(err, MOE__CODE__BAD_REQUEST, "record_rows: %zu bytes for %" PRIu32 " rows of %" PRIu64,
                    r->has_data ? r->data.len : (size_t)0, r->rows, row);
    return MOE__CODE__OK;
}

int moe_msg_check_record_control(const Moe__RecordControl *r, moe_err *err)
{
    if (!r) return fail(err, MOE__CODE__MALFORMED_FRAME, "record_control: no body");
    if (!r->has_on) return fail(err, MOE__CODE__BAD_REQUEST, "record_control: on is missing");
    return MOE__CODE__OK;
}

/* ---- client -> coordinator --------------------------------------------- */

int moe_msg_check_hello(const Moe__Hello *h, const moe_msg_limits *lim, moe_err *err)
{
    lim = limits_or_default(lim);
    if (!h) return fail(err, MOE__CODE__MALFORMED_FRAME, "hello: no body");
    int rc = check_version(h->has_protocol_version, h->protocol_version, "hello", err);
    if (rc) return rc;
    return check_string(h->client_name, "hello: client_name", false, lim->max_name_len, true, NULL, err);
}

static const char *const CHAT_ROLES[] = {"system", "user", "assistant", "tool"};

static int check_chat(const Moe__Chat *c, const moe_msg_limits *lim, moe_err *err)
{
    if (!c || c->n_messages == 0) return fail(err, MOE__CODE__EMPTY_PROMPT, "generate: chat has no messages");
    if (c->n_messages > lim->max_chat_messages)
        return fail(err, MOE__CODE__BAD_REQUEST, "generate: chat has %zu messages, more than the limit of %zu",
                    c->n_messages, lim->max_chat_messages);
    size_t total = 0;
    for (size_t i = 0; i < c->n_messages; i++) {
        const Moe__ChatMessage *m = c->messages[i];
        if (!m) return fail(err, MOE__CODE__MALFORMED_FRAME, "generate: chat.messages[%zu] is missing", i);
        if (!m->role) return fail(err, MOE__CODE__BAD_REQUEST, "generate: chat.messages[%zu].role is missing", i);
        bool known = false;
        for (size_t k = 0; k < sizeof CHAT_ROLES / sizeof CHAT_ROLES[0]; k++)
            if (strcmp(m->role, CHAT_ROLES[k]) == 0) known = true;
        if (!known) {
            /* Quote a short prefix of what the peer sent, printable ASCII
             * only: the message goes back on the wire and into logs. */
            char quoted[33];
            size_t q = 0;
            for (; q < sizeof quoted - 1 && m->role[q]; q++) {
                unsigned char ch = (unsigned char)m->role[q];
                quoted[q] = ch >= 0x20 && ch < 0x7F && ch != '"' ? (char)ch : '?';
            }
            quoted[q] = '\0';
            return fail(err, MOE__CODE__BAD_REQUEST,
                        "generate: chat.messages[%zu].role \"%s\" is not system, user, assistant or tool", i, quoted);
        }
        const char *content = m->content ? m->content : "";
        size_t n = bounded_len(content, lim->max_text_len);
        if (n > lim->max_text_len)
            return fail(err, MOE__CODE__PROMPT_TOO_LONG, "generate: chat.messages[%zu].content is longer than %zu bytes",
                        i, lim->max_text_len);
        size_t ok = utf8_valid_prefix((const unsigned char *)content, n);
        if (ok != n)
            return fail(err, MOE__CODE__BAD_REQUEST,
                        "generate: chat.messages[%zu].content is not valid UTF-8 (at byte %zu)", i, ok);
        if (!moe_add_size(total, n, &total) || total > lim->max_text_len)
            return fail(err, MOE__CODE__PROMPT_TOO_LONG, "generate: chat contents total more than %zu bytes",
                        lim->max_text_len);
    }
    return MOE__CODE__OK;
}

int moe_msg_check_generate(const Moe__GenerateRequest *r, const moe_msg_limits *lim, moe_err *err)
{
    lim = limits_or_default(lim);
    if (!r) return fail(err, MOE__CODE__MALFORMED_FRAME, "generate: no body");
    int rc = check_request_id(r->request_id, "generate", true, lim, err);
    if (rc) return rc;

    size_t n_prompt_ids = 0; /* known only for an ids prompt */
    switch (r->prompt_case) {
    case MOE__GENERATE_REQUEST__PROMPT_TEXT: {
        if (!r->text || r->text[0] == '\0') return fail(err, MOE__CODE__EMPTY_PROMPT, "generate: text is empty");
        size_t n = bounded_len(r->text, lim->max_text_len);
        if (n > lim->max_text_len)
            return fail(err, MOE__CODE__PROMPT_TOO_LONG, "generate: text is longer than %zu bytes", lim->max_text_len);
        size_t ok = utf8_valid_prefix((const unsigned char *)r->text, n);
        if (ok != n)
            return fail(err, MOE__CODE__BAD_REQUEST, "generate: text is not valid UTF-8 (at byte %zu)", ok);
        break;
    }
    case MOE__GENERATE_REQUEST__PROMPT_IDS: {
        if (!r->ids || r->ids->n_ids == 0) return fail(err, MOE__CODE__EMPTY_PROMPT, "generate: ids is empty");
        n_prompt_ids = r->ids->n_ids;
        if (n_prompt_ids > lim->max_ids)
            return fail(err, MOE__CODE__PROMPT_TOO_LONG, "generate: %zu prompt ids, more than the limit of %zu",
                        n_prompt_ids, lim->max_ids);
        if (lim->max_context && n_prompt_ids >= lim->max_context)
            return fail(err, MOE__CODE__PROMPT_TOO_LONG,
                        "generate: %zu prompt ids leave no room in the context of %" PRIu32 " tokens", n_prompt_ids,
                        lim->max_context);
        if ((rc = check_token_ids(r->ids->ids, n_prompt_ids, "generate: ids", lim, err))) return rc;
        break;
    }
    case MOE__GENERATE_REQUEST__PROMPT_CHAT:
        if ((rc = check_chat(r->chat, lim, err))) return rc;
        break;
    case MOE__GENERATE_REQUEST__PROMPT__NOT_SET:
        return fail(err, MOE__CODE__EMPTY_PROMPT, "generate: no prompt (text, ids or chat)");
    default:
        return fail(err, MOE__CODE__MALFORMED_FRAME, "generate: unknown prompt kind %d", (int)r->prompt_case);
    }

    if ((rc = moe_msg_check_sampling(r->sampling, err))) return rc;

    if (r->has_logprobs && (rc = check_logprobs_n(r->logprobs, "generate", err))) return rc;
    if (r->has_return_routed_expert_weights && r->return_routed_expert_weights &&
        !(r->has_return_routed_experts && r->return_routed_experts))
        return fail(err, MOE__CODE__BAD_REQUEST, "generate: return_routed_expert_weights needs return_routed_experts");
    if (r->has_prompt_logprobs && r->prompt_logprobs && !r->has_logprobs)
        return fail(err, MOE__CODE__BAD_REQUEST, "generate: prompt_logprobs needs logprobs (0..%d alternatives)",
                    MOE_MAX_TOP_LOGPROBS);
    if (r->has_max_tokens) {
        if ((rc = check_max_tokens(r->max_tokens, r->has_prompt_logprobs && r->prompt_logprobs, "generate", lim, err)))
            return rc;
        if (lim->max_context && n_prompt_ids + (size_t)r->max_tokens > lim->max_context)
            return fail(err, MOE__CODE__BAD_MAX_TOKENS,
                        "generate: %zu prompt ids + max_tokens %" PRId32 " exceed the context of %" PRIu32 " tokens",
                        n_prompt_ids, r->max_tokens, lim->max_context);
    }

    if (r->n_stop > lim->max_stop)
        return fail(err, MOE__CODE__BAD_REQUEST, "generate: %zu stop strings, more than the limit of %zu", r->n_stop,
                    lim->max_stop);
    for (size_t i = 0; i < r->n_stop; i++) {
        char what[48];
        snprintf(what, sizeof what, "generate: stop[%zu]", i);
        size_t n;
        if ((rc = check_string(r->stop[i], what, true, lim->max_stop_len, true, &n, err))) return rc;
        if (n == 0) return fail(err, MOE__CODE__BAD_REQUEST, "%s is empty", what);
    }
    if (r->n_stop_ids > lim->max_stop_ids)
        return fail(err, MOE__CODE__BAD_REQUEST, "generate: %zu stop ids, more than the limit of %zu", r->n_stop_ids,
                    lim->max_stop_ids);
    if ((rc = check_token_ids(r->stop_ids, r->n_stop_ids, "generate: stop_ids", lim, err))) return rc;

    if (r->has_deadline_ms && (r->deadline_ms < 1 || r->deadline_ms > lim->max_deadline_ms))
        return fail(err, MOE__CODE__BAD_REQUEST, "generate: deadline_ms = %" PRId64 " is outside [1, %" PRId64 "]",
                    r->deadline_ms, lim->max_deadline_ms);
    return MOE__CODE__OK;
}

int moe_msg_check_cancel(const Moe__Cancel *c, const moe_msg_limits *lim, moe_err *err)
{
    lim = limits_or_default(lim);
    if (!c) return fail(err, MOE__CODE__MALFORMED_FRAME, "cancel: no body");
    return check_request_id(c->request_id, "cancel", true, lim, err);
}

int moe_msg_check_heartbeat(const Moe__Heartbeat *h, const moe_msg_limits *lim, moe_err *err)
{
    if (!h) return fail(err, MOE__CODE__MALFORMED_FRAME, "heartbeat: no body");
    /* seq is any number */
    if (h->n_request_ids > MOE_MSG_MAX_HEARTBEAT_IDS || h->n_queued_ids > MOE_MSG_MAX_HEARTBEAT_IDS)
        return fail(err, MOE__CODE__BAD_REQUEST, "heartbeat: %zu request ids (at most %d)",
                    h->n_request_ids > h->n_queued_ids ? h->n_request_ids : h->n_queued_ids, MOE_MSG_MAX_HEARTBEAT_IDS);
    if (h->n_queue_positions != h->n_queued_ids)
        return fail(err, MOE__CODE__BAD_REQUEST, "heartbeat: %zu queued ids but %zu positions", h->n_queued_ids,
                    h->n_queue_positions);
    for (size_t i = 0; i < h->n_request_ids; i++) {
        const int rc = check_request_id(h->request_ids[i], "heartbeat", true, lim, err);
        if (rc) return rc;
    }
    for (size_t i = 0; i < h->n_queued_ids; i++) {
        const int rc = check_request_id(h->queued_ids[i], "heartbeat", true, lim, err);
        if (rc) return rc;
    }
    return MOE__CODE__OK;
}

int moe_msg_check_context(int64_t n_prompt, int64_t max_tokens, const moe_msg_limits *lim, moe_err *err)
{
    lim = limits_or_default(lim);
    if (n_prompt <= 0) return fail(err, MOE__CODE__EMPTY_PROMPT, "the prompt has no tokens");
    if (max_tokens < 1) return fail(err, MOE__CODE__BAD_MAX_TOKENS, "max_tokens = %" PRId64 " must be at least 1", max_tokens);
    if (max_tokens > lim->max_tokens)
        return fail(err, MOE__CODE__BAD_MAX_TOKENS, "max_tokens = %" PRId64 " is above the limit of %" PRId32, max_tokens,
                    lim->max_tokens);
    if ((uint64_t)n_prompt > lim->max_ids)
        return fail(err, MOE__CODE__PROMPT_TOO_LONG, "the prompt has %" PRId64 " tokens, more than the limit of %zu",
                    n_prompt, lim->max_ids);
    if (lim->max_context) {
        if (n_prompt >= (int64_t)lim->max_context)
            return fail(err, MOE__CODE__PROMPT_TOO_LONG,
                        "the prompt has %" PRId64 " tokens; the context holds %" PRIu32 " (with at least one to generate)",
                        n_prompt, lim->max_context);
        /* Both are below 2^31 here, so the sum cannot overflow. */
        if (n_prompt + max_tokens > (int64_t)lim->max_context)
            return fail(err, MOE__CODE__BAD_MAX_TOKENS,
                        "%" PRId64 " prompt tokens + max_tokens %" PRId64 " exceed the context of %" PRIu32 " tokens",
                        n_prompt, max_tokens, lim->max_context);
    }
    return MOE__CODE__OK;
}

int moe_msg_check_client(const Moe__ClientMsg *m, const moe_msg_limits *lim, moe_err *err)
{
    if (!m) return fail(err, MOE__CODE__MALFORMED_FRAME, "ClientMsg: missing");
    switch (m->body_case) {
    case MOE__CLIENT_MSG__BODY_HELLO: return moe_msg_check_hello(m->hello, lim, err);
    case MOE__CLIENT_MSG__BODY_GENERATE: return moe_msg_check_generate(m->generate, lim, err);
    case MOE__CLIENT_MSG__BODY_CANCEL: return moe_msg_check_cancel(m->cancel, lim, err);
    case MOE__CLIENT_MSG__BODY_HEARTBEAT: return moe_msg_check_heartbeat(m->heartbeat, lim, err);
    default: return fail(err, MOE__CODE__MALFORMED_FRAME, "ClientMsg has no body (an empty or unknown message)");
    }
}

const char *moe_msg_request_id(const Moe__ClientMsg *m, const moe_msg_limits *lim)
{
    if (!m) return NULL;
    const char *id = NULL;
    if (m->body_case == MOE__CLIENT_MSG__BODY_GENERATE && m->generate) id = m->generate->request_id;
    else if (m->body_case == MOE__CLIENT_MSG__BODY_CANCEL && m->cancel) id = m->cancel->request_id;
    if (!id) return NULL;
    return check_request_id(id, "", true, limits_or_default(lim), NULL) == MOE__CODE__OK ? id : NULL;
}

/* ---- coordinator -> client ---------------------------------------------- */

int moe_msg_check_hello_reply(const Moe__HelloReply *h, const moe_msg_limits *lim, moe_err *err)
{
    lim = limits_or_default(lim);
    if (!h) return fail(err, MOE__CODE__MALFORMED_FRAME, "hello_reply: no body");
    int rc = check_version(h->has_protocol_version, h->protocol_version, "hello_reply", err);
    if (rc) return rc;
    if ((rc = check_string(h->model, "hello_reply: model", false, lim->max_name_len, true, NULL, err))) return rc;
    if ((rc = check_string(h->server_name, "hello_reply: server_name", false, lim->max_name_len, true, NULL, err)))
        return rc;
    if (h->has_vocab_size && h->vocab_size == 0)
        return fail(err, MOE__CODE__BAD_REQUEST, "hello_reply: vocab_size is 0");
    if (h->has_max_context && h->max_context == 0)
        return fail(err, MOE__CODE__BAD_REQUEST, "hello_reply: max_context is 0");
    return MOE__CODE__OK;
}

int moe_msg_check_chunk(const Moe__TokenChunk *c, const moe_msg_limits *lim, moe_err *err)
{
    lim = limits_or_default(lim);
    if (!c) return fail(err, MOE__CODE__MALFORMED_FRAME, "chunk: no body");
    int rc = check_request_id(c->request_id, "chunk", true, lim, err);
    if (rc) return rc;
    if (!c->has_index) return fail(err, MOE__CODE__BAD_REQUEST, "chunk: index is missing");
    if (c->n_ids > lim->max_ids)
        return fail(err, MOE__CODE__BAD_REQUEST, "chunk: %zu ids, more than the limit of %zu", c->n_ids, lim->max_ids);
    if ((uint64_t)c->index + c->n_ids > (uint64_t)INT32_MAX)
        return fail(err, MOE__CODE__BAD_REQUEST, "chunk: index %" PRIu32 " + %zu ids is out of range", c->index, c->n_ids);
    if ((rc = check_token_ids(c->ids, c->n_ids, "chunk: ids", lim, err))) return rc;
    if (c->n_logprobs && c->n_logprobs != c->n_ids)
        return fail(err, MOE__CODE__BAD_REQUEST, "chunk: %zu logprobs for %zu ids", c->n_logprobs, c->n_ids);
    for (size_t i = 0; i < c->n_logprobs; i++) {
        char what[40];
        snprintf(what, sizeof what, "chunk: logprobs[%zu]", i);
        if ((rc = check_token_logprobs(c->logprobs[i], what, lim, err))) return rc;
    }
    /* Not required to be UTF-8: a server may pass bytes of an unfinished
     * character through; the streaming decoder normally holds them back. */
    return check_string(c->text, "chunk: text", false, lim->max_text_len, false, NULL, err);
}

int moe_msg_check_finish(const Moe__Finish *f, const moe_msg_limits *lim, moe_err *err)
{
    lim = limits_or_default(lim);
    if (!f) return fail(err, MOE__CODE__MALFORMED_FRAME, "finish: no body");
    int rc = check_request_id(f->request_id, "finish", true, lim, err);
    if (rc) return rc;
    if (!f->has_reason) return fail(err, MOE__CODE__BAD_REQUEST, "finish: reason is missing");
    if (!enum_valid(&moe__end_reason__descriptor, f->reason))
        return fail(err, MOE__CODE__BAD_REQUEST, "finish: reason %d is not an end reason", (int)f->reason);
    if (f->has_code && !enum_valid(&moe__code__descriptor, f->code))
        return fail(err, MOE__CODE__BAD_REQUEST, "finish: code %d is not an error code", (int)f->code);
    return check_string(f->message, "finish: message", false, lim->max_text_len, false, NULL, err);
}

int moe_msg_check_error(const Moe__Error *e, const moe_msg_limits *lim, moe_err *err)
{
    lim = limits_or_default(lim);
    if (!e) return fail(err, MOE__CODE__MALFORMED_FRAME, "error: no body");
    int rc = check_request_id(e->request_id, "error", false, lim, err);
    if (rc) return rc;
    if (!e->has_code) return fail(err, MOE__CODE__BAD_REQUEST, "error: code is missing");
    if (e->code == MOE__CODE__OK || !enum_valid(&moe__code__descriptor, e->code))
        return fail(err, MOE__CODE__BAD_REQUEST, "error: code %d is not an error code", (int)e->code);
    return check_string(e->message, "error: message", false, lim->max_text_len, false, NULL, err);
}

int moe_msg_check_server(const Moe__ServerMsg *m, const moe_msg_limits *lim, moe_err *err)
{
    if (!m) return fail(err, MOE__CODE__MALFORMED_FRAME, "ServerMsg: missing");
    switch (m->body_case) {
    case MOE__SERVER_MSG__BODY_HELLO_REPLY: return moe_msg_check_hello_reply(m->hello_reply, lim, err);
    case MOE__SERVER_MSG__BODY_CHUNK: return moe_msg_check_chunk(m->chunk, lim, err);
    case MOE__SERVER_MSG__BODY_FINISH: return moe_msg_check_finish(m->finish, lim, err);
    case MOE__SERVER_MSG__BODY_ERROR: return moe_msg_check_error(m->error, lim, err);
    case MOE__SERVER_MSG__BODY_HEARTBEAT: return moe_msg_check_heartbeat(m->heartbeat, lim, err);
    case MOE__SERVER_MSG__BODY_PROMPT_LOGPROBS: return moe_msg_check_prompt_logprobs(m->prompt_logprobs, true, lim, err);
    case MOE__SERVER_MSG__BODY_ROUTED_EXPERTS: return moe_msg_check_routed_experts(m->routed_experts, true, lim, err);
    default: return fail(err, MOE__CODE__MALFORMED_FRAME, "ServerMsg has no body (an empty or unknown message)");
    }
}

/* ---- worker -> coordinator --------------------------------------------- */

static int check_rank(protobuf_c_boolean has, uint32_t rank, const char *body, const moe_msg_limits *lim,
                      moe_err *err)
{
    if (!has) return fail(err, MOE__CODE__BAD_REQUEST, "%s: rank is missing", body);
    if (rank >= lim->max_ranks)
        return fail(err, MOE__CODE__BAD_REQUEST, "%s: rank %" PRIu32 " is not below the limit of %" PRIu32 " ranks", body,
                    rank, lim->max_ranks);
    return MOE__CODE__OK;
}

int moe_msg_check_worker_hello(const Moe__WorkerHello *h, const moe_msg_limits *lim, moe_err *err)
{
    lim = limits_or_default(lim);
    if (!h) return fail(err, MOE__CODE__MALFORMED_FRAME, "worker_hello: no body");
    int rc = check_version(h->has_protocol_version, h->protocol_version, "worker_hello", err);
    if (rc) return rc;
    if (!h->has_n_ranks || h->n_ranks == 0 || h->n_ranks > lim->max_ranks)
        return fail(err, MOE__CODE__BAD_REQUEST, "worker_hello: n_ranks must be in [1, %" PRIu32 "]", lim->max_ranks);
    if ((rc = check_rank(h->has_rank, h->rank, "worker_hello", lim, err))) return rc;
    if (h->rank >= h->n_ranks)
        return fail(err, MOE__CODE__BAD_REQUEST, "worker_hello: rank %" PRIu32 " is not below n_ranks %" PRIu32, h->rank,
                    h->n_ranks);
    if (!h->has_cache_tokens_total || !h->has_cache_tokens_free)
        return fail(err, MOE__CODE__BAD_REQUEST, "worker_hello: cache_tokens_total and cache_tokens_free are required");
    if (h->cache_tokens_free > h->cache_tokens_total)
        return fail(err, MOE__CODE__BAD_REQUEST,
                    "worker_hello: cache_tokens_free %" PRIu64 " is above cache_tokens_total %" PRIu64,
                    h->cache_tokens_free, h->cache_tokens_total);
    if (h->cache_tokens_total > (uint64_t)INT64_MAX)
        return fail(err, MOE__CODE__BAD_REQUEST, "worker_hello: cache_tokens_total %" PRIu64 " is out of range",
                    h->cache_tokens_total);
    const Moe__ModelIdentity *mi = h->model;
    if (!mi) return fail(err, MOE__CODE__BAD_REQUEST, "worker_hello: model is missing");
    if ((rc = check_string(mi->name, "worker_hello: model.name", false, lim->max_name_len, true, NULL, err))) return rc;
    if (!mi->has_vocab_size || mi->vocab_size == 0)
        return fail(err, MOE__CODE__BAD_REQUEST, "worker_hello: model.vocab_size is missing or 0");
    if (mi->has_max_context && mi->max_context == 0)
        return fail(err, MOE__CODE__BAD_REQUEST, "worker_hello: model.max_context is 0");
    if ((rc = check_string(h->kernels, "worker_hello: kernels", false, 32, true, NULL, err))) return rc;
    return MOE__CODE__OK;
}

int moe_msg_check_token(const Moe__Token *t, const moe_msg_limits *lim, moe_err *err)
{
    lim = limits_or_default(lim);
    if (!t) return fail(err, MOE__CODE__MALFORMED_FRAME, "token: no body");
    int rc = check_seq_id(t->has_seq_id, "token", err);
    if (rc) return rc;
    if (!t->has_index) return fail(err, MOE__CODE__BAD_REQUEST, "token: index is missing");
    if (t->index >= (uint32_t)lim->max_tokens)
        return fail(err, MOE__CODE__BAD_REQUEST, "token: index %" PRIu32 " is not below the max_tokens limit %" PRId32,
                    t->index, lim->max_tokens);
    if (!t->has_token) return fail(err, MOE__CODE__BAD_REQUEST, "token: token is missing");
    if ((rc = check_token_ids(&t->token, 1, "token: token", lim, err))) return rc;
    return t->logprobs ? check_token_logprobs(t->logprobs, "token: logprobs", lim, err) : MOE__CODE__OK;
}

int moe_msg_check_seq_end(const Moe__SeqEnd *s, const moe_msg_limits *lim, moe_err *err)
{
    lim = limits_or_default(lim);
    if (!s) return fail(err, MOE__CODE__MALFORMED_FRAME, "seq_end: no body");
    int rc = check_seq_id(s->has_seq_id, "seq_end", err);
    if (rc) return rc;
    if (!s->has_reason) return fail(err, MOE__CODE__BAD_REQUEST, "seq_end: reason is missing");
    if (!enum_valid(&moe__end_reason__descriptor, s->reason))
        return fail(err, MOE__CODE__BAD_REQUEST, "seq_end: reason %d is not an end reason", (int)s->reason);
    return check_string(s->message, "seq_end: message", false, lim->max_text_len, false, NULL, err);
}

const double moe_msg_step_bounds[MOE_MSG_STEP_BOUNDS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                         0.25,  0.5,    1,     2.5,  5,     10,   30};

int moe_msg_step_bucket(double t)
{
    int b = 0;
    while (b < MOE_MSG_STEP_BOUNDS && !(t <= moe_msg_step_bounds[b])) b++;
    return b;
}

int moe_msg_check_rank_stats(const Moe__RankStats *s, moe_err *err)
{
    if (!s) return MOE__CODE__OK;
    if (s->n_step_seconds_counts != 0 && s->n_step_seconds_counts != MOE_MSG_STEP_BOUNDS + 1)
        return fail(err, MOE__CODE__BAD_REQUEST, "rank_stats: %zu step time buckets, the protocol has %d",
                    s->n_step_seconds_counts, MOE_MSG_STEP_BOUNDS + 1);
    uint64_t n = 0;
    for (size_t i = 0; i < s->n_step_seconds_counts; i++) {
        if (s->step_seconds_counts[i] > UINT64_MAX - n)
            return fail(err, MOE__CODE__BAD_REQUEST, "rank_stats: step time counts overflow");
        n += s->step_seconds_counts[i];
    }
    if (s->n_step_seconds_counts && (!s->has_steps || n != s->steps))
        return fail(err, MOE__CODE__BAD_REQUEST, "rank_stats: step time buckets hold %" PRIu64 " steps, steps says %" PRIu64,
                    n, s->steps);
    if (s->has_step_seconds_sum && !(s->step_seconds_sum >= 0 && s->step_seconds_sum <= 1e300))
        return fail(err, MOE__CODE__BAD_REQUEST, "rank_stats: step_seconds_sum is not a finite non-negative number");
    if (s->has_cache_blocks_used && (!s->has_cache_blocks_total || s->cache_blocks_used > s->cache_blocks_total))
        return fail(err, MOE__CODE__BAD_REQUEST, "rank_stats: cache_blocks_used %" PRIu64 " is above cache_blocks_total %" PRIu64,
                    s->cache_blocks_used, s->cache_blocks_total);
    uint64_t per = 0;
    if (s->n_spec_accepted_per_pos > 4)
        return fail(err, MOE__CODE__BAD_REQUEST, "rank_stats: %zu draft positions, at most 4", s->n_spec_accepted_per_pos);
    for (size_t i = 0; i < s->n_spec_accepted_per_pos; i++) {
        if (s->spec_accepted_per_pos[i] > UINT64_MAX - per)
            return fail(err, MOE__CODE__BAD_REQUEST, "rank_stats: accepted drafts overflow");
        per += s->spec_accepted_per_pos[i];
    }
    if (s->n_spec_accepted_per_pos && per != s->spec_accepted_tokens)
        return fail(err, MOE__CODE__BAD_REQUEST, "rank_stats: accepted drafts by position sum to %" PRIu64 ", not %" PRIu64,
                    per, s->spec_accepted_tokens);
    if (s->spec_accepted_tokens > s->spec_draft_tokens)
        return fail(err, MOE__CODE__BAD_REQUEST, "rank_stats: spec_accepted_tokens %" PRIu64 " is above spec_draft_tokens %" PRIu64,
                    s->spec_accepted_tokens, s->spec_draft_tokens);
    if (s->prefix_cache_hits > s->prefix_cache_queries)
        return fail(err, MOE__CODE__BAD_REQUEST, "rank_stats: prefix_cache_hits %" PRIu64 " is above prefix_cache_queries %" PRIu64,
                    s->prefix_cache_hits, s->prefix_cache_queries);
    if (s->n_expert_tokens > MOE_MSG_MAX_LAYERS || s->first_moe_layer > MOE_MSG_MAX_LAYERS - s->n_expert_tokens)
        return fail(err, MOE__CODE__BAD_REQUEST, "rank_stats: MoE layers %" PRIu32 " + %zu go past the limit of %d",
                    s->first_moe_layer, s->n_expert_tokens, MOE_MSG_MAX_LAYERS);
    return MOE__CODE__OK;
}

int moe_msg_check_worker_heartbeat(const Moe__WorkerHeartbeat *h, const moe_msg_limits *lim, moe_err *err)
{
    lim = limits_or_default(lim);
    if (!h) return fail(err, MOE__CODE__MALFORMED_FRAME, "worker_heartbeat: no body");
    int rc = check_rank(h->has_rank, h->rank, "worker_heartbeat", lim, err);
    if (rc) return rc;
    if (!h->has_cache_tokens_free)
        return fail(err, MOE__CODE__BAD_REQUEST, "worker_heartbeat: cache_tokens_free is missing");
    if (h->n_active > lim->max_ids)
        return fail(err, MOE__CODE__BAD_REQUEST, "worker_heartbeat: %zu active sequences, more than the limit of %zu",
                    h->n_active, lim->max_ids);
    if (h->has_step_expect_ms && h->step_expect_ms > MOE_MSG_MAX_STEP_EXPECT_MS)
        return fail(err, MOE__CODE__BAD_REQUEST, "worker_heartbeat: step_expect_ms %" PRIu32 " is above the limit of %u",
                    h->step_expect_ms, MOE_MSG_MAX_STEP_EXPECT_MS);
    return moe_msg_check_rank_stats(h->stats, err);
}

static int check_placement_result(const Moe__PlacementResult *r, moe_err *err)
{
    if (!r) return fail(err, MOE__CODE__MALFORMED_FRAME, "placement_result: no body");
    if (!r->has_id || !r->has_ok) return fail(err, MOE__CODE__BAD_REQUEST, "placement_result: id or ok is missing");
    if (r->message && strlen(r->message) > 4096)
        return fail(err, MOE__CODE__BAD_REQUEST, "placement_result: message longer than 4096 bytes");
    const double b[2] = {r->has_balancedness_before ? r->balancedness_before : -1,
                         r->has_balancedness_after ? r->balancedness_after : -1};
    for (int i = 0; i < 2; i++)
        if (!(b[i] == -1 || (b[i] >= 0 && b[i] <= 1)))
            return fail(err, MOE__CODE__BAD_REQUEST, "placement_result: balancedness %g is not -1 or in [0, 1]", b[i]);
    return MOE__CODE__OK;
}

int moe_msg_check_worker(const Moe__WorkerMsg *m, const moe_msg_limits *lim, moe_err *err)
{
    if (!m) return fail(err, MOE__CODE__MALFORMED_FRAME, "WorkerMsg: missing");
    switch (m->body_case) {
    case MOE__WORKER_MSG__BODY_HELLO: return moe_msg_check_worker_hello(m->hello, lim, err);
    case MOE__WORKER_MSG__BODY_TOKEN: return moe_msg_check_token(m->token, lim, err);
    case MOE__WORKER_MSG__BODY_SEQ_END: return moe_msg_check_seq_end(m->seq_end, lim, err);
    case MOE__WORKER_MSG__BODY_HEARTBEAT: return moe_msg_check_worker_heartbeat(m->heartbeat, lim, err);
    case MOE__WORKER_MSG__BODY_ERROR: return moe_msg_check_error(m->error, lim, err);
    case MOE__WORKER_MSG__BODY_PROMPT_LOGPROBS: return moe_msg_check_prompt_logprobs(m->prompt_logprobs, false, lim, err);
    case MOE__WORKER_MSG__BODY_PLACEMENT_RESULT: return check_placement_result(m->placement_result, err);
    case MOE__WORKER_MSG__BODY_ROUTED_EXPERTS: return moe_msg_check_routed_experts(m->routed_experts, false, lim, err);
    case MOE__WORKER_MSG__BODY_RECORD_ROWS: return moe_msg_check_record_rows(m->record_rows, lim, err);
    default: return fail(err, MOE__CODE__MALFORMED_FRAME, "WorkerMsg has no body (an empty or unknown message)");
    }
}

/* ---- coordinator -> worker ---------------------------------------------- */

int moe_msg_check_worker_hello_reply(const Moe__WorkerHelloReply *h, const moe_msg_limits *lim, moe_err *err)
{
    (void)lim;
    if (!h) return fail(err, MOE__CODE__MALFORMED_FRAME, "worker_hello_reply: no body");
    return check_version(h->has_protocol_version, h->protocol_version, "worker_hello_reply", err);
}

int moe_msg_check_assign(const Moe__Assign *a, const moe_msg_limits *lim, moe_err *err)
{
    lim = limits_or_default(lim);
    if (!a) return fail(err, MOE__CODE__MALFORMED_FRAME, "assign: no body");
    int rc = check_seq_id(a->has_seq_id, "assign", err);
    if (rc) return rc;
    if (a->n_prompt == 0) return fail(err, MOE__CODE__EMPTY_PROMPT, "assign: prompt is empty");
    if (a->n_prompt > lim->max_ids)
        return fail(err, MOE__CODE__PROMPT_TOO_LONG, "assign: %zu prompt ids, more than the limit of %zu", a->n_prompt,
                    lim->max_ids);
    if ((rc = check_token_ids(a->prompt, a->n_prompt, "assign: prompt", lim, err))) return rc;
    if ((rc = moe_msg_check_sampling(a->sampling, err))) return rc;
    if (!a->has_max_tokens) return fail(err, MOE__CODE__BAD_MAX_TOKENS, "assign: max_tokens is missing");
    const bool scoring = a->has_prompt_logprobs && a->prompt_logprobs;
    if ((rc = check_max_tokens(a->max_tokens, scoring, "assign", lim, err))) return rc;
    if (a->has_logprobs && (rc = check_logprobs_n(a->logprobs, "assign", err))) return rc;
    if (scoring && !a->has_logprobs)
        return fail(err, MOE__CODE__BAD_REQUEST, "assign: prompt_logprobs needs logprobs (0..%d alternatives)",
                    MOE_MAX_TOP_LOGPROBS);
    if (lim->max_context && a->n_prompt + (size_t)a->max_tokens > lim->max_context)
        return fail(err, MOE__CODE__BAD_MAX_TOKENS,
                    "assign: %zu prompt ids + max_tokens %" PRId32 " exceed the context of %" PRIu32 " tokens",
                    a->n_prompt, a->max_tokens, lim->max_context);
    if (a->has_routed_expert_weights && a->routed_expert_weights && !(a->has_routed_experts && a->routed_experts))
        return fail(err, MOE__CODE__BAD_REQUEST, "assign: routed_expert_weights needs routed_experts");
    if (a->n_stop_ids > MOE_SAMPLER_MAX_STOP)
        return fail(err, MOE__CODE__BAD_REQUEST, "assign: %zu stop ids, more than the sampler's %d", a->n_stop_ids,
                    MOE_SAMPLER_MAX_STOP);
    if ((rc = check_token_ids(a->stop_ids, a->n_stop_ids, "assign: stop_ids", lim, err))) return rc;
    /* A replay may carry every token but the last one to generate. */
    if (a->n_emitted > 0 && a->n_emitted >= (size_t)a->max_tokens)
        return fail(err, MOE__CODE__BAD_REQUEST, "assign: %zu emitted tokens leave nothing to generate (max_tokens %" PRId32 ")",
                    a->n_emitted, a->max_tokens);
    return check_token_ids(a->emitted, a->n_emitted, "assign: emitted", lim, err);
}

int moe_msg_check_release(const Moe__Release *r, const moe_msg_limits *lim, moe_err *err)
{
    (void)lim;
    if (!r) return fail(err, MOE__CODE__MALFORMED_FRAME, "release: no body");
    return check_seq_id(r->has_seq_id, "release", err);
}

static int check_set_placement(const Moe__SetPlacement *p, moe_err *err)
{
    if (!p) return fail(err, MOE__CODE__MALFORMED_FRAME, "set_placement: no body");
    if (!p->has_id || p->id == 0) return fail(err, MOE__CODE__BAD_REQUEST, "set_placement: id is missing or 0");
    if (!p->text || !p->text[0]) return fail(err, MOE__CODE__BAD_REQUEST, "set_placement: text is empty");
    if (strlen(p->text) > MOE_MSG_MAX_PLACEMENT_BYTES)
        return fail(err, MOE__CODE__BAD_REQUEST, "set_placement: text longer than %d bytes", MOE_MSG_MAX_PLACEMENT_BYTES);
    return MOE__CODE__OK;
}

int moe_msg_check_coord(const Moe__CoordMsg *m, const moe_msg_limits *lim, moe_err *err)
{
    if (!m) return fail(err, MOE__CODE__MALFORMED_FRAME, "CoordMsg: missing");
    switch (m->body_case) {
    case MOE__COORD_MSG__BODY_HELLO_REPLY: return moe_msg_check_worker_hello_reply(m->hello_reply, lim, err);
    case MOE__COORD_MSG__BODY_ASSIGN: return moe_msg_check_assign(m->assign, lim, err);
    case MOE__COORD_MSG__BODY_RELEASE: return moe_msg_check_release(m->release, lim, err);
    case MOE__COORD_MSG__BODY_RECORD_CONTROL: return moe_msg_check_record_control(m->record_control, err);
    case MOE__COORD_MSG__BODY_HEARTBEAT: return moe_msg_check_heartbeat(m->heartbeat, lim, err);
    case MOE__COORD_MSG__BODY_ERROR: return moe_msg_check_error(m->error, lim, err);
    case MOE__COORD_MSG__BODY_SET_PLACEMENT: return check_set_placement(m->set_placement, err);
    default: return fail(err, MOE__CODE__MALFORMED_FRAME, "CoordMsg has no body (an empty or unknown message)");
    }
}

int moe_msg_check(const ProtobufCMessage *m, const moe_msg_limits *lim, moe_err *err)
{
    if (!m) return fail(err, MOE__CODE__MALFORMED_FRAME, "no message");
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &moe__client_msg__descriptor) return moe_msg_check_client((const Moe__ClientMsg *)m, lim, err);
    if (d == &moe__server_msg__descriptor) return moe_msg_check_server((const Moe__ServerMsg *)m, lim, err);
    if (d == &moe__worker_msg__descriptor) return moe_msg_check_worker((const Moe__WorkerMsg *)m, lim, err);
    if (d == &moe__coord_msg__descriptor) return moe_msg_check_coord((const Moe__CoordMsg *)m, lim, err);
    return fail(err, MOE__CODE__INTERNAL, "%s is not an envelope", d->short_name);
}
