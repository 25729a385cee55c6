/*
 * chat.c — DeepSeek chat templates rendered in C, recognised by
 * fingerprint, and a small JSON reader for conversations (see chat.h).
 */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

#include "unicode.h"

/* Fingerprints of the supported template texts (see chat.h for the
 * canonical form).  deepseek-v3: tokenizer_config.json of DeepSeek-V3
 * (2301 bytes); deepseek-v2: DeepSeek-V2(-Lite)-Chat / DeepSeek LLM chat. */
#define FP_DEEPSEEK_V3 0xebe3604156dc466aull
#define FP_DEEPSEEK_V2 0x5111253f4aa4a502ull

/* The marker texts: ｜ is U+FF5C, ▁ is U+2581. */
#define FW_BAR "\xef\xbd\x9c"
#define LOW_BAR "\xe2\x96\x81"
#define V3_USER "<" FW_BAR "User" FW_BAR ">"
#define V3_ASSISTANT "<" FW_BAR "Assistant" FW_BAR ">"
#define V3_EOS "<" FW_BAR "end" LOW_BAR "of" LOW_BAR "sentence" FW_BAR ">"
#define V3_OUTPUTS_BEGIN "<" FW_BAR "tool" LOW_BAR "outputs" LOW_BAR "begin" FW_BAR ">"
#define V3_OUTPUTS_END "<" FW_BAR "tool" LOW_BAR "outputs" LOW_BAR "end" FW_BAR ">"
#define V3_OUTPUT_BEGIN "<" FW_BAR "tool" LOW_BAR "output" LOW_BAR "begin" FW_BAR ">"
#define V3_OUTPUT_END "<" FW_BAR "tool" LOW_BAR "output" LOW_BAR "end" FW_BAR ">"

struct moe_chat {
    moe_chat_format format;
    char *bos, *eos; /* texts of the tokenizer's BOS and EOS tokens */
    size_t bos_len, eos_len;
};

/* ------------------------------------------------------------ detection */

static uint64_t fingerprint(const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) n--;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        /* Jinja reads '\n' in a string literal as a newline, so a template
         * stored with the escape renders the same as one with the byte. */
        if (c == '\\' && i + 1 < n && s[i + 1] == 'n') c = '\n', i++;
        h = (h ^ c) * 0x100000001b3ull;
    }
    return h;
}

int moe_chat_detect(const char *tmpl, size_t len, moe_chat_format *out, moe_err *err)
{
    uint64_t fp = fingerprint(tmpl, len);
    if (fp == FP_DEEPSEEK_V3) *out = MOE_CHAT_DEEPSEEK_V3;
    else if (fp == FP_DEEPSEEK_V2) *out = MOE_CHAT_DEEPSEEK_V2;
    else
        return moe_err_set(err, "unknown chat template (%zu bytes, fingerprint %016llx): supported are "
                           "deepseek-v3 and deepseek-v2; choose one explicitly to override",
                           len, (unsigned long long)fp);
    return MOE_OK;
}

const char *moe_chat_format_name(moe_chat_format f)
{
    return f == MOE_CHAT_DEEPSEEK_V3 ? "deepseek-v3" : f == MOE_CHAT_DEEPSEEK_V2 ? "deepseek-v2" : "?";
}

int moe_chat_format_parse(const char *name, moe_chat_format *out, moe_err *err)
{
    if (!strcmp(name, "deepseek-v3")) *out = MOE_CHAT_DEEPSEEK_V3;
    else if (!strcmp(name, "deepseek-v2")) *out = MOE_CHAT_DEEPSEEK_V2;
    else return moe_err_set(err, "unknown chat format '%s' (deepseek-v3, deepseek-v2)", name);
    return MOE_OK;
}

int moe_chat_init_format(moe_chat **out, moe_chat_format f, const moe_tokenizer *tok, moe_err *err)
{
    *out = NULL;
    if (f != MOE_CHAT_DEEPSEEK_V3 && f != MOE_CHAT_DEEPSEEK_V2) return moe_err_set(err, "bad chat format %d", (int)f);
    size_t bl, el;
    const char *b = moe_tokenizer_token_bytes(tok, moe_tokenizer_bos(tok), &bl);
    const char *e = moe_tokenizer_token_bytes(tok, moe_tokenizer_eos(tok), &el);
    /* Both templates write bos_token; the v2 one also eos_token. */
    if (!b || bl == 0) return moe_err_set(err, "chat: the tokenizer has no BOS token text");
    if (!e || el == 0) return moe_err_set(err, "chat: the tokenizer has no EOS token text");
    moe_chat *c = moe_xcalloc(1, sizeof *c);
    c->format = f;
    c->bos = moe_xmalloc(bl + 1);
    memcpy(c->bos, b, bl);
    c->bos[bl] = 0;
    c->bos_len = bl;
    c->eos = moe_xmalloc(el + 1);
    memcpy(c->eos, e, el);
    c->eos[el] = 0;
    c->eos_len = el;
    *out = c;
    return MOE_OK;
}

int moe_chat_init(moe_chat **out, const moe_gguf *g, const moe_tokenizer *tok, moe_err *err)
{
    *out = NULL;
    const char *s;
    uint64_t len;
    moe_chat_format f;
    if (moe_gguf_get_str(g, "tokenizer.chat_template", &s, &len, err)) return moe_err_prefix(err, "chat");
    if (moe_chat_detect(s, (size_t)len, &f, err)) return moe_err_prefix(err, "chat");
    return moe_chat_init_format(out, f, tok, err);
}

void moe_chat_free(moe_chat *c)
{
    if (!c) return;
    free(c->bos);
    free(c->eos);
    free(c);
}

moe_chat_format moe_chat_get_format(const moe_chat *c) { return c->format; }

/* ------------------------------------------------------------ rendering */

typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->cap - b->n <= n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n <= n) cap *= 2;
        b->s = moe_xrealloc(b->s, cap);
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static int render_v3(const moe_chat *c, const moe_chat_msg *m, size_t n, bool gen, sbuf *b, moe_err *err)
{
    /* All system messages, in order, joined by a blank line, go first. */
    sb_add(b, c->bos, c->bos_len);
    bool first_sp = true;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(m[i].role, "system")) continue;
        if (!first_sp) sb_str(b, "\n\n");
        sb_add(b, m[i].content, m[i].content_len);
        first_sp = false;
    }
    bool is_tool = false, output_first = true;
    for (size_t i = 0; i < n; i++) {
        const char *r = m[i].role;
        if (!strcmp(r, "system")) continue;
        if (!strcmp(r, "user")) {
            is_tool = false;
            sb_str(b, V3_USER);
            sb_add(b, m[i].content, m[i].content_len);
        } else if (!strcmp(r, "assistant")) {
            /* After tool outputs the template closes them instead of
             * opening an assistant turn. */
            sb_str(b, is_tool ? V3_OUTPUTS_END : V3_ASSISTANT);
            sb_add(b, m[i].content, m[i].content_len);
            sb_str(b, V3_EOS);
            is_tool = false;
        } else if (!strcmp(r, "tool")) {
            is_tool = true;
            sb_str(b, output_first ? V3_OUTPUTS_BEGIN V3_OUTPUT_BEGIN : "\n" V3_OUTPUT_BEGIN);
            output_first = false;
            sb_add(b, m[i].content, m[i].content_len);
            sb_str(b, V3_OUTPUT_END);
        } else {
            return moe_err_set(err, "chat: message %zu has role '%s', which the deepseek-v3 template does "
                               "not use (system, user, assistant, tool)", i, r);
        }
    }
    if (is_tool) sb_str(b, V3_OUTPUTS_END);
    if (gen && !is_tool) sb_str(b, V3_ASSISTANT);
    return MOE_OK;
}

static int render_v2(const moe_chat *c, const moe_chat_msg *m, size_t n, bool gen, sbuf *b, moe_err *err)
{
    sb_add(b, c->bos, c->bos_len);
    for (size_t i = 0; i < n; i++) {
        const char *r = m[i].role;
        if (!strcmp(r, "user")) {
            sb_str(b, "User: ");
            sb_add(b, m[i].content, m[i].content_len);
            sb_str(b, "\n\n");
        } else if (!strcmp(r, "assistant")) {
            sb_str(b, "Assistant: ");
            sb_add(b, m[i].content, m[i].content_len);
            sb_add(b, c->eos, c->eos_len);
        } else if (!strcmp(r, "system")) {
            sb_add(b, m[i].content, m[i].content_len);
            sb_str(b, "\n\n");
        } else {
            return moe_err_set(err, "chat: message %zu has role '%s', which the deepseek-v2 template does "
                               "not use (system, user, assistant)", i, r);
        }
    }
    if (gen) sb_str(b, "Assistant:");
    return MOE_OK;
}

int moe_chat_render(const moe_chat *c, const moe_chat_msg *msgs, size_t n, bool add_generation_prompt,
                    char **out, size_t *out_len, moe_err *err)
{
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || (!msgs[i].content && msgs[i].content_len))
            return moe_err_set(err, "chat: message %zu has no role or content", i);
    sbuf b = {0};
    sb_add(&b, "", 0);
    int rc = c->format == MOE_CHAT_DEEPSEEK_V3 ? render_v3(c, msgs, n, add_generation_prompt, &b, err)
                                               : render_v2(c, msgs, n, add_generation_prompt, &b, err);
    if (rc) {
        free(b.s);
        return rc;
    }
    *out = b.s;
    if (out_len) *out_len = b.n;
    return MOE_OK;
}

int moe_chat_tokenize(const moe_chat *c, const moe_tokenizer *tok, const moe_chat_msg *msgs, size_t n,
                      bool add_generation_prompt, moe_tokens *out, moe_err *err)
{
    char *s;
    size_t len;
    if (moe_chat_render(c, msgs, n, add_generation_prompt, &s, &len, err)) return MOE_ERR;
    /* The text starts with the BOS text already: match it, add nothing. */
    int rc = moe_tokenizer_encode(tok, s, len, MOE_TOK_SPECIAL, out, err);
    free(s);
    return rc;
}

/* ----------------------------------------------------------------- JSON */

/* A reader for the conversation shape only; values it does not need are
 * skipped (with a depth limit), strings are unescaped into one store. */
typedef struct jr {
    const char *s;
    size_t n, i;
    int depth;
    sbuf store;
    moe_err *err;
} jr;

#define JSON_MAX_DEPTH 64

static int jfail(jr *j, const char *what)
{
    return moe_err_set(j->err, "chat JSON: %s at byte %zu", what, j->i);
}

static void jws(jr *j)
{
    while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n' || j->s[j->i] == '\r'))
        j->i++;
}

static bool jlit(jr *j, const char *lit)
{
    size_t l = strlen(lit);
    if (j->n - j->i >= l && memcmp(j->s + j->i, lit, l) == 0) {
        j->i += l;
        return true;
    }
    return false;
}

static int jhex4(jr *j, uint32_t *v)
{
    if (j->n - j->i < 4) return jfail(j, "short \\u escape");
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = j->s[j->i++];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return jfail(j, "bad \\u escape");
        *v = *v * 16 + (uint32_t)d;
    }
    return MOE_OK;
}

/* Parses a string at j->i (which is at '"'); appends it (NUL-terminated)
 * to the store and returns its offset there in *off, length in *len. */
static int jstring(jr *j, size_t *off, size_t *len)
{
    if (j->i >= j->n || j->s[j->i] != '"') return jfail(j, "expected a string");
    j->i++;
    *off = j->store.n;
    for (;;) {
        if (j->i >= j->n) return jfail(j, "unterminated string");
        unsigned char c = (unsigned char)j->s[j->i];
        if (c == '"') {
            j->i++;
            break;
        }
        if (c < 0x20) return jfail(j, "control character in string");
        if (c != '\\') {
            size_t l;
            if (moe_utf8_decode((const unsigned char *)j->s + j->i, j->n - j->i, &l) == MOE_UTF8_INVALID)
                return jfail(j, "invalid UTF-8 in string");
            sb_add(&j->store, j->s + j->i, l);
            j->i += l;
            continue;
        }
        j->i++;
        if (j->i >= j->n) return jfail(j, "unterminated escape");
        char e = j->s[j->i++], ch;
        switch (e) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            uint32_t v, lo;
            if (jhex4(j, &v)) return MOE_ERR;
            if (v >= 0xDC00 && v <= 0xDFFF) return jfail(j, "lone low surrogate");
            if (v >= 0xD800 && v <= 0xDBFF) {
                if (!jlit(j, "\\u")) return jfail(j, "lone high surrogate");
                if (jhex4(j, &lo)) return MOE_ERR;
                if (lo < 0xDC00 || lo > 0xDFFF) return jfail(j, "bad surrogate pair");
                v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
            }
            unsigned char u[4];
            sb_add(&j->store, (const char *)u, moe_utf8_encode(v, u));
            continue;
        }
        default: return jfail(j, "bad escape");
        }
        sb_add(&j->store, &ch, 1);
    }
    *len = j->store.n - *off;
    sb_add(&j->store, "", 1); /* NUL after each string (roles are C strings) */
    return MOE_OK;
}

static int jskip(jr *j)
{
    jws(j);
    if (j->i >= j->n) return jfail(j, "unexpected end");
    char c = j->s[j->i];
    if (c == '"') {
        size_t o, l, keep = j->store.n;
        if (jstring(j, &o, &l)) return MOE_ERR;
        j->store.n = keep; /* not needed */
        return MOE_OK;
    }
    if (c == '{' || c == '[') {
        if (++j->depth > JSON_MAX_DEPTH) return jfail(j, "nesting too deep");
        char close = c == '{' ? '}' : ']';
        j->i++;
        jws(j);
        if (j->i < j->n && j->s[j->i] == close) {
            j->i++;
            j->depth--;
            return MOE_OK;
        }
        for (;;) {
            if (c == '{') {
                jws(j);
                size_t o, l, keep = j->store.n;
                if (jstring(j, &o, &l)) return MOE_ERR;
                j->store.n = keep;
                jws(j);
                if (!jlit(j, ":")) return jfail(j, "expected ':'");
            }
            if (jskip(j)) return MOE_ERR;
            jws(j);
            if (jlit(j, ",")) continue;
            if (j->i < j->n && j->s[j->i] == close) {
                j->i++;
                j->depth--;
                return MOE_OK;
            }
            return jfail(j, "expected ',' or a closing bracket");
        }
    }
    if (jlit(j, "true") || jlit(j, "false") || jlit(j, "null")) return MOE_OK;
    if (c == '-' || (c >= '0' && c <= '9')) {
        j->i++;
        while (j->i < j->n && strchr("0123456789+-.eE", j->s[j->i])) j->i++;
        return MOE_OK;
    }
    return jfail(j, "unexpected character");
}

typedef struct raw_msg {
    size_t role, content, content_len;
    bool has_role, has_content;
} raw_msg;

static int jmessage(jr *j, raw_msg *m)
{
    memset(m, 0, sizeof *m);
    jws(j);
    if (!jlit(j, "{")) return jfail(j, "a message must be an object");
    jws(j);
    if (jlit(j, "}")) return jfail(j, "empty message");
    for (;;) {
        jws(j);
        size_t ko, kl;
        if (jstring(j, &ko, &kl)) return MOE_ERR;
        char key[16] = "";
        if (kl < sizeof key) memcpy(key, j->store.s + ko, kl + 1);
        j->store.n = ko;
        jws(j);
        if (!jlit(j, ":")) return jfail(j, "expected ':'");
        jws(j);
        if (!strcmp(key, "role") || !strcmp(key, "content")) {
            bool is_role = key[0] == 'r';
            if (j->i < j->n && j->s[j->i] != '"')
                return jfail(j, is_role ? "role must be a string" : "content must be a string");
            size_t o, l;
            if (jstring(j, &o, &l)) return MOE_ERR;
            if (is_role) m->role = o, m->has_role = true;
            else m->content = o, m->content_len = l, m->has_content = true;
        } else if (jskip(j)) {
            return MOE_ERR;
        }
        jws(j);
        if (jlit(j, ",")) continue;
        if (jlit(j, "}")) break;
        return jfail(j, "expected ',' or '}'");
    }
    if (!m->has_role) return jfail(j, "message without a role");
    if (!m->has_content) return jfail(j, "message without content");
    return MOE_OK;
}

int moe_chat_conv_parse(moe_chat_conv *out, const char *json, size_t len, moe_err *err)
{
    memset(out, 0, sizeof *out);
    /* Absent means true, as in the OpenAI-style API and the wire protocol
     * (proto Chat): a chat request wants the assistant's answer. */
    out->add_generation_prompt = true;
    jr j = {.s = json, .n = len, .err = err};
    raw_msg *raw = NULL;
    size_t n = 0, cap = 0;
    bool have_messages = false;
    int rc = MOE_ERR;
    jws(&j);
    if (!jlit(&j, "{")) {
        jfail(&j, "expected an object");
        goto done;
    }
    jws(&j);
    if (!jlit(&j, "}")) {
        for (;;) {
            jws(&j);
            size_t ko, kl;
            if (jstring(&j, &ko, &kl)) goto done;
            char key[32] = "";
            if (kl < sizeof key) memcpy(key, j.store.s + ko, kl + 1);
            j.store.n = ko;
            jws(&j);
            if (!jlit(&j, ":")) {
                jfail(&j, "expected ':'");
                goto done;
            }
            jws(&j);
            if (!strcmp(key, "messages")) {
                if (!jlit(&j, "[")) {
                    jfail(&j, "messages must be an array");
                    goto done;
                }
                have_messages = true;
                jws(&j);
                if (!jlit(&j, "]")) {
                    for (;;) {
                        if (n == cap) {
                            cap = cap ? 2 * cap : 8;
                            raw = moe_xrealloc(raw, cap * sizeof *raw);
                        }
                        if (jmessage(&j, &raw[n])) goto done;
                        n++;
                        jws(&j);
                        if (jlit(&j, ",")) continue;
                        if (jlit(&j, "]")) break;
                        jfail(&j, "expected ',' or ']'");
                        goto done;
                    }
                }
            } else if (!strcmp(key, "add_generation_prompt")) {
                if (jlit(&j, "true")) out->add_generation_prompt = true;
                else if (jlit(&j, "false")) out->add_generation_prompt = false;
                else {
                    jfail(&j, "add_generation_prompt must be true or false");
                    goto done;
                }
            } else if (jskip(&j)) {
                goto done;
            }
            jws(&j);
            if (jlit(&j, ",")) continue;
            if (jlit(&j, "}")) break;
            jfail(&j, "expected ',' or '}'");
            goto done;
        }
    }
    jws(&j);
    if (j.i != j.n) {
        jfail(&j, "trailing characters");
        goto done;
    }
    if (!have_messages) {
        moe_err_set(err, "chat JSON: no \"messages\" array");
        goto done;
    }
    /* The store is final now: turn offsets into pointers. */
    sb_add(&j.store, "", 0);
    out->msgs = moe_xcalloc(n ? n : 1, sizeof *out->msgs);
    for (size_t i = 0; i < n; i++) {
        out->msgs[i].role = j.store.s + raw[i].role;
        out->msgs[i].content = j.store.s + raw[i].content;
        out->msgs[i].content_len = raw[i].content_len;
    }
    out->n = n;
    out->store = j.store.s;
    j.store.s = NULL;
    rc = MOE_OK;
done:
    free(raw);
    free(j.store.s);
    if (rc) memset(out, 0, sizeof *out);
    return rc;
}

void moe_chat_conv_free(moe_chat_conv *c)
{
    free(c->msgs);
    free(c->store);
    memset(c, 0, sizeof *c);
}
