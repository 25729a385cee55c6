/*
 * gguf_truncation.c — every prefix of each model fixture's header, metadata
 * and tensor-info region (0 .. data offset bytes), and a sample of prefixes
 * ending inside the tensor data, must be rejected by moe_gguf_open_memory
 * with a truncation error — never accepted, never a crash (this runs under
 * ASan+UBSan too).  Each prefix is an exactly sized heap copy, so a read one
 * byte past it is caught.  The whole file must open.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gguf.h"

static const char *const models[] = {
    "tiny_f32", "tiny_f16", "tiny_q8_0", "v2lite_mini_f32", "v2lite_mini_fused_f32", "v3_mini_f32", "v3_mini_q8_0",
};

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *p = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 0 && fseek(f, 0, SEEK_SET) == 0) {
            p = malloc((size_t)n);
            if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
                free(p);
                p = NULL;
            }
            *size = (size_t)n;
        }
    }
    fclose(f);
    return p;
}

/* A prefix error must be about size, not a misreading of the bytes. */
static int is_size_error(const char *msg)
{
    static const char *const kinds[] = {"truncated", "exceeds what the file can hold", "exceeds the file size",
                                        "runs past the end of the file"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strstr(msg, kinds[i])) return 1;
    return 0;
}

static long n_prefixes;

/* Opens the first len bytes; want_ok says whether it must succeed. */
static void try_prefix(const char *model, const uint8_t *file, size_t len, int want_ok)
{
    uint8_t *p = malloc(len ? len : 1);
    if (len) memcpy(p, file, len);
    moe_gguf *g = (moe_gguf *)p;
    moe_err err = {{0}};
    int rc = moe_gguf_open_memory(&g, p, len, &err);
    n_prefixes++;
    if (want_ok) {
        CHECK_MSG(rc == MOE_OK, "%s: prefix of %zu bytes rejected: %s", model, len, err.msg);
    } else {
        CHECK_MSG(rc == MOE_ERR, "%s: prefix of %zu bytes accepted", model, len);
        CHECK_MSG(rc == MOE_OK || g == NULL, "%s: prefix of %zu bytes: handle not NULL", model, len);
        if (rc == MOE_ERR)
            CHECK_MSG(is_size_error(err.msg), "%s: prefix of %zu bytes: unexpected error \"%s\"", model, len, err.msg);
    }
    if (rc == MOE_OK) moe_gguf_close(g);
    free(p);
}

int main(void)
{
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        char rel[128];
        snprintf(rel, sizeof rel, "models/%s.gguf", models[m]);
        const char *path = fixture_path(rel);
        size_t size = 0;
        uint8_t *file = read_file(path, &size);
        CHECK_MSG(file != NULL, "missing or unreadable fixture %s", path);
        if (!file) continue;

        moe_gguf *g;
        moe_err err;
        if (moe_gguf_open_memory(&g, file, size, &err) != MOE_OK) {
            CHECK_MSG(0, "%s: the whole file is rejected: %s", path, err.msg);
            free(file);
            continue;
        }
        uint64_t data_off = moe_gguf_data_offset(g), data_end = data_off;
        int n_tensors = moe_gguf_n_tensors(g);
        CHECK_MSG(n_tensors > 0, "%s: no tensors", path);
        uint64_t *cuts = malloc(sizeof *cuts * (size_t)(2 * n_tensors + 1));
        int n_cuts = 0;
        for (int i = 0; i < n_tensors; i++) {
            const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
            if (t->offset + t->size > data_end) data_end = t->offset + t->size;
            /* One byte short of each tensor's end, and its first byte. */
            cuts[n_cuts++] = t->offset + t->size - 1;
            cuts[n_cuts++] = t->offset + 1;
        }
        moe_gguf_close(g);
        long before = n_prefixes;

        /* Every prefix of the header, metadata and tensor-info region. */
        for (uint64_t len = 0; len <= data_off; len++) try_prefix(models[m], file, (size_t)len, 0);
        /* Into the data: each tensor's boundaries and ~500 evenly spaced cuts. */
        for (int i = 0; i < n_cuts; i++)
            if (cuts[i] > data_off && cuts[i] < data_end) try_prefix(models[m], file, (size_t)cuts[i], 0);
        uint64_t step = (data_end - data_off) / 500 + 1;
        for (uint64_t len = data_off + 1; len < data_end; len += step) try_prefix(models[m], file, (size_t)len, 0);
        try_prefix(models[m], file, (size_t)data_end - 1, 0);
        /* Past the last tensor's data only padding follows: any such prefix is a whole file. */
        try_prefix(models[m], file, (size_t)data_end, 1);
        try_prefix(models[m], file, size, 1);
        printf("gguf_truncation: %-24s %8zu bytes, data offset %6llu: %ld prefixes checked\n", models[m], size,
               (unsigned long long)data_off, n_prefixes - before);
        free(cuts);
        free(file);
    }
    printf("gguf_truncation: %ld prefixes of %zu fixtures checked\n", n_prefixes, sizeof models / sizeof models[0]);
    return check_summary("gguf_truncation");
}
