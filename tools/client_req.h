/*
 * client_req.h — the socket-free parts of moe-client: generation
 * parameters by name, token-id lists, the request file format, output
 * escaping and latency statistics.  Kept apart from the ZMQ code so that
 * the parsers are tested directly (tests/client_req_test.c).
 *
 * Request file (moe-client --file REQS), one request per line:
 *
 *   ids:1,2,3 <max_tokens> [name=value]...
 *   text:<prompt text><TAB><max_tokens> [name=value]...
 *
 *   - fields after the prompt are separated by spaces or tabs;
 *   - in a text prompt, \n \t \r and \\ stand for a newline, a tab, a
 *     carriage return and a backslash; any other backslash is an error
 *     (so a literal tab never hides inside the prompt);
 *   - options: seed=S temp=T top_p=P top_k=K min_p=P repeat_penalty=R
 *     repeat_last_n=N deadline_ms=MS, with the ranges of the flags of the
 *     same names; an option on a line overrides the command-line default;
 *   - empty lines and lines starting with '#' are skipped but counted, so
 *     the line numbers in the output are the file's own;
 *   - a trailing CR (CRLF files) is dropped.
 */
#ifndef MOE_TOOLS_CLIENT_REQ_H
#define MOE_TOOLS_CLIENT_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base.h"

/* Value ranges (the protocol's limits, docs/protocol.md, and the sampler's). */
#define MOE_CLIENT_MAX_TOKENS (1 << 20)
#define MOE_CLIENT_MAX_PROMPT_IDS 262144
#define MOE_CLIENT_MAX_DEADLINE_MS (24LL * 3600 * 1000)

/* Generation parameters; each has_* false means "the server's default". */
typedef struct moe_client_params {
    bool has_max_tokens, has_temp, has_top_p, has_top_k, has_min_p;
    bool has_repeat_penalty, has_repeat_last_n, has_seed, has_deadline_ms;
    int32_t max_tokens;   /* 1 .. MOE_CLIENT_MAX_TOKENS */
    float temp;           /* [0, 1000], 0 greedy */
    float top_p;          /* (0, 1] */
    int32_t top_k;        /* >= 0, 0 off */
    float min_p;          /* [0, 1] */
    float repeat_penalty; /* (0, 100] */
    int32_t repeat_last_n;/* >= -1 */
    uint64_t seed;        /* any 64-bit value */
    int64_t deadline_ms;  /* 1 .. 24 h */
} moe_client_params;

/* Sets the parameter called name ("max_tokens", "temp", "top_p", "top_k",
 * "min_p", "repeat_penalty", "repeat_last_n", "seed", "deadline_ms") from
 * its text, range-checked.  MOE_ERR with the problem (the caller adds
 * the name as it was written: a flag or a file option). */
int moe_client_param_set(moe_client_params *p, const char *name, const char *value, moe_err *err);

/* Parses "1,2,3" (decimal ids in [0, INT32_MAX], no empty items, at most
 * MOE_CLIENT_MAX_PROMPT_IDS) into a new array (free() it). */
int moe_client_ids_parse(const char *s, int32_t **out, size_t *n, moe_err *err);

typedef enum { MOE_CLIENT_LINE_SKIP = 0, MOE_CLIENT_LINE_IDS, MOE_CLIENT_LINE_TEXT } moe_client_line_kind;

/* One line of a request file. */
typedef struct moe_client_line {
    moe_client_line_kind kind;
    char *text;        /* TEXT: the prompt, unescaped, NUL-terminated, non-empty */
    size_t text_len;
    int32_t *ids;      /* IDS: the prompt ids, non-empty */
    size_t n_ids;
    moe_client_params params; /* the defaults given, overridden by the line's options */
} moe_client_line;

/* Parses one line (without its '\n'; it may hold NUL bytes, which are an
 * error) on top of defaults.  SKIP for an empty or comment line. */
int moe_client_line_parse(const char *line, size_t len, const moe_client_params *defaults, moe_client_line *out,
                          moe_err *err);
void moe_client_line_free(moe_client_line *l);

/* Writes s with \\ \n \t \r escaped and other control bytes as \xHH, so
 * one request's text stays on one line. */
void moe_client_escape_write(FILE *f, const char *s, size_t n);

/* Median of v[0..n) (sorts v); 0 when n is 0. */
double moe_client_median(double *v, size_t n);

#endif
