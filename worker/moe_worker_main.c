/*
 * moe-worker — the worker job: one MPI rank per process, expert parallelism
 * with data-parallel attention.
 *
 *   mpirun -np N moe-worker --model M.gguf --batch FILE [options]
 *
 * Every rank maps the model, uses the dense weights and only its own routed
 * experts (placement: contiguous blocks, or --placement FILE).  Batch mode
 * reads one request a line:
 *
 *   <prompt ids, comma-separated> <tokens to generate> [seed=S] [temp=T] [top_p=P] [top_k=K] [min_p=P]
 *
 * places each request on the least-loaded rank (that rank keeps its latent
 * cache), runs them all to completion in lockstep steps, and prints one line
 * per request, in input order, with the generated ids (or "error: ...").
 * A request generates like moe-run would (same prefill chunks, same sampler,
 * stops at EOS unless --ignore-eos), so its ids and logits are identical.
 *
 * Serving mode (--coordinator ENDPOINT): every rank connects to the
 * coordinator's worker endpoint, says hello, and runs the sequences the
 * coordinator assigns to it, streaming each sampled token back at once;
 * heartbeats carry its free cache.  The job stays up (idle, sleeping in
 * a poll of its link) until SIGTERM.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <signal.h>

#include "comm.h"
#include "engine.h"
#include "link.h"
#include "msg.h"
#include "placement.h"
#include "sampler.h"
#include "xchg.h"

#define PREFILL_CHUNK 512 /* as moe-run's default --batch */

static void usage(FILE *f)
{
    fputs("usage: mpirun -np N moe-worker --model FILE.gguf (--batch FILE | --coordinator ENDPOINT) [options]\n"
          "Runs a batch of requests on an MPI job: routed experts are spread over the\n"
          "ranks, each request lives on one rank.  Prints one line per request.\n"
          "  --model FILE        GGUF model (deepseek2), mapped by every rank\n"
          "  --batch FILE        requests: 'IDS N [seed=S] [temp=T] [top_p=P] [top_k=K] [min_p=P]'\n"
          "  --coordinator EP    serve: connect every rank to the coordinator's worker endpoint\n"
          "  --max-seqs N        serving: sequences per rank (default 16)\n"
          "  --ctx N             serving: tokens per sequence (default min(4096, the model's))\n"
          "  --heartbeat-ms MS   serving: heartbeat period (default 500)\n"
          "  --placement FILE    which rank hosts which experts (default: contiguous blocks)\n"
          "  --threads N         threads per rank (default 1)\n"
          "  --block-size B      latent cache tokens per block (default 16)\n"
          "  --step-tokens N     tokens per step and rank (default 1024, >= 512)\n"
          "  --ignore-eos        do not stop at the file's EOS token\n"
          "  --dump-logits DIR   write DIR/req<i>.logits.f32 per request (moe-run's layout)\n"
          "  --stats             per rank and layer: sequences, tokens per expert, bytes,\n"
          "                      compute/exchange/overlap time (to stderr)\n"
          "  --trace FILE        routing decisions: 'layer req pos home experts weights ranks'\n"
          "  --linger S          stay up S seconds after the batch (or with no --batch), idle\n"
          "  --help              this text\n",
          f);
}

typedef struct opts {
    const char *model, *batch, *placement, *dump, *trace, *coordinator;
    int64_t threads, block, step_tokens, max_seqs, ctx, heartbeat_ms;
    double linger;
    bool ignore_eos, stats;
} opts;

static int parse_opts(int argc, char **argv, opts *o, moe_err *err)
{
    memset(o, 0, sizeof *o);
    o->threads = 1;
    o->block = 16;
    o->step_tokens = 1024;
    o->max_seqs = 16;
    o->heartbeat_ms = 500;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) return 1;
        if (!strcmp(f, "--ignore-eos")) { o->ignore_eos = true; continue; }
        if (!strcmp(f, "--stats")) { o->stats = true; continue; }
        if (i + 1 >= argc) return moe_err_set(err, "%s: unknown flag or missing value (see --help)", f);
        const char *v = argv[++i];
        if (!strcmp(f, "--model")) o->model = v;
        else if (!strcmp(f, "--batch")) o->batch = v;
        else if (!strcmp(f, "--placement")) o->placement = v;
        else if (!strcmp(f, "--dump-logits")) o->dump = v;
        else if (!strcmp(f, "--trace")) o->trace = v;
        else if (!strcmp(f, "--coordinator")) o->coordinator = v;
        else if (!strcmp(f, "--max-seqs")) { if (moe_parse_i64(v, 1, 1 << 16, &o->max_seqs, err)) return moe_err_prefix(err, "--max-seqs"); }
        else if (!strcmp(f, "--ctx")) { if (moe_parse_i64(v, 1, 1 << 24, &o->ctx, err)) return moe_err_prefix(err, "--ctx"); }
        else if (!strcmp(f, "--heartbeat-ms")) { if (moe_parse_i64(v, 10, 60000, &o->heartbeat_ms, err)) return moe_err_prefix(err, "--heartbeat-ms"); }
        else if (!strcmp(f, "--threads")) { if (moe_parse_i64(v, 1, 256, &o->threads, err)) return moe_err_prefix(err, "--threads"); }
        else if (!strcmp(f, "--block-size")) { if (moe_parse_i64(v, 1, 4096, &o->block, err)) return moe_err_prefix(err, "--block-size"); }
        else if (!strcmp(f, "--linger")) { if (moe_parse_f64(v, 0, 86400, &o->linger, err)) return moe_err_prefix(err, "--linger"); }
        else if (!strcmp(f, "--step-tokens")) { if (moe_parse_i64(v, PREFILL_CHUNK, 1 << 20, &o->step_tokens, err)) return moe_err_prefix(err, "--step-tokens"); }
        else return moe_err_set(err, "unknown flag %s (see --help)", f);
    }
    if (!o->model) return moe_err_set(err, "--model is required (see --help)");
    if (o->batch && o->coordinator) return moe_err_set(err, "--batch and --coordinator exclude each other");
    if (!o->batch && !o->coordinator && o->linger <= 0)
        return moe_err_set(err, "--batch or --coordinator is required (see --help)");
    return MOE_OK;
}

/* ---- requests ---------------------------------------------------------------- */

typedef struct request {
    int64_t num;         /* batch: line index; serving: the coordinator's sequence id */
    int32_t *prompt;     /* serving: prompt + already emitted tokens (a replay) */
    int n_prompt;
    int n_gen;           /* tokens to generate (serving: in total, emitted included) */
    moe_sampler_cfg sc;
    int rank;            /* owner */
    /* owner only */
    int seq;
    int32_t last;        /* the token to feed next */
    int fed;             /* prompt tokens fed */
    int32_t *hist;       /* prompt + generated */
    int64_t n_hist;
    int n_out;
    moe_sampler *smp;
    FILE *dump;
    bool done;
    char error[MOE_ERR_MSG_MAX];
} request;

static int parse_ids(const char *s, size_t len, request *r, int vocab, moe_err *err)
{
    int cap = 16;
    r->prompt = moe_xmalloc((size_t)cap * sizeof *r->prompt);
    r->n_prompt = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != ',') j++;
        char buf[24];
        if (j == i || j - i >= sizeof buf) return moe_err_set(err, "prompt id %d is empty or too long", r->n_prompt + 1);
        memcpy(buf, s + i, j - i);
        buf[j - i] = 0;
        int64_t v;
        if (moe_parse_i64(buf, 0, vocab - 1, &v, err)) return moe_err_prefix(err, "prompt id %d", r->n_prompt + 1);
        if (r->n_prompt == cap) r->prompt = moe_xrealloc(r->prompt, (size_t)(cap *= 2) * sizeof *r->prompt);
        r->prompt[r->n_prompt++] = (int32_t)v;
        i = j + 1;
        if (j + 1 == len) return moe_err_set(err, "prompt ends with a comma");
    }
    if (r->n_prompt == 0) return moe_err_set(err, "empty prompt");
    return MOE_OK;
}

static int parse_request(char *line, request *r, const moe_hparams *hp, int64_t max_ctx, moe_err *err)
{
    char *save = NULL;
    char *ids = strtok_r(line, " \t\r\n", &save);
    char *n = strtok_r(NULL, " \t\r\n", &save);
    if (!ids || !n) return moe_err_set(err, "expected 'IDS N [options]'");
    if (parse_ids(ids, strlen(ids), r, hp->vocab, err)) return MOE_ERR;
    int64_t v;
    if (moe_parse_i64(n, 0, 1 << 24, &v, err)) return moe_err_prefix(err, "tokens to generate");
    r->n_gen = (int)v;
    if ((int64_t)r->n_prompt + r->n_gen > max_ctx)
        return moe_err_set(err, "prompt (%d) + generated (%d) exceeds the model's context (%lld)", r->n_prompt, r->n_gen,
                           (long long)max_ctx);
    moe_sampler_cfg_default(&r->sc);
    for (char *kv; (kv = strtok_r(NULL, " \t\r\n", &save));) {
        char *eq = strchr(kv, '=');
        if (!eq) return moe_err_set(err, "option '%s' is not key=value", kv);
        *eq = 0;
        const char *val = eq + 1;
        double d;
        if (!strcmp(kv, "seed")) {
            if (moe_parse_i64(val, 0, INT64_MAX, &v, err)) return moe_err_prefix(err, "seed");
            r->sc.seed = (uint64_t)v;
        } else if (!strcmp(kv, "temp")) {
            if (moe_parse_f64(val, 0, 1000, &d, err)) return moe_err_prefix(err, "temp");
            r->sc.temperature = (float)d;
        } else if (!strcmp(kv, "top_p")) {
            if (moe_parse_f64(val, 1e-9, 1, &d, err)) return moe_err_prefix(err, "top_p");
            r->sc.top_p = (float)d;
        } else if (!strcmp(kv, "min_p")) {
            if (moe_parse_f64(val, 0, 1, &d, err)) return moe_err_prefix(err, "min_p");
            r->sc.min_p = (float)d;
        } else if (!strcmp(kv, "top_k")) {
            if (moe_parse_i64(val, 0, INT32_MAX, &v, err)) return moe_err_prefix(err, "top_k");
            r->sc.top_k = (int)v;
        } else {
            return moe_err_set(err, "unknown option '%s' (seed, temp, top_p, top_k, min_p)", kv);
        }
    }
    return moe_sampler_cfg_check(&r->sc, err);
}

static int read_batch(const char *path, const moe_hparams *hp, request **out, int *n_out, moe_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f) return moe_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    request *reqs = NULL;
    int n = 0, cap = 0, line_no = 0, rc = MOE_OK;
    char *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) > 0) {
        line_no++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || *p == 0) continue;
        if (n == (1 << 20)) {
            rc = moe_err_set(err, "%s: more than %d requests", path, 1 << 20);
            break;
        }
        if (n == cap) reqs = moe_xrealloc(reqs, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *reqs);
        memset(&reqs[n], 0, sizeof reqs[n]);
        if (parse_request(p, &reqs[n], hp, hp->ctx_train, err)) {
            free(reqs[n].prompt);
            rc = moe_err_prefix(err, "%s line %d", path, line_no);
            break;
        }
        n++;
    }
    free(line);
    fclose(f);
    if (rc == MOE_OK && n == 0) rc = moe_err_set(err, "%s: no requests", path);
    if (rc) {
        for (int i = 0; i < n; i++) free(reqs[i].prompt);
        free(reqs);
        return MOE_ERR;
    }
    *out = reqs;
    *n_out = n;
    return MOE_OK;
}

/* Least-loaded placement of sequences: longest first, to the rank with the
 * fewest tokens so far (ties: lowest rank).  Every rank computes the same. */
typedef struct by_len {
    int64_t len;
    int index;
} by_len;

/* Longest first, then input order: a total order, so every rank agrees. */
static int cmp_by_len(const void *a, const void *b)
{
    const by_len *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

static void place_requests(request *reqs, int n, int n_rank)
{
    int64_t *load = moe_xcalloc((size_t)n_rank, sizeof *load);
    by_len *order = moe_xmalloc((size_t)(n ? n : 1) * sizeof *order);
    for (int i = 0; i < n; i++) order[i] = (by_len){(int64_t)reqs[i].n_prompt + reqs[i].n_gen, i};
    qsort(order, (size_t)n, sizeof *order, cmp_by_len);
    for (int i = 0; i < n; i++) {
        request *r = &reqs[order[i].index];
        int best = 0;
        for (int q = 1; q < n_rank; q++)
            if (load[q] < load[best]) best = q;
        r->rank = best;
        load[best] += r->n_prompt + r->n_gen;
    }
    free(order);
    free(load);
}

/* ---- output helpers ------------------------------------------------------------ */

typedef struct text {
    char *p;
    size_t n, cap;
} text;

static void tprintf(text *t, const char *fmt, ...) MOE_PRINTF(2, 3);
#include <stdarg.h>
static void tprintf(text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->p ? t->p + t->n : NULL, t->p ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (k >= 0 && t->p && (size_t)k < t->cap - t->n) {
            t->n += (size_t)k;
            return;
        }
        t->cap = t->cap * 2 + (size_t)(k > 0 ? k : 0) + 256;
        t->p = moe_xrealloc(t->p, t->cap);
    }
}

static void finish_request(request *r, const char *msg)
{
    r->done = true;
    if (msg) snprintf(r->error, sizeof r->error, "%s", msg);
    if (r->dump) {
        if (fclose(r->dump) != 0 && !r->error[0]) snprintf(r->error, sizeof r->error, "logits file: %s", strerror(errno));
        r->dump = NULL;
    }
}

/* ---- expert residency ------------------------------------------------------------ */

/* Routed-expert tensors of a MoE layer, as byte ranges of the mapping. */
static int expert_ranges(const moe_model *m, int il, const moe_mat **mats)
{
    const moe_layer *L = &m->layers[il];
    mats[0] = &L->gate_exps;
    mats[1] = &L->up_exps;
    mats[2] = &L->down_exps;
    return 3;
}

static uint64_t mat_bytes(const moe_mat *w) { return (uint64_t)w->rows * (uint64_t)w->row_bytes; }

/*
 * Marks the routed-expert tensors MADV_RANDOM: no readahead and no
 * fault-around into other experts' pages, so a rank maps only the experts
 * it runs.  It also gives those ranges VMAs of their own, which is what lets
 * /proc/self/smaps report their resident size.
 */
static void advise_experts(const moe_model *m)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int il = m->hp.n_dense_lead; il < m->hp.n_layer; il++) {
        const moe_mat *mats[3];
        for (int k = 0, n = expert_ranges(m, il, mats); k < n; k++) {
            uintptr_t a = (uintptr_t)mats[k]->data & ~(page - 1);
            uintptr_t b = ((uintptr_t)mats[k]->data + mat_bytes(mats[k]) + page - 1) & ~(page - 1);
            madvise((void *)a, b - a, MADV_RANDOM); /* advice only: failure changes nothing */
        }
    }
}

/* Bytes of this rank's share of the routed experts (what it should hold). */
static uint64_t expert_share(const moe_model *m, const moe_placement *p, int rank)
{
    uint64_t b = 0;
    for (int il = m->hp.n_dense_lead; il < m->hp.n_layer; il++) {
        const moe_mat *mats[3];
        int hosted = 0;
        for (int e = 0; e < m->hp.n_expert; e++) hosted += moe_placement_rank_hosts(p, il, rank, e);
        for (int k = 0, n = expert_ranges(m, il, mats); k < n; k++)
            b += mat_bytes(mats[k]) / (uint64_t)m->hp.n_expert * (uint64_t)hosted;
    }
    return b;
}

/* Resident bytes of the expert tensors, summed from /proc/self/smaps over
 * the VMAs that the expert ranges cover (advise_experts gave them VMAs of
 * their own; adjacent expert tensors share one). */
static uint64_t expert_resident(const moe_model *m)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return 0;
    char line[512];
    uint64_t total = 0;
    bool inside = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        unsigned long long kb;
        char dash;
        if (sscanf(line, "%lx%c%lx ", &lo, &dash, &hi) == 3 && dash == '-') {
            uint64_t covered = 0;
            for (int il = m->hp.n_dense_lead; il < m->hp.n_layer; il++) {
                const moe_mat *mats[3];
                for (int k = 0, n = expert_ranges(m, il, mats); k < n; k++) {
                    uintptr_t a = (uintptr_t)mats[k]->data & ~(page - 1);
                    uintptr_t b = ((uintptr_t)mats[k]->data + mat_bytes(mats[k]) + page - 1) & ~(page - 1);
                    uintptr_t x = a > lo ? a : lo, y = b < hi ? b : hi;
                    if (y > x) covered += y - x;
                }
            }
            inside = covered >= hi - lo;
        } else if (inside && sscanf(line, "Rss: %llu kB", &kb) == 1) {
            total += kb * 1024ull;
        }
    }
    fclose(f);
    return total;
}

/* ---- the worker ------------------------------------------------------------------- */

static volatile sig_atomic_t g_stop; /* SIGTERM / SIGINT: leave at the next step */
static void on_signal(int sig) { (void)sig; g_stop = 1; }

typedef struct worker {
    opts o;
    moe_comm *c;
    int me, R;
    moe_model *m;
    const moe_hparams *hp;
    moe_engine *e;
    int max_seqs;
    int64_t max_ctx;
    int32_t eos;
    request **live;          /* owned, unfinished */
    int n_live;
    int64_t *seq_num;        /* engine sequence -> request number (trace) */
    /* serving */
    moe_link_ctx *lctx;
    moe_link *link;
    bool hello_acked;
    double t_beat;
    uint64_t job_id;
} worker;

/* Gives an owned request its sequence, sampler and buffers; joins the live list. */
static int req_start(worker *w, request *r, moe_err *err)
{
    if (w->n_live >= w->max_seqs) return moe_err_set(err, "this rank already runs %d sequences", w->max_seqs);
    if ((int64_t)r->n_prompt + r->n_gen + 1 > w->max_ctx)
        return moe_err_set(err, "prompt (%d) + tokens (%d) exceeds the rank's context of %lld", r->n_prompt, r->n_gen,
                           (long long)w->max_ctx - 1);
    if (w->eos >= 0 && !moe_sampler_is_stop(&r->sc, w->eos) && r->sc.n_stop < MOE_SAMPLER_MAX_STOP)
        r->sc.stop[r->sc.n_stop++] = w->eos;
    if (moe_sampler_init(&r->smp, &r->sc, w->hp->vocab, err)) return MOE_ERR;
    if (moe_engine_seq_new(w->e, &r->seq, err)) {
        moe_sampler_free(r->smp);
        r->smp = NULL;
        return MOE_ERR;
    }
    w->seq_num[r->seq] = r->num;
    r->hist = moe_xmalloc((size_t)(r->n_prompt + r->n_gen + 1) * sizeof *r->hist);
    memcpy(r->hist, r->prompt, (size_t)r->n_prompt * sizeof *r->hist);
    r->n_hist = r->n_prompt;
    w->live[w->n_live++] = r;
    return MOE_OK;
}

/* Leaves the live list and frees the sequence's cache. */
static void req_retire(worker *w, request *r)
{
    for (int i = 0; i < w->n_live; i++)
        if (w->live[i] == r) {
            memmove(&w->live[i], &w->live[i + 1], (size_t)(w->n_live - i - 1) * sizeof *w->live);
            w->n_live--;
            break;
        }
    moe_engine_seq_free(w->e, r->seq);
}

static void req_free(request *r)
{
    if (r->dump) fclose(r->dump);
    moe_sampler_free(r->smp);
    free(r->prompt);
    free(r->hist);
}

/* ---- serving: the link to the coordinator ----------------------------------------- */

static void link_send(worker *w, Moe__WorkerMsg *m)
{
    moe_err err;
    int rc = moe_link_send(w->link, NULL, &m->base, MOE_LINK_DONTWAIT, &err);
    if (rc == MOE_LINK_AGAIN) rc = moe_link_send(w->link, NULL, &m->base, 0, &err); /* queue full: wait */
    if (rc != MOE_OK) moe_log(MOE_LOG_WARN, "rank %d: send to the coordinator failed: %s", w->me, err.msg);
}

static void send_seq_end(worker *w, const request *r, Moe__EndReason why, const char *msg)
{
    Moe__SeqEnd se = MOE__SEQ_END__INIT;
    se.has_seq_id = true;
    se.seq_id = (uint64_t)r->num;
    se.has_reason = true;
    se.reason = why;
    se.message = (char *)(msg ? msg : "");
    Moe__WorkerMsg m = MOE__WORKER_MSG__INIT;
    m.body_case = MOE__WORKER_MSG__BODY_SEQ_END;
    m.seq_end = &se;
    link_send(w, &m);
}

static void send_token(worker *w, const request *r, int index, int32_t tok)
{
    Moe__Token t = MOE__TOKEN__INIT;
    t.has_seq_id = t.has_index = t.has_token = true;
    t.seq_id = (uint64_t)r->num;
    t.index = (uint32_t)index;
    t.token = tok;
    Moe__WorkerMsg m = MOE__WORKER_MSG__INIT;
    m.body_case = MOE__WORKER_MSG__BODY_TOKEN;
    m.token = &t;
    link_send(w, &m);
}

static int64_t cache_free_tokens(const worker *w)
{
    int64_t used = 0;
    for (int i = 0; i < w->n_live; i++) used += w->live[i]->n_prompt + w->live[i]->n_gen;
    const int64_t total = (int64_t)w->max_seqs * (w->max_ctx - 1);
    return total > used ? total - used : 0;
}

/* Hello until the coordinator answers, heartbeats after. */
static void link_beat(worker *w)
{
    const double now = moe_now();
    if (now - w->t_beat < (double)w->o.heartbeat_ms / 1000.0) return;
    w->t_beat = now;
    Moe__WorkerMsg m = MOE__WORKER_MSG__INIT;
    if (!w->hello_acked) {
        Moe__ModelIdentity id = MOE__MODEL_IDENTITY__INIT;
        uint64_t nlen = 0;
        const char *name = NULL;
        char namebuf[256] = "";
        moe_err e2;
        if (moe_gguf_get_str(w->m->gguf, "general.name", &name, &nlen, &e2) == MOE_OK)
            snprintf(namebuf, sizeof namebuf, "%.*s", (int)(nlen < 255 ? nlen : 255), name);
        id.name = namebuf;
        id.has_vocab_size = id.has_max_context = true;
        id.vocab_size = (uint32_t)w->hp->vocab;
        id.max_context = (uint32_t)(w->max_ctx - 1);
        Moe__WorkerHello h = MOE__WORKER_HELLO__INIT;
        h.has_protocol_version = h.has_rank = h.has_n_ranks = true;
        h.protocol_version = MOE_PROTO_VERSION;
        h.rank = (uint32_t)w->me;
        h.n_ranks = (uint32_t)w->R;
        h.has_cache_tokens_total = h.has_cache_tokens_free = h.has_job_id = true;
        h.cache_tokens_total = (uint64_t)w->max_seqs * (uint64_t)(w->max_ctx - 1);
        h.cache_tokens_free = (uint64_t)cache_free_tokens(w);
        h.job_id = w->job_id;
        h.has_max_seqs = true;
        h.max_seqs = (uint32_t)w->max_seqs;
        h.model = &id;
        m.body_case = MOE__WORKER_MSG__BODY_HELLO;
        m.hello = &h;
        link_send(w, &m);
        return;
    }
    uint64_t active[1024];
    Moe__WorkerHeartbeat hb = MOE__WORKER_HEARTBEAT__INIT;
    hb.has_rank = hb.has_cache_tokens_free = true;
    hb.rank = (uint32_t)w->me;
    hb.cache_tokens_free = (uint64_t)cache_free_tokens(w);
    for (int i = 0; i < w->n_live && i < 1024; i++) active[i] = (uint64_t)w->live[i]->num;
    hb.n_active = (size_t)(w->n_live < 1024 ? w->n_live : 1024);
    hb.active = active;
    m.body_case = MOE__WORKER_MSG__BODY_HEARTBEAT;
    m.heartbeat = &hb;
    link_send(w, &m);
}

/* Called at every MoE layer: heartbeats keep going during a long step. */
static void beat_tick(void *ctx) { link_beat(ctx); }

static request *find_live(worker *w, int64_t num)
{
    for (int i = 0; i < w->n_live; i++)
        if (w->live[i]->num == num) return w->live[i];
    return NULL;
}

/* A new sequence from the coordinator (fields already validated by the link). */
static void on_assign(worker *w, const Moe__Assign *a)
{
    request *r = moe_xcalloc(1, sizeof *r);
    moe_err err = {{0}};
    r->num = (int64_t)a->seq_id;
    r->rank = w->me;
    r->n_prompt = (int)(a->n_prompt + a->n_emitted);
    r->prompt = moe_xmalloc((size_t)(r->n_prompt ? r->n_prompt : 1) * sizeof *r->prompt);
    memcpy(r->prompt, a->prompt, a->n_prompt * sizeof *r->prompt);
    memcpy(r->prompt + a->n_prompt, a->emitted, a->n_emitted * sizeof *r->prompt);
    r->n_gen = a->has_max_tokens ? a->max_tokens : 0;
    r->n_out = (int)a->n_emitted;
    moe_sampler_cfg_default(&r->sc);
    int rc = MOE_OK;
    if (find_live(w, r->num)) rc = moe_err_set(&err, "sequence %llu is already running here", (unsigned long long)a->seq_id);
    for (size_t i = 0; rc == MOE_OK && i < a->n_prompt + a->n_emitted; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= w->hp->vocab)
            rc = moe_err_set(&err, "token id %d is not in the vocabulary", r->prompt[i]);
    if (rc == MOE_OK && (r->n_prompt < 1 || r->n_gen < 1 || r->n_out >= r->n_gen))
        rc = moe_err_set(&err, "nothing to do (prompt %d, max tokens %d, emitted %d)", r->n_prompt, r->n_gen, r->n_out);
    if (rc == MOE_OK && moe_msg_sampler_cfg(a->sampling, a->stop_ids, a->n_stop_ids, &r->sc, &err) != MOE__CODE__OK)
        rc = MOE_ERR;
    if (rc == MOE_OK) rc = req_start(w, r, &err);
    if (rc != MOE_OK) {
        send_seq_end(w, r, MOE__END_REASON__END_ERROR, err.msg);
        req_free(r);
        free(r);
    }
}

/* Everything the coordinator sent since the last look. */
static void link_drain(worker *w)
{
    for (;;) {
        moe_link_in in = {0};
        moe_err err;
        int rc = moe_link_recv(w->link, &in, MOE_LINK_DONTWAIT, &err);
        if (rc != MOE_OK) {
            if (rc == MOE_ERR) moe_log(MOE_LOG_WARN, "rank %d: receive failed: %s", w->me, err.msg);
            return;
        }
        const Moe__CoordMsg *m = (const Moe__CoordMsg *)in.msg;
        if (in.code != MOE__CODE__OK || !m) {
            moe_log(MOE_LOG_WARN, "rank %d: refused a frame from the coordinator (%s): %s", w->me,
                    moe_msg_code_name(in.code), err.msg);
        } else if (m->body_case == MOE__COORD_MSG__BODY_HELLO_REPLY) {
            w->hello_acked = true;
        } else if (m->body_case == MOE__COORD_MSG__BODY_ASSIGN) {
            on_assign(w, m->assign);
        } else if (m->body_case == MOE__COORD_MSG__BODY_RELEASE) {
            request *r = find_live(w, (int64_t)m->release->seq_id);
            if (r) {
                req_retire(w, r);
                req_free(r);
                free(r);
            }
        } else if (m->body_case == MOE__COORD_MSG__BODY_ERROR) {
            /* a coordinator that does not know us (it restarted): say hello again */
            if (m->error->has_code && m->error->code == MOE__CODE__NOT_READY) w->hello_acked = false;
        }
        moe_link_in_clear(&in);
    }
}

/* The job's kernel set.  Ranks may run on different CPUs: each offers its
 * CPU's features capped by its own MOE_KERNELS, the ranks AND the offers and
 * all take the best set in the result, so a sequence's bits never depend
 * on the rank that holds it.  With stats, rank 0 prints every rank's line. */
static int job_kernels(moe_comm *c, bool stats, const moe_kern_set **out)
{
    moe_err err;
    const int me = moe_comm_rank(c);
    const uint64_t cpu = moe_kern_cpu_features();
    uint64_t mask = 0;
    const int st = moe_kern_cpu_mask(cpu, getenv("MOE_KERNELS"), &mask, &err);
    if (st) fprintf(stderr, "moe-worker: rank %d: %s\n", me, err.msg);
    if (moe_comm_agree(c, st) >= 0) return MOE_ERR;
    *out = moe_kern_best_in(moe_comm_allreduce_and_u64(c, mask));
    if (stats) {
        char line[256], has[64];
        int n = snprintf(line, sizeof line, "rank %d: kernels %s (this rank offers %s; its CPU has %s)\n", me,
                         moe_kern_name(*out), moe_kern_name(moe_kern_best_in(mask)), moe_kern_list(cpu, has, sizeof has));
        if (n >= (int)sizeof line) n = (int)sizeof line - 1;
        int64_t *lens = NULL, total = 0;
        char *all = moe_comm_gather_bytes(c, line, n, &lens);
        for (int r = 0; r < moe_comm_size(c); r++) total += lens[r];
        if (me == 0) fwrite(all, 1, (size_t)total, stderr);
        free(all);
        free(lens);
    }
    return MOE_OK;
}

/* ---- main ------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    moe_comm *c;
    moe_err err = {{0}};
    if (moe_comm_init(&c, "moe-worker", &argc, &argv, &err)) {
        fprintf(stderr, "moe-worker: %s\n", err.msg);
        return 1;
    }
    worker W = {0}, *w = &W;
    w->c = c;
    w->me = moe_comm_rank(c);
    w->R = moe_comm_size(c);
    w->eos = -1;
    const int me = w->me, R = w->R;
    opts *o = &w->o;
    int prc = parse_opts(argc, argv, o, &err);
    if (prc != MOE_OK) { /* the same on every rank: no agreement needed */
        if (me == 0) {
            if (prc > 0) usage(stdout);
            else fprintf(stderr, "moe-worker: %s\n", err.msg);
        }
        moe_comm_finalize(c);
        return prc > 0 ? 0 : 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* If the launcher (mpirun, its daemon, srun) dies, a serving rank must
     * not idle on forever: its death becomes our SIGTERM. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);

    moe_placement *pl = NULL;
    moe_xchg *x = NULL;
    request *reqs = NULL;
    int n_req = 0, rc = 1, trace_fd = -1;

    /* Load: every rank maps the file; agree before anyone goes on. */
    int st = moe_model_open(&w->m, o->model, &err);
    if (st) fprintf(stderr, "moe-worker: rank %d: %s\n", me, err.msg);
    int bad = moe_comm_agree(c, st);
    if (bad >= 0) {
        if (me == 0) fprintf(stderr, "moe-worker: rank %d could not load the model; stopping\n", bad);
        goto out;
    }
    const moe_hparams *hp = w->hp = &w->m->hp;
    advise_experts(w->m);
    moe_placement_shape shape = {hp->n_layer, hp->n_dense_lead, hp->n_expert, R};
    if (hp->n_dense_lead >= hp->n_layer) {
        st = moe_err_set(&err, "the model has no MoE layers");
    } else {
        st = o->placement ? moe_placement_load(&pl, &shape, o->placement, &err)
                          : moe_placement_contiguous(&pl, &shape, &err);
    }
    if (st == MOE_OK && o->batch) st = read_batch(o->batch, hp, &reqs, &n_req, &err);
    if (st && me == 0) fprintf(stderr, "moe-worker: %s\n", err.msg);
    if (moe_comm_agree(c, st) >= 0) goto out; /* same inputs on every rank: rank 0 said why */

    /* Engine size: the batch's own requests, or the serving flags. */
    place_requests(reqs, n_req, R);
    int n_mine = 0;
    int64_t max_len = 1, cache_tokens = 0;
    for (int i = 0; i < n_req; i++)
        if (reqs[i].rank == me) {
            n_mine++;
            const int64_t len = reqs[i].n_prompt + reqs[i].n_gen + 1;
            if (len > max_len) max_len = len;
            cache_tokens += len + o->block; /* room for partial blocks */
        }
    if (o->coordinator) {
        const int64_t ctx = o->ctx ? o->ctx : (hp->ctx_train < 4096 ? hp->ctx_train : 4096);
        w->max_seqs = (int)o->max_seqs;
        max_len = ctx + 1;
        cache_tokens = (int64_t)w->max_seqs * (max_len + o->block);
    } else {
        w->max_seqs = n_mine > 0 ? n_mine : 1;
    }
    w->max_ctx = max_len;
    moe_engine_opts eo;
    moe_engine_opts_default(&eo);
    if (job_kernels(c, o->stats, &eo.kernels)) goto out;
    eo.n_threads = (int)o->threads;
    eo.block_size = (int)o->block;
    eo.max_ctx = max_len;
    eo.max_seqs = w->max_seqs;
    eo.cache_tokens = cache_tokens > 0 ? cache_tokens : max_len;
    eo.max_batch_tokens = (int)o->step_tokens;
    /* The engine reads the hook through this pointer at every step, so it
     * can be filled in once the exchange (which needs the engine) exists. */
    moe_engine_moe_hook hook = {0};
    eo.moe_hook = &hook;
    st = moe_engine_init(&w->e, w->m, &eo, &err);
    if (st == MOE_OK) st = moe_xchg_init(&x, c, w->e, pl, &err);
    if (st == MOE_OK) moe_xchg_hook(x, &hook);
    if (st == MOE_OK && !o->ignore_eos && moe_gguf_find_kv(w->m->gguf, "tokenizer.ggml.eos_token_id") >= 0) {
        uint32_t v;
        if (moe_gguf_get_u32(w->m->gguf, "tokenizer.ggml.eos_token_id", &v, &err) == MOE_OK && v < (uint32_t)hp->vocab)
            w->eos = (int32_t)v;
    }
    w->live = moe_xcalloc((size_t)w->max_seqs, sizeof *w->live);
    w->seq_num = moe_xcalloc((size_t)w->max_seqs + 1, sizeof *w->seq_num);
    for (int i = 0; i < n_req && st == MOE_OK; i++) {
        request *r = &reqs[i];
        if (r->rank != me) continue;
        r->num = i;
        if ((st = req_start(w, r, &err))) break;
        if (o->dump) {
            char path[4096];
            snprintf(path, sizeof path, "%s/req%d.logits.f32", o->dump, i);
            if (!(r->dump = fopen(path, "wb"))) st = moe_err_set(&err, "%s: %s", path, strerror(errno));
        }
    }
    if (st == MOE_OK && o->coordinator) {
        moe_link_opts lo;
        moe_link_opts_default(&lo, &moe__coord_msg__descriptor);
        char ident[32];
        snprintf(ident, sizeof ident, "rank-%d", me);
        lo.identity = ident;
        lo.sndhwm = 100000; /* tokens wait here rather than stall the job */
        w->job_id = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
        st = moe_link_ctx_init(&w->lctx, &err);
        if (st == MOE_OK) st = moe_link_connect(&w->link, w->lctx, o->coordinator, &lo, &err);
        if (st == MOE_OK) moe_xchg_set_tick(x, beat_tick, w);
    }
    if (st == MOE_OK && o->trace) {
        if (me == 0) {
            trace_fd = open(o->trace, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
            if (trace_fd < 0) st = moe_err_set(&err, "%s: %s", o->trace, strerror(errno));
        }
    }
    if (st) fprintf(stderr, "moe-worker: rank %d: %s\n", me, err.msg);
    if (moe_comm_agree(c, st) >= 0) goto out;
    if (o->trace) {
        if (me != 0) trace_fd = open(o->trace, O_WRONLY | O_APPEND | O_CLOEXEC);
        st = trace_fd < 0 ? moe_err_set(&err, "%s: %s", o->trace, strerror(errno)) : MOE_OK;
        if (st) fprintf(stderr, "moe-worker: rank %d: %s\n", me, err.msg);
        if (moe_comm_agree(c, st) >= 0) goto out;
        moe_xchg_set_trace(x, trace_fd, w->seq_num);
    }
    if (me == 0 && o->coordinator) {
        fprintf(stderr, "moe-worker: ready: %d ranks serving %s for %s\n", R, o->model, o->coordinator);
        fflush(stderr);
    }

    /* Lockstep steps until no rank has work (batch), or until told to stop. */
    moe_step_item *items = moe_xcalloc((size_t)w->max_seqs, sizeof *items);
    request **item_req = moe_xcalloc((size_t)w->max_seqs, sizeof *item_req);
    int64_t steps = 0, tok_prefill = 0, tok_decode = 0;
    const double t_run = moe_now();
    double t_idle_since = t_run; /* end of the last step with work */
    int idle_pause_ms = 1;
    int64_t job_decode_steps = 0, job_decode_tokens = 0;
    double job_decode_time = 0;
    bool said_idle = false;
    for (;;) {
        if (w->link) {
            link_drain(w);
            link_beat(w);
        }
        int n_items = 0;
        int64_t budget = o->step_tokens, active = w->n_live, n_prefill_here = 0;
        for (int i = 0; i < w->n_live; i++) {
            request *r = w->live[i];
            moe_step_item *it = &items[n_items];
            memset(it, 0, sizeof *it);
            it->seq = r->seq;
            it->logits = MOE_LOGITS_LAST;
            if (r->fed < r->n_prompt) {
                const int chunk = r->n_prompt - r->fed < PREFILL_CHUNK ? r->n_prompt - r->fed : PREFILL_CHUNK;
                if (chunk > budget) continue; /* next step */
                it->tokens = r->prompt + r->fed;
                it->n_tokens = chunk;
                n_prefill_here += chunk;
            } else {
                if (budget < 1) continue;
                it->tokens = &r->last;
                it->n_tokens = 1;
            }
            budget -= it->n_tokens;
            item_req[n_items++] = r;
        }
        /* Step header: work here, tokens here, rank 0's "keep going when
         * idle" (so every rank leaves at the same step), prefill tokens. */
        const int64_t stay = me == 0 && !g_stop && (o->coordinator || moe_now() - t_idle_since < o->linger);
        int64_t hdr[5] = {active, o->step_tokens - budget, stay, n_prefill_here, g_stop}, all[5 * MOE_PLACEMENT_MAX_RANKS];
        moe_comm_allgather_i64(c, hdr, 5, all);
        int64_t any = 0, step_tokens = 0, step_prefill = 0, stop_any = 0;
        for (int q = 0; q < R; q++) {
            any += all[5 * q];
            step_tokens += all[5 * q + 1];
            step_prefill += all[5 * q + 3];
            stop_any |= all[5 * q + 4];
        }
        if (stop_any) break; /* SIGTERM on any rank ends the job, together */
        if (!any) {
            if (!all[2]) break;
            if (!said_idle && me == 0) {
                fprintf(stderr, "moe-worker: idle (%d ranks)%s\n", R, o->coordinator ? ", waiting for work" : "");
                said_idle = true;
            }
            /* Idle: a header every few ms, growing to 20 ms, is all it costs;
             * that is also the longest new work waits to be noticed.  A
             * serving rank sleeps in a poll of its link, so work wakes it. */
            if (w->link) {
                moe_link_poll_item pi = {.link = w->link};
                moe_link_poll(&pi, 1, idle_pause_ms, &err);
            } else {
                struct timespec ts = {0, (long)idle_pause_ms * 1000000L};
                nanosleep(&ts, NULL);
            }
            if (idle_pause_ms < 20) idle_pause_ms *= 2;
            continue;
        }
        idle_pause_ms = 1;
        const double t_step = moe_now();
        if (moe_engine_step(w->e, items, n_items, &err)) moe_comm_abort(c, 5, err.msg); /* malformed step: a bug */
        steps++;
        if (step_prefill == 0) { /* a decode-only step of the whole job */
            job_decode_steps++;
            job_decode_tokens += step_tokens;
            job_decode_time += moe_now() - t_step;
        }
        for (int k = 0; k < n_items; k++) {
            moe_step_item *it = &items[k];
            request *r = item_req[k];
            const bool batch = !w->link;
            if (it->status != MOE_OK) {
                finish_request(r, it->err.msg);
                if (!batch) send_seq_end(w, r, MOE__END_REASON__END_ERROR, it->err.msg);
            } else {
                if (r->fed < r->n_prompt) {
                    r->fed += it->n_tokens;
                    tok_prefill += it->n_tokens;
                    if (r->fed < r->n_prompt) continue; /* more prompt to feed */
                } else {
                    tok_decode++;
                }
                /* a row of logits: dump it, then pick the next token */
                if (r->dump && fwrite(it->out, sizeof(float), (size_t)hp->vocab, r->dump) != (size_t)hp->vocab) {
                    finish_request(r, "writing logits failed");
                } else if (r->n_gen == 0) {
                    finish_request(r, NULL);
                } else {
                    const int32_t t = moe_sampler_sample(r->smp, it->out, r->hist, r->n_hist, r->n_hist);
                    r->hist[r->n_hist++] = t;
                    r->last = t;
                    if (!batch) send_token(w, r, r->n_out, t);
                    r->n_out++;
                    const bool stop = moe_sampler_is_stop(&r->sc, t);
                    if (stop || r->n_out == r->n_gen) {
                        finish_request(r, NULL);
                        if (!batch) send_seq_end(w, r, stop ? MOE__END_REASON__END_STOP : MOE__END_REASON__END_LENGTH, NULL);
                    }
                }
            }
            if (r->done) {
                req_retire(w, r);
                if (!batch) {
                    req_free(r);
                    free(r);
                }
            }
        }
    }
    const double t_total = moe_now() - t_run;
    free(items);
    free(item_req);
    if (x && trace_fd >= 0) moe_xchg_flush_trace(x);

    /* Results to rank 0, printed in input order. */
    text mine = {0};
    for (int i = 0; i < n_req; i++) {
        const request *r = &reqs[i];
        if (r->rank != me) continue;
        tprintf(&mine, "%d", i);
        if (r->error[0]) tprintf(&mine, " error: %s", r->error);
        else if (!r->done) tprintf(&mine, " error: stopped before it finished");
        else
            for (int k = 0; k < r->n_out; k++) tprintf(&mine, " %d", r->hist[r->n_prompt + k]);
        tprintf(&mine, "\n");
    }
    char *all = moe_comm_gather_bytes(c, mine.p ? mine.p : "", (int64_t)mine.n, NULL);
    int failed_requests = 0;
    if (me == 0 && n_req > 0) {
        char **line_of = moe_xcalloc((size_t)n_req, sizeof *line_of);
        for (char *p = all, *nl; p && (nl = strchr(p, '\n')); p = nl + 1) {
            *nl = 0;
            int idx = atoi(p);
            if (idx >= 0 && idx < n_req) line_of[idx] = strchr(p, ' ') ? strchr(p, ' ') + 1 : (char *)"";
        }
        for (int i = 0; i < n_req; i++) {
            printf("%s\n", line_of[i] ? line_of[i] : "error: lost");
            failed_requests += !line_of[i] || !strncmp(line_of[i], "error:", 6);
        }
        fflush(stdout);
        free(line_of);
    }
    free(all);
    free(mine.p);

    if (o->stats) {
        text s = {0};
        moe_engine_stats es;
        moe_engine_get_stats(w->e, &es);
        int owned = 0;
        for (int i = 0; i < n_req; i++) owned += reqs[i].rank == me;
        tprintf(&s, "rank %d: sequences %d, steps %lld, prefill tokens %lld, decode tokens %lld, %.3f s, "
                    "cache bytes in use %llu, wait %.3f s\n",
                me, owned, (long long)steps, (long long)tok_prefill, (long long)tok_decode, t_total,
                (unsigned long long)es.cache_bytes_in_use, moe_comm_wait_seconds(c));
        if (me == 0)
            tprintf(&s, "job: %d ranks x %lld threads, decode-only steps %lld, %lld tokens in %.3f s = %.2f tokens/s\n", R,
                    (long long)o->threads, (long long)job_decode_steps, (long long)job_decode_tokens, job_decode_time,
                    job_decode_time > 0 ? (double)job_decode_tokens / job_decode_time : 0.0);
        tprintf(&s, "rank %d: resident expert bytes %llu of a %llu-byte share (smaps)\n", me,
                (unsigned long long)expert_resident(w->m), (unsigned long long)expert_share(w->m, pl, me));
        for (int il = hp->n_dense_lead; il < hp->n_layer; il++) {
            const moe_xchg_layer_stats *ls = moe_xchg_stats(x, il);
            tprintf(&s, "rank %d layer %d: sent %llu bytes (%llu rows), received %llu bytes (%llu rows), "
                        "compute %.6f s, exchange %.6f s, overlap %.6f s, tokens per expert",
                    me, il, (unsigned long long)ls->bytes_sent, (unsigned long long)ls->rows_sent,
                    (unsigned long long)ls->bytes_recv, (unsigned long long)ls->rows_recv, ls->t_compute,
                    ls->t_exchange, ls->t_overlap);
            for (int ex = 0; ex < hp->n_expert; ex++)
                if (ls->tokens_per_expert[ex]) tprintf(&s, " %d:%llu", ex, (unsigned long long)ls->tokens_per_expert[ex]);
            tprintf(&s, "\n");
        }
        char *ss = moe_comm_gather_bytes(c, s.p, (int64_t)s.n, NULL);
        if (me == 0) {
            fputs(ss, stderr);
            fflush(stderr);
        }
        free(ss);
        free(s.p);
    }
    rc = failed_requests ? 1 : 0;
    {
        int64_t r0 = rc, all_rc[MOE_PLACEMENT_MAX_RANKS];
        moe_comm_allgather_i64(c, &r0, 1, all_rc);
        rc = (int)all_rc[0];
    }
out:
    /* serving: sequences still here end with an error the coordinator sees */
    while (w->n_live > 0) {
        request *r = w->live[0];
        if (w->link) send_seq_end(w, r, MOE__END_REASON__END_ERROR, "the worker job is stopping");
        req_retire(w, r);
        if (w->link) {
            req_free(r);
            free(r);
        }
    }
    for (int i = 0; i < n_req; i++) req_free(&reqs[i]);
    free(reqs);
    free(w->live);
    free(w->seq_num);
    if (trace_fd >= 0) close(trace_fd);
    moe_link_close(w->link);
    moe_link_ctx_free(w->lctx);
    moe_xchg_free(x);
    moe_engine_free(w->e);
    moe_placement_free(pl);
    moe_model_free(w->m);
    moe_comm_finalize(c);
    return rc;
}
