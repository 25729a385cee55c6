/*
 * output.c — result lines and the run summary (output.h).
 */
#include "output.h"

#include <stdlib.h>
#include <string.h>

void moe_output_escape(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c == '\\') fputs("\\\\", f);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
}

void moe_output_ids(FILE *f, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) fprintf(f, i ? " %d" : "%d", ids[i]);
}

void moe_output_result(FILE *f, int line, const char *err_code, const char *err_msg, bool ids_out, const int32_t *ids,
                       size_t n_ids, const char *text, size_t text_len)
{
    fprintf(f, "%d ", line);
    if (err_code) {
        fprintf(f, "error %s: ", err_code);
        moe_output_escape(f, err_msg ? err_msg : "", err_msg ? strlen(err_msg) : 0);
    } else if (ids_out) {
        moe_output_ids(f, ids, n_ids);
    } else {
        moe_output_escape(f, text ? text : "", text ? text_len : 0);
    }
    fputc('\n', f);
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double moe_output_median(double *v, size_t n)
{
    if (!n) return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void moe_output_summary(FILE *f, size_t n_reqs, size_t n_ok, size_t tokens, double wall_s, double *first_ms,
                        size_t n_first)
{
    fprintf(f, "requests %zu  completed %zu  failed %zu  tokens %zu  wall %.3f s  tokens/s %.1f\n", n_reqs, n_ok,
            n_reqs - n_ok, tokens, wall_s, wall_s > 0 ? (double)tokens / wall_s : 0.0);
    if (!n_first) {
        fprintf(f, "time to first chunk: no request received a chunk\n");
        return;
    }
    /* the median sorts: min and max are then its ends */
    const double med = moe_output_median(first_ms, n_first);
    fprintf(f, "time to first chunk (ms, %zu requests): min %.2f  median %.2f  max %.2f\n", n_first, first_ms[0], med,
            first_ms[n_first - 1]);
}

void moe_output_logprobs(FILE *f, int line, char kind, uint32_t pos, int32_t id, float logprob, const int32_t *top_ids,
                         const float *top_lps, size_t n_top)
{
    fprintf(f, "%d %c %u %d %.9g", line, kind, (unsigned)pos, id, (double)logprob);
    for (size_t k = 0; k < n_top; k++) fprintf(f, " %d:%.9g", top_ids[k], (double)top_lps[k]);
    fputc('\n', f);
}
