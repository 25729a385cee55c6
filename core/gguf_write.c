/*
 * gguf_write.c — key/values are serialised into a growing byte buffer as
 * they are added; tensor infos are serialised at open, once every offset is
 * known.  Tensor bytes go out with pwrite (gaps stay sparse zeros): cheaper
 * than faulting in a writable mapping page by page, and safe from several
 * threads at once.
 */
#include "gguf_write.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtype.h"

typedef struct wtensor {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    uint64_t ne[MOE_GGUF_MAX_DIMS];
    uint64_t size;
    uint64_t offset; /* relative to the data section */
} wtensor;

struct moe_gguf_writer {
    uint8_t *meta; /* serialised key/values */
    size_t meta_len, meta_cap;
    uint64_t n_kv;
    char **keys;
    uint32_t alignment;
    wtensor *tensors;
    int n_tensors, cap_tensors;
    uint64_t data_bytes; /* running end of the data section */
    /* while open */
    char *path, *tmp_path;
    int fd; /* -1 unless open */
    uint64_t file_size, data_off;
};

static void put(moe_gguf_writer *w, const void *p, size_t n)
{
    if (w->meta_len + n > w->meta_cap) {
        size_t cap = w->meta_cap ? w->meta_cap : 4096;
        while (cap < w->meta_len + n) cap *= 2;
        w->meta = moe_xrealloc(w->meta, cap);
        w->meta_cap = cap;
    }
    memcpy(w->meta + w->meta_len, p, n);
    w->meta_len += n;
}

static void put_u32(moe_gguf_writer *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(moe_gguf_writer *w, uint64_t v) { put(w, &v, 8); }
static void put_str(moe_gguf_writer *w, const char *s, uint64_t n)
{
    put_u64(w, n);
    put(w, s, n);
}

static void begin_kv(moe_gguf_writer *w, const char *key, moe_gguf_vtype type)
{
    MOE_ASSERT(!moe_gguf_writer_has_kv(w, key));
    w->keys = moe_xrealloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *w->keys);
    w->keys[w->n_kv++] = moe_xstrdup(key);
    put_str(w, key, strlen(key));
    put_u32(w, (uint32_t)type);
}

static int write_all(moe_gguf_writer *w, uint64_t at, const void *data, uint64_t n, moe_err *err)
{
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t k = pwrite(w->fd, p, n > (1u << 30) ? (1u << 30) : (size_t)n, (off_t)at);
        if (k < 0) {
            if (errno == EINTR) continue;
            return moe_err_set(err, "%s: write failed: %s", w->tmp_path, strerror(errno));
        }
        p += k;
        at += (uint64_t)k;
        n -= (uint64_t)k;
    }
    return MOE_OK;
}

moe_gguf_writer *moe_gguf_writer_new(void)
{
    moe_gguf_writer *w = moe_xcalloc(1, sizeof *w);
    w->alignment = MOE_GGUF_DEFAULT_ALIGNMENT;
    w->fd = -1;
    return w;
}

void moe_gguf_writer_free(moe_gguf_writer *w)
{
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    if (w->tmp_path) unlink(w->tmp_path);
    free(w->tmp_path);
    free(w->path);
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (int i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w->meta);
    free(w);
}

bool moe_gguf_writer_has_kv(const moe_gguf_writer *w, const char *key)
{
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key)) return true;
    return false;
}

int moe_gguf_writer_set_alignment(moe_gguf_writer *w, uint32_t alignment, moe_err *err)
{
    if (!moe_is_pow2(alignment) || alignment > MOE_GGUF_MAX_ALIGNMENT)
        return moe_err_set(err, "alignment %u is not a power of two <= 1 MiB", alignment);
    MOE_ASSERT(w->n_tensors == 0);
    w->alignment = alignment;
    if (alignment != MOE_GGUF_DEFAULT_ALIGNMENT && !moe_gguf_writer_has_kv(w, "general.alignment"))
        moe_gguf_writer_kv_u32(w, "general.alignment", alignment);
    return MOE_OK;
}

void moe_gguf_writer_kv_strn(moe_gguf_writer *w, const char *key, const char *value, uint64_t len)
{
    begin_kv(w, key, MOE_GGUF_STRING);
    put_str(w, value, len);
}

void moe_gguf_writer_kv_str(moe_gguf_writer *w, const char *key, const char *value)
{
    moe_gguf_writer_kv_strn(w, key, value, strlen(value));
}

void moe_gguf_writer_kv_u32(moe_gguf_writer *w, const char *key, uint32_t value)
{
    begin_kv(w, key, MOE_GGUF_U32);
    put_u32(w, value);
}

void moe_gguf_writer_kv_i32(moe_gguf_writer *w, const char *key, int32_t value)
{
    begin_kv(w, key, MOE_GGUF_I32);
    put(w, &value, 4);
}

void moe_gguf_writer_kv_f32(moe_gguf_writer *w, const char *key, float value)
{
    begin_kv(w, key, MOE_GGUF_F32);
    put(w, &value, 4);
}

void moe_gguf_writer_kv_bool(moe_gguf_writer *w, const char *key, bool value)
{
    begin_kv(w, key, MOE_GGUF_BOOL);
    uint8_t b = value ? 1 : 0;
    put(w, &b, 1);
}

void moe_gguf_writer_kv_arr_str(moe_gguf_writer *w, const char *key, uint64_t n, const char *const *strs,
                                const uint64_t *lens)
{
    begin_kv(w, key, MOE_GGUF_ARRAY);
    put_u32(w, MOE_GGUF_STRING);
    put_u64(w, n);
    for (uint64_t i = 0; i < n; i++) put_str(w, strs[i], lens ? lens[i] : strlen(strs[i]));
}

void moe_gguf_writer_kv_arr_i32(moe_gguf_writer *w, const char *key, uint64_t n, const int32_t *values)
{
    begin_kv(w, key, MOE_GGUF_ARRAY);
    put_u32(w, MOE_GGUF_I32);
    put_u64(w, n);
    put(w, values, (size_t)n * 4);
}

void moe_gguf_writer_kv_arr_f32(moe_gguf_writer *w, const char *key, uint64_t n, const float *values)
{
    begin_kv(w, key, MOE_GGUF_ARRAY);
    put_u32(w, MOE_GGUF_F32);
    put_u64(w, n);
    put(w, values, (size_t)n * 4);
}

void moe_gguf_writer_kv_copy(moe_gguf_writer *w, const moe_gguf *src, int i)
{
    uint64_t size;
    const void *raw = moe_gguf_kv_raw(src, i, &size);
    begin_kv(w, moe_gguf_kv_key(src, i), moe_gguf_kv_type(src, i));
    put(w, raw, (size_t)size);
}

int moe_gguf_writer_add_tensor(moe_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                               const uint64_t *ne, moe_err *err)
{
    MOE_ASSERT(w->fd < 0);
    const moe_dtype_info *info = moe_dtype_info_get(type);
    char buf[24];
    if (!info) return moe_err_set(err, "tensor '%s': cannot write type %s", name, moe_dtype_name(type, buf, sizeof buf));
    if (n_dims < 1 || n_dims > MOE_GGUF_MAX_DIMS) return moe_err_set(err, "tensor '%s': %u dims", name, n_dims);
    if (strlen(name) > MOE_GGUF_MAX_NAME_LEN) return moe_err_set(err, "tensor '%s': name too long", name);
    wtensor t = {.type = type, .n_dims = n_dims};
    uint64_t n = 1;
    for (int d = 0; d < MOE_GGUF_MAX_DIMS; d++) {
        t.ne[d] = (uint32_t)d < n_dims ? ne[d] : 1;
        if (t.ne[d] == 0 || !moe_mul_u64(n, t.ne[d], &n))
            return moe_err_set(err, "tensor '%s': bad dimension %d", name, d);
    }
    if (t.ne[0] % info->block_elems)
        return moe_err_set(err, "tensor '%s': row of %llu is not a multiple of the %s block (%u)", name,
                           (unsigned long long)t.ne[0], info->name, info->block_elems);
    if (!moe_dtype_bytes(type, n, &t.size) || !moe_align_up_u64(w->data_bytes, w->alignment, &t.offset) ||
        !moe_add_u64(t.offset, t.size, &w->data_bytes))
        return moe_err_set(err, "tensor '%s': size overflows", name);
    if (w->n_tensors == w->cap_tensors) {
        w->cap_tensors = w->cap_tensors ? 2 * w->cap_tensors : 64;
        w->tensors = moe_xrealloc(w->tensors, (size_t)w->cap_tensors * sizeof *w->tensors);
    }
    t.name = moe_xstrdup(name);
    w->tensors[w->n_tensors] = t;
    return w->n_tensors++;
}

int moe_gguf_writer_n_tensors(const moe_gguf_writer *w) { return w->n_tensors; }
const char *moe_gguf_writer_tensor_name(const moe_gguf_writer *w, int i) { return w->tensors[i].name; }
uint32_t moe_gguf_writer_tensor_type(const moe_gguf_writer *w, int i) { return w->tensors[i].type; }
const uint64_t *moe_gguf_writer_tensor_ne(const moe_gguf_writer *w, int i) { return w->tensors[i].ne; }

int moe_gguf_writer_open(moe_gguf_writer *w, const char *path, moe_err *err)
{
    MOE_ASSERT(w->fd < 0 && !w->tmp_path);
    /* Header + metadata + tensor infos, then padding to the alignment. */
    size_t info_bytes = 0;
    for (int i = 0; i < w->n_tensors; i++)
        info_bytes += 8 + strlen(w->tensors[i].name) + 4 + 8 * (size_t)w->tensors[i].n_dims + 4 + 8;
    uint64_t header = 24 + w->meta_len + info_bytes, data_end;
    /* the last tensor is padded to the alignment too, as llama.cpp and
     * gguf-py write it */
    if (!moe_align_up_u64(header, w->alignment, &w->data_off) ||
        !moe_align_up_u64(w->data_bytes, w->alignment, &data_end) || !moe_add_u64(w->data_off, data_end, &w->file_size))
        return moe_err_set(err, "%s: file size overflows", path);

    size_t plen = strlen(path);
    w->path = moe_xstrdup(path);
    w->tmp_path = moe_xmalloc(plen + 5);
    memcpy(w->tmp_path, path, plen);
    memcpy(w->tmp_path + plen, ".tmp", 5);
    w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        moe_err_set(err, "%s: cannot create: %s", w->tmp_path, strerror(errno));
        free(w->tmp_path);
        w->tmp_path = NULL; /* nothing to remove */
        return MOE_ERR;
    }

    uint8_t *h = moe_xmalloc(w->data_off);
    memset(h, 0, w->data_off);
    uint8_t *o = h;
    uint32_t magic = MOE_GGUF_MAGIC, version = 3;
    uint64_t nt = (uint64_t)w->n_tensors;
    memcpy(o, &magic, 4);
    memcpy(o + 4, &version, 4);
    memcpy(o + 8, &nt, 8);
    memcpy(o + 16, &w->n_kv, 8);
    o += 24;
    memcpy(o, w->meta, w->meta_len);
    o += w->meta_len;
    for (int i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        uint64_t n = strlen(t->name);
        memcpy(o, &n, 8);
        memcpy(o + 8, t->name, n);
        o += 8 + n;
        memcpy(o, &t->n_dims, 4);
        o += 4;
        memcpy(o, t->ne, 8 * (size_t)t->n_dims);
        o += 8 * (size_t)t->n_dims;
        memcpy(o, &t->type, 4);
        memcpy(o + 4, &t->offset, 8);
        o += 12;
    }
    int rc = write_all(w, 0, h, w->data_off, err);
    free(h);
    return rc;
}

int moe_gguf_writer_write(moe_gguf_writer *w, int i, uint64_t at, const void *data, uint64_t n, moe_err *err)
{
    MOE_ASSERT(w->fd >= 0 && i >= 0 && i < w->n_tensors);
    MOE_ASSERT(at <= w->tensors[i].size && n <= w->tensors[i].size - at);
    return write_all(w, w->data_off + w->tensors[i].offset + at, data, n, err);
}

uint64_t moe_gguf_writer_tensor_size(const moe_gguf_writer *w, int i)
{
    MOE_ASSERT(i >= 0 && i < w->n_tensors);
    return w->tensors[i].size;
}

int moe_gguf_writer_commit(moe_gguf_writer *w, moe_err *err)
{
    MOE_ASSERT(w->fd >= 0);
    int rc = ftruncate(w->fd, (off_t)w->file_size);
    int e = errno;
    if (close(w->fd) != 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    w->fd = -1;
    if (rc != 0) return moe_err_set(err, "%s: cannot finish the file: %s", w->path, strerror(e));
    if (rename(w->tmp_path, w->path) != 0) return moe_err_set(err, "%s: cannot rename into place: %s", w->path, strerror(errno));
    free(w->tmp_path);
    w->tmp_path = NULL;
    return MOE_OK;
}
