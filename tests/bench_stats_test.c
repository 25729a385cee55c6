/*
 * bench_stats_test.c — moe-bench's socket-free parts against hand-computed
 * values: percentiles (numpy's linear interpolation), TTFT, TPOT =
 * (E2EL − TTFT)/(output tokens − 1), ITL per chunk, throughputs, peaks,
 * goodput, the flag parsers, the result block's names and order, vLLM's
 * JSON keys, the CSV, the seeded arrivals and random prompts, and the
 * /metrics parser with the cluster figures.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dataset.h"
#include "run.h"
#include "scrape.h"
#include "stats.h"

#define NEAR(a, b) (fabs((double)(a) - (double)(b)) < 1e-6 * (1 + fabs((double)(b))))

static void rec(moe_bench_rec *r, double sent, const double *t, const uint32_t *n, size_t k, uint32_t out, double end,
                uint32_t prompt)
{
    memset(r, 0, sizeof *r);
    r->ok = true;
    r->t_sent = sent;
    for (size_t i = 0; i < k; i++) moe_bench_rec_chunk(r, t[i], n[i]);
    r->output_len = out;
    r->t_end = end;
    r->prompt_len = prompt;
}

static void cfg_default(moe_bench_report_cfg *c)
{
    memset(c, 0, sizeof *c);
    for (int m = 0; m < MOE_BENCH_N_METRICS; m++) c->metric[m] = true, c->slo_ms[m] = -1;
    c->pct[0] = 99;
    c->pct[1] = 25;
    c->n_pct = 2;
    c->request_rate = INFINITY;
    c->burstiness = 1;
}

/* Four requests: three done, one failed.  By hand:
 *   r0 sent 0.0, chunks 0.10 0.15 0.25 (1 token each), 3 tokens, end 0.25:
 *      TTFT 0.1, E2EL 0.25, TPOT (0.25-0.1)/2 = 0.075, ITL 0.05 0.10
 *   r1 sent 0.5, chunks 0.8 1.0 (2 tokens each), 4 tokens, end 1.1:
 *      TTFT 0.3, E2EL 0.6, TPOT 0.3/3 = 0.1, ITL 0.2
 *   r2 sent 1.0, chunk 1.2, 1 token, end 1.2: TTFT 0.2, E2EL 0.2, no TPOT
 *   r3 failed (its figures count nowhere)
 */
static void make_recs(moe_bench_rec *r)
{
    const double t0[] = {0.10, 0.15, 0.25}, t1[] = {0.8, 1.0}, t2[] = {1.2};
    const uint32_t n0[] = {1, 1, 1}, n1[] = {2, 2}, n2[] = {1};
    rec(&r[0], 0.0, t0, n0, 3, 3, 0.25, 10);
    rec(&r[1], 0.5, t1, n1, 2, 4, 1.1, 20);
    rec(&r[2], 1.0, t2, n2, 1, 1, 1.2, 30);
    rec(&r[3], 0.2, NULL, NULL, 0, 0, 0.9, 40);
    r[3].ok = false;
    r[3].error = strdup("HTTP 500: boom, \"quoted\"");
}

static void test_percentile(void)
{
    const double a[] = {1, 2, 3, 4};
    CHECK(NEAR(moe_bench_percentile(a, 4, 50), 2.5));
    CHECK(NEAR(moe_bench_percentile(a, 4, 99), 3.97)); /* rank 2.97 */
    CHECK(NEAR(moe_bench_percentile(a, 4, 25), 1.75)); /* rank 0.75 */
    CHECK(NEAR(moe_bench_percentile(a, 1, 99), 1));
    CHECK(moe_bench_percentile(a, 0, 50) == 0);
    CHECK(NEAR(moe_bench_percentile(a, 4, 100), 4));
}

static void test_report(void)
{
    moe_bench_rec r[4];
    make_recs(r);
    CHECK(NEAR(moe_bench_tpot(&r[0]), 0.075));
    CHECK(NEAR(moe_bench_tpot(&r[1]), 0.1));
    CHECK(moe_bench_tpot(&r[2]) < 0);
    moe_bench_report_cfg c;
    cfg_default(&c);
    moe_bench_report rep;
    moe_bench_report_compute(&c, r, 4, 2.0, &rep);
    CHECK(rep.completed == 3 && rep.failed == 1);
    CHECK(rep.total_input == 60 && rep.total_output == 8);
    CHECK(NEAR(rep.request_throughput, 1.5));
    CHECK(NEAR(rep.output_throughput, 4));
    CHECK(NEAR(rep.total_token_throughput, 34));
    const moe_bench_dist *d = rep.dist;
    /* TTFT [0.1 0.2 0.3] */
    CHECK(NEAR(d[MOE_BENCH_TTFT].mean, 200) && NEAR(d[MOE_BENCH_TTFT].median, 200));
    CHECK(NEAR(d[MOE_BENCH_TTFT].pct[0], 298)); /* rank 1.98 */
    CHECK(NEAR(d[MOE_BENCH_TTFT].pct[1], 150)); /* rank 0.5 */
    CHECK(NEAR(d[MOE_BENCH_TTFT].std, sqrt(0.02 / 3) * 1000));
    /* TPOT [0.075 0.1] */
    CHECK(d[MOE_BENCH_TPOT].n == 2);
    CHECK(NEAR(d[MOE_BENCH_TPOT].mean, 87.5) && NEAR(d[MOE_BENCH_TPOT].median, 87.5));
    CHECK(NEAR(d[MOE_BENCH_TPOT].pct[0], 99.75));
    /* ITL [0.05 0.1 0.2]: one per chunk gap, the 2-token chunks too */
    CHECK(d[MOE_BENCH_ITL].n == 3);
    CHECK(NEAR(d[MOE_BENCH_ITL].mean, 350.0 / 3) && NEAR(d[MOE_BENCH_ITL].median, 100));
    CHECK(NEAR(d[MOE_BENCH_ITL].pct[0], 198));
    /* E2EL [0.2 0.25 0.6] */
    CHECK(NEAR(d[MOE_BENCH_E2EL].mean, 350) && NEAR(d[MOE_BENCH_E2EL].median, 250));
    CHECK(NEAR(d[MOE_BENCH_E2EL].pct[1], 225));
    /* peaks: second 0 holds 3 + 2 tokens, second 1 holds 2 + 1; r1 and r2
     * overlap in [1.0, 1.1] */
    CHECK(NEAR(rep.max_output_tokens_per_s, 5));
    CHECK(NEAR(rep.max_concurrent_requests, 2));
    /* goodput: TTFT ≤ 250 and TPOT ≤ 90 keep r0 and r2 (one token: TPOT 0) */
    char msg[256];
    CHECK(moe_bench_parse_goodput(&c, "ttft:250 tpot:90", msg, sizeof msg) == 0);
    moe_bench_report_compute(&c, r, 4, 2.0, &rep);
    CHECK(NEAR(rep.request_goodput, 1.0));
    CHECK(moe_bench_parse_goodput(&c, "ttft:250,e2el:220", msg, sizeof msg) == 0);
    CHECK(c.slo_ms[MOE_BENCH_TPOT] < 0);
    moe_bench_report_compute(&c, r, 4, 2.0, &rep);
    CHECK(NEAR(rep.request_goodput, 0.5));

    /* the block: vLLM's names in vLLM's order */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    c.max_concurrency = 8;
    moe_bench_report_print(f, &c, &rep);
    fclose(f);
    CHECK(!strncmp(buf, "============ Serving Benchmark Result ============\n", 51));
    const char *order[] = {"Successful requests:                     3         \n",
                           "Failed requests:                         1         \n",
                           "Maximum request concurrency:             8         \n",
                           "Benchmark duration (s):                  2.00      \n",
                           "Total input tokens:                      60        \n",
                           "Total generated tokens:                  8         \n",
                           "Request throughput (req/s):              1.50      \n",
                           "Request goodput (req/s):                 0.50      \n",
                           "Output token throughput (tok/s):         4.00      \n",
                           "Peak output token throughput (tok/s):    5.00      \n",
                           "Peak concurrent requests:                2.00      \n",
                           "Total Token throughput (tok/s):          34.00     \n",
                           "---------------Time to First Token----------------\n",
                           "Mean TTFT (ms):                          200.00    \n",
                           "Median TTFT (ms):                        200.00    \n",
                           "P99 TTFT (ms):                           298.00    \n",
                           "P25 TTFT (ms):                           150.00    \n",
                           "-----Time per Output Token (excl. 1st token)------\n",
                           "Mean TPOT (ms):                          87.50     \n",
                           "---------------Inter-token Latency----------------\n",
                           "P99 ITL (ms):                            198.00    \n",
                           "----------------End-to-end Latency----------------\n",
                           "Median E2EL (ms):                        250.00    \n",
                           "==================================================\n"};
    const char *at = buf;
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        const char *p = strstr(at, order[i]);
        CHECK(p != NULL);
        if (!p) fprintf(stderr, "  missing or out of order: %s", order[i]);
        else at = p + strlen(order[i]);
    }
    free(buf);

    /* JSON: vLLM's keys and the values behind them */
    c.metric[MOE_BENCH_E2EL] = false;
    json_t *j = moe_bench_report_json(&c, &rep, r, 4);
    const char *keys[] = {"duration", "completed", "failed", "total_input_tokens", "total_output_tokens",
                          "request_throughput", "request_goodput", "output_throughput", "total_token_throughput",
                          "max_output_tokens_per_s", "max_concurrent_requests", "input_lens", "output_lens", "ttfts",
                          "itls", "errors", "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p99_ttft_ms",
                          "p25_ttft_ms", "mean_tpot_ms", "p99_tpot_ms", "mean_itl_ms", "p99_itl_ms"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        CHECK(json_object_get(j, keys[i]) != NULL);
        if (!json_object_get(j, keys[i])) fprintf(stderr, "  no key %s\n", keys[i]);
    }
    CHECK(json_object_get(j, "mean_e2el_ms") == NULL); /* not chosen */
    CHECK(NEAR(json_real_value(json_object_get(j, "p99_tpot_ms")), 99.75));
    CHECK(json_integer_value(json_object_get(j, "completed")) == 3);
    CHECK(json_array_size(json_object_get(j, "ttfts")) == 4);
    CHECK(NEAR(json_real_value(json_array_get(json_object_get(j, "ttfts"), 1)), 0.3));
    CHECK(json_array_size(json_array_get(json_object_get(j, "itls"), 0)) == 2);
    CHECK(!strcmp(json_string_value(json_array_get(json_object_get(j, "errors"), 3)), "HTTP 500: boom, \"quoted\""));
    json_decref(j);

    /* CSV: a header and one line per request; the error quoted */
    buf = NULL;
    f = open_memstream(&buf, &len);
    moe_bench_csv(f, r, 4);
    fclose(f);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    CHECK(lines == 5);
    CHECK(strstr(buf, "1,1,20,4,0.500000,300.000,600.000,100.000,2,200.000,\"\"\n") != NULL);
    CHECK(strstr(buf, "\"HTTP 500: boom, \"\"quoted\"\"\"\n") != NULL);
    free(buf);
    for (int i = 0; i < 4; i++) moe_bench_rec_free(&r[i]);
}

static void test_parsers(void)
{
    moe_bench_report_cfg c;
    cfg_default(&c);
    char msg[256];
    CHECK(moe_bench_parse_metrics(&c, "ttft, e2el", msg, sizeof msg) == 0);
    CHECK(c.metric[MOE_BENCH_TTFT] && !c.metric[MOE_BENCH_TPOT] && !c.metric[MOE_BENCH_ITL] && c.metric[MOE_BENCH_E2EL]);
    CHECK(moe_bench_parse_metrics(&c, "ttft,foo", msg, sizeof msg) == -1 && strstr(msg, "foo"));
    CHECK(c.metric[MOE_BENCH_E2EL]); /* unchanged by a refused value */
    CHECK(moe_bench_parse_percentiles(&c, "50,90,99.9", msg, sizeof msg) == 0 && c.n_pct == 3 && c.pct[2] == 99.9);
    CHECK(moe_bench_parse_percentiles(&c, "0", msg, sizeof msg) == -1);
    CHECK(moe_bench_parse_percentiles(&c, "100", msg, sizeof msg) == -1);
    CHECK(moe_bench_parse_percentiles(&c, "5x", msg, sizeof msg) == -1);
    CHECK(moe_bench_parse_percentiles(&c, "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", msg, sizeof msg) == -1);
    CHECK(c.n_pct == 3);
    char key[32];
    moe_bench_pct_key(99.9, key, sizeof key);
    CHECK(!strcmp(key, "p99.9"));
    moe_bench_pct_key(99, key, sizeof key);
    CHECK(!strcmp(key, "p99"));
    CHECK(moe_bench_parse_goodput(&c, "itl:5", msg, sizeof msg) == -1);
    CHECK(moe_bench_parse_goodput(&c, "ttft", msg, sizeof msg) == -1);
    CHECK(moe_bench_parse_goodput(&c, "ttft:-1", msg, sizeof msg) == -1);
    CHECK(moe_bench_parse_goodput(&c, "", msg, sizeof msg) == -1);
    CHECK(!c.goodput);
    CHECK(moe_bench_parse_goodput(&c, "e2el:1000", msg, sizeof msg) == 0 && c.goodput && c.slo_ms[MOE_BENCH_E2EL] == 1000);
}

static void test_random(void)
{
    /* arrivals: inf sends all at once; a rate gives gaps of mean 1/rate,
     * the same for the same seed */
    double at[20000], at2[20000];
    moe_bench_run_cfg rc = {.request_rate = INFINITY, .burstiness = 1, .seed = 7};
    moe_bench_arrivals(&rc, 100, at);
    CHECK(at[0] == 0 && at[99] == 0);
    for (int b = 0; b < 3; b++) {
        rc.request_rate = 10;
        rc.burstiness = b == 0 ? 1 : b == 1 ? 0.25 : 4;
        moe_bench_arrivals(&rc, 20000, at);
        moe_bench_arrivals(&rc, 20000, at2);
        CHECK(!memcmp(at, at2, sizeof at));
        double mean = at[19999] / 19999, var = 0;
        for (int i = 1; i < 20000; i++) var += pow(at[i] - at[i - 1] - mean, 2);
        var /= 19998;
        CHECK(fabs(mean - 0.1) < 0.005);
        /* gamma(k, θ) has variance kθ²: with mean 0.1, 0.01/k */
        CHECK(fabs(var / (0.01 / rc.burstiness) - 1) < 0.1);
        if (fabs(var / (0.01 / rc.burstiness) - 1) >= 0.1) fprintf(stderr, "  burstiness %g: var %g\n", rc.burstiness, var);
    }
    /* random prompts: lengths in [len(1-r), len(1+r)], ids from the vocabulary */
    const int32_t vocab[] = {5, 9, 11};
    moe_bench_rng rng = {3};
    moe_bench_prompt *p = NULL;
    moe_err err;
    CHECK(moe_bench_random(&p, 200, 100, 10, 0.5, vocab, 3, &rng, &err) == MOE_OK);
    bool in_range = true, ids_ok = true, spread = false;
    for (size_t i = 0; i < 200; i++) {
        in_range &= p[i].prompt_len >= 50 && p[i].prompt_len <= 150 && p[i].output_len >= 5 && p[i].output_len <= 15;
        in_range &= p[i].n_ids == p[i].prompt_len;
        spread |= p[i].prompt_len != p[0].prompt_len;
        for (size_t k = 0; k < p[i].n_ids; k++) ids_ok &= p[i].ids[k] == 5 || p[i].ids[k] == 9 || p[i].ids[k] == 11;
    }
    CHECK(in_range && ids_ok && spread);
    moe_bench_prompts_free(p, 200);
    CHECK(moe_bench_random(&p, 4, 7, 3, 0, vocab, 3, &rng, &err) == MOE_OK);
    CHECK(p[0].prompt_len == 7 && p[3].prompt_len == 7 && p[2].output_len == 3);
    moe_bench_prompts_free(p, 4);
    size_t n = 0;
    CHECK(moe_bench_shared_prefix(&p, &n, 3, 4, 6, 2, 5, vocab, 3, &rng, &err) == MOE_OK && n == 12);
    /* each prompt shares its first 6 ids with exactly 3 others */
    bool share_ok = true;
    for (size_t i = 0; i < n; i++) {
        int same = 0;
        for (size_t k = 0; k < n; k++) same += k != i && !memcmp(p[i].ids, p[k].ids, 6 * sizeof(int32_t));
        share_ok &= same >= 3 && p[i].n_ids == 8 && p[i].output_len == 5;
    }
    CHECK(share_ok);
    moe_bench_prompts_free(p, n);
}

static void test_scrape(void)
{
    const char *before =
        "# HELP moe:rank_live x\n# TYPE moe:rank_live gauge\n"
        "moe:rank_live{model_name=\"m}{\",rank=\"0\"} 1\nmoe:rank_live{model_name=\"m}{\",rank=\"1\"} 1\n"
        "moe:generation_tokens_total{model_name=\"m\"} 100\nmoe:prompt_tokens_total{model_name=\"m\"} 0\n"
        "moe:request_success_total{model_name=\"m\",finished_reason=\"length\"} 5\n"
        "moe:rank_step_seconds_sum{rank=\"0\"} 1.0\nmoe:rank_step_seconds_count{rank=\"0\"} 100\n"
        "moe:rank_step_seconds_sum{rank=\"1\"} 2.0\nmoe:rank_step_seconds_count{rank=\"1\"} 100\n"
        "moe:rank_exchange_bytes_sent_total{rank=\"0\"} 1000\nmoe:rank_exchange_bytes_sent_total{rank=\"1\"} 0\n"
        "moe:rank_expert_tokens_total{rank=\"0\",layer=\"1\"} 10\nmoe:rank_expert_tokens_total{rank=\"1\",layer=\"1\"} 10\n"
        "moe:rank_expert_tokens_total{rank=\"0\",layer=\"2\"} 0\nmoe:rank_expert_tokens_total{rank=\"1\",layer=\"2\"} 0\n"
        "garbage line without a number\nmoe:broken{rank=\"0\" 5\n";
    const char *after =
        "moe:rank_live{model_name=\"m}{\",rank=\"0\"} 1\nmoe:rank_live{model_name=\"m}{\",rank=\"1\"} 1\r\n"
        "moe:generation_tokens_total{model_name=\"m\"} 300\nmoe:prompt_tokens_total{model_name=\"m\"} 200\n"
        "moe:request_success_total{model_name=\"m\",finished_reason=\"length\"} 9\n"
        "moe:request_success_total{model_name=\"m\",finished_reason=\"stop\"} 1\n"
        "moe:rank_step_seconds_sum{rank=\"0\"} 1.5\nmoe:rank_step_seconds_count{rank=\"0\"} 200\n"
        "moe:rank_step_seconds_sum{rank=\"1\"} 2.2\nmoe:rank_step_seconds_count{rank=\"1\"} 200\n"
        "moe:rank_exchange_bytes_sent_total{rank=\"0\"} 5000\nmoe:rank_exchange_bytes_sent_total{rank=\"1\"} 4000\n"
        "moe:rank_expert_tokens_total{rank=\"0\",layer=\"1\"} 40\nmoe:rank_expert_tokens_total{rank=\"1\",layer=\"1\"} 20\n"
        "moe:rank_expert_tokens_total{rank=\"0\",layer=\"2\"} 20\nmoe:rank_expert_tokens_total{rank=\"1\",layer=\"2\"} 20\n";
    moe_bench_prom a, b;
    moe_bench_prom_parse(before, strlen(before), &a);
    moe_bench_prom_parse(after, strlen(after), &b);
    CHECK(a.n == 15); /* comments and the two broken lines skipped */
    char v[32];
    CHECK(moe_bench_prom_label(a.s[0].labels, "rank", v, sizeof v) && !strcmp(v, "0"));
    CHECK(moe_bench_prom_label(a.s[0].labels, "model_name", v, sizeof v) && !strcmp(v, "m}{"));
    CHECK(!moe_bench_prom_label(a.s[0].labels, "layer", v, sizeof v));
    CHECK(moe_bench_prom_sum(&b, "moe:request_success_total", NULL, NULL) == 10);
    CHECK(moe_bench_prom_sum(&b, "moe:request_success_total", "finished_reason", "stop") == 1);
    json_t *o = json_object();
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(moe_bench_cluster(f, &a, &b, o));
    fclose(f);
    /* Δ: 5 requests, 200 + 200 tokens; rank 0 0.5 s / 100 steps = 5 ms,
     * rank 1 0.2 s / 100 = 2 ms; 8000 bytes / 400 tokens = 20; layer 1
     * (30, 10): mean 20 / max 30, layer 2 (20, 20): 1 */
    CHECK(strstr(buf, "Server requests ended:                   5 ") != NULL);
    CHECK(strstr(buf, "Rank 0 mean step time (ms):              5.00") != NULL);
    CHECK(strstr(buf, "Rank 1 mean step time (ms):              2.00") != NULL);
    CHECK(strstr(buf, "Exchange bytes per token:                20.00") != NULL);
    json_t *j = json_object_get(o, "moe_cluster");
    CHECK(NEAR(json_real_value(json_object_get(j, "expert_load_balancedness_min")), 2.0 / 3));
    CHECK(NEAR(json_real_value(json_object_get(j, "expert_load_balancedness_mean")), (2.0 / 3 + 1) / 2));
    CHECK(NEAR(json_real_value(json_object_get(j, "generation_tokens")), 200));
    free(buf);
    json_decref(o);
    /* not a moe server: nothing */
    moe_bench_prom empty;
    moe_bench_prom_parse("vllm:num_requests_running 3\n", 28, &empty);
    f = open_memstream(&buf, &len);
    CHECK(!moe_bench_cluster(f, &empty, &empty, NULL));
    fclose(f);
    CHECK(len == 0);
    free(buf);
    moe_bench_prom_free(&empty);
    moe_bench_prom_free(&a);
    moe_bench_prom_free(&b);
}

int main(void)
{
    test_percentile();
    test_report();
    test_parsers();
    test_random();
    test_scrape();
    return check_summary("bench_stats_test");
}
