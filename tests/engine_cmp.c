/*
 * engine_cmp — compares two raw float32 logits files row by row.
 *   engine_cmp A B N_VOCAB TOL      prints rows and max d; exit 1 if d > TOL
 *   (TOL 0 = bitwise equality required)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *load(const char *p, long *n)
{
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *v = malloc((size_t)sz + 4);
    *n = (long)fread(v, 1, (size_t)sz, f) / 4;
    fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: engine_cmp A B N_VOCAB TOL\n");
        return 2;
    }
    long na, nb;
    float *a = load(argv[1], &na), *b = load(argv[2], &nb);
    const long V = atol(argv[3]);
    const double tol = atof(argv[4]);
    if (!a || !b || V < 1) {
        fprintf(stderr, "engine_cmp: cannot read inputs\n");
        return 2;
    }
    if (na != nb || na % V) {
        fprintf(stderr, "engine_cmp: sizes differ: %ld vs %ld values (vocab %ld)\n", na, nb, V);
        return 1;
    }
    double d = 0;
    for (long i = 0; i < na; i++) {
        double t = fabs((double)a[i] - (double)b[i]);
        if (t > d || isnan(t)) d = isnan(t) ? INFINITY : t;
    }
    int bitwise = memcmp(a, b, (size_t)na * 4) == 0;
    printf("engine_cmp: %ld rows, max d = %.3g, bitwise %s\n", na / V, d, bitwise ? "equal" : "different");
    free(a);
    free(b);
    if (tol == 0) return bitwise ? 0 : 1;
    return d <= tol ? 0 : 1;
}
