/*
 * gguf_reader.c — the GGUF reader on handcrafted files: one case per
 * validation rule (each checks its specific error message), and positive
 * cases (v2/v3, custom alignment, every value type, getters).
 *
 * Every file is built in memory with gguf_builder.h and handed to
 * moe_gguf_open_memory as an exactly sized heap copy, so under ASan a read
 * one byte past the end is caught.
 *
 *   gguf_reader                    run the cases
 *   gguf_reader --write-seeds DIR  also write every handcrafted file to DIR
 *                                  (the fuzz test's seed corpus)
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "dtype.h"
#include "gguf.h"
#include "gguf_builder.h"

static int n_cases;
static const char *seed_dir;

static void save_seed(const gb *b)
{
    if (!seed_dir || b->n > 65536) return; /* the fuzz run's -max_len */
    char path[4096];
    snprintf(path, sizeof path, "%s/case_%03d.gguf", seed_dir, n_cases);
    FILE *f = fopen(path, "wb");
    if (!f || (b->n && fwrite(b->p, 1, b->n, f) != b->n) || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(2);
    }
}

/* The file must be rejected with a message containing want. */
static void expect_err_at(const gb *b, const char *want, const char *file, int line)
{
    n_cases++;
    save_seed(b);
    uint8_t *p = gb_copy(b);
    moe_gguf *g = (moe_gguf *)p; /* must come back NULL */
    moe_err err = {{0}};
    int rc = moe_gguf_open_memory(&g, p, b->n, &err);
    CHECK_MSG(rc == MOE_ERR, "%s:%d: file accepted, expected \"%s\"", file, line, want);
    CHECK_MSG(rc == MOE_OK || g == NULL, "%s:%d: handle not NULL on error", file, line);
    if (rc == MOE_OK) moe_gguf_close(g);
    else CHECK_MSG(strstr(err.msg, want) != NULL, "%s:%d: message \"%s\" lacks \"%s\"", file, line, err.msg, want);
    free(p);
}
#define expect_err(b, want) expect_err_at((b), (want), __FILE__, __LINE__)

/* The file must open; returns the handle and the buffer it lives in. */
static moe_gguf *expect_ok_at(const gb *b, uint8_t **buf, const char *file, int line)
{
    n_cases++;
    save_seed(b);
    *buf = gb_copy(b);
    moe_gguf *g = NULL;
    moe_err err = {{0}};
    int rc = moe_gguf_open_memory(&g, *buf, b->n, &err);
    CHECK_MSG(rc == MOE_OK && g != NULL, "%s:%d: rejected: %s", file, line, err.msg);
    if (rc != MOE_OK) {
        free(*buf);
        *buf = NULL;
        return NULL;
    }
    return g;
}
#define expect_ok(b, buf) expect_ok_at((b), (buf), __FILE__, __LINE__)

static void close_ok(moe_gguf *g, uint8_t *buf)
{
    moe_gguf_close(g);
    free(buf);
}

/* Opens, checks it is accepted, closes. */
static void accept_only_at(const gb *b, const char *file, int line)
{
    uint8_t *buf;
    moe_gguf *g = expect_ok_at(b, &buf, file, line);
    if (g) close_ok(g, buf);
}
#define accept_only(b) accept_only_at((b), __FILE__, __LINE__)

/* A file with no key/values and one tensor info (then padding to 32 and
 * data_bytes of data). */
static void one_tensor(gb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off,
                       size_t data_bytes)
{
    gb_header(b, 3, 1, 0);
    gb_tensor(b, name, n_dims, ne, type, off);
    gb_pad(b, 32);
    gb_zeros(b, data_bytes);
}

/* A file with one key whose type code and value bytes the caller appends;
 * tail zero bytes keep the count checks from firing first. */
static void one_key(gb *b, const char *key) { gb_header(b, 3, 0, 1), gb_key(b, key); }

/* ---- header ------------------------------------------------------------------ */

static void test_header(void)
{
    gb b = {0};
    expect_err(&b, "file truncated at offset 0: magic needs 4 bytes, 0 left");
    gb_bytes(&b, "GGU", 3);
    expect_err(&b, "magic needs 4 bytes, 3 left");
    gb_free(&b);

    gb_bytes(&b, "GGUG", 4), gb_u32(&b, 3), gb_u64(&b, 0), gb_u64(&b, 0);
    expect_err(&b, "not a GGUF file (bad magic 0x47554747)");
    gb_free(&b);
    gb_bytes(&b, "FUGG", 4), gb_u32(&b, 3), gb_u64(&b, 0), gb_u64(&b, 0);
    expect_err(&b, "not a GGUF file (bad magic 0x");
    gb_free(&b);
    gb_bytes(&b, "\0\0\0\0", 4), gb_u32(&b, 3), gb_u64(&b, 0), gb_u64(&b, 0);
    expect_err(&b, "not a GGUF file (bad magic 0x00000000)");
    gb_free(&b);

    static const uint32_t bad_versions[] = {0, 1, 4, 5, 0x03000000u, 0xffffffffu};
    for (size_t i = 0; i < sizeof bad_versions / sizeof bad_versions[0]; i++) {
        char want[96];
        snprintf(want, sizeof want, "unsupported GGUF version %u (supported: 2, 3)", bad_versions[i]);
        gb_header(&b, bad_versions[i], 0, 0);
        expect_err(&b, want);
        gb_free(&b);
    }

    gb_bytes(&b, "GGUF", 4);
    expect_err(&b, "version needs 4 bytes, 0 left");
    gb_u32(&b, 3);
    expect_err(&b, "tensor count needs 8 bytes, 0 left");
    gb_u32(&b, 0);
    expect_err(&b, "tensor count needs 8 bytes, 4 left");
    gb_u32(&b, 0);
    expect_err(&b, "key/value count needs 8 bytes, 0 left");
    gb_u64(&b, 0);
    accept_only(&b); /* the smallest valid file: 24 bytes, nothing in it */
    gb_free(&b);

    /* Counts against the bytes left in the file. */
    gb_header(&b, 3, 1, 0);
    expect_err(&b, "tensor count 1 exceeds what the file can hold");
    gb_zeros(&b, 32); /* 32 < 33, the smallest tensor info */
    expect_err(&b, "tensor count 1 exceeds what the file can hold");
    gb_free(&b);
    gb_header(&b, 3, UINT64_MAX, 0), gb_zeros(&b, 64);
    expect_err(&b, "tensor count 18446744073709551615 exceeds what the file can hold");
    gb_free(&b);
    gb_header(&b, 3, (1ull << 31), 0), gb_zeros(&b, 64);
    expect_err(&b, "tensor count 2147483648 exceeds what the file can hold");
    gb_free(&b);
    gb_header(&b, 3, 0, 1);
    expect_err(&b, "key/value count 1 exceeds what the file can hold");
    gb_free(&b);
    gb_header(&b, 3, 0, UINT64_MAX), gb_zeros(&b, 64);
    expect_err(&b, "key/value count 18446744073709551615 exceeds what the file can hold");
    gb_free(&b);
    /* Counts the file could hold but over the reader's limit of 2^20 (the
     * tables are sized from the header, so a big file must not be able to
     * ask for unbounded memory); just at the limit the parse goes on. */
    gb_header(&b, 3, 0, (1u << 20) + 1), gb_zeros(&b, 14u * ((1u << 20) + 1));
    expect_err(&b, "key/value count 1048577 exceeds the limit of 1048576");
    memcpy(b.p + 16, &(uint64_t){1u << 20}, 8);
    expect_err(&b, "key 0: empty key");
    gb_free(&b);
    gb_header(&b, 3, (1u << 20) + 1, 0), gb_zeros(&b, 33u * ((1u << 20) + 1));
    expect_err(&b, "tensor count 1048577 exceeds the limit of 1048576");
    memcpy(b.p + 8, &(uint64_t){1u << 20}, 8);
    expect_err(&b, "tensor 0: empty name");
    gb_free(&b);
    /* Two keys claimed, room for one smallest key (14 bytes). */
    gb_header(&b, 3, 0, 2);
    gb_key(&b, "a"), gb_u32(&b, MOE_GGUF_U8), gb_u8(&b, 1);
    expect_err(&b, "key/value count 2 exceeds what the file can hold");
    gb_free(&b);
    /* The smallest key/value exactly fills the file: fine. */
    gb_header(&b, 3, 0, 1);
    gb_key(&b, "a"), gb_u32(&b, MOE_GGUF_U8), gb_u8(&b, 1);
    accept_only(&b);
    gb_free(&b);
}

/* ---- keys and values --------------------------------------------------------- */

static void test_keys(void)
{
    gb b = {0};
    char want[160];

    /* Key length over the cap: rejected before the bytes are looked for. */
    gb_header(&b, 3, 0, 1), gb_u64(&b, MOE_GGUF_MAX_KEY_LEN + 1ull), gb_zeros(&b, 16);
    snprintf(want, sizeof want, "key 0: length %u exceeds the limit of %u bytes", MOE_GGUF_MAX_KEY_LEN + 1,
             MOE_GGUF_MAX_KEY_LEN);
    expect_err(&b, want);
    gb_free(&b);
    gb_header(&b, 3, 0, 1), gb_u64(&b, UINT64_MAX), gb_zeros(&b, 16);
    expect_err(&b, "key 0: length 18446744073709551615 exceeds the limit");
    gb_free(&b);
    /* A key of exactly the cap is fine. */
    {
        char *k = moe_xmalloc(MOE_GGUF_MAX_KEY_LEN + 1);
        memset(k, 'k', MOE_GGUF_MAX_KEY_LEN);
        k[MOE_GGUF_MAX_KEY_LEN] = 0;
        gb_header(&b, 3, 0, 1), gb_key(&b, k), gb_u32(&b, MOE_GGUF_U8), gb_u8(&b, 7);
        uint8_t *buf;
        moe_gguf *g = expect_ok(&b, &buf);
        if (g) {
            CHECK(moe_gguf_n_kv(g) == 1 && strlen(moe_gguf_kv_key(g, 0)) == MOE_GGUF_MAX_KEY_LEN);
            CHECK(moe_gguf_find_kv(g, k) == 0);
            close_ok(g, buf);
        }
        gb_free(&b);
        free(k);
    }
    /* Key bytes beyond the file. */
    gb_header(&b, 3, 0, 1), gb_u64(&b, 100), gb_zeros(&b, 20);
    expect_err(&b, "file truncated at offset 32: key 0 needs 100 bytes, 20 left");
    gb_free(&b);
    /* Empty key; a key with a NUL byte (the second key, to check the index). */
    gb_header(&b, 3, 0, 1), gb_u64(&b, 0), gb_u32(&b, MOE_GGUF_U32), gb_u32(&b, 1);
    expect_err(&b, "key 0: empty key");
    gb_free(&b);
    gb_header(&b, 3, 0, 2), gb_kv_u32(&b, "a", 1), gb_strn(&b, "b\0c", 3), gb_u32(&b, MOE_GGUF_U32), gb_u32(&b, 1);
    expect_err(&b, "key 1: contains a NUL byte");
    gb_free(&b);

    /* Unknown value type: first code past the table, and the largest. */
    static const uint32_t bad_types[] = {MOE_GGUF_NTYPES, 77, 0xffffffffu};
    for (size_t i = 0; i < 3; i++) {
        one_key(&b, "k"), gb_u32(&b, bad_types[i]), gb_zeros(&b, 16);
        snprintf(want, sizeof want, "key 'k': unknown value type %u", bad_types[i]);
        expect_err(&b, want);
        gb_free(&b);
    }
    /* Value type or value bytes missing. */
    one_key(&b, "kkkkkk"); /* 8 + 6 = 14 bytes: passes the count check */
    expect_err(&b, "value type needs 4 bytes, 0 left");
    gb_free(&b);
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_U64), gb_u32(&b, 0);
    expect_err(&b, "key 'k': file truncated at offset 37: scalar value needs 8 bytes, 4 left");
    gb_free(&b);

    /* String value: length over the cap, beyond the file, exactly to the end. */
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_STRING), gb_u64(&b, MOE_GGUF_MAX_STRING_LEN + 1ull), gb_zeros(&b, 8);
    snprintf(want, sizeof want, "key 'k': string value: length %llu exceeds the limit of %llu bytes",
             (unsigned long long)MOE_GGUF_MAX_STRING_LEN + 1, (unsigned long long)MOE_GGUF_MAX_STRING_LEN);
    expect_err(&b, want);
    gb_free(&b);
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_STRING), gb_u64(&b, UINT64_MAX);
    expect_err(&b, "key 'k': string value: length 18446744073709551615 exceeds the limit");
    gb_free(&b);
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_STRING), gb_u64(&b, 1000), gb_zeros(&b, 10);
    expect_err(&b, "key 'k': file truncated at offset 45: string value needs 1000 bytes, 10 left");
    gb_free(&b);
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_STRING), gb_u64(&b, 11), gb_bytes(&b, "hello world", 10);
    expect_err(&b, "string value needs 11 bytes, 10 left");
    gb_u8(&b, 'd');
    accept_only(&b);
    gb_free(&b);

    /* Arrays: length over the cap, beyond the file, nested, unknown type. */
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_ARRAY), gb_u32(&b, MOE_GGUF_U8), gb_u64(&b, MOE_GGUF_MAX_ARRAY_LEN + 1);
    gb_zeros(&b, 16);
    snprintf(want, sizeof want, "key 'k': array length %llu exceeds the limit of %llu",
             (unsigned long long)MOE_GGUF_MAX_ARRAY_LEN + 1, (unsigned long long)MOE_GGUF_MAX_ARRAY_LEN);
    expect_err(&b, want);
    gb_free(&b);
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_ARRAY), gb_u32(&b, MOE_GGUF_STRING), gb_u64(&b, UINT64_MAX);
    expect_err(&b, "key 'k': array length 18446744073709551615 exceeds the limit");
    gb_free(&b);
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_ARRAY), gb_u32(&b, MOE_GGUF_U32), gb_u64(&b, 1000), gb_zeros(&b, 8);
    expect_err(&b, "key 'k': array length 1000 exceeds the file size");
    gb_free(&b);
    /* 3 u32 = 12 bytes, 11 present. */
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_ARRAY), gb_u32(&b, MOE_GGUF_U32), gb_u64(&b, 3), gb_zeros(&b, 11);
    expect_err(&b, "key 'k': array length 3 exceeds the file size");
    gb_zeros(&b, 1);
    accept_only(&b);
    gb_free(&b);
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_ARRAY), gb_u32(&b, MOE_GGUF_F64), gb_u64(&b, 2), gb_zeros(&b, 15);
    expect_err(&b, "key 'k': array length 2 exceeds the file size");
    gb_free(&b);
    /* Strings take at least 8 bytes each. */
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_ARRAY), gb_u32(&b, MOE_GGUF_STRING), gb_u64(&b, 100), gb_zeros(&b, 16);
    expect_err(&b, "key 'k': array length 100 exceeds the file size");
    gb_free(&b);
    /* A string element beyond the file, or over the cap. */
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_ARRAY), gb_u32(&b, MOE_GGUF_STRING), gb_u64(&b, 2);
    gb_str(&b, "ab"), gb_u64(&b, 50), gb_zeros(&b, 8);
    expect_err(&b, "key 'k' element 1: file truncated at offset");
    expect_err(&b, "array string needs 50 bytes, 8 left");
    gb_free(&b);
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_ARRAY), gb_u32(&b, MOE_GGUF_STRING), gb_u64(&b, 1);
    gb_u64(&b, MOE_GGUF_MAX_STRING_LEN + 1ull), gb_zeros(&b, 8);
    expect_err(&b, "key 'k' element 0: array string: length 268435457 exceeds the limit of 268435456 bytes");
    gb_free(&b);
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_ARRAY), gb_u32(&b, MOE_GGUF_ARRAY), gb_u64(&b, 1);
    gb_u32(&b, MOE_GGUF_U8), gb_u64(&b, 1), gb_u8(&b, 0);
    expect_err(&b, "key 'k': nested arrays are not supported");
    gb_free(&b);
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_ARRAY), gb_u32(&b, MOE_GGUF_NTYPES), gb_u64(&b, 1), gb_zeros(&b, 8);
    expect_err(&b, "key 'k': unknown array element type 13");
    gb_free(&b);
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_ARRAY), gb_u32(&b, 0xffffffffu), gb_u64(&b, 1), gb_zeros(&b, 8);
    expect_err(&b, "key 'k': unknown array element type 4294967295");
    gb_free(&b);
    one_key(&b, "k"), gb_u32(&b, MOE_GGUF_ARRAY), gb_u32(&b, MOE_GGUF_U8);
    expect_err(&b, "key 'k': file truncated at offset 41: array length needs 8 bytes, 0 left");
    gb_free(&b);

    /* Bools: only 0 and 1. */
    static const uint8_t bad_bools[] = {2, 0x80, 0xff};
    for (size_t i = 0; i < 3; i++) {
        one_key(&b, "flag"), gb_u32(&b, MOE_GGUF_BOOL), gb_u8(&b, bad_bools[i]);
        snprintf(want, sizeof want, "key 'flag': bool value %u is not 0 or 1", bad_bools[i]);
        expect_err(&b, want);
        gb_free(&b);
    }
    one_key(&b, "flag"), gb_u32(&b, MOE_GGUF_ARRAY), gb_u32(&b, MOE_GGUF_BOOL), gb_u64(&b, 3);
    gb_u8(&b, 1), gb_u8(&b, 0), gb_u8(&b, 2);
    expect_err(&b, "key 'flag': bool value 2 is not 0 or 1");
    gb_free(&b);

    /* Duplicate keys: same type, another type, far apart. */
    gb_header(&b, 3, 0, 2), gb_kv_u32(&b, "k", 1), gb_kv_u32(&b, "k", 2);
    expect_err(&b, "duplicate key 'k'");
    gb_free(&b);
    gb_header(&b, 3, 0, 3), gb_kv_str(&b, "general.name", "x"), gb_kv_u32(&b, "a", 1);
    gb_kv_u32(&b, "general.name", 2);
    expect_err(&b, "duplicate key 'general.name'");
    gb_free(&b);
    /* Many distinct keys sharing hash buckets are not duplicates. */
    gb_header(&b, 3, 0, 200);
    for (int i = 0; i < 200; i++) {
        char k[16];
        snprintf(k, sizeof k, "key.%d", i);
        gb_kv_u32(&b, k, (uint32_t)i);
    }
    {
        uint8_t *buf;
        moe_gguf *g = expect_ok(&b, &buf);
        if (g) {
            int bad = 0;
            for (int i = 0; i < 200; i++) {
                char k[16];
                uint32_t v = 0;
                snprintf(k, sizeof k, "key.%d", i);
                if (moe_gguf_find_kv(g, k) != i || moe_gguf_get_u32(g, k, &v, NULL) || v != (uint32_t)i) bad++;
            }
            CHECK(bad == 0);
            close_ok(g, buf);
        }
    }
    gb_kv_u32(&b, "key.137", 0);
    b.p[16] = 201; /* bump the key/value count */
    expect_err(&b, "duplicate key 'key.137'");
    gb_free(&b);
}

/* ---- general.alignment ------------------------------------------------------- */

static void test_alignment(void)
{
    gb b = {0};
    gb_header(&b, 3, 0, 1), gb_key(&b, "general.alignment"), gb_u32(&b, MOE_GGUF_U64), gb_u64(&b, 32);
    expect_err(&b, "general.alignment must be of type u32, not u64");
    gb_free(&b);
    gb_header(&b, 3, 0, 1), gb_key(&b, "general.alignment"), gb_u32(&b, MOE_GGUF_I32), gb_u32(&b, 32);
    expect_err(&b, "general.alignment must be of type u32, not i32");
    gb_free(&b);
    gb_header(&b, 3, 0, 1), gb_kv_str(&b, "general.alignment", "32");
    expect_err(&b, "general.alignment must be of type u32, not string");
    gb_free(&b);

    static const uint32_t not_pow2[] = {0, 3, 48, 1000, 0xffffffffu};
    for (size_t i = 0; i < sizeof not_pow2 / sizeof not_pow2[0]; i++) {
        char want[96];
        snprintf(want, sizeof want, "general.alignment %u is not a power of two", not_pow2[i]);
        gb_header(&b, 3, 0, 1), gb_kv_u32(&b, "general.alignment", not_pow2[i]);
        expect_err(&b, want);
        gb_free(&b);
    }
    static const uint32_t too_big[] = {2u << 20, 1u << 31};
    for (size_t i = 0; i < 2; i++) {
        char want[96];
        snprintf(want, sizeof want, "general.alignment %u exceeds 1 MiB", too_big[i]);
        gb_header(&b, 3, 0, 1), gb_kv_u32(&b, "general.alignment", too_big[i]);
        expect_err(&b, want);
        gb_free(&b);
    }

    /* A custom alignment is honoured: data starts on it, offsets must be on it. */
    static const uint32_t good[] = {1, 8, 64, 4096, 1u << 20};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint32_t a = good[i];
        uint64_t rel = 2 * (uint64_t)a > 64 ? 2 * (uint64_t)a : 64; /* second tensor's offset */
        gb_header(&b, 3, 2, 1), gb_kv_u32(&b, "general.alignment", a);
        gb_tensor(&b, "a", 1, (uint64_t[]){16}, MOE_DT_F32, 0);
        gb_tensor(&b, "b", 1, (uint64_t[]){8}, MOE_DT_F32, rel);
        size_t info_end = b.n;
        gb_pad(&b, a);
        size_t data_off = b.n;
        gb_zeros(&b, (size_t)rel + 32);
        b.p[data_off + rel] = 0xab;
        uint8_t *buf;
        moe_gguf *g = expect_ok(&b, &buf);
        if (g) {
            CHECK(moe_gguf_alignment(g) == a);
            CHECK(moe_gguf_data_offset(g) == data_off && data_off % a == 0 && data_off - info_end < a);
            const moe_gguf_tensor *t = moe_gguf_find_tensor(g, "b");
            CHECK(t && t->offset == data_off + rel && t->data == buf + data_off + rel);
            CHECK(t && ((const uint8_t *)t->data)[0] == 0xab);
            CHECK(moe_gguf_base(g) == buf && moe_gguf_file_size(g) == b.n);
            close_ok(g, buf);
        }
        gb_free(&b);
        if (a > 1) {
            /* An offset on the default 32 but not on a. */
            char want[96];
            uint64_t off = a > 32 ? 32 : a / 2;
            snprintf(want, sizeof want, "tensor 'b': offset %llu is not aligned to %u", (unsigned long long)off, a);
            gb_header(&b, 3, 2, 1), gb_kv_u32(&b, "general.alignment", a);
            gb_tensor(&b, "a", 1, (uint64_t[]){1}, MOE_DT_F32, 0);
            gb_tensor(&b, "b", 1, (uint64_t[]){1}, MOE_DT_F32, off);
            gb_pad(&b, a), gb_zeros(&b, (size_t)off + 4);
            expect_err(&b, want);
            gb_free(&b);
        }
    }
    /* A small alignment: the data section starts on the next multiple of 8. */
    gb_header(&b, 3, 1, 1), gb_kv_u32(&b, "general.alignment", 8);
    gb_tensor(&b, "t", 1, (uint64_t[]){2}, MOE_DT_F32, 0);
    gb_pad(&b, 8);
    {
        size_t data_off = b.n;
        gb_zeros(&b, 8);
        uint8_t *buf;
        moe_gguf *g = expect_ok(&b, &buf);
        if (g) {
            CHECK(moe_gguf_data_offset(g) == data_off);
            close_ok(g, buf);
        }
    }
    gb_free(&b);
}

/* ---- tensor infos ------------------------------------------------------------ */

static void test_tensors(void)
{
    gb b = {0};
    char want[200];

    /* Names: empty, over the cap, NUL inside, beyond the file; the cap itself is fine. */
    one_tensor(&b, "", 1, (uint64_t[]){8}, MOE_DT_F32, 0, 32);
    expect_err(&b, "tensor 0: empty name");
    gb_free(&b);
    {
        char name[MOE_GGUF_MAX_NAME_LEN + 2];
        memset(name, 'n', sizeof name - 1);
        name[sizeof name - 1] = 0;
        one_tensor(&b, name, 1, (uint64_t[]){8}, MOE_DT_F32, 0, 32);
        snprintf(want, sizeof want, "tensor 0 name: length %u exceeds the limit of %u bytes", MOE_GGUF_MAX_NAME_LEN + 1,
                 MOE_GGUF_MAX_NAME_LEN);
        expect_err(&b, want);
        gb_free(&b);
        name[MOE_GGUF_MAX_NAME_LEN] = 0;
        one_tensor(&b, name, 1, (uint64_t[]){8}, MOE_DT_F32, 0, 32);
        uint8_t *buf;
        moe_gguf *g = expect_ok(&b, &buf);
        if (g) {
            CHECK(moe_gguf_find_tensor(g, name) == moe_gguf_tensor_at(g, 0));
            close_ok(g, buf);
        }
        gb_free(&b);
    }
    gb_header(&b, 3, 1, 0), gb_strn(&b, "a\0b", 3), gb_u32(&b, 1), gb_u64(&b, 8), gb_u32(&b, 0), gb_u64(&b, 0);
    gb_pad(&b, 32), gb_zeros(&b, 32);
    expect_err(&b, "tensor 0: name contains a NUL byte");
    gb_free(&b);
    gb_header(&b, 3, 1, 0), gb_u64(&b, 200), gb_zeros(&b, 40);
    expect_err(&b, "tensor 0 name needs 200 bytes, 40 left");
    gb_free(&b);

    /* n_dims out of 1..4. */
    static const uint32_t bad_ndims[] = {0, 5, 0xffffffffu};
    for (size_t i = 0; i < 3; i++) {
        gb_header(&b, 3, 1, 0), gb_str(&b, "t"), gb_u32(&b, bad_ndims[i]), gb_zeros(&b, 64);
        snprintf(want, sizeof want, "tensor 't': n_dims %u out of range 1..4", bad_ndims[i]);
        expect_err(&b, want);
        gb_free(&b);
    }
    /* A zero dim, in each place. */
    for (uint32_t d = 0; d < 4; d++) {
        uint64_t ne[4] = {32, 2, 3, 4};
        ne[d] = 0;
        one_tensor(&b, "t", 4, ne, MOE_DT_F32, 0, 64);
        snprintf(want, sizeof want, "tensor 't': dimension %u is 0", d);
        expect_err(&b, want);
        gb_free(&b);
    }
    one_tensor(&b, "t", 2, (uint64_t[]){1ull << 63, 1}, MOE_DT_F32, 0, 64);
    expect_err(&b, "tensor 't': dimension 0 is too large");
    gb_free(&b);
    one_tensor(&b, "t", 3, (uint64_t[]){1, 1, UINT64_MAX}, MOE_DT_F32, 0, 64);
    expect_err(&b, "tensor 't': dimension 2 is too large");
    gb_free(&b);
    /* Element count: the product overflows 64 bits, or passes INT64_MAX. */
    one_tensor(&b, "t", 2, (uint64_t[]){1ull << 32, 1ull << 32}, MOE_DT_F32, 0, 64);
    expect_err(&b, "tensor 't': element count overflows");
    gb_free(&b);
    one_tensor(&b, "t", 2, (uint64_t[]){1ull << 32, 1ull << 31}, MOE_DT_F32, 0, 64);
    expect_err(&b, "tensor 't': element count overflows");
    gb_free(&b);
    one_tensor(&b, "t", 4, (uint64_t[]){1ull << 16, 1ull << 16, 1ull << 16, 1ull << 16}, MOE_DT_F16, 0, 64);
    expect_err(&b, "tensor 't': element count overflows");
    gb_free(&b);
    one_tensor(&b, "t", 4, (uint64_t[]){(1ull << 32) - 1, (1ull << 32) + 1, 3, 5}, MOE_DT_F32, 0, 64);
    expect_err(&b, "tensor 't': element count overflows");
    gb_free(&b);
    /* Byte size: the element count fits, the bytes do not. */
    one_tensor(&b, "t", 2, (uint64_t[]){1ull << 31, 1ull << 31}, MOE_DT_F32, 0, 64);
    expect_err(&b, "tensor 't': byte size overflows");
    gb_free(&b);
    one_tensor(&b, "t", 1, (uint64_t[]){1ull << 62}, MOE_DT_F32, 0, 64);
    expect_err(&b, "tensor 't': byte size overflows");
    gb_free(&b);
    /* Fits: 2^62 f16 values are 2^63 bytes — but not in this file. */
    one_tensor(&b, "t", 1, (uint64_t[]){1ull << 62}, MOE_DT_F16, 0, 64);
    expect_err(&b, "tensor 't': data (offset 0, 9223372036854775808 bytes) runs past the end of the file");
    gb_free(&b);

    /* Type codes: unknown ones, known-but-unsupported ones (named). */
    static const struct { uint32_t code; const char *name; } unsupported[] = {
        {77, NULL}, {31, NULL}, {0xffffffffu, NULL}, {9, "q8_1"}, {15, "q8_K"}, {16, "iq2_xxs"},
        {18, "iq3_xxs"}, {19, "iq1_s"}, {21, "iq3_s"}, {22, "iq2_s"}, {29, "iq1_m"}, {34, "tq1_0"},
        {35, "tq2_0"}, {24, "i8"}, {28, "f64"}, {39, "mxfp4"},
    };
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        one_tensor(&b, "t", 1, (uint64_t[]){256}, unsupported[i].code, 0, 1024);
        if (unsupported[i].name)
            snprintf(want, sizeof want, "tensor 't': unsupported tensor type %s (code %u)", unsupported[i].name,
                     unsupported[i].code);
        else
            snprintf(want, sizeof want, "tensor 't': unknown tensor type code %u", unsupported[i].code);
        expect_err(&b, want);
        /* and the refusal lists what is supported */
        expect_err(&b, "; supported: f32, f16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl, "
                       "iq4_xs, bf16");
        gb_free(&b);
    }

    /* First dim a multiple of the block; other dims are free. */
    static const struct { uint32_t code; uint64_t ne0; const char *msg; } blocks[] = {
        {MOE_DT_Q8_0, 33, "first dimension 33 is not a multiple of the q8_0 block size 32"},
        {MOE_DT_Q8_0, 16, "first dimension 16 is not a multiple of the q8_0 block size 32"},
        {MOE_DT_Q8_0, 1, "first dimension 1 is not a multiple of the q8_0 block size 32"},
        {MOE_DT_Q4_K, 255, "first dimension 255 is not a multiple of the q4_K block size 256"},
        {MOE_DT_Q4_K, 32, "first dimension 32 is not a multiple of the q4_K block size 256"},
        {MOE_DT_Q6_K, 384, "first dimension 384 is not a multiple of the q6_K block size 256"},
    };
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
        one_tensor(&b, "t", 2, (uint64_t[]){blocks[i].ne0, 256}, blocks[i].code, 0, 1 << 17);
        snprintf(want, sizeof want, "tensor 't': %s", blocks[i].msg);
        expect_err(&b, want);
        gb_free(&b);
    }

    /* Truncated inside a tensor info. */
    gb_header(&b, 3, 1, 0), gb_str(&b, "t"), gb_u32(&b, 4), gb_u64(&b, 8), gb_u64(&b, 1), gb_u64(&b, 1);
    gb_zeros(&b, 4);
    expect_err(&b, "tensor 't': file truncated at offset 61: tensor dimension needs 8 bytes, 4 left");
    gb_free(&b);
    gb_header(&b, 3, 1, 0), gb_str(&b, "t"), gb_u32(&b, 3), gb_u64(&b, 8), gb_u64(&b, 1), gb_u64(&b, 1);
    expect_err(&b, "tensor 't': file truncated at offset 61: tensor type needs 4 bytes, 0 left");
    gb_free(&b);
    gb_header(&b, 3, 1, 0), gb_str(&b, "t"), gb_u32(&b, 2), gb_u64(&b, 8), gb_u64(&b, 1), gb_u32(&b, 0);
    gb_zeros(&b, 7);
    expect_err(&b, "tensor 't': file truncated at offset 57: tensor offset needs 8 bytes, 7 left");
    gb_free(&b);

    /* Duplicate tensor names. */
    gb_header(&b, 3, 3, 0);
    gb_tensor(&b, "x", 1, (uint64_t[]){8}, MOE_DT_F32, 0);
    gb_tensor(&b, "y", 1, (uint64_t[]){8}, MOE_DT_F32, 32);
    gb_tensor(&b, "x", 1, (uint64_t[]){8}, MOE_DT_F32, 64);
    gb_pad(&b, 32), gb_zeros(&b, 96);
    expect_err(&b, "duplicate tensor name 'x'");
    gb_free(&b);

    /* Offsets: not aligned, data past the end, offset overflow, data section past the end. */
    one_tensor(&b, "t", 1, (uint64_t[]){8}, MOE_DT_F32, 4, 64);
    expect_err(&b, "tensor 't': offset 4 is not aligned to 32");
    gb_free(&b);
    one_tensor(&b, "t", 1, (uint64_t[]){8}, MOE_DT_F32, 1, 64);
    expect_err(&b, "tensor 't': offset 1 is not aligned to 32");
    gb_free(&b);
    one_tensor(&b, "t", 1, (uint64_t[]){8}, MOE_DT_F32, 0, 31);
    expect_err(&b, "tensor 't': data (offset 0, 32 bytes) runs past the end of the file");
    gb_free(&b);
    one_tensor(&b, "t", 1, (uint64_t[]){8}, MOE_DT_F32, 32, 63);
    expect_err(&b, "tensor 't': data (offset 32, 32 bytes) runs past the end of the file");
    gb_free(&b);
    one_tensor(&b, "t", 1, (uint64_t[]){8}, MOE_DT_F32, UINT64_MAX - 31, 64);
    expect_err(&b, "tensor 't': data (offset 18446744073709551584, 32 bytes) runs past the end of the file");
    gb_free(&b);
    one_tensor(&b, "t", 1, (uint64_t[]){8}, MOE_DT_F32, 1ull << 40, 64);
    expect_err(&b, "runs past the end of the file");
    gb_free(&b);
    one_tensor(&b, "t", 1, (uint64_t[]){8}, MOE_DT_F32, 0, 32);
    accept_only(&b); /* exactly to the end */
    gb_free(&b);
    gb_header(&b, 3, 1, 0), gb_tensor(&b, "t", 1, (uint64_t[]){8}, MOE_DT_F32, 0);
    expect_err(&b, "file truncated: tensor data section starts at 64, file has 57 bytes");
    gb_free(&b);

    /* Overlaps: partial, identical offsets, contained, and out of file order. */
    static const struct { uint64_t off_a, n_a, off_b, n_b; const char *msg; } overlaps[] = {
        {0, 16, 32, 8, "tensors 'a' and 'b' overlap"},
        {0, 8, 0, 8, "overlap"},
        {0, 64, 32, 8, "tensors 'a' and 'b' overlap"},
        {64, 16, 32, 16, "tensors 'b' and 'a' overlap"},
    };
    for (size_t i = 0; i < sizeof overlaps / sizeof overlaps[0]; i++) {
        gb_header(&b, 3, 3, 0);
        gb_tensor(&b, "a", 1, (uint64_t[]){overlaps[i].n_a}, MOE_DT_F32, overlaps[i].off_a);
        gb_tensor(&b, "c", 1, (uint64_t[]){8}, MOE_DT_F32, 1024);
        gb_tensor(&b, "b", 1, (uint64_t[]){overlaps[i].n_b}, MOE_DT_F32, overlaps[i].off_b);
        gb_pad(&b, 32), gb_zeros(&b, 1024 + 32);
        expect_err(&b, overlaps[i].msg);
        gb_free(&b);
    }
    /* Adjacent tensors, in any file order, do not overlap. */
    gb_header(&b, 3, 3, 0);
    gb_tensor(&b, "c", 1, (uint64_t[]){8}, MOE_DT_F32, 96);
    gb_tensor(&b, "a", 1, (uint64_t[]){16}, MOE_DT_F32, 0);
    gb_tensor(&b, "b", 1, (uint64_t[]){8}, MOE_DT_F32, 64);
    gb_pad(&b, 32), gb_zeros(&b, 128);
    accept_only(&b);
    gb_free(&b);

    /* Each supported type with its byte size; unused dims read as 1. */
    static const struct { uint32_t code; uint64_t ne0, ne1, bytes; } types[] = {
        {MOE_DT_F32, 3, 5, 60},          {MOE_DT_F16, 3, 5, 30},          {MOE_DT_BF16, 7, 1, 14},
        {MOE_DT_Q8_0, 64, 3, 6 * 34},    {MOE_DT_Q4_K, 512, 2, 4 * 144},  {MOE_DT_Q6_K, 256, 3, 3 * 210},
    };
    size_t nt = sizeof types / sizeof types[0];
    gb_header(&b, 3, nt, 0);
    uint64_t off = 0, offs[8];
    for (size_t i = 0; i < nt; i++) {
        char name[16];
        snprintf(name, sizeof name, "w%zu", i);
        offs[i] = off;
        gb_tensor(&b, name, 2, (uint64_t[]){types[i].ne0, types[i].ne1}, types[i].code, off);
        off = (off + types[i].bytes + 31) / 32 * 32;
    }
    gb_pad(&b, 32);
    size_t data_off = b.n;
    gb_zeros(&b, off);
    uint8_t *buf;
    moe_gguf *g = expect_ok(&b, &buf);
    if (g) {
        CHECK(moe_gguf_n_tensors(g) == (int)nt);
        for (size_t i = 0; i < nt; i++) {
            const moe_gguf_tensor *t = moe_gguf_tensor_at(g, (int)i);
            char name[16];
            snprintf(name, sizeof name, "w%zu", i);
            CHECK_MSG(!strcmp(t->name, name) && moe_gguf_find_tensor(g, name) == t, "tensor %zu", i);
            CHECK_MSG(t->type == types[i].code && t->n_dims == 2, "tensor %zu", i);
            CHECK_MSG(t->ne[0] == types[i].ne0 && t->ne[1] == types[i].ne1 && t->ne[2] == 1 && t->ne[3] == 1,
                      "tensor %zu", i);
            CHECK_MSG(t->n_elems == types[i].ne0 * types[i].ne1, "tensor %zu", i);
            CHECK_MSG(t->size == types[i].bytes, "tensor %zu: %llu bytes", i, (unsigned long long)t->size);
            CHECK_MSG(t->offset == data_off + offs[i] && t->data == buf + t->offset, "tensor %zu", i);
        }
        CHECK(moe_gguf_find_tensor(g, "w") == NULL && moe_gguf_find_tensor(g, "") == NULL);
        close_ok(g, buf);
    }
    gb_free(&b);
}

/* ---- positive: versions, every value type, getters ---------------------------- */

static const char *const strs[] = {"", "a", "hello", "\xe2\x96\x81 tok", "with\nnewline"};
#define N_STRS (sizeof strs / sizeof strs[0])

static void build_all_types(gb *b, uint32_t version)
{
    gb_header(b, version, 1, 27);
    gb_key(b, "u8"), gb_u32(b, MOE_GGUF_U8), gb_u8(b, 200);
    gb_key(b, "i8"), gb_u32(b, MOE_GGUF_I8), gb_u8(b, (uint8_t)-100);
    gb_key(b, "u16"), gb_u32(b, MOE_GGUF_U16), gb_u16(b, 60000);
    gb_key(b, "i16"), gb_u32(b, MOE_GGUF_I16), gb_u16(b, (uint16_t)-30000);
    gb_key(b, "u32"), gb_u32(b, MOE_GGUF_U32), gb_u32(b, 4000000000u);
    gb_key(b, "i32"), gb_u32(b, MOE_GGUF_I32), gb_u32(b, (uint32_t)-2000000000);
    gb_key(b, "f32"), gb_u32(b, MOE_GGUF_F32), gb_f32(b, 0.15625f);
    gb_key(b, "bool.t"), gb_u32(b, MOE_GGUF_BOOL), gb_u8(b, 1);
    gb_key(b, "bool.f"), gb_u32(b, MOE_GGUF_BOOL), gb_u8(b, 0);
    gb_kv_str(b, "str", "deepseek2");
    gb_key(b, "str.empty"), gb_u32(b, MOE_GGUF_STRING), gb_u64(b, 0);
    gb_key(b, "u64"), gb_u32(b, MOE_GGUF_U64), gb_u64(b, UINT64_MAX);
    gb_key(b, "u64.small"), gb_u32(b, MOE_GGUF_U64), gb_u64(b, 4096);
    gb_key(b, "u64.big32"), gb_u32(b, MOE_GGUF_U64), gb_u64(b, 1ull << 32);
    gb_key(b, "i64"), gb_u32(b, MOE_GGUF_I64), gb_u64(b, (uint64_t)INT64_MIN);
    gb_key(b, "f64"), gb_u32(b, MOE_GGUF_F64), gb_f64(b, -1e300);
    /* Arrays of every element type but ARRAY. */
    gb_key(b, "arr.str"), gb_u32(b, MOE_GGUF_ARRAY), gb_u32(b, MOE_GGUF_STRING), gb_u64(b, N_STRS);
    for (size_t i = 0; i < N_STRS; i++) gb_str(b, strs[i]);
    gb_key(b, "arr.u8"), gb_u32(b, MOE_GGUF_ARRAY), gb_u32(b, MOE_GGUF_U8), gb_u64(b, 3);
    gb_u8(b, 1), gb_u8(b, 2), gb_u8(b, 255);
    gb_key(b, "arr.i16"), gb_u32(b, MOE_GGUF_ARRAY), gb_u32(b, MOE_GGUF_I16), gb_u64(b, 2);
    gb_u16(b, (uint16_t)-5), gb_u16(b, 7);
    gb_key(b, "arr.i32"), gb_u32(b, MOE_GGUF_ARRAY), gb_u32(b, MOE_GGUF_I32), gb_u64(b, 4);
    for (int i = 0; i < 4; i++) gb_u32(b, (uint32_t)(i * -3));
    gb_key(b, "arr.f32"), gb_u32(b, MOE_GGUF_ARRAY), gb_u32(b, MOE_GGUF_F32), gb_u64(b, 2);
    gb_f32(b, 1.5f), gb_f32(b, -0.0f);
    gb_key(b, "arr.bool"), gb_u32(b, MOE_GGUF_ARRAY), gb_u32(b, MOE_GGUF_BOOL), gb_u64(b, 2);
    gb_u8(b, 1), gb_u8(b, 0);
    gb_key(b, "arr.u64"), gb_u32(b, MOE_GGUF_ARRAY), gb_u32(b, MOE_GGUF_U64), gb_u64(b, 1), gb_u64(b, 1ull << 40);
    gb_key(b, "arr.f64"), gb_u32(b, MOE_GGUF_ARRAY), gb_u32(b, MOE_GGUF_F64), gb_u64(b, 1), gb_f64(b, 0.1);
    gb_key(b, "arr.empty"), gb_u32(b, MOE_GGUF_ARRAY), gb_u32(b, MOE_GGUF_U32), gb_u64(b, 0);
    gb_key(b, "arr.str.empty"), gb_u32(b, MOE_GGUF_ARRAY), gb_u32(b, MOE_GGUF_STRING), gb_u64(b, 0);
    gb_kv_u32(b, "general.alignment", 32);
    gb_tensor(b, "token_embd.weight", 2, (uint64_t[]){4, 2}, MOE_DT_F32, 0);
    gb_pad(b, 32);
    for (int i = 0; i < 8; i++) gb_f32(b, (float)i);
}

static void check_all_types(moe_gguf *g, uint8_t *buf)
{
    moe_err err;
    uint64_t u;
    int64_t s;
    uint32_t u32;
    double f;
    float f32;
    bool bl;
    const char *str;
    moe_gguf_arr arr;

    CHECK(moe_gguf_n_kv(g) == 27 && moe_gguf_n_tensors(g) == 1);
    CHECK(moe_gguf_alignment(g) == 32);
    CHECK(!strcmp(moe_gguf_kv_key(g, 0), "u8") && moe_gguf_kv_type(g, 0) == MOE_GGUF_U8);
    CHECK(moe_gguf_find_kv(g, "str") == 9 && moe_gguf_kv_type(g, 9) == MOE_GGUF_STRING);
    CHECK(moe_gguf_find_kv(g, "nope") == -1 && moe_gguf_find_kv(g, "") == -1 && moe_gguf_find_kv(g, "u") == -1);

    /* Integers through every getter that should accept them. */
    CHECK(moe_gguf_get_u64(g, "u8", &u, &err) == MOE_OK && u == 200);
    CHECK(moe_gguf_get_i64(g, "i8", &s, &err) == MOE_OK && s == -100);
    CHECK(moe_gguf_get_u32(g, "u16", &u32, &err) == MOE_OK && u32 == 60000);
    CHECK(moe_gguf_get_i64(g, "i16", &s, &err) == MOE_OK && s == -30000);
    CHECK(moe_gguf_get_u32(g, "u32", &u32, &err) == MOE_OK && u32 == 4000000000u);
    CHECK(moe_gguf_get_i64(g, "u32", &s, &err) == MOE_OK && s == 4000000000ll);
    CHECK(moe_gguf_get_i64(g, "i32", &s, &err) == MOE_OK && s == -2000000000ll);
    CHECK(moe_gguf_get_u64(g, "u64", &u, &err) == MOE_OK && u == UINT64_MAX);
    CHECK(moe_gguf_get_u32(g, "u64.small", &u32, &err) == MOE_OK && u32 == 4096);
    CHECK(moe_gguf_get_i64(g, "u64.small", &s, &err) == MOE_OK && s == 4096);
    CHECK(moe_gguf_get_i64(g, "i64", &s, &err) == MOE_OK && s == INT64_MIN);
    CHECK(moe_gguf_get_f64(g, "f32", &f, &err) == MOE_OK && f == 0.15625);
    CHECK(moe_gguf_get_f32(g, "f32", &f32, &err) == MOE_OK && f32 == 0.15625f);
    CHECK(moe_gguf_get_f64(g, "f64", &f, &err) == MOE_OK && f == -1e300);
    CHECK(moe_gguf_get_bool(g, "bool.t", &bl, &err) == MOE_OK && bl == true);
    CHECK(moe_gguf_get_bool(g, "bool.f", &bl, &err) == MOE_OK && bl == false);
    CHECK(moe_gguf_get_u32(g, "general.alignment", &u32, &err) == MOE_OK && u32 == 32);

    /* Getters' type errors, each naming the key and the found type. */
    CHECK(moe_gguf_get_u64(g, "i8", &u, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "key 'i8': expected a non-negative integer, found i8");
    CHECK(moe_gguf_get_u32(g, "i32", &u32, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "key 'i32': expected a non-negative integer, found i32");
    CHECK(moe_gguf_get_i64(g, "u64", &s, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "key 'u64': expected an integer that fits int64, found u64");
    CHECK(moe_gguf_get_u32(g, "u64", &u32, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "key 'u64': value 18446744073709551615 does not fit 32 bits");
    CHECK(moe_gguf_get_u32(g, "u64.big32", &u32, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "key 'u64.big32': value 4294967296 does not fit 32 bits");
    CHECK(moe_gguf_get_u64(g, "bool.t", &u, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "key 'bool.t': expected a non-negative integer, found bool");
    CHECK(moe_gguf_get_i64(g, "bool.t", &s, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "key 'bool.t': expected an integer that fits int64, found bool");
    CHECK(moe_gguf_get_u64(g, "f32", &u, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "key 'f32': expected a non-negative integer, found f32");
    CHECK(moe_gguf_get_i64(g, "str", &s, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "key 'str': expected an integer that fits int64, found string");
    CHECK(moe_gguf_get_f64(g, "u32", &f, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "key 'u32': expected a float, found u32");
    CHECK(moe_gguf_get_f32(g, "arr.f32", &f32, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "key 'arr.f32': expected a float, found array");
    CHECK(moe_gguf_get_bool(g, "u8", &bl, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "key 'u8': expected a bool, found u8");
    CHECK(moe_gguf_get_str(g, "arr.str", &str, &u, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "key 'arr.str': expected a string, found array");
    CHECK(moe_gguf_get_arr(g, "str", &arr, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "key 'str': expected an array, found string");
    CHECK(moe_gguf_get_u64(g, "missing.key", &u, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "missing key 'missing.key'");
    CHECK(moe_gguf_get_str(g, "missing.key", &str, &u, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "missing key 'missing.key'");
    CHECK(moe_gguf_get_arr(g, "missing.key", &arr, &err) == MOE_ERR);
    CHECK_CONTAINS(err.msg, "missing key 'missing.key'");
    CHECK(moe_gguf_get_bool(g, "missing.key", &bl, NULL) == MOE_ERR); /* err may be NULL */

    /* Strings (not NUL-terminated: they point into the buffer). */
    CHECK(moe_gguf_get_str(g, "str", &str, &u, &err) == MOE_OK && u == 9 && !memcmp(str, "deepseek2", 9));
    CHECK(str >= (const char *)buf && str + u <= (const char *)buf + moe_gguf_file_size(g));
    CHECK(moe_gguf_get_str(g, "str.empty", &str, &u, &err) == MOE_OK && u == 0);

    /* Arrays. */
    CHECK(moe_gguf_get_arr(g, "arr.str", &arr, &err) == MOE_OK && arr.type == MOE_GGUF_STRING && arr.count == N_STRS);
    for (uint64_t j = 0; j < arr.count && j < N_STRS; j++) {
        uint64_t len;
        const char *e = moe_gguf_arr_str(g, &arr, j, &len);
        CHECK_MSG(len == strlen(strs[j]) && !memcmp(e, strs[j], len), "string element %llu", (unsigned long long)j);
    }
    CHECK(moe_gguf_get_arr(g, "arr.u8", &arr, &err) == MOE_OK && arr.type == MOE_GGUF_U8 && arr.count == 3);
    CHECK(!memcmp(arr.data, "\x01\x02\xff", 3));
    CHECK(moe_gguf_get_arr(g, "arr.i16", &arr, &err) == MOE_OK && arr.type == MOE_GGUF_I16 && arr.count == 2);
    {
        int16_t v[2];
        memcpy(v, arr.data, sizeof v);
        CHECK(v[0] == -5 && v[1] == 7);
    }
    CHECK(moe_gguf_get_arr(g, "arr.i32", &arr, &err) == MOE_OK && arr.type == MOE_GGUF_I32 && arr.count == 4);
    {
        int32_t v[4];
        memcpy(v, arr.data, sizeof v);
        CHECK(v[0] == 0 && v[1] == -3 && v[2] == -6 && v[3] == -9);
    }
    CHECK(moe_gguf_get_arr(g, "arr.f32", &arr, &err) == MOE_OK && arr.type == MOE_GGUF_F32 && arr.count == 2);
    {
        float v[2];
        memcpy(v, arr.data, sizeof v);
        CHECK(v[0] == 1.5f && v[1] == 0.0f && signbit(v[1]));
    }
    CHECK(moe_gguf_get_arr(g, "arr.bool", &arr, &err) == MOE_OK && arr.type == MOE_GGUF_BOOL && arr.count == 2);
    CHECK(!memcmp(arr.data, "\x01\x00", 2));
    CHECK(moe_gguf_get_arr(g, "arr.u64", &arr, &err) == MOE_OK && arr.type == MOE_GGUF_U64 && arr.count == 1);
    {
        uint64_t v;
        memcpy(&v, arr.data, 8);
        CHECK(v == 1ull << 40);
    }
    CHECK(moe_gguf_get_arr(g, "arr.f64", &arr, &err) == MOE_OK && arr.type == MOE_GGUF_F64 && arr.count == 1);
    {
        double v;
        memcpy(&v, arr.data, 8);
        CHECK(v == 0.1);
    }
    CHECK(moe_gguf_get_arr(g, "arr.empty", &arr, &err) == MOE_OK && arr.type == MOE_GGUF_U32 && arr.count == 0);
    CHECK(moe_gguf_get_arr(g, "arr.str.empty", &arr, &err) == MOE_OK && arr.type == MOE_GGUF_STRING &&
          arr.count == 0);

    /* By index: scalars, raw bytes. */
    int i;
    CHECK((i = moe_gguf_find_kv(g, "i8")) >= 0 && moe_gguf_kv_scalar_i64(g, i, &s) == MOE_OK && s == -100);
    CHECK(moe_gguf_kv_scalar_u64(g, i, &u) == MOE_ERR);
    CHECK(moe_gguf_kv_scalar_f64(g, i, &f) == MOE_ERR);
    CHECK((i = moe_gguf_find_kv(g, "bool.t")) >= 0 && moe_gguf_kv_scalar_i64(g, i, &s) == MOE_OK && s == 1);
    CHECK((i = moe_gguf_find_kv(g, "u64")) >= 0 && moe_gguf_kv_scalar_u64(g, i, &u) == MOE_OK && u == UINT64_MAX);
    CHECK(moe_gguf_kv_scalar_i64(g, i, &s) == MOE_ERR);
    CHECK((i = moe_gguf_find_kv(g, "f64")) >= 0 && moe_gguf_kv_scalar_f64(g, i, &f) == MOE_OK && f == -1e300);
    CHECK(moe_gguf_kv_scalar_i64(g, i, &s) == MOE_ERR);
    CHECK((i = moe_gguf_find_kv(g, "str")) >= 0 && moe_gguf_kv_scalar_f64(g, i, &f) == MOE_ERR);
    {
        uint64_t size, len;
        const void *raw = moe_gguf_kv_raw(g, i, &size);
        const char *sv = moe_gguf_kv_str(g, i, &len);
        CHECK(size == 8 + 9 && len == 9 && (const char *)raw + 8 == sv);
        CHECK((i = moe_gguf_find_kv(g, "u16")) >= 0 && moe_gguf_kv_raw(g, i, &size) != NULL && size == 2);
        CHECK((i = moe_gguf_find_kv(g, "arr.i32")) >= 0 && moe_gguf_kv_raw(g, i, &size) != NULL && size == 4 + 8 + 16);
        CHECK((i = moe_gguf_find_kv(g, "arr.str")) >= 0 && moe_gguf_kv_raw(g, i, &size) != NULL);
        uint64_t want = 12;
        for (size_t j = 0; j < N_STRS; j++) want += 8 + strlen(strs[j]);
        CHECK(size == want);
        moe_gguf_kv_arr(g, i, &arr);
        CHECK(arr.type == MOE_GGUF_STRING && arr.count == N_STRS && arr.kv == i);
    }
    /* The tensor and its data. */
    const moe_gguf_tensor *t = moe_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t != NULL && t == moe_gguf_tensor_at(g, 0));
    if (t) {
        CHECK(t->n_dims == 2 && t->ne[0] == 4 && t->ne[1] == 2 && t->n_elems == 8 && t->size == 32);
        CHECK(t->offset == moe_gguf_data_offset(g) && t->offset % 32 == 0 && t->offset + 32 == moe_gguf_file_size(g));
        float v[8];
        memcpy(v, t->data, sizeof v);
        CHECK(v[0] == 0.0f && v[7] == 7.0f);
    }
}

static void test_values(void)
{
    for (uint32_t version = 2; version <= 3; version++) {
        gb b = {0};
        build_all_types(&b, version);
        uint8_t *buf;
        moe_gguf *g = expect_ok(&b, &buf);
        if (g) {
            CHECK(moe_gguf_version(g) == version);
            check_all_types(g, buf);
            close_ok(g, buf);
        }
        gb_free(&b);
    }
}

/* ---- moe_gguf_open on files -------------------------------------------------- */

/* A 17 GB sparse file with one string array claiming 2^31 elements (which
 * the file could hold) whose first element is bad: the reader must fail on
 * that element without first allocating for 2^31 elements (16 GB).  Run in
 * a child with its address space limited to the file plus 1 GB, so such an
 * allocation aborts the child.  Not under ASan, which needs its shadow
 * address space. */
static void test_big_string_array(const char *d)
{
    if (SANITIZED) {
        printf("gguf_reader: big string array case needs an unsanitized build; not run here\n");
        return;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/big_array.gguf", d);
    const uint64_t file_size = 17ull << 30;
    gb b = {0};
    gb_header(&b, 3, 0, 1), gb_key(&b, "tokenizer.ggml.tokens"), gb_u32(&b, MOE_GGUF_ARRAY);
    gb_u32(&b, MOE_GGUF_STRING), gb_u64(&b, 1ull << 31), gb_u64(&b, UINT64_MAX);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int made = fd >= 0 && write(fd, b.p, b.n) == (ssize_t)b.n && ftruncate(fd, (off_t)file_size) == 0;
    if (fd >= 0) close(fd);
    gb_free(&b);
    CHECK_MSG(made, "cannot make a sparse file %s: %s", path, strerror(errno));
    n_cases++;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl = {.rlim_cur = file_size + (1ull << 30), .rlim_max = file_size + (1ull << 30)};
        if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(3);
        moe_gguf *g = NULL;
        moe_err err = {{0}};
        int rc = moe_gguf_open(&g, path, &err);
        if (rc == MOE_OK) _exit(4);
        if (!strstr(err.msg, "key 'tokenizer.ggml.tokens' element 0: array string: length")) {
            fprintf(stderr, "big string array: unexpected error: %s\n", err.msg);
            _exit(5);
        }
        _exit(0);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "big string array: child %s %d",
              WIFEXITED(st) ? "exited" : "killed by signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    unlink(path);
}

static void test_files(void)
{
    const char *tmp = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/moe_gguf_reader_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    char *d = mkdtemp(tmpl);
    CHECK_MSG(d != NULL, "mkdtemp: %s", strerror(errno));
    if (!d) return;
    char path[4200];
    moe_gguf *g = NULL;
    moe_err err;

    snprintf(path, sizeof path, "%s/missing.gguf", d);
    n_cases++;
    CHECK(moe_gguf_open(&g, path, &err) == MOE_ERR && g == NULL);
    CHECK_CONTAINS(err.msg, "cannot open");
    CHECK_CONTAINS(err.msg, "missing.gguf");
    n_cases++;
    CHECK(moe_gguf_open(&g, d, &err) == MOE_ERR && g == NULL);
    CHECK_CONTAINS(err.msg, "not a regular file");

    snprintf(path, sizeof path, "%s/empty.gguf", d);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) fclose(f);
    n_cases++;
    CHECK(moe_gguf_open(&g, path, &err) == MOE_ERR && g == NULL);
    CHECK_CONTAINS(err.msg, "empty file");

    /* A good file, then a bad one: the error names the path. */
    gb b = {0};
    build_all_types(&b, 3);
    snprintf(path, sizeof path, "%s/all.gguf", d);
    f = fopen(path, "wb");
    CHECK(f && fwrite(b.p, 1, b.n, f) == b.n);
    if (f) fclose(f);
    n_cases++;
    CHECK_MSG(moe_gguf_open(&g, path, &err) == MOE_OK && g != NULL, "%s", err.msg);
    if (g) {
        check_all_types(g, (uint8_t *)moe_gguf_base(g));
        moe_gguf_close(g);
        g = NULL;
    }
    b.p[0] = 'X';
    f = fopen(path, "wb");
    CHECK(f && fwrite(b.p, 1, b.n, f) == b.n);
    if (f) fclose(f);
    n_cases++;
    CHECK(moe_gguf_open(&g, path, &err) == MOE_ERR && g == NULL);
    CHECK_CONTAINS(err.msg, path);
    CHECK_CONTAINS(err.msg, "not a GGUF file");
    gb_free(&b);

    /* A 16 GB sparse file whose header claims 2^30 + 1 keys: it could hold
     * them, but the reader must refuse before sizing its tables from the
     * count (it used to abort on the 64 GB allocation, or hang where that
     * allocation succeeded). */
    unlink(path);
    snprintf(path, sizeof path, "%s/huge_count.gguf", d);
    gb_header(&b, 3, 0, (1ull << 30) + 1);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK_MSG(fd >= 0 && write(fd, b.p, b.n) == (ssize_t)b.n && ftruncate(fd, 16ll << 30) == 0 && close(fd) == 0,
              "cannot make a sparse file %s: %s", path, strerror(errno));
    gb_free(&b);
    n_cases++;
    CHECK(moe_gguf_open(&g, path, &err) == MOE_ERR && g == NULL);
    CHECK_CONTAINS(err.msg, "key/value count 1073741825 exceeds the limit of 1048576");

    unlink(path);
    test_big_string_array(d);
    snprintf(path, sizeof path, "%s/empty.gguf", d);
    unlink(path);
    rmdir(d);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write-seeds")) {
        seed_dir = argv[2];
    } else if (argc != 1) {
        fprintf(stderr, "usage: gguf_reader [--write-seeds DIR]\n");
        return 2;
    }
    test_header();
    test_keys();
    test_alignment();
    test_tensors();
    test_values();
    if (!seed_dir) test_files();
    printf("gguf_reader: %d handcrafted files checked\n", n_cases);
    return check_summary("gguf_reader");
}
