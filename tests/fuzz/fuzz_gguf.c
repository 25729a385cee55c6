/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader.
 *
 * Every input goes through moe_gguf_open_memory.  A rejected input must
 * come back with a message and a NULL handle; an accepted one is walked
 * completely — every key through its getters, every string and array
 * element, every tensor's first and last data byte — and the invariants the
 * reader promises are checked, so that anything it let through is safe to
 * use.  The input buffer is exactly sized, so ASan catches a read past it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "gguf.h"

static volatile uint64_t sink;

#define REQUIRE(cond)                                                                   \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fuzz_gguf: invariant failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

static void touch(const void *p, uint64_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0;
    for (uint64_t i = 0; i < n; i++) h = h * 31 + b[i];
    sink += h;
}

static size_t elem_size(moe_gguf_vtype t)
{
    switch (t) {
    case MOE_GGUF_U8: case MOE_GGUF_I8: case MOE_GGUF_BOOL: return 1;
    case MOE_GGUF_U16: case MOE_GGUF_I16: return 2;
    case MOE_GGUF_U32: case MOE_GGUF_I32: case MOE_GGUF_F32: return 4;
    case MOE_GGUF_U64: case MOE_GGUF_I64: case MOE_GGUF_F64: return 8;
    default: return 0;
    }
}

static void walk_kv(const moe_gguf *g, int i, const uint8_t *base, uint64_t size)
{
    const char *key = moe_gguf_kv_key(g, i);
    moe_gguf_vtype t = moe_gguf_kv_type(g, i);
    REQUIRE(key && key[0] && strlen(key) <= MOE_GGUF_MAX_KEY_LEN);
    REQUIRE(moe_gguf_find_kv(g, key) == i); /* duplicates were rejected */
    REQUIRE((unsigned)t < MOE_GGUF_NTYPES);

    uint64_t raw_size;
    const uint8_t *raw = moe_gguf_kv_raw(g, i, &raw_size);
    REQUIRE(raw >= base && raw_size <= size && (uint64_t)(raw - base) <= size - raw_size);
    touch(raw, raw_size);

    /* Every typed getter: each either succeeds or explains itself. */
    moe_err err;
    uint64_t u;
    int64_t s;
    uint32_t u32;
    double f;
    float f32;
    bool b;
    const char *str;
    uint64_t len;
    moe_gguf_arr arr;
    if (moe_gguf_get_u64(g, key, &u, &err) == MOE_OK) sink += u; else REQUIRE(err.msg[0]);
    if (moe_gguf_get_i64(g, key, &s, &err) == MOE_OK) sink += (uint64_t)s; else REQUIRE(err.msg[0]);
    if (moe_gguf_get_u32(g, key, &u32, &err) == MOE_OK) sink += u32; else REQUIRE(err.msg[0]);
    if (moe_gguf_get_f64(g, key, &f, &err) == MOE_OK) sink += f == f; else REQUIRE(err.msg[0]);
    if (moe_gguf_get_f32(g, key, &f32, &err) == MOE_OK) sink += f32 == f32; else REQUIRE(err.msg[0]);
    if (moe_gguf_get_bool(g, key, &b, &err) == MOE_OK) sink += b; else REQUIRE(t != MOE_GGUF_BOOL);
    if (moe_gguf_get_str(g, key, &str, &len, &err) == MOE_OK) {
        REQUIRE(t == MOE_GGUF_STRING && len <= MOE_GGUF_MAX_STRING_LEN);
        REQUIRE((const uint8_t *)str >= base && len <= size && (uint64_t)((const uint8_t *)str - base) <= size - len);
        touch(str, len);
    } else {
        REQUIRE(t != MOE_GGUF_STRING);
    }
    if (t == MOE_GGUF_BOOL) REQUIRE(raw[0] <= 1);
    if (moe_gguf_kv_scalar_i64(g, i, &s) == MOE_OK) sink += (uint64_t)s;
    if (moe_gguf_kv_scalar_u64(g, i, &u) == MOE_OK) sink += u;
    if (moe_gguf_kv_scalar_f64(g, i, &f) == MOE_OK) sink += f == f;

    if (moe_gguf_get_arr(g, key, &arr, &err) != MOE_OK) {
        REQUIRE(t != MOE_GGUF_ARRAY);
        return;
    }
    REQUIRE(t == MOE_GGUF_ARRAY && arr.type != MOE_GGUF_ARRAY && (unsigned)arr.type < MOE_GGUF_NTYPES);
    REQUIRE(arr.count <= MOE_GGUF_MAX_ARRAY_LEN && arr.kv == i);
    if (arr.type == MOE_GGUF_STRING) {
        for (uint64_t j = 0; j < arr.count; j++) {
            const char *e = moe_gguf_arr_str(g, &arr, j, &len);
            REQUIRE((const uint8_t *)e >= base && len <= size && (uint64_t)((const uint8_t *)e - base) <= size - len);
            touch(e, len);
        }
    } else {
        uint64_t n = arr.count * elem_size(arr.type);
        const uint8_t *d = arr.data;
        REQUIRE(d >= base && n <= size && (uint64_t)(d - base) <= size - n);
        touch(d, n);
        if (arr.type == MOE_GGUF_BOOL)
            for (uint64_t j = 0; j < arr.count; j++) REQUIRE(d[j] <= 1);
    }
}

static void walk_tensor(const moe_gguf *g, int i, const uint8_t *base, uint64_t size)
{
    const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
    REQUIRE(t->name && t->name[0] && strlen(t->name) <= MOE_GGUF_MAX_NAME_LEN);
    REQUIRE(moe_gguf_find_tensor(g, t->name) == t);
    const moe_dtype_info *info = moe_dtype_info_get(t->type);
    REQUIRE(info != NULL);
    REQUIRE(t->n_dims >= 1 && t->n_dims <= MOE_GGUF_MAX_DIMS);
    uint64_t n = 1;
    for (int d = 0; d < MOE_GGUF_MAX_DIMS; d++) {
        REQUIRE(t->ne[d] >= 1);
        if ((uint32_t)d >= t->n_dims) REQUIRE(t->ne[d] == 1);
        REQUIRE(moe_mul_u64(n, t->ne[d], &n));
    }
    REQUIRE(n == t->n_elems && t->ne[0] % info->block_elems == 0);
    uint64_t bytes;
    REQUIRE(moe_dtype_bytes(t->type, t->n_elems, &bytes) && bytes == t->size);
    REQUIRE(t->offset >= moe_gguf_data_offset(g) && (t->offset - moe_gguf_data_offset(g)) % moe_gguf_alignment(g) == 0);
    REQUIRE(t->size >= 1 && t->offset <= size && t->size <= size - t->offset);
    REQUIRE((const uint8_t *)t->data == base + t->offset);
    const uint8_t *d = t->data;
    sink += d[0] + d[t->size - 1];
    /* No other tensor starts inside this one. */
    if (moe_gguf_n_tensors(g) <= 64)
        for (int j = 0; j < moe_gguf_n_tensors(g); j++) {
            const moe_gguf_tensor *o = moe_gguf_tensor_at(g, j);
            REQUIRE(j == i || o->offset + o->size <= t->offset || t->offset + t->size <= o->offset);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int not_null;
    moe_gguf *g = (moe_gguf *)&not_null; /* must come back NULL on error */
    moe_err err = {{0}};
    if (moe_gguf_open_memory(&g, data, size, &err) != MOE_OK) {
        REQUIRE(g == NULL && err.msg[0] != 0);
        return 0;
    }
    REQUIRE(g != NULL && moe_gguf_base(g) == data && moe_gguf_file_size(g) == size);
    uint32_t v = moe_gguf_version(g), a = moe_gguf_alignment(g);
    REQUIRE(v == 2 || v == 3);
    REQUIRE(moe_is_pow2(a) && a <= MOE_GGUF_MAX_ALIGNMENT && moe_gguf_data_offset(g) % a == 0);
    REQUIRE(moe_gguf_n_kv(g) >= 0 && moe_gguf_n_tensors(g) >= 0);
    for (int i = 0; i < moe_gguf_n_kv(g); i++) walk_kv(g, i, data, size);
    for (int i = 0; i < moe_gguf_n_tensors(g); i++) walk_tensor(g, i, data, size);
    REQUIRE(moe_gguf_find_kv(g, "") == -1 && moe_gguf_find_tensor(g, "") == NULL);
    moe_gguf_close(g);
    return 0;
}
