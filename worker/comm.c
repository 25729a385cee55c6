/*
 * comm.c — MPI wrappers: non-blocking collectives waited for by a poll that
 * turns into sleeps, cached row datatypes, and failure agreement.
 */
#include "comm.h"

#include <errno.h>
#include <sched.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SPIN_SECONDS 100e-6 /* poll without sleeping this long first */
#define SPIN_OWN_CORES 2e-3 /* ... or this long when the node's ranks have a core each (moe_comm_set_spin) */
#define SLEEP_MIN_NS 20000  /* then sleep 20 µs, doubling ... */
#define SLEEP_MAX_NS 2000000 /* ... up to 2 ms between polls */
#define MAX_ROW_TYPES 8

#define HDR_FIELDS 8 /* moe_comm_step_hdr: 7 sums, then tokens_max */

struct moe_comm {
    const char *name; /* message prefix */
    MPI_Datatype hdr_type; /* HDR_FIELDS int64 as one element, so the */
    MPI_Op hdr_op;         /* reduction always sees whole headers */
    int rank, size;
    struct {
        int row_bytes;
        MPI_Datatype type;
    } rows[MAX_ROW_TYPES];
    int n_rows;
    double wait_seconds;
    double spin;             /* seconds a wait polls before it sleeps */
    double test_delay;       /* seconds; 0: off (moe_comm_set_test_delay_us) */
    int64_t *scratch;
    int scratch_n;
};

/* The step header's reduction: sums of the counts, the largest tokens_max
 * (commutative and associative, as MPI_Op_create requires). */
static void hdr_reduce(void *in, void *inout, int *len, MPI_Datatype *type)
{
    (void)type;
    const int64_t *a = in;
    int64_t *b = inout;
    for (int k = 0; k < *len; k++, a += HDR_FIELDS, b += HDR_FIELDS) {
        for (int i = 0; i < HDR_FIELDS - 1; i++) b[i] += a[i];
        if (a[HDR_FIELDS - 1] > b[HDR_FIELDS - 1]) b[HDR_FIELDS - 1] = a[HDR_FIELDS - 1];
    }
}

int moe_comm_init(moe_comm **out, const char *name, int *argc, char ***argv, moe_err *err)
{
    *out = NULL;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return moe_err_set(err, "MPI_Init_thread failed");
    moe_comm *c = moe_xcalloc(1, sizeof *c);
    c->spin = SPIN_SECONDS;
    c->name = name;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    /* Errors come back as codes; we decide what to do with them. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (MPI_Type_contiguous(HDR_FIELDS, MPI_INT64_T, &c->hdr_type) != MPI_SUCCESS ||
        MPI_Type_commit(&c->hdr_type) != MPI_SUCCESS || MPI_Op_create(hdr_reduce, 1, &c->hdr_op) != MPI_SUCCESS) {
        free(c);
        *out = NULL;
        MPI_Finalize();
        return moe_err_set(err, "cannot create the step header's MPI type and operation");
    }
    *out = c;
    return MOE_OK;
}

void moe_comm_finalize(moe_comm *c)
{
    if (!c) return;
    for (int i = 0; i < c->n_rows; i++) MPI_Type_free(&c->rows[i].type);
    MPI_Type_free(&c->hdr_type);
    MPI_Op_free(&c->hdr_op);
    free(c->scratch);
    free(c);
    MPI_Finalize();
}

int moe_comm_rank(const moe_comm *c) { return c->rank; }
int moe_comm_size(const moe_comm *c) { return c->size; }
double moe_comm_wait_seconds(const moe_comm *c) { return c->wait_seconds; }

double moe_comm_set_spin(moe_comm *c, int threads)
{
    MPI_Comm node;
    int local = 1;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &local);
        MPI_Comm_free(&node);
    }
    cpu_set_t set;
    const int own = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    const int64_t th = threads > 0 ? threads : 1;
    /* bound to some of the CPUs (mpirun's default binding, srun
     * --cpu-bind): the rank's own set must hold its threads; unbound: the
     * node's ranks must fit all of them */
    const bool bound = online > 0 && own < online;
    c->spin = (bound ? th <= own : (int64_t)local * th <= own) ? SPIN_OWN_CORES : SPIN_SECONDS;
    return c->spin;
}

void moe_comm_set_test_delay_us(moe_comm *c, int64_t us)
{
    MOE_ASSERT(us >= 0 && us <= 10 * 1000 * 1000);
    c->test_delay = (double)us * 1e-6;
}

/* With the test delay on, a completed collective is held until the delay
 * has passed since it started (sleeping, as an idle wait does). */
static void hold(const moe_comm *c, double t_start)
{
    if (c->test_delay <= 0) return;
    const double left = t_start + c->test_delay - moe_now();
    if (left <= 0) return;
    struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

void moe_comm_abort(moe_comm *c, int code, const char *msg)
{
    fprintf(stderr, "%s: rank %d: %s\n", c && c->name ? c->name : "mpi", c ? c->rank : -1, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    abort(); /* not reached */
}

static void check(moe_comm *c, int rc, const char *what)
{
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING + 64], text[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(rc, text, &n);
    snprintf(msg, sizeof msg, "%s failed: %.*s", what, n, text);
    moe_comm_abort(c, 3, msg);
}

/* Polls r for spin seconds, then sleeps between polls; t_start: when the
 * collective started (for the test delay) */
static void wait_spin(moe_comm *c, MPI_Request *r, double t_start, double spin)
{
    double t0 = moe_now();
    int done = 0;
    long pause = SLEEP_MIN_NS;
    for (;;) {
        check(c, MPI_Test(r, &done, MPI_STATUS_IGNORE), "MPI_Test");
        if (done) break;
        if (moe_now() - t0 < spin) continue;
        struct timespec ts = {0, pause};
        nanosleep(&ts, NULL);
        if (pause < SLEEP_MAX_NS) pause *= 2;
    }
    hold(c, t_start);
    c->wait_seconds += moe_now() - t0;
}
static void wait_request(moe_comm *c, MPI_Request *r, double t_start) { wait_spin(c, r, t_start, c->spin); }

int moe_comm_agree(moe_comm *c, int status)
{
    /* min over ranks of (failed ? rank : size) */
    int mine = status == MOE_OK ? c->size : c->rank, first = c->size;
    MPI_Request r;
    const double t_start = moe_now();
    check(c, MPI_Iallreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &r), "MPI_Iallreduce");
    wait_request(c, &r, t_start);
    return first == c->size ? -1 : first;
}

uint64_t moe_comm_allreduce_and_u64(moe_comm *c, uint64_t mine)
{
    uint64_t all = 0;
    MPI_Request r;
    const double t_start = moe_now();
    check(c, MPI_Iallreduce(&mine, &all, 1, MPI_UINT64_T, MPI_BAND, MPI_COMM_WORLD, &r), "MPI_Iallreduce");
    wait_request(c, &r, t_start);
    return all;
}

void moe_comm_barrier(moe_comm *c)
{
    MPI_Request r;
    const double t_start = moe_now();
    check(c, MPI_Ibarrier(MPI_COMM_WORLD, &r), "MPI_Ibarrier");
    wait_request(c, &r, t_start);
}

void moe_comm_allgather_i64(moe_comm *c, const int64_t *mine, int n, int64_t *all)
{
    MPI_Request r;
    const double t_start = moe_now();
    check(c, MPI_Iallgather(mine, n, MPI_INT64_T, all, n, MPI_INT64_T, MPI_COMM_WORLD, &r), "MPI_Iallgather");
    wait_request(c, &r, t_start);
}

void moe_comm_sum_i64(moe_comm *c, int64_t *v, int n)
{
    MOE_ASSERT(n >= 1);
    MPI_Request r;
    const double t_start = moe_now();
    check(c, MPI_Iallreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD, &r), "MPI_Iallreduce");
    wait_request(c, &r, t_start);
}

void moe_comm_bcast_bytes(moe_comm *c, char **buf, int64_t *n)
{
    int64_t len = c->rank == 0 ? *n : 0;
    MPI_Request r;
    double t_start = moe_now();
    check(c, MPI_Ibcast(&len, 1, MPI_INT64_T, 0, MPI_COMM_WORLD, &r), "MPI_Ibcast");
    wait_request(c, &r, t_start);
    /* rank 0 chose len; every rank agrees on it before anything is sized */
    if (len < 0 || len > INT32_MAX / 2) moe_comm_abort(c, 4, "bcast: too many bytes");
    if (c->rank != 0) {
        *buf = moe_xmalloc((size_t)len + 1);
        (*buf)[len] = 0;
        *n = len;
    }
    if (len == 0) return;
    t_start = moe_now();
    check(c, MPI_Ibcast(*buf, (int)len, MPI_CHAR, 0, MPI_COMM_WORLD, &r), "MPI_Ibcast");
    wait_request(c, &r, t_start);
}

void moe_comm_step_header(moe_comm *c, const moe_comm_step_hdr *mine, bool idle, moe_comm_step_hdr *job)
{
    /* sums (stay comes from rank 0 alone, stop and hold are "any"), and
     * the largest tokens_max */
    const int64_t in[HDR_FIELDS] = {mine->active, mine->tokens, mine->prefill, mine->stay,
                                    mine->stop,   mine->hold,   mine->reconf,  mine->tokens_max};
    int64_t v[HDR_FIELDS];
    MPI_Request r;
    const double t_start = moe_now();
    check(c, MPI_Iallreduce(in, v, 1, c->hdr_type, c->hdr_op, MPI_COMM_WORLD, &r), "MPI_Iallreduce");
    wait_spin(c, &r, t_start, idle ? 0.0 : c->spin);
    *job = (moe_comm_step_hdr){.active = v[0], .tokens = v[1], .prefill = v[2], .stay = v[3],
                               .stop = v[4],   .hold = v[5],   .reconf = v[6], .tokens_max = v[7]};
}

void moe_comm_alltoall_i32(moe_comm *c, const int32_t *send, int32_t *recv)
{
    MPI_Request r;
    const double t_start = moe_now();
    check(c, MPI_Ialltoall(send, 1, MPI_INT32_T, recv, 1, MPI_INT32_T, MPI_COMM_WORLD, &r), "MPI_Ialltoall");
    wait_request(c, &r, t_start);
}

/* Rows are bytes to MPI (floats or quantized blocks with int32 ids: the
 * job's ranks share one binary format, so no conversion is wanted). */
static MPI_Datatype row_type(moe_comm *c, int row_bytes)
{
    for (int i = 0; i < c->n_rows; i++)
        if (c->rows[i].row_bytes == row_bytes) return c->rows[i].type;
    MOE_ASSERT(c->n_rows < MAX_ROW_TYPES);
    MPI_Datatype t;
    check(c, MPI_Type_contiguous(row_bytes, MPI_BYTE, &t), "MPI_Type_contiguous");
    check(c, MPI_Type_commit(&t), "MPI_Type_commit");
    c->rows[c->n_rows].row_bytes = row_bytes;
    c->rows[c->n_rows].type = t;
    c->n_rows++;
    return t;
}

void moe_comm_alltoallv_rows_start(moe_comm *c, int row_bytes, const void *send, const int32_t *send_n,
                                   const int32_t *send_off, void *recv, const int32_t *recv_n, const int32_t *recv_off,
                                   moe_comm_req *req)
{
    MOE_ASSERT(!req->active && row_bytes > 0);
    if (!req->impl) req->impl = moe_xmalloc(sizeof(MPI_Request));
    MPI_Datatype t = row_type(c, row_bytes);
    /* int32_t and int are the same type on every platform Open MPI supports. */
    _Static_assert(sizeof(int) == sizeof(int32_t), "int is 32 bits");
    req->t_start = moe_now();
    check(c,
          MPI_Ialltoallv(send, (const int *)send_n, (const int *)send_off, t, recv, (const int *)recv_n,
                         (const int *)recv_off, t, MPI_COMM_WORLD, (MPI_Request *)req->impl),
          "MPI_Ialltoallv");
    req->active = true;
}

bool moe_comm_progress(moe_comm *c, moe_comm_req *req)
{
    if (!req->active) return true;
    int done = 0;
    /* a completed request is MPI_REQUEST_NULL, which tests done again */
    check(c, MPI_Test((MPI_Request *)req->impl, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done && c->test_delay > 0 && moe_now() < req->t_start + c->test_delay) return false;
    if (done) req->active = false;
    return done != 0;
}

void moe_comm_wait(moe_comm *c, moe_comm_req *req)
{
    if (!req->active) return;
    wait_request(c, (MPI_Request *)req->impl, req->t_start);
    req->active = false;
}

void moe_comm_req_free(moe_comm_req *req)
{
    MOE_ASSERT(!req->active);
    free(req->impl);
    req->impl = NULL;
}

char *moe_comm_gather_bytes(moe_comm *c, const void *mine, int64_t n, int64_t **lens_out)
{
    int64_t *lens = moe_xcalloc((size_t)c->size, sizeof *lens);
    moe_comm_allgather_i64(c, &n, 1, lens);
    /* Bytes go as chunks of at most 1 GiB-ish so int counts never overflow. */
    int64_t total = 0;
    for (int r = 0; r < c->size; r++) total += lens[r];
    char *all = c->rank == 0 ? moe_xmalloc((size_t)total + 1) : NULL;
    int *cnt = moe_xcalloc((size_t)c->size, sizeof *cnt), *disp = moe_xcalloc((size_t)c->size, sizeof *disp);
    for (int r = 0, off = 0; r < c->size; r++) {
        if (lens[r] > INT32_MAX / 2 || off > INT32_MAX / 2) moe_comm_abort(c, 4, "gather: too many bytes");
        cnt[r] = (int)lens[r];
        disp[r] = off;
        off += cnt[r];
    }
    MPI_Request rq;
    const double t_start = moe_now();
    check(c, MPI_Igatherv(mine, (int)n, MPI_BYTE, all, cnt, disp, MPI_BYTE, 0, MPI_COMM_WORLD, &rq), "MPI_Igatherv");
    wait_request(c, &rq, t_start);
    if (all) all[total] = 0; /* callers treat it as text */
    free(cnt);
    free(disp);
    if (lens_out) *lens_out = lens;
    else free(lens);
    return all;
}
