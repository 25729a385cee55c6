/*
 * gguf.h — GGUF reader (v2, v3), validated like a file from a stranger.
 *
 * A file is mapped read-only; nothing is copied but key and tensor names
 * (short, NUL-terminated for convenience).  String values and tensor data
 * point into the mapping, so a 700 GB model costs only its metadata in RAM
 * and the pages actually touched.
 *
 * Everything that comes from the file is checked before use: counts against
 * the bytes left, string/array lengths against caps, value and tensor type
 * codes against their ranges, dims (1..4, each > 0, first a multiple of the
 * type's block), element count and byte size with overflow checks,
 * alignment (power of two, <= 1 MiB), tensor offsets (aligned, inside the
 * file, not overlapping), duplicate keys and tensor names.
 */
#ifndef MOE_GGUF_H
#define MOE_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

#define MOE_GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define MOE_GGUF_MAX_DIMS 4
#define MOE_GGUF_DEFAULT_ALIGNMENT 32
#define MOE_GGUF_MAX_ALIGNMENT (1u << 20)
#define MOE_GGUF_MAX_KEY_LEN 65535u
#define MOE_GGUF_MAX_NAME_LEN 256u
#define MOE_GGUF_MAX_STRING_LEN (256u << 20)
#define MOE_GGUF_MAX_ARRAY_LEN (1ull << 31)

typedef enum {
    MOE_GGUF_U8 = 0,
    MOE_GGUF_I8 = 1,
    MOE_GGUF_U16 = 2,
    MOE_GGUF_I16 = 3,
    MOE_GGUF_U32 = 4,
    MOE_GGUF_I32 = 5,
    MOE_GGUF_F32 = 6,
    MOE_GGUF_BOOL = 7,
    MOE_GGUF_STRING = 8,
    MOE_GGUF_ARRAY = 9,
    MOE_GGUF_U64 = 10,
    MOE_GGUF_I64 = 11,
    MOE_GGUF_F64 = 12,
    MOE_GGUF_NTYPES
} moe_gguf_vtype;

typedef struct moe_gguf moe_gguf;

/* One tensor's description; data points into the mapping. */
typedef struct moe_gguf_tensor {
    const char *name;
    uint32_t type;                    /* moe_dtype code (validated) */
    uint32_t n_dims;                  /* 1..4 */
    uint64_t ne[MOE_GGUF_MAX_DIMS];   /* ggml order: ne[0] contiguous; unused dims are 1 */
    uint64_t n_elems;
    uint64_t offset;                  /* absolute offset of the data in the file */
    uint64_t size;                    /* bytes */
    const void *data;
} moe_gguf_tensor;

/* An array value (from moe_gguf_get_arr); data points at its first element. */
typedef struct moe_gguf_arr {
    moe_gguf_vtype type; /* element type (never ARRAY) */
    uint64_t count;
    const void *data;    /* raw little-endian elements (not for strings) */
    int kv;              /* index of the key, for moe_gguf_arr_str */
} moe_gguf_arr;

/* Maps and validates a file. */
int moe_gguf_open(moe_gguf **out, const char *path, moe_err *err);
/* Validates a buffer in memory; the buffer must outlive the handle. */
int moe_gguf_open_memory(moe_gguf **out, const void *data, size_t size, moe_err *err);
void moe_gguf_close(moe_gguf *g);

uint32_t moe_gguf_version(const moe_gguf *g);
uint32_t moe_gguf_alignment(const moe_gguf *g);
uint64_t moe_gguf_data_offset(const moe_gguf *g);  /* start of the tensor data section */
uint64_t moe_gguf_file_size(const moe_gguf *g);
const void *moe_gguf_base(const moe_gguf *g);      /* first byte of the file/buffer */

/* Key/value pairs, in file order. */
int moe_gguf_n_kv(const moe_gguf *g);
const char *moe_gguf_kv_key(const moe_gguf *g, int i);
moe_gguf_vtype moe_gguf_kv_type(const moe_gguf *g, int i);
int moe_gguf_find_kv(const moe_gguf *g, const char *key); /* -1 if absent */
const char *moe_gguf_vtype_name(moe_gguf_vtype t);

/* Typed getters.  Integers of any width convert if the value fits; floats
 * accept f32 and f64; each fails with a message naming the key if it is
 * absent or of the wrong type. */
int moe_gguf_get_u64(const moe_gguf *g, const char *key, uint64_t *out, moe_err *err);
int moe_gguf_get_i64(const moe_gguf *g, const char *key, int64_t *out, moe_err *err);
int moe_gguf_get_u32(const moe_gguf *g, const char *key, uint32_t *out, moe_err *err);
int moe_gguf_get_f64(const moe_gguf *g, const char *key, double *out, moe_err *err);
int moe_gguf_get_f32(const moe_gguf *g, const char *key, float *out, moe_err *err);
int moe_gguf_get_bool(const moe_gguf *g, const char *key, bool *out, moe_err *err);
/* A string value: not NUL-terminated; *len bytes at *s. */
int moe_gguf_get_str(const moe_gguf *g, const char *key, const char **s, uint64_t *len, moe_err *err);
int moe_gguf_get_arr(const moe_gguf *g, const char *key, moe_gguf_arr *out, moe_err *err);
/* Same getters by index (for printing and copying). */
int moe_gguf_kv_scalar_i64(const moe_gguf *g, int i, int64_t *out);   /* integer or bool types */
int moe_gguf_kv_scalar_u64(const moe_gguf *g, int i, uint64_t *out);  /* unsigned types */
int moe_gguf_kv_scalar_f64(const moe_gguf *g, int i, double *out);    /* f32/f64 */
const char *moe_gguf_kv_str(const moe_gguf *g, int i, uint64_t *len); /* STRING values */
void moe_gguf_kv_arr(const moe_gguf *g, int i, moe_gguf_arr *out);    /* ARRAY values */
/* Element j of a string array; not NUL-terminated. */
const char *moe_gguf_arr_str(const moe_gguf *g, const moe_gguf_arr *a, uint64_t j, uint64_t *len);
/* The raw bytes of a key's value (after its type code); for copying. */
const void *moe_gguf_kv_raw(const moe_gguf *g, int i, uint64_t *size);

/* Tensors, in file order. */
int moe_gguf_n_tensors(const moe_gguf *g);
const moe_gguf_tensor *moe_gguf_tensor_at(const moe_gguf *g, int i);
const moe_gguf_tensor *moe_gguf_find_tensor(const moe_gguf *g, const char *name); /* NULL if absent */
/* The block N of a tensor named "blk.N.*" (N at most 10^6), or -1. */
int moe_gguf_layer_of(const char *name);

#endif
