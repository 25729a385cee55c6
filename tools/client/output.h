/*
 * output.h — what moe-client prints: request results one line each (for
 * --file, so that a request's text stays on its line: control bytes are
 * escaped), and the summary of a run.  No sockets and no client state:
 * plain values in, text out, so it is tested alone (tests/client_parts_test.c).
 *
 * Result lines (docs/client.md):
 *   <line> <text>                    \\ \n \t \r escaped, other control bytes \xHH
 *   <line> <id> <id> ...             with --ids-out
 *   <line> error <code>: <message>   refused or failed (the message escaped too)
 */
#ifndef MOE_TOOLS_CLIENT_OUTPUT_H
#define MOE_TOOLS_CLIENT_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Writes s[0..n) with \\ \n \t \r escaped and other control bytes as \xHH. */
void moe_output_escape(FILE *f, const char *s, size_t n);

/* Writes ids space-separated ("1 2 3"), nothing for n == 0. */
void moe_output_ids(FILE *f, const int32_t *ids, size_t n);

/* One result line, '\n' included.  err_code non-NULL: the error form. */
void moe_output_result(FILE *f, int line, const char *err_code, const char *err_msg, bool ids_out, const int32_t *ids,
                       size_t n_ids, const char *text, size_t text_len);

/* The summary of a --file run (stderr in moe-client):
 *   requests N  completed N  failed N  tokens N  wall S s  tokens/s R
 *   time to first chunk (ms, N requests): min A  median B  max C
 * first_ms[0..n_first) are reordered. */
void moe_output_summary(FILE *f, size_t n_reqs, size_t n_ok, size_t tokens, double wall_s, double *first_ms,
                        size_t n_first);

/* Median of v[0..n) (sorts v); 0 when n is 0. */
double moe_output_median(double *v, size_t n);

/* One position's logprobs: "<line> <kind> <pos> <id> <logprob>" then
 * " <id>:<logprob>" per alternative, floats as %.9g (they read back to the
 * same float); kind is P (a prompt position) or T (a completion token). */
void moe_output_logprobs(FILE *f, int line, char kind, uint32_t pos, int32_t id, float logprob, const int32_t *top_ids,
                         const float *top_lps, size_t n_top);

#endif
