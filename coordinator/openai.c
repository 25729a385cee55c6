/*
 * openai.c — the OpenAI API's JSON (see openai.h), with jansson.
 */
#include "openai.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

/* ---- errors ------------------------------------------------------------------------ */

static const char *type_of(int status)
{
    switch (status) {
    case 400: case 413: return "invalid_request_error";
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 405: return "method_not_allowed";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    case 504: return "timeout";
    default: return "server_error";
    }
}

int moe_oai_error_set(moe_oai_error *e, int status, const char *code, const char *param, const char *fmt, ...)
{
    e->status = status;
    e->type = type_of(status);
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return MOE_ERR;
}

void moe_oai_error_from_code(moe_oai_error *e, int code, const char *msg)
{
    moe_oai_error_set(e, moe_msg_code_http_status(code), e->code_buf, NULL, "%s", msg ? msg : "");
    /* the protocol's name in lower case: "queue_full" */
    const char *name = moe_msg_code_name(code);
    size_t i = 0;
    for (; name[i] && i + 1 < sizeof e->code_buf; i++)
        e->code_buf[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
    e->code_buf[i] = 0;
}

/* A JSON string of bytes that may not be valid UTF-8: invalid bytes become
 * U+FFFD (json_stringn refuses them). */
static json_t *jstr(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (moe_utf8_valid_prefix(u, n) == n) return json_stringn(s, n);
    char *buf = moe_xmalloc(3 * n + 1);
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        const size_t ok = moe_utf8_valid_prefix(u + i, n - i);
        memcpy(buf + w, s + i, ok);
        w += ok;
        i += ok;
        if (i < n) {
            memcpy(buf + w, "\xEF\xBF\xBD", 3);
            w += 3;
            i++;
        }
    }
    json_t *j = json_stringn(buf, w);
    free(buf);
    return j;
}

static char *dump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    MOE_ASSERT(s); /* fails only out of memory: every string in j is valid UTF-8 */
    return s;
}

char *moe_oai_error_json(const moe_oai_error *e)
{
    json_t *err = json_object();
    json_object_set_new(err, "message", jstr(e->message, strlen(e->message)));
    json_object_set_new(err, "type", json_string(e->type ? e->type : type_of(e->status)));
    json_object_set_new(err, "param", e->param[0] ? jstr(e->param, strlen(e->param)) : json_null());
    json_object_set_new(err, "code", e->code ? json_string(e->code) : json_null());
    json_t *root = json_object();
    json_object_set_new(root, "error", err);
    return dump(root);
}

/* ---- request bodies ------------------------------------------------------------------ */

static int bad(moe_oai_error *e, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(moe_oai_error *e, const char *param, const char *fmt, ...)
{
    char msg[MOE_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return moe_oai_error_set(e, 400, "invalid_value", param, "%s: %s", param, msg);
}

/* A field, or NULL when absent or JSON null (both mean "the default"). */
static json_t *field(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return v && !json_is_null(v) ? v : NULL;
}

static int get_bool(json_t *o, const char *name, bool *out, moe_oai_error *e)
{
    json_t *v = field(o, name);
    if (!v) return MOE_OK;
    if (!json_is_boolean(v)) return bad(e, name, "must be true or false");
    *out = json_is_true(v);
    return MOE_OK;
}

static int get_int(json_t *o, const char *name, long long lo, long long hi, bool *has, long long *out,
                   moe_oai_error *e)
{
    json_t *v = field(o, name);
    *has = false;
    if (!v) return MOE_OK;
    if (json_is_real(v)) {
        const double d = json_real_value(v);
        if (d != floor(d) || d < (double)lo || d > (double)hi) return bad(e, name, "must be a whole number in [%lld, %lld]", lo, hi);
        *out = (long long)d;
    } else if (json_is_integer(v)) {
        *out = json_integer_value(v);
    } else {
        return bad(e, name, "must be an integer");
    }
    if (*out < lo || *out > hi) return bad(e, name, "%lld is out of range [%lld, %lld]", *out, lo, hi);
    *has = true;
    return MOE_OK;
}

static int get_sampling(json_t *o, const char *name, moe_sampler_param p, moe_sampler_cfg *c, moe_oai_error *e)
{
    json_t *v = field(o, name);
    if (!v) return MOE_OK;
    if (!json_is_number(v)) return bad(e, name, "must be a number");
    double d = json_number_value(v);
    if (p == MOE_SP_TOP_K && d == -1) d = 0; /* vLLM's "off" */
    moe_err err;
    if (moe_sampler_cfg_set_num(c, p, d, &err)) return bad(e, name, "%s", err.msg);
    return MOE_OK;
}

static int parse_prompt(moe_oai_request *r, json_t *v, const moe_msg_limits *lim, moe_oai_error *e)
{
    if (!v) return moe_oai_error_set(e, 400, "missing_field", "prompt", "prompt: is required");
    if (json_is_array(v) && json_array_size(v) == 1 && json_is_string(json_array_get(v, 0)))
        v = json_array_get(v, 0); /* ["text"]: one prompt */
    if (json_is_string(v)) {
        if (json_string_length(v) > lim->max_text_len)
            return bad(e, "prompt", "%zu bytes, more than the limit of %zu", json_string_length(v), lim->max_text_len);
        if (strlen(json_string_value(v)) != json_string_length(v)) return bad(e, "prompt", "contains a NUL character");
        r->spec.kind = MOE_PROMPT_TEXT;
        r->spec.text = json_string_value(v);
        return MOE_OK;
    }
    if (!json_is_array(v)) return bad(e, "prompt", "must be a string or a list of token ids");
    const size_t n = json_array_size(v);
    if (n == 0) return bad(e, "prompt", "is an empty list");
    if (n > lim->max_ids) return bad(e, "prompt", "%zu token ids, more than the limit of %zu", n, lim->max_ids);
    r->ids = moe_xcalloc(n, sizeof *r->ids);
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(v, i);
        if (json_is_string(x) || json_is_array(x))
            return bad(e, "prompt", "element %zu is a prompt: several prompts in one request are not supported; send one request each", i);
        if (!json_is_integer(x)) return bad(e, "prompt", "element %zu is not a token id", i);
        const long long id = json_integer_value(x);
        if (id < 0 || (lim->vocab_size && id >= (long long)lim->vocab_size))
            return bad(e, "prompt", "token id %lld at %zu is outside the vocabulary [0, %u)", id, i, lim->vocab_size);
        r->ids[i] = (int32_t)id;
    }
    r->spec.kind = MOE_PROMPT_IDS;
    r->spec.ids = r->ids;
    r->spec.n_ids = n;
    return MOE_OK;
}

static const char *const ROLES[] = {"system", "user", "assistant", "tool", "developer"};

/* Message content: a string or a list of {"type": "text", "text": ...}. */
static int parse_content(moe_oai_request *r, json_t *c, size_t i, moe_chat_msg *m, const moe_msg_limits *lim,
                         moe_oai_error *e)
{
    if (!c) {
        m->content = "";
        return MOE_OK;
    }
    if (json_is_string(c)) {
        m->content = json_string_value(c);
        m->content_len = json_string_length(c);
    } else if (json_is_array(c)) {
        size_t total = 0;
        for (size_t k = 0; k < json_array_size(c); k++) {
            json_t *p = json_array_get(c, k);
            json_t *t = json_is_object(p) ? json_object_get(p, "type") : NULL;
            json_t *x = json_is_object(p) ? json_object_get(p, "text") : NULL;
            if (!t || !json_is_string(t) || strcmp(json_string_value(t), "text") || !x || !json_is_string(x))
                return bad(e, "messages", "messages[%zu].content[%zu]: only {\"type\": \"text\", \"text\": ...} parts are supported", i, k);
            total += json_string_length(x);
            if (total > lim->max_text_len) break;
        }
        if (total <= lim->max_text_len) {
            char *buf = moe_xmalloc(total + 1);
            size_t w = 0;
            for (size_t k = 0; k < json_array_size(c); k++) {
                json_t *x = json_object_get(json_array_get(c, k), "text");
                memcpy(buf + w, json_string_value(x), json_string_length(x));
                w += json_string_length(x);
            }
            buf[w] = 0;
            r->parts = moe_xrealloc(r->parts, (r->n_parts + 1) * sizeof *r->parts);
            r->parts[r->n_parts++] = buf;
            m->content = buf;
            m->content_len = w;
        } else {
            m->content_len = total;
        }
    } else {
        return bad(e, "messages", "messages[%zu].content must be a string or a list of text parts", i);
    }
    if (m->content_len > lim->max_text_len)
        return bad(e, "messages", "messages[%zu].content has more than %zu bytes", i, lim->max_text_len);
    if (strlen(m->content) != m->content_len) return bad(e, "messages", "messages[%zu].content contains a NUL character", i);
    return MOE_OK;
}

static int parse_messages(moe_oai_request *r, json_t *v, const moe_msg_limits *lim, moe_oai_error *e)
{
    if (!v) return moe_oai_error_set(e, 400, "missing_field", "messages", "messages: is required");
    if (!json_is_array(v)) return bad(e, "messages", "must be a list of messages");
    const size_t n = json_array_size(v);
    if (n == 0) return bad(e, "messages", "is an empty list");
    if (n > lim->max_chat_messages) return bad(e, "messages", "%zu messages, more than the limit of %zu", n, lim->max_chat_messages);
    r->chat = moe_xcalloc(n, sizeof *r->chat);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(v, i);
        if (!json_is_object(m)) return bad(e, "messages", "messages[%zu] is not an object", i);
        json_t *role = json_object_get(m, "role");
        if (!role || !json_is_string(role)) return bad(e, "messages", "messages[%zu].role is missing or not a string", i);
        bool known = false;
        for (size_t k = 0; k < sizeof ROLES / sizeof ROLES[0]; k++)
            if (!strcmp(json_string_value(role), ROLES[k])) known = true;
        if (!known) return bad(e, "messages", "messages[%zu].role must be system, user, assistant, tool or developer", i);
        /* "developer" is OpenAI's newer name of the system role */
        r->chat[i].role = strcmp(json_string_value(role), "developer") ? json_string_value(role) : "system";
        if (parse_content(r, field(m, "content"), i, &r->chat[i], lim, e)) return MOE_ERR;
    }
    r->spec.kind = MOE_PROMPT_CHAT;
    r->spec.chat = r->chat;
    r->spec.n_chat = n;
    r->spec.add_generation_prompt = true;
    return get_bool(r->root, "add_generation_prompt", &r->spec.add_generation_prompt, e);
}

static int parse_stop(moe_oai_request *r, json_t *v, const moe_msg_limits *lim, moe_oai_error *e)
{
    if (!v) return MOE_OK;
    json_t *one[1] = {v};
    size_t n = 1;
    if (json_is_array(v)) n = json_array_size(v);
    else if (!json_is_string(v)) return bad(e, "stop", "must be a string or a list of strings");
    if (n > lim->max_stop) return bad(e, "stop", "%zu stop strings, more than the limit of %zu", n, lim->max_stop);
    r->stop = moe_xcalloc(n ? n : 1, sizeof *r->stop);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(v) ? json_array_get(v, i) : one[0];
        if (!json_is_string(s)) return bad(e, "stop", "element %zu is not a string", i);
        const size_t l = json_string_length(s);
        if (l == 0) return bad(e, "stop", "element %zu is empty", i);
        if (l > lim->max_stop_len) return bad(e, "stop", "element %zu has %zu bytes, more than %zu", i, l, lim->max_stop_len);
        if (strlen(json_string_value(s)) != l) return bad(e, "stop", "element %zu contains a NUL character", i);
        r->stop[i] = json_string_value(s);
    }
    r->spec.stop = r->stop;
    r->spec.n_stop = n;
    return MOE_OK;
}

static int parse_fields(moe_oai_request *r, const moe_msg_limits *lim, moe_oai_error *e)
{
    json_t *o = r->root;
    moe_request_spec *s = &r->spec;
    json_t *model = field(o, "model");
    if (model && !json_is_string(model)) return bad(e, "model", "must be a string");
    r->model = model ? json_string_value(model) : NULL;
    if (r->kind == MOE_OAI_COMPLETION) {
        if (parse_prompt(r, field(o, "prompt"), lim, e)) return MOE_ERR;
    } else {
        if (parse_messages(r, field(o, "messages"), lim, e)) return MOE_ERR;
    }
    bool has;
    long long v;
    const long long max_tok = lim->max_tokens > 0 ? lim->max_tokens : (1 << 20);
    /* chat: max_completion_tokens (OpenAI's newer name) wins over max_tokens */
    const char *mt = r->kind == MOE_OAI_CHAT && field(o, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (get_int(o, mt, 0, max_tok, &has, &v, e)) return MOE_ERR;
    if (has) s->max_tokens = (int)v;
    if (get_sampling(o, "temperature", MOE_SP_TEMP, &s->sampling, e)) return MOE_ERR;
    if (get_sampling(o, "top_p", MOE_SP_TOP_P, &s->sampling, e)) return MOE_ERR;
    if (get_sampling(o, "top_k", MOE_SP_TOP_K, &s->sampling, e)) return MOE_ERR;
    if (get_sampling(o, "min_p", MOE_SP_MIN_P, &s->sampling, e)) return MOE_ERR;
    if (get_sampling(o, "repetition_penalty", MOE_SP_REPEAT_PENALTY, &s->sampling, e)) return MOE_ERR;
    json_t *seed = field(o, "seed");
    if (seed) {
        if (!json_is_integer(seed)) return bad(e, "seed", "must be an integer");
        if (json_integer_value(seed) < 0)
            return bad(e, "seed", "%lld is negative: seeds are in [0, 2^63)", (long long)json_integer_value(seed));
        r->seeded = true;
        r->seed = (uint64_t)json_integer_value(seed);
    }
    if (parse_stop(r, field(o, "stop"), lim, e)) return MOE_ERR;
    if (get_int(o, "n", 1, MOE_OAI_MAX_N, &has, &v, e)) return MOE_ERR;
    r->n = has ? (int)v : 1;
    if (get_bool(o, "stream", &s->stream, e)) return MOE_ERR;
    json_t *so = field(o, "stream_options");
    if (so) {
        if (!json_is_object(so)) return bad(e, "stream_options", "must be an object");
        if (!s->stream) return bad(e, "stream_options", "is allowed only with stream true");
        if (get_bool(so, "include_usage", &r->include_usage, e)) return MOE_ERR;
    }
    if (get_bool(o, "ignore_eos", &s->ignore_eos, e)) return MOE_ERR;
    if (get_bool(o, "return_routed_experts", &s->routed_experts, e)) return MOE_ERR;
    if (get_bool(o, "return_routed_expert_weights", &s->routed_weights, e)) return MOE_ERR;
    json_t *salt = field(o, "cache_salt");
    if (salt && !json_is_null(salt)) {
        if (!json_is_string(salt)) return bad(e, "cache_salt", "must be a string");
        if (json_string_length(salt) > MOE_CACHE_SALT_MAX) return bad(e, "cache_salt", "is longer than %d bytes", MOE_CACHE_SALT_MAX);
        s->cache_salt = json_string_value(salt);
    }
    if (s->routed_weights && !s->routed_experts)
        return bad(e, "return_routed_expert_weights", "needs return_routed_experts true");
    if (get_int(o, "min_tokens", 0, max_tok, &has, &v, e)) return MOE_ERR;
    if (has) s->min_tokens = (int)v;
    if (s->max_tokens >= 0 && s->min_tokens > s->max_tokens)
        return bad(e, "min_tokens", "%d is more than max_tokens %d", s->min_tokens, s->max_tokens);
    if (r->kind == MOE_OAI_COMPLETION) {
        if (get_bool(o, "echo", &r->echo, e)) return MOE_ERR;
        if (get_int(o, "logprobs", 0, MOE_MAX_TOP_LOGPROBS, &has, &v, e)) return MOE_ERR;
        if (has) s->logprobs = (int)v;
        s->prompt_logprobs = r->echo && s->logprobs >= 0;
        if (s->max_tokens == 0 && !s->prompt_logprobs)
            return bad(e, "max_tokens", "0 asks for no token: allowed only with echo and logprobs (scoring the prompt)");
    } else {
        bool lp = false;
        if (get_bool(o, "logprobs", &lp, e)) return MOE_ERR;
        if (get_int(o, "top_logprobs", 0, MOE_MAX_TOP_LOGPROBS, &has, &v, e)) return MOE_ERR;
        if (has && !lp) return bad(e, "top_logprobs", "needs logprobs true");
        if (lp) s->logprobs = has ? (int)v : 0;
        if (s->max_tokens == 0) return bad(e, mt, "must be at least 1");
    }
    if (s->stream && s->max_tokens == 0) return bad(e, "stream", "cannot stream a request for no token (max_tokens 0)");
    json_t *user = field(o, "user");
    if (user && !json_is_string(user)) return bad(e, "user", "must be a string");
    return MOE_OK;
}

static int parse_root(json_t **root, const char *body, size_t len, moe_oai_error *e)
{
    json_error_t je;
    *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!*root)
        return moe_oai_error_set(e, 400, "invalid_json", NULL, "the body is not valid JSON: %s (line %d, column %d)",
                                 je.text, je.line, je.column);
    if (!json_is_object(*root)) return moe_oai_error_set(e, 400, "invalid_json", NULL, "the body must be a JSON object");
    return MOE_OK;
}

int moe_oai_parse(moe_oai_request *r, moe_oai_kind kind, const char *body, size_t len, const moe_msg_limits *lim,
                  moe_oai_error *e)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->n = 1;
    moe_request_spec_init(&r->spec);
    json_t *root;
    const int rc = parse_root(&root, body, len, e);
    r->root = root;
    if (rc) return MOE_ERR;
    return parse_fields(r, lim, e);
}

void moe_oai_request_free(moe_oai_request *r)
{
    if (!r) return;
    json_decref((json_t *)r->root);
    free(r->ids);
    free(r->stop);
    free(r->chat);
    for (size_t i = 0; i < r->n_parts; i++) free(r->parts[i]);
    free(r->parts);
    memset(r, 0, sizeof *r);
}

void moe_oai_choice_spec(const moe_oai_request *r, int i, const char *id, moe_request_spec *spec)
{
    *spec = r->spec;
    spec->id = id;
    if (r->seeded) moe_sampler_cfg_set_seed(&spec->sampling, r->seed + (uint64_t)i);
}

/* ---- tokenize, detokenize, models ----------------------------------------------------------- */

char *moe_oai_tokenize(const moe_request_model *m, const char *body, size_t len, moe_oai_error *e)
{
    json_t *root;
    if (parse_root(&root, body, len, e)) {
        json_decref(root);
        return NULL;
    }
    moe_tokens t = {0};
    moe_err err = {{0}};
    char *out = NULL;
    json_t *prompt = field(root, "prompt"), *messages = field(root, "messages");
    if (prompt && messages) {
        bad(e, "prompt", "give prompt or messages, not both");
    } else if (messages) {
        moe_oai_request r;
        memset(&r, 0, sizeof r);
        r.root = root;
        moe_msg_limits lim;
        moe_msg_limits_default(&lim);
        if (!m->chat) {
            moe_oai_error_set(e, 400, "invalid_value", "messages", "messages: the model has no chat template this server knows");
        } else if (!parse_messages(&r, messages, &lim, e)) {
            if (moe_chat_tokenize(m->chat, m->tok, r.chat, r.spec.n_chat, r.spec.add_generation_prompt, &t, &err))
                bad(e, "messages", "%s", err.msg);
            else out = "";
        }
        r.root = NULL;
        moe_oai_request_free(&r);
    } else if (prompt) {
        bool special = true;
        if (!json_is_string(prompt)) bad(e, "prompt", "must be a string");
        else if (!get_bool(root, "add_special_tokens", &special, e)) {
            const char *s = json_string_value(prompt);
            const size_t n = json_string_length(prompt);
            const int rc = special ? moe_tokenizer_encode_prompt(m->tok, s, n, &t, &err)
                                   : moe_tokenizer_encode(m->tok, s, n, MOE_TOK_SPECIAL, &t, &err);
            if (rc) bad(e, "prompt", "%s", err.msg);
            else out = "";
        }
    } else {
        moe_oai_error_set(e, 400, "missing_field", "prompt", "prompt: is required (or messages)");
    }
    if (out) {
        json_t *ids = json_array();
        for (size_t i = 0; i < t.n; i++) json_array_append_new(ids, json_integer(t.ids[i]));
        json_t *o = json_object();
        json_object_set_new(o, "count", json_integer((json_int_t)t.n));
        json_object_set_new(o, "max_model_len", json_integer(m->lim.max_context));
        json_object_set_new(o, "tokens", ids);
        out = dump(o);
    }
    moe_tokens_free(&t);
    json_decref(root);
    return out;
}

char *moe_oai_detokenize(const moe_request_model *m, const char *body, size_t len, moe_oai_error *e)
{
    json_t *root;
    if (parse_root(&root, body, len, e)) {
        json_decref(root);
        return NULL;
    }
    char *out = NULL;
    json_t *toks = field(root, "tokens");
    const uint32_t vocab = (uint32_t)moe_tokenizer_n_vocab(m->tok);
    if (!toks) {
        moe_oai_error_set(e, 400, "missing_field", "tokens", "tokens: is required");
    } else if (!json_is_array(toks)) {
        bad(e, "tokens", "must be a list of token ids");
    } else if (json_array_size(toks) > m->lim.max_ids) {
        bad(e, "tokens", "%zu ids, more than the limit of %zu", json_array_size(toks), m->lim.max_ids);
    } else {
        const size_t n = json_array_size(toks);
        int32_t *ids = moe_xcalloc(n ? n : 1, sizeof *ids);
        bool ok = true;
        for (size_t i = 0; i < n && ok; i++) {
            json_t *x = json_array_get(toks, i);
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= (json_int_t)vocab) {
                bad(e, "tokens", "element %zu is not a token id in [0, %u)", i, vocab);
                ok = false;
            } else {
                ids[i] = (int32_t)json_integer_value(x);
            }
        }
        char *text = NULL;
        size_t tlen = 0;
        moe_err err = {{0}};
        if (ok && moe_tokenizer_decode(m->tok, ids, n, &text, &tlen, &err)) {
            bad(e, "tokens", "%s", err.msg);
            ok = false;
        }
        if (ok) {
            json_t *o = json_object();
            json_object_set_new(o, "prompt", jstr(text, tlen));
            out = dump(o);
        }
        free(text);
        free(ids);
    }
    json_decref(root);
    return out;
}

char *moe_oai_models_json(const char *model, long long created, uint32_t max_context)
{
    json_t *m = json_object();
    json_object_set_new(m, "id", jstr(model, strlen(model)));
    json_object_set_new(m, "object", json_string("model"));
    json_object_set_new(m, "created", json_integer(created));
    json_object_set_new(m, "owned_by", json_string("moe"));
    json_object_set_new(m, "root", jstr(model, strlen(model)));
    json_object_set_new(m, "max_model_len", json_integer(max_context));
    json_t *data = json_array();
    json_array_append_new(data, m);
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("list"));
    json_object_set_new(o, "data", data);
    return dump(o);
}

/* ---- responses -------------------------------------------------------------------------- */

static json_t *token_str(const moe_oai_render *rd, int32_t id)
{
    size_t n = 0;
    const char *s = rd->token_text ? rd->token_text(rd->token_ctx, id, &n) : NULL;
    if (!s) {
        char buf[32];
        snprintf(buf, sizeof buf, "<%d>", (int)id);
        return json_string(buf);
    }
    return jstr(s, n);
}

static json_t *token_bytes(const moe_oai_render *rd, int32_t id)
{
    size_t n = 0;
    const char *s = rd->token_text ? rd->token_text(rd->token_ctx, id, &n) : NULL;
    json_t *a = json_array();
    for (size_t i = 0; s && i < n; i++) json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

/* A logprob as JSON: a finite number, or null (-inf, NaN: JSON has neither). */
static json_t *lp_num(float v) { return isfinite(v) ? json_real(v) : json_null(); }

/* The completions API's logprobs: {tokens, token_logprobs, top_logprobs,
 * text_offset}; the prompt's positions first when echoed. */
static json_t *completion_logprobs(const moe_oai_render *rd, const moe_oai_choice *c)
{
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t off = c->text_offset;
    for (int pass = 0; pass < 2; pass++) {
        const moe_token_logprobs *lp = pass ? c->lp : c->prompt_lp;
        const int n = pass ? c->n_lp : c->n_prompt_lp;
        for (int i = 0; lp && i < n; i++) {
            const moe_token_logprobs *t = &lp[i];
            json_array_append_new(tokens, token_str(rd, t->id));
            const bool first_prompt = !pass && i == 0; /* nothing before it to predict it */
            json_array_append_new(lps, first_prompt ? json_null() : lp_num(t->logprob));
            if (first_prompt) {
                json_array_append_new(tops, json_null());
            } else {
                json_t *top = json_object();
                for (int k = 0; k < t->n_top && k < MOE_MAX_TOP_LOGPROBS; k++) {
                    json_t *key = token_str(rd, t->top[k].id);
                    /* two ids with one text: the likelier (first) keeps its place */
                    if (!json_object_get(top, json_string_value(key)))
                        json_object_set_new(top, json_string_value(key), lp_num(t->top[k].logprob));
                    json_decref(key);
                }
                json_array_append_new(tops, top);
            }
            json_array_append_new(offs, json_integer((json_int_t)off));
            size_t len = 0;
            if (rd->token_text && rd->token_text(rd->token_ctx, t->id, &len)) off += len;
        }
    }
    if (c->text_end) *c->text_end = off;
    json_t *o = json_object();
    json_object_set_new(o, "tokens", tokens);
    json_object_set_new(o, "token_logprobs", lps);
    json_object_set_new(o, "top_logprobs", tops);
    json_object_set_new(o, "text_offset", offs);
    return o;
}

/* The chat API's logprobs: {content: [{token, logprob, bytes, top_logprobs}]}. */
static json_t *chat_logprobs(const moe_oai_render *rd, const moe_oai_choice *c)
{
    json_t *content = json_array();
    for (int i = 0; c->lp && i < c->n_lp; i++) {
        const moe_token_logprobs *t = &c->lp[i];
        json_t *e = json_object();
        json_object_set_new(e, "token", token_str(rd, t->id));
        json_object_set_new(e, "logprob", isfinite(t->logprob) ? json_real(t->logprob) : json_real(-9999.0));
        json_object_set_new(e, "bytes", token_bytes(rd, t->id));
        json_t *top = json_array();
        for (int k = 0; k < t->n_top && k < MOE_MAX_TOP_LOGPROBS; k++) {
            json_t *a = json_object();
            json_object_set_new(a, "token", token_str(rd, t->top[k].id));
            json_object_set_new(a, "logprob", isfinite(t->top[k].logprob) ? json_real(t->top[k].logprob) : json_real(-9999.0));
            json_object_set_new(a, "bytes", token_bytes(rd, t->top[k].id));
            json_array_append_new(top, a);
        }
        json_object_set_new(e, "top_logprobs", top);
        json_array_append_new(content, e);
    }
    json_t *o = json_object();
    json_object_set_new(o, "content", content);
    return o;
}

static json_t *text_of(const moe_oai_choice *c)
{
    if (!c->prompt_text || !c->prompt_text_len) return jstr(c->text ? c->text : "", c->text ? c->text_len : 0);
    char *buf = moe_xmalloc(c->prompt_text_len + c->text_len + 1);
    memcpy(buf, c->prompt_text, c->prompt_text_len);
    if (c->text_len) memcpy(buf + c->prompt_text_len, c->text, c->text_len);
    json_t *j = jstr(buf, c->prompt_text_len + c->text_len);
    free(buf);
    return j;
}

static json_t *choice_json(const moe_oai_render *rd, const moe_oai_choice *c, bool chunk, bool first)
{
    json_t *o = json_object();
    json_object_set_new(o, "index", json_integer(c->index));
    if (rd->kind == MOE_OAI_COMPLETION) {
        json_object_set_new(o, "text", text_of(c));
        json_object_set_new(o, "logprobs", rd->logprobs ? completion_logprobs(rd, c) : json_null());
    } else {
        json_t *msg = json_object();
        if (!chunk || first) json_object_set_new(msg, "role", json_string("assistant"));
        if (!chunk || c->text_len || !c->finish) json_object_set_new(msg, "content", text_of(c));
        json_object_set_new(o, chunk ? "delta" : "message", msg);
        json_object_set_new(o, "logprobs", rd->logprobs ? chat_logprobs(rd, c) : json_null());
    }
    json_object_set_new(o, "finish_reason", c->finish ? json_string(c->finish) : json_null());
    if (c->routed) {
        const moe_oai_routed *r = c->routed;
        for (int k = 0; k < (r->w_b64 ? 2 : 1); k++) {
            json_t *a = json_object();
            json_object_set_new(a, "shape", json_pack("[IIi]", (json_int_t)r->rows, (json_int_t)r->layers, r->top_k));
            json_object_set_new(a, "dtype", json_string(k ? "float32" : "int16"));
            json_object_set_new(a, "first_moe_layer", json_integer(r->first_moe_layer));
            json_object_set_new(a, "data", json_string(k ? r->w_b64 : r->ids_b64));
            json_object_set_new(o, k ? "routed_expert_weights" : "routed_experts", a);
        }
    }
    return o;
}

static json_t *head(const moe_oai_render *rd, bool chunk)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(rd->id));
    const char *obj = rd->kind == MOE_OAI_COMPLETION ? "text_completion"
                      : chunk                        ? "chat.completion.chunk"
                                                     : "chat.completion";
    json_object_set_new(o, "object", json_string(obj));
    json_object_set_new(o, "created", json_integer(rd->created));
    json_object_set_new(o, "model", jstr(rd->model, strlen(rd->model)));
    return o;
}

static json_t *usage_json(const moe_oai_usage *u)
{
    json_t *o = json_object();
    json_object_set_new(o, "prompt_tokens", json_integer(u->prompt_tokens));
    json_object_set_new(o, "completion_tokens", json_integer(u->completion_tokens));
    json_object_set_new(o, "total_tokens", json_integer(u->prompt_tokens + u->completion_tokens));
    json_t *d = json_object();
    json_object_set_new(d, "cached_tokens", json_integer(u->cached_tokens));
    json_object_set_new(o, "prompt_tokens_details", d);
    return o;
}

char *moe_oai_response_json(const moe_oai_render *rd, const moe_oai_choice *ch, int n, const moe_oai_usage *u)
{
    json_t *o = head(rd, false);
    json_t *choices = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(choices, choice_json(rd, &ch[i], false, false));
    json_object_set_new(o, "choices", choices);
    json_object_set_new(o, "usage", usage_json(u));
    return dump(o);
}

char *moe_oai_chunk_json(const moe_oai_render *rd, const moe_oai_choice *ch, bool first)
{
    json_t *o = head(rd, true);
    json_t *choices = json_array();
    json_array_append_new(choices, choice_json(rd, ch, true, first));
    json_object_set_new(o, "choices", choices);
    return dump(o);
}

char *moe_oai_usage_chunk_json(const moe_oai_render *rd, const moe_oai_usage *u)
{
    json_t *o = head(rd, true);
    json_object_set_new(o, "choices", json_array());
    json_object_set_new(o, "usage", usage_json(u));
    return dump(o);
}

void moe_oai_sse(char **buf, size_t *len, size_t *cap, const char *json)
{
    const size_t n = strlen(json);
    const size_t need = *len + n + 9;
    if (need > *cap) {
        *cap = need * 2;
        *buf = moe_xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, "data: ", 6);
    memcpy(*buf + *len + 6, json, n);
    memcpy(*buf + *len + 6 + n, "\n\n", 3); /* with the NUL, not counted */
    *len += n + 8;
}
