/*
 * gguf_write.h — GGUF v3 writer.
 *
 * Usage: add key/values and tensor descriptions, then open the output (the
 * header is written at once), write each tensor's bytes with positioned
 * writes (several threads may write different parts at the same time), and
 * commit, which renames the finished file into place.  A failed or
 * abandoned write leaves no partial file behind.
 *
 *   moe_gguf_writer *w = moe_gguf_writer_new();
 *   moe_gguf_writer_kv_str(w, "general.architecture", "deepseek2");
 *   int t = moe_gguf_writer_add_tensor(w, "output.weight", MOE_DT_F32, 2, ne);
 *   moe_gguf_writer_open(w, "out.gguf", &err);
 *   moe_gguf_writer_write(w, t, 0, bytes, moe_gguf_writer_tensor_size(w, t), &err);
 *   moe_gguf_writer_commit(w, &err);
 *   moe_gguf_writer_free(w);
 */
#ifndef MOE_GGUF_WRITE_H
#define MOE_GGUF_WRITE_H

#include <stdbool.h>
#include <stdint.h>

#include "base.h"
#include "gguf.h"

typedef struct moe_gguf_writer moe_gguf_writer;

moe_gguf_writer *moe_gguf_writer_new(void);
/* Frees the writer; removes the temporary file if commit was not reached. */
void moe_gguf_writer_free(moe_gguf_writer *w);

/* Data alignment (power of two, <= 1 MiB); also written as general.alignment
 * when it differs from the default 32.  Call before adding tensors. */
int moe_gguf_writer_set_alignment(moe_gguf_writer *w, uint32_t alignment, moe_err *err);

/* Key/values, written in the order they are added.  A key added twice is a
 * programming error (asserted). */
void moe_gguf_writer_kv_str(moe_gguf_writer *w, const char *key, const char *value);
void moe_gguf_writer_kv_strn(moe_gguf_writer *w, const char *key, const char *value, uint64_t len);
void moe_gguf_writer_kv_u32(moe_gguf_writer *w, const char *key, uint32_t value);
void moe_gguf_writer_kv_i32(moe_gguf_writer *w, const char *key, int32_t value);
void moe_gguf_writer_kv_f32(moe_gguf_writer *w, const char *key, float value);
void moe_gguf_writer_kv_bool(moe_gguf_writer *w, const char *key, bool value);
/* Arrays: strings given as pointers + lengths; scalars as raw elements. */
void moe_gguf_writer_kv_arr_str(moe_gguf_writer *w, const char *key, uint64_t n, const char *const *strs,
                                const uint64_t *lens);
void moe_gguf_writer_kv_arr_i32(moe_gguf_writer *w, const char *key, uint64_t n, const int32_t *values);
void moe_gguf_writer_kv_arr_f32(moe_gguf_writer *w, const char *key, uint64_t n, const float *values);
/* Copies key i of src (any type) verbatim. */
void moe_gguf_writer_kv_copy(moe_gguf_writer *w, const moe_gguf *src, int i);
bool moe_gguf_writer_has_kv(const moe_gguf_writer *w, const char *key);

/* Describes a tensor (ne in ggml order); returns its index or MOE_ERR if the
 * shape does not fit the type's blocks or the size overflows. */
int moe_gguf_writer_add_tensor(moe_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                               const uint64_t *ne, moe_err *err);
int moe_gguf_writer_n_tensors(const moe_gguf_writer *w);
const char *moe_gguf_writer_tensor_name(const moe_gguf_writer *w, int i);
uint32_t moe_gguf_writer_tensor_type(const moe_gguf_writer *w, int i);
const uint64_t *moe_gguf_writer_tensor_ne(const moe_gguf_writer *w, int i); /* 4 dims, unused = 1 */

/* Creates "<path>.tmp" and writes header, metadata and tensor infos. */
int moe_gguf_writer_open(moe_gguf_writer *w, const char *path, moe_err *err);
/* Writes n bytes at byte offset `at` of tensor i (between open and commit;
 * thread-safe for disjoint ranges). */
int moe_gguf_writer_write(moe_gguf_writer *w, int i, uint64_t at, const void *data, uint64_t n, moe_err *err);
uint64_t moe_gguf_writer_tensor_size(const moe_gguf_writer *w, int i);
/* Sizes the file (zero padding at the end), closes it and renames it to
 * its final path. */
int moe_gguf_writer_commit(moe_gguf_writer *w, moe_err *err);

#endif
