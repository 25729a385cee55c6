/*
 * comm_test — the MPI layer (worker/comm.c) in a real mpirun job.
 *
 *   comm_test exchange      all-to-all of rows with per-pair counts (incl. 0),
 *                           checked element by element on every rank
 *   comm_test idle SECONDS  rank 0 works (sleeps) while the others wait in a
 *                           barrier; each waiting rank's CPU time must stay
 *                           under 5% of the wall time
 *   comm_test fail RANK     RANK reports a failure; every rank learns which
 *                           one, the failing rank prints its reason, all exit 1
 *   comm_test and           AND over ranks
 *   comm_test header        the step header: sums, and the largest tokens_max
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "comm.h"

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

/* Rows from s to d: (s + 2d) % 4 rows, some pairs send none; the value of
 * element j of row i identifies (s, d, i, j). */
static int n_rows(int s, int d) { return (s + 2 * d) % 4; }
static float val(int s, int d, int i, int j) { return (float)(s * 1000000 + d * 10000 + i * 100 + j); }

static int test_exchange(moe_comm *c)
{
    const int me = moe_comm_rank(c), n = moe_comm_size(c), row = 37;
    int32_t *sn = calloc((size_t)n, 4), *so = calloc((size_t)n, 4), *rn = calloc((size_t)n, 4), *ro = calloc((size_t)n, 4);
    int st = 0, rt = 0;
    for (int d = 0; d < n; d++) {
        sn[d] = n_rows(me, d);
        so[d] = st;
        st += sn[d];
    }
    float *send = calloc((size_t)(st ? st : 1) * row, sizeof(float));
    for (int d = 0; d < n; d++)
        for (int i = 0; i < sn[d]; i++)
            for (int j = 0; j < row; j++) send[(size_t)(so[d] + i) * row + j] = val(me, d, i, j);
    moe_comm_alltoall_i32(c, sn, rn);
    for (int s = 0; s < n; s++) {
        ro[s] = rt;
        rt += rn[s];
    }
    float *recv = calloc((size_t)(rt ? rt : 1) * row, sizeof(float));
    moe_comm_req req = {0};
    moe_comm_alltoallv_rows_start(c, row * (int)sizeof(float), send, sn, so, recv, rn, ro, &req);
    long polls = 0;
    while (!moe_comm_progress(c, &req)) polls++; /* computing would go here */
    moe_comm_req_free(&req);
    int bad = 0;
    for (int s = 0; s < n; s++) {
        bad += rn[s] != n_rows(s, me);
        for (int i = 0; i < rn[s]; i++)
            for (int j = 0; j < row; j++) bad += recv[(size_t)(ro[s] + i) * row + j] != val(s, me, i, j);
    }
    int failed = moe_comm_agree(c, bad ? MOE_ERR : MOE_OK);
    if (me == 0) printf("exchange: %d ranks, rows of %d, %s\n", n, row, failed < 0 ? "every element correct" : "WRONG");
    if (bad) fprintf(stderr, "rank %d: %d wrong values\n", me, bad);
    free(sn), free(so), free(rn), free(ro), free(send), free(recv);
    return failed < 0 ? 0 : 1;
}

static int test_idle(moe_comm *c, double seconds)
{
    const int me = moe_comm_rank(c);
    moe_comm_barrier(c);
    double w0 = moe_now(), c0 = cpu_seconds();
    if (me == 0) {
        struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
        nanosleep(&ts, NULL);
    }
    moe_comm_barrier(c); /* the others wait here while rank 0 "works" */
    double wall = moe_now() - w0, cpu = cpu_seconds() - c0;
    int64_t mine[2] = {(int64_t)(cpu * 1e6), (int64_t)(wall * 1e6)};
    int64_t all[2 * 64];
    int n = moe_comm_size(c);
    if (n > 64) return 1;
    moe_comm_allgather_i64(c, mine, 2, all);
    int bad = 0;
    if (me == 0) {
        for (int r = 1; r < n; r++) {
            double share = (double)all[2 * r] / (double)all[2 * r + 1];
            printf("idle: rank %d used %.2f%% of a core over %.1f s\n", r, 100.0 * share, all[2 * r + 1] / 1e6);
            bad += share >= 0.05;
        }
    }
    return moe_comm_agree(c, bad ? MOE_ERR : MOE_OK) < 0 ? 0 : 1;
}

static int test_fail(moe_comm *c, int who)
{
    const int me = moe_comm_rank(c);
    if (me == who) fprintf(stderr, "moe-worker: rank %d: simulated load failure\n", me);
    int failed = moe_comm_agree(c, me == who ? MOE_ERR : MOE_OK);
    if (failed != who) {
        fprintf(stderr, "rank %d: agreement says %d, expected %d\n", me, failed, who);
        return 2;
    }
    if (me == 0) printf("fail: every rank learned that rank %d failed\n", failed);
    return 1;
}

/* AND over ranks: rank r clears bit r of all-ones and sets bit 40 + r;
 * everyone must get all-ones minus the low `size` bits, bits 40.. clear. */
static int test_and(moe_comm *c)
{
    const int me = moe_comm_rank(c), n = moe_comm_size(c);
    const uint64_t mine = (~(uint64_t)0 & ~((uint64_t)1 << me) & ~((uint64_t)0xff << 40)) | ((uint64_t)1 << (40 + me));
    const uint64_t got = moe_comm_allreduce_and_u64(c, mine);
    const uint64_t want = ~(uint64_t)0 & ~(((uint64_t)1 << n) - 1) & ~((uint64_t)0xff << 40);
    if (got != want) {
        fprintf(stderr, "rank %d: AND gave %#llx, expected %#llx\n", me, (unsigned long long)got,
                (unsigned long long)want);
        return 1;
    }
    if (me == 0) printf("and: %d ranks agree on %#llx\n", n, (unsigned long long)got);
    return 0;
}

/* The step header: every count is summed over ranks, tokens_max is the
 * largest; rank r puts in values that make each field's answer distinct
 * (and rank 1 the largest tokens_max, so neither the first nor the last
 * rank's value is the answer by accident). */
static int test_header(moe_comm *c)
{
    const int me = moe_comm_rank(c), n = moe_comm_size(c);
    const moe_comm_step_hdr mine = {.active = 1 + me, .tokens = 10 * (me + 1), .prefill = me, .stay = me == 0,
                                    .stop = me == n - 1, .hold = me % 2, .reconf = 3 * me + 2,
                                    .tokens_max = me == 1 ? 1000 : 7 * me};
    moe_comm_step_hdr job;
    int64_t want_hold = 0;
    for (int r = 0; r < n; r++) want_hold += r % 2;
    for (int round = 0; round < 3; round++) { /* the same answer every time (the op and type are kept) */
        moe_comm_step_header(c, &mine, round == 1, &job);
        const int64_t s = (int64_t)n * (n + 1) / 2;
        if (job.active != s || job.tokens != 10 * s || job.prefill != s - n || job.stay != 1 || job.stop != 1 ||
            job.hold != want_hold || job.reconf != 3 * (s - n) + 2 * n || job.tokens_max != (n > 1 ? 1000 : 0)) {
            fprintf(stderr,
                    "rank %d: header {%lld %lld %lld %lld %lld %lld %lld %lld}, expected {%lld %lld %lld 1 1 %lld %lld %d}\n",
                    me, (long long)job.active, (long long)job.tokens, (long long)job.prefill, (long long)job.stay,
                    (long long)job.stop, (long long)job.hold, (long long)job.reconf, (long long)job.tokens_max,
                    (long long)s, (long long)(10 * s), (long long)(s - n), (long long)want_hold,
                    (long long)(3 * (s - n) + 2 * n), n > 1 ? 1000 : 0);
            return 1;
        }
    }
    if (me == 0) printf("header: %d ranks, sums and the largest tokens_max (%lld)\n", n, (long long)job.tokens_max);
    return 0;
}

int main(int argc, char **argv)
{
    moe_err err;
    moe_comm *c;
    if (moe_comm_init(&c, "comm_test", &argc, &argv, &err)) {
        fprintf(stderr, "comm_test: %s\n", err.msg);
        return 2;
    }
    int rc = 2;
    if (argc >= 2 && !strcmp(argv[1], "exchange")) rc = test_exchange(c);
    else if (argc >= 3 && !strcmp(argv[1], "idle")) rc = test_idle(c, atof(argv[2]));
    else if (argc >= 3 && !strcmp(argv[1], "fail")) rc = test_fail(c, atoi(argv[2]));
    else if (argc >= 2 && !strcmp(argv[1], "and")) rc = test_and(c);
    else if (argc >= 2 && !strcmp(argv[1], "header")) rc = test_header(c);
    else if (argc >= 3 && !strcmp(argv[1], "abort")) {
        /* the message names the program given to init, not moe-worker */
        if (moe_comm_rank(c) == atoi(argv[2])) moe_comm_abort(c, 7, "simulated abort");
        moe_comm_barrier(c);
    }
    else fprintf(stderr, "usage: comm_test exchange | idle SECONDS | fail RANK | and | header | abort RANK\n");
    moe_comm_finalize(c);
    return rc;
}
