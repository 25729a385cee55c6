/*
 * logprobs_ref — checks logprob lines against rows of logits, computed here
 * on their own (no moe code): the definition of docs/engine.md,
 *
 *   logprob(t) = (float)((double)z_t − m − log Σ_i exp((double)z_i − m)),
 *   m = max z, the sum in index order; alternatives = the N largest z,
 *   best first, ties to the lower id (a full sort here).
 *
 *   logprobs_ref LOGITS.f32 VOCAB LINES KIND SHIFT TOL
 *
 * LOGITS: rows of VOCAB little-endian float32 (moe-run / moe-worker
 * --dump-logits).  LINES: "KIND POS ID LOGPROB ID:LOGPROB ..." (moe-worker
 * --batch's DIR/req<i>.logprobs; moe-client --logprobs-out without its
 * first column).  Lines of KIND (P or T) are checked against row POS + SHIFT.
 * TOL 0: every value must be the same float and the alternatives exactly the
 * reference's N best; TOL > 0 (rows computed another way, e.g. a prefill
 * chunk against teacher forcing): every value within TOL of the reference's
 * for its id, alternatives in descending order.  Exit 0 when all agree and
 * at least one line was checked.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const float *g_row;

static int by_logit(const void *pa, const void *pb)
{
    const int a = *(const int *)pa, b = *(const int *)pb;
    if (g_row[a] != g_row[b]) return g_row[a] > g_row[b] ? -1 : 1;
    return (a > b) - (a < b);
}

static float ref_lp(const float *z, int v, int id)
{
    float m = z[0];
    for (int i = 1; i < v; i++)
        if (z[i] > m) m = z[i];
    double s = 0;
    for (int i = 0; i < v; i++) s += exp((double)z[i] - (double)m);
    return (float)((double)z[id] - ((double)m + log(s)));
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: logprobs_ref LOGITS.f32 VOCAB LINES KIND SHIFT TOL\n");
        return 2;
    }
    const long v = strtol(argv[2], NULL, 10), shift = strtol(argv[5], NULL, 10);
    const double tol = strtod(argv[6], NULL);
    const char kind = argv[4][0];
    if (v < 1 || v > (1 << 24)) return fprintf(stderr, "bad VOCAB\n"), 2;
    FILE *f = fopen(argv[1], "rb");
    if (!f) return fprintf(stderr, "%s: %s\n", argv[1], strerror(errno)), 2;
    fseek(f, 0, SEEK_END);
    const long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    const long rows = bytes / (long)(v * 4);
    float *z = malloc((size_t)(rows ? rows : 1) * (size_t)v * sizeof *z);
    if (!z || fread(z, sizeof *z, (size_t)(rows * v), f) != (size_t)(rows * v)) return fprintf(stderr, "short read\n"), 2;
    fclose(f);
    FILE *in = fopen(argv[3], "r");
    if (!in) return fprintf(stderr, "%s: %s\n", argv[3], strerror(errno)), 2;
    int *order = malloc((size_t)v * sizeof *order);
    char line[8192];
    int checked = 0, bad = 0;
    while (fgets(line, sizeof line, in)) {
        char k;
        long pos, id;
        float lp;
        int used;
        if (sscanf(line, " %c %ld %ld %g%n", &k, &pos, &id, &lp, &used) != 4) return fprintf(stderr, "bad line: %s", line), 2;
        if (k != kind) continue;
        const long r = pos + shift;
        if (r < 0 || r >= rows || id < 0 || id >= v) return fprintf(stderr, "line out of range: %s", line), 2;
        const float *row = z + (size_t)r * (size_t)v;
        checked++;
        const float want = ref_lp(row, (int)v, (int)id);
        int ok = tol == 0 ? want == lp : fabs((double)want - (double)lp) <= tol;
        /* the alternatives */
        for (int i = 0; i < v; i++) order[i] = i;
        g_row = row;
        qsort(order, (size_t)v, sizeof *order, by_logit);
        const char *p = line + used;
        int n = 0;
        float prev = 0;
        long aid;
        float alp;
        while (sscanf(p, " %ld:%g%n", &aid, &alp, &used) == 2) {
            p += used;
            if (aid < 0 || aid >= v) return fprintf(stderr, "bad alternative: %s", line), 2;
            const float w = ref_lp(row, (int)v, (int)aid);
            if (tol == 0) ok &= aid == order[n] && w == alp;
            else ok &= fabs((double)w - (double)alp) <= tol && (n == 0 || alp <= prev);
            prev = alp;
            n++;
        }
        if (!ok && bad++ < 5) fprintf(stderr, "mismatch (reference %.9g for id %ld, best %d): %s", (double)want, id, order[0], line);
    }
    fclose(in);
    free(order);
    free(z);
    printf("%s %c: %d lines checked, %d differ (tolerance %g)\n", argv[3], kind, checked, bad, tol);
    return bad || !checked;
}
