/*
 * steptime.c — the expected time of a lockstep step (steptime.h).
 */
#include "steptime.h"

#include <string.h>

static int size_class(int64_t tokens)
{
    int c = 0;
    while (c < MOE_STEPTIME_CLASSES - 1 && tokens >= ((int64_t)2 << c)) c++;
    return c;
}

void moe_steptime_init(moe_steptime *st, double first_per_token)
{
    memset(st, 0, sizeof *st);
    st->first_per_token = first_per_token > 0 ? first_per_token : 0;
}

double moe_steptime_expect(const moe_steptime *st, int64_t tokens)
{
    if (tokens < 1) tokens = 1;
    const int c = size_class(tokens);
    for (int k = c; k >= 0; k--) /* this class, else the nearest smaller one */
        if (st->per_token[k] > 0) return st->per_token[k] * (double)tokens;
    for (int k = c + 1; k < MOE_STEPTIME_CLASSES; k++) /* the nearest larger one's longest step */
        if (st->per_token[k] > 0) return st->per_token[k] * (double)((int64_t)2 << k);
    return st->first_per_token * (double)tokens;
}

void moe_steptime_add(moe_steptime *st, int64_t tokens, double seconds)
{
    if (tokens < 1 || !(seconds >= 0)) return;
    double *v = &st->per_token[size_class(tokens)];
    const double obs = seconds > 1e-9 ? seconds / (double)tokens : 1e-9 / (double)tokens;
    /* up at once, down slowly: the expectation errs long */
    *v = obs > *v || *v == 0 ? obs : 0.9 * *v + 0.1 * obs;
}
