/*
 * gguf_print.c — moe-gguf on every fixture model and both tokenizer GGUFs:
 * exit 0, nothing on stderr, every key the reader reports on its own line
 * (with its type, and its value for integer scalars), every tensor name in
 * the tensor table with its type; on bad files exit 1 with the validation
 * error on stderr and nothing on stdout; --help exits 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "dtype.h"
#include "gguf.h"
#include "gguf_builder.h"

static const char *const fixtures[] = {
    "models/tiny_f32.gguf",          "models/tiny_f16.gguf",    "models/tiny_q8_0.gguf",
    "models/v2lite_mini_f32.gguf",   "models/v2lite_mini_fused_f32.gguf",
    "models/v3_mini_f32.gguf",       "models/v3_mini_q8_0.gguf",
    "tokenizer/deepseek-llm-rules.gguf", "tokenizer/deepseek-v3-vocab.gguf",
};

static char tmpdir[4096];
static char prog[4096];
static int n_cases;

typedef struct run_result {
    int status; /* exit code, or -1 if it did not exit normally */
    char *out, *err;
} run_result;

static char *slurp_fd(int fd)
{
    size_t n = 0, cap = 4096;
    char *buf = moe_xmalloc(cap);
    lseek(fd, 0, SEEK_SET);
    for (;;) {
        if (n + 1 >= cap) buf = moe_xrealloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r <= 0) break;
        n += (size_t)r;
    }
    buf[n] = 0;
    return buf;
}

/* Runs moe-gguf with up to two arguments; stdout and stderr to temp files. */
static run_result run(const char *a1, const char *a2)
{
    run_result r = {-1, NULL, NULL};
    char po[4200], pe[4200];
    snprintf(po, sizeof po, "%s/out.txt", tmpdir);
    snprintf(pe, sizeof pe, "%s/err.txt", tmpdir);
    int fo = open(po, O_RDWR | O_CREAT | O_TRUNC, 0600), fe = open(pe, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fo < 0 || fe < 0) {
        fprintf(stderr, "cannot create output files in %s: %s\n", tmpdir, strerror(errno));
        exit(2);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fo, 1);
        dup2(fe, 2);
        char *argv[] = {prog, (char *)a1, (char *)a2, NULL};
        execv(prog, argv);
        _exit(127);
    }
    int st = 0;
    if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st)) r.status = WEXITSTATUS(st);
    r.out = slurp_fd(fo);
    r.err = slurp_fd(fe);
    close(fo);
    close(fe);
    unlink(po);
    unlink(pe);
    return r;
}

static void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

/* The line of the output that starts with "  key " (NULL if none). */
static const char *key_line(const char *out, const char *key, size_t *len)
{
    size_t kl = strlen(key);
    for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (p[0] == ' ' && p[1] == ' ' && !strncmp(p + 2, key, kl) && p[2 + kl] == ' ') {
            const char *e = strchr(p, '\n');
            *len = e ? (size_t)(e - p) : strlen(p);
            return p;
        }
    }
    return NULL;
}

static int line_has(const char *line, size_t len, const char *want)
{
    size_t wl = strlen(want);
    for (size_t i = 0; i + wl <= len; i++)
        if (!memcmp(line + i, want, wl)) return 1;
    return 0;
}

static void check_fixture(const char *rel)
{
    const char *path = fixture_path(rel);
    moe_gguf *g;
    moe_err err;
    n_cases++;
    if (moe_gguf_open(&g, path, &err) != MOE_OK) {
        CHECK_MSG(0, "fixture %s: %s", rel, err.msg);
        return;
    }
    run_result r = run(path, NULL);
    CHECK_MSG(r.status == 0, "%s: moe-gguf exited %d: %s", rel, r.status, r.err);
    CHECK_MSG(r.err[0] == 0, "%s: moe-gguf wrote to stderr: %s", rel, r.err);
    char want[512];
    snprintf(want, sizeof want, "metadata: %d keys\n", moe_gguf_n_kv(g));
    CHECK_CONTAINS(r.out, want);
    snprintf(want, sizeof want, "tensors: %d\n", moe_gguf_n_tensors(g));
    CHECK_CONTAINS(r.out, want);
    snprintf(want, sizeof want, "version: %u\n", moe_gguf_version(g));
    CHECK_CONTAINS(r.out, want);

    int bad_keys = 0, bad_tensors = 0;
    for (int i = 0; i < moe_gguf_n_kv(g); i++) {
        const char *key = moe_gguf_kv_key(g, i);
        size_t len;
        const char *line = key_line(r.out, key, &len);
        if (!line) {
            if (bad_keys++ < 5) CHECK_MSG(0, "%s: key %s missing from the output", rel, key);
            continue;
        }
        moe_gguf_vtype t = moe_gguf_kv_type(g, i);
        int64_t s;
        uint64_t u;
        if (t == MOE_GGUF_ARRAY) {
            moe_gguf_arr a;
            moe_gguf_kv_arr(g, i, &a);
            snprintf(want, sizeof want, "array[%s] %llu [", moe_gguf_vtype_name(a.type), (unsigned long long)a.count);
        } else if (t != MOE_GGUF_BOOL && moe_gguf_kv_scalar_u64(g, i, &u) == MOE_OK) {
            snprintf(want, sizeof want, " %llu", (unsigned long long)u);
        } else if (t != MOE_GGUF_BOOL && moe_gguf_kv_scalar_i64(g, i, &s) == MOE_OK) {
            snprintf(want, sizeof want, " %lld", (long long)s);
        } else {
            snprintf(want, sizeof want, "%s ", moe_gguf_vtype_name(t));
        }
        if (!line_has(line, len, want)) {
            if (bad_keys++ < 5) CHECK_MSG(0, "%s: line of %s lacks \"%s\": %.*s", rel, key, want, (int)len, line);
        }
    }
    for (int i = 0; i < moe_gguf_n_tensors(g); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        char buf[24];
        /* The name column is padded: look for the name, then its type after spaces. */
        snprintf(want, sizeof want, " %s ", t->name);
        const char *p = strstr(r.out, want);
        int ok = p != NULL;
        if (ok) {
            const char *e = strchr(p, '\n');
            snprintf(want, sizeof want, " %s ", moe_dtype_name(t->type, buf, sizeof buf));
            ok = line_has(p, e ? (size_t)(e - p) : strlen(p), want);
        }
        if (!ok && bad_tensors++ < 5) CHECK_MSG(0, "%s: tensor %s (%s) missing from the table", rel, t->name, want);
    }
    CHECK_MSG(bad_keys == 0, "%s: %d keys missing or misprinted", rel, bad_keys);
    CHECK_MSG(bad_tensors == 0, "%s: %d tensors missing", rel, bad_tensors);
    printf("gguf_print: %-36s %3d keys, %3d tensors found in the output\n", rel, moe_gguf_n_kv(g),
           moe_gguf_n_tensors(g));
    n_cases += moe_gguf_n_kv(g) + moe_gguf_n_tensors(g);
    run_free(&r);
    moe_gguf_close(g);
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

/* A bad file: exit 1, the error (and the path) on stderr, nothing on stdout. */
static void check_bad(const char *name, const void *p, size_t n, const char *want)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    if (p) write_file(path, p, n);
    run_result r = run(path, NULL);
    n_cases++;
    CHECK_MSG(r.status == 1, "%s: exit status %d, want 1", name, r.status);
    CHECK_MSG(r.out[0] == 0, "%s: wrote to stdout on a bad file: %s", name, r.out);
    CHECK_CONTAINS(r.err, "moe-gguf: ");
    CHECK_CONTAINS(r.err, want);
    CHECK_CONTAINS(r.err, name);
    run_free(&r);
    unlink(path);
}

int main(void)
{
    const char *bin = getenv("MOE_BIN");
    if (!bin) {
        fprintf(stderr, "MOE_BIN is not set\n");
        return 2;
    }
    snprintf(prog, sizeof prog, "%s/moe-gguf", bin);
    CHECK_MSG(access(prog, X_OK) == 0, "%s is not built", prog);
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/moe_gguf_print_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 2;
    }

    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) check_fixture(fixtures[i]);

    /* --help: usage on stdout, exit 0. */
    run_result r = run("--help", NULL);
    n_cases++;
    CHECK_MSG(r.status == 0, "--help exited %d", r.status);
    CHECK_CONTAINS(r.out, "usage: moe-gguf");
    run_free(&r);
    /* No file, an unknown option: a usage error (non-zero, on stderr). */
    r = run(NULL, NULL);
    n_cases++;
    CHECK_MSG(r.status != 0 && r.status != -1 && r.err[0], "no arguments: exit %d", r.status);
    run_free(&r);
    r = run("--no-such-flag", fixture_path(fixtures[0]));
    n_cases++;
    CHECK_MSG(r.status != 0 && r.status != -1 && strstr(r.err, "--no-such-flag"), "unknown flag: exit %d", r.status);
    run_free(&r);

    /* Bad files. */
    gb b = {0};
    gb_header(&b, 3, 0, 0);
    memcpy(b.p, "GGUX", 4);
    check_bad("bad_magic.gguf", b.p, b.n, "not a GGUF file");
    gb_free(&b);
    gb_header(&b, 1, 0, 0);
    check_bad("version1.gguf", b.p, b.n, "unsupported GGUF version 1");
    gb_free(&b);
    gb_header(&b, 3, 1, 0);
    gb_tensor(&b, "blk.0.ffn_up.weight", 1, (uint64_t[]){256}, 16, 0);
    gb_pad(&b, 32), gb_zeros(&b, 66);
    check_bad("iq2_xxs.gguf", b.p, b.n, "tensor 'blk.0.ffn_up.weight': unsupported tensor type iq2_xxs");
    gb_free(&b);
    check_bad("empty.gguf", "", 0, "empty file");
    check_bad("missing.gguf", NULL, 0, "cannot open");
    {
        /* A fixture cut inside its metadata, and inside its tensor data. */
        FILE *f = fopen(fixture_path(fixtures[0]), "rb");
        CHECK_MSG(f != NULL, "missing fixture %s", fixtures[0]);
        if (f) {
            static uint8_t head[20000];
            size_t n = fread(head, 1, sizeof head, f);
            fclose(f);
            CHECK(n == sizeof head);
            check_bad("cut_metadata.gguf", head, 3000, "exceeds the file size");
            check_bad("cut_data.gguf", head, sizeof head, "runs past the end of the file");
        }
    }
    rmdir(tmpdir);
    printf("gguf_print: %d cases checked\n", n_cases);
    return check_summary("gguf_print");
}
