/*
 * reqline.c — the request-file parser (the format is in reqline.h).
 *
 * A line is split into blank-separated fields after its prompt; every
 * field is bounded before it is copied, every count is checked before an
 * item is stored, and a failed line frees what it had built, so a list
 * can keep going with the next line.
 */
#include "reqline.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

/* Longest option field copied (a stop string of 256 bytes, every byte escaped, fits). */
#define FIELD_MAX 1024

int moe_reqline_unescape(const char *s, size_t n, char **out, size_t *out_len, moe_err *err)
{
    char *b = moe_xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            b[k++] = s[i];
            continue;
        }
        const char c = i + 1 < n ? s[i + 1] : 0;
        if (c == 'n') b[k++] = '\n';
        else if (c == 't') b[k++] = '\t';
        else if (c == 'r') b[k++] = '\r';
        else if (c == 's') b[k++] = ' ';
        else if (c == '\\') b[k++] = '\\';
        else {
            free(b);
            if (!c) return moe_err_set(err, "ends in a lone backslash (write \\\\ for one)");
            return moe_err_set(err, "unknown escape '\\%c' (\\n \\t \\r \\s \\\\ are known)", c);
        }
        i++;
    }
    b[k] = 0;
    *out = b;
    *out_len = k;
    return MOE_OK;
}

void moe_reqline_free(moe_reqline *r)
{
    free(r->text);
    free(r->ids);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->stop_ids);
    free(r->error);
    const int line = r->line;
    memset(r, 0, sizeof *r);
    r->line = line;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* The next blank-separated field of [*p, end): its start and length; false at the end. */
static bool next_field(const char **p, const char *end, const char **f, size_t *flen)
{
    const char *s = *p;
    while (s < end && is_blank(*s)) s++;
    const char *e = s;
    while (e < end && !is_blank(*e)) e++;
    *p = e;
    *f = s;
    *flen = (size_t)(e - s);
    return e > s;
}

/* The prompt at the start of [s, end): fills r and moves *rest past it. */
static int parse_prompt(const char *s, const char *end, moe_reqline *r, const char **rest, moe_err *err)
{
    const size_t n = (size_t)(end - s);
    const bool has_ids = n >= 4 && !memcmp(s, "ids:", 4);
    if (has_ids || (*s >= '0' && *s <= '9')) {
        const char *b = has_ids ? s + 4 : s, *e = b;
        while (e < end && !is_blank(*e)) e++;
        if (moe_ids_parse(b, (size_t)(e - b), &r->ids, &r->n_ids, err)) return moe_err_prefix(err, "ids");
        r->kind = MOE_REQLINE_IDS;
        *rest = e;
        return MOE_OK;
    }
    if (n >= 5 && !memcmp(s, "text:", 5)) {
        const char *b = s + 5;
        const char *tab = memchr(b, '\t', (size_t)(end - b));
        if (!tab) return moe_err_set(err, "text: no TAB after the prompt (text:<prompt><TAB><max_tokens> ...)");
        if (moe_reqline_unescape(b, (size_t)(tab - b), &r->text, &r->text_len, err)) return moe_err_prefix(err, "text");
        if (r->text_len == 0) {
            free(r->text);
            r->text = NULL;
            return moe_err_set(err, "text: the prompt is empty");
        }
        r->kind = MOE_REQLINE_TEXT;
        *rest = tab + 1;
        return MOE_OK;
    }
    return moe_err_set(err, "a request starts with 'ids:', 'text:' or a token id list (1,2,3)");
}

/* One name=value option (NUL-terminated copies) onto r. */
static int parse_option(char *name, const char *value, moe_reqline *r, moe_err *err)
{
    if (!strcmp(name, "max_tokens") || !strcmp(name, "max-tokens"))
        return moe_err_set(err, "max_tokens is the field after the prompt, not an option");
    if (!strcmp(name, "deadline_ms") || !strcmp(name, "deadline-ms")) {
        int64_t v;
        if (moe_parse_i64(value, 1, MOE_REQLINE_MAX_DEADLINE_MS, &v, err)) return moe_err_prefix(err, "deadline_ms");
        r->deadline_ms = v;
        return MOE_OK;
    }
    if (!strcmp(name, "stop")) {
        if (r->n_stop == MOE_REQLINE_MAX_STOP) return moe_err_set(err, "stop: at most %d stop strings", MOE_REQLINE_MAX_STOP);
        char *t;
        size_t tl;
        if (moe_reqline_unescape(value, strlen(value), &t, &tl, err)) return moe_err_prefix(err, "stop");
        if (tl == 0 || tl > MOE_REQLINE_MAX_STOP_LEN) {
            free(t);
            return moe_err_set(err, "stop: a stop string has 1..%d bytes, not %zu", MOE_REQLINE_MAX_STOP_LEN, tl);
        }
        if (!r->stop) r->stop = moe_xcalloc(MOE_REQLINE_MAX_STOP, sizeof *r->stop);
        r->stop[r->n_stop++] = t;
        return MOE_OK;
    }
    if (!strcmp(name, "stop_id") || !strcmp(name, "stop-id")) {
        if (r->n_stop_ids == MOE_SAMPLER_MAX_STOP)
            return moe_err_set(err, "stop_id: at most %d stop ids", MOE_SAMPLER_MAX_STOP);
        int32_t *id;
        size_t n;
        if (moe_ids_parse(value, strlen(value), &id, &n, err)) return moe_err_prefix(err, "stop_id");
        if (n != 1) {
            free(id);
            return moe_err_set(err, "stop_id: one id per option (stop_id=1 stop_id=2)");
        }
        if (!r->stop_ids) r->stop_ids = moe_xcalloc(MOE_SAMPLER_MAX_STOP, sizeof *r->stop_ids);
        r->stop_ids[r->n_stop_ids++] = id[0];
        free(id);
        return MOE_OK;
    }
    if (!strcmp(name, "logprobs")) {
        int64_t v;
        if (moe_parse_i64(value, 0, MOE_MAX_TOP_LOGPROBS, &v, err)) return moe_err_prefix(err, "logprobs");
        r->logprobs = (int)v;
        return MOE_OK;
    }
    if (!strcmp(name, "prompt_logprobs") || !strcmp(name, "prompt-logprobs")) {
        int64_t v;
        if (moe_parse_i64(value, 0, 1, &v, err)) return moe_err_prefix(err, "prompt_logprobs");
        r->prompt_logprobs = v != 0;
        return MOE_OK;
    }
    if (moe_sampler_param_find(name) < 0)
        return moe_err_set(err, "unknown option '%s' (temp, top_k, top_p, min_p, repeat_penalty, repeat_last_n, "
                                "seed, min_tokens, ignore_eos, logprobs, prompt_logprobs, deadline_ms, stop, stop_id)",
                           name);
    /* The table's messages already start with the parameter's name. */
    return moe_sampler_cfg_set(&r->sampling, name, value, err);
}

int moe_reqline_parse(const char *s, size_t len, int line_no, const moe_sampler_cfg *base, moe_reqline *out,
                      moe_err *err)
{
    memset(out, 0, sizeof *out);
    out->line = line_no;
    out->logprobs = -1;
    if (base) out->sampling = *base;
    else moe_sampler_cfg_default(&out->sampling);
    if (len && s[len - 1] == '\r') len--;
    if (memchr(s, 0, len)) return moe_err_set(err, "the line holds a NUL byte");
    const char *end = s + len, *p = s;
    while (p < end && is_blank(*p)) p++;
    if (p == end || *p == '#') return MOE_OK; /* SKIP */

    const char *rest = NULL, *f;
    size_t fl;
    char buf[FIELD_MAX + 1];
    if (parse_prompt(p, end, out, &rest, err)) goto fail;
    if (!next_field(&rest, end, &f, &fl)) {
        moe_err_set(err, "max_tokens is missing after the prompt");
        goto fail;
    }
    if (fl > 20) {
        moe_err_set(err, "max_tokens: '%.20s...' is not an integer", f); /* f is NUL-free and longer than 20 */
        goto fail;
    }
    memcpy(buf, f, fl);
    buf[fl] = 0;
    int64_t mt;
    if (moe_parse_i64(buf, 0, MOE_REQLINE_MAX_TOKENS, &mt, err)) {
        moe_err_prefix(err, "max_tokens");
        goto fail;
    }
    out->max_tokens = (int32_t)mt;

    while (next_field(&rest, end, &f, &fl)) {
        const char *eq = memchr(f, '=', fl);
        if (fl > FIELD_MAX) {
            moe_err_set(err, "option '%.40s...' is longer than %d bytes", f, FIELD_MAX);
            goto fail;
        }
        if (!eq || eq == f) {
            moe_err_set(err, "option '%.*s%s' is not name=value", (int)(fl > 40 ? 40 : fl), f, fl > 40 ? "..." : "");
            goto fail;
        }
        memcpy(buf, f, fl);
        buf[fl] = 0;
        buf[eq - f] = 0;
        if (parse_option(buf, buf + (eq - f) + 1, out, err)) goto fail;
    }
    if (out->prompt_logprobs && out->logprobs < 0) {
        moe_err_set(err, "prompt_logprobs needs logprobs=N (0..%d alternatives)", MOE_MAX_TOP_LOGPROBS);
        goto fail;
    }
    return MOE_OK;
fail:
    moe_reqline_free(out);
    out->kind = MOE_REQLINE_SKIP;
    return MOE_ERR;
}

int moe_reqline_list_parse(const char *buf, size_t len, const moe_sampler_cfg *base, moe_reqline_list *out,
                           moe_err *err)
{
    memset(out, 0, sizeof *out);
    size_t cap = 0;
    int line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *s = buf + pos, *nl = memchr(s, '\n', len - pos);
        const size_t l = nl ? (size_t)(nl - s) : len - pos;
        pos += l + 1;
        if (line == INT32_MAX) break; /* cannot happen below the file cap; keeps line++ defined */
        line++;
        moe_reqline r;
        moe_err why;
        if (moe_reqline_parse(s, l, line, base, &r, &why)) {
            r.kind = MOE_REQLINE_BAD;
            char msg[MOE_ERR_MSG_MAX + 32];
            snprintf(msg, sizeof msg, "line %d: %s", line, why.msg);
            r.error = moe_xstrdup(msg);
        } else if (r.kind == MOE_REQLINE_SKIP) {
            continue;
        }
        if (out->n == MOE_REQLINE_MAX_REQUESTS) {
            moe_reqline_free(&r);
            moe_reqline_list_free(out);
            return moe_err_set(err, "more than %d requests", MOE_REQLINE_MAX_REQUESTS);
        }
        if (out->n == cap) {
            cap = cap ? 2 * cap : 64;
            out->items = moe_xrealloc(out->items, cap * sizeof *out->items);
        }
        out->n_bad += r.kind == MOE_REQLINE_BAD;
        out->items[out->n++] = r;
    }
    out->n_lines = line;
    return MOE_OK;
}

int moe_reqline_list_read(const char *path, const moe_sampler_cfg *base, moe_reqline_list *out, moe_err *err)
{
    memset(out, 0, sizeof *out);
    char *buf;
    size_t len;
    if (moe_file_read(path, MOE_REQLINE_MAX_FILE_BYTES, &buf, &len, err)) return MOE_ERR;
    const int rc = moe_reqline_list_parse(buf, len, base, out, err);
    free(buf);
    if (rc) return moe_err_prefix(err, "%s", path);
    return MOE_OK;
}

void moe_reqline_list_free(moe_reqline_list *l)
{
    for (size_t i = 0; i < l->n; i++) moe_reqline_free(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}
