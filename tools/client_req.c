/*
 * client_req.c — parameters, id lists, request-file lines and escaping for
 * moe-client (see client_req.h for the file format).
 */
#include "client_req.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Whole-string unsigned 64-bit decimal: strtoull alone would accept "-1"
 * (as 2^64 - 1), leading blanks and a sign. */
static int parse_u64(const char *s, uint64_t *out, moe_err *err)
{
    if (!s || !*s) return moe_err_set(err, "expected an unsigned integer, got an empty string");
    for (const char *c = s; *c; c++)
        if (*c < '0' || *c > '9') return moe_err_set(err, "'%s' is not an unsigned integer", s);
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE || *end) return moe_err_set(err, "'%s' does not fit 64 bits", s);
    *out = (uint64_t)v;
    return MOE_OK;
}

/* A float in [lo, hi]; open_lo makes lo itself invalid (top_p, penalty). */
static int parse_float(const char *s, double lo, double hi, bool open_lo, float *out, moe_err *err)
{
    double v;
    if (moe_parse_f64(s, lo, hi, &v, err)) return MOE_ERR;
    if (open_lo && v <= lo) return moe_err_set(err, "%g is out of range (%g, %g]", v, lo, hi);
    *out = (float)v;
    return MOE_OK;
}

static int parse_i32(const char *s, int64_t lo, int64_t hi, int32_t *out, moe_err *err)
{
    int64_t v;
    if (moe_parse_i64(s, lo, hi, &v, err)) return MOE_ERR;
    *out = (int32_t)v;
    return MOE_OK;
}

int moe_client_param_set(moe_client_params *p, const char *name, const char *value, moe_err *err)
{
    int rc;
    if (!strcmp(name, "max_tokens")) {
        if (!(rc = parse_i32(value, 1, MOE_CLIENT_MAX_TOKENS, &p->max_tokens, err))) p->has_max_tokens = true;
    } else if (!strcmp(name, "temp")) {
        if (!(rc = parse_float(value, 0, 1000, false, &p->temp, err))) p->has_temp = true;
    } else if (!strcmp(name, "top_p")) {
        if (!(rc = parse_float(value, 0, 1, true, &p->top_p, err))) p->has_top_p = true;
    } else if (!strcmp(name, "top_k")) {
        if (!(rc = parse_i32(value, 0, INT32_MAX, &p->top_k, err))) p->has_top_k = true;
    } else if (!strcmp(name, "min_p")) {
        if (!(rc = parse_float(value, 0, 1, false, &p->min_p, err))) p->has_min_p = true;
    } else if (!strcmp(name, "repeat_penalty")) {
        if (!(rc = parse_float(value, 0, 100, true, &p->repeat_penalty, err))) p->has_repeat_penalty = true;
    } else if (!strcmp(name, "repeat_last_n")) {
        if (!(rc = parse_i32(value, -1, INT32_MAX, &p->repeat_last_n, err))) p->has_repeat_last_n = true;
    } else if (!strcmp(name, "seed")) {
        if (!(rc = parse_u64(value, &p->seed, err))) p->has_seed = true;
    } else if (!strcmp(name, "deadline_ms")) {
        int64_t v;
        if (!(rc = moe_parse_i64(value, 1, MOE_CLIENT_MAX_DEADLINE_MS, &v, err))) {
            p->deadline_ms = v;
            p->has_deadline_ms = true;
        }
    } else {
        return moe_err_set(err, "unknown parameter '%s'", name);
    }
    return rc;
}

int moe_client_ids_parse(const char *s, int32_t **out, size_t *n, moe_err *err)
{
    *out = NULL;
    *n = 0;
    if (!*s) return moe_err_set(err, "empty id list");
    size_t cap = 16, k = 0;
    int32_t *ids = moe_xmalloc(cap * sizeof *ids);
    const char *p = s;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char item[24];
        /* Every character a digit: moe_parse_i64 (strtoll) would let blanks and '+' through. */
        bool digits = len > 0 && len < sizeof item;
        for (size_t i = 0; digits && i < len; i++) digits = p[i] >= '0' && p[i] <= '9';
        if (!digits) {
            free(ids);
            if (len == 0) return moe_err_set(err, "id %zu is empty", k + 1);
            return moe_err_set(err, "id %zu ('%.*s') is not a token id", k + 1, (int)(len < 32 ? len : 32), p);
        }
        memcpy(item, p, len);
        item[len] = 0;
        int64_t v;
        if (moe_parse_i64(item, 0, INT32_MAX, &v, err)) {
            free(ids);
            return moe_err_prefix(err, "id %zu", k + 1);
        }
        if (k == MOE_CLIENT_MAX_PROMPT_IDS) {
            free(ids);
            return moe_err_set(err, "more than %d ids", MOE_CLIENT_MAX_PROMPT_IDS);
        }
        if (k == cap) ids = moe_xrealloc(ids, (cap *= 2) * sizeof *ids);
        ids[k++] = (int32_t)v;
        if (!e) break;
        p = e + 1;
    }
    *out = ids;
    *n = k;
    return MOE_OK;
}

void moe_client_line_free(moe_client_line *l)
{
    free(l->text);
    free(l->ids);
    memset(l, 0, sizeof *l);
}

/* Unescapes a text prompt of n bytes into a new string. */
static int unescape(const char *s, size_t n, char **out, size_t *out_len, moe_err *err)
{
    char *b = moe_xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            b[k++] = s[i];
            continue;
        }
        char c = i + 1 < n ? s[i + 1] : 0;
        if (c == 'n') b[k++] = '\n';
        else if (c == 't') b[k++] = '\t';
        else if (c == 'r') b[k++] = '\r';
        else if (c == '\\') b[k++] = '\\';
        else {
            free(b);
            if (!c) return moe_err_set(err, "the text ends in a lone backslash (write \\\\ for one)");
            return moe_err_set(err, "unknown escape '\\%c' in the text (\\n \\t \\r \\\\ are known)", c);
        }
        i++;
    }
    b[k] = 0;
    *out = b;
    *out_len = k;
    return MOE_OK;
}

/* The next blank-separated field of [*p, end) into buf; false at the end. */
static bool next_field(const char **p, const char *end, char *buf, size_t cap, bool *too_long)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t')) s++;
    if (s == end) {
        *p = s;
        return false;
    }
    const char *e = s;
    while (e < end && *e != ' ' && *e != '\t') e++;
    size_t len = (size_t)(e - s);
    *too_long = len >= cap;
    if (*too_long) len = cap - 1;
    memcpy(buf, s, len);
    buf[len] = 0;
    *p = e;
    return true;
}

int moe_client_line_parse(const char *line, size_t len, const moe_client_params *defaults, moe_client_line *out,
                          moe_err *err)
{
    memset(out, 0, sizeof *out);
    out->params = *defaults;
    if (len && line[len - 1] == '\r') len--;
    if (memchr(line, 0, len)) return moe_err_set(err, "the line holds a NUL byte");
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
    if (i == len || line[i] == '#') return MOE_OK; /* SKIP */
    const char *end = line + len, *rest;
    if (len - i >= 4 && !memcmp(line + i, "ids:", 4)) {
        const char *s = line + i + 4, *e = s;
        while (e < end && *e != ' ' && *e != '\t') e++;
        char *list = moe_xmalloc((size_t)(e - s) + 1);
        memcpy(list, s, (size_t)(e - s));
        list[e - s] = 0;
        int rc = moe_client_ids_parse(list, &out->ids, &out->n_ids, err);
        free(list);
        if (rc) return moe_err_prefix(err, "ids");
        out->kind = MOE_CLIENT_LINE_IDS;
        rest = e;
    } else if (len - i >= 5 && !memcmp(line + i, "text:", 5)) {
        const char *s = line + i + 5;
        const char *tab = memchr(s, '\t', (size_t)(end - s));
        if (!tab) return moe_err_set(err, "text: no TAB after the prompt (text:<prompt><TAB><max_tokens> ...)");
        if (tab == s) return moe_err_set(err, "text: the prompt is empty");
        if (unescape(s, (size_t)(tab - s), &out->text, &out->text_len, err)) return moe_err_prefix(err, "text");
        if (out->text_len == 0 || memchr(out->text, 0, out->text_len)) {
            moe_client_line_free(out);
            return moe_err_set(err, "text: the prompt is empty");
        }
        out->kind = MOE_CLIENT_LINE_TEXT;
        rest = tab + 1;
    } else {
        return moe_err_set(err, "a request starts with 'ids:' or 'text:'");
    }

    /* <max_tokens> [name=value]... */
    char f[128];
    bool too_long = false;
    if (!next_field(&rest, end, f, sizeof f, &too_long)) {
        moe_client_line_free(out);
        return moe_err_set(err, "max_tokens is missing after the prompt");
    }
    if (too_long || moe_client_param_set(&out->params, "max_tokens", f, err)) {
        moe_client_line_free(out);
        if (too_long) return moe_err_set(err, "max_tokens: '%.20s...' is not an integer", f);
        return moe_err_prefix(err, "max_tokens");
    }
    while (next_field(&rest, end, f, sizeof f, &too_long)) {
        char *eq = strchr(f, '=');
        if (too_long || !eq || eq == f) {
            moe_client_line_free(out);
            return moe_err_set(err, "option '%.40s%s' is not name=value", f, too_long ? "..." : "");
        }
        *eq = 0;
        if (!strcmp(f, "max_tokens")) {
            moe_client_line_free(out);
            return moe_err_set(err, "max_tokens is the field after the prompt, not an option");
        }
        if (moe_client_param_set(&out->params, f, eq + 1, err)) {
            moe_client_line_free(out);
            return moe_err_prefix(err, "%s", f);
        }
    }
    return MOE_OK;
}

void moe_client_escape_write(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') fputs("\\\\", f);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double moe_client_median(double *v, size_t n)
{
    if (!n) return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
