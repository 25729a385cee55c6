/*
 * stream.c — decoding (see tokenizer.h): a whole id list at once
 * (moe_tokenizer_decode), and the streaming detokenizer (moe_tok_stream_*):
 * token bytes in, complete UTF-8 out, incomplete sequences held back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"
#include "unicode.h"

/* ---------------------------------------------------------------- decode */

int moe_tokenizer_decode(const moe_tokenizer *t, const int32_t *ids, size_t n, char **out,
                         size_t *out_len, moe_err *err)
{
    *out = NULL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return moe_err_set(err, "token id %d at position %zu is out of range [0, %d)", ids[i], i,
                               t->n_vocab);
        if (!moe_add_size(total, t->dec_off[ids[i] + 1] - t->dec_off[ids[i]], &total) || total == SIZE_MAX)
            return moe_err_set(err, "decoded text too large");
    }
    char *s = moe_xmalloc(total + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = t->dec_off[ids[i] + 1] - t->dec_off[ids[i]];
        memcpy(s + o, t->dec + t->dec_off[ids[i]], l);
        o += l;
    }
    s[o] = 0;
    *out = s;
    if (out_len) *out_len = o;
    return MOE_OK;
}

/* ------------------------------------------------------------- streaming */

struct moe_tok_stream {
    const moe_tokenizer *tok;
    unsigned flags;
    unsigned char pend[4]; /* incomplete UTF-8 sequence held back */
    size_t n_pend;
    unsigned char *in;     /* pending + one token */
    char *buf;             /* output: at most 3 bytes per input byte */
};

int moe_tok_stream_init(moe_tok_stream **out, const moe_tokenizer *tok, unsigned flags, moe_err *err)
{
    (void)err;
    moe_tok_stream *s = moe_xcalloc(1, sizeof *s);
    s->tok = tok;
    s->flags = flags;
    s->in = moe_xmalloc(tok->max_dec + 8);
    s->buf = moe_xmalloc(3 * (tok->max_dec + 8));
    *out = s;
    return MOE_OK;
}

void moe_tok_stream_free(moe_tok_stream *s)
{
    if (!s) return;
    free(s->in);
    free(s->buf);
    free(s);
}

void moe_tok_stream_reset(moe_tok_stream *s) { s->n_pend = 0; }

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

int moe_tok_stream_push(moe_tok_stream *s, int32_t id, const char **text, size_t *len, moe_err *err)
{
    *text = s->buf;
    *len = 0;
    size_t tl;
    const char *tb = moe_tokenizer_token_bytes(s->tok, id, &tl);
    if (!tb) return moe_err_set(err, "token id %d is out of range [0, %d)", id, s->tok->n_vocab);
    if ((s->flags & MOE_TOK_STREAM_SKIP_CONTROL) && s->tok->type[id] == MOE_TOKTYPE_CONTROL) return MOE_OK;
    memcpy(s->in, s->pend, s->n_pend);
    memcpy(s->in + s->n_pend, tb, tl);
    size_t n = s->n_pend + tl, i = 0, o = 0, l;
    s->n_pend = 0;
    while (i < n) {
        if (moe_utf8_decode(s->in + i, n - i, &l) != MOE_UTF8_INVALID) {
            memcpy(s->buf + o, s->in + i, l);
            o += l;
            i += l;
            continue;
        }
        bool more;
        l = moe_utf8_partial(s->in + i, n - i, &more);
        if (more) { /* wait for the rest of this character */
            memcpy(s->pend, s->in + i, l);
            s->n_pend = l;
            break;
        }
        memcpy(s->buf + o, REPLACEMENT, 3);
        o += 3;
        i += l;
    }
    *len = o;
    return MOE_OK;
}

void moe_tok_stream_flush(moe_tok_stream *s, const char **text, size_t *len)
{
    *text = s->buf;
    *len = 0;
    if (s->n_pend) { /* an incomplete sequence is one maximal subpart */
        memcpy(s->buf, REPLACEMENT, 3);
        *len = 3;
    }
    s->n_pend = 0;
}

int moe_tokenizer_decode_served(const moe_tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *out_len,
                                moe_err *err)
{
    *out = NULL;
    moe_tok_stream *ts = NULL;
    if (moe_tok_stream_init(&ts, t, MOE_TOK_STREAM_SKIP_CONTROL, err)) return MOE_ERR;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        moe_tok_stream_free(ts);
        return moe_err_set(err, "out of memory");
    }
    const char *piece;
    size_t pl;
    int rc = MOE_OK;
    for (size_t i = 0; i < n && rc == MOE_OK; i++)
        if ((rc = moe_tok_stream_push(ts, ids[i], &piece, &pl, err)) == MOE_OK) fwrite(piece, 1, pl, f);
    if (rc == MOE_OK) {
        moe_tok_stream_flush(ts, &piece, &pl);
        fwrite(piece, 1, pl, f);
    }
    moe_tok_stream_free(ts);
    if (fclose(f) != 0 && rc == MOE_OK) rc = moe_err_set(err, "out of memory");
    if (rc != MOE_OK) {
        free(buf);
        return MOE_ERR;
    }
    *out = buf;
    if (out_len) *out_len = len;
    return MOE_OK;
}
