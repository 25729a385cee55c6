/*
 * reqline.h — the request-file format: one generation request a line, read
 * by moe-client --file and moe-worker --batch through this one parser, so
 * a file written for one is a file for the other.
 *
 *   <prompt> <max_tokens> [name=value]...
 *
 * prompt, one of
 *   ids:1,2,3        token ids: decimal, comma-separated, no blanks (io.h's
 *                    moe_ids_parse: at most MOE_IDS_MAX)
 *   1,2,3            the same: a bare list is short for ids: (the first
 *                    batch files were written so)
 *   text:TEXT<TAB>   text up to the first TAB (so it may hold spaces); in it
 *                    \n \t \r \s \\ are a newline, tab, carriage return,
 *                    space and backslash; any other backslash is an error,
 *                    so a literal tab never hides inside the prompt
 * max_tokens         tokens to generate, 0 .. MOE_REQLINE_MAX_TOKENS; 0 means
 *                    "prompt only" (moe-worker --batch still computes and can
 *                    dump the prompt's logits; moe-client refuses it, the
 *                    server wants at least 1)
 * options, separated by spaces or tabs, any order:
 *   temp= top_k= top_p= min_p= repeat_penalty= repeat_last_n= seed=
 *                    the sampling parameters by sampler.h's table (names,
 *                    aliases and ranges written once there)
 *   min_tokens=N ignore_eos=0|1
 *                    are in that table too: no stop id before N tokens; the
 *                    model's EOS does not end the request
 *   logprobs=N       0 .. MOE_MAX_TOP_LOGPROBS: each token's logprob and N
 *                    alternatives (moe-worker --batch writes them to its
 *                    --dump-logits DIR, moe-client prints them)
 *   prompt_logprobs=0|1   the prompt tokens' logprobs too (needs logprobs=);
 *                    with it max_tokens 0 is a request that only scores
 *   deadline_ms=MS   1 .. 24 h: the server ends the request after MS ms
 *   stop=TEXT        a stop string, escaped as a text prompt (\s for a
 *                    space: options are blank-separated), 1 .. 256 bytes;
 *                    repeatable, at most MOE_REQLINE_MAX_STOP
 *   stop_id=ID       a stop token id; repeatable, at most MOE_SAMPLER_MAX_STOP
 *   a later option of the same name replaces an earlier one (stop and
 *   stop_id add to the list instead)
 * other lines:
 *   empty lines and lines whose first non-blank is '#' are skipped but
 *   counted, so line numbers are the file's own; a trailing CR (CRLF
 *   files) is dropped; a NUL byte is an error
 *
 * Examples:
 *   1,2,3 8 seed=3 temp=0.8
 *   ids:15,7 16 top_k=40 stop_id=2
 *   text:Once upon a time<TAB>32 temp=0.7 stop=\n\n stop=The\send
 *
 * A bad line does not spoil the file: moe_reqline_list_parse keeps it as a
 * MOE_REQLINE_BAD entry with its own message, the others stay usable, and
 * each program reports it where that request's result would be.
 */
#ifndef MOE_REQLINE_H
#define MOE_REQLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "sampler.h"

#define MOE_REQLINE_MAX_TOKENS (1 << 20)            /* the protocol's cap */
#define MOE_REQLINE_MAX_DEADLINE_MS (24LL * 3600 * 1000)
#define MOE_REQLINE_MAX_STOP 16                     /* stop strings: the protocol's limits */
#define MOE_REQLINE_MAX_STOP_LEN 256
#define MOE_REQLINE_MAX_REQUESTS (1 << 20)          /* per file */
#define MOE_REQLINE_MAX_FILE_BYTES ((size_t)1 << 30)

typedef enum {
    MOE_REQLINE_SKIP = 0, /* empty or comment line (never in a list) */
    MOE_REQLINE_IDS,      /* ids/n_ids hold the prompt */
    MOE_REQLINE_TEXT,     /* text/text_len hold the prompt */
    MOE_REQLINE_BAD       /* only in a list: error says why */
} moe_reqline_kind;

/* One request.  Everything it points to is its own (moe_reqline_free). */
typedef struct moe_reqline {
    int line;                 /* 1-based line number in the file */
    moe_reqline_kind kind;
    char *text;               /* TEXT: unescaped, NUL-terminated, non-empty, no NUL inside */
    size_t text_len;
    int32_t *ids;             /* IDS: [n_ids], n_ids >= 1, each in [0, INT32_MAX] */
    size_t n_ids;
    int32_t max_tokens;       /* 0 .. MOE_REQLINE_MAX_TOKENS */
    moe_sampler_cfg sampling; /* the caller's base with the line's options on top; the
                                 set mask marks both.  Its stop/n_stop are the base's:
                                 the line's stop ids are in stop_ids */
    int64_t deadline_ms;      /* 0: the line gives none */
    int logprobs;             /* -1: none; else alternatives per token */
    bool prompt_logprobs;
    char **stop;              /* [n_stop] stop strings, unescaped, 1..MOE_REQLINE_MAX_STOP_LEN bytes */
    size_t n_stop;
    int32_t *stop_ids;        /* [n_stop_ids] */
    size_t n_stop_ids;
    char *error;              /* BAD: "line N: why" */
} moe_reqline;

/* Parses one line s[0..len) (without its '\n') over base (NULL: the
 * sampler's defaults, nothing marked set).  An empty or comment line gives
 * kind SKIP.  On MOE_ERR, err says why (without the line number) and *out
 * holds nothing to free.  out->line is set to line_no either way. */
int moe_reqline_parse(const char *s, size_t len, int line_no, const moe_sampler_cfg *base, moe_reqline *out,
                      moe_err *err);
void moe_reqline_free(moe_reqline *r);

/* The requests of a file, in file order, skipped lines left out. */
typedef struct moe_reqline_list {
    moe_reqline *items; /* [n] */
    size_t n;
    size_t n_bad;       /* how many of them are MOE_REQLINE_BAD */
    int n_lines;        /* lines in the file, skipped ones included */
} moe_reqline_list;

/* Parses every line of buf[0..len).  A bad line becomes a BAD entry; only
 * more than MOE_REQLINE_MAX_REQUESTS requests is an error for the whole
 * file.  A file without requests gives n == 0 (the caller decides whether
 * that is an error). */
int moe_reqline_list_parse(const char *buf, size_t len, const moe_sampler_cfg *base, moe_reqline_list *out,
                           moe_err *err);
/* The same from a file ("-": standard input), at most
 * MOE_REQLINE_MAX_FILE_BYTES; errors name the path. */
int moe_reqline_list_read(const char *path, const moe_sampler_cfg *base, moe_reqline_list *out, moe_err *err);
void moe_reqline_list_free(moe_reqline_list *l);

/* Unescapes s[0..n) as a text prompt (\n \t \r \s \\) into a new
 * NUL-terminated string (free() it); the length goes to *out_len. */
int moe_reqline_unescape(const char *s, size_t n, char **out, size_t *out_len, moe_err *err);

#endif
