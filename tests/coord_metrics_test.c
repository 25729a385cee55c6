/*
 * coord_metrics_test — the coordinator's metrics from made-up events, read
 * back from the rendered text: a request's phases land in the right
 * histograms with the right sums, its prompt is counted once, the ranks'
 * figures are mirrored, the KV usage is over the live ranks only, and the
 * expert-load balancedness is mean/max over the live ranks in the window
 * (a rank that restarted counts from its new zero).  The heap gauge
 * follows what the process has allocated (glibc's allocator only: under
 * ASan, whose allocator mallinfo2 does not see, only its presence is
 * checked).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "coord_metrics.h"

static char *text;

__attribute__((noinline)) static void render(moe_cmetrics *cm, const bool *alive, int running, int waiting)
{
    free(text);
    text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    const moe_cmetrics_state st = {.running = running, .waiting = waiting, .rank_alive = alive};
    CHECK(moe_cmetrics_write(cm, &st, 0, f) == MOE_OK);
    fclose(f);
}

/* The value of the sample line that starts with `series` (NAN if none). */
static double get(const char *series)
{
    const size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ') return strtod(p + n + 1, NULL);
    return NAN;
}

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)

static void test_request(void)
{
    moe_cmetrics *cm;
    moe_cmetrics_init(&cm, "m\"x", 2);
    const bool alive[2] = {true, true};
    moe_req_timing t = {.arrival = 100.0};
    moe_cmetrics_placed(cm, &t, 7, 100.5);
    moe_cmetrics_placed(cm, &t, 7, 100.7); /* a replay: not a new prompt */
    moe_cmetrics_token(cm, &t, 101.0);
    moe_cmetrics_token(cm, &t, 101.1);
    moe_cmetrics_token(cm, &t, 101.3);
    moe_cmetrics_finished(cm, &t, "length", 101.4);
    moe_req_timing u = {.arrival = 200.0}; /* cancelled in the queue */
    moe_cmetrics_finished(cm, &u, "cancelled", 202.0);
    render(cm, alive, 3, 4);
    const char *M = "{model_name=\"m\\\"x\"}";
    char s[256];
#define G(name) (snprintf(s, sizeof s, "moe:" name "%s", M), get(s))
    CHECK(G("num_requests_running") == 3 && G("num_requests_waiting") == 4);
    CHECK(G("prompt_tokens_total") == 7);
    CHECK(G("generation_tokens_total") == 3);
    CHECK(G("time_to_first_token_seconds_count") == 1 && NEAR(G("time_to_first_token_seconds_sum"), 1.0));
    CHECK(G("inter_token_latency_seconds_count") == 2 && NEAR(G("inter_token_latency_seconds_sum"), 0.3));
    CHECK(G("e2e_request_latency_seconds_count") == 2 && NEAR(G("e2e_request_latency_seconds_sum"), 1.4 + 2.0));
    CHECK(G("request_queue_time_seconds_count") == 1 && NEAR(G("request_queue_time_seconds_sum"), 0.5));
    CHECK(G("request_prefill_time_seconds_count") == 1 && NEAR(G("request_prefill_time_seconds_sum"), 0.5));
    CHECK(G("request_decode_time_seconds_count") == 1 && NEAR(G("request_decode_time_seconds_sum"), 0.3));
    /* TTFT 1.0 s: in the le="1" bucket, not in le="0.75" */
    CHECK(get("moe:time_to_first_token_seconds_bucket{model_name=\"m\\\"x\",le=\"0.75\"}") == 0);
    CHECK(get("moe:time_to_first_token_seconds_bucket{model_name=\"m\\\"x\",le=\"1\"}") == 1);
    CHECK(get("moe:request_success_total{model_name=\"m\\\"x\",finished_reason=\"length\"}") == 1);
    CHECK(get("moe:request_success_total{model_name=\"m\\\"x\",finished_reason=\"cancelled\"}") == 1);
    CHECK(get("moe:request_success_total{model_name=\"m\\\"x\",finished_reason=\"stop\"}") == 0);
#undef G
    moe_cmetrics_free(cm);
}

static void report(moe_cmetrics *cm, int rank, uint64_t used, uint64_t l1, uint64_t l2, double now)
{
    const uint64_t steps[15] = {3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const uint64_t ex[2] = {l1, l2};
    const moe_rank_report rep = {
        .rank = rank, .sequences = (int64_t)used, .has_stats = true, .steps = 4, .step_seconds_sum = 40.5,
        .step_counts = steps, .n_step_counts = 15, .cache_blocks_total = 10, .cache_blocks_used = used,
        .xchg_bytes_sent = 1000u + (unsigned)rank, .first_moe_layer = 1, .n_moe_layers = 2, .expert_tokens = ex,
    };
    moe_cmetrics_rank_report(cm, &rep, now);
}

#define R(name, rank) "moe:" name "{model_name=\"m\",rank=\"" #rank "\"}"
#define L(layer) "moe:expert_load_balancedness{model_name=\"m\",layer=\"" #layer "\"}"

static void test_ranks(void)
{
    moe_cmetrics *cm;
    moe_cmetrics_init(&cm, "m", 2);
    bool alive[2] = {true, true};
    render(cm, alive, 0, 0);
    CHECK(get(R("rank_live", 1)) == 1 && get("moe:kv_cache_usage_perc{model_name=\"m\"}") == 0);
    CHECK(isnan(get(L(1)))); /* nothing routed yet: no sample */
    double now = 1000;
    report(cm, 0, 5, 30, 10, now);
    report(cm, 1, 0, 10, 10, now);
    render(cm, alive, 0, 0);
    CHECK(get(R("rank_sequences", 0)) == 5 && get(R("rank_cache_blocks_used", 0)) == 5);
    CHECK(get(R("rank_cache_blocks_total", 1)) == 10);
    CHECK(get(R("rank_exchange_bytes_sent_total", 1)) == 1001);
    CHECK(get(R("rank_step_seconds_count", 0)) == 4 && get(R("rank_step_seconds_sum", 0)) == 40.5);
    CHECK(get("moe:rank_step_seconds_bucket{model_name=\"m\",rank=\"0\",le=\"0.001\"}") == 3);
    CHECK(get("moe:rank_step_seconds_bucket{model_name=\"m\",rank=\"0\",le=\"30\"}") == 3);
    CHECK(get("moe:rank_step_seconds_bucket{model_name=\"m\",rank=\"0\",le=\"+Inf\"}") == 4);
    CHECK(get("moe:rank_expert_tokens_total{model_name=\"m\",rank=\"0\",layer=\"1\"}") == 30);
    CHECK(get("moe:rank_expert_tokens_total{model_name=\"m\",rank=\"1\",layer=\"2\"}") == 10);
    CHECK(NEAR(get("moe:kv_cache_usage_perc{model_name=\"m\"}"), 5.0 / 20));
    CHECK(NEAR(get(L(1)), 20.0 / 30) && NEAR(get(L(2)), 1.0));
    /* rank 1 lost: not counted in the cache usage or the balance */
    alive[1] = false;
    render(cm, alive, 0, 0);
    CHECK(get(R("rank_live", 1)) == 0 && get(R("rank_sequences", 1)) == 0);
    CHECK(NEAR(get("moe:kv_cache_usage_perc{model_name=\"m\"}"), 0.5));
    CHECK(NEAR(get(L(1)), 1.0));
    alive[1] = true;
    /* a minute of the same totals: the window holds no work, no sample */
    for (int i = 0; i < 13; i++) {
        now += 5;
        report(cm, 0, 0, 30, 10, now);
        report(cm, 1, 0, 10, 10, now);
    }
    render(cm, alive, 0, 0);
    CHECK(isnan(get(L(1))) && isnan(get(L(2))));
    /* new work on layer 1, all on rank 0 */
    report(cm, 0, 0, 40, 10, now + 1);
    render(cm, alive, 0, 0);
    CHECK(NEAR(get(L(1)), 0.5) && isnan(get(L(2))));
    /* rank 1 restarted: its totals start again (below the window's baseline) */
    report(cm, 1, 0, 10, 4, now + 2);
    render(cm, alive, 0, 0);
    CHECK(NEAR(get(L(1)), 1.0));               /* 10 and 10 */
    CHECK(NEAR(get(L(2)), 0.5));               /* 0 and 4 */
    /* a report with another layer shape is mirrored per rank but not in the window */
    const uint64_t ex3[3] = {1, 2, 3};
    const moe_rank_report odd = {.rank = 0, .has_stats = true, .cache_blocks_total = 10, .first_moe_layer = 0,
                                 .n_moe_layers = 3, .expert_tokens = ex3};
    moe_cmetrics_rank_report(cm, &odd, now + 3);
    render(cm, alive, 0, 0);
    CHECK(NEAR(get(L(1)), 1.0));
    moe_cmetrics_free(cm);
}

#if defined(__SANITIZE_ADDRESS__)
#define GLIBC_HEAP 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GLIBC_HEAP 0
#endif
#endif
#ifndef GLIBC_HEAP
#define GLIBC_HEAP 1
#endif

#define HEAP_USED "moe:coordinator_heap_bytes{model_name=\"m\",kind=\"in_use\"}"
#define HEAP_FREE "moe:coordinator_heap_bytes{model_name=\"m\",kind=\"free\"}"

static void test_heap(void)
{
    moe_cmetrics *cm;
    moe_cmetrics_init(&cm, "m", 1);
    const bool alive[1] = {true};
    render(cm, alive, 0, 0);
    const double u0 = get(HEAP_USED), f0 = get(HEAP_FREE);
    CHECK(u0 >= 0 && f0 >= 0); /* both there (NAN fails) */
    if (GLIBC_HEAP) {
        /* 1 MiB in 64 blocks of 16 KiB (under the mmap threshold: heap) */
        enum { N = 64, B = 16 << 10 };
        char *blk[N];
        for (int i = 0; i < N; i++) {
            blk[i] = malloc(B);
            CHECK(blk[i] != NULL);
            if (blk[i]) memset(blk[i], i, B);
        }
        render(cm, alive, 0, 0);
        const double u1 = get(HEAP_USED);
        CHECK(u1 - u0 >= 0.9 * N * B);
        for (int i = 0; i < N; i++) free(blk[i]);
        render(cm, alive, 0, 0);
        CHECK(u1 - get(HEAP_USED) >= 0.9 * N * B);
    } else {
        printf("coord_metrics_test: under ASan the heap gauge is checked for presence only\n");
    }
    moe_cmetrics_free(cm);
}

int main(void)
{
    test_request();
    test_ranks();
    test_heap();
    free(text);
    return check_summary("coord_metrics_test");
}
