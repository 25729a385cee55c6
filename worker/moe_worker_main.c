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
 *   <prompt> <tokens to generate> [name=value]...   (core/reqline.h: ids:1,2,3, 1,2,3 or text:...<TAB>)
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
 * heartbeats carry its free cache, and its figures for the coordinator's
 * metrics (steps and their times, cache blocks, exchange bytes, expert
 * load per MoE layer).  The job stays up (idle, sleeping in
 * a poll of its link) until SIGTERM.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "auth.h"
#include "comm.h"
#include "engine.h"
#include "gen.h"
#include "job.h"
#include "live.h"
#include "placement.h"
#include "plan.h"
#include "residency.h"
#include "source.h"
#include "tokenizer.h"
#include "exprec.h"
#include "xchg.h"

#define PREFILL_CHUNK 512 /* moe-run's default --batch: the same chunks, the same bits */

static void usage(FILE *f)
{
    fputs("usage: mpirun -np N moe-worker --model FILE.gguf (--batch FILE | --coordinator ENDPOINT) [options]\n"
          "Runs a batch of requests on an MPI job: routed experts are spread over the\n"
          "ranks, each request lives on one rank.  Prints one line per request.\n"
          "  --model FILE        GGUF model (deepseek2), mapped by every rank\n"
          "  --batch FILE        requests, one a line: 'PROMPT N [name=value]...' (docs/client.md)\n"
          "  --coordinator EP    serve: connect every rank to the coordinator's worker endpoint\n"
          "  --curve-server-key FILE  serving: the coordinator's CURVE public key, and\n"
          "  --curve-secret FILE serving: the job's secret key (mode 0600; its public key is the\n"
          "                      coordinator's --worker-key): the link is authenticated and\n"
          "                      encrypted (docs/security.md)\n"
          "  --max-seqs N        serving: sequences per rank (default 16)\n"
          "  --ctx N             serving: tokens per sequence (default min(4096, the model's))\n"
          "  --heartbeat-ms MS   serving: heartbeat period (default 500); a step expected to take half\n"
          "                      of it or more is announced to the coordinator's watchdog at once\n"
          "  --outbox-bytes B    serving: frames the coordinator has not taken wait in a queue of at\n"
          "                      most B bytes (default 64 MiB); a rank never blocks on a send.  Over\n"
          "                      half of B the whole job holds (no step, nothing lost) until the\n"
          "                      coordinator reads again; only one step's frames overflowing the other\n"
          "                      half end the rank's sequences (their tokens lost; it says hello again)\n"
          "  --coord-hwm N       serving: the link's own queue to the coordinator, in messages (default 100000)\n"
          "  --coord-sndbuf B    serving: the link's kernel send buffer (default: the system's; small in tests)\n"
          "  --placement FILE    which rank hosts which experts (default: contiguous blocks); a serving\n"
          "                      job takes a new one live (moe-coordinator's POST /admin/placement)\n"
          "  --rebalance-every N the job rebalances itself every N steps: EPLB on the (token, expert)\n"
          "                      pairs run since the last change, applied between steps on every rank\n"
          "                      at the same step; no output bit changes (docs/routing.md)\n"
          "  --rebalance-replicas K  redundant expert slots per layer for --rebalance-every (default 0;\n"
          "                      experts + K must divide by the ranks)\n"
          "  --node-limit M      RESEARCH OPTION, CHANGES THE MODEL'S ANSWER (off by default): each token's\n"
          "                      routed experts come from at most M nodes, chosen as DeepSeek-V3 chooses\n"
          "                      expert groups (a node scores the sum of its two best expert scores;\n"
          "                      the M best are kept, top-k among their experts); docs/routing.md\n"
          "  --ranks-per-node R  ranks per node for --node-limit (default 1: the units are ranks)\n"
          "  --test-placement-at STEP:FILE  TEST HOOK: rank 0 proposes FILE's placement before step STEP\n"
          "                      (steps with work, from 0), applied live as the coordinator's would be\n"
          "  --threads N         threads per rank (default 1)\n"
          "  --block-size B      latent cache tokens per block (default 16)\n"
          "  --step-tokens N     tokens per step and rank (default 1024, >= the prefill chunk)\n"
          "  --prefill-chunk N   prompt tokens per step and sequence (default 512, as moe-run --batch)\n"
          "  --ignore-eos        do not stop at the file's EOS token\n"
          "  --exact             float activations everywhere, as moe-run --exact (the default quantizes\n"
          "                      activations to int8 for quantized weights, as moe-run does); every rank\n"
          "                      must be given the same choice\n"
          "  --int8              the default (int8 activations); accepted as moe-run accepts it\n"
          "  --repack            as moe-run --repack (int8 only; every rank must be given the same choice)\n"
          "  --mtp               speculative decoding with the file's MTP block, as moe-run --mtp (the\n"
          "                      same tokens, bitwise; every rank must be given the same choice; each\n"
          "                      rank runs the MTP block's experts for its own sequences)\n"
          "  --mtp-draft K       drafts a step with --mtp, 1..4 (default 1), as moe-run's\n"
          "  --no-prefix-cache   do not share cached prompt prefixes between a rank's sequences (on by\n"
          "                      default: a prompt starts from the longest run of whole cache blocks an\n"
          "                      earlier sequence on the rank wrote for the same tokens, with the same\n"
          "                      logits bits as a cold run; docs/engine.md \"Prefix caching\")\n"
          "  --dump-logits DIR   write DIR/req<i>.logits.f32 per request (moe-run's layout), and\n"
          "                      DIR/req<i>.logprobs for a line with logprobs=N (prompt_logprobs=1\n"
          "                      adds the prompt's): 'P|T POS ID LOGPROB ID:LOGPROB...' a position\n"
          "  --replay-after K    (--batch) a sequence that has emitted K tokens is dropped and run again\n"
          "                      from prompt + those K tokens, as a restarted job replays it; its\n"
          "                      logits file then holds the replay's rows (bitwise the undisturbed ones)\n"
          "  --stats             per rank and layer: sequences, tokens per expert, bytes,\n"
          "                      compute/exchange/overlap time (to stderr)\n"
          "  --trace FILE        routing decisions: 'layer req pos home experts weights ranks'\n"
"  --record FILE       (--batch) the expert distribution recorder's file (docs/routing.md):\n"
          "                      every rank's routed rows gathered by rank 0 at the end\n"
          "  --record-mode M     stat (picks per layer x expert per window of steps, the default)\n"
          "                      or per_token (token, position, layer, experts, ranks, weights)\n"
          "  --record-window N   stat: steps a window (default 1)\n"
          "  --record-max-bytes B  rows a rank keeps (packed) before dropping (default 256 MiB)\n"
          "  --linger S          stay up S seconds after the batch (or with no --batch), idle\n"
          "  --test-xchg-delay-us US  TEST KNOB (default 0, off): every collective of the job (step\n"
          "                      header, MoE counts, dispatch, combine) completes no sooner than US\n"
          "                      microseconds after it started, to emulate link latency (deploy/rig);\n"
          "                      only delays, never changes a bit of the output\n"
          "  --help              this text\n",
          f);
}

typedef struct opts {
    const char *model, *batch, *placement, *dump, *trace, *coordinator, *curve_server_key, *curve_secret, *record;
    const char *test_placement_file;
    int64_t test_placement_at, rebalance_every, rebalance_replicas, node_limit, ranks_per_node;
    moe_exprec_mode record_mode;
    int64_t record_window, record_max;
    int64_t mtp_draft;
    int64_t threads, block, step_tokens, prefill_chunk, max_seqs, ctx, heartbeat_ms, replay_after, outbox_bytes, coord_hwm,
        coord_sndbuf, test_delay_us;
    double linger;
    bool ignore_eos, stats, exact, repack, no_prefix_cache, mtp;
} opts;

static int parse_opts(int argc, char **argv, opts *o, moe_err *err)
{
    memset(o, 0, sizeof *o);
    o->threads = 1;
    o->block = 16;
    o->step_tokens = 1024;
    o->prefill_chunk = PREFILL_CHUNK;
    o->mtp_draft = 1;
    o->max_seqs = 16;
    o->heartbeat_ms = 500;
    o->test_placement_at = -1;
    o->ranks_per_node = 1;
    o->record_mode = MOE_EXPREC_STAT;
    o->record_window = 1;
    o->record_max = (int64_t)256 << 20;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) return 1;
        if (!strcmp(f, "--ignore-eos")) { o->ignore_eos = true; continue; }
        if (!strcmp(f, "--stats")) { o->stats = true; continue; }
        if (!strcmp(f, "--exact")) { o->exact = true; continue; }
        if (!strcmp(f, "--int8")) { o->exact = false; continue; }
        if (!strcmp(f, "--repack")) { o->repack = true; continue; }
        if (!strcmp(f, "--no-prefix-cache")) { o->no_prefix_cache = true; continue; }
        if (!strcmp(f, "--mtp")) { o->mtp = true; continue; }
        if (i + 1 >= argc) return moe_err_set(err, "%s: unknown flag or missing value (see --help)", f);
        const char *v = argv[++i];
        if (!strcmp(f, "--model")) o->model = v;
        else if (!strcmp(f, "--batch")) o->batch = v;
        else if (!strcmp(f, "--placement")) o->placement = v;
        else if (!strcmp(f, "--dump-logits")) o->dump = v;
        else if (!strcmp(f, "--trace")) o->trace = v;
        else if (!strcmp(f, "--record")) o->record = v;
        else if (!strcmp(f, "--record-mode")) { if (moe_exprec_mode_parse(v, &o->record_mode, err)) return moe_err_prefix(err, "--record-mode"); }
        else if (!strcmp(f, "--record-window")) { if (moe_parse_i64(v, 1, 1 << 30, &o->record_window, err)) return moe_err_prefix(err, "--record-window"); }
        else if (!strcmp(f, "--record-max-bytes")) { if (moe_parse_i64(v, 1 << 16, (int64_t)1 << 40, &o->record_max, err)) return moe_err_prefix(err, "--record-max-bytes"); }
        else if (!strcmp(f, "--coordinator")) o->coordinator = v;
        else if (!strcmp(f, "--curve-server-key")) o->curve_server_key = v;
        else if (!strcmp(f, "--curve-secret")) o->curve_secret = v;
        else if (!strcmp(f, "--max-seqs")) { if (moe_parse_i64(v, 1, 1 << 16, &o->max_seqs, err)) return moe_err_prefix(err, "--max-seqs"); }
        else if (!strcmp(f, "--ctx")) { if (moe_parse_i64(v, 1, 1 << 24, &o->ctx, err)) return moe_err_prefix(err, "--ctx"); }
        else if (!strcmp(f, "--outbox-bytes")) { if (moe_parse_i64(v, 1024, (int64_t)1 << 40, &o->outbox_bytes, err)) return moe_err_prefix(err, "--outbox-bytes"); }
        else if (!strcmp(f, "--coord-sndbuf")) { if (moe_parse_i64(v, 0, 1 << 30, &o->coord_sndbuf, err)) return moe_err_prefix(err, "--coord-sndbuf"); }
        else if (!strcmp(f, "--coord-hwm")) { if (moe_parse_i64(v, 1, 1 << 24, &o->coord_hwm, err)) return moe_err_prefix(err, "--coord-hwm"); }
        else if (!strcmp(f, "--heartbeat-ms")) { if (moe_parse_i64(v, 10, 60000, &o->heartbeat_ms, err)) return moe_err_prefix(err, "--heartbeat-ms"); }
        else if (!strcmp(f, "--threads")) { if (moe_parse_i64(v, 1, 256, &o->threads, err)) return moe_err_prefix(err, "--threads"); }
        else if (!strcmp(f, "--block-size")) { if (moe_parse_i64(v, 1, 4096, &o->block, err)) return moe_err_prefix(err, "--block-size"); }
        else if (!strcmp(f, "--linger")) { if (moe_parse_f64(v, 0, 86400, &o->linger, err)) return moe_err_prefix(err, "--linger"); }
        else if (!strcmp(f, "--step-tokens")) { if (moe_parse_i64(v, 1, 1 << 20, &o->step_tokens, err)) return moe_err_prefix(err, "--step-tokens"); }
        else if (!strcmp(f, "--replay-after")) { if (moe_parse_i64(v, 1, 1 << 24, &o->replay_after, err)) return moe_err_prefix(err, "--replay-after"); }
        else if (!strcmp(f, "--test-xchg-delay-us")) { if (moe_parse_i64(v, 0, 1000000, &o->test_delay_us, err)) return moe_err_prefix(err, "--test-xchg-delay-us"); }
        else if (!strcmp(f, "--node-limit")) { if (moe_parse_i64(v, 1, 4096, &o->node_limit, err)) return moe_err_prefix(err, "--node-limit"); }
        else if (!strcmp(f, "--ranks-per-node")) { if (moe_parse_i64(v, 1, 4096, &o->ranks_per_node, err)) return moe_err_prefix(err, "--ranks-per-node"); }
        else if (!strcmp(f, "--rebalance-every")) { if (moe_parse_i64(v, 1, (int64_t)1 << 40, &o->rebalance_every, err)) return moe_err_prefix(err, "--rebalance-every"); }
        else if (!strcmp(f, "--rebalance-replicas")) { if (moe_parse_i64(v, 0, 1 << 20, &o->rebalance_replicas, err)) return moe_err_prefix(err, "--rebalance-replicas"); }
        else if (!strcmp(f, "--test-placement-at")) {
            const char *colon = strchr(v, ':');
            char num[32];
            if (!colon || colon == v || (size_t)(colon - v) >= sizeof num || !colon[1])
                return moe_err_set(err, "--test-placement-at: '%s' is not STEP:FILE", v);
            memcpy(num, v, (size_t)(colon - v));
            num[colon - v] = 0;
            if (moe_parse_i64(num, 0, (int64_t)1 << 40, &o->test_placement_at, err)) return moe_err_prefix(err, "--test-placement-at");
            o->test_placement_file = colon + 1;
        }
        else if (!strcmp(f, "--mtp-draft")) { if (moe_parse_i64(v, 1, MOE_GEN_MAX_DRAFT, &o->mtp_draft, err)) return moe_err_prefix(err, "--mtp-draft"); }
        else if (!strcmp(f, "--prefill-chunk")) { if (moe_parse_i64(v, 1, 1 << 20, &o->prefill_chunk, err)) return moe_err_prefix(err, "--prefill-chunk"); }
        else return moe_err_set(err, "unknown flag %s (see --help)", f);
    }
    if (!o->model) return moe_err_set(err, "--model is required (see --help)");
    if (o->batch && o->coordinator) return moe_err_set(err, "--batch and --coordinator exclude each other");
    if ((o->curve_server_key || o->curve_secret) && !o->coordinator)
        return moe_err_set(err, "--curve-server-key and --curve-secret are for --coordinator");
    if (o->mtp_draft != 1 && !o->mtp) return moe_err_set(err, "--mtp-draft needs --mtp");
    if (o->prefill_chunk > o->step_tokens)
        return moe_err_set(err, "--step-tokens %lld is smaller than the prefill chunk (%lld)", (long long)o->step_tokens,
                           (long long)o->prefill_chunk);
    if (o->record && !o->batch) return moe_err_set(err, "--record is for --batch (a coordinator records through its endpoints)");
    if (!o->batch && !o->coordinator && o->linger <= 0)
        return moe_err_set(err, "--batch or --coordinator is required (see --help)");
    return MOE_OK;
}

/* ---- the job ---------------------------------------------------------------- */

static volatile sig_atomic_t g_stop; /* SIGTERM / SIGINT: leave at the next step */
static void on_signal(int sig) { (void)sig; g_stop = 1; }

typedef struct worker {
    opts o;
    moe_comm *c;
    int me, R;
    moe_model *m;
    moe_placement *pl;
    moe_engine *e;
    moe_xchg *x;
    moe_gen *g;
    moe_source_batch *batch;   /* one of these two is the source */
    moe_source_link *link;
    moe_source src;
    moe_live *live;            /* new placements between steps */
    int trace_fd;
    moe_job_stats js;          /* kept current by the job loop */
    uint64_t *expert_tokens;   /* [MoE layers]: heartbeat figures */
} worker;

/* A status every rank agrees on: MOE_ERR on all ranks if any failed (each
 * failing rank says why; with same_inputs only rank 0 speaks, since every
 * rank would say the same). */
static int agreed(worker *w, int st, bool same_inputs, const moe_err *err)
{
    if (st && (!same_inputs || w->me == 0)) {
        if (same_inputs) fprintf(stderr, "moe-worker: %s\n", err->msg);
        else fprintf(stderr, "moe-worker: rank %d: %s\n", w->me, err->msg);
    }
    return moe_comm_agree(w->c, st) >= 0 ? MOE_ERR : MOE_OK;
}

/* The model on every rank, the placement, and the batch's requests. */
static int load(worker *w, moe_err *err)
{
    int st = moe_model_open(&w->m, w->o.model, err);
    if (st) fprintf(stderr, "moe-worker: rank %d: %s\n", w->me, err->msg);
    const int bad = moe_comm_agree(w->c, st);
    if (bad >= 0) {
        if (w->me == 0) fprintf(stderr, "moe-worker: rank %d could not load the model; stopping\n", bad);
        return MOE_ERR;
    }
    moe_residency_advise(w->m, w->R > 1);
    st = moe_plan_placement(w->m, w->R, w->o.placement, &w->pl, err);
    if (st == MOE_OK && w->R > 1) moe_residency_host(w->m, w->pl, w->me);
    if (st == MOE_OK && w->o.batch) {
        const moe_batch_opts bo = {.path = w->o.batch, .dump_dir = w->o.dump, .linger = w->o.linger,
                                    .replay_after = (int)w->o.replay_after};
        st = moe_source_batch_open(&w->batch, &bo, w->m, w->me, w->R, err);
    } else if (st == MOE_OK && !w->o.coordinator) {
        w->batch = moe_source_batch_empty(w->o.linger);
    }
    return agreed(w, st, true, err); /* same inputs on every rank */
}

/* The job's kernel set.  Ranks may run on different CPUs: each offers its
 * CPU's features capped by its own MOE_KERNELS, the ranks AND the offers and
 * all take the best set in the result, so a sequence's bits never depend
 * on the rank that holds it.  With stats, rank 0 prints every rank's line. */
static int job_kernels(worker *w, const moe_kern_set **out)
{
    moe_err err;
    const uint64_t cpu = moe_kern_cpu_features();
    uint64_t mask = 0;
    int st = moe_kern_check_env(&err);
    if (st == MOE_OK) st = moe_kern_cpu_mask(cpu, getenv("MOE_KERNELS"), &mask, &err);
    if (agreed(w, st, false, &err)) return MOE_ERR;
    *out = moe_kern_best_in(moe_comm_allreduce_and_u64(w->c, mask));
    if (w->o.stats) {
        char line[256], has[64];
        int n = snprintf(line, sizeof line, "rank %d: kernels %s (this rank offers %s; its CPU has %s)%s\n", w->me,
                         moe_kern_name(*out), moe_kern_name(moe_kern_best_in(mask)), moe_kern_list(cpu, has, sizeof has),
                         moe_kern_set_l2_prefetch(*out) ? ", L2 prefetch" : "");
        if (n >= (int)sizeof line) n = (int)sizeof line - 1;
        char *all = moe_comm_gather_bytes(w->c, line, n, NULL);
        if (w->me == 0) fputs(all, stderr);
        free(all);
    }
    return MOE_OK;
}

_Static_assert(MOE_GEN_MAX_DRAFT == sizeof(((moe_link_stats *)0)->spec_accepted_at) / sizeof(uint64_t),
               "one accepted count per draft position");
static void fill_link_stats(void *ctx, moe_link_stats *st);

/* Collective: whether every rank was given the same value of a choice
 * (a flag one rank alone took would give its sequences other bits). */
static bool same_choice(worker *w, bool mine)
{
    const uint64_t all = moe_comm_allreduce_and_u64(w->c, mine ? 1u : 2u);
    return all == 1u || all == 2u;
}

/* The engine sized for the batch's own requests or the serving flags, the
 * expert exchange, the generate loop and its source. */
static int setup(worker *w, moe_engine_moe_hook *hook, moe_err *err)
{
    const opts *o = &w->o;
    const moe_hparams *hp = &w->m->hp;
    int max_seqs = 1;
    int64_t max_len = 1, cache_tokens = 0;
    if (o->coordinator) {
        /* the sizes moe-gguf --plan accounts for */
        moe_plan_opts po;
        moe_plan_opts_default(&po);
        po.ctx = o->ctx;
        po.max_seqs = (int)o->max_seqs;
        po.block_size = (int)o->block;
        po.step_tokens = (int)o->step_tokens;
        po.threads = (int)o->threads;
        po.exact = o->exact;
        moe_engine_opts pe;
        moe_plan_engine_opts(hp, &po, &pe);
        max_seqs = pe.max_seqs;
        max_len = pe.max_ctx;
        cache_tokens = pe.cache_tokens;
    } else {
        moe_source_batch_sizes(w->batch, (int)o->block, &max_seqs, &max_len, &cache_tokens);
        if (max_seqs < 1) max_seqs = 1;
    }
    moe_engine_opts eo;
    moe_engine_opts_default(&eo);
    if (job_kernels(w, &eo.kernels)) return MOE_ERR;
    eo.n_threads = (int)o->threads;
    eo.act_q8 = !o->exact;
    if (!same_choice(w, eo.act_q8)) return moe_err_set(err, "the ranks were not all given the same --exact choice");
    eo.repack = o->repack;
    if (!same_choice(w, eo.repack)) return moe_err_set(err, "the ranks were not all given the same --repack choice");
    eo.mtp = o->mtp;
    if (!same_choice(w, eo.mtp)) return moe_err_set(err, "the ranks were not all given the same --mtp choice");
    /* after the agreements, so every rank takes this branch or none */
    if (eo.repack && !eo.act_q8) return moe_err_set(err, "--repack is for the int8 path; --exact reads the file's layout");
    const double spin = moe_comm_set_spin(w->c, (int)o->threads);
    if (o->stats && w->me == 0)
        fprintf(stderr, "exchange waits poll %.0f us before sleeping (%s)\n", spin * 1e6,
                spin > 1e-3 ? "every rank of a node has its cores" : "the node's ranks share cores");
    eo.block_size = (int)o->block;
    eo.max_ctx = max_len;
    eo.max_seqs = max_seqs;
    eo.cache_tokens = cache_tokens > 0 ? cache_tokens : max_len;
    eo.max_batch_tokens = (int)o->step_tokens;
    /* the engine reads the hook through this pointer at every step, so it
     * can be filled in once the exchange (which needs the engine) exists */
    eo.moe_hook = hook;
    int st = moe_engine_init(&w->e, w->m, &eo, err);
    if (st == MOE_OK && o->stats && eo.repack && w->me == 0) {
        int n_rp;
        uint64_t rp_bytes;
        moe_engine_repacked(w->e, &n_rp, &rp_bytes);
        fprintf(stderr, "repacked: %d matrices, %.1f MiB on every rank (--repack)\n", n_rp, (double)rp_bytes / 1048576.0);
    }
    if (st == MOE_OK) st = moe_xchg_init(&w->x, w->c, w->e, w->pl, err);
    if (st == MOE_OK) moe_xchg_hook(w->x, hook);
    if (st == MOE_OK && o->coordinator) {
        moe_link_curve curve;
        bool curve_on = false;
        st = moe_auth_client_curve(&curve, &curve_on, o->curve_server_key, o->curve_secret, err);
        const moe_link_src_opts lo = {.endpoint = o->coordinator, .heartbeat_ms = (int)o->heartbeat_ms,
                                      .max_seqs = max_seqs, .max_ctx = max_len, .kernels = moe_kern_name(eo.kernels),
                                      .outbox_bytes = o->outbox_bytes, .sndhwm = (int)o->coord_hwm,
                                      .sndbuf = (int)o->coord_sndbuf, .curve = curve_on ? &curve : NULL};
        if (st == MOE_OK) st = moe_source_link_open(&w->link, &lo, w->m, w->me, w->R, err);
        if (st == MOE_OK) moe_xchg_set_tick(w->x, moe_source_link_tick, w->link);
    }
    if (st == MOE_OK) {
        const moe_live_opts lvo = {.test_at_step = o->test_placement_at, .test_file = o->test_placement_file,
                                   .rebalance_every = o->rebalance_every, .rebalance_replicas = (int)o->rebalance_replicas,
                                   .node_limit = (int)o->node_limit, .ranks_per_node = (int)o->ranks_per_node};
        st = moe_live_init(&w->live, &lvo, w->c, w->m, w->e, w->x, &w->pl, err);
    }
    if (st == MOE_OK && w->link) moe_source_link_set_live(w->link, w->live);
    if (st) return MOE_ERR;
    w->src = w->link ? moe_source_link_source(w->link) : moe_source_batch_source(w->batch);
    int32_t eos = -1;
    if (!o->ignore_eos && moe_tokenizer_eos_from_gguf(w->m->gguf, hp->vocab, &eos, err))
        return moe_err_prefix(err, "%s", o->model);
    const moe_gen_opts go = {.max_seqs = max_seqs, .max_ctx = max_len, .step_tokens = (int)o->step_tokens,
                             .prefill_chunk = (int)o->prefill_chunk, .eos = eos,
                             .prefix_cache = !o->no_prefix_cache, .mtp = o->mtp, .mtp_draft = (int)o->mtp_draft};
    const moe_gen_cb cb = moe_source_gen_cb(&w->src);
    if (moe_gen_init(&w->g, w->e, &go, &cb, err)) return MOE_ERR;
    if (w->link) {
        moe_source_link_attach(w->link, w->g);
        w->expert_tokens = moe_xcalloc((size_t)(hp->n_layer - hp->n_dense_lead), sizeof *w->expert_tokens);
        moe_source_link_set_stats(w->link, fill_link_stats, w);
        moe_source_link_set_record(w->link, w->x, (size_t)o->record_max);
    }
    return w->batch ? moe_source_batch_start(w->batch, w->g, err) : MOE_OK;
}

/* The rank's figures for its heartbeats (the coordinator's metrics). */
static void fill_link_stats(void *ctx, moe_link_stats *st)
{
    worker *w = ctx;
    const moe_hparams *hp = &w->m->hp;
    const moe_kvcache *kv = moe_engine_cache(w->e);
    st->job = &w->js;
    st->cache_blocks_total = moe_kvcache_blocks_total(kv);
    st->cache_blocks_used = st->cache_blocks_total - moe_kvcache_blocks_free(kv);
    st->cache_block_tokens = moe_kvcache_block_tokens(kv);
    int64_t idle;
    moe_kvcache_prefix_stats(kv, &st->prefix_queries, &st->prefix_hits, &idle);
    moe_gen_mtp_stats(w->g, &st->spec_drafts, &st->spec_accepted);
    st->n_spec_pos = w->o.mtp ? (int)w->o.mtp_draft : 0;
    for (int i = 0; i < st->n_spec_pos; i++) st->spec_accepted_at[i] = moe_gen_mtp_accepted_at(w->g, i);
    st->first_moe_layer = hp->n_dense_lead;
    st->n_moe_layers = hp->n_layer - hp->n_dense_lead;
    for (int il = hp->n_dense_lead; il < hp->n_layer; il++) {
        const moe_xchg_layer_stats *ls = moe_xchg_stats(w->x, il);
        st->xchg_bytes_sent += ls->bytes_sent;
        st->xchg_bytes_recv += ls->bytes_recv;
        uint64_t n = 0;
        for (int ex = 0; ex < hp->n_expert; ex++) n += ls->tokens_per_expert[ex];
        w->expert_tokens[il - hp->n_dense_lead] = n;
    }
    st->expert_tokens = w->expert_tokens;
}

/* --trace FILE: rank 0 creates it, then every rank appends. */
static int open_trace(worker *w, moe_err *err)
{
    int st = MOE_OK;
    if (w->me == 0) {
        w->trace_fd = open(w->o.trace, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        if (w->trace_fd < 0) st = moe_err_set(err, "%s: %s", w->o.trace, strerror(errno));
    }
    if (agreed(w, st, false, err)) return MOE_ERR;
    if (w->me != 0) w->trace_fd = open(w->o.trace, O_WRONLY | O_APPEND | O_CLOEXEC);
    st = w->trace_fd < 0 ? moe_err_set(err, "%s: %s", w->o.trace, strerror(errno)) : MOE_OK;
    if (agreed(w, st, false, err)) return MOE_ERR;
    moe_xchg_set_trace(w->x, w->trace_fd, moe_gen_seq_ids(w->g));
    return MOE_OK;
}

static int32_t token_at(void *ctx, int seq, int64_t pos) { return moe_gen_token_at(ctx, seq, pos); }

/* --record FILE: every rank's rows to rank 0, which writes the file.  Every
 * rank reaches the gather; rank 0 alone may fail (its message, exit 1). */
static int write_record(worker *w, moe_err *err)
{
    size_t n;
    uint64_t dropped;
    const uint8_t *rows = moe_xchg_record_take(w->x, &n, &dropped);
    const moe_hparams *hp = &w->m->hp;
    const size_t rb = MOE_EXPREC_ROW_BYTES(hp->n_used);
    int64_t *lens = NULL;
    char *all = moe_comm_gather_bytes(w->c, rows, (int64_t)(n * rb), &lens);
    int st = MOE_OK;
    if (w->me == 0) {
        int64_t total = 0;
        for (int r = 0; r < w->R; r++) total += lens[r];
        const moe_exprec_shape sh = {.layers = hp->n_layer - hp->n_dense_lead, .first_layer = hp->n_dense_lead,
                                     .experts = hp->n_expert, .top_k = hp->n_used, .ranks = w->R};
        moe_exprec *r = NULL;
        st = moe_exprec_init(&r, w->o.record_mode, &sh, (int)w->o.record_window, (size_t)1 << 40, err);
        if (st == MOE_OK) st = moe_exprec_add(r, (const uint8_t *)all, (size_t)total / rb, err);
        if (st == MOE_OK) st = moe_exprec_write(r, w->o.record, err);
        moe_exprec_totals t = {0};
        if (r) moe_exprec_totals_get(r, &t);
        if (st == MOE_OK)
            fprintf(stderr, "moe-worker: recorded %llu rows (%s, %llu records) to %s%s\n", (unsigned long long)t.rows,
                    moe_exprec_mode_name(w->o.record_mode), (unsigned long long)t.records, w->o.record,
                    dropped ? " (rank 0 dropped rows over --record-max-bytes)" : "");
        moe_exprec_free(r);
    }
    free(all);
    free(lens);
    return st;
}

/* --stats: per rank and layer, gathered and printed by rank 0. */
static void print_stats(worker *w, const moe_job_stats *js)
{
    const moe_hparams *hp = &w->m->hp;
    moe_engine_stats es;
    moe_engine_get_stats(w->e, &es);
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f) moe_comm_abort(w->c, 6, "open_memstream failed"); /* out of memory; every rank must reach the gather */
    fprintf(f, "rank %d: sequences %d, steps %lld, prefill tokens %lld, decode tokens %lld, %.3f s, "
               "cache bytes in use %llu, wait %.3f s\n",
            w->me, w->batch ? moe_source_batch_owned(w->batch) : 0, (long long)js->steps, (long long)js->tok_prefill,
            (long long)js->tok_decode, js->seconds, (unsigned long long)es.cache_bytes_in_use, moe_comm_wait_seconds(w->c));
    if (w->me == 0)
        fprintf(f, "job: %d ranks x %lld threads, decode-only steps %lld, %lld tokens in %.3f s = %.2f tokens/s\n", w->R,
                (long long)w->o.threads, (long long)js->decode_steps, (long long)js->decode_tokens, js->decode_seconds,
                js->decode_seconds > 0 ? (double)js->decode_tokens / js->decode_seconds : 0.0);
    uint64_t pq, ph;
    int64_t idle;
    moe_kvcache_prefix_stats(moe_engine_cache(w->e), &pq, &ph, &idle);
    fprintf(f, "rank %d: prefix cache: %llu prompt tokens queried, %llu hit, %lld idle blocks kept\n", w->me,
            (unsigned long long)pq, (unsigned long long)ph, (long long)idle);
    if (w->o.mtp) {
        uint64_t nd, na;
        moe_gen_mtp_stats(w->g, &nd, &na);
        fprintf(f, "rank %d: mtp: %llu drafts, %llu accepted (by position:", w->me, (unsigned long long)nd,
                (unsigned long long)na);
        for (int i = 0; i < (int)w->o.mtp_draft; i++) fprintf(f, " %llu", (unsigned long long)moe_gen_mtp_accepted_at(w->g, i));
        fprintf(f, ")\n");
    }
    fprintf(f, "rank %d: resident expert bytes %llu of a %llu-byte share (smaps)\n", w->me,
            (unsigned long long)moe_residency_resident(w->m),
            (unsigned long long)moe_residency_share(w->m, w->pl, w->me));
    for (int il = hp->n_dense_lead; il < hp->n_layer; il++) {
        const moe_xchg_layer_stats *ls = moe_xchg_stats(w->x, il);
        fprintf(f, "rank %d layer %d: sent %llu bytes (%llu rows), received %llu bytes (%llu rows), "
                   "compute %.6f s, exchange %.6f s, overlap %.6f s, tokens per expert",
                w->me, il, (unsigned long long)ls->bytes_sent, (unsigned long long)ls->rows_sent,
                (unsigned long long)ls->bytes_recv, (unsigned long long)ls->rows_recv, ls->t_compute, ls->t_exchange,
                ls->t_overlap);
        for (int ex = 0; ex < hp->n_expert; ex++)
            if (ls->tokens_per_expert[ex]) fprintf(f, " %d:%llu", ex, (unsigned long long)ls->tokens_per_expert[ex]);
        fprintf(f, "\n");
    }
    fclose(f);
    char *all = moe_comm_gather_bytes(w->c, s, (int64_t)n, NULL);
    if (w->me == 0) {
        fputs(all, stderr);
        fflush(stderr);
    }
    free(all);
    free(s);
}

static void worker_free(worker *w)
{
    moe_source_link_close(w->link, w->g); /* live sequences end with an error the coordinator sees */
    moe_gen_free(w->g);
    moe_source_batch_free(w->batch);
    moe_source_link_free(w->link);
    if (w->trace_fd >= 0) close(w->trace_fd);
    moe_live_free(w->live);
    moe_xchg_free(w->x);
    moe_engine_free(w->e);
    moe_placement_free(w->pl);
    moe_model_free(w->m);
    free(w->expert_tokens);
}

int main(int argc, char **argv)
{
    moe_comm *c;
    moe_err err = {{0}};
    if (moe_comm_init(&c, "moe-worker", &argc, &argv, &err)) {
        fprintf(stderr, "moe-worker: %s\n", err.msg);
        return 1;
    }
    worker W = {.c = c, .me = moe_comm_rank(c), .R = moe_comm_size(c), .trace_fd = -1}, *w = &W;
    const int prc = parse_opts(argc, argv, &w->o, &err);
    if (prc != MOE_OK) { /* the same on every rank: no agreement needed */
        if (w->me == 0) {
            if (prc > 0) usage(stdout);
            else fprintf(stderr, "moe-worker: %s\n", err.msg);
        }
        moe_comm_finalize(c);
        return prc > 0 ? 0 : 2;
    }
    if (w->o.test_delay_us > 0) {
        moe_comm_set_test_delay_us(c, w->o.test_delay_us);
        if (w->me == 0)
            fprintf(stderr, "moe-worker: test knob: every collective held %lld us (--test-xchg-delay-us)\n",
                    (long long)w->o.test_delay_us);
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* If the launcher (mpirun, its daemon, srun) dies, a serving rank must
     * not idle on forever: its death becomes our SIGTERM. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);

    int rc = 1;
    moe_engine_moe_hook hook = {0};
    if (load(w, &err) || agreed(w, setup(w, &hook, &err), false, &err) || (w->o.trace && open_trace(w, &err)))
        goto out;
    if (w->o.record) moe_xchg_set_record(w->x, true, token_at, w->g, (size_t)w->o.record_max);
    if (w->me == 0 && w->o.coordinator) {
        fprintf(stderr, "moe-worker: ready: %d ranks serving %s for %s\n", w->R, w->o.model, w->o.coordinator);
        fflush(stderr);
    }
    moe_job_stats *js = &w->js;
    /* a step's first expected cost: the weights a token reads at 1 GB/s, far
     * slower than a core computes them, so the first long step errs long */
    const moe_job_ctl ctl = moe_live_ctl(w->live);
    moe_job_run(c, w->g, &w->src, &ctl, &g_stop, (double)moe_model_bytes_per_token(w->m) / 1e9, js);
    if (w->trace_fd >= 0) moe_xchg_flush_trace(w->x);
    const int failed = w->batch ? moe_source_batch_report(w->batch, c) : 0;
    if (w->o.stats) print_stats(w, js);
    rc = failed ? 1 : 0;
    if (w->o.record && write_record(w, &err)) {
        fprintf(stderr, "moe-worker: --record: %s\n", err.msg);
        rc = 1;
    }
out:
    worker_free(w);
    moe_comm_finalize(c);
    return rc;
}
