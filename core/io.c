/*
 * io.c — whole-file reads and token-id lists (io.h).
 */
#include "io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int moe_file_read(const char *path, size_t max_bytes, char **out, size_t *len, moe_err *err)
{
    *out = NULL;
    *len = 0;
    const bool is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) return moe_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = moe_xmalloc(cap + 1);
    int rc = MOE_OK;
    for (;;) {
        if (n == cap) {
            if (cap > max_bytes) break;
            cap = cap * 2 > max_bytes + 1 ? max_bytes + 1 : cap * 2;
            buf = moe_xrealloc(buf, cap + 1);
        }
        const size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    if (ferror(f)) rc = moe_err_set(err, "%s: read error", path);
    else if (n > max_bytes) rc = moe_err_set(err, "%s: larger than %zu bytes", path, max_bytes);
    if (!is_stdin) fclose(f);
    if (rc) {
        free(buf);
        return MOE_ERR;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return MOE_OK;
}

int moe_ids_parse(const char *s, size_t len, int32_t **out, size_t *n, moe_err *err)
{
    *out = NULL;
    *n = 0;
    if (len == 0) return moe_err_set(err, "empty id list");
    size_t cap = 16, k = 0, i = 0;
    int32_t *ids = moe_xmalloc(cap * sizeof *ids);
    for (;;) {
        size_t j = i;
        while (j < len && s[j] != ',') j++;
        const size_t il = j - i;
        char item[24];
        /* every character a digit: strtoll alone lets blanks and '+' through */
        bool digits = il > 0 && il < sizeof item;
        for (size_t q = i; digits && q < j; q++) digits = s[q] >= '0' && s[q] <= '9';
        if (!digits) {
            free(ids);
            if (il == 0) return moe_err_set(err, "id %zu is empty", k + 1);
            return moe_err_set(err, "id %zu ('%.*s') is not a token id", k + 1, (int)(il < 32 ? il : 32), s + i);
        }
        memcpy(item, s + i, il);
        item[il] = 0;
        int64_t v;
        if (moe_parse_i64(item, 0, INT32_MAX, &v, err)) {
            free(ids);
            return moe_err_prefix(err, "id %zu", k + 1);
        }
        if (k == MOE_IDS_MAX) {
            free(ids);
            return moe_err_set(err, "more than %d ids", MOE_IDS_MAX);
        }
        if (k == cap) ids = moe_xrealloc(ids, (cap *= 2) * sizeof *ids);
        ids[k++] = (int32_t)v;
        if (j == len) break;
        i = j + 1;
    }
    *out = ids;
    *n = k;
    return MOE_OK;
}
