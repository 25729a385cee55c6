/*
 * keyfile.c — Z85 and CURVE key files (see keyfile.h).
 */
#include "keyfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"

/* RFC 32's alphabet: a digit's value is its index. */
static const char Z85[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

static int z85_value(unsigned char c)
{
    const char *p = c ? strchr(Z85, c) : NULL;
    return p ? (int)(p - Z85) : -1;
}

int moe_z85_encode(const uint8_t *in, size_t n, char *out, size_t cap, moe_err *err)
{
    if (n % 4) return moe_err_set(err, "z85: %zu bytes is not a multiple of 4", n);
    if (cap <= n / 4 * 5) return moe_err_set(err, "z85: %zu bytes do not fit %zu characters", n, cap);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = (uint32_t)in[i] << 24 | (uint32_t)in[i + 1] << 16 | (uint32_t)in[i + 2] << 8 | in[i + 3];
        for (int d = 4; d >= 0; d--) {
            out[o + (size_t)d] = Z85[v % 85];
            v /= 85;
        }
        o += 5;
    }
    out[o] = '\0';
    return MOE_OK;
}

int moe_z85_decode(const char *in, size_t n, uint8_t *out, size_t cap, moe_err *err)
{
    if (n % 5) return moe_err_set(err, "z85: %zu characters is not a multiple of 5", n);
    if (cap < n / 5 * 4) return moe_err_set(err, "z85: %zu characters do not fit %zu bytes", n, cap);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 5) {
        uint64_t v = 0;
        for (size_t d = 0; d < 5; d++) {
            const int x = z85_value((unsigned char)in[i + d]);
            if (x < 0) return moe_err_set(err, "z85: character %zu (0x%02x) is not in the Z85 alphabet", i + d + 1,
                                          (unsigned char)in[i + d]);
            v = v * 85 + (uint64_t)x;
        }
        if (v > UINT32_MAX) return moe_err_set(err, "z85: characters %zu..%zu are above 32 bits", i + 1, i + 5);
        out[o++] = (uint8_t)(v >> 24);
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    return MOE_OK;
}

void moe_key_z85(const moe_key *k, char *out)
{
    moe_err err;
    MOE_ASSERT(moe_z85_encode(k->b, MOE_KEY_BYTES, out, MOE_KEY_Z85_LEN + 1, &err) == MOE_OK);
}

int moe_key_from_z85(const char *s, size_t len, moe_key *k, moe_err *err)
{
    if (len != MOE_KEY_Z85_LEN)
        return moe_err_set(err, "a key is %d Z85 characters, not %zu", MOE_KEY_Z85_LEN, len);
    return moe_z85_decode(s, len, k->b, sizeof k->b, err);
}

/* ---- files ------------------------------------------------------------------------ */

static bool blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Calls each(key line, its length) for every line that is not blank or a
 * comment; the line is cut at its first blank (what follows is a name). */
typedef int (*line_fn)(void *ctx, const char *s, size_t len, size_t line_no, moe_err *err);

static int each_key_line(const char *text, size_t n, line_fn each, void *ctx, moe_err *err)
{
    size_t line_no = 0;
    for (size_t i = 0; i < n;) {
        size_t e = i;
        while (e < n && text[e] != '\n') e++;
        line_no++;
        size_t a = i;
        while (a < e && blank(text[a])) a++;
        if (a < e && text[a] != '#') {
            size_t b = a;
            while (b < e && !blank(text[b])) b++;
            if (memchr(text + a, '\0', e - a)) return moe_err_set(err, "line %zu: a NUL byte", line_no);
            if (each(ctx, text + a, b - a, line_no, err)) return MOE_ERR;
        }
        i = e + 1;
    }
    return MOE_OK;
}

typedef struct one_key {
    moe_key *k;
    int n;
} one_key;

static int take_one(void *ctx, const char *s, size_t len, size_t line_no, moe_err *err)
{
    one_key *o = ctx;
    if (o->n++) return moe_err_set(err, "line %zu: a second key (a key file holds one)", line_no);
    if (moe_key_from_z85(s, len, o->k, err)) return moe_err_prefix(err, "line %zu", line_no);
    return MOE_OK;
}

static int read_one(const char *path, moe_key *k, moe_err *err)
{
    char *text;
    size_t n;
    if (moe_file_read(path, MOE_KEYFILE_MAX_BYTES, &text, &n, err)) return MOE_ERR;
    one_key o = {k, 0};
    int rc = each_key_line(text, n, take_one, &o, err);
    if (rc == MOE_OK && o.n == 0) rc = moe_err_set(err, "no key in it");
    free(text);
    if (rc) moe_err_prefix(err, "%s", path); /* moe_file_read's own errors name it already */
    return rc;
}

int moe_keyfile_read_public(const char *path, moe_key *k, moe_err *err) { return read_one(path, k, err); }

int moe_secret_file_check(const char *path, moe_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0) return moe_err_set(err, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return moe_err_set(err, "%s: a secret must be a regular file", path);
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        return moe_err_set(err, "%s: a secret must not be open to group or others (mode %04o; chmod 600 it)", path,
                           (unsigned)(st.st_mode & 07777));
    return MOE_OK;
}

int moe_keyfile_read_secret(const char *path, moe_key *k, moe_err *err)
{
    if (moe_secret_file_check(path, err)) return MOE_ERR;
    return read_one(path, k, err);
}

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        const char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return false;
    }
    return true;
}

/* Creates path (never replacing a file) with mode and the text. */
static int write_new(const char *path, mode_t mode, const char *text, moe_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return moe_err_set(err, "%s: %s", path, strerror(errno));
    /* the umask may have taken bits away, never added any; set exactly */
    if (fchmod(fd, mode) != 0) {
        moe_err_set(err, "%s: chmod: %s", path, strerror(errno));
        goto fail;
    }
    size_t n = strlen(text), off = 0;
    while (off < n) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            moe_err_set(err, "%s: write: %s", path, strerror(errno));
            goto fail;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        moe_err_set(err, "%s: %s", path, strerror(errno));
        goto fail;
    }
    return MOE_OK;
fail:
    if (fd >= 0) close(fd);
    unlink(path);
    return MOE_ERR;
}

int moe_keyfile_write_pair(const char *dir, const char *name, const moe_key *pub, const moe_key *sec, moe_err *err)
{
    if (!name_ok(name))
        return moe_err_set(err, "key name '%.80s': use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'",
                           name);
    char pub_path[4096], sec_path[4096];
    int a = snprintf(pub_path, sizeof pub_path, "%s/%s.key", dir, name);
    int b = snprintf(sec_path, sizeof sec_path, "%s/%s.key_secret", dir, name);
    if (a < 0 || b < 0 || (size_t)a >= sizeof pub_path || (size_t)b >= sizeof sec_path)
        return moe_err_set(err, "%s: the directory's path is too long", dir);
    char z[MOE_KEY_Z85_LEN + 1], text[256];
    /* the secret first: a pair is only usable when both exist */
    moe_key_z85(sec, z);
    snprintf(text, sizeof text, "# moe CURVE secret key '%s' (Z85); keep it private (mode 0600)\n%s\n", name, z);
    if (write_new(sec_path, 0600, text, err)) return MOE_ERR;
    moe_key_z85(pub, z);
    snprintf(text, sizeof text, "# moe CURVE public key '%s' (Z85)\n%s\n", name, z);
    if (write_new(pub_path, 0644, text, err)) {
        unlink(sec_path);
        return MOE_ERR;
    }
    return MOE_OK;
}

/* ---- lists ------------------------------------------------------------------------ */

typedef struct key_list {
    moe_key *k;
    size_t n, cap;
} key_list;

static int list_add(key_list *l, const moe_key *k, moe_err *err)
{
    for (size_t i = 0; i < l->n; i++)
        if (!memcmp(l->k[i].b, k->b, MOE_KEY_BYTES)) return MOE_OK;
    if (l->n == MOE_KEYLIST_MAX) return moe_err_set(err, "more than %d keys", MOE_KEYLIST_MAX);
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->k = moe_xrealloc(l->k, l->cap * sizeof *l->k);
    }
    l->k[l->n++] = *k;
    return MOE_OK;
}

static int take_listed(void *ctx, const char *s, size_t len, size_t line_no, moe_err *err)
{
    moe_key k;
    if (moe_key_from_z85(s, len, &k, err)) return moe_err_prefix(err, "line %zu", line_no);
    return list_add(ctx, &k, err);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int read_dir(const char *path, key_list *l, moe_err *err)
{
    DIR *d = opendir(path);
    if (!d) return moe_err_set(err, "%s: %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = MOE_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const size_t len = strlen(e->d_name);
        if (len <= 4 || e->d_name[0] == '.' || strcmp(e->d_name + len - 4, ".key") != 0) continue;
        if (n == MOE_KEYLIST_MAX) {
            rc = moe_err_set(err, "%s: more than %d key files", path, MOE_KEYLIST_MAX);
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            names = moe_xrealloc(names, cap * sizeof *names);
        }
        names[n++] = moe_xstrdup(e->d_name);
    }
    closedir(d);
    if (rc == MOE_OK && n) qsort(names, n, sizeof *names, cmp_names); /* errors name the same file every time */
    for (size_t i = 0; i < n && rc == MOE_OK; i++) {
        char p[4096];
        int w = snprintf(p, sizeof p, "%s/%s", path, names[i]);
        if (w < 0 || (size_t)w >= sizeof p) {
            rc = moe_err_set(err, "%s/%s: the path is too long", path, names[i]);
            break;
        }
        struct stat st;
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) continue; /* a directory named x.key, a dangling link */
        moe_key k;
        if ((rc = read_one(p, &k, err)) == MOE_OK) rc = list_add(l, &k, err);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int moe_keylist_read(const char *path, moe_key **out, size_t *n, moe_err *err)
{
    *out = NULL;
    *n = 0;
    struct stat st;
    if (stat(path, &st) != 0) return moe_err_set(err, "%s: %s", path, strerror(errno));
    key_list l = {0};
    int rc;
    if (S_ISDIR(st.st_mode)) rc = read_dir(path, &l, err);
    else {
        char *text;
        size_t len;
        rc = moe_file_read(path, MOE_KEYFILE_MAX_BYTES, &text, &len, err);
        if (rc == MOE_OK) {
            rc = each_key_line(text, len, take_listed, &l, err);
            free(text);
            if (rc) moe_err_prefix(err, "%s", path);
        }
    }
    if (rc == MOE_OK && l.n == 0)
        rc = moe_err_set(err, "%s: no public key in it (%s)", path,
                         S_ISDIR(st.st_mode) ? "a directory of NAME.key files" : "one Z85 key a line");
    if (rc) {
        free(l.k);
        return MOE_ERR;
    }
    *out = l.k;
    *n = l.n;
    return MOE_OK;
}
