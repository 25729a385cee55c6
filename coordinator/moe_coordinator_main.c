/*
 * moe-coordinator — takes requests from clients, tokenizes and validates
 * them, queues them (bounded), places each on the worker rank with the most
 * free cache, and streams the tokens back as the ranks sample them.
 *
 *   moe-coordinator --model FILE.gguf --listen EP --workers EP --ranks N
 *
 * Clients come over ZMQ (--listen, moe-client) and/or HTTP (--http, the
 * OpenAI API, front_http.h).  Two ROUTER links: clients connect to --listen, the ranks of the worker
 * job (moe-worker --coordinator) to --workers.  Nothing is silently dropped
 * (ROUTER_MANDATORY); a client that reads slowly gets back-pressure: its
 * tokens wait here (the scheduler keeps every emitted token) until it can
 * take them.  Liveness is heartbeats both ways: a client that stops sending
 * them has its sequences released; a rank that stops sending them has its
 * requests end with a clear error — or, when the coordinator runs the job
 * itself (--launch, supervisor.h), the job is killed and started again and
 * those requests are replayed, bit for bit.  SIGTERM drains: no new work, requests
 * in flight finish, then exit 0.
 *
 * Operators: one log line per finished request (--log-format json for one
 * JSON object a line), and the metrics (docs/metrics.md) written to
 * --metrics-file at exit and on SIGUSR1 (the HTTP front end serves the same
 * text at GET /metrics).
 *
 * This file parses the flags and wires the parts together: the loop
 * (coord.h), which owns the model, the scheduler and the worker side
 * (workers.h), and the client front ends (front_zmq.h, front_http.h).
 */
#include <malloc.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coord.h"
#include "keyfile.h"
#include "front_http.h"
#include "front_zmq.h"
#include "msg.h"

static void usage(FILE *f)
{
    fputs("usage: moe-coordinator --model FILE.gguf [options]\n"
          "Serves a worker job (moe-worker --coordinator) to clients (moe-client).\n"
          "  --model FILE           the GGUF the workers run (for its tokenizer and limits)\n"
          "  --listen EP            ZMQ client endpoint (default tcp://127.0.0.1:5555; none: no ZMQ clients)\n"
          "  --http HOST:PORT       also serve the OpenAI-compatible HTTP API there (PORT 0: any free port,\n"
          "                         printed in the ready line); see docs/http.md.  POST /admin/placement\n"
          "                         with a placement file's text moves experts between the worker job's\n"
          "                         ranks while it serves (GET: the outcome; docs/routing.md)\n"
          "  --api-key KEY          HTTP clients must send Authorization: Bearer KEY (/v1, /tokenize, /detokenize,\n"
          "                         /admin/placement)\n"
          "  --max-body BYTES       largest HTTP request body (default 1 MiB; 413 above)\n"
          "  --tls-cert FILE        serve HTTPS: the certificate (chain) in PEM, with\n"
          "  --tls-key FILE         its private key in PEM (mode 0600: refused if group or others may read it)\n"
          "  --workers EP           worker endpoint (default tcp://127.0.0.1:5556).  Anyone who reaches it can\n"
          "                         act as a rank: one that is not loopback (127.0.0.0/8, ::1, localhost) or\n"
          "                         ipc:// needs --worker-key (or --insecure)\n"
          "CURVE (docs/security.md; keys from moe-keygen):\n"
          "  --curve-secret FILE    the coordinator's secret key (mode 0600); its public key goes to the\n"
          "                         clients' and workers' --curve-server-key\n"
          "  --client-keys FILE|DIR the client endpoint is CURVE and admits only these public keys (a file of\n"
          "                         one Z85 key a line, or a directory of NAME.key files); others never connect\n"
          "  --worker-key FILE      the worker endpoint is CURVE and admits only this key (the job's public key;\n"
          "                         every rank runs with the matching --curve-secret)\n"
          "  --insecure             allow a non-loopback worker endpoint without --worker-key: anyone who can\n"
          "                         reach it can take a rank's place and read prompts.  Not for real networks.\n"
          "  --ranks N              ranks in the worker job (default 1); ready when all said hello\n"
          "  --queue N              queued requests before new ones are refused (default 256)\n"
          "  --max-running N        sequences per rank (default 16; the worker's --max-seqs)\n"
          "  --prefix-slack N       prefix-aware placement: a request goes to the rank its prompt's longest\n"
          "                         prefix (16-token pieces) was last sent to, where it likely sits in the\n"
          "                         rank's prefix cache, if that rank can take it and runs at most N more\n"
          "                         sequences than the least busy rank that could (default 2; -1: off)\n"
          "  --prefix-cache-scope S shared (default: any request may reuse any earlier prompt's cached\n"
          "                         prefix on its rank, as vLLM does; a client can then learn from\n"
          "                         cached_tokens and timing whether another sent a prefix it guesses)\n"
          "                         or client: only a client's own (its CURVE key, else its address).\n"
          "                         A request's cache_salt narrows either further (docs/security.md)\n"
          "  --max-tokens N         default max_tokens of a request (default 256)\n"
          "  --max-frame BYTES      largest request frame (default 1 MiB)\n"
          "  --client-hwm N         messages queued to one client before it gets back-pressure (default 1000)\n"
          "  Per client (a CURVE key, else a peer address, HTTP: its address; never a ZMQ routing id), refused\n"
          "  with QUEUE_FULL (HTTP 429) past a limit; see docs/limits.md:\n"
          "  --client-in-flight N   requests of one client not yet over (default 64; 0: no limit)\n"
          "  --client-queue N       its share of the queue (default a quarter of --queue; 0: the whole queue);\n"
          "                         queued requests are placed round robin across clients\n"
          "  --client-prompt-bps B  prompt bytes a second (default 4 MiB; bursts up to the larger of B and\n"
          "                         --max-frame; 0: no limit)\n"
          "  --prompt-inline-bytes B  prompts this large or larger are tokenized off the loop (default 16384)\n"
          "  --prompt-threads N     threads that tokenize them (default 2)\n"
          "  --client-sndbuf BYTES  kernel send buffer of the client socket (default: the system's)\n"
          "  --client-timeout-ms MS release a client's sequences after this silence (default 10000)\n"
          "  --worker-timeout-ms MS a rank silent this long is lost (default 5000); ranks send heartbeats\n"
          "                         between steps and MoE layers, so with --launch this is also the step\n"
          "                         watchdog.  A rank announces a step it expects to take E ms (from the\n"
          "                         steps it timed); during it the rank may be silent max(MS, min(4 E,\n"
          "                         --max-step-ms)): a stopped or stuck rank is lost within that (+ 50 ms)\n"
          "  --max-step-ms MS       the longest silence an announced step may get (default 300000)\n"
          "  --worker-outbox-bytes B  frames a rank's socket does not take at once wait for it, at most B\n"
          "                         bytes (default 64 MiB); a rank that lets more pile up has stopped reading\n"
          "                         and is lost (with --launch: its job is restarted)\n"
          "  --worker-hwm N         the worker socket's queue per rank, in messages (default 1000)\n"
          "  --worker-sndbuf BYTES  kernel send buffer of the worker socket (default: the system's; small in tests)\n"
          "  --launch CMD...        run the worker job: CMD and every argument after it (so --launch comes\n"
          "                         last; {workers} in an argument becomes the workers endpoint).  The job is\n"
          "                         restarted when it dies (launcher exit, a rank silent for --worker-timeout-ms:\n"
          "                         dead, stopped or stuck in a step), every process of it killed first; the\n"
          "                         requests it held are replayed, bit for bit.  --launch auto [FLAGS...]: mpirun\n"
          "                         --bind-to none -np RANKS moe-worker --model MODEL --coordinator {workers}\n"
          "                         FLAGS (moe-worker's own, e.g. --exact for float activations, --threads 2)\n"
          "  --max-start-failures N with --launch: stop restarting after N deaths in a row before the job was\n"
          "                         ready (default 5; /health and the log say why)\n"
          "  --restart-backoff-ms MS with --launch: the first restart's delay (default 500; doubles per death\n"
          "                         before ready, up to 16x)\n"
          "  --start-timeout-ms MS  with --launch: a job not ready after this long is dead (default 120000); once\n"
          "                         a job was ready, a restart after 4x the time the first took (at least 30 s)\n"
          "  --job-file PATH        with --launch (give it before --launch): where the live job is recorded.  A\n"
          "                         coordinator killed before it could stop its job leaves the job running; the\n"
          "                         next one with the same file and command adopts it (its ranks rejoin, no\n"
          "                         second job).  Refused while the coordinator that wrote it still runs.\n"
          "                         Default: $XDG_RUNTIME_DIR (else /tmp)/moe-job-UID-HASH of --workers; none: off\n"
          "  --no-ranks-timeout-ms MS  a request waits at most this long while no worker rank is alive\n"
          "                         (none joined yet, or refused) and no --launch job is coming; then it ends\n"
          "                         with NOT_READY (default 30000)\n"
          "  --drain-timeout-ms MS  SIGTERM drains: requests still in flight after this end with\n"
          "                         SHUTTING_DOWN (default 60000); a second SIGTERM/SIGINT stops at once\n"
          "  --log-format FMT       text (default) or json: one JSON object per log line\n"
          "  --metrics-file PATH    write the metrics (Prometheus text) to PATH at exit and on SIGUSR1\n"
          "  --record-dir DIR       where POST /dump_expert_distribution_record writes (default /tmp)\n"
          "  --record-mode M        the recorder's default mode: stat (default) or per_token\n"
          "  --record-window N      stat: steps a window (default 1)\n"
          "  --record-max-bytes B   what one recording keeps (rows or windows; default 256 MiB)\n"
          "  --help                 this text\n",
          f);
}

typedef struct opts {
    const char *model, *listen, *workers, *metrics_file, *http, *api_key, *job_file, *record_dir;
    moe_exprec_mode record_mode;
    int64_t record_window, record_max_bytes;
    const char *curve_secret, *client_keys, *worker_key, *tls_cert, *tls_key;
    bool insecure;
    moe_log_format log_format;
    bool prefix_per_client;
    char **launch;            /* --launch: NULL-terminated (argv's tail, or the default command) */
    int64_t max_start_failures, restart_backoff_ms, start_timeout_ms;
    int64_t max_body, ranks, queue, max_running, prefix_slack, max_tokens, max_frame, client_timeout_ms, worker_timeout_ms, client_hwm, client_sndbuf;
    int64_t max_step_ms;
    int64_t no_ranks_timeout_ms, drain_timeout_ms, worker_outbox_bytes, worker_hwm, worker_sndbuf;
    int64_t client_in_flight, client_queue, client_prompt_bps, prompt_inline_bytes, prompt_threads;
} opts;

static char **default_launch(const opts *o, char **tail);
static bool endpoint_local(const char *ep);
static const char *default_job_file(const char *workers);

static int parse_opts(int argc, char **argv, opts *o, moe_err *err)
{
    memset(o, 0, sizeof *o);
    o->listen = "tcp://127.0.0.1:5555";
    o->workers = "tcp://127.0.0.1:5556";
    o->ranks = 1;
    o->queue = 256;
    o->max_running = 16;
    o->prefix_slack = 2;
    o->max_tokens = 256;
    o->max_frame = MOE_MSG_MAX_FRAME_DEFAULT;
    o->client_timeout_ms = 10000;
    o->worker_timeout_ms = 5000;
    o->max_step_ms = 300000;
    o->no_ranks_timeout_ms = 30000;
    o->drain_timeout_ms = 60000;
    o->client_hwm = 1000;
    o->worker_outbox_bytes = (int64_t)64 << 20;
    o->worker_hwm = 1000;
    o->max_body = 1 << 20;
    o->max_start_failures = 5;
    o->restart_backoff_ms = 500;
    o->start_timeout_ms = 120000;
    o->client_in_flight = 64;
    o->client_queue = -1; /* a quarter of --queue, once it is known */
    o->client_prompt_bps = 4 << 20;
    o->prompt_inline_bytes = 16384;
    o->prompt_threads = 2;
    o->record_dir = "/tmp";
    o->record_mode = MOE_EXPREC_STAT;
    o->record_window = 1;
    o->record_max_bytes = (int64_t)256 << 20;
    static const struct { const char *flag; size_t off; int64_t lo, hi; } ints[] = {
        {"--ranks", offsetof(opts, ranks), 1, 4096},
        {"--record-window", offsetof(opts, record_window), 1, 1 << 30},
        {"--record-max-bytes", offsetof(opts, record_max_bytes), 1 << 16, (int64_t)1 << 40},
        {"--queue", offsetof(opts, queue), 1, 1 << 20},
        {"--max-running", offsetof(opts, max_running), 1, 1 << 16},
        {"--prefix-slack", offsetof(opts, prefix_slack), -1, 1 << 16},
        {"--max-tokens", offsetof(opts, max_tokens), 1, 1 << 20},
        {"--max-frame", offsetof(opts, max_frame), 4096, 1 << 28},
        {"--client-timeout-ms", offsetof(opts, client_timeout_ms), 100, 86400000},
        {"--worker-timeout-ms", offsetof(opts, worker_timeout_ms), 100, 86400000},
        {"--max-step-ms", offsetof(opts, max_step_ms), 0, 86400000},
        {"--no-ranks-timeout-ms", offsetof(opts, no_ranks_timeout_ms), 1, 86400000},
        {"--drain-timeout-ms", offsetof(opts, drain_timeout_ms), 0, 86400000},
        {"--client-hwm", offsetof(opts, client_hwm), 1, 1 << 20},
        {"--client-sndbuf", offsetof(opts, client_sndbuf), 0, 1 << 30},
        {"--worker-outbox-bytes", offsetof(opts, worker_outbox_bytes), 1024, (int64_t)1 << 40},
        {"--worker-hwm", offsetof(opts, worker_hwm), 1, 1 << 20},
        {"--worker-sndbuf", offsetof(opts, worker_sndbuf), 0, 1 << 30},
        {"--max-body", offsetof(opts, max_body), 1, 1 << 30},
        {"--max-start-failures", offsetof(opts, max_start_failures), 1, 1000},
        {"--restart-backoff-ms", offsetof(opts, restart_backoff_ms), 10, 3600000},
        {"--start-timeout-ms", offsetof(opts, start_timeout_ms), 100, 86400000},
        {"--client-in-flight", offsetof(opts, client_in_flight), 0, 1 << 20},
        {"--client-queue", offsetof(opts, client_queue), 0, 1 << 20},
        {"--client-prompt-bps", offsetof(opts, client_prompt_bps), 0, (int64_t)1 << 40},
        {"--prompt-inline-bytes", offsetof(opts, prompt_inline_bytes), 0, (int64_t)1 << 30},
        {"--prompt-threads", offsetof(opts, prompt_threads), 1, 16},
    };
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) return 1;
        if (!strcmp(f, "--insecure")) {
            o->insecure = true;
            continue;
        }
        if (!strcmp(f, "--launch")) {
            if (i + 1 >= argc) return moe_err_set(err, "--launch: no command (or auto)");
            o->launch = argv + i + 1; /* argv[argc] is NULL */
            break;
        }
        if (i + 1 >= argc) return moe_err_set(err, "%s: unknown flag or missing value (see --help)", f);
        const char *v = argv[++i];
        bool done = false;
        for (size_t k = 0; k < sizeof ints / sizeof ints[0] && !done; k++) {
            if (strcmp(f, ints[k].flag)) continue;
            if (moe_parse_i64(v, ints[k].lo, ints[k].hi, (int64_t *)((char *)o + ints[k].off), err))
                return moe_err_prefix(err, "%s", f);
            done = true;
        }
        if (done) continue;
        if (!strcmp(f, "--model")) o->model = v;
        else if (!strcmp(f, "--listen")) o->listen = v;
        else if (!strcmp(f, "--workers")) o->workers = v;
        else if (!strcmp(f, "--metrics-file")) o->metrics_file = v;
        else if (!strcmp(f, "--record-dir")) o->record_dir = v;
        else if (!strcmp(f, "--record-mode")) {
            if (moe_exprec_mode_parse(v, &o->record_mode, err)) return moe_err_prefix(err, "--record-mode");
        }
        else if (!strcmp(f, "--prefix-cache-scope")) {
            if (!strcmp(v, "shared")) o->prefix_per_client = false;
            else if (!strcmp(v, "client")) o->prefix_per_client = true;
            else return moe_err_set(err, "--prefix-cache-scope: '%s' is neither shared nor client", v);
        }
        else if (!strcmp(f, "--log-format")) {
            if (!strcmp(v, "text")) o->log_format = MOE_LOG_TEXT;
            else if (!strcmp(v, "json")) o->log_format = MOE_LOG_JSON;
            else return moe_err_set(err, "--log-format: '%s' is neither text nor json", v);
        }
        else if (!strcmp(f, "--http")) o->http = v;
        else if (!strcmp(f, "--api-key")) o->api_key = v;
        else if (!strcmp(f, "--job-file")) o->job_file = v;
        else if (!strcmp(f, "--curve-secret")) o->curve_secret = v;
        else if (!strcmp(f, "--client-keys")) o->client_keys = v;
        else if (!strcmp(f, "--worker-key")) o->worker_key = v;
        else if (!strcmp(f, "--tls-cert")) o->tls_cert = v;
        else if (!strcmp(f, "--tls-key")) o->tls_key = v;
        else return moe_err_set(err, "unknown flag %s (see --help)", f);
    }
    if (!o->model) return moe_err_set(err, "--model is required (see --help)");
    if (o->launch && !strcmp(o->launch[0], "auto")) o->launch = default_launch(o, o->launch + 1);
    if (o->job_file && !o->launch) return moe_err_set(err, "--job-file is for --launch");
    if (o->job_file && (!o->job_file[0] || !strcmp(o->job_file, "none"))) o->job_file = NULL;
    else if (o->launch && !o->job_file) o->job_file = default_job_file(o->workers);
    if (!strcmp(o->listen, "none")) o->listen = NULL;
    if (!o->listen && !o->http) return moe_err_set(err, "--listen none needs --http (no client could connect)");
    if (o->api_key && !o->http) return moe_err_set(err, "--api-key is for --http");
    if (o->api_key && !o->api_key[0]) return moe_err_set(err, "--api-key: empty key");
    if ((o->tls_cert || o->tls_key) && !o->http) return moe_err_set(err, "--tls-cert and --tls-key are for --http");
    if (!o->tls_cert != !o->tls_key) return moe_err_set(err, "--tls-cert and --tls-key go together");
    if ((o->client_keys || o->worker_key) && !o->curve_secret)
        return moe_err_set(err, "--client-keys and --worker-key need --curve-secret (the coordinator's secret key)");
    if (o->curve_secret && !o->client_keys && !o->worker_key)
        return moe_err_set(err, "--curve-secret without --client-keys or --worker-key protects nothing");
    if (o->client_keys && !o->listen) return moe_err_set(err, "--client-keys is for the ZMQ client endpoint (--listen)");
    if (!o->worker_key && !o->insecure && !endpoint_local(o->workers))
        return moe_err_set(err,
                           "--workers %s is not a loopback or ipc:// endpoint: anyone who reaches it could act as "
                           "a worker rank and read prompts.  Give --curve-secret FILE and --worker-key FILE "
                           "(moe-keygen; docs/security.md), or --insecure to run without",
                           o->workers);
    return MOE_OK;
}

/* An endpoint only this machine can reach: ipc://, inproc://, or tcp:// on
 * a loopback address (127.0.0.0/8, ::1, localhost).  Anything else
 * (0.0.0.0, *, an interface name, a host name) is taken as reachable. */
static bool endpoint_local(const char *ep)
{
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9)) return true;
    if (strncmp(ep, "tcp://", 6) != 0) return false;
    const char *h = ep + 6;
    if (!strncmp(h, "[::1]:", 6) || !strncmp(h, "localhost:", 10)) return true;
    if (strncmp(h, "127.", 4) != 0) return false;
    /* 127.a.b.c exactly: digits and dots up to the port */
    int dots = 0;
    for (h += 4; *h && *h != ':'; h++) {
        if (*h == '.') dots++;
        else if (*h < '0' || *h > '9') return false;
    }
    return *h == ':' && dots == 2;
}

/* --launch's job file when none is given: one per user and workers
 * endpoint (its FNV-1a hash), in $XDG_RUNTIME_DIR or /tmp.  Lives until exit. */
static const char *default_job_file(const char *workers)
{
    static char path[4096];
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *c = workers; *c; c++) h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
    const char *dir = getenv("XDG_RUNTIME_DIR");
    if (!dir || dir[0] != '/' || strlen(dir) > 3000) dir = "/tmp";
    snprintf(path, sizeof path, "%s/moe-job-%u-%016llx", dir, (unsigned)geteuid(), (unsigned long long)h);
    return path;
}

/* --launch auto: mpirun with the flags a one-machine job needs, and the
 * moe-worker next to this program, then tail (argv's rest after "auto",
 * moe-worker flags).  Built once, lives until exit. */
static char **default_launch(const opts *o, char **tail)
{
    static char np[32], worker[4096 + 16];
    size_t n_tail = 0;
    while (tail[n_tail]) n_tail++; /* argv's tail: fewer than argc entries */
    static char **argv; /* static: reachable until exit */
    argv = moe_xcalloc(n_tail + 24, sizeof *argv);
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) *slash = 0;
        snprintf(worker, sizeof worker, "%s/moe-worker", self);
    } else {
        snprintf(worker, sizeof worker, "moe-worker");
    }
    snprintf(np, sizeof np, "%lld", (long long)o->ranks);
    int k = 0;
    argv[k++] = "mpirun";
    argv[k++] = "--bind-to";
    argv[k++] = "none";
    argv[k++] = "--oversubscribe";
    if (geteuid() == 0) argv[k++] = "--allow-run-as-root";
    argv[k++] = "-x";
    argv[k++] = "OPENBLAS_NUM_THREADS=1";
    argv[k++] = "-np";
    argv[k++] = np;
    argv[k++] = worker;
    argv[k++] = "--model";
    argv[k++] = (char *)o->model;
    argv[k++] = "--coordinator";
    argv[k++] = "{workers}";
    for (size_t i = 0; i < n_tail; i++) argv[k++] = tail[i];
    argv[k] = NULL;
    return argv;
}

static volatile sig_atomic_t g_term, g_dump;
/* 1: drain; 2: a second signal, stop at once */
static void on_term(int sig)
{
    (void)sig;
    if (g_term < 2) g_term++;
}
static void on_usr1(int sig) { (void)sig; g_dump = 1; }

/* This process's epoch: the upper half of its sequence ids, so a new
 * coordinator's ids never clash with an old one's still on the ranks.
 * The wall clock's milliseconds mixed with the pid, 31 bits (ids stay
 * below 2^63: a rank keeps them as int64), never 0. */
static uint32_t epoch_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint32_t e = (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u) ^ ((uint32_t)getpid() << 20);
    e &= 0x7FFFFFFFu;
    return e ? e : 1;
}

/* The CURVE keys the flags name (read before anything binds). */
typedef struct keys {
    moe_key secret, worker;
    moe_key *clients;
    size_t n_clients;
} keys;

static int load_keys(const opts *o, keys *k, moe_err *err)
{
    memset(k, 0, sizeof *k);
    if (!o->curve_secret) return MOE_OK;
    if (moe_keyfile_read_secret(o->curve_secret, &k->secret, err)) return moe_err_prefix(err, "--curve-secret");
    if (o->worker_key && moe_keyfile_read_public(o->worker_key, &k->worker, err))
        return moe_err_prefix(err, "--worker-key");
    if (o->client_keys && moe_keylist_read(o->client_keys, &k->clients, &k->n_clients, err))
        return moe_err_prefix(err, "--client-keys");
    return MOE_OK;
}

/* The loop, then its front ends (a front end reports to the loop). */
static int wire(moe_coord **out, const opts *o, const keys *k, moe_err *err)
{
    const moe_coord_cfg cc = {
        .model = o->model,
        .workers = o->workers,
        .ranks = o->ranks,
        .queue = o->queue,
        .max_running = o->max_running,
        .prefix_slack = o->prefix_slack,
        .prefix_per_client = o->prefix_per_client,
        .max_tokens = o->max_tokens,
        .max_frame = o->max_frame,
        .worker_timeout_ms = o->worker_timeout_ms,
        .worker_outbox_bytes = o->worker_outbox_bytes,
        .worker_hwm = o->worker_hwm,
        .worker_sndbuf = o->worker_sndbuf,
        .max_step_ms = o->max_step_ms,
        .no_ranks_timeout_ms = o->no_ranks_timeout_ms,
        .drain_timeout_ms = o->drain_timeout_ms,
        .epoch = epoch_now(),
        .metrics_file = o->metrics_file,
        .record_dir = o->record_dir,
        .record_mode = o->record_mode,
        .record_window = o->record_window,
        .record_max_bytes = o->record_max_bytes,
        .metrics_dump = &g_dump,
        .launch = o->launch,
        .max_start_failures = o->max_start_failures,
        .restart_backoff_ms = o->restart_backoff_ms,
        .start_timeout_ms = o->start_timeout_ms,
        .job_file = o->job_file,
        .curve_secret = o->curve_secret ? &k->secret : NULL,
        .client_keys = k->clients,
        .n_client_keys = k->n_clients,
        .worker_key = o->worker_key ? &k->worker : NULL,
        .client_in_flight = o->client_in_flight,
        .client_queue = o->client_queue >= 0 ? o->client_queue : (o->queue + 3) / 4,
        .client_prompt_bps = o->client_prompt_bps,
        .prompt_inline_bytes = o->prompt_inline_bytes,
        .prompt_threads = o->prompt_threads,
    };
    if (moe_coord_init(out, &cc, err)) return MOE_ERR;
    moe_coord *c = *out;
    const moe_front_sink sink = moe_coord_front_sink(c);
    moe_front *front;
    char where[512] = "";
    if (o->listen) {
        const moe_front_zmq_cfg zc = {
            .endpoint = o->listen,
            .model_name = moe_coord_model_name(c),
            .client_hwm = o->client_hwm,
            .client_sndbuf = o->client_sndbuf,
            .client_timeout_ms = o->client_timeout_ms,
            .curve = moe_coord_client_curve(c),
        };
        if (moe_front_zmq_open(&front, moe_coord_link_ctx(c), &zc, moe_coord_model(c), &sink, err))
            return moe_err_prefix(err, "--listen");
        if (moe_coord_add_front(c, front, err)) {
            front->ops->close(front);
            return MOE_ERR;
        }
        snprintf(where, sizeof where, "%s", front->ops->endpoint(front));
    }
    if (o->http) {
        const moe_front_http_cfg hc = {
            .listen = o->http,
            .model_name = moe_coord_model_name(c),
            .api_key = o->api_key,
            .max_body = o->max_body,
            .tls_cert = o->tls_cert,
            .tls_key = o->tls_key,
        };
        if (moe_front_http_open(&front, &hc, moe_coord_model(c), &sink, err)) return moe_err_prefix(err, "--http");
        if (moe_coord_add_front(c, front, err)) {
            front->ops->close(front);
            return MOE_ERR;
        }
        const size_t l = strlen(where);
        snprintf(where + l, sizeof where - l, "%s%s", l ? ", " : "", front->ops->endpoint(front));
    }
    if (!o->worker_key && !endpoint_local(o->workers))
        moe_log(MOE_LOG_WARN, "--insecure: the worker endpoint %s is open to anyone who reaches it (no CURVE)",
                o->workers);
    moe_log(MOE_LOG_INFO, "clients at %s, workers at %s, waiting for %lld ranks", where,
            moe_coord_workers_endpoint(c), (long long)o->ranks);
    return MOE_OK;
}

int main(int argc, char **argv)
{
    opts o;
    moe_err err = {{0}};
    const int prc = parse_opts(argc, argv, &o, &err);
    if (prc > 0) {
        usage(stdout);
        return 0;
    }
    if (prc) {
        fprintf(stderr, "moe-coordinator: %s\n", err.msg);
        return 2;
    }
    moe_log_set_format(o.log_format);
    /* Blocks of 256 KiB and more (frames, large prompts and their tokens)
     * are mapped and unmapped on their own, so a flood of them gives its
     * memory back when it ends; a fixed threshold also stops glibc raising
     * it after the first such free.  The loop trims the rest (coord.c). */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct sigaction su = {0};
    su.sa_handler = on_usr1;
    sigaction(SIGUSR1, &su, NULL);
    signal(SIGPIPE, SIG_IGN);
    moe_coord *c = NULL;
    int rc = 1;
    keys k;
    if (load_keys(&o, &k, &err) || wire(&c, &o, &k, &err)) {
        fprintf(stderr, "moe-coordinator: %s\n", err.msg);
    } else {
        moe_coord_run(c, &g_term);
        rc = 0;
    }
    moe_coord_free(c);
    free(k.clients);
    return rc;
}
