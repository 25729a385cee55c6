/*
 * gguf.c — the GGUF reader.  Parsing is a single forward pass over the
 * header, key/values and tensor infos with a bounds-checked cursor; every
 * rule of the format that a hostile file could break has its own error.
 */
#include "gguf.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>

#include "dtype.h"

typedef struct kv_entry {
    char *key;
    moe_gguf_vtype type;
    uint64_t off;      /* value offset (after the type code) */
    uint64_t size;     /* value bytes */
    moe_gguf_vtype arr_type;
    uint64_t arr_count;
    uint64_t arr_data; /* offset of the first element */
    uint64_t *str_off; /* string arrays: offset of each element's length field */
} kv_entry;

struct moe_gguf {
    const uint8_t *base;
    uint64_t size;
    bool mapped;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_off;
    int n_kv;
    kv_entry *kvs;
    int n_tensors;
    moe_gguf_tensor *tensors;
    uint32_t *kv_hash; /* open addressing: index + 1, 0 = empty */
    uint32_t kv_hash_cap;
    uint32_t *t_hash;
    uint32_t t_hash_cap;
};

/* Most keys or tensors a file may declare: far above any real model
 * (DeepSeek-V3 has ~50 keys and ~1,900 tensors; even per-expert tensors would
 * be ~45,000) and small enough that the tables allocated from the header stay
 * near 150 MB at worst. */
#define MAX_COUNT (1u << 20)

/* ---- bounds-checked cursor ------------------------------------------------ */

typedef struct cursor {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    moe_err *err;
} cursor;

static int need(cursor *c, uint64_t n, const char *what)
{
    if (n > c->size - c->pos)
        return moe_err_set(c->err, "file truncated at offset %llu: %s needs %llu bytes, %llu left",
                           (unsigned long long)c->pos, what, (unsigned long long)n,
                           (unsigned long long)(c->size - c->pos));
    return MOE_OK;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what)
{
    if (need(c, 4, what)) return MOE_ERR;
    memcpy(v, c->p + c->pos, 4);
    c->pos += 4;
    return MOE_OK;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what)
{
    if (need(c, 8, what)) return MOE_ERR;
    memcpy(v, c->p + c->pos, 8);
    c->pos += 8;
    return MOE_OK;
}

/* Reads a length-prefixed string; *off is the offset of its bytes. */
static int rd_str(cursor *c, uint64_t cap, uint64_t *off, uint64_t *len, const char *what)
{
    if (rd_u64(c, len, what)) return MOE_ERR;
    if (*len > cap)
        return moe_err_set(c->err, "%s: length %llu exceeds the limit of %llu bytes", what,
                           (unsigned long long)*len, (unsigned long long)cap);
    if (need(c, *len, what)) return MOE_ERR;
    *off = c->pos;
    c->pos += *len;
    return MOE_OK;
}

/* Grows a zero-filled table to hold at least need entries (doubling). */
static void grow_table(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need) n *= 2;
    *arr = moe_xrealloc(*arr, n * elem);
    memset((char *)*arr + *cap * elem, 0, (n - *cap) * elem);
    *cap = n;
}

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static uint32_t hash_cap_for(int n)
{
    uint32_t cap = 16;
    while (cap < (uint32_t)n * 2u) cap <<= 1;
    return cap;
}

/* Inserts index i under name; returns the existing index if the name is taken. */
static int hash_insert(uint32_t *tab, uint32_t cap, const char *name, int i, const char *(*name_of)(const moe_gguf *, int),
                       const moe_gguf *g)
{
    uint32_t h = (uint32_t)hash_name(name) & (cap - 1);
    while (tab[h]) {
        int j = (int)tab[h] - 1;
        if (!strcmp(name_of(g, j), name)) return j;
        h = (h + 1) & (cap - 1);
    }
    tab[h] = (uint32_t)i + 1;
    return -1;
}

static int hash_find(const uint32_t *tab, uint32_t cap, const char *name, const char *(*name_of)(const moe_gguf *, int),
                     const moe_gguf *g)
{
    if (!tab) return -1;
    uint32_t h = (uint32_t)hash_name(name) & (cap - 1);
    while (tab[h]) {
        int j = (int)tab[h] - 1;
        if (!strcmp(name_of(g, j), name)) return j;
        h = (h + 1) & (cap - 1);
    }
    return -1;
}

static const char *kv_name_of(const moe_gguf *g, int i) { return g->kvs[i].key; }
static const char *tensor_name_of(const moe_gguf *g, int i) { return g->tensors[i].name; }

/* ---- values ------------------------------------------------------------------ */

static const uint8_t scalar_size[MOE_GGUF_NTYPES] = {
    [MOE_GGUF_U8] = 1,  [MOE_GGUF_I8] = 1,  [MOE_GGUF_U16] = 2, [MOE_GGUF_I16] = 2,
    [MOE_GGUF_U32] = 4, [MOE_GGUF_I32] = 4, [MOE_GGUF_F32] = 4, [MOE_GGUF_BOOL] = 1,
    [MOE_GGUF_U64] = 8, [MOE_GGUF_I64] = 8, [MOE_GGUF_F64] = 8,
};

const char *moe_gguf_vtype_name(moe_gguf_vtype t)
{
    static const char *const names[MOE_GGUF_NTYPES] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
    };
    return (unsigned)t < MOE_GGUF_NTYPES ? names[t] : "invalid";
}

static int parse_value(cursor *c, kv_entry *e)
{
    uint32_t t;
    if (rd_u32(c, &t, "value type")) return MOE_ERR;
    if (t >= MOE_GGUF_NTYPES) return moe_err_set(c->err, "key '%s': unknown value type %u", e->key, t);
    e->type = (moe_gguf_vtype)t;
    e->off = c->pos;
    if (t == MOE_GGUF_STRING) {
        uint64_t off, len;
        if (rd_str(c, MOE_GGUF_MAX_STRING_LEN, &off, &len, "string value"))
            return moe_err_prefix(c->err, "key '%s'", e->key);
    } else if (t == MOE_GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        if (rd_u32(c, &et, "array element type") || rd_u64(c, &n, "array length"))
            return moe_err_prefix(c->err, "key '%s'", e->key);
        if (et == MOE_GGUF_ARRAY) return moe_err_set(c->err, "key '%s': nested arrays are not supported", e->key);
        if (et >= MOE_GGUF_NTYPES)
            return moe_err_set(c->err, "key '%s': unknown array element type %u", e->key, et);
        if (n > MOE_GGUF_MAX_ARRAY_LEN)
            return moe_err_set(c->err, "key '%s': array length %llu exceeds the limit of %llu", e->key,
                               (unsigned long long)n, (unsigned long long)MOE_GGUF_MAX_ARRAY_LEN);
        uint64_t min_elem = et == MOE_GGUF_STRING ? 8 : scalar_size[et];
        if (n > (c->size - c->pos) / min_elem)
            return moe_err_set(c->err, "key '%s': array length %llu exceeds the file size", e->key,
                               (unsigned long long)n);
        e->arr_type = (moe_gguf_vtype)et;
        e->arr_count = n;
        e->arr_data = c->pos;
        if (et == MOE_GGUF_STRING) {
            /* The offsets table grows as elements are read: sized from the
             * count alone, a big file could ask for 16 GB before its first
             * bad element is seen. */
            uint64_t cap = 0;
            for (uint64_t j = 0; j < n; j++) {
                uint64_t off, len;
                if (j == cap) {
                    cap = cap ? 2 * cap : 1024;
                    if (cap > n) cap = n;
                    e->str_off = moe_xrealloc(e->str_off, (size_t)cap * sizeof(uint64_t));
                }
                e->str_off[j] = c->pos;
                if (rd_str(c, MOE_GGUF_MAX_STRING_LEN, &off, &len, "array string"))
                    return moe_err_prefix(c->err, "key '%s' element %llu", e->key, (unsigned long long)j);
            }
        } else {
            if (et == MOE_GGUF_BOOL)
                for (uint64_t j = 0; j < n; j++)
                    if (c->p[c->pos + j] > 1)
                        return moe_err_set(c->err, "key '%s': bool value %u is not 0 or 1 (element %llu)", e->key,
                                           c->p[c->pos + j], (unsigned long long)j);
            c->pos += n * min_elem; /* checked against the size above */
        }
    } else {
        if (need(c, scalar_size[t], "scalar value")) return moe_err_prefix(c->err, "key '%s'", e->key);
        if (t == MOE_GGUF_BOOL && c->p[c->pos] > 1)
            return moe_err_set(c->err, "key '%s': bool value %u is not 0 or 1", e->key, c->p[c->pos]);
        c->pos += scalar_size[t];
    }
    e->size = c->pos - e->off;
    return MOE_OK;
}

/* ---- tensors ----------------------------------------------------------------- */

static int parse_tensor_info(cursor *c, moe_gguf_tensor *t, int index)
{
    uint64_t off, len;
    char what[48];
    snprintf(what, sizeof what, "tensor %d name", index);
    if (rd_str(c, MOE_GGUF_MAX_NAME_LEN, &off, &len, what)) return MOE_ERR;
    if (len == 0) return moe_err_set(c->err, "tensor %d: empty name", index);
    if (memchr(c->p + off, 0, len)) return moe_err_set(c->err, "tensor %d: name contains a NUL byte", index);
    char *name = moe_xmalloc(len + 1);
    memcpy(name, c->p + off, len);
    name[len] = 0;
    t->name = name;

    uint32_t n_dims;
    if (rd_u32(c, &n_dims, "tensor dimension count")) return moe_err_prefix(c->err, "tensor '%s'", name);
    if (n_dims < 1 || n_dims > MOE_GGUF_MAX_DIMS)
        return moe_err_set(c->err, "tensor '%s': n_dims %u out of range 1..%d", name, n_dims, MOE_GGUF_MAX_DIMS);
    t->n_dims = n_dims;
    for (int d = 0; d < MOE_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (rd_u64(c, &t->ne[d], "tensor dimension")) return moe_err_prefix(c->err, "tensor '%s'", name);
        if (t->ne[d] == 0) return moe_err_set(c->err, "tensor '%s': dimension %u is 0", name, d);
        if (t->ne[d] > (uint64_t)INT64_MAX)
            return moe_err_set(c->err, "tensor '%s': dimension %u is too large", name, d);
        if (!moe_mul_u64(n_elems, t->ne[d], &n_elems) || n_elems > (uint64_t)INT64_MAX)
            return moe_err_set(c->err, "tensor '%s': element count overflows", name);
    }
    t->n_elems = n_elems;

    uint32_t type;
    if (rd_u32(c, &type, "tensor type")) return moe_err_prefix(c->err, "tensor '%s'", name);
    const moe_dtype_info *info = moe_dtype_info_get(type);
    if (!info) {
        char buf[24], list[160];
        const char *tn = moe_dtype_name(type, buf, sizeof buf);
        moe_dtype_supported_list(list, sizeof list);
        if (tn == buf)
            return moe_err_set(c->err, "tensor '%s': unknown tensor type code %u; supported: %s", name, type, list);
        return moe_err_set(c->err, "tensor '%s': unsupported tensor type %s (code %u); supported: %s", name, tn, type,
                           list);
    }
    t->type = type;
    if (t->ne[0] % info->block_elems != 0)
        return moe_err_set(c->err, "tensor '%s': first dimension %llu is not a multiple of the %s block size %u", name,
                           (unsigned long long)t->ne[0], info->name, info->block_elems);
    if (!moe_dtype_bytes(type, n_elems, &t->size))
        return moe_err_set(c->err, "tensor '%s': byte size overflows", name);
    if (rd_u64(c, &t->offset, "tensor offset")) return moe_err_prefix(c->err, "tensor '%s'", name);
    return MOE_OK;
}

typedef struct span {
    uint64_t offset;
    int index;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int check_layout(moe_gguf *g, moe_err *err)
{
    int n = g->n_tensors;
    for (int i = 0; i < n; i++) {
        moe_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return moe_err_set(err, "tensor '%s': offset %llu is not aligned to %u", t->name,
                               (unsigned long long)t->offset, g->alignment);
        uint64_t start, end;
        if (!moe_add_u64(g->data_off, t->offset, &start) || !moe_add_u64(start, t->size, &end) || end > g->size)
            return moe_err_set(err, "tensor '%s': data (offset %llu, %llu bytes) runs past the end of the file (%llu bytes)",
                               t->name, (unsigned long long)t->offset, (unsigned long long)t->size,
                               (unsigned long long)g->size);
        t->offset = start;
        t->data = g->base + start;
    }
    if (n < 2) return MOE_OK;
    span *order = moe_xmalloc((size_t)n * sizeof *order);
    for (int i = 0; i < n; i++) order[i] = (span){g->tensors[i].offset, i};
    qsort(order, (size_t)n, sizeof *order, cmp_span);
    int rc = MOE_OK;
    for (int i = 0; i + 1 < n; i++) {
        const moe_gguf_tensor *a = &g->tensors[order[i].index], *b = &g->tensors[order[i + 1].index];
        if (a->offset + a->size > b->offset) {
            rc = moe_err_set(err, "tensors '%s' and '%s' overlap", a->name, b->name);
            break;
        }
    }
    free(order);
    return rc;
}

/* ---- open -------------------------------------------------------------------- */

static int parse(moe_gguf *g, moe_err *err)
{
    cursor c = {.p = g->base, .size = g->size, .pos = 0, .err = err};
    uint32_t magic;
    if (rd_u32(&c, &magic, "magic")) return MOE_ERR;
    if (magic != MOE_GGUF_MAGIC) return moe_err_set(err, "not a GGUF file (bad magic 0x%08x)", magic);
    if (rd_u32(&c, &g->version, "version")) return MOE_ERR;
    if (g->version != 2 && g->version != 3)
        return moe_err_set(err, "unsupported GGUF version %u (supported: 2, 3)", g->version);
    uint64_t n_tensors, n_kv;
    if (rd_u64(&c, &n_tensors, "tensor count") || rd_u64(&c, &n_kv, "key/value count")) return MOE_ERR;
    /* Smallest key/value: 8-byte length + 1-byte key + 4-byte type + 1-byte value.
     * Smallest tensor info: 8 + 1 (name) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset). */
    uint64_t left = g->size - c.pos;
    if (n_kv > left / 14)
        return moe_err_set(err, "key/value count %llu exceeds what the file can hold", (unsigned long long)n_kv);
    if (n_tensors > left / 33)
        return moe_err_set(err, "tensor count %llu exceeds what the file can hold", (unsigned long long)n_tensors);
    /* Tables grow as entries are actually parsed (a header cannot make us
     * allocate for entries the file does not contain); the caps keep the
     * hash capacities far from wrapping. */
    if (n_kv > MAX_COUNT)
        return moe_err_set(err, "key/value count %llu exceeds the limit of %u", (unsigned long long)n_kv, MAX_COUNT);
    if (n_tensors > MAX_COUNT)
        return moe_err_set(err, "tensor count %llu exceeds the limit of %u", (unsigned long long)n_tensors, MAX_COUNT);

    g->alignment = MOE_GGUF_DEFAULT_ALIGNMENT;
    size_t kv_cap = 0;
    for (uint64_t i = 0; i < n_kv; i++) {
        grow_table((void **)&g->kvs, &kv_cap, (size_t)i + 1, sizeof *g->kvs);
        kv_entry *e = &g->kvs[i];
        uint64_t off, len;
        char what[40];
        snprintf(what, sizeof what, "key %llu", (unsigned long long)i);
        if (rd_str(&c, MOE_GGUF_MAX_KEY_LEN, &off, &len, what)) return MOE_ERR;
        if (len == 0) return moe_err_set(err, "key %llu: empty key", (unsigned long long)i);
        if (memchr(c.p + off, 0, len)) return moe_err_set(err, "key %llu: contains a NUL byte", (unsigned long long)i);
        e->key = moe_xmalloc(len + 1);
        memcpy(e->key, c.p + off, len);
        e->key[len] = 0;
        g->n_kv = (int)i + 1; /* owned from here: freed by close */
        if (parse_value(&c, e)) return MOE_ERR;
    }
    g->kv_hash_cap = hash_cap_for(g->n_kv);
    g->kv_hash = moe_xcalloc(g->kv_hash_cap, sizeof *g->kv_hash);
    for (int i = 0; i < g->n_kv; i++)
        if (hash_insert(g->kv_hash, g->kv_hash_cap, g->kvs[i].key, i, kv_name_of, g) >= 0)
            return moe_err_set(err, "duplicate key '%s'", g->kvs[i].key);

    int ai = moe_gguf_find_kv(g, "general.alignment");
    if (ai >= 0) {
        const kv_entry *e = &g->kvs[ai];
        if (e->type != MOE_GGUF_U32)
            return moe_err_set(err, "general.alignment must be of type u32, not %s", moe_gguf_vtype_name(e->type));
        uint32_t a;
        memcpy(&a, g->base + e->off, 4);
        if (!moe_is_pow2(a)) return moe_err_set(err, "general.alignment %u is not a power of two", a);
        if (a > MOE_GGUF_MAX_ALIGNMENT) return moe_err_set(err, "general.alignment %u exceeds 1 MiB", a);
        g->alignment = a;
    }

    size_t t_cap = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        grow_table((void **)&g->tensors, &t_cap, (size_t)i + 1, sizeof *g->tensors);
        g->n_tensors = (int)i + 1;
        if (parse_tensor_info(&c, &g->tensors[i], (int)i)) return MOE_ERR;
    }
    g->t_hash_cap = hash_cap_for(g->n_tensors);
    g->t_hash = moe_xcalloc(g->t_hash_cap, sizeof *g->t_hash);
    for (int i = 0; i < g->n_tensors; i++)
        if (hash_insert(g->t_hash, g->t_hash_cap, g->tensors[i].name, i, tensor_name_of, g) >= 0)
            return moe_err_set(err, "duplicate tensor name '%s'", g->tensors[i].name);

    if (!moe_align_up_u64(c.pos, g->alignment, &g->data_off))
        return moe_err_set(err, "data section offset overflows");
    if (n_tensors > 0 && g->data_off > g->size)
        return moe_err_set(err, "file truncated: tensor data section starts at %llu, file has %llu bytes",
                           (unsigned long long)g->data_off, (unsigned long long)g->size);
    return check_layout(g, err);
}

int moe_gguf_open_memory(moe_gguf **out, const void *data, size_t size, moe_err *err)
{
    *out = NULL;
    moe_gguf *g = moe_xcalloc(1, sizeof *g);
    g->base = data;
    g->size = size;
    if (parse(g, err)) {
        moe_gguf_close(g);
        return MOE_ERR;
    }
    *out = g;
    return MOE_OK;
}

/* The file read-only and shared, from a 2 MiB boundary when it is that
 * large: a 2 MiB page of the page cache (at a 2 MiB file offset) is mapped
 * whole only at a 2 MiB address, which not every file system's placement
 * gives (overlayfs does not).  The address space of size + 2 MiB is
 * reserved, the file mapped over its first boundary, the rest given back. */
static void *map_file(int fd, size_t size)
{
    const uintptr_t huge = (uintptr_t)2 << 20, page = (uintptr_t)sysconf(_SC_PAGESIZE);
    if (size < huge || size > SIZE_MAX - huge) return mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    char *r = mmap(NULL, size + huge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) return mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    char *a = (char *)(((uintptr_t)r + huge - 1) & ~(huge - 1));
    void *p = mmap(a, size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
        const int e = errno;
        munmap(r, size + huge);
        errno = e;
        return MAP_FAILED;
    }
    char *end = a + ((size + page - 1) & ~(page - 1)), *rend = r + ((size + huge + page - 1) & ~(page - 1));
    if (a > r) munmap(r, (size_t)(a - r));
    if (rend > end) munmap(end, (size_t)(rend - end));
    return p;
}

int moe_gguf_open(moe_gguf **out, const char *path, moe_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return moe_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return moe_err_set(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return moe_err_set(err, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return moe_err_set(err, "%s: empty file", path);
    }
    void *p = map_file(fd, (size_t)st.st_size);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return moe_err_set(err, "%s: cannot map: %s", path, strerror(e));
    /* Weights are streamed from the mapping on every token: ask for 2 MiB
     * pages (one TLB entry a 2 MiB instead of a 4 KiB page).  Pages read in
     * after this come as 2 MiB page-cache folios where the kernel and file
     * system have them (ext4 from Linux 6.16, xfs) and are mapped whole; a
     * file already cached in small pages stays so until it is evicted.
     * Q4_K_M bench model decode: docs/engine.md.  Advice only: where the
     * kernel has no transparent huge pages it fails and nothing changes. */
    (void)madvise(p, (size_t)st.st_size, MADV_HUGEPAGE);
    moe_gguf *g;
    if (moe_gguf_open_memory(&g, p, (size_t)st.st_size, err)) {
        munmap(p, (size_t)st.st_size);
        return moe_err_prefix(err, "%s", path);
    }
    g->mapped = true;
    *out = g;
    return MOE_OK;
}

void moe_gguf_close(moe_gguf *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_kv; i++) {
        free(g->kvs[i].key);
        free(g->kvs[i].str_off);
    }
    for (int i = 0; i < g->n_tensors; i++) free((char *)g->tensors[i].name);
    free(g->kvs);
    free(g->tensors);
    free(g->kv_hash);
    free(g->t_hash);
    if (g->mapped) munmap((void *)g->base, g->size);
    free(g);
}

/* ---- accessors --------------------------------------------------------------- */

uint32_t moe_gguf_version(const moe_gguf *g) { return g->version; }
uint32_t moe_gguf_alignment(const moe_gguf *g) { return g->alignment; }
uint64_t moe_gguf_data_offset(const moe_gguf *g) { return g->data_off; }
uint64_t moe_gguf_file_size(const moe_gguf *g) { return g->size; }
const void *moe_gguf_base(const moe_gguf *g) { return g->base; }
int moe_gguf_n_kv(const moe_gguf *g) { return g->n_kv; }
const char *moe_gguf_kv_key(const moe_gguf *g, int i) { return g->kvs[i].key; }
moe_gguf_vtype moe_gguf_kv_type(const moe_gguf *g, int i) { return g->kvs[i].type; }
int moe_gguf_n_tensors(const moe_gguf *g) { return g->n_tensors; }
const moe_gguf_tensor *moe_gguf_tensor_at(const moe_gguf *g, int i) { return &g->tensors[i]; }

int moe_gguf_find_kv(const moe_gguf *g, const char *key)
{
    return hash_find(g->kv_hash, g->kv_hash_cap, key, kv_name_of, g);
}

const moe_gguf_tensor *moe_gguf_find_tensor(const moe_gguf *g, const char *name)
{
    int i = hash_find(g->t_hash, g->t_hash_cap, name, tensor_name_of, g);
    return i < 0 ? NULL : &g->tensors[i];
}

const void *moe_gguf_kv_raw(const moe_gguf *g, int i, uint64_t *size)
{
    *size = g->kvs[i].size;
    return g->base + g->kvs[i].off;
}

/* Loads a scalar of any integer type as a signed/unsigned pair. */
static bool load_int(const uint8_t *p, moe_gguf_vtype t, int64_t *s, uint64_t *u, bool *is_signed)
{
    *is_signed = false;
    switch (t) {
    case MOE_GGUF_U8: *u = p[0]; break;
    case MOE_GGUF_BOOL: *u = p[0]; break;
    case MOE_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); *u = v; break; }
    case MOE_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); *u = v; break; }
    case MOE_GGUF_U64: { memcpy(u, p, 8); break; }
    case MOE_GGUF_I8: { *s = (int8_t)p[0]; *is_signed = true; break; }
    case MOE_GGUF_I16: { int16_t v; memcpy(&v, p, 2); *s = v; *is_signed = true; break; }
    case MOE_GGUF_I32: { int32_t v; memcpy(&v, p, 4); *s = v; *is_signed = true; break; }
    case MOE_GGUF_I64: { memcpy(s, p, 8); *is_signed = true; break; }
    default: return false;
    }
    return true;
}

int moe_gguf_kv_scalar_i64(const moe_gguf *g, int i, int64_t *out)
{
    int64_t s;
    uint64_t u;
    bool sg;
    if (!load_int(g->base + g->kvs[i].off, g->kvs[i].type, &s, &u, &sg)) return MOE_ERR;
    if (!sg) {
        if (u > (uint64_t)INT64_MAX) return MOE_ERR;
        s = (int64_t)u;
    }
    *out = s;
    return MOE_OK;
}

int moe_gguf_kv_scalar_u64(const moe_gguf *g, int i, uint64_t *out)
{
    int64_t s;
    uint64_t u;
    bool sg;
    if (!load_int(g->base + g->kvs[i].off, g->kvs[i].type, &s, &u, &sg)) return MOE_ERR;
    if (sg) {
        if (s < 0) return MOE_ERR;
        u = (uint64_t)s;
    }
    *out = u;
    return MOE_OK;
}

int moe_gguf_kv_scalar_f64(const moe_gguf *g, int i, double *out)
{
    const uint8_t *p = g->base + g->kvs[i].off;
    if (g->kvs[i].type == MOE_GGUF_F32) {
        float f;
        memcpy(&f, p, 4);
        *out = f;
    } else if (g->kvs[i].type == MOE_GGUF_F64) {
        memcpy(out, p, 8);
    } else {
        return MOE_ERR;
    }
    return MOE_OK;
}

const char *moe_gguf_kv_str(const moe_gguf *g, int i, uint64_t *len)
{
    const uint8_t *p = g->base + g->kvs[i].off;
    memcpy(len, p, 8);
    return (const char *)p + 8;
}

void moe_gguf_kv_arr(const moe_gguf *g, int i, moe_gguf_arr *out)
{
    const kv_entry *e = &g->kvs[i];
    out->type = e->arr_type;
    out->count = e->arr_count;
    out->data = g->base + e->arr_data;
    out->kv = i;
}

const char *moe_gguf_arr_str(const moe_gguf *g, const moe_gguf_arr *a, uint64_t j, uint64_t *len)
{
    const kv_entry *e = &g->kvs[a->kv];
    MOE_ASSERT(e->arr_type == MOE_GGUF_STRING && j < e->arr_count);
    const uint8_t *p = g->base + e->str_off[j];
    memcpy(len, p, 8);
    return (const char *)p + 8;
}

static int find_typed(const moe_gguf *g, const char *key, moe_err *err)
{
    int i = moe_gguf_find_kv(g, key);
    if (i < 0) moe_err_set(err, "missing key '%s'", key);
    return i;
}

int moe_gguf_get_i64(const moe_gguf *g, const char *key, int64_t *out, moe_err *err)
{
    int i = find_typed(g, key, err);
    if (i < 0) return MOE_ERR;
    if (g->kvs[i].type == MOE_GGUF_BOOL || moe_gguf_kv_scalar_i64(g, i, out))
        return moe_err_set(err, "key '%s': expected an integer that fits int64, found %s", key,
                           moe_gguf_vtype_name(g->kvs[i].type));
    return MOE_OK;
}

int moe_gguf_get_u64(const moe_gguf *g, const char *key, uint64_t *out, moe_err *err)
{
    int i = find_typed(g, key, err);
    if (i < 0) return MOE_ERR;
    if (g->kvs[i].type == MOE_GGUF_BOOL || moe_gguf_kv_scalar_u64(g, i, out))
        return moe_err_set(err, "key '%s': expected a non-negative integer, found %s", key,
                           moe_gguf_vtype_name(g->kvs[i].type));
    return MOE_OK;
}

int moe_gguf_get_u32(const moe_gguf *g, const char *key, uint32_t *out, moe_err *err)
{
    uint64_t v;
    if (moe_gguf_get_u64(g, key, &v, err)) return MOE_ERR;
    if (v > UINT32_MAX) return moe_err_set(err, "key '%s': value %llu does not fit 32 bits", key, (unsigned long long)v);
    *out = (uint32_t)v;
    return MOE_OK;
}

int moe_gguf_get_f64(const moe_gguf *g, const char *key, double *out, moe_err *err)
{
    int i = find_typed(g, key, err);
    if (i < 0) return MOE_ERR;
    if (moe_gguf_kv_scalar_f64(g, i, out))
        return moe_err_set(err, "key '%s': expected a float, found %s", key, moe_gguf_vtype_name(g->kvs[i].type));
    return MOE_OK;
}

int moe_gguf_get_f32(const moe_gguf *g, const char *key, float *out, moe_err *err)
{
    double d;
    if (moe_gguf_get_f64(g, key, &d, err)) return MOE_ERR;
    *out = (float)d;
    return MOE_OK;
}

int moe_gguf_get_bool(const moe_gguf *g, const char *key, bool *out, moe_err *err)
{
    int i = find_typed(g, key, err);
    if (i < 0) return MOE_ERR;
    if (g->kvs[i].type != MOE_GGUF_BOOL)
        return moe_err_set(err, "key '%s': expected a bool, found %s", key, moe_gguf_vtype_name(g->kvs[i].type));
    *out = g->base[g->kvs[i].off] != 0;
    return MOE_OK;
}

int moe_gguf_get_str(const moe_gguf *g, const char *key, const char **s, uint64_t *len, moe_err *err)
{
    int i = find_typed(g, key, err);
    if (i < 0) return MOE_ERR;
    if (g->kvs[i].type != MOE_GGUF_STRING)
        return moe_err_set(err, "key '%s': expected a string, found %s", key, moe_gguf_vtype_name(g->kvs[i].type));
    *s = moe_gguf_kv_str(g, i, len);
    return MOE_OK;
}

int moe_gguf_get_arr(const moe_gguf *g, const char *key, moe_gguf_arr *out, moe_err *err)
{
    int i = find_typed(g, key, err);
    if (i < 0) return MOE_ERR;
    if (g->kvs[i].type != MOE_GGUF_ARRAY)
        return moe_err_set(err, "key '%s': expected an array, found %s", key, moe_gguf_vtype_name(g->kvs[i].type));
    moe_gguf_kv_arr(g, i, out);
    return MOE_OK;
}

int moe_gguf_layer_of(const char *name)
{
    if (strncmp(name, "blk.", 4)) return -1;
    long v = 0;
    const char *p = name + 4;
    if (*p < '0' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++)
        if ((v = v * 10 + (*p - '0')) > 1000000) return -1;
    return *p == '.' ? (int)v : -1;
}
