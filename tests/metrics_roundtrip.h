/*
 * metrics_roundtrip.h — one label value through the exposition and back,
 * shared by metrics_test and the metrics_fuzz target.
 *
 * The bytes (up to a NUL: label values are C strings) become the value of
 * a label and of the HELP text; the rendered text is read back the way a
 * Prometheus parser reads it (escapes \\ \" \n in a label value; \\ \n in
 * HELP) and must give the input with every byte that is not part of a
 * valid UTF-8 sequence replaced by U+FFFD — computed here by a decoder of
 * its own (code points and their ranges, not metrics.c's byte tables).
 * The whole exposition must be valid UTF-8 with exactly the lines expected.
 * Returns 0, or 1 with the reason on stderr.
 */
#ifndef MOE_TEST_METRICS_ROUNDTRIP_H
#define MOE_TEST_METRICS_ROUNDTRIP_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

/* Decodes one code point at s[0..n); its length, 0 if not valid UTF-8. */
static size_t rt_decode(const uint8_t *s, size_t n)
{
    uint32_t cp, min;
    size_t len;
    if (s[0] < 0x80) return 1;
    if ((s[0] & 0xE0) == 0xC0) len = 2, cp = s[0] & 0x1F, min = 0x80;
    else if ((s[0] & 0xF0) == 0xE0) len = 3, cp = s[0] & 0x0F, min = 0x800;
    else if ((s[0] & 0xF8) == 0xF0) len = 4, cp = s[0] & 0x07, min = 0x10000;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* in with invalid bytes replaced (out has room for 3 * n + 1). */
static size_t rt_expected(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        const size_t k = rt_decode(in + i, n - i);
        if (k == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3), o += 3, i++;
        } else {
            memcpy(out + o, in + i, k), o += k, i += k;
        }
    }
    return o;
}

static int rt_valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        const size_t k = rt_decode(s + i, n - i);
        if (k == 0) return 0;
        i += k;
    }
    return 1;
}

/* Unescapes from p up to the closing quote (label) or the end of the line
 * (help); *end is left after it.  -1 on a bad escape. */
static long rt_unescape(const char *p, int label, uint8_t *out, const char **end)
{
    size_t o = 0;
    for (;;) {
        const char c = *p++;
        if (c == '\0') return -1;
        if (label && c == '"') break;
        if (!label && c == '\n') break;
        if (c == '\n') return -1; /* a raw newline inside a label value */
        if (c != '\\') {
            out[o++] = (uint8_t)c;
            continue;
        }
        const char e = *p++;
        if (e == '\\') out[o++] = '\\';
        else if (e == 'n') out[o++] = '\n';
        else if (e == '"' && label) out[o++] = '"';
        else return -1;
    }
    *end = p;
    return (long)o;
}

static int rt_fail(const char *why, const char *text)
{
    fprintf(stderr, "metrics round trip: %s\n--- exposition:\n%s\n", why, text);
    return 1;
}

static int metrics_roundtrip(const uint8_t *data, size_t size)
{
    size_t n = 0;
    while (n < size && data[n]) n++;
    char *value = malloc(n + 1);
    memcpy(value, data, n);
    value[n] = '\0';
    uint8_t *want = malloc(3 * n + 1), *got = malloc(3 * n + 1);
    const size_t want_n = rt_expected(data, n, want);

    moe_metrics *m;
    moe_metrics_init(&m);
    moe_err err;
    const char *lab[] = {"model_name", "rank"};
    moe_metric *f = moe_metrics_add(m, MOE_METRIC_GAUGE, "moe:x", value, lab, 2, NULL, 0, &err);
    const char *vals[] = {value, "7"};
    moe_metric_set(moe_metric_series_get(f, vals), 1);
    char *text = NULL;
    size_t tn = 0;
    FILE *out = open_memstream(&text, &tn);
    moe_metrics_write(m, out);
    fclose(out);
    moe_metrics_free(m);

    int rc = 0;
    const char *p = text, *end;
    long k;
    if (!rt_valid_utf8((const uint8_t *)text, tn)) rc = rt_fail("the exposition is not valid UTF-8", text);
    else if (strncmp(p, "# HELP moe:x ", 13)) rc = rt_fail("no HELP line first", text);
    else if ((k = rt_unescape(p + 13, 0, got, &end)) < 0 || (size_t)k != want_n || memcmp(got, want, want_n))
        rc = rt_fail("the HELP text does not read back", text);
    else if (strncmp(p = end, "# TYPE moe:x gauge\nmoe:x{model_name=\"", 37)) rc = rt_fail("no TYPE line / sample", text);
    else if ((k = rt_unescape(p + 37, 1, got, &end)) < 0 || (size_t)k != want_n || memcmp(got, want, want_n))
        rc = rt_fail("the label value does not read back", text);
    else if (strcmp(end, ",rank=\"7\"} 1\n")) rc = rt_fail("the sample line does not end as it should", text);
    free(text);
    free(value);
    free(want);
    free(got);
    return rc;
}

#endif
