/*
 * metrics_test — the metrics registry and its Prometheus text exposition:
 * declarations refused for bad names, bounds and labels; counters, gauges,
 * histograms (cumulative buckets, +Inf, _sum, _count) rendered exactly;
 * values that read back; and label values of random bytes, escaped so that
 * a reader unescaping them gets the bytes back (invalid UTF-8 as U+FFFD).
 * The same round trip is the body of the fuzz target (metrics_fuzz.c).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "metrics.h"
#include "metrics_roundtrip.h"

/* The exposition as a string (free it). */
__attribute__((noinline)) static char *render(const moe_metrics *m)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    CHECK(moe_metrics_write(m, f) == MOE_OK);
    fclose(f);
    return s;
}

static void test_declare(void)
{
    moe_metrics *m;
    moe_metrics_init(&m);
    moe_err err;
    const char *lab[] = {"model_name", "rank"};
    const double b[] = {0.1, 1, 10};
    CHECK(moe_metrics_add(m, MOE_METRIC_GAUGE, "moe:ok_name", "h", lab, 2, NULL, 0, &err) != NULL);
    CHECK(moe_metrics_add(m, MOE_METRIC_GAUGE, "moe:ok_name", "h", lab, 2, NULL, 0, &err) == NULL);
    CHECK_CONTAINS(err.msg, "twice");
    CHECK(moe_metrics_add(m, MOE_METRIC_GAUGE, "9lives", "h", NULL, 0, NULL, 0, &err) == NULL);
    CHECK(moe_metrics_add(m, MOE_METRIC_GAUGE, "a-b", "h", NULL, 0, NULL, 0, &err) == NULL);
    CHECK(moe_metrics_add(m, MOE_METRIC_GAUGE, "", "h", NULL, 0, NULL, 0, &err) == NULL);
    const char *bad1[] = {"le"}, *bad2[] = {"__x"}, *bad3[] = {"a:b"}, *dup[] = {"a", "a"};
    CHECK(moe_metrics_add(m, MOE_METRIC_GAUGE, "g1", "h", bad1, 1, NULL, 0, &err) == NULL);
    CHECK(moe_metrics_add(m, MOE_METRIC_GAUGE, "g2", "h", bad2, 1, NULL, 0, &err) == NULL);
    CHECK(moe_metrics_add(m, MOE_METRIC_GAUGE, "g3", "h", bad3, 1, NULL, 0, &err) == NULL);
    CHECK(moe_metrics_add(m, MOE_METRIC_GAUGE, "g4", "h", dup, 2, NULL, 0, &err) == NULL);
    CHECK(moe_metrics_add(m, MOE_METRIC_GAUGE, "g5", "h", lab, MOE_METRIC_MAX_LABELS + 1, NULL, 0, &err) == NULL);
    CHECK(moe_metrics_add(m, MOE_METRIC_GAUGE, "g6", "h", NULL, 0, b, 3, &err) == NULL);
    const double desc[] = {1, 0.5}, same[] = {1, 1}, inf[] = {1, INFINITY};
    CHECK(moe_metrics_add(m, MOE_METRIC_HISTOGRAM, "h1", "h", NULL, 0, desc, 2, &err) == NULL);
    CHECK(moe_metrics_add(m, MOE_METRIC_HISTOGRAM, "h2", "h", NULL, 0, same, 2, &err) == NULL);
    CHECK(moe_metrics_add(m, MOE_METRIC_HISTOGRAM, "h3", "h", NULL, 0, inf, 2, &err) == NULL);
    CHECK(moe_metrics_add(m, MOE_METRIC_HISTOGRAM, "h4", "h", NULL, 0, b, 0, &err) == NULL);
    CHECK(moe_metrics_add(m, MOE_METRIC_HISTOGRAM, "h5", "h", NULL, 0, b, 3, &err) != NULL);
    moe_metrics_free(m);
}

static void test_render(void)
{
    moe_metrics *m;
    moe_metrics_init(&m);
    moe_err err;
    const char *lab[] = {"model_name"}, *lab2[] = {"model_name", "finished_reason"};
    const double b[] = {0.1, 1, 2.5};
    moe_metric *c = moe_metrics_add(m, MOE_METRIC_COUNTER, "moe:x_total", "Things.\nDone \\ here", lab2, 2, NULL, 0, &err);
    moe_metric *g = moe_metrics_add(m, MOE_METRIC_GAUGE, "moe:g", "A gauge", NULL, 0, NULL, 0, &err);
    moe_metric *h = moe_metrics_add(m, MOE_METRIC_HISTOGRAM, "moe:h_seconds", "Times", lab, 1, b, 3, &err);
    CHECK(c && g && h);
    const char *v1[] = {"m", "stop"}, *v2[] = {"m", "length"};
    moe_metric_series *s1 = moe_metric_series_get(c, v1);
    CHECK(moe_metric_series_get(c, v1) == s1); /* found again, not made twice */
    moe_metric_add(s1, 2);
    moe_metric_add(s1, -5);  /* a counter never goes down */
    moe_metric_add(s1, NAN);
    moe_metric_add(moe_metric_series_get(c, v2), 1);
    CHECK(moe_metric_value(s1) == 2);
    moe_metric_set(moe_metric_series_get(g, NULL), 0.1);
    moe_metric_series *hs = moe_metric_series_get1(h, "m");
    const double obs[] = {0.05, 0.1, 0.5, 3, 100, NAN};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++) moe_metric_observe(hs, obs[i]);
    CHECK(moe_metric_count(hs) == 5);
    CHECK(fabs(moe_metric_sum(hs) - 103.65) < 1e-9);
    char *s = render(m);
    const char *want =
        "# HELP moe:x_total Things.\\nDone \\\\ here\n"
        "# TYPE moe:x_total counter\n"
        "moe:x_total{model_name=\"m\",finished_reason=\"stop\"} 2\n"
        "moe:x_total{model_name=\"m\",finished_reason=\"length\"} 1\n"
        "# HELP moe:g A gauge\n"
        "# TYPE moe:g gauge\n"
        "moe:g 0.1\n"
        "# HELP moe:h_seconds Times\n"
        "# TYPE moe:h_seconds histogram\n"
        "moe:h_seconds_bucket{model_name=\"m\",le=\"0.1\"} 2\n"
        "moe:h_seconds_bucket{model_name=\"m\",le=\"1\"} 3\n"
        "moe:h_seconds_bucket{model_name=\"m\",le=\"2.5\"} 3\n"
        "moe:h_seconds_bucket{model_name=\"m\",le=\"+Inf\"} 5\n"
        "moe:h_seconds_sum{model_name=\"m\"} 103.65\n"
        "moe:h_seconds_count{model_name=\"m\"} 5\n";
    CHECK_MSG(!strcmp(s, want), "got:\n%s", s);
    free(s);

    /* a peer's own histogram, loaded whole */
    const uint64_t counts[] = {1, 0, 2, 4};
    CHECK(moe_metric_load(hs, counts, 3, 1.5) == MOE_ERR);
    CHECK(moe_metric_load(hs, counts, 4, 1.5) == MOE_OK);
    CHECK(moe_metric_count(hs) == 7 && moe_metric_sum(hs) == 1.5);
    CHECK(moe_metric_load(s1, counts, 4, 1.5) == MOE_ERR); /* not a histogram */

    /* values that read back; the infinities and NaN as Prometheus spells them */
    moe_metric_series *gs = moe_metric_series_get(g, NULL);
    const double vals[] = {1.0 / 3, 1e300, -2.5e-300, 123456789012345678.0, 0.1 + 0.2};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        moe_metric_set(gs, vals[i]);
        char *t = render(m);
        const char *line = strstr(t, "\nmoe:g ");
        const double back = line ? strtod(line + 7, NULL) : NAN;
        free(t);
        CHECK(back == vals[i]);
    }
    const struct { double v; const char *text; } special[] = {{INFINITY, "\nmoe:g +Inf\n"}, {-INFINITY, "\nmoe:g -Inf\n"},
                                                              {NAN, "\nmoe:g NaN\n"}};
    for (size_t i = 0; i < 3; i++) {
        moe_metric_set(gs, special[i].v);
        s = render(m);
        CHECK_CONTAINS(s, special[i].text);
        free(s);
    }
    moe_metric_clear(c);
    s = render(m);
    CHECK(!strstr(s, "moe:x_total{") && strstr(s, "# TYPE moe:x_total counter"));
    free(s);
    moe_metrics_free(m);
}

/* Label values of random bytes: what a reader unescapes is the input with
 * every byte outside valid UTF-8 replaced by U+FFFD. */
static void test_escaping(void)
{
    static const char *const fixed[] = {"", "plain", "a\"b", "back\\slash", "new\nline", "\\n", "\"\"\\\\",
                                        "caf\xC3\xA9", "\xFF\xFE", "\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80",
                                        "\xE2\x82", "ok\xF0\x9F\x98\x80"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        CHECK_MSG(metrics_roundtrip((const uint8_t *)fixed[i], strlen(fixed[i])) == 0, "case %zu", i);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    const int rounds = SANITIZED ? 2000 : 20000;
    for (int r = 0; r < rounds; r++) {
        uint8_t buf[48];
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const size_t n = (size_t)(x % sizeof buf);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* bias towards the bytes that matter: quotes, backslashes, newlines, UTF-8 leads */
            static const uint8_t hot[] = {'"', '\\', '\n', 'n', 0xC3, 0xA9, 0xE2, 0x82, 0xF0, 0x9F, 0xED, 0x80, 0xBF};
            buf[i] = (x & 1) ? hot[(x >> 8) % sizeof hot] : (uint8_t)(x >> 16);
        }
        if (metrics_roundtrip(buf, n) != 0) {
            CHECK_MSG(0, "round trip failed in round %d", r);
            break;
        }
    }
}

int main(void)
{
    test_declare();
    test_render();
    test_escaping();
    return check_summary("metrics_test");
}
