/*
 * gguf_builder.h — a byte builder for handcrafted GGUF files in memory, used
 * by the reader tests and the fuzz seed corpus.  It writes exactly what it
 * is told (no validation), so a test can put any bad count, length, type
 * code or offset in any place:
 *
 *   gb b = {0};
 *   gb_header(&b, 3, 1, 1);                 // version, n_tensors, n_kv
 *   gb_key(&b, "k"); gb_u32(&b, MOE_GGUF_U32); gb_u32(&b, 7);
 *   gb_tensor(&b, "t", 1, (uint64_t[]){8}, MOE_DT_F32, 0);
 *   gb_pad(&b, 32); gb_zeros(&b, 32);
 *   ... gb_copy(&b) ... gb_free(&b);
 *
 * Little-endian host assumed (as the reader assumes).
 */
#ifndef MOE_TEST_GGUF_BUILDER_H
#define MOE_TEST_GGUF_BUILDER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

typedef struct gb {
    uint8_t *p;
    size_t n, cap;
} gb;

static inline void gb_bytes(gb *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = moe_xrealloc(b->p, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}

static inline void gb_zeros(gb *b, size_t n)
{
    static const uint8_t z[256];
    while (n) {
        size_t k = n < sizeof z ? n : sizeof z;
        gb_bytes(b, z, k);
        n -= k;
    }
}

static inline void gb_u8(gb *b, uint8_t v) { gb_bytes(b, &v, 1); }
static inline void gb_u16(gb *b, uint16_t v) { gb_bytes(b, &v, 2); }
static inline void gb_u32(gb *b, uint32_t v) { gb_bytes(b, &v, 4); }
static inline void gb_u64(gb *b, uint64_t v) { gb_bytes(b, &v, 8); }
static inline void gb_f32(gb *b, float v) { gb_bytes(b, &v, 4); }
static inline void gb_f64(gb *b, double v) { gb_bytes(b, &v, 8); }

/* A GGUF string: u64 length + bytes. */
static inline void gb_strn(gb *b, const char *s, size_t n)
{
    gb_u64(b, n);
    gb_bytes(b, s, n);
}
static inline void gb_str(gb *b, const char *s) { gb_strn(b, s, strlen(s)); }

/* Header: magic, version, tensor count, key/value count. */
static inline void gb_header(gb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    gb_bytes(b, "GGUF", 4);
    gb_u32(b, version);
    gb_u64(b, n_tensors);
    gb_u64(b, n_kv);
}

/* A key; the caller appends the value type code and the value. */
static inline void gb_key(gb *b, const char *key) { gb_str(b, key); }

static inline void gb_kv_u32(gb *b, const char *key, uint32_t v)
{
    gb_key(b, key);
    gb_u32(b, 4 /* MOE_GGUF_U32 */);
    gb_u32(b, v);
}

static inline void gb_kv_str(gb *b, const char *key, const char *v)
{
    gb_key(b, key);
    gb_u32(b, 8 /* MOE_GGUF_STRING */);
    gb_str(b, v);
}

/* A tensor info: name, n_dims, ne[0..n_dims), type code, relative offset. */
static inline void gb_tensor(gb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                             uint64_t offset)
{
    gb_str(b, name);
    gb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) gb_u64(b, ne[d]);
    gb_u32(b, type);
    gb_u64(b, offset);
}

/* Zero bytes up to the next multiple of align. */
static inline void gb_pad(gb *b, size_t align)
{
    size_t r = b->n % align;
    if (r) gb_zeros(b, align - r);
}

/* An exactly sized heap copy (so ASan sees any read past the end). */
static inline uint8_t *gb_copy(const gb *b)
{
    uint8_t *p = moe_xmalloc(b->n ? b->n : 1);
    if (b->n) memcpy(p, b->p, b->n);
    return p;
}

static inline void gb_free(gb *b)
{
    free(b->p);
    *b = (gb){0};
}

#endif
