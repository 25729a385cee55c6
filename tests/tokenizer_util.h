/*
 * tokenizer_util.h — helpers shared by the tokenizer and chat tests:
 * reading a whole file, hex decoding, and the fixtures' TSV lines.
 */
#ifndef MOE_TEST_TOKENIZER_UTIL_H
#define MOE_TEST_TOKENIZER_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a whole file (NUL-terminated); NULL if it cannot be read. */
static inline char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    size_t r;
    while ((r = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) b = realloc(b, cap *= 2);
    }
    fclose(f);
    b[n] = 0;
    if (len) *len = n;
    return b;
}

static inline int tu_hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes n hex digits into out (n/2 bytes); -1 on a bad digit. */
static inline int tu_unhex(const char *h, size_t n, char *out)
{
    if (n % 2) return -1;
    for (size_t i = 0; i < n; i += 2) {
        int a = tu_hexval(h[i]), b = tu_hexval(h[i + 1]);
        if (a < 0 || b < 0) return -1;
        out[i / 2] = (char)(a * 16 + b);
    }
    return 0;
}

/* Splits a line into at most max TAB-separated fields (in place). */
static inline int tu_fields(char *line, char **f, int max)
{
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p && n < max; p++)
        if (*p == '\t') {
            *p = 0;
            f[n++] = p + 1;
        }
    return n;
}

/* Parses space-separated ids; returns the count (or -1 on bad text). */
static inline long tu_ids(const char *s, int32_t *ids, size_t cap)
{
    long n = 0;
    while (*s) {
        while (*s == ' ') s++;
        if (!*s) break;
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT32_MAX || (size_t)n >= cap) return -1;
        ids[n++] = (int32_t)v;
        s = end;
    }
    return n;
}

#endif
