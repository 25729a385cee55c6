/*
 * moe-bench — the serving benchmark: vLLM's `bench serve` figures for any
 * OpenAI-compatible server (moe-coordinator --http, llama-server, vLLM) or
 * for moe-coordinator's native ZMQ protocol, plus the cluster's own figures
 * from /metrics when the target is moe.
 *
 *   moe-bench --base-url http://127.0.0.1:8000 --tokenizer M.gguf \
 *             --dataset-name random --random-input-len 128 --random-output-len 64 \
 *             --num-prompts 64 --request-rate 1,2,4,inf --ignore-eos --save-result --plot
 *
 * This file parses the flags and wires the parts (tools/bench/): dataset
 * (prompts), run (arrivals and concurrency) over target (HTTP or ZMQ),
 * stats (the block, JSON, CSV), scrape (/metrics before and after), and
 * the plots (gnuplot).  docs/bench.md is the manual.
 *
 * Exit status: 0 every request of every run succeeded; 1 some failed;
 * 2 bad flags or inputs (nothing sent); 3 the target failed.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "base.h"
#include "dataset.h"
#include "gguf.h"
#include "run.h"
#include "scrape.h"
#include "stats.h"
#include "target.h"
#include "tokenizer.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_FLAGS = 2, EXIT_TARGET = 3 };

#define MAX_SWEEP 64
#define MAX_PROMPTS (1u << 20)
#define MAX_LEN (1u << 20)

static void usage(FILE *f)
{
    fprintf(f,
"usage: moe-bench (--base-url URL | --connect EP) [options]\n"
"Drives a server with a benchmark and prints vLLM's \"Serving Benchmark Result\".\n"
"\n"
"Target:\n"
"  --base-url URL             an OpenAI-compatible server (http://HOST:PORT)\n"
"  --host H --port P          the same as --base-url http://H:P\n"
"  --endpoint PATH            /v1/completions (default) or /v1/chat/completions\n"
"  --connect EP               moe-coordinator's ZMQ endpoint (HOST:PORT, tcp://, ipc://)\n"
"  --curve-server-key FILE    with --connect: the coordinator's CURVE public key, and\n"
"  --curve-secret FILE        this client's secret key (docs/security.md)\n"
"  --metrics-url URL          /metrics to scrape before and after each run (default:\n"
"                             BASE-URL/metrics; 'none' to skip); with --connect give it\n"
"  --model NAME               the request's \"model\" field (default: left out)\n"
"  --api-key KEY              a bearer token (default: $OPENAI_API_KEY)\n"
"  --tokenizer GGUF           the model file whose vocabulary builds random prompts and\n"
"                             counts ShareGPT tokens (alias --model-file); without it, random\n"
"                             prompts to /v1/completions take their ids from BASE-URL/tokenize\n"
"  --timeout S                a request that hears nothing for S seconds fails (600)\n"
"Dataset:\n"
"  --dataset-name NAME        random (default), sharegpt, shared-prefix\n"
"  --dataset-path FILE        the ShareGPT JSON file\n"
"  --num-prompts N            requests per run (1000)\n"
"  --random-input-len N       random: prompt tokens (1024)\n"
"  --random-output-len N      random: output tokens (128)\n"
"  --random-range-ratio R     random: lengths uniform in [len*(1-R), len*(1+R)] (0)\n"
"  --sharegpt-output-len N    sharegpt: every output this long (default: the answer's)\n"
"  --gsp-num-groups N         shared-prefix: groups with one system prompt each (8)\n"
"  --gsp-prompts-per-group N  shared-prefix: questions per group (8)\n"
"  --gsp-system-prompt-len N  shared-prefix: system prompt tokens (512)\n"
"  --gsp-question-len N       shared-prefix: question tokens (64)\n"
"  --gsp-output-len N         shared-prefix: output tokens (64)\n"
"  --ignore-eos               every request generates its full output length\n"
"Load (a list of values sweeps: every rate with every concurrency, one run each):\n"
"  --request-rate R[,R..]     requests/s, 'inf' (default) sends all at once\n"
"  --burstiness B             gamma shape of the gaps, 1 = Poisson (1)\n"
"  --max-concurrency N[,N..]  requests in flight at most (default: no limit)\n"
"  --seed S                   of prompts and arrivals (0)\n"
"  --num-warmups N            requests sent and waited for before the runs (1)\n"
"Report:\n"
"  --percentile-metrics L     of ttft,tpot,itl,e2el (default all four)\n"
"  --metric-percentiles L     e.g. 50,90,99 (default 99)\n"
"  --goodput SLO..            e.g. \"ttft:200 tpot:50 e2el:5000\" (ms)\n"
"  --save-result              write the JSON result (vLLM's keys) and the per-request CSV\n"
"  --result-dir DIR           where (default .)\n"
"  --result-filename NAME     the JSON's name (a sweep adds -r<rate>-c<conc>)\n"
"  --label TEXT               a name for the runs (JSON \"label\", plot titles)\n"
"  --plot                     PNG plots into the result dir (gnuplot): latency\n"
"                             percentiles vs rate, throughput vs concurrency, TTFT/ITL\n"
"                             histograms\n"
"  --disable-tqdm             no progress line\n"
"  -h, --help\n");
}

typedef struct opts {
    const char *base_url, *host, *port, *endpoint, *connect, *metrics_url, *model, *api_key, *tokenizer;
    const char *curve_server_key, *curve_secret;
    double timeout_s;
    const char *dataset, *dataset_path;
    long num_prompts, in_len, out_len, sharegpt_out;
    double range_ratio;
    long gsp_groups, gsp_per, gsp_sys, gsp_q, gsp_out;
    bool ignore_eos;
    double rates[MAX_SWEEP];
    size_t n_rates;
    int conc[MAX_SWEEP];
    size_t n_conc;
    double burstiness;
    uint64_t seed;
    long warmups;
    moe_bench_report_cfg rep;
    bool save, plot, progress;
    const char *result_dir, *result_filename, *label;
} opts;

static int bad(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "moe-bench: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n(moe-bench --help lists the flags)\n");
    return EXIT_FLAGS;
}

static int num(const char *flag, const char *v, long lo, long hi, long *out)
{
    moe_err err;
    int64_t x;
    if (moe_parse_i64(v, lo, hi, &x, &err)) return bad("%s: %s", flag, err.msg);
    *out = (long)x;
    return 0;
}

static int parse_rates(opts *o, const char *s)
{
    o->n_rates = 0;
    char *d = moe_xstrdup(s), *save = NULL;
    for (char *t = strtok_r(d, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        moe_err err;
        double r;
        if (o->n_rates == MAX_SWEEP) {
            free(d);
            return bad("--request-rate: at most %s values%s", "64", "");
        }
        if (!strcmp(t, "inf")) r = INFINITY;
        else if (moe_parse_f64(t, 1e-6, 1e9, &r, &err)) {
            int rc = bad("--request-rate: '%s' is not a rate > 0 or inf (%s)", t, err.msg);
            free(d);
            return rc;
        }
        o->rates[o->n_rates++] = r;
    }
    free(d);
    return o->n_rates ? 0 : bad("--request-rate: no value%s%s", "", "");
}

static int parse_conc(opts *o, const char *s)
{
    o->n_conc = 0;
    char *d = moe_xstrdup(s), *save = NULL;
    for (char *t = strtok_r(d, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        long c;
        if (o->n_conc == MAX_SWEEP || num("--max-concurrency", t, 1, 65536, &c)) {
            free(d);
            return o->n_conc == MAX_SWEEP ? bad("--max-concurrency: at most %s values%s", "64", "") : EXIT_FLAGS;
        }
        o->conc[o->n_conc++] = (int)c;
    }
    free(d);
    return o->n_conc ? 0 : bad("--max-concurrency: no value%s%s", "", "");
}

static int parse(opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->endpoint = "/v1/completions";
    o->timeout_s = 600;
    o->dataset = "random";
    o->num_prompts = 1000;
    o->in_len = 1024;
    o->out_len = 128;
    o->gsp_groups = 8, o->gsp_per = 8, o->gsp_sys = 512, o->gsp_q = 64, o->gsp_out = 64;
    o->rates[0] = INFINITY;
    o->n_rates = 1;
    o->n_conc = 1; /* conc[0] = 0: no limit */
    o->burstiness = 1;
    o->warmups = 1;
    o->progress = true;
    o->result_dir = ".";
    o->api_key = getenv("OPENAI_API_KEY");
    for (int m = 0; m < MOE_BENCH_N_METRICS; m++) o->rep.metric[m] = true;
    for (int m = 0; m < MOE_BENCH_N_METRICS; m++) o->rep.slo_ms[m] = -1;
    o->rep.pct[0] = 99;
    o->rep.n_pct = 1;
    char msg[512];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        bool flag_only = !strcmp(a, "--ignore-eos") || !strcmp(a, "--save-result") || !strcmp(a, "--plot") ||
                         !strcmp(a, "--disable-tqdm");
        if (flag_only) {
            if (!strcmp(a, "--ignore-eos")) o->ignore_eos = true;
            else if (!strcmp(a, "--save-result")) o->save = true;
            else if (!strcmp(a, "--plot")) o->plot = true;
            else o->progress = false;
            continue;
        }
        if (strncmp(a, "--", 2)) return bad("'%s' is not a flag%s", a, "");
        if (i + 1 >= argc) return bad("%s needs a value%s", a, "");
        const char *v = argv[++i];
        int rc = 0;
        double x;
        moe_err err;
        if (!strcmp(a, "--base-url")) o->base_url = v;
        else if (!strcmp(a, "--host")) o->host = v;
        else if (!strcmp(a, "--port")) o->port = v;
        else if (!strcmp(a, "--endpoint")) o->endpoint = v;
        else if (!strcmp(a, "--connect")) o->connect = v;
        else if (!strcmp(a, "--curve-server-key")) o->curve_server_key = v;
        else if (!strcmp(a, "--curve-secret")) o->curve_secret = v;
        else if (!strcmp(a, "--metrics-url")) o->metrics_url = v;
        else if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--api-key")) o->api_key = v;
        else if (!strcmp(a, "--tokenizer") || !strcmp(a, "--model-file")) o->tokenizer = v;
        else if (!strcmp(a, "--timeout")) {
            if (moe_parse_f64(v, 0.001, 1e7, &o->timeout_s, &err)) rc = bad("--timeout: %s%s", err.msg, "");
        } else if (!strcmp(a, "--dataset-name")) o->dataset = v;
        else if (!strcmp(a, "--dataset-path")) o->dataset_path = v;
        else if (!strcmp(a, "--num-prompts")) rc = num(a, v, 1, MAX_PROMPTS, &o->num_prompts);
        else if (!strcmp(a, "--random-input-len")) rc = num(a, v, 1, MAX_LEN, &o->in_len);
        else if (!strcmp(a, "--random-output-len")) rc = num(a, v, 1, MAX_LEN, &o->out_len);
        else if (!strcmp(a, "--sharegpt-output-len")) rc = num(a, v, 1, MAX_LEN, &o->sharegpt_out);
        else if (!strcmp(a, "--random-range-ratio")) {
            if (moe_parse_f64(v, 0, 0.999999, &o->range_ratio, &err)) rc = bad("--random-range-ratio: %s (in [0, 1))", err.msg, "");
        } else if (!strcmp(a, "--gsp-num-groups")) rc = num(a, v, 1, MAX_PROMPTS, &o->gsp_groups);
        else if (!strcmp(a, "--gsp-prompts-per-group")) rc = num(a, v, 1, MAX_PROMPTS, &o->gsp_per);
        else if (!strcmp(a, "--gsp-system-prompt-len")) rc = num(a, v, 0, MAX_LEN, &o->gsp_sys);
        else if (!strcmp(a, "--gsp-question-len")) rc = num(a, v, 1, MAX_LEN, &o->gsp_q);
        else if (!strcmp(a, "--gsp-output-len")) rc = num(a, v, 1, MAX_LEN, &o->gsp_out);
        else if (!strcmp(a, "--request-rate")) rc = parse_rates(o, v);
        else if (!strcmp(a, "--max-concurrency")) rc = parse_conc(o, v);
        else if (!strcmp(a, "--burstiness")) {
            if (moe_parse_f64(v, 1e-3, 1e3, &o->burstiness, &err)) rc = bad("--burstiness: %s%s", err.msg, "");
        } else if (!strcmp(a, "--seed")) {
            if (moe_parse_f64(v, 0, 9007199254740992.0, &x, &err) || x != floor(x)) rc = bad("--seed: '%s' is not an integer >= 0%s", v, "");
            else o->seed = (uint64_t)x;
        } else if (!strcmp(a, "--num-warmups")) rc = num(a, v, 0, 10000, &o->warmups);
        else if (!strcmp(a, "--percentile-metrics")) {
            if (moe_bench_parse_metrics(&o->rep, v, msg, sizeof msg)) rc = bad("%s%s", msg, "");
        } else if (!strcmp(a, "--metric-percentiles")) {
            if (moe_bench_parse_percentiles(&o->rep, v, msg, sizeof msg)) rc = bad("%s%s", msg, "");
        } else if (!strcmp(a, "--goodput")) {
            /* vLLM takes the SLOs as separate words: collect the following ones too */
            char joined[1024];
            snprintf(joined, sizeof joined, "%s", v);
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) && strchr(argv[i + 1], ':')) {
                size_t l = strlen(joined);
                snprintf(joined + l, sizeof joined - l, " %s", argv[++i]);
            }
            if (moe_bench_parse_goodput(&o->rep, joined, msg, sizeof msg)) rc = bad("%s%s", msg, "");
        } else if (!strcmp(a, "--result-dir")) o->result_dir = v;
        else if (!strcmp(a, "--result-filename")) o->result_filename = v;
        else if (!strcmp(a, "--label")) o->label = v;
        else return bad("unknown flag %s%s", a, "");
        if (rc) return rc;
    }
    if (o->host || o->port) {
        if (o->base_url) return bad("give --base-url or --host/--port, not both%s%s", "", "");
        static char url[600];
        snprintf(url, sizeof url, "http://%.200s:%.20s", o->host ? o->host : "127.0.0.1", o->port ? o->port : "8000");
        o->base_url = url;
    }
    if (!o->base_url == !o->connect) return bad("give one target: --base-url URL or --connect EP%s%s", "", "");
    if (strcmp(o->endpoint, "/v1/completions") && strcmp(o->endpoint, "/v1/chat/completions"))
        return bad("--endpoint: '%s' is not /v1/completions or /v1/chat/completions%s", o->endpoint, "");
    if (strcmp(o->dataset, "random") && strcmp(o->dataset, "sharegpt") && strcmp(o->dataset, "shared-prefix"))
        return bad("--dataset-name: '%s' is not random, sharegpt or shared-prefix%s", o->dataset, "");
    if (!strcmp(o->dataset, "sharegpt") && !o->dataset_path) return bad("--dataset-name sharegpt needs --dataset-path%s%s", "", "");
    if (!o->tokenizer && (o->connect || strcmp(o->dataset, "random") || strstr(o->endpoint, "chat")))
        return bad("--tokenizer GGUF is needed (only random prompts to /v1/completions can do with the server's "
                   "/tokenize)%s%s", "", "");
    if (o->metrics_url && !strcmp(o->metrics_url, "none")) o->metrics_url = NULL;
    else if (!o->metrics_url && o->base_url) {
        static char murl[700];
        size_t bl = strlen(o->base_url);
        while (bl && o->base_url[bl - 1] == '/') bl--;
        snprintf(murl, sizeof murl, "%.*s/metrics", (int)(bl < 600 ? bl : 600), o->base_url);
        o->metrics_url = murl;
    }
    return 0;
}

/* ---- results and plots ---------------------------------------------------- */

typedef struct run_out {
    double rate;
    int conc;
    moe_bench_report rep;
    double mean_conc;        /* Σ E2EL / duration */
    char hist_base[512];     /* the run's histogram data, without extension */
    size_t n_ttft, n_itl;    /* samples in it */
} run_out;

static void rate_str(double r, char *buf, size_t cap)
{
    if (isinf(r)) snprintf(buf, cap, "inf");
    else snprintf(buf, cap, "%g", r);
}

static int write_json(const opts *o, const char *path, json_t *j)
{
    if (json_dump_file(j, path, JSON_INDENT(1) | JSON_REAL_PRECISION(10))) {
        fprintf(stderr, "moe-bench: cannot write %s\n", path);
        return -1;
    }
    (void)o;
    return 0;
}

static void gnuplot(const char *script, const char *what)
{
    FILE *p = popen("gnuplot", "w");
    if (!p) {
        fprintf(stderr, "moe-bench: cannot run gnuplot for %s: %s\n", what, strerror(errno));
        return;
    }
    fputs(script, p);
    int st = pclose(p);
    if (st) fprintf(stderr, "moe-bench: gnuplot failed drawing %s (status %d)\n", what, st);
}

static void plots(const opts *o, const run_out *runs, size_t n_runs)
{
    char dat[1024], png[1024], script[8192];
    const char *ttl = o->label ? o->label : "moe-bench";
    snprintf(dat, sizeof dat, "%s/sweep.dat", o->result_dir);
    FILE *f = fopen(dat, "w");
    if (!f) {
        fprintf(stderr, "moe-bench: cannot write %s: %s\n", dat, strerror(errno));
        return;
    }
    /* the last chosen percentile is the one plotted beside the median */
    size_t k = o->rep.n_pct - 1;
    char pk[32];
    moe_bench_pct_key(o->rep.pct[k], pk, sizeof pk);
    fprintf(f, "# run rate conc mean_conc ttft_med ttft_%s tpot_med tpot_%s itl_med itl_%s e2el_med e2el_%s out_tok_s req_s\n",
            pk, pk, pk, pk);
    for (size_t i = 0; i < n_runs; i++) {
        const moe_bench_report *r = &runs[i].rep;
        char rs[32], lab[48];
        rate_str(runs[i].rate, rs, sizeof rs);
        if (runs[i].conc) snprintf(lab, sizeof lab, "%s/c%d", rs, runs[i].conc);
        else snprintf(lab, sizeof lab, "%s", rs);
        fprintf(f, "%zu \"%s\" %d %.4f %.4f %.4f %.4f %.4f %.4f %.4f %.4f %.4f %.4f %.4f\n", i, lab, runs[i].conc, runs[i].mean_conc, r->dist[0].median,
                r->dist[0].pct[k], r->dist[1].median, r->dist[1].pct[k], r->dist[2].median, r->dist[2].pct[k],
                r->dist[3].median, r->dist[3].pct[k], r->output_throughput, r->request_throughput);
    }
    fclose(f);
    const char *pc = o->rep.pct[k] == 99 ? "P99" : pk;
    snprintf(png, sizeof png, "%s/latency_vs_rate.png", o->result_dir);
    snprintf(script, sizeof script,
             "set terminal pngcairo size 1000,650 font ',11'\nset output '%s'\n"
             "set title '%s: latency percentiles against request rate'\n"
             "set xlabel 'request rate (req/s)  [/cN: at most N in flight]'\nset ylabel 'latency (ms, log scale)'\n"
             "set logscale y\nset grid\nset key outside right\nset xtics rotate by -30\nset offsets 0.3,0.3,0,0\n"
             "plot '%s' u 1:5:xticlabels(2) w lp lw 2 pt 7 t 'TTFT median', '' u 1:6 w lp lw 2 pt 5 dt 2 t 'TTFT %s', "
             "'' u 1:7 w lp lw 2 pt 7 t 'TPOT median', '' u 1:8 w lp lw 2 pt 5 dt 2 t 'TPOT %s', "
             "'' u 1:9 w lp lw 2 pt 7 t 'ITL median', '' u 1:10 w lp lw 2 pt 5 dt 2 t 'ITL %s', "
             "'' u 1:11 w lp lw 2 pt 7 t 'E2EL median', '' u 1:12 w lp lw 2 pt 5 dt 2 t 'E2EL %s'\n",
             png, ttl, dat, pc, pc, pc, pc);
    gnuplot(script, png);
    snprintf(png, sizeof png, "%s/throughput_vs_concurrency.png", o->result_dir);
    snprintf(script, sizeof script,
             "set terminal pngcairo size 1000,650 font ',11'\nset output '%s'\n"
             "set title '%s: throughput against concurrency'\n"
             "set xlabel 'mean requests in flight (sum of E2EL / duration)'\n"
             "set ylabel 'output throughput (tokens/s)'\nset y2label 'request throughput (req/s)'\n"
             "set ytics nomirror\nset y2tics\nset grid\nset key top left\nset yrange [0:*]\nset y2range [0:*]\n"
             "plot '%s' u 4:13 w lp lw 2 pt 7 t 'output tokens/s (left)', '' u 4:14 axes x1y2 w lp lw 2 pt 5 t "
             "'requests/s (right)', '' u 4:13:2 w labels offset 0,1 notitle\n",
             png, ttl, dat);
    gnuplot(script, png);
    for (size_t i = 0; i < n_runs; i++) {
        char rs[32];
        rate_str(runs[i].rate, rs, sizeof rs);
        snprintf(png, sizeof png, "%s.png", runs[i].hist_base);
        char inflight[48] = "";
        if (runs[i].conc) snprintf(inflight, sizeof inflight, ", at most %d in flight", runs[i].conc);
        /* one panel per histogram; a run without samples (no chunk with
         * text, or single-chunk answers) says so instead of failing */
        static const char *const what[2] = {"ttft", "itl"};
        static const char *const xl[2] = {"TTFT (ms)", "ITL (ms)"};
        static const char *const yl[2] = {"requests", "chunk gaps"};
        static const char *const tl[2] = {"Time to first token", "Inter-token latency"};
        static const char *const kl[2] = {"requests per bin", "gaps per bin"};
        size_t cnt[2] = {runs[i].n_ttft, runs[i].n_itl};
        int len = snprintf(script, sizeof script,
                           "set terminal pngcairo size 1100,500 font ',11'\nset output '%s'\n"
                           "set multiplot layout 1,2 title '%s: rate %s req/s%s'\nset style fill solid 0.6\nset grid\n"
                           "set yrange [0:*]\nset key top right box opaque\n",
                           png, ttl, rs, inflight);
        for (int h = 0; h < 2 && len > 0 && (size_t)len < sizeof script; h++) {
            if (cnt[h])
                len += snprintf(script + len, sizeof script - (size_t)len,
                                "set title '%s'\nset xlabel '%s'\nset ylabel '%s'\nunset label\nset key top right box opaque\n"
                                "stats '%s.%s' u 1 nooutput\nbw = (STATS_max - STATS_min) / 30.0\n"
                                "if (bw <= 0) bw = 1\nset boxwidth bw absolute\n"
                                "if (STATS_max == STATS_min) set xrange [STATS_min - 1 : STATS_max + 1]; "
                                "else set xrange [*:*]\n"
                                "plot '%s.%s' u (bw*floor($1/bw)+bw/2):(1) smooth frequency w boxes lc %d t '%s'\n",
                                tl[h], xl[h], yl[h], runs[i].hist_base, what[h], runs[i].hist_base, what[h], h + 1,
                                kl[h]);
            else
                len += snprintf(script + len, sizeof script - (size_t)len,
                                "set title '%s'\nset xlabel '%s'\nset ylabel '%s'\nset xrange [0:1]\nunset key\n"
                                "set label 1 'no samples' at graph 0.5, 0.5 center\nplot [0:1] [0:1] -1 notitle\n",
                                tl[h], xl[h], yl[h]);
        }
        if (len > 0 && (size_t)len < sizeof script) snprintf(script + len, sizeof script - (size_t)len, "unset multiplot\n");
        gnuplot(script, png);
    }
}

/* Writes the TTFT and ITL samples (ms); *n_ttft, *n_itl: how many. */
static void hist_data(const char *base, const moe_bench_rec *recs, size_t n, size_t *n_ttft, size_t *n_itl)
{
    *n_ttft = *n_itl = 0;
    char p[600];
    snprintf(p, sizeof p, "%s.ttft", base);
    FILE *f = fopen(p, "w");
    snprintf(p, sizeof p, "%s.itl", base);
    FILE *g = fopen(p, "w");
    for (size_t i = 0; f && g && i < n; i++) {
        const moe_bench_rec *r = &recs[i];
        if (!r->ok || !r->n_chunks) continue;
        fprintf(f, "%.4f\n", (r->chunk_t[0] - r->t_sent) * 1000);
        ++*n_ttft;
        for (size_t k = 1; k < r->n_chunks; k++, ++*n_itl)
            fprintf(g, "%.4f\n", (r->chunk_t[k] - r->chunk_t[k - 1]) * 1000);
    }
    if (f) fclose(f);
    if (g) fclose(g);
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    opts o;
    int rc = parse(&o, argc, argv);
    if (rc) return rc;
    moe_err err = {{0}};
    moe_gguf *g = NULL;
    moe_tokenizer *tok = NULL;
    if (o.tokenizer && (moe_gguf_open(&g, o.tokenizer, &err) || moe_tokenizer_load(&tok, g, &err))) {
        fprintf(stderr, "moe-bench: %s: %s\n", o.tokenizer, err.msg);
        moe_gguf_close(g);
        return EXIT_FLAGS;
    }
    moe_bench_rng rng = {o.seed};
    moe_bench_prompt *p = NULL;
    size_t n = (size_t)o.num_prompts;
    int32_t *vocab = NULL;
    size_t n_vocab = 0;
    rc = MOE_OK;
    if (!strcmp(o.dataset, "sharegpt")) {
        rc = moe_bench_sharegpt(&p, n, o.dataset_path, tok, (uint32_t)o.sharegpt_out, &rng, &err);
    } else {
        if (tok) {
            rc = moe_bench_vocab(tok, &vocab, &n_vocab, &err);
        } else {
            rc = moe_bench_http_vocab(o.base_url, o.api_key, &vocab, &n_vocab, &err);
            if (!rc) fprintf(stderr, "moe-bench: random prompts from %zu distinct ids of the server's /tokenize\n", n_vocab);
        }
        if (!rc && !strcmp(o.dataset, "random"))
            rc = moe_bench_random(&p, n, (uint32_t)o.in_len, (uint32_t)o.out_len, o.range_ratio, vocab, n_vocab, &rng, &err);
        else if (!rc)
            rc = moe_bench_shared_prefix(&p, &n, (size_t)o.gsp_groups, (size_t)o.gsp_per, (uint32_t)o.gsp_sys,
                                         (uint32_t)o.gsp_q, (uint32_t)o.gsp_out, vocab, n_vocab, &rng, &err);
    }
    if (!rc && o.base_url && strstr(o.endpoint, "chat")) rc = moe_bench_prompts_decode(p, n, tok, &err);
    free(vocab);
    moe_tokenizer_free(tok);
    moe_gguf_close(g);
    if (rc) {
        fprintf(stderr, "moe-bench: %s\n", err.msg);
        return EXIT_FLAGS;
    }
    if ((o.save || o.plot) && mkdir(o.result_dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "moe-bench: cannot create %s: %s\n", o.result_dir, strerror(errno));
        moe_bench_prompts_free(p, n);
        return EXIT_FLAGS;
    }

    moe_bench_target_cfg tc = {.base_url = o.base_url, .endpoint = o.endpoint, .connect = o.connect,
                               .model = o.model, .api_key = o.api_key, .ignore_eos = o.ignore_eos,
                               .timeout_s = o.timeout_s, .curve_server_key = o.curve_server_key,
                               .curve_secret = o.curve_secret};
    moe_bench_target *t = NULL;
    if (moe_bench_target_open(&t, &tc, &err)) {
        fprintf(stderr, "moe-bench: %s\n", err.msg);
        moe_bench_prompts_free(p, n);
        return EXIT_TARGET;
    }
    moe_bench_rec *recs = moe_xcalloc(n, sizeof *recs);
    int exit_code = EXIT_OK;

    /* Warm-up: the first prompts, waited for, not counted. */
    if (o.warmups > 0) {
        size_t nw = (size_t)o.warmups < n ? (size_t)o.warmups : n;
        moe_bench_run_cfg wc = {.request_rate = INFINITY, .burstiness = 1, .max_concurrency = o.conc[0],
                                .seed = o.seed, .label = "warm-up", .progress = false};
        double dur;
        fprintf(stderr, "moe-bench: %zu warm-up request%s\n", nw, nw == 1 ? "" : "s");
        if (moe_bench_run(t, &wc, p, nw, recs, &dur, &err)) {
            fprintf(stderr, "moe-bench: warm-up: %s\n", err.msg);
            exit_code = EXIT_TARGET;
        } else {
            /* A failed warm-up request is reported, not fatal: it is the
             * server's answer to one prompt (llama-server refuses some
             * random outputs), and a dead server fails the runs anyway. */
            size_t n_bad = 0;
            for (size_t i = 0; i < nw; i++)
                if (!recs[i].ok && !n_bad++)
                    fprintf(stderr, "moe-bench: warm-up request failed: %s\n", recs[i].error ? recs[i].error : "?");
            if (n_bad) fprintf(stderr, "moe-bench: %zu of %zu warm-up requests failed; running anyway\n", n_bad, nw);
        }
        for (size_t i = 0; i < nw; i++) moe_bench_rec_free(&recs[i]);
    }

    run_out *runs = moe_xcalloc(o.n_rates * o.n_conc, sizeof *runs);
    size_t n_runs = 0;
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y%m%d-%H%M%S", gmtime(&now));
    for (size_t ri = 0; ri < o.n_rates && exit_code != EXIT_TARGET; ri++)
        for (size_t ci = 0; ci < o.n_conc && exit_code != EXIT_TARGET; ci++) {
            char rs[32], label[96];
            rate_str(o.rates[ri], rs, sizeof rs);
            snprintf(label, sizeof label, "rate %s%s%.0d", rs, o.conc[ci] ? " conc " : "", o.conc[ci]);
            printf("Traffic request rate: %s\n", rs);
            printf("Burstiness factor: %g (%s)\n", o.burstiness, o.burstiness == 1 ? "Poisson process" : "Gamma distribution");
            printf("Maximum request concurrency: %s%.0d\n", o.conc[ci] ? "" : "None", o.conc[ci]);
            fflush(stdout);
            moe_bench_prom before = {0}, after = {0};
            bool scraped = false;
            if (o.metrics_url) {
                if (moe_bench_prom_fetch(o.metrics_url, &before, &err))
                    fprintf(stderr, "moe-bench: no cluster figures: %s\n", err.msg);
                else scraped = true;
            }
            moe_bench_run_cfg rcfg = {.request_rate = o.rates[ri], .burstiness = o.burstiness,
                                      .max_concurrency = o.conc[ci], .seed = o.seed + ri * 7919 + ci,
                                      .label = label, .progress = o.progress};
            double duration = 0;
            if (moe_bench_run(t, &rcfg, p, n, recs, &duration, &err)) {
                fprintf(stderr, "moe-bench: %s: %s\n", label, err.msg);
                exit_code = EXIT_TARGET;
            }
            moe_bench_report_cfg rep = o.rep;
            rep.max_concurrency = o.conc[ci];
            rep.request_rate = o.rates[ri];
            rep.burstiness = o.burstiness;
            run_out *ro = &runs[n_runs++];
            ro->rate = o.rates[ri];
            ro->conc = o.conc[ci];
            moe_bench_report_compute(&rep, recs, n, duration, &ro->rep);
            double sum_e2el = 0;
            for (size_t i = 0; i < n; i++)
                if (recs[i].ok) sum_e2el += recs[i].t_end - recs[i].t_sent;
            ro->mean_conc = duration > 0 ? sum_e2el / duration : 0;
            moe_bench_report_print(stdout, &rep, &ro->rep);
            if (ro->rep.failed) {
                exit_code = exit_code ? exit_code : EXIT_FAIL;
                for (size_t i = 0; i < n; i++)
                    if (!recs[i].ok) {
                        fprintf(stderr, "moe-bench: %zu requests failed; the first: %s\n", ro->rep.failed,
                                recs[i].error ? recs[i].error : "?");
                        break;
                    }
            }
            json_t *j = moe_bench_report_json(&rep, &ro->rep, recs, n);
            if (scraped) {
                /* The ranks report in their heartbeats (every 500 ms by
                 * default): wait for two before reading what they did. */
                struct timespec ts = {1, 200000000};
                nanosleep(&ts, NULL);
                if (moe_bench_prom_fetch(o.metrics_url, &after, &err))
                    fprintf(stderr, "moe-bench: no cluster figures: %s\n", err.msg);
                else moe_bench_cluster(stdout, &before, &after, j);
            }
            fflush(stdout);
            moe_bench_prom_free(&before);
            moe_bench_prom_free(&after);
            char base[700];
            if (o.result_filename) {
                size_t l = strlen(o.result_filename);
                int keep = l > 5 && !strcmp(o.result_filename + l - 5, ".json") ? (int)(l - 5) : (int)l;
                if (o.n_rates * o.n_conc > 1)
                    snprintf(base, sizeof base, "%s/%.*s-r%s-c%d", o.result_dir, keep, o.result_filename, rs, o.conc[ci]);
                else snprintf(base, sizeof base, "%s/%.*s", o.result_dir, keep, o.result_filename);
            } else {
                snprintf(base, sizeof base, "%s/moe-bench-%sqps-c%d-%s", o.result_dir, rs, o.conc[ci], date);
            }
            snprintf(ro->hist_base, sizeof ro->hist_base, "%.500s-hist", base);
            if (o.save) {
                json_object_set_new(j, "date", json_string(date));
                json_object_set_new(j, "backend", json_string(o.base_url ? (strstr(o.endpoint, "chat") ? "openai-chat" : "openai") : "moe-zmq"));
                json_object_set_new(j, "label", o.label ? json_string(o.label) : json_null());
                json_object_set_new(j, "model_id", o.model ? json_string(o.model) : json_null());
                json_object_set_new(j, "tokenizer_id", o.tokenizer ? json_string(o.tokenizer) : json_null());
                json_object_set_new(j, "num_prompts", json_integer((json_int_t)n));
                json_object_set_new(j, "request_rate", isinf(o.rates[ri]) ? json_string("inf") : json_real(o.rates[ri]));
                json_object_set_new(j, "burstiness", json_real(o.burstiness));
                json_object_set_new(j, "max_concurrency", o.conc[ci] ? json_integer(o.conc[ci]) : json_null());
                char path[800];
                snprintf(path, sizeof path, "%s.json", base);
                if (!write_json(&o, path, j)) fprintf(stderr, "moe-bench: wrote %s\n", path);
                snprintf(path, sizeof path, "%s.csv", base);
                FILE *cf = fopen(path, "w");
                if (cf) {
                    moe_bench_csv(cf, recs, n);
                    fclose(cf);
                } else {
                    fprintf(stderr, "moe-bench: cannot write %s: %s\n", path, strerror(errno));
                }
            }
            json_decref(j);
            if (o.plot) hist_data(ro->hist_base, recs, n, &ro->n_ttft, &ro->n_itl);
            for (size_t i = 0; i < n; i++) moe_bench_rec_free(&recs[i]);
        }
    if (o.plot && n_runs) plots(&o, runs, n_runs);
    free(runs);
    free(recs);
    moe_bench_target_close(t);
    moe_bench_prompts_free(p, n);
    return exit_code;
}
